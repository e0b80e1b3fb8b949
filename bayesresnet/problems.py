"""Built-in analytic simulators ("test functions") that generate `Dataset`s.

Each problem is a cheap deterministic function f: [lower, upper]^D → R^O with a published
form, so a surrogate's accuracy and calibration can be checked against the truth:

| name         | D    | O | use                                                      |
|--------------|------|---|----------------------------------------------------------|
| `sine`       | 1    | 1 | the default; a smooth 1-D toy for plots and quick runs   |
| `ishigami`   | 3    | 1 | strongly non-linear and non-monotonic, with interactions |
| `borehole`   | 8    | 1 | physical model of water flow, inputs on very different scales |
| `friedman1`  | 10   | 1 | five active inputs and five inert ones                   |
| `sobol_g`    | dim  | 1 | tunable effective dimension via the coefficients a_i     |
| `oscillator` | 4    | 3 | multi-output: damped oscillator displacement at 3 times  |

Example:
    >>> from bayesresnet import problems
    >>> problem = problems.get("ishigami")
    >>> data = problem.sample(seed=0, num_train=200, num_test=1000, noise=0.05)
    >>> y = problem.evaluate(data.x_test)          # noise-free truth, [1000, 1]

`get(name, **kwargs)` builds a problem by name (`kwargs` parametrize it, e.g.
`get("sobol_g", dim=6)`); each name is also available as a `make_*` function whose
docstring gives the formula, input ranges and reference.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import cached_property

import numpy as np
from scipy.stats import qmc

from bayesresnet._validate import (
    check_array,
    check_choice,
    check_int,
    check_number,
    check_values,
    did_you_mean,
)
from bayesresnet.data import Dataset

__all__ = [
    "DEFAULT",
    "DESIGNS",
    "Problem",
    "check_name",
    "check_sampling",
    "get",
    "make_borehole",
    "make_friedman1",
    "make_ishigami",
    "make_oscillator",
    "make_sine",
    "make_sobol_g",
    "names",
]

DEFAULT = "sine"
"""The name of the problem used when none is given."""

DESIGNS = ("uniform", "lhs")

# `Problem.output_std` is a Monte-Carlo estimate over this many uniform points drawn with a
# fixed seed, so it is deterministic; its relative error is about 1/sqrt(2 * 2**17) ≈ 0.2 %
# (times a kurtosis factor of order one).
_STD_NUM_POINTS = 2**17
_STD_SEED = 20_240_601


@dataclass(frozen=True, eq=False)
class Problem:
    """An analytic simulator: a named function on a box, with a sampler for data sets.

    Problems are built by `get` or the `make_*` functions; constructing one directly is
    possible by passing the vectorized function as `_evaluate` (it receives x as a float64
    array [N, D] and must return [N, O]).

    Attributes:
        name: The registry name (e.g. "ishigami").
        description: One line saying what the function is and its parameters.
        input_names: One name per input, D in all.
        output_names: One name per output, O in all.
        bounds: [D, 2] array of lower and upper input bounds (raw units). The function is
            defined by its formula; the bounds are the reference domain that `sample` draws
            from and are not enforced by `evaluate`.
        reference: Citation of the function's source.
    """

    name: str
    description: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    bounds: np.ndarray
    reference: str
    _evaluate: Callable[[np.ndarray], np.ndarray] = field(repr=False)

    def __post_init__(self):
        input_names, output_names = tuple(self.input_names), tuple(self.output_names)
        if not input_names or not output_names:
            raise ValueError(
                f"problem {self.name!r} needs at least one input and one output name; got "
                f"{len(input_names)} inputs and {len(output_names)} outputs."
            )
        bounds = np.array(self.bounds, dtype=np.float64, copy=True)
        if bounds.shape != (len(input_names), 2):
            raise ValueError(
                f"`bounds` of problem {self.name!r} must have shape [{len(input_names)}, 2] "
                f"(one [lower, upper] row per input); got shape {bounds.shape}."
            )
        bad = np.flatnonzero(~(np.isfinite(bounds).all(axis=1) & (bounds[:, 0] < bounds[:, 1])))
        if bad.size:
            j = int(bad[0])
            raise ValueError(
                f"`bounds` of problem {self.name!r} must be finite with lower < upper; input "
                f"{j} ({input_names[j]!r}) has [{bounds[j, 0]}, {bounds[j, 1]}]."
            )
        bounds.flags.writeable = False
        object.__setattr__(self, "input_names", input_names)
        object.__setattr__(self, "output_names", output_names)
        object.__setattr__(self, "bounds", bounds)

    @property
    def num_inputs(self) -> int:
        """The number of inputs, D."""
        return len(self.input_names)

    @property
    def num_outputs(self) -> int:
        """The number of outputs, O."""
        return len(self.output_names)

    def evaluate(self, x) -> np.ndarray:
        """Evaluates the noise-free function.

        Args:
            x: Inputs in raw units, array-like [N, D]. When D == 1 a 1-D array of length N
                is also accepted (N points); for D > 1 a single point must be passed as
                [1, D] (`x.reshape(1, -1)`).

        Returns:
            float64 array [N, O].

        Raises:
            TypeError: If `x` is not numeric.
            ValueError: If `x` does not have shape [N, D] or contains NaN or infinity.
        """
        arr = check_array("x", x, finite=False)
        if arr.ndim == 1 and self.num_inputs == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.shape[1] != self.num_inputs:
            hint = " For a single point use x.reshape(1, -1)." if arr.ndim == 1 else ""
            raise ValueError(
                f"`x` for problem {self.name!r} must have shape [N, {self.num_inputs}] "
                f"(inputs {list(self.input_names)}); got shape {arr.shape}.{hint}"
            )
        check_values(
            arr,
            what=f"`x` for problem {self.name!r}",
            column_names=self.input_names,
            fix="Evaluate the problem at finite inputs.",
        )
        y = np.asarray(self._evaluate(arr), dtype=np.float64)
        assert y.shape == (arr.shape[0], self.num_outputs), (y.shape, arr.shape)
        return y

    @cached_property
    def output_std(self) -> np.ndarray:
        """The standard deviation of each noise-free output over the domain, [O].

        sd_o = sqrt(Var[f_o(X)]) for X uniform on `bounds`, estimated by Monte Carlo from
        2**17 points drawn with a fixed seed (deterministic; relative error ≈ 0.2 %). It is
        the unit in which `sample` measures `noise`.
        """
        rng = np.random.default_rng(_STD_SEED)
        return self.evaluate(self._uniform(rng, _STD_NUM_POINTS)).std(axis=0, ddof=1)

    def _uniform(self, rng: np.random.Generator, num: int) -> np.ndarray:
        lower, upper = self.bounds[:, 0], self.bounds[:, 1]
        return lower + (upper - lower) * rng.uniform(size=(num, self.num_inputs))

    def _latin_hypercube(self, rng: np.random.Generator, num: int) -> np.ndarray:
        # One point in each of the `num` equal-width strata of every input, strata paired at
        # random across inputs (McKay, Beckman & Conover 1979), by SciPy's sampler.
        u = qmc.LatinHypercube(d=self.num_inputs, seed=rng).random(num)
        lower, upper = self.bounds[:, 0], self.bounds[:, 1]
        return lower + (upper - lower) * u

    def sample(
        self,
        seed,
        num_train: int,
        num_test: int = 1000,
        noise: float = 0.0,
        design: str = "uniform",
    ) -> Dataset:
        """Draws a training and a test set from the problem.

        Training inputs follow `design` within `bounds`: "uniform" (i.i.d. uniform) or
        "lhs" (a Latin hypercube: exactly one point in each of the `num_train` equal-width
        intervals of every input). Test inputs are always i.i.d. uniform, so test metrics
        estimate averages over the whole domain. Outputs are

            y = f(x) + noise · sd ⊙ ε,   ε ~ N(0, I),

        for both sets, where `sd = self.output_std` is the standard deviation of each
        noise-free output over the domain. So `noise` is the noise standard deviation as a
        fraction of the output's spread: `noise=0.1` gives a noise variance of 1 % of
        Var[f(X)] (a signal-to-noise ratio of 100), and the noise standard deviation in raw
        units is `noise * problem.output_std`. With `noise=0` the data are exact.

        All randomness comes from `np.random.default_rng(seed)`, drawn in a fixed order
        (training inputs, test inputs, then noise), so the inputs do not depend on `noise`.

        Args:
            seed: Seed for `np.random.default_rng`.
            num_train: Number of training points, ≥ 3.
            num_test: Number of test points, ≥ 0.
            noise: Noise standard deviation relative to `output_std`, ≥ 0.
            design: "uniform" or "lhs" (training inputs only).

        Returns:
            A `Dataset` named after the problem.

        Raises:
            TypeError: If `num_train` or `num_test` is not an int, or `noise` not a number.
            ValueError: If `num_train` < 3, `num_test` < 0, `noise` < 0 or not finite, or
                `design` is unknown.
        """
        num_train, num_test, noise = check_sampling(num_train, num_test, noise, design)
        rng = np.random.default_rng(seed)
        draw = self._uniform if design == "uniform" else self._latin_hypercube
        x_train = draw(rng, num_train)
        x_test = self._uniform(rng, num_test)
        y_train, y_test = self.evaluate(x_train), self.evaluate(x_test)
        if noise > 0:
            scale = noise * self.output_std
            y_train = y_train + scale * rng.standard_normal(y_train.shape)
            y_test = y_test + scale * rng.standard_normal(y_test.shape)
        return Dataset(
            x_train=x_train,
            y_train=y_train,
            x_test=x_test,
            y_test=y_test,
            input_names=self.input_names,
            output_names=self.output_names,
            name=self.name,
        )


# ---------------------------------------------------------------------------- problems


def make_sine() -> Problem:
    """A smooth 1-D toy: f(x) = sin(3x) + 0.3x on x ∈ [−1, 1].

    About one period of a sine on a linear trend; the package's default problem, for quick
    runs and plots of the predictive band. Range of f on the domain ≈ [−1.16, 1.16].

    References:
        None: a toy function defined by this package.
    """
    return Problem(
        name="sine",
        description="f(x) = sin(3x) + 0.3x on [-1, 1]",
        input_names=("x",),
        output_names=("y",),
        bounds=np.array([[-1.0, 1.0]]),
        reference="Toy function defined by bayesresnet (no external reference).",
        _evaluate=lambda x: np.sin(3.0 * x) + 0.3 * x,
    )


def make_ishigami(a: float = 7.0, b: float = 0.1) -> Problem:
    """The Ishigami function, a standard sensitivity-analysis benchmark.

    f(x) = sin x1 + a sin² x2 + b x3⁴ sin x1,   x ∈ [−π, π]³.

    For X uniform on the domain, E[f] = a/2 and
    Var[f] = a²/8 + b π⁴/5 + b² π⁸/18 + 1/2 (3.5 and ≈ 13.8446 for a = 7, b = 0.1).

    Args:
        a: Coefficient of the sin² x2 term.
        b: Coefficient of the x3⁴ sin x1 interaction.

    References:
        Ishigami, T. & Homma, T. (1990). An importance quantification technique in
        uncertainty analysis for computer models. Proc. ISUMA '90, 398–403.
    """
    a = check_number("a", a)
    b = check_number("b", b)

    def evaluate(x):
        x1, x2, x3 = x[:, 0], x[:, 1], x[:, 2]
        return (np.sin(x1) + a * np.sin(x2) ** 2 + b * x3**4 * np.sin(x1))[:, None]

    return Problem(
        name="ishigami",
        description=f"Ishigami function, a={a:g}, b={b:g}, on [-pi, pi]^3",
        input_names=("x1", "x2", "x3"),
        output_names=("y",),
        bounds=np.tile([-np.pi, np.pi], (3, 1)),
        reference=(
            "Ishigami, T. & Homma, T. (1990). An importance quantification technique in "
            "uncertainty analysis for computer models. Proc. ISUMA '90, 398-403."
        ),
        _evaluate=evaluate,
    )


def make_borehole() -> Problem:
    """The borehole function: water flow (m³/yr) through a borehole between two aquifers.

    f = 2π Tu (Hu − Hl) / ( ln(r/rw) · [1 + 2 L Tu / (ln(r/rw) rw² Kw) + Tu/Tl] ),

    with inputs and ranges (Surjanovic & Bingham's virtual library):

    | input | meaning                                   | range           |
    |-------|-------------------------------------------|-----------------|
    | rw    | borehole radius (m)                       | [0.05, 0.15]    |
    | r     | radius of influence (m)                   | [100, 50000]    |
    | Tu    | transmissivity of upper aquifer (m²/yr)   | [63070, 115600] |
    | Hu    | potentiometric head of upper aquifer (m)  | [990, 1110]     |
    | Tl    | transmissivity of lower aquifer (m²/yr)   | [63.1, 116]     |
    | Hl    | potentiometric head of lower aquifer (m)  | [700, 820]      |
    | L     | length of borehole (m)                    | [1120, 1680]    |
    | Kw    | hydraulic conductivity of borehole (m/yr) | [9855, 12045]   |

    f is monotone in every input, so its extremes over the box are at corners:
    min ≈ 7.82 (rw, Tu, Hu, Tl, Kw at their lower bounds; r, Hl, L at their upper ones) and
    max ≈ 309.58 (the opposite corner).

    References:
        Harper, W. V. & Gupta, S. K. (1983). Sensitivity/uncertainty analysis of a borehole
        scenario comparing Latin hypercube sampling and deterministic sensitivity
        approaches. Office of Nuclear Waste Isolation, Battelle, BMI/ONWI-516.
        Morris, M. D., Mitchell, T. J. & Ylvisaker, D. (1993). Bayesian design and analysis
        of computer experiments: use of derivatives in surface prediction.
        Technometrics 35(3), 243–255.
        Surjanovic, S. & Bingham, D. Virtual Library of Simulation Experiments,
        https://www.sfu.ca/~ssurjano/borehole.html
    """

    def evaluate(x):
        rw, r, tu, hu, tl, hl, length, kw = x.T
        log_ratio = np.log(r / rw)
        denominator = log_ratio * (1.0 + 2.0 * length * tu / (log_ratio * rw**2 * kw) + tu / tl)
        return (2.0 * np.pi * tu * (hu - hl) / denominator)[:, None]

    return Problem(
        name="borehole",
        description="Borehole water-flow function (8 inputs, m^3/yr)",
        input_names=("rw", "r", "Tu", "Hu", "Tl", "Hl", "L", "Kw"),
        output_names=("flow",),
        bounds=np.array(
            [
                [0.05, 0.15],
                [100.0, 50_000.0],
                [63_070.0, 115_600.0],
                [990.0, 1110.0],
                [63.1, 116.0],
                [700.0, 820.0],
                [1120.0, 1680.0],
                [9855.0, 12_045.0],
            ]
        ),
        reference=(
            "Harper & Gupta (1983), BMI/ONWI-516; Morris, Mitchell & Ylvisaker (1993), "
            "Technometrics 35(3), 243-255; ranges from Surjanovic & Bingham, Virtual Library "
            "of Simulation Experiments, https://www.sfu.ca/~ssurjano/borehole.html"
        ),
        _evaluate=evaluate,
    )


def make_friedman1() -> Problem:
    """Friedman's first test function, with five active and five inert inputs.

    f(x) = 10 sin(π x1 x2) + 20 (x3 − 0.5)² + 10 x4 + 5 x5,   x ∈ [0, 1]¹⁰;

    x6, ..., x10 do not enter f, so a surrogate should learn to ignore them.

    References:
        Friedman, J. H. (1991). Multivariate adaptive regression splines. The Annals of
        Statistics 19(1), 1–67.
    """

    def evaluate(x):
        return (
            10.0 * np.sin(np.pi * x[:, 0] * x[:, 1])
            + 20.0 * (x[:, 2] - 0.5) ** 2
            + 10.0 * x[:, 3]
            + 5.0 * x[:, 4]
        )[:, None]

    return Problem(
        name="friedman1",
        description="Friedman #1: 5 active and 5 inert inputs on [0, 1]^10",
        input_names=tuple(f"x{i}" for i in range(1, 11)),
        output_names=("y",),
        bounds=np.tile([0.0, 1.0], (10, 1)),
        reference=(
            "Friedman, J. H. (1991). Multivariate adaptive regression splines. "
            "The Annals of Statistics 19(1), 1-67."
        ),
        _evaluate=evaluate,
    )


_SOBOL_G_A = (0.0, 1.0, 4.5, 9.0, 99.0, 99.0, 99.0, 99.0)


def make_sobol_g(dim: int = 8, a: Sequence[float] | None = None) -> Problem:
    """Sobol's G function, with importance of each input set by its coefficient.

    f(x) = Π_{i=1}^{dim} (|4 x_i − 2| + a_i) / (1 + a_i),   x ∈ [0, 1]^dim.

    Input i matters less the larger a_i (a_i = 0: very important; a_i = 99: almost
    inert). The default coefficients are Saltelli & Sobol's (1995) choice
    a = (0, 1, 4.5, 9, 99, 99, 99, 99), truncated for dim < 8 and continued with 99 for
    dim > 8. For X uniform, E[f] = 1 exactly and
    Var[f] = Π_i (1 + 1 / (3 (1 + a_i)²)) − 1 (≈ 0.4654 for the default).

    Args:
        dim: Number of inputs, ≥ 1.
        a: Coefficients a_i ≥ 0, one per input; defaults as above.

    References:
        Saltelli, A. & Sobol', I. M. (1995). About the use of rank transformation in
        sensitivity analysis of model output. Reliability Engineering & System Safety
        50(3), 225–239.
    """
    dim = check_int("dim", dim, minimum=1)
    if a is None:
        coefficients = np.array([_SOBOL_G_A[i] if i < 8 else 99.0 for i in range(dim)])
    else:
        coefficients = np.asarray(a, dtype=np.float64)
        if coefficients.shape != (dim,):
            raise ValueError(
                f"`a` must have one coefficient per input ({dim}); got shape {coefficients.shape}."
            )
        if not (np.isfinite(coefficients).all() and (coefficients >= 0).all()):
            raise ValueError(f"`a` must hold finite numbers ≥ 0; got {coefficients.tolist()}.")
    coefficients.flags.writeable = False

    def evaluate(x):
        return np.prod((np.abs(4.0 * x - 2.0) + coefficients) / (1.0 + coefficients), axis=1)[
            :, None
        ]

    return Problem(
        name="sobol_g",
        description=f"Sobol' G function, dim={dim}, a={coefficients.tolist()}",
        input_names=tuple(f"x{i}" for i in range(1, dim + 1)),
        output_names=("y",),
        bounds=np.tile([0.0, 1.0], (dim, 1)),
        reference=(
            "Saltelli, A. & Sobol', I. M. (1995). About the use of rank transformation in "
            "sensitivity analysis of model output. Reliability Engineering & System Safety "
            "50(3), 225-239."
        ),
        _evaluate=evaluate,
    )


def _free_response(mass, stiffness, damping, x0, t):
    """Displacement of m x'' + c x' + k x = 0 with x(0) = x0, x'(0) = 0, at times t.

    x(t) = x0 e^{−αt} [cos(ω_d t) + α sin(ω_d t) / ω_d],  α = c / (2m),  ω_d² = k/m − α².
    For ω_d² < 0 (overdamped) cos and sin/ω_d continue analytically to cosh and sinh/|ω_d|;
    for ω_d = 0 (critical damping) the bracket is 1 + αt.
    """
    alpha = damping / (2.0 * mass)
    wd2 = stiffness / mass - alpha**2
    wd = np.sqrt(np.abs(wd2))
    safe_wd = np.where(wd > 0, wd, 1.0)
    phase = wd * t
    cos_part = np.where(wd2 > 0, np.cos(phase), np.where(wd2 < 0, np.cosh(phase), 1.0))
    sin_part = np.where(
        wd2 > 0, np.sin(phase) / safe_wd, np.where(wd2 < 0, np.sinh(phase) / safe_wd, t)
    )
    return x0 * np.exp(-alpha * t) * (cos_part + alpha * sin_part)


def make_oscillator(times: Sequence[float] = (0.5, 1.0, 2.0)) -> Problem:
    """A damped harmonic oscillator released from rest: displacement at several times.

    The mass–spring–damper m x'' + c x' + k x = 0, x(0) = x0, x'(0) = 0, has the
    closed-form solution

        x(t) = x0 e^{−ζω₀t} [cos(ω_d t) + (ζω₀ / ω_d) sin(ω_d t)],

    ω₀ = sqrt(k/m), ζ = c / (2 sqrt(mk)), ω_d = ω₀ sqrt(1 − ζ²). Outputs are x(t) at the
    fixed `times` (default 0.5, 1 and 2 s: three outputs, increasingly oscillatory in the
    inputs). Inputs and ranges:

    | input | meaning                          | range      |
    |-------|----------------------------------|------------|
    | m     | mass (kg)                        | [0.5, 1.5] |
    | k     | spring stiffness (N/m)           | [10, 30]   |
    | c     | damping coefficient (N·s/m)      | [0.2, 1.0] |
    | x0    | initial displacement (m)         | [0.5, 1.5] |

    On this box c² < 4mk, so the system is underdamped (ζ ∈ [0.015, 0.224],
    ω₀ ∈ [2.58, 7.75] rad/s). `evaluate` also handles over- and critically damped inputs
    outside the box.

    Args:
        times: The observation times in seconds, distinct and ≥ 0; one output each.

    References:
        Rao, S. S. (2017). Mechanical Vibrations, 6th ed., Pearson, Sec. 2.6 (free
        vibration with viscous damping).
    """
    if isinstance(times, str) or not isinstance(times, Sequence | np.ndarray):
        raise TypeError(f"`times` must be a sequence of numbers; got {type(times).__name__}.")
    times = tuple(
        check_number(f"times[{i}]", t, low=0.0, inclusive=True) for i, t in enumerate(times)
    )
    if not times:
        raise ValueError("`times` must hold at least one time; got an empty sequence.")
    if len(set(times)) != len(times):
        raise ValueError(f"`times` must be distinct; got {list(times)}.")
    t = np.array(times)

    def evaluate(x):
        m, k, c, x0 = (x[:, j : j + 1] for j in range(4))  # each [N, 1]; t broadcasts to [N, T]
        return _free_response(m, k, c, x0, t)

    return Problem(
        name="oscillator",
        description=f"damped oscillator displacement at t = {list(times)} s",
        input_names=("m", "k", "c", "x0"),
        output_names=tuple(f"x(t={ti:g})" for ti in times),
        bounds=np.array([[0.5, 1.5], [10.0, 30.0], [0.2, 1.0], [0.5, 1.5]]),
        reference=(
            "Rao, S. S. (2017). Mechanical Vibrations, 6th ed., Pearson, Sec. 2.6 "
            "(free vibration with viscous damping)."
        ),
        _evaluate=evaluate,
    )


_REGISTRY: dict[str, Callable[..., Problem]] = {
    "borehole": make_borehole,
    "friedman1": make_friedman1,
    "ishigami": make_ishigami,
    "oscillator": make_oscillator,
    "sine": make_sine,
    "sobol_g": make_sobol_g,
}


def names() -> list[str]:
    """The names `get` accepts, sorted."""
    return sorted(_REGISTRY)


def check_sampling(num_train, num_test, noise, design) -> tuple[int, int, float]:
    """Checks the arguments of :meth:`Problem.sample` (before any problem is built).

    Returns:
        ``(num_train, num_test, noise)`` as int, int and float.

    Raises:
        TypeError, ValueError: As :meth:`Problem.sample` documents.
    """
    num_train = check_int("num_train", num_train, minimum=3)
    num_test = check_int("num_test", num_test, minimum=0)
    noise = check_number("noise", noise, low=0.0, inclusive=True)
    check_choice("design", design, DESIGNS)
    return num_train, num_test, noise


def check_name(name) -> str:
    """``name`` must name a built-in problem (``TypeError``/``ValueError`` otherwise)."""
    if not isinstance(name, str):
        raise TypeError(f"`name` must be a str; got {type(name).__name__}.")
    if name not in _REGISTRY:
        raise ValueError(
            f"unknown problem {name!r}; available problems: {names()}.{did_you_mean(name, names())}"
        )
    return name


def get(name: str = DEFAULT, **kwargs) -> Problem:
    """Builds a built-in problem by name.

    Args:
        name: One of `names()`.
        **kwargs: Parameters of the problem's `make_*` function, e.g.
            `get("sobol_g", dim=6)` or `get("oscillator", times=[1.0, 3.0])`.

    Returns:
        The `Problem`.

    Raises:
        TypeError: If `name` is not a str, or a keyword is not a parameter of the problem.
        ValueError: If `name` is unknown (the available names are listed), or a parameter
            value is invalid.
    """
    factory = _REGISTRY[check_name(name)]
    accepted = list(inspect.signature(factory).parameters)
    unexpected = sorted(set(kwargs) - set(accepted))
    if unexpected:
        raise TypeError(
            f"problem {name!r} got unexpected parameters {unexpected}; it accepts "
            f"{accepted if accepted else 'no parameters'}."
        )
    return factory(**kwargs)
