"""IDX reading and writing: every type code, several shapes, gz and plain, and each kind of damage."""

from __future__ import annotations

import gzip
import os
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from digitnet.data import read_idx, write_idx
from digitnet.data.idx import TYPE_CODES
from digitnet.errors import DataError

DTYPES = [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64]
SHAPES = [(), (0,), (7,), (3, 5), (2, 3, 4), (2, 1, 3, 2), (1, 2, 1, 2, 1)]


def sample(dtype, shape, seed=0):
    """Values that reach both ends of the dtype's range, so byte order matters."""
    rng = np.random.default_rng(seed)
    dtype = np.dtype(dtype)
    n = int(np.prod(shape))
    if dtype.kind == "f":
        values = rng.standard_normal(n) * 1e6
        extremes = [np.finfo(dtype).max, np.finfo(dtype).min, np.finfo(dtype).tiny, -0.0, np.inf, np.nan]
    else:
        info = np.iinfo(dtype)
        values = rng.integers(info.min, info.max, n, endpoint=True)
        extremes = [info.min, info.max, 0, 1]
    values = values.astype(dtype)
    values[: min(n, len(extremes))] = np.array(extremes[: min(n, len(extremes))], dtype=dtype)
    return values.reshape(shape)


def listing(folder):
    return sorted(p.name for p in folder.iterdir())


@pytest.mark.parametrize("suffix", ["", ".gz"])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
@pytest.mark.parametrize("dtype", DTYPES, ids=lambda d: np.dtype(d).name)
def test_round_trip(tmp_path, dtype, shape, suffix):
    array = sample(dtype, shape)
    path = tmp_path / f"a.idx{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype) and back.dtype.isnative
    assert back.shape == shape
    np.testing.assert_array_equal(back, array)  # NaN == NaN here
    assert back.flags.writeable
    assert listing(tmp_path) == [path.name]


def test_byte_layout_is_big_endian_idx(tmp_path):
    path = tmp_path / "x.idx"
    write_idx(path, np.array([[1, -2, 258]], dtype=np.int16))
    assert path.read_bytes() == (
        b"\x00\x00\x0b\x02" + struct.pack(">II", 1, 3) + struct.pack(">hhh", 1, -2, 258)
    )


def test_type_codes_match_the_format():
    assert {code: dt.str for code, dt in TYPE_CODES.items()} == {
        0x08: "|u1", 0x09: "|i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8",
    }


def test_other_byte_orders_are_written_correctly(tmp_path):
    little = np.array([1.5, -3.25], dtype="<f8")
    write_idx(tmp_path / "x.idx", little)
    assert read_idx(tmp_path / "x.idx").tolist() == [1.5, -3.25]
    write_idx(tmp_path / "y.idx", np.arange(6, dtype=np.int32).reshape(2, 3).T)  # not contiguous
    assert read_idx(tmp_path / "y.idx").tolist() == [[0, 3], [1, 4], [2, 5]]


def test_gzip_is_recognised_by_content_not_name(tmp_path):
    array = sample(np.int32, (4, 3))
    write_idx(tmp_path / "packed.gz", array)
    disguised = tmp_path / "packed.idx"
    disguised.write_bytes((tmp_path / "packed.gz").read_bytes())
    np.testing.assert_array_equal(read_idx(disguised), array)
    write_idx(tmp_path / "plain.idx", array)
    misnamed = tmp_path / "plain.gz"
    misnamed.write_bytes((tmp_path / "plain.idx").read_bytes())
    np.testing.assert_array_equal(read_idx(misnamed), array)


def test_gz_output_is_reproducible(tmp_path):
    array = sample(np.uint8, (10, 28, 28))
    write_idx(tmp_path / "a.gz", array)
    write_idx(tmp_path / "b.gz", array)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()
    assert (tmp_path / "a.gz").read_bytes()[:2] == b"\x1f\x8b"


@given(
    dtype=st.sampled_from(DTYPES),
    shape=st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple),
    gz=st.booleans(),
    seed=st.integers(0, 2**32 - 1),
)
@settings(max_examples=40, deadline=None)
def test_round_trip_property(tmp_path_factory, dtype, shape, gz, seed):
    folder = tmp_path_factory.mktemp("prop")
    array = sample(dtype, shape, seed)
    path = folder / ("x.idx.gz" if gz else "x.idx")
    write_idx(path, array)
    np.testing.assert_array_equal(read_idx(path), array)


# --------------------------------------------------------------------------- #
# damaged files: each problem has its own message naming the file


