"""Data sets: the `Dataset` container, array validation, and CSV/NPZ loaders.

Everything a surrogate is fitted to enters through this module, so every check on user
data lives here and runs before any computation: shapes, numeric types, matching row
counts, finite values and column names. Error messages name the file (or array), the
column by index and name, and the offending rows, so the user can fix the data directly.

Only `load_csv`, `load_npz` and `save_npz` touch the filesystem. `save_npz` writes
atomically (`_io.write_atomic`), so an interrupted save never leaves a truncated archive
behind.
"""

from __future__ import annotations

import csv
import hashlib
import io
import operator
import os
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bayesresnet._io import write_atomic
from bayesresnet._validate import check_array, check_fraction, check_values, did_you_mean

__all__ = [
    "MIN_TRAIN_ROWS",
    "TRANSFORMS",
    "Dataset",
    "check_transforms",
    "transform_masks",
    "check_log_columns",
    "check_dataset_transforms",
    "suggest_transforms",
    "check_outputs",
    "column_names",
    "load_csv",
    "load_npz",
    "save_npz",
    "read_table",
    "validate_xy",
]

MIN_TRAIN_ROWS = 3
"""The fewest training rows a `Dataset` accepts (a posterior needs something to condition on)."""

#: The per-column transforms a user may declare (``fit(..., transforms={"r": "log"})``).
TRANSFORMS = ("log",)
#: A positive input whose middle 90 % spans more decades than this gets a log suggestion.
SUGGEST_LOG_DECADES = 2.0
#: A positive output whose sample skewness exceeds this (and whose log is less skewed) gets one.
SUGGEST_LOG_SKEWNESS = 1.0

_NPZ_REQUIRED = ("x_train", "y_train")
_NPZ_OPTIONAL = ("x_test", "y_test", "input_names", "output_names", "name")


# --------------------------------------------------------------------------- validation


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" if count == 1 else f"{count} {word}s"


def validate_xy(
    x,
    y,
    *,
    name_x: str = "x",
    name_y: str = "y",
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    min_rows: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """Checks a pair of input/output arrays and returns them as float64 arrays.

    `x` must be 2-D, [N, D] (a single input is a column, `x.reshape(-1, 1)`: a 1-D `x`
    would be ambiguous between N points and one point). A 1-D `y` of length N is taken as a
    single output and becomes a column [N, 1]. Zero rows are allowed (an empty test set).

    Args:
        x: Inputs, array-like of shape [N, D].
        y: Outputs, array-like of shape [N, O] or [N].
        name_x: How to name `x` in error messages (e.g. "x_train in data.npz").
        name_y: How to name `y` in error messages.
        input_names: Optional names of the D input columns, quoted in error messages.
        output_names: Optional names of the O output columns, quoted in error messages.
        min_rows: The fewest rows accepted (`MIN_TRAIN_ROWS` for training data).

    Returns:
        `(x, y)` as float64 arrays of shapes [N, D] and [N, O]. They may share memory with
        the arguments when those are already float64.

    Raises:
        TypeError: If either array is not numeric.
        ValueError: If `x` is not 2-D, `y` is not 1-D or 2-D, either has no columns, the
            row counts differ, there are fewer than `min_rows` rows, or any value is NaN,
            infinite or too large to square (above `_validate.MAX_ABS_VALUE`; the message
            lists the columns by index and name, and the first few 0-based row indices).
    """
    x_arr = check_array(name_x, x, finite=False)
    y_arr = check_array(name_y, y, finite=False)
    if x_arr.ndim != 2:
        hint = " For a single input use x.reshape(-1, 1)." if x_arr.ndim == 1 else ""
        raise ValueError(
            f"`{name_x}` must be a 2-D array [rows, inputs]; got {x_arr.ndim}-D array of shape "
            f"{x_arr.shape}.{hint}"
        )
    if y_arr.ndim == 1:
        y_arr = y_arr[:, None]
    if y_arr.ndim != 2:
        raise ValueError(
            f"`{name_y}` must be a 1-D or 2-D array [rows, outputs]; got {y_arr.ndim}-D array "
            f"of shape {y_arr.shape}."
        )
    for arr, name in ((x_arr, name_x), (y_arr, name_y)):
        if arr.shape[1] == 0:
            raise ValueError(f"`{name}` must have at least one column; got shape {arr.shape}.")
    if x_arr.shape[0] != y_arr.shape[0]:
        raise ValueError(
            f"`{name_x}` and `{name_y}` must have the same number of rows; got "
            f"{x_arr.shape[0]} rows in `{name_x}` and {y_arr.shape[0]} rows in `{name_y}`."
        )
    if x_arr.shape[0] < min_rows:
        raise ValueError(
            f"`{name_x}` and `{name_y}` have {_plural(x_arr.shape[0], 'row')}; at least "
            f"{min_rows} training rows are needed (as the CSV and NPZ loaders require)."
        )
    for arr, name, columns in ((x_arr, name_x, input_names), (y_arr, name_y, output_names)):
        if columns is not None and len(columns) != arr.shape[1]:
            columns = None  # a length mismatch is the caller's to report; index only here
        check_values(arr, what=f"`{name}`", column_names=columns)
    return x_arr, y_arr


def column_names(table, argument: str) -> tuple[str, ...]:
    """The column names of a pandas DataFrame (or the name of a Series); ``()`` for arrays.

    Names are converted with ``str`` (a DataFrame built from an array has columns 0, 1, …).

    Raises:
        ValueError: If the names are not unique.
    """
    if getattr(table, "ndim", None) == 2 and hasattr(table, "columns"):
        names = tuple(str(c) for c in table.columns)
    elif getattr(table, "ndim", None) == 1 and getattr(table, "name", None) is not None:
        names = (str(table.name),)
    else:
        return ()
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"`{argument}` has duplicate column names: {duplicates}.")
    return names


