"""Calibration metrics and recalibration, computed from predictive draws.

Everything here works on *samples* of the predictive distribution, never on a Gaussian
summary of it, so a multimodal or heavy-tailed posterior predictive is scored as it is.
The one exception, :func:`nll_gaussian`, is labelled as a fallback.

Conventions
-----------
* ``draws`` has shape ``[S, N, O]``: ``S`` predictive draws of the *noisy* observation
  ``y`` at ``N`` held-out points for ``O`` outputs. A 2-D ``[S, N]`` array is read as
  ``O = 1``. Every ``[N, O]`` result keeps the output axis, also for 2-D input.
* ``y`` has shape ``[N, O]``, or ``[N]`` for ``O = 1``.
* ``levels`` are central-interval probabilities in the open interval (0, 1). The
  central interval at level ``p`` runs between the empirical quantiles at ``(1 − p)/2``
  and ``(1 + p)/2`` (NumPy's default "linear" rule, Hyndman & Fan type 7); a point is
  inside when ``lower ≤ y ≤ upper``.
* Per-point work is done in chunks of about ``chunk_size`` (point, output) pairs, so the
  temporary memory is about ``S × chunk_size`` floats however large ``N`` is.

Sampling error of the metrics
-----------------------------
With ``S`` draws the empirical interval's coverage of an exchangeable ``y`` deviates
from the nominal level by less than ``2/(S + 1)`` per end (order-statistic
discretisation), and the observed coverage over ``N`` independent points has binomial
standard error ``sqrt(p(1 − p)/N)``. Read coverage curves with both in mind.

References:
    Gneiting, Raftery (2007), Strictly proper scoring rules, prediction, and estimation.
    JASA 102(477), 359–378. (CRPS, interval score.)
    Ferro (2014), Fair scores for ensemble forecasts. QJRMS 140, 1917–1923.
    Zamo, Naveau (2018), Estimation of the continuous ranked probability score with
    limited information and applications to ensemble weather forecasts. Math. Geosci.
    50, 209–234. (The fair CRPS estimator and its sorted form.)
    Czado, Gneiting, Held (2009), Predictive model assessment for count data.
    Biometrics 65, 1254–1261. (Randomized PIT.)
    Kuleshov, Fenner, Ermon (2018), Accurate uncertainties for deep learning using
    calibrated regression. ICML. (Isotonic recalibration.)
    Levi, Gispan, Giladi, Fetaya (2019), Evaluating and calibrating uncertainty
    prediction in regression tasks. arXiv:1905.11659. (Variance scaling.)
    Chung, Char, Guo, Schneider, Neiswanger (2021), Uncertainty Toolbox.
    arXiv:2109.10254.
    Clark, Gangopadhyay, Hay, Rajagopalan, Wilby (2004), The Schaake shuffle. J.
    Hydrometeorology 5, 243–262. (Rank-preserving reordering of recalibrated draws.)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np
from scipy import optimize, special, stats

from bayesresnet._validate import check_array, check_int, check_level, check_number
from bayesresnet.levels import (  # re-exported: the levels' names were defined here first
    BAND_LEVELS,
    DEFAULT_LEVELS,
    HEADLINE_LEVELS,
    INTERVAL_LEVEL,
    PREDICTION_LEVELS,
    level_key,
)
from bayesresnet.model import PriorSpec, observation_dist

__all__ = [
    "log_density",
    "DEFAULT_CHUNK_SIZE",
    "BAND_LEVELS",
    "DEFAULT_LEVELS",
    "HEADLINE_LEVELS",
    "INTERVAL_LEVEL",
    "INTERVAL_SCORE_KEY",
    "INTERVAL_WIDTH_KEY",
    "PREDICTION_LEVELS",
    "level_key",
    "RECALIBRATION_METHODS",
    "CalibrationCurve",
    "GeneralizationGap",
    "PITUniformityResult",
    "Recalibration",
    "calibration_curve",
    "central_interval",
    "coverage",
    "crps",
    "fit_recalibration",
    "generalization_gap",
    "interval_score",
    "interval_width",
    "mae",
    "miscalibration_area",
    "nll",
    "nll_gaussian",
    "pit",
    "pit_uniformity",
    "r2",
    "recalibrate",
    "recalibration_report",
    "rmse",
    "sharpness",
    "summarize",
]

INTERVAL_SCORE_KEY = f"interval_score_{round(100 * INTERVAL_LEVEL)}"
"""``"interval_score_90"``: :func:`summarize`'s key of the interval score."""
INTERVAL_WIDTH_KEY = f"interval_width_{round(100 * INTERVAL_LEVEL)}"
"""``"interval_width_90"``: :func:`summarize`'s key of the mean interval width."""

DEFAULT_CHUNK_SIZE = 4096
"""(point, output) pairs processed at once: temporary memory is about S × this many floats."""

RECALIBRATION_METHODS = ("isotonic", "variance")
"""The methods :func:`fit_recalibration` accepts."""


# --------------------------------------------------------------------------- validation


def _as_real(value, name: str) -> np.ndarray:
    """A finite real array (floating dtypes kept, others cast to float64)."""
    return check_array(name, value, dtype=None)


def _as_draws(value, name: str = "draws", *, min_draws: int = 2) -> np.ndarray:
    """Validates predictive draws and returns them as [S, N, O]."""
    arr = _as_real(value, name)
    if arr.ndim == 2:
        arr = arr[:, :, None]
    elif arr.ndim != 3:
        raise ValueError(f"`{name}` must be 2-D [S, N] or 3-D [S, N, O]; got shape {arr.shape}.")
    num_draws, num_points, num_outputs = arr.shape
    if num_draws < min_draws:
        raise ValueError(
            f"`{name}` needs at least {min_draws} draws along axis 0; got {num_draws}."
        )
    if num_points == 0 or num_outputs == 0:
        raise ValueError(f"`{name}` has no points or no outputs; got shape {arr.shape}.")
    return arr


def _as_points(value, name: str) -> np.ndarray:
    """Validates a per-point array ([N] or [N, O]) and returns it as [N, O] float64."""
    arr = _as_real(value, name).astype(np.float64, copy=False)
    if arr.ndim == 1:
        arr = arr[:, None]
    elif arr.ndim != 2:
        raise ValueError(f"`{name}` must be 1-D [N] or 2-D [N, O]; got shape {arr.shape}.")
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ValueError(f"`{name}` has no points or no outputs; got shape {arr.shape}.")
    return arr


def _as_targets(
    value,
    num_points: int,
    num_outputs: int,
    *,
    name: str = "y",
    ref: str = "draws",
    point_axis: int = 1,
) -> np.ndarray:
    """Validates `y` against the point and output counts of `ref`; returns [N, O]."""
    arr = _as_points(value, name)
    if arr.shape[0] != num_points:
        raise ValueError(
            f"`{name}` has {arr.shape[0]} rows but `{ref}` has {num_points} points "
            f"(axis {point_axis})."
        )
    if arr.shape[1] != num_outputs:
        raise ValueError(
            f"`{name}` has {arr.shape[1]} outputs (columns) but `{ref}` has {num_outputs} "
            f"(axis {point_axis + 1})."
        )
    return arr


