"""NUTS through NumPyro's functional kernel, every chain in one program, started at MAP fits.

:func:`nuts_kernel` is NumPyro's ``hmc(..., algo="NUTS")`` pair ``(init_kernel,
sample_kernel)`` as a :class:`~bayesresnet.infer.base.SamplingAlgorithm` over a log
density; :func:`run_nuts` starts it at MAP fits and drives it with
:func:`~bayesresnet.infer.core.run_chains`; :data:`ENGINE` holds what the package knows of
NUTS (its description, gradient count and checks).

References:
    Hoffman, Gelman (2014), The No-U-Turn sampler. JMLR.
    Phan, Pradhan, Jankowiak (2019), Composable effects for flexible and accelerated
    probabilistic programming in NumPyro.
"""

from __future__ import annotations

import contextlib
import warnings
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import init_to_median, init_to_sample
from numpyro.infer.hmc import hmc
from numpyro.infer.util import initialize_model

from bayesresnet._validate import (
    check_auto_bool,
    check_bool,
    check_choice,
    check_int,
    check_number,
)
from bayesresnet.infer.base import (
    Check,
    Engine,
    EngineResult,
    Estimators,
    SamplingAlgorithm,
    Timer,
    progress_bar,
    show_progress,
    to_numpy,
)
from bayesresnet.infer.core import (
    check_polish,
    constrain_draws,
    flatten_members,
    make_log_density,
    map_start,
    run_chains,
    sampler_gradients,
)

__all__ = [
    "NUTSConfig",
    "DENSE_MASS_MAX",
    "NUTSInfo",
    "nuts_kernel",
    "resolve_chain_method",
    "run_nuts",
    "tree_depth",
    "tree_depth_saturation",
    "TREE_DEPTH_SATURATION_MAX",
    "EBFMI_MIN",
    "ENGINE",
]

CHAIN_METHODS = ("auto", "parallel", "vectorized", "sequential")
INITS = ("map", "prior", "median")
INIT_MASSES = ("identity", "spread")
#: ``dense_mass="auto"`` adapts a dense mass matrix up to this many parameters.
DENSE_MASS_MAX = 2000


