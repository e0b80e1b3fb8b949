"""The compile cache: its folder, its checks, and a second fit that loads its programs."""

import os
import stat

import jax
import numpy as np
import pytest
from _helpers import refit_case
from jax import monitoring

import bayesresnet as brn
from bayesresnet.app import cli
from bayesresnet.app import compile_cache as cc
from bayesresnet.app.study import worker_env
from bayesresnet.infer.core import clear_compiled

HITS = "/jax/compilation_cache/cache_hits"


MIN_TIME = "jax_persistent_cache_min_compile_time_secs"


@pytest.fixture
def off():
    """Leave JAX without this module's cache after the test, as the suite runs."""
    before = getattr(jax.config, MIN_TIME)
    yield
    cc.enable_compile_cache(None)
    jax.config.update(MIN_TIME, before)


def keep_every_program():
    """The enabled cache keeps every program, not only those that compile for longer than
    :data:`~bayesresnet.app.compile_cache.MIN_COMPILE_S`: programs near that time (0.1 s)
    are kept by one fit and not by another as the machine's load varies, which the tests
    comparing the cache's entries after two fits must not see."""
    jax.config.update(MIN_TIME, 0.0)


def test_default_cache_dir_reads_the_environment(tmp_path):
    home = {"XDG_CACHE_HOME": str(tmp_path)}
    assert cc.default_cache_dir(home) == tmp_path / "bayesresnet" / "xla"
    assert cc.default_cache_dir({**home, cc.ENV_VAR: str(tmp_path / "c")}) == tmp_path / "c"
    for off in ("off", "OFF", "0", "none", ""):
        assert cc.default_cache_dir({**home, cc.ENV_VAR: off}) is None


def test_a_new_folder_is_created_private_and_tagged(tmp_path, off):
    folder = tmp_path / "a" / "cache"
    assert cc.enable_compile_cache(folder) == folder.resolve()
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert (
        (folder / "CACHEDIR.TAG")
        .read_text()
        .startswith("Signature: 8a477f597d28d172789f06886806bc55")
    )
    assert jax.config.jax_compilation_cache_dir == str(folder.resolve())
    assert cc.enabled_cache_dir() == folder.resolve()
    # Once tagged, the folder is taken again, whatever JAX has put in it.
    (folder / "x-cache").write_bytes(b"")
    assert cc.enable_compile_cache(None) is None
    assert jax.config.jax_compilation_cache_dir is None
    assert cc.enable_compile_cache(folder) == folder.resolve()


def test_a_folder_whose_tag_another_process_is_writing_is_taken(tmp_path, off):
    (tmp_path / ".CACHEDIR.TAG.4242").write_text("Signature: 8a47")
    assert cc.enable_compile_cache(tmp_path) == tmp_path.resolve()
    assert (tmp_path / "CACHEDIR.TAG").is_file()


def test_a_folder_that_is_not_a_cache_is_refused_and_left_as_it_was(tmp_path, off):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"is not empty and has no CACHEDIR.TAG"):
        cc.enable_compile_cache(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    assert jax.config.jax_compilation_cache_dir is None
    with pytest.raises(ValueError, match=r"is a file, not a folder"):
        cc.enable_compile_cache(tmp_path / "notes.txt")


def test_a_cache_jax_was_given_by_the_user_is_kept(tmp_path, off):
    theirs = str(tmp_path / "theirs")
    jax.config.update("jax_compilation_cache_dir", theirs)
    try:
        assert cc.enable_compile_cache(tmp_path / "ours") == tmp_path / "theirs"
        assert jax.config.jax_compilation_cache_dir == theirs
        assert not (tmp_path / "ours").exists()
    finally:
        jax.config.update("jax_compilation_cache_dir", None)


def test_workers_get_the_cache_in_their_environment(tmp_path, off):
    assert "JAX_COMPILATION_CACHE_DIR" not in worker_env({})
    folder = cc.enable_compile_cache(tmp_path / "c")
    env = worker_env({})
    assert env["JAX_COMPILATION_CACHE_DIR"] == str(folder)
    assert float(env["JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS"]) == cc.MIN_COMPILE_S
    assert int(env["JAX_COMPILATION_CACHE_MAX_SIZE"]) == cc.MAX_BYTES
    assert "JAX_COMPILATION_CACHE_DIR" not in worker_env({}, cache=False)  # a Ray cluster's


def test_the_command_refuses_a_cache_folder_that_is_not_one(tmp_path, monkeypatch, capsys, off):
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.setenv(cc.ENV_VAR, str(tmp_path))
    assert cli.main(["report", str(tmp_path / "no-run")]) == cli.EXIT_USER_ERROR
    assert "has no CACHEDIR.TAG" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*had not converged:RuntimeWarning")
def test_a_second_fit_loads_its_programs_from_the_cache_and_gives_the_same_draws(tmp_path, off):
    data = brn.problems.get("sine").sample(0, 60, 10, noise=0.05)
    spec = brn.ResNetSpec(1, 1, width=4, num_layers=2)
    options = dict(method="ensemble", num_members=2, num_steps=200, max_steps=200)
    hits = []

    def listen(event, **kwargs):
        if event == HITS:
            hits.append(event)

    folder = cc.enable_compile_cache(tmp_path / "c")
    keep_every_program()
    monitoring.register_event_listener(listen)
    try:
        first = brn.fit(spec, data, **options)
        entries = sorted(p.name for p in folder.glob("*-cache"))
        assert entries, "the first fit kept no program"
        assert not hits
        clear_compiled()  # as in a new process: not the programs this one kept in memory
        second = brn.fit(spec, data, **options)
    finally:
        monitoring.unregister_event_listener(listen)
    # The second fit loaded its programs and compiled none that the cache would keep.
    assert hits
    assert sorted(p.name for p in folder.glob("*-cache")) == entries
    for name, value in first.samples.items():
        np.testing.assert_array_equal(np.asarray(second.samples[name]), np.asarray(value))
    assert os.listdir(folder)  # still there: nothing removed below the size limit


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*had not converged:RuntimeWarning")
def test_a_fit_of_other_data_of_the_same_sizes_adds_no_program_to_the_cache(tmp_path, off):
    # The ensemble's programs (Adam blocks, the L-BFGS polish, the noise re-estimate, the
    # members' constrained values) take the data and the scaler as arguments: they hold
    # no number of the data, so other data of the same shapes run the same programs.
    spec, options, first, second = refit_case()
    folder = cc.enable_compile_cache(tmp_path / "c")
    keep_every_program()
    hits = []

    def listen(event, **kwargs):
        if event == HITS:
            hits.append(event)

    brn.fit(spec, first, **options)
    entries = sorted(p.name for p in folder.glob("*-cache"))
    clear_compiled()  # as in a new process: not the programs this one kept in memory
    monitoring.register_event_listener(listen)
    try:
        brn.fit(spec, second, seed=1, **options)
    finally:
        monitoring.unregister_event_listener(listen)
    assert len(hits) >= 4  # at least the Adam block, the polish's two, the noise program
    assert sorted(p.name for p in folder.glob("*-cache")) == entries
