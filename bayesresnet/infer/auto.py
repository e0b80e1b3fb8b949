"""``method="auto"``: the inference method a fit runs when none is named.

``auto`` runs the deep ensemble (:mod:`bayesresnet.infer.ensemble`) at its defaults, at
every size. Measured side by side with scikit-learn's Gaussian process on the six built-in
problems at N = 200, noise-free and with 5 % noise, width 8, 8 cubic layers, on 2 quiet
CPU cores (``benchmarks/bench_surrogates.py``, ``benchmarks/results/surrogates_N200_quiet``):

* the ensemble took 6.0–7.7 s to fit (the GP 0.2–3.0 s), its CRPS was within 1.25× the
  GP's on 5 of the 6 problems, and its 90 % intervals covered 0.77–1.00 of the held-out
  points (7 of 12 cases within 0.85–0.95);
* ensemble-started MCLMC took 24–31 s, was more accurate on most problems (CRPS 0.73–1.05×
  the GP's on 5 of 6) and better calibrated with noise (0.88–0.95), but over-covered
  noise-free data (0.98–1.00), ended every run with verdict *fail*, and on noise-free
  borehole one of its eight chains tuned its step size to 0 in a region far from the
  posterior's bulk, which took the mixture's relative RMSE from about 0.55 % (each other
  chain) to 5.3 %.

So MCLMC stays the method to ask for by name where its cost is affordable and its verdict
is read; ``auto`` is the one whose cost and verdict a user can count on.
"""

from __future__ import annotations

from typing import NamedTuple

from bayesresnet.resnet import ResNetSpec, num_params

__all__ = ["AUTO", "MethodChoice", "choose_method"]

#: The method name that lets :func:`choose_method` decide.
AUTO = "auto"


class MethodChoice(NamedTuple):
    """What ``method="auto"`` chose and why (recorded in the posterior's settings)."""

    method: str
    reason: str


def choose_method(num_rows: int, spec: ResNetSpec) -> MethodChoice:
    """The method ``auto`` runs for ``num_rows`` training rows and the network ``spec``."""
    size = f"{num_rows} training rows, {num_params(spec)} parameters"
    return MethodChoice(
        "ensemble",
        f'method="auto" chose ensemble ({size}): the deep ensemble is the default at every '
        "size; name mclmc or nuts for a sampler (slower, see bayesresnet.infer.auto)",
    )