@dataclass(frozen=True)
class NUTSConfig:
    """Settings of a NUTS run.

    Args:
        num_warmup: adaptation steps per chain (step size and mass matrix).
        num_samples: kept draws per chain.
        num_chains: number of chains.
        chain_method: ``"auto"`` or ``"vectorized"`` (all chains in one vmapped
            program, sharded over the devices when there are several), ``"parallel"``
            (the same, and a warning when there are fewer devices than chains) or
            ``"sequential"`` (one chain after another).
        target_accept_prob: target mean acceptance probability of warmup.
        max_tree_depth: maximum NUTS tree depth (at most ``2^depth − 1`` leapfrog steps).
            12 (NumPyro's default is 10) so that trajectories end at their U-turn on
            harder posteriors instead of being cut: on borehole (about 1 250 parameters)
            half the draws need 1 023 steps and a quarter 2 047 or more, and a cap of 10
            cut 99.8 % of them (``benchmarks/nuts_borehole_probe.py``). On easier
            posteriors the cap is never reached and costs nothing.
        dense_mass: adapt a dense (``True``) or diagonal (``False``, the default) mass
            matrix; ``"auto"`` is dense up to :data:`DENSE_MASS_MAX` parameters. On the
            default problem (313 parameters) a dense matrix made mixing worse, not
            better (measured by ``benchmarks/tune_nuts.py``), so it is not the default.
        init: ``"map"`` (each chain starts at a MAP fit from a prior draw, so warmup
            does not start in the tails), ``"prior"`` (a prior draw) or ``"median"``
            (prior medians, i.e. zero weights).
        init_members: MAP fits trained (one vmapped program) for ``init="map"``; the
            chains start at the ``num_chains`` with the lowest loss. ``None``: as many
            as chains.
        init_mass: initial inverse mass matrix of warmup: ``"identity"``, or
            ``"spread"`` (the variance of the MAP fits, per coordinate; needs
            ``init="map"`` and at least 3 MAP fits).
        init_steps: optimizer steps of the MAP start.
        init_learning_rate: Adam learning rate of the MAP start.
        init_polish: ``"lbfgs"``: each MAP fit is finished by full-batch L-BFGS
            (:func:`~bayesresnet.infer.core.polish_members`, stopping on
            :class:`~bayesresnet.infer.core.EnsembleConfig`'s tolerances); ``"none"``:
            Adam only.
        init_polish_steps: at most this many L-BFGS iterations per MAP fit.
        thinning: keep every ``thinning``-th draw.
        marginalize_output: sample with the output layer integrated out and draw it
            afterwards from its exact conditional (:mod:`bayesresnet.marginal`; the same
            posterior, far better geometry: on the default problem it ended the tree-depth
            saturation). ``"auto"``: whenever the likelihood is Normal.
        noncentred: sample the hidden coefficients (and, with ``ard=True``, the input
            weights) in non-centred form (:func:`bayesresnet.model.noncentred`; the same
            posterior). ``"auto"``: whenever ``learn_basis_scale=True`` or ``ard=True``,
            the only cases in which it changes the geometry.
        progress_bar: show progress (also on within :func:`~bayesresnet.infer.show_progress`).
    """

    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 4
    chain_method: str = "auto"
    target_accept_prob: float = 0.8
    max_tree_depth: int = 12
    dense_mass: bool | str = False
    init: str = "map"
    init_members: int | None = None
    init_mass: str = "identity"
    init_steps: int = 1000
    init_learning_rate: float = 1e-2
    init_polish: str = "none"
    init_polish_steps: int = 1000
    thinning: int = 1
    marginalize_output: bool | str = "auto"
    noncentred: bool | str = False
    progress_bar: bool = False

    def __post_init__(self):
        check_int("num_warmup", self.num_warmup, minimum=0)
        check_auto_bool("noncentred", self.noncentred)
        check_int("num_samples", self.num_samples, minimum=1)
        check_int("num_chains", self.num_chains, minimum=1)
        check_auto_bool("marginalize_output", self.marginalize_output)
        check_choice("chain_method", self.chain_method, CHAIN_METHODS)
        check_number("target_accept_prob", self.target_accept_prob, low=0.0, high=1.0)
        check_int("max_tree_depth", self.max_tree_depth, minimum=1)
        check_auto_bool("dense_mass", self.dense_mass)
        check_choice("init", self.init, INITS)
        if self.init_members is not None:
            check_int("init_members", self.init_members, minimum=self.num_chains)
        check_choice("init_mass", self.init_mass, INIT_MASSES)
        if self.init_mass == "spread" and self.init != "map":
            raise ValueError(
                f"`init_mass='spread'` needs init='map' (the spread of the MAP fits); "
                f"got init={self.init!r}."
            )
        if self.init_mass == "spread" and (self.init_members or self.num_chains) < 3:
            raise ValueError(
                "`init_mass='spread'` needs at least 3 MAP fits: raise `init_members`."
            )
        check_int("init_steps", self.init_steps, minimum=1)
        check_number("init_learning_rate", self.init_learning_rate, low=0.0)
        check_polish(self.init_polish, self.init_polish_steps, prefix="init_")
        check_int("thinning", self.thinning, minimum=1)
        check_bool("progress_bar", self.progress_bar)

    @classmethod
    def baseline(cls, **changes) -> NUTSConfig:
        """The settings before the scaling work (diagonal mass, identity start, the full
        model, tree depth ≤ 10), named
        so that benchmarks keep comparing against them when the defaults change."""
        baseline = {
            "dense_mass": False,
            "init_mass": "identity",
            "marginalize_output": False,
            "max_tree_depth": 10,
        }
        return cls(**(baseline | changes))


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


def _regularized_variance(flat) -> np.ndarray:
    """Per-coordinate variance of ``flat [M, D]``, shrunk towards 1e-3 as NumPyro does."""
    m = flat.shape[0]
    var = np.var(np.asarray(flat, dtype=np.float64), axis=0, ddof=1)
    return (m / (m + 5.0)) * var + 1e-3 * (5.0 / (m + 5.0))


def _start(key, model, x, y, config: NUTSConfig, timer: Timer):
    """Initial unconstrained values ``[C, ...]``, initial inverse mass, and what to record."""
    c = config.num_chains
    if config.init == "map":
        start = map_start(
            key,
            model,
            x,
            y,
            num_starts=c,
            num_members=config.init_members,
            num_steps=config.init_steps,
            learning_rate=config.init_learning_rate,
            polish=config.init_polish,
            polish_steps=config.init_polish_steps,
            timer=timer,
        )
        inverse_mass = None
        if config.init_mass == "spread":
            inverse_mass = _regularized_variance(start.spread)
        info = {"init_final_loss": start.final_loss.tolist(), "init_members": start.num_members}
        if config.init_polish != "none":
            info["init_polish_evaluations"] = start.polish_evaluations
        return start.params, inverse_mass, info
    strategy = init_to_median if config.init == "median" else init_to_sample
    starts = [
        initialize_model(k, model, init_strategy=strategy, model_args=(x, y)).param_info.z
        for k in jax.random.split(key, c)
    ]
    return jax.tree_util.tree_map(lambda *a: jnp.stack(a), *starts), None, {}


