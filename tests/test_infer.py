"""Inference engines: known answers, vmapped ensemble vs one-by-one, NUTS on the prior, SBC."""

import dataclasses
import warnings
from types import SimpleNamespace

import _sbc
import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import optax
import pytest
from _helpers import linear_data, linear_model, linear_posterior, tiny_spec
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import Predictive
from numpyro.infer.util import constrain_fn, potential_energy

import bayesresnet as brn
from bayesresnet import bases, sites
from bayesresnet.infer import (
    METHODS,
    Engine,
    EnsembleConfig,
    MCLMCConfig,
    NUTSConfig,
    SamplingAlgorithm,
    SVIConfig,
    ensemble,
    run_ensemble,
    run_mclmc,
    run_nuts,
    run_svi,
)
from bayesresnet.infer.base import Check, Estimators
from bayesresnet.infer.core import (
    _config_optimizer,
    make_member_trainer,
    member_inputs,
    sample_prior_unconstrained,
    train_members,
)
from bayesresnet.infer.nuts import NUTSInfo, nuts_kernel, resolve_chain_method, tree_depth


def test_ensemble_members_reach_the_map(key):
    x, y = linear_data()
    result = run_ensemble(key, linear_model, x, y, EnsembleConfig(num_members=6, num_steps=3000))
    mean, cov = linear_posterior(x, y)
    members = result.samples["theta"][0]  # [M, 2]
    # Cosine decay ends at lr 1e-4, so Adam's final jitter is ~1e-4; float32 loss of a
    # quadratic with curvature ~100 resolves θ to ~1e-4 too. Allow 1e-3 (≈ 0.02 posterior sd).
    np.testing.assert_allclose(members, np.broadcast_to(mean, members.shape), atol=1e-3)
    assert all(result.extra["member_converged"])
    assert result.samples["theta"].shape == (1, 6, 2)


@pytest.mark.slow
def test_bootstrap_members_are_weighted_maps(key):
    x, y = linear_data()
    config = EnsembleConfig(num_members=4, num_steps=3000, bootstrap=True)
    result = run_ensemble(key, linear_model, x, y, config)
    _, _, weights = member_inputs(key, linear_model, x, y, config)
    weights = np.asarray(weights)
    assert np.all(weights.sum(axis=1) == len(x))  # multinomial counts of N draws
    for m in range(4):
        expected, _ = linear_posterior(x, y, weights=weights[m])
        np.testing.assert_allclose(result.samples["theta"][0, m], expected, atol=1e-3)
    assert np.ptp(result.samples["theta"][0, :, 0]) > 1e-2  # members differ


def test_anchored_members_are_anchored_maps(key):
    x, y = linear_data()
    config = EnsembleConfig(num_members=4, num_steps=3000, anchored=True)
    result = run_ensemble(key, linear_model, x, y, config)
    _, anchors, _ = member_inputs(key, linear_model, x, y, config)
    for m in range(4):
        expected, _ = linear_posterior(x, y, anchor=np.asarray(anchors["theta"][m]))
        np.testing.assert_allclose(result.samples["theta"][0, m], expected, atol=1e-3)


