"""The compilation cache of the application's runs: XLA programs kept on disk between runs.

A new process compiles its programs (the Adam block, the L-BFGS polish, the noise
re-estimate, the prediction) afresh: one process keeps what it compiled
(:func:`~bayesresnet.infer.core.compile_lowered`), but no more. JAX's persistent
compilation cache (``jax_compilation_cache_dir``) keeps each compiled program on disk,
keyed by the program itself, so a later run of the same program (the same problem size,
architecture and method) loads it instead of compiling it. The numbers are the same: it
is the same program. Measured on 2 CPU cores (borehole, ``method="auto"``, seed 0; a new
process each time, the cache cold then warm): at 2 000 rows with 5 % noise the fit took
27.8 s cold and 17.3 s warm, its first prediction 1.4 s and 0.08 s; at 200 rows 12.2 s
and 9.2 s.

A program that closes over the data holds them as constants, and is another program for
other data. The deep ensemble's programs (the Adam blocks, the L-BFGS polish, the noise
re-estimate) take the data and the scaler as arguments
(:func:`~bayesresnet.infer.core.program_data`), so a run on other data of the same sizes
(another seed of a study's grid, a new batch of simulator runs) finds them too: borehole
with 5 % noise, ``method="auto"``, a new process on a cache that one fit of another draw
had filled, took 17.4 s at 2 000 rows (27.2 s when the programs held the data; 30.1 s
cold) and 9.5 s at 200 rows (11.6 s; 12.9 s cold). The samplers' programs (NUTS, MCLMC)
still hold theirs.

The ``bayesresnet`` command and its study workers (local, or Ray started on this
machine; not a Ray cluster's, whose machines may lack the folder) use it by default
(:func:`enable_compile_cache` at start, :func:`compile_cache_env` for the workers), in
:func:`default_cache_dir`. Library users turn it on with
``bayesresnet.app.compile_cache.enable_compile_cache()``. The environment variable
``BAYESRESNET_COMPILE_CACHE`` names another folder, or turns it off (``off``). A cache
that JAX was already given (``JAX_COMPILATION_CACHE_DIR``, ``jax.config``) is left as it
is.

The folder holds only the cache: it is created with a ``CACHEDIR.TAG``
(https://bford.info/cachedir/, so that backup tools skip it), an existing folder is used
only if it is empty or carries that tag, and beyond :data:`MAX_BYTES` JAX removes the
least recently used of its own entries (``*-cache`` files) from it. Anyone who can write
to the folder can make a run execute their code (JAX's warning): keep it private, as the
default one is (created with mode 0700).
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "ENV_VAR",
    "MAX_BYTES",
    "MIN_COMPILE_S",
    "compile_cache_env",
    "default_cache_dir",
    "enable_compile_cache",
    "enabled_cache_dir",
]

#: Environment variable naming the cache folder, or ``off`` (also ``0``, ``none``, empty).
ENV_VAR = "BAYESRESNET_COMPILE_CACHE"
_OFF = ("off", "0", "none", "false", "")

#: Largest size of the cache in bytes; beyond it the least recently used entries go.
MAX_BYTES = 2**30

#: Programs that compile faster than this many seconds are not kept (JAX's default is
#: 1 s, which would leave out the prior draws and the predictions, 0.4-0.6 s each).
MIN_COMPILE_S = 0.1

_TAG = "CACHEDIR.TAG"
_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
_TAG_TEXT = (
    f"{_SIGNATURE}\n"
    "# This file is a cache directory tag created by bayesresnet (compiled XLA programs).\n"
    "# For information about cache directory tags see https://bford.info/cachedir/\n"
)

# The folder this module gave JAX, so that a second call with the same folder is free and
# one with another folder (or a user's own setting) is told apart.
_enabled: Path | None = None


def default_cache_dir(environ=None) -> Path | None:
    """The cache folder: ``$BAYESRESNET_COMPILE_CACHE`` if set (``None`` where it says
    ``off``), else ``$XDG_CACHE_HOME/bayesresnet/xla`` (``~/.cache/bayesresnet/xla``)."""
    environ = os.environ if environ is None else environ
    value = environ.get(ENV_VAR)
    if value is not None:
        return None if value.strip().lower() in _OFF else Path(value).expanduser()
    root = environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "bayesresnet" / "xla"


def _settings(directory: Path, max_bytes: int) -> dict[str, object]:
    """JAX's settings of a cache in ``directory``, by their ``jax.config`` names."""
    return {
        "jax_compilation_cache_dir": str(directory),
        "jax_persistent_cache_min_compile_time_secs": MIN_COMPILE_S,
        "jax_persistent_cache_min_entry_size_bytes": -1,
        "jax_compilation_cache_max_size": max_bytes,
    }


