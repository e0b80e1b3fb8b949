"""Calibration metrics: hand-computed values, closed forms within Monte-Carlo error, errors.

Statistical tolerances are derived, not tuned: each states its draw count S, point count N
and the standard error it is built from. Seeds are fixed and were not searched.
"""

import dataclasses
import json
import math

import numpy as np
import pytest
from scipy import stats

from bayesresnet import calibration as cal

# --------------------------------------------------------------------------- helpers


def normal_crps(mu, sigma, y):
    """Closed-form CRPS of N(mu, sigma²) at y: σ[z(2Φ(z) − 1) + 2φ(z) − 1/√π]."""
    z = (y - mu) / sigma
    return sigma * (
        z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / math.sqrt(math.pi)
    )


def binomial_sd(p, n):
    return np.sqrt(p * (1 - p) / n)


# --------------------------------------------------------------------------- point metrics


def test_point_metrics_by_hand():
    mean, y = np.array([1.0, 2.0, 3.0]), np.array([1.0, 3.0, 5.0])
    # errors 0, 1, 2: MSE = 5/3, MAE = 1; SS_tot around ȳ = 3 is 4 + 0 + 4 = 8.
    np.testing.assert_allclose(cal.rmse(mean, y), [math.sqrt(5 / 3)])
    np.testing.assert_allclose(cal.mae(mean, y), [1.0])
    np.testing.assert_allclose(cal.r2(mean, y), [1 - 5 / 8])
    two = np.stack([mean, y], axis=1)  # second output predicted perfectly
    np.testing.assert_allclose(cal.rmse(two, np.stack([y, y], 1)), [math.sqrt(5 / 3), 0.0])
    np.testing.assert_allclose(cal.r2(two, np.stack([y, y], 1)), [0.375, 1.0])


def test_r2_of_constant_output_is_nan():
    assert np.isnan(cal.r2([1.0, 2.0], [3.0, 3.0])[0])


# --------------------------------------------------------------------------- CRPS


def test_crps_tiny_hand_example():
    draws = np.array([[0.0], [1.0]])  # S = 2 draws at one point
    # y = 0.5: mean|X − y| = (0.5 + 0.5)/2 = 0.5; Σ_{s,s'}|X_s − X_s'| = 2 (pairs (0,1), (1,0));
    #          1/(2·S·(S−1)) · 2 = 1/(2·2·1) · 2 = 0.5  →  CRPS = 0.5 − 0.5 = 0.
    # y = 2:   mean|X − y| = (2 + 1)/2 = 1.5            →  CRPS = 1.5 − 0.5 = 1.
    np.testing.assert_allclose(cal.crps(draws, [0.5]), [[0.0]], atol=1e-15)
    np.testing.assert_allclose(cal.crps(draws, [2.0]), [[1.0]])
    both = np.array([[[0.0, 0.0]], [[1.0, 1.0]]])  # [S=2, N=1, O=2]
    np.testing.assert_allclose(cal.crps(both, [[0.5, 2.0]]), [[0.0, 1.0]], atol=1e-15)


def test_crps_sorted_form_equals_pairwise_sum_and_ignores_chunking():
    rng = np.random.default_rng(1)
    draws, y = rng.normal(size=(7, 5, 3)), rng.normal(size=(5, 3))
    pair = np.abs(draws[:, None] - draws[None, :]).sum(axis=(0, 1))  # Σ_{s,s'} |X_s − X_s'|
    naive = np.abs(draws - y).mean(axis=0) - pair / (2 * 7 * 6)
    np.testing.assert_allclose(cal.crps(draws, y), naive, rtol=1e-12)
    np.testing.assert_allclose(cal.crps(draws, y, chunk_size=1), naive, rtol=1e-12)
    np.testing.assert_allclose(cal.crps(draws[..., 0], y[:, 0]), naive[:, :1], rtol=1e-12)


def test_crps_matches_normal_closed_form():
    # S = 50 draws at each of N = 4000 points with their own (μ, σ, y). The per-point
    # errors d_n = CRPS_fair − CRPS_true are independent with mean 0 (the estimator is
    # unbiased), so |mean d| ≤ 5 · sd(d)/√N (empirical sd over the N points).
    rng = np.random.default_rng(2)
    num_draws, num_points = 50, 4000
    mu = rng.normal(size=num_points)
    sigma = rng.uniform(0.5, 2.0, size=num_points)
    y = rng.normal(size=num_points) * 1.5
    draws = mu + sigma * rng.normal(size=(num_draws, num_points))
    d = cal.crps(draws, y)[:, 0] - normal_crps(mu, sigma, y)
    assert abs(d.mean()) <= 5 * d.std(ddof=1) / math.sqrt(num_points)


