"""Deep ensembles of MAP fits, trained as one vmapped, jitted optax program.

Every member minimizes the same negative log posterior (NumPyro's potential energy: the
negative log joint density in unconstrained coordinates) from its own initialization,
drawn from the prior. Members are stacked along a leading axis and trained together
with ``jax.vmap`` over a ``lax.scan`` of optax steps: one compiled program, no Python
loop over members or steps.

Options:

* ``bootstrap=True`` gives each member multinomial resampling counts of the data as
  likelihood weights (the bootstrap ensemble);
* ``anchored=True`` gives each member its own prior mean drawn from the prior
  (randomize-then-optimize / anchored ensembles), so that the spread of members
  approximates the posterior rather than only the optimizer's randomness;
* ``noise="effective"`` (the default) re-estimates each member's noise sd from its
  residuals and its effective number of parameters (:mod:`bayesresnet.infer.noise`);
* ``polish="lbfgs"`` finishes every member's fit with full-batch L-BFGS
  (:func:`~bayesresnet.infer.core.polish_members`). Measured with
  ``benchmarks/bench_polish.py`` (200 points, width 8, 8 cubic layers, 8 members): on
  noise-free friedman1 and borehole it halves the relative RMSE of the mean (4.2 % →
  2.3 %, 0.79 % → 0.48 %) and the CRPS; with 5 % noise it changes neither; its
  compilation (the zoom line search, vmapped over members) made the fit 1.9–2.5 times
  slower on a loaded 2-core machine, so it is off by default.

References:
    Lakshminarayanan, Pritzel, Blundell (2017), Simple and scalable predictive
    uncertainty estimation using deep ensembles. NeurIPS.
    Pearce, Leibfried, Brintrup (2020), Uncertainty in neural networks: approximately
    Bayesian ensembling. AISTATS.
    Bardsley, Solonen, Haario, Laine (2014), Randomize-then-optimize. SIAM J. Sci. Comput.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np
from numpyro.infer.util import constrain_fn

from bayesresnet import sites
from bayesresnet.infer.base import Check, Engine, EngineResult, Estimators, Timer, to_numpy
from bayesresnet.infer.core import (
    EnsembleConfig,
    ard_held_steps,
    bind_data,
    compiled_call,
    compiles_ahead,
    config_settings,
    final_losses,
    member_block_size,
    program_data,
    train_members,
    uses_batches,
)
from bayesresnet.infer.noise import effective_noise, noise_program

__all__ = ["EnsembleConfig", "run_ensemble", "ENGINE"]


def _member_flags(losses: np.ndarray, num_obs: int, tol: float, window: int):
    """Final loss, convergence and divergence of each member from its loss history.

    Converged: the mean loss over the last ``window`` steps differs from the ``window``
    before by less than ``tol`` per observation (a history shorter than two windows
    has not converged).
    """
    final = losses[:, -1]
    diverged = ~np.isfinite(final)
    if losses.shape[1] < 2 * window:
        return final, np.zeros_like(diverged), diverged
    last = losses[:, -window:].mean(axis=1)
    before = losses[:, -2 * window : -window].mean(axis=1)
    with np.errstate(invalid="ignore"):
        converged = (~diverged) & (np.abs(before - last) / num_obs < tol)
    return final, converged, diverged


def _all_settled(config: EnsembleConfig, num_obs: int):
    """``settled(losses) -> bool``: every member has converged or diverged."""
    window = member_block_size(config)

    def settled(losses):
        _, converged, diverged = _member_flags(losses, num_obs, config.convergence_tol, window)
        return bool(np.all(converged | diverged))

    return settled


def _fit_members(key, model, x, y, config: EnsembleConfig, timer: Timer, prepare=None):
    """The trained members, their final losses, convergence and divergence flags.

    Without a polish, Adam trains past ``num_steps`` until every member has settled (see
    ``EnsembleConfig.max_steps``) and convergence is judged on the loss history; with
    one, Adam runs ``num_steps`` and a member has converged when L-BFGS stopped on a
    tolerance.
    """
    if config.polish == "none":
        result = train_members(
            key, model, x, y, config, timer, converged=_all_settled(config, x.shape[0]),
            prepare=prepare,
        )  # fmt: skip
        flags = _member_flags(
            np.asarray(result.losses), x.shape[0], config.convergence_tol,
            member_block_size(config),
        )  # fmt: skip
        return result, *flags
    result = train_members(key, model, x, y, config, timer, prepare=prepare)
    final = final_losses(result)
    diverged = ~np.isfinite(final)
    return result, final, result.polish.converged & ~diverged, diverged


def _measures_distance(config: EnsembleConfig) -> bool:
    """Whether a member's convergence is also judged by its fit's distance to its optimum
    (``prediction_tol``): Adam-trained members (a polish decides by its own tolerances)
    whose priors are centred at 0."""
    return config.polish == "none" and config.prediction_tol > 0 and not config.anchored


def _warn_members(
    config: EnsembleConfig, diverged, converged, steps_run: int, distance=None
) -> None:
    """Warn of members that diverged (left out) or had not converged (kept); ``distance``
    ``[M, O]``: each member's fit's distance to its optimum, where it was measured."""
    keep = ~diverged
    if diverged.any():
        warnings.warn(
            f"{int(diverged.sum())} of {config.num_members} ensemble members diverged and are "
            "left out of the posterior (see extra['member_diverged']); lower `learning_rate`.",
            RuntimeWarning,
            stacklevel=4,
        )
    if not converged[keep].all():
        polished = config.polish != "none"
        far = ""
        if distance is not None:
            left = distance[keep & ~converged].max(axis=1)
            far = (
                f" (their fits {left.min():.2g}–{left.max():.2g} noise sds from their optima's, "
                f"above prediction_tol={config.prediction_tol}; on noise-free data the optimum "
                "lies where the noise sd has shrunk further)"
            )
        warnings.warn(
            f"{int((~converged[keep]).sum())} ensemble member(s) had not converged after "
            f"{steps_run} steps{far}"
            + (
                f" and at most {config.polish_steps} L-BFGS iterations; raise `polish_steps`."
                if polished
                else '; raise `num_steps` or `max_steps` (method="ensemble", num_steps=…; '
                'method="auto" takes no options), or finish each member by L-BFGS '
                '(method="ensemble", polish="lbfgs"), which stops on a tolerance.'
            ),
            RuntimeWarning,
            stacklevel=4,
        )


def _constrain_members(model, params, data):
    """The members' constrained sites ``{site: [M, ...]}``; ``data`` of :func:`program_data`."""
    model, x, y = bind_data(model, data)
    return jax.vmap(lambda u: constrain_fn(model, (x, y), {}, u))(params)


