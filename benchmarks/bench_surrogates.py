"""bayesresnet's methods against scikit-learn's Gaussian process, side by side in one process.

The question (issue 22): is a bayesresnet surrogate as good as the Gaussian process a
scientist would fit first, where a GP is feasible, and how much cheaper is it where it is
not? Every method sees the same data in the same process, one after another, so the
ratios between them are fair even on a busy machine (the absolute times are not).

Problems: the built-in simulators of :mod:`bayesresnet.problems` (borehole, friedman1,
ishigami, oscillator, sobol_g, sine), noise-free and with noise of 5 % of each output's
spread (``noise=0.05``, see :meth:`Problem.sample`), at N training points (uniform
design), and 2 000 uniform test points drawn with the same seed.

Methods:

* ``gp``: ``sklearn.gaussian_process.GaussianProcessRegressor`` with
  ``ConstantKernel * Matern(nu=2.5, length_scale=ones(d)) + WhiteKernel`` (one length
  scale per input), ``normalize_y=True``, 3 optimizer restarts, inputs standardized, one
  GP per output. Its predictive distribution is Normal(mean, sd), the sd including the
  fitted white noise. It runs up to ``--gp-max-n`` training points (default 2 000; the
  output says where it was skipped): its cost grows as N³.
* bayesresnet variants: each a dict of :func:`bayesresnet.fit` arguments in
  :data:`VARIANTS` (``method``, ``options``, ``spec``, ``prior``); network width 8, 8
  layers, cubic basis unless the variant says otherwise. Adding one is one line there.
* ``train_mean``: a control, not a method: Normal(training mean, training sd) at every
  point. A metric under which it ties the GP is broken.

Metrics per (problem, noise, N, seed, method), averaged over outputs:

* ``rel_rmse``: RMSE of the predictive mean against the noise-free truth on the test
  points, divided by the output's sd over the domain (``Problem.output_std``);
* ``crps``: the fair CRPS (:func:`bayesresnet.calibration.crps`) of the predictive draws
  of noisy y against the test observations (noisy y when ``noise > 0``; with
  ``noise = 0`` the observations are the truth), divided by ``output_std``; the GP's
  Normal is scored through the same function on 1 000 draws;
* ``coverage_90``: fraction of test observations inside the central 90 % interval of the
  draws (:func:`bayesresnet.calibration.coverage`);
* ``fit_s``, ``predict_s``: wall seconds (``time.perf_counter``) around the fit and
  around the prediction at the test points; compilation counts (JAX's and bayesresnet's
  caches are cleared before each method, so every fit compiles as in a fresh process);
* ``total_cached_s``, ``time_ratio_gp_cached`` (with ``--cached``, bayesresnet only): fit +
  predict once more, as a later run in a new process finds them with the persistent
  compilation cache (:mod:`bayesresnet.app.compile_cache`, what the ``bayesresnet``
  command uses by default) filled by an earlier run of the same sizes: a run fills a
  temporary cache (untimed), the process's caches are cleared (tracing is paid again),
  and the same fit is timed reading the programs from it;
* bayesresnet only: ``verdict`` of :func:`bayesresnet.diagnostics.convergence` (the
  method's own checks, without the predictive checks of a full run), timed apart;
* ``crps_ratio_gp``, ``time_ratio_gp``: against the GP of the same case, where it ran;
  ``crps_ratio_gp_se`` the standard error of the CRPS ratio over the test points (paired:
  both methods are scored on the same points, :func:`ratio_se`), shown as ``1.017 ±
  0.006`` in the table: a ratio within two of them of 1 is a tie on these test points
  (it says nothing of the spread over training sets);
* ``warnings``: the distinct warnings of the fit and prediction (the GP optimizer's
  convergence warnings, an ensemble's unconverged members), recorded, not raised.

Writes JSON (every row, the settings and the machine, rewritten after each case so a
stop keeps what was measured), a Markdown table and a figure (time against N per method,
log-log; CRPS ratio to the GP per problem), all atomically; refuses to overwrite files.

Usage:
    python benchmarks/bench_surrogates.py [--problems borehole,friedman1] [--sizes 200,1000]
        [--noise 0,0.05] [--variants ensemble,mclmc] [--seeds 0] [--gp-max-n 2000]
        [--tiny] [--cached] [--out benchmarks/results/surrogates_N200_seed0.json]
    python benchmarks/bench_surrogates.py --combine a.json b.json --out all.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import tempfile
import time
import warnings
from importlib.metadata import version
from pathlib import Path
from typing import Any, NamedTuple

import jax
import numpy as np

import bayesresnet as brn
from bayesresnet import calibration
from bayesresnet._io import write_atomic, write_json
from bayesresnet.app.compile_cache import enable_compile_cache
from bayesresnet.infer import core
from bayesresnet.infer.core import clear_compiled
from bayesresnet.infer.lanes import lane_threads, threads_set

ROOT = Path(__file__).resolve().parent.parent

#: bayesresnet's methods by name: ``brn.fit`` arguments. ``method`` (required), ``options``
#: (the method's settings), ``spec`` (overrides of :data:`SPEC`, or a value passed to
#: ``brn.fit`` as it is) and ``prior`` (``PriorSpec`` arguments). One line per variant.
#: The options ``auto`` gives the ensemble from 2 000 rows (polished, batches of 256, the
#: polish's window test at 0.003; :mod:`bayesresnet.infer.auto`), for the variants on it.
AUTO2000_OPTIONS = {"polish": "lbfgs", "batch_size": 256, "polish_window_tol": 0.003}

VARIANTS: dict[str, dict[str, Any]] = {
    "ensemble": {"method": "ensemble"},
    "mclmc": {"method": "mclmc"},
    "nuts": {"method": "nuts"},
    "svi": {"method": "svi"},
    # One change each, on the default ensemble (issue: measure each on its own):
    "ensemble+lbfgs": {"method": "ensemble", "options": {"polish": "lbfgs"}},
    "ensemble+ard": {"method": "ensemble", "prior": {"ard": True}},
    "ensemble+autospec": {"method": "ensemble", "spec": "auto"},
    "mclmc+lbfgs": {"method": "mclmc", "options": {"init_polish": "lbfgs"}},
    # The network sized by the rows (architecture.default_spec: width 16 from 500 rows):
    "ensemble+sized": {"method": "ensemble", "spec": None},
    "ensemble+lbfgs+sized": {"method": "ensemble", "options": {"polish": "lbfgs"}, "spec": None},
    # A third of the Adam steps before the polish (the Adam phase dominates at N >= 2 000):
    "ensemble+lbfgs+sized+short": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "num_steps": 1000},
        "spec": None,
    },
    # Half the members (the Adam phase and the polish cost about M times one fit):
    "ensemble+lbfgs+sized+m4": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "num_members": 4},
        "spec": None,
    },
    # Adam on batches of rows (each step costs about batch/N of a full-batch step), then
    # the full-batch polish:
    "ensemble+lbfgs+sized+b256": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "batch_size": 256},
        "spec": None,
    },
    # Adam stopped at num_steps (no training on until members settle; below 500 rows
    # that is auto without the extension):
    "ensemble+sized+nosettle": {"method": "ensemble", "options": {"max_steps": 3000}, "spec": None},
    # What ``brn.fit(None, data)`` runs: method="auto" on the network sized by the rows:
    "auto": {"method": "auto", "spec": None},
    # auto with its members' (or chains') groups run one after another on one thread
    # ($BAYESRESNET_THREADS=1), not side by side on the cores (bayesresnet.infer.lanes):
    "auto+1thread": {"method": "auto", "spec": None, "threads": 1},
    "mclmc+1thread": {"method": "mclmc", "threads": 1},
    "nuts+1thread": {"method": "nuts", "threads": 1},
    # auto with every program compiled with XLA's full optimization, as before the
    # programs run once (the members' starts, the noise re-estimate) were compiled
    # without it (bayesresnet.infer.core.ONCE_OPTIONS):
    "auto+optall": {"method": "auto", "spec": None, "optimize_all": True},
    # auto with input relevance (ARD scales learned per input) at every size (auto given no
    # prior learned them from 500 rows until results/ard_auto_N200_*; it now learns them
    # at every size, so this is auto's fit, its reason text less the choice of prior):
    "auto+ard": {"method": "auto", "spec": None, "prior": {"ard": True}},
    # the ensemble's default schedule with input relevance, the scales held at 1 for 60 %
    # or 90 % of the Adam steps (auto holds them for 30 %):
    **{
        f"auto+ard{int(100 * hold)}": {
            "method": "ensemble",
            "options": {"ard_warmup": hold},
            "spec": None,
            "prior": {"ard": True},
        }
        for hold in (0.6, 0.9)
    },
    # auto given the default prior (no ARD at any size):
    "auto+noard": {"method": "auto", "spec": None, "prior": {}},
    # The ensemble (auto below 500 rows) with anchored members (each member's prior mean
    # drawn from the prior) or bootstrapped data (each member's rows resampled):
    "ensemble+sized+anchored": {"method": "ensemble", "spec": None, "options": {"anchored": True}},
    "ensemble+sized+bootstrap": {
        "method": "ensemble",
        "spec": None,
        "options": {"bootstrap": True},
    },
    # auto below 500 rows with the L-BFGS polish (as from 500 rows) in place of Adam's
    # training on until the members settle, its members stopped by the window test at
    # 0.003 or capped at 300 iterations:
    **{
        f"auto200+lbfgs+{name}": {
            "method": "ensemble",
            "options": {"polish": "lbfgs", **stop},
            "spec": None,
        }
        for name, stop in (
            ("window", {"polish_window_tol": 0.003}),
            ("p300", {"polish_steps": 300}),
        )
    },
    # auto on width 8 at every size (SPEC) instead of the network sized by the rows:
    "auto+w8": {"method": "auto", "spec": {}},
    # auto's ensemble from 500 rows (polished) with ARD, the scales learned from the first
    # Adam step (ard_warmup=0) or held at 1 through the whole Adam phase (ard_warmup=1;
    # auto holds them for the first 0.3); "+b256" adds auto's batches of 2 000 rows and more:
    "polished+ard": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "ard_warmup": 0.0},
        "spec": None,
        "prior": {"ard": True},
    },
    "polished+ard+hold": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "ard_warmup": 1.0},
        "spec": None,
        "prior": {"ard": True},
    },
    "polished+b256+ard": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "batch_size": 256, "ard_warmup": 0.0},
        "spec": None,
        "prior": {"ard": True},
    },
    # auto at 2 000 rows and more (polished, batches of 256, ARD held for 30 %) with the
    # polish capped at fewer L-BFGS iterations than its 1 000:
    **{
        f"auto2000+p{cap}": {
            "method": "ensemble",
            "options": {"polish": "lbfgs", "batch_size": 256, "polish_steps": cap},
            "spec": None,
            "prior": {"ard": True},
        }
        for cap in (100, 300)
    },
    # auto with the polish's window test (polish_window_tol=0.01: stop a member when 50
    # L-BFGS iterations lowered its loss by at most 0.01 nats per observed value), as auto
    # runs from 500 and from 2 000 rows. (In results/polish_window_N500 and _N2000, made
    # while auto had the test on, the variants "auto500+nowindow" and "auto2000+nowindow"
    # are auto without the test, and "auto" is these.) From 2 000 rows auto now runs the
    # test at 0.003 ("auto2000+window003", results/polish_map_window003_N2000);
    # "auto2000+nowindow" is auto there without it.
    "auto500+window": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "polish_window_tol": 0.01},
        "spec": None,
        "prior": {"ard": True},
    },
    **{
        f"auto2000+{name}": {
            "method": "ensemble",
            "options": {"polish": "lbfgs", "batch_size": 256, "polish_window_tol": tol},
            "spec": None,
            "prior": {"ard": True},
        }
        for name, tol in (("window", 0.01), ("window003", 0.003), ("nowindow", 0.0))
    },
    # auto from 2 000 rows with half its Adam steps (1 500): the full-batch polish
    # finishes what the batched Adam phase leaves:
    "auto2000+s1500": {
        "method": "ensemble",
        "options": AUTO2000_OPTIONS | {"num_steps": 1500},
        "spec": None,
        "prior": {"ard": True},
    },
    # auto from 2 000 rows with 16 members instead of 8:
    "auto2000+m16": {
        "method": "ensemble",
        "options": AUTO2000_OPTIONS | {"num_members": 16},
        "spec": None,
        "prior": {"ard": True},
    },
    # auto from 2 000 rows with twice its Adam steps (6 000), or twice as deep (16 layers):
    "auto2000+s6000": {
        "method": "ensemble",
        "options": AUTO2000_OPTIONS | {"num_steps": 6000},
        "spec": None,
        "prior": {"ard": True},
    },
    "auto2000+L16": {
        "method": "ensemble",
        "options": AUTO2000_OPTIONS,
        "spec": {"width": 16, "num_layers": 16},
        "prior": {"ard": True},
    },
    # auto from 2 000 rows on a network twice as wide (width 32 instead of 16):
    "auto2000+w32": {
        "method": "ensemble",
        "options": AUTO2000_OPTIONS,
        "spec": {"width": 32},
        "prior": {"ard": True},
    },
    # auto below 500 rows with Adam's cosine decay spread over all its steps (no training
    # on after them; auto decays over 3 000 and trains on at the final rate up to 9 000).
    # This and the variants below it up to the "+ard" ones have no ARD, as auto had none
    # below 500 rows until results/ard_auto_N200_*:
    **{
        f"auto200+cos{steps}": {
            "method": "ensemble",
            "options": {"num_steps": steps, "max_steps": steps},
            "spec": None,
        }
        for steps in (4500, 6000, 9000)
    },
    # ... and with another peak learning rate (auto's is 1e-2):
    **{
        f"auto200+cos{steps}+lr{lr:g}": {
            "method": "ensemble",
            "options": {"num_steps": steps, "max_steps": steps, "learning_rate": lr},
            "spec": None,
        }
        for steps in (6000, 9000)
        for lr in (5e-3, 2e-2)
    },
    # ... with half the members (one lane of two per core on two cores), and with more steps:
    **{
        f"auto200+m4{tag}": {
            "method": "ensemble",
            "options": {"num_members": 4, "num_steps": steps, "max_steps": steps},
            "spec": None,
        }
        for tag, steps in (("", 9000), ("+s12000", 12000))
    },
    # ... with fewer Euler steps through the same cubic W(t) (the same parameters):
    **{
        f"auto200+L{layers}": {
            "method": "ensemble",
            "options": {"num_steps": 9000, "max_steps": 9000},
            "spec": {"num_layers": layers},
        }
        for layers in (4, 6)
    },
    # ... with input relevance, the scales held at 1 for 15 %, 20 % or half the steps (auto
    # holds them for 30 %):
    **{
        f"auto200+ard{int(100 * hold)}": {
            "method": "ensemble",
            "options": {"num_steps": 9000, "max_steps": 9000, "ard_warmup": hold},
            "spec": None,
            "prior": {"ard": True},
        }
        for hold in (0.15, 0.2, 0.5)
    },
    # ... and auto (ARD held for 30 %) with another peak learning rate (auto's is 1e-2):
    **{
        f"auto200+ard+lr{lr:g}": {
            "method": "ensemble",
            "options": {"num_steps": 9000, "max_steps": 9000, "learning_rate": lr},
            "spec": None,
            "prior": {"ard": True},
        }
        for lr in (5e-3, 2e-2)
    },
    "polished+b256+ard+hold": {
        "method": "ensemble",
        "options": {"polish": "lbfgs", "batch_size": 256, "ard_warmup": 1.0},
        "spec": None,
        "prior": {"ard": True},
    },
}
DEFAULT_VARIANTS = ("ensemble", "mclmc")
VARIANT_KEYS = frozenset({"method", "options", "spec", "prior", "threads", "optimize_all"})

#: The network of every variant unless it says otherwise (``ResNetSpec`` arguments; the
#: basis by its spec-file name).
SPEC = {"width": 8, "num_layers": 8, "basis": "cubic"}

PROBLEMS = ("borehole", "friedman1", "ishigami", "oscillator", "sobol_g", "sine")
SIZES = (200, 1000, 2000, 5000, 10000)
NOISES = (0.0, 0.05)
NUM_TEST = 2000
LEVEL = 0.9
GP_MAX_N = 2000
GP_RESTARTS = 3
NUM_NORMAL_DRAWS = 1000  # draws of a Normal predictive (GP, control) for CRPS and coverage

#: ``--tiny``: one problem, 50 points, a small network and few steps (a smoke run).
TINY = {"problems": ("sine",), "sizes": (50,), "num_test": 200}
TINY_SPEC = {"width": 4, "num_layers": 2, "basis": "linear"}
TINY_OPTIONS = {
    "ensemble": {"num_members": 2, "num_steps": 50, "max_steps": 50},
    "mclmc": {"num_chains": 2, "num_warmup": 40, "num_samples": 20, "init_steps": 50},
    "svi": {"num_steps": 100, "init_steps": 50, "num_draws": 100},
    "nuts": {"num_chains": 2, "num_warmup": 20, "num_samples": 20, "init_steps": 50},
}


class Predictive(NamedTuple):
    """A method's prediction at the test points, and what it cost."""

    mean: np.ndarray  # [N, O] predictive mean of f
    draws: np.ndarray  # [S, N, O] predictive draws of noisy y
    fit_s: float
    predict_s: float
    info: dict  # method-specific extras (GP kernels, verdict, settings, ...)


