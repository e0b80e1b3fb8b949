"""Tests for bayesresnet.data: the Dataset container, validate_xy and the CSV/NPZ loaders."""

import os
import re

import numpy as np
import pytest

from bayesresnet import data
from bayesresnet.data import MIN_TRAIN_ROWS, Dataset, load_csv, load_npz, save_npz, validate_xy


def _dataset(num_train=6, num_test=2, **overrides):
    rng = np.random.default_rng(0)
    fields = dict(
        x_train=rng.normal(size=(num_train, 2)),
        y_train=rng.normal(size=num_train),
        x_test=rng.normal(size=(num_test, 2)),
        y_test=rng.normal(size=num_test),
        input_names=("a", "b"),
        output_names=("y",),
        name="toy",
    )
    fields.update(overrides)
    return Dataset(**fields)


def _write(path, text):
    path.write_text(text, encoding="utf-8")
    return path


def _table_csv(path, values, header=("a", "b", "c", "y")):
    lines = [",".join(header)] + [",".join(repr(float(v)) for v in row) for row in values]
    return _write(path, "\n".join(lines) + "\n")


# ----------------------------------------------------------------------------- Dataset


def test_dataset_converts_and_exposes_sizes():
    x = np.arange(12).reshape(6, 2)  # ints are converted to float64
    ds = _dataset(x_train=x, input_names=["a", "b"])
    assert ds.x_train.dtype == np.float64 and ds.y_train.shape == (6, 1)
    assert (ds.num_inputs, ds.num_outputs, ds.num_train, ds.num_test) == (2, 1, 6, 2)
    assert ds.input_names == ("a", "b")  # a list becomes a tuple
    x[0, 0] = 99  # the data set holds its own read-only copy
    assert ds.x_train[0, 0] == 0
    with pytest.raises(ValueError, match="read-only"):
        ds.x_train[0, 0] = 1.0


def test_dataset_allows_empty_test_set():
    ds = _dataset(x_test=np.empty((0, 2)), y_test=np.empty((0, 1)))
    assert ds.num_test == 0


def test_dataset_row_mismatch_names_both_counts():
    with pytest.raises(ValueError, match=r"6 rows in `x_train of dataset 'toy'` and 5 rows"):
        _dataset(y_train=np.zeros(5))


def test_dataset_non_finite_names_array_columns_and_rows():
    x = np.random.default_rng(1).normal(size=(10, 2))
    x[[1, 4], 1] = np.nan
    x[7, 0] = np.inf
    pattern = re.escape(
        "`x_train of dataset 'toy'` contains NaN or infinite values: column 0 ('a') has "
        "1 non-finite value (0-based row 7); column 1 ('b') has 2 non-finite values "
        "(0-based rows 1, 4)."
    )
    with pytest.raises(ValueError, match=pattern):
        _dataset(num_train=10, x_train=x)


def test_dataset_needs_min_train_rows():
    with pytest.raises(ValueError, match=f"has 2 training rows; at least {MIN_TRAIN_ROWS}"):
        _dataset(num_train=2)


def test_dataset_test_columns_must_match_train():
    with pytest.raises(ValueError, match="`x_test` of dataset 'toy' must have the same number"):
        _dataset(x_test=np.zeros((2, 3)))
    with pytest.raises(ValueError, match=r"`y_test`.*got 2 and 1"):
        _dataset(y_test=np.zeros((2, 2)))


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        ({"input_names": ("a",)}, ValueError, r"`input_names`.*expected 2, got 1 \(\['a'\]\)"),
        ({"output_names": ("y", "z")}, ValueError, "`output_names`.*expected 1, got 2"),
        ({"input_names": ("a", "a")}, ValueError, r"duplicate names: \['a'\]"),
        ({"input_names": "ab"}, TypeError, "`input_names`.*sequence of str.*got str"),
        ({"input_names": ("a", 2)}, TypeError, r"must contain only str; got \['str', 'int'\]"),
        ({"name": 3}, TypeError, "`name` must be a str; got int"),
    ],
)
def test_dataset_rejects_bad_names(overrides, error, match):
    with pytest.raises(error, match=match):
        _dataset(**overrides)


def test_dataset_warns_on_constant_training_column():
    x = np.random.default_rng(2).normal(size=(6, 2))
    x[:, 1] = 4.0
    with pytest.warns(UserWarning, match=r"training input column 1 \('b'\).*constant.*4"):
        _dataset(x_train=x)
    with pytest.warns(UserWarning, match=r"training output column 0 \('y'\).*constant"):
        _dataset(y_train=np.ones(6))


