"""Tests for bayesresnet.problems: reference values, evaluation checks and sampling.

Monte-Carlo checks use tolerances of 5 Monte-Carlo standard errors, computed from the
sample itself (the draw count is stated beside each), with fixed seeds.
"""

import itertools
import math

import numpy as np
import pytest
from scipy.stats import qmc

from bayesresnet import problems
from bayesresnet.data import Dataset
from bayesresnet.problems import Problem

NUM_MC = 200_000  # Monte-Carlo draws for the mean/variance reference checks


def _uniform(problem, num, seed):
    lower, upper = problem.bounds[:, 0], problem.bounds[:, 1]
    u = np.random.default_rng(seed).uniform(size=(num, problem.num_inputs))
    return lower + (upper - lower) * u


def _check_mean_and_variance(y, mean, variance):
    """Asserts sample mean and variance within 5 MC standard errors of the truth."""
    n = y.size
    centred = y - y.mean()
    m2, m4 = np.mean(centred**2), np.mean(centred**4)
    mean_se = math.sqrt(m2 / n)
    var_se = math.sqrt((m4 - m2**2) / n)  # standard error of the sample variance
    assert abs(y.mean() - mean) < 5 * mean_se, (y.mean(), mean, mean_se)
    assert abs(y.var(ddof=1) - variance) < 5 * var_se, (y.var(ddof=1), variance, var_se)
    return var_se


# ----------------------------------------------------------------------------- registry


def test_names_and_default():
    assert problems.names() == [
        "borehole",
        "friedman1",
        "ishigami",
        "oscillator",
        "sine",
        "sobol_g",
    ]
    assert problems.DEFAULT == "sine"
    assert problems.get().name == problems.DEFAULT
    for name in problems.names():
        problem = problems.get(name)
        assert isinstance(problem, Problem)
        assert problem.name == name
        assert problem.bounds.shape == (problem.num_inputs, 2)
        assert problem.reference and problem.description


def test_get_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown problem 'nope'.*available.*'ishigami'"):
        problems.get("nope")


def test_get_rejects_non_str_name():
    with pytest.raises(TypeError, match="`name` must be a str; got int"):
        problems.get(3)


def test_get_rejects_unknown_parameter():
    with pytest.raises(TypeError, match=r"'sine' got unexpected parameters \['dim'\].*no param"):
        problems.get("sine", dim=3)
    with pytest.raises(TypeError, match=r"accepts \['dim', 'a'\]"):
        problems.get("sobol_g", b=3)


# ---------------------------------------------------------------------------- Ishigami

ISHIGAMI_MEAN = 3.5  # a/2 with a = 7
ISHIGAMI_VAR = 7**2 / 8 + 0.1 * math.pi**4 / 5 + 0.1**2 * math.pi**8 / 18 + 0.5  # ≈ 13.8446


def test_ishigami_reference_constants():
    assert ISHIGAMI_VAR == pytest.approx(13.8446, abs=1e-4)


def test_ishigami_hand_values():
    f = problems.get("ishigami").evaluate
    pi = math.pi
    x = np.array(
        [
            [0.0, 0.0, 0.0],  # 0
            [pi / 2, pi / 2, 0.0],  # 1 + 7 = 8
            [pi / 2, 0.0, pi],  # 1 + 0.1 pi^4
            [-pi / 2, pi / 2, pi],  # -1 + 7 - 0.1 pi^4
        ]
    )
    expected = [0.0, 8.0, 1 + 0.1 * pi**4, -1 + 7 - 0.1 * pi**4]
    np.testing.assert_allclose(f(x)[:, 0], expected, rtol=1e-12, atol=1e-12)
    g = problems.get("ishigami", a=2.0, b=0.5).evaluate
    assert g(np.array([[pi / 2, pi / 2, 1.0]]))[0, 0] == pytest.approx(1 + 2 + 0.5)


def test_ishigami_mean_and_variance_monte_carlo():
    problem = problems.get("ishigami")
    y = problem.evaluate(_uniform(problem, NUM_MC, seed=1))[:, 0]  # 2e5 draws, 5 MCSE
    _check_mean_and_variance(y, ISHIGAMI_MEAN, ISHIGAMI_VAR)