def test_fair_crps_is_unbiased_with_two_draws():
    # S = 2 draws per batch, N = 200000 batches of the same N(0.3, 1.7²) at y = 0.8. The
    # batch mean of the fair CRPS matches the closed form within 5 MCSE (empirical sd/√N);
    # the plain 1/(2S²) form is biased by E|X − X'|/(2S) = σ/(2√π) ≈ 0.48, far outside it.
    rng = np.random.default_rng(3)
    mu, sigma, y0, num_batches = 0.3, 1.7, 0.8, 200_000
    draws = mu + sigma * rng.normal(size=(2, num_batches))
    fair = cal.crps(draws, np.full(num_batches, y0))[:, 0]
    mcse = fair.std(ddof=1) / math.sqrt(num_batches)
    truth = normal_crps(mu, sigma, y0)
    assert abs(fair.mean() - truth) <= 5 * mcse
    plain = np.abs(draws - y0).mean(axis=0) - np.abs(draws[0] - draws[1]) / 4  # 1/(2S²)·2|Δ|
    assert plain.mean() - truth > 10 * mcse


# --------------------------------------------------------------------------- NLL


def test_nll_of_identical_draws_is_the_component_density():
    rng = np.random.default_rng(4)
    y = rng.normal(size=(6, 2)) * 3
    loc = np.broadcast_to(np.array([0.5, -1.0]), (5, 6, 2))  # S = 5 identical draws
    scale = np.full((5, 2), 0.7)
    np.testing.assert_allclose(
        cal.nll(y, loc_draws=loc, scale_draws=scale),
        -stats.norm.logpdf(y, loc[0], 0.7),
        rtol=1e-12,
    )
    np.testing.assert_allclose(
        cal.nll(y, loc_draws=loc, scale_draws=scale, df=3.5),
        -stats.t.logpdf(y, 3.5, loc[0], 0.7),
        rtol=1e-12,
    )
    # Far in the tail (z = 40) logsumexp keeps the value exact instead of inf.
    far = cal.nll([40.0], loc_draws=np.zeros((3, 1)), scale_draws=1.0)
    np.testing.assert_allclose(far, [[800 + 0.5 * math.log(2 * math.pi)]])


def test_nll_of_two_components_by_hand():
    # Components N(0, 1) and N(2, 0.5²) at y = 1:
    #   p = ½ [φ(1)/1 + φ((1 − 2)/0.5)/0.5] = ½ [φ(1) + 2 φ(2)],  NLL = −log p.
    phi = lambda z: math.exp(-0.5 * z * z) / math.sqrt(2 * math.pi)
    expected = -math.log(0.5 * (phi(1.0) + 2 * phi(2.0)))
    loc = np.array([[0.0], [2.0]])  # [S = 2, N = 1]
    got = cal.nll([1.0], loc_draws=loc, scale_draws=[1.0, 0.5])
    np.testing.assert_allclose(got, [[expected]], rtol=1e-12)


def test_nll_scale_shapes_broadcast_alike():
    rng = np.random.default_rng(5)
    loc, y = rng.normal(size=(4, 3, 2)), rng.normal(size=(3, 2))
    per_draw = rng.uniform(0.5, 1.5, size=4)
    reference = cal.nll(
        y, loc_draws=loc, scale_draws=np.broadcast_to(per_draw[:, None, None], loc.shape)
    )
    for scale in (per_draw, np.stack([per_draw, per_draw], 1), per_draw[:, None, None]):
        np.testing.assert_allclose(cal.nll(y, loc_draws=loc, scale_draws=scale), reference)
    np.testing.assert_allclose(
        cal.nll(y, loc_draws=loc, scale_draws=per_draw, chunk_size=1), reference
    )
    one = cal.nll(y[:, 0], loc_draws=loc[..., 0], scale_draws=np.ones((4, 3)))
    np.testing.assert_allclose(one, cal.nll(y[:, :1], loc_draws=loc[..., :1], scale_draws=1.0))


def test_nll_gaussian_matches_scipy():
    mean, sd, y = np.array([[0.0, 1.0]]), np.array([2.0, 0.5]), np.array([[1.0, -1.0]])
    np.testing.assert_allclose(cal.nll_gaussian(mean, sd, y), -stats.norm.logpdf(y, mean, sd))
    np.testing.assert_allclose(
        cal.nll_gaussian([0.0, 1.0], [1.0, 2.0], [0.0, 0.0])[:, 0],
        -stats.norm.logpdf([0.0, 0.0], [0.0, 1.0], [1.0, 2.0]),
    )


