"""Are the error bars honest? NUTS, SVI and a deep ensemble on one problem, and a fix.

The same network is fitted to the same data three ways:

* **NUTS** (the reference: asymptotically exact posterior draws);
* **SVI** with a low-rank Gaussian guide (``--guide``; cheap, known to under-cover for
  neural networks because the guide misses posterior mass);
* a **deep ensemble** of MAP fits (``--members``; the predictive spread comes from the
  members' disagreement plus the fitted noise).

The held-out data are split in two (``--cal-fraction``): a *calibration* split and an
*evaluation* split. On the evaluation split the script scores every method by RMSE, CRPS,
mixture NLL, the coverage of the central 90% predictive interval and the miscalibration
area of the whole coverage curve (``calibration.summarize``), and draws the coverage
curves of all methods side by side (``plots.plot_calibration_curve``). Then it fits a
recalibration map on the calibration split (``calibration.fit_recalibration``: isotonic,
Kuleshov et al. 2018, or variance scaling, Levi et al. 2019) and reports the evaluation
split before and after (``calibration.recalibration_report``). Recalibration can repair
the *marginal* coverage of a miscalibrated method; it cannot repair a poor mean (RMSE is
unchanged) and it needs held-out data the fit never saw.

Outputs in ``--out`` (default ``runs/examples/calibration_study``): ``metrics.csv`` (one
row per method), ``calibration_study.json`` (every number, including the full
before/after summaries), ``calibration_curves.png``,
``calibration_curves_recalibrated.png`` and ``calibration_study.html`` (every method
before and after recalibration side by side, with both figures).

Usage::

    python examples/calibration_study.py                    # minutes
    python examples/calibration_study.py --problem ishigami --num-train 200
    python examples/calibration_study.py --recal variance --methods svi ensemble
    python examples/calibration_study.py --tiny             # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
import time

import numpy as np
import numpyro
from _common import (
    fit_noting_warnings,
    make_parser,
    noting_warnings,
    parse_sized,
    presets,
    print_table,
    save_figure,
)

import bayesresnet as brn
from bayesresnet import calibration, diagnostics, plots, report

METHODS = ("nuts", "svi", "ensemble")

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
        "num_steps",
        "num_draws",
        "members",
        "init_steps",
    ),
    full={"num_test": 1000},
    tiny={"num_test": 200},
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, problem="sine", noise=0.1)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--guide", default="lowrank", help="SVI guide")
    parser.add_argument("--recal", default="isotonic", choices=calibration.RECALIBRATION_METHODS)
    parser.add_argument(
        "--cal-fraction",
        type=float,
        default=0.5,
        help="fraction of the held-out points used to fit the recalibration",
    )
    out = "runs/examples/calibration_study"
    args = parse_sized(parser, argv, full=FULL, tiny=TINY, out=out)
    if not 0 < args.cal_fraction < 1:
        parser.error(f"--cal-fraction must lie in (0, 1); got {args.cal_fraction}.")
    return args


def method_options(method: str, args) -> dict:
    """The ``brn.fit`` options of one method."""
    if method == "nuts":
        return dict(
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            num_chains=args.num_chains,
            max_tree_depth=args.max_tree_depth,
            init_steps=args.init_steps,
        )
    if method == "svi":
        return dict(
            guide=args.guide,
            num_steps=args.num_steps,
            num_draws=args.num_draws,
            init_steps=args.init_steps,
        )
    return dict(num_members=args.members, num_steps=args.num_steps)


def recalibrate_noting_clamps(recal, draws, y) -> dict:
    """``recalibration_report``; an isotonic map that wants draws beyond the range of the
    original ones warns (its tails stay too light): print that as a note, the report
    carries the clamped fraction."""
    report_of = calibration.recalibration_report
    return noting_warnings(UserWarning, report_of, recal, draws, y, match="isotonic")


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    if "nuts" in args.methods:
        # Parallel chains on a CPU need one XLA host device per chain, set before JAX starts.
        numpyro.set_host_device_count(max(1, min(args.num_chains, os.cpu_count() or 1)))
    out = args.out
    out.mkdir(parents=True, exist_ok=True)

    problem = brn.problems.get(args.problem)
    ds = problem.sample(
        args.seed, num_train=args.num_train, num_test=args.num_test, noise=args.noise
    )
    spec = brn.ResNetSpec(
        in_features=ds.num_inputs,
        out_features=ds.num_outputs,
        width=args.width,
        num_layers=args.num_layers,
        basis=brn.bases.Cubic(),
        activation="tanh",
    )
    # Calibration split (fits the recalibration) and evaluation split (scores everything).
    order = np.random.default_rng(args.seed).permutation(ds.num_test)
    num_cal = int(round(args.cal_fraction * ds.num_test))
    cal_idx, ev_idx = np.sort(order[:num_cal]), np.sort(order[num_cal:])
    y_cal, y_ev = ds.y_test[cal_idx], ds.y_test[ev_idx]
    print(
        f"{args.problem}: {ds.num_train} training points; held-out {num_cal} calibration / "
        f"{len(ev_idx)} evaluation; {brn.num_params(spec)} network parameters",
        file=sys.stderr,
    )

    results, runs, rows = {}, {}, []
    curves_before, curves_after = {}, {}
    for method in args.methods:
        options = method_options(method, args)
        print(f"fitting by {method} {options} …", file=sys.stderr)
        start = time.perf_counter()
        post = fit_noting_warnings(spec, ds, method=method, seed=args.seed, **options)
        seconds = time.perf_counter() - start
        conv = diagnostics.convergence(post)

        pred = post.predict(ds.x_test, seed=args.seed, return_draws=True)
        draws_cal, draws_ev = pred.y[:, cal_idx], pred.y[:, ev_idx]
        before = calibration.summarize(
            draws_ev, y_ev, loc_draws=pred.f[:, ev_idx], scale_draws=post.noise_scale()
        )
        recal = calibration.fit_recalibration(draws_cal, y_cal, method=args.recal, seed=args.seed)
        recal_report = recalibrate_noting_clamps(recal, draws_ev, y_ev)
        after = recal_report["after"]

        curve = calibration.calibration_curve(draws_ev, y_ev)
        curves_before[method] = (curve.levels, curve.observed)
        after_curve = after["calibration_curve"]
        curves_after[f"{method} + {args.recal}"] = (
            after_curve["levels"],
            after_curve["observed"],
        )
        verdict = conv.to_dict()
        runs[method] = {"calibration": {"test": before}, "diagnostics": verdict}
        runs[f"{method} + {args.recal}"] = {"calibration": {"test": after}, "diagnostics": verdict}
        results[method] = {
            "options": options,
            "fit_seconds": seconds,
            "diagnostics": verdict,
            "evaluation": before,
            "recalibration": recal_report,
        }
        rows.append(
            {
                "method": method,
                "verdict": conv.verdict,
                "fit_seconds": seconds,
                "rmse": before["rmse"]["overall"],
                "crps": before["crps"]["overall"],
                "nll": before["nll"]["overall"],
                "coverage_90": before["coverage"]["0.9"]["overall"],
                "miscalibration_area": before["miscalibration_area"]["overall"],
                "crps_recal": after["crps"]["overall"],
                "coverage_90_recal": after["coverage"]["0.9"]["overall"],
                "miscalibration_area_recal": after["miscalibration_area"]["overall"],
                "clamped_fraction": float(np.max(recal_report["clamped_fraction"])),
            }
        )

    figures = {
        "Coverage on the evaluation split": save_figure(
            plots.plot_calibration_curve(curves_before),
            out / "calibration_curves.png",
            "Observed against nominal coverage of central predictive intervals, one line "
            "per method; below the diagonal the intervals are too narrow (over-confident).",
        ),
        f"Coverage after {args.recal} recalibration": save_figure(
            plots.plot_calibration_curve(curves_after),
            out / "calibration_curves_recalibrated.png",
            f"The same after {args.recal} recalibration fitted on the calibration split.",
        ),
    }
    with open(out / "metrics.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    report.write_json(
        out / "calibration_study.json",
        {
            "problem": args.problem,
            "noise": args.noise,
            "num_train": ds.num_train,
            "num_calibration": int(num_cal),
            "num_evaluation": int(len(ev_idx)),
            "recalibration_method": args.recal,
            "rows": rows,
            "methods": results,
        },
    )
    page = report.render_compare_html([], runs, figures)
    (out / "calibration_study.html").write_text(page, encoding="utf-8")

    print()
    print_table(
        [
            "method",
            "rmse",
            "crps",
            "cov90",
            "miscal",
            f"cov90 {args.recal}",
            f"miscal {args.recal}",
            "verdict",
            "seconds",
        ],
        [
            [
                r["method"],
                r["rmse"],
                r["crps"],
                r["coverage_90"],
                r["miscalibration_area"],
                r["coverage_90_recal"],
                r["miscalibration_area_recal"],
                r["verdict"],
                r["fit_seconds"],
            ]
            for r in rows
        ],
    )
    print(
        f"\nevaluation split: {len(ev_idx)} points (binomial se of cov90 ≈ "
        f"{np.sqrt(0.09 / max(len(ev_idx), 1)):.3f})"
    )
    print(f"wrote {out}: metrics.csv, calibration_study.json, calibration_study.html, ")
    print("  calibration_curves.png, calibration_curves_recalibrated.png")
    return rows


if __name__ == "__main__":
    main()
