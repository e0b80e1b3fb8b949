"""Figures of a fit: predictions, calibration, sampler diagnostics and the depth path W(t).

Every function takes arrays (or a :class:`~bayesresnet.posterior.Posterior`) and returns
a :class:`matplotlib.figure.Figure` built with matplotlib's object API: no pyplot state
is touched, nothing is shown, and the caller decides whether to save, embed
(:func:`figure_to_png`, :func:`figure_to_data_uri`) or discard the figure. Figures are
laid out for 6.4 × 4.8 in (wider and taller for the trace/rank grid). Figures with one
panel per output show at most :data:`MAX_PANELS` outputs and say so in their title when
some were left out.

The figures ArviZ has (trace, rank, energy, posterior predictive check) are ArviZ's,
drawn through :mod:`bayesresnet.diagnostics`, the one module that calls it, on axes laid
out here; the others are drawn from NumPy arrays.

References:
    Vehtari, Gelman, Simpson, Carpenter, Bürkner (2021), Rank-normalization, folding,
    and localization: an improved R̂ for assessing convergence of MCMC. Bayesian
    Analysis 16(2). (Rank plots.)
    Betancourt (2016), Diagnosing suboptimal cotangent disintegrations in Hamiltonian
    Monte Carlo. arXiv:1604.00695. (Energy plot and E-BFMI.)
    Gneiting, Balabdaoui, Raftery (2007), Probabilistic forecasts, calibration and
    sharpness. JRSS B 69(2). (PIT histograms.)
    Gabry, Simpson, Vehtari, Betancourt, Gelman (2019), Visualization in Bayesian
    workflow. JRSS A 182(2). (Posterior predictive checks.)
"""

from __future__ import annotations

import base64
import io
import operator
from collections.abc import Callable, Mapping, Sequence

import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from bayesresnet import diagnostics, sites
from bayesresnet._validate import check_array, check_bool, check_int, check_level, check_number
from bayesresnet.bases import ContinuousBasis, weights
from bayesresnet.calibration import CalibrationCurve, miscalibration_area
from bayesresnet.levels import BAND_LEVELS
from bayesresnet.posterior import Posterior

__all__ = [
    "MAX_PANELS",
    "MAX_TRACE_ROWS",
    "MAX_TEST_POINTS",
    "MAX_PAIR_DRAWS",
    "plot_predictive_1d",
    "plot_parity",
    "plot_calibration_curve",
    "plot_pit_histogram",
    "plot_trace_rank",
    "plot_energy",
    "plot_loss",
    "loss_caption",
    "plot_weight_path",
    "plot_weight_paths",
    "plot_ppc",
    "plot_inverse_marginals",
    "plot_inverse_pairs",
    "plot_surrogate_share",
    "plot_observation_check",
    "plot_relevance",
    "figure_to_png",
    "figure_to_data_uri",
]

#: Most outputs drawn, one panel each, by the per-output figures.
MAX_PANELS = 4
#: Most quantities (rows) drawn by :func:`plot_trace_rank`.
MAX_TRACE_ROWS = 6
#: Most held-out points drawn by :func:`plot_predictive_1d` (evenly spaced along the x
#: axis), beneath the bands so that they do not hide them.
MAX_TEST_POINTS = 100

_FIGSIZE = (6.4, 4.8)
_NORM_LABEL = r"$\Vert W(t)\Vert_F$ / width"


# --------------------------------------------------------------------------- helpers


def _new_figure(figsize=_FIGSIZE) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def _panels(num_outputs: int, what: str = "outputs") -> tuple[Figure, list[Axes]]:
    """A figure with one panel per output (at most ``MAX_PANELS``, on a 1×2 or 2×2 grid)."""
    shown = min(num_outputs, MAX_PANELS)
    fig = _new_figure()
    nrows, ncols = {1: (1, 1), 2: (1, 2)}.get(shown, (2, 2))
    grid = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax in grid[shown:]:
        fig.delaxes(ax)
    if num_outputs > shown:
        fig.suptitle(f"first {shown} of {num_outputs} {what} shown", fontsize="small")
    return fig, list(grid[:shown])


def _fit_text(axes) -> None:
    """Text sizes of this module on axes ArviZ drew (it scales text for its own figures)."""
    for ax in np.ravel(axes):
        ax.title.set_fontsize("medium")
        ax.xaxis.label.set_fontsize("small")
        ax.yaxis.label.set_fontsize("small")
        ax.tick_params(labelsize="small")


def _as_float(value, name: str) -> np.ndarray:
    """``value`` as a float64 array; ``TypeError`` naming ``name`` when it is not numeric."""
    return check_array(name, value, finite=False)


def _check_finite(arr: np.ndarray, name: str) -> np.ndarray:
    return check_array(name, arr)