def _check_names(names, expected: int, field: str, dataset: str) -> tuple[str, ...]:
    """Converts column names to a tuple of str, checking type, count and uniqueness."""
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        raise TypeError(
            f"`{field}` of dataset {dataset!r} must be a sequence of str (one per column); "
            f"got {type(names).__name__}."
        )
    names = tuple(names)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(
            f"`{field}` of dataset {dataset!r} must contain only str; got "
            f"{[type(n).__name__ for n in names]}."
        )
    names = tuple(str(n) for n in names)  # np.str_ -> str, for clean messages and equality
    if len(names) != expected:
        raise ValueError(
            f"`{field}` of dataset {dataset!r} must have one name per column: expected "
            f"{expected}, got {len(names)} ({list(names)})."
        )
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ValueError(f"`{field}` of dataset {dataset!r} has duplicate names: {duplicates}.")
    return names


def _frozen_copy(arr: np.ndarray) -> np.ndarray:
    """A read-only copy, so a frozen `Dataset` cannot be changed through its arrays."""
    out = np.array(arr, dtype=np.float64, copy=True)
    out.flags.writeable = False
    return out


# ----------------------------------------------------------------------------- Dataset


@dataclass(frozen=True, eq=False)
class Dataset:
    """A training/test split of a regression data set, in raw (unscaled) units.

    All arrays are converted to read-only float64 copies on construction. A 1-D `y_train`
    or `y_test` becomes a single column. The test arrays may have zero rows.

    Attributes:
        x_train: Training inputs, [N_train, D].
        y_train: Training outputs, [N_train, O].
        x_test: Test inputs, [N_test, D] (N_test may be 0).
        y_test: Test outputs, [N_test, O].
        input_names: One name per input column.
        output_names: One name per output column.
        name: A label used in messages and reports.

    Raises:
        TypeError: For non-numeric arrays, a non-str `name` or non-str column names.
        ValueError: For wrong array ranks, x/y row-count mismatches, test column counts that
            differ from the training ones, NaN or infinite values, a names length that
            differs from the column count, duplicate names, or fewer than `MIN_TRAIN_ROWS`
            training rows.

    Warns:
        UserWarning: For a constant training column (input or output), naming the column.
    """

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    name: str = "data"

    def __post_init__(self):
        if not isinstance(self.name, str):
            raise TypeError(f"`name` must be a str; got {type(self.name).__name__}.")
        label = f"dataset {self.name!r}"
        x_train, y_train = validate_xy(
            self.x_train,
            self.y_train,
            name_x=f"x_train of {label}",
            name_y=f"y_train of {label}",
            input_names=_maybe_names(self.input_names),
            output_names=_maybe_names(self.output_names),
        )
        x_test, y_test = validate_xy(
            self.x_test,
            self.y_test,
            name_x=f"x_test of {label}",
            name_y=f"y_test of {label}",
            input_names=_maybe_names(self.input_names),
            output_names=_maybe_names(self.output_names),
        )
        for split, train, test in (("x", x_train, x_test), ("y", y_train, y_test)):
            if test.shape[1] != train.shape[1]:
                raise ValueError(
                    f"`{split}_test` of {label} must have the same number of columns as "
                    f"`{split}_train`; got {test.shape[1]} and {train.shape[1]}."
                )
        input_names = _check_names(self.input_names, x_train.shape[1], "input_names", self.name)
        output_names = _check_names(self.output_names, y_train.shape[1], "output_names", self.name)
        if x_train.shape[0] < MIN_TRAIN_ROWS:
            raise ValueError(
                f"{label} has {x_train.shape[0]} training rows; at least {MIN_TRAIN_ROWS} "
                "are needed."
            )
        for kind, arr, names in (
            ("input", x_train, input_names),
            ("output", y_train, output_names),
        ):
            for j in np.flatnonzero(np.ptp(arr, axis=0) == 0):
                warnings.warn(
                    f"training {kind} column {j} ({names[j]!r}) of {label} is constant "
                    f"(every value is {arr[0, j]:g}); it carries no information and cannot be "
                    "standardized. Drop it from the data set.",
                    UserWarning,
                    stacklevel=3,
                )
        object.__setattr__(self, "x_train", _frozen_copy(x_train))
        object.__setattr__(self, "y_train", _frozen_copy(y_train))
        object.__setattr__(self, "x_test", _frozen_copy(x_test))
        object.__setattr__(self, "y_test", _frozen_copy(y_test))
        object.__setattr__(self, "input_names", input_names)
        object.__setattr__(self, "output_names", output_names)

    @property
    def num_inputs(self) -> int:
        """The number of input columns, D."""
        return self.x_train.shape[1]

    @property
    def num_outputs(self) -> int:
        """The number of output columns, O."""
        return self.y_train.shape[1]

    @property
    def num_train(self) -> int:
        """The number of training rows."""
        return self.x_train.shape[0]

    @property
    def num_test(self) -> int:
        """The number of test rows (possibly 0)."""
        return self.x_test.shape[0]

    def fingerprint(self) -> str:
        """A content hash (SHA-256, hex) of the arrays, their shapes and the column names.

        Two data sets have the same fingerprint exactly when their training and test
        values (as float64), shapes and column names are equal; `name` does not count.
        """
        digest = hashlib.sha256()
        for arr in (self.x_train, self.y_train, self.x_test, self.y_test):
            digest.update(repr(arr.shape).encode())
            digest.update(np.ascontiguousarray(arr, dtype="<f8").tobytes())
        digest.update(repr((self.input_names, self.output_names)).encode())
        return digest.hexdigest()


