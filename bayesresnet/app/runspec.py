"""Run specifications: a TOML file, validated before any work, turned into the library's objects.

A run specification says which data to fit, with which network, prior and inference
method, and what the report shows. ``bayesresnet fit SPEC.toml`` reads one; the files in
``models/`` are ready-made examples; :mod:`bayesresnet.app.spec` lists the sections and keys.

Everything is checked when the spec is read, before data are loaded or a fit starts. This
module does the TOML work (syntax, the line of every key, unknown keys with a "did you
mean" suggestion, TOML types, paths relative to the spec file); the values are checked by
the library's own constructors (:mod:`bayesresnet.app.spec`, ``ResNetSpec``, ``PriorSpec``,
the method's config, ``problems``, ``bases``, ``data``), whose errors become a
:class:`SpecError` at the file and line of the key they name.

Example:
    >>> from bayesresnet.app.runspec import load_runspec
    >>> spec = load_runspec("models/default.toml")
    >>> dataset = spec.load_dataset()
    >>> posterior = bayesresnet.fit(spec.resnet_spec(dataset), dataset, **spec.fit_kwargs())
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import os
import re
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from bayesresnet import problems
from bayesresnet._validate import check_int, did_you_mean
from bayesresnet.app.spec import DataSpec, NetworkSpec, ReportSpec, RunSpec
from bayesresnet.app.toml import (
    Lines,
    Locator,
    SpecError,
    describe,
    key_lines,
    line_of,
    literal,
    loads,
    read_text,
    resolve_path,
)
from bayesresnet.data import check_transforms, transform_masks
from bayesresnet.infer import AUTO, METHODS
from bayesresnet.model import PriorSpec

# RunSpec and its sections are defined in bayesresnet.app.spec and importable from here too.
__all__ = ["SpecError", "load_runspec", "parse_runspec", "from_dict"]

# ---------------------------------------------------------------------------- sections

_TOP_KEYS = ("name", "data", "network", "prior", "inference", "report")
_PROBLEM_KEYS = ("problem", "problem_options", "num_train", "num_test", "noise", "design")
_FILE_KEYS = ("train", "test", "outputs", "test_fraction")
_DATA_KEYS = (*_PROBLEM_KEYS, *_FILE_KEYS, "seed", "transforms")


def _field_kinds(cls, **overrides) -> dict[str, str | None]:
    """Field name → TOML kind (int, float, bool, str; ``X | None`` → X) of a dataclass."""

    def kind(annotation) -> str | None:
        if typing.get_origin(annotation) in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(annotation) if a is not type(None)]
            return kind(args[0]) if len(args) == 1 else None
        return {int: "int", float: "float", bool: "bool", str: "str"}.get(annotation)

    hints = typing.get_type_hints(cls)
    return {**{f.name: kind(hints[f.name]) for f in dataclasses.fields(cls)}, **overrides}


_DATA_TYPES = _field_kinds(
    DataSpec,
    problem_options="table",
    train="str",
    test="str",
    outputs="outputs",
    transforms="table",
)
_NETWORK_TYPES = _field_kinds(NetworkSpec)
_REPORT_TYPES = _field_kinds(ReportSpec, levels="float_list")
_PRIOR_TYPES = _field_kinds(PriorSpec)
_METHOD_TYPES = {method: _field_kinds(config) for method, (config, *_) in METHODS.items()}
_METHOD_TYPES[AUTO] = {}  # "auto" chooses a method from the data; it takes no options


#: Section → allowed keys (inference: every method's options), for misplaced-key hints
#: here and for the run-spec keys a study's grid may set.
SECTION_KEYS: dict[str, tuple[str, ...]] = {
    "data": _DATA_KEYS,
    "network": tuple(_NETWORK_TYPES),
    "prior": tuple(_PRIOR_TYPES),
    "inference": ("method", "seed", *sorted({k for m in _METHOD_TYPES.values() for k in m})),
    "report": tuple(_REPORT_TYPES),
}


# ------------------------------------------------------------------------ value checks


#: TOML kind → (how messages name it, the test of a value).
_KINDS: dict[str, tuple[str, Callable]] = {
    "int": ("an integer", lambda v: isinstance(v, int) and not isinstance(v, bool)),
    "float": ("a number", lambda v: isinstance(v, int | float) and not isinstance(v, bool)),
    "bool": ("true or false", lambda v: isinstance(v, bool)),
    "str": ("a string", lambda v: isinstance(v, str)),
    "table": ("a table", lambda v: isinstance(v, dict)),
    "float_list": (
        "a list of numbers",
        lambda v: isinstance(v, list) and all(_KINDS["float"][1](x) for x in v),
    ),
    "outputs": (
        "a list of column names or an integer count of trailing columns",
        lambda v: (
            _KINDS["int"][1](v)
            or isinstance(v, str)
            or (isinstance(v, list) and all(isinstance(x, str) for x in v))
        ),
    ),
}


def _type_hint(key: str, value, kind: str) -> str:
    """The fix for a wrongly typed value, when an obvious one exists."""
    if kind in ("int", "float") and isinstance(value, str):
        try:
            number = int(value) if kind == "int" else float(value)
        except ValueError:
            return ""
        return f" Remove the quotes: {key} = {number}."
    if kind == "int" and isinstance(value, float):
        if value.is_integer():
            return f" Write it without a decimal point: {key} = {int(value)}."
        return " Use a whole number."
    if kind == "bool" and isinstance(value, str) and value.lower() in ("true", "false"):
        return f" Write it without quotes, in lower case: {key} = {value.lower()}."
    if kind == "str" and not isinstance(value, dict | list):
        return f' Quote it: {key} = "{literal(value)}".'
    return ""


class _Checker(Locator):
    """Raises :class:`SpecError` located at a key path of one spec."""

    def table(self, raw: Mapping, section: str) -> dict:
        """``raw[section]`` as a dict ({} when absent)."""
        value = raw.get(section, {})
        if not isinstance(value, dict):
            raise self.error(
                (section,),
                f"[{section}] must be a table of settings; got {describe(value)}. "
                f"Write a [{section}] header followed by `key = value` lines.",
            )
        return value

    def known(self, table: Mapping, section: tuple[str, ...], allowed, *, note="", method=None):
        """Every key of ``table`` is in ``allowed``; the first unknown one (by line) is named."""
        unknown = [k for k in table if k not in allowed]
        if not unknown:
            return
        key = min(unknown, key=lambda k: line_of(self.lines, (*section, k)) or 0)
        # An option of another method usually means the method was switched and the old
        # options were left behind: say so, unless the key is a likely misspelling.
        owners = [m for m, kinds in _METHOD_TYPES.items() if key in kinds and m != method]
        allowed_text = ", ".join(sorted(allowed)) if allowed else "none"
        if method is not None and owners and not did_you_mean(key, allowed):
            raise self.error(
                (*section, key),
                f"unknown key '{key}' in [inference]: it is an option of method "
                f'{" and ".join(repr(m) for m in owners)}, not of method = "{method}". Remove '
                f'it, or change `method`. Allowed keys for "{method}": {allowed_text}.',
            )
        where = f"[{'.'.join(section)}]" if section else "the top level"
        message = f"unknown key '{key}' {'in' if section else 'at'} {where}{note}."
        close = did_you_mean(key, allowed)
        homes = [s for s, keys in SECTION_KEYS.items() if key in keys and section != (s,)]
        if close:
            message += close
        elif homes and len(section) < 2:
            message += f" '{key}' belongs in [{homes[0]}]; move it there."
        message += f" Allowed keys {'in' if section else 'at'} {where}: {allowed_text}."
        raise self.error((*section, key), message)

    def typed(self, table: Mapping, section: tuple[str, ...], kinds: Mapping) -> dict:
        """``table`` with each value checked against its kind (ints become floats for floats)."""
        out = {}
        for key, value in table.items():
            kind = kinds.get(key)
            wrong = kind is not None and not _KINDS[kind][1](value)
            if wrong or (kind == "float_list" and value == []):
                words = _KINDS[kind][0] if wrong else "a non-empty list"
                raise self.error(
                    (*section, key),
                    f"`{key}` in [{'.'.join(section)}] must be {words}; got "
                    f"{describe(value)}.{_type_hint(key, value, kind) if wrong else ''}",
                )
            out[key] = float(value) if kind == "float" else value
        return out

    def build(self, section: tuple[str, ...], raw: Mapping, function: Callable, *args, **kw):
        """``function(*args, **kw)``; a library error is placed at the key its message names.

        The key is the last-written key of ``raw`` that the message names in backticks, else
        ``fallback`` (a keyword of this call). In [data] and [network] the values are quoted
        as TOML writes them (``"cubic"``, ``key = 3``), as the user wrote them.
        """
        fallback = kw.pop("fallback", None)
        try:
            return function(*args, **kw)
        except (TypeError, ValueError) as error:
            message = str(error)
            if section[:1] in (("data",), ("network",)):
                for value in (v for v in raw.values() if isinstance(v, str)):
                    message = message.replace(repr(value), json.dumps(value))
                message = re.sub(r"`(\w+)`=", r"`\1` = ", message)
            named = [k for k in re.findall(r"`(\w+)(?:\[\d+\])?`", message) if k in raw]
            key = max(named, key=lambda k: line_of(self.lines, (*section, k)) or 0, default=None)
            path = (*section, key or fallback) if key or fallback else section
            prefix = f"[{'.'.join(section)}] " if section else ""
            raise self.error(path, prefix + message) from error


# ------------------------------------------------------------------------------ parsing


def load_runspec(path: str | os.PathLike) -> RunSpec:
    """Reads and validates a run specification from a TOML file (see :func:`from_dict`).

    Data paths in the file are relative to the file's folder; ``name`` defaults to its stem.

    Raises:
        FileNotFoundError: If ``path`` is not an existing file.
        SpecError: If the file is not UTF-8 text or valid TOML, or the spec is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"`path`: no run specification file {path} (resolved from {Path.cwd()}); "
            "pass the path of a .toml file, e.g. models/default.toml."
        )
    return parse_runspec(read_text(path), path=path)


