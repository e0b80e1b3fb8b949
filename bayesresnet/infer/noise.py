"""The noise sd of MAP fits re-estimated with each fit's effective number of parameters.

A network with more weights than data points fits part of the noise. Its residuals are
then smaller than the noise, and the MAP noise sd (about the root mean square of the
residuals) is biased low. For a deep ensemble this narrows every predictive interval.
MacKay's evidence framework corrects it: linearize the network around the fit,
``f(θ) ≈ f(θ̂) + J (θ − θ̂)``, with ``J`` the Jacobian of the outputs at the training
points. Then

* ``γ = Σᵢ μᵢ/(1 + μᵢ)`` is the number of parameters the data determine, where ``μᵢ`` are
  the eigenvalues of the data's precision ``Jᵀ Σ⁻¹ J`` measured in units of the prior's
  (``Σ`` the noise covariance, the prior the Normal priors of the weights);
* the noise variance that maximizes the evidence for that fit is ``RSS/(N − γ)``, not
  the MAP's ``RSS/N`` (MacKay 1992, eq. 2.20–2.22); as ``γ`` depends on the noise sd
  the equation is solved for its root (:func:`_fixed_point`).

With several outputs, each output ``o`` gets its own ``γ_o`` (its rows' share of the
trace of the hat matrix) and ``σ_o² = RSS_o/(N − γ_o)``. Each member's own fit gives its
own ``γ`` and ``σ``.

Measured at N = 200 (width 8, 8 cubic layers, 8 Adam-trained members, about 370
weights). With 5 % noise on borehole the members' MAP noise sds were 0.95–1.52 against a
true 2.28, with ``γ = 79–120``; the re-estimate gave 1.50–1.95. On friedman1 the MAP sds
were 0.13–0.19 against a true 0.244; the re-estimate gave 0.23–0.29. On the six
built-in problems, noise-free and with 5 % noise (``benchmarks/bench_surrogates.py``,
``benchmarks/results/surrogates_N200_noise`` against ``surrogates_N200_quiet``), the
ensemble's 90 % intervals then covered 0.83–1.00 of the held-out points instead of
0.77–1.00 (8 of 12 cases within 0.85–0.95 instead of 7): noisy borehole 0.77 → 0.83,
noisy friedman1 0.81 → 0.87, noise-free borehole 0.97 → 0.95; noisy ishigami went from
0.95 to 0.96. The CRPS stayed within 2 % except on noise-free borehole (2.15 → 1.94 times
the GP's) and noise-free sine (658 → 132 times), where the unconverged MAP noise had been
too large. It cost about 1.3 s per fit at N = 200 and 2.7 s at N = 2 000 (width 16;
``timings["noise_s"]``, compilation included), the Jacobian formed row by row
(:func:`_row_jacobian`); now that its program compiles in the background while the
members train (:func:`noise_program` with ``ahead``), ``noise_s`` is 0.03–0.06 s at 200
rows and 1.1–2.0 s at 2 000 with one output (``benchmarks/results/cached_N200``,
``deeper_N2000``, a scratch fit). With several outputs and more rows × outputs than
parameters, each output's equation is solved from one eigensolve of its data precision against the
prior's and the other outputs' (:func:`_output_eigenvalues`), a few sweeps over the
outputs, where every step of the root search had inverted a ``P × P`` matrix: on
oscillator (3 outputs) at 500 rows, width 16, 8 members, the re-estimate took 35.7 s
instead of 98.7 s (12 eigensolves per member), and the whole fit 71 s instead of 130 s
with 5 % noise and 70 s instead of 166 s noise-free, at the same accuracy to the last
digit (``benchmarks/results/noise_eigen_oscillator_old`` and ``…_new``). Those sweeps now
run only where MacKay's plain update of all outputs at once does not settle
(:func:`_joint_iteration`: one ``γ`` evaluation, a ``P × P`` inverse from its Cholesky
factor, per iteration; ``γ`` near ``N``): on oscillator with ``method="auto"``, noise-free
and with 5 % noise (``benchmarks/results/noise_joint_oscillator_old`` and ``…_new``, the
two codes one after the other), the re-estimate took 0.40–0.45 s instead of 1.7–2.8 s at
200 rows and 4.7–4.8 s instead of 26–28 s at 500, and the fit 6.0–7.1 s instead of
7.8–9.1 s and 19–20 s instead of 42–43 s, at the same CRPS and coverage to the last digit.

The linearization needs the Jacobian, ``N·O × P`` numbers per member. It is skipped, and
the MAP noise kept, above :data:`MAX_JACOBIAN_ENTRIES`, for a likelihood other than the
Normal, and for bootstrap members (each sees its own resampled data).

Reference:
    MacKay (1992), A practical Bayesian framework for backpropagation networks.
    Neural Computation 4(3), 448–472.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import scipy.linalg
from jax.flatten_util import ravel_pytree
from numpyro import handlers
from numpyro.infer.util import constrain_fn
from scipy.optimize import brentq

from bayesresnet import sites
from bayesresnet.infer.base import progress_bar
from bayesresnet.infer.core import bind_data, compile_ahead, compiled_call, program_data
from bayesresnet.model import _DECENTERED, PRIOR_SCALE_OF

__all__ = [
    "MAX_DISTANCE_FLOPS",
    "MAX_JACOBIAN_ENTRIES",
    "NoiseProgram",
    "NoiseRefit",
    "effective_noise",
    "effective_parameters",
    "evidence_factors",
    "distance_to_optimum",
    "noise_program",
    "parameter_gammas",
]

#: Largest Jacobian (training rows × outputs × parameters, per member) the re-estimate
#: computes; 10⁷ float32 numbers are 40 MB (width 16 at 2 000 rows takes about 2.6·10⁶).
MAX_JACOBIAN_ENTRIES = 10_000_000

#: :func:`distance_to_optimum` is measured where its ``min(N·O, P)² · max(N·O, P)`` (the
#: Gram matrix and the solve) is at most this many operations per member (a few tenths
#: of a second); 200 rows of one output and 600 parameters take 2.4·10⁷.
MAX_DISTANCE_FLOPS = 1e9


class NoiseRefit(NamedTuple):
    """The re-estimated noise of every member, or why the MAP noise was kept."""

    sigma: np.ndarray | None  # [M, O] new values of the noise site; None: kept
    map_sigma: np.ndarray | None  # [M, O] the MAP values
    gamma: np.ndarray | None  # [M, O] effective number of parameters per output
    reason: str  # how the noise was set, for the run record
    # {PriorSpec scale: [M]} the evidence's factor on each scale (effective_noise(evidence=))
    prior_factors: dict | None = None
    # [M, O] how far each member's fit is from its optimum (effective_noise(distance=True))
    distance: np.ndarray | None = None


def effective_parameters(jac_over_sd: np.ndarray, prior_sd: np.ndarray) -> np.ndarray:
    """``γ_o``, the effective number of parameters of each output ``[O]``.

    Args:
        jac_over_sd: ``[N, O, P]`` Jacobian of the outputs with respect to the parameters,
            each row divided by its observation's noise sd.
        prior_sd: ``[P]`` prior sd of each parameter (a Normal prior).

    ``A = J Σ⁻¹ᐟ² S`` (rows by the noise sd, columns by the prior sd); the hat matrix of
    the linearized fit is ``A (I + AᵀA)⁻¹ Aᵀ`` and ``γ_o`` sums its diagonal over the rows
    of output ``o``: ``tr((I + AᵀA)⁻¹ A_oᵀA_o)``, or in the ``N·O × N·O`` form when that is
    smaller. Computed in float64.
    """
    a = _scaled(jac_over_sd, prior_sd)
    return _gamma_function(a)(np.ones(a.shape[1]))


def parameter_gammas(jac_over_sd, prior_sd, ratio) -> np.ndarray:
    """``γᵢ`` ``[P]``: how far the data determine each parameter, ``1 − (H⁻¹)ᵢᵢ`` with
    ``H = I + AᵀA`` the linearized fit's precision in units of the prior's, the noise sds
    multiplied by ``ratio`` ``[O]`` (the re-estimate's factors); they sum to
    :func:`effective_parameters`' ``γ`` over the outputs. From the smaller of the
    ``N·O × N·O`` and ``P × P`` forms (``diag(Aᵀ(I + AAᵀ)⁻¹A)`` in the first)."""
    a = _scaled(jac_over_sd, prior_sd) / np.asarray(ratio, np.float64)[None, :, None]
    a = a.reshape(-1, a.shape[-1])
    rows, p = a.shape
    if rows <= p:
        solved = scipy.linalg.solve(np.eye(rows) + a @ a.T, a, assume_a="pos")
        return np.einsum("rp,rp->p", a, solved)
    return 1.0 - np.diag(_spd_inverse(np.eye(p) + a.T @ a))


def evidence_factors(theta, prior_sd, gammas, labels) -> dict[str, float]:
    """MacKay's evidence update of each group's prior scale: ``c_g`` with ``c_g² =
    Σ_{i∈g} (θᵢ/sᵢ)² / Σ_{i∈g} γᵢ``, the factor on the scale of the group ``g`` (all
    ``i`` with ``labels[i] == g``; ``None`` labels belong to none) that maximizes the
    linearized evidence (MacKay 1992, eq. 2.21 for each group). ``θ`` the parameters
    (prior mean 0), ``s`` their prior sds, ``γ`` :func:`parameter_gammas`."""
    z2 = (np.asarray(theta, np.float64) / np.asarray(prior_sd, np.float64)) ** 2
    labels = np.asarray(labels, dtype=object)
    factors = {}
    for group in dict.fromkeys(g for g in labels if g is not None):
        idx = labels == group
        factors[group] = float(np.sqrt(z2[idx].sum() / max(float(gammas[idx].sum()), 1e-9)))
    return factors


def _scaled(jac_over_sd, prior_sd) -> np.ndarray:
    """``A = J Σ⁻¹ᐟ² S`` ``[N, O, P]`` in float64: the Jacobian in units of the prior sds."""
    return np.asarray(jac_over_sd, dtype=np.float64) * np.asarray(prior_sd, np.float64)


def _output_grams(a: np.ndarray) -> list[np.ndarray] | None:
    """``[A_oᵀA_o]`` ``[P, P]`` per output, where the ``P × P`` form applies (several
    outputs, ``N·O > P``); ``None`` elsewhere."""
    n, o, p = a.shape
    if o == 1 or n * o <= p:
        return None
    return [a[:, j].T @ a[:, j] for j in range(o)]


def _gamma_function(a: np.ndarray, grams: list[np.ndarray] | None = None):
    """``γ(c) [O]``: :func:`effective_parameters` of ``A`` ``[N, O, P]`` (:func:`_scaled`)
    with each output's noise sd multiplied by ``c [O]``; the products of ``A`` are formed
    once (``grams``: :func:`_output_grams` of ``A`` where already formed)."""
    n, o, p = a.shape
    if o == 1:  # one output: γ(c) = Σ (μ/c²)/(1 + μ/c²) from one eigensolve
        flat = a[:, 0]
        mu = np.linalg.eigvalsh(flat @ flat.T if n <= p else flat.T @ flat)
        mu = np.clip(mu, 0.0, None)  # round-off can leave tiny negative eigenvalues
        return lambda c: np.array([np.sum(mu / (c[0] ** 2 + mu))])
    if n * o <= p:  # diag of K (I + K)⁻¹ with K = A Aᵀ, rows ordered (n, o)
        flat = a.reshape(n * o, p)
        k = flat @ flat.T
        row_output = np.tile(np.arange(o), n)

        def gamma_rows(c):
            d = 1.0 / np.asarray(c, np.float64)[row_output]
            kc = k * d[:, None] * d[None, :]
            hat = np.linalg.solve(np.eye(n * o) + kc, kc)  # (I + K)⁻¹ K = K (I + K)⁻¹
            return np.bincount(row_output, weights=np.diag(hat), minlength=o)

        return gamma_rows
    grams = _output_grams(a) if grams is None else grams

    def gamma_params(c):
        scaled = [g / cj**2 for g, cj in zip(grams, np.asarray(c, np.float64), strict=True)]
        inv = _spd_inverse(np.eye(p) + sum(scaled))
        return np.array([np.sum(inv * g) for g in scaled])  # tr(inv · g), g symmetric

    return gamma_params


def _spd_inverse(m: np.ndarray) -> np.ndarray:
    """The inverse of the symmetric positive definite ``m`` from its Cholesky factor (about
    0.7× the time of ``np.linalg.inv`` at ``P = 1 220``); by LU where the factorization fails."""
    factor, info = scipy.linalg.lapack.dpotrf(m, lower=True)
    if info == 0:
        inv, info = scipy.linalg.lapack.dpotri(factor, lower=True)
    if info != 0:
        return np.linalg.inv(m)
    return np.tril(inv) + np.tril(inv, -1).T  # dpotri fills the lower triangle only


def _output_eigenvalues(grams: list[np.ndarray] | None):
    """``μ(c, o)``, from :func:`_output_grams` (``N·O > P``, several outputs): the
    eigenvalues ``μᵢ`` of output ``o``'s data precision measured against the prior's plus
    the other outputs' (their noise sds multiplied by ``c``), so that
    ``γ_o = Σ μᵢ/(s + μᵢ)`` at ``c_o = √s``; one Cholesky factorization and one eigensolve,
    where :func:`_gamma_function` inverts a ``P × P`` matrix for every ``s``. ``None``
    where ``grams`` is (the other forms).

    With ``B = I + Σ_{j≠o} G_j/c_j² = L Lᵀ`` and ``C = L⁻¹ G_o L⁻ᵀ`` (``G_j = A_jᵀA_j``),
    ``M = B + G_o/s = L (I + C/s) Lᵀ``, so ``tr(M⁻¹ G_o/s) = tr((I + C/s)⁻¹ C/s)``.
    """
    if grams is None:
        return None
    p = grams[0].shape[0]

    def eigenvalues(c, out):
        others = np.eye(p) + sum(
            g / cj**2 for j, (g, cj) in enumerate(zip(grams, c, strict=True)) if j != out
        )
        chol = np.linalg.cholesky(others)
        half = scipy.linalg.solve_triangular(chol, grams[out], lower=True)  # L⁻¹ G_o
        whole = scipy.linalg.solve_triangular(chol, half.T, lower=True)  # L⁻¹ G_o L⁻ᵀ
        return np.clip(np.linalg.eigvalsh((whole + whole.T) / 2), 0.0, None)

    return eigenvalues


#: Most iterations of :func:`_joint_iteration` before the sweeps of :func:`_fixed_point`
#: take over.
JOINT_ITERATIONS = 60


def _joint_iteration(gamma_of, rss, n: int, solvable, rtol: float):
    """``(c, γ)`` from MacKay's update of every output at once, ``c_o ← √(rss_o/(N − γ_o(c)))``,
    or ``None`` where it will not settle within :data:`JOINT_ITERATIONS` iterations (``γ``
    near ``N``, where it swings around the root or crawls towards it) or leaves
    ``N − γ ≤ 0``.

    Each iteration is one evaluation of ``γ`` (one ``P × P`` inverse in the ``P × P``
    form), where a sweep of :func:`_fixed_point` eigensolves each output's precision in
    turn. Where the fit leaves most rows to the noise the update contracts fast (its
    slope is about ``Σ λᵢ(1 − λᵢ)/(N − γ)`` in one output, ``λᵢ`` the hat matrix's
    eigenvalues). From the ratio of its last two steps it foresees how many more it needs
    to move by less than ``rtol``, and gives up at once where that exceeds what is left.
    Outputs not ``solvable`` keep ``c = 1``.
    """
    ratio = np.ones(len(rss))
    before = None  # the largest relative move of the last iteration
    for done in range(1, JOINT_ITERATIONS + 1):
        room = n - gamma_of(ratio)
        if not np.all(room[solvable] > 0):
            return None
        new = ratio.copy()
        new[solvable] = np.sqrt(rss[solvable] / room[solvable])
        if not np.all(np.isfinite(new)):
            return None
        move = float(np.max(np.abs(new - ratio) / new))
        if move <= rtol:
            return new, gamma_of(new)
        if before is not None:
            shrink = move / before
            if shrink >= 1 or done + np.log(rtol / move) / np.log(shrink) > JOINT_ITERATIONS:
                return None
        ratio, before = new, move
    return None


def _fixed_point(jac_over_sd, prior_sd, rss, n: int, sweeps: int = 20, rtol: float = 1e-6):
    """``(c, γ)`` with ``c_o² (N − γ_o(c)) = rss_o``: the factor ``c`` on each output's MAP noise
    sd at which MacKay's update is stationary, and ``γ`` there.

    ``jac_over_sd`` and ``rss`` (``Σ z²`` per output) are measured in the MAP's noise sd.
    In ``s = c²`` the equation ``h(s) = s (N − γ(s)) − rss = 0`` is strictly increasing
    (``h′ = N − Σ λᵢ² > 0``, ``λᵢ < 1`` the hat matrix's eigenvalues, ``Σ λᵢ = γ < N``), with
    ``h(0) = −rss < 0`` and ``h ≥ 0`` at ``s = (rss + tr AᵀA)/N``: a bracketed root (Brent's
    method) always exists, where the plain iteration ``c ← √(rss/(N − γ))`` oscillates once
    ``γ`` nears ``N`` (more weights than data, a tight fit). Several outputs are first
    solved by that plain iteration of all at once (:func:`_joint_iteration`), and where it
    does not settle, one at a time by their roots, the others held, until no factor moves
    by more than ``rtol``. Outputs with a zero or non-finite ``rss`` keep ``c = 1`` (the
    MAP noise sd).
    """
    a = _scaled(jac_over_sd, prior_sd)
    rss = np.asarray(rss, np.float64)
    num_out = a.shape[1]
    grams = _output_grams(a)  # formed once, for both
    gamma_of = _gamma_function(a, grams)
    eigenvalues_of = _output_eigenvalues(grams)
    trace = np.einsum("nop,nop->o", a, a)  # tr(A_oᵀ A_o) = Σ μ at c = 1
    ratio = np.ones(num_out)
    solvable = np.isfinite(rss) & (rss > 0) & np.isfinite(trace)
    if num_out > 1:
        joint = _joint_iteration(gamma_of, rss, n, solvable, rtol)
        if joint is not None:
            return joint
    for _ in range(sweeps if num_out > 1 else 1):
        before = ratio.copy()
        for o in np.flatnonzero(solvable):
            mu = None if eigenvalues_of is None else eigenvalues_of(ratio, o)

            def h(s, o=o, mu=mu):
                if s <= 0.0:  # the limit: s (N − γ) → 0
                    return -rss[o]
                if mu is not None:
                    return s * (n - np.sum(mu / (s + mu))) - rss[o]
                c = ratio.copy()
                c[o] = np.sqrt(s)
                return s * (n - gamma_of(c)[o]) - rss[o]

            upper = (rss[o] + trace[o]) / n * (1 + 1e-9) + 1e-300
            ratio[o] = np.sqrt(brentq(h, 0.0, upper, xtol=1e-14, rtol=1e-12))
        if np.all(np.abs(ratio - before) <= rtol * ratio):
            break
    return ratio, gamma_of(ratio)


def _trace_at(model, values, x, y):
    """The model's trace with its latent sites set to ``values``."""
    return handlers.trace(handlers.substitute(model, data=values)).get_trace(x, y)


def _observation(trace):
    """``(loc, scale)`` of the Normal likelihood at :data:`~bayesresnet.sites.OBS`, each
    broadcast to the observations' shape ``[N, O]``."""
    base = _normal_base(trace[sites.OBS]["fn"])
    shape = trace[sites.OBS]["value"].shape
    return jnp.broadcast_to(base.loc, shape), jnp.broadcast_to(base.scale, shape)


def _normal_base(fn):
    base = fn.base_dist if isinstance(fn, dist.Independent) else fn
    return base if type(base) is dist.Normal else None


def _structure(model, x, y, u):
    """``(Normal latent sites other than the noise, their number of values)``, or why the
    re-estimate does not apply (no noise site, a likelihood other than the Normal); the
    model is traced abstractly (no compilation)."""
    found = {}

    def probe(u):
        trace = _trace_at(model, constrain_fn(model, (x, y), {}, u), x, y)
        found["normal"] = [
            (name, int(np.prod(site["value"].shape)))
            for name, site in trace.items()
            if site["type"] == "sample"
            and not site["is_observed"]
            and name != sites.NOISE_SCALE
            and _normal_base(site["fn"]) is not None
        ]
        found["why"] = (
            f"map: the model has no noise site {sites.NOISE_SCALE!r}"
            if sites.NOISE_SCALE not in trace
            else "map: the likelihood is not Normal"
            if _normal_base(trace[sites.OBS]["fn"]) is None
            else ""
        )
        return 0.0

    jax.eval_shape(probe, u)
    if found["why"]:
        return found["why"]
    return [name for name, _ in found["normal"]], sum(size for _, size in found["normal"])


def _row_jacobian(model, values: dict, names, x, y):
    """``[N, O, P]``: the Jacobian of the noise-free outputs with respect to the sites
    ``names`` (flattened in :func:`~jax.flatten_util.ravel_pytree` order) at ``values``.

    Each row's output depends on its own input only, so the Jacobian is formed row by row
    (reverse mode over that row's ``O`` outputs, vectorized over the rows): about ``N``
    backward passes of one row, where forward mode over the whole batch costs ``P``
    forward passes of all ``N`` rows (at 2 000 rows, width 16: 0.07 s against 3.6 s for 8
    members).
    """
    theta, unravel = ravel_pytree({k: values[k] for k in names})

    def loc_row(t, xi, yi):  # [O]: one row's output with the sites at t
        return _observation(_trace_at(model, values | unravel(t), xi[None], yi[None]))[0][0]

    return jax.vmap(jax.jacrev(loc_row), in_axes=(None, 0, 0))(theta, x, y)


class NoiseProgram(NamedTuple):
    """The compiled part of :func:`effective_noise` for ``num_members`` members:
    ``run(params) -> (J/σ [M, N, O, P], prior sds [M, P], RSS [M, O], MAP noise [M, O],
    residuals/σ [M, N, O])``."""

    run: Callable
    num_members: int
    names: tuple = ()  # the Normal sites the Jacobian's columns belong to


def _num_members(params) -> int:
    return int(jax.tree_util.tree_leaves(params)[0].shape[0])


def noise_program(model, x, y, params, *, ahead: bool = False) -> NoiseProgram | str:
    """The program of :func:`effective_noise` for members shaped as ``params`` (arrays or
    ``jax.ShapeDtypeStruct``), or why the re-estimate does not apply (a string).

    With ``ahead`` it is traced here and compiled in the background
    (:func:`~bayesresnet.infer.core.compile_ahead`): the ensemble makes it before its
    members train, so that it compiles while they do.
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    one = jax.tree_util.tree_map(lambda v: jax.ShapeDtypeStruct(v.shape[1:], v.dtype), params)
    structure = _structure(model, x, y, one)
    if isinstance(structure, str):
        return structure
    normal, num_params = structure
    entries = int(np.size(y)) * num_params
    if entries > MAX_JACOBIAN_ENTRIES:
        return (
            f"map: the Jacobian ({entries:,} numbers per member) is above {MAX_JACOBIAN_ENTRIES:,}"
        )

    def members(params, data):  # the data an argument, not constants (program_data)
        model_, x, y = bind_data(model, data)

        def member(u):
            values = constrain_fn(model_, (x, y), {}, u)
            tr = _trace_at(model_, values, x, y)
            prior_sd, _ = ravel_pytree(
                {
                    k: jnp.broadcast_to(_normal_base(tr[k]["fn"]).scale, values[k].shape)
                    for k in normal
                }
            )
            loc, scale = _observation(tr)
            jac = _row_jacobian(model_, values, normal, x, y)  # [N, O, P]
            z = (y - loc) / scale
            sse = jnp.sum(z**2, axis=0)
            return jac / scale[..., None], prior_sd, sse, values[sites.NOISE_SCALE], z

        return jax.lax.map(member, params)

    # One compiled program for all members, one member at a time; the M Jacobians come
    # back together (at most M × MAX_JACOBIAN_ENTRIES float32 numbers).
    program, data = jax.jit(members), program_data(model, x, y)
    names = tuple(normal)
    if not ahead:
        return NoiseProgram(lambda p: compiled_call(program, p, data), _num_members(params), names)
    compiled = compile_ahead(program, params, data, once=True)
    return NoiseProgram(lambda p: compiled.result()(p, data), _num_members(params), names)


def effective_noise(
    model, x, y, params: dict, *, bootstrap: bool = False,
    program: NoiseProgram | str | None = None, evidence: bool = False, distance: bool = False,
) -> NoiseRefit:  # fmt: skip
    """Each member's noise sd re-estimated as ``RSS/(N − γ)`` (module docstring).

    Args:
        model: the NumPyro model, ``model(x, y)``, with a Normal likelihood at the site
            :data:`~bayesresnet.sites.OBS` whose sd is proportional to the noise site
            :data:`~bayesresnet.sites.NOISE_SCALE`.
        x, y: the training data as the model receives them.
        params: unconstrained parameters of the members, leading axis ``M``.
        bootstrap: the members were fitted to resampled data (the MAP noise is kept).
        program: :func:`noise_program` of the same model and data, made beforehand (used
            when made for as many members as ``params`` has); made here by default.
        evidence: also each member's :func:`evidence_factors` on the
            :class:`~bayesresnet.PriorSpec` scales of the network's sites
            (``prior_factors``), at the re-estimated noise.
        distance: also how far each member's fit is from its optimum (``distance``,
            :func:`distance_to_optimum`, where it costs at most
            :data:`MAX_DISTANCE_FLOPS`); members whose Normal priors are centred at 0
            only (not anchored ones).
    """
    x, y = jnp.asarray(x), jnp.asarray(y)
    if bootstrap:
        return NoiseRefit(None, None, None, "map: bootstrap members each fit resampled data")
    if program is None or (
        isinstance(program, NoiseProgram) and program.num_members != _num_members(params)
    ):
        program = noise_program(model, x, y, params)
    if isinstance(program, str):
        return NoiseRefit(None, None, None, program)
    jacs, prior_sds, rsss, noises, residuals = jax.device_get(program.run(params))
    n_rows, num_out, p = np.shape(jacs)[1:]
    small, large = sorted((n_rows * num_out, p))
    distance = distance and small**2 * large <= MAX_DISTANCE_FLOPS
    sigma, map_sigma, gamma, factors = [], [], [], []
    theta, labels = _normal_values(params, program.names) if evidence or distance else (None, None)
    # A member's root takes seconds with several outputs and a wide network (oscillator,
    # width 16: about 0.6 s); progress and Ctrl-C between members.
    with progress_bar(len(jacs), "noise re-estimate") as bar:
        for m, (jac, prior_sd, rss, noise) in enumerate(
            zip(jacs, prior_sds, rsss, noises, strict=True)
        ):
            ratio, g = _fixed_point(jac, prior_sd, rss, x.shape[0])
            map_sigma.append(np.asarray(noise, np.float64))
            new = map_sigma[-1] * ratio
            sigma.append(np.where(np.isfinite(new) & (new > 0), new, map_sigma[-1]))  # else MAP
            gamma.append(g)
            if evidence:
                used = sigma[-1] / map_sigma[-1]  # the noise the intervals will use
                gammas = parameter_gammas(jac, prior_sd, used)
                factors.append(evidence_factors(theta[m], prior_sd, gammas, labels))
            bar.update(1)
    prior_factors = (
        {name: np.array([f[name] for f in factors]) for name in factors[0]} if factors else None
    )
    sigma, map_sigma = np.stack(sigma), np.stack(map_sigma)
    far = None
    if distance:
        far = np.stack([
            distance_to_optimum(*member, r) for member, r in
            zip(zip(jacs, prior_sds, residuals, theta, strict=True), map_sigma / sigma, strict=True)
        ])  # fmt: skip
    return NoiseRefit(
        sigma, map_sigma, np.stack(gamma),
        "effective: each member's sd re-estimated as RSS/(N − γ), γ its effective number of "
        "parameters (bayesresnet.infer.noise)", prior_factors, far,
    )  # fmt: skip


def distance_to_optimum(jac_over_sd, prior_sd, residual, theta, ratio=1.0) -> np.ndarray:
    """``[O]``: how far a fit's outputs at the training inputs are from those of its
    nearest optimum, to second order: the root mean square over the rows of ``J·δ``,
    ``δ`` the Gauss–Newton step to the optimum of the negative log posterior, in units of
    the noise sd.

    With ``A = J·diag(s)`` (the Jacobian divided by the noise sd, times the prior sds)
    and ``t = θ/s`` the whitened parameters, the step solves ``(AᵀA + I) δ̃ = Aᵀz − t``
    (``z`` the residuals over the noise sd) and the fit moves by ``A δ̃``, found through
    the ``N·O × N·O`` system ``(AAᵀ + I) m = AAᵀz − A t`` where that is the smaller. At an
    optimum ``Aᵀz = t`` and the distance is 0. The noise sd is held (its own optimum is
    not part of the step). For Normal priors centred at 0 (not an anchored member's).

    Args:
        jac_over_sd: ``[N, O, P]`` the Jacobian of the outputs, each row divided by its
            observation's noise sd (:class:`NoiseProgram`).
        prior_sd: ``[P]`` the parameters' prior sds; ``theta`` ``[P]`` their values
            (:func:`_normal_values`); ``residual`` ``[N, O]`` ``(y − f)/σ``.
        ratio: ``[O]`` the noise sd of ``jac_over_sd`` over the one to measure in.
    """
    a = _scaled(jac_over_sd, prior_sd)
    n, num_out, p = a.shape
    a = a.reshape(n * num_out, p)
    z = np.asarray(residual, np.float64).reshape(-1)
    t = np.asarray(theta, np.float64) / np.asarray(prior_sd, np.float64)
    if n * num_out <= p:
        gram = a @ a.T
        move = scipy.linalg.solve(gram + np.eye(n * num_out), gram @ z - a @ t, assume_a="pos")
    else:
        step = scipy.linalg.solve(a.T @ a + np.eye(p), a.T @ z - t, assume_a="pos")
        move = a @ step
    move = move.reshape(n, num_out)
    return np.sqrt(np.mean(move**2, axis=0)) * np.asarray(ratio, np.float64)


def _normal_values(params: dict, names) -> tuple[np.ndarray, list]:
    """Each member's values of the sites ``names`` in the Jacobian's column order ``[M, P]``
    (:func:`~jax.flatten_util.ravel_pytree` of the dict), and the
    :data:`~bayesresnet.model.PRIOR_SCALE_OF` scale of each column (``None`` for a site
    no PriorSpec scale sets). Normal sites are unconstrained: their values are ``params``'.
    """
    order = sorted(names)  # ravel_pytree's order of a dict's keys
    num = _num_members(params)
    values = [np.asarray(params[k]).reshape(num, -1) for k in order]
    labels = []
    for k, v in zip(order, values, strict=True):
        labels += [PRIOR_SCALE_OF.get(k.removesuffix(_DECENTERED))] * v.shape[1]
    return np.concatenate(values, axis=1), labels