# --------------------------------------------------------------------------- methods


def normal_draws(mean: np.ndarray, sd: np.ndarray, seed: int) -> np.ndarray:
    """``NUM_NORMAL_DRAWS`` draws ``[S, N, O]`` of independent Normal(mean, sd) per point."""
    z = np.random.default_rng(seed).standard_normal((NUM_NORMAL_DRAWS, *mean.shape))
    return mean + sd * z


def gp_kernel(num_inputs: int):
    """``ConstantKernel · Matérn-5/2 (one length scale per input) + WhiteKernel``."""
    from sklearn.gaussian_process import kernels

    matern = kernels.Matern(length_scale=np.ones(num_inputs), nu=2.5)
    return kernels.ConstantKernel(1.0) * matern + kernels.WhiteKernel(1e-2, (1e-10, 1e1))


def fit_gp(data: brn.Dataset, seed: int, x_test: np.ndarray) -> Predictive:
    """One scikit-learn GP per output on standardized inputs; Normal predictive draws.

    ``predict(return_std=True)`` includes the ``WhiteKernel``'s noise in the sd (its
    diagonal enters the prior variance at the test points).
    """
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.preprocessing import StandardScaler

    start = time.perf_counter()
    scaler = StandardScaler().fit(data.x_train)
    xs = scaler.transform(data.x_train)
    gps = [
        GaussianProcessRegressor(
            gp_kernel(xs.shape[1]),
            normalize_y=True,
            n_restarts_optimizer=GP_RESTARTS,
            random_state=seed,
        ).fit(xs, data.y_train[:, o])
        for o in range(data.y_train.shape[1])
    ]
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    out = [gp.predict(scaler.transform(x_test), return_std=True) for gp in gps]
    mean = np.stack([m for m, _ in out], axis=1)
    sd = np.stack([s for _, s in out], axis=1)
    draws = normal_draws(mean, sd, seed)
    predict_s = time.perf_counter() - start
    return Predictive(mean, draws, fit_s, predict_s, {"kernels": [str(gp.kernel_) for gp in gps]})


