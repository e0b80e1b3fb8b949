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

Weights act on row vectors (``h @ W``), so ``hidden_weight[k, i, j]`` connects unit ``i``
to unit ``j``.
"""

from __future__ import annotations

from dataclasses import dataclass

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
    "init_params",
    "apply",
    "num_params",
    "param_shapes",
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


def hidden_layer_params(params, spec: ResNetSpec, num_layers: int | None = None):
    """Per-layer hidden weights ``[L, width, width]`` and biases ``[L, width]``."""
    num_layers = _check_num_layers(spec, num_layers)
    weights = spec.basis.weights(params[sites.HIDDEN_WEIGHT], num_layers)
    biases = spec.basis.weights(params[sites.HIDDEN_BIAS], num_layers)
    return weights, biases


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
    num_layers = _check_num_layers(spec, num_layers)
    act = ACTIVATIONS[spec.activation]
    weights, biases = hidden_layer_params(params, spec, num_layers)  # [L, w, w], [L, w]
    h = act(x @ params[sites.INPUT_WEIGHT] + params[sites.INPUT_BIAS])  # [N, w]
    dt = 1.0 / num_layers

    if spec.scheme == "heun":
        # W and b at the right ends t_{l+1} = (l+1)Δt of the steps.
        phi_next = spec.basis.evaluate(np.arange(1, num_layers + 1) / num_layers)  # [L, K]
        weights = (weights, bases.weights(phi_next, jnp.asarray(params[sites.HIDDEN_WEIGHT])))
        biases = (biases, bases.weights(phi_next, jnp.asarray(params[sites.HIDDEN_BIAS])))

        def step(h, wb):
            (w, w_next), (b, b_next) = wb
            k1 = act(h @ w + b)
            k2 = act((h + dt * k1) @ w_next + b_next)
            return h + 0.5 * dt * (k1 + k2), None
    elif spec.residual:

        def step(h, wb):
            w, b = wb
            return h + dt * act(h @ w + b), None
    else:

        def step(h, wb):
            w, b = wb
            return act(h @ w + b), None

    if num_layers <= _UNROLL_MAX_LAYERS:
        for layer in range(num_layers):
            h, _ = step(h, jax.tree.map(lambda a, i=layer: a[i], (weights, biases)))
    else:
        h, _ = jax.lax.scan(step, h, (weights, biases))
    return h @ params[sites.OUTPUT_WEIGHT] + params[sites.OUTPUT_BIAS]  # [N, out]
