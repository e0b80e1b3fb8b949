"""Microcanonical Langevin Monte Carlo (BlackJAX), one chain per deep-ensemble member.

The microcanonical Langevin ensemble (MILE; Sommer et al. 2025): train ``C`` MAP fits as
one vmapped program (:func:`~bayesresnet.infer.core.map_start`), start one MCLMC
chain at each, tune each chain's step size, momentum decoherence length ``L`` and
diagonal preconditioner with BlackJAX's tuner (its step size then checked against the
energy-error target: :func:`energy_checked_step_size`), then sample all chains in one compiled
program (:func:`~bayesresnet.infer.core.run_chains`: vmapped, sharded over devices).
The ensemble puts the chains in the posterior's modes at once, so no gradient is spent
on burn-in from the prior; MCLMC's isokinetic dynamics then explores each mode at two
gradient evaluations per step, with no tree to build.

Variants:

* ``"unadjusted"`` (default, as in MILE): no accept/reject; the bias is controlled by
  the tuned energy-error variance per dimension (``desired_energy_var``).
* ``"adjusted"``: Metropolis-adjusted MCLMC with random trajectory lengths
  (``blackjax.adjusted_mclmc_dynamic``), asymptotically exact; the step size is tuned to
  ``target_accept_prob``.

References:
    Robnik, De Luca, Silverstein, Seljak (2023), Microcanonical Hamiltonian Monte
    Carlo. JMLR.
    Robnik, Seljak (2024), Fluctuation without dissipation: microcanonical Langevin
    Monte Carlo. AABI.
    Sommer, Robnik, Nowak, Kröger, Seljak, Rügamer (2025), Microcanonical Langevin
    ensembles: advancing the sampling of Bayesian neural networks. ICLR.
"""

from __future__ import annotations

import contextlib
import warnings
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from blackjax.adaptation.adjusted_mclmc_adaptation import adjusted_mclmc_find_L_and_step_size
from blackjax.adaptation.mclmc_adaptation import MCLMCAdaptationState, mclmc_find_L_and_step_size
from blackjax.mcmc import adjusted_mclmc_dynamic, mclmc

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
    "MCLMCConfig",
    "VARIANTS",
    "MCLMCChain",
    "MCLMCInfo",
    "MCLMCAlgorithm",
    "mclmc_kernel",
    "run_mclmc",
    "MCLMC_ENERGY_VAR_FACTOR",
    "ENGINE",
]

VARIANTS = ("unadjusted", "adjusted")
#: Gradient evaluations per integrator step of BlackJAX's default isokinetic McLachlan
#: (minimal-norm) integrator.
GRADIENTS_PER_STEP = 2


