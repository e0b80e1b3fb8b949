"""The NumPyro model of a Bayesian WP-ResNet.

Priors (all Normal, centred at zero):

* input layer ``W_in[j, :] ~ N(0, (input_scale · λ_j/√d)²)``, ``b_in ~ N(0, bias_scale²)``,
  where ``λ_j = 1`` or, with ``ard=True`` (automatic relevance determination),
  ``λ_j ~ HalfNormal(1)`` per input: the network's analogue of a GP's inverse length
  scales, which lets the posterior switch inert inputs off;
* hidden coefficients ``C_k ~ N(0, (weight_scale · s_basis · τ_k / √width)²)`` and bias
  coefficients ``c_k ~ N(0, (bias_scale · s_basis · τ_k)²)``, where ``s_basis`` is the
  basis' :meth:`~bayesresnet.bases.Basis.coefficient_scale` (so the layer-averaged prior
  variance of ``W(t)`` is the same for every basis) and ``τ_k = 1`` or, with
  ``learn_basis_scale=True``, ``τ_k ~ HalfNormal(1)`` per basis function, which lets the
  posterior switch higher orders off;
* output layer ``W_out ~ N(0, (output_scale/√width)²)``, ``b_out ~ N(0, bias_scale²)``;
* observation noise ``σ_o ~ HalfNormal(noise_prior_scale)`` per output.

Inputs and outputs are standardized inside the model with a :class:`Scaler` fitted on
the training data, so the network and the priors live in standardized units while the
user gives ``x`` and ``y`` (and gets predictions) in raw units. The likelihood is
written in raw units: ``y ~ Normal(μ_y + s_y f(x̃), s_y σ)`` (or Student-t), so
log-likelihoods, LOO and WAIC are in the data's own units.

Declared log transforms (``fit(..., transforms={"r": "log", "y": "log"})``) live in the
:class:`Scaler` too: a log input is standardized as ``log x``; a log output is modelled as
``log y ~ Normal(μ_y + s_y f(x̃), s_y σ)`` (multiplicative noise of relative size ``s_y σ``).
The engines sample that density, which differs from the raw one by the constant
``−Σ log y`` (the Jacobian, free of the parameters); the reported pointwise log-likelihoods
(:meth:`~bayesresnet.posterior.Posterior.log_likelihood`, hence LOO and WAIC) add it, so they
stay densities of the raw ``y``.

:func:`bayesresnet.infer.fit` removes the offsets first, in float64
(:meth:`Scaler.centre_data`: ``x̃`` and ``y − μ_y``), and binds the model to
:meth:`Scaler.centred` (the output scale ``s_y`` alone): float32 cannot hold the spread of
inputs like ``1e8 ± 1`` or outputs like ``1 ± 1e-8``, and a shift of ``y`` leaves its
density unchanged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.reparam import LocScaleReparam

from bayesresnet import sites
from bayesresnet._validate import check_bool, check_choice, check_number
from bayesresnet.resnet import ResNetSpec, apply, param_shapes

__all__ = [
    "PriorSpec",
    "Scaler",
    "fit_scaler",
    "observation_dist",
    "sample_observations",
    "wp_resnet_model",
    "make_model",
    "BoundModel",
    "prior_scales",
    "PRIOR_SCALE_OF",
    "scaled_prior",
    "SCALED_SITES",
    "ARD_SITES",
    "noncentred_sites",
    "noncentred",
    "drop_decentered",
]

LIKELIHOODS = ("normal", "student_t")
#: The sites whose prior sd carries the learned per-basis scale ``τ_k``.
SCALED_SITES = (sites.HIDDEN_WEIGHT, sites.HIDDEN_BIAS)
#: The site whose prior sd carries the learned per-input scale ``λ_j`` (``ard=True``).
ARD_SITES = (sites.INPUT_WEIGHT,)
#: Suffix of the standard-Normal sites :func:`noncentred` adds (NumPyro's naming).
_DECENTERED = "_decentered"


@dataclass(frozen=True)
class PriorSpec:
    """Prior and likelihood settings (all scales in standardized units).

    Args:
        weight_scale: prior sd of the hidden weights ``W(t)`` times ``√width``
            (layer-averaged, the same for every basis).
        bias_scale: prior sd of every bias (and of ``b(t)``, layer-averaged).
        input_scale: prior sd of the input weights times ``√d``.
        output_scale: prior sd of the output weights times ``√width``.
        learn_basis_scale: learn a scale ``τ_k ~ HalfNormal(1)`` per basis function.
        ard: learn a scale ``λ_j ~ HalfNormal(1)`` per input that multiplies the prior sd
            of that input's weights (automatic relevance determination; see
            :meth:`~bayesresnet.posterior.Posterior.relevance`).
        likelihood: ``"normal"`` or ``"student_t"``.
        student_t_df: degrees of freedom of the Student-t likelihood.
        noise_prior_scale: scale of the HalfNormal prior on the noise sd.
        stiffness_penalty: ``λ ≥ 0`` of the optional stiffness penalty
            ``numpyro.factor(-λ Σ_n (1/L) Σ_l ‖J_l − (tr J_l/w) I‖_F²)`` on the
            vector-field Jacobians at the training inputs (see
            :mod:`bayesresnet.stiffness`); 0 (the default) adds nothing.
    """

    weight_scale: float = 1.0
    bias_scale: float = 1.0
    input_scale: float = 1.0
    output_scale: float = 1.0
    learn_basis_scale: bool = False
    ard: bool = False
    likelihood: str = "normal"
    student_t_df: float = 4.0
    noise_prior_scale: float = 0.5
    stiffness_penalty: float = 0.0

    def __post_init__(self):
        for name in (
            "weight_scale",
            "bias_scale",
            "input_scale",
            "output_scale",
            "student_t_df",
            "noise_prior_scale",
        ):
            check_number(name, getattr(self, name), low=0.0)
        check_choice("likelihood", self.likelihood, LIKELIHOODS)
        check_bool("learn_basis_scale", self.learn_basis_scale)
        check_bool("ard", self.ard)
        check_number("stiffness_penalty", self.stiffness_penalty, low=0.0, inclusive=True)

    @property
    def likelihood_df(self) -> float | None:
        """Degrees of freedom of a Student-t likelihood; ``None`` for a Normal one (the
        ``df`` of :func:`bayesresnet.calibration.nll` and ``summarize``)."""
        return self.student_t_df if self.likelihood == "student_t" else None


def _log_columns(a, mask, inverse: bool = False):
    """``a`` with ``log`` (``exp`` when ``inverse``) applied to the columns where ``mask``
    is true (the last axis); ``a`` itself, untouched, when no column is marked.

    NumPy in, NumPy out; JAX in (traced or not), JAX out. The other columns never pass
    through ``log``, so they may hold any value (and their gradients stay finite).
    """
    if mask is None or not np.any(mask):
        return a
    xp = jnp if isinstance(a, jax.Array) else np
    mask = np.asarray(mask, dtype=bool)
    if inverse:
        return xp.where(mask, xp.exp(xp.where(mask, a, 0.0)), a)
    return xp.where(mask, xp.log(xp.where(mask, a, 1.0)), a)


class Scaler(NamedTuple):
    """Per-column standardization ``x̃ = (g(x) − x_mean)/x_std`` (and the same for y).

    ``g`` is the identity, or ``log`` on the columns marked in ``x_log`` (``y_log``): a
    declared log transform (an input spanning orders of magnitude, a positive output).
    The means and sds are then those of the logged columns. With log outputs the model's
    likelihood is on ``g(y)``; :meth:`log_jacobian_y` turns its densities back into densities
    of the raw ``y`` (``log p(y) = log p(log y) − log y``).

    The one owner of the arithmetic between raw and standardized units: its methods work
    on NumPy and JAX arrays alike (NumPy float64 in, float64 out).

    Attributes:
        x_mean, x_std: ``[d]`` statistics of ``g(x)`` on the training data.
        y_mean, y_std: ``[out]`` statistics of ``g(y)``.
        x_log: ``[d]`` bool, the log-transformed inputs, or ``None`` (none).
        y_log: ``[out]`` bool, the log-transformed outputs, or ``None`` (none).
    """

    x_mean: np.ndarray
    x_std: np.ndarray
    y_mean: np.ndarray
    y_std: np.ndarray
    x_log: np.ndarray | None = None
    y_log: np.ndarray | None = None

    @property
    def has_transforms(self) -> bool:
        """Whether any input or output column is log-transformed."""
        return bool(np.any(_mask(self.x_log)) or np.any(_mask(self.y_log)))

    def transform_x(self, x):
        """Standardized inputs ``x̃ = (g(x) − x_mean)/x_std`` ``[N, d]``."""
        return (_log_columns(x, self.x_log) - self.x_mean) / self.x_std

    def transform_y(self, y):
        """Standardized outputs ``ỹ = (g(y) − y_mean)/y_std`` ``[N, out]``."""
        return (_log_columns(y, self.y_log) - self.y_mean) / self.y_std

    def model_y(self, y):
        """Raw outputs in the likelihood's units, ``g(y)``: ``log y`` on the log columns."""
        return _log_columns(y, self.y_log)

    def raw_y(self, z):
        """The inverse of :meth:`model_y`: ``exp z`` on the log columns."""
        return _log_columns(z, self.y_log, inverse=True)

    def unscale_y(self, y_tilde):
        """Outputs in the likelihood's units, ``g(y) = y_mean + y_std·ỹ``, from standardized
        ones (raw units when no output is log-transformed)."""
        return self.y_mean + self.y_std * y_tilde

    def inverse_y(self, y_tilde):
        """Raw outputs ``y = g⁻¹(y_mean + y_std·ỹ)`` from standardized ones (e.g. ``f̃``)."""
        return self.raw_y(self.unscale_y(y_tilde))

    def log_jacobian_y(self, y):
        """``log |dg/dy|`` per output, ``[..., out]``: ``−log y`` on the log columns, 0 on
        the others, so that ``log p(y) = log p(g(y)) + log_jacobian_y(y)``."""
        y = np.asarray(y, dtype=np.float64)
        mask = _mask(self.y_log)
        if mask is None:
            return np.zeros_like(y)
        return np.where(mask, -_log_columns(y, mask), 0.0)

    def scale_sd(self, sd):
        """A standard deviation of the standardized outputs (the noise ``σ``) in the
        likelihood's units: ``y_std·σ`` per output (raw units, or the sd of ``log y`` on a
        log-transformed output)."""
        return self.y_std * sd

    def centre_data(self, x, y):
        """The training data as the engines receive them: ``(x̃, g(y) − y_mean)`` in float64.

        Computed in NumPy float64 before any cast to float32, so a large offset (inputs at
        ``1e8 ± 1``, outputs at ``1 ± 1e-8``) does not swallow the spread: in float32 the
        spacing of numbers near ``1e8`` is 8, near 1 it is ``1.2e-7``. The model then
        applies :meth:`centred`, the part of the standardization that is left.
        """
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        return self.transform_x(x), self.model_y(y) - self.y_mean

    def centred(self) -> Scaler:
        """The standardization left once :meth:`centre_data` has been applied: identity on
        the inputs, the output scale ``y_std`` alone (so the model's likelihood stays in the
        units of ``g(y)``, raw units without log outputs, up to the shift by ``y_mean``, which
        leaves densities unchanged). The log transforms are already applied."""
        return Scaler(
            np.zeros_like(self.x_mean),
            np.ones_like(self.x_std),
            np.zeros_like(self.y_mean),
            self.y_std,
        )

    def log_det_y(self):
        """``Σ_o log y_std_o``: the log-Jacobian of ``ỹ ↦ g(y)`` for one observation, so that
        ``log p(g(y)) = log p(ỹ) − log_det_y()`` per observation."""
        return jnp.sum(jnp.log(jnp.asarray(self.y_std)))

    @classmethod
    def identity(cls, in_features: int, out_features: int) -> Scaler:
        return cls(
            np.zeros(in_features),
            np.ones(in_features),
            np.zeros(out_features),
            np.ones(out_features),
        )


