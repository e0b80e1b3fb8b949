"""Sobol indices per posterior draw: SALib's design and numbers, SciPy's, closed forms, errors."""

import warnings

import numpy as np
import pytest
from matplotlib.figure import Figure

import bayesresnet as brn
from bayesresnet import diagnostics, problems, sensitivity, sites
from bayesresnet.model import PriorSpec, Scaler
from bayesresnet.posterior import Posterior
from bayesresnet.resnet import ResNetSpec, param_shapes

salib_sample = pytest.importorskip("SALib.sample.sobol")
salib_analyze = pytest.importorskip("SALib.analyze.sobol")

MIXED = {  # one input of each distribution, rows in SALib's meaning
    "num_vars": 4,
    "names": ["a", "b", "c", "d"],
    "bounds": [[-1.0, 2.0], [0.5, 0.2], [0.0, 0.3], [0.0, 1.0, 0.2, 0.5]],
    "dists": ["unif", "norm", "lognorm", "truncnorm"],
}


# ----------------------------------------------------------------------------- helpers
def _posterior(in_features=4, out_features=2, num_draws=5, seed=0):
    """A posterior of prior-like network draws (independent N(0, 1/width) entries)."""
    spec = ResNetSpec(in_features, out_features, width=6, num_layers=4)
    rng = np.random.default_rng(seed)
    shapes = param_shapes(spec)
    samples = {
        k: rng.normal(size=(1, num_draws, *shapes[k])) / np.sqrt(spec.width) for k in sites.NETWORK
    }
    samples[sites.NOISE_SCALE] = np.full((1, num_draws, out_features), 0.1)
    x = rng.uniform(-1.0, 2.0, size=(30, in_features))
    scaler = Scaler(
        np.full(in_features, 0.5), np.full(in_features, 0.8), np.arange(out_features), np.ones(2)
    )
    names = tuple("abcd"[:in_features])
    outputs = tuple(f"out{o}" for o in range(out_features))
    return Posterior(
        spec, PriorSpec(), scaler, samples, "ensemble", {}, {}, {}, {}, x, x[:, :out_features],
        input_names=names, output_names=outputs,
    )  # fmt: skip


def _mean_function(post):
    """The posterior-mean function, as function draws with one draw."""

    def evaluate(x, draws):
        return np.broadcast_to(post.predict_f(x).mean(axis=0), (len(draws), len(x), 2))

    return sensitivity.FunctionDraws(evaluate, 1, post.input_names, post.output_names)


def _exact(problem, num_draws=1):
    """A "posterior" whose every draw is the simulator itself."""

    def evaluate(x, draws):
        return np.broadcast_to(problem.evaluate(x), (len(draws), len(x), 1))

    return sensitivity.FunctionDraws(evaluate, num_draws, problem.input_names, problem.output_names)


def _ishigami_truth(a=7.0, b=0.1):
    """Closed forms (Ishigami & Homma 1990): V1, V2, V13; every other term is 0."""
    v1 = 0.5 * (1 + b * np.pi**4 / 5) ** 2
    v2 = a**2 / 8
    v13 = 8 * b**2 * np.pi**8 / 225
    v = v1 + v2 + v13
    s2 = np.zeros((3, 3))
    s2[0, 2] = v13 / v
    return np.array([v1, v2, 0.0]) / v, np.array([v1 + v13, v2, v13]) / v, s2


def _sobol_g_truth(a):
    """V_i = 1 / (3 (1 + a_i)²), V = Π (1 + V_i) − 1, V_Ti = V_i Π_{j≠i} (1 + V_j)."""
    vi = 1.0 / (3.0 * (1.0 + np.asarray(a)) ** 2)
    v = np.prod(1 + vi) - 1
    return vi / v, vi * np.prod(1 + vi) / (1 + vi) / v


