"""The ``bayesresnet`` command line.

    bayesresnet fit SPEC.toml [--out DIR]        fit, diagnose, calibrate, report
    bayesresnet report DIR                       re-render a run's report
    bayesresnet predict DIR --input x.csv --output pred.csv
    bayesresnet compare DIR DIR ... [--out FILE] LOO and calibration side by side
    bayesresnet problems                         the built-in problems

A run directory holds ``spec.toml`` (the run specification as given), ``posterior.npz``,
``data.npz`` (the training and held-out data), ``predictions.csv`` (held-out
predictions), ``metrics.json`` and ``report.html``. It is assembled in a temporary
folder beside its destination and moved into place only when complete, so an
interrupted run leaves no half-written files.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import shutil
import sys
import tempfile
import time
import warnings
from pathlib import Path

from bayesresnet import __version__, problems
from bayesresnet.data import load_npz, save_npz
from bayesresnet.posterior import load, write_atomic

__all__ = ["main"]


class _Progress:
    """Stage messages with elapsed time on standard error."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)


def _prediction_csv(x, pred, input_names, output_names, levels=(0.9,)) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    header = list(input_names)
    for name in output_names:
        header += [f"{name}_mean", f"{name}_sd", f"{name}_f_sd"]
        for level in levels:
            pct = f"{100 * level:g}"
            header += [f"{name}_lower{pct}", f"{name}_upper{pct}"]
    writer.writerow(header)
    bounds = [pred.interval(level) for level in levels]
    for i in range(len(x)):
        row = [f"{v:.10g}" for v in x[i]]
        for o in range(len(output_names)):
            row += [f"{pred.mean[i, o]:.10g}", f"{pred.std[i, o]:.10g}", f"{pred.f_std[i, o]:.10g}"]
            for lo, hi in bounds:
                row += [f"{lo[i, o]:.10g}", f"{hi[i, o]:.10g}"]
        writer.writerow(row)
    return buffer.getvalue().encode()


def _run_info(runspec) -> dict:
    """What re-rendering a run's report needs, stored in the run folder as run.json."""
    data = runspec.data
    if data.problem:
        description = (
            f"built-in problem {data.problem!r}"
            + (f" {dict(data.problem_options)}" if data.problem_options else "")
            + f", {data.num_train} training / {data.num_test} held-out points "
            f"({data.design} design), noise {data.noise} × output sd, seed {data.seed}"
        )
    else:
        description = f"CSV/NPZ data {data.train}" + (
            f" with test file {data.test}" if data.test else ""
        )
    return {
        "name": runspec.name,
        "levels": list(runspec.report.levels),
        "num_probes": runspec.report.num_probes,
        "problem": data.problem,
        "problem_options": dict(data.problem_options),
        "data_description": description,
    }


def _write_run_files(folder: Path, rs_text: str, info, post, dataset, analysis, progress):
    from bayesresnet.report import write_json, write_report

    write_atomic(folder / "spec.toml", rs_text.encode())
    write_json(folder / "run.json", info)
    post.save(folder / "posterior.npz")
    save_npz(dataset, folder / "data.npz")
    if analysis.prediction is not None:
        write_atomic(
            folder / "predictions.csv",
            _prediction_csv(
                dataset.x_test, analysis.prediction, post.input_names, post.output_names
            ),
        )
    write_json(folder / "metrics.json", analysis.metrics)
    write_report(folder / "report.html", analysis.metrics, analysis.figures)
    progress(f"wrote {', '.join(sorted(p.name for p in folder.iterdir()))}")


def _analyze(post, dataset, info, progress):
    from bayesresnet.workflow import analyze

    truth = None
    if info["problem"]:
        truth = problems.get(info["problem"], **info["problem_options"]).evaluate
    progress("diagnostics, calibration, figures")
    return analyze(
        post,
        dataset,
        name=info["name"],
        levels=tuple(info["levels"]),
        num_probes=info["num_probes"],
        truth=truth,
        data_description=info["data_description"],
    )


