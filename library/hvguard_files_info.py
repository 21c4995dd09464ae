#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: read the state of many files in one call (checksums, public content)."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_files_info
short_description: Read many files' state in one call (checksums, certificates, CRLs)
description:
  - One call instead of a C(stat) or C(slurp) loop. Each item of a loop is a round trip
    to the host, and a fleet audit pays every round trip once per host.
  - For each path in C(checksum), the SHA-1 checksum of a regular file (the value
    C(ansible.builtin.stat) returns). A symbolic link gets no checksum, as with
    C(stat)'s default C(follow=false).
  - For each path in C(content), the content base64-encoded (as C(ansible.builtin.slurp)
    returns it, following links as the daemons that read the file do). Meant for public
    material (certificates, CRLs, C(/proc) tables). The content of a file that holds a
    private key is never returned, its entry gets C(error) instead.
  - Reads only; never changes anything, so it runs in check mode too.
version_added: "0.1.0"
author: hvguard contributors
options:
  checksum:
    description: Paths whose SHA-1 checksum is wanted (keys, when only a comparison is needed).
    type: list
    elements: path
    default: []
  content:
    description: Paths whose content is wanted (at most 16 MiB each).
    type: list
    elements: path
    default: []
attributes:
  check_mode:
    support: full
  diff_mode:
    support: none
    details: Nothing is changed, so there is nothing to diff.
"""

EXAMPLES = r"""
- name: Read the key checksums and the certificates in one round trip
  hvguard_files_info:
    checksum: [/etc/pki/libvirt/private/serverkey.pem, /etc/pki/qemu/server-key.pem]
    content: [/etc/pki/CA/cacert.pem, /etc/pki/libvirt/servercert.pem]
  register: tls_files

- name: Use the content as slurp would return it
  ansible.builtin.debug:
    msg: "{{ tls_files.files['/etc/pki/CA/cacert.pem'].content | b64decode }}"
  when: tls_files.files['/etc/pki/CA/cacert.pem'].exists
"""

RETURN = r"""
files:
  description:
    - One entry per path given (in either list), keyed by the path.
    - C(exists) (bool), C(islnk) (bool); C(checksum) for a regular file asked for in
      C(checksum); C(content) (base64) for a readable file asked for in C(content);
      C(error) when the file exists but could not be read, or holds a private key.
  returned: always
  type: dict
  sample:
    /etc/pki/CA/cacert.pem: {exists: true, islnk: false, content: "LS0tLS1CRUdJTi..."}
    /etc/pki/qemu/server-key.pem: {exists: true, islnk: false, checksum: "3f786850e387..."}
"""

import base64
import hashlib
import os
import stat
from typing import Any

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC: dict[str, Any] = {
    "checksum": {"type": "list", "elements": "path", "default": []},
    "content": {"type": "list", "elements": "path", "default": []},
}

# Certificates and CRLs are small; /proc/net/tcp of a busy host is not (~150 bytes a socket).
MAX_CONTENT = 16 << 20
# Any PEM private key ("PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY", ...).
_PRIVATE_MARK = b"PRIVATE KEY-----"


def sha1_of(path: str) -> str:
    digest = hashlib.sha1()  # the checksum stat returns (a comparison, not a security use)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(65536), b""):
            digest.update(block)
    return digest.hexdigest()


def read_public(path: str) -> bytes:
    """The file's bytes (following links); a private key or an oversized file is an error."""
    with open(path, "rb") as handle:
        data = handle.read(MAX_CONTENT + 1)
    if len(data) > MAX_CONTENT:
        raise ValueError(f"larger than {MAX_CONTENT} bytes: content not returned")
    if _PRIVATE_MARK in data:
        raise ValueError("holds a private key: content not returned")
    return data


def describe(path: str, want_checksum: bool, want_content: bool) -> dict[str, Any]:
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return {"exists": False, "islnk": False}
    except OSError as exc:
        return {"exists": False, "islnk": False, "error": exc.strerror or str(exc)}
    islnk = stat.S_ISLNK(info.st_mode)
    entry: dict[str, Any] = {"exists": True, "islnk": islnk}
    try:
        if want_checksum and stat.S_ISREG(info.st_mode):
            entry["checksum"] = sha1_of(path)
        if want_content:
            entry["content"] = base64.b64encode(read_public(path)).decode("ascii")
    except FileNotFoundError:  # a dangling link
        entry["exists"] = False
    except (OSError, ValueError) as exc:
        entry["error"] = getattr(exc, "strerror", None) or str(exc)
    return entry


def files_info(checksum: list[str], content: list[str]) -> dict[str, dict[str, Any]]:
    wanted_sum, wanted_content = set(checksum), set(content)
    return {
        path: describe(path, path in wanted_sum, path in wanted_content)
        for path in dict.fromkeys([*checksum, *content])
    }


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    module.exit_json(
        changed=False, files=files_info(module.params["checksum"], module.params["content"])
    )


if __name__ == "__main__":
    main()
