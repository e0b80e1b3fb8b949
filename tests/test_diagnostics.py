"""Diagnostics: verdicts on posteriors with known defects, Pareto k̂, LOO-PIT, PPC p-values."""

import dataclasses
import warnings

import numpy as np
import pytest

import bayesresnet as brn
from bayesresnet import diagnostics, sites
from bayesresnet.posterior import Posterior


def fake_nuts_posterior(rng, *, shift_chain=0.0, num_chains=4, num_draws=400, divergent=0):
    """A NUTS-like posterior of a tiny network with iid draws (optionally one shifted chain)."""
    spec = brn.ResNetSpec(1, 1, width=2, num_layers=2, basis=brn.bases.Linear())
    shapes = brn.resnet.param_shapes(spec)
    samples = {}
    for name, shape in shapes.items():
        draws = 0.3 * rng.normal(size=(num_chains, num_draws) + shape)
        draws[0] += shift_chain
        samples[name] = draws
    samples[sites.NOISE_SCALE] = np.abs(rng.normal(0.1, 0.01, size=(num_chains, num_draws, 1)))
    diverging = np.zeros((num_chains, num_draws), bool)
    diverging.flat[:divergent] = True
    energy = rng.normal(size=(num_chains, num_draws))  # iid energies: E-BFMI ≈ 2
    stats = {
        "diverging": diverging,
        "tree_depth": np.full((num_chains, num_draws), 3),
        "energy": energy,
        "n_steps": np.full((num_chains, num_draws), 7),
    }
    x = np.linspace(-1, 1, 30)[:, None]
    return Posterior(
        spec=spec,
        prior=brn.PriorSpec(),
        scaler=brn.fit_scaler(x, np.sin(3 * x)),
        samples=samples,
        method="nuts",
        settings={"max_tree_depth": 10, "num_chains": num_chains},
        sample_stats=stats,
        timings={},
        extra={},
        x_train=x,
        y_train=np.sin(3 * x),
        input_names=("x",),
        output_names=("y",),
    )


def statuses(result):
    return {c.name: c.status for c in result.checks}


def test_well_mixed_iid_chains_pass():
    result = diagnostics.convergence(fake_nuts_posterior(np.random.default_rng(0)))
    s = statuses(result)
    assert s["R-hat, function space"] == "pass"
    assert s["bulk ESS, function space"] == "pass"
    assert s["divergences"] == "pass" and s["E-BFMI"] == "pass"
    assert result.verdict == "pass", result.failed()
    kinds = [r["kind"] for r in result.table]
    assert kinds.index("parameter") > 0 and set(kinds) == {"function", "parameter"}


def test_a_stuck_chain_fails_rhat_with_advice():
    result = diagnostics.convergence(fake_nuts_posterior(np.random.default_rng(0), shift_chain=1.0))
    s = statuses(result)
    assert s["R-hat, function space"] == "fail"
    assert s["R-hat, parameters"] == "warn"  # parameters only warn (hidden-unit symmetry)
    assert result.verdict == "fail"
    failed = {c.name: c for c in result.failed()}
    assert "num_warmup" in failed["R-hat, function space"].advice


def test_chains_in_permuted_modes_are_a_note_when_the_predictions_agree():
    """Swapping two hidden units leaves the function unchanged; a chain in the swapped mode
    disagrees on the weights (parameter R-hat ≫ 1.01) but not on the predictions."""
    post = fake_nuts_posterior(np.random.default_rng(0))
    s = {k: v.copy() for k, v in post.samples.items()}
    s[sites.INPUT_WEIGHT][..., 0, 0] += 1.0  # unit 0 differs from unit 1 in every chain
    perm = [1, 0]
    s[sites.INPUT_WEIGHT][0] = s[sites.INPUT_WEIGHT][0][..., perm]
    s[sites.INPUT_BIAS][0] = s[sites.INPUT_BIAS][0][..., perm]
    s[sites.HIDDEN_WEIGHT][0] = s[sites.HIDDEN_WEIGHT][0][..., perm, :][..., perm]
    s[sites.HIDDEN_BIAS][0] = s[sites.HIDDEN_BIAS][0][..., perm]
    s[sites.OUTPUT_WEIGHT][0] = s[sites.OUTPUT_WEIGHT][0][..., perm, :]
    swapped = dataclasses.replace(post, samples=s)
    result = diagnostics.convergence(swapped)
    checks = {c.name: c for c in result.checks}
    assert float(checks["R-hat, parameters"].value.split()[-1]) > 1.2
    assert checks["R-hat, parameters"].status == "note"
    assert checks["R-hat, function space"].status == "pass"
    assert result.verdict == "pass", result.failed()


