"""Depth bases: identities, orthonormality, partition of unity, prior scaling, errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bayesresnet import bases

CONTINUOUS = [
    bases.Constant(),
    bases.Linear(),
    bases.Quadratic(),
    bases.Cubic(),
    bases.Monomial(5),
    bases.Legendre(4),
    bases.PiecewiseLinear(6),
]


def test_named_monomials_have_their_degree():
    assert [
        b.degree for b in (bases.Constant(), bases.Linear(), bases.Quadratic(), bases.Cubic())
    ] == [
        0,
        1,
        2,
        3,
    ]
    assert bases.Cubic() == bases.Monomial(3)
    assert hash(bases.Cubic()) == hash(bases.Monomial(3))


def test_layer_times_are_left_euler_points():
    np.testing.assert_allclose(bases.layer_times(4), [0.0, 0.25, 0.5, 0.75])


def test_per_layer_is_identity():
    basis = bases.PerLayer()
    np.testing.assert_array_equal(basis.phi(7), np.eye(7))
    coef = jnp.arange(7 * 2 * 3, dtype=jnp.float32).reshape(7, 2, 3)
    np.testing.assert_array_equal(basis.weights(coef, 7), coef)
    assert basis.num_functions(7) == 7
    assert not basis.supports_depth_transfer


def test_cubic_is_the_literal_polynomial():
    t = np.array([0.0, 0.3, 0.9])
    phi = bases.Cubic().evaluate(t)
    np.testing.assert_allclose(phi, np.stack([np.ones(3), t, t**2, t**3], axis=1))
    a = np.random.default_rng(0).normal(size=(4, 2, 2))
    w = bases.Cubic().weights(jnp.asarray(a), 10)
    tl = np.arange(10) / 10
    expected = a[0] + a[1] * tl[:, None, None] + a[2] * tl[:, None, None] ** 2
    expected = expected + a[3] * tl[:, None, None] ** 3
    np.testing.assert_allclose(w, expected, rtol=1e-5, atol=1e-6)


def test_legendre_is_orthonormal_on_unit_interval():
    nodes, weights = np.polynomial.legendre.leggauss(20)
    t, w = (nodes + 1) / 2, weights / 2  # Gauss–Legendre rule on [0, 1]
    phi = bases.Legendre(6).evaluate(t)
    gram = phi.T @ (w[:, None] * phi)
    np.testing.assert_allclose(gram, np.eye(7), atol=1e-12)


def test_legendre_low_orders_by_hand():
    t = np.array([0.0, 0.25, 1.0])
    phi = bases.Legendre(2).evaluate(t)
    x = 2 * t - 1
    np.testing.assert_allclose(phi[:, 0], 1.0)
    np.testing.assert_allclose(phi[:, 1], np.sqrt(3) * x)
    np.testing.assert_allclose(phi[:, 2], np.sqrt(5) * (3 * x**2 - 1) / 2)


@given(st.integers(2, 12), st.lists(st.floats(0.0, 1.0), min_size=1, max_size=20))
def test_piecewise_linear_is_partition_of_unity(num_knots, ts):
    phi = bases.PiecewiseLinear(num_knots).evaluate(np.array(ts))
    np.testing.assert_allclose(phi.sum(axis=1), 1.0, atol=1e-12)
    assert np.all(phi >= 0)
    # local support: at most two hats (rounding in the hat formula may leave ~1e-16)
    assert np.all((phi > 1e-12).sum(axis=1) <= 2)


def test_piecewise_linear_interpolates_knot_values():
    knots = np.linspace(0, 1, 5)
    np.testing.assert_allclose(bases.PiecewiseLinear(5).evaluate(knots), np.eye(5), atol=1e-12)


@pytest.mark.slow
@settings(max_examples=30, deadline=None)
@given(
    st.sampled_from(CONTINUOUS + [bases.PerLayer()]),
    st.integers(1, 30),
    st.floats(-3, 3),
)
def test_weights_are_linear_in_coefficients(basis, num_layers, a):
    k = basis.num_functions(num_layers)
    rng = np.random.default_rng(num_layers)
    c1, c2 = (jnp.asarray(rng.normal(size=(k, 3)), dtype=jnp.float32) for _ in range(2))
    lhs = basis.weights(a * c1 + c2, num_layers)
    rhs = a * basis.weights(c1, num_layers) + basis.weights(c2, num_layers)
    assert lhs.shape == (num_layers, 3)
    np.testing.assert_allclose(lhs, rhs, rtol=1e-4, atol=1e-4)


@settings(max_examples=30, deadline=None)
@given(st.sampled_from(CONTINUOUS + [bases.PerLayer()]), st.integers(1, 40))
def test_coefficient_scale_normalizes_layer_averaged_variance(basis, num_layers):
    # Var W(t_l) = s² Σ_k Φ_k(t_l)² for iid N(0, s²) coefficients; its layer mean must be 1.
    s = basis.coefficient_scale(num_layers)
    phi = basis.phi(num_layers)
    assert np.mean(np.sum((s * phi) ** 2, axis=1)) == pytest.approx(1.0, rel=1e-12)


def test_coefficient_scale_documented_values():
    assert bases.PerLayer().coefficient_scale(10) == 1.0
    assert bases.Constant().coefficient_scale(10) == 1.0
    # Legendre is orthonormal, so with many layers s → 1/√(p+1).
    assert bases.Legendre(3).coefficient_scale(4000) == pytest.approx(0.5, rel=1e-3)
    # Monomials: s → 1/√(Σ 1/(2k+1)).
    expected = 1 / np.sqrt(1 + 1 / 3 + 1 / 5 + 1 / 7)
    assert bases.Cubic().coefficient_scale(4000) == pytest.approx(expected, rel=1e-3)


def test_make_basis_by_name():
    assert bases.make_basis("cubic") == bases.Cubic()
    assert bases.make_basis("legendre", degree=4) == bases.Legendre(4)
    assert bases.make_basis("piecewise_linear", num_knots=3) == bases.PiecewiseLinear(3)
    assert bases.make_basis("per_layer") == bases.PerLayer()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: bases.Monomial(-1), ValueError, r"`degree` must be ≥ 0; got -1"),
        (lambda: bases.Legendre(2.5), TypeError, r"`degree` must be an int"),
        (lambda: bases.PiecewiseLinear(1), ValueError, r"`num_knots` must be ≥ 2"),
        (lambda: bases.Monomial(True), TypeError, r"`degree` must be an int"),
        (lambda: bases.PerLayer().evaluate([0.5]), ValueError, r"one matrix per integer layer"),
        (lambda: bases.Cubic().evaluate([1.5]), ValueError, r"`t` must lie in \[0, 1\]"),
        (lambda: bases.Cubic().evaluate([[0.5]]), ValueError, r"scalar or 1-D"),
        (lambda: bases.layer_times(0), ValueError, r"`num_layers` must be ≥ 1"),
        (lambda: bases.make_basis("spline"), ValueError, r"unknown basis 'spline'; allowed: \["),
        (lambda: bases.make_basis("cubic", degree=3), ValueError, r"takes no arguments"),
        (
            lambda: bases.Cubic().weights(jnp.zeros((3, 2)), 5),
            ValueError,
            r"has 4 basis functions, but the coefficients have leading dimension 3",
        ),
    ],
)
def test_errors(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_weights_contract_any_axis_and_depth_grid():
    rng = np.random.default_rng(1)
    phi = rng.normal(size=(5, 3))
    draws = rng.normal(size=(2, 3, 4, 4))  # [S, K, w, w]
    w = bases.weights(phi, draws, axis=1)  # NumPy in, NumPy float64 out
    assert isinstance(w, np.ndarray) and w.shape == (2, 5, 4, 4) and w.dtype == np.float64
    np.testing.assert_allclose(w, np.einsum("tk,skij->stij", phi, draws), rtol=1e-12)
    one = bases.weights(phi[2], draws, axis=1)  # one depth: the K axis contracted away
    assert one.shape == (2, 4, 4)
    np.testing.assert_allclose(one, w[:, 2], rtol=1e-12)
    traced = jax.jit(lambda p, c: bases.weights(p, c))(jnp.asarray(phi[2]), jnp.asarray(draws[0]))
    np.testing.assert_allclose(traced, w[0, 2], rtol=1e-5, atol=1e-6)
    t, phi_fine = bases.Legendre(2).depth_grid(4, 11)
    np.testing.assert_allclose(t, np.linspace(0, 1, 11))
    np.testing.assert_allclose(phi_fine, bases.Legendre(2).evaluate(t))
    t, phi_layers = bases.PerLayer().depth_grid(4, 11)  # one matrix per layer
    np.testing.assert_allclose(t, bases.layer_times(4))
    np.testing.assert_array_equal(phi_layers, np.eye(4))


def test_continuous_bases_are_a_type():
    for basis in CONTINUOUS:
        assert isinstance(basis, bases.ContinuousBasis) and basis.supports_depth_transfer
    assert isinstance(bases.Legendre(2), bases.Polynomial)
    assert isinstance(bases.Cubic(), bases.Polynomial)
    assert not isinstance(bases.PerLayer(), bases.ContinuousBasis)
    assert not isinstance(bases.PiecewiseLinear(3), bases.Polynomial)
    assert bases.Legendre(2) != bases.Monomial(2)  # same degree, another basis

    class Bare(bases.Basis):
        def num_functions(self, num_layers):
            return 1

    with pytest.raises(TypeError, match="abstract"):
        Bare()
