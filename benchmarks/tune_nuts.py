"""NUTS settings measured one at a time on the built-in problems (what helps, what does not).

Each configuration fits the same data with the same seed; the table gives the share of
draws at the maximum tree depth, mean leapfrog steps per draw, divergences, the worst
function-space R-hat and bulk ESS, and wall time. Results go to JSON (atomically).

Usage:
    python benchmarks/tune_nuts.py [--problem default|borehole] [--configs a,b,...]
        [--out benchmarks/results/tune_nuts_<problem>.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

import bayesresnet as brn
from bayesresnet._io import write_json
from bayesresnet.app.runspec import load_runspec
from bayesresnet.infer import NUTSConfig

CONFIGS = {
    "baseline": dict(dense_mass=False, init_mass="identity"),
    "dense": dict(dense_mass=True, init_mass="identity"),
    "diag_spread": dict(dense_mass=False, init_mass="spread", init_members=16),
    "dense_spread": dict(dense_mass=True, init_mass="spread", init_members=16),
    "dense_spread_accept95": dict(
        dense_mass=True, init_mass="spread", init_members=16, target_accept_prob=0.95
    ),
    "dense_long_warmup": dict(dense_mass=True, init_mass="identity", num_warmup=1000),
    # A learned scale per basis function (learn_basis_scale=True), today's defaults
    # otherwise: the coefficients centred, and non-centred.
    "learned_scale_centred": dict(prior=dict(learn_basis_scale=True), noncentred=False),
    "learned_scale_noncentred": dict(prior=dict(learn_basis_scale=True), noncentred=True),
}


def problem(name: str):
    if name == "default":
        spec = load_runspec(Path(__file__).parent.parent / "models" / "default.toml")
        data = spec.load_dataset()
        net = spec.resnet_spec(data)
        opts = dict(spec.options)
        return net, data, opts
    data = brn.problems.get("borehole").sample(seed=0, num_train=200, num_test=1000, noise=0.05)
    net = brn.ResNetSpec(8, 1, width=16, num_layers=8, basis=brn.bases.Cubic())
    return net, data, dict(num_warmup=500, num_samples=500, num_chains=4, max_tree_depth=10)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problem", default="default", choices=("default", "borehole"))
    parser.add_argument("--configs", default=",".join(CONFIGS))
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    out = Path(args.out or f"benchmarks/results/tune_nuts_{args.problem}.json")
    net, data, base = problem(args.problem)
    rows = []
    for name in args.configs.split(","):
        options = base | CONFIGS[name]
        prior = brn.PriorSpec(**options.pop("prior", {}))
        NUTSConfig(**options)  # refuse bad settings before any fit
        start = time.perf_counter()
        post = brn.fit(net, data, method="nuts", seed=0, prior=prior, **options)
        wall = time.perf_counter() - start
        diag = brn.diagnostics.convergence(post)
        fs = [r for r in diag.table if r["kind"] == "function"]
        row = {
            "config": name,
            "options": options | {"prior": CONFIGS[name].get("prior", {})},
            "saturated": brn.diagnostics.tree_depth_saturation(post),
            "mean_steps": float(np.mean(post.sample_stats["n_steps"])),
            "divergences": int(np.sum(post.sample_stats["diverging"])),
            "rhat_f_max": float(max(r["r_hat"] for r in fs)),
            "ess_bulk_f_min": float(min(r["ess_bulk"] for r in fs)),
            "verdict": diag.verdict,
            "wall_s": wall,
            "timings": post.timings,
        }
        rows.append(row)
        print(
            json.dumps({k: v for k, v in row.items() if k not in ("options", "timings")}),
            flush=True,
        )
        write_json(out, {"problem": args.problem, "rows": rows})


if __name__ == "__main__":
    main()
