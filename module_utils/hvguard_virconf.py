# Copyright: hvguard contributors
# SPDX-License-Identifier: Apache-2.0
"""Parser and in-place editor for libvirt's config grammar (virconf).

The grammar follows libvirt's src/util/virconf.c, which reads libvirtd.conf, qemu.conf,
virtqemud.conf and friends:

* ``name = value`` statements; a name starts with an ASCII letter followed by letters,
  digits or ``_``; statements end at a newline or ``;``.
* values: integers (``[+-]digits``), strings in ``"..."`` or ``'...'`` (one line, no
  escape sequences: libvirt has none) or ``\"\"\"...\"\"\"`` (may span lines), and lists
  ``[ v, v, ]`` that may span lines (no comments inside a list).
* ``#`` starts a comment, either on its own line or after a value.
* the first occurrence of a name wins when libvirt reads the file.

Documents keep the original text: unchanged files serialize byte-identically, and edits
replace only the bytes of the statements they touch.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

ConfValue = int | str | list

MANAGED_HEADER = "# Managed by hvguard"
NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*\Z")
_BLANK = " \t"
_DIGITS = "0123456789"
_EOL = "\n\r"


class VirConfError(ValueError):
    """A syntax error, with the 1-based line number where the parser stopped."""

    def __init__(self, message: str, line: int, source: str = "") -> None:
        self.message = message
        self.line = line
        self.source = source
        prefix = f"{source}:" if source else "line "
        super().__init__(f"{prefix}{line}: {message}")


@dataclass
class Entry:
    """One ``name = value`` statement and where it sits in the text."""

    name: str
    value: ConfValue
    start: int  # offset of the first character of the name
    end: int  # offset just after the value
    line: int


@dataclass
class _Parser:
    text: str
    source: str = ""
    pos: int = 0
    entries: list[Entry] = field(default_factory=list)

    # -- helpers -------------------------------------------------------------------------
    def line_at(self, pos: int) -> int:
        return self.text.count("\n", 0, pos) + 1

    def error(self, message: str) -> VirConfError:
        return VirConfError(message, self.line_at(self.pos), self.source)

    def cur(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def skip_blanks(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANK:
            self.pos += 1

    def skip_blanks_and_eol(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] in _BLANK + _EOL:
            self.pos += 1

    def skip_to_eol(self) -> None:
        while self.pos < len(self.text) and self.text[self.pos] not in _EOL:
            self.pos += 1

    # -- grammar -------------------------------------------------------------------------
    def parse(self) -> list[Entry]:
        while self.pos < len(self.text):
            self.statement()
            self.separator()
        return self.entries

    def statement(self) -> None:
        self.skip_blanks_and_eol()
        if self.cur() == "#":
            self.skip_to_eol()
            return
        start = self.pos
        name = self.name()
        self.skip_blanks()
        if self.cur() != "=":
            raise self.error("expecting an assignment")
        self.pos += 1
        self.skip_blanks()
        value = self.value()
        end = self.pos
        self.skip_blanks()
        if self.cur() == "#":
            self.skip_to_eol()
        self.entries.append(Entry(name, value, start, end, self.line_at(start)))

    def separator(self) -> None:
        self.skip_blanks()
        if self.pos >= len(self.text):
            return
        if self.cur() in _EOL:
            self.skip_blanks_and_eol()
        elif self.cur() == ";":
            self.pos += 1
            self.skip_blanks_and_eol()
        else:
            raise self.error("expecting a separator")

    def name(self) -> str:
        start = self.pos
        if not (self.cur().isascii() and self.cur().isalpha()):
            raise self.error("expecting a name")
        while self.pos < len(self.text) and (
            (self.text[self.pos].isascii() and self.text[self.pos].isalnum())
            or self.text[self.pos] == "_"
        ):
            self.pos += 1
        return self.text[start : self.pos]

    def value(self) -> ConfValue:
        self.skip_blanks()
        char = self.cur()
        if not char:
            raise self.error("expecting a value")
        if char in "\"'":
            return self.string()
        if char == "[":
            return self.list_value()
        if char in _DIGITS + "+-":
            return self.number()
        raise self.error("expecting a value")

    def string(self) -> str:
        text = self.text
        # Same test as libvirt: triple quotes only when at least 7 characters remain.
        if text.startswith('"""', self.pos) and self.pos + 6 < len(text):
            start = self.pos + 3
            close = text.find('"""', start)
            if close < 0:
                # libvirt's scan stops two characters short of the end (line numbers too).
                self.pos = max(start, len(text) - 2)
                raise self.error("unterminated string")
            self.pos = close + 3
            return text[start:close]
        quote = text[self.pos]
        self.pos += 1
        start = self.pos
        while self.pos < len(text) and text[self.pos] != quote and text[self.pos] not in _EOL:
            self.pos += 1
        if self.cur() != quote:
            raise self.error("unterminated string")
        self.pos += 1
        return text[start : self.pos - 1]

    def number(self) -> int:
        start = self.pos
        if self.cur() in "+-":
            self.pos += 1
        if not self.cur() or self.cur() not in _DIGITS:
            raise self.error("unterminated number")
        while self.cur() and self.cur() in _DIGITS:
            self.pos += 1
        return int(self.text[start : self.pos])

    def list_value(self) -> list:
        self.pos += 1  # '['
        self.skip_blanks_and_eol()
        items: list = []
        if self.pos < len(self.text) and self.cur() != "]":
            items.append(self.value())
            self.skip_blanks_and_eol()
        while self.pos < len(self.text) and self.cur() != "]":
            if self.cur() != ",":
                raise self.error("expecting a separator in list")
            self.pos += 1
            self.skip_blanks_and_eol()
            if self.cur() == "]":
                break
            items.append(self.value())
            self.skip_blanks_and_eol()
        if self.cur() != "]":
            raise self.error("list is not closed with ]")
        self.pos += 1
        return items