def _mask(mask) -> np.ndarray | None:
    """A log mask as a bool array, or ``None`` when no column is marked."""
    if mask is None:
        return None
    mask = np.asarray(mask, dtype=bool)
    return mask if mask.any() else None


def fit_scaler(x, y, *, x_log=None, y_log=None) -> Scaler:
    """Standardization statistics of training data; constant columns get sd 1.

    Args:
        x: training inputs ``[N, d]``.
        y: training outputs ``[N, out]``.
        x_log: ``[d]`` bool, the inputs standardized as ``log x`` (must be > 0), or ``None``.
        y_log: ``[out]`` bool, the outputs modelled as ``log y`` (must be > 0), or ``None``.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    x_log, y_log = _mask(x_log), _mask(y_log)

    def stats(a):
        mean = a.mean(axis=0)
        std = a.std(axis=0)
        return mean, np.where(std > 0, std, 1.0)

    return Scaler(*stats(_log_columns(x, x_log)), *stats(_log_columns(y, y_log)), x_log, y_log)


def observation_dist(prior: PriorSpec, loc, scale) -> dist.Distribution:
    """The likelihood of one observation, ``p(y | f, σ)``: the one definition of it.

    ``Normal(loc, scale)``, or ``StudentT(prior.student_t_df, loc, scale)`` when
    ``prior.likelihood == "student_t"``. Its ``log_prob`` serves the model,
    :meth:`~bayesresnet.posterior.Posterior.log_likelihood` and the mixture NLL of
    :mod:`bayesresnet.calibration`; :func:`sample_observations` draws from it.

    Args:
        prior: the prior and likelihood settings.
        loc: the noise-free output ``f``, any shape.
        scale: the noise sd ``σ`` (raw units), broadcastable against ``loc``.
    """
    if prior.likelihood == "student_t":
        return dist.StudentT(prior.student_t_df, loc, scale)
    return dist.Normal(loc, scale)


def sample_observations(prior: PriorSpec, loc, scale, rng: np.random.Generator, reps: int):
    """``reps`` draws of ``y`` from :func:`observation_dist` ``(prior, loc, scale)``, stacked
    on a new leading axis ``[reps, *shape]`` (float64).

    Drawn by numpy (``loc + scale · ε``, ``ε`` standard Normal or standard Student-t with
    ``prior.likelihood_df`` degrees of freedom), not by JAX: a JAX draw compiles a
    program for every new shape (about 1.2 s of a 1.9 s prediction at 200 rows).
    """
    loc = np.asarray(loc, dtype=np.float64)
    shape = (reps,) + np.broadcast_shapes(loc.shape, np.shape(scale))
    df = prior.likelihood_df
    eps = rng.standard_normal(shape) if df is None else rng.standard_t(df, shape)
    return loc + np.asarray(scale, dtype=np.float64) * eps


#: The :class:`PriorSpec` field that sets each network site's prior sd (:func:`prior_scales`).
PRIOR_SCALE_OF = {
    sites.INPUT_WEIGHT: "input_scale",
    sites.INPUT_BIAS: "bias_scale",
    sites.HIDDEN_WEIGHT: "weight_scale",
    sites.HIDDEN_BIAS: "bias_scale",
    sites.OUTPUT_WEIGHT: "output_scale",
    sites.OUTPUT_BIAS: "bias_scale",
}


def prior_scales(spec: ResNetSpec, prior: PriorSpec) -> dict[str, float]:
    """Prior sd of each network site before any learned per-basis or per-input scale: its
    :data:`PRIOR_SCALE_OF` field of ``prior``, scaled by the network's sizes."""
    s_basis = spec.basis.coefficient_scale(spec.num_layers)
    scale = {site: getattr(prior, name) for site, name in PRIOR_SCALE_OF.items()}
    return {
        sites.INPUT_WEIGHT: scale[sites.INPUT_WEIGHT] / np.sqrt(spec.in_features),
        sites.INPUT_BIAS: scale[sites.INPUT_BIAS],
        sites.HIDDEN_WEIGHT: scale[sites.HIDDEN_WEIGHT] * s_basis / np.sqrt(spec.width),
        sites.HIDDEN_BIAS: scale[sites.HIDDEN_BIAS] * s_basis,
        sites.OUTPUT_WEIGHT: scale[sites.OUTPUT_WEIGHT] / np.sqrt(spec.width),
        sites.OUTPUT_BIAS: scale[sites.OUTPUT_BIAS],
    }


