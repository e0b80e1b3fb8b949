"""Tests of bayesresnet.inverse: calibration of simulator inputs through a surrogate.

Stand-in surrogates are :class:`SurrogateDraws` whose draws are linear maps ``x ↦ G_s x``,
for which the posterior of each draw is Gaussian in closed form (a conjugate linear
model); fitted surrogates (an anchored deep ensemble of borehole) serve the
simulation-based calibration.
"""

import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from scipy import stats

import bayesresnet as brn
from bayesresnet import inverse, sites
from bayesresnet.model import PriorSpec, Scaler
from bayesresnet.posterior import Posterior, function_program
from bayesresnet.resnet import ResNetSpec, param_shapes


# ----------------------------------------------------------------------------- helpers
def linear(g, x):
    """One draw of a linear surrogate: ``x [P, d] ↦ x G_sᵀ`` ``[P, O]``."""
    return x @ g.T


def linear_draws(g, *, x_train=None, names=("a", "b", "k"), scale=None):
    """A linear stand-in surrogate with draws ``G_s`` ``[S, O, d]``."""
    o = g.shape[1]
    return inverse.SurrogateDraws(
        linear,
        np.asarray(g, np.float32),
        tuple(names),
        tuple(f"y{j}" for j in range(o)),
        np.ones(o) if scale is None else scale,
        x_train,
    )


def conjugate(g, known, y, sigma, prior_mean, prior_sd):
    """Per draw, the Gaussian posterior of ``θ`` (the first two inputs) and the log evidence,
    for ``y_m = G_s (θ, k_m) + ε``, ``ε ~ N(0, σ² I)``, ``θ ~ N(μ₀, diag(s₀²))``."""
    out = []
    for gs in g:
        a = np.concatenate([gs[:, :2]] * len(known))  # [M·O, 2]
        b = np.concatenate([gs[:, 2:] @ km for km in known])  # [M·O]
        r = y.reshape(-1) - b
        p0 = np.diag(1 / prior_sd**2)
        cov = np.linalg.inv(p0 + a.T @ a / sigma**2)
        mean = cov @ (p0 @ prior_mean + a.T @ r / sigma**2)
        marginal = a @ np.diag(prior_sd**2) @ a.T + sigma**2 * np.eye(len(r))
        log_evidence = stats.multivariate_normal(a @ prior_mean, marginal).logpdf(r)
        out.append((mean, np.sqrt(np.diag(cov)), log_evidence))
    means, sds, log_ev = (np.array(v) for v in zip(*out))
    return means, sds, log_ev


def mixture(weights, means, sds):
    """Mean and sd per coordinate of the Gaussian mixture ``Σ_s w_s N(m_s, s_s²)``."""
    mean = weights @ means
    return mean, np.sqrt(weights @ (sds**2 + means**2) - mean**2)


def linear_problem(gamma=0.5, num_draws=8, seed=0):
    """Eight linear draws that differ in how θ maps to the first three outputs, and a fourth
    output of the known input alone whose slope is off in the draws whose posterior mean
    of ``a`` is low, so the evidence favours the others: the equal-weight and the
    evidence-weighted mixtures differ (by 0.05 in ``a``, about 8 Monte-Carlo errors)."""
    rng = np.random.default_rng(seed)
    g0 = np.array([[1.0, 0.5, 0.8], [-0.4, 1.0, 0.3], [0.6, -0.7, -0.5], [0.0, 0.0, 1.0]])
    g = np.repeat(g0[None], num_draws, axis=0)
    g[:, :3, :2] += 0.15 * rng.normal(size=(num_draws, 3, 2))
    known = np.linspace(-1.5, 1.5, 4)[:, None]
    sigma = 0.3
    y = np.stack([g0 @ np.r_[0.5, -0.3, km] for km in known[:, 0]])
    y = y + sigma * rng.normal(size=y.shape)
    mu0, s0 = np.zeros(2), np.ones(2)
    a_mean = conjugate(g, known, y, sigma, mu0, s0)[0][:, 0]
    z = (a_mean - a_mean.mean()) / a_mean.std()
    g[:, 3, 2] = 1.0 + gamma * np.clip(-z, 0, None)
    return g, known, y, sigma, mu0, s0


NORMAL_PRIOR = {"a": dist.Normal(0.0, 1.0), "b": dist.Normal(0.0, 1.0)}


