"""Simulation-based calibration (Talts et al. 2018), shared by the engines' SBC tests.

Each test simulates ``R`` data sets from the prior predictive, runs one chain per data
set (vmapped), and checks that the ranks of the true values among the kept draws are
uniform for a few scalar summaries of the tiny network.
"""

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.hmc import hmc
from numpyro.infer.util import constrain_fn, potential_energy
from scipy.stats import chisquare

import bayesresnet as brn
from bayesresnet import sites

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


def nuts_draws(key, model, x, ys, init, *, num_warmup=500, num_kept=29, thin=10, complete=None):
    """One NUTS chain per data set ``ys`` ``[R, N, 1]`` through NumPyro's functional
    ``hmc`` kernels, vmapped over replicates: one compilation instead of ``R``.

    Args:
        complete: optional ``complete(key, draws, y) -> draws`` applied to each chain's
            kept (constrained) draws, e.g. to draw an integrated-out layer.

    Returns:
        ``(draws {site: [R, kept, ...]}, diverging [R, kept·thin])``.
    """
    init_kernel, sample_kernel = hmc(
        potential_fn_gen=lambda y: lambda u: potential_energy(model, (x, y), {}, u), algo="NUTS"
    )

    def run_chain(k, u0, y):
        k_init, k_complete = jax.random.split(k)
        state = init_kernel(u0, num_warmup, target_accept_prob=0.9, model_args=(y,), rng_key=k_init)

        def step(state, _):
            state = sample_kernel(state, model_args=(y,))
            return state, (state.z, state.diverging)

        _, (z, diverging) = jax.lax.scan(step, state, None, length=num_warmup + num_kept * thin)
        keep = jax.tree_util.tree_map(lambda a: a[num_warmup::thin], z)
        draws = jax.vmap(lambda u: constrain_fn(model, (x, y), {}, u))(keep)
        if complete is not None:
            draws = complete(k_complete, draws, y)
        return draws, diverging[num_warmup:]

    keys = jax.random.split(key, ys.shape[0])
    return jax.jit(jax.vmap(run_chain))(keys, init, ys)
