"""Tests of bayesresnet.inverse: calibration of simulator inputs through a surrogate.

Stand-in surrogates are :class:`SurrogateDraws` whose draws are linear maps ``x ↦ G_s x``,
for which the posterior of each draw is Gaussian in closed form (a conjugate linear
model); fitted surrogates (an anchored deep ensemble of borehole) serve the
simulation-based calibration.
"""

import jax
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


def test_a_second_calibration_of_the_same_sizes_compiles_nothing(small):
    """New observations of the same shape reuse every compiled program (the start's
    search, run eagerly by NumPyro, used to compile afresh on each call: 2.3 s of 3)."""
    sd, known, y, sigma, _ = small
    compiled = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            compiled.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        again = inverse.calibrate(sd, y + 0.1, unknown=["a", "b"], known=known, noise=sigma, **TINY)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert compiled == []
    assert np.isfinite(again.theta()).all()


@pytest.mark.slow
def test_known_as_a_dataframe_gives_the_same_result(small):
    sd, known, y, sigma, result = small
    frame = pd.DataFrame({"k": known[:, 0], "unused": 0.0})
    again = inverse.calibrate(sd, y, unknown=["a", "b"], known=frame, noise=sigma, **TINY)
    np.testing.assert_array_equal(again.theta(), result.theta())
    # Names and column indices name the same inputs.
    again = inverse.calibrate(sd, y, unknown=[0, 1], known=known, noise=sigma, **TINY)
    np.testing.assert_array_equal(again.theta(), result.theta())


@pytest.mark.slow
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


@pytest.mark.slow
def test_elik_with_inferred_noise_and_discrepancy(small):
    """``elik``: the pointwise log likelihood is ``log (1/S) Σ_s p(y_m | θ, f_s)`` with the
    sd ``√(σ² + δ²)``; the weights ``w_s(θ)`` are the normalized likelihoods of the draws."""
    sd, known, y, sigma, _ = small
    result = inverse.calibrate(
        sd, y, unknown=["a", "b"], known=known, noise="infer", discrepancy="iid",
        propagate="elik", **TINY,
    )  # fmt: skip
    post = result.idata.posterior
    assert post[inverse.NOISE].dims[2:] == ("output",) and post[inverse.DISCREPANCY].shape[2] == 4
    names = list(result.summary().index)
    assert names == ["a", "b"] + [
        f"{s}[y{o}]" for s in ("noise_sd", "discrepancy_sd") for o in range(4)
    ]
    c, i = 1, 9
    theta = result.theta()[c, i]
    scale = np.hypot(post[inverse.NOISE].values[c, i], post[inverse.DISCREPANCY].values[c, i])
    x = np.concatenate([np.broadcast_to(theta, (len(known), 2)), known], axis=1)
    f = np.einsum("md,sod->smo", x, np.asarray(sd.params, np.float64))  # [S, M, O]
    ll = stats.norm.logpdf(y, f, scale).sum(axis=-1)  # [S, M]
    got = result.idata.log_likelihood[inverse.OBS].values[c, i]
    np.testing.assert_allclose(got, np.logaddexp.reduce(ll, axis=0) - np.log(3), rtol=1e-4)
    total = ll.sum(axis=1)
    np.testing.assert_allclose(
        result.draw_weights[c, i], np.exp(total - np.logaddexp.reduce(total)), atol=1e-4
    )
    assert 1 <= result.effective_draws <= 3
    assert result.idata.sample_stats["surrogate_draw"].values.max() < 3


