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

Memory and time stay bounded whatever a file claims.  A plain file's header
is checked against the file's size before anything is allocated.  A gzip
file is decompressed here, in bounded slices (never through :mod:`gzip`'s
unbounded loops), and its header is checked against the most that deflate
can expand the file to (1032 times its size).  An array of more than
``_VERIFY_FIRST`` bytes is then decompressed twice: once to count the bytes
(holding none of them), and only if they are all there a second time into
an array of exactly the declared size.  Smaller arrays are read straight
into their array, which never holds more than what was decompressed.

Data after the declared array is refused, for plain and gzip files alike
("trailing bytes").  Only a small amount of it is ever read: at most
``_TRAILING_PEEK`` (64 KiB) decompressed bytes past the declared end, and,
after the end of the gzip stream, either another gzip member or at most
64 KiB of zero padding (which ``gzip`` itself tolerates); anything else
there is reported as gzip damage.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import os
import stat
import struct
import zlib
from pathlib import Path
from typing import IO, Iterator, Optional, Union

import numpy as np

from digitnet.errors import DataError
from digitnet.files import fileio
from digitnet.files.fileio import os_reason as _os_reason

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
# Decompressed bytes asked for per read, and compressed bytes fed to zlib per
# call: together they bound what one step holds, whatever the ratio.
_CHUNK = 1 << 22
_IN_CHUNK = 1 << 18
# Deflate's largest possible expansion (a 258-byte match in 2 bits).
_MAX_GZIP_RATIO = 1032
# How far past the declared end we look for trailing data (decompressed
# bytes), and the most zero padding accepted after a gzip stream.
_TRAILING_PEEK = 1 << 16
# Gzip payloads above this are counted before they are stored (see above).
# MNIST-sized files (47 MB of training images) stay below it and are
# decompressed once; a damaged file this size or smaller costs at most this.
_VERIFY_FIRST = 48 << 20
# After a header error in a gzip file we decompress on (discarding) this far
# to see whether the real cause is gzip damage, which is the better message.
_DRAIN_LIMIT = 64 << 20


def _max_ndim() -> int:
    """The most dimensions this NumPy supports (64 since NumPy 2, 32 before)."""
    for n in (64, 32):
        try:
            np.empty((1,) * n, dtype=np.uint8)
            return n
        except ValueError:
            continue
    return 32


_MAX_NDIM = _max_ndim()


# --------------------------------------------------------------------------- #
# small shared helpers (also used by the CSV, dataset and download modules)


@contextlib.contextmanager
def atomic_output(path: PathLike, what: str = "file") -> Iterator[IO[bytes]]:
    """:func:`digitnet.files.fileio.atomic_output`, raising :class:`DataError`."""
    with fileio.atomic_output(path, what, DataError) as handle:
        yield handle


