"""The non-centred hidden coefficients: the same density, the same prior through NUTS."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

import bayesresnet as brn
from bayesresnet import bases, sites
from bayesresnet.infer import MCLMCConfig, NUTSConfig, _resolve_noncentred, run_nuts
from bayesresnet.infer.core import anchor_prior
from bayesresnet.model import SCALED_SITES, drop_decentered, noncentred, prior_scales

SPEC = brn.ResNetSpec(1, 1, width=2, num_layers=2, basis=bases.Linear())
PRIOR = brn.PriorSpec(learn_basis_scale=True)


def centred_draw(seed, model, x):
    draw = Predictive(model, num_samples=1)(jax.random.key(seed), x)
    return {k: v[0] for k, v in draw.items() if k != sites.OBS}


@pytest.mark.slow
@pytest.mark.parametrize("anchored", [False, True])
def test_noncentred_density_is_the_centred_one_with_the_jacobian(anchored):
    """``log p(z, τ, …) = log p(C = m + sτz, τ, …) + Σ log(sτ)`` and the deterministic
    site is ``C``; with an anchor ``m`` the coefficients are centred at it."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(6, 1)))
    y = jnp.sin(x) + 0.1 * jnp.asarray(rng.normal(size=(6, 1)))
    model = brn.make_model(SPEC, PRIOR, brn.fit_scaler(x, y))
    values = centred_draw(1, model, x)
    loc = {name: 0.0 for name in SCALED_SITES}
    if anchored:
        anchors = centred_draw(2, model, x)
        loc = {name: anchors[name] for name in SCALED_SITES}
        model = anchor_prior(model, loc)
    tau = values[sites.BASIS_SCALE]
    s = prior_scales(SPEC, PRIOR)
    decentred, log_jac = {}, 0.0
    for name in SCALED_SITES:
        scale = s[name] * tau.reshape((-1,) + (1,) * (values[name].ndim - 1))
        scale = jnp.broadcast_to(scale, values[name].shape)
        decentred[name + "_decentered"] = (values[name] - loc[name]) / scale
        log_jac += float(jnp.sum(jnp.log(scale)))
    nc_values = {k: v for k, v in values.items() if k not in SCALED_SITES} | decentred
    lp_nc, trace = log_density(noncentred(model), (x, y), {}, nc_values)
    lp_c, _ = log_density(model, (x, y), {}, values)
    assert float(lp_nc) == pytest.approx(float(lp_c) + log_jac, rel=1e-5, abs=1e-3)
    for name in SCALED_SITES:
        assert trace[name]["type"] == "deterministic"
        np.testing.assert_allclose(trace[name]["value"], values[name], rtol=1e-5, atol=1e-6)
    assert set(drop_decentered(nc_values)) == set(values) - set(SCALED_SITES)


@pytest.mark.slow
def test_noncentred_nuts_without_data_reproduces_the_prior(key):
    """No data: the draws of ``C = s·τ·z`` have the prior's moments, ``E C = 0`` and
    ``E C² = s² E τ² = s²``, and ``τ ~ HalfNormal(1)`` has mean √(2/π); tolerances are
    five Monte-Carlo standard errors (from the ESS)."""
    model = noncentred(brn.make_model(SPEC, PRIOR, brn.Scaler.identity(1, 1)))
    x, y = jnp.zeros((0, 1)), jnp.zeros((0, 1))
    config = NUTSConfig(num_warmup=500, num_samples=2000, init="prior")
    result = run_nuts(key, model, x, y, config)
    samples = drop_decentered(result.samples)
    assert sites.HIDDEN_WEIGHT in samples and not any("decentered" in k for k in samples)
    s = prior_scales(SPEC, PRIOR)
    checks = {
        "hidden_weight[1,0,1]": (
            samples[sites.HIDDEN_WEIGHT][..., 1, 0, 1],
            s[sites.HIDDEN_WEIGHT],
        ),
        "hidden_bias[0,1]": (samples[sites.HIDDEN_BIAS][..., 0, 1], s[sites.HIDDEN_BIAS]),
    }
    for name, (draws, sd) in checks.items():
        draws = np.asarray(draws)
        ess = effective_sample_size(draws[..., None])[0]
        assert abs(draws.mean()) < 5 * sd / np.sqrt(ess), name
        sq = draws**2
        ess2 = effective_sample_size(sq[..., None])[0]
        assert abs(sq.mean() - sd**2) < 5 * sq.std() / np.sqrt(ess2), name
    tau = np.asarray(samples[sites.BASIS_SCALE][..., 1])
    ess = effective_sample_size(tau[..., None])[0]
    assert abs(tau.mean() - np.sqrt(2 / np.pi)) < 5 * tau.std() / np.sqrt(ess)
    assert result.extra["num_divergences"] < 0.01 * 4 * 2000


@pytest.mark.slow
def test_fit_samples_noncentred_and_returns_the_coefficients():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (20, 1))
    y = np.sin(3 * x) + 0.1 * rng.normal(size=x.shape)
    options = dict(num_warmup=10, num_samples=5, num_chains=2, init_steps=10)
    post = brn.fit(SPEC, x, y, method="nuts", prior=PRIOR, noncentred=True, **options)
    assert post.settings["noncentred_used"] is True
    assert sorted(post.samples) == sorted(
        set(sites.NETWORK) | {sites.BASIS_SCALE, sites.NOISE_SCALE}
    )
    assert post.samples[sites.HIDDEN_WEIGHT].shape == (2, 5, 2, 2, 2)
    assert np.all(np.isfinite(post.predict(x[:3]).mean))
    assert _resolve_noncentred(NUTSConfig(noncentred="auto"), PRIOR) is True
    assert _resolve_noncentred(MCLMCConfig(noncentred="auto"), brn.PriorSpec()) is False
    assert _resolve_noncentred(NUTSConfig(), PRIOR) is NUTSConfig().noncentred
    with pytest.raises(TypeError, match='`noncentred` must be true, false or "auto"'):
        NUTSConfig(noncentred="yes")