@pytest.mark.slow
def test_plugin_uses_the_mean_function_and_says_so(small):
    sd, known, y, sigma, _ = small
    result = inverse.calibrate(
        sd, y, unknown=["a", "b"], known=known, noise=sigma, propagate="plugin", **TINY
    )
    assert result.attrs["overconfident"].startswith("yes")
    assert result.idata.posterior.attrs["propagate"] == "plugin"
    assert (result.idata.sample_stats["surrogate_draw"].values == -1).all()
    np.testing.assert_array_equal(result.surrogate_share().values, [0.0, 0.0])
    assert result.effective_draws == 1.0
    c, i = 0, 4
    x = np.concatenate([np.broadcast_to(result.theta()[c, i], (len(known), 2)), known], axis=1)
    f = x @ np.asarray(sd.params, np.float64).mean(axis=0).T
    expected = stats.norm.logpdf(y, f, sigma).sum(axis=-1)
    np.testing.assert_allclose(
        result.idata.log_likelihood[inverse.OBS].values[c, i], expected, rtol=1e-4
    )


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
        ({"chain_method": "parallel"}, ValueError, r"`chain_method` must be one of \['auto'"),
        ({"target_accept_prob": 1.0}, ValueError, r"`target_accept_prob` must be .* in \(0, 1\)"),
        ({"target_accept_prob": "0.9"}, TypeError, r"`target_accept_prob` must be a number"),
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


@pytest.mark.slow  # four small compilations, ≈ 8 s on 2 cores
@pytest.mark.parametrize("propagate", ["epost", "elik"])
def test_sequential_and_vectorized_chains_give_the_same_draws(small, propagate):
    """The same chains either way, each with its own draw (epost), key and start: equal
    but for float32 rounding over a short run (a long one amplifies the rounding, so this
    is checked over 10 + 10 steps)."""
    sd, known, y, sigma, _ = small
    kwargs = dict(unknown=["a", "b"], known=known, noise=sigma, propagate=propagate)
    kwargs |= dict(num_warmup=10, num_samples=10, num_chains=2)
    runs = {
        m: inverse.calibrate(sd, y, chain_method=m, **kwargs) for m in ("sequential", "vectorized")
    }
    one, two = (np.asarray(r.theta()) for r in runs.values())
    assert one.shape == two.shape == ((3 if propagate == "epost" else 1) * 2, 10, 2)
    # 1e-3 is rounding grown over 20 steps (up to 3e-4 seen); another chain's draws, as a
    # mix-up of draws, keys or starts would give, differ by far more.
    np.testing.assert_allclose(one, two, atol=1e-3)
    assert min(np.abs(one[i] - one[j]).max() for i in range(len(one)) for j in range(i)) > 1e-2
    assert [r.attrs["chain_method"] for r in runs.values()] == ["sequential", "vectorized"]


def test_auto_runs_the_chains_one_after_another_on_one_cpu(small):
    assert len(jax.devices()) == 1 and jax.devices()[0].platform == "cpu"
    assert inverse.resolve_chain_method("auto") == "sequential"
    assert inverse.resolve_chain_method("vectorized") == "vectorized"
    assert small[-1].attrs["chain_method"] == "sequential"
    assert small[-1].attrs["target_accept_prob"] == inverse.TARGET_ACCEPT_PROB


@pytest.mark.slow  # two small compilations, ≈ 6 s on 2 cores
def test_a_higher_target_acceptance_adapts_smaller_steps(parts):
    """Dual averaging tunes the step size to the target: 0.95 must end with smaller
    steps and a higher mean acceptance than 0.6, chain by chain."""
    runs = [
        _call(parts, target_accept_prob=a, num_warmup=100, num_samples=50, seed=0)
        for a in (0.6, 0.95)
    ]
    step = [np.asarray(r.idata.sample_stats["step_size"])[:, 0] for r in runs]
    accept = [np.asarray(r.idata.sample_stats["acceptance_rate"]).mean(axis=1) for r in runs]
    assert np.all(step[1] < step[0]), step
    assert np.all(accept[1] > accept[0]), accept
    assert [r.attrs["target_accept_prob"] for r in runs] == [0.6, 0.95]


def test_lazy_submodule():
    assert brn.inverse is inverse


