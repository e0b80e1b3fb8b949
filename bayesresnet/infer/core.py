"""The functional core every engine imports: MAP training, the optimizer, latent shapes, chains.

* :func:`make_optimizer`: the one optax chain (clipped Adam on a schedule) of MAP,
  ensemble and SVI fits, or the user's own ``optax.GradientTransformation``;
* :func:`latent_sites`, :func:`sample_prior_unconstrained`: the model's latent sites and
  prior draws in unconstrained space;
* :func:`make_member_trainer`, :func:`train_members`: ``M`` MAP fits as one vmapped,
  jitted ``lax.scan`` (deep ensembles); each member's own prior means and likelihood
  weights reach the plain model through two NumPyro handlers (:func:`anchor_prior`,
  :func:`weight_observations`, combined by :func:`member_model`);
* :func:`polish_members`: full-batch L-BFGS (optax's, with its zoom line search) after
  the Adam phase, vmapped over members, each member stopping on its own tolerance;
* :func:`map_start`: the MAP warm start of NUTS, MCLMC and SVI (the best of ``M`` fits);
* :func:`run_blocks`: the one block-compiled loop: a pure block of steps, compiled once
  per block length and run until done (or stopped), with progress between blocks;
* :func:`compile_ahead`: a later program traced now and compiled by XLA in a background
  thread, so that it compiles while the run goes on (the polish, and the ensemble's noise
  re-estimate, compile while the members' Adam phase runs);
* :func:`compile_lowered`, :func:`compiled_call`: the process's compiled programs kept by
  what they compute, so that a later fit of the same sizes compiles none of them again
  (the ensemble's programs take their data as arguments, :func:`program_data`, and are
  the same for other data too);
* :func:`scan_chain`, :func:`run_chains`: a kernel ``step(key, state) -> (state, info)``
  (:class:`~bayesresnet.infer.base.SamplingAlgorithm`) scanned along one chain, and run
  for many chains at once: vmapped over chains, sharded over devices when there are
  several, in compiled blocks (:func:`run_blocks`). NUTS and MCLMC both sample with it.

Kernels follow blackjax: the random key first, states are NamedTuples, nothing is jitted
at definition time.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import hashlib
import math
import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import optax
from jax.flatten_util import ravel_pytree
from jax.sharding import Mesh, NamedSharding, PartitionSpec
from numpyro import handlers
from numpyro.infer.util import constrain_fn, potential_energy, unconstrain_fn
from numpyro.primitives import Messenger

from bayesresnet import sites
from bayesresnet._validate import check_bool, check_choice, check_int, check_number
from bayesresnet.infer.base import Timer, progress_bar
from bayesresnet.infer.lanes import (
    join_lanes,
    lane_groups,
    lane_shapes,
    num_lanes,
    run_lanes,
    split_lanes,
)
from bayesresnet.model import BoundModel

__all__ = [
    "SCHEDULES",
    "POLISHES",
    "MEMBER_BLOCKS",
    "check_optimizer",
    "check_polish",
    "config_settings",
    "EnsembleConfig",
    "MembersResult",
    "PolishResult",
    "make_schedule",
    "make_optimizer",
    "MapStart",
    "map_start",
    "run_blocks",
    "scan_chain",
    "latent_sites",
    "sample_prior_unconstrained",
    "anchor_prior",
    "uses_batches",
    "weight_observations",
    "member_model",
    "member_inputs",
    "member_input_call",
    "make_member_trainer",
    "member_block_size",
    "train_members",
    "polish_members",
    "polish_programs",
    "PolishPrograms",
    "compile_ahead",
    "compile_lowered",
    "compile_options",
    "ONCE_OPTIONS",
    "ONCE_MAX_FLOPS",
    "compiled_call",
    "traced_call",
    "TracedCall",
    "clear_compiled",
    "compiles_ahead",
    "block_program",
    "final_losses",
    "make_log_density",
    "program_data",
    "bind_data",
    "flatten_members",
    "constrain_draws",
    "shard_leading",
    "run_chains",
    "sampler_gradients",
]

SCHEDULES = ("constant", "cosine", "exponential")
#: What follows the Adam phase of a MAP fit: nothing, or full-batch L-BFGS.
POLISHES = ("none", "lbfgs")
#: Compiled blocks of :func:`train_members` (progress is reported between them).
MEMBER_BLOCKS = 10
GRADIENTS = ("backprop", "adjoint")
#: How an ensemble sets each member's noise sd (``EnsembleConfig.noise``).
NOISE_ESTIMATES = ("effective", "map")


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
        convergence_tol: a member has converged when its mean loss over the last block
            of ``num_steps/10`` steps differs from the block before by less than
            ``convergence_tol`` per observation.
        prediction_tol: without a polish, with the ``"effective"`` noise re-estimate and
            members not anchored, a member has also converged when its fit at the
            training inputs is within ``prediction_tol`` noise sds of its optimum's (the
            root mean square over the rows of the Gauss–Newton step's change, each
            output: :func:`~bayesresnet.infer.noise.distance_to_optimum`): further
            optimization would hardly change its predictions, whatever its loss still
            does (a loss keeps falling while the noise sd shrinks, or while the learning
            rate's decay stills Adam's jitter). A member's 90 % interval whose centre is
            off by ``δ`` noise sds covers ``Φ(1.645 − δ) − Φ(−1.645 − δ) ≈ 0.90 − 0.17 δ²``:
            at the default 0.25, one percentage point less. With ``method="auto"`` at 200
            rows (seed 0) the members were 0.01–0.23 noise sds from their optima on the
            six problems with 5 % noise (their losses still falling by 0.007–0.048 per
            observation over the last 900 of 9 000 steps on borehole), and 0.5–1.0 on
            noise-free friedman1 and sine, whose optimum lies where the noise sd has
            shrunk further. Over seeds 0–2 (``benchmarks/results/verdict_N200``) every
            member of the noisy fits but 2 of 144 was within 0.25, and the convergence
            verdict was pass in 14 of 18 noisy cases (the other 4: the members' losses
            spread by more than 1 per observation) where every default fit had warned;
            noise-free it stays warn (members 0.04–1.18 sds from their optima; all
            within 0.25 in one case of 18, which warned of its losses' spread). ``0``: the
            loss test only.
        max_steps: an ensemble trains on after ``num_steps``, at the schedule's final
            learning rate, in blocks of ``num_steps/10`` steps, until every member has
            converged (or diverged), for at most ``max_steps`` steps in all; ``None``:
            ``3 · num_steps``; ``num_steps``: no more. (MAP starts of the samplers and of
            SVI always run ``num_steps``.)
        history_every: keep every ``history_every``-th loss in the history.
        gradient: ``"backprop"`` (through the network's layers) or ``"adjoint"``: the
            loss is computed through the neural ODE with the same coefficients
            (:func:`bayesresnet.ode.solve`) and differentiated by the continuous adjoint
            (``diffrax.BacksolveAdjoint``); continuous bases with ``residual=True`` only.
        optimizer: an ``optax.GradientTransformation`` used instead of the clipped Adam
            that ``learning_rate``, ``schedule``, ``warmup_steps`` and ``clip_norm``
            describe (e.g. ``optax.adamw(1e-3)``); ``None``: that Adam.
        polish: ``"lbfgs"``: after the Adam phase, every member's fit is finished by
            full-batch L-BFGS (:func:`polish_members`) on the same loss (its anchors and
            bootstrap weights included); the Adam phase then runs ``num_steps`` steps
            (``max_steps`` is not used) and a member has converged when L-BFGS stopped on
            a tolerance. ``"none"``: Adam only.
        batch_size: ``None`` (the default): every Adam step uses all training rows. A
            number ``B``: each Adam step of each member uses ``B`` rows drawn with
            replacement, their log-likelihood (and a stiffness penalty, a sum over the
            rows too) scaled by ``N/B``: an unbiased estimate of the full loss;
            the loss history then holds these estimates. Needs ``polish="lbfgs"``: the
            full-batch polish finishes each fit and decides its convergence. At or
            above ``N`` rows it is full-batch. At 2 000 rows (width 16, 8 members, 5 %
            noise, ``benchmarks/results/surrogates_N2000_batches``) batches of 256 made
            the Adam phase 5–7× cheaper (3.7–4.2 s against 22–25 s) but left the polish
            far more to do (18–19 s against 1.4–17 s): the fit was 12 % (borehole) and
            31 % (friedman1) faster at the same CRPS within its standard error.
        polish_steps: at most this many L-BFGS iterations per member.
        polish_tol: a member stops when an iteration lowers its loss ``U`` by at most
            ``polish_tol · max(|U|, 1)`` (the relative-loss test of SciPy's L-BFGS-B);
            ``0`` turns the test off.
        polish_grad_tol: a member stops when its gradient norm ``‖∇U‖₂`` is at most
            ``polish_grad_tol · N`` (``N`` observations: the loss is a sum over them);
            ``0`` turns the test off.
        polish_window, polish_window_tol: a member stops when its loss fell by at most
            ``polish_window_tol`` nats per observed value (``N`` rows × outputs) over its
            last ``polish_window`` iterations; ``0`` (the default) turns the test off.
            Where the loss is a Gaussian log-likelihood, a fall of ``ε`` per value is the
            fit's residual scale shrinking by a factor of about ``1 − ε``, so
            ``polish_window_tol=0.01`` stops a member once 50 iterations have shrunk it by
            less than 1 %. Measured with it at 2 000 rows with 5 % noise (borehole and
            friedman1, ``benchmarks/results/polish_window_N2000``, where ``auto`` had it
            on and ``auto2000+nowindow`` is ``auto`` as it is now): the members stopped
            after 50–94 iterations instead of running all 1 000, the fit took 38 s
            instead of 59 s and 55 s at the same CRPS (0.995× and 1.005× the GP's), and
            every member had converged. But at 500 rows (``polish_window_N500``) it
            doubled ishigami's relative RMSE (11.7 % against 6.3 % with noise, 11.6 %
            against 5.6 % noise-free): there the slow fall of the loss was still
            improving the fit, which the loss alone cannot tell from noise being fitted.
            So it is off by default; ``method="auto"`` turns it on at 0.003 from 2 000
            rows, where it was measured to keep the CRPS within 0.4 %
            (:mod:`bayesresnet.infer.auto`).
        ard_warmup: with ``PriorSpec(ard=True)``, the fraction of the ``num_steps`` Adam
            steps through which every input's scale ``λ_j`` is held at
            :data:`ARD_START` (its updates zero); then it is learned with the rest. The
            network first learns to use every input, and only then may an input's scale
            shrink: learned from the first step, a scale can collapse before a fit from
            small weights has found an input whose effect is even about the centre of its
            range, where no first-order gradient holds it. ``0``: learned from the first
            step; ``1``: held through the whole Adam phase, learned in the L-BFGS polish
            only (needs ``polish="lbfgs"``). Measured at 500 rows with 5 % noise, width
            16, polished (``benchmarks/results/ard_warmup_N500``, ``…_N500_even``,
            ``ard_warmup03_N500``, ``ard_warmup_auto_N500``): learned from the first
            step ishigami's relative RMSE was 34.8 % (6.2 % without ARD); held through the
            whole Adam phase 6.2 %, but borehole's and friedman1's rose to 3.5 % and 4.1 %
            (1.2 % and 2.2 % learned from the start: what ARD buys with noise is learned
            during the Adam phase); held for the first 0.3 of it, 6.3 %, 1.3 % and 2.3 %,
            and sobol_g's 6.9 % (9.5 % without ARD, 11.5 % from the first step). The
            samplers' MAP starts hold the scales alike. No effect without ARD.
        noise: ``"effective"``: after the fit, each member's noise sd is re-estimated as
            ``RSS/(N − γ)``, ``γ`` the member's effective number of parameters
            (:mod:`bayesresnet.infer.noise`; MacKay's evidence update), because a MAP fit
            of a network with more weights than data fits part of the noise and its own
            noise sd comes out too small; kept at the MAP value where the Jacobian it
            needs is too large, for a Student-t likelihood and for bootstrap members
            (``extra["noise_refit"]`` says which). ``"map"``: the fitted value.
        prior_evidence: with the ``"effective"`` re-estimate, also each member's
            evidence for the network's prior scales (MacKay's update of each
            :class:`~bayesresnet.PriorSpec` scale, :func:`~bayesresnet.infer.noise.
            evidence_factors`), in ``extra["member_prior_evidence"]`` (``{scale: [M]}``):
            what the ``spec="auto"`` search tries (:func:`~bayesresnet.architecture.
            choose_spec`). Off by default (a ``P × P`` solve per member); not for
            anchored members (their prior means are not 0).
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
    prediction_tol: float = 0.25
    max_steps: int | None = None
    history_every: int = 10
    gradient: str = "backprop"
    optimizer: optax.GradientTransformation | None = None
    polish: str = "none"
    batch_size: int | None = None
    polish_steps: int = 1000
    polish_tol: float = 1e-6
    polish_grad_tol: float = 1e-5
    polish_window: int = 50
    polish_window_tol: float = 0.0
    ard_warmup: float = 0.3
    noise: str = "effective"
    prior_evidence: bool = False

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
        check_number("prediction_tol", self.prediction_tol, low=0.0, inclusive=True)
        if self.max_steps is not None:
            check_int("max_steps", self.max_steps, minimum=self.num_steps)
        check_int("history_every", self.history_every, minimum=1)
        check_choice("gradient", self.gradient, GRADIENTS)
        check_optimizer(self.optimizer)
        check_polish(self.polish, self.polish_steps, self.polish_tol, self.polish_grad_tol)
        check_int("polish_window", self.polish_window, minimum=1)
        check_number("polish_window_tol", self.polish_window_tol, low=0.0, inclusive=True)
        check_choice("noise", self.noise, NOISE_ESTIMATES)
        check_bool("prior_evidence", self.prior_evidence)
        check_number("ard_warmup", self.ard_warmup, low=0.0, high=1.0, inclusive=True)
        if self.ard_warmup == 1 and self.polish == "none":
            raise ValueError(
                '`ard_warmup=1` needs polish="lbfgs": the input scales it holds through '
                "the whole Adam phase are learned in the polish."
            )
        if self.batch_size is not None:
            check_int("batch_size", self.batch_size, minimum=1)
            if self.polish == "none":
                raise ValueError(
                    f'`batch_size` ({self.batch_size}) needs polish="lbfgs": the Adam '
                    "phase's losses are then estimates from batches, and the full-batch "
                    "polish finishes each fit and decides its convergence."
                )


def check_polish(polish, steps, tol=0.0, grad_tol=0.0, *, prefix: str = "") -> None:
    """Settings of the L-BFGS polish (``prefix="init_"`` for those of a MAP start)."""
    check_choice(f"{prefix}polish", polish, POLISHES)
    check_int(f"{prefix}polish_steps", steps, minimum=1)
    check_number(f"{prefix}polish_tol", tol, low=0.0, inclusive=True)
    check_number(f"{prefix}polish_grad_tol", grad_tol, low=0.0, inclusive=True)


def check_optimizer(optimizer) -> None:
    """``optimizer`` must be ``None`` or an ``optax.GradientTransformation``."""
    if optimizer is not None and not isinstance(optimizer, optax.GradientTransformation):
        raise TypeError(
            f"`optimizer` must be an optax.GradientTransformation (e.g. optax.adam(1e-3)) "
            f"or None; got {type(optimizer).__name__}."
        )


def config_settings(config) -> dict:
    """A frozen config as JSON-ready settings: a user's optax optimizer is named, not kept."""
    settings = dataclasses.asdict(config)
    if getattr(config, "optimizer", None) is not None:
        settings["optimizer"] = "custom optax.GradientTransformation"
    return settings


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


