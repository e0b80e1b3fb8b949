"""Deep ensembles of MAP fits, trained as one vmapped, jitted optax program.

Every member minimizes the same negative log posterior (NumPyro's potential energy: the
negative log joint density in unconstrained coordinates) from its own initialization,
drawn from the prior. Members are stacked along a leading axis and trained together
with ``jax.vmap`` over a ``lax.scan`` of optax steps: one compiled program, no Python
loop over members or steps.

Options:

* ``bootstrap=True`` gives each member multinomial resampling counts of the data as
  likelihood weights (the bootstrap ensemble);
* ``anchored=True`` gives each member its own prior mean drawn from the prior
  (randomize-then-optimize / anchored ensembles), so that the spread of members
  approximates the posterior rather than only the optimizer's randomness.

References:
    Lakshminarayanan, Pritzel, Blundell (2017), Simple and scalable predictive
    uncertainty estimation using deep ensembles. NeurIPS.
    Pearce, Leibfried, Brintrup (2020), Uncertainty in neural networks: approximately
    Bayesian ensembling. AISTATS.
    Bardsley, Solonen, Haario, Laine (2014), Randomize-then-optimize. SIAM J. Sci. Comput.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn

from bayesresnet._validate import check_bool, check_choice, check_int, check_number
from bayesresnet.infer.base import EngineResult, Timer, to_numpy

__all__ = [
    "EnsembleConfig",
    "MembersResult",
    "make_schedule",
    "latent_sites",
    "sample_prior_unconstrained",
    "make_member_trainer",
    "train_members",
    "run_ensemble",
]

SCHEDULES = ("constant", "cosine", "exponential")
GRADIENTS = ("backprop", "adjoint")


@dataclass(frozen=True)
class EnsembleConfig:
    """Settings of a deep ensemble.

    Args:
        num_members: number ``M`` of MAP fits.
        num_steps: optimizer steps per member.
        learning_rate: peak Adam learning rate.
        schedule: ``"cosine"`` (linear warm-up then cosine decay to 1% of the peak),
            ``"exponential"`` (decay to 1% of the peak) or ``"constant"``.
        warmup_steps: linear warm-up steps of the cosine schedule.
        bootstrap: resample the data per member (multinomial likelihood weights).
        anchored: draw each member's prior mean from the prior (anchored ensemble).
        clip_norm: global gradient-norm clipping.
        convergence_tol: a member has converged when its mean loss over the last 10% of
            steps differs from the 10% before by less than ``convergence_tol`` per
            observation.
        history_every: keep every ``history_every``-th loss in the history.
        gradient: ``"backprop"`` (through the network's layers) or ``"adjoint"``: the
            loss is computed through the neural ODE with the same coefficients
            (:func:`bayesresnet.ode.solve`) and differentiated by the continuous adjoint
            (``diffrax.BacksolveAdjoint``); continuous bases with ``residual=True`` only.
    """

    num_members: int = 8
    num_steps: int = 3000
    learning_rate: float = 1e-2
    schedule: str = "cosine"
    warmup_steps: int = 100
    bootstrap: bool = False
    anchored: bool = False
    clip_norm: float = 100.0
    convergence_tol: float = 1e-3
    history_every: int = 10
    gradient: str = "backprop"

    def __post_init__(self):
        check_int("num_members", self.num_members, minimum=1)
        check_int("num_steps", self.num_steps, minimum=1)
        check_number("learning_rate", self.learning_rate, low=0.0)
        check_choice("schedule", self.schedule, SCHEDULES)
        check_int("warmup_steps", self.warmup_steps, minimum=0)
        check_bool("bootstrap", self.bootstrap)
        check_bool("anchored", self.anchored)
        check_number("clip_norm", self.clip_norm, low=0.0)
        check_number("convergence_tol", self.convergence_tol, low=0.0)
        check_int("history_every", self.history_every, minimum=1)
        check_choice("gradient", self.gradient, GRADIENTS)


def make_schedule(name: str, learning_rate: float, num_steps: int, warmup_steps: int = 0):
    """An optax learning-rate schedule by name (see :class:`EnsembleConfig`)."""
    check_choice("schedule", name, SCHEDULES)
    if name == "constant":
        return optax.constant_schedule(learning_rate)
    if name == "exponential":
        return optax.exponential_decay(learning_rate, num_steps, decay_rate=0.01)
    warmup = min(warmup_steps, max(num_steps - 1, 0))
    return optax.warmup_cosine_decay_schedule(
        init_value=0.0 if warmup else learning_rate,
        peak_value=learning_rate,
        warmup_steps=warmup,
        decay_steps=max(num_steps, warmup + 1),
        end_value=0.01 * learning_rate,
    )


def latent_sites(model, x, y) -> dict[str, tuple[int, ...]]:
    """Names and shapes of the model's latent (unobserved) sample sites.

    Traced abstractly (``jax.eval_shape``), so nothing is compiled or run.
    """
    observed = {}

    def values():
        tr = handlers.trace(handlers.seed(model, jax.random.key(0))).get_trace(x, y)
        for name, site in tr.items():
            if site["type"] == "sample":
                observed[name] = site["is_observed"]
        return {name: site["value"] for name, site in tr.items() if site["type"] == "sample"}

    shapes = jax.eval_shape(values)
    return {name: shapes[name].shape for name in shapes if not observed[name]}


def _sample_prior(key, model, x, y, names):
    tr = handlers.trace(handlers.seed(model, key)).get_trace(x, y)
    return {name: tr[name]["value"] for name in names}


def sample_prior_unconstrained(key, model, x, y, num: int):
    """``num`` independent prior draws of every latent site, in unconstrained space."""
    names = tuple(latent_sites(model, x, y))

    def one(k):
        params = _sample_prior(k, model, x, y, names)
        return unconstrain_fn(model, (x, y), {}, params)

    return jax.jit(jax.vmap(one))(jax.random.split(key, num))


class MembersResult(NamedTuple):
    """Unconstrained parameters ``[M, ...]`` and loss histories ``[M, num_steps]``."""

    params: dict
    losses: jax.Array


def make_member_trainer(model, x, y, optimizer, num_steps: int, forward=None):
    """``train(u0, prior_loc, obs_weight) -> (u, losses)`` for one member.

    ``prior_loc`` and ``obs_weight`` may be ``None`` (plain MAP) or arrays (anchors,
    bootstrap counts). ``forward`` replaces the model's network (``model(...,
    forward=...)``) when given. The function is pure and traceable: vmap it over members.
    """

    def loss_fn(u, prior_loc, obs_weight):
        kwargs = {"prior_loc": prior_loc, "obs_weight": obs_weight}
        if forward is not None:
            kwargs["forward"] = forward
        return potential_energy(model, (x, y), kwargs, u)

    def train(u0, prior_loc, obs_weight):
        grad_fn = jax.value_and_grad(loss_fn)

        def step(carry, _):
            u, opt_state = carry
            loss, grads = grad_fn(u, prior_loc, obs_weight)
            updates, opt_state = optimizer.update(grads, opt_state, u)
            return (optax.apply_updates(u, updates), opt_state), loss

        (u, _), losses = jax.lax.scan(step, (u0, optimizer.init(u0)), None, length=num_steps)
        return u, losses

    return train


def _make_optimizer(config: EnsembleConfig):
    schedule = make_schedule(
        config.schedule, config.learning_rate, config.num_steps, config.warmup_steps
    )
    return optax.chain(optax.clip_by_global_norm(config.clip_norm), optax.adam(schedule))


def _member_inputs(key, model, x, y, config: EnsembleConfig):
    """Initial values, anchors and bootstrap weights of every member (leading axis M)."""
    k_init, k_anchor, k_boot = jax.random.split(key, 3)
    m, n = config.num_members, x.shape[0]
    u0 = sample_prior_unconstrained(k_init, model, x, y, m)
    anchors = None
    if config.anchored:
        # Each member's prior mean is a fresh prior draw of every latent site; the model
        # reads the means of the sites it centres (the network weights) from it.
        names = tuple(latent_sites(model, x, y))
        anchors = jax.jit(jax.vmap(lambda k: _sample_prior(k, model, x, y, names)))(
            jax.random.split(k_anchor, m)
        )
    weights = None
    if config.bootstrap:

        def counts(k):
            idx = jax.random.randint(k, (n,), 0, n)
            return jnp.zeros(n).at[idx].add(1.0)

        weights = jax.jit(jax.vmap(counts))(jax.random.split(k_boot, m))
    return u0, anchors, weights


def train_members(key, model, x, y, config: EnsembleConfig, timer: Timer | None = None):
    """Train all members as one jitted, vmapped program.

    Returns:
        :class:`MembersResult` with unconstrained parameters ``[M, ...]`` and the full
        loss history ``[M, num_steps]``.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    timer = timer or Timer()
    u0, anchors, weights = _member_inputs(key, model, x, y, config)
    forward = None
    if config.gradient == "adjoint":
        from bayesresnet import ode

        forward = ode.adjoint_forward
    optimizer = _make_optimizer(config)
    train = make_member_trainer(model, x, y, optimizer, config.num_steps, forward)
    in_axes = (0, None if anchors is None else 0, None if weights is None else 0)
    program = jax.jit(jax.vmap(train, in_axes=in_axes))
    with timer("compile_s"):
        compiled = program.lower(u0, anchors, weights).compile()
    with timer("run_s"):
        u, losses = jax.block_until_ready(compiled(u0, anchors, weights))
    return MembersResult(u, losses)


