"""The ``bayesresnet`` command line.

    bayesresnet fit SPEC.toml [--out DIR] [--overwrite]
                                                 fit, diagnose, calibrate, report
                                                 (exit 3: the verdict is fail)
    bayesresnet report DIR                       re-render a run's report
    bayesresnet predict DIR --input x.csv --output pred.csv
    bayesresnet compare DIR DIR ... [--out FILE] LOO and calibration side by side
    bayesresnet sensitivity DIR [--n N] [--max-draws K] [--seed S] [--out DIR]
                                                 Sobol indices per posterior draw
    bayesresnet calibrate DIR --observations obs.csv --unknown a,b [--propagate epost|elik|plugin]
                                                 infer simulator inputs from observations
    bayesresnet study SPEC.toml --out DIR [--backend local|ray] [--workers N]
                                                 a grid of runs (exit 1: some failed)
    bayesresnet study-report DIR                 re-render a study's report
    bayesresnet problems                         the built-in problems

    bayesresnet --debug …                        show the traceback of an error

Compiled programs are kept on disk between runs (``~/.cache/bayesresnet/xla``; see
:mod:`bayesresnet.app.compile_cache`): a second run of the same size skips compiling
them. ``BAYESRESNET_COMPILE_CACHE=DIR`` moves the cache, ``=off`` turns it off.

A run folder (see :mod:`bayesresnet.app.run_folder`) holds ``spec.toml``, ``run.json`` (the
provenance record), ``posterior.npz`` and ``data.npz``, written as soon as the fit is
done and moved into place only when complete; then ``predictions.csv``, ``metrics.json``
and ``report.html`` from the analysis. If the analysis fails, the fit is kept, the
traceback is left in ``analysis_error.txt`` and ``bayesresnet report DIR`` retries it.

Errors in what the user gave (spec, data, files, settings, output paths) are one line
``error: …`` on standard error with exit status 2, found before any fitting; a failed
analysis exits with 1; a complete run whose diagnostics verdict is ``fail`` exits with 3
(``fit`` and ``report``; the verdict line is shown even with ``--quiet``); anything else
is a bug and shows its traceback.

Output paths are checked before any work (not a symbolic link, not inside a file,
writable). ``--overwrite`` replaces only a run folder bayesresnet wrote (see
:func:`bayesresnet.app.run_folder.check_replaceable`), by a swap of renames; a run name
is a plain name (no ``/``, no leading ``.``), so the default ``runs/<name>`` stays
inside ``runs/``.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import sys
import time
import traceback
from pathlib import Path

from bayesresnet import __version__, problems
from bayesresnet._io import write_atomic, write_predictions
from bayesresnet._validate import did_you_mean
from bayesresnet.app import run_folder
from bayesresnet.app.compile_cache import enable_compile_cache
from bayesresnet.app.run_folder import Run, UserInputError, user_input

__all__ = ["main", "UserInputError", "EXIT_USER_ERROR", "EXIT_FAIL_VERDICT"]

EXIT_USER_ERROR = 2
"""Exit status of an error in what the user gave (one line on standard error)."""
EXIT_FAIL_VERDICT = 3
"""Exit status of ``fit`` and ``report`` when the diagnostics verdict is ``fail`` (the
run folder is complete; the report says which checks failed)."""


class _Progress:
    """Stage messages with elapsed time on standard error."""

    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self.start = time.perf_counter()

    def __call__(self, message: str) -> None:
        if not self.quiet:
            elapsed = time.perf_counter() - self.start
            print(f"[{elapsed:7.1f} s] {message}", file=sys.stderr, flush=True)


def _analyze_into(folder: Path, run: Run, progress, debug: bool) -> int:
    """Analyse a saved run and write its report; a failure is recorded, the fit kept."""
    try:
        analysis, names = run_folder.analyze_run(folder, run, progress)
    except KeyboardInterrupt:
        print(
            f"interrupted during the analysis; the fit is saved in {folder}: "
            f"`bayesresnet report {folder}` finishes the report.",
            file=sys.stderr,
        )
        return 130
    except Exception as error:
        text = traceback.format_exc()
        run_folder.record_analysis_error(folder, text)
        if debug:
            print(text, file=sys.stderr, end="")
        print(
            f"error: the analysis failed ({type(error).__name__}: {_one_line(error)}); the fit "
            f"is saved in {folder} and the traceback in {folder / run_folder.ANALYSIS_ERROR}. "
            f"Retry with `bayesresnet report {folder}`.",
            file=sys.stderr,
        )
        return 1
    progress(f"wrote {', '.join(names)}")
    verdict = analysis.metrics["diagnostics"]["verdict"]
    # The verdict is the answer: shown with --quiet too, and a fail is exit status 3.
    print(f"verdict: {verdict}; report: {folder / 'report.html'}", file=sys.stderr, flush=True)
    return EXIT_FAIL_VERDICT if verdict == "fail" else 0


def cmd_fit(args) -> int:
    from bayesresnet.app.runspec import load_runspec

    progress = _Progress(args.quiet)
    spec_path = Path(args.spec)
    with user_input():
        runspec = load_runspec(spec_path)  # validated before any work
        spec_text = spec_path.read_text(encoding="utf-8-sig")
    out = Path(args.out) if args.out else Path("runs") / runspec.name
    with user_input():
        _notes(run_folder.check_output_folder(out, overwrite=args.overwrite))
    progress(f"run {runspec.name!r} from {spec_path}")
    progress_bar = not args.quiet  # a bar on a terminal, lines in a log
    run = run_folder.fit_run(
        runspec, out, spec_text=spec_text, progress=progress, progress_bar=progress_bar
    )
    return _analyze_into(out, run, progress, args.debug)


def _notes(notes) -> None:
    for note in notes:
        print(f"note: {note}", file=sys.stderr, flush=True)


def _check_output_file(path) -> None:
    with user_input():
        run_folder.check_output_file(path)


def _parse_levels(text: str) -> tuple[float, ...]:
    """``--levels`` as a tuple of levels, each checked; one line naming the bad item."""
    from bayesresnet._validate import check_level

    levels = []
    for i, item in enumerate(text.split(",")):
        try:
            value = float(item)
        except ValueError:
            raise UserInputError(
                f"`--levels` must be comma-separated numbers in (0, 1), e.g. 0.5,0.9; item "
                f"{i} of {text!r} is {item.strip()!r}, not a number."
            ) from None
        with user_input():
            levels.append(check_level(f"--levels[{i}]", value))
    return tuple(levels)


def _load_run(folder) -> Run:
    with user_input():
        return run_folder.load_run(folder)


def cmd_report(args) -> int:
    folder = Path(args.run)
    return _analyze_into(folder, _load_run(folder), _Progress(args.quiet), args.debug)


def cmd_predict(args) -> int:
    from bayesresnet._validate import check_level
    from bayesresnet.data import read_table
    from bayesresnet.posterior import load

    _check_output_file(args.output)
    _parse_levels(args.levels)  # a bad item is one line, before any work
    folder = Path(args.run)
    with user_input():
        post = load(folder / "posterior.npz")
        header, values = read_table(args.input)
        levels = tuple(
            check_level(f"--levels[{i}]", float(v)) for i, v in enumerate(args.levels.split(","))
        )
        # By name, in any order; output columns (e.g. a test file's) are allowed and dropped.
        x = post.select_inputs(header, values, what=str(args.input), ignore=post.output_names)
    pred = post.predict(x, levels=levels, return_draws=False)
    write_predictions(Path(args.output), x, pred, post.input_names, post.output_names, levels)
    warning = post.describe_extrapolation(x)
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    print(f"wrote {len(x)} predictions to {args.output}", file=sys.stderr)
    return 0


#: ``compare`` ranks runs by PSIS-LOO only when, in every run, at most this share of the
#: observations has a Pareto k̂ above 0.7 (or an undefined one). Beyond it the LOO
#: estimate is unreliable (Vehtari et al. 2024, "Pareto smoothed importance sampling"),
#: so the runs are ranked by held-out CRPS instead.
LOO_MAX_BAD_K_SHARE = 0.05


def _data_mismatch(datasets: dict) -> str | None:
    """How the runs' data differ (names, sizes, then content hash), or None if they agree."""
    (first, ref), *others = datasets.items()
    for name, d in others:
        if (d.input_names, d.output_names) != (ref.input_names, ref.output_names):
            return (
                f"run {name!r} has inputs {list(d.input_names)} and outputs "
                f"{list(d.output_names)} but run {first!r} has {list(ref.input_names)} and "
                f"{list(ref.output_names)}"
            )
        if (d.num_train, d.num_test) != (ref.num_train, ref.num_test):
            return (
                f"run {name!r} has {d.num_train} training / {d.num_test} held-out rows but "
                f"run {first!r} has {ref.num_train} / {ref.num_test}"
            )
        if d.fingerprint() != ref.fingerprint():
            return (
                f"runs {first!r} and {name!r} were fitted to different data (same columns "
                f"and sizes, different values: content hashes {ref.fingerprint()[:12]} and "
                f"{d.fingerprint()[:12]})"
            )
    return None


