"""The network's size from the data: defaults by data size and the held-out search."""

from types import SimpleNamespace

import numpy as np
import pytest

import bayesresnet as brn
from bayesresnet import bases
from bayesresnet.architecture import (
    MIN_SEARCH_ROWS,
    candidate_specs,
    choose_spec,
    default_spec,
)
from bayesresnet.resnet import ResNetSpec


@pytest.mark.parametrize(("rows", "width"), [(10, 8), (499, 8), (500, 16), (4999, 16), (5000, 32)])
def test_default_spec_grows_with_the_data(rows, width):
    spec = default_spec(3, 2, rows)
    assert (spec.in_features, spec.out_features, spec.width) == (3, 2, width)
    assert spec.num_layers == 8 and spec.basis == bases.Cubic()


def test_candidates_span_width_depth_and_basis():
    specs = candidate_specs(4, 1, 200)
    assert len(specs) == len({(s.width, s.num_layers, repr(s.basis)) for s in specs}) == 8
    assert {s.width for s in specs} == {8, 16}
    assert {s.num_layers for s in specs} == {4, 8}


def _fake_fit(errors: dict, calls: list):
    """A quick fit whose predictive draws at held-out points are the truth ``2x`` plus a
    bias ``errors[width]`` and unit-sd noise: CRPS grows with the bias."""

    def fit(spec, x, y, seed):
        calls.append((spec.width, len(x)))
        bias = errors[spec.width]

        def predict(xv, seed=0, return_draws=True):
            rng = np.random.default_rng(seed)
            mean = 2.0 * xv + bias
            draws = mean[None] + rng.standard_normal((400, *mean.shape))
            return SimpleNamespace(mean=mean, y=draws)

        return SimpleNamespace(predict=predict)

    return fit


def test_choose_spec_keeps_the_lowest_heldout_crps():
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (100, 1))
    y = 2.0 * x
    specs = [ResNetSpec(1, 1, width=w, num_layers=2) for w in (4, 5, 6)]
    calls = []
    choice = choose_spec(x, y, fit=_fake_fit({4: 3.0, 5: 0.0, 6: 1.0}, calls), candidates=specs)
    assert choice.spec.width == 5
    assert list(choice.scores["width"]) == [5, 6, 4]  # best first
    assert np.all(np.diff(choice.scores["crps"]) > 0)
    # Every candidate is fitted on the same 80 rows and scored on the other 20.
    assert calls == [(4, 80), (5, 80), (6, 80)] and choice.num_validation == 20
    record = choice.to_record()
    assert record["chosen"]["width"] == 5 and len(record["scores"]) == 3


def test_choose_spec_refuses_what_it_cannot_search():
    x, y = np.zeros((MIN_SEARCH_ROWS - 1, 2)), np.zeros((MIN_SEARCH_ROWS - 1, 1))
    with pytest.raises(ValueError, match="at least 20 training rows"):
        choose_spec(x, y, fit=None)
    x, y = np.zeros((40, 2)), np.zeros((40, 1))
    with pytest.raises(ValueError, match=r"`candidates\[0\]` has 3 inputs"):
        choose_spec(x, y, fit=None, candidates=[ResNetSpec(3, 1)])
    with pytest.raises(ValueError, match="`candidates` is empty"):
        choose_spec(x, y, fit=None, candidates=[])
    with pytest.raises(TypeError, match=r"`candidates\[0\]` must be a ResNetSpec"):
        choose_spec(x, y, fit=None, candidates=["wide"])
    with pytest.raises(ValueError, match="validation_fraction"):
        choose_spec(x, y, fit=None, validation_fraction=1.5)


