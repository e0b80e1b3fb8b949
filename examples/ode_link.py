"""The neural-ODE link on one fitted posterior: continuous depth, gradients, stiffness, scaling.

A WP-ResNet layer ``h ← h + Δt σ(h W(t) + b(t))`` is one explicit-Euler step of the
neural ODE ``dh/dt = σ(h W(t) + b(t))``. This script fits one posterior (a deep ensemble
of a continuous-basis ResNet, Legendre polynomials of degree 3 by default) and checks
the four claims of that link on it:

1. **Continuous depth** (``ode.solve``, ``Posterior.predict(depth=M)``): the ``M``-layer
   network with the fitted coefficients converges to the ODE solution, at first order
   in ``Δt = 1/M`` for the Euler update and at second order for
   ``ResNetSpec(scheme="heun")`` (the same coefficients); the figure shows the relative
   distance to the ODE against ``M`` per posterior draw (computed in float64).
2. **Gradients two ways** (``ode.backprop_gradient`` against ``ode.adjoint_gradient``):
   the gap between backpropagation through ``L`` layers and the ODE's continuous
   adjoint shrinks like ``1/L``.
3. **Stiffness** (``stiffness.posterior_stiffness``): the stiffness ratio and the
   stability indicator of each layer's Jacobian over depth, with posterior bands.
4. **Depth scaling** (``depth_scaling.posterior_depth_scaling``): the exponent β of the
   weight increments (Cohen et al. 2021) for the fitted continuous basis (near 1 by
   construction once the layers resolve the curvature of ``W(t)``; lower at small
   depths) and, for contrast, a plain ResNet (``bases.PerLayer()``) of the same
   width and depth fitted to the same data, whose layers are free.

Outputs in ``--out`` (default ``runs/examples/ode_link``): ``depth_convergence.png``,
``gradient_gap.png``, ``stiffness.png``, ``depth_scaling.png``, all four in
``ode_link.png``, and ``ode_link.json`` (the printed numbers).

Usage::

    python examples/ode_link.py                  # about a minute
    python examples/ode_link.py --tiny           # seconds: a smoke test
    python examples/ode_link.py --problem ishigami --members 16
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import warnings
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
from matplotlib.figure import Figure
from matplotlib.image import imread

import bayesresnet as brn
from bayesresnet import depth_scaling, ode, ode_plots, plots, sites, stiffness

#: Defaults of the full run and of ``--tiny``; a flag given on the command line wins.
FULL = dict(
    num_train=100,
    width=8,
    num_layers=16,
    members=8,
    num_steps=3000,
    max_depth=256,
    gradient_draws=4,
)
TINY = dict(
    num_train=30,
    width=4,
    num_layers=8,
    members=2,
    num_steps=100,
    max_depth=16,
    gradient_draws=2,
)
HELP = {
    "members": "ensemble members (posterior draws)",
    "num_steps": "Adam steps per member",
    "max_depth": "largest M of the depth-convergence panel (powers of two from 4; the "
    "gradient-gap panel goes up to min(M, 32))",
    "gradient_draws": "draws of the gradient-gap panel",
}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--problem", default="sine", choices=brn.problems.names())
    parser.add_argument("--noise", type=float, default=0.05, help="noise sd / output sd")
    for name in FULL:
        parser.add_argument(
            "--" + name.replace("_", "-"),
            type=int,
            default=None,
            help=f"{HELP.get(name, '')} default {FULL[name]} (--tiny: {TINY[name]})".strip(),
        )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("runs/examples/ode_link"))
    parser.add_argument("--tiny", action="store_true", help="shrink everything (seconds)")
    args = parser.parse_args(argv)
    preset = TINY if args.tiny else FULL
    for name, value in preset.items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    if args.max_depth < 8:
        parser.error("--max-depth must be at least 8 (two depths of the convergence panel).")
    return args


def fit(spec, ds, args):
    """A deep ensemble; its RuntimeWarnings (members not converged) printed as notes."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        post = brn.fit(
            spec,
            ds,
            method="ensemble",
            seed=args.seed,
            num_members=args.members,
            num_steps=args.num_steps,
        )
    for w in caught:
        if not issubclass(w.category, RuntimeWarning):
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
        else:
            print(f"  note: {w.message}", file=sys.stderr)
    return post


def network_draws(post, dtype=jnp.float32) -> list[dict]:
    flat = post.flat_samples()
    return [
        {k: jnp.asarray(flat[k][s], dtype=dtype) for k in sites.NETWORK}
        for s in range(post.num_samples)
    ]