def _loo_ranking(idatas: dict, same_size: bool) -> tuple[list[dict], str]:
    """``az.compare``'s ranking and a note, or no ranking and why (see LOO_MAX_BAD_K_SHARE)."""
    import numpy as np

    from bayesresnet import diagnostics

    if not same_size:
        return [], "Not ranked by LOO: the runs have different numbers of training rows."
    shares = {}
    for name, idata in idatas.items():
        k = np.asarray(diagnostics.loo(idata)["pareto_k"])
        shares[name] = float(np.mean(~(k <= diagnostics.PARETO_K_OK)))  # nan k̂ counts
    bad = {name: share for name, share in shares.items() if share > LOO_MAX_BAD_K_SHARE}
    if bad:
        listed = ", ".join(f"{name} {share:.0%}" for name, share in bad.items())
        return [], (
            "Not ranked by LOO: PSIS-LOO is unreliable when more than "
            f"{LOO_MAX_BAD_K_SHARE:.0%} of the observations have Pareto k̂ > "
            f"{diagnostics.PARETO_K_OK}, as in {listed}."
        )
    return diagnostics.compare(idatas), "Ranked by PSIS-LOO (every Pareto k̂ share is small)."


def _heldout_ranking(metrics: dict) -> tuple[list[dict], str]:
    """The runs ranked by held-out CRPS (from their metrics), and a note."""

    def score(m, key):
        value = m.get("calibration", {}).get("test", {}).get(key, {})
        return value.get("overall") if isinstance(value, dict) else None

    crps = {name: score(m, "crps") for name, m in metrics.items()}
    if any(v is None for v in crps.values()):
        return [], "Not ranked by held-out scores either: not every run has held-out data."
    order = sorted(crps, key=crps.get)
    rows = [
        {"name": n, "rank": i, "crps": crps[n], "rmse": score(metrics[n], "rmse")}
        for i, n in enumerate(order)
    ]
    return rows, "Ranked by held-out CRPS instead (lower is better)."


