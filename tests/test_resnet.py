"""Forward pass: against a naive NumPy loop, depth transfer and its convergence order."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesresnet as brn
from bayesresnet import bases, resnet, sites
from bayesresnet.resnet import param_shapes

ALL_BASES = [
    bases.PerLayer(),
    bases.Constant(),
    bases.Linear(),
    bases.Quadratic(),
    bases.Cubic(),
    bases.Legendre(3),
    bases.PiecewiseLinear(4),
]
NP_ACT = {
    "tanh": np.tanh,
    "relu": lambda z: np.maximum(z, 0),
    "softplus": lambda z: np.log1p(np.exp(z)),
    "identity": lambda z: z,
}


def naive_forward(params, x, spec, num_layers=None):
    """Layer-by-layer NumPy reference, building W_l = Σ_k Φ_k(t_l) C_k one layer at a time."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    act = NP_ACT[spec.activation]
    n_layers = num_layers or spec.num_layers

    def field(layer, h):  # F(t_layer, h), the depth given as a (possibly end) layer index
        if isinstance(spec.basis, bases.PerLayer):
            phi = np.eye(n_layers)[layer]
        else:
            phi = spec.basis.evaluate(np.array([layer / n_layers]))[0]
        w = sum(phi[k] * p[sites.HIDDEN_WEIGHT][k] for k in range(len(phi)))
        b = sum(phi[k] * p[sites.HIDDEN_BIAS][k] for k in range(len(phi)))
        return act(h @ w + b)

    h = act(x @ p[sites.INPUT_WEIGHT] + p[sites.INPUT_BIAS])
    for layer in range(n_layers):
        k1 = field(layer, h)
        if not spec.residual:
            h = k1
        elif spec.scheme == "heun":
            k2 = field(layer + 1, h + k1 / n_layers)
            h = h + (k1 + k2) / (2 * n_layers)
        else:
            h = h + k1 / n_layers
    return h @ p[sites.OUTPUT_WEIGHT] + p[sites.OUTPUT_BIAS]