def parse(text: str, source: str = "") -> list[Entry]:
    """Parse ``text``; return its statements in file order or raise VirConfError."""
    return _Parser(text, source).parse()


def validate(text: str, source: str = "") -> None:
    """Raise VirConfError (with the line number) if libvirt would reject ``text``."""
    parse(text, source)


# -- Python values -> virconf text ---------------------------------------------------------
def normalize(value: object, key: str = "value") -> ConfValue:
    """Map a Python value to its virconf type: bool -> 0/1, int, str, list of str."""
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int | str):
        return value
    if isinstance(value, list | tuple):
        bad = [item for item in value if not isinstance(item, str)]
        if bad:
            raise TypeError(
                f"{key}: list items must be strings, got {type(bad[0]).__name__} {bad[0]!r}"
            )
        return list(value)
    raise TypeError(
        f"{key}: unsupported type {type(value).__name__} (use str, int, bool or list of str)"
    )


def format_string(value: str) -> str:
    """Quote a string the way libvirt's own writer does (there are no escapes)."""
    if "\n" not in value and "\r" not in value:
        if '"' not in value:
            return f'"{value}"'
        if "'" not in value:
            return f"'{value}'"
    if '"""' in value or value.endswith('"'):
        raise ValueError(f"string cannot be written in libvirt config syntax: {value!r}")
    return f'"""{value}"""'


def format_value(value: object, key: str = "value") -> str:
    value = normalize(value, key)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return format_string(value)
    return "[ " + ", ".join(format_string(item) for item in value) + " ]" if value else "[ ]"


def format_entry(name: str, value: object) -> str:
    return f"{name} = {format_value(value, name)}"


def check_name(name: object) -> str:
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise ValueError(
            f"invalid libvirt config key {name!r}: must start with a letter and contain "
            "only letters, digits and '_'"
        )
    return name


