"""Calibrate a simulator's inputs from observations, through a Bayesian surrogate.

The workflow a surrogate is built for, on a built-in simulator (``--problem``, default
borehole):

1. **Design and fit.** Run the simulator on a Latin-hypercube design (``--num-train``
   runs) and fit an anchored deep ensemble of WP-ResNets to the runs.
2. **Rank the inputs** by their total Sobol index, computed for every surrogate draw
   (``brn.sensitivity.sobol``), with 90 % bands over the draws.
3. **Calibrate the two leading inputs.** Draw a true setting θ* of them, observe the
   *true* simulator with noise (``--noise`` × the output's sd, known to the calibration)
   at ``--num-obs`` known settings of the other inputs, and infer θ with the surrogate
   standing in for the simulator (``brn.inverse.calibrate``): once propagating the
   surrogate's uncertainty (``epost``, the expected posterior over surrogate draws) and
   once with the posterior-mean surrogate taken as exact (``plugin``, over-confident).
   The table says whether each 90 % interval covers the truth, how much of each
   posterior variance is the surrogate's (``surrogate share``) and whether the
   posterior sits where the surrogate extrapolates.

Outputs in ``--out`` (default ``runs/examples/calibrate_simulator``): ``sobol.csv`` (the
indices' summary), ``calibration.csv`` (one row per mode and input),
``calibrate_simulator.json`` (every number), ``sobol.png`` and ``posterior.png`` (the
posteriors of both modes with the truth).

Usage::

    python examples/calibrate_simulator.py                 # a minute or two
    python examples/calibrate_simulator.py --problem oscillator --noise 0.02
    python examples/calibrate_simulator.py --tiny          # seconds: a smoke test
"""

from __future__ import annotations

import argparse
import csv

import numpy as np
from _common import (
    fit_noting_warnings,
    make_parser,
    parse_sized,
    presets,
    print_table,
    save_figure,
)
from matplotlib.figure import Figure

import bayesresnet as brn
from bayesresnet import report

MODES = ("epost", "plugin")

#: Defaults of the full run and of ``--tiny``; a flag given on the command line wins.
FULL, TINY = presets(
    (
        "num_train",
        "width",
        "num_layers",
        "num_steps",
        "members",
        "sobol_n",
        "num_obs",
        "num_warmup",
        "num_samples",
        "num_chains",
    ),
    full={
        "num_train": 150,
        "width": 16,
        "num_steps": 2000,
        "sobol_n": 2**12,
        "num_obs": 6,
        "num_chains": 2,
    },
    tiny={
        "num_train": 40,
        "width": 8,
        "num_steps": 300,
        "sobol_n": 2**8,
        "num_obs": 4,
        "members": 4,
        "num_warmup": 100,
        "num_samples": 100,
    },
)


def parse_args(argv=None) -> argparse.Namespace:
    parser = make_parser(__doc__, problem="borehole", noise=0.02)
    out = "runs/examples/calibrate_simulator"
    return parse_sized(parser, argv, full=FULL, tiny=TINY, out=out)


def fit_surrogate(problem, args):
    """The anchored deep ensemble fitted on a Latin-hypercube design of simulator runs."""
    data = problem.sample(args.seed, num_train=args.num_train, num_test=0, design="lhs")
    spec = brn.ResNetSpec(
        problem.num_inputs,
        problem.num_outputs,
        width=args.width,
        num_layers=args.num_layers,
        basis=brn.bases.Cubic(),
    )
    return fit_noting_warnings(
        spec,
        data,
        method="ensemble",
        num_members=args.members,
        num_steps=args.num_steps,
        anchored=True,
        seed=args.seed,
    )


def observe(problem, unknown, args):
    """θ*, the known settings ``[M, d − 2]`` and noisy observations of the true simulator."""
    rng = np.random.default_rng(args.seed + 1)
    lower, upper = problem.bounds[:, 0], problem.bounds[:, 1]
    known_cols = [j for j in range(problem.num_inputs) if j not in unknown]
    # θ* inside the middle 80 % of each range, so a 90 % interval can fall on either side.
    truth = lower[unknown] + (upper[unknown] - lower[unknown]) * rng.uniform(0.1, 0.9, 2)
    known = rng.uniform(lower[known_cols], upper[known_cols], (args.num_obs, len(known_cols)))
    x = np.zeros((args.num_obs, problem.num_inputs))
    x[:, unknown], x[:, known_cols] = truth, known
    sigma = args.noise * problem.output_std
    y = problem.evaluate(x) + sigma * rng.standard_normal((args.num_obs, problem.num_outputs))
    return truth, known, y, sigma


