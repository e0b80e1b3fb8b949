"""The benchmarks' bookkeeping, and a smoke run of the surrogate benchmark (the measuring
runs themselves happen outside the suite)."""

import json
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import bayesresnet as brn

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
from bench_inference import start_results  # noqa: E402


def test_merge_keeps_the_other_problems_and_the_machine_figures(tmp_path):
    out = tmp_path / "inference.json"
    fresh = start_results(out, merge=True, quick=False)  # no file yet: a fresh start
    assert fresh["methods"] == {} and "gradients" not in fresh and fresh["quick"] is False
    previous = {"quick": False, "device": "old", "gradients": [1, 2],
                "methods": {"default": {"nuts": {"ess_min": 3.0}}}}  # fmt: skip
    out.write_text(json.dumps(previous))
    merged = start_results(out, merge=True, quick=False)
    assert merged["methods"] == previous["methods"] and merged["gradients"] == [1, 2]
    assert start_results(out, merge=False, quick=False)["methods"] == {}
    with pytest.raises(ValueError, match=r"--merge: .*inference.json was written with quick=False"):
        start_results(out, merge=True, quick=True)


def test_merge_reruns_only_the_named_methods(tmp_path, monkeypatch):
    import bench_inference

    out = tmp_path / "inference.json"
    old = {"wall_s": 1.0, "gradient_evaluations": 10, "ess_min": 5.0, "ess_per_1000_gradients": 0.5,
           "ess_per_s": 5.0, "test_rmse": 0.1, "coverage_90": 0.9}  # fmt: skip
    rows = {"nuts_baseline": old, "nuts": old | {"wall_s": 2.0}}
    previous = {"quick": False, "device": "cpu", "platform": "p", "jax": "j", "gradients": [1],
                "methods": {"borehole": rows}}  # fmt: skip
    out.write_text(json.dumps(previous))
    settings = {"nuts_baseline": ("nuts", {"a": 0}), "nuts": ("nuts", {"a": 1})}
    monkeypatch.setattr(bench_inference, "problem", lambda name, quick: (None, None, settings))
    monkeypatch.setattr(bench_inference, "bench_method", lambda s, d, m, o: old | {"wall_s": 3.0})
    monkeypatch.setattr(bench_inference, "plot", lambda r, path: None)
    monkeypatch.setattr(bench_inference, "format_table", lambda r: "")
    bench_inference.main(
        ["--problems", "borehole", "--methods", "nuts", "--merge", "--out", str(out)]
    )
    rows = json.loads(out.read_text())["methods"]["borehole"]
    assert rows["nuts_baseline"] == old  # kept, not rerun
    assert rows["nuts"]["wall_s"] == 3.0 and rows["nuts"]["options"] == {"a": 1}


def test_gradient_counts_come_from_each_methods_engine():
    """MAP starts, warm-up and sampling (samplers), steps × particles (SVI), members × steps."""
    from types import SimpleNamespace

    from bench_inference import gradient_evaluations

    sampled = {"num_warmup_gradient_evaluations": 300, "num_gradient_evaluations": 700}
    nuts = SimpleNamespace(
        method="nuts", settings={"init_steps": 10, "num_chains": 4, "init": "map"}, extra=sampled
    )
    assert gradient_evaluations(nuts) == 10 * 4 + 300 + 700
    nuts.settings |= {"init_members": 6}
    assert gradient_evaluations(nuts) == 10 * 6 + 300 + 700
    nuts.settings |= {"init": "prior"}
    assert gradient_evaluations(nuts) == 300 + 700
    mclmc = SimpleNamespace(
        method="mclmc", settings={"init_steps": 5, "num_chains": 2}, extra=sampled
    )
    assert gradient_evaluations(mclmc) == 5 * 2 + 300 + 700
    svi = {"init": "map", "init_steps": 20, "steps_run": 100, "num_particles": 3}
    assert gradient_evaluations(SimpleNamespace(method="svi", settings=svi, extra={})) == 320
    ensemble = SimpleNamespace(
        method="ensemble", settings={"num_members": 4, "num_steps": 50}, extra={}
    )
    assert gradient_evaluations(ensemble) == 200


