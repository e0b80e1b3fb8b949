"""The command line: fit → run folder, report, predict, compare, problems, errors."""

import csv
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from _helpers import one_line_error, run_main

from bayesresnet.app import cli

TINY = """name = "tiny"
[data]
problem = "sine"
num_train = 30
num_test = 40
noise = 0.1
[network]
width = 4
num_layers = 3
basis = "{basis}"
[inference]
method = "ensemble"
num_members = 3
num_steps = 200
"""

RUN_FILES = {
    "spec.toml",
    "run.json",
    "posterior.npz",
    "data.npz",
    "predictions.csv",
    "metrics.json",
    "report.html",
    ".bayesresnet-run",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    out = {}
    for basis in ("cubic", "per_layer"):
        spec = root / f"{basis}.toml"
        spec.write_text(TINY.format(basis=basis))
        assert run_main(["fit", spec, "--out", root / basis, "--quiet"]) == 0
        out[basis] = root / basis
    return root, out


@pytest.mark.slow
def test_fit_writes_a_complete_run_folder(runs):
    _, out = runs
    folder = out["cubic"]
    assert {p.name for p in folder.iterdir()} == RUN_FILES
    metrics = json.loads((folder / "metrics.json").read_text())
    assert metrics["inference"]["method"] == "ensemble"
    assert metrics["data"]["num_test"] == 40
    assert "built-in problem 'sine'" in metrics["data"]["description"]
    with open(folder / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 40
    assert set(rows[0]) == {
        "x",
        "y_mean",
        "y_sd",
        "y_f_sd",
        "y_lower90",
        "y_upper90",
        "extrapolation",
    }
    assert all(float(r["y_lower90"]) <= float(r["y_upper90"]) for r in rows)


@pytest.mark.slow
def test_existing_folder_is_not_overwritten_without_flag(runs, capsys):
    root, out = runs
    assert run_main(["fit", root / "cubic.toml", "--out", out["cubic"], "--quiet"]) == 2
    pattern = r"^error: .*exists and is not empty \(a run folder\); pass --overwrite"
    assert re.search(pattern, one_line_error(capsys))


@pytest.mark.slow
def test_interrupted_fit_leaves_no_files(runs, monkeypatch):
    root, _ = runs
    target = root / "interrupted"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bayesresnet.posterior.Posterior.save", boom)
    assert run_main(["fit", root / "cubic.toml", "--out", target, "--quiet"]) == 130
    assert not target.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".interrupted")]


@pytest.mark.slow
def test_report_rerenders(runs):
    _, out = runs
    folder = out["cubic"]
    (folder / "report.html").unlink()
    assert run_main(["report", folder, "--quiet"]) == 0
    assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")


@pytest.mark.slow
def test_predict_from_csv(runs, tmp_path, capsys):
    _, out = runs
    x = tmp_path / "x.csv"
    x.write_text("x\n-0.5\n0.0\n0.5\n")
    pred = tmp_path / "pred.csv"
    assert (
        run_main(["predict", out["cubic"], "--input", x, "--output", pred, "--levels", "0.5,0.9"])
        == 0
    )
    with open(pred) as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["x"]) for r in rows] == [-0.5, 0.0, 0.5]
    for r in rows:
        assert float(r["y_lower90"]) <= float(r["y_lower50"]) <= float(r["y_mean"])
        assert float(r["y_mean"]) <= float(r["y_upper50"]) <= float(r["y_upper90"])
    # The same numbers as predicting in Python from the saved posterior.
    import bayesresnet as brn

    post = brn.load(out["cubic"] / "posterior.npz")
    mean = post.predict(np.array([[-0.5], [0.0], [0.5]]), return_draws=False).mean[:, 0]
    np.testing.assert_allclose([float(r["y_mean"]) for r in rows], mean, rtol=1e-8)
    bad = tmp_path / "bad.csv"
    bad.write_text("z\n1.0\n")
    capsys.readouterr()
    assert run_main(["predict", out["cubic"], "--input", bad, "--output", pred]) == 2
    assert re.search(r"^error: .*lacks the input column\(s\) \['x'\]", one_line_error(capsys))


