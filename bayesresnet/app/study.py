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

Every run is resolved into a full run spec and validated (:func:`bayesresnet.app.
runspec.from_dict`) before any run starts. Errors of the study itself (TOML syntax,
unknown keys, grid values that are not lists, unknown run-spec keys) raise
:class:`~bayesresnet.app.toml.SpecError` with the file and line. A run whose resolved
spec is invalid (an impossible value in one grid cell) is recorded as failed, with the
located message, and the other runs go ahead; when every run is invalid, the study is
refused.

A run is identified by a content hash of its resolved spec (stable JSON, without the
name), so rerunning a study skips the runs that finished (resume) and retries the ones
that failed. Each run writes the same folder as ``bayesresnet fit``, under
``OUT/runs/<run id>/``, plus ``study_run.json`` (its results row; written last, so its
presence marks a finished run) or ``error.txt`` (a failed run). ``OUT/results.csv`` (and
``results.parquet`` when pyarrow is importable) holds one row per run (the columns of
:mod:`bayesresnet.app.results`) and is rewritten atomically after every finished run;
``OUT/report.html`` summarizes the study (see :mod:`bayesresnet.app.study_report`).

A study stops when told: Ctrl-C, SIGTERM or SIGHUP end its workers within seconds (the
runs in progress are lost, the finished ones kept; a rerun resumes), and a local worker
dies with the study even when the study is killed with SIGKILL (Linux's parent-death
signal; elsewhere a thread watching the parent). ``OUT/study.lock`` (an ``flock``
holding the PID) makes a second study on the same ``OUT`` fail at once, naming that PID.

Example:
    >>> from bayesresnet.app import study
    >>> rows = study.run("models/studies/smoke.toml", "runs/smoke", workers=2)
    >>> [r["status"] for r in rows]