def _member_flags(losses: np.ndarray, num_obs: int, tol: float):
    """Final loss, convergence and divergence of each member from its loss history."""
    final = losses[:, -1]
    tail = max(losses.shape[1] // 10, 1)
    last = losses[:, -tail:].mean(axis=1)
    before = losses[:, -2 * tail : -tail].mean(axis=1) if losses.shape[1] >= 2 * tail else last
    diverged = ~np.isfinite(final)
    with np.errstate(invalid="ignore"):
        converged = (~diverged) & (np.abs(before - last) / num_obs < tol)
    return final, converged, diverged


def run_ensemble(key, model, x, y, config: EnsembleConfig) -> EngineResult:
    """Deep ensemble engine: ``M`` MAP fits trained together (see module docstring)."""
    timer = Timer()
    result = train_members(key, model, x, y, config, timer)
    losses = np.asarray(result.losses)
    final, converged, diverged = _member_flags(losses, x.shape[0], config.convergence_tol)
    constrained = jax.jit(jax.vmap(lambda u: constrain_fn(model, (x, y), {}, u)))(result.params)
    samples = to_numpy(constrained)
    finite_params = np.all(
        np.stack([np.isfinite(v).reshape(len(final), -1).all(axis=1) for v in samples.values()]),
        axis=0,
    )
    diverged = diverged | ~finite_params
    keep = ~diverged
    if not keep.any():
        raise FloatingPointError(
            f"all {config.num_members} ensemble members diverged (non-finite loss); lower "
            f"`learning_rate` (now {config.learning_rate}) or `clip_norm`."
        )
    if diverged.any():
        warnings.warn(
            f"{int(diverged.sum())} of {config.num_members} ensemble members diverged and are "
            "left out of the posterior (see extra['member_diverged']); lower `learning_rate`.",
            RuntimeWarning,
            stacklevel=3,
        )
    if not converged[keep].all():
        warnings.warn(
            f"{int((~converged[keep]).sum())} ensemble member(s) had not converged after "
            f"{config.num_steps} steps; raise `num_steps`.",
            RuntimeWarning,
            stacklevel=3,
        )
    samples = {name: v[keep][None] for name, v in samples.items()}  # [1, M_kept, ...]
    sample_stats = {
        "loss": final[keep][None],
        "converged": converged[keep][None],
    }
    extra = {
        "loss_history": losses[:, :: config.history_every],
        "member_final_loss": final.tolist(),
        "member_converged": converged.tolist(),
        "member_diverged": diverged.tolist(),
    }
    return EngineResult(samples, sample_stats, asdict(config), dict(timer.times), extra)
