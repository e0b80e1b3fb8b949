"""The run specification as Python objects: what to fit, how, and what to report.

A :class:`RunSpec` gathers a :class:`DataSpec` (a built-in problem or a data file), a
:class:`NetworkSpec` (a :class:`~bayesresnet.ResNetSpec` without its data sizes), the
:class:`~bayesresnet.PriorSpec`, the inference method with its options and a
:class:`ReportSpec`. Each validates itself on construction with the library's own checks
(``_validate``, ``problems``, ``bases``, ``resnet``, ``data``), so a spec built in Python
and one read from TOML (:mod:`bayesresnet.app.runspec`, which adds file and line to the
messages) are refused for the same reasons with the same words.

As a TOML file (:func:`bayesresnet.app.runspec.load_runspec`; every section but ``[data]``
may be left out; the values shown are the defaults)::

    name = "sine-nuts"          # optional; default: the file's stem. A plain name (no
                                # '/' or '\\', no leading '.'): it names runs/<name>
    [data]
    problem = "sine"            # a built-in problem (see problems.names()), OR
    # train = "data/train.csv"  # your own data (.csv or .npz), relative to this file
    # test = "data/test.csv"    # optional held-out file (CSV only)
    # outputs = ["y"]           # CSV output columns: names, or a count of trailing columns
    # test_fraction = 0.2       # rows held out when there is no test file
    num_train = 100             # problem only
    num_test = 500              # problem only
    noise = 0.1                 # problem only: noise sd relative to the output's sd
    design = "uniform"          # problem only: "uniform" or "lhs"
    seed = 0
    [data.problem_options]      # keyword arguments of the problem (e.g. dim = 6)
    [data.transforms]           # per-column transforms, applied inside the model: a
    # r = "log"                 # log input (spanning orders of magnitude) or log output
                                # (positive, multiplicative noise); raw units in and out
    [network]                   # see ResNetSpec
    width = 16
    num_layers = 20
    basis = "cubic"             # plus degree (monomial, legendre) or num_knots (piecewise_linear)
    activation = "tanh"
    residual = true
    scheme = "euler"            # or "heun" (second order; continuous bases only)
    [prior]                     # the fields of PriorSpec; none: PriorSpec(), or with
    ard = false                 # method = "auto" its choice, PriorSpec(ard=True).
                                # ard: learn a prior scale per input (relevance in the report)
    [inference]
    method = "nuts"             # one of infer.METHODS, or "auto" (see infer.auto)
    seed = 0
    # ... any field of the method's config (NUTSConfig, MCLMCConfig, SVIConfig, EnsembleConfig)
    [report]
    levels = [0.5, 0.9]         # central-interval levels shown, each in (0, 1)
    num_probes = 20             # probe inputs for function-space diagnostics
    sensitivity = false         # add Sobol indices per posterior draw (bars with bands)

Example:
    >>> spec = RunSpec("sine", None, DataSpec(problem="sine"), NetworkSpec(width=8),
    ...                PriorSpec(), "nuts", 0, {}, ReportSpec())
    >>> dataset = spec.load_dataset()
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from bayesresnet import bases, problems
from bayesresnet._validate import (
    check_bool,
    check_choice,
    check_fraction,
    check_int,
    check_levels,
)
from bayesresnet.data import (
    Dataset,
    check_outputs,
    check_transforms,
    load_csv,
    load_npz,
    transform_masks,
)
from bayesresnet.infer import AUTO, METHODS
from bayesresnet.levels import BAND_LEVELS
from bayesresnet.model import PriorSpec
from bayesresnet.resnet import ResNetSpec

__all__ = ["RunSpec", "DataSpec", "NetworkSpec", "ReportSpec", "check_run_name"]


@dataclass(frozen=True)
class DataSpec:
    """Where the data come from: a built-in problem or a data file.

    The fields mirror ``[data]``; paths are used as given (``runspec`` resolves them).

    Attributes:
        problem: A name from ``problems.names()``, or None for a data file.
        problem_options: Keyword arguments of ``problems.get``.
        num_train: Training points drawn from the problem.
        num_test: Test points drawn from the problem.
        noise: Noise sd relative to the output's sd (see ``Problem.sample``).
        design: Training design, ``"uniform"`` or ``"lhs"``.
        train: The data file (``.csv`` or ``.npz``), an absolute path; None for a problem.
        test: An optional CSV test file, an absolute path.
        outputs: CSV output columns (names) or a count of trailing columns.
        test_fraction: Rows held out for testing when there is no test file.
        seed: Seed of the problem's draw or of the train/test split.
        transforms: Per-column transforms ``{column name: "log"}`` (``[data.transforms]``),
            passed to :func:`bayesresnet.fit`; the names must be columns of the data.
    """

    problem: str | None = None
    problem_options: dict[str, Any] = field(default_factory=dict)
    num_train: int = 100
    num_test: int = 500
    noise: float = 0.1
    design: str = "uniform"
    train: Path | None = None
    test: Path | None = None
    outputs: tuple[str, ...] | int | None = None
    test_fraction: float = 0.2
    seed: int = 0
    transforms: dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        if (self.problem is None) == (self.train is None):
            raise ValueError(
                "gives both `problem` and `train`; use one data source: a built-in problem or "
                "your own data file. Delete one of the two lines."
                if self.problem is not None
                else f'needs a data source: `problem = "sine"` (one of {problems.names()}) or '
                '`train = "path/to/train.csv"` (a .csv or .npz file, relative to the spec '
                "file's folder)."
            )
        check_int("seed", self.seed, minimum=0)
        object.__setattr__(self, "transforms", check_transforms(self.transforms))
        if self.problem is not None:
            problems.check_name(self.problem)
            problems.check_sampling(self.num_train, self.num_test, self.noise, self.design)
            if self.transforms:
                transform_masks(self.transforms, *self.column_names())
            return
        check_fraction("test_fraction", self.test_fraction)
        if isinstance(self.outputs, str | list):  # one name, or a list as TOML gives it
            outputs = (self.outputs,) if isinstance(self.outputs, str) else tuple(self.outputs)
            object.__setattr__(self, "outputs", outputs)
        if self.kind == "csv":
            if self.outputs is None:
                raise ValueError(
                    "reads a CSV file but does not say which columns are outputs; add "
                    '`outputs = ["y"]` (column names) or `outputs = 1` (the last column).'
                )
            check_outputs(self.train, self.outputs)
        names = self.column_names() if self.transforms else None
        if names is not None:
            transform_masks(self.transforms, *names)

    def column_names(self) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
        """``(input names, output names)`` known without loading the data: a problem's, or a
        CSV file's header; None for an ``.npz`` archive or an unreadable header."""
        if self.kind == "problem":
            problem = problems.get(self.problem, **self.problem_options)
            return problem.input_names, problem.output_names
        if self.kind == "csv":
            return check_outputs(self.train, self.outputs)
        return None

    @property
    def kind(self) -> str:
        """``"problem"``, ``"csv"`` or ``"npz"``."""
        if self.problem is not None:
            return "problem"
        return "npz" if self.train.suffix.lower() == ".npz" else "csv"

    def load(self) -> Dataset:
        """Draws the problem's data set or reads the file (see ``problems``, ``data``)."""
        if self.kind == "problem":
            problem = problems.get(self.problem, **self.problem_options)
            return problem.sample(
                self.seed,
                self.num_train,
                num_test=self.num_test,
                noise=self.noise,
                design=self.design,
            )
        if self.kind == "npz":
            return load_npz(self.train, test_fraction=self.test_fraction, seed=self.seed)
        outputs = self.outputs if isinstance(self.outputs, int) else list(self.outputs)
        return load_csv(
            self.train,
            outputs=outputs,
            test_path=self.test,
            test_fraction=self.test_fraction,
            seed=self.seed,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``[data]`` table (JSON- and TOML-writable; paths absolute)."""
        if self.kind == "problem":
            out = {
                "problem": self.problem,
                "num_train": self.num_train,
                "num_test": self.num_test,
                "noise": self.noise,
                "design": self.design,
                "seed": self.seed,
            }
            if self.problem_options:
                out["problem_options"] = dict(self.problem_options)
            if self.transforms:
                out["transforms"] = dict(self.transforms)
            return out
        out = {"train": str(self.train)}
        if self.test is not None:
            out["test"] = str(self.test)
        else:
            out["test_fraction"] = self.test_fraction
        if self.outputs is not None:
            out["outputs"] = self.outputs if isinstance(self.outputs, int) else list(self.outputs)
        out["seed"] = self.seed
        if self.transforms:
            out["transforms"] = dict(self.transforms)
        return out


_RESNET_DEFAULTS = {f.name: f.default for f in dataclasses.fields(ResNetSpec)}


@dataclass(frozen=True)
class NetworkSpec:
    """The ``[network]`` section: a :class:`~bayesresnet.ResNetSpec` without its data sizes.

    Attributes:
        width: Hidden width.
        num_layers: Number of residual layers.
        basis: A name accepted by ``bases.make_basis``.
        degree: Degree of a ``"monomial"`` or ``"legendre"`` basis (None for others).
        num_knots: Knots of a ``"piecewise_linear"`` basis (None for others).
        activation: One of the activations of ``bayesresnet.resnet``.
        residual: ResNet update (True) or MLP baseline (False).
        scheme: ``"euler"`` or ``"heun"`` (see ``ResNetSpec``).
        auto: choose width, number of layers and depth basis from the data, by the
            held-out CRPS of quick ensembles over a small grid
            (:func:`bayesresnet.architecture.choose_spec`); ``width``, ``num_layers`` and
            ``basis`` are then not used. The scores are kept in the run record.
    """

    width: int = _RESNET_DEFAULTS["width"]
    num_layers: int = _RESNET_DEFAULTS["num_layers"]
    basis: str = "cubic"
    degree: int | None = None
    num_knots: int | None = None
    activation: str = _RESNET_DEFAULTS["activation"]
    residual: bool = _RESNET_DEFAULTS["residual"]
    scheme: str = _RESNET_DEFAULTS["scheme"]
    auto: bool = False

    def __post_init__(self):
        check_bool("auto", self.auto)
        self.resnet_spec(in_features=1, out_features=1)  # every check of the library, now

    def make_basis(self) -> bases.Basis:
        """The depth basis, ``bases.make_basis(basis, degree=... | num_knots=...)``."""
        sizes = {"degree": self.degree, "num_knots": self.num_knots}
        return bases.make_basis(self.basis, **{k: v for k, v in sizes.items() if v is not None})

    def resnet_spec(self, in_features: int, out_features: int) -> ResNetSpec:
        """The network for ``in_features`` inputs and ``out_features`` outputs."""
        return ResNetSpec(
            in_features=in_features,
            out_features=out_features,
            width=self.width,
            num_layers=self.num_layers,
            basis=self.make_basis(),
            activation=self.activation,
            residual=self.residual,
            scheme=self.scheme,
        )

    def to_dict(self) -> dict[str, Any]:
        """The ``[network]`` table (``degree``/``num_knots`` only when set, ``auto`` only
        when true)."""
        table = {k: v for k, v in dataclasses.asdict(self).items() if v is not None}
        if not self.auto:
            del table["auto"]
        return table


@dataclass(frozen=True)
class ReportSpec:
    """The ``[report]`` section.

    Attributes:
        levels: Central-interval levels shown, each in (0, 1).
        num_probes: Probe inputs for function-space diagnostics.
        sensitivity: Add a section of Sobol indices per posterior draw (first-order and
            total, with credible bands, on the training data's box; as
            ``bayesresnet sensitivity`` computes them with its default settings).
    """

    levels: tuple[float, ...] = BAND_LEVELS
    num_probes: int = 20
    sensitivity: bool = False

    def __post_init__(self):
        object.__setattr__(self, "levels", check_levels("levels", self.levels))
        check_int("num_probes", self.num_probes, minimum=1)
        check_bool("sensitivity", self.sensitivity)

    def to_dict(self) -> dict[str, Any]:
        """The ``[report]`` table."""
        return {
            "levels": list(self.levels),
            "num_probes": self.num_probes,
            "sensitivity": self.sensitivity,
        }


def check_run_name(name) -> str:
    """``name`` is a plain folder name: the default output folder is ``runs/<name>``.

    A plain name is a non-empty string without ``/``, ``\\``, control characters or a
    leading dot (which also rules out ``.`` and ``..``, hidden folders and the run
    folder's own staging names), and without surrounding spaces.

    Raises:
        ValueError: Naming the rule and the value.
    """
    if (
        not isinstance(name, str)
        or not name.strip()
        or name != name.strip()
        or name.startswith(".")
        or re.search(r"[/\\\x00-\x1f\x7f]", name)
    ):
        raise ValueError(
            "`name` must be a non-empty string without '/' or '\\', a leading '.' or control "
            f"characters (it names the output folder runs/<name>); got {name!r}. Use a plain "
            'name such as "borehole-nuts".'
        )
    return name


@dataclass(frozen=True)
class RunSpec:
    """A validated run specification: what to fit, how, and what to report.

    Build one directly, or read one with ``runspec.load_runspec`` (TOML); either way
    every section is checked on construction.

    Attributes:
        name: The run's name (default: the spec file's stem).
        path: The TOML file it was read from, or None.
        data: Where the data come from.
        network: The architecture, less the data sizes.
        prior: Prior and likelihood; ``None`` where the spec has no (or an empty) ``[prior]``:
            ``PriorSpec()``, or with ``method = "auto"`` the prior it chooses
            (:func:`bayesresnet.infer.auto.choose_prior`).
        method: A key of ``infer.METHODS``, or ``"auto"`` (the method
            :func:`bayesresnet.infer.choose_method` chooses; no options).
        seed: Seed of the inference run.
        options: The method's options as given (the rest take the config's defaults).
        report: What the report shows.
    """

    name: str
    path: Path | None
    data: DataSpec
    network: NetworkSpec
    prior: PriorSpec | None
    method: str
    seed: int
    options: dict[str, Any]
    report: ReportSpec

    def __post_init__(self):
        check_run_name(self.name)
        check_choice("method", self.method, (AUTO, *sorted(METHODS)))
        check_int("seed", self.seed, minimum=0)

    def load_dataset(self) -> Dataset:
        """Draws or reads the data set."""
        return self.data.load()

    def resnet_spec(self, dataset: Dataset) -> ResNetSpec | str:
        """The network, with input and output sizes taken from ``dataset``; ``"auto"``
        when ``[network] auto = true`` (``bayesresnet.fit`` then chooses it)."""
        if self.network.auto:
            return "auto"
        return self.network.resnet_spec(dataset.num_inputs, dataset.num_outputs)

    def method_config(self):
        """The method's frozen config (``NUTSConfig``, ``MCLMCConfig``, ``SVIConfig`` or
        ``EnsembleConfig``); None for ``"auto"``, whose config fit chooses from the data."""
        if self.method == AUTO:
            return None
        return METHODS[self.method][0](**self.options)

    def fit_kwargs(self) -> dict[str, Any]:
        """Keyword arguments of :func:`bayesresnet.fit`: method, seed, prior, the data's
        transforms (when any) and the method's options."""
        transforms = {"transforms": dict(self.data.transforms)} if self.data.transforms else {}
        return {
            "method": self.method,
            "seed": self.seed,
            "prior": self.prior,
            **transforms,
            **self.options,
        }

    def to_dict(self) -> dict[str, Any]:
        """The spec as nested dicts (JSON- and TOML-writable), as ``runspec.from_dict`` reads."""
        return {
            "name": self.name,
            "data": self.data.to_dict(),
            "network": self.network.to_dict(),
            "prior": dataclasses.asdict(self.prior) if self.prior is not None else {},
            "inference": {"method": self.method, "seed": self.seed, **self.options},
            "report": self.report.to_dict(),
        }
