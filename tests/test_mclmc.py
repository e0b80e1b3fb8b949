"""MCLMC engine: a conjugate posterior, SBC on a tiny network, bad runs flagged, bad settings."""

import _sbc
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _helpers import linear_data, linear_model, linear_posterior, tiny_spec
from numpyro.diagnostics import effective_sample_size
from numpyro.infer import Predictive

import bayesresnet as brn
from bayesresnet import sites
from bayesresnet.infer import MCLMCConfig, run_mclmc
from bayesresnet.infer.core import sample_prior_unconstrained


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["unadjusted", "adjusted"])
def test_mclmc_on_gaussian_posterior(key, variant):
    """Mean and variance of a 2-d conjugate posterior within 5 Monte-Carlo standard errors.

    8 chains × 1000 kept draws (every 5th step); the errors use each coordinate's ESS.
    """
    x, y = linear_data()
    config = MCLMCConfig(variant=variant, num_samples=1000, thinning=5, init_steps=500)
    result = run_mclmc(key, linear_model, x, y, config)
    mean, cov = linear_posterior(x, y)
    draws = np.asarray(result.samples["theta"])  # [8, 1000, 2]
    assert draws.shape == (8, 1000, 2)
    sd = np.sqrt(np.diag(cov))
    ess = effective_sample_size(draws)
    assert np.all(np.abs(draws.mean(axis=(0, 1)) - mean) < 5 * sd / np.sqrt(ess))
    sq = (draws - mean) ** 2  # its mean estimates the variance
    ess2 = effective_sample_size(sq)
    se2 = sq.reshape(-1, 2).std(axis=0) / np.sqrt(ess2)
    assert np.all(np.abs(sq.mean(axis=(0, 1)) - sd**2) < 5 * se2)
    for stat in ("lp", "energy_change", "diverging", "n_steps", "step_size"):
        assert result.sample_stats[stat].shape == (8, 1000), stat
    assert not result.sample_stats["diverging"].any()
    assert result.extra["num_gradient_evaluations"] > 0
    assert set(result.timings) >= {"init_s", "warmup_s", "sampling_s"}


@pytest.mark.slow
def test_mclmc_simulation_based_calibration(key):
    """SBC (Talts et al. 2018) of unadjusted MCLMC on the full model at tiny size.

    ``R = 100`` data sets from the prior predictive; each gets its own chain of the
    engine's kernel (:func:`~bayesresnet.infer.mclmc.mclmc_kernel`), started at a prior
    draw and tuned on its own (BlackJAX's tuner, 1000 steps), all vmapped in one program.
    29 kept draws per chain, 10 steps apart.
    """
    spec = tiny_spec()
    model = brn.make_model(spec, brn.PriorSpec(), brn.Scaler.identity(1, 1))
    x = jnp.linspace(-1, 1, 8)[:, None]
    num_replicates, num_kept, thin = 100, 29, 10
    truths = Predictive(model, num_samples=num_replicates)(jax.random.key(1), x)
    ys = truths[sites.OBS]  # [R, N, 1]
    init = sample_prior_unconstrained(jax.random.key(2), model, x, ys[0], num_replicates)
    config = MCLMCConfig(num_warmup=1000, num_samples=num_kept, thinning=thin)
    draws = _sbc.mclmc_draws(key, model, x, ys, init, config, num_kept=num_kept)
    _sbc.assert_uniform_ranks(truths, draws, spec)


@pytest.mark.slow
def test_mclmc_fit_gives_a_posterior_with_diagnostics():
    data = brn.problems.get("sine").sample(seed=0, num_train=30, num_test=20)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2, basis=brn.bases.Linear())
    post = brn.fit(
        spec,
        data,
        method="mclmc",
        num_chains=4,
        num_warmup=200,
        num_samples=50,
        thinning=2,
        init_steps=300,
    )
    assert post.method == "mclmc"
    assert post.samples[sites.HIDDEN_WEIGHT].shape == (4, 50, 2, 3, 3)
    pred = post.predict(data.x_test)
    assert pred.mean.shape == (20, 1)
    diag = brn.diagnostics.convergence(post)
    names = [c.name for c in diag.checks]
    for name in (
        "R-hat within chains, function space",
        "bulk ESS within chains, function space",
        "nested R-hat between chains (modes), function space",
        "energy error variance per dimension",
    ):
        assert name in names
    assert "R-hat, function space" not in names  # chains may sit in different modes


