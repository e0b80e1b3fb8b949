"""The run folder: what ``bayesresnet fit`` writes, how it is written, read back and analysed.

A run folder holds:

========================  ============================================================
``spec.toml``             the run specification as given
``run.json``              the provenance record: the resolved spec (absolute data
                          paths, every default filled in), the bayesresnet version, and
                          what re-rendering the report needs without the original data
                          files (name, levels, probes, problem, data description)
``posterior.npz``         the posterior (:meth:`Posterior.save`)
``data.npz``              the training and held-out data (:func:`data.save_npz`)
``predictions.csv``       held-out predictions (when there are test rows)
``metrics.json``          every number of the analysis
``report.html``           the report
``analysis_error.txt``    only when the analysis failed: its traceback
``sensitivity.*``         only after ``bayesresnet sensitivity DIR``: its JSON, CSV and
                          HTML
``calibration.*``         only after ``bayesresnet calibrate DIR``: its JSON, CSV and
                          HTML
``.bayesresnet-run``      the marker (:data:`MARKER`) that says bayesresnet wrote it
========================  ============================================================

:func:`fit_run` fits a run spec and :func:`save_run` writes the first four files in a
staging folder and moves it into place, so the fit is kept as soon as it is done;
:func:`analyze_run` then analyses it and :func:`write_analysis` adds the analysis files.
If the analysis fails, :func:`record_analysis_error` leaves the traceback beside the
posterior and ``bayesresnet report DIR`` (:func:`load_run`, then the analysis) retries.
The command line (:mod:`bayesresnet.app.cli`) and studies (:mod:`bayesresnet.app.study`)
both fit and analyse runs through these functions.

Nothing is deleted that bayesresnet did not write. An existing folder is replaced only
when it is a run folder of ours (the marker, or a ``run.json`` of ours for folders
written before it) holding only the files listed above (:func:`check_replaceable`);
replacement is a swap of renames (:func:`replace_folder`), and what an interrupted swap
leaves beside the folder (``.<name>.staging-<pid>-…``, ``.<name>.trash-<pid>-…``, marked,
from a dead process) is restored or removed by :func:`recover` on the next save.
:func:`check_output_folder` and :func:`check_output_file` check an output path before any
work (not a symbolic link, not inside a file, writable).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import sys
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from bayesresnet import __version__, problems
from bayesresnet._io import write_atomic, write_json, write_predictions
from bayesresnet.data import Dataset, check_dataset_transforms, load_npz, save_npz
from bayesresnet.posterior import Posterior, load

__all__ = [
    "RUN_FILES",
    "ANALYSIS_ERROR",
    "Run",
    "UserInputError",
    "user_input",
    "fit_run",
    "analyze_run",
    "save_run",
    "load_run",
    "write_analysis",
    "record_analysis_error",
    "MARKER",
    "OWN_FILES",
    "is_run_folder",
    "check_replaceable",
    "check_output_file",
    "check_output_folder",
    "claim",
    "replace_folder",
    "recover",
]

RUN_FILES = ("spec.toml", "run.json", "posterior.npz", "data.npz")
"""The files :func:`save_run` writes (all but ``spec.toml`` are what :func:`load_run` reads)."""

ANALYSIS_ERROR = "analysis_error.txt"


class UserInputError(Exception):
    """A problem with what the user gave (spec, data, files, settings), not a bug.

    The command line prints it as one line ``error: …`` and exits with status 2, without
    a traceback (``--debug`` shows one).
    """


@contextlib.contextmanager
def user_input():
    """Errors raised while validating the user's input become :class:`UserInputError`.

    The library validates where a value enters (spec parsing, the data loaders, posterior
    loading, argument checks) and raises ``ValueError``/``TypeError`` naming the value,
    or ``OSError`` for files. Only those calls run inside this context: the same
    exception types raised later (fit, analysis) are bugs and keep their traceback.
    """
    try:
        yield
    except (ValueError, TypeError, OSError) as error:
        raise UserInputError(str(error)) from error


@contextlib.contextmanager
def _warnings_to_stderr():
    """Warnings about the user's data as ``warning: …`` lines (shown even with --quiet)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", UserWarning)
        yield
    for w in caught:
        print(f"warning: {w.message}", file=sys.stderr, flush=True)


class Run(NamedTuple):
    """A run folder read back: its provenance record, posterior and data."""

    info: dict[str, Any]
    posterior: Posterior
    dataset: Dataset


# ------------------------------------------------------------------------------ the fit