def test_ishigami_rejects_bad_coefficient():
    with pytest.raises(ValueError, match="`a` must be a finite number; got nan"):
        problems.get("ishigami", a=float("nan"))
    with pytest.raises(TypeError, match="`b` must be a number; got str"):
        problems.get("ishigami", b="0.1")


# ---------------------------------------------------------------------------- Sobol' G


def _sobol_g_variance(a):
    return np.prod(1 + 1 / (3 * (1 + np.asarray(a)) ** 2)) - 1


def test_sobol_g_mean_one_and_analytic_variance_monte_carlo():
    a = (0, 1, 4.5, 9, 99, 99, 99, 99)  # Saltelli & Sobol' (1995)
    assert _sobol_g_variance(a) == pytest.approx(0.465424, abs=1e-6)
    problem = problems.get("sobol_g")
    y = problem.evaluate(_uniform(problem, NUM_MC, seed=2))[:, 0]  # 2e5 draws, 5 MCSE
    _check_mean_and_variance(y, 1.0, _sobol_g_variance(a))


def test_sobol_g_hand_values_and_default_coefficients():
    f = problems.get("sobol_g", dim=2, a=[0.0, 1.0]).evaluate
    # (|4x - 2| + a) / (1 + a): at x = (0, 0): 2/1 * 3/2 = 3; at (0.25, 1): 1 * 3/2 = 1.5;
    # at x = 0.5 the a = 0 factor vanishes.
    np.testing.assert_allclose(f(np.array([[0, 0], [0.25, 1], [0.5, 0.3]]))[:, 0], [3, 1.5, 0])
    x = np.random.default_rng(3).uniform(size=(50, 10))
    np.testing.assert_array_equal(
        problems.get("sobol_g", dim=3).evaluate(x[:, :3]),
        problems.get("sobol_g", dim=3, a=[0, 1, 4.5]).evaluate(x[:, :3]),
    )
    np.testing.assert_array_equal(
        problems.get("sobol_g", dim=10).evaluate(x),
        problems.get("sobol_g", dim=10, a=[0, 1, 4.5, 9] + [99] * 6).evaluate(x),
    )


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"dim": 0}, ValueError, "`dim` must be ≥ 1; got 0"),
        ({"dim": 2.0}, TypeError, "`dim` must be an int; got float"),
        ({"dim": 3, "a": [0, 1]}, ValueError, r"one coefficient per input \(3\); got shape \(2,\)"),
        (
            {"dim": 2, "a": [0, -1]},
            ValueError,
            r"`a` must hold finite numbers ≥ 0; got \[0.0, -1.0\]",
        ),
    ],
)
def test_sobol_g_rejects_bad_parameters(kwargs, error, match):
    with pytest.raises(error, match=match):
        problems.get("sobol_g", **kwargs)


# ---------------------------------------------------------------------------- borehole


def _borehole(rw, r, tu, hu, tl, hl, length, kw):
    """The borehole formula written out independently on Python floats."""
    log_ratio = math.log(r / rw)
    return (
        2
        * math.pi
        * tu
        * (hu - hl)
        / (log_ratio * (1 + 2 * length * tu / (log_ratio * rw**2 * kw) + tu / tl))
    )


def test_borehole_at_domain_centre():
    problem = problems.get("borehole")
    centre = problem.bounds.mean(axis=1)
    # ln(25050 / 0.1) = 12.4312; 2 L Tu / (ln rw^2 Kw) = 183760.4; Tu / Tl = 997.60;
    # 2 pi 89335 * 290 / (12.4312 * 184759.0) = 70.873.
    assert _borehole(*centre) == pytest.approx(70.873, abs=1e-3)
    assert problem.evaluate(centre[None])[0, 0] == pytest.approx(_borehole(*centre), rel=1e-12)


