"""The Bayesian workflow after inference, as one function call.

``analyze(post, dataset)`` answers the four questions a user asks of a fit (did the
sampler converge, does the model reproduce the data, are the error bars honest, how does
it compare) and returns every number (``metrics``, JSON-ready) and every figure (PNG data
URIs). It computes; it writes nothing: the command line and :mod:`bayesresnet.report`
write the files.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from bayesresnet import (
    __version__,
    calibration,
    diagnostics,
    inverse,
    ode_plots,
    plots,
    stiffness,
)
from bayesresnet.architecture import describe_factors
from bayesresnet.data import Dataset, suggest_transforms
from bayesresnet.infer.registry import METHODS
from bayesresnet.posterior import Posterior, Prediction
from bayesresnet.report import RELEVANCE_FIGURE, SENSITIVITY_FIGURE
from bayesresnet.resnet import num_params
from bayesresnet.sensitivity import SobolResult, sobol

__all__ = [
    "Analysis",
    "analyze",
    "data_notes",
    "describe_model",
    "describe_method",
    "SENSITIVITY_N",
    "SENSITIVITY_MAX_DRAWS",
    "SENSITIVITY_HDI_PROB",
    "sensitivity_summary",
    "sensitivity_figure",
    "CALIBRATE_HDI_PROB",
    "calibrate_summary",
    "calibrate_figures",
    "RELEVANCE_HDI_PROB",
    "relevance_outputs",
]

#: Base rows of the Sobol design of the report's sensitivity section and the default of
#: ``bayesresnet sensitivity --n``: ``n·(d + 2)`` points per draw.
SENSITIVITY_N = 2**13
#: Posterior draws whose Sobol indices are computed (evenly spaced over the chains): the
#: report's, and the default of ``bayesresnet sensitivity --max-draws``.
SENSITIVITY_MAX_DRAWS = 200
#: Probability of the highest-density bands of the Sobol indices.
SENSITIVITY_HDI_PROB = 0.9
#: Probability of the HDIs of calibrated inputs and of the predictive intervals at the
#: observations (``bayesresnet calibrate``).
CALIBRATE_HDI_PROB = 0.9
#: Probability of the highest-density bands of the input relevance (``ard=True``).
RELEVANCE_HDI_PROB = 0.9


class Analysis(NamedTuple):
    """Everything a report shows: numbers, figures and the held-out prediction."""

    metrics: dict
    figures: dict[str, tuple[str, str]]
    prediction: Prediction | None


def describe_model(post: Posterior) -> str:
    spec = post.spec
    kind = "ResNet" if spec.residual else "MLP baseline"
    text = (
        f"{kind}, width {spec.width}, {spec.num_layers} layers, basis {spec.basis!r} "
        f"({spec.num_basis_functions} coefficient matrices), activation {spec.activation}"
    )
    choice = post.settings.get("architecture")
    if choice is None:
        return text
    if "scores" not in choice:
        return f"{text}; {choice['rule']}"
    tried = ", ".join(
        f"{row['width']}×{row['num_layers']} {row['basis']}"
        + (" with the evidence's prior scales" if row.get("prior", "default") != "default" else "")
        + f": {row['crps']:.3g}"
        for row in choice["scores"]
    )
    factors = choice.get("prior_factors")
    scales = f"; prior scales as the evidence asked: {describe_factors(factors)}" if factors else ""
    return (
        f"{text}; chosen by held-out CRPS (in output sds, {choice['num_validation']} rows) "
        f"over {len(choice['scores'])} candidates, best first: {tried}{scales}"
    )


def describe_method(post: Posterior) -> str:
    """One line on the inference method and its settings (from its engine), and why it ran
    when ``method="auto"`` chose it."""
    line = METHODS[post.method].describe(post)
    choice = post.settings.get("method_choice")
    return f"{line} ({choice})" if choice else line


def _uri(fig) -> str:
    return plots.figure_to_data_uri(fig)


def analyze(
    post: Posterior,
    dataset: Dataset | None = None,
    *,
    name: str = "run",
    levels=calibration.BAND_LEVELS,
    num_probes: int = 20,
    truth=None,
    seed: int = 0,
    data_description: str = "",
    sensitivity: bool = False,
) -> Analysis:
    """Diagnostics, calibration, predictive checks and figures of one fit.

    The steps: :func:`diagnostics.convergence` (its function-space draws are reused by
    the trace figure), predictions at the training and held-out inputs (each made once),
    the run's description, LOO/WAIC/PPC, calibration, the verdict's predictive checks
    (:func:`diagnostics.predictive_checks`: PSIS-LOO k̂, and held-out PIT uniformity and
    interval coverage, or LOO-PIT without a test split), then the figures.

    Args:
        post: the posterior.
        dataset: the data it was fitted on, with its held-out split (calibration is
            computed on ``x_test``/``y_test`` when there are test rows).
        name: the run's name (report title).
        levels: central-interval levels drawn in the figures.
        num_probes: probe inputs for function-space convergence diagnostics.
        truth: optional callable ``x -> y`` (a built-in problem's ``evaluate``) drawn in
            the 1-D predictive figure.
        seed: seed of predictive noise draws and of probe selection.
        data_description: one line on where the data came from.
        sensitivity: also compute Sobol indices per posterior draw on the training box
            (:data:`SENSITIVITY_N`, :data:`SENSITIVITY_MAX_DRAWS`, design seed ``seed``):
            ``metrics["sensitivity"]`` (:func:`sensitivity_summary`) and their figure.
    """
    conv = diagnostics.convergence(post, num_probes=num_probes, seed=seed)
    train_pred = post.predict(post.x_train, seed=seed, return_draws=True)
    checks, pit_loo = _predictive_checks(post, train_pred, seed)
    prediction = None
    if dataset is not None and dataset.num_test > 0:
        prediction = post.predict(dataset.x_test, seed=seed, return_draws=True)
    calib = _calibration(post, dataset, train_pred, prediction)
    # The verdict judges the predictions too: what approximate methods can be judged on.
    conv = diagnostics.with_checks(
        conv,
        diagnostics.predictive_checks(
            checks["loo"],
            num_draws=post.num_samples,
            test=calib.get("test"),
            loo_pit_p=checks["loo_pit_ks_pvalue"],
        ),
    )
    metrics = {
        **_describe_run(post, dataset, name, data_description),
        "diagnostics": conv.to_dict(),
        **checks,
        "calibration": calib,
    }
    figures: dict[str, tuple[str, str]] = {}
    if prediction is not None:
        figures.update(_held_out_figures(post, dataset, prediction, name))
    figures.update(_fit_figures(post, dataset, train_pred, pit_loo, truth=truth, levels=levels))
    figures.update(_sampler_figures(post, conv))
    if post.prior.ard:
        metrics["relevance"], figures[RELEVANCE_FIGURE] = relevance_outputs(post)
    if sensitivity:
        result = sobol(post, n=SENSITIVITY_N, max_draws=SENSITIVITY_MAX_DRAWS, seed=seed)
        metrics["sensitivity"] = sensitivity_summary(result)
        figures[SENSITIVITY_FIGURE] = sensitivity_figure(result)
    return Analysis(metrics, figures, prediction)


def sensitivity_summary(result: SobolResult, hdi_prob: float = SENSITIVITY_HDI_PROB) -> dict:
    """A JSON-ready record of Sobol indices: settings, input ranges, meaning, table, timings.

    ``summary`` holds the rows of :meth:`SobolResult.summary` (``hdi_prob``): per output,
    index (``S1``, ``ST``) and input, the posterior mean and sd over the draws, the HDI and
    the Monte-Carlo standard error of the shared design.
    """
    d = len(result.input_names)
    problem = result.problem
    return {
        "settings": {
            "n": result.n,
            "num_points": result.n * (2 * d + 2 if result.second_order else d + 2),
            "num_draws": result.num_draws,
            "seed": result.seed,
            "estimator": result.estimator,
            "hdi_prob": hdi_prob,
        },
        "draws": result.draws.tolist(),
        "inputs": [
            {"name": name, "dist": dist, "bounds": list(row)}
            for name, dist, row in zip(problem["names"], problem["dists"], problem["bounds"])
        ],
        "bounds_source": result.attrs["bounds_source"],
        "notes": {k: v for k, v in result.attrs.items() if k != "bounds_source"},
        "summary": result.summary(hdi_prob).to_dict(orient="records"),
        "timings": dict(result.timings),
    }


def sensitivity_figure(
    result: SobolResult, hdi_prob: float = SENSITIVITY_HDI_PROB
) -> tuple[str, str]:
    """The Sobol bars with their bands (:meth:`SobolResult.plot`) and their caption."""
    return (
        _uri(result.plot(hdi_prob=hdi_prob)),
        f"Posterior mean of the first-order (S1) and total (ST) Sobol index of each input, "
        f"with {hdi_prob:.0%} highest-density bands over {result.num_draws} posterior draws "
        "of the noise-free function; one panel per output.",
    )


def _records(table) -> list[dict]:
    """A DataFrame's rows as JSON-ready dicts (NumPy scalars as Python numbers)."""
    return [
        {k: v.item() if hasattr(v, "item") else v for k, v in row.items()}
        for row in table.to_dict(orient="records")
    ]


def _observation_check(result: inverse.CalibrationResult, level: float) -> list[dict]:
    """Per observation and output: observed, predictive mean and central ``level`` interval."""
    idata = result.idata
    y_rep = np.asarray(idata.posterior_predictive["y"].values)
    y_rep = y_rep.reshape((-1,) + y_rep.shape[2:])  # [draws, M, O]
    y_obs = np.asarray(idata.observed_data["y"].values)
    lower, upper = np.quantile(y_rep, [(1 - level) / 2, (1 + level) / 2], axis=0)
    outputs = [str(v) for v in idata.observed_data["y"].coords["output"].values]
    return [
        {
            "obs": m,
            "output": name,
            "observed": float(y_obs[m, o]),
            "mean": float(y_rep[:, m, o].mean()),
            "lower": float(lower[m, o]),
            "upper": float(upper[m, o]),
            "inside": bool(lower[m, o] <= y_obs[m, o] <= upper[m, o]),
        }
        for m in range(y_obs.shape[0])
        for o, name in enumerate(outputs)
    ]


def calibrate_summary(
    result: inverse.CalibrationResult, prior_bounds: dict, hdi_prob: float = CALIBRATE_HDI_PROB
) -> dict:
    """A JSON-ready record of a calibration of simulator inputs (``bayesresnet calibrate``).

    Args:
        result: from :func:`bayesresnet.inverse.calibrate`.
        prior_bounds: ``{input: (lower, upper)}`` of each unknown's uniform prior.
        hdi_prob: the probability of the HDIs and of the predictive intervals.

    Returns:
        ``settings`` (how it was computed), ``prior`` (one row per unknown), ``summary``
        (the rows of :meth:`CalibrationResult.summary`, a ``name`` each), ``diagnostics``
        (``components`` and ``pooled`` rows, and ``worst``: the largest R-hat, the smallest
        bulk and tail ESS, the divergences of all chains, and the R-hat threshold of the
        run diagnostics), ``surrogate_share``,
        ``extrapolation`` (with ``flag``, and the ``threshold`` and ``epistemic_factor``
        behind it), ``effective_draws``, ``draws`` (the surrogate
        draws used), ``observations`` (the predictive check at each observation) and
        ``timings``.
    """
    summary = result.summary(hdi_prob)
    table = result.diagnostics()
    pooled = table[table["component"] == "pooled"]
    shape = result.theta().shape
    return {
        "settings": {
            **result.attrs,
            "unknown": list(result.unknown_names),
            "num_draws_total": int(shape[0] * shape[1]),
            "hdi_prob": hdi_prob,
        },
        "prior": [
            {"name": name, "dist": "uniform", "lower": float(lo), "upper": float(hi)}
            for name, (lo, hi) in prior_bounds.items()
        ],
        "summary": _records(summary.reset_index(names="name")),
        "diagnostics": {
            "components": _records(table[table["component"] != "pooled"]),
            "pooled": _records(pooled.drop(columns="component")),
            "worst": {
                "r_hat": float(pooled["r_hat"].max()),
                "ess_bulk": float(pooled["ess_bulk"].min()),
                "ess_tail": float(pooled["ess_tail"].min()),
                "divergences": int(pooled["divergences"].max()),
                "r_hat_threshold": diagnostics.RHAT_MAX,
            },
        },
        "surrogate_share": {k: float(v) for k, v in result.surrogate_share().items()},
        "extrapolation": {
            **result.extrapolation,
            "threshold": inverse.EXTRAPOLATION_MASS,
            "epistemic_factor": inverse.EPISTEMIC_FACTOR,
        },
        "effective_draws": result.effective_draws,
        "draws": result.draws.tolist(),
        "observations": _observation_check(result, hdi_prob),
        "timings": dict(result.timings),
    }


def calibrate_figures(
    result: inverse.CalibrationResult, prior_bounds: dict, hdi_prob: float = CALIBRATE_HDI_PROB
) -> dict[str, tuple[str, str]]:
    """The figures of ``bayesresnet calibrate``: ``{title: (data URI, caption)}``."""
    theta = result.theta()
    draws = {name: theta[..., j] for j, name in enumerate(result.unknown_names)}
    figures = {
        "Posterior of the calibrated inputs": (
            _uri(plots.plot_inverse_marginals(draws, prior_bounds, hdi_prob=hdi_prob)),
            f"Posterior density of each input over all chains, its mean and {hdi_prob:.0%} "
            "highest-density interval, over the range of its uniform prior (dashed).",
        )
    }
    if len(draws) > 1:
        figures["Pairs"] = (
            _uri(plots.plot_inverse_pairs(draws)),
            "Joint posterior density of each pair of calibrated inputs (contours of a "
            f"kernel density estimate over at most {plots.MAX_PAIR_DRAWS} draws).",
        )
    figures["Surrogate share"] = (
        _uri(plots.plot_surrogate_share(result.surrogate_share().to_dict())),
        "The share of each input's posterior variance due to the surrogate's uncertainty, "
        "Var_s E[θ | s] / Var θ over the surrogate draws s (0 for plugin, which ignores it).",
    )
    y_rep = np.asarray(result.idata.posterior_predictive["y"].values)
    y_obs = result.idata.observed_data["y"]
    figures["Predictive check at the observations"] = (
        _uri(
            plots.plot_observation_check(
                np.asarray(y_obs.values),
                y_rep.reshape((-1,) + y_rep.shape[2:]),
                levels=(0.5, hdi_prob),
                output_names=[str(v) for v in y_obs.coords["output"].values],
            )
        ),
        f"Each observation minus its posterior predictive mean (black), against the 50% "
        f"(thick) and {hdi_prob:.0%} (thin) central predictive intervals (noise and "
        "discrepancy included), also relative to the mean.",
    )
    return figures


def data_notes(post: Posterior) -> dict:
    """The declared transforms and the data check's suggestions of the ``data`` metrics:
    ``{"transforms": {column: "log"}, "notes": [...]}``, each key only when non-empty."""
    transforms = post.transforms
    notes = suggest_transforms(
        post.x_train, post.y_train, post.input_names, post.output_names, transforms
    )
    return {
        **({"transforms": transforms} if transforms else {}),
        **({"notes": notes} if notes else {}),
    }


def relevance_outputs(
    post: Posterior, hdi_prob: float = RELEVANCE_HDI_PROB
) -> tuple[dict, tuple[str, str]]:
    """The report's input relevance from one :meth:`Posterior.relevance` table: a
    JSON-ready record (``hdi_prob`` and one row per input: ``input``, then mean, sd and HDI
    of each measure) and the bars with their bands (:func:`plots.plot_relevance`) and
    their caption."""
    table = post.relevance(hdi_prob)
    summary = {"hdi_prob": hdi_prob, "table": table.reset_index().to_dict(orient="records")}
    figure = (
        _uri(plots.plot_relevance(table, hdi_prob=hdi_prob)),
        f"Posterior mean of each input's learned prior scale λ_j (top) and of the norm of "
        f"its first-layer weights (bottom), with {hdi_prob:.0%} highest-density bands over "
        f"{post.num_samples} posterior draws; inert inputs get small values.",
    )
    return summary, figure


def _describe_run(post: Posterior, dataset, name: str, data_description: str) -> dict:
    """The ``run``, ``data``, ``model`` and ``inference`` entries of the metrics."""
    return {
        "run": {"name": name, "version": __version__, "seed": post.seed},
        "data": {
            "description": data_description or (dataset.name if dataset else "training data"),
            "num_train": int(len(post.x_train)),
            "num_test": int(dataset.num_test) if dataset is not None else 0,
            "input_names": list(post.input_names),
            "output_names": list(post.output_names),
            **data_notes(post),
        },
        "model": {
            "description": describe_model(post),
            "num_params": num_params(post.spec),
            "spec": {
                **{k: v for k, v in dataclasses.asdict(post.spec).items() if k != "basis"},
                "basis": repr(post.spec.basis),
            },
            "prior": ", ".join(f"{k}={v}" for k, v in dataclasses.asdict(post.prior).items()),
        },
        "inference": {
            "method": post.method,
            "description": describe_method(post),
            "settings": post.settings,
            "timings": dict(post.timings),
        },
    }


def _predictive_checks(post: Posterior, train_pred: Prediction, seed: int):
    """LOO, WAIC and PPC entries of the metrics, and the LOO-PIT values they summarize."""
    idata = diagnostics.to_inference_data(post, seed=seed, train_prediction=train_pred)
    loo = diagnostics.loo(idata)
    waic = diagnostics.waic(idata)
    pit_loo = diagnostics.loo_pit(idata)
    ppc = diagnostics.ppc_statistics(idata)
    checks = {"loo": loo, "waic": waic, "loo_pit_ks_pvalue": _min_ks(pit_loo), "ppc": ppc}
    return checks, pit_loo


def _calibration(post: Posterior, dataset, train_pred: Prediction, prediction) -> dict:
    """Held-out (when there is a test split) and training calibration summaries.

    The held-out NLL is the mixture of the model's own likelihood over the draws; the
    generalization gap compares the posterior mean of the noise-free f on both splits.
    """
    calib = {}
    df = post.prior.likelihood_df
    if prediction is not None:
        calib["test"] = calibration.summarize(
            prediction.y,
            dataset.y_test,
            loc_draws=prediction.f,
            scale_draws=post.noise_scale(),
            df=df,
            train=(train_pred.f, post.y_train),
            log_outputs=post.scaler.y_log,
        )
    calib["train"] = calibration.summarize(
        train_pred.y,
        post.y_train,
        loc_draws=train_pred.f,
        scale_draws=post.noise_scale(),
        df=df,
        log_outputs=post.scaler.y_log,
    )
    return calib


def _held_out_figures(post: Posterior, dataset, prediction: Prediction, name: str) -> dict:
    """Parity plot, calibration curve and PIT histogram on the held-out data."""
    figures = {}
    curve = calibration.calibration_curve(prediction.y, dataset.y_test)
    figures["Parity plot, held-out data"] = (
        _uri(
            plots.plot_parity(
                dataset.y_test,
                prediction,
                level=calibration.INTERVAL_LEVEL,
                output_names=post.output_names,
            )
        ),
        "Predictive mean against the held-out truth with 90% predictive intervals; "
        "points on the diagonal are predicted exactly.",
    )
    figures["Calibration curve"] = (
        _uri(plots.plot_calibration_curve({name: (curve.levels, curve.observed)})),
        "Observed coverage of central predictive intervals against their nominal "
        "level on held-out data; the diagonal is perfect calibration, below it the "
        "intervals are too narrow.",
    )
    figures["PIT histogram, held-out data"] = (
        _uri(plots.plot_pit_histogram(calibration.pit(prediction.y, dataset.y_test))),
        "Probability integral transform of held-out observations; uniform when the "
        "predictive distributions are calibrated (U shape: too narrow, hump: too wide).",
    )
    return figures


def _fit_figures(post: Posterior, dataset, train_pred, pit_loo, *, truth, levels) -> dict:
    """The fit itself: predictive bands (1-D inputs), W(t), stiffness, PPC and LOO-PIT."""
    figures = {}
    if post.spec.in_features == 1:
        held_out = (
            f", held-out data (at most {plots.MAX_TEST_POINTS}) as crosses beneath them"
            if dataset is not None and dataset.num_test > 0
            else ""
        )
        figures["Posterior predictive"] = (
            _uri(plots.plot_predictive_1d(post, dataset=dataset, truth=truth, levels=levels)),
            "Predictive mean with central bands of the noise-free function (dark) and of "
            f"new noisy observations (light), training data as points{held_out}.",
        )
    figures["Posterior of W(t) over depth"] = (
        _uri(plots.plot_weight_path(post)),
        "Median and 90% band of the hidden-weight matrix over depth t (its Frobenius norm "
        "per unit, and a few entries): how the depth basis shapes the network.",
    )
    if post.spec.residual:
        figures["Stiffness over depth"] = (
            _uri(ode_plots.plot_stiffness(stiffness.posterior_stiffness(post, max_draws=100))),
            "Stiffness ratio max|Re μ|/min|Re μ| and stability indicator max|R(Δt μ)| "
            "(R(z) = 1 + z for Euler steps, 1 + z + z²/2 for Heun) of the eigenvalues μ of "
            "each layer's Jacobian diag(σ′)W(t_l) at the training inputs (median over "
            "inputs; posterior median and 5–95% band over draws).",
        )
    figures["Posterior predictive check"] = (
        _uri(plots.plot_ppc(post.y_train, train_pred.y[: post.num_samples])),
        "Density of the observed outputs against replicated data sets from the "
        "posterior predictive.",
    )
    figures["LOO-PIT"] = (
        _uri(plots.plot_pit_histogram(pit_loo)),
        "Leave-one-out PIT of the training data (PSIS weights): uniform for a calibrated model.",
    )
    return figures


def _sampler_figures(post: Posterior, conv: diagnostics.DiagnosticsResult) -> dict:
    """Trace and rank plots (of the draws the convergence check summarized), energy, loss."""
    figures = {}
    if METHODS[post.method].chains:
        # The two worst function-space quantities and the two worst parameters.
        worst = [r["name"] for r in conv.table if r["kind"] == "function"][:2]
        worst += [r["name"] for r in conv.table if r["kind"] == "parameter"][:2]
        figures["Trace and rank plots, worst-converged quantities"] = (
            _uri(plots.plot_trace_rank({n: conv.draws[n] for n in worst})),
            "Density (left) and trace (middle) per chain, and rank histograms per chain "
            "(right; flat when chains agree) of the quantities with the largest R-hat.",
        )
    if "energy" in post.sample_stats:  # Hamiltonian energy: NUTS
        figures["Energy"] = (
            _uri(plots.plot_energy(post.sample_stats["energy"])),
            "Marginal energy against energy transitions; similar widths (E-BFMI near 1) "
            "mean the momentum resampling explores the posterior well.",
        )
    history = post.extra.get("loss_history")
    if history is not None and np.size(history) > 1:
        figures["Loss"] = (
            _uri(
                plots.plot_loss(
                    np.asarray(history),
                    label=METHODS[post.method].loss,
                    step_every=post.settings.get("history_every", 1),
                )
            ),
            plots.loss_caption(history, METHODS[post.method].loss),
        )
    return figures


def _min_ks(pit_values) -> float:
    bins = calibration.chi2_bins(len(pit_values))
    result = calibration.pit_uniformity(pit_values, num_bins=bins)
    return float(np.min(result.ks_pvalue))