# --------------------------------------------------------------------------- intervals


def test_intervals_coverage_and_width_by_hand():
    draws = np.repeat(np.arange(101.0)[:, None], 4, axis=1)  # S = 101 draws 0..100 at 4 points
    lower, upper = cal.central_interval(draws, 0.9)  # quantiles 0.05, 0.95 → 5, 95
    np.testing.assert_allclose(lower, np.full((4, 1), 5.0))
    np.testing.assert_allclose(upper, np.full((4, 1), 95.0))
    np.testing.assert_allclose(cal.interval_width(draws, 0.9), [90.0])
    y = np.array([50.0, 96.0, 5.0, 4.9])  # inside, above, on the edge (inside), below
    np.testing.assert_allclose(cal.coverage(draws, y, [0.9]), [[0.5]])
    np.testing.assert_allclose(cal.coverage(draws, y, 0.999), [[1.0]])  # [0.05, 99.95]
    np.testing.assert_allclose(
        cal.sharpness(np.array([[-1.0, 0.0], [1.0, 4.0]])), [1.5 * math.sqrt(2)]
    )


def test_miscalibration_area_by_hand():
    curve = cal.CalibrationCurve(levels=np.array([0.5, 0.9]), observed=np.array([[0.6], [0.8]]))
    np.testing.assert_allclose(cal.miscalibration_area(curve), [0.1])  # (|0.1| + |−0.1|)/2
    np.testing.assert_allclose(cal.miscalibration_area(curve, signed=True), [0.0], atol=1e-15)


def test_interval_score_by_hand():
    # l = −1, u = 1, level 0.8 → α = 0.2, 2/α = 10.
    #   y = 0 (inside): 2;  y = 2: 2 + 10·(2 − 1) = 12;  y = −1.5: 2 + 10·(−1 − (−1.5)) = 7.
    y = np.array([0.0, 2.0, -1.5])
    got = cal.interval_score(-np.ones(3), np.ones(3), y, 0.8)
    np.testing.assert_allclose(got[:, 0], [2.0, 12.0, 7.0])


def test_generalization_gap_by_hand():
    gap = cal.generalization_gap([0.5, 0.0], [1.0, 0.2])
    np.testing.assert_allclose(gap.ratio, [2.0, np.inf])
    np.testing.assert_allclose(gap.difference, [0.5, 0.2])


def test_calibrated_sampler_covers_at_nominal_levels():
    # y and S = 1000 draws from the same N(0, 1) at N = 2000 points, O = 2 outputs.
    # Observed coverage is binomial around the nominal p (sd √(p(1−p)/N)); the empirical
    # quantiles move it by < 2/(S + 1) per interval end (order-statistic discretisation).
    rng = np.random.default_rng(6)
    num_draws, num_points = 1000, 2000
    draws = rng.normal(size=(num_draws, num_points, 2))
    y = rng.normal(size=(num_points, 2))
    curve = cal.calibration_curve(draws, y)
    p = curve.levels[:, None]
    assert curve.observed.shape == (19, 2)
    assert np.all(
        np.abs(curve.observed - p) <= 5 * binomial_sd(p, num_points) + 4 / (num_draws + 1)
    )


@pytest.mark.parametrize("sd", [2.0, 0.5])
def test_dispersion_error_shows_in_coverage_and_area(sd):
    # Draws N(0, sd²), truth N(0, 1): the central interval at level p is ±sd·z_p with
    # z_p = Φ⁻¹((1 + p)/2), so the expected coverage is 2Φ(sd·z_p) − 1 (above p for
    # sd = 2, below for sd = 0.5). S = 1000, N = 2000: per level 5 binomial sd, plus the
    # quantile discretisation 2/(S + 1) per end times the density ratio f_y/f_draws at the
    # interval ends (≤ 2 for sd = 2, ≤ 0.5·exp(1.5·0.98²) ≈ 2.1 for sd = 0.5): 10/(S + 1).
    rng = np.random.default_rng(7)
    num_draws, num_points = 1000, 2000
    draws = sd * rng.normal(size=(num_draws, num_points))
    y = rng.normal(size=num_points)
    curve = cal.calibration_curve(draws, y)
    p = curve.levels
    expected = 2 * stats.norm.cdf(sd * stats.norm.ppf((1 + p) / 2)) - 1
    tol = 5 * binomial_sd(expected, num_points) + 10 / (num_draws + 1)
    assert np.all(np.abs(curve.observed[:, 0] - expected) <= tol)
    signed = cal.miscalibration_area(curve, signed=True)[0]
    area = cal.miscalibration_area(curve)[0]
    assert (signed > 0) if sd > 1 else (signed < 0)  # wide → over-covers; narrow → under
    assert area == pytest.approx(abs(signed))  # one-sided at every level
    # The mean of the per-level errors is within the mean of the per-level tolerances.
    assert abs(area - np.mean(np.abs(expected - p))) <= np.mean(tol)


