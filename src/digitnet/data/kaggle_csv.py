"""The CSV layout of Kaggle's "Digit Recognizer" competition.

A training file has a header ``label,pixel0,pixel1,...,pixel783`` and one
image per line: the digit, then 784 grey levels 0..255 in row-major order.
A test file is the same without the ``label`` column.  A file without a
header is accepted too; it is then told apart by its column count.

The parser works on the whole file's bytes at once with NumPy (in slices of a
few megabytes so memory stays bounded), which is far faster than parsing line
by line, yet it still reports the exact line of the first bad value.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from digitnet.errors import DataError

from .idx import PathLike, atomic_output, open_for_reading

__all__ = ["read_kaggle_csv", "write_kaggle_csv", "N_PIXELS"]

#: Pixels per image in the Kaggle files (28 x 28).
N_PIXELS = 784

# Lines are parsed in slices of about this many bytes (~600 image rows): the
# temporaries then stay small enough for the allocator to reuse them.
_SLICE = 1 << 20

_COMMA, _NEWLINE, _CR, _ZERO, _NINE = ord(","), ord("\n"), ord("\r"), ord("0"), ord("9")


def read_kaggle_csv(path: PathLike, *, n_classes: int = 10) -> tuple[np.ndarray, np.ndarray | None]:
    """Read a Kaggle digit-recognizer CSV file.

    Args:
        path: the ``.csv`` file, with a ``label,pixel0,...`` (training) or
            ``pixel0,...`` (test) header.
        n_classes: labels must lie in ``0..n_classes-1``.

    Returns:
        ``(X, y)``: ``X`` is uint8 of shape ``(n, 784)``; ``y`` is int64 of
        shape ``(n,)``, or ``None`` for a file without a label column.

    Raises:
        DataError: empty file, bad header, a line with the wrong number of
            values, a value that is not a whole number, a pixel outside
            0..255 or a label outside 0..n_classes-1.  The message gives the
            line number (counting the header as line 1).
    """
    path = Path(path)
    with open_for_reading(path, "CSV file") as handle:
        try:
            data = handle.read()
        except OSError as exc:
            raise DataError(f"{path}: read failed ({exc}); check the disk") from None
    # Offsets into ``data`` instead of slices: the file may be ~100 MB and
    # every bytes slice would copy it.
    start = 3 if data.startswith(b"\xef\xbb\xbf") else 0  # UTF-8 byte-order mark from some editors
    end = len(data)
    while end > start and data[end - 1] in b"\r\n \t":  # trailing blank lines are harmless
        end -= 1
    if end == start or not data[start : start + 4096].strip():
        raise DataError(f"{path}: the file is empty; expected a header 'label,pixel0,...,pixel783' and one image per line")

    first_end = data.find(b"\n", start, end)
    if first_end < 0:
        first_end = end
    labelled, has_header = _inspect_first_line(path, data[start:first_end].rstrip(b"\r"))
    if has_header:
        start = first_end + 1
    n_cols = N_PIXELS + (1 if labelled else 0)
    first_row_line = 2 if has_header else 1
    if start >= end:
        raise DataError(f"{path}: the file has a header but no images; expected one image per line after it")

    table = _parse_body(path, data, start, end, n_cols, first_row_line)
    pixels = table[:, 1:] if labelled else table
    if pixels.max() > 255:  # one cheap pass; the search below runs only on failure
        row = int(np.flatnonzero((pixels > 255).any(axis=1))[0])
        col = int(np.flatnonzero(pixels[row] > 255)[0])
        raise DataError(
            f"{path} line {row + first_row_line}: pixel{col} is {int(pixels[row, col])}, "
            "outside 0..255; pixels must be grey levels 0..255"
        )
    y = None
    if labelled:
        y = table[:, 0].astype(np.int64)
        if y.max() >= n_classes:
            row = int(np.flatnonzero(y >= n_classes)[0])
            raise DataError(
                f"{path} line {row + first_row_line}: label {int(y[row])} is outside 0..{n_classes - 1}; "
                "the first column must be the class"
            )
    return pixels.astype(np.uint8), y


def _inspect_first_line(path: Path, line: bytes) -> tuple[bool, bool]:
    """Return ``(labelled, has_header)`` from the first line of the file."""
    names = [name.strip() for name in line.decode("utf-8", "replace").split(",")]
    pixel_names = [f"pixel{i}" for i in range(N_PIXELS)]
    if names == ["label"] + pixel_names:
        return True, True
    if names == pixel_names:
        return False, True
    if all(name.isdigit() for name in names):
        # No header: tell training from test files by the column count.
        if len(names) in (N_PIXELS, N_PIXELS + 1):
            return len(names) == N_PIXELS + 1, False
        raise DataError(
            f"{path} line 1: {len(names)} values, expected {N_PIXELS + 1} (label + pixels) "
            f"or {N_PIXELS} (pixels only)"
        )
    shown = ",".join(names[:3]) + (",..." if len(names) > 3 else "")
    raise DataError(
        f"{path} line 1: unexpected header '{shown}' ({len(names)} columns); expected "
        f"'label,pixel0,...,pixel{N_PIXELS - 1}' or 'pixel0,...,pixel{N_PIXELS - 1}'"
    )


def _parse_body(path: Path, data: bytes, start: int, end: int, n_cols: int, first_line_no: int) -> np.ndarray:
    """Parse ``data[start:end]`` (comma-separated non-negative integers) into int16 ``(n, n_cols)``."""
    parts = []
    line_no = first_line_no
    view = memoryview(data)
    while start < end:
        # Cut at a line end so every slice holds whole lines.
        stop = data.find(b"\n", min(start + _SLICE, end - 1), end) + 1 or end
        chars = np.frombuffer(view[start:stop], dtype=np.uint8)
        if stop == end and data[end - 1] != _NEWLINE:
            chars = np.append(chars, np.uint8(_NEWLINE))  # the last line has no line end
        part = _parse_slice(path, chars, n_cols, line_no)
        parts.append(part)
        line_no += part.shape[0]
        start = stop
    return np.concatenate(parts) if len(parts) > 1 else parts[0]


# Character classes, so one table lookup replaces several comparisons:
# 0 digit, 1 comma, 2 newline, 3 anything else, 4 carriage return.
_CLASS = np.full(256, 3, dtype=np.uint8)
_CLASS[_ZERO : _NINE + 1] = 0
_CLASS[_COMMA] = 1
_CLASS[_NEWLINE] = 2
_CLASS[_CR] = 4


def _parse_slice(path: Path, chars: np.ndarray, n_cols: int, line_no: int) -> np.ndarray:
    """Parse whole lines (``chars`` ends with a newline); ``line_no`` is the first line's number."""
    kind = _CLASS[chars]
    if kind.max() >= 3:
        if kind.max() == 4:  # Windows line ends: drop the carriage returns
            chars = chars[kind != 4]
            kind = _CLASS[chars]
        if kind.max() == 3:
            _fail_at(path, chars, int(np.argmax(kind == 3)), line_no, "is not a whole number 0..255")

    ends = np.flatnonzero(kind)  # every value is closed by a comma or a newline
    lengths = np.diff(ends, prepend=-1) - 1

    # Values per line, from the positions (among values) of each line's last value.
    line_last = np.flatnonzero(kind[ends] == 2)
    per_line = np.diff(line_last, prepend=-1)
    if (per_line != n_cols).any():
        row = int(np.argmax(per_line != n_cols))
        got = int(per_line[row])
        if got == 1 and lengths[line_last[row]] == 0:
            raise DataError(f"{path} line {line_no + row}: the line is empty; remove blank lines between images")
        raise DataError(
            f"{path} line {line_no + row}: {got} values, expected {n_cols}"
            f" ({'label + ' if n_cols > N_PIXELS else ''}{N_PIXELS} pixels)"
        )
    if lengths.min() == 0:
        _fail_at(path, chars, int(ends[np.argmax(lengths == 0)]), line_no, "is empty (two commas in a row)")
    # No valid value needs more than 3 digits; refusing longer ones (even
    # zero-padded) keeps the arithmetic below simple and exact.
    if lengths.max() > 3:
        first = int(np.argmax(lengths > 3))
        _fail_at(path, chars, int(ends[first] - lengths[first]), line_no,
                 "is too large (pixels are 0..255, labels 0..9)")

    # Each value from its last three digits; a digit before the value's start
    # is masked out.  (Indices below 0 wrap to the end; the mask hides them.)
    values = chars[ends - 1].astype(np.int16)
    values -= _ZERO
    tens = chars[ends - 2].astype(np.int16)
    tens -= _ZERO
    tens *= lengths >= 2
    values += tens * 10
    hundreds = chars[ends - 3].astype(np.int16)
    hundreds -= _ZERO
    hundreds *= lengths >= 3
    values += hundreds * 100
    return values.reshape(-1, n_cols)