def _as_levels(value, name: str = "levels") -> np.ndarray:
    arr = np.atleast_1d(_as_real(value, name)).astype(np.float64)
    if arr.ndim != 1 or arr.size == 0:
        raise ValueError(
            f"`{name}` must be a non-empty 1-D sequence of levels; got shape {np.shape(value)}."
        )
    for i, level in enumerate(arr.tolist()):
        check_level(f"{name}[{i}]", level)
    return arr


# --------------------------------------------------------------------------- chunking


def _map_points(
    x: np.ndarray,
    fn: Callable[[np.ndarray, slice], np.ndarray],
    chunk_size: int,
) -> np.ndarray:
    """Applies `fn(x[:, chunk, :] as float64, chunk)` over point chunks; joins on axis -2.

    `fn` returns an array whose last two axes are [chunk, O]; the results are
    concatenated along the point axis. Each chunk holds about `chunk_size` (point,
    output) pairs, so the temporaries stay about S × chunk_size floats.
    """
    _, num_points, num_outputs = x.shape
    step = max(1, chunk_size // num_outputs)
    parts = [
        fn(x[:, start : start + step, :].astype(np.float64, copy=False), slice(start, start + step))
        for start in range(0, num_points, step)
    ]
    return np.concatenate(parts, axis=-2)


def _draw_mean(x: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    return _map_points(x, lambda c, _: c.mean(axis=0), chunk_size)


def _draw_sd(x: np.ndarray, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    return _map_points(x, lambda c, _: c.std(axis=0, ddof=1), chunk_size)


def _quantiles(x: np.ndarray, q: np.ndarray, chunk_size: int) -> np.ndarray:
    """Empirical quantiles ("linear" rule) over draws: [len(q), N, O]."""
    return _map_points(x, lambda c, _: np.quantile(c, q, axis=0), chunk_size)


# --------------------------------------------------------------------------- point metrics


def _mean_and_targets(mean, y) -> tuple[np.ndarray, np.ndarray]:
    m = _as_points(mean, "mean")
    t = _as_targets(y, m.shape[0], m.shape[1], ref="mean", point_axis=0)
    return m, t


def rmse(mean, y) -> np.ndarray:
    """Root-mean-square error per output: ``sqrt(mean_n (m_n − y_n)²)``.

    Args:
        mean: Point predictions, [N, O] or [N] (typically the predictive mean).
        y: Observed values, same shape.

    Returns:
        Array [O].
    """
    m, t = _mean_and_targets(mean, y)
    return np.sqrt(np.mean((m - t) ** 2, axis=0))


def mae(mean, y) -> np.ndarray:
    """Mean absolute error per output: ``mean_n |m_n − y_n|``.

    Args:
        mean: Point predictions, [N, O] or [N].
        y: Observed values, same shape.

    Returns:
        Array [O].
    """
    m, t = _mean_and_targets(mean, y)
    return np.mean(np.abs(m - t), axis=0)


def r2(mean, y) -> np.ndarray:
    """Coefficient of determination per output: ``1 − Σ_n (y_n − m_n)² / Σ_n (y_n − ȳ)²``.

    Negative when the predictions are worse than the constant ``ȳ``. An output whose
    observed values are all equal has no variance to explain; its R² is NaN.

    Args:
        mean: Point predictions, [N, O] or [N].
        y: Observed values, same shape.

    Returns:
        Array [O].
    """
    m, t = _mean_and_targets(mean, y)
    ss_res = np.sum((t - m) ** 2, axis=0)
    ss_tot = np.sum((t - t.mean(axis=0)) ** 2, axis=0)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(ss_tot > 0, 1.0 - ss_res / ss_tot, np.nan)


# --------------------------------------------------------------------------- proper scores


def crps(draws, y, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Fair (unbiased) sample CRPS of predictive draws, per point and output.

    For draws ``X_1 … X_S`` and observation ``y``::

        CRPS_fair = (1/S) Σ_s |X_s − y| − 1/(2 S (S − 1)) Σ_{s,s'} |X_s − X_s'|.

    Its expectation over the draws is exactly the CRPS of the distribution they come
    from, ``E|X − y| − ½ E|X − X'|``, for every ``S ≥ 2`` (the plain "ensemble" form
    with ``1/(2S²)`` is biased upwards by ``E|X − X'|/(2S)``). The double sum is
    computed in O(S log S) from the sorted draws ``X_(1) ≤ … ≤ X_(S)``::

        Σ_{s,s'} |X_s − X_s'| = 2 Σ_{i=1}^{S} (2i − S − 1) X_(i).

    Lower is better; the value is in the units of ``y``. Being unbiased, a single
    point's estimate can be slightly negative when ``S`` is small.

    Args:
        draws: Predictive draws of noisy ``y``, [S, N, O] or [S, N]; S ≥ 2.
        y: Observations, [N, O] or [N].
        chunk_size: (point, output) pairs sorted at once.

    Returns:
        Array [N, O].
    """
    x = _as_draws(draws)
    num_draws, num_points, num_outputs = x.shape
    t = _as_targets(y, num_points, num_outputs)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    weights = 2.0 * np.arange(1, num_draws + 1) - num_draws - 1.0  # (2i − S − 1), i = 1..S

    def chunk_crps(c: np.ndarray, sl: slice) -> np.ndarray:
        accuracy = np.mean(np.abs(c - t[sl]), axis=0)
        # Σ_i (2i − S − 1) X_(i) / (S(S − 1)) = 1/(2S(S − 1)) Σ_{s,s'} |X_s − X_s'|
        spread = np.tensordot(weights, np.sort(c, axis=0), axes=1) / (num_draws * (num_draws - 1))
        return accuracy - spread

    return _map_points(x, chunk_crps, chunk_size)


def _as_scale_draws(value, num_draws: int, num_points: int, num_outputs: int) -> np.ndarray:
    """Broadcasts noise sds to [S, N, O]: accepts (), [S], [S, O], [S, N] (O = 1), [S, N, O]."""
    arr = _as_real(value, "scale_draws").astype(np.float64, copy=False)
    full = (num_draws, num_points, num_outputs)
    shaped = None
    if arr.ndim == 0:
        shaped = arr.reshape(1, 1, 1)
    elif arr.ndim == 1 and arr.shape[0] == num_draws:
        shaped = arr[:, None, None]
    elif arr.ndim == 2 and arr.shape == (num_draws, num_outputs):
        shaped = arr[:, None, :]
    elif arr.ndim == 2 and num_outputs == 1 and arr.shape == (num_draws, num_points):
        shaped = arr[:, :, None]
    elif arr.ndim == 3 and all(a in (1, b) for a, b in zip(arr.shape, full)):
        shaped = arr
    if shaped is None:
        raise ValueError(
            "`scale_draws` must have shape [S], [S, O] or [S, N, O] (size-1 axes broadcast) "
            f"with S={num_draws}, N={num_points}, O={num_outputs} from `loc_draws`; "
            f"got shape {arr.shape}."
        )
    if (arr <= 0).any():
        raise ValueError(
            f"`scale_draws` must be > 0 (noise standard deviations); got "
            f"{int(np.count_nonzero(arr <= 0))} values ≤ 0."
        )
    return np.broadcast_to(shaped, full)


def log_density(y, loc, scale, df: float | None = None) -> np.ndarray:
    """log N(y; loc, scale²), or log Student-t(y; df, loc, scale) when `df` is given.

    The model's own likelihood (:func:`bayesresnet.model.observation_dist`), evaluated
    in float64 whatever JAX's default precision.
    """
    prior = PriorSpec() if df is None else PriorSpec(likelihood="student_t", student_t_df=df)
    with jax.enable_x64(True):
        return np.asarray(observation_dist(prior, loc, scale).log_prob(y))


def nll(
    y,
    *,
    loc_draws,
    scale_draws,
    df: float | None = None,
    log_outputs=None,
    chunk_size: int = DEFAULT_CHUNK_SIZE,
) -> np.ndarray:
    """Exact negative log predictive density of the mixture over posterior draws.

    The posterior predictive with S draws of the noise-free function ``f_s`` and the
    noise scale ``σ_s`` is the mixture ``p(y) = (1/S) Σ_s p(y | f_s, σ_s)``, so::

        NLL(y) = −log Σ_s exp(log p(y | f_s, σ_s)) + log S,

    evaluated with logsumexp (stable for ``y`` far in the tails). Components are Normal,
    or Student-t with ``df`` degrees of freedom when given. Lower is better; the units
    are nats, shifted by ``log`` of the scale of ``y``.

    Args:
        y: Observations, [N, O] or [N].
        loc_draws: Noise-free function draws, [S, N, O] or [S, N]; S ≥ 1.
        scale_draws: Noise standard deviations, > 0: [S, O] (one per draw and output),
            [S] (shared by the outputs), [S, N] when O = 1, a scalar, or [S, N, O]
            (size-1 axes broadcast).
        df: Student-t degrees of freedom of the likelihood, or None for Normal.
        log_outputs: Optional [O] bools: the outputs whose likelihood is on ``log y``
            (a log-transformed output, see :class:`bayesresnet.model.Scaler`). There
            ``loc_draws`` are raw (``exp`` of the log-space location, > 0), ``scale_draws``
            are sds of ``log y``, and the density is that of the raw ``y``:
            ``log p(y) = log p(log y | log f_s, σ_s) − log y``; ``y`` must be > 0 there.
        chunk_size: (point, output) pairs evaluated at once.

    Returns:
        Array [N, O].
    """
    loc = _as_draws(loc_draws, "loc_draws", min_draws=1)
    num_draws, num_points, num_outputs = loc.shape
    t = _as_targets(y, num_points, num_outputs, ref="loc_draws")
    scale = _as_scale_draws(scale_draws, num_draws, num_points, num_outputs)
    df = None if df is None else check_number("df", df, low=0.0)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    mask = _log_mask(log_outputs, num_outputs, t, loc)
    jacobian = 0.0
    if mask is not None:
        t = np.where(mask, np.log(np.where(mask, t, 1.0)), t)
        loc = np.where(mask, np.log(np.where(mask, loc, 1.0)), loc)
        jacobian = np.where(mask, -t, 0.0)  # −log y on the log outputs, [N, O]

    def chunk_nll(c: np.ndarray, sl: slice) -> np.ndarray:
        log_p = log_density(t[sl], c, scale[:, sl, :], df)
        return math.log(num_draws) - special.logsumexp(log_p, axis=0) - _rows(jacobian, sl)

    return _map_points(loc, chunk_nll, chunk_size)


def _rows(a, sl: slice):
    """``a[sl]`` for an array, ``a`` for a scalar (no Jacobian)."""
    return a[sl] if isinstance(a, np.ndarray) else a


def _log_mask(log_outputs, num_outputs: int, t: np.ndarray, loc: np.ndarray):
    """The ``[O]`` bool mask of the log outputs (``None`` when none), with ``y, f > 0`` there."""
    if log_outputs is None:
        return None
    mask = np.asarray(log_outputs)
    if mask.dtype != bool or mask.shape != (num_outputs,):
        raise ValueError(
            f"`log_outputs` must be {num_outputs} bools (one per output); got {mask.tolist()!r}."
        )
    if not mask.any():
        return None
    for name, values in (("y", t), ("loc_draws", loc)):
        bad = ~(values[..., mask] > 0)
        if bad.any():
            raise ValueError(
                f"`{name}` must be > 0 on the log outputs {np.flatnonzero(mask).tolist()}; "
                f"got {int(bad.sum())} values ≤ 0."
            )
    return mask


def nll_gaussian(mean, sd, y) -> np.ndarray:
    """Negative log density of ``y`` under ``N(mean, sd²)``: a fallback, not the default.

    ``0.5 log(2π) + log sd + (y − mean)² / (2 sd²)``. Use it only when the draws are not
    available: collapsing the predictive to its first two moments misstates the NLL of
    a skewed, heavy-tailed or multimodal predictive (prefer :func:`nll`).

    Args:
        mean: Predictive means, [N, O] or [N].
        sd: Predictive standard deviations, > 0, broadcastable to the shape of `mean`.
        y: Observations, same shape as `mean`.

    Returns:
        Array [N, O].
    """
    m, t = _mean_and_targets(mean, y)
    s = _as_real(sd, "sd").astype(np.float64, copy=False)
    try:
        s = np.broadcast_to(s, np.shape(mean)).reshape(m.shape)
    except ValueError:
        raise ValueError(
            f"`sd` must broadcast to the shape of `mean` {np.shape(mean)}; got shape {s.shape}."
        ) from None
    if (s <= 0).any():
        raise ValueError(f"`sd` must be > 0; got {int(np.count_nonzero(s <= 0))} values ≤ 0.")
    return -log_density(t, m, s, None)


# --------------------------------------------------------------------------- intervals


def central_interval(
    draws, level: float, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> tuple[np.ndarray, np.ndarray]:
    """Central predictive interval from the empirical quantiles of the draws.

    ``lower`` and ``upper`` are the quantiles at ``(1 − level)/2`` and ``(1 + level)/2``
    (NumPy "linear" rule, Hyndman & Fan type 7).

    Args:
        draws: Predictive draws, [S, N, O] or [S, N]; S ≥ 2.
        level: Interval probability in (0, 1), e.g. 0.9.
        chunk_size: (point, output) pairs processed at once.

    Returns:
        ``(lower, upper)``, each [N, O].
    """
    x = _as_draws(draws)
    level = check_level("level", level)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    q = _quantiles(x, np.array([(1 - level) / 2, (1 + level) / 2]), chunk_size)
    return q[0], q[1]


def interval_width(draws, level: float = 0.9, *, chunk_size: int = DEFAULT_CHUNK_SIZE):
    """Mean width of the central interval per output: ``mean_n (upper_n − lower_n)``.

    Args:
        draws: Predictive draws, [S, N, O] or [S, N]; S ≥ 2.
        level: Interval probability in (0, 1).
        chunk_size: (point, output) pairs processed at once.

    Returns:
        Array [O], in the units of ``y``.
    """
    lower, upper = central_interval(draws, level, chunk_size=chunk_size)
    return np.mean(upper - lower, axis=0)


def coverage(draws, y, levels, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Observed coverage: the fraction of points inside each central interval.

    ``coverage[l, o] = (1/N) Σ_n 1[lower_{n,o}(p_l) ≤ y_{n,o} ≤ upper_{n,o}(p_l)]``.
    For a calibrated sampler it equals ``p_l`` up to binomial error
    ``sqrt(p_l(1 − p_l)/N)`` and a discretisation error below ``4/(S + 1)``.

    Args:
        draws: Predictive draws, [S, N, O] or [S, N]; S ≥ 2.
        y: Observations, [N, O] or [N].
        levels: Interval probabilities in (0, 1): a sequence of L levels or a scalar.
        chunk_size: (point, output) pairs processed at once.

    Returns:
        Array [L, O].
    """
    x = _as_draws(draws)
    t = _as_targets(y, x.shape[1], x.shape[2])
    lv = _as_levels(levels)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    q = _quantiles(x, np.concatenate([(1 - lv) / 2, (1 + lv) / 2]), chunk_size)
    lower, upper = q[: lv.size], q[lv.size :]
    return np.mean((lower <= t) & (t <= upper), axis=1)


class CalibrationCurve(NamedTuple):
    """Observed coverage of central intervals against their nominal level.

    Attributes:
        levels: Nominal levels, [L].
        observed: Observed coverage, [L, O].
    """

    levels: np.ndarray
    observed: np.ndarray


def calibration_curve(
    draws, y, levels=DEFAULT_LEVELS, *, chunk_size: int = DEFAULT_CHUNK_SIZE
) -> CalibrationCurve:
    """Coverage of the central intervals at each nominal level (the reliability curve).

    A calibrated predictive lies on the diagonal; a curve above it is under-confident
    (intervals too wide), below it over-confident (too narrow).

    Args:
        draws: Predictive draws, [S, N, O] or [S, N]; S ≥ 2.
        y: Observations, [N, O] or [N].
        levels: Nominal levels in (0, 1); default 0.05, 0.10, …, 0.95.
        chunk_size: (point, output) pairs processed at once.

    Returns:
        A :class:`CalibrationCurve` with ``levels`` [L] and ``observed`` [L, O].
    """
    lv = _as_levels(levels)
    return CalibrationCurve(levels=lv, observed=coverage(draws, y, lv, chunk_size=chunk_size))


def miscalibration_area(curve: CalibrationCurve, *, signed: bool = False) -> np.ndarray:
    """Mean absolute gap between observed and nominal coverage, per output.

    ``area[o] = (1/L) Σ_l |observed[l, o] − levels[l]|``: a plain average over the level
    grid, with no trapezoid weights and no end points added, so it depends on the grid
    (uncertainty-toolbox likewise averages over its own grid of 100 expected
    proportions in ``mean_absolute_calibration_error``; its ``miscalibration_area`` is
    the polygon area between curve and diagonal, which this average approaches on a
    fine uniform grid). 0 is perfect; at most 1.

    With ``signed=True`` the absolute value is dropped: ``(1/L) Σ_l (observed − levels)``
    is positive for an under-confident (too wide) and negative for an over-confident
    (too narrow) predictive.

    Args:
        curve: From :func:`calibration_curve`.
        signed: Return the signed mean gap instead.

    Returns:
        Array [O].
    """
    levels = np.asarray(curve.levels, dtype=np.float64)
    observed = np.asarray(curve.observed, dtype=np.float64)
    if observed.ndim == 1:
        observed = observed[:, None]
    if levels.ndim != 1 or observed.ndim != 2 or observed.shape[0] != levels.shape[0]:
        raise ValueError(
            "`curve.observed` must have shape [L, O] with L = len(`curve.levels`); got "
            f"levels {levels.shape} and observed {observed.shape}."
        )
    gap = observed - levels[:, None]
    return np.mean(gap if signed else np.abs(gap), axis=0)


def interval_score(lower, upper, y, level: float) -> np.ndarray:
    """Interval score of a central interval (Gneiting & Raftery 2007, eq. 43).

    With ``α = 1 − level``::

        IS = (u − l) + (2/α)(l − y)·1[y < l] + (2/α)(y − u)·1[y > u].

    Width plus a penalty for each miss proportional to its distance; proper for the
    ``α/2`` and ``1 − α/2`` quantiles. Lower is better; units of ``y``.

    Args:
        lower: Lower interval ends, [N, O] or [N].
        upper: Upper interval ends, same shape, ≥ `lower`.
        y: Observations, same shape.
        level: Interval probability in (0, 1).

    Returns:
        Array [N, O].
    """
    lo = _as_points(lower, "lower")
    hi = _as_targets(upper, lo.shape[0], lo.shape[1], name="upper", ref="lower", point_axis=0)
    t = _as_targets(y, lo.shape[0], lo.shape[1], ref="lower", point_axis=0)
    alpha = 1.0 - check_level("level", level)
    if (lo > hi).any():
        raise ValueError(
            f"`lower` must be ≤ `upper`; {int(np.count_nonzero(lo > hi))} intervals are reversed."
        )
    return (hi - lo) + (2.0 / alpha) * (lo - t) * (t < lo) + (2.0 / alpha) * (t - hi) * (t > hi)


def sharpness(draws, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Mean predictive standard deviation per output: ``mean_n sd_s(X_{s,n})`` (ddof = 1).

    Smaller is sharper; only meaningful alongside calibration. (uncertainty-toolbox's
    ``sharpness`` is the root-mean variance ``sqrt(mean_n sd_n²)`` instead, which weights
    wide points more.)

    Args:
        draws: Predictive draws, [S, N, O] or [S, N]; S ≥ 2.
        chunk_size: (point, output) pairs processed at once.

    Returns:
        Array [O].
    """
    x = _as_draws(draws)
    return np.mean(_draw_sd(x, check_int("chunk_size", chunk_size, minimum=1)), axis=0)


# --------------------------------------------------------------------------- PIT


def pit(draws, y, seed=0, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Randomized probability integral transform of ``y`` under the draws.

    With ``K = #{s: X_s < y}``, ``E = #{s: X_s = y}`` and ``U ~ U(0, 1)`` independent::

        PIT = (K + U·(E + 1)) / (S + 1).

    Derivation: if ``y`` and ``X_1 … X_S`` are exchangeable (a calibrated sampler),
    the rank of ``y`` among the ``S + 1`` values, with ties broken uniformly at random,
    is uniform on ``{0, …, S}``. It equals ``K + V`` with ``V`` uniform on
    ``{0, …, E}`` (the position of ``y`` among its ``E`` ties). Adding an independent
    ``U(0, 1)`` spreads each rank over a cell of width 1, and ``V + U`` is uniform on
    ``[0, E + 1]``, i.e. distributed as ``U·(E + 1)``. Hence the PIT above is *exactly*
    U(0, 1) for every ``S ≥ 1``, with or without ties (discrete outputs, repeated
    draws), not just approximately as ``K/S`` would be.

    Args:
        draws: Predictive draws, [S, N, O] or [S, N]; S ≥ 1.
        y: Observations, [N, O] or [N].
        seed: Seed (or ``np.random.Generator``) for ``U``; fixed for reproducibility.
        chunk_size: (point, output) pairs compared at once.

    Returns:
        Array [N, O] of values in [0, 1).
    """
    x = _as_draws(draws, min_draws=1)
    num_draws, num_points, num_outputs = x.shape
    t = _as_targets(y, num_points, num_outputs)
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)
    u = np.random.default_rng(seed).random((num_points, num_outputs))

    def chunk_counts(c: np.ndarray, sl: slice) -> np.ndarray:
        return np.stack([np.sum(c < t[sl], axis=0), np.sum(c == t[sl], axis=0)])

    below, equal = _map_points(x, chunk_counts, chunk_size)
    return (below + u * (equal + 1.0)) / (num_draws + 1.0)


class PITUniformityResult(NamedTuple):
    """Tests of PIT values against U(0, 1), per output.

    Attributes:
        ks_statistic: Kolmogorov–Smirnov distance sup_u |F̂(u) − u|, [O].
        ks_pvalue: Its p-value, [O].
        chi2_statistic: Pearson χ² of the histogram against equal counts, [O].
        chi2_pvalue: Its p-value with ``num_bins − 1`` degrees of freedom, [O].
        num_bins: Histogram bins of the χ² test.
    """

    ks_statistic: np.ndarray
    ks_pvalue: np.ndarray
    chi2_statistic: np.ndarray
    chi2_pvalue: np.ndarray
    num_bins: int


def chi2_bins(num_points: int, max_bins: int = 10) -> int:
    """Bins of the PIT χ² test with at least 5 expected points each (2 at the least)."""
    return int(min(max_bins, max(2, num_points // 5)))


def pit_uniformity(pit_values, *, num_bins: int = 10) -> PITUniformityResult:
    """Tests whether PIT values are uniform: Kolmogorov–Smirnov and a χ² histogram test.

    Both tests assume independent points. The KS test (``scipy.stats.kstest``) is most
    sensitive near the median; the χ² test on ``num_bins`` equal bins also sees U- or
    hump-shaped histograms (over- or under-confidence) in the tails. The χ² p-value is
    asymptotic and needs about 5 expected points per bin; below that a warning is issued.

    Args:
        pit_values: From :func:`pit`, [N, O] or [N], in [0, 1].
        num_bins: Histogram bins of the χ² test (≥ 2).

    Returns:
        A :class:`PITUniformityResult` of [O] arrays.
    """
    p = _as_points(pit_values, "pit_values")
    if ((p < 0) | (p > 1)).any():
        raise ValueError(
            f"`pit_values` must lie in [0, 1]; got range [{p.min():.6g}, {p.max():.6g}]."
        )
    num_bins = check_int("num_bins", num_bins, minimum=2)
    num_points = p.shape[0]
    if num_points < 5 * num_bins:
        warnings.warn(
            f"`pit_values` has {num_points} points, fewer than 5 per bin for {num_bins} bins; "
            "the χ² p-value is unreliable. Use fewer `num_bins` or more held-out points.",
            UserWarning,
            stacklevel=2,
        )
    ks = stats.kstest(p, "uniform", axis=0)
    counts = np.stack(
        [np.histogram(p[:, o], bins=num_bins, range=(0.0, 1.0))[0] for o in range(p.shape[1])],
        axis=1,
    )
    chi2 = stats.chisquare(counts, axis=0)
    return PITUniformityResult(
        ks_statistic=np.atleast_1d(ks.statistic),
        ks_pvalue=np.atleast_1d(ks.pvalue),
        chi2_statistic=np.atleast_1d(chi2.statistic),
        chi2_pvalue=np.atleast_1d(chi2.pvalue),
        num_bins=num_bins,
    )


# --------------------------------------------------------------------------- generalization


class GeneralizationGap(NamedTuple):
    """Test against training error.

    Attributes:
        ratio: ``test_rmse / train_rmse`` (1 = no gap; inf when the training error is 0).
        difference: ``test_rmse − train_rmse`` (in the units of ``y``).
    """

    ratio: np.ndarray
    difference: np.ndarray


def generalization_gap(train_rmse, test_rmse) -> GeneralizationGap:
    """Ratio and difference of test to training RMSE.

    ``ratio = test / train`` is scale-free (a ratio well above 1 suggests over-fitting
    or a test distribution unlike the training one); ``difference = test − train`` is in
    the units of ``y``. A zero training RMSE gives ``ratio = inf`` (NaN if both are 0).

    Args:
        train_rmse: RMSE on the training data, ≥ 0: scalar or [O].
        test_rmse: RMSE on held-out data, ≥ 0, broadcastable against `train_rmse`.

    Returns:
        A :class:`GeneralizationGap` of arrays (broadcast shape).
    """
    train = _as_real(train_rmse, "train_rmse").astype(np.float64)
    test = _as_real(test_rmse, "test_rmse").astype(np.float64)
    for name, value in (("train_rmse", train), ("test_rmse", test)):
        if (value < 0).any():
            raise ValueError(f"`{name}` must be ≥ 0; got {value.tolist()}.")
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = test / train
    return GeneralizationGap(ratio=ratio, difference=test - train)


# --------------------------------------------------------------------------- summary


def _json_float(value) -> float | None:
    value = float(value)
    return value if math.isfinite(value) else None


def _json_list(values) -> list:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim == 0:
        return _json_float(arr)  # type: ignore[return-value]
    return [_json_list(v) for v in arr]


def _per_output(values) -> dict[str, Any]:
    """{"per_output": [O floats], "overall": mean over outputs} with NaN/inf → None."""
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    return {"per_output": _json_list(arr), "overall": _json_float(np.mean(arr))}


def summarize(
    draws,
    y,
    *,
    loc_draws=None,
    scale_draws=None,
    df: float | None = None,
    levels=DEFAULT_LEVELS,
    train: tuple[Any, Any] | None = None,
    log_outputs=None,
) -> dict[str, Any]:
    """Every metric of this module in one JSON-serializable dict.

    Point metrics use the predictive mean of `loc_draws` when given (the noise-free
    function draws: the same expectation without observation-noise Monte-Carlo error),
    else of `draws`. Each metric is averaged over
    points per output (``"per_output"``, a list of O floats) and then over outputs
    (``"overall"``, a plain mean, meaningful when outputs share a scale). Non-finite
    values (an R² with constant ``y``, an infinite gap ratio) become None, so the dict
    passes ``json.dumps(..., allow_nan=False)``. Keys:

    * ``num_draws``, ``num_points``, ``num_outputs``;
    * ``rmse``, ``mae``, ``r2``, ``crps`` (fair CRPS), ``sharpness`` (mean sd),
      ``interval_width_90``, ``interval_score_90``, ``miscalibration_area``;
    * ``nll`` (mixture NLL), only when `loc_draws` and `scale_draws` are both given;
    * ``coverage``: ``{"0.5": {...}, "0.9": {...}, "0.95": {...}}`` at
      :data:`HEADLINE_LEVELS`;
    * ``calibration_curve``: ``{"levels": [L], "observed": [L][O], "overall": [L]}``;
    * ``pit``: KS and χ² p-values (seed 0) per output; ``"overall"`` is the Bonferroni
      combination ``min(1, O · min_o p_o)``, a valid p-value for "all outputs uniform";
    * ``generalization_gap`` (``train_rmse``, ``test_rmse``, ``ratio``,
      ``difference``), only when ``train=(train_loc_draws, train_y)`` is given: the
      RMSE of the posterior mean of the noise-free function f on each split (the one
      definition of the gap; ``test_rmse`` equals ``rmse`` above).

    Args:
        draws: Held-out predictive draws of noisy ``y``, [S, N, O] or [S, N]; S ≥ 2.
        y: Held-out observations, [N, O] or [N].
        loc_draws: Optional noise-free function draws for the point metrics and the NLL
            (see :func:`nll`); required with `train`.
        scale_draws: Optional noise sds for the NLL (see :func:`nll`).
        df: Student-t degrees of freedom of the likelihood for the NLL, or None for a
            Normal likelihood (see :func:`nll`).
        levels: Levels of the calibration curve.
        train: Optional ``(train_loc_draws, train_y)`` for the generalization gap: draws
            of the noise-free function f at the training inputs ([S', N', O] or
            [S', N']) and the training observations.
        log_outputs: Optional [O] bools, the log-transformed outputs, for the NLL (see
            :func:`nll`).

    Returns:
        A dict of plain floats, lists and None.
    """
    x = _as_draws(draws)
    num_draws, num_points, num_outputs = x.shape
    t = _as_targets(y, num_points, num_outputs)
    lv = _as_levels(levels)
    if (loc_draws is None) != (scale_draws is None):
        raise ValueError(
            "`loc_draws` and `scale_draws` must be given together (for the NLL) or not at "
            f"all; got only `{'loc_draws' if scale_draws is None else 'scale_draws'}`."
        )
    train_f, train_y = _train_pair(train, num_outputs, has_loc=loc_draws is not None)
    # The NLL validates `loc_draws`/`scale_draws`: run it before any other work.
    nll_values = None
    if loc_draws is not None:
        nll_values = nll(
            t, loc_draws=loc_draws, scale_draws=scale_draws, df=df, log_outputs=log_outputs
        )

    # Same expectation; the noise-free draws carry no observation-noise Monte-Carlo error.
    mean = _draw_mean(x) if loc_draws is None else _draw_mean(_as_draws(loc_draws, "loc_draws"))
    summary: dict[str, Any] = {
        "num_draws": int(num_draws),
        "num_points": int(num_points),
        "num_outputs": int(num_outputs),
        "rmse": _per_output(rmse(mean, t)),
        "mae": _per_output(mae(mean, t)),
        "r2": _per_output(r2(mean, t)),
        "crps": _per_output(crps(x, t).mean(axis=0)),
    }
    if nll_values is not None:
        summary["nll"] = _per_output(nll_values.mean(axis=0))
    summary.update(_interval_summary(x, t, lv))
    if train_f is not None:
        summary["generalization_gap"] = _gap_summary(
            rmse(_draw_mean(train_f), train_y), rmse(mean, t)
        )
    return summary


def _train_pair(train, num_outputs: int, *, has_loc: bool):
    """Validated ``(train_loc_draws [S', N', O], train_y [N', O])``, or ``(None, None)``."""
    if train is None:
        return None, None
    if not isinstance(train, Sequence) or len(train) != 2:
        raise ValueError(
            f"`train` must be a pair (train_loc_draws, train_y); got {type(train).__name__}."
        )
    if not has_loc:
        raise ValueError(
            "`train` needs `loc_draws` (and `scale_draws`): the generalization gap compares "
            "the posterior mean of the noise-free function f on both splits, so give the "
            "held-out f draws too."
        )
    train_f = _as_draws(train[0], "train[0] (train_loc_draws)")
    if train_f.shape[2] != num_outputs:
        raise ValueError(
            f"`train[0]` (train_loc_draws) has {train_f.shape[2]} outputs (axis 2) but "
            f"`draws` has {num_outputs}."
        )
    train_y = _as_targets(train[1], train_f.shape[1], num_outputs, name="train[1]", ref="train[0]")
    return train_f, train_y


def _interval_summary(x: np.ndarray, t: np.ndarray, lv: np.ndarray) -> dict[str, Any]:
    """Coverage, calibration curve, PIT and interval metrics of draws ``x`` [S, N, O]."""
    num_outputs = x.shape[2]
    curve = calibration_curve(x, t, lv)
    headline = coverage(x, t, HEADLINE_LEVELS)
    lower, upper = central_interval(x, INTERVAL_LEVEL)
    # At least 5 expected points per χ² bin: 10 bins from 50 points on, fewer below.
    pit_test = pit_uniformity(pit(x, t, seed=0), num_bins=chi2_bins(t.shape[0]))
    bonferroni = lambda p: min(1.0, num_outputs * float(np.min(p)))
    summary: dict[str, Any] = {
        "coverage": {
            level_key(level): _per_output(row) for level, row in zip(HEADLINE_LEVELS, headline)
        },
        "calibration_curve": {
            "levels": _json_list(curve.levels),
            "observed": _json_list(curve.observed),
            "overall": _json_list(curve.observed.mean(axis=1)),
        },
        "miscalibration_area": _per_output(miscalibration_area(curve)),
        "pit": {
            "ks_pvalue": {
                "per_output": _json_list(pit_test.ks_pvalue),
                "overall": bonferroni(pit_test.ks_pvalue),
            },
            "chi2_pvalue": {
                "per_output": _json_list(pit_test.chi2_pvalue),
                "overall": bonferroni(pit_test.chi2_pvalue),
            },
        },
    }
    score = interval_score(lower, upper, t, INTERVAL_LEVEL)
    summary[INTERVAL_SCORE_KEY] = _per_output(score.mean(axis=0))
    summary["sharpness"] = _per_output(sharpness(x))
    summary[INTERVAL_WIDTH_KEY] = _per_output(np.mean(upper - lower, axis=0))
    return summary


def _gap_summary(train_rmse: np.ndarray, test_rmse: np.ndarray) -> dict[str, Any]:
    """The ``generalization_gap`` entry of :func:`summarize` from the two RMSEs [O]."""
    gap = generalization_gap(train_rmse, test_rmse)
    return {
        "train_rmse": _per_output(train_rmse),
        "test_rmse": _per_output(test_rmse),
        "ratio": _per_output(gap.ratio),
        "difference": _per_output(gap.difference),
    }


# --------------------------------------------------------------------------- recalibration


def _float_tuple(values) -> tuple[float, ...]:
    return tuple(float(v) for v in np.asarray(values, dtype=np.float64).reshape(-1))


@dataclass(frozen=True)
class Recalibration:
    """A fitted recalibration map: plain numbers only (hashable, JSON-friendly).

    Attributes:
        method: ``"isotonic"`` or ``"variance"``.
        scale: Variance scaling: the factor ``c`` per output (> 0); empty for isotonic.
        levels: Isotonic: per output, the knots ``p_j`` of the map R (nominal PIT
            levels), strictly increasing from 0 to 1; empty for variance scaling.
        observed: Isotonic: per output, ``R(p_j)`` (observed frequency of PIT ≤ p_j),
            strictly increasing from 0 to 1; empty for variance scaling.
    """

    method: str
    scale: tuple[float, ...] = ()
    levels: tuple[tuple[float, ...], ...] = ()
    observed: tuple[tuple[float, ...], ...] = ()

    def __post_init__(self):
        if self.method not in RECALIBRATION_METHODS:
            raise ValueError(
                f"`method` must be one of {', '.join(map(repr, RECALIBRATION_METHODS))}; "
                f"got {self.method!r}."
            )
        object.__setattr__(self, "scale", _float_tuple(self.scale))
        object.__setattr__(self, "levels", tuple(_float_tuple(k) for k in self.levels))
        object.__setattr__(self, "observed", tuple(_float_tuple(k) for k in self.observed))
        if self.method == "variance":
            if not self.scale or self.levels or self.observed:
                raise ValueError(
                    "variance `Recalibration` needs a non-empty `scale` (one factor per "
                    "output) and no `levels`/`observed`."
                )
            if not all(math.isfinite(c) and c > 0 for c in self.scale):
                raise ValueError(f"`scale` must be finite and > 0; got {self.scale}.")
            return
        if not self.levels or len(self.levels) != len(self.observed) or self.scale:
            raise ValueError(
                "isotonic `Recalibration` needs `levels` and `observed` with one knot "
                f"sequence per output (got {len(self.levels)} and {len(self.observed)}) "
                "and no `scale`."
            )
        for o, (p, r) in enumerate(zip(self.levels, self.observed)):
            for name, knots in (("levels", p), ("observed", r)):
                k = np.asarray(knots)
                if (
                    len(p) != len(r)
                    or k.size < 2
                    or k[0] != 0.0
                    or k[-1] != 1.0
                    or not (np.diff(k) > 0).all()
                ):
                    raise ValueError(
                        f"`{name}[{o}]` must be strictly increasing from 0 to 1 and as long "
                        f"as its partner ({len(p)} levels, {len(r)} observed); got {knots}."
                    )

    @property
    def num_outputs(self) -> int:
        """Outputs the map was fitted for."""
        return len(self.scale) if self.method == "variance" else len(self.levels)


def fit_recalibration(draws, y, method: str = "isotonic", *, seed=0) -> Recalibration:
    """Fits a recalibration map on a calibration split (not the test data).

    * ``"isotonic"`` (Kuleshov, Fenner & Ermon 2018): per output, with randomized PIT
      values ``p_(1) ≤ … ≤ p_(N)`` (:func:`pit`), fit the monotone map R from nominal
      level ``p`` to observed frequency ``P(PIT ≤ p)`` through the points
      ``(p_(i), i/(N + 1))`` (the plotting position ``E U_(i) = i/(N + 1)``, so a
      calibrated sampler gives R ≈ identity) plus ``(0, 0)`` and ``(1, 1)``, with
      ``scipy.optimize.isotonic_regression`` (weighted by multiplicity) enforcing
      monotonicity. These points are already increasing, so the fit reproduces them
      and R is the continuity-corrected empirical CDF of the PIT, interpolated
      linearly; the recalibrated predictive CDF is ``R ∘ F``.
    * ``"variance"`` (variance scaling, Levi et al. 2019): per output
      ``c = sqrt(mean_n ((y_n − m_n)/sd_n)²)`` with ``m_n``, ``sd_n`` the mean and sd
      (ddof = 1) of the draws; the recalibrated draws are ``m + c (X − m)``. Exact
      for a Gaussian predictive whose spread is off by a constant factor.

    Args:
        draws: Calibration-split predictive draws, [S, N, O] or [S, N]; S ≥ 2.
        y: Calibration-split observations, [N, O] or [N].
        method: ``"isotonic"`` or ``"variance"``.
        seed: Seed of the PIT randomization (isotonic only).

    Returns:
        A :class:`Recalibration` to pass to :func:`recalibrate`.
    """
    if method not in RECALIBRATION_METHODS:
        raise ValueError(
            f"`method` must be one of {', '.join(map(repr, RECALIBRATION_METHODS))}; "
            f"got {method!r}."
        )
    x = _as_draws(draws)
    num_draws, num_points, num_outputs = x.shape
    t = _as_targets(y, num_points, num_outputs)
    if method == "variance":
        m = _draw_mean(x)
        sd = _draw_sd(x)
        if (sd <= 0).any():
            raise ValueError(
                f"`draws` have zero spread at {int(np.count_nonzero(sd <= 0))} (point, output) "
                "pairs; variance scaling needs sd > 0 everywhere (use method='isotonic')."
            )
        return Recalibration(method="variance", scale=np.sqrt(np.mean(((t - m) / sd) ** 2, 0)))

    pit_values = pit(x, t, seed=seed)
    levels, observed = [], []
    plotting = np.arange(1, num_points + 1) / (num_points + 1.0)
    for o in range(num_outputs):
        values, inverse, counts = np.unique(
            np.sort(pit_values[:, o]), return_inverse=True, return_counts=True
        )
        heights = np.bincount(inverse, weights=plotting) / counts  # mean plotting position
        inner = (values > 0) & (values < 1)  # the end knots (0, 0) and (1, 1) are fixed
        fit = optimize.isotonic_regression(heights[inner], weights=counts[inner]).x
        levels.append(np.concatenate([[0.0], values[inner], [1.0]]))
        observed.append(np.concatenate([[0.0], fit, [1.0]]))
    return Recalibration(method="isotonic", levels=tuple(levels), observed=tuple(observed))


_CLAMP_WARN_FRACTION = 0.01  # recalibrate warns above this fraction of clamped draws


def _hazen_positions(recal: Recalibration, num_draws: int) -> np.ndarray:
    """0-based Hazen positions ``S R⁻¹(u_i) − 0.5`` in the sorted draws, unclipped: [S, O]."""
    u = (np.arange(1, num_draws + 1) - 0.5) / num_draws
    q = np.stack([np.interp(u, r, p) for p, r in zip(recal.levels, recal.observed)], axis=1)
    return q * num_draws - 0.5


def _clamped_fraction(pos: np.ndarray) -> np.ndarray:
    """Fraction of positions per output outside [0, S − 1] (beyond the extreme draws): [O]."""
    tol = 1e-9  # positions 0 and S − 1 themselves (an identity map) are not clamped
    return np.mean((pos < -tol) | (pos > pos.shape[0] - 1 + tol), axis=0)


def recalibrate(recal: Recalibration, draws, *, chunk_size: int = DEFAULT_CHUNK_SIZE) -> np.ndarray:
    """Applies a fitted recalibration to predictive draws; returns draws of the same shape.

    * Variance scaling: ``X' = m + c (X − m)`` per point, with ``m`` the draws' mean.
    * Isotonic: quantile mapping. With the map ``R`` of output ``o``, the recalibrated
      CDF is ``G = R ∘ F``, so its quantile at ``u`` is ``F⁻¹(R⁻¹(u))``. The draw of rank
      ``i`` (1-based) at a point is replaced by the draws' empirical quantile at
      ``R⁻¹(u_i)``, ``u_i = (i − 0.5)/S``, using the Hazen rule (position ``S q + 0.5``)
      under which ``R = identity`` returns the draws unchanged. Each new value goes back
      to the slot of the draw it replaces, so the rank order of draws (and with it their
      dependence across points and outputs) is kept, as in the Schaake shuffle.

    Limitation of the isotonic map: it only reshuffles probability *within* the range of
    the draws. The randomized PIT resolves tail probabilities only down to ``1/(S + 1)``
    (every ``y`` beyond the extreme draw gets the same PIT cell), so when R assigns more
    mass than that to a tail (a strongly under-dispersed predictive), the positions
    ``R⁻¹(u_i)`` below ``0.5/S`` (or above ``1 − 0.5/S``) are clamped to the extreme
    draws: coverage of the widest intervals and the PIT in the tails stay off. A
    ``UserWarning`` is issued when more than 1% of the draws of an output are clamped;
    the fix is variance scaling first (which widens the range) and an isotonic map
    fitted to its output, or more draws.

    Every metric of this module can then be recomputed on the returned draws.

    Args:
        recal: From :func:`fit_recalibration`.
        draws: Predictive draws, [S, N, O] or [S, N], with the fitted number of outputs.
        chunk_size: (point, output) pairs processed at once.

    Returns:
        Array of the shape of `draws` (float64).
    """
    if not isinstance(recal, Recalibration):
        raise TypeError(f"`recal` must be a Recalibration; got {type(recal).__name__}.")
    x = _as_draws(draws)
    shape = np.shape(draws)
    num_draws, _, num_outputs = x.shape
    if recal.num_outputs != num_outputs:
        raise ValueError(
            f"`recal` was fitted for {recal.num_outputs} outputs but `draws` has "
            f"{num_outputs} (axis 2)."
        )
    chunk_size = check_int("chunk_size", chunk_size, minimum=1)

    if recal.method == "variance":
        c = np.asarray(recal.scale)

        def chunk_variance(chunk: np.ndarray, _: slice) -> np.ndarray:
            m = chunk.mean(axis=0)
            return m + c * (chunk - m)

        return _map_points(x, chunk_variance, chunk_size).reshape(shape)

    pos = _hazen_positions(recal, num_draws)
    clamped = _clamped_fraction(pos)
    if (clamped > _CLAMP_WARN_FRACTION).any():
        o = int(np.argmax(clamped))
        warnings.warn(
            f"isotonic recalibration asks for {100 * clamped[o]:.1f}% of the draws of output "
            f"{o} beyond the range of the original {num_draws} draws; empirical quantiles "
            "cannot go there, so those draws sit at the extreme draws and the recalibrated "
            "tails are too light. Apply variance scaling first and fit the isotonic map on "
            "its output, or use more draws.",
            UserWarning,
            stacklevel=2,
        )
    pos = np.clip(pos, 0.0, num_draws - 1.0)  # [S, O]
    below = np.minimum(np.floor(pos).astype(np.intp), num_draws - 2)
    frac = pos - below

    def chunk_isotonic(chunk: np.ndarray, _: slice) -> np.ndarray:
        order = np.argsort(chunk, axis=0, kind="stable")
        ranked = np.take_along_axis(chunk, order, axis=0)
        lo = np.take_along_axis(ranked, np.broadcast_to(below[:, None, :], ranked.shape), 0)
        hi = np.take_along_axis(ranked, np.broadcast_to(below[:, None, :] + 1, ranked.shape), 0)
        mapped = lo + frac[:, None, :] * (hi - lo)
        out = np.empty_like(chunk)
        np.put_along_axis(out, order, mapped, axis=0)
        return out

    return _map_points(x, chunk_isotonic, chunk_size).reshape(shape)


def recalibration_report(recal: Recalibration, draws, y, *, levels=DEFAULT_LEVELS) -> dict:
    """Summaries of held-out draws before and after recalibration.

    Args:
        recal: From :func:`fit_recalibration` on a calibration split.
        draws: Held-out predictive draws, [S, N, O] or [S, N].
        y: Held-out observations, [N, O] or [N].
        levels: Levels of the calibration curves.

    Returns:
        ``{"method": str, "clamped_fraction": [O], "before": summarize(draws, y),
        "after": summarize(new, y)}``, JSON-serializable (see :func:`summarize`).
        ``clamped_fraction`` is, per output, the fraction of recalibrated draws that an
        isotonic map wanted beyond the range of the draws (0 for variance scaling; see
        :func:`recalibrate`).
    """
    after = recalibrate(recal, draws)
    num_draws = _as_draws(draws).shape[0]
    if recal.method == "isotonic":
        clamped = _clamped_fraction(_hazen_positions(recal, num_draws))
    else:
        clamped = np.zeros(recal.num_outputs)
    return {
        "method": recal.method,
        "clamped_fraction": _json_list(clamped),
        "before": summarize(draws, y, levels=levels),
        "after": summarize(after, y, levels=levels),
    }