class NUTSInfo(NamedTuple):
    """What one NUTS transition did."""

    diverging: jax.Array
    num_steps: jax.Array  # leapfrog steps (gradient evaluations)
    accept_prob: jax.Array
    energy: jax.Array


def nuts_kernel(
    log_density,
    *,
    num_warmup: int,
    inverse_mass_matrix=None,
    dense_mass: bool = False,
    target_accept_prob: float = 0.8,
    max_tree_depth: int = 10,
) -> SamplingAlgorithm:
    """NumPyro's functional NUTS (``numpyro.infer.hmc.hmc``) as a kernel over a log density.

    The state is NumPyro's ``HMCState`` (position ``z``); warm-up adaptation (step size
    by dual averaging, mass matrix by Welford windows) runs inside ``step`` for the first
    ``num_warmup`` transitions, as NumPyro's ``MCMC`` does.
    """
    init_kernel, sample_kernel = hmc(potential_fn=lambda u: -log_density(u), algo="NUTS")

    def init(key, position):
        return init_kernel(
            position,
            num_warmup,
            inverse_mass_matrix=None
            if inverse_mass_matrix is None
            else jnp.asarray(inverse_mass_matrix),
            dense_mass=dense_mass,
            target_accept_prob=target_accept_prob,
            max_tree_depth=max_tree_depth,
            rng_key=key,
        )

    def step(key, state):
        state = sample_kernel(state._replace(rng_key=key))
        return state, NUTSInfo(state.diverging, state.num_steps, state.accept_prob, state.energy)

    return SamplingAlgorithm(init, step)


def _collect_warmup(state, info):
    return info.num_steps


def _collect_draw(state, info):
    return {
        "z": state.z,
        "diverging": info.diverging,
        "num_steps": info.num_steps,
        "accept_prob": info.accept_prob,
        "energy": info.energy,
        "potential_energy": state.potential_energy,
        "step_size": state.adapt_state.step_size,
    }


def _sample(algorithm, u0, key, config: NUTSConfig, chain_method: str, timer: Timer):
    """Warm-up and sampling of every chain, all in one program unless ``"sequential"``.

    Returns:
        ``(warmup_steps, draws)``: leapfrog steps of every warm-up transition
        ``[C, num_warmup]`` (or ``None``) and the collected draws ``{name: [C, S, ...]}``.
    """
    k_start, k_warm, k_sample = jax.random.split(key, 3)
    c = config.num_chains
    groups = [np.arange(c)] if chain_method != "sequential" else [np.array([i]) for i in range(c)]
    progress = show_progress("auto") if config.progress_bar else contextlib.nullcontext()
    total = c * (config.num_warmup + config.num_samples * config.thinning)
    warm_steps, draws = [], []
    with progress, progress_bar(total, "NUTS") as bar:
        for idx in groups:
            u_g = jax.tree_util.tree_map(lambda a, idx=idx: a[idx], u0)
            keys_start = jax.random.split(jax.random.fold_in(k_start, int(idx[0])), len(idx))
            states = jax.jit(jax.vmap(algorithm.init))(keys_start, u_g)
            # Warm-up and sampling are timed apart; each includes its compilation.
            runs = [("warmup_s", k_warm, config.num_warmup, _collect_warmup, 1)]
            runs.append(
                ("sampling_s", k_sample, config.num_samples, _collect_draw, config.thinning)
            )
            for label, k, num, collect, thinning in runs:
                if num == 0:
                    continue
                keys = jax.random.split(jax.random.fold_in(k, int(idx[0])), len(idx))
                states, out = run_chains(
                    algorithm.step,
                    states,
                    keys,
                    num,
                    collect=collect,
                    thinning=thinning,
                    progress=bar,
                    num_blocks=10,
                    timer=timer,
                    label=label,
                )
                (warm_steps if label == "warmup_s" else draws).append(to_numpy(out))
    concat = lambda parts: jax.tree_util.tree_map(lambda *a: np.concatenate(a), *parts)  # noqa: E731
    return (concat(warm_steps) if warm_steps else None), concat(draws)