def _run_info(runspec) -> dict:
    """The run's provenance record (run.json): the resolved spec and what the report needs.

    The report is re-rendered from this record, ``posterior.npz`` and ``data.npz`` alone,
    so ``bayesresnet report DIR`` works when the original data files have moved.
    """
    data = runspec.data
    if data.problem:
        description = (
            f"built-in problem {data.problem!r}"
            + (f" {dict(data.problem_options)}" if data.problem_options else "")
            + f", {data.num_train} training / {data.num_test} held-out points "
            f"({data.design} design), noise {data.noise} × output sd, seed {data.seed}"
        )
    else:
        description = f"CSV/NPZ data {data.train}" + (
            f" with test file {data.test}" if data.test else ""
        )
    return {
        "name": runspec.name,
        "levels": list(runspec.report.levels),
        "num_probes": runspec.report.num_probes,
        "sensitivity": runspec.report.sensitivity,
        "problem": data.problem,
        "problem_options": dict(data.problem_options),
        "data_description": description,
        "version": __version__,
        "spec": runspec.to_dict(),
    }


def fit_run(runspec, out, *, spec_text: str, progress=None, progress_bar: bool = False) -> Run:
    """Fit a validated run spec and save its run folder ``out``: the fit half of ``fit``.

    Args:
        runspec: a validated :class:`~bayesresnet.app.spec.RunSpec`.
        out: the run folder (replaced atomically, see :func:`save_run`).
        spec_text: the spec as TOML, written as ``spec.toml``.
        progress: a callable taking stage messages (default: silent).
        progress_bar: report the engine's progress on stderr (a tqdm bar on a terminal,
            a line about every 10 % otherwise).

    Raises:
        UserInputError: if the data cannot be loaded or do not fit the network.
    """
    from bayesresnet.infer import fit, show_progress

    progress = progress or (lambda message: None)
    with user_input(), _warnings_to_stderr():
        dataset = runspec.load_dataset()
        spec = runspec.resnet_spec(dataset)
        check_dataset_transforms(dataset, runspec.data.transforms)
    kwargs = runspec.fit_kwargs()
    progress(
        f"data: {dataset.num_train} training / {dataset.num_test} held-out rows, "
        f"{dataset.num_inputs} inputs, {dataset.num_outputs} outputs"
    )
    progress(f"fitting by {kwargs['method']} …")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        with show_progress("auto" if progress_bar else "off"):
            post = fit(spec, dataset, **kwargs)
    for w in caught:
        progress(f"warning: {w.message}")
    progress("fit done (" + ", ".join(f"{k} {v:.1f} s" for k, v in post.timings.items()) + ")")
    info = _run_info(runspec)
    # The fit is kept before anything can fail in the analysis.
    save_run(out, spec_text=spec_text, info=info, posterior=post, dataset=dataset)
    progress(f"saved {', '.join(RUN_FILES)} in {out}")
    return Run(info, post, dataset)


# ------------------------------------------------------------------------- the analysis


def _analyze(post, dataset, info, progress):
    from bayesresnet.workflow import analyze

    truth = None
    if info["problem"]:
        truth = problems.get(info["problem"], **info["problem_options"]).evaluate
    progress("diagnostics, calibration, figures")
    return analyze(
        post,
        dataset,
        name=info["name"],
        levels=tuple(info["levels"]),
        num_probes=info["num_probes"],
        truth=truth,
        data_description=info["data_description"],
        sensitivity=info.get("sensitivity") is True,  # absent in folders from before it
    )


def analyze_run(folder, run: Run, progress=None):
    """Analyse a saved run and write its analysis files; returns ``(analysis, file names)``.

    The analysis half of ``bayesresnet fit`` (and of ``bayesresnet study``); errors
    propagate (the caller records them with :func:`record_analysis_error`).
    """
    analysis = _analyze(run.posterior, run.dataset, run.info, progress or (lambda m: None))
    return analysis, write_analysis(folder, analysis, run.posterior, run.dataset)


# ---------------------------------------------------------------------------- the files


