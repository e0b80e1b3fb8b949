"""Lanes (members, chains) cut into groups and run side by side on the CPU's cores."""

import os
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import bayesresnet as brn
from bayesresnet.app.study import worker_env
from bayesresnet.infer import lanes
from bayesresnet.infer.core import run_blocks
from bayesresnet.infer.lanes import (
    MAX_GROUPS,
    THREADS_ENV,
    join_lanes,
    lane_groups,
    lane_shapes,
    lane_threads,
    run_lanes,
    split_lanes,
)


def _tree(num=8):
    return {
        "u": jnp.arange(num * 3, dtype=jnp.float32).reshape(num, 3),
        "keys": jax.random.split(jax.random.key(0), num),  # typed PRNG keys
        "shared": jnp.ones((5, 2)),
        "none": None,
    }


LANES = {"u": 0, "keys": 0, "shared": None, "none": None}


@pytest.mark.parametrize(
    ("num", "groups"), [(1, 1), (2, 2), (3, 3), (5, 1), (6, 3), (7, 1), (8, 4), (16, 4), (9, 3)]
)
def test_groups_are_the_largest_divisor_up_to_the_most(num, groups, monkeypatch):
    assert MAX_GROUPS == 4
    for threads in ("1", "2", "64"):  # the groups do not depend on the cores
        monkeypatch.setenv(THREADS_ENV, threads)
        assert lane_groups(num) == groups


def test_split_then_join_gives_the_tree_back():
    tree = _tree()
    parts = split_lanes(tree, LANES, 4)
    assert len(parts) == 4
    for i, part in enumerate(parts):
        np.testing.assert_array_equal(part["u"], np.asarray(tree["u"])[2 * i : 2 * i + 2])
        np.testing.assert_array_equal(
            jax.random.key_data(part["keys"]), jax.random.key_data(tree["keys"])[2 * i : 2 * i + 2]
        )
        assert part["shared"] is tree["shared"] and part["none"] is None
    joined = join_lanes(parts, LANES)
    np.testing.assert_array_equal(joined["u"], tree["u"])
    assert joined["u"].dtype == tree["u"].dtype and isinstance(joined["u"], jax.Array)
    np.testing.assert_array_equal(
        jax.random.key_data(joined["keys"]), jax.random.key_data(tree["keys"])
    )
    assert joined["shared"] is tree["shared"]
    assert isinstance(join_lanes(parts, LANES, device=False)["u"], np.ndarray)


def test_lane_shapes_are_the_shapes_of_one_group():
    shapes = lane_shapes(_tree(), LANES)
    assert shapes["u"].shape == (2, 3) and shapes["keys"].shape == (2,)
    assert shapes["shared"].shape == (5, 2)
    assert lane_shapes(_tree(7), LANES)["u"].shape == (7, 3)  # one group: as it is


def test_lanes_of_unequal_lengths_are_refused():
    tree = _tree()
    tree["u"] = tree["u"][:6]
    with pytest.raises(ValueError, match="one length"):
        split_lanes(tree, LANES, 2)


@pytest.mark.parametrize("text", ["0", "-2", "two", "1.5"])
def test_a_bad_thread_count_is_named(text, monkeypatch):
    monkeypatch.setenv(THREADS_ENV, text)
    with pytest.raises(ValueError, match=f"{THREADS_ENV}.*{text!r}"):
        lane_threads()


def test_the_groups_run_at_the_same_time(monkeypatch):
    """Two groups on two threads meet at a barrier: run one after another, the first
    would wait there alone and time out."""
    monkeypatch.setenv(THREADS_ENV, "2")
    barrier = threading.Barrier(2, timeout=10)
    seen = []

    def program(part, scale):
        barrier.wait()
        seen.append(threading.get_ident())
        return part * scale

    out = run_lanes(program, [jnp.ones(2), jnp.full(2, 3.0)], 2.0)
    np.testing.assert_array_equal(np.concatenate(out), [2, 2, 6, 6])
    assert len(set(seen)) == 2


def test_one_thread_runs_the_groups_in_order(monkeypatch):
    monkeypatch.setenv(THREADS_ENV, "1")
    seen = []
    run_lanes(lambda part: seen.append(threading.get_ident()) or part, [jnp.ones(1)] * 3)
    assert seen == [threading.get_ident()] * 3