@pytest.mark.slow
def test_polish_finishes_each_member_at_its_own_bootstrap_anchored_map(key):
    """30 Adam steps leave members far off; L-BFGS on each member's own loss (its bootstrap
    weights and anchor) lands on that member's closed-form MAP, and the record says so."""
    x, y = linear_data()
    short = EnsembleConfig(num_members=3, num_steps=30, max_steps=30, bootstrap=True,
                           anchored=True)  # fmt: skip
    _, anchors, weights = member_inputs(key, linear_model, x, y, short)
    expected = np.stack([
        linear_posterior(x, y, weights=weights[m], anchor=np.asarray(anchors["theta"][m]))[0]
        for m in range(3)
    ])  # fmt: skip
    with pytest.warns(
        RuntimeWarning,
        match=r"after 30 steps; raise .num_steps. or .max_steps. \(method=.ensemble., "
        r"num_steps=…; method=.auto. takes no options\), or finish each member by L-BFGS",
    ):
        adam = run_ensemble(key, linear_model, x, y, short)
    assert np.abs(adam.samples["theta"][0] - expected).max() > 1e-2
    polished = run_ensemble(key, linear_model, x, y, dataclasses.replace(short, polish="lbfgs"))
    # float32 resolves θ of a quadratic with curvature ~100 to ~1e-4 (as for Adam above).
    np.testing.assert_allclose(polished.samples["theta"][0], expected, atol=1e-4)
    extra = polished.extra
    assert extra["member_converged"] == [True] * 3
    assert all(1 <= k < 20 for k in extra["member_polish_iterations"])
    assert all(g < short.polish_grad_tol * len(x) * 100 for g in extra["member_grad_norm"])
    assert extra["polish_loss_history"].shape[0] == 3
    assert polished.settings["polish"] == "lbfgs" and polished.settings["steps_run"] == 30
    post = SimpleNamespace(
        settings=polished.settings, extra=extra, num_draws=3, prior=brn.PriorSpec()
    )
    assert ensemble.gradients(post) == 3 * 30 + sum(extra["member_polish_evaluations"])
    assert "then up to" in ensemble.describe(post) and "L-BFGS" in ensemble.describe(post)


@pytest.mark.slow
def test_vmapped_ensemble_matches_members_trained_one_by_one(key):
    spec = brn.ResNetSpec(2, 1, width=4, num_layers=5, basis=bases.Cubic())
    rng = np.random.default_rng(0)
    x = rng.uniform(size=(15, 2))
    y = np.sin(x.sum(axis=1, keepdims=True))
    model = brn.make_model(spec, brn.PriorSpec(), brn.fit_scaler(x, y))
    x, y = jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32)
    # 100 steps: float32 rounding differs between the vmapped and the single-member
    # programs and grows along an Adam trajectory (from step ~127 on at this seed).
    config = EnsembleConfig(num_members=3, num_steps=100, bootstrap=True)
    together = train_members(key, model, x, y, config)
    u0, anchors, weights = member_inputs(key, model, x, y, config)
    train = jax.jit(
        make_member_trainer(model, x, y, _config_optimizer(config, u0), config.num_steps)
    )
    for m in range(3):
        u_m = jax.tree_util.tree_map(lambda a, m=m: a[m], u0)
        u, losses = train(u_m, None, weights[m])
        np.testing.assert_allclose(losses, together.losses[m], rtol=1e-4, atol=1e-4)
        for name in u:
            np.testing.assert_allclose(u[name], together.params[name][m], rtol=1e-4, atol=1e-5)


def test_diverged_members_are_flagged_and_dropped(key):
    x, y = linear_data()
    bad_x = x.at[0, 0].set(1e30)  # one absurd row makes the loss overflow float32
    with pytest.raises(FloatingPointError, match="all 2 ensemble members diverged"):
        run_ensemble(key, linear_model, bad_x, y, EnsembleConfig(num_members=2, num_steps=10))


def test_one_diverged_member_is_left_out(key, monkeypatch):
    x, y = linear_data()
    real = train_members

    def poisoned(*args, **kwargs):
        result = real(*args, **kwargs)
        losses = result.losses.at[1, -5:].set(jnp.nan)
        params = {k: v.at[1].set(jnp.nan) for k, v in result.params.items()}
        return type(result)(params, losses)

    monkeypatch.setattr("bayesresnet.infer.ensemble.train_members", poisoned)
    config = EnsembleConfig(num_members=3, num_steps=2000)
    with pytest.warns(RuntimeWarning, match=r"1 of 3 ensemble members diverged"):
        result = run_ensemble(key, linear_model, x, y, config)
    assert result.extra["member_diverged"] == [False, True, False]
    assert result.samples["theta"].shape == (1, 2, 2)
    assert np.all(np.isfinite(result.samples["theta"]))


