"""Input relevance (ARD): the per-input prior scale, its non-centred form, the relevance
table, its figure and report section, and the run-spec key."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer import Predictive
from numpyro.infer.util import log_density

import bayesresnet as brn
from bayesresnet import bases, plots, report, sites, workflow
from bayesresnet.infer import MCLMCConfig, NUTSConfig, _resolve_noncentred
from bayesresnet.model import ARD_SITES, SCALED_SITES, noncentred, noncentred_sites, prior_scales

ARD = brn.PriorSpec(ard=True)
SPEC = brn.ResNetSpec(3, 1, width=4, num_layers=3, basis=bases.Linear())


def data(num=12, d=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, size=(num, d))
    return x, np.sin(2 * x[:, :1]) + 0.1 * rng.normal(size=(num, 1))


@pytest.mark.slow
def test_ard_adds_one_scale_per_input(key):
    x, y = data()
    tr = handlers.trace(handlers.seed(brn.make_model(SPEC, ARD, brn.fit_scaler(x, y)), key))
    tr = tr.get_trace(x, y)
    assert tr[sites.ARD_SCALE]["value"].shape == (3,)
    assert sites.DIMS[sites.ARD_SCALE] == ("input",)
    without = handlers.trace(
        handlers.seed(brn.make_model(SPEC, brn.PriorSpec(), brn.fit_scaler(x, y)), key)
    )
    assert sites.ARD_SCALE not in without.get_trace(x, y)


@pytest.mark.slow
def test_ard_scale_multiplies_the_prior_sd_of_its_inputs_weights(key):
    """Row ``j`` of the input weights has prior sd ``input_scale/√d · λ_j``."""
    x, y = data()
    prior = brn.PriorSpec(ard=True, input_scale=2.0)
    lam = jnp.array([0.5, 3.0, 1e-3])
    model = handlers.condition(
        brn.make_model(SPEC, prior, brn.fit_scaler(x, y)), {sites.ARD_SCALE: lam}
    )
    fn = handlers.trace(handlers.seed(model, key)).get_trace(x, y)[sites.INPUT_WEIGHT]["fn"]
    expected = prior_scales(SPEC, prior)[sites.INPUT_WEIGHT] * np.asarray(lam)[:, None]
    np.testing.assert_allclose(fn.base_dist.scale, np.broadcast_to(expected, (3, 4)), rtol=1e-6)
    assert prior_scales(SPEC, prior)[sites.INPUT_WEIGHT] == pytest.approx(2.0 / np.sqrt(3))


@pytest.mark.slow
def test_tiny_ard_scale_makes_prior_functions_flat_along_that_input(key):
    """Prior draws of the network with ``λ_2 = 1e-6`` do not vary along ``x_2``: moving
    ``x_2`` across its whole range changes ``f`` by < 1e-4 of what moving ``x_1`` does."""
    x, y = data(num=40)
    model = handlers.condition(
        brn.make_model(SPEC, ARD, brn.fit_scaler(x, y)),
        {sites.ARD_SCALE: jnp.array([1.0, 1e-6, 1.0])},
    )
    draws = Predictive(model, num_samples=200, return_sites=list(sites.NETWORK))(key, x)
    grid = np.zeros((50, 3))
    along = np.linspace(-2, 2, 50)
    spread = {}
    for j in (0, 1):
        xs = grid.copy()
        xs[:, j] = along
        f = jax.vmap(lambda p, xs=xs: brn.resnet.apply(p, jnp.asarray(xs), SPEC))(
            draws
        )  # [S, 50, 1]
        spread[j] = float(jnp.mean(jnp.ptp(f, axis=1)))
    assert spread[0] > 0.05
    assert spread[1] < 1e-4 * spread[0]


@pytest.mark.slow
def test_noncentred_input_weights_under_ard(key):
    """With ``ard=True`` the input weights are non-centred too: the same density up to
    the Jacobian ``Σ log(s·λ_j)``, and ``input_weight`` is the deterministic site."""
    x, y = data()
    model = brn.make_model(SPEC, ARD, brn.fit_scaler(x, y))
    draw = Predictive(model, num_samples=1)(key, x)
    values = {k: v[0] for k, v in draw.items() if k != sites.OBS}
    names = noncentred_sites(ARD)
    assert names == SCALED_SITES + ARD_SITES
    assert noncentred_sites(brn.PriorSpec()) == SCALED_SITES
    s = prior_scales(SPEC, ARD)
    w = values[sites.INPUT_WEIGHT]
    scale = jnp.broadcast_to(s[sites.INPUT_WEIGHT] * values[sites.ARD_SCALE][:, None], w.shape)
    nc = {k: v for k, v in values.items() if k not in names}
    nc[sites.INPUT_WEIGHT + "_decentered"] = w / scale
    log_jac = float(jnp.sum(jnp.log(scale)))
    for name in SCALED_SITES:
        nc[name + "_decentered"] = values[name] / s[name]
        log_jac += float(np.log(s[name]) * values[name].size)
    lp_nc, trace = log_density(noncentred(model, names), (x, y), {}, nc)
    lp_c, _ = log_density(model, (x, y), {}, values)
    assert float(lp_nc) == pytest.approx(float(lp_c) + log_jac, rel=1e-5, abs=1e-3)
    assert trace[sites.INPUT_WEIGHT]["type"] == "deterministic"
    np.testing.assert_allclose(trace[sites.INPUT_WEIGHT]["value"], w, rtol=1e-5, atol=1e-7)
    assert _resolve_noncentred(NUTSConfig(noncentred="auto"), ARD) is True
    assert _resolve_noncentred(MCLMCConfig(noncentred="auto"), brn.PriorSpec()) is False


def test_prior_spec_ard_must_be_a_bool():
    with pytest.raises(TypeError, match=r"`ard` must be a bool"):
        brn.PriorSpec(ard="yes")


# ------------------------------------------------------------------ relevance table

TINY = dict(method="ensemble", num_members=4, num_steps=200, max_steps=200)


def tiny_fit(x, y, prior):
    """A tiny ensemble fit; 200 steps are not meant to converge (its warning is expected)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".* ensemble member.s. had not converged", RuntimeWarning)
        return brn.fit(SPEC, x, y, prior=prior, seed=0, **TINY)


