"""Helpers shared by test modules (test modules never import each other).

* a conjugate linear-Gaussian model with a closed-form posterior, for the engines' tests;
* :func:`run_main`, :func:`one_line_error` and :func:`fit_run_folder`: the command line run
  in the test's process, its one-line errors, and a run folder fitted through it;
* :func:`render_in_chromium`: one headless-Chromium harness for every HTML page;
* :func:`refit_case`: two fits of the same sizes on other data (compiled programs reused).
"""

import json
import os
import re
import shutil
import subprocess
import warnings

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pytest

import bayesresnet as brn
from bayesresnet import bases
from bayesresnet.app import cli

# ---------------------------------------------------------------------------------------
# A conjugate linear-Gaussian model with a closed-form posterior: θ ~ N(m, s² I),
# y_i ~ N(x_i·θ, σ²) with σ known. It follows the engines' model protocol
# (prior_loc, obs_weight keyword arguments).
PRIOR_SD, NOISE_SD = 1.0, 0.5


def linear_model(x, y=None, prior_loc=None, obs_weight=None):
    loc = jnp.zeros(x.shape[1]) if prior_loc is None else prior_loc["theta"]
    theta = numpyro.sample("theta", dist.Normal(loc, PRIOR_SD).to_event(1))
    with numpyro.plate("data", x.shape[0]):
        if obs_weight is None:
            numpyro.sample("y", dist.Normal(x @ theta, NOISE_SD), obs=y)
        else:
            with numpyro.handlers.scale(scale=obs_weight):
                numpyro.sample("y", dist.Normal(x @ theta, NOISE_SD), obs=y)


def linear_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20, 2))
    y = x @ np.array([1.0, -2.0]) + NOISE_SD * rng.normal(size=20)
    return jnp.asarray(x, dtype=jnp.float32), jnp.asarray(y, dtype=jnp.float32)


def linear_posterior(x, y, weights=None, anchor=None):
    """Posterior (or weighted/anchored MAP) in closed form."""
    x, y = np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)
    w = np.ones(len(x)) if weights is None else np.asarray(weights, dtype=np.float64)
    m = np.zeros(x.shape[1]) if anchor is None else np.asarray(anchor, dtype=np.float64)
    precision = (x.T * w) @ x / NOISE_SD**2 + np.eye(x.shape[1]) / PRIOR_SD**2
    cov = np.linalg.inv(precision)
    mean = cov @ ((x.T * w) @ y / NOISE_SD**2 + m / PRIOR_SD**2)
    return mean, cov


def tiny_spec():
    return brn.ResNetSpec(1, 1, width=2, num_layers=2, basis=bases.Linear())


# ------------------------------------------------------------------------- command line
def run_main(args) -> int:
    """``bayesresnet ARGS`` in this process; its exit status."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # unconverged tiny ensembles
        return cli.main([str(a) for a in args])


def one_line_error(capsys) -> str:
    """Standard error of the last command, which must be exactly one line (no traceback)."""
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    return err


def help_text(command: str, capsys) -> str:
    """``bayesresnet COMMAND --help`` (exit status 0), its whitespace collapsed."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main([command, "--help"])
    assert exit_info.value.code == 0
    return " ".join(capsys.readouterr().out.split())


def tiny_run_spec(
    name: str, problem: str, *, num_train: int, noise: float, num_steps: int, extra: str = ""
) -> str:
    """The spec (TOML) of a tiny run: an ensemble of 4 members, width 4, 2 cubic layers, on
    ``num_train`` points of a built-in problem (20 held out), then ``extra`` (e.g. a
    ``[report]`` table)."""
    return f"""name = "{name}"
[data]
problem = "{problem}"
num_train = {num_train}
num_test = 20
noise = {noise}
[network]
width = 4
num_layers = 2
basis = "cubic"
[inference]
method = "ensemble"
num_members = 4
num_steps = {num_steps}
{extra}"""


def fit_run_folder(root, spec_text: str, name: str = "run"):
    """``bayesresnet fit`` of the spec ``spec_text`` into ``root / name``; that folder."""
    spec = root / f"{name}.toml"
    spec.write_text(spec_text)
    assert run_main(["fit", spec, "--out", root / name, "--quiet"]) == 0
    return root / name


# --------------------------------------------------------------------- headless Chromium
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


def render_in_chromium(html: str, tmp_path, width: int) -> dict:
    """Load ``html`` in headless Chromium at ``width`` px; what the page's check found.

    Returns ``{"images", "broken", "page", "sticking", "vw"}``: the number of images, how
    many failed to load, whether the page scrolls sideways, and which top-level elements
    stick out of the viewport.
    """
    chromium = find_chromium()
    page = tmp_path / "page.html"
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
    return json.loads(found.group(1).replace("&quot;", '"'))


# ---------------------------------------------------------------------------------------
def refit_case():
    """A tiny polished ensemble on two draws of 60 borehole rows (data seeds 0 and 1):
    ``(spec, options, first data, second data)``; the second fit runs with ``seed=1``."""
    problem = brn.problems.get("borehole")
    spec = brn.ResNetSpec(8, 1, width=4, num_layers=2)
    options = dict(
        method="ensemble", num_members=2, num_steps=200, max_steps=200, polish="lbfgs",
        polish_steps=20,
    )  # fmt: skip
    first, second = (problem.sample(seed, 60, 10, noise=0.05) for seed in (0, 1))
    return spec, options, first, second
