"""Calibration of two borehole inputs through a surrogate's draws (``epost``), timed.

Two cases (``--case``):

- ``svi64``: a mean-field SVI fit of borehole's network (8 inputs, width 16, 4 layers,
  cubic basis) on 200 Latin-hypercube runs, with 64 draws from the guide. Observations:
  the true borehole function at 6 known settings of the other six inputs, with noise sd
  2 % of the output's sd, known. ``epost`` runs 64 draws × 2 chains = 128 NUTS chains of
  500 warm-up and 500 sampling steps.
- ``readme``: the README's ``bayesresnet calibrate``: ``models/borehole.toml``'s deep
  ensemble (8 members, so 16 chains), ``rw`` and ``Kw`` from the 8 observations of
  ``models/data/borehole_observations.csv``, the noise sd inferred (``--steps 300``
  matches the command's 300 + 300 steps).

Each variant (``--variants``, ``chain_method:target_accept_prob`` pairs) is run in this
one process, one after another on the same surrogate and observations. Measured: the
wall time of a first call (tracing, compiling and running) and of a warm call (the
compiled program reused), split into sampling and post-processing (predictive draws, log
likelihood, the extrapolation check); the leapfrog steps (gradient evaluations) the
chains took while sampling, and the *lock-step* leapfrogs: vectorized chains advance
together, so each NUTS step costs the longest trajectory among them; the worst R-hat,
smallest bulk ESS and divergences. Writes JSON (atomically).

Measured (2 CPU cores, ``benchmarks/results/inverse_readme.json`` and
``inverse_svi64.json``), first call / worst R-hat / divergences:

=======  ==============  =====================  =====================
case     target accept.  vectorized             sequential
=======  ==============  =====================  =====================
readme   0.8             38.7 s, 1.149, 31      19.2 s, 1.191, 37
readme   0.95            40.4 s, 1.019, 0       27.2 s, 1.039, 1
svi64    0.8             94.3 s, 2.148, 28      33.8 s, 1.530, 74
svi64    0.95            (not run)              41.7 s, 1.078, 0
=======  ==============  =====================  =====================

With the sequential chains of the README's case in 4 groups side by side on the 2 cores
(``--variants sequential:0.95:1,sequential:0.95:2``, ``results/inverse_lanes.json``): 11.7 s
warm against 20.6 s on one thread, the same draws (worst R-hat 1.036, 0 divergences).

The chains took 16–55 leapfrogs per step on average, vectorized they paid 2.7× (16
chains) and 4.7× (128) that. Hence :data:`bayesresnet.inverse.CHAIN_METHODS`'s
``"auto"`` (one after another on one CPU) and the target acceptance 0.95
(:data:`bayesresnet.inverse.TARGET_ACCEPT_PROB`).

Usage:
    python benchmarks/bench_inverse.py [--quick] [--case svi64|readme] [--steps N]
        [--variants vectorized:0.95,sequential:0.95] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import platform
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import bayesresnet as brn
from bayesresnet import inverse
from bayesresnet._io import write_json
from bayesresnet.infer.lanes import lane_threads, threads_set

ROOT = Path(__file__).resolve().parent.parent
UNKNOWN = ("rw", "Hu")


def surrogate(num_draws: int, quick: bool) -> brn.Posterior:
    """An SVI posterior of borehole's network with ``num_draws`` guide draws."""
    problem = brn.problems.get("borehole")
    data = problem.sample(0, num_train=60 if quick else 200, num_test=0, design="lhs")
    width, layers = (4, 2) if quick else (16, 4)
    spec = brn.ResNetSpec(8, 1, width=width, num_layers=layers, basis=brn.bases.Cubic())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a step budget, not convergence
        return brn.fit(
            spec,
            data,
            method="svi",
            guide="meanfield",
            num_steps=200 if quick else 3000,
            num_draws=num_draws,
            init_steps=100 if quick else 1000,
        )


def observations(num_obs: int = 6, seed: int = 0):
    """Known settings ``[M, 6]`` and noisy observations of the true simulator."""
    problem = brn.problems.get("borehole")
    rng = np.random.default_rng(seed)
    lower, upper = problem.bounds[:, 0], problem.bounds[:, 1]
    cols = [j for j, n in enumerate(problem.input_names) if n not in UNKNOWN]
    x = lower + (upper - lower) * rng.uniform(size=(num_obs, 8))
    x[:, [problem.input_names.index(n) for n in UNKNOWN]] = [0.1, 1050.0]
    sigma = 0.02 * float(problem.output_std[0])
    y = problem.evaluate(x) + sigma * rng.standard_normal((num_obs, 1))
    return x[:, cols], y, sigma


def readme_case(quick: bool):
    """The README's ``bayesresnet calibrate``: ``models/borehole.toml``'s deep ensemble
    (8 members) and ``models/data/borehole_observations.csv``, ``rw`` and ``Kw`` unknown
    (``prior=None``: uniform on the training box, as the command's), the noise sd
    inferred, the command's surrogate draws and chains; ``(post, y, kwargs)``."""
    import pandas as pd

    from bayesresnet.app import cli
    from bayesresnet.app.runspec import load_runspec
    from bayesresnet.data import read_table

    runspec = load_runspec(ROOT / "models" / "borehole.toml")
    dataset = runspec.load_dataset()
    kwargs = runspec.fit_kwargs() | ({"num_steps": 100, "max_steps": 100} if quick else {})
    post = brn.fit(runspec.resnet_spec(dataset), dataset, **kwargs)
    header, values = read_table(ROOT / "models" / "data" / "borehole_observations.csv")
    table = pd.DataFrame(values, columns=header)  # calibrate picks the known inputs by name
    kw = {"unknown": ["rw", "Kw"], "known": table, "num_chains": cli.CALIBRATE_NUM_CHAINS}
    kw["surrogate_draws"] = cli.CALIBRATE_SURROGATE_DRAWS
    return post, table[list(post.output_names)].to_numpy(), kw


