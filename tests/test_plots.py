"""Figures: each returns a Figure with the expected panels and draws the data it is given."""

import base64
import dataclasses
import re
import warnings

import numpy as np
import pytest
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle

import bayesresnet as brn
from bayesresnet import bases, diagnostics, plots, sites
from bayesresnet.calibration import CalibrationCurve


@pytest.fixture(scope="module")
def dataset():
    return brn.problems.get("sine").sample(0, 30, 20, noise=0.1)


@pytest.fixture(scope="module")
def post(dataset):
    spec = brn.ResNetSpec(1, 1, width=4, num_layers=4)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged members: fine here
        return brn.fit(spec, dataset, method="ensemble", num_members=4, num_steps=200)


def _with_basis(post, basis, num_draws=30, seed=0):
    """A posterior of the same network with another basis and random hidden weights."""
    spec = dataclasses.replace(post.spec, basis=basis)
    k = spec.num_basis_functions
    rng = np.random.default_rng(seed)
    w = spec.width
    samples = dict(post.samples)
    samples[sites.HIDDEN_WEIGHT] = rng.normal(size=(1, num_draws, k, w, w))
    return dataclasses.replace(post, spec=spec, samples=samples)


@pytest.fixture(scope="module")
def post_2x2(post):
    """A 2-input, 2-output posterior with random network draws (no fit)."""
    spec = brn.ResNetSpec(2, 2, width=3, num_layers=2, basis=bases.Linear())
    rng = np.random.default_rng(1)
    shapes = brn.resnet.param_shapes(spec)
    samples = {k: 0.5 * rng.normal(size=(1, 6, *shape)) for k, shape in shapes.items()}
    samples[sites.NOISE_SCALE] = np.full((1, 6, 2), 0.1)
    x = rng.uniform(-1, 1, size=(12, 2))
    return dataclasses.replace(
        post,
        spec=spec,
        scaler=brn.Scaler.identity(2, 2),
        samples=samples,
        x_train=x,
        y_train=np.c_[x.sum(axis=1), x[:, 0] - x[:, 1]],
        input_names=("a", "b"),
        output_names=("u", "v"),
    )


def _legend_texts(ax):
    return [t.get_text() for t in ax.get_legend().get_texts()]


# --------------------------------------------------------------------------- predictive


def test_predictive_1d_draws_mean_bands_and_points(post, dataset):
    fig = plots.plot_predictive_1d(
        post, dataset=dataset, truth=lambda x: np.sin(x), num_points=25, levels=(0.9, 0.5)
    )
    assert isinstance(fig, Figure) and len(fig.axes) == 1
    ax = fig.axes[0]
    x_grid = np.linspace(
        min(dataset.x_train.min(), dataset.x_test.min()),
        max(dataset.x_train.max(), dataset.x_test.max()),
        25,
    )[:, None]
    mean_line, truth_line = ax.lines
    np.testing.assert_allclose(mean_line.get_xdata(), x_grid[:, 0])
    np.testing.assert_allclose(
        mean_line.get_ydata(), post.predict(x_grid, levels=(0.5, 0.9)).mean[:, 0], rtol=1e-6
    )
    np.testing.assert_allclose(truth_line.get_ydata(), np.sin(x_grid[:, 0]))
    # 2 levels × (y band, f band), then training and test points.
    assert len(ax.collections) == 6
    np.testing.assert_allclose(
        ax.collections[4].get_offsets(), np.c_[post.x_train[:, 0], post.y_train[:, 0]]
    )
    np.testing.assert_allclose(
        ax.collections[5].get_offsets(), np.c_[dataset.x_test, dataset.y_test]
    )
    texts = _legend_texts(ax)
    assert "y 90% predictive" in texts and "f 50% credible" in texts and "truth" in texts
    assert "test data" in texts  # 20 test points: none left out