def fit_train_mean(data: brn.Dataset, seed: int, x_test: np.ndarray) -> Predictive:
    """The control: Normal(training mean, training sd) at every test point."""
    start = time.perf_counter()
    mu, sd = data.y_train.mean(axis=0), data.y_train.std(axis=0, ddof=1)
    fit_s = time.perf_counter() - start
    start = time.perf_counter()
    mean = np.broadcast_to(mu, (len(x_test), mu.size))
    draws = normal_draws(mean, np.broadcast_to(sd, mean.shape), seed)
    return Predictive(mean, draws, fit_s, time.perf_counter() - start, {})


#: Predictors that are not bayesresnet variants: ``(data, seed, x_test) -> Predictive``.
CONTROLS = {"train_mean": fit_train_mean}


def check_variant(name: str, variant: dict) -> None:
    """A variant's keys and method, before any fit runs."""
    unknown = sorted(set(variant) - VARIANT_KEYS)
    if unknown or "method" not in variant:
        raise ValueError(
            f"variant {name!r} must have a `method` and only the keys {sorted(VARIANT_KEYS)}; "
            f"got {sorted(variant)}."
        )
    methods = [brn.infer.AUTO, *sorted(brn.infer.METHODS)]
    if variant["method"] not in methods:
        raise ValueError(
            f"variant {name!r}: `method` must be one of {methods}; got {variant['method']!r}."
        )
    if variant["method"] == brn.infer.AUTO and variant.get("options"):
        raise ValueError(f"variant {name!r}: method 'auto' takes no `options`.")


