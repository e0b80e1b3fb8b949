"""Input relevance (ARD) on and off, side by side: friedman1 and borehole at N = 200.

For each problem, noise level (0 and 5 % of the output's sd), method (the default
ensemble and the default MCLMC) and ``ard`` (off, on): relative RMSE of the posterior
mean against the noise-free truth on 2 000 uniform test points (RMSE / sd of the truth),
the fair CRPS of the predictive draws against the test outputs, the coverage of the 90 %
predictive intervals, the fit time, and the relevance table (posterior mean of ``λ_j``).
Network: width 8, 8 cubic layers (the setting of issue 22). One process, so the times
compare.

Usage:
    python benchmarks/ard_measure.py [--problems friedman1,borehole] [--noise 0,0.05]
        [--methods ensemble,mclmc,mclmc_nc] [--ard 0,1]

``mclmc_nc`` is MCLMC with ``noncentred=True`` (the hidden and, under ARD, the input
weights sampled in non-centred form). [--out benchmarks/results/ard.json]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

import bayesresnet as brn
from bayesresnet._io import write_json

ROOT = Path(__file__).resolve().parent.parent


def measure(problem: str, noise: float, method: str, ard: bool, seed: int = 0) -> dict:
    options = {}
    if method.endswith("_nc"):  # the sampler on the non-centred model
        method, options = method[: -len("_nc")], {"noncentred": True}
    prob = brn.problems.get(problem)
    data = prob.sample(seed=seed, num_train=200, num_test=2000, noise=noise, design="lhs")
    spec = brn.ResNetSpec(
        in_features=prob.num_inputs,
        out_features=1,
        width=8,
        num_layers=8,
        basis=brn.bases.Cubic(),
    )
    start = time.perf_counter()
    prior = brn.PriorSpec(ard=ard)
    post = brn.fit(spec, data, method=method, seed=seed, prior=prior, **options)
    pred = post.predict(data.x_test, return_draws=True)
    seconds = time.perf_counter() - start
    truth = prob.evaluate(data.x_test)
    rel_rmse = float(np.sqrt(np.mean((pred.mean - truth) ** 2)) / np.std(truth))
    crps = float(np.mean(brn.calibration.crps(pred.y, data.y_test)))
    cover = float(brn.calibration.coverage(pred.y, data.y_test, [0.9])[0, 0])
    rel = post.relevance()
    row = dict(
        problem=problem,
        noise=noise,
        method=method + ("_nc" if options else ""),
        ard=ard,
        rel_rmse=rel_rmse,
        crps=crps,
        coverage90=cover,
        seconds=seconds,
        weight_norm=[round(float(v), 3) for v in rel["weight_norm_mean"]],
    )
    if ard:
        row["ard_scale"] = [round(float(v), 3) for v in rel["ard_scale_mean"]]
    print(
        f"{problem:10s} noise={noise:<5} {row['method']:9s} ard={int(ard)}  "
        f"rel_rmse={rel_rmse:.4f} "
        f"crps={crps:.4g} cov90={cover:.3f} t={seconds:.0f}s  "
        f"norm={row['weight_norm']}" + (f" λ={row['ard_scale']}" if ard else ""),
        flush=True,
    )
    return row


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="friedman1,borehole")
    parser.add_argument("--noise", default="0,0.05")
    parser.add_argument("--methods", default="ensemble,mclmc,mclmc_nc")
    parser.add_argument("--ard", default="0,1")
    parser.add_argument("--out", default=str(ROOT / "benchmarks/results/ard.json"))
    args = parser.parse_args()
    rows = []
    for problem in args.problems.split(","):
        for noise in map(float, args.noise.split(",")):
            for method in args.methods.split(","):
                for ard in args.ard.split(","):
                    if method.endswith("_nc") and ard == "0":
                        continue  # the same model as without "_nc"
                    rows.append(measure(problem, noise, method, bool(int(ard))))
    write_json(Path(args.out), {"rows": rows})


if __name__ == "__main__":
    main()
