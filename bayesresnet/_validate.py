"""Argument checks shared by every entry point (messages name the argument)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_int", "check_number", "check_bool", "check_auto_bool", "check_choice"]


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


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}; got {value!r}.")
    return value


# Rows listed per column in a message about flagged entries, before "... (k more)".
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
    """The one message format for flagged entries of a 2-D array, or None if none is flagged.

    ``"{what} contains {problem}: column 0 ('a') has 1 {noun} (0-based row 7); column 1
    ('b') has 2 {noun}s (0-based rows 1, 3). {fix}"``

    Args:
        bad: boolean mask ``[N, C]`` of the flagged entries.
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
    parts = []
    for j in np.flatnonzero(bad.any(axis=0)):
        rows = np.flatnonzero(bad[:, j])
        labels = [int(row_labels[i]) if row_labels is not None else int(i) for i in rows]
        shown = ", ".join(str(r) for r in labels[:_MAX_ROWS_SHOWN])
        if len(labels) > _MAX_ROWS_SHOWN:
            shown += f", ... ({len(labels) - _MAX_ROWS_SHOWN} more)"
        word = row_word if len(labels) == 1 else row_word + "s"
        column = f"column {j}" + (f" ({column_names[j]!r})" if column_names is not None else "")
        parts.append(f"{column} has {_count(len(labels), noun)} ({word} {shown})")
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