@dataclass(frozen=True)
class MCLMCConfig:
    """Settings of an ensemble-started MCLMC run.

    Args:
        num_chains: chains, one per MAP fit of the starting ensemble.
        num_warmup: tuning steps per chain (step size, ``L`` and the diagonal
            preconditioner; BlackJAX's three-stage tuner).
        num_samples: kept draws per chain.
        thinning: sampler steps per kept draw (MCLMC steps are cheap and strongly
            correlated; the default keeps every 10th).
        variant: ``"unadjusted"`` or ``"adjusted"`` (Metropolis-adjusted).
        step_size: fixed step size instead of the tuned one (``None``: tuned).
        L: fixed momentum decoherence length instead of the tuned one (``None``: tuned).
        desired_energy_var: target energy-error variance per dimension of the
            unadjusted tuner (smaller: smaller steps, less bias). The last
            :data:`ENERGY_CHECK_SHARE` of ``num_warmup`` checks the tuned step size
            against it and shrinks it where the measured variance is above
            :data:`MCLMC_ENERGY_VAR_FACTOR` times it (:func:`energy_checked_step_size`).
        target_accept_prob: target acceptance rate of the adjusted variant's tuner.
        diagonal_preconditioning: tune a diagonal preconditioner.
        init_steps: Adam steps of each MAP fit.
        init_learning_rate: peak Adam learning rate of the MAP fits.
        init_polish: ``"lbfgs"``: each MAP fit is finished by full-batch L-BFGS
            (:func:`~bayesresnet.infer.core.polish_members`, stopping on
            :class:`~bayesresnet.infer.core.EnsembleConfig`'s tolerances); ``"none"``:
            Adam only.
        init_polish_steps: at most this many L-BFGS iterations per MAP fit.
        marginalize_output: sample with the output layer integrated out and draw it
            afterwards from its exact conditional (:mod:`bayesresnet.marginal`).
            ``"auto"``: whenever the likelihood is Normal.
        noncentred: sample the hidden coefficients (and, with ``ard=True``, the input
            weights) in non-centred form (:func:`bayesresnet.model.noncentred`; the same
            posterior). ``"auto"``: whenever ``learn_basis_scale=True`` or ``ard=True``.
        progress_bar: show progress (also on within :func:`~bayesresnet.infer.show_progress`).
    """

    num_chains: int = 8
    num_warmup: int = 2000
    num_samples: int = 200
    thinning: int = 10
    variant: str = "unadjusted"
    step_size: float | None = None
    L: float | None = None
    desired_energy_var: float = 5e-4
    target_accept_prob: float = 0.9
    diagonal_preconditioning: bool = True
    init_steps: int = 2000
    init_learning_rate: float = 1e-2
    init_polish: str = "none"
    init_polish_steps: int = 1000
    marginalize_output: bool | str = "auto"
    noncentred: bool | str = False
    progress_bar: bool = False

    def __post_init__(self):
        check_int("num_chains", self.num_chains, minimum=1)
        check_auto_bool("noncentred", self.noncentred)
        check_auto_bool("marginalize_output", self.marginalize_output)
        check_int("num_warmup", self.num_warmup, minimum=0)
        check_int("num_samples", self.num_samples, minimum=1)
        check_int("thinning", self.thinning, minimum=1)
        check_choice("variant", self.variant, VARIANTS)
        if self.step_size is not None:
            check_number("step_size", self.step_size, low=0.0)
        if self.L is not None:
            check_number("L", self.L, low=0.0)
        if self.num_warmup < 20 and (self.step_size is None or self.L is None):
            raise ValueError(
                f"`num_warmup` must be ≥ 20 to tune the step size and L; got "
                f"{self.num_warmup}. Give both `step_size` and `L` to skip tuning."
            )
        check_number("desired_energy_var", self.desired_energy_var, low=0.0)
        check_number("target_accept_prob", self.target_accept_prob, low=0.0, high=1.0)
        check_bool("diagonal_preconditioning", self.diagonal_preconditioning)
        check_int("init_steps", self.init_steps, minimum=1)
        check_number("init_learning_rate", self.init_learning_rate, low=0.0)
        check_polish(self.init_polish, self.init_polish_steps, prefix="init_")
        check_bool("progress_bar", self.progress_bar)


def _tuning_fractions(num_warmup: int, preconditioning: bool) -> tuple[float, float, float]:
    """Fractions of BlackJAX's tuner so that its three stages take ``num_warmup`` steps.

    The tuner runs ``f1·n`` steps (step size), ``f2·n`` (+ a third more with
    preconditioning) and ``f3·n`` (L from the autocorrelation) for its argument ``n``;
    with ``n = num_warmup`` and ``f1 = f2 = f3 = f`` that is ``(3 + 1/3)·f·n`` or
    ``3·f·n`` steps.
    """
    f = 1.0 / (3.0 + (1.0 / 3.0 if preconditioning else 0.0))
    return f, f, f


class MCLMCChain(NamedTuple):
    """One chain's sampler state (BlackJAX's) and its tuned parameters (``L``, step size,
    diagonal preconditioner)."""

    state: Any
    params: MCLMCAdaptationState
    energy_ratio: jax.Array | None = None  # [rounds] of the step-size check, if it ran


