"""Sobol sensitivity indices per posterior draw of the surrogate's noise-free function.

:func:`sobol` estimates, for every posterior draw ``f_s`` of the network's noise-free
output (never of noisy ``y`` draws), the first-order and total Sobol indices of each
input, on one shared quasi-random design: the same points for every draw (common random
numbers), so the spread across draws is the surrogate's uncertainty about the indices,
not design noise. The result, a :class:`SobolResult`, holds the draws ``[draw, output,
input]`` with the Monte-Carlo standard error of each, and summarizes them as a pandas
table, an xarray Dataset, an ArviZ InferenceData, a SALib ``ResultDict`` or a figure.

The design is Saltelli's (2002) cross-sampling of two quasi-random matrices ``A`` and
``B`` (the first and last ``d`` columns of a scrambled Sobol sequence in ``2d``
dimensions, :class:`scipy.stats.qmc.Sobol`), laid out exactly as
``SALib.sample.sobol.sample`` lays it out, so that with the same seed the two designs are
identical. Per base row ``j`` it evaluates ``f(A_j)``, ``f(AB_j^(i))`` for each input
``i`` (``A_j`` with its ``i``-th column taken from ``B_j``), with ``second_order`` also
``f(BA_j^(i))``, and ``f(B_j)``: ``n (d + 2)`` points (``n (2d + 2)``).

Estimators (``V`` the variance of ``f`` over the ``2n`` points of ``A`` and ``B``):

- first order, Saltelli et al. (2010), Table 2 (b):
  ``S_i = (1/n) Σ_j f(B)_j (f(AB^(i))_j − f(A)_j) / V``;
- first order, Jansen (1999) (``estimator="jansen1999"``):
  ``S_i = 1 − (1/2n) Σ_j (f(B)_j − f(AB^(i))_j)² / V``;
- total, Jansen (1999) (Saltelli et al. 2010, Table 2 (f)), for both:
  ``ST_i = (1/2n) Σ_j (f(A)_j − f(AB^(i))_j)² / V``;
- second order, Saltelli (2002): ``S_ik = (1/n) Σ_j (f(BA^(i))_j f(AB^(k))_j − f(A)_j
  f(B)_j) / V − S_i − S_k``.

Centring: as ``SALib.analyze.sobol.analyze`` does, each draw's evaluations of each output
are first centred by their mean over the whole design (all ``n (d + 2)`` or ``n (2d + 2)``
points); the first-order Saltelli estimator depends on this choice (its numerator is not
shift-invariant), the others do not. With it, the indices of one function on SALib's
design equal SALib's to rounding (the tests check 1e-10).

Monte-Carlo error: every index is a ratio of means over the ``n`` base rows,
``S = ḡ / h̄`` with ``h_j = ((f(A)_j − m)² + (f(B)_j − m)²) / 2`` (``h̄ = V``); its standard
error is the delta-method one, ``sd_j(g_j − S h_j) / (√n V)``, as for ``n`` independent
rows. For the scrambled Sobol design the actual error is usually smaller, as the points
are more even than independent ones: over 20 seeds at ``n = 2¹³`` the scatter of the
Ishigami, Sobol-G and Friedman #1 indices was 0.02-0.6 of it. At small ``n`` against
the dimension it can be optimistic (up to 1.9× for Sobol-G, d = 8, at ``n = 64``), so
take ``n`` of a few thousand. The error is common to all draws (one design), so the
spread across draws leaves it out.

References:
    Jansen, M. J. W. (1999). Analysis of variance designs for model output. Computer
    Physics Communications 117(1-2), 35-43.
    Saltelli, A. (2002). Making best use of model evaluations to compute sensitivity
    indices. Computer Physics Communications 145(2), 280-297.
    Saltelli, A., Annoni, P., Azzini, I., Campolongo, F., Ratto, M. & Tarantola, S.
    (2010). Variance based sensitivity analysis of model output. Design and estimator for
    the total sensitivity index. Computer Physics Communications 181(2), 259-270.
    Sobol', I. M. (2001). Global sensitivity indices for nonlinear mathematical models and
    their Monte Carlo estimates. Mathematics and Computers in Simulation 55, 271-280.
"""

from __future__ import annotations

import dataclasses
import functools
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from scipy import stats
from scipy.stats import qmc

from bayesresnet._validate import (
    check_array,
    check_bool,
    check_choice,
    check_columns,
    check_int,
    check_level,
    check_names,
    check_table,
)
from bayesresnet.posterior import Posterior

__all__ = [
    "DISTS",
    "ESTIMATORS",
    "FunctionDraws",
    "SobolEstimate",
    "SobolResult",
    "make_function_draws",
    "saltelli_design",
    "scale_design",
    "estimate_indices",
    "sobol",
    "check_n",
]

#: Evaluations (floats) held at once per chunk of draws: the draws of one chunk are
#: evaluated on the whole design together, so memory stays at a few times this.
MAX_CHUNK_VALUES = 2**23


