"""The one validation vocabulary of the library: every entry point checks its arguments here.

Scalars (:func:`check_int`, :func:`check_number`, :func:`check_bool`, :func:`check_choice`),
levels and fractions (:func:`check_level`, :func:`check_levels`, :func:`check_fraction`) and
arrays (:func:`check_array`, with one row/column format for flagged entries,
:func:`describe_entries`). Every message names the argument, the requirement and what was
received: "`num_chains` must be ≥ 1; got 0."
"""

from __future__ import annotations

import difflib
import numbers
from collections.abc import Sequence

import numpy as np

__all__ = [
    "check_int",
    "check_number",
    "check_bool",
    "check_auto_bool",
    "check_choice",
    "check_level",
    "check_levels",
    "check_fraction",
    "check_array",
    "did_you_mean",
    "check_columns",
    "check_names",
    "check_table",
]


def check_int(name: str, value, *, minimum: int | None = None) -> int:
    """``value`` must be an int (not a bool), at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer):
        raise TypeError(f"`{name}` must be an int; got {type(value).__name__} {value!r}.")
    if minimum is not None and value < minimum:
        raise ValueError(f"`{name}` must be ≥ {minimum}; got {value}.")
    return int(value)


def check_number(
    name: str,
    value,
    *,
    low: float | None = None,
    high: float | None = None,
    inclusive: bool = False,
) -> float:
    """``value`` must be a finite real number in ``(low, high)`` (``[low, high]`` if inclusive)."""
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise TypeError(f"`{name}` must be a number; got {type(value).__name__} {value!r}.")
    value = float(value)
    ok = np.isfinite(value)
    if low is not None:
        ok = ok and (value >= low if inclusive else value > low)
    if high is not None:
        ok = ok and (value <= high if inclusive else value < high)
    if not ok:
        if low is not None and high is not None:
            bounds = f" in [{low:g}, {high:g}]" if inclusive else f" in ({low:g}, {high:g})"
        elif low is not None:
            bounds = f" {'≥' if inclusive else '>'} {low:g}"
        elif high is not None:
            bounds = f" {'≤' if inclusive else '<'} {high:g}"
        else:
            bounds = ""
        raise ValueError(f"`{name}` must be a finite number{bounds}; got {value}.")
    return value


def check_bool(name: str, value) -> bool:
    if not isinstance(value, bool | np.bool_):
        raise TypeError(f"`{name}` must be a bool; got {type(value).__name__} {value!r}.")
    return bool(value)


def check_auto_bool(name: str, value) -> bool | str:
    """A bool, or ``"auto"`` (the library decides)."""
    if isinstance(value, str) and value == "auto":
        return value
    if not isinstance(value, bool | np.bool_):
        raise TypeError(
            f'`{name}` must be true, false or "auto"; got {type(value).__name__} {value!r}.'
        )
    return bool(value)


def did_you_mean(value, choices) -> str:
    """`` Did you mean 'x'?`` for the closest of ``choices`` to ``value``, else ``""``."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value, [str(c) for c in choices], n=1, cutoff=0.6)
    return f" Did you mean {close[0]!r}?" if close else ""


def check_choice(name: str, value, choices) -> str:
    """``value`` must be one of ``choices`` (a dict or set listed sorted, a sequence in order)."""
    listed = sorted(choices) if isinstance(choices, dict | set | frozenset) else list(choices)
    if isinstance(value, bool) or value not in listed:
        raise ValueError(
            f"`{name}` must be one of {listed}; got {value!r}.{did_you_mean(value, listed)}"
        )
    return value


def check_columns(name: str, value, names, *, noun: str) -> list[int]:
    """Column indices from a name, an index, or a sequence of those: non-empty, no repeats.

    ``noun`` says what a column is ("output", "input") in the messages.
    """
    many = isinstance(value, Sequence | np.ndarray) and not isinstance(value, str)
    names = list(names)
    chosen = []
    for item in value if many else [value]:
        if isinstance(item, str):
            if item not in names:
                raise ValueError(
                    f"`{name}` names {item!r}, not an {noun} of the model "
                    f"{names}.{did_you_mean(item, names)}"
                )
            chosen.append(names.index(item))
        elif isinstance(item, numbers.Integral) and not isinstance(item, bool | np.bool_):
            if not 0 <= item < len(names):
                raise ValueError(f"`{name}` index {item} is out of range for {len(names)} {noun}s.")
            chosen.append(int(item))
        else:
            raise TypeError(
                f"`{name}` must hold {noun} names or indices; got {type(item).__name__} {item!r}."
            )
    if not chosen or len(set(chosen)) != len(chosen):
        raise ValueError(f"`{name}` must be non-empty and without repeats; got {value!r}.")
    return chosen