def _standard_normal_draw(fn, eps):
    """A draw of ``fn`` from standard normals ``eps`` of its shape, for the Normal and
    HalfNormal priors of the model (``None`` for any other distribution)."""
    base = fn.base_dist if isinstance(fn, dist.Independent) else fn
    if type(base) is dist.Normal:
        return base.loc + base.scale * eps
    if type(base) is dist.HalfNormal:
        return base.scale * jnp.abs(eps)
    return None


#: Where the fits start the learned per-input scales ``λ_j`` of ARD (``ard=True``): at 1
#: for every input, not at a prior draw. A member that starts with an input's ``λ_j`` near
#: 0 can lose that input for good: the prior then pulls ``λ_j`` and the input's weights
#: to 0 faster than the fit, starting from small weights, learns the input's effect (an
#: even effect such as friedman1's ``(x₃ − ½)²`` has no first-order gradient there).
#: Friedman1, 2 000 rows, 5 % noise, width 8 (``benchmarks/results/ard_start.json``):
#: from prior draws 7 of 32 members ended with ``λ₃ ≈ 0.001`` and a negative log
#: posterior higher by 3 300 nats (relative RMSE 31 % against 1.5 %); started at 1,
#: none of 32.
ARD_START = 1.0


def _sample_prior(key, model, x, y, shapes, fixed=None):
    """One prior draw of the latent sites ``shapes`` (``{name: shape}``), ancestral: each
    site given the ones before it; the sites in ``fixed`` (``{name: value}``) take that
    value instead (and the sites after them are drawn given it).

    Normal and HalfNormal sites are drawn as ``loc + scale · ε`` and ``scale · |ε|`` from
    one block of standard normals, one random-number call in all; any other site draws
    from its own distribution (NumPyro's ``seed``). One call instead of a key split and a
    draw per site cut the compilation of this program from 2.4 s to 0.5 s (width 8,
    8 cubic layers, 8 members, 2 CPU cores): every engine's MAP fits start here.
    """
    names = tuple(shapes)
    sizes = [int(np.prod(shapes[name])) for name in names]
    flat = jax.random.normal(jax.random.fold_in(key, 1), (sum(sizes),))
    offsets = np.cumsum([0, *sizes])
    eps = {
        name: flat[a:b].reshape(shapes[name])
        for name, a, b in zip(names, offsets[:-1], offsets[1:])
    }

    fixed = fixed or {}

    def draw(msg):
        if msg["name"] not in eps:  # observed sites are not in eps
            return None
        if msg["name"] in fixed:
            return jnp.full(shapes[msg["name"]], fixed[msg["name"]], dtype=eps[msg["name"]].dtype)
        return _standard_normal_draw(msg["fn"], eps[msg["name"]])

    seeded = handlers.seed(model, key)
    tr = handlers.trace(handlers.substitute(seeded, substitute_fn=draw)).get_trace(x, y)
    return {name: tr[name]["value"] for name in names}


