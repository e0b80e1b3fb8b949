"""The README's examples run as written, each within the README's promise of two minutes.

Every ```python block runs in a subprocess of its own, in a fresh folder; the ```bash
blocks' ``bayesresnet ...`` lines run one after another in one fresh folder holding the
repository's ``models/`` (so a later line finds what an earlier one wrote), as a user
reading from the top would run them. ``make`` lines (they create a virtual environment
and install) and the Ray backend (an optional extra) are left out. Each command must exit
0 and use at most two minutes of CPU on two cores (:data:`CPU_LIMIT_S`); CPU time, not
wall time, so that the limit holds on a machine shared with other work (a generous wall
time limit only catches hangs). The fits and the Python example must show progress.
"""

import importlib.util
import os
import re
import resource
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
#: Two minutes on the two cores of the reference machine, in CPU seconds.
CPU_LIMIT_S = 2 * 120.0
#: Only catches a hang: a loaded machine may stretch two minutes a few times over.
WALL_LIMIT_S = 900
#: Marks a README command documented to end with exit status 3 (verdict fail).
EXPECT_FAIL_VERDICT = "<exit 3>"


def code_blocks(text: str, language: str) -> list[str]:
    """The bodies of the fenced code blocks of ``language``, in order."""
    return re.findall(rf"^```{language}\n(.*?)^```", text, flags=re.DOTALL | re.MULTILINE)


def readme_commands(text: str) -> list[list[str]]:
    """The ``bayesresnet`` command lines of the bash blocks as argument lists, in order.

    A line whose comment says ``exit 3`` documents a run whose verdict is fail: its
    argument list ends with the marker :data:`EXPECT_FAIL_VERDICT` (removed before running).
    """
    commands = []
    for block in code_blocks(text, "bash"):
        for line in block.splitlines():
            args = shlex.split(line, comments=True)
            if not args or args[0] == "make":
                continue  # set-up commands: a virtual environment and an install
            assert args[0] == "bayesresnet", f"README command not covered: {line!r}"
            if "ray" in args and importlib.util.find_spec("ray") is None:
                continue  # pip install bayesresnet[ray]
            commands.append(args + ([EXPECT_FAIL_VERDICT] if "exit 3" in line else []))
    return commands


def run_timed(
    argv: list[str], cwd: Path, env: dict[str, str] | None = None
) -> tuple[subprocess.CompletedProcess, float]:
    """Run ``argv`` (with ``env`` added to the environment); the process and the CPU
    seconds it (and its children) used."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "MPLBACKEND": "Agg", **(env or {})}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=WALL_LIMIT_S
    )
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    wall = time.perf_counter() - start
    print(f"{' '.join(argv[2:] if argv[1] == '-m' else argv)}: {wall:.0f} s, {cpu:.0f} s CPU")
    return proc, cpu


def test_readme_blocks_are_found():
    text = README.read_text(encoding="utf-8")
    assert len(code_blocks(text, "python")) == 1
    names = [args[1] for args in readme_commands(text)]
    for command in ("fit", "report", "predict", "compare", "problems", "study", "calibrate"):
        assert command in names, command


@pytest.mark.slow
def test_readme_python_example_finishes(tmp_path):
    (block,) = code_blocks(README.read_text(encoding="utf-8"), "python")
    script = tmp_path / "example.py"
    script.write_text(block, encoding="utf-8")
    proc, cpu = run_timed([sys.executable, "-W", "error", str(script)], tmp_path)
    assert proc.returncode == 0, proc.stderr[-5000:]
    assert cpu <= CPU_LIMIT_S
    assert re.search(r": 100% \(", proc.stderr), proc.stderr[-2000:]  # progress, to the end


@pytest.mark.slow
def test_readme_commands_finish_in_order(tmp_path):
    (tmp_path / "models").symlink_to(ROOT / "models")
    # As on a new machine: the commands' compile cache starts empty (in its own folder,
    # not the user's ~/.cache) and each command finds what the ones before it compiled.
    cache = {"BAYESRESNET_COMPILE_CACHE": str(tmp_path / "xla")}
    for args in readme_commands(README.read_text(encoding="utf-8")):
        expected = 3 if args[-1] == EXPECT_FAIL_VERDICT else 0
        args = [a for a in args if a != EXPECT_FAIL_VERDICT]
        proc, cpu = run_timed([sys.executable, "-m", "bayesresnet", *args[1:]], tmp_path, cache)
        assert proc.returncode == expected, f"{shlex.join(args)}:\n{proc.stderr[-5000:]}"
        assert cpu <= CPU_LIMIT_S, shlex.join(args)
        if args[1] == "fit":
            assert "% (" in proc.stderr, proc.stderr[-2000:]  # progress lines
    assert list((tmp_path / "xla").glob("*-cache")), "the commands kept no compiled program"