def test_divergences_and_saturated_trees_are_reported():
    post = fake_nuts_posterior(np.random.default_rng(1), divergent=3)
    stats = dict(post.sample_stats, tree_depth=np.full((4, 400), 10))
    post = dataclasses.replace(post, sample_stats=stats)
    s = statuses(diagnostics.convergence(post))
    assert s["divergences"] == "fail"
    assert s["tree-depth saturation"] == "warn"


def test_low_ebfmi_fails():
    post = fake_nuts_posterior(np.random.default_rng(2))
    # A random walk with tiny steps: energy transitions are much smaller than the spread.
    walk = np.cumsum(0.05 * np.random.default_rng(3).normal(size=(4, 400)), axis=1)
    post = dataclasses.replace(post, sample_stats=dict(post.sample_stats, energy=walk))
    assert statuses(diagnostics.convergence(post))["E-BFMI"] == "fail"


def test_function_space_quantities_are_invariant_to_hidden_unit_permutation():
    post = fake_nuts_posterior(np.random.default_rng(4))
    perm = np.array([1, 0])
    s = dict(post.samples)
    s[sites.INPUT_WEIGHT] = s[sites.INPUT_WEIGHT][..., perm]
    s[sites.INPUT_BIAS] = s[sites.INPUT_BIAS][..., perm]
    s[sites.HIDDEN_WEIGHT] = s[sites.HIDDEN_WEIGHT][..., perm, :][..., perm]
    s[sites.HIDDEN_BIAS] = s[sites.HIDDEN_BIAS][..., perm]
    s[sites.OUTPUT_WEIGHT] = s[sites.OUTPUT_WEIGHT][..., perm, :]
    permuted = dataclasses.replace(post, samples=s)
    x_probe = post.x_train[:5]
    a = diagnostics.function_space_draws(post, x_probe)
    b = diagnostics.function_space_draws(permuted, x_probe)
    for name in a:
        np.testing.assert_allclose(a[name], b[name], rtol=1e-5, atol=1e-6)


def test_pareto_khat_small_for_good_weights_large_for_heavy_tails():
    rng = np.random.default_rng(0)
    # log w ~ N(0, 0.1²): nearly equal weights, k̂ well below 0.5.
    assert diagnostics.pareto_khat(0.1 * rng.normal(size=4000)) < 0.3
    # w ~ Pareto with tail index 1/k, k = 1: the fitted k̂ is near 1 (4000 draws: the
    # estimator's sd is about 0.1 for the 20% tail used).
    lw = np.log(rng.pareto(1.0, size=4000) + 1.0)
    assert 0.7 < diagnostics.pareto_khat(lw) < 1.4


def test_ppc_p_values_by_hand():
    import arviz as az

    y_obs = np.array([[0.0], [1.0], [2.0]])
    y_rep = np.stack([y_obs + d for d in (-1.0, 0.0, 1.0, 2.0)])[None]  # [1, 4, 3, 1]
    idata = az.from_dict(
        posterior_predictive={"y": y_rep},
        observed_data={"y": y_obs},
        coords={"obs": [0, 1, 2], "output": ["y"]},
        dims={"y": ["obs", "output"]},
    )
    rows = {r["statistic"]: r for r in diagnostics.ppc_statistics(idata)}
    # Shifts -1, 0, 1, 2 of the data: T(ỹ) ≥ T(y) for shifts ≥ 0 → p = 3/4 for location
    # statistics; the sd is identical for every shift → p = 1.
    assert rows["mean"]["p_value"] == 0.75 and rows["max"]["p_value"] == 0.75
    assert rows["sd"]["p_value"] == 1.0
    assert rows["mean"]["observed"] == 1.0


