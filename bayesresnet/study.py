"""Studies: many runs of one base spec over a grid, run in parallel, resumable, tabulated.

A study specification is a TOML file::

    name = "smoke"                 # optional; default: the file's stem
    base = "../default.toml"       # a run spec file (relative to this file), OR inline:
    # [base.data]                  #   the sections of a run spec under [base.*]
    # problem = "sine"
    # [base.inference.svi]         # options applied only when method = "svi"
    # num_steps = 200
    [grid]                         # every combination of these lists is one run
    problem = ["sine", "ishigami"] # short names: problem, num_train, num_test, noise,
    basis = ["cubic", "linear"]    #   design, basis, num_layers, width, degree,
    method = ["ensemble", "svi"]   #   num_knots, activation, residual, method, seed
    "inference.num_steps" = [200]  # any other run-spec key by its dotted name
    # [[grid]]                     # several grids: the union of their combinations
    # [[runs]]                     # explicit runs: one table of overrides each
    # basis = "per_layer"
    # residual = false

``seed`` sets both the data seed and the inference seed (a replicate). Under
``[base.inference]`` a sub-table named after a method (``[base.inference.svi]``) holds
options used only when that method runs, so a grid over methods can give each method
its own options. The runs are the grid's combinations (in order, the first key varying
slowest), then the explicit ``[[runs]]``; with neither, the base alone is the one run.

Every run is resolved into a full run spec and validated (:func:`bayesresnet.runspec.
from_dict`) before any run starts. Errors of the study itself (TOML syntax, unknown keys,
grid values that are not lists, unknown run-spec keys) raise :class:`~bayesresnet.
runspec.SpecError` with the file and line. A run whose resolved spec is invalid (an
impossible value in one grid cell) is recorded as failed, with the located message, and
the other runs go ahead; when every run is invalid, the study is refused.

A run is identified by a content hash of its resolved spec (stable JSON, without the
name), so rerunning a study skips the runs that finished (resume) and retries the ones
that failed. Each run writes the same folder as ``bayesresnet fit``, under
``OUT/runs/<run id>/``, plus ``study_run.json`` (its results row; written last, so its
presence marks a finished run) or ``error.txt`` (a failed run). ``OUT/results.csv`` (and
``results.parquet`` when pyarrow is importable) holds one row per run and is rewritten
atomically after every finished run; ``OUT/report.html`` summarizes the study (see
:mod:`bayesresnet.study_report`).

Example:
    >>> from bayesresnet import study
    >>> rows = study.run("models/studies/smoke.toml", "runs/smoke", workers=2)
    >>> [r["status"] for r in rows]
"""

from __future__ import annotations

import copy
import csv
import dataclasses
import difflib
import hashlib
import io
import itertools
import json
import math
import os
import re
import sys
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bayesresnet import _io
from bayesresnet.calibration import HEADLINE_LEVELS, INTERVAL_SCORE_KEY, level_key
from bayesresnet.infer import METHODS
from bayesresnet.runspec import (
    _SECTION_KEYS,
    SpecError,
    _key_lines,
    _line_of,
    _loads,
    _read_text,
    _toml_value,
    from_dict,
)

__all__ = [
    "StudyRun",
    "StudySpec",
    "BACKENDS",
    "RESULT_COLUMNS",
    "load_study",
    "parse_study",
    "run",
    "read_results",
    "write_results",
    "dump_toml",
]

BACKENDS = ("local", "ray")
RUNS_FOLDER = "runs"
RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"
RUN_RESULT = "study_run.json"
RUN_ERROR = "error.txt"

_TOP_KEYS = ("name", "description", "base", "grid", "runs")
#: Short grid names → the run-spec key paths they set.
SHORT_NAMES: dict[str, tuple[tuple[str, ...], ...]] = {
    **{k: (("data", k),) for k in ("problem", "num_train", "num_test", "noise", "design")},
    **{
        k: (("network", k),)
        for k in ("basis", "num_layers", "width", "degree", "num_knots", "activation", "residual")
    },
    "method": (("inference", "method"),),
    "seed": (("data", "seed"), ("inference", "seed")),
}
_TABLE_VALUED = {("data", "problem_options")}

