"""Fit one surrogate by NUTS, then check it the way a Bayesian workflow asks you to.

The script walks through the questions to ask of any fit, in order:

1. **Did the sampler converge?** ``diagnostics.convergence`` gives a verdict
   (``pass``/``warn``/``fail``) from R-hat, bulk/tail ESS and MCSE of function-space
   quantities (predictions at probe inputs, ``|W(t)|`` over depth), divergences,
   tree-depth saturation and E-BFMI; every failed check says what to try.
2. **Are the error bars honest on new data?** ``calibration.summarize`` scores the
   held-out predictive draws: RMSE, CRPS, coverage of central intervals, the
   miscalibration area of the coverage curve, and the mixture NLL.
3. **How well does it predict by leave-one-out?** PSIS-LOO (``diagnostics.loo``) from
   the pointwise log-likelihood, with the count of Pareto k̂ > 0.7 (observations whose
   LOO estimate is unreliable).
4. **Can it be used later?** The posterior is saved to ``posterior.npz``, loaded back
   with ``brn.load`` and used to predict; the reloaded predictions must equal the
   original ones.
5. **The report.** ``workflow.analyze`` computes every number and figure once more
   (posterior predictive checks, LOO-PIT, trace/rank and energy plots, ``W(t)``) and
   ``report.write_report`` writes one self-contained HTML page.

Outputs in ``--out`` (default ``runs/examples/fit_diagnose_check``): ``posterior.npz``,
``predictions.csv`` (held-out mean, sd and 90% interval from the *reloaded* posterior),
``summary.json`` (the printed numbers and the failed checks), ``metrics.json`` (everything
``workflow.analyze`` computed), ``report.html`` and one PNG per report figure.

Usage::

    python examples/fit_diagnose_check.py                 # a few minutes on a laptop
    python examples/fit_diagnose_check.py --tiny          # seconds: a smoke test
    python examples/fit_diagnose_check.py --problem ishigami --num-train 200 --num-chains 4

With ``--tiny`` the chains are far too short to converge: expect a ``fail`` verdict
with advice, which is what the diagnostics are for.
"""

from __future__ import annotations

import argparse
import base64
import csv
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import numpyro
from _common import make_parser, parse_sized, presets, print_table

import bayesresnet as brn
from bayesresnet import calibration, diagnostics, report, workflow

#: Defaults of the full study and of ``--tiny``; a flag given on the command line wins.
FULL, TINY = presets(
    (
        "num_train",
        "num_test",
        "width",
        "num_layers",
        "num_warmup",
        "num_samples",
        "num_chains",
        "max_tree_depth",
        "init_steps",
    ),
    full={},
    tiny={"init_steps": 200},
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, problem="sine", noise=0.1)
    parser.add_argument(
        "--basis",
        default="cubic",
        help="depth basis: per_layer, constant, linear, quadratic, cubic, or legendreN",
    )
    parser.add_argument(
        "--target-accept-prob",
        type=float,
        default=0.8,
        help="NUTS target acceptance; raise (e.g. 0.95) when there are divergences",
    )
    return parse_sized(parser, argv, full=FULL, tiny=TINY, out="runs/examples/fit_diagnose_check")


def make_basis(name: str) -> brn.bases.Basis:
    """``"legendre3"`` → ``Legendre(3)``; other names as in a run specification."""
    match = re.fullmatch(r"(legendre|monomial)(\d+)", name)
    if match:
        return brn.bases.make_basis(match[1], degree=int(match[2]))
    return brn.bases.make_basis(name)


def write_predictions_csv(path: Path, x, pred, input_names, output_names) -> None:
    lo, hi = pred.interval(0.9)
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        header = list(input_names)
        for name in output_names:
            header += [f"{name}_mean", f"{name}_sd", f"{name}_lower90", f"{name}_upper90"]
        writer.writerow(header)
        for i in range(len(x)):
            row = [f"{v:.8g}" for v in x[i]]
            for o in range(len(output_names)):
                row += [f"{v:.8g}" for v in (pred.mean[i, o], pred.std[i, o], lo[i, o], hi[i, o])]
            writer.writerow(row)


def save_figures(out: Path, figures: dict[str, tuple[str, str]]) -> list[str]:
    """Write the report's figures (PNG data URIs) as PNG files; returns their names."""
    names = []
    for title, (uri, _caption) in figures.items():
        slug = re.sub(r"[^a-z0-9]+", "_", title.lower()).strip("_")
        (out / f"{slug}.png").write_bytes(base64.b64decode(uri.split(",", 1)[1]))
        names.append(f"{slug}.png")
    return names


