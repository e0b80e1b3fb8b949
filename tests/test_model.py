"""The NumPyro model: site names and shapes, prior scaling, standardization, likelihoods."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import Predictive

import bayesresnet as brn
from bayesresnet import bases, sites


def make(basis=None, out=2, learn=False, likelihood="normal", width=4, num_layers=6):
    spec = brn.ResNetSpec(3, out, width=width, num_layers=num_layers, basis=basis or bases.Cubic())
    prior = brn.PriorSpec(learn_basis_scale=learn, likelihood=likelihood)
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 5, size=(10, 3))
    y = rng.normal(size=(10, out)) * 30 + 100
    return spec, prior, x, y


@pytest.mark.slow
@pytest.mark.parametrize("learn", [False, True])
def test_trace_site_names_and_shapes(learn, key):
    spec, prior, x, y = make(learn=learn)
    model = brn.make_model(spec, prior, brn.fit_scaler(x, y))
    tr = handlers.trace(handlers.seed(model, key)).get_trace(x, y)
    expected = {
        sites.INPUT_WEIGHT: (3, 4),
        sites.INPUT_BIAS: (4,),
        sites.HIDDEN_WEIGHT: (4, 4, 4),
        sites.HIDDEN_BIAS: (4, 4),
        sites.OUTPUT_WEIGHT: (4, 2),
        sites.OUTPUT_BIAS: (2,),
        sites.NOISE_SCALE: (2,),
        sites.OBS: (10, 2),
    }
    if learn:
        expected[sites.BASIS_SCALE] = (4,)
    shapes = {name: site["value"].shape for name, site in tr.items() if site["type"] == "sample"}
    assert shapes == expected
    assert tr[sites.OBS]["is_observed"]
    assert set(sites.DIMS) >= set(expected)
    for name, shape in expected.items():
        assert len(sites.DIMS[name]) == len(shape), name


@pytest.mark.slow
def test_prior_predictive_is_in_raw_units(key):
    spec, prior, x, y = make(out=1)
    scaler = brn.fit_scaler(x, y)
    draws = Predictive(brn.make_model(spec, prior, scaler), num_samples=400)(key, x)
    ys = np.asarray(draws[sites.OBS])
    assert ys.shape == (400, 10, 1)
    # The prior predictive is centred on the training mean and spread on the training
    # scale: with 400 draws the mean of y sits within a few sd/√400 of y_mean.
    sd = ys.std()
    assert abs(ys.mean() - scaler.y_mean[0]) < 5 * sd / np.sqrt(400) + 0.05 * scaler.y_std[0]
    assert 0.2 * scaler.y_std[0] < sd < 5 * scaler.y_std[0]


@pytest.mark.parametrize(
    "basis",
    [
        bases.PerLayer(),
        bases.Constant(),
        bases.Cubic(),
        bases.Legendre(4),
        bases.PiecewiseLinear(5),
    ],
    ids=repr,
)
def test_prior_variance_of_w_is_basis_independent(basis, key):
    width, num_layers, n = 4, 10, 4000
    spec, prior, x, y = make(basis=basis, width=width, num_layers=num_layers)
    model = brn.make_model(spec, prior, brn.fit_scaler(x, y))
    draws = Predictive(model, num_samples=n, return_sites=[sites.HIDDEN_WEIGHT])(key, x)
    w = jax.vmap(lambda c: basis.weights(c, num_layers))(draws[sites.HIDDEN_WEIGHT])
    # Layer- and entry-averaged prior variance of W(t) is weight_scale²/width = 0.25.
    v = float(jnp.mean(w**2))
    # Mean of m = n·L·width² squared normals (entries across layers are correlated, so
    # use only the n independent draws for the error): sd(v) ≤ √2·v·√(L)/√n … bound it by
    # the per-draw average's empirical spread.
    per_draw = np.asarray(jnp.mean(w**2, axis=(1, 2, 3)))
    mcse = per_draw.std() / np.sqrt(n)
    assert abs(v - 0.25) < 5 * mcse, (v, mcse)


@pytest.mark.slow
def test_student_t_likelihood(key):
    spec, prior, x, y = make(likelihood="student_t")
    model = brn.make_model(spec, prior, brn.fit_scaler(x, y))
    tr = handlers.trace(handlers.seed(model, key)).get_trace(x, y)
    fn = tr[sites.OBS]["fn"]
    assert type(fn.base_dist).__name__ == "StudentT"
    np.testing.assert_array_equal(fn.base_dist.df, 4.0)


@pytest.mark.slow
def test_log_likelihood_in_raw_units(key):
    """Doubling the data scale shifts every log-likelihood by exactly -out·log 2."""
    spec, prior, x, y = make(out=2)
    lls = []
    for factor in (1.0, 2.0):
        model = brn.make_model(spec, prior, brn.fit_scaler(x, factor * y))
        tr = handlers.trace(handlers.seed(model, key)).get_trace(x, factor * y)
        lls.append(np.asarray(tr[sites.OBS]["fn"].log_prob(factor * y)))
    np.testing.assert_allclose(lls[1], lls[0] - 2 * np.log(2.0), rtol=1e-5, atol=1e-4)


def test_prior_loc_anchors(key):
    from bayesresnet.infer.core import anchor_prior

    spec, prior, x, y = make()
    loc = {name: jnp.full(shape, 3.0) for name, shape in brn.resnet.param_shapes(spec).items()}
    model = anchor_prior(brn.make_model(spec, prior, brn.fit_scaler(x, y)), loc)
    draws = Predictive(model, num_samples=300, return_sites=[sites.OUTPUT_BIAS])(key, x)
    # output_bias ~ N(3, 1): mean of 600 draws within 5/√600 of 3.
    assert abs(float(draws[sites.OUTPUT_BIAS].mean()) - 3.0) < 5 / np.sqrt(600)


def test_scaler_constant_column():
    s = brn.fit_scaler(np.array([[1.0, 2.0], [1.0, 4.0]]), np.array([[5.0], [7.0]]))
    np.testing.assert_allclose(s.x_std, [1.0, 1.0])
    np.testing.assert_allclose(s.x_mean, [1.0, 3.0])
    np.testing.assert_allclose(s.y_std, [1.0])


def test_scaler_methods_standardize_and_invert():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(50, 2)) * [2.0, 0.5] + [10.0, -3.0]
    y = rng.normal(size=(50, 2)) * [30.0, 0.1] + [100.0, 1.0]
    s = brn.fit_scaler(x, y)
    xs, ys = s.transform_x(x), s.transform_y(y)
    # Standardized training data have column means 0 and sds 1 (float64 throughout).
    np.testing.assert_allclose(xs.mean(axis=0), 0.0, atol=1e-12)
    np.testing.assert_allclose(xs.std(axis=0), 1.0, rtol=1e-12)
    np.testing.assert_allclose(ys.std(axis=0), 1.0, rtol=1e-12)
    assert xs.dtype == np.float64
    np.testing.assert_allclose(s.inverse_y(ys), y, rtol=1e-14)
    np.testing.assert_allclose(s.scale_sd(np.array([0.5, 2.0])), [0.5 * s.y_std[0], 2 * s.y_std[1]])
    # The log-Jacobian: a Normal density in raw units is the standardized one minus it.
    from scipy import stats

    raw = stats.norm.logpdf(y, s.inverse_y(0.2), s.scale_sd(0.7)).sum(axis=1)
    std = stats.norm.logpdf(ys, 0.2, 0.7).sum(axis=1)
    np.testing.assert_allclose(raw, std - float(s.log_det_y()), rtol=1e-5)
    # JAX arrays in, JAX arrays out (the model's traced path).
    assert isinstance(s.transform_x(jnp.asarray(x)), jax.Array)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            dict(weight_scale=0.0),
            ValueError,
            r"`weight_scale` must be a finite number > 0; got 0.0",
        ),
        (dict(noise_prior_scale="a"), TypeError, r"`noise_prior_scale` must be a number"),
        (dict(likelihood="laplace"), ValueError, r"`likelihood` must be one of"),
        (dict(learn_basis_scale="yes"), TypeError, r"`learn_basis_scale` must be a bool"),
    ],
)
def test_prior_spec_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        brn.PriorSpec(**kwargs)


@pytest.mark.parametrize("likelihood", ["normal", "student_t"])
def test_observation_dist_is_the_models_likelihood(key, likelihood):
    from scipy import stats

    spec, prior, x, y = make(likelihood=likelihood)
    model = brn.make_model(spec, prior, brn.fit_scaler(x, y))
    tr = handlers.trace(handlers.seed(model, key)).get_trace(x, y)
    fn = tr[sites.OBS]["fn"].base_dist
    same = brn.model.observation_dist(prior, fn.loc, fn.scale)
    assert type(same) is type(fn)
    np.testing.assert_array_equal(same.log_prob(y), fn.log_prob(y))
    loc, scale = np.asarray(fn.loc, dtype=np.float64), np.asarray(fn.scale, dtype=np.float64)
    by_hand = (
        stats.t.logpdf(y, 4.0, loc, scale)
        if likelihood == "student_t"
        else stats.norm.logpdf(y, loc, scale)
    )
    np.testing.assert_allclose(fn.log_prob(y), by_hand, rtol=1e-5, atol=1e-5)
    assert prior.likelihood_df == (4.0 if likelihood == "student_t" else None)


@pytest.mark.parametrize("likelihood", ["normal", "student_t"])
def test_sample_observations_draws_from_observation_dist(likelihood):
    """The predictive noise (numpy) has the law of the likelihood (``observation_dist``):
    Kolmogorov-Smirnov against its CDF, standardized per point; under the null the
    p-value is uniform, so 1e-3 fails one seed in a thousand (this seed is fixed)."""
    from scipy import stats

    prior = brn.PriorSpec(likelihood=likelihood)
    loc = np.array([[-3.0, 0.5], [10.0, 2.0]])  # [P, O]
    scale = np.array([[0.1, 2.0], [5.0, 0.3]])
    y = brn.model.sample_observations(prior, loc, scale, np.random.default_rng(0), 5000)
    assert y.shape == (5000, 2, 2) and y.dtype == np.float64
    law = stats.t(4.0) if likelihood == "student_t" else stats.norm()
    for p in range(2):
        for o in range(2):
            z = (y[:, p, o] - loc[p, o]) / scale[p, o]
            assert stats.kstest(z, law.cdf).pvalue > 1e-3, (p, o)
    # the other law is rejected: the test can tell Normal from Student-t(4) noise
    other = stats.norm() if likelihood == "student_t" else stats.t(4.0)
    z = ((y - loc) / scale).ravel()
    assert stats.kstest(z, other.cdf).pvalue < 1e-3
    # same seed, same draws
    again = brn.model.sample_observations(prior, loc, scale, np.random.default_rng(0), 5000)
    np.testing.assert_array_equal(y, again)


def test_every_submodule_is_reachable_from_the_package():
    import pkgutil

    import bayesresnet

    modules = pkgutil.iter_modules(bayesresnet.__path__)
    names = [m.name for m in modules if not m.name.startswith("_")]
    for name in names:
        assert getattr(brn, name).__name__ == f"bayesresnet.{name}", name
    # The application wing's modules are reached through brn.app, not beside the library's.
    assert {"cli", "study", "study_report", "runspec", "spec"}.isdisjoint(names)
    app = [m.name for m in pkgutil.iter_modules(bayesresnet.app.__path__)]
    assert {"cli", "run_folder", "results", "toml", "study"} <= set(app)
    for name in app:
        assert getattr(brn.app, name).__name__ == f"bayesresnet.app.{name}", name


def _sine_data(num, rng, noise=0.05):
    """The sine problem's f(x) = sin(3x) + 0.3x on [-1, 1], with Normal noise."""
    x = rng.uniform(-1.0, 1.0, size=(num, 1))
    return x, np.sin(3 * x) + 0.3 * x + noise * rng.normal(size=(num, 1))


