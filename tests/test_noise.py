"""The noise re-estimate of MAP fits (bayesresnet.infer.noise): closed forms and bias."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest
from _helpers import linear_data, linear_model
from scipy.optimize import brentq

import bayesresnet as brn
from bayesresnet import sites
from bayesresnet.infer import EnsembleConfig, run_ensemble
from bayesresnet.infer.noise import (
    NoiseProgram,
    _fixed_point,
    effective_noise,
    effective_parameters,
    noise_program,
)

PRIOR_SD = 2.0


def gamma_closed_form(x, prior_sd, noise_sd):
    """``Σ μ/(1 + μ)``, ``μ`` the eigenvalues of ``S XᵀX S / σ²`` (MacKay's γ)."""
    a = x * prior_sd / noise_sd
    mu = np.linalg.eigvalsh(a.T @ a)
    return float(np.sum(mu / (1 + mu)))


def test_gamma_is_the_trace_of_the_hat_matrix_in_both_forms():
    rng = np.random.default_rng(0)
    for n, p in ((30, 10), (10, 30)):  # the P × P form, then the N × N form
        x = rng.normal(size=(n, p))
        g = effective_parameters(x[:, None, :] / 0.3, np.full(p, PRIOR_SD))
        assert g.shape == (1,)
        assert g[0] == pytest.approx(gamma_closed_form(x, PRIOR_SD, 0.3), rel=1e-9)
    # Two outputs sharing the parameters: γ_o are the two outputs' rows of one hat matrix
    # (the P × P form with 12 rows, the N·O × N·O form with 3).
    for n in (12, 3):
        x = rng.normal(size=(n, 2, 7))
        g = effective_parameters(x, np.ones(7))
        flat = x.reshape(2 * n, 7)
        hat = flat @ np.linalg.solve(np.eye(7) + flat.T @ flat, flat.T)
        np.testing.assert_allclose(g, np.diag(hat).reshape(n, 2).sum(axis=0), rtol=1e-9)
    # Limits: a flat prior counts every (identified) parameter, a tight one none.
    x = rng.normal(size=(40, 1, 6))
    assert effective_parameters(x, np.full(6, 1e4))[0] == pytest.approx(6.0, abs=1e-6)
    assert effective_parameters(x, np.full(6, 1e-6))[0] == pytest.approx(0.0, abs=1e-6)


def test_the_fixed_point_is_unbiased_where_the_map_noise_is_biased_low():
    # A linear model with a flat prior: the fit is least squares, γ = P, and the fixed
    # point is RSS/(N − P), whose mean is σ². The MAP's RSS/N has mean σ²·(N − P)/N.
    rng = np.random.default_rng(1)
    n, p, sd, reps = 40, 15, 0.5, 2000
    x = rng.normal(size=(n, p))
    fitted, corrected = [], []
    for _ in range(reps):
        y = x @ rng.normal(size=p) + sd * rng.normal(size=n)
        beta = np.linalg.lstsq(x, y, rcond=None)[0]
        rss = float(np.sum((y - x @ beta) ** 2))
        map_sd = np.sqrt(rss / n)
        ratio, gamma = _fixed_point(x[:, None, :] / map_sd, np.full(p, 1e4), [rss / map_sd**2], n)
        assert gamma[0] == pytest.approx(p, abs=1e-3)
        fitted.append(map_sd**2)
        corrected.append((map_sd * ratio[0]) ** 2)
    # sd of RSS/(N − P)/σ² is sqrt(2/(N − P)); four Monte Carlo standard errors.
    tol = 4 * np.sqrt(2 / (n - p)) / np.sqrt(reps)
    assert abs(np.mean(corrected) / sd**2 - 1) < tol
    assert abs(np.mean(fitted) / sd**2 - 1) > 10 * tol  # the control: biased low


def test_the_fixed_point_of_several_outputs_matches_that_of_each_alone():
    # Output 1 depends on the parameters, output 2 on none: γ₂ = 0 and output 1's factor
    # is the one-output (eigenvalue) path's.
    rng = np.random.default_rng(5)
    jac = rng.normal(size=(30, 1, 12)) * 3.0
    both = np.concatenate([jac, np.zeros_like(jac)], axis=1)
    ratio1, gamma1 = _fixed_point(jac, np.ones(12), [20.0], 30)
    ratio2, gamma2 = _fixed_point(both, np.ones(12), [20.0, 24.0], 30)
    np.testing.assert_allclose(ratio2, [ratio1[0], np.sqrt(24.0 / 30)], rtol=1e-4)
    np.testing.assert_allclose(gamma2, [gamma1[0], 0.0], rtol=1e-4, atol=1e-9)
    assert 0 < gamma1[0] < 12


def hat_gammas(jac, prior_sd, c):
    """``γ_o`` from the hat matrix written out, each output's rows divided by ``c_o``."""
    n, o, p = jac.shape
    a = (jac / np.asarray(c)[None, :, None] * prior_sd).reshape(n * o, p)
    hat = a @ np.linalg.solve(np.eye(p) + a.T @ a, a.T)
    return np.diag(hat).reshape(n, o).sum(axis=0)


@pytest.mark.parametrize("scale", [1.0, 10.0, 1e4])
def test_the_root_is_found_where_the_plain_iteration_oscillates(scale):
    # More weights than rows and a tight fit: γ nears N, where c ← √(rss/(N − γ)) swings
    # around the root (at scale 1e4 it returned 3.8 for a root of 252).
    rng = np.random.default_rng(6)
    n, p = 20, 60
    jac = scale * rng.normal(size=(n, 1, p))
    ratio, gamma = _fixed_point(jac, np.ones(p), [float(n)], n)
    assert gamma[0] == pytest.approx(hat_gammas(jac, np.ones(p), ratio)[0], rel=1e-6)
    assert ratio[0] ** 2 * (n - gamma[0]) == pytest.approx(n, rel=1e-6)


@pytest.mark.parametrize("scales", [(3.0, 0.5), (3.0, 0.5, 1.5)])
def test_several_outputs_each_solve_their_own_equation_in_both_forms(scales):
    # The P × P form solves each output's equation from the eigenvalues of its precision
    # against the others' (one eigensolve per output and sweep); the outputs share every
    # parameter, so the solves are coupled.
    rng = np.random.default_rng(7)
    o = len(scales)
    for n in (4, 30):  # N·O ≤ P = 12 (kernel form), then N·O > 12 (P × P form)
        jac = rng.normal(size=(n, o, 12)) * np.array(scales)[None, :, None]
        rss = n * np.array([0.5, 2.0, 1.0][:o])
        ratio, gamma = _fixed_point(jac, np.ones(12), rss, n)
        assert not np.allclose(ratio, 1.0)
        expected = hat_gammas(jac, np.ones(12), ratio)
        np.testing.assert_allclose(gamma, expected, rtol=1e-6)
        np.testing.assert_allclose(ratio**2 * (n - expected), rss, rtol=1e-5)


def test_several_outputs_updated_at_once_reach_the_root_the_sweeps_find(monkeypatch):
    # The plain update of every output at once, where it settles (most rows left to the
    # noise), ends at the factors the output-by-output sweeps find: the same equations.
    from bayesresnet.infer import noise

    rng = np.random.default_rng(8)
    jac = rng.normal(size=(60, 3, 12)) * np.array([3.0, 0.5, 1.5])[None, :, None]
    rss = 60 * np.array([0.5, 2.0, 1.0])
    calls = []
    joint = noise._joint_iteration
    monkeypatch.setattr(noise, "_joint_iteration", lambda *a: calls.append(joint(*a)) or calls[-1])
    ratio, gamma = _fixed_point(jac, np.ones(12), rss, 60)
    assert calls and calls[0] is not None  # it settled: the sweeps did not run
    monkeypatch.setattr(noise, "JOINT_ITERATIONS", 0)  # the sweeps alone
    swept, swept_gamma = _fixed_point(jac, np.ones(12), rss, 60)
    np.testing.assert_allclose(ratio, swept, rtol=1e-5)
    np.testing.assert_allclose(gamma, swept_gamma, rtol=1e-5)
    np.testing.assert_allclose(
        ratio**2 * (60 - hat_gammas(jac, np.ones(12), ratio)), rss, rtol=1e-5
    )
    assert not np.allclose(ratio, 1.0)


@pytest.mark.parametrize("scale", [1.0, 1e4])
def test_several_outputs_near_n_fall_back_on_the_sweeps_and_solve_their_equations(
    scale, monkeypatch
):
    # γ near N (more weights than rows, a tight fit): the update of all outputs at once
    # swings around the root and gives way to the output-by-output roots.
    from bayesresnet.infer import noise

    rng = np.random.default_rng(6)
    n, p = 20, 60
    jac = scale * rng.normal(size=(n, 2, p))
    rss = np.array([n, 2.0 * n])
    calls = []
    joint = noise._joint_iteration
    monkeypatch.setattr(noise, "_joint_iteration", lambda *a: calls.append(joint(*a)) or calls[-1])
    ratio, gamma = _fixed_point(jac, np.ones(p), rss, n)
    assert calls == [None]
    np.testing.assert_allclose(gamma, hat_gammas(jac, np.ones(p), ratio), rtol=1e-6)
    np.testing.assert_allclose(ratio**2 * (n - gamma), rss, rtol=1e-5)


def test_an_update_that_will_not_settle_in_time_gives_way_at_once(monkeypatch):
    # Here the update contracts by about 0.68 per iteration: about 30 iterations to move by
    # less than 1e-6. With 10 allowed it foresees that after its third step and gives
    # way to the sweeps (each γ evaluation a P × P inverse); with 60 it settles.
    from bayesresnet.infer import noise

    rng = np.random.default_rng(0)
    n, p = 40, 60
    jac = rng.normal(size=(n, 2, p))
    rss = n * np.array([0.5, 0.7])
    evaluations, results = [], []
    gamma_function, joint = noise._gamma_function, noise._joint_iteration

    def counted(*args):
        gamma_of = gamma_function(*args)
        return lambda c: evaluations.append(1) or gamma_of(c)

    def recorded(*args):
        evaluations.clear()
        results.append(joint(*args))
        results.append(len(evaluations))
        return results[-2]

    monkeypatch.setattr(noise, "_gamma_function", counted)
    monkeypatch.setattr(noise, "_joint_iteration", recorded)
    settled, settled_gamma = _fixed_point(jac, np.ones(p), rss, n)
    assert results[0] is not None and 20 < results[1] <= 60
    monkeypatch.setattr(noise, "JOINT_ITERATIONS", 10)
    ratio, gamma = _fixed_point(jac, np.ones(p), rss, n)
    assert results[2] is None and results[3] <= 4
    np.testing.assert_allclose(ratio, settled, rtol=1e-5)
    np.testing.assert_allclose(ratio**2 * (n - hat_gammas(jac, np.ones(p), ratio)), rss, rtol=1e-5)


def test_the_cholesky_inverse_is_the_inverse_and_lu_takes_over_where_it_fails():
    from bayesresnet.infer.noise import _spd_inverse

    rng = np.random.default_rng(9)
    a = rng.normal(size=(30, 30))
    spd = a @ a.T + np.eye(30)
    np.testing.assert_allclose(_spd_inverse(spd) @ spd, np.eye(30), atol=1e-9)
    indefinite = spd - 40 * np.eye(30)  # symmetric, not positive definite
    np.testing.assert_allclose(_spd_inverse(indefinite) @ indefinite, np.eye(30), atol=1e-8)


def noisy_linear_model(x, y=None):
    theta = numpyro.sample("theta", dist.Normal(jnp.zeros(x.shape[1]), PRIOR_SD).to_event(1))
    sigma = numpyro.sample(sites.NOISE_SCALE, dist.HalfNormal(jnp.ones(1)).to_event(1))
    with numpyro.plate(sites.DATA_PLATE, x.shape[0]):
        numpyro.sample(sites.OBS, dist.Normal((x @ theta)[:, None], sigma).to_event(1), obs=y)


def ridge_members(map_sds=(0.2, 0.35)):
    """Linear data and "members": the ridge fits at the noise sds ``map_sds`` (any fit
    will do; γ is taken at it)."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=(25, 8))
    y = (x @ rng.normal(size=8) + 0.3 * rng.normal(size=25))[:, None]
    params = {"theta": [], sites.NOISE_SCALE: []}
    for map_sd in map_sds:
        a = x.T @ x / map_sd**2 + np.eye(8) / PRIOR_SD**2
        params["theta"].append(np.linalg.solve(a, x.T @ y[:, 0] / map_sd**2))
        params[sites.NOISE_SCALE].append([np.log(map_sd)])  # unconstrained: log
    return x, y, {k: jnp.asarray(np.array(v), jnp.float32) for k, v in params.items()}


def test_effective_noise_of_a_linear_model_solves_mackays_equation():
    x, y, params = ridge_members()
    refit = effective_noise(noisy_linear_model, jnp.asarray(x, jnp.float32), y, params)
    assert refit.reason.startswith("effective")
    np.testing.assert_allclose(refit.map_sigma[:, 0], [0.2, 0.35], rtol=1e-5)
    for m in range(2):
        rss = float(np.sum((y[:, 0] - x @ np.asarray(params["theta"][m])) ** 2))

        def equation(s, rss=rss):  # σ²(N − γ(σ)) = RSS
            return s**2 * (25 - gamma_closed_form(x, PRIOR_SD, s)) - rss

        expected = brentq(equation, 1e-3, 10.0, xtol=1e-10)
        assert refit.sigma[m, 0] == pytest.approx(expected, rel=1e-3)
        gamma = gamma_closed_form(x, PRIOR_SD, expected)
        assert refit.gamma[m, 0] == pytest.approx(gamma, rel=1e-3)


def test_the_refit_compiled_ahead_gives_what_it_gives_compiled_on_the_way():
    """The ensemble compiles the refit while its members train: the same program, the
    same numbers; one made for another number of members is not used."""
    x, y, params = ridge_members((0.2, 0.35, 0.5))
    x = jnp.asarray(x, jnp.float32)
    want = effective_noise(noisy_linear_model, x, y, params)
    shapes = jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), params)
    program = noise_program(noisy_linear_model, x, y, shapes, ahead=True)
    assert isinstance(program, NoiseProgram) and program.num_members == 3
    got = effective_noise(noisy_linear_model, x, y, params, program=program)
    for name in ("sigma", "map_sigma", "gamma"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    two = jax.tree_util.tree_map(lambda v: v[:2], params)  # a member left out (diverged)
    np.testing.assert_array_equal(
        effective_noise(noisy_linear_model, x, y, two, program=program).sigma, want.sigma[:2]
    )


@pytest.mark.slow
@pytest.mark.parametrize("polish", ["none", "lbfgs"])
def test_the_ensemble_compiles_its_programs_ahead_and_uses_them(monkeypatch, key, polish):
    """On one device the Adam block, the polish's start and block, and then the noise
    re-estimate are sent to compile before the Adam phase runs, and the re-estimate
    uses the program made then (none is made after training)."""
    from bayesresnet.infer import core
    from bayesresnet.infer import noise as noise_module

    sent, made_late = [], []
    real_compile, real_program = core.compile_ahead, noise_module.noise_program

    def compile_ahead(program, *args, **kwargs):
        sent.append(program)
        return real_compile(program, *args, **kwargs)

    def noise_program(*args, **kwargs):
        made_late.append(kwargs)
        return real_program(*args, **kwargs)

    monkeypatch.setattr(core, "compile_ahead", compile_ahead)
    monkeypatch.setattr(noise_module, "compile_ahead", compile_ahead)
    monkeypatch.setattr(noise_module, "noise_program", noise_program)  # effective_noise's own
    x, y, _ = ridge_members()
    config = EnsembleConfig(num_members=2, num_steps=50, polish=polish, polish_steps=20)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        result = run_ensemble(key, noisy_linear_model, jnp.asarray(x, jnp.float32), y, config)
    assert len(sent) == (4 if polish == "lbfgs" else 2)
    assert made_late == []
    assert result.extra["noise_refit"].startswith("effective")


@pytest.mark.slow
def test_the_ensemble_replaces_each_members_noise_and_keeps_the_map_where_it_cannot(key):
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(25, 8)), jnp.float32)
    y = jnp.asarray((np.asarray(x) @ rng.normal(size=8) + 0.3 * rng.normal(size=25))[:, None])
    config = EnsembleConfig(num_members=3, num_steps=2000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        refitted = run_ensemble(key, noisy_linear_model, x, y, config)
        fitted = run_ensemble(key, noisy_linear_model, x, y, EnsembleConfig(3, 2000, noise="map"))
    np.testing.assert_allclose(
        refitted.extra["member_map_noise"], fitted.samples[sites.NOISE_SCALE][0], rtol=1e-6
    )
    sigma = refitted.samples[sites.NOISE_SCALE][0, :, 0]
    gamma = np.asarray(refitted.extra["member_effective_params"])[:, 0]
    rss = ((np.asarray(y) - np.asarray(x) @ refitted.samples["theta"][0].T) ** 2).sum(axis=0)
    np.testing.assert_allclose(sigma**2 * (25 - gamma), rss, rtol=1e-3)
    assert np.all(sigma > fitted.samples[sites.NOISE_SCALE][0, :, 0])  # 8 weights, 25 rows
    assert "noise_refit" not in fitted.extra and "noise_s" in refitted.timings
    # Where it does not apply the MAP noise stays, and the record says why.
    xl, yl = linear_data()  # no noise site
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        boot = run_ensemble(key, noisy_linear_model, x, y, EnsembleConfig(2, 50, bootstrap=True))
        plain = run_ensemble(key, linear_model, xl, yl, EnsembleConfig(2, 50))
    assert boot.extra["noise_refit"].startswith("map: bootstrap")
    assert plain.extra["noise_refit"] == "map: the model has no noise site 'noise_scale'"


def test_the_distance_to_the_optimum_is_the_fits_change_to_it_in_noise_sds():
    """For a linear model the Gauss–Newton step is exact: at the ridge fit (the optimum
    at its noise sd) the distance is 0; moved off it by Δ, it is the fit's change x·Δ back
    to it, in the re-estimated noise sd."""
    x, y, params = ridge_members()
    xj = jnp.asarray(x, jnp.float32)
    at = effective_noise(noisy_linear_model, xj, y, params, distance=True)
    assert np.all(at.distance < 1e-3)
    delta = np.array([[0.05] * 8, [-0.1, 0.08] * 4])
    off = {**params, "theta": params["theta"] + jnp.asarray(delta, jnp.float32)}
    refit = effective_noise(noisy_linear_model, xj, y, off, distance=True)
    for m in range(2):
        want = np.sqrt(np.mean((x @ delta[m]) ** 2)) / refit.sigma[m, 0]
        assert refit.distance[m, 0] == pytest.approx(want, rel=2e-3)
    assert effective_noise(noisy_linear_model, xj, y, params).distance is None  # not asked


def test_members_whose_fit_has_settled_have_converged_though_their_loss_still_falls(key):
    """With a loss tolerance no fit meets, members whose fit is within prediction_tol
    noise sds of their optimum's have converged; a short run, far from it, has not, and
    warns; prediction_tol=0 leaves the loss test alone."""
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(25, 8)), jnp.float32)
    y = jnp.asarray((np.asarray(x) @ rng.normal(size=8) + 0.3 * rng.normal(size=25))[:, None])
    strict = {"num_members": 3, "convergence_tol": 1e-12, "max_steps": None}
    settled = run_ensemble(key, noisy_linear_model, x, y, EnsembleConfig(num_steps=2000, **strict))
    distance = np.asarray(settled.extra["member_fit_distance"])
    assert np.all(distance < 0.25) and all(settled.extra["member_converged"])
    with pytest.warns(
        RuntimeWarning, match="3 ensemble member.s. had not converged after 90 steps"
    ) as caught:
        short = run_ensemble(key, noisy_linear_model, x, y, EnsembleConfig(num_steps=30, **strict))
    far = np.asarray(short.extra["member_fit_distance"])
    assert np.all(far > 0.25)
    lo, hi = f"{far.max(axis=1).min():.2g}", f"{far.max(axis=1).max():.2g}"
    assert f"(their fits {lo}–{hi} noise sds from their optima's, above prediction_tol=0.25;" in (
        str(caught[0].message)
    )
    assert not any(short.extra["member_converged"])
    with pytest.warns(RuntimeWarning, match="had not converged"):
        off = run_ensemble(
            key, noisy_linear_model, x, y,
            EnsembleConfig(num_steps=2000, prediction_tol=0.0, **strict),
        )  # fmt: skip
    assert not any(off.extra["member_converged"]) and "member_fit_distance" not in off.extra
    with pytest.raises(ValueError, match="prediction_tol"):
        EnsembleConfig(prediction_tol=-0.1)
    # The check names both tests where the distance was measured, the loss alone elsewhere.
    from types import SimpleNamespace

    from bayesresnet.infer import ensemble
    from bayesresnet.infer.base import Estimators

    def target(result):
        post = SimpleNamespace(settings=result.settings, extra=result.extra, x_train=x)
        found = {c.name: c for c in ensemble.checks(post, Estimators(None, None))}
        return found["members converged"]

    assert target(settled).status == "pass"
    assert "within 0.25 noise sds of its optimum" in target(settled).threshold
    assert target(off).threshold == "all (tolerance 1e-12 per observation)"


@pytest.mark.filterwarnings("ignore:.* ensemble member.s. had not converged")
def test_anchored_polished_or_too_costly_members_are_not_measured_by_their_distance(
    key, monkeypatch
):
    """Anchored members' priors are not centred at 0, a polish decides by its own
    tolerances, and a distance costing more than MAX_DISTANCE_FLOPS is not computed: the
    loss test alone then."""
    from bayesresnet.infer import noise as noise_module

    x, y, params = ridge_members()
    xj = jnp.asarray(x, jnp.float32)
    for extra in ({"anchored": True}, {"polish": "lbfgs", "polish_steps": 20}):
        config = EnsembleConfig(num_members=2, num_steps=200, **extra)
        result = run_ensemble(key, noisy_linear_model, xj, y, config)
        assert "member_fit_distance" not in result.extra, extra
    assert effective_noise(noisy_linear_model, xj, y, params, distance=True).distance is not None
    # 25 rows, 8 parameters: 8² · 25 = 1 600 operations.
    monkeypatch.setattr(noise_module, "MAX_DISTANCE_FLOPS", 1_599)
    assert effective_noise(noisy_linear_model, xj, y, params, distance=True).distance is None


@pytest.mark.slow
def test_student_t_and_oversized_jacobians_keep_the_map_noise(monkeypatch):
    x = np.linspace(-1, 1, 12)[:, None]
    spec = brn.ResNetSpec(1, 1, width=2, num_layers=2, basis=brn.bases.Linear())
    options = {"method": "ensemble", "num_members": 2, "num_steps": 20}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        prior = brn.PriorSpec(likelihood="student_t")
        post = brn.fit(spec, x, np.sin(3 * x), prior=prior, **options)
        assert post.extra["noise_refit"] == "map: the likelihood is not Normal"
        monkeypatch.setattr("bayesresnet.infer.noise.MAX_JACOBIAN_ENTRIES", 100)
        post = brn.fit(spec, x, np.sin(3 * x), **options)
    assert post.extra["noise_refit"].startswith("map: the Jacobian (")
    with pytest.raises(ValueError, match="noise"):
        EnsembleConfig(noise="unbiased")


def test_the_refit_runs_on_every_member_at_once_without_recompiling_per_member(key):
    # jax.lax.map inside one jit: the model is traced once for all members.
    calls = []

    def counted(x, y=None):
        calls.append(1)
        return noisy_linear_model(x, y)

    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.normal(size=(10, 3)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(10, 1)), jnp.float32)
    params = {
        "theta": jax.random.normal(key, (5, 3)),
        sites.NOISE_SCALE: jnp.zeros((5, 1)),
    }
    effective_noise(counted, x, y, params)
    assert len(calls) < 10  # a handful of abstract traces, not one per member and site


@pytest.mark.slow
def test_the_row_by_row_jacobian_is_the_jacobian_of_the_network(key):
    # The re-estimate forms J row by row (reverse mode per row); forward mode over the whole
    # batch is the reference. Two outputs, ARD, log-transformed inputs and outputs.
    from numpyro.infer.util import constrain_fn

    from bayesresnet.infer.core import sample_prior_unconstrained
    from bayesresnet.infer.noise import _observation, _row_jacobian, _structure, _trace_at
    from bayesresnet.model import fit_scaler, make_model

    rng = np.random.default_rng(5)
    x = rng.uniform(1.0, 100.0, size=(30, 3))
    y = np.stack([np.log(x).sum(axis=1), np.exp(-x[:, 0] / 50)], axis=1) + 0.1
    spec = brn.ResNetSpec(3, 2, width=4, num_layers=3, basis=brn.bases.Cubic())
    scaler = fit_scaler(x, y, x_log=[True, True, False], y_log=[False, True])
    model = make_model(spec, brn.PriorSpec(ard=True), scaler)
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    u = jax.tree_util.tree_map(lambda v: v[0], sample_prior_unconstrained(key, model, x, y, 1))
    names, num_params = _structure(model, x, y, u)
    values = constrain_fn(model, (x, y), {}, u)
    theta, unravel = jax.flatten_util.ravel_pytree({k: values[k] for k in names})

    def loc_at(t):
        return _observation(_trace_at(model, values | unravel(t), x, y))[0]

    expected = jax.jacfwd(loc_at)(theta)
    got = _row_jacobian(model, values, names, x, y)
    assert got.shape == (30, 2, num_params) == expected.shape
    assert float(jnp.abs(expected).max()) > 0.1  # a Jacobian that says something
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5 * float(jnp.abs(expected).max()))


def test_parameter_gammas_are_the_hat_diagonal_in_both_forms():
    """``γᵢ = 1 − ((I + AᵀA)⁻¹)ᵢᵢ`` with the noise sd scaled by ``ratio``, from either form,
    and they sum to the γ of effective_parameters at that noise."""
    from bayesresnet.infer.noise import parameter_gammas

    rng = np.random.default_rng(4)
    for n, p in ((30, 10), (10, 30)):  # the P × P form, then the N × N form
        jac = rng.normal(size=(n, 1, p)) / 0.3
        prior_sd = rng.uniform(0.5, 2.0, size=p)
        got = parameter_gammas(jac, prior_sd, np.array([1.5]))
        a = jac[:, 0, :] / 1.5 * prior_sd
        expected = 1.0 - np.diag(np.linalg.inv(np.eye(p) + a.T @ a))
        np.testing.assert_allclose(got, expected, rtol=1e-9, atol=1e-12)
        assert got.sum() == pytest.approx(effective_parameters(jac / 1.5, prior_sd)[0], rel=1e-9)


def test_the_evidence_factors_are_mackays_for_each_group():
    """A linear map ``A = a·I`` and unit prior sds: ``γᵢ = a²/(1 + a²)`` for every weight,
    so each group's factor is ``√(Σ θᵢ² / Σ γᵢ)`` over its own weights; a noise sd twice
    the MAP's halves ``A``: fewer parameters determined, a larger factor."""
    from bayesresnet.infer.noise import evidence_factors, parameter_gammas

    a, p = 2.0, 5
    theta = np.array([1.0, -2.0, 0.5, 3.0, 1.0])
    labels = ["weight_scale"] * 3 + ["output_scale"] * 2
    jac = (a * np.eye(p))[:, None, :]  # [N, O, P]
    for ratio in (1.0, 2.0):
        gammas = parameter_gammas(jac, np.ones(p), np.array([ratio]))
        factors = evidence_factors(theta, np.ones(p), gammas, labels)
        g = (a / ratio) ** 2 / (1 + (a / ratio) ** 2)
        np.testing.assert_allclose(gammas, g, rtol=1e-12)
        assert factors["weight_scale"] == pytest.approx(np.sqrt((theta[:3] ** 2).sum() / (3 * g)))
        assert factors["output_scale"] == pytest.approx(np.sqrt((theta[3:] ** 2).sum() / (2 * g)))
    assert evidence_factors(theta, np.ones(p), gammas, [None] * p) == {}


def output_layer_model(x, y=None):
    """noisy_linear_model with its weights under the output layer's site name."""
    theta = numpyro.sample(
        sites.OUTPUT_WEIGHT, dist.Normal(jnp.zeros(x.shape[1]), PRIOR_SD).to_event(1)
    )
    sigma = numpyro.sample(sites.NOISE_SCALE, dist.HalfNormal(jnp.ones(1)).to_event(1))
    with numpyro.plate(sites.DATA_PLATE, x.shape[0]):
        numpyro.sample(sites.OBS, dist.Normal((x @ theta)[:, None], sigma).to_event(1), obs=y)


def test_the_evidence_for_the_prior_scale_is_mackays_update_at_the_refitted_noise():
    """One group (the output weights, PriorSpec's output_scale): ``c² = Σ(θ/s)² / γ``, γ
    at the re-estimated noise sd; without ``evidence`` nothing is computed."""
    x, y, params = ridge_members()
    params = {sites.OUTPUT_WEIGHT: params["theta"], sites.NOISE_SCALE: params[sites.NOISE_SCALE]}
    xj = jnp.asarray(x, jnp.float32)
    refit = effective_noise(output_layer_model, xj, y, params, evidence=True)
    assert set(refit.prior_factors) == {"output_scale"}
    for m in range(2):
        theta = np.asarray(params[sites.OUTPUT_WEIGHT][m], np.float64)
        gamma = gamma_closed_form(x, PRIOR_SD, refit.sigma[m, 0])
        expected = np.sqrt(np.sum((theta / PRIOR_SD) ** 2) / gamma)
        assert refit.prior_factors["output_scale"][m] == pytest.approx(expected, rel=1e-3)
    assert effective_noise(output_layer_model, xj, y, params).prior_factors is None
    # A site no PriorSpec scale sets belongs to no group.
    x, y, params = ridge_members()
    assert effective_noise(noisy_linear_model, xj, y, params, evidence=True).prior_factors == {}


def test_prior_evidence_must_be_a_bool():
    with pytest.raises(TypeError, match="prior_evidence"):
        EnsembleConfig(prior_evidence="yes")