def _posterior(num_draws=3, seed=0):
    """A posterior of prior-like network draws (independent N(0, 1/width) entries)."""
    spec = ResNetSpec(3, 2, width=5, num_layers=3)
    rng = np.random.default_rng(seed)
    shapes = param_shapes(spec)
    samples = {
        k: rng.normal(size=(1, num_draws, *shapes[k])) / np.sqrt(spec.width) for k in sites.NETWORK
    }
    samples[sites.NOISE_SCALE] = np.full((1, num_draws, 2), 0.1)
    x = rng.uniform(-1.0, 2.0, size=(20, 3))
    scaler = Scaler(np.full(3, 0.5), np.full(3, 0.8), np.array([1.0, -2.0]), np.array([2.0, 0.5]))
    return Posterior(
        spec, PriorSpec(), scaler, samples, "ensemble", {}, {}, {}, {}, x, x[:, :2],
        input_names=("a", "b", "k"), output_names=("u", "v"),
    )  # fmt: skip


TINY = dict(num_warmup=60, num_samples=50, num_chains=2, seed=0)


@pytest.fixture(scope="module")
def small():
    """A linear problem, its stand-in with three draws and a training box, and a tiny
    ``epost`` calibration of it (3 draws × 2 chains × 50 draws)."""
    g, known, y, sigma, *_ = linear_problem()
    x_train = np.random.default_rng(1).uniform(-2.0, 2.0, size=(30, 3))
    sd = linear_draws(g[:3], x_train=x_train)
    result = inverse.calibrate(sd, y, unknown=["a", "b"], known=known, noise=sigma, **TINY)
    return sd, known, y, sigma, result


# ------------------------------------------------------------------ function program
def test_function_program_equals_predict_f():
    post = _posterior()
    f, params = function_program(post)
    x = np.random.default_rng(2).uniform(-1, 2, size=(7, 3))
    import jax

    values = np.asarray(jax.vmap(f, (0, None))(params, x.astype(np.float32)))
    np.testing.assert_allclose(values, post.predict_f(x), rtol=1e-5, atol=1e-5)
    # Hashable by value: the same architecture and scaling give equal functions.
    assert f == function_program(post)[0] and hash(f) == hash(function_program(post)[0])


def test_make_surrogate_draws_of_a_posterior():
    post = _posterior()
    sd = inverse.make_surrogate_draws(post)
    x = np.random.default_rng(3).uniform(-1, 2, size=(5, 3))
    np.testing.assert_allclose(sd.evaluate(x), post.predict_f(x), rtol=1e-5, atol=1e-5)
    assert sd.num_draws == 3 and sd.input_names == ("a", "b", "k")
    np.testing.assert_array_equal(sd.output_scale, post.scaler.y_std)
    assert sd.take([2, 0]).num_draws == 2


def test_model_places_unknown_and_known_columns():
    model = inverse.CalibrationModel(
        linear, 4, (2, 0), (1, 3), (("uniform", 0.0, 1.0),) * 2, (0.1,), (1.0,), None, False
    )
    x = np.asarray(model.inputs(np.array([7.0, 8.0]), np.array([[1.0, 2.0], [3.0, 4.0]])))
    np.testing.assert_array_equal(x, [[8.0, 1.0, 7.0, 2.0], [8.0, 3.0, 7.0, 4.0]])


# -------------------------------------------------------------------------- a result
def test_result_groups_shapes_and_labels(small):
    sd, known, y, sigma, result = small
    idata = result.idata
    assert set(idata.groups()) >= {
        "posterior", "posterior_predictive", "log_likelihood", "sample_stats",
        "observed_data", "constant_data",
    }  # fmt: skip
    chains = 3 * 2  # 3 draws × 2 chains
    assert idata.posterior[inverse.THETA].shape == (chains, 50, 2)
    assert list(idata.posterior[inverse.THETA].coords["unknown"].values) == ["a", "b"]
    assert inverse.NOISE not in idata.posterior  # the noise was given
    assert idata.posterior_predictive[inverse.OBS].shape == (chains, 50) + y.shape
    assert idata.log_likelihood[inverse.OBS].shape == (chains, 50, len(y))
    np.testing.assert_array_equal(idata.observed_data[inverse.OBS].values, y)
    np.testing.assert_array_equal(idata.constant_data["known"].values, known)
    # Chain k·C + c conditions on draw k.
    np.testing.assert_array_equal(result.components, [0, 0, 1, 1, 2, 2])
    which = idata.sample_stats["surrogate_draw"].values
    np.testing.assert_array_equal(which[:, 0], result.components)
    assert result.effective_draws == 3.0
    assert result.attrs["overconfident"] == "no" and result.propagate == "epost"


def test_log_likelihood_and_predictive_use_each_chains_draw(small):
    sd, known, y, sigma, result = small
    theta = result.theta()  # [chains, draws, 2]
    g = np.asarray(sd.params, np.float64)
    c, i = 3, 7  # chain 3 is component 1: draw 1
    x = np.concatenate([np.broadcast_to(theta[c, i], (len(known), 2)), known], axis=1)
    f = x @ g[1].T
    expected = stats.norm.logpdf(y, f, sigma).sum(axis=-1)
    got = result.idata.log_likelihood[inverse.OBS].values[c, i]
    np.testing.assert_allclose(got, expected, rtol=1e-4)


