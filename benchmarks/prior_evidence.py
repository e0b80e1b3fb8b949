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

The fits are the package's own; the Jacobians come from the ensemble's noise re-estimate,
read by wrapping ``bayesresnet.infer.ensemble.effective_noise`` (an experiment's hook,
not an interface).

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
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

import bayesresnet as brn
from bayesresnet import calibration
from bayesresnet._io import write_json
from bayesresnet.architecture import _split
from bayesresnet.infer import ensemble
from bayesresnet.infer import noise as noise_module

ROOT = Path(__file__).resolve().parent.parent
NUM_TEST = 2000
#: The share of the training rows ``--check`` holds out (the network search's).
HOLDOUT = 0.2

#: The PriorSpec scale of each network site (the biases share one).
GROUPS = {
    "hidden_weight": "weight_scale",
    "input_weight": "input_scale",
    "output_weight": "output_scale",
    "hidden_bias": "bias_scale",
    "input_bias": "bias_scale",
    "output_bias": "bias_scale",
}
SCALES = ("weight_scale", "bias_scale", "input_scale", "output_scale")


def _capturing():
    """A wrapper of the ensemble's noise re-estimate that keeps what it computed from."""
    seen = {}
    real = noise_module.effective_noise

    def effective_noise(model, x, y, params, **kwargs):
        refit = real(model, x, y, params, **kwargs)
        x, y = jnp.asarray(x), jnp.asarray(y)
        one = jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), params)
        seen["names"] = noise_module._structure(model, x, y, one)[0]
        program = noise_module.noise_program(model, x, y, params)
        seen["jac"], seen["prior_sd"], _, _ = jax.device_get(program.run(params))
        seen["params"] = jax.device_get(params)
        seen["ratio"] = refit.sigma / refit.map_sigma  # [M, O]: re-estimated over MAP sd
        return refit

    return seen, effective_noise


def evidence_factors(seen: dict) -> tuple[dict, float]:
    """``c_g`` of each PriorSpec scale (geometric mean over members) and the mean ``γ``."""
    names, logs, gammas = seen["names"], {s: [] for s in SCALES}, []
    for m, (jac, prior_sd) in enumerate(zip(seen["jac"], seen["prior_sd"], strict=True)):
        theta, _ = ravel_pytree({k: seen["params"][k][m] for k in names})
        group, _ = ravel_pytree(
            {k: np.full(np.shape(seen["params"][k][m]), i, float) for i, k in enumerate(names)}
        )
        a = np.asarray(jac, np.float64) / seen["ratio"][m][None, :, None] * prior_sd
        a = a.reshape(-1, a.shape[-1])
        gamma = 1.0 - np.diag(np.linalg.inv(np.eye(a.shape[1]) + a.T @ a))
        z2 = (np.asarray(theta, np.float64) / prior_sd) ** 2
        gammas.append(gamma.sum())
        for scale in SCALES:
            idx = np.isin(group, [i for i, k in enumerate(names) if GROUPS.get(k) == scale])
            if idx.any():  # a group the model lacks keeps its scale
                logs[scale].append(0.5 * np.log(z2[idx].sum() / max(gamma[idx].sum(), 1e-9)))
    factors = {s: float(np.exp(np.mean(v))) if v else 1.0 for s, v in logs.items()}
    return factors, float(np.mean(gammas))


def fit_and_score(problem, data, seed: int, scales: dict) -> dict:
    seen, hook = _capturing()
    start = time.perf_counter()
    with mock.patch.object(ensemble, "effective_noise", hook), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the members' convergence warning
        post = brn.fit(None, data, seed=seed, prior=brn.PriorSpec(**scales))
    seconds = time.perf_counter() - start
    pred = post.predict(data.x_test, seed=seed, levels=(0.9,), return_draws=True)
    sd = np.asarray(problem.output_std)
    factors, gamma = evidence_factors(seen)
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