def test_predictive_1d_draws_the_bands_over_thinned_test_points(post):
    """Many held-out points are thinned to MAX_TEST_POINTS, spread over the x range, and
    drawn beneath the bands (lower zorder) while the training points stay on top."""
    num_test = 3 * plots.MAX_TEST_POINTS + 7
    many = brn.problems.get("sine").sample(1, 30, num_test, noise=0.1)
    ax = plots.plot_predictive_1d(post, dataset=many, num_points=25, levels=(0.9, 0.5)).axes[0]
    bands, (train_points, test_points) = ax.collections[:4], ax.collections[4:]
    shown = test_points.get_offsets()
    assert len(shown) == plots.MAX_TEST_POINTS
    # Every point drawn is a test point, none twice, and the ends of the range are kept.
    test_xy = np.c_[many.x_test, many.y_test]
    index = [int(np.flatnonzero((test_xy == p).all(axis=1))[0]) for p in np.asarray(shown)]
    assert len(set(index)) == len(index)
    assert shown[:, 0].min() == many.x_test.min() and shown[:, 0].max() == many.x_test.max()
    # Gaps between consecutive shown points (in x order) are at most ~4 sorted test points.
    ranks = np.argsort(np.argsort(many.x_test[:, 0]))[index]
    assert np.max(np.diff(np.sort(ranks))) <= int(np.ceil(num_test / plots.MAX_TEST_POINTS)) + 1
    # Draw order: the test points beneath every band, the bands beneath the training points.
    band_z = [c.get_zorder() for c in bands]
    assert test_points.get_zorder() < min(band_z)
    assert max(band_z) < train_points.get_zorder()
    drawn = sorted(ax.get_children(), key=lambda a: a.get_zorder())  # matplotlib's draw order
    assert drawn.index(test_points) < min(drawn.index(c) for c in bands)
    assert f"test data ({plots.MAX_TEST_POINTS} of {num_test})" in _legend_texts(ax)


def test_predictive_1d_multi_output_holds_other_inputs(post_2x2):
    fig = plots.plot_predictive_1d(post_2x2, 1, num_points=10, other_inputs=[0.3, 99.0])
    assert len(fig.axes) == 2
    assert [ax.get_ylabel() for ax in fig.axes] == ["u", "v"]
    assert fig.axes[0].get_xlabel() == "b"
    x_grid = np.c_[np.full(10, 0.3), np.linspace(*np.quantile(post_2x2.x_train[:, 1], [0, 1]), 10)]
    expected = post_2x2.predict(x_grid).mean
    for j, ax in enumerate(fig.axes):
        np.testing.assert_allclose(ax.lines[0].get_ydata(), expected[:, j], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_predictive_1d_errors(post, post_2x2):
    with pytest.raises(TypeError, match="`post` must be a bayesresnet Posterior"):
        plots.plot_predictive_1d({"not": "a posterior"})
    with pytest.raises(ValueError, match=r"`x_grid_column` must be < 1"):
        plots.plot_predictive_1d(post, 1)
    with pytest.raises(ValueError, match="`num_points` must be ≥ 2"):
        plots.plot_predictive_1d(post, num_points=1)
    with pytest.raises(ValueError, match="`levels` must be a finite number in"):
        plots.plot_predictive_1d(post, levels=(0.5, 1.5))
    with pytest.raises(ValueError, match="`levels` must hold at least one level"):
        plots.plot_predictive_1d(post, levels=())
    with pytest.raises(ValueError, match="`other_inputs` must be 'mean', 'median'"):
        plots.plot_predictive_1d(post, other_inputs="mode")
    with pytest.raises(ValueError, match="`other_inputs` must hold 2 numbers"):
        plots.plot_predictive_1d(post_2x2, other_inputs=[1.0])
    with pytest.raises(
        ValueError,
        match=r"`other_inputs` contains NaN or infinite values: column 0 has 1 non-finite",
    ):
        plots.plot_predictive_1d(post_2x2, other_inputs=[1.0, np.nan])
    with pytest.raises(TypeError, match="`dataset` must be a bayesresnet Dataset"):
        plots.plot_predictive_1d(post, dataset=np.zeros(3))
    other = brn.problems.get("oscillator").sample(0, 10, 5)
    with pytest.raises(ValueError, match="`dataset` must have 1 inputs and 1 outputs"):
        plots.plot_predictive_1d(post, dataset=other)
    with pytest.raises(TypeError, match="`truth` must be a callable"):
        plots.plot_predictive_1d(post, truth=3.0)
    with pytest.raises(ValueError, match=r"`truth` must return shape \[10, 1\]"):
        plots.plot_predictive_1d(post, truth=lambda x: np.c_[x, x], num_points=10)


# --------------------------------------------------------------------------- parity


def test_parity_points_title_and_intervals(rng):
    y = rng.normal(size=(40, 2))
    mean = y + 0.1 * rng.normal(size=y.shape)
    lower, upper = mean - 0.05, mean + 0.05
    fig = plots.plot_parity(y, (mean, lower, upper), output_names=["p", "q"])
    assert len(fig.axes) == 2
    for j, ax in enumerate(fig.axes):
        np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[y[:, j], mean[:, j]])
        rmse = np.sqrt(np.mean((mean[:, j] - y[:, j]) ** 2))
        cover = np.mean((lower[:, j] <= y[:, j]) & (y[:, j] <= upper[:, j]))
        assert ax.get_title() == f"{'pq'[j]}: RMSE {rmse:.3g}, 90% coverage {cover:.0%}"
    assert "1:1" in _legend_texts(fig.axes[0])