@pytest.mark.slow
@pytest.mark.parametrize("guide", ["fullrank", "laplace"])
def test_svi_recovers_gaussian_posterior(guide, key):
    x, y = linear_data()
    num_draws = 4000
    config = SVIConfig(guide=guide, num_steps=4000, num_draws=num_draws, tol=0.0)
    result = run_svi(key, linear_model, x, y, config)
    mean, cov = linear_posterior(x, y)
    draws = result.samples["theta"][0]
    sd = np.sqrt(np.diag(cov))
    # The exact posterior is in both guide families. Error budget per coordinate: the
    # Monte-Carlo error of the draw mean (5·sd/√4000 ≈ 0.08 sd) plus 0.05 sd for the
    # stochastic optimizer's stationary jitter (final learning rate 1e-4).
    assert np.all(np.abs(draws.mean(axis=0) - mean) < 5 * sd / np.sqrt(num_draws) + 0.05 * sd)
    # Sample sd of 4000 normal draws has relative error 1/√(2·4000) ≈ 1.1%; allow 5 of
    # those plus 5% for the optimizer.
    assert np.all(np.abs(draws.std(axis=0) / sd - 1) < 5 / np.sqrt(2 * num_draws) + 0.05)
    assert result.extra["loss_history"].ndim == 1


@pytest.mark.slow
def test_svi_map_guide_gives_one_draw_at_the_mode(key):
    x, y = linear_data()
    result = run_svi(key, linear_model, x, y, SVIConfig(guide="map", num_steps=3000, tol=0.0))
    mean, _ = linear_posterior(x, y)
    assert result.samples["theta"].shape == (1, 1, 2)
    np.testing.assert_allclose(result.samples["theta"][0, 0], mean, atol=2e-3)


@pytest.mark.slow
def test_nuts_on_gaussian_posterior(key):
    x, y = linear_data()
    result = run_nuts(key, linear_model, x, y, NUTSConfig(num_warmup=300, num_samples=1000))
    mean, cov = linear_posterior(x, y)
    draws = result.samples["theta"]  # [4, 1000, 2]
    ess = effective_sample_size(draws)
    sd = np.sqrt(np.diag(cov))
    assert np.all(np.abs(draws.mean(axis=(0, 1)) - mean) < 5 * sd / np.sqrt(ess))
    for stat in ("diverging", "tree_depth", "step_size", "acceptance_rate", "energy", "n_steps"):
        assert result.sample_stats[stat].shape == (4, 1000), stat
    assert result.extra["num_gradient_evaluations"] == int(result.sample_stats["n_steps"].sum())
    assert set(result.timings) >= {"init_s", "warmup_s", "sampling_s"}


def test_tree_depth_from_steps():
    np.testing.assert_array_equal(tree_depth([1, 2, 3, 4, 7, 8, 1023]), [1, 2, 2, 3, 3, 4, 10])


def test_chain_method_resolution():
    assert resolve_chain_method("auto", 4, num_devices=1) == "vectorized"
    assert resolve_chain_method("auto", 4, num_devices=4) == "parallel"
    assert resolve_chain_method("auto", 1, num_devices=1) == "sequential"
    with pytest.warns(UserWarning, match=r"numpyro.set_host_device_count\(4\)"):
        assert resolve_chain_method("parallel", 4, num_devices=1) == "vectorized"


# ---------------------------------------------------------------------------------------
# The full model.