def check_names(name: str, value) -> tuple[str, ...]:
    """A non-empty sequence of distinct ``str`` (column names), as a tuple."""
    if isinstance(value, str) or not all(isinstance(v, str) for v in value):
        raise TypeError(f"`{name}` must be a sequence of str; got {value!r}.")
    if not value or len(set(value)) != len(value):
        raise ValueError(f"`{name}` must be non-empty and distinct; got {list(value)}.")
    return tuple(value)


def check_table(name: str, value, num_columns: int, *, columns: str) -> np.ndarray:
    """A finite 2-D array with ``num_columns`` columns (``columns`` says what each is)."""
    x = check_array(name, value, ndim=2)
    if x.shape[1] != num_columns:
        raise ValueError(
            f"`{name}` must have {num_columns} columns ({columns}); got shape {x.shape}."
        )
    return x


def check_level(name: str, value) -> float:
    """A central-interval (or probability) level: a finite number in the open interval (0, 1)."""
    return check_number(name, value, low=0.0, high=1.0)


def check_levels(name: str, values) -> tuple[float, ...]:
    """A non-empty sequence of distinct levels, each in (0, 1) (elements named ``name[i]``)."""
    if isinstance(values, str) or not isinstance(values, list | tuple | np.ndarray):
        raise TypeError(f"`{name}` must be a sequence of levels; got {type(values).__name__}.")
    levels = tuple(check_level(f"{name}[{i}]", v) for i, v in enumerate(values))
    if not levels or len(set(levels)) != len(levels):
        raise ValueError(
            f"`{name}` must be a non-empty list of distinct levels; got {list(levels)}. "
            "Example: levels = [0.5, 0.9]."
        )
    return levels


