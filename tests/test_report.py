"""The report: workflow metrics, HTML structure, and rendering in headless Chromium."""

import html
import json
import os
import re
import shutil
import subprocess

import numpy as np
import pytest

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


CHECK_SCRIPT = """
<script>
window.addEventListener('load', () => {
  const imgs = [...document.images];
  const broken = imgs.filter(i => !(i.complete && i.naturalWidth > 0)).length;
  const vw = document.documentElement.clientWidth;
  const page = document.documentElement.scrollWidth > vw + 1;
  const sticking = [...document.querySelectorAll('main > *')]
    .filter(e => e.getBoundingClientRect().right > vw + 1).map(e => e.tagName);
  const out = document.createElement('pre');
  out.id = 'check-result';
  out.textContent = JSON.stringify({images: imgs.length, broken, page, sticking, vw});
  document.body.appendChild(out);
});
</script>
"""


def find_chromium():
    for name in ("chromium", "chromium-browser", "google-chrome"):
        path = shutil.which(name)
        if path:
            return path
    if os.environ.get("CI"):
        pytest.fail("chromium is not installed; .ci/run installs Debian's chromium package")
    pytest.skip("chromium is not installed (apt-get install chromium)")


@pytest.mark.parametrize("width", [390, 1280])  # a phone and a desktop
def test_report_renders_in_chromium(analysis, tmp_path, width):
    chromium = find_chromium()
    _, _, result = analysis
    html = report.render_html(result.metrics, result.figures)
    page = tmp_path / "report.html"
    page.write_text(html.replace("</body>", CHECK_SCRIPT + "</body>"))
    cmd = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        f"--window-size={width},900",
        "--virtual-time-budget=10000",
        "--dump-dom",
        page.as_uri(),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    found = re.search(r'<pre id="check-result">(.*?)</pre>', out.stdout, re.S)
    assert found, out.stderr[-2000:]
    check = json.loads(found.group(1).replace("&quot;", '"'))
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
