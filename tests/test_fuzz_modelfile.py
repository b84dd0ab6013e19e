"""Fuzzing the model-file reader, and regression tests for what an audit found.

A seeded mutation fuzzer starts from real model files (a model trained with
SGD, checkpoints with Adam's and momentum's state) and damages them at every
level: raw bytes, the zip structure, each entry's ``.npy`` header, the JSON
text, and every JSON header field (set to values of other types, deleted,
nudged).  Each mutant goes through the loader and, in-process, through the
commands that read a model.  The only acceptable outcomes are the project's
own: the loader returns or raises a ``DigitnetError`` (a ``ModelFileError``
for the file itself); a command exits 0, or 2 with exactly one line
``digitnet: error: …`` on stderr and no traceback.

``DIGITNET_FUZZ_MUTANTS`` sets the number of mutants (default 2,000, about
15 s); ``DIGITNET_FUZZ_SEED`` the seed; ``DIGITNET_FUZZ_REPORT`` a file for a
JSON summary (mutants, outcomes, peak memory, slowest mutant).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import math
import os
import random
import signal
import struct
import sys
import time
import traceback
import tracemalloc
import warnings
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from digitnet import Network
from digitnet.app.cli import main as cli_main
from digitnet.errors import DigitnetError, ModelFileError
from digitnet.files.modelfile import (
    load_checkpoint,
    load_model,
    read_model_file,
    save_model,
)
from digitnet.nn.optimizers import SGD, Adam, Momentum
from digitnet.train.recipes import get_preset, preprocessing_for

try:
    import resource
except ImportError:      # Windows: no peak-RSS figure, tracemalloc still measures the bombs
    resource = None
#: hangs are caught with an interval timer where there is one (not on Windows)
HAS_TIMER = hasattr(signal, "setitimer")

N_MUTANTS = int(os.environ.get("DIGITNET_FUZZ_MUTANTS", "2000"))
SEED = int(os.environ.get("DIGITNET_FUZZ_SEED", "1234"))
#: memory a damaged file may cost beyond what it validly declares
EXTRA_BYTES = 64 * 2**20
#: seconds after which one mutant counts as a hang
HANG_SECONDS = 30
#: this many loadable mutants also go through `plot confusion` and `plot curves` (0.5 s each)
PLOTTED = 1 + N_MUTANTS // 1000

SIZES = [784, 8, 10]
N_PARAMS = 784 * 8 + 8 + 8 * 10 + 10


# =============================================================================================
# Real model files, and a zip writer that can write anything
# =============================================================================================

def _recipe(optimizer: str, lr: float) -> dict:
    preset = get_preset("nielsen").with_overrides({"sizes": SIZES, "optimizer": optimizer, "lr": lr})
    return {**preset.to_dict(), "overrides": {"sizes": SIZES, "optimizer": optimizer, "lr": lr},
            "seed": 0, "data": "mnist", "subset": 60}


def _train(optimizer, name: str, lr: float):
    rng = np.random.default_rng(0)
    X, y = rng.random((60, 784), dtype=np.float32), rng.integers(0, 10, 60)
    preset = get_preset("nielsen").with_overrides({"sizes": SIZES})
    net = preset.build_network(0)
    history = net.fit(X[:40], y[:40], epochs=2, batch_size=10, optimizer=optimizer, lr=lr,
                      validation_data=(X[40:], y[40:]), seed=0)
    return net, history, _recipe(name, lr)


@pytest.fixture(scope="module", autouse=True)
def parser_built_once():
    """``digitnet.app.cli.main`` builds its argparse parser on every call (6 ms); build it once here."""
    import functools

    import digitnet.app.cli

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(digitnet.app.cli, "build_parser", functools.lru_cache(maxsize=1)(digitnet.app.cli.build_parser))
        yield


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """Real files to damage, a tiny IDX data set, a digit image, folders for outputs."""
    folder = tmp_path_factory.mktemp("fuzz")
    preprocessing = preprocessing_for(get_preset("nielsen"), "mnist")
    bases = {}
    net, history, recipe = _train(SGD(3.0), "sgd", 3.0)
    bases["model"] = save_model(folder / "model.npz", net, recipe=recipe, preprocessing=preprocessing,
                                history=history, extra={"evaluation": {
                                    "test_accuracy": 0.25, "val_accuracy": None,
                                    "train_seconds": 0.01, "total_seconds": 0.02}})
    for name, opt, lr in (("adam", Adam(0.01), 0.01), ("momentum", Momentum(0.5), 0.5)):
        net, history, recipe = _train(opt, name, lr)
        bases[name] = save_model(folder / f"{name}.ckpt.npz", net, recipe=recipe,
                                 preprocessing=preprocessing, history=history, optimizer=opt,
                                 extra={"checkpoint": {"epoch": 2, "epochs": 2, "seed": 0}})
    data = folder / "tiny-idx"
    data.mkdir()
    from digitnet.data import write_idx

    rng = np.random.default_rng(1)
    for part, n in (("train", 30), ("t10k", 20)):
        write_idx(data / f"{part}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28), dtype=np.uint8))
        write_idx(data / f"{part}-labels-idx1-ubyte", (np.arange(n) % 10).astype(np.uint8))
    from PIL import Image, ImageDraw

    image = Image.new("L", (56, 56), 255)
    ImageDraw.Draw(image).line([(16, 10), (40, 10), (24, 48)], fill=0, width=6)   # a 7
    png = folder / "seven.png"
    image.save(png)
    out = folder / "out"
    out.mkdir()
    return {"folder": folder, "bases": {k: Path(v) for k, v in bases.items()}, "data": data,
            "png": png, "out": out}


def npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=False)
    return buffer.getvalue()


def npy_raw(header_text: str, data: bytes, version=(1, 0)) -> bytes:
    """A .npy file with any header text (padded like NumPy's) and any data."""
    text = header_text.encode("latin1")
    length_size = 2 if version[0] == 1 else 4
    pad = -(8 + length_size + len(text) + 1) % 64
    text = text + b" " * pad + b"\n"
    length = struct.pack("<H" if length_size == 2 else "<I", len(text) % (1 << (8 * length_size)))
    return b"\x93NUMPY" + bytes(version) + length + text + data


def member(name: str, data: bytes, method: int = 0, **override) -> dict:
    """One zip entry; ``override`` can lie about ``crc``, ``size`` or ``csize``."""
    if method == 8:
        c = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = c.compress(data) + c.flush()
    else:
        payload = data
    entry = {"name": name, "method": method, "crc": zlib.crc32(data), "payload": payload,
             "size": len(data), "csize": len(payload)}
    entry.update(override)
    return entry


def raw_zip(members: list[dict]) -> bytes:
    """A zip archive written byte by byte: duplicates, false sizes and odd methods included."""
    out, central = bytearray(), bytearray()
    for m in members:
        name = m["name"].encode("utf-8")
        offset = len(out)
        fields = (m["method"], 0, 0x21, m["crc"] & 0xFFFFFFFF, m["csize"], m["size"], len(name))
        out += struct.pack("<4s2H", b"PK\x03\x04", 20, 0x800) + struct.pack("<3H3LH", *fields)
        out += struct.pack("<H", 0) + name + m["payload"]
        central += struct.pack("<4s3H", b"PK\x01\x02", 20, 20, 0x800) + struct.pack("<3H3LH", *fields)
        central += struct.pack("<4H2L", 0, 0, 0, 0, 0, offset) + name
    eocd = struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members), len(central),
                       len(out), 0)
    return bytes(out + central + eocd)


