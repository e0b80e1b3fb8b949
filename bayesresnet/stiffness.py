"""Stiffness of the learned dynamics: a diagnostic on posterior draws, and a penalty.

Layer ``l`` of a WP-ResNet is the explicit-Euler step ``h_{l+1} = h_l + Δt F(t_l, h_l)``
of the neural ODE ``dh/dt = F(t, h) = σ(h W(t) + b(t))``. Linearized at the hidden
state ``h_l`` that enters the layer, the vector field has the Jacobian

    J_l(x) = diag(σ'(z_l)) W(t_l)ᵀ,   z_l = h_l W(t_l) + b(t_l)     (column convention)

(the row-vector code computes ``W(t_l) diag(σ'(z_l))``, its transpose: the same
eigenvalues), and the residual map ``h ↦ Δt F(t_l, h)`` has the Jacobian ``Δt J_l``.
For every layer and every training input, :func:`stiffness` returns

* the eigenvalues ``μ_i`` of ``J_l`` (those of the residual map are ``Δt μ_i``);
* the **stiffness ratio** ``max_i |Re μ_i| / max(min_i |Re μ_i|, floor)``: large when
  the linearized dynamics mix fast and slow modes, which forces an explicit solver to
  small steps. The floor is ``max(rel_floor · max_i |Re μ_i|, abs_floor)`` (defaults
  ``1e-6`` and ``1e-12``): an eigenvalue with a zero real part (a saturated tanh unit, a
  dead ReLU) would make the ratio infinite, so the ratio is capped at ``1/rel_floor``;
  with every real part zero it is 1;
* the **stability indicator** ``max_i |R(Δt μ_i)|``, the amplification factor of the
  step on the linearization: ``R(z) = 1 + z`` for the Euler update and
  ``R(z) = 1 + z + z²/2`` for ``scheme="heun"``. At most 1: the step is stable for the
  local linearization; above 1: it amplifies perturbations along some direction.

:func:`stiffness` is traceable (``jax.jit`` it, ``jax.vmap`` it over posterior draws);
:func:`posterior_stiffness` does that over the draws of a
:class:`~bayesresnet.posterior.Posterior` and :func:`stiffness_bands` gives the median
and 5–95 % band over draws per layer (plotted by
:func:`bayesresnet.ode_plots.plot_stiffness`, a figure of the run report).

The penalty
-----------
``PriorSpec(stiffness_penalty=λ)`` adds ``numpyro.factor(-λ Σ_n (1/L) Σ_l m(J_l(x_n)))``
to the model (sum over the training inputs, mean over layers), so NUTS, MCLMC, SVI and
the ensembles all see it; ``λ`` has the units of a per-observation log-likelihood. The
eigenvalues of a nonsymmetric matrix have no derivative in JAX on the CPU
(``jnp.linalg.eig`` has no JVP) and are ill-conditioned where eigenvalues meet, so the
penalized measure is a smooth bound on the spectral spread (:func:`penalty_measure`):

    m(J) = ‖J − (tr J / w) I‖_F² = ‖J‖_F² − (tr J)²/w  ≥  Σ_i |μ_i − μ̄|²  ≥  Σ_i (Re μ_i − Re μ̄)²,

``μ̄ = tr J / w`` the mean eigenvalue (Schur's inequality; equality for a normal ``J``).
It is zero exactly when ``J = c I`` (every mode at the same rate, ratio 1) and grows
with the spread of the spectrum, which is what makes a vector field stiff, while it
leaves a common rate ``c`` (a uniform contraction or expansion the data may need)
unpenalized. The stiffness ratio itself is measured, not penalized.

What the published work found: stiffness and Jacobian regularization of neural ODEs
(Finlay et al. 2020; Kelly et al. 2020; Pal et al. 2021; Ghosh et al. 2020) make the
learned dynamics smoother and cheaper to solve (fewer adaptive steps), but did not
improve predictive accuracy over plain L2 weight decay; the regularizer trades a little
fit for easier dynamics. Here the prior on the coefficients is the L2 baseline, and
``benchmarks/stiffness_penalty.py`` measures what the penalty does to held-out RMSE,
CRPS and coverage.

References:
    Finlay, Jacobsen, Nurbekyan, Oberman (2020), How to train your neural ODE: the
    world of Jacobian and kinetic regularization. ICML.
    Kelly, Bettencourt, Johnson, Duvenaud (2020), Learning differential equations that
    are easy to solve. NeurIPS.
    Pal, Ma, Shah, Rackauckas (2021), Opening the blackbox: accelerating neural
    differential equations by regularizing internal solver heuristics. ICML.
    Ghosh, Behl, Dupont, Torr, Namboodiri (2020), STEER: simple temporal regularization
    for neural ODEs. NeurIPS.
    Hairer, Wanner (1996), Solving ordinary differential equations II: stiff and
    differential-algebraic problems. Springer. (Stiffness ratio, stability functions.)
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesresnet import sites
from bayesresnet._validate import check_int, check_number
from bayesresnet.bases import layer_times
from bayesresnet.resnet import ResNetSpec, input_layer, layer_field, scan_layers

__all__ = [
    "REL_FLOOR",
    "ABS_FLOOR",
    "StiffnessResult",
    "StiffnessBands",
    "layer_jacobians",
    "stiffness",
    "stiffness_ratio",
    "stability_indicator",
    "penalty_measure",
    "stiffness_penalty",
    "posterior_stiffness",
    "stiffness_bands",
]

#: Floor of the smallest real-part magnitude, relative to the largest (caps the ratio).
REL_FLOOR = 1e-6
#: Absolute floor of the real-part magnitudes (a Jacobian that is exactly zero).
ABS_FLOOR = 1e-12


class StiffnessResult(NamedTuple):
    """Stiffness of one network (leading draw axes when vmapped).

    Attributes:
        t: depths ``t_l = l/L`` of the layers ``[L]``.
        eigenvalues: eigenvalues ``μ`` of the vector-field Jacobian ``J_l(x_n)``
            ``[L, N, w]`` (complex); the residual map's are ``Δt μ``.
        ratio: stiffness ratio ``[L, N]``.
        stability: stability indicator ``max_i |R(Δt μ_i)|`` ``[L, N]``.
    """

    t: jax.Array
    eigenvalues: jax.Array
    ratio: jax.Array
    stability: jax.Array


class StiffnessBands(NamedTuple):
    """Posterior bands per layer of the input-median ratio and stability indicator.

    Each array is ``[3, L]``: the 5 % quantile, the median and the 95 % quantile over draws
    of the per-draw median over inputs.
    """

    t: np.ndarray
    ratio: np.ndarray
    stability: np.ndarray


def layer_jacobians(params, x, spec: ResNetSpec, num_layers: int | None = None):
    """Vector-field Jacobians ``J_l(x_n) = diag(σ'(z_l)) W(t_l)ᵀ`` at every layer and input.

    The hidden states ``h_l`` entering each layer are those of the network's own update
    (:func:`bayesresnet.resnet.scan_layers`, ``spec.scheme``); the Jacobian is that of
    ``F(t_l, ·)`` (:func:`bayesresnet.resnet.layer_field`) at ``h_l``, by ``jax.jacfwd``.

    Args:
        params: network parameters (:func:`bayesresnet.resnet.param_shapes`).
        x: inputs ``[N, d]`` in standardized units (as for ``apply``).
        spec: the architecture.
        num_layers: evaluate at another depth (continuous bases); default the spec's.

    Returns:
        ``[L, N, w, w]`` Jacobians in the column convention (``J[l, n] @ v`` is the
        derivative of ``F`` along the column vector ``v``).
    """
    field = layer_field(spec)

    def jacobians(h, layer):  # [N, w] → [N, w, w]: J[n, i, j] = ∂F_i/∂h_j at h[n]
        return jax.vmap(jax.jacfwd(field), in_axes=(0, None))(h, layer)

    h0 = input_layer(params, x, spec)  # [N, w]
    _, jacs = scan_layers(params, h0, spec, num_layers, observe=jacobians)
    return jacs  # [L, N, w, w]


def stiffness_ratio(eigenvalues, *, rel_floor: float = REL_FLOOR, abs_floor: float = ABS_FLOOR):
    """``max_i |Re μ_i| / max(min_i |Re μ_i|, rel_floor · max_i |Re μ_i|, abs_floor)``.

    Args:
        eigenvalues: ``[..., w]`` (complex or real).
        rel_floor, abs_floor: the floors of the denominator (see the module docstring).

    Returns:
        ``[...]`` ratios in ``[1, 1/rel_floor]``.
    """
    re = jnp.abs(jnp.real(eigenvalues))
    top = jnp.maximum(jnp.max(re, axis=-1), abs_floor)
    bottom = jnp.maximum(jnp.min(re, axis=-1), jnp.maximum(rel_floor * top, abs_floor))
    return top / bottom


def stability_indicator(eigenvalues, dt: float, scheme: str = "euler"):
    """``max_i |R(Δt μ_i)|``: ``R(z) = 1 + z`` (Euler) or ``1 + z + z²/2`` (Heun)."""
    z = dt * eigenvalues
    amplification = 1.0 + z if scheme == "euler" else 1.0 + z + 0.5 * z**2
    return jnp.max(jnp.abs(amplification), axis=-1)


def stiffness(
    params,
    x,
    spec: ResNetSpec,
    num_layers: int | None = None,
    *,
    rel_floor: float = REL_FLOOR,
    abs_floor: float = ABS_FLOOR,
) -> StiffnessResult:
    """Eigenvalues, stiffness ratio and stability indicator at every layer and input.

    Traceable; vmap it over posterior draws. The eigenvalues come from
    ``jnp.linalg.eig`` (LAPACK ``geev``), which has no derivative: this is a diagnostic,
    the penalty uses :func:`penalty_measure`.

    Args:
        params: network parameters.
        x: inputs ``[N, d]`` in standardized units.
        spec: the architecture (the ``Δt`` and the stability function follow its depth
            and ``scheme``).
        num_layers: evaluate at another depth (continuous bases); default the spec's.
        rel_floor, abs_floor: floors of the ratio's denominator.

    Returns:
        A :class:`StiffnessResult`.
    """
    jacs = layer_jacobians(params, x, spec, num_layers)  # [L, N, w, w]
    num = jacs.shape[0]
    eig = jnp.linalg.eig(jacs)[0]  # [L, N, w]
    scheme = spec.scheme if spec.residual else "euler"
    return StiffnessResult(
        t=jnp.arange(num) / num,
        eigenvalues=eig,
        ratio=stiffness_ratio(eig, rel_floor=rel_floor, abs_floor=abs_floor),
        stability=stability_indicator(eig, 1.0 / num, scheme),
    )


def penalty_measure(jacobians):
    """``m(J) = ‖J − (tr J/w) I‖_F² = ‖J‖_F² − (tr J)²/w`` per matrix (differentiable).

    An upper bound of the squared spectral spread ``Σ_i |μ_i − μ̄|²`` (see the module
    docstring); zero exactly for ``J = c I``.

    Args:
        jacobians: ``[..., w, w]``.

    Returns:
        ``[...]``.
    """
    w = jacobians.shape[-1]
    trace = jnp.trace(jacobians, axis1=-2, axis2=-1)
    return jnp.sum(jacobians**2, axis=(-2, -1)) - trace**2 / w


def stiffness_penalty(params, x, spec: ResNetSpec):
    """``Σ_n (1/L) Σ_l m(J_l(x_n))``: what ``PriorSpec(stiffness_penalty=λ)`` multiplies by −λ.

    Args:
        params: network parameters.
        x: inputs ``[N, d]`` (standardized units; the model passes the training inputs).
        spec: the architecture.

    Returns:
        A scalar.
    """
    return jnp.sum(jnp.mean(penalty_measure(layer_jacobians(params, x, spec)), axis=0))


def _network_draws(post) -> dict[str, np.ndarray]:
    return {k: v for k, v in post.flat_samples().items() if k in sites.NETWORK}


def posterior_stiffness(
    post, x=None, *, num_points: int = 256, max_draws: int = 200, seed: int = 0
) -> StiffnessResult:
    """:func:`stiffness` of every posterior draw, vmapped: arrays with a leading ``[S]``.

    Args:
        post: a :class:`~bayesresnet.posterior.Posterior`.
        x: inputs ``[N, d]`` in raw units; default the training inputs.
        num_points: at most this many inputs (a fixed random subset beyond that).
        max_draws: at most this many draws (evenly thinned beyond that).
        seed: seed of the input subset.

    Returns:
        A :class:`StiffnessResult` with NumPy arrays ``[S, L, N, …]`` (``t`` is ``[L]``).
    """
    check_int("num_points", num_points, minimum=1)
    check_int("max_draws", max_draws, minimum=1)
    x = post.x_train if x is None else post._check_x(x)
    if len(x) > num_points:
        x = x[np.sort(np.random.default_rng(seed).choice(len(x), num_points, replace=False))]
    xs = jnp.asarray(post.scaler.transform_x(x), dtype=jnp.float32)
    draws = _network_draws(post)
    s = post.num_samples
    keep = np.unique(np.linspace(0, s - 1, min(s, max_draws)).round().astype(int))
    draws = {k: jnp.asarray(v[keep], dtype=jnp.float32) for k, v in draws.items()}
    spec = post.spec
    result = jax.jit(jax.vmap(lambda p: stiffness(p, xs, spec)))(draws)
    return StiffnessResult(
        t=layer_times(spec.num_layers),
        eigenvalues=np.asarray(result.eigenvalues),
        ratio=np.asarray(result.ratio),
        stability=np.asarray(result.stability),
    )


def stiffness_bands(result: StiffnessResult, level: float = 0.9) -> StiffnessBands:
    """Median and central ``level`` band over draws of the input-median per layer.

    Args:
        result: from :func:`posterior_stiffness` (arrays ``[S, L, N]``).
        level: band level (default 0.9: the 5–95 % band).

    Returns:
        A :class:`StiffnessBands` (each array ``[3, L]``: lower, median, upper).
    """
    level = check_number("level", level, low=0.0, high=1.0)
    ratio = np.asarray(result.ratio)
    if ratio.ndim != 3:
        raise ValueError(
            f"`result` must hold draws [S, L, N] (from posterior_stiffness); got ratio shape "
            f"{ratio.shape}."
        )
    probs = [(1 - level) / 2, 0.5, (1 + level) / 2]

    def band(values):
        return np.quantile(np.median(values, axis=2), probs, axis=0)  # [3, L]

    return StiffnessBands(np.asarray(result.t), band(ratio), band(np.asarray(result.stability)))