def _maybe_names(names) -> tuple[str, ...] | None:
    """Names usable in an error message, or None if they are malformed (reported later)."""
    if isinstance(names, str) or not isinstance(names, Sequence | np.ndarray):
        return None
    names = tuple(names)
    return tuple(str(n) for n in names) if all(isinstance(n, str) for n in names) else None


# --------------------------------------------------------------------------- transforms


def check_transforms(transforms) -> dict[str, str]:
    """A ``{column name: transform}`` mapping, checked: str names, values in `TRANSFORMS`.

    ``None`` gives ``{}`` (no transform).

    Raises:
        TypeError: If `transforms` is not a mapping, or a name is not a str.
        ValueError: If a transform is not one of `TRANSFORMS`.
    """
    if transforms is None:
        return {}
    if not isinstance(transforms, Mapping):
        raise TypeError(
            '`transforms` must be a mapping of column names to transforms, e.g. {"r": "log"}; '
            f"got {type(transforms).__name__}."
        )
    out = {}
    for name, kind in transforms.items():
        if not isinstance(name, str):
            raise TypeError(
                f"`transforms` keys must be column names (str); got {type(name).__name__} {name!r}."
            )
        if isinstance(kind, bool) or kind not in TRANSFORMS:
            raise ValueError(
                f"`transforms` gives column {name!r} the transform {kind!r}; the transforms "
                f"are {list(TRANSFORMS)}.{did_you_mean(kind, TRANSFORMS)}"
            )
        out[name] = kind
    return out


