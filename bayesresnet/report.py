"""The HTML report and ``metrics.json`` of a run: one self-contained file, figures embedded.

:func:`render_html` turns the run's metrics (the same dict written to ``metrics.json``)
and its figures (PNG data URIs) into one HTML page that reads on its own and on a phone:
what was fitted, the verdict, the diagnostics table, the calibration table, the figures.
"""

from __future__ import annotations

import html
from pathlib import Path

from bayesresnet._io import write_atomic, write_json, write_predictions
from bayesresnet.calibration import INTERVAL_SCORE_KEY
from bayesresnet.levels import HEADLINE_LEVELS, INTERVAL_LEVEL, level_key

# write_json and write_predictions live in bayesresnet._io; they are re-exported here, beside
# write_report, as the public way to write a run's files.
__all__ = [
    "render_html",
    "write_report",
    "write_json",
    "write_predictions",
    "render_compare_html",
    "render_sensitivity_html",
    "render_calibrate_html",
    "describe_calibration_check",
    "SENSITIVITY_FIGURE",
    "RELEVANCE_FIGURE",
    "verdict_meaning",
]

#: The title of the Sobol figure, shown in the report's sensitivity section.
SENSITIVITY_FIGURE = "Sobol sensitivity indices"
#: The title of the input-relevance figure, shown in the report's relevance section.
RELEVANCE_FIGURE = "Input relevance"

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0;padding:1rem;
 color:#1d232a;background:#fafbfc;line-height:1.45}
