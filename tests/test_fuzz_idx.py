"""Damaged IDX files: a seeded mutation fuzzer, and one regression test per audit finding.

The fuzzer starts from small real files (the first 50 MNIST test images and
labels, plain and gzipped), damages one of the four files of a data folder
at a time and feeds the folder to the loader and to the commands that read
data: ``evaluate``, ``train``, ``gradcheck`` (whose model names the folder
in its recipe) and ``plot data``.  The only acceptable outcomes are a
result, a :class:`~digitnet.errors.DigitnetError` from the library, or exit
status 0 or 2 from the command line with exactly one ``digitnet: error:``
line, and a failed ``train`` leaves no model file.  ``DIGITNET_FUZZ_MUTANTS``
sets how many mutants (default 2,000, about 10 s) and ``DIGITNET_FUZZ_SEED``
the seed.

Every mutant goes through :func:`read_idx` and :func:`load`; ``evaluate``
runs on every mutant the loader accepts and on 8% of the others, ``train``
on a quarter of the accepted ones, ``gradcheck`` and ``plot data`` on a few,
and ``report`` (seconds on good data) on 1% of the refused ones only.  About
one mutant in 25 replaces a matching images/labels pair with well-formed
files of another length (0 samples included).  Peak memory (ru_maxrss) is
measured around the whole run, and the gzip bombs among the mutants
(up to 56 MiB of zeros, past the count-first threshold) must stay within
``MEMORY_LIMIT``; the audit's bigger bombs run in a fresh interpreter below.

Folders given by path are never cached (only the known data sets are), so a
mutant is always read afresh; the test checks that the decode cache stays
untouched.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import random
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zlib
from pathlib import Path

import numpy as np
import pytest

from digitnet.app.cli import main
from digitnet.data import load, read_idx, write_idx
from digitnet.errors import DigitnetError

try:
    import resource
except ImportError:  # Windows: no peak-memory figure, the memory checks are skipped
    resource = None

N_MUTANTS = int(os.environ.get("DIGITNET_FUZZ_MUTANTS", "2000"))
SEED = int(os.environ.get("DIGITNET_FUZZ_SEED", "20240607"))
N_SAMPLES = 50
MB = 1 << 20
#: the most one damaged file may add to the peak memory of the process
MEMORY_LIMIT = 64 * MB

ROLES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
# ``digitnet train`` kept to a few milliseconds: one tiny layer, one epoch, no shifts.
TRAIN_ARGS = ["--layers", "784,4,10", "--epochs", "1", "--shift", "0", "--split", "standard",
              "--batch-size", "25", "--no-checkpoint"]


# --------------------------------------------------------------------------- #
# building files


def idx_header(code: int, shape) -> bytes:
    return bytes([0, 0, code, len(shape)]) + struct.pack(f">{len(shape)}I", *shape)


def gzip_header(flags: int = 0, extra: bytes = b"") -> bytes:
    """A gzip member header (RFC 1952) with ``extra`` as its FCOMMENT field when flag 0x10 is set."""
    return b"\x1f\x8b\x08" + bytes([flags]) + b"\0\0\0\0\x00\xff" + extra


_ZERO_MIB = bytes(MB)


def zero_bomb(prefix: bytes, zero_mib: int, *, comment: bytes = b"", crc_ok: bool = True) -> bytes:
    """A gzip file of ``prefix`` followed by ``zero_mib`` MiB of zero bytes, built in milliseconds.

    After a full flush deflate forgets everything, so one compressed MiB of
    zeros (about 1 KB) can be repeated; a 2 GB bomb is then a 2 MB file.
    ``comment`` pads the gzip header (FCOMMENT) without adding data, which
    makes the file big enough for the ratio check to let it through.
    ``crc_ok=False`` skips computing the CRC (for files refused before the end).
    """
    squeeze = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = squeeze.compress(prefix) + squeeze.flush(zlib.Z_FULL_FLUSH)
    zeros = squeeze.compress(_ZERO_MIB) + squeeze.flush(zlib.Z_FULL_FLUSH)
    body = head + zeros * zero_mib + squeeze.flush()
    crc = zlib.crc32(prefix)
    if crc_ok:
        for _ in range(zero_mib):
            crc = zlib.crc32(_ZERO_MIB, crc)
    size = (len(prefix) + zero_mib * MB) & 0xFFFFFFFF
    flags = 0x10 if comment else 0
    header = gzip_header(flags, comment.replace(b"\0", b"x") + b"\0" if comment else b"")
    return header + body + struct.pack("<II", crc, size)


@pytest.fixture(scope="module")
def base_files(mnist_dir) -> dict[str, bytes]:
    """The uncompressed IDX bytes of each role: 50 test images and labels (train = test)."""
    images = read_idx(mnist_dir / "t10k-images-idx3-ubyte.gz")[:N_SAMPLES]
    labels = read_idx(mnist_dir / "t10k-labels-idx1-ubyte.gz")[:N_SAMPLES]
    files = {}
    for role in ROLES:
        array = images if role.endswith("images") else labels
        files[role] = idx_header(0x08, array.shape) + array.tobytes()
    return files


def write_folder(folder: Path, files: dict[str, bytes], gz: bool = True) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for role, data in files.items():
        put(folder, role, gzip.compress(data, mtime=0) if gz else data, gz)


def put(folder: Path, role: str, data: bytes, gz: bool) -> Path:
    """Write one role's file, removing its other spelling (the loader prefers ``.gz``)."""
    name = ROLES[role]
    for stale in (folder / name, folder / (name + ".gz")):
        stale.unlink(missing_ok=True)
    path = folder / (name + ".gz" if gz else name)
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- #
# mutations


