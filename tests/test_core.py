"""The functional engine core: the block driver, the chain driver (blocks, thinning, devices),
progress, the MAP start and the optimizer."""

import dataclasses
import subprocess
import sys
import textwrap
from concurrent.futures import Future

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import optax
import pytest
from _helpers import refit_case
from numpyro import handlers
from numpyro.infer.util import potential_energy

from bayesresnet import sites
from bayesresnet.infer.base import Timer, progress_bar, show_progress
from bayesresnet.infer.core import (
    ARD_START,
    EnsembleConfig,
    _config_optimizer,
    batched_state,
    block_program,
    compile_ahead,
    config_settings,
    final_losses,
    make_optimizer,
    map_start,
    member_input_call,
    member_inputs,
    over_members,
    polish_members,
    polish_programs,
    run_blocks,
    run_chains,
    sample_prior_unconstrained,
    scan_chain,
    train_members,
)


def random_walk(key, state):
    """A Gaussian random walk: the state after n steps is the sum of n normal draws."""
    new = state + jax.random.normal(key, state.shape)
    return new, {"step": new}


def test_blocks_and_thinning_do_not_change_the_draws():
    keys = jax.random.split(jax.random.key(0), 3)
    init = jnp.zeros((3, 2))
    collect = lambda state, info: state  # noqa: E731
    _, one = run_chains(random_walk, init, keys, 12, collect=collect, thinning=2)
    _, blocks = run_chains(random_walk, init, keys, 12, collect=collect, thinning=2, num_blocks=5)
    assert one.shape == (3, 12, 2)
    np.testing.assert_array_equal(np.asarray(one), np.asarray(blocks))
    # Thinning keeps every 2nd step: the same keys without thinning give the superset.
    _, every = run_chains(random_walk, init, keys, 24, collect=collect)
    np.testing.assert_allclose(np.asarray(every)[:, 1::2], np.asarray(one), rtol=1e-6)


def test_progress_is_reported_by_block_and_silent_by_default(capsys):
    keys = jax.random.split(jax.random.key(0), 2)
    collect = lambda state, info: state  # noqa: E731
    with progress_bar(40, "walk") as bar:
        run_chains(random_walk, jnp.zeros((2, 1)), keys, 20, collect=collect, progress=bar)
    assert capsys.readouterr().err == ""
    with show_progress("lines"), progress_bar(40, "walk") as bar:  # 2 chains × 20 steps
        run_chains(
            random_walk, jnp.zeros((2, 1)), keys, 20, collect=collect, progress=bar, num_blocks=4
        )
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[-1].startswith("walk: 100% (40/40")
    assert len(lines) == 4  # one line per block of 25 %
    with pytest.raises(ValueError, match=r"`mode` must be one of"):
        with show_progress("loud"):
            pass