def depth_convergence(post, x, depths):
    """Relative distance ``‖f_M − f_ODE‖/‖f_ODE‖`` per draw, Euler and Heun, in float64."""
    spec = post.spec
    heun = dataclasses.replace(spec, scheme="heun")
    errors = {"Euler": [], "Heun": []}
    with jax.enable_x64(True):
        xs = jnp.asarray(x, dtype=jnp.float64)
        for params in network_draws(post, jnp.float64):
            ref = ode.solve(params, xs, spec, rtol=1e-10, atol=1e-12)
            norm = jnp.linalg.norm(ref)
            for name, s in (("Euler", spec), ("Heun", heun)):
                errors[name].append(
                    [
                        float(jnp.linalg.norm(brn.apply(params, xs, s, num_layers=m) - ref) / norm)
                        for m in depths
                    ]
                )
    return {k: np.asarray(v) for k, v in errors.items()}


def gradient_gaps(post, x, y, depths, num_draws):
    """``gradient_gap`` per draw and depth, the adjoint gradient computed once per draw."""
    spec = post.spec
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    adjoint = jax.jit(lambda p: ode.adjoint_gradient(p, x, y, spec, rtol=1e-6, atol=1e-8))
    backprop = {m: jax.jit(lambda p, m=m: ode.backprop_gradient(p, x, y, spec, m)) for m in depths}
    gaps = []
    for params in network_draws(post)[:num_draws]:
        g_adj = adjoint(params)
        gaps.append([float(ode.relative_difference(backprop[m](params), g_adj)) for m in depths])
    return np.asarray(gaps)


def tile(paths: list[Path], path: Path) -> None:
    """The saved figures side by side in one PNG (2 × 2)."""
    grid = Figure(figsize=(12.8, 9.6), layout="constrained")
    for ax, source in zip(grid.subplots(2, 2).ravel(), paths):
        ax.imshow(imread(source, format="png"))
        ax.set_axis_off()
    path.write_bytes(plots.figure_to_png(grid, dpi=90))


def print_table(rows: dict) -> None:
    width = max(len(k) for k in rows)
    print(f"{'quantity'.ljust(width)}  value")
    print(f"{'-' * width}  -----")
    for key, value in rows.items():
        print(f"{key.ljust(width)}  {value:.4g}")


def main(argv=None) -> dict:
    args = parse_args(argv)
    out = args.out
    out.mkdir(parents=True, exist_ok=True)
    problem = brn.problems.get(args.problem)
    ds = problem.sample(args.seed, num_train=args.num_train, num_test=0, noise=args.noise)
    spec = brn.ResNetSpec(
        ds.num_inputs,
        ds.num_outputs,
        width=args.width,
        num_layers=args.num_layers,
        basis=brn.bases.Legendre(3),
    )
    print(f"fitting {spec.basis!r} and PerLayer() ensembles …", file=sys.stderr)
    post = fit(spec, ds, args)
    per_layer = fit(dataclasses.replace(spec, basis=brn.bases.PerLayer()), ds, args)

    scaler = post.scaler
    x = scaler.transform_x(ds.x_train)
    y = scaler.transform_y(ds.y_train)
    depths = 2 ** np.arange(2, int(np.log2(args.max_depth)) + 1)
    errors = depth_convergence(post, x, depths)
    gap_depths = depths[depths <= 32]
    gaps = gradient_gaps(post, x, y, gap_depths, args.gradient_draws)
    stiff = stiffness.posterior_stiffness(post)
    scaling = {
        repr(spec.basis): depth_scaling.posterior_depth_scaling(post),
        "PerLayer()": depth_scaling.posterior_depth_scaling(per_layer),
    }

    figures = {
        ode_plots.plot_depth_convergence(depths, errors): "depth_convergence.png",
        ode_plots.plot_gradient_gap(gap_depths, gaps): "gradient_gap.png",
        ode_plots.plot_stiffness(stiff): "stiffness.png",
        ode_plots.plot_depth_scaling(scaling): "depth_scaling.png",
    }
    for fig, name in figures.items():
        (out / name).write_bytes(plots.figure_to_png(fig))
    tile([out / name for name in figures.values()], out / "ode_link.png")

    def slope(err):
        return float(-np.polyfit(np.log(depths), np.log(np.median(err, axis=0)), 1)[0])

    bands = stiffness.stiffness_bands(stiff)
    rows = {
        "euler_order": slope(errors["Euler"]),
        "heun_order": slope(errors["Heun"]),
        f"euler_error_M{depths[-1]}": float(np.median(errors["Euler"][:, -1])),
        "gradient_gap_L4": float(np.median(gaps[:, 0])),
        f"gradient_gap_L{gap_depths[-1]}": float(np.median(gaps[:, -1])),
        "stiffness_ratio_median": float(np.median(bands.ratio[1])),
        "stability_median": float(np.median(bands.stability[1])),
        "beta_continuous": float(np.median(scaling[repr(spec.basis)].beta)),
        "beta_per_layer": float(np.median(scaling["PerLayer()"].beta)),
    }
    print_table(rows)
    (out / "ode_link.json").write_text(json.dumps({"args": vars(args) | {"out": str(out)}, **rows}))
    return rows


if __name__ == "__main__":
    main()
