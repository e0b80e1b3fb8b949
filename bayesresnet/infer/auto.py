"""``method="auto"``: the inference method a fit runs when none is named.

``auto`` runs the deep ensemble (:mod:`bayesresnet.infer.ensemble`) at its defaults, at
every size. Measured side by side with scikit-learn's Gaussian process on the six built-in
problems at N = 200, noise-free and with 5 % noise, width 8, 8 cubic layers, on 2 quiet
CPU cores (``benchmarks/bench_surrogates.py``, ``benchmarks/results/surrogates_N200_quiet``):

* the ensemble took 6.6–7.7 s to fit (the GP 0.2–2.3 s), its CRPS was within 1.25× the
  GP's on 5 of the 6 problems, and, with each member's noise sd re-estimated from its
  effective number of parameters (:mod:`bayesresnet.infer.noise`), its 90 % intervals
  covered 0.83–1.00 of the held-out points (8 of 12 cases within 0.85–0.95;
  ``surrogates_N200_noise``; with the MAP noise sds 0.77–1.00 and 7 of 12);
* ensemble-started MCLMC took 24–31 s, was more accurate on most problems (CRPS 0.73–1.05×
  the GP's on 5 of 6) and better calibrated with noise (0.88–0.95), but over-covered
  noise-free data (0.98–1.00), ended every run with verdict *fail*, and on noise-free
  borehole one of its eight chains tuned its step size to 0 in a region far from the
  posterior's bulk, which took the mixture's relative RMSE from about 0.55 % (each other
  chain) to 5.3 %. Such chains are now restarted from the best tuned chain
  (:func:`~bayesresnet.infer.mclmc.restart_stuck_chains`): the same fit then gave 0.51 %
  with 90 % coverage 0.975, still over-covering, and at the same cost.

So MCLMC stays the method to ask for by name where its cost is affordable and its verdict
is read; ``auto`` is the one whose cost and verdict a user can count on.

From :data:`AUTO_POLISH_MIN_ROWS` training rows ``auto`` finishes each member with L-BFGS
(``polish="lbfgs"``). At N = 2 000 (width 16 as sized by the rows, borehole and friedman1,
``benchmarks/results/surrogates_N2000_quiet``) the polished ensemble was both faster
(34–53 s against 57–71 s: Adam no longer trains on past ``num_steps`` waiting for members
to settle) and as or more accurate (noise-free CRPS 2.9× and 24× the GP's against 10×
and 79×; with 5 % noise 1.02× either way). At N = 1 000 (borehole, friedman1 and
oscillator, noise-free and with 5 % noise; ``surrogates_N1000_lbfgs_quiet`` against the
Adam-only ``surrogates_N1000_quiet``) it was faster in 5 of 6 cases (32–48 s against
39–48 s) and as or more accurate in all 6 (noise-free CRPS 0.47–0.84 times Adam's; with
noise within 1 %). At N = 500 (borehole and friedman1, ``surrogates_N500_quiet``, both
variants in one run) it was faster in all 4 cases (22–24 s against 25–28 s) and twice as
accurate noise-free (CRPS 1.3× and 12× the GP's against 2.5× and 24×), at a CRPS 1.5–2 %
higher with noise. At N = 200 it doubled the fit time (11–18 s against 6–8 s; the
compilation of its line search dominates) for better noise-free accuracy only. So the
polish starts at 500 rows, where the network also widens to 16 (sizes between 200 and
500 are unmeasured).

From :data:`AUTO_BATCH_MIN_ROWS` rows each Adam step uses a batch of
:data:`AUTO_BATCH_SIZE` rows (``batch_size``; the full-batch polish then finishes the
fit). Measured side by side with the full-batch Adam phase on borehole and friedman1 at
2 000 rows and borehole at 5 000, noise-free and with 5 % noise
(``benchmarks/results/surrogates_N2000_batches``, ``…_N2000_batches_noisefree``,
``…_N5000_batches``): the Adam phase ran 5–12× faster (3.7–9.0 s against 22–105 s),
the polish took longer (it often ran its 1 000 iterations), and the fit was faster in 5
of 6 cases (35–41 % noise-free, 12 % and 31 % with noise at 2 000 rows; 4 % slower with
noise at 5 000), at a CRPS between 6 % lower and 10 % higher (with noise within 0.5 %,
inside the paired standard error of the test points). With noise on borehole, at 2 000
and at 5 000 rows, some members' polish then ended at its iteration cap and the verdict
went from pass to warn (it says so: the members had not converged).

``auto`` does not turn on input relevance (``PriorSpec(ard=True)``); it keeps the prior
it is given. Measured side by side (its MAP fits starting every scale at 1,
:data:`~bayesresnet.infer.core.ARD_START`; variants ``auto`` against ``auto+ard``, or
``auto+noard`` against ARD; ``benchmarks/results/surrogates_N200_ard``,
``…_N500_ard``, ``…_N1000_ard``, ``…_N2000_ard``, ``surrogates_ard_ishigami_sobolg``),
ARD helps where every input acts monotonically: with 5 % noise the CRPS went from 1.17×
to 0.98× the GP's on borehole and from 1.22× to 1.01× on friedman1 at 500 rows, from
1.056× to 1.001× and 1.095× to 1.009× at 1 000, and from 1.022 ± 0.006× to
0.996 ± 0.003× and 1.044 ± 0.008× to 1.005 ± 0.004× at 2 000 (noise-free friedman1's
fell by 11–46 %, borehole's rose by 2–13 %; oscillator unchanged at 500). But
it loses inputs whose effect is even about the centre of their range, where a fit
starting from small weights has no first-order gradient to hold them: at 500 rows
ishigami's relative RMSE went from 6.2 % to 34.7 % with noise and from 4.8 % to 34.8 %
noise-free (its ``x₃`` enters as ``x₃⁴ sin x₁``), sobol_g's (every input ``|4xᵢ − 2|``)
from 9.9 % to 11.5 % and from 6.0 % to 12.3 %, and at 2 000 rows sobol_g's from 3.7 % to
5.2 % and 3.1 % to 5.0 %. At 200 rows (Adam only) it made ishigami's CRPS 2.8× worse.
So it stays for the user to turn on (``PriorSpec(ard=True)``), who knows whether the
simulator's inputs act monotonically.
"""