class MCLMCInfo(NamedTuple):
    """What one MCLMC transition did (``acceptance_rate`` only for the adjusted variant)."""

    energy_change: jax.Array
    n_steps: jax.Array
    diverging: jax.Array
    acceptance_rate: jax.Array | None = None


class MCLMCAlgorithm(NamedTuple):
    """A :class:`~bayesresnet.infer.base.SamplingAlgorithm` with BlackJAX's tuner between
    ``init`` and ``step``.

    Attributes:
        init: ``init(key, position) -> state`` (BlackJAX's).
        tune: ``tune(key, state) -> MCLMCChain``: ``num_warmup`` tuning steps.
        step: ``step(key, chain) -> (chain, MCLMCInfo)``.
    """

    init: Callable
    tune: Callable
    step: Callable


def mclmc_kernel(log_density, config: MCLMCConfig, dim: int) -> MCLMCAlgorithm:
    """The MCLMC kernel of ``config.variant`` over a log density of flat vectors ``[dim]``."""
    build = _unadjusted if config.variant == "unadjusted" else _adjusted
    return build(config, log_density, dim)


#: Energy-error variance per dimension above this multiple of the target warns.
MCLMC_ENERGY_VAR_FACTOR = 10.0
#: Rounds of the step-size check that follows BlackJAX's tuner (unadjusted variant).
ENERGY_CHECK_ROUNDS = 4
#: Share of ``num_warmup`` the check takes (the tuner gets the rest).
ENERGY_CHECK_SHARE = 0.2
#: Fewest steps per round; with fewer (``num_warmup`` below 200) the check is skipped.
ENERGY_CHECK_MIN_STEPS = 10
#: Largest cut of the step size in one round.
ENERGY_CHECK_MIN_FACTOR = 0.25


def energy_check_steps(config: MCLMCConfig) -> int:
    """Steps per round of the step-size check; 0 where it does not run (a fixed
    ``step_size``, the adjusted variant, too short a warm-up)."""
    if config.variant != "unadjusted" or config.step_size is not None:
        return 0
    steps = int(config.num_warmup * ENERGY_CHECK_SHARE) // ENERGY_CHECK_ROUNDS
    return steps if steps >= ENERGY_CHECK_MIN_STEPS else 0


