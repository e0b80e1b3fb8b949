"""What the evidence says of the network's prior scales, and what following it buys.

``method="auto"`` at 200 rows fits each problem with the default prior scales
(:class:`~bayesresnet.PriorSpec`: ``weight_scale``, ``bias_scale``, ``input_scale``,
``output_scale``, all 1). MacKay's evidence framework re-estimates a Normal prior's scale
from a fit: linearized around a member's weights ``θ`` (the Jacobian that the noise
re-estimate forms, :mod:`bayesresnet.infer.noise`, with the re-estimated noise sds), the
posterior precision in units of the prior's is ``H = I + AᵀA``; the parameters the data
determine are ``γᵢ = 1 − (H⁻¹)ᵢᵢ``, and the scale of a group ``g`` of weights that
maximizes the evidence is ``c_g·s`` with ``c_g² = Σ_{i∈g} (θᵢ/sᵢ)² / Σ_{i∈g} γᵢ``
(MacKay 1992, eq. 2.21 for each group), ``sᵢ`` the present prior sd of weight ``i``.

For each case this script fits ``auto`` with the default scales, computes ``c_g`` for the
four groups of the :class:`~bayesresnet.PriorSpec` (hidden weights, biases, input
weights, output weights; the geometric mean over the members), and fits ``auto`` again
from the start with each group's scale multiplied by its ``c_g`` (one update). Reported
per case: CRPS relative to the output's sd, 90 % coverage, both fits' ``c_g`` and the
members' mean ``γ``. With ``--check``, both scales are also fitted to 80 % of the training
rows and scored on the other 20 % (the split of the ``spec="auto"`` search): whether such
a check, which needs no test set, would have kept the scales that did better on it.

The fits are ``auto``'s (its method and options for the rows, with the scales given);
the evidence is the ensemble's own (``EnsembleConfig(prior_evidence=True)``,
:func:`bayesresnet.infer.noise.evidence_factors`; the factors
:func:`bayesresnet.architecture.evidence_scales`).

Usage (about 15 s per case on 2 CPU cores; the full grid about 10 minutes):
    python benchmarks/prior_evidence.py [--problems borehole,ishigami] [--noise 0,0.05]
        [--seeds 0,1,2] [--rows 200] [--check] [--out benchmarks/results/prior_evidence.json]
"""

from __future__ import annotations

import argparse
import dataclasses
import time
import warnings
from pathlib import Path

import numpy as np

import bayesresnet as brn
from bayesresnet import calibration
from bayesresnet._io import write_json
from bayesresnet.architecture import _split, default_spec, evidence_scales
from bayesresnet.infer.auto import choose_method

ROOT = Path(__file__).resolve().parent.parent
NUM_TEST = 2000
#: The share of the training rows ``--check`` holds out (the network search's).
HOLDOUT = 0.2

SCALES = ("weight_scale", "bias_scale", "input_scale", "output_scale")


def fit_and_score(problem, data, seed: int, scales: dict) -> dict:
    """``auto``'s fit (its method and options for these rows) with the prior ``scales``
    and the members' evidence, scored on the test set."""
    x = data.x_train
    spec = default_spec(x.shape[1], data.y_train.shape[1], len(x))
    choice = choose_method(len(x), spec)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the members' convergence warning
        post = brn.fit(
            spec, data, method=choice.method, seed=seed, prior=brn.PriorSpec(**scales),
            prior_evidence=True, **choice.options,
        )  # fmt: skip
    seconds = time.perf_counter() - start
    pred = post.predict(data.x_test, seed=seed, levels=(0.9,), return_draws=True)
    sd = np.asarray(problem.output_std)
    factors = evidence_scales(post)
    gamma = float(np.mean(np.sum(post.extra["member_effective_params"], axis=1)))
    return {
        "scales": scales,
        "crps": float(np.mean(calibration.crps(pred.y, data.y_test) / sd)),
        "coverage_90": float(np.mean(calibration.coverage(pred.y, data.y_test, [0.9])[0])),
        "rel_rmse": float(np.mean(calibration.rmse(pred.mean, data.y_test) / sd)),
        "factors": factors,
        "gamma": gamma,
        "fit_s": seconds,
    }


def held_out(data, seed: int) -> brn.Dataset:
    """The training rows split as ``spec="auto"``'s search splits them: the search's 80 %
    to fit, its 20 % as the test set."""
    train, val = _split(len(data.x_train), HOLDOUT, seed)
    x, y = data.x_train, data.y_train
    return dataclasses.replace(
        data, x_train=x[train], y_train=y[train], x_test=x[val], y_test=y[val]
    )


def run_case(name: str, noise: float, seed: int, rows: int, check: bool = False) -> dict:
    problem = brn.problems.get(name)
    data = problem.sample(seed=seed, num_train=rows, num_test=NUM_TEST, noise=noise)
    default = fit_and_score(problem, data, seed, dict.fromkeys(SCALES, 1.0))
    updated = fit_and_score(problem, data, seed, dict(default["factors"]))
    case = {
        "problem": name,
        "noise": noise,
        "seed": seed,
        "rows": rows,
        "default": default,
        "evidence": updated,
        "crps_ratio": updated["crps"] / default["crps"],
    }
    if check:  # would a held-out check of the same scales have chosen right?
        split = held_out(data, seed)
        base = fit_and_score(problem, split, seed, dict.fromkeys(SCALES, 1.0))
        scaled = fit_and_score(problem, split, seed, dict(default["factors"]))
        case["held_out_ratio"] = scaled["crps"] / base["crps"]
        chosen = case["held_out_ratio"] < 1.0
        case["held_out_chooses_evidence"] = bool(chosen)
        case["chosen_crps_ratio"] = case["crps_ratio"] if chosen else 1.0
    return case


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--problems", default="borehole,friedman1,ishigami,oscillator,sobol_g,sine")
    parser.add_argument("--noise", default="0,0.05")
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--rows", type=int, default=200)
    parser.add_argument(
        "--check",
        action="store_true",
        help="also fit both scales on 80 %% of the training rows and score them on the "
        "other 20 %%: would that check have kept the better one? (two more fits per case)",
    )
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/prior_evidence.json")
    args = parser.parse_args(argv)
    if args.out.exists():
        parser.error(f"{args.out} exists; name another --out (results are never overwritten)")
    cases = []
    for seed in map(int, args.seeds.split(",")):
        for name in args.problems.split(","):
            for noise in map(float, args.noise.split(",")):
                case = run_case(name, noise, seed, args.rows, args.check)
                cases.append(case)
                d, e = case["default"], case["evidence"]
                print(
                    f"{name} noise={noise} seed={seed}: CRPS {d['crps']:.4g} -> {e['crps']:.4g} "
                    f"(x{case['crps_ratio']:.3f}), coverage {d['coverage_90']:.3f} -> "
                    f"{e['coverage_90']:.3f}, factors "
                    + ", ".join(f"{k} {v:.2f}" for k, v in d["factors"].items())
                    + (
                        f"; held out x{case['held_out_ratio']:.3f}"
                        if "held_out_ratio" in case
                        else ""
                    ),
                    flush=True,
                )
                write_json(args.out, {"rows": args.rows, "cases": cases})  # each case kept
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