def test_parity_with_prediction(post, dataset):
    pred = post.predict(dataset.x_test, levels=(0.8,))
    fig = plots.plot_parity(dataset.y_test[:, 0], pred, level=0.8)
    ax = fig.axes[0]
    np.testing.assert_allclose(ax.collections[0].get_offsets(), np.c_[dataset.y_test, pred.mean])
    assert "80% coverage" in ax.get_title() and ax.get_xlabel() == "observed y"


def test_parity_caps_panels_at_max(rng):
    y = rng.normal(size=(5, 6))
    fig = plots.plot_parity(y, (y, y - 1, y + 1))
    assert len(fig.axes) == plots.MAX_PANELS
    assert "first 4 of 6 outputs shown" in fig.get_suptitle()


def test_parity_errors(rng):
    y = rng.normal(size=(5, 2))
    with pytest.raises(ValueError, match=r"`pred.mean` must have the shape of `y_true` \(5, 2\)"):
        plots.plot_parity(y, (y[:4], y[:4], y[:4]))
    with pytest.raises(TypeError, match="`pred` must be a Prediction"):
        plots.plot_parity(y, y)
    with pytest.raises(ValueError, match="`y_true` must have shape"):
        plots.plot_parity(np.zeros((0, 2)), (y, y, y))
    with pytest.raises(
        ValueError, match=r"`y_true` contains NaN or infinite values: column 0 has 1 non-finite"
    ):
        plots.plot_parity(np.where(np.eye(5, 2) == 1, [np.inf, 0.0], y), (y, y, y))
    with pytest.raises(TypeError, match="`y_true` must be a numeric array"):
        plots.plot_parity(np.array([["a"]]), (y, y, y))
    with pytest.raises(ValueError, match="`output_names` must have 2 names"):
        plots.plot_parity(y, (y, y, y), output_names=["a"])
    with pytest.raises(TypeError, match="`output_names` must be a sequence of str"):
        plots.plot_parity(y, (y, y, y), output_names="ab")
    with pytest.raises(ValueError, match="`level` must be a finite number"):
        plots.plot_parity(y, (y, y, y), level=1.0)


# --------------------------------------------------------------------------- calibration


def test_calibration_curve_lines_and_area():
    levels = np.array([0.2, 0.5, 0.8])
    good = CalibrationCurve(levels, levels[:, None] + np.array([[0.0, 0.1]]))
    bad = (levels, np.c_[levels - 0.2, levels * 0.5])
    fig = plots.plot_calibration_curve({"nuts": good, "svi": bad})
    assert len(fig.axes) == 2
    ax = fig.axes[1]
    diagonal, nuts_line, svi_line = ax.lines
    np.testing.assert_allclose(nuts_line.get_xydata(), np.c_[levels, levels + 0.1])
    np.testing.assert_allclose(svi_line.get_ydata(), levels * 0.5)
    area = np.mean(np.abs(levels * 0.5 - levels))
    assert _legend_texts(ax) == ["ideal", "nuts (area 0.100)", f"svi (area {area:.3f})"]


def test_calibration_curve_single_output_1d():
    fig = plots.plot_calibration_curve({"run": ([0.9, 0.5], [0.8, 0.5])})
    (ax,) = fig.axes
    np.testing.assert_allclose(ax.lines[1].get_xdata(), [0.5, 0.9])  # sorted by level
    np.testing.assert_allclose(ax.lines[1].get_ydata(), [0.5, 0.8])


def test_calibration_curve_errors():
    with pytest.raises(ValueError, match="`curves` is empty"):
        plots.plot_calibration_curve({})
    with pytest.raises(TypeError, match="`curves` must be a dict"):
        plots.plot_calibration_curve([([0.5], [0.5])])
    with pytest.raises(TypeError, match=r"`curves\['a'\]` must be a pair"):
        plots.plot_calibration_curve({"a": np.zeros(3)})
    with pytest.raises(ValueError, match=r"`curves\['a'\]` must be \(levels \[L\]"):
        plots.plot_calibration_curve({"a": ([0.5, 0.9], [0.5])})
    with pytest.raises(ValueError, match=r"`curves\['a'\]` has no levels"):
        plots.plot_calibration_curve({"a": ([], [])})
    with pytest.raises(ValueError, match=r"`curves\['a'\]` observed must lie in \[0, 1\]"):
        plots.plot_calibration_curve({"a": ([0.5], [1.5])})
    with pytest.raises(ValueError, match="same number of outputs"):
        plots.plot_calibration_curve({"a": ([0.5], [0.5]), "b": ([0.5], [[0.5, 0.4]])})