# --------------------------------------------------------------------------- bench_surrogates


@pytest.mark.slow
def test_surrogates_tiny_run_scores_the_gp_and_the_control_loses_to_it(tmp_path):
    """``--tiny``: sine, N = 50, both noise levels; the GP and the control (no network)."""
    import bench_surrogates

    out = tmp_path / "tiny.json"
    bench_surrogates.main(["--tiny", "--variants", "train_mean", "--out", str(out)])
    results = json.loads(out.read_text())
    rows = results["rows"]
    cases = [(r["problem"], r["noise"], r["n"], r["method"]) for r in rows]
    assert cases == [
        ("sine", noise, 50, method) for noise in (0.0, 0.05) for method in ("gp", "train_mean")
    ]
    for r in rows:
        assert 0.0 <= r["coverage_90"] <= 1.0 and r["crps"] > 0 and r["rel_rmse"] > 0
        assert r["fit_s"] > 0 and r["predict_s"] > 0 and isinstance(r["warnings"], list)
    by = {(r["noise"], r["method"]): r for r in rows}
    for noise in (0.0, 0.05):
        gp, control = by[noise, "gp"], by[noise, "train_mean"]
        assert gp["crps_ratio_gp"] == 1.0 and "Matern" in gp["kernels"][0]
        # Normal(ȳ, s) against a GP on a smooth 1-D function: the metric must tell them apart.
        assert control["crps"] > 5 * gp["crps"] and control["crps_ratio_gp"] > 5
        assert control["rel_rmse"] > 0.5  # the truth's spread, left unexplained
    assert results["settings"]["tiny"] is True and results["gp_ran_at"] == [50]
    table = out.with_suffix(".md").read_text()
    assert "| sine | 0.05 | 50 | train_mean |" in table and "GP skipped" not in table
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"


@pytest.mark.slow
def test_surrogates_tiny_run_fits_a_bayesresnet_variant(tmp_path):
    """A tiny ensemble through ``brn.fit``: scored, timed, with its verdict and settings."""
    import bench_surrogates

    out = tmp_path / "ensemble.json"
    argv = ["--tiny", "--noise", "0.05", "--variants", "ensemble", "--out", str(out)]
    gp, ensemble = bench_surrogates.main(argv)["rows"]
    assert (gp["method"], ensemble["method"]) == ("gp", "ensemble")
    assert ensemble["verdict"] in ("pass", "warn", "fail") and ensemble["fit_s"] > 0
    assert ensemble["settings"]["num_members"] == "2" and "width=4" in ensemble["spec"]
    assert ensemble["crps_ratio_gp"] == ensemble["crps"] / gp["crps"]
    assert 0 < ensemble["crps_ratio_gp_se"] < ensemble["crps_ratio_gp"]
    assert "_crps_points" not in ensemble  # per-point values are not saved
    assert 0.0 <= ensemble["coverage_90"] <= 1.0 and ensemble["num_draws"] >= 1000


