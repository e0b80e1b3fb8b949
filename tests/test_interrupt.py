"""Ctrl-C during engine work stops the run between compiled blocks, never inside one.

A ``KeyboardInterrupt`` raised while XLA still ran a dispatched block crashed the process
now and then (a segfault in about one of four Ctrl-Cs during NUTS sampling): within
:func:`bayesresnet.infer.base.progress_bar` a first SIGINT is recorded and raised after
the block has finished.
"""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bayesresnet.infer import base


def test_sigint_is_raised_after_the_block_not_inside_it():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with pytest.raises(KeyboardInterrupt):
        with base.progress_bar(10, "work") as bar:
            os.kill(os.getpid(), signal.SIGINT)  # arrives "during a block": only recorded
            time.sleep(0.05)
            reached = True
            bar.update(5)  # the block is done: the interrupt is raised here
            pytest.fail("update() did not raise the recorded interrupt")
    assert reached
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # restored


def test_sigint_after_the_last_block_is_raised_on_exit():
    with pytest.raises(KeyboardInterrupt):
        with base.progress_bar(10, "work") as bar:
            bar.update(10)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_second_sigint_raises_at_once():
    with pytest.raises(KeyboardInterrupt):
        with base.progress_bar(10, "work"):
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
            pytest.fail("the second Ctrl-C did not raise")


SPEC = """\
name = "interrupt"

[data]
problem = "sine"
num_train = 20
num_test = 10
noise = 0.1

[network]
width = 4
num_layers = 2
basis = "linear"

[inference]
method = "nuts"
num_chains = 2
num_warmup = 3000
num_samples = 3000
max_tree_depth = 4
"""


@pytest.mark.slow
def test_ctrl_c_during_nuts_sampling_exits_cleanly(tmp_path):
    (tmp_path / "spec.toml").write_text(SPEC)
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "bayesresnet", "fit", "spec.toml", "--out", "run"],
        cwd=tmp_path,
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines = []
    for line in proc.stderr:  # progress lines: the compiled blocks are running
        lines.append(line)
        if line.startswith("NUTS: "):
            break
    proc.send_signal(signal.SIGINT)
    rest = proc.communicate(timeout=120)[1]
    err = "".join(lines) + rest
    assert proc.returncode == 130, err[-3000:]  # not -11 (SIGSEGV) or -6 (SIGABRT)
    assert "stopping after the current block" in err
    assert "interrupted; no partial run folder was left behind" in err
    assert not (tmp_path / "run").exists()
    assert not list(tmp_path.glob("core*"))


@pytest.mark.slow
def test_ctrl_c_during_the_lbfgs_polish_stops_after_its_block(monkeypatch, capsys):
    """A SIGINT that arrives while a compiled block of L-BFGS iterations runs is raised
    once that block has finished, after its progress line, not inside XLA."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    from bayesresnet.infer.core import EnsembleConfig, polish_members
    from bayesresnet.infer.lanes import lane_groups

    def model(x, y=None):
        import numpyro
        import numpyro.distributions as dist

        theta = numpyro.sample("theta", dist.Normal(jnp.zeros(2), 1.0).to_event(1))
        with numpyro.plate("data", x.shape[0]):
            numpyro.sample("y", dist.Normal(x @ theta, 0.5), obs=y)

    x = jnp.asarray(np.random.default_rng(0).normal(size=(12, 2)), jnp.float32)
    y = x @ jnp.array([1.0, -1.0])
    real = jax.block_until_ready
    calls = []

    lock = threading.Lock()

    def interrupted(out):  # the first block "receives" one Ctrl-C while it runs
        with lock:  # each group of members calls this, maybe at once, on its own thread
            first = not calls
            calls.append(1)
        if first:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.05)
        return real(out)

    monkeypatch.setattr(jax, "block_until_ready", interrupted)
    config = EnsembleConfig(num_members=2, polish="lbfgs", polish_steps=100, polish_tol=0.0,
                            polish_grad_tol=0.0, polish_window_tol=0.0)  # fmt: skip
    with base.show_progress("lines"), pytest.raises(KeyboardInterrupt):
        polish_members(model, x, y, {"theta": jnp.ones((2, 2)) * 3.0}, config)
    err = capsys.readouterr().err
    assert "interrupted: stopping after the current block" in err
    assert err.strip().splitlines()[-1].startswith("L-BFGS polish: 10% (20/200")
    assert len(calls) == lane_groups(2)  # one block (a call per group): no second block
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