def _ensemble_test_rmse(x, y, x_test, y_test):
    spec = brn.ResNetSpec(1, 1, width=8, num_layers=4)
    post = brn.fit(
        spec, x, y, method="ensemble", seed=0, num_members=4, num_steps=600, convergence_tol=1.0
    )
    f_mean = post.predict_f(x_test).mean(axis=0)
    return float(np.sqrt(np.mean((f_mean - y_test) ** 2)))


def _as_the_engines_see_them(x, y):
    """The training data after the float64 standardization, cast to float32."""
    s = brn.fit_scaler(x, y)
    xc, yc = s.centre_data(x, y)
    return np.float32(xc), np.float32(yc / s.y_std)


@pytest.mark.slow  # four small ensemble fits, ≈ 30 s on 2 cores
def test_offsets_are_removed_in_float64():
    # x = 1e8 + U(-1, 1): in float32 every input rounds to a multiple of 8, so a float32
    # standardization sees one input value and fits the mean (test RMSE ≈ the sd); so with
    # y = 1 + 1e-8·signal, below float32's spacing near 1 (1.2e-7). In float64 the engines
    # receive the offset-free data's standardized values to float32 rounding (2 ulps at
    # |v| ≤ 2: 5e-7), and each fit beats the mean by far. (Not that the two fits agree to
    # a few per cent: 600 Adam steps amplify a 1-ulp difference in the data by more.)
    rng = np.random.default_rng(0)
    x, y = _sine_data(60, rng)
    x_test, y_test = _sine_data(200, rng, noise=0.0)
    cases = {
        "inputs at 1e8": [(x, y, x_test, y_test), (1e8 + x, y, 1e8 + x_test, y_test)],
        "outputs at 1": [
            (x, 1e-8 * y, x_test, 1e-8 * y_test),
            (x, 1.0 + 1e-8 * y, x_test, 1.0 + 1e-8 * y_test),
        ],
    }
    for name, (plain, offset) in cases.items():
        seen = _as_the_engines_see_them(*plain[:2]), _as_the_engines_see_them(*offset[:2])
        for a, b in zip(*seen):
            assert np.abs(a).max() <= 2.0, name
            np.testing.assert_allclose(a, b, rtol=0, atol=5e-7, err_msg=name)
        for data in (plain, offset):
            rmse = _ensemble_test_rmse(*data)
            assert rmse < 0.3 * data[3].std(), (name, rmse, data[3].std())