# --------------------------------------------------------------------------- PIT


def test_pit_by_hand_with_ties():
    # Draws [1, 1, 2, 3] (S = 4) and PIT = (K + U·(E + 1))/(S + 1) with K = #below, E = #equal:
    #   y = 1:   K = 0, E = 2 → 3U/5;   y = 1.5: K = 2, E = 0 → (2 + U)/5;
    #   y = 0:   K = 0, E = 0 → U/5;    y = 3:   K = 3, E = 1 → (3 + 2U)/5.
    draws = np.repeat(np.array([1.0, 1.0, 2.0, 3.0])[:, None], 4, axis=1)
    y = np.array([1.0, 1.5, 0.0, 3.0])
    u = np.random.default_rng(11).random((4, 1))[:, 0]
    expected = np.array([3 * u[0], 2 + u[1], u[2], 3 + 2 * u[3]]) / 5
    np.testing.assert_allclose(cal.pit(draws, y, seed=11)[:, 0], expected)
    np.testing.assert_allclose(cal.pit(draws, y, seed=11, chunk_size=1)[:, 0], expected)


def test_pit_of_calibrated_sampler_passes_and_miscalibrated_fails():
    # Calibrated: y and S = 1000 draws from N(0, 1), N = 2000. The randomized PIT is then
    # exactly U(0, 1), so each p-value is uniform: each check fails with probability 1e-3.
    rng = np.random.default_rng(8)
    num_draws, num_points = 1000, 2000
    y = rng.normal(size=num_points)
    good = cal.pit_uniformity(cal.pit(rng.normal(size=(num_draws, num_points)), y))
    assert good.ks_pvalue[0] > 1e-3 and good.chi2_pvalue[0] > 1e-3
    # Miscalibrated: draws N(0, 0.5²). Then P(PIT ≤ u) = Φ(Φ⁻¹(u)/2); at u = 0.12 that is
    # 0.278, so the KS distance is ≥ 0.158 (the randomization with S = 1000 moves it by
    # about √(0.12·0.88/S) ≈ 0.01). The empirical CDF at 0.12 has binomial sd ≤ 0.011 with
    # N = 2000, so at 5 sd D ≥ 0.158 − 0.055 − 0.01 ≈ 0.09 and the KS p-value is at most
    # 2·exp(−2·N·D²) ≈ 2e-14 < 1e-6.
    bad = cal.pit_uniformity(cal.pit(0.5 * rng.normal(size=(num_draws, num_points)), y))
    assert bad.ks_statistic[0] > 0.09
    assert bad.ks_pvalue[0] < 1e-6 and bad.chi2_pvalue[0] < 1e-6


def test_randomized_pit_is_uniform_for_discrete_outputs():
    # Poisson(3) draws and y: many ties, yet the randomized PIT is exactly U(0, 1). S = 20,
    # N = 2000; each p-value is uniform, so each check fails with probability 1e-3.
    rng = np.random.default_rng(9)
    draws = rng.poisson(3.0, size=(20, 2000)).astype(float)
    y = rng.poisson(3.0, size=2000)
    result = cal.pit_uniformity(cal.pit(draws, y))
    assert result.ks_pvalue[0] > 1e-3 and result.chi2_pvalue[0] > 1e-3
    assert result.num_bins == 10


# --------------------------------------------------------------------------- recalibration