def sample_prior_unconstrained(key, model, x, y, num: int):
    """``num`` starts of MAP fits, in unconstrained space: independent prior draws of every
    latent site, but the ARD scales, which start at :data:`ARD_START`."""
    return _prior_starts(key, model, x, y, num)()


def _prior_starts(key, model, x, y, num: int) -> TracedCall:
    """:func:`sample_prior_unconstrained`, traced and not yet run."""
    starts = _prior_start_function(model, x, y, latent_sites(model, x, y))
    return traced_call(lambda k: jax.vmap(starts)(jax.random.split(k, num)), key)


def _prior_start_function(model, x, y, shapes):
    """``start(key)``: one start of a MAP fit in unconstrained space (a prior draw of the
    latent sites ``shapes``, the ARD scales at :data:`ARD_START`)."""
    fixed = {sites.ARD_SCALE: ARD_START} if sites.ARD_SCALE in shapes else {}

    def start(k):
        params = _sample_prior(k, model, x, y, shapes, fixed)
        return unconstrain_fn(model, (x, y), {}, params)

    return start


class anchor_prior(Messenger):  # noqa: N801 - a NumPyro handler, named as NumPyro's are
    """Centre the Normal prior of every latent site named in ``loc`` at ``loc[name]``.

    A site ``θ ~ Normal(m, s)`` (or its ``to_event`` form) becomes ``Normal(loc[θ], s)``
    with the same scale and event dimensions: the prior of one member of an anchored
    ensemble (Pearce et al. 2020). Sites with another prior (the HalfNormal noise
    scale) and names missing from ``loc`` are left as they are.

    Args:
        fn: the model.
        loc: ``{site: array}`` of prior means, e.g. a prior draw of every latent site.
    """

    def __init__(self, fn=None, loc=None):
        self.loc = {} if loc is None else loc
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] != "sample" or msg["is_observed"] or msg["name"] not in self.loc:
            return
        fn, event_dims = msg["fn"], 0
        if isinstance(fn, dist.Independent):
            fn, event_dims = fn.base_dist, fn.reinterpreted_batch_ndims
        if type(fn) is dist.Normal:
            msg["fn"] = dist.Normal(jnp.asarray(self.loc[msg["name"]]), fn.scale).to_event(
                event_dims
            )


class _scale_site(Messenger):  # noqa: N801 - a NumPyro handler
    """Multiply the log density of the one sample (or factor) site ``name`` by ``scale``
    (a number, or an array that broadcasts against the site's batch shape)."""

    def __init__(self, fn=None, name=None, scale=1.0):
        self.name, self.scale = name, scale
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg["name"] == self.name:
            scale = msg.get("scale")
            msg["scale"] = self.scale if scale is None else self.scale * scale


class weight_observations(_scale_site):  # noqa: N801 - a NumPyro handler
    """Multiply the log-likelihood of each observation (the site ``y``) by a weight.

    ``weights`` ``[N]`` broadcasts against the data plate, as ``handlers.scale`` with
    an array does; zero weights are allowed (bootstrap counts leave rows out). Every
    other site, the priors and the Jacobian factors of constrained sites included, is
    untouched.

    Args:
        fn: the model.
        weights: ``[N]`` non-negative weights, e.g. multinomial bootstrap counts.
    """

    def __init__(self, fn=None, weights=None):
        super().__init__(fn, sites.OBS, weights)


def member_model(model, prior_loc=None, obs_weight=None):
    """The model one ensemble member fits: its own prior means and likelihood weights.

    ``prior_loc`` (anchors, :func:`anchor_prior`) and ``obs_weight`` (bootstrap counts,
    :func:`weight_observations`) may each be ``None``, which leaves the plain model.
    """
    if prior_loc is not None:
        model = anchor_prior(model, prior_loc)
    if obs_weight is not None:
        model = weight_observations(model, obs_weight)
    return model


class PolishResult(NamedTuple):
    """What the L-BFGS polish (:func:`polish_members`) did to each member.

    Attributes:
        losses: ``[M, T]`` the loss after each of the ``T`` iterations run (a member that
            has stopped keeps its last loss).
        iterations: ``[M]`` L-BFGS iterations each member took (0: it was already at a
            point that met ``polish_grad_tol``).
        evaluations: ``[M]`` loss-and-gradient evaluations of its line searches.
        grad_norm: ``[M]`` ``‖∇U‖₂`` at its final parameters.
        converged: ``[M]`` it stopped on ``polish_tol``, ``polish_grad_tol`` or
            ``polish_window_tol`` (not on ``polish_steps``, nor on a failed line search
            that raised the loss).
    """

    losses: np.ndarray
    iterations: np.ndarray
    evaluations: np.ndarray
    grad_norm: np.ndarray
    converged: np.ndarray


class MembersResult(NamedTuple):
    """Unconstrained parameters ``[M, ...]``, Adam loss histories ``[M, steps]`` and what the
    L-BFGS polish did (``None`` without one)."""

    params: dict
    losses: jax.Array
    polish: PolishResult | None = None


def final_losses(members: MembersResult) -> np.ndarray:
    """``[M]`` each member's final loss: after the polish when there was one."""
    losses = members.losses if members.polish is None else members.polish.losses
    return np.asarray(losses[:, -1])


def program_data(model, x, y) -> tuple:
    """The data a compiled program takes as an argument: ``(model, x, y)``.

    A :class:`~bayesresnet.model.BoundModel` goes in too (its scaler is data as well);
    another model (a plain function) is ``None`` there and stays in the program's closure.
    A program that takes its data so, rather than closing over them, holds no number of
    them: a fit of other data of the same shapes runs the same program, which JAX's
    compilation cache then finds instead of compiling it
    (:mod:`bayesresnet.app.compile_cache`).
    """
    return (model if isinstance(model, BoundModel) else None, jnp.asarray(x), jnp.asarray(y))


def bind_data(model, data: tuple) -> tuple:
    """``(model, x, y)`` inside a program from its :func:`program_data` argument."""
    bound, x, y = data
    return (model if bound is None else bound), x, y


def _member_loss(model, x, y, forward=None):
    """``loss(u, prior_loc, obs_weight)``: one member's negative log joint density (its
    anchors and bootstrap weights applied by :func:`member_model`); both the Adam phase
    and the L-BFGS polish minimize it."""
    kwargs = {} if forward is None else {"forward": forward}

    def loss_fn(u, prior_loc, obs_weight):
        return potential_energy(member_model(model, prior_loc, obs_weight), (x, y), kwargs, u)

    return loss_fn


def _batch_loss(model, x, y, batch_size: int, forward=None):
    """``loss(u, prior_loc, obs_weight, key)``: :func:`_member_loss` on ``batch_size``
    rows drawn by ``key`` uniformly with replacement, their log-likelihood (with bootstrap
    weights) and stiffness penalty scaled by ``N/batch_size``: an unbiased estimate of the
    full loss. (Drawing without replacement, ``jax.random.choice``, sorts all ``N`` rows
    every step: at 2 000 rows and batches of 256 a step then cost 7.2 ms against 1.8 ms.)"""
    kwargs = {} if forward is None else {"forward": forward}
    n = x.shape[0]

    def loss_fn(u, prior_loc, obs_weight, key):
        rows = jax.random.randint(key, (batch_size,), 0, n)
        weight = jnp.full(batch_size, n / batch_size, dtype=x.dtype)
        if obs_weight is not None:
            weight = weight * obs_weight[rows]
        # The stiffness penalty sums over the rows too (bayesresnet.stiffness).
        member = _scale_site(
            member_model(model, prior_loc, weight), sites.STIFFNESS_PENALTY, n / batch_size
        )
        return potential_energy(member, (x[rows], y[rows]), kwargs, u)

    return loss_fn