@pytest.mark.slow
def test_chains_are_sharded_over_two_devices():
    """In a process with two (host) devices the chains run sharded, with the same draws."""
    code = textwrap.dedent(
        """
        import os
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        os.environ["JAX_PLATFORMS"] = "cpu"
        import jax, jax.numpy as jnp, numpy as np
        from bayesresnet.infer.core import run_chains, shard_leading
        assert jax.device_count() == 2
        def walk(key, s):
            new = s + jax.random.normal(key, s.shape)
            return new, None
        keys = jax.random.split(jax.random.key(0), 4)
        states, out = run_chains(walk, jnp.zeros((4, 3)), keys, 5, collect=lambda s, i: s)
        assert len(out.sharding.device_set) == 2, out.sharding
        ref = jnp.cumsum(jax.vmap(lambda k: jax.vmap(
            lambda i: jax.random.normal(jax.random.fold_in(k, i), (3,)))(jnp.arange(5)))(keys),
            axis=1)
        np.testing.assert_allclose(np.asarray(out), np.asarray(ref), rtol=1e-5, atol=1e-6)
        print("sharded ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "sharded ok" in result.stdout


@pytest.mark.slow
def test_a_polished_ensemble_runs_sharded_over_two_devices():
    """Over two (host) devices the members are sharded and each L-BFGS block takes the
    carry the block before handed back, however it came back laid out (it failed with
    "compiled for input shardings that disagree" from the second block on)."""
    code = textwrap.dedent(
        """
        import os, warnings
        os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=2"
        os.environ["JAX_PLATFORMS"] = "cpu"
        warnings.simplefilter("ignore")
        import jax, numpy as np
        import bayesresnet as brn
        assert jax.device_count() == 2
        data = brn.problems.get("sine").sample(0, 60, 10, noise=0.05)
        spec = brn.ResNetSpec(1, 1, width=4, num_layers=2)
        post = brn.fit(spec, data, method="ensemble", num_members=4, num_steps=200,
                       polish="lbfgs", polish_steps=30)
        print("iterations", post.extra["member_polish_iterations"])
        assert all(np.isfinite(np.asarray(v)).all() for v in post.samples.values())
        print("polished ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stderr[-2000:]
    # 30 iterations in blocks of fewer: the second block ran on the first one's carry.
    assert "iterations [30, 30, 30, 30]" in result.stdout, result.stdout
    assert "polished ok" in result.stdout


def counting_block(carry, start, length):
    """``length`` steps from ``start``: the carry counts steps, the output names them."""
    return carry + length, start + jnp.arange(length)


def test_run_blocks_cuts_the_run_and_stops_when_told():
    carry, outs = run_blocks(counting_block, 0, 10, block_size=4)
    assert [np.asarray(o).tolist() for o in outs] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert int(carry) == 10
    carry, outs = run_blocks(counting_block, 0, 10, block_size=4, stop=lambda out, done: done >= 8)
    assert len(outs) == 2 and int(carry) == 8
    timer = Timer()
    carry, outs = run_blocks(counting_block, 0, 10, num_blocks=3, timer=timer, compile_label="c")
    assert [len(o) for o in outs] == [4, 4, 2] and int(carry) == 10
    assert set(timer.times) == {"c", "run_s"}


def test_run_blocks_runs_a_block_compiled_ahead_without_tracing_it_again():
    traces = []

    def block(carry, start, length):
        traces.append(length)
        return counting_block(carry, start, length)

    ahead = {4: compile_ahead(block_program(block, 4), 0, 0)}
    assert traces == [4]  # traced by the caller; XLA compiles it in the background
    timer = Timer()
    carry, outs = run_blocks(block, 0, 10, block_size=4, ahead=ahead, timer=timer,
                             compile_label="c")  # fmt: skip
    assert [np.asarray(o).tolist() for o in outs] == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert int(carry) == 10
    assert traces == [4, 2]  # only the shorter last block was traced (and compiled) here
    assert set(timer.times) == {"c", "run_s"}


def test_scan_chain_is_the_loop_of_run_chains():
    """One chain scanned by hand gives the draws run_chains gives that chain."""
    keys = jax.random.split(jax.random.key(3), 2)
    collect = lambda state, info: state  # noqa: E731
    _, together = run_chains(random_walk, jnp.zeros((2, 1)), keys, 6, collect=collect, thinning=3)
    _, alone = scan_chain(random_walk, keys[1], jnp.zeros(1), 0, 6, collect=collect, thinning=3)
    np.testing.assert_array_equal(np.asarray(together[1]), np.asarray(alone))


def quadratic_model(x, y=None):
    """θ ~ N(0, I₂), y ~ N(x·θ, 0.5): a MAP fit is a least-squares problem."""
    theta = numpyro.sample("theta", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        numpyro.sample("y", dist.Normal(x @ theta, 0.5), obs=y)


def quadratic_data(rows: int = 12):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 2)).astype(np.float32)
    return jnp.asarray(x), jnp.asarray(x @ np.array([1.0, -1.0], np.float32))


@pytest.mark.slow
def test_map_start_keeps_the_lowest_losses_and_names_the_fix():
    x, y = quadratic_data()
    key = jax.random.key(0)
    start = map_start(key, quadratic_model, x, y, num_starts=2, num_members=5, num_steps=30,
                      learning_rate=1e-2)  # fmt: skip
    members = train_members(key, quadratic_model, x, y, EnsembleConfig(num_members=5, num_steps=30))
    final = np.asarray(members.losses[:, -1])
    np.testing.assert_array_equal(start.final_loss, np.sort(final)[:2])
    best = int(np.argmin(final))
    np.testing.assert_array_equal(start.params["theta"][0], members.params["theta"][best])
    assert start.params["theta"].shape == (2, 2) and start.num_members == 5
    assert start.spread.shape == (5, 2)
    bad_x = x.at[0, 0].set(1e30)  # the loss overflows float32 for every member
    with pytest.raises(FloatingPointError, match=r"only 0 of 2 MAP starts are finite; lower"):
        map_start(key, quadratic_model, bad_x, y, num_starts=2, num_steps=5, learning_rate=1e-2)


def test_a_users_optax_optimizer_is_the_one_used():
    """A zero learning rate leaves every member at its prior draw; the default moves them."""
    x, y = quadratic_data()
    key = jax.random.key(1)
    frozen = EnsembleConfig(num_members=3, num_steps=20, optimizer=optax.sgd(0.0))
    u0, _, _ = member_inputs(key, quadratic_model, x, y, frozen)
    kept = train_members(key, quadratic_model, x, y, frozen)
    np.testing.assert_array_equal(np.asarray(kept.params["theta"]), np.asarray(u0["theta"]))
    moved = train_members(key, quadratic_model, x, y, EnsembleConfig(num_members=3, num_steps=20))
    assert np.all(np.abs(np.asarray(moved.params["theta"]) - np.asarray(u0["theta"])) > 1e-3)
    sgd = optax.sgd(0.1)
    assert make_optimizer(1e-2, 10, optimizer=sgd) is sgd
    with pytest.raises(TypeError, match=r"`optimizer` must be an optax.GradientTransformation"):
        EnsembleConfig(optimizer="adam")
    assert config_settings(frozen)["optimizer"] == "custom optax.GradientTransformation"
    assert config_settings(EnsembleConfig())["optimizer"] is None


def test_the_map_fits_bar_counts_the_steps_of_training_on(capsys):
    """Training on after ``num_steps`` (a ``converged`` test) is counted by the bar: it
    reaches 100 % at ``max_steps``, not at ``num_steps`` with two thirds still to run, and
    ends at 100 % when the members settle first."""
    x, y = quadratic_data()
    key = jax.random.key(2)
    config = EnsembleConfig(num_members=2, num_steps=20, max_steps=60)
    for settled, steps in ((False, 60), (True, 20)):
        with show_progress("lines"):
            members = train_members(
                key, quadratic_model, x, y, config, converged=lambda losses, s=settled: s
            )
        assert members.losses.shape == (2, steps)
        lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.startswith("MAP fits")]
        assert lines[-1].startswith("MAP fits: 100% (120/120,"), lines
        assert sum("100%" in ln for ln in lines) == 1


