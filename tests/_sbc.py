"""Simulation-based calibration (Talts et al. 2018), shared by the engines' SBC tests.

Each test simulates ``R`` data sets from the prior predictive, runs one chain per data
set (vmapped), and checks that the ranks of the true values among the kept draws are
uniform for a few scalar summaries of the tiny network. The chains are the engines' own
kernels (``nuts_kernel``, ``mclmc_kernel``) run by the engines' chain loop
(``scan_chain``); ``run_nuts`` and ``run_mclmc`` wrap the same pieces in compiled blocks
over one data set, and a call per replicate would compile ``R`` times.
"""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import constrain_fn
from scipy.stats import chisquare

import bayesresnet as brn
from bayesresnet import sites
from bayesresnet.infer.core import flatten_members, make_log_density, scan_chain
from bayesresnet.infer.mclmc import mclmc_kernel
from bayesresnet.infer.nuts import nuts_kernel

PROBE = jnp.array([[0.3]])


def quantities(d, spec):
    """Scalar summaries ``[...]`` of draws ``d`` ``{site: [..., shape]}``: four
    parameters and the function at the probe input."""
    lead = d[sites.OUTPUT_BIAS].shape[:-1]
    params = {k: d[k] for k in sites.NETWORK}
    flat = jax.tree_util.tree_map(lambda a: a.reshape((-1,) + a.shape[len(lead) :]), params)
    f = jax.vmap(lambda p: brn.apply(p, PROBE, spec)[0, 0])(flat).reshape(lead)
    return {
        "output_bias": d[sites.OUTPUT_BIAS][..., 0],
        "output_weight[1,0]": d[sites.OUTPUT_WEIGHT][..., 1, 0],
        "noise_scale": d[sites.NOISE_SCALE][..., 0],
        "hidden_weight[1,0,1]": d[sites.HIDDEN_WEIGHT][..., 1, 0, 1],
        "f(0.3)": f,
    }


def assert_uniform_ranks(truths: dict, draws: dict, spec) -> None:
    """χ² test of the ranks of ``truths`` ``[R]`` among ``draws`` ``[R, 29]``.

    Ranks take 30 values; 5 bins of 6 values, 20 expected per bin (R = 100). Five
    quantities at α = 0.001 each: a family-wise false alarm rate of 0.5 %.
    """
    true_q = quantities({k: v for k, v in truths.items() if k != sites.OBS}, spec)  # [R]
    post_q = quantities(draws, spec)  # [R, kept]
    for name in true_q:
        post = np.asarray(post_q[name])
        assert post.shape[1] == 29, "the binning assumes 29 kept draws"
        ranks = np.sum(post < np.asarray(true_q[name])[:, None], axis=1)
        counts = np.bincount(ranks // 6, minlength=5)
        p_value = chisquare(counts).pvalue
        assert p_value > 1e-3, (name, counts, p_value)


def nuts_draws(
    key,
    model,
    x,
    ys,
    init,
    *,
    num_warmup=500,
    num_kept=29,
    thin=10,
    max_tree_depth=8,
    complete=None,
):
    """One NUTS chain per data set ``ys`` ``[R, N, 1]``, vmapped over replicates: one
    compilation instead of ``R``.

    Each chain is the engine's own: :func:`~bayesresnet.infer.nuts.nuts_kernel` over the
    replicate's log density (:func:`~bayesresnet.infer.core.make_log_density`), scanned
    by :func:`~bayesresnet.infer.core.scan_chain`, the loop ``run_nuts`` runs in every
    compiled block. The kept draws are every ``thin``-th step after warm-up.

    Trees are capped at depth 8 (255 leapfrog steps), not the engine's default 10: the
    vmapped chains step in lockstep, so each step costs the deepest of the ``R`` trees.
    At depth 10 (20 replicates of ``test_infer``'s SBC) a chain took 166 leapfrog steps a
    transition on average while the deepest of them took 980, and the 100-replicate test
    ran 262 s in CI; capped at 8 it ran 45 s on a quiet machine. A capped tree is a valid
    NUTS transition (the kernel's code is the same), only a shorter one; the thinning
    keeps the kept draws apart. Capped so, ``test_infer``'s SBC still rejects chains run on
    a prior whose output scale is 0.3 instead of 1 (output bias and weight p < 1e-3).

    Args:
        max_tree_depth: the kernel's cap on the tree depth (above).
        complete: optional ``complete(key, draws, y) -> draws`` applied to each chain's
            kept (constrained) draws, e.g. to draw an integrated-out layer.

    Returns:
        ``(draws {site: [R, kept, ...]}, diverging [R, kept·thin])``.
    """

    def run_chain(k, u0, y):
        k_init, k_warm, k_run, k_complete = jax.random.split(k, 4)
        log_density = make_log_density(model, x, y)
        algorithm = nuts_kernel(
            log_density,
            num_warmup=num_warmup,
            target_accept_prob=0.9,
            max_tree_depth=max_tree_depth,
        )
        state = algorithm.init(k_init, u0)
        state, _ = scan_chain(algorithm.step, k_warm, state, 0, num_warmup, collect=_nothing)
        _, (z, diverging) = scan_chain(
            algorithm.step, k_run, state, 0, num_kept * thin, collect=_position_and_divergence
        )
        keep = jax.tree_util.tree_map(lambda a: a[::thin], z)
        draws = jax.vmap(lambda u: constrain_fn(model, (x, y), {}, u))(keep)
        if complete is not None:
            draws = complete(k_complete, draws, y)
        return draws, diverging

    keys = jax.random.split(key, ys.shape[0])
    return jax.jit(jax.vmap(run_chain))(keys, init, ys)


def mclmc_draws(key, model, x, ys, init, config, *, num_kept=29):
    """One unadjusted MCLMC chain per data set, vmapped over replicates: the engine's
    :func:`~bayesresnet.infer.mclmc.mclmc_kernel` (tuned by BlackJAX's tuner, as in
    ``run_mclmc``) scanned by :func:`~bayesresnet.infer.core.scan_chain`, ``num_kept``
    draws ``config.thinning`` steps apart.

    Returns:
        ``draws {site: [R, kept, ...]}``.
    """
    flat, unravel = flatten_members(init)
    dim = flat.shape[1]

    def run_chain(k, z0, y):
        density = make_log_density(model, x, y)
        algorithm = mclmc_kernel(lambda z: density(unravel(z)), config, dim)
        k_init, k_tune, k_run = jax.random.split(k, 3)
        chain = algorithm.tune(k_tune, algorithm.init(k_init, z0))
        _, zs = scan_chain(
            algorithm.step, k_run, chain, 0, num_kept, collect=_position, thinning=config.thinning
        )
        return jax.vmap(lambda z: constrain_fn(model, (x, y), {}, unravel(z)))(zs)

    keys = jax.random.split(key, ys.shape[0])
    return jax.jit(jax.vmap(run_chain))(keys, flat, ys)


def _nothing(state, info):
    return None


def _position_and_divergence(state, info):
    return state.z, info.diverging


def _position(chain, info):
    return chain.state.position
