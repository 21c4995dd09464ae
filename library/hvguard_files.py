#!/usr/bin/python
# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Ansible module: put a set of files and directories in place in one call."""

from __future__ import annotations

DOCUMENTATION = r"""
---
module: hvguard_files
short_description: Put several files (given content) and directories in place in one call
description:
  - One call instead of a C(copy) or C(file) loop. Each item of such a loop costs a round
    trip to the host (a C(copy) item two, a C(stat) and a C(file) or C(copy)), and a fleet
    audit pays every round trip once per host.
  - For a file, the content, owner, group and mode are set as C(ansible.builtin.copy) with
    C(content) sets them. A new content is written to a temporary file in the same
    directory (created with mode 0600) and renamed over the destination. A symbolic link at
    the destination is replaced, never written through (as C(copy) with C(follow=false)).
  - For a directory, owner, group and mode are set as C(ansible.builtin.file) with
    C(state=directory) sets them; a missing one is created with its missing parents, which
    get the same owner, group and mode (as C(file) does).
  - Deliberate differences from those modules. A directory where a file is wanted, a file
    or link where a directory is wanted (never followed), a relative path, or a file whose
    directory neither exists nor is created by an earlier entry of the call is an error
    found before anything is changed, for every entry of the call.
  - In check mode nothing is written; C(changed) and the diff say what would change.
version_added: "0.1.0"
author: hvguard contributors
options:
  files:
    description: The files and directories, each handled in order.
    type: list
    elements: dict
    required: true
    suboptions:
      path:
        description: Absolute path of the file or directory.
        type: path
        required: true
      state:
        description:
          - C(file) (with C(content)), C(directory), or C(absent) (a file or link removed as
            C(ansible.builtin.file) with C(state=absent) removes it; a directory there is an
            error, never removed).
        type: str
        choices: [file, directory, absent]
        default: file
      content:
        description: The file's whole content (text). Required for C(state=file).
        type: str
      owner:
        description: Owner name; unchanged when omitted.
        type: str
      group:
        description: Group name; unchanged when omitted.
        type: str
      mode:
        description: Octal mode such as C("0644"). Required unless O(files[].state=absent).
        type: str
      validate:
        description:
          - Command that checks a new content before it replaces the file, as
            C(ansible.builtin.copy)'s; C(%s) is the temporary file (same directory, with the
            entry's owner, group and mode). Not run in check mode, nor when the content is
            unchanged. When it fails, the file is left as it was and the call fails; entries
            before it in the list stay as they were put (as separate tasks would).
        type: str
      diff:
        description:
          - How a content change shows in the diff. C(text) is the whole old and new text,
            as C(copy) shows it; right for a configuration file a reviewer reads.
          - C(summary) is one line per side, the SHA-256 and size of the old and the new
            content. For a program or any long file, whose text would bury a report's other
            evidence (the scrub engine is over 1,000 lines).
        type: str
        choices: [text, summary]
        default: text
attributes:
  check_mode:
    support: full
  diff_mode:
    support: full
"""

EXAMPLES = r"""
- name: The certificate directories and the certificates the daemons read
  hvguard_files:
    files:
      - {path: /etc/pki/libvirt, state: directory, owner: root, group: root, mode: "0755"}
      - path: /etc/pki/libvirt/servercert.pem
        content: "{{ server_cert_pem }}"
        owner: root
        group: root
        mode: "0644"

- name: A program whose diff names its old and new checksum, not its text
  hvguard_files:
    files:
      - path: /usr/local/sbin/tool
        content: "{{ lookup('ansible.builtin.file', 'tool', rstrip=false) }}"
        mode: "0755"
        diff: summary
"""

RETURN = r"""
files:
  description: Per path, whether it changed (or would in check mode) and its state.
  returned: always
  type: dict
  sample:
    /etc/pki/libvirt/servercert.pem: {changed: true, state: file, created: false}
"""

import hashlib
import os
import stat
import tempfile
from typing import Any

from ansible.module_utils.basic import AnsibleModule