def test_pit_histogram_counts_and_band(rng):
    pit = rng.uniform(size=(200, 2))
    fig = plots.plot_pit_histogram(pit, bins=5)
    assert len(fig.axes) == 2
    for j, ax in enumerate(fig.axes):
        heights = np.array([p.get_height() for p in ax.patches[1:]])  # patches[0]: the band
        counts, _ = np.histogram(pit[:, j], bins=5, range=(0, 1))
        np.testing.assert_allclose(heights * 200 / 5, counts)
        band = ax.patches[0]
        sd = 5 * np.sqrt(0.2 * 0.8 / 200)
        np.testing.assert_allclose(
            [band.get_y(), band.get_y() + band.get_height()], [1 - 2 * sd, 1 + 2 * sd]
        )
    assert "uniform density" in _legend_texts(fig.axes[0])


def test_pit_histogram_errors():
    with pytest.raises(ValueError, match=r"`pit` must lie in \[0, 1\]"):
        plots.plot_pit_histogram([0.2, 1.2])
    with pytest.raises(ValueError, match="`bins` must be ≥ 1"):
        plots.plot_pit_histogram([0.2, 0.5], bins=0)
    with pytest.raises(TypeError, match="`bins` must be an int"):
        plots.plot_pit_histogram([0.2, 0.5], bins=2.5)
    with pytest.raises(ValueError, match=r"`pit` must have shape \[N, O\]"):
        plots.plot_pit_histogram(np.zeros((2, 2, 2)))


# --------------------------------------------------------------------------- sampler diagnostics


def test_trace_rank_traces_and_pooled_ranks(rng):
    x = rng.normal(size=(2, 16))
    x[1] += 5.0  # chain 1 entirely above chain 0: ranks 17…32
    fig = plots.plot_trace_rank({"mu": x, "sigma": rng.normal(size=(2, 16))})
    assert len(fig.axes) == 6  # density, trace, rank per quantity
    ax_d, ax_t, ax_r = fig.axes[:3]
    assert ax_t.get_title() == "mu" and ax_r.get_title() == "mu"
    assert fig.axes[4].get_title() == "sigma"
    for c in range(2):
        np.testing.assert_array_equal(ax_t.lines[c].get_xdata(), np.arange(16))
        np.testing.assert_array_equal(ax_t.lines[c].get_ydata(), x[c])
    # One density per chain, chain 1's shifted by the 5 added (sd of a mean of 16: 0.25).
    shift = np.mean(ax_d.lines[1].get_xdata()) - np.mean(ax_d.lines[0].get_xdata())
    assert abs(shift - 5.0) < 1.5
    # One bar per bin per chain: the density of the chain's ranks among all 32 draws,
    # chain c stacked at height c · 2/32.
    bars = [p for p in ax_r.patches if isinstance(p, Rectangle)]
    num_bins = len(bars) // 2
    assert len(bars) == 2 * num_bins and num_bins >= 2
    heights = np.array([b.get_height() for b in bars]).reshape(2, num_bins)
    widths = np.array([b.get_width() for b in bars]).reshape(2, num_bins)
    counts = heights * widths * 16
    edges = np.linspace(0, 32, num_bins + 1)
    expected = [np.histogram(np.arange(1, 17), edges)[0], np.histogram(np.arange(17, 33), edges)[0]]
    np.testing.assert_allclose(counts, expected, atol=1e-9)
    np.testing.assert_allclose(counts.sum(axis=1), [16, 16])
    np.testing.assert_allclose([b.get_y() for b in bars], np.repeat([0.0, 2 / 32], num_bins))
    # The chain colours of the traces and of the rank bars agree; the legend names them.
    for c in range(2):
        assert to_rgb(ax_t.lines[c].get_color()) == to_rgb(bars[c * num_bins].get_facecolor())
    assert [t.get_text() for t in fig.legends[0].get_texts()] == ["chain 0", "chain 1"]


def test_trace_rank_caps_rows(rng):
    draws = {f"q{i}": rng.normal(size=(1, 5)) for i in range(8)}
    fig = plots.plot_trace_rank(draws)
    assert len(fig.axes) == 3 * plots.MAX_TRACE_ROWS
    assert "first 6 of 8 quantities" in fig.get_suptitle()
    assert fig.legends == []  # one chain: nothing to tell apart
    assert [fig.axes[3 * r + 1].get_title() for r in range(6)] == [f"q{i}" for i in range(6)]