def _load_compared(runs) -> dict:
    """``{name: (posterior, dataset, metrics)}`` of the run folders (a repeated name: path)."""
    loaded = {}
    for run in runs:
        folder = Path(run)
        _, post, dataset = _load_run(folder)
        with user_input():
            metrics_json = (folder / "metrics.json").read_text(encoding="utf-8")
            run_metrics = json.loads(metrics_json)
        loaded[str(folder) if folder.name in loaded else folder.name] = (
            post,
            dataset,
            run_metrics,
        )
    return loaded


def _calibration_curves(loaded: dict) -> dict:
    """``{name: (levels, observed coverage)}`` on the held-out data of each run that has some."""
    from bayesresnet.calibration import calibration_curve

    curves = {}
    for name, (post, dataset, _) in loaded.items():
        if dataset.num_test:
            pred = post.predict(dataset.x_test, return_draws=True)
            curve = calibration_curve(pred.y, dataset.y_test)
            curves[name] = (curve.levels, curve.observed)
    return curves


def cmd_compare(args) -> int:
    from bayesresnet import plots
    from bayesresnet.report import render_compare_html

    _check_output_file(args.out)
    if len(args.runs) < 2:
        raise UserInputError("`compare` needs at least two run folders.")
    loaded = _load_compared(args.runs)
    mismatch = _data_mismatch({name: run[1] for name, run in loaded.items()})
    if mismatch and not args.force:
        raise UserInputError(
            f"cannot compare these runs: {mismatch}. Rankings of fits to different data "
            "mean nothing; pass --force to compare anyway."
        )
    banner = None
    if mismatch:
        banner = f"Compared with --force although {mismatch}: the rankings mean little."
        print(f"warning: {banner}", file=sys.stderr)
    posts = {name: run[0] for name, run in loaded.items()}
    metrics = {name: run[2] for name, run in loaded.items()}
    same_size = len({run[1].num_train for run in loaded.values()}) == 1
    idatas = {name: post.to_inference_data() for name, post in posts.items()}
    rows, note = _loo_ranking(idatas, same_size)
    notes, heldout_rows = [note], []
    if not rows:
        heldout_rows, heldout_note = _heldout_ranking(metrics)
        notes.append(heldout_note)
    curves = {}
    if len({run[1].num_outputs for run in loaded.values()}) > 1:  # only with --force
        notes.append("No calibration curves: the runs have different numbers of outputs.")
    else:
        curves = _calibration_curves(loaded)
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
    page = render_compare_html(
        rows, metrics, figures, banner=banner, notes=notes, heldout_rows=heldout_rows
    )
    write_atomic(out, page.encode())
    print(f"comparison: {out} ({' '.join(notes)})", file=sys.stderr)
    return 0


def _output_paths(args, stem: str) -> tuple[Path, Path, dict[str, Path]]:
    """The run folder, ``--out`` (default: the run folder) and ``{kind: <stem>.<kind>}`` of
    ``json``, ``csv`` and ``html`` in it, checked writable before any work."""
    folder = Path(args.run)
    out = Path(args.out) if args.out is not None else folder
    paths = {kind: out / f"{stem}.{kind}" for kind in ("json", "csv", "html")}
    with user_input():
        run_folder.check_output_folder(out, existing="reuse")
    for path in paths.values():
        _check_output_file(path)
    return folder, out, paths