@pytest.mark.slow
def test_the_adam_block_is_sent_to_compile_before_the_members_starts_are_drawn(monkeypatch):
    """On one device the Adam block is traced from the starts' shapes and sent to compile
    first; only then does the starts' program (keys, starts, optimizer states in one)
    compile and run, and what it draws is what member_inputs and the optimizer give."""
    from bayesresnet.infer import core

    events, real_compile, real_call = [], core.compile_ahead, core.TracedCall.__call__

    def compile_ahead(program, *args):
        events.append("sent")
        return real_compile(program, *args)

    def call(self):
        events.append("drawn")
        return real_call(self)

    monkeypatch.setattr(core, "compile_ahead", compile_ahead)
    monkeypatch.setattr(core.TracedCall, "__call__", call)
    x, y = quadratic_data()
    key = jax.random.key(4)
    config = EnsembleConfig(num_members=3, num_steps=20)
    train_members(key, quadratic_model, x, y, config)
    assert events[:2] == ["sent", "drawn"]
    # One program: the starts as member_inputs draws them, the states as the optimizer's
    # init gives them, and with batches one key per member from fold_in(key, 1).
    optimizer = core._config_optimizer(config, {"theta": (2,)})
    u0, _, _ = member_inputs(key, quadratic_model, x, y, config)
    for batch in (None, 4):
        call = member_input_call(
            key, quadratic_model, x, y, config,
            init=lambda u, b=batch: batched_state(key, optimizer, u, b, x.shape[0]),
        )  # fmt: skip
        drawn = call()
        assert jax.tree.map(lambda a: (a.shape, a.dtype), call.shapes) == jax.tree.map(
            lambda a: (a.shape, a.dtype), drawn
        )
        np.testing.assert_array_equal(np.asarray(drawn[0]["theta"]), np.asarray(u0["theta"]))
        state = drawn[3] if batch is None else drawn[3][0]
        expected = jax.vmap(optimizer.init)(u0)
        for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(expected), strict=True):
            np.testing.assert_array_equal(np.asarray(got), np.asarray(want))
    keys = jax.random.split(jax.random.fold_in(key, 1), 3)
    np.testing.assert_array_equal(
        np.asarray(jax.random.key_data(drawn[3][1])), np.asarray(jax.random.key_data(keys))
    )


@pytest.mark.filterwarnings("ignore:.*had not converged:RuntimeWarning")  # 60 steps
@pytest.mark.slow
@pytest.mark.parametrize(
    "method",
    # the ensemble trains with train_members directly; NUTS and SVI start from it
    ["ensemble", "ensemble_lbfgs", "nuts", "svi"],
)
def test_draws_are_the_same_with_progress_shown_or_not(method, capsys):
    """Progress decides what is printed, never the compiled blocks: bit-identical draws.

    ``train_members`` once ran ten blocks with progress and one without (a different
    compiled program); at these tiny sizes the two happened to agree, so this guards the
    property rather than reproducing the default-size difference.
    """
    import bayesresnet as brn

    ds = brn.problems.get("sine").sample(0, 20, 5, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2, basis=brn.bases.make_basis("linear"))
    options = {
        "nuts": dict(num_warmup=20, num_samples=20, num_chains=1, init_steps=40, max_tree_depth=4),
        "ensemble": dict(num_members=2, num_steps=60),
        "ensemble_lbfgs": dict(num_members=2, num_steps=60, polish="lbfgs", polish_steps=20),
        "svi": dict(num_steps=40, check_every=20, init_steps=40, num_draws=20),
    }[method]
    draws = {}
    for mode in ("off", "lines"):
        with show_progress(mode):
            fit_method = method.split("_")[0]
            draws[mode] = brn.fit(spec, ds, method=fit_method, seed=3, **options).samples
    err = capsys.readouterr().err
    assert "MAP fits: 100%" in err  # progress was shown the second time
    assert ("L-BFGS polish: 100%" in err) == ("polish" in options)  # also when it stops early
    assert ("noise re-estimate: 100% (2/2" in err) == (fit_method == "ensemble")
    assert draws["off"].keys() == draws["lines"].keys()
    for name in draws["off"]:
        np.testing.assert_array_equal(draws["off"][name], draws["lines"][name], err_msg=name)


# ------------------------------------------------------------------------ the L-BFGS polish


def sine_problem():
    """A tiny ResNet on 20 noisy sine points: a non-convex loss Adam leaves unfinished."""
    import bayesresnet as brn

    ds = brn.problems.get("sine").sample(0, 20, 5, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2, basis=brn.bases.make_basis("linear"))
    scaler = brn.fit_scaler(ds.x_train, ds.y_train)
    x, y = scaler.centre_data(ds.x_train, ds.y_train)
    model = brn.make_model(spec, brn.PriorSpec(), scaler.centred())
    return model, jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)


def member_gradient_norms(model, x, y, params) -> np.ndarray:
    """``‖∇U‖₂`` of each member of ``params`` ``{site: [M, ...]}`` (plain members)."""

    def norm(u):
        grad = jax.grad(lambda u: potential_energy(model, (x, y), {}, u))(u)
        return optax.tree.norm(grad)

    return np.asarray(jax.vmap(norm)(params))


@pytest.mark.slow
def test_lbfgs_polish_lowers_the_loss_and_the_gradient_adam_left():
    model, x, y = sine_problem()
    key = jax.random.key(0)
    adam = EnsembleConfig(num_members=3, num_steps=200)
    alone = train_members(key, model, x, y, adam)
    polished = train_members(key, model, x, y, dataclasses.replace(adam, polish="lbfgs"))
    # The Adam phase is the same program with or without the polish.
    np.testing.assert_array_equal(np.asarray(alone.losses), np.asarray(polished.losses))
    assert alone.polish is None and polished.polish.losses.shape[0] == 3
    before, after = final_losses(alone), final_losses(polished)
    np.testing.assert_array_equal(after, polished.polish.losses[:, -1])
    # 200 Adam steps leave each member well short of its optimum: L-BFGS lowers every
    # member's loss by more than 1 nat, and its gradient norm at least fourfold. Each
    # member stops on the relative-loss test, so the gradient it stops at varies: from
    # 15-19, 0.17-3.4 over keys 0-4, members vectorized or one after another.
    assert np.all(polished.polish.converged)
    assert np.all(after < before - 1.0), (before, after)
    grad_before = member_gradient_norms(model, x, y, alone.params)
    grad_after = member_gradient_norms(model, x, y, polished.params)
    # The recorded norm is that of the line search's float32 gradient, in another program.
    np.testing.assert_allclose(polished.polish.grad_norm, grad_after, rtol=1e-2)
    assert np.all(grad_after < 0.25 * grad_before), (grad_before, grad_after)
    assert np.all(polished.polish.iterations >= 1)
    assert np.all(polished.polish.evaluations >= polished.polish.iterations)
    # Its losses never rise (refused steps are not taken).
    assert np.all(np.diff(polished.polish.losses, axis=1) <= 0)