@pytest.mark.slow
def test_surrogates_cached_times_read_the_programs_from_a_compilation_cache_of_their_own(
    tmp_path, monkeypatch
):
    """``--cached``: the second timing of a variant loads programs from the cache the run
    before it filled (JAX records cache hits: the first fit ran with no cache), the ratio
    to the GP is of those times, and the cache is switched off and its folder removed."""
    import bench_surrogates
    import jax

    hits, folders = [], []

    def count(event, **kwargs):
        if event == "/jax/compilation_cache/cache_hits":
            hits.append(event)

    jax.monitoring.register_event_listener(count)
    enable = bench_surrogates.enable_compile_cache

    def recording(folder):
        folders.append(folder)
        return enable(folder)

    monkeypatch.setattr(bench_surrogates, "enable_compile_cache", recording)
    out = tmp_path / "cached.json"
    argv = ["--tiny", "--noise", "0.05", "--variants", "ensemble", "--cached", "--out", str(out)]
    try:
        results = bench_surrogates.main(argv)
    finally:
        jax.monitoring.unregister_event_listener(count)
    gp, ensemble = results["rows"]
    assert hits, "the timed fit compiled everything again"
    assert "total_cached_s" not in gp and results["settings"]["cached"] is True
    assert ensemble["total_cached_s"] == ensemble["fit_cached_s"] + ensemble["predict_cached_s"]
    assert ensemble["time_ratio_gp_cached"] == ensemble["total_cached_s"] / gp["total_s"]
    assert f"(cached {ensemble['time_ratio_gp_cached']:.1f})" in out.with_suffix(".md").read_text()
    assert folders[-1] is None and not folders[0].parent.exists()
    assert jax.config.jax_compilation_cache_dir is None


def test_surrogates_cached_is_refused_where_jax_was_given_a_cache(tmp_path, capsys):
    """``--cached`` times fits with a cache of its own; a cache JAX already has would make
    the first fit of every method a cached one, so the run stops before measuring."""
    import bench_surrogates
    import jax
    from jax.experimental.compilation_cache import compilation_cache

    argv = ["--tiny", "--variants", "train_mean", "--cached", "--out", str(tmp_path / "c.json")]
    jax.config.update("jax_compilation_cache_dir", str(tmp_path / "theirs"))
    try:
        with pytest.raises(SystemExit):
            bench_surrogates.parse_args(argv)
    finally:
        jax.config.update("jax_compilation_cache_dir", None)
        compilation_cache.reset_cache()
    err = capsys.readouterr().err
    assert "--cached times fits with a compilation cache of its own" in err
    assert "unset JAX_COMPILATION_CACHE_DIR" in err
    assert bench_surrogates.parse_args(argv).cached is True  # without one it is taken
    assert not (tmp_path / "c.json").exists()


def test_surrogates_skips_the_gp_above_gp_max_n_and_never_overwrites(tmp_path, capsys):
    import bench_surrogates

    out = tmp_path / "skip.json"
    argv = ["--tiny", "--noise", "0", "--variants", "train_mean", "--gp-max-n", "10"]
    results = bench_surrogates.main([*argv, "--out", str(out)])
    assert [r["method"] for r in results["rows"]] == ["train_mean"]
    assert "crps_ratio_gp" not in results["rows"][0] and results["gp_ran_at"] == []
    assert "GP skipped above N = 10 (`--gp-max-n`): N = [50]." in capsys.readouterr().out
    with pytest.raises(SystemExit):
        bench_surrogates.main([*argv, "--out", str(out)])
    assert "exist: choose another --out (runs never overwrite files)" in capsys.readouterr().err


def test_surrogates_crps_ratio_se_is_the_spread_of_the_ratio_over_test_sets():
    """Paired per-point CRPS values ``a = 1.1·b + e``: over 1 000 test sets of 200 points,
    the standard deviation of ``mean(a)/mean(b)`` matches the mean of ``ratio_se`` (the sd
    of 1 000 ratios is known to about 2.2 %; the tolerance is 10 %)."""
    from bench_surrogates import ratio_se

    rng = np.random.default_rng(0)
    ratios, ses = [], []
    for _ in range(1000):
        b = rng.exponential(1.0, 200)
        a = 1.1 * b + rng.normal(0.0, 0.3, 200) + 0.2 * rng.exponential(1.0, 200)
        ratios.append(a.mean() / b.mean())
        ses.append(ratio_se(a, b))
    assert abs(np.std(ratios, ddof=1) / np.mean(ses) - 1) < 0.10, (np.std(ratios), np.mean(ses))
    # Pairing matters: the same points with the noise left out give a far smaller error.
    b = rng.exponential(1.0, 200)
    assert ratio_se(1.1 * b, b) < 1e-12 < ratio_se(1.1 * rng.permutation(b), b)


