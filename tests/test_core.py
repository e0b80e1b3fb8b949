"""The functional engine core: the chain driver (blocks, thinning, devices) and progress."""

import subprocess
import sys
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from bayesresnet.infer.base import progress_bar, show_progress
from bayesresnet.infer.core import run_chains


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