main{max-width:980px;margin:0 auto}
h1{font-size:1.5rem;margin:.2rem 0 .6rem}
h2{font-size:1.15rem;margin:1.6rem 0 .5rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
.verdict{display:inline-block;padding:.3rem .7rem;border-radius:.4rem;font-weight:600}
.pass{background:#dafbe1;color:#116329}.warn{background:#fff8c5;color:#7d4e00}
.fail{background:#ffebe9;color:#a40e26}.na{background:#eaeef2;color:#57606a}
.table-wrap{overflow-x:auto;-webkit-overflow-scrolling:touch;max-width:100%}
table{border-collapse:collapse;font-size:.9rem;margin:.3rem 0;min-width:50%}
th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top}
th{background:#f3f4f6}
td.num{text-align:right;font-variant-numeric:tabular-nums}
figure{margin:1rem 0}
figure img{max-width:100%;height:auto;display:block;border:1px solid #d0d7de;background:#fff}
figcaption{font-size:.85rem;color:#57606a}
dl{display:grid;grid-template-columns:max-content 1fr;gap:.2rem 1rem;margin:.3rem 0}
dt{font-weight:600}dd{margin:0;overflow-wrap:anywhere}
.note{font-size:.85rem;color:#57606a}
table.checks td:last-child{min-width:15rem}
@media (max-width:600px){table.checks{font-size:.8rem}table.checks td:last-child{min-width:12rem}}
"""


#: What the verdict says, by method: the sampler's or optimizer's own checks, then the
#: predictive checks every method gets (PSIS-LOO k̂; held-out PIT and coverage).
_PREDICTIVE_MEANING = (
    "Every method is also judged on its predictions: with a held-out split, the PIT values "
    "must be uniform and the central intervals must cover their nominal share of the "
    "test points, each within the sampling error of the test size (a p-value below "
    "0.001 fails, below 0.01 warns); without one, the LOO-PIT values must be uniform. "
    "PSIS-LOO k̂ above 0.7 warns that LOO estimates are unreliable."
)
_VERDICT_MEANING = {
    "nuts": "For NUTS, pass means the chains agree on the predictions (R-hat, ESS) and the "
    "sampler explored without trouble (divergences, tree depth, E-BFMI), so the draws "
    "represent the model's posterior; fail means they do not.",
    "mclmc": "For MCLMC, pass means each chain has mixed within the mode its ensemble "
    "member started it in (the two halves of every chain agree and its draws give enough "
    "effective samples, each chain's own mean and sd removed) and the energy error "
    "stayed small. The chains may sit in different modes: the nested R-hat between "
    "chains reports that spread as a note, not a failure, since a mixture of modes is "
    "what an ensemble-started sampler gives; the held-out checks below judge that "
    "mixture. Fail means some chain has not mixed within its mode.",
    "svi": "For SVI, the draws come from an approximation that cannot be checked against "
    "the exact posterior: pass means the ELBO converged, the importance weights "
    "log p − log q of the draws have Pareto k̂ ≤ 0.7 (every guide with a density, "
    "Laplace included), and the predictions are calibrated; a fail means its intervals "
    "are not to be trusted.",
    "ensemble": "For a deep ensemble, the members are independent MAP fits without a "
    "density to check: pass means no member diverged, all converged with losses of "
    "similar quality, and the predictions are calibrated; a fail means its intervals "
    "are not to be trusted.",
}


def verdict_meaning(method: str) -> str:
    """A short paragraph on what pass, warn and fail mean for ``method``."""
    own = _VERDICT_MEANING.get(method, "")
    return (
        f"{own} {_PREDICTIVE_MEANING} Warn: a check is outside its threshold by a margin "
        "that may still be chance or harmless; read the advice. Fail: do not use the "
        "intervals or probabilities of this fit."
    ).strip()


def _esc(value) -> str:
    return html.escape(str(value))


def _fmt(value) -> str:
    if isinstance(value, bool) or value is None:
        return _esc(value)
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        if value != value:  # nan
            return "—"
        if value == 0 or 1e-3 <= abs(value) < 1e5:
            return f"{value:.4g}"
        return f"{value:.3e}"
    return _esc(value)


def _table(header: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for v in row:
            cls = ' class="num"' if isinstance(v, int | float) and not isinstance(v, bool) else ""
            cells.append(f"<td{cls}>{_fmt(v)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<div class="table-wrap"><table><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table></div>"
    )


def _status(status: str) -> str:
    cls = {"pass": "pass", "note": "na", "warn": "warn", "fail": "fail"}.get(status, "na")
    return f'<span class="verdict {cls}">{_esc(status)}</span>'


def _dl(items: dict) -> str:
    return (
        "<dl>"
        + "".join(f"<dt>{_esc(k)}</dt><dd>{_fmt(v)}</dd>" for k, v in items.items())
        + "</dl>"
    )


def _figures(figures: dict[str, tuple[str, str]]) -> str:
    parts = []
    for title, (uri, caption) in figures.items():
        parts.append(
            f'<figure><img src="{uri}" alt="{_esc(title)}">'
            f"<figcaption><b>{_esc(title)}.</b> {_esc(caption)}</figcaption></figure>"
        )
    return "\n".join(parts)


def _page(title: str, body: str) -> str:
    return (
        "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>{_esc(title)}</title><style>{_CSS}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )


def render_html(metrics: dict, figures: dict[str, tuple[str, str]]) -> str:
    """The report page of one run.

    Args:
        metrics: the run's metrics (as written to ``metrics.json``): ``run``, ``data``,
            ``model``, ``inference``, ``diagnostics``, ``calibration``, ``loo``…
        figures: ``{title: (data URI, caption)}``.
    """
    run, data, model, inf = metrics["run"], metrics["data"], metrics["model"], metrics["inference"]
    diag = metrics["diagnostics"]
    parts = [
        f"<h1>{_esc(run['name'])}: {_esc(inf['method'].upper())} fit of a WP-ResNet</h1>",
        f"<p>Verdict: {_status(diag['verdict'])} "
        f"<span class='note'>(thresholds below; generated by bayesresnet "
        f"{_esc(run['version'])})</span></p>",
        f"<p class='note'>{_esc(verdict_meaning(inf['method']))}</p>",
        "<h2>What was fitted</h2>",
        _dl(
            {
                "data": data["description"],
                "training / test points": f"{data['num_train']} / {data['num_test']}",
                "inputs": ", ".join(data["input_names"]),
                "outputs": ", ".join(data["output_names"]),
                **(
                    {"transforms": ", ".join(f"{k}: {v}" for k, v in data["transforms"].items())}
                    if data.get("transforms")
                    else {}
                ),
                **({"data check": " ".join(data["notes"])} if data.get("notes") else {}),
                "network": model["description"],
                "parameters": model["num_params"],
                "prior": model["prior"],
                "method": inf["description"],
                "wall time": ", ".join(f"{k} {v:.1f} s" for k, v in inf["timings"].items()),
            }
        ),
        "<h2>Diagnostics</h2>",
        _table(
            ["check", "status", "value", "threshold", "what to try"],
            [
                [c["name"], c["status"], c["value"], c["threshold"], c["advice"]]
                for c in diag["checks"]
            ],
        )
        .replace("<td>pass</td>", f"<td>{_status('pass')}</td>")
        .replace("<td>note</td>", f"<td>{_status('note')}</td>")
        .replace("<td>warn</td>", f"<td>{_status('warn')}</td>")
        .replace("<td>fail</td>", f"<td>{_status('fail')}</td>")
        # "what to try" keeps a readable width on a phone; the table scrolls sideways.
        .replace("<table>", '<table class="checks">', 1),
    ]
    if diag.get("table"):
        worst = diag["table"][:10]
        parts += [
            "<p class='note'>Worst-converged quantities (function space first in importance: "
            "predictions at probe inputs and |W(t)| are invariant to hidden-unit "
            "permutations):</p>",
            _table(
                ["quantity", "kind", "R-hat", "bulk ESS", "tail ESS", "MCSE", "mean", "sd"],
                [
                    [
                        r["name"],
                        r["kind"],
                        r["r_hat"],
                        r["ess_bulk"],
                        r["ess_tail"],
                        r["mcse_mean"],
                        r["mean"],
                        r["sd"],
                    ]
                    for r in worst
                ],
            ),
        ]
    cal = metrics.get("calibration", {}).get("test")
    if cal:
        parts += ["<h2>Calibration on held-out data</h2>", _calibration_table(cal, metrics)]
    parts += _predictive_checks(metrics)
    figures = dict(figures)
    sobol_figure = figures.pop(SENSITIVITY_FIGURE, None)
    relevance_figure = figures.pop(RELEVANCE_FIGURE, None)
    if metrics.get("relevance"):
        parts += ["<h2>Input relevance (ARD)</h2>"]
        parts += _relevance_section(metrics["relevance"], relevance_figure)
    if metrics.get("sensitivity"):
        parts += ["<h2>Sensitivity (Sobol indices)</h2>"]
        parts += _sensitivity_section(metrics["sensitivity"], sobol_figure)
    parts += ["<h2>Figures</h2>", _figures(figures)]
    return _page(f"{run['name']} — bayesresnet report", "\n".join(parts))


def _predictive_checks(metrics: dict) -> list[str]:
    """The "Predictive checks" section (LOO, WAIC, LOO-PIT, PPC); empty without LOO."""
    loo = metrics.get("loo")
    if not loo:
        return []
    parts = [
        "<h2>Predictive checks</h2>",
        _dl(
            {
                "elpd LOO": f"{loo['elpd_loo']:.2f} ± {loo['se']:.2f} (p_loo {loo['p_loo']:.1f})",
                "Pareto k̂ > 0.7": f"{loo['num_bad_k']} of {len(loo['pareto_k'])} observations",
                "elpd WAIC": f"{metrics['waic']['elpd_waic']:.2f} ± {metrics['waic']['se']:.2f}",
                "LOO-PIT KS p-value": metrics.get("loo_pit_ks_pvalue", float("nan")),
            }
        ),
    ]
    if metrics.get("ppc"):
        parts.append(
            _table(
                ["output", "statistic T", "T(y)", "mean T(ỹ)", "p-value P(T(ỹ) ≥ T(y))"],
                [
                    [r["output"], r["statistic"], r["observed"], r["replicated_mean"], r["p_value"]]
                    for r in metrics["ppc"]
                ],
            )
        )
    return parts


def _relevance_section(relevance: dict, figure: tuple[str, str] | None) -> list[str]:
    """The learned per-input scales: meaning, figure and table (no heading)."""
    hdi_prob, rows = relevance["hdi_prob"], relevance["table"]
    parts = [
        "<p>"
        + _esc(
            "Each input j has a learned scale λ_j ~ HalfNormal(1) that multiplies the prior "
            "sd of its weights into the first hidden layer (automatic relevance "
            "determination, the network's analogue of a GP's inverse length scale): an input "
            "the data do not need gets a small λ_j and weights near zero, so the surrogate "
            "is flat along it. The weight norm ‖W_in[j, :]‖ measures the same in the "
            "network's standardized inputs. The table gives the posterior mean, sd and "
            f"{hdi_prob:.0%} highest-density interval (HDI) over the draws."
        )
        + "</p>"
    ]
    if figure is not None:
        parts.append(_figures({RELEVANCE_FIGURE: figure}))
    measures = [("ard_scale", "λ"), ("weight_norm", "‖W_in‖")]
    header = ["input"] + [
        f"{label} {stat}" for _, label in measures for stat in ("mean", "sd", "HDI low", "HDI high")
    ]
    stats = ("mean", "sd", "hdi_low", "hdi_high")
    parts.append(
        _table(
            header,
            [[r["input"]] + [r[f"{m}_{s}"] for m, _ in measures for s in stats] for r in rows],
        )
    )
    return parts


def _sobol_meaning(hdi_prob: float) -> str:
    return (
        "S1 (first order) is the share of the output's variance over the input ranges that "
        "an input explains on its own; ST (total) adds every interaction it takes part in, "
        "so ST − S1 is its share through interactions and ST near 0 means the output does "
        "not depend on it over these ranges. Each posterior draw of the noise-free function "
        "has its own indices: the table gives their posterior mean and sd and the "
        f"{hdi_prob:.0%} highest-density interval (HDI) over the draws, the surrogate's "
        "uncertainty about them. All draws share one quasi-random design, whose own "
        "Monte-Carlo error (MC SE, from the design size n) is not in the bands: an index "
        "is resolved when its MC SE is small against its sd and its value."
    )


def _sensitivity_section(sens: dict, figure: tuple[str, str] | None) -> list[str]:
    """The Sobol indices: meaning, input ranges, settings, figure and table (no heading)."""
    settings, notes = sens["settings"], sens["notes"]
    rows = sens["summary"]
    hdi = [k for k in rows[0] if k.startswith("hdi_")] if rows else []
    parts = [
        f"<p>{_esc(_sobol_meaning(settings['hdi_prob']))}</p>",
        _dl(
            {
                "input ranges": sens["bounds_source"],
                "function": notes["function"],
                "design": f"{notes['design']} (n = {settings['n']}, seed {settings['seed']})",
                "posterior draws": f"{settings['num_draws']}, evenly spaced over the chains",
                "estimators": notes["estimators"],
                "MC SE": notes["mc_se"],
                "wall time": ", ".join(f"{k} {v:.1f} s" for k, v in sens["timings"].items()),
            }
        ),
        _table(
            ["input", "distribution", "bounds row (as SALib reads it)"],
            [
                [i["name"], i["dist"], ", ".join(f"{b:.6g}" for b in i["bounds"])]
                for i in sens["inputs"]
            ],
        ),
    ]
    if figure is not None:
        parts.append(_figures({SENSITIVITY_FIGURE: figure}))
    parts.append(
        _table(
            [
                "output",
                "index",
                "input",
                "mean",
                "sd",
                *(h.replace("hdi_", "HDI ") for h in hdi),
                "MC SE",
            ],
            [
                [
                    r["output"],
                    r["index"],
                    r["input"],
                    r["mean"],
                    r["sd"],
                    *(r[h] for h in hdi),
                    r["mc_se"],
                ]
                for r in rows
            ],
        )
    )
    return parts


def render_sensitivity_html(sens: dict, figure: tuple[str, str], *, title: str) -> str:
    """The page of ``bayesresnet sensitivity``: the Sobol indices of one run's posterior.

    Args:
        sens: the record written to ``sensitivity.json`` (``workflow.sensitivity_summary``).
        figure: ``(data URI, caption)`` of the Sobol bars with their bands.
        title: the run's name.
    """
    parts = [f"<h1>{_esc(title)}: Sobol sensitivity indices</h1>"]
    if "run" in sens:
        parts.append(
            f"<p class='note'>run folder {_esc(sens['run'])}; generated by bayesresnet "
            f"{_esc(sens.get('version', ''))}</p>"
        )
    parts += _sensitivity_section(sens, figure)
    return _page(f"{title} — Sobol sensitivity", "\n".join(parts))


_PLUGIN_WARNING = (
    "plugin: the posterior-mean surrogate is taken as the exact simulator, so this posterior "
    "ignores the surrogate's own uncertainty and is over-confident wherever that uncertainty "
    "is not small against the noise. Use it for comparison; --propagate epost (the default) "
    "carries the surrogate's uncertainty into the answer."
)


def describe_calibration_check(record: dict) -> str:
    """One line: the worst convergence numbers and the extrapolation flag of a calibration."""
    worst, extra = record["diagnostics"]["worst"], record["extrapolation"]
    where = "YES: posterior mass sits where the surrogate extrapolates" if extra["flag"] else "no"
    limit = worst["r_hat_threshold"]
    above = f" (> {limit})" if worst["r_hat"] > limit else ""
    return (
        f"worst R-hat {worst['r_hat']:.3f}{above}, "
        f"smallest bulk ESS {worst['ess_bulk']:.0f}, {worst['divergences']} divergences; "
        f"extrapolates: {where}"
    )


def _calibration_status(record: dict) -> str:
    """``warn`` when a chain check or the extrapolation flag asks for a second look."""
    worst = record["diagnostics"]["worst"]
    trouble = worst["r_hat"] > worst["r_hat_threshold"] or worst["divergences"] > 0
    return "warn" if trouble or record["extrapolation"]["flag"] else "pass"


def _calibrate_settings(record: dict) -> dict:
    settings = record["settings"]
    return {
        "surrogate uncertainty": f"{settings['propagate']}: {settings['propagate_meaning']}",
        "unknown inputs": ", ".join(settings["unknown"]),
        "known inputs": ", ".join(settings.get("known") or []) or "none",
        "observations": f"{settings.get('num_observations', '?')} rows of "
        f"{settings.get('observations', 'the observations')}",
        "prior": "each unknown uniform on the training data's box (its min and max over "
        "the training inputs)",
        "observation noise sd": settings["noise"],
        "model discrepancy": {"None": "none", "iid": "iid: an extra inferred sd per output"}.get(
            settings["discrepancy"], settings["discrepancy"]
        ),
        "surrogate draws": f"{settings['num_surrogate_draws']} used, evenly spaced over the "
        f"posterior's draws; effective draws {record['effective_draws']:.3g}",
        "sampler": f"{settings['method']}: {settings['num_chains']} chains per component, "
        f"{settings['num_warmup']} warm-up and {settings['num_samples']} draws each "
        f"({settings['num_draws_total']} draws in all), seed {settings['seed']}",
        "wall time": ", ".join(f"{k} {v:.1f} s" for k, v in record["timings"].items()),
    }


def _calibrate_tables(record: dict) -> list[str]:
    hdi = record["settings"]["hdi_prob"]
    extra = record["extrapolation"]
    obs = record["observations"]
    inside = sum(r["inside"] for r in obs)
    return [
        "<h2>Posterior summary</h2>",
        _table(
            [
                "quantity",
                "mean",
                "sd",
                f"HDI {hdi:.0%} lower",
                f"HDI {hdi:.0%} upper",
                "surrogate share",
                "R-hat (worst)",
                "bulk ESS",
                "divergences",
            ],
            [
                [
                    r["name"],
                    r["mean"],
                    r["sd"],
                    r["hdi_lower"],
                    r["hdi_upper"],
                    r["surrogate_share"],
                    r["r_hat"],
                    r["ess_bulk"],
                    r["divergences"],
                ]
                for r in record["summary"]
            ],
        ),
        "<h2>Extrapolation</h2>",
        "<p>The shares of the posterior draws that put some observation's inputs outside "
        "the training box (outside the box), or whose epistemic sd (the sd over surrogate "
        f"draws) at some observation exceeds {_fmt(extra['epistemic_factor'])} times its "
        "median over the training box (epistemic sd high); either share above "
        f"{_fmt(extra['threshold'])} flags the posterior as extrapolating. The epistemic "
        "ratio is the median over draws of the largest such ratio.</p>",
        _dl(
            {
                "flag": "YES: posterior mass sits where the surrogate extrapolates"
                if extra["flag"]
                else "no",
                "outside the box": extra["outside_box"],
                "epistemic sd high": extra["epistemic_excess"],
                "epistemic ratio": extra.get("epistemic_ratio_median"),
            }
        ),
        "<h2>Convergence</h2>",
        "<p class='note'>Pooled over the components (R-hat: the worst component's; ESS and "
        "divergences: summed). Each component's own rows are in calibration.json.</p>",
        _table(
            ["quantity", "R-hat", "bulk ESS", "tail ESS", "divergences"],
            [
                [r["variable"], r["r_hat"], r["ess_bulk"], r["ess_tail"], r["divergences"]]
                for r in record["diagnostics"]["pooled"]
            ],
        ),
        "<h2>Predictive check at the observations</h2>",
        f"<p>{inside} of {len(obs)} observed values lie inside their {hdi:.0%} central "
        "posterior predictive interval.</p>",
        _table(
            ["observation", "output", "observed", "predictive mean", "lower", "upper", "inside"],
            [
                [
                    r["obs"],
                    r["output"],
                    r["observed"],
                    r["mean"],
                    r["lower"],
                    r["upper"],
                    "yes" if r["inside"] else "NO",
                ]
                for r in obs
            ],
        ),
    ]


def render_calibrate_html(record: dict, figures: dict[str, tuple[str, str]], *, title: str) -> str:
    """The page of ``bayesresnet calibrate``: the posterior of a simulator's inputs.

    Args:
        record: the record written to ``calibration.json`` (``workflow.calibrate_summary``
            with the command's settings).
        figures: ``{title: (data URI, caption)}`` (``workflow.calibrate_figures``).
        title: the run's name.
    """
    unknown = ", ".join(record["settings"]["unknown"])
    parts = [f"<h1>{_esc(title)}: calibration of {_esc(unknown)}</h1>"]
    if "run" in record:
        parts.append(
            f"<p class='note'>run folder {_esc(record['run'])}; generated by bayesresnet "
            f"{_esc(record.get('version', ''))}</p>"
        )
    if record["settings"]["propagate"] == "plugin":
        parts.append(
            f'<p><span class="verdict warn">over-confident</span> {_esc(_PLUGIN_WARNING)}</p>'
        )
    status = _calibration_status(record)
    parts += [
        f'<p><span class="verdict {status}">{_esc(describe_calibration_check(record))}</span></p>',
        "<p>The posterior of the simulator's unknown inputs given the observations, with the "
        "surrogate's posterior draws standing in for the simulator: y = f(θ, known inputs) + "
        "noise (+ discrepancy), per output.</p>",
        _dl(_calibrate_settings(record)),
        _table(
            ["input", "prior", "lower", "upper"],
            [[p["name"], p["dist"], p["lower"], p["upper"]] for p in record["prior"]],
        ),
        _figures(figures),
    ]
    parts += _calibrate_tables(record)
    return _page(f"{title} — calibration of {unknown}", "\n".join(parts))


def _calibration_table(cal: dict, metrics: dict) -> str:
    names = metrics["data"]["output_names"]
    rows = []

    def per(key):
        value = cal.get(key)
        if isinstance(value, dict):
            return value.get("per_output", [None] * len(names))
        return [None] * len(names)

    keys = [
        ("RMSE", "rmse"),
        ("MAE", "mae"),
        ("R²", "r2"),
        ("CRPS", "crps"),
        ("NLL", "nll"),
        (f"interval score ({INTERVAL_LEVEL:.0%})", INTERVAL_SCORE_KEY),
        ("sharpness (mean sd)", "sharpness"),
        ("miscalibration area", "miscalibration_area"),
    ]
    for label, key in keys:
        if key in cal:
            rows.append([label, *per(key)])
    for level in HEADLINE_LEVELS:
        cov = cal.get("coverage", {}).get(level_key(level))
        if cov:
            rows.append([f"coverage of {level:.0%} interval", *cov["per_output"]])
    pit = cal.get("pit")
    if pit:
        rows.append(["PIT KS p-value", *pit.get("ks_pvalue", {}).get("per_output", [])])
    gap = cal.get("generalization_gap")
    if gap:
        rows.append(["test/train RMSE ratio", *gap.get("ratio", {}).get("per_output", [])])
    return _table(["metric", *names], rows)


def render_compare_html(
    rows: list[dict],
    runs: dict[str, dict],
    figures,
    *,
    banner: str | None = None,
    notes=(),
    heldout_rows=(),
) -> str:
    """A comparison page: LOO ranking and calibration metrics of several runs side by side.

    Args:
        rows: the LOO ranking (:func:`bayesresnet.diagnostics.compare`), or empty when the
            runs are not ranked by LOO.
        runs: ``{name: metrics}`` of each run.
        figures: ``{title: (data URI, caption)}``.
        banner: a warning shown first, e.g. that the runs were fitted to different data.
        notes: sentences saying how the runs are (or are not) ranked.
        heldout_rows: a ranking by held-out CRPS, ``{"name", "rank", "crps", "rmse"}`` each.
    """
    parts = ["<h1>Comparison of runs</h1>"]
    if banner:
        parts.append(f'<p class="verdict fail" role="alert">{_esc(banner)}</p>')
    parts += [f'<p class="note">{_esc(note)}</p>' for note in notes]
    if heldout_rows:
        parts += [
            "<h2>Ranking by held-out CRPS (lower is better)</h2>",
            _table(
                ["run", "rank", "CRPS", "RMSE"],
                [[r["name"], r["rank"], r["crps"], r["rmse"]] for r in heldout_rows],
            ),
        ]
    if rows:
        parts += [
            "<h2>LOO (az.compare, stacking weights)</h2>",
            _table(
                ["run", "rank", "elpd LOO", "p_loo", "Δelpd", "se", "dse", "weight", "warning"],
                [
                    [
                        r["name"],
                        r["rank"],
                        r["elpd_loo"],
                        r["p_loo"],
                        r["elpd_diff"],
                        r["se"],
                        r["dse"],
                        r["weight"],
                        r["warning"],
                    ]
                    for r in rows
                ],
            ),
        ]
    header = ["metric", *runs]
    keys = ["rmse", "crps", "nll", "miscalibration_area", INTERVAL_SCORE_KEY, "sharpness"]
    table_rows = []
    for key in keys:
        row = [key]
        for m in runs.values():
            v = m.get("calibration", {}).get("test", {}).get(key, {})
            row.append(v.get("overall") if isinstance(v, dict) else None)
        table_rows.append(row)
    cov_row = [f"coverage of {INTERVAL_LEVEL:.0%} interval"]
    for m in runs.values():
        test = m.get("calibration", {}).get("test", {})
        c = test.get("coverage", {}).get(level_key(INTERVAL_LEVEL), {})
        cov_row.append(c.get("overall"))
    table_rows.append(cov_row)
    verdict_row = ["diagnostics verdict"] + [m["diagnostics"]["verdict"] for m in runs.values()]
    table_rows.append(verdict_row)
    parts += ["<h2>Held-out calibration (averaged over outputs)</h2>", _table(header, table_rows)]
    parts += ["<h2>Figures</h2>", _figures(figures)]
    return _page("bayesresnet comparison", "\n".join(parts))


def write_report(path, metrics: dict, figures: dict[str, tuple[str, str]]) -> Path:
    """Render and write the report page atomically."""
    write_atomic(path, render_html(metrics, figures).encode())
    return Path(path)
