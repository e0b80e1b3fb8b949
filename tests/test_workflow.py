"""The workflow's held-out metrics use the fitted model's own likelihood."""

import numpy as np
import scipy.stats
from scipy.special import logsumexp

import bayesresnet as brn
from bayesresnet import workflow


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