def save_run(folder, *, spec_text: str, info: dict, posterior, dataset) -> Path:
    """Write a run's :data:`RUN_FILES` into ``folder`` as one step.

    The files are written to a staging folder ``.<name>.staging-<pid>-<token>`` beside
    ``folder``, marked as ours (:data:`MARKER`) before anything else, which then takes
    ``folder``'s place (:func:`replace_folder`): a crash leaves the old run folder or the
    new one, never a half-written one, and the next save cleans up what a crash left.

    Args:
        folder: the run folder; an existing one must be empty or a run folder of ours
            holding only run-folder files (:func:`check_replaceable`).
        spec_text: the run specification as given (TOML).
        info: the provenance record written as ``run.json``.
        posterior: the fitted posterior.
        dataset: the data it was fitted on, with its held-out split.

    Raises:
        ValueError: if ``folder`` exists and is not replaceable (nothing is changed).
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    recover(folder)
    staging = _sibling(folder, "staging")
    staging.mkdir()
    try:
        _write_marker(staging)  # first, so that a partial staging folder is ours
        write_atomic(staging / "spec.toml", spec_text.encode())
        write_json(staging / "run.json", info)
        posterior.save(staging / "posterior.npz")
        save_npz(dataset, staging / "data.npz")
        replace_folder(staging, folder)
    except BaseException:
        if staging.is_dir():
            _remove_own_folder(staging)
        raise
    return folder


def load_run(folder) -> Run:
    """Read a run folder written by :func:`save_run`.

    Raises:
        FileNotFoundError: if ``folder`` lacks ``run.json``, ``posterior.npz`` or
            ``data.npz`` (the message names it).
        ValueError: if a file is corrupt (the message names it).
    """
    folder = Path(folder)
    for name in RUN_FILES[1:]:
        if not (folder / name).is_file():
            raise FileNotFoundError(f"{folder} is not a run folder: {name} is missing.")
    info = _read_info(folder)
    return Run(info, load(folder / "posterior.npz"), load_npz(folder / "data.npz", test_fraction=0))


#: The keys of run.json the analysis reads, and their JSON types.
_INFO_KEYS = {
    "name": str,
    "levels": list,
    "num_probes": int,
    "problem": (str, type(None)),
    "problem_options": dict,
    "data_description": str,
}


def _read_info(folder: Path) -> dict:
    """``run.json``, checked for what the analysis reads; a damaged one says how to redo it.

    The report cannot be re-rendered without it, so the advice is to fit again from the
    spec (its copy as given is ``spec.toml`` in the folder).
    """
    path = folder / "run.json"
    advice = (
        f"`bayesresnet report` cannot use this folder. Fit it again: `bayesresnet fit SPEC "
        f"--out {folder} --overwrite`, with SPEC the original spec file (a copy is "
        f"{folder / 'spec.toml'}; its relative data paths are taken from the folder it is in)."
    )
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is damaged (not readable JSON: {error}). {advice}") from error
    if not isinstance(info, dict):
        raise ValueError(f"{path} is damaged (not a JSON object). {advice}")
    bad = [k for k, kind in _INFO_KEYS.items() if not isinstance(info.get(k, ...), kind)]
    if bad:
        raise ValueError(f"{path} is damaged (missing or invalid: {', '.join(bad)}). {advice}")
    return info


def write_analysis(folder, analysis, posterior, dataset) -> list[str]:
    """Write the analysis files of a run (predictions, metrics, report); returns their names.

    A previous ``analysis_error.txt`` is removed once the report is written.
    """
    from bayesresnet.report import write_report

    folder = Path(folder)
    if analysis.prediction is not None:
        write_predictions(
            folder / "predictions.csv",
            dataset.x_test,
            analysis.prediction,
            posterior.input_names,
            posterior.output_names,
        )
    write_json(folder / "metrics.json", analysis.metrics)
    write_report(folder / "report.html", analysis.metrics, analysis.figures)
    with contextlib.suppress(FileNotFoundError):
        (folder / ANALYSIS_ERROR).unlink()
    return sorted(p.name for p in folder.iterdir() if p.name != MARKER)


def record_analysis_error(folder, text: str) -> Path:
    """Leave the traceback of a failed analysis in the run folder."""
    return write_atomic(Path(folder) / ANALYSIS_ERROR, text.encode())


# ------------------------------------------------------------- output paths, replacement

MARKER = ".bayesresnet-run"
"""The file that marks a folder as a run folder written by bayesresnet (JSON)."""

_MARKER_TAG = "bayesresnet run folder"

#: Every name a run folder of ours may hold: the run files, the analysis files, what a
#: study adds (``study_run.json``, ``error.txt``) and what ``bayesresnet sensitivity`` and
#: ``bayesresnet calibrate`` add. ``--overwrite`` replaces nothing else.
OWN_FILES = frozenset(
    {*RUN_FILES, MARKER, "predictions.csv", "metrics.json", "report.html", ANALYSIS_ERROR}
    | {"study_run.json", "error.txt"}
    | {"sensitivity.json", "sensitivity.csv", "sensitivity.html"}
    | {"calibration.json", "calibration.csv", "calibration.html"}
)
# A temporary file left by an interrupted write_atomic of one of them.
_OWN_TEMPORARY = re.compile(r"\.(?P<name>[^/]+)\.[^/.]+\.tmp")
# The staging and trash folders of save_run, beside the run folder.
_SIBLING = re.compile(r"\.(?P<name>.+)\.(?P<kind>staging|trash)-(?P<pid>\d+)-[0-9a-z]+")


def _write_marker(folder: Path) -> None:
    write_json(folder / MARKER, {"kind": _MARKER_TAG, "version": __version__})


def _has_marker(folder: Path) -> bool:
    try:
        record = json.loads((folder / MARKER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(record, dict) and record.get("kind") == _MARKER_TAG


def _is_marker_temporary(name: str) -> bool:
    match = _OWN_TEMPORARY.fullmatch(name)
    return match is not None and match["name"] == MARKER


def _is_own_name(name: str) -> bool:
    match = _OWN_TEMPORARY.fullmatch(name)
    return name in OWN_FILES or (match is not None and match["name"] in OWN_FILES)


def is_run_folder(folder) -> bool:
    """Whether ``folder`` is a run folder of ours: it holds :data:`MARKER`, or (a folder
    written before the marker existed) a ``run.json`` with bayesresnet's version and spec,
    or only run-folder files with ``posterior.npz`` and ``data.npz`` (a damaged run.json)."""
    folder = Path(folder)
    if not folder.is_dir() or folder.is_symlink():
        return False
    if _has_marker(folder):
        return True
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        info = None
    if isinstance(info, dict) and {"version", "spec", "name"} <= set(info):
        return True
    names = {p.name for p in folder.iterdir()}
    return {"posterior.npz", "data.npz"} <= names and all(_is_own_name(n) for n in names)


def _listing(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def check_replaceable(folder) -> None:
    """``folder`` is absent, empty, or a run folder of ours holding only run-folder files.

    Raises:
        ValueError: naming the folder and what is there (the first few entries).
    """
    folder = Path(folder)
    if not folder.exists() and not folder.is_symlink():
        return
    if folder.is_symlink() or not folder.is_dir():
        what = "a symbolic link" if folder.is_symlink() else "a file"
        raise ValueError(f"{folder} is {what}, not a run folder; choose another --out.")
    names = sorted(p.name for p in folder.iterdir())
    if not names:
        return
    if not is_run_folder(folder):
        raise ValueError(
            f"{folder} is not a bayesresnet run folder (it holds {_listing(names)}); "
            "--overwrite replaces only run folders. Choose another --out."
        )
    foreign = [n for n in names if not _is_own_name(n)]
    if foreign:
        raise ValueError(
            f"the run folder {folder} holds files bayesresnet did not write "
            f"({_listing(foreign)}); move them out, or choose another --out."
        )


def claim(folder) -> Path:
    """Create ``folder`` as a run folder of ours, or mark one that holds only our files.

    For folders the caller owns by construction (a study's ``runs/<run id>``): a failed
    run leaves ``error.txt`` alone, and its retry must be able to replace it.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    if not _has_marker(folder) and all(_is_own_name(p.name) for p in folder.iterdir()):
        _write_marker(folder)
    return folder


def _sibling(folder: Path, kind: str) -> Path:
    """A new name ``.<name>.<kind>-<pid>-<token>`` beside ``folder`` (nothing is created)."""
    while True:
        path = folder.parent / f".{folder.name}.{kind}-{os.getpid()}-{secrets.token_hex(4)}"
        if not path.exists():
            return path


def _remove_own_folder(folder: Path) -> None:
    """Delete a folder of ours: its own files first, the marker last (so that a folder
    half-deleted by a crash is still recognised as ours), then the folder. An entry that
    is not ours (which callers exclude beforehand) is left, and so is the folder."""
    entries = [p for p in folder.iterdir() if p.name != MARKER]
    for path in entries:
        if _is_own_name(path.name) and not path.is_dir():
            path.unlink()
    if any(p.name != MARKER for p in folder.iterdir()):
        return
    with contextlib.suppress(FileNotFoundError):
        (folder / MARKER).unlink()
    folder.rmdir()


def replace_folder(staging, folder) -> None:
    """Move the complete run folder ``staging`` to ``folder`` by renames only.

    An absent or empty ``folder`` is replaced in one ``os.replace``. A run folder of ours
    (:func:`check_replaceable`) is swapped: ``folder`` → ``.<name>.trash-…``, ``staging``
    → ``folder``, then the trash is deleted. An exception between the two renames puts the
    old folder back; a crash there leaves it complete under the trash name, and
    :func:`recover` restores it on the next save or check. At every point one of the two
    runs is complete.
    """
    staging, folder = Path(staging), Path(folder)
    if not folder.is_symlink() and (not folder.exists() or not any(folder.iterdir())):
        os.replace(staging, folder)
        return
    check_replaceable(folder)
    if not _has_marker(folder):
        _write_marker(folder)  # a run folder from before the marker: its trash is ours too
    trash = _sibling(folder, "trash")
    os.replace(folder, trash)
    try:
        os.replace(staging, folder)
    except BaseException:
        os.replace(trash, folder)
        raise
    _remove_own_folder(trash)


def _in_use(pid: int) -> bool:
    """Whether process ``pid`` may still be saving: it runs and is not this process (which
    calls :func:`recover` only before its own save of the folder)."""
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def recover(folder) -> list[str]:
    """Clean up what an interrupted save of ``folder`` left beside it; returns notes.

    Only folders of ours are touched: named ``.<name>.staging-<pid>-…`` or
    ``.<name>.trash-<pid>-…``, from a process that is no longer running (or this one),
    and holding :data:`MARKER` (or nothing but the marker being written: a staging folder
    made just before a crash). A trash folder is the previous run, complete: it is moved
    back when ``folder`` is missing (a crash between the two renames of
    :func:`replace_folder`), else deleted. A staging folder is an unfinished save: deleted.
    """
    folder = Path(folder)
    notes = []
    if not folder.parent.is_dir():
        return notes
    for path in sorted(folder.parent.iterdir()):
        match = _SIBLING.fullmatch(path.name)
        if (
            match is None
            or match["name"] != folder.name
            or path.is_symlink()
            or not path.is_dir()
            or _in_use(int(match["pid"]))
        ):
            continue
        entries = list(path.iterdir())
        if all(_is_marker_temporary(p.name) for p in entries):  # crashed before the marker
            for p in entries:
                p.unlink()
            path.rmdir()
            continue
        if not _has_marker(path):
            notes.append(f"left {path}: it looks like an interrupted save's, but is not marked.")
            continue
        if match["kind"] == "trash" and not folder.exists() and not folder.is_symlink():
            os.replace(path, folder)
            notes.append(f"restored the run folder {folder} from an interrupted replacement.")
        elif all(_is_own_name(p.name) for p in path.iterdir()):
            _remove_own_folder(path)
            notes.append(f"removed {path}, left by an interrupted save (process {match['pid']}).")
        else:
            notes.append(f"left {path}: an interrupted save's folder holding other files.")
    return notes


def _check_location(path: Path) -> None:
    """``path`` is not a symbolic link, no ancestor is a file, and its folder is writable."""
    if path.is_symlink():
        raise ValueError(
            f"{path} is a symbolic link (to {os.readlink(path)}); bayesresnet writes only to "
            "real paths. Give the link's target, or another path."
        )
    ancestor = path.parent
    while not ancestor.exists() and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ValueError(f"cannot write {path}: {ancestor} is a file, not a folder.")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {path}: the folder {ancestor} is not writable.")


def check_output_file(path) -> Path:
    """An output file (``predict --output``, ``compare --out``) can be written.

    Raises:
        ValueError: if ``path`` is a folder or a symbolic link, lies inside a file, or its
            folder is not writable.
    """
    path = Path(path)
    _check_location(path)
    if path.is_dir():
        raise ValueError(f"{path} is a folder; give the path of a file to write.")
    return path


def check_output_folder(folder, *, overwrite: bool = False, existing: str = "refuse") -> list[str]:
    """An output folder can be written, before any work; returns :func:`recover`'s notes.

    Args:
        folder: the run folder (``fit --out``) or study folder (``study --out``).
        overwrite: an existing non-empty run folder may be replaced (``--overwrite``).
        existing: ``"refuse"`` (a run folder: a non-empty one needs ``overwrite`` and must
            be ours) or ``"reuse"`` (a study folder, resumed: only its type is checked).

    Raises:
        ValueError: for a symbolic link, a path inside a file, a folder that is not
            writable, a file, or a non-empty folder that may not be replaced (naming what
            is there).
    """
    folder = Path(folder)
    _check_location(folder)
    if folder.exists() and not folder.is_dir():
        raise ValueError(f"{folder} is a file, not a folder; choose another --out.")
    if folder.is_dir() and not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"cannot write {folder}: the folder is not writable.")
    notes = recover(folder) if existing == "refuse" else []
    if existing == "refuse" and folder.is_dir() and any(folder.iterdir()):
        if not overwrite:
            what = "a run folder" if is_run_folder(folder) else "not a run folder"
            raise ValueError(
                f"output folder {folder} exists and is not empty ({what}); pass --overwrite "
                "to replace a run folder, or choose another --out."
            )
        check_replaceable(folder)
    return notes