def split_npy(data: bytes) -> tuple[str, bytes, tuple]:
    """``(header text, data bytes, version)`` of a .npy file."""
    version = tuple(data[6:8])
    n = 2 if version[0] == 1 else 4
    length = int.from_bytes(data[8:8 + n], "little")
    return data[8 + n:8 + n + length].decode("latin1"), data[8 + n + length:], version


class Base:
    """A real model file taken apart: its bytes, entries, JSON header and interesting offsets."""

    def __init__(self, path: Path):
        import zipfile

        self.path = path
        self.raw = path.read_bytes()
        with zipfile.ZipFile(path) as zf:
            self.entries = {info.filename: zf.read(info) for info in zf.infolist()}
            self.regions = [(info.header_offset, info.header_offset + 200) for info in zf.infolist()]
            self.regions.append((zf.start_dir, len(self.raw)))
        self.header = json.loads(np.frombuffer(split_npy(self.entries["header.npy"])[1], np.uint8)
                                 .tobytes())
        self.paths = list(_paths(self.header))

    def rebuild(self, header_text: bytes | None = None, **replace) -> list[dict]:
        entries = dict(self.entries)
        if header_text is not None:
            entries["header.npy"] = npy(np.frombuffer(header_text, np.uint8))
        entries.update(replace)
        return [member(name, data) for name, data in entries.items()]


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, prefix + (key,))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, prefix + (i,))


def _get(obj, path):
    for key in path:
        obj = obj[key]
    return obj


HUGE = "\x00HUGE-INT\x00"        # stands for a 5,000-digit integer json.dumps cannot write


def header_bytes(header) -> bytes:
    text = json.dumps(header, allow_nan=True)
    return text.replace(json.dumps(HUGE), "1" * 5000).encode("utf-8")


ALIENS = [None, True, False, 0, 1, -1, 7, 2**31, 2**63, 10**40, HUGE, 0.5, -0.0, 1e308, math.nan,
          math.inf, -math.inf, "", "x", "unit", "relu", "adam", "\ud800", "line\nbreak", "\x1b[31m",
          "é" * 3, "9" * 300, [], [1, 2], ["a", "b"], [None], [[1]], [784, 8, 10], {}, {"a": 1},
          {"records": 5}, {"epoch": "1"}, {"name": "adam"}, json.loads("[" * 40 + "1" + "]" * 40)]


# =============================================================================================
# Mutations: each returns (kind, bytes of a mutant file)
# =============================================================================================

def _flip(rng, base):
    data = bytearray(base.raw)
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.6:
            start, end = rng.choice(base.regions)
            pos = rng.randrange(start, min(end, len(data)))
        else:
            pos = rng.randrange(len(data))
        data[pos] ^= 1 << rng.randrange(8)
    return "raw-flip", bytes(data)


def _overwrite(rng, base):
    data = bytearray(base.raw)
    start, end = rng.choice(base.regions)
    pos = rng.randrange(start, min(end, len(data)))
    n = rng.randint(1, 16)
    fill = rng.choice([b"\x00" * n, b"\xff" * n, bytes(rng.randrange(256) for _ in range(n)),
                       b"PK\x05\x06"[:n], b"PK\x01\x02"[:n]])
    data[pos:pos + len(fill)] = fill
    return "raw-overwrite", bytes(data[:len(base.raw)])


def _truncate(rng, base):
    cut = rng.choice([rng.randrange(len(base.raw)), len(base.raw) - rng.randint(1, 100),
                      rng.randint(0, 64)])
    return "raw-truncate", base.raw[:max(cut, 0)]


def _splice(rng, base):
    data = bytearray(base.raw)
    pos = rng.randrange(len(data))
    if rng.random() < 0.5:
        del data[pos:pos + rng.randint(1, 64)]
    else:
        data[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 64)))
    if rng.random() < 0.2:
        data += rng.choice([b"garbage", base.raw[-22:], b"PK\x05\x06" + bytes(18)])
    return "raw-splice", bytes(data)


def _entries(rng, base):
    members = base.rebuild()
    choice = rng.randrange(7)
    i = rng.randrange(len(members))
    if choice == 0:
        del members[i]
        kind = "zip-remove"
    elif choice == 1:
        members.append(copy.copy(members[i]) if rng.random() < 0.5 else member(
            members[i]["name"], npy(np.zeros(rng.choice([1, N_PARAMS]), np.float32))))
        kind = "zip-duplicate"
    elif choice == 2:
        members[i]["name"] = rng.choice(["params.npy", "header.npy", "opt__m.npy", "opt__s.npy",
                                         "opt__velocity.npy", "opt__zz.npy", "params", "PARAMS.npy",
                                         "dir/params.npy", "../params.npy", "params.npy/", "é.npy", ""])
        kind = "zip-rename"
    elif choice == 3:
        evil = np.empty(2, dtype=object)
        members.append(rng.choice([member("extra.npy", npy(np.zeros(3))),
                                   member("notes.txt", b"hello"),
                                   member("opt__velocity.npy", npy(np.zeros(N_PARAMS, np.float32))),
                                   member("extra.npy", _pickled(evil))]))
        kind = "zip-extra"
    elif choice == 4:
        members = [member(m["name"], _payload(m), method=rng.choice([8, 8, 8, 12, 14, 99]))
                   for m in members]
        kind = "zip-compress"
    elif choice == 5:
        m = members[i]
        field = rng.choice(["size", "csize", "crc"])
        m[field] = rng.choice([0, 1, m[field] + 1, max(m[field] - 1, 0), 2**32 - 1, 2**31,
                               m[field] * 1000 + 7])
        kind = f"zip-lie-{field}"
    else:
        rng.shuffle(members)
        kind = "zip-reorder"
    return kind, raw_zip(members)