@pytest.fixture(scope="module")
def tiny_posts():
    x, y = data(num=30)
    return {ard: tiny_fit(x, y, brn.PriorSpec(ard=ard)) for ard in (False, True)}


def test_relevance_table_is_the_draws_summary(tiny_posts):
    from bayesresnet.diagnostics import hdi

    post = tiny_posts[True]
    table = post.relevance(hdi_prob=0.8)
    assert list(table.index) == ["x1", "x2", "x3"] and table.index.name == "input"
    draws = post.flat_samples()
    lam = draws[sites.ARD_SCALE]  # [4, 3]
    norm = np.linalg.norm(draws[sites.INPUT_WEIGHT], axis=-1)
    np.testing.assert_allclose(table["ard_scale_mean"], lam.mean(axis=0), rtol=1e-6)
    np.testing.assert_allclose(table["ard_scale_sd"], lam.std(axis=0, ddof=1), rtol=1e-5)
    np.testing.assert_allclose(table["weight_norm_mean"], norm.mean(axis=0), rtol=1e-6)
    band = hdi(norm, 0.8)
    np.testing.assert_allclose(table["weight_norm_hdi_low"], band[:, 0])
    np.testing.assert_allclose(table["weight_norm_hdi_high"], band[:, 1])
    assert (table["ard_scale_hdi_low"] <= table["ard_scale_mean"]).all()
    # Without ARD only the weight norm, which needs no learned scale.
    plain = tiny_posts[False].relevance()
    assert list(plain.columns) == [
        "weight_norm_mean",
        "weight_norm_sd",
        "weight_norm_hdi_low",
        "weight_norm_hdi_high",
    ]
    with pytest.raises(ValueError, match=r"`hdi_prob` must be a finite number in \(0, 1\)"):
        post.relevance(hdi_prob=1.5)


def test_relevance_survives_save_and_load(tiny_posts, tmp_path):
    post = tiny_posts[True]
    loaded = brn.load(post.save(tmp_path / "ard.npz"))
    assert loaded.prior.ard is True
    assert loaded.relevance().equals(post.relevance())