def recalibrated_area_bound(recal, levels, num_draws, num_cal, num_test):
    """Bound on the held-out miscalibration area after isotonic recalibration.

    Per level p the coverage error is (a) the test split's binomial error, sd
    √(p(1−p)/N_test), plus (b) the error of R̂ at the interval ends: R̂ is the PIT's
    empirical CDF on N_cal points, and the true mass between two of its order statistics
    is Beta-distributed with sd √(p(1−p)/N_cal). Every level within 5 sd of (a)+(b)
    (union over 19 levels: probability ≈ 1e-5 of failing) bounds the mean of the errors by
    the mean of 5 sd. Add 20/(S + 1) for the 1/(S + 1)-wide PIT cells and the quantile
    rules at both ends, times the PIT density (≤ 2.1 inside the 95% interval here), and,
    per end, the mass M that R̂ puts in the three extreme PIT cells: when the nominal tail
    (1 − p)/2 is below M both the nominal and the actual tail lie in [0, M], where the
    draws cannot resolve the tail (see `recalibrate`).
    """
    sd = np.sqrt(levels * (1 - levels) * (1 / num_cal + 1 / num_test))
    edge = 3 / (num_draws + 1)
    tail = np.zeros_like(levels)
    for knots, values in zip(recal.levels, recal.observed):
        low = np.interp(edge, knots, values)
        high = 1 - np.interp(1 - edge, knots, values)
        tail = np.maximum(tail, low * ((1 - levels) / 2 <= low) + high * ((1 - levels) / 2 <= high))
    return np.mean(5 * sd) + 20 / (num_draws + 1) + np.mean(tail)


def test_variance_scaling_recovers_the_factor():
    # Draws N(0, 0.5²) of a N(0, 1) truth: c² = mean ((y − m)/sd)² with the draws' mean m
    # and sd (ddof 1). With S = 200 the exact expectation is
    # E[(y − m)²]·E[1/sd²] = (1 + σ²/S)·(S − 1)/((S − 3)σ²) ≈ 4.046 (so c → 2.011, not 2);
    # N = 20000 points give MCSE(c²) = sd(z²)/√N, checked at 5 MCSE.
    rng = np.random.default_rng(10)
    num_draws, num_points, sigma = 200, 20_000, 0.5
    draws = sigma * rng.normal(size=(num_draws, num_points))
    y = rng.normal(size=num_points)
    recal = cal.fit_recalibration(draws, y, method="variance")
    z2 = ((y - draws.mean(0)) / draws.std(0, ddof=1)) ** 2
    mcse = z2.std(ddof=1) / math.sqrt(num_points)
    expected = (1 + sigma**2 / num_draws) * (num_draws - 1) / ((num_draws - 3) * sigma**2)
    (c,) = recal.scale
    assert abs(c**2 - expected) <= 5 * mcse
    assert abs(c - 2.0) <= 5 * mcse / (2 * c) + (math.sqrt(expected) - 2.0)
    new = cal.recalibrate(recal, draws[:, :10])
    m = draws[:, :10].mean(0)
    np.testing.assert_allclose(new, m + c * (draws[:, :10] - m))


def test_isotonic_recalibration_fixes_held_out_calibration():
    # Draws N(0, 0.5²) of a N(0, 1) truth; S = 1000, N_cal = N_test = 2000.
    rng = np.random.default_rng(12)
    num_draws, num_points = 1000, 2000

    def split():
        return 0.5 * rng.normal(size=(num_draws, num_points)), rng.normal(size=num_points)

    (cal_draws, cal_y), (test_draws, test_y) = split(), split()
    levels = cal.DEFAULT_LEVELS
    before = cal.miscalibration_area(cal.calibration_curve(test_draws, test_y))[0]
    recal = cal.fit_recalibration(cal_draws, cal_y)  # isotonic is the default
    # About 5% of the draws would have to lie beyond the extreme draws: it says so.
    with pytest.warns(UserWarning, match="beyond the range of the original 1000 draws"):
        new = cal.recalibrate(recal, test_draws)
    after = cal.miscalibration_area(cal.calibration_curve(new, test_y))[0]
    bound = recalibrated_area_bound(recal, levels, num_draws, num_points, num_points)
    assert after <= bound < before
    # The advertised fix: variance scaling first, then the isotonic map (no warning now).
    var = cal.fit_recalibration(cal_draws, cal_y, method="variance")
    iso = cal.fit_recalibration(cal.recalibrate(var, cal_draws), cal_y)
    both = cal.recalibrate(iso, cal.recalibrate(var, test_draws))
    after_both = cal.miscalibration_area(cal.calibration_curve(both, test_y))[0]
    assert after_both <= recalibrated_area_bound(iso, levels, num_draws, num_points, num_points)


