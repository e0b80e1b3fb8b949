"""TOML for the application: reading with line numbers, :class:`SpecError`, writing, paths.

Run specifications (:mod:`bayesresnet.app.runspec`) and studies
(:mod:`bayesresnet.app.study`) are TOML files whose errors name the file and line of the
offending key. ``tomllib`` reads TOML but keeps no positions, so :func:`key_lines` scans
the text for the line of every key; :func:`line_of` finds the line of a key path (or of
its nearest ancestor). :func:`literal` writes one value as TOML writes it (used both in
messages and by :func:`dumps`, which writes a resolved run spec back as a file).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import tomllib
from collections.abc import Mapping
from pathlib import Path

__all__ = [
    "SpecError",
    "Lines",
    "Locator",
    "read_text",
    "loads",
    "key_lines",
    "line_of",
    "literal",
    "describe",
    "dumps",
    "resolve_path",
]

#: Key path (e.g. ``("network", "width")``) → 1-based line number in the TOML text.
Lines = Mapping[tuple[str, ...], int]


class SpecError(ValueError):
    """An invalid specification; the message starts with ``"spec.toml, line 7: "``.

    Attributes:
        file: The spec file (a string), or None for a spec given as text or a dict.
        line: The 1-based line of the offending key, or None when unknown.
        key: The dotted key (e.g. ``"network.width"``), or None for file-level errors.
    """

    def __init__(self, message: str, *, file: str | None = None, line=None, key=None):
        self.file, self.line, self.key = file, line, key
        location = ", ".join(p for p in (file, None if line is None else f"line {line}") if p)
        super().__init__(f"{location}: {message}" if location else message)


class Locator:
    """Makes :class:`SpecError` located at a key path of one TOML file.

    Args:
        file: The file (for messages), or None for a spec given as text or a dict.
        lines: Key path → line (:func:`key_lines` of the file's text).
    """

    def __init__(self, file: str | None, lines: Lines):
        self.file, self.lines = file, lines

    def error(self, path: tuple[str, ...], message: str) -> SpecError:
        """A SpecError for the key ``path`` (e.g. ``("grid", "width")``), at its line."""
        line = line_of(self.lines, path)
        return SpecError(message, file=self.file, line=line, key=".".join(path) or None)


# ---------------------------------------------------------------------------- reading


def read_text(path: Path) -> str:
    """The text of a spec file (UTF-8, a byte-order mark dropped)."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(f"the file is not UTF-8 text: {error}.", file=str(path)) from error


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def loads(text: str, file: str | None) -> dict:
    """``tomllib.loads``, a syntax error raised as a SpecError with its line and column."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message, line = str(error), None
        if position := _TOML_POSITION.search(message):
            message = message[: position.start()] + f" (column {position.group(2)})"
            line = int(position.group(1))
        hint = ""
        if message.startswith("Invalid value"):
            hint = ' Strings need quotes (basis = "cubic"); booleans are true or false.'
        raise SpecError(f"invalid TOML: {message}.{hint}", file=file, line=line) from None


# ------------------------------------------------------------------------ line numbers

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_TABLE_RE = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(rf"^\s*({_DOTTED})\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_PART, dotted)
    return tuple(p[1:-1] if p[0] in "\"'" else p for p in parts)


def key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line of every key and table header in a TOML text, keyed by the full key path.

    tomllib gives no positions, so this scans the text: ``[a.b]`` headers set the current
    table, and ``key = ...`` or ``dotted.key = ...`` lines inside it record
    ``(*table, *key)``. ``[[x]]`` headers open ``("x", "0")``, ``("x", "1")``…, and a
    ``[x.y]`` header after them belongs to the last element. Lines inside multi-line
    strings are skipped. Keys inside inline tables are not recorded; :func:`line_of`
    falls back to the enclosing key's line.
    """
    arrays: dict[tuple[str, ...], int] = {}
    lines: dict[tuple[str, ...], int] = {}
    table: tuple[str, ...] = ()
    delimiter = None  # the closing quotes while inside a multi-line string
    for number, line in enumerate(text.splitlines(), start=1):
        if delimiter is not None:
            if line.count(delimiter) % 2 == 1:
                delimiter = None
            continue
        if header := _TABLE_RE.match(line):
            table = _split_key(header.group(1))
            if line.lstrip().startswith("[["):
                arrays[table] = arrays.get(table, -1) + 1
                table = (*table, str(arrays[table]))
            else:
                for array, count in arrays.items():
                    if table[: len(array)] == array and len(table) > len(array):
                        table = (*array, str(count), *table[len(array) :])
            lines.setdefault(table, number)
        elif key := _KEY_RE.match(line):
            lines.setdefault((*table, *_split_key(key.group(1))), number)
        for quotes in ('"""', "'''"):
            if line.count(quotes) % 2 == 1:
                delimiter = quotes
                break
    return lines


def line_of(lines: Lines, path: tuple[str, ...]) -> int | None:
    """The line of ``path``, else of its nearest ancestor (first line of any key under it)."""
    for size in range(len(path), 0, -1):
        prefix = path[:size]
        if prefix in lines:
            return lines[prefix]
        below = [n for p, n in lines.items() if p[:size] == prefix]
        if below:
            return min(below)
    return None


# ---------------------------------------------------------------------------- writing


def literal(value) -> str:
    """``value`` written as TOML writes it: ``"8"``, ``true``, ``0.1``, ``[1, 2]``, ``{a = 1}``.

    Every value ``tomllib`` returns can be written (floats keep every digit; ``nan`` and
    ``inf`` as TOML spells them; dates and times in ISO form).

    Raises:
        TypeError: For a value TOML cannot hold (e.g. None).
    """
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list | tuple):
        return "[" + ", ".join(literal(v) for v in value) + "]"
    if isinstance(value, Mapping):
        return "{" + ", ".join(f"{_key(k)} = {literal(v)}" for k, v in value.items()) + "}"
    if isinstance(value, datetime.date | datetime.time):
        return value.isoformat()
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def describe(value) -> str:
    """``value`` with its TOML type, for messages: 'the string "8"'."""
    if isinstance(value, dict):
        return "a table"
    kinds = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"))
    kind = next((word for cls, word in kinds if isinstance(value, cls)), None)
    if kind is None:
        kind = "array" if isinstance(value, list) else "date/time"
    return f"the {kind} {literal(value)}"


def _key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def dumps(spec: Mapping) -> str:
    """A spec of nested dicts (e.g. :meth:`RunSpec.to_dict`) as TOML text (None values left out).

    Scalars and lists come first, then one ``[table]`` per dict, sub-tables after their
    parent's keys: ``tomllib.loads(dumps(d))`` gives ``d`` back (less the None values).
    """
    lines = [f"{_key(k)} = {literal(v)}" for k, v in spec.items() if _is_value(v)]

    def table(prefix: str, t: Mapping) -> None:
        lines.append(f"\n[{prefix}]")
        lines.extend(f"{_key(k)} = {literal(v)}" for k, v in t.items() if _is_value(v))
        for k, v in t.items():
            if isinstance(v, dict):
                table(f"{prefix}.{_key(k)}", v)

    for k, v in spec.items():
        if isinstance(v, dict):
            table(_key(k), v)
    return "\n".join(lines).lstrip("\n") + "\n"


def _is_value(value) -> bool:
    return value is not None and not isinstance(value, dict)


# ------------------------------------------------------------------------------ paths


def resolve_path(value: str | os.PathLike, base_dir: str | os.PathLike) -> Path:
    """``value`` as an absolute path: ``~`` expanded, a relative path taken from ``base_dir``."""
    path = Path(value).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else Path(base_dir) / path))
