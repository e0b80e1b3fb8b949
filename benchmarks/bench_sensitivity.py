"""Sobol indices of 256 posterior draws of a borehole surrogate on one n = 2¹³ design.

The surrogate is borehole's network in ``bench_inference.py`` (8 inputs, width 16, 8
layers, cubic basis) with a fabricated posterior of 256 draws: independent N(0, 1/width)
weights, standardization fitted on 200 borehole points. The values of the weights do not
change the work, so the timing is that of a fitted posterior of this size. The design has
n·(d + 2) = 81 920 points, evaluated by every draw: 2.1·10⁷ network evaluations.

Measured: wall time of :func:`bayesresnet.sensitivity.sobol` (a first call, compiling,
and the best of ``--repeats`` warm calls), split into the design, the evaluation of the
draws on it (the network's forward pass) and the estimator; and throughput in point-draws
per second. Writes JSON (atomically).

Usage:
    python benchmarks/bench_sensitivity.py [--quick] [--out benchmarks/results/sensitivity.json]
"""

from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import jax
import numpy as np

import bayesresnet as brn
from bayesresnet import sensitivity, sites
from bayesresnet._io import write_json
from bayesresnet.resnet import param_shapes

ROOT = Path(__file__).resolve().parent.parent


def fabricated_posterior(num_draws: int, quick: bool) -> brn.Posterior:
    """A posterior of ``num_draws`` prior-like draws of borehole's surrogate network."""
    data = brn.problems.get("borehole").sample(seed=0, num_train=200, num_test=0)
    width, layers = (4, 2) if quick else (16, 8)
    spec = brn.ResNetSpec(8, 1, width=width, num_layers=layers, basis=brn.bases.Cubic())
    rng = np.random.default_rng(0)
    shapes = param_shapes(spec)
    samples = {
        k: rng.normal(size=(1, num_draws, *shapes[k])) / np.sqrt(width) for k in sites.NETWORK
    }
    samples[sites.NOISE_SCALE] = np.full((1, num_draws, 1), 0.01)
    return brn.Posterior(
        spec=spec,
        prior=brn.PriorSpec(),
        scaler=brn.fit_scaler(data.x_train, data.y_train),
        samples=samples,
        method="ensemble",
        settings={},
        sample_stats={},
        timings={},
        extra={},
        x_train=data.x_train,
        y_train=data.y_train,
        input_names=data.input_names,
        output_names=data.output_names,
    )


def run(post, n: int, repeats: int) -> dict:
    """Timings of a first (compiling) call and the best of ``repeats`` warm calls."""
    calls = []
    for _ in range(1 + repeats):
        start = time.perf_counter()
        result = sensitivity.sobol(post, n=n)
        total = time.perf_counter() - start
        calls.append({"total_s": total, **{f"{k}_s": v for k, v in result.timings.items()}})
    warm = min(calls[1:], key=lambda c: c["total_s"])
    points = n * (post.spec.in_features + 2)
    return {
        "first_call": calls[0],
        "warm": warm,
        "points": points,
        "draws": post.num_samples,
        "point_draws_per_s": points * post.num_samples / warm["evaluate_s"],
        "share_evaluate": warm["evaluate_s"] / warm["total_s"],
        "share_estimate": warm["estimate_s"] / warm["total_s"],
        "S1_mean": result.S1.mean(axis=0)[0].tolist(),
        "ST_mean": result.ST.mean(axis=0)[0].tolist(),
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="n = 2^8, 16 draws, a tiny net")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "sensitivity.json"))
    args = parser.parse_args(argv)
    n, draws = (2**8, 16) if args.quick else (2**13, 256)
    results = {
        "quick": args.quick,
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "n": n,
        **run(fabricated_posterior(draws, args.quick), n, args.repeats),
    }
    warm = results["warm"]
    print(
        f"sobol: {results['draws']} draws × {results['points']} points on {results['device']}: "
        f"{warm['total_s']:.2f} s warm ({results['first_call']['total_s']:.2f} s first call); "
        f"evaluate {warm['evaluate_s']:.2f} s ({results['share_evaluate']:.0%}), "
        f"estimate {warm['estimate_s']:.2f} s ({results['share_estimate']:.0%}), "
        f"design {warm['design_s']:.3f} s; {results['point_draws_per_s']:.3g} point-draws/s"
    )
    write_json(Path(args.out), results)
    return results


if __name__ == "__main__":
    main()