@pytest.mark.slow
def test_nuts_without_data_reproduces_the_prior(key):
    spec = tiny_spec()
    prior = brn.PriorSpec()
    model = brn.make_model(spec, prior, brn.Scaler.identity(1, 1))
    x, y = jnp.zeros((0, 1)), jnp.zeros((0, 1))
    result = run_nuts(key, model, x, y, NUTSConfig(num_warmup=500, num_samples=2000, init="prior"))
    scales = brn.model.prior_scales(spec, prior)
    checks = {
        "output_bias": (result.samples[sites.OUTPUT_BIAS][..., 0], 0.0, scales[sites.OUTPUT_BIAS]),
        "hidden_weight[1,0,1]": (
            result.samples[sites.HIDDEN_WEIGHT][..., 1, 0, 1],
            0.0,
            scales[sites.HIDDEN_WEIGHT],
        ),
        "input_weight[0,1]": (
            result.samples[sites.INPUT_WEIGHT][..., 0, 1],
            0.0,
            scales[sites.INPUT_WEIGHT],
        ),
    }
    for name, (draws, mean, sd) in checks.items():
        # First moment: error over its MCSE = sd/√ESS; second moment: E[θ²] = sd².
        ess = effective_sample_size(np.asarray(draws)[..., None])[0]
        assert abs(draws.mean() - mean) < 5 * sd / np.sqrt(ess), name
        sq = np.asarray(draws) ** 2
        ess2 = effective_sample_size(sq[..., None])[0]
        assert abs(sq.mean() - sd**2) < 5 * sq.std() / np.sqrt(ess2), name
    # HalfNormal(0.5) noise scale: mean 0.5·√(2/π).
    sigma = np.asarray(result.samples[sites.NOISE_SCALE][..., 0])
    ess = effective_sample_size(sigma[..., None])[0]
    expected = prior.noise_prior_scale * np.sqrt(2 / np.pi)
    assert abs(sigma.mean() - expected) < 5 * sigma.std() / np.sqrt(ess)
    assert result.extra["num_divergences"] < 0.01 * 4 * 2000


@pytest.mark.slow
def test_simulation_based_calibration(key):
    """SBC (Talts et al. 2018) of NUTS on the full model: ranks of the true values among
    posterior draws are uniform.

    ``R = 100`` data sets are simulated from the prior and the likelihood, and each gets
    its own NUTS chain (own step size and mass-matrix adaptation), vmapped over
    replicates; 29 kept draws per chain, 10 steps apart.
    """
    spec = tiny_spec()
    model = brn.make_model(spec, brn.PriorSpec(), brn.Scaler.identity(1, 1))
    x = jnp.linspace(-1, 1, 8)[:, None]
    truths = Predictive(model, num_samples=100)(jax.random.key(1), x)
    ys = truths[sites.OBS]  # [R, N, 1]
    init = sample_prior_unconstrained(jax.random.key(2), model, x, ys[0], 100)
    draws, diverging = _sbc.nuts_draws(key, model, x, ys, init)  # [R, kept, ...]
    _sbc.assert_uniform_ranks(truths, draws, spec)
    num_div = int(np.sum(diverging))
    assert num_div < 0.01 * diverging.size, num_div


# ---------------------------------------------------------------------------------------
# Entry point.


def test_fit_errors():
    spec = brn.ResNetSpec(2, 1, width=3, num_layers=2)
    x, y = np.zeros((10, 2)), np.zeros((10, 1))
    with pytest.raises(
        ValueError,
        match=r"`method` must be 'auto' or one of \['ensemble', 'mclmc', 'nuts', 'svi'\]",
    ):
        brn.fit(spec, x, y, method="hmc")
    with pytest.raises(ValueError, match=r"rows"):
        brn.fit(spec, x, np.zeros((9, 1)), method="ensemble")
    with pytest.raises(ValueError, match=r"`x` has 3 columns but spec.in_features=2"):
        brn.fit(spec, np.zeros((10, 3)), y, method="ensemble")
    with pytest.raises(ValueError, match=r"`y` has 2 columns but spec.out_features=1"):
        brn.fit(spec, x, np.zeros((10, 2)), method="ensemble")
    with pytest.raises(TypeError, match=r"unknown option\(s\) \['num_sample'\] for method='nuts'"):
        brn.fit(spec, x, y, method="nuts", num_sample=10)
    with pytest.raises(ValueError, match=r"`num_chains` must be ≥ 1; got 0"):
        brn.fit(spec, x, y, method="nuts", num_chains=0)
    with pytest.raises(ValueError, match=r"`guide` must be one of"):
        brn.fit(spec, x, y, method="svi", guide="flow")
    with pytest.raises(ValueError, match=r"`y` is required"):
        brn.fit(spec, x)
    with pytest.raises(TypeError, match=r"`spec` must be a ResNetSpec"):
        brn.fit("spec", x, y)
    with pytest.raises(TypeError, match=r"`prior` must be a PriorSpec"):
        brn.fit(spec, x, y, prior={})
    with pytest.raises(TypeError, match=r'method="auto" takes no method options; got \[.num_ch'):
        brn.fit(spec, x, y, num_chains=2)