def _sensitivity_options(args) -> tuple[int, int, int]:
    """``--n``, ``--max-draws`` and ``--seed``, checked before any work."""
    from bayesresnet._validate import check_int
    from bayesresnet.sensitivity import check_n

    with user_input():
        n = check_n(args.n, "--n")
        max_draws = check_int("--max-draws", args.max_draws, minimum=1)
        seed = check_int("--seed", args.seed, minimum=0)
    return n, max_draws, seed


def _describe_box(post) -> str:
    """The training box, input by input, as the progress line says it."""
    lower, upper = post.x_train.min(axis=0), post.x_train.max(axis=0)
    return ", ".join(
        f"{k} in [{a:.4g}, {b:.4g}]" for k, a, b in zip(post.input_names, lower, upper)
    )


def cmd_sensitivity(args) -> int:
    import pandas as pd

    from bayesresnet._io import write_json
    from bayesresnet.report import render_sensitivity_html
    from bayesresnet.sensitivity import sobol
    from bayesresnet.workflow import sensitivity_figure, sensitivity_summary

    progress = _Progress(args.quiet)
    n, max_draws, seed = _sensitivity_options(args)
    folder, out, paths = _output_paths(args, "sensitivity")
    start = time.perf_counter()
    info, post, _ = _load_run(folder)
    used = min(max_draws, post.num_samples)
    d = post.spec.in_features
    progress(
        f"run {info['name']!r}: Sobol indices of {used} of its {post.num_samples} posterior "
        f"draws (evenly spaced), n = {n}: {n * (d + 2)} points per draw"
    )
    progress(f"input ranges: the training data's box, each uniform: {_describe_box(post)}")
    result = sobol(post, n=n, max_draws=max_draws, seed=seed)
    progress(
        "indices done (" + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()) + ")"
    )
    record = {"run": str(folder), "version": __version__, **sensitivity_summary(result)}
    record["settings"].update(max_draws=max_draws, num_posterior_draws=post.num_samples)
    write_json(
        paths["json"],
        {**record, "timings": {**record["timings"], "total": time.perf_counter() - start}},
    )
    write_atomic(paths["csv"], pd.DataFrame(record["summary"]).to_csv(index=False).encode())
    page = render_sensitivity_html(record, sensitivity_figure(result), title=info["name"])
    write_atomic(paths["html"], page.encode())
    progress(f"wrote {', '.join(p.name for p in paths.values())} in {out}")
    print(f"sensitivity: {paths['html']}", file=sys.stderr, flush=True)
    return 0


#: Defaults of ``bayesresnet calibrate``: the surrogate draws used (evenly spaced over the
#: posterior's) and the NUTS steps per chain (``brn.inverse.calibrate`` defaults to 64,
#: 500 and 500; these keep a command on a run folder to about a minute of CPU).
CALIBRATE_SURROGATE_DRAWS = 32
CALIBRATE_NUM_WARMUP = 300
CALIBRATE_NUM_SAMPLES = 300
CALIBRATE_NUM_CHAINS = 2


def _split_names(option: str, text: str) -> list[str]:
    """A comma-separated list of names: non-empty items, none repeated."""
    names = [item.strip() for item in text.split(",")]
    if not text.strip() or not all(names):
        raise UserInputError(
            f"`{option}` must be comma-separated input names, e.g. rw,Kw; got {text!r}."
        )
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise UserInputError(f"`{option}` names {repeated} more than once; got {text!r}.")
    return names


def _parse_noise(text: str):
    """``--noise``: ``"infer"`` or the known sds (one, or one per output), each > 0."""
    if text.strip() == "infer":
        return "infer"
    sds = []
    for i, item in enumerate(text.split(",")):
        try:
            sds.append(float(item))
        except ValueError:
            raise UserInputError(
                f"`--noise` must be infer or known noise sds > 0 (one, or one per output, "
                f"comma-separated); item {i} of {text!r} is {item.strip()!r}, not a number."
                f"{did_you_mean(item.strip(), ['infer'])}"
            ) from None
        if not sds[-1] > 0 or sds[-1] == float("inf"):
            raise UserInputError(
                f"`--noise` sds must be finite and > 0; item {i} of {text!r} is {sds[-1]:g}."
            )
    return tuple(sds)


def _calibrate_options(args) -> dict:
    """The numeric options and ``--noise``/``--discrepancy``, checked before any work."""
    from bayesresnet._validate import check_int, check_level

    with user_input():
        options = {
            "surrogate_draws": check_int("--surrogate-draws", args.surrogate_draws, minimum=1),
            "num_warmup": check_int("--num-warmup", args.num_warmup, minimum=0),
            "num_samples": check_int("--num-samples", args.num_samples, minimum=1),
            "num_chains": check_int("--num-chains", args.num_chains, minimum=1),
            "seed": check_int("--seed", args.seed, minimum=0),
            "target_accept_prob": check_level("--target-accept", args.target_accept),
        }
    options["noise"] = _parse_noise(args.noise)
    options["discrepancy"] = None if args.discrepancy == "none" else args.discrepancy
    options["propagate"] = args.propagate
    return options


