"""Figures of the neural-ODE link: stiffness over depth, depth scaling, convergence in depth.

As :mod:`bayesresnet.plots`: matplotlib's object API, arrays (or results of
:mod:`bayesresnet.stiffness` and :mod:`bayesresnet.depth_scaling`) in, a
:class:`~matplotlib.figure.Figure` out, every band the median and a central band over
posterior draws.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from matplotlib.figure import Figure

from bayesresnet._validate import check_number
from bayesresnet.depth_scaling import DepthScalingResult, scaling_bands
from bayesresnet.stiffness import StiffnessResult, stiffness_bands

__all__ = [
    "plot_stiffness",
    "plot_depth_scaling",
    "plot_depth_convergence",
    "plot_gradient_gap",
]

_FIGSIZE = (6.4, 4.8)


def _figure(figsize=_FIGSIZE) -> Figure:
    return Figure(figsize=figsize, layout="constrained")


def _band(values: np.ndarray, level: float) -> np.ndarray:
    """``[3, J]``: lower, median, upper over the first axis."""
    return np.quantile(values, [(1 - level) / 2, 0.5, (1 + level) / 2], axis=0)


def _check_draws(values, name: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"`{name}` must have shape [S, J] (draws × depths); got {arr.shape}.")
    return arr


def plot_stiffness(result: StiffnessResult, *, level: float = 0.9) -> Figure:
    """Stiffness ratio (top) and stability indicator (bottom) against depth ``t_l``.

    Per draw, the median over the inputs of each layer; the lines are the posterior
    median and the bands the central ``level`` band over draws (5–95 % by default).

    Args:
        result: :func:`bayesresnet.stiffness.posterior_stiffness` (arrays ``[S, L, N]``).
        level: band level in (0, 1).
    """
    if not isinstance(result, StiffnessResult):
        raise TypeError(
            f"`result` must be a StiffnessResult (from posterior_stiffness); got "
            f"{type(result).__name__}."
        )
    level = check_number("level", level, low=0.0, high=1.0)
    bands = stiffness_bands(result, level)
    fig = _figure()
    top, bottom = fig.subplots(2, 1, sharex=True)
    label = f"median over draws, {level:.0%} band"
    for ax, band, color in ((top, bands.ratio, "C0"), (bottom, bands.stability, "C3")):
        ax.fill_between(bands.t, band[0], band[2], color=color, alpha=0.25, linewidth=0)
        ax.plot(bands.t, band[1], "o-", color=color, linewidth=1.6, markersize=3, label=label)
    top.set_yscale("log")
    top.set_ylabel("stiffness ratio\nmax|Re μ| / min|Re μ|")
    bottom.axhline(1.0, color="k", linestyle=":", linewidth=1, label="stability limit 1")
    bottom.set_ylabel("stability indicator\nmax |R(Δt μ)|")
    bottom.set_xlabel("depth t of the layer (median over training inputs per draw)")
    top.legend(fontsize="x-small", loc="best")
    bottom.legend(fontsize="x-small", loc="best")
    fig.suptitle("stiffness of the learned dynamics over depth", fontsize="medium")
    return fig


def plot_depth_scaling(results: Mapping[str, DepthScalingResult], *, level: float = 0.9) -> Figure:
    """Increment norm against (effective) depth, log-log, one band per fit.

    Reference slopes −1 (smooth: the ODE regime, β = 1), −1/2 (random-walk increments,
    β = 1/2) and 0 (independent layers, β = 0) are drawn through the first fit's median
    at the smallest depth; the legend gives each fit's β (median and band over draws).

    Args:
        results: ``{name: DepthScalingResult}`` (from :mod:`bayesresnet.depth_scaling`).
        level: band level in (0, 1).
    """
    if not isinstance(results, Mapping) or not results:
        raise ValueError("`results` must be a non-empty mapping of name → DepthScalingResult.")
    level = check_number("level", level, low=0.0, high=1.0)
    fig = _figure()
    ax = fig.subplots()
    anchor = None
    for k, (name, res) in enumerate(results.items()):
        if not isinstance(res, DepthScalingResult):
            raise TypeError(f"`results[{name!r}]` must be a DepthScalingResult.")
        order = np.argsort(res.depth)
        depth = res.depth[order]
        band = _band(res.increment[:, order], level)
        beta = scaling_bands(res, level)["beta"]
        color = f"C{k % 10}"
        ax.fill_between(depth, band[0], band[2], color=color, alpha=0.2, linewidth=0)
        ax.plot(
            depth,
            band[1],
            "o-",
            color=color,
            label=f"{name}: β = {beta[1]:.2f} [{beta[0]:.2f}, {beta[2]:.2f}]",
        )
        if anchor is None:
            anchor = (depth, band[1][0])
    depth, start = anchor
    for slope, style, text in (
        (1.0, "--", "β = 1 (ODE)"),
        (0.5, "-.", "β = ½"),
        (0.0, ":", "β = 0"),
    ):
        ax.plot(depth, start * (depth / depth[0]) ** -slope, "k" + style, linewidth=1, label=text)
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("(effective) depth L")
    ax.set_ylabel("max_l ‖W_{l+1} − W_l‖_F")
    ax.set_title(f"depth scaling of the weight increments (median, {level:.0%} band)")
    ax.legend(fontsize="x-small", loc="best")
    return fig


def plot_depth_convergence(depths, errors: Mapping[str, np.ndarray], *, level: float = 0.9):
    """Relative distance to the ODE solution against the number of layers M, log-log.

    Args:
        depths: the depths ``M`` ``[J]``.
        errors: ``{label: [S, J]}`` relative errors per draw (e.g. Euler and Heun).
        level: band level in (0, 1).
    """
    depths = np.asarray(depths, dtype=np.float64)
    level = check_number("level", level, low=0.0, high=1.0)
    fig = _figure()
    ax = fig.subplots()
    for k, (name, err) in enumerate(errors.items()):
        band = _band(_check_draws(err, f"errors[{name!r}]"), level)
        slope = np.polyfit(np.log(depths), np.log(band[1]), 1)[0]
        color = f"C{k % 10}"
        ax.fill_between(depths, band[0], band[2], color=color, alpha=0.2, linewidth=0)
        ax.plot(depths, band[1], "o-", color=color, label=f"{name} (slope {slope:.2f})")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of layers M (Δt = 1/M)")
    ax.set_ylabel("‖f_M − f_ODE‖ / ‖f_ODE‖")
    ax.set_title(f"M-layer network against the ODE (median, {level:.0%} band)")
    ax.legend(fontsize="x-small", loc="best")
    return fig


def plot_gradient_gap(depths, gaps, *, level: float = 0.9) -> Figure:
    """Relative gap between backprop and adjoint gradients against depth L, log-log.

    Args:
        depths: the depths ``L`` ``[J]``.
        gaps: :func:`bayesresnet.ode.gradient_gap` per draw and depth ``[S, J]``.
        level: band level in (0, 1).
    """
    depths = np.asarray(depths, dtype=np.float64)
    level = check_number("level", level, low=0.0, high=1.0)
    band = _band(_check_draws(gaps, "gaps"), level)
    fig = _figure()
    ax = fig.subplots()
    ax.fill_between(depths, band[0], band[2], color="C2", alpha=0.2, linewidth=0)
    ax.plot(depths, band[1], "o-", color="C2", label="median over draws")
    ax.plot(depths, band[1][0] * depths[0] / depths, "k--", linewidth=1, label="∝ 1/L")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("number of layers L")
    ax.set_ylabel("‖∇_backprop − ∇_adjoint‖ / ‖∇_adjoint‖")
    ax.set_title("discretize-then-optimize against optimize-then-discretize")
    ax.legend(fontsize="x-small", loc="best")
    return fig
