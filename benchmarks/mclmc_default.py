"""MCLMC (8 ensemble-started chains) on the default problem: verdict, R-hat, ESS, RMSE."""

import json
import time

import numpy as np

import bayesresnet as brn
from bayesresnet.runspec import load_runspec

rs = load_runspec(
    str(__import__("pathlib").Path(__file__).parent.parent / "models" / "default.toml")
)
data = rs.load_dataset()
net = rs.resnet_spec(data)
t = time.perf_counter()
post = brn.fit(
    net, data, method="mclmc", seed=0, num_chains=8, num_warmup=2000, num_samples=200, thinning=10
)
wall = time.perf_counter() - t
d = brn.diagnostics.convergence(post)
fs = [r for r in d.table if r["kind"] == "function"]
pred = post.predict(data.x_test)
rmse = float(np.sqrt(np.mean((pred.mean - data.y_test) ** 2)))
lo, hi = pred.interval(0.9)
cov = float(np.mean((data.y_test >= lo) & (data.y_test <= hi)))
print(
    json.dumps(
        {
            "verdict": d.verdict,
            "checks": [(c.name, c.status, c.value) for c in d.checks],
            "rhat_f_max": max(r["r_hat"] for r in fs),
            "ess_bulk_f_min": min(r["ess_bulk"] for r in fs),
            "grads": post.extra["num_gradient_evaluations"]
            + post.extra["num_warmup_gradient_evaluations"],
            "wall_s": wall,
            "timings": post.timings,
            "rmse": rmse,
            "cov90": cov,
        },
        indent=1,
    )
)
