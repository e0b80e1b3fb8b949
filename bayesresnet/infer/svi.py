"""Stochastic variational inference through NumPyro's ``SVI`` with optax optimizers.

Guides: ``"meanfield"`` (AutoNormal), ``"lowrank"`` (AutoLowRankMultivariateNormal),
``"fullrank"`` (AutoMultivariateNormal, small models), ``"iaf"`` (AutoIAFNormal),
``"bnaf"`` (AutoBNAFNormal), ``"laplace"`` (AutoLaplaceApproximation: a Gaussian at the
MAP with the inverse Hessian as covariance) and ``"map"`` (AutoDelta: a point mass).

Optimization runs in blocks of ``check_every`` steps, each a compiled ``lax.scan``; it
stops when the mean ELBO loss of a block differs from the previous block's by less than
``tol`` per observation, or after ``num_steps``.

References:
    Hoffman, Blei, Wang, Paisley (2013), Stochastic variational inference. JMLR.
    Kingma et al. (2016), Improved variational inference with inverse autoregressive flow.
    De Cao, Titov, Aziz (2019), Block neural autoregressive flow. UAI.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import SVI, Trace_ELBO, autoguide, init_to_median, init_to_value
from numpyro.infer.util import constrain_fn, potential_energy
from numpyro.optim import optax_to_numpyro

from bayesresnet._validate import check_choice, check_int, check_number
from bayesresnet.infer.base import (
    PARETO_K_OK,
    Check,
    Engine,
    EngineResult,
    Estimators,
    Timer,
    progress_bar,
    to_numpy,
)
from bayesresnet.infer.core import (
    SCHEDULES,
    check_optimizer,
    check_polish,
    config_settings,
    latent_sites,
    make_optimizer,
    map_start,
    run_blocks,
)

__all__ = ["SVIConfig", "GUIDES", "make_guide", "run_svi", "ENGINE"]

GUIDES = ("meanfield", "lowrank", "fullrank", "iaf", "bnaf", "laplace", "map")


@dataclass(frozen=True)
class SVIConfig:
    """Settings of an SVI run.

    Args:
        guide: one of :data:`GUIDES`.
        num_steps: maximum optimizer steps.
        learning_rate: peak Adam learning rate (default 1e-3 for the flows, whose
            autoregressive networks diverge at larger rates, 1e-2 otherwise).
        schedule: learning-rate schedule (see :func:`~bayesresnet.infer.core.make_schedule`).
        warmup_steps: linear warm-up steps of the cosine schedule.
        num_particles: Monte-Carlo samples per ELBO gradient.
        num_draws: draws taken from the fitted guide (1 for ``"map"``).
        rank: rank of the ``"lowrank"`` covariance (default ⌈√(#params)⌉, at most 32).
        init_scale: initial sd of the Gaussian guides.
        clip_norm: global gradient-norm clipping.
        check_every: steps per compiled block; convergence is checked between blocks.
        tol: stop when the block-mean loss changes by less than this per observation.
        laplace_min_precision: eigenvalue floor of the ``"laplace"`` precision matrix.
        init: ``"map"`` centres the guide at a MAP fit (``init_steps`` Adam steps, run by
            the ensemble engine) before SVI starts, which keeps Gaussian guides of
            neural networks from stalling near the prior; ``"median"`` starts at the
            prior median.
        init_steps: optimizer steps of the MAP start.
        init_polish: ``"lbfgs"``: each MAP fit is finished by full-batch L-BFGS
            (:func:`~bayesresnet.infer.core.polish_members`, stopping on
            :class:`~bayesresnet.infer.core.EnsembleConfig`'s tolerances); ``"none"``:
            Adam only.
        init_polish_steps: at most this many L-BFGS iterations per MAP fit.
        optimizer: an ``optax.GradientTransformation`` used instead of the clipped Adam
            that ``learning_rate``, ``schedule``, ``warmup_steps`` and ``clip_norm``
            describe; ``None``: that Adam.
    """

    guide: str = "meanfield"
    num_steps: int = 10000
    learning_rate: float | None = None
    schedule: str = "cosine"
    warmup_steps: int = 100
    num_particles: int = 1
    num_draws: int = 1000
    rank: int | None = None
    init_scale: float = 0.01
    clip_norm: float = 100.0
    check_every: int = 500
    tol: float = 1e-4
    laplace_min_precision: float = 1.0
    init: str = "map"
    init_steps: int = 2000
    init_polish: str = "none"
    init_polish_steps: int = 1000
    optimizer: optax.GradientTransformation | None = None

    def __post_init__(self):
        check_choice("guide", self.guide, GUIDES)
        check_int("num_steps", self.num_steps, minimum=1)
        if self.learning_rate is not None:
            check_number("learning_rate", self.learning_rate, low=0.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_int("num_particles", self.num_particles, minimum=1)
        check_int("num_draws", self.num_draws, minimum=1)
        if self.rank is not None:
            check_int("rank", self.rank, minimum=1)
        check_number("init_scale", self.init_scale, low=0.0)
        check_number("clip_norm", self.clip_norm, low=0.0)
        check_int("check_every", self.check_every, minimum=1)
        check_number("tol", self.tol, low=0.0, inclusive=True)
        check_number("laplace_min_precision", self.laplace_min_precision, low=0.0)
        check_choice("init", self.init, ("map", "median"))
        check_int("init_steps", self.init_steps, minimum=1)
        check_polish(self.init_polish, self.init_polish_steps, prefix="init_")
        check_optimizer(self.optimizer)


def make_guide(model, config: SVIConfig, num_latent: int, init=init_to_median):
    """The autoguide named by ``config.guide``, its location initialized by ``init``."""
    name = config.guide
    if name == "meanfield":
        return autoguide.AutoNormal(model, init_loc_fn=init, init_scale=config.init_scale)
    if name == "lowrank":
        rank = config.rank or min(32, int(np.ceil(np.sqrt(num_latent))))
        return autoguide.AutoLowRankMultivariateNormal(
            model, init_loc_fn=init, init_scale=config.init_scale, rank=rank
        )
    if name == "fullrank":
        return autoguide.AutoMultivariateNormal(
            model, init_loc_fn=init, init_scale=config.init_scale
        )
    if name == "iaf":
        # MADE layers must be at least as wide as the latent dimension.
        return autoguide.AutoIAFNormal(
            model, init_loc_fn=init, num_flows=2, hidden_dims=[num_latent + 1]
        )
    if name == "bnaf":
        return autoguide.AutoBNAFNormal(model, init_loc_fn=init, num_flows=1, hidden_factors=[4])
    if name == "laplace":
        return autoguide.AutoLaplaceApproximation(
            model, init_loc_fn=init, hessian_fn=_make_laplace_hessian(config.laplace_min_precision)
        )
    return autoguide.AutoDelta(model, init_loc_fn=init)


def _make_laplace_hessian(min_precision: float):
    """Hessian of the negative log posterior with eigenvalues floored at ``min_precision``.

    At a MAP point found by a finite optimization (and with the symmetries of a neural
    network) the Hessian can be indefinite or singular, which leaves the Laplace
    covariance undefined. Eigenvalues are replaced by ``max(|λ|, min_precision)``:
    negative curvature is flipped (as in saddle-free Newton methods) and no direction
    gets a variance above ``1/min_precision``; the default 1 is the precision of a
    unit-scale prior in the standardized coordinates the network works in.
    """

    def floored(f, x):
        h = jax.hessian(f)(x)
        lam, vec = jnp.linalg.eigh(0.5 * (h + h.T))
        lam = jnp.maximum(jnp.abs(lam), min_precision)
        return (vec * lam) @ vec.T

    def hessian_fn(f, x):
        # NumPyro calls this eagerly: compiled, not run operation by operation (for a
        # 53-parameter network that took 12 s a call under a profiler, twice per fit).
        return jax.jit(functools.partial(floored, f))(x)

    return hessian_fn


def _plateaued(previous: float, current: float, num_obs: int, tol: float) -> bool:
    """Whether the block-mean loss changed by less than ``tol`` per observation.

    A loss that rose by more than ``tol`` has not converged (the step size may be too
    large for the current region), so optimization goes on.
    """
    return abs(previous - current) / num_obs < tol


def _learning_rate(config: SVIConfig) -> float:
    if config.learning_rate is not None:
        return config.learning_rate
    return 1e-3 if config.guide in ("iaf", "bnaf") else 1e-2


def _init_strategy(key, model, x, y, config: SVIConfig, timer: Timer):
    """Where the guide starts: at a MAP fit (:func:`~bayesresnet.infer.core.map_start`)
    or at the prior median; and the MAP start's L-BFGS evaluations."""
    if config.init != "map":
        return init_to_median, 0
    start = map_start(
        key,
        model,
        x,
        y,
        num_starts=1,
        num_steps=config.init_steps,
        learning_rate=1e-2,
        polish=config.init_polish,
        polish_steps=config.init_polish_steps,
        timer=timer,
    )
    u = jax.tree_util.tree_map(lambda a: a[0], start.params)
    return init_to_value(values=constrain_fn(model, (x, y), {}, u)), start.polish_evaluations


def _optimize(svi: SVI, state, x, y, config: SVIConfig, learning_rate: float, timer: Timer):
    """SVI steps in blocks of ``check_every`` until the loss plateaus or ``num_steps``.

    Returns:
        ``(state, losses [steps run], converged)``.
    """

    def block(state, start, length):
        def body(s, _):
            return svi.update(s, x, y)

        return jax.lax.scan(body, state, None, length=length)

    means, converged = [], []

    def stop(losses, done):
        mean = float(np.mean(losses))
        if not np.isfinite(mean):
            raise FloatingPointError(
                f"SVI diverged (non-finite ELBO) after {done} steps; lower "
                f"`learning_rate` (now {learning_rate})."
            )
        means.append(mean)
        if len(means) > 1 and _plateaued(means[-2], mean, x.shape[0], config.tol):
            converged.append(done)
        return bool(converged)

    with progress_bar(config.num_steps, "SVI") as bar:
        state, losses = run_blocks(
            block,
            state,
            config.num_steps,
            block_size=min(config.check_every, config.num_steps),
            progress=bar,
            timer=timer,
            compile_label="compile_s",
            stop=stop,
        )
    return state, np.concatenate([np.asarray(b) for b in losses]), bool(converged)


def _log_weights(key, guide, params, model, x, y, num_draws: int) -> np.ndarray:
    """``log p(y, θ) − log q(θ)`` for ``θ ~ q``: a one-particle ELBO each, for the
    Pareto-k̂ diagnostic of the guide (Yao et al. 2018)."""
    elbo = Trace_ELBO(num_particles=1)
    keys = jax.random.split(jax.random.fold_in(key, 1), min(num_draws, 1000))
    lw_fn = jax.jit(jax.vmap(lambda k: -elbo.loss(k, params, model, guide, x, y)))
    return np.asarray(lw_fn(keys))


def _laplace_log_weights(key, guide, params, model, x, y, num_draws: int) -> np.ndarray:
    """``log p(y, z) − log q(z)`` at the Laplace draws themselves.

    The Laplace guide trains as a point mass, so the ELBO's one-particle weights would
    be those of a delta; its draws come from ``q = N(MAP, H⁻¹)`` in the unconstrained
    space (``guide.get_posterior``). With the key and shape of the draws, ``z`` are the
    very draws the posterior keeps.
    """
    q = guide.get_posterior(params)

    def one(z):
        u = guide._unpack_latent(z)  # noqa: SLF001 (NumPyro's flat-latent → sites map)
        return -potential_energy(model, (x, y), {}, u) - q.log_prob(z)

    z = q.sample(key, (num_draws,))
    return np.asarray(jax.jit(jax.vmap(one))(z))


def run_svi(key, model, x, y, config: SVIConfig) -> EngineResult:
    """Fit a guide by SVI and draw from it (see module docstring)."""
    timer = Timer()
    x, y = jnp.asarray(x), jnp.asarray(y)
    k_init, k_steps, k_draw = jax.random.split(key, 3)
    learning_rate = _learning_rate(config)
    optimizer = make_optimizer(
        learning_rate,
        config.num_steps,
        schedule=config.schedule,
        warmup_steps=config.warmup_steps,
        clip_norm=config.clip_norm,
        optimizer=config.optimizer,
    )
    names = latent_sites(model, x, y)
    num_latent = int(sum(np.prod(s) for s in names.values()))
    if config.init == "map":
        k_init, k_map = jax.random.split(k_init)
    else:
        k_map = None
    init, polish_evaluations = _init_strategy(k_map, model, x, y, config, timer)
    guide = make_guide(model, config, num_latent, init)
    elbo = Trace_ELBO(num_particles=config.num_particles)
    svi = SVI(model, guide, optax_to_numpyro(optimizer), elbo)
    with timer("init_s"):
        state = svi.init(k_init, x, y)
    state, history, converged = _optimize(svi, state, x, y, config, learning_rate, timer)
    params = svi.get_params(state)
    num_draws = 1 if config.guide == "map" else config.num_draws
    with timer("draw_s"):
        draw_fn = jax.jit(lambda k, p: guide.sample_posterior(k, p, sample_shape=(num_draws,)))
        draws = draw_fn(k_draw, params)
    samples = {k: v[None] for k, v in to_numpy(draws).items() if k in names}
    settings = config_settings(config) | {
        "steps_run": int(len(history)),
        "learning_rate": learning_rate,
    }
    block = min(config.check_every, config.num_steps)
    extra = {
        "loss_history": history,
        "final_loss": float(history[-block:].mean()),
        "converged": converged,
    }
    if config.init == "map" and config.init_polish != "none":
        extra["init_polish_evaluations"] = polish_evaluations
    if config.guide == "laplace":
        extra["log_weights"] = _laplace_log_weights(k_draw, guide, params, model, x, y, num_draws)
    elif config.guide != "map":
        extra["log_weights"] = _log_weights(k_draw, guide, params, model, x, y, num_draws)
    return EngineResult(samples, {}, settings, dict(timer.times), extra)


# ------------------------------------------------------------------ what SVI knows of itself
def describe(post) -> str:
    """One line on how an SVI posterior was made."""
    s = post.settings
    return (
        f"SVI, guide {s['guide']}, {s.get('steps_run')} steps, learning rate "
        f"{s.get('learning_rate')} ({s['schedule']}), {post.num_draws} draws"
    )


def gradients(post) -> int:
    """ELBO gradients (each of ``num_particles`` log-density gradients) and the MAP start."""
    s = post.settings
    init = s["init_steps"] + post.extra.get("init_polish_evaluations", 0)
    init = init if s.get("init") == "map" else 0
    return int(init + s["steps_run"] * s["num_particles"])


def checks(post, estimators: Estimators) -> list[Check]:
    """ELBO convergence and the Pareto k̂ of the importance weights log p − log q (≤ 0.7;
    Yao et al. 2018) of every guide with a density, Laplace included; not of ``"map"``."""
    converged = bool(post.extra.get("converged", False))
    found = [
        Check(
            "ELBO converged",
            "pass" if converged else "warn",
            f"{post.settings.get('steps_run', '?')} steps",
            f"block-mean loss change < {post.settings.get('tol')} per observation",
            ""
            if converged
            else "raise num_steps, or the learning rate if the loss still falls steadily",
        )
    ]
    lw = post.extra.get("log_weights")
    if lw is None or len(lw) < 20:
        found.append(
            Check("Pareto k̂", "n/a", "—", f"≤ {PARETO_K_OK}", "not defined for a point mass (map)")
        )
        return found
    k = estimators.pareto_khat(lw)
    ok = k <= PARETO_K_OK
    found.append(
        Check(
            "Pareto k̂",
            "pass" if ok else "warn",
            f"{k:.2f}",
            f"≤ {PARETO_K_OK}",
            ""
            if ok
            else "the guide misses mass of the posterior (typical for mean-"
            "field guides of neural networks): its intervals are not to be trusted "
            "without calibration checks; try guide='lowrank', an ensemble or NUTS",
        )
    )
    return found


ENGINE = Engine(
    config=SVIConfig,
    run=run_svi,
    describe=describe,
    gradients=gradients,
    chains=False,
    checks=checks,
    loss="negative ELBO",
)