from __future__ import annotations

from typing import NamedTuple

from bayesresnet.resnet import ResNetSpec, num_params

__all__ = [
    "AUTO",
    "AUTO_BATCH_MIN_ROWS",
    "AUTO_BATCH_SIZE",
    "AUTO_POLISH_MIN_ROWS",
    "MethodChoice",
    "choose_method",
]

#: The method name that lets :func:`choose_method` decide.
AUTO = "auto"

#: Training rows from which ``auto``'s ensemble is polished by L-BFGS (module docstring).
AUTO_POLISH_MIN_ROWS = 500

#: Training rows from which ``auto``'s Adam phase runs on batches (module docstring) ...
AUTO_BATCH_MIN_ROWS = 2000
#: ... of this many rows each.
AUTO_BATCH_SIZE = 256


class MethodChoice(NamedTuple):
    """What ``method="auto"`` chose and why (recorded in the posterior's settings)."""

    method: str
    reason: str
    options: dict = {}


def choose_method(num_rows: int, spec: ResNetSpec) -> MethodChoice:
    """The method ``auto`` runs for ``num_rows`` training rows and the network ``spec``,
    with its options."""
    size = f"{num_rows} training rows, {num_params(spec)} parameters"
    polish = num_rows >= AUTO_POLISH_MIN_ROWS
    batched = num_rows >= AUTO_BATCH_MIN_ROWS
    how = (
        f"each member polished by L-BFGS from {AUTO_POLISH_MIN_ROWS:,} rows"
        if polish
        else f"Adam only below {AUTO_POLISH_MIN_ROWS:,} rows"
    )
    if batched:
        how += f", its Adam steps on batches of {AUTO_BATCH_SIZE} rows from {AUTO_BATCH_MIN_ROWS:,}"
    options = {"polish": "lbfgs"} if polish else {}
    if batched:
        options["batch_size"] = AUTO_BATCH_SIZE
    return MethodChoice(
        "ensemble",
        f'method="auto" chose ensemble ({size}; {how}): the deep ensemble is the default '
        "at every size; name mclmc or nuts for a sampler (slower, see "
        "bayesresnet.infer.auto)",
        options,
    )