def test_auto_chooses_the_ensemble_at_every_size_and_says_so():
    spec = brn.ResNetSpec(8, 1, width=8, num_layers=8, basis=brn.bases.Cubic())
    p = brn.num_params(spec)
    for rows in (20, 200, 499, 500, 1000, 2000, 100_000):  # the sizes of issue 22 and beyond
        choice = brn.infer.choose_method(rows, spec)
        assert choice.method == "ensemble"
        assert f"{rows} training rows, {p} parameters" in choice.reason
        polished = rows >= brn.infer.auto.AUTO_POLISH_MIN_ROWS
        batched = rows >= brn.infer.auto.AUTO_BATCH_MIN_ROWS
        steps = brn.infer.auto.AUTO_ADAM_STEPS
        expected = {"polish": "lbfgs"} if polished else {"num_steps": steps, "max_steps": steps}
        if batched:
            expected |= {
                "batch_size": brn.infer.auto.AUTO_BATCH_SIZE,
                "polish_window_tol": brn.infer.auto.AUTO_POLISH_WINDOW_TOL,
            }
        assert choice.options == expected
        assert ("polished by L-BFGS" in choice.reason) == polished
        assert ("9,000 steps with the learning rate's cosine decay" in choice.reason) != polished
        assert ("batches of 256 rows and its polish stopped" in choice.reason) == batched
        assert ("window test (polish_window_tol=0.003) from 2,000" in choice.reason) == batched
    # Every option it chooses is one the ensemble takes, together.
    for rows in (200, 100_000):
        brn.infer.EnsembleConfig(**brn.infer.choose_method(rows, spec).options)


def test_auto_learns_input_relevance_at_every_size_and_says_so():
    spec = brn.ResNetSpec(8, 1, width=8, num_layers=8, basis=brn.bases.Cubic())
    prior = brn.infer.auto.choose_prior()
    assert prior == brn.PriorSpec(ard=True)
    for rows in (20, 200, 100_000):
        choice = brn.infer.choose_method(rows, spec, prior)
        assert choice.prior == prior
        assert "input relevance (ARD) learned, each scale held at 1" in choice.reason
    # A prior the user gave is not auto's choice: the reason says nothing of it.
    choice = brn.infer.choose_method(100_000, spec)
    assert choice.prior is None and "ARD" not in choice.reason


@pytest.mark.slow
def test_fit_by_default_chooses_the_method_and_records_why(monkeypatch):
    """``brn.fit`` without a method runs ``auto``: the posterior names the concrete method
    and says why it was chosen (the report's method line carries it)."""
    from bayesresnet import workflow

    ds = brn.problems.get("sine").sample(0, 12, 5)
    spec = brn.ResNetSpec(1, 1, width=2, num_layers=2)
    with warnings.catch_warnings():  # 12 points: its members may not meet the tolerance
        warnings.simplefilter("ignore", RuntimeWarning)
        post = brn.fit(spec, ds)
        named = brn.fit(spec, ds, method="ensemble", num_steps=10)
    assert post.method == "ensemble" and post.settings["polish"] == "none"
    # Below AUTO_POLISH_MIN_ROWS: Adam only, one cosine decay over all its steps.
    steps = brn.infer.auto.AUTO_ADAM_STEPS
    assert post.settings["num_steps"] == post.settings["max_steps"] == steps
    assert post.settings["method_choice"].startswith('method="auto" chose ensemble (12 training')
    assert post.settings["method_choice"] in workflow.describe_method(post)
    assert "method_choice" not in named.settings
    # From AUTO_POLISH_MIN_ROWS rows the members are polished (here from 10 rows).
    monkeypatch.setattr(brn.infer.auto, "AUTO_POLISH_MIN_ROWS", 10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        polished = brn.fit(spec, ds)
    assert polished.settings["polish"] == "lbfgs" and "L-BFGS" in workflow.describe_method(polished)
    # Given no prior, auto learns input relevance at every size; a prior given (even the
    # default) is kept as it is.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        given = brn.fit(spec, ds, prior=brn.PriorSpec())
    for relevant in (post, polished):
        assert relevant.prior == brn.PriorSpec(ard=True)
        assert sites.ARD_SCALE in relevant.samples
        assert "ARD) learned" in relevant.settings["method_choice"]
        # Its scales were held for the first Adam steps, and it says so.
        held = brn.infer.core.ard_held_steps(0.3, relevant.settings["num_steps"])
        assert relevant.settings["ard_warmup"] == 0.3
        assert f"input scales held at 1 through the first {held} Adam steps" in (
            workflow.describe_method(relevant)
        )
    assert given.prior == brn.PriorSpec() and sites.ARD_SCALE not in given.samples
    assert "ARD" not in given.settings["method_choice"]
    assert "input scales held at 1" not in workflow.describe_method(given)


@pytest.mark.slow
def test_fit_accepts_a_dataset():
    ds = brn.problems.get("sine").sample(0, 12, 5)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2)
    post = brn.fit(spec, ds, method="svi", guide="map", num_steps=50, init_steps=10)
    assert post.input_names == ds.input_names
    assert post.output_names == ds.output_names
    assert post.method == "svi"
    with pytest.raises(ValueError, match="either a Dataset or"):
        brn.fit(spec, ds, ds.y_train)