def scaled_prior(prior: PriorSpec, factors: dict[str, float]) -> PriorSpec:
    """``prior`` with each named scale (a :data:`PRIOR_SCALE_OF` field) multiplied by its
    factor."""
    return dataclasses.replace(
        prior, **{name: getattr(prior, name) * float(f) for name, f in factors.items()}
    )


def _sample_network(spec: ResNetSpec, prior: PriorSpec, exclude=()) -> dict:
    """Sample every network parameter but those in ``exclude``; returns the parameter
    dict for ``apply``."""
    shapes = param_shapes(spec)
    scales = prior_scales(spec, prior)
    k = spec.num_basis_functions
    tau = lam = None
    if prior.learn_basis_scale:
        tau = numpyro.sample(sites.BASIS_SCALE, dist.HalfNormal(jnp.ones(k)).to_event(1))  # [K]
    if prior.ard:
        d = spec.in_features
        lam = numpyro.sample(sites.ARD_SCALE, dist.HalfNormal(jnp.ones(d)).to_event(1))  # [d]
    params = {}
    for name in sites.NETWORK:
        if name in exclude:
            continue
        shape = shapes[name]
        scale = jnp.full(shape, scales[name])
        if tau is not None and name in (sites.HIDDEN_WEIGHT, sites.HIDDEN_BIAS):
            scale = scale * tau.reshape((k,) + (1,) * (len(shape) - 1))
        if lam is not None and name == sites.INPUT_WEIGHT:
            scale = scale * lam[:, None]  # [d, width]: row j carries λ_j
        params[name] = numpyro.sample(
            name, dist.Normal(jnp.zeros(shape), scale).to_event(len(shape))
        )
    return params