def calibration_rows(results, unknown_names, truth) -> list[dict]:
    """One row per mode and input: the posterior against the truth."""
    rows = []
    for mode, result in results.items():
        table = result.summary(hdi_prob=0.9)
        for name, value in zip(unknown_names, truth):
            row = table.loc[name]
            rows.append(
                {
                    "mode": mode,
                    "input": name,
                    "truth": float(value),
                    "mean": float(row["mean"]),
                    "sd": float(row["sd"]),
                    "hdi90_lower": float(row["hdi_lower"]),
                    "hdi90_upper": float(row["hdi_upper"]),
                    "covered": bool(row["hdi_lower"] <= value <= row["hdi_upper"]),
                    "surrogate_share": float(row["surrogate_share"]),
                    "r_hat": float(row["r_hat"]),
                    "ess_bulk": float(row["ess_bulk"]),
                    "extrapolates": result.extrapolates,
                }
            )
    return rows


def plot_posteriors(results, unknown_names, truth):
    """Histograms of each unknown's posterior per mode, the truth marked."""
    fig = Figure(figsize=(4.5 * len(unknown_names), 3.5), layout="constrained")
    axes = fig.subplots(1, len(unknown_names), squeeze=False)[0]
    for j, ax in enumerate(axes):
        for mode, result in results.items():
            draws = result.theta()[..., j].reshape(-1)
            ax.hist(draws, bins=40, density=True, alpha=0.5, label=mode)
        ax.axvline(truth[j], color="k", linewidth=1.5, label="truth")
        ax.set_xlabel(unknown_names[j])
    axes[0].legend(fontsize="small")
    return fig


def main(argv=None) -> list[dict]:
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    problem = brn.problems.get(args.problem)

    post = fit_surrogate(problem, args)
    sobol = brn.sensitivity.sobol(post, bounds=problem.bounds, n=args.sobol_n, seed=args.seed)
    ranking = sobol.summary(hdi_prob=0.9)
    ranking.to_csv(out / "sobol.csv")
    total = sobol.ST.mean(axis=(0, 1))  # mean over draws and outputs, per input
    unknown = [int(j) for j in np.argsort(-total)[:2]]
    unknown_names = [problem.input_names[j] for j in unknown]
    truth, known, y, sigma = observe(problem, unknown, args)
    prior = {problem.input_names[j]: tuple(problem.bounds[j]) for j in unknown}

    results = {
        mode: brn.inverse.calibrate(
            post,
            y,
            unknown=unknown,
            known=known,
            prior=prior,
            noise=sigma,  # the measurement noise is known here
            propagate=mode,
            num_warmup=args.num_warmup,
            num_samples=args.num_samples,
            num_chains=args.num_chains,
            seed=args.seed,
        )
        for mode in MODES
    }
    rows = calibration_rows(results, unknown_names, truth)
    with open(out / "calibration.csv", "w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    save_figure(sobol.plot(), out / "sobol.png", "Sobol indices with 90 % HDI bands.")
    save_figure(
        plot_posteriors(results, unknown_names, truth),
        out / "posterior.png",
        "Posteriors of the calibrated inputs, epost and plugin, with the truth.",
    )
    report.write_json(
        out / "calibrate_simulator.json",
        {
            "problem": args.problem,
            "noise_sd": np.asarray(sigma).tolist(),
            "total_sobol": dict(zip(problem.input_names, total.tolist())),
            "unknown": unknown_names,
            "truth": truth.tolist(),
            "rows": rows,
            "effective_draws": {m: r.effective_draws for m, r in results.items()},
            "extrapolation": {m: r.extrapolation for m, r in results.items()},
            "timings": {m: r.timings for m, r in results.items()},
        },
    )

    print("Total Sobol index per output and input (over the surrogate's draws):")
    st = ranking[ranking["index"] == "ST"].sort_values(["output", "mean"], ascending=[True, False])
    print_table(
        ["output", "input", "ST mean", "hdi 5%", "hdi 95%"],
        [[r.output, r.input, r.mean, r[5], r[6]] for r in st.itertuples(index=False)],
    )
    print()
    print_table(
        ["mode", "input", "truth", "mean", "sd", "hdi90", "covered", "share", "r_hat"],
        [
            [
                r["mode"],
                r["input"],
                r["truth"],
                r["mean"],
                r["sd"],
                f"[{r['hdi90_lower']:.4g}, {r['hdi90_upper']:.4g}]",
                "yes" if r["covered"] else "NO",
                r["surrogate_share"],
                r["r_hat"],
            ]
            for r in rows
        ],
    )
    for mode, result in results.items():
        e = result.extrapolation
        print(
            f"{mode}: {result.attrs['propagate_meaning']}; effective surrogate draws "
            f"{result.effective_draws:g}; extrapolates: {'YES' if result.extrapolates else 'no'} "
            f"(outside the training box {e['outside_box']:.0%}, epistemic sd > "
            f"{brn.inverse.EPISTEMIC_FACTOR:g}× its in-box level {e['epistemic_excess']:.0%})"
        )
    print(f"\nwrote {out}: sobol.csv, calibration.csv, calibrate_simulator.json, sobol.png, ")
    print("  posterior.png")
    return rows


if __name__ == "__main__":
    main()