def _prepare(directory: Path) -> Path:
    """Create ``directory`` (mode 0700) with its tag, or check that an existing one is a
    cache: empty or tagged. Nothing that was there is touched."""
    directory = directory.expanduser().resolve()
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"the compile cache {str(directory)!r} is a file, not a folder.")
    names = {p.name for p in directory.iterdir()} if directory.is_dir() else set()
    # A folder that holds only the tag another process is writing now is a cache too.
    if names and not all(n.startswith(f".{_TAG}.") for n in names):
        tag = directory / _TAG
        if not (tag.is_file() and tag.read_text(errors="replace").startswith(_SIGNATURE)):
            raise ValueError(
                f"the compile cache folder {str(directory)!r} is not empty and has no "
                f"{_TAG} (it is not a cache): name a new or empty folder in {ENV_VAR}, "
                f"or set {ENV_VAR}=off."
            )
        return directory
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    tag = directory / _TAG
    temporary = directory / f".{_TAG}.{os.getpid()}"
    temporary.write_text(_TAG_TEXT)
    temporary.replace(tag)
    return directory


def enable_compile_cache(directory=..., *, max_bytes: int = MAX_BYTES) -> Path | None:
    """Keep this process's compiled programs in ``directory`` and load them from it.

    Args:
        directory: the cache folder; default :func:`default_cache_dir`; ``None``: off.
        max_bytes: largest size of the cache (:data:`MAX_BYTES`).

    Returns:
        The folder in use, or ``None`` where the cache is off. Where JAX was given a cache
        folder before (``JAX_COMPILATION_CACHE_DIR`` or ``jax.config``), that one is kept
        and returned.

    Raises:
        ValueError: ``directory`` exists and is not empty, and is not a cache (no
            ``CACHEDIR.TAG``), or is a file.
    """
    global _enabled
    import jax

    target = default_cache_dir() if directory is ... else directory
    current = jax.config.jax_compilation_cache_dir
    if current and (_enabled is None or Path(current) != _enabled):
        return Path(current)  # the user's own cache
    if target is None:
        if _enabled is not None:
            jax.config.update("jax_compilation_cache_dir", None)
            _reset()
            _enabled = None
        return None
    path = _prepare(Path(target))
    if path != _enabled:
        for name, value in _settings(path, max_bytes).items():
            jax.config.update(name, value)
        _reset()
        _enabled = path
    return path


def _reset() -> None:
    # JAX opens its cache at the first compilation after a folder is set; a process that
    # compiled with another folder (or none) must close that one first.
    from jax.experimental.compilation_cache import compilation_cache

    compilation_cache.reset_cache()


def enabled_cache_dir() -> Path | None:
    """The folder :func:`enable_compile_cache` gave JAX in this process (``None``: none)."""
    return _enabled


def compile_cache_env(directory: Path | None, *, max_bytes: int = MAX_BYTES) -> dict[str, str]:
    """Environment variables that give a new process (a study's worker) the same cache
    (``{}`` for ``None``): JAX reads its settings from ``JAX_*`` variables at import."""
    if directory is None:
        return {}
    return {name.upper(): str(value) for name, value in _settings(directory, max_bytes).items()}
