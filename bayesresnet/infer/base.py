"""What every inference engine takes and returns.

An engine is a function ``run_<method>(key, model, x, y, config) -> EngineResult``: it
receives the bound NumPyro model (:func:`bayesresnet.model.make_model`), raw training
data and its frozen config, and returns draws of every latent site with sample
dimensions ``[chains, draws, ...]`` (one chain for SVI and ensembles), per-draw
statistics ``[chains, draws]``, its settings, wall times and anything else worth keeping
(loss histories, member flags). :func:`bayesresnet.infer.fit` wraps the result in a
:class:`~bayesresnet.posterior.Posterior`.
"""

from __future__ import annotations

import dataclasses
import time
from contextlib import contextmanager
from typing import Any, NamedTuple

import jax
import numpy as np

__all__ = ["EngineResult", "config_from_options", "Timer", "to_numpy"]


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
