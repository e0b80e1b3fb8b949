"""Bayesian calibration of a simulator's inputs against observations, through a surrogate.

:func:`calibrate` infers the simulator inputs ``θ`` named ``unknown`` from observations
``y_obs`` ``[M, O]`` taken at known settings ``k_m`` of the other inputs, with the
surrogate's draws ``f_s`` standing in for the simulator:

    y_m = f(x_m) + ε_m,   x_m = (θ, k_m),   ε_m ~ N(0, diag(σ² + δ²)),

``σ`` the observation noise sd per output (given, or inferred with a half-normal prior)
and ``δ`` an optional model discrepancy sd per output (``discrepancy="iid"``). The
surrogate's uncertainty about ``f`` enters in one of three ways (:data:`PROPAGATE`), each
a NumPyro model sampled by NUTS:

- ``"epost"``, the expected posterior (the modular, or "cut", answer): for each of ``S``
  surrogate draws the posterior ``p(θ | y, f_s)``, pooled with equal weight,
  ``p(θ | y) = (1/S) Σ_s p(θ | y, f_s)``. The draws do not learn from the observations.
  All ``S × num_chains`` chains run in one compiled program (:data:`CHAIN_METHODS`): on
  one CPU one after another (in up to 4 groups run side by side on the cores,
  :mod:`bayesresnet.infer.lanes`), on an accelerator or several devices vectorized
  (``jax.vmap`` of NumPyro's NUTS kernel over draws and chains), its draws split over
  the devices when there are several.
- ``"elik"``, the expected likelihood: one posterior on ``(1/S) Σ_s p(y | θ, f_s)``, so
  ``p(θ | y) = Σ_s w_s p(θ | y, f_s)`` with ``w_s ∝ p(y | f_s)``, the evidence of each
  draw. The observations re-weight the draws; :attr:`CalibrationResult.effective_draws`
  says how many carry the weight.
- ``"plugin"``: the posterior-mean surrogate ``f̄ = (1/S) Σ_s f_s`` taken as exact. It
  ignores the surrogate's uncertainty and is over-confident wherever that uncertainty is
  not small against the noise; offered for comparison and labelled so.

The result, a :class:`CalibrationResult`, holds an ArviZ ``InferenceData`` (posterior of
``θ``, noise and discrepancy; posterior predictive at the observations; observed data;
pointwise log likelihood; sample statistics), convergence diagnostics per surrogate draw
and pooled, the share of each ``θ``'s posterior variance due to the surrogate
(``Var_s E[θ | s] / Var θ``, the law of total variance) and a flag when the posterior
sits where the surrogate extrapolates.

References:
    Liu, F., Bayarri, M. J. & Berger, J. O. (2009). Modularization in Bayesian analysis,
    with emphasis on analysis of computer models. Bayesian Analysis 4(1), 119-150.
    Kennedy, M. C. & O'Hagan, A. (2001). Bayesian calibration of computer models. JRSS B
    63(3), 425-464.
    Talts, S., Betancourt, M., Simpson, D., Vehtari, A. & Gelman, A. (2018). Validating
    Bayesian inference algorithms with simulation-based calibration. arXiv:1804.06788.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, initialize_model, potential_energy
from scipy import special, stats

from bayesresnet._validate import (
    check_array,
    check_choice,
    check_columns,
    check_int,
    check_level,
    check_names,
    check_table,
    did_you_mean,
)
from bayesresnet.infer.core import compile_lowered
from bayesresnet.infer.lanes import join_lanes, lane_groups, lane_threads, run_lanes, split_lanes
from bayesresnet.posterior import Posterior, function_program

__all__ = [
    "PROPAGATE",
    "METHODS",
    "DISCREPANCIES",
    "THETA",
    "NOISE",
    "DISCREPANCY",
    "OBS",
    "SurrogateDraws",
    "make_surrogate_draws",
    "CalibrationModel",
    "CalibrationResult",
    "CHAIN_METHODS",
    "chain_groups",
    "calibrate",
    "resolve_chain_method",
]

#: Site names of the calibration models (the InferenceData's variable names).
THETA, NOISE, DISCREPANCY, OBS = "theta", "noise_sd", "discrepancy_sd", "y"

#: How the surrogate's uncertainty enters; the module docstring gives each in full.
PROPAGATE = {
    "epost": "expected posterior: equal-weight pool of the posteriors given each draw",
    "elik": "expected likelihood: one posterior on the likelihood averaged over draws",
    "plugin": "posterior-mean surrogate taken as exact (over-confident; for comparison)",
}

#: Samplers: NumPyro's NUTS kernel (windowed step-size and diagonal mass adaptation).
METHODS = {"nuts": "NumPyro NUTS, target acceptance 0.95, maximum tree depth 10"}
#: NUTS's target acceptance probability. Calibration posteriors are often thin ridges
#: (inputs that trade off against each other: on the README's borehole calibration rw
#: and Kw correlate at −0.997) where NumPyro's default 0.8 takes steps too long for the
#: ridge: there (16 chains × 300 + 300 steps) 31–37 divergences and a worst R-hat of
#: 1.15–1.19 against 0–1 and 1.02–1.04 at 0.95; on 64 draws of an SVI surrogate (128
#: chains × 500 + 500) 28–74 divergences and R-hat 1.5–2.1 against 0 and 1.08, for 1.2–1.6
#: times the leapfrog steps (``benchmarks/bench_inverse.py``,
#: ``benchmarks/results/inverse_readme``, ``inverse_svi64``).
TARGET_ACCEPT_PROB = 0.95
MAX_TREE_DEPTH = 10

#: How the chains run within their one compiled program. Vectorized chains advance in
#: lock-step: every NUTS step costs the longest trajectory among them (2.7 times the mean
#: on the README's borehole calibration, 16 chains; 4.7 times on 128 chains of an SVI
#: surrogate). An accelerator runs them side by side for about the price of one, a CPU
#: core pays for every lane; so ``"auto"`` runs them one after another on one CPU device.
#: Measured on 2 CPU cores, a first call (compilation included) at target acceptance 0.8:
#: 19.2 s against 38.7 s on the README's case, 33.8 s against 94.3 s on the SVI case; at
#: 0.95 on the README's case 27.2 s against 40.4 s (``benchmarks/bench_inverse.py``,
#: ``benchmarks/results/inverse_readme``, ``inverse_svi64``). Sequential chains are cut
#: into up to 4 groups (:func:`chain_groups`) run side by side on the cores: on the
#: README's case 11.7 s against 20.6 s on 2 cores (warm; ``benchmarks/results/inverse_lanes``).
CHAIN_METHODS = {
    "auto": "sequential on one CPU device, vectorized otherwise",
    "sequential": "one chain after another (lax.map), in groups side by side on the cores: "
    "each pays only its own trajectories",
    "vectorized": "all chains in lock-step (vmap): for accelerators and several devices",
}

#: A posterior is flagged as extrapolating when more than this fraction of its draws put
#: an observation outside the training box, or give an epistemic sd (over surrogate
#: draws) above EPISTEMIC_FACTOR times its median over the training box.
EXTRAPOLATION_MASS = 0.05
EPISTEMIC_FACTOR = 3.0
#: Posterior draws on which the epistemic sd is evaluated (evenly thinned).
MAX_CHECK_DRAWS = 500
#: Points uniform in the training box whose median epistemic sd is the reference level.
REFERENCE_POINTS = 1024


def _no_discrepancy(model: CalibrationModel):
    del model
    return 0.0


def _iid_discrepancy(model: CalibrationModel):
    """An extra sd per output, half-normal with the output's scale: variance ``δ²``."""
    delta = numpyro.sample(DISCREPANCY, dist.HalfNormal(jnp.asarray(model.scale)).to_event(1))
    return delta**2