def test_loo_pit_of_a_calibrated_model_is_uniform():
    """Exact Normal model: draws of θ, and y_obs from the same predictive."""
    import arviz as az
    from scipy.stats import kstest

    rng = np.random.default_rng(0)
    n, s = 400, 1000
    mu = rng.normal(0, 0.05, size=(1, s, 1))  # posterior draws of a mean, sd 1 noise
    y_obs = rng.normal(size=(n, 1))
    y_rep = mu[..., None] + rng.normal(size=(1, s, n, 1))
    ll = -0.5 * (y_obs[None, None] - mu[..., None]) ** 2 - 0.5 * np.log(2 * np.pi)  # [1,S,N,1]
    idata = az.from_dict(
        posterior={"mu": mu[..., 0]},
        posterior_predictive={"y": y_rep},
        observed_data={"y": y_obs},
        log_likelihood={"y": ll},
        coords={"obs": np.arange(n), "output": ["y"]},
        dims={"y": ["obs", "output"]},
    )
    pit = diagnostics.loo_pit(idata)
    assert pit.shape == (n, 1)
    # 400 independent uniforms: the KS test at α = 0.001 fails with probability 0.001.
    assert kstest(pit[:, 0], "uniform").pvalue > 1e-3
    # A model twice too narrow gives a U-shaped PIT: rejected.
    narrow = az.from_dict(
        posterior={"mu": mu[..., 0]},
        posterior_predictive={"y": 0.5 * y_rep},
        observed_data={"y": y_obs},
        log_likelihood={"y": ll},
        coords={"obs": np.arange(n), "output": ["y"]},
        dims={"y": ["obs", "output"]},
    )
    assert kstest(diagnostics.loo_pit(narrow)[:, 0], "uniform").pvalue < 1e-6


def test_inference_data_works_with_arvizs_loo_pit(rng):
    """Log-likelihood and observed data agree in shape, so ArviZ's LOO-PIT and its plot run."""
    import arviz as az
    from matplotlib.figure import Figure

    post = fake_nuts_posterior(rng, num_chains=2, num_draws=50)
    idata = diagnostics.to_inference_data(post)
    assert idata.log_likelihood["y"].shape == (2, 50, 30, 1)
    assert idata.log_likelihood["y"].dims[2:] == idata.observed_data["y"].dims
    np.testing.assert_array_equal(diagnostics.loo_pit(idata), az.loo_pit(idata, y="y"))
    ax = Figure().subplots()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PSIS k̂ warnings of 100 iid draws
        az.plot_loo_pit(idata, y="y", ax=ax)
    assert ax.lines  # the LOO-PIT curve is drawn
    # LOO and WAIC still leave out whole rows: the row sums of the log-likelihood.
    np.testing.assert_allclose(
        idata.log_likelihood["y"].values.sum(-1), post.log_likelihood(), rtol=1e-12
    )
    assert len(diagnostics.loo(idata)["pareto_k"]) == 30


def test_ensemble_and_svi_checks():
    post = fake_nuts_posterior(np.random.default_rng(5), num_chains=1, num_draws=4)
    ens = dataclasses.replace(
        post,
        method="ensemble",
        settings={"convergence_tol": 1e-3},
        sample_stats={},
        extra={
            "member_diverged": [False, True, False, False],
            "member_converged": [True, False, True, True],
            "member_final_loss": [-10.0, float("nan"), -10.5, -9.8],
        },
    )
    s = statuses(diagnostics.convergence(ens))
    assert s["members diverged"] == "fail" and s["members converged"] == "pass"
    svi = dataclasses.replace(
        post,
        method="svi",
        settings={"steps_run": 500, "tol": 1e-4},
        sample_stats={},
        extra={"converged": True, "log_weights": 0.1 * np.random.default_rng(0).normal(size=500)},
    )
    result = diagnostics.convergence(svi)
    assert statuses(result) == {"ELBO converged": "pass", "Pareto k̂": "pass"}
    assert result.verdict == "pass"


def test_compare_needs_two_runs():
    with pytest.raises(ValueError, match=r"`compare` needs at least two runs; got 1"):
        diagnostics.compare({"a": None})


def test_one_e_bfmi_for_the_verdict_and_the_energy_figure():
    from bayesresnet import diagnostics, plots

    energy = np.random.default_rng(5).normal(size=(3, 40)).cumsum(axis=1)
    values = diagnostics.e_bfmi(energy)
    by_hand = np.sum(np.diff(energy, axis=1) ** 2, axis=1) / np.sum(
        (energy - energy.mean(axis=1, keepdims=True)) ** 2, axis=1
    )
    np.testing.assert_allclose(values, by_hand, rtol=1e-12)
    (ax,) = plots.plot_energy(energy).axes
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    np.testing.assert_allclose([float(t.rsplit("=", 1)[1]) for t in texts[2:]], values.round(2))
    low = [str(c) for c, v in enumerate(values) if v < diagnostics.EBFMI_MIN]
    assert low and ax.get_title().endswith(f"in chain {', '.join(low)})")