# ---------------------------------------------------------------------------- validate_xy


def test_validate_xy_returns_float_arrays():
    x, y = validate_xy([[1, 2], [3, 4]], np.array([True, False]))
    assert x.dtype == y.dtype == np.float64 and y.shape == (2, 1)
    x, _ = validate_xy(np.array([[1, 2.5]], dtype=object), [0.0])  # object arrays of numbers
    assert x.dtype == np.float64


@pytest.mark.parametrize(
    ("x", "y", "error", "match"),
    [
        ([["a", "b"]], [1.0], TypeError, r"`x` must be a numeric array.*got dtype <U1"),
        ([[1.0]], np.array([None], dtype=object), TypeError, "`y` must be a numeric array"),
        ([[1.0]], np.array(["1.5"], dtype=object), TypeError, "`y` must be a numeric array"),
        ([[1.0, 2.0]], [1.0 + 2j], TypeError, "`y` must be a numeric array.*complex"),
        ([1.0, 2.0], [1.0, 2.0], ValueError, r"`x` must be a 2-D.*x.reshape\(-1, 1\)"),
        (np.zeros((2, 1, 1)), [1.0, 2.0], ValueError, "`x` must be a 2-D.*got 3-D"),
        (np.zeros((2, 1)), np.zeros((2, 1, 1)), ValueError, "`y` must be a 1-D or 2-D"),
        (np.zeros((2, 0)), [1.0, 2.0], ValueError, r"`x` must have at least one column"),
        (np.zeros((3, 1)), [1.0, 2.0], ValueError, "3 rows in `x` and 2 rows in `y`"),
    ],
)
def test_validate_xy_rejects_bad_arrays(x, y, error, match):
    with pytest.raises(error, match=match):
        validate_xy(x, y)


def test_validate_xy_non_finite_lists_first_rows_only():
    y = np.zeros((20, 2))
    y[3:11, 1] = -np.inf
    with pytest.raises(
        ValueError,
        match=re.escape(
            "column 1 ('v') has 8 non-finite values (0-based rows 3, 4, 5, 6, 7, ... (3 more))"
        ),
    ):
        validate_xy(np.zeros((20, 1)), y, name_y="targets", output_names=("u", "v"))


# -------------------------------------------------------------------------------- CSV


def test_load_csv_round_trip_and_split(tmp_path):
    values = np.random.default_rng(3).normal(size=(20, 4))
    path = _table_csv(tmp_path / "train.csv", values)
    ds = load_csv(path, outputs=["y"], test_fraction=0.25, seed=1)
    assert (ds.num_train, ds.num_test) == (15, 5)
    assert ds.input_names == ("a", "b", "c") and ds.output_names == ("y",)
    assert ds.name == "train"
    both = np.concatenate([np.hstack([ds.x_train, ds.y_train]), np.hstack([ds.x_test, ds.y_test])])
    np.testing.assert_array_equal(np.sort(both, axis=0), np.sort(values, axis=0))  # exact
    for x in (ds.x_train, ds.x_test):  # rows keep their file order within each split
        rows = [int(np.flatnonzero(values[:, 0] == v)[0]) for v in x[:, 0]]
        assert rows == sorted(rows)
    again = load_csv(path, outputs=["y"], test_fraction=0.25, seed=1)
    np.testing.assert_array_equal(again.x_test, ds.x_test)
    other = load_csv(path, outputs=["y"], test_fraction=0.25, seed=2)
    assert not np.array_equal(other.x_test, ds.x_test)


def test_load_csv_output_selection(tmp_path):
    values = np.random.default_rng(4).normal(size=(8, 4))
    path = _table_csv(tmp_path / "d.csv", values)
    by_count = load_csv(path, outputs=2, test_fraction=0.0, name="n")
    assert by_count.output_names == ("c", "y") and by_count.num_test == 0 and by_count.name == "n"
    np.testing.assert_array_equal(by_count.y_train, values[:, 2:])
    reordered = load_csv(path, outputs=["y", "a"], test_fraction=0.0)
    assert reordered.input_names == ("b", "c") and reordered.output_names == ("y", "a")
    np.testing.assert_array_equal(reordered.y_train, values[:, [3, 0]])
    single = load_csv(path, outputs="b", test_fraction=0.0)
    assert single.output_names == ("b",)