# ------------------------------------------------------------------- exact linear case
@pytest.mark.slow
def test_exact_linear_case_tells_epost_from_elik():
    """A linear simulator ``y = G θ + ε`` with a Gaussian prior; a stand-in surrogate with 8
    linear draws ``G_s``. ``epost`` must give the equal-weight mixture of the 8 conjugate
    posteriors, ``elik`` the evidence-weighted one, in mean and sd.

    Draws: epost 8 draws × 2 chains × 1000, elik 4 chains × 1000 (500 warm-up steps each).
    Tolerance: 4 Monte-Carlo standard errors, from ArviZ's bulk ESS: for a mean,
    ``√(Σ_s var_s / ESS_s) / S`` over epost's components and ``sd / √ESS`` for elik; for an
    sd, ``sd / √(2 ESS)`` (Gaussian). The two exact mixtures differ in ``a`` by more than
    the sum of the two mean tolerances, so the test tells the modes apart.
    """
    g, known, y, sigma, mu0, s0 = linear_problem()
    means, sds, log_ev = conjugate(g, known, y, sigma, mu0, s0)
    evidence = np.exp(log_ev - log_ev.max())
    evidence /= evidence.sum()
    exact = {
        "epost": mixture(np.full(len(g), 1 / len(g)), means, sds),
        "elik": mixture(evidence, means, sds),
    }
    sd = linear_draws(g)
    tolerance = {}
    for mode, chains in (("epost", 2), ("elik", 4)):
        result = inverse.calibrate(
            sd, y, unknown=["a", "b"], known=known, prior=NORMAL_PRIOR, noise=sigma,
            propagate=mode, num_warmup=500, num_samples=1000, num_chains=chains, seed=1,
        )  # fmt: skip
        theta = result.theta()
        pooled = theta.reshape(-1, 2)
        table = result.diagnostics()
        assert table["divergences"].max() == 0
        per = table[table["component"] != "pooled"]
        ess = np.stack([per[per["variable"] == n]["ess_bulk"].to_numpy() for n in "ab"], -1)
        k = ess.shape[0]  # components
        var = theta.reshape(k, -1, 2).var(axis=1)
        se_mean = np.sqrt((var / ess).sum(axis=0)) / k
        se_sd = pooled.std(axis=0) / np.sqrt(2 * ess.sum(axis=0))
        mean, sd_ = exact[mode]
        np.testing.assert_array_less(np.abs(pooled.mean(axis=0) - mean), 4 * se_mean)
        np.testing.assert_array_less(np.abs(pooled.std(axis=0) - sd_), 4 * se_sd)
        tolerance[mode] = 4 * se_mean
        if mode == "elik":
            # p(s | y), the posterior mean of w_s(θ), is the normalized evidence of draw s.
            w = result.draw_weights.reshape(-1, len(g))
            se_w = w.std(axis=0) / np.sqrt(ess.min())
            np.testing.assert_array_less(np.abs(w.mean(axis=0) - evidence), 4 * se_w + 1e-3)
            assert result.effective_draws == pytest.approx(1 / np.sum(evidence**2), rel=0.1)
        else:
            # Var_s E[θ | s] / Var θ of the exact mixture; 0.05 exceeds 4 Monte-Carlo errors
            # of the ratio (about 0.01 at these ESS).
            share = means.var(axis=0) / sd_**2
            np.testing.assert_allclose(result.surrogate_share().values, share, atol=0.05)
    gap = np.abs(exact["epost"][0] - exact["elik"][0])
    assert gap[0] > tolerance["epost"][0] + tolerance["elik"][0], (gap, tolerance)


# ------------------------------------------------------ simulation-based calibration
SBC_REPLICATES = 50
SBC_RANKS = 99  # posterior draws each θ* is ranked among (evenly thinned)
SBC_SIZES = dict(num_warmup=100, num_samples=60, num_chains=1)


