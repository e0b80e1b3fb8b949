"""The weight-parameterized ResNet forward pass (pure functions).

The network maps ``x [N, d]`` to ``[N, out]``:

    h_0     = σ(x W_in + b_in)                                  input layer, d → width
    h_{l+1} = h_l + Δt · σ(h_l W(t_l) + b(t_l)),  l = 0 … L−1   residual (Euler) steps
    y       = h_L W_out + b_out                                 linear output, width → out

with ``Δt = 1/L``, ``t_l = l Δt`` and ``W(t) = Σ_k Φ_k(t) C_k`` from the depth basis (see
:mod:`bayesresnet.bases`). Each residual update is one explicit-Euler step of the neural
ODE ``dh/dt = σ(h W(t) + b(t))`` on ``t ∈ [0, 1]``, so evaluating the same coefficients
with more layers converges (at first order in ``Δt``) to the ODE solution. With
``residual=False`` the update is ``h_{l+1} = σ(h_l W(t_l) + b(t_l))``: the MLP baseline
with the same parameter structure.

``scheme="heun"`` replaces each Euler step by Heun's (explicit trapezoidal) step

    h_{l+1} = h_l + Δt/2 · (F(t_l, h_l) + F(t_{l+1}, h_l + Δt F(t_l, h_l))),

``F(t, h) = σ(h W(t) + b(t))``, which converges to the ODE at second order; it needs
``W(t_{l+1})`` and is therefore defined for continuous bases only.

The code follows the same split as diffrax (a vector field apart from the solver that
steps it): :func:`layer_field` is the one hidden layer ``σ(h W + b)``, :func:`vector_field`
is ``F(t, h, params)`` with ``W(t)``, ``b(t)`` from the basis (:func:`hidden_weights`,
through :func:`bayesresnet.bases.weights`), and :func:`step` advances any such field by
``Δt`` (Euler or Heun) without knowing what it is. :func:`apply` scans the step over the
layers (:func:`scan_layers`), :func:`bayesresnet.stiffness.layer_jacobians`
differentiates the field at each layer's state, and :func:`bayesresnet.ode.solve` hands
:func:`vector_field` to diffrax.

Weights act on row vectors (``h @ W``), so ``hidden_weight[k, i, j]`` connects unit ``i``
to unit ``j``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from bayesresnet import bases, sites
from bayesresnet._validate import check_bool, check_choice, check_int
from bayesresnet.bases import Basis, ContinuousBasis, Monomial

__all__ = [
    "ACTIVATIONS",
    "SCHEMES",
    "ResNetSpec",
    "HiddenLayer",
    "init_params",
    "apply",
    "num_params",
    "param_shapes",
    "hidden_weights",
    "hidden_layer_params",
    "layer_field",
    "vector_field",
    "step",
    "input_layer",
    "output_layer",
    "scan_layers",
]

ACTIVATIONS = {
    "tanh": jnp.tanh,
    "relu": jax.nn.relu,
    "gelu": jax.nn.gelu,
    "softplus": jax.nn.softplus,
    "identity": lambda z: z,
}

#: Time-stepping schemes of the residual update.
SCHEMES = ("euler", "heun")

# Below this many layers the loop is unrolled at trace time (faster on CPU for small L);
# above it a single ``lax.scan`` keeps compile time flat in L.
_UNROLL_MAX_LAYERS = 8


@dataclass(frozen=True)
class ResNetSpec:
    """Architecture of a WP-ResNet.

    Args:
        in_features: number of inputs ``d``.
        out_features: number of outputs.
        width: hidden width.
        num_layers: number of residual layers ``L`` (``Δt = 1/L``).
        basis: depth basis of the hidden weights and biases (default cubic monomials).
        activation: one of ``tanh``, ``relu``, ``gelu``, ``softplus``, ``identity``.
        residual: ``True`` for the ResNet update, ``False`` for the MLP baseline.
        scheme: ``"euler"`` (the ResNet update) or ``"heun"`` (a second-order step of
            the same ODE; continuous bases and ``residual=True`` only).
    """

    in_features: int
    out_features: int
    width: int = 16
    num_layers: int = 20
    basis: Basis = Monomial(3)
    activation: str = "tanh"
    residual: bool = True
    scheme: str = "euler"

    def __post_init__(self):
        for name in ("in_features", "out_features", "width", "num_layers"):
            check_int(name, getattr(self, name), minimum=1)
        if not isinstance(self.basis, Basis):
            raise TypeError(
                f"`basis` must be a bayesresnet.bases.Basis (e.g. bases.Cubic()); "
                f"got {type(self.basis).__name__}."
            )
        check_choice("activation", self.activation, ACTIVATIONS)
        check_bool("residual", self.residual)
        check_choice("scheme", self.scheme, SCHEMES)
        if self.scheme == "heun" and not isinstance(self.basis, ContinuousBasis):
            raise ValueError(
                f'`scheme` "heun" needs W(t) at t_(l+1) between layers, but {self.basis!r} '
                'has one matrix per layer (per-layer basis); use scheme="euler" or a '
                "continuous basis (Cubic, Legendre, PiecewiseLinear, …)."
            )
        if self.scheme == "heun" and not self.residual:
            raise ValueError(
                '`scheme` "heun" is a step of the residual ODE; it does not apply to '
                'residual=False (the MLP baseline): use scheme="euler".'
            )

    @property
    def num_basis_functions(self) -> int:
        """Number ``K`` of coefficient matrices of the hidden layers."""
        return self.basis.num_functions(self.num_layers)


def param_shapes(spec: ResNetSpec) -> dict[str, tuple[int, ...]]:
    """Shape of every network parameter, keyed by its site name."""
    d, w, o, k = spec.in_features, spec.width, spec.out_features, spec.num_basis_functions
    return {
        sites.INPUT_WEIGHT: (d, w),
        sites.INPUT_BIAS: (w,),
        sites.HIDDEN_WEIGHT: (k, w, w),
        sites.HIDDEN_BIAS: (k, w),
        sites.OUTPUT_WEIGHT: (w, o),
        sites.OUTPUT_BIAS: (o,),
    }


def num_params(spec: ResNetSpec) -> int:
    """Total number of network parameters (weights and biases)."""
    return int(sum(np.prod(s) for s in param_shapes(spec).values()))


def init_params(key, spec: ResNetSpec, scale: float = 1.0) -> dict[str, jax.Array]:
    """Random parameters with fan-in scaling (``N(0, scale²/fan_in)`` weights, zero biases).

    Hidden coefficients are further multiplied by the basis' coefficient scale, so the
    per-layer weights have the same spread for every basis.
    """
    shapes = param_shapes(spec)
    keys = dict(zip(shapes, jax.random.split(key, len(shapes))))
    coef = spec.basis.coefficient_scale(spec.num_layers)
    fan_in = {
        sites.INPUT_WEIGHT: spec.in_features,
        sites.HIDDEN_WEIGHT: spec.width / coef**2,
        sites.OUTPUT_WEIGHT: spec.width,
    }
    params = {}
    for name, shape in shapes.items():
        if name in fan_in:
            params[name] = scale * jax.random.normal(keys[name], shape) / np.sqrt(fan_in[name])
        else:
            params[name] = jnp.zeros(shape)
    return params


class HiddenLayer(NamedTuple):
    """The vector field's parameters at one depth ``t`` (or a stack of depths).

    Attributes:
        weight: ``W(t)`` ``[..., width, width]``.
        bias: ``b(t)`` ``[..., width]``.
    """

    weight: jax.Array
    bias: jax.Array


def hidden_weights(params, spec: ResNetSpec, t) -> HiddenLayer:
    """``W(t) = Σ_k Φ_k(t) C_k`` and ``b(t)`` at depths ``t`` (continuous bases).

    Args:
        params: network parameters (:func:`param_shapes`).
        spec: the architecture; its basis must be a :class:`~bayesresnet.bases.ContinuousBasis`.
        t: NumPy depths ``[T]`` in ``[0, 1]`` (``Φ`` evaluated in float64, cast once), or one
            depth as a JAX scalar that may be traced (an ODE solver's time).

    Returns:
        A :class:`HiddenLayer` with a leading ``[T]`` axis, or none for a JAX scalar.
    """
    phi = spec.basis.evaluate_traced(t) if isinstance(t, jax.Array) else spec.basis.evaluate(t)
    return HiddenLayer(
        bases.weights(phi, jnp.asarray(params[sites.HIDDEN_WEIGHT])),
        bases.weights(phi, jnp.asarray(params[sites.HIDDEN_BIAS])),
    )


def hidden_layer_params(params, spec: ResNetSpec, num_layers: int | None = None) -> HiddenLayer:
    """Per-layer hidden weights ``[L, width, width]`` and biases ``[L, width]`` at ``t_l = l/L``.

    Defined for every basis (``PerLayer`` at its own depth only).
    """
    num_layers = _check_num_layers(spec, num_layers)
    return HiddenLayer(
        spec.basis.weights(params[sites.HIDDEN_WEIGHT], num_layers),
        spec.basis.weights(params[sites.HIDDEN_BIAS], num_layers),
    )


def _check_num_layers(spec: ResNetSpec, num_layers: int | None) -> int:
    if num_layers is None or num_layers == spec.num_layers:
        return spec.num_layers
    if not isinstance(spec.basis, ContinuousBasis):
        raise ValueError(
            f"`num_layers={num_layers}` differs from the spec's {spec.num_layers}, but "
            f"{spec.basis!r} has one matrix per layer and cannot be evaluated at another "
            "depth; use a continuous basis (Cubic, Legendre, PiecewiseLinear, …)."
        )
    return check_int("num_layers", num_layers, minimum=1)


def layer_field(spec: ResNetSpec):
    """The vector field at a depth whose parameters are given: ``f(h, layer)``.

    ``F(t, h; params) = f(h, θ(t))`` with ``θ(t) = (W(t), b(t))`` a :class:`HiddenLayer`:
    ``f(h, θ) = σ(h W + b)`` for hidden states ``h`` ``[..., width]``. The one place the
    hidden layer is written; it knows nothing of the time-stepping scheme.
    """
    act = ACTIVATIONS[spec.activation]

    def field(h, layer: HiddenLayer):
        return act(h @ layer.weight + layer.bias)

    return field


def vector_field(spec: ResNetSpec):
    """``F(t, h, params) = σ(h W(t) + b(t))``, with diffrax's signature ``(t, y, args)``.

    ``W(t)``, ``b(t)`` come from :func:`hidden_weights` at the (possibly traced) depth
    ``t``, so the field is defined at every ``t ∈ [0, 1]`` for a continuous basis; pass it
    to ``diffrax.ODETerm`` (see :func:`bayesresnet.ode.solve`).
    """
    field = layer_field(spec)

    def vf(t, h, params):
        return field(h, hidden_weights(params, spec, jnp.asarray(t)))

    return vf


def step(scheme: str):
    """One step ``h(t) → h(t + Δt)`` of ``dh/dt = F(t, h)`` by ``scheme``, for any field.

    ``"euler"``: ``h + Δt F(t, h)``; ``"heun"``: ``k₁ = F(t, h)``,
    ``k₂ = F(t + Δt, h + Δt k₁)``, ``h + Δt/2 (k₁ + k₂)``.

    Returns:
        ``update(field, h, dt, start, end)``: ``field(h, θ)`` as from :func:`layer_field`,
        ``start``/``end`` its parameters at ``t`` and ``t + Δt`` (``end`` is not read by
        Euler and may be ``None``).
    """
    check_choice("scheme", scheme, SCHEMES)

    if scheme == "euler":

        def euler(field, h, dt, start, end):
            return h + dt * field(h, start)

        return euler

    def heun(field, h, dt, start, end):
        k1 = field(h, start)
        k2 = field(h + dt * k1, end)
        return h + 0.5 * dt * (k1 + k2)

    return heun


def _replace(field, h, dt, start, end):
    """The MLP baseline's update ``h_{l+1} = F(t_l, h_l)`` (``residual=False``): no step."""
    return field(h, start)


def input_layer(params, x, spec: ResNetSpec):
    """``h(0) = σ(x W_in + b_in)`` ``[N, width]`` from inputs ``x`` ``[N, in_features]``."""
    act = ACTIVATIONS[spec.activation]
    return act(x @ params[sites.INPUT_WEIGHT] + params[sites.INPUT_BIAS])


def output_layer(params, h):
    """``y = h W_out + b_out`` ``[N, out_features]`` from the last hidden state ``h``."""
    return h @ params[sites.OUTPUT_WEIGHT] + params[sites.OUTPUT_BIAS]


def scan_layers(params, h, spec: ResNetSpec, num_layers: int | None = None, observe=None):
    """Advance the hidden state through the ``L`` layers: :func:`step` scanned over depth.

    Args:
        params: network parameters.
        h: the state entering the first layer ``[N, width]`` (:func:`input_layer`).
        spec: the architecture (its ``scheme`` and ``residual`` choose the update).
        num_layers: evaluate at another depth (continuous bases); default the spec's.
        observe: optional ``observe(h_l, θ_l)`` recorded at each layer ``l`` from the state
            entering it and the field's parameters there.

    Returns:
        ``(h_L, observations)``: the last state ``[N, width]`` and the observations stacked
        over layers (``None`` without ``observe``).
    """
    num_layers = _check_num_layers(spec, num_layers)
    field = layer_field(spec)
    update = step(spec.scheme) if spec.residual else _replace
    dt = 1.0 / num_layers
    start = hidden_layer_params(params, spec, num_layers)  # θ(t_l): [L, w, w], [L, w]
    end = None
    if spec.scheme == "heun":  # θ(t_{l+1}) at the right ends of the steps
        end = hidden_weights(params, spec, np.arange(1, num_layers + 1) / num_layers)

    def layer(h, ends):
        observed = None if observe is None else observe(h, ends[0])
        return update(field, h, dt, *ends), observed

    if num_layers > _UNROLL_MAX_LAYERS:
        return jax.lax.scan(layer, h, (start, end))
    observed = []
    for index in range(num_layers):
        h, obs = layer(h, jax.tree.map(lambda a, i=index: a[i], (start, end)))
        observed.append(obs)
    return h, None if observe is None else jax.tree.map(lambda *a: jnp.stack(a), *observed)


def apply(params, x, spec: ResNetSpec, num_layers: int | None = None):
    """Evaluate the network.

    Args:
        params: dict of arrays with the shapes of :func:`param_shapes`.
        x: inputs ``[N, in_features]``.
        spec: the architecture.
        num_layers: evaluate the same coefficients with this many layers (depth
            transfer); default ``spec.num_layers``. Refused for ``PerLayer``.

    Returns:
        Outputs ``[N, out_features]``.
    """
    h, _ = scan_layers(params, input_layer(params, x, spec), spec, num_layers)  # [N, w]
    return output_layer(params, h)  # [N, out]