def _friedman_truth():
    """10 sin(π x1 x2) by Gauss-Legendre quadrature (200² nodes); the rest in closed form:
    Var 20 (x3 − ½)² = 400 (1/80 − 1/144), Var 10 x4 = 100/12, Var 5 x5 = 25/12."""
    t, w = np.polynomial.legendre.leggauss(200)
    t, w = (t + 1) / 2, w / 2
    g = 10 * np.sin(np.pi * t[:, None] * t[None, :])  # [x1, x2]
    mean = w @ g @ w
    v12 = w @ (g - mean) ** 2 @ w
    v1 = w @ (g @ w - mean) ** 2  # Var_x1 E[g | x1] (= V2 by symmetry)
    rest = np.array([400 * (1 / 80 - 1 / 144), 100 / 12, 25 / 12])
    v = v12 + rest.sum()
    s1 = np.concatenate([[v1, v1], rest, np.zeros(5)]) / v
    st = np.concatenate([[v12 - v1, v12 - v1], rest, np.zeros(5)]) / v
    return s1, st


# ------------------------------------------------------------------ design and ecosystem
@pytest.mark.parametrize("second_order", [False, True])
def test_the_design_is_salibs_for_every_distribution(second_order):
    u = sensitivity.saltelli_design(64, 4, second_order=second_order, seed=5)
    ours = sensitivity.scale_design(u, MIXED)
    theirs = salib_sample.sample(dict(MIXED), 64, calc_second_order=second_order, seed=5)
    np.testing.assert_array_equal(ours, theirs)
    assert ours.shape == (64 * (10 if second_order else 6), 4)


def test_the_truths_used_below_are_the_published_values():
    s1, st, s2 = _ishigami_truth()
    np.testing.assert_allclose(s1, [0.3139, 0.4424, 0.0], atol=1e-4)
    np.testing.assert_allclose(st, [0.5576, 0.4424, 0.2437], atol=1e-4)
    s1, st = _sobol_g_truth(problems._SOBOL_G_A)
    np.testing.assert_allclose([s1[0], st[0]], [0.7162, 0.7871], atol=1e-4)
    s1, _ = _friedman_truth()
    np.testing.assert_allclose(s1[:6], [0.1973, 0.1973, 0.0933, 0.3498, 0.0874, 0.0], atol=1e-4)


@pytest.mark.parametrize("second_order", [False, True])
def test_on_the_posterior_mean_equals_salib_to_1e_10(second_order):
    """SALib centres Y by its mean over the whole design; so do we. Float64 throughout."""
    post = _posterior()
    problem = {"num_vars": 4, "names": list("abcd"), "bounds": [[-1, 2]] * 4}
    result = sensitivity.sobol(
        _mean_function(post), bounds=problem, n=256, second_order=second_order, seed=3
    )
    x = salib_sample.sample(dict(problem), 256, calc_second_order=second_order, seed=3)
    y = post.predict_f(x).mean(axis=0)  # [P, 2]
    on_salib_design = sensitivity.estimate_indices(y, 4, second_order=second_order)
    for o in range(2):
        theirs = salib_analyze.analyze(
            dict(problem), y[:, o], calc_second_order=second_order, seed=1
        )
        for ours in (result, on_salib_design):
            np.testing.assert_allclose(ours.S1[0, o], theirs["S1"], rtol=0, atol=1e-10)
            np.testing.assert_allclose(ours.ST[0, o], theirs["ST"], rtol=0, atol=1e-10)
            if second_order:
                np.testing.assert_allclose(ours.S2[0, o], theirs["S2"], rtol=0, atol=1e-10)
    assert result.S1[0].std() > 0.01  # the indices differ between inputs: not a trivial case


def test_agrees_with_scipy_sobol_indices():
    """Same evaluations handed to SciPy: its totals are ours (same formula); its first-order
    indices centre on A and B only, so ours lie inside its 95 % bootstrap interval."""
    from scipy.stats import sobol_indices

    post = _posterior()
    n, d = 512, 4
    x = sensitivity.scale_design(sensitivity.saltelli_design(n, d, seed=2), MIXED)
    y = post.predict_f(x).mean(axis=0).reshape(n, d + 2, 2)  # rows A, AB^(1..d), B
    ours = sensitivity.estimate_indices(y.reshape(-1, 2), d)
    func = {
        "f_A": y[:, 0].T,  # [outputs, n]
        "f_B": y[:, -1].T,
        "f_AB": np.moveaxis(y[:, 1 : d + 1], 0, -1),  # [d, O, n]
    }
    theirs = sobol_indices(func=func, n=n, rng=np.random.default_rng(0))
    np.testing.assert_allclose(ours.ST[0], theirs.total_order, rtol=0, atol=1e-10)
    interval = theirs.bootstrap(confidence_level=0.95, n_resamples=999).first_order
    low, high = interval.confidence_interval
    assert np.all((low <= ours.S1[0]) & (ours.S1[0] <= high)), (low, ours.S1[0], high)
    assert np.abs(ours.S1[0] - theirs.first_order).max() > 0  # centred differently