@pytest.mark.slow
def test_mclmc_diagnostics_flag_chains_stuck_in_their_modes():
    """A step size far too small leaves each chain at its own MAP fit, unmixed within its
    mode: the within-chain R-hat and the verdict fail."""
    data = brn.problems.get("sine").sample(seed=0, num_train=30, num_test=20)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2, basis=brn.bases.Linear())
    post = brn.fit(
        spec,
        data,
        method="mclmc",
        num_chains=4,
        num_warmup=0,
        step_size=1e-6,
        L=1e-5,
        num_samples=50,
        init_steps=300,
    )
    diag = brn.diagnostics.convergence(post)
    rhat = next(c for c in diag.checks if c.name == "R-hat within chains, function space")
    assert rhat.status == "fail"
    assert "within its own mode" in rhat.advice
    assert diag.verdict == "fail"


@pytest.mark.slow
def test_adjusted_kernel_reports_acceptance():
    x, y = linear_data()
    config = MCLMCConfig(variant="adjusted", num_warmup=100, num_samples=20, init_steps=200)
    result = run_mclmc(jax.random.key(0), linear_model, x, y, config)
    rate = result.sample_stats["acceptance_rate"]
    assert rate.shape == (8, 20)
    assert np.all((rate >= 0) & (rate <= 1))


def test_mclmc_settings_are_checked():
    with pytest.raises(ValueError, match=r"`step_size` must be a finite number > 0; got -0.1"):
        MCLMCConfig(step_size=-0.1)
    with pytest.raises(ValueError, match=r"`step_size` must be a finite number > 0; got 0"):
        MCLMCConfig(step_size=0.0)
    with pytest.raises(ValueError, match=r"`num_chains` must be ≥ 1; got 0"):
        MCLMCConfig(num_chains=0)
    with pytest.raises(ValueError, match=r"`variant` must be one of"):
        MCLMCConfig(variant="metropolis")
    with pytest.raises(ValueError, match=r"`L` must be a finite number > 0"):
        MCLMCConfig(L=0.0)
    with pytest.raises(ValueError, match=r"`num_warmup` must be ≥ 20 to tune"):
        MCLMCConfig(num_warmup=5)
    spec = brn.ResNetSpec(1, 1, width=2, num_layers=2)
    with pytest.raises(
        TypeError, match=r"unknown option\(s\) \['num_members'\] for method='mclmc'"
    ):
        brn.fit(spec, np.zeros((5, 1)), np.zeros((5, 1)), method="mclmc", num_members=3)


def test_a_chain_stuck_after_warm_up_is_restarted_from_the_best_tuned_chain():
    """Chain 1 tuned to step size 0 (BlackJAX's tuner after non-finite energies) and
    chain 3 to a non-finite log density: both take the state and tuned parameters of the
    healthy chain with the highest log density (chain 2); the others are untouched."""
    from blackjax.adaptation.mclmc_adaptation import MCLMCAdaptationState
    from blackjax.mcmc.integrators import IntegratorState

    from bayesresnet.infer.mclmc import MCLMCChain, restart_stuck_chains

    position = jnp.arange(8.0).reshape(4, 2)
    state = IntegratorState(
        position, -position, jnp.asarray([-5.0, -1e6, -2.0, jnp.nan]), 2 * position
    )
    params = MCLMCAdaptationState(
        jnp.asarray([1.0, 1.1, 1.2, 1.3]), jnp.asarray([0.2, 0.0, 0.3, 0.25]), jnp.ones((4, 2))
    )
    chains, stuck = restart_stuck_chains(MCLMCChain(state, params))
    assert stuck.tolist() == [False, True, False, True]
    source = [0, 2, 2, 2]
    for got, old in zip(
        jax.tree_util.tree_leaves(chains), jax.tree_util.tree_leaves((state, params))
    ):
        np.testing.assert_array_equal(got, np.asarray(old)[source])
    # A healthy set, and one where every chain is stuck, are left as they are.
    healthy = MCLMCChain(
        state._replace(logdensity=jnp.zeros(4)), params._replace(step_size=jnp.ones(4))
    )
    assert not restart_stuck_chains(healthy)[1].any()
    dead = MCLMCChain(state, params._replace(step_size=jnp.zeros(4)))
    same, stuck = restart_stuck_chains(dead)
    assert not stuck.any() and same is dead