def svi_case(quick: bool):
    """64 draws of an SVI surrogate, ``rw`` and ``Hu`` unknown, the noise sd known."""
    post = surrogate(8 if quick else 64, quick)
    known, y, sigma = observations()
    kw = {"unknown": list(UNKNOWN), "known": known, "noise": sigma}
    return post, y, kw | {"surrogate_draws": 64, "num_chains": 2}


CASES = {"svi64": svi_case, "readme": readme_case}


def run(post, y, kwargs: dict, steps: int, variant: tuple) -> dict:
    """A first and a warm call of ``calibrate(..., propagate="epost")``, with ``variant``
    ``(chain_method, target_accept_prob, threads)`` (threads ``None``: the default)."""
    chain_method, accept, threads = variant
    with threads_set(threads):
        out = _calls(post, y, kwargs, steps, chain_method, accept)
        return {"threads": lane_threads(), **out}


def _calls(post, y, kwargs: dict, steps: int, chain_method: str, accept: float) -> dict:
    calls = []
    for _ in range(2):
        start = time.perf_counter()
        result = inverse.calibrate(
            post, y, num_warmup=steps, num_samples=steps, chain_method=chain_method,
            target_accept_prob=accept, **kwargs,
        )  # fmt: skip
        calls.append({"total_s": time.perf_counter() - start, **result.timings})
        print(f"  {chain_method} {accept}: call {len(calls)}: {calls[-1]}", flush=True)
    n_steps = np.asarray(result.idata.sample_stats["n_steps"].values)  # [chains, draws]
    warm = calls[1]
    lockstep = int(n_steps.max(axis=0).sum())
    summary = result.summary()
    # Warm-up steps are not recorded; the time per leapfrog assumes they cost as much as
    # the sampling steps. Vectorized chains pay the lock-step leapfrogs, sequential ones
    # their own.
    paid = lockstep if chain_method == "vectorized" else int(n_steps.sum())
    return {
        "chain_method": chain_method,
        "target_accept_prob": accept,
        "first_call": calls[0],
        "warm": warm,
        "compile_s": calls[0]["sample"] - warm["sample"],
        "chains": int(n_steps.shape[0]),
        "steps_per_chain": 2 * steps,
        "leapfrogs_sampling": int(n_steps.sum()),
        "mean_leapfrogs_per_step": float(n_steps.mean()),
        "lockstep_leapfrogs_sampling": lockstep,
        "lockstep_waste": float(lockstep / n_steps.mean(axis=0).sum()),
        "s_per_paid_leapfrog": warm["sample"] / (2 * paid),
        "theta_mean": summary["mean"].tolist(),
        "theta_sd": summary["sd"].tolist(),
        "r_hat_max": float(summary["r_hat"].max()),
        "ess_bulk_min": float(summary["ess_bulk"].min()),
        "divergences": int(summary["divergences"].max()),
        "surrogate_share": result.surrogate_share().tolist(),
    }


def parse_variant(text: str) -> tuple:
    """``chain_method:target_accept_prob[:threads]`` → ``(method, accept, threads)``."""
    method, accept, *threads = text.split(":")
    return method, float(accept), int(threads[0]) if threads else None


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 draws, 30 + 30 steps, tiny net")
    parser.add_argument("--case", choices=sorted(CASES), default="svi64")
    parser.add_argument(
        "--variants", default="vectorized:0.95,sequential:0.95",
        help="chain_method:target_accept_prob[:threads], run one after another in this "
        "process (threads: $BAYESRESNET_THREADS for the variant; default the cores)",
    )  # fmt: skip
    parser.add_argument("--steps", type=int, help="warm-up and sampling steps (default 500)")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inverse.json"))
    args = parser.parse_args(argv)
    variants = [parse_variant(v) for v in args.variants.split(",")]
    steps = args.steps or (30 if args.quick else 500)
    start = time.perf_counter()
    post, y, kwargs = CASES[args.case](args.quick)
    fit_s = time.perf_counter() - start
    print(f"  surrogate fitted in {fit_s:.1f} s", flush=True)
    results = {
        "quick": args.quick,
        "case": args.case,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "surrogate_draws": min(kwargs["surrogate_draws"], post.num_samples),
        "fit_s": fit_s,
        "variants": [run(post, y, kwargs, steps, v) for v in variants],
    }
    for r in results["variants"]:
        warm = r["warm"]
        print(
            f"epost, {r['chain_method']} on {r['threads']} threads, target acceptance "
            f"{r['target_accept_prob']}: "
            f"{r['chains']} chains × {r['steps_per_chain']} steps on {results['device']}: "
            f"{warm['total_s']:.1f} s warm (first call {r['first_call']['total_s']:.1f} s); "
            f"{r['mean_leapfrogs_per_step']:.1f} leapfrogs per step on average "
            f"({r['lockstep_waste']:.1f}× that in lock-step); worst R-hat "
            f"{r['r_hat_max']:.3f}, {r['divergences']} divergences"
        )
    write_json(Path(args.out), results)
    return results


if __name__ == "__main__":
    main()
