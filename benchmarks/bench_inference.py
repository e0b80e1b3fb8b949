"""Every inference method on two problems, side by side in one run.

Methods: ``nuts_baseline`` (the NUTS settings before the scaling work, kept by name:
diagonal mass, identity start, the output layer sampled), ``nuts`` (today's defaults),
``mclmc``, ``ensemble`` and ``svi``. Problems: the 1-D default (``models/default.toml``)
and borehole (8 inputs, width 16, 8 layers, cubic, 200 points).

For each method and problem: the bulk ESS of the predictions at 20 held-out probes (the
worst probe) per 1 000 gradient evaluations and per second of wall time, wall time, test
RMSE and 90 % coverage; for NUTS the share of draws at the maximum tree depth. Ensemble
members and SVI draws are independent by construction, so their ESS is their count (they
are draws of an approximation, not of the posterior: compare their RMSE and coverage).
A method is *eligible* against the baseline when its test RMSE is within 2 % of the
baseline's and its 90 % coverage at most 0.02 below it.

Also, on the default problem's network:

* the log-density gradient's FLOP/s (XLA's cost analysis over measured time) as a
  fraction of this machine's matmul rate, float32 and float64 (float64 in a subprocess
  with ``JAX_ENABLE_X64=1``), for one chain and 64 vmapped chains;
* ensemble member-steps/s for 1, 8, 64 and 256 members;
* predict throughput (points × draws per second);
* compile time as a fraction of a default NUTS fit (JAX's compile-duration events).

Prints a table, writes JSON (atomically) and a figure.

Usage:
    python benchmarks/bench_inference.py [--quick] [--problems default,borehole]
        [--methods nuts_baseline,nuts,mclmc,ensemble,svi]
        [--out benchmarks/results/inference.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.diagnostics import effective_sample_size
from numpyro.infer.util import potential_energy

import bayesresnet as brn
from bayesresnet._io import write_json
from bayesresnet.app.runspec import load_runspec
from bayesresnet.infer import NUTSConfig
from bayesresnet.infer.base import Timer
from bayesresnet.infer.core import (
    EnsembleConfig,
    clear_compiled,
    sample_prior_unconstrained,
    train_members,
)
from bayesresnet.infer.registry import METHODS as ENGINES

ROOT = Path(__file__).resolve().parent.parent
METHODS = ("nuts_baseline", "nuts", "mclmc", "ensemble", "svi")
NUM_PROBES = 20


# --------------------------------------------------------------------------- problems


def problem(name: str, quick: bool):
    """``(spec, dataset, {method: (fit method, options)})`` of a problem."""
    if name == "default":
        run = load_runspec(ROOT / "models" / "default.toml")
        data = run.load_dataset()
        spec = run.resnet_spec(data)
        nuts = dict(run.options)
    else:
        data = brn.problems.get("borehole").sample(seed=0, num_train=200, num_test=1000, noise=0.01)
        spec = brn.ResNetSpec(8, 1, width=16, num_layers=8, basis=brn.bases.Cubic())
        # 300 + 300 per chain: on 2 CPU cores one NUTS run at 500 + 500 takes longer than
        # 45 min here (both NUTS variants run up to 1 023 leapfrog steps per draw).
        nuts = dict(num_warmup=300, num_samples=300, num_chains=4, target_accept_prob=0.95)
    if quick:
        spec = brn.ResNetSpec(spec.in_features, 1, width=4, num_layers=2, basis=brn.bases.Linear())
        nuts = dict(num_warmup=30, num_samples=30, num_chains=2, init_steps=50)
    # The baseline: the settings before the scaling work (and the target as today).
    # The default problem's run file sets its own tree-depth cap; borehole takes the old one.
    fields = ("dense_mass", "init_mass", "marginalize_output")
    fields += ("max_tree_depth",) if name == "borehole" else ()
    baseline = {f: getattr(NUTSConfig.baseline(), f) for f in fields}
    baseline["target_accept_prob"] = 0.9
    mclmc = dict(num_chains=8)
    if name == "borehole":
        # 10 000 steps per chain: at 2 000 the chains had not mixed (function R-hat 1.08).
        mclmc["num_samples"] = 1000
    if quick:
        mclmc = dict(num_chains=2, num_warmup=40, init_steps=50)
    ensemble = dict(num_members=16) if not quick else dict(num_members=2, num_steps=50)
    svi = dict(num_steps=5000) if not quick else dict(num_steps=100, init_steps=50)
    methods = {
        "nuts_baseline": ("nuts", nuts | baseline),
        "nuts": ("nuts", nuts),
        "mclmc": ("mclmc", mclmc),
        "ensemble": ("ensemble", ensemble),
        "svi": ("svi", svi),
    }
    return spec, data, methods


def gradient_evaluations(post) -> int:
    """Every log-density gradient of a fit: MAP starts, warm-up, sampling, training."""
    return ENGINES[post.method].gradients(post)


def bench_method(spec, data, method: str, options: dict) -> dict:
    clear_compiled()  # each timed fit compiles its programs, as before they were kept
    start = time.perf_counter()
    post = brn.fit(spec, data, method=method, seed=0, **options)
    wall = time.perf_counter() - start
    probes = data.x_test[:NUM_PROBES]
    f = post.predict_f(probes)[..., 0].reshape(post.num_chains, post.num_draws, -1)
    if ENGINES[method].chains:
        ess = effective_sample_size(np.asarray(f, dtype=np.float64))  # per probe
    else:  # members and guide draws are independent by construction
        ess = np.full(f.shape[-1], float(post.num_samples))
    pred = post.predict(data.x_test, levels=(0.9,))
    lo, hi = pred.interval(0.9)
    grads = gradient_evaluations(post)
    row = {
        "wall_s": wall,
        "timings": {k: float(v) for k, v in post.timings.items()},
        "gradient_evaluations": grads,
        "ess_min": float(np.min(ess)),
        "ess_per_1000_gradients": float(1000 * np.min(ess) / grads),
        "ess_per_s": float(np.min(ess) / wall),
        "test_rmse": float(np.sqrt(np.mean((pred.mean - data.y_test) ** 2))),
        "coverage_90": float(np.mean((data.y_test >= lo) & (data.y_test <= hi))),
    }
    if ENGINES[method].chains:
        diag = brn.diagnostics.convergence(post)
        fs = [r for r in diag.table if r["kind"] == "function"]
        row |= {
            "verdict": diag.verdict,
            "rhat_f_max": float(max(r["r_hat"] for r in fs)),
            "divergences": int(np.sum(post.sample_stats["diverging"])),
        }
    if "tree_depth" in post.sample_stats:  # NUTS
        row |= {
            "saturated": brn.diagnostics.tree_depth_saturation(post),
            "mean_steps": float(np.mean(post.sample_stats["n_steps"])),
        }
    return row


# --------------------------------------------------------------------------- hardware


def _best_time(fn, repeat: int) -> float:
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


def _flops(compiled) -> float:
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    return float(cost.get("flops", np.nan))


def matmul_rate(n: int = 1024) -> float:
    """FLOP/s of an ``n × n`` matmul in the default float dtype."""
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    a = jnp.ones((n, n), dtype)
    mm = jax.jit(lambda a: a @ a)
    return 2.0 * n**3 / _best_time(lambda: mm(a), repeat=5)


def gradient_rate(quick: bool) -> dict:
    """The default network's log-density gradient: FLOP/s, one chain and 64 vmapped."""
    spec, data, _ = problem("default", quick)
    dtype = jnp.float64 if jax.config.jax_enable_x64 else jnp.float32
    x, y = jnp.asarray(data.x_train, dtype), jnp.asarray(data.y_train, dtype)
    model = brn.make_model(spec, brn.PriorSpec(), brn.fit_scaler(data.x_train, data.y_train))
    u = sample_prior_unconstrained(jax.random.key(0), model, x, y, 64)
    u = jax.tree_util.tree_map(lambda a: a.astype(dtype), u)
    grad = jax.value_and_grad(lambda p: potential_energy(model, (x, y), {}, p))
    out = {"dtype": str(np.dtype(dtype)), "matmul_flops_per_s": matmul_rate()}
    for name, fn, arg in (
        ("one", grad, jax.tree_util.tree_map(lambda a: a[0], u)),
        ("vmap64", jax.vmap(grad), u),
    ):
        compiled = jax.jit(fn).lower(arg).compile()
        seconds = _best_time(lambda c=compiled, a=arg: c(a), repeat=50)
        flops = _flops(compiled)
        out[name] = {
            "flops_per_call": flops,
            "seconds_per_call": seconds,
            "flops_per_s": flops / seconds,
            "fraction_of_matmul": flops / seconds / out["matmul_flops_per_s"],
        }
    return out