def _block(carry, start, length):
    """Each lane's own recurrence, driven by the shared data."""
    x, data = carry

    def step(x, i):
        x = jnp.tanh(x @ data + 0.01 * (start + i))
        return x, x.sum(axis=-1)

    x, out = jax.lax.scan(jax.vmap(step, in_axes=(0, None)), x, jnp.arange(length))
    return (x, data), out.T  # lanes first


def test_run_blocks_with_lanes_gives_what_one_group_gives(monkeypatch):
    x = jax.random.normal(jax.random.key(1), (8, 4))
    data = jax.random.normal(jax.random.key(2), (4, 4))
    (x1, _), out1 = run_blocks(_block, (x, data), 30, block_size=7)
    monkeypatch.setattr(lanes, "MAX_GROUPS", 4)
    (x4, d4), out4 = run_blocks(_block, (x, data), 30, block_size=7, lanes=(0, None))
    np.testing.assert_array_equal(d4, data)
    np.testing.assert_allclose(x4, x1, rtol=1e-6, atol=1e-6)
    assert [o.shape for o in out4] == [o.shape for o in out1] == [(8, 7)] * 4 + [(8, 2)]
    np.testing.assert_allclose(np.concatenate(out4, 1), np.concatenate(out1, 1), atol=1e-5)


@pytest.mark.filterwarnings("ignore:.*had not converged:RuntimeWarning")
def test_the_fit_does_not_depend_on_the_threads(monkeypatch):
    """An ensemble's members, run in groups on one thread or two: the same fit, to the
    last bit (the groups are the same; only the threads differ)."""
    data = brn.problems.get("sine").sample(seed=0, num_train=40, num_test=10)
    spec = brn.ResNetSpec(1, 1, width=4, num_layers=2, basis=brn.bases.make_basis("linear"))
    fits = []
    for threads in ("1", "2"):
        monkeypatch.setenv(THREADS_ENV, threads)
        post = brn.fit(spec, data, method="ensemble", seed=3, num_steps=60, max_steps=60)
        fits.append(post.samples)
    assert lane_groups(8) == 4
    for name, value in fits[0].items():
        np.testing.assert_array_equal(value, fits[1][name], err_msg=name)


def test_study_workers_run_lanes_on_one_thread():
    assert worker_env({})[THREADS_ENV] == "1"


def test_a_ctrl_c_handed_to_a_worker_thread_is_seen_while_the_groups_run(monkeypatch):
    """A Ctrl-C sent while the groups run is handled on the calling thread at once (it runs
    no group itself), not once every group is done."""
    import signal
    import time

    monkeypatch.setenv(THREADS_ENV, "2")
    seen = []
    previous = signal.signal(signal.SIGINT, lambda *_: seen.append(time.monotonic()))
    try:

        def program(part):
            if threading.current_thread() is not threading.main_thread() and part[0] == 0:
                os.kill(os.getpid(), signal.SIGINT)  # from this worker thread
            time.sleep(1.0)
            return part

        run_lanes(program, [jnp.zeros(1), jnp.ones(1)])
        done = time.monotonic()
    finally:
        signal.signal(signal.SIGINT, previous)
    assert len(seen) == 1 and done - seen[0] > 0.5  # seen within a slice, not at the end


@pytest.mark.parametrize("entry", ["fit", "calibrate"])
def test_a_bad_thread_count_stops_fit_and_calibrate_before_any_work(entry, monkeypatch):
    """Named before the members are drawn or a chain starts (either would raise here)."""
    from bayesresnet import inverse
    from bayesresnet.infer import core

    def no_work(*args, **kwargs):
        raise AssertionError("work started")

    monkeypatch.setattr(core, "member_input_call", no_work)
    monkeypatch.setattr(inverse, "_check_surrogate", no_work)
    monkeypatch.setenv(THREADS_ENV, "two")
    data = brn.problems.get("sine").sample(seed=0, num_train=20, num_test=5)
    with pytest.raises(ValueError, match=f"{THREADS_ENV}.*'two'"):
        if entry == "fit":
            brn.fit(None, data, method="ensemble")
        else:
            inverse.calibrate(object(), np.zeros((2, 1)), unknown=["x1"])


def test_threads_set_sets_and_restores_the_variable(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    with lanes.threads_set(3):
        assert lane_threads() == 3
    assert THREADS_ENV not in os.environ
    monkeypatch.setenv(THREADS_ENV, "2")
    with lanes.threads_set(None):
        assert lane_threads() == 2
    with pytest.raises(RuntimeError, match="inside"), lanes.threads_set(1):
        assert lane_threads() == 1
        raise RuntimeError("inside")
    assert lane_threads() == 2  # restored after an error too