def run_ensemble(key, model, x, y, config: EnsembleConfig) -> EngineResult:
    """Deep ensemble engine: ``M`` MAP fits trained together (see module docstring)."""
    timer = Timer()
    noise = []

    def prepare(members):  # the noise re-estimate, compiled while the members train
        if config.noise == "effective" and not config.bootstrap:
            noise.append(noise_program(model, x, y, members, ahead=compiles_ahead()))

    result, final, converged, diverged = _fit_members(key, model, x, y, config, timer, prepare)
    losses = np.asarray(result.losses)
    steps_run = losses.shape[1]
    constrained = compiled_call(
        lambda p, d: _constrain_members(model, p, d), result.params, program_data(model, x, y)
    )
    samples = to_numpy(constrained)
    finite_params = np.all(
        np.stack([np.isfinite(v).reshape(len(final), -1).all(axis=1) for v in samples.values()]),
        axis=0,
    )
    diverged = diverged | ~finite_params
    keep = ~diverged
    if not keep.any():
        raise FloatingPointError(
            f"all {config.num_members} ensemble members diverged (non-finite loss); lower "
            f"`learning_rate` (now {config.learning_rate}) or `clip_norm`."
        )
    samples = {name: v[keep][None] for name, v in samples.items()}  # [1, M_kept, ...]
    refit = None
    if config.noise == "effective":
        with timer("noise_s"):
            # numpy's indexing: a jax array indexed by a mask compiles a gather per site
            kept = jax.tree_util.tree_map(lambda v: np.asarray(v)[keep], result.params)
            program = noise[0] if noise else None
            refit = effective_noise(
                model, x, y, kept, bootstrap=config.bootstrap, program=program,
                evidence=config.prior_evidence and not config.anchored,
                distance=_measures_distance(config),
            )  # fmt: skip
        if refit.sigma is not None:
            dtype = samples[sites.NOISE_SCALE].dtype
            samples[sites.NOISE_SCALE] = refit.sigma.astype(dtype)[None]
    distance = None
    if refit is not None and refit.distance is not None:  # near its optimum, or far?
        distance = np.full((len(keep), refit.distance.shape[1]), np.inf)
        distance[keep] = refit.distance
        converged = converged | (distance.max(axis=1) < config.prediction_tol)
    _warn_members(config, diverged, converged, steps_run, distance)
    sample_stats = {
        "loss": final[keep][None],
        "converged": converged[keep][None],
    }
    extra = {
        "loss_history": losses[:, :: config.history_every],
        "member_final_loss": final.tolist(),
        "member_converged": converged.tolist(),
        "member_diverged": diverged.tolist(),
    }
    if distance is not None:  # None for the members left out
        extra["member_fit_distance"] = [d.tolist() if k else None for d, k in zip(distance, keep)]
    if refit is not None:  # the noise re-estimate: how, and the values it replaced
        extra["noise_refit"] = refit.reason
        if refit.sigma is not None:
            extra |= {
                "member_map_noise": refit.map_sigma.tolist(),
                "member_effective_params": refit.gamma.tolist(),
            }
        if refit.prior_factors is not None:
            extra["member_prior_evidence"] = {k: v.tolist() for k, v in refit.prior_factors.items()}
    if result.polish is not None:  # what L-BFGS did to each member after the Adam phase
        extra |= {
            "polish_loss_history": result.polish.losses,
            "member_polish_iterations": result.polish.iterations.tolist(),
            "member_polish_evaluations": result.polish.evaluations.tolist(),
            "member_grad_norm": result.polish.grad_norm.tolist(),
        }
    settings = config_settings(config) | {"steps_run": steps_run}
    return EngineResult(samples, sample_stats, settings, dict(timer.times), extra)


