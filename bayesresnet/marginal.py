"""The output layer integrated out: a collapsed model for the samplers, and exact
conditional draws of the output layer afterwards.

With a Normal likelihood the output layer is linear-Gaussian given everything else: for
output ``o``, with the last hidden state ``H = h_L(x̃)`` ``[N, w]`` and the scaled design
``U = [H·s_w, s_b]`` ``[N, w+1]`` (``s_w``, ``s_b`` the output weights' and bias' prior
sds), the standardized outputs are ``ỹ_o = U β + σ_o ε`` with ``β ~ N(0, I)``, so

    ỹ_o | rest ~ N(0, σ_o² I + U Uᵀ)        (the output layer marginalized)
    β | ỹ_o, rest ~ N(R⁻¹ Qᵀ b, R⁻¹ R⁻ᵀ)     (its exact conditional)

where ``A = [U/σ_o; I] = Q R`` (a thin QR, ``R`` ``[w+1, w+1]``) and ``b = [ỹ_o/σ_o; 0]``.
The log density is evaluated through the same QR (``log det = N log σ_o² + 2 Σ log|R_ii|``,
Mahalanobis term ``‖b − Q Qᵀ b‖²``), which stays accurate in float32 when the fit is tight.

Why: the output weights are pinned by the data to a few per cent along the directions
that set the function's level and slope, while the hidden coefficients they multiply
wander over their prior; that ridge forces NUTS to a tiny step size, and every draw
then hits the maximum tree depth. Sampling the hidden coefficients and the noise from
their marginal posterior, then each draw's output layer from its conditional, is the
same posterior (a collapsed sampler), with the ridge gone. On the default problem the
adapted step size grew eightfold and saturation went from 100 % to 0 % of draws
(measured by ``benchmarks/tune_nuts.py``).

References:
    Liu (1994), The collapsed Gibbs sampler in Bayesian computations with applications
    to a gene regulation problem. JASA.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro

from bayesresnet import sites
from bayesresnet.model import (
    PriorSpec,
    Scaler,
    _sample_network,
    _sample_noise,
    _stiffness_factor,
    prior_scales,
)
from bayesresnet.resnet import ResNetSpec, apply

__all__ = [
    "OUTPUT_SITES",
    "supports",
    "collapsed_model",
    "draw_output_layer",
    "sample_output_layer",
]

#: The sites integrated out by the collapsed model.
OUTPUT_SITES = (sites.OUTPUT_WEIGHT, sites.OUTPUT_BIAS)


def supports(prior: PriorSpec) -> bool:
    """Whether the output layer can be integrated out (a Normal likelihood)."""
    return prior.likelihood == "normal"


def _features(params, x_std, spec: ResNetSpec, forward=None):
    """Last hidden state ``[N, w]``: the forward pass with an identity output layer."""
    w = spec.width
    dtype = params[sites.INPUT_WEIGHT].dtype
    identity = {
        sites.OUTPUT_WEIGHT: jnp.eye(w, dtype=dtype),
        sites.OUTPUT_BIAS: jnp.zeros(w, dtype),
    }
    return (apply if forward is None else forward)(params | identity, x_std, spec)


def _design(features, spec: ResNetSpec, prior: PriorSpec):
    """``U = [H·s_w, s_b]`` ``[N, w+1]``."""
    scales = prior_scales(spec, prior)
    ones = jnp.ones(features.shape[:1] + (1,), features.dtype)
    return jnp.concatenate(
        [features * scales[sites.OUTPUT_WEIGHT], ones * scales[sites.OUTPUT_BIAS]], axis=1
    )


def _qr_one(u, y_std, sigma):
    """QR of ``A = [U/σ; I]`` and ``Qᵀ b``, ``b = [ỹ/σ; 0]``, for one output."""
    n, k = u.shape
    a = jnp.concatenate([u / sigma, jnp.eye(k, dtype=u.dtype)], axis=0)  # [N+k, k]
    b = jnp.concatenate([y_std / sigma, jnp.zeros(k, u.dtype)])  # [N+k]
    q, r = jnp.linalg.qr(a)  # [N+k, k], [k, k]
    return q, r, b


def _log_marginal_one(u, y_std, sigma):
    """``log N(ỹ; 0, σ² I + U Uᵀ)`` for one output (standardized units)."""
    n = u.shape[0]
    q, r, b = _qr_one(u, y_std, sigma)
    resid = b - q @ (q.T @ b)
    log_det = 2.0 * n * jnp.log(sigma) + 2.0 * jnp.sum(jnp.log(jnp.abs(jnp.diag(r))))
    return -0.5 * (n * jnp.log(2.0 * jnp.pi) + log_det + jnp.sum(resid**2))


def collapsed_model(spec: ResNetSpec, prior: PriorSpec, scaler: Scaler):
    """The model with the output layer integrated out (Normal likelihood only).

    Its latent sites are those of :func:`~bayesresnet.model.wp_resnet_model` without
    :data:`OUTPUT_SITES`; its log density is the marginal likelihood of the outputs (in
    raw units, like the full model's) plus the priors of the other sites.

    Returns:
        ``model(x, y=None, forward=None)``, with the signature the engines call.
    """
    if not supports(prior):
        raise ValueError(
            f"the output layer can be integrated out only with likelihood='normal'; got "
            f"{prior.likelihood!r}. Set `marginalize_output=False`."
        )

    def model(x, y=None, forward=None):
        n, d = x.shape
        assert d == spec.in_features, f"x has {d} columns, spec.in_features={spec.in_features}"
        params = _sample_network(spec, prior, exclude=OUTPUT_SITES)
        sigma = _sample_noise(spec, prior)  # [out], standardized units
        if y is None or n == 0:
            return
        x_std = scaler.transform_x(x)  # [N, d]
        if prior.stiffness_penalty > 0:  # of the hidden layers only: no output site needed
            _stiffness_factor(params, x_std, spec, prior.stiffness_penalty)
        y_std = scaler.transform_y(y)  # [N, out]
        u = _design(_features(params, x_std, spec, forward), spec, prior)  # [N, w+1]
        log_std = jax.vmap(_log_marginal_one, in_axes=(None, 1, 0))(u, y_std, sigma)  # [out]
        # Raw units: y = μ + s ỹ, so log p(y) = log p(ỹ) − N Σ_o log s_o.
        log_raw = jnp.sum(log_std) - n * scaler.log_det_y()
        numpyro.factor(sites.OBS, log_raw)

    return model


def draw_output_layer(
    key, params: dict, x, y, spec: ResNetSpec, prior: PriorSpec, scaler: Scaler, forward=None
):
    """One draw of the output layer from its exact conditional (traceable: vmap it).

    Args:
        key: a JAX random key.
        params: one draw of the collapsed model's sites (the network without
            :data:`OUTPUT_SITES`, and the noise scale).
        x, y: the training data (raw units).

    Returns:
        ``(output_weight [w, out], output_bias [out])``.
    """
    x_std = scaler.transform_x(jnp.asarray(x))  # [N, d]
    y_std = scaler.transform_y(jnp.asarray(y))  # [N, out]
    u = _design(_features(params, x_std, spec, forward), spec, prior)  # [N, w+1]

    def per_output(k_o, y_o, sigma_o):
        q, r, b = _qr_one(u, y_o, sigma_o)
        eps = jax.random.normal(k_o, (u.shape[1],), u.dtype)
        return jax.scipy.linalg.solve_triangular(r, q.T @ b + eps, lower=False)  # β [w+1]

    keys = jax.random.split(key, spec.out_features)
    beta = jax.vmap(per_output, in_axes=(0, 1, 0))(keys, y_std, params[sites.NOISE_SCALE])
    scales = prior_scales(spec, prior)
    w = spec.width
    return beta[:, :w].T * scales[sites.OUTPUT_WEIGHT], beta[:, w] * scales[sites.OUTPUT_BIAS]


def sample_output_layer(
    key, samples: dict, x, y, spec: ResNetSpec, prior: PriorSpec, scaler: Scaler, forward=None
) -> dict:
    """:func:`draw_output_layer` for every posterior draw.

    Args:
        key: a JAX random key.
        samples: draws of the collapsed model's sites ``{site: [C, S, ...]}``.
        x, y: the training data (raw units) the draws were conditioned on.

    Returns:
        ``samples`` with :data:`OUTPUT_SITES` added ``[C, S, ...]``, in the model's order.
    """
    lead = np.shape(samples[sites.NOISE_SCALE])[:2]
    num = int(np.prod(lead))
    flat = {k: jnp.asarray(v).reshape((num,) + np.shape(v)[2:]) for k, v in samples.items()}
    x, y = jnp.asarray(x), jnp.asarray(y)

    def one(args):
        k, draw = args
        return draw_output_layer(k, draw, x, y, spec, prior, scaler, forward)

    # In batches: each draw's QR holds an [N + w + 1, w + 1] matrix per output.
    run = jax.jit(lambda args: jax.lax.map(one, args, batch_size=64))
    weight, bias = run((jax.random.split(key, num), flat))
    w, o = spec.width, spec.out_features
    completed = dict(samples)
    completed[sites.OUTPUT_WEIGHT] = np.asarray(weight).reshape(lead + (w, o))
    completed[sites.OUTPUT_BIAS] = np.asarray(bias).reshape(lead + (o,))
    network = {k: completed[k] for k in sites.NETWORK if k in completed}
    return network | {k: v for k, v in completed.items() if k not in sites.NETWORK}
