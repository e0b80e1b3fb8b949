"""Shared fixtures: JAX pinned to the CPU with 64-bit off, a PRNG key, fixed-seed data."""

import os

os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=1")
# The command's compile cache stays off unless a test turns it on in its own folder: the
# suite writes nothing to the user's cache, whatever their environment names
# (tests/test_compile_cache.py).
os.environ["BAYESRESNET_COMPILE_CACHE"] = "off"

import jax  # noqa: E402
import matplotlib  # noqa: E402
import pytest  # noqa: E402

matplotlib.use("Agg")


@pytest.fixture
def key():
    return jax.random.key(0)


@pytest.fixture
def rng():
    import numpy as np

    return np.random.default_rng(0)