# ----------------------------------------------------------------------- distributions
class _Dist(NamedTuple):
    params: tuple[str, ...]  # the meaning of each entry of the input's bounds row
    check: Callable[[np.ndarray], bool]
    ppf: Callable[[np.ndarray, np.ndarray], np.ndarray]  # (u in (0, 1), row) -> x


def _truncnorm_ppf(u, row):
    lower, upper, mean, sd = row
    return stats.truncnorm.ppf(u, (lower - mean) / sd, (upper - mean) / sd, loc=mean, scale=sd)


#: Input distributions, in SALib's names and with SALib's meaning of each bounds row:
#: ``unif`` [lower, upper]; ``norm`` [mean, sd]; ``lognorm`` [mean, sd] of ``log x``;
#: ``truncnorm`` [lower, upper, mean, sd].
DISTS = {
    "unif": _Dist(("lower", "upper"), lambda r: r[0] < r[1], lambda u, r: u * (r[1] - r[0]) + r[0]),
    "norm": _Dist(("mean", "sd"), lambda r: r[1] > 0, lambda u, r: stats.norm.ppf(u, r[0], r[1])),
    "lognorm": _Dist(
        ("mean of log x", "sd of log x"),
        lambda r: r[1] > 0,
        lambda u, r: np.exp(stats.norm.ppf(u, loc=r[0], scale=r[1])),
    ),
    "truncnorm": _Dist(
        ("lower", "upper", "mean", "sd"), lambda r: r[0] < r[1] and r[3] > 0, _truncnorm_ppf
    ),
}
_REQUIREMENT = {
    "unif": "lower < upper",
    "norm": "sd > 0",
    "lognorm": "sd > 0",
    "truncnorm": "lower < upper and sd > 0",
}


# ------------------------------------------------------------------- function draws
@dataclass(frozen=True)
class FunctionDraws:
    """Draws ``f_s``, ``s = 0, …, S−1``, of a vector function: what :func:`sobol` evaluates.

    A :class:`~bayesresnet.Posterior` becomes one with :func:`make_function_draws`; any other
    source of function draws (a simulator itself, as a single draw; another surrogate)
    can be wrapped directly.

    Attributes:
        evaluate: ``(x [P, d] float64 raw units, draws [k] int) -> [k, P, O]``, the values
            ``f_s(x_p)`` of the draws with those indices (an index may repeat: the last
            block of draws is padded to the size of the others, so one compiled shape
            serves them all).
        num_draws: ``S``.
        input_names: one name per input, ``d`` in all.
        output_names: one name per output, ``O`` in all.
        x_train: the training inputs ``[N, d]``, whose box is the default input range, or
            ``None`` (then :func:`sobol` needs ``bounds``).
    """

    evaluate: Callable[[np.ndarray, np.ndarray], np.ndarray]
    num_draws: int
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    x_train: np.ndarray | None = None

    def __post_init__(self):
        if not callable(self.evaluate):
            raise TypeError(
                f"`evaluate` must be callable (x, draws) -> [k, P, O]; got "
                f"{type(self.evaluate).__name__}."
            )
        check_int("num_draws", self.num_draws, minimum=1)
        for name in ("input_names", "output_names"):
            object.__setattr__(self, name, check_names(name, getattr(self, name)))
        if self.x_train is not None:
            x = check_table("x_train", self.x_train, len(self.input_names), columns="one per input")
            object.__setattr__(self, "x_train", x)


def make_function_draws(post: Posterior, *, chunk_points: int = 4096) -> FunctionDraws:
    """The noise-free function draws of a posterior (raw units), evaluated by its forward pass.

    The draws are the posterior's draws with chains and draws merged (``S = chains ×
    draws``, chain-major); a block of them is evaluated by :meth:`Posterior.predict_f` on
    the posterior restricted to that block, in chunks of ``chunk_points`` points.
    """
    if not isinstance(post, Posterior):
        raise TypeError(f"`post` must be a bayesresnet Posterior; got {type(post).__name__}.")
    check_int("chunk_points", chunk_points, minimum=1)
    flat = post.flat_samples()

    def evaluate(x, draws):
        block = {k: v[draws][None] for k, v in flat.items()}  # one chain of these draws
        sub = dataclasses.replace(post, samples=block)
        return sub.predict_f(x, chunk_points=chunk_points, chunk_draws=len(draws))

    d, o = post.spec.in_features, post.spec.out_features
    return FunctionDraws(
        evaluate=evaluate,
        num_draws=post.num_samples,
        input_names=post.input_names or tuple(f"x{j + 1}" for j in range(d)),
        output_names=post.output_names or tuple(f"y{j + 1}" for j in range(o)),
        x_train=post.x_train,
    )


