"""Depth bases for weight-parameterized residual networks.

A WP-ResNet layer at depth ``t`` uses weights ``W(t) = Σ_k Φ_k(t) C_k``: a fixed set of
``K`` basis functions of depth, ``Φ_k``, and ``K`` learned coefficient arrays ``C_k``.
Depth runs over ``t ∈ [0, 1]``; layer ``l = 0 … L−1`` sits at ``t_l = l·Δt`` with
``Δt = 1/L`` (the left end of its Euler step).

Every basis supplies only its design matrix ``Φ`` (layers × K); the abstract
:class:`Basis` turns coefficients into per-layer weights with one ``tensordot`` for
all layers at once.

Prior scaling
-------------
For a fair comparison of parameterizations the prior on ``W(t)`` should not depend on
the basis. With independent coefficients ``C_k ~ N(0, s²)`` the prior variance of an
entry of ``W(t_l)`` is ``s² Σ_k Φ_k(t_l)²``. Each basis therefore reports
:meth:`Basis.coefficient_scale` ``s = 1 / sqrt(mean_l Σ_k Φ_k(t_l)²)``, and the model
multiplies it into every coefficient's prior scale, so that **the layer-averaged prior
variance of each entry of W(t) equals the user's prior scale squared, for every basis
and degree**. Per basis this gives:

* ``PerLayer``: ``Φ = I``, so ``s = 1``: each layer's matrix has the full prior scale.
* ``Constant``: ``s = 1``.
* ``Monomial(p)``: ``s ≈ 1/sqrt(Σ_{k≤p} 1/(2k+1))`` (the grid mean of ``t^{2k}`` tends to
  ``1/(2k+1)``); e.g. ``s ≈ 0.772`` for cubic. The variance is not uniform in ``t``:
  it grows from ``s²`` at ``t = 0`` towards ``(p+1)s²`` at ``t = 1``.
* ``Legendre(p)``: orthonormal on [0, 1], so ``s ≈ 1/sqrt(p+1)`` and the prior
  variance is close to uniform in ``t`` on average.
* ``PiecewiseLinear(n)``: ``Σ_k Φ_k(t)²`` lies between 1/2 (mid-way between knots)
  and 1 (on a knot), so ``s`` is between 1 and √2.

The scale is computed on the layer grid actually used, so it is exact for the network
being fitted.

References:
    Chen, Rubanova, Bettencourt, Duvenaud (2018), Neural ordinary differential
    equations. NeurIPS.
    Queiruga, Erichson, Hodgkinson, Mahoney (2021), Stateful ODE-Nets using basis
    function expansions. NeurIPS.
    Massoli, Sargsyan et al., QUiNN: weight-parameterized ResNets for uncertainty
    quantification (Sandia).
"""

from __future__ import annotations

import abc
from dataclasses import dataclass

import jax.numpy as jnp
import numpy as np
from numpy.polynomial import legendre as _np_legendre

from bayesresnet._validate import check_int, did_you_mean

__all__ = [
    "Basis",
    "PerLayer",
    "Constant",
    "Monomial",
    "Linear",
    "Quadratic",
    "Cubic",
    "Legendre",
    "PiecewiseLinear",
    "layer_times",
    "make_basis",
]


def layer_times(num_layers: int) -> np.ndarray:
    """Depths ``t_l = l/L`` of the ``L`` layers (left ends of the Euler steps)."""
    check_int("num_layers", num_layers, minimum=1)
    return np.arange(num_layers, dtype=np.float64) / num_layers


