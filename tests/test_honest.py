"""No silent wrong answers: column names kept and matched, extrapolation flagged, header rows
that are data refused, the loaders' minimum rows enforced by ``fit``, and the data checks of
``compare``."""

import re
import warnings

import arviz as az
import numpy as np
import pandas as pd
import pytest

import bayesresnet as brn
from bayesresnet import sites
from bayesresnet._io import prediction_table
from bayesresnet.app import cli
from bayesresnet.data import MIN_TRAIN_ROWS, Dataset, check_outputs, load_csv, read_table

SPEC = brn.ResNetSpec(2, 1, width=4, num_layers=2)


def _fit(x, y, spec=SPEC):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged tiny ensembles
        return brn.fit(spec, x, y, method="ensemble", num_members=2, num_steps=100)


@pytest.fixture(scope="module")
def frames():
    """Inputs ``b`` in [0, 1] and ``a`` in [10, 30] (so a swap changes every prediction)."""
    rng = np.random.default_rng(0)
    b, a = rng.uniform(0, 1, 30), rng.uniform(10, 30, 30)
    x = pd.DataFrame({"b": b, "a": a})
    y = pd.DataFrame({"flow": np.sin(3 * b) + a / 10})
    return x, y


@pytest.fixture(scope="module")
def post(frames):
    return _fit(*frames)


# ------------------------------------------------------------------ names of DataFrames


def test_fit_keeps_the_column_names_of_dataframes(post, tmp_path):
    assert post.input_names == ("b", "a") and post.output_names == ("flow",)
    assert brn.load(post.save(tmp_path / "p.npz")).input_names == ("b", "a")


@pytest.mark.slow
def test_fit_takes_the_name_of_a_series_and_defaults_for_arrays(frames):
    x, y = frames
    named = _fit(x.to_numpy(), y["flow"])
    assert named.input_names == ("x1", "x2") and named.output_names == ("flow",)
    with pytest.raises(ValueError, match=r"`x` has duplicate column names: \['a'\]"):
        _fit(x.set_axis(["a", "a"], axis=1), y)


def test_predict_matches_dataframe_columns_by_name(post, frames):
    x, _ = frames
    new = pd.DataFrame({"b": [0.1, 0.5, 0.9], "a": [12.0, 20.0, 28.0]})
    by_position = post.predict(new.to_numpy(), seed=1, return_draws=True)
    reordered = post.predict(new[["a", "b"]], seed=1, return_draws=True)
    np.testing.assert_array_equal(reordered.f, by_position.f)
    np.testing.assert_array_equal(reordered.mean, by_position.mean)
    # An array is positional: the swapped array gives other numbers (the reason to match).
    swapped = post.predict(new[["a", "b"]].to_numpy(), seed=1, return_draws=True)
    assert np.max(np.abs(swapped.mean - by_position.mean)) > 0.1


def test_predict_refuses_missing_or_unknown_columns(post):
    with pytest.raises(ValueError, match=r"`x` lacks the input column\(s\) \['b'\];"):
        post.predict(pd.DataFrame({"a": [12.0]}))
    with pytest.raises(
        ValueError,
        match=r"`x` has column\(s\) \['c'\] that are not inputs; the model's inputs are "
        r"\['b', 'a'\]",
    ):
        post.predict(pd.DataFrame({"b": [0.1], "a": [12.0], "c": [1.0]}))
    with pytest.raises(ValueError, match=r"lacks the input column\(s\) \['b', 'a'\] and has"):
        post.predict(pd.DataFrame(np.zeros((2, 2))))  # columns 0, 1: not the inputs' names


# ---------------------------------------------------------------------- extrapolation


def test_extrapolation_is_the_distance_outside_the_training_box_in_training_ranges(post):
    lo, hi = post.training_box
    np.testing.assert_array_equal(lo, post.x_train.min(axis=0))
    width = hi - lo
    x = np.array(
        [
            (lo + hi) / 2,  # inside
            lo,  # on the boundary: inside
            [hi[0] + 2 * width[0], (lo[1] + hi[1]) / 2],  # b two ranges above
            [lo[0] - 0.5 * width[0], hi[1] + 0.25 * width[1]],  # both outside
        ]
    )
    expected = np.array([[0, 0], [0, 0], [2, 0], [0.5, 0.25]])
    np.testing.assert_allclose(post.extrapolation(x), expected, rtol=1e-12)
    pred = post.predict(x, return_draws=False)
    np.testing.assert_allclose(pred.extrapolation, [0, 0, 2, 0.5], rtol=1e-12)
    message = post.describe_extrapolation(x)
    assert re.search(
        r"^2 of 4 points lie outside the training range of 'b' \(2 points, up to 2 training "
        r"ranges beyond \[.*\]\), 'a' \(1 point, up to 0\.25 training ranges",
        message,
    )
    assert post.describe_extrapolation(x[:2]) is None


def test_extrapolation_survives_save_and_load_and_goes_into_the_prediction_table(post, tmp_path):
    loaded = brn.load(post.save(tmp_path / "p.npz"))
    x = np.array([[0.5, 20.0], [3.0, 20.0]])
    pred = loaded.predict(x, return_draws=False)
    np.testing.assert_array_equal(pred.extrapolation, post.predict(x).extrapolation)
    lines = prediction_table(x, pred, loaded.input_names, loaded.output_names).decode()
    header, *rows = lines.splitlines()
    assert header.split(",")[-1] == "extrapolation"
    assert float(rows[0].split(",")[-1]) == 0.0
    assert pred.extrapolation[1] > 1
    assert float(rows[1].split(",")[-1]) == pytest.approx(pred.extrapolation[1], rel=1e-5)