def test_load_csv_separate_test_file_may_reorder_columns(tmp_path):
    rng = np.random.default_rng(5)
    train = _table_csv(tmp_path / "train.csv", rng.normal(size=(6, 4)))
    test_values = rng.normal(size=(3, 4))
    test = _table_csv(tmp_path / "test.csv", test_values, header=("y", "c", "b", "a"))
    ds = load_csv(train, outputs=["y"], test_path=test)
    assert (ds.num_train, ds.num_test) == (6, 3)
    np.testing.assert_array_equal(ds.x_test, test_values[:, [3, 2, 1]])
    np.testing.assert_array_equal(ds.y_test[:, 0], test_values[:, 0])


def test_load_csv_skips_blank_lines_and_bom(tmp_path):
    path = tmp_path / "bom.csv"
    path.write_bytes("\ufeffx, y\n1,2\n\n2,3.5\n,\n3,1\n 4 ,0\n".encode())
    ds = load_csv(path, outputs=["y"], test_fraction=0.0)
    assert ds.input_names == ("x",) and ds.num_train == 4
    np.testing.assert_array_equal(ds.y_train[:, 0], [2, 3.5, 1, 0])


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("", r"empty\.csv is empty; expected a header row"),
        ("a,y\n\n", "has a header but no data rows"),
        ("a,b,y\n1,2,3\n4,5\n6,7,8\n", "line 3 has 2 fields; expected 3"),
        ("a,b,y\n1,2,3\n4,5,6,7\n", "line 3 has 4 fields; expected 3"),
        ("a,b,y\n1,2,3\n4,five,6\n", r"line 3, column 1 \('b'\): cannot parse 'five'"),
        ("a,b,y\n1,2,3\n4,,6\n", r"line 3, column 1 \('b'\): cannot parse ''"),
        ("a,,y\n1,2,3\n", r"empty column names at columns \[1\]"),
        ("a,y,a\n1,2,3\n", r"duplicate column names: \['a'\]"),
    ],
)
def test_load_csv_rejects_malformed_files(tmp_path, text, match):
    path = _write(tmp_path / "empty.csv", text)
    with pytest.raises(ValueError, match=match):
        load_csv(path, outputs=["y"])


def test_load_csv_non_finite_names_lines_and_columns(tmp_path):
    text = "a,b,y\n1,2,3\n4,5,-inf\n7,nan,9\n1,2,3\n4,inf,6\n"
    path = _write(tmp_path / "bad.csv", text)
    pattern = re.escape(
        "column 1 ('b') has 2 non-finite values (lines 4, 6); "
        "column 2 ('y') has 1 non-finite value (line 3)."
    )
    with pytest.raises(ValueError, match=r"bad\.csv contains NaN or infinite values: " + pattern):
        load_csv(path, outputs=["y"])


def test_load_csv_refuses_values_whose_squares_overflow(tmp_path):
    path = _write(tmp_path / "huge.csv", "a,b,y\n1,2,3\n4,5,1e300\n7,8,9\n1,2,-2e200\n")
    pattern = re.escape(
        "huge.csv contains values too large in magnitude (|value| > 1e+150, whose squares "
        "overflow float64): column 2 ('y') has 2 too-large values (lines 3, 5). Rescale "
        "these columns"
    )
    with pytest.raises(ValueError, match=pattern):
        load_csv(path, outputs=["y"])


def test_dataset_refuses_values_whose_squares_overflow():
    x = np.zeros((6, 2))
    x[4, 1] = 1e151
    with pytest.raises(
        ValueError,
        match=r"`x_train of dataset 'toy'` contains values too large in magnitude .*"
        r"column 1 \('b'\) has 1 too-large value \(0-based row 4\)",
    ):
        _dataset(x_train=x)
    _dataset(x_train=np.full((6, 2), 1e149) * np.arange(6)[:, None])  # large but squarable


def test_load_csv_rejects_non_utf8_and_oversized_fields(tmp_path):
    path = tmp_path / "binary.csv"
    path.write_bytes(b"a,y\n\xff\xfe,1\n")
    with pytest.raises(ValueError, match=r"binary\.csv is not a UTF-8 text"):
        load_csv(path, outputs=["y"])
    huge = _write(tmp_path / "huge.csv", "a,y\n1," + "1" * 200_000 + "\n")
    with pytest.raises(ValueError, match=r"huge\.csv: malformed CSV at line \d+: field larger"):
        load_csv(huge, outputs=["y"])