@pytest.mark.slow
def test_relevance_keeps_dataframe_input_names():
    import pandas as pd

    x, y = data(num=30)
    frame = pd.DataFrame(x, columns=["speed", "load", "temp"])
    post = tiny_fit(frame, y, ARD)
    assert list(post.relevance().index) == ["speed", "load", "temp"]


def test_relevance_figure_has_a_panel_per_measure(tiny_posts):
    fig = plots.plot_relevance(tiny_posts[True].relevance())
    assert len(fig.axes) == 2
    labels = [t.get_text() for t in fig.axes[-1].get_xticklabels()]
    assert labels == ["x1", "x2", "x3"]
    assert len(plots.plot_relevance(tiny_posts[False].relevance()).axes) == 1
    with pytest.raises(ValueError, match=r"`relevance` must have the columns of Posterior"):
        plots.plot_relevance(tiny_posts[True].relevance()[["ard_scale_sd"]])


def test_report_section_renders_the_relevance(tiny_posts):
    post = tiny_posts[True]
    summary, (uri, caption) = workflow.relevance_outputs(post)
    assert summary["hdi_prob"] == workflow.RELEVANCE_HDI_PROB
    assert [r["input"] for r in summary["table"]] == ["x1", "x2", "x3"]
    assert uri.startswith("data:image/png;base64,") and "λ_j" in caption
    parts = report._relevance_section(summary, (uri, caption))
    page = "\n".join(parts)
    assert "HalfNormal(1)" in page and report.RELEVANCE_FIGURE in page and uri in page
    first = summary["table"][0]
    assert report._fmt(first["ard_scale_mean"]) in page
    assert page.count("<tr>") == 1 + 3  # header and one row per input


@pytest.mark.slow
def test_run_report_has_the_relevance_section_only_with_ard(tiny_posts):
    analysis = workflow.analyze(tiny_posts[True], name="ard")
    assert [r["input"] for r in analysis.metrics["relevance"]["table"]] == ["x1", "x2", "x3"]
    assert report.RELEVANCE_FIGURE in analysis.figures
    page = report.render_html(analysis.metrics, analysis.figures)
    assert "<h2>Input relevance (ARD)</h2>" in page
    assert page.count(f'alt="{report.RELEVANCE_FIGURE}"') == 1  # in its section, not twice
    plain = workflow.analyze(tiny_posts[False], name="plain")
    assert "relevance" not in plain.metrics and report.RELEVANCE_FIGURE not in plain.figures
    assert "Input relevance" not in report.render_html(plain.metrics, plain.figures)


# -------------------------------------------------------------------- run spec key


def test_run_spec_prior_ard_key():
    from bayesresnet.app.runspec import SpecError, parse_runspec

    text = '[data]\nproblem = "sine"\n[prior]\nard = true\n'
    assert parse_runspec(text, path="spec.toml").prior == brn.PriorSpec(ard=True)
    with pytest.raises(SpecError, match=r"spec\.toml, line 4: `ard` in \[prior\] must be"):
        parse_runspec(text.replace("true", '"yes"'), path="spec.toml")


# ------------------------------------------------------------------ inert inputs


@pytest.mark.slow
def test_inert_inputs_get_small_scales():
    """``y = sin(2 x1) + x2²`` with three inert inputs, fitted by an ensemble of 4 MAP
    fits (1 500 Adam steps): every inert input's posterior-mean ``λ_j`` and weight norm
    lie below every active input's. A deterministic fit (seed 0); the margin is wide:
    inert scales fall to about 1e-2, active ones stay of order 1. The MAP fits keep
    shrinking the inert scales towards the joint mode at ``λ_j = 0``, so they are not
    expected to meet the convergence tolerance (that warning is ignored)."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(120, 5))
    y = np.sin(2 * x[:, :1]) + x[:, 1:2] ** 2 + 0.02 * rng.normal(size=(120, 1))
    spec = brn.ResNetSpec(5, 1, width=8, num_layers=4, basis=bases.Cubic())
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", ".* had not converged", RuntimeWarning)
        post = brn.fit(
            spec, x, y, prior=ARD, method="ensemble", num_members=4, num_steps=1500, max_steps=1500
        )
    table = post.relevance()
    for measure in ("ard_scale_mean", "weight_norm_mean"):
        active, inert = table[measure].iloc[:2], table[measure].iloc[2:]
        assert inert.max() < active.min(), (measure, table[measure].tolist())