#: Model discrepancy: each entry samples its parameters and returns the extra variance
#: per output ``[O]`` added to the noise variance. (A Gaussian-process discrepancy would
#: return a covariance over the observations and needs a multivariate-normal likelihood.)
DISCREPANCIES = {None: _no_discrepancy, "iid": _iid_discrepancy}


# ------------------------------------------------------------------ surrogate draws
@dataclass(frozen=True)
class SurrogateDraws:
    """Differentiable draws ``f_s``, ``s = 0, …, S−1``, of a vector function of the inputs.

    A :class:`~bayesresnet.Posterior` becomes one with :func:`make_surrogate_draws`; any
    other source of draws (a simulator written in JAX as one draw, linear maps, another
    surrogate) can be wrapped directly.

    Attributes:
        function: ``(params_s, x [P, d]) -> [P, O]`` in raw units, pure and differentiable
            in JAX, and hashable (a module-level function or a frozen dataclass), as it
            keys the compiled samplers.
        params: a pytree of arrays whose leading axis ``S`` indexes the draws.
        input_names: one name per input, ``d`` in all.
        output_names: one name per output, ``O`` in all.
        output_scale: ``[O]`` the spread of each output (raw units): the scale of the
            half-normal priors of the noise and discrepancy sds.
        x_train: the training inputs ``[N, d]`` (the default prior box and the reference of
            the extrapolation flag), or ``None``.
    """

    function: Callable
    params: Any
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    output_scale: np.ndarray
    x_train: np.ndarray | None = None

    def __post_init__(self):
        if not callable(self.function):
            raise TypeError(
                f"`function` must be callable (params_s, x) -> [P, O]; got "
                f"{type(self.function).__name__}."
            )
        leaves = jax.tree_util.tree_leaves(self.params)
        if not leaves or len({np.shape(v)[0] if np.ndim(v) else None for v in leaves}) != 1:
            raise ValueError(
                "`params` must be a non-empty pytree of arrays sharing one leading axis (the "
                f"draws); got leading sizes {[np.shape(v)[:1] for v in leaves]}."
            )
        for name in ("input_names", "output_names"):
            object.__setattr__(self, name, check_names(name, getattr(self, name)))
        scale = check_array("output_scale", self.output_scale, ndim=1)
        if scale.shape != (len(self.output_names),) or np.any(scale <= 0):
            raise ValueError(
                f"`output_scale` must hold one positive sd per output ({len(self.output_names)}); "
                f"got {scale.tolist()}."
            )
        object.__setattr__(self, "output_scale", scale)
        if self.x_train is not None:
            x = check_table("x_train", self.x_train, len(self.input_names), columns="one per input")
            object.__setattr__(self, "x_train", x)

    @property
    def num_draws(self) -> int:
        return int(np.shape(jax.tree_util.tree_leaves(self.params)[0])[0])

    def take(self, draws) -> SurrogateDraws:
        """The draws with these indices (in this order)."""
        draws = np.asarray(draws)
        params = jax.tree_util.tree_map(lambda v: jnp.asarray(np.asarray(v)[draws]), self.params)
        return SurrogateDraws(
            self.function,
            params,
            self.input_names,
            self.output_names,
            self.output_scale,
            self.x_train,
        )

    def evaluate(self, x) -> np.ndarray:
        """``f_s(x)`` for every draw, ``[S, P, O]``."""
        x = jnp.asarray(np.asarray(x, dtype=np.float64), dtype=jnp.float32)
        return np.asarray(_evaluate_draws(self.function, self.params, x))


@functools.partial(jax.jit, static_argnums=0)
def _evaluate_draws(function, params, x):
    return jax.vmap(function, (0, None))(params, x)


def _output_scale(post: Posterior) -> np.ndarray:
    """``[O]`` the training outputs' sd in raw units: the scaler's, or for a log-transformed
    output (whose scaler holds the sd of ``log y``) the raw training values' (1 if constant)."""
    o = post.spec.out_features
    scale = np.broadcast_to(np.asarray(post.scaler.y_std, dtype=np.float64), (o,))
    if post.scaler.y_log is None:
        return scale
    raw = np.std(post.y_train, axis=0)
    return np.where(post.scaler.y_log, np.where(raw > 0, raw, 1.0), scale)


def make_surrogate_draws(post: Posterior) -> SurrogateDraws:
    """A posterior's noise-free function draws (raw units), differentiable in the inputs.

    The draws are the posterior's with chains and draws merged (chain-major), evaluated by
    :func:`bayesresnet.posterior.function_program` (raw inputs and outputs, log transforms
    included); the outputs' scale is the training outputs' sd in raw units.
    """
    if not isinstance(post, Posterior):
        raise TypeError(f"`post` must be a bayesresnet Posterior; got {type(post).__name__}.")
    function, params = function_program(post)
    d, o = post.spec.in_features, post.spec.out_features
    return SurrogateDraws(
        function=function,
        params=params,
        input_names=post.input_names or tuple(f"x{j + 1}" for j in range(d)),
        output_names=post.output_names or tuple(f"y{j + 1}" for j in range(o)),
        output_scale=_output_scale(post),
        x_train=post.x_train,
    )


# --------------------------------------------------------------------------- model
def _prior_dist(prior):
    """A scalar NumPyro distribution from ``("uniform", lower, upper)`` or a distribution."""
    if isinstance(prior, tuple):
        return dist.Uniform(prior[1], prior[2])
    return prior