# ---------------------------------------------------------------- closed forms, exact f
# One draw (the exact function), n = 2^13 base rows: |Ŝ − S| ≤ 3 MC standard errors.
# (The error is the independent-rows one; on this scrambled Sobol design the actual
# scatter over 20 seeds was 0.02-0.6 of it, so 3 standard errors is a loose but honest
# bound, and a wrong estimator or centring is off by far more.)
def _within_3_se(result, name, truth):
    est, se = getattr(result, name)[0, 0], getattr(result, f"{name}_se")[0, 0]
    mask = ~np.isnan(est)
    assert np.all(np.abs(est - truth)[mask] <= 3 * se[mask]), (name, est, truth, se)


@pytest.mark.parametrize("estimator", sorted(sensitivity.ESTIMATORS))
def test_exact_ishigami_within_three_standard_errors(estimator):
    problem = problems.get("ishigami")
    result = sensitivity.sobol(
        _exact(problem), bounds=problem.bounds, n=2**13, second_order=True, estimator=estimator
    )
    s1, st, s2 = _ishigami_truth()
    _within_3_se(result, "S1", s1)
    _within_3_se(result, "ST", st)
    _within_3_se(result, "S2", s2)
    assert result.S1_se[0, 0].max() < 0.03  # tight enough to tell 0.31 from 0.44


def test_exact_sobol_g_and_friedman_within_three_standard_errors():
    g = problems.get("sobol_g")
    result = sensitivity.sobol(_exact(g), bounds=g.bounds, n=2**13, seed=1)
    s1, st = _sobol_g_truth(problems._SOBOL_G_A)
    _within_3_se(result, "S1", s1)
    _within_3_se(result, "ST", st)
    friedman = problems.get("friedman1")
    result = sensitivity.sobol(_exact(friedman), bounds=friedman.bounds, n=2**13, seed=2)
    s1, st = _friedman_truth()
    _within_3_se(result, "S1", s1)
    _within_3_se(result, "ST", st)
    # Inert inputs: f(AB^(i)) = f(A) row by row, so their indices are exactly 0.
    assert np.all(result.ST[0, 0, 5:] == 0) and np.all(result.S1[0, 0, 5:] == 0)


# ------------------------------------------------------------------ draws and chunks
def test_each_draw_is_its_own_function_on_the_shared_design():
    post = _posterior(num_draws=5)
    result = sensitivity.sobol(post, n=64, chunk_draws=2, seed=4)  # chunks 2, 2, 1 (+1 pad)
    x = sensitivity.scale_design(sensitivity.saltelli_design(64, 4, seed=4), result.problem)
    f = post.predict_f(x)  # [5, P, 2], all draws at once
    alone = sensitivity.estimate_indices(f, 4)
    # float32 network evaluated in blocks of 2 draws vs 5: equal to float32 rounding.
    np.testing.assert_allclose(result.S1, alone.S1, rtol=0, atol=1e-5)
    np.testing.assert_allclose(result.ST, alone.ST, rtol=0, atol=1e-5)
    assert result.S1.shape == (5, 2, 4) and result.S1_se.shape == (5, 2, 4)
    assert np.ptp(result.S1, axis=0).max() > 0.05  # the draws differ


def test_default_ranges_are_the_training_box_and_say_so():
    post = _posterior()
    result = sensitivity.sobol(post, n=16)
    box = np.stack([post.x_train.min(axis=0), post.x_train.max(axis=0)], axis=1)
    np.testing.assert_array_equal(result.problem["bounds"], box)
    assert result.problem["dists"] == ["unif"] * 4
    assert "training data's box" in result.attrs["bounds_source"]
    assert result.attrs["bounds_source"] in result.to_xarray().attrs["bounds_source"]