def test_fit_refuses_an_unknown_spec_before_fitting():
    with pytest.raises(TypeError, match="None \\(a default by data size\\) or 'auto'"):
        brn.fit("big", np.zeros((10, 1)), np.zeros(10))


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*had not converged")
def test_fit_without_spec_uses_the_default_by_size():
    rng = np.random.default_rng(1)
    x = rng.uniform(-1, 1, (30, 2))
    post = brn.fit(None, x, x.sum(1), method="ensemble", num_members=2, num_steps=20)
    assert post.spec == default_spec(2, 1, 30)
    assert post.settings["architecture"]["rule"] == "default by data size"
    assert post.settings["architecture"]["chosen"]["width"] == 8


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*had not converged")
def test_fit_auto_fits_the_network_the_search_chose():
    """The 1-D sine toy: the search scores all 8 candidates and the best one's evidence
    for the prior scales, and the final posterior uses the network and prior with the
    lowest held-out CRPS (recorded with every score)."""
    from bayesresnet.model import scaled_prior

    data = brn.problems.get("sine").sample(seed=0, num_train=60, num_test=10, noise=0.1)
    post = brn.fit("auto", data, method="ensemble", num_members=2, num_steps=200)
    record = post.settings["architecture"]
    assert record["rule"] == "held-out CRPS" and len(record["scores"]) == 9
    best = record["scores"][0]
    assert best["crps"] == min(row["crps"] for row in record["scores"])
    assert (post.spec.width, post.spec.num_layers) == (best["width"], best["num_layers"])
    assert repr(post.spec.basis) == best["basis"] == record["chosen"]["basis"]
    factors = record["prior_factors"]
    assert (factors is not None) == best["prior"].startswith("evidence")
    assert post.prior == (scaled_prior(brn.PriorSpec(), factors) if factors else brn.PriorSpec())


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*had not converged")
def test_choice_survives_save_and_load_and_reaches_the_report(tmp_path):
    from bayesresnet.posterior import load
    from bayesresnet.workflow import describe_model

    rng = np.random.default_rng(2)
    x = rng.uniform(-1, 1, (30, 1))
    post = brn.fit(None, x, x[:, 0], method="ensemble", num_members=2, num_steps=20)
    loaded = load(post.save(tmp_path / "post.npz"))
    assert loaded.settings["architecture"] == post.settings["architecture"]
    assert describe_model(loaded).endswith("; default by data size")
    searched = {
        "rule": "held-out CRPS",
        "num_validation": 6,
        "chosen": {"width": 8, "num_layers": 4, "basis": "Monomial(1)"},
        "scores": [
            {"width": 8, "num_layers": 4, "basis": "Monomial(1)", "crps": 0.1, "rmse": 0.2},
            {"width": 16, "num_layers": 8, "basis": "Monomial(3)", "crps": 0.3, "rmse": 0.4},
        ],
    }
    post.settings["architecture"] = searched
    text = describe_model(post)
    assert "over 2 candidates, best first: 8×4 Monomial(1): 0.1, 16×8 Monomial(3): 0.3" in text
    assert "evidence" not in text
    # The best network's evidence for the prior scales, tried and kept: said so.
    evidence = {"width": 8, "num_layers": 4, "basis": "Monomial(1)", "crps": 0.05, "rmse": 0.1}
    rows = [{**row, "prior": "default"} for row in searched["scores"]]
    post.settings["architecture"] = searched | {
        "scores": [evidence | {"prior": "evidence: weight_scale ×2.00"}, *rows],
        "prior_factors": {"weight_scale": 2.0},
    }
    text = describe_model(post)
    assert (
        "best first: 8×4 Monomial(1) with the evidence's prior scales: 0.05, 8×4 Monomial(1): 0.1"
    ) in text
    assert text.endswith("; prior scales as the evidence asked: weight_scale ×2.00")