@dataclass(frozen=True)
class CalibrationModel:
    """The NumPyro model of one propagation mode; hashable, so compiled samplers are reused.

    ``model(params, known, y_obs)`` with ``params`` the draws it averages over (leading
    axis ``S'``: one draw for ``"epost"``, all for ``"plugin"`` and ``"elik"``), ``known``
    ``[M, d_known]`` and ``y_obs`` ``[M, O]``.

    Attributes:
        function: one draw's function ``(params_s, x) -> [P, O]``.
        num_inputs: ``d``.
        unknown, known: the column of each unknown and each known input.
        priors: per unknown, ``("uniform", lower, upper)`` or a scalar distribution.
        noise: the known noise sd per output, or ``None`` (inferred).
        scale: the outputs' scale ``[O]`` (half-normal priors of the sds).
        discrepancy: a key of :data:`DISCREPANCIES`.
        expected_likelihood: average the likelihood over the draws (``"elik"``) rather
            than the function (``"epost"``, ``"plugin"``).
    """

    function: Callable
    num_inputs: int
    unknown: tuple[int, ...]
    known: tuple[int, ...]
    priors: tuple
    noise: tuple[float, ...] | None
    scale: tuple[float, ...]
    discrepancy: str | None
    expected_likelihood: bool

    def inputs(self, theta, known):
        """``x [M, d]``: ``θ [U]`` in every row's unknown columns, ``known [M, d_known]``."""
        known = jnp.asarray(known)
        x = jnp.zeros((known.shape[0], self.num_inputs), known.dtype)
        x = x.at[:, jnp.asarray(self.unknown)].set(theta)
        return x.at[:, jnp.asarray(self.known, dtype=jnp.int32)].set(known)

    def observation_sd(self):
        """The sd of ``y − f`` per output ``[O]``: noise and discrepancy."""
        if self.noise is None:
            sigma = numpyro.sample(NOISE, dist.HalfNormal(jnp.asarray(self.scale)).to_event(1))
        else:
            sigma = jnp.asarray(self.noise)
        return jnp.sqrt(sigma**2 + DISCREPANCIES[self.discrepancy](self))

    def __call__(self, params, known, y_obs):
        theta = jnp.stack(
            [numpyro.sample(f"{THETA}[{j}]", _prior_dist(p)) for j, p in enumerate(self.priors)]
        )  # [U]
        sd = self.observation_sd()  # [O]
        x = self.inputs(theta, known)  # [M, d]
        f = jax.vmap(self.function, (0, None))(params, x)  # [S', M, O]
        if self.expected_likelihood:
            ll = dist.Normal(f, sd).log_prob(y_obs).sum(axis=(-2, -1))  # [S']
            numpyro.factor(OBS, jax.nn.logsumexp(ll) - jnp.log(ll.shape[0]))
        else:
            with numpyro.plate("obs", y_obs.shape[0]):
                numpyro.sample(OBS, dist.Normal(f.mean(axis=0), sd).to_event(1), obs=y_obs)


# ------------------------------------------------------------------------- sampling
def _sample_stats(state) -> dict:
    """Per-step statistics of a NumPyro HMC state, in ArviZ's names."""
    return {
        "diverging": state.diverging,
        "n_steps": state.num_steps,
        "acceptance_rate": state.accept_prob,
        "energy": state.energy,
        "lp": -state.potential_energy,
        "step_size": state.adapt_state.step_size,
    }


def resolve_chain_method(chain_method: str) -> str:
    """``"sequential"`` or ``"vectorized"``: ``chain_method``, with ``"auto"`` resolved for
    the devices JAX runs on (:data:`CHAIN_METHODS`)."""
    chain_method = check_choice("chain_method", chain_method, CHAIN_METHODS)
    if chain_method != "auto":
        return chain_method
    devices = jax.devices()
    return "sequential" if len(devices) == 1 and devices[0].platform == "cpu" else "vectorized"


@functools.partial(
    jax.jit,
    static_argnames=("model", "num_warmup", "num_samples", "per_draw", "sequential", "accept"),
)
def _sample(
    z0, keys, params, known, y_obs, *, model, num_warmup, num_samples, per_draw, sequential,
    accept,
):  # fmt: skip
    """NUTS chains ``[K, C]`` of ``model``, all in one program: one after another
    (``sequential``) or vectorized.

    ``z0`` (unconstrained initial values) and ``keys`` carry leading axes ``[K, C]``. With
    ``per_draw`` component ``k`` conditions on draw ``k`` of ``params`` alone (``K = S``,
    ``"epost"``); otherwise every component sees all draws (``K = 1``).

    Returns:
        ``(values, stats)``: constrained draws ``{site: [K, C, num_samples, ...]}`` and
        :func:`_sample_stats` ``{name: [K, C, num_samples]}``.
    """

    def chain(z, key, p):
        args = (p, known, y_obs)
        potential = functools.partial(potential_energy, model, args, {})
        init_kernel, sample_kernel = hmc(potential_fn=potential, algo="NUTS")
        state = init_kernel(
            z,
            num_warmup,
            target_accept_prob=accept,
            max_tree_depth=MAX_TREE_DEPTH,
            rng_key=key,
        )

        def step(s, _):
            s = sample_kernel(s)
            return s, (s.z, _sample_stats(s))

        # One scan over warm-up and sampling (one copy of the NUTS kernel to compile);
        # the warm-up steps are dropped after.
        _, (zs, st) = jax.lax.scan(step, state, None, length=num_warmup + num_samples)
        zs, st = jax.tree_util.tree_map(lambda v: v[num_warmup:], (zs, st))
        return jax.vmap(lambda u: constrain_fn(model, args, {}, u))(zs), st

    # One map over the K·C chains, not one over components of one over chains: each vmap
    # level batches NUTS's nested while loops anew, and two levels took the default
    # calibration (32 components × 2 chains) 22 s to trace.
    shape = jax.tree_util.tree_leaves(z0)[0].shape[:2]
    flat = jax.tree_util.tree_map(lambda v: v.reshape((-1,) + v.shape[2:]), (z0, keys))
    if per_draw:  # chain k·C + c conditions on draw k
        p = jax.tree_util.tree_map(lambda v: jnp.repeat(v[:, None], shape[1], axis=0), params)
        one, xs = chain, (*flat, p)
    else:  # every chain sees all draws
        one, xs = (lambda z, k: chain(z, k, params)), flat
    out = jax.lax.map(lambda a: one(*a), xs) if sequential else jax.vmap(one)(*xs)
    return jax.tree_util.tree_map(lambda v: v.reshape(shape + v.shape[1:]), out)


def chain_groups(propagate: str, num_components: int, num_chains: int) -> int:
    """How many groups sequential chains run in, side by side on the CPU's cores
    (:func:`~bayesresnet.infer.lanes.lane_groups`): of the components (``epost``), else
    of the chains of the one component."""
    return lane_groups(num_components if propagate == "epost" else num_chains)


