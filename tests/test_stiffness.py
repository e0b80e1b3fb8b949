"""Stiffness of the learned dynamics: eigenvalues, ratio, stability, the penalty in the model."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density

import bayesresnet as brn
from bayesresnet import bases, resnet, sites, stiffness
from bayesresnet.app.runspec import parse_runspec
from bayesresnet.model import PriorSpec, Scaler, make_model
from bayesresnet.resnet import ACTIVATIONS, ResNetSpec, hidden_layer_params, init_params


def _net(basis=None, activation="tanh", width=5, num_layers=6, scheme="euler", seed=0, n=7):
    spec = ResNetSpec(
        2,
        1,
        width=width,
        num_layers=num_layers,
        basis=basis or bases.Cubic(),
        activation=activation,
        scheme=scheme,
    )
    params = init_params(jax.random.key(seed), spec, scale=2.0)
    params[sites.HIDDEN_BIAS] = 0.3 * jax.random.normal(
        jax.random.key(seed + 1), params[sites.HIDDEN_BIAS].shape
    )
    x = jax.random.normal(jax.random.key(seed + 2), (n, 2))
    return spec, params, x


@pytest.mark.slow
def test_linear_constant_weights_give_the_eigenvalues_of_w():
    # σ = id, W(t) ≡ W: J_l = Wᵀ at every layer and input, eigenvalues those of W.
    spec, params, x = _net(basis=bases.Constant(), activation="identity", num_layers=4)
    w = np.asarray(params[sites.HIDDEN_WEIGHT][0], dtype=np.float64)
    mu = np.linalg.eigvals(w)
    res = stiffness.stiffness(params, x, spec)
    assert res.eigenvalues.shape == (4, 7, 5)
    for layer in range(4):
        for n in range(7):
            got = np.sort_complex(np.asarray(res.eigenvalues[layer, n]))
            np.testing.assert_allclose(got, np.sort_complex(mu), rtol=1e-4, atol=1e-5)
    re = np.abs(mu.real)
    np.testing.assert_allclose(res.ratio, re.max() / re.min(), rtol=1e-3)
    np.testing.assert_allclose(res.stability, np.abs(1 + 0.25 * mu).max(), rtol=1e-5)


def _naive_jacobians(params, x, spec):
    """Per layer and input: jax.jacfwd of F(t_l, ·) at the state of a Python loop."""
    act = ACTIVATIONS[spec.activation]
    weights, biases = hidden_layer_params(params, spec)
    h = act(x @ params[sites.INPUT_WEIGHT] + params[sites.INPUT_BIAS])
    out = []
    for w, b in zip(weights, biases):
        out.append([jax.jacfwd(lambda v, w=w, b=b: act(v @ w + b))(h[n]) for n in range(len(x))])
        h = h + act(h @ w + b) / spec.num_layers
    return np.asarray(out, dtype=np.float64)  # [L, N, w, w]: J[i, j] = ∂F_i/∂h_j


@pytest.mark.slow
def test_jacobians_and_eigenvalues_match_autodiff_and_numpy():
    spec, params, x = _net()
    naive = _naive_jacobians(params, x, spec)
    jacs = np.asarray(stiffness.layer_jacobians(params, x, spec))
    np.testing.assert_allclose(jacs, naive, rtol=1e-5, atol=1e-6)
    res = stiffness.stiffness(params, x, spec)
    mu = np.linalg.eigvals(naive)  # [L, N, w]
    for got, want in zip(np.asarray(res.eigenvalues).reshape(-1, 5), mu.reshape(-1, 5)):
        np.testing.assert_allclose(np.sort_complex(got), np.sort_complex(want), atol=1e-5)
    re = np.abs(mu.real)
    np.testing.assert_allclose(res.ratio, re.max(-1) / re.min(-1), rtol=1e-3)
    np.testing.assert_allclose(
        res.stability, np.abs(1 + mu / spec.num_layers).max(-1), rtol=1e-5, atol=1e-6
    )


@pytest.mark.slow
@pytest.mark.parametrize("residual", [True, False])
@pytest.mark.parametrize("num_layers", [4, 12])  # unrolled and scanned paths
def test_jacobians_are_those_of_one_step(residual, num_layers):
    # The Jacobian of one Euler step h ↦ h + Δt F(t_l, h) is I + Δt J_l; of the MLP
    # baseline's update h ↦ F(t_l, h) it is J_l. Steps from resnet.step, states from a loop.
    spec, params, x = _net(num_layers=num_layers)
    spec = ResNetSpec(2, 1, width=5, num_layers=num_layers, residual=residual)
    field, dt = resnet.layer_field(spec), 1.0 / num_layers
    layers = hidden_layer_params(params, spec)
    jacs = np.asarray(stiffness.layer_jacobians(params, x, spec))
    assert jacs.shape == (num_layers, 7, 5, 5)
    h = resnet.input_layer(params, x, spec)
    for layer in range(num_layers):
        theta = jax.tree.map(lambda a, i=layer: a[i], layers)

        def one_step(v, theta=theta):
            if residual:
                return resnet.step("euler")(field, v, dt, theta, None)
            return field(v, theta)

        for n in range(len(x)):
            want = np.asarray(jax.jacfwd(one_step)(h[n]))
            got = np.eye(5) + dt * jacs[layer, n] if residual else jacs[layer, n]
            np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
        h = jax.vmap(one_step)(h)


@pytest.mark.slow
def test_heun_stability_function_and_relu():
    spec, params, x = _net(scheme="heun")
    res = stiffness.stiffness(params, x, spec)
    z = np.asarray(res.eigenvalues) / spec.num_layers
    np.testing.assert_allclose(res.stability, np.abs(1 + z + z**2 / 2).max(-1), rtol=1e-5)
    # ReLU: dead units give zero eigenvalues, so the floor caps the ratio at 1/rel_floor.
    spec, params, x = _net(activation="relu")
    ratio = np.asarray(stiffness.stiffness(params, x, spec).ratio)
    assert np.all(np.isfinite(ratio)) and ratio.max() <= 1 / stiffness.REL_FLOOR * (1 + 1e-6)


def test_ratio_floor():
    eig = jnp.array([[-2.0, 0.0, 1.0], [0.0, 0.0, 0.0], [-4.0, 2.0 + 1j, -1.0]])
    np.testing.assert_allclose(stiffness.stiffness_ratio(eig), [1e6, 1.0, 4.0])
    np.testing.assert_allclose(stiffness.stiffness_ratio(eig, rel_floor=0.1), [10.0, 1.0, 4.0])


@pytest.mark.slow
def test_penalty_measure_bounds_the_spectral_spread_and_is_differentiable():
    a = jax.random.normal(jax.random.key(3), (20, 6, 6))
    mu = np.linalg.eigvals(np.asarray(a, dtype=np.float64))
    spread = np.sum(np.abs(mu - mu.mean(-1, keepdims=True)) ** 2, axis=-1)
    m = np.asarray(stiffness.penalty_measure(a))
    assert np.all(m >= spread - 1e-4)
    sym = a + jnp.swapaxes(a, -1, -2)  # normal: equality
    mu_s = np.linalg.eigvalsh(np.asarray(sym, dtype=np.float64))
    np.testing.assert_allclose(
        stiffness.penalty_measure(sym),
        np.sum((mu_s - mu_s.mean(-1, keepdims=True)) ** 2, axis=-1),
        rtol=1e-4,
    )
    assert float(stiffness.penalty_measure(2.5 * jnp.eye(4))) == pytest.approx(0.0, abs=1e-6)
    spec, params, x = _net()
    grad = jax.grad(lambda p: stiffness.stiffness_penalty(p, x, spec))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grad))
    assert float(jnp.abs(grad[sites.HIDDEN_WEIGHT]).max()) > 0


def _log_joint(model, x, y, params):
    values = {**params, sites.NOISE_SCALE: jnp.full(1, 0.5)}
    logp = jax.jit(lambda v: log_density(model, (x, y), {}, v)[0])(values)
    tr = handlers.trace(handlers.substitute(model, data=values)).get_trace(x, y)
    return logp, tr


@pytest.mark.slow
def test_model_adds_the_penalty_as_one_factor():
    spec, params, x = _net()
    y = jnp.zeros((7, 1))
    scaler = Scaler(np.zeros(2), np.ones(2), np.zeros(1), np.ones(1))
    plain, tr0 = _log_joint(make_model(spec, PriorSpec(), scaler), x, y, params)
    lam = 0.7
    penalized, tr1 = _log_joint(
        make_model(spec, PriorSpec(stiffness_penalty=lam), scaler), x, y, params
    )
    assert sites.STIFFNESS_PENALTY not in tr0 and sites.STIFFNESS_PENALTY in tr1
    expected = -lam * stiffness.stiffness_penalty(params, x, spec)
    np.testing.assert_allclose(penalized - plain, expected, rtol=1e-4)


def test_negative_penalty_refused_and_toml():
    with pytest.raises(ValueError, match="`stiffness_penalty` must be a finite number ≥ 0"):
        PriorSpec(stiffness_penalty=-0.1)
    with pytest.raises(TypeError, match="`stiffness_penalty` must be a number"):
        PriorSpec(stiffness_penalty="1")
    spec = parse_runspec('[data]\nproblem = "sine"\n[prior]\nstiffness_penalty = 0.5\n')
    assert spec.prior.stiffness_penalty == 0.5
    with pytest.raises(ValueError, match="stiffness_penalty"):
        parse_runspec('[data]\nproblem = "sine"\n[prior]\nstiffness_penalty = -1.0\n')


def _posterior(spec, num_draws=4):
    keys = jax.random.split(jax.random.key(0), num_draws)
    draws = [init_params(k, spec, scale=2.0) for k in keys]
    samples = {k: np.stack([np.asarray(d[k]) for d in draws])[None] for k in sites.NETWORK}
    samples[sites.NOISE_SCALE] = np.full((1, num_draws, 1), 0.1)
    x = np.random.default_rng(0).normal(size=(9, 2))
    scaler = Scaler(np.zeros(2), np.ones(2), np.zeros(1), np.ones(1))
    prior = PriorSpec()
    return brn.Posterior(spec, prior, scaler, samples, "ensemble", {}, {}, {}, {}, x, x[:, :1])


@pytest.mark.slow
def test_posterior_stiffness_is_vmapped_over_draws_and_banded():
    spec = ResNetSpec(2, 1, width=4, num_layers=5, basis=bases.PerLayer())
    post = _posterior(spec)
    res = stiffness.posterior_stiffness(post, num_points=6)
    assert res.ratio.shape == (4, 5, 6) and res.eigenvalues.shape == (4, 5, 6, 4)
    flat = post.flat_samples()
    one = stiffness.stiffness(
        {k: jnp.asarray(flat[k][2]) for k in sites.NETWORK},
        jnp.asarray(post.x_train[np.sort(np.random.default_rng(0).choice(9, 6, replace=False))]),
        spec,
    )
    np.testing.assert_allclose(res.ratio[2], one.ratio, rtol=1e-4)
    bands = stiffness.stiffness_bands(res)
    assert bands.ratio.shape == (3, 5) and bands.stability.shape == (3, 5)
    assert np.all(bands.ratio[0] <= bands.ratio[1]) and np.all(bands.ratio[1] <= bands.ratio[2])
    with pytest.raises(ValueError, match="`result` must hold draws"):
        stiffness.stiffness_bands(one)


@pytest.mark.slow  # two ensemble fits, ≈ 20 s on 2 cores
def test_penalty_lowers_the_stiffness_of_the_posterior():
    # The ensemble members' mean log stiffness ratio (over layers and training inputs) is
    # lower with the penalty, by more than 3 standard errors (members as draws, M = 8
    # each). Member-wise summaries, not the ratio of averaged weights: the weights of
    # different members are not aligned (hidden-unit permutations), so the stiffness of
    # the "posterior-mean network" is taken as the posterior mean of its stiffness.
    ds = brn.problems.get("sine").sample(seed=0, num_train=40, num_test=0, noise=0.05)
    spec = ResNetSpec(1, 1, width=6, num_layers=6, basis=bases.Cubic())
    stats = {}
    for lam in (0.0, 1.0):
        post = brn.fit(
            spec,
            ds,
            method="ensemble",
            seed=0,
            prior=PriorSpec(stiffness_penalty=lam),
            num_members=8,
            num_steps=400,
            convergence_tol=1.0,
        )
        per_member = np.log(stiffness.posterior_stiffness(post).ratio).mean(axis=(1, 2))
        stats[lam] = (per_member.mean(), per_member.std(ddof=1) / np.sqrt(len(per_member)))
    (m0, se0), (m1, se1) = stats[0.0], stats[1.0]
    assert m0 - m1 > 3 * np.hypot(se0, se1), stats


def test_stiffness_and_depth_scaling_figures():
    from matplotlib.figure import Figure

    from bayesresnet import depth_scaling, ode_plots

    spec = ResNetSpec(2, 1, width=4, num_layers=8, basis=bases.PerLayer())
    post = _posterior(spec)
    fig = ode_plots.plot_stiffness(stiffness.posterior_stiffness(post, num_points=5))
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    res = depth_scaling.posterior_depth_scaling(post)
    fig = ode_plots.plot_depth_scaling({"per-layer": res})
    assert "β =" in fig.axes[0].get_legend().get_texts()[0].get_text()
    depths = np.array([4, 8, 16])
    errors = np.array([[0.4, 0.2, 0.1], [0.8, 0.4, 0.2]])
    fig = ode_plots.plot_depth_convergence(depths, {"euler": errors, "heun": errors**2})
    assert "slope -1.00" in fig.axes[0].get_legend().get_texts()[0].get_text()
    assert isinstance(ode_plots.plot_gradient_gap(depths, errors), Figure)
    with pytest.raises(TypeError, match="`result` must be a StiffnessResult"):
        ode_plots.plot_stiffness({"ratio": 1})
    with pytest.raises(ValueError, match=r"`gaps` must have shape \[S, J\]"):
        ode_plots.plot_gradient_gap(depths, errors[0])
    with pytest.raises(ValueError, match="`results` must be a non-empty mapping"):
        ode_plots.plot_depth_scaling({})