def open_for_reading(path: PathLike, what: str = "file") -> IO[bytes]:
    """Open ``path`` in binary mode, turning OS errors into one-line DataErrors.

    Only regular files are opened: a pipe would block and a device such as
    ``/dev/zero`` never ends, so both are refused before they are opened.
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError(f"{path}: no such {what}; check the path") from None
    except OSError as exc:
        raise DataError(f"{path}: cannot open the {what} ({_os_reason(exc)})") from None
    if stat.S_ISDIR(mode):
        raise DataError(f"{path}: is a folder, not a {what}; give the path of the file")
    if not stat.S_ISREG(mode):
        raise DataError(f"{path}: not a regular file (a device, pipe or socket); give the path of a {what}")
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
            corrupt gzip stream.  A header that promises more than the file
            holds is refused without allocating the promised size.
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


class _GzipDataError(DataError):
    """A DataError whose cause is the compression layer (internal marker)."""


class _HeaderDataError(DataError):
    """A DataError about the IDX header (internal marker: gzip damage may be the cause)."""


def _gzip_error(path: Path, exc: BaseException) -> DataError:
    if isinstance(exc, EOFError):
        # zlib cannot tell a cut-off file from damage that hid the end marker.
        problem = "the compressed stream ends early: the file is cut short or damaged"
    else:
        problem = str(exc)
    return _gzip_damage(path, problem)


def _gzip_damage(path: Path, problem: str) -> DataError:
    return _GzipDataError(f"{path}: corrupt gzip data ({problem}); "
                          "the download was probably damaged, fetch the file again")


def _read_failed(path: Path, exc: OSError) -> DataError:
    return DataError(f"{path}: read failed ({_os_reason(exc)}); check the disk or copy the file again")


class _PlainSource:
    """``read(n)`` on an uncompressed file, with OS errors as DataErrors."""

    def __init__(self, raw: IO[bytes], path: Path) -> None:
        self.raw, self.path = raw, path

    def read(self, n: int) -> bytes:
        try:
            return self.raw.read(n)
        except OSError as exc:
            raise _read_failed(self.path, exc) from None


class _GzipSource:
    """``read(n)`` on a gzip file: at most ``n`` decompressed bytes per call.

    zlib checks each member's header, CRC-32 and length; further members are
    read on (as ``gzip`` does), and zero padding after the last one is
    accepted up to ``_TRAILING_PEEK`` bytes.  Every call does bounded work:
    at most ``_IN_CHUNK`` compressed bytes are read at a time and zlib never
    returns more than ``n`` bytes, whatever the compression ratio.
    """

    def __init__(self, raw: IO[bytes], path: Path) -> None:
        self.raw, self.path = raw, path
        try:
            raw.seek(0)
        except OSError as exc:
            raise _read_failed(path, exc) from None
        self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
        self.pending = b""
        self.done = False

    def _fetch(self, n: int) -> bytes:
        try:
            return self.raw.read(n)
        except OSError as exc:
            raise _read_failed(self.path, exc) from None

    def read(self, n: int) -> bytes:
        while not self.done:
            if self.inflater.eof:
                self._after_member(self.inflater.unused_data)
                continue
            if not self.pending:
                self.pending = self._fetch(_IN_CHUNK)
                if not self.pending:
                    raise _gzip_error(self.path, EOFError())
            try:
                out = self.inflater.decompress(self.pending, n)
            except zlib.error as exc:
                raise _gzip_error(self.path, exc) from None
            # At the end of a member ``unused_data`` holds what follows it.
            self.pending = b"" if self.inflater.eof else self.inflater.unconsumed_tail
            if out:
                return out
        return b""

    def _after_member(self, rest: bytes) -> None:
        """A member ended: start the next one, or accept the end of the file."""
        if len(rest) < len(_GZIP_MAGIC):
            rest += self._fetch(len(_GZIP_MAGIC) - len(rest))
        if not rest:
            self.done = True
            return
        if rest.startswith(_GZIP_MAGIC):
            self.inflater = zlib.decompressobj(16 + zlib.MAX_WBITS)
            self.pending = rest
            return
        # Not another member: only a little zero padding may follow.
        if len(rest) <= _TRAILING_PEEK:
            rest += self._fetch(_TRAILING_PEEK + 1 - len(rest))
        if len(rest) <= _TRAILING_PEEK and not rest.strip(b"\0"):
            self.done = True
            return
        amount = _count(len(rest), "byte") if len(rest) <= _TRAILING_PEEK else f"more than {_TRAILING_PEEK} bytes"
        raise _gzip_damage(self.path, f"{amount} of other data after the end of the compressed stream")


def _read_idx(path: Path, hasher: "Optional[hashlib._Hash]") -> np.ndarray:
    with open_for_reading(path, "IDX file") as raw:
        try:
            size = os.fstat(raw.fileno()).st_size
            start = raw.read(2)
            raw.seek(0)
        except OSError as exc:
            raise _read_failed(path, exc) from None
        if start == _GZIP_MAGIC:
            return _read_gzip_idx(raw, path, size, hasher)
        if path.suffix == ".gz" and start != b"\x00\x00":
            raise DataError(
                f"{path}: not a gzip file although the name ends in .gz "
                f"(starts with 0x{start.hex() or 'nothing'}); fetch the file again"
            )
        return _read_plain_idx(raw, path, size, hasher)


def _read_plain_idx(raw: IO[bytes], path: Path, size: int, hasher) -> np.ndarray:
    source = _PlainSource(raw, path)
    shape, dtype, count, need, header_len = _read_header(source, path, hasher)
    # The file's size tells at once whether the data are all there.
    available = size - header_len
    if available < need:
        raise _truncated(path, shape, need, f"only {available} bytes follow")
    if available > need:
        raise _trailing(path, shape, need, _count(available - need, "more byte"))
    array = _allocate(path, shape, dtype, count, need)
    got = _fill(source, array, need, hasher)
    if got < need:  # the file shrank while we read it
        raise _truncated(path, shape, need, f"only {got} bytes follow")
    if source.read(1):  # ... or grew
        raise _trailing(path, shape, need, "the file grew while being read")
    return _finish(array, dtype, shape)


def _read_gzip_idx(raw: IO[bytes], path: Path, size: int, hasher) -> np.ndarray:
    source = _GzipSource(raw, path)
    try:
        shape, dtype, count, need, header_len = _read_header(source, path, hasher)
    except _HeaderDataError:
        # Garbage from a damaged gzip stream looks like a bad header; the real
        # cause is the compression layer, so read on a bounded distance (to
        # where gzip checks its CRC, for any MNIST-sized file) and report that.
        _discard(source, _DRAIN_LIMIT)
        raise
    capacity = _MAX_GZIP_RATIO * size + _TRAILING_PEEK
    if header_len + need > capacity:
        raise _truncated(path, shape, need, f"a gzip file of {size} bytes holds at most {capacity} bytes")
    if need > _VERIFY_FIRST:
        # Count first, holding nothing, so a file that claims more than it
        # holds costs no memory; then decompress again into the array.
        got = _discard(source, need)
        if got < need:
            raise _truncated(path, shape, need, f"only {got} bytes follow")
        _check_gzip_end(source, path, shape, need)
        source = _GzipSource(raw, path)
        _read_upto(source, header_len, None)  # hashed in the first pass
    array = _allocate(path, shape, dtype, count, need)
    got = _fill(source, array, need, hasher)
    if got < need:
        raise _truncated(path, shape, need, f"only {got} bytes follow")
    _check_gzip_end(source, path, shape, need)
    return _finish(array, dtype, shape)


def _read_header(source, path: Path, hasher) -> tuple[tuple[int, ...], np.dtype, int, int, int]:
    """``(shape, big-endian dtype, element count, payload bytes, header bytes)``."""
    header = _read_upto(source, 4, hasher)
    if len(header) < 4:
        raise _HeaderDataError(
            f"{path}: truncated IDX header ({len(header)} of 4 bytes); "
            "the file is empty or cut short, fetch it again"
        )
    if header[0] != 0 or header[1] != 0:
        raise _HeaderDataError(
            f"{path}: not an IDX file (the first two bytes are 0x{header[0]:02x} 0x{header[1]:02x}, "
            "expected 0x00 0x00); check that this is the right file"
        )
    code, ndim = header[2], header[3]
    if code not in TYPE_CODES:
        known = ", ".join(f"0x{c:02X}" for c in TYPE_CODES)
        raise _HeaderDataError(
            f"{path}: unknown IDX element type code 0x{code:02X} (known: {known}); "
            "the file is corrupt or not IDX"
        )
    if ndim > _MAX_NDIM:
        raise _HeaderDataError(
            f"{path}: the IDX header declares {ndim} dimensions, more than the {_MAX_NDIM} "
            "NumPy supports; the file is corrupt or not IDX"
        )
    dims_raw = _read_upto(source, 4 * ndim, hasher)
    if len(dims_raw) < 4 * ndim:
        raise _HeaderDataError(
            f"{path}: truncated IDX header (expected {ndim} dimension sizes); "
            "the file is cut short, fetch it again"
        )
    shape = struct.unpack(f">{ndim}I", dims_raw)
    dtype = TYPE_CODES[code]
    count = 1
    extent = dtype.itemsize  # NumPy bounds the product of the non-zero sizes, even for an empty array
    for size in shape:
        count *= size
        extent *= size or 1
    if extent > np.iinfo(np.intp).max:
        raise _HeaderDataError(
            f"{path}: the IDX header declares shape {tuple(shape)}, too large for any array; "
            "the file is corrupt or not IDX"
        )
    return shape, dtype, count, count * dtype.itemsize, 4 + 4 * ndim


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" + ("" if n == 1 else "s")


def _truncated(path: Path, shape, need: int, found: str) -> DataError:
    return DataError(
        f"{path}: truncated data: the header promises shape {tuple(shape)} "
        f"({need} bytes) but {found}; fetch the file again"
    )


def _trailing(path: Path, shape, need: int, extra: str) -> DataError:
    return DataError(
        f"{path}: trailing bytes after the {need} data bytes of shape {tuple(shape)} ({extra}); "
        "the header does not match the data, fetch the file again"
    )


def _read_upto(source, n: int, hasher) -> bytes:
    """Up to ``n`` bytes (fewer only at the end of the data)."""
    parts, got = [], 0
    while got < n:
        piece = source.read(min(_CHUNK, n - got))
        if not piece:
            break
        parts.append(piece)
        got += len(piece)
    data = b"".join(parts)
    if hasher is not None:
        hasher.update(data)
    return data


def _discard(source, n: int) -> int:
    """Read and drop up to ``n`` bytes; return how many there were."""
    got = 0
    while got < n:
        piece = source.read(min(_CHUNK, n - got))
        if not piece:
            break
        got += len(piece)
    return got


def _allocate(path: Path, shape, dtype: np.dtype, count: int, need: int) -> np.ndarray:
    # Only called once the header has been checked against what the file can
    # hold; pages are touched (and count as memory) only as they are filled.
    try:
        return np.empty(count, dtype=dtype)
    except (MemoryError, ValueError):
        raise DataError(
            f"{path}: the data (shape {tuple(shape)}, {need} bytes) do not fit in this machine's "
            "memory; free some memory or use a smaller file"
        ) from None


def _fill(source, array: np.ndarray, need: int, hasher) -> int:
    """Read up to ``need`` bytes into ``array``'s memory; return how many came."""
    view = memoryview(array.reshape(-1).view(np.uint8))
    got = 0
    while got < need:
        piece = source.read(min(_CHUNK, need - got))
        if not piece:
            break
        view[got : got + len(piece)] = piece
        if hasher is not None:
            hasher.update(piece)
        got += len(piece)
    return got


def _check_gzip_end(source: _GzipSource, path: Path, shape, need: int) -> None:
    """Refuse data after the declared array, reading at most ``_TRAILING_PEEK`` bytes of it.

    Reaching the end makes zlib check the CRC-32 and length in the trailer, so
    damage after the last data byte is caught too.
    """
    extra = _discard(source, _TRAILING_PEEK + 1)
    if extra:
        amount = _count(extra, "more byte") if extra <= _TRAILING_PEEK else f"more than {_TRAILING_PEEK} more bytes"
        raise _trailing(path, shape, need, amount)


def _finish(array: np.ndarray, dtype: np.dtype, shape) -> np.ndarray:
    """Big-endian elements to native order, in place; then the header's shape."""
    if not dtype.isnative:
        array = array.byteswap(inplace=True).view(dtype.newbyteorder("="))
    return array.reshape(shape)


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