def test_isotonic_identity_map_returns_draws_and_keeps_rank_order():
    rng = np.random.default_rng(13)
    draws = rng.normal(size=(50, 7, 2))
    identity = cal.Recalibration("isotonic", levels=((0, 1), (0, 1)), observed=((0, 1), (0, 1)))
    np.testing.assert_allclose(cal.recalibrate(identity, draws), draws, atol=1e-12)
    # R has slope ≤ 1 at both ends, so R⁻¹(u_i) stays within the draws (no warning).
    levels, observed = (0.0, 0.5, 0.9, 1.0), (0.0, 0.2, 0.99, 1.0)
    bent = cal.Recalibration("isotonic", levels=(levels, (0, 1)), observed=(observed, (0, 1)))
    new = cal.recalibrate(bent, draws, chunk_size=3)
    assert new.shape == draws.shape
    np.testing.assert_array_equal(np.argsort(new, axis=0), np.argsort(draws, axis=0))
    np.testing.assert_allclose(new[..., 1], draws[..., 1], atol=1e-12)
    # The new draw of rank i is the old draws' Hazen quantile at R⁻¹(u_i), u_i = (i − ½)/S.
    target = np.interp((np.arange(1, 51) - 0.5) / 50, observed, levels)
    np.testing.assert_allclose(
        np.sort(new[..., 0], axis=0),
        np.quantile(draws[..., 0], target, axis=0, method="hazen"),
        rtol=1e-12,
    )


def test_recalibration_is_frozen_and_hashable():
    recal = cal.Recalibration("variance", scale=np.array([2.0, 3.0]))
    assert recal.scale == (2.0, 3.0) and recal.num_outputs == 2
    assert hash(recal) == hash(cal.Recalibration("variance", scale=(2, 3)))
    with pytest.raises(dataclasses.FrozenInstanceError):
        recal.scale = (1.0,)


# --------------------------------------------------------------------------- summaries


def test_summarize_is_json_and_agrees_with_the_metrics():
    rng = np.random.default_rng(14)
    num_draws, num_points = 100, 60
    loc = rng.normal(size=(num_draws, num_points, 2)) * 0.1
    noise = np.array([0.5, 1.0])
    draws = loc + noise * rng.normal(size=loc.shape)
    y = rng.normal(size=(num_points, 2)) * noise
    train = (loc[:, :50], y[:50] * 0.5)  # noise-free f draws at the training inputs
    summary = cal.summarize(
        draws, y, loc_draws=loc, scale_draws=np.broadcast_to(noise, (num_draws, 2)), train=train
    )
    json.dumps(summary, allow_nan=False)
    # Point metrics use the noise-free draws' mean when they are given.
    np.testing.assert_allclose(summary["rmse"]["per_output"], cal.rmse(loc.mean(0), y))
    plain = cal.summarize(draws, y)
    np.testing.assert_allclose(plain["rmse"]["per_output"], cal.rmse(draws.mean(0), y))
    np.testing.assert_allclose(summary["crps"]["per_output"], cal.crps(draws, y).mean(0))
    assert summary["crps"]["overall"] == pytest.approx(cal.crps(draws, y).mean())
    nll = cal.nll(y, loc_draws=loc, scale_draws=np.broadcast_to(noise, (num_draws, 2)))
    np.testing.assert_allclose(summary["nll"]["per_output"], nll.mean(0))
    np.testing.assert_allclose(
        summary["calibration_curve"]["observed"], cal.calibration_curve(draws, y).observed
    )
    np.testing.assert_allclose(
        summary["coverage"]["0.9"]["per_output"], cal.coverage(draws, y, 0.9)[0]
    )
    gap = summary["generalization_gap"]
    assert set(gap) == {"train_rmse", "test_rmse", "ratio", "difference"}
    assert gap["test_rmse"] == summary["rmse"]  # f's posterior mean on both splits
    np.testing.assert_allclose(
        gap["train_rmse"]["per_output"], cal.rmse(loc[:, :50].mean(0), y[:50] * 0.5)
    )
    bare = cal.summarize(draws[..., 0], y[:, 0])
    assert "nll" not in bare and "generalization_gap" not in bare
    assert bare["num_outputs"] == 1 and len(bare["sharpness"]["per_output"]) == 1
    assert cal.summarize(draws, np.zeros_like(y))["r2"]["overall"] is None  # NaN → None


def test_recalibration_report_has_before_and_after():
    rng = np.random.default_rng(15)
    draws, y = 0.5 * rng.normal(size=(100, 80)), rng.normal(size=80)
    report = cal.recalibration_report(cal.fit_recalibration(draws, y, "variance"), draws, y)
    json.dumps(report, allow_nan=False)
    assert report["method"] == "variance" and report["clamped_fraction"] == [0.0]
    area = lambda key: report[key]["miscalibration_area"]["overall"]
    assert area("after") < area("before")


# --------------------------------------------------------------------------- errors

D = np.zeros((4, 5, 2))  # S = 4, N = 5, O = 2
Y = np.zeros((5, 2))
ISO = dict(levels=((0.0, 1.0),), observed=((0.0, 1.0),))