def check_fraction(name: str, value) -> float:
    """A fraction of rows held out: a number in the half-open interval [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"`{name}` must be a number in [0, 1); got {type(value).__name__}.")
    value = float(value)
    if not 0.0 <= value < 1.0:
        raise ValueError(f"`{name}` must be in [0, 1); got {value}.")
    return value


def check_array(
    name: str,
    value,
    *,
    ndim=None,
    finite: bool = True,
    dtype=np.float64,
    fix: str = "Remove or impute them first.",
):
    """``value`` as a real array: a numeric dtype, ``ndim`` dimensions, every entry finite.

    Args:
        name: The argument, as messages name it.
        value: Array-like; object arrays of real numbers (e.g. from pandas) are accepted.
        ndim: Allowed numbers of dimensions (an int or a tuple), or None for any.
        finite: Refuse NaN and ±inf, in the row/column format of :func:`describe_entries`.
        dtype: The returned dtype; None keeps a floating dtype (others become float64).
        fix: What to do about non-finite entries (the message's last sentence).

    Raises:
        TypeError: For a non-numeric dtype (str, complex, None, …).
        ValueError: For another number of dimensions, or non-finite entries.
    """
    arr = np.asarray(value)
    if arr.dtype.kind == "O" and all(
        isinstance(v, numbers.Real) and not isinstance(v, bool) for v in arr.flat
    ):
        arr = arr.astype(np.float64)
    if arr.dtype.kind not in "biuf":
        raise TypeError(
            f"`{name}` must be a numeric array; got dtype {arr.dtype} (bool, int or float "
            "are accepted). Convert text columns to numbers first."
        )
    arr = arr.astype(dtype or (arr.dtype if arr.dtype.kind == "f" else np.float64), copy=False)
    allowed = (ndim,) if isinstance(ndim, int) else ndim
    if allowed is not None and arr.ndim not in allowed:
        dims = " or ".join(f"{d}-D" for d in allowed)
        raise ValueError(f"`{name}` must be {dims}; got shape {arr.shape}.")
    if finite:
        message = describe_entries(~np.isfinite(arr), what=f"`{name}`", fix=fix)
        if message is not None:
            raise ValueError(message)
    return arr


# Rows listed per column (and columns listed) in a message about flagged entries.
_MAX_ROWS_SHOWN = 5

# |value| above this is refused in data: squares (variances, squared errors) of such values
# overflow float64 (max ≈ 1.8e308), with room left for sums over many rows.
MAX_ABS_VALUE = 1e150


def _count(count: int, noun: str) -> str:
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def describe_entries(
    bad,
    *,
    what: str,
    problem: str = "NaN or infinite values",
    noun: str = "non-finite value",
    fix: str = "Remove or impute these rows before fitting.",
    column_names=None,
    row_labels=None,
    row_word: str = "0-based row",
) -> str | None:
    """The one message format for flagged entries of an array, or None if none is flagged.

    Rows are the first axis, columns the second (a vector is one column; the trailing axes
    of an N-D array form its columns, named by their index tuple).

    ``"{what} contains {problem}: column 0 ('a') has 1 {noun} (0-based row 7); column 1
    ('b') has 2 {noun}s (0-based rows 1, 3). {fix}"``

    Args:
        bad: boolean mask ``[N, C]`` (or ``[N]``, ``[N, ...]``) of the flagged entries.
        what: how to name the array ("`x_train`", "train.csv").
        problem, noun, fix: what is wrong (plural, then one entry) and what to do.
        column_names: optional names of the C columns.
        row_labels: optional label of each row (e.g. CSV line numbers); default the
            0-based row index.
        row_word: the noun of a row label ("0-based row", "line").
    """
    bad = np.asarray(bad, dtype=bool)
    if not bad.any():
        return None
    shape = bad.shape[1:]
    if bad.ndim != 2:  # a vector is one column; trailing axes of an N-D array are its columns
        bad = bad.reshape(len(bad) if bad.ndim else 1, -1)
    parts = []
    columns = np.flatnonzero(bad.any(axis=0))
    for j in columns[:_MAX_ROWS_SHOWN]:
        rows = np.flatnonzero(bad[:, j])
        labels = [int(row_labels[i]) if row_labels is not None else int(i) for i in rows]
        shown = ", ".join(str(r) for r in labels[:_MAX_ROWS_SHOWN])
        if len(labels) > _MAX_ROWS_SHOWN:
            shown += f", ... ({len(labels) - _MAX_ROWS_SHOWN} more)"
        word = row_word if len(labels) == 1 else row_word + "s"
        index = tuple(int(i) for i in np.unravel_index(j, shape)) if len(shape) > 1 else j
        column = f"column {index}" + (f" ({column_names[j]!r})" if column_names is not None else "")
        parts.append(f"{column} has {_count(len(labels), noun)} ({word} {shown})")
    if len(columns) > _MAX_ROWS_SHOWN:
        parts.append(f"... ({len(columns) - _MAX_ROWS_SHOWN} more columns)")
    return f"{what} contains {problem}: " + "; ".join(parts) + f". {fix}"


def check_values(
    values,
    *,
    what: str,
    column_names=None,
    row_labels=None,
    row_word: str = "0-based row",
    fix: str = "Remove or impute these rows before fitting.",
) -> None:
    """Refuses NaN, ±inf and values too large to square (``|v| > MAX_ABS_VALUE``) in ``[N, C]``.

    Args:
        values: the array ``[N, C]``.
        what, column_names, row_labels, row_word: as in :func:`describe_entries`.
        fix: what to do about non-finite values.

    Raises:
        ValueError: naming the array, each offending column and its rows
            (:func:`describe_entries`); non-finite values are reported first.
    """
    values = np.asarray(values, dtype=np.float64)
    where = {"what": what, "column_names": column_names, "row_labels": row_labels}
    message = describe_entries(~np.isfinite(values), fix=fix, row_word=row_word, **where)
    if message is None:
        with np.errstate(invalid="ignore"):
            huge = np.abs(values) > MAX_ABS_VALUE
        message = describe_entries(
            huge,
            problem=f"values too large in magnitude (|value| > {MAX_ABS_VALUE:g}, whose "
            "squares overflow float64)",
            noun="too-large value",
            fix="Rescale these columns (e.g. change their units) before fitting.",
            row_word=row_word,
            **where,
        )
    if message is not None:
        raise ValueError(message)


__all__ += ["MAX_ABS_VALUE", "describe_entries", "check_values"]
