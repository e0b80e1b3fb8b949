"""What every inference engine takes and returns, and what the package knows of each.

An engine is a function ``run_<method>(key, model, x, y, config) -> EngineResult``: it
receives the bound NumPyro model (:func:`bayesresnet.model.make_model`), the training
data (offsets removed in float64, :meth:`bayesresnet.model.Scaler.centre_data`) and its
frozen config, and returns draws of every latent site with sample
dimensions ``[chains, draws, ...]`` (one chain for SVI and ensembles), per-draw
statistics ``[chains, draws]``, its settings, wall times and anything else worth keeping
(loss histories, member flags). :func:`bayesresnet.infer.fit` wraps the result in a
:class:`~bayesresnet.posterior.Posterior`.

The samplers are built from kernels in BlackJAX's form (``blackjax/base.py``): a
:class:`SamplingAlgorithm` is a pair of pure functions ``init(key, position) -> state``
and ``step(key, state) -> (state, info)`` over a log density, with NamedTuple states and
infos and the random key first; :func:`~bayesresnet.infer.core.run_chains` drives any of
them. Each engine module ends with an :class:`Engine`: its config, its run function and
the per-method knowledge (description, gradient count, checks) that the diagnostics, the
workflow and the benchmarks reach through :data:`bayesresnet.infer.METHODS`.
"""

from __future__ import annotations

import dataclasses
import signal
import sys
import threading
import time
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = [
    "SamplingAlgorithm",
    "Engine",
    "Check",
    "Estimators",
    "PARETO_K_OK",
    "EngineResult",
    "config_from_options",
    "Timer",
    "to_numpy",
    "PROGRESS_MODES",
    "show_progress",
    "progress_bar",
    "progress_active",
]


class EngineResult(NamedTuple):
    """Output of one inference engine.

    Attributes:
        samples: constrained draws of every latent site, each ``[chains, draws, ...]``.
        sample_stats: per-draw statistics, each ``[chains, draws]``.
        settings: the engine's settings (JSON-serializable).
        timings: wall times in seconds (``compile_s``, ``run_s``, …).
        extra: further results (JSON-serializable values or NumPy arrays).
    """

    samples: dict[str, np.ndarray]
    sample_stats: dict[str, np.ndarray]
    settings: dict[str, Any]
    timings: dict[str, float]
    extra: dict[str, Any]


class SamplingAlgorithm(NamedTuple):
    """A Markov kernel as a pair of pure functions (BlackJAX's ``SamplingAlgorithm``).

    Attributes:
        init: ``init(key, position) -> state``: the kernel state at a position.
        step: ``step(key, state) -> (state, info)``: one transition; ``info`` is a
            NamedTuple of what the transition did (divergence, steps, acceptance).
    """

    init: Callable
    step: Callable


#: Pareto k̂ above this: importance weights (PSIS-LOO, a variational guide) unreliable.
PARETO_K_OK = 0.7


@dataclass(frozen=True)
class Check:
    """One diagnostic check with its threshold and, when it fails, what to try."""

    name: str
    status: str  # "pass", "note" (reported, not part of the verdict), "warn", "fail" or "n/a"
    value: str
    threshold: str
    advice: str = ""


class Estimators(NamedTuple):
    """The ArviZ estimators an engine's checks use, handed to them by
    :func:`bayesresnet.diagnostics.convergence` (only the diagnostics module imports
    ArviZ, and it imports the engines, not the reverse)."""

    e_bfmi: Callable  # energy [chains, draws] -> E-BFMI [chains]
    pareto_khat: Callable  # log importance weights [n] -> k̂


class Engine(NamedTuple):
    """An inference method: what runs it and what the package knows of it.

    Attributes:
        config: the frozen settings class (first, so ``METHODS[name][0]`` is the config).
        run: ``run(key, model, x, y, config) -> EngineResult``.
        describe: ``describe(post) -> str``: one line on how the posterior was made.
        gradients: ``gradients(post) -> int``: every log-density gradient the fit took
            (MAP starts, warm-up, sampling or training).
        chains: whether the draws are Markov chains (R-hat and ESS across chains, trace
            and rank plots) rather than independent draws (members, guide draws).
        checks: ``checks(post, estimators) -> list[Check]``: the method's own checks,
            after the chain checks every MCMC method gets.
        loss: what the optimization-loss history measures, ``""`` without one.
        ensemble_started: the chains start at different ensemble members and may each
            stay in its own mode: the verdict judges how each chain mixed within its
            mode, and reports the spread between chains as information
            (:func:`bayesresnet.diagnostics.convergence`).
    """

    config: type
    run: Callable
    describe: Callable
    gradients: Callable
    chains: bool
    checks: Callable
    loss: str = ""
    ensemble_started: bool = False


def config_from_options(config_cls, method: str, options: dict):
    """Build an engine's frozen config from ``fit(**options)``, naming unknown options."""
    allowed = [f.name for f in dataclasses.fields(config_cls)]
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise TypeError(
            f"unknown option(s) {unknown} for method={method!r}; allowed: {sorted(allowed)}."
        )
    return config_cls(**options)