#: Columns of the results table after the grid's own columns.
DESCRIPTOR_COLUMNS = (
    "problem",
    "basis",
    "residual",
    "num_layers",
    "width",
    "method",
    "num_train",
    "noise",
    "seed",
)
METRIC_COLUMNS = (
    "num_params",
    "train_rmse",
    "test_rmse",
    "gap",
    "gap_ratio",
    "crps",
    "nll",
    "coverage_50",
    "coverage_90",
    "coverage_95",
    "interval_score_90",
    "verdict",
    "seconds",
)
RESULT_COLUMNS = ("run_id", "name", *DESCRIPTOR_COLUMNS, *METRIC_COLUMNS, "status", "error")
"""Every results table has these columns (grid keys that are not among them are added)."""


# ---------------------------------------------------------------------------- the spec


@dataclass(frozen=True)
class StudyRun:
    """One run of a study.

    Attributes:
        index: Position in the study (0-based).
        run_id: Content hash of the resolved spec (16 hex digits); names its folder.
        name: The run's name (``<study>-<index>``).
        overrides: The grid or ``[[runs]]`` values of this run, by the key as written.
        spec: The resolved run spec (:meth:`RunSpec.to_dict`), None when invalid.
        error: The validation error of an invalid run (with file and line), else None.
    """

    index: int
    run_id: str
    name: str
    overrides: dict[str, Any]
    spec: dict[str, Any] | None
    error: str | None = None


@dataclass(frozen=True)
class StudySpec:
    """A validated study: its runs, each resolved (or recorded as invalid).

    Attributes:
        name: The study's name.
        path: The study file, or None.
        runs: The runs (distinct run ids, in order).
        columns: The override keys, in order of first appearance (results columns).
    """

    name: str
    path: Path | None
    runs: tuple[StudyRun, ...]
    columns: tuple[str, ...]


