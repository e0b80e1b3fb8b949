"""What the L-BFGS polish of MAP fits buys: Adam alone against Adam then L-BFGS.

For each problem and noise level (N training points, a uniform test set), each variant
is fitted with one network (width 8, 8 cubic layers) and scored on the test set:
relative RMSE of the posterior mean against the noise-free truth (RMSE / sd of the
truth), CRPS and 90 % coverage of the predictive draws against the test targets, and
the fit's wall time (compilation included). Variants:

* ``ensemble``: the default deep ensemble (Adam only, trained on until it settles);
* ``ensemble_lbfgs``: the same, then L-BFGS (``polish="lbfgs"``);
* ``ensemble_short_lbfgs``: a third of the Adam steps, then L-BFGS;
* ``mclmc``: the default ensemble-started MCLMC;
* ``mclmc_lbfgs``: the same with polished MAP starts (``init_polish="lbfgs"``).

Each result is appended to the JSON-lines file as soon as it is done, so a long run can
be read while it goes on.

Usage:
    python benchmarks/bench_polish.py [--problems friedman1,borehole] [--noise 0,0.05]
        [--variants ensemble,ensemble_lbfgs] [--num-train 200] [--num-test 2000]
        [--out benchmarks/results/polish.jsonl]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import bayesresnet as brn
from bayesresnet import calibration
from bayesresnet.infer.core import clear_compiled

VARIANTS = {
    "ensemble": ("ensemble", {}),
    "ensemble_lbfgs": ("ensemble", {"polish": "lbfgs"}),
    "ensemble_short_lbfgs": ("ensemble", {"polish": "lbfgs", "num_steps": 1000}),
    "mclmc": ("mclmc", {}),
    "mclmc_lbfgs": ("mclmc", {"init_polish": "lbfgs"}),
}


def score(post, data, truth) -> dict:
    """Relative RMSE of the mean against the truth, CRPS and 90 % coverage."""
    pred = post.predict(data.x_test, return_draws=True)
    rel_rmse = calibration.rmse(pred.mean, truth) / np.std(truth, axis=0)
    return {
        "rel_rmse": float(rel_rmse.mean()),
        "crps": float(calibration.crps(pred.y, data.y_test).mean()),
        "coverage_90": float(calibration.coverage(pred.y, data.y_test, [0.9]).mean()),
    }


def run_one(problem: str, noise: float, variant: str, args) -> dict:
    prob = brn.problems.get(problem)
    data = prob.sample(0, args.num_train, args.num_test, noise=noise)
    truth = prob.evaluate(data.x_test).reshape(data.y_test.shape)
    spec = brn.ResNetSpec(
        data.x_train.shape[1], 1, width=8, num_layers=8, basis=brn.bases.make_basis("cubic")
    )
    method, options = VARIANTS[variant]
    clear_compiled()  # each timed fit compiles its programs, as before they were kept
    start = time.perf_counter()
    post = brn.fit(spec, data, method=method, seed=0, **options)
    seconds = time.perf_counter() - start
    row = {"problem": problem, "noise": noise, "variant": variant, "fit_s": seconds}
    row |= score(post, data, truth)
    extra = post.extra
    for key in ("member_polish_iterations", "member_grad_norm", "member_converged"):
        if key in extra:
            row[key] = list(np.asarray(extra[key]).tolist())
    if "init_final_loss" in extra:
        row["init_final_loss"] = list(extra["init_final_loss"])
    if "member_final_loss" in extra:
        row["member_final_loss"] = list(extra["member_final_loss"])
    row["timings"] = {k: float(v) for k, v in post.timings.items()}
    return row


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="friedman1,borehole")
    parser.add_argument("--noise", default="0,0.05")
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--num-train", type=int, default=200)
    parser.add_argument("--num-test", type=int, default=2000)
    parser.add_argument("--out", default="benchmarks/results/polish.jsonl")
    args = parser.parse_args(argv)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for problem in args.problems.split(","):
        for noise in (float(v) for v in args.noise.split(",")):
            for variant in args.variants.split(","):
                row = run_one(problem, noise, variant, args)
                with out.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(
                    f"{problem:10s} noise={noise:<5g} {variant:22s} "
                    f"rel_rmse={row['rel_rmse']:.4f} crps={row['crps']:.4g} "
                    f"cov90={row['coverage_90']:.3f} fit={row['fit_s']:.0f}s",
                    flush=True,
                )


if __name__ == "__main__":
    main()