def _sample_noise(spec: ResNetSpec, prior: PriorSpec):
    """The observation noise sd per output, in standardized units ``[out]``."""
    scale = jnp.full(spec.out_features, prior.noise_prior_scale)
    return numpyro.sample(sites.NOISE_SCALE, dist.HalfNormal(scale).to_event(1))


def _stiffness_factor(params, x_std, spec: ResNetSpec, penalty: float) -> None:
    """The optional stiffness penalty, one factor site (see :mod:`bayesresnet.stiffness`)."""
    from bayesresnet.stiffness import stiffness_penalty

    numpyro.factor(sites.STIFFNESS_PENALTY, -penalty * stiffness_penalty(params, x_std, spec))


def wp_resnet_model(
    x,
    y=None,
    *,
    spec: ResNetSpec,
    prior: PriorSpec,
    scaler: Scaler,
    forward=None,
):
    """NumPyro model of a Bayesian WP-ResNet regression.

    Args:
        x: inputs ``[N, d]`` in raw units.
        y: outputs ``[N, out]`` in raw units, or ``None`` to sample them.
        spec: the network architecture.
        prior: prior and likelihood settings.
        scaler: standardization statistics (from the training data).
        forward: the network ``forward(params, x̃, spec)``; default
            :func:`~bayesresnet.resnet.apply` (e.g. :func:`bayesresnet.ode.adjoint_forward`
            to train through the ODE).
    """
    n, d = x.shape
    assert d == spec.in_features, f"x has {d} columns, spec.in_features={spec.in_features}"
    out = spec.out_features
    params = _sample_network(spec, prior)
    x_std = scaler.transform_x(x)  # [N, d]
    if prior.stiffness_penalty > 0:
        _stiffness_factor(params, x_std, spec, prior.stiffness_penalty)
    f_std = (apply if forward is None else forward)(params, x_std, spec)  # [N, out]
    f = scaler.inverse_y(f_std)  # [N, out], raw units
    sigma = _sample_noise(spec, prior)  # [out], standardized units
    noise = observation_dist(prior, f, scaler.scale_sd(sigma))  # [N, out], raw units
    if y is not None:
        assert y.shape == (n, out), f"y has shape {y.shape}, expected {(n, out)}"
    if n == 0:  # no observations: the model is its prior
        return
    with numpyro.plate(sites.DATA_PLATE, n):
        numpyro.sample(sites.OBS, noise.to_event(1), obs=y)