def test_diagnostics_per_component_and_pooled(small):
    result = small[-1]
    table = result.diagnostics()
    per = table[table["component"] != "pooled"]
    assert sorted(set(per["component"])) == [0, 1, 2]
    pooled = table[table["component"] == "pooled"].set_index("variable")
    assert list(pooled.index) == ["a", "b"]
    for name in ("a", "b"):
        rows = per[per["variable"] == name]
        assert pooled.loc[name, "r_hat"] == rows["r_hat"].max()
        assert pooled.loc[name, "ess_bulk"] == pytest.approx(rows["ess_bulk"].sum())
    divergences = int(result.idata.sample_stats["diverging"].values.sum())
    assert pooled.loc["a", "divergences"] == divergences
    summary = result.summary(hdi_prob=0.8)
    assert list(summary.index) == ["a", "b"]
    assert (summary["hdi_lower"] < summary["mean"]).all()
    assert (summary["mean"] < summary["hdi_upper"]).all()
    np.testing.assert_allclose(summary["surrogate_share"], result.surrogate_share().values)
    with pytest.raises(ValueError, match=r"`hdi_prob` must be a finite number in \(0, 1\)"):
        result.summary(hdi_prob=1.5)


def test_surrogate_share_is_the_variance_of_component_means(small):
    result = small[-1]
    theta = result.theta()
    means = theta.reshape(3, -1, 2).mean(axis=1)
    expected = means.var(axis=0) / theta.reshape(-1, 2).var(axis=0)
    np.testing.assert_allclose(result.surrogate_share().values, expected, rtol=1e-6)
    assert ((0 < expected) & (expected < 1)).all()


def test_known_as_a_dataframe_gives_the_same_result(small):
    sd, known, y, sigma, result = small
    frame = pd.DataFrame({"k": known[:, 0], "unused": 0.0})
    again = inverse.calibrate(sd, y, unknown=["a", "b"], known=frame, noise=sigma, **TINY)
    np.testing.assert_array_equal(again.theta(), result.theta())
    # Names and column indices name the same inputs.
    again = inverse.calibrate(sd, y, unknown=[0, 1], known=known, noise=sigma, **TINY)
    np.testing.assert_array_equal(again.theta(), result.theta())


def test_extrapolation_flagged_outside_the_training_box():
    """Draws that disagree more the farther from the origin; training inputs in [−0.5, 0.5]³;
    observations that put ``a`` near 3: the posterior sits outside the box, where the
    draws' spread is several times its training-set level."""
    rng = np.random.default_rng(0)
    g = np.array([[[1.0, 0.2, 0.1]]]) + 0.2 * rng.normal(size=(4, 1, 3))
    x_train = rng.uniform(-0.5, 0.5, size=(50, 3))
    sd = linear_draws(g, x_train=x_train)
    known = np.zeros((3, 1))
    y = np.full((3, 1), 3.0)
    prior = {"a": (-10.0, 10.0), "b": (-0.5, 0.5)}
    result = inverse.calibrate(
        sd, y, unknown=["a", "b"], known=known, prior=prior, noise=0.05, **TINY
    )
    assert result.extrapolation["outside_box"] > 0.9
    assert result.extrapolation["epistemic_excess"] > 0.9
    assert result.extrapolates
    # Inside the box, nothing is flagged.
    result = inverse.calibrate(
        sd, np.full((3, 1), 0.1), unknown=["a", "b"], known=known, prior=prior, noise=0.05,
        **TINY,
    )  # fmt: skip
    assert not result.extrapolates and result.extrapolation["outside_box"] < 0.05


# ---------------------------------------------------------------------- validation
@pytest.fixture(scope="module")
def parts():
    g, known, y, sigma, *_ = linear_problem()
    return linear_draws(g[:2], x_train=np.random.default_rng(0).normal(size=(10, 3))), known, y


def _call(parts, **changes):
    sd, known, y = parts
    kwargs = dict(post=sd, y_obs=y, unknown=["a", "b"], known=known, noise=0.3) | changes
    return inverse.calibrate(kwargs.pop("post"), kwargs.pop("y_obs"), **kwargs)