def test_surrogates_score_matches_the_normal_closed_form():
    """CRPS of N(μ, σ) at y is σ·(z(2Φ(z) − 1) + 2φ(z) − 1/√π), z = (y − μ)/σ; 1 000 draws
    a point, 2 000 points: the tolerance is 4 Monte-Carlo standard errors of the mean."""
    from bench_surrogates import Predictive, normal_draws, score
    from scipy import stats

    rng = np.random.default_rng(1)
    truth = rng.normal(size=(2000, 2))
    output_std = np.array([2.0, 0.5])
    sd = np.array([0.3, 0.1])
    mean = truth + 0.1 * output_std  # relative RMSE 0.1 on both outputs
    y = mean + sd * rng.standard_normal(truth.shape)  # calibrated observations
    draws = normal_draws(mean, np.broadcast_to(sd, mean.shape), seed=0)
    m = score(Predictive(mean, draws, 1.0, 0.5, {}), truth, y, output_std)
    np.testing.assert_allclose(m["rel_rmse_per_output"], [0.1, 0.1], rtol=1e-12)
    z = (y - mean) / sd
    exact = sd * (z * (2 * stats.norm.cdf(z) - 1) + 2 * stats.norm.pdf(z) - 1 / np.sqrt(np.pi))
    from bayesresnet.calibration import crps

    per_point = crps(draws, y) / output_std
    se = (per_point - exact / output_std).std(axis=0) / np.sqrt(len(y))  # Monte-Carlo only
    expected = (exact / output_std).mean(axis=0)
    assert np.all(np.abs(np.array(m["crps_per_output"]) - expected) < 4 * se)
    # Coverage of calibrated Normals: binomial error sqrt(0.09/2000) = 0.0067, 4 of them.
    assert np.all(np.abs(np.array(m["coverage_90_per_output"]) - 0.9) < 4 * 0.0067 + 4 / 1001)
    assert m["total_s"] == 1.5


def test_surrogates_gp_predictive_sd_includes_the_white_noise():
    """100 points of a line with noise sd 0.1: the fitted noise variance has a relative sd
    of about √(2/100) = 14 %, so the predictive variance lies within [0.6, 1.6] × 0.01
    (the function's own uncertainty is far smaller); without the noise it would be ~0."""
    import bench_surrogates

    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(100, 1))
    y = 0.5 * x + 0.1 * rng.standard_normal(x.shape)
    data = brn.Dataset(
        x_train=x, y_train=y, x_test=x[:0], y_test=y[:0], input_names=("x",), output_names=("y",)
    )
    x_test = np.linspace(-0.8, 0.8, 50)[:, None]
    with warnings.catch_warnings():  # the optimizer may stop at a length-scale bound
        warnings.simplefilter("ignore")
        pred = bench_surrogates.fit_gp(data, 0, x_test)
    variance = np.median(pred.draws.var(axis=0))
    assert 0.6 * 0.01 < variance < 1.6 * 0.01
    assert pred.draws.shape == (bench_surrogates.NUM_NORMAL_DRAWS, 50, 1)
    np.testing.assert_allclose(pred.mean[:, 0], 0.5 * x_test[:, 0], atol=0.05)