def _fail_at(path: Path, chars: np.ndarray, index: int, line_no: int, problem: str) -> None:
    """Raise a DataError quoting the value around ``chars[index]`` and its line."""
    line = line_no + int(np.count_nonzero(chars[:index] == _NEWLINE))
    line_start = int(np.flatnonzero(chars[:index] == _NEWLINE)[-1]) + 1 if line > line_no else 0
    column = int(np.count_nonzero(chars[line_start:index] == _COMMA)) + 1
    seps = np.flatnonzero((chars == _COMMA) | (chars == _NEWLINE))
    before = seps[seps < index]
    after = seps[seps >= index]
    lo = int(before[-1]) + 1 if before.size else 0
    hi = int(after[0]) if after.size else len(chars)
    text = chars[lo:hi].tobytes().decode("utf-8", "replace")
    if len(text) > 20:
        text = text[:20] + "..."
    raise DataError(
        f"{path} line {line}, column {column}: value '{text}' {problem}; "
        "every value must be a plain non-negative integer of at most 3 digits"
    )


def write_kaggle_csv(path: PathLike, X: np.ndarray, y: np.ndarray | None = None) -> None:
    """Write images (and optionally labels) in the Kaggle layout, atomically.

    Args:
        path: destination ``.csv``; written to a temporary file in the same
            folder and renamed into place.
        X: grey levels 0..255, shape ``(n, 784)`` or ``(n, 28, 28)``, any
            integer dtype (or floats holding whole numbers).
        y: optional labels 0..9, shape ``(n,)``; without them the file has
            the test layout (no ``label`` column).

    Raises:
        DataError: wrong shapes, values that are not whole numbers in range.
    """
    path = Path(path)
    X = np.asarray(X)
    if X.ndim < 2 or int(np.prod(X.shape[1:])) != N_PIXELS:
        raise DataError(f"{path}: images must have shape (n, 784) or (n, 28, 28), got {X.shape}")
    X = X.reshape(X.shape[0], N_PIXELS)
    if X.size and (X.dtype.kind not in "uif" or (X.dtype.kind == "f" and not np.all(np.mod(X, 1) == 0))
                   or X.min() < 0 or X.max() > 255):
        raise DataError(f"{path}: pixels must be whole numbers 0..255 (got dtype {X.dtype}); pass the raw uint8 images")
    pixels = X.astype(np.uint8)
    header = ",".join(f"pixel{i}" for i in range(N_PIXELS))
    if y is not None:
        y = np.asarray(y)
        if y.shape != (X.shape[0],):
            raise DataError(f"{path}: labels must have shape ({X.shape[0]},), got {y.shape}")
        if y.size and (y.dtype.kind not in "ui" or y.min() < 0 or y.max() > 9):
            raise DataError(f"{path}: labels must be integers 0..9 (got dtype {y.dtype}); pass class indices, not one-hot rows")
        header = "label," + header
        table = np.column_stack([y.astype(np.uint8), pixels])
    else:
        table = pixels
    # str() of every value once, then joined per row: simple and fast enough
    # (about a second for the 42,000-row Kaggle training file).
    names = [str(i) for i in range(256)]
    lines = [header]
    lines.extend(",".join([names[v] for v in row]) for row in table.tolist())
    text = "\n".join(lines) + "\n"
    with atomic_output(path, "CSV file") as handle:
        handle.write(text.encode("ascii"))