@pytest.mark.slow
@pytest.mark.parametrize("basis", ALL_BASES, ids=repr)
@pytest.mark.parametrize("num_layers", [3, 20])  # unrolled and scanned paths
def test_apply_matches_naive_loop(basis, num_layers, key):
    spec = brn.ResNetSpec(3, 2, width=5, num_layers=num_layers, basis=basis)
    params = brn.init_params(key, spec, scale=2.0)
    params = {k: v + 0.1 for k, v in params.items()}  # nonzero biases too
    x = np.random.default_rng(1).normal(size=(7, 3))
    out = brn.apply(params, x, spec)
    assert out.shape == (7, 2)
    np.testing.assert_allclose(out, naive_forward(params, x, spec), rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("basis", [bases.Cubic(), bases.Legendre(3), bases.PiecewiseLinear(4)])
@pytest.mark.parametrize("num_layers", [3, 20])
def test_heun_apply_matches_naive_loop(basis, num_layers, key):
    spec = brn.ResNetSpec(3, 2, width=5, num_layers=num_layers, basis=basis, scheme="heun")
    params = {k: v + 0.1 for k, v in brn.init_params(key, spec, scale=2.0).items()}
    x = np.random.default_rng(1).normal(size=(7, 3))
    np.testing.assert_allclose(
        brn.apply(params, x, spec), naive_forward(params, x, spec), rtol=2e-5, atol=2e-5
    )
    # Another depth: the same coefficients, the right ends at the new grid's t_(l+1).
    np.testing.assert_allclose(
        brn.apply(params, x, spec, num_layers=11),
        naive_forward(params, x, spec, num_layers=11),
        rtol=2e-5,
        atol=2e-5,
    )


@pytest.mark.parametrize("num_layers", [5, 12])  # unrolled and scanned paths
def test_apply_is_the_step_scanned_over_the_field(num_layers, key):
    # apply = input layer, then step(scheme) on layer_field per layer, readout.
    spec = brn.ResNetSpec(2, 1, width=4, num_layers=num_layers, basis=bases.Legendre(2))
    params = brn.init_params(key, spec, scale=2.0)
    x = np.random.default_rng(4).normal(size=(6, 2)).astype(np.float32)

    def loop(p, x):
        field, update = resnet.layer_field(spec), resnet.step(spec.scheme)
        layers = resnet.hidden_layer_params(p, spec)
        h = resnet.input_layer(p, x, spec)
        for layer in range(num_layers):
            theta = jax.tree.map(lambda a, i=layer: a[i], layers)
            h = update(field, h, 1.0 / num_layers, theta, None)
        return resnet.output_layer(p, h)

    # To float32 rounding: XLA compiles the scan and the unrolled loop into different
    # fused programs, which on some CPUs differ by one unit in the last place (1.8e-7
    # relative seen); any wrong step, field or layer order differs by far more.
    np.testing.assert_allclose(
        jax.jit(brn.apply, static_argnums=2)(params, x, spec),
        jax.jit(loop)(params, x),
        rtol=1e-6,
        atol=1e-7,
    )


def test_vector_field_is_the_layer_field_at_w_of_t(key):
    # F(t, h, params) at a layer depth t_l equals σ(h W_l + b_l) with the layer's weights,
    # and at a depth between layers uses W(t) = Σ_k Φ_k(t) C_k.
    spec = brn.ResNetSpec(2, 1, width=4, num_layers=5, basis=bases.Cubic())
    params = brn.init_params(key, spec, scale=2.0)
    h = jax.random.normal(jax.random.key(5), (3, 4))
    vf = resnet.vector_field(spec)
    layers = resnet.hidden_layer_params(params, spec)
    np.testing.assert_allclose(
        vf(0.4, h, params), jnp.tanh(h @ layers.weight[2] + layers.bias[2]), rtol=1e-6
    )
    phi = 0.3 ** np.arange(4)
    w = np.tensordot(phi, params[sites.HIDDEN_WEIGHT], axes=1)
    b = phi @ np.asarray(params[sites.HIDDEN_BIAS])
    np.testing.assert_allclose(jax.jit(vf)(0.3, h, params), np.tanh(h @ w + b), rtol=1e-5)


def test_step_refuses_an_unknown_scheme():
    with pytest.raises(ValueError, match=r"`scheme` must be one of \['euler', 'heun'\]"):
        resnet.step("rk4")


@pytest.mark.parametrize("activation", ["relu", "softplus", "identity"])
@pytest.mark.parametrize("residual", [True, False])
def test_activations_and_mlp_baseline(activation, residual, key):
    spec = brn.ResNetSpec(2, 1, width=4, num_layers=12, activation=activation, residual=residual)
    params = brn.init_params(key, spec)
    x = np.random.default_rng(2).normal(size=(5, 2))
    np.testing.assert_allclose(
        brn.apply(params, x, spec), naive_forward(params, x, spec), rtol=2e-5, atol=2e-5
    )


def test_gelu_runs_and_differs_from_tanh(key):
    spec = brn.ResNetSpec(2, 1, width=4, num_layers=5, activation="gelu")
    params = brn.init_params(key, spec)
    x = np.ones((2, 2))
    other = brn.ResNetSpec(2, 1, width=4, num_layers=5, activation="tanh")
    assert not np.allclose(brn.apply(params, x, spec), brn.apply(params, x, other))


def test_num_params_by_hand():
    # d=1, out=1, width=16: input 16+16, output 16+1, hidden K·(256+16).
    spec = brn.ResNetSpec(1, 1, width=16, num_layers=20, basis=bases.Cubic())
    assert brn.num_params(spec) == 32 + 17 + 4 * 272
    per_layer = brn.ResNetSpec(1, 1, width=16, num_layers=20, basis=bases.PerLayer())
    assert brn.num_params(per_layer) == 32 + 17 + 20 * 272
    shapes = param_shapes(spec)
    assert shapes[sites.HIDDEN_WEIGHT] == (4, 16, 16)
    assert sum(int(np.prod(s)) for s in shapes.values()) == brn.num_params(spec)


def test_apply_is_jittable_and_differentiable(key):
    spec = brn.ResNetSpec(2, 1, width=4, num_layers=30)
    params = brn.init_params(key, spec)
    x = np.ones((3, 2))
    loss = jax.jit(lambda p: brn.apply(p, x, spec).sum())
    grads = jax.grad(loss)(params)
    assert set(grads) == set(params)
    assert all(np.all(np.isfinite(g)) for g in grads.values())


def rk4_reference(params, x, spec, num_steps=2000):
    """Solve dh/dt = σ(h W(t) + b(t)) on [0, 1] with classical RK4 in float64."""
    p = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}
    act = NP_ACT[spec.activation]

    def rhs(t, h):
        phi = spec.basis.evaluate(np.array([t]))[0]
        w = np.tensordot(phi, p[sites.HIDDEN_WEIGHT], axes=1)
        b = phi @ p[sites.HIDDEN_BIAS]
        return act(h @ w + b)

    h = act(x @ p[sites.INPUT_WEIGHT] + p[sites.INPUT_BIAS])
    dt = 1.0 / num_steps
    for i in range(num_steps):
        t = i * dt
        k1 = rhs(t, h)
        k2 = rhs(t + dt / 2, h + dt / 2 * k1)
        k3 = rhs(t + dt / 2, h + dt / 2 * k2)
        k4 = rhs(min(t + dt, 1.0), h + dt * k3)
        h = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
    return h @ p[sites.OUTPUT_WEIGHT] + p[sites.OUTPUT_BIAS]


