"""A study's results table: its columns, one row per run from ``metrics.json``, CSV and Parquet.

Every results table has the columns :data:`RESULT_COLUMNS`: the run's id and name, the
:data:`DESCRIPTOR_COLUMNS` that say what was fitted, the :data:`METRIC_COLUMNS` read from
the run's own ``metrics.json`` (:func:`metrics_row`), then ``status`` and ``error``. A
study's grid keys that are not among them are added after the descriptors
(:func:`result_columns`). There is one coverage column per level of
:data:`bayesresnet.levels.HEADLINE_LEVELS` (:func:`coverage_column`).
"""

from __future__ import annotations

import csv
import io
import json
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bayesresnet._io import write_atomic
from bayesresnet.calibration import INTERVAL_SCORE_KEY
from bayesresnet.levels import HEADLINE_LEVELS, level_key

__all__ = [
    "RESULTS_CSV",
    "RESULTS_PARQUET",
    "DESCRIPTOR_COLUMNS",
    "COVERAGE_COLUMNS",
    "METRIC_COLUMNS",
    "RESULT_COLUMNS",
    "coverage_column",
    "metrics_row",
    "result_columns",
    "write_results",
    "read_results",
]

RESULTS_CSV = "results.csv"
RESULTS_PARQUET = "results.parquet"

#: Columns of the results table after the run's id and name (and before the grid's own).
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


def coverage_column(level: float) -> str:
    """The results column of the held-out coverage at ``level``: 0.9 → ``"coverage_90"``."""
    return f"coverage_{round(100 * level)}"


#: Headline level → its coverage column (``{0.5: "coverage_50", 0.9: "coverage_90", …}``).
COVERAGE_COLUMNS = {level: coverage_column(level) for level in HEADLINE_LEVELS}

METRIC_COLUMNS = (
    "num_params",
    "train_rmse",
    "test_rmse",
    "gap",
    "gap_ratio",
    "crps",
    "nll",
    *COVERAGE_COLUMNS.values(),
    INTERVAL_SCORE_KEY,
    "verdict",
    "seconds",
)
RESULT_COLUMNS = ("run_id", "name", *DESCRIPTOR_COLUMNS, *METRIC_COLUMNS, "status", "error")
"""Every results table has these columns (grid keys that are not among them are added)."""

_TEXT_COLUMNS = {"run_id", "name", "problem", "basis", "method", "verdict", "status", "error"}


def metrics_row(metrics: Mapping) -> dict[str, Any]:
    """The metric columns of one run from its ``metrics.json`` (overall over outputs).

    The generalization gap is the run's own ``calibration.test.generalization_gap``:
    ``train_rmse``, ``test_rmse``, ``gap = test_rmse − train_rmse`` and ``gap_ratio`` (its
    ``ratio``); all are None for a run without held-out or training data.
    """

    def overall(table, key):
        value = (table or {}).get(key)
        return value.get("overall") if isinstance(value, dict) else None

    test = metrics.get("calibration", {}).get("test")
    generalization = (test or {}).get("generalization_gap")
    train_rmse = overall(generalization, "train_rmse")
    test_rmse = overall(generalization, "test_rmse")
    gap = None if train_rmse is None or test_rmse is None else test_rmse - train_rmse
    coverage = (test or {}).get("coverage", {})
    return {
        "num_params": metrics["model"]["num_params"],
        "train_rmse": train_rmse,
        "test_rmse": test_rmse,
        "gap": gap,
        "gap_ratio": overall(generalization, "ratio"),
        "crps": overall(test, "crps"),
        "nll": overall(test, "nll"),
        **{
            column: overall(coverage, level_key(level))
            for level, column in COVERAGE_COLUMNS.items()
        },
        INTERVAL_SCORE_KEY: overall(test, INTERVAL_SCORE_KEY),
        "verdict": metrics["diagnostics"]["verdict"],
    }


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
    write_atomic(out / RESULTS_CSV, buffer.getvalue().encode())
    names = [RESULTS_CSV]
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        return names
    table = pa.table({c: [_parse_cell(c, _cell(r.get(c))) for r in rows] for c in columns})
    sink = io.BytesIO()
    pq.write_table(table, sink)
    write_atomic(out / RESULTS_PARQUET, sink.getvalue())
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
