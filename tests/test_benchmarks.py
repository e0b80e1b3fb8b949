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
