"""Run specifications: a TOML file, validated before any work, turned into the library's objects.

A run specification says which data to fit, with which network, prior and inference
method, and what the report shows. ``bayesresnet fit SPEC.toml`` reads one; the files in
``models/`` are ready-made examples. The schema (every section but ``[data]`` may be
left out; the values shown are the defaults)::

    name = "sine-nuts"          # optional; default: the file's stem
    [data]
    problem = "sine"            # a built-in problem (see problems.names()), OR
    # train = "data/train.csv"  # your own data (.csv or .npz), relative to this file
    # test = "data/test.csv"    # optional held-out file (CSV only)
    # outputs = ["y"]           # CSV output columns: names, or a count of trailing columns
    # test_fraction = 0.2       # rows held out when there is no test file
    num_train = 100             # problem only
    num_test = 500              # problem only
    noise = 0.1                 # problem only: noise sd relative to the output's sd
    design = "uniform"          # problem only: "uniform" or "lhs"
    seed = 0
    [data.problem_options]      # keyword arguments of the problem (e.g. dim = 6)
    [network]                   # see ResNetSpec
    width = 16
    num_layers = 20
    basis = "cubic"             # plus degree (monomial, legendre) or num_knots (piecewise_linear)
    activation = "tanh"
    residual = true
    scheme = "euler"            # or "heun" (second order; continuous bases only)
    [prior]                     # the fields of PriorSpec
    [inference]
    method = "nuts"             # one of infer.METHODS
    seed = 0
    # ... any field of the method's config (NUTSConfig, SVIConfig, EnsembleConfig)
    [report]
    levels = [0.5, 0.9]         # central-interval levels shown, each in (0, 1)
    num_probes = 20             # probe inputs for function-space diagnostics

Everything is checked when the spec is read, before data are loaded or a fit starts:
TOML syntax, unknown keys (with a "did you mean" suggestion), types, values, that data
files exist and name the requested columns, and the method's options (by building its
config). Every error is a :class:`SpecError` that gives the file and the line of the
offending key, what is allowed and, where one is known, the fix.

Example:
    >>> from bayesresnet.runspec import load_runspec
    >>> spec = load_runspec("models/default.toml")
    >>> dataset = spec.load_dataset()
    >>> posterior = bayesresnet.fit(spec.resnet_spec(dataset), dataset, **spec.fit_kwargs())
"""

from __future__ import annotations

import csv
import dataclasses
import difflib
import inspect
import json
import os
import re
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayesresnet import bases, problems
from bayesresnet._validate import check_int, check_number
from bayesresnet.calibration import BAND_LEVELS
from bayesresnet.data import Dataset, load_csv, load_npz
from bayesresnet.infer import METHODS
from bayesresnet.model import PriorSpec
from bayesresnet.resnet import ACTIVATIONS, ResNetSpec

__all__ = [
    "SpecError",
    "RunSpec",
    "DataSpec",
    "NetworkSpec",
    "ReportSpec",
    "load_runspec",
    "parse_runspec",
    "from_dict",
]

#: Key path (e.g. ``("network", "width")``) → 1-based line number in the TOML text.
Lines = Mapping[tuple[str, ...], int]


class SpecError(ValueError):
    """An invalid run specification.

    The message starts with the location (``"spec.toml, line 7: ..."``) when it is known.

    Attributes:
        file: The spec file (a string), or None for a spec given as text or a dict.
        line: The 1-based line of the offending key, or None when unknown.
        key: The dotted key (e.g. ``"network.width"``), or None for file-level errors.
    """

    def __init__(
        self,
        message: str,
        *,
        file: str | None = None,
        line: int | None = None,
        key: str | None = None,
    ):
        self.file, self.line, self.key = file, line, key
        location = ", ".join(
            part for part in (file, None if line is None else f"line {line}") if part
        )
        super().__init__(f"{location}: {message}" if location else message)


# ---------------------------------------------------------------------------- sections

_TOP_KEYS = ("name", "data", "network", "prior", "inference", "report")
_PROBLEM_KEYS = ("problem", "problem_options", "num_train", "num_test", "noise", "design")
_FILE_KEYS = ("train", "test", "outputs", "test_fraction")
_DATA_KEYS = (*_PROBLEM_KEYS, *_FILE_KEYS, "seed")
_DATA_TYPES = {
    "problem": "str",
    "problem_options": "table",
    "num_train": "int",
    "num_test": "int",
    "noise": "float",
    "design": "str",
    "train": "str",
    "test": "str",
    "outputs": "outputs",
    "test_fraction": "float",
    "seed": "int",
}
_NETWORK_TYPES = {
    "width": "int",
    "num_layers": "int",
    "basis": "str",
    "degree": "int",
    "num_knots": "int",
    "activation": "str",
    "residual": "bool",
    "scheme": "str",
}
_REPORT_TYPES = {"levels": "float_list", "num_probes": "int"}
_FIXED_BASES = ("per_layer", "constant", "linear", "quadratic", "cubic")
_BASIS_ARGS = {"monomial": "degree", "legendre": "degree", "piecewise_linear": "num_knots"}
_DATA_SUFFIXES = (".csv", ".npz")


