"""Studies: spec validation, the local and Ray backends, resume, failures, the report."""

import re
from pathlib import Path

import pytest
from _helpers import render_in_chromium

from bayesresnet.app import cli, results, study
from bayesresnet.app.runspec import SpecError, parse_runspec
from bayesresnet.app.study_report import gap_caption, plot_gap_vs_params, render_study_html
from bayesresnet.app.toml import dumps

ROOT = Path(__file__).resolve().parent.parent

# Two tiny ensemble runs (width 4, 2 layers, 100 steps) and, with `width = [4, 0]`, an
# impossible one.
TINY = """name = "tiny"
[base.data]
problem = "sine"
num_train = 20
num_test = 30
[base.network]
width = 4
num_layers = 2
[base.inference]
method = "ensemble"
[base.inference.ensemble]
num_members = 2
num_steps = 100
[base.inference.svi]
num_steps = 100
check_every = 50
init = "median"
num_draws = 50
[base.report]
num_probes = 3
[grid]
basis = ["cubic", "linear"]
width = {widths}
"""


def parse(text, **kwargs):
    return study.parse_study(text, path="study.toml", base_dir=ROOT, **kwargs)


def test_grid_is_the_product_in_order_with_short_and_dotted_keys():
    s = parse(
        TINY.format(widths="[4]")
        + '"inference.num_steps" = [50, 60]\nseed = [1]\nmethod = ["ensemble", "svi"]\n'
    )
    assert [r.overrides["basis"] for r in s.runs] == ["cubic"] * 4 + ["linear"] * 4
    first = s.runs[0].spec
    assert first["data"]["seed"] == 1 and first["inference"]["seed"] == 1  # seed sets both
    assert first["inference"] == {"method": "ensemble", "seed": 1, "num_members": 2,
                                  "num_steps": 50}  # fmt: skip
    # The method's own table is merged only for that method; the grid value wins.
    svi = s.runs[1].spec["inference"]
    assert svi == {"method": "svi", "seed": 1, "num_steps": 50, "check_every": 50,
                   "init": "median", "num_draws": 50}  # fmt: skip
    assert s.columns == ("basis", "width", "inference.num_steps", "seed", "method")
    assert len({r.run_id for r in s.runs}) == 8
    assert all(re.fullmatch("[0-9a-f]{16}", r.run_id) for r in s.runs)


def test_run_id_is_a_content_hash_independent_of_name_and_order():
    a = parse(TINY.format(widths="[4]"))
    b = parse(TINY.format(widths="[4]").replace('"cubic", "linear"', '"linear", "cubic"')
              .replace('name = "tiny"', 'name = "other"'))  # fmt: skip
    assert {r.run_id for r in a.runs} == {r.run_id for r in b.runs}
    c = parse(TINY.format(widths="[5]"))
    assert not {r.run_id for r in a.runs} & {r.run_id for r in c.runs}


def test_explicit_runs_and_several_grids_are_united_and_deduplicated():
    text = TINY.format(widths="[4]").replace("[grid]", "[[grid]]")
    text += '[[grid]]\nbasis = ["cubic"]\nresidual = [false]\n'
    text += '[[runs]]\nbasis = "per_layer"\nnetwork.num_layers = 3\n'
    text += '[[runs]]\nbasis = "cubic"\nwidth = 4\n'  # the same as the first grid cell
    s = parse(text)
    assert [(r.spec["network"]["basis"], r.spec["network"]["residual"]) for r in s.runs] == [
        ("cubic", True),
        ("linear", True),
        ("cubic", False),
        ("per_layer", True),
    ]
    assert s.runs[-1].spec["network"]["num_layers"] == 3


def test_base_from_a_file_relative_to_the_study(tmp_path):
    (tmp_path / "specs").mkdir()
    (tmp_path / "specs" / "base.toml").write_text(
        '[data]\nproblem = "sine"\nnum_train = 20\n[network]\nwidth = 3\nnum_layers = 2\n'
    )
    path = tmp_path / "s.toml"
    path.write_text('base = "specs/base.toml"\n[grid]\nnum_layers = [2, 0]\n')
    s = study.load_study(path)
    assert s.name == "s" and s.runs[0].spec["network"]["width"] == 3
    assert s.runs[0].error is None
    # The invalid cell is located at its grid key, in the study file.
    assert re.search(rf"{re.escape(str(path))}, line 3: run 1 \(num_layers = 0\)", s.runs[1].error)
    with pytest.raises(SpecError, match=r"s.toml, line 3: invalid: run 1 .*num_layers"):
        study.load_study(path, strict=True)
    path.write_text('base = "nowhere.toml"\n')
    with pytest.raises(SpecError, match=r"s.toml, line 1: `base`: no such run spec file"):
        study.load_study(path)
    # An error in the base file (not overridden) is located in the base file.
    (tmp_path / "specs" / "base.toml").write_text('[data]\nproblem = "sine"\nnoise = -1.0\n')
    path.write_text('base = "specs/base.toml"\n[grid]\nwidth = [2]\n')
    with pytest.raises(SpecError, match=r"base.toml, line 3: .*noise"):
        study.load_study(path)