def _sample_lanes(setup: _Setup, z0, keys, params, known, y_obs):
    """:func:`_sample`; chains one after another run in groups side by side on the CPU's
    cores (:mod:`bayesresnet.infer.lanes`): the components' chains (``epost``), else the
    chains of the one component, cut into groups, one program compiled for a group.

    Measured on 2 cores with the README's calibration: see :data:`CHAIN_METHODS`.
    """
    per_draw = setup.propagate == "epost"
    sequential = setup.chain_method == "sequential"
    static = {
        "model": setup.model, "num_warmup": setup.num_warmup,
        "num_samples": setup.num_samples, "per_draw": per_draw, "sequential": sequential,
        "accept": setup.target_accept_prob,
    }  # fmt: skip
    shape = jax.tree_util.tree_leaves(z0)[0].shape
    groups = chain_groups(setup.propagate, *shape[:2]) if sequential else 1
    if groups == 1:
        return _sample(z0, keys, params, known, y_obs, **static)

    # [K, C, ...] → lanes first: components, or chains (with the one component behind)
    def lead(tree):
        return tree if per_draw else jax.tree_util.tree_map(lambda v: jnp.swapaxes(v, 0, 1), tree)

    parts = split_lanes((lead(z0), lead(keys), params), (0, 0, 0 if per_draw else None), groups)
    parts = [(lead(z), lead(k), p) for z, k, p in parts]  # back to [K, C, ...]
    # compiled here, once for every group: NumPyro traces on one thread only
    program = compile_lowered(_sample.lower(*parts[0], known, y_obs, **static))
    outs = run_lanes(lambda part: program(*part, known, y_obs), parts)
    return lead(join_lanes([lead(out) for out in outs], 0, device=False))


def _shard_components(tree, num_components: int):
    """Arrays whose leading axis indexes components, split over the devices when there are
    several and they divide the components (``jit`` then runs each device's chains
    there); unchanged otherwise."""
    devices = jax.devices()
    if len(devices) < 2 or num_components % len(devices):
        return tree
    mesh = jax.sharding.Mesh(np.array(devices), ("components",))
    spec = jax.sharding.PartitionSpec("components")
    return jax.device_put(tree, jax.sharding.NamedSharding(mesh, spec))


@functools.partial(jax.jit, static_argnums=(0, 5))
def _initial_values(model, key, params, known, y_obs, shape):
    """Unconstrained initial values ``{site: [K, C, ...]}``, uniform in (−2, 2) (NumPyro's
    ``init_to_uniform``), checked for a finite density and gradient under the first draw.

    Compiled once per model and shape: NumPyro's search, run eagerly, compiles its loop
    afresh on every call (its program holds the observations as constants), which cost
    each repeated calibration 2.3 s of its 3 s."""
    first = jax.tree_util.tree_map(lambda v: v[:1], params)
    keys = jax.random.split(key, int(np.prod(shape)))
    info = initialize_model(keys, model, model_args=(first, known, y_obs))
    return jax.tree_util.tree_map(lambda v: v.reshape(shape + v.shape[1:]), info.param_info.z)


@functools.partial(jax.jit, static_argnums=0)
def _draw_values(model, params, theta, known):
    """``f_s(x_m(θ_i))`` for every draw ``s`` and every ``θ_i`` ``[n, U]``: ``[n, S, M, O]``."""

    def one(t):
        return jax.vmap(model.function, (0, None))(params, model.inputs(t, known))

    return jax.lax.map(one, theta, batch_size=64)


@functools.partial(jax.jit, static_argnums=0)
def _own_draw_values(model, params, theta, known):
    """``f_s(x_m(θ_si))`` with each draw at its own ``θ`` ``[S, n, U]``: ``[S, n, M, O]``."""

    def one(p, t):
        return _draw_values(model, jax.tree_util.tree_map(lambda v: v[None], p), t, known)[:, 0]

    return jax.vmap(one)(params, theta)


# ----------------------------------------------------------------------- validation
def _check_surrogate(post) -> SurrogateDraws:
    if isinstance(post, Posterior):
        return make_surrogate_draws(post)
    if not isinstance(post, SurrogateDraws):
        raise TypeError(
            f"`post` must be a bayesresnet Posterior or SurrogateDraws; got {type(post).__name__}."
        )
    return post


def _check_unknown(unknown, names) -> tuple[int, ...]:
    """Column indices of the unknown inputs, from names or indices."""
    return tuple(check_columns("unknown", unknown, names, noun="input"))


def _check_y_obs(y_obs, num_outputs: int) -> np.ndarray:
    y = check_array("y_obs", y_obs, ndim=(1, 2), fix="Drop the observations that are missing.")
    if y.ndim == 1 and num_outputs == 1:
        y = y[:, None]
    if y.ndim != 2 or y.shape[1] != num_outputs or len(y) == 0:
        raise ValueError(
            f"`y_obs` must have shape [M, {num_outputs}] (M ≥ 1 observations of the "
            f"surrogate's {num_outputs} outputs); got shape {y.shape}."
        )
    return y


def _check_known(known, known_names, num_obs: int) -> np.ndarray:
    """``[M, d_known]`` settings of the known inputs, columns in the surrogate's order."""
    if not known_names:
        if known is not None:
            raise ValueError(
                "`known` must be None: every input is unknown, so there are no known "
                f"settings; got {type(known).__name__}."
            )
        return np.zeros((num_obs, 0))
    if known is None:
        raise ValueError(
            f"`known` is required: the inputs {list(known_names)} are not unknown, so give "
            f"their settings per observation as a [{num_obs}, {len(known_names)}] array or "
            "DataFrame."
        )
    if hasattr(known, "columns"):  # a DataFrame: pick the known inputs by name
        missing = [n for n in known_names if n not in list(known.columns)]
        if missing:
            raise ValueError(
                f"`known` (a DataFrame) lacks the columns {missing}; it needs one per known "
                f"input {list(known_names)}; got columns {list(known.columns)}."
            )
        known = known[list(known_names)].to_numpy()
    k = check_array("known", known, ndim=(1, 2), fix="Give every observation's settings.")
    if k.ndim == 1 and len(known_names) == 1:
        k = k[:, None]
    if k.shape != (num_obs, len(known_names)):
        raise ValueError(
            f"`known` must have shape [{num_obs}, {len(known_names)}] (one row per observation, "
            f"one column per known input {list(known_names)}); got shape {k.shape}."
        )
    return k