"""

from __future__ import annotations

import atexit
import contextlib
import copy
import dataclasses
import difflib
import hashlib
import itertools
import json
import math
import os
import signal
import sys
import threading
import time
import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

from bayesresnet._io import write_atomic, write_json
from bayesresnet.app.compile_cache import compile_cache_env, enabled_cache_dir
from bayesresnet.app.results import (
    DESCRIPTOR_COLUMNS,
    RESULT_COLUMNS,
    RESULTS_CSV,
    metrics_row,
    write_results,
)
from bayesresnet.app.run_folder import analyze_run, check_output_folder, claim, fit_run
from bayesresnet.app.runspec import SECTION_KEYS, from_dict
from bayesresnet.app.spec import check_run_name
from bayesresnet.app.toml import (
    Locator,
    SpecError,
    describe,
    dumps,
    key_lines,
    line_of,
    literal,
    loads,
    read_text,
    resolve_path,
)
from bayesresnet.infer import METHODS
from bayesresnet.infer.lanes import THREADS_ENV

__all__ = [
    "StudyRun",
    "StudySpec",
    "BACKENDS",
    "load_study",
    "parse_study",
    "run",
    "execute",
    "content_hash",
    "worker_env",
    "StudyLockedError",
    "check_out",
    "StudyStopped",
    "LOCK_FILE",
    "WORKER_MARKER",
]

BACKENDS = ("local", "ray")
RUNS_FOLDER = "runs"
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
    return parse_study(read_text(path), path=path, strict=strict)


@dataclass(frozen=True)
class _Override:
    key: str  # as written (short or dotted)
    paths: tuple[tuple[str, ...], ...]  # the run-spec key paths it sets
    value: Any
    line: int | None


def _known_paths() -> list[str]:
    """Every dotted run-spec key a grid may set (for "did you mean")."""
    out = list(SHORT_NAMES)
    for section, keys in SECTION_KEYS.items():
        out += [f"{section}.{k}" for k in keys]
    return out


def _check_path(key: str, path: tuple[str, ...], error) -> None:
    """``path`` (from a grid or run key) names a run-spec key; else a located SpecError."""
    sections = SECTION_KEYS
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

    The steps: the top-level keys and the name, the base run spec, the override cells of
    the grids and ``[[runs]]``, then every run resolved and validated.

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
    raw = loads(text, file)
    where = Locator(file, key_lines(text))
    name = _study_name(raw, path, where)
    base = _load_base(raw.get("base", {}), base_dir, where)
    cells = _grid_cells(raw, where) + _explicit_cells(raw.get("runs", []), where)
    runs, columns, errors = _resolve_runs(cells or [[]], name, base, file)
    if errors and (strict or len(errors) == len(runs)):
        first = errors[0]
        what = "every run of the study is invalid" if len(errors) == len(runs) else "invalid"
        message = str(first).split(": ", 1)[1] if first.line or first.file else str(first)
        raise SpecError(f"{what}: {message}", file=first.file, line=first.line, key=first.key)
    return StudySpec(name=name, path=path, runs=tuple(runs), columns=tuple(columns))


def _study_name(raw: Mapping, path: Path | None, where: Locator) -> str:
    """The study's name (default: the file's stem), after refusing unknown top-level keys."""
    unknown = [k for k in raw if k not in _TOP_KEYS]
    if unknown:
        key = min(unknown, key=lambda k: line_of(where.lines, (k,)) or 0)
        close = difflib.get_close_matches(key, _TOP_KEYS, n=1, cutoff=0.6)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        if key in SECTION_KEYS:
            hint = f" Run-spec sections go under [base.{key}] (or in the `base` file)."
        raise where.error(
            (key,),
            f"unknown key '{key}' at the top level of the study.{hint} Allowed: "
            f"{', '.join(_TOP_KEYS)}.",
        )
    name = raw.get("name", path.stem if path is not None else "study")
    try:
        return check_run_name(name)  # the runs are named <name>-000, <name>-001, ...
    except ValueError as error:
        raise where.error(("name",), str(error)) from None


class _Base(NamedTuple):
    """The base run spec of a study, and where its keys are (for the errors of a run)."""

    raw: dict  # the run-spec tables, without a name
    where: Locator  # the file that holds them: the base file, or the study itself
    prefix: tuple[str, ...]  # their key path in that file: () or ("base",)
    data_dir: Path  # the folder its relative data paths are taken from


def _load_base(base, base_dir: Path, where: Locator) -> _Base:
    """The base: a run spec file (relative to the study's folder) or inline ``[base.*]`` tables."""
    if isinstance(base, str):
        base_path = resolve_path(base, base_dir)
        if not base_path.is_file():
            raise where.error(
                ("base",),
                f"`base`: no such run spec file {json.dumps(base)} (looked for {base_path}; "
                "relative paths are taken from the study file's folder).",
            )
        base_text = read_text(base_path)
        raw = loads(base_text, str(base_path))
        located = _Base(raw, Locator(str(base_path), key_lines(base_text)), (), base_path.parent)
    elif isinstance(base, dict):
        located = _Base(base, where, ("base",), base_dir)
    else:
        raise where.error(
            ("base",),
            f"`base` must be the path of a run spec file or a table ([base.data], "
            f"[base.network], …); got {describe(base)}.",
        )
    raw = copy.deepcopy(located.raw)
    raw.pop("name", None)
    return located._replace(raw=raw)


def _grid_cells(raw: Mapping, where: Locator) -> list[list[_Override]]:
    """The overrides of every grid cell: each ``[grid]`` (or ``[[grid]]``)'s product, in order."""
    grids = raw.get("grid", [])
    grids = [grids] if isinstance(grids, dict) else grids
    if not isinstance(grids, list) or not all(isinstance(g, dict) for g in grids):
        raise where.error(("grid",), "`grid` must be a table [grid] (or tables [[grid]]) of lists.")
    cells = []
    for g, grid in enumerate(grids):
        prefix = ("grid", str(g)) if isinstance(raw.get("grid"), list) else ("grid",)
        axes = []
        for written, values in _flatten(grid):
            key = ".".join(written)
            at = (*prefix, *written)
            _check_path(key, _expand(written)[0], lambda m, at=at: where.error(at, f"[grid] {m}"))
            if not isinstance(values, list) or not values:
                raise where.error(
                    at,
                    f"[grid] `{key}` must be a non-empty list of values (one per run); got "
                    f"{describe(values)}. Write {key} = [{literal(values)}] for one value.",
                )
            line = line_of(where.lines, at)
            axes.append([_Override(key, _expand(written), v, line) for v in values])
        cells += [list(combo) for combo in itertools.product(*axes)] if axes else []
    return cells


def _explicit_cells(explicit, where: Locator) -> list[list[_Override]]:
    """The overrides of every ``[[runs]]`` table."""
    if not isinstance(explicit, list) or not all(isinstance(r, dict) for r in explicit):
        raise where.error(("runs",), "`runs` must be tables [[runs]] of overrides.")
    cells = []
    for r, entry in enumerate(explicit):
        overrides = []
        for written, value in _flatten(entry):
            key = ".".join(written)
            at = ("runs", str(r), *written)
            _check_path(key, _expand(written)[0], lambda m, at=at: where.error(at, f"[[runs]] {m}"))
            overrides.append(_Override(key, _expand(written), value, line_of(where.lines, at)))
        cells.append(overrides)
    return cells


def _resolve_runs(cells, name: str, base: _Base, study_file: str | None):
    """``(runs, columns, errors)``: each cell resolved and validated; duplicates dropped."""
    runs, seen, columns, errors = [], set(), [], []
    for overrides in cells:
        for o in overrides:
            if o.key not in columns:
                columns.append(o.key)
        index = len(runs)
        run_name = f"{name}-{index:03d}"
        resolved = _apply(base.raw, overrides)
        resolved["name"] = run_name
        spec, located = None, None
        try:
            spec = from_dict(resolved, base_dir=base.data_dir).to_dict()
        except SpecError as e:
            located = _locate(e, overrides, base, index, study_file)
        run_id = content_hash(spec if spec is not None else resolved)
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
    return runs, columns, errors


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


def _locate(error: SpecError, overrides, base: _Base, index: int, study_file) -> SpecError:
    """The error of an invalid run, at the line of the override or base key it names."""
    key = tuple(error.key.split(".")) if error.key else ()
    label = ", ".join(f"{o.key} = {literal(o.value)}" for o in overrides) or "the base"
    message = f"run {index} ({label}): {error}"
    for o in overrides:
        for p in o.paths:
            if key and (p[: len(key)] == key or key[: len(p)] == p):
                return SpecError(message, file=study_file, line=o.line, key=error.key)
    line = line_of(base.where.lines, (*base.prefix, *key)) if key else None
    return SpecError(message, file=base.where.file, line=line, key=error.key)


def content_hash(spec: Mapping) -> str:
    """16 hex digits of the SHA-256 of the spec's stable JSON (without its ``name``)."""
    body = {k: v for k, v in spec.items() if k != "name"}
    text = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


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


def _one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: " + " ".join(str(error).split())


def execute(run: StudyRun, folder) -> dict[str, Any]:
    """Fit, analyse and save one run into ``folder`` (as ``bayesresnet fit`` does).

    Never raises for a failed run (but for KeyboardInterrupt): the error is returned in
    the row (``status = "failed"``) and its traceback left in ``folder/error.txt``. A
    finished run's row is written last, as ``folder/study_run.json``.
    """
    import warnings

    folder = claim(folder)  # the study's own folder: a failed attempt's files are replaced
    start = time.perf_counter()
    row = _base_row(run)
    if run.spec is None:
        row.update(status="invalid", error=run.error)
        write_atomic(folder / RUN_ERROR, (run.error or "").encode())
        return row
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            runspec = from_dict(run.spec)
            saved = fit_run(runspec, folder, spec_text=dumps(run.spec))
            analysis, _ = analyze_run(folder, saved)
            row.update(metrics_row(analysis.metrics), status="ok")
        except Exception as error:  # a failed run is recorded; the study goes on
            row.update(status="failed", error=_one_line(error))
            write_atomic(folder / RUN_ERROR, traceback.format_exc().encode())
    row["seconds"] = time.perf_counter() - start
    if row["status"] == "ok":
        record = {"row": row, "warnings": sorted({str(w.message) for w in caught})}
        write_json(folder / RUN_RESULT, record)
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


def worker_env(base: Mapping[str, str] | None = None, *, cache: bool = True) -> dict[str, str]:
    """Environment of a worker process: one XLA/BLAS thread each, no GPU preallocation,
    and (``cache``) the compile cache this process uses
    (:mod:`bayesresnet.app.compile_cache`; not for a Ray cluster's workers, on machines
    where its folder may not exist).

    ``--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1`` keeps XLA's CPU
    kernels on one thread and ``BAYESRESNET_THREADS=1`` a fit's lanes (members, chains),
    so ``N`` workers use about ``N`` cores; with
    ``XLA_PYTHON_CLIENT_PREALLOCATE=false`` several workers can share a GPU.
    """
    base = os.environ if base is None else base
    flags = base.get("XLA_FLAGS", "").split()
    for flag in ("--xla_cpu_multi_thread_eigen=false", "intra_op_parallelism_threads=1"):
        if flag.split("=")[0] not in " ".join(flags):
            flags.append(flag)
    package_root = str(Path(__file__).resolve().parents[2])
    pythonpath = [package_root, *filter(None, base.get("PYTHONPATH", "").split(os.pathsep))]
    return {
        "XLA_FLAGS": " ".join(flags),
        "XLA_PYTHON_CLIENT_PREALLOCATE": "false",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
        "MKL_NUM_THREADS": "1",
        THREADS_ENV: "1",  # lanes one after another (bayesresnet.infer.lanes)
        "MPLBACKEND": "Agg",
        # The workers import this copy of bayesresnet, whatever is installed.
        "PYTHONPATH": os.pathsep.join(dict.fromkeys(pythonpath)),
        **compile_cache_env(enabled_cache_dir() if cache else None),
    }


#: Set in every local worker's environment (to the study's PID): how to find them.
WORKER_MARKER = "BAYESRESNET_STUDY_WORKER"


def _init_worker(env: Mapping[str, str], parent: int) -> None:
    """A local worker: the study's environment, and it ends when the study does.

    Ctrl-C reaches the whole process group; the worker ignores it and the study ends its
    workers (:func:`_stop_workers`). If the study process dies, even by SIGKILL, the
    worker is killed too: Linux's parent-death signal, else a thread watching the parent.
    A worker still starting (importing) when the study dies exits here, once started.
    """
    os.environ.update(env)
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _die_with_parent(parent)


def _die_with_parent(parent: int) -> None:
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)
    else:

        def watch() -> None:
            while os.getppid() == parent:
                time.sleep(1.0)
            os._exit(1)

        threading.Thread(target=watch, name="watch-parent", daemon=True).start()
    if os.getppid() != parent:  # the study died before the signal was armed
        os._exit(1)


