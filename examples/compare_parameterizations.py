"""Compare depth parameterizations of the same network: which basis should W(t) use?

A WP-ResNet writes the hidden weights of layer ``l`` as ``W(t_l) = Σ_k Φ_k(t_l) C_k``.
This script fits the *same* width and depth with four parameterizations, by the same
inference method, on one problem:

* ``per-layer``: one free matrix per layer (a plain ResNet, ``bases.PerLayer()``);
* ``cubic``: cubic monomials in depth (``bases.Cubic()``, 4 coefficient matrices);
* ``legendre3``: shifted Legendre polynomials up to degree 3 (``bases.Legendre(3)``:
  the same function space as cubic, an orthogonal coordinate system for its prior);
* ``mlp-cubic``: the MLP baseline ``h ← σ(W(t)h + b(t))`` with the cubic basis
  (``residual=False``): what the skip connection buys.

and compares them by

* **PSIS-LOO** (``diagnostics.compare``: elpd, its difference to the best and the
  standard error of that difference, stacking weights). With a deep ensemble (the
  default: fast, and every member is a well-optimized MAP fit) the members are the
  "draws", so LOO is rough: few draws, and Pareto k̂ > 0.7 is flagged. Check the ranking
  against the held-out numbers, or use ``--method nuts`` when it matters.
  ``--method svi`` (``--guide laplace``: a Gaussian at the MAP) is quick too, but a
  Laplace approximation of a neural network can put mass on wild weights: compare its
  elpd with care;
* **held-out calibration** (``calibration.summarize``: RMSE, CRPS, NLL, coverage of the
  90% interval, miscalibration area);
* **size**: ``brn.num_params(spec)``;
* **the posterior of W(t) over depth** for all four in one figure
  (``plots.plot_weight_paths``): smooth bases give smooth paths, the per-layer ResNet a
  staircase whose band shows how little each layer's matrix is pinned down.

Outputs in ``--out`` (default ``runs/examples/compare_parameterizations``):
``comparison.csv`` and ``comparison.json`` (one row per parameterization),
``weight_paths.png``, ``calibration_curves.png`` and ``comparison.html`` (the LOO table,
the calibration table and both figures).

Usage::

    python examples/compare_parameterizations.py                      # ensembles, minutes
    python examples/compare_parameterizations.py --method svi --guide laplace
    python examples/compare_parameterizations.py --method nuts --problem sine
    python examples/compare_parameterizations.py --tiny               # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpyro
from _common import (
    fit_noting_warnings,
    make_parser,
    parse_sized,
    presets,
    print_table,
    save_figure,
)

import bayesresnet as brn
from bayesresnet import calibration, diagnostics, plots, report

#: name → (basis, residual): the parameterizations compared, all at the same width/depth.
VARIANTS = {
    "per-layer": (brn.bases.PerLayer(), True),
    "cubic": (brn.bases.Cubic(), True),
    "legendre3": (brn.bases.Legendre(3), True),
    "mlp-cubic": (brn.bases.Cubic(), False),
}

#: Defaults of the full study and of ``--tiny``; a flag given on the command line wins.
FULL, TINY = presets(
    (
        "num_train",
        "num_test",
        "width",
        "num_layers",
        "members",
        "num_steps",
        "num_draws",
        "num_warmup",
        "num_samples",
        "num_chains",
        "max_tree_depth",
        "init_steps",
    ),
    full={
        "num_train": 200,
        "num_test": 1000,
        "members": 16,
        "num_warmup": 300,
        "num_samples": 300,
        "num_chains": 2,
        "max_tree_depth": 8,
    },
    tiny={"num_layers": 6, "num_steps": 100},
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, problem="ishigami", noise=0.05)
    parser.add_argument("--method", default="ensemble", choices=["ensemble", "svi", "nuts"])
    parser.add_argument("--guide", default="laplace", help="SVI guide (with --method svi)")
    parser.add_argument(
        "--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS), metavar="NAME"
    )
    out = "runs/examples/compare_parameterizations"
    args = parse_sized(parser, argv, full=FULL, tiny=TINY, out=out)
    if len(args.variants) < 2:
        parser.error("--variants needs at least two parameterizations to compare.")
    return args


def method_options(args) -> dict:
    """The ``brn.fit`` options of the chosen method."""
    if args.method == "ensemble":
        return dict(num_members=args.members, num_steps=args.num_steps)
    if args.method == "svi":
        return dict(
            guide=args.guide,
            num_steps=args.num_steps,
            num_draws=args.num_draws,
            init_steps=args.init_steps,
        )
    return dict(
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        max_tree_depth=args.max_tree_depth,
        init_steps=args.init_steps,
    )


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if args.method == "nuts":
        # Parallel chains on a CPU need one XLA host device per chain, set before JAX starts.
        numpyro.set_host_device_count(max(1, min(args.num_chains, os.cpu_count() or 1)))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    problem = brn.problems.get(args.problem)
    ds = problem.sample(
        args.seed, num_train=args.num_train, num_test=args.num_test, noise=args.noise
    )
    options = method_options(args)
    print(
        f"{args.problem}: {ds.num_train} training / {ds.num_test} held-out points; "
        f"width {args.width}, {args.num_layers} layers; method {args.method} {options}",
        file=sys.stderr,
    )

    posts, idatas, metrics, rows = {}, {}, {}, {}
    for name in args.variants:
        basis, residual = VARIANTS[name]
        spec = brn.ResNetSpec(
            in_features=ds.num_inputs,
            out_features=ds.num_outputs,
            width=args.width,
            num_layers=args.num_layers,
            basis=basis,
            activation="tanh",
            residual=residual,
        )
        print(f"fitting {name} ({brn.num_params(spec)} parameters) …", file=sys.stderr)
        start = time.perf_counter()
        post = fit_noting_warnings(spec, ds, method=args.method, seed=args.seed, **options)
        seconds = time.perf_counter() - start
        pred = post.predict(ds.x_test, seed=args.seed, return_draws=True)
        cal = calibration.summarize(
            pred.y, ds.y_test, loc_draws=pred.f, scale_draws=post.noise_scale()
        )
        conv = diagnostics.convergence(post)
        posts[name] = post
        idatas[name] = post.to_inference_data(seed=args.seed)
        # The shape render_compare_html reads: held-out calibration and the verdict.
        metrics[name] = {"calibration": {"test": cal}, "diagnostics": conv.to_dict()}
        rows[name] = {
            "name": name,
            "basis": repr(basis),
            "residual": residual,
            "num_params": brn.num_params(spec),
            "fit_seconds": seconds,
            "verdict": conv.verdict,
            "rmse": cal["rmse"]["overall"],
            "crps": cal["crps"]["overall"],
            "nll": cal["nll"]["overall"],
            "coverage_90": cal["coverage"]["0.9"]["overall"],
            "miscalibration_area": cal["miscalibration_area"]["overall"],
        }

    # PSIS-LOO ranking, best first; the held-out numbers are merged in per row.
    ranking = diagnostics.compare(idatas)
    table = []
    for r in ranking:
        row = rows[r["name"]] | {
            "loo_rank": r["rank"],
            "elpd_loo": r["elpd_loo"],
            "elpd_diff": r["elpd_diff"],
            "elpd_diff_se": r["dse"],
            "p_loo": r["p_loo"],
            "stacking_weight": r["weight"],
            "loo_warning": r["warning"],
        }
        table.append(row)

    curves = {}
    for name, m in metrics.items():
        curve = m["calibration"]["test"]["calibration_curve"]
        curves[name] = (curve["levels"], curve["observed"])
    figures = {
        "Posterior of W(t) over depth": save_figure(
            plots.plot_weight_paths(posts),
            out / "weight_paths.png",
            "RMS entry of W(t) per parameterization: median and 90% band over draws. "
            "The per-layer ResNet is drawn as steps, one matrix per layer.",
        ),
        "Held-out calibration curves": save_figure(
            plots.plot_calibration_curve(curves),
            out / "calibration_curves.png",
            "Observed against nominal coverage of central predictive intervals; below the "
            "diagonal the intervals are too narrow.",
        ),
    }

    with open(out / "comparison.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(table[0]))
        writer.writeheader()
        writer.writerows(table)
    report.write_json(
        out / "comparison.json",
        {
            "problem": args.problem,
            "method": args.method,
            "options": options,
            "width": args.width,
            "num_layers": args.num_layers,
            "rows": table,
        },
    )
    page = report.render_compare_html(ranking, metrics, figures)
    (out / "comparison.html").write_text(page, encoding="utf-8")

    print()
    print_table(
        [
            "variant",
            "params",
            "loo rank",
            "elpd_loo",
            "Δelpd ± se",
            "rmse",
            "crps",
            "cov90",
            "miscal",
            "verdict",
        ],
        [
            [
                r["name"],
                r["num_params"],
                r["loo_rank"],
                r["elpd_loo"],
                f"{r['elpd_diff']:.1f} ± {r['elpd_diff_se']:.1f}",
                r["rmse"],
                r["crps"],
                r["coverage_90"],
                r["miscalibration_area"],
                r["verdict"],
            ]
            for r in table
        ],
    )
    if any(r["loo_warning"] for r in table):
        print("LOO warning: some Pareto k̂ > 0.7; the LOO ranking is rough (see --method).")
    print(f"\nwrote {out}: comparison.csv, comparison.json, comparison.html, ")
    print("  weight_paths.png, calibration_curves.png")
    return table


if __name__ == "__main__":
    main()
