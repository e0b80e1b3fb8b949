"""The report of a study: one self-contained HTML page (figures embedded as PNG).

:func:`render_study_html` turns the rows of ``results.csv``
(:func:`bayesresnet.app.results.read_results`) into a page with the generalization gap
against the number of parameters (each dot a run, coloured by basis, the MLP baseline
marked), observed against nominal coverage per method, CRPS and NLL per method and basis
over seeds, the time per method, the best configuration per problem and the failed runs
with their errors.
``bayesresnet study-report DIR`` re-renders it from ``DIR/results.csv`` alone.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from matplotlib.figure import Figure

from bayesresnet import plots
from bayesresnet._io import write_atomic
from bayesresnet.app.results import COVERAGE_COLUMNS, METRIC_COLUMNS, result_columns
from bayesresnet.levels import INTERVAL_LEVEL
from bayesresnet.report import _esc, _page, _table

__all__ = [
    "render_study_html",
    "write_study_report",
    "plot_gap_vs_params",
    "gap_caption",
    "plot_coverage_by_method",
    "plot_metric_by_basis",
    "plot_time_by_method",
    "MLP_LABEL",
]

MLP_LABEL = "MLP baseline"
_INTERVAL_COVERAGE = COVERAGE_COLUMNS[INTERVAL_LEVEL]  # "coverage_90": the tables' one level
_COLORS = [
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
]


def _percents(levels) -> str:
    """``(0.5, 0.9, 0.95)`` → ``"50%, 90% and 95%"``."""
    words = [f"{level:.0%}" for level in levels]
    return ", ".join(words[:-1]) + " and " + words[-1] if len(words) > 1 else words[0]


def _ok(rows) -> list[dict]:
    return [r for r in rows if r.get("status") == "ok"]


def _family(row) -> str:
    """The basis of a run, or :data:`MLP_LABEL` for a non-residual network."""
    return MLP_LABEL if row.get("residual") is False else str(row.get("basis"))


def _ordered(values) -> list:
    return list(dict.fromkeys(values))


def _finite(value) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and np.isfinite(value)


def _panels(keys: Sequence[str], width: float = 4.6) -> tuple[Figure, list]:
    count = max(1, len(keys))
    cols = min(count, 3)
    rows = -(-count // cols)
    fig = Figure(figsize=(width * cols, 3.8 * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel()
    for ax in axes[count:]:
        ax.set_visible(False)
    return fig, list(axes[:count])


def _jitter(n: int, seed: int = 0, spread: float = 0.08) -> np.ndarray:
    return np.random.default_rng(seed).uniform(-spread, spread, n)


def plot_gap_vs_params(rows) -> Figure:
    """Generalization gap (test − train RMSE) against the number of parameters.

    One panel per problem; each dot a run, coloured by basis; the MLP baseline (if any)
    drawn as black crosses.
    """
    ok = [r for r in _ok(rows) if _finite(r.get("gap")) and _finite(r.get("num_params"))]
    problems = _ordered(r["problem"] for r in ok) or ["(no finished runs)"]
    families = _ordered(_family(r) for r in ok)
    colors = {f: _COLORS[i % len(_COLORS)] for i, f in enumerate(families)}
    fig, axes = _panels(problems)
    for ax, problem in zip(axes, problems):
        for family in families:
            sel = [r for r in ok if r["problem"] == problem and _family(r) == family]
            if not sel:
                continue
            x = np.array([r["num_params"] for r in sel], float)
            y = np.array([r["gap"] for r in sel], float)
            x = x * np.exp(_jitter(len(x), seed=len(family)))  # separate seeds visually
            if family == MLP_LABEL:
                ax.scatter(x, y, marker="X", s=60, c="k", label=family, zorder=3)
            else:
                ax.scatter(x, y, s=22, color=colors[family], alpha=0.8, label=family)
        ax.axhline(0.0, color="0.6", lw=0.8)
        ax.set_xscale("log")
        ax.set_title(str(problem))
        ax.set_xlabel("number of parameters")
        ax.set_ylabel("test − train RMSE")
        if ok:
            ax.legend(fontsize=7)
    return fig


def gap_caption(rows) -> str:
    """The caption of :func:`plot_gap_vs_params`; it names the crosses only when drawn."""
    mlp = any(_family(r) == MLP_LABEL for r in rows)
    crosses = "; black crosses: the MLP baseline (residual = false)" if mlp else ""
    return (
        "Test minus training RMSE of each run (a dot) against its number of network "
        f"parameters; colour: depth basis{crosses}. Dots of one configuration are spread "
        "slightly sideways to show the seeds."
    )


def plot_coverage_by_method(rows) -> Figure:
    """Observed against nominal coverage of central intervals, per method (all runs)."""
    ok = _ok(rows)
    methods = _ordered(r["method"] for r in ok)
    fig = Figure(figsize=(5.2, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.plot([0, 1], [0, 1], color="0.5", lw=1, ls="--", label="perfect calibration")
    for i, method in enumerate(methods):
        color = _COLORS[i % len(_COLORS)]
        sel = [r for r in ok if r["method"] == method]
        levels, means = [], []
        for level, column in COVERAGE_COLUMNS.items():
            values = np.array([r[column] for r in sel if _finite(r.get(column))], float)
            if values.size:
                offsets = level + _jitter(values.size, seed=i, spread=0.006) + 0.012 * (i - 0.5)
                ax.scatter(offsets, values, s=8, color=color, alpha=0.35)
                levels.append(level)
                means.append(values.mean())
        if levels:
            ax.plot(levels, means, "o-", color=color, label=f"{method} (mean of {len(sel)} runs)")
    ax.set_xlim(0.4, 1.0)
    ax.set_ylim(0.0, 1.02)
    ax.set_xlabel("nominal coverage")
    ax.set_ylabel("observed coverage (held-out)")
    ax.legend(fontsize=8, loc="lower right")
    return fig


def plot_metric_by_basis(rows, metric: str, label: str | None = None) -> Figure:
    """``metric`` per basis (x) and method (colour) over seeds, one panel per problem.

    Boxes over the runs of each (basis, method) group with the runs as dots.
    """
    ok = [r for r in _ok(rows) if _finite(r.get(metric))]
    problems = _ordered(r["problem"] for r in ok) or ["(no finished runs)"]
    families = _ordered(_family(r) for r in ok)
    methods = _ordered(r["method"] for r in ok)
    fig, axes = _panels(problems, width=max(4.6, 0.55 * len(families) * max(1, len(methods))))
    step = 0.8 / max(1, len(methods))
    for ax, problem in zip(axes, problems):
        for m, method in enumerate(methods):
            color = _COLORS[m % len(_COLORS)]
            for f, family in enumerate(families):
                values = [
                    r[metric]
                    for r in ok
                    if r["problem"] == problem and r["method"] == method and _family(r) == family
                ]
                if not values:
                    continue
                pos = f - 0.4 + step * (m + 0.5)
                box = ax.boxplot(
                    [values], positions=[pos], widths=0.8 * step, patch_artist=True,
                    showfliers=False, manage_ticks=False,
                )  # fmt: skip
                for patch in box["boxes"]:
                    patch.set(facecolor=color, alpha=0.25, edgecolor=color)
                ax.scatter(pos + _jitter(len(values), seed=f, spread=step / 5), values, s=10,
                           color=color, zorder=3, label=method if f == 0 else None)  # fmt: skip
        ax.set_xticks(range(len(families)))
        ax.set_xticklabels(families, rotation=35, ha="right", fontsize=8)
        ax.set_title(str(problem))
        ax.set_ylabel(label or metric)
        if ok:
            ax.legend(fontsize=7)
    return fig


def plot_time_by_method(rows) -> Figure:
    """Wall time of a run (fit and analysis) per method, one dot per run."""
    ok = [r for r in _ok(rows) if _finite(r.get("seconds"))]
    methods = _ordered(r["method"] for r in ok)
    fig = Figure(figsize=(5.2, 3.8), layout="constrained")
    ax = fig.subplots()
    for i, method in enumerate(methods):
        values = [r["seconds"] for r in ok if r["method"] == method]
        color = _COLORS[i % len(_COLORS)]
        box = ax.boxplot([values], positions=[i], widths=0.5, patch_artist=True,
                         showfliers=False, manage_ticks=False)  # fmt: skip
        for patch in box["boxes"]:
            patch.set(facecolor=color, alpha=0.25, edgecolor=color)
        ax.scatter(i + _jitter(len(values), seed=i, spread=0.12), values, s=10, color=color)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods)
    ax.set_ylabel("seconds per run")
    if ok and min(r["seconds"] for r in ok) > 0:
        ax.set_yscale("log")
    return fig


def _best_table(rows, config_columns) -> str:
    ok = [r for r in _ok(rows) if _finite(r.get("crps"))]
    header = [
        "problem",
        *config_columns,
        "CRPS",
        "NLL",
        "test RMSE",
        "gap",
        f"coverage {INTERVAL_LEVEL:.0%}",
        "run",
    ]
    body = []
    for problem in _ordered(r["problem"] for r in ok):
        best = min((r for r in ok if r["problem"] == problem), key=lambda r: r["crps"])
        body.append(
            [
                problem,
                *[best.get(c) for c in config_columns],
                best["crps"],
                best.get("nll"),
                best.get("test_rmse"),
                best.get("gap"),
                best.get(_INTERVAL_COVERAGE),
                best["run_id"],
            ]
        )
    return _table(header, body) if body else "<p class='note'>No finished runs.</p>"


def render_study_html(rows: list[dict], title: str = "study") -> str:
    """The study's report page.

    Args:
        rows: the results rows (``results.csv`` read back, or :func:`bayesresnet.app.study.run`).
        title: the study's name.
    """
    from bayesresnet.report import _figures

    ok = _ok(rows)
    failed = [r for r in rows if r.get("status") != "ok"]
    # The configuration columns shown: basis and method, and whatever else varies.
    fixed = ("run_id", "name", "problem", "status", "error", *METRIC_COLUMNS)
    config = [
        c
        for c in result_columns(rows)
        if c not in fixed
        and (c in ("basis", "method") or len({json.dumps(r.get(c), default=str) for r in rows}) > 1)
    ]
    figures = {}
    if ok:
        figures = {
            "Generalization gap against the number of parameters": (
                plots.figure_to_data_uri(plot_gap_vs_params(rows)),
                gap_caption(ok),
            ),
            "Observed against nominal coverage per method": (
                plots.figure_to_data_uri(plot_coverage_by_method(rows)),
                f"Held-out coverage of the central {_percents(COVERAGE_COLUMNS)} predictive "
                "intervals: "
                "each run a light dot, the line the mean over runs. Below the diagonal the "
                "intervals are too narrow.",
            ),
            "CRPS per basis and method": (
                plots.figure_to_data_uri(plot_metric_by_basis(rows, "crps", "held-out CRPS")),
                "Held-out CRPS (lower is better) of each run; boxes over seeds.",
            ),
            "NLL per basis and method": (
                plots.figure_to_data_uri(plot_metric_by_basis(rows, "nll", "held-out NLL")),
                "Held-out negative log predictive density per point (lower is better).",
            ),
            "Time per method": (
                plots.figure_to_data_uri(plot_time_by_method(rows)),
                "Wall time of each run, fit and analysis, on one worker.",
            ),
        }
    parts = [
        f"<h1>Study {_esc(title)}</h1>",
        f"<p>{len(rows)} runs: {len(ok)} finished, {len(failed)} failed or invalid.</p>",
        "<h2>Best configuration per problem (lowest held-out CRPS)</h2>",
        _best_table(rows, config),
    ]
    if failed:
        parts += [
            "<h2>Failed runs</h2>",
            _table(
                ["run", "name", "status", *config, "error"],
                [
                    [r.get("run_id"), r.get("name"), r.get("status")]
                    + [r.get(c) for c in config]
                    + [r.get("error")]
                    for r in failed
                ],
            ),
        ]
    parts += ["<h2>Figures</h2>", _figures(figures) or "<p class='note'>No finished runs.</p>"]
    metrics = ["num_params", "test_rmse", "gap", "crps", "nll", _INTERVAL_COVERAGE, "verdict"]
    parts += [
        "<h2>All runs</h2>",
        _table(
            ["run", "problem", *config, *metrics, "seconds", "status"],
            [
                [r.get("run_id"), r.get("problem")]
                + [r.get(c) for c in config]
                + [r.get(c) for c in metrics]
                + [r.get("seconds"), r.get("status")]
                for r in rows
            ],
        ),
    ]
    return _page(f"{title} — bayesresnet study", "\n".join(parts))


def write_study_report(out, rows: list[dict], title: str = "study") -> Path:
    """Render the study's page and write ``out/report.html`` atomically."""
    path = Path(out) / "report.html"
    write_atomic(path, render_study_html(rows, title).encode())
    return path