ARGUMENT_SPEC: dict[str, Any] = {
    "files": {
        "type": "list",
        "elements": "dict",
        "required": True,
        "options": {
            "path": {"type": "path", "required": True},
            "state": {"type": "str", "choices": ["file", "directory", "absent"], "default": "file"},
            "content": {"type": "str", "no_log": False},
            "owner": {"type": "str"},
            "group": {"type": "str"},
            "mode": {"type": "str"},
            "validate": {"type": "str"},
            "diff": {"type": "str", "choices": ["text", "summary"], "default": "text"},
        },
        "required_if": [
            ["state", "file", ["content", "mode"]],
            ["state", "directory", ["mode"]],
        ],
    }
}


class FilesError(Exception):
    """A failure with a message meant for the user."""


def lstat_or_none(path: str) -> os.stat_result | None:
    try:
        return os.lstat(path)
    except FileNotFoundError:
        return None


def read_current(path: str) -> bytes | None:
    """The regular file's bytes without following a link (None: absent or a link)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if os.path.islink(path):
            return None
        raise FilesError(f"cannot read {path}: {exc.strerror}") from exc
    with os.fdopen(fd, "rb") as handle:
        return handle.read()


def validate(module: AnsibleModule, spec: dict[str, Any], tmp: str) -> None:
    """Run the entry's validate command on the temporary file, as copy does."""
    # As copy: the temporary file first gets the entry's attributes (some checks read them).
    attributes(module, dict(spec, path=tmp), False, None)
    rc, out, err = module.run_command(spec["validate"] % tmp)
    if rc != 0:
        raise FilesError(
            f"failed to validate the new {spec['path']} with {spec['validate']!r} (rc {rc}): "
            f"{(err or out).strip()}"
        )


def summary(data: bytes | None) -> str:
    """One line that names a content without showing it."""
    if data is None:
        return "absent\n"
    return f"sha256 {hashlib.sha256(data).hexdigest()}, {len(data)} bytes\n"


def content_diff(spec: dict[str, Any], current: bytes | None, want: bytes) -> dict[str, Any]:
    path = spec["path"]
    if spec.get("diff") == "summary":
        before, after = summary(current), summary(want)
    else:
        before, after = (current or b"").decode(errors="replace"), spec["content"]
    return {"before": before, "after": after, "before_header": path, "after_header": path}