def test_over_members_gives_what_vmap_gives_with_unmapped_and_absent_arguments():
    """Members one after another (the CPU) return what ``vmap`` returns, each member
    getting its own slice of the mapped arguments, the unmapped ones whole, ``None`` kept;
    a cond whose branch differs between members takes each member's own branch."""

    def fn(u, shared, absent, scale):
        assert absent is None
        total = jax.lax.cond(u["a"][0] > 0, lambda: u["a"].sum(), lambda: -u["a"].sum())
        return {"out": u["a"] * scale + shared}, total

    u = {"a": jnp.asarray([[1.0, 2.0], [-3.0, 4.0], [5.0, -6.0]])}
    shared, scale = jnp.asarray([10.0, 20.0]), jnp.asarray([1.0, 2.0, 3.0])
    in_axes = (0, None, None, 0)
    got = jax.jit(over_members(fn, in_axes))(u, shared, None, scale)
    want = jax.vmap(fn, in_axes=in_axes)(u, shared, None, scale)
    jax.tree_util.tree_map(np.testing.assert_allclose, got, want)
    np.testing.assert_allclose(got[1], [3.0, -1.0, -1.0])
    np.testing.assert_allclose(got[0]["out"][2], [25.0, 2.0])


@pytest.mark.slow
def test_the_polish_compiled_ahead_gives_what_it_gives_compiled_on_the_way():
    """train_members compiles the polish beside its Adam phase: the same programs, so
    the same iterates, bit for bit."""
    model, x, y = sine_problem()
    start = sample_prior_unconstrained(jax.random.key(1), model, x, y, 2)
    config = EnsembleConfig(num_members=2, polish="lbfgs", polish_steps=30)
    want_u, want = polish_members(model, x, y, start, config)
    programs = polish_programs(model, x, y, start, config, ahead=True)
    assert set(programs.ahead) == {3} and isinstance(programs.ahead[3], Future)
    got_u, got = polish_members(model, x, y, start, config, programs=programs)
    jax.tree_util.tree_map(np.testing.assert_array_equal, got_u, want_u)
    for name in ("losses", "iterations", "evaluations", "grad_norm", "converged"):
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name), err_msg=name)
    assert want.iterations.max() > 3  # the run went past the first block