def test_plot_wrappers_draw_an_inference_data(rng):
    from matplotlib.figure import Figure

    post = fake_nuts_posterior(rng, num_chains=2, num_draws=40)
    idata = diagnostics.to_inference_data(post)
    axes = Figure().subplots(1, 2)
    diagnostics.plot_ppc(idata, axes[:1], num_draws=5)
    (observed,) = [line for line in axes[0].lines if line.get_label() == "Observed"]
    x, y = observed.get_xdata(), post.y_train[:, 0]
    span = y.max() - y.min()
    assert abs(x[0] - y.min()) < 0.01 * span and abs(x[-1] - y.max()) < 0.01 * span
    assert len([line for line in axes[0].lines if line.get_label().startswith("_")]) == 5
    diagnostics.plot_energy(idata, axes[1])
    texts = [t.get_text() for t in axes[1].get_legend().get_texts()][2:]
    bfmi = diagnostics.e_bfmi(post.sample_stats["energy"])
    np.testing.assert_allclose([float(t.rsplit("=", 1)[1]) for t in texts], bfmi.round(2))


def test_tree_depth_saturation_counts_draws_at_the_runs_own_cap():
    from types import SimpleNamespace

    from bayesresnet.diagnostics import tree_depth_saturation

    stats = {"tree_depth": np.array([[12, 11, 12, 3], [10, 12, 9, 12]])}
    assert (
        tree_depth_saturation(SimpleNamespace(settings={"max_tree_depth": 12}, sample_stats=stats))
        == 0.5
    )
    # A file saved before the setting was recorded ran NumPyro's default cap of 10.
    assert tree_depth_saturation(SimpleNamespace(settings={}, sample_stats=stats)) == 0.75


# ------------------------------------------------------------ predictive checks
def held_out_summary(shift=0.0, scale=1.0, *, num_points=400, num_draws=1000, seed=0):
    """Calibration of N(0, 1) predictive draws on test data y ~ N(shift, scale²)."""
    from bayesresnet import calibration

    rng = np.random.default_rng(seed)
    draws = rng.normal(size=(num_draws, num_points, 1))
    y = shift + scale * rng.normal(size=(num_points, 1))
    return calibration.summarize(draws, y)


GOOD_LOO = {"num_bad_k": 0, "pareto_k": [0.1] * 30}


def test_calibrated_predictions_pass_the_held_out_checks():
    # Under a calibrated model each check fails with probability 0.001 and warns with
    # 0.01 (that is what the thresholds are): one fixed seed, not a seed that was hunted.
    found = diagnostics.predictive_checks(GOOD_LOO, num_draws=1000, test=held_out_summary())
    assert {c.name: c.status for c in found} == {
        "PSIS-LOO k̂": "pass",
        "PIT uniformity, held-out": "pass",
        "interval coverage, held-out": "pass",
    }


@pytest.mark.parametrize(
    ("shift", "scale", "failing"),
    [
        # A test set shifted by half a predictive sd: 69% of points above the median. The
        # central intervals still cover 86% instead of 90%: a shift is the PIT's to see.
        (0.5, 1.0, {"PIT uniformity, held-out"}),
        # Noise twice the predicted scale: the 90% intervals cover about 59%.
        (0.0, 2.0, {"PIT uniformity, held-out", "interval coverage, held-out"}),
        # Noise half the predicted scale: intervals too wide (the 50% one covers 68%).
        (0.0, 0.5, {"PIT uniformity, held-out", "interval coverage, held-out"}),
    ],
)
def test_miscalibrated_predictions_fail_the_held_out_checks(shift, scale, failing):
    found = diagnostics.predictive_checks(
        GOOD_LOO, num_draws=1000, test=held_out_summary(shift, scale)
    )
    assert {c.name for c in found if c.status == "fail"} == failing
    assert all(c.advice for c in found if c.status == "fail")