def _check_input_names(option: str, names: list[str], inputs: list[str]) -> None:
    for name in names:
        if name not in inputs:
            raise UserInputError(
                f"`{option}` names {name!r}, which is not an input of the run; its inputs "
                f"are {inputs}.{did_you_mean(name, inputs)}"
            )


def _calibrate_inputs(args, post) -> tuple[list[str], list[str]]:
    """The unknown and the known inputs, by name, checked against the run's inputs."""
    inputs = list(post.input_names)
    unknown = _split_names("--unknown", args.unknown)
    _check_input_names("--unknown", unknown, inputs)
    if args.known_columns is None:
        return unknown, [n for n in inputs if n not in unknown]
    known = _split_names("--known-columns", args.known_columns)
    _check_input_names("--known-columns", known, inputs)
    both = [n for n in known if n in unknown]
    if both:
        raise UserInputError(
            f"{both} named by both `--unknown` and `--known-columns`: an input is either "
            "inferred (--unknown) or given per observation (--known-columns), not both."
        )
    neither = [n for n in inputs if n not in unknown and n not in known]
    if neither:
        raise UserInputError(
            f"the input(s) {neither} are in neither `--unknown` nor `--known-columns`: every "
            "input of the run is either inferred or given per observation. Add them to one "
            "of the two (without --known-columns, every input not in --unknown is known)."
        )
    return unknown, [n for n in inputs if n in known]  # in the run's order


def _read_observations(path: Path, post, known: list[str]):
    """``(known settings [M, d_known], observations [M, O], unused columns)`` from the CSV,
    by column name."""
    from bayesresnet.data import read_table

    if not path.is_file():
        raise UserInputError(f"`--observations`: no such file: {path}")
    with user_input():
        header, values = read_table(path)
    outputs = list(post.output_names)
    missing = [(n, "a known input") for n in known if n not in header]
    missing += [(n, "an output") for n in outputs if n not in header]
    if missing:
        listed = ", ".join(f"{n!r} ({what})" for n, what in missing)
        raise UserInputError(
            f"{path} lacks the column(s) {listed}; it needs one column per known input "
            f"{known} and per output {outputs}, matched by name (found {header})."
        )
    unused = [c for c in header if c not in known and c not in outputs]
    known_values, y_obs = (
        values[:, [header.index(n) for n in names]] for names in (known, outputs)
    )
    return known_values, y_obs, unused


def _chains_run(propagate: str, num_components: int, num_chains: int) -> str:
    """How ``calibrate``'s chains will run, for its progress line."""
    from bayesresnet.infer.lanes import lane_threads
    from bayesresnet.inverse import chain_groups, resolve_chain_method

    if resolve_chain_method("auto") != "sequential":
        return "in lock-step"
    groups = chain_groups(propagate, num_components, num_chains)
    if groups == 1:
        return "one after another"
    cores = min(groups, lane_threads())
    return f"one after another in {groups} groups, {cores} at a time on the CPU's cores"


def cmd_calibrate(args) -> int:
    import pandas as pd

    from bayesresnet._io import write_json
    from bayesresnet.inverse import PROPAGATE, calibrate
    from bayesresnet.report import describe_calibration_check, render_calibrate_html
    from bayesresnet.workflow import calibrate_figures, calibrate_summary

    progress = _Progress(args.quiet)
    options = _calibrate_options(args)
    folder, out, paths = _output_paths(args, "calibration")
    start = time.perf_counter()
    info, post, _ = _load_run(folder)
    unknown, known = _calibrate_inputs(args, post)
    observations = Path(args.observations)
    known_values, y_obs, unused = _read_observations(observations, post, known)
    noise = options["noise"]
    if noise != "infer" and len(noise) not in (1, len(post.output_names)):
        raise UserInputError(
            f"`--noise` must give one sd, or one per output ({len(post.output_names)}: "
            f"{list(post.output_names)}); got {len(noise)}: {args.noise!r}."
        )
    if unused:  # after every check, so that an error stays one line
        print(
            f"note: column(s) {unused} of {observations} are not used (neither a known input "
            "nor an output).",
            file=sys.stderr,
        )
    lower, upper = post.training_box
    columns = [list(post.input_names).index(n) for n in unknown]
    bounds = {n: (float(lower[j]), float(upper[j])) for n, j in zip(unknown, columns)}
    used = min(options["surrogate_draws"], post.num_samples)
    progress(
        f"run {info['name']!r}: calibrating {', '.join(unknown)} from {len(y_obs)} "
        f"observations of {', '.join(post.output_names)} in {observations}"
    )
    progress(
        "prior: the training data's box, each uniform: "
        + ", ".join(f"{n} in [{a:.4g}, {b:.4g}]" for n, (a, b) in bounds.items())
    )
    chains = options["num_chains"] * (used if options["propagate"] == "epost" else 1)
    progress(
        f"{options['propagate']} ({PROPAGATE[options['propagate']]}): {used} of the "
        f"{post.num_samples} posterior draws; NUTS (target acceptance "
        f"{options['target_accept_prob']:g}), {chains} chains of {options['num_warmup']} + "
        f"{options['num_samples']} steps, "
        + _chains_run(options["propagate"], used, options["num_chains"])
    )
    result = calibrate(
        post,
        y_obs,
        unknown=unknown,
        known=known_values if known else None,
        prior=bounds,
        method="nuts",
        **options,
    )
    progress(
        "calibration done (" + ", ".join(f"{k} {v:.1f} s" for k, v in result.timings.items()) + ")"
    )
    record = {"run": str(folder), "version": __version__, **calibrate_summary(result, bounds)}
    record["settings"].update(
        observations=str(observations),
        num_observations=len(y_obs),
        known=known,
        surrogate_draws=options["surrogate_draws"],
        num_posterior_draws=post.num_samples,
    )
    record["timings"]["total"] = time.perf_counter() - start
    figures = calibrate_figures(result, bounds)
    write_json(paths["json"], record)
    write_atomic(paths["csv"], pd.DataFrame(record["summary"]).to_csv(index=False).encode())
    page = render_calibrate_html(record, figures, title=info["name"])
    write_atomic(paths["html"], page.encode())
    progress(f"wrote {', '.join(p.name for p in paths.values())} in {out}")
    if options["propagate"] == "plugin":
        print("note: plugin ignores the surrogate's uncertainty (over-confident)", file=sys.stderr)
    check = describe_calibration_check(record)
    print(f"calibration: {check}; page: {paths['html']}", file=sys.stderr, flush=True)
    return 0