@pytest.mark.parametrize(
    "text, match",
    [
        ('name = "x"\n\n[grid]\nbasis = "cubic"\n', r"line 4: \[grid\] `basis` must be a"),
        ("[grid]\nbasis = []\n", r"line 2: \[grid\] `basis` must be a non-empty list"),
        ('[grid]\nbasiss = ["cubic"]\n', r"line 2: .*not a run-spec key.*Did you mean 'basis'"),
        ('[grid]\n"network.widht" = [2]\n', r"line 2: .*Did you mean 'network.width'"),
        ("[grid]\ninference.num_stepz = [2]\n", r"line 2: .*'inference.num_steps'"),
        ('[[runs]]\nbasis = "cubic"\n[[runs]]\nfoo = 1\n', r"line 4: \[\[runs\]\] `foo`"),
        ("[network]\nwidth = 4\n", r"line 1: unknown key 'network'.*\[base.network\]"),
        ("grid = [1, 2]\n", r"line 1: `grid` must be a table"),
        ("base = 3\n", r"line 1: `base` must be the path of a run spec file or a table"),
        ('name = "a/b"\n', r"line 1: `name` must be a non-empty string"),
        ("[grid\n", r"line 1: invalid TOML"),
        (
            "[base.data]\nproblem = 'sine'\n[grid]\nwidth = [0]\n",
            r"line 4: every run of the study is invalid: .*width",
        ),  # fmt: skip
        ("[base.data]\nproblem = 'sinus'\n", r"line 2: every run .* unknown problem \"sinus\""),
    ],
)
def test_study_errors_give_the_line(text, match):
    with pytest.raises(SpecError, match=match):
        parse(text)


def test_an_invalid_run_of_an_inline_base_is_located_in_the_study():
    s = parse(TINY.format(widths="[4, 0]"))
    errors = [r.error for r in s.runs if r.error]
    assert errors == [
        f'study.toml, line 23: run {i} (basis = "{basis}", width = 0): [network] `width` must '
        "be ≥ 1; got 0."
        for i, basis in ((1, "cubic"), (3, "linear"))
    ]


def test_parse_study_rejects_non_text():
    with pytest.raises(TypeError, match="`text` must be a str"):
        study.parse_study(b"[grid]")


def test_dump_toml_round_trips_a_resolved_spec():
    spec = parse(TINY.format(widths="[4]")).runs[0].spec
    assert parse_runspec(dumps(spec)).to_dict() == spec


def test_run_rejects_bad_arguments(tmp_path):
    s = parse(TINY.format(widths="[4]"))
    with pytest.raises(ValueError, match="`backend` must be one of"):
        study.run(s, tmp_path, backend="dask")
    with pytest.raises(ValueError, match="`workers`"):
        study.run(s, tmp_path, workers=0)
    with pytest.raises(ValueError, match="`address` applies only to backend='ray'"):
        study.run(s, tmp_path, address="auto")


