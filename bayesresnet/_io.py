"""Files: atomic writes, JSON, prediction tables and the run folder.

Every file the library writes goes through :func:`write_atomic` (a temporary file in the
destination folder, flushed, then ``os.replace``), so an interrupted write leaves the old
file or none, never a truncated one.

A run folder (``bayesresnet fit``) holds:

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

:func:`save_run` writes the first four in a staging folder and moves it into place, so the
fit is kept as soon as it is done; :func:`write_analysis` then adds the analysis files.
If the analysis fails, :func:`record_analysis_error` leaves the traceback beside the
posterior and ``bayesresnet report DIR`` (:func:`load_run`, then the analysis) retries.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, NamedTuple

__all__ = [
    "RUN_FILES",
    "ANALYSIS_ERROR",
    "Run",
    "write_atomic",
    "write_json",
    "prediction_table",
    "write_predictions",
    "save_run",
    "load_run",
    "write_analysis",
    "record_analysis_error",
]

RUN_FILES = ("spec.toml", "run.json", "posterior.npz", "data.npz")
"""The files :func:`save_run` writes (all but ``spec.toml`` are what :func:`load_run` reads)."""

ANALYSIS_ERROR = "analysis_error.txt"


def write_atomic(path, data: bytes) -> Path:
    """Write ``data`` to ``path`` through a temporary file and ``os.replace``.

    A crash leaves either the old file or none, never a partial one. Missing parent
    folders are created.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        # mkstemp creates the file 0600; give it the permissions of a normal new file.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    return path


def write_json(path, obj) -> Path:
    """Write JSON atomically (non-finite numbers become null)."""
    text = json.dumps(_finite(obj), indent=2, allow_nan=False)
    return write_atomic(path, text.encode())


def _finite(obj):
    if isinstance(obj, float):
        return obj if obj == obj and abs(obj) != float("inf") else None
    if isinstance(obj, dict):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_finite(v) for v in obj]
    return obj


def prediction_table(x, pred, input_names, output_names, levels=(0.9,)) -> bytes:
    """Predictions as CSV bytes: the inputs, then per output mean, sd, f_sd and intervals.

    Columns: the input names, then for each output ``{name}_mean``, ``{name}_sd`` (of a
    new observation), ``{name}_f_sd`` (of the noise-free function) and for each level
    ``{name}_lower{pct}``, ``{name}_upper{pct}`` (e.g. ``y_lower90``).

    Args:
        x: inputs ``[N, D]``.
        pred: a :class:`~bayesresnet.posterior.Prediction` at ``x``.
        input_names, output_names: column names.
        levels: central-interval levels.
    """
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = list(input_names)
    for name in output_names:
        header += [f"{name}_mean", f"{name}_sd", f"{name}_f_sd"]
        for level in levels:
            pct = f"{100 * level:g}"
            header += [f"{name}_lower{pct}", f"{name}_upper{pct}"]
    writer.writerow(header)
    bounds = [pred.interval(level) for level in levels]
    for i in range(len(x)):
        row = [f"{v:.10g}" for v in x[i]]
        for o in range(len(output_names)):
            row += [f"{pred.mean[i, o]:.10g}", f"{pred.std[i, o]:.10g}", f"{pred.f_std[i, o]:.10g}"]
            for lo, hi in bounds:
                row += [f"{lo[i, o]:.10g}", f"{hi[i, o]:.10g}"]
        writer.writerow(row)
    return buffer.getvalue().encode()


def write_predictions(path, x, pred, input_names, output_names, levels=(0.9,)) -> Path:
    """Write :func:`prediction_table` atomically to ``path``."""
    return write_atomic(path, prediction_table(x, pred, input_names, output_names, levels))


class Run(NamedTuple):
    """A run folder read back: its provenance record, posterior and data."""

    info: dict[str, Any]
    posterior: Any  # Posterior
    dataset: Any  # Dataset


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
    from bayesresnet.data import save_npz

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
    from bayesresnet.data import load_npz
    from bayesresnet.posterior import load

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