def energy_checked_step_size(
    kernel, log_density, state, params, key, steps: int, dim: int, desired: float
):
    """The tuned step size checked against the energy-error target, and cut where above it.

    BlackJAX's tuner predicts the step size from ``Var[E] ∝ ε⁶``. On a network's
    posterior the energy error is not like that: on friedman1 (N = 200, 377 sampled
    parameters) its mean square per dimension was about 0.4–1.8 at the tuned
    ``ε ≈ 0.2`` (target 5·10⁻⁴), 0.002–0.04 at ``ε = 0.05`` and below 10⁻¹⁰ at
    ``ε = 0.02`` (float64): a stability edge, crossed by rare large errors that the tuner's
    weighted average discounts. Here each of :data:`ENERGY_CHECK_ROUNDS` rounds runs
    ``steps`` steps, measures ``r = mean(ΔE²)/(dim · desired)`` and, where ``r`` is above
    :data:`MCLMC_ENERGY_VAR_FACTOR` (where the verdict warns) or not finite, multiplies
    the step size by ``r^(−1/6)`` clipped to [:data:`ENERGY_CHECK_MIN_FACTOR`, 0.9]; a
    step size is never raised. (Cutting from ``r > 1`` on cost mixing on small posteriors:
    the simulation-based calibration of ``tests/test_mclmc.py`` then failed.)

    Measured (``benchmarks/mclmc_calibration.py``, N = 200, seed 0, before → after):
    CRPS on noise-free friedman1 0.0512 → 0.0344 and borehole 0.0620 → 0.0501 (relative
    RMSE 2.10 → 1.37 % and 0.45 → 0.39 %); with 5 % noise friedman1 0.219 → 0.212,
    borehole 1.501 → 1.505. The energy error during sampling stays above the target on
    noise-free data (0.01–0.36 per dimension): there the log density keeps rising through
    the run (the noise sd shrinks, the posterior sharpens), so no step size tuned early
    holds.

    Returns:
        ``(state, params, ratios [rounds])``: ``r`` of each round, before its cut.
    """

    def one_round(carry, key):
        state, step_size = carry

        def one_step(state, k):
            state, info = kernel(
                k, state, log_density, params.inverse_mass_matrix, params.L, step_size
            )
            return state, info.energy_change

        state, energy = jax.lax.scan(one_step, state, jax.random.split(key, steps))
        ratio = jnp.mean(jnp.square(energy)) / (dim * desired)
        ratio = jnp.where(jnp.isfinite(ratio), ratio, jnp.inf)
        factor = jnp.clip(ratio ** (-1.0 / 6.0), ENERGY_CHECK_MIN_FACTOR, 0.9)
        cut = ratio > MCLMC_ENERGY_VAR_FACTOR
        return (state, jnp.where(cut, step_size * factor, step_size)), ratio

    keys = jax.random.split(key, ENERGY_CHECK_ROUNDS)
    (state, step_size), ratios = jax.lax.scan(one_round, (state, params.step_size), keys)
    return state, params._replace(step_size=step_size), ratios


def _unadjusted(config: MCLMCConfig, log_density, dim: int) -> MCLMCAlgorithm:
    kernel = mclmc.build_kernel(desired_energy_var=config.desired_energy_var)

    def init(key, z):
        return mclmc.init(z, log_density, key)

    def tune(key, state):
        if config.num_warmup == 0:
            return MCLMCChain(state, _fixed_params(config, dim))
        check_steps = energy_check_steps(config)
        tuner_steps = config.num_warmup - ENERGY_CHECK_ROUNDS * check_steps
        f1, f2, f3 = _tuning_fractions(tuner_steps, config.diagonal_preconditioning)
        key, check_key = jax.random.split(key)
        state, params, _ = mclmc_find_L_and_step_size(
            kernel,
            tuner_steps,
            state,
            key,
            logdensity_fn=log_density,
            frac_tune1=f1,
            frac_tune2=f2,
            frac_tune3=f3,
            desired_energy_var=config.desired_energy_var,
            diagonal_preconditioning=config.diagonal_preconditioning,
        )
        params = _override(config, params)
        if not check_steps:
            return MCLMCChain(state, params)
        state, params, ratios = energy_checked_step_size(
            kernel, log_density, state, params, check_key, check_steps, dim,
            config.desired_energy_var,
        )  # fmt: skip
        return MCLMCChain(state, params, ratios)

    def step(key, chain):
        state, params, ratios = chain
        state, info = kernel(
            key, state, log_density, params.inverse_mass_matrix, params.L, params.step_size
        )
        info = MCLMCInfo(
            energy_change=info.energy_change,
            n_steps=jnp.asarray(1, jnp.int32),
            diverging=~jnp.asarray(info.nonans),
        )
        return MCLMCChain(state, params, ratios), info

    return MCLMCAlgorithm(init, tune, step)