def test_trace_rank_errors():
    with pytest.raises(ValueError, match="`draws` is empty"):
        plots.plot_trace_rank({})
    with pytest.raises(TypeError, match="`draws` must be a dict"):
        plots.plot_trace_rank(np.zeros((2, 5)))
    with pytest.raises(ValueError, match=r"`draws\['a'\]` must have shape \[chains, draws\]"):
        plots.plot_trace_rank({"a": np.zeros(5)})
    with pytest.raises(
        ValueError,
        match=r"`draws\['a'\]` contains NaN or infinite values: column \d+ has 1 non-finite",
    ):
        plots.plot_trace_rank({"a": np.array([[0.0, np.nan, 1.0]])})
    with pytest.raises(ValueError, match=r"same number of chains; got \[1, 2\]"):
        plots.plot_trace_rank({"a": np.zeros((1, 5)), "b": np.zeros((2, 5))})


def _bfmi_labels(ax):
    """The E-BFMI values in the energy figure's legend, one per chain."""
    texts = _legend_texts(ax)[2:]
    return np.array([float(t.rsplit("=", 1)[1]) for t in texts])


def test_energy_distributions_and_bfmi_by_hand():
    # Chain 0: E = 0, 1, 0, 1 → Σ ΔE² = 3, Σ (E − Ē)² = 1, E-BFMI = 3.
    # Chain 1: E = 0, 1, 2, 3 → Σ ΔE² = 3, Σ (E − Ē)² = 5, E-BFMI = 0.6.
    # Chain 2: E = 0, 0, 4, 4 → Σ ΔE² = 16, Σ (E − Ē)² = 16, E-BFMI = 1.
    energy = np.array([[0.0, 1, 0, 1], [0, 1, 2, 3], [0, 0, 4, 4]])
    fig = plots.plot_energy(energy)
    (ax,) = fig.axes
    assert _legend_texts(ax)[:2] == ["Marginal Energy", "Energy transition"]
    np.testing.assert_allclose(_bfmi_labels(ax), [3.0, 0.6, 1.0])
    np.testing.assert_allclose(_bfmi_labels(ax), np.round(diagnostics.e_bfmi(energy), 2))
    assert "E-BFMI <" not in ax.get_title()
    # The two density histograms: the marginal energy E − Ē and the transitions ΔE.
    marginal, transition = ax.containers
    for bars, values in ((marginal, energy - energy.mean()), (transition, np.diff(energy))):
        density, edges = np.histogram(values.ravel(), bins="auto", density=True)
        np.testing.assert_allclose([b.get_height() for b in bars], density)
        np.testing.assert_allclose([b.get_x() for b in bars], edges[:-1])


def test_energy_low_bfmi_flagged_and_constant_chain():
    slow = np.linspace(0, 1, 50)  # a drift: tiny steps against a wide marginal
    fig = plots.plot_energy(np.stack([slow, np.zeros(50)]))
    (ax,) = fig.axes
    assert ax.get_title().endswith("(E-BFMI < 0.3 in chain 0)")
    bfmi = _bfmi_labels(ax)
    assert bfmi[0] < 0.3 and np.isnan(bfmi[1])


def test_energy_errors():
    with pytest.raises(ValueError, match=r"`energy` must have shape \[chains, draws\] .* ≥ 2"):
        plots.plot_energy(np.zeros((2, 1)))
    with pytest.raises(
        ValueError, match=r"`energy` contains NaN or infinite values: column 1 has 1 non-finite"
    ):
        plots.plot_energy(np.array([[0.0, np.inf, 1.0]]))


def test_loss_members_finite_only_and_symlog():
    history = np.array([[5.0, 1.0, -2.0, np.nan], [4.0, np.inf, -1.0, -3.0]])
    fig = plots.plot_loss(history, label="ELBO loss", step_every=10)
    (ax,) = fig.axes
    assert len(ax.lines) == 2 and ax.get_yscale() == "symlog"
    np.testing.assert_allclose(ax.lines[0].get_xydata(), [[1, 5.0], [11, 1.0], [21, -2.0]])
    np.testing.assert_allclose(ax.lines[1].get_xydata(), [[1, 4.0], [21, -1.0], [31, -3.0]])
    assert ax.get_ylabel() == "ELBO loss" and "2 non-finite values omitted" in ax.get_title()
    assert _legend_texts(ax) == ["member 0", "member 1"]


def test_loss_single_history_scales(post):
    fig = plots.plot_loss(np.linspace(1000.0, 1.0, 50), log_steps=True)
    ax = fig.axes[0]
    assert ax.get_yscale() == "log" and ax.get_xscale() == "log" and ax.get_legend() is None
    assert plots.plot_loss([3.0, 2.0, 1.0]).axes[0].get_yscale() == "linear"
    members = post.extra["loss_history"]
    assert len(plots.plot_loss(members, step_every=10).axes[0].lines) == members.shape[0]


def test_loss_caption_names_the_method_and_its_lines():
    # SVI: one optimization, so no "ensemble member" in its caption.
    svi = plots.loss_caption(np.ones(50), "negative ELBO")
    assert svi == "Optimization loss (negative ELBO) over optimizer steps."
    ensemble = plots.loss_caption(np.ones((4, 50)), "negative log posterior")
    assert ensemble.endswith("one line per ensemble member (4 members).")
    assert "negative log posterior" in ensemble


