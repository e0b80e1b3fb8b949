"""Output safety: run names, --overwrite, the replacement swap, output paths, study locks."""

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from _helpers import one_line_error, run_main

from bayesresnet._io import write_atomic
from bayesresnet.app import run_folder, study
from bayesresnet.app.runspec import SpecError, parse_runspec
from bayesresnet.data import Dataset

SPEC = """name = {name}
[data]
problem = "sine"
num_train = 20
num_test = 20
[network]
width = 4
num_layers = 2
[inference]
method = "ensemble"
num_members = 2
num_steps = 50
[report]
num_probes = 3
"""


@pytest.fixture
def no_fit(monkeypatch):
    """Any fit is a failure of the test: every check must come before it."""

    def fit(*args, **kwargs):
        raise AssertionError("the fit started")

    monkeypatch.setattr("bayesresnet.infer.fit", fit)


def _spec(folder: Path, name='"tiny"') -> Path:
    path = folder / "spec.toml"
    path.write_text(SPEC.format(name=name))
    return path


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


# ------------------------------------------------------------------------------ run names


@pytest.mark.parametrize("name", [".", "..", "../elsewhere", "/tmp/abs", ".hidden", " padded"])
def test_a_run_name_that_is_not_a_plain_name_is_refused_with_its_line(name):
    text = f'# a run\nname = "{name}"\n' + SPEC.split("\n", 1)[1]
    with pytest.raises(SpecError, match=r"line 2: `name` must be a non-empty string without '/'"):
        parse_runspec(text, path="spec.toml")


def test_fit_with_name_dotdot_touches_nothing(tmp_path, monkeypatch, no_fit, capsys):
    # Regression: `name = ".."` made the default output runs/.., the working folder.
    work = tmp_path / "work"
    work.mkdir()
    (work / "thesis.tex").write_text("chapter 1")
    monkeypatch.chdir(work)
    spec = _spec(work, name='".."')
    assert run_main(["fit", spec, "--overwrite"]) == 2
    assert re.search(r"^error: .*spec\.toml, line 1: `name` must", one_line_error(capsys))
    assert sorted(p.name for p in work.iterdir()) == ["spec.toml", "thesis.tex"]


def test_a_study_name_that_is_not_a_plain_name_is_refused_with_its_line():
    with pytest.raises(SpecError, match=r"study\.toml, line 1: `name` must be a non-empty"):
        study.parse_study('name = ".."\nbase = "models/default.toml"\n', path="study.toml")


# ------------------------------------------------------------------------------ overwrite


def test_overwrite_refuses_a_folder_that_is_not_a_run_folder(tmp_path, no_fit, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "chapter1.tex").write_text("my work")
    assert run_main(["fit", _spec(tmp_path), "--out", thesis, "--overwrite"]) == 2
    err = one_line_error(capsys)
    assert re.search(r"thesis is not a bayesresnet run folder \(it holds chapter1\.tex\)", err)
    assert (thesis / "chapter1.tex").read_text() == "my work"


