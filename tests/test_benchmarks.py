"""The inference benchmark's bookkeeping (the benchmark itself runs outside the suite)."""

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_inference import start_results  # noqa: E402


def test_merge_keeps_the_other_problems_and_the_machine_figures(tmp_path):
    out = tmp_path / "inference.json"
    fresh = start_results(out, merge=True, quick=False)  # no file yet: a fresh start
    assert fresh["methods"] == {} and "gradients" not in fresh and fresh["quick"] is False
    previous = {"quick": False, "device": "old", "gradients": [1, 2],
                "methods": {"default": {"nuts": {"ess_min": 3.0}}}}  # fmt: skip
    out.write_text(json.dumps(previous))
    merged = start_results(out, merge=True, quick=False)
    assert merged["methods"] == previous["methods"] and merged["gradients"] == [1, 2]
    assert start_results(out, merge=False, quick=False)["methods"] == {}
    with pytest.raises(ValueError, match=r"--merge: .*inference.json was written with quick=False"):
        start_results(out, merge=True, quick=True)


def test_merge_reruns_only_the_named_methods(tmp_path, monkeypatch):
    import bench_inference

    out = tmp_path / "inference.json"
    old = {"wall_s": 1.0, "gradient_evaluations": 10, "ess_min": 5.0, "ess_per_1000_gradients": 0.5,
           "ess_per_s": 5.0, "test_rmse": 0.1, "coverage_90": 0.9}  # fmt: skip
    rows = {"nuts_baseline": old, "nuts": old | {"wall_s": 2.0}}
    previous = {"quick": False, "device": "cpu", "platform": "p", "jax": "j", "gradients": [1],
                "methods": {"borehole": rows}}  # fmt: skip
    out.write_text(json.dumps(previous))
    settings = {"nuts_baseline": ("nuts", {"a": 0}), "nuts": ("nuts", {"a": 1})}
    monkeypatch.setattr(bench_inference, "problem", lambda name, quick: (None, None, settings))
    monkeypatch.setattr(bench_inference, "bench_method", lambda s, d, m, o: old | {"wall_s": 3.0})
    monkeypatch.setattr(bench_inference, "plot", lambda r, path: None)
    monkeypatch.setattr(bench_inference, "format_table", lambda r: "")
    bench_inference.main(
        ["--problems", "borehole", "--methods", "nuts", "--merge", "--out", str(out)]
    )
    rows = json.loads(out.read_text())["methods"]["borehole"]
    assert rows["nuts_baseline"] == old  # kept, not rerun
    assert rows["nuts"]["wall_s"] == 3.0 and rows["nuts"]["options"] == {"a": 1}


def test_gradient_counts_come_from_each_methods_engine():
    """MAP starts, warm-up and sampling (samplers), steps × particles (SVI), members × steps."""
    from types import SimpleNamespace

    from bench_inference import gradient_evaluations

    sampled = {"num_warmup_gradient_evaluations": 300, "num_gradient_evaluations": 700}
    nuts = SimpleNamespace(
        method="nuts", settings={"init_steps": 10, "num_chains": 4, "init": "map"}, extra=sampled
    )
    assert gradient_evaluations(nuts) == 10 * 4 + 300 + 700
    nuts.settings |= {"init_members": 6}
    assert gradient_evaluations(nuts) == 10 * 6 + 300 + 700
    nuts.settings |= {"init": "prior"}
    assert gradient_evaluations(nuts) == 300 + 700
    mclmc = SimpleNamespace(
        method="mclmc", settings={"init_steps": 5, "num_chains": 2}, extra=sampled
    )
    assert gradient_evaluations(mclmc) == 5 * 2 + 300 + 700
    svi = {"init": "map", "init_steps": 20, "steps_run": 100, "num_particles": 3}
    assert gradient_evaluations(SimpleNamespace(method="svi", settings=svi, extra={})) == 320
    ensemble = SimpleNamespace(method="ensemble", settings={"num_members": 4, "num_steps": 50})
    assert gradient_evaluations(ensemble) == 200
