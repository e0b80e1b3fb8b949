"""The ArviZ boundary: every ArviZ call of the package lives in this module.

``to_inference_data`` turns a :class:`~bayesresnet.posterior.Posterior` into an
``arviz.InferenceData`` with named dimensions; the functions below compute convergence
diagnostics (on parameters and on function-space quantities), LOO, WAIC and model
comparison from it, and draw ArviZ's sampler and predictive-check plots (trace, rank,
energy, PPC) on axes that :mod:`bayesresnet.plots` lays out.
"""

from __future__ import annotations

import dataclasses
import warnings
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field

import numpy as np
from scipy import stats

from bayesresnet import sites
from bayesresnet.bases import weights
from bayesresnet.infer.base import PARETO_K_OK, Check, Estimators
from bayesresnet.infer.nuts import EBFMI_MIN, TREE_DEPTH_SATURATION_MAX, tree_depth_saturation
from bayesresnet.infer.registry import METHODS

with warnings.catch_warnings():
    # ArviZ 0.x announces its 1.x refactor on import, once a day; the move to 1.x is
    # planned for this module alone, so the notice is silenced here.
    warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing", category=FutureWarning)
    import arviz as az

__all__ = [
    "to_inference_data",
    "draws_to_inference_data",
    "groups_to_inference_data",
    "hdi",
    "coords_of",
    "Check",
    "DiagnosticsResult",
    "convergence",
    "CALIBRATION_FAIL_P",
    "CALIBRATION_WARN_P",
    "LOO_MIN_DRAWS",
    "pit_check",
    "coverage_check",
    "predictive_checks",
    "with_checks",
    "tree_depth_saturation",
    "EBFMI_MIN",
    "TREE_DEPTH_SATURATION_MAX",
    "e_bfmi",
    "probe_inputs",
    "function_space_draws",
    "parameter_draws",
    "summarize_draws",
    "within_chain_draws",
    "frozen_chains",
    "nested_rhat",
    "pareto_khat",
    "loo",
    "waic",
    "loo_pit",
    "ppc_statistics",
    "compare",
    "predictive_data",
    "plot_trace",
    "plot_rank",
    "plot_energy",
    "plot_ppc",
    "plot_marginals",
    "plot_pair",
]


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
    post,
    *,
    log_likelihood: bool = True,
    posterior_predictive: bool = True,
    seed: int = 0,
    train_prediction=None,
):
    """An ``arviz.InferenceData`` of a posterior.

    Groups: ``posterior`` (every latent site, dims named after the network: ``basis``,
    ``hidden``, ``input``, ``output``), ``sample_stats`` (in ArviZ's names:
    ``diverging``, ``tree_depth``, ``step_size``, ``acceptance_rate``, ``energy``,
    ``n_steps``, ``lp`` for NUTS), ``log_likelihood`` (``y`` per observation and
    output, the shape of the observed ``y``, as ``az.loo_pit`` and ``az.plot_loo_pit``
    need; :func:`loo`, :func:`waic` and :func:`compare` sum it over outputs, so that they
    leave out whole rows),
    ``posterior_predictive`` (noisy ``y`` at the training inputs), ``observed_data``
    and ``constant_data`` (the training inputs ``x``).

    Args:
        post: the posterior.
        log_likelihood: include the pointwise log-likelihood.
        posterior_predictive: include posterior predictive draws at the training inputs.
        seed: seed of the observation noise of the predictive draws.
        train_prediction: a ``post.predict(post.x_train, return_draws=True)`` already
            at hand, reused instead of predicting again.
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
        pred = train_prediction
        if pred is None:
            pred = post.predict(post.x_train, seed=seed, return_draws=True, levels=())
        shape = (post.num_chains, post.num_draws) + pred.y.shape[1:]
        # One noise draw per parameter draw (the first replicate), aligned with the chains.
        y_rep = pred.y[: post.num_samples].reshape(shape)
        groups["posterior_predictive"] = {sites.OBS: y_rep}
    idata = az.from_dict(**groups, coords=coords, dims=dims)
    if log_likelihood:
        ll = post.log_likelihood(per_output=True)  # [chains, draws, N, O]
        dataset = az.dict_to_dataset(
            {sites.OBS: ll},
            coords={"obs": coords["obs"], "output": coords["output"]},
            dims={sites.OBS: ["obs", "output"]},
        )
        idata.add_groups(log_likelihood=dataset)
    return idata


def draws_to_inference_data(posterior, *, sample_stats=None, coords=None, dims=None, attrs=None):
    """An ``arviz.InferenceData`` of derived quantities given as one chain of draws.

    Args:
        posterior: ``{name: [draw, ...]}`` draws of each quantity (e.g. Sobol indices).
        sample_stats: ``{name: [draw, ...]}`` per-draw statistics (e.g. Monte-Carlo errors).
        coords, dims: ArviZ coordinates and dimension names of the trailing axes.
        attrs: attributes of the ``posterior`` group.

    Returns:
        An InferenceData with one chain (``chain = 0``) and the draws along ``draw``.
    """

    def one_chain(group):
        return {k: np.asarray(v)[None] for k, v in group.items()}

    groups = {"posterior": one_chain(posterior)}
    if sample_stats:
        groups["sample_stats"] = one_chain(sample_stats)
    idata = az.from_dict(**groups, coords=coords, dims=dims)
    idata.posterior.attrs.update(attrs or {})
    return idata


def groups_to_inference_data(groups, *, coords=None, dims=None, log_likelihood=None, attrs=None):
    """An ``arviz.InferenceData`` from arrays by group (``az.from_dict``).

    Vectorized samplers may run more chains than draws per chain, so ArviZ's warning
    about that shape is silenced here.

    Args:
        groups: ``{group: {name: array}}``; sampled groups ``[chain, draw, ...]``,
            ``observed_data`` and ``constant_data`` without those axes.
        coords, dims: ArviZ coordinates and dimension names of the trailing axes.
        log_likelihood: ``({name: [chain, draw, ...]}, dims)``, added as its own group (its
            names may repeat the observed data's with other dimensions).
        attrs: attributes of every group.
    """
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="More chains", category=UserWarning)
        idata = az.from_dict(**groups, coords=coords, dims=dims)
        if log_likelihood is not None:
            values, ll_dims = log_likelihood
            dataset = az.dict_to_dataset(values, coords=coords, dims=ll_dims)
            idata.add_groups(log_likelihood=dataset)
    for group in idata.groups():
        idata[group].attrs.update(attrs or {})
    return idata


def hdi(draws, hdi_prob: float) -> np.ndarray:
    """Highest-density intervals ``[..., 2]`` of ``draws`` ``[draw, ...]`` (``az.hdi``).

    The draws are read as one chain; an interval over a single draw is that value twice.
    """
    draws = np.asarray(draws, dtype=np.float64)
    columns = draws.reshape(1, len(draws), -1)  # (chain, draw, quantity), as az.hdi reads it
    return np.asarray(az.hdi(columns, hdi_prob=hdi_prob)).reshape(draws.shape[1:] + (2,))


# ------------------------------------------------------------------------- thresholds
# The methods' own thresholds (E-BFMI, tree depth, energy error, Pareto k̂) sit with
# their engines, whose checks use them.
RHAT_MAX = 1.01
ESS_PER_CHAIN_MIN = 100
#: Predictive calibration (PIT uniformity, interval coverage) fails when the data are
#: this improbable under a calibrated model (a p-value below it), and warns below
#: ``CALIBRATION_WARN_P``; both are p-values of the test's sampling error at the number
#: of points checked.
CALIBRATION_FAIL_P = 1e-3
CALIBRATION_WARN_P = 1e-2
#: Fewer draws than this make PSIS-LOO k̂ (and the LOO-PIT it weights) meaningless.
LOO_MIN_DRAWS = 100


@dataclass(frozen=True)
class DiagnosticsResult:
    """Convergence or fit diagnostics of a posterior, with a verdict.

    Attributes:
        method: the inference method.
        checks: every check, in the order they were made.
        table: one row per summarized quantity (name, kind, r_hat, ess_bulk, ess_tail,
            mcse_mean, mean, sd), worst first.
        verdict: ``"pass"`` (every check passed or is a note), ``"warn"`` or ``"fail"``.
        draws: the ``[chains, draws]`` quantities the table summarizes, by name
            (:func:`function_space_draws` at the probe inputs, then
            :func:`parameter_draws`), for plots of the same draws; empty for methods
            without chains. Not part of :meth:`to_dict`.
    """

    method: str
    checks: tuple[Check, ...]
    table: tuple[dict, ...]
    verdict: str
    draws: Mapping[str, np.ndarray] = field(default_factory=dict, repr=False, compare=False)

    def failed(self) -> list[Check]:
        return [c for c in self.checks if c.status in ("fail", "warn")]

    def to_dict(self) -> dict:
        return {
            "method": self.method,
            "verdict": self.verdict,
            "checks": [asdict(c) for c in self.checks],
            "table": list(self.table),
        }


def _verdict(checks) -> str:
    statuses = {c.status for c in checks}
    if "fail" in statuses:
        return "fail"
    return "warn" if "warn" in statuses else "pass"


def _p_status(p: float) -> str:
    if not p >= CALIBRATION_FAIL_P:  # nan too: a calibration that cannot be computed
        return "fail"
    return "warn" if p < CALIBRATION_WARN_P else "pass"


_P_THRESHOLD = f"p ≥ {CALIBRATION_WARN_P} (warn below, fail below {CALIBRATION_FAIL_P})"
_MISCALIBRATED = (
    "the predictive distributions do not match the {split} data: intervals and "
    "probabilities from this fit are not to be trusted; a mis-set noise scale, an "
    "under-trained or too-narrow approximation (try NUTS, an ensemble, or more steps) "
    "or a test set unlike the training data"
)


def pit_check(p_value: float, split: str) -> Check:
    """PIT uniformity: the Kolmogorov–Smirnov p-value (Bonferroni over outputs) of the
    PIT values of the ``split`` data against U(0, 1)."""
    status = _p_status(p_value)
    return Check(
        f"PIT uniformity, {split}",
        status,
        f"KS p = {p_value:.2g}",
        _P_THRESHOLD,
        "" if status == "pass" else _MISCALIBRATED.format(split=split),
    )


def coverage_check(coverage: Mapping[str, Mapping], num_points: int, split: str) -> Check:
    """Coverage of the central predictive intervals against its binomial sampling error.

    Each level ``q`` and output gives ``z = (ĉ − q) / √(q(1 − q)/n)`` for the observed
    coverage ``ĉ`` of ``n`` points; the smallest two-sided normal p-value times the number
    of (level, output) pairs (Bonferroni) is judged against the thresholds.

    Args:
        coverage: ``{"0.9": {"per_output": [O]}, ...}`` (:func:`bayesresnet.calibration.summarize`).
        num_points: the points the coverage was counted on.
        split: ``"held-out"`` or ``"training"``, for the messages.
    """
    worst = (np.inf, "")
    tests = 0
    for key, entry in coverage.items():
        q = float(key)
        for o, c in enumerate(entry["per_output"]):
            tests += 1
            c = np.nan if c is None else float(c)  # None: not computable (non-finite draws)
            z = abs(c - q) / np.sqrt(q * (1.0 - q) / num_points)
            p = 2.0 * float(stats.norm.sf(z)) if np.isfinite(z) else 0.0
            if p < worst[0]:
                worst = (p, f"{100 * float(c):.0f}% in the {100 * q:.0f}% interval (output {o})")
    p_value = min(1.0, tests * worst[0])
    status = _p_status(p_value)
    return Check(
        f"interval coverage, {split}",
        status,
        f"worst {worst[1]}; p = {p_value:.2g}",
        f"binomial at {num_points} points, {_P_THRESHOLD}",
        "" if status == "pass" else _MISCALIBRATED.format(split=split),
    )


def predictive_checks(loo_result: Mapping, *, num_draws: int, test=None, loo_pit_p=None):
    """Checks of what every method can be judged on: its predictions.

    PSIS-LOO k̂ (at least :data:`LOO_MIN_DRAWS` draws): a warning when some k̂ exceed
    0.7, the LOO estimates then being unreliable. With a held-out split (``test``, a
    :func:`bayesresnet.calibration.summarize` dict) its PIT uniformity and interval
    coverage (:func:`pit_check`, :func:`coverage_check`); without one the LOO-PIT
    uniformity (``loo_pit_p``), when the LOO weights are reliable.
    """
    bad = int(loo_result["num_bad_k"])
    enough = num_draws >= LOO_MIN_DRAWS
    found = [
        Check(
            "PSIS-LOO k̂",
            ("pass" if not bad else "warn") if enough else "n/a",
            f"{bad} of {len(loo_result['pareto_k'])} above {PARETO_K_OK}" if enough else "—",
            f"none above {PARETO_K_OK}",
            (
                ""
                if not bad
                else "LOO estimates (elpd_loo, LOO-PIT) are unreliable here: judge and compare "
                "by held-out scores"
            )
            if enough
            else f"{num_draws} draws: too few for PSIS (≥ {LOO_MIN_DRAWS})",
        )
    ]
    if test is not None:
        p = test["pit"]["ks_pvalue"]["overall"]
        found.append(pit_check(np.nan if p is None else float(p), "held-out"))
        found.append(coverage_check(test["coverage"], int(test["num_points"]), "held-out"))
    elif loo_pit_p is not None and enough and not bad:
        found.append(pit_check(float(loo_pit_p), "LOO"))
    return found


def with_checks(result: DiagnosticsResult, more) -> DiagnosticsResult:
    """``result`` with the checks ``more`` appended and the verdict formed again."""
    checks = tuple(result.checks) + tuple(more)
    return dataclasses.replace(result, checks=checks, verdict=_verdict(checks))


def probe_inputs(post, num_probes: int = 20, seed: int = 0) -> np.ndarray:
    """Probe inputs for function-space diagnostics: training inputs chosen at random."""
    rng = np.random.default_rng(seed)
    n = len(post.x_train)
    return post.x_train[rng.choice(n, size=min(num_probes, n), replace=False)]


def function_space_draws(post, x_probe, num_t: int = 11) -> dict[str, np.ndarray]:
    """Quantities of function space, each ``[chains, draws]``.

    ``f[o](probe p)``: the noise-free output at each probe input; ``|W(t)|`` at ``num_t``
    depths: the Frobenius norm of the hidden weight matrix divided by ``width`` (per
    layer for ``PerLayer``). Both are invariant to permutations of hidden units, unlike
    single weights, so their R-hat measures mixing rather than label switching.
    """
    c, d = post.num_chains, post.num_draws
    out = {}
    f = post.predict_f(x_probe)  # [S, P, O]
    for p in range(f.shape[1]):
        for o, name in enumerate(post.output_names):
            out[f"f[{name}](probe {p})"] = f[:, p, o].reshape(c, d)
    spec = post.spec
    t, phi = spec.basis.depth_grid(spec.num_layers, num_t)  # [T], [T, K]
    coef = np.asarray(post.flat_samples()[sites.HIDDEN_WEIGHT], dtype=np.float64)  # [S, K, w, w]
    w = weights(phi, coef, axis=1)  # [S, T, w, w]
    norms = np.sqrt((w**2).sum(axis=(2, 3))) / spec.width  # [S, T]
    for i, ti in enumerate(t):
        out[f"|W(t={ti:.2f})|"] = norms[:, i].reshape(c, d)
    return out


def parameter_draws(post) -> dict[str, np.ndarray]:
    """Every scalar parameter as ``[chains, draws]``, named ``site[i,j,…]``."""
    out = {}
    for name, v in post.samples.items():
        flat = v.reshape(v.shape[:2] + (-1,))
        for idx in range(flat.shape[-1]):
            label = ",".join(map(str, np.unravel_index(idx, v.shape[2:]))) if v.ndim > 2 else ""
            out[f"{name}[{label}]" if label else name] = flat[..., idx]
    return out


def summarize_draws(draws: dict[str, np.ndarray], kind: str) -> list[dict]:
    """R-hat, bulk/tail ESS and MCSE of scalar quantities ``[chains, draws]`` (ArviZ)."""
    names = list(draws)
    if not names:
        return []
    stacked = np.stack([draws[n] for n in names], axis=-1)  # [C, D, Q]
    ds = az.convert_to_dataset({"q": stacked})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant quantities give nan
        rhat = az.rhat(ds)["q"].values
        ess_bulk = az.ess(ds, method="bulk")["q"].values
        ess_tail = az.ess(ds, method="tail")["q"].values
        mcse = az.mcse(ds, method="mean")["q"].values
    rows = []
    for i, n in enumerate(names):
        rows.append(
            {
                "name": n,
                "kind": kind,
                "r_hat": float(rhat[i]),
                "ess_bulk": float(ess_bulk[i]),
                "ess_tail": float(ess_tail[i]),
                "mcse_mean": float(mcse[i]),
                "mean": float(stacked[..., i].mean()),
                "sd": float(stacked[..., i].std()),
            }
        )
    return rows


def _worst(rows, key, largest=True):
    vals = [r[key] for r in rows if np.isfinite(r[key])]
    if not vals:
        return float("nan")
    return max(vals) if largest else min(vals)


def convergence(post, *, num_probes: int = 20, num_t: int = 11, seed: int = 0):
    """Diagnostics of a posterior with a verdict and stated thresholds.

    NUTS: rank-normalized split R-hat (≤ 1.01), bulk and tail ESS (≥ 100 per chain) and
    MCSE on function-space quantities (predictions at probe inputs, ``|W(t)|`` over
    depth) and on the parameters; divergences (none), tree-depth saturation (< 5% of
    draws at the maximum), E-BFMI (≥ 0.3 per chain). Weight-level R-hat is a warning
    only: hidden units can swap places between chains (symmetric modes) while the
    function they compute agrees.

    MCLMC (``Engine.ensemble_started``: each chain starts at its own ensemble member and
    may stay in that mode): R-hat (≤ 1.01) and bulk/tail ESS (≥ 100 per chain) of each
    chain's draws with its own mean and sd removed (:func:`within_chain_draws`), so that
    they judge mixing within each chain's mode, and a chain that did not move fails; the
    spread between the chains is a note (:func:`nested_rhat`, each chain a superchain of
    its two halves); then the non-finite steps and the energy error.

    SVI: ELBO convergence and the Pareto k̂ of the importance weights log p − log q
    (≤ 0.7; Yao et al. 2018). Ensemble: members that diverged or did not converge, and
    the spread of their final losses. The chain checks are made here for every method
    whose draws are chains; each method's own checks sit with its engine
    (``METHODS[post.method].checks``). The checks of the predictions every method is
    judged on (:func:`predictive_checks`) need LOO and the held-out calibration, so
    :func:`bayesresnet.workflow.analyze` adds them (:func:`with_checks`).
    """
    engine = METHODS[post.method]
    checks, rows, draws = (
        _chain_checks(post, num_probes, num_t, seed, engine.ensemble_started)
        if engine.chains
        else ([], [], {})
    )
    checks += engine.checks(post, Estimators(e_bfmi=e_bfmi, pareto_khat=pareto_khat))
    return DiagnosticsResult(post.method, tuple(checks), tuple(rows), _verdict(checks), draws)


def _chain_checks(post, num_probes, num_t, seed, ensemble_started=False):
    """R-hat and ESS, function space first: the checks every MCMC method gets.

    Chains that share their start (NUTS) must agree with each other: R-hat and ESS
    across chains. Chains started at different ensemble members (``ensemble_started``,
    MCLMC) may each sit in its own mode: each chain must have mixed within its mode
    (:func:`within_chain_draws`: R-hat of its two halves, ESS), and the spread between
    the chains is reported as a note (:func:`nested_rhat`). Returns ``(checks, rows,
    draws)``: the draws summarized, computed once, travel on in
    :attr:`DiagnosticsResult.draws`.
    """
    f_draws = function_space_draws(post, probe_inputs(post, num_probes, seed), num_t)
    p_draws = parameter_draws(post)
    fs = summarize_draws(f_draws, "function")
    ps = summarize_draws(p_draws, "parameter")

    def worst_first(rows):
        return sorted(rows, key=lambda r: -r["r_hat"] if np.isfinite(r["r_hat"]) else 0.0)

    # Function-space quantities first: they decide the verdict.
    rows = worst_first(fs) + worst_first(ps)
    if ensemble_started:
        checks = _within_mode_checks(f_draws, post.num_chains)
    else:
        checks = _between_chain_checks(fs, post.num_chains)
    mixed = checks[0].status == "pass"  # the function-space R-hat
    rhat_p = _worst(ps, "r_hat")
    # Hidden units can be permuted and (for odd activations) sign-flipped without changing
    # the function, so chains in symmetric modes disagree on single weights however well
    # they mix. With the predictions converged that is a note, not a warning.
    symmetric = "note" if mixed else "warn"
    checks.append(
        Check(
            "R-hat, parameters",
            "pass" if rhat_p <= RHAT_MAX else symmetric,
            f"max {rhat_p:.3f}",
            f"≤ {RHAT_MAX} (a note when the predictions converged)",
            ""
            if rhat_p <= RHAT_MAX
            else "individual weights disagree between chains; with converged function-space "
            "quantities this is usually hidden-unit symmetry (label switching), not a "
            "failure",
        )
    )
    return checks, rows, {**f_draws, **p_draws}


def _ess_checks(rows, num_chains: int, where: str, advice: str) -> list[Check]:
    """Bulk and tail ESS of the function-space ``rows``: at least 100 per chain."""
    ess_min = ESS_PER_CHAIN_MIN * num_chains
    checks = []
    for key, label in (("ess_bulk", "bulk ESS"), ("ess_tail", "tail ESS")):
        worst = _worst(rows, key, largest=False)
        ok = worst >= ess_min
        checks.append(
            Check(
                f"{label}{where}, function space",
                "pass" if ok else "fail",
                f"min {worst:.0f}",
                f"≥ {ESS_PER_CHAIN_MIN} per chain ({ess_min})",
                "" if ok else advice,
            )
        )
    return checks


def _between_chain_checks(fs, num_chains: int) -> list[Check]:
    """Chains that share their start must agree: R-hat and ESS across chains."""
    rhat_f = _worst(fs, "r_hat")
    checks = [
        Check(
            "R-hat, function space",
            "pass" if rhat_f <= RHAT_MAX else "fail",
            f"max {rhat_f:.3f}",
            f"≤ {RHAT_MAX}",
            ""
            if rhat_f <= RHAT_MAX
            else "chains disagree on the predictions: run longer warm-up (num_warmup), more "
            "chains, or a smaller network/basis; check divergences first",
        )
    ]
    return checks + _ess_checks(
        fs,
        num_chains,
        "",
        "raise num_samples (or num_chains); a higher target_accept_prob or max_tree_depth "
        "helps if trees are saturated",
    )


def _within_mode_checks(f_draws, num_chains: int) -> list[Check]:
    """Chains started in different modes: each must have mixed within its own mode.

    R-hat and ESS of :func:`within_chain_draws` (each chain centred and scaled by its own
    mean and sd, so that only the agreement of its halves and its autocorrelation count)
    decide; the nested R-hat between chains (each chain a superchain of its two halves)
    is a note: a mixture of modes is what an ensemble-started sampler gives, and the
    held-out checks judge that mixture.
    """
    within = summarize_draws(within_chain_draws(f_draws), "function")
    frozen = frozen_chains(f_draws)
    rhat_w = float("inf") if frozen else _worst(within, "r_hat")
    advice = (
        "a chain has not mixed within its own mode: raise num_samples or thinning (longer "
        "chains), or num_warmup so that the step size and L are tuned; check the energy "
        "error"
    )
    checks = [
        Check(
            "R-hat within chains, function space",
            "pass" if rhat_w <= RHAT_MAX else "fail",
            f"{frozen} chain(s) did not move" if frozen else f"max {rhat_w:.3f}",
            f"≤ {RHAT_MAX} (each chain's halves, its own mean and sd removed)",
            "" if rhat_w <= RHAT_MAX else advice,
        )
    ]
    checks += _ess_checks(within, num_chains, " within chains", advice)
    nested = [
        nested_rhat(halves, np.repeat(np.arange(num_chains), 2))
        for halves in (_halves(v) for v in f_draws.values())
    ]
    worst = max((v for v in nested if np.isfinite(v)), default=float("nan"))
    spread = worst > RHAT_MAX
    checks.append(
        Check(
            "nested R-hat between chains (modes), function space",
            "note",
            f"max {worst:.3f}",
            f"information: above {RHAT_MAX} the chains sit in different modes",
            "the chains started at different ensemble members and stayed in different "
            "modes; the draws are a mixture of these modes, judged by the held-out checks"
            if spread
            else "",
        )
    )
    return checks


def _halves(draws) -> np.ndarray:
    """``[chains, draws]`` as ``[2·chains, draws // 2]``: each chain's first and second half
    (a middle draw of an odd count dropped), chain by chain."""
    draws = np.asarray(draws, dtype=np.float64)
    c, n = draws.shape
    half = n // 2
    return np.stack([draws[:, :half], draws[:, n - half :]], axis=1).reshape(2 * c, half)


def within_chain_draws(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Each quantity ``[chains, draws]`` centred and scaled by each chain's own mean and sd.

    R-hat and ESS of these draws measure how well each chain mixed within the region it
    sits in (its two halves agree, its autocorrelation), not whether the chains agree
    with each other: for chains started in different modes. A chain constant in a
    quantity stays constant (zero); :func:`frozen_chains` counts such chains.
    """
    out = {}
    for name, v in draws.items():
        v = np.asarray(v, dtype=np.float64)
        sd = v.std(axis=1, keepdims=True)
        out[name] = (v - v.mean(axis=1, keepdims=True)) / np.where(sd > 0, sd, 1.0)
    return out


def frozen_chains(draws: Mapping[str, np.ndarray]) -> int:
    """Chains constant in some quantity ``[chains, draws]`` that other chains vary in: they
    did not move (R-hat within chains cannot see them)."""
    frozen = np.zeros(0, bool)
    for v in draws.values():
        still = np.ptp(np.asarray(v, dtype=np.float64), axis=1) == 0
        if not np.all(still):
            frozen = still if frozen.size == 0 else frozen | still
    return int(np.sum(frozen))


def nested_rhat(draws, superchains) -> float:
    """Nested R-hat (Margossian et al. 2022) of one quantity ``[chains, draws]``.

    The chains are grouped into ``K`` superchains of ``M`` chains each (``superchains[c]``
    labels chain ``c``), each chain with ``N`` draws ``θ_nmk``. With chain means
    ``θ̄_.mk``, superchain means ``θ̄_..k`` and the grand mean ``θ̄_...``::

        B = 1/(K−1) Σ_k (θ̄_..k − θ̄_...)²                      between superchains
        B̃_k = 1/(M−1) Σ_m (θ̄_.mk − θ̄_..k)²   (0 when M = 1)   between chains within k
        W̃_k = 1/M Σ_m 1/(N−1) Σ_n (θ_nmk − θ̄_.mk)²            within chains
        W = 1/K Σ_k (B̃_k + W̃_k)
        nR̂ = √(1 + B / W)

    ``nR̂ ≈ 1`` when the superchains agree (relative to the spread within each);
    large when they sit in different regions. With ``M = 1`` the variance between a
    superchain's chains is zero and nR̂ compares chain means with the spread within them.

    Args:
        draws: ``[chains, draws]``, at least 2 draws per chain.
        superchains: ``[chains]`` labels, at least 2 distinct, each labelling the same
            number of chains.

    Returns:
        nR̂ (nan when ``W = 0``).

    References:
        Margossian, Hoffman, Sountsov, Riou-Durand, Vehtari, Gelman (2022), Nested R̂:
        assessing the convergence of Markov chain Monte Carlo when running many short
        chains. arXiv:2110.13017.
    """
    draws = np.asarray(draws, dtype=np.float64)
    labels = np.asarray(superchains)
    if draws.ndim != 2 or draws.shape[1] < 2:
        raise ValueError(
            f"`draws` must be [chains, draws] with at least 2 draws; got shape {draws.shape}."
        )
    if labels.shape != (draws.shape[0],):
        raise ValueError(
            f"`superchains` must give one label per chain ({draws.shape[0]}); got shape "
            f"{labels.shape}."
        )
    groups, counts = np.unique(labels, return_counts=True)
    if len(groups) < 2 or np.any(counts != counts[0]):
        raise ValueError(
            "`superchains` must have at least 2 labels, each on the same number of chains; "
            f"got counts {dict(zip(groups.tolist(), counts.tolist(), strict=True))}."
        )
    m = int(counts[0])
    by_super = np.stack([draws[labels == g] for g in groups])  # [K, M, N]
    chain_means = by_super.mean(axis=2)  # [K, M]
    super_means = chain_means.mean(axis=1)  # [K]
    between = super_means.var(ddof=1)
    between_chains = chain_means.var(axis=1, ddof=1) if m > 1 else np.zeros(len(groups))
    within_chains = by_super.var(axis=2, ddof=1).mean(axis=1)  # [K]
    w = float(np.mean(between_chains + within_chains))
    if w == 0:
        return float("nan")
    return float(np.sqrt(1.0 + between / w))


def e_bfmi(energy) -> np.ndarray:
    """E-BFMI per chain (``az.bfmi``): ``Σ_t (E_t − E_{t−1})² / Σ_t (E_t − Ē)²``; nan for a
    constant chain. The one E-BFMI of the package: the verdict and the energy figure.

    Args:
        energy: Hamiltonian energy ``[chains, draws]``.

    References:
        Betancourt (2016), Diagnosing suboptimal cotangent disintegrations in Hamiltonian
        Monte Carlo. arXiv:1604.00695.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # a constant chain: 0/0
        return np.atleast_1d(az.bfmi(np.asarray(energy, dtype=np.float64)))


def pareto_khat(log_weights) -> float:
    """Pareto k̂ of importance weights (PSIS; Vehtari et al. 2024)."""
    lw = np.asarray(log_weights, dtype=np.float64)
    lw = lw[np.isfinite(lw)]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        _, k = az.psislw(lw)
    return float(k)


# ------------------------------------------------------------ predictive checks
def _with_arviz_warnings(fn, *args, **kwargs):
    """Call an ArviZ function, returning its result and the texts of its warnings."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = fn(*args, **kwargs)
    return result, [str(w.message).strip() for w in caught]


def _by_row(idata):
    """``idata``'s posterior and log-likelihood summed over outputs: one value per row.

    A row of the training data is one observation, so LOO and WAIC leave out whole rows
    (all outputs at one input), not one output of a row.
    """
    ll = idata.log_likelihood[sites.OBS]
    if "output" in ll.dims:
        ll = ll.sum("output")
    return az.InferenceData(posterior=idata.posterior, log_likelihood=ll.to_dataset())


def loo(idata) -> dict:
    """PSIS-LOO (Vehtari, Gelman, Gabry 2017) with Pareto k̂ per observation.

    Returns ``elpd_loo``, its ``se``, ``p_loo``, the Pareto k̂ per observation
    (``pareto_k``), how many exceed 0.7 (``num_bad_k``) and ArviZ's warnings.
    """
    result, notes = _with_arviz_warnings(az.loo, _by_row(idata), pointwise=True)
    k = np.asarray(result.pareto_k)
    return {
        "elpd_loo": float(result.elpd_loo),
        "se": float(result.se),
        "p_loo": float(result.p_loo),
        "pareto_k": k.tolist(),
        "num_bad_k": int(np.sum(k > PARETO_K_OK)),
        "warnings": notes,
    }


def waic(idata) -> dict:
    """WAIC (Watanabe 2010) on the log scale."""
    result, notes = _with_arviz_warnings(az.waic, _by_row(idata))
    return {
        "elpd_waic": float(result.elpd_waic),
        "se": float(result.se),
        "p_waic": float(result.p_waic),
        "warnings": notes,
    }


def loo_pit(idata) -> np.ndarray:
    """LOO-PIT values ``[N, O]`` with PSIS weights (Gabry et al. 2019), by ``az.loo_pit``.

    ``PIT_i = Σ_s w_is 1[ỹ_s ≤ y_i]`` with the leave-one-out importance weights
    ``w_is ∝ 1/p(y_i | θ_s)`` smoothed by PSIS, per observation and output. A calibrated
    model gives uniform values.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PSIS's k̂ warnings: LOO reports k̂ itself
        pit = az.loo_pit(idata, y=sites.OBS)
    return np.asarray(pit).reshape(idata.observed_data[sites.OBS].shape)


STATISTICS = {
    "mean": np.mean,
    "sd": np.std,
    "min": np.min,
    "max": np.max,
}


def ppc_statistics(idata) -> list[dict]:
    """Posterior predictive test statistics per output.

    For each output and statistic ``T`` (mean, sd, min, max over observations): the
    observed ``T(y)``, the replicated distribution's mean, and the posterior predictive
    p-value ``P(T(ỹ) ≥ T(y))``; values near 0 or 1 flag misfit.
    """
    y_rep = idata.posterior_predictive[sites.OBS].values  # [C, D, N, O]
    y_obs = idata.observed_data[sites.OBS].values
    outputs = list(idata.observed_data[sites.OBS].coords["output"].values)
    y_rep = y_rep.reshape((-1,) + y_rep.shape[2:])  # [S, N, O]
    rows = []
    for o, name in enumerate(outputs):
        for stat, fn in STATISTICS.items():
            t_obs = float(fn(y_obs[:, o]))
            t_rep = fn(y_rep[:, :, o], axis=1)
            rows.append(
                {
                    "output": str(name),
                    "statistic": stat,
                    "observed": t_obs,
                    "replicated_mean": float(np.mean(t_rep)),
                    "p_value": float(np.mean(t_rep >= t_obs)),
                }
            )
    return rows


def compare(idatas: dict) -> list[dict]:
    """LOO model comparison (``az.compare``, stacking weights), best first."""
    if len(idatas) < 2:
        raise ValueError(f"`compare` needs at least two runs; got {len(idatas)}.")
    by_row = {name: _by_row(idata) for name, idata in idatas.items()}
    table, notes = _with_arviz_warnings(az.compare, by_row, ic="loo")
    rows = []
    for name, row in table.iterrows():
        rows.append(
            {
                "name": str(name),
                "rank": int(row["rank"]),
                "elpd_loo": float(row["elpd_loo"]),
                "p_loo": float(row["p_loo"]),
                "elpd_diff": float(row["elpd_diff"]),
                "se": float(row["se"]),
                "dse": float(row["dse"]),
                "weight": float(row["weight"]),
                "warning": bool(row["warning"]),
            }
        )
    return rows


# ------------------------------------------------------------ plots
# Thin wrappers around ArviZ's matplotlib plots: they draw on axes they are given (the
# figure and its layout belong to bayesresnet.plots) and return those axes.


@contextmanager
def _plotting():
    """Silence ArviZ 0.23's plotting notices that say nothing about the data."""
    with warnings.catch_warnings():
        # ArviZ 0.23 normalizes keyword aliases in a way matplotlib 3.11 deprecates.
        warnings.filterwarnings("ignore", message="Passing a dict or None as alias_mapping")
        # A constant quantity has no density: its panel stays empty, its trace is drawn.
        warnings.filterwarnings("ignore", message="Your data appears to have a single value")
        # The E-BFMI of a constant chain is 0/0 (drawn as nan, as e_bfmi returns it).
        warnings.simplefilter("ignore", RuntimeWarning)
        yield


def _draws_dataset(draws):
    """``{name: [chains, draws]}`` (or an InferenceData) as ArviZ's posterior dataset."""
    if isinstance(draws, Mapping):
        draws = {str(k): np.asarray(v, dtype=np.float64) for k, v in draws.items()}
    return az.convert_to_dataset(draws, group="posterior")


def plot_trace(draws, axes, *, legend: bool = False):
    """Density and trace of every chain (``az.plot_trace``), one row per quantity.

    Args:
        draws: ``{name: [chains, draws]}`` of scalar quantities (e.g. from
            :func:`function_space_draws` and :func:`parameter_draws`), or an InferenceData.
        axes: matplotlib axes ``[quantities, 2]``: densities left, traces right; chains
            are told apart by colour (``C0``, ``C1``, …, as in :func:`plot_rank`).
        legend: ArviZ's chain legend on the first trace.

    Returns:
        ``axes``.
    """
    with _plotting():
        return az.plot_trace(
            _draws_dataset(draws), axes=axes, compact=False, legend=legend, show=False
        )


def plot_rank(draws, axes):
    """Rank histograms per chain (``az.plot_rank``; Vehtari et al. 2021), one axis each.

    The draws of all chains are ranked together; each chain's ranks are binned and drawn
    as a density (one bar per bin, the chains stacked with a gap of ``2/(chains·draws)``)
    beside the dashed uniform level. Flat histograms mean the chains mix.

    Args:
        draws: ``{name: [chains, draws]}`` of scalar quantities, or an InferenceData.
        axes: one matplotlib axis per quantity.

    Returns:
        ``axes``.
    """
    with _plotting():
        return az.plot_rank(_draws_dataset(draws), ax=axes, show=False)


def plot_energy(energy, ax):
    """Marginal energy against energy transitions (``az.plot_energy``; Betancourt 2016).

    Density histograms of ``E − Ē`` and of ``ΔE = E_t − E_{t−1}``, with the E-BFMI of
    each chain (:func:`e_bfmi`, the same ``az.bfmi``) in the legend.

    Args:
        energy: Hamiltonian energy ``[chains, draws]``, or an InferenceData with
            ``sample_stats.energy``.
        ax: the matplotlib axis.

    Returns:
        ``ax``.
    """
    if not hasattr(energy, "sample_stats"):
        energy = az.from_dict(sample_stats={"energy": np.asarray(energy, dtype=np.float64)})
    with _plotting():
        return az.plot_energy(energy, kind="hist", ax=ax, show=False)


def plot_marginals(draws, axes, *, hdi_prob: float):
    """The marginal posterior density of each quantity (``az.plot_posterior``), one axis each.

    A kernel density estimate of the draws of all chains pooled, the mean, and the
    ``hdi_prob`` highest-density interval as a bar with its ends written beside it.

    Args:
        draws: ``{name: [chains, draws]}`` of scalar quantities.
        axes: one matplotlib axis per quantity.
        hdi_prob: the probability of the interval drawn.

    Returns:
        ``axes``.
    """
    with _plotting():
        return az.plot_posterior(
            _draws_dataset(draws),
            hdi_prob=hdi_prob,
            point_estimate="mean",
            ax=axes,
            textsize=8,
            show=False,
        )


def plot_pair(draws, axes):
    """Pairwise joint densities of the quantities (``az.plot_pair``, kernel density contours).

    Args:
        draws: ``{name: [chains, draws]}`` of two or more scalar quantities (``U``).
        axes: the matplotlib axes ``[U − 1, U − 1]`` of the lower triangle (one axis when
            ``U = 2``): row ``i`` pairs quantity ``i + 1`` (vertical) with quantity ``j``
            (horizontal) in column ``j ≤ i``; ArviZ hides the upper triangle.

    Returns:
        ``axes``.
    """
    with _plotting():
        return az.plot_pair(
            _draws_dataset(draws), kind="kde", marginals=False, ax=axes, textsize=8, show=False
        )


def predictive_data(y_obs, y_rep, output_names=None):
    """An InferenceData of observed data ``[N, O]`` and replicates ``[S, N, O]`` (one chain).

    The groups and dims :func:`to_inference_data` gives (``observed_data`` and
    ``posterior_predictive``, site ``y`` with dims ``obs`` and ``output``), for
    :func:`plot_ppc` on replicates that are at hand without a Posterior.
    """
    y_obs = np.asarray(y_obs, dtype=np.float64)
    y_rep = np.asarray(y_rep, dtype=np.float64)
    coords = {"obs": list(range(y_obs.shape[0]))}
    if output_names is not None:
        coords["output"] = list(output_names)
    return az.from_dict(
        posterior_predictive={sites.OBS: y_rep[None]},
        observed_data={sites.OBS: y_obs},
        coords=coords,
        dims={sites.OBS: ["obs", "output"]},
    )


def plot_ppc(idata, axes, *, num_draws: int | None = None, seed: int = 0):
    """Posterior predictive check (``az.plot_ppc``), one axis per output.

    Kernel density estimates of ``num_draws`` replicated data sets (chosen at random
    with ``seed``; all when ``None``), their mean (dashed) and the observed data.

    Args:
        idata: an InferenceData with ``posterior_predictive`` and ``observed_data`` of
            site ``y`` over dims ``obs`` (and ``output``), from :func:`to_inference_data`
            or :func:`predictive_data`.
        axes: one matplotlib axis per output.
        num_draws: replicated data sets drawn.
        seed: seed of the choice of replicates.

    Returns:
        ``axes``.
    """
    pp = idata.posterior_predictive
    total = pp.sizes["chain"] * pp.sizes["draw"]
    num = total if num_draws is None else min(num_draws, total)
    # ArviZ draws the replicates with NumPy's global generator: seed it, then restore it.
    state = np.random.get_state()  # noqa: NPY002 (ArviZ uses the legacy global generator)
    try:
        with _plotting():
            return az.plot_ppc(
                idata,
                var_names=[sites.OBS],
                flatten=["obs"],
                num_pp_samples=num,
                random_seed=seed,
                ax=axes,
                show=False,
            )
    finally:
        np.random.set_state(state)  # noqa: NPY002