def test_centre_data_and_centred_scaler(key):
    # centre_data removes the offsets in float64; the model bound to centred() gives the
    # same log density as the model bound to the full scaler on the raw data (the shift
    # by y_mean leaves the density unchanged), here on data where float32 is exact enough.
    spec, prior, x, y = make()
    s = brn.fit_scaler(x, y)
    xc, yc = s.centre_data(x, y)
    assert xc.dtype == np.float64 and yc.dtype == np.float64
    np.testing.assert_allclose(xc, (x - x.mean(0)) / x.std(0), rtol=1e-12)
    np.testing.assert_allclose(yc, y - y.mean(0), rtol=1e-12)
    c = s.centred()
    np.testing.assert_array_equal(c.x_mean, 0.0)
    np.testing.assert_array_equal(c.x_std, 1.0)
    np.testing.assert_array_equal(c.y_mean, 0.0)
    np.testing.assert_array_equal(c.y_std, s.y_std)
    from numpyro.infer.util import log_density

    values = handlers.trace(handlers.seed(brn.make_model(spec, prior, s), key)).get_trace(x, y)
    values = {k: v["value"] for k, v in values.items() if not v.get("is_observed", False)}
    values = {k: v for k, v in values.items() if k != sites.OBS}

    def logp(scaler, xx, yy):
        model = brn.make_model(spec, prior, scaler)
        return jax.jit(lambda v: log_density(model, (xx, yy), {}, v)[0])(values)

    raw, centred = logp(s, x, y), logp(c, xc, yc)
    np.testing.assert_allclose(centred, raw, rtol=1e-5)