def _check_prior(prior, unknown_names, box) -> tuple:
    """Per unknown input, ``("uniform", lower, upper)`` or a scalar NumPyro distribution."""
    if prior is None:
        prior = {}
    if not isinstance(prior, Mapping):
        raise TypeError(
            "`prior` must be None (uniform on the training box) or a dict {input name: "
            f"NumPyro distribution or (lower, upper)}}; got {type(prior).__name__}."
        )
    extra = [k for k in prior if k not in unknown_names]
    if extra:
        raise ValueError(
            f"`prior` names {extra}, not among the unknown inputs {list(unknown_names)}."
            f"{did_you_mean(extra[0], unknown_names)}"
        )
    out = []
    for j, name in enumerate(unknown_names):
        value = prior.get(name)
        if value is None:
            if box is None:
                raise ValueError(
                    f"`prior` for {name!r} is required: the surrogate carries no training "
                    "inputs whose box could serve as a uniform prior."
                )
            value = (float(box[0][j]), float(box[1][j]))
        if isinstance(value, dist.Distribution):
            if value.batch_shape or value.event_shape or value.support.is_discrete:
                raise ValueError(
                    f"`prior[{name!r}]` must be a scalar continuous distribution; got "
                    f"{type(value).__name__} with batch shape {value.batch_shape} and event "
                    f"shape {value.event_shape}."
                )
            out.append(value)
            continue
        row = check_array(f"prior[{name!r}]", value, ndim=1)
        if row.shape != (2,) or not row[0] < row[1]:
            raise ValueError(
                f"`prior[{name!r}]` must be a NumPyro distribution or bounds (lower, upper) "
                f"with lower < upper; got {row.tolist()}."
            )
        out.append(("uniform", float(row[0]), float(row[1])))
    return tuple(out)


def _check_noise(noise, num_outputs: int):
    """``None`` (inferred) or the known sd per output."""
    if isinstance(noise, str):
        if noise != "infer":
            raise ValueError(f'`noise` must be "infer" or sds > 0 per output; got {noise!r}.')
        return None
    sd = check_array("noise", noise, ndim=(0, 1))
    sd = np.broadcast_to(sd, (num_outputs,)) if sd.ndim == 0 else sd
    if sd.shape != (num_outputs,) or np.any(sd <= 0):
        raise ValueError(
            f'`noise` must be "infer", one sd > 0, or one sd > 0 per output ({num_outputs}); '
            f"got {np.asarray(noise).tolist()}."
        )
    return tuple(float(v) for v in sd)


@dataclass(frozen=True)
class _Setup:
    """The validated arguments of one calibration."""

    surrogate: SurrogateDraws  # the draws used, already selected
    draws: np.ndarray  # their indices among the given draws
    model: CalibrationModel
    y_obs: np.ndarray
    known: np.ndarray
    propagate: str
    num_warmup: int
    num_samples: int
    num_chains: int
    seed: int
    chain_method: str  # "sequential" or "vectorized", resolved
    target_accept_prob: float
    unknown_names: tuple[str, ...] = field(default=())
    known_names: tuple[str, ...] = field(default=())


def _check_arguments(post, y_obs, unknown, known, prior, noise, discrepancy, **settings):
    """Every argument of :func:`calibrate`, checked before anything is computed."""
    lane_threads()  # a malformed $BAYESRESNET_THREADS
    sd = _check_surrogate(post)
    names = sd.input_names
    columns = _check_unknown(unknown, names)
    known_columns = tuple(j for j in range(len(names)) if j not in columns)
    unknown_names = tuple(names[j] for j in columns)
    known_names = tuple(names[j] for j in known_columns)
    y = _check_y_obs(y_obs, len(sd.output_names))
    k = _check_known(known, known_names, len(y))
    box = None
    if sd.x_train is not None:
        box = (sd.x_train.min(axis=0)[list(columns)], sd.x_train.max(axis=0)[list(columns)])
    priors = _check_prior(prior, unknown_names, box)
    noise = _check_noise(noise, len(sd.output_names))
    check_choice("discrepancy", discrepancy, list(DISCREPANCIES))
    propagate = check_choice("propagate", settings["propagate"], PROPAGATE)
    num_used = check_int("surrogate_draws", settings["surrogate_draws"], minimum=1)
    check_choice("method", settings["method"], METHODS)
    num_warmup = check_int("num_warmup", settings["num_warmup"], minimum=0)
    num_samples = check_int("num_samples", settings["num_samples"], minimum=1)
    num_chains = check_int("num_chains", settings["num_chains"], minimum=1)
    seed = check_int("seed", settings["seed"], minimum=0)
    chain_method = resolve_chain_method(settings["chain_method"])
    accept = check_level("target_accept_prob", settings["target_accept_prob"])
    # At most `surrogate_draws` draws, evenly spaced over the (chain-major) draws.
    draws = np.unique(np.linspace(0, sd.num_draws - 1, min(num_used, sd.num_draws)).round())
    draws = draws.astype(np.int64)
    model = CalibrationModel(
        function=sd.function,
        num_inputs=len(names),
        unknown=columns,
        known=known_columns,
        priors=priors,
        noise=noise,
        scale=tuple(float(v) for v in sd.output_scale),
        discrepancy=discrepancy,
        expected_likelihood=propagate == "elik",
    )
    return _Setup(
        surrogate=sd.take(draws),
        draws=draws,
        model=model,
        y_obs=y,
        known=k,
        propagate=propagate,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        seed=seed,
        chain_method=chain_method,
        target_accept_prob=accept,
        unknown_names=unknown_names,
        known_names=known_names,
    )


# ----------------------------------------------------------------------- calibrate
def _run(setup: _Setup, key) -> tuple[dict, dict]:
    """Sample; returns ``({site: [chains, draws, ...]}, {stat: [chains, draws]})`` with
    chains numbered ``k·C + c`` (component ``k``, chain ``c``)."""
    per_draw = setup.propagate == "epost"
    num_components = setup.surrogate.num_draws if per_draw else 1
    shape = (num_components, setup.num_chains)
    known = jnp.asarray(setup.known, jnp.float32)
    y_obs = jnp.asarray(setup.y_obs, jnp.float32)
    params = setup.surrogate.params
    init_key, run_key = jax.random.split(key)
    z0 = _initial_values(setup.model, init_key, params, known, y_obs, shape)
    keys = jax.random.split(run_key, int(np.prod(shape))).reshape(shape + (-1,))
    if per_draw:
        z0, keys, params = _shard_components((z0, keys, params), num_components)
    values, st = _sample_lanes(setup, z0, keys, params, known, y_obs)

    def flat(v):
        v = np.asarray(v)
        return v.reshape((-1,) + v.shape[2:])

    values = {k: flat(v) for k, v in values.items()}
    theta = np.stack([values.pop(f"{THETA}[{j}]") for j in range(len(setup.model.priors))], -1)
    return {THETA: theta, **values}, {k: flat(v) for k, v in st.items()}