def _annotation_kind(annotation) -> str | None:
    """``int``, ``float``, ``bool`` or ``str`` for a dataclass field (``X | None`` → X)."""
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return _annotation_kind(args[0]) if len(args) == 1 else None
    return {int: "int", float: "float", bool: "bool", str: "str"}.get(annotation)


def _field_kinds(cls) -> dict[str, str | None]:
    """Field name → kind of a frozen config dataclass (None: not checked here)."""
    hints = typing.get_type_hints(cls)
    return {f.name: _annotation_kind(hints[f.name]) for f in dataclasses.fields(cls)}


_PRIOR_TYPES = _field_kinds(PriorSpec)
_METHOD_TYPES = {method: _field_kinds(config) for method, (config, _) in METHODS.items()}


def _section_keys() -> dict[str, tuple[str, ...]]:
    """Section → allowed keys (inference: every method's options), for misplaced-key hints."""
    options = sorted({k for kinds in _METHOD_TYPES.values() for k in kinds})
    return {
        "data": _DATA_KEYS,
        "network": tuple(_NETWORK_TYPES),
        "prior": tuple(_PRIOR_TYPES),
        "inference": ("method", "seed", *options),
        "report": tuple(_REPORT_TYPES),
    }


# ------------------------------------------------------------------------ line numbers

_KEY_PART = r"""(?:[A-Za-z0-9_-]+|"(?:[^"\\]|\\.)*"|'[^']*')"""
_DOTTED = rf"{_KEY_PART}(?:\s*\.\s*{_KEY_PART})*"
_TABLE_RE = re.compile(rf"^\s*\[\[?\s*({_DOTTED})\s*\]\]?\s*(?:#.*)?$")
_KEY_RE = re.compile(rf"^\s*({_DOTTED})\s*=")


def _split_key(dotted: str) -> tuple[str, ...]:
    parts = re.findall(_KEY_PART, dotted)
    return tuple(p[1:-1] if p[0] in "\"'" else p for p in parts)


def _key_lines(text: str) -> dict[tuple[str, ...], int]:
    """Line of every key and table header in a TOML text, keyed by the full key path.

    tomllib gives no positions, so this scans the text: ``[a.b]`` headers set the current
    table, and ``key = ...`` or ``dotted.key = ...`` lines inside it record
    ``(*table, *key)``. Lines inside multi-line strings are skipped. Keys inside inline
    tables are not recorded; :func:`_line_of` falls back to the enclosing key's line.
    """
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
            lines.setdefault(table, number)
        elif key := _KEY_RE.match(line):
            lines.setdefault((*table, *_split_key(key.group(1))), number)
        for quotes in ('"""', "'''"):
            if line.count(quotes) % 2 == 1:
                delimiter = quotes
                break
    return lines


def _line_of(lines: Lines, path: tuple[str, ...]) -> int | None:
    """The line of ``path``, else of its nearest ancestor (first line of any key under it)."""
    for size in range(len(path), 0, -1):
        prefix = path[:size]
        if prefix in lines:
            return lines[prefix]
        below = [n for p, n in lines.items() if p[:size] == prefix]
        if below:
            return min(below)
    return None


# ------------------------------------------------------------------------ value checks

_KIND_WORDS = {
    "int": "an integer",
    "float": "a number",
    "bool": "true or false",
    "str": "a string",
    "table": "a table",
    "float_list": "a list of numbers",
    "outputs": "a list of column names or an integer count of trailing columns",
}