def make_model(spec: ResNetSpec, prior: PriorSpec, scaler: Scaler):
    """The model with its static arguments bound: ``model(x, y=None, forward=None)``.

    Args:
        spec, prior, scaler: as in :func:`wp_resnet_model`.
    """

    def model(x, y=None, forward=None):
        return wp_resnet_model(x, y, spec=spec, prior=prior, scaler=scaler, forward=forward)

    return model


@jax.tree_util.register_dataclass
@dataclass(frozen=True)
class BoundModel:
    """A model as a value: ``model(x, y=None, forward=None)`` that is also a pytree.

    Its one array part is the :class:`Scaler` (the pytree's leaves); the rest (the
    factory, ``spec``, ``prior``, the non-centred sites) is static. An engine hands it to
    its compiled programs as an argument, with the data, rather than closing over it: the
    programs then hold no number of the data, so a fit of other data of the same shapes
    runs the same programs (JAX's compilation cache finds them; see
    :mod:`bayesresnet.app.compile_cache`).

    Attributes:
        scaler: the standardization the model applies (with no log masks: the engines get
            :meth:`Scaler.centred`).
        make: ``make(spec, prior, scaler) -> model``: :func:`make_model`, or
            :func:`~bayesresnet.marginal.collapsed_model`.
        spec, prior: as in :func:`wp_resnet_model`.
        noncentre: the sites :func:`noncentred` reparameterizes (empty: none).
    """

    scaler: Scaler
    make: object = field(metadata={"static": True})
    spec: ResNetSpec = field(metadata={"static": True})
    prior: PriorSpec = field(metadata={"static": True})
    noncentre: tuple[str, ...] = field(default=(), metadata={"static": True})

    def __post_init__(self):
        if self.scaler.x_log is not None or self.scaler.y_log is not None:
            raise ValueError(
                "a BoundModel takes a scaler without log masks (Scaler.centred()): the "
                "masks would become traced values of its programs."
            )

    def build(self):
        """The NumPyro model function these values describe."""
        model = self.make(self.spec, self.prior, self.scaler)
        return noncentred(model, self.noncentre) if self.noncentre else model

    def __call__(self, x, y=None, forward=None):
        return self.build()(x, y, forward=forward)