def transform_masks(
    transforms, input_names: Sequence[str], output_names: Sequence[str]
) -> tuple[np.ndarray | None, np.ndarray | None]:
    """The ``(x_log [d], y_log [O])`` masks of :class:`~bayesresnet.model.Scaler` from a
    ``{column name: "log"}`` mapping (each ``None`` when no column of its kind is marked).

    Raises:
        TypeError, ValueError: As :func:`check_transforms`; ValueError also for a name
            that is not an input or output column (the columns are listed), or one that
            names both an input and an output.
    """
    transforms = check_transforms(transforms)
    inputs, outputs = list(input_names), list(output_names)
    for name in transforms:
        if name in inputs and name in outputs:
            raise ValueError(
                f"`transforms` names {name!r}, which is both an input and an output column; "
                "rename one of them."
            )
        if name not in inputs and name not in outputs:
            raise ValueError(
                f"`transforms` names {name!r}, not a column of the data: the inputs are "
                f"{inputs} and the outputs {outputs}.{did_you_mean(name, inputs + outputs)}"
            )

    def mask(names):
        m = np.array([transforms.get(n) == "log" for n in names], dtype=bool)
        return m if m.any() else None

    return mask(inputs), mask(outputs)


def check_log_columns(arr, mask, names: Sequence[str], *, what: str) -> None:
    """Every value of a log-transformed column of ``arr [N, C]`` must be > 0.

    Raises:
        ValueError: naming the first such column with a value ≤ 0, the first bad row
            (0-based) and its value, and how many there are.
    """
    if mask is None:
        return
    arr = np.asarray(arr, dtype=np.float64)
    for j in np.flatnonzero(mask):
        bad = np.flatnonzero(~(arr[:, j] > 0))
        if bad.size:
            raise ValueError(
                f"column {j} ({names[j]!r}) of {what} is log-transformed (`transforms`) but "
                f"has {_plural(bad.size, 'value')} ≤ 0, the first in row {bad[0]} "
                f"({arr[bad[0], j]:g}); a log transform needs values > 0. Drop the transform "
                f"of {names[j]!r}, or shift the column so that it is positive."
            )


def check_dataset_transforms(dataset: Dataset, transforms) -> None:
    """Checks declared transforms against a loaded `Dataset`: known column names, and
    values > 0 in every log column of both splits (as `fit` and `predict` will need).

    Raises:
        TypeError, ValueError: As :func:`transform_masks` and :func:`check_log_columns`.
    """
    x_log, y_log = transform_masks(transforms, dataset.input_names, dataset.output_names)
    for split in ("train", "test"):
        for kind, mask, names in (
            ("x", x_log, dataset.input_names),
            ("y", y_log, dataset.output_names),
        ):
            values = getattr(dataset, f"{kind}_{split}")
            check_log_columns(
                values, mask, names, what=f"{kind}_{split} of dataset {dataset.name!r}"
            )


def _skewness(a: np.ndarray) -> float:
    sd = a.std()
    return float(np.mean(((a - a.mean()) / sd) ** 3)) if sd > 0 else 0.0


def suggest_transforms(
    x, y, input_names: Sequence[str], output_names: Sequence[str], transforms=None
) -> list[str]:
    """Notes suggesting a log transform for columns that would likely fit better with one.

    An input is suggested when all its values are > 0 and its middle 90 % (5th to 95th
    percentile) spans more than `SUGGEST_LOG_DECADES` decades; an output when all its
    values are > 0, its sample skewness exceeds `SUGGEST_LOG_SKEWNESS` and its log is less
    skewed. Columns already in ``transforms`` are skipped.

    Args:
        x: training inputs ``[N, d]``; y: training outputs ``[N, O]``.
        input_names, output_names: the column names.
        transforms: the declared ``{column name: "log"}`` (default none).

    Returns:
        One sentence per suggested column (empty when none).
    """
    declared = check_transforms(transforms)
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64).reshape(len(x), -1)
    notes = []
    for j, name in enumerate(input_names):
        column = x[:, j]
        if name in declared or not len(column) or not np.all(column > 0):
            continue
        lo, hi = np.quantile(column, [0.05, 0.95])
        decades = np.log10(hi / lo)
        if decades > SUGGEST_LOG_DECADES:
            notes.append(
                f"input {name!r} is positive and its middle 90 % spans {decades:.1f} decades "
                f"({lo:.3g} to {hi:.3g}); a log transform may fit better: "
                f'transforms={{"{name}": "log"}} in Python, or `{name} = "log"` under '
                "[data.transforms] in the run spec."
            )
    for j, name in enumerate(output_names):
        column = y[:, j]
        if name in declared or not len(column) or not np.all(column > 0):
            continue
        skew, log_skew = _skewness(column), _skewness(np.log(column))
        if skew > SUGGEST_LOG_SKEWNESS and abs(log_skew) < skew:
            notes.append(
                f"output {name!r} is positive and strongly skewed (skewness {skew:.2f}; "
                f"{log_skew:.2f} for its log); a log transform (multiplicative noise, "
                f'positive predictions) may fit better: transforms={{"{name}": "log"}} in '
                f'Python, or `{name} = "log"` under [data.transforms] in the run spec.'
            )
    return notes