def test_loss_errors():
    with pytest.raises(ValueError, match="`history` has no finite values"):
        plots.plot_loss([np.nan, np.inf])
    with pytest.raises(ValueError, match=r"`history` must have shape \[steps\]"):
        plots.plot_loss(np.zeros((2, 2, 2)))
    with pytest.raises(ValueError, match=r"`history` must have shape \[steps\]"):
        plots.plot_loss([])
    with pytest.raises(TypeError, match="`label` must be a str"):
        plots.plot_loss([1.0], label=3)
    with pytest.raises(TypeError, match="`log_steps` must be a bool"):
        plots.plot_loss([1.0], log_steps=1)
    with pytest.raises(ValueError, match="`step_every` must be ≥ 1"):
        plots.plot_loss([1.0], step_every=0)


# --------------------------------------------------------------------------- weight paths


def test_weight_path_constant_basis_is_flat_and_matches_numpy(post):
    const = _with_basis(post, bases.Constant())
    fig = plots.plot_weight_path(const, num_t=11, entries=[(0, 1), (2, 3)])
    assert len(fig.axes) == 2
    c = const.flat_samples()[sites.HIDDEN_WEIGHT][:, 0]  # [S, w, w]: W(t) = C_0 for all t
    norm_line = fig.axes[0].lines[0]
    np.testing.assert_allclose(norm_line.get_xdata(), np.linspace(0, 1, 11))
    expected = np.median(np.linalg.norm(c, axis=(1, 2)) / 4)
    np.testing.assert_allclose(norm_line.get_ydata(), np.full(11, expected))
    entry_lines = [line for line in fig.axes[1].lines if line.get_label().startswith("W[")]
    assert [line.get_label() for line in entry_lines] == ["W[0,1]", "W[2,3]"]
    np.testing.assert_allclose(entry_lines[1].get_ydata(), np.full(11, np.median(c[:, 2, 3])))


def test_weight_path_linear_basis_endpoints(post):
    lin = _with_basis(post, bases.Linear(), num_draws=9)
    fig = plots.plot_weight_path(lin, num_t=5, entries=[(1, 1)], norm=False)
    (ax,) = fig.axes
    c = lin.flat_samples()[sites.HIDDEN_WEIGHT]  # [S, 2, w, w]: W(t) = C_0 + t C_1
    y = ax.lines[0].get_ydata()
    np.testing.assert_allclose(y[0], np.median(c[:, 0, 1, 1]))
    np.testing.assert_allclose(y[-1], np.median(c[:, 0, 1, 1] + c[:, 1, 1, 1]))


def test_weight_path_per_layer_steps(post):
    per_layer = _with_basis(post, bases.PerLayer())
    fig = plots.plot_weight_path(per_layer, entries=[])
    (ax,) = fig.axes
    line = ax.lines[0]
    assert line.get_drawstyle() == "steps-post"
    np.testing.assert_allclose(line.get_xdata(), [0, 0.25, 0.5, 0.75, 1.0])
    c = per_layer.flat_samples()[sites.HIDDEN_WEIGHT]  # [S, L, w, w]: W_l = C_l
    med = np.median(np.linalg.norm(c, axis=(2, 3)) / 4, axis=0)
    np.testing.assert_allclose(line.get_ydata(), np.r_[med, med[-1]])


def test_weight_path_default_entries_from_fit(post):
    fig = plots.plot_weight_path(post, num_t=7)
    labels = [line.get_label() for line in fig.axes[1].lines if line.get_label().startswith("W[")]
    assert len(labels) == 3 and len(set(labels)) == 3
    assert "Monomial(degree=3)" in fig.get_suptitle()


def test_weight_paths_compare_bases(post):
    posts = {
        "constant": _with_basis(post, bases.Constant(), seed=1),
        "per-layer": _with_basis(post, bases.PerLayer(), seed=2),
        "fitted": post,
    }
    fig = plots.plot_weight_paths(posts, num_t=9, entry=(0, 0))
    assert len(fig.axes) == 2
    assert _legend_texts(fig.axes[0]) == ["constant", "per-layer", "fitted"]
    colors = [line.get_color() for line in fig.axes[0].lines]
    assert len(set(colors)) == 3
    assert len(plots.plot_weight_paths({"a": post}).axes) == 1