def _stop_workers(processes) -> None:
    """End the worker processes now (SIGTERM, then SIGKILL after 2 s); their runs are lost
    and their unfinished run folders are cleaned up by the next save."""
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.terminate()
    deadline = time.monotonic() + 2.0
    for process in processes:
        with contextlib.suppress(OSError, ValueError):
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                process.kill()
                process.join(1.0)


def _execute_task(run: StudyRun, folder: str) -> dict[str, Any]:
    return execute(run, folder)


def _run_local(tasks, workers: int, on_done: Callable[[dict], None]) -> None:
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor, as_completed
    from concurrent.futures.process import BrokenProcessPool

    env = {**worker_env(), WORKER_MARKER: str(os.getpid())}
    saved = {k: os.environ.get(k) for k in env}
    # A spawned worker inherits the environment at its start, before it imports JAX.
    os.environ.update(env)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_init_worker,
        initargs=(env, os.getpid()),
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
        # Interrupted (Ctrl-C, SIGTERM): the running runs stop now, not when they finish.
        # `_processes` (pid → Process) is the executor's record of its workers.
        processes = list((getattr(pool, "_processes", None) or {}).values())
        pool.shutdown(wait=False, cancel_futures=True)
        _stop_workers(processes)
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
            runtime_env={"env_vars": worker_env(cache=not address)},
        )
        if address:
            ray.init(address=address, **options)
        else:
            ray.init(num_cpus=workers or os.cpu_count() or 1, **options)
        started = True
        atexit.register(ray.shutdown)  # also when the study is ended by a signal
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
            atexit.unregister(ray.shutdown)


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
        ValueError: For a bad ``backend``, ``workers`` or ``address``, or an ``out`` that
            cannot be written (a file, a symbolic link, inside a file, not writable).
        SpecError: For an invalid study.
        ImportError: For ``backend="ray"`` without Ray.
        StudyLockedError: At once, if another study is writing ``out``.
        KeyboardInterrupt: On Ctrl-C (:class:`StudyStopped` on SIGTERM or SIGHUP), after
            the workers have ended; the finished runs are kept and a rerun resumes.
    """
    _check_backend(backend, workers, address)
    study = spec_or_path if isinstance(spec_or_path, StudySpec) else None
    if study is None:
        study = load_study(spec_or_path, strict=strict)
    out = Path(out)
    say = (lambda m: print(m, file=sys.stderr, flush=True)) if progress else (lambda m: None)
    check_out(out)
    with _locked(out), _stop_on_signals():
        return _run_study(study, out, backend, workers, address, progress, say)


def _run_study(study, out: Path, backend, workers, address, progress, say) -> list[dict]:
    """The body of :func:`run`, holding the lock of ``out``."""
    table, todo = _start(study, out)
    num_workers = workers or min(os.cpu_count() or 1, max(1, len(todo)))
    invalid = sum(r.spec is None for r in study.runs)
    done_before = len(study.runs) - len(todo) - invalid
    say(
        f"study {study.name!r}: {len(study.runs)} runs, {done_before} finished "
        f"before, {invalid} invalid, {len(todo)} to run ({backend}, {num_workers} workers)"
    )
    if progress and todo:
        from tqdm.auto import tqdm

        table.bar = tqdm(total=len(todo), desc=study.name, unit="run", file=sys.stderr)
    try:
        if todo and backend == "local":
            _run_local(todo, num_workers, table.done)
        elif todo:
            _run_ray(todo, workers, address, table.done)
    finally:
        if table.bar is not None:
            table.bar.close()
    result = table.rows()
    _finish(out, study.name, result, say)
    return result


STUDY_FILE = "study.json"


def check_out(out) -> Path:
    """``out`` can hold the study: new, empty, or a study folder (resumed), and writable.

    Raises:
        ValueError: For a symbolic link, a path inside a file, a file, a folder that is not
            writable, or a non-empty folder without ``study.json`` (naming what it holds):
            a study writes ``report.html``, ``results.csv`` and ``runs/`` there.
    """
    out = Path(out)
    check_output_folder(out, existing="reuse")
    if out.is_dir():
        names = sorted(p.name for p in out.iterdir())
        if names and not {STUDY_FILE, LOCK_FILE} & set(names):
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            raise ValueError(
                f"{out} is not a study folder (it holds {shown}; a study folder holds "
                f"{STUDY_FILE}); choose a new or empty --out."
            )
    return out


class StudyLockedError(RuntimeError):
    """Another study is writing the same study folder (the message names its PID)."""


class StudyStopped(KeyboardInterrupt):
    """The study was ended by a signal (SIGTERM, SIGHUP); ``signum`` names it.

    A KeyboardInterrupt, so the same clean-up runs as for Ctrl-C: the workers end.
    """

    def __init__(self, signum: int):
        super().__init__(f"stopped by {signal.Signals(signum).name}")
        self.signum = signum


@contextlib.contextmanager
def _stop_on_signals():
    """SIGTERM and SIGHUP (what ``timeout``, batch schedulers and closed terminals send)
    raise :class:`StudyStopped` in the study, as Ctrl-C raises KeyboardInterrupt."""
    if threading.current_thread() is not threading.main_thread():
        yield  # signal handlers can only be set from the main thread
        return

    def stop(signum, frame):
        raise StudyStopped(signum)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


LOCK_FILE = "study.lock"


@contextlib.contextmanager
def _locked(out: Path):
    """Hold ``out/study.lock`` (an exclusive ``flock`` with the holder's PID in it).

    The operating system releases the lock when its process ends, however it ends: a
    lock whose PID is no longer running is taken over, with a note.

    Raises:
        StudyLockedError: At once, naming the PID of the study that holds it.
    """
    import fcntl

    out.mkdir(parents=True, exist_ok=True)
    path = out / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            raise StudyLockedError(
                f"another study (PID {holder}) is writing {out} (it holds {path}); wait for "
                f"it to finish or stop it, or choose another --out."
            ) from None
        previous = os.pread(fd, 32, 0).decode(errors="replace").strip()
        if previous and previous != str(os.getpid()):
            print(
                f"note: took over {path} from PID {previous}, which is no longer running.",
                file=sys.stderr,
                flush=True,
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        try:
            yield
        finally:
            os.ftruncate(fd, 0)  # a clean end leaves an empty, unlocked file
    finally:
        os.close(fd)  # releases the lock


def _check_backend(backend: str, workers: int | None, address: str | None) -> None:
    """Validate :func:`run`'s execution arguments (and that Ray imports, for ``"ray"``)."""
    from bayesresnet._validate import check_int

    if backend not in BACKENDS:
        raise ValueError(f"`backend` must be one of {list(BACKENDS)}; got {backend!r}.")
    if workers is not None:
        check_int("workers", workers, minimum=1)
    if address is not None and backend != "ray":
        raise ValueError(f"`address` applies only to backend='ray'; got backend={backend!r}.")
    if backend == "ray":
        _import_ray()


class _Table:
    """The results rows in study order, rewritten to ``results.csv`` after every change."""

    def __init__(self, out: Path, order: list[str], rows: dict[str, dict]):
        self.out, self.order, self.by_id, self.bar = out, order, rows, None

    def rows(self) -> list[dict]:
        return [self.by_id[i] for i in self.order]

    def done(self, row: dict) -> None:
        """Record a finished (or failed) run and rewrite the results."""
        self.by_id[row["run_id"]] = row
        write_results(self.out, self.rows())
        if self.bar is not None:
            self.bar.update(1)
            self.bar.set_postfix_str(f"{row['name']} {row['status']}")


def _start(study: StudySpec, out: Path) -> tuple[_Table, list[tuple[StudyRun, Path]]]:
    """Rows of the finished and invalid runs, the runs still to do, ``study.json`` written."""
    rows: dict[str, dict] = {}
    todo = []
    for r in study.runs:
        folder = out / RUNS_FOLDER / r.run_id
        finished = _finished_row(folder) if r.spec is not None else None
        if r.spec is None:
            rows[r.run_id] = execute(r, folder)  # records the validation error
        elif finished is not None:
            rows[r.run_id] = {**_base_row(r), **finished, "name": r.name}
        else:
            rows[r.run_id] = {**_base_row(r), "status": "pending"}
            todo.append((r, folder))
    write_json(
        out / STUDY_FILE,
        {
            "name": study.name,
            "path": None if study.path is None else str(study.path),
            "columns": list(study.columns),
            "runs": [
                {"run_id": r.run_id, "name": r.name, "overrides": r.overrides} for r in study.runs
            ],
        },
    )
    table = _Table(out, [r.run_id for r in study.runs], rows)
    write_results(out, table.rows())
    return table, todo


def _finish(out: Path, name: str, result: list[dict], say) -> None:
    """Write the study's report (a failure is only a warning) and say how it went."""
    try:
        from bayesresnet.app.study_report import write_study_report

        write_study_report(out, result, title=name)
    except Exception as error:  # the results are written; a report can be re-rendered
        say(f"warning: the study report failed ({_one_line(error)}); retry `study-report {out}`")
    failed = [r for r in result if r["status"] != "ok"]
    say(
        f"done: {len(result) - len(failed)} ok, {len(failed)} failed; results: "
        f"{out / RESULTS_CSV}, report: {out / 'report.html'}"
    )
