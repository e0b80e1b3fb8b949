"""The output layer integrated out: the collapsed density, the conditional draws, SBC."""

import _sbc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.infer import Predictive
from numpyro.infer.util import log_density
from scipy.stats import multivariate_normal

import bayesresnet as brn
from bayesresnet import bases, sites
from bayesresnet.infer import NUTSConfig, _resolve_marginal
from bayesresnet.infer.core import sample_prior_unconstrained
from bayesresnet.marginal import OUTPUT_SITES, collapsed_model, draw_output_layer
from bayesresnet.stiffness import stiffness_penalty

SPEC = brn.ResNetSpec(2, 2, width=3, num_layers=2, basis=bases.Linear())
PRIOR = brn.PriorSpec()


def data(n=7, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 2))
    y = np.stack([np.sin(x[:, 0]), x[:, 1] ** 2], axis=1) + 0.1 * rng.normal(size=(n, 2))
    return x, y


def prior_draw(seed, x):
    model = brn.make_model(SPEC, PRIOR, brn.fit_scaler(*data()))
    draw = Predictive(model, num_samples=1)(jax.random.key(seed), jnp.asarray(x))
    return {k: v[0] for k, v in draw.items() if k != sites.OBS}


def closed_form(params, x, y, scaler):
    """In float64: the design U, the marginal log density of y, and β's conditional."""
    x_std = (x - scaler.x_mean) / scaler.x_std
    y_std = (y - scaler.y_mean) / scaler.y_std
    eye = {sites.OUTPUT_WEIGHT: jnp.eye(SPEC.width), sites.OUTPUT_BIAS: jnp.zeros(SPEC.width)}
    h = np.asarray(brn.apply(params | eye, jnp.asarray(x_std), SPEC), dtype=np.float64)
    s = brn.model.prior_scales(SPEC, PRIOR)
    u = np.hstack([h * s[sites.OUTPUT_WEIGHT], np.full((len(x), 1), s[sites.OUTPUT_BIAS])])
    sigma = np.asarray(params[sites.NOISE_SCALE], dtype=np.float64)
    log_marginal, conditionals = 0.0, []
    for o in range(y.shape[1]):
        cov = scaler.y_std[o] ** 2 * (sigma[o] ** 2 * np.eye(len(x)) + u @ u.T)
        log_marginal += multivariate_normal(np.full(len(x), scaler.y_mean[o]), cov).logpdf(y[:, o])
        precision = np.eye(u.shape[1]) + u.T @ u / sigma[o] ** 2
        cov_beta = np.linalg.inv(precision)
        conditionals.append((cov_beta @ u.T @ y_std[:, o] / sigma[o] ** 2, cov_beta))
    return u, log_marginal, conditionals


@pytest.mark.slow
def test_collapsed_density_is_the_marginal_likelihood_and_the_full_joint_over_the_conditional():
    x, y = data()
    scaler = brn.fit_scaler(x, y)
    params = prior_draw(1, x)
    hidden = {k: v for k, v in params.items() if k not in OUTPUT_SITES}
    collapsed = collapsed_model(SPEC, PRIOR, scaler)
    lp_collapsed, trace = log_density(collapsed, (jnp.asarray(x), jnp.asarray(y)), {}, hidden)
    u, log_marginal, conditionals = closed_form(params, x, y, scaler)
    # The factor site is the marginal likelihood of y (raw units), float32 against float64.
    site = trace[sites.OBS]
    factor = float(site["fn"].log_prob(site["value"]))
    assert factor == pytest.approx(log_marginal, rel=1e-5, abs=1e-3)
    # Chib's identity: log p(θ, w, y) − log p(w | θ, y) = log p(θ, y) for every w.
    full = brn.make_model(SPEC, PRIOR, scaler)
    s = brn.model.prior_scales(SPEC, PRIOR)
    for seed in (0, 1):
        w = prior_draw(10 + seed, x)
        values = hidden | {k: w[k] for k in OUTPUT_SITES}
        lp_full, _ = log_density(full, (jnp.asarray(x), jnp.asarray(y)), {}, values)
        log_cond = 0.0
        for o, (mean, cov) in enumerate(conditionals):
            beta = np.append(
                np.asarray(w[sites.OUTPUT_WEIGHT])[:, o] / s[sites.OUTPUT_WEIGHT],
                np.asarray(w[sites.OUTPUT_BIAS])[o] / s[sites.OUTPUT_BIAS],
            )
            log_cond += multivariate_normal(mean, cov).logpdf(beta)
        log_cond -= SPEC.out_features * (
            SPEC.width * np.log(s[sites.OUTPUT_WEIGHT]) + np.log(s[sites.OUTPUT_BIAS])
        )
        assert float(lp_full) - log_cond == pytest.approx(float(lp_collapsed), rel=1e-5, abs=1e-2)


