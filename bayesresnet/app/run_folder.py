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
========================  ============================================================

:func:`fit_run` fits a run spec and :func:`save_run` writes the first four files in a
staging folder and moves it into place, so the fit is kept as soon as it is done;
:func:`analyze_run` then analyses it and :func:`write_analysis` adds the analysis files.
If the analysis fails, :func:`record_analysis_error` leaves the traceback beside the
posterior and ``bayesresnet report DIR`` (:func:`load_run`, then the analysis) retries.
The command line (:mod:`bayesresnet.app.cli`) and studies (:mod:`bayesresnet.app.study`)
both fit and analyse runs through these functions.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, NamedTuple

from bayesresnet import __version__, problems
from bayesresnet._io import write_atomic, write_json, write_predictions
from bayesresnet.data import Dataset, load_npz, save_npz
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

    The files are written to a staging folder beside ``folder``, which then replaces
    ``folder`` (an existing one is removed first), so a crash leaves the old folder or
    none, never a half-written one.

    Args:
        folder: the run folder.
        spec_text: the run specification as given (TOML).
        info: the provenance record written as ``run.json``.
        posterior: the fitted posterior.
        dataset: the data it was fitted on, with its held-out split.
    """
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run folder is not
    try:
        write_atomic(staging / "spec.toml", spec_text.encode())
        write_json(staging / "run.json", info)
        posterior.save(staging / "posterior.npz")
        save_npz(dataset, staging / "data.npz")
        if folder.exists():
            shutil.rmtree(folder)
        staging.rename(folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
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
    try:
        info = json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{folder / 'run.json'} is not readable JSON: {error}.") from error
    return Run(info, load(folder / "posterior.npz"), load_npz(folder / "data.npz", test_fraction=0))


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
    return sorted(p.name for p in folder.iterdir())


def record_analysis_error(folder, text: str) -> Path:
    """Leave the traceback of a failed analysis in the run folder."""
    return write_atomic(Path(folder) / ANALYSIS_ERROR, text.encode())