ERRORS = [
    (lambda: cal.crps(np.zeros(5), Y[:, 0]), ValueError, r"`draws` must be 2-D \[S, N\] or 3-D"),
    (lambda: cal.crps(D[:1], Y), ValueError, "`draws` needs at least 2 draws along axis 0; got 1"),
    (lambda: cal.crps(np.zeros((4, 0)), []), ValueError, "`draws` has no points or no outputs"),
    (
        lambda: cal.crps(D, np.zeros((4, 2))),
        ValueError,
        r"`y` has 4 rows but `draws` has 5 points \(axis 1\)",
    ),
    (
        lambda: cal.crps(D, np.zeros((5, 3))),
        ValueError,
        r"`y` has 3 outputs \(columns\) but `draws` has 2 \(axis 2\)",
    ),
    (lambda: cal.crps(D, np.zeros((5, 2, 1))), ValueError, r"`y` must be 1-D \[N\] or 2-D"),
    (lambda: cal.crps(D, np.zeros((0, 2))), ValueError, "`y` has no points or no outputs"),
    (
        lambda: cal.crps(np.full((4, 5), np.nan), Y[:, 0]),
        ValueError,
        r"`draws` contains NaN or infinite values: column 0 has 4 non-finite values",
    ),
    (
        lambda: cal.crps(np.array([["a"]]), Y),
        TypeError,
        "`draws` must be a numeric array; got dtype <U1",
    ),
    (lambda: cal.crps(D, Y, chunk_size=0), ValueError, "`chunk_size` must be ≥ 1; got 0"),
    (lambda: cal.crps(D, Y, chunk_size=1.5), TypeError, "`chunk_size` must be an int"),
    (
        lambda: cal.rmse(np.zeros(3), np.zeros(4)),
        ValueError,
        r"`y` has 4 rows but `mean` has 3 points \(axis 0\)",
    ),
    (
        lambda: cal.central_interval(D, 1.0),
        ValueError,
        r"`level` must be a finite number in \(0, 1\); got 1\.0",
    ),
    (lambda: cal.central_interval(D, [0.9]), TypeError, "`level` must be a number; got list"),
    (
        lambda: cal.coverage(D, Y, [0.5, 1.2]),
        ValueError,
        r"`levels\[1\]` must be a finite number in \(0, 1\); got 1\.2",
    ),
    (lambda: cal.coverage(D, Y, []), ValueError, "`levels` must be a non-empty 1-D sequence"),
    (
        lambda: cal.calibration_curve(D, Y, levels=[[0.5]]),
        ValueError,
        "`levels` must be a non-empty",
    ),
    (
        lambda: cal.nll(Y, loc_draws=D, scale_draws=np.ones((4, 3))),
        ValueError,
        r"`scale_draws` must have shape \[S\], \[S, O\] or \[S, N, O\].*got shape \(4, 3\)",
    ),
    (
        lambda: cal.nll(Y, loc_draws=D, scale_draws=np.zeros(4)),
        ValueError,
        "`scale_draws` must be > 0",
    ),
    (lambda: cal.nll(Y, loc_draws=D, scale_draws=1.0, df=0), ValueError, "`df` must be a finite"),
    (
        lambda: cal.nll(Y, loc_draws=D, scale_draws=1.0, df="3"),
        TypeError,
        "`df` must be a number; got",
    ),
    (
        lambda: cal.nll(np.zeros((6, 2)), loc_draws=D, scale_draws=1.0),
        ValueError,
        r"`y` has 6 rows but `loc_draws` has 5 points",
    ),
    (lambda: cal.nll_gaussian(Y, np.ones(3), Y), ValueError, "`sd` must broadcast to the shape"),
    (lambda: cal.nll_gaussian(Y, 0.0, Y), ValueError, "`sd` must be > 0"),
    (
        lambda: cal.miscalibration_area(cal.CalibrationCurve(np.ones(3), np.ones((2, 1)))),
        ValueError,
        r"`curve.observed` must have shape \[L, O\]",
    ),
    (
        lambda: cal.interval_score(np.ones(2), np.zeros(2), np.zeros(2), 0.9),
        ValueError,
        "`lower` must be ≤ `upper`; 2 intervals are reversed",
    ),
    (
        lambda: cal.interval_score(np.zeros(2), np.ones(3), np.zeros(2), 0.9),
        ValueError,
        "`upper` has 3 rows but `lower` has 2 points",
    ),
    (lambda: cal.pit_uniformity([0.5, 1.5]), ValueError, r"`pit_values` must lie in \[0, 1\]"),
    (
        lambda: cal.pit_uniformity(np.full(100, 0.5), num_bins=1),
        ValueError,
        "`num_bins` must be ≥ 2",
    ),
    (
        lambda: cal.pit_uniformity(np.full(100, 0.5), num_bins=2.0),
        TypeError,
        "`num_bins` must be an int",
    ),
    (lambda: cal.generalization_gap(-1.0, 1.0), ValueError, "`train_rmse` must be ≥ 0"),
    (
        lambda: cal.summarize(D + np.arange(4)[:, None, None], Y, loc_draws=D),
        ValueError,
        "`loc_draws` and `scale_draws` must be given together.*only `loc_draws`",
    ),
    (lambda: cal.summarize(D, Y, train=(D,)), ValueError, r"`train` must be a pair"),
    (
        lambda: cal.summarize(D, Y, train=(D, Y)),
        ValueError,
        r"`train` needs `loc_draws` \(and `scale_draws`\): the generalization gap compares",
    ),
    (
        lambda: cal.summarize(
            D, Y, loc_draws=D, scale_draws=np.ones((4, 2)), train=(D[..., :1], Y[:, :1])
        ),
        ValueError,
        r"`train\[0\]` \(train_loc_draws\) has 1 outputs",
    ),
    (
        lambda: cal.fit_recalibration(D, Y, method="platt"),
        ValueError,
        "`method` must be one of 'isotonic', 'variance'; got 'platt'",
    ),
    (
        lambda: cal.fit_recalibration(D, Y, method="variance"),
        ValueError,
        r"`draws` have zero spread at 10 \(point, output\) pairs",
    ),
    (lambda: cal.Recalibration("platt"), ValueError, "`method` must be one of"),
    (
        lambda: cal.Recalibration("variance"),
        ValueError,
        "variance `Recalibration` needs a non-empty",
    ),
    (
        lambda: cal.Recalibration("variance", scale=(0.0,)),
        ValueError,
        "`scale` must be finite and > 0",
    ),
    (
        lambda: cal.Recalibration("isotonic", scale=(1.0,)),
        ValueError,
        "isotonic `Recalibration` needs `levels` and `observed`",
    ),
    (
        lambda: cal.Recalibration("isotonic", levels=((0, 0.5, 1),), observed=((0, 0.6, 0.5, 1),)),
        ValueError,
        r"`levels\[0\]` must be strictly increasing from 0 to 1",
    ),
    (
        lambda: cal.Recalibration("isotonic", levels=((0, 1),), observed=((0, 0.9),)),
        ValueError,
        r"`observed\[0\]` must be strictly increasing from 0 to 1",
    ),
    (lambda: cal.recalibrate("variance", D), TypeError, "`recal` must be a Recalibration"),
    (
        lambda: cal.recalibrate(cal.Recalibration("isotonic", **ISO), D),
        ValueError,
        r"`recal` was fitted for 1 outputs but `draws` has 2 \(axis 2\)",
    ),
]