def quadratic_optimum(x, y) -> np.ndarray:
    """The exact MAP of :func:`quadratic_model` (ridge regression, noise sd 0.5)."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    return np.linalg.solve(x.T @ x / 0.25 + np.eye(2), x.T @ y / 0.25)


@pytest.mark.slow
def test_each_member_stops_on_its_own_and_stopped_members_are_held():
    """A member at its optimum stops before the first iteration and is never moved (the
    mask), while another goes on until a tolerance stops it."""
    x, y = quadratic_data()
    optimum = quadratic_optimum(x, y)
    params = {"theta": jnp.asarray(np.stack([optimum, optimum + 3.0]), jnp.float32)}
    config = EnsembleConfig(num_members=2, polish="lbfgs", polish_steps=50)
    u, result = polish_members(quadratic_model, x, y, params, config)
    assert result.iterations[0] == 0 and result.converged[0]
    np.testing.assert_array_equal(np.asarray(u["theta"][0]), np.asarray(params["theta"][0]))
    assert np.all(result.losses[0] == result.losses[0, 0])  # held from the start
    # The other member reaches the optimum (a 2-D quadratic: a few iterations) and stops
    # on a tolerance, long before polish_steps.
    k = int(result.iterations[1])
    assert 1 <= k < 20 and result.converged[1]
    np.testing.assert_allclose(np.asarray(u["theta"][1]), optimum, atol=1e-4)
    assert np.all(result.losses[1, k:] == result.losses[1, k - 1])  # held once stopped
    # Every member stopped in the first block: the run ended there (5 of 50 iterations).
    assert result.losses.shape == (2, 5)
    # With both tolerances off, a network's fit runs all polish_steps.
    model, x, y = sine_problem()
    start = sample_prior_unconstrained(jax.random.key(1), model, x, y, 2)
    loose = EnsembleConfig(num_members=2, polish_steps=3, polish_tol=0.0, polish_grad_tol=0.0,
                           polish_window_tol=0.0)  # fmt: skip
    _, forced = polish_members(model, x, y, start, loose)
    assert forced.iterations.tolist() == [3, 3] and not forced.converged.any()


@pytest.mark.slow
def test_the_window_test_stops_a_member_when_its_last_iterations_lowered_the_loss_too_little():
    """With the window test alone, each member stops at the first iteration ``k ≥ W``
    whose loss is at most ``polish_window_tol · y.size`` below the loss ``W`` iterations
    before: the iteration read off the same fits run without the test to ``polish_steps``,
    on the very same path until then."""
    from bayesresnet.infer.core import _member_loss

    model, x, y = sine_problem()
    start = sample_prior_unconstrained(jax.random.key(1), model, x, y, 3)
    window, steps = 4, 60
    off = {"polish_tol": 0.0, "polish_grad_tol": 0.0, "polish_window_tol": 0.0}
    free = EnsembleConfig(num_members=3, polish_steps=steps, polish_window=window, **off)
    _, run_on = polish_members(model, x, y, start, free)
    assert run_on.iterations.tolist() == [steps] * 3 and not run_on.converged.any()
    initial = jax.vmap(lambda u: _member_loss(model, x, y)(u, None, None))(start)
    losses = np.concatenate([np.asarray(initial)[:, None], run_on.losses], axis=1)  # L_0..L_60
    drops = losses[:, :-window] - losses[:, window:]  # [:, j]: L_j - L_{j+W}, iteration j + W
    # A limit that the falls over `window` iterations cross part-way through, halfway
    # between two of them (no ties with float32 rounding).
    ordered = np.sort(drops.ravel())
    cut = int(0.3 * len(ordered))
    limit = float(ordered[cut - 1] + ordered[cut]) / 2
    expected = [window + int(np.argmax(d <= limit)) for d in drops]
    assert all(window < k < steps for k in expected), expected
    config = dataclasses.replace(free, polish_window_tol=limit / y.size)
    _, result = polish_members(model, x, y, start, config)
    assert result.iterations.tolist() == expected and result.converged.all()
    for member, k in enumerate(expected):  # the same path until the stop, held after it
        np.testing.assert_allclose(result.losses[member, :k], run_on.losses[member, :k], rtol=1e-6)
        assert np.all(result.losses[member, k:] == result.losses[member, k - 1])


@pytest.mark.slow
def test_a_batch_loss_is_an_unbiased_estimate_of_the_full_loss():
    """The mean over batches of the batch loss is the full loss, bootstrap weights or not."""
    from bayesresnet.infer.core import _batch_loss, _member_loss

    x, y = quadratic_data(rows=12)
    u = {"theta": jnp.asarray([0.3, -0.2], jnp.float32)}  # far from the data's (1, -1)
    counts = jnp.asarray(np.random.default_rng(1).multinomial(12, np.ones(12) / 12), jnp.float32)
    keys = jax.random.split(jax.random.key(0), 4000)
    batch = _batch_loss(quadratic_model, x, y, 4)
    full = _member_loss(quadratic_model, x, y)
    for weights in (None, counts):
        draws = np.asarray(jax.vmap(lambda k, w=weights: batch(u, None, w, k))(keys), np.float64)
        exact = float(full(u, None, weights))
        # 4 Monte-Carlo standard errors: fails 6 times in 10⁵ when the estimate is unbiased
        # (the loss is far from the prior's 1.8 nats, so a missing N/B factor is visible).
        se = draws.std() / np.sqrt(len(draws))
        assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)
        assert draws.std() > 0.01 * abs(exact)  # the batches do differ


@pytest.mark.slow
def test_a_batch_loss_scales_the_stiffness_penalty_with_the_likelihood():
    """The stiffness penalty sums over the rows: on a batch it is scaled by N/B as the
    likelihood is (unscaled, the mean would fall short by about 120 nats, 50 standard
    errors)."""
    import bayesresnet as brn
    from bayesresnet.infer.core import _batch_loss, _member_loss

    _, x, y = sine_problem()
    ds = brn.problems.get("sine").sample(0, 20, 5, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2, basis=brn.bases.make_basis("linear"))
    scaler = brn.fit_scaler(ds.x_train, ds.y_train)
    model = brn.make_model(spec, brn.PriorSpec(stiffness_penalty=20.0), scaler.centred())
    start = sample_prior_unconstrained(jax.random.key(3), model, x, y, 1)
    u = jax.tree_util.tree_map(lambda v: v[0], start)
    keys = jax.random.split(jax.random.key(0), 4000)
    batch = _batch_loss(model, x, y, 5)
    draws = np.asarray(jax.vmap(lambda k: batch(u, None, None, k))(keys), np.float64)
    exact = float(_member_loss(model, x, y)(u, None, None))
    plain = brn.make_model(spec, brn.PriorSpec(), scaler.centred())
    assert exact - float(_member_loss(plain, x, y)(u, None, None)) > 100  # the penalty's part
    se = draws.std() / np.sqrt(len(draws))
    assert abs(draws.mean() - exact) < 4 * se, (draws.mean(), exact, se)


@pytest.mark.slow
def test_batched_adam_then_the_polish_reaches_the_map_and_a_full_batch_is_unchanged():
    x, y = quadratic_data(rows=12)
    key = jax.random.key(0)
    # The batched Adam phase alone takes each member most of the way (one L-BFGS
    # iteration after it, no stopping): a tenth of its starting distance or less.
    rough = EnsembleConfig(num_members=2, num_steps=1000, polish="lbfgs", batch_size=4,
                           polish_steps=1, polish_tol=0.0, polish_grad_tol=0.0)  # fmt: skip
    near = train_members(key, quadratic_model, x, y, rough)
    start = member_inputs(key, quadratic_model, x, y, rough)[0]["theta"]
    optimum = quadratic_optimum(x, y)
    before = np.abs(np.asarray(start) - optimum).max(axis=1)
    after = np.abs(np.asarray(near.params["theta"]) - optimum).max(axis=1)
    assert np.all(after < 0.1 * before) and np.all(after > 1e-4), (before, after)
    config = EnsembleConfig(num_members=2, num_steps=300, polish="lbfgs", batch_size=4)
    result = train_members(key, quadratic_model, x, y, config)
    np.testing.assert_allclose(
        np.asarray(result.params["theta"]), np.stack([quadratic_optimum(x, y)] * 2), atol=1e-3
    )
    assert np.isfinite(np.asarray(result.losses)).all() and result.polish.converged.all()
    # batch_size at or above the rows is full-batch: the very same Adam program and losses.
    whole = train_members(key, quadratic_model, x, y, dataclasses.replace(config, batch_size=12))
    plain = train_members(key, quadratic_model, x, y, dataclasses.replace(config, batch_size=None))
    np.testing.assert_array_equal(np.asarray(whole.losses), np.asarray(plain.losses))
    assert not np.array_equal(np.asarray(result.losses), np.asarray(plain.losses))


def test_the_ensembles_description_and_gradient_count_know_its_batches():
    from types import SimpleNamespace

    import bayesresnet as brn
    from bayesresnet.infer import ensemble

    def post(batch_size, ard=False):
        settings = {"num_members": 8, "num_steps": 3000, "steps_run": 3000}
        settings |= {"batch_size": batch_size, "ard_warmup": 0.3}
        return SimpleNamespace(
            settings=settings,
            num_draws=8,
            extra={},
            x_train=np.zeros((2000, 3)),
            prior=brn.PriorSpec(ard=ard),
        )

    assert "3000 Adam steps on batches of 256 rows each" in ensemble.describe(post(256))
    # The ARD scales' hold is said only where there are ARD scales.
    held = "input scales held at 1 through the first 900 Adam steps"
    assert held in ensemble.describe(post(256, ard=True))
    assert "held" not in ensemble.describe(post(256))
    for whole in (None, 2000):
        assert "batches" not in ensemble.describe(post(whole))
        assert ensemble.gradients(post(whole)) == 8 * 3000
    # A step on 256 of 2 000 rows is 0.128 of a gradient of the whole data.
    assert ensemble.gradients(post(256)) == round(8 * 3000 * 0.128)


def test_bad_batch_sizes_are_named():
    with pytest.raises(ValueError, match=r'`batch_size` \(64\) needs polish="lbfgs"'):
        EnsembleConfig(batch_size=64)
    with pytest.raises(ValueError, match=r"`batch_size` must be ≥ 1; got 0"):
        EnsembleConfig(batch_size=0, polish="lbfgs")
    with pytest.raises(TypeError, match=r"`batch_size` must be an int"):
        EnsembleConfig(batch_size=0.5, polish="lbfgs")


def test_bad_polish_settings_are_named():
    from bayesresnet.infer import MCLMCConfig, NUTSConfig, SVIConfig

    with pytest.raises(ValueError, match=r"`polish` must be one of \['none', 'lbfgs'\]"):
        EnsembleConfig(polish="bfgs")
    with pytest.raises(ValueError, match=r"`polish_steps` must be ≥ 1; got 0"):
        EnsembleConfig(polish="lbfgs", polish_steps=0)
    with pytest.raises(ValueError, match=r"`polish_tol` must be"):
        EnsembleConfig(polish_tol=-1e-6)
    with pytest.raises(TypeError, match=r"`polish_grad_tol` must be a number"):
        EnsembleConfig(polish_grad_tol="small")
    with pytest.raises(ValueError, match=r"`polish_window` must be ≥ 1; got 0"):
        EnsembleConfig(polish_window=0)
    with pytest.raises(ValueError, match=r"`polish_window_tol` must be"):
        EnsembleConfig(polish_window_tol=-0.01)
    with pytest.raises(ValueError, match=r"`init_polish` must be one of"):
        NUTSConfig(init_polish="LBFGS")
    with pytest.raises(ValueError, match=r"`init_polish_steps` must be ≥ 1"):
        MCLMCConfig(init_polish_steps=0)
    with pytest.raises(TypeError, match=r"`init_polish_steps` must be an int"):
        SVIConfig(init_polish_steps=10.0)


def test_bad_ard_warmup_settings_are_named():
    with pytest.raises(ValueError, match=r'`ard_warmup=1` needs polish="lbfgs"'):
        EnsembleConfig(ard_warmup=1.0)
    with pytest.raises(ValueError, match=r"`ard_warmup` must be a finite .* \[0, 1\]; got 1.5"):
        EnsembleConfig(ard_warmup=1.5, polish="lbfgs")
    with pytest.raises(TypeError, match=r"`ard_warmup` must be a number"):
        EnsembleConfig(ard_warmup=True)


def test_ard_warmup_holds_the_input_scales_for_its_share_of_the_adam_steps():
    """The optimizer of a config with ``ard_warmup=0.3`` of 10 steps gives the ARD site
    zero updates for exactly 3 steps and Adam's updates after them; every other site
    moves from the first step; ``ard_warmup=0`` holds nothing, nor does any warm-up
    where there is no ARD site."""
    u = {sites.ARD_SCALE: jnp.zeros(3), sites.INPUT_WEIGHT: jnp.zeros((3, 2))}

    def loss(v):  # pulls every entry towards 1
        return sum(jnp.sum((leaf - 1.0) ** 2) for leaf in jax.tree_util.tree_leaves(v))

    for warmup, held in ((0.3, 3), (0.0, 0)):
        config = EnsembleConfig(num_steps=10, warmup_steps=0, ard_warmup=warmup)
        optimizer = _config_optimizer(config, u)
        state, v, moved = optimizer.init(u), u, []
        for _ in range(6):
            updates, state = optimizer.update(jax.grad(loss)(v), state, v)
            moved.append(bool(np.any(np.asarray(updates[sites.ARD_SCALE]) != 0)))
            assert np.all(np.asarray(updates[sites.INPUT_WEIGHT]) != 0)
            v = optax.apply_updates(v, updates)
        assert moved == [False] * held + [True] * (6 - held), (warmup, moved)
    plain = {sites.INPUT_WEIGHT: u[sites.INPUT_WEIGHT]}
    config = EnsembleConfig(num_steps=10, optimizer=optax.sgd(0.1))
    assert _config_optimizer(config, plain) is config.optimizer


@pytest.mark.slow
def test_ard_warmup_of_one_holds_the_input_scales_through_adam_and_the_polish_learns_them():
    """With ``ard_warmup=1`` the Adam phase leaves every ``λ_j`` exactly where it starts
    (ARD_START) while the other sites move, and the L-BFGS polish then learns the scales;
    with ``ard_warmup=0`` the Adam phase moves them (the hold is what keeps them). A
    polish whose gradient tolerance every start meets stops before its first iteration:
    what it returns is the Adam phase's end."""
    import bayesresnet as brn

    rng = np.random.default_rng(0)
    xr = rng.uniform(-1, 1, size=(40, 3))
    yr = np.sin(2 * xr[:, :1]) + 0.05 * rng.normal(size=(40, 1))
    spec = brn.ResNetSpec(3, 1, width=4, num_layers=2, basis=brn.bases.make_basis("linear"))
    scaler = brn.fit_scaler(xr, yr)
    x, y = (jnp.asarray(a, jnp.float32) for a in scaler.centre_data(xr, yr))
    model = brn.make_model(spec, brn.PriorSpec(ard=True), scaler.centred())
    key = jax.random.key(0)
    config = EnsembleConfig(num_members=2, num_steps=200, max_steps=200, polish="lbfgs")
    start = member_inputs(key, model, x, y, config)[0]

    def fit(**changes):
        members = train_members(key, model, x, y, dataclasses.replace(config, **changes))
        return members, {k: np.asarray(v) for k, v in members.params.items()}

    adam_only = {"polish_grad_tol": 1e9}
    held, held_u = fit(ard_warmup=1.0, **adam_only)
    free, free_u = fit(ard_warmup=0.0, **adam_only)
    assert np.all(held.polish.iterations == 0) and np.all(free.polish.iterations == 0)
    np.testing.assert_array_equal(held_u[sites.ARD_SCALE], np.asarray(start[sites.ARD_SCALE]))
    for name in (sites.INPUT_WEIGHT, sites.OUTPUT_WEIGHT):
        assert np.abs(held_u[name] - np.asarray(start[name])).max() > 1e-2, name
    assert np.abs(free_u[sites.ARD_SCALE] - np.asarray(start[sites.ARD_SCALE])).max() > 1e-2
    learned, learned_u = fit(ard_warmup=1.0)
    assert np.all(learned.polish.iterations > 0)
    assert np.abs(learned_u[sites.ARD_SCALE] - np.asarray(start[sites.ARD_SCALE])).max() > 1e-2


