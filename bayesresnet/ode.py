"""The neural-ODE link: the continuous-depth limit of a WP-ResNet, solved with diffrax.

A WP-ResNet's residual update ``h_{l+1} = h_l + Δt σ(h_l W(t_l) + b(t_l))`` is one
explicit-Euler step of the neural ODE

    dh/dt = F(t, h) = σ(h W(t) + b(t)),   t ∈ [0, 1],   h(0) = σ(x W_in + b_in),

with output ``y = h(1) W_out + b_out``. With a continuous depth basis the coefficients
``C_k`` define ``W(t) = Σ_k Φ_k(t) C_k`` for every ``t``, so the same parameters define
the ODE, and the ``L``-layer network converges to its solution at first order in
``Δt = 1/L`` (second order with ``ResNetSpec(scheme="heun")``). :func:`solve` integrates
the ODE with an adaptive (or fixed-step) diffrax solver; :func:`gradient_gap` compares
the two ways of differentiating a loss: backpropagation through the ``L`` discrete
layers ("discretize-then-optimize") and the continuous adjoint of the ODE
("optimize-then-discretize", :class:`diffrax.BacksolveAdjoint`).

Everything works in the standardized units of :func:`bayesresnet.resnet.apply` and is
traceable: jit it, vmap it over posterior draws.

References:
    Chen, Rubanova, Bettencourt, Duvenaud (2018), Neural ordinary differential
    equations. NeurIPS.
    Gholami, Keutzer, Biros (2019), ANODE: unconditionally accurate memory-efficient
    gradients for neural ODEs. IJCAI. (The discretize-then-optimize vs
    optimize-then-discretize gap.)
    Kidger (2021), On neural differential equations. PhD thesis, Oxford.
"""

from __future__ import annotations

import diffrax
import jax
import jax.numpy as jnp

from bayesresnet import sites
from bayesresnet._validate import check_int, check_number
from bayesresnet.bases import ContinuousBasis
from bayesresnet.resnet import ResNetSpec, apply, input_layer, output_layer, vector_field

__all__ = [
    "SOLVERS",
    "FIXED_STEP_SOLVERS",
    "check_ode_spec",
    "solve",
    "adjoint_forward",
    "squared_error",
    "backprop_gradient",
    "adjoint_gradient",
    "relative_difference",
    "gradient_gap",
]

#: Solver names accepted by :func:`solve` → diffrax solver class.
SOLVERS = {
    "euler": diffrax.Euler,
    "heun": diffrax.Heun,
    "midpoint": diffrax.Midpoint,
    "tsit5": diffrax.Tsit5,
    "dopri5": diffrax.Dopri5,
    "dopri8": diffrax.Dopri8,
    "kvaerno5": diffrax.Kvaerno5,
}
#: Solvers without an error estimate: they take ``num_steps`` uniform steps.
FIXED_STEP_SOLVERS = ("euler", "heun", "midpoint")

_DEFAULT_FIXED_STEPS = 1024
_MAX_STEPS = 16384


def check_ode_spec(spec: ResNetSpec) -> ResNetSpec:
    """Refuses a spec that has no continuous-depth limit (per-layer basis, MLP baseline)."""
    if not isinstance(spec, ResNetSpec):
        raise TypeError(f"`spec` must be a ResNetSpec; got {type(spec).__name__}.")
    if not isinstance(spec.basis, ContinuousBasis):
        raise ValueError(
            f"the neural-ODE limit needs W(t) at every depth t, but {spec.basis!r} has one "
            "matrix per integer layer (per-layer basis); use a continuous basis (Cubic, "
            "Legendre, PiecewiseLinear, …)."
        )
    if not spec.residual:
        raise ValueError(
            "the neural-ODE limit exists only for the residual update "
            "h + Δt σ(h W + b); the spec has residual=False (the MLP baseline)."
        )
    return spec


def _check_solver(solver: str) -> str:
    if not isinstance(solver, str) or solver not in SOLVERS:
        raise ValueError(f"`solver` must be one of {list(SOLVERS)}; got {solver!r}.")
    return solver