@pytest.fixture(scope="module")
def borehole_surrogate():
    """An anchored deep ensemble (8 members, width 16, 4 layers, cubic basis, 1500 steps)
    of borehole, fitted once on 60 Latin-hypercube runs without noise. Its test RMSE is
    about 6 (13 % of the output's sd, 45.7); observations get noise sd 0.05 × 45.7 ≈ 2.3,
    so the surrogate's error is comparable to the noise (2.6 times it)."""
    import warnings

    problem = brn.problems.get("borehole")
    data = problem.sample(0, num_train=60, num_test=0, design="lhs")
    spec = ResNetSpec(8, 1, width=16, num_layers=4, basis=brn.bases.Cubic())
    with warnings.catch_warnings():
        # Members stop on a step budget, not on the convergence tolerance.
        warnings.filterwarnings("ignore", r".*had not converged after", RuntimeWarning)
        post = brn.fit(spec, data, method="ensemble", num_members=8, num_steps=1500, anchored=True)
    return problem, post


def _sbc_ranks(problem, post, propagate, replicates=SBC_REPLICATES, seed=0):
    """Ranks of θ* = (rw, Hu), drawn from the uniform prior on the problem's bounds, among
    99 evenly thinned posterior draws given 5 noisy observations of the true simulator at
    fixed settings of the other six inputs; and whether θ* lies in the central 90 %."""
    rng = np.random.default_rng(seed)
    unknown = [0, 3]
    known_cols = [j for j in range(8) if j not in unknown]
    lower, upper = problem.bounds[:, 0], problem.bounds[:, 1]
    known = rng.uniform(lower[known_cols], upper[known_cols], size=(5, 6))
    sigma = 0.05 * float(problem.output_std[0])
    prior = {problem.input_names[j]: (lower[j], upper[j]) for j in unknown}
    ranks, inside = [], []
    for _ in range(replicates):
        truth = rng.uniform(lower[unknown], upper[unknown])
        x = np.zeros((5, 8))
        x[:, unknown], x[:, known_cols] = truth, known
        y = problem.evaluate(x) + sigma * rng.standard_normal((5, 1))
        result = inverse.calibrate(
            post, y, unknown=unknown, known=known, prior=prior, noise=sigma,
            propagate=propagate, surrogate_draws=8, seed=int(rng.integers(2**31)), **SBC_SIZES,
        )  # fmt: skip
        pooled = result.theta().reshape(-1, 2)
        thinned = pooled[np.linspace(0, len(pooled) - 1, SBC_RANKS).round().astype(int)]
        ranks.append((thinned < truth).sum(axis=0))
        lo, hi = np.quantile(pooled, [0.05, 0.95], axis=0)
        inside.append((lo <= truth) & (truth <= hi))
    return np.array(ranks), np.array(inside)