# ---------------------------------------------------------------------- shared helpers


def _existing_file(path, argument: str) -> Path:
    """Returns `path` as a Path, raising if it does not name an existing regular file."""
    if not isinstance(path, str | os.PathLike):
        raise TypeError(f"`{argument}` must be a str or path; got {type(path).__name__}.")
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"`{argument}`: no such file: {path}")
    if not path.is_file():
        raise ValueError(f"`{argument}`: {path} is not a regular file.")
    return path


def _split_rows(
    num_rows: int, test_fraction: float, seed, source: str
) -> tuple[np.ndarray, np.ndarray]:
    """Random train/test row indices (each sorted, so rows keep their file order).

    `round(test_fraction * num_rows)` rows go to the test set, chosen by a permutation
    from `np.random.default_rng(seed)`.
    """
    num_test = round(test_fraction * num_rows)
    num_train = num_rows - num_test
    if num_train < MIN_TRAIN_ROWS:
        raise ValueError(
            f"{source} has {_plural(num_rows, 'data row')}; with test_fraction={test_fraction} "
            f"{num_train} remain for training, but at least {MIN_TRAIN_ROWS} are needed. "
            "Add rows or lower `test_fraction`."
        )
    order = np.random.default_rng(seed).permutation(num_rows)
    return np.sort(order[num_test:]), np.sort(order[:num_test])


# --------------------------------------------------------------------------------- CSV


def read_table(path) -> tuple[list[str], np.ndarray]:
    """The header and values ``[N, C]`` of a numeric CSV file, validated like :func:`load_csv`."""
    header, values, _ = _read_csv(_existing_file(path, "path"))
    return header, values


def _read_csv(path: Path) -> tuple[list[str], np.ndarray, list[int]]:
    """Parses a numeric CSV file with a header row.

    Blank lines (and lines whose cells are all empty) are skipped.

    Returns:
        The header, the values [N, C] and the 1-based file line number of each data row.
    """
    header: list[str] | None = None
    rows: list[list[float]] = []
    lines: list[int] = []
    try:
        # utf-8-sig strips the byte-order mark spreadsheet programs put before the header.
        with path.open(newline="", encoding="utf-8-sig") as f:
            reader = csv.reader(f)
            for record in reader:
                line = reader.line_num
                if all(not cell.strip() for cell in record):
                    continue
                if header is None:
                    header = [cell.strip() for cell in record]
                    _check_header(header, path)
                    continue
                if len(record) != len(header):
                    raise ValueError(
                        f"{path}: line {line} has {_plural(len(record), 'field')}; expected "
                        f"{len(header)} (one per header column)."
                    )
                values = []
                for j, cell in enumerate(record):
                    try:
                        values.append(float(cell))
                    except ValueError:
                        _check_separator(header, path)
                        raise ValueError(
                            f"{path}: line {line}, column {j} ({header[j]!r}): cannot parse "
                            f"{cell!r} as a number."
                        ) from None
                rows.append(values)
                lines.append(line)
    except UnicodeDecodeError as error:
        raise ValueError(f"{path} is not a UTF-8 text (CSV) file: {error}.") from error
    except csv.Error as error:
        raise ValueError(f"{path}: malformed CSV at line {reader.line_num}: {error}.") from error
    if header is None:
        raise ValueError(f"{path} is empty; expected a header row followed by data rows.")
    if not rows:
        raise ValueError(f"{path} has a header but no data rows.")
    table = np.array(rows, dtype=np.float64)
    check_values(table, what=str(path), column_names=header, row_labels=lines, row_word="line")
    return header, table, lines


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _check_header(header: list[str], path: Path) -> None:
    if all(_is_number(name) for name in header):
        raise ValueError(
            f"{path}: the first row {header} looks like data, not a header (every cell is a "
            "number); the first line must name the columns, e.g. `x1,x2,y`."
        )
    empty = [j for j, name in enumerate(header) if not name]
    if empty:
        raise ValueError(
            f"{path}: the header has empty column names at columns {empty}; every column "
            "needs a name."
        )
    duplicates = sorted({n for n in header if header.count(n) > 1})
    if duplicates:
        raise ValueError(f"{path}: the header has duplicate column names: {duplicates}.")