def _observation_sd(setup: _Setup, samples: dict) -> np.ndarray:
    """The total sd of ``y − f`` per draw ``[chains, draws, O]``."""
    noise = samples.get(NOISE)
    if noise is None:
        fixed = np.asarray(setup.model.noise)
        noise = np.broadcast_to(fixed, samples[THETA].shape[:2] + fixed.shape)
    extra = samples[DISCREPANCY] ** 2 if DISCREPANCY in samples else 0.0
    return np.sqrt(noise**2 + extra)


def _predictive(setup: _Setup, theta, sigma, rng):
    """Posterior predictive draws and pointwise log likelihood at the observations.

    Returns ``(y_rep [chains, draws, M, O], log_lik [chains, draws, M], which [chains,
    draws], weights)``: ``which`` the surrogate draw (position among those used) behind
    each draw (−1 for ``"plugin"``, whose function is their mean); ``weights`` for
    ``"elik"`` the posterior probability ``w_s(θ) ∝ p(y | θ, f_s)`` of each draw given
    each ``θ`` ``[chains, draws, S]``, else ``None``. For ``"elik"`` the pointwise log
    likelihood is ``log (1/S) Σ_s p(y_m | θ, f_s)``, observation by observation.
    """
    model, sd, y = setup.model, setup.surrogate, setup.y_obs
    chains, n, u = theta.shape
    known = jnp.asarray(setup.known, jnp.float32)
    s = sd.num_draws
    scale = sigma[:, :, None, :]  # [chains, draws, 1, O]
    weights = None
    if setup.propagate == "epost":
        t = jnp.asarray(theta.reshape(s, -1, u), jnp.float32)  # chains k·C + c: component k
        f = np.asarray(_own_draw_values(model, sd.params, t, known), np.float64)
        f = f.reshape((chains, n) + y.shape)
        which = np.broadcast_to(np.repeat(np.arange(s), setup.num_chains)[:, None], (chains, n))
        log_lik = stats.norm.logpdf(y, f, scale).sum(axis=-1)
    else:
        t = jnp.asarray(theta.reshape(-1, u), jnp.float32)
        f_all = np.asarray(_draw_values(model, sd.params, t, known), np.float64)
        f_all = f_all.reshape((chains, n, s) + y.shape)  # [chains, draws, S, M, O]
        if setup.propagate == "plugin":
            f = f_all.mean(axis=2)
            which = np.full((chains, n), -1)
            log_lik = stats.norm.logpdf(y, f, scale).sum(axis=-1)
        else:
            ll = stats.norm.logpdf(y, f_all, scale[:, :, None]).sum(axis=-1)  # [.., S, M]
            log_lik = special.logsumexp(ll, axis=2) - np.log(s)
            weights = special.softmax(ll.sum(axis=-1), axis=-1)  # [chains, draws, S]
            u01 = rng.uniform(size=(chains, n, 1))
            which = np.minimum((weights.cumsum(axis=-1) < u01).sum(axis=-1), s - 1)
            f = np.take_along_axis(f_all, which[:, :, None, None, None], axis=2)[:, :, 0]
    y_rep = f + scale * rng.standard_normal(f.shape)
    return y_rep, log_lik, np.asarray(which), weights


def _extrapolation(setup: _Setup, theta) -> dict:
    """How much posterior mass sits where the surrogate extrapolates.

    ``outside_box``: the fraction of posterior draws that put some observation's inputs
    outside the training box. ``epistemic_excess``: the fraction (over at most
    :data:`MAX_CHECK_DRAWS` evenly thinned draws) whose epistemic sd, the sd over
    surrogate draws of ``f_s(x_m(θ))``, exceeds :data:`EPISTEMIC_FACTOR` times its median
    over :data:`REFERENCE_POINTS` points uniform in the training box (its level inside
    the training domain) for some observation and output. ``flag``: either fraction
    above :data:`EXTRAPOLATION_MASS`.
    """
    sd, model = setup.surrogate, setup.model
    pooled = theta.reshape(-1, theta.shape[-1])
    out = {"outside_box": float("nan"), "epistemic_excess": float("nan")}
    out["epistemic_ratio_median"] = float("nan")
    if sd.x_train is None:
        return {**out, "flag": False, "note": "no training inputs: extrapolation not checked"}
    x = np.zeros((len(pooled), len(setup.y_obs), model.num_inputs))
    x[:, :, list(model.unknown)] = pooled[:, None, :]
    x[:, :, list(model.known)] = setup.known[None]
    lower, upper = sd.x_train.min(axis=0), sd.x_train.max(axis=0)
    out["outside_box"] = float(((x < lower) | (x > upper)).any(axis=(1, 2)).mean())
    if sd.num_draws >= 2:
        # The reference: points uniform in the training box (at the training inputs
        # themselves the draws agree by construction, having been fitted to them).
        box = np.random.default_rng(0).uniform(lower, upper, (REFERENCE_POINTS, len(lower)))
        level = np.median(sd.evaluate(box).std(axis=0), axis=0)  # [O]
        level = np.where(level > 0, level, np.inf)
        pick = np.linspace(0, len(pooled) - 1, min(MAX_CHECK_DRAWS, len(pooled))).round()
        t = jnp.asarray(pooled[np.unique(pick).astype(int)], jnp.float32)
        known = jnp.asarray(setup.known, jnp.float32)
        f = np.asarray(_draw_values(model, sd.params, t, known), np.float64)  # [n, S, M, O]
        ratio = (f.std(axis=1) / level).max(axis=(1, 2))  # [n]
        out["epistemic_excess"] = float(np.mean(ratio > EPISTEMIC_FACTOR))
        out["epistemic_ratio_median"] = float(np.median(ratio))
    fractions = [v for k, v in out.items() if k != "epistemic_ratio_median" and np.isfinite(v)]
    return {**out, "flag": bool(any(v > EXTRAPOLATION_MASS for v in fractions))}