def test_borehole_range_over_domain():
    problem = problems.get("borehole")
    corners = np.array(list(itertools.product(*problem.bounds)))  # 2^8 corners
    at_corners = np.array([_borehole(*c) for c in corners])
    np.testing.assert_allclose(problem.evaluate(corners)[:, 0], at_corners, rtol=1e-12)
    # f is monotone in each input, so the corners bracket it: ≈ [7.82, 309.58].
    assert at_corners.min() == pytest.approx(7.8197, abs=1e-3)
    assert at_corners.max() == pytest.approx(309.576, abs=1e-3)
    y = problem.evaluate(_uniform(problem, 20_000, seed=4))
    assert at_corners.min() <= y.min() and y.max() <= at_corners.max()


# --------------------------------------------------------------------------- Friedman 1


def test_friedman1_hand_value_and_inert_inputs():
    f = problems.get("friedman1").evaluate
    # 10 sin(pi/4) + 20 * 0 + 10 * 0.5 + 5 * 0.5
    assert f(np.full((1, 10), 0.5))[0, 0] == pytest.approx(10 * math.sin(math.pi / 4) + 7.5)
    x = np.random.default_rng(5).uniform(size=(100, 10))
    moved = x.copy()
    moved[:, 5:] = np.random.default_rng(6).uniform(size=(100, 5))
    np.testing.assert_array_equal(f(x), f(moved))
    for j in range(5):  # each active input does change the output
        bumped = x.copy()
        bumped[:, j] = 0.5 * bumped[:, j]
        assert np.abs(f(bumped) - f(x)).max() > 0.1


# -------------------------------------------------------------------------- oscillator


def test_oscillator_shape_names_and_hand_value():
    problem = problems.get("oscillator")
    assert problem.num_inputs == 4 and problem.num_outputs == 3
    assert problem.output_names == ("x(t=0.5)", "x(t=1)", "x(t=2)")
    # m = 1, k = 25, c = 1, x0 = 1: alpha = c/2m = 0.5, omega_d = sqrt(25 - 0.25).
    wd = math.sqrt(24.75)
    expected = [
        math.exp(-0.5 * t) * (math.cos(wd * t) + 0.5 / wd * math.sin(wd * t))
        for t in (0.5, 1.0, 2.0)
    ]
    y = problem.evaluate(np.array([[1.0, 25.0, 1.0, 1.0], [1.0, 25.0, 1.0, 2.0]]))
    np.testing.assert_allclose(y[0], expected, rtol=1e-12)
    np.testing.assert_allclose(y[1], 2 * y[0], rtol=1e-12)  # linear in x0


def test_oscillator_solves_the_ode():
    h, t = 1e-3, 0.7
    problem = problems.get("oscillator", times=(0.0, t - h, t, t + h))
    x = _uniform(problem, 200, seed=7)
    y = problem.evaluate(x)
    m, k, c, x0 = x.T
    np.testing.assert_allclose(y[:, 0], x0, rtol=1e-14)  # x(0) = x0
    velocity = (y[:, 3] - y[:, 1]) / (2 * h)
    acceleration = (y[:, 3] - 2 * y[:, 2] + y[:, 1]) / h**2
    residual = m * acceleration + c * velocity + k * y[:, 2]
    # O(h^2) truncation: about omega^4 h^2 / 12 * m |x0| < 1e-4 here.
    assert np.abs(residual).max() < 1e-3 * np.abs(k * x0).max()


def test_oscillator_damping_regimes_are_continuous():
    problem = problems.get("oscillator", times=(0.3, 1.0))
    m, k, x0 = 1.0, 4.0, 1.0  # critical damping at c = 2 sqrt(mk) = 4
    x = np.array([[m, k, 4.0 - 1e-7, x0], [m, k, 4.0, x0], [m, k, 4.0 + 1e-7, x0]])
    y = problem.evaluate(x)
    critical = [x0 * math.exp(-2 * t) * (1 + 2 * t) for t in (0.3, 1.0)]
    np.testing.assert_allclose(y[1], critical, rtol=1e-14)
    np.testing.assert_allclose(y, np.tile(critical, (3, 1)), rtol=1e-6)
    over = problem.evaluate(np.array([[1.0, 1.0, 5.0, 1.0]]))[0]  # roots (-5 ± sqrt 21) / 2
    r1, r2 = (-5 + math.sqrt(21)) / 2, (-5 - math.sqrt(21)) / 2
    exact = [(r2 * math.exp(r1 * t) - r1 * math.exp(r2 * t)) / (r2 - r1) for t in (0.3, 1.0)]
    np.testing.assert_allclose(over, exact, rtol=1e-12)


