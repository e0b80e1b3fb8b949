"""Files: atomic writes, JSON and prediction tables.

Every file the library writes goes through :func:`write_atomic` (a temporary file in the
destination folder, flushed, then ``os.replace``), so an interrupted write leaves the old
file or none, never a truncated one. This module imports nothing from the package: the
run folder that ``bayesresnet fit`` writes is :mod:`bayesresnet.app.run_folder`.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
import tempfile
from pathlib import Path

__all__ = ["write_atomic", "write_json", "prediction_table", "write_predictions"]


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
    ``{name}_lower{pct}``, ``{name}_upper{pct}`` (e.g. ``y_lower90``), then, when the
    prediction has it, ``extrapolation``: how far the point lies outside the training
    range, in training ranges (0 inside; see ``Posterior.extrapolation``).

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
    extrapolation = getattr(pred, "extrapolation", None)
    if extrapolation is not None:
        header.append("extrapolation")
    writer.writerow(header)
    bounds = [pred.interval(level) for level in levels]
    for i in range(len(x)):
        row = [f"{v:.10g}" for v in x[i]]
        for o in range(len(output_names)):
            row += [f"{pred.mean[i, o]:.10g}", f"{pred.std[i, o]:.10g}", f"{pred.f_std[i, o]:.10g}"]
            for lo, hi in bounds:
                row += [f"{lo[i, o]:.10g}", f"{hi[i, o]:.10g}"]
        if extrapolation is not None:
            row.append(f"{extrapolation[i]:.6g}")
        writer.writerow(row)
    return buffer.getvalue().encode()


def write_predictions(path, x, pred, input_names, output_names, levels=(0.9,)) -> Path:
    """Write :func:`prediction_table` atomically to ``path``."""
    return write_atomic(path, prediction_table(x, pred, input_names, output_names, levels))