def test_run_spec_network_auto():
    from bayesresnet.app.runspec import from_dict
    from bayesresnet.app.toml import SpecError

    base = {"data": {"problem": "sine", "num_train": 30, "num_test": 10}}
    spec = from_dict({**base, "network": {"auto": True}})
    assert spec.network.auto and spec.resnet_spec(spec.load_dataset()) == "auto"
    assert spec.network.to_dict()["auto"] is True
    plain = from_dict({**base, "network": {"width": 4}})
    assert isinstance(plain.resnet_spec(plain.load_dataset()), ResNetSpec)
    assert "auto" not in plain.network.to_dict()
    with pytest.raises(SpecError, match="auto"):
        from_dict({**base, "network": {"auto": "yes"}})


def _fake_evidence_fit(errors: dict, evidence_bias: float, calls: list):
    """_fake_fit whose posteriors carry the members' evidence for two prior scales, and
    whose fit with ``scales`` (the evidence's) has the bias ``evidence_bias``."""

    def fit(spec, x, y, seed, scales=None):
        calls.append((spec.width, scales))
        post = _fake_fit({spec.width: evidence_bias if scales else errors[spec.width]}, [])(
            spec, x, y, seed
        )
        post.extra = {"member_prior_evidence": {"weight_scale": [2.0, 8.0], "bias_scale": [1, 1]}}
        return post

    return fit


@pytest.mark.parametrize("evidence_bias", [0.0, 5.0])
def test_choose_spec_tries_the_best_networks_evidence_and_keeps_it_only_if_it_scores(
    evidence_bias,
):
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, (100, 1))
    y = 2.0 * x
    specs = [ResNetSpec(1, 1, width=w, num_layers=2) for w in (4, 5)]
    calls, seen = [], []
    fit = _fake_evidence_fit({4: 3.0, 5: 1.0}, evidence_bias, calls)
    choice = choose_spec(
        x, y, fit=fit, candidates=specs, evidence=True, progress=lambda i, s: seen.append(i)
    )
    factors = {"weight_scale": 4.0, "bias_scale": 1.0}  # geometric means over the members
    assert calls[:2] == [(4, None), (5, None)]
    assert calls[2][0] == 5 and calls[2][1] == pytest.approx(factors)  # the best network
    assert seen == [0, 1, 2] and choice.spec.width == 5
    assert len(choice.scores) == 3 and set(choice.scores["prior"]) >= {"default"}
    won = evidence_bias < 1.0
    assert choice.prior_factors == (pytest.approx(factors) if won else None)
    assert choice.scores["prior"].iloc[0].startswith("evidence") == won
    assert choice.to_record()["prior_factors"] == choice.prior_factors
    # Without evidence: no such fit, no prior column.
    calls.clear()
    plain = choose_spec(x, y, fit=fit, candidates=specs)
    assert len(calls) == 2 and "prior" not in plain.scores and plain.prior_factors is None


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore:.*had not converged")
def test_the_search_bar_ends_at_its_total_where_there_is_no_evidence_to_try(capsys):
    """A Student-t likelihood has no noise re-estimate, so no evidence: the search's bar
    still ends at 9 of 9, and the prior is the one given. The quick fits' warning that
    their members have not converged (by design) is not passed on; the final fit's is."""
    import warnings

    from bayesresnet.architecture import SEARCH_OPTIONS
    from bayesresnet.infer import show_progress

    data = brn.problems.get("sine").sample(seed=0, num_train=30, num_test=5, noise=0.1)
    prior = brn.PriorSpec(likelihood="student_t")
    with show_progress("lines"), warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        post = brn.fit("auto", data, method="ensemble", prior=prior, num_members=2, num_steps=20)
    said = [str(w.message) for w in caught if "had not converged" in str(w.message)]
    assert said and all("after 60 steps" in text for text in said)  # trained on to 3 × 20
    assert not any(f"after {SEARCH_OPTIONS['num_steps']} steps" in text for text in said)
    lines = [line for line in capsys.readouterr().err.splitlines() if "network search" in line]
    assert lines[-1].startswith("network search: 100% (9/9")
    assert post.settings["architecture"]["prior_factors"] is None and post.prior == prior
    assert len(post.settings["architecture"]["scores"]) == 8