def _check_separator(header: list[str], path: Path) -> None:
    """A one-column header holding ``;`` or a tab is a file with another separator."""
    if len(header) != 1:
        return
    for separator, word in ((";", "semicolons"), ("\t", "tabs")):
        if separator in header[0]:
            raise ValueError(
                f"{path} looks separated by {word}, not commas (its header is one column "
                f"{header[0]!r}); bayesresnet reads comma-separated files. Save it with "
                f"commas, e.g. pandas.read_csv(path, sep={separator!r}).to_csv(new_path, "
                "index=False)."
            )


def _select_columns(header: list[str], outputs, path: Path) -> tuple[list[int], list[int]]:
    """Input and output column indices for `outputs` (names, or a trailing-column count)."""
    _check_separator(header, path)
    num_columns = len(header)
    if isinstance(outputs, bool):
        raise TypeError(f"`outputs` must be a list of column names or an int; got {outputs!r}.")
    if isinstance(outputs, int | np.integer):
        count = operator.index(outputs)
        if not 1 <= count < num_columns:
            raise ValueError(
                f"`outputs`={count} trailing columns is invalid for {path}, which has "
                f"{num_columns} columns {header}; use 1 to {num_columns - 1} so at least one "
                "input remains."
            )
        output_idx = list(range(num_columns - count, num_columns))
    else:
        if isinstance(outputs, str):
            outputs = [outputs]
        if not isinstance(outputs, Sequence) or not all(isinstance(o, str) for o in outputs):
            raise TypeError(f"`outputs` must be a list of column names or an int; got {outputs!r}.")
        outputs = list(outputs)
        if not outputs:
            raise ValueError(
                f"`outputs` must name columns of {path}; it must name at least one column, "
                "got an empty list."
            )
        unknown = [o for o in outputs if o not in header]
        if unknown:
            raise ValueError(
                f"`outputs` must name columns of {path}; got {outputs}, but the header has "
                f"{header}: it names {unknown} which are not columns (available columns: "
                f"{header})."
            )
        duplicates = sorted({o for o in outputs if outputs.count(o) > 1})
        if duplicates or len(outputs) == num_columns:
            why = (
                f"lists columns more than once: {duplicates}"
                if duplicates
                else f"selects every column of {path}"
            )
            raise ValueError(
                "`outputs` must list distinct columns and leave at least one input; got "
                f"{outputs}, which {why}."
            )
        output_idx = [header.index(o) for o in outputs]
    input_idx = [j for j in range(num_columns) if j not in output_idx]
    return input_idx, output_idx


def check_outputs(
    path: str | os.PathLike, outputs
) -> tuple[tuple[str, ...], tuple[str, ...]] | None:
    """Checks that `outputs` selects columns of the CSV file `path`, reading its header only.

    A file whose header cannot be read (not UTF-8, empty, malformed) passes: `load_csv`
    reports why when the data are loaded.

    Returns:
        The input and the output column names, or None when the header cannot be read.

    Raises:
        TypeError, ValueError: As `load_csv` does for the header and for `outputs`.
    """
    header = None
    try:
        with Path(path).open(newline="", encoding="utf-8-sig") as f:
            rows = ([cell.strip() for cell in record] for record in csv.reader(f))
            header = next((row for row in rows if any(row)), None)
    except (OSError, UnicodeDecodeError, csv.Error):
        pass
    if header is None:
        return None
    _check_header(header, Path(path))
    input_idx, output_idx = _select_columns(header, outputs, Path(path))
    return tuple(header[j] for j in input_idx), tuple(header[j] for j in output_idx)


