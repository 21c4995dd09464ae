# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Redaction of secrets in evidence: config diffs, messages, findings (stdlib only).

Used at the source by the pack's modules (their ``diff`` output) and centrally by the
report callback, which loads this file by path. Redaction keeps the line and replaces the
value, so a diff still says which setting it is about:

* ``name = value`` / ``name: value`` / ``"name": "value"`` / ``--name value`` /
  ``name value`` at the start of a line, when the name looks like a password, secret, token
  or key (``vnc_password = "<redacted>"``); references to secrets (``*_uuid``, ``*_file``,
  ``*_dir`` ...) are kept;
* the body of every PEM block (``-----BEGIN ...-----`` to its ``-----END``, or to the end
  of the text when the end is missing), replaced by a short digest so a changed key still
  shows as a changed line;
* lines of base64 that look like a PEM body without its armour (a diff hunk inside a key);
* the password of ``scheme://user:password@host`` URLs;
* values of mapping keys that look secret, also ``{"key": <secret name>, "value": ...}``.

Over-redaction is accepted: evidence may lose a value, it must never carry a secret.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any

REDACTED = "<redacted>"

_WORDS = re.compile(
    r"pass(?:wd|word|phrase)|secret|token|credential|authorization|cookie"
    r"|api_?key|priv(?:ate)?_?key|access_?key|auth_?key|signing_?key|psk",
    re.IGNORECASE,
)
_PARTS = frozenset({"pass", "pwd", "pw", "key", "pin"})
# Names that point at a secret rather than hold one (libvirt's *_secret_uuid, key files).
_REFERENCE = re.compile(
    r"[_.-](?:uuid|dir|path|file|files|usage|size|bits|type|length|enabled)$", re.IGNORECASE
)
_SPLIT = re.compile(r"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")

_PEM = re.compile(r"(-----BEGIN ([A-Z0-9][A-Z0-9 ]*)-----)(.*?)(-----END \2-----|\Z)", re.DOTALL)
_BASE64_LINE = re.compile(r"^([ +\-]?)([A-Za-z0-9+/]{40,}={0,2})[ \t]*$", re.MULTILINE)
_NAME = r"-{0,2}[A-Za-z_][A-Za-z0-9_.-]*"
_QUOTED = r"\"(?:[^\"\\\n]|\\.)*\"?|'[^'\n]*'?"
# name = value | name: value | "name": "value" | --name=value; the value (quoted, or to the
# end of the line) is only read after a secret name, so scanning stays linear.
_ASSIGN = re.compile(
    rf"(?<![\w.-])(?P<q>\\?[\"']?)(?P<name>{_NAME})(?P=q)(?P<sep>[ \t]*[=:][ \t]*)"
)
_VALUE = re.compile(rf"{_QUOTED}|[^\n]*")
# --name value (command lines in messages)
_FLAG = re.compile(r"(?<![\w-])(?P<name>--?[A-Za-z][\w-]*)(?P<sep>[ \t]+)(?=[^\s-])")
_FLAG_VALUE = re.compile(r"\S*")
# name value at the start of a line (grub's "password_pbkdf2 root grub.pbkdf2...", "requirepass x")
_WORDFORM = re.compile(
    r"^(?P<lead>[ \t+\-]*)(?P<name>[A-Za-z_][\w.-]*)(?P<sep>[ \t]+)(?P<val>[^\s=:][^\n]*)$",
    re.MULTILINE,
)
_URL = re.compile(r"(?P<head>\b[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]+:)(?P<val>[^/\s@]+)(?=@)")


def secret_name(name: str) -> bool:
    """True when a setting/key name looks like it holds a password, secret, token or key."""
    bare = name.lstrip("-")
    if not bare or _REFERENCE.search(bare):
        return False
    if _WORDS.search(bare):
        return True
    parts = [p.lower() for p in _SPLIT.split(bare) if p]
    # A bare "key" is too generic (dict2items loops, catalogue fields); key with a qualifier
    # (ssh_key, tls_key) is not.
    return len(parts) > 1 and any(p in _PARTS for p in parts)


def _digest(body: str) -> str:
    # High-entropy key material only: a short digest leaks nothing and shows a change.
    clean = re.sub(r"[^A-Za-z0-9+/=]", "", body)
    return hashlib.sha256(clean.encode()).hexdigest()[:12]


def _pem(match: re.Match[str]) -> str:
    begin, _, body, end = match.groups()
    lines = [line.lstrip(" +-") for line in body.split("\n")]
    if all(not line or line.startswith(REDACTED[:-1]) for line in lines):
        return match.group(0)  # already redacted (also a diff of two redacted blocks)
    nl = "\n" if "\n" in body else ""
    return f"{begin}{nl}<redacted sha256:{_digest(body)}>{nl}{end}"


def _value(val: str) -> str | None:
    """The redacted form of a value, or None when there is nothing to hide."""
    for quote in ('\\"', '"', "'"):
        if len(val) >= 2 * len(quote) and val.startswith(quote):
            inner = val[len(quote) :]
            inner = inner[: -len(quote)] if inner.endswith(quote) else inner
            if not inner or inner == REDACTED:
                return None
            return f"{quote}{REDACTED}{quote}"
    stripped = val.strip()
    if not stripped or stripped in (REDACTED, '""', "''") or stripped.startswith(REDACTED):
        return None
    return REDACTED


def _sub_values(pattern: re.Pattern[str], value_re: re.Pattern[str], text: str) -> str:
    """Replace the values of secret names; after any other name go on right after its
    separator, so ``note: vnc_password = x`` still finds the password."""
    out: list[str] = []
    pos = 0
    while (match := pattern.search(text, pos)) is not None:
        start = match.end("sep")
        value = value_re.match(text, start) if secret_name(match.group("name")) else None
        new = _value(value.group(0)) if value else None
        out.append(text[pos:start] + (new or ""))
        pos = value.end() if value and new is not None else start
    out.append(text[pos:])
    return "".join(out)


def _word_form(match: re.Match[str]) -> str:
    if not secret_name(match.group("name")) or match.group("val").strip() == REDACTED:
        return match.group(0)
    return f"{match.group('lead')}{match.group('name')}{match.group('sep')}{REDACTED}"


def _base64_line(match: re.Match[str]) -> str:
    body = match.group(2)
    # Hex checksums are base64 characters too: a PEM line mixes upper and lower case.
    if not (re.search(r"[a-z]", body) and re.search(r"[A-Z]", body)):
        return match.group(0)
    return f"{match.group(1)}<redacted sha256:{_digest(body)}>"


def redact_text(text: str) -> str:
    """``text`` with secrets replaced (see the module docstring); idempotent."""
    if not text:
        return text
    text = _PEM.sub(_pem, text)
    text = _BASE64_LINE.sub(_base64_line, text)
    text = _URL.sub(lambda m: m.group("head") + REDACTED, text)
    text = _sub_values(_ASSIGN, _VALUE, text)
    text = _WORDFORM.sub(_word_form, text)
    return _sub_values(_FLAG, _FLAG_VALUE, text)


def redact(value: Any) -> Any:
    """Redact a JSON-like value: strings, and values under secret-looking mapping keys."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        named = value.get("key") if set(value) == {"key", "value"} else None
        if isinstance(named, str) and secret_name(named):
            return {"key": named, "value": REDACTED}
        return {
            k: REDACTED
            if isinstance(k, str) and secret_name(k) and v not in (None, "", [], {})
            else redact(v)
            for k, v in value.items()
        }
    if isinstance(value, list | tuple):
        return [redact(v) for v in value]
    return value