def test_prior_draws_are_finite_and_independent(key):
    x, y = linear_data()
    u = sample_prior_unconstrained(key, linear_model, x, y, 500)
    theta = np.asarray(u["theta"])
    # 500 draws of N(0, 1): mean within 5/√500, sd within 5/√1000 relative.
    assert np.all(np.abs(theta.mean(axis=0)) < 5 / np.sqrt(500))
    assert np.all(np.abs(theta.std(axis=0) - 1) < 5 / np.sqrt(1000))


def test_svi_rising_loss_is_not_convergence():
    from bayesresnet.infer.svi import _plateaued

    n, tol = 100, 1e-3
    assert _plateaued(50.0, 50.05, n, tol)  # changed by 5e-4 per observation: a plateau
    assert _plateaued(50.05, 50.0, n, tol)
    assert not _plateaued(50.0, 40.0, n, tol)  # still improving
    assert not _plateaued(40.0, 50.0, n, tol)  # rose: not converged, keep optimizing


@pytest.mark.slow
def test_member_handlers_weight_the_likelihood_and_recentre_normal_priors(key):
    from bayesresnet.infer.core import anchor_prior, member_model

    spec = brn.ResNetSpec(1, 1, width=2, num_layers=2, basis=bases.Linear())
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(6, 1)), rng.normal(size=(6, 1))
    model = brn.make_model(spec, brn.PriorSpec(), brn.fit_scaler(x, y))
    u = sample_prior_unconstrained(key, model, x, y, 1)
    u = jax.tree_util.tree_map(lambda a: a[0], u)
    weights = jnp.asarray([0.0, 1, 2, 0, 1, 2])
    tr = numpyro.handlers.trace(
        numpyro.handlers.substitute(model, constrain_fn(model, (x, y), {}, u))
    ).get_trace(x, y)
    ll = np.asarray(tr[sites.OBS]["fn"].log_prob(y))  # [N]
    plain = potential_energy(model, (x, y), {}, u)
    weighted = potential_energy(member_model(model, None, weights), (x, y), {}, u)
    # Only the likelihood changes (the noise scale's Jacobian factor is untouched).
    np.testing.assert_allclose(weighted - plain, -np.sum((np.asarray(weights) - 1) * ll), rtol=1e-4)
    loc = {
        name: jnp.full(tr[name]["value"].shape, 2.0)
        for name in (sites.OUTPUT_BIAS, sites.NOISE_SCALE)
    }
    anchored = numpyro.handlers.trace(
        numpyro.handlers.seed(anchor_prior(model, loc), key)
    ).get_trace(x, y)
    np.testing.assert_array_equal(anchored[sites.OUTPUT_BIAS]["fn"].base_dist.loc, [2.0])
    assert type(anchored[sites.NOISE_SCALE]["fn"].base_dist).__name__ == "HalfNormal"