class Basis(abc.ABC):
    """Abstract depth basis: ``W(t) = Σ_k Φ_k(t) C_k``.

    Subclasses are frozen dataclasses holding only Python numbers (hashable, safe to
    close over under ``jit``). They implement :meth:`num_functions` and either
    :meth:`evaluate` (continuous bases, which support depth transfer) or :meth:`phi`.
    """

    #: Whether the coefficients define ``W(t)`` for every ``t`` (so the same
    #: coefficients can be evaluated at another depth).
    supports_depth_transfer: bool = True

    @abc.abstractmethod
    def num_functions(self, num_layers: int) -> int:
        """Number ``K`` of basis functions (coefficient arrays) for ``num_layers`` layers."""

    #: Prefix of the basis functions' names (``function_names``).
    label: str = "phi"

    def function_names(self, num_layers: int) -> list[str]:
        """Names of the basis functions, e.g. ``["t^0", "t^1", …]`` (ArviZ coordinates)."""
        return [f"{self.label}{k}" for k in range(self.num_functions(num_layers))]

    def evaluate(self, t) -> np.ndarray:
        """``Φ(t)`` as a ``[len(t), K]`` array for depths ``t ∈ [0, 1]``."""
        raise NotImplementedError  # pragma: no cover - every continuous basis overrides

    def phi(self, num_layers: int) -> np.ndarray:
        """Design matrix ``Φ[l, k] = Φ_k(t_l)``, shape ``[num_layers, K]`` (NumPy, float64)."""
        return self.evaluate(layer_times(num_layers))

    def evaluate_traced(self, t):
        """``Φ(t)`` ``[K]`` at one depth ``t`` that may be a traced JAX scalar (an ODE solver's
        time); the traceable twin of :meth:`evaluate`, without its checks."""
        raise NotImplementedError  # pragma: no cover - every continuous basis overrides

    def coefficient_scale(self, num_layers: int) -> float:
        """Prior scale ``s`` of each coefficient so that ``mean_l Var W(t_l) = 1``.

        See the module docstring for the rule and its value per basis.
        """
        phi = self.phi(num_layers)
        return float(1.0 / np.sqrt(np.mean(np.sum(phi**2, axis=1))))

    def weights(self, coefficients, num_layers: int):
        """Per-layer arrays ``W_l = Σ_k Φ[l, k] C_k`` for all layers at once.

        Args:
            coefficients: array ``[K, ...]``.
            num_layers: number of layers ``L``.

        Returns:
            Array ``[L, ...]``.
        """
        phi = self.phi(num_layers)
        k = coefficients.shape[0]
        if phi.shape[1] != k:
            raise ValueError(
                f"{self!r} with {num_layers} layers has {phi.shape[1]} basis functions, "
                f"but the coefficients have leading dimension {k}."
            )
        return jnp.tensordot(jnp.asarray(phi, dtype=coefficients.dtype), coefficients, axes=1)

    def _check_t(self, t) -> np.ndarray:
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))
        if t.ndim != 1:
            raise ValueError(f"`t` must be a scalar or 1-D array of depths; got shape {t.shape}.")
        if np.any((t < 0.0) | (t > 1.0)) or not np.all(np.isfinite(t)):
            raise ValueError("`t` must lie in [0, 1].")
        return t


@dataclass(frozen=True)
class PerLayer(Basis):
    """One free matrix per layer: a plain ResNet. ``Φ = I`` (layers × layers).

    Layers are indexed by their integer position, so the coefficients have no meaning
    at another depth and depth transfer is refused.
    """

    supports_depth_transfer = False
    label = "layer"

    def num_functions(self, num_layers: int) -> int:
        check_int("num_layers", num_layers, minimum=1)
        return num_layers

    def evaluate(self, t) -> np.ndarray:
        raise ValueError(
            "PerLayer has one matrix per integer layer and no value between layers; "
            "use a continuous basis (Constant, Monomial, Legendre, PiecewiseLinear) "
            "to evaluate W(t) at arbitrary depths."
        )

    def evaluate_traced(self, t):
        self.evaluate(t)  # raises: no value between layers

    def phi(self, num_layers: int) -> np.ndarray:
        return np.eye(self.num_functions(num_layers))


@dataclass(frozen=True)
class Monomial(Basis):
    """Monomials ``Φ_k(t) = t^k``, ``k = 0 … degree``: ``W(t) = Σ_k t^k C_k`` exactly."""

    degree: int
    label = "t^"

    def __post_init__(self):
        check_int("degree", self.degree, minimum=0)

    def num_functions(self, num_layers: int) -> int:
        return self.degree + 1

    def evaluate(self, t) -> np.ndarray:
        t = self._check_t(t)
        return t[:, None] ** np.arange(self.degree + 1)[None, :]

    def evaluate_traced(self, t):
        return jnp.asarray(t) ** jnp.arange(self.degree + 1)


def Constant() -> Monomial:  # noqa: N802 - reads as a type at the call site
    """``W(t) = C_0``: one weight shared by every layer (a weight-tied ResNet)."""
    return Monomial(0)


def Linear() -> Monomial:  # noqa: N802
    """``W(t) = C_0 + C_1 t``."""
    return Monomial(1)


def Quadratic() -> Monomial:  # noqa: N802
    """``W(t) = C_0 + C_1 t + C_2 t²``."""
    return Monomial(2)


