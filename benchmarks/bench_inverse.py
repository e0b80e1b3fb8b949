"""Calibration of two borehole inputs through 64 surrogate draws (``epost``), timed.

The surrogate is a mean-field SVI fit of borehole's network (8 inputs, width 16, 4 layers,
cubic basis) on 200 Latin-hypercube runs, with 64 draws from the guide. Observations:
the true borehole function at 6 known settings of the other six inputs, with noise sd
2 % of the output's sd. ``epost`` runs 64 draws × 2 chains = 128 NUTS chains of 500
warm-up and 500 sampling steps as one vectorized program.

Measured: the wall time of a first call (tracing, compiling and running) and of a warm
call (the compiled program reused), split into sampling and post-processing (predictive
draws, log likelihood, the extrapolation check); the leapfrog steps (gradient
evaluations) the chains took while sampling, and the *lock-step* leapfrogs: chains
vectorized with ``vmap`` advance together, so each NUTS step costs the longest
trajectory among the 128 chains. Writes JSON (atomically).

Measured once (CPU, 2 cores shared with other jobs, load average about 7): the SVI fit
68 s; the first call 113 s, of which about 31 s compiling; the warm call 78 s, all but
0.2 s of it sampling. Sampling dominates, and within it the lock-step: the chains took
13.6 leapfrogs per step on average, but each step costs the longest trajectory of the
128, 4.1 times as many, at 1.4 ms per lock-step leapfrog (128 gradients of the network
at 6 points). Fewer chains per program, or a fixed trajectory length, would cut it.

Usage:
    python benchmarks/bench_inverse.py [--quick] [--out benchmarks/results/inverse.json]
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


def run(post, steps: int) -> dict:
    """A first and a warm call of ``calibrate(..., propagate="epost")``."""
    known, y, sigma = observations()
    calls = []
    for _ in range(2):
        start = time.perf_counter()
        result = inverse.calibrate(
            post, y, unknown=list(UNKNOWN), known=known, noise=sigma, surrogate_draws=64,
            num_warmup=steps, num_samples=steps, num_chains=2,
        )  # fmt: skip
        calls.append({"total_s": time.perf_counter() - start, **result.timings})
        print(f"  call {len(calls)}: {calls[-1]}", flush=True)
    n_steps = np.asarray(result.idata.sample_stats["n_steps"].values)  # [chains, draws]
    warm = calls[1]
    lockstep = int(n_steps.max(axis=0).sum())
    summary = result.summary()
    return {
        "first_call": calls[0],
        "warm": warm,
        "compile_s": calls[0]["sample"] - warm["sample"],
        "chains": int(n_steps.shape[0]),
        "steps_per_chain": 2 * steps,
        "leapfrogs_sampling": int(n_steps.sum()),
        "mean_leapfrogs_per_step": float(n_steps.mean()),
        "lockstep_leapfrogs_sampling": lockstep,
        "lockstep_waste": float(lockstep / n_steps.mean(axis=0).sum()),
        # Warm-up steps are not recorded; the time per lock-step leapfrog assumes they
        # cost as much as the sampling steps.
        "s_per_lockstep_leapfrog": warm["sample"] / (2 * lockstep),
        "theta_mean": summary["mean"].tolist(),
        "theta_sd": summary["sd"].tolist(),
        "r_hat_max": float(summary["r_hat"].max()),
        "divergences": int(summary["divergences"].max()),
        "surrogate_share": result.surrogate_share().tolist(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="8 draws, 30 + 30 steps, tiny net")
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inverse.json"))
    args = parser.parse_args(argv)
    draws, steps = (8, 30) if args.quick else (64, 500)
    start = time.perf_counter()
    post = surrogate(draws, args.quick)
    fit_s = time.perf_counter() - start
    print(f"  surrogate fitted in {fit_s:.1f} s", flush=True)
    results = {
        "quick": args.quick,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "surrogate_draws": draws,
        "fit_s": fit_s,
        **run(post, steps),
    }
    warm = results["warm"]
    print(
        f"epost: {results['chains']} chains × {results['steps_per_chain']} steps on "
        f"{results['device']}: {warm['total_s']:.1f} s warm (first call "
        f"{results['first_call']['total_s']:.1f} s, compile ≈ {results['compile_s']:.1f} s); "
        f"sampling {warm['sample']:.1f} s, post-processing {warm['postprocess']:.2f} s; "
        f"{results['mean_leapfrogs_per_step']:.1f} leapfrogs per step on average, "
        f"{results['lockstep_waste']:.1f}× that in lock-step; "
        f"{1e3 * results['s_per_lockstep_leapfrog']:.2f} ms per lock-step leapfrog"
    )
    write_json(Path(args.out), results)
    return results


if __name__ == "__main__":
    main()
