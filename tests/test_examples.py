"""Smoke tests of the example scripts: each runs end to end with ``--tiny`` in a subprocess.

As numpyro's ``test/test_examples.py`` does, each script is run as a user would run it
(``python examples/x.py --tiny --out DIR`` from the repository root); the test checks
the exit code, the files written and the rows of the printed table. The interpreter runs
with ``-W error``, as pytest does here (``filterwarnings = ["error"]``): a script may
only let through warnings it catches and reports itself. The three runs together take
well over a minute on two CPU cores (mostly XLA compilation), so they are marked
``slow``; the argument-parsing tests below import the scripts and run in milliseconds.
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples"


def run_example(name: str, out: Path, *args: str) -> str:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg"}
    proc = subprocess.run(
        [sys.executable, "-W", "error", str(EXAMPLES / name), "--tiny", "--out", str(out), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"{name} failed:\n{proc.stdout}\n{proc.stderr[-5000:]}"
    return proc.stdout


def table_rows(stdout: str) -> set[str]:
    """First cell of every printed line."""
    return {line.split("  ")[0].strip() for line in stdout.splitlines() if line.strip()}


def load_script(name: str):
    if str(EXAMPLES) not in sys.path:  # the scripts import examples/_common.py
        sys.path.insert(0, str(EXAMPLES))
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_fit_diagnose_check(tmp_path):
    stdout = run_example("fit_diagnose_check.py", tmp_path)
    for name in (
        "posterior.npz",
        "predictions.csv",
        "summary.json",
        "metrics.json",
        "report.html",
        "calibration_curve.png",
        "posterior_of_w_t_over_depth.png",
    ):
        assert (tmp_path / name).is_file(), name
    rows = table_rows(stdout)
    for row in ("verdict", "failed checks", "rmse", "crps", "coverage_90", "elpd_loo", "p_loo"):
        assert row in rows, (row, stdout)
    assert "Convergence verdict:" in stdout
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["verdict"] in ("pass", "warn", "fail")
    assert summary["reload_max_abs_diff"] == 0.0
    (line,) = [x for x in stdout.splitlines() if x.startswith("failed checks")]
    assert int(line.split()[-1]) == len(summary["failed_checks"])
    header = (tmp_path / "predictions.csv").read_text().splitlines()[0]
    assert header == "x,y_mean,y_sd,y_lower90,y_upper90"


@pytest.mark.slow
def test_compare_parameterizations(tmp_path):
    stdout = run_example("compare_parameterizations.py", tmp_path)
    for name in (
        "comparison.csv",
        "comparison.json",
        "comparison.html",
        "weight_paths.png",
        "calibration_curves.png",
    ):
        assert (tmp_path / name).is_file(), name
    variants = ("per-layer", "cubic", "legendre3", "mlp-cubic")
    assert set(variants) <= table_rows(stdout), stdout
    result = json.loads((tmp_path / "comparison.json").read_text())
    rows = {r["name"]: r for r in result["rows"]}
    assert set(rows) == set(variants)
    assert sorted(r["loo_rank"] for r in rows.values()) == [0, 1, 2, 3]
    # Same width and depth: cubic and Legendre(3) span the same space with 4 matrices;
    # the per-layer ResNet has one per layer (6 with --tiny), so more parameters.
    assert rows["cubic"]["num_params"] == rows["legendre3"]["num_params"]
    assert rows["per-layer"]["num_params"] > rows["cubic"]["num_params"]
    assert rows["mlp-cubic"]["residual"] is False


@pytest.mark.slow
def test_calibration_study(tmp_path):
    stdout = run_example("calibration_study.py", tmp_path)
    for name in (
        "metrics.csv",
        "calibration_study.json",
        "calibration_study.html",
        "calibration_curves.png",
        "calibration_curves_recalibrated.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert {"nuts", "svi", "ensemble"} <= table_rows(stdout), stdout
    result = json.loads((tmp_path / "calibration_study.json").read_text())
    assert [r["method"] for r in result["rows"]] == ["nuts", "svi", "ensemble"]
    for r in result["rows"]:
        for key in ("rmse", "crps", "coverage_90", "miscalibration_area", "coverage_90_recal"):
            assert 0 <= r[key] < float("inf"), (r["method"], key)
    html = (tmp_path / "calibration_study.html").read_text()
    assert "nuts + isotonic" in html


@pytest.mark.slow
def test_ode_link(tmp_path):
    stdout = run_example("ode_link.py", tmp_path)
    for name in (
        "depth_convergence.png",
        "gradient_gap.png",
        "stiffness.png",
        "depth_scaling.png",
        "ode_link.png",
        "ode_link.json",
    ):
        assert (tmp_path / name).is_file(), name
    rows = table_rows(stdout)
    for row in ("euler_order", "heun_order", "gradient_gap_L4", "beta_per_layer"):
        assert row in rows, (row, stdout)
    result = json.loads((tmp_path / "ode_link.json").read_text())
    # Orders of convergence to the ODE in M = 4 … 16 (float64, posterior median): Euler
    # first, Heun second; the backprop/adjoint gap shrinks with depth.
    assert 0.8 < result["euler_order"] < 1.2, result
    assert 1.6 < result["heun_order"] < 2.4, result
    assert result["gradient_gap_L16"] < result["gradient_gap_L4"], result
    assert result["stability_median"] > 0 and result["stiffness_ratio_median"] >= 1


@pytest.mark.slow
def test_calibrate_simulator(tmp_path):
    stdout = run_example("calibrate_simulator.py", tmp_path)
    for name in (
        "sobol.csv",
        "calibration.csv",
        "calibrate_simulator.json",
        "sobol.png",
        "posterior.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert {"epost", "plugin"} <= table_rows(stdout), stdout
    result = json.loads((tmp_path / "calibrate_simulator.json").read_text())
    # Borehole's two leading inputs by total Sobol index: rw (about 0.87), then one of
    # L, Hu, Hl (about 0.04 each).
    assert result["unknown"][0] == "rw" and len(result["unknown"]) == 2
    rows = result["rows"]
    assert [(r["mode"], r["input"]) for r in rows] == [
        (m, n) for m in ("epost", "plugin") for n in result["unknown"]
    ]
    for r in rows:
        assert r["hdi90_lower"] < r["mean"] < r["hdi90_upper"] and r["sd"] > 0
    # The plugin ignores the surrogate's uncertainty: none of the variance is the
    # surrogate's; epost's components (one per draw) differ, so some of it is.
    epost, plugin = rows[:2], rows[2:]
    assert all(r["surrogate_share"] == 0 for r in plugin)
    assert all(0 < r["surrogate_share"] < 1 for r in epost)


@pytest.mark.parametrize(
    "name",
    [
        "fit_diagnose_check",
        "compare_parameterizations",
        "calibration_study",
        "ode_link",
        "calibrate_simulator",
    ],
)
def test_tiny_preset_and_overrides(name, tmp_path):
    module = load_script(name)
    assert module.__doc__ and callable(module.main)
    tiny = module.parse_args(["--tiny", "--out", str(tmp_path)])
    full = module.parse_args([])
    for key, value in module.TINY.items():
        assert getattr(tiny, key) == value
        assert getattr(full, key) == module.FULL[key]
    assert full.out == Path("runs/examples") / name
    # A flag given on the command line wins over the --tiny preset.
    flag = "--" + next(iter(module.TINY)).replace("_", "-")
    args = module.parse_args(["--tiny", flag, "7"])
    assert getattr(args, next(iter(module.TINY))) == 7