def variant_arguments(variant: dict, data: brn.Dataset, tiny: bool) -> dict:
    """``brn.fit`` keyword arguments of a variant (``--tiny`` shrinks net and steps)."""
    method = variant["method"]
    options = dict(variant.get("options", {}))
    spec = variant.get("spec", {})
    if tiny and method != brn.infer.AUTO:  # auto takes no options
        options |= TINY_OPTIONS.get(method, {})
        spec = spec | TINY_SPEC if isinstance(spec, dict) else spec
    if isinstance(spec, dict):  # overrides of SPEC; anything else goes to brn.fit as it is
        fields = SPEC | spec
        basis = fields.pop("basis")
        basis = brn.bases.make_basis(basis) if isinstance(basis, str) else basis
        spec = brn.ResNetSpec(data.x_train.shape[1], data.y_train.shape[1], basis=basis, **fields)
    prior = brn.PriorSpec(**variant["prior"]) if "prior" in variant else None
    return {"spec": spec, "method": method, "prior": prior, **options}


@contextlib.contextmanager
def optimized_all(on: bool | None):
    """Inside, with ``on``, programs run once are compiled with XLA's full optimization
    too (``core.ONCE_MAX_FLOPS`` below every program's count); as before after."""
    saved = core.ONCE_MAX_FLOPS
    if on:
        core.ONCE_MAX_FLOPS = -1.0
    try:
        yield
    finally:
        core.ONCE_MAX_FLOPS = saved