# -------------------------------------------------------------------------- result
@dataclass(frozen=True)
class CalibrationResult:
    """The posterior of a simulator's inputs given observations, through a surrogate.

    Attributes:
        idata: an ArviZ ``InferenceData``: ``posterior`` (``theta`` over ``unknown``;
            ``noise_sd`` and ``discrepancy_sd`` over ``output`` when inferred),
            ``posterior_predictive`` and ``observed_data`` (``y`` over ``obs``, ``output``),
            ``log_likelihood`` (``y`` per observation, summed over outputs),
            ``sample_stats`` (NUTS statistics in ArviZ's names and ``surrogate_draw``, the
            draw behind each sample) and ``constant_data`` (the ``known`` settings).
            For ``"epost"`` chain ``k·C + c`` is chain ``c`` of component ``k``.
        propagate: the mode (a key of :data:`PROPAGATE`).
        unknown_names: the inputs inferred.
        draws: the indices of the surrogate draws used (among the posterior's draws,
            chain-major).
        components: ``[chains]`` the component of each chain: for ``"epost"`` the
            position in ``draws`` of the draw it conditions on; 0 otherwise.
        draw_weights: for ``"elik"`` ``w_s(θ) = p(y | θ, f_s) / Σ_s' p(y | θ, f_s')`` per
            sample ``[chains, draws, S]``; else ``None``.
        extrapolation: what :func:`_extrapolation` found (fractions and ``flag``).
        attrs: how it was computed (mode, sampler, priors, noise).
        timings: wall times in seconds (``sample`` includes compilation).
    """

    idata: Any
    propagate: str
    unknown_names: tuple[str, ...]
    draws: np.ndarray
    components: np.ndarray
    draw_weights: np.ndarray | None
    extrapolation: dict
    attrs: dict
    timings: dict

    @property
    def extrapolates(self) -> bool:
        """Whether posterior mass sits where the surrogate extrapolates (see ``extrapolation``)."""
        return bool(self.extrapolation["flag"])

    @property
    def effective_draws(self) -> float:
        """How many surrogate draws carry the posterior's weight: ``S`` for ``"epost"`` (equal
        weights), ``1 / Σ_s p_s²`` with ``p_s = p(s | y)`` (the mean of ``w_s(θ)`` over the
        posterior) for ``"elik"``, and 1 for ``"plugin"`` (one function, the mean)."""
        if self.propagate == "epost":
            return float(len(self.draws))
        if self.propagate == "plugin":
            return 1.0
        p = self.draw_weights.reshape(-1, len(self.draws)).mean(axis=0)
        return float(1.0 / np.sum(p**2))

    def theta(self) -> np.ndarray:
        """The draws of the unknown inputs ``[chains, draws, U]``."""
        return np.asarray(self.idata.posterior[THETA].values)

    def scalar_draws(self) -> dict[str, np.ndarray]:
        """Every scalar quantity ``[chains, draws]``: each unknown by name, then
        ``noise_sd[output]`` and ``discrepancy_sd[output]`` when inferred."""
        post = self.idata.posterior
        theta = self.theta()
        out = {name: theta[..., j] for j, name in enumerate(self.unknown_names)}
        for site in (NOISE, DISCREPANCY):
            if site in post:
                for o, name in enumerate(post[site].coords["output"].values):
                    out[f"{site}[{name}]"] = np.asarray(post[site].values[..., o])
        return out

    def surrogate_share(self) -> pd.Series:
        """``Var_s E[θ | s] / Var θ`` per unknown: the share of each input's posterior
        variance due to the surrogate's uncertainty (the law of total variance, ``s`` the
        surrogate draw). ``"epost"``: the variance of the components' means (equal
        weights); ``"elik"``: of ``E[θ | s, y] = Σ_i w_s(θ_i) θ_i / Σ_i w_s(θ_i)`` weighted
        by ``p(s | y)``; ``"plugin"``: 0 (the surrogate's uncertainty is ignored)."""
        theta = self.theta()
        pooled = theta.reshape(-1, theta.shape[-1])
        total = pooled.var(axis=0)
        if self.propagate == "plugin":
            between = np.zeros_like(total)
        elif self.propagate == "epost":
            k = len(self.draws)
            between = theta.reshape(k, -1, theta.shape[-1]).mean(axis=1).var(axis=0)
        else:
            w = self.draw_weights.reshape(-1, len(self.draws))  # [n, S]
            p = w.mean(axis=0)
            cond = (w.T @ pooled) / np.maximum(w.sum(axis=0), 1e-300)[:, None]  # [S, U]
            between = (p[:, None] * (cond - pooled.mean(axis=0)) ** 2).sum(axis=0)
        return pd.Series(between / total, index=list(self.unknown_names), name="surrogate_share")

    def diagnostics(self) -> pd.DataFrame:
        """R-hat, bulk and tail ESS and divergences per component (the chains given one
        surrogate draw for ``"epost"``; all chains otherwise) and pooled: the worst R-hat,
        the summed ESS and divergences over components (ArviZ, through
        :func:`bayesresnet.diagnostics.summarize_draws`)."""
        from bayesresnet import diagnostics

        draws = self.scalar_draws()
        diverging = np.asarray(self.idata.sample_stats["diverging"].values)
        rows = []
        for k in range(int(self.components.max()) + 1):
            mask = self.components == k
            part = diagnostics.summarize_draws({n: v[mask] for n, v in draws.items()}, "component")
            for row in part:
                rows.append(
                    {
                        "component": k,
                        "variable": row["name"],
                        "r_hat": row["r_hat"],
                        "ess_bulk": row["ess_bulk"],
                        "ess_tail": row["ess_tail"],
                        "divergences": int(diverging[mask].sum()),
                    }
                )
        table = pd.DataFrame(rows)
        pooled = table.groupby("variable", sort=False).agg(
            r_hat=("r_hat", "max"),
            ess_bulk=("ess_bulk", "sum"),
            ess_tail=("ess_tail", "sum"),
            divergences=("divergences", "sum"),
        )
        pooled = pooled.reset_index().assign(component="pooled")
        return pd.concat([table, pooled[table.columns]], ignore_index=True)

    def summary(self, hdi_prob: float = 0.9) -> pd.DataFrame:
        """Per scalar quantity: mean, sd, the ``hdi_prob`` HDI (ArviZ), the surrogate share
        (unknowns), the worst R-hat over components, the pooled bulk ESS and divergences."""
        from bayesresnet import diagnostics

        hdi_prob = check_level("hdi_prob", hdi_prob)
        share = self.surrogate_share()
        table = self.diagnostics()
        pooled = table[table["component"] == "pooled"].set_index("variable")
        rows = {}
        for name, v in self.scalar_draws().items():
            flat = v.reshape(-1)
            low, high = diagnostics.hdi(flat, hdi_prob)
            rows[name] = {
                "mean": float(flat.mean()),
                "sd": float(flat.std()),
                "hdi_lower": float(low),
                "hdi_upper": float(high),
                "surrogate_share": float(share.get(name, np.nan)),
                "r_hat": float(pooled.loc[name, "r_hat"]),
                "ess_bulk": float(pooled.loc[name, "ess_bulk"]),
                "divergences": int(pooled.loc[name, "divergences"]),
            }
        out = pd.DataFrame.from_dict(rows, orient="index")
        out.attrs = {"hdi_prob": hdi_prob, "propagate": self.propagate}
        return out