@pytest.mark.slow
def test_conditional_draws_have_the_closed_form_mean_and_covariance():
    x, y = data()
    scaler = brn.fit_scaler(x, y)
    params = prior_draw(2, x)
    hidden = {k: v for k, v in params.items() if k not in OUTPUT_SITES}
    num = 4000
    keys = jax.random.split(jax.random.key(3), num)
    weight, bias = jax.vmap(lambda k: draw_output_layer(k, hidden, x, y, SPEC, PRIOR, scaler))(keys)
    s = brn.model.prior_scales(SPEC, PRIOR)
    _, _, conditionals = closed_form(params, x, y, scaler)
    for o, (mean, cov) in enumerate(conditionals):
        beta = np.hstack(
            [
                np.asarray(weight[:, :, o]) / s[sites.OUTPUT_WEIGHT],
                np.asarray(bias[:, o : o + 1]) / s[sites.OUTPUT_BIAS],
            ]
        )  # [num, w+1], independent draws
        sd = np.sqrt(np.diag(cov))
        # Mean: MCSE sd/√num; variance: MCSE of a sample variance ≈ var·√(2/num).
        assert np.all(np.abs(beta.mean(axis=0) - mean) < 5 * sd / np.sqrt(num))
        assert np.all(np.abs(beta.var(axis=0) - sd**2) < 5 * sd**2 * np.sqrt(2 / num))


@pytest.mark.slow
def test_fit_integrates_the_output_layer_out_by_default_with_a_normal_likelihood():
    x, y = data(20)
    options = dict(num_warmup=20, num_samples=20, num_chains=2, init_steps=20)
    post = brn.fit(SPEC, x, y, method="nuts", **options)
    assert post.settings["marginalize_output_used"] is True
    assert post.samples[sites.OUTPUT_WEIGHT].shape == (2, 20, SPEC.width, 2)
    assert post.samples[sites.OUTPUT_BIAS].shape == (2, 20, 2)
    assert np.all(np.isfinite(post.samples[sites.OUTPUT_WEIGHT]))
    # Different draws of the hidden layers get different output layers.
    assert np.std(post.samples[sites.OUTPUT_BIAS][..., 0]) > 0
    student = brn.PriorSpec(likelihood="student_t")
    assert _resolve_marginal(NUTSConfig(), student) is False  # "auto" keeps the layer
    assert _resolve_marginal(NUTSConfig(marginalize_output=False), PRIOR) is False
    with pytest.raises(ValueError, match="`marginalize_output=True` needs likelihood='normal'"):
        brn.fit(SPEC, x, y, method="mclmc", prior=student, marginalize_output=True)
    with pytest.raises(TypeError, match='`marginalize_output` must be true, false or "auto"'):
        NUTSConfig(marginalize_output="yes")
    assert NUTSConfig.baseline().marginalize_output is False


@pytest.mark.slow
def test_simulation_based_calibration_of_the_collapsed_sampler(key):
    """SBC (Talts et al. 2018) of NUTS on the collapsed model, output layer drawn after.

    Data sets come from the full model's prior; each gets its own NUTS chain on the
    collapsed model (vmapped over replicates), and each kept draw its output layer from
    the conditional. Ranks of the true values among the draws must be uniform.
    """
    spec = brn.ResNetSpec(1, 1, width=2, num_layers=2, basis=bases.Linear())
    scaler = brn.Scaler.identity(1, 1)
    full = brn.make_model(spec, PRIOR, scaler)
    model = collapsed_model(spec, PRIOR, scaler)
    x = jnp.linspace(-1, 1, 8)[:, None]
    truths = Predictive(full, num_samples=100)(jax.random.key(1), x)
    ys = truths[sites.OBS]  # [R, N, 1]

    def complete(k, draws, y):
        keys = jax.random.split(k, draws[sites.NOISE_SCALE].shape[0])
        weight, bias = jax.vmap(lambda kk, d: draw_output_layer(kk, d, x, y, spec, PRIOR, scaler))(
            keys, draws
        )
        return draws | {sites.OUTPUT_WEIGHT: weight, sites.OUTPUT_BIAS: bias}

    init = sample_prior_unconstrained(jax.random.key(2), model, x, ys[0], 100)
    draws, diverging = _sbc.nuts_draws(key, model, x, ys, init, complete=complete)
    _sbc.assert_uniform_ranks(truths, draws, spec)
    assert int(np.sum(diverging)) < 0.01 * diverging.size


@pytest.mark.slow
def test_collapsed_model_keeps_the_stiffness_penalty():
    """The penalty is of the hidden layers only, so the collapsed model adds it too."""
    x, y = data()
    scaler = brn.fit_scaler(x, y)
    hidden = {k: v for k, v in prior_draw(1, x).items() if k not in OUTPUT_SITES}
    args = (jnp.asarray(x), jnp.asarray(y))
    plain, _ = log_density(collapsed_model(SPEC, PRIOR, scaler), args, {}, hidden)
    stiff = brn.PriorSpec(stiffness_penalty=0.5)
    penalized, _ = log_density(collapsed_model(SPEC, stiff, scaler), args, {}, hidden)
    x_std = (jnp.asarray(x) - scaler.x_mean) / scaler.x_std
    expected = -0.5 * stiffness_penalty(hidden, x_std, SPEC)
    assert float(penalized - plain) == pytest.approx(float(expected), rel=1e-4)
    assert float(expected) < 0
