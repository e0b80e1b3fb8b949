"""Depth-scaling exponents of the hidden weights: is the trained network near the ODE regime?

Cohen, Cont, Rossier and Xu (2021) ask how the weights ``W_{L,l}`` of a trained residual
network ``h_{l+1} = h_l + (1/L) σ(h_l W_{L,l} + b_{L,l})`` scale with its depth ``L``:

    max_l ‖W_{L,l+1} − W_{L,l}‖ ~ L^{−β}      (increments),
    max_l ‖W_{L,l}‖             ~ L^{−β_norm} (weights).

``β = 1`` means the increments are of the size ``Δt = 1/L``: the layers sample a smooth
path ``W(t)`` and the network is a discretization of a neural ODE (the regime in which
``apply(..., num_layers=M)`` converges to :func:`bayesresnet.ode.solve`). ``β = 1/2``
means increments like those of a random walk (a stochastic-differential-equation limit),
``β = 0`` increments that do not shrink at all (layer weights that are independent of
their neighbours: no continuous-depth limit). With the ``1/L`` step already in the
update, ``β_norm = 0`` is the scaling under which the residual branch neither vanishes
nor explodes.

Two estimators, both by least squares on the log-log points, with the norm the
Frobenius norm and the reduction over layers the maximum (``reduce="max"``, as Cohen et
al.) or the mean (``reduce="mean"``, less sensitive to one outlying layer):

* **within one network** (:func:`increment_scaling`, :func:`posterior_depth_scaling`):
  coarsen the ``L`` layers with strides ``s = 1, 2, 4, …`` while ``L/s ≥ 4`` (layers
  ``0, s, 2s, …``, an effective depth ``L_s = L/s``, step ``Δt_s = s/L``) and regress
  ``log reduce_k ‖W_{(k+1)s} − W_{ks}‖`` on ``log L_s``: ``β`` is minus the slope. For a
  smooth path the stride-``s`` increment is ``≈ ‖W'(t)‖ s/L`` (``β = 1``); for
  independent layers it does not depend on ``s`` (``β = 0``); for a random walk it grows
  like ``√s`` (``β = 1/2``). ``β_norm`` is reported from the same coarsening (the norm
  of the retained layers), and is ``≈ 0`` by construction here; it is informative only
  across networks;
* **across networks of several depths** (:func:`across_depths`,
  :func:`posterior_depth_scaling_across`): Cohen et al.'s definition, one fitted
  network (posterior) per depth ``L``, regressing ``log reduce_l ‖W_{L,l+1} − W_{L,l}‖``
  and ``log reduce_l ‖W_{L,l}‖`` on ``log L``.

Over posterior draws, each draw gives its own ``β`` (draws are paired by index across
depths), so :func:`scaling_bands` reports the posterior median and a central band. A
continuous basis gives ``β → 1`` within one network by construction as ``L`` grows
(``W(t)`` is a polynomial or piecewise-linear path), but at a small depth (``L = 8``:
strides 1 and 2 only) a strongly curved fitted ``W(t)`` gives a lower value, since the
stride-2 increments then measure curvature as much as slope. The diagnostic is
informative for the per-layer basis (a plain ResNet), where it says whether the data and
prior made the layers smooth.

References:
    Cohen, Cont, Rossier, Xu (2021), Scaling properties of deep residual networks. ICML.
    Sander, Ablin, Peyré (2022), Do residual neural networks discretize neural ordinary
    differential equations? NeurIPS.
    Marion, Fermanian, Biau, Vert (2023), Implicit regularization of deep residual
    networks towards neural ODEs. ICLR 2024 (arXiv 2023).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import NamedTuple

import numpy as np

from bayesresnet import bases, sites
from bayesresnet._validate import check_choice, check_int, check_number

__all__ = [
    "REDUCTIONS",
    "DepthScalingResult",
    "default_strides",
    "increment_scaling",
    "across_depths",
    "posterior_layer_weights",
    "posterior_depth_scaling",
    "posterior_depth_scaling_across",
    "scaling_bands",
]

REDUCTIONS = ("max", "mean")


class DepthScalingResult(NamedTuple):
    """Exponents per draw and the log-log points they are fitted to.

    Attributes:
        beta: increment exponent per draw ``[S]`` (``β = 1``: smooth, the ODE regime).
        beta_norm: weight-norm exponent per draw ``[S]``.
        depth: the (effective) depths ``[J]`` of the points.
        increment: reduced increment norm per draw and depth ``[S, J]``.
        norm: reduced weight norm per draw and depth ``[S, J]``.
    """

    beta: np.ndarray
    beta_norm: np.ndarray
    depth: np.ndarray
    increment: np.ndarray
    norm: np.ndarray


def _reduce(values: np.ndarray, reduce: str) -> np.ndarray:
    return values.max(axis=-1) if reduce == "max" else values.mean(axis=-1)


def _slope(log_depth: np.ndarray, log_values: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of ``log_values [S, J]`` on ``log_depth [J]``."""
    x = log_depth - log_depth.mean()
    y = log_values - log_values.mean(axis=-1, keepdims=True)
    return (y @ x) / (x @ x)