def test_chunks_thinning_and_output_selection():
    problem = problems.get("ishigami")

    def evaluate(x, draws):  # draw s scales f by (1 + s): different functions, same indices
        f = problem.evaluate(x)[None, :, :] * (1.0 + np.asarray(draws))[:, None, None]
        return np.concatenate([f, f**2], axis=2)

    fd = sensitivity.FunctionDraws(evaluate, 10, problem.input_names, ("f", "f2"))
    kwargs = {"bounds": problem.bounds, "n": 32}
    full = sensitivity.sobol(fd, chunk_draws=10, **kwargs)
    chunked = sensitivity.sobol(fd, chunk_draws=3, **kwargs)
    # Equal to float64 rounding (XLA may order sums differently for other batch shapes).
    np.testing.assert_allclose(chunked.S1, full.S1, rtol=0, atol=1e-14)
    np.testing.assert_allclose(full.S1, np.broadcast_to(full.S1[:1], full.S1.shape), atol=1e-12)
    thin = sensitivity.sobol(fd, max_draws=4, outputs=["f2"], **kwargs)
    np.testing.assert_array_equal(thin.draws, [0, 3, 6, 9])
    assert thin.output_names == ("f2",)
    np.testing.assert_allclose(thin.S1, full.S1[[0, 3, 6, 9]][:, 1:], rtol=0, atol=1e-14)
    assert sensitivity.sobol(fd, outputs=1, **kwargs).output_names == ("f2",)


def test_a_constant_draw_has_nan_indices_and_a_warning():
    fd = sensitivity.FunctionDraws(
        lambda x, draws: np.full((len(draws), len(x), 1), 3.0), 2, ("p", "q"), ("y",)
    )
    with pytest.warns(RuntimeWarning, match="constant over the design in 2"):
        result = sensitivity.sobol(fd, bounds=[[0, 1], [0, 1]], n=8)
    assert np.isnan(result.S1).all() and np.isnan(result.ST_se).all()


# ----------------------------------------------------------------------- the result
@pytest.fixture(scope="module")
def result():
    return sensitivity.sobol(_posterior(num_draws=6), n=64, second_order=True)


def test_summary_table(result):
    table = result.summary(hdi_prob=0.8)
    assert list(table.columns) == [
        "output", "index", "input", "mean", "sd", "hdi_10%", "hdi_90%", "mc_se"
    ]  # fmt: skip
    # 2 outputs × (4 S1 + 4 ST + 6 pairs)
    assert len(table) == 2 * 14
    row = table[(table.output == "out1") & (table["index"] == "ST") & (table.input == "c")]
    draws = result.ST[:, 1, 2]
    assert row["mean"].item() == pytest.approx(draws.mean())
    assert row["sd"].item() == pytest.approx(draws.std())
    low, high = diagnostics.hdi(draws, 0.8)
    assert (row["hdi_10%"].item(), row["hdi_90%"].item()) == (low, high)
    assert row["mc_se"].item() == pytest.approx(np.sqrt(np.mean(result.ST_se[:, 1, 2] ** 2)))
    pair = table[(table["index"] == "S2") & (table.input == "b,d") & (table.output == "out0")]
    assert pair["mean"].item() == pytest.approx(result.S2[:, 0, 1, 3].mean())


def test_xarray_and_inference_data(result):
    ds = result.to_xarray()
    assert ds["S1"].dims == ("draw", "output", "input")
    assert ds["S2"].dims == ("draw", "output", "input", "other_input")
    assert list(ds["input"].values) == ["a", "b", "c", "d"]
    np.testing.assert_array_equal(ds["ST_mc_se"].values, result.ST_se)
    idata = result.to_inference_data()
    assert idata.posterior["S1"].shape == (1, 6, 2, 4)
    np.testing.assert_array_equal(idata.posterior["ST"].values[0], result.ST)
    np.testing.assert_array_equal(idata.sample_stats["S1_mc_se"].values[0], result.S1_se)
    assert idata.posterior.attrs["estimator"] == "saltelli2010"