def load_csv(
    path: str | os.PathLike,
    *,
    outputs: Sequence[str] | str | int,
    test_path: str | os.PathLike | None = None,
    test_fraction: float = 0.2,
    seed=0,
    name: str | None = None,
) -> Dataset:
    """Loads a numeric CSV file (with a header row) into a `Dataset`.

    The columns named in `outputs` (in that order) are the outputs; all remaining columns,
    in file order, are the inputs. Blank lines are skipped; every other line must have one
    numeric field per header column.

    If `test_path` is None, `round(test_fraction * N)` of the N rows, chosen by a
    permutation from `np.random.default_rng(seed)`, form the test set (rows keep their
    file order within each split); `test_fraction=0` gives an empty test set. Otherwise the
    whole of `path` is the training set and the whole of `test_path` the test set; its
    header must hold the same column names (in any order) and `test_fraction` is ignored.

    Example::

        data = load_csv("borehole.csv", outputs=["flow"], test_fraction=0.25, seed=1)

    Args:
        path: The CSV file (training data, or all data when `test_path` is None).
        outputs: The output column names (a single str is one name), or an int: the number
            of trailing columns that are outputs.
        test_path: An optional CSV file with the test data.
        test_fraction: The fraction of rows held out for testing, in [0, 1).
        seed: Seed for `np.random.default_rng`, used for the split.
        name: The data set's name; defaults to the file's stem.

    Returns:
        The `Dataset`.

    Raises:
        FileNotFoundError: If a file does not exist.
        TypeError: If `outputs` or `test_fraction` has the wrong type.
        ValueError: If a file is empty, not UTF-8 text, has a first row of numbers (data, not
            a header), empty or duplicate header names,
            a line with the wrong number of fields (line number, expected and found
            counts), a cell that is not a number (line and column), NaN, infinite or
            too large values (1-based file line numbers and columns), if `outputs` names
            an unknown column (the available ones are listed) or leaves no input, if the
            train and test headers differ, or if fewer than `MIN_TRAIN_ROWS` training rows remain.
    """
    fraction = check_fraction("test_fraction", test_fraction)
    path = _existing_file(path, "path")
    if test_path is not None:
        test_path = _existing_file(test_path, "test_path")
    header, table, _ = _read_csv(path)
    input_idx, output_idx = _select_columns(header, outputs, path)
    if test_path is None:
        train_rows, test_rows = _split_rows(len(table), fraction, seed, str(path))
        train, test = table[train_rows], table[test_rows]
    else:
        test_header, test_table, _ = _read_csv(test_path)
        if set(test_header) != set(header):
            missing = [c for c in header if c not in test_header]
            extra = [c for c in test_header if c not in header]
            raise ValueError(
                f"the header of {test_path} does not match that of {path}: "
                f"missing {missing}, unexpected {extra}. Both files need the same columns."
            )
        if len(table) < MIN_TRAIN_ROWS:
            raise ValueError(
                f"{path} has {_plural(len(table), 'data row')}, all for training (the test "
                f"rows are in {test_path}), but at least {MIN_TRAIN_ROWS} are needed. Add "
                "rows to the training file."
            )
        train = table
        test = test_table[:, [test_header.index(c) for c in header]]
    return Dataset(
        x_train=train[:, input_idx],
        y_train=train[:, output_idx],
        x_test=test[:, input_idx],
        y_test=test[:, output_idx],
        input_names=tuple(header[j] for j in input_idx),
        output_names=tuple(header[j] for j in output_idx),
        name=path.stem if name is None else name,
    )


# --------------------------------------------------------------------------------- NPZ


def _npz_names(archive, key: str, path: Path) -> tuple[str, ...]:
    arr = archive[key]
    if arr.ndim != 1 or arr.dtype.kind not in "US":
        raise ValueError(
            f"`{key}` in {path} must be a 1-D array of strings; got dtype {arr.dtype} and "
            f"shape {arr.shape}."
        )
    return tuple(str(v) for v in arr.tolist())


def _read_npz(path: Path):
    """The known arrays of an `.npz` archive (checked as `load_npz` documents), and its
    input and output names (None when absent)."""
    try:
        archive = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(f"{path} is not a readable .npz archive: {error}") from error
    if not isinstance(archive, np.lib.npyio.NpzFile):
        raise ValueError(
            f"{path} holds a single .npy array, not an .npz archive with keys "
            f"{list(_NPZ_REQUIRED)}; save one with `save_npz` or `np.savez`."
        )
    with archive:
        keys = list(archive.files)
        missing = [k for k in _NPZ_REQUIRED if k not in keys]
        if missing:
            raise ValueError(
                f"{path} lacks the required key(s) {missing}; keys found: {keys}. Expected "
                f"{list(_NPZ_REQUIRED)} and optionally {list(_NPZ_OPTIONAL)}."
            )
        has_test = ("x_test" in keys, "y_test" in keys)
        if has_test[0] != has_test[1]:
            present, absent = ("x_test", "y_test") if has_test[0] else ("y_test", "x_test")
            raise ValueError(f"{path} has `{present}` but not `{absent}`; give both or neither.")
        unknown = [k for k in keys if k not in _NPZ_REQUIRED + _NPZ_OPTIONAL]
        if unknown:
            warnings.warn(
                f"{path}: ignoring unknown keys {unknown}; known keys are "
                f"{list(_NPZ_REQUIRED + _NPZ_OPTIONAL)}.",
                UserWarning,
                stacklevel=3,  # the caller of load_npz
            )
        try:
            arrays = {k: archive[k] for k in keys if k not in unknown}
        except (OSError, ValueError, EOFError, zipfile.BadZipFile) as error:
            raise ValueError(f"{path} is not a readable .npz archive: {error}") from error
        input_names = _npz_names(archive, "input_names", path) if "input_names" in keys else None
        output_names = _npz_names(archive, "output_names", path) if "output_names" in keys else None
    return arrays, input_names, output_names


