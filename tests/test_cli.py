"""The command line: fit → run folder, report, predict, compare, problems, errors."""

import csv
import json
import re
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from bayesresnet import cli

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
}


def run_main(args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged tiny ensembles
        return cli.main([str(a) for a in args])


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
    assert set(rows[0]) == {"x", "y_mean", "y_sd", "y_f_sd", "y_lower90", "y_upper90"}
    assert all(float(r["y_lower90"]) <= float(r["y_upper90"]) for r in rows)


def test_existing_folder_is_not_overwritten_without_flag(runs, capsys):
    root, out = runs
    with pytest.raises(SystemExit, match=r"exists and is not empty; pass --overwrite"):
        run_main(["fit", root / "cubic.toml", "--out", out["cubic"], "--quiet"])


def test_interrupted_fit_leaves_no_files(runs, monkeypatch):
    root, _ = runs
    target = root / "interrupted"

    def boom(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("bayesresnet.posterior.Posterior.save", boom)
    assert run_main(["fit", root / "cubic.toml", "--out", target, "--quiet"]) == 130
    assert not target.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(".interrupted")]


def test_report_rerenders(runs):
    _, out = runs
    folder = out["cubic"]
    (folder / "report.html").unlink()
    assert run_main(["report", folder, "--quiet"]) == 0
    assert (folder / "report.html").read_text().startswith("<!DOCTYPE html>")


def test_predict_from_csv(runs, tmp_path):
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
    with pytest.raises(SystemExit, match=r"lacks the input column\(s\) \['x'\]"):
        run_main(["predict", out["cubic"], "--input", bad, "--output", pred])


def test_compare_two_runs(runs):
    root, out = runs
    page = root / "comparison.html"
    assert run_main(["compare", out["cubic"], out["per_layer"], "--out", page]) == 0
    text = page.read_text()
    assert "cubic" in text and "per_layer" in text and "elpd LOO" in text
    row = re.search(r"<td>interval_score_90</td>(.*?)</tr>", text).group(1)
    assert len(re.findall(r'<td class="num">[0-9]', row)) == 2  # a number for each run
    with pytest.raises(SystemExit, match=r"needs at least two run folders"):
        run_main(["compare", out["cubic"]])


def test_not_a_run_folder(tmp_path):
    with pytest.raises(SystemExit, match=r"is not a run folder: run.json is missing"):
        run_main(["report", tmp_path])


def test_spec_error_names_key_and_line(tmp_path, capsys):
    spec = tmp_path / "bad.toml"
    spec.write_text(TINY.format(basis="cubic").replace("num_layers = 3", "num_layer = 3"))
    assert run_main(["fit", spec, "--out", tmp_path / "out"]) == 2
    err = capsys.readouterr().err
    assert "num_layer" in err and "line 9" in err and "num_layers" in err
    assert not (tmp_path / "out").exists()


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
