"""Argument checks shared by every entry point (messages name the argument)."""

from __future__ import annotations

import numpy as np

__all__ = ["check_int", "check_number", "check_bool", "check_choice"]


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


def check_choice(name: str, value, choices) -> str:
    if value not in choices:
        raise ValueError(f"`{name}` must be one of {sorted(choices)}; got {value!r}.")
    return value
