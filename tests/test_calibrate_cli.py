"""``bayesresnet calibrate RUN``: the command, its files and page, and its one-line errors.

One tiny run folder (an ensemble of 4 members on Friedman #1, 10 inputs, fitted through
the command line) serves every test. ``x4`` enters Friedman #1 linearly (``10 x4``), so
the surrogate learns it and it can be calibrated from a few observations.
"""

import contextlib
import io
import json
import re
import shutil

import numpy as np
import pandas as pd
import pytest
from _helpers import (
    fit_run_folder,
    help_text,
    one_line_error,
    render_in_chromium,
    run_main,
    tiny_run_spec,
)

import bayesresnet as brn
from bayesresnet import inverse, report
from bayesresnet.app import cli, run_folder

TINY = tiny_run_spec("tiny-calibrate", "friedman1", num_train=80, noise=0.05, num_steps=200)

FILES = ("calibration.json", "calibration.csv", "calibration.html")
UNKNOWN = ("x4", "x5")
#: The "true" unknown inputs of the observations.
TRUTH = {"x4": 0.3, "x5": 0.6}
NUM_OBS = 8
# Small settings: 2 surrogate draws × 2 chains of 60 + 60 NUTS steps.
SMALL = ["--surrogate-draws", "2", "--num-warmup", "60", "--num-samples", "60", "--seed", "3"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return fit_run_folder(tmp_path_factory.mktemp("calibrate"), TINY)


def _observations(post, noise_sd: float, seed: int = 0):
    """Known settings ``[M, 8]`` inside the training box, and ``y`` from the posterior-mean
    surrogate (the function the calibration's draws average to) at :data:`TRUTH`, plus
    noise of sd ``noise_sd``."""
    rng = np.random.default_rng(seed)
    names = list(post.input_names)
    lower, upper = post.training_box
    x = lower + (upper - lower) * rng.uniform(0.1, 0.9, (NUM_OBS, len(names)))
    for name, value in TRUTH.items():
        x[:, names.index(name)] = value
    mean = inverse.make_surrogate_draws(post).evaluate(x).mean(axis=0)  # [M, 1]
    y = mean[:, 0] + noise_sd * rng.standard_normal(NUM_OBS)
    known = [n for n in names if n not in TRUTH]
    return pd.DataFrame(x[:, [names.index(n) for n in known]], columns=known).assign(y=y)


@pytest.fixture(scope="module")
def obs_csv(run, tmp_path_factory):
    """An observations file with its columns in another order than the run's, and one
    column (``note``) the command does not use."""
    table = _observations(brn.load(run / "posterior.npz"), noise_sd=0.1)
    table = table[["y", *reversed(table.columns[:-1])]].assign(note=1.0)
    path = tmp_path_factory.mktemp("obs") / "obs.csv"
    table.to_csv(path, index=False)
    return path


def _calibrate(run, obs, *args):
    return run_main(["calibrate", run, "--observations", obs, "--unknown", "x4,x5", *args])


@pytest.fixture(scope="module")
def calibrated(run, obs_csv, tmp_path_factory):
    """The folder written by the command with :data:`SMALL` settings, and its stderr."""
    out = tmp_path_factory.mktemp("cal") / "cal"
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        assert _calibrate(run, obs_csv, *SMALL, "--out", out) == 0
    return out, err.getvalue()


# -------------------------------------------------------------------------- the command


@pytest.mark.slow
def test_calibrate_writes_readable_files_equal_to_the_library(run, obs_csv, calibrated):
    out, err = calibrated
    assert "calibrating x4, x5 from 8 observations of y" in err
    assert "prior: the training data's box, each uniform: x4 in [" in err
    assert "column(s) ['note']" in err and "are not used" in err
    # 2 surrogate draws: their chains in 2 groups, side by side on as many cores as allowed
    cores = min(2, brn.infer.lanes.lane_threads())
    assert f"4 chains of 60 + 60 steps, one after another in 2 groups, {cores} at a time" in err
    last = err.splitlines()[-1]
    pattern = r"calibration: worst R-hat \d\.\d{3}( \(> 1\.01\))?, smallest bulk ESS \d+, \d+ "
    assert re.match(pattern + "divergences; extrapolates: ", last), last
    assert "extrapolates: " in last and str(out / "calibration.html") in last
    assert sorted(p.name for p in out.iterdir()) == sorted(FILES)
    assert not any((run / name).exists() for name in FILES)  # --out, not the run folder

    # The same numbers as the library with the same settings, from the same file.
    post = brn.load(run / "posterior.npz")
    table = pd.read_csv(obs_csv)
    known = [n for n in post.input_names if n not in UNKNOWN]
    lower, upper = post.training_box
    box = {n: (lower[j], upper[j]) for j, n in enumerate(post.input_names) if n in UNKNOWN}
    expected = brn.inverse.calibrate(
        post,
        table[["y"]].to_numpy(),
        unknown=list(UNKNOWN),
        known=table[known],
        prior=box,
        surrogate_draws=2,
        num_warmup=60,
        num_samples=60,
        seed=3,
    ).summary(0.9)
    csv_table = pd.read_csv(out / "calibration.csv")
    assert list(csv_table.columns) == ["name", *expected.columns]
    assert list(csv_table["name"]) == ["x4", "x5", "noise_sd[y]"]
    pd.testing.assert_frame_equal(
        csv_table.set_index("name"), expected, check_names=False, check_exact=False, rtol=1e-12
    )
    record = json.loads((out / "calibration.json").read_text())
    assert record["run"] == str(run) and record["version"] == brn.__version__
    assert [(p["name"], p["lower"], p["upper"]) for p in record["prior"]] == [
        (n, float(a), float(b)) for n, (a, b) in box.items()
    ]
    settings = record["settings"]
    assert settings["propagate"] == "epost" and settings["unknown"] == list(UNKNOWN)
    assert settings["known"] == known and settings["num_observations"] == NUM_OBS
    assert (settings["num_surrogate_draws"], settings["num_chains"]) == (2, 2)
    assert settings["chain_method"] == "sequential"
    assert settings["target_accept_prob"] == brn.inverse.TARGET_ACCEPT_PROB
    assert settings["num_draws_total"] == 2 * 2 * 60
    pooled = record["diagnostics"]["pooled"]
    assert [r["variable"] for r in pooled] == ["x4", "x5", "noise_sd[y]"]
    assert {r["component"] for r in record["diagnostics"]["components"]} == {0, 1}
    worst = record["diagnostics"]["worst"]
    assert worst["r_hat"] == max(r["r_hat"] for r in pooled)
    assert set(record["surrogate_share"]) == set(UNKNOWN)
    assert record["effective_draws"] == 2.0
    assert isinstance(record["extrapolation"]["flag"], bool)
    assert len(record["observations"]) == NUM_OBS
    observed = [r["observed"] for r in record["observations"]]
    np.testing.assert_allclose(observed, table["y"], rtol=1e-12)
    assert {"sample", "postprocess", "total"} <= set(record["timings"])

    page = (out / "calibration.html").read_text()
    assert page.count('<img src="data:image/png;base64,') == 4  # marginals, pairs, share, check
    assert "<h1>tiny-calibrate: calibration of x4, x5</h1>" in page
    assert f"generated by bayesresnet {brn.__version__}" in page
    assert "the training data&#x27;s box" in page and "over-confident" not in page
    assert all(f"<td>{name}</td>" in page for name in ("x4", "x5", "noise_sd[y]"))


@pytest.mark.slow
def test_plugin_recovers_the_truth_and_its_page_says_it_is_over_confident(run, tmp_path, capsys):
    """Noise-free observations of the posterior-mean surrogate at θ*, analysed with a known
    noise sd of 0.1: for ``plugin`` the model is then exactly right and the posterior's
    mode is θ* (uniform prior), so the 90 % HDI of each input holds θ* unless the command
    mixes up columns, inputs or draws. The interval is also asserted to be narrow (a fifth
    of the prior's range; for the true function, 10 x4 + 5 x5 + …, the posterior sd of x4
    from 8 observations is 0.1 / (10 √8) ≈ 0.004), so that holding θ* means something."""
    post = brn.load(run / "posterior.npz")
    path = tmp_path / "obs.csv"
    _observations(post, noise_sd=0.0, seed=1).to_csv(path, index=False)
    settings = ["--num-warmup", "200", "--num-samples", "200", "--noise", "0.1"]
    assert _calibrate(run, path, "--propagate", "plugin", *settings, "--out", tmp_path) == 0
    err = capsys.readouterr().err
    assert "note: plugin ignores the surrogate's uncertainty (over-confident)" in err
    table = pd.read_csv(tmp_path / "calibration.csv").set_index("name")
    lower, upper = post.training_box
    for name, value in TRUTH.items():
        row = table.loc[name]
        assert row["hdi_lower"] <= value <= row["hdi_upper"], (name, row.to_dict())
        j = list(post.input_names).index(name)
        assert row["hdi_upper"] - row["hdi_lower"] < 0.2 * (upper[j] - lower[j]), row.to_dict()
        assert row["surrogate_share"] == 0.0  # plugin ignores the surrogate's uncertainty
    page = (tmp_path / "calibration.html").read_text()
    assert "over-confident" in page and "ignores the surrogate&#x27;s own uncertainty" in page


@pytest.mark.slow
def test_calibrate_writes_into_the_run_folder_which_stays_replaceable(run, obs_csv, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    known = "x10,x9,x8,x7,x6,x3,x2,x1"  # every input not unknown, in another order
    assert _calibrate(copy, obs_csv, *SMALL, "--known-columns", known, "--quiet") == 0
    assert all((copy / name).is_file() for name in FILES)
    record = json.loads((copy / "calibration.json").read_text())
    assert record["settings"]["known"] == ["x1", "x2", "x3", "x6", "x7", "x8", "x9", "x10"]
    run_folder.check_replaceable(copy)  # `fit --overwrite` may still replace it
    assert run_folder.is_run_folder(copy)


def _write(path, text):
    path.write_text(text)
    return path


#: (arguments after RUN, or a CSV text for --observations; the error it must give).
BAD = [
    (
        ["--unknown", "x44"],
        r"`--unknown` names 'x44', which is not an input of the run; its "
        r"inputs are \['x1', .*'x10'\]\. Did you mean 'x4'\?",
    ),
    (["--unknown", "x4,x4"], r"`--unknown` names \['x4'\] more than once"),
    (["--unknown", ""], r"`--unknown` must be comma-separated input names"),
    (
        ["--known-columns", "x1,x2,x3,x6,x7,x8,x9,x100"],
        r"`--known-columns` names 'x100', which is not an input.*Did you mean 'x10'\?",
    ),
    (
        ["--known-columns", "x1,x2,x3,x4,x6,x7,x8,x9,x10"],
        r"\['x4'\] named by both `--unknown` and `--known-columns`",
    ),
    (
        ["--known-columns", "x1,x2,x3,x6,x7,x8,x9"],
        r"the input\(s\) \['x10'\] are in neither `--unknown` nor `--known-columns`",
    ),
    (["--noise", "abc"], r"`--noise` must be infer or known noise sds > 0 .*'abc', not a number"),
    (["--noise", "0"], r"`--noise` sds must be finite and > 0; item 0 of '0' is 0"),
    (
        ["--noise", "0.1,0.2"],
        r"`--noise` must give one sd, or one per output \(1: \['y'\]\); got 2",
    ),
    (["--num-samples", "0"], r"`--num-samples` must be .*≥ 1; got 0"),
    (["--surrogate-draws", "0"], r"`--surrogate-draws` must be .*≥ 1; got 0"),
    (["--seed", "-1"], r"`--seed` must be .*≥ 0; got -1"),
    (["--target-accept", "1.5"], r"`--target-accept` must be a finite number in \(0, 1\); got 1.5"),
    (
        "x1,x2,x3,x6,x7,x8,x9,y\n" + "0.5," * 7 + "1.0\n",
        r"obs\.csv lacks the column\(s\) 'x10' \(a known input\)",
    ),
    (
        "x1,x2,x3,x6,x7,x8,x9,x10\n" + "0.5," * 7 + "0.5\n",
        r"obs\.csv lacks the column\(s\) 'y' \(an output\)",
    ),
    (
        "x1,x2,x3,x6,x7,x8,x9,x10,y\n"
        + "0.5," * 8
        + "1\n"
        + "0.5," * 3
        + "abc,"
        + "0.5," * 4
        + "1\n",
        r"obs\.csv: line 3, column 3 \('x6'\): cannot parse 'abc' as a number",
    ),
    ("", r"obs\.csv is empty; expected a header row followed by data rows"),
    ("x1,x2,x3,x6,x7,x8,x9,x10,y\n", r"obs\.csv has a header but no data rows"),
    (None, r"`--observations`: no such file: .*obs\.csv"),
]


@pytest.mark.slow
@pytest.mark.parametrize(("case", "pattern"), BAD, ids=[f"bad{i}" for i in range(len(BAD))])
def test_bad_input_is_one_line_exit_2_before_any_sampling(
    run, obs_csv, tmp_path, case, pattern, capsys, monkeypatch
):
    def fail(*args, **kwargs):
        raise AssertionError("sampling started despite bad input")

    monkeypatch.setattr(inverse, "calibrate", fail)
    obs = obs_csv
    args = ["--unknown", "x4,x5"]
    if isinstance(case, list):
        args += case
    else:
        obs = tmp_path / "obs.csv"
        if case is not None:
            obs.write_text(case)
    before = sorted(p.name for p in run.iterdir())
    capsys.readouterr()
    assert run_main(["calibrate", run, "--observations", obs, *SMALL, *args]) == 2
    err = one_line_error(capsys)
    assert re.search(pattern, err), err
    assert sorted(p.name for p in run.iterdir()) == before  # nothing written


@pytest.mark.slow
def test_out_a_file_is_refused_before_any_work(run, obs_csv, tmp_path, capsys, monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the run was loaded before the output path was checked")

    monkeypatch.setattr(run_folder, "load_run", fail)
    target = tmp_path / "a-file"
    target.write_text("keep me")
    assert _calibrate(run, obs_csv, *SMALL, "--out", target) == 2
    assert f"{target} is a file, not a folder; choose another --out." in one_line_error(capsys)
    assert target.read_text() == "keep me"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "calibration.json").mkdir()  # an output file that is a folder
    assert _calibrate(run, obs_csv, *SMALL, "--out", tmp_path / "out") == 2
    assert "calibration.json is a folder" in one_line_error(capsys)


@pytest.mark.slow
def test_missing_run_folder_is_one_line_exit_2_naming_it(obs_csv, tmp_path, capsys):
    missing = tmp_path / "nope"
    assert _calibrate(missing, obs_csv, *SMALL, "--out", tmp_path / "out") == 2
    assert f"error: {missing} is not a run folder: run.json is missing." in one_line_error(capsys)


def test_help_documents_the_command(capsys):
    text = help_text("calibrate", capsys)
    for words in (
        "--observations OBSERVATIONS",
        "--unknown UNKNOWN",
        "--known-columns KNOWN_COLUMNS",
        "{epost,elik,plugin}",
        "--noise NOISE",
        "{none,iid}",
        f"(default {cli.CALIBRATE_SURROGATE_DRAWS}",
        f"(default {cli.CALIBRATE_NUM_WARMUP})",
        "uniform on the training data's box",
        "over-confident",
        "calibration.json",
        "exit status",
        "bayesresnet calibrate runs/borehole",
    ):
        assert words in text, words


@pytest.mark.slow
def test_the_page_escapes_every_text(calibrated):
    out, _ = calibrated
    record = json.loads((out / "calibration.json").read_text())
    evil = "<b>x4</b>"
    record["settings"]["unknown"][0] = evil
    record["summary"][0]["name"] = evil
    record["prior"][0]["name"] = evil
    record["settings"]["observations"] = "<script>alert(1)</script>.csv"
    page = report.render_calibrate_html(record, {}, title="<i>run</i>")
    assert "<b>" not in page and "<script>" not in page and "<i>" not in page
    assert "&lt;b&gt;x4&lt;/b&gt;" in page and "&lt;i&gt;run&lt;/i&gt;" in page


@pytest.mark.slow
def test_the_check_line_and_the_pages_status_say_what_needs_a_second_look(calibrated):
    out, _ = calibrated
    record = json.loads((out / "calibration.json").read_text())
    worst = record["diagnostics"]["worst"]
    assert worst["r_hat_threshold"] == 1.01
    worst.update(r_hat=1.005, divergences=0, ess_bulk=400.0)
    record["extrapolation"]["flag"] = False
    line = report.describe_calibration_check(record)
    assert line == "worst R-hat 1.005, smallest bulk ESS 400, 0 divergences; extrapolates: no"
    assert '<span class="verdict pass">' in report.render_calibrate_html(record, {}, title="t")
    worst.update(r_hat=1.04)
    record["extrapolation"]["flag"] = True
    line = report.describe_calibration_check(record)
    assert line.startswith("worst R-hat 1.040 (> 1.01), ")
    assert line.endswith("extrapolates: YES: posterior mass sits where the surrogate extrapolates")
    assert '<span class="verdict warn">' in report.render_calibrate_html(record, {}, title="t")


@pytest.mark.slow
def test_the_page_renders_without_broken_images_or_sideways_scrolling(calibrated, tmp_path):
    out, _ = calibrated
    page = (out / "calibration.html").read_text()
    for width in (390, 1280):  # a phone and a laptop
        found = render_in_chromium(page, tmp_path, width)
        assert found["images"] == 4 and found["broken"] == 0, found
        assert not found["page"] and not found["sticking"], found