def _toml_literal(value) -> str:
    """``value`` written as TOML would write it: ``"8"``, ``true``, ``[1, 2]``."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, str | list):
        return json.dumps(value, default=str)
    return str(value)


def _toml_value(value) -> str:
    """``value`` with its TOML type, for messages: 'the string "8"'."""
    if isinstance(value, dict):
        return "a table"
    kinds = ((bool, "boolean"), (int, "integer"), (float, "float"), (str, "string"))
    kind = next((word for cls, word in kinds if isinstance(value, cls)), None)
    if kind is None:
        kind = "array" if isinstance(value, list) else "date/time"
    return f"the {kind} {_toml_literal(value)}"


def _is_kind(value, kind: str) -> bool:
    if kind == "int":
        return isinstance(value, int) and not isinstance(value, bool)
    if kind == "float":
        return isinstance(value, int | float) and not isinstance(value, bool)
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "str":
        return isinstance(value, str)
    if kind == "table":
        return isinstance(value, dict)
    if kind == "float_list":
        return isinstance(value, list) and all(_is_kind(v, "float") for v in value)
    if kind == "outputs":
        return (
            _is_kind(value, "int")
            or isinstance(value, str)
            or (isinstance(value, list) and all(isinstance(v, str) for v in value))
        )
    raise AssertionError(kind)  # pragma: no cover - every kind is listed above


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
        return f' Quote it: {key} = "{_toml_literal(value)}".'
    return ""


class _Checker:
    """Raises :class:`SpecError` located at a key path of one spec."""

    def __init__(self, file: str | None, lines: Lines):
        self.file, self.lines = file, lines

    def error(self, path: tuple[str, ...], message: str) -> SpecError:
        return SpecError(
            message, file=self.file, line=_line_of(self.lines, path), key=".".join(path) or None
        )

    def table(self, raw: Mapping, section: str) -> dict:
        """``raw[section]`` as a dict ({} when absent)."""
        value = raw.get(section, {})
        if not isinstance(value, dict):
            raise self.error(
                (section,),
                f"[{section}] must be a table of settings; got {_toml_value(value)}. "
                f"Write a [{section}] header followed by `key = value` lines.",
            )
        return value

    def known(
        self,
        table: Mapping,
        section: tuple[str, ...],
        allowed,
        *,
        elsewhere: Mapping[str, tuple[str, ...]] | None = None,
        note: str = "",
    ) -> None:
        """Every key of ``table`` is in ``allowed``; the first unknown one (by line) is named."""
        unknown = [k for k in table if k not in allowed]
        if not unknown:
            return
        key = min(unknown, key=lambda k: _line_of(self.lines, (*section, k)) or 0)
        where = f"[{'.'.join(section)}]" if section else "the top level"
        message = f"unknown key '{key}' {'in' if section else 'at'} {where}{note}."
        close = difflib.get_close_matches(key, list(allowed), n=1, cutoff=0.6)
        homes = [
            s for s, keys in (elsewhere or {}).items() if key in keys and s != ".".join(section)
        ]
        if close:
            message += f" Did you mean '{close[0]}'?"
        elif homes:
            message += f" '{key}' belongs in [{homes[0]}]; move it there."
        allowed_text = ", ".join(sorted(allowed)) if allowed else "none"
        message += f" Allowed keys {'in' if section else 'at'} {where}: {allowed_text}."
        raise self.error((*section, key), message)

    def typed(self, table: Mapping, section: tuple[str, ...], kinds: Mapping) -> dict:
        """``table`` with each value checked against its kind (ints become floats for floats)."""
        out = {}
        for key, value in table.items():
            kind = kinds.get(key)
            if kind is not None and not _is_kind(value, kind):
                raise self.error(
                    (*section, key),
                    f"`{key}` in [{'.'.join(section)}] must be {_KIND_WORDS[kind]}; got "
                    f"{_toml_value(value)}.{_type_hint(key, value, kind)}",
                )
            out[key] = float(value) if kind == "float" else value
        return out

    def call(self, path: tuple[str, ...], function: Callable, *args, **kwargs):
        """``function(*args, **kwargs)``, its ValueError/TypeError re-raised at ``path``."""
        try:
            return function(*args, **kwargs)
        except (TypeError, ValueError) as error:
            raise self.error(path, f"[{'.'.join(path[:1])}] {error}") from error

    def construct(self, section: tuple[str, ...], keys, function: Callable, **kwargs):
        """``function(**kwargs)``; an error is placed at the key its message names."""
        try:
            return function(**kwargs)
        except (TypeError, ValueError) as error:
            named = re.findall(r"`(\w+)`", str(error))
            key = next((k for k in named if k in keys), None)
            path = (*section, key) if key is not None else section
            raise self.error(path, f"[{'.'.join(section)}] {error}") from error


# ---------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class DataSpec:
    """Where the data come from: a built-in problem or a data file.

    Built by :func:`from_dict` (which validates); the fields mirror ``[data]``.

    Attributes:
        problem: A name from ``problems.names()``, or None for a data file.
        problem_options: Keyword arguments of ``problems.get``.
        num_train: Training points drawn from the problem.
        num_test: Test points drawn from the problem.
        noise: Noise sd relative to the output's sd (see ``Problem.sample``).
        design: Training design, ``"uniform"`` or ``"lhs"``.
        train: The data file (``.csv`` or ``.npz``), an absolute path; None for a problem.
        test: An optional CSV test file, an absolute path.
        outputs: CSV output columns (names) or a count of trailing columns.
        test_fraction: Rows held out for testing when there is no test file.
        seed: Seed of the problem's draw or of the train/test split.
    """

    problem: str | None = None
    problem_options: dict[str, Any] = field(default_factory=dict)
    num_train: int = 100
    num_test: int = 500
    noise: float = 0.1
    design: str = "uniform"
    train: Path | None = None
    test: Path | None = None
    outputs: tuple[str, ...] | int | None = None
    test_fraction: float = 0.2
    seed: int = 0

    @property
    def kind(self) -> str:
        """``"problem"``, ``"csv"`` or ``"npz"``."""
        if self.problem is not None:
            return "problem"
        return "npz" if self.train.suffix.lower() == ".npz" else "csv"

    def load(self) -> Dataset:
        """Draws the problem's data set or reads the file (see ``problems``, ``data``)."""
        if self.kind == "problem":
            problem = problems.get(self.problem, **self.problem_options)
            return problem.sample(
                self.seed,
                self.num_train,
                num_test=self.num_test,
                noise=self.noise,
                design=self.design,
            )
        if self.kind == "npz":
            return load_npz(self.train, test_fraction=self.test_fraction, seed=self.seed)
        outputs = self.outputs if isinstance(self.outputs, int) else list(self.outputs)
        return load_csv(
            self.train,
            outputs=outputs,
            test_path=self.test,
            test_fraction=self.test_fraction,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``[data]`` table (JSON- and TOML-writable; paths absolute)."""
        if self.kind == "problem":
            out = {
                "problem": self.problem,
                "num_train": self.num_train,
                "num_test": self.num_test,
                "noise": self.noise,
                "design": self.design,
                "seed": self.seed,
            }
            if self.problem_options:
                out["problem_options"] = dict(self.problem_options)
            return out
        out = {"train": str(self.train)}
        if self.test is not None:
            out["test"] = str(self.test)
        else:
            out["test_fraction"] = self.test_fraction
        if self.outputs is not None:
            out["outputs"] = self.outputs if isinstance(self.outputs, int) else list(self.outputs)
        out["seed"] = self.seed
        return out


_RESNET_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ResNetSpec)}


@dataclass(frozen=True)
class NetworkSpec:
    """The ``[network]`` section: a :class:`~bayesresnet.ResNetSpec` without its data sizes.

    Attributes:
        width: Hidden width.
        num_layers: Number of residual layers.
        basis: A name accepted by ``bases.make_basis``.
        degree: Degree of a ``"monomial"`` or ``"legendre"`` basis (None for others).
        num_knots: Knots of a ``"piecewise_linear"`` basis (None for others).
        activation: One of the activations of ``bayesresnet.resnet``.
        residual: ResNet update (True) or MLP baseline (False).
        scheme: ``"euler"`` or ``"heun"`` (see ``ResNetSpec``).
    """

    width: int = _RESNET_DEFAULTS["width"]
    num_layers: int = _RESNET_DEFAULTS["num_layers"]
    basis: str = "cubic"
    degree: int | None = None
    num_knots: int | None = None
    activation: str = _RESNET_DEFAULTS["activation"]
    residual: bool = _RESNET_DEFAULTS["residual"]
    scheme: str = _RESNET_DEFAULTS["scheme"]

    def make_basis(self) -> bases.Basis:
        """The depth basis, ``bases.make_basis(basis, degree=... | num_knots=...)``."""
        sizes = {"degree": self.degree, "num_knots": self.num_knots}
        return bases.make_basis(self.basis, **{k: v for k, v in sizes.items() if v is not None})

    def resnet_spec(self, in_features: int, out_features: int) -> ResNetSpec:
        """The network for ``in_features`` inputs and ``out_features`` outputs."""
        return ResNetSpec(
            in_features=in_features,
            out_features=out_features,
            width=self.width,
            num_layers=self.num_layers,
            basis=self.make_basis(),
            activation=self.activation,
            residual=self.residual,
            scheme=self.scheme,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``[network]`` table (``degree``/``num_knots`` only when set)."""
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}


