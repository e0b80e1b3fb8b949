"""Depth-scaling exponents (Cohen et al. 2021) recover known scalings of synthetic weights."""

import numpy as np
import pytest

from bayesresnet import bases, depth_scaling, sites
from bayesresnet.model import PriorSpec, Scaler
from bayesresnet.posterior import Posterior
from bayesresnet.resnet import ResNetSpec, param_shapes


def _smooth(num_layers, rng, draws=5, width=4):
    """``W_l = sin(t_l) A + cos(2 t_l) B``: a smooth path, increments exactly O(1/L)."""
    t = np.arange(num_layers) / num_layers
    a, b = rng.normal(size=(2, draws, 1, width, width))
    return np.sin(t)[None, :, None, None] * a + np.cos(2 * t)[None, :, None, None] * b


def test_smooth_path_gives_beta_one_within_and_across_depths():
    rng = np.random.default_rng(0)
    res = depth_scaling.increment_scaling(_smooth(64, rng))
    assert res.beta.shape == (5,)
    np.testing.assert_allclose(res.depth, [64, 32, 16, 8, 4])
    # Stride-s increments are ‖W'‖ s/L up to O((s/L)²): within a few per cent of 1.
    np.testing.assert_allclose(res.beta, 1.0, atol=0.08)
    np.testing.assert_allclose(res.beta_norm, 0.0, atol=0.1)
    across = depth_scaling.across_depths(
        {m: _smooth(m, np.random.default_rng(1)) for m in (8, 16, 32, 64)}
    )
    np.testing.assert_allclose(across.beta, 1.0, atol=0.08)
    # The max over t_l ≤ 1 − 1/L grows a little with L (the grid reaches closer to t = 1).
    np.testing.assert_allclose(across.beta_norm, 0.0, atol=0.1)


def test_iid_layers_give_beta_zero_and_a_random_walk_one_half():
    rng = np.random.default_rng(2)
    # 200 draws of 64 independent 6×6 layers: the exponent of each draw is ≈ 0; the max
    # over fewer coarse layers is a little smaller, so a small positive bias (≈ 0.05).
    iid = rng.normal(size=(200, 64, 6, 6))
    for reduce, tol in (("max", 0.12), ("mean", 0.03)):
        beta = depth_scaling.increment_scaling(iid, reduce=reduce).beta
        assert abs(np.median(beta)) < tol, (reduce, np.median(beta))
    walk = np.cumsum(rng.normal(size=(200, 64, 6, 6)), axis=1) / 8.0
    beta = depth_scaling.increment_scaling(walk, reduce="mean").beta
    # Mean over draws, standard error ≈ sd/√200.
    assert abs(beta.mean() - 0.5) < 3 * beta.std() / np.sqrt(200) + 0.02, beta.mean()
    # Across depths: weights scaled like L^(−1/2) give β_norm = 1/2.
    by_depth = {m: rng.normal(size=(50, m, 6, 6)) / np.sqrt(m) for m in (8, 16, 32, 64)}
    across = depth_scaling.across_depths(by_depth, reduce="mean")
    np.testing.assert_allclose(np.median(across.beta_norm), 0.5, atol=0.03)


def _posterior(spec, num_draws=6):
    rng = np.random.default_rng(0)  # prior-like draws: independent N(0, 1/width) entries
    shapes = param_shapes(spec)
    samples = {
        k: rng.normal(size=(1, num_draws, *shapes[k])) / np.sqrt(spec.width) for k in sites.NETWORK
    }
    samples[sites.NOISE_SCALE] = np.full((1, num_draws, 1), 0.1)
    x = np.zeros((3, 2))
    scaler = Scaler(np.zeros(2), np.ones(2), np.zeros(1), np.ones(1))
    prior = PriorSpec()
    return Posterior(spec, prior, scaler, samples, "ensemble", {}, {}, {}, {}, x, x[:, :1])


def test_posterior_exponents_per_layer_against_a_continuous_basis():
    per_layer = _posterior(ResNetSpec(2, 1, width=6, num_layers=16, basis=bases.PerLayer()))
    cubic = _posterior(ResNetSpec(2, 1, width=6, num_layers=16, basis=bases.Legendre(2)))
    w = depth_scaling.posterior_layer_weights(cubic)
    assert w.shape == (6, 16, 6, 6)
    coef = cubic.flat_samples()[sites.HIDDEN_WEIGHT][3]
    np.testing.assert_allclose(w[3, 5], np.tensordot(bases.Legendre(2).phi(16)[5], coef, 1))
    b_layer = depth_scaling.scaling_bands(depth_scaling.posterior_depth_scaling(per_layer))
    b_cubic = depth_scaling.scaling_bands(depth_scaling.posterior_depth_scaling(cubic))
    assert b_layer["beta"].shape == (3,) and b_layer["beta"][0] <= b_layer["beta"][2]
    assert abs(b_layer["beta"][1]) < 0.3  # prior draws: independent layers
    assert b_cubic["beta"][1] > 0.7  # a quadratic path: smooth
    posts = {
        "L8": _posterior(ResNetSpec(2, 1, width=6, num_layers=8, basis=bases.PerLayer())),
        "L16": per_layer,
    }
    across = depth_scaling.posterior_depth_scaling_across(posts)
    np.testing.assert_allclose(across.depth, [8, 16])


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"`weights` must have shape \[..., L, w, w\]"):
        depth_scaling.increment_scaling(np.zeros((4, 3, 2)))
    with pytest.raises(ValueError, match="at least 3 layers"):
        depth_scaling.increment_scaling(np.ones((2, 2, 2)))
    with pytest.raises(ValueError, match="`strides` needs at least two distinct"):
        depth_scaling.increment_scaling(np.ones((8, 2, 2)), strides=(2, 2))
    with pytest.raises(ValueError, match="`strides` must be ≤ L − 1 = 7"):
        depth_scaling.increment_scaling(np.ones((8, 2, 2)), strides=(1, 8))
    with pytest.raises(ValueError, match="`reduce` must be one of"):
        depth_scaling.increment_scaling(np.ones((8, 2, 2)), reduce="median")
    with pytest.raises(ValueError, match="at least two depths"):
        depth_scaling.across_depths({8: np.ones((1, 8, 2, 2))})
    with pytest.raises(ValueError, match=r"`weights_by_depth\[8\]` must have 8"):
        depth_scaling.across_depths({8: np.ones((1, 7, 2, 2)), 4: np.ones((1, 4, 2, 2))})