@pytest.mark.slow
def test_a_run_restarts_a_stuck_chain_warns_and_records_it(key, monkeypatch):
    """The engine's wiring of :func:`restart_stuck_chains`: chain 1's tuned step size set
    to 0 after warm-up is restarted (warning, ``extra["restarted_chains"]``) and samples
    with a healthy chain's step size."""
    from bayesresnet.infer import mclmc

    real = mclmc.restart_stuck_chains

    def stall_chain_1(chains):
        step = chains.params.step_size.at[1].set(0.0)
        return real(chains._replace(params=chains.params._replace(step_size=step)))

    monkeypatch.setattr(mclmc, "restart_stuck_chains", stall_chain_1)
    x, y = linear_data()
    config = MCLMCConfig(num_chains=3, num_warmup=60, num_samples=10, thinning=1, init_steps=50)
    with pytest.warns(RuntimeWarning, match=r"MCLMC: 1 of 3 chains ended their warm-up stuck"):
        result = run_mclmc(key, linear_model, x, y, config)
    assert result.extra["restarted_chains"] == [1]
    step = result.sample_stats["step_size"][:, 0]
    assert step[1] > 0 and step[1] in (step[0], step[2])


def _stiff_gaussian(scales):
    """Log density of a centred Gaussian with the given sds (one stiff direction)."""
    scales = jnp.asarray(scales)

    def log_density(z):
        return -0.5 * jnp.sum((z / scales) ** 2)

    return log_density


def _mean_square_energy(kernel, log_density, state, params, key, steps=400):
    def one(state, k):
        state, info = kernel(
            k, state, log_density, params.inverse_mass_matrix, params.L, params.step_size
        )
        return state, info.energy_change

    return float(jnp.mean(jax.lax.scan(one, state, jax.random.split(key, steps))[1] ** 2))


@pytest.mark.slow
def test_the_step_size_check_cuts_a_step_above_the_energy_target_and_keeps_one_below(key):
    """On a 10-d Gaussian with one sd of 0.05, a step size of 1.0 runs far above the
    energy-error target (the negative control); the check cuts it until a fresh run sits
    within 10× the target, and a step size already below it is left as it is."""
    import blackjax
    from blackjax.adaptation.mclmc_adaptation import MCLMCAdaptationState

    from bayesresnet.infer.mclmc import ENERGY_CHECK_ROUNDS, energy_checked_step_size

    dim, desired = 10, 5e-4
    log_density = _stiff_gaussian([0.05] + [1.0] * (dim - 1))
    kernel = blackjax.mcmc.mclmc.build_kernel()
    state = blackjax.mcmc.mclmc.init(jnp.full(dim, 0.1), log_density, key)
    k_check, k_before, k_after = jax.random.split(key, 3)

    def params(step):
        return MCLMCAdaptationState(jnp.sqrt(dim), jnp.asarray(step), jnp.ones(dim))

    before = _mean_square_energy(kernel, log_density, state, params(1.0), k_before) / dim
    assert before > 100 * desired  # the control: this step size is far too large
    state2, checked, ratios = energy_checked_step_size(
        kernel, log_density, state, params(1.0), k_check, 100, dim, desired
    )
    assert ratios.shape == (ENERGY_CHECK_ROUNDS,) and float(ratios[0]) > 1
    assert float(checked.step_size) < 1.0
    after = _mean_square_energy(kernel, log_density, state2, checked, k_after) / dim
    assert after < 10 * desired, (float(checked.step_size), after)
    # Below the target: never raised.
    _, kept, ratios = energy_checked_step_size(
        kernel, log_density, state, params(1e-3), k_check, 100, dim, desired
    )
    assert float(kept.step_size) == pytest.approx(1e-3) and np.all(np.asarray(ratios) <= 1)


@pytest.mark.slow
def test_the_step_size_check_runs_inside_the_warm_up_and_only_where_it_applies(key):
    from bayesresnet.infer.mclmc import ENERGY_CHECK_ROUNDS, energy_check_steps

    assert energy_check_steps(MCLMCConfig()) == 100  # 2 000 warm-up steps: 4 × 100 of them
    assert energy_check_steps(MCLMCConfig(num_warmup=199)) == 0  # rounds under 10 steps
    assert energy_check_steps(MCLMCConfig(step_size=0.1)) == 0  # the user's step size
    assert energy_check_steps(MCLMCConfig(variant="adjusted")) == 0
    x, y = linear_data()
    config = MCLMCConfig(num_chains=2, num_warmup=200, num_samples=10, init_steps=50)
    result = run_mclmc(key, linear_model, x, y, config)
    assert np.asarray(result.extra["energy_check_ratio"]).shape == (2, ENERGY_CHECK_ROUNDS)
    fixed = run_mclmc(key, linear_model, x, y, MCLMCConfig(**{**config.__dict__, "step_size": 0.1}))
    assert "energy_check_ratio" not in fixed.extra
    assert np.all(fixed.sample_stats["step_size"] == pytest.approx(0.1))