@pytest.mark.slow
def test_sbc_epost_uniform_and_plugin_overconfident(borehole_surrogate):
    """Perfect-model SBC over 50 replicates (θ* from the prior, data from the true borehole
    function). ``epost`` (8 draws × 1 chain × 60 draws after 100 warm-up steps): the ranks
    of each unknown among 99 of its 480 draws are uniform — a χ² test over 5 equal bins
    (10 expected per bin) does not reject at level 0.001 per input. ``plugin`` (1 chain ×
    60 draws, the first 25 replicates): with the surrogate's error 2.6 times the noise,
    its central 90 % intervals miss θ* far more often than 10 % of the time — more misses
    over both inputs than the 0.99 quantile of Binomial(50, 0.1) — and more often than
    epost's over the same replicates."""
    problem, post = borehole_surrogate
    ranks, inside = _sbc_ranks(problem, post, "epost")
    for j in range(2):
        counts = np.bincount(ranks[:, j] * 5 // (SBC_RANKS + 1), minlength=5)
        assert stats.chisquare(counts).pvalue > 1e-3, (j, counts)
    _, plugin_inside = _sbc_ranks(problem, post, "plugin", replicates=25)
    misses = int((~plugin_inside).sum())
    assert misses > stats.binom.ppf(0.99, plugin_inside.size, 0.1), misses
    assert misses > int((~inside[:25]).sum()), (misses, inside[:25])


@pytest.mark.slow
def test_the_benchmark_runs_quick(tmp_path):
    import importlib.util
    import json
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_inverse.py"
    spec = importlib.util.spec_from_file_location("bench_inverse", path)
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    out = tmp_path / "inverse.json"
    results = bench.main(["--quick", "--out", str(out)])
    saved = json.loads(out.read_text())
    assert [v["chain_method"] for v in saved["variants"]] == ["vectorized", "sequential"]
    for v, r in zip(saved["variants"], results["variants"]):
        assert v["chains"] == 8 * 2 and v["steps_per_chain"] == 60
        assert v["lockstep_leapfrogs_sampling"] >= v["leapfrogs_sampling"] / v["chains"]
        assert r["lockstep_waste"] >= 1 and v["warm"]["sample"] > 0
        assert len(v["theta_mean"]) == 2


def test_inference_data_with_more_chains_than_draws():
    """Vectorized chains may outnumber the draws per chain (ArviZ's warning is silenced,
    and warnings are errors here); the attributes reach every group."""
    from bayesresnet import diagnostics

    rng = np.random.default_rng(0)
    idata = diagnostics.groups_to_inference_data(
        {"posterior": {"theta": rng.normal(size=(10, 3, 2))}, "observed_data": {"y": np.ones(4)}},
        coords={"unknown": ["a", "b"], "obs": [0, 1, 2, 3]},
        dims={"theta": ["unknown"], "y": ["obs"]},
        log_likelihood=({"y": rng.normal(size=(10, 3, 4))}, {"y": ["obs"]}),
        attrs={"propagate": "epost"},
    )
    assert idata.posterior["theta"].shape == (10, 3, 2)
    assert idata.log_likelihood["y"].dims == ("chain", "draw", "obs")
    assert all(idata[g].attrs["propagate"] == "epost" for g in idata.groups())


@pytest.mark.slow
def test_epost_sharded_over_two_devices(tmp_path):
    """With two (host) devices the components' arrays are split between them, and the
    posterior agrees with one device's. Not draw for draw: float32 rounding differs
    between the two programs and NUTS's adaptation amplifies it, so the means of ``θ``
    (4 draws × 2 chains × 50 draws each run) must agree within 4 Monte-Carlo standard
    errors of their difference, from each run's bulk ESS."""
    import json
    import os
    import subprocess
    import sys
    from pathlib import Path

    script = tmp_path / "run.py"
    script.write_text(
        "import sys, json, numpy as np, jax\n"
        f"sys.path.insert(0, {str(Path(__file__).parent)!r})\n"
        "from test_inverse import sharded_case, run_summary\n"
        "from bayesresnet import inverse\n"
        "split = inverse._shard_components(np.zeros((4, 2)), 4)\n"
        "print(json.dumps({'devices': len(split.sharding.device_set),\n"
        "                  'chains': inverse.resolve_chain_method('auto'),\n"
        "                  **run_summary(sharded_case())}))\n"
    )
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    env["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(script)],
        env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    two = json.loads(proc.stdout.splitlines()[-1])
    assert two["devices"] == 2 and two["chains"] == "vectorized"
    one = run_summary(sharded_case())
    se = np.sqrt(np.add(one["var_over_ess"], two["var_over_ess"]))
    np.testing.assert_array_less(np.abs(np.subtract(one["mean"], two["mean"])), 4 * se)


def run_summary(result) -> dict:
    """The pooled mean of ``θ`` and its variance over the pooled bulk ESS."""
    summary = result.summary()
    return {
        "mean": summary["mean"].tolist(),
        "var_over_ess": (summary["sd"] ** 2 / summary["ess_bulk"]).tolist(),
    }


def sharded_case():
    g, known, y, sigma, *_ = linear_problem()
    prior = {"a": (-3.0, 3.0), "b": (-3.0, 3.0)}
    return inverse.calibrate(
        linear_draws(g[:4]), y, unknown=["a", "b"], known=known, noise=sigma, prior=prior,
        **TINY,
    )  # fmt: skip
