"""Inference throughput on the default problem, measured side by side in one run.

Measures, for one network on the built-in default problem:

* log-density-with-gradient evaluations per second (one point, and a vmapped batch);
* NUTS wall time, and bulk ESS per second of the predictions at held-out points;
* SVI steps per second;
* ensemble member-steps per second, vmapped, against the same members trained one
  after another (the ratio is the point of training the ensemble as one program).

Prints a table and writes JSON (atomically). The same code runs on a GPU unchanged.

Usage:
    python benchmarks/bench_inference.py [--quick] [--out benchmarks/results/inference.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size
from numpyro.infer.util import potential_energy

import bayesresnet as brn
from bayesresnet._io import write_atomic
from bayesresnet.infer.base import Timer
from bayesresnet.infer.core import (
    EnsembleConfig,
    _config_optimizer,
    make_member_trainer,
    member_inputs,
    train_members,
)


def _timeit(fn, repeat: int) -> float:
    """Best-of-3 seconds per call of ``fn`` (called ``repeat`` times per trial)."""
    jax.block_until_ready(fn())  # compile and warm
    best = np.inf
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(repeat):
            out = fn()
        jax.block_until_ready(out)
        best = min(best, (time.perf_counter() - start) / repeat)
    return best


def bench_gradients(model, x, y, u, batch: int) -> dict:
    grad = jax.jit(jax.value_and_grad(lambda p: potential_energy(model, (x, y), {}, p)))
    one = _timeit(lambda: grad(u), repeat=200)
    batched_u = jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (batch,) + a.shape), u)
    vgrad = jax.jit(jax.vmap(jax.value_and_grad(lambda p: potential_energy(model, (x, y), {}, p))))
    many = _timeit(lambda: vgrad(batched_u), repeat=20)
    return {
        "grad_evals_per_s": 1.0 / one,
        "grad_evals_per_s_batched": batch / many,
        "batch": batch,
    }


def bench_nuts(spec, ds, args) -> dict:
    start = time.perf_counter()
    post = brn.fit(
        spec,
        ds,
        method="nuts",
        seed=0,
        num_warmup=args.nuts_warmup,
        num_samples=args.nuts_samples,
        num_chains=args.nuts_chains,
    )
    wall = time.perf_counter() - start
    x_probe = ds.x_test[: args.num_probe]
    f = post.predict_f(x_probe)[..., 0]  # [S, P]
    f = f.reshape(post.num_chains, post.num_draws, -1)
    ess = effective_sample_size(f)  # bulk ESS per probe point
    sampling = post.timings["sampling_s"]
    pred = post.predict(ds.x_test)
    rmse = float(np.sqrt(np.mean((pred.mean - ds.y_test) ** 2)))
    return {
        "wall_s": wall,
        **{k: float(v) for k, v in post.timings.items()},
        "min_bulk_ess": float(np.min(ess)),
        "median_bulk_ess": float(np.median(ess)),
        "min_ess_per_s_sampling": float(np.min(ess) / sampling),
        "divergences": int(post.sample_stats["diverging"].sum()),
        "mean_tree_depth": float(post.sample_stats["tree_depth"].mean()),
        "gradient_evaluations": int(post.sample_stats["n_steps"].sum()),
        "test_rmse": rmse,
    }


def bench_svi(spec, ds, args) -> dict:
    post = brn.fit(spec, ds, method="svi", seed=0, num_steps=args.svi_steps, tol=0.0, init="median")
    steps = post.settings["steps_run"]
    return {
        "steps": steps,
        "compile_s": post.timings["compile_s"],
        "run_s": post.timings["run_s"],
        "steps_per_s": steps / post.timings["run_s"],
    }


def bench_ensemble(model, x, y, args) -> dict:
    config = EnsembleConfig(num_members=args.members, num_steps=args.ensemble_steps)
    key = jax.random.key(0)
    timer = Timer()
    train_members(key, model, x, y, config, timer)  # compiled ahead of time, then run
    vmapped_total = timer.times["run_s"]
    # The same members, one after another, with one compiled single-member trainer.
    u0, _, _ = member_inputs(key, model, x, y, config)
    train = jax.jit(make_member_trainer(model, x, y, _config_optimizer(config), config.num_steps))
    first = jax.tree_util.tree_map(lambda a: a[0], u0)
    jax.block_until_ready(train(first, None, None))  # compile
    start = time.perf_counter()
    for m in range(config.num_members):
        u_m = jax.tree_util.tree_map(lambda a, m=m: a[m], u0)
        out = train(u_m, None, None)
    jax.block_until_ready(out)
    sequential = time.perf_counter() - start
    member_steps = config.num_members * config.num_steps
    return {
        "members": config.num_members,
        "steps": config.num_steps,
        "vmapped_s": vmapped_total,
        "sequential_s": sequential,
        "member_steps_per_s_vmapped": member_steps / vmapped_total,
        "member_steps_per_s_sequential": member_steps / sequential,
        "speedup": sequential / vmapped_total,
    }


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--out", default="benchmarks/results/inference.json")
    args = parser.parse_args(argv)
    quick = args.quick
    args.nuts_warmup = 20 if quick else 300
    args.nuts_samples = 20 if quick else 300
    args.nuts_chains = 2 if quick else 4
    args.svi_steps = 200 if quick else 5000
    args.members = 2 if quick else 16
    args.ensemble_steps = 50 if quick else 2000
    args.num_probe = 10

    problem = brn.problems.get(brn.problems.DEFAULT)
    ds = problem.sample(0, 100, 200, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=8, num_layers=10, basis=brn.bases.Cubic())
    model = brn.make_model(spec, brn.PriorSpec(), brn.fit_scaler(ds.x_train, ds.y_train))
    x, y = jnp.asarray(ds.x_train, jnp.float32), jnp.asarray(ds.y_train, jnp.float32)
    u = jax.tree_util.tree_map(
        lambda a: a[0],
        brn.infer.ensemble.sample_prior_unconstrained(jax.random.key(0), model, x, y, 1),
    )
    results = {
        "problem": problem.name,
        "num_train": int(ds.num_train),
        "spec": {"width": spec.width, "num_layers": spec.num_layers, "basis": repr(spec.basis)},
        "num_params": brn.num_params(spec),
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "quick": quick,
    }
    results["gradients"] = bench_gradients(model, x, y, u, batch=64)
    results["ensemble"] = bench_ensemble(model, x, y, args)
    results["svi"] = bench_svi(spec, ds, args)
    results["nuts"] = bench_nuts(spec, ds, args)
    print(format_table(results))
    out = Path(args.out)
    write_atomic(out, json.dumps(results, indent=2).encode())
    print(f"wrote {out}")
    return results


def format_table(r: dict) -> str:
    g, e, s, n = r["gradients"], r["ensemble"], r["svi"], r["nuts"]
    rows = [
        ("device", r["device"]),
        ("network", f"{r['spec']} ({r['num_params']} parameters), N={r['num_train']}"),
        ("log-density+grad evals/s (one point)", f"{g['grad_evals_per_s']:,.0f}"),
        (f"log-density+grad evals/s (vmap {g['batch']})", f"{g['grad_evals_per_s_batched']:,.0f}"),
        ("ensemble member-steps/s, vmapped", f"{e['member_steps_per_s_vmapped']:,.0f}"),
        ("ensemble member-steps/s, one by one", f"{e['member_steps_per_s_sequential']:,.0f}"),
        ("ensemble speed-up (vmapped / one by one)", f"{e['speedup']:.1f}x"),
        ("SVI steps/s (meanfield)", f"{s['steps_per_s']:,.0f}"),
        ("NUTS wall time (s)", f"{n['wall_s']:.1f}"),
        ("NUTS warmup / sampling (s)", f"{n['warmup_s']:.1f} / {n['sampling_s']:.1f}"),
        ("NUTS min bulk ESS of f at probes", f"{n['min_bulk_ess']:.0f}"),
        ("NUTS min ESS/s (sampling phase)", f"{n['min_ess_per_s_sampling']:.1f}"),
        ("NUTS divergences, mean tree depth", f"{n['divergences']}, {n['mean_tree_depth']:.1f}"),
    ]
    width = max(len(a) for a, _ in rows)
    return "\n".join(f"{a:<{width}}  {b}" for a, b in rows)


if __name__ == "__main__":
    main()