@pytest.mark.parametrize("call, error, match", ERRORS)
def test_errors_name_the_argument(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_pit_uniformity_warns_when_bins_are_too_sparse():
    with pytest.warns(UserWarning, match="fewer than 5 per bin for 10 bins"):
        result = cal.pit_uniformity(np.linspace(0.01, 0.99, 20))
    assert result.ks_pvalue.shape == (1,)


def test_chi2_bins_keep_five_expected_points_per_bin():
    assert [cal.chi2_bins(n) for n in (3, 10, 30, 49, 50, 1000)] == [2, 2, 6, 9, 10, 10]
    rng = np.random.default_rng(0)
    draws, y = rng.normal(size=(200, 30, 1)), rng.normal(size=(30, 1))
    cal.summarize(draws, y)  # 30 points: 6 bins, so no small-sample warning (warnings are errors)


def test_summary_keys_come_from_the_one_levels_setting():
    rng = np.random.default_rng(3)
    summary = cal.summarize(rng.normal(size=(50, 20, 1)), rng.normal(size=(20, 1)))
    assert cal.INTERVAL_SCORE_KEY == "interval_score_90" and cal.INTERVAL_SCORE_KEY in summary
    assert cal.INTERVAL_WIDTH_KEY == "interval_width_90" and cal.INTERVAL_WIDTH_KEY in summary
    assert list(summary["coverage"]) == [cal.level_key(lv) for lv in cal.HEADLINE_LEVELS]
    assert list(summary["coverage"]) == ["0.5", "0.9", "0.95"]
    assert set(cal.HEADLINE_LEVELS) <= set(cal.PREDICTION_LEVELS)
    assert cal.INTERVAL_LEVEL in cal.PREDICTION_LEVELS
