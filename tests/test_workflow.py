"""The workflow: held-out metrics use the fitted model's own likelihood, the generalization
gap has one definition, and the function-space draws are computed once."""

import dataclasses
import re
import warnings

import numpy as np
import pytest
import scipy.stats
from scipy.special import logsumexp

import bayesresnet as brn
from bayesresnet import calibration, diagnostics, plots, sites, workflow


@pytest.mark.slow
def test_student_t_report_nll_is_the_student_t_mixture():
    ds = brn.problems.get("sine").sample(0, 30, 25, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=4, num_layers=2, basis=brn.bases.Legendre(1))
    prior = brn.PriorSpec(likelihood="student_t", student_t_df=3.0)
    post = brn.fit(
        spec, ds, method="ensemble", prior=prior, num_members=3, num_steps=300, convergence_tol=1.0
    )
    analysis = workflow.analyze(post, ds, name="t", num_probes=4)
    reported = analysis.metrics["calibration"]["test"]["nll"]["overall"]

    # By hand: −log (1/S) Σ_s t_3(y | f_s, σ_s), averaged over the held-out points.
    f = post.predict_f(ds.x_test)[..., 0]  # [S, N]
    sigma = post.noise_scale()[:, 0][:, None]  # [S, 1]
    log_p = scipy.stats.t.logpdf(ds.y_test[:, 0][None], 3.0, loc=f, scale=sigma)
    by_hand = np.mean(np.log(len(f)) - logsumexp(log_p, axis=0))
    normal = np.mean(
        np.log(len(f)) - logsumexp(scipy.stats.norm.logpdf(ds.y_test[:, 0][None], f, sigma), axis=0)
    )
    assert abs(by_hand - normal) > 1e-3  # the two likelihoods are told apart here
    np.testing.assert_allclose(reported, by_hand, rtol=1e-5, atol=1e-6)


def test_band_levels_have_one_owner():
    import inspect

    from bayesresnet import calibration, plots
    from bayesresnet.app.runspec import ReportSpec

    assert calibration.BAND_LEVELS == (0.5, 0.9)
    for fn in (workflow.analyze, plots.plot_predictive_1d):
        assert inspect.signature(fn).parameters["levels"].default is calibration.BAND_LEVELS
    import dataclasses

    default = {f.name: f.default for f in dataclasses.fields(ReportSpec)}["levels"]
    assert default is calibration.BAND_LEVELS  # the spec's default is the same object
    assert ReportSpec().levels == calibration.BAND_LEVELS  # (validated into a new tuple)


@pytest.fixture(scope="module")
def nuts_fit():
    """A tiny NUTS fit with a test split: two chains, so the trace figure is drawn."""
    ds = brn.problems.get("sine").sample(0, 30, 25, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=4, num_layers=2, basis=brn.bases.Legendre(1))
    options = dict(num_warmup=30, num_samples=30, num_chains=2, init_steps=50, max_tree_depth=5)
    post = brn.fit(spec, ds, method="nuts", seed=0, **options)
    return post, ds


@pytest.mark.slow
def test_generalization_gap_is_the_f_mean_rmse_on_both_splits(nuts_fit):
    post, ds = nuts_fit
    calib = workflow.analyze(post, ds, num_probes=4).metrics["calibration"]
    gap = calib["test"]["generalization_gap"]
    train = post.predict(post.x_train, seed=0, return_draws=True)
    f_mean_rmse = calibration.rmse(train.f.mean(axis=0), post.y_train)
    np.testing.assert_allclose(gap["train_rmse"]["per_output"], f_mean_rmse, rtol=1e-12)
    assert gap["train_rmse"] == calib["train"]["rmse"]
    assert gap["test_rmse"] == calib["test"]["rmse"]
    assert gap["ratio"]["overall"] == pytest.approx(
        calib["test"]["rmse"]["overall"] / calib["train"]["rmse"]["overall"], rel=1e-12
    )
    # The mean of the noisy y draws is another number here (the old train-side definition).
    y_mean_rmse = calibration.rmse(train.y.mean(axis=0), post.y_train)
    assert np.all(np.abs(y_mean_rmse - f_mean_rmse) > 1e-6)


@pytest.mark.slow
def test_analyze_computes_the_function_space_draws_once(nuts_fit, monkeypatch):
    post, ds = nuts_fit
    calls = []
    original = diagnostics.function_space_draws

    def counted(*args, **kwargs):
        calls.append(args)
        return original(*args, **kwargs)

    monkeypatch.setattr(diagnostics, "function_space_draws", counted)
    analysis = workflow.analyze(post, ds, num_probes=4, seed=3)
    assert len(calls) == 1
    monkeypatch.undo()

    metrics, figures = analysis.metrics, analysis.figures
    assert list(metrics) == [
        "run", "data", "model", "inference", "diagnostics", "loo", "waic",
        "loo_pit_ks_pvalue", "ppc", "calibration",
    ]  # fmt: skip
    assert list(metrics["calibration"]) == ["test", "train"]
    assert list(figures) == [
        "Parity plot, held-out data", "Calibration curve", "PIT histogram, held-out data",
        "Posterior predictive", "Posterior of W(t) over depth", "Stiffness over depth",
        "Posterior predictive check", "LOO-PIT",
        "Trace and rank plots, worst-converged quantities", "Energy",
    ]  # fmt: skip
    conv = diagnostics.convergence(post, num_probes=4, seed=3)
    # The verdict: the convergence checks, then the predictive ones, judged together.
    predictive = diagnostics.predictive_checks(
        metrics["loo"], num_draws=post.num_samples, test=metrics["calibration"]["test"]
    )
    assert metrics["diagnostics"] == diagnostics.with_checks(conv, predictive).to_dict()
    assert [c["name"] for c in metrics["diagnostics"]["checks"]][-3:] == [
        "PSIS-LOO k̂", "PIT uniformity, held-out", "interval coverage, held-out",
    ]  # fmt: skip
    # The trace figure shows the draws a fresh computation gives (same probes, same seed).
    fresh = {
        **diagnostics.function_space_draws(post, diagnostics.probe_inputs(post, 4, 3)),
        **diagnostics.parameter_draws(post),
    }
    assert list(conv.draws) == list(fresh)
    for name, values in fresh.items():
        np.testing.assert_array_equal(conv.draws[name], values)
    worst = [r["name"] for r in conv.table if r["kind"] == "function"][:2]
    worst += [r["name"] for r in conv.table if r["kind"] == "parameter"][:2]
    expected = plots.figure_to_data_uri(plots.plot_trace_rank({n: fresh[n] for n in worst}))
    assert figures["Trace and rank plots, worst-converged quantities"][0] == expected


