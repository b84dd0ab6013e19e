"""Reading and writing IDX files, the format MNIST and its look-alikes ship in.

An IDX file is a tiny header followed by a dense big-endian array::

    byte 0-1   0x00 0x00            (the "magic": always zero)
    byte 2     element type code    (see ``TYPE_CODES``)
    byte 3     number of dimensions (0..255)
    then       one unsigned 32-bit big-endian size per dimension
    then       the elements, row-major, big-endian

The files are usually distributed gzip-compressed (``*.gz``).  Everything here
works on both forms; a gzip stream is recognised by its magic bytes, so a
file's name does not have to tell the truth.

Every problem with a file raises :class:`digitnet.errors.DataError` with one
line naming the file, the problem, and what to do; NumPy, gzip and OS
exceptions never escape for bad input.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import struct
import zlib
from pathlib import Path
from typing import IO, Iterator, Union

import numpy as np

from digitnet import fileio
from digitnet.errors import DataError
from digitnet.fileio import os_reason as _os_reason

__all__ = ["read_idx", "read_idx_and_sha256", "write_idx", "TYPE_CODES"]

PathLike = Union[str, "os.PathLike[str]"]

#: IDX element type code -> big-endian NumPy dtype.
TYPE_CODES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),  # unsigned byte
    0x09: np.dtype(">i1"),  # signed byte
    0x0B: np.dtype(">i2"),  # short
    0x0C: np.dtype(">i4"),  # int
    0x0D: np.dtype(">f4"),  # float
    0x0E: np.dtype(">f8"),  # double
}

# The reverse map, keyed by the native dtype so any byte order finds its code.
_CODE_FOR_KIND: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in TYPE_CODES.items()
}

_GZIP_MAGIC = b"\x1f\x8b"
# Reading in slices keeps memory bounded when a corrupt header claims an
# enormous array: we only ever hold what the file really contains.
_CHUNK = 1 << 22

# Errors the gzip/zlib modules raise for a damaged stream.
_GZIP_ERRORS = (gzip.BadGzipFile, zlib.error, EOFError)


# --------------------------------------------------------------------------- #
# small shared helpers (also used by the CSV, dataset and download modules)


@contextlib.contextmanager
def atomic_output(path: PathLike, what: str = "file") -> Iterator[IO[bytes]]:
    """:func:`digitnet.fileio.atomic_output`, raising :class:`DataError`."""
    with fileio.atomic_output(path, what, DataError) as handle:
        yield handle


def open_for_reading(path: PathLike, what: str = "file") -> IO[bytes]:
    """Open ``path`` in binary mode, turning OS errors into one-line DataErrors."""
    path = Path(path)
    try:
        return open(path, "rb")
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}; check the path") from None
    except IsADirectoryError:
        raise DataError(f"{path}: is a folder, not a {what}; give the path of the file") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open the {what} ({_os_reason(exc)})") from None


# --------------------------------------------------------------------------- #
# reading


def read_idx(path: PathLike) -> np.ndarray:
    """Read an IDX file (gzip-compressed or not) into a NumPy array.

    Args:
        path: the file.  Compression is detected from the gzip magic bytes,
            so ``x.gz`` holding plain IDX and plain-named gzip files both work.

    Returns:
        A writable array in native byte order whose shape is the one stored in
        the header (e.g. ``(60000, 28, 28)`` for MNIST images) and whose dtype
        follows the type code: uint8, int8, int16, int32, float32 or float64.

    Raises:
        DataError: the file is missing, not IDX (non-zero magic), has an
            unknown type code, is truncated or has trailing bytes, or is a
            corrupt gzip stream.
    """
    return _read_idx(Path(path), None)


def read_idx_and_sha256(path: PathLike) -> tuple[np.ndarray, str]:
    """Like :func:`read_idx`, also returning the SHA-256 (hex) of the *uncompressed* bytes.

    Hashing while reading costs one pass instead of decompressing twice; the
    digest identifies the content whatever gzip settings made the file.
    """
    hasher = hashlib.sha256()
    array = _read_idx(Path(path), hasher)
    return array, hasher.hexdigest()


def _read_idx(path: Path, hasher: "hashlib._Hash | None") -> np.ndarray:
    with open_for_reading(path, "IDX file") as raw:
        try:
            start = raw.read(2)
        except OSError as exc:
            raise DataError(f"{path}: read failed ({_os_reason(exc)}); check the disk") from None
        if start == _GZIP_MAGIC:
            raw.seek(0)
            return _read_idx_stream(gzip.GzipFile(fileobj=raw, mode="rb"), path, gz=True, hasher=hasher)
        if path.suffix == ".gz" and start != b"\x00\x00":
            raise DataError(
                f"{path}: not a gzip file although the name ends in .gz "
                f"(starts with 0x{start.hex() or 'nothing'}); fetch the file again"
            )
        raw.seek(0)
        return _read_idx_stream(raw, path, gz=False, hasher=hasher)


def _read_exactly(stream: IO[bytes], n: float, path: Path, gz: bool, hasher=None) -> bytearray:
    """Read up to ``n`` bytes, in slices; fewer only at end of stream.

    ``n`` may be ``inf`` to drain the stream (the bytes are then discarded).
    """
    drain = n == float("inf")
    buf = bytearray()
    while len(buf) < n:
        try:
            piece = stream.read(_CHUNK if drain else min(_CHUNK, n - len(buf)))
        except _GZIP_ERRORS + (OSError,) as exc:
            raise _gzip_error(path, exc) if gz else DataError(
                f"{path}: read failed ({exc}); check the disk or copy the file again"
            ) from None
        if not piece:
            break
        if hasher is not None:
            hasher.update(piece)
        if not drain:
            buf += piece
    return buf


class _GzipDataError(DataError):
    """A DataError whose cause is the compression layer (internal marker)."""


def _gzip_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, EOFError):
        # zlib cannot tell a cut-off file from damage that hid the end marker.
        problem = "corrupt gzip data (the compressed stream ends early: the file is cut short or damaged)"
    else:
        problem = f"corrupt gzip data ({exc})"
    return _GzipDataError(f"{path}: {problem}; the download was probably damaged, fetch the file again")


def _read_idx_stream(stream: IO[bytes], path: Path, *, gz: bool, hasher=None) -> np.ndarray:
    with stream:
        try:
            return _parse_idx(stream, path, gz, hasher)
        except _GzipDataError:
            raise
        except DataError:
            if gz:
                # Garbage from a damaged gzip stream looks like a bad header or
                # a wrong length; the real cause is the compression layer, so
                # read to the end (where gzip checks its CRC) and report that.
                _read_exactly(stream, float("inf"), path, gz)
            raise


def _parse_idx(stream: IO[bytes], path: Path, gz: bool, hasher) -> np.ndarray:
    header = _read_exactly(stream, 4, path, gz, hasher)
    if len(header) < 4:
        raise DataError(
            f"{path}: truncated IDX header ({len(header)} of 4 bytes); "
            "the file is empty or cut short, fetch it again"
        )
    if header[0] != 0 or header[1] != 0:
        raise DataError(
            f"{path}: not an IDX file (the first two bytes are 0x{header[0]:02x} 0x{header[1]:02x}, "
            "expected 0x00 0x00); check that this is the right file"
        )
    code, ndim = header[2], header[3]
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in TYPE_CODES)
        raise DataError(
            f"{path}: unknown IDX element type code 0x{code:02X} (known: {known}); "
            "the file is corrupt or not IDX"
        )
    dims_raw = _read_exactly(stream, 4 * ndim, path, gz, hasher)
    if len(dims_raw) < 4 * ndim:
        raise DataError(
            f"{path}: truncated IDX header (expected {ndim} dimension sizes); "
            "the file is cut short, fetch it again"
        )
    shape = struct.unpack(f">{ndim}I", bytes(dims_raw))
    dtype = TYPE_CODES[code]
    count = 1
    for size in shape:
        count *= size
    need = count * dtype.itemsize
    # One byte more than needed tells "exactly right" from "trailing data".
    body = _read_exactly(stream, need + 1, path, gz, hasher)
    if len(body) < need:
        raise DataError(
            f"{path}: truncated data: the header promises shape {tuple(shape)} "
            f"({need} bytes) but only {len(body)} bytes follow; fetch the file again"
        )
    if len(body) > need:
        raise DataError(
            f"{path}: trailing bytes after the {need} data bytes of shape {tuple(shape)}; "
            "the header does not match the data, fetch the file again"
        )
    if gz:
        # Reading on to the end makes gzip check its CRC and length trailer,
        # so a stream that is damaged after the last data byte is caught too.
        _read_exactly(stream, 1, path, gz)
    array = np.frombuffer(body, dtype=dtype, count=count)
    # Convert big-endian to native order; a no-op (no copy) for single bytes.
    return array.astype(dtype.newbyteorder("="), copy=False).reshape(shape)


# --------------------------------------------------------------------------- #
# writing


def write_idx(path: PathLike, array: np.ndarray, *, compresslevel: int = 6) -> None:
    """Write ``array`` as an IDX file, atomically; gzip it if ``path`` ends in ``.gz``.

    Args:
        path: destination.  Written to a temporary file in the same folder and
            renamed into place, so a failure never leaves a partial file.
        array: any shape (0 to 255 dimensions, each below 2**32) with dtype
            uint8, int8, int16, int32, float32 or float64 (any byte order).
        compresslevel: gzip level 1-9 for ``.gz`` paths.  6 is the usual
            speed/size compromise; 9 is several times slower for ~1% less.

    Raises:
        DataError: the dtype has no IDX type code, the shape cannot be
            stored, or the file cannot be written.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _CODE_FOR_KIND.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise DataError(
            f"{path}: IDX cannot store dtype {array.dtype} (it stores uint8, int8, int16, "
            "int32, float32, float64); convert first, e.g. array.astype(np.int32)"
        )
    if array.ndim > 255 or any(size >= 2**32 for size in array.shape):
        raise DataError(f"{path}: IDX cannot store shape {array.shape} (at most 255 dimensions below 2**32)")
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    # Viewed as raw bytes so the (possibly huge) array is streamed, not copied.
    payload = memoryview(np.ascontiguousarray(array, dtype=TYPE_CODES[code]).reshape(-1).view(np.uint8))
    with atomic_output(path, "IDX file") as handle:
        if path.suffix == ".gz":
            # mtime=0 and no stored name make the output reproducible byte for byte.
            with gzip.GzipFile(filename="", fileobj=handle, mode="wb", compresslevel=compresslevel, mtime=0) as gz:
                gz.write(header)
                gz.write(payload)
        else:
            handle.write(header)
            handle.write(payload)