def _log(values: np.ndarray) -> np.ndarray:
    # A zero increment (a constant path) has no exponent; floor it far below any real one.
    return np.log(np.maximum(values, 1e-30))


def _as_weights(weights, name: str = "weights") -> np.ndarray:
    w = np.asarray(weights, dtype=np.float64)
    if w.ndim < 3 or w.shape[-1] != w.shape[-2]:
        raise ValueError(
            f"`{name}` must have shape [..., L, w, w] (per-layer square matrices); got {w.shape}."
        )
    if not np.all(np.isfinite(w)):
        raise ValueError(f"`{name}` has non-finite values.")
    return w.reshape((-1,) + w.shape[-3:])


def default_strides(num_layers: int) -> tuple[int, ...]:
    """Powers of two ``s`` with an effective depth ``L/s ≥ 4`` (``(1, 2)`` below 8 layers).

    Coarser strides would measure the curvature of a smooth path rather than its slope
    (the stride-``s`` increment is ``‖W'‖ s/L`` only up to ``O((s/L)²)``).
    """
    num_layers = check_int("num_layers", num_layers, minimum=3)
    strides, s = [], 1
    while num_layers / s >= 4:
        strides.append(s)
        s *= 2
    return tuple(strides) if len(strides) >= 2 else (1, 2)


def increment_scaling(weights, *, strides=None, reduce: str = "max") -> DepthScalingResult:
    """Depth-scaling exponents of per-layer weights within one network (coarsening).

    Args:
        weights: per-layer hidden weights ``[..., L, w, w]`` (leading axes: draws).
        strides: coarsening strides (distinct ints ≥ 1, at least two, each leaving one
            increment); default :func:`default_strides`.
        reduce: ``"max"`` or ``"mean"`` over the layers of each coarsened network.

    Returns:
        A :class:`DepthScalingResult` with one row per draw.
    """
    w = _as_weights(weights)
    num_layers = w.shape[1]
    check_choice("reduce", reduce, REDUCTIONS)
    if num_layers < 3:
        raise ValueError(
            f"the depth-scaling exponents need at least 3 layers (two strides); got {num_layers}."
        )
    strides = default_strides(num_layers) if strides is None else tuple(strides)
    for s in strides:
        check_int("strides", s, minimum=1)
        if s > num_layers - 1:
            raise ValueError(f"`strides` must be ≤ L − 1 = {num_layers - 1}; got {s}.")
    if len(set(strides)) < 2:
        raise ValueError(f"`strides` needs at least two distinct strides; got {list(strides)}.")
    increments, norms = [], []
    for s in strides:
        coarse = w[:, ::s]  # [S, ⌈L/s⌉, w, w]
        diff = np.linalg.norm(coarse[:, 1:] - coarse[:, :-1], axis=(-2, -1))
        increments.append(_reduce(diff, reduce))
        norms.append(_reduce(np.linalg.norm(coarse, axis=(-2, -1)), reduce))
    depth = num_layers / np.asarray(strides, dtype=np.float64)
    return _fit(depth, np.stack(increments, axis=1), np.stack(norms, axis=1))  # [S, J]