@pytest.mark.slow
@pytest.mark.parametrize(
    "basis", [bases.Cubic(), bases.Legendre(2), bases.PiecewiseLinear(4)], ids=repr
)
def test_depth_transfer_converges_at_first_order(basis, key):
    spec = brn.ResNetSpec(2, 1, width=6, num_layers=10, basis=basis)
    params = brn.init_params(key, spec, scale=3.0)  # strong dynamics: errors well above float32
    x = np.random.default_rng(3).normal(size=(8, 2))
    reference = rk4_reference(params, x, spec)
    depths = np.array([8, 16, 32, 64, 128])
    errors = np.array(
        [
            np.max(np.abs(np.asarray(brn.apply(params, x, spec, num_layers=m)) - reference))
            for m in depths
        ]
    )
    order = -np.polyfit(np.log(depths), np.log(errors), 1)[0]
    # Explicit Euler has global error C·Δt + O(Δt²): the fitted order is 1 up to the O(Δt)
    # correction at the coarsest depth.
    assert 0.9 < order < 1.15, (order, errors)
    assert errors[-1] < errors[0] / 10


def test_depth_transfer_refused_for_per_layer(key):
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=4, basis=bases.PerLayer())
    params = brn.init_params(key, spec)
    with pytest.raises(ValueError, match=r"cannot be evaluated at another depth"):
        brn.apply(params, np.ones((1, 1)), spec, num_layers=8)
    # the spec's own depth is fine
    assert brn.apply(params, np.ones((1, 1)), spec, num_layers=4).shape == (1, 1)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (dict(in_features=0, out_features=1), ValueError, r"`in_features` must be ≥ 1; got 0"),
        (dict(in_features=1, out_features=1, width=2.0), TypeError, r"`width` must be an int"),
        (dict(in_features=1, out_features=1, basis="cubic"), TypeError, r"`basis` must be a"),
        (
            dict(in_features=1, out_features=1, activation="sigmoid"),
            ValueError,
            r"`activation` must be one of",
        ),
        (dict(in_features=1, out_features=1, residual=1), TypeError, r"`residual` must be a bool"),
    ],
)
def test_spec_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        brn.ResNetSpec(**kwargs)


def test_bad_transfer_depth(key):
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=4)
    params = brn.init_params(key, spec)
    with pytest.raises(ValueError, match=r"`num_layers` must be ≥ 1; got 0"):
        brn.apply(params, np.ones((1, 1)), spec, num_layers=0)
