"""bayesresnet: Bayesian surrogate modelling with weight-parameterized residual networks."""

from bayesresnet import bases, problems, sites
from bayesresnet.data import Dataset, load_csv, load_npz
from bayesresnet.infer import fit
from bayesresnet.model import PriorSpec, Scaler, fit_scaler, make_model, wp_resnet_model
from bayesresnet.posterior import Posterior, Prediction, load
from bayesresnet.resnet import ResNetSpec, apply, init_params, num_params

__version__ = "0.1.0"

# Submodules with heavier imports (ArviZ, matplotlib) load on first use.
_LAZY = (
    "calibration",
    "diagnostics",
    "plots",
    "report",
    "workflow",
    "levels",
    "infer",
    "marginal",
    "ode",
    "ode_plots",
    "stiffness",
    "depth_scaling",
    "sensitivity",
    "inverse",
    "architecture",
    "app",
)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        return importlib.import_module(f"bayesresnet.{name}")
    raise AttributeError(f"module 'bayesresnet' has no attribute {name!r}")


__all__ = [
    "bases",
    "problems",
    "sites",
    "Dataset",
    "load_csv",
    "load_npz",
    "fit",
    "Posterior",
    "Prediction",
    "load",
    "PriorSpec",
    "Scaler",
    "fit_scaler",
    "make_model",
    "wp_resnet_model",
    "ResNetSpec",
    "apply",
    "init_params",
    "num_params",
]