def cmd_fit(args) -> int:
    from bayesresnet.infer import fit
    from bayesresnet.runspec import load_runspec

    progress = _Progress(args.quiet)
    spec_path = Path(args.spec)
    runspec = load_runspec(spec_path)  # validated before any work
    out = Path(args.out) if args.out else Path("runs") / runspec.name
    if out.exists() and any(out.iterdir()) and not args.overwrite:
        raise SystemExit(
            f"error: output folder {out} exists and is not empty; pass --overwrite to "
            "replace it, or choose another --out."
        )
    progress(f"run {runspec.name!r} from {spec_path}")
    dataset = runspec.load_dataset()
    spec = runspec.resnet_spec(dataset)
    kwargs = runspec.fit_kwargs()
    if kwargs["method"] == "nuts" and "progress_bar" not in runspec.options:
        kwargs["progress_bar"] = sys.stderr.isatty() and not args.quiet
    progress(
        f"data: {dataset.num_train} training / {dataset.num_test} held-out rows, "
        f"{dataset.num_inputs} inputs, {dataset.num_outputs} outputs"
    )
    progress(f"fitting by {kwargs['method']} …")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", RuntimeWarning)
        post = fit(spec, dataset, **kwargs)
    for w in caught:
        progress(f"warning: {w.message}")
    progress("fit done (" + ", ".join(f"{k} {v:.1f} s" for k, v in post.timings.items()) + ")")
    info = _run_info(runspec)
    analysis = _analyze(post, dataset, info, progress)
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staging.chmod(0o777 & ~umask)  # mkdtemp makes it private; a run folder is not
    try:
        _write_run_files(staging, spec_path.read_text(), info, post, dataset, analysis, progress)
        if out.exists():
            shutil.rmtree(out)
        staging.rename(out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    verdict = analysis.metrics["diagnostics"]["verdict"]
    progress(f"verdict: {verdict}; report: {out / 'report.html'}")
    return 0


def _load_run(folder: Path):
    import json

    for name in ("run.json", "posterior.npz", "data.npz"):
        if not (folder / name).exists():
            raise SystemExit(f"error: {folder} is not a run folder: {name} is missing.")
    info = json.loads((folder / "run.json").read_text())
    return info, load(folder / "posterior.npz"), load_npz(folder / "data.npz", test_fraction=0)


def cmd_report(args) -> int:
    from bayesresnet.report import write_json, write_report

    progress = _Progress(args.quiet)
    folder = Path(args.run)
    info, post, dataset = _load_run(folder)
    analysis = _analyze(post, dataset, info, progress)
    write_json(folder / "metrics.json", analysis.metrics)
    write_report(folder / "report.html", analysis.metrics, analysis.figures)
    progress(f"report: {folder / 'report.html'}")
    return 0


def cmd_predict(args) -> int:
    from bayesresnet.data import read_table

    folder = Path(args.run)
    post = load(folder / "posterior.npz")
    header, values = read_table(args.input)
    names = list(post.input_names)
    missing = [n for n in names if n not in header]
    if missing:
        raise SystemExit(
            f"error: {args.input} lacks the input column(s) {missing}; the model needs "
            f"{names} (found {header})."
        )
    x = values[:, [header.index(n) for n in names]]
    levels = tuple(float(v) for v in args.levels.split(","))
    pred = post.predict(x, levels=levels, return_draws=False)
    write_atomic(Path(args.output), _prediction_csv(x, pred, names, post.output_names, levels))
    print(f"wrote {len(x)} predictions to {args.output}", file=sys.stderr)
    return 0


def cmd_compare(args) -> int:
    import json

    from bayesresnet import diagnostics, plots
    from bayesresnet.calibration import calibration_curve
    from bayesresnet.report import render_compare_html

    if len(args.runs) < 2:
        raise SystemExit("error: `compare` needs at least two run folders.")
    idatas, metrics, curves, posts = {}, {}, {}, {}
    for run in args.runs:
        folder = Path(run)
        _, post, dataset = _load_run(folder)
        name = folder.name
        if name in idatas:
            name = str(folder)
        idatas[name] = post.to_inference_data()
        metrics[name] = json.loads((folder / "metrics.json").read_text())
        posts[name] = post
        if dataset.num_test:
            pred = post.predict(dataset.x_test, return_draws=True)
            curve = calibration_curve(pred.y, dataset.y_test)
            curves[name] = (curve.levels, curve.observed)
    rows = diagnostics.compare(idatas)
    figures = {}
    if curves:
        figures["Calibration curves"] = (
            plots.figure_to_data_uri(plots.plot_calibration_curve(curves)),
            "Observed against nominal coverage of central intervals on held-out data.",
        )
    figures["Posterior of W(t) over depth"] = (
        plots.figure_to_data_uri(plots.plot_weight_paths(posts)),
        "Median and 90% band of ‖W(t)‖/width over depth for each run.",
    )
    out = Path(args.out)
    write_atomic(out, render_compare_html(rows, metrics, figures).encode())
    print(f"comparison: {out}", file=sys.stderr)
    return 0


def cmd_problems(args) -> int:
    for name in problems.names():
        p = problems.get(name)
        print(f"{name:12s} {p.num_inputs:3d} inputs {p.num_outputs:2d} outputs  {p.description}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="bayesresnet",
        description="Bayesian surrogate models with weight-parameterized ResNets.",
    )
    parser.add_argument("--version", action="version", version=f"bayesresnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("fit", help="fit a model from a TOML spec and write a run folder")
    p.add_argument("spec", help="run specification (TOML), e.g. models/default.toml")
    p.add_argument("--out", help="run folder (default runs/<name>)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing run folder")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("report", help="re-render the report of a run folder")
    p.add_argument("run")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("predict", help="predict at new inputs from a run folder")
    p.add_argument("run")
    p.add_argument("--input", required=True, help="CSV with the model's input columns")
    p.add_argument("--output", required=True, help="CSV to write")
    p.add_argument("--levels", default="0.9", help="central interval levels, e.g. 0.5,0.9")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser("compare", help="compare runs by LOO and calibration (one HTML page)")
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="comparison.html")
    p.set_defaults(func=cmd_compare)

    p = sub.add_parser("problems", help="list the built-in problems")
    p.set_defaults(func=cmd_problems)
    return parser


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from bayesresnet.runspec import SpecError

    try:
        return args.func(args)
    except (SpecError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; no partial run folder was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
