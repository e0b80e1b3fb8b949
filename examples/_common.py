"""Helpers the example scripts share: the size flags, warnings as notes, tables, figures.

Not part of the library: each script imports it from its own folder (``python
examples/x.py`` puts ``examples/`` first on ``sys.path``).
"""

from __future__ import annotations

import argparse
import base64
import sys
import warnings
from pathlib import Path

import bayesresnet as brn
from bayesresnet import plots

#: The sizes of a full run and of ``--tiny`` (seconds), which each script picks from.
FULL = dict(
    num_train=100,
    num_test=500,
    width=8,
    num_layers=8,
    num_warmup=500,
    num_samples=500,
    num_chains=4,
    max_tree_depth=10,
    num_steps=5000,
    num_draws=1000,
    members=8,
    init_steps=1000,
)
TINY = dict(
    num_train=30,
    num_test=100,
    width=4,
    num_layers=4,
    num_warmup=30,
    num_samples=30,
    num_chains=2,
    max_tree_depth=5,
    num_steps=200,
    num_draws=100,
    members=2,
    init_steps=100,
)


#: What each size flag sets, for ``--help``.
HELP = {
    "num_warmup": "NUTS warm-up steps per chain",
    "num_samples": "NUTS draws per chain",
    "num_chains": "NUTS chains",
    "max_tree_depth": "NUTS maximum tree depth",
    "num_steps": "optimizer steps of SVI and of each ensemble member",
    "num_draws": "SVI draws from the fitted guide",
    "members": "ensemble members",
    "init_steps": "MAP steps that start SVI and each NUTS chain",
}


def presets(names, *, full: dict | None = None, tiny: dict | None = None):
    """``(FULL, TINY)`` restricted to ``names`` (in that order), with the given overrides."""
    full, tiny = {**FULL, **(full or {})}, {**TINY, **(tiny or {})}
    return {n: full[n] for n in names}, {n: tiny[n] for n in names}


def make_parser(doc: str, *, problem: str, noise: float) -> argparse.ArgumentParser:
    """A parser with the script's description and ``--problem`` and ``--noise``."""
    parser = argparse.ArgumentParser(
        description=doc.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--problem", default=problem, choices=brn.problems.names())
    parser.add_argument("--noise", type=float, default=noise, help="noise sd / output sd")
    return parser


def parse_sized(parser, argv, *, full: dict, tiny: dict, out: str):
    """Adds ``--seed``, ``--out``, ``--tiny`` and one int flag per size in ``full``, then parses.

    A size given on the command line wins; the others take ``tiny`` with ``--tiny``, else
    ``full``.
    """
    for name in full:
        what = HELP.get(name, "")
        text = f"{what} default {full[name]} (--tiny: {tiny[name]})".strip()
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=None, help=text)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path(out))
    parser.add_argument("--tiny", action="store_true", help="shrink everything (seconds)")
    args = parser.parse_args(argv)
    for name, value in (tiny if args.tiny else full).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    return args


def noting_warnings(category, function, *args, match: str = "", **kwargs):
    """``function(*args, **kwargs)``, printing its ``category`` warnings (whose text holds
    ``match``) as notes on stderr; any other warning is re-issued."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", category)
        result = function(*args, **kwargs)
    for w in caught:
        if issubclass(w.category, category) and match in str(w.message):
            print(f"  note: {w.message}", file=sys.stderr)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return result


def fit_noting_warnings(spec, ds, **kwargs):
    """``brn.fit``, printing its RuntimeWarnings (members that did not converge, …) as notes."""
    return noting_warnings(RuntimeWarning, brn.fit, spec, ds, **kwargs)


def print_table(header, rows) -> None:
    """Prints ``rows`` under ``header`` in aligned columns (floats to 4 significant digits)."""

    def fmt(v):
        return f"{v:.4g}" if isinstance(v, float) else str(v)

    cells = [[fmt(v) for v in row] for row in [header, *rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(header))]
    for k, row in enumerate(cells):
        print("  ".join(c.ljust(w) for c, w in zip(row, widths)).rstrip())
        if k == 0:
            print("  ".join("-" * w for w in widths))


def save_figure(fig, path: Path, caption: str) -> tuple[str, str]:
    """Writes the figure as PNG; returns ``(data URI, caption)`` for the HTML page."""
    png = plots.figure_to_png(fig)
    path.write_bytes(png)
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii"), caption