def test_to_salib_is_the_posterior_mean(result):
    from SALib.util import ResultDict

    si = result.to_salib("out1")
    assert isinstance(si, ResultDict)
    np.testing.assert_allclose(si["S1"], result.S1[:, 1].mean(axis=0))
    total_sd = np.sqrt(result.ST[:, 1].var(axis=0) + np.mean(result.ST_se[:, 1] ** 2, axis=0))
    np.testing.assert_allclose(si["ST_conf"], 1.959964 * total_sd, rtol=1e-6)
    assert np.isnan(si["S2"][1, 0]) and not np.isnan(si["S2"][0, 1])
    total, first, second = si.to_df()
    assert list(first.index) == ["a", "b", "c", "d"] and len(second) == 6
    np.testing.assert_array_equal(result.to_salib(1)["ST"], si["ST"])


def test_plot_one_panel_per_output_without_pyplot(result):
    import matplotlib.pyplot as plt

    before = plt.get_fignums()
    fig = result.plot(hdi_prob=0.9)
    assert isinstance(fig, Figure) and len(fig.axes) == 2
    assert [ax.get_title() for ax in fig.axes] == ["out0", "out1"]
    assert len(fig.axes[0].patches) == 8  # S1 and ST bars for 4 inputs
    assert plt.get_fignums() == before


def test_hdi_at_the_arviz_boundary():
    # 100 evenly spaced draws: every window of 91 has the same width; ArviZ takes the first.
    np.testing.assert_array_equal(diagnostics.hdi(np.arange(100.0), 0.9), [0.0, 90.0])
    skewed = np.random.default_rng(0).exponential(size=(4000, 2, 3))
    band = diagnostics.hdi(skewed, 0.9)
    assert band.shape == (2, 3, 2)
    central = np.quantile(skewed, [0.05, 0.95], axis=0)
    assert np.all(band[..., 0] < central[0]) and np.all(band[..., 1] < central[1])
    np.testing.assert_array_equal(diagnostics.hdi(np.full((1, 2), 0.3), 0.9), [[0.3, 0.3]] * 2)


def test_reachable_from_the_package():
    assert brn.sensitivity.sobol is sensitivity.sobol


# ----------------------------------------------------------------------------- errors
@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"n": 100}, ValueError, r"`n` must be a power of 2.*got 100. Try n=64 or n=128"),
        ({"n": 2}, ValueError, r"`n` must be ≥ 4; got 2"),
        ({"n": 8.0}, TypeError, r"`n` must be an int"),
        ({"second_order": 1}, TypeError, r"`second_order` must be a bool"),
        ({"estimator": "saltelli"}, ValueError, r"`estimator` must be one of .*saltelli2010"),
        ({"outputs": "out9"}, ValueError, r"`outputs` names 'out9', not an output"),
        ({"outputs": 2}, ValueError, r"`outputs` index 2 is out of range for 2 outputs"),
        ({"outputs": [0, 0]}, ValueError, r"without repeats"),
        ({"outputs": [1.5]}, TypeError, r"`outputs` must hold output names or indices"),
        ({"max_draws": 0}, ValueError, r"`max_draws` must be ≥ 1; got 0"),
        ({"seed": -1}, ValueError, r"`seed` must be ≥ 0; got -1"),
        ({"chunk_draws": 0}, ValueError, r"`chunk_draws` must be ≥ 1; got 0"),
        ({"bounds": [[0, 1]] * 3}, ValueError, r"one row per input \(4\); got 3 rows"),
        ({"bounds": "box"}, TypeError, r"`bounds` must be a sequence"),
        ({"bounds": [[1, 0]] + [[0, 1]] * 3}, ValueError, r"`bounds\[0\]` of a 'unif' input "
         r"must be \[lower, upper\] with lower < upper; got \[1.0, 0.0\]"),
        ({"bounds": [[0, np.nan]] + [[0, 1]] * 3}, ValueError, r"`bounds\[0\]` contains NaN"),
        ({"bounds": [[0, 1]] * 3 + [[0, 0]], "dists": ["unif"] * 3 + ["norm"]}, ValueError,
         r"`bounds\[3\]` of a 'norm' input must be \[mean, sd\] with sd > 0; got \[0.0, 0.0\]"),
        ({"bounds": [[0, 1, 2, -1]] + [[0, 1]] * 3, "dists": ["truncnorm"] + ["unif"] * 3},
         ValueError, r"\[lower, upper, mean, sd\] with lower < upper and sd > 0"),
        ({"dists": ["unif", "norm", "unif", "unif"]}, ValueError,
         r"`bounds` is required with non-uniform `dists`"),
        ({"dists": "unif"}, ValueError, r"`bounds` is required|`dists` must be a sequence"),
        ({"bounds": [[0, 1]] * 4, "dists": ["unif"] * 3 + ["gamma"]}, ValueError,
         r"`dists\[3\]` must be one of \['lognorm', 'norm', 'truncnorm', 'unif'\]"),
        ({"bounds": {**MIXED, "names": list("abdc")}}, ValueError,
         r"names \['a', 'b', 'd', 'c'\] differ from the model's inputs"),
        ({"bounds": {"bounds": [[0, 1]] * 4, "groups": [1, 1, 2, 2]}}, ValueError,
         r"keys \['groups'\] that `sobol` does not support"),
        ({"bounds": {"names": list("abcd")}}, ValueError, r"needs a 'bounds' entry"),
        ({"bounds": {**MIXED, "num_vars": 3}}, ValueError, r"must describe the model's 4 inputs"),
        ({"bounds": MIXED, "dists": ["unif"] * 4}, ValueError, r"pass `dists` inside"),
    ],
)  # fmt: skip
def test_every_argument_is_checked_before_any_work(kwargs, error, match):
    calls = []
    post = _posterior()
    fd = sensitivity.make_function_draws(post)
    counted = sensitivity.FunctionDraws(
        lambda x, d: calls.append(1) or fd.evaluate(x, d),
        fd.num_draws, fd.input_names, fd.output_names, fd.x_train,
    )  # fmt: skip
    with pytest.raises(error, match=match):
        sensitivity.sobol(counted, **{"n": 16, **kwargs})
    assert not calls


