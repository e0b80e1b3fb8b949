"""``bayesresnet sensitivity RUN`` and the report's optional sensitivity section.

One tiny run folder (an ensemble of 4 members on Ishigami, 3 inputs, fitted through the
command line with ``[report] sensitivity = true``) serves every test of the module.
"""

import json
import re
import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

import bayesresnet as brn
from bayesresnet.app import cli, run_folder
from bayesresnet.app.runspec import SpecError, parse_runspec
from bayesresnet.workflow import SENSITIVITY_HDI_PROB, SENSITIVITY_MAX_DRAWS, SENSITIVITY_N

TINY = """name = "tiny-sobol"
[data]
problem = "ishigami"
num_train = 60
num_test = 20
noise = 0.1
[network]
width = 4
num_layers = 2
basis = "cubic"
[inference]
method = "ensemble"
num_members = 4
num_steps = 150
[report]
sensitivity = true
"""

FILES = ("sensitivity.json", "sensitivity.csv", "sensitivity.html")
# Small settings for the command: 64 base rows (320 points per draw), 3 of the 4 draws.
SMALL = ["--n", "64", "--max-draws", "3", "--seed", "5"]


def run_main(args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged tiny ensembles
        return cli.main([str(a) for a in args])


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    root = tmp_path_factory.mktemp("sobol")
    spec = root / "tiny.toml"
    spec.write_text(TINY)
    assert run_main(["fit", spec, "--out", root / "run", "--quiet"]) == 0
    return root / "run"


def _one_line_error(capsys) -> str:
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


# -------------------------------------------------------------------------- the command


def test_sensitivity_writes_readable_files_equal_to_the_library(run, tmp_path, capsys):
    out = tmp_path / "sobol"
    assert run_main(["sensitivity", run, *SMALL, "--out", out]) == 0
    err = capsys.readouterr().err
    assert "3 of its 4 posterior draws" in err and "320 points per draw" in err
    assert "the training data's box" in err and "x1 in [" in err
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert not any((run / name).exists() for name in FILES)  # --out, not the run folder

    post = brn.load(run / "posterior.npz")
    expected = brn.sensitivity.sobol(post, n=64, max_draws=3, seed=5)
    table = expected.summary(SENSITIVITY_HDI_PROB)
    assert len(table) == 2 * 3  # S1 and ST of 3 inputs, 1 output
    csv_table = pd.read_csv(out / "sensitivity.csv")
    pd.testing.assert_frame_equal(csv_table, table, check_exact=True)
    record = json.loads((out / "sensitivity.json").read_text())
    pd.testing.assert_frame_equal(pd.DataFrame(record["summary"]), table, check_exact=True)
    assert record["settings"] == {
        "n": 64,
        "num_points": 320,
        "num_draws": 3,
        "seed": 5,
        "estimator": "saltelli2010",
        "hdi_prob": SENSITIVITY_HDI_PROB,
        "max_draws": 3,
        "num_posterior_draws": 4,
    }
    assert record["draws"] == expected.draws.tolist()
    box = np.stack([post.x_train.min(axis=0), post.x_train.max(axis=0)], axis=1)
    np.testing.assert_array_equal([i["bounds"] for i in record["inputs"]], box)
    assert record["bounds_source"].startswith("the training data's box")
    assert {"design", "evaluate", "estimate", "total"} <= set(record["timings"])

    page = (out / "sensitivity.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 1
    assert "MC SE" in page and "HDI 5%" in page and "the training data&#x27;s box" in page
    assert all(f"<td>{name}</td>" in page for name in ("x1", "x2", "x3"))


def test_sensitivity_writes_into_the_run_folder_which_stays_replaceable(run, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    assert run_main(["sensitivity", copy, *SMALL, "--quiet"]) == 0
    assert all((copy / name).is_file() for name in FILES)
    # `fit --overwrite` may still replace the folder: these files are ours.
    run_folder.check_replaceable(copy)
    assert run_folder.is_run_folder(copy)


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--n", "3"], r"`--n` must be .*≥ 4; got 3"),
        (["--n", "48"], r"`--n` must be a power of 2 .*got 48\. Try --n 32 or --n 64\."),
        (["--max-draws", "0"], r"`--max-draws` must be .*≥ 1; got 0"),
        (["--seed", "-1"], r"`--seed` must be .*≥ 0; got -1"),
    ],
)
def test_bad_options_are_one_line_exit_2_naming_the_option(run, args, pattern, capsys):
    before = sorted(p.name for p in run.iterdir())
    assert run_main(["sensitivity", run, *args]) == 2
    err = _one_line_error(capsys)
    assert re.search(pattern, err), err
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written


def test_missing_run_folder_is_one_line_exit_2_naming_it(tmp_path, capsys):
    missing = tmp_path / "nope"
    assert run_main(["sensitivity", missing, *SMALL]) == 2
    err = _one_line_error(capsys)
    assert f"error: {missing} is not a run folder: run.json is missing." in err
    assert not missing.exists()


def test_out_a_file_is_refused_before_any_work(run, tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the run was loaded before the output path was checked")

    monkeypatch.setattr(run_folder, "load_run", fail)
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert run_main(["sensitivity", run, *SMALL, "--out", target]) == 2
    assert f"{target} is a file, not a folder; choose another --out." in _one_line_error(capsys)
    assert target.read_text() == "keep me"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "sensitivity.html").mkdir()  # an output file that is a folder
    assert run_main(["sensitivity", run, *SMALL, "--out", tmp_path / "out"]) == 2
    assert "sensitivity.html is a folder" in _one_line_error(capsys)


def test_help_documents_the_command(capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["sensitivity", "--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    for words in (
        "--n N",
        "--max-draws MAX_DRAWS",
        "--seed SEED",
        "--out OUT",
        f"(default {SENSITIVITY_N})",
        f"(default {SENSITIVITY_MAX_DRAWS}",
        "uniform on the training data's box",
        "sensitivity.json",
        "exit status",
    ):
        assert words in text, words


# ------------------------------------------------------------------ the run report section


def test_spec_key_sensitivity_is_a_bool_with_its_line_on_errors():
    base = '[data]\nproblem = "sine"\n[report]\n'
    assert parse_runspec(base, path="spec.toml").report.sensitivity is False
    assert parse_runspec(base + "sensitivity = true\n", path="spec.toml").report.sensitivity
    with pytest.raises(
        SpecError,
        match=r"spec\.toml, line 4: `sensitivity` in \[report\] must be true or false; got "
        r'the string "yes"\.',
    ):
        parse_runspec(base + 'sensitivity = "yes"\n', path="spec.toml")


def test_report_has_the_section_when_asked(run):
    metrics = json.loads((run / "metrics.json").read_text())
    sens = metrics["sensitivity"]
    assert sens["settings"]["n"] == SENSITIVITY_N
    assert sens["settings"]["num_draws"] == 4  # all of them: fewer than SENSITIVITY_MAX_DRAWS
    assert [(r["index"], r["input"]) for r in sens["summary"]] == [
        (index, name) for index in ("S1", "ST") for name in ("x1", "x2", "x3")
    ]
    # The same numbers as the library on the loaded posterior with the report's settings.
    post = brn.load(run / "posterior.npz")
    expected = brn.sensitivity.sobol(post, n=SENSITIVITY_N, max_draws=SENSITIVITY_MAX_DRAWS)
    pd.testing.assert_frame_equal(
        pd.DataFrame(sens["summary"]), expected.summary(SENSITIVITY_HDI_PROB), check_exact=True
    )
    page = (run / "report.html").read_text()
    assert "<h2>Sensitivity (Sobol indices)</h2>" in page
    section = page.split("<h2>Sensitivity (Sobol indices)</h2>")[1].split("<h2>")[0]
    assert 'alt="Sobol sensitivity indices"' in section and "MC SE" in section


@pytest.mark.parametrize("recorded", [False, None], ids=["false", "older-run-folder"])
def test_report_has_no_section_unless_asked(run, tmp_path, recorded):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    info = json.loads((copy / "run.json").read_text())
    if recorded is None:
        del info["sensitivity"]
    else:
        info["sensitivity"] = recorded
    (copy / "run.json").write_text(json.dumps(info))
    assert run_main(["report", copy, "--quiet"]) == 0
    assert "sensitivity" not in json.loads((copy / "metrics.json").read_text())
    page = (copy / "report.html").read_text()
    assert "Sobol" not in page