def test_cli_study_errors_are_one_line(tmp_path, capsys):
    path = tmp_path / "bad.toml"
    path.write_text('[grid]\nbasiss = ["cubic"]\n')
    assert cli.main(["study", str(path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and re.match(r"error: .*bad.toml, line 2: ", err)
    good = tmp_path / "good.toml"
    good.write_text(TINY.format(widths="[4]"))
    assert cli.main(["study", str(good), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err
    assert cli.main(["study-report", str(tmp_path / "nothing")]) == 2
    assert "results.csv does not exist" in capsys.readouterr().err


# ------------------------------------------------------------------------ results, report


def fake_rows():
    rows = []
    for i, (problem, basis, residual, method) in enumerate(
        [
            (p, b, r, m)
            for p in ("sine", "ishigami")
            for b, r in (("cubic", True), ("linear", True), ("per_layer", False))
            for m in ("ensemble", "svi")
        ]  # fmt: skip
    ):
        for seed in range(2):
            rows.append(
                dict.fromkeys(results.RESULT_COLUMNS)
                | dict(run_id=f"{i:04d}{seed:012d}", name=f"r{i}", problem=problem,
                       basis=basis, residual=residual, num_layers=2 + i % 3, width=4,
                       method=method, seed=seed, num_params=50 + 10 * i, train_rmse=0.1,
                       test_rmse=0.12 + 0.01 * seed, gap=0.02 + 0.01 * seed, gap_ratio=1.2,
                       crps=0.05 + 0.001 * i, nll=-0.5 + 0.01 * i, coverage_50=0.45,
                       coverage_90=0.85, coverage_95=0.9, interval_score_90=0.5,
                       verdict="warn", seconds=10.0 + i, status="ok",
                       **{"inference.num_steps": 100})
            )  # fmt: skip
    rows[3].update(status="failed", error="ValueError: a <bad> thing", crps=None)
    return rows


def test_results_csv_round_trips(tmp_path):
    rows = fake_rows()
    assert results.write_results(tmp_path, rows) == ["results.csv"]
    back = results.read_results(tmp_path)
    header = (tmp_path / "results.csv").read_text().splitlines()[0].split(",")
    assert header.index("inference.num_steps") == header.index("seed") + 1
    assert back == [{c: r.get(c) for c in header} for r in rows]


def test_coverage_columns_follow_the_headline_levels():
    from bayesresnet.levels import HEADLINE_LEVELS

    coverage = [c for c in results.RESULT_COLUMNS if c.startswith("coverage_")]
    assert coverage == [results.coverage_column(level) for level in HEADLINE_LEVELS]
    assert coverage == ["coverage_50", "coverage_90", "coverage_95"]
    assert list(results.COVERAGE_COLUMNS) == list(HEADLINE_LEVELS)


def _overall(value):
    return {"per_output": [value], "overall": value}


def test_metrics_row_reads_the_generalization_gap_of_the_run():
    # The training RMSE of the y-draws (calibration.train) differs from the gap's own
    # train_rmse (f-means): the row must show the run's generalization_gap.
    test = {
        "rmse": _overall(0.2),
        "crps": _overall(0.05),
        "nll": _overall(-1.0),
        "coverage": {"0.5": _overall(0.4), "0.9": _overall(0.8), "0.95": _overall(0.9)},
        "interval_score_90": _overall(0.7),
        "generalization_gap": {
            "train_rmse": _overall(0.1),
            "test_rmse": _overall(0.25),
            "ratio": _overall(2.5),
        },
    }
    metrics = {
        "model": {"num_params": 42},
        "diagnostics": {"verdict": "pass"},
        "calibration": {"test": test, "train": {"rmse": _overall(0.15)}},
    }
    row = results.metrics_row(metrics)
    assert row == {
        "num_params": 42,
        "train_rmse": 0.1,
        "test_rmse": 0.25,
        "gap": pytest.approx(0.15),
        "gap_ratio": 2.5,
        "crps": 0.05,
        "nll": -1.0,
        "coverage_50": 0.4,
        "coverage_90": 0.8,
        "coverage_95": 0.9,
        "interval_score_90": 0.7,
        "verdict": "pass",
    }
    assert set(row) | {"seconds"} == set(results.METRIC_COLUMNS)
    # No held-out data: no gap and no held-out metrics, not an error.
    metrics["calibration"] = {"train": {"rmse": _overall(0.15)}}
    row = results.metrics_row(metrics)
    assert row["num_params"] == 42 and row["verdict"] == "pass"
    assert {k for k, v in row.items() if v is None} == set(row) - {"num_params", "verdict"}


def test_gap_caption_promises_crosses_only_when_drawn():
    rows = [r for r in fake_rows() if r["status"] == "ok"]
    residual_only = [r for r in rows if r["residual"]]
    for sel, crosses in ((rows, True), (residual_only, False)):
        fig = plot_gap_vs_params(sel)
        # matplotlib's "X" marker is the filled cross the caption calls black crosses.
        drawn = any(
            c.get_paths() and c.get_label() == "MLP baseline"
            for ax in fig.axes
            for c in ax.collections
        )
        assert drawn is crosses
        assert ("black crosses" in gap_caption(sel)) is crosses


def test_study_report_page_has_every_part():
    rows = fake_rows()
    page = render_study_html(rows, title="demo")
    for text in (
        "Study demo",
        "Best configuration per problem",
        "Generalization gap against the number of parameters",
        "Observed against nominal coverage per method",
        "CRPS per basis and method",
        "NLL per basis and method",
        "Time per method",
        "Failed runs",
        "ValueError: a &lt;bad&gt; thing",
    ):
        assert text in page, text
    assert page.count('<img src="data:image/png;base64,') == 5
    # No finished run: a page without figures, not an error.
    page = render_study_html([rows[3]], title="none")
    assert "No finished runs" in page and "<img" not in page


@pytest.mark.slow
@pytest.mark.parametrize("width", [390, 1280])
def test_study_report_renders_in_chromium(tmp_path, width):
    check = render_in_chromium(render_study_html(fake_rows(), title="demo"), tmp_path, width)
    assert check["images"] == 5 and check["broken"] == 0, check
    assert not check["page"] and check["sticking"] == [], check


# ------------------------------------------------------------------------- end to end

METRICS = ["num_params", "train_rmse", "test_rmse", "gap", "crps", "nll", "coverage_90",
           "interval_score_90", "verdict", "status"]  # fmt: skip


@pytest.fixture(scope="module")
def local_study(tmp_path_factory):
    """The tiny study (2 runs + 1 impossible cell) through the CLI, 2 local workers."""
    root = tmp_path_factory.mktemp("study")
    path = root / "tiny.toml"
    path.write_text(
        TINY.format(widths="[4, 0]")
        .replace('"cubic", "linear"', '"cubic"')
        .replace("width = [4, 0]", 'width = [4, 0]\nmethod = ["ensemble", "svi"]')
    )
    out = root / "out"
    code = cli.main(["study", str(path), "--out", str(out), "--workers", "2", "--quiet"])
    return path, out, code


@pytest.mark.slow
def test_local_study_records_the_failure_and_finishes_the_rest(local_study, capsys):
    path, out, code = local_study
    assert code == 1  # some runs failed
    rows = results.read_results(out)
    assert [r["status"] for r in rows] == ["ok", "ok", "invalid", "invalid"]
    assert "line 23" in rows[2]["error"] and "width" in rows[2]["error"]
    for r in rows[:2]:
        folder = out / "runs" / r["run_id"]
        assert {"spec.toml", "run.json", "posterior.npz", "metrics.json", "report.html",
                "study_run.json"} <= {p.name for p in folder.iterdir()}  # fmt: skip
        assert r["num_params"] > 0 and r["crps"] > 0 and 0 <= r["coverage_90"] <= 1
        assert r["gap"] == pytest.approx(r["test_rmse"] - r["train_rmse"])
        # A normal run folder: the report re-renders, exiting 3 only for a fail verdict
        # (these tiny 100-step fits may fail theirs).
        expected = 3 if r["verdict"] == "fail" else 0
        assert cli.main(["report", str(folder), "--quiet"]) == expected
    assert (out / "runs" / rows[2]["run_id"] / "error.txt").read_text() == rows[2]["error"]
    assert "Failed runs" in (out / "report.html").read_text()
    capsys.readouterr()
    assert cli.main(["study-report", str(out)]) == 0
    assert "report.html" in capsys.readouterr().err


@pytest.mark.slow
def test_rerun_computes_only_the_missing_runs(local_study):
    path, out, _ = local_study
    rows = results.read_results(out)
    stamps = {r["run_id"]: (out / "runs" / r["run_id"] / "study_run.json").stat().st_mtime_ns
              for r in rows if r["status"] == "ok"}  # fmt: skip
    removed = rows[1]["run_id"]
    import shutil

    shutil.rmtree(out / "runs" / removed)
    again = study.run(path, out, workers=2, progress=False)
    assert [r["status"] for r in again] == ["ok", "ok", "invalid", "invalid"]
    for run_id, stamp in stamps.items():
        now = (out / "runs" / run_id / "study_run.json").stat().st_mtime_ns
        assert (now == stamp) == (run_id != removed), run_id  # only the missing one ran
    assert [r[m] for r in again for m in METRICS] == [r[m] for r in rows for m in METRICS]


@pytest.mark.slow
def test_ray_backend_gives_the_same_rows(local_study, tmp_path):
    pytest.importorskip("ray")
    path, out, _ = local_study
    rows = study.run(path, tmp_path / "ray", backend="ray", workers=2, progress=False)
    local = results.read_results(out)
    ray_rows = results.read_results(tmp_path / "ray")
    assert [r["run_id"] for r in ray_rows] == [r["run_id"] for r in local]
    assert [[r[m] for m in METRICS] for r in ray_rows] == [[r[m] for m in METRICS] for r in local]
    assert [r["status"] for r in rows] == ["ok", "ok", "invalid", "invalid"]


@pytest.mark.parametrize("name, count", [("smoke", 4), ("parameterization", 240)])
def test_shipped_studies_are_valid(name, count):
    s = study.load_study(ROOT / "models" / "studies" / f"{name}.toml", strict=True)
    assert len(s.runs) == count