@pytest.mark.parametrize(
    ("outputs", "error", "match"),
    [
        (
            ["z"],
            ValueError,
            r"names \['z'\] which are not columns.*available columns: \['a', 'b', 'y'\]",
        ),
        ([], ValueError, "must name at least one column"),
        (["y", "y"], ValueError, r"more than once: \['y'\]"),
        (["a", "b", "y"], ValueError, "selects every column"),
        (3, ValueError, "use 1 to 2 so at least one input remains"),
        (0, ValueError, "`outputs`=0 trailing columns is invalid"),
        (True, TypeError, "`outputs` must be a list of column names or an int; got True"),
        ([1], TypeError, r"`outputs` must be a list of column names or an int; got \[1\]"),
    ],
)
def test_load_csv_rejects_bad_outputs(tmp_path, outputs, error, match):
    path = _write(tmp_path / "d.csv", "a,b,y\n1,2,3\n4,5,6\n7,8,9\n1,1,1\n")
    with pytest.raises(error, match=match):
        load_csv(path, outputs=outputs, test_fraction=0.0)


def test_load_csv_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"`path`: no such file: .*nope\.csv"):
        load_csv(tmp_path / "nope.csv", outputs=["y"])
    path = _write(tmp_path / "d.csv", "a,y\n1,2\n3,4\n5,6\n")
    with pytest.raises(FileNotFoundError, match=r"`test_path`: no such file: .*t\.csv"):
        load_csv(path, outputs=["y"], test_path=tmp_path / "t.csv")
    with pytest.raises(ValueError, match="is not a regular file"):
        load_csv(tmp_path, outputs=["y"])
    with pytest.raises(TypeError, match="`path` must be a str or path; got int"):
        load_csv(3, outputs=["y"])


def test_load_csv_header_mismatch(tmp_path):
    train = _write(tmp_path / "train.csv", "a,b,y\n1,2,3\n4,5,6\n7,8,9\n")
    test = _write(tmp_path / "test.csv", "a,c,y\n1,2,3\n")
    with pytest.raises(
        ValueError,
        match=r"header of .*test\.csv does not match.*missing \['b'\], unexpected \['c'\]",
    ):
        load_csv(train, outputs=["y"], test_path=test)


def test_load_csv_too_few_training_rows(tmp_path):
    path = _write(tmp_path / "small.csv", "a,y\n1,2\n3,4\n5,6\n7,8\n")
    with pytest.raises(ValueError, match=r"small\.csv has 4 data rows; .*1 remain for training"):
        load_csv(path, outputs=["y"], test_fraction=0.75)
    tiny = _write(tmp_path / "tiny.csv", "a,y\n1,2\n3,4\n")
    test = _write(tmp_path / "test.csv", "a,y\n1,2\n")
    with pytest.raises(ValueError, match=r"tiny\.csv has 2 data rows.*at least 3 are needed"):
        load_csv(tiny, outputs=["y"], test_path=test)


@pytest.mark.parametrize(
    ("fraction", "error", "match"),
    [
        (1.0, ValueError, r"`test_fraction` must be in \[0, 1\); got 1.0"),
        (-0.1, ValueError, r"`test_fraction` must be in \[0, 1\); got -0.1"),
        ("0.2", TypeError, "`test_fraction` must be a number in .*got str"),
    ],
)
def test_load_csv_rejects_bad_test_fraction(tmp_path, fraction, error, match):
    path = _write(tmp_path / "d.csv", "a,y\n1,2\n3,4\n5,6\n")
    with pytest.raises(error, match=match):
        load_csv(path, outputs=["y"], test_fraction=fraction)


# -------------------------------------------------------------------------------- NPZ


def test_save_and_load_npz_round_trip(tmp_path):
    ds = _dataset(name="saved")
    path = save_npz(ds, tmp_path / "d.npz")
    assert path == tmp_path / "d.npz"
    assert os.stat(path).st_mode & 0o777 == 0o644
    back = load_npz(path)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(back, field), getattr(ds, field))
    assert (back.input_names, back.output_names, back.name) == (("a", "b"), ("y",), "saved")
    assert load_npz(path, name="renamed").name == "renamed"


def test_save_npz_overwrites_atomically(tmp_path):
    path = tmp_path / "d.npz"
    save_npz(_dataset(name="first"), path)
    save_npz(_dataset(num_train=8, name="second"), path)
    assert load_npz(path).num_train == 8
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]  # no temporary left