def test_weight_path_errors(post):
    with pytest.raises(TypeError, match="`post` must be a bayesresnet Posterior"):
        plots.plot_weight_path(None)
    with pytest.raises(ValueError, match=r"`entries` indices must lie in \[0, 4\)"):
        plots.plot_weight_path(post, entries=[(0, 4)])
    with pytest.raises(TypeError, match=r"`entries` must hold \(i, j\) pairs of ints"):
        plots.plot_weight_path(post, entries=[(0.5, 1)])
    with pytest.raises(TypeError, match="`entries` must be a list"):
        plots.plot_weight_path(post, entries="01")
    with pytest.raises(ValueError, match="nothing to draw"):
        plots.plot_weight_path(post, entries=[], norm=False)
    with pytest.raises(ValueError, match="`num_t` must be ≥ 2"):
        plots.plot_weight_path(post, num_t=1)
    with pytest.raises(TypeError, match="`norm` must be a bool"):
        plots.plot_weight_path(post, norm=None)
    broken = dataclasses.replace(
        post, samples={k: v for k, v in post.samples.items() if k != sites.HIDDEN_WEIGHT}
    )
    with pytest.raises(ValueError, match="`post` has no 'hidden_weight' draws"):
        plots.plot_weight_path(broken, entries=[(0, 0)])
    wrong = _with_basis(post, bases.Constant())
    wrong = dataclasses.replace(wrong, spec=post.spec)  # 1 coefficient, cubic spec wants 4
    with pytest.raises(ValueError, match=r"draws must have shape \[S, 4, 4, 4\]"):
        plots.plot_weight_path(wrong, entries=[(0, 0)])
    with pytest.raises(ValueError, match="`posts` is empty"):
        plots.plot_weight_paths({})
    with pytest.raises(TypeError, match="`posts` must be a dict"):
        plots.plot_weight_paths([post])
    with pytest.raises(TypeError, match=r"`posts\['a'\]` must be a Posterior"):
        plots.plot_weight_paths({"a": 1})


# --------------------------------------------------------------------------- ppc


def test_ppc_observed_and_replicated_densities(rng):
    y_obs = rng.normal(size=(30, 2)) + [0.0, 10.0]  # the outputs apart, to tell them apart
    y_rep = rng.normal(size=(80, 30, 2)) + [0.0, 10.0]
    state = np.random.get_state()[1].copy()  # noqa: NPY002 (ArviZ seeds the global one)
    fig = plots.plot_ppc(y_obs, y_rep, num_draws=10, output_names=["a", "b"])
    np.testing.assert_array_equal(np.random.get_state()[1], state)  # noqa: NPY002
    assert len(fig.axes) == 2
    assert [ax.get_xlabel() for ax in fig.axes] == ["a", "b"]
    for j, ax in enumerate(fig.axes):
        (observed,) = [line for line in ax.lines if line.get_label() == "Observed"]
        grid, dens = observed.get_xdata(), observed.get_ydata()
        # The observed curve is a density over the range of the observed data of output j.
        lo, hi = y_obs[:, j].min(), y_obs[:, j].max()
        assert abs(grid[0] - lo) < 0.01 * (hi - lo) and abs(grid[-1] - hi) < 0.01 * (hi - lo)
        assert abs(np.trapezoid(dens, grid) - 1) < 0.05
        replicates = [line for line in ax.lines if line.get_label().startswith("_")]
        assert len(replicates) == 10
        for line in replicates:
            x = line.get_xdata()
            assert y_rep[..., j].min() <= x.min() and x.max() <= y_rep[..., j].max()
    texts = _legend_texts(fig.axes[0])
    assert texts == ["Posterior predictive", "Observed", "Posterior predictive mean"]
    assert fig.axes[1].get_legend() is None
    # The same replicates on every call.
    again = plots.plot_ppc(y_obs, y_rep, num_draws=10, output_names=["a", "b"])
    for first, second in zip(fig.axes[0].lines, again.axes[0].lines, strict=True):
        np.testing.assert_array_equal(first.get_ydata(), second.get_ydata())


def test_ppc_constant_data_and_1d(rng):
    # A constant output has no density: the figure is drawn (with its legend) and empty.
    fig = plots.plot_ppc(np.ones(5), np.ones((3, 5)))
    assert len(fig.axes) == 1 and fig.axes[0].get_xlabel() == "y"
    assert "Observed" in _legend_texts(fig.axes[0])
    fig = plots.plot_ppc(rng.normal(size=6), rng.normal(size=(4, 6)))
    assert len([line for line in fig.axes[0].lines if line.get_label().startswith("_")]) == 4