def gradient_rate_float64(quick: bool) -> dict:
    """:func:`gradient_rate` in a subprocess with 64-bit JAX."""
    env = os.environ | {"JAX_ENABLE_X64": "1"}
    cmd = [sys.executable, __file__, "--gradients-only"] + (["--quick"] if quick else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def ensemble_scaling(quick: bool) -> list[dict]:
    spec, data, _ = problem("default", quick)
    x, y = jnp.asarray(data.x_train), jnp.asarray(data.y_train)
    model = brn.make_model(spec, brn.PriorSpec(), brn.fit_scaler(data.x_train, data.y_train))
    steps = 50 if quick else 500
    rows = []
    for members in (1, 8) if quick else (1, 8, 64, 256):
        timer = Timer()
        config = EnsembleConfig(num_members=members, num_steps=steps)
        train_members(jax.random.key(0), model, x, y, config, timer)  # compiled, then run
        rows.append(
            {
                "members": members,
                "steps": steps,
                "run_s": timer.times["run_s"],
                "member_steps_per_s": members * steps / timer.times["run_s"],
            }
        )
    return rows


def default_fit_profile(quick: bool) -> dict:
    """A default NUTS fit: its compile share, and predict throughput from its posterior."""
    spec, data, methods = problem("default", quick)
    compile_s = []

    def listener(event: str, duration: float, **kwargs) -> None:
        if "compile" in event and "backend" in event:
            compile_s.append(duration)

    jax.monitoring.register_event_duration_secs_listener(listener)
    start = time.perf_counter()
    post = brn.fit(spec, data, method="nuts", seed=0, **methods["nuts"][1])
    wall = time.perf_counter() - start
    compiled = float(np.sum(compile_s))
    points = np.tile(data.x_test, (4, 1))  # 2 000 points
    post.predict_f(points[:10])  # compile
    start = time.perf_counter()
    post.predict_f(points)
    seconds = time.perf_counter() - start
    return {
        "wall_s": wall,
        "compile_s": compiled,
        "compile_fraction": compiled / wall,
        "predict_points": int(len(points)),
        "predict_draws": int(post.num_samples),
        "predict_points_x_draws_per_s": len(points) * post.num_samples / seconds,
    }


# --------------------------------------------------------------------------- output


def _eligible(row: dict, base: dict) -> bool:
    """Test RMSE within 2 % of the baseline's, 90 % coverage at most 0.02 below it."""
    return (
        row["test_rmse"] <= 1.02 * base["test_rmse"]
        and row["coverage_90"] >= base["coverage_90"] - 0.02
    )


def format_table(r: dict) -> str:
    lines = [f"device: {r['device']}  ({r['platform']}, jax {r['jax']})", ""]
    head = (
        f"{'problem':<9} {'method':<14} {'wall s':>7} {'grads':>10} {'ESS':>6} "
        f"{'ESS/1k grad':>11} {'ESS/s':>7} {'RMSE':>8} {'cov90':>6} {'sat':>5} {'R-hat f':>7}"
    )
    lines.append(head)
    for prob, rows in r["methods"].items():
        for name, m in rows.items():
            sat = f"{m['saturated']:.2f}" if "saturated" in m else ""
            rhat = f"{m['rhat_f_max']:.3f}" if "rhat_f_max" in m else ""
            lines.append(
                f"{prob:<9} {name:<14} {m['wall_s']:>7.1f} {m['gradient_evaluations']:>10,} "
                f"{m['ess_min']:>6.0f} {m['ess_per_1000_gradients']:>11.2f} "
                f"{m['ess_per_s']:>7.2f} {m['test_rmse']:>8.4f} {m['coverage_90']:>6.3f} "
                f"{sat:>5} {rhat:>7}"
            )
        base = rows.get("nuts_baseline")
        if base:
            eligible = [k for k in rows if _eligible(rows[k], base)]
            best = max(eligible, key=lambda k: rows[k]["ess_per_s"])
            ratio = rows[best]["ess_per_s"] / base["ess_per_s"]
            line = f"  {prob}: best eligible ESS/s {best} = {ratio:.1f}x the baseline"
            if "mclmc" in rows:
                per_grad = "ess_per_1000_gradients"
                ratio = rows["mclmc"][per_grad] / base[per_grad]
                line += f"; mclmc ESS per gradient = {ratio:.1f}x"
            lines.append(line)
    lines.append("")
    for g in r.get("gradients", []):
        for k in ("one", "vmap64"):
            lines.append(
                f"gradient {g['dtype']} {k}: {g[k]['flops_per_s'] / 1e9:.2f} GFLOP/s = "
                f"{100 * g[k]['fraction_of_matmul']:.1f} % of matmul "
                f"({g['matmul_flops_per_s'] / 1e9:.1f} GFLOP/s)"
            )
    for e in r.get("ensemble_scaling", []):
        lines.append(
            f"ensemble {e['members']:>4} members: {e['member_steps_per_s']:,.0f} member-steps/s"
        )
    p = r.get("default_fit")
    if p:
        lines.append(
            f"default NUTS fit: {p['wall_s']:.1f} s, compile {p['compile_s']:.1f} s "
            f"({100 * p['compile_fraction']:.0f} %); predict "
            f"{p['predict_points_x_draws_per_s']:,.0f} points×draws/s"
        )
    return "\n".join(lines)


def plot(r: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 3.8))
    for ax, key, label in (
        (axes[0], "ess_per_s", "ESS of predictions per second"),
        (axes[1], "ess_per_1000_gradients", "ESS per 1 000 gradients"),
    ):
        probs = list(r["methods"])
        names = [m for m in METHODS if any(m in r["methods"][p] for p in probs)]
        width = 0.8 / max(len(probs), 1)
        for i, prob in enumerate(probs):
            vals = [r["methods"][prob].get(m, {}).get(key, np.nan) for m in names]
            ax.bar(np.arange(len(names)) + i * width, vals, width, label=prob)
        ax.set_xticks(np.arange(len(names)) + width * (len(probs) - 1) / 2, names, rotation=30)
        ax.set_yscale("log")
        ax.set_title(label)
        ax.legend()
    scaling = r.get("ensemble_scaling", [])
    if scaling:
        m = [e["members"] for e in scaling]
        axes[2].loglog(m, [e["member_steps_per_s"] for e in scaling], "o-", label="vmapped")
        axes[2].loglog(m, [scaling[0]["member_steps_per_s"] * k for k in m], "k:", label="linear")
        axes[2].set_xlabel("ensemble members")
        axes[2].set_title("member-steps per second")
        axes[2].legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.png")
    fig.savefig(tmp, dpi=110)
    plt.close(fig)
    tmp.replace(path)


