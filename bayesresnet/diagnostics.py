"""The ArviZ boundary: every ArviZ call of the package lives in this module.

``to_inference_data`` turns a :class:`~bayesresnet.posterior.Posterior` into an
``arviz.InferenceData`` with named dimensions; the functions below compute convergence
diagnostics (on parameters and on function-space quantities), LOO, WAIC and model
comparison from it.
"""

from __future__ import annotations

import warnings

from bayesresnet import sites

with warnings.catch_warnings():
    # ArviZ 0.x announces its 1.x refactor on import, once a day; the move to 1.x is
    # planned for this module alone, so the notice is silenced here.
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

__all__ = ["to_inference_data", "coords_of"]


def coords_of(post) -> dict[str, list]:
    """ArviZ coordinates of every named dimension of a posterior."""
    spec = post.spec
    hidden = list(range(spec.width))
    return {
        "basis": spec.basis.function_names(spec.num_layers),
        "hidden": hidden,
        "hidden_in": hidden,
        "hidden_out": hidden,
        "input": list(post.input_names),
        "output": list(post.output_names),
        "obs": list(range(len(post.x_train))),
    }


def to_inference_data(
    post, *, log_likelihood: bool = True, posterior_predictive: bool = True, seed: int = 0
):
    """An ``arviz.InferenceData`` of a posterior.

    Groups: ``posterior`` (every latent site, dims named after the network: ``basis``,
    ``hidden``, ``input``, ``output``), ``sample_stats`` (in ArviZ's names:
    ``diverging``, ``tree_depth``, ``step_size``, ``acceptance_rate``, ``energy``,
    ``n_steps``, ``lp`` for NUTS), ``log_likelihood`` (``y`` per observation, i.e. per
    row, summed over outputs, so ``az.loo`` leaves out whole rows),
    ``posterior_predictive`` (noisy ``y`` at the training inputs), ``observed_data``
    and ``constant_data`` (the training inputs ``x``).

    Args:
        post: the posterior.
        log_likelihood: include the pointwise log-likelihood.
        posterior_predictive: include posterior predictive draws at the training inputs.
        seed: seed of the observation noise of the predictive draws.
    """
    coords = coords_of(post)
    dims = {name: list(sites.DIMS[name]) for name in post.samples}
    dims["x"] = ["obs", "input"]
    dims[sites.OBS] = ["obs", "output"]
    groups = {
        "posterior": dict(post.samples),
        "observed_data": {sites.OBS: post.y_train},
        "constant_data": {"x": post.x_train},
    }
    if post.sample_stats:
        groups["sample_stats"] = dict(post.sample_stats)
    if posterior_predictive:
        pred = post.predict(post.x_train, seed=seed, return_draws=True, levels=())
        shape = (post.num_chains, post.num_draws) + pred.y.shape[1:]
        groups["posterior_predictive"] = {sites.OBS: pred.y.reshape(shape)}
    idata = az.from_dict(**groups, coords=coords, dims=dims)
    if log_likelihood:
        ll = post.log_likelihood()  # [chains, draws, N]
        dataset = az.dict_to_dataset(
            {sites.OBS: ll}, coords={"obs": coords["obs"]}, dims={sites.OBS: ["obs"]}
        )
        idata.add_groups(log_likelihood=dataset)
    return idata