def _adjusted(config: MCLMCConfig, log_density, dim: int) -> MCLMCAlgorithm:
    steps_fn = adjusted_mclmc_dynamic.make_random_trajectory_length_fn(True)
    kernel = adjusted_mclmc_dynamic.build_kernel(integration_steps_fn=steps_fn)

    def tuner_kernel(
        rng_key, state, logdensity_fn, step_size, inverse_mass_matrix, integration_steps_params
    ):
        return kernel(
            rng_key,
            state,
            logdensity_fn,
            step_size,
            inverse_mass_matrix=inverse_mass_matrix,
            integration_steps_params=integration_steps_params,
        )

    def init(key, z):
        return adjusted_mclmc_dynamic.init(z, log_density, key)

    def tune(key, state):
        if config.num_warmup == 0:
            return MCLMCChain(state, _fixed_params(config, dim))
        f = 0.5 / (1.0 + (1.0 / 3.0 if config.diagonal_preconditioning else 0.0))
        state, params, _ = adjusted_mclmc_find_L_and_step_size(
            tuner_kernel,
            log_density,
            config.num_warmup,
            state,
            key,
            target=config.target_accept_prob,
            frac_tune1=f,
            frac_tune2=f,
            diagonal_preconditioning=config.diagonal_preconditioning,
        )
        return MCLMCChain(state, _override(config, params))

    def step(key, chain):
        state, params, ratios = chain
        state, info = kernel(
            key,
            state,
            log_density,
            params.step_size,
            inverse_mass_matrix=params.inverse_mass_matrix,
            integration_steps_params=(params.L / params.step_size,),
        )
        info = MCLMCInfo(
            energy_change=info.energy,
            n_steps=jnp.asarray(info.num_integration_steps, jnp.int32),
            diverging=jnp.asarray(info.is_divergent),
            acceptance_rate=info.acceptance_rate,
        )
        return MCLMCChain(state, params, ratios), info

    return MCLMCAlgorithm(init, tune, step)


def _fixed_params(config: MCLMCConfig, dim: int) -> MCLMCAdaptationState:
    return MCLMCAdaptationState(
        jnp.asarray(config.L, jnp.float32),
        jnp.asarray(config.step_size, jnp.float32),
        jnp.ones(dim),
    )


def _override(config: MCLMCConfig, params: MCLMCAdaptationState) -> MCLMCAdaptationState:
    """The tuned parameters, with the user's fixed step size or L where given."""
    if config.step_size is not None:
        params = params._replace(step_size=jnp.asarray(config.step_size, params.step_size.dtype))
    if config.L is not None:
        params = params._replace(L=jnp.asarray(config.L, params.L.dtype))
    return params


def _collect(chain, info):
    stats = {k: v for k, v in info._asdict().items() if v is not None}
    return {"z": chain.state.position, "lp": chain.state.logdensity, **stats}


#: A chain whose tuned step size is below this fraction of the median chain's is stuck.
STUCK_STEP_FRACTION = 1e-2


def restart_stuck_chains(chains: MCLMCChain) -> tuple[MCLMCChain, np.ndarray]:
    """Chains whose tuning got stuck, restarted from the best tuned chain.

    BlackJAX's tuner shrinks a chain's largest step size whenever a step gives a
    non-finite energy; a chain that wandered into a region of the posterior where every
    step does (measured: noise-free borehole, N = 200, one chain of eight at log density
    −1.2·10⁶ where the others sat near +90) ends its warm-up with a step size of 0 and
    never moves again, and its draws spoil the mixture (relative RMSE 5.3 % against
    0.52–0.67 % for each other chain). A chain is stuck when its tuned step size or log
    density is not finite or the step size is below :data:`STUCK_STEP_FRACTION` of the
    median chain's. Each stuck chain gets the tuned state and parameters of the chain
    with the highest log density among the others; it samples on with its own random
    key, so the draws stay a valid MCMC sample (warm-up is discarded either way). When
    every chain is stuck nothing is changed, and the verdict fails.

    Returns:
        ``(chains, stuck)``: the chains and a boolean mask ``[C]`` of those restarted.
    """
    step = np.asarray(chains.params.step_size, dtype=float)
    lp = np.asarray(chains.state.logdensity, dtype=float)
    ok = np.isfinite(step) & np.isfinite(lp)
    ok &= step > STUCK_STEP_FRACTION * np.median(np.where(ok, step, 0.0))
    if ok.all() or not ok.any():
        return chains, np.zeros_like(ok)
    best = np.flatnonzero(ok)[np.argmax(lp[ok])]
    source = jnp.asarray(np.where(ok, np.arange(len(ok)), best))
    return jax.tree_util.tree_map(lambda a: a[source], chains), ~ok


