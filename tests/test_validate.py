"""The shared validation vocabulary (bayesresnet._validate)."""

import re

import numpy as np
import pytest

from bayesresnet._validate import (
    check_array,
    check_choice,
    check_fraction,
    check_level,
    check_levels,
    did_you_mean,
)


def test_check_choice_suggests_the_closest_and_keeps_sequence_order():
    with pytest.raises(
        ValueError, match=r"`design` must be one of \['uniform', 'lhs'\]; got 'lhz'\. Did you mean"
    ):
        check_choice("design", "lhz", ("uniform", "lhs"))
    with pytest.raises(ValueError, match=r"one of \['a', 'b'\]; got 'zzz'\.$"):
        check_choice("x", "zzz", {"b": 1, "a": 2})  # a dict is listed sorted; no close match
    assert did_you_mean(3, ["a"]) == ""


@pytest.mark.parametrize("bad", [0.0, 1.0, float("nan"), -0.5])
def test_check_level_is_the_open_unit_interval(bad):
    with pytest.raises(ValueError, match=r"`level` must be a finite number in \(0, 1\)"):
        check_level("level", bad)
    assert check_level("level", 0.9) == 0.9


def test_check_levels_names_the_element_and_wants_distinct_levels():
    assert check_levels("levels", [0.5, 0.9]) == (0.5, 0.9)
    with pytest.raises(ValueError, match=r"`levels\[1\]` must be a finite number in \(0, 1\)"):
        check_levels("levels", (0.5, 1.5))
    with pytest.raises(ValueError, match=r"distinct levels; got \[0\.5, 0\.5\]"):
        check_levels("levels", [0.5, 0.5])
    with pytest.raises(ValueError, match=r"non-empty list"):
        check_levels("levels", [])
    with pytest.raises(TypeError, match=r"`levels` must be a sequence of levels; got str"):
        check_levels("levels", "0.5")


def test_check_fraction_is_half_open():
    assert check_fraction("f", 0) == 0.0
    with pytest.raises(ValueError, match=r"`f` must be in \[0, 1\); got 1\.0"):
        check_fraction("f", 1)
    with pytest.raises(TypeError, match=r"`f` must be a number in \[0, 1\); got str"):
        check_fraction("f", "0.1")


def test_check_array_one_row_column_format_for_every_rank():
    with pytest.raises(TypeError, match=r"`a` must be a numeric array; got dtype <U1"):
        check_array("a", ["x"])
    with pytest.raises(ValueError, match=r"`a` must be 1-D or 2-D; got shape \(1, 1, 1\)"):
        check_array("a", np.zeros((1, 1, 1)), ndim=(1, 2))
    vector = np.array([0.0, np.nan, 1.0])
    with pytest.raises(
        ValueError,
        match=re.escape(
            "`v` contains NaN or infinite values: column 0 has 1 non-finite value (0-based row 1)."
        ),
    ):
        check_array("v", vector)
    cube = np.zeros((2, 2, 3))
    cube[1, 1, 2] = np.inf
    with pytest.raises(ValueError, match=re.escape("column (1, 2) has 1 non-finite value")):
        check_array("c", cube)
    wide = np.full((1, 8), np.nan)
    with pytest.raises(
        ValueError,
        match=re.escape("column 4 has 1 non-finite value (0-based row 0); ... (3 more columns)"),
    ):
        check_array("w", wide)
    assert check_array("f32", np.ones(2, np.float32), dtype=None).dtype == np.float32
    assert check_array("obj", np.array([1, 2.5], dtype=object)).dtype == np.float64