def uses_batches(batch_size, num_rows: int) -> bool:
    """Whether Adam steps run on batches: a ``batch_size`` below the number of rows."""
    return batch_size is not None and batch_size < num_rows


def _member_steps(model, x, y, optimizer, forward=None, batch_size=None):
    """``run(u, opt_state, prior_loc, obs_weight, length) -> ((u, opt_state), losses)``.

    With ``batch_size`` below the number of rows, each step's loss and gradient come from
    a batch of rows (:func:`_batch_loss`), and ``opt_state`` is the pair ``(optax state,
    PRNG key)`` of the member (:func:`batched_state`).
    """
    batched = uses_batches(batch_size, x.shape[0])
    loss_fn = (
        _batch_loss(model, x, y, batch_size, forward)
        if batched
        else _member_loss(model, x, y, forward)
    )
    grad_fn = jax.value_and_grad(loss_fn)

    def run(u, opt_state, prior_loc, obs_weight, length):
        def step(carry, _):
            u, state = carry
            if batched:
                state, key = state
                key, k_rows = jax.random.split(key)
                loss, grads = grad_fn(u, prior_loc, obs_weight, k_rows)
            else:
                loss, grads = grad_fn(u, prior_loc, obs_weight)
            updates, state = optimizer.update(grads, state, u)
            return (optax.apply_updates(u, updates), (state, key) if batched else state), loss

        return jax.lax.scan(step, (u, opt_state), None, length=length)

    return run


def batched_state(key, optimizer, u0, batch_size, num_rows: int):
    """The members' initial optimizer states ``[M, ...]`` for :func:`_member_steps`: the
    optax state, paired with one PRNG key per member (from ``fold_in(key, 1)``) when the
    steps use batches. Pure: traced inside the program that draws the members' starts
    (:func:`member_input_call`)."""
    state = jax.vmap(optimizer.init)(u0)
    if not uses_batches(batch_size, num_rows):
        return state
    num_members = jax.tree_util.tree_leaves(u0)[0].shape[0]
    return state, jax.random.split(jax.random.fold_in(key, 1), num_members)


def make_member_trainer(model, x, y, optimizer, num_steps: int, forward=None):
    """``train(u0, prior_loc, obs_weight) -> (u, losses)`` for one member.

    ``prior_loc`` and ``obs_weight`` may be ``None`` (plain MAP) or arrays (anchors,
    bootstrap counts), applied to the model by :func:`member_model`. ``forward``
    replaces the model's network (``model(..., forward=...)``) when given. The function
    is pure and traceable: vmap it over members.
    """
    run = _member_steps(model, x, y, optimizer, forward)

    def train(u0, prior_loc, obs_weight):
        (u, _), losses = run(u0, optimizer.init(u0), prior_loc, obs_weight, num_steps)
        return u, losses

    return train


def make_optimizer(
    learning_rate: float,
    num_steps: int,
    *,
    schedule: str = "cosine",
    warmup_steps: int = 0,
    clip_norm: float = 100.0,
    optimizer: optax.GradientTransformation | None = None,
) -> optax.GradientTransformation:
    """The optimizer of every MAP, ensemble and SVI fit: clipped Adam on a schedule.

    ``optax.chain(clip_by_global_norm(clip_norm), adam(schedule))``, or ``optimizer``
    itself when the user gives one (any ``optax.GradientTransformation``, e.g. a chain of
    their own); the other arguments are then unused.
    """
    check_optimizer(optimizer)
    if optimizer is not None:
        return optimizer
    return optax.chain(
        optax.clip_by_global_norm(clip_norm),
        optax.adam(make_schedule(schedule, learning_rate, num_steps, warmup_steps)),
    )


def _config_optimizer(config: EnsembleConfig, params: dict):
    """The Adam phase's optimizer of parameters ``params`` (a dict by site): the ARD
    scales, where ``params`` has them, held for ``config.ard_warmup`` of the steps."""
    optimizer = make_optimizer(
        config.learning_rate,
        config.num_steps,
        schedule=config.schedule,
        warmup_steps=config.warmup_steps,
        clip_norm=config.clip_norm,
        optimizer=config.optimizer,
    )
    steps = ard_held_steps(config.ard_warmup, config.num_steps)
    if not steps or sites.ARD_SCALE not in params:
        return optimizer
    return hold_sites(optimizer, (sites.ARD_SCALE,), steps)


def ard_held_steps(ard_warmup: float, num_steps: int) -> int:
    """Adam steps through which the ARD scales are held: ``ard_warmup`` of
    :class:`EnsembleConfig` as a number of the ``num_steps`` steps (rounded up)."""
    return math.ceil(ard_warmup * num_steps)


def hold_sites(
    optimizer: optax.GradientTransformation, names, steps: int
) -> optax.GradientTransformation:
    """``optimizer`` on every site but ``names``, whose updates are zero for the first
    ``steps`` steps, so they stay where they start; then ``optimizer`` moves them too.
    Each group's updates are those ``optimizer`` makes of its own gradients (the held
    sites' moments gather from the first step)."""
    held = frozenset(names)

    def labels(u):
        return {name: "hold" if name in held else "fit" for name in u}

    late = optax.chain(
        optimizer, optax.scale_by_schedule(lambda count: (count >= steps).astype(jnp.float32))
    )
    return optax.multi_transform({"fit": optimizer, "hold": late}, labels)


def member_inputs(key, model, x, y, config: EnsembleConfig):
    """Initial values, anchors and bootstrap weights of every member (leading axis M)."""
    return member_input_call(key, model, x, y, config)()


def member_input_call(key, model, x, y, config: EnsembleConfig, init=None) -> TracedCall:
    """:func:`member_inputs` as one program, traced and not yet run (:class:`TracedCall`:
    its ``shapes`` are known before it compiles); with ``init``, ``init(u0)`` (the
    optimizer's initial state) is a fourth output of the same program. The keys are split
    inside it: an eager split compiles a program of its own."""
    m, n = config.num_members, x.shape[0]
    shapes = latent_sites(model, x, y)
    starts = _prior_start_function(model, x, y, shapes)

    def counts(k):
        idx = jax.random.randint(k, (n,), 0, n)
        return jnp.zeros(n).at[idx].add(1.0)

    def inputs(key):
        k_init, k_anchor, k_boot = jax.random.split(key, 3)
        u0 = jax.vmap(starts)(jax.random.split(k_init, m))
        anchors = weights = None
        if config.anchored:
            # Each member's prior mean is a fresh prior draw of every latent site;
            # anchor_prior re-centres the Normal priors among them (the network weights).
            anchors = jax.vmap(lambda k: _sample_prior(k, model, x, y, shapes))(
                jax.random.split(k_anchor, m)
            )
        if config.bootstrap:
            weights = jax.vmap(counts)(jax.random.split(k_boot, m))
        if init is None:
            return u0, anchors, weights
        return u0, anchors, weights, init(u0)

    return traced_call(inputs, key)