@pytest.mark.slow
def test_map_start_polishes_its_fits():
    x, y = quadratic_data()
    key = jax.random.key(0)
    options = dict(num_starts=2, num_members=3, num_steps=5, learning_rate=1e-2)
    adam = map_start(key, quadratic_model, x, y, **options)
    start = map_start(key, quadratic_model, x, y, polish="lbfgs", **options)
    assert adam.polish_evaluations == 0 and start.polish_evaluations > 0
    # Five Adam steps leave the fits far off; polished, both starts are at the optimum.
    assert np.all(start.final_loss < adam.final_loss)
    np.testing.assert_allclose(
        np.asarray(start.params["theta"]), np.stack([quadratic_optimum(x, y)] * 2), atol=1e-4
    )


def _two_sample_ks_holds(a, b, alpha=1e-3):
    from scipy import stats

    return stats.ks_2samp(np.asarray(a), np.asarray(b)).pvalue > alpha


@pytest.mark.slow
def test_prior_draws_follow_the_prior_of_every_site_hierarchical_ones_included():
    """The reparameterized draw (Normal, HalfNormal from one block of standard normals;
    other distributions by their own sampler) against NumPyro's Predictive: a two-sample
    KS test per site at α = 0.001 (a wrong scale, a missing |·| or a draw that ignores
    the hierarchy moves the distribution far outside)."""
    from numpyro.infer import Predictive
    from numpyro.infer.util import constrain_fn

    import bayesresnet as brn

    def model(x, y):
        lam = numpyro.sample("lam", dist.HalfNormal(2.0).expand([2]).to_event(1))
        w = numpyro.sample("w", dist.Normal(1.0, lam).to_event(1))  # scale from λ
        rate = numpyro.sample("rate", dist.Gamma(3.0, 2.0))  # drawn by its own sampler
        numpyro.sample("y", dist.Normal(x @ w, 1 / rate), obs=y)

    x, y = jnp.ones((3, 2)), jnp.zeros(3)
    n = 2000
    u = sample_prior_unconstrained(jax.random.key(0), model, x, y, n)
    mine = jax.vmap(lambda v: constrain_fn(model, (x, y), {}, v))(u)
    ref = Predictive(model, num_samples=n)(jax.random.key(1), x, None)
    assert _two_sample_ks_holds(mine["lam"][:, 0], ref["lam"][:, 0])
    assert _two_sample_ks_holds(mine["w"][:, 1], ref["w"][:, 1])
    assert _two_sample_ks_holds(mine["rate"], ref["rate"])
    assert not _two_sample_ks_holds(mine["w"][:, 1], ref["lam"][:, 1] + 1.0)  # the test bites
    # The real model with ARD: the fits start every λ at ARD_START (not a prior draw),
    # and every other site is a prior draw given it (the input weights' scale from λ).
    spec = brn.ResNetSpec(2, 1, width=3, num_layers=2)
    xr, yr = np.random.default_rng(0).normal(size=(5, 2)), np.zeros((5, 1))
    model = brn.make_model(spec, brn.PriorSpec(ard=True), brn.fit_scaler(xr, yr))
    u = sample_prior_unconstrained(jax.random.key(2), model, xr, yr, n)
    mine = jax.vmap(lambda v: constrain_fn(model, (xr, yr), {}, v))(u)
    np.testing.assert_allclose(mine[sites.ARD_SCALE], ARD_START, rtol=1e-6)
    given = handlers.condition(model, {sites.ARD_SCALE: jnp.full(2, ARD_START)})
    ref = Predictive(given, num_samples=n)(jax.random.key(3), xr, None)
    free = Predictive(model, num_samples=n)(jax.random.key(3), xr, None)
    # Drawn with λ from its prior, the input weights' distribution differs: the test bites.
    assert not _two_sample_ks_holds(
        mine[sites.INPUT_WEIGHT][:, 0, 0], free[sites.INPUT_WEIGHT][:, 0, 0]
    )
    for site in sorted(set(mine) & set(ref)):
        first = (slice(None),) + (0,) * (mine[site].ndim - 1)
        assert _two_sample_ks_holds(mine[site][first], ref[site][first]), site