# ------------------------------------------------------------- what an ensemble knows of itself
def describe(post) -> str:
    """One line on how an ensemble posterior was made."""
    s = post.settings
    extras = [k for k in ("bootstrap", "anchored") if s.get(k)]
    iterations = post.extra.get("member_polish_iterations")
    polish = f" then up to {max(iterations)} L-BFGS iterations" if iterations else ""
    noise = (
        "; noise sd re-estimated from each member's effective number of parameters"
        if post.extra.get("noise_refit", "").startswith("effective")
        else ""
    )
    batch = s.get("batch_size")
    batches = (
        f" on batches of {batch} rows" if batch and uses_batches(batch, len(post.x_train)) else ""
    )
    held = ard_held_steps(s.get("ard_warmup", 0.0), s["num_steps"]) if post.prior.ard else 0
    ard = f"; input scales held at 1 through the first {held} Adam steps" if held else ""
    return (
        f"deep ensemble of {post.num_draws} MAP fits ({s['num_members']} trained), "
        f"{_steps_run(s)} Adam steps{batches}{polish} each"
        f"{', ' + ', '.join(extras) if extras else ''}{ard}{noise}"
    )


def _steps_run(settings) -> int:
    # Runs saved before training went on to convergence ran exactly num_steps.
    return int(settings.get("steps_run", settings["num_steps"]))


def gradients(post) -> int:
    """One gradient per member and Adam step, and those of the L-BFGS line searches; an
    Adam step on a batch of ``B`` of ``N`` rows counts as ``B/N`` of one (gradients of the
    whole data)."""
    polish = sum(post.extra.get("member_polish_evaluations", []))
    batch = post.settings.get("batch_size")
    # the training rows are read only for a batched fit (test posteriors may have none)
    share = batch / len(post.x_train) if batch and uses_batches(batch, len(post.x_train)) else 1.0
    return int(round(post.settings["num_members"] * _steps_run(post.settings) * share + polish))


def checks(post, estimators: Estimators) -> list[Check]:
    """Members that diverged or did not converge, and the spread of their final losses."""
    flags = np.asarray(post.extra.get("member_diverged", []), dtype=bool)
    conv = np.asarray(post.extra.get("member_converged", []), dtype=bool)
    final = np.asarray(post.extra.get("member_final_loss", []), dtype=float)
    m = len(flags)
    finite = final[np.isfinite(final)]
    spread = float(np.ptp(finite) / len(post.x_train)) if len(finite) else float("nan")
    s = post.settings
    if s.get("polish", "none") == "none":
        target = f"all (tolerance {s.get('convergence_tol')} per observation)"
        if "member_fit_distance" in post.extra:
            target = (
                f"all (the loss: tolerance {s.get('convergence_tol')} per observation; or "
                f"the fit within {s.get('prediction_tol')} noise sds of its optimum's)"
            )
        fix = (
            'raise num_steps or max_steps (method="ensemble"; method="auto" takes no '
            "options); on noise-free data the noise scale keeps shrinking and members may "
            "never meet the tolerance"
        )
    else:
        window = (
            f", polish_window_tol {s['polish_window_tol']} over {s['polish_window']} iterations"
            if s.get("polish_window_tol")
            else ""
        )
        target = (
            f"all (L-BFGS: polish_tol {s['polish_tol']}, "
            f"polish_grad_tol {s['polish_grad_tol']}{window})"
        )
        fix = "raise polish_steps; on noise-free data the noise scale keeps shrinking"
    return [
        Check(
            "members diverged",
            "pass" if not flags.any() else "fail",
            f"{int(flags.sum())} of {m}",
            "0",
            "" if not flags.any() else "lower learning_rate or clip_norm",
        ),
        Check(
            "members converged",
            "pass" if conv[~flags].all() else "warn",
            f"{int(conv.sum())} of {m}",
            target,
            "" if conv[~flags].all() else fix,
        ),
        Check(
            "spread of member losses",
            "pass" if spread < 1.0 else "warn",
            f"{spread:.3f} per observation",
            "< 1 per observation",
            ""
            if spread < 1.0
            else "members found optima of different quality: more steps, or drop the worst members",
        ),
    ]


ENGINE = Engine(
    config=EnsembleConfig,
    run=run_ensemble,
    describe=describe,
    gradients=gradients,
    chains=False,
    checks=checks,
    loss="negative log posterior",
)