def write_atomically(module: AnsibleModule, spec: dict[str, Any], data: bytes) -> None:
    path = spec["path"]
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=".hvguard-")  # mode 0600
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        if spec.get("validate"):
            validate(module, spec, tmp)
        # Replaces a link at path (rename never follows it); keeps a replaced file's attributes.
        module.atomic_move(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def attributes(module: AnsibleModule, spec: dict[str, Any], changed: bool, diff: dict) -> bool:
    # ansible-core's own helper, as copy and file use it (SELinux left as the host has it).
    file_args = module.load_file_common_arguments(
        {
            "path": spec["path"],
            "mode": spec["mode"],
            "owner": spec.get("owner"),
            "group": spec.get("group"),
        }
    )
    return module.set_fs_attributes_if_different(file_args, changed, diff, expand=False)


def ensure_file(module: AnsibleModule, spec: dict[str, Any]) -> tuple[bool, dict, list]:
    path = spec["path"]
    info = lstat_or_none(path)
    want = spec["content"].encode()
    current = read_current(path)
    content_changed = current != want
    diffs: list[dict[str, Any]] = []
    if content_changed:
        diffs.append(content_diff(spec, current, want))
        if not module.check_mode:
            write_atomically(module, spec, want)
    result = {"state": "file", "created": info is None}
    if module.check_mode and (info is None or stat.S_ISLNK(info.st_mode)):
        # Nothing there yet to compare attributes with: they are part of the creation.
        return content_changed, dict(result, changed=content_changed), diffs
    attr_diff: dict[str, Any] = {}
    attr_changed = attributes(module, spec, False, attr_diff)
    if attr_changed and info is not None and not stat.S_ISLNK(info.st_mode):
        diffs.append(dict(attr_diff, before_header=path, after_header=path))
    changed = content_changed or attr_changed
    return changed, dict(result, changed=changed), diffs


def missing_components(path: str) -> list[str]:
    """``path`` and each missing parent of it, outermost first."""
    missing = []
    while path and path != os.sep and lstat_or_none(path) is None:
        missing.append(path)
        path = os.path.dirname(path)
    return missing[::-1]


def ensure_directory(module: AnsibleModule, spec: dict[str, Any]) -> tuple[bool, dict, list]:
    path = spec["path"]
    missing = missing_components(path)
    diffs: list[dict[str, Any]] = []
    if missing:
        diffs.append({"before": {"state": "absent"}, "after": {"state": "directory"},
                      "before_header": path, "after_header": path})  # fmt: skip
        if module.check_mode:
            return True, {"changed": True, "state": "directory", "created": True}, diffs
        # As the file module does: each missing parent gets the entry's owner, group, mode.
        for component in missing:
            os.mkdir(component, 0o700)
            attributes(module, dict(spec, path=component), False, {})
        return True, {"changed": True, "state": "directory", "created": True}, diffs
    attr_diff: dict[str, Any] = {}
    changed = attributes(module, spec, False, attr_diff)
    if changed:
        diffs.append(dict(attr_diff, before_header=path, after_header=path))
    return changed, {"changed": changed, "state": "directory", "created": False}, diffs


def ensure_absent(module: AnsibleModule, spec: dict[str, Any]) -> tuple[bool, dict, list]:
    path = spec["path"]
    info = lstat_or_none(path)
    if info is None:
        return False, {"changed": False, "state": "absent", "created": False}, []
    kind = "link" if stat.S_ISLNK(info.st_mode) else "file"
    diffs = [{"before": {"state": kind}, "after": {"state": "absent"},
              "before_header": path, "after_header": path}]  # fmt: skip
    if not module.check_mode:
        os.unlink(path)  # a link itself, never its target
    return True, {"changed": True, "state": "absent", "created": False}, diffs


def preflight(specs: list[dict[str, Any]], check_mode: bool) -> None:
    """Refuse the whole call before any change when an entry cannot be put in place.

    A missing parent is drift in check mode (an earlier task would create it), as for copy.
    """
    dirs_to_be: set[str] = set()
    for spec in specs:
        path = spec["path"]
        if not os.path.isabs(path):
            raise FilesError(f"{path} is not an absolute path: nothing changed")
        if spec.get("validate") and "%s" not in spec["validate"]:
            raise FilesError(f"validate of {path} must contain %s: nothing changed")
        info = lstat_or_none(path)
        parent = os.path.dirname(path)
        made_earlier = any(d == parent or d.startswith(parent + os.sep) for d in dirs_to_be)
        missing_parent = not (os.path.isdir(parent) or made_earlier)
        if spec["state"] == "file" and info is None and missing_parent and not check_mode:
            raise FilesError(f"the parent directory of {path} does not exist: nothing changed")
        if spec["state"] == "directory":
            if info is not None and not stat.S_ISDIR(info.st_mode):
                kind = "a link" if stat.S_ISLNK(info.st_mode) else "not a directory"
                raise FilesError(f"{path} is {kind}, a directory is wanted: nothing changed")
            dirs_to_be.add(path)
        elif info is not None and stat.S_ISDIR(info.st_mode):
            wanted = "a file"
            if spec["state"] == "absent":
                wanted = "absent (only files and links are removed)"
            raise FilesError(f"{path} is a directory, {wanted} is wanted: nothing changed")


def ensure_all(module: AnsibleModule) -> dict[str, Any]:
    specs = module.params["files"]
    preflight(specs, module.check_mode)
    changed, files, diffs = False, {}, []
    for spec in specs:
        handler = HANDLERS[spec["state"]]
        one_changed, files[spec["path"]], one_diffs = handler(module, spec)
        changed = changed or one_changed
        diffs.extend(one_diffs)
    return {"changed": changed, "files": files, "diff": diffs}


HANDLERS = {"file": ensure_file, "directory": ensure_directory, "absent": ensure_absent}


def main() -> None:
    module = AnsibleModule(argument_spec=ARGUMENT_SPEC, supports_check_mode=True)
    try:
        result = ensure_all(module)
    except FilesError as exc:
        module.fail_json(msg=str(exc))
    if not module._diff:
        result.pop("diff")
    module.exit_json(**result)


if __name__ == "__main__":
    main()