# ---------------------------------------------------------------------------- design
def saltelli_design(n: int, num_inputs: int, *, second_order: bool = False, seed: int = 0):
    """Saltelli's cross-sampled design on the unit cube, in SALib's row order.

    Args:
        n: base rows (a power of 2, for the balance of the Sobol sequence).
        num_inputs: ``d``.
        second_order: add the ``BA^(i)`` rows needed by second-order indices.
        seed: seed of the scrambling (as ``SALib.sample.sobol.sample(..., seed=seed)``).

    Returns:
        ``[n·(d + 2), d]`` (``[n·(2d + 2), d]`` with ``second_order``) points in (0, 1):
        per base row ``j``, the rows ``A_j``, ``AB_j^(1..d)``, [``BA_j^(1..d)``], ``B_j``.
    """
    d = check_int("num_inputs", num_inputs, minimum=1)
    n = check_n(n)
    base = qmc.Sobol(d=2 * d, scramble=True, seed=check_int("seed", seed, minimum=0)).random(n)
    a, b = base[:, None, :d], base[:, None, d:]  # [n, 1, d]
    eye = np.eye(d, dtype=bool)[None]  # [1, d (row), d (column)]
    blocks = [a, np.where(eye, b, a)]  # A, then AB^(i): A with column i from B
    if check_bool("second_order", second_order):
        blocks.append(np.where(eye, a, b))  # BA^(i): B with column i from A
    blocks.append(b)
    return np.concatenate(blocks, axis=1).reshape(-1, d)


def scale_design(u, problem: Mapping) -> np.ndarray:
    """Points ``u`` in (0, 1) mapped to the inputs' distributions (inverse CDFs).

    ``problem`` is a SALib problem dict with ``bounds`` and optional ``dists`` (default all
    ``"unif"``), each row read as SALib reads it (see :data:`DISTS`); the arithmetic is
    SALib's (``SALib.util.scale_samples``), so the same ``u`` gives the same points.
    """
    u = check_array("u", u, ndim=2)
    rows, dists = _check_problem_rows(problem["bounds"], problem.get("dists"), u.shape[1])
    return np.stack([DISTS[dist].ppf(u[:, j], rows[j]) for j, dist in enumerate(dists)], axis=1)


# ------------------------------------------------------------------------- estimator
def _saltelli_first(a, b, ab, h):
    """Saltelli et al. (2010), Table 2 (b): terms ``f(B) (f(AB^(i)) − f(A))``."""
    del h
    return b[:, :, None] * (ab - a[:, :, None])


def _jansen_first(a, b, ab, h):
    """Jansen (1999): terms ``h − (f(B) − f(AB^(i)))² / 2``, whose mean is ``V − (V − V_i)``."""
    del a
    return h[:, :, None] - 0.5 * (b[:, :, None] - ab) ** 2


#: First-order estimators by name: per-row terms ``g`` with ``S_i = mean_j g / V``.
ESTIMATORS = {"saltelli2010": _saltelli_first, "jansen1999": _jansen_first}


class SobolEstimate(NamedTuple):
    """Indices of a set of function draws on one design (arrays, float64).

    Attributes:
        S1, ST: first-order and total indices ``[draw, output, input]``.
        S1_se, ST_se: their Monte-Carlo standard errors (same shape).
        variance: ``V``, the variance of each draw's output over ``A`` and ``B``
            ``[draw, output]``.
        S2, S2_se: second-order indices ``[draw, output, input, input]`` (entry ``[i, k]``
            for ``i < k``, NaN elsewhere, as SALib), or ``None``.
    """

    S1: np.ndarray
    ST: np.ndarray
    S1_se: np.ndarray
    ST_se: np.ndarray
    variance: np.ndarray
    S2: np.ndarray | None = None
    S2_se: np.ndarray | None = None


def _ratio(g, h, v, n):
    """``ḡ / V`` and its delta-method standard error ``sd(g − S h) / (√n V)`` over rows.

    ``g [k, n, …, O]`` per-row terms, ``h [k, n, O]`` per-row variance terms, ``V [k, O]``.
    """
    inner = (1,) * (g.ndim - 3)
    v = v.reshape(v.shape[:1] + inner + v.shape[1:])  # [k, 1…, O]
    h = h.reshape(h.shape[:2] + inner + h.shape[2:])  # [k, n, 1…, O]
    s = g.mean(axis=1) / v
    se = jnp.std(g - s[:, None] * h, axis=1, ddof=1) / (jnp.sqrt(n) * v)
    return s, se


def _indices(y, *, num_inputs: int, second_order: bool, estimator: str):
    """Indices of draws ``y [k, n, step, O]`` (rows in :func:`saltelli_design`'s order)."""
    d, n = num_inputs, y.shape[1]
    y = y - y.mean(axis=(1, 2), keepdims=True)  # SALib's centring: over the whole design
    a, b = y[:, :, 0], y[:, :, -1]  # [k, n, O]
    ab = y[:, :, 1 : d + 1]  # [k, n, d, O]
    m = 0.5 * (a.mean(axis=1) + b.mean(axis=1))  # mean over A and B, [k, O]
    h = 0.5 * ((a - m[:, None]) ** 2 + (b - m[:, None]) ** 2)  # [k, n, O]
    v = h.mean(axis=1)  # np.var(np.r_[A, B]), [k, O]
    g1 = ESTIMATORS[estimator](a, b, ab, h)
    s1, s1_se = _ratio(g1, h, v, n)
    st, st_se = _ratio(0.5 * (a[:, :, None] - ab) ** 2, h, v, n)
    out = {"S1": s1, "ST": st, "S1_se": s1_se, "ST_se": st_se, "variance": v}
    if second_order:
        ba = y[:, :, d + 1 : 2 * d + 1]
        w = (  # [k, n, d, d, O]
            ba[:, :, :, None] * ab[:, :, None, :]
            - (a * b)[:, :, None, None]
            - g1[:, :, :, None]
            - g1[:, :, None, :]
        )
        out["S2"], out["S2_se"] = _ratio(w, h, v, n)
    # [k, d, O] -> [k, O, d] (and [k, d, d, O] -> [k, O, d, d])
    return {k: (jnp.moveaxis(x, -1, 1) if x.ndim > 2 else x) for k, x in out.items()}