def test_errors_of_the_function_draws_and_helpers():
    with pytest.raises(TypeError, match="`post` must be a bayesresnet Posterior or FunctionDraws"):
        sensitivity.sobol(np.zeros(3))
    with pytest.raises(TypeError, match="`evaluate` must be callable"):
        sensitivity.FunctionDraws(None, 1, ("a",), ("y",))
    with pytest.raises(ValueError, match="`num_draws` must be ≥ 1"):
        sensitivity.FunctionDraws(lambda x, d: x, 0, ("a",), ("y",))
    with pytest.raises(TypeError, match="`input_names` must be a sequence of str"):
        sensitivity.FunctionDraws(lambda x, d: x, 1, "a", ("y",))
    with pytest.raises(ValueError, match="`output_names` must be non-empty and distinct"):
        sensitivity.FunctionDraws(lambda x, d: x, 1, ("a",), ("y", "y"))
    with pytest.raises(ValueError, match=r"`x_train` must have 1 columns .* got shape \(3, 2\)"):
        sensitivity.FunctionDraws(lambda x, d: x, 1, ("a",), ("y",), np.zeros((3, 2)))
    no_box = sensitivity.FunctionDraws(lambda x, d: x, 1, ("a",), ("y",))
    with pytest.raises(ValueError, match="`bounds` is required: these function draws carry no"):
        sensitivity.sobol(no_box)
    flat = sensitivity.FunctionDraws(lambda x, d: x, 1, ("a",), ("y",), np.ones((3, 1)))
    with pytest.raises(ValueError, match=r"constant in column 0 \('a'\)"):
        sensitivity.sobol(flat)
    wrong = sensitivity.FunctionDraws(lambda x, d: x[None], 1, ("a", "b"), ("y",))
    with pytest.raises(ValueError, match=r"must return \[draws, points, outputs\] = \[1, 64, 1\]"):
        sensitivity.sobol(wrong, bounds=[[0, 1]] * 2, n=16)
    with pytest.raises(TypeError, match="`post` must be a bayesresnet Posterior"):
        sensitivity.make_function_draws("run/posterior.npz")
    with pytest.raises(ValueError, match=r"`y` must hold n·6 values per draw and output"):
        sensitivity.estimate_indices(np.zeros(25), 4)
    with pytest.raises(ValueError, match="`y` contains NaN"):
        sensitivity.estimate_indices(np.full(12, np.nan), 1)
    with pytest.raises(ValueError, match="`output` names 'z'"):
        sensitivity.sobol(_exact(problems.get("ishigami")), bounds=[[0, 1]] * 3, n=8).to_salib("z")
    with pytest.raises(ValueError, match="`hdi_prob` must be a finite number in"):
        sensitivity.sobol(_exact(problems.get("ishigami")), bounds=[[0, 1]] * 3, n=8).summary(1.5)


