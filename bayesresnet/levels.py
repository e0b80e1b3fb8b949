"""Central-interval levels: the one place that says which levels each part of a run uses.

A level ``p`` in (0, 1) names the central interval between the ``(1 - p)/2`` and
``(1 + p)/2`` quantiles. :mod:`bayesresnet.calibration` computes coverage at these levels,
:mod:`bayesresnet.posterior` predicts intervals at them, the figures draw bands at them and
the study's results table has one coverage column per headline level.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "BAND_LEVELS",
    "DEFAULT_LEVELS",
    "HEADLINE_LEVELS",
    "INTERVAL_LEVEL",
    "PREDICTION_LEVELS",
    "level_key",
]

DEFAULT_LEVELS = np.round(np.arange(0.05, 0.96, 0.05), 2)
"""Central-interval levels of the calibration curve: 0.05, 0.10, …, 0.95 (19 levels)."""
DEFAULT_LEVELS.setflags(write=False)

HEADLINE_LEVELS = (0.5, 0.9, 0.95)
"""Levels whose coverage :func:`bayesresnet.calibration.summarize` reports by name (keys
:func:`level_key`), and the coverage columns of a study's results."""

INTERVAL_LEVEL = 0.9
"""Level of the one interval whose score and width :func:`~bayesresnet.calibration.summarize`
reports, and of the intervals drawn in parity plots."""

PREDICTION_LEVELS = (0.5, 0.8, 0.9, 0.95)
"""Central intervals :meth:`bayesresnet.posterior.Posterior.predict` computes by default."""

BAND_LEVELS = (0.5, 0.9)
"""Central bands drawn in the predictive figures (the report's ``[report] levels``)."""


def level_key(level: float) -> str:
    """The key of a level in :func:`~bayesresnet.calibration.summarize`'s ``coverage`` dict,
    e.g. ``"0.9"``."""
    return str(float(level))