def across_depths(weights_by_depth: Mapping[int, np.ndarray], *, reduce: str = "max"):
    """Cohen et al.'s exponents from networks (posteriors) of several depths.

    Args:
        weights_by_depth: ``{L: [S, L, w, w]}`` per-layer weights of a network of each
            depth ``L`` (at least two depths; draws paired by index, the first
            ``min S`` of each kept).
        reduce: ``"max"`` or ``"mean"`` over layers.

    Returns:
        A :class:`DepthScalingResult` with ``depth`` the sorted ``L``.
    """
    check_choice("reduce", reduce, REDUCTIONS)
    if not isinstance(weights_by_depth, Mapping) or len(weights_by_depth) < 2:
        raise ValueError("`weights_by_depth` must map at least two depths L to weights.")
    items = []
    for depth in sorted(weights_by_depth):
        w = _as_weights(weights_by_depth[depth], f"weights_by_depth[{depth}]")
        if w.shape[1] != depth or depth < 2:
            raise ValueError(
                f"`weights_by_depth[{depth}]` must have {depth} ≥ 2 layers; got {w.shape[1]}."
            )
        items.append(w)
    s = min(len(w) for w in items)
    increment = np.stack(
        [_reduce(np.linalg.norm(w[:s, 1:] - w[:s, :-1], axis=(-2, -1)), reduce) for w in items],
        axis=1,
    )
    norm = np.stack([_reduce(np.linalg.norm(w[:s], axis=(-2, -1)), reduce) for w in items], axis=1)
    return _fit(np.asarray(sorted(weights_by_depth), dtype=np.float64), increment, norm)


def _fit(depth, increment, norm) -> DepthScalingResult:
    """The exponents: minus the slopes of log increment and log norm against log depth."""
    log_depth = np.log(depth)
    return DepthScalingResult(
        beta=-_slope(log_depth, _log(increment)),
        beta_norm=-_slope(log_depth, _log(norm)),
        depth=depth,
        increment=increment,
        norm=norm,
    )


def posterior_layer_weights(post, max_draws: int = 1000) -> np.ndarray:
    """Per-layer hidden weights ``W(t_l)`` of each draw, ``[S, L, w, w]`` (float64)."""
    check_int("max_draws", max_draws, minimum=1)
    coef = np.asarray(post.flat_samples()[sites.HIDDEN_WEIGHT], dtype=np.float64)  # [S, K, w, w]
    keep = np.unique(np.linspace(0, len(coef) - 1, min(len(coef), max_draws)).round().astype(int))
    phi = post.spec.basis.phi(post.spec.num_layers)  # [L, K]
    return bases.weights(phi, coef[keep], axis=1)  # NumPy in, NumPy float64 out


def posterior_depth_scaling(
    post, *, strides=None, reduce: str = "max", max_draws: int = 1000
) -> DepthScalingResult:
    """:func:`increment_scaling` of every posterior draw of one fit."""
    return increment_scaling(
        posterior_layer_weights(post, max_draws), strides=strides, reduce=reduce
    )


def posterior_depth_scaling_across(
    posts: Mapping, *, reduce: str = "max", max_draws: int = 1000
) -> DepthScalingResult:
    """:func:`across_depths` of fits of several depths (``{name: Posterior}`` or a list)."""
    values = list(posts.values()) if isinstance(posts, Mapping) else list(posts)
    by_depth = {p.spec.num_layers: posterior_layer_weights(p, max_draws) for p in values}
    if len(by_depth) != len(values):
        raise ValueError("`posts` must have one posterior per depth (distinct num_layers).")
    return across_depths(by_depth, reduce=reduce)


def scaling_bands(result: DepthScalingResult, level: float = 0.9) -> dict[str, np.ndarray]:
    """``{"beta", "beta_norm"}``: ``[lower, median, upper]`` over draws (central ``level``)."""
    level = check_number("level", level, low=0.0, high=1.0)
    probs = [(1 - level) / 2, 0.5, (1 + level) / 2]
    return {
        "beta": np.quantile(result.beta, probs),
        "beta_norm": np.quantile(result.beta_norm, probs),
    }