# -------------------------------------------------------------- a fitted surrogate
def _fitted_sobol(name, num_train):
    """Sobol draws of an anchored deep ensemble (8 members, width 16, 8 layers, cubic)
    fitted on ``num_train`` points with 1 % noise; n = 2^13 base rows, 8 draws."""
    problem = problems.get(name)
    data = problem.sample(0, num_train=num_train, num_test=0, noise=0.01)
    spec = ResNetSpec(problem.num_inputs, 1, width=16, num_layers=8, basis=brn.bases.Cubic())
    with warnings.catch_warnings():
        # Members stop on a step budget, not on the convergence tolerance.
        warnings.filterwarnings("ignore", r".*had not converged after", RuntimeWarning)
        post = brn.fit(spec, data, method="ensemble", num_members=8, num_steps=2000, anchored=True)
    return sensitivity.sobol(post, bounds=problem.bounds, n=2**13)


def _covered(result, s1, st, active, hdi_prob=0.9):
    """Per active index, whether the truth lies in the 90 % HDI over draws widened by two
    Monte-Carlo standard errors (the design's error is common to all draws, so their
    spread leaves it out), and whether it lies in the HDI alone."""
    widened, bare = [], []
    for draws, se, truth in ((result.S1, result.S1_se, s1), (result.ST, result.ST_se, st)):
        band = diagnostics.hdi(draws[:, 0, active], hdi_prob)  # [inputs, 2]
        pad = 2 * np.sqrt(np.mean(se[:, 0, active] ** 2, axis=0))
        truth = np.asarray(truth)[active]
        widened += list((band[:, 0] - pad <= truth) & (truth <= band[:, 1] + pad))
        bare += list((band[:, 0] <= truth) & (truth <= band[:, 1]))
    return np.array(widened), np.array(bare)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "num_train", "active", "truth"),
    [
        ("ishigami", 400, [0, 1, 2], lambda: _ishigami_truth()[:2]),
        ("sobol_g", 400, [0, 1, 2, 3], lambda: _sobol_g_truth(problems._SOBOL_G_A)),
        ("friedman1", 300, [0, 1, 2, 3, 4], _friedman_truth),
    ],
)
def test_a_fitted_surrogates_bands_cover_the_true_indices(name, num_train, active, truth):
    """Most bands cover: at least 2/3 of the active inputs' S1 and ST (4 of 6 for Ishigami,
    6 of 8 for Sobol-G, 7 of 10 for Friedman #1) lie in the 90 % HDI over the 8 members
    widened by two Monte-Carlo standard errors; the inert inputs' totals stay below 0.01.

    Measured with seed 0: widened 6/6, 8/8, 10/10; the bare HDI 2/6, 4/8, 8/10. The
    members agree to about 0.01 while the surrogate of a few hundred points is off by up to
    0.02 (Ishigami's x1-x3 interaction): a deep ensemble's bands are narrow, and the
    widening (about ±0.02 here, the independent-rows error, conservative at this n) is
    what covers. The bare count is printed in the message, not asserted.
    """
    s1, st = truth()
    result = _fitted_sobol(name, num_train)
    widened, bare = _covered(result, s1, st, active)
    message = f"widened {widened.sum()}/{widened.size}, bare {bare.sum()}/{bare.size}"
    assert widened.sum() >= np.ceil(2 * widened.size / 3), message
    inert = np.setdiff1d(np.arange(len(s1)), active)
    if name != "sobol_g":  # Sobol-G's a = 99 inputs are weak (ST = 1e-4), not inert
        assert np.all(result.ST[:, 0, inert].mean(axis=0) < 0.01), result.ST[:, 0, inert]
    print(name, message)


def test_the_benchmark_runs_quick(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_sensitivity.py"
    spec = importlib.util.spec_from_file_location("bench_sensitivity", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "sensitivity.json"
    results = bench.main(["--quick", "--repeats", "1", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert saved["draws"] == 16 and saved["points"] == 2**8 * 10
    assert saved["warm"]["evaluate_s"] > 0 and 0 < results["share_evaluate"] <= 1
    assert len(saved["S1_mean"]) == 8