@pytest.mark.parametrize(
    ("times", "error", "match"),
    [
        ((), ValueError, "`times` must hold at least one time"),
        ((1.0, 1.0), ValueError, r"`times` must be distinct; got \[1.0, 1.0\]"),
        ((1.0, -2.0), ValueError, r"`times\[1\]` must be a finite number ≥ 0; got -2.0"),
        ("12", TypeError, "`times` must be a sequence of numbers; got str"),
    ],
)
def test_oscillator_rejects_bad_times(times, error, match):
    with pytest.raises(error, match=match):
        problems.get("oscillator", times=times)


# ------------------------------------------------------------------------------- sine


def test_sine_values_and_1d_input():
    problem = problems.get("sine")
    x = np.array([0.0, math.pi / 6, -1.0])
    expected = [0.0, 1 + 0.3 * math.pi / 6, math.sin(-3) - 0.3]
    np.testing.assert_allclose(problem.evaluate(x)[:, 0], expected, rtol=1e-12, atol=1e-15)
    assert problem.evaluate(x).shape == (3, 1)
    np.testing.assert_array_equal(problem.evaluate(x), problem.evaluate(x[:, None]))


# ---------------------------------------------------------------------------- evaluate


def test_evaluate_rejects_wrong_shape():
    problem = problems.get("ishigami")
    with pytest.raises(ValueError, match=r"must have shape \[N, 3\].*got shape \(5, 2\)"):
        problem.evaluate(np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"got shape \(3,\)\. For a single point use"):
        problem.evaluate(np.zeros(3))


def test_evaluate_rejects_non_numeric_and_non_finite():
    problem = problems.get("ishigami")
    with pytest.raises(TypeError, match="`x` must be a numeric array; got dtype <U1"):
        problem.evaluate(np.array([["a", "b", "c"]]))
    x = np.zeros((8, 3))
    x[[2, 6], 1] = np.nan
    with pytest.raises(
        ValueError,
        match=r"NaN or infinite values: column 1 \('x2'\) has 2 non-finite values "
        r"\(0-based rows 2, 6\)",
    ):
        problem.evaluate(x)


@pytest.mark.parametrize(
    ("bounds", "names", "match"),
    [
        ([[0.0, 1.0]], ("a", "b"), r"must have shape \[2, 2\].*got shape \(1, 2\)"),
        ([[0.0, 1.0], [2.0, 2.0]], ("a", "b"), r"input 1 \('b'\) has \[2.0, 2.0\]"),
        ([[0.0, np.inf], [0.0, 1.0]], ("a", "b"), r"input 0 \('a'\) has \[0.0, inf\]"),
        (np.zeros((0, 2)), (), "needs at least one input and one output name"),
    ],
)
def test_problem_rejects_bad_bounds(bounds, names, match):
    with pytest.raises(ValueError, match=match):
        Problem(
            name="custom",
            description="",
            input_names=names,
            output_names=("y",),
            bounds=np.array(bounds),
            reference="",
            _evaluate=lambda x: x[:, :1],
        )


def test_problem_bounds_are_read_only():
    with pytest.raises(ValueError, match="read-only"):
        problems.get("sine").bounds[0, 0] = 5.0


# ------------------------------------------------------------------------------ sample


def test_sample_shapes_names_and_bounds():
    problem = problems.get("oscillator")
    data = problem.sample(0, 40, num_test=15)
    assert isinstance(data, Dataset)
    assert data.x_train.shape == (40, 4) and data.y_train.shape == (40, 3)
    assert data.x_test.shape == (15, 4) and data.y_test.shape == (15, 3)
    assert data.input_names == problem.input_names and data.output_names == problem.output_names
    assert data.name == "oscillator"
    for x in (data.x_train, data.x_test):
        assert (x >= problem.bounds[:, 0]).all() and (x <= problem.bounds[:, 1]).all()
    np.testing.assert_array_equal(data.y_train, problem.evaluate(data.x_train))  # noise = 0
    assert problem.sample(0, 3, num_test=0).num_test == 0