def run_nuts(key, model, x, y, config: NUTSConfig) -> EngineResult:
    """Run NUTS and return draws ``[chains, draws, ...]`` with per-draw statistics.

    Every chain starts at a MAP fit (:func:`~bayesresnet.infer.core.map_start`, by
    default), and :func:`nuts_kernel` runs every chain in one vmapped program through
    :func:`~bayesresnet.infer.core.run_chains`: warmup (step size by dual averaging, mass
    matrix by Welford windows) and sampling, each chain with its own adaptation.
    """
    timer = Timer()
    chain_method = resolve_chain_method(config.chain_method, config.num_chains)
    x, y = jnp.asarray(x), jnp.asarray(y)
    k_init, k_run = jax.random.split(key)
    u0, inverse_mass, init_info = _start(k_init, model, x, y, config, timer)
    num_latent = int(flatten_members(u0)[0].shape[1])
    dense = num_latent <= DENSE_MASS_MAX if config.dense_mass == "auto" else config.dense_mass
    if inverse_mass is not None and dense:
        inverse_mass = np.diag(inverse_mass)
    algorithm = nuts_kernel(
        make_log_density(model, x, y),
        num_warmup=config.num_warmup,
        inverse_mass_matrix=inverse_mass,
        dense_mass=dense,
        target_accept_prob=config.target_accept_prob,
        max_tree_depth=config.max_tree_depth,
    )
    warm_steps, out = _sample(algorithm, u0, k_run, config, chain_method, timer)
    with timer("sampling_s"):
        samples = constrain_draws(model, x, y, out["z"])
    sample_stats = {
        "diverging": out["diverging"].astype(bool),
        "n_steps": out["num_steps"].astype(np.int64),
        "tree_depth": tree_depth(out["num_steps"]),
        "acceptance_rate": out["accept_prob"],
        "energy": out["energy"],
        "lp": -out["potential_energy"],
        "step_size": out["step_size"],
    }
    settings = asdict(config) | {
        "chain_method_used": chain_method,
        "dense_mass_used": bool(dense),
        "num_devices": jax.device_count(),
    }
    extra_out = {
        "num_divergences": int(sample_stats["diverging"].sum()),
        "num_gradient_evaluations": int(sample_stats["n_steps"].sum()),
        "num_warmup_gradient_evaluations": 0 if warm_steps is None else int(warm_steps.sum()),
        **init_info,
    }
    return EngineResult(samples, sample_stats, settings, dict(timer.times), extra_out)


# ------------------------------------------------------------------ what NUTS knows of itself
#: Draws at the maximum tree depth above this share warn (trajectories cut short).
TREE_DEPTH_SATURATION_MAX = 0.05
#: E-BFMI below this in any chain fails (Betancourt 2016).
EBFMI_MIN = 0.3


def tree_depth_saturation(post) -> float:
    """The share of a NUTS run's draws whose tree reached the run's ``max_tree_depth``
    (posteriors saved before the setting was recorded ran NumPyro's default, 10)."""
    max_depth = post.settings.get("max_tree_depth", 10)
    return float(np.mean(np.asarray(post.sample_stats["tree_depth"]) >= max_depth))


def describe(post) -> str:
    """One line on how a NUTS posterior was made."""
    s = post.settings
    return (
        f"NUTS, {s['num_chains']} chains × {s['num_samples']} draws after "
        f"{s['num_warmup']} warm-up ({s.get('chain_method_used')}), target acceptance "
        f"{s['target_accept_prob']}, max tree depth {s['max_tree_depth']}, init {s['init']}"
    )


def checks(post, estimators: Estimators) -> list[Check]:
    """Divergences (none), tree-depth saturation (< 5 % of draws) and E-BFMI (≥ 0.3)."""
    stats = post.sample_stats
    num_div = int(np.sum(stats["diverging"]))
    max_depth = post.settings.get("max_tree_depth", 10)
    saturated = tree_depth_saturation(post)
    shallow = saturated < TREE_DEPTH_SATURATION_MAX
    ebfmi = estimators.e_bfmi(stats["energy"])
    mixing = bool(np.all(ebfmi >= EBFMI_MIN))
    return [
        Check(
            "divergences",
            "pass" if num_div == 0 else "fail",
            f"{num_div} of {stats['diverging'].size}",
            "0",
            ""
            if num_div == 0
            else "raise target_accept_prob (e.g. 0.95), shrink the prior scales, or use "
            "init='map'; divergences mean the sampler missed part of the posterior",
        ),
        Check(
            "tree-depth saturation",
            "pass" if shallow else "warn",
            f"{100 * saturated:.1f}% at depth {max_depth}",
            f"< {100 * TREE_DEPTH_SATURATION_MAX:.0f}% of draws",
            ""
            if shallow
            else "trajectories are cut short: raise max_tree_depth, or use "
            "dense_mass=True for correlated posteriors",
        ),
        Check(
            "E-BFMI",
            "pass" if mixing else "fail",
            "min " + f"{np.min(ebfmi):.2f}",
            f"≥ {EBFMI_MIN} per chain",
            ""
            if mixing
            else "momentum resampling explores the energy poorly (heavy tails "
            "or funnels): reparameterize, or shrink the prior on the noise scale",
        ),
    ]


ENGINE = Engine(
    config=NUTSConfig,
    run=run_nuts,
    describe=describe,
    gradients=sampler_gradients,
    chains=True,
    checks=checks,
)
