"""Where MAP fits start the ARD scales: prior draws against ``λ_j = 1`` (``ARD_START``).

A deep ensemble under ``ard=True`` on friedman1 (2 000 rows, 5 % noise, width 8, 8 cubic
layers, Adam on batches of 256 rows then the L-BFGS polish, as ``method="auto"`` runs at
that size), 32 members, once with every member's ``λ`` drawn from its prior (the start
before ``ARD_START``) and once started at ``ARD_START``. Reported per member: the final
``λ₃`` (the scale of ``x₃``, whose effect ``20 (x₃ − ½)²`` is even about the centre of its
range), the final negative log posterior and the relative RMSE of the member's mean
against the noise-free truth. A member that lost ``x₃`` ends with ``λ₃`` near 0 and a
loss thousands of nats above the others.

Usage (about 3 minutes on 2 CPU cores):
    python benchmarks/ard_start.py [--members 32] [--seed 1]
        [--out benchmarks/results/ard_start.json]
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import time
from pathlib import Path
from unittest import mock

import numpy as np

import bayesresnet as brn
from bayesresnet import sites
from bayesresnet._io import write_json
from bayesresnet.architecture import default_spec
from bayesresnet.infer import core

ROOT = Path(__file__).resolve().parent.parent
NUM_ROWS = 2000


def fit_members(start: str, members: int, seed: int) -> dict:
    problem = brn.problems.get("friedman1")
    data = problem.sample(seed=0, num_train=NUM_ROWS, num_test=2000, noise=0.05)
    spec = dataclasses.replace(default_spec(problem.num_inputs, 1, NUM_ROWS), width=8)
    sample_prior = core._sample_prior

    def prior_draw(key, model, x, y, shapes, fixed=None):  # the start before ARD_START
        return sample_prior(key, model, x, y, shapes)

    drawn = start == "prior"
    begin = time.perf_counter()
    with (
        mock.patch.object(core, "_sample_prior", prior_draw) if drawn else contextlib.nullcontext()
    ):
        post = brn.fit(
            spec,
            data,
            method="ensemble",
            seed=seed,
            prior=brn.PriorSpec(ard=True),
            polish="lbfgs",
            batch_size=256,
            num_members=members,
        )
    seconds = time.perf_counter() - begin
    truth = problem.evaluate(data.x_test)
    f = post.predict_f(data.x_test)  # [members, N, 1]
    rel_rmse = np.sqrt(np.mean((f - truth) ** 2, axis=(1, 2))) / problem.output_std[0]
    lam3 = post.samples[sites.ARD_SCALE][0][:, 2]
    loss = np.asarray(post.extra["member_final_loss"])
    lost = lam3 < 0.05
    return {
        "start": start,
        "members": members,
        "seed": seed,
        "members_lost_x3": int(lost.sum()),
        "loss_gap_of_lost": float(np.median(loss[lost]) - np.median(loss[~lost]))
        if lost.any()
        else None,
        "lambda3": lam3.round(4).tolist(),
        "final_loss": loss.round(1).tolist(),
        "member_rel_rmse": rel_rmse.round(5).tolist(),
        "seconds": round(seconds, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--members", type=int, default=32)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks/results/ard_start.json")
    args = parser.parse_args()
    rows = []
    for start in ("prior", "fixed"):
        row = fit_members(start, args.members, args.seed)
        print(
            f"start={start}: {row['members_lost_x3']} of {row['members']} members lost x3 "
            f"(loss gap {row['loss_gap_of_lost']}), {row['seconds']} s",
            flush=True,
        )
        rows.append(row)
    write_json(args.out, {"ard_start": core.ARD_START, "rows": rows})
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