def test_sample_is_deterministic_under_seed():
    problem = problems.get("borehole")
    a = problem.sample(11, 30, num_test=10, noise=0.1)
    b = problem.sample(11, 30, num_test=10, noise=0.1)
    c = problem.sample(12, 30, num_test=10, noise=0.1)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(a, field), getattr(b, field))
        assert not np.array_equal(getattr(a, field), getattr(c, field))
    quiet = problem.sample(11, 30, num_test=10, noise=0.0)  # inputs do not depend on noise
    np.testing.assert_array_equal(quiet.x_train, a.x_train)
    np.testing.assert_array_equal(quiet.x_test, a.x_test)


def test_sample_latin_hypercube_stratifies_every_input():
    problem = problems.get("friedman1")
    n = 25
    data = problem.sample(3, n, num_test=0, design="lhs")
    strata = np.floor(data.x_train * n).astype(int)  # bounds are [0, 1]
    for j in range(problem.num_inputs):
        np.testing.assert_array_equal(np.sort(strata[:, j]), np.arange(n))


def test_sample_latin_hypercube_is_scipys_sampler():
    # The design is scipy.stats.qmc.LatinHypercube on the run's generator, scaled to bounds.
    problem = problems.get("ishigami")
    data = problem.sample(4, 12, num_test=5, design="lhs")
    u = qmc.LatinHypercube(d=problem.num_inputs, seed=np.random.default_rng(4)).random(12)
    lower, upper = problem.bounds[:, 0], problem.bounds[:, 1]
    np.testing.assert_allclose(data.x_train, lower + (upper - lower) * u, rtol=1e-15)


def test_sample_noise_is_relative_to_output_std():
    problem = problems.get("oscillator")
    n, noise = 20_000, 0.2  # 2e4 draws per column; tolerance 5 standard errors
    data = problem.sample(8, n, num_test=n, noise=noise)
    sigma = noise * problem.output_std  # noise sd in raw units, one per output
    for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
        residual = y - problem.evaluate(x)
        # Gaussian sample sd: standard error sigma / sqrt(2 (n - 1)).
        np.testing.assert_array_less(
            np.abs(residual.std(axis=0, ddof=1) - sigma), 5 * sigma / math.sqrt(2 * (n - 1))
        )
        np.testing.assert_array_less(np.abs(residual.mean(axis=0)), 5 * sigma / math.sqrt(n))


@pytest.mark.parametrize(
    ("name", "variance"),
    [("ishigami", ISHIGAMI_VAR), ("sobol_g", _sobol_g_variance((0, 1, 4.5, 9, 99, 99, 99, 99)))],
)
def test_output_std_matches_analytic_variance(name, variance):
    problem = problems.get(name)
    # output_std uses 2^17 points; the SE of its variance is estimated from 2e5 fresh draws.
    y = problem.evaluate(_uniform(problem, NUM_MC, seed=9))[:, 0]
    m2, m4 = y.var(), np.mean((y - y.mean()) ** 4)
    var_se = math.sqrt((m4 - m2**2) / 2**17)
    assert abs(problem.output_std[0] ** 2 - variance) < 5 * var_se


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"num_train": 2}, ValueError, "`num_train` must be ≥ 3; got 2"),
        ({"num_train": 10.0}, TypeError, "`num_train` must be an int; got float"),
        ({"num_train": 10, "num_test": -1}, ValueError, "`num_test` must be ≥ 0; got -1"),
        ({"num_train": 10, "noise": -0.1}, ValueError, "`noise` must be a finite number ≥ 0"),
        ({"num_train": 10, "noise": float("inf")}, ValueError, "`noise` must be a finite number"),
        ({"num_train": 10, "noise": "low"}, TypeError, "`noise` must be a number"),
        ({"num_train": 10, "design": "sobol"}, ValueError, r"one of \['uniform', 'lhs'\]"),
    ],
)
def test_sample_rejects_bad_arguments(kwargs, error, match):
    with pytest.raises(error, match=match):
        problems.get("sine").sample(0, **kwargs)