def member_block_size(config: EnsembleConfig) -> int:
    """Steps per compiled block of :func:`train_members`: ``num_steps`` / :data:`MEMBER_BLOCKS`."""
    return -(-config.num_steps // MEMBER_BLOCKS)


def _adjoint_forward():
    from bayesresnet import ode

    return ode.adjoint_forward


def train_members(
    key,
    model,
    x,
    y,
    config: EnsembleConfig,
    timer: Timer | None = None,
    *,
    converged: Callable | None = None,
    prepare: Callable | None = None,
):
    """Train all members as one jitted, vmapped program (sharded over devices).

    The steps run in compiled blocks of :func:`member_block_size` steps, with progress
    between them (:func:`~bayesresnet.infer.show_progress`), the same blocks either way.

    With ``config.polish="lbfgs"`` the Adam phase is followed by :func:`polish_members`.

    On one device (:func:`compiles_ahead`) the Adam block, then the polish's programs, are
    traced first, from the shapes of the members' starts, and compiled in the background
    (:func:`compile_ahead`): the Adam block compiles while the starts are drawn (their own
    program compiles here), the polish while the Adam phase runs.

    Args:
        converged: ``converged(losses [M, T]) -> bool``: with it, training goes on after
            ``num_steps`` (at the schedule's final learning rate), block by block, until
            it says so or ``config.max_steps`` (default ``3 · num_steps``) are done;
            without it, ``num_steps`` are run.
        prepare: ``prepare(u0)``, given the members' starts ``{site: [M, ...]}`` (on one
            device their ``jax.ShapeDtypeStruct`` shapes, before the starts are drawn),
            called once the programs are on their way, before the Adam phase runs: the
            caller's own programs to compile ahead (the ensemble's noise re-estimate),
            queued behind these.

    Returns:
        :class:`MembersResult` with unconstrained parameters ``[M, ...]``, the Adam
        phase's loss history ``[M, steps run]`` and the polish's :class:`PolishResult`.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    timer = timer or Timer()
    optimizer = _config_optimizer(config, latent_sites(model, x, y))
    # Traced, not yet run: on one device the programs below compile in the background
    # from these shapes while the members' starts and optimizer states compile and run.
    init = functools.partial(batched_state, key, optimizer, batch_size=config.batch_size)
    call = member_input_call(key, model, x, y, config, init=lambda u: init(u, num_rows=len(x)))
    u0, anchors, weights, state = call.shapes
    forward = _adjoint_forward() if config.gradient == "adjoint" else None
    in_axes = (0, 0, None if anchors is None else 0, None if weights is None else 0)
    data = program_data(model, x, y)  # an argument of the programs, not their constants

    def block(carry, start, length):
        u, state, anchors, weights, data = carry
        run = _member_steps(*bind_data(model, data), optimizer, forward, config.batch_size)
        train = jax.vmap(lambda *args: run(*args, length), in_axes=in_axes)
        (u, state), losses = train(u, state, anchors, weights)
        return (u, state, anchors, weights, data), losses

    size, ahead, polishing = member_block_size(config), {}, None
    lanes = (0, 0, *in_axes[2:], None)  # the members run side by side on the CPU's cores
    if compiles_ahead():  # the polish traced while the Adam block compiles, then compiled
        carry = lane_shapes((u0, state, anchors, weights, data), lanes)
        ahead = {size: compile_ahead(block_program(block, size), carry, 0)}
        polishing = _later_programs(model, x, y, u0, config, anchors, weights, forward, prepare)
    u0, anchors, weights, state = shard_leading(call(), name="members")
    if not compiles_ahead():
        polishing = _later_programs(model, x, y, u0, config, anchors, weights, forward, prepare)
    total, stop = config.num_steps, None
    if converged is not None:
        total = config.max_steps or 3 * config.num_steps
        history = []

        def stop(out, done):
            history.append(np.asarray(out))
            return done >= config.num_steps and converged(np.concatenate(history, axis=1))

    # Always the same blocks, shown or not: block lengths decide the compiled programs and
    # so the last bits of the result, which must not depend on whether progress is shown.
    # The bar counts the most steps the members may run (training on included).
    with progress_bar(config.num_members * total, "MAP fits") as bar:
        (u, *_), losses = run_blocks(
            block,
            (u0, state, anchors, weights, data),
            total,
            block_size=size,
            ahead=ahead,
            progress=bar,
            units=config.num_members,
            timer=timer,
            compile_label="compile_s",
            stop=stop,
            lanes=lanes,
        )
    polish = None
    if polishing is not None:
        u, polish = polish_members(
            model, x, y, u, config, anchors=anchors, weights=weights, timer=timer,
            forward=forward, programs=polishing,
        )  # fmt: skip
    return MembersResult(u, jnp.concatenate(losses, axis=1), polish)


def _later_programs(model, x, y, u0, config, anchors, weights, forward, prepare):
    """The polish's programs (or ``None``) and the caller's own (``prepare(u0)``), for
    members shaped as ``u0``: compiled ahead on one device (:func:`train_members`)."""
    polishing = None
    if config.polish == "lbfgs":
        polishing = polish_programs(
            model, x, y, u0, config, anchors=anchors, weights=weights, forward=forward,
            ahead=compiles_ahead(),
        )  # fmt: skip
    if prepare is not None:
        prepare(u0)
    return polishing


class _PolishCarry(NamedTuple):
    """One member's L-BFGS iterate: parameters, optax state, and whether it has stopped."""

    u: dict
    state: optax.OptState
    done: jax.Array
    converged: jax.Array
    iterations: jax.Array
    evaluations: jax.Array
    recent: jax.Array  # [window] the losses of the last `window` iterations, a ring


def _keep(accept, new, old):
    """``new`` where ``accept``, else ``old``, leaf by leaf (the mask of stopped members)."""
    return jax.tree_util.tree_map(lambda a, b: jnp.where(accept, a, b), new, old)


def _polish_steps(loss_for, solver, num_obs: int, tol: float, grad_tol: float, window=(1, 0.0)):
    """``(init, run)`` of one member's L-BFGS polish, to be vmapped over members.

    ``loss_for(data)`` gives the loss ``loss(u, prior_loc, obs_weight)`` of the data
    ``data`` (a :func:`program_data` argument of the programs). ``init(u, prior_loc,
    obs_weight, data) -> carry``; ``run(carry, prior_loc, obs_weight, data, length) ->
    (carry, losses [length])``: ``length`` iterations, each a no-op once the
    member has stopped (see :func:`polish_members` for the tests). ``window``:
    ``(iterations, limit)``: a member also stops when its loss fell by at most ``limit``
    over the last ``iterations`` iterations (``limit`` 0: no such test).
    """
    grad_limit = grad_tol * num_obs
    span, window_limit = window

    def met(decrease, scale, gnorm):  # each test applies only when its tolerance is > 0
        small = (tol > 0) & (jnp.abs(decrease) <= tol * scale)
        return small, (grad_tol > 0) & (gnorm <= grad_limit)

    def init(u, prior_loc, obs_weight, data):
        value, grad = jax.value_and_grad(loss_for(data))(u, prior_loc, obs_weight)
        # The state holds the loss and gradient at u, as after a line search, so that each
        # iteration reads them from it: what optax.value_and_grad_from_state does, without
        # its lax.cond, which vmap over members turns into a select that evaluates the
        # gradient anew at every iteration.
        state = optax.tree.set(solver.init(u), value=value, grad=grad)
        gnorm = optax.tree.norm(grad)
        ok = jnp.isfinite(value) & jnp.isfinite(gnorm)
        flat = ok & met(0.0, 1.0, gnorm)[1]
        one = jnp.ones((), jnp.int32)
        # Slot k % span holds the loss after iteration k; +inf until then, so the window
        # test cannot stop a member before its first `span` iterations.
        recent = jnp.full((span,), jnp.inf, value.dtype).at[0].set(value)
        return _PolishCarry(u, state, ~ok | flat, flat, 0 * one, one, recent)

    def run(carry, prior_loc, obs_weight, data, length):
        loss_fn = loss_for(data)

        def value_fn(u):
            return loss_fn(u, prior_loc, obs_weight)

        def step(c, _):  # a stopped member is held: the cond skips its iteration
            return jax.lax.cond(c.done, lambda c: (c, optax.tree.get(c.state, "value")), iterate, c)

        def iterate(c):  # a member that has not stopped: neither flag of `c` is set yet
            value = optax.tree.get(c.state, "value")
            grad = optax.tree.get(c.state, "grad")
            updates, state = solver.update(
                grad, c.state, c.u, value=value, grad=grad, value_fn=value_fn
            )
            new = optax.tree.get(state, "value")
            gnorm = optax.tree.norm(optax.tree.get(state, "grad"))
            finite = jnp.isfinite(new) & jnp.isfinite(gnorm)
            scale = jnp.maximum(jnp.maximum(jnp.abs(value), jnp.abs(new)), 1.0)
            small, flat = met(value - new, scale, gnorm)
            lower = finite & (new <= value)
            # A step that raised the loss (a failed line search) or left it non-finite is
            # refused; the member stops there.
            slot = (c.iterations + 1) % span  # the loss `span` iterations before this one
            slow = (window_limit > 0) & lower & (c.recent[slot] - new <= window_limit)
            searches = optax.tree.get(state, "num_linesearch_steps")
            c = _PolishCarry(
                u=_keep(lower, optax.apply_updates(c.u, updates), c.u),
                state=_keep(lower, state, c.state),
                done=~lower | small | flat | slow,
                converged=finite & (small | (lower & (flat | slow))),
                iterations=c.iterations + lower.astype(jnp.int32),
                evaluations=c.evaluations + searches.astype(jnp.int32),
                recent=jnp.where(lower, c.recent.at[slot].set(new), c.recent),
            )
            return c, optax.tree.get(c.state, "value")

        return jax.lax.scan(step, carry, None, length=length)

    return init, run


class PolishPrograms(NamedTuple):
    """The programs of :func:`polish_members`, made by :func:`polish_programs`.

    Attributes:
        init: ``init(params, anchors, weights, data) -> carry``, the members' first
            iterates.
        block: the :func:`run_blocks` block of ``length`` iterations of every member.
        block_size: iterations per block.
        ahead: ``{length: Future}`` of blocks compiled ahead (:func:`compile_ahead`).
        data: the programs' :func:`program_data` argument.
    """

    init: Callable
    block: Callable
    block_size: int
    ahead: dict
    data: tuple


def polish_lanes(anchors, weights) -> tuple:
    """The lanes (:func:`run_blocks`) of the polish's carry ``(iterates, anchors, weights,
    data)``: every member's own, the data shared."""
    return (0, None if anchors is None else 0, None if weights is None else 0, None)


def polish_programs(
    model, x, y, params, config: EnsembleConfig, *, anchors=None, weights=None,
    forward=None, ahead: bool = False,
) -> PolishPrograms:  # fmt: skip
    """The programs of :func:`polish_members` for members shaped as ``params``.

    With ``ahead``, both the first iterate and a block are traced here and compiled in
    the background (:func:`compile_ahead`): :func:`train_members` makes them before its
    Adam phase, so that they compile while it runs.
    """
    init, run = _polish_steps(
        lambda data: _member_loss(*bind_data(model, data), forward),
        optax.lbfgs(),
        x.shape[0],
        config.polish_tol,
        config.polish_grad_tol,
        (config.polish_window, config.polish_window_tol * np.size(y)),
    )
    in_axes = (0, None if anchors is None else 0, None if weights is None else 0, None)
    start = jax.jit(jax.vmap(init, in_axes=in_axes))
    data = program_data(model, x, y)

    def block(carry, start, length):
        c, *given = carry  # anchors, weights, data
        c, losses = over_members(lambda *args: run(*args, length), in_axes)(c, *given)
        return (c, *given), (losses, c.done)

    size = -(-config.polish_steps // MEMBER_BLOCKS)
    if not ahead:
        return PolishPrograms(functools.partial(compiled_call, start), block, size, {}, data)
    first = compile_ahead(start, params, anchors, weights, data, once=True)
    carry = (jax.eval_shape(start, params, anchors, weights, data), anchors, weights, data)
    carry = lane_shapes(carry, polish_lanes(anchors, weights))
    blocks = {size: compile_ahead(block_program(block, size), carry, 0)}
    return PolishPrograms(lambda *args: first.result()(*args), block, size, blocks, data)


def polish_members(
    model,
    x,
    y,
    params,
    config: EnsembleConfig,
    *,
    anchors=None,
    weights=None,
    timer: Timer | None = None,
    forward=None,
    programs: PolishPrograms | None = None,
) -> tuple[dict, PolishResult]:
    """Finish every member's MAP fit with full-batch L-BFGS, as one vmapped program.

    Each member minimizes the loss of its Adam phase (:func:`_member_loss`: its anchors
    and bootstrap weights included) with ``optax.lbfgs`` (memory 10, zoom line search
    for the strong Wolfe conditions), from its parameters ``params``. A member stops
    when an iteration lowers its loss ``U`` by at most ``polish_tol · max(|U|, 1)``,
    when ``‖∇U‖₂ ≤ polish_grad_tol · N``, when its last ``polish_window`` iterations
    lowered ``U`` by at most ``polish_window_tol`` per observed value (``y.size``
    values), when a line search fails to lower the loss
    (that step is refused), or after ``polish_steps`` iterations; from then on its
    parameters are held (masked) while the others go on. The iterations run in compiled
    blocks of ``polish_steps / 10`` (progress, Ctrl-C between blocks, as
    :func:`run_blocks` does), and the run ends after the block in which every member
    has stopped.

    Args:
        params: the members' unconstrained parameters ``{site: [M, ...]}``.
        config: ``polish_steps``, ``polish_tol``, ``polish_grad_tol``, ``polish_window``,
            ``polish_window_tol`` and ``num_members``.
        anchors, weights: the members' prior means and likelihood weights (leading axis
            ``M``) or ``None``, as :func:`member_inputs` made them.
        forward: replaces the model's network (the adjoint gradient).
        programs: :func:`polish_programs` of the same arguments, made (and maybe
            compiled) beforehand; made here by default.

    Returns:
        ``(params, PolishResult)``.

    References:
        Liu, Nocedal (1989), On the limited memory BFGS method for large scale
        optimization. Math. Programming.
        Nocedal, Wright (2006), Numerical Optimization, Algorithms 3.5-3.6 and 7.4-7.5.
    """
    timer = timer or Timer()
    if programs is None:
        programs = polish_programs(
            model, x, y, params, config, anchors=anchors, weights=weights, forward=forward
        )
    carry = programs.init(params, anchors, weights, programs.data)
    units, steps = config.num_members, config.polish_steps
    with progress_bar(units * steps, "L-BFGS polish") as bar:
        (c, *_), out = run_blocks(
            programs.block,
            (carry, anchors, weights, programs.data),
            steps,
            block_size=programs.block_size,
            ahead=programs.ahead,
            progress=bar,
            units=units,
            timer=timer,
            label="polish_s",
            compile_label="compile_s",
            stop=lambda out, done: bool(np.all(np.asarray(out[1]))),
            lanes=polish_lanes(anchors, weights),
        )
    # in numpy: each eager jax op on a new shape compiles a program (~1.4 s in all here)
    grad = [
        np.asarray(g).reshape(units, -1) for g in jax.tree.leaves(optax.tree.get(c.state, "grad"))
    ]
    result = PolishResult(
        losses=np.concatenate([np.asarray(o[0]) for o in out], axis=1),
        iterations=np.asarray(c.iterations),
        evaluations=np.asarray(c.evaluations),
        grad_norm=np.sqrt(sum(np.sum(np.abs(g) ** 2, axis=1) for g in grad)),
        converged=np.asarray(c.converged),
    )
    return c.u, result


def over_members(fn: Callable, in_axes: tuple) -> Callable:
    """``fn`` over the members (the leading axis of the arguments ``in_axes`` marks 0):
    one member after another (``lax.map``) on the CPU, vectorized (``vmap``) elsewhere.

    Under ``vmap`` a ``lax.cond`` whose predicate differs between members becomes a
    select that computes both branches, and a ``while_loop`` runs until its last member
    is done: the zoom line search of ``optax.lbfgs`` evaluates the loss and its gradient
    in both branches of such a cond. On the CPU, members one after another evaluate only
    what each line search needs and skip a stopped member's iterations. Measured with
    ``auto`` on borehole, friedman1, ishigami, sobol_g and oscillator, noise-free and
    with 5 % noise, on 2 cores (``benchmarks/results/polish_map_N2000`` against
    ``polish_vmap_N2000``, ``…_N500`` alike, the two codes one after the other): the fit
    took 37–67 s instead of 50–84 s at 2 000 rows and 31–41 s instead of 41–48 s at 500
    (oscillator, 3 outputs, 67–68 s either way), at the same accuracy (relative RMSE
    and CRPS within 4.5 % either way). In a scratch fit of noisy borehole at
    2 000 rows the polish took 14 s instead of 26 s and compiled in about 4 s less.
    On an accelerator, where the members' arithmetic runs side by side, ``vmap`` is kept
    (unmeasured there); the Adam phase, which has no such branch, stays vectorized on the
    CPU too (at 200 rows one member after another took 8.8 s against 5.7 s).
    """
    if jax.default_backend() != "cpu":
        return jax.vmap(fn, in_axes=in_axes)

    def mapped(*args):
        def one(batch):  # the mapped arguments of one member, the others as given
            it = iter(batch)
            return fn(*(next(it) if axis == 0 else a for a, axis in zip(args, in_axes)))

        members = tuple(a for a, axis in zip(args, in_axes, strict=True) if axis == 0)
        return jax.lax.map(one, members)

    return mapped


class MapStart(NamedTuple):
    """The MAP warm start of a sampler or a guide.

    Attributes:
        params: unconstrained starts ``{site: [C, ...]}``, the lowest final loss first.
        final_loss: their final losses ``[C]``.
        spread: every finite fit as flat vectors ``[M_finite, D]`` (their variance can
            seed a mass matrix).
        num_members: the number ``M`` of fits trained.
        polish_evaluations: loss-and-gradient evaluations of their L-BFGS polish, all
            fits together (0 without one).
    """

    params: dict
    final_loss: np.ndarray
    spread: np.ndarray
    num_members: int
    polish_evaluations: int = 0


def map_start(
    key,
    model,
    x,
    y,
    *,
    num_starts: int,
    num_steps: int,
    learning_rate: float,
    num_members: int | None = None,
    polish: str = "none",
    polish_steps: int = EnsembleConfig.polish_steps,
    timer: Timer | None = None,
) -> MapStart:
    """The ``num_starts`` best of ``num_members`` MAP fits (:func:`train_members`).

    Each fit starts at a prior draw and runs ``num_steps`` clipped-Adam steps (cosine
    schedule, peak ``learning_rate``), then, with ``polish="lbfgs"``, at most
    ``polish_steps`` L-BFGS iterations (:func:`polish_members`, with
    :class:`EnsembleConfig`'s tolerances); the fits with the lowest final loss are kept,
    so that chains (or a guide) start in the posterior's bulk, not in its tails.

    Raises:
        FloatingPointError: fewer than ``num_starts`` fits are finite.
    """
    timer = timer or Timer()
    num_members = num_members or num_starts
    ensemble = EnsembleConfig(
        num_members=num_members,
        num_steps=num_steps,
        learning_rate=learning_rate,
        polish=polish,
        polish_steps=polish_steps,
    )
    with timer("init_s"):
        members = train_members(key, model, x, y, ensemble)
    final = final_losses(members)
    order = np.argsort(np.where(np.isfinite(final), final, np.inf))
    flat = np.asarray(flatten_members(members.params)[0])
    finite = np.isfinite(final) & np.all(np.isfinite(flat), axis=1)
    if finite.sum() < num_starts:
        raise FloatingPointError(
            f"only {int(finite.sum())} of {num_members} MAP starts are finite; lower "
            f"`init_learning_rate` (now {learning_rate})."
        )
    chosen = jnp.asarray(order[:num_starts])
    params = jax.tree_util.tree_map(lambda a: a[chosen], members.params)
    evaluations = 0 if members.polish is None else int(members.polish.evaluations.sum())
    return MapStart(params, final[order[:num_starts]], flat[finite], num_members, evaluations)


def make_log_density(model, x, y) -> Callable:
    """``log_density(u)``: the model's log joint density at unconstrained values ``u``.

    The negative of NumPyro's potential energy (Jacobians of the constraining transforms
    included), so samplers written for a log density (blackjax) see the same target as
    NumPyro's NUTS.
    """

    def log_density(u):
        return -potential_energy(model, (x, y), {}, u)

    return log_density


def flatten_members(params):
    """Stacked parameter dicts ``{site: [M, ...]}`` as a matrix ``[M, D]`` and the inverse.

    Returns:
        ``(flat, unravel)``: ``flat[m]`` is ``ravel_pytree`` of member ``m`` and
        ``unravel(flat[m])`` gives its dict back.
    """
    first = jax.tree_util.tree_map(lambda a: a[0], params)
    _, unravel = ravel_pytree(first)
    flat = jax.vmap(lambda p: ravel_pytree(p)[0])(params)
    return flat, unravel


def constrain_draws(model, x, y, z, unravel=None) -> dict:
    """Constrained values of every site for unconstrained draws ``z`` ``[C, S, ...]``.

    Args:
        z: a dict of unconstrained sites, each ``[C, S, ...]``, or (with ``unravel``)
            flat vectors ``[C, S, D]``.
        unravel: turns one flat vector into the dict of sites (see
            :func:`flatten_members`); ``None`` when ``z`` is already a dict.

    Returns:
        ``{site: np.ndarray [C, S, ...]}``.
    """
    leaves = jax.tree_util.tree_leaves(z)
    lead = leaves[0].shape[:2]
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[2:]), z)
    unravel = unravel or (lambda u: u)

    def one(u):  # deterministic sites too: the coefficients of a non-centred model
        return constrain_fn(model, (x, y), {}, unravel(u), return_deterministic=True)

    constrained = jax.jit(jax.vmap(one))(flat)
    return {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in constrained.items()}