def _backend_compiles():
    """A list that JAX's backend compilations of the program names are appended to."""
    names = []

    def listen(event, duration, **kwargs):
        if event == "/jax/core/compile/backend_compile_duration":
            names.append(kwargs.get("fun_name"))

    jax.monitoring.register_event_duration_secs_listener(listen)
    return names, listen


def test_a_small_program_run_once_is_compiled_without_optimization_and_no_other():
    from bayesresnet.infer import core

    small = jax.jit(lambda a: jnp.tanh(a @ a).sum()).lower(jnp.ones((4, 4)))
    big = jax.jit(lambda a: jnp.tanh(a @ a).sum()).lower(jnp.ones((400, 400)))
    assert small.cost_analysis()["flops"] <= core.ONCE_MAX_FLOPS
    assert big.cost_analysis()["flops"] > core.ONCE_MAX_FLOPS  # 2·400³ ≈ 1.3e8
    assert core.compile_options(small, once=True) == core.ONCE_OPTIONS
    assert core.compile_options(small) == {}  # not run once: a loop's body, say
    assert core.compile_options(big, once=True) == {}  # its arithmetic is worth optimizing
    # Compiled both ways it is two programs (the options are part of what is kept), with
    # the same result.
    core.clear_compiled()
    names, listen = _backend_compiles()
    try:
        once = core.compile_lowered(small, once=True)
        assert core.compile_lowered(small, once=True) is once
        full = core.compile_lowered(small)
        assert full is not once and len(names) == 2
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    a = jnp.linspace(-1, 1, 16).reshape(4, 4)
    np.testing.assert_allclose(once(a), full(a), rtol=1e-6)