def test_coverage_check_uses_the_binomial_error_at_the_test_size():
    # 85% in the 90% interval: z = 0.05/√(0.09/n); two tests (Bonferroni ×2).
    def status(n):
        return diagnostics.coverage_check({"0.9": {"per_output": [0.85]}}, n, "held-out").status

    from scipy.stats import norm

    def p(n):
        return 2 * 2 * norm.sf(0.05 / np.sqrt(0.09 / n))

    # Check the labels by the p-values they stand for (fail < 0.001 ≤ warn < 0.01 ≤ pass).
    assert p(100) > 0.01 and status(100) == "pass"
    assert 0.001 < p(300) < 0.01 and status(300) == "warn"
    assert p(1000) < 0.001 and status(1000) == "fail"
    # Coverage that cannot be computed (non-finite draws) fails, never passes.
    assert diagnostics.coverage_check({"0.9": {"per_output": [None]}}, 100, "x").status == "fail"
    assert diagnostics.pit_check(float("nan"), "held-out").status == "fail"
    assert diagnostics.pit_check(0.005, "held-out").status == "warn"


def test_loo_checks_need_enough_draws_and_reliable_weights():
    bad = {"num_bad_k": 30, "pareto_k": [0.9] * 30}
    few = diagnostics.predictive_checks(bad, num_draws=8, loo_pit_p=1e-9)
    assert [(c.name, c.status) for c in few] == [("PSIS-LOO k̂", "n/a")]
    assert "too few for PSIS" in few[0].advice
    unreliable = diagnostics.predictive_checks(bad, num_draws=1000, loo_pit_p=1e-9)
    assert [(c.name, c.status) for c in unreliable] == [("PSIS-LOO k̂", "warn")]
    # Without a test split, LOO-PIT judges the calibration when the weights are reliable.
    loo_only = diagnostics.predictive_checks(GOOD_LOO, num_draws=1000, loo_pit_p=1e-9)
    assert [(c.name, c.status) for c in loo_only] == [
        ("PSIS-LOO k̂", "pass"),
        ("PIT uniformity, LOO", "fail"),
    ]


def test_with_checks_forms_the_verdict_again():
    result = diagnostics.convergence(fake_nuts_posterior(np.random.default_rng(0)))
    assert result.verdict == "pass"
    failed = diagnostics.with_checks(result, [diagnostics.pit_check(1e-9, "held-out")])
    assert failed.verdict == "fail" and failed.checks[:-1] == result.checks
    assert failed.to_dict()["checks"][-1]["name"] == "PIT uniformity, held-out"


# ------------------------------------------------- chains started at ensemble members
def test_nested_rhat_by_hand():
    """Four chains of three draws in two superchains, computed from the definition:
    chain means 2, 3, 6, 8; superchain means 2.5, 7; grand mean 4.75.
    B = (2.25² + 2.25²)/1 = 10.125; B̃ = (0.5, 2); W̃ = (1, 1); W = (1.5 + 3)/2 = 2.25;
    nR̂ = √(1 + 10.125/2.25) = √5.5."""
    draws = np.array([[1, 2, 3], [2, 3, 4], [5, 6, 7], [7, 8, 9]], float)
    assert diagnostics.nested_rhat(draws, [0, 0, 1, 1]) == pytest.approx(np.sqrt(5.5))
    # The labels, not the order of the chains, make the superchains.
    mixed = draws[[0, 2, 1, 3]]
    assert diagnostics.nested_rhat(mixed, ["a", "b", "a", "b"]) == pytest.approx(np.sqrt(5.5))


def test_nested_rhat_is_high_only_when_superchains_disagree():
    """8 chains × 500 iid N(0, 1) draws in 4 superchains of 2. Agreeing superchains: B is
    the variance of 4 means of 1 000 draws, B/W ≈ χ²₃/3 / 1 000, so nR̂ − 1 ≈ 5e-4 and
    above 0.01 with probability < 1e-8. One superchain shifted by one sd: nR̂ ≈ √(1 + ¼)."""
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(4), 2)
    draws = rng.normal(size=(8, 500))
    assert diagnostics.nested_rhat(draws, labels) < 1.01
    # Chains disagreeing within their superchain (+1 and −1) while the superchains agree:
    # the spread within a superchain counts in W, not in B.
    split = draws + np.tile([1.0, -1.0], 4)[:, None]
    assert diagnostics.nested_rhat(split, labels) < 1.01
    shifted = draws.copy()
    shifted[labels == 3] += 1.0
    assert diagnostics.nested_rhat(shifted, labels) > 1.05


