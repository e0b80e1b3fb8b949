"""Writes ``borehole_observations.csv``: noisy observations of the true borehole function.

The observations that the README's ``bayesresnet calibrate runs/borehole`` line calibrates
against. The borehole radius ``rw`` and the borehole's hydraulic conductivity ``Kw`` are
held at a "true" setting θ* (:data:`TRUTH`); the other six inputs vary from row to row,
drawn uniformly on the middle 90 % of the problem's ranges
(``brn.problems.get("borehole").bounds``; inside the box of the run's training design)
with a fixed seed; each row's ``flow`` is the exact borehole function at those inputs plus
Gaussian noise of sd 1 % of the output's spread over the ranges (``output_std``,
as ``models/borehole.toml``'s training data). The file holds the six known inputs and
``flow``, not θ*: that is what the calibration infers.

Run from the repository root::

    python models/data/make_borehole_observations.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

import bayesresnet as brn

#: The "true" unknown inputs: rw (m) and Kw (m/yr), inside their ranges.
TRUTH = {"rw": 0.09, "Kw": 11_000.0}
NUM_OBS = 8
SEED = 2024
PATH = Path(__file__).with_name("borehole_observations.csv")


def observations() -> tuple[list[str], np.ndarray, float]:
    """The header, the table ``[NUM_OBS, 7]`` (six known inputs, flow) and the noise sd."""
    problem = brn.problems.get("borehole")
    rng = np.random.default_rng(SEED)
    names = list(problem.input_names)
    known = [j for j, name in enumerate(names) if name not in TRUTH]
    lower, upper = problem.bounds[:, 0], problem.bounds[:, 1]
    x = np.zeros((NUM_OBS, len(names)))
    u = rng.uniform(0.05, 0.95, (NUM_OBS, len(known)))
    x[:, known] = lower[known] + (upper[known] - lower[known]) * u
    for name, value in TRUTH.items():
        x[:, names.index(name)] = value
    noise_sd = 0.01 * float(problem.output_std[0])
    y = problem.evaluate(x)[:, 0] + noise_sd * rng.standard_normal(NUM_OBS)
    header = [names[j] for j in known] + list(problem.output_names)
    return header, np.column_stack([x[:, known], y]), noise_sd


def main() -> None:
    header, table, noise_sd = observations()
    lines = [",".join(header)] + [",".join(f"{v:.6g}" for v in row) for row in table]
    PATH.write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {PATH}: {len(table)} observations, noise sd {noise_sd:.4g}, truth {TRUTH}")


if __name__ == "__main__":
    main()