@pytest.mark.parametrize(
    "changes, error, match",
    [
        ({"post": "run"}, TypeError, r"`post` must be a bayesresnet Posterior or SurrogateDraws"),
        ({"unknown": ["a", "z"]}, ValueError, r"`unknown` names 'z', not an input of the model"),
        ({"unknown": ["aa"]}, ValueError, r"Did you mean 'a'\?"),
        ({"unknown": [5]}, ValueError, r"`unknown` index 5 is out of range for 3 inputs"),
        ({"unknown": [1.5]}, TypeError, r"`unknown` must hold input names or indices"),
        ({"unknown": {"a"}}, TypeError, r"`unknown` must hold input names or indices; got set"),
        ({"unknown": ["a", 0]}, ValueError, r"`unknown` must be non-empty and without repeats"),
        ({"unknown": []}, ValueError, r"`unknown` must be non-empty and without repeats"),
        ({"y_obs": np.zeros((4, 2))}, ValueError, r"`y_obs` must have shape \[M, 4\]"),
        ({"y_obs": np.full((4, 4), np.nan)}, ValueError, r"`y_obs` contains NaN"),
        ({"known": None}, ValueError, r"`known` is required: the inputs \['k'\]"),
        ({"known": np.zeros((3, 1))}, ValueError, r"`known` must have shape \[4, 1\]"),
        ({"known": pd.DataFrame({"x": np.zeros(4)})}, ValueError, r"lacks the columns \['k'\]"),
        ({"unknown": ["a", "b", "k"]}, ValueError, r"`known` must be None: every input"),
        ({"prior": [1, 2]}, TypeError, r"`prior` must be None \(uniform on the training box\)"),
        ({"prior": {"k": (0, 1)}}, ValueError, r"`prior` names \['k'\], not among the unknown"),
        ({"prior": {"a": (1, 0)}}, ValueError, r"`prior\['a'\]` must be a NumPyro distribution"),
        (
            {"prior": {"a": dist.Normal(np.zeros(2), 1.0)}},
            ValueError,
            r"`prior\['a'\]` must be a scalar continuous distribution",
        ),
        ({"prior": {"a": dist.Poisson(1.0)}}, ValueError, r"scalar continuous distribution"),
        ({"noise": "fit"}, ValueError, r'`noise` must be "infer" or sds > 0 per output'),
        ({"noise": [0.1, 0.2]}, ValueError, r"one sd > 0 per output \(4\); got \[0.1, 0.2\]"),
        ({"noise": -1.0}, ValueError, r"one sd > 0 per output"),
        ({"discrepancy": "gp"}, ValueError, r"`discrepancy` must be one of \[None, 'iid'\]"),
        ({"propagate": "epst"}, ValueError, r"`propagate` must be one of .*Did you mean 'epost'"),
        ({"surrogate_draws": 0}, ValueError, r"`surrogate_draws` must be ≥ 1; got 0"),
        ({"method": "hmc"}, ValueError, r"`method` must be one of \['nuts'\]"),
        ({"num_warmup": -1}, ValueError, r"`num_warmup` must be ≥ 0"),
        ({"num_samples": 0}, ValueError, r"`num_samples` must be ≥ 1"),
        ({"num_chains": 1.0}, TypeError, r"`num_chains` must be an int"),
        ({"seed": -1}, ValueError, r"`seed` must be ≥ 0"),
    ],
)
def test_invalid_arguments(parts, changes, error, match):
    with pytest.raises(error, match=match):
        _call(parts, **changes)


def test_prior_required_without_training_inputs(parts):
    g = np.asarray(parts[0].params)
    with pytest.raises(ValueError, match=r"`prior` for 'b' is required: the surrogate carries"):
        _call(parts, post=linear_draws(g), prior={"a": (0.0, 1.0)})


def test_surrogate_draws_validation():
    g = np.zeros((2, 1, 3))
    with pytest.raises(TypeError, match=r"`function` must be callable"):
        inverse.SurrogateDraws(3, g, ("a", "b", "c"), ("y",), np.ones(1))
    with pytest.raises(ValueError, match=r"`params` must be a non-empty pytree"):
        inverse.SurrogateDraws(linear, {"u": g, "v": np.zeros(3)}, ("a", "b", "c"), ("y",), [1])
    with pytest.raises(TypeError, match=r"`input_names` must be a sequence of str"):
        inverse.SurrogateDraws(linear, g, "abc", ("y",), np.ones(1))
    with pytest.raises(ValueError, match=r"`output_names` must be non-empty and distinct"):
        inverse.SurrogateDraws(linear, g, ("a", "b", "c"), (), np.ones(1))
    with pytest.raises(ValueError, match=r"`output_scale` must hold one positive sd per output"):
        inverse.SurrogateDraws(linear, g, ("a", "b", "c"), ("y",), np.zeros(1))
    with pytest.raises(ValueError, match=r"`x_train` must have 3 columns"):
        inverse.SurrogateDraws(linear, g, ("a", "b", "c"), ("y",), np.ones(1), np.zeros((4, 2)))
    with pytest.raises(TypeError, match=r"`post` must be a bayesresnet Posterior; got str"):
        inverse.make_surrogate_draws("run")


def test_lazy_submodule():
    assert brn.inverse is inverse