def test_nested_rhat_checks_its_arguments():
    draws = np.zeros((4, 10))
    with pytest.raises(ValueError, match=r"`draws` must be \[chains, draws\] with at least 2"):
        diagnostics.nested_rhat(np.zeros((4, 1)), [0, 0, 1, 1])
    with pytest.raises(ValueError, match=r"`superchains` must give one label per chain \(4\)"):
        diagnostics.nested_rhat(draws, [0, 1])
    with pytest.raises(ValueError, match=r"each on the same number of chains; got counts"):
        diagnostics.nested_rhat(draws, [0, 0, 0, 1])
    with pytest.raises(ValueError, match=r"at least 2 labels"):
        diagnostics.nested_rhat(draws, [0, 0, 0, 0])


def fake_mclmc_posterior(rng, *, mode_shift=0.0, trend=0.0, num_chains=4, num_draws=400):
    """An ensemble-started MCLMC-like posterior: iid draws within each chain, chain ``c``
    shifted by ``c · mode_shift`` in every parameter (its own mode), plus a drift of
    ``trend`` across each chain (a chain that has not mixed)."""
    post = fake_nuts_posterior(rng, num_chains=num_chains, num_draws=num_draws)
    offset = mode_shift * np.arange(num_chains)[:, None] + trend * np.linspace(0, 1, num_draws)
    samples = {
        k: v + offset.reshape(offset.shape + (1,) * (v.ndim - 2)) if k != sites.NOISE_SCALE else v
        for k, v in post.samples.items()
    }
    stats = {
        "diverging": np.zeros((num_chains, num_draws), bool),
        "energy_change": 1e-3 * rng.normal(size=(num_chains, num_draws)),
    }
    settings = {"variant": "unadjusted", "dim": 20, "desired_energy_var": 5e-4}
    return dataclasses.replace(
        post, method="mclmc", samples=samples, sample_stats=stats, settings=settings
    )


def test_chains_in_different_modes_pass_within_and_report_the_spread():
    """Each chain iid within its own mode: the old between-chain R-hat would fail; the
    within-chain checks pass and the nested R-hat between chains is a note above 1.01."""
    post = fake_mclmc_posterior(np.random.default_rng(0), mode_shift=0.5)
    result = diagnostics.convergence(post)
    between = max(r["r_hat"] for r in result.table if r["kind"] == "function")
    assert between > 1.1  # what the between-chain R-hat check would fail on
    checks = {c.name: c for c in result.checks}
    assert checks["R-hat within chains, function space"].status == "pass"
    assert checks["bulk ESS within chains, function space"].status == "pass"
    assert checks["tail ESS within chains, function space"].status == "pass"
    spread = checks["nested R-hat between chains (modes), function space"]
    assert spread.status == "note" and float(spread.value.split()[-1]) > 1.01
    assert "mixture of these modes" in spread.advice
    assert checks["R-hat, parameters"].status == "note"
    assert result.verdict == "pass", result.failed()


def test_chains_that_have_not_mixed_within_their_modes_fail():
    """A drift of two sds across every chain (iid noise of sd 0.3 on a trend of 0.6):
    the halves of each chain disagree, R-hat within chains and the verdict fail."""
    post = fake_mclmc_posterior(np.random.default_rng(0), mode_shift=0.5, trend=0.6)
    result = diagnostics.convergence(post)
    checks = {c.name: c for c in result.checks}
    failed = checks["R-hat within chains, function space"]
    assert failed.status == "fail" and float(failed.value.split()[-1]) > 1.1
    assert "within its own mode" in failed.advice
    assert checks["R-hat, parameters"].status == "warn"
    assert result.verdict == "fail"


def test_a_chain_that_did_not_move_fails():
    post = fake_mclmc_posterior(np.random.default_rng(0), mode_shift=0.5)
    samples = {k: v.copy() for k, v in post.samples.items()}
    for v in samples.values():
        v[1] = v[1, :1]  # chain 1 repeats its first draw
    result = diagnostics.convergence(dataclasses.replace(post, samples=samples))
    check = next(c for c in result.checks if c.name == "R-hat within chains, function space")
    assert (check.status, check.value) == ("fail", "1 chain(s) did not move")
    assert (
        diagnostics.frozen_chains({"a": np.ones((3, 5)), "b": np.arange(15.0).reshape(3, 5)}) == 0
    )