def _attrs(setup: _Setup) -> dict:
    """What a :class:`CalibrationResult` says about how it was computed (strings, numbers)."""
    model = setup.model

    def describe(prior):
        if isinstance(prior, tuple):
            return f"Uniform({prior[1]:.6g}, {prior[2]:.6g})"
        return repr(prior)

    noise = "inferred: half-normal, scale the output's sd" if model.noise is None else model.noise
    return {
        "propagate": setup.propagate,
        "propagate_meaning": PROPAGATE[setup.propagate],
        "overconfident": "yes: the surrogate's uncertainty is ignored"
        if setup.propagate == "plugin"
        else "no",
        "num_surrogate_draws": int(setup.surrogate.num_draws),
        "method": "nuts",
        "num_warmup": setup.num_warmup,
        "num_samples": setup.num_samples,
        "num_chains": setup.num_chains,
        "chain_method": setup.chain_method,
        "target_accept_prob": setup.target_accept_prob,
        "seed": setup.seed,
        "priors": "; ".join(
            f"{n}: {describe(p)}" for n, p in zip(setup.unknown_names, model.priors)
        ),
        "noise": str(noise),
        "discrepancy": str(model.discrepancy),
    }


def _inference_data(setup: _Setup, samples, stats_, y_rep, log_lik, which, attrs):
    from bayesresnet import diagnostics

    sd = setup.surrogate
    coords = {
        "unknown": list(setup.unknown_names),
        "output": list(sd.output_names),
        "obs": list(range(len(setup.y_obs))),
        "known_input": list(setup.known_names),
    }
    dims = {
        THETA: ["unknown"],
        NOISE: ["output"],
        DISCREPANCY: ["output"],
        OBS: ["obs", "output"],
        "known": ["obs", "known_input"],
    }
    groups = {
        "posterior": samples,
        "posterior_predictive": {OBS: y_rep},
        "observed_data": {OBS: setup.y_obs},
        "sample_stats": {**stats_, "surrogate_draw": which},
    }
    if setup.known_names:
        groups["constant_data"] = {"known": setup.known}
    return diagnostics.groups_to_inference_data(
        groups,
        coords=coords,
        dims=dims,
        log_likelihood=({OBS: log_lik}, {OBS: ["obs"]}),
        attrs=attrs,
    )


def calibrate(
    post,
    y_obs,
    *,
    unknown,
    known=None,
    prior=None,
    noise="infer",
    discrepancy=None,
    propagate: str = "epost",
    surrogate_draws: int = 64,
    method: str = "nuts",
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 2,
    seed: int = 0,
    chain_method: str = "auto",
    target_accept_prob: float = TARGET_ACCEPT_PROB,
) -> CalibrationResult:
    """The posterior of the simulator inputs ``unknown`` given observations ``y_obs``.

    The model (module docstring): ``y_m ~ N(f(θ, k_m), σ² + δ²)`` per output, ``θ`` from
    ``prior``, ``f`` the surrogate's draws combined as ``propagate`` says.

    Args:
        post: a :class:`~bayesresnet.Posterior`, or :class:`SurrogateDraws`.
        y_obs: observations ``[M, O]`` (raw units; ``[M]`` for one output).
        unknown: the inputs to infer, by name or column index.
        known: the other inputs' settings per observation, ``[M, d_known]`` in the
            surrogate's column order, or a DataFrame with a column per known input;
            ``None`` when every input is unknown.
        prior: ``None`` — every unknown uniform on the training data's box (its min and
            max over the training inputs) — or ``{name: NumPyro distribution or (lower,
            upper)}``; unknowns not named keep the box.
        noise: the known observation-noise sd (one, or one per output), or ``"infer"``:
            half-normal with the output's scale (a Posterior's training-output sd).
        discrepancy: ``None`` or ``"iid"``, an extra inferred sd per output (half-normal
            with the output's scale); see :data:`DISCREPANCIES`. Only ``σ² + δ²`` is
            identified when both are inferred.
        propagate: ``"epost"``, ``"elik"`` or ``"plugin"`` (:data:`PROPAGATE`).
        surrogate_draws: use at most this many draws, evenly spaced over the
            (chain-major) draws.
        method: the sampler, ``"nuts"`` (:data:`METHODS`).
        num_warmup, num_samples: NUTS steps of adaptation and of sampling, per chain.
        num_chains: chains per component (per surrogate draw for ``"epost"``).
        seed: seed of the initial values, the chains and the predictive draws.
        chain_method: ``"sequential"``, ``"vectorized"`` or ``"auto"`` (:data:`CHAIN_METHODS`);
            the same draws either way but for rounding, which NUTS amplifies over a run.
        target_accept_prob: NUTS's target acceptance in (0, 1) (:data:`TARGET_ACCEPT_PROB`):
            higher takes smaller steps, so longer trajectories and fewer divergences.

    Returns:
        A :class:`CalibrationResult`.

    Raises:
        TypeError, ValueError: naming the argument, for any invalid one, before anything
            is computed.
    """
    setup = _check_arguments(
        post,
        y_obs,
        unknown,
        known,
        prior,
        noise,
        discrepancy,
        propagate=propagate,
        surrogate_draws=surrogate_draws,
        method=method,
        num_warmup=num_warmup,
        num_samples=num_samples,
        num_chains=num_chains,
        seed=seed,
        chain_method=chain_method,
        target_accept_prob=target_accept_prob,
    )
    timings = {}
    start = time.perf_counter()
    samples, stats_ = _run(setup, jax.random.PRNGKey(setup.seed))
    timings["sample"] = time.perf_counter() - start
    start = time.perf_counter()
    rng = np.random.default_rng(setup.seed)
    sigma = _observation_sd(setup, samples)
    y_rep, log_lik, which, weights = _predictive(setup, samples[THETA], sigma, rng)
    extrapolation = _extrapolation(setup, samples[THETA])
    timings["postprocess"] = time.perf_counter() - start
    attrs = _attrs(setup)
    num_components = len(setup.draws) if setup.propagate == "epost" else 1
    return CalibrationResult(
        idata=_inference_data(setup, samples, stats_, y_rep, log_lik, which, attrs),
        propagate=setup.propagate,
        unknown_names=setup.unknown_names,
        draws=setup.draws,
        components=np.repeat(np.arange(num_components), setup.num_chains),
        draw_weights=weights,
        extrapolation=extrapolation,
        attrs=attrs,
        timings=timings,
    )