def _sample(algorithm, flat, keys, config: MCLMCConfig, timer: Timer):
    """Tune every chain from its start ``flat`` ``[C, D]``, then sample all in one program."""
    k_init, k_tune, k_sample = keys
    c = config.num_chains
    progress = show_progress("auto") if config.progress_bar else contextlib.nullcontext()
    total = c * (config.num_warmup + config.num_samples * config.thinning)
    with progress, progress_bar(total, "MCLMC") as bar:
        states = jax.jit(jax.vmap(algorithm.init))(jax.random.split(k_init, c), flat)
        with timer("warmup_s"):
            chains = jax.block_until_ready(
                jax.jit(jax.vmap(algorithm.tune))(jax.random.split(k_tune, c), states)
            )
        bar.update(c * config.num_warmup)
        chains, stuck = restart_stuck_chains(chains)
        if stuck.any():
            warnings.warn(
                f"MCLMC: {int(stuck.sum())} of {c} chains ended their warm-up stuck (step "
                "size 0 or far below the others'); each was restarted from the best tuned "
                "chain.",
                RuntimeWarning,
                stacklevel=4,
            )
        _, out = run_chains(
            algorithm.step,
            chains,
            jax.random.split(k_sample, c),
            config.num_samples,
            collect=_collect,
            thinning=config.thinning,
            progress=bar,
            num_blocks=10,
            timer=timer,
            label="sampling_s",
        )
    ratios = None if chains.energy_ratio is None else np.asarray(chains.energy_ratio)
    return to_numpy(chains.params), to_numpy(out), stuck, ratios


def run_mclmc(key, model, x, y, config: MCLMCConfig) -> EngineResult:
    """Ensemble-started MCLMC (see module docstring); draws ``[chains, draws, ...]``."""
    timer = Timer()
    x, y = jnp.asarray(x), jnp.asarray(y)
    k_members, k_init, k_tune, k_sample = jax.random.split(key, 4)
    c = config.num_chains
    start = map_start(
        k_members,
        model,
        x,
        y,
        num_starts=c,
        num_steps=config.init_steps,
        learning_rate=config.init_learning_rate,
        polish=config.init_polish,
        polish_steps=config.init_polish_steps,
        timer=timer,
    )
    flat, unravel = flatten_members(start.params)  # [C, D]
    dim = int(flat.shape[1])
    model_log_density = make_log_density(model, x, y)

    def log_density(z):
        return model_log_density(unravel(z))

    algorithm = mclmc_kernel(log_density, config, dim)
    params, out, stuck, ratios = _sample(algorithm, flat, (k_init, k_tune, k_sample), config, timer)
    with timer("sampling_s"):
        samples = constrain_draws(model, x, y, out["z"], unravel)
    sample_stats = {
        "lp": out["lp"],
        "energy_change": out["energy_change"],
        "diverging": out["diverging"].astype(bool),
        "n_steps": out["n_steps"].astype(np.int64),
        "step_size": np.broadcast_to(params.step_size[:, None], out["lp"].shape).copy(),
    }
    if "acceptance_rate" in out:
        sample_stats["acceptance_rate"] = out["acceptance_rate"]
    settings = asdict(config) | {"num_devices": jax.device_count(), "dim": dim}
    extra = {
        "step_size": params.step_size.tolist(),
        "L": params.L.tolist(),
        "num_gradient_evaluations": _num_gradients(config, sample_stats["n_steps"]),
        "num_warmup_gradient_evaluations": int(GRADIENTS_PER_STEP * c * config.num_warmup),
        "init_final_loss": start.final_loss.tolist(),
        "restarted_chains": np.flatnonzero(stuck).tolist(),
        **(
            {"init_polish_evaluations": start.polish_evaluations}
            if config.init_polish != "none"
            else {}
        ),
        "energy_var_per_dim": (np.var(out["energy_change"], axis=1) / dim).tolist(),
    }
    if ratios is not None:  # the step-size check after the tuner, [chains, rounds]
        extra["energy_check_ratio"] = ratios.tolist()
    return EngineResult(samples, sample_stats, settings, dict(timer.times), extra)