def test_a_bound_model_is_the_model_with_its_scaler_as_the_pytrees_leaves():
    from numpyro.infer.util import log_density

    from bayesresnet.model import BoundModel, make_model

    spec = brn.ResNetSpec(2, 1, width=3, num_layers=2)
    prior = brn.PriorSpec()
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5, 2)), rng.normal(size=(5, 1))
    scaler = brn.fit_scaler(x, y).centred()
    bound = BoundModel(scaler, make_model, spec, prior)
    leaves, treedef = jax.tree_util.tree_flatten(bound)
    assert len(leaves) == 4  # x_mean, x_std, y_mean, y_std: nothing else is data
    # Traced as a program's argument, it gives the density of the model it describes.
    model = make_model(spec, prior, scaler)

    @jax.jit
    def draw():
        tr = handlers.trace(handlers.seed(model, 0)).get_trace(x, y)
        return {
            k: v["value"] for k, v in tr.items() if v["type"] == "sample" and not v["is_observed"]
        }

    params = draw()

    @jax.jit
    def density(model, x, y):
        return log_density(model, (x, y), {}, params)[0]

    expected = jax.jit(lambda: log_density(model, (x, y), {}, params)[0])()
    np.testing.assert_allclose(density(bound, x, y), expected, rtol=1e-6)
    # Another scaler of the same shapes is the same pytree structure: one program.
    other = BoundModel(brn.fit_scaler(x, 2 * y).centred(), make_model, spec, prior)
    assert jax.tree_util.tree_structure(other) == treedef
    with pytest.raises(ValueError, match="without log masks"):
        BoundModel(brn.fit_scaler(np.abs(x) + 1, y, x_log=[True, False]), make_model, spec, prior)
