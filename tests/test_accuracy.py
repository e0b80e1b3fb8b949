"""End-to-end accuracy on borehole: 200 noise-free training points, 1000 held-out points.

Network for all three methods: width 8, 8 residual layers, cubic basis, tanh, default
prior: 369 parameters. Targets: NUTS and the ensemble reach a
held-out RMSE below 3% of sd(y), SVI below 10%, and NUTS's 90% intervals cover between
80% and 97% of held-out points.
"""

import warnings

import numpy as np
import pytest

import bayesresnet as brn

SPEC = brn.ResNetSpec(8, 1, width=8, num_layers=8, basis=brn.bases.Cubic())


@pytest.fixture(scope="module")
def borehole():
    return brn.problems.get("borehole").sample(0, num_train=200, num_test=1000, noise=0.0)


def scores(post, ds):
    pred = post.predict(ds.x_test)
    rel_rmse = np.sqrt(np.mean((pred.mean - ds.y_test) ** 2)) / ds.y_test.std()
    lo, hi = pred.interval(0.9)
    coverage = np.mean((ds.y_test >= lo) & (ds.y_test <= hi))
    return rel_rmse, coverage


@pytest.mark.slow
def test_nuts_accuracy_and_coverage(borehole):
    post = brn.fit(
        SPEC,
        borehole,
        method="nuts",
        num_chains=1,
        num_warmup=200,
        num_samples=300,
        max_tree_depth=7,
        init_steps=1000,
    )
    rel_rmse, coverage = scores(post, borehole)
    assert rel_rmse < 0.03, rel_rmse
    # 1000 held-out points: the binomial sd of a coverage near 0.9 is 0.01, well inside
    # the band's half-width.
    assert 0.80 <= coverage <= 0.97, coverage


@pytest.mark.slow
def test_ensemble_accuracy(borehole):
    with warnings.catch_warnings():
        # Noise-free data: the noise scale keeps shrinking, so members never meet the
        # convergence tolerance; the warning is expected here.
        warnings.simplefilter("ignore", RuntimeWarning)
        post = brn.fit(SPEC, borehole, method="ensemble", num_members=4, num_steps=1000)
    rel_rmse, _ = scores(post, borehole)
    assert rel_rmse < 0.03, rel_rmse


@pytest.mark.slow
def test_svi_accuracy(borehole):
    post = brn.fit(SPEC, borehole, method="svi", guide="lowrank", num_steps=1000, init_steps=1000)
    rel_rmse, _ = scores(post, borehole)
    assert rel_rmse < 0.10, rel_rmse
