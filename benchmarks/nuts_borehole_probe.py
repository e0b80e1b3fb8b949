"""Short NUTS runs on borehole (2 chains, 200 warm-up + 100 draws) to see whether a
setting ends the tree-depth saturation there.

Measured (2 CPU cores): ``dense_spread`` (a dense mass matrix, warm-up started from the
spread of 8 MAP fits) still ran 1 023 leapfrog steps for every kept draw (204 600
gradients for 200 draws), 0 divergences, 707 s. The full benchmark's default NUTS
(diagonal mass, identity start) saturated on 99.8 % of its draws
(``results/inference.json``). Neither ends the saturation on this problem.
``diag_spread`` (diagonal mass, started from the MAP spread) has not been measured.

Usage:
    python benchmarks/nuts_borehole_probe.py dense_spread [diag_spread]
"""

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import bench_inference as b  # noqa: E402

import bayesresnet as brn  # noqa: E402

VARIANTS = {
    "dense_spread": dict(dense_mass=True, init_mass="spread", init_members=8),
    "diag_spread": dict(init_mass="spread", init_members=8),
}


def main(names):
    spec, data, _ = b.problem("borehole", False)
    opts = dict(num_warmup=200, num_samples=100, num_chains=2, target_accept_prob=0.95)
    for name in names:
        start = time.perf_counter()
        post = brn.fit(spec, data, method="nuts", seed=0, **opts | VARIANTS[name])
        extra = {k: np.asarray(v).tolist() for k, v in post.extra.items() if np.size(v) < 10}
        draws = post.num_chains * post.num_draws
        steps = extra["num_gradient_evaluations"] / draws
        print(f"{name}: {time.perf_counter() - start:.0f} s, {steps:.0f} steps/draw, {extra}")


if __name__ == "__main__":
    main(sys.argv[1:] or ["dense_spread"])
