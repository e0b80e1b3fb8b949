"""The report: workflow metrics, HTML structure, and rendering in headless Chromium."""

import html
import json
import re

import numpy as np
import pytest
from _helpers import render_in_chromium

import bayesresnet as brn
from bayesresnet import report, workflow

# One small NUTS fit (about 40 s on two cores) feeds every test here.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def analysis():
    ds = brn.problems.get("sine").sample(0, 40, 60, noise=0.1)
    spec = brn.ResNetSpec(1, 1, width=4, num_layers=4)
    post = brn.fit(
        spec, ds, method="nuts", num_warmup=60, num_samples=60, num_chains=2, max_tree_depth=6
    )
    return (
        post,
        ds,
        workflow.analyze(post, ds, name="tiny", truth=brn.problems.get("sine").evaluate),
    )


def test_metrics_are_complete_and_json(analysis, tmp_path):
    post, ds, result = analysis
    m = result.metrics
    assert m["inference"]["method"] == "nuts"
    assert m["diagnostics"]["verdict"] in ("pass", "warn", "fail")
    names = [c["name"] for c in m["diagnostics"]["checks"]]
    assert names[:3] == [
        "R-hat, function space",
        "bulk ESS, function space",
        "tail ESS, function space",
    ]
    assert "divergences" in names and "E-BFMI" in names
    test = m["calibration"]["test"]
    pred = post.predict(ds.x_test, seed=0)
    expected_rmse = float(np.sqrt(np.mean((pred.mean - ds.y_test) ** 2)))
    assert test["rmse"]["overall"] == pytest.approx(expected_rmse, rel=1e-6)
    assert len(m["loo"]["pareto_k"]) == 40
    assert {
        "Posterior predictive",
        "Posterior of W(t) over depth",
        "Stiffness over depth",
        "Energy",
        "Calibration curve",
        "Trace and rank plots, worst-converged quantities",
    } <= set(result.figures)
    path = report.write_json(tmp_path / "metrics.json", m)
    assert json.loads(path.read_text())["run"]["name"] == "tiny"


def test_checks_table_keeps_its_advice_readable_on_a_phone(analysis):
    # At 390 px the auto table layout squeezed "what to try" to one character: the checks
    # table is marked, its advice column has a minimum width, and the table scrolls sideways.
    _, _, result = analysis
    text = report.render_html(result.metrics, result.figures)
    checks = text.split("<h2>Diagnostics</h2>", 1)[1]
    assert checks.lstrip().startswith('<div class="table-wrap"><table class="checks">')
    assert text.count('<table class="checks">') == 1
    assert "table.checks td:last-child{min-width:15rem}" in text
    assert ".table-wrap{overflow-x:auto;" in text


def test_html_is_self_contained(analysis, tmp_path):
    _, _, result = analysis
    path = report.write_report(tmp_path / "report.html", result.metrics, result.figures)
    text = path.read_text()
    assert text.startswith("<!DOCTYPE html>")
    assert "width=device-width" in text
    images = re.findall(r'<img src="([^"]+)"', text)
    assert len(images) == len(result.figures)
    assert all(src.startswith("data:image/png;base64,") for src in images)
    assert "http://" not in text and "https://" not in text  # nothing fetched from outside
    assert f'Verdict: <span class="verdict {result.metrics["diagnostics"]["verdict"]}' in text
    assert html.escape(report.verdict_meaning("nuts")) in text  # what the verdict means
    # Every calibration row carries a number for the one output.
    labels = (
        "RMSE",
        "CRPS",
        "NLL",
        "interval score (90%)",
        "sharpness (mean sd)",
        "coverage of 90% interval",
        "PIT KS p-value",
        "test/train RMSE ratio",
    )
    for label in labels:
        assert re.search(rf'<td>{re.escape(label)}</td><td class="num">-?[0-9]', text), label


@pytest.mark.parametrize("width", [390, 1280])  # a phone and a desktop
def test_report_renders_in_chromium(analysis, tmp_path, width):
    _, _, result = analysis
    check = render_in_chromium(report.render_html(result.metrics, result.figures), tmp_path, width)
    assert check["images"] == len(result.figures)
    assert check["broken"] == 0, check
    assert not check["page"], f"page scrolls sideways at width {width}: {check}"
    assert check["sticking"] == [], check


@pytest.mark.parametrize("method", ["nuts", "mclmc", "svi", "ensemble"])
def test_the_verdict_is_explained_per_method(method):
    text = report.verdict_meaning(method)
    assert text.startswith(f"For {'a deep ensemble' if method == 'ensemble' else method.upper()}")
    for part in ("pass means", "held-out split", "0.001 fails", "Warn:", "Fail:"):
        assert part in text
    if method == "svi":
        assert "Laplace included" in text