def test_overwrite_of_the_working_folder_is_refused(tmp_path, monkeypatch, no_fit, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.txt").write_text("keep")
    assert run_main(["fit", _spec(tmp_path), "--out", ".", "--overwrite"]) == 2
    assert "is not a bayesresnet run folder (it holds notes.txt, spec.toml)" in one_line_error(
        capsys
    )
    assert (tmp_path / "notes.txt").read_text() == "keep"


def test_overwrite_refuses_a_run_folder_holding_a_user_file(tmp_path, no_fit, capsys):
    folder = tmp_path / "run"
    _save(folder, "old")
    (folder / "notes.md").write_text("mine")
    assert run_main(["fit", _spec(tmp_path), "--out", folder, "--overwrite"]) == 2
    assert "holds files bayesresnet did not write (notes.md)" in one_line_error(capsys)
    assert (folder / "notes.md").read_text() == "mine"


def test_a_run_folder_from_before_the_marker_is_still_replaceable(tmp_path):
    folder = tmp_path / "run"
    _save(folder, "old")
    (folder / run_folder.MARKER).unlink()
    assert run_folder.is_run_folder(folder)  # by its run.json
    _save(folder, "new")
    _assert_complete(folder, {"new"})


def test_a_link_or_a_file_is_never_replaced(tmp_path):
    real = tmp_path / "real"
    _save(real, "old")
    link = tmp_path / "link"
    link.symlink_to(real)
    with pytest.raises(ValueError, match=r"link is a symbolic link, not a run folder"):
        run_folder.check_replaceable(link)
    (tmp_path / "file").write_text("text")
    with pytest.raises(ValueError, match=r"file is a file, not a run folder"):
        run_folder.check_replaceable(tmp_path / "file")


def test_a_run_folder_with_a_damaged_run_json_can_be_refitted_over(tmp_path):
    # What `bayesresnet report` advises for a damaged run.json: fit again with --overwrite.
    folder = tmp_path / "run"
    _save(folder, "old")
    (folder / run_folder.MARKER).unlink()  # a folder from before the marker, too
    (folder / "run.json").write_text('{"name": ')
    assert run_folder.is_run_folder(folder)
    assert run_folder.check_output_folder(folder, overwrite=True) == []
    _save(folder, "new")
    _assert_complete(folder, {"new"})


# ------------------------------------------------------------------- the replacement swap


class _Posterior:
    """Stands in for a Posterior: ``save`` writes a small file atomically."""

    def __init__(self, label):
        self.label = label

    def save(self, path):
        write_atomic(path, self.label.encode())


def _dataset():
    x = np.linspace(0, 1, 8)[:, None]
    return Dataset(x, np.sin(x), x[:2], np.sin(x[:2]), ("x",), ("y",))


def _save(folder, label):
    info = {"name": "tiny", "version": "0", "spec": {}}
    run_folder.save_run(
        folder, spec_text=label, info=info, posterior=_Posterior(label), dataset=_dataset()
    )


def _assert_complete(folder: Path, labels: set[str]) -> str:
    """``folder`` is a complete run folder of ours, holding one of ``labels``; no leftovers."""
    assert run_folder.is_run_folder(folder)
    names = {p.name for p in folder.iterdir()}
    assert set(run_folder.RUN_FILES) | {run_folder.MARKER} == names
    label = (folder / "spec.toml").read_text()
    assert label in labels and (folder / "posterior.npz").read_text() == label
    assert [p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}.")] == []
    return label


_STEPS = ("replace", "rename", "unlink", "rmdir", "mkdir")


def _instrument(monkeypatch, at_step):
    """Call ``at_step(k)`` before the k-th file-system change (os.replace, unlink, …)."""
    count, busy = [0], [False]
    for step in _STEPS:
        original = getattr(os, step)

        def wrapped(*args, original=original, **kwargs):
            if not busy[0]:  # not the changes `at_step` itself makes
                count[0] += 1
                busy[0] = True
                try:
                    at_step(count[0])
                finally:
                    busy[0] = False
            return original(*args, **kwargs)

        monkeypatch.setattr(os, step, wrapped)
    return count


def _number_of_steps(tmp_path, monkeypatch) -> int:
    folder = tmp_path / "count" / "run"
    _save(folder, "old")
    with monkeypatch.context() as m:
        count = _instrument(m, lambda k: None)
        _save(folder, "new")
    assert count[0] >= 8  # staging, its files, two renames, the trash's removal
    return count[0]


def test_an_exception_at_any_step_of_a_replacement_leaves_the_old_or_new_run(tmp_path, monkeypatch):
    for k in range(1, _number_of_steps(tmp_path, monkeypatch) + 1):
        folder = tmp_path / f"interrupt{k}" / "run"
        _save(folder, "old")

        def interrupt(step, k=k):
            if step == k:
                raise KeyboardInterrupt

        with monkeypatch.context() as m:
            _instrument(m, interrupt)
            with pytest.raises(KeyboardInterrupt):
                _save(folder, "new")
        run_folder.recover(folder)  # what is left is this process's: nothing in use
        _assert_complete(folder, {"old", "new"})


def test_a_crash_at_any_step_of_a_replacement_is_recovered_by_the_next_run(tmp_path, monkeypatch):
    # A crash (kill -9) runs no handler: the state just before each step is copied, as a
    # crash there would leave it, and the next run (another process) recovers the copy.
    snapshots = tmp_path / "snapshots"
    folder = tmp_path / "live" / "run"
    _save(folder, "old")

    def crash_here(step):
        shutil.copytree(folder.parent, snapshots / str(step), symlinks=True)

    with monkeypatch.context() as m:
        count = _instrument(m, crash_here)
        _save(folder, "new")
    monkeypatch.setattr(run_folder, "_in_use", lambda pid: False)  # that process is dead
    seen = set()
    for k in range(1, count[0] + 1):
        copy = snapshots / str(k) / "run"
        notes = run_folder.recover(copy)
        seen.add(_assert_complete(copy, {"old", "new"}))
        assert all(re.match(r"(restored|removed) ", n) for n in notes), notes
    assert seen == {"old", "new"}


def test_stale_staging_is_cleaned_before_the_fit_and_unmarked_folders_are_left(
    tmp_path, no_fit, capsys
):
    pid = _dead_pid()
    out = tmp_path / "run"
    stale = tmp_path / f".run.staging-{pid}-0a1b2c3d"
    stale.mkdir()
    (stale / run_folder.MARKER).write_text('{"kind": "bayesresnet run folder"}')
    (stale / "spec.toml").write_text("half written")
    unmarked = tmp_path / f".run.staging-{pid}-deadbeef"
    unmarked.mkdir()
    (unmarked / "data.csv").write_text("not ours")
    with pytest.raises(AssertionError, match="the fit started"):
        run_main(["fit", _spec(tmp_path), "--out", out, "--quiet"])
    err = capsys.readouterr().err
    assert f"note: removed {stale}, left by an interrupted save (process {pid})" in err
    assert f"note: left {unmarked}" in err
    assert not stale.exists() and (unmarked / "data.csv").read_text() == "not ours"


def test_a_stale_trash_folder_is_restored_when_the_run_folder_is_missing(tmp_path):
    folder = tmp_path / "run"
    _save(folder, "old")
    trash = tmp_path / f".run.trash-{_dead_pid()}-0a1b2c3d"
    os.replace(folder, trash)  # a crash between the swap's two renames
    notes = run_folder.recover(folder)
    assert notes == [f"restored the run folder {folder} from an interrupted replacement."]
    _assert_complete(folder, {"old"})


# ----------------------------------------------------------------------- output paths


def _outputs(tmp_path, runs_dir):
    """The commands that write ``target``, with their output path replaced."""
    spec = _spec(tmp_path)
    study_spec = tmp_path / "study.toml"
    study_spec.write_text(f'base = "{spec}"\n')
    x = tmp_path / "x.csv"
    x.write_text("x\n0.5\n")
    return {
        "fit --out": lambda target: ["fit", spec, "--out", target],
        "study --out": lambda target: ["study", study_spec, "--out", target],
        "predict --output": lambda target: [
            "predict",
            runs_dir,
            "--input",
            x,
            "--output",
            target,
        ],
        "compare --out": lambda target: ["compare", runs_dir, runs_dir, "--out", target],
    }


def _bad_targets(tmp_path):
    a_file = tmp_path / "a_file.txt"
    a_file.write_text("text")
    real = tmp_path / "real"
    real.mkdir()
    link = tmp_path / "link"
    link.symlink_to(real)
    locked = tmp_path / "locked"
    locked.mkdir()
    return {
        "inside a file": (
            a_file / "out",
            r"cannot write .*a_file\.txt/out: .*a_file\.txt is a file",
        ),
        "a symbolic link": (link, r"link is a symbolic link \(to .*real\)"),
        "not writable": (locked / "out", r"cannot write .*locked/out: the folder .*locked is not "),
    }


@pytest.mark.parametrize(
    "command", ["fit --out", "study --out", "predict --output", "compare --out"]
)
@pytest.mark.parametrize("case", ["inside a file", "a symbolic link", "not writable"])
def test_a_bad_output_path_is_one_line_and_exit_2_before_any_work(
    command, case, tmp_path, monkeypatch, no_fit, capsys
):
    target, pattern = _bad_targets(tmp_path)[case]
    # The tests run as root, which may write anywhere: the permission check is simulated.
    access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: access(p, mode) and "locked" not in str(p))
    monkeypatch.setattr("bayesresnet.posterior.load", lambda *a: pytest.fail("work started"))
    monkeypatch.setattr(study, "load_study", lambda *a, **k: pytest.fail("work started"))
    args = _outputs(tmp_path, tmp_path / "no_run")[command](target)
    assert run_main(args) == 2
    err = one_line_error(capsys)
    assert err.startswith("error: ") and re.search(pattern, err), err