@dataclass(frozen=True)
class ReportSpec:
    """The ``[report]`` section.

    Attributes:
        levels: Central-interval levels shown, each in (0, 1).
        num_probes: Probe inputs for function-space diagnostics.
    """

    levels: tuple[float, ...] = BAND_LEVELS
    num_probes: int = 20

    def to_dict(self) -> dict[str, Any]:
        """The ``[report]`` table."""
        return {"levels": list(self.levels), "num_probes": self.num_probes}


@dataclass(frozen=True)
class RunSpec:
    """A validated run specification: what to fit, how, and what to report.

    Build one with :func:`load_runspec`, :func:`parse_runspec` or :func:`from_dict`,
    which check everything before returning.

    Attributes:
        name: The run's name (default: the spec file's stem).
        path: The TOML file it was read from, or None.
        data: Where the data come from.
        network: The architecture, less the data sizes.
        prior: Prior and likelihood.
        method: A key of ``infer.METHODS``.
        seed: Seed of the inference run.
        options: The method's options as given (the rest take the config's defaults).
        report: What the report shows.
    """

    name: str
    path: Path | None
    data: DataSpec
    network: NetworkSpec
    prior: PriorSpec
    method: str
    seed: int
    options: dict[str, Any]
    report: ReportSpec

    def load_dataset(self) -> Dataset:
        """Draws or reads the data set."""
        return self.data.load()

    def resnet_spec(self, dataset: Dataset) -> ResNetSpec:
        """The network, with input and output sizes taken from ``dataset``."""
        return self.network.resnet_spec(dataset.num_inputs, dataset.num_outputs)

    def method_config(self):
        """The method's frozen config (``NUTSConfig``, ``SVIConfig`` or ``EnsembleConfig``)."""
        return METHODS[self.method][0](**self.options)

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`bayesresnet.fit`: method, seed, prior and options."""
        return {"method": self.method, "seed": self.seed, "prior": self.prior, **self.options}

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested dicts (JSON- and TOML-writable); ``from_dict`` reads it back."""
        return {
            "name": self.name,
            "data": self.data.to_dict(),
            "network": self.network.to_dict(),
            "prior": dataclasses.asdict(self.prior),
            "inference": {"method": self.method, "seed": self.seed, **self.options},
            "report": self.report.to_dict(),
        }