def main(argv=None) -> dict:
    args = parse_args(argv)
    # Parallel chains on a CPU need one XLA host device per chain, set before JAX starts.
    numpyro.set_host_device_count(max(1, min(args.num_chains, os.cpu_count() or 1)))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    # ---------------------------------------------------------------- data and model
    problem = brn.problems.get(args.problem)
    ds = problem.sample(
        args.seed, num_train=args.num_train, num_test=args.num_test, noise=args.noise
    )
    spec = brn.ResNetSpec(
        in_features=ds.num_inputs,
        out_features=ds.num_outputs,
        width=args.width,
        num_layers=args.num_layers,
        basis=make_basis(args.basis),
        activation="tanh",
    )
    print(
        f"{args.problem}: {ds.num_train} training / {ds.num_test} held-out points; "
        f"{brn.num_params(spec)} network parameters; NUTS {args.num_chains} chains x "
        f"{args.num_samples} draws after {args.num_warmup} warm-up",
        file=sys.stderr,
    )

    # ---------------------------------------------------------------- 1. fit by NUTS
    start = time.perf_counter()
    post = brn.fit(
        spec,
        ds,
        method="nuts",
        seed=args.seed,
        num_warmup=args.num_warmup,
        num_samples=args.num_samples,
        num_chains=args.num_chains,
        max_tree_depth=args.max_tree_depth,
        target_accept_prob=args.target_accept_prob,
        init_steps=args.init_steps,
    )
    fit_s = time.perf_counter() - start

    # ---------------------------------------------------------------- 2. convergence
    conv = diagnostics.convergence(post)
    failed = conv.failed()

    # ---------------------------------------------------------------- 3. held-out calibration
    pred = post.predict(ds.x_test, seed=args.seed, return_draws=True)
    cal = calibration.summarize(pred.y, ds.y_test, loc_draws=pred.f, scale_draws=post.noise_scale())

    # ---------------------------------------------------------------- 4. LOO
    idata = post.to_inference_data(seed=args.seed)
    loo = diagnostics.loo(idata)

    # ---------------------------------------------------------------- 5. save, reload, predict
    post.save(out / "posterior.npz")
    reloaded = brn.load(out / "posterior.npz")
    pred2 = reloaded.predict(ds.x_test, seed=args.seed)
    reload_diff = float(np.max(np.abs(pred2.mean - pred.mean)))
    write_predictions_csv(
        out / "predictions.csv", ds.x_test, pred2, reloaded.input_names, reloaded.output_names
    )

    # ---------------------------------------------------------------- 6. the report
    analysis = workflow.analyze(
        reloaded,
        ds,
        name=f"{args.problem}, {spec.basis!r}, NUTS",
        truth=problem.evaluate,
        seed=args.seed,
        data_description=f"{args.problem} problem, noise {args.noise} of the output sd",
    )
    report.write_json(out / "metrics.json", analysis.metrics)
    report.write_report(out / "report.html", analysis.metrics, analysis.figures)
    pngs = save_figures(out, analysis.figures)

    # ---------------------------------------------------------------- summary
    summary = {
        "problem": args.problem,
        "basis": repr(spec.basis),
        "num_params": brn.num_params(spec),
        "fit_seconds": fit_s,
        "verdict": conv.verdict,
        "failed_checks": [
            {"name": c.name, "status": c.status, "value": c.value, "advice": c.advice}
            for c in failed
        ],
        "rmse": cal["rmse"]["overall"],
        "crps": cal["crps"]["overall"],
        "nll": cal["nll"]["overall"],
        "coverage_90": cal["coverage"]["0.9"]["overall"],
        "miscalibration_area": cal["miscalibration_area"]["overall"],
        "elpd_loo": loo["elpd_loo"],
        "elpd_loo_se": loo["se"],
        "p_loo": loo["p_loo"],
        "num_bad_pareto_k": loo["num_bad_k"],
        "reload_max_abs_diff": reload_diff,
    }
    report.write_json(out / "summary.json", summary)

    print(f"\nConvergence verdict: {conv.verdict.upper()}")
    if failed:
        print_table(
            ["check", "status", "value", "threshold"],
            [[c.name, c.status, c.value, c.threshold] for c in failed],
        )
        for c in failed:
            if c.advice:
                print(f"  - {c.name}: {c.advice}")
    print()
    print_table(
        ["quantity", "value"],
        [
            ["verdict", conv.verdict],
            ["failed checks", len(failed)],
            ["rmse", summary["rmse"]],
            ["crps", summary["crps"]],
            ["nll", summary["nll"]],
            ["coverage_90", summary["coverage_90"]],
            ["miscalibration_area", summary["miscalibration_area"]],
            ["elpd_loo", f"{loo['elpd_loo']:.2f} ± {loo['se']:.2f}"],
            ["p_loo", summary["p_loo"]],
            ["pareto_k > 0.7", loo["num_bad_k"]],
            ["reload max |diff|", reload_diff],
            ["fit seconds", fit_s],
        ],
    )
    print(f"\nwrote {out}: report.html, metrics.json, summary.json, posterior.npz, ")
    print(f"  predictions.csv, {', '.join(pngs)}")
    if reload_diff > 1e-6:
        raise SystemExit(f"error: reloaded posterior predicts differently ({reload_diff:.3g}).")
    return summary


if __name__ == "__main__":
    main()