def fit_variant(
    variant: dict, data: brn.Dataset, seed: int, x_test: np.ndarray, tiny: bool
) -> Predictive:
    """Fit a bayesresnet variant, predict at ``x_test`` and get its convergence verdict."""
    kwargs = variant_arguments(variant, data, tiny)
    spec = kwargs.pop("spec")
    with threads_set(variant.get("threads")), optimized_all(variant.get("optimize_all")):
        start = time.perf_counter()
        post = brn.fit(spec, data, seed=seed, **kwargs)
        fit_s = time.perf_counter() - start
        start = time.perf_counter()
        pred = post.predict(x_test, seed=seed, levels=(LEVEL,), return_draws=True)
        predict_s = time.perf_counter() - start
        threads = lane_threads()
    start = time.perf_counter()
    verdict = brn.diagnostics.convergence(post).verdict
    info = {
        "verdict": verdict,
        "diagnostics_s": time.perf_counter() - start,
        "num_draws": int(pred.y.shape[0]),
        "settings": {k: repr(v) for k, v in post.settings.items()},
        "threads": threads,
        "spec": repr(post.spec),
        "engine_timings": {k: float(v) for k, v in post.timings.items()},
        # each member's fit's distance to its optimum in noise sds (ensembles trained by
        # Adam alone; EnsembleConfig.prediction_tol), None where not measured
        "member_fit_distance": post.extra.get("member_fit_distance"),
    }
    return Predictive(pred.mean, pred.y, fit_s, predict_s, info)


# --------------------------------------------------------------------------- metrics


def score(pred: Predictive, truth: np.ndarray, y_test: np.ndarray, output_std) -> dict:
    """Relative RMSE against the truth, relative CRPS and 90 % coverage against ``y_test``."""
    rel_rmse = calibration.rmse(pred.mean, truth) / output_std
    points = calibration.crps(pred.draws, y_test) / output_std  # [N_test, O]
    crps = points.mean(axis=0)
    cover = calibration.coverage(pred.draws, y_test, [LEVEL])[0]
    return {
        "rel_rmse": float(rel_rmse.mean()),
        "crps": float(crps.mean()),
        "coverage_90": float(cover.mean()),
        "rel_rmse_per_output": rel_rmse.tolist(),
        "crps_per_output": crps.tolist(),
        "coverage_90_per_output": cover.tolist(),
        "fit_s": pred.fit_s,
        "predict_s": pred.predict_s,
        "total_s": pred.fit_s + pred.predict_s,
        "_crps_points": points.mean(axis=1),  # [N_test]: for the paired ratio, not saved
    }


def ratio_se(points: np.ndarray, reference: np.ndarray) -> float:
    """Standard error of ``mean(points)/mean(reference)`` over the same test points (the
    delta method on the paired differences ``points − R · reference``): the part of a CRPS
    ratio's uncertainty that the choice of test points makes."""
    ratio = points.mean() / reference.mean()
    diff = points - ratio * reference
    return float(diff.std(ddof=1) / np.sqrt(len(diff)) / reference.mean())


def warning_lines(caught) -> list[str]:
    """The distinct warnings of a fit, first line each, with their counts."""
    lines = [f"{w.category.__name__}: {str(w.message).splitlines()[0]}" for w in caught]
    return [f"{line} (x{lines.count(line)})" for line in dict.fromkeys(lines)]


def fresh_caches() -> None:
    """Forget every compiled program of this process, as a new process starts."""
    jax.clear_caches()
    clear_compiled()


def cached_times(run, data: brn.Dataset, seed: int) -> dict:
    """``fit_cached_s``, ``predict_cached_s`` and ``total_cached_s`` of ``run`` as a new
    process finds them with a persistent compilation cache that an earlier run of the same
    sizes filled (module docstring): one run fills a temporary cache folder (this
    function's own, removed after), the process's caches are cleared, a second is timed."""
    with tempfile.TemporaryDirectory(prefix="bench-compile-cache-") as folder:
        enable_compile_cache(Path(folder) / "cache")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                run(data, seed, data.x_test)
                fresh_caches()
                pred = run(data, seed, data.x_test)
        finally:
            enable_compile_cache(None)
    return {
        "fit_cached_s": pred.fit_s,
        "predict_cached_s": pred.predict_s,
        "total_cached_s": pred.fit_s + pred.predict_s,
    }