def test_ppc_errors(rng):
    with pytest.raises(ValueError, match=r"`y_rep` must have shape \[S, N, O\] = \[S, 5, 1\]"):
        plots.plot_ppc(np.zeros(5), np.zeros((3, 4)))
    with pytest.raises(
        ValueError,
        match=r"`y_rep` contains NaN or infinite values: column \(1, 0\) has 1 non-finite",
    ):
        plots.plot_ppc(np.zeros(2), np.array([[0.0, np.nan]]))
    with pytest.raises(ValueError, match="`num_draws` must be ≥ 1"):
        plots.plot_ppc(np.zeros(2), np.zeros((3, 2)), num_draws=0)


# ------------------------------------------------------------ calibration of simulator inputs


def test_inverse_marginals_draw_the_posterior_over_the_uniform_prior(rng):
    draws = {"a": rng.normal(0.3, 0.05, (2, 200)), "b": rng.uniform(2.0, 4.0, (2, 200))}
    bounds = {"a": (0.0, 1.0), "b": (2.0, 4.0)}
    fig = plots.plot_inverse_marginals(draws, bounds, hdi_prob=0.9)
    assert [ax.get_title() for ax in fig.axes] == ["a", "b"]
    for ax, (lower, upper) in zip(fig.axes, bounds.values()):
        (prior,) = [line for line in ax.lines if line.get_label() == "prior (uniform)"]
        np.testing.assert_allclose(prior.get_xdata(), [lower, lower, upper, upper])
        span = upper - lower
        np.testing.assert_allclose(prior.get_ydata(), [0, 1 / span, 1 / span, 0])
        np.testing.assert_allclose(ax.get_xlim(), (lower - 0.02 * span, upper + 0.02 * span))
    # ArviZ's density of the draws: it peaks near the mean of a (0.3).
    density = max(fig.axes[0].lines, key=lambda line: len(line.get_xdata()))
    assert abs(density.get_xdata()[np.argmax(density.get_ydata())] - 0.3) < 0.05


def test_inverse_pairs_and_share_and_observation_check(rng):
    draws = {"a": rng.normal(size=(2, 50)), "b": rng.normal(size=(2, 50))}
    assert len(plots.plot_inverse_pairs(draws).axes) == 1  # one pair
    three = {**draws, "c": rng.normal(size=(2, 50))}
    assert len([ax for ax in plots.plot_inverse_pairs(three).axes if ax.get_visible()]) == 3
    fig = plots.plot_surrogate_share({"a": 0.25, "b": 0.0})
    widths = [patch.get_width() for patch in fig.axes[0].patches]
    assert widths == [0.25, 0.0]
    y_obs = np.array([[1.0], [5.0], [9.0]])
    y_rep = y_obs[None] + rng.normal(size=(400, 3, 1))
    y_obs[2] += 10.0  # one observation far from its predictive distribution
    fig = plots.plot_observation_check(y_obs, y_rep, levels=(0.5, 0.9), output_names=["y"])
    (observed,) = [line for line in fig.axes[0].lines if line.get_label() == "observed"]
    residual = observed.get_ydata()
    assert np.all(np.abs(residual[:2]) < 0.3) and abs(residual[2] - 10.0) < 0.3


def test_inverse_figure_errors(rng):
    draws = {"a": rng.normal(size=(2, 10))}
    with pytest.raises(TypeError, match=r"`draws` must be a non-empty dict"):
        plots.plot_inverse_marginals({}, {})
    with pytest.raises(ValueError, match=r"`prior_bounds` lacks the inputs \['a'\]"):
        plots.plot_inverse_marginals(draws, {"b": (0, 1)})
    with pytest.raises(ValueError, match=r"`draws` must hold at least two inputs"):
        plots.plot_inverse_pairs(draws)
    with pytest.raises(TypeError, match=r"`share` must be a non-empty dict"):
        plots.plot_surrogate_share({})
    with pytest.raises(ValueError, match=r"`y_rep` must have shape \[S, M, O\] = \[S, 3, 1\]"):
        plots.plot_observation_check(np.zeros(3), np.zeros((5, 2, 1)))


# --------------------------------------------------------------------------- export


def test_figure_to_png_and_data_uri(rng):
    fig = plots.plot_pit_histogram(rng.uniform(size=20))
    png = plots.figure_to_png(fig, dpi=40)
    assert png.startswith(b"\x89PNG")
    assert fig.axes == []  # closed (cleared) afterwards
    uri = plots.figure_to_data_uri(plots.plot_loss([3.0, 2.0]), dpi=40)
    assert re.fullmatch(r"data:image/png;base64,[A-Za-z0-9+/=]+", uri)
    assert base64.b64decode(uri.split(",", 1)[1]).startswith(b"\x89PNG")


def test_figure_to_png_errors():
    with pytest.raises(TypeError, match="`fig` must be a matplotlib Figure"):
        plots.figure_to_png("fig")
    with pytest.raises(ValueError, match="`dpi` must be a finite number > 0"):
        plots.figure_to_png(Figure(), dpi=0)