# ------------------------------------------------------------------- minimum training rows


@pytest.mark.parametrize("rows", [0, 1, MIN_TRAIN_ROWS - 1])
def test_fit_needs_the_loaders_minimum_rows_before_any_computation(rows, monkeypatch):
    def no_computation(*args, **kwargs):
        raise AssertionError("computation started")

    monkeypatch.setattr("bayesresnet.infer.fit_scaler", no_computation)
    x, y = np.linspace(0, 1, 2 * rows).reshape(rows, 2), np.arange(rows, dtype=float)
    with pytest.raises(ValueError, match=rf"have {rows} rows?; at least 3 training rows"):
        brn.fit(SPEC, x, y, method="ensemble")
    assert MIN_TRAIN_ROWS == 3  # what load_csv and load_npz require (test_data.py)


# ------------------------------------------------------------- a header that is data


@pytest.mark.parametrize("first", ["1.5,2,3", "0,1e3,-4", " 7 , 8 , nan"])
def test_a_header_of_numbers_is_refused(first, tmp_path):
    path = tmp_path / "noheader.csv"
    path.write_text(first + "\n" + "".join(f"{i},{i * 2},{i * 3}\n" for i in range(6)))
    pattern = r"noheader\.csv: the first row .* looks like data, not a header"
    for read in (
        lambda: load_csv(path, outputs=1),
        lambda: read_table(path),
        lambda: check_outputs(path, 1),  # the spec check refuses it too
    ):
        with pytest.raises(ValueError, match=pattern):
            read()


def test_a_header_with_some_numeric_names_is_a_header(tmp_path):
    path = tmp_path / "years.csv"
    path.write_text("x,2020\n" + "".join(f"{i},{i * 2}\n" for i in range(6)))
    assert read_table(path)[0] == ["x", "2020"]


# ------------------------------------------------------------ compare: same data, LOO k̂


def _dataset(y_shift=0.0, rows=10, names=("x",)):
    x = np.linspace(0, 1, rows * len(names)).reshape(rows, len(names))
    y = np.sin(3 * x[:, :1]) + y_shift
    return Dataset(x[:6], y[:6], x[6:], y[6:], tuple(names), ("y",))


def test_compare_names_how_the_data_differ():
    same = {"a": _dataset(), "b": _dataset()}
    assert cli._data_mismatch(same) is None
    assert _dataset().fingerprint() == _dataset().fingerprint()
    cases = {
        "values": (_dataset(y_shift=1e-12), r"runs 'a' and 'b' were fitted to different data"),
        "sizes": (_dataset(rows=11), r"run 'b' has 6 training / 5 held-out rows but run 'a' "),
        "inputs": (_dataset(names=("u", "v")), r"run 'b' has inputs \['u', 'v'\] and outputs"),
    }
    for other, pattern in cases.values():
        assert re.search(pattern, cli._data_mismatch({"a": _dataset(), "b": other}))


def _normal_idata(y, num_draws, seed):
    """Posterior draws of the mean of N(μ, 1) data (flat prior) and their log-likelihood."""
    rng = np.random.default_rng(seed)
    mu = y.mean() + rng.standard_normal((1, num_draws)) / np.sqrt(len(y))
    ll = -0.5 * (y[None, None, :] - mu[..., None]) ** 2 - 0.5 * np.log(2 * np.pi)
    return az.from_dict(posterior={"mu": mu}, log_likelihood={sites.OBS: ll})


def test_compare_ranks_by_loo_only_where_pareto_khat_allows():
    y = np.random.default_rng(1).standard_normal(30)
    # 2 000 draws from the exact posterior: every k̂ is far below 0.7.
    good = {"p": _normal_idata(y, 2000, 2), "q": _normal_idata(y + 0.3, 2000, 3)}
    rows, note = cli._loo_ranking(good, same_size=True)
    assert [r["rank"] for r in rows] == [0, 1] and note.startswith("Ranked by PSIS-LOO")
    # 8 draws (an 8-member ensemble): too few for PSIS, k̂ undefined or large everywhere.
    few = {"p": _normal_idata(y, 8, 2), "q": _normal_idata(y, 2000, 3)}
    rows, note = cli._loo_ranking(few, same_size=True)
    assert rows == [] and re.search(r"Not ranked by LOO: .* more than 5% .*, as in p 100%", note)
    rows, note = cli._loo_ranking(good, same_size=False)
    assert rows == [] and "different numbers of training rows" in note


def test_held_out_ranking_orders_by_crps():
    def metrics(crps, rmse):
        return {"calibration": {"test": {"crps": {"overall": crps}, "rmse": {"overall": rmse}}}}

    rows, note = cli._heldout_ranking({"a": metrics(0.3, 1.0), "b": metrics(0.1, 2.0)})
    assert [(r["name"], r["rank"], r["rmse"]) for r in rows] == [("b", 0, 2.0), ("a", 1, 1.0)]
    rows, note = cli._heldout_ranking({"a": metrics(0.3, 1.0), "b": {}})
    assert rows == [] and "not every run has held-out data" in note