def _flip(rng: random.Random, data: bytes) -> bytes:
    if not data:
        return b"\x00"
    out = bytearray(data)
    for _ in range(rng.choice([1, 1, 1, 2, 3, 8])):
        where = rng.randrange(len(out)) if rng.random() < 0.7 else rng.randrange(min(len(out), 32))
        out[where] ^= rng.randrange(1, 256)
    return bytes(out)


def _truncate(rng: random.Random, data: bytes) -> bytes:
    if rng.random() < 0.5:
        return data[: rng.randrange(len(data))] if data else b""
    return data[: max(0, len(data) - rng.randrange(1, 40))]


def _append(rng: random.Random, data: bytes) -> bytes:
    kind = rng.choice(["zeros", "random", "copy"])
    n = rng.choice([1, 2, 7, 100, 5000, 70000])
    if kind == "zeros":
        return data + bytes(n)
    if kind == "random":
        return data + rng.randbytes(n)
    return data + data[: n]


def _edit_header(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data[:4].ljust(4, b"\0"))
    rest = data[4:]
    field = rng.choice(["magic", "type", "ndim", "dims", "dims", "dims"])
    if field == "magic":
        out[rng.randrange(2)] = rng.randrange(1, 256)
    elif field == "type":
        out[2] = rng.choice([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E, rng.randrange(256)])
    elif field == "ndim":
        out[3] = rng.choice([0, 1, 2, 4, 5, 33, 64, 65, 255, (out[3] + rng.choice([-1, 1])) % 256])
    else:
        ndim = out[3]
        if ndim == 0:
            out[3] = 1
            rest = struct.pack(">I", rng.randrange(2**32)) + rest
        else:
            which = rng.randrange(ndim)
            old = struct.unpack(">I", rest[4 * which : 4 * which + 4].ljust(4, b"\0"))[0]
            new = rng.choice([0, 1, 2, old - 1, old + 1, old * 2, old // 2, 2**31, 2**32 - 1,
                              rng.randrange(2**32)]) % 2**32
            rest = rest[: 4 * which] + struct.pack(">I", new) + rest[4 * which + 4 :]
    return bytes(out) + rest