def test_a_folder_as_predict_output_is_refused(tmp_path, capsys):
    x = tmp_path / "x.csv"
    x.write_text("x\n0.5\n")
    assert run_main(["predict", tmp_path, "--input", x, "--output", tmp_path]) == 2
    assert re.search(r"is a folder; give the path of a file to write", one_line_error(capsys))


def test_a_study_refuses_an_out_folder_that_is_not_a_study_folder(tmp_path, capsys):
    thesis = tmp_path / "thesis"
    thesis.mkdir()
    (thesis / "report.html").write_text("my report")
    (tmp_path / "study.toml").write_text(f'base = "{_spec(tmp_path)}"\n')
    assert run_main(["study", tmp_path / "study.toml", "--out", thesis]) == 2
    assert re.search(
        r"thesis is not a study folder \(it holds report\.html;", one_line_error(capsys)
    )
    assert sorted(p.name for p in thesis.iterdir()) == ["report.html"]


# --------------------------------------------------------------------------- study lock


def test_a_second_study_on_the_same_out_fails_at_once_naming_the_pid(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    with subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import fcntl, os, sys, time\n"
            f"fd = os.open({str(out / study.LOCK_FILE)!r}, os.O_RDWR | os.O_CREAT)\n"
            "fcntl.flock(fd, fcntl.LOCK_EX)\n"
            "os.write(fd, f'{os.getpid()}\\n'.encode())\n"
            "print('locked', flush=True)\n"
            "time.sleep(60)\n",
        ],
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        try:
            assert holder.stdout.readline() == "locked\n"
            spec = _spec(tmp_path)
            (tmp_path / "study.toml").write_text(f'base = "{spec}"\n')
            start = time.perf_counter()
            assert run_main(["study", tmp_path / "study.toml", "--out", out]) == 2
            assert time.perf_counter() - start < 10
        finally:
            holder.kill()
    err = one_line_error(capsys)
    assert re.search(rf"^error: another study \(PID {holder.pid}\) is writing .*study", err)
    assert not (out / "results.csv").exists()