@pytest.mark.slow
def test_svi_uses_a_users_optax_optimizer(key):
    """With a zero learning rate the point-mass guide stays where it started (the prior
    median): 10 steps and 50 give the same draw; the default optimizer moves it."""
    x, y = linear_data()

    def fit(steps, optimizer=None):
        config = SVIConfig(guide="map", init="median", num_steps=steps, optimizer=optimizer)
        return run_svi(key, linear_model, x, y, config)

    frozen = fit(50, optax.sgd(0.0))
    np.testing.assert_array_equal(frozen.samples["theta"], fit(10, optax.sgd(0.0)).samples["theta"])
    assert frozen.settings["optimizer"] == "custom optax.GradientTransformation"
    moved = fit(50).samples["theta"]
    assert np.all(np.abs(moved - frozen.samples["theta"]) > 1e-2)
    with pytest.raises(TypeError, match=r"`optimizer` must be an optax.GradientTransformation"):
        SVIConfig(optimizer=0.01)


def test_every_method_is_an_engine_in_the_registry():
    configs = {
        "nuts": NUTSConfig,
        "mclmc": MCLMCConfig,
        "svi": SVIConfig,
        "ensemble": EnsembleConfig,
    }
    runs = {"nuts": run_nuts, "mclmc": run_mclmc, "svi": run_svi, "ensemble": run_ensemble}
    for name, engine in METHODS.items():
        assert isinstance(engine, Engine)
        assert engine[0] is configs[name] and engine.run is runs[name]
        assert engine.chains == (name in ("nuts", "mclmc"))


@pytest.mark.slow
def test_convergence_dispatches_through_the_registry(monkeypatch):
    """The diagnostics take a method's checks from its engine, not from a branch per name."""
    x = np.linspace(-1, 1, 6)[:, None]
    with warnings.catch_warnings():  # five steps: the members have not converged
        warnings.simplefilter("ignore", RuntimeWarning)
        post = brn.fit(tiny_spec(), x, np.sin(x), method="ensemble", num_members=2, num_steps=5)
    mine = Check("my check", "warn", "1", "0")
    engine = METHODS["ensemble"]._replace(checks=lambda post, estimators: [mine])
    monkeypatch.setitem(METHODS, "ensemble", engine)
    result = brn.diagnostics.convergence(post)
    assert result.checks == (mine,) and result.verdict == "warn"


def test_nuts_kernel_is_a_sampling_algorithm(key):
    """init(key, position) and step(key, state) -> (state, info) over a log density."""
    algorithm = nuts_kernel(lambda u: -0.5 * jnp.sum(u**2), num_warmup=0, max_tree_depth=3)
    assert isinstance(algorithm, SamplingAlgorithm)
    state = algorithm.init(key, jnp.zeros(2))
    state, info = jax.jit(algorithm.step)(jax.random.key(1), state)
    assert isinstance(info, NUTSInfo)
    assert 1 <= int(info.num_steps) <= 7 and state.z.shape == (2,)
    assert np.isfinite(float(info.energy)) and not bool(info.diverging)