def cmd_study(args) -> int:
    from bayesresnet._validate import check_int
    from bayesresnet.app import study

    with user_input():
        study.check_out(args.out)
        spec = study.load_study(args.spec, strict=args.strict)  # every run validated first
        if args.workers is not None:
            check_int("--workers", args.workers, minimum=1)
        if args.address is not None and args.backend != "ray":
            raise ValueError("--address applies only to --backend ray.")
        if args.backend == "ray":
            try:
                study._import_ray()
            except ImportError as error:
                raise ValueError(str(error)) from None
    try:
        rows = study.run(
            spec,
            args.out,
            backend=args.backend,
            workers=args.workers,
            address=args.address,
            progress=not args.quiet,
        )
    except study.StudyLockedError as error:
        raise UserInputError(str(error)) from error
    except KeyboardInterrupt as error:
        why = str(error) if isinstance(error, study.StudyStopped) else "interrupted"
        print(
            f"{why}: the study's workers have ended; finished runs are kept in {args.out} "
            "and the same command resumes it.",
            file=sys.stderr,
        )
        return 128 + getattr(error, "signum", 2)
    failed = [r for r in rows if r["status"] != "ok"]
    for r in failed:
        print(f"failed: run {r['run_id']} ({r['name']}): {r['error']}", file=sys.stderr)
    return 1 if failed else 0


def cmd_study_report(args) -> int:
    from bayesresnet.app.results import read_results
    from bayesresnet.app.study_report import write_study_report

    folder = Path(args.dir)
    with user_input():
        rows = read_results(folder)
    title = folder.name
    with contextlib.suppress(OSError, ValueError, KeyError):
        title = json.loads((folder / "study.json").read_text(encoding="utf-8"))["name"]
    print(f"study report: {write_study_report(folder, rows, title=title)}", file=sys.stderr)
    return 0


def cmd_problems(args) -> int:
    for name in problems.names():
        p = problems.get(name)
        print(f"{name:12s} {p.num_inputs:3d} inputs {p.num_outputs:2d} outputs  {p.description}")
    return 0


_FIT_EPILOG = """\
exit status:
  0  the run folder is complete and the verdict is pass or warn
  1  the analysis failed (the fit is kept; `bayesresnet report DIR` retries)
  2  an error in what was given (spec, data, output path): one line, nothing written
  3  the run folder is complete but the diagnostics verdict is fail (see report.html)
"""


