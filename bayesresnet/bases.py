"""Depth bases for weight-parameterized residual networks.

A WP-ResNet layer at depth ``t`` uses weights ``W(t) = Σ_k Φ_k(t) C_k``: a fixed set of
``K`` basis functions of depth, ``Φ_k``, and ``K`` learned coefficient arrays ``C_k``.
Depth runs over ``t ∈ [0, 1]``; layer ``l = 0 … L−1`` sits at ``t_l = l·Δt`` with
``Δt = 1/L`` (the left end of its Euler step).

Every basis supplies only its design matrix ``Φ`` (layers × K), or, as a
:class:`ContinuousBasis`, the functions ``Φ(t)`` at any depth; :func:`weights` turns
coefficients into weights at every depth with one ``tensordot``, for the network's
layers (:meth:`Basis.weights`) and for figures and diagnostics of ``W(t)`` alike.

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

import jax
import jax.numpy as jnp
import numpy as np
from numpy.polynomial import legendre as _np_legendre

from bayesresnet._validate import check_int, did_you_mean

__all__ = [
    "Basis",
    "ContinuousBasis",
    "Polynomial",
    "PerLayer",
    "Constant",
    "Monomial",
    "Linear",
    "Quadratic",
    "Cubic",
    "Legendre",
    "PiecewiseLinear",
    "layer_times",
    "weights",
    "make_basis",
]


def layer_times(num_layers: int) -> np.ndarray:
    """Depths ``t_l = l/L`` of the ``L`` layers (left ends of the Euler steps)."""
    check_int("num_layers", num_layers, minimum=1)
    return np.arange(num_layers, dtype=np.float64) / num_layers


def weights(phi, coefficients, axis: int = 0):
    """``W(t) = Σ_k Φ_k(t) C_k`` at every depth of ``phi``, as one ``tensordot``.

    Args:
        phi: ``Φ`` ``[T, K]``: basis functions (columns) at ``T`` depths (rows); or
            ``Φ(t)`` ``[K]`` at one depth (e.g. an ODE solver's traced time).
        coefficients: coefficient arrays with the basis axis ``K`` at ``axis``, e.g.
            ``[K, w, w]`` or draws ``[S, K, w, w]`` (``axis=1``); a JAX array (traceable,
            ``phi`` is cast to its dtype) or a NumPy array.

    Returns:
        ``coefficients``' shape with ``K`` replaced by ``T`` at ``axis`` (removed for a
        one-depth ``phi``): the weights at every depth.
    """
    xp = jnp if isinstance(coefficients, jax.Array) else np
    phi = xp.asarray(phi, dtype=coefficients.dtype)
    if phi.ndim == 1:
        return xp.tensordot(phi, coefficients, axes=([0], [axis]))
    return xp.moveaxis(xp.tensordot(phi, coefficients, axes=([1], [axis])), 0, axis)


class Basis(abc.ABC):
    """Abstract depth basis: ``W(t) = Σ_k Φ_k(t) C_k``, defined on the layer grid.

    Subclasses are frozen dataclasses holding only Python numbers (hashable, safe to
    close over under ``jit``). They supply :meth:`num_functions` and the design matrix
    :meth:`phi`; a basis whose functions are defined at every depth ``t ∈ [0, 1]``
    derives from :class:`ContinuousBasis` instead, and supplies ``Φ(t)``.
    """

    #: Prefix of the basis functions' names (``function_names``).
    label: str = "phi"

    @abc.abstractmethod
    def num_functions(self, num_layers: int) -> int:
        """Number ``K`` of basis functions (coefficient arrays) for ``num_layers`` layers."""

    @abc.abstractmethod
    def phi(self, num_layers: int) -> np.ndarray:
        """Design matrix ``Φ[l, k] = Φ_k(t_l)``, shape ``[num_layers, K]`` (NumPy, float64)."""

    @property
    def supports_depth_transfer(self) -> bool:
        """Whether the coefficients define ``W(t)`` at every ``t`` (a :class:`ContinuousBasis`),
        so that they can be evaluated at another depth."""
        return isinstance(self, ContinuousBasis)

    def function_names(self, num_layers: int) -> list[str]:
        """Names of the basis functions, e.g. ``["t^0", "t^1", …]`` (ArviZ coordinates)."""
        return [f"{self.label}{k}" for k in range(self.num_functions(num_layers))]

    def depth_grid(self, num_layers: int, num_t: int) -> tuple[np.ndarray, np.ndarray]:
        """Depths ``t`` ``[T]`` and ``Φ(t)`` ``[T, K]`` at which to look at ``W(t)``.

        Here the ``num_layers`` layer depths ``t_l = l/L`` (one matrix each, whatever
        ``num_t``); a :class:`ContinuousBasis` gives ``num_t`` even depths in [0, 1].
        """
        return layer_times(num_layers), self.phi(num_layers)

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
        return weights(phi, jnp.asarray(coefficients))  # traceable: the network's layers


class ContinuousBasis(Basis):
    """Abstract basis of functions ``Φ_k(t)`` defined at every depth ``t ∈ [0, 1]``.

    Subclasses supply :meth:`evaluate` (NumPy, checked) and :meth:`evaluate_traced`
    (JAX, one traced depth); the layer grid's :meth:`phi` follows. The same
    coefficients then define a network of any depth, or its neural-ODE limit.
    """

    @abc.abstractmethod
    def evaluate(self, t) -> np.ndarray:
        """``Φ(t)`` as a ``[len(t), K]`` array for depths ``t ∈ [0, 1]``."""

    @abc.abstractmethod
    def evaluate_traced(self, t):
        """``Φ(t)`` ``[K]`` at one depth ``t`` that may be a traced JAX scalar (an ODE solver's
        time); the traceable twin of :meth:`evaluate`, without its checks."""

    def phi(self, num_layers: int) -> np.ndarray:
        return self.evaluate(layer_times(num_layers))

    def depth_grid(self, num_layers: int, num_t: int) -> tuple[np.ndarray, np.ndarray]:
        t = np.linspace(0.0, 1.0, num_t)
        return t, self.evaluate(t)

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
    at another depth: it is not a :class:`ContinuousBasis`, and depth transfer is
    refused.
    """

    label = "layer"

    def num_functions(self, num_layers: int) -> int:
        check_int("num_layers", num_layers, minimum=1)
        return num_layers

    def phi(self, num_layers: int) -> np.ndarray:
        return np.eye(self.num_functions(num_layers))

    def evaluate(self, t):
        """Refused, naming the fix: there is no ``W(t)`` between integer layers."""
        raise ValueError(
            "PerLayer has one matrix per integer layer and no value between layers; "
            "use a continuous basis (Constant, Monomial, Legendre, PiecewiseLinear) "
            "to evaluate W(t) at arbitrary depths."
        )


@dataclass(frozen=True)
class Polynomial(ContinuousBasis):
    """Abstract polynomial basis of ``degree + 1`` functions of depth, ``k = 0 … degree``."""

    degree: int

    def __post_init__(self):
        check_int("degree", self.degree, minimum=0)

    def num_functions(self, num_layers: int) -> int:
        return self.degree + 1


@dataclass(frozen=True)
class Monomial(Polynomial):
    """Monomials ``Φ_k(t) = t^k``, ``k = 0 … degree``: ``W(t) = Σ_k t^k C_k`` exactly."""

    label = "t^"

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
class Legendre(Polynomial):
    """Shifted Legendre polynomials ``Φ_k(t) = √(2k+1) P_k(2t − 1)``, ``k = 0 … degree``.

    Orthonormal on [0, 1]: ``∫₀¹ Φ_j Φ_k dt = δ_jk``; better conditioned than monomials at
    high degree.
    """

    label = "P"

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
class PiecewiseLinear(ContinuousBasis):
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
