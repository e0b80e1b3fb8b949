"""Inference: ``fit(spec, x, y, method=...)`` runs NUTS, MCLMC, SVI or a deep ensemble.

``method="auto"`` (the default) runs the deep ensemble
(:func:`~bayesresnet.infer.auto.choose_method` says why). All four return the same
:class:`~bayesresnet.posterior.Posterior`. ``METHODS[name]`` is
each method's :class:`~bayesresnet.infer.base.Engine` (config, run function, description,
gradient count, checks); the samplers are kernels in BlackJAX's form
(:class:`~bayesresnet.infer.base.SamplingAlgorithm`: ``nuts.nuts_kernel``,
``mclmc.mclmc_kernel``) driven by :func:`~bayesresnet.infer.core.run_chains`.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np

from bayesresnet._validate import check_int
from bayesresnet.architecture import (
    SEARCH_OPTIONS,
    candidate_specs,
    choose_spec,
    default_spec,
    describe,
)
from bayesresnet.data import (
    MIN_TRAIN_ROWS,
    Dataset,
    check_log_columns,
    column_names,
    transform_masks,
    validate_xy,
)
from bayesresnet.infer.auto import AUTO, choose_method, choose_prior
from bayesresnet.infer.base import (
    Engine,
    EngineResult,
    SamplingAlgorithm,
    config_from_options,
    progress_bar,
    show_progress,
)
from bayesresnet.infer.ensemble import EnsembleConfig, run_ensemble
from bayesresnet.infer.lanes import lane_threads
from bayesresnet.infer.mclmc import MCLMCConfig, run_mclmc
from bayesresnet.infer.nuts import NUTSConfig, run_nuts
from bayesresnet.infer.registry import METHODS
from bayesresnet.infer.svi import SVIConfig, run_svi
from bayesresnet.marginal import collapsed_model, sample_output_layer, supports
from bayesresnet.model import (
    BoundModel,
    PriorSpec,
    drop_decentered,
    fit_scaler,
    make_model,
    noncentred_sites,
    scaled_prior,
)
from bayesresnet.posterior import Posterior
from bayesresnet.resnet import ResNetSpec

__all__ = [
    "fit",
    "AUTO",
    "choose_method",
    "METHODS",
    "Engine",
    "SamplingAlgorithm",
    "EngineResult",
    "NUTSConfig",
    "MCLMCConfig",
    "show_progress",
    "SVIConfig",
    "EnsembleConfig",
    "run_nuts",
    "run_mclmc",
    "run_svi",
    "run_ensemble",
]


def _resolve_marginal(config, prior: PriorSpec) -> bool:
    """Whether the engine samples with the output layer integrated out."""
    requested = getattr(config, "marginalize_output", False)
    if requested == "auto":
        return supports(prior)
    if requested and not supports(prior):
        raise ValueError(
            f"`marginalize_output=True` needs likelihood='normal' (the output layer is "
            f"integrated out in closed form); got likelihood={prior.likelihood!r}. Set "
            f'`marginalize_output` to false or "auto".'
        )
    return bool(requested)


def _resolve_noncentred(config, prior: PriorSpec) -> bool:
    """Whether the engine samples the hidden coefficients in non-centred form."""
    requested = getattr(config, "noncentred", False)
    if requested == "auto":
        return prior.learn_basis_scale or prior.ard
    return bool(requested)


def _check_method(method: str, options: dict) -> None:
    """``method`` is ``"auto"`` (without options) or a key of :data:`METHODS`."""
    if method != AUTO and method not in METHODS:
        raise ValueError(f"`method` must be {AUTO!r} or one of {sorted(METHODS)}; got {method!r}.")
    if method == AUTO and options:
        raise TypeError(
            f'method="auto" takes no method options; got {sorted(options)}. Name the '
            'method whose options these are (e.g. method="mclmc").'
        )


def _settings_used(settings: dict, config, marginal: bool, noncentre: bool, choice) -> dict:
    """The engine's settings with what ``fit`` resolved: the form sampled, why ``auto`` chose."""
    if hasattr(config, "marginalize_output"):
        settings = settings | {"marginalize_output_used": marginal}
    if hasattr(config, "noncentred"):
        settings = settings | {"noncentred_used": noncentre}
    if choice is not None:
        settings = settings | {"method_choice": choice.reason}
    return settings