@pytest.mark.slow
@pytest.mark.parametrize(("min_precision", "judged"), [(1.0, "pass"), (1e4, "warn")])
def test_laplace_draws_get_a_pareto_khat(min_precision, judged, key):
    """The Laplace guide trains as a point mass but draws from N(MAP, H⁻¹): its draws have
    importance weights log p − log q, and k̂ judges them (it was skipped as a point guide).

    On the linear-Gaussian model the Laplace approximation is the posterior, so the
    weights are constant; flooring the precision at 1e4 (sd 0.01, about a tenth of the
    posterior's) makes q too narrow and the weights heavy-tailed (k̂ ≈ 0.9).
    """
    from bayesresnet.diagnostics import pareto_khat
    from bayesresnet.infer import svi

    x, y = linear_data()
    config = SVIConfig(
        guide="laplace", num_steps=2000, num_draws=1000, laplace_min_precision=min_precision
    )
    result = run_svi(key, linear_model, x, y, config)
    lw = result.extra["log_weights"]
    assert lw.shape == (1000,) and np.all(np.isfinite(lw))
    if min_precision == 1.0:
        assert np.ptp(lw) < 1e-3  # p/q constant: q is the exact posterior
    post = SimpleNamespace(extra=result.extra, settings=result.settings)  # what checks reads
    estimators = Estimators(e_bfmi=None, pareto_khat=pareto_khat)
    found = {c.name: c for c in svi.checks(post, estimators)}
    assert found["Pareto k̂"].status == judged


def test_an_ensemble_trains_on_until_its_members_converge(key):
    """After ``num_steps`` the members train on, block by block, until each has settled."""
    x, y = linear_data()
    # Adam at 0.005 needs a few hundred steps from a prior draw to the MAP.
    config = EnsembleConfig(
        num_members=3, num_steps=200, schedule="constant", learning_rate=0.005, max_steps=4000
    )
    result = run_ensemble(key, linear_model, x, y, config)  # no warning (warnings are errors)
    steps = result.settings["steps_run"]
    assert 200 < steps < 4000 and steps % 20 == 0  # whole blocks of num_steps / 10
    assert result.extra["member_converged"] == [True] * 3
    assert result.extra["loss_history"].shape == (3, -(-steps // config.history_every))
    # A block-mean change below 1e-3 per observation stops near the MAP, not at it: within
    # a posterior sd (about 0.1 here), where the loss is within a fraction of a nat.
    mean, cov = linear_posterior(x, y)
    assert np.all(np.abs(result.samples["theta"][0] - mean) < np.sqrt(np.diag(cov)))
    post = SimpleNamespace(settings=result.settings, extra=result.extra, x_train=np.asarray(x))
    estimators = Estimators(e_bfmi=None, pareto_khat=None)
    assert {c.name: c.status for c in ensemble.checks(post, estimators)} == {
        "members diverged": "pass",
        "members converged": "pass",
        "spread of member losses": "pass",
    }
    assert ensemble.gradients(post) == 3 * steps


def test_an_unconverged_ensemble_still_warns(key):
    x, y = linear_data()
    config = EnsembleConfig(
        num_members=3, num_steps=40, schedule="constant", learning_rate=0.02, max_steps=40
    )
    with pytest.warns(RuntimeWarning, match=r"3 ensemble member\(s\) had not converged after 40"):
        result = run_ensemble(key, linear_model, x, y, config)
    assert result.settings["steps_run"] == 40
    post = SimpleNamespace(settings=result.settings, extra=result.extra, x_train=np.asarray(x))
    found = {c.name: c for c in ensemble.checks(post, Estimators(None, None))}
    assert found["members converged"].status == "warn"
    assert 'raise num_steps or max_steps (method="ensemble"; method="auto" takes no' in (
        found["members converged"].advice
    )


def test_max_steps_cannot_be_below_num_steps():
    with pytest.raises(ValueError, match="max_steps"):
        EnsembleConfig(num_steps=100, max_steps=50)


@pytest.mark.slow
@pytest.mark.parametrize("problem", ["sine", "ishigami"])
@pytest.mark.parametrize("basis", ["cubic", "per_layer"])
def test_the_default_ensemble_converges_on_the_smoke_problems(problem, basis):
    """The shipped smoke study's problems with the default ensemble settings (2 members):
    no warning (warnings are errors here) and every check of the ensemble passes."""
    from bayesresnet import diagnostics

    ds = brn.problems.get(problem).sample(0, 40, 100, noise=0.1)
    spec = brn.ResNetSpec(
        ds.x_train.shape[1], 1, width=4, num_layers=3, basis=bases.make_basis(basis)
    )
    post = brn.fit(spec, ds, method="ensemble", num_members=2)
    result = diagnostics.convergence(post)
    assert result.verdict == "pass", result.failed()