# -- the editable document -----------------------------------------------------------------
class VirConf:
    """A virconf file kept as text, with the parsed statements for lookups and edits."""

    def __init__(self, text: str = "", source: str = "") -> None:
        self.source = source
        self.text = text
        self.entries = parse(text, source)

    def get(self, name: str, default: ConfValue | None = None) -> ConfValue | None:
        """The value libvirt uses: the first occurrence."""
        for entry in self.entries:
            if entry.name == name:
                return entry.value
        return default

    def as_dict(self) -> dict[str, ConfValue]:
        result: dict[str, ConfValue] = {}
        for entry in self.entries:
            result.setdefault(entry.name, entry.value)
        return result

    def occurrences(self, name: str) -> list[Entry]:
        return [entry for entry in self.entries if entry.name == name]

    def _reparse(self, text: str) -> None:
        self.entries = parse(text, self.source)
        self.text = text

    def _removal_span(self, entry: Entry) -> tuple[int, int]:
        """Span to cut for ``entry``: its whole line(s) when no other statement shares them."""
        text = self.text
        line_start = text.rfind("\n", 0, entry.start) + 1
        line_end = text.find("\n", entry.end)
        line_end = len(text) if line_end < 0 else line_end + 1
        alone = text[line_start : entry.start].strip(_BLANK) == "" and not any(
            other.start != entry.start and line_start <= other.start < line_end
            for other in self.entries
        )
        if alone:
            # The line's trailing comment belonged to this statement: it goes too.
            return line_start, line_end
        # Shares its line: cut it with the ';' that joins it to its neighbour.
        after = entry.end + len(text[entry.end :]) - len(text[entry.end :].lstrip(_BLANK))
        if text.startswith(";", after):
            stop = after + 1
            while stop < len(text) and text[stop] in _BLANK:
                stop += 1
            return entry.start, stop
        before = len(text[: entry.start].rstrip(_BLANK))
        if before > 0 and text[before - 1] == ";":
            return len(text[: before - 1].rstrip(_BLANK)), entry.end
        return entry.start, entry.end

    def set(self, name: str, value: object) -> bool:
        """Set ``name``; return True when the text changed.

        The first occurrence is replaced in place (only when its value differs), later
        duplicates are removed, a missing key is appended under the managed header.
        """
        check_name(name)
        wanted = normalize(value, name)
        occurrences = self.occurrences(name)
        changed = False
        # Remove duplicates from the end so earlier offsets stay valid.
        for entry in reversed(occurrences[1:]):
            start, end = self._removal_span(entry)
            self._reparse(self.text[:start] + self.text[end:])
            changed = True
        first = self.occurrences(name)[:1]
        if first:
            entry = first[0]
            if entry.value != wanted or type(entry.value) is not type(wanted):
                new = format_entry(name, wanted)
                self._reparse(self.text[: entry.start] + new + self.text[entry.end :])
                changed = True
            return changed
        self._reparse(self._appended(format_entry(name, wanted)))
        return True

    def _appended(self, statement: str) -> str:
        text = self.text
        if text and not text.endswith("\n"):
            text += "\n"
        if MANAGED_HEADER not in text.splitlines():
            text += ("\n" if text.strip() else "") + MANAGED_HEADER + "\n"
        return text + statement + "\n"

    def remove(self, name: str) -> bool:
        """Remove every occurrence of ``name``; return True when the text changed."""
        check_name(name)
        occurrences = self.occurrences(name)
        for entry in reversed(occurrences):
            start, end = self._removal_span(entry)
            self._reparse(self.text[:start] + self.text[end:])
        return bool(occurrences)


def apply(
    text: str,
    settings: dict[str, object] | None = None,
    absent: list[str] | None = None,
    source: str = "",
) -> tuple[str, list[str]]:
    """Apply ``settings`` and ``absent`` to ``text``; return (new_text, changed_keys).

    Raises VirConfError for an invalid input text, ValueError/TypeError for bad keys or
    values, and VirConfError if the result would not read back as requested (a bug guard).
    """
    settings = settings or {}
    absent = absent or []
    for key in list(settings) + list(absent):
        check_name(key)
    both = sorted(set(settings) & set(absent))
    if both:
        raise ValueError(f"keys both in settings and absent: {', '.join(both)}")
    wanted = {key: normalize(value, key) for key, value in settings.items()}
    for value in wanted.values():
        format_value(value)  # raises early for strings libvirt cannot represent
    conf = VirConf(text, source)
    changed: list[str] = []
    for key, value in wanted.items():
        if conf.set(key, value):
            changed.append(key)
    for key in absent:
        if conf.remove(key):
            changed.append(key)
    verify(conf.text, wanted, absent, source)
    return conf.text, changed


def verify(text: str, wanted: dict[str, ConfValue], absent: list[str], source: str = "") -> None:
    """Re-parse ``text`` and check libvirt would read exactly the requested values."""
    result = VirConf(text, source)
    for key, value in wanted.items():
        got = result.get(key)
        if got != value or type(got) is not type(value):
            raise VirConfError(f"{key} reads back as {got!r}, expected {value!r}", 0, source)
    for key in absent:
        if result.occurrences(key):
            raise VirConfError(f"{key} is still present", 0, source)