@functools.lru_cache(maxsize=16)
def _indices_program(num_inputs: int, second_order: bool, estimator: str):
    return jax.jit(
        functools.partial(
            _indices, num_inputs=num_inputs, second_order=second_order, estimator=estimator
        )
    )


def _design_step(num_inputs: int, second_order: bool) -> int:
    return 2 * num_inputs + 2 if second_order else num_inputs + 2


def estimate_indices(
    y, num_inputs: int, *, second_order: bool = False, estimator: str = "saltelli2010"
) -> SobolEstimate:
    """Sobol indices of function values on a Saltelli design (float64, vectorized in JAX).

    Args:
        y: values ``[draw, P, output]`` (or ``[P, output]``, or ``[P]``) at the rows of a
            design in :func:`saltelli_design`'s (SALib's) order, ``P = n·(d + 2)``
            (``n·(2d + 2)`` with ``second_order``).
        num_inputs: ``d``.
        second_order: the design has the ``BA^(i)`` rows; also return ``S2``.
        estimator: first-order estimator, a key of :data:`ESTIMATORS`.

    Returns:
        A :class:`SobolEstimate` with a leading draw axis and an output axis even when
        ``y`` had none. A draw whose output is constant over the design has NaN indices
        (with a warning).
    """
    d = check_int("num_inputs", num_inputs, minimum=1)
    second_order = check_bool("second_order", second_order)
    check_choice("estimator", estimator, ESTIMATORS)
    y = check_array("y", y, ndim=(1, 2, 3))
    y = y if y.ndim == 3 else _as_draws(y)
    step = _design_step(d, second_order)
    if y.shape[1] % step or y.shape[1] < 2 * step:
        raise ValueError(
            f"`y` must hold n·{step} values per draw and output (n ≥ 2 base rows of a design "
            f"for {d} inputs, second_order={second_order}); got {y.shape[1]}."
        )
    k, p, o = y.shape
    with jax.enable_x64(True):
        program = _indices_program(d, second_order, estimator)
        out = program(jnp.asarray(y.reshape(k, p // step, step, o), dtype=jnp.float64))
        out = {name: np.array(value) for name, value in out.items()}  # writable copies
    for name in ("S2", "S2_se") if second_order else ():
        out[name][:, :, _lower_pairs(d)] = np.nan  # only i < k, as SALib
    _flag_constant(out, y)
    return SobolEstimate(**out)


def _as_draws(y):
    """``[P]`` -> ``[1, P, 1]``; ``[P, O]`` -> ``[1, P, O]``."""
    return y[None, :, None] if y.ndim == 1 else y[None]


def _flag_constant(out, y):
    """NaN indices (and a warning) where a draw's output does not vary over the design."""
    scale = np.maximum(np.abs(y).max(axis=1), np.finfo(np.float64).tiny)  # [k, O]
    constant = out["variance"] <= (64 * np.finfo(np.float64).eps * scale) ** 2
    if not constant.any():
        return
    draws, outputs = np.nonzero(constant)
    warnings.warn(
        f"the output is constant over the design in {len(draws)} (draw, output) pairs "
        f"(first: draw {draws[0]}, output {outputs[0]}); their Sobol indices are NaN.",
        RuntimeWarning,
        stacklevel=3,
    )
    for name, value in out.items():
        if name != "variance":
            value[constant] = np.nan
    out["variance"][constant] = 0.0


def _lower_pairs(num_inputs: int) -> np.ndarray:
    """Mask ``[d, d]`` of the entries ``i ≥ k``, NaN in second-order arrays (as SALib)."""
    return ~np.triu(np.ones((num_inputs, num_inputs), dtype=bool), k=1)


# ---------------------------------------------------------------------------- result
@dataclass(frozen=True)
class SobolResult:
    """Sobol indices per posterior draw, with their Monte-Carlo errors.

    Attributes:
        S1, ST: first-order and total indices ``[draw, output, input]``.
        S1_se, ST_se: Monte-Carlo standard error of each (from the design size ``n``).
        variance: the output's variance per draw over the design ``[draw, output]``.
        S2, S2_se: second-order indices ``[draw, output, input, input]`` (``[i, k]`` for
            ``i < k``, NaN elsewhere) when asked for, else ``None``.
        input_names, output_names: the names of the inputs and of the outputs analysed.
        draws: the posterior draws used (indices into the flattened chains × draws).
        problem: the SALib problem dict of the input distributions (``num_vars``,
            ``names``, ``bounds``, ``dists``).
        n: base rows of the design; it had ``n·(d + 2)`` points (``n·(2d + 2)``).
        second_order, estimator, seed: the settings.
        timings: wall times in seconds of the design, the evaluations and the estimator.
        attrs: what the numbers mean: where the input ranges came from, the estimators,
            the centring and the Monte-Carlo error (strings).
    """

    S1: np.ndarray
    ST: np.ndarray
    S1_se: np.ndarray
    ST_se: np.ndarray
    variance: np.ndarray
    S2: np.ndarray | None
    S2_se: np.ndarray | None
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    draws: np.ndarray
    problem: dict[str, Any]
    n: int
    second_order: bool
    estimator: str
    seed: int
    timings: dict[str, float]
    attrs: dict[str, str]

    @property
    def num_draws(self) -> int:
        return int(self.S1.shape[0])

    def _indices(self):
        """``(name, draws [draw, output, input'], se, input labels)`` of each kind of index."""
        out = [
            ("S1", self.S1, self.S1_se, list(self.input_names)),
            ("ST", self.ST, self.ST_se, list(self.input_names)),
        ]
        if self.S2 is not None:
            i, k = np.nonzero(~_lower_pairs(len(self.input_names)))
            labels = [f"{self.input_names[a]},{self.input_names[b]}" for a, b in zip(i, k)]
            out.append(("S2", self.S2[:, :, i, k], self.S2_se[:, :, i, k], labels))
        return out

    def summary(self, hdi_prob: float = 0.9):
        """A pandas DataFrame: one row per output, index and input (or pair of inputs).

        Columns: ``output``, ``index`` (``S1``, ``ST``, ``S2``), ``input``, ``mean`` and
        ``sd`` over the draws, the highest-density interval ``hdi_{lo}%``, ``hdi_{hi}%``
        (ArviZ's, at ``hdi_prob``), and ``mc_se``: the root-mean-square over draws of each
        draw's Monte-Carlo standard error (the error from the finite design; the design is
        shared, so it is also the error of the posterior mean).
        """
        import pandas as pd

        from bayesresnet import diagnostics

        hdi_prob = check_level("hdi_prob", hdi_prob)
        lo_name, hi_name = (f"hdi_{100 * p:g}%" for p in ((1 - hdi_prob) / 2, (1 + hdi_prob) / 2))
        rows = []
        for name, draws, se, labels in self._indices():
            intervals = diagnostics.hdi(draws, hdi_prob)  # [output, input', 2]
            for o, output in enumerate(self.output_names):
                for j, label in enumerate(labels):
                    rows.append(
                        {
                            "output": output,
                            "index": name,
                            "input": label,
                            "mean": draws[:, o, j].mean(),
                            "sd": draws[:, o, j].std(),
                            lo_name: intervals[o, j, 0],
                            hi_name: intervals[o, j, 1],
                            "mc_se": np.sqrt(np.mean(se[:, o, j] ** 2)),
                        }
                    )
        return pd.DataFrame(rows)

    def _variables(self):
        """``({name: (dims, draws)}, {name: (dims, per-draw statistics)})``."""
        dims = ("output", "input")
        indices = {"S1": (dims, self.S1), "ST": (dims, self.ST)}
        errors = {
            "S1_mc_se": (dims, self.S1_se),
            "ST_mc_se": (dims, self.ST_se),
            "variance": (("output",), self.variance),
        }
        if self.S2 is not None:
            pair = dims + ("other_input",)
            indices["S2"] = (pair, self.S2)
            errors["S2_mc_se"] = (pair, self.S2_se)
        return indices, errors

    def _coords(self):
        return {
            "output": list(self.output_names),
            "input": list(self.input_names),
            "other_input": list(self.input_names),
        }

    def _plain_attrs(self):
        return {
            **self.attrs,
            "n": self.n,
            "estimator": self.estimator,
            "second_order": int(self.second_order),
            "seed": self.seed,
        }

    def to_xarray(self):
        """An ``xarray.Dataset``: the indices and their errors over ``draw`` (the posterior
        draw's index, :attr:`draws`), ``output`` and ``input``; :attr:`attrs` as attributes."""
        import xarray as xr

        indices, errors = self._variables()
        coords = {"draw": self.draws, **self._coords()}
        variables = {
            k: (("draw",) + dims, value) for k, (dims, value) in {**indices, **errors}.items()
        }
        used = {d for dims, _ in variables.values() for d in dims}
        coords = {k: v for k, v in coords.items() if k in used}
        return xr.Dataset(variables, coords=coords, attrs=self._plain_attrs())

    def to_inference_data(self):
        """An ``arviz.InferenceData``: the indices in ``posterior``, their Monte-Carlo errors
        and the variance in ``sample_stats``; one chain over the draws used."""
        from bayesresnet import diagnostics

        indices, errors = self._variables()
        dims = {k: list(d) for k, (d, _) in {**indices, **errors}.items()}
        coords = {k: v for k, v in self._coords().items() if any(k in d for d in dims.values())}
        return diagnostics.draws_to_inference_data(
            {k: v for k, (_, v) in indices.items()},
            sample_stats={k: v for k, (_, v) in errors.items()},
            coords=coords,
            dims=dims,
            attrs=self._plain_attrs(),
        )

    def to_salib(self, output=0, *, conf_level: float = 0.95):
        """SALib's ``ResultDict`` of the posterior-mean indices of one output.

        ``S1``, ``ST`` (and ``S2``) are the means over the draws; each ``*_conf`` is the
        half-width of a central ``conf_level`` normal interval,
        ``z · sqrt(sd² over draws + mean MC se²)``: the surrogate's uncertainty about the
        index and the design's. ``to_df()`` gives SALib's tables. Needs SALib installed.

        Args:
            output: an output name or index.
            conf_level: the level of the ``*_conf`` half-widths.
        """
        try:
            from SALib.analyze import sobol as salib_sobol
            from SALib.util import ResultDict
        except ImportError as exc:  # pragma: no cover - SALib is a test dependency
            raise ImportError("`to_salib` needs SALib: pip install SALib") from exc
        o = _check_outputs(output, self.output_names, name="output")[0]
        z = stats.norm.ppf(0.5 + check_level("conf_level", conf_level) / 2)
        result = ResultDict()
        kinds = [("S1", self.S1, self.S1_se), ("ST", self.ST, self.ST_se)]
        if self.S2 is not None:
            kinds.append(("S2", self.S2, self.S2_se))
        for name, draws, se in kinds:
            draws, se = draws[:, o], se[:, o]
            result[name] = draws.mean(axis=0)
            result[f"{name}_conf"] = z * np.sqrt(draws.var(axis=0) + np.mean(se**2, axis=0))
        # As SALib.analyze.sobol.analyze attaches them: the problem and its table method.
        result.problem = dict(self.problem)
        result.to_df = salib_sobol.to_df.__get__(result)
        return result

    def plot(self, *, hdi_prob: float = 0.9):
        """Bars of the posterior-mean ``S1`` and ``ST`` per input with their HDI bands, one
        panel per output (the first four); a :class:`matplotlib.figure.Figure`."""
        from bayesresnet import diagnostics
        from bayesresnet.plots import _panels

        hdi_prob = check_level("hdi_prob", hdi_prob)
        fig, axes = _panels(len(self.output_names))
        x = np.arange(len(self.input_names))
        for o, ax in enumerate(axes):
            for shift, (name, draws, _, _) in zip((-0.2, 0.2), self._indices()[:2]):
                mean = draws[:, o].mean(axis=0)
                band = diagnostics.hdi(draws[:, o], hdi_prob)
                err = np.stack([mean - band[:, 0], band[:, 1] - mean]).clip(min=0)
                ax.bar(x + shift, mean, width=0.4, yerr=err, capsize=2, label=name)
            ax.set_xticks(x, self.input_names, rotation=45 if len(x) > 6 else 0)
            ax.set_ylabel("Sobol index")
            ax.set_title(self.output_names[o], fontsize="medium")
            ax.axhline(0.0, color="0.5", linewidth=0.5)
        axes[0].legend(fontsize="small", title=f"{hdi_prob:.0%} HDI", title_fontsize="small")
        return fig


# ------------------------------------------------------------------------ validation
def check_n(n, name: str = "n") -> int:
    """The design's base rows ``n``: an int ≥ 4 and a power of 2 (the balance of the Sobol
    sequence). ``name`` is the argument as the caller spells it (``"n"``, or a command-line
    option such as ``"--n"``); the message suggests the two nearest powers of 2 in its form.
    """
    n = check_int(name, n, minimum=4)
    if n & (n - 1):
        spell = (lambda v: f"{name} {v}") if name.startswith("--") else (lambda v: f"{name}={v}")
        raise ValueError(
            f"`{name}` must be a power of 2 (the design's base rows, for the balance of the "
            f"Sobol sequence); got {n}. Try {spell(1 << (n.bit_length() - 1))} or "
            f"{spell(1 << n.bit_length())}."
        )
    return n


def _check_problem_rows(bounds, dists, num_inputs: int):
    """``(rows, dists)``: one float row per input, checked against its distribution."""
    if isinstance(bounds, str) or not isinstance(bounds, Sequence | np.ndarray):
        raise TypeError(
            f"`bounds` must be a sequence with one row per input; got {type(bounds).__name__}."
        )
    if len(bounds) != num_inputs:
        raise ValueError(
            f"`bounds` must have one row per input ({num_inputs}); got {len(bounds)} rows."
        )
    if dists is None:
        dists = ("unif",) * num_inputs
    if isinstance(dists, str) or not isinstance(dists, Sequence | np.ndarray):
        raise TypeError(
            f"`dists` must be a sequence of distribution names, one per input; got "
            f"{type(dists).__name__} {dists!r}."
        )
    if len(dists) != num_inputs:
        raise ValueError(f"`dists` must have one name per input ({num_inputs}); got {len(dists)}.")
    dists = tuple(check_choice(f"dists[{j}]", dist, DISTS) for j, dist in enumerate(dists))
    rows = []
    for j, (row, dist) in enumerate(zip(bounds, dists)):
        params = DISTS[dist].params
        row = check_array(f"bounds[{j}]", row, ndim=1, fix="Give finite numbers.")
        if len(row) != len(params) or not DISTS[dist].check(row):
            raise ValueError(
                f"`bounds[{j}]` of a {dist!r} input must be [{', '.join(params)}] with "
                f"{_REQUIREMENT[dist]}; got {row.tolist()}."
            )
        rows.append(row)
    return rows, dists


def _check_outputs(outputs, names, *, name: str = "outputs") -> list[int]:
    """Output indices from ``None`` (all), a name, an index, or a sequence of those."""
    if outputs is None:
        return list(range(len(names)))
    return check_columns(name, outputs, names, noun="output")


def _resolve_problem(fd: FunctionDraws, bounds, dists):
    """The SALib problem dict, and where its ranges came from."""
    names = list(fd.input_names)
    d = len(names)
    source = "given"
    if isinstance(bounds, Mapping):
        if dists is not None:
            raise ValueError(
                "pass `dists` inside the problem dict given as `bounds`, not both; got "
                f"dists={dists!r} and a problem dict."
            )
        unknown = set(bounds) - {"names", "bounds", "dists", "num_vars", "sample_scaled"}
        if unknown:
            raise ValueError(
                f"the problem dict given as `bounds` has keys {sorted(unknown)} that `sobol` "
                "does not support; it reads names, bounds, dists and num_vars (no groups)."
            )
        if "bounds" not in bounds:
            raise ValueError("the problem dict given as `bounds` needs a 'bounds' entry.")
        given = list(bounds.get("names", names))
        if len(given) != d or ("num_vars" in bounds and bounds["num_vars"] != d):
            raise ValueError(
                f"the problem dict given as `bounds` must describe the model's {d} inputs "
                f"{names}; got num_vars={bounds.get('num_vars')!r} and names {given}."
            )
        if given != names:
            raise ValueError(
                f"the problem dict's names {given} differ from the model's inputs {names}; "
                "list the inputs in the model's column order, under its names."
            )
        dists, bounds = bounds.get("dists"), bounds["bounds"]
        source = "given (a SALib problem dict)"
    if bounds is None:
        if dists is not None and any(dist != "unif" for dist in dists):
            raise ValueError(
                f"`bounds` is required with non-uniform `dists` {list(dists)}: their rows "
                "are distribution parameters (norm: [mean, sd], …), not a box."
            )
        if fd.x_train is None:
            raise ValueError(
                "`bounds` is required: these function draws carry no training inputs whose "
                "box could serve as the input ranges."
            )
        lower, upper = fd.x_train.min(axis=0), fd.x_train.max(axis=0)
        flat = np.flatnonzero(lower >= upper)
        if flat.size:
            raise ValueError(
                f"the training inputs are constant in column {flat[0]} ({names[flat[0]]!r}), "
                "so their box cannot be the input range; pass `bounds`."
            )
        bounds = np.stack([lower, upper], axis=1)
        source = (
            f"the training data's box: each input uniform between its min and max over "
            f"the {len(fd.x_train)} training points"
        )
    rows, dists = _check_problem_rows(bounds, dists, d)
    problem = {
        "num_vars": d,
        "names": names,
        "bounds": [row.tolist() for row in rows],
        "dists": list(dists),
    }
    return problem, source


# ------------------------------------------------------------------------------ sobol
def _estimate_in_chunks(fd, x, draws, chunk, out_idx, d, second_order, estimator, timings):
    """Evaluate the draws on the design ``chunk`` at a time and estimate their indices."""
    o = len(fd.output_names)
    parts = []
    for start in range(0, len(draws), chunk):
        block = draws[start : start + chunk]
        padded = np.concatenate([block, np.repeat(block[-1:], chunk - len(block))])  # one shape
        t0 = time.perf_counter()
        f = np.asarray(fd.evaluate(x, padded))
        timings["evaluate"] += time.perf_counter() - t0
        if f.shape != (chunk, len(x), o):
            raise ValueError(
                f"the function draws' `evaluate` must return [draws, points, outputs] = "
                f"{[chunk, len(x), o]}; got shape {list(f.shape)}."
            )
        t0 = time.perf_counter()
        estimate = estimate_indices(
            f[: len(block)][..., out_idx], d, second_order=second_order, estimator=estimator
        )
        timings["estimate"] += time.perf_counter() - t0
        parts.append(estimate)
    return {
        k: None if getattr(parts[0], k) is None else np.concatenate([getattr(p, k) for p in parts])
        for k in SobolEstimate._fields
    }


def _result_attrs(source: str, estimator: str, num_points: int, second_order: bool) -> dict:
    """What a :class:`SobolResult` says about how it was computed."""
    first = "Saltelli et al. (2010)" if estimator == "saltelli2010" else "Jansen (1999)"
    return {
        "bounds_source": source,
        "function": "noise-free function draws f (observation noise not included)",
        "estimators": f"S1: {first}; ST: Jansen (1999)"
        + ("; S2: Saltelli (2002)" if second_order else ""),
        "centring": "each draw's outputs centred by their mean over the whole design, as SALib",
        "mc_se": "delta-method standard error of a ratio of means over n independent rows; "
        "usually conservative for the scrambled Sobol design",
        "design": f"Saltelli design from a scrambled Sobol sequence, {num_points} points shared "
        "by every draw",
    }


def sobol(
    post,
    *,
    bounds=None,
    dists=None,
    n: int = 2**13,
    second_order: bool = False,
    estimator: str = "saltelli2010",
    outputs=None,
    max_draws: int | None = None,
    seed: int = 0,
    chunk_draws: int | None = None,
) -> SobolResult:
    """Sobol indices of every posterior draw of the noise-free function, on one design.

    Each draw ``f_s`` (the network's noise-free output; observation noise never enters)
    is evaluated on the same Saltelli design of ``n·(d + 2)`` points (``n·(2d + 2)`` with
    ``second_order``), and its first-order and total indices are estimated with their
    Monte-Carlo errors (the module docstring gives the estimators, the centring and the
    error). Draws are evaluated in chunks of ``chunk_draws`` (by default as many as keep
    about :data:`MAX_CHUNK_VALUES` values in memory), each chunk on the whole design.

    Input ranges: by default every input is **uniform on the training data's box** (its
    min and max over the training points; ``result.attrs["bounds_source"]`` says so).
    ``bounds`` gives one row per input instead, read by ``dists`` as SALib reads it
    (``unif`` [lower, upper], ``norm`` [mean, sd], ``lognorm`` [mean, sd] of ``log x``,
    ``truncnorm`` [lower, upper, mean, sd]); or ``bounds`` is a whole SALib problem dict
    ``{"names", "bounds", "dists"}`` whose names are the model's inputs in order.

    Args:
        post: a :class:`~bayesresnet.Posterior`, or :class:`FunctionDraws`.
        bounds: ``None`` (the training box), rows ``[d, ·]``, or a SALib problem dict.
        dists: one name of :data:`DISTS` per input (default all ``"unif"``).
        n: base rows of the design, a power of 2 (≥ 4).
        second_order: also estimate ``S2`` (``d`` more points per base row).
        estimator: first-order estimator, ``"saltelli2010"`` (SALib's and SciPy's) or
            ``"jansen1999"``; totals are Jansen's either way.
        outputs: output names or indices to analyse (default all).
        max_draws: use at most this many draws, evenly spaced over the (chain-major)
            draws; default all.
        seed: seed of the design's scrambling (SALib's ``seed``).
        chunk_draws: draws evaluated together (default from the memory budget).

    Returns:
        A :class:`SobolResult`.

    Raises:
        TypeError, ValueError: naming the argument, for any invalid one, before anything
            is computed.
    """
    fd = make_function_draws(post) if isinstance(post, Posterior) else post
    if not isinstance(fd, FunctionDraws):
        raise TypeError(
            f"`post` must be a bayesresnet Posterior or FunctionDraws; got {type(post).__name__}."
        )
    problem, source = _resolve_problem(fd, bounds, dists)
    n = check_n(n)
    second_order = check_bool("second_order", second_order)
    check_choice("estimator", estimator, ESTIMATORS)
    out_idx = _check_outputs(outputs, list(fd.output_names))
    num_used = fd.num_draws if max_draws is None else check_int("max_draws", max_draws, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    d, o = problem["num_vars"], len(fd.output_names)
    step = _design_step(d, second_order)
    if chunk_draws is None:
        per_draw = n * max(step, d * (d + 1) if second_order else d) * o
        chunk_draws = max(1, MAX_CHUNK_VALUES // per_draw)
    chunk = min(check_int("chunk_draws", chunk_draws, minimum=1), fd.num_draws, num_used)
    draws = np.unique(np.linspace(0, fd.num_draws - 1, min(num_used, fd.num_draws)).round())
    draws = draws.astype(np.int64)

    t0 = time.perf_counter()
    x = scale_design(saltelli_design(n, d, second_order=second_order, seed=seed), problem)
    timings = {"design": time.perf_counter() - t0, "evaluate": 0.0, "estimate": 0.0}
    joined = _estimate_in_chunks(fd, x, draws, chunk, out_idx, d, second_order, estimator, timings)
    attrs = _result_attrs(source, estimator, len(x), second_order)
    return SobolResult(
        **joined,
        input_names=tuple(problem["names"]),
        output_names=tuple(fd.output_names[i] for i in out_idx),
        draws=draws,
        problem=problem,
        n=n,
        second_order=second_order,
        estimator=estimator,
        seed=seed,
        timings=timings,
        attrs=attrs,
    )