@pytest.mark.slow
def test_compare_two_runs(runs, capsys):
    root, out = runs
    page = root / "comparison.html"
    assert run_main(["compare", out["cubic"], out["per_layer"], "--out", page]) == 0
    text = page.read_text()
    assert "cubic" in text and "per_layer" in text
    row = re.search(r"<td>interval_score_90</td>(.*?)</tr>", text).group(1)
    assert len(re.findall(r'<td class="num">[0-9]', row)) == 2  # a number for each run
    # Three ensemble members: too few draws for PSIS (k̂ undefined), so no LOO ranking.
    assert "Not ranked by LOO" in text and "elpd LOO" not in text
    crps = {
        name: json.loads((out[name] / "metrics.json").read_text())["calibration"]["test"]["crps"][
            "overall"
        ]
        for name in ("cubic", "per_layer")
    }
    table = re.search(r"Ranking by held-out CRPS.*?<tbody>(.*?)</tbody>", text, re.S).group(1)
    assert re.findall(r"<tr><td>(\w+)</td>", table) == sorted(crps, key=crps.get)
    capsys.readouterr()
    assert run_main(["compare", out["cubic"]]) == 2
    assert re.search(r"^error: .*needs at least two run folders", one_line_error(capsys))


def test_not_a_run_folder(tmp_path, capsys):
    assert run_main(["report", tmp_path]) == 2
    assert re.search(r"^error: .*is not a run folder: run.json is missing", one_line_error(capsys))


def test_spec_error_names_key_and_line(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.format(basis="cubic").replace("num_layers = 3", "num_layer = 3"))
    assert run_main(["fit", spec, "--out", tmp_path / "out"]) == 2
    err = capsys.readouterr().err
    assert "num_layer" in err and "line 9" in err and "num_layers" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_problems_and_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "bayesresnet", "problems"],
        capture_output=True,
        text=True,
        check=True,
    )
    names = [line.split()[0] for line in out.stdout.splitlines()]
    assert names == ["borehole", "friedman1", "ishigami", "oscillator", "sine", "sobol_g"]
    assert Path(sys.executable).with_name("bayesresnet").exists()  # console script installed


# ----------------------------------------------------------- ensemble on CSV data, kept fits

MODELS_DATA = Path(__file__).resolve().parent.parent / "models" / "data"

CSV_SPEC = """name = "csv"
[data]
train = "{train}"
test = "{test}"
outputs = ["y"]
[network]
width = 4
num_layers = 2
basis = "legendre"
degree = 1
[inference]
method = "ensemble"
num_members = 3
num_steps = {steps}
"""


def _csv_spec(folder: Path, steps: int = 100, train=None) -> Path:
    spec = folder / f"csv{steps}.toml"
    train = train or MODELS_DATA / "train.csv"
    spec.write_text(CSV_SPEC.format(train=train, test=MODELS_DATA / "test.csv", steps=steps))
    return spec


@pytest.fixture(scope="module")
def csv_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("csv")
    assert run_main(["fit", _csv_spec(root), "--out", root / "run", "--quiet"]) == 0
    return root / "run"


@pytest.mark.slow
def test_ensemble_on_csv_data_gets_its_run_folder(csv_run):
    # Regression: LOO-PIT of an ensemble summed PSIS weights to 1 + 2e-16, the analysis
    # crashed on "`pit_values` must lie in [0, 1]" and no run folder was written.
    assert {p.name for p in csv_run.iterdir()} == RUN_FILES
    metrics = json.loads((csv_run / "metrics.json").read_text())
    assert 0.0 <= metrics["loo_pit_ks_pvalue"] <= 1.0
    info = json.loads((csv_run / "run.json").read_text())
    assert info["spec"]["network"] == {
        "width": 4,
        "num_layers": 2,
        "basis": "legendre",
        "degree": 1,
        "activation": "tanh",
        "residual": True,
        "scheme": "euler",
    }


@pytest.mark.slow
def test_failed_analysis_keeps_the_fit_and_report_retries(tmp_path, monkeypatch, capsys):
    def broken(*args, **kwargs):
        raise RuntimeError("analysis broke")

    monkeypatch.setattr("bayesresnet.workflow.analyze", broken)
    out = tmp_path / "run"
    assert run_main(["fit", _csv_spec(tmp_path, steps=20), "--out", out, "--quiet"]) == 1
    err = one_line_error(capsys)
    assert err.startswith("error: the analysis failed (RuntimeError: analysis broke)")
    assert f"bayesresnet report {out}" in err
    assert {p.name for p in out.iterdir()} == {
        "spec.toml",
        "run.json",
        "posterior.npz",
        "data.npz",
        "analysis_error.txt",
        ".bayesresnet-run",
    }
    assert "RuntimeError: analysis broke" in (out / "analysis_error.txt").read_text()
    monkeypatch.undo()
    # The tiny fit may fail its verdict (exit 3); the report is written either way.
    assert run_main(["report", out, "--quiet"]) in (0, cli.EXIT_FAIL_VERDICT)
    assert {p.name for p in out.iterdir()} == RUN_FILES