def _as_columns(value, name: str) -> np.ndarray:
    """A ``[N, O]`` float array (a 1-D array becomes one column), at least one row."""
    arr = _as_float(value, name)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2 or arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` must have shape [N, O] (or [N]) with N ≥ 1; got {arr.shape}.")
    return arr


def _names(names, count: int, argument: str, prefix: str) -> list[str]:
    if names is None or len(names) == 0:
        return [prefix] if count == 1 else [f"{prefix}{o}" for o in range(count)]
    if isinstance(names, str):
        raise TypeError(f"`{argument}` must be a sequence of str; got the str {names!r}.")
    names = [str(n) for n in names]
    if len(names) != count:
        raise ValueError(f"`{argument}` must have {count} names (one per column); got {names}.")
    return names


def _band_alpha(index: int, count: int) -> float:
    """Fill transparency of the ``index``-th of ``count`` nested bands (widest first)."""
    return 0.15 + 0.25 * (index + 1) / count


def _quantile_band(values: np.ndarray, level: float, axis: int = 0):
    """Median and central ``level`` band of ``values`` along ``axis``."""
    lo, med, hi = np.quantile(values, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=axis)
    return med, lo, hi


def _check_posterior(post) -> Posterior:
    if not isinstance(post, Posterior):
        raise TypeError(
            f"`post` must be a bayesresnet Posterior (from `bayesresnet.fit` or "
            f"`bayesresnet.load`); got {type(post).__name__}."
        )
    return post


# --------------------------------------------------------------------------- prediction


def plot_predictive_1d(
    post,
    x_grid_column: int = 0,
    *,
    dataset=None,
    truth: Callable[[np.ndarray], np.ndarray] | None = None,
    num_points: int = 200,
    levels: Sequence[float] = BAND_LEVELS,
    other_inputs="mean",
) -> Figure:
    """Predictive mean and central bands against one input, the others held fixed.

    Draws, per output (one panel each, at most :data:`MAX_PANELS`), the predictive mean,
    the central credible bands of the noise-free output ``f`` (blue) and the wider
    predictive bands of a new noisy observation ``y`` (orange) at each level in
    ``levels``, the training points, the test points when ``dataset`` is given (at most
    :data:`MAX_TEST_POINTS`, evenly spaced along the chosen input, drawn beneath the
    bands so that they do not hide them), and the true function when ``truth`` is given.
    The grid spans the range of the chosen input over the training (and test) points.
    With several inputs the points are projections onto the chosen input, so they need
    not lie inside the bands.

    Args:
        post: a :class:`~bayesresnet.posterior.Posterior`.
        x_grid_column: index of the input varied along the x axis.
        dataset: optional :class:`~bayesresnet.Dataset` whose test points are drawn
            (and whose range widens the grid).
        truth: optional callable ``x [N, d] -> [N, O]`` (or ``[N]`` for one output)
            drawn as a dashed line.
        num_points: grid points (≥ 2).
        levels: central levels of the bands, each in (0, 1).
        other_inputs: values of the other inputs: ``"mean"`` or ``"median"`` of the
            training inputs, or a sequence of ``d`` numbers (the entry of the varied
            input is ignored).

    Returns:
        The figure.
    """
    post = _check_posterior(post)
    d, o = post.spec.in_features, post.spec.out_features
    col = check_int("x_grid_column", x_grid_column, minimum=0)
    if col >= d:
        raise ValueError(f"`x_grid_column` must be < {d} (the model has {d} inputs); got {col}.")
    num_points = check_int("num_points", num_points, minimum=2)
    levels = _band_levels(levels)
    x_train = np.asarray(post.x_train, dtype=np.float64)
    fixed = _other_inputs(other_inputs, x_train)
    x_test, y_test = _test_points(dataset, d, o)
    x_grid = _input_grid(fixed, col, num_points, x_train, x_test)
    pred = post.predict(x_grid, levels=tuple(levels), return_draws=False)
    true_values = _truth_values(truth, x_grid, o)

    input_names = _names(post.input_names, d, "input_names", "x")
    output_names = _names(post.output_names, o, "output_names", "y")
    fig, axes = _panels(o)
    t = x_grid[:, col]
    for j, ax in enumerate(axes):
        _draw_bands(ax, t, pred, levels, j)
        ax.plot(t, pred.mean[:, j], color="C0", linewidth=1.8, label="predictive mean")
        if true_values is not None:
            ax.plot(t, true_values[:, j], "k--", linewidth=1.2, label="truth")
        _draw_points(ax, col, j, x_train, post.y_train, x_test, y_test)
        ax.set_xlabel(input_names[col])
        ax.set_ylabel(output_names[j])
        ax.set_title(output_names[j] if o > 1 else f"{output_names[j]} against {input_names[col]}")
        if j == 0:
            ax.legend(fontsize="x-small", loc="best")
    if d > 1:
        note = "other inputs at " + (
            f"their training {other_inputs}" if isinstance(other_inputs, str) else "given values"
        )
        fig.supxlabel(note, fontsize="small")
    return fig


def _band_levels(levels) -> list[float]:
    """Validated band levels, distinct, widest first."""
    if isinstance(levels, int | float):
        levels = (levels,)
    levels = sorted({check_level("levels", lv) for lv in levels}, reverse=True)
    if not levels:
        raise ValueError("`levels` must hold at least one level in (0, 1); got none.")
    return levels


def _other_inputs(other_inputs, x_train: np.ndarray) -> np.ndarray:
    """The ``[d]`` values the inputs not on the x axis are held at."""
    d = x_train.shape[1]
    if isinstance(other_inputs, str):
        if other_inputs not in ("mean", "median"):
            raise ValueError(
                f"`other_inputs` must be 'mean', 'median' or {d} numbers; got {other_inputs!r}."
            )
        return getattr(np, other_inputs)(x_train, axis=0)
    fixed = _as_float(other_inputs, "other_inputs").ravel()
    if fixed.shape != (d,):
        raise ValueError(
            f"`other_inputs` must hold {d} numbers (one per input); got shape {fixed.shape}."
        )
    _check_finite(fixed, "other_inputs")
    return fixed


def _test_points(dataset, d: int, o: int):
    """``(x_test [N, d], y_test)`` of `dataset`, or ``(None, None)`` without one."""
    if dataset is None:
        return None, None
    if not (hasattr(dataset, "x_test") and hasattr(dataset, "y_test")):
        raise TypeError(f"`dataset` must be a bayesresnet Dataset; got {type(dataset).__name__}.")
    x_test = np.asarray(dataset.x_test, dtype=np.float64)
    y_test = np.asarray(dataset.y_test, dtype=np.float64)
    if x_test.ndim != 2 or x_test.shape[1] != d or y_test.shape[-1] != o:
        raise ValueError(
            f"`dataset` must have {d} inputs and {o} outputs like the posterior; got "
            f"x_test {x_test.shape} and y_test {y_test.shape}."
        )
    return x_test, y_test


def _input_grid(fixed, col: int, num_points: int, x_train, x_test) -> np.ndarray:
    """``[num_points, d]`` inputs: column `col` spans the data's range, the rest `fixed`."""
    along = x_train[:, col] if x_test is None else np.r_[x_train[:, col], x_test[:, col]]
    lo, hi = float(along.min()), float(along.max())
    if hi == lo:
        lo, hi = lo - 0.5, hi + 0.5
    x_grid = np.tile(fixed, (num_points, 1))
    x_grid[:, col] = np.linspace(lo, hi, num_points)
    return x_grid


def _truth_values(truth, x_grid: np.ndarray, o: int) -> np.ndarray | None:
    """``truth(x_grid)`` as ``[num_points, O]``, or None without a `truth`."""
    if truth is None:
        return None
    if not callable(truth):
        raise TypeError(f"`truth` must be a callable x -> y; got {type(truth).__name__}.")
    num_points = len(x_grid)
    true_values = _as_float(truth(x_grid.copy()), "truth(x)")
    if true_values.ndim == 1:
        true_values = true_values[:, None]
    if true_values.shape != (num_points, o):
        raise ValueError(
            f"`truth` must return shape [{num_points}, {o}] for x of shape "
            f"{x_grid.shape}; got {true_values.shape}."
        )
    return true_values


def _draw_bands(ax: Axes, t: np.ndarray, pred, levels, j: int) -> None:
    """The ``y`` predictive bands (orange), then the ``f`` credible bands (blue) of output j."""
    for kind, color, fade, what in (("y", "C1", 0.7, "predictive"), ("f", "C0", 1.0, "credible")):
        for i, lv in enumerate(levels):
            lo, hi = pred.interval(lv, kind=kind)
            ax.fill_between(
                t,
                lo[:, j],
                hi[:, j],
                color=color,
                alpha=_band_alpha(i, len(levels)) * fade,
                linewidth=0,
                label=f"{kind} {lv:.0%} {what}",
            )


def _thin(along: np.ndarray, max_points: int) -> np.ndarray:
    """Indices of at most `max_points` entries of `along`, evenly spaced in its sorted order
    (the smallest and largest included); all indices, in order, when there are few enough."""
    if len(along) <= max_points:
        return np.arange(len(along))
    order = np.argsort(along, kind="stable")
    return order[np.unique(np.linspace(0, len(along) - 1, max_points).round().astype(int))]


def _draw_points(ax: Axes, col: int, j: int, x_train, y_train, x_test, y_test) -> None:
    """Training points over the bands and, when there are any, test points (thinned to
    :data:`MAX_TEST_POINTS`) beneath them, of output j against input col."""
    ax.scatter(
        x_train[:, col],
        y_train[:, j],
        s=14,
        color="k",
        zorder=3,
        label="training data",
    )
    if x_test is not None and len(x_test):
        shown = _thin(x_test[:, col], MAX_TEST_POINTS)
        ax.scatter(
            x_test[shown, col],
            y_test.reshape(len(x_test), -1)[shown, j],
            s=18,
            marker="x",
            color="C3",
            zorder=0.5,  # beneath the bands (zorder 1) and the lines (2)
            label="test data"
            if len(shown) == len(x_test)
            else f"test data ({len(shown)} of {len(x_test)})",
        )


def _parity_inputs(pred, level: float, num_points: int, num_outputs: int):
    """``(mean, lower, upper)`` ``[N, O]`` from a Prediction or a ``(mean, lo, hi)`` tuple."""
    if hasattr(pred, "mean") and hasattr(pred, "interval"):
        mean = pred.mean
        lower, upper = pred.interval(level, kind="y")
    elif isinstance(pred, tuple | list) and len(pred) == 3:
        mean, lower, upper = pred
    else:
        raise TypeError(
            "`pred` must be a Prediction (from `Posterior.predict`) or a tuple "
            f"(mean, lower, upper) of [N, O] arrays; got {type(pred).__name__}."
        )
    out = []
    for name, arr in (("pred.mean", mean), ("pred lower", lower), ("pred upper", upper)):
        arr = _as_float(arr, name)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.shape != (num_points, num_outputs):
            raise ValueError(
                f"`{name}` must have the shape of `y_true` {(num_points, num_outputs)}; "
                f"got {arr.shape}."
            )
        out.append(_check_finite(arr, name))
    return out


def plot_parity(y_true, pred, *, level: float = 0.9, output_names=None) -> Figure:
    """Predicted mean against the truth, with central predictive intervals.

    One panel per output (at most :data:`MAX_PANELS`): the points ``(y_true, mean)``,
    vertical bars for the central ``level`` interval of a new observation ``y``, and the
    1:1 line. The title gives ``RMSE = sqrt(mean((mean − y)²))`` and the empirical
    coverage (share of points whose truth lies inside its interval).

    Args:
        y_true: observed values ``[N, O]`` (or ``[N]``).
        pred: a :class:`~bayesresnet.posterior.Prediction` at the same points (with
            ``level`` among its levels or its draws kept), or a tuple
            ``(mean, lower, upper)`` of ``[N, O]`` arrays.
        level: level of the interval bars, in (0, 1).
        output_names: names of the outputs (default ``pred.output_names`` or ``y0, y1…``).

    Returns:
        The figure.
    """
    y = _check_finite(_as_columns(y_true, "y_true"), "y_true")
    level = check_level("level", level)
    n, o = y.shape
    mean, lower, upper = _parity_inputs(pred, level, n, o)
    if output_names is None:
        output_names = getattr(pred, "output_names", None)
    names = _names(output_names, o, "output_names", "y")
    fig, axes = _panels(o)
    for j, ax in enumerate(axes):
        ax.scatter(y[:, j], mean[:, j], s=14, color="C0", zorder=3, label="predictive mean")
        err = np.stack(
            [np.maximum(mean[:, j] - lower[:, j], 0), np.maximum(upper[:, j] - mean[:, j], 0)]
        )
        ax.errorbar(
            y[:, j],
            mean[:, j],
            yerr=err,
            fmt="none",
            ecolor="C0",
            alpha=0.4,
            linewidth=1,
            label=f"{level:.0%} predictive interval",
        )
        span = np.r_[y[:, j], lower[:, j], upper[:, j]]
        lo, hi = float(span.min()), float(span.max())
        pad = 0.03 * (hi - lo) if hi > lo else 0.5
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", linewidth=1, label="1:1")
        rmse = float(np.sqrt(np.mean((mean[:, j] - y[:, j]) ** 2)))
        cover = float(np.mean((lower[:, j] <= y[:, j]) & (y[:, j] <= upper[:, j])))
        ax.set_title(
            f"{names[j]}: RMSE {rmse:.3g}, {level:.0%} coverage {cover:.0%}", fontsize="medium"
        )
        ax.set_xlabel(f"observed {names[j]}")
        ax.set_ylabel(f"predicted {names[j]}")
        ax.set_xlim(lo - pad, hi + pad)
        ax.set_ylim(lo - pad, hi + pad)
        if j == 0:
            ax.legend(fontsize="x-small", loc="upper left")
    return fig


# --------------------------------------------------------------------------- calibration


def plot_calibration_curve(curves: Mapping[str, tuple]) -> Figure:
    """Observed against nominal coverage of central intervals, for one or several runs.

    One panel per output (at most :data:`MAX_PANELS`), one line per run, and the
    diagonal of perfect calibration. A curve above the diagonal is under-confident
    (intervals too wide), below it over-confident. The legend gives each run's
    miscalibration area ``(1/L) Σ_l |observed_l − level_l|``
    (:func:`bayesresnet.calibration.miscalibration_area`).

    Args:
        curves: ``{name: (levels [L], observed [L, O] or [L])}``, e.g.
            :class:`~bayesresnet.calibration.CalibrationCurve` values; every run must
            have the same number of outputs.

    Returns:
        The figure.
    """
    if not isinstance(curves, Mapping):
        raise TypeError(
            f"`curves` must be a dict {{name: (levels, observed)}}; got {type(curves).__name__}."
        )
    if not curves:
        raise ValueError("`curves` is empty; pass at least one {name: (levels, observed)}.")
    checked = {}
    for name, curve in curves.items():
        if not (isinstance(curve, Sequence) and len(curve) == 2):
            raise TypeError(
                f"`curves[{name!r}]` must be a pair (levels, observed); got {type(curve).__name__}."
            )
        levels = _as_float(curve[0], f"curves[{name!r}] levels")
        observed = _as_float(curve[1], f"curves[{name!r}] observed")
        if observed.ndim == 1:
            observed = observed[:, None]
        if levels.ndim != 1 or observed.ndim != 2 or observed.shape[0] != levels.size:
            raise ValueError(
                f"`curves[{name!r}]` must be (levels [L], observed [L, O] or [L]); got "
                f"levels {levels.shape} and observed {observed.shape}."
            )
        if levels.size == 0:
            raise ValueError(f"`curves[{name!r}]` has no levels.")
        for what, arr in (("levels", levels), ("observed", observed)):
            if not np.all((arr >= 0) & (arr <= 1)):
                raise ValueError(f"`curves[{name!r}]` {what} must lie in [0, 1].")
        checked[str(name)] = (levels, observed)
    widths = {name: obs.shape[1] for name, (_, obs) in checked.items()}
    if len(set(widths.values())) > 1:
        raise ValueError(
            f"every run in `curves` must have the same number of outputs; got {widths}."
        )
    o = next(iter(widths.values()))
    fig, axes = _panels(o)
    for j, ax in enumerate(axes):
        ax.plot([0, 1], [0, 1], "k--", linewidth=1, label="ideal")
        for c, (name, (levels, observed)) in enumerate(checked.items()):
            order = np.argsort(levels)
            area = float(miscalibration_area(CalibrationCurve(levels, observed))[j])
            ax.plot(
                levels[order],
                observed[order, j],
                marker="o",
                markersize=3,
                color=f"C{c % 10}",
                label=f"{name} (area {area:.3f})",
            )
        ax.set_xlim(0, 1)
        ax.set_ylim(0, 1)
        ax.set_aspect("equal")
        ax.set_xlabel("nominal coverage")
        ax.set_ylabel("observed coverage")
        if o > 1:
            ax.set_title(f"output {j}")
        ax.legend(fontsize="x-small", loc="upper left")
    return fig


def plot_pit_histogram(pit, *, bins: int = 10, output_names=None) -> Figure:
    """Histogram of probability-integral-transform values, one panel per output.

    A calibrated predictive gives U(0, 1) PIT values: a flat histogram at density 1.
    A ∪ shape means over-confidence, a ∩ shape under-confidence, a slope bias. The
    shaded band is ±2σ of a bin's density under uniformity: a bin count is
    Binomial(N, 1/bins), so its density ``count · bins / N`` has sd
    ``bins · sqrt(p(1 − p)/N)`` with ``p = 1/bins``.

    Args:
        pit: PIT values ``[N, O]`` (or ``[N]``) in [0, 1], e.g. from
            :func:`bayesresnet.calibration.pit`.
        bins: equal-width bins on [0, 1].
        output_names: names of the outputs.

    Returns:
        The figure.
    """
    p = _check_finite(_as_columns(pit, "pit"), "pit")
    if np.any((p < 0) | (p > 1)):
        raise ValueError(f"`pit` must lie in [0, 1]; got range [{p.min():.3g}, {p.max():.3g}].")
    bins = check_int("bins", bins, minimum=1)
    n, o = p.shape
    names = _names(output_names, o, "output_names", "y")
    edges = np.linspace(0.0, 1.0, bins + 1)
    prob = 1.0 / bins
    sd = bins * np.sqrt(prob * (1 - prob) / n)
    fig, axes = _panels(o)
    for j, ax in enumerate(axes):
        counts, _ = np.histogram(p[:, j], bins=edges)
        ax.axhspan(
            max(1 - 2 * sd, 0), 1 + 2 * sd, color="0.85", zorder=0, label="±2σ under uniformity"
        )
        ax.bar(
            edges[:-1],
            counts * bins / n,
            width=np.diff(edges),
            align="edge",
            color="C0",
            alpha=0.8,
            edgecolor="white",
            label=f"PIT ({n} points)",
        )
        ax.axhline(1.0, color="k", linestyle="--", linewidth=1, label="uniform density")
        ax.set_xlim(0, 1)
        ax.set_xlabel(f"PIT of {names[j]}")
        ax.set_ylabel("density")
        if o > 1:
            ax.set_title(names[j])
        if j == 0:
            ax.legend(fontsize="x-small", loc="upper center")
    return fig


# --------------------------------------------------------------------------- sampler diagnostics


def _as_chains(value, name: str, *, min_draws: int = 1) -> np.ndarray:
    arr = _as_float(value, name)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < min_draws:
        raise ValueError(
            f"`{name}` must have shape [chains, draws] with ≥ 1 chain and ≥ {min_draws} "
            f"draws; got {arr.shape}."
        )
    return _check_finite(arr, name)


def plot_trace_rank(draws: Mapping[str, np.ndarray]) -> Figure:
    """Trace and rank plots of scalar quantities, one row each (ArviZ).

    Left: the density of every chain's draws; middle: every chain's trace
    (``az.plot_trace``). Right: for every chain, the histogram of its draws' ranks among
    all chains' draws pooled (``az.plot_rank``; Vehtari et al. 2021), the chains stacked
    vertically. If the chains mix, every chain's histogram is flat at its dashed line (the
    expected density); a chain stuck in one region shows a slope or a hump. At most
    :data:`MAX_TRACE_ROWS` quantities are drawn (the first ones); the title says when
    some were left out.

    Args:
        draws: ``{name: [chains, draws]}`` of finite values, at least 2 draws each.

    Returns:
        The figure, with three axes per row.
    """
    if not isinstance(draws, Mapping):
        raise TypeError(
            f"`draws` must be a dict {{name: [chains, draws]}}; got {type(draws).__name__}."
        )
    if not draws:
        raise ValueError("`draws` is empty; pass at least one {name: [chains, draws]} array.")
    items = [(str(k), _as_chains(v, f"draws[{k!r}]", min_draws=2)) for k, v in draws.items()]
    shown = dict(items[:MAX_TRACE_ROWS])
    chains = {x.shape[0] for x in shown.values()}
    if len(chains) > 1:
        raise ValueError(
            f"every array in `draws` must have the same number of chains; got {sorted(chains)}."
        )
    rows = len(shown)
    fig = _new_figure((7.2, max(4.8, 1.6 * rows)))
    axes = fig.subplots(rows, 3, squeeze=False, gridspec_kw={"width_ratios": (2, 3, 2)})
    if len(items) > rows:
        fig.suptitle(f"first {rows} of {len(items)} quantities shown", fontsize="small")
    diagnostics.plot_trace(shown, axes[:, :2])
    diagnostics.plot_rank(shown, axes[:, 2])
    _fit_text(axes)
    axes[-1, 1].set_xlabel("draw", fontsize="small")
    num_chains = chains.pop()
    if num_chains > 1:
        # Below the grid, so it never covers a trace; the traces are the first lines drawn.
        fig.legend(
            handles=axes[0, 1].lines[:num_chains],
            labels=[f"chain {c}" for c in range(num_chains)],
            fontsize="x-small",
            ncols=min(num_chains, 6),
            loc="outside lower center",
        )
    return fig


def plot_energy(energy) -> Figure:
    """Marginal energy against energy transitions of HMC/NUTS (ArviZ; Betancourt 2016).

    Overlaid density histograms (``az.plot_energy``) of the marginal energy ``E − Ē``
    and of the transitions ``ΔE = E_t − E_{t−1}``. When the ΔE distribution is much
    narrower than the marginal one, the momentum resampling cannot move the sampler
    across energy levels fast enough and the tails are explored poorly. The legend
    gives the energy Bayesian fraction of missing information per chain,
    ``E-BFMI = Σ_t (E_t − E_{t−1})² / Σ_t (E_t − Ē)²`` (:func:`~bayesresnet.diagnostics.e_bfmi`,
    the value the convergence verdict checks); the title names the chains below
    :data:`~bayesresnet.diagnostics.EBFMI_MIN`.

    Args:
        energy: Hamiltonian energy (nats) ``[chains, draws]``, at least 2 draws;
            ``post.sample_stats["energy"]`` of a NUTS run.

    Returns:
        The figure.
    """
    e = _as_chains(energy, "energy", min_draws=2)
    fig = _new_figure()
    ax = fig.subplots()
    diagnostics.plot_energy(e, ax)
    _fit_text(ax)
    ax.legend(fontsize="x-small", loc="upper right")
    low = [str(c) for c, v in enumerate(diagnostics.e_bfmi(e)) if v < diagnostics.EBFMI_MIN]
    title = "energy: marginal vs transition"
    if low:
        title += f" (E-BFMI < {diagnostics.EBFMI_MIN} in chain {', '.join(low)})"
    ax.set_title(title, fontsize="medium")
    ax.set_xlabel("energy (nats), centred")
    return fig


def loss_caption(history, label: str) -> str:
    """The caption of :func:`plot_loss` for ``history``: what was optimized, and what a line is.

    Args:
        history: losses ``[steps]`` (one optimization, e.g. SVI) or ``[members, steps]``.
        label: the engine's name of the loss (``METHODS[method].loss``).
    """
    lines = 1 if np.ndim(history) == 1 else np.shape(history)[0]
    what = f"Optimization loss ({label}) over optimizer steps" if label else "Loss over steps"
    if lines == 1:
        return f"{what}."
    return f"{what}, one line per ensemble member ({lines} members)."


def plot_loss(
    history, *, label: str = "loss", log_steps: bool = False, step_every: int = 1
) -> Figure:
    """Optimization loss against step: one line for SVI, one line per ensemble member.

    Non-finite values (diverged steps) are left out, and the title counts them. The y
    axis is symmetric-log when the finite losses change sign, logarithmic when they are
    positive and span more than two decades, linear otherwise.

    Args:
        history: losses ``[steps]`` or ``[members, steps]`` (``post.extra["loss_history"]``).
        label: name of the quantity (y-axis label).
        log_steps: logarithmic step axis.
        step_every: optimizer steps between recorded values (ensembles record every 10th
            step); the x axis shows ``1 + index · step_every``.

    Returns:
        The figure.
    """
    h = _as_float(history, "history")
    if h.ndim == 1:
        h = h[None]
    if h.ndim != 2 or h.shape[1] == 0:
        raise ValueError(f"`history` must have shape [steps] or [members, steps]; got {h.shape}.")
    if not isinstance(label, str):
        raise TypeError(f"`label` must be a str; got {type(label).__name__}.")
    log_steps = check_bool("log_steps", log_steps)
    step_every = check_int("step_every", step_every, minimum=1)
    finite = np.isfinite(h)
    if not finite.any():
        raise ValueError("`history` has no finite values to plot.")
    steps = 1 + np.arange(h.shape[1]) * step_every
    members = h.shape[0]
    fig = _new_figure()
    ax = fig.subplots()
    for m in range(members):
        keep = finite[m]
        if members == 1:
            name = label
        elif members <= 8:
            name = f"member {m}"
        else:
            name = f"members 0–{members - 1}" if m == 0 else None
        color = f"C{m % 10}" if members <= 10 else "C0"
        ax.plot(steps[keep], h[m, keep], color=color, linewidth=1, alpha=0.9, label=name)
    values = h[finite]
    lo, hi = float(values.min()), float(values.max())
    if lo < 0 < hi:
        ax.set_yscale("symlog", linthresh=max(float(np.percentile(np.abs(values), 10)), 1e-12))
    elif lo > 0 and hi / lo > 100:
        ax.set_yscale("log")
    if log_steps:
        ax.set_xscale("log")
    ax.set_xlabel("optimization step")
    ax.set_ylabel(label)
    dropped = int((~finite).sum())
    ax.set_title(label + (f" ({dropped} non-finite values omitted)" if dropped else ""))
    if members > 1:
        ax.legend(fontsize="x-small", loc="upper right")
    return fig


# --------------------------------------------------------------------------- weight paths


def _weight_path(post, num_t: int, entries) -> tuple[np.ndarray, np.ndarray, np.ndarray, bool]:
    """Depths, ``‖W(t)‖_F / width`` draws ``[S, T]`` and entry draws ``[S, T, E]``.

    Continuous bases are evaluated on ``num_t`` depths in [0, 1]; ``PerLayer`` gives one
    matrix per layer at ``t_l = l/L`` (returned as ``steps=True``).
    """
    spec = post.spec
    basis, width, num_layers = spec.basis, spec.width, spec.num_layers
    if sites.HIDDEN_WEIGHT not in post.samples:
        raise ValueError(
            f"`post` has no {sites.HIDDEN_WEIGHT!r} draws (sites: {sorted(post.samples)})."
        )
    coef = np.asarray(post.flat_samples()[sites.HIDDEN_WEIGHT], dtype=np.float64)  # [S, K, w, w]
    t, phi = basis.depth_grid(num_layers, num_t)  # [T], [T, K]
    steps = not isinstance(basis, ContinuousBasis)
    if coef.ndim != 4 or coef.shape[1:] != (phi.shape[1], width, width):
        raise ValueError(
            f"`post` {sites.HIDDEN_WEIGHT!r} draws must have shape [S, {phi.shape[1]}, "
            f"{width}, {width}] for {basis!r}; got {coef.shape}."
        )
    rows = np.array([i for i, _ in entries], dtype=int)
    cols = np.array([j for _, j in entries], dtype=int)
    s = coef.shape[0]
    norms = np.empty((s, len(t)))
    picked = np.empty((s, len(t), len(entries)))
    # Chunk over draws so W stays near 4·10⁶ floats whatever S, T and the width.
    chunk = max(1, 4_000_000 // (len(t) * width * width))
    for start in range(0, s, chunk):
        w = weights(phi, coef[start : start + chunk], axis=1)  # [s, T, w, w]
        norms[start : start + chunk] = np.sqrt(np.sum(w**2, axis=(2, 3))) / width
        picked[start : start + chunk] = w[:, :, rows, cols]
    return t, norms, picked, steps


def _check_entries(entries, width: int) -> list[tuple[int, int]] | None:
    if entries is None:
        return None
    if isinstance(entries, str) or not isinstance(entries, Sequence):
        raise TypeError(f"`entries` must be a list of (i, j) pairs; got {type(entries).__name__}.")
    out = []
    for pair in entries:
        try:
            i, j = (operator.index(v) for v in pair)
        except (TypeError, ValueError):
            raise TypeError(f"`entries` must hold (i, j) pairs of ints; got {pair!r}.") from None
        if not (0 <= i < width and 0 <= j < width):
            raise ValueError(
                f"`entries` indices must lie in [0, {width}) (the hidden width); got {(i, j)}."
            )
        out.append((i, j))
    return out


def _default_entries(post, count: int = 3) -> list[tuple[int, int]]:
    """The ``count`` entries of largest posterior-mean magnitude, averaged over depth."""
    width = post.spec.width
    all_pairs = [(i, j) for i in range(width) for j in range(width)]
    _, _, draws, _ = _weight_path(post, 21, all_pairs)
    score = np.abs(draws.mean(axis=0)).mean(axis=0)  # [w²]
    order = np.argsort(-score, kind="stable")[:count]
    return [all_pairs[k] for k in order]


def _draw_band(ax: Axes, t, values, level: float, color: str, label: str, steps: bool) -> None:
    med, lo, hi = _quantile_band(values, level)
    if steps:
        # Layer l acts on [t_l, t_{l+1}); repeat the last value to close the step at t = 1.
        t = np.r_[t, 1.0]
        med, lo, hi = (np.r_[v, v[-1:]] for v in (med, lo, hi))
        ax.fill_between(t, lo, hi, step="post", color=color, alpha=0.25, linewidth=0)
        ax.plot(t, med, drawstyle="steps-post", color=color, linewidth=1.6, label=label)
    else:
        ax.fill_between(t, lo, hi, color=color, alpha=0.25, linewidth=0)
        ax.plot(t, med, color=color, linewidth=1.6, label=label)


def _check_weight_args(num_t, level) -> tuple[int, float]:
    return check_int("num_t", num_t, minimum=2), check_level("level", level)


def plot_weight_path(
    post, *, num_t: int = 101, entries=None, norm: bool = True, level: float = 0.9
) -> Figure:
    """The posterior of the hidden weights ``W(t) = Σ_k Φ_k(t) C_k`` over depth ``t``.

    For every draw, ``W(t)`` is evaluated on ``num_t`` depths in [0, 1] with one
    ``tensordot``; the figure shows the median and the central ``level`` band over
    draws of the RMS entry ``‖W(t)‖_F / width`` (top, when ``norm``) and of a few single
    entries ``W_ij(t)`` (bottom). A smooth basis gives smooth paths whose band shows how
    well the data pin the depth dependence down; ``PerLayer`` (a plain ResNet) has one
    free matrix per layer, drawn as steps at ``t_l = l/L``.

    Args:
        post: a :class:`~bayesresnet.posterior.Posterior`.
        num_t: depths evaluated for continuous bases (≥ 2).
        entries: ``(i, j)`` entries to draw; default the 3 entries with the largest
            posterior-mean magnitude averaged over depth. ``[]`` draws none.
        norm: draw the RMS-entry panel.
        level: level of the bands, in (0, 1).

    Returns:
        The figure (one axis per drawn panel).
    """
    post = _check_posterior(post)
    num_t, level = _check_weight_args(num_t, level)
    norm = check_bool("norm", norm)
    entries = _check_entries(entries, post.spec.width)
    if entries is None:
        entries = _default_entries(post, min(3, post.spec.width**2))
    if not norm and not entries:
        raise ValueError("nothing to draw: `norm` is False and `entries` is empty.")
    t, norms, picked, steps = _weight_path(post, num_t, entries)
    panels = int(norm) + int(bool(entries))
    fig = _new_figure()
    axes = list(fig.subplots(panels, 1, sharex=True, squeeze=False)[:, 0])
    basis = post.spec.basis
    fig.suptitle(
        f"posterior of W(t): {basis!r}, {post.spec.num_layers} layers, width {post.spec.width}",
        fontsize="medium",
    )
    if norm:
        ax = axes[0]
        _draw_band(ax, t, norms, level, "C0", f"median, {level:.0%} band", steps)
        ax.set_ylabel(_NORM_LABEL)
        ax.legend(fontsize="x-small", loc="best")
    if entries:
        ax = axes[-1]
        for e, (i, j) in enumerate(entries):
            _draw_band(ax, t, picked[:, :, e], level, f"C{(e + 1) % 10}", f"W[{i},{j}]", steps)
        ax.set_ylabel("entry of W(t)")
        ax.plot([], [], " ", label=f"lines: median; bands: {level:.0%}")
        ax.legend(fontsize="x-small", loc="best")
    axes[-1].set_xlabel("depth t (0 = first layer, 1 = output)")
    axes[-1].set_xlim(0, 1)
    return fig


def plot_weight_paths(
    posts: Mapping[str, Posterior],
    *,
    num_t: int = 101,
    entry: tuple[int, int] | None = None,
    level: float = 0.9,
) -> Figure:
    """``‖W(t)‖_F / width`` over depth for several posteriors (e.g. bases), one colour each.

    Draws the median and central ``level`` band of the RMS entry of ``W(t)`` per
    posterior (see :func:`plot_weight_path`), and, when ``entry`` is given, of that
    single entry in a second panel.

    Args:
        posts: ``{name: Posterior}``.
        num_t: depths evaluated for continuous bases (≥ 2).
        entry: one ``(i, j)`` entry to compare as well (must exist in every posterior).
        level: level of the bands, in (0, 1).

    Returns:
        The figure.
    """
    if not isinstance(posts, Mapping):
        raise TypeError(f"`posts` must be a dict {{name: Posterior}}; got {type(posts).__name__}.")
    if not posts:
        raise ValueError("`posts` is empty; pass at least one {name: Posterior}.")
    num_t, level = _check_weight_args(num_t, level)
    for name, post in posts.items():
        if not isinstance(post, Posterior):
            raise TypeError(f"`posts[{name!r}]` must be a Posterior; got {type(post).__name__}.")
    if entry is not None:
        min_width = min(p.spec.width for p in posts.values())
        entry = _check_entries([entry], min_width)[0]
    fig = _new_figure()
    axes = list(fig.subplots(1 + (entry is not None), 1, sharex=True, squeeze=False)[:, 0])
    for c, (name, post) in enumerate(posts.items()):
        t, norms, picked, steps = _weight_path(post, num_t, [entry] if entry else [])
        color = f"C{c % 10}"
        _draw_band(axes[0], t, norms, level, color, str(name), steps)
        if entry is not None:
            _draw_band(axes[1], t, picked[:, :, 0], level, color, str(name), steps)
    axes[0].set_ylabel(_NORM_LABEL)
    axes[0].set_title(f"posterior of W(t): medians and {level:.0%} bands", fontsize="medium")
    axes[0].legend(fontsize="x-small", loc="best")
    if entry is not None:
        axes[1].set_ylabel(f"W[{entry[0]},{entry[1]}](t)")
    axes[-1].set_xlabel("depth t (0 = first layer, 1 = output)")
    axes[-1].set_xlim(0, 1)
    return fig


# --------------------------------------------------------------------------- predictive checks


def plot_ppc(y_obs, y_rep, *, num_draws: int = 50, output_names=None) -> Figure:
    """Posterior predictive check: densities of replicated data sets against the observed.

    Per output (one panel each, at most :data:`MAX_PANELS`; ``az.plot_ppc``): kernel
    density estimates of up to ``num_draws`` replicated data sets (thin lines, chosen at
    random with a fixed seed), their pointwise mean (dashed) and the observed data
    (thick). Observed data outside the cloud of replicates show a misfit the model cannot
    reproduce.

    Args:
        y_obs: observed data ``[N, O]`` (or ``[N]``).
        y_rep: replicated data sets ``[S, N, O]`` (or ``[S, N]``), e.g. ``Prediction.y``
            at the observed inputs.
        num_draws: most replicated data sets drawn (≥ 1).
        output_names: names of the outputs.

    Returns:
        The figure.
    """
    y = _check_finite(_as_columns(y_obs, "y_obs"), "y_obs")
    rep = _as_float(y_rep, "y_rep")
    if rep.ndim == 2:
        rep = rep[:, :, None]
    if rep.ndim != 3 or rep.shape[1:] != y.shape or rep.shape[0] == 0:
        raise ValueError(
            f"`y_rep` must have shape [S, N, O] = [S, {y.shape[0]}, {y.shape[1]}] matching "
            f"`y_obs` {y.shape}, S ≥ 1; got {rep.shape}."
        )
    _check_finite(rep, "y_rep")
    num_draws = check_int("num_draws", num_draws, minimum=1)
    o = y.shape[1]
    names = _names(output_names, o, "output_names", "y")
    fig, axes = _panels(o)
    shown = len(axes)
    idata = diagnostics.predictive_data(y[:, :shown], rep[:, :, :shown], names[:shown])
    diagnostics.plot_ppc(idata, axes, num_draws=num_draws)
    _fit_text(axes)
    for j, ax in enumerate(axes):
        ax.set_xlabel(names[j], fontsize="small")
        ax.set_ylabel("density", fontsize="small")
        ax.set_title(names[j] if o > 1 else "", fontsize="medium")
        if j == 0:
            ax.legend(fontsize="x-small", loc="upper right")
        elif ax.get_legend() is not None:
            ax.get_legend().remove()
    return fig


# ------------------------------------------------------------ calibration of simulator inputs
#: Most draws per quantity in :func:`plot_inverse_pairs` (evenly thinned; the contours of a
#: kernel density estimate need no more).
MAX_PAIR_DRAWS = 4000


def _check_draw_dict(draws, name: str = "draws") -> dict[str, np.ndarray]:
    if not isinstance(draws, Mapping) or not draws:
        raise TypeError(
            f"`{name}` must be a non-empty dict {{name: [chains, draws]}}; got {draws!r:.80}."
        )
    return {str(k): _as_chains(v, f"{name}[{k!r}]", min_draws=2) for k, v in draws.items()}


def plot_inverse_marginals(draws, prior_bounds, *, hdi_prob: float = 0.9) -> Figure:
    """The posterior of each calibrated input, with its uniform prior (ArviZ densities).

    One panel per input (``az.plot_posterior``: a density of the draws of all chains, the
    mean and the ``hdi_prob`` HDI), over the prior's range, the prior's density
    ``1 / (upper − lower)`` dashed: a posterior as flat as the prior learned nothing.

    Args:
        draws: ``{input: [chains, draws]}``.
        prior_bounds: ``{input: (lower, upper)}`` of each input's uniform prior.
        hdi_prob: the probability of the HDI drawn.

    Returns:
        The figure.
    """
    draws = _check_draw_dict(draws)
    hdi_prob = check_level("hdi_prob", hdi_prob)
    missing = [k for k in draws if k not in prior_bounds]
    if missing:
        raise ValueError(f"`prior_bounds` lacks the inputs {missing}; got {list(prior_bounds)}.")
    num = len(draws)
    fig = _new_figure((min(3.4 * num, 10.0), 3.2))
    axes = np.ravel(fig.subplots(1, num, squeeze=False))
    diagnostics.plot_marginals(draws, axes, hdi_prob=hdi_prob)
    for ax, name in zip(axes, draws):
        lower, upper = (float(v) for v in prior_bounds[name])
        height = 1.0 / (upper - lower)
        ax.plot(
            [lower, lower, upper, upper],
            [0.0, height, height, 0.0],
            linestyle="--",
            color="0.4",
            label="prior (uniform)",
        )
        ax.set_xlim(lower - 0.02 * (upper - lower), upper + 0.02 * (upper - lower))
        ax.set_title(name, fontsize="medium")
    axes[0].legend(fontsize="x-small", loc="upper right")
    _fit_text(axes)
    return fig


def plot_inverse_pairs(draws) -> Figure:
    """Pairwise joint posterior densities of two or more calibrated inputs (ArviZ contours).

    Args:
        draws: ``{input: [chains, draws]}``, at least two inputs; thinned evenly to at
            most :data:`MAX_PAIR_DRAWS` draws each.

    Returns:
        The figure: the lower triangle of the pairs, each input against every earlier one.
    """
    draws = _check_draw_dict(draws)
    if len(draws) < 2:
        raise ValueError(f"`draws` must hold at least two inputs to pair; got {list(draws)}.")
    flat = {k: v.reshape(1, -1) for k, v in draws.items()}
    keep = _thin(np.arange(next(iter(flat.values())).shape[1]), MAX_PAIR_DRAWS)
    flat = {k: v[:, keep] for k, v in flat.items()}
    side = len(flat) - 1
    fig = _new_figure((min(3.0 * side + 1.0, 9.0), min(3.0 * side + 0.6, 9.0)))
    axes = fig.subplots(side, side, squeeze=False)
    diagnostics.plot_pair(flat, axes[0, 0] if side == 1 else axes)
    _fit_text(axes)
    return fig


def plot_surrogate_share(share) -> Figure:
    """The share of each input's posterior variance due to the surrogate's uncertainty.

    Args:
        share: ``{input: Var_s E[θ | s] / Var θ}``, each in [0, 1] (a value a little above
            1 from Monte-Carlo error is drawn as it is).

    Returns:
        The figure: one horizontal bar per input.
    """
    if not isinstance(share, Mapping) or not share:
        raise TypeError(f"`share` must be a non-empty dict {{input: share}}; got {share!r:.80}.")
    names = [str(k) for k in share]
    values = _check_finite(_as_float(list(share.values()), "share"), "share")
    fig = _new_figure((6.4, 0.5 * len(names) + 1.4))
    ax = fig.subplots()
    ax.barh(names, values, color="C0")
    ax.set_xlim(0.0, max(1.0, float(values.max()) * 1.05))
    ax.invert_yaxis()
    ax.set_xlabel("surrogate share of the posterior variance", fontsize="small")
    for y, v in enumerate(values):
        ax.text(v, y, f" {v:.0%}", va="center", fontsize="small")
    return fig


def plot_observation_check(y_obs, y_rep, *, levels=(0.5, 0.9), output_names=None) -> Figure:
    """The posterior predictive at each observation against the observed value.

    Per output (one panel each, at most :data:`MAX_PANELS`), everything relative to each
    observation's predictive mean, so that observations of different sizes share a
    scale: its central predictive intervals (thick: the smallest level, thin: the
    largest) around 0 and the observed value minus the predictive mean (black dot). A dot
    outside its intervals is an observation the calibrated model does not reproduce.

    Args:
        y_obs: the observations ``[M, O]``.
        y_rep: posterior predictive draws at them ``[S, M, O]``.
        levels: central interval levels, each in (0, 1).
        output_names: names of the outputs.

    Returns:
        The figure.
    """
    y = _check_finite(_as_columns(y_obs, "y_obs"), "y_obs")
    rep = _as_float(y_rep, "y_rep")
    if rep.ndim != 3 or rep.shape[1:] != y.shape or rep.shape[0] == 0:
        raise ValueError(
            f"`y_rep` must have shape [S, M, O] = [S, {y.shape[0]}, {y.shape[1]}]; got {rep.shape}."
        )
    _check_finite(rep, "y_rep")
    levels = sorted(check_level(f"levels[{i}]", v) for i, v in enumerate(levels))
    names = _names(output_names, y.shape[1], "output_names", "y")
    fig, axes = _panels(y.shape[1])
    m = np.arange(y.shape[0])
    for j, ax in enumerate(axes):
        mean = rep[:, :, j].mean(axis=0)
        for i, level in enumerate(levels):
            _, low, high = _quantile_band(rep[:, :, j] - mean, level)
            width = 1.5 + 4.0 * (len(levels) - 1 - i) / max(len(levels) - 1, 1)
            ax.vlines(
                m,
                low,
                high,
                color="C0",
                linewidth=width,
                alpha=0.6,
                label=f"{level:.0%} predictive interval",
            )
        ax.axhline(0.0, color="0.6", linewidth=0.8)
        ax.plot(m, y[:, j] - mean, "o", color="k", markersize=4, label="observed")
        ax.set_xlabel("observation", fontsize="small")
        ax.set_ylabel(f"{names[j]} − predictive mean", fontsize="small")
        ax.set_xticks(m if len(m) <= 20 else m[:: max(1, len(m) // 10)])
    axes[0].legend(fontsize="x-small")
    return fig


# --------------------------------------------------------------------------- export


#: The measures of :meth:`Posterior.relevance` drawn by :func:`plot_relevance`, with labels.
_RELEVANCE = {
    "ard_scale": r"ARD scale $\lambda_j$",
    "weight_norm": r"input-weight norm $\Vert W_{\mathrm{in}}[j,:]\Vert_2$",
}


def plot_relevance(relevance, *, hdi_prob: float = 0.9) -> Figure:
    """Input relevance: one bar per input with its HDI band, a panel per measure.

    Args:
        relevance: the DataFrame of :meth:`Posterior.relevance` (index: input names;
            columns ``{measure}_mean``, ``_hdi_low``, ``_hdi_high`` for ``ard_scale``,
            when present, and ``weight_norm``).
        hdi_prob: the HDI probability the table was computed with (for the legend).
    """
    check_level("hdi_prob", hdi_prob)
    measures = [m for m in _RELEVANCE if f"{m}_mean" in relevance.columns]
    if not measures:
        raise ValueError(
            "`relevance` must have the columns of Posterior.relevance() (e.g. "
            f"'weight_norm_mean'); got {list(relevance.columns)}."
        )
    fig = _new_figure()
    axes = list(fig.subplots(len(measures), 1, sharex=True, squeeze=False)[:, 0])
    names = [str(n) for n in relevance.index]
    x = np.arange(len(names))
    for ax, measure in zip(axes, measures):
        mean = relevance[f"{measure}_mean"].to_numpy(dtype=float)
        low = relevance[f"{measure}_hdi_low"].to_numpy(dtype=float)
        high = relevance[f"{measure}_hdi_high"].to_numpy(dtype=float)
        err = np.stack([mean - low, high - mean]).clip(min=0)
        ax.bar(x, mean, yerr=err, capsize=3, color="C0", ecolor="0.2", label="posterior mean")
        ax.set_xticks(x, names, rotation=45 if len(x) > 6 else 0)
        ax.set_ylabel(_RELEVANCE[measure])
        ax.axhline(0.0, color="0.5", linewidth=0.5)
    axes[0].legend(fontsize="small", title=f"bars: {hdi_prob:.0%} HDI", title_fontsize="small")
    return fig


def figure_to_png(fig: Figure, dpi: int = 110) -> bytes:
    """The figure as PNG bytes; the figure is closed (cleared) afterwards.

    Args:
        fig: a matplotlib figure.
        dpi: resolution in dots per inch (> 0).

    Returns:
        The PNG file's bytes.
    """
    if not isinstance(fig, Figure):
        raise TypeError(f"`fig` must be a matplotlib Figure; got {type(fig).__name__}.")
    dpi = check_number("dpi", dpi, low=0.0)
    buffer = io.BytesIO()
    try:
        fig.savefig(buffer, format="png", dpi=dpi)
    finally:
        if getattr(fig.canvas, "manager", None) is not None:
            # Created through pyplot: unregister it there too (pyplot is already loaded).
            import matplotlib.pyplot as plt

            plt.close(fig)
        fig.clear()
    return buffer.getvalue()


def figure_to_data_uri(fig: Figure, dpi: int = 110) -> str:
    """The figure as a ``data:image/png;base64,…`` URI for HTML; the figure is closed.

    Args:
        fig: a matplotlib figure.
        dpi: resolution in dots per inch (> 0).

    Returns:
        The data URI.
    """
    return "data:image/png;base64," + base64.b64encode(figure_to_png(fig, dpi)).decode("ascii")
