"""What a second fit of the same sizes costs in one process: the programs kept or not.

A study's grid, a cross-validation, a notebook that refits on new simulator runs: each
fits the same sizes on other data. The deep ensemble's programs take the data as
arguments (``bayesresnet.infer.core.program_data``) and this process keeps what it
compiled (``compile_lowered``), so the second and later fits compile nothing. Measured
side by side in one process: ``brn.fit(None, data)`` (``method="auto"``) on
``--repeats`` draws of the same problem and size, first with the kept programs
forgotten before each fit (``clear_compiled`` and ``jax.clear_caches``: every fit
compiles, as in a new process without the on-disk cache), then kept. Reported per
fit: wall seconds, XLA compile seconds (JAX's own compile events) and their count; per
size the ratio of the kept fits' mean time (all but the first) to the cold fits' mean.

Usage:
    python benchmarks/bench_refit.py [--problem borehole] [--sizes 200,2000]
        [--noise 0.05] [--repeats 3] [--out benchmarks/results/refit.json] [--tiny]
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import jax
import numpy as np

import bayesresnet as brn
from bayesresnet._io import write_atomic, write_json
from bayesresnet.infer.core import clear_compiled

COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"


def timed_fit(data, seed: int, tiny: bool) -> dict:
    """One fit's wall seconds and the XLA compilations it ran (seconds, count)."""
    compiles = []

    def listen(event, duration, **kwargs):
        if event == COMPILE_EVENT:
            compiles.append(duration)

    options = dict(method="ensemble", num_members=2, num_steps=100) if tiny else {}
    spec = brn.ResNetSpec(data.x_train.shape[1], 1, width=4, num_layers=2) if tiny else None
    jax.monitoring.register_event_duration_secs_listener(listen)
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # convergence notes: not what is measured here
            brn.fit(spec, data, seed=seed, **options)
        wall = time.perf_counter() - start
    finally:
        jax.monitoring.unregister_event_duration_listener(listen)
    return {
        "seed": seed,
        "fit_s": wall,
        "compile_s": float(sum(compiles)),
        "compiles": len(compiles),
    }


def run_size(problem, n: int, noise: float, repeats: int, tiny: bool) -> dict:
    draws = [problem.sample(seed, n, 10, noise=noise) for seed in range(repeats)]
    cold = []
    for seed, data in enumerate(draws):
        jax.clear_caches()
        clear_compiled()
        cold.append(timed_fit(data, seed, tiny))
        print(f"N={n} cold fit {seed}: {cold[-1]['fit_s']:.1f} s", flush=True)
    jax.clear_caches()
    clear_compiled()
    kept = []
    for seed, data in enumerate(draws):
        kept.append(timed_fit(data, seed, tiny))
        print(f"N={n} kept fit {seed}: {kept[-1]['fit_s']:.1f} s", flush=True)
    later = [r["fit_s"] for r in kept[1:]]
    return {
        "n": n,
        "cold": cold,
        "kept": kept,
        "refit_ratio": float(np.mean(later) / np.mean([r["fit_s"] for r in cold])),
    }


def format_table(results: dict) -> str:
    lines = ["| N | fits | fit s (cold) | fit s (kept) | compile s (cold) | compile s (kept) |"]
    lines.append("|---|---|---|---|---|---|")
    for row in results["sizes"]:
        for c, k in zip(row["cold"], row["kept"], strict=True):
            lines.append(
                f"| {row['n']} | data seed {c['seed']} | {c['fit_s']:.1f} | {k['fit_s']:.1f} | "
                f"{c['compile_s']:.2f} ({c['compiles']}) | {k['compile_s']:.2f} ({k['compiles']}) |"
            )
        lines.append(f"| {row['n']} | later kept / cold | {row['refit_ratio']:.2f} | | | |")
    return "\n".join(lines)


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="borehole")
    parser.add_argument("--sizes", default="200,2000")
    parser.add_argument("--noise", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/refit.json"))
    parser.add_argument("--tiny", action="store_true", help="a smoke run: tiny nets, 2 fits")
    args = parser.parse_args(argv)
    if args.repeats < 2:
        parser.error(f"--repeats must be at least 2 (a first fit and a refit); got {args.repeats}")
    return args


def main(argv=None) -> dict:
    args = parse_args(argv)
    for path in (args.out, args.out.with_suffix(".md")):
        if path.exists():  # results are kept: a new run names a new file
            raise SystemExit(f"{path} exists; name another --out (results are not overwritten).")
    problem = brn.problems.get(args.problem)
    sizes = [int(s) for s in args.sizes.split(",")]
    results = {
        "problem": args.problem,
        "noise": args.noise,
        "tiny": args.tiny,
        "sizes": [run_size(problem, n, args.noise, args.repeats, args.tiny) for n in sizes],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_json(args.out, results)
    write_atomic(args.out.with_suffix(".md"), (format_table(results) + "\n").encode())
    print(format_table(results))
    return results


if __name__ == "__main__":
    main()