# ------------------------------------------------------------------------------ parsing


def load_runspec(path: str | os.PathLike) -> RunSpec:
    """Reads and validates a run specification from a TOML file.

    Data paths in the file are relative to the file's folder.

    Args:
        path: The ``.toml`` file.

    Returns:
        The validated :class:`RunSpec`; its ``name`` defaults to the file's stem.

    Raises:
        FileNotFoundError: If ``path`` is not an existing file.
        SpecError: If the file is not UTF-8 text or valid TOML, or the spec is invalid
            (see :func:`from_dict`).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"`path`: no run specification file {path} (resolved from {Path.cwd()}); "
            "pass the path of a .toml file, e.g. models/default.toml."
        )
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise SpecError(f"the file is not UTF-8 text: {error}.", file=str(path)) from error
    return parse_runspec(text, path=path)


_TOML_POSITION = re.compile(r"\s*\(at line (\d+), column (\d+)\)$")


def parse_runspec(
    text: str, *, path: str | os.PathLike | None = None, base_dir: str | os.PathLike | None = None
) -> RunSpec:
    """Parses and validates a run specification from TOML text.

    Args:
        text: The TOML document.
        path: The file the text came from (for messages, the default name and the
            folder data paths are relative to).
        base_dir: The folder data paths are relative to; default: ``path``'s folder, else
            the working directory.

    Returns:
        The validated :class:`RunSpec`.

    Raises:
        TypeError: If ``text`` is not a str.
        SpecError: If the text is not valid TOML (with line and column) or the spec is
            invalid (see :func:`from_dict`).
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str of TOML; got {type(text).__name__}.")
    file = None if path is None else str(path)
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        message = str(error)
        position = _TOML_POSITION.search(message)
        line = None
        if position:
            message = message[: position.start()]
            line = int(position.group(1))
            message += f" (column {position.group(2)})"
        hint = ""
        if message.startswith("Invalid value"):
            hint = ' Strings need quotes (basis = "cubic"); booleans are true or false.'
        raise SpecError(f"invalid TOML: {message}.{hint}", file=file, line=line) from None
    return from_dict(raw, path=path, base_dir=base_dir, lines=_key_lines(text))