def _num_gradients(config: MCLMCConfig, n_steps) -> int:
    """Gradients of all sampling steps (kept draws record the last of ``thinning``)."""
    steps = config.num_chains * config.num_samples * config.thinning
    if config.variant == "unadjusted":
        return int(GRADIENTS_PER_STEP * steps)
    # The adjusted variant's trajectory lengths are random: estimated from kept ones.
    return int(GRADIENTS_PER_STEP * np.mean(n_steps) * steps)


# ----------------------------------------------------------------- what MCLMC knows of itself


def describe(post) -> str:
    """One line on how an MCLMC posterior was made."""
    s = post.settings
    return (
        f"MCLMC ({s['variant']}), {s['num_chains']} chains started at MAP fits × "
        f"{s['num_samples']} draws (every {s['thinning']}th step) after "
        f"{s['num_warmup']} tuning steps, step size "
        f"{np.mean(post.extra.get('step_size', [np.nan])):.3g}, L "
        f"{np.mean(post.extra.get('L', [np.nan])):.3g} (chain means)"
    )


def checks(post, estimators: Estimators) -> list[Check]:
    """Non-finite steps (none), and the integrator's energy error or the acceptance rate.

    For the unadjusted variant the energy-error variance per dimension is the bias
    control (tuned to ``desired_energy_var``); far above it the draws are biased
    (Robnik et al. 2023).
    """
    stats, settings = post.sample_stats, post.settings
    num_bad = int(np.sum(stats["diverging"]))
    found = [
        Check(
            "non-finite or divergent steps",
            "pass" if num_bad == 0 else "fail",
            f"{num_bad} of {stats['diverging'].size}",
            "0",
            ""
            if num_bad == 0
            else "the step size is too large for part of the posterior: lower `step_size`, "
            "or `desired_energy_var` / raise `target_accept_prob` for the tuner",
        )
    ]
    if settings.get("variant") == "adjusted":
        rate = float(np.mean(stats["acceptance_rate"]))
        target = float(settings.get("target_accept_prob", 0.9))
        ok = rate >= target - 0.15
        found.append(
            Check(
                "acceptance rate",
                "pass" if ok else "warn",
                f"{rate:.2f}",
                f"≥ {target - 0.15:.2f} (target {target})",
                "" if ok else "raise num_warmup so that the step size is tuned",
            )
        )
        return found
    dim = max(int(settings.get("dim", 1)), 1)
    per_dim = np.var(stats["energy_change"], axis=1) / dim
    desired = float(settings.get("desired_energy_var", 5e-4))
    worst = float(np.max(per_dim))
    ok = worst <= MCLMC_ENERGY_VAR_FACTOR * desired
    found.append(
        Check(
            "energy error variance per dimension",
            "pass" if ok else "warn",
            f"max {worst:.2g}",
            f"≤ {MCLMC_ENERGY_VAR_FACTOR:g} × desired ({desired:g})",
            ""
            if ok
            else "the integrator's energy error is large: the draws may be biased; "
            "lower `step_size` or use variant='adjusted'",
        )
    )
    return found


ENGINE = Engine(
    config=MCLMCConfig,
    run=run_mclmc,
    describe=describe,
    gradients=sampler_gradients,
    chains=True,
    checks=checks,
    ensemble_started=True,
)
