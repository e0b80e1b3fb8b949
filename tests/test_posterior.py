"""Posterior: prediction in chunks, intervals, log-likelihood, save/load, ArviZ output."""

import os
import warnings

import numpy as np
import pytest

import bayesresnet as brn
from bayesresnet import posterior as posterior_module
from bayesresnet import sites


@pytest.fixture(scope="module")
def post():
    ds = brn.problems.get("oscillator").sample(0, 40, 10)
    spec = brn.ResNetSpec(4, 3, width=4, num_layers=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged members: fine here
        return brn.fit(spec, ds, method="ensemble", num_members=5, num_steps=300)


@pytest.fixture(scope="module")
def x_new():
    return brn.problems.get("oscillator").sample(1, 3, 23).x_test


def test_shapes_and_sample_dims(post):
    assert post.num_chains == 1 and post.num_draws == 5 and post.num_samples == 5
    assert post.samples[sites.HIDDEN_WEIGHT].shape == (1, 5, 4, 4, 4)
    assert post.noise_scale().shape == (5, 3)
    assert set(post.timings) == {"compile_s", "run_s", "noise_s"}


@pytest.mark.slow
def test_predict_matches_direct_forward_pass(post, x_new):
    pred = post.predict(x_new, return_draws=True)
    flat = post.flat_samples()
    xs = (x_new - post.scaler.x_mean) / post.scaler.x_std
    for s in range(post.num_samples):
        params = {k: flat[k][s] for k in sites.NETWORK}
        f = post.scaler.y_mean + post.scaler.y_std * np.asarray(brn.apply(params, xs, post.spec))
        np.testing.assert_allclose(pred.f[s], f, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(pred.mean, pred.f.mean(axis=0), rtol=1e-6)
    assert pred.y.shape == (1000, 23, 3)  # 200 noise draws for each of the 5 members


@pytest.mark.slow
def test_chunked_prediction_equals_unchunked(post, x_new):
    whole = post.predict(x_new, seed=3, return_draws=True)
    chunked = post.predict(x_new, seed=3, return_draws=True, chunk_points=4, chunk_draws=2)
    np.testing.assert_allclose(chunked.f, whole.f, rtol=1e-5, atol=1e-6)
    for p in whole.quantiles:
        np.testing.assert_allclose(
            chunked.f_quantiles[p], whole.f_quantiles[p], rtol=1e-5, atol=1e-6
        )
    np.testing.assert_allclose(chunked.f_std, whole.f_std, rtol=1e-4, atol=1e-6)


def test_summaries_without_draws(post, x_new):
    pred = post.predict(x_new, return_draws=False, levels=(0.9,))
    assert pred.f is None and pred.y is None
    lo, hi = pred.interval(0.9)
    assert lo.shape == (23, 3) and np.all(lo <= hi)
    with pytest.raises(ValueError, match=r"level 0.5 was not among the levels computed"):
        pred.interval(0.5)


def test_interval_from_draws_and_noise(post, x_new):
    pred = post.predict(x_new, return_draws=True, levels=(0.9,))
    lo, hi = pred.interval(0.9)
    np.testing.assert_allclose(lo, np.quantile(pred.y, 0.05, axis=0), rtol=1e-6)
    lo5, hi5 = pred.interval(0.5)  # not precomputed: from the kept draws
    np.testing.assert_allclose(hi5, np.quantile(pred.y, 0.75, axis=0), rtol=1e-6)
    flo, fhi = pred.interval(0.9, kind="f")
    np.testing.assert_allclose(fhi, np.quantile(pred.f, 0.95, axis=0), rtol=1e-6)
    assert np.all(pred.std >= 0) and np.all(pred.f_std >= 0)
    with pytest.raises(ValueError, match=r"`kind` must be 'y' or 'f'"):
        pred.interval(0.9, kind="z")
    with pytest.raises(ValueError, match=r"`level` must be a finite number in \(0, 1\)"):
        pred.interval(1.5)


@pytest.mark.slow
def test_noise_draws_have_the_posterior_noise_scale(post):
    x = np.repeat(post.x_train[:1], 4000, axis=0)
    pred = post.predict(x, return_draws=True, levels=())
    s = post.num_samples
    assert pred.y.shape == (1000, 4000, 3)  # 200 noise replicates of each of the 5 draws
    resid = pred.y.reshape(-1, s, 4000, 3) - pred.f[None]  # [R, S, 4000, O]
    resid = resid.transpose(1, 0, 2, 3).reshape(s, -1, 3)  # [S, R·4000, O]
    sigma = post.noise_scale()  # [S, O]
    # sd of 8·10⁵ normal draws: relative error 1/√(1.6·10⁶) < 0.1%; allow 5 of those.
    np.testing.assert_allclose(resid.std(axis=1), sigma, rtol=5 / np.sqrt(1.6e6))


@pytest.mark.slow
def test_map_fit_has_nonzero_predictive_interval():
    ds = brn.problems.get("sine").sample(0, 20, 5, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2)
    post = brn.fit(spec, ds, method="svi", guide="map", num_steps=100, init_steps=50)
    pred = post.predict(ds.x_test)
    lo, hi = pred.interval(0.9)
    sigma = post.noise_scale()[0, 0]
    # One draw: the 90% interval is f ± 1.645σ, resolved by 1000 noise draws (the 5% and
    # 95% sample quantiles of 1000 normals have sd ≈ 0.07σ; allow 5 of those).
    np.testing.assert_allclose(hi - lo, 2 * 1.645 * sigma, atol=5 * 0.07 * sigma * 2)


def test_log_likelihood_by_hand(post):
    ll = post.log_likelihood()
    assert ll.shape == (1, 5, 40)
    f = post.predict_f(post.x_train)  # [S, N, O]
    sigma = post.noise_scale()[:, None, :]
    expected = np.sum(
        -0.5 * ((post.y_train - f) / sigma) ** 2 - np.log(sigma) - 0.5 * np.log(2 * np.pi), axis=-1
    )
    np.testing.assert_allclose(ll[0], expected, rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match=r"pass both `x` and `y`"):
        post.log_likelihood(x=post.x_train)


def test_predict_errors(post):
    with pytest.raises(ValueError, match=r"`x` must have shape \[N, 4\]"):
        post.predict(np.zeros((3, 5)))
    with pytest.raises(
        ValueError,
        match=r"`x` contains NaN or infinite values: column 0 has 1 non-finite value "
        r"\(0-based row 1\)",
    ):
        post.predict(np.array([[1.0, 2, 3, 4], [np.nan, 1, 1, 1]]))
    with pytest.raises(ValueError, match=r"`chunk_points` must be ≥ 1"):
        post.predict(post.x_train, chunk_points=0)


def test_save_load_round_trip(post, x_new, tmp_path):
    path = post.save(tmp_path / "post.npz")
    loaded = brn.load(path)
    for k in post.samples:
        np.testing.assert_array_equal(loaded.samples[k], post.samples[k])
    for k in post.sample_stats:
        np.testing.assert_array_equal(loaded.sample_stats[k], post.sample_stats[k])
    assert loaded.spec == post.spec and loaded.prior == post.prior
    assert loaded.settings == post.settings and loaded.method == post.method
    assert loaded.output_names == post.output_names
    np.testing.assert_array_equal(loaded.extra["loss_history"], post.extra["loss_history"])
    a, b = post.predict(x_new, seed=1), loaded.predict(x_new, seed=1)
    np.testing.assert_array_equal(a.mean, b.mean)
    np.testing.assert_array_equal(a.quantiles[0.05], b.quantiles[0.05])


@pytest.mark.parametrize(
    "basis",
    [brn.bases.PerLayer(), brn.bases.Legendre(2), brn.bases.PiecewiseLinear(3)],
    ids=repr,
)
def test_spec_round_trip(basis):
    spec = brn.ResNetSpec(2, 1, width=3, num_layers=4, basis=basis, activation="relu")
    assert posterior_module._spec_from_dict(posterior_module._spec_to_dict(spec)) == spec


def test_save_is_atomic(post, tmp_path, monkeypatch):
    path = post.save(tmp_path / "post.npz")
    before = path.read_bytes()

    def crash(*args):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", crash)
    with pytest.raises(OSError, match="disk full"):
        post.save(path)
    assert path.read_bytes() == before  # the old file is intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["post.npz"]  # no temp file left


def test_load_errors(post, tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no posterior file at"):
        brn.load(tmp_path / "missing.npz")
    bad = tmp_path / "corrupt.npz"
    bad.write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(ValueError, match=r"not a readable bayesresnet posterior file"):
        brn.load(bad)
    good = post.save(tmp_path / "post.npz")
    truncated = tmp_path / "truncated.npz"
    truncated.write_bytes(good.read_bytes()[:200])
    with pytest.raises(ValueError, match=r"not a readable bayesresnet posterior file"):
        brn.load(truncated)
    # A file from a future format version.
    import io
    import json

    with np.load(good) as npz:
        arrays = {k: npz[k] for k in npz.files}
    meta = json.loads(str(arrays["__meta__"]))
    meta["format_version"] = 99
    arrays["__meta__"] = np.array(json.dumps(meta))
    buffer = io.BytesIO()
    np.savez(buffer, **arrays)
    future = tmp_path / "future.npz"
    future.write_bytes(buffer.getvalue())
    with pytest.raises(ValueError, match=r"format version 99; this bayesresnet reads version 1"):
        brn.load(future)
    other = tmp_path / "other.npz"
    np.savez(other, a=np.zeros(2))
    with pytest.raises(ValueError, match=r"not a readable bayesresnet posterior file"):
        brn.load(other)


def test_inference_data(post):
    idata = post.to_inference_data()
    assert set(idata.groups()) == {
        "posterior",
        "posterior_predictive",
        "log_likelihood",
        "sample_stats",
        "observed_data",
        "constant_data",
    }
    w = idata.posterior[sites.HIDDEN_WEIGHT]
    assert w.dims == ("chain", "draw", "basis", "hidden_in", "hidden_out")
    assert list(w.coords["basis"].values) == ["t^0", "t^1", "t^2", "t^3"]
    assert idata.posterior[sites.INPUT_WEIGHT].dims[2] == "input"
    assert list(idata.posterior.coords["output"].values) == list(post.output_names)
    # Per observation and output, as the observed data (az.loo_pit needs the same shape).
    assert idata.log_likelihood[sites.OBS].dims == ("chain", "draw", "obs", "output")
    assert idata.posterior_predictive[sites.OBS].shape == (1, 5, 40, 3)
    assert idata.constant_data["x"].shape == (40, 4)
    per_output = post.log_likelihood(per_output=True)
    assert per_output.shape == (1, 5, 40, 3)
    np.testing.assert_allclose(idata.log_likelihood[sites.OBS].values, per_output)
    np.testing.assert_allclose(per_output.sum(-1), post.log_likelihood(), rtol=1e-12)


def test_inference_data_reuses_a_training_prediction(post):
    pred = post.predict(post.x_train, seed=4, return_draws=True)
    reused = post.to_inference_data(seed=4, train_prediction=pred)
    fresh = post.to_inference_data(seed=4)
    np.testing.assert_array_equal(
        reused.posterior_predictive[sites.OBS].values, fresh.posterior_predictive[sites.OBS].values
    )


def test_student_t_log_likelihood_by_hand(post):
    import dataclasses

    from scipy.stats import t as student_t

    post_t = dataclasses.replace(post, prior=brn.PriorSpec(likelihood="student_t"))
    f = post_t.predict_f(post.x_train)
    sigma = post_t.noise_scale()[:, None, :]
    expected = student_t.logpdf(post.y_train, 4.0, loc=f, scale=sigma).sum(axis=-1)
    np.testing.assert_allclose(post_t.log_likelihood()[0], expected, rtol=1e-5, atol=1e-4)


@pytest.mark.slow
def test_student_t_noise_draws_follow_the_likelihood(post):
    import dataclasses

    from scipy import stats

    post_t = dataclasses.replace(
        post, prior=brn.PriorSpec(likelihood="student_t", student_t_df=3.0)
    )
    x = np.repeat(post.x_train[:1], 400, axis=0)
    pred = post_t.predict(x, seed=2, return_draws=True, levels=())
    z = (pred.y - np.tile(pred.f, (200, 1, 1))) / np.tile(post_t.noise_scale(), (200, 1))[:, None]
    assert pred.y.dtype == np.float64
    # 2.4·10⁶ standardized residuals: the t₃ law (KS), not the normal.
    assert stats.kstest(z[:, :100].ravel(), stats.t(3.0).cdf).pvalue > 1e-3
    assert stats.kstest(z[:, :100].ravel(), stats.norm.cdf).pvalue < 1e-6
