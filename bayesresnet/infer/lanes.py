"""Independent lanes (members, chains) run side by side on the CPU's cores.

XLA runs one call of a compiled program on one CPU core: the ensemble's members,
vmapped, advance on one core while the others wait. Two calls of the same program from
two Python threads run at once (the compiled program holds no Python lock). So a block of
``M`` independent lanes is cut into ``G`` equal groups, each run by its own thread, and
the groups' results are joined again: the same program (compiled once, for ``M/G``
lanes) and the same arithmetic per lane, ``G`` times the cores.

``G`` is the largest divisor of the number of lanes not above :data:`MAX_GROUPS` (8
members run as 4 groups of 2), whatever the machine, so that the results do not depend
on its cores; the groups run on as many threads as the cores this process may use
(``os.sched_getaffinity``), or ``$BAYESRESNET_THREADS`` where that is set (``1`` runs
them one after another; a study's worker processes set it, being one per core already).
On an accelerator, or with several devices, the lanes already run side by side and
``G = 1``.

Measured on 2 cores (the same results either way, to the last digit):

* ``method="auto"`` at 200 rows on the six built-in problems, noise-free and with 5 %
  noise (8 members, up to 9 000 Adam steps; ``benchmarks/bench_surrogates.py``, variants
  ``auto`` and ``auto+1thread`` in one run, ``benchmarks/results/lanes_N200``): the fits
  took 5.1–8.3 s against 6.9–9.6 s on one thread (the Adam phase about 1.5× faster; the
  noise re-estimate compiles beside it on the other core);
* the README's calibration (16 NUTS chains × 300 + 300 steps in 4 groups;
  ``benchmarks/bench_inverse.py --case readme --steps 300 --variants
  sequential:0.95:1,sequential:0.95:2``, ``benchmarks/results/inverse_lanes``): 11.7 s
  against 20.6 s warm;
* the README's ``bayesresnet fit models/borehole.toml`` and ``calibrate`` commands, each
  from an empty compile cache: 12.1 s and 20.3 s wall against 15.0 s and 30.4 s with
  ``BAYESRESNET_THREADS=1`` (CPU time about the same: 17.0 s and 34.3 s against 19.0 s
  and 33.7 s).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import jax
import numpy as np

__all__ = [
    "THREADS_ENV",
    "MAX_GROUPS",
    "lane_threads",
    "threads_set",
    "lane_groups",
    "num_lanes",
    "split_lanes",
    "lane_shapes",
    "join_lanes",
    "run_lanes",
]

#: Environment variable: how many threads run lanes side by side (default: the cores).
THREADS_ENV = "BAYESRESNET_THREADS"

#: The most groups the lanes of a block are cut into on the CPU: 8 members run as 4
#: groups of 2 on up to 4 cores. On 2 cores the groups' count hardly matters (a scratch
#: ``auto`` fit of noisy borehole at 200 rows: the 9 000 Adam steps took 2.6–2.7 s in 2,
#: 4 or 8 groups, 3.8 s in one).
MAX_GROUPS = 4


def lane_threads() -> int:
    """Threads that may run lanes side by side: ``$BAYESRESNET_THREADS`` or the cores this
    process may use."""
    text = os.environ.get(THREADS_ENV, "").strip()
    if not text:
        if hasattr(os, "sched_getaffinity"):
            return len(os.sched_getaffinity(0))
        return os.cpu_count() or 1
    try:
        threads = int(text)
    except ValueError:
        threads = 0
    if threads < 1:
        raise ValueError(f"${THREADS_ENV} must be a whole number ≥ 1, got {text!r}")
    return threads


@contextlib.contextmanager
def threads_set(threads: int | None):
    """``$BAYESRESNET_THREADS`` set to ``threads`` inside, as it was after (``None``:
    left as it is)."""
    saved = os.environ.get(THREADS_ENV)
    if threads is not None:
        os.environ[THREADS_ENV] = str(threads)
    try:
        yield
    finally:
        os.environ.pop(THREADS_ENV, None)
        if saved is not None:
            os.environ[THREADS_ENV] = saved


def lane_groups(num_lanes: int) -> int:
    """How many groups ``num_lanes`` lanes run in: the largest divisor of ``num_lanes``
    not above :data:`MAX_GROUPS`, on one CPU device; 1 elsewhere. It does not depend on
    the cores, so neither do the results (:func:`run_lanes` runs the groups on at most
    :func:`lane_threads` threads)."""
    if num_lanes < 2 or jax.default_backend() != "cpu" or len(jax.devices()) > 1:
        return 1
    most = min(MAX_GROUPS, num_lanes)
    return max(g for g in range(1, most + 1) if num_lanes % g == 0)


def _is_axis(value) -> bool:
    return value is None or isinstance(value, int)


def num_lanes(tree, lanes) -> int:
    """The length of the lane axis of ``tree`` (the leading axis of its leaves under a ``0``
    of the prefix ``lanes``)."""
    sizes = []
    jax.tree.map(
        lambda axis, sub: (
            sizes.extend(a.shape[0] for a in jax.tree.leaves(sub)) if axis == 0 else None
        ),
        lanes,
        tree,
        is_leaf=_is_axis,
    )
    if not sizes or len(set(sizes)) != 1:
        raise ValueError(f"the leaves marked as lanes have leading axes {sizes}, not one length")
    return sizes[0]


def _is_key(a) -> bool:
    return jax.dtypes.issubdtype(getattr(a, "dtype", None), jax.dtypes.prng_key)


def _host_map(a, fn):
    """``fn`` of ``a``'s values in NumPy, put back on the device (typed PRNG keys through
    their key data)."""
    if _is_key(a):
        return jax.random.wrap_key_data(
            jax.device_put(fn(np.asarray(jax.random.key_data(a)))), impl=jax.random.key_impl(a)
        )
    return jax.device_put(fn(np.asarray(a)))


def split_lanes(tree, lanes, groups: int) -> list:
    """``tree`` cut into ``groups`` equal parts along the lane axis.

    Args:
        tree: a pytree of arrays.
        lanes: a prefix of ``tree``: ``0`` where the leaves have a leading lane axis,
            ``None`` where they are shared by every lane (each part holds them whole).
        groups: a divisor of the number of lanes.

    The cuts are made in NumPy (on the CPU a view, no program to compile) and put back
    on the device; with ``groups=1`` the tree is returned as it is.
    """
    if groups == 1:
        return [tree]
    size = num_lanes(tree, lanes) // groups

    def part(index):
        def cut(axis, sub):
            if axis != 0:
                return sub
            return jax.tree.map(
                lambda a: _host_map(a, lambda v: v[index * size : (index + 1) * size]), sub
            )

        return jax.tree.map(cut, lanes, tree, is_leaf=_is_axis)

    return [part(i) for i in range(groups)]


def lane_shapes(tree, lanes):
    """The shapes of the part of ``tree`` that one group runs (``jax.ShapeDtypeStruct``
    for its lane leaves, the shared leaves as they are): what to compile a program for
    ahead of :func:`split_lanes`."""
    groups = lane_groups(num_lanes(tree, lanes))
    if groups == 1:
        return tree

    def shape(axis, sub):
        if axis != 0:
            return sub
        return jax.tree.map(
            lambda a: jax.ShapeDtypeStruct((a.shape[0] // groups, *a.shape[1:]), a.dtype), sub
        )

    return jax.tree.map(shape, lanes, tree, is_leaf=_is_axis)


def join_lanes(parts: list, lanes, *, device: bool = True):
    """The inverse of :func:`split_lanes`: the lane leaves concatenated (on the device, or
    as NumPy arrays with ``device=False``), the shared ones from the first part.
    ``lanes=0``: every leaf is a lane leaf."""
    if len(parts) == 1:
        return parts[0]

    def concatenate(*leaves):
        if _is_key(leaves[0]):  # typed PRNG keys stay JAX arrays
            return jax.numpy.concatenate(leaves, axis=0)
        joined = np.concatenate([np.asarray(a) for a in leaves], axis=0)
        return jax.device_put(joined) if device else joined

    def join(axis, *subs):
        return jax.tree.map(concatenate, *subs) if axis == 0 else subs[0]

    return jax.tree.map(join, lanes, *parts, is_leaf=_is_axis)


@functools.cache
def _pool(threads: int) -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=threads, thread_name_prefix="bayesresnet-lanes")


def run_lanes(program: Callable, parts: list, *args) -> list:
    """``[program(part, *args)]`` for every part, on up to :func:`lane_threads` threads at
    once, once all are done (results ready).

    The calling thread only waits (every part runs on a worker), so a Ctrl-C's handler
    runs on it at once while the groups go on, as it did while one group ran.
    """

    def one(part):
        return jax.block_until_ready(program(part, *args))

    threads = min(lane_threads(), len(parts))
    if threads == 1:
        return [one(part) for part in parts]
    return list(_pool(threads).map(one, parts))