def idx_bytes(array):
    dtype_code = {np.dtype(v).newbyteorder("="): k for k, v in TYPE_CODES.items()}[array.dtype]
    header = bytes([0, 0, dtype_code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


GOOD = idx_bytes(np.arange(24, dtype=np.int16).reshape(2, 3, 4))


def read_error(path):
    with pytest.raises(DataError) as info:
        read_idx(path)
    message = str(info.value)
    assert str(path) in message and "\n" not in message
    return message


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize(
    "damage, expected",
    [
        (lambda b: b"\x01" + b[1:], "not an IDX file (the first two bytes are 0x01 0x00"),
        (lambda b: b[:1] + b"\x08" + b[2:], "not an IDX file"),
        (lambda b: b[:2] + b"\x0a" + b[3:], "unknown IDX element type code 0x0A"),
        (lambda b: b[:-1], "truncated data: the header promises shape (2, 3, 4) (48 bytes) but only 47"),
        (lambda b: b + b"\x00", "trailing bytes after the 48 data bytes"),
        (lambda b: b[:3], "truncated IDX header (3 of 4 bytes)"),
        (lambda b: b"", "truncated IDX header (0 of 4 bytes)"),
        (lambda b: b[:9], "truncated IDX header (expected 3 dimension sizes)"),
        (lambda b: b[:3] + b"\x03" + struct.pack(">III", 70000, 70000, 70000), "truncated data"),
    ],
    ids=["magic0", "magic1", "typecode", "short", "trailing", "header", "empty", "dims", "huge"],
)
def test_damaged_contents(tmp_path, damage, expected, gz):
    data = damage(GOOD)
    path = tmp_path / ("bad.idx.gz" if gz else "bad.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert expected in read_error(path)


LONG = idx_bytes((np.arange(20000, dtype=np.int32) % 97).reshape(100, 200))


@pytest.mark.parametrize("where", [0.1, 0.3, 0.5, 0.7, 0.9])
def test_corrupt_gzip_stream(tmp_path, where):
    packed = bytearray(gzip.compress(LONG))
    packed[int(len(packed) * where)] ^= 0xFF
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(packed))
    assert "corrupt gzip data" in read_error(path)


def test_corrupt_gzip_checksum(tmp_path):
    packed = bytearray(gzip.compress(GOOD))
    packed[-8] ^= 0x01  # CRC-32 in the trailer
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(packed))
    assert "corrupt gzip data" in read_error(path)


def test_cut_gzip_stream(tmp_path):
    packed = gzip.compress(LONG)
    path = tmp_path / "cut.gz"
    path.write_bytes(packed[: len(packed) - 20])
    assert "corrupt gzip data (the compressed stream ends early: the file is cut short" in read_error(path)


def test_trailing_count_is_exact_for_plain_files(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(GOOD + b"\x00")
    assert "(1 more byte)" in read_error(path)
    path.write_bytes(GOOD + bytes(5))
    assert "(5 more bytes)" in read_error(path)


def test_plain_header_claiming_huge_array_is_refused_before_reading(tmp_path):
    path = tmp_path / "huge.idx"
    path.write_bytes(bytes([0, 0, 0x0E, 2]) + struct.pack(">II", 2**32 - 1, 2**20) + bytes(10))  # 2**55 bytes
    assert "truncated data" in read_error(path) and "but only 10 bytes follow" in read_error(path)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
def test_empty_shape_too_large_for_numpy(tmp_path, gz):
    """0 items, yet NumPy refuses the shape: the other sizes multiply past 2**63."""
    data = bytes([0, 0, 0x08, 3]) + struct.pack(">III", 0, 2**32 - 1, 2**32 - 1)
    path = tmp_path / ("wide.gz" if gz else "wide.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert "declares shape (0, 4294967295, 4294967295), too large for any array" in read_error(path)
    data = bytes([0, 0, 0x08, 2]) + struct.pack(">II", 0, 2**32 - 1)  # this one NumPy accepts
    path.write_bytes(gzip.compress(data) if gz else data)
    assert read_idx(path).shape == (0, 2**32 - 1)


@pytest.mark.parametrize("gz", [False, True], ids=["plain", "gz"])
@pytest.mark.parametrize("ndim", [65, 255])
def test_more_dimensions_than_numpy_supports(tmp_path, ndim, gz):
    data = bytes([0, 0, 0x08, ndim]) + struct.pack(f">{ndim}I", *([1] * ndim)) + b"\x07"
    path = tmp_path / ("deep.gz" if gz else "deep.idx")
    path.write_bytes(gzip.compress(data) if gz else data)
    assert f"declares {ndim} dimensions, more than the" in read_error(path)


def test_gzip_members_and_header_fields_are_read(tmp_path):
    """What gzip itself accepts: several members, a stored name, a comment, zero padding."""
    half = len(GOOD) // 2
    path = tmp_path / "parts.gz"
    path.write_bytes(gzip.compress(GOOD[:half]) + gzip.compress(b"") + gzip.compress(GOOD[half:]) + bytes(100))
    np.testing.assert_array_equal(read_idx(path), np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    with open(tmp_path / "named.gz", "wb") as raw:
        with gzip.GzipFile(filename="original-name.idx", fileobj=raw, mode="wb") as gz:
            gz.write(GOOD)
    np.testing.assert_array_equal(read_idx(tmp_path / "named.gz"), np.arange(24, dtype=np.int16).reshape(2, 3, 4))
    packed = gzip.compress(GOOD)
    # FLG.FCOMMENT with a zero-terminated comment inserted after the 10-byte header
    commented = packed[:3] + bytes([packed[3] | 0x10]) + packed[4:10] + b"a comment\0" + packed[10:]
    (tmp_path / "commented.gz").write_bytes(commented)
    assert read_idx(tmp_path / "commented.gz").shape == (2, 3, 4)


def test_second_member_that_is_not_gzip(tmp_path):
    path = tmp_path / "bad.gz"
    path.write_bytes(gzip.compress(GOOD) + b"\x1f\x8b garbage")
    assert "corrupt gzip data" in read_error(path)
    path.write_bytes(gzip.compress(GOOD) + b"trailing junk")
    assert "corrupt gzip data (13 bytes of other data after the end of the compressed stream)" in read_error(path)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs named pipes")
def test_pipes_are_refused_without_blocking(tmp_path):
    fifo = tmp_path / "pipe.idx"
    os.mkfifo(fifo)
    assert "not a regular file" in read_error(fifo)


def test_gz_name_without_gzip_content(tmp_path):
    path = tmp_path / "fake.gz"
    path.write_bytes(b"PK\x03\x04 zip, not gzip")
    assert "not a gzip file although the name ends in .gz" in read_error(path)


def test_missing_file_and_folder(tmp_path):
    assert "no such IDX file" in read_error(tmp_path / "nothing-here.idx")
    assert "is a folder" in read_error(tmp_path)


# --------------------------------------------------------------------------- #
# writing: refusals and atomicity


@pytest.mark.parametrize("dtype", [np.int64, np.uint16, np.bool_, np.complex64, np.float16])
def test_unsupported_dtypes_are_refused(tmp_path, dtype):
    with pytest.raises(DataError, match=f"IDX cannot store dtype {np.dtype(dtype)}"):
        write_idx(tmp_path / "x.idx", np.zeros(3, dtype=dtype))
    assert listing(tmp_path) == []


def test_write_into_missing_folder(tmp_path):
    with pytest.raises(DataError, match="cannot write the IDX file"):
        write_idx(tmp_path / "no" / "such" / "x.idx", np.zeros(3, np.uint8))


@pytest.mark.parametrize("name", ["big.idx", "big.idx.gz"])
def test_failing_write_leaves_old_file_and_no_temp(tmp_path, name):
    """A real write failure (file size limit, like a full disk) in a child process."""
    target = tmp_path / name
    write_idx(target, np.arange(5, dtype=np.uint8))
    before = target.read_bytes()
    script = textwrap.dedent(
        f"""
        import resource, sys
        import numpy as np
        from digitnet.data import write_idx
        from digitnet.errors import DataError
        resource.setrlimit(resource.RLIMIT_FSIZE, (4096, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
        noise = np.random.default_rng(0).integers(0, 256, 1 << 20).astype(np.uint8)  # incompressible
        try:
            write_idx({str(target)!r}, noise)
        except DataError as exc:
            print(exc)
            sys.exit(3)
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert result.returncode == 3, result.stderr
    assert "cannot write the IDX file" in result.stdout and str(target) in result.stdout
    assert listing(tmp_path) == [name]
    assert target.read_bytes() == before


def test_written_file_gets_normal_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        write_idx(tmp_path / "x.idx", np.zeros(2, np.uint8))
    finally:
        os.umask(old)
    assert (tmp_path / "x.idx").stat().st_mode & 0o777 == 0o644