# -------------------------------------------------------------- the user's errors: one line


def _bad_csv(tmp_path, text):
    path = tmp_path / "train.csv"
    path.write_text(text)
    return ["fit", _csv_spec(tmp_path, train=path), "--out", tmp_path / "out", "--quiet"]


def _run_folder_with(tmp_path, csv_run, name: str, data: bytes):
    folder = tmp_path / "run"
    shutil.copytree(csv_run, folder)
    (folder / name).write_bytes(data)
    return ["report", folder, "--quiet"]


def _run_folder_with_posterior(tmp_path, csv_run, data: bytes):
    return _run_folder_with(tmp_path, csv_run, "posterior.npz", data)


GOOD_ROWS = "x1,x2,y\n" + "".join(f"{i / 10},{i % 3},{i * i / 50}\n" for i in range(10))

BAD_INPUTS = {
    "nan cell": (
        lambda tmp, run: _bad_csv(tmp, GOOD_ROWS + "0.5,nan,1\n"),
        r"train\.csv contains NaN or infinite values: column 1 \('x2'\) has 1 non-finite value "
        r"\(line 12\)\. Remove or impute",
    ),
    "empty cell": (
        lambda tmp, run: _bad_csv(tmp, GOOD_ROWS + "0.5,,1\n"),
        r"train\.csv: line 12, column 1 \('x2'\): cannot parse '' as a number",
    ),
    "duplicate header": (
        lambda tmp, run: _bad_csv(tmp, GOOD_ROWS.replace("x1,x2,y", "x1,x1,y")),
        r"train\.csv: the header has duplicate column names: \['x1'\]",
    ),
    "empty file": (
        lambda tmp, run: _bad_csv(tmp, ""),
        r"train\.csv is empty; expected a header row",
    ),
    "huge values": (
        lambda tmp, run: _bad_csv(tmp, GOOD_ROWS + "0.5,1,1e300\n"),
        r"train\.csv contains values too large .*column 2 \('y'\) has 1 too-large value "
        r"\(line 12\)\. Rescale",
    ),
    "truncated posterior": (
        lambda tmp, run: _run_folder_with_posterior(
            tmp, run, (run / "posterior.npz").read_bytes()[:2000]
        ),
        r"posterior\.npz is not a readable bayesresnet posterior file \(corrupt or truncated\)",
    ),
    "garbage posterior": (
        lambda tmp, run: _run_folder_with_posterior(tmp, run, b"not a zip archive"),
        r"posterior\.npz is not a readable bayesresnet posterior file",
    ),
    "missing spec": (
        lambda tmp, run: ["fit", tmp / "nope.toml"],
        r"no run specification file .*nope\.toml",
    ),
    "predict input with nan": (
        lambda tmp, run: [
            "predict",
            run,
            "--input",
            _write(tmp / "x.csv", "x1,x2\n0.1,0.2\nnan,0.3\n"),
            "--output",
            tmp / "p.csv",
        ],
        r"x\.csv contains NaN or infinite values: column 0 \('x1'\) has 1 non-finite value "
        r"\(line 3\)",
    ),
    "levels that are not numbers": (
        lambda tmp, run: [
            "predict",
            run,
            "--input",
            _write(tmp / "x.csv", "x1,x2\n0.1,0.2\n"),
            "--output",
            tmp / "p.csv",
            "--levels",
            "0.5,abc",
        ],
        r"`--levels` must be comma-separated numbers in \(0, 1\), e\.g\. 0\.5,0\.9; item 1 of "
        r"'0\.5,abc' is 'abc', not a number",
    ),
    "semicolon-separated training file": (
        lambda tmp, run: _bad_csv(tmp, GOOD_ROWS.replace(",", ";")),
        r"train\.csv looks separated by semicolons, not commas \(its header is one column "
        r"'x1;x2;y'\); bayesresnet reads comma-separated files",
    ),
    "semicolon-separated predict input": (
        lambda tmp, run: [
            "predict",
            run,
            "--input",
            _write(tmp / "x.csv", "x1;x2\n0.1;0.2\n"),
            "--output",
            tmp / "p.csv",
        ],
        r"x\.csv looks separated by semicolons, not commas",
    ),
    "two training rows beside a test file": (
        lambda tmp, run: _bad_csv(tmp, "x1,x2,y\n0.1,0.2,0.3\n0.2,0.1,0.5\n"),
        r"train\.csv has 2 data rows, all for training \(the test rows are in .*test\.csv\), "
        r"but at least 3 are needed\. Add rows to the training file\.$",
    ),
    "damaged run.json": (
        lambda tmp, run: _run_folder_with(tmp, run, "run.json", b"{}"),
        r"run\.json is damaged \(missing or invalid: name, levels, num_probes, problem, "
        r"problem_options, data_description\)\. `bayesresnet report` cannot use this folder\. "
        r"Fit it again: `bayesresnet fit SPEC --out .*run --overwrite`",
    ),
    "unreadable run.json": (
        lambda tmp, run: _run_folder_with(tmp, run, "run.json", b'{"name": '),
        r"run\.json is damaged \(not readable JSON: .*\)\. `bayesresnet report` cannot use",
    ),
    "bad levels": (
        lambda tmp, run: [
            "predict",
            run,
            "--input",
            _write(tmp / "x.csv", "x1,x2\n0.1,0.2\n"),
            "--output",
            tmp / "p.csv",
            "--levels",
            "0.5,1.5",
        ],
        r"`--levels\[1\]` must be a finite number in \(0, 1\); got 1\.5",
    ),
}


