"""Kaggle digit-recognizer CSV files: round trips against MNIST and every kind of malformed file."""

from __future__ import annotations

import os

import numpy as np
import pytest

from digitnet.data import kaggle_csv, load_mnist, read_kaggle_csv, write_kaggle_csv
from digitnet.errors import DataError

HEADER = "label," + ",".join(f"pixel{i}" for i in range(784))
TEST_HEADER = HEADER[len("label,"):]


@pytest.fixture(scope="module")
def mnist_head(tmp_path_factory):
    """The first 200 MNIST training images as uint8 (200, 784) and int64 labels."""
    folder = tmp_path_factory.getbasetemp() / "digitnet-cache"  # shared with test_data_mnist
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITNET_CACHE_DIR", str(folder))
        X, y = load_mnist("train", scale=None, dtype=np.uint8)
    return X[:200].copy(), y[:200].copy()


def row(label, pixels=None):
    pixels = [0] * 784 if pixels is None else pixels
    return ",".join(str(v) for v in ([] if label is None else [label]) + list(pixels))


def write_text(tmp_path, text, name="digits.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode())
    return path


def csv_error(path):
    with pytest.raises(DataError) as info:
        read_kaggle_csv(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


# --------------------------------------------------------------------------- #
# round trips


def test_round_trip_with_labels(tmp_path, mnist_head):
    X, y = mnist_head
    path = tmp_path / "train.csv"
    write_kaggle_csv(path, X, y)
    lines = path.read_text().splitlines()
    assert lines[0] == HEADER and len(lines) == 201
    assert lines[1].startswith(f"{y[0]},0,0,")
    X_back, y_back = read_kaggle_csv(path)
    assert X_back.dtype == np.uint8 and X_back.shape == (200, 784)
    assert y_back.dtype == np.int64 and y_back.shape == (200,)
    np.testing.assert_array_equal(X_back, X)
    np.testing.assert_array_equal(y_back, y)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.csv"]  # no temporary file left


def test_round_trip_without_labels(tmp_path, mnist_head):
    X, _ = mnist_head
    path = tmp_path / "test.csv"
    write_kaggle_csv(path, X.reshape(200, 28, 28))
    assert path.read_text().split("\n", 1)[0] == TEST_HEADER
    X_back, y_back = read_kaggle_csv(path)
    assert y_back is None
    np.testing.assert_array_equal(X_back, X)


def test_parsing_in_many_slices_gives_the_same_result(tmp_path, mnist_head, monkeypatch):
    X, y = mnist_head
    path = tmp_path / "train.csv"
    write_kaggle_csv(path, X, y)
    monkeypatch.setattr(kaggle_csv, "_SLICE", 5000)  # about two lines per slice
    X_back, y_back = read_kaggle_csv(path)
    np.testing.assert_array_equal(X_back, X)
    np.testing.assert_array_equal(y_back, y)
    # and a bad value deep in the file still gets its true line number
    text = path.read_text().splitlines()
    text[150] = text[150].replace(",0,", ",x,", 1)
    path.write_text("\n".join(text) + "\n")
    assert "line 151, column" in csv_error(path)


def test_tolerated_variations(tmp_path):
    pixels = list(range(256)) + [7] * 528
    expected = np.array(pixels, dtype=np.uint8)
    crlf = write_text(tmp_path, HEADER + "\r\n" + row(3, pixels) + "\r\n" + row(4, pixels) + "\r\n\r\n\n", "crlf.csv")
    X, y = read_kaggle_csv(crlf)
    assert y.tolist() == [3, 4] and np.array_equal(X[1], expected)
    bom = write_text(tmp_path, "\ufeff" + HEADER + "\n" + row(1), "bom.csv")  # no final newline either
    assert read_kaggle_csv(bom)[1].tolist() == [1]
    headerless = write_text(tmp_path, row(2, pixels) + "\n" + row(5) + "\n", "nohead.csv")
    X, y = read_kaggle_csv(headerless)
    assert y.tolist() == [2, 5] and np.array_equal(X[0], expected)
    headerless_test = write_text(tmp_path, row(None, pixels) + "\n", "nohead-test.csv")
    X, y = read_kaggle_csv(headerless_test)
    assert y is None and np.array_equal(X[0], expected)
    zeros = write_text(tmp_path, HEADER + "\n" + row("007", ["000", "09"] + [0] * 782) + "\n", "zeros.csv")
    X, y = read_kaggle_csv(zeros)
    assert y.tolist() == [7] and X[0, :2].tolist() == [0, 9]


# --------------------------------------------------------------------------- #
# malformed files


@pytest.mark.parametrize(
    "text, expected",
    [
        ("", "the file is empty"),
        ("\n\n", "the file is empty"),
        (HEADER + "\n", "has a header but no images"),
        ("label,pixel0,pixel1\n1,2,3\n", "line 1: unexpected header 'label,pixel0,pixel1' (3 columns); expected 'label,pixel0,...,pixel783'"),
        ("1,2,3\n", "line 1: 3 values, expected 785"),
        (HEADER + "\n" + row(1) + "\n" + row(2)[:-2] + "\n", "line 3: 784 values, expected 785 (label + 784 pixels)"),
        (HEADER + "\n" + row(1) + ",0\n", "line 2: 786 values, expected 785"),
        (TEST_HEADER + "\n" + row(1) + "\n", "line 2: 785 values, expected 784 (784 pixels)"),
        (HEADER + "\n" + row(1) + "\n\n" + row(2) + "\n", "line 3: the line is empty"),
        (HEADER + "\n" + row(1, [0, 1.5] + [0] * 782) + "\n", "line 2, column 3: value '1.5' is not a whole number"),
        (HEADER + "\n" + row(1, [0, -3] + [0] * 782) + "\n", "line 2, column 3: value '-3' is not a whole number"),
        (HEADER + "\n" + row(1, ["ab"] + [0] * 783) + "\n", "line 2, column 2: value 'ab' is not a whole number"),
        (HEADER + "\n" + row(1, [" 4"] + [0] * 783) + "\n", "value ' 4' is not a whole number"),
        (HEADER + "\n" + row(1, [""] + [0] * 783) + "\n", "line 2, column 2: value '' is empty"),
        (HEADER + "\n" + row(1) + "\n" + row(1, [0] * 5 + [256] + [0] * 778) + "\n", "line 3: pixel5 is 256, outside 0..255"),
        (HEADER + "\n" + row(1, [0] * 5 + [1000] + [0] * 778) + "\n", "line 2, column 7: value '1000' is too large"),
        (HEADER + "\n" + row(1) + "\n" + row(10) + "\n", "line 3: label 10 is outside 0..9"),
        (HEADER + "\n" + row("x") + "\n", "line 2, column 1: value 'x' is not a whole number"),
    ],
    ids=[
        "empty", "blank", "header-only", "bad-header", "headerless-wrong-count", "short-line",
        "long-line", "test-with-label", "blank-line", "float", "negative", "letters", "space",
        "empty-value", "pixel-256", "pixel-1000", "label-10", "label-x",
    ],
)
def test_malformed(tmp_path, text, expected):
    assert expected in csv_error(write_text(tmp_path, text))


def test_missing_file(tmp_path):
    assert "no such CSV file" in csv_error(tmp_path / "absent.csv")


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_pipe_named_csv_is_refused_without_blocking(tmp_path):
    from digitnet.data import load

    fifo = tmp_path / "stream.csv"
    os.mkfifo(fifo)
    assert "not a regular file" in csv_error(fifo)
    with pytest.raises(DataError, match="not a regular file"):
        load(fifo)


def test_label_range_follows_n_classes(tmp_path):
    path = write_text(tmp_path, HEADER + "\n" + row(3) + "\n")
    with pytest.raises(DataError, match=r"label 3 is outside 0\.\.2"):
        read_kaggle_csv(path, n_classes=3)


@pytest.mark.parametrize(
    "X, y, expected",
    [
        (np.zeros((2, 783), np.uint8), None, "must have shape (n, 784) or (n, 28, 28)"),
        (np.full((1, 784), 256), None, "pixels must be whole numbers 0..255"),
        (np.full((1, 784), 0.5), None, "pixels must be whole numbers 0..255"),
        (np.zeros((2, 784), np.uint8), np.array([1]), "labels must have shape (2,)"),
        (np.zeros((1, 784), np.uint8), np.array([10]), "labels must be integers 0..9"),
        (np.zeros((1, 784), np.uint8), np.array([1.0]), "labels must be integers 0..9"),
    ],
)
def test_write_refuses_bad_arrays(tmp_path, X, y, expected):
    with pytest.raises(DataError) as info:
        write_kaggle_csv(tmp_path / "out.csv", X, y)
    assert expected in str(info.value)
    assert list(tmp_path.iterdir()) == []


def test_write_accepts_whole_floats(tmp_path):
    write_kaggle_csv(tmp_path / "f.csv", np.full((1, 784), 12.0), np.array([4]))
    X, y = read_kaggle_csv(tmp_path / "f.csv")
    assert X.max() == 12 and y.tolist() == [4]