def noncentred_sites(prior: PriorSpec) -> tuple[str, ...]:
    """The sites :func:`noncentred` reparameterizes: :data:`SCALED_SITES`, and the input
    weights (:data:`ARD_SITES`) when ``prior.ard``."""
    return SCALED_SITES + (ARD_SITES if prior.ard else ())


def noncentred(model, names=SCALED_SITES):
    """The same model with the hidden coefficients (and the sites ``names``) non-centred.

    Each site of ``names`` (default :data:`SCALED_SITES`; :func:`noncentred_sites` adds
    the input weights under ``ard=True``), ``C ~ Normal(m, s·τ)``, is sampled as
    ``C_decentered ~ Normal(0, 1)`` and recorded as the deterministic site
    ``C = m + s·τ·C_decentered`` (NumPyro's ``LocScaleReparam(centered=0)``). The
    posterior is the same; with ``learn_basis_scale=True`` (``ard=True``) the sampler no
    longer sees the funnel between ``τ_k`` (``λ_j``) and its coefficients. Apply it
    outside :func:`~bayesresnet.infer.core.anchor_prior`, so an anchor moves ``m``.
    """
    config = {name: LocScaleReparam(centered=0.0) for name in names}
    return handlers.reparam(model, config=config)


def drop_decentered(samples: dict) -> dict:
    """``samples`` without the standard-Normal sites of :func:`noncentred`."""
    return {k: v for k, v in samples.items() if not k.endswith(_DECENTERED)}