def _check_arguments(spec, method: str, seed: int, prior, options: dict) -> PriorSpec:
    """:func:`fit`'s arguments but the data, checked before any work; returns the prior."""
    _check_method(method, options)
    if not (isinstance(spec, ResNetSpec) or spec is None or spec == "auto"):
        raise TypeError(
            f"`spec` must be a ResNetSpec, None (a default by data size) or 'auto' (chosen "
            f"on held-out data); got {type(spec).__name__} {spec!r}."
        )
    prior = PriorSpec() if prior is None else prior
    if not isinstance(prior, PriorSpec):
        raise TypeError(f"`prior` must be a PriorSpec; got {type(prior).__name__}.")
    check_int("seed", seed, minimum=0)
    lane_threads()  # a malformed $BAYESRESNET_THREADS is an error now, not after the start
    return prior


def _training_data(x, y):
    """``(x, y, input_names, output_names)`` of :func:`fit`'s data, checked (float64)."""
    input_names = output_names = ()
    if isinstance(x, Dataset):
        if y is not None:
            raise ValueError("pass either a Dataset or `x` and `y`, not both.")
        input_names, output_names = x.input_names, x.output_names
        x, y = x.x_train, x.y_train
    elif y is None:
        raise ValueError("`y` is required when `x` is an array.")
    else:  # DataFrames keep their column names
        input_names, output_names = column_names(x, "x"), column_names(y, "y")
    x, y = validate_xy(
        x,
        y,
        input_names=input_names or None,
        output_names=output_names or None,
        min_rows=MIN_TRAIN_ROWS,
    )
    input_names = tuple(input_names) or tuple(f"x{i + 1}" for i in range(x.shape[1]))
    output_names = tuple(output_names) or tuple(f"y{i + 1}" for i in range(y.shape[1]))
    return x, y, input_names, output_names


def _engine_model(spec: ResNetSpec, prior: PriorSpec, scaler, marginal: bool, noncentre: bool):
    """The model an engine runs: with the output layer integrated out (``marginal``) or
    not, on the centred scaler, its hidden coefficients non-centred where ``noncentre``."""
    make = collapsed_model if marginal else make_model
    names = noncentred_sites(prior) if noncentre else ()
    return BoundModel(scaler.centred(), make, spec, prior, names)


def _resolve_spec(spec, x, y, *, seed: int, prior: PriorSpec, masks) -> tuple:
    """The network to fit, what the run record says of its choice, and the prior.

    ``spec`` as given (nothing recorded), :func:`~bayesresnet.architecture.default_spec`
    for ``None``, or for ``"auto"`` the held-out search of
    :func:`~bayesresnet.architecture.choose_spec` with quick ensembles, which also tries
    the prior scales the best network's evidence asks for (the prior comes back scaled
    where they won).
    """
    (n, d), out = x.shape, y.shape[1]
    if isinstance(spec, ResNetSpec):
        if d != spec.in_features:
            raise ValueError(f"`x` has {d} columns but spec.in_features={spec.in_features}.")
        if out != spec.out_features:
            raise ValueError(f"`y` has {out} columns but spec.out_features={spec.out_features}.")
        return spec, {}, prior  # the user's network: nothing to record
    if spec is None:
        chosen = default_spec(d, out, n)
        return (
            chosen,
            {"architecture": {"rule": "default by data size", "chosen": describe(chosen)}},
            prior,
        )

    candidates = candidate_specs(d, out, n)
    # The quick fits see arrays, whose columns are named x1…, y1…: the same transforms.
    transforms = {
        f"{prefix}{i + 1}": "log"
        for prefix, mask in zip("xy", masks)
        if mask is not None
        for i in np.flatnonzero(mask)
    }
    with progress_bar(len(candidates) + 1, "network search") as bar:

        def quick_fit(candidate, xs, ys, s, scales=None):
            # One bar for the search, none per quick fit; quick fits stop before they
            # converge by design (they rank candidates), so their warning is not news.
            with show_progress("off"), warnings.catch_warnings():
                warnings.filterwarnings("ignore", ".*ensemble member", RuntimeWarning)
                post = fit(
                    candidate,
                    xs,
                    ys,
                    method="ensemble",
                    seed=s,
                    prior=prior if scales is None else scaled_prior(prior, scales),
                    transforms=transforms or None,
                    prior_evidence=True,
                    **SEARCH_OPTIONS,
                )
            bar.update(1)
            return post

        choice = choose_spec(x, y, fit=quick_fit, candidates=candidates, seed=seed, evidence=True)
        if len(choice.scores) == len(candidates):  # no evidence to try (e.g. Student-t)
            bar.update(1)
    if choice.prior_factors:
        prior = scaled_prior(prior, choice.prior_factors)
    record = {"architecture": {"rule": "held-out CRPS", **choice.to_record()}}
    return choice.spec, record, prior