def start_results(out: Path, *, merge: bool, quick: bool) -> dict:
    """The results a run starts from: empty, or with ``merge`` the file ``out`` (its
    other problems' rows and machine-level figures are kept)."""
    results = {
        "device": str(jax.devices()[0]),
        "platform": platform.platform(),
        "jax": jax.__version__,
        "quick": quick,
        "methods": {},
    }
    if merge and out.exists():
        previous = json.loads(out.read_text())
        if previous.get("quick") != quick:
            raise ValueError(f"--merge: {out} was written with quick={previous.get('quick')}")
        results = previous | {"methods": previous.get("methods", {})}
    return results


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--problems", default="default,borehole")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "inference.json"))
    parser.add_argument(
        "--merge",
        action="store_true",
        help="update the problems run in an existing --out file and keep the rest of it "
        "(the machine-level figures are not re-measured)",
    )
    parser.add_argument("--gradients-only", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.gradients_only:  # the float64 subprocess
        print(json.dumps(gradient_rate(args.quick)))
        return {}
    methods = args.methods.split(",")
    unknown = sorted(set(methods) - set(METHODS))
    if unknown:
        parser.error(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    out = Path(args.out)
    try:
        results = start_results(out, merge=args.merge, quick=args.quick)
    except ValueError as e:
        parser.error(str(e))
    for prob in args.problems.split(","):
        spec, data, settings = problem(prob, args.quick)
        rows = results["methods"].setdefault(prob, {})  # --merge keeps the other methods
        for name in methods:
            method, options = settings[name]
            print(f"{prob}: {name} ...", flush=True)
            row = bench_method(spec, data, method, options)
            rows[name] = row | {"options": options}
            write_json(out, results)  # what is measured so far survives a stop
    if not (args.merge and "gradients" in results):
        results["gradients"] = [gradient_rate(args.quick), gradient_rate_float64(args.quick)]
        results["ensemble_scaling"] = ensemble_scaling(args.quick)
        results["default_fit"] = default_fit_profile(args.quick)
    print(format_table(results))
    write_json(out, results)
    plot(results, out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return results


if __name__ == "__main__":
    main()