def test_surrogate_variants_build_the_fit_arguments():
    import bench_surrogates as bs

    assert not set(bs.VARIANTS) & (set(bs.CONTROLS) | {"gp"})
    for name, variant in bs.VARIANTS.items():
        bs.check_variant(name, variant)
        method = variant["method"]  # every variant's options are its method's settings
        if method == brn.infer.AUTO:
            continue  # no options (check_variant says so)
        brn.infer.base.config_from_options(
            brn.infer.METHODS[method].config, method, variant.get("options", {})
        )
        brn.PriorSpec(**variant.get("prior", {}))
    data = brn.problems.get("ishigami").sample(seed=0, num_train=10, num_test=0)
    kwargs = bs.variant_arguments(bs.VARIANTS["ensemble"], data, tiny=False)
    spec = kwargs.pop("spec")
    assert (spec.in_features, spec.out_features, spec.width, spec.num_layers) == (3, 1, 8, 8)
    assert spec.basis == brn.bases.Cubic() and kwargs == {"method": "ensemble", "prior": None}
    variant = {"method": "mclmc", "options": {"num_chains": 3}, "spec": {"width": 5},
               "prior": {"weight_scale": 2.0}}  # fmt: skip
    kwargs = bs.variant_arguments(variant, data, tiny=True)
    assert kwargs["spec"].width == 4 and kwargs["spec"].num_layers == 2  # --tiny wins
    assert kwargs["num_chains"] == 2 and kwargs["prior"] == brn.PriorSpec(weight_scale=2.0)
    assert (
        bs.variant_arguments({"method": "ensemble", "spec": "auto"}, data, False)["spec"] == "auto"
    )
    assert bs.variant_arguments(bs.VARIANTS["ensemble+sized"], data, False)["spec"] is None
    auto = {"spec": None, "method": "auto", "prior": None}  # what brn.fit(None, data) runs
    assert bs.variant_arguments(bs.VARIANTS["auto"], data, tiny=True) == auto
    with pytest.raises(ValueError, match=r"variant 'z': method 'auto' takes no `options`"):
        bs.check_variant("z", {"method": "auto", "options": {"num_members": 2}})
    with pytest.raises(ValueError, match=r"variant 'x' must have a `method` and only the keys"):
        bs.check_variant("x", {"method": "ensemble", "option": {}})
    with pytest.raises(ValueError, match=r"variant 'y': `method` must be one of .*got 'laplace'"):
        bs.check_variant("y", {"method": "laplace"})


@pytest.mark.slow
def test_surrogates_combine_joins_disjoint_runs_and_refuses_overlaps(tmp_path, capsys):
    import bench_surrogates

    parts = []
    for noise in ("0", "0.05"):
        parts.append(tmp_path / f"noise{noise}.json")
        argv = ["--tiny", "--noise", noise, "--variants", "train_mean", "--out", str(parts[-1])]
        bench_surrogates.main(argv)
    runs = [json.loads(p.read_text()) for p in parts]
    out = tmp_path / "all.json"
    combined = bench_surrogates.main(["--combine", *map(str, parts), "--out", str(out)])
    assert combined["rows"] == runs[0]["rows"] + runs[1]["rows"]
    assert combined["settings"]["noise"] == [0.0, 0.05] and combined["gp_ran_at"] == [50]
    assert [p["file"] for p in combined["parts"]] == ["noise0.json", "noise0.05.json"]
    assert "Combined from runs in parallel processes" in out.with_suffix(".md").read_text()
    with pytest.raises(ValueError, match=r"cases in more than one of the runs: \[\('sine', 0.0"):
        bench_surrogates.combine([parts[0], parts[0]])
    other = tmp_path / "other.json"
    other.write_text(json.dumps(runs[1] | {"settings": runs[1]["settings"] | {"gp_max_n": 9}}))
    with pytest.raises(
        ValueError, match=r"other.json was run with other settings .*\['gp_max_n'\]"
    ):
        bench_surrogates.combine([parts[0], other])
    # A run from before --cached (no such setting) joins an uncached one, not a cached one.
    older = tmp_path / "older.json"
    settings = {k: v for k, v in runs[1]["settings"].items() if k != "cached"}
    older.write_text(json.dumps(runs[1] | {"settings": settings}))
    assert bench_surrogates.combine([parts[0], older])["settings"]["cached"] is False
    cached = tmp_path / "cached.json"
    cached.write_text(json.dumps(runs[1] | {"settings": settings | {"cached": True}}))
    with pytest.raises(ValueError, match=r"cached.json was run with other settings .*\['cached'\]"):
        bench_surrogates.combine([older, cached])
    with pytest.raises(SystemExit):
        bench_surrogates.main(["--combine", str(parts[0])])
    assert "--combine needs --out" in capsys.readouterr().err