class Timer:
    """Accumulates named wall-clock intervals (seconds)."""

    def __init__(self):
        self.times: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        try:
            yield
        finally:
            self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - start


def to_numpy(tree):
    """Block on and convert a pytree of JAX arrays to NumPy."""
    return jax.tree_util.tree_map(lambda a: np.asarray(jax.block_until_ready(a)), tree)


#: ``"off"`` (the library's default: silent), ``"bar"`` (a tqdm bar on stderr),
#: ``"lines"`` (a line about every 10 %, for logs) or ``"auto"`` (a bar when stderr is a
#: terminal, lines otherwise).
PROGRESS_MODES = ("off", "bar", "lines", "auto")
_progress_mode = ["off"]


@contextmanager
def show_progress(mode: str = "auto"):
    """Report the progress of long engine work (warm-up, sampling, optimizer steps) within.

    ``with show_progress(): brn.fit(...)``; the command line does this unless ``--quiet``.
    """
    if mode not in PROGRESS_MODES:
        raise ValueError(f"`mode` must be one of {list(PROGRESS_MODES)}; got {mode!r}.")
    previous = _progress_mode[0]
    _progress_mode[0] = mode
    try:
        yield
    finally:
        _progress_mode[0] = previous


class _Lines:
    """Progress as plain lines on stderr, one about every 10 % (for logs and pipes)."""

    def __init__(self, total: int, desc: str, file):
        self.total, self.desc, self.file = max(int(total), 1), desc, file
        self.done, self.next_tenth, self.start = 0, 1, time.perf_counter()

    def update(self, n: int = 1):
        self.done += int(n)
        tenth = min(10, (10 * self.done) // self.total)
        if tenth >= self.next_tenth:
            elapsed = time.perf_counter() - self.start
            print(
                f"{self.desc}: {10 * tenth}% ({self.done}/{self.total}, {elapsed:.0f} s)",
                file=self.file,
                flush=True,
            )
            self.next_tenth = tenth + 1

    def close(self):
        pass


class _Silent:
    def update(self, n: int = 1):
        pass

    def close(self):
        pass


def progress_active() -> bool:
    """Whether engines report progress now (inside :func:`show_progress`, not ``"off"``)."""
    return _progress_mode[0] != "off"


class _DeferredInterrupt:
    """Ctrl-C during compiled engine work, raised between blocks of steps.

    JAX dispatches a compiled block asynchronously: a ``KeyboardInterrupt`` raised at the
    next Python line unwinds the run, and the interpreter may exit, while XLA still
    computes the block on its own threads, which crashed the process (a segfault, about
    one Ctrl-C in four during NUTS sampling). Within this context a first SIGINT is only
    recorded and :meth:`check` raises it after a block has finished (the engines report
    progress after ``block_until_ready``); a second one raises at once. Only the main
    thread can handle signals, and a handler other than Python's default is left alone.
    """

    def __init__(self):
        self.pending = False
        self.previous = None

    def __enter__(self):
        main = threading.current_thread() is threading.main_thread()
        if main and signal.getsignal(signal.SIGINT) is signal.default_int_handler:
            self.previous = signal.signal(signal.SIGINT, self._record)
        return self

    def _record(self, signum, frame):
        if self.pending:
            raise KeyboardInterrupt
        self.pending = True
        print(
            "interrupted: stopping after the current block of steps (Ctrl-C again to force)",
            file=sys.stderr,
            flush=True,
        )

    def check(self):
        if self.pending:
            self.pending = False
            raise KeyboardInterrupt

    def __exit__(self, *exc_info):
        if self.previous is not None:
            signal.signal(signal.SIGINT, self.previous)
            self.previous = None
        return False


class _Reporter:
    """A progress reporter that raises a deferred Ctrl-C after each finished block."""

    def __init__(self, reporter, interrupt: _DeferredInterrupt):
        self.reporter, self.interrupt = reporter, interrupt

    def update(self, n: int = 1):
        self.reporter.update(n)
        self.interrupt.check()


@contextmanager
def progress_bar(total: int, desc: str):
    """A progress reporter with ``update(n)`` for ``total`` units of work, per the mode.

    Silent unless inside :func:`show_progress` (so library calls and tests stay quiet).
    Within it Ctrl-C stops the work between blocks, never inside one (see
    :class:`_DeferredInterrupt`).
    """
    mode = _progress_mode[0]
    if mode == "auto":
        mode = "bar" if sys.stderr.isatty() else "lines"
    if mode == "bar":
        from tqdm.auto import tqdm

        reporter = tqdm(total=total, desc=desc, file=sys.stderr, leave=False)
    elif mode == "lines":
        reporter = _Lines(total, desc, sys.stderr)
    else:
        reporter = _Silent()
    with _DeferredInterrupt() as interrupt:
        try:
            yield _Reporter(reporter, interrupt)
        finally:
            reporter.close()
        interrupt.check()  # an interrupt after the last block
