"""The result of every inference method: draws, prediction in chunks, saving and loading.

A :class:`Posterior` holds draws of every latent site with sample dimensions
``[chains, draws, ...]`` (NUTS: chains × draws; SVI: one chain of guide draws;
ensembles: one chain of members), the method and its settings, timings, per-draw
statistics and what prediction needs: the spec, the prior and the standardization.
Prediction, diagnostics, reports and studies are written once against it.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from bayesresnet import bases, sites
from bayesresnet._io import write_atomic
from bayesresnet._validate import check_array, check_int, check_level
from bayesresnet.data import check_log_columns, column_names
from bayesresnet.levels import PREDICTION_LEVELS
from bayesresnet.model import PriorSpec, Scaler, observation_dist, sample_observations
from bayesresnet.resnet import ResNetSpec, apply

__all__ = ["Posterior", "Prediction", "RawFunction", "function_program", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 1
MIN_Y_DRAWS = 1000


@dataclass(frozen=True)
class Prediction:
    """Predictive summaries (raw units) at ``N`` points, and the draws when kept.

    Attributes:
        mean: predictive mean ``[N, O]`` (of the noise-free output ``f``, equal to that of ``y``).
        std: predictive sd of noisy ``y`` ``[N, O]`` (function and noise uncertainty).
        f_std: sd of the noise-free output ``[N, O]`` (function uncertainty alone).
        quantiles: ``{p: [N, O]}`` quantiles of ``y`` at the probabilities of the
            requested central intervals.
        f_quantiles: the same for ``f``.
        f: draws of ``f`` ``[S, N, O]`` or ``None`` when not kept.
        y: draws of ``y`` ``[S·R, N, O]`` or ``None`` when not kept: ``R`` noise draws per
            parameter draw (``R = 1`` unless the posterior has few draws, see
            :meth:`Posterior.predict`), replicate-major (``y[r·S + s]`` uses draw ``s``).
        output_names: names of the outputs.
        extrapolation: ``[N]`` how far each point lies outside the training box: the
            largest, over inputs, distance beyond the training range in units of that
            range (0 inside; see :meth:`Posterior.extrapolation`), or ``None`` when unknown.
    """

    mean: np.ndarray
    std: np.ndarray
    f_std: np.ndarray
    quantiles: dict[float, np.ndarray]
    f_quantiles: dict[float, np.ndarray]
    f: np.ndarray | None = None
    y: np.ndarray | None = None
    output_names: tuple[str, ...] = ()
    extrapolation: np.ndarray | None = None

    def interval(self, level: float = 0.9, kind: str = "y") -> tuple[np.ndarray, np.ndarray]:
        """Central ``level`` interval ``(lower, upper)``, each ``[N, O]``.

        Args:
            level: probability mass inside the interval, e.g. 0.9.
            kind: ``"y"`` (predictive interval for a new noisy observation) or ``"f"``
                (credible interval of the noise-free output).
        """
        check_level("level", level)
        if kind not in ("y", "f"):
            raise ValueError(f"`kind` must be 'y' or 'f'; got {kind!r}.")
        lo_p, hi_p = _interval_probs(level)
        table = self.quantiles if kind == "y" else self.f_quantiles
        if lo_p in table and hi_p in table:
            return table[lo_p], table[hi_p]
        draws = self.y if kind == "y" else self.f
        if draws is None:
            raise ValueError(
                f"level {level} was not among the levels computed at prediction "
                f"({sorted({round(2 * p - 1, 6) for p in table if p > 0.5})}) and the "
                "draws were not kept; pass `levels=` or `return_draws=True` to `predict`."
            )
        lo, hi = np.quantile(draws, [lo_p, hi_p], axis=0)
        return lo, hi


def _interval_probs(level: float) -> tuple[float, float]:
    return round((1 - level) / 2, 10), round((1 + level) / 2, 10)


@functools.lru_cache(maxsize=32)
def _forward_program(spec: ResNetSpec, depth=None):
    """Jitted ``(params [D, ...], x̃ [P, d]) -> f̃ [D, P, O]`` for one spec and depth; cached."""
    if depth == "ode":
        from bayesresnet import ode

        # float32 predictions: tolerances well above its resolution (1e-7).
        def forward(p, x):
            return ode.solve(p, x, spec, rtol=1e-5, atol=1e-6)
    else:

        def forward(p, x):
            return apply(p, x, spec, num_layers=depth)

    return jax.jit(jax.vmap(forward, in_axes=(0, None)))


@dataclass(frozen=True)
class RawFunction:
    """One draw's noise-free function in raw units: ``f(params_s, x [P, d]) -> [P, O]``.

    Pure and differentiable in both arguments (JAX): the network of ``spec`` between the
    standardization of ``x`` and the un-standardization of its output, as
    :meth:`Posterior.predict_f` evaluates it (with the log transforms of the
    :class:`~bayesresnet.Scaler`: ``x_log``, ``y_log`` per column, empty when none). Hashable
    by value (the statistics are held as tuples), so two posteriors of one architecture and
    scaling share compiled programs.
    """

    spec: ResNetSpec
    x_mean: tuple[float, ...]
    x_std: tuple[float, ...]
    y_mean: tuple[float, ...]
    y_std: tuple[float, ...]
    x_log: tuple[bool, ...] = ()
    y_log: tuple[bool, ...] = ()

    def __call__(self, params, x):
        scaler = Scaler(
            jnp.asarray(self.x_mean, x.dtype),
            jnp.asarray(self.x_std, x.dtype),
            jnp.asarray(self.y_mean, x.dtype),
            jnp.asarray(self.y_std, x.dtype),
            self.x_log or None,
            self.y_log or None,
        )
        if not scaler.has_transforms:  # the arithmetic as it always was
            xs = (x - scaler.x_mean) / scaler.x_std
            f = apply(params, xs, self.spec)
            return jnp.asarray(self.y_mean, f.dtype) + jnp.asarray(self.y_std, f.dtype) * f
        return scaler.inverse_y(apply(params, scaler.transform_x(x), self.spec))


def function_program(post: Posterior) -> tuple[RawFunction, dict[str, np.ndarray]]:
    """The posterior's draws as a pure function and stacked parameters.

    Returns:
        ``(f, params)``: ``f`` a :class:`RawFunction`, and ``params`` the network sites
        ``{site: [S, ...]}`` with chains and draws merged (chain-major), so that
        ``jax.vmap(f, (0, None))(params, x)`` equals ``post.predict_f(x)`` ``[S, P, O]``.
    """

    def stats(a):
        return tuple(float(v) for v in np.ravel(a))

    def flags(mask):
        return () if mask is None else tuple(bool(v) for v in np.ravel(mask))

    scaler = post.scaler
    f = RawFunction(
        post.spec,
        stats(scaler.x_mean),
        stats(scaler.x_std),
        stats(scaler.y_mean),
        stats(scaler.y_std),
        flags(scaler.x_log),
        flags(scaler.y_log),
    )
    params = {k: v for k, v in post.flat_samples().items() if k in sites.NETWORK}
    return f, params


def _check_depth(spec: ResNetSpec, depth):
    """``None`` (the spec's depth), an int number of layers, or ``"ode"`` (the ODE limit)."""
    if depth is None:
        return None
    if isinstance(depth, str):
        if depth != "ode":
            raise ValueError(f'`depth` must be None, a number of layers or "ode"; got {depth!r}.')
        from bayesresnet import ode

        ode.check_ode_spec(spec)
        return depth
    depth = check_int("depth", depth, minimum=1)
    if depth != spec.num_layers and not isinstance(spec.basis, bases.ContinuousBasis):
        raise ValueError(
            f"`depth={depth}` differs from the spec's {spec.num_layers} layers, but "
            f"{spec.basis!r} has one matrix per layer and cannot be evaluated at another "
            "depth; use a continuous basis (Cubic, Legendre, PiecewiseLinear, …)."
        )
    return depth


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


@dataclass(frozen=True)
class Posterior:
    """Draws of a Bayesian WP-ResNet and everything needed to use them.

    Attributes:
        spec: the network architecture.
        prior: the prior and likelihood.
        scaler: the standardization fitted on the training data.
        samples: ``{site: [chains, draws, ...]}`` constrained draws of every latent site.
        method: ``"nuts"``, ``"svi"`` or ``"ensemble"``.
        settings: the method's settings.
        sample_stats: ``{name: [chains, draws]}`` per-draw statistics.
        timings: wall times in seconds.
        extra: further method results (loss histories, member flags, …).
        x_train, y_train: the training data (raw units).
        input_names, output_names: names of the columns.
        seed: the seed of the run.
    """

    spec: ResNetSpec
    prior: PriorSpec
    scaler: Scaler
    samples: dict[str, np.ndarray]
    method: str
    settings: dict[str, Any]
    sample_stats: dict[str, np.ndarray]
    timings: dict[str, float]
    extra: dict[str, Any]
    x_train: np.ndarray
    y_train: np.ndarray
    input_names: tuple[str, ...] = ()
    output_names: tuple[str, ...] = ()
    seed: int = 0

    # ----------------------------------------------------------------- shapes
    @property
    def num_chains(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def num_draws(self) -> int:
        """Draws per chain."""
        return int(next(iter(self.samples.values())).shape[1])

    @property
    def num_samples(self) -> int:
        """Total draws (chains × draws)."""
        return self.num_chains * self.num_draws

    def flat_samples(self) -> dict[str, np.ndarray]:
        """Draws with chains and draws merged: ``{site: [S, ...]}``."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.samples.items()}

    def noise_scale(self) -> np.ndarray:
        """Noise sd draws in raw output units, ``[S, O]``; for a log-transformed output,
        the sd of ``log y`` (the relative size of its multiplicative noise)."""
        return self.scaler.scale_sd(self.flat_samples()[sites.NOISE_SCALE])

    @property
    def transforms(self) -> dict[str, str]:
        """The declared per-column transforms, ``{column name: "log"}`` (empty when none)."""
        out = {}
        for names, mask in (
            (self.input_names, self.scaler.x_log),
            (self.output_names, self.scaler.y_log),
        ):
            if mask is not None:
                out |= {n: "log" for n, m in zip(names, np.ravel(mask)) if m}
        return out

    # -------------------------------------------------------------- predict
    def _check_x(self, x) -> np.ndarray:
        columns = column_names(x, "x")
        if columns:  # a DataFrame: its columns by name, in the model's order
            x = self.select_inputs(columns, np.asarray(x), what="`x`")
        x = np.asarray(x, dtype=np.float64)
        if x.ndim == 1 and self.spec.in_features == 1:
            x = x[:, None]
        if x.ndim != 2 or x.shape[1] != self.spec.in_features:
            raise ValueError(
                f"`x` must have shape [N, {self.spec.in_features}] (the model's inputs "
                f"{list(self.input_names) or self.spec.in_features}); got shape {x.shape}."
            )
        x = check_array("x", x, fix="Remove or impute these rows before predicting.")
        check_log_columns(x, self.scaler.x_log, self.input_names, what="`x`")
        return x

    def select_inputs(self, columns, values, *, what: str = "`x`", ignore=()) -> np.ndarray:
        """The model's input columns of a table ``values [N, C]``, matched by name.

        Columns are reordered to the model's :attr:`input_names`; a missing input or a
        column that is not one (unless named in ``ignore``) is refused, never guessed.

        Args:
            columns: the ``C`` column names of ``values``.
            values: the table ``[N, C]``.
            what: how to name the table in messages (e.g. the CSV file).
            ignore: further column names allowed and dropped (e.g. the outputs).

        Raises:
            ValueError: naming the missing and the unknown columns.
        """
        columns = [str(c) for c in columns]
        names = list(self.input_names)
        missing = [n for n in names if n not in columns]
        unknown = [c for c in columns if c not in names and c not in ignore]
        if missing or unknown:
            problems = ([f"lacks the input column(s) {missing}"] if missing else []) + (
                [f"has column(s) {unknown} that are not inputs"] if unknown else []
            )
            raise ValueError(
                f"{what} {' and '.join(problems)}; the model's inputs are {names} (found "
                f"{columns}). Columns are matched by name, in any order."
            )
        return np.asarray(values)[:, [columns.index(n) for n in names]]

    @property
    def training_box(self) -> tuple[np.ndarray, np.ndarray] | None:
        """``(lower, upper)`` ``[d]``: the range of each input in the training data."""
        if not len(self.x_train):
            return None
        return self.x_train.min(axis=0), self.x_train.max(axis=0)

    def extrapolation(self, x) -> np.ndarray | None:
        """How far each point lies outside the training range of each input, ``[N, d]``.

        ``e_ij = max(lo_j − x_ij, x_ij − hi_j, 0) / (hi_j − lo_j)``: 0 inside the training
        box ``[lo, hi]``, 1 one full training range beyond it (``inf`` beyond a constant
        input). ``None`` when the training data are empty.
        """
        return self._extrapolation(self._check_x(x))

    def _extrapolation(self, x: np.ndarray) -> np.ndarray | None:
        box = self.training_box
        if box is None:
            return None
        lo, hi = box
        beyond = np.maximum(np.maximum(lo - x, x - hi), 0.0)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(beyond > 0, beyond / (hi - lo), 0.0)

    def describe_extrapolation(self, x) -> str | None:
        """A warning naming the inputs of ``x`` outside the training range and how far.

        ``None`` when every point lies inside the training box (or it is unknown).
        """
        e = self.extrapolation(x)
        if e is None or not np.any(e > 0):
            return None
        lo, hi = self.training_box
        names = list(self.input_names) or [f"x{j + 1}" for j in range(e.shape[1])]

        def points(count) -> str:
            return f"{count} point" if count == 1 else f"{count} points"

        parts = [
            f"{names[j]!r} ({points(np.sum(e[:, j] > 0))}, up to {np.max(e[:, j]):.3g} "
            f"training ranges beyond [{lo[j]:.6g}, {hi[j]:.6g}])"
            for j in range(e.shape[1])
            if np.any(e[:, j] > 0)
        ]
        return (
            f"{int(np.sum(e.max(axis=1) > 0))} of {points(len(e))} lie outside the training "
            f"range of {', '.join(parts)}; predictions there extrapolate and their intervals "
            "can be far too narrow."
        )

    def predict_f(
        self, x, *, chunk_points: int = 4096, chunk_draws: int = 1024, depth=None
    ) -> np.ndarray:
        """Draws of the noise-free output ``f`` ``[S, N, O]`` (raw units), computed in chunks.

        ``depth`` as in :meth:`predict`. For a log-transformed output ``f = exp g(x)``, the
        median of ``y`` given the draw.
        """
        x = self._check_x(x)
        depth = _check_depth(self.spec, depth)
        return (
            self.scaler.raw_y(
                np.concatenate(list(self._f_chunks(x, chunk_points, chunk_draws, depth)), axis=1)
            )
            if len(x)
            else np.zeros((self.num_samples, 0, self.spec.out_features))
        )

    def _f_chunks(self, x, chunk_points: int, chunk_draws: int, depth=None):
        """Yield ``f`` draws ``[S, P, O]`` for consecutive chunks of at most ``chunk_points``,
        in the likelihood's units (:meth:`~bayesresnet.Scaler.unscale_y`: ``log`` on the
        log-transformed outputs, raw units otherwise)."""
        check_int("chunk_points", chunk_points, minimum=1)
        check_int("chunk_draws", chunk_draws, minimum=1)
        program = _forward_program(self.spec, depth)
        flat = {k: v for k, v in self.flat_samples().items() if k in sites.NETWORK}
        s = self.num_samples
        d_size = min(chunk_draws, s)
        # Pad draws and points to fixed chunk sizes so every call reuses one compilation.
        num_d = -(-s // d_size)
        padded = {
            k: np.concatenate([v, np.repeat(v[-1:], num_d * d_size - s, axis=0)])
            for k, v in flat.items()
        }
        xs = self.scaler.transform_x(x)
        p_size = min(chunk_points, _next_pow2(len(x)))
        for start in range(0, len(x), p_size):
            block = xs[start : start + p_size]
            n_real = len(block)
            block = np.concatenate([block, np.zeros((p_size - n_real, block.shape[1]))])
            block = jnp.asarray(block, dtype=jnp.float32)
            parts = []
            for i in range(num_d):
                params = {k: v[i * d_size : (i + 1) * d_size] for k, v in padded.items()}
                parts.append(np.asarray(program(params, block)))
            f = np.concatenate(parts)[:s, :n_real]
            yield self.scaler.unscale_y(f)

    def predict(
        self,
        x,
        *,
        seed: int = 0,
        levels=PREDICTION_LEVELS,
        return_draws: bool | None = None,
        chunk_points: int = 4096,
        chunk_draws: int = 1024,
        depth=None,
    ) -> Prediction:
        """Predictive distribution at ``x`` (raw units).

        Summaries (mean, sds, quantiles of the requested central intervals) are computed
        chunk by chunk over points, so memory stays at ``S × chunk_points`` floats
        however many points are asked for; the draws themselves are returned only when
        ``return_draws`` is true (by default when they hold at most 2·10⁷ numbers).
        Noisy ``y`` draws use ``R = ⌈1000/S⌉`` noise draws per parameter draw, so
        predictive quantiles stay resolved for a MAP fit or a small ensemble.
        :attr:`Prediction.extrapolation` flags the points outside the training range
        (silently: :meth:`describe_extrapolation` words the warning the CLI prints).

        A log-transformed output (``fit(..., transforms=...)``) comes back in raw units:
        the draws are ``exp`` of the draws of ``log y`` (so positive); quantiles and
        intervals are those of the raw draws (``exp`` of the log-space ones, a monotone map);
        ``mean`` is the mean of the ``exp`` draws of ``f`` (never ``exp`` of a mean), i.e.
        of the median of ``y`` given each draw; ``y.mean(axis=0)`` of the kept draws is the
        predictive mean of ``y``.

        Args:
            x: inputs ``[N, d]`` in raw units: an array (columns in the model's order) or a
                pandas DataFrame (columns matched by name to :attr:`input_names`).
            seed: seed of the observation-noise draws.
            levels: central-interval levels to precompute (default
                :data:`bayesresnet.levels.PREDICTION_LEVELS`).
            return_draws: keep the ``f`` and ``y`` draws ``[S, N, O]``.
            chunk_points: points per chunk.
            chunk_draws: draws per compiled call.
            depth: evaluate the network with this many layers (``Δt = 1/depth``; a
                continuous basis only), or ``"ode"`` for the continuous-depth limit, the
                neural ODE with the same coefficients (:func:`bayesresnet.ode.solve`,
                Tsit5 with ``rtol=1e-5``, ``atol=1e-6``); default the spec's depth.
        """
        x = self._check_x(x)
        extrapolation = self._extrapolation(x)
        depth = _check_depth(self.spec, depth)
        levels = tuple(check_level("levels", lv) for lv in levels)
        n, o, s = len(x), self.spec.out_features, self.num_samples
        if return_draws is None:
            return_draws = s * n * o <= 2 * 10**7
        probs = sorted({p for lv in levels for p in _interval_probs(lv)})
        sigma = self.noise_scale()  # [S, O]
        # With few parameter draws (a MAP fit, a small ensemble) one noise draw each would
        # give coarse or zero-width predictive quantiles: take R draws each, so at least
        # MIN_Y_DRAWS draws of y represent the predictive distribution.
        reps = max(1, -(-MIN_Y_DRAWS // s))
        rng = np.random.default_rng(seed)
        out = {k: [] for k in ("mean", "f_std", "std", "f", "y")}
        qs = {p: [] for p in probs}
        fqs = {p: [] for p in probs}
        for f in self._f_chunks(x, chunk_points, chunk_draws, depth):
            # [R·S, P, O]: R noise draws per parameter draw, replicate-major.
            y = self._sample_y(rng, f, sigma[:, None, :], reps)
            f, y = self.scaler.raw_y(f), self.scaler.raw_y(y)
            out["mean"].append(f.mean(axis=0))
            out["f_std"].append(f.std(axis=0))
            out["std"].append(y.std(axis=0))
            for p, q, fq in zip(
                probs, np.quantile(y, probs, axis=0), np.quantile(f, probs, axis=0)
            ):
                qs[p].append(q)
                fqs[p].append(fq)
            if return_draws:
                out["f"].append(f)
                out["y"].append(y)

        def cat(parts, axis=0):
            return np.concatenate(parts, axis=axis) if parts else np.zeros((0, o))

        return Prediction(
            mean=cat(out["mean"]),
            std=cat(out["std"]),
            f_std=cat(out["f_std"]),
            quantiles={p: cat(v) for p, v in qs.items()},
            f_quantiles={p: cat(v) for p, v in fqs.items()},
            f=cat(out["f"], axis=1) if return_draws and n else None,
            y=cat(out["y"], axis=1) if return_draws and n else None,
            output_names=self.output_names,
            extrapolation=None if extrapolation is None else extrapolation.max(axis=1),
        )

    def _sample_y(self, rng, f, sigma, reps: int) -> np.ndarray:
        """``reps`` draws of ``y ~ p(y | f, σ)`` per draw of ``f`` ``[S, P, O]``; ``[R·S, P, O]``,
        replicate-major."""
        y = sample_observations(self.prior, f, sigma, rng, reps)
        return y.reshape((-1,) + f.shape[1:])

    def log_likelihood(
        self, x=None, y=None, *, chunk_points: int = 4096, per_output: bool = False
    ) -> np.ndarray:
        """Pointwise log-likelihood ``[chains, draws, N]`` (summed over outputs), raw units.

        Defaults to the training data. One row of ``y`` is one observation (for LOO).
        With ``per_output`` one value per output, ``[chains, draws, N, O]``. A
        log-transformed output adds its Jacobian, ``log p(y) = log p(log y) − log y``, so
        the values stay densities of the raw ``y``.
        """
        if (x is None) != (y is None):
            raise ValueError("pass both `x` and `y`, or neither (the training data).")
        x = self.x_train if x is None else self._check_x(x)
        y = self.y_train if y is None else np.asarray(y, dtype=np.float64).reshape(len(x), -1)
        check_log_columns(y, self.scaler.y_log, self.output_names, what="`y`")
        sigma = self.noise_scale()[:, None, :]  # [S, 1, O]
        parts = []
        start = 0
        for f in self._f_chunks(x, chunk_points, 1024):
            yy = y[start : start + f.shape[1]][None]
            start += f.shape[1]
            with jax.enable_x64(True):  # float64, as the draws of f
                lp = np.asarray(
                    observation_dist(self.prior, f, sigma).log_prob(self.scaler.model_y(yy))
                )
            if self.scaler.y_log is not None:
                lp = lp + self.scaler.log_jacobian_y(yy)
            parts.append(lp if per_output else lp.sum(axis=-1))
        ll = np.concatenate(parts, axis=1)
        return ll.reshape(self.num_chains, self.num_draws, *ll.shape[1:])

    # ------------------------------------------------------------- relevance
    def relevance(self, hdi_prob: float = 0.9):
        """How much each input matters to the network: a DataFrame, one row per input.

        Two measures, each as posterior mean, sd and HDI (``*_mean``, ``*_sd``,
        ``*_hdi_low``, ``*_hdi_high``):

        * ``weight_norm``: ``‖W_in[j, :]‖₂``, the norm of input ``j``'s weights into the
          first hidden layer. The network sees standardized inputs, so the norms compare
          across inputs whatever their units; it exists with or without ARD (an inert
          input's weights can still be large without it, when the data do not pin them);
        * ``ard_scale`` (only with ``prior.ard``): the learned prior scale ``λ_j`` of those
          weights, the network's analogue of a GP's inverse length scale; a small ``λ_j``
          (well below its ``HalfNormal(1)`` prior's mean 0.8) switches the input off.

        Args:
            hdi_prob: probability mass of the highest-density intervals, in (0, 1).

        Returns:
            A ``pandas.DataFrame`` indexed by input name (index name ``"input"``).
        """
        import pandas as pd

        from bayesresnet.diagnostics import hdi

        check_level("hdi_prob", hdi_prob)
        draws = self.flat_samples()
        measures = {"weight_norm": np.linalg.norm(draws[sites.INPUT_WEIGHT], axis=-1)}  # [S, d]
        if sites.ARD_SCALE in draws:
            measures["ard_scale"] = draws[sites.ARD_SCALE]  # [S, d]
        columns = {}
        for name, values in measures.items():
            band = hdi(values, hdi_prob)  # [d, 2]
            columns[f"{name}_mean"] = values.mean(axis=0)
            columns[f"{name}_sd"] = values.std(axis=0, ddof=1) if len(values) > 1 else 0.0
            columns[f"{name}_hdi_low"] = band[:, 0]
            columns[f"{name}_hdi_high"] = band[:, 1]
        names = list(self.input_names) or [f"x{j + 1}" for j in range(self.spec.in_features)]
        return pd.DataFrame(columns, index=pd.Index(names, name="input"))

    # ---------------------------------------------------------------- arviz
    def to_inference_data(self, **kwargs):
        """An ArviZ ``InferenceData`` (see :func:`bayesresnet.diagnostics.to_inference_data`)."""
        from bayesresnet.diagnostics import to_inference_data

        return to_inference_data(self, **kwargs)

    # ----------------------------------------------------------- save/load
    def save(self, path) -> Path:
        """Write the posterior to ``path`` (``.npz``), atomically."""
        path = Path(path)
        arrays = {
            "x_train": self.x_train,
            "y_train": self.y_train,
            **{
                f"scaler/{k}": np.asarray(v)
                for k, v in self.scaler._asdict().items()
                if v is not None  # no log transform: no mask saved
            },
            **{f"samples/{k}": v for k, v in self.samples.items()},
            **{f"sample_stats/{k}": v for k, v in self.sample_stats.items()},
        }
        extra_json = {}
        for k, v in self.extra.items():
            if isinstance(v, np.ndarray):
                arrays[f"extra/{k}"] = v
            else:
                extra_json[k] = v
        meta = {
            "format": "bayesresnet-posterior",
            "format_version": FORMAT_VERSION,
            "spec": _spec_to_dict(self.spec),
            "prior": dataclasses.asdict(self.prior),
            "method": self.method,
            "settings": self.settings,
            "timings": self.timings,
            "extra": extra_json,
            "input_names": list(self.input_names),
            "output_names": list(self.output_names),
            "seed": self.seed,
        }
        buffer = io.BytesIO()
        np.savez_compressed(buffer, __meta__=np.array(json.dumps(meta)), **arrays)
        write_atomic(path, buffer.getvalue())
        return path


def _spec_to_dict(spec: ResNetSpec) -> dict:
    d = dataclasses.asdict(spec)
    d["basis"] = {"type": type(spec.basis).__name__, **dataclasses.asdict(spec.basis)}
    return d


def _spec_from_dict(d: dict) -> ResNetSpec:
    d = dict(d)
    basis = dict(d.pop("basis"))
    cls = getattr(bases, basis.pop("type"))
    return ResNetSpec(basis=cls(**basis), **d)


def load(path) -> Posterior:
    """Read a posterior written by :meth:`Posterior.save`."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no posterior file at {path}.")
    try:
        # Read the bytes first: np.load leaves the file open when the archive is corrupt.
        with np.load(io.BytesIO(path.read_bytes()), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
        meta = json.loads(str(arrays.pop("__meta__")))
    except (OSError, ValueError, KeyError, zipfile.BadZipFile, json.JSONDecodeError) as exc:
        raise ValueError(
            f"{path} is not a readable bayesresnet posterior file (corrupt or truncated): {exc}"
        ) from exc
    if meta.get("format") != "bayesresnet-posterior":
        raise ValueError(f"{path} is not a bayesresnet posterior file.")
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{path} has posterior format version {version}; this bayesresnet reads version "
            f"{FORMAT_VERSION}. Refit with this version, or load it with the version that "
            "wrote it."
        )

    def group(prefix):
        return {k[len(prefix) + 1 :]: v for k, v in arrays.items() if k.startswith(prefix + "/")}

    scaler = group("scaler")
    return Posterior(
        spec=_spec_from_dict(meta["spec"]),
        prior=PriorSpec(**meta["prior"]),
        scaler=Scaler(**{k: scaler[k] for k in Scaler._fields if k in scaler}),
        samples=group("samples"),
        method=meta["method"],
        settings=meta["settings"],
        sample_stats=group("sample_stats"),
        timings=meta["timings"],
        extra={**meta["extra"], **group("extra")},
        x_train=arrays["x_train"],
        y_train=arrays["y_train"],
        input_names=tuple(meta["input_names"]),
        output_names=tuple(meta["output_names"]),
        seed=meta["seed"],
    )
