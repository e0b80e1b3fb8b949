"""``method="auto"``: the inference method chosen from the size of the fit.

Ensemble-started MCLMC (:mod:`bayesresnet.infer.mclmc`) samples the posterior within the
modes its MAP fits found and is the recommended method while it is affordable; its cost
is about ``2 · chains · (warm-up + samples · thinning)`` full-data gradients plus the MAP
fits, about three times a deep ensemble's (:mod:`bayesresnet.infer.ensemble`) at the
defaults. Every gradient costs time in proportion to the training rows ``N`` times the
network's parameters ``P``, so ``auto`` takes MCLMC while ``N · P`` is at most
:data:`AUTO_MCLMC_MAX_WORK` and the ensemble above it.
"""

from __future__ import annotations

from typing import NamedTuple

from bayesresnet.resnet import ResNetSpec, num_params

__all__ = ["AUTO", "AUTO_MCLMC_MAX_WORK", "MethodChoice", "choose_method"]

#: The method name that lets :func:`choose_method` decide.
AUTO = "auto"

#: Training rows × network parameters up to which ``auto`` takes MCLMC. At 200 rows and 369
#: parameters (N·P = 73 800; width 8, 8 cubic layers, 8 inputs) MCLMC at its defaults took
#: 21–23 s on 2 quiet CPU cores and the ensemble 4 s (issue 22's measurements); with the
#: time about linear in N·P, MCLMC takes one to two minutes at this limit (about 1 000 rows
#: of that network), what a Gaussian process takes at 2 000 rows, and the ensemble, with
#: about a third of the gradients, is the affordable method above it.
AUTO_MCLMC_MAX_WORK = 400_000


class MethodChoice(NamedTuple):
    """What ``method="auto"`` chose and why (recorded in the posterior's settings)."""

    method: str
    reason: str


def choose_method(num_rows: int, spec: ResNetSpec) -> MethodChoice:
    """The method ``auto`` runs for ``num_rows`` training rows and the network ``spec``."""
    work = int(num_rows) * num_params(spec)
    size = f"{num_rows} training rows × {num_params(spec)} parameters = {work:,}"
    if work <= AUTO_MCLMC_MAX_WORK:
        return MethodChoice(
            "mclmc",
            f'method="auto" chose mclmc: {size} ≤ {AUTO_MCLMC_MAX_WORK:,}, where '
            "ensemble-started MCLMC is affordable",
        )
    return MethodChoice(
        "ensemble",
        f'method="auto" chose ensemble: {size} > {AUTO_MCLMC_MAX_WORK:,}, where MCLMC '
        "gets slow (its cost grows with the rows times the parameters, about three times "
        "the ensemble's)",
    )