def _write(path, text):
    path.write_text(text)
    return path


@pytest.mark.slow
@pytest.mark.parametrize("case", list(BAD_INPUTS))
def test_user_errors_are_one_line_with_exit_status_2(case, tmp_path, csv_run, capsys):
    make_args, pattern = BAD_INPUTS[case]
    args = make_args(tmp_path, csv_run)
    assert run_main(args) == 2
    err = one_line_error(capsys)
    assert err.startswith("error: ")
    assert re.search(pattern, err), err
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback_of_a_user_error(tmp_path, capsys):
    assert run_main(["--debug", "fit", tmp_path / "nope.toml"]) == 2
    err = capsys.readouterr().err
    assert "Traceback" in err and err.splitlines()[-1].startswith("error: ")
    assert run_main(["fit", tmp_path / "nope.toml", "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err


def test_constant_output_is_warned_about_before_the_fit_and_bugs_keep_tracebacks(
    tmp_path, monkeypatch, capsys
):
    def bug(*args, **kwargs):
        raise ValueError("a bug inside the fit")

    monkeypatch.setattr("bayesresnet.infer.fit", bug)
    rows = "x1,x2,y\n" + "".join(f"{i / 10},{i % 3},2.5\n" for i in range(10))
    with pytest.raises(ValueError, match="a bug inside the fit"):  # not turned into exit 2
        run_main(_bad_csv(tmp_path, rows))
    err = capsys.readouterr().err
    assert re.search(r"^warning: training output column 0 \('y'\) .* is constant", err, re.M)


@pytest.mark.slow
def test_a_failed_verdict_exits_3_after_writing_everything_and_quiet_still_shows_it(
    tmp_path, monkeypatch, capsys
):
    monkeypatch.setattr("bayesresnet.diagnostics._verdict", lambda checks: "fail")
    spec = tmp_path / "tiny.toml"
    spec.write_text(TINY.format(basis="cubic").replace("num_steps = 200", "num_steps = 20"))
    out = tmp_path / "run"
    assert run_main(["fit", spec, "--out", out, "--quiet"]) == cli.EXIT_FAIL_VERDICT == 3
    assert one_line_error(capsys) == f"verdict: fail; report: {out / 'report.html'}\n"
    assert {p.name for p in out.iterdir()} == RUN_FILES
    assert json.loads((out / "metrics.json").read_text())["diagnostics"]["verdict"] == "fail"
    assert run_main(["report", out, "--quiet"]) == 3
    assert one_line_error(capsys).startswith("verdict: fail")


def test_fit_help_documents_the_exit_statuses():
    fit = cli.build_parser()._subparsers._group_actions[0].choices["fit"]
    text = fit.format_help()
    assert "3  the run folder is complete but the diagnostics verdict is fail" in text
    assert "the verdict is still shown" in text


# --------------------------------------------------- predict by name, extrapolation, compare


@pytest.mark.slow
def test_predict_matches_csv_columns_by_name_and_flags_extrapolation(runs, tmp_path, capsys):
    _, out = runs
    post = __import__("bayesresnet").load(out["cubic"] / "posterior.npz")
    lo, hi = post.x_train.min(), post.x_train.max()
    far = float(hi + 2 * (hi - lo))  # two training ranges beyond the top
    x = _write(tmp_path / "x.csv", f"y,x\n7,0.0\n7,{far!r}\n")  # an output column is dropped
    pred = tmp_path / "pred.csv"
    capsys.readouterr()
    assert run_main(["predict", out["cubic"], "--input", x, "--output", pred]) == 0
    err = capsys.readouterr().err
    assert re.search(
        r"^warning: 1 of 2 points lie outside the training range of 'x' \(1 point, up to 2 "
        r"training ranges beyond",
        err,
        re.M,
    ), err
    with open(pred) as fh:
        rows = list(csv.DictReader(fh))
    assert [float(r["x"]) for r in rows] == pytest.approx([0.0, far], rel=1e-9)
    assert float(rows[0]["extrapolation"]) == 0.0
    assert float(rows[1]["extrapolation"]) == pytest.approx(2.0, rel=1e-5)
    unknown = _write(tmp_path / "z.csv", "x,z\n0.0,1\n")
    assert run_main(["predict", out["cubic"], "--input", unknown, "--output", pred]) == 2
    assert re.search(r"z\.csv has column\(s\) \['z'\] that are not inputs", one_line_error(capsys))


@pytest.fixture(scope="module")
def other_runs(runs):
    """Runs on other data: the same sizes with another data seed, 25 training rows (and a
    larger network), and another problem (four inputs, three outputs)."""
    root, _ = runs
    folders = {}
    for name, edit in (
        ("reseeded", "noise = 0.1\nseed = 1"),
        ("smaller", "noise = 0.1"),
        ("oscillator", "noise = 0.1"),
    ):
        text = TINY.format(basis="cubic").replace("noise = 0.1", edit)
        if name == "smaller":  # a wider, deeper network too: the weight paths must cope
            text = text.replace("num_train = 30", "num_train = 25").replace(
                "width = 4", "width = 5"
            )
            text = text.replace("num_layers = 3", "num_layers = 4")
        if name == "oscillator":
            text = text.replace('"sine"', '"oscillator"').replace(
                "num_steps = 200", "num_steps = 50"
            )
        spec = root / f"{name}.toml"
        spec.write_text(text)
        # A tiny fit may fail its verdict (exit 3) after writing its run folder.
        assert run_main(["fit", spec, "--out", root / name, "--quiet"]) in (
            0,
            cli.EXIT_FAIL_VERDICT,
        )
        folders[name] = root / name
    return folders


@pytest.mark.slow
def test_compare_refuses_runs_fitted_to_different_data(runs, other_runs, capsys):
    root, out = runs
    page = root / "refused.html"
    capsys.readouterr()
    args = ["compare", out["cubic"], other_runs["reseeded"], "--out", page]
    assert run_main(args) == 2
    assert re.search(
        r"^error: cannot compare these runs: runs 'cubic' and 'reseeded' were fitted to "
        r"different data .*content hashes [0-9a-f]{12} and [0-9a-f]{12}.*pass --force",
        one_line_error(capsys),
    )
    assert run_main(["compare", out["cubic"], other_runs["smaller"], "--out", page]) == 2
    assert re.search(
        r"^error: cannot compare these runs: run 'smaller' has 25 training / 40 held-out rows "
        r"but run 'cubic' has 30 / 40",
        one_line_error(capsys),
    )
    assert not page.exists()


@pytest.mark.slow
def test_compare_with_force_shows_a_banner_and_does_not_crash(runs, other_runs, capsys):
    root, out = runs
    page = root / "forced.html"
    args = ["compare", out["cubic"], other_runs["smaller"], "--out", page, "--force"]
    capsys.readouterr()
    assert run_main(args) == 0
    err = capsys.readouterr().err
    assert "Traceback" not in err and err.startswith("warning: Compared with --force although")
    text = page.read_text()
    assert re.search(
        r'<p class="verdict fail" role="alert">Compared with --force although run', text
    )
    assert "Not ranked by LOO: the runs have different numbers of training rows" in text
    assert "Ranking by held-out CRPS" in text
    # Different inputs and outputs: no calibration curves (they need equal output counts).
    args = ["compare", out["cubic"], other_runs["oscillator"], "--out", page, "--force"]
    assert run_main(args) == 0
    assert "No calibration curves: the runs have different numbers of outputs" in page.read_text()
    capsys.readouterr()
    assert run_main(args[:-1]) == 2
    assert re.search(
        r"^error: .*run 'oscillator' has inputs \['m', 'k', 'c', 'x0'\]", one_line_error(capsys)
    )