@pytest.mark.parametrize("total_s", [0.06874538862804036, 1e-7, 3.0])
def test_surrogates_figure_of_one_point_draws_without_a_warning(tmp_path, total_s):
    """One method at one N on log axes: at 0.0687 s matplotlib's own limits once made
    tight_layout divide by zero (an error under ``filterwarnings = error``); times under
    1 ms are drawn at 1 ms."""
    import bench_surrogates

    row = {"problem": "sine", "noise": 0.0, "n": 50, "seed": 0, "method": "train_mean"}
    results = {"rows": [row | {"total_s": total_s}], "gp_ran_at": []}
    bench_surrogates.plot(results, tmp_path / "f.png")
    assert (tmp_path / "f.png").stat().st_size > 0


def test_nuts_geometry_checks_its_cases_and_never_overwrites(tmp_path, capsys):
    import nuts_geometry

    with pytest.raises(SystemExit):
        nuts_geometry.main(["--cases", "free,steep", "--out", str(tmp_path / "a.json")])
    assert "unknown case(s) ['steep']" in capsys.readouterr().err
    (tmp_path / "b.json").write_text("{}")
    with pytest.raises(SystemExit):
        nuts_geometry.main(["--cases", "free", "--out", str(tmp_path / "b.json")])
    assert "exists" in capsys.readouterr().err
    assert (tmp_path / "b.json").read_text() == "{}"


@pytest.mark.slow
def test_refit_tiny_run_compiles_nothing_on_a_kept_refit(tmp_path):
    import bench_refit

    out = tmp_path / "refit.json"
    results = bench_refit.main(["--tiny", "--sizes", "60", "--repeats", "2", "--out", str(out)])
    (row,) = results["sizes"]
    assert all(r["compiles"] > 0 for r in row["cold"])  # each cold fit compiles its programs
    assert row["kept"][0]["compiles"] > 0 and row["kept"][1]["compiles"] == 0
    assert json.loads(out.read_text())["sizes"][0]["refit_ratio"] == row["refit_ratio"]
    assert "later kept / cold" in out.with_suffix(".md").read_text()
    with pytest.raises(SystemExit):
        bench_refit.parse_args(["--repeats", "1"])
    before = out.read_bytes()
    with pytest.raises(SystemExit, match="refit.json exists"):
        bench_refit.main(["--tiny", "--out", str(out)])  # refused before any fit
    assert out.read_bytes() == before


@pytest.mark.slow
def test_prior_evidence_tiny_run_fits_twice_and_never_overwrites(tmp_path, capsys):
    import prior_evidence

    out = tmp_path / "evidence.json"
    argv = ["--problems", "sine", "--noise", "0.05", "--seeds", "0", "--rows", "40"]
    prior_evidence.main([*argv, "--check", "--out", str(out)])
    (case,) = json.loads(out.read_text())["cases"]
    default, updated = case["default"], case["evidence"]
    assert default["scales"] == dict.fromkeys(prior_evidence.SCALES, 1.0)
    assert updated["scales"] == pytest.approx(default["factors"])  # the second fit used them
    assert all(np.isfinite(v) and v > 0 for v in default["factors"].values())
    assert case["crps_ratio"] == pytest.approx(updated["crps"] / default["crps"])
    # The check fits 32 of the 40 rows and scores the other 8; its choice sets the outcome.
    split = prior_evidence.held_out(brn.problems.get("sine").sample(0, 40, 5, noise=0.05), 0)
    assert (len(split.x_train), len(split.x_test)) == (32, 8)
    chosen = case["held_out_ratio"] < 1.0
    assert case["held_out_chooses_evidence"] == chosen
    assert case["chosen_crps_ratio"] == (case["crps_ratio"] if chosen else 1.0)
    before = out.read_text()
    with pytest.raises(SystemExit):
        prior_evidence.main([*argv, "--out", str(out)])
    assert "never overwritten" in capsys.readouterr().err
    assert out.read_text() == before