def test_save_npz_failure_keeps_old_file(tmp_path, monkeypatch):
    path = tmp_path / "d.npz"
    save_npz(_dataset(name="first"), path)
    before = path.read_bytes()

    def crash(file, **arrays):
        file.write(b"partial")
        raise OSError("disk full")

    monkeypatch.setattr(data.np, "savez", crash)
    with pytest.raises(OSError, match="disk full"):
        save_npz(_dataset(name="second"), path)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["d.npz"]


def test_save_npz_rejects_bad_arguments(tmp_path):
    with pytest.raises(TypeError, match="`dataset` must be a Dataset; got dict"):
        save_npz({}, tmp_path / "d.npz")
    with pytest.raises(FileNotFoundError, match=r"directory .*missing does not exist"):
        save_npz(_dataset(), tmp_path / "missing" / "d.npz")


def test_load_npz_splits_when_no_test_arrays(tmp_path):
    rng = np.random.default_rng(6)
    path = tmp_path / "plain.npz"
    np.savez(path, x_train=rng.normal(size=(10, 3)), y_train=rng.normal(size=10))
    ds = load_npz(path, test_fraction=0.3, seed=0)
    assert (ds.num_train, ds.num_test) == (7, 3)
    assert ds.input_names == ("x1", "x2", "x3") and ds.output_names == ("y1",)
    assert ds.name == "plain"


def test_load_npz_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match=r"no such file: .*none\.npz"):
        load_npz(tmp_path / "none.npz")
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"this is not a zip archive")
    with pytest.raises(ValueError, match=r"garbage\.npz is not a readable \.npz archive"):
        load_npz(garbage)
    single = tmp_path / "single.npy"
    np.save(single, np.zeros(3))
    with pytest.raises(ValueError, match=r"single\.npy holds a single \.npy array"):
        load_npz(single)
    keys = tmp_path / "keys.npz"
    np.savez(keys, x=np.zeros((4, 1)), y_train=np.zeros(4))
    with pytest.raises(
        ValueError,
        match=r"lacks the required key\(s\) \['x_train'\]; keys found: \['x', 'y_train'\]",
    ):
        load_npz(keys)


def test_load_npz_corrupt_member(tmp_path):
    path = tmp_path / "crc.npz"
    marker = np.full((50, 1), 1234.5678)
    np.savez(path, x_train=marker, y_train=np.arange(50.0))
    raw = bytearray(path.read_bytes())
    at = raw.find(marker.tobytes()[:8])
    raw[at] ^= 0xFF  # flip one data byte: the member's CRC no longer matches
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"crc\.npz is not a readable \.npz archive"):
        load_npz(path)


def test_load_npz_content_errors(tmp_path):
    x, y = np.random.default_rng(7).normal(size=(5, 2)), np.zeros(5)
    only_x = tmp_path / "only_x.npz"
    np.savez(only_x, x_train=x, y_train=y, x_test=x)
    with pytest.raises(ValueError, match="has `x_test` but not `y_test`; give both or neither"):
        load_npz(only_x)
    names = tmp_path / "names.npz"
    np.savez(names, x_train=x, y_train=y, input_names=np.array([1, 2]))
    with pytest.raises(ValueError, match="`input_names` in .*must be a 1-D array of strings"):
        load_npz(names)
    rows = tmp_path / "rows.npz"
    np.savez(rows, x_train=x, y_train=np.zeros(4))
    with pytest.raises(ValueError, match=r"5 rows in `x_train in .*rows\.npz` and 4 rows"):
        load_npz(rows)
    bad = x.copy()
    bad[2, 1] = np.nan
    nan = tmp_path / "nan.npz"
    np.savez(nan, x_train=bad, y_train=y, input_names=np.array(["p", "q"]))
    with pytest.raises(ValueError, match=r"nan\.npz` contains NaN.*column 1 \('q'\).*row 2\)"):
        load_npz(nan)
    text = tmp_path / "text.npz"
    np.savez(text, x_train=np.array([["a", "b"]] * 5), y_train=y)
    with pytest.raises(TypeError, match=r"`x_train in .*text\.npz` must be a numeric array"):
        load_npz(text)


def test_load_npz_warns_on_unknown_keys(tmp_path):
    x = np.random.default_rng(8).normal(size=(5, 2))
    path = tmp_path / "extra.npz"
    np.savez(path, x_train=x, y_train=x[:, 0], x_tset=x)
    with pytest.warns(UserWarning, match=r"ignoring unknown keys \['x_tset'\]"):
        ds = load_npz(path, test_fraction=0.0)
    assert ds.num_test == 0