def test_a_lock_left_by_a_dead_study_is_taken_over_with_a_note(tmp_path, capsys):
    out = tmp_path / "study"
    out.mkdir()
    pid = _dead_pid()
    (out / study.LOCK_FILE).write_text(f"{pid}\n")
    with study._locked(out):
        assert (out / study.LOCK_FILE).read_text() == f"{os.getpid()}\n"
        with pytest.raises(study.StudyLockedError, match=rf"another study \(PID {os.getpid()}\)"):
            with study._locked(out):  # a second holder, even in the same process
                pass
    assert f"note: took over {out / study.LOCK_FILE} from PID {pid}" in capsys.readouterr().err
    assert (out / study.LOCK_FILE).read_text() == ""  # a clean end leaves no PID behind


# -------------------------------------------------------------------- studies that stop

KILL_STUDY = """name = "kill"
[base.data]
problem = "sine"
num_train = 20
num_test = 10
[base.network]
width = 4
num_layers = 2
[base.inference]
method = "ensemble"
num_members = 2
num_steps = 20000
[base.report]
num_probes = 3
[grid]
seed = [1, 2, 3, 4, 5, 6]
"""


def _marked_processes(parent: int) -> dict[int, str]:
    """Live processes (not zombies) started by the study ``parent``: pid → command line."""
    marker = f"{study.WORKER_MARKER}={parent}".encode()
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker not in (entry / "environ").read_bytes().split(b"\0"):
                continue
            state = (entry / "stat").read_text().rsplit(")", 1)[1].split()[0]
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except (OSError, IndexError):
            continue  # ended meanwhile
        if state != "Z":
            found[int(entry.name)] = cmdline
    return found


def _start_study(tmp_path) -> subprocess.Popen:
    """A local study of six long runs on two workers, started in a session of its own."""
    spec = tmp_path / "kill.toml"
    spec.write_text(KILL_STUDY)
    command = [sys.executable, "-m", "bayesresnet", "study", str(spec), "--out"]
    process = subprocess.Popen(
        [*command, str(tmp_path / "out"), "--workers", "2", "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    deadline = time.monotonic() + 120
    runs = tmp_path / "out" / study.RUNS_FOLDER
    while time.monotonic() < deadline and process.poll() is None:
        workers = [p for p, cmd in _marked_processes(process.pid).items() if "spawn_main" in cmd]
        # Each worker makes its run's folder once started, then fits for many seconds.
        if len(workers) == 2 and runs.is_dir() and len(list(runs.iterdir())) >= 2:
            return process
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"the study's workers did not start: {process.communicate()[1].decode()}")


def _assert_all_end_within(process: subprocess.Popen, seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _marked_processes(process.pid):
        time.sleep(0.2)
    assert _marked_processes(process.pid) == {}


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_sigterm_to_a_study_ends_its_workers(tmp_path):
    # Regression: SIGTERM (timeout, batch schedulers) left the workers running the queue.
    process = _start_study(tmp_path)
    start = time.monotonic()
    process.send_signal(signal.SIGTERM)
    _, err = process.communicate(timeout=30)
    assert process.returncode == 128 + signal.SIGTERM, err.decode()
    assert "stopped by SIGTERM: the study's workers have ended" in err.decode()
    _assert_all_end_within(process, 10 - (time.monotonic() - start))
    assert (tmp_path / "out" / study.LOCK_FILE).read_text() == ""


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_sigkill_of_a_study_ends_its_workers(tmp_path):
    process = _start_study(tmp_path)
    process.kill()  # no handler runs: the workers' parent-death signal ends them
    process.communicate(timeout=30)
    _assert_all_end_within(process, 10)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc")
def test_ctrl_c_stops_a_study_within_seconds(tmp_path):
    # Regression: Ctrl-C waited for the runs in progress and then the next queued ones.
    process = _start_study(tmp_path)
    start = time.monotonic()
    os.killpg(process.pid, signal.SIGINT)  # the terminal signals the whole group
    _, err = process.communicate(timeout=30)
    assert process.returncode == 130, err.decode()
    assert time.monotonic() - start < 10
    _assert_all_end_within(process, 10 - (time.monotonic() - start))