SINE_200 = dict(seed=0, num_train=40, num_test=200, noise=0.1)
SMALL = brn.ResNetSpec(1, 1, width=4, num_layers=2, basis=brn.bases.Legendre(1))


@pytest.fixture(scope="module")
def ensemble_fit():
    """A sound fit of the sine toy (8 members) with 200 held-out points. On some CPUs two
    members' losses still drift by more than the convergence tolerance after 9 000 steps
    (the noise scale keeps shrinking on 40 points); that warning is not what these tests
    are about, and the held-out checks below are computed all the same."""
    ds = brn.problems.get("sine").sample(**SINE_200)
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".*had not converged", RuntimeWarning)
        return brn.fit(SMALL, ds, method="ensemble", seed=0, num_members=8), ds


def held_out_statuses(analysis):
    checks = analysis.metrics["diagnostics"]["checks"]
    return {c["name"]: c["status"] for c in checks if "held-out" in c["name"]}


@pytest.mark.slow
def test_a_sound_fit_is_not_failed_by_the_held_out_checks(ensemble_fit):
    """The ensemble over-covers this toy slightly: over seeds 0-5 its 90 % intervals held
    95-96 % of the 200 held-out points, which the coverage check calls a warning at
    p < 0.01 (seeds 0 and 2, p = 0.0065) and passes otherwise. A sound fit is never
    failed; the tests below show a wrong one is."""
    post, ds = ensemble_fit
    analysis = workflow.analyze(post, ds, num_probes=4)
    statuses = held_out_statuses(analysis)
    assert statuses["PIT uniformity, held-out"] == "pass"
    assert statuses["interval coverage, held-out"] in ("pass", "warn")
    assert analysis.metrics["diagnostics"]["verdict"] in ("pass", "warn")


@pytest.mark.slow
def test_a_shifted_test_set_fails_the_verdict(ensemble_fit):
    post, ds = ensemble_fit
    # Held-out outputs moved by 3 noise sds: the test data are not the data the model was
    # fitted to, and the verdict must say so.
    shifted = dataclasses.replace(ds, y_test=ds.y_test + 0.3)
    analysis = workflow.analyze(post, shifted, num_probes=4)
    assert held_out_statuses(analysis)["PIT uniformity, held-out"] == "fail"
    assert analysis.metrics["diagnostics"]["verdict"] == "fail"


@pytest.mark.slow
def test_a_wrong_noise_scale_fails_the_verdict(ensemble_fit):
    post, ds = ensemble_fit
    # A noise scale a fifth of the fitted one: intervals far too narrow.
    samples = dict(post.samples)
    samples[sites.NOISE_SCALE] = samples[sites.NOISE_SCALE] / 5
    narrow = dataclasses.replace(post, samples=samples)
    analysis = workflow.analyze(narrow, ds, num_probes=4)
    assert held_out_statuses(analysis) == {
        "PIT uniformity, held-out": "fail",
        "interval coverage, held-out": "fail",
    }
    assert analysis.metrics["diagnostics"]["verdict"] == "fail"


@pytest.mark.slow
def test_a_laplace_fit_with_far_too_wide_intervals_fails():
    """The Laplace guide on a small network: eigenvalues of the Hessian floored at 1 leave
    badly determined directions with prior-sized variance, and nearly every held-out point
    falls inside the 50% interval. Its draws are judged by k̂ too (once skipped as a point guide)."""
    ds = brn.problems.get("sine").sample(**SINE_200)
    options = dict(guide="laplace", num_steps=400, check_every=100, init_steps=1500)
    post = brn.fit(SMALL, ds, method="svi", seed=0, **options)
    analysis = workflow.analyze(post, ds, num_probes=4)
    checks = {c["name"]: c for c in analysis.metrics["diagnostics"]["checks"]}
    assert checks["Pareto k̂"]["status"] == "warn"
    assert checks["interval coverage, held-out"]["status"] == "fail"
    # "worst P% in the 50% interval": P = 100 at seed 0 before the prior draws changed,
    # 94 after; a calibrated fit holds 50 ± 3.5 (one binomial sd at 200 points).
    worst = re.search(
        r"worst (\d+)% in the 50% interval", checks["interval coverage, held-out"]["value"]
    )
    assert worst is not None and int(worst.group(1)) >= 80
    assert analysis.metrics["diagnostics"]["verdict"] == "fail"