def load_npz(
    path: str | os.PathLike,
    *,
    test_fraction: float = 0.2,
    seed=0,
    name: str | None = None,
) -> Dataset:
    """Loads a `Dataset` from a NumPy `.npz` archive (as written by `save_npz`).

    Keys: `x_train` [N, D] and `y_train` [N, O] or [N] (required); `x_test` and `y_test`
    (optional, both or neither); `input_names` and `output_names` (optional 1-D string
    arrays; default `x1, ..., xD` and `y1, ..., yO`); `name` (optional 0-d string). Other
    keys are ignored with a warning. Without test arrays, `round(test_fraction * N)` rows
    chosen by `np.random.default_rng(seed)` form the test set, as in `load_csv`.

    Args:
        path: The `.npz` file.
        test_fraction: The fraction of rows held out when the archive has no test arrays.
        seed: Seed for `np.random.default_rng`, used for the split.
        name: The data set's name; defaults to the archive's `name`, then the file's stem.

    Returns:
        The `Dataset`.

    Raises:
        FileNotFoundError: If the file does not exist.
        TypeError: If `test_fraction` is not a number, or an array is not numeric.
        ValueError: If the file is not a readable `.npz` archive, required keys are missing
            (the keys found are listed), only one of `x_test`/`y_test` is present, names
            are not 1-D string arrays, or the arrays fail `Dataset`'s checks.

    Warns:
        UserWarning: For keys other than the ones above.
    """
    fraction = check_fraction("test_fraction", test_fraction)
    path = _existing_file(path, "path")
    arrays, input_names, output_names = _read_npz(path)
    has_test = ("x_test" in arrays, "y_test" in arrays)
    x, y = validate_xy(
        arrays["x_train"],
        arrays["y_train"],
        name_x=f"x_train in {path}",
        name_y=f"y_train in {path}",
        input_names=input_names,
        output_names=output_names,
    )
    if all(has_test):
        x_test, y_test = validate_xy(
            arrays["x_test"],
            arrays["y_test"],
            name_x=f"x_test in {path}",
            name_y=f"y_test in {path}",
            input_names=input_names,
            output_names=output_names,
        )
    else:
        train_rows, test_rows = _split_rows(len(x), fraction, seed, str(path))
        x, x_test = x[train_rows], x[test_rows]
        y, y_test = y[train_rows], y[test_rows]
    if name is None:
        name = str(arrays["name"]) if "name" in arrays else path.stem
    return Dataset(
        x_train=x,
        y_train=y,
        x_test=x_test,
        y_test=y_test,
        input_names=input_names or tuple(f"x{j + 1}" for j in range(x.shape[1])),
        output_names=output_names or tuple(f"y{j + 1}" for j in range(y.shape[1])),
        name=name,
    )


def save_npz(dataset: Dataset, path: str | os.PathLike) -> Path:
    """Writes `dataset` to an uncompressed `.npz` archive that `load_npz` reads back.

    The write is atomic (`_io.write_atomic`): readers see either the old file or the
    complete new one. `path` is used as given (no `.npz` is appended).

    Args:
        dataset: The data set to save.
        path: The destination file; its directory must exist.

    Returns:
        `path` as a `Path`.

    Raises:
        TypeError: If `dataset` is not a `Dataset`.
        FileNotFoundError: If the destination directory does not exist.
    """
    if not isinstance(dataset, Dataset):
        raise TypeError(f"`dataset` must be a Dataset; got {type(dataset).__name__}.")
    path = Path(path)
    directory = path.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"cannot save to {path}: directory {directory} does not exist.")
    buffer = io.BytesIO()
    np.savez(
        buffer,
        x_train=dataset.x_train,
        y_train=dataset.y_train,
        x_test=dataset.x_test,
        y_test=dataset.y_test,
        input_names=np.array(dataset.input_names, dtype=str),
        output_names=np.array(dataset.output_names, dtype=str),
        name=np.array(dataset.name, dtype=str),
    )
    write_atomic(path, buffer.getvalue())
    return path