def _reinterpret(rng: random.Random, data: bytes) -> bytes:
    """A well-formed IDX file of another type and shape over the same payload bytes."""
    ndim = data[3] if len(data) >= 4 else 0
    payload = data[4 + 4 * ndim :]
    code = rng.choice([0x08, 0x09, 0x0B, 0x0C, 0x0D, 0x0E])
    size = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}[code]
    count = len(payload) // size
    payload = payload[: count * size]
    first = N_SAMPLES if count % N_SAMPLES == 0 and rng.random() < 0.8 else max(1, count)
    rest = count // first if first else 0
    shape = [first] if rest <= 1 and rng.random() < 0.5 else [first, rest]
    if len(shape) == 2 and rest % 28 == 0 and rng.random() < 0.7:
        shape = [first, 28, rest // 28]
    if int(np.prod(shape)) * size != len(payload):
        shape = [count]
    return idx_header(code, shape) + payload


def _labels(rng: random.Random, data: bytes) -> bytes:
    """Change a few payload values to something a label or a pixel may not be."""
    out = bytearray(data)
    ndim = out[3] if len(out) >= 4 else 0
    start = 4 + 4 * ndim
    if len(out) <= start:
        return bytes(out)
    for _ in range(rng.choice([1, 3])):
        out[rng.randrange(start, len(out))] = rng.choice([10, 11, 127, 128, 255])
    return bytes(out)


_ITEM_SIZES = {0x08: 1, 0x09: 1, 0x0B: 2, 0x0C: 4, 0x0D: 4, 0x0E: 8}


def _resize(rng: random.Random, data: bytes, count: int | None = None) -> bytes:
    """A well-formed file with another number of items (0 included), the rows repeated or cut."""
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in _ITEM_SIZES or data[3] == 0:
        return data
    ndim = data[3]
    if len(data) < 4 + 4 * ndim:
        return data
    shape = list(struct.unpack(f">{ndim}I", data[4 : 4 + 4 * ndim]))
    row = _ITEM_SIZES[data[2]] * int(np.prod(shape[1:], dtype=np.int64))
    payload = data[4 + 4 * ndim :]
    if count is None:
        count = rng.choice([0, 0, 1, 2, 11, 49, 51, 120])
    body = (payload * (count // max(shape[0], 1) + 2))[: count * row]
    if len(body) < count * row:
        return data
    shape[0] = count
    return idx_header(data[2], shape) + body


def _big_trailing_zeros(rng: random.Random, data: bytes) -> bytes:
    """gzip only: many MiB of zeros after the data, or a header claiming them."""
    mib = rng.choice([1, 2, 8, 56])  # 56 MiB is past the count-first threshold
    if rng.random() < 0.5 or len(data) < 8:
        return zero_bomb(data, mib)
    # claim more than is there: a 1-D "labels" header for the whole stream plus one more byte
    total = len(data) - 8 + mib * MB + 1
    return zero_bomb(idx_header(0x08, [total]) + data[8:], mib, comment=bytes(rng.choice([0, 70000])))


def _gzip_header_edit(rng: random.Random, packed: bytes) -> bytes:
    out = bytearray(packed)
    where = rng.choice([0, 1, 2, 3, 3, 3, 8, 9, rng.randrange(10)])
    if where == 3:
        out[3] = rng.choice([0x01, 0x02, 0x04, 0x08, 0x10, 0xE0, rng.randrange(256)])
    else:
        out[where] ^= rng.randrange(1, 256)
    return bytes(out)


def _gzip_trailer_edit(rng: random.Random, packed: bytes) -> bytes:
    out = bytearray(packed)
    kind = rng.choice(["crc", "isize", "isize-huge", "cut"])
    if kind == "crc":
        out[-8 + rng.randrange(4)] ^= rng.randrange(1, 256)
    elif kind == "isize":
        out[-4 + rng.randrange(4)] ^= rng.randrange(1, 256)
    elif kind == "isize-huge":
        out[-4:] = b"\xff\xff\xff\xff"
    else:
        return bytes(out[: -rng.randrange(1, 9)])
    return bytes(out)


def _gzip_append(rng: random.Random, packed: bytes, data: bytes) -> bytes:
    kind = rng.choice(["member", "empty-member", "zeros", "many-zeros", "garbage", "self"])
    if kind == "member":
        return packed + gzip.compress(data[: rng.randrange(1, 200)], mtime=0)
    if kind == "empty-member":
        return packed + gzip.compress(b"", mtime=0)
    if kind == "zeros":
        return packed + bytes(rng.choice([1, 8, 512, 4096]))
    if kind == "many-zeros":
        return packed + bytes(rng.choice([65537, 300000]))
    if kind == "garbage":
        return packed + rng.randbytes(rng.choice([1, 2, 10, 1000]))
    return packed + packed


#: raw-IDX mutations (applied before compressing) and their weights
IDX_MUTATIONS = [(_flip, 3), (_truncate, 2), (_append, 2), (_edit_header, 5), (_reinterpret, 2),
                 (_labels, 2), (_resize, 1)]
#: mutations of the compressed file and their weights (bombs are the slow ones: ~50 ms)
GZ_MUTATIONS = [("flip", 6), ("truncate", 4), ("header", 4), ("trailer", 4), ("append", 5), ("bomb", 1)]


def mutant(rng: random.Random, files: dict[str, bytes]) -> tuple[list[tuple[str, bool, bytes]], str]:
    """``([(role, gzipped?, file bytes), ...], description)``: one damaged file, now and then
    a matching images/labels pair with another number of samples (0 included)."""
    if rng.random() < 0.04:
        part = rng.choice(["train", "test"])
        count = rng.choice([0, 1, 2, 11, 120])
        pair = []
        for role in (f"{part}_images", f"{part}_labels"):
            data = _resize(rng, files[role], count)
            gz = rng.random() < 0.5
            pair.append((role, gz, gzip.compress(data, mtime=0) if gz else data))
        return pair, f"pair-resize-{part}-{count}"
    role, gz, data, what = _one_mutant(rng, files)
    return [(role, gz, data)], what


def _one_mutant(rng: random.Random, files: dict[str, bytes]) -> tuple[str, bool, bytes, str]:
    role = rng.choice(list(ROLES))
    data = files[role]
    gz = rng.random() < 0.6
    steps = []
    if not gz or rng.random() < 0.5:
        for _ in range(1 if rng.random() < 0.8 else 2):
            op = rng.choices([m for m, _ in IDX_MUTATIONS], [w for _, w in IDX_MUTATIONS])[0]
            data = op(rng, data)
            steps.append(op.__name__.strip("_"))
        if not gz:
            return role, gz, data, "+".join(steps)
        packed = gzip.compress(data, compresslevel=rng.choice([1, 6, 9]), mtime=0)
        if rng.random() < 0.7:
            return role, gz, packed, "+".join(steps) + "+gz"
    else:
        packed = gzip.compress(data, compresslevel=rng.choice([1, 6, 9]), mtime=0)
    kind = rng.choices([m for m, _ in GZ_MUTATIONS], [w for _, w in GZ_MUTATIONS])[0]
    steps.append("gz-" + kind)
    if kind == "flip":
        packed = _flip(rng, packed)
    elif kind == "truncate":
        packed = _truncate(rng, packed)
    elif kind == "header":
        packed = _gzip_header_edit(rng, packed)
    elif kind == "trailer":
        packed = _gzip_trailer_edit(rng, packed)
    elif kind == "append":
        packed = _gzip_append(rng, packed, data)
    else:
        packed = _big_trailing_zeros(rng, data)
    return role, gz, packed, "+".join(steps)


# --------------------------------------------------------------------------- #
# running the library and the commands


def peak_bytes() -> int | None:
    """This process's peak resident memory so far (ru_maxrss: KiB on Linux, bytes on macOS)."""
    if resource is None:
        return None
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


class Hang(Exception):
    pass


def _on_alarm(signum, frame):
    raise Hang()


def run_cli(argv: list[str]) -> tuple[object, str, str]:
    """``(exit status or the escaped exception, stdout, stderr)`` of ``digitnet ARGV``, in-process."""
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            status = main(argv)
        except SystemExit as exc:  # argparse; must not happen here
            status = f"SystemExit({exc.code})"
        except Hang:
            raise
        except BaseException as exc:  # noqa: BLE001 - the point is to catch anything foreign
            status = exc
    return status, out.getvalue(), err.getvalue()


def cli_problem(status, stderr: str) -> str | None:
    """What is wrong with a command's outcome, or None."""
    if isinstance(status, BaseException):
        return f"{type(status).__name__}: {status}"
    if status not in (0, 2):
        return f"exit status {status!r}"
    if "Traceback" in stderr:
        return "traceback on stderr"
    if status == 2:
        lines = stderr.splitlines()
        if len(lines) != 1 or not lines[0].startswith("digitnet: error: "):
            return f"stderr is not one 'digitnet: error:' line: {stderr!r}"
    return None


def cache_listing(folder: Path) -> list[str]:
    decoded = folder / "decoded"
    return sorted(str(p.relative_to(folder)) for p in decoded.rglob("*")) if decoded.exists() else []


def test_fuzz_idx_mutants(tmp_path, base_files, monkeypatch):
    """Every mutant ends in a result or one of the project's own errors; memory stays bounded."""
    cache = tmp_path / "cache"
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(cache))
    monkeypatch.chdir(tmp_path)
    have_matplotlib = True
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        have_matplotlib = False

    folder = tmp_path / "data"  # the same path for every mutant: the model's recipe names it
    write_folder(folder, base_files)
    packed = {role: gzip.compress(data, mtime=0) for role, data in base_files.items()}
    model = tmp_path / "model.npz"
    status, _, err = run_cli(["train", *TRAIN_ARGS, "--out", str(model), "--data", str(folder)])
    assert status == 0, err
    # Warm up every path once, so the memory measured below is the mutants' alone.
    assert load(folder).X_train.shape == (N_SAMPLES, 784)
    assert run_cli(["evaluate", str(model), "--data", str(folder)])[0] == 0
    assert run_cli(["gradcheck", str(model), "--samples", "2", "--checks", "2"])[0] == 0
    if have_matplotlib:
        assert run_cli(["plot", "data", "--data", str(folder), "--out", "data.png"])[0] == 0
    cache_before = cache_listing(cache)
    peak_before = peak_bytes()

    rng = random.Random(SEED)
    counts = {"mutants": 0, "accepted": 0, "project_errors": 0, "cli_runs": 0}
    foreign: list[str] = []
    hangs: list[str] = []
    slowest = (0.0, "")
    alarm = hasattr(signal, "setitimer")  # no per-mutant time limit on Windows
    previous_handler = signal.signal(signal.SIGALRM, _on_alarm) if alarm else None
    started = time.perf_counter()
    try:
        for number in range(N_MUTANTS):
            changed, what = mutant(rng, base_files)
            label = f"#{number} {'+'.join(role for role, _, _ in changed)} {what}"
            paths = [put(folder, role, data, gz) for role, gz, data in changed]
            tick = time.perf_counter()
            if alarm:
                signal.setitimer(signal.ITIMER_REAL, 10.0)
            try:
                accepted = True
                reads = [lambda path=path: read_idx(path) for path in paths] + [lambda: load(folder)]
                for read in reads:
                    try:
                        read()
                    except DigitnetError as exc:
                        accepted = False
                        message = str(exc)
                        if "\n" in message or not message.strip():
                            foreign.append(f"{label}: DataError not one line: {message!r}")
                    except Hang:
                        raise
                    except BaseException as exc:  # noqa: BLE001
                        foreign.append(f"{label}: {type(exc).__name__}: {exc}")
                        accepted = False
                counts["accepted" if accepted else "project_errors"] += 1

                commands = []
                draw = rng.random()
                if accepted or draw < 0.08:
                    commands.append(["evaluate", str(model), "--data", str(folder)])
                if draw < (0.25 if accepted else 0.03):
                    out = tmp_path / "trained.npz"
                    out.unlink(missing_ok=True)
                    commands.append(["train", *TRAIN_ARGS, "--out", str(out), "--data", str(folder)])
                if draw < (0.05 if accepted else 0.005):
                    commands.append(["gradcheck", str(model), "--samples", "2", "--checks", "2"])
                if have_matplotlib and draw < 0.005:
                    commands.append(["plot", "data", "--data", str(folder), "--out", "data.png"])
                if have_matplotlib and not accepted and 0.005 <= draw < 0.015:  # a full report takes seconds
                    commands.append(["report", str(model), "--data", str(folder), "--out", "report"])
                for argv in commands:
                    status, _, err = run_cli(argv)
                    counts["cli_runs"] += 1
                    problem = cli_problem(status, err)
                    if problem:
                        foreign.append(f"{label}: digitnet {argv[0]}: {problem}")
                    if argv[0] == "train" and status != 0 and (tmp_path / "trained.npz").exists():
                        foreign.append(f"{label}: digitnet train failed but wrote its model file")
            except Hang:
                hangs.append(label)
            finally:
                if alarm:
                    signal.setitimer(signal.ITIMER_REAL, 0)
            counts["mutants"] += 1
            took = time.perf_counter() - tick
            if took > slowest[0]:
                slowest = (took, label)
            for role, _, _ in changed:
                put(folder, role, packed[role], True)
    finally:
        if alarm:
            signal.signal(signal.SIGALRM, previous_handler)

    peak_after = peak_bytes()
    memory = ("peak memory not measured" if peak_after is None else
              f"peak memory +{(peak_after - peak_before) / MB:.1f} MiB (process peak {peak_after / MB:.0f} MiB)")
    seconds = time.perf_counter() - started
    print(f"\nfuzz: {counts['mutants']} mutants (seed {SEED}) in {seconds:.1f}s: "
          f"{counts['accepted']} accepted, {counts['project_errors']} project errors, "
          f"{len(foreign)} foreign, {len(hangs)} hangs, {counts['cli_runs']} command runs; "
          f"{memory}; slowest {slowest[0]:.2f}s ({slowest[1]})")
    assert not foreign, f"{len(foreign)} foreign outcomes, first ones:\n" + "\n".join(foreign[:20])
    assert not hangs, f"{len(hangs)} mutants ran over 10 s: {hangs[:10]}"
    assert peak_after is None or peak_after - peak_before < MEMORY_LIMIT
    assert cache_listing(cache) == cache_before, "loading folders must not write decode-cache entries"
    assert counts["accepted"] > 0 and counts["project_errors"] > 0


# --------------------------------------------------------------------------- #
# the audit's findings, one test each


def test_zero_item_idx_through_evaluate_and_train(tmp_path, base_files, monkeypatch, capsys):
    """Audit 1: a valid header declaring 0 items was a reshape traceback; now one line."""
    monkeypatch.chdir(tmp_path)
    try:
        import matplotlib  # noqa: F401
        have_matplotlib = True
    except ImportError:
        have_matplotlib = False
    good = tmp_path / "good"
    write_folder(good, base_files)
    model = tmp_path / "model.npz"
    assert main(["train", *TRAIN_ARGS, "--out", str(model), "--data", str(good)]) == 0
    for role, gz in (("test_images", True), ("train_images", False), ("test_labels", True)):
        folder = tmp_path / f"empty-{role}"
        write_folder(folder, base_files)
        shape = (0, 28, 28) if role.endswith("images") else (0,)
        put(folder, role, gzip.compress(idx_header(0x08, shape)) if gz else idx_header(0x08, shape), gz)
        commands = [["evaluate", str(model), "--data", str(folder)],
                    ["train", *TRAIN_ARGS, "--out", str(tmp_path / "new.npz"), "--data", str(folder)]]
        if have_matplotlib:
            commands += [["plot", "data", "--data", str(folder), "--out", str(tmp_path / "new.png")],
                         ["report", str(model), "--data", str(folder), "--out", str(tmp_path / "new-report")]]
        for argv in commands:
            capsys.readouterr()
            assert main(argv) == 2
            err = capsys.readouterr().err
            assert err.count("\n") == 1 and err.startswith("digitnet: error: "), err
            empty = "images" if role.endswith("images") else "labels"
            if empty == "images":
                assert ROLES[role] in err and "has no samples" in err, err
            else:  # 0 labels for 50 images: the counts disagree
                assert "0 labels but" in err, err
        assert not any((tmp_path / name).exists() for name in ("new.npz", "new.png", "new-report"))


def _measure(tmp_path: Path, path: Path) -> dict:
    """Read ``path`` with read_idx in a fresh interpreter: seconds, peak memory growth, outcome."""
    script = textwrap.dedent(f"""
        import json, sys, time
        from digitnet.data import read_idx
        from digitnet.errors import DataError
        try:
            import resource
            unit = 1 if sys.platform == "darwin" else 1024
            peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * unit
        except ImportError:
            peak = lambda: 0
        before = peak()
        start = time.perf_counter()
        try:
            read_idx({str(path)!r})
            outcome = "read"
        except DataError as exc:
            outcome = str(exc)
        seconds = time.perf_counter() - start
        grown = peak() - before
        print(json.dumps({{"seconds": seconds, "grown": grown, "outcome": outcome}}))
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_gzip_header_claiming_4_gb_is_refused_at_once(tmp_path):
    """Audit 2: a 2 MB gzip of 2 GB zeros whose header claims 2**32-1 bytes (2 GB, 10.9 s before)."""
    path = tmp_path / "bomb.gz"
    path.write_bytes(zero_bomb(idx_header(0x08, [2**32 - 1]), 2048, crc_ok=False))
    assert path.stat().st_size < 3 * MB
    result = _measure(tmp_path, path)
    assert "truncated data" in result["outcome"], result
    assert result["seconds"] < 1.0, result
    assert result["grown"] < MEMORY_LIMIT, result


def test_gzip_holding_less_than_declared_costs_no_memory(tmp_path):
    """A header the ratio check cannot rule out: 100 MiB of zeros where 150 MiB are declared.

    The file is padded (a gzip comment) so that it could hold 150 MiB; the
    bytes are counted before any are stored, so the refusal costs no memory
    (the old reader held all 100 MiB).
    """
    path = tmp_path / "short.gz"
    path.write_bytes(zero_bomb(idx_header(0x08, [150 * MB]), 100, comment=bytes(60000)))
    result = _measure(tmp_path, path)
    assert "truncated data" in result["outcome"] and f"only {100 * MB} bytes follow" in result["outcome"], result
    assert result["grown"] < MEMORY_LIMIT, result


def test_long_trailing_zeros_inside_gzip_stop_early(tmp_path, base_files):
    """Audit 2: 2 GB of zeros after the declared data were drained for 5 s; now 64 KiB are read."""
    path = tmp_path / "labels.gz"
    path.write_bytes(zero_bomb(base_files["test_labels"], 2048, crc_ok=False))
    result = _measure(tmp_path, path)
    assert "trailing bytes after the 50 data bytes" in result["outcome"], result
    assert "more than 65536 more bytes" in result["outcome"], result
    assert result["seconds"] < 1.0, result
    assert result["grown"] < MEMORY_LIMIT, result


def test_zero_padding_after_gzip_stream(tmp_path, base_files):
    """A little zero padding after the gzip data is tolerated (as gzip does); a lot is refused unread."""
    packed = gzip.compress(base_files["test_labels"], mtime=0)
    path = tmp_path / "labels.gz"
    path.write_bytes(packed + bytes(4096))
    assert read_idx(path).shape == (N_SAMPLES,)
    path.write_bytes(packed + bytes(64 * MB))
    start = time.perf_counter()
    with pytest.raises(DigitnetError, match="more than 65536 bytes of other data after the end"):
        read_idx(path)
    assert time.perf_counter() - start < 1.0
    path.write_bytes(packed + b"\0\0junk")
    with pytest.raises(DigitnetError, match="corrupt gzip data"):
        read_idx(path)


def test_large_valid_gzip_is_read_exactly(tmp_path, monkeypatch):
    """Above the count-first threshold a genuine file still reads, and the hash covers it once."""
    import hashlib

    from digitnet.data import idx

    monkeypatch.setattr(idx, "_VERIFY_FIRST", 1000)
    array = (np.arange(30 * 28 * 28) % 251).astype(np.uint8).reshape(30, 28, 28)
    path = tmp_path / "big.gz"
    write_idx(path, array)
    back, digest = idx.read_idx_and_sha256(path)
    np.testing.assert_array_equal(back, array)
    assert digest == hashlib.sha256(idx_header(0x08, array.shape) + array.tobytes()).hexdigest()
    # and one byte short is refused by the counting pass, before anything is stored
    path.write_bytes(gzip.compress(idx_header(0x08, array.shape) + array.tobytes()[:-1]))
    with pytest.raises(DigitnetError, match=f"only {array.size - 1} bytes follow"):
        idx.read_idx(path)