def _payload(m: dict) -> bytes:
    return m["payload"] if m["method"] == 0 else zlib.decompress(m["payload"], -15)


def _pickled(array) -> bytes:
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, array, allow_pickle=True)
    return buffer.getvalue()


def _npy_header(rng, base):
    name = rng.choice(sorted(base.entries))
    text, data, version = split_npy(base.entries[name])
    n = len(data) // 4 if name != "header.npy" else len(data)
    choice = rng.randrange(8)
    if choice == 0:   # one byte of the header text changed (the audit's TokenError)
        pos = rng.randrange(len(text))
        char = rng.choice("(){}[]'\",:L\\\x00\n0123456789-eE ")
        text = text[:pos] + char + text[pos + 1:]
        new = npy_raw(text.rstrip(" \n"), data, version)
        kind = "npy-byte"
    elif choice == 1:
        shape = rng.choice([(n + 1,), (n - 1,), (0,), (), (n, 1), (1, n), (10**12,), (2**62,), (-1,),
                            (n, n), (2**31,), (10**18,)])
        descr = "|u1" if name == "header.npy" else "<f4"
        new = npy_raw(f"{{'descr': '{descr}', 'fortran_order': False, 'shape': {shape!r}, }}", data)
        kind = "npy-shape"
    elif choice == 2:
        descr = rng.choice(["'<f8'", "'<f2'", "'<i4'", "'|u1'", "'|O'", "'<U3'", "'>f4'", "'V4'",
                            "[('a', '<f4')]", "('<f4', (2,))", "'garbage'", "5", "None", "'<c8'"])
        payload = data
        if descr == "'>f4'" and name != "header.npy":   # a valid big-endian copy of the same numbers
            payload = np.frombuffer(data, "<f4").astype(">f4").tobytes()
        shape = (len(payload) // 4,) if name != "header.npy" else (len(payload),)
        new = npy_raw(f"{{'descr': {descr}, 'fortran_order': False, 'shape': {shape!r}, }}", payload)
        kind = "npy-dtype"
    elif choice == 3:
        order = rng.choice(["True", "1", "'x'", "None"])
        new = npy_raw(text.replace("False", order), data, version)
        kind = "npy-fortran"
    elif choice == 4:
        new = npy_raw(rng.choice(["", "{}", "[1, 2]", "{'descr': '<f4'}", "(" * 300 + ")" * 300,
                                  "{'descr': '<f4', 'fortran_order': False, 'shape': (1" + "0" * 5000
                                  + ",), }", "'''", "{'a': " * 50, "\x00" * 40]), data)
        kind = "npy-garbage"
    elif choice == 5:
        new = npy_raw(text.rstrip(" \n"), data, rng.choice([(2, 0), (3, 0), (9, 9), (0, 0)]))
        kind = "npy-version"
    elif choice == 6:
        raw = bytearray(base.entries[name])
        raw[8:10] = struct.pack("<H", rng.choice([0, 1, 65535, 10001, len(text) + 64]))
        new = bytes(raw)
        kind = "npy-length"
    else:
        raw = bytearray(base.entries[name])
        raw[rng.randrange(8)] ^= 1 << rng.randrange(8)
        new = bytes(raw)
        kind = "npy-magic"
    return kind, raw_zip(base.rebuild(**{name: new}))


def _json_text(rng, base):
    text = bytearray(header_bytes(base.header))
    choice = rng.randrange(6)
    if choice == 0:
        for _ in range(rng.randint(1, 4)):
            text[rng.randrange(len(text))] ^= 1 << rng.randrange(8)
        kind = "json-flip"
    elif choice == 1:
        del text[rng.randrange(len(text)):]
        kind = "json-truncate"
    elif choice == 2:
        pos = rng.randrange(len(text))
        text[pos:pos] = rng.choice([b"1" * 5000, b"-" + b"9" * 4301, b"[" * 5000, b"{\"a\":" * 3000,
                                    b"\"\\ud800\"", b"NaN", b"\x00", b"\xff\xfe", b"\"\xc3\x28\"",
                                    b",", b"}", b"1e999999", b"\"" + b"\\u0000" * 10 + b"\""])
        kind = "json-splice"
    elif choice == 3:
        numbers = [i for i, c in enumerate(text) if chr(c).isdigit() and not chr(text[i - 1]).isdigit()]
        pos = rng.choice(numbers)
        text[pos:pos] = b"9" * rng.choice([4200, 4300, 4301, 5000, 20000])
        kind = "json-bigint"
    elif choice == 4:
        key = rng.choice([b"[" * 40 + b"]" * 40, b"[" * 100000 + b"]" * 100000,
                          b"[{}" + b",{}" * 70000 + b"]", b"[" + b"\"ab\"," * 200000 + b"1]",
                          b"\"" + b"x" * (5 * 2**20) + b"\"", b"\"" + b"x" * (9 * 2**20) + b"\""])
        text = bytearray(b'{"junk": ' + key + b", " + bytes(text[1:]))
        kind = "json-bomb"
    else:
        text = bytearray(rng.choice([b"[]", b"null", b"1", b"\"digitnet-model\"", b"{}",
                                     b'{"format": "digitnet-model"}',
                                     b'{"format": "digitnet-model", "format_version": true}',
                                     b'{"format": "digitnet-model", "format_version": 1}']))
        kind = "json-tiny"
    return kind, raw_zip(base.rebuild(header_text=bytes(text)))


def _field(rng, base):
    header = copy.deepcopy(base.header)
    path = rng.choice(base.paths[1:])
    parent, key = _get(header, path[:-1]), path[-1]
    choice = rng.randrange(10)
    if choice < 5:
        parent[key] = copy.deepcopy(rng.choice(ALIENS))
        kind = "field-type"
    elif choice == 5:
        del parent[key]
        kind = "field-delete"
    elif choice == 6:
        parent[key] = copy.deepcopy(_get(header, rng.choice(base.paths[1:])))
        kind = "field-swap"
    elif choice == 7:
        target = _get(header, rng.choice([p for p in base.paths if isinstance(_get(header, p), dict)]))
        target[rng.choice(["junk", "note", "x" * 50, ""])] = copy.deepcopy(rng.choice(ALIENS))
        kind = "field-unknown"
    else:
        parent[key] = _nudge(rng, parent[key])
        kind = "field-nudge"
    return kind, raw_zip(base.rebuild(header_text=header_bytes(header)))


def _nudge(rng, value):
    """A value of the same type, often still valid: the mutants that load."""
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return rng.choice([value + 1, value - 1, 0, -value, value * 1000, 1, 2])
    if isinstance(value, float):
        return rng.choice([value * 2, -value, 0.0, value + 1e-3, 1.0, 1e-300])
    if isinstance(value, str):
        return rng.choice(["unit", "symmetric", "sigmoid", "softmax", "relu", "mse", "cross_entropy",
                           "adam", "sgd", "momentum", "cosine", "step", "zhang", "xor", "fashion-mnist",
                           value.upper(), value + " ", "Ω", value * 2])
    if isinstance(value, list):
        value = list(value)
        if value and rng.random() < 0.5:
            del value[rng.randrange(len(value))]
        elif value:
            value.append(copy.deepcopy(value[-1]))
        return value
    if isinstance(value, dict):
        value = dict(value)
        if value:
            del value[rng.choice(sorted(value))]
        return value
    return value


_BOMB_CACHE = {}


def deflated_zeros(n_bytes: int) -> bytes:
    """A raw deflate stream of ``n_bytes`` zeros, assembled from one compressed 1 MiB block.

    After a full flush a deflate block stands alone, byte-aligned: repeating it is valid.
    """
    if n_bytes not in _BOMB_CACHE:
        mib = 1 << 20

        def block(n):
            c = zlib.compressobj(9, zlib.DEFLATED, -15)
            return c.compress(bytes(n)) + c.flush(zlib.Z_FULL_FLUSH)

        end = zlib.compressobj(9, zlib.DEFLATED, -15).flush()         # an empty final block
        tail = block(n_bytes % mib) if n_bytes % mib else b""
        _BOMB_CACHE[n_bytes] = block(mib) * (n_bytes // mib) + tail + end
    return _BOMB_CACHE[n_bytes]


def bomb_member(name: str, header_text: str, n_zero_bytes: int, *, size=None, crc=None) -> dict:
    """A deflated entry: a .npy header, then ``n_zero_bytes`` zeros that inflate from almost nothing.

    The CRC is right when it is cheap to compute (up to 16 MiB), else ``crc`` (default 0).
    """
    prefix = npy_raw(header_text, b"")
    head = zlib.compressobj(0, zlib.DEFLATED, -15)      # the .npy header as a stored block
    payload = head.compress(prefix) + head.flush(zlib.Z_FULL_FLUSH) + deflated_zeros(n_zero_bytes)
    if crc is None:
        crc = zlib.crc32(bytes(n_zero_bytes), zlib.crc32(prefix)) if n_zero_bytes <= 2**24 else 0
    return {"name": name, "method": 8, "crc": crc, "payload": payload,
            "size": len(prefix) + n_zero_bytes if size is None else size, "csize": len(payload)}


def _bomb(rng, base):
    n = rng.choice([16, 64, 256]) << 20
    floats = n // 4
    choice = rng.randrange(4)
    declared = "{'descr': '<f4', 'fortran_order': False, 'shape': (%d,), }"
    if choice == 0:     # the .npy header says so, the zip says so, the model header does not
        m = bomb_member("params.npy", declared % floats, n)
    elif choice == 1:   # the .npy header has the right shape, the zip directory declares the bomb
        m = bomb_member("params.npy", declared % N_PARAMS, n)
    elif choice == 2:   # both headers right, the stream inflates far beyond them
        size = len(npy_raw(declared % N_PARAMS, b"")) + 4 * N_PARAMS
        m = bomb_member("params.npy", declared % N_PARAMS, n, size=size, crc=1)
    else:               # the JSON header is the bomb
        m = bomb_member("header.npy", declared.replace("<f4", "|u1") % n, n)
    members = [x for x in base.rebuild() if x["name"] != m["name"]] + [m]
    return f"bomb-{choice}", raw_zip(members)


MUTATIONS = [(_flip, 10), (_overwrite, 6), (_truncate, 4), (_splice, 4), (_entries, 10),
             (_npy_header, 12), (_json_text, 10), (_field, 40), (_bomb, 1)]


def mutants(bases: list[Base], n: int, seed: int):
    rng = random.Random(seed)
    functions = [f for f, w in MUTATIONS for _ in range(w)]
    for i in range(n):
        base = bases[i % len(bases)]
        kind, data = rng.choice(functions)(rng, base)
        yield i, base, kind, data


# =============================================================================================
# Running one mutant
# =============================================================================================

class _Hang(BaseException):
    pass


def _alarm(signum, frame):
    raise _Hang()


def run_cli(argv) -> tuple:
    """``(exit status, stdout, stderr)`` of ``digitnet ARGV`` run in this process.

    Any exception that escapes ``main`` gives ``("foreign", stdout, traceback)``.
    """
    out, err = io.StringIO(), io.StringIO()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # as on a terminal: warnings are printed on stderr (pytest would otherwise collect them)
            warnings.simplefilter("default")
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", PendingDeprecationWarning)
            warnings.showwarning = _show_warning
            try:
                status = cli_main([str(a) for a in argv])
            except SystemExit as exc:
                status = exc.code
    except _Hang:
        raise
    except BaseException:   # noqa: BLE001 - anything else is what the fuzzer looks for
        return "foreign", out.getvalue(), traceback.format_exc()
    return status, out.getvalue(), err.getvalue()


def _show_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def cli_problem(argv, status, stdout, stderr) -> str | None:
    """Why this run breaks the project's rules, or ``None``."""
    if status == "foreign":
        return f"digitnet {' '.join(map(str, argv))} raised:\n{stderr}"
    if "Traceback" in stderr + stdout:
        return f"digitnet {argv[0]} printed a traceback (exit {status}):\n{stderr}"
    if status == 0:
        return f"digitnet {argv[0]} succeeded but wrote to stderr: {stderr!r}" if stderr else None
    if status != 2:
        return f"digitnet {argv[0]} exited {status}: {stderr!r}"
    lines = stderr.strip().splitlines()
    if len(lines) != 1 or not lines[0].startswith("digitnet: error: "):
        return f"digitnet {argv[0]} exit 2 without exactly one 'digitnet: error:' line: {stderr!r}"
    return None


def load_problem(path) -> tuple[str, str | None]:
    """``(outcome, problem)``: the loader on ``path``; outcome is ``loaded`` or the error's class."""
    try:
        load_checkpoint(path)
    except _Hang:
        raise
    except DigitnetError as exc:
        message = str(exc)
        if "\n" in message or not message.strip():
            return type(exc).__name__, f"error message is not one line: {message!r}"
        if not isinstance(exc, ModelFileError):
            return type(exc).__name__, f"the loader raised {type(exc).__name__}, not ModelFileError: {exc}"
        return "ModelFileError", None
    except BaseException:   # noqa: BLE001
        return "foreign", traceback.format_exc()
    return "loaded", None


def commands(corpus, path, loaded: bool, plot: bool) -> list[list]:
    runs = [["info", path]]
    if loaded:
        runs += [["predict", path, corpus["png"]], ["evaluate", path, "--data", corpus["data"]],
                 ["export", path, "--out", corpus["out"] / "fuzz.onnx"]]
    if plot:
        runs += [["plot", "confusion", path, "--out", corpus["out"] / "confusion.png",
                  "--data", corpus["data"], "--limit", 20],
                 ["plot", "curves", path, "--out", corpus["out"] / "curves.png"]]
    return runs


def peak_rss_bytes() -> int:
    if resource is None:
        return 0
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024)


def set_timer(seconds: float) -> None:
    if HAS_TIMER:
        signal.setitimer(signal.ITIMER_REAL, seconds)


# =============================================================================================
# The fuzzer
# =============================================================================================

def test_fuzz_model_files(corpus, tmp_path):
    bases = [Base(p) for p in corpus["bases"].values()]
    for base in bases:      # the untouched files work everywhere (and matplotlib is loaded before measuring)
        assert load_problem(base.path) == ("loaded", None)
        for argv in commands(corpus, base.path, True, base is bases[0]):
            assert cli_problem(argv, *run_cli(argv)) is None
        assert load_problem_of(tmp_path, raw_zip(base.rebuild())) == ("loaded", None)
    failures, outcomes, kinds, foreign = [], Counter(), Counter(), 0
    slowest, bomb_peak, plotted, hangs = (0.0, ""), 0, 0, 0
    rss_before = peak_rss_bytes()
    started = time.perf_counter()
    previous = signal.signal(signal.SIGALRM, _alarm) if HAS_TIMER else None
    mutant = tmp_path / "mutant.npz"
    try:
        for i, base, kind, data in mutants(bases, N_MUTANTS, SEED):
            mutant.write_bytes(data)
            kinds[kind] += 1
            problems, alien = [], False
            t0 = time.perf_counter()
            set_timer(HANG_SECONDS)
            try:
                bomb = kind.startswith(("bomb", "json-bomb", "zip-lie"))
                if bomb:
                    tracemalloc.start()
                outcome, problem = load_problem(mutant)
                if bomb:
                    bomb_peak = max(bomb_peak, tracemalloc.get_traced_memory()[1])
                    tracemalloc.stop()
                if problem:
                    problems.append(problem)
                    alien = outcome == "foreign"
                loaded = outcome == "loaded"
                plot = loaded and plotted < PLOTTED and kind.startswith("field") and i % 5 == 0
                plotted += plot
                for argv in commands(corpus, mutant, loaded or i % 10 == 0, plot):
                    status, stdout, stderr = run_cli(argv)
                    problem = cli_problem(argv, status, stdout, stderr)
                    if problem:
                        problems.append(problem)
                        alien = alien or status == "foreign" or "Traceback" in stderr
                if loaded and not problems and outcomes["loaded"] % 3 == 0:
                    problems += _reloads_everywhere(mutant, tmp_path)
            except _Hang:
                hangs += 1
                outcome = "hang"
                problems.append(f"no answer within {HANG_SECONDS} s")
            finally:
                set_timer(0)
                if tracemalloc.is_tracing():
                    tracemalloc.stop()
            elapsed = time.perf_counter() - t0
            if elapsed > slowest[0]:
                slowest = (elapsed, f"#{i} {kind}")
            outcomes[outcome] += 1
            foreign += alien
            if problems:
                saved = tmp_path / f"failure-{i}-{kind}.npz"
                saved.write_bytes(data)
                failures.append(f"mutant #{i} ({kind}, of {base.path.name}, kept as {saved}): "
                                + "; ".join(problems))
    finally:
        if HAS_TIMER:
            signal.signal(signal.SIGALRM, previous)
    summary = {"mutants": N_MUTANTS, "seed": SEED, "seconds": round(time.perf_counter() - started, 1),
               "loader_outcomes": dict(outcomes), "project_errors": outcomes["ModelFileError"],
               "foreign_exceptions": foreign, "rule_breaks": len(failures), "hangs": hangs,
               "plotted": plotted, "kinds": dict(sorted(kinds.items())),
               "slowest_mutant_seconds": round(slowest[0], 3), "slowest_mutant": slowest[1],
               "bomb_tracemalloc_peak_mb": round(bomb_peak / 2**20, 1),
               "peak_rss_growth_mb": round((peak_rss_bytes() - rss_before) / 2**20, 1),
               "peak_rss_mb": round(peak_rss_bytes() / 2**20, 1)}
    print(json.dumps(summary, indent=1))
    if os.environ.get("DIGITNET_FUZZ_REPORT"):
        Path(os.environ["DIGITNET_FUZZ_REPORT"]).write_text(json.dumps(summary, indent=1) + "\n")
    assert not failures, (f"{len(failures)} of {N_MUTANTS} mutants broke the rules:\n"
                          + "\n".join(failures[:10]))
    assert hangs == 0 and foreign == 0
    assert bomb_peak < EXTRA_BYTES
    # the whole process, the fuzzer's own copies of the mutants and matplotlib's caches included
    assert summary["peak_rss_growth_mb"] < 2 * EXTRA_BYTES / 2**20
    assert outcomes["loaded"] > N_MUTANTS // 20, "too few mutants load: the fuzzer tests too little"
    assert outcomes["ModelFileError"] > N_MUTANTS // 2


def load_problem_of(folder: Path, data: bytes):
    path = folder / "rebuilt.npz"
    path.write_bytes(data)
    return load_problem(path)


def _reloads_everywhere(path: Path, folder: Path) -> list[str]:
    """A file that loads gives the same header through every reader, and saves again."""
    try:
        header, _ = read_model_file(path)
        network = load_model(path)
        assert network.metadata == header or _nan_equal(network.metadata, header)
        again = save_model(folder / "again.npz", network)
        load_model(again)
    except _Hang:
        raise
    except BaseException:   # noqa: BLE001
        return [f"a loadable file does not round-trip:\n{traceback.format_exc()}"]
    return []


def _nan_equal(a, b) -> bool:
    return json.dumps(a, sort_keys=True) == json.dumps(b, sort_keys=True)


# =============================================================================================
# Every known field, every alien value: a deterministic sweep
# =============================================================================================

SWEEP_VALUES = [None, True, 0, -1, 2**63, HUGE, 0.5, math.nan, math.inf, "", "x", [], [1, 2], ["a"],
                {}, {"a": 1}]


def test_every_header_field_with_every_type(corpus, tmp_path):
    """Each field of the real headers set to each value of another type: an error or a working file."""
    failures, loaded = [], 0
    path = tmp_path / "m.npz"
    for base in (Base(corpus["bases"]["model"]), Base(corpus["bases"]["adam"])):
        for field in base.paths[1:]:
            if len(field) > 2 and field[1] == "records" and field[2] != 0:   # one record stands for all
                continue
            if base.path.name != "model.npz" and field[0] not in ("optimizer", "checkpoint"):
                continue   # the checkpoint adds only these to the model's fields
            for value in SWEEP_VALUES:
                header = copy.deepcopy(base.header)
                _get(header, field[:-1])[field[-1]] = copy.deepcopy(value)
                path.write_bytes(raw_zip(base.rebuild(header_text=header_bytes(header))))
                outcome, problem = load_problem(path)
                loaded += outcome == "loaded"
                runs = commands(corpus, path, outcome == "loaded", False)
                problems = [problem] + [cli_problem(argv, *run_cli(argv)) for argv in runs]
                problems = [p for p in problems if p]
                if problems:
                    failures.append(f"{'.'.join(map(str, field))} = {value!r}: " + "; ".join(problems))
    assert not failures, f"{len(failures)} field/value pairs broke the rules:\n" + "\n".join(failures[:10])
    assert loaded > 0   # unknown-to-the-reader values in free-text fields still load


# =============================================================================================
# The audit's findings, one by one
# =============================================================================================

def assert_one_line_error(argv, *fragments):
    status, stdout, stderr = run_cli(argv)
    problem = cli_problem(argv, status, stdout, stderr)
    assert problem is None, problem
    assert status == 2, (status, stdout, stderr)
    for fragment in fragments:
        assert fragment in stderr, (fragment, stderr)
    return stderr


def every_command(corpus, path):
    return [["info", path], ["predict", path, corpus["png"]], ["evaluate", path, "--data", corpus["data"]],
            ["plot", "confusion", path, "--out", corpus["out"] / "c.png", "--data", corpus["data"],
             "--limit", 20],
            ["plot", "curves", path, "--out", corpus["out"] / "c.png"],
            ["report", path, "--out", corpus["out"] / "report", "--data", corpus["data"], "--limit", 20],
            ["export", path, "--out", corpus["out"] / "m.onnx"]]


def expect_load_error(path, *fragments, peak_limit=EXTRA_BYTES) -> str:
    tracemalloc.start()
    try:
        with pytest.raises(ModelFileError) as excinfo:
            load_checkpoint(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(excinfo.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    assert peak < peak_limit, f"loading the damaged file cost {peak / 2**20:.0f} MB"
    return message


@pytest.mark.parametrize("shape", [(10**10,), (2**62,), (N_PARAMS, N_PARAMS), (200_000_000,)])
def test_a_huge_declared_shape_is_refused_before_allocation(corpus, tmp_path, shape):
    """Audit 1: params.npy declaring a huge shape gave _ArrayMemoryError in info, predict, evaluate."""
    base = Base(corpus["bases"]["model"])
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': {shape!r}, }}"
    data = split_npy(base.entries["params.npy"])[1]
    path = tmp_path / "huge.npz"
    # the .npy header lies, the zip directory is honest about the bytes there are
    path.write_bytes(raw_zip(base.rebuild(**{"params.npy": npy_raw(header, data)})))
    expect_load_error(path, "params", "declares")
    for argv in every_command(corpus, path)[:3]:
        assert_one_line_error(argv, "huge.npz")
    # the zip directory lies along with it: more bytes than the file can hold
    members = base.rebuild(**{"params.npy": npy_raw(header, data)})
    for m in members:
        if m["name"] == "params.npy":
            m["size"] = min(len(npy_raw(header, b"")) + 4 * math.prod(shape), 2**32 - 1)
    path.write_bytes(raw_zip(members))
    expect_load_error(path, "params")


@pytest.mark.parametrize("entry", ["params.npy", "header.npy"])
def test_any_byte_of_a_npy_header_changed(corpus, tmp_path, entry):
    """Audit 2: one byte changed inside a real model's .npy header raised tokenize.TokenError."""
    base = Base(corpus["bases"]["model"])
    raw = base.entries[entry]
    length = 10 + int.from_bytes(raw[8:10], "little")
    path = tmp_path / "m.npz"
    outcomes = Counter()
    for pos in range(length):
        for replacement in (b"(", b"'", b"\"", b"\x00", b"L", b"9"):
            if raw[pos:pos + 1] == replacement:
                continue
            mutated = raw[:pos] + replacement + raw[pos + 1:]
            path.write_bytes(raw_zip(base.rebuild(**{entry: mutated})))
            outcome, problem = load_problem(path)
            assert problem is None, (pos, replacement, problem)
            outcomes[outcome] += 1
    assert outcomes["ModelFileError"] > 0.9 * sum(outcomes.values())
    # the audit's exact case: a quote in the middle of the dict literal
    text = raw.decode("latin1")
    pos = text.index("'shape'") + 3
    path.write_bytes(raw_zip(base.rebuild(**{entry: raw[:pos] + b"\"" + raw[pos + 1:]})))
    for argv in every_command(corpus, path)[:3]:
        assert_one_line_error(argv, "m.npz")


def test_a_deflate_bomb_costs_no_memory(corpus, tmp_path):
    """Audit 3: a 0.78 MB npz whose deflated params hold 200M floats made 816 MB resident."""
    base = Base(corpus["bases"]["model"])
    path = tmp_path / "bomb.npz"
    n = 200_000_000 * 4
    header = "{'descr': '<f4', 'fortran_order': False, 'shape': (200000000,), }"
    bomb = bomb_member("params.npy", header, n, crc=0)
    path.write_bytes(raw_zip([m for m in base.rebuild() if m["name"] != "params.npy"] + [bomb]))
    assert path.stat().st_size < 1_000_000
    expect_load_error(path, "holds 200000000 parameters but layers [784, 8, 10] need 6370",
                      peak_limit=16 * 2**20)
    # the .npy header honest about the model, the zip directory declaring the bomb
    header = f"{{'descr': '<f4', 'fortran_order': False, 'shape': ({N_PARAMS},), }}"
    bomb = bomb_member("params.npy", header, n, crc=0)
    path.write_bytes(raw_zip([m for m in base.rebuild() if m["name"] != "params.npy"] + [bomb]))
    expect_load_error(path, "zip directory says", peak_limit=16 * 2**20)
    # everything declared right, but the stream inflates on and on: never read past the declared size
    bomb = bomb_member("params.npy", header, n, size=len(npy_raw(header, b"")) + 4 * N_PARAMS, crc=0)
    path.write_bytes(raw_zip([m for m in base.rebuild() if m["name"] != "params.npy"] + [bomb]))
    expect_load_error(path, "checksum", peak_limit=16 * 2**20)
    # a zip directory that claims far more than its compressed bytes can inflate to
    members = base.rebuild()
    members[-1]["size"] = 2**32 - 1
    path.write_bytes(raw_zip(members))
    expect_load_error(path, "no zip file can hold")
    for argv in every_command(corpus, path)[:3]:
        assert_one_line_error(argv, "bomb.npz")


def test_a_header_bomb_costs_little_memory(corpus, tmp_path):
    """The JSON header is bounded too: bytes, values, nesting."""
    base = Base(corpus["bases"]["model"])
    path = tmp_path / "m.npz"
    for junk, fragment in ((b"[{}" + b",{}" * 200000 + b"]", "too many values"),
                           (b"[" + b"\"ab\"," * 700000 + b"1]", "too many values"),
                           (b"\"" + b"x" * (9 * 2**20) + b"\"", "more than the"),
                           (b"[" * 100000 + b"]" * 100000, "too many values"),
                           (b"[" * 50 + b"]" * 50, "nested more than 32 levels")):
        text = b'{"junk": ' + junk + b", " + header_bytes(base.header)[1:]
        path.write_bytes(raw_zip(base.rebuild(header_text=text)))
        expect_load_error(path, fragment)


def test_the_largest_header_allowed_costs_less_than_64_mb(corpus, tmp_path):
    """Just under the limits, the worst mix of values for memory: it loads, within budget."""
    base = Base(corpus["bases"]["model"])
    junk = b"[" + b'{"a":"ab"},' * 90000 + b'"ab",' * 400000 + b"1]"
    path = tmp_path / "m.npz"
    path.write_bytes(raw_zip(base.rebuild(header_text=b'{"junk": ' + junk + b", "
                                          + header_bytes(base.header)[1:])))
    tracemalloc.start()
    try:
        network = load_model(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert len(network.metadata["junk"]) == 490001
    assert peak < EXTRA_BYTES, f"{peak / 2**20:.0f} MB"


def _with_field(base, path_in_header, value):
    header = copy.deepcopy(base.header)
    if path_in_header:
        _get(header, path_in_header[:-1])[path_in_header[-1]] = value
    return raw_zip(base.rebuild(header_text=header_bytes(header)))


AUDIT_FIELDS = [
    (("preprocessing",), "x", "preprocessing must be an object"),
    (("history", "records", 0), 5, "history.records[0] must be an object"),
    (("history", "records", 1, "seconds"), "1.5", "history.records[1].seconds must be a number"),
    (("history", "records", 1, "loss"), None, None),            # allowed: info prints '-'
    (("history", "records", 0, "epoch"), "1", "history.records[0].epoch must be a whole number"),
    (("history", "records"), {"a": 1}, "history.records must be a list"),
    (("history", "best_epoch"), 7, "history.best_epoch 7 is not one of the recorded epochs"),
    (("preprocessing", "classes"), [1, 2], "preprocessing.classes[0] must be a text"),
    (("preprocessing", "classes"), ["a", "b"], "names 2 classes but the network has 10"),
    (("preprocessing", "input_shape"), [28, 29], "does not match the network's 784 inputs"),
    (("preprocessing", "input_shape"), "28x28", "preprocessing.input_shape must be a list"),
    (("preprocessing", "scale"), "percent", "preprocessing.scale must be one of 'unit', 'symmetric'"),
    (("preprocessing", "dataset"), 5, "preprocessing.dataset must be a text"),
    (("recipe",), [], "recipe must be an object"),
    (("recipe", "subset"), "all", "recipe.subset must be a whole number"),
    (("recipe", "overrides"), ["lr"], "recipe.overrides must be an object"),
    (("recipe", "lr"), "fast", "recipe.lr must be a number > 0"),
    (("recipe", "batch_size"), 0, "recipe.batch_size must be a whole number ≥ 1"),
    (("recipe", "optimizer"), "rmsprop", "recipe.optimizer must be an optimizer name"),
    (("recipe", "l2"), math.nan, "recipe.l2 must be a number ≥ 0"),
    (("recipe", "shift"), 9, "recipe.shift must be a whole number from 0 to 8"),
    (("config", "seed"), -1, "config.seed must be a whole number ≥ 0"),
    (("config", "dtype"), "float16", "config.dtype must be one of"),
    (("config", "loss"), None, "config.loss must be a loss name"),
    (("n_params",), 5, "n_params is 5 but layers"),
    (("created",), 20240101, "created must be a text"),
    (("digitnet_version",), ["0.1"], "digitnet_version must be a text"),
    (("evaluation",), "good", "evaluation must be an object"),
    (("evaluation", "test_accuracy"), 98.5, "evaluation.test_accuracy must be a number from 0 to 1"),
    (("checkpoint",), 3, "checkpoint must be an object"),
    (("interrupted", ), {"epoch": "2"}, "interrupted.epoch must be a whole number"),
    (("format_version",), True, "unknown model format version true"),
    (("junk",), {"anything": [1, "x", None]}, None),           # unknown keys are kept, not judged
]


@pytest.mark.parametrize("field, value, fragment", AUDIT_FIELDS,
                         ids=[".".join(map(str, f)) + "=" + repr(v)[:20] for f, v, _ in AUDIT_FIELDS])
def test_wrong_typed_header_fields(corpus, tmp_path, field, value, fragment):
    """Audit 4: header fields of the wrong type were tracebacks in info, predict and plot confusion."""
    base = Base(corpus["bases"]["model"])
    path = tmp_path / "m.npz"
    path.write_bytes(_with_field(base, field, value))
    runs = every_command(corpus, path)
    if fragment is None:      # a valid file: the commands work (the next test runs report)
        load_model(path)
        for argv in runs[:3] + runs[4:5]:
            status, stdout, stderr = run_cli(argv)
            assert cli_problem(argv, status, stdout, stderr) is None
            assert status == 0, (argv, stderr)
        return
    message = expect_load_error(path, fragment)
    assert "m.npz" in message
    for argv in runs[:4]:
        assert_one_line_error(argv, fragment)


def test_optimizer_state_fields(corpus, tmp_path):
    """A checkpoint's optimiser header and arrays must agree, or resuming would break."""
    base = Base(corpus["bases"]["adam"])
    path = tmp_path / "c.npz"
    cases = [
        (("optimizer", "config", "name"), "momentum", "the recipe trains with 'adam'"),
        (("optimizer", "config", "beta1"), 1.0, "optimizer.config.beta1 must be a number from 0 to 1"),
        (("optimizer", "steps"), "8", "optimizer.steps must be a whole number"),
        (("optimizer", "config"), None, "optimizer.config must be an object"),
    ]
    for field, value, fragment in cases:
        path.write_bytes(_with_field(base, field, value))
        expect_load_error(path, fragment)
    # the header without its optimiser, the arrays still there
    header = copy.deepcopy(base.header)
    del header["optimizer"]
    path.write_bytes(raw_zip(base.rebuild(header_text=header_bytes(header))))
    expect_load_error(path, "names no optimiser")
    # only one of Adam's moments
    members = [m for m in base.rebuild() if m["name"] != "opt__s.npy"]
    path.write_bytes(raw_zip(members))
    expect_load_error(path, "only one of Adam's moments")
    # the state of the wrong length
    path.write_bytes(raw_zip(base.rebuild(**{"opt__m.npy": npy(np.zeros(5, np.float32))})))
    expect_load_error(path, "optimiser state 'm' has the wrong shape")


@pytest.mark.parametrize("where", [("config", "seed"), ("n_params",), ("junk",),
                                   ("history", "records", 0, "epoch")])
def test_a_5000_digit_integer_is_named_as_such(corpus, tmp_path, where):
    """Audit 5: a 5000-digit JSON integer gave 'not UTF-8/invalid JSON' wording."""
    base = Base(corpus["bases"]["model"])
    path = tmp_path / "m.npz"
    path.write_bytes(_with_field(base, where, HUGE))
    message = expect_load_error(path, "whole number with 5,000 digits")
    assert "JSON" not in message and "UTF-8" not in message
    assert_one_line_error(["info", path], "5,000 digits")


def test_valid_but_unusual_files_work_in_every_command(corpus, tmp_path):
    """What the reader accepts, every command can use: minimal headers, nulls, unknown keys."""
    base = Base(corpus["bases"]["model"])
    minimal = {key: base.header[key] for key in ("format", "format_version", "config")}
    variants = {
        "minimal": minimal,
        "nulls": {**minimal, "preprocessing": None, "recipe": None, "history": None, "evaluation": None,
                  "checkpoint": None},
        "empty-sections": {**minimal, "preprocessing": {}, "recipe": {}, "history": {"records": []}},
        "extras": {**base.header, "junk": {"deep": [[1, 2], {"x": None}]}, "note": "é ✓",
                   "recipe": {**base.header["recipe"], "custom": [1, 2]},
                   "history": {**base.header["history"], "best_epoch": 2}},
        "null-record-values": {**base.header, "history": {"records": [
            {"epoch": 1, "loss": None, "accuracy": None, "val_loss": None, "val_accuracy": None,
             "lr": None, "seconds": None}, {"epoch": 3}]}},
        "named-classes": {**base.header, "preprocessing": {**base.header["preprocessing"],
                                                           "classes": [f"class «{i}»" for i in range(10)]}},
    }
    # the pictures take half a second each: each variant draws those its change matters to
    pictures = {"minimal": ["curves"], "nulls": ["report"], "null-record-values": ["curves"],
                "extras": ["curves"], "named-classes": ["confusion"]}
    for name, header in variants.items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(raw_zip(base.rebuild(header_text=header_bytes(header))))
        load_model(path)
        runs = every_command(corpus, path)
        for argv in runs[:3] + [r for r in runs[3:] if r[0] in pictures.get(name, ())
                                or r[1] in pictures.get(name, ())]:
            if argv[0] == "report":
                argv = argv + ["--subset", 20, "--epochs", 1]
            status, stdout, stderr = run_cli(argv)
            assert cli_problem(argv, status, stdout, stderr) is None
            # curves need a training history; the other commands need nothing more
            assert status == 0 or (argv[:2] == ["plot", "curves"] and "history" in stderr), \
                (name, argv, stderr)


def test_saving_refuses_what_loading_would_refuse(tmp_path):
    """save_model checks the header it writes with the same schema: no unreadable files."""
    net = Network([6, 5, 4], seed=0)
    with pytest.raises(DigitnetError, match="preprocessing.input_shape"):
        save_model(tmp_path / "m.npz", net, preprocessing={"input_shape": [28, 28]})
    with pytest.raises(DigitnetError, match="recipe.lr must be a number > 0"):
        save_model(tmp_path / "m.npz", net, recipe={"lr": "fast"})
    net.params[3] = np.nan
    with pytest.raises(DigitnetError, match="NaN"):
        save_model(tmp_path / "m.npz", net)
    assert not list(tmp_path.iterdir())