def fit(
    spec: ResNetSpec | str | None,
    x,
    y=None,
    *,
    method: str = AUTO,
    seed: int = 0,
    prior: PriorSpec | None = None,
    transforms=None,
    **options,
) -> Posterior:
    """Fit a Bayesian WP-ResNet.

    Args:
        spec: the network; ``None``: :func:`~bayesresnet.architecture.default_spec` (sized
            by the number of rows); ``"auto"``: width, depth and depth basis chosen by the
            held-out CRPS of quick ensembles (:func:`~bayesresnet.architecture.choose_spec`,
            seconds each at a few hundred rows), then the prior scales the best one's
            evidence asks for if they score better (``post.prior``: the prior used). Either
            way the choice is recorded in ``post.settings["architecture"]``.
        x: training inputs ``[N, d]`` (raw units, at least
            :data:`~bayesresnet.data.MIN_TRAIN_ROWS` rows), or a
            :class:`~bayesresnet.Dataset` (then ``y`` is omitted and its training split is
            used). A pandas DataFrame's column names become the input names (otherwise
            ``x1``, ``x2``, …), which :meth:`Posterior.predict` matches by name.
        y: training outputs ``[N, out]`` or ``[N]``; a DataFrame's column names (a
            Series' name) become the output names.
        method: ``"auto"`` (default), ``"nuts"``, ``"mclmc"``, ``"svi"``, ``"ensemble"``.
            ``"auto"``: the deep ensemble at its defaults, polished by L-BFGS from 500
            rows and (given no ``prior``) learning input relevance
            (:func:`~bayesresnet.infer.auto.choose_method`, with the measurements
            behind it); ``post.method`` is the one that ran,
            ``post.settings["method_choice"]`` says why.
        seed: seed of every random choice of the run.
        prior: prior and likelihood; ``None``: the default
            :class:`~bayesresnet.PriorSpec`, except with ``method="auto"``, which learns
            input relevance (``ard=True``; :func:`~bayesresnet.infer.auto.choose_prior`;
            ``post.prior`` is the prior used).
        transforms: per-column transforms ``{column name: "log"}`` of inputs and outputs
            (names as above; default none). A log input is standardized as ``log x``
            (for inputs spanning orders of magnitude); a log output is modelled as
            ``log y`` (multiplicative noise; predictions and intervals positive). Both
            live in the posterior's :class:`~bayesresnet.Scaler`, so every prediction
            takes and returns raw units. Every value of a log column must be > 0.
        **options: the method's settings: see :class:`NUTSConfig`, :class:`MCLMCConfig`,
            :class:`SVIConfig`, :class:`EnsembleConfig` (none with ``"auto"``).

    Returns:
        A :class:`~bayesresnet.posterior.Posterior`.
    """
    prior_chosen = method == AUTO and prior is None
    prior = _check_arguments(spec, method, seed, prior, options)
    x, y, input_names, output_names = _training_data(x, y)
    if prior_chosen:
        prior = choose_prior()
    masks = x_log, y_log = transform_masks(transforms, input_names, output_names)
    check_log_columns(x, x_log, input_names, what="`x`")
    check_log_columns(y, y_log, output_names, what="`y`")
    # A named method's options are checked before any network search.
    config = (
        None if method == AUTO else config_from_options(METHODS[method].config, method, options)
    )
    spec, spec_record, prior = _resolve_spec(spec, x, y, seed=seed, prior=prior, masks=masks)
    auto_prior = prior if prior_chosen else None  # said in the reason where auto chose it
    choice = choose_method(len(x), spec, auto_prior) if method == AUTO else None
    if choice is not None:
        method = choice.method
        config = config_from_options(METHODS[method].config, method, choice.options)
    engine = METHODS[method]
    marginal = _resolve_marginal(config, prior)
    scaler = fit_scaler(x, y, x_log=x_log, y_log=y_log)
    # Offsets and input scales are removed in float64, before the engines cast to float32.
    x_fit, y_fit = scaler.centre_data(x, y)
    key = jax.random.key(seed)
    noncentre = _resolve_noncentred(config, prior)
    model = _engine_model(spec, prior, scaler, marginal, noncentre)
    result = engine.run(key, model, x_fit, y_fit, config)
    samples = drop_decentered(result.samples)
    settings = _settings_used(result.settings, config, marginal, noncentre, choice) | spec_record
    if marginal:
        samples = sample_output_layer(
            jax.random.fold_in(key, 1), samples, x_fit, y_fit, spec, prior, scaler.centred()
        )
    return Posterior(
        spec=spec,
        prior=prior,
        scaler=scaler,
        samples=samples,
        method=method,
        settings=settings,
        sample_stats=result.sample_stats,
        timings=result.timings,
        extra=result.extra,
        x_train=np.asarray(x),
        y_train=np.asarray(y),
        input_names=input_names,
        output_names=output_names,
        seed=seed,
    )