def parse_runspec(
    text: str, *, path: str | os.PathLike | None = None, base_dir: str | os.PathLike | None = None
) -> RunSpec:
    """Parses and validates a run specification from TOML text (see :func:`from_dict`).

    Raises:
        TypeError: If ``text`` is not a str.
        SpecError: If the text is not valid TOML (with line and column) or the spec is
            invalid.
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str of TOML; got {type(text).__name__}.")
    raw = loads(text, None if path is None else str(path))
    return from_dict(raw, path=path, base_dir=base_dir, lines=key_lines(text))


def from_dict(
    d: Mapping[str, Any],
    *,
    path: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
    lines: Lines | None = None,
) -> RunSpec:
    """Validates a run specification given as nested dicts (as ``tomllib`` returns).

    Per section: unknown keys, TOML types, then the section's constructor
    (:class:`DataSpec`, :class:`NetworkSpec`, ``PriorSpec``, the method's config,
    :class:`ReportSpec`), whose error is placed at the key it names. ``[data]`` first checks
    which keys apply to its source and that its files exist.

    Args:
        d: The spec, e.g. ``tomllib.load`` output or :meth:`RunSpec.to_dict`.
        path: The spec file (for messages and the default name).
        base_dir: The folder relative data paths are resolved against (default: ``path``'s
            folder, else the working directory).
        lines: Key path → line number, for messages (``parse_runspec`` supplies it).

    Raises:
        TypeError: If ``d`` is not a mapping.
        SpecError: For the first problem found, naming the key, its line when known,
            what is allowed and what was given.
    """
    if not isinstance(d, Mapping):
        raise TypeError(f"`d` must be a mapping of sections; got {type(d).__name__}.")
    path = None if path is None else Path(path)
    if base_dir is None:
        base_dir = path.parent if path is not None else Path.cwd()
    check = _Checker(None if path is None else str(path), lines or {})
    check.known(d, (), _TOP_KEYS)
    if "data" not in d:
        raise check.error(
            (),
            'the spec has no [data] section; add one with `problem = "sine"` (one of '
            f'{problems.names()}) or `train = "path/to/data.csv"`.',
        )
    name = d.get("name", path.stem if path is not None else "run")
    data = _parse_data(check.table(d, "data"), Path(base_dir), check)
    sections = {}
    for section, kinds, cls in (
        ("network", _NETWORK_TYPES, NetworkSpec),
        ("prior", _PRIOR_TYPES, PriorSpec),
        ("report", _REPORT_TYPES, ReportSpec),
    ):
        raw = check.table(d, section)
        check.known(raw, (section,), kinds)
        raw = check.typed(raw, (section,), kinds)
        sections[section] = check.build((section,), raw, cls, fallback="basis", **raw)
    if not check.table(d, "prior"):  # no [prior]: the default, or the one auto chooses
        sections["prior"] = None
    method, seed, options = _parse_inference(check.table(d, "inference"), check)
    parts = (data, sections["network"], sections["prior"], method, seed, options)
    return check.build((), {"name": name}, RunSpec, name, path, *parts, sections["report"])


def _parse_data(raw: dict, base_dir: Path, check: _Checker) -> DataSpec:
    section = ("data",)
    check.known(raw, section, _DATA_KEYS)
    raw = check.typed(raw, section, _DATA_TYPES)
    transforms = raw.pop("transforms", {})
    data = _parse_source(raw, base_dir, check)
    # Each transform is checked on its own, so an error points at its line.
    where = ("data", "transforms")
    names = data.column_names() if transforms else None
    for key, value in transforms.items():
        check.build(where, {}, check_transforms, {key: value}, fallback=key)
        if names is not None:
            check.build(where, {}, transform_masks, {key: value}, *names, fallback=key)
    if not transforms:
        return data
    return check.build(section, raw, dataclasses.replace, data, transforms=transforms)


def _parse_source(raw: dict, base_dir: Path, check: _Checker) -> DataSpec:
    """The ``[data]`` section less its transforms: the data source."""
    section = ("data",)
    fields, problem, train = dict(raw), raw.get("problem"), raw.get("train")
    if (problem is None) == (train is None):  # DataSpec says why
        return check.build(section, raw, DataSpec, fallback="train", **fields)
    suffix = Path(train or "").suffix.lower()
    # Keys that apply to another data source: (this source, its foreign keys, why, fix).
    foreign = (
        (problem, _FILE_KEYS, "a data file (`train`), but [data] uses problem = ", problem),
        (train, _PROBLEM_KEYS, "a built-in `problem`, but [data] reads the file train = ", train),
        (
            suffix == ".npz",
            ("test", "outputs"),
            "CSV files; an .npz archive holds x_train/y_train (and x_test/y_test) itself",
            None,
        ),
    )
    for applies, keys, why, value in foreign:
        for key in [k for k in keys if k in raw and applies][:1]:
            fix = f"{json.dumps(value)}; remove `{key}`" if value is not None else ". Remove it"
            raise check.error(("data", key), f"`{key}` in [data] applies only to {why}{fix}.")
    if problem is not None:
        check.build(section, raw, problems.check_name, problem, fallback="problem")
        options = fields.setdefault("problem_options", {})
        accepted = list(inspect.signature(getattr(problems, f"make_{problem}")).parameters)
        where = ("data", "problem_options")
        check.known(options, where, accepted, note=f" (the options of problem '{problem}')")
        check.build(where, options, problems.get, problem, **options)
        return check.build(section, raw, DataSpec, **fields)
    for key, allowed in (("train", (".csv", ".npz")), ("test", (".csv",))):
        if key in raw and Path(raw[key]).suffix.lower() not in allowed:
            like = "a .csv or .npz file" if key == "train" else "a .csv file like `train`"
            hint = " Export your data as CSV with a header row." if key == "train" else ""
            raise check.error(
                ("data", key),
                f"[data] `{key}` must be {like}; got {json.dumps(raw[key])}.{hint}",
            )
        if key in raw:
            fields[key] = _existing(key, raw[key], base_dir, check)
    if "test" in raw and "test_fraction" in raw:
        raise check.error(
            ("data", "test_fraction"),
            "[data] gives both a `test` file and `test_fraction`; the fraction applies only "
            "when there is no test file. Remove `test_fraction`.",
        )
    return check.build(section, raw, DataSpec, fallback="train", **fields)


def _existing(key: str, value: str, base_dir: Path, check: _Checker) -> Path:
    """``value`` resolved against the spec's folder; a SpecError if it is not a file."""
    path = resolve_path(value, base_dir)
    if not path.is_file():
        where = ""
        if not Path(value).expanduser().is_absolute():
            where = (
                f" (looked for {path}: relative paths are taken from the spec file's folder, "
                f"{os.path.abspath(base_dir)})"
            )
        raise check.error(
            ("data", key),
            f"[data] `{key}`: no such file {json.dumps(value)}{where}. Check the path.",
        )
    return path


def _parse_inference(raw: dict, check: _Checker) -> tuple[str, int, dict]:
    section = ("inference",)
    method = raw.get("method", "nuts")
    if not isinstance(method, str) or method not in _METHOD_TYPES:
        raise check.error(
            ("inference", "method"),
            f"[inference] `method` must be {AUTO!r} or one of {sorted(METHODS)}; got "
            f"{describe(method)}.",
        )
    kinds = _METHOD_TYPES[method]
    allowed = ("method", "seed", *kinds)
    check.known(raw, section, allowed, note=f' (method = "{method}")', method=method)
    raw = check.typed(raw, section, {"method": "str", "seed": "int", **kinds})
    seed = raw.pop("seed", 0)
    raw.pop("method", None)
    check.build(section, {"seed": seed}, check_int, "seed", seed, minimum=0)
    if method != AUTO:
        check.build(section, raw, METHODS[method][0], **raw)
    return method, seed, raw