def solve(
    params,
    x,
    spec: ResNetSpec,
    *,
    solver: str = "tsit5",
    rtol: float = 1e-6,
    atol: float = 1e-8,
    adjoint: diffrax.AbstractAdjoint | None = None,
    num_steps: int | None = None,
):
    """Outputs of the neural ODE with the network's coefficients (the ``L → ∞`` limit).

    ``h(0) = σ(x W_in + b_in)``, ``dh/dt = σ(h W(t) + b(t))`` on ``[0, 1]``,
    ``y = h(1) W_out + b_out``, with ``W(t) = Σ_k Φ_k(t) C_k`` from the basis.

    Args:
        params: dict of arrays with the shapes of :func:`bayesresnet.resnet.param_shapes`.
        x: inputs ``[N, in_features]`` (standardized units, as for ``apply``).
        spec: the architecture; needs a continuous basis and ``residual=True``.
        solver: one of :data:`SOLVERS`; adaptive solvers use a PID step-size controller
            with ``rtol``/``atol``, the fixed-step ones (:data:`FIXED_STEP_SOLVERS`)
            ``num_steps`` uniform steps.
        rtol, atol: relative and absolute tolerances (> 0) of adaptive solvers.
        adjoint: how to differentiate through the solve; default diffrax's
            ``RecursiveCheckpointAdjoint`` (backpropagation through the solver's steps);
            ``diffrax.BacksolveAdjoint()`` for the continuous adjoint.
        num_steps: steps of a fixed-step solver (default 1024); ignored otherwise.

    Returns:
        Outputs ``[N, out_features]``.

    Raises:
        ValueError: per-layer basis, ``residual=False``, an unknown solver, non-positive
            tolerances.
    """
    check_ode_spec(spec)
    _check_solver(solver)
    rtol = check_number("rtol", rtol, low=0.0)
    atol = check_number("atol", atol, low=0.0)
    if adjoint is not None and not isinstance(adjoint, diffrax.AbstractAdjoint):
        raise TypeError(
            f"`adjoint` must be a diffrax adjoint (e.g. diffrax.BacksolveAdjoint()); got "
            f"{type(adjoint).__name__}."
        )
    h0 = input_layer(params, x, spec)  # [N, w]
    if solver in FIXED_STEP_SOLVERS:
        steps = _DEFAULT_FIXED_STEPS if num_steps is None else num_steps
        steps = check_int("num_steps", steps, minimum=1)
        control = {"stepsize_controller": diffrax.ConstantStepSize(), "dt0": 1.0 / steps}
        max_steps = steps
    else:
        control = {"stepsize_controller": diffrax.PIDController(rtol=rtol, atol=atol), "dt0": None}
        max_steps = _MAX_STEPS
    solution = diffrax.diffeqsolve(
        diffrax.ODETerm(vector_field(spec)),
        SOLVERS[solver](),
        t0=0.0,
        t1=1.0,
        y0=h0,
        args=params,
        saveat=diffrax.SaveAt(t1=True),
        adjoint=diffrax.RecursiveCheckpointAdjoint() if adjoint is None else adjoint,
        max_steps=max_steps,
        **control,
    )
    return output_layer(params, solution.ys[-1])  # [N, out]


def adjoint_forward(params, x, spec: ResNetSpec):
    """``solve`` differentiated by the continuous adjoint (a forward for the model).

    The signature of :func:`bayesresnet.resnet.apply`, so the NumPyro model can use it
    in its place (``EnsembleConfig(gradient="adjoint")``).
    """
    return solve(params, x, spec, rtol=1e-5, atol=1e-6, adjoint=diffrax.BacksolveAdjoint())


def squared_error(forward, params, x, y, spec: ResNetSpec):
    """``½ Σ (forward(params, x, spec) − y)²``: the loss whose gradients are compared."""
    return 0.5 * jnp.sum((forward(params, x, spec) - y) ** 2)


def _flat(tree) -> jax.Array:
    return jnp.concatenate([jnp.ravel(tree[k]) for k in sites.NETWORK])


def backprop_gradient(params, x, y, spec: ResNetSpec, num_layers: int):
    """Gradient of ``½ Σ (f − y)²`` through the ``L``-layer network (discretize-then-optimize)."""
    num_layers = check_int("num_layers", num_layers, minimum=1)

    def discrete(p, xx, s):
        return apply(p, xx, s, num_layers=num_layers)

    return jax.grad(lambda p: squared_error(discrete, p, x, y, spec))(params)


def adjoint_gradient(params, x, y, spec: ResNetSpec, *, rtol: float = 1e-8, atol: float = 1e-10):
    """Gradient of ``½ Σ (f − y)²`` of the ODE by the continuous adjoint (BacksolveAdjoint).

    The adjoint ODE is solved backwards from ``t = 1`` with the same adaptive solver
    (optimize-then-discretize); tight default tolerances make it the continuous gradient.
    """
    check_ode_spec(spec)

    def continuous(p, xx, s):
        return solve(p, xx, s, rtol=rtol, atol=atol, adjoint=diffrax.BacksolveAdjoint())

    return jax.grad(lambda p: squared_error(continuous, p, x, y, spec))(params)


def relative_difference(grad, reference) -> jax.Array:
    """``‖grad − reference‖ / ‖reference‖`` over all network parameters."""
    return jnp.linalg.norm(_flat(grad) - _flat(reference)) / jnp.linalg.norm(_flat(reference))


def gradient_gap(params, x, y, spec: ResNetSpec, num_layers: int):
    """Relative gap between the backprop gradient of the L-layer net and the ODE adjoint.

    ``‖∇_bp − ∇_adj‖ / ‖∇_adj‖`` over all network parameters, for the loss
    ``½ Σ (f(x) − y)²``: ``∇_bp`` differentiates ``apply(..., num_layers=L)`` exactly
    (:func:`backprop_gradient`, discretize-then-optimize); ``∇_adj`` is the gradient of
    the ODE solution by :class:`diffrax.BacksolveAdjoint` (:func:`adjoint_gradient`,
    optimize-then-discretize). In the linear case ``σ = id``, ``W(t) ≡ W``, ``b ≡ 0`` the
    former carries the factors ``(I + ΔtW)^{L−1}`` where the latter carries the
    exponential form ``∫₀¹ exp(sWᵀ) M exp((1−s)Wᵀ) ds``, so the gap is ``O(1/L)``.

    Args:
        params: network parameters.
        x: inputs ``[N, d]``, y: targets ``[N, out]`` (standardized units).
        spec: a continuous-basis residual spec.
        num_layers: depth ``L`` of the discrete network.

    Returns:
        The relative gap (a scalar).
    """
    check_ode_spec(spec)
    g_bp = backprop_gradient(params, x, y, spec, num_layers)
    return relative_difference(g_bp, adjoint_gradient(params, x, y, spec))