def build_parser() -> argparse.ArgumentParser:
    # --debug is global: accepted before or after the command. The subcommands' copy
    # defaults to SUPPRESS so that it does not reset a --debug given before the command.
    def debug(default) -> argparse.ArgumentParser:
        flag = argparse.ArgumentParser(add_help=False)
        flag.add_argument("--debug", action="store_true", default=default, help="show tracebacks")
        return flag

    parser = argparse.ArgumentParser(
        prog="bayesresnet",
        description="Bayesian surrogate models with weight-parameterized ResNets.",
        parents=[debug(False)],
    )
    parser.add_argument("--version", action="version", version=f"bayesresnet {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser = functools.partial(sub.add_parser, parents=[debug(argparse.SUPPRESS)])

    p = sub.add_parser(
        "fit",
        help="fit a model from a TOML spec and write a run folder",
        epilog=_FIT_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("spec", help="run specification (TOML), e.g. models/default.toml")
    p.add_argument("--out", help="run folder (default runs/<name>)")
    p.add_argument(
        "--overwrite",
        action="store_true",
        help="replace an existing run folder (only a folder bayesresnet wrote; anything "
        "else is refused)",
    )
    p.add_argument(
        "--quiet", action="store_true", help="no progress messages (the verdict is still shown)"
    )
    p.set_defaults(func=cmd_fit)

    p = sub.add_parser("report", help="re-render the report of a run folder (exit 3: fail)")
    p.add_argument("run")
    p.add_argument(
        "--quiet", action="store_true", help="no progress messages (the verdict is still shown)"
    )
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("predict", help="predict at new inputs from a run folder")
    p.add_argument("run")
    p.add_argument("--input", required=True, help="CSV with the model's input columns")
    p.add_argument("--output", required=True, help="CSV to write")
    p.add_argument("--levels", default="0.9", help="central interval levels, e.g. 0.5,0.9")
    p.set_defaults(func=cmd_predict)

    p = sub.add_parser(
        "compare",
        help="compare runs fitted to the same data by LOO and calibration (one HTML page)",
        description="Compare runs fitted to the same data (same columns, sizes and values; "
        "otherwise refused unless --force). Runs are ranked by PSIS-LOO when, in every run, "
        f"at most {LOO_MAX_BAD_K_SHARE:.0%} of the Pareto k̂ exceed 0.7, else by held-out CRPS.",
    )
    p.add_argument("runs", nargs="+")
    p.add_argument("--out", default="comparison.html")
    p.add_argument(
        "--force",
        action="store_true",
        help="compare runs fitted to different data (a banner says so)",
    )
    p.set_defaults(func=cmd_compare)

    _add_sensitivity_parser(sub)
    _add_calibrate_parser(sub)

    p = sub.add_parser("study", help="run a study (a grid of runs) in parallel, resumably")
    p.add_argument("spec", help="study specification (TOML), e.g. models/studies/smoke.toml")
    p.add_argument("--out", required=True, help="study folder (runs/, results.csv, report)")
    p.add_argument("--backend", choices=["local", "ray"], default="local")
    p.add_argument("--workers", type=int, help="runs at once (default: the CPU count)")
    p.add_argument("--address", help="address of a running Ray cluster (--backend ray)")
    p.add_argument("--strict", action="store_true", help="refuse a study with an invalid run")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=cmd_study)

    p = sub.add_parser("study-report", help="re-render a study's report from results.csv")
    p.add_argument("dir")
    p.set_defaults(func=cmd_study_report)

    p = sub.add_parser("problems", help="list the built-in problems")
    p.set_defaults(func=cmd_problems)
    return parser


_SENSITIVITY_EPILOG = """\
Each posterior draw of the noise-free function gets its own first-order (S1) and total
(ST) Sobol indices, on one quasi-random Saltelli design shared by all draws, each input
uniform on the training data's box (its min and max over the training points). The
bands are the surrogate's uncertainty about the indices; the Monte-Carlo standard error
(MC SE) is the design's, and shrinks as 1/sqrt(n).

writes sensitivity.json (settings, input ranges, summary, timings), sensitivity.csv (the
summary table) and sensitivity.html (bars with bands per output, the table) into DIR.
exit status: 0 done; 2 an error in what was given (one line, nothing written)
"""


def _add_run_parser(sub, name: str, *, help: str, epilog: str):
    """The parser of a command that reads a run folder (its first argument) and writes
    ``<stem>.json/.csv/.html`` (``--out``, added by :func:`_add_out_options`)."""
    p = sub.add_parser(
        name, help=help, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("run", help="run folder (from `bayesresnet fit`)")
    return p


def _add_out_options(p, stem: str, func) -> None:
    p.add_argument("--out", help=f"folder for {stem}.json/.csv/.html (default: the run folder)")
    p.add_argument("--quiet", action="store_true", help="no progress messages")
    p.set_defaults(func=func)


def _add_sensitivity_parser(sub) -> None:
    from bayesresnet.workflow import SENSITIVITY_MAX_DRAWS, SENSITIVITY_N

    p = _add_run_parser(
        sub,
        "sensitivity",
        help="Sobol indices per posterior draw of a run, with credible bands",
        epilog=_SENSITIVITY_EPILOG,
    )
    p.add_argument(
        "--n",
        type=int,
        default=SENSITIVITY_N,
        help=f"base rows of the design, a power of 2 ≥ 4: n·(d + 2) points per draw "
        f"(default {SENSITIVITY_N})",
    )
    p.add_argument(
        "--max-draws",
        type=int,
        default=SENSITIVITY_MAX_DRAWS,
        help=f"posterior draws used, evenly spaced over the chains (default "
        f"{SENSITIVITY_MAX_DRAWS}, or all when fewer)",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the design (default 0)")
    _add_out_options(p, "sensitivity", cmd_sensitivity)


_CALIBRATE_EPILOG = """\
Infers the simulator inputs named by --unknown from observations, with the run's
surrogate standing in for the simulator: y = f(θ, known inputs) + noise, per output.
The observations CSV has one row per observation: a column per known input (matched by
the run's input names; by default every input not in --unknown) and a column per output
(the run's output names). Each unknown is uniform on the training data's box (its min
and max over the training inputs). --propagate says how the surrogate's uncertainty
enters: epost (default) pools the posteriors given each surrogate draw; elik averages
the likelihood over the draws; plugin takes the posterior-mean surrogate as exact and
is over-confident (for comparison only).

writes calibration.json (settings, prior, summary, diagnostics per component and pooled,
surrogate share, extrapolation flag, effective draws, predictive check, timings),
calibration.csv (the summary table) and calibration.html (posterior marginals with the
prior, pairs, surrogate share, predictive check at the observations) into --out (the
run folder by default); the last
line on standard error gives the worst R-hat, ESS and divergences and whether the
posterior sits where the surrogate extrapolates.
exit status: 0 done; 2 an error in what was given (one line, nothing written)

example:
  bayesresnet calibrate runs/borehole --unknown rw,Kw \\
      --observations models/data/borehole_observations.csv
"""


def _add_calibrate_parser(sub) -> None:
    from bayesresnet.inverse import PROPAGATE, TARGET_ACCEPT_PROB

    p = _add_run_parser(
        sub,
        "calibrate",
        help="infer simulator inputs from observations through a run's surrogate (NUTS)",
        epilog=_CALIBRATE_EPILOG,
    )
    p.add_argument(
        "--observations", required=True, help="CSV: known inputs and observed outputs per row"
    )
    p.add_argument("--unknown", required=True, help="the inputs to infer, e.g. rw,Kw")
    p.add_argument(
        "--known-columns",
        help="the inputs given per observation (default: every input not in --unknown)",
    )
    p.add_argument(
        "--propagate",
        choices=list(PROPAGATE),
        default="epost",
        help="how the surrogate's uncertainty enters (default epost)",
    )
    p.add_argument(
        "--noise",
        default="infer",
        help="observation noise sd: infer (half-normal prior, the output's scale; the "
        "default) or known sds, one or one per output, e.g. 0.5",
    )
    p.add_argument(
        "--discrepancy",
        choices=["none", "iid"],
        default="none",
        help="model discrepancy: none (default) or iid (an extra inferred sd per output)",
    )
    p.add_argument(
        "--surrogate-draws",
        type=int,
        default=CALIBRATE_SURROGATE_DRAWS,
        help=f"surrogate draws used, evenly spaced (default {CALIBRATE_SURROGATE_DRAWS}, or "
        "all when fewer)",
    )
    p.add_argument(
        "--num-warmup",
        type=int,
        default=CALIBRATE_NUM_WARMUP,
        help=f"NUTS warm-up steps per chain (default {CALIBRATE_NUM_WARMUP})",
    )
    p.add_argument(
        "--num-samples",
        type=int,
        default=CALIBRATE_NUM_SAMPLES,
        help=f"NUTS draws per chain (default {CALIBRATE_NUM_SAMPLES})",
    )
    p.add_argument(
        "--num-chains",
        type=int,
        default=CALIBRATE_NUM_CHAINS,
        help=f"chains per component, i.e. per surrogate draw for epost (default "
        f"{CALIBRATE_NUM_CHAINS})",
    )
    p.add_argument(
        "--target-accept",
        type=float,
        default=TARGET_ACCEPT_PROB,
        help=f"NUTS's target acceptance probability, in (0, 1) (default {TARGET_ACCEPT_PROB}); "
        "raise it (e.g. 0.99) when the chains still diverge",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of the chains (default 0)")
    _add_out_options(p, "calibration", cmd_calibrate)


def _one_line(error: BaseException) -> str:
    return " ".join(str(error).split())


#: Commands that compile nothing, so need no compile cache.
_NO_COMPILATION = ("problems", "study-report")


def _use_compile_cache() -> None:
    """Turn on the compile cache; a folder that is not a cache is the user's error, one
    that cannot be written (a read-only home) only a warning: the run goes on without."""
    with user_input():
        try:
            enable_compile_cache()
        except OSError as error:
            print(f"warning: no compile cache ({_one_line(error)})", file=sys.stderr)


def main(argv=None) -> int:
    """Run the command line; returns the exit status (2 for the user's errors)."""
    args = build_parser().parse_args(argv)
    try:
        if args.command not in _NO_COMPILATION:
            _use_compile_cache()
        return args.func(args)
    except UserInputError as error:
        if args.debug:
            traceback.print_exc()
        print(f"error: {_one_line(error)}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted; no partial run folder was left behind", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