def Cubic() -> Monomial:  # noqa: N802
    """``W(t) = A_0 + A_1 t + A_2 t² + A_3 t³``."""
    return Monomial(3)


@dataclass(frozen=True)
class Legendre(Basis):
    """Shifted Legendre polynomials ``Φ_k(t) = √(2k+1) P_k(2t − 1)``, ``k = 0 … degree``.

    Orthonormal on [0, 1]: ``∫₀¹ Φ_j Φ_k dt = δ_jk``; better conditioned than monomials at
    high degree.
    """

    degree: int
    label = "P"

    def __post_init__(self):
        check_int("degree", self.degree, minimum=0)

    def num_functions(self, num_layers: int) -> int:
        return self.degree + 1

    def evaluate(self, t) -> np.ndarray:
        t = self._check_t(t)
        k = np.arange(self.degree + 1)
        # legvander gives P_k(x) for k = 0..degree as columns.
        return _np_legendre.legvander(2.0 * t - 1.0, self.degree) * np.sqrt(2 * k + 1)

    def evaluate_traced(self, t):
        # Bonnet's recursion (n+1) P_{n+1}(x) = (2n+1) x P_n(x) − n P_{n−1}(x).
        x = 2.0 * jnp.asarray(t) - 1.0
        p = [jnp.ones_like(x), x][: self.degree + 1]
        for n in range(1, self.degree):
            p.append(((2 * n + 1) * x * p[n] - n * p[n - 1]) / (n + 1))
        return jnp.stack(p) * jnp.sqrt(2.0 * jnp.arange(self.degree + 1) + 1.0)


@dataclass(frozen=True)
class PiecewiseLinear(Basis):
    """Hat functions on ``num_knots`` uniform knots ``τ_j = j/(n−1)`` of [0, 1].

    ``W(t)`` interpolates linearly between the knot values ``C_j = W(τ_j)``; the hats
    sum to one at every ``t`` (partition of unity).
    """

    num_knots: int
    label = "knot"

    def __post_init__(self):
        check_int("num_knots", self.num_knots, minimum=2)

    def num_functions(self, num_layers: int) -> int:
        return self.num_knots

    def evaluate(self, t) -> np.ndarray:
        t = self._check_t(t)
        knots = np.linspace(0.0, 1.0, self.num_knots)
        h = knots[1] - knots[0]
        return np.clip(1.0 - np.abs(t[:, None] - knots[None, :]) / h, 0.0, None)

    def evaluate_traced(self, t):
        knots = jnp.linspace(0.0, 1.0, self.num_knots)
        h = 1.0 / (self.num_knots - 1)
        return jnp.clip(1.0 - jnp.abs(jnp.asarray(t) - knots) / h, 0.0, None)


def make_basis(name: str, **kwargs) -> Basis:
    """A basis from its name, as written in a spec file.

    ``"per_layer"``, ``"constant"``, ``"linear"``, ``"quadratic"``, ``"cubic"``,
    ``"monomial"`` (``degree=``), ``"legendre"`` (``degree=``), ``"piecewise_linear"``
    (``num_knots=``).

    Raises:
        ValueError: For an unknown name (with the closest one), a size argument the basis
            does not take, or a missing one.
    """
    fixed = {
        "per_layer": PerLayer,
        "constant": Constant,
        "linear": Linear,
        "quadratic": Quadratic,
        "cubic": Cubic,
    }
    sized = {"monomial": Monomial, "legendre": Legendre, "piecewise_linear": PiecewiseLinear}
    size_args = {"monomial": "degree", "legendre": "degree", "piecewise_linear": "num_knots"}
    known = [*fixed, *sized]
    if name not in known:
        raise ValueError(f"unknown basis {name!r}; allowed: {known}.{did_you_mean(name, known)}")
    for key in kwargs:
        if key != size_args.get(name):
            users = [b for b, arg in size_args.items() if arg == key]
            note = f" (basis {name!r} takes no arguments)" if name in fixed else ""
            raise ValueError(
                f"`{key}` applies only to the bases {users}, not to basis = {name!r}; remove "
                f"it{note}."
            )
    if name in fixed:
        return fixed[name]()
    if size_args[name] not in kwargs:
        example = "degree = 3" if size_args[name] == "degree" else "num_knots = 5"
        raise ValueError(f"basis = {name!r} needs `{size_args[name]}`; add e.g. `{example}`.")
    return sized[name](**kwargs)
