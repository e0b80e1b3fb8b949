"""NUTS through NumPyro's ``MCMC``, with an optional MAP start for every chain.

References:
    Hoffman, Gelman (2014), The No-U-Turn sampler. JMLR.
    Phan, Pradhan, Jankowiak (2019), Composable effects for flexible and accelerated
    probabilistic programming in NumPyro.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import MCMC, NUTS, init_to_median, init_to_sample

from bayesresnet._validate import check_bool, check_choice, check_int, check_number
from bayesresnet.infer.base import EngineResult, Timer, to_numpy
from bayesresnet.infer.ensemble import EnsembleConfig, train_members

__all__ = ["NUTSConfig", "resolve_chain_method", "run_nuts", "tree_depth"]

CHAIN_METHODS = ("auto", "parallel", "vectorized", "sequential")
INITS = ("map", "prior", "median")


@dataclass(frozen=True)
class NUTSConfig:
    """Settings of a NUTS run.

    Args:
        num_warmup: adaptation steps per chain (step size and mass matrix).
        num_samples: kept draws per chain.
        num_chains: number of chains.
        chain_method: ``"auto"`` (parallel over devices when there are enough, else
            vectorized), ``"parallel"``, ``"vectorized"`` or ``"sequential"``.
        target_accept_prob: target mean acceptance probability of warmup.
        max_tree_depth: maximum NUTS tree depth (at most ``2^depth − 1`` leapfrog steps).
        dense_mass: adapt a dense (``True``) or diagonal mass matrix.
        init: ``"map"`` (each chain starts at its own short MAP fit from a prior draw,
            so warmup does not start in the tails), ``"prior"`` (a prior draw) or
            ``"median"`` (prior medians, i.e. zero weights).
        init_steps: optimizer steps of the MAP start.
        init_learning_rate: Adam learning rate of the MAP start.
        thinning: keep every ``thinning``-th draw.
        progress_bar: show NumPyro's progress bar.
    """

    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 4
    chain_method: str = "auto"
    target_accept_prob: float = 0.8
    max_tree_depth: int = 10
    dense_mass: bool = False
    init: str = "map"
    init_steps: int = 1000
    init_learning_rate: float = 1e-2
    thinning: int = 1
    progress_bar: bool = False

    def __post_init__(self):
        check_int("num_warmup", self.num_warmup, minimum=0)
        check_int("num_samples", self.num_samples, minimum=1)
        check_int("num_chains", self.num_chains, minimum=1)
        check_choice("chain_method", self.chain_method, CHAIN_METHODS)
        check_number("target_accept_prob", self.target_accept_prob, low=0.0, high=1.0)
        check_int("max_tree_depth", self.max_tree_depth, minimum=1)
        check_bool("dense_mass", self.dense_mass)
        check_choice("init", self.init, INITS)
        check_int("init_steps", self.init_steps, minimum=1)
        check_number("init_learning_rate", self.init_learning_rate, low=0.0)
        check_int("thinning", self.thinning, minimum=1)
        check_bool("progress_bar", self.progress_bar)


def resolve_chain_method(requested: str, num_chains: int, num_devices: int | None = None) -> str:
    """The chain method to use; warns (naming the fix) when the request cannot be met."""
    num_devices = jax.local_device_count() if num_devices is None else num_devices
    if num_chains == 1:
        return "sequential"
    if requested == "auto":
        return "parallel" if num_devices >= num_chains else "vectorized"
    if requested == "parallel" and num_devices < num_chains:
        warnings.warn(
            f"chain_method='parallel' needs {num_chains} devices but only {num_devices} "
            f"is available; running the chains vectorized instead. On a CPU, call "
            f"`numpyro.set_host_device_count({num_chains})` before JAX starts (or set "
            f"XLA_FLAGS=--xla_force_host_platform_device_count={num_chains}).",
            UserWarning,
            stacklevel=3,
        )
        return "vectorized"
    return requested


def tree_depth(num_steps) -> np.ndarray:
    """NUTS tree depth from the number of leapfrog steps: ``floor(log2 n) + 1``."""
    n = np.maximum(np.asarray(num_steps), 1)
    return (np.floor(np.log2(n)) + 1).astype(np.int64)


EXTRA_FIELDS = (
    "diverging",
    "num_steps",
    "accept_prob",
    "energy",
    "potential_energy",
    "adapt_state.step_size",
)


def run_nuts(key, model, x, y, config: NUTSConfig) -> EngineResult:
    """Run NUTS and return draws ``[chains, draws, ...]`` with per-draw statistics."""
    timer = Timer()
    chain_method = resolve_chain_method(config.chain_method, config.num_chains)
    x, y = jnp.asarray(x), jnp.asarray(y)
    k_init, k_run = jax.random.split(key)
    init_params = None
    init_strategy = init_to_median if config.init == "median" else init_to_sample
    init_info = {}
    if config.init == "map":
        with timer("init_s"):
            members = train_members(
                k_init,
                model,
                x,
                y,
                EnsembleConfig(
                    num_members=config.num_chains,
                    num_steps=config.init_steps,
                    learning_rate=config.init_learning_rate,
                ),
            )
        init_params = members.params
        if config.num_chains == 1:
            init_params = jax.tree_util.tree_map(lambda a: a[0], init_params)
        init_info["init_final_loss"] = np.asarray(members.losses[:, -1]).tolist()
    kernel = NUTS(
        model,
        target_accept_prob=config.target_accept_prob,
        max_tree_depth=config.max_tree_depth,
        dense_mass=config.dense_mass,
        init_strategy=init_strategy,
    )
    mcmc = MCMC(
        kernel,
        num_warmup=config.num_warmup,
        num_samples=config.num_samples,
        num_chains=config.num_chains,
        chain_method=chain_method,
        thinning=config.thinning,
        progress_bar=config.progress_bar,
    )
    k_warm, k_sample = jax.random.split(k_run)
    # Warm-up and sampling are timed apart; each includes its own compilation.
    if config.num_warmup > 0:
        with timer("warmup_s"):
            mcmc.warmup(k_warm, x, y, init_params=init_params, extra_fields=EXTRA_FIELDS)
            jax.block_until_ready(mcmc.post_warmup_state)
        init_params = None
    with timer("sampling_s"):
        mcmc.run(k_sample, x, y, init_params=init_params, extra_fields=EXTRA_FIELDS)
        samples = to_numpy(mcmc.get_samples(group_by_chain=True))
    extra = to_numpy(mcmc.get_extra_fields(group_by_chain=True))
    sample_stats = {
        "diverging": extra["diverging"].astype(bool),
        "n_steps": extra["num_steps"].astype(np.int64),
        "tree_depth": tree_depth(extra["num_steps"]),
        "acceptance_rate": extra["accept_prob"],
        "energy": extra["energy"],
        "lp": -extra["potential_energy"],
        "step_size": extra["adapt_state.step_size"],
    }
    settings = asdict(config) | {"chain_method_used": chain_method}
    extra_out = {
        "num_divergences": int(sample_stats["diverging"].sum()),
        "num_gradient_evaluations": int(sample_stats["n_steps"].sum()),
        **init_info,
    }
    return EngineResult(samples, sample_stats, settings, dict(timer.times), extra_out)
