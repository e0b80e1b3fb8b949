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

from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer import SVI, Trace_ELBO, autoguide, init_to_median, init_to_value
from numpyro.infer.util import constrain_fn
from numpyro.optim import optax_to_numpyro

from bayesresnet._validate import check_choice, check_int, check_number
from bayesresnet.infer.base import EngineResult, Timer, progress_bar, to_numpy
from bayesresnet.infer.core import (
    SCHEDULES,
    EnsembleConfig,
    latent_sites,
    make_optimizer,
    train_members,
)

__all__ = ["SVIConfig", "GUIDES", "make_guide", "run_svi"]

GUIDES = ("meanfield", "lowrank", "fullrank", "iaf", "bnaf", "laplace", "map")
#: Guides trained as a point mass (Laplace draws come from the Hessian afterwards), for
#: which importance weights against the trained guide are not defined.
POINT_GUIDES = ("laplace", "map")


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

    def hessian_fn(f, x):
        h = jax.hessian(f)(x)
        lam, vec = jnp.linalg.eigh(0.5 * (h + h.T))
        lam = jnp.maximum(jnp.abs(lam), min_precision)
        return (vec * lam) @ vec.T

    return hessian_fn


def _plateaued(previous: float, current: float, num_obs: int, tol: float) -> bool:
    """Whether the block-mean loss changed by less than ``tol`` per observation.

    A loss that rose by more than ``tol`` has not converged (the step size may be too
    large for the current region), so optimization goes on.
    """
    return abs(previous - current) / num_obs < tol


def run_svi(key, model, x, y, config: SVIConfig) -> EngineResult:
    """Fit a guide by SVI and draw from it (see module docstring)."""
    timer = Timer()
    x, y = jnp.asarray(x), jnp.asarray(y)
    n = x.shape[0]
    k_init, k_steps, k_draw = jax.random.split(key, 3)
    learning_rate = config.learning_rate
    if learning_rate is None:
        learning_rate = 1e-3 if config.guide in ("iaf", "bnaf") else 1e-2
    optimizer = optax_to_numpyro(
        make_optimizer(
            learning_rate,
            config.num_steps,
            schedule=config.schedule,
            warmup_steps=config.warmup_steps,
            clip_norm=config.clip_norm,
        )
    )
    names = latent_sites(model, x, y)
    num_latent = int(sum(np.prod(s) for s in names.values()))
    init = init_to_median
    if config.init == "map":
        with timer("init_s"):
            k_init, k_map = jax.random.split(k_init)
            map_config = EnsembleConfig(num_members=1, num_steps=config.init_steps)
            members = train_members(k_map, model, x, y, map_config)
            u = jax.tree_util.tree_map(lambda a: a[0], members.params)
            init = init_to_value(values=constrain_fn(model, (x, y), {}, u))
    guide = make_guide(model, config, num_latent, init)
    svi = SVI(model, guide, optimizer, Trace_ELBO(num_particles=config.num_particles))
    with timer("init_s"):
        state = svi.init(k_init, x, y)
    block = min(config.check_every, config.num_steps)

    def run_block(state, _):
        def body(s, _):
            s, loss = svi.update(s, x, y)
            return s, loss

        return jax.lax.scan(body, state, None, length=block)

    program = jax.jit(run_block)
    with timer("compile_s"):
        compiled = program.lower(state, None).compile()
    losses, converged, prev = [], False, None
    with timer("run_s"), progress_bar(config.num_steps, "SVI") as bar:
        steps = 0
        while steps < config.num_steps:
            state, block_losses = compiled(state, None)
            bar.update(block)
            block_losses = np.asarray(block_losses)
            losses.append(block_losses)
            steps += block
            mean = float(block_losses.mean())
            if not np.isfinite(mean):
                raise FloatingPointError(
                    f"SVI diverged (non-finite ELBO) after {steps} steps; lower "
                    f"`learning_rate` (now {learning_rate})."
                )
            if prev is not None and _plateaued(prev, mean, n, config.tol):
                converged = True
                break
            prev = mean
    params = svi.get_params(state)
    num_draws = 1 if config.guide == "map" else config.num_draws
    with timer("draw_s"):
        draw_fn = jax.jit(lambda k, p: guide.sample_posterior(k, p, sample_shape=(num_draws,)))
        draws = draw_fn(k_draw, params)
    samples = {k: v[None] for k, v in to_numpy(draws).items() if k in names}
    log_weights = None
    if config.guide not in POINT_GUIDES:
        # log p(y, θ) − log q(θ) for θ ~ q: a one-particle ELBO each, for the Pareto-k̂
        # diagnostic of the guide (Yao et al. 2018).
        elbo = Trace_ELBO(num_particles=1)
        keys = jax.random.split(jax.random.fold_in(k_draw, 1), min(num_draws, 1000))
        lw_fn = jax.jit(jax.vmap(lambda k: -elbo.loss(k, params, model, guide, x, y)))
        log_weights = np.asarray(lw_fn(keys))
    history = np.concatenate(losses)
    settings = asdict(config) | {"steps_run": int(len(history)), "learning_rate": learning_rate}
    extra = {
        "loss_history": history,
        "final_loss": float(history[-block:].mean()),
        "converged": converged,
    }
    if log_weights is not None:
        extra["log_weights"] = log_weights
    return EngineResult(samples, {}, settings, dict(timer.times), extra)
