"""Short NUTS runs on borehole (2 chains, 200 warm-up + 100 draws) to see whether a
setting ends the tree-depth saturation there.

Measured (2 CPU cores): ``dense_spread`` (a dense mass matrix, warm-up started from the
spread of 8 MAP fits) still ran 1 023 leapfrog steps for every kept draw (204 600
gradients for 200 draws), 0 divergences, 707 s. The full benchmark's default NUTS
(diagonal mass, identity start) saturated on 99.8 % of its draws
(``results/inference.json``). Neither ends the saturation on this problem.
``diag_spread`` (diagonal mass, started from the MAP spread) has not been measured.

``depth12`` (today's defaults with the tree depth capped at 12 instead of 10): 7.5 % of
the draws at the cap, 0 divergences, 1 555 leapfrog steps per draw on average; the
10/25/50/75/90 % quantiles of the steps are 1 023, 1 023, 1 023, 2 047 and 3 071 (664 s).
Half the trajectories end at their U-turn after 1 023 steps and a quarter need 2 047 or
more, so a cap of 10 cuts them (that is why it "saturated"); 12 became the default.

Not kept (ad-hoc runs, 2 chains): a fixed dense mass from the Hessian at the MAP (its
eigenvalues' absolute values, floored at 1; step size adapted only) ran 467 steps per
draw with 16.5 % at the cap of 10, but its step size fell to 0.01-0.02 in the whitened
coordinates: the posterior's curvature is far from the MAP's (the Hessian at a draw from
the typical set has about 100 negative eigenvalues, down to −10⁴), and a Hessian taken
there, or a diagonal adapted on top of the MAP's, ran 640-770 steps with 44-50 % cut.

Usage:
    python benchmarks/nuts_borehole_probe.py dense_spread [diag_spread] [depth12]
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
    "depth12": dict(max_tree_depth=12),
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
        n = np.asarray(post.sample_stats["n_steps"])
        quartiles = np.quantile(n, [0.1, 0.25, 0.5, 0.75, 0.9]).tolist()
        saturated = brn.diagnostics.tree_depth_saturation(post)
        print(
            f"{name}: {time.perf_counter() - start:.0f} s, {steps:.0f} steps/draw, "
            f"saturated {saturated:.3f}, steps 10/25/50/75/90 % {quartiles}, {extra}"
        )


if __name__ == "__main__":
    main(sys.argv[1:] or ["dense_spread"])
