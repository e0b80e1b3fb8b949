"""Do declared log transforms help? Borehole, held-out relative RMSE, CRPS and 90 % coverage.

The default deep ensemble (``EnsembleConfig()``: 8 MAP fits, 3000 Adam steps, training
on to 3× while unconverged) of a cubic-basis WP-ResNet (width 8, 8 layers) on the
borehole function, N = 200 training points (LHS design) and 1000 test points,
noise-free and with 5 % noise (sd relative to the output's), with these transforms:

* ``none``;
* ``log r``: the one input spanning decades (r ∈ [100, 50000], 2.7 decades; rw spans a
  factor 3 and Kw 1.2, see ``problems.make_borehole``); f depends on ln(r/rw);
* ``log r, rw, Kw``: every input the borehole formula divides by;
* ``log r, flow``: plus the positive output (multiplicative noise model);
* ``log r, rw, Kw, flow``: both.

Relative RMSE is the held-out RMSE of the posterior mean over the test outputs' sd.

Usage::

    python benchmarks/log_transforms.py           # ≈ 10 min on two busy cores
    python benchmarks/log_transforms.py --seeds 0 1 2
    python benchmarks/log_transforms.py --transforms none "log r"   # a subset
    → benchmarks/results/log_transforms.json and a printed table
"""

import argparse
import json
import time
import warnings
from pathlib import Path

import numpy as np

import bayesresnet as brn
from bayesresnet import calibration

TRANSFORMS = {
    "none": None,
    "log r": {"r": "log"},
    "log r, rw, Kw": {"r": "log", "rw": "log", "Kw": "log"},
    "log r, flow": {"r": "log", "flow": "log"},
    "log r, rw, Kw, flow": {"r": "log", "rw": "log", "Kw": "log", "flow": "log"},
}
NOISES = (0.0, 0.05)
OUT = Path(__file__).parent / "results" / "log_transforms.json"


def run_one(transforms, noise: float, seed: int) -> dict:
    ds = brn.problems.get("borehole").sample(
        seed, num_train=200, num_test=1000, noise=noise, design="lhs"
    )
    spec = brn.ResNetSpec(ds.num_inputs, 1, width=8, num_layers=8, basis=brn.bases.Cubic())
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # members not converged
        post = brn.fit(spec, ds, method="ensemble", seed=seed, transforms=transforms)
    pred = post.predict(ds.x_test, seed=seed, return_draws=True)
    seconds = time.perf_counter() - start
    lo, hi = pred.interval(0.9)
    y = ds.y_test
    return {
        "rel_rmse": float(np.sqrt(np.mean((pred.mean - y) ** 2)) / np.std(y)),
        "crps": float(calibration.crps(pred.y, y).mean()),
        "coverage_90": float(np.mean((y >= lo) & (y <= hi))),
        "seconds": seconds,
    }


def summarize(rows: list[dict]) -> list[dict]:
    """Mean and range over seeds of each metric, per noise level and transforms."""
    keys = sorted({(r["noise"], r["transforms"]) for r in rows}, key=lambda k: k[0])
    out = []
    for noise, label in keys:
        group = [r for r in rows if (r["noise"], r["transforms"]) == (noise, label)]
        row = {"noise": noise, "transforms": label, "seeds": [r["seed"] for r in group]}
        for metric in ("rel_rmse", "crps", "coverage_90"):
            values = [r[metric] for r in group]
            row[metric] = float(np.mean(values))
            row[f"{metric}_range"] = [float(min(values)), float(max(values))]
        out.append(row)
    return out


def format_table(summary: list[dict]) -> str:
    lines = [f"{'noise':>5}  {'transforms':20s} {'rel RMSE':>9} {'CRPS':>7} {'cov90':>6}"]
    lines += [
        f"{r['noise']:5.2f}  {r['transforms']:20s} {r['rel_rmse']:9.3%} {r['crps']:7.4f} "
        f"{r['coverage_90']:6.3f}"
        for r in summary
    ]
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--transforms", nargs="+", choices=list(TRANSFORMS), default=None)
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    rows = []
    for noise in NOISES:
        for label in args.transforms or TRANSFORMS:
            transforms = TRANSFORMS[label]
            for seed in args.seeds:
                row = {"noise": noise, "transforms": label, "seed": seed}
                row |= run_one(transforms, noise, seed)
                rows.append(row)
                print(
                    f"noise {noise:4.2f}  {label:14s} seed {seed}  rel RMSE "
                    f"{row['rel_rmse']:.4%}  CRPS {row['crps']:.4f}  cov90 "
                    f"{row['coverage_90']:.3f}  {row['seconds']:.0f} s",
                    flush=True,
                )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    summary = summarize(rows)
    args.out.write_text(json.dumps({"summary": summary, "rows": rows}, indent=1) + "\n")
    print(format_table(summary))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