def from_dict(
    d: Mapping[str, Any],
    *,
    path: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
    lines: Lines | None = None,
) -> RunSpec:
    """Validates a run specification given as nested dicts (as ``tomllib`` returns).

    Checks, in order: top-level keys; ``[data]`` (one source, keys that apply to it,
    types, values, the problem and its options, that files exist and have the output
    columns); ``[network]`` (the basis and its size argument); ``[prior]``; ``[inference]``
    (the method and, by building its config, its options); ``[report]``.

    Args:
        d: The spec, e.g. ``tomllib.load`` output or :meth:`RunSpec.to_dict`.
        path: The spec file (for messages and the default name).
        base_dir: The folder relative data paths are resolved against; default:
            ``path``'s folder, else the working directory.
        lines: Key path → line number, for messages (``parse_runspec`` supplies it).

    Returns:
        The validated :class:`RunSpec`.

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
    elsewhere = _section_keys()
    check.known(d, (), _TOP_KEYS, elsewhere=elsewhere)

    name = d.get("name", path.stem if path is not None else "run")
    if not isinstance(name, str) or not name.strip() or re.search(r"[/\\]", name):
        raise check.error(
            ("name",),
            f"`name` must be a non-empty string without '/' or '\\' (it names the output "
            f"folder); got {_toml_value(name)}.",
        )
    if "data" not in d:
        raise check.error(
            (),
            'the spec has no [data] section; add one with `problem = "sine"` (one of '
            f'{problems.names()}) or `train = "path/to/data.csv"`.',
        )
    data = _parse_data(check.table(d, "data"), Path(base_dir), check, elsewhere)
    network = _parse_network(check.table(d, "network"), check, elsewhere)

    prior_raw = check.table(d, "prior")
    check.known(prior_raw, ("prior",), _PRIOR_TYPES, elsewhere=elsewhere)
    prior_raw = check.typed(prior_raw, ("prior",), _PRIOR_TYPES)
    prior = check.construct(("prior",), _PRIOR_TYPES, PriorSpec, **prior_raw)

    method, seed, options = _parse_inference(check.table(d, "inference"), check, elsewhere)

    report_raw = check.table(d, "report")
    check.known(report_raw, ("report",), _REPORT_TYPES, elsewhere=elsewhere)
    report_raw = check.typed(report_raw, ("report",), _REPORT_TYPES)
    levels = tuple(float(v) for v in report_raw.get("levels", ReportSpec.levels))
    if not levels or len(set(levels)) != len(levels):
        raise check.error(
            ("report", "levels"),
            f"`levels` in [report] must be a non-empty list of distinct levels; got "
            f"{list(levels)}. Example: levels = [0.5, 0.9].",
        )
    for i, level in enumerate(levels):
        check.call(("report", "levels"), check_number, f"levels[{i}]", level, low=0.0, high=1.0)
    num_probes = report_raw.get("num_probes", ReportSpec.num_probes)
    check.call(("report", "num_probes"), check_int, "num_probes", num_probes, minimum=1)

    return RunSpec(
        name=name,
        path=path,
        data=data,
        network=network,
        prior=prior,
        method=method,
        seed=seed,
        options=options,
        report=ReportSpec(levels=levels, num_probes=num_probes),
    )


def _parse_data(raw: dict, base_dir: Path, check: _Checker, elsewhere) -> DataSpec:
    section = ("data",)
    check.known(raw, section, _DATA_KEYS, elsewhere=elsewhere)
    raw = check.typed(raw, section, _DATA_TYPES)
    if "problem" in raw and "train" in raw:
        raise check.error(
            ("data", "train"),
            "[data] gives both `problem` and `train`; use one data source: a built-in "
            "problem or your own data file. Delete one of the two lines.",
        )
    if "problem" not in raw and "train" not in raw:
        raise check.error(
            section,
            f'[data] needs a data source: `problem = "sine"` (one of {problems.names()}) '
            'or `train = "path/to/train.csv"` (a .csv or .npz file, relative to the spec '
            "file's folder).",
        )
    seed = raw.get("seed", DataSpec.seed)
    check.call(("data", "seed"), check_int, "seed", seed, minimum=0)
    if "problem" in raw:
        return _parse_problem(raw, seed, check)
    return _parse_file(raw, seed, base_dir, check)


def _parse_problem(raw: dict, seed: int, check: _Checker) -> DataSpec:
    for key in _FILE_KEYS:
        if key in raw:
            raise check.error(
                ("data", key),
                f"`{key}` in [data] applies only to a data file (`train`), but [data] uses "
                f"problem = {json.dumps(raw['problem'])}; remove `{key}`.",
            )
    name = raw["problem"]
    if name not in problems.names():
        close = difflib.get_close_matches(name, problems.names(), n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise check.error(
            ("data", "problem"),
            f"[data] unknown problem {json.dumps(name)}; available problems: "
            f'{problems.names()}.{hint} For your own data use `train = "data.csv"`.',
        )
    options = dict(raw.get("problem_options", {}))
    accepted = list(inspect.signature(getattr(problems, f"make_{name}")).parameters)
    check.known(
        options,
        ("data", "problem_options"),
        accepted,
        note=f" (the options of problem '{name}')",
    )
    check.construct(("data", "problem_options"), options, problems.get, name=name, **options)
    num_train = raw.get("num_train", DataSpec.num_train)
    num_test = raw.get("num_test", DataSpec.num_test)
    noise = raw.get("noise", DataSpec.noise)
    design = raw.get("design", DataSpec.design)
    check.call(("data", "num_train"), check_int, "num_train", num_train, minimum=3)
    check.call(("data", "num_test"), check_int, "num_test", num_test, minimum=0)
    check.call(("data", "noise"), check_number, "noise", noise, low=0.0, inclusive=True)
    if design not in problems.DESIGNS:
        raise check.error(
            ("data", "design"),
            f"[data] `design` must be one of {list(problems.DESIGNS)}; got {json.dumps(design)}.",
        )
    return DataSpec(
        problem=name,
        problem_options=options,
        num_train=num_train,
        num_test=num_test,
        noise=noise,
        design=design,
        seed=seed,
    )


def _resolve(value: str, base_dir: Path) -> Path:
    path = Path(value).expanduser()
    return Path(os.path.abspath(path if path.is_absolute() else base_dir / path))


def _existing(key: str, value: str, base_dir: Path, check: _Checker) -> Path:
    path = _resolve(value, base_dir)
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


def _csv_header(path: Path) -> list[str] | None:
    """The header row of a CSV file, or None when unreadable (the loader reports why)."""
    try:
        with path.open(newline="", encoding="utf-8-sig") as f:
            for record in csv.reader(f):
                if any(cell.strip() for cell in record):
                    return [cell.strip() for cell in record]
    except (OSError, UnicodeDecodeError, csv.Error):
        return None
    return None


def _parse_file(raw: dict, seed: int, base_dir: Path, check: _Checker) -> DataSpec:
    for key in _PROBLEM_KEYS:
        if key in raw:
            raise check.error(
                ("data", key),
                f"`{key}` in [data] applies only to a built-in `problem`, but [data] reads "
                f"the file train = {json.dumps(raw['train'])}; remove `{key}`.",
            )
    suffix = Path(raw["train"]).suffix.lower()
    if suffix not in _DATA_SUFFIXES:
        raise check.error(
            ("data", "train"),
            f"[data] `train` must be a .csv or .npz file; got {json.dumps(raw['train'])}. "
            "Export your data as CSV with a header row.",
        )
    train = _existing("train", raw["train"], base_dir, check)
    test_fraction = raw.get("test_fraction", DataSpec.test_fraction)
    check.call(
        ("data", "test_fraction"),
        check_number,
        "test_fraction",
        test_fraction,
        low=0.0,
        high=1.0,
        inclusive=True,
    )
    if test_fraction >= 1.0:
        raise check.error(
            ("data", "test_fraction"),
            f"[data] `test_fraction` must be in [0, 1); got {test_fraction}.",
        )
    if suffix == ".npz":
        for key in ("test", "outputs"):
            if key in raw:
                raise check.error(
                    ("data", key),
                    f"`{key}` in [data] applies only to CSV files; an .npz archive holds "
                    "x_train/y_train (and x_test/y_test) itself. Remove it.",
                )
        return DataSpec(train=train, test_fraction=test_fraction, seed=seed)
    test = None
    if "test" in raw:
        if Path(raw["test"]).suffix.lower() != ".csv":
            raise check.error(
                ("data", "test"),
                f"[data] `test` must be a .csv file like `train`; got {json.dumps(raw['test'])}.",
            )
        test = _existing("test", raw["test"], base_dir, check)
        if "test_fraction" in raw:
            raise check.error(
                ("data", "test_fraction"),
                "[data] gives both a `test` file and `test_fraction`; the fraction applies "
                "only when there is no test file. Remove `test_fraction`.",
            )
    if "outputs" not in raw:
        raise check.error(
            ("data", "train"),
            "[data] reads a CSV file but does not say which columns are outputs; add "
            '`outputs = ["y"]` (column names) or `outputs = 1` (the last column).',
        )
    outputs = raw["outputs"]
    outputs = (outputs,) if isinstance(outputs, str) else outputs
    outputs = outputs if isinstance(outputs, int) else tuple(outputs)
    header = _csv_header(train)
    if header is not None:
        _check_outputs(outputs, header, train, check)
    return DataSpec(train=train, test=test, outputs=outputs, test_fraction=test_fraction, seed=seed)


def _check_outputs(outputs, header: list[str], train: Path, check: _Checker) -> None:
    path = ("data", "outputs")
    if isinstance(outputs, int):
        if not 1 <= outputs < len(header):
            raise check.error(
                path,
                f"[data] `outputs` = {outputs} trailing columns is invalid for {train}, which "
                f"has {len(header)} columns {header}; use 1 to {len(header) - 1}.",
            )
        return
    unknown = [o for o in outputs if o not in header]
    if not outputs or unknown:
        raise check.error(
            path,
            f"[data] `outputs` must name columns of {train}; got {list(outputs)}, but the "
            f"header has {header}.",
        )
    if len(set(outputs)) != len(outputs) or len(outputs) == len(header):
        raise check.error(
            path,
            f"[data] `outputs` must list distinct columns and leave at least one input; got "
            f"{list(outputs)} for the columns {header}.",
        )


def _parse_network(raw: dict, check: _Checker, elsewhere) -> NetworkSpec:
    section = ("network",)
    check.known(raw, section, _NETWORK_TYPES, elsewhere=elsewhere)
    raw = check.typed(raw, section, _NETWORK_TYPES)
    for key in ("width", "num_layers"):
        if key in raw:
            check.call(("network", key), check_int, key, raw[key], minimum=1)
    basis = raw.get("basis", NetworkSpec.basis)
    known = (*_FIXED_BASES, *_BASIS_ARGS)
    if basis not in known:
        close = difflib.get_close_matches(basis, known, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise check.error(
            ("network", "basis"),
            f"[network] unknown basis {json.dumps(basis)}; allowed: {list(known)}.{hint}",
        )
    for key in ("degree", "num_knots"):
        if key in raw and _BASIS_ARGS.get(basis) != key:
            users = [b for b, arg in _BASIS_ARGS.items() if arg == key]
            raise check.error(
                ("network", key),
                f"[network] `{key}` applies only to the bases {users}, not to basis = "
                f'"{basis}"; remove it'
                + (
                    ' (use basis = "monomial" with degree = ... for another degree).'
                    if key == "degree"
                    else "."
                ),
            )
    needed = _BASIS_ARGS.get(basis)
    if needed is not None and needed not in raw:
        example = "degree = 3" if needed == "degree" else "num_knots = 5"
        raise check.error(
            ("network", "basis"),
            f'[network] basis = "{basis}" needs `{needed}`; add e.g. `{example}`.',
        )
    if needed is not None:
        minimum = 0 if needed == "degree" else 2
        check.call(("network", needed), check_int, needed, raw[needed], minimum=minimum)
    activation = raw.get("activation", NetworkSpec.activation)
    if activation not in ACTIVATIONS:
        raise check.error(
            ("network", "activation"),
            f"[network] `activation` must be one of {sorted(ACTIVATIONS)}; got "
            f"{json.dumps(activation)}.",
        )
    network = NetworkSpec(**raw)
    # Build a throwaway ResNetSpec so every check of the library runs now, not after loading.
    check.construct(section, _NETWORK_TYPES, network.resnet_spec, in_features=1, out_features=1)
    return network


def _parse_inference(raw: dict, check: _Checker, elsewhere) -> tuple[str, int, dict]:
    section = ("inference",)
    method = raw.get("method", "nuts")
    if not isinstance(method, str) or method not in METHODS:
        raise check.error(
            ("inference", "method"),
            f"[inference] `method` must be one of {sorted(METHODS)}; got {_toml_value(method)}.",
        )
    kinds = _METHOD_TYPES[method]
    allowed = ("method", "seed", *kinds)
    unknown = [k for k in raw if k not in allowed]
    if unknown:
        # An option of another method usually means the method was switched and the old
        # options were left behind: say so, unless the key is a likely misspelling.
        first = min(unknown, key=lambda k: _line_of(check.lines, (*section, k)) or 0)
        owners = [m for m, mk in _METHOD_TYPES.items() if first in mk and m != method]
        if owners and not difflib.get_close_matches(first, allowed, n=1, cutoff=0.6):
            raise check.error(
                (*section, first),
                f"unknown key '{first}' in [inference]: it is an option of method "
                f'{" and ".join(repr(m) for m in owners)}, not of method = "{method}". '
                f'Remove it, or change `method`. Allowed keys for "{method}": '
                f"{', '.join(sorted(allowed))}.",
            )
    check.known(raw, section, allowed, elsewhere=elsewhere, note=f' (method = "{method}")')
    raw = check.typed(raw, section, {"method": "str", "seed": "int", **kinds})
    seed = raw.pop("seed", 0)
    raw.pop("method", None)
    check.call(("inference", "seed"), check_int, "seed", seed, minimum=0)
    config_cls = METHODS[method][0]
    check.construct(section, kinds, config_cls, **raw)
    return method, seed, raw