@pytest.mark.filterwarnings("ignore:.* ensemble member.s. had not converged")
def test_a_fit_compiles_its_starts_and_noise_re_estimate_unoptimized_and_its_steps_not(
    monkeypatch,
):
    """The ensemble's programs run once (the members' starts, the noise re-estimate, the
    constrained values) are compiled with ONCE_OPTIONS; the Adam block, run for every
    block of steps, with XLA's full optimization."""
    import bayesresnet as brn
    from bayesresnet.infer import core

    seen, real = [], core.compile_options

    def options(lowered, once=False):
        chosen = real(lowered, once)
        seen.append((lowered.as_text().split("\n", 1)[0].split()[1], once, chosen))
        return chosen

    monkeypatch.setattr(core, "compile_options", options)
    core.clear_compiled()
    ds = brn.problems.get("sine").sample(0, 20, 5, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=3, num_layers=2, basis=brn.bases.make_basis("linear"))
    brn.fit(spec, ds, method="ensemble", seed=0, num_members=2, num_steps=40)
    by_name = {name: (once, chosen) for name, once, chosen in seen}
    assert by_name["@jit_inputs"] == (True, core.ONCE_OPTIONS)  # the starts
    assert by_name["@jit_members"] == (True, core.ONCE_OPTIONS)  # the noise re-estimate
    loops = [chosen for name, once, chosen in seen if not once]
    assert loops and all(chosen == {} for chosen in loops)  # the Adam block(s)


def test_a_program_made_anew_that_computes_the_same_is_compiled_once():
    from bayesresnet.infer.core import clear_compiled, compiled_call

    def made(scale):  # a new closure each time, as each fit makes its programs
        return lambda a, b: jnp.tanh(a @ b) * scale

    a, a2, b, c = (jnp.asarray(np.full(shape, v)) for shape, v in [
        ((3, 4), 1.0), ((3, 4), 2.0), ((4, 2), 1.0), ((5, 4), 1.0)
    ])  # fmt: skip
    clear_compiled()
    names, listen = _backend_compiles()
    try:
        first = compiled_call(made(2.0), a, b)
        again = compiled_call(made(2.0), a2, b)  # other values, the same program
        assert len(names) == 1
        compiled_call(made(3.0), a, b)  # another constant: another program
        assert len(names) == 2
        compiled_call(made(2.0), c, b)  # another shape: another program
        assert len(names) == 3
        unused = compiled_call(lambda a, b: 2 * a, a, b)
        assert len(names) == 4
        # The text of a program leaves out an argument it does not use; its shape counts.
        compiled_call(lambda a, b: 2 * a, a, c)
        assert len(names) == 5
        clear_compiled()
        compiled_call(made(2.0), a, b)  # forgotten: compiled again
        assert len(names) == 6
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    np.testing.assert_allclose(first, np.tanh(4.0) * 2.0 * np.ones((3, 2)), rtol=1e-6)
    np.testing.assert_allclose(again, np.tanh(8.0) * 2.0 * np.ones((3, 2)), rtol=1e-6)
    np.testing.assert_allclose(unused, 2.0 * np.ones((3, 4)))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*had not converged:RuntimeWarning")
def test_a_second_ensemble_fit_of_other_data_of_the_same_sizes_compiles_nothing():
    import bayesresnet as brn

    spec, options, first, second = refit_case()
    brn.fit(spec, first, **options)
    names, listen = _backend_compiles()
    try:
        post = brn.fit(spec, second, seed=1, **options)
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    assert names == []
    assert post.extra["member_polish_iterations"]  # the polish ran
