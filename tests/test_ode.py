"""The neural-ODE link: ode.solve against the discrete network, gradients, prediction."""

import diffrax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesresnet import bases, ode, sites
from bayesresnet.model import PriorSpec, Scaler
from bayesresnet.posterior import Posterior
from bayesresnet.resnet import ResNetSpec, apply, init_params


def _problem(basis=None, seed=1, scale=1.5, activation="tanh", width=6, n=16):
    spec = ResNetSpec(
        2, 1, width=width, num_layers=10, basis=basis or bases.Legendre(3), activation=activation
    )
    params = init_params(jax.random.key(seed), spec, scale=scale)
    x = jax.random.normal(jax.random.key(seed + 100), (n, 2))
    return spec, params, x


def _rel(a, b):
    return float(jnp.linalg.norm(a - b) / jnp.linalg.norm(b))


@pytest.mark.parametrize("basis", [bases.Legendre(3), bases.Cubic(), bases.PiecewiseLinear(4)])
def test_evaluate_traced_matches_evaluate(basis):
    t = np.linspace(0.0, 1.0, 11)
    traced = jax.vmap(basis.evaluate_traced)(jnp.asarray(t, dtype=jnp.float32))
    np.testing.assert_allclose(traced, basis.evaluate(t), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_euler_network_converges_to_ode_at_first_order():
    # float64: the M = 1024 error (≈ 4e-4) must not be swamped by float32 round-off.
    with jax.enable_x64(True):
        spec, params, x = _problem()
        ref = ode.solve(params, x, spec)
        depths = [16, 64, 256, 1024]
        errors = np.array([_rel(apply(params, x, spec, num_layers=m), ref) for m in depths])
    scaled = errors * np.array(depths)
    # First order: error × M constant up to the O(1/M) relative next term (12% at M = 16),
    # and the log-log slope is −1.
    assert scaled.max() / scaled.min() < 1.2, scaled
    assert abs(np.polyfit(np.log(depths), np.log(errors), 1)[0] + 1.0) < 0.05
    assert errors[-1] <= 1e-3


@pytest.mark.slow  # compiles several diffrax solves (≈ 10 s on 2 cores)
def test_solvers_agree_and_solve_is_jit_and_vmap_able():
    spec, params, x = _problem()
    ref = ode.solve(params, x, spec)
    for solver in ode.SOLVERS:
        np.testing.assert_allclose(ode.solve(params, x, spec, solver=solver), ref, atol=3e-3)
    draws = jax.tree.map(lambda a: jnp.stack([a, 0.5 * a]), params)
    batched = jax.jit(jax.vmap(lambda p: ode.solve(p, x, spec)))(draws)
    assert batched.shape == (2, 16, 1)
    np.testing.assert_allclose(batched[0], ref, rtol=1e-5, atol=1e-5)


def test_solve_refuses_bad_inputs():
    spec, params, x = _problem()
    with pytest.raises(ValueError, match="`solver` must be one of.*tsit5.*kvaerno5"):
        ode.solve(params, x, spec, solver="rk4")
    with pytest.raises(ValueError, match="`rtol` must be a finite number > 0"):
        ode.solve(params, x, spec, rtol=0.0)
    with pytest.raises(ValueError, match="`atol` must be a finite number > 0"):
        ode.solve(params, x, spec, atol=-1e-8)
    with pytest.raises(TypeError, match="`adjoint` must be a diffrax adjoint"):
        ode.solve(params, x, spec, adjoint="backsolve")
    per_layer = ResNetSpec(2, 1, width=6, num_layers=4, basis=bases.PerLayer())
    with pytest.raises(ValueError, match="per-layer basis"):
        ode.solve(init_params(jax.random.key(0), per_layer), x, per_layer)
    mlp = ResNetSpec(2, 1, width=6, num_layers=4, residual=False)
    with pytest.raises(ValueError, match="residual=False"):
        ode.solve(init_params(jax.random.key(0), mlp), x, mlp)


def _posterior(spec, num_draws=3, seed=0):
    keys = jax.random.split(jax.random.key(seed), num_draws)
    draws = [init_params(k, spec) for k in keys]
    samples = {k: np.stack([np.asarray(d[k]) for d in draws])[None] for k in sites.NETWORK}
    samples[sites.NOISE_SCALE] = np.full((1, num_draws, spec.out_features), 0.1)
    x = np.random.default_rng(0).normal(size=(8, spec.in_features))
    scaler = Scaler(np.full(2, 0.5), np.full(2, 2.0), np.array([1.0]), np.array([3.0]))
    return Posterior(spec, PriorSpec(), scaler, samples, "ensemble", {}, {}, {}, {}, x, x[:, :1])


@pytest.mark.slow  # compiles several diffrax solves (≈ 10 s on 2 cores)
def test_predict_in_the_ode_limit():
    spec = ResNetSpec(2, 1, width=6, num_layers=4, basis=bases.Legendre(2))
    post = _posterior(spec)
    x = np.random.default_rng(1).normal(size=(5, 2))
    pred = post.predict(x, depth="ode", return_draws=True)
    flat = post.flat_samples()
    xs = (x - post.scaler.x_mean) / post.scaler.x_std
    for s in range(post.num_samples):
        params = {k: flat[k][s] for k in sites.NETWORK}
        f = 1.0 + 3.0 * np.asarray(ode.solve(params, jnp.asarray(xs, jnp.float32), spec))
        np.testing.assert_allclose(pred.f[s], f, rtol=1e-4, atol=1e-4)
    # Many layers approach the ODE; the spec's 4 layers are further away.
    deep = post.predict_f(x, depth=512)
    assert np.abs(deep - pred.f).max() < 0.1 * np.abs(post.predict_f(x) - pred.f).max()


def test_predict_depth_refusals():
    x = np.zeros((2, 2))
    per_layer = _posterior(ResNetSpec(2, 1, width=6, num_layers=4, basis=bases.PerLayer()))
    with pytest.raises(ValueError, match="per-layer basis"):
        per_layer.predict(x, depth="ode")
    with pytest.raises(ValueError, match="`depth=8` differs"):
        per_layer.predict_f(x, depth=8)
    post = _posterior(ResNetSpec(2, 1, width=6, num_layers=4, basis=bases.Cubic()))
    with pytest.raises(ValueError, match='`depth` must be None, a number of layers or "ode"'):
        post.predict(x, depth="continuous")
    with pytest.raises(ValueError, match="`depth` must be ≥ 1"):
        post.predict(x, depth=0)


@pytest.mark.slow  # compiles several diffrax solves (≈ 10 s on 2 cores)
def test_adjoint_forward_gradient_matches_backprop_through_solver():
    spec, params, x = _problem(n=8)
    y = jnp.zeros((8, 1))
    g_adj = jax.grad(lambda p: ode.squared_error(ode.adjoint_forward, p, x, y, spec))(params)
    g_direct = jax.grad(
        lambda p: ode.squared_error(lambda q, xx, s: ode.solve(q, xx, s), p, x, y, spec)
    )(params)
    for k in sites.NETWORK:
        np.testing.assert_allclose(g_adj[k], g_direct[k], rtol=1e-3, atol=1e-3)
    assert isinstance(diffrax.BacksolveAdjoint(), diffrax.AbstractAdjoint)


@pytest.mark.slow
def test_convergence_order_of_euler_and_heun():
    # float64; log error vs log M slope against the ODE (Tsit5 at rtol 1e-10): −1 and −2.
    with jax.enable_x64(True):
        spec, params, x = _problem()
        ref = ode.solve(params, x, spec, rtol=1e-10, atol=1e-12)
        depths = np.array([8, 16, 32, 64])
        slopes = {}
        for scheme in ("euler", "heun"):
            s = ResNetSpec(2, 1, width=6, num_layers=10, basis=spec.basis, scheme=scheme)
            errors = [_rel(apply(params, x, s, num_layers=int(m)), ref) for m in depths]
            slopes[scheme] = np.polyfit(np.log(depths), np.log(errors), 1)[0]
    assert abs(slopes["euler"] + 1.0) < 0.1, slopes
    assert abs(slopes["heun"] + 2.0) < 0.15, slopes


@pytest.mark.slow
@pytest.mark.parametrize("scheme", ["euler", "heun"])
def test_fixed_step_solve_is_the_network_with_as_many_layers(scheme):
    # diffrax's Euler/Heun on resnet.vector_field with M uniform steps takes the steps of
    # the M-layer network of the same scheme: equal up to float32 round-off in t.
    spec, params, x = _problem()
    s = ResNetSpec(2, 1, width=6, num_layers=10, basis=spec.basis, scheme=scheme)
    for m in (5, 40):
        np.testing.assert_allclose(
            ode.solve(params, x, s, solver=scheme, num_steps=m),
            apply(params, x, s, num_layers=m),
            rtol=1e-5,
            atol=1e-5,
        )


@pytest.mark.slow
def test_many_step_solve_converges_to_the_fine_network():
    # float64: Euler solves with M steps approach the 4096-layer network like 1/M
    # (both converge to the ODE at first order; the gap at M = 4096 is round-off only).
    with jax.enable_x64(True):
        spec, params, x = _problem()
        fine = apply(params, x, spec, num_layers=4096)
        steps = [64, 256, 1024]
        gaps = [_rel(ode.solve(params, x, spec, solver="euler", num_steps=m), fine) for m in steps]
        same = _rel(ode.solve(params, x, spec, solver="euler", num_steps=4096), fine)
    assert gaps[0] > gaps[1] > gaps[2], gaps
    # Gap (1/M − 1/4096)·C: the ratio of the first two is (1/64 − 1/4096)/(1/256 − 1/4096).
    np.testing.assert_allclose(gaps[0] / gaps[1], (63 / 4096) / (15 / 4096), rtol=0.1)
    assert same < 1e-10, same


def test_heun_matches_a_naive_loop():
    spec, params, x = _problem(basis=bases.Cubic())
    s = ResNetSpec(2, 1, width=6, num_layers=3, basis=bases.Cubic(), scheme="heun")
    h = jnp.tanh(x @ params[sites.INPUT_WEIGHT] + params[sites.INPUT_BIAS])
    phi = bases.Cubic().evaluate(np.arange(4) / 3)
    w = np.tensordot(phi, params[sites.HIDDEN_WEIGHT], axes=1)
    b = np.tensordot(phi, params[sites.HIDDEN_BIAS], axes=1)
    for layer in range(3):
        k1 = jnp.tanh(h @ w[layer] + b[layer])
        k2 = jnp.tanh((h + k1 / 3) @ w[layer + 1] + b[layer + 1])
        h = h + (k1 + k2) / 6
    expected = h @ params[sites.OUTPUT_WEIGHT] + params[sites.OUTPUT_BIAS]
    np.testing.assert_allclose(apply(params, x, s), expected, rtol=1e-5, atol=1e-6)


def test_scheme_refusals():
    with pytest.raises(ValueError, match="`scheme` must be one of"):
        ResNetSpec(2, 1, scheme="rk4")
    with pytest.raises(ValueError, match='`scheme` "heun" needs W.*per-layer basis'):
        ResNetSpec(2, 1, num_layers=4, basis=bases.PerLayer(), scheme="heun")
    with pytest.raises(ValueError, match="residual=False"):
        ResNetSpec(2, 1, residual=False, scheme="heun")


def test_scheme_survives_save_and_load(tmp_path):
    from bayesresnet.posterior import load

    spec = ResNetSpec(2, 1, width=6, num_layers=4, basis=bases.Legendre(2), scheme="heun")
    post = _posterior(spec)
    assert load(post.save(tmp_path / "p.npz")).spec == spec


@pytest.mark.slow  # five float64 gradient programs (≈ 15 s on 2 cores)
def test_gradient_gap_in_the_linear_case_matches_closed_forms_and_shrinks_like_1_over_l():
    import scipy.linalg

    # σ = id, W(t) ≡ W (Constant basis), b ≡ 0: f = h0 (I + W/L)^L W_out + b_out for the
    # network, h0 exp(W) W_out + b_out for the ODE. With M = h0ᵀ r W_outᵀ the gradients
    # in W are Σ_j Δt (Pᵀ)^j M (Pᵀ)^{L−1−j}, P = I + ΔtW, and the Fréchet derivative of
    # exp at Wᵀ in the direction M.
    with jax.enable_x64(True):
        spec = ResNetSpec(
            2, 1, width=4, num_layers=4, basis=bases.Constant(), activation="identity"
        )
        params = init_params(jax.random.key(0), spec, scale=1.5)
        x = jax.random.normal(jax.random.key(1), (10, 2))
        y = jnp.sin(x[:, :1])
        g_adj = jax.jit(ode.adjoint_gradient, static_argnums=3)(params, x, y, spec)
        backprop = jax.jit(ode.backprop_gradient, static_argnums=(3, 4))
        depths = [4, 8, 16, 32]
        grads = {m: backprop(params, x, y, spec, m) for m in depths}
        gaps = np.array([float(ode.relative_difference(grads[m], g_adj)) for m in depths])
        gap4 = float(ode.gradient_gap(params, x, y, spec, 4))
    w = np.asarray(params[sites.HIDDEN_WEIGHT][0])
    h0 = np.asarray(x) @ np.asarray(params[sites.INPUT_WEIGHT])
    w_out, b_out = np.asarray(params[sites.OUTPUT_WEIGHT]), np.asarray(params[sites.OUTPUT_BIAS])

    def m_of(h1):
        return h0.T @ ((h1 @ w_out + b_out - np.asarray(y)) @ w_out.T)

    exact_cont = scipy.linalg.expm_frechet(w.T, m_of(h0 @ scipy.linalg.expm(w)))[1]
    np.testing.assert_allclose(g_adj[sites.HIDDEN_WEIGHT][0], exact_cont, rtol=1e-6, atol=1e-8)
    for m in depths:
        pt = np.eye(4) + w.T / m
        mm = m_of(h0 @ np.linalg.matrix_power(pt.T, m))
        powers = [np.linalg.matrix_power(pt, j) for j in range(m)]
        exact = sum(powers[j] @ mm @ powers[m - 1 - j] for j in range(m)) / m
        np.testing.assert_allclose(grads[m][sites.HIDDEN_WEIGHT][0], exact, rtol=1e-10)
    # Material at L = 4 (about 20%), then O(1/L): gap × L settles (0.78, 0.89, 0.95, 0.98).
    assert gaps[0] > 0.1
    np.testing.assert_allclose(gap4, gaps[0], rtol=1e-9)
    scaled = gaps * np.array(depths)
    assert scaled.max() / scaled.min() < 1.35, scaled
    # Log-log slope −0.90 over L = 4…32: the O(1/L²) term still shows at L = 4.
    assert abs(np.polyfit(np.log(depths), np.log(gaps), 1)[0] + 1.0) < 0.15


@pytest.mark.slow  # two ensembles, one through diffrax's adjoint (≈ 20 s on 2 cores)
def test_adjoint_trained_ensemble_reaches_the_backprop_loss():
    import warnings

    import bayesresnet as brn

    ds = brn.problems.get("sine").sample(0, 30, 10)
    spec = ResNetSpec(1, 1, width=8, num_layers=16, basis=bases.Legendre(2))
    losses = {}
    for gradient in ("backprop", "adjoint"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # unconverged members: fine here
            post = brn.fit(
                spec, ds, method="ensemble", num_members=3, num_steps=400, gradient=gradient
            )
        assert post.settings["gradient"] == gradient
        losses[gradient] = post.sample_stats["loss"][0]
    # Same seeds, same initial members: each member's final negative log posterior
    # (≈ −120 here) is within 3% between the 16-layer network and its ODE (16 layers
    # give an O(1/16) model difference; measured: 1.1%, 0.6%, 0.01%).
    np.testing.assert_allclose(losses["adjoint"], losses["backprop"], rtol=0.03)


def test_gradient_option_refusals():
    import bayesresnet as brn
    from bayesresnet.infer import EnsembleConfig

    with pytest.raises(ValueError, match="`gradient` must be one of"):
        EnsembleConfig(gradient="forward")
    ds = brn.problems.get("sine").sample(0, 10, 5)
    spec = ResNetSpec(1, 1, width=4, num_layers=3, basis=bases.PerLayer())
    with pytest.raises(ValueError, match="per-layer basis"):
        brn.fit(spec, ds, method="ensemble", num_members=1, num_steps=2, gradient="adjoint")