def run_case(problem: str, noise: float, n: int, seed: int, methods: dict, args) -> list[dict]:
    """Every method on one data set; ratios to the GP of the same case where it ran."""
    prob = brn.problems.get(problem)
    num_test = TINY["num_test"] if args.tiny else NUM_TEST
    data = prob.sample(seed=seed, num_train=n, num_test=num_test, noise=noise)
    truth = prob.evaluate(data.x_test)
    case = {"problem": problem, "noise": noise, "n": n, "seed": seed}
    rows = []
    for name, run in methods.items():
        if name == "gp" and n > args.gp_max_n:
            continue
        print(f"{problem} noise={noise} N={n} seed={seed}: {name} ...", flush=True)
        fresh_caches()  # every fit compiles, as a user's first fit in a fresh process
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            pred = run(data, seed, data.x_test)
        rows.append(case | {"method": name} | score(pred, truth, data.y_test, prob.output_std))
        rows[-1] |= pred.info | {"warnings": warning_lines(caught)}
        if args.cached and name in VARIANTS:
            fresh_caches()
            rows[-1] |= cached_times(run, data, seed)
    gp = next((r for r in rows if r["method"] == "gp"), None)
    for row in rows:
        if gp is not None:
            row["crps_ratio_gp"] = row["crps"] / gp["crps"]
            row["crps_ratio_gp_se"] = ratio_se(row["_crps_points"], gp["_crps_points"])
            row["time_ratio_gp"] = row["total_s"] / gp["total_s"]
            if "total_cached_s" in row:
                row["time_ratio_gp_cached"] = row["total_cached_s"] / gp["total_s"]
    for row in rows:
        del row["_crps_points"]
    return rows


# --------------------------------------------------------------------------- output


def _versions() -> dict:
    names = ("jax", "numpyro", "blackjax", "optax", "scikit-learn", "numpy")
    return {k: version(k) for k in names} | {"bayesresnet": brn.__version__}


