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
compilation of its line search dominates) for better noise-free accuracy only. With the
members polished one after another on the CPU (:func:`~bayesresnet.infer.core.over_members`;
``benchmarks/results/polish_map_N200``, variant ``ensemble+lbfgs+sized``, the GP in the
same run) it still took 17–24 s against ``auto``'s 10–17 s, for a CRPS lower in 10 of the
12 cases (noise-free borehole 1.22× the GP's against 1.96×, friedman1 14× against 22×;
with noise borehole's rose from 1.22× to 1.26×), and a time within 10× the GP's in 4
cases against ``auto``'s 7. So the polish starts at 500 rows, where the network also
widens to 16 (sizes between 200 and 500 are unmeasured). Measured again once the
polish's programs compiled during the Adam phase (``benchmarks/results/polish_ahead_N200``,
variant ``ensemble+lbfgs+sized``, the six problems noise-free and with 5 % noise): 12.5–17.6 s
against ``auto``'s 9.9–14.8 s (at 200 rows the Adam phase is too short to hide the
polish's compilation, and every member ran its 1 000 iterations), a CRPS lower in 10 of
the 12 cases, and 90 % coverage within 0.85–0.95 in 5 cases against 7. Measured a third
time with the members' groups side by side on the cores (``benchmarks/results/
polish_N200_lanes``, the same variant, the GP in the same run): 7.9–11.0 s against
``auto``'s 5.2–8.7 s (the polish's compilation, 2.2–3.4 s of waiting, is not hidden by
3 000 Adam steps), a CRPS lower in 10 of the 12 cases (noise-free borehole 1.20× the GP's
against 1.95×, friedman1 13.8× against 21.9×, sine 46× against 123×; with noise
borehole's rose from 1.24× to 1.26×), 90 % coverage within 0.85–0.95 in 5 cases against
8 (the polished noise-free fits over-cover: 0.951–0.960 on borehole, friedman1 and
ishigami), and fit + predict within 10× the GP's in 6 cases against 7. Stopping members by
the window test at 0.003 (``auto200+lbfgs+window``) changed little; capping the polish at
300 iterations (``auto200+lbfgs+p300``) gave back most of the accuracy.

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

From :data:`AUTO_BATCH_MIN_ROWS` rows a member's polish also stops once its last 50
iterations lowered its loss by at most :data:`AUTO_POLISH_WINDOW_TOL` nats per observed
value (``polish_window_tol``; for a Gaussian likelihood its residual scale shrinking by
less than 0.3 %). With noise the loss crawls there: many members ran all 1 000
iterations, fitting the noise. Measured side by side with ``auto`` without it at 2 000
rows with 5 % noise (``benchmarks/results/polish_map_window003_N2000``, variant
``auto2000+window003``): borehole's fit took 26 s instead of 36 s, friedman1's 30 s
instead of 38 s and oscillator's 55 s instead of 64 s, at the same CRPS (within 0.4 %)
and relative RMSE (oscillator's 1.32 % against 1.24 %, the others within 0.6 %); on
ishigami and sobol_g no member stopped by it. At 0.01 (``polish_map_window_N2000``, all
five problems noise-free and with 5 % noise) the noisy fits were faster still (27–30 s,
oscillator 53 s) but less accurate (oscillator's relative RMSE 1.57 %, ishigami's 2.96 %
against 2.56 %), and at 500 rows even 0.01 doubled ishigami's error
(``polish_window_N500``), so the test is not used below 2 000 rows. Noise-free the loss
keeps falling: at 0.01 the fits' CRPS stayed within 4.5 % of ``auto``'s without the test,
and a smaller tolerance only stops a member later.

When the fit is given no prior, ``auto`` learns a relevance scale per input at every
size (``PriorSpec(ard=True)``; :func:`choose_prior`), every scale starting at 1
(:data:`~bayesresnet.infer.core.ARD_START`) and held there for the first 30 % of the
Adam steps (``EnsembleConfig.ard_warmup``), so that the network has learned to use every
input before any scale may shrink.

Learned from the first step (``benchmarks/results/surrogates_N500_ard``, ``…_N1000_ard``,
``…_N2000_ard``, ``surrogates_ard_ishigami_sobolg``), ARD helped where every input acts
monotonically (with 5 % noise the CRPS went from 1.17× to 0.98× the GP's on borehole and
from 1.22× to 1.01× on friedman1 at 500 rows, from 1.022× to 0.996× and 1.044× to
1.005× at 2 000), but lost inputs whose effect is even about the centre of their range,
where a fit from small weights has no first-order gradient to hold them: at 500 rows
ishigami's relative RMSE went from 6.2 % to 35 % (its ``x₃`` enters as
``x₃⁴ sin x₁``) and sobol_g's (every input ``|4xᵢ − 2|``) from 9.5 % to 11.5 %. Held
through the whole Adam phase and learned in the polish only (``ard_warmup=1``,
``benchmarks/results/ard_warmup_N500_even``, ``ard_warmup_N500``), ishigami kept its
6.2 % but borehole's and friedman1's gains with noise were gone (3.5 % and 4.1 %):
what ARD buys with noise is learned in the Adam phase. Held for its first 30 %, measured
side by side with ``auto`` given ``PriorSpec()`` (variants ``auto`` and ``auto+noard``,
the GP in the same run; ``benchmarks/results/ard_warmup_auto_N500``, ``…_N500_even``,
``…_N2000``, ``…_N2000_even``), relative RMSE % and CRPS as a multiple of the GP's:

==========  =====  =====  =========================  =========================
problem     noise  N      without ARD                with ARD held for 30 %
==========  =====  =====  =========================  =========================
borehole    0.05   500    3.58 %, 1.175 ± 0.015×     1.33 %, 0.983 ± 0.004×
borehole    0      500    0.158 %, 1.280 ± 0.036×    0.166 %, 1.245 ± 0.030×
friedman1   0.05   500    4.74 %, 1.231 ± 0.020×     2.30 %, 1.018 ± 0.007×
friedman1   0      500    0.741 %, 11.8 ± 0.6×       0.333 %, 6.3 ± 0.3×
ishigami    0.05   500    6.16 %                     6.26 %
ishigami    0      500    4.98 %                     5.57 %
sobol_g     0.05   500    9.54 %                     6.91 %
sobol_g     0      500    5.99 %                     4.68 %
borehole    0.05   2000   1.44 %, 1.020 ± 0.006×     0.748 %, 0.995 ± 0.003×
borehole    0      2000   0.117 %, 3.09 ± 0.09×      0.118 %, 3.06 ± 0.09×
friedman1   0.05   2000   2.04 %, 1.040 ± 0.008×     1.28 %, 1.006 ± 0.004×
friedman1   0      2000   0.169 %, 23.7 ± 1.9×       0.141 %, 19.9 ± 1.6×
ishigami    0.05   2000   2.77 %                     2.52 %
ishigami    0      2000   1.79 %                     1.96 %
sobol_g     0.05   2000   3.74 %                     3.42 %
sobol_g     0      2000   3.06 %                     2.97 %
==========  =====  =====  =========================  =========================

(ishigami and sobol_g without the GP.) The one loss is noise-free ishigami (12 % and 9 %
higher error); with noise it brings the CRPS to the GP's on borehole and friedman1. The
fits took up to 20 % longer (35–44 s against 30–39 s at 500 rows, 45–58 s against
42–52 s at 2 000, where the GP took 150–494 s in the same run: 3× and 11× as long as
``auto`` with noise on borehole and friedman1).

Below 500 rows ARD was first left off: with the ensemble's default schedule (3 000 Adam
steps on a cosine decay, then training on at the final rate;
``benchmarks/results/ard_warmup_auto_N200``) it lowered the CRPS on borehole, friedman1,
oscillator and sobol_g but raised ishigami's from 1.06× to 1.34× the GP's with noise and
from 1.53× to 2.17× noise-free, and holding the scales for 60 % or 90 % of the steps
(``ard_hold_N200``) kept ishigami but gave back the others' gains. With the 9 000 steps
on one decay that ``auto`` runs there (below), the 30 % hold is 2 700 steps, and the
learning rate is still at about 80 % of its peak when the scales are let go. Measured
side by side with ``auto`` without ARD (variant ``auto+ard``; the six problems
noise-free and with 5 % noise, seeds 0–2, the GP in the same runs;
``benchmarks/results/ard_auto_N200_seed0``, ``…_N200_seeds12``), ARD lowered the CRPS by
more than 1 % in 25 of the 36 cases and raised it by more than 1 % in 5 (geometric mean
0.896); per problem (geometric means over the seeds) noise-free friedman1 0.67, sobol_g
0.85 (with noise 0.80), ishigami 0.89 (with noise 0.96), with noise borehole 0.84 (its
CRPS 1.00–1.04× the GP's, its 90 % coverage 0.857 in the mean against 0.822) and
friedman1 0.84; noise-free borehole, oscillator and sine within 3 % (oscillator's seeds
0.91–1.18). Cases with a CRPS within 1.25× the GP's: 22 of 36 against 19; problems whose
mean coverage over the seeds lies within 0.85–0.95: 9 of 12 against 8 (noise-free
friedman1 went out, 0.973; noisy borehole came in); single cases within it: 20 against
22. The fits took about 0.3 s longer (5.6–7.4 s against 5.3–7.1 s, means over the
seeds), within 10× the GP's in 21 of 36 cases against 25. A longer hold, half the steps
(seed 0, variant ``auto200+ard50``), kept less of the gain (0.905 against 0.866 on that
seed); shorter ones, 15 % and 20 % (seed 0, the GP not run,
``benchmarks/results/ard_hold_auto_N200_seed0``), gave 0.987 and 0.983 times the 30 %
hold's CRPS in geometric mean, within a seed's spread, but noise-free ishigami's 1.18
and 1.04 times: the hold stays at 30 %. At 50 and 100 rows (seed 0,
``benchmarks/results/ard_auto_N50_N100_seed0``) ARD lowered the CRPS in 12 of 24 cases
and raised it in 8 (geometric mean 0.912): most on noise-free borehole at 50 rows (0.30)
and ishigami at 100 (0.62), most against it on sobol_g at 100 rows (1.07 noise-free,
1.13 with noise) and noisy borehole at 100 (1.13).

At 200 rows the members agree with each other more than with the truth where the fit
is poor: with 5 % noise on borehole the 90 % intervals covered 0.83 of the test points.
Members that disagree more were measured there, side by side with ``auto`` on the six
problems noise-free and with 5 % noise (``benchmarks/results/anchored_bootstrap_N200``):
anchored members (``anchored=True``: each member's prior mean drawn from the prior)
brought borehole's and ishigami's coverage with noise into 0.85–0.95 (0.87 and 0.92
against 0.83 and 0.97), but doubled friedman1's error noise-free (relative RMSE 10.5 %
against 5.2 %) and raised sobol_g's with noise from 19.8 % to 25.3 %, with no more
cases within 0.85–0.95 (7 of 12 either way); bootstrapped members (``bootstrap=True``)
were less accurate on five of the six problems (friedman1 17–18 % against 5–9 %,
sobol_g 38–42 % against 20 %). Neither is used. Nor are more members: at 2 000 rows
with 5 % noise, 16 instead of 8 (``benchmarks/results/members16_N2000``, variant
``auto2000+m16``) gave the same CRPS (friedman1 2.94e-2 either way, borehole 2.90e-2
against 2.89e-2) in 1.4–1.6× the time: the members share their error. Nor a wider
network: width 32 instead of 16 at 2 000 rows with 5 % noise
(``benchmarks/results/w32_N2000``, variant ``auto2000+w32``) gave friedman1 a relative
RMSE of 1.30 % against 1.25 % (the GP's 0.99 %) and borehole 0.745 % against 0.776 %, at
the same CRPS (2.95e-2 against 2.94e-2, 2.89e-2 either way), in 52–72 s against 32–37 s.
Nor a deeper one or a longer Adam phase: 16 layers instead of 8, or 6 000 Adam steps
instead of 3 000 (``benchmarks/results/deeper_N2000``, variants ``auto2000+L16`` and
``auto2000+s6000``, one run, the members' groups side by side on 2 cores) gave friedman1
1.27 % and 1.49 % against 1.28 % (CRPS 2.94e-2, 2.96e-2 against 2.94e-2) and borehole
0.773 % and 0.823 % against 0.792 % (2.89e-2, 2.90e-2 against 2.89e-2), in 16–25 s
against ``auto``'s 15–18 s (the GP took 158–441 s on these data,
``benchmarks/results/ahead_gp_N2000``).

At 200 rows about a third of a first fit is tracing and compiling its programs. A later
run of the same sizes in a new process finds them in the compilation cache
(:mod:`bayesresnet.app.compile_cache`; the ``bayesresnet`` command keeps one by default)
and traces only: measured side by side with the GP on the six problems, noise-free and
with 5 % noise (``benchmarks/results/cached_N200``, ``bench_surrogates.py --cached``),
``auto``'s fit + predict took 5.5–9.3 s from nothing (within 10× the GP's in 8 of the 12
cases) and 3.8–5.3 s with the cache (within 10× in 11; noisy sine's GP takes 0.24 s).
With ARD at 200 rows (seed 0, nothing else running,
``benchmarks/results/cached_ard_N200_seed0``): 5.6–6.6 s from nothing (within 10× the
GP's in 8 of 12 cases) and 3.2–4.5 s with the cache (in 11 of 12; noisy sine's GP took
0.25 s).

Below :data:`AUTO_POLISH_MIN_ROWS` rows ``auto`` runs :data:`AUTO_ADAM_STEPS` (9 000)
Adam steps with the learning rate's cosine decay spread over all of them. The ensemble's
own default decays over 3 000 steps and then trains on at the final rate until the
members settle, for at most 9 000 steps; at 200 rows they never settled first (every one
of the 36 fits of ``benchmarks/results/seeds_N200`` ran 9 000 steps), and those steps
were worth their time: stopping at 3 000 (``ensemble+sized+nosettle``,
``benchmarks/results/surrogates_N200_nosettle``) raised the CRPS in 11 of the 12 cases
(noise-free by 2–85 %). The same 9 000 steps on one decay (variant ``auto200+cos9000``,
side by side with ``auto`` on the six problems noise-free and with 5 % noise, seeds 0–2;
``benchmarks/results/adam_cosine_N200_seed0``, ``…cosine9000_N200_seeds12``) lowered the
CRPS by more than 1 % in 21 of the 36 cases and raised it by more than 1 % in 5
(geometric mean 0.961): by 5–11 % noise-free on borehole, friedman1, ishigami,
oscillator and sine (geometric means over the seeds), with noise within 3 % but
ishigami's (5 % lower); the fits took as long (they run the same steps), and the same
number of cases had 90 % coverage within 0.85–0.95 (22 of 36). A shorter decay gives
back more than it saves: 4 500 and 6 000 steps (seed 0, variants ``auto200+cos4500``,
``auto200+cos6000``) raised the CRPS by 7.6 % and 2.3 % (geometric means). Nor does
another peak learning rate serve every problem (seed 0, the GP not run;
``benchmarks/results/adam_lr_N200_seed0``): 2e-2 instead of 1e-2 over the 9 000 steps
lowered the CRPS by 5 % in geometric mean, by 31–39 % on noise-free ishigami and sine,
but raised it by 8–18 % on friedman1 and noise-free borehole and sobol_g; over 6 000
steps it matched ``auto``'s CRPS in geometric mean (1.001) in about 5/6 of the time, by
the same trade (sine 0.74, friedman1 1.17); 5e-3 gave 0.988. With ARD on (variant
``auto200+ard+lr0.02`` against ``auto``, seeds 0–2, the GP not run;
``benchmarks/results/ard_lr_N200_seed0``, ``…_seeds12``) 2e-2 lowered the CRPS in 21 of
36 cases and raised it in 7 (geometric mean 0.960): ishigami 0.78 noise-free and 0.82
with noise, noise-free oscillator 0.88 and friedman1 0.90, but sobol_g 1.10 noise-free
and 1.28 with noise (1.18–1.46 over the seeds). The rate stays at 1e-2.
"""

from __future__ import annotations

from typing import NamedTuple

from bayesresnet.model import PriorSpec
from bayesresnet.resnet import ResNetSpec, num_params

__all__ = [
    "AUTO",
    "AUTO_ADAM_STEPS",
    "AUTO_BATCH_MIN_ROWS",
    "AUTO_BATCH_SIZE",
    "AUTO_POLISH_MIN_ROWS",
    "AUTO_POLISH_WINDOW_TOL",
    "MethodChoice",
    "choose_method",
    "choose_prior",
]

#: The method name that lets :func:`choose_method` decide.
AUTO = "auto"

#: Training rows from which ``auto``'s ensemble is polished by L-BFGS (module docstring).
AUTO_POLISH_MIN_ROWS = 500

#: Adam steps of ``auto`` below :data:`AUTO_POLISH_MIN_ROWS` rows, the learning rate's
#: cosine decay spread over all of them (module docstring): the most the ensemble's
#: default would run (``3 · num_steps``, training on at the final rate after 3 000).
AUTO_ADAM_STEPS = 9000

#: Training rows from which ``auto``'s Adam phase runs on batches (module docstring) ...
AUTO_BATCH_MIN_ROWS = 2000
#: ... of this many rows each.
AUTO_BATCH_SIZE = 256


#: ``polish_window_tol`` of ``auto`` from :data:`AUTO_BATCH_MIN_ROWS` rows: a member's
#: polish stops once its last ``polish_window`` (50) iterations lowered the loss by at most
#: this many nats per observed value (module docstring).
AUTO_POLISH_WINDOW_TOL = 0.003


class MethodChoice(NamedTuple):
    """What ``method="auto"`` chose and why (recorded in the posterior's settings);
    ``prior`` is the prior it chose, ``None`` where the fit was given one."""

    method: str
    reason: str
    options: dict = {}
    prior: PriorSpec | None = None


def choose_prior() -> PriorSpec:
    """The prior ``auto`` fits with when none is given: the default :class:`PriorSpec`
    with input relevance (``ard=True``), at every size (module docstring).

    The network's prior scales stay at their defaults. MacKay's evidence update of the
    four scales from an ``auto`` fit at 200 rows (``benchmarks/prior_evidence.py``: the
    six problems, noise-free and with 5 % noise, seeds 0–2; ``results/prior_evidence``)
    asks for hidden and output weights 1.4–4.2× and 1.7–5.3× wider, input weights 0.4–1.4×,
    and a second fit with them lowered the CRPS in 21 of 36 cases: by 26–30 % on noise-free
    friedman1 and sine, 16–22 % on ishigami (geometric means over the seeds), but raised it
    by 41 % and 10 % on sobol_g (its kinks) and by up to 27 % on noise-free borehole: not
    a default. The scales matter, and the data choose them differently: the ``spec="auto"``
    search tries them and keeps them where held-out rows confirm them
    (:func:`~bayesresnet.architecture.choose_spec`)."""
    return PriorSpec(ard=True)


def choose_method(num_rows: int, spec: ResNetSpec, prior: PriorSpec | None = None) -> MethodChoice:
    """The method ``auto`` runs for ``num_rows`` training rows and the network ``spec``,
    with its options; ``prior``: the prior :func:`choose_prior` chose (``None`` where the
    fit was given one), said in the reason."""
    size = f"{num_rows} training rows, {num_params(spec)} parameters"
    polish = num_rows >= AUTO_POLISH_MIN_ROWS
    batched = num_rows >= AUTO_BATCH_MIN_ROWS
    how = (
        f"each member polished by L-BFGS from {AUTO_POLISH_MIN_ROWS:,} rows"
        if polish
        else f"Adam only below {AUTO_POLISH_MIN_ROWS:,} rows, {AUTO_ADAM_STEPS:,} steps with "
        "the learning rate's cosine decay over all of them"
    )
    if batched:
        how += (
            f", its Adam steps on batches of {AUTO_BATCH_SIZE} rows and its polish stopped "
            f"by the window test (polish_window_tol={AUTO_POLISH_WINDOW_TOL}) from "
            f"{AUTO_BATCH_MIN_ROWS:,}"
        )
    if prior is not None and prior.ard:
        how += (
            "; input relevance (ARD) learned, each scale held at 1 for the first Adam steps "
            "(ard_warmup)"
        )
    options = (
        {"polish": "lbfgs"}
        if polish
        else {"num_steps": AUTO_ADAM_STEPS, "max_steps": AUTO_ADAM_STEPS}
    )
    if batched:
        options |= {"batch_size": AUTO_BATCH_SIZE, "polish_window_tol": AUTO_POLISH_WINDOW_TOL}
    return MethodChoice(
        "ensemble",
        f'method="auto" chose ensemble ({size}; {how}): the deep ensemble is the default '
        "at every size; name mclmc or nuts for a sampler (slower, see "
        "bayesresnet.infer.auto)",
        options,
        prior,
    )