def load_study(path: str | os.PathLike, *, strict: bool = False) -> StudySpec:
    """Reads and validates a study specification from a TOML file (see the module doc).

    Args:
        path: The ``.toml`` file.
        strict: Refuse the study when any run is invalid (default: only when all are).

    Raises:
        FileNotFoundError: If ``path`` is not a file.
        SpecError: For an invalid study, with file and line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(
            f"`path`: no study specification file {path} (resolved from {Path.cwd()}); "
            "pass the path of a .toml file, e.g. models/studies/smoke.toml."
        )
    return parse_study(_read_text(path), path=path, strict=strict)


@dataclass(frozen=True)
class _Override:
    key: str  # as written (short or dotted)
    paths: tuple[tuple[str, ...], ...]  # the run-spec key paths it sets
    value: Any
    line: int | None


def _known_paths() -> list[str]:
    """Every dotted run-spec key a grid may set (for "did you mean")."""
    out = list(SHORT_NAMES)
    for section, keys in _SECTION_KEYS.items():
        out += [f"{section}.{k}" for k in keys]
    return out


def _check_path(key: str, path: tuple[str, ...], error) -> None:
    """``path`` (from a grid or run key) names a run-spec key; else a located SpecError."""
    sections = _SECTION_KEYS
    ok = False
    if len(path) >= 2 and path[0] in sections:
        section, rest = path[0], path[1:]
        if len(rest) == 1:
            ok = rest[0] in sections[section] and rest[0] != "problem_options"
            ok = ok or (section, rest[0]) in _TABLE_VALUED
        elif section == "data" and rest[0] == "problem_options" and len(rest) == 2:
            ok = True
        elif section == "inference" and rest[0] in METHODS and len(rest) == 2:
            ok = _is_option(rest[0], rest[1])
    if not ok:
        close = difflib.get_close_matches(key, _known_paths(), n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        raise error(
            f"`{key}` is not a run-spec key; use a short name ({', '.join(SHORT_NAMES)}) or a "
            f'dotted run-spec key such as "inference.num_steps" or "prior.weight_scale".{hint}'
        )


def _is_option(method: str, option: str) -> bool:
    return option in {f.name for f in dataclasses.fields(METHODS[method][0])}


def _flatten(table: Mapping, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], Any]]:
    """``(key path as written, value)`` pairs; nested tables become longer paths."""
    out = []
    for key, value in table.items():
        path = (*prefix, key)
        expanded = _expand(path)
        if isinstance(value, dict) and not any(p in _TABLE_VALUED for p in expanded):
            out += _flatten(value, path)
        else:
            out.append((path, value))
    return out


def _expand(written: tuple[str, ...]) -> tuple[tuple[str, ...], ...]:
    """The run-spec paths a written key sets: short names, ``"a.b"`` keys, nested tables."""
    parts = tuple(p for part in written for p in part.split("."))
    if len(parts) == 1 and parts[0] in SHORT_NAMES:
        return SHORT_NAMES[parts[0]]
    return (parts,)


def parse_study(
    text: str,
    *,
    path: str | os.PathLike | None = None,
    base_dir: str | os.PathLike | None = None,
    strict: bool = False,
) -> StudySpec:
    """Parses and validates a study specification from TOML text (see the module doc).

    Args:
        text: The TOML document.
        path: The file it came from (messages, default name, relative paths).
        base_dir: The folder relative paths are taken from; default: ``path``'s folder,
            else the working directory.
        strict: Refuse the study when any run is invalid (default: only when all are).

    Raises:
        TypeError: If ``text`` is not a str.
        SpecError: For an invalid study (or an invalid run with ``strict``).
    """
    if not isinstance(text, str):
        raise TypeError(f"`text` must be a str of TOML; got {type(text).__name__}.")
    path = None if path is None else Path(path)
    file = None if path is None else str(path)
    base_dir = Path(base_dir) if base_dir is not None else (path.parent if path else Path.cwd())
    raw = _loads(text, file)
    lines = _key_lines(text)

    def error(key_path: tuple[str, ...], message: str) -> SpecError:
        return SpecError(
            message, file=file, line=_line_of(lines, key_path), key=".".join(key_path) or None
        )

    unknown = [k for k in raw if k not in _TOP_KEYS]
    if unknown:
        key = min(unknown, key=lambda k: _line_of(lines, (k,)) or 0)
        close = difflib.get_close_matches(key, _TOP_KEYS, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        if key in _SECTION_KEYS:
            hint = f" Run-spec sections go under [base.{key}] (or in the `base` file)."
        raise error(
            (key,),
            f"unknown key '{key}' at the top level of the study.{hint} Allowed: "
            f"{', '.join(_TOP_KEYS)}.",
        )
    name = raw.get("name", path.stem if path is not None else "study")
    if not isinstance(name, str) or not name.strip() or re.search(r"[/\\]", name):
        raise error(
            ("name",), f"`name` must be a non-empty string without '/' or '\\'; got {name!r}."
        )

    # The base: a run spec file or inline tables.
    base = raw.get("base", {})
    if isinstance(base, str):
        base_path = _resolve(base, base_dir)
        if not base_path.is_file():
            raise error(
                ("base",),
                f"`base`: no such run spec file {json.dumps(base)} (looked for {base_path}; "
                "relative paths are taken from the study file's folder).",
            )
        base_text = _read_text(base_path)
        base_raw = _loads(base_text, str(base_path))
        base_loc = (str(base_path), _key_lines(base_text), ())
        base_data_dir = base_path.parent
    elif isinstance(base, dict):
        base_raw = base
        base_loc = (file, lines, ("base",))
        base_data_dir = base_dir
    else:
        raise error(
            ("base",),
            f"`base` must be the path of a run spec file or a table ([base.data], "
            f"[base.network], …); got {_toml_value(base)}.",
        )
    base_raw = copy.deepcopy(base_raw)
    base_raw.pop("name", None)

    # The overrides of every run.
    grids = raw.get("grid", [])
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise error(("grid",), "`grid` must be a table [grid] (or tables [[grid]]) of lists.")
    explicit = raw.get("runs", [])
    if not isinstance(explicit, list) or not all(isinstance(r, dict) for r in explicit):
        raise error(("runs",), "`runs` must be tables [[runs]] of overrides.")
    cells: list[list[_Override]] = []
    for g, grid in enumerate(grids):
        prefix = ("grid", str(g)) if isinstance(raw.get("grid"), list) else ("grid",)
        axes = []
        for written, values in _flatten(grid):
            key = ".".join(written)
            at = (*prefix, *written)
            _check_path(key, _expand(written)[0], lambda m, at=at: error(at, f"[grid] {m}"))
            if not isinstance(values, list) or not values:
                raise error(
                    at,
                    f"[grid] `{key}` must be a non-empty list of values (one per run); got "
                    f"{_toml_value(values)}. Write {key} = [{_literal(values)}] for one value.",
                )
            line = _line_of(lines, at)
            axes.append([_Override(key, _expand(written), v, line) for v in values])
        cells += [list(combo) for combo in itertools.product(*axes)] if axes else []
    for r, entry in enumerate(explicit):
        overrides = []
        for written, value in _flatten(entry):
            key = ".".join(written)
            at = ("runs", str(r), *written)
            _check_path(key, _expand(written)[0], lambda m, at=at: error(at, f"[[runs]] {m}"))
            overrides.append(_Override(key, _expand(written), value, _line_of(lines, at)))
        cells.append(overrides)
    if not cells:
        cells = [[]]

    runs, seen, columns, errors = [], set(), [], []
    for overrides in cells:
        for o in overrides:
            if o.key not in columns:
                columns.append(o.key)
        index = len(runs)
        run_name = f"{name}-{index:03d}"
        resolved = _apply(base_raw, overrides)
        resolved["name"] = run_name
        spec, located = None, None
        try:
            spec = from_dict(resolved, base_dir=base_data_dir).to_dict()
        except SpecError as e:
            located = _locate(e, overrides, base_loc, index, file)
        identity = spec if spec is not None else resolved
        run_id = content_hash(identity)
        if run_id in seen:
            continue
        seen.add(run_id)
        if located is not None:
            errors.append(located)
        runs.append(
            StudyRun(
                index=index,
                run_id=run_id,
                name=run_name,
                overrides={o.key: o.value for o in overrides},
                spec=spec,
                error=None if located is None else str(located),
            )
        )
    if errors and (strict or len(errors) == len(runs)):
        first = errors[0]
        what = "every run of the study is invalid" if len(errors) == len(runs) else "invalid"
        message = str(first).split(": ", 1)[1] if first.line or first.file else str(first)
        raise SpecError(f"{what}: {message}", file=first.file, line=first.line, key=first.key)
    return StudySpec(name=name, path=path, runs=tuple(runs), columns=tuple(columns))


def _literal(value) -> str:
    return json.dumps(value) if isinstance(value, str) else str(value).lower()


def _resolve(value: str, base_dir: Path) -> Path:
    p = Path(value).expanduser()
    return Path(os.path.abspath(p if p.is_absolute() else base_dir / p))


def _apply(base: Mapping, overrides: list[_Override]) -> dict:
    """The base with the overrides set; the chosen method's ``[inference.<method>]`` merged.

    Precedence: the grid's or run's values, then the method's own table, then the base's
    ``[inference]`` values.
    """
    out = copy.deepcopy(dict(base))
    for o in overrides:
        for path in o.paths:
            table = out
            for part in path[:-1]:
                table = table.setdefault(part, {})
                if not isinstance(table, dict):
                    break
            else:
                table[path[-1]] = copy.deepcopy(o.value)
    inference = out.get("inference")
    if isinstance(inference, dict):
        method = inference.get("method", "nuts")
        specific = {}
        for m in METHODS:
            if isinstance(inference.get(m), dict):
                table = inference.pop(m)
                if m == method:
                    specific = table
        # The method's own table fills in, but a value the grid or run sets wins.
        overridden = {p[1] for o in overrides for p in o.paths if len(p) == 2}
        overridden &= {p[1] for o in overrides for p in o.paths if p[0] == "inference"}
        inference.update({k: v for k, v in specific.items() if k not in overridden})
    return out


def _locate(error: SpecError, overrides, base_loc, index: int, study_file) -> SpecError:
    """The error of an invalid run, at the line of the override or base key it names."""
    key = tuple(error.key.split(".")) if error.key else ()
    label = ", ".join(f"{o.key} = {_literal(o.value)}" for o in overrides) or "the base"
    message = f"run {index} ({label}): {error}"
    for o in overrides:
        for p in o.paths:
            if key and (p[: len(key)] == key or key[: len(p)] == p):
                return SpecError(message, file=study_file, line=o.line, key=error.key)
    file, lines, prefix = base_loc
    line = _line_of(lines, (*prefix, *key)) if key else None
    return SpecError(message, file=file, line=line, key=error.key)


def content_hash(spec: Mapping) -> str:
    """16 hex digits of the SHA-256 of the spec's stable JSON (without its ``name``)."""
    body = {k: v for k, v in spec.items() if k != "name"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def dump_toml(spec: Mapping) -> str:
    """A run spec dict (:meth:`RunSpec.to_dict`) as TOML text (None values left out)."""
    lines = []
    scalars = {k: v for k, v in spec.items() if not isinstance(v, dict) and v is not None}
    for k, v in scalars.items():
        lines.append(f"{_toml_key(k)} = {_toml_literal(v)}")

    def table(prefix: str, t: Mapping) -> None:
        lines.append(f"\n[{prefix}]")
        subs = {}
        for k, v in t.items():
            if isinstance(v, dict):
                subs[k] = v
            elif v is not None:
                lines.append(f"{_toml_key(k)} = {_toml_literal(v)}")
        for k, v in subs.items():
            table(f"{prefix}.{_toml_key(k)}", v)

    for k, v in spec.items():
        if isinstance(v, dict):
            table(_toml_key(k), v)
    return "\n".join(lines).lstrip("\n") + "\n"


def _toml_key(key: str) -> str:
    return key if re.fullmatch(r"[A-Za-z0-9_-]+", key) else json.dumps(key)


def _toml_literal(value) -> str:
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
        return "[" + ", ".join(_toml_literal(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


# ----------------------------------------------------------------------------- one run


def _descriptors(run: StudyRun) -> dict[str, Any]:
    """The descriptor columns of a run, from its resolved spec (or its overrides)."""
    if run.spec is None:
        out = dict.fromkeys(DESCRIPTOR_COLUMNS)
        out.update({k: v for k, v in run.overrides.items() if k in DESCRIPTOR_COLUMNS})
        return out
    data, network, inference = run.spec["data"], run.spec["network"], run.spec["inference"]
    return {
        "problem": data.get("problem") or Path(data.get("train", "")).name,
        "basis": network["basis"],
        "residual": network["residual"],
        "num_layers": network["num_layers"],
        "width": network["width"],
        "method": inference["method"],
        "num_train": data.get("num_train"),
        "noise": data.get("noise"),
        "seed": inference["seed"],
    }


def _base_row(run: StudyRun) -> dict[str, Any]:
    row = dict.fromkeys(RESULT_COLUMNS)
    row.update(run_id=run.run_id, name=run.name, **_descriptors(run))
    row.update({k: v for k, v in run.overrides.items() if k not in DESCRIPTOR_COLUMNS})
    return row


def metrics_row(metrics: Mapping) -> dict[str, Any]:
    """The results columns of one run from its ``metrics.json`` (overall over outputs)."""

    def overall(table, key):
        value = (table or {}).get(key)
        return value.get("overall") if isinstance(value, dict) else None

    cal = metrics.get("calibration", {})
    test, train = cal.get("test"), cal.get("train")
    train_rmse, test_rmse = overall(train, "rmse"), overall(test, "rmse")
    gap = ratio = None
    if train_rmse is not None and test_rmse is not None:
        gap = test_rmse - train_rmse
        ratio = test_rmse / train_rmse if train_rmse > 0 else None
    coverage = (test or {}).get("coverage", {})
    return {
        "num_params": metrics["model"]["num_params"],
        "train_rmse": train_rmse,
        "test_rmse": test_rmse,
        "gap": gap,
        "gap_ratio": ratio,
        "crps": overall(test, "crps"),
        "nll": overall(test, "nll"),
        **{
            f"coverage_{round(100 * level)}": coverage.get(level_key(level), {}).get("overall")
            for level in HEADLINE_LEVELS
        },
        INTERVAL_SCORE_KEY: overall(test, INTERVAL_SCORE_KEY),
        "verdict": metrics["diagnostics"]["verdict"],
    }


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: " + " ".join(str(error).split())


def execute(run: StudyRun, folder) -> dict[str, Any]:
    """Fit, analyse and save one run into ``folder`` (as ``bayesresnet fit`` does).

    Never raises for a failed run (but for KeyboardInterrupt): the error is returned in
    the row (``status = "failed"``) and its traceback left in ``folder/error.txt``. A
    finished run's row is written last, as ``folder/study_run.json``.
    """
    import warnings

    from bayesresnet import cli
    from bayesresnet.runspec import from_dict as runspec_from_dict

    folder = Path(folder)
    start = time.perf_counter()
    row = _base_row(run)
    if run.spec is None:
        row.update(status="invalid", error=run.error)
        _io.write_atomic(folder / RUN_ERROR, (run.error or "").encode())
        return row
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runspec = runspec_from_dict(run.spec)
            saved = cli.fit_run(runspec, folder, spec_text=dump_toml(run.spec))
            analysis, _ = cli.analyze_run(folder, saved)
            row.update(metrics_row(analysis.metrics), status="ok")
        except Exception as error:  # a failed run is recorded; the study goes on
            row.update(status="failed", error=_one_line(error))
            _io.write_atomic(folder / RUN_ERROR, traceback.format_exc().encode())
    row["seconds"] = time.perf_counter() - start
    if row["status"] == "ok":
        record = {"row": row, "warnings": sorted({str(w.message) for w in caught})}
        _io.write_json(folder / RUN_RESULT, record)
    return row


def _finished_row(folder: Path) -> dict | None:
    """The row of a finished run folder, or None (absent, failed or unreadable)."""
    try:
        record = json.loads((folder / RUN_RESULT).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    row = record.get("row") if isinstance(record, dict) else None
    return row if isinstance(row, dict) and row.get("status") == "ok" else None


# ---------------------------------------------------------------------------- backends


def worker_env(base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment of a worker process: one XLA/BLAS thread each, no GPU preallocation.

    ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` keeps XLA's CPU
    kernels on one thread, so ``N`` workers use about ``N`` cores; with
    ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` several workers can share a GPU.
    """
    base = os.environ if base is None else base
    flags = base.get("XLA_FLAGS", "").split()
    for flag in ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"):
        if flag.split("=")[0] not in " ".join(flags):
            flags.append(flag)
    package_root = str(Path(__file__).resolve().parent.parent)
    pythonpath = [package_root, *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        "XLA_FLAGS": " ".join(flags),
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        "MPLBACKEND": "Agg",
        # The workers import this copy of bayesresnet, whatever is installed.
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
    }


def _init_worker(env: Mapping[str, str]) -> None:
    os.environ.update(env)


def _execute_task(run: StudyRun, folder: str) -> dict[str, Any]:
    return execute(run, folder)


def _run_local(tasks, workers: int, on_done: Callable[[dict], None]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    env = worker_env()
    saved = {k: os.environ.get(k) for k in env}
    # A spawned worker inherits the environment at its start, before it imports JAX.
    os.environ.update(env)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(env,),
    )
    try:
        futures = {pool.submit(_execute_task, run, str(folder)): run for run, folder in tasks}
        for future in as_completed(futures):
            try:
                row = future.result()
            except BrokenProcessPool as error:
                row = _base_row(futures[future])
                row.update(status="failed", error=f"the worker process died: {_one_line(error)}")
            on_done(row)
    except BaseException:
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    pool.shutdown(wait=True)


def _import_ray():
    try:
        import ray
    except ImportError as error:
        raise ImportError(
            "the ray backend needs Ray, which is not installed: pip install bayesresnet[ray] "
            "(or use --backend local)."
        ) from error
    return ray


def _run_ray(tasks, workers: int | None, address, on_done: Callable[[dict], None]) -> None:
    import warnings

    with warnings.catch_warnings():
        # Ray starts its processes by fork + exec, which JAX's at-fork hook warns about;
        # nothing JAX-threaded runs in the child before the exec.
        warnings.filterwarnings("ignore", r"os\.fork\(\) was called", RuntimeWarning)
        _run_ray_tasks(tasks, workers, address, on_done)


def _run_ray_tasks(tasks, workers, address, on_done) -> None:
    ray = _import_ray()
    started = False
    pending = {}
    if not ray.is_initialized():
        options = dict(
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"env_vars": worker_env()},
        )
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **options)
        started = True
    try:
        resources = ray.cluster_resources()
        slots = workers or max(1, int(resources.get("CPU", 1)))
        gpus = resources.get("GPU", 0)
        # Runs share the GPUs: a fraction each, so that `slots` runs fit at once.
        num_gpus = min(1.0, math.floor(100 * gpus / slots) / 100) if gpus else 0
        remote = ray.remote(_execute_task).options(num_cpus=1, num_gpus=num_gpus, max_retries=0)
        pending = {remote.remote(run, str(folder)): run for run, folder in tasks}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            for ref in done:
                run = pending.pop(ref)
                try:
                    row = ray.get(ref)
                except ray.exceptions.RayError as error:
                    row = _base_row(run)
                    row.update(status="failed", error=f"the Ray task failed: {_one_line(error)}")
                on_done(row)
    except BaseException:
        if started:
            for ref in list(pending):
                ray.cancel(ref, force=True)
        raise
    finally:
        if started:
            ray.shutdown()


# ------------------------------------------------------------------------------ results

_TEXT_COLUMNS = {"run_id", "name", "problem", "basis", "method", "verdict", "status", "error"}


def result_columns(rows) -> list[str]:
    """:data:`RESULT_COLUMNS` with the grid's extra columns after the descriptors."""
    extra = []
    for row in rows:
        extra += [k for k in row if k not in RESULT_COLUMNS and k not in extra]
    cut = RESULT_COLUMNS.index(DESCRIPTOR_COLUMNS[-1]) + 1
    return [*RESULT_COLUMNS[:cut], *extra, *RESULT_COLUMNS[cut:]]


def _cell(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value) if math.isfinite(value) else ""
    if isinstance(value, dict | list):
        return json.dumps(value)
    return str(value)


def _parse_cell(column: str, text: str):
    if text == "":
        return None
    if column in _TEXT_COLUMNS:
        return text
    if text in ("True", "False"):
        return text == "True"
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def write_results(out, rows: list[dict]) -> list[str]:
    """Write ``results.csv`` (and ``results.parquet`` with pyarrow) atomically; their names."""
    out = Path(out)
    columns = result_columns(rows)
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow([_cell(row.get(c)) for c in columns])
    _io.write_atomic(out / RESULTS_CSV, buffer.getvalue().encode())
    names = [RESULTS_CSV]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return names
    table = pa.table({c: [_parse_cell(c, _cell(r.get(c))) for r in rows] for c in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    _io.write_atomic(out / RESULTS_PARQUET, sink.getvalue())
    return [*names, RESULTS_PARQUET]


def read_results(path) -> list[dict]:
    """Read a study's ``results.csv`` (a file or the study folder) back into rows.

    Raises:
        FileNotFoundError: If there is no results file.
    """
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path / RESULTS_CSV
    if not path.is_file():
        raise FileNotFoundError(f"{path} does not exist: is this a study folder?")
    with path.open(newline="", encoding="utf-8") as fh:
        return [{c: _parse_cell(c, v) for c, v in r.items()} for r in csv.DictReader(fh)]


# ---------------------------------------------------------------------------- the study


def run(
    spec_or_path,
    out,
    *,
    backend: str = "local",
    workers: int | None = None,
    address: str | None = None,
    progress: bool = True,
    strict: bool = False,
) -> list[dict]:
    """Run a study: every run not finished yet, in parallel; returns the results rows.

    Args:
        spec_or_path: A :class:`StudySpec` or the path of a study TOML file.
        out: The study folder (``runs/``, ``results.csv``, ``report.html``).
        backend: ``"local"`` (a process pool, one JAX process per worker) or ``"ray"``
            (Ray tasks; a local Ray instance unless ``address`` is given).
        workers: Runs at once (default: the CPU count, at most the runs to do).
        address: Address of a running Ray cluster (``backend="ray"`` only).
        progress: Progress messages and a bar on standard error.
        strict: Refuse the study when any run is invalid.

    Returns:
        One dict per run, in study order, with the columns of ``results.csv``; a failed
        run has ``status`` ``"failed"`` (or ``"invalid"``) and its ``error``.

    Raises:
        ValueError: For a bad ``backend``, ``workers`` or ``address``.
        SpecError: For an invalid study.
        ImportError: For ``backend="ray"`` without Ray.
    """
    from bayesresnet._validate import check_int

    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}; got {backend!r}.")
    if workers is not None:
        check_int("workers", workers, minimum=1)
    if address is not None and backend != "ray":
        raise ValueError(f"`address` applies only to backend='ray'; got backend={backend!r}.")
    if backend == "ray":
        _import_ray()
    study = spec_or_path if isinstance(spec_or_path, StudySpec) else None
    if study is None:
        study = load_study(spec_or_path, strict=strict)
    out = Path(out)
    runs_dir = out / RUNS_FOLDER
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)

    rows: dict[str, dict] = {}
    todo = []
    for r in study.runs:
        folder = runs_dir / r.run_id
        finished = _finished_row(folder) if r.spec is not None else None
        if r.spec is None:
            rows[r.run_id] = execute(r, folder)  # records the validation error
        elif finished is not None:
            rows[r.run_id] = {**_base_row(r), **finished, "name": r.name}
        else:
            rows[r.run_id] = {**_base_row(r), "status": "pending"}
            todo.append((r, folder))
    _io.write_json(
        out / "study.json",
        {
            "name": study.name,
            "path": None if study.path is None else str(study.path),
            "columns": list(study.columns),
            "runs": [
                {"run_id": r.run_id, "name": r.name, "overrides": r.overrides} for r in study.runs
            ],
        },
    )
    order = [r.run_id for r in study.runs]

    def table() -> list[dict]:
        return [rows[i] for i in order]

    write_results(out, table())
    num_workers = workers or min(os.cpu_count() or 1, max(1, len(todo)))
    invalid = sum(r.spec is None for r in study.runs)
    say(
        f"study {study.name!r}: {len(order)} runs, {len(order) - len(todo) - invalid} finished "
        f"before, {invalid} invalid, {len(todo)} to run ({backend}, {num_workers} workers)"
    )
    bar = None
    if progress and todo:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(todo), desc=study.name, unit="run", file=sys.stderr)

    def on_done(row: dict) -> None:
        rows[row["run_id"]] = row
        write_results(out, table())
        if bar is not None:
            bar.update(1)
            bar.set_postfix_str(f"{row['name']} {row['status']}")

    try:
        if todo and backend == "local":
            _run_local(todo, num_workers, on_done)
        elif todo:
            _run_ray(todo, workers, address, on_done)
    finally:
        if bar is not None:
            bar.close()
    result = table()
    try:
        from bayesresnet.study_report import write_study_report

        write_study_report(out, result, title=study.name)
    except Exception as error:  # the results are written; a report can be re-rendered
        say(f"warning: the study report failed ({_one_line(error)}); retry `study-report {out}`")
    failed = [r for r in result if r["status"] != "ok"]
    say(
        f"done: {len(result) - len(failed)} ok, {len(failed)} failed; results: "
        f"{out / RESULTS_CSV}, report: {out / 'report.html'}"
    )
    return result