def machine() -> dict:
    """Where the run ran (the load average says how busy the machine was)."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(),
        "device": str(jax.devices()[0]),
        "versions": _versions(),
        "load_average_start": list(os.getloadavg()),
    }


def _cell(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def _ratio_cell(row) -> str:
    """``1.010 ± 0.004`` (the paired standard error over the test points, where recorded)."""
    ratio, se = row.get("crps_ratio_gp"), row.get("crps_ratio_gp_se")
    if ratio is None or se is None or row["method"] == "gp":
        return _cell(ratio, ".2f")
    return f"{ratio:.3f} ± {se:.3f}"


def _time_cell(row) -> str:
    """``5.8`` (fit + predict over the GP's), with ``--cached`` ``5.8 (cached 3.9)``."""
    cell = _cell(row.get("time_ratio_gp"), ".1f")
    if "total_cached_s" not in row:
        return cell
    cached = row.get("time_ratio_gp_cached")
    then = format(cached, ".1f") if cached is not None else f"{row['total_cached_s']:.1f} s"
    return f"{cell} (cached {then})"


def format_table(results: dict) -> str:
    """The rows as a Markdown table, with the settings and skipped GPs above it."""
    s = results["settings"]
    m = results["machine"]
    lines = [
        f"# bayesresnet vs scikit-learn GP ({'tiny' if s['tiny'] else 'full'} run)",
        "",
        f"Machine: {m['platform']}, {m['cpu_count']} CPUs, {m['device']}, load average at "
        f"start {m['load_average_start'][0]:.1f}. Test points: {s['num_test']}; CRPS and "
        "RMSE relative to each output's sd over the domain; CRPS and coverage against the "
        "noisy test y (the truth when noise = 0). Times in seconds, compilation included.",
        "",
    ]
    if s.get("cached"):
        lines += [
            "`(cached …)`: fit + predict over the GP's as a later run finds them, with the "
            "compilation cache an earlier run of the same sizes filled (`--cached`; in "
            "seconds where the GP did not run).",
            "",
        ]
    if "parts" in results:
        files = ", ".join(f"`{p['file']}`" for p in results["parts"])
        lines += [f"Combined from runs in parallel processes (ratios within each): {files}.", ""]
    skipped = sorted({r["n"] for r in results["rows"]} - set(results["gp_ran_at"]))
    if skipped:
        lines += [f"GP skipped above N = {s['gp_max_n']} (`--gp-max-n`): N = {skipped}.", ""]
    lines += [
        "| problem | noise | N | method | rel RMSE % | CRPS | CRPS / GP (± se) | cov 90 | fit s "
        "| predict s | time / GP | verdict | warnings |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results["rows"]:
        lines.append(
            f"| {r['problem']} | {r['noise']:g} | {r['n']} | {r['method']} | "
            f"{100 * r['rel_rmse']:.3f} | {r['crps']:.2e} | "
            f"{_ratio_cell(r)} | {r['coverage_90']:.3f} | "
            f"{r['fit_s']:.1f} | {r['predict_s']:.2f} | {_time_cell(r)} "
            f"| {r.get('verdict', '')} | {len(r['warnings'])} |"
        )
    return "\n".join(lines) + "\n"


def _save(fig, path: Path) -> None:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    plt.close(fig)
    write_atomic(path, buffer.getvalue())


def plot(results: dict, path: Path) -> None:
    """Time (fit + predict) against N per method, log-log (geometric mean over problems
    and noise levels, each case faint); CRPS ratio to the GP per problem at each N."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["rows"]
    methods = list(dict.fromkeys(r["method"] for r in rows))
    gp_sizes = results["gp_ran_at"]
    fig, axes = plt.subplots(1, 1 + len(gp_sizes), figsize=(5 + 4.5 * len(gp_sizes), 4))
    axes = np.atleast_1d(axes)

    # Log axes with limits fixed before plotting: matplotlib's own for a single point can
    # be degenerate (a zero-height transform, a division by zero in tight_layout).
    # Times under 1 ms are drawn at 1 ms.
    def shown(row):
        return max(row["total_s"], 1e-3)

    ns = [r["n"] for r in rows]
    axes[0].set(xscale="log", yscale="log", autoscale_on=False)
    axes[0].set_xlim(min(ns) / 1.5, max(ns) * 1.5)
    axes[0].set_ylim(min(map(shown, rows)) / 2, max(map(shown, rows)) * 2)
    for i, name in enumerate(methods):
        color = f"C{i}"
        mine = [r for r in rows if r["method"] == name]
        sizes = sorted({r["n"] for r in mine})
        axes[0].plot([r["n"] for r in mine], [shown(r) for r in mine], ".", color=color, alpha=0.3)
        geo = [np.exp(np.mean([np.log(shown(r)) for r in mine if r["n"] == n])) for n in sizes]
        axes[0].plot(sizes, geo, "o-", color=color, label=name)
    axes[0].set(xlabel="training points N", ylabel="fit + predict s", title="time")
    axes[0].legend()
    problems = list(dict.fromkeys(r["problem"] for r in rows))
    others = [m for m in methods if m != "gp"]
    noises = sorted({r["noise"] for r in rows})
    width = 0.8 / max(len(others) * len(noises), 1)
    for ax, n in zip(axes[1:], gp_sizes):
        for j, (name, noise) in enumerate((m, z) for m in others for z in noises):
            vals = [
                next(
                    (
                        r.get("crps_ratio_gp", np.nan)
                        for r in rows
                        if r["problem"] == p
                        and r["n"] == n
                        and r["method"] == name
                        and r["noise"] == noise
                    ),
                    np.nan,
                )
                for p in problems
            ]
            ax.bar(
                np.arange(len(problems)) + j * width,
                vals,
                width,
                hatch="//" if noise else "",
                color=f"C{methods.index(name)}",
                edgecolor="k",
                label=f"{name}, noise {noise:g}",
            )
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(1.25, color="k", ls=":", lw=0.8)
        ax.set_xticks(
            np.arange(len(problems)) + width * (len(others) * len(noises) - 1) / 2,
            problems,
            rotation=30,
        )
        ax.set_yscale("log")
        ax.set(title=f"CRPS / GP's CRPS, N = {n}")
        ax.legend(fontsize=7)
    fig.tight_layout()
    _save(fig, path)


def combine(paths) -> dict:
    """One result from runs of disjoint cases (problems run in parallel processes, say).

    Each run's rows, ratios to its own GP included, are kept as they are, in the order of
    ``paths``; the runs must agree on every setting but the problems, sizes, noise levels
    and seeds, and no case may appear twice. ``parts`` records each run's file, cases and
    machine (its load average says how busy the machine was).
    """
    runs = [json.loads(Path(p).read_text()) for p in paths]
    case_keys = ("problems", "sizes", "noise", "seeds")
    for run in runs:  # runs from before --cached were not cached
        run["settings"] = {"cached": False} | run["settings"]
    first = runs[0]["settings"]
    shared = {k: v for k, v in first.items() if k not in case_keys}
    for path, run in zip(paths, runs):
        other = {k: v for k, v in run["settings"].items() if k not in case_keys}
        if other != shared:
            diff = sorted(k for k in shared.keys() | other.keys() if shared.get(k) != other.get(k))
            raise ValueError(f"{path} was run with other settings than {paths[0]}: {diff}")
    rows = [row for run in runs for row in run["rows"]]
    cases = [(r["problem"], r["noise"], r["n"], r["seed"], r["method"]) for r in rows]
    twice = sorted({c for c in cases if cases.count(c) > 1})
    if twice:
        raise ValueError(f"cases in more than one of the runs: {twice}")
    settings = shared | {
        k: sorted({v for run in runs for v in run["settings"][k]}) for k in case_keys
    }
    return {
        "settings": settings,
        "machine": runs[0]["machine"],
        "gp_ran_at": sorted({n for run in runs for n in run["gp_ran_at"]}),
        "parts": [
            {
                "file": Path(p).name,
                "problems": run["settings"]["problems"],
                "noise": run["settings"]["noise"],
                "machine": run["machine"],
            }
            for p, run in zip(paths, runs)
        ],
        "rows": rows,
    }


def default_out(args) -> Path:
    """``benchmarks/results/surrogates_N<sizes>_seed<seeds>[_tiny].json``."""
    name = f"surrogates_N{'-'.join(map(str, args.sizes))}_seed{'-'.join(map(str, args.seeds))}"
    return ROOT / "benchmarks" / "results" / f"{name}{'_tiny' if args.tiny else ''}.json"


def outputs(out: Path) -> tuple[Path, Path, Path]:
    """The JSON, Markdown and PNG files of a run."""
    return out, out.with_suffix(".md"), out.with_suffix(".png")


# --------------------------------------------------------------------------- command line


def _list(kind, choices=None):
    def parse(text: str) -> tuple:
        values = tuple(kind(v) for v in text.split(",") if v)
        bad = [v for v in values if choices is not None and v not in choices]
        if bad or not values:
            raise argparse.ArgumentTypeError(f"{bad or text!r}: choose from {list(choices)}")
        return values

    return parse


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    names = (*VARIANTS, *CONTROLS)
    parser.add_argument(
        "--problems",
        type=_list(str, PROBLEMS),
        default=None,
        help=f"comma-separated, from {list(PROBLEMS)} (default: all)",
    )
    parser.add_argument(
        "--sizes",
        type=_list(int),
        default=None,
        help=f"training points N, comma-separated (default {SIZES})",
    )
    parser.add_argument(
        "--noise",
        type=_list(float),
        default=NOISES,
        help="noise sd as a fraction of the output's sd (default 0,0.05)",
    )
    parser.add_argument(
        "--variants",
        type=_list(str, names),
        default=DEFAULT_VARIANTS,
        help=f"from {list(names)} (default {','.join(DEFAULT_VARIANTS)})",
    )
    parser.add_argument("--seeds", type=_list(int), default=(0,))
    parser.add_argument(
        "--gp-max-n",
        type=int,
        default=GP_MAX_N,
        help="skip the GP above this many training points (default %(default)s)",
    )
    parser.add_argument(
        "--tiny",
        action="store_true",
        help="seconds: sine, N = 50, a small network, few steps (a smoke run)",
    )
    parser.add_argument(
        "--cached",
        action="store_true",
        help="also time each bayesresnet fit + predict as a later run finds it with the "
        "compilation cache an earlier run filled (two more fits each)",
    )
    parser.add_argument(
        "--out",
        default=None,
        help="the JSON file (default: named after the "
        "sizes and seeds in benchmarks/results/); .md and .png beside it",
    )
    parser.add_argument(
        "--combine",
        nargs="+",
        default=None,
        metavar="JSON",
        help="instead of measuring, join the rows of these runs' JSON files "
        "(disjoint cases, same settings) into --out, its table and figure",
    )
    args = parser.parse_args(argv)
    if args.combine and not args.out:
        parser.error("--combine needs --out")
    args.problems = args.problems or (TINY["problems"] if args.tiny else PROBLEMS)
    args.sizes = args.sizes or (TINY["sizes"] if args.tiny else SIZES)
    if min(args.sizes) < 3 or min(args.noise) < 0 or min(args.seeds) < 0:
        parser.error("--sizes must be ≥ 3, --noise ≥ 0 and --seeds ≥ 0")
    if args.cached and jax.config.jax_compilation_cache_dir:
        parser.error(
            "--cached times fits with a compilation cache of its own, but JAX was given "
            f"one ({jax.config.jax_compilation_cache_dir}): unset JAX_COMPILATION_CACHE_DIR"
        )
    args.out = Path(args.out) if args.out else default_out(args)
    existing = [str(p) for p in outputs(args.out) if p.exists()]
    if existing:
        parser.error(f"{existing} exist: choose another --out (runs never overwrite files)")
    return args


def write_outputs(results: dict, out: Path) -> None:
    """The JSON, the Markdown table (also printed) and the figure of a run."""
    json_path, md_path, png_path = outputs(out)
    table = format_table(results)
    print(table)
    write_json(json_path, results)
    write_atomic(md_path, table.encode())
    plot(results, png_path)
    print(f"wrote {json_path}, {md_path.name} and {png_path.name}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    if args.combine:
        results = combine(args.combine)
        write_outputs(results, args.out)
        return results
    for name, variant in VARIANTS.items():
        check_variant(name, variant)
    methods = {"gp": fit_gp}
    for name in args.variants:
        if name in CONTROLS:
            methods[name] = CONTROLS[name]
        else:
            methods[name] = lambda d, s, x, v=VARIANTS[name]: fit_variant(v, d, s, x, args.tiny)
    results = {
        "settings": {
            "problems": list(args.problems),
            "sizes": list(args.sizes),
            "noise": list(args.noise),
            "seeds": list(args.seeds),
            "variants": {n: repr(VARIANTS.get(n, "control")) for n in args.variants},
            "spec": SPEC | (TINY_SPEC if args.tiny else {}),
            "gp": {"kernel": str(gp_kernel(2)), "restarts": GP_RESTARTS, "normalize_y": True},
            "gp_max_n": args.gp_max_n,
            "num_test": TINY["num_test"] if args.tiny else NUM_TEST,
            "tiny": args.tiny,
            "cached": args.cached,
        },
        "machine": machine(),
        "gp_ran_at": [n for n in args.sizes if n <= args.gp_max_n],
        "rows": [],
    }
    for problem in args.problems:
        for noise in args.noise:
            for n in args.sizes:
                for seed in args.seeds:
                    results["rows"] += run_case(problem, noise, n, seed, methods, args)
                    write_json(args.out, results)  # what is measured so far survives a stop
    results["machine"]["load_average_end"] = list(os.getloadavg())
    write_outputs(results, args.out)
    return results


if __name__ == "__main__":
    main()