def shard_leading(tree, *, name: str = "chains"):
    """Place a pytree's leading axis (chains, members) across ``jax.devices()``.

    With one device, or a leading size that is not a multiple of the device count, the
    tree is returned unchanged (the latter with a warning naming the fix). Computations
    jitted on sharded inputs run on every device at once (``jax.sharding``).
    """
    devices = jax.devices()
    leaves = jax.tree_util.tree_leaves(tree)
    if len(devices) < 2 or not leaves:
        return tree
    size = leaves[0].shape[0]
    if size % len(devices):
        import warnings

        warnings.warn(
            f"{size} {name} cannot be split evenly over {len(devices)} devices; running "
            f"them on one device. Use a multiple of {len(devices)} {name} to use them all.",
            UserWarning,
            stacklevel=3,
        )
        return tree
    mesh = Mesh(np.asarray(devices), (name,))
    sharding = NamedSharding(mesh, PartitionSpec(name))
    return jax.device_put(tree, sharding)


def run_blocks(
    block: Callable,
    carry,
    total: int,
    *,
    num_blocks: int = 1,
    block_size: int | None = None,
    progress=None,
    units: int = 1,
    timer: Timer | None = None,
    label: str = "run_s",
    compile_label: str | None = None,
    stop: Callable | None = None,
    ahead: dict | None = None,
    lanes=None,
):
    """Run ``total`` steps of a pure block function in about ``num_blocks`` compiled blocks.

    The one block-compiled loop of the engines (chains, MAP fits, SVI): equal blocks and
    at most one shorter, each length compiled once.

    Args:
        block: ``block(carry, start, length) -> (carry, out)``: ``length`` steps from
            step ``start`` (a traced integer); pure and traceable.
        carry: the initial carry (a pytree).
        total: steps in all.
        num_blocks: the run is cut into about this many blocks.
        block_size: steps per block instead (the last block may be shorter).
        progress: an object with ``update(n)`` told ``length · units`` after each block,
            and the rest of ``total · units`` when ``stop`` ends the run early.
        timer: accumulates the wall time under ``label``.
        compile_label: when given, compilation is timed apart under this name.
        stop: ``stop(out, done) -> bool`` after each block: ``True`` ends the run early
            (it may also raise).
        ahead: ``{length: Future}``: blocks of these lengths compiled ahead
            (:func:`compile_ahead` of :func:`block_program`, for the carry of one group
            of lanes, :func:`~bayesresnet.infer.lanes.lane_shapes`); only the wait for
            them counts under ``compile_label``.
        lanes: the carry's independent lanes (members, chains): a prefix of ``carry``,
            ``0`` where its leaves have a leading lane axis, ``None`` where they are
            shared. The lanes are then run in groups side by side on the CPU's cores
            (:mod:`bayesresnet.infer.lanes`), and every leaf of ``block``'s output must
            have the lane axis first (the outputs are then NumPy arrays).

    Returns:
        ``(carry, outputs)``: the final carry and the list of the blocks' outputs.
    """
    timer = timer or Timer()
    compiled, ahead = {}, ahead or {}
    groups = 1 if lanes is None else lane_groups(num_lanes(carry, lanes))
    parts = split_lanes(carry, lanes, groups)

    def program(length, start):
        if length not in compiled:
            program = ahead.get(length) or block_program(block, length)
            # Without compile_label the compilation is timed with the run, as a first call.
            with timer(compile_label or label):
                program = (
                    program.result()
                    if isinstance(program, Future)
                    else compile_lowered(program.lower(parts[0], start))
                )
            compiled[length] = program
        return compiled[length]

    num_blocks = max(1, min(int(num_blocks), total))
    size = block_size or (-(-total // num_blocks) if total else 0)
    outputs, done = [], 0
    while done < total:
        length = min(size, total - done)
        run = program(length, done)
        with timer(label):
            if groups == 1:
                parts[0], out = run(_laid_out_for(run, parts[0]), done)
                jax.block_until_ready(out)
            else:
                parts, outs = zip(*run_lanes(run, parts, done), strict=True)
                out = join_lanes(list(outs), 0, device=False)
        outputs.append(out)
        done += length
        if progress is not None:
            progress.update(length * units)
        if stop is not None and stop(out, done):
            if progress is not None:  # stopped early: the bar ends at 100 %
                progress.update((total - done) * units)
            break
    return join_lanes(list(parts), lanes), outputs


def _laid_out_for(program, carry):
    """``carry`` on the devices as ``program`` (a compiled block) takes it.

    A compiled program takes its inputs only as they were laid out when it was compiled.
    With the members sharded over several devices, a block may hand its carry back laid
    out otherwise (e.g. whole on every device) than the next block was compiled for.
    """
    shardings = getattr(program, "input_shardings", None)
    if shardings is None or len(jax.devices()) < 2:
        return carry
    return jax.device_put(carry, shardings[0][0])


def block_program(block: Callable, length: int):
    """The jitted program ``(carry, start) -> (carry, out)`` of :func:`run_blocks` that runs
    ``length`` steps of ``block``."""
    return jax.jit(lambda carry, start: block(carry, start, length))


@functools.cache
def _compiler() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="bayesresnet-compile")


def compiles_ahead() -> bool:
    """Whether the engines compile later programs ahead (:func:`compile_ahead`): on one
    device (on several, inputs are sharded as traced programs ahead do not know)."""
    return len(jax.devices()) == 1


def compile_ahead(program, *args, once: bool = False) -> Future:
    """``program`` (jitted) traced here for ``args`` (arrays or ``jax.ShapeDtypeStruct``)
    and compiled by XLA in a background thread: the ``Future`` of the compiled program.

    Tracing stays on the calling thread (NumPyro's handler stack is global); XLA's
    compilation, which holds no Python lock, runs beside what the caller does next (the
    L-BFGS polish compiles while the Adam phase runs). ``once``: the program runs once
    (:func:`compile_lowered`).
    """
    return _compiler().submit(compile_lowered, program.lower(*args), once=once)


#: XLA's options for a program that runs once and computes little (:func:`compile_lowered`):
#: its code is generated without LLVM's optimization passes. On 2 CPU cores, in a fit of
#: ``method="auto"`` at 200 rows (borehole, 5 % noise, a new process), the program that
#: draws the members' starts compiled in 0.29 s instead of 0.40 s and the noise
#: re-estimate's in 0.43 s instead of 0.70 s (each alone, after the fit); most of the
#: first is the code of the random-number generator. A loop run thousands of times is
#: another matter: the Adam block compiled so ran its 9 000 steps in 14 s against 2.6 s.
ONCE_OPTIONS = {"xla_backend_optimization_level": 0}

#: A program run once is compiled with :data:`ONCE_OPTIONS` up to this many floating-point
#: operations (XLA's estimate, ``Lowered.cost_analysis``); above it, the arithmetic is worth
#: the optimization. The noise re-estimate does 2.9e6 at 200 rows and 1.1e8 at 2 000
#: (where unoptimized it ran 1.25 s against 1.0 s); the starts 2e5 to 7e5.
ONCE_MAX_FLOPS = 1e7


def compile_options(lowered, once: bool = False) -> dict:
    """XLA's compile options for ``lowered``: :data:`ONCE_OPTIONS` for a program that runs
    ``once`` on the CPU with at most :data:`ONCE_MAX_FLOPS` operations, none otherwise."""
    if not once or jax.default_backend() != "cpu":
        return {}
    flops = (lowered.cost_analysis() or {}).get("flops")
    if flops is None or not flops <= ONCE_MAX_FLOPS:
        return {}
    return dict(ONCE_OPTIONS)


#: This process's compiled programs by what they compute (:func:`compile_lowered`), the
#: most recently used last; at most :data:`MAX_COMPILED` are kept.
_COMPILED: collections.OrderedDict = collections.OrderedDict()
_COMPILED_LOCK = threading.Lock()
MAX_COMPILED = 64


def compile_lowered(lowered, *, once: bool = False):
    """``lowered.compile()``, or the program this process compiled before from the same
    lowered text and argument structure; a program run ``once`` with the options of
    :func:`compile_options` (the unoptimized code of a small program compiles faster than
    it could run faster).

    Each fit traces its programs afresh (they are new functions), and ``jax.jit`` keeps
    its compilations per function, so without this a second fit of the same sizes in
    one process would compile again what it had compiled (a program that takes its data
    as arguments, :func:`program_data`, is the same text for other data too). JAX's
    persistent cache does the same across processes where it is on
    (:mod:`bayesresnet.app.compile_cache`); this one is in memory and always on.
    """
    text = hashlib.sha256(lowered.as_text().encode()).hexdigest()
    # The argument types too: the text leaves out the arguments a program does not use.
    types = tuple(jax.tree_util.tree_leaves(lowered.in_avals))  # in the order of in_tree
    options = compile_options(lowered, once)
    key = (text, lowered.in_tree, types, lowered.out_tree, tuple(sorted(options.items())))
    with _COMPILED_LOCK:
        if key in _COMPILED:
            _COMPILED.move_to_end(key)
            return _COMPILED[key]
    program = lowered.compile(compiler_options=options) if options else lowered.compile()
    with _COMPILED_LOCK:
        _COMPILED[key] = program
        while len(_COMPILED) > MAX_COMPILED:
            _COMPILED.popitem(last=False)
    return program


def compiled_call(fn: Callable, *args):
    """``jax.jit(fn)(*args)``, compiled by :func:`compile_lowered` as a program run once: a
    function made anew for each fit (a closure) that computes what an earlier one did is
    not compiled again.

    Eager call sites only: a compiled program cannot be traced, so a function that may be
    called inside another's trace (the Laplace guide's ``hessian_fn``, which NumPyro calls
    both eagerly and under ``jit``) keeps ``jax.jit``."""
    return traced_call(fn, *args)()


class TracedCall(NamedTuple):
    """``fn(*args)`` traced (``jax.jit(fn).trace``) and not yet compiled or run: its
    output's ``shapes`` are known now; calling it compiles (:func:`compile_lowered`, as a
    program run once) and runs it, as :func:`compiled_call` does."""

    traced: jax.stages.Traced
    args: tuple

    @property
    def shapes(self):
        """The output's ``jax.ShapeDtypeStruct`` tree."""
        return self.traced.out_info

    def __call__(self):
        return compile_lowered(self.traced.lower(), once=True)(*self.args)


def traced_call(fn: Callable, *args) -> TracedCall:
    """``fn(*args)`` traced now, to be compiled and run later (:class:`TracedCall`)."""
    return TracedCall(jax.jit(fn).trace(*args), args)


def clear_compiled() -> None:
    """Forget the programs :func:`compile_lowered` kept. With ``jax.clear_caches()`` the
    next fit compiles as in a new process (a benchmark's timed fits)."""
    with _COMPILED_LOCK:
        _COMPILED.clear()


def scan_chain(step: Callable, key, state, start, length: int, *, collect: Callable, thinning=1):
    """``length`` kept values of one chain: a pure ``lax.scan`` of a kernel's ``step``.

    Step ``i`` (counted from the chain's start) uses ``fold_in(key, i)``, so a run cut
    into blocks (``start`` is the first kept value of the block) draws exactly what one
    block would.

    Returns:
        ``(state, collected)``: the final state and ``collect(state, info)`` at every
        ``thinning``-th step, each leaf ``[length, ...]``.
    """

    def kept(state, j):
        def inner(state, i):
            k = jax.random.fold_in(key, (start + j) * thinning + i)
            state, info = step(k, state)
            return state, info

        state, infos = jax.lax.scan(inner, state, jnp.arange(thinning))
        last = jax.tree_util.tree_map(lambda a: a[-1], infos)
        return state, collect(state, last)

    return jax.lax.scan(kept, state, jnp.arange(length))


def run_chains(
    step: Callable,
    states,
    keys,
    num_kept: int,
    *,
    collect: Callable,
    thinning: int = 1,
    progress=None,
    num_blocks: int = 1,
    timer: Timer | None = None,
    label: str = "run_s",
):
    """Run a pure kernel for many chains at once and collect every ``thinning``-th step.

    Args:
        step: ``step(key, state) -> (state, info)`` for one chain (a
            :class:`~bayesresnet.infer.base.SamplingAlgorithm`'s ``step``).
        states: initial states, a pytree with a leading chain axis ``C``.
        keys: ``[C]`` random keys, one per chain; step ``i`` uses ``fold_in(key, i)``.
        num_kept: number of collected values per chain (``num_kept · thinning`` steps).
        collect: ``collect(state, info) -> pytree`` kept at every ``thinning``-th step.
        thinning: steps per kept value.
        progress: an object with ``update(n)`` (e.g. tqdm) told the steps done by all
            chains after each block, or ``None``.
        num_blocks: the run is cut into about this many compiled blocks (equal ones and
            at most one shorter), so that progress can be reported between them.
        timer: accumulates the wall time under ``label`` (compilation included).

    Returns:
        ``(states, collected)``: the final states and the collected pytree, each leaf
        ``[C, num_kept, ...]``.
    """
    check_int("num_kept", num_kept, minimum=0)
    check_int("thinning", thinning, minimum=1)
    num_chains = int(keys.shape[0])
    states, keys = shard_leading((states, keys))

    def block(carry, start, length):
        keys, states = carry

        def one(key, state, start):
            return scan_chain(step, key, state, start, length, collect=collect, thinning=thinning)

        states, out = jax.vmap(one, in_axes=(0, 0, None))(keys, states, start)
        return (keys, states), out

    (_, states), outputs = run_blocks(
        block,
        (keys, states),
        num_kept,
        num_blocks=num_blocks,
        progress=progress,
        units=thinning * num_chains,  # steps of all chains
        timer=timer,
        label=label,
        lanes=(0, 0),
    )
    if not outputs:
        return states, None
    collected = jax.tree_util.tree_map(lambda *a: jnp.concatenate(a, axis=1), *outputs)
    return states, collected


def sampler_gradients(post) -> int:
    """Every log-density gradient of a sampler's fit: MAP starts, warm-up and sampling."""
    s, e = post.settings, post.extra
    init = s["init_steps"] * (s.get("init_members") or s["num_chains"])
    init += e.get("init_polish_evaluations", 0)
    if s.get("init", "map") != "map":
        init = 0
    return int(init + e["num_warmup_gradient_evaluations"] + e["num_gradient_evaluations"])
