"""Model files: one ``.npz`` file, arrays plus a JSON header, no pickle.

Layout of the (zip) archive:

``header``   uint8 array holding UTF-8 JSON (see below)
``params``   the flat parameter vector, ``(n_params,)`` float32/float64
``opt__*``   optional optimiser state for checkpoints (velocity, Adam's m and s)

The header::

    {"format": "digitnet-model", "format_version": 1, "digitnet_version": "0.1.0",
     "config": {"sizes": [...], "activations": [...], "loss": ..., "init": [...],
                "dtype": ..., "seed": ...},
     "preprocessing": {...}, "recipe": {...}, "history": {...},
     "optimizer": {...} (checkpoints only), "created": "2026-…Z", ...}

Loading never trusts the file: a model file can hold numbers and text, never
code (no pickle), and nothing is allocated before it is known to be needed.

1. The zip directory is bounded before :mod:`zipfile` parses it, and every
   entry must be a known name, stored or deflated, whose uncompressed size is
   exactly what its ``.npy`` header declares (and plausible for its
   compressed size).
2. The ``.npy`` header of every entry is read here (at most a few kB each,
   with :func:`numpy.lib.format.read_magic` and ``read_array_header_*``),
   its dtype and shape checked against what the model's JSON header implies.
3. The JSON header is parsed with limits (size, nesting, 4300-digit
   integers) and every known field is checked against :data:`HEADER_SCHEMA`,
   one declarative table, then for consistency with the arrays.
4. Only then are the arrays read, never more bytes than declared.

Anything wrong is a :class:`~digitnet.errors.ModelFileError` with one line
that says what is wrong.  Unknown extra header keys are kept as they are.

Saving writes a temporary file in the target folder and renames it into
place, so a crash or Ctrl-C never leaves a half-written model behind (the
rename is atomic on POSIX and Windows).
"""

from __future__ import annotations

import datetime as _dt
import io
import json
import math
import os
import re
import struct
import tokenize
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import DigitnetError, ModelFileError
from ..nn.activations import get_activation
from ..nn.initializers import resolve_initializer
from ..nn.losses import get_loss
from ..nn.network import Network
from .fileio import atomic_write

FORMAT = "digitnet-model"
FORMAT_VERSION = 1

# -- limits: what a digitnet model file can need, with room to spare -----------------------
#: entries in the archive (header, params and at most two optimiser arrays are ever written)
MAX_ENTRIES = 16
#: bytes of the zip's central directory (a real model's is a few hundred)
MAX_DIRECTORY_BYTES = 64 * 1024
#: bytes of one ``.npy`` header (NumPy writes 128; it refuses more than 10,000 itself)
MAX_NPY_HEADER_BYTES = 10_000
#: bytes of the JSON header (a 1,000-epoch history is about 130 kB)
MAX_HEADER_BYTES = 8 * 1024 * 1024
#: commas and colons in the JSON header, and its ``{`` and ``[``: they bound the Python
#: objects the text becomes to about 50 MB (a history of 40,000 epochs needs 560,000 and 40,000)
MAX_JSON_ITEMS = 600_000
MAX_JSON_CONTAINERS = 100_000
#: nesting of the JSON header (digitnet writes 4 levels)
MAX_JSON_DEPTH = 32
#: digits of a JSON integer (Python's own limit for int(str))
MAX_INT_DIGITS = 4300
#: layers of a network, and its parameters (2**28: 1 GiB of float32)
MAX_LAYERS = 128
MAX_PARAMS = 2 ** 28
#: deflate cannot expand data more than about 1032 times
MAX_DEFLATE_RATIO = 1032
_INT_MAX = 2 ** 63 - 1
_READ_CHUNK = 1 << 20

_DAMAGED = "the file is damaged or was edited"


# =========================================================================================
# Saving
# =========================================================================================

def save_model(path, network: Network, *, recipe: dict | None = None,
               preprocessing: dict | None = None, history=None, optimizer=None,
               extra: dict | None = None) -> Path:
    """Write ``network`` (and, for checkpoints, ``optimizer``'s state) to ``path`` atomically.

    ``history`` is a :class:`~digitnet.train.History` or its ``to_dict()``.
    ``extra`` is merged into the header (JSON-serialisable values only).
    The header is checked as :func:`load_model` checks it: a file it would
    refuse is never written (``DigitnetError`` naming the field instead).
    """
    header = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "digitnet_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "config": network.get_config(),
        "n_params": network.n_params,
        "preprocessing": preprocessing if preprocessing is not None
        else dict(getattr(network, "metadata", {}).get("preprocessing", {})),
        "recipe": recipe if recipe is not None else getattr(network, "metadata", {}).get("recipe", {}),
        "history": history.to_dict() if hasattr(history, "to_dict") else (history or {}),
    }
    arrays = {"params": network.params}
    if optimizer is not None:
        state = optimizer.state_dict()
        header["optimizer"] = {"config": optimizer.config(),
                               "steps": int(state.get("steps", 0))}
        for key, value in state.items():
            if isinstance(value, np.ndarray):
                arrays[f"opt__{key}"] = value
    if extra:
        header.update(extra)
    try:
        header_bytes = json.dumps(header, allow_nan=True).encode("utf-8")
    except (TypeError, ValueError, RecursionError) as exc:
        raise DigitnetError(f"cannot save model: header is not JSON-serialisable ({exc})") from None
    try:
        # Never write a file that load_model would refuse.
        _check_json_size(header_bytes)
        written = json.loads(header_bytes)
        _check_fields(written)
        _check_arrays(written, arrays)
        _check_values(arrays)
    except _Invalid as exc:
        raise DigitnetError(f"cannot save model: {_header_message(exc)}") from None
    except _BadArrays as exc:
        raise DigitnetError(f"cannot save model: {exc}") from None
    arrays["header"] = np.frombuffer(header_bytes, dtype=np.uint8)
    path = Path(path)
    if path.is_dir():
        raise DigitnetError(f"cannot write {path}: it is a folder; give a file name such as {path / 'model.npz'}")
    return atomic_write(path, lambda f: np.savez(f, **arrays), "model file")


# =========================================================================================
# What the header says about inputs and outputs
# =========================================================================================

def _preprocessing(network: Network) -> dict:
    metadata = network.metadata if isinstance(network.metadata, dict) else {}
    preprocessing = metadata.get("preprocessing")
    return preprocessing if isinstance(preprocessing, dict) else {}


def input_scale(network: Network) -> str:
    """How the model's inputs were scaled: ``"unit"`` ([0, 1], the default) or ``"symmetric"`` ([−1, 1])."""
    scale = _preprocessing(network).get("scale") or "unit"
    if scale not in ("unit", "symmetric"):
        raise ModelFileError(f"the model's preprocessing names an unknown pixel scale {scale!r}: "
                             "expected 'unit' or 'symmetric'")
    return scale


def to_network_inputs(network: Network, images01: np.ndarray) -> np.ndarray:
    """Images in [0, 1] ``(n, 784)`` → the inputs the model was trained on (its header's scale)."""
    return images01 * 2.0 - 1.0 if input_scale(network) == "symmetric" else images01


def class_names(network: Network) -> list[str]:
    """The names of the model's classes in output order (``"0"``…``"9"`` unless the header names them).

    A single-output network (a yes/no answer) has the two classes ``"0"`` and ``"1"``.
    """
    n = max(network.sizes[-1], 2)
    names = _preprocessing(network).get("classes")
    if isinstance(names, list) and len(names) == n:
        return [str(c) for c in names]
    return [str(i) for i in range(n)]


# =========================================================================================
# The header schema: one table of fields, one small validator
# =========================================================================================

class _Spec:
    """What one JSON value must be.

    ``kind`` is ``int``, ``num``, ``str``, ``bool``, ``list``, ``obj`` or
    ``either`` (any one of ``alts``); ``null`` allows JSON null.  Numbers:
    ranges are inclusive unless ``open_lo``/``open_hi``, NaN and infinities
    are refused unless ``finite`` is false, and ``true``/``false`` are never
    numbers.  Texts: at most ``max_len`` characters, no control characters
    (``multiline`` allows newlines and tabs), one of ``choices``, or
    accepted by ``name``, a function that raises ``DigitnetError`` for an
    unknown name.  Lists: ``min_len`` to ``max_len`` items, each an
    ``item``.  Objects: ``fields`` maps known keys to their specs (other
    keys are tolerated), ``required`` lists the keys that must be present.
    ``what`` replaces the generated description in messages.
    """

    __slots__ = ("kind", "null", "lo", "hi", "open_lo", "open_hi", "finite", "choices", "name", "what",
                 "item", "min_len", "max_len", "fields", "required", "alts", "multiline")

    def __init__(self, kind, *, null=False, lo=None, hi=None, open_lo=False, open_hi=False, finite=True,
                 choices=None, name=None, what=None, item=None, min_len=0, max_len=None,
                 fields=None, required=(), alts=(), multiline=False):
        self.kind, self.null, self.lo, self.hi = kind, null, lo, hi
        self.open_lo, self.open_hi, self.multiline = open_lo, open_hi, multiline
        self.finite, self.choices, self.name, self.what = finite, choices, name, what
        self.item, self.min_len, self.max_len = item, min_len, max_len
        self.fields, self.required, self.alts = fields or {}, tuple(required), alts

    def describe(self) -> str:
        text = self.what or self._describe()
        return text + (" or null" if self.null else "")

    def _describe(self) -> str:
        if self.kind in ("int", "num"):
            noun = "a whole number" if self.kind == "int" else "a number"
            if self.lo is not None and self.hi is not None and self.hi < _INT_MAX:
                excluded = f" ({self.hi} excluded)" if self.open_hi else ""
                return f"{noun} from {self.lo} to {self.hi}{excluded}"
            if self.lo is not None:
                return f"{noun} {'>' if self.open_lo else '≥'} {self.lo}"
            return noun if self.finite else f"{noun} (or NaN/Infinity)"
        if self.kind == "str":
            if self.choices:
                return "one of " + ", ".join(repr(c) for c in self.choices)
            return "a text"
        if self.kind == "bool":
            return "true or false"
        if self.kind == "list":
            return f"a list (each item {self.item.describe()})"
        if self.kind == "obj":
            return "an object {…}"
        if self.kind == "either":
            return " or ".join(alt.describe() for alt in self.alts)
        return "a value"


def _int(lo=0, hi=_INT_MAX, **kw):
    return _Spec("int", lo=lo, hi=hi, **kw)


def _num(lo=None, hi=None, **kw):
    return _Spec("num", lo=lo, hi=hi, **kw)


def _str(max_len=4096, **kw):
    return _Spec("str", max_len=max_len, **kw)


def _list(item, **kw):
    return _Spec("list", item=item, **kw)


def _obj(fields, **kw):
    return _Spec("obj", fields=fields, **kw)


def _optimizer_name(name):
    if name.lower() not in _OPTIMIZER_STATE:
        raise DigitnetError(f"unknown optimizer {name!r}")


def _schedule_name(name):
    from ..nn.schedules import SCHEDULES

    if name not in SCHEDULES:
        raise DigitnetError(f"unknown schedule {name!r}")


def _split_name(name):
    from ..data.datasets import SPLITS

    if name not in SPLITS:
        raise DigitnetError(f"unknown split {name!r}")


#: Arrays each optimiser keeps (``opt__<name>`` entries) and its config's numbers.
_OPTIMIZER_STATE = {"sgd": (), "momentum": ("velocity",), "nesterov": ("velocity",), "adam": ("m", "s")}

_ACTIVATION = _str(name=get_activation, what="an activation name (relu, sigmoid, tanh, identity, softmax)")
_LOSS = _str(name=get_loss, what="a loss name (cross_entropy, binary_cross_entropy, quadratic, mse)")
_INIT_NAME = _str(name=resolve_initializer, what="an initializer name (normal, glorot, he, …)")
_INIT = _Spec("either", null=True, alts=(_INIT_NAME, _list(_INIT_NAME, null=False, max_len=MAX_LAYERS)),
              what="an initializer name or a list of one per layer")
_SCALE = _str(choices=("unit", "symmetric"))
_SEED = _int(lo=0, hi=2 ** 128, null=True)
_SIZES = _list(_int(lo=1, hi=MAX_PARAMS), min_len=2, max_len=MAX_LAYERS + 1)
_ACCURACY = _num(lo=0, hi=1, null=True)
_SECONDS = _num(lo=0, null=True)
_LOSS_VALUE = _num(null=True, finite=False)
_TEXT = _str(max_len=1 << 20, multiline=True)

_RECORD = _obj({
    "epoch": _int(lo=1),
    "loss": _LOSS_VALUE, "accuracy": _ACCURACY,
    "val_loss": _LOSS_VALUE, "val_accuracy": _ACCURACY,
    "lr": _num(lo=0, null=True), "seconds": _SECONDS,
}, required=("epoch",))

#: Every header field digitnet writes or reads, with the type and range it must have.
HEADER_SCHEMA = _obj({
    "format": _str(),
    "format_version": _int(lo=1),
    "digitnet_version": _str(max_len=100),
    "created": _str(max_len=100),
    "n_params": _int(lo=1, hi=MAX_PARAMS),
    "config": _obj({
        "sizes": _SIZES,
        "activations": _list(_ACTIVATION, min_len=1, max_len=MAX_LAYERS),
        "loss": _LOSS,
        "init": _INIT,
        "dtype": _str(choices=("float32", "float64")),
        "seed": _SEED,
    }, required=("sizes", "activations", "loss")),
    "preprocessing": _obj({
        "scale": _SCALE,
        "input_shape": _list(_int(lo=1, hi=MAX_PARAMS), min_len=1, max_len=3),
        "dataset": _str(),
        "classes": _list(_str(max_len=200), min_len=2, max_len=MAX_PARAMS),
    }, null=True),
    "recipe": _obj({
        "name": _str(), "source": _TEXT, "published": _TEXT, "notes": _TEXT,
        "reported_on": _str(choices=("test", "validation")),
        "sizes": _SIZES,
        "activations": _list(_ACTIVATION, min_len=1, max_len=MAX_LAYERS),
        "loss": _LOSS,
        "init": _INIT,
        "optimizer": _str(name=_optimizer_name, what="an optimizer name (sgd, momentum, nesterov, adam)"),
        "lr": _num(lo=0, open_lo=True),
        "batch_size": _int(lo=1, null=True),
        "epochs": _int(lo=1),
        "l2": _num(lo=0),
        "schedule": _str(name=_schedule_name, null=True, what="a schedule name (constant, step, cosine)"),
        "scale": _SCALE,
        "split": _str(name=_split_name, what="a split name (standard, nielsen, raschka, zhang)"),
        "data": _str(),
        "shift": _int(lo=0, hi=8),
        "elastic": _num(lo=0, hi=100),
        "elastic_sigma": _num(lo=0, hi=100, open_lo=True),
        "rotate": _num(lo=0, hi=90),
        "zoom": _num(lo=0, hi=0.9),
        "shear": _num(lo=0, hi=1),
        "dropout": _num(lo=0, hi=1, open_hi=True),
        "fade": _int(lo=0, hi=10_000),
        "seed": _SEED,
        "subset": _int(lo=1, null=True),
        "overrides": _obj({}),
        "resumed_from": _str(null=True),
    }, null=True),
    "history": _obj({
        "records": _list(_RECORD, max_len=10 ** 6),
        "seed": _SEED,
        "best_epoch": _int(lo=1, null=True),
        "stopped_early": _Spec("bool"),
    }, null=True),
    "optimizer": _obj({
        "config": _obj({
            "name": _str(name=_optimizer_name, what="an optimizer name (sgd, momentum, nesterov, adam)"),
            "lr": _num(lo=0, open_lo=True),
            "momentum": _num(lo=0, hi=1, open_hi=True),
            "beta1": _num(lo=0, hi=1, open_hi=True),
            "beta2": _num(lo=0, hi=1, open_hi=True),
            "eps": _num(lo=0, open_lo=True),
        }, required=("name",)),
        "steps": _int(lo=0),
    }, required=("config",)),
    "checkpoint": _obj({"epoch": _int(lo=0), "epochs": _int(lo=1), "seed": _SEED}, null=True),
    "interrupted": _obj({"epoch": _int(lo=0), "epochs": _int(lo=1)}, null=True),
    "evaluation": _obj({"test_accuracy": _ACCURACY, "val_accuracy": _ACCURACY,
                        "train_seconds": _SECONDS, "total_seconds": _SECONDS}, null=True),
}, required=("format", "format_version", "config"))


_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f]")
_MULTILINE_CONTROL = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f]")


class _Invalid(Exception):
    """A header value that does not fit its spec: ``(where, message)``."""


def _show(value) -> str:
    try:
        text = json.dumps(value, ensure_ascii=True, allow_nan=True)
    except (TypeError, ValueError, RecursionError):
        text = type(value).__name__
    return text if len(text) <= 60 else text[:57] + "..."


def _fail(spec: _Spec, value, where: str, why: str | None = None):
    raise _Invalid(where, f"must be {spec.describe()}, got {_show(value)}" + (f" ({why})" if why else ""))


def _validate(spec: _Spec, value, where: str) -> None:
    """Check ``value`` against ``spec``; raise :class:`_Invalid` naming the first wrong field."""
    if value is None:
        if not spec.null:
            _fail(spec, value, where)
        return
    kind = spec.kind
    if kind in ("int", "num"):
        is_int = type(value) is int
        if not (is_int or (kind == "num" and type(value) is float)):
            _fail(spec, value, where)
        if kind == "num" and not math.isfinite(value):
            if spec.finite:
                _fail(spec, value, where)
            return
        if spec.lo is not None and (value < spec.lo or (spec.open_lo and value == spec.lo)):
            _fail(spec, value, where)
        if spec.hi is not None and (value > spec.hi or (spec.open_hi and value == spec.hi)):
            _fail(spec, value, where)
    elif kind == "str":
        if type(value) is not str:
            _fail(spec, value, where)
        if spec.max_len is not None and len(value) > spec.max_len:
            _fail(spec, value, where, f"{len(value):,} characters, at most {spec.max_len:,}")
        control = (_MULTILINE_CONTROL if spec.multiline else _CONTROL).search(value)
        if control:
            _fail(spec, value, where, f"it holds the control character {control.group()!r}")
        if spec.choices and value not in spec.choices:
            _fail(spec, value, where)
        if spec.name is not None:
            try:
                spec.name(value)
            except DigitnetError:
                _fail(spec, value, where)
    elif kind == "bool":
        if type(value) is not bool:
            _fail(spec, value, where)
    elif kind == "list":
        if type(value) is not list:
            _fail(spec, value, where)
        if len(value) < spec.min_len or (spec.max_len is not None and len(value) > spec.max_len):
            bound = f"at least {spec.min_len}" if len(value) < spec.min_len else f"at most {spec.max_len:,}"
            _fail(spec, value, where, f"{len(value):,} items, {bound}")
        for i, item in enumerate(value):
            _validate(spec.item, item, f"{where}[{i}]")
    elif kind == "obj":
        if type(value) is not dict:
            _fail(spec, value, where)
        for key in spec.required:
            if key not in value:
                raise _Invalid(f"{where}.{key}" if where else key, "is missing")
        for key, field in spec.fields.items():
            if key in value:
                _validate(field, value[key], f"{where}.{key}" if where else key)
    elif kind == "either":
        for alt in spec.alts:
            try:
                _validate(alt, value, where)
                return
            except _Invalid:
                continue
        _fail(spec, value, where)


# =========================================================================================
# Reading
# =========================================================================================

class _Entry:
    """One ``.npy`` member of the archive: its zip record, ``.npy`` header and data offset."""

    __slots__ = ("key", "info", "shape", "dtype", "offset")

    def __init__(self, key, info, shape, dtype, offset):
        self.key, self.info, self.shape, self.dtype, self.offset = key, info, shape, dtype, offset

    @property
    def size(self) -> int:
        return math.prod(self.shape)


# What zipfile, zlib and NumPy's .npy header parser raise on a damaged file.
_READ_ERRORS = (zipfile.BadZipFile, zipfile.LargeZipFile, zlib.error, EOFError, OSError, ValueError,
                KeyError, IndexError, TypeError, AttributeError, struct.error, OverflowError,
                SyntaxError, tokenize.TokenError, RecursionError, NotImplementedError, RuntimeError,
                MemoryError)


def _cannot_read(path, reason: str) -> ModelFileError:
    return ModelFileError(f"cannot read model file {path}: {reason}")


def _reason(exc: BaseException) -> str:
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, MemoryError):
        return "there is not enough memory to load it"
    if isinstance(exc, zipfile.BadZipFile) and "CRC" in str(exc):
        return "it is damaged (a checksum does not match)"
    return f"it is truncated or not a digitnet model ({type(exc).__name__})"


def _check_zip_directory(handle, path, file_size: int) -> None:
    """Bound the zip's central directory before :mod:`zipfile` turns it into Python objects.

    Finds the end record (and a zip64 end record) as :mod:`zipfile` does.
    """
    tail_len = min(file_size, 22 + 0xFFFF)
    handle.seek(file_size - tail_len)
    tail = handle.read(tail_len)
    if tail[-22:-18] == b"PK\x05\x06" and tail[-2:] == b"\0\0":
        pos = len(tail) - 22
    else:
        pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        raise _cannot_read(path, "it is truncated or not a digitnet model (not a zip archive)")
    n_entries, directory_bytes = struct.unpack("<10xHL", tail[pos:pos + 16])
    if pos >= 76 and tail[pos - 20:pos - 16] == b"PK\x06\x07" and tail[pos - 76:pos - 72] == b"PK\x06\x06":
        n_entries, directory_bytes = struct.unpack("<32xQQ", tail[pos - 76:pos - 28])
    if n_entries > MAX_ENTRIES or directory_bytes > MAX_DIRECTORY_BYTES:
        raise _cannot_read(path, f"its zip directory lists {n_entries:,} entries in {directory_bytes:,} "
                                 "bytes, far more than a digitnet model has: it is damaged or not a "
                                 "digitnet model")


def _entry_key(name: str) -> str | None:
    """``params.npy`` → ``params``; ``None`` for a name digitnet never writes."""
    if not name.endswith(".npy"):
        return None
    key = name[:-4]
    if key in ("header", "params") or (key.startswith("opt__") and key[5:].isidentifier()):
        return key
    return None


def _check_entry(info: zipfile.ZipInfo, key: str, file_size: int, path) -> None:
    """The zip record of one entry: readable, and no bigger than its compressed bytes allow."""
    if info.flag_bits & 0x1:
        raise _cannot_read(path, f"entry {key!r} is encrypted: not a digitnet model")
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        raise _cannot_read(path, f"entry {key!r} uses an unsupported compression (method "
                                 f"{info.compress_type}); digitnet writes plain or deflated entries")
    if info.header_offset < 0 or info.header_offset + info.compress_size > file_size:
        raise _cannot_read(path, f"entry {key!r} runs past the end of the file: it is truncated or "
                                 "not a digitnet model")
    stored = info.compress_type == zipfile.ZIP_STORED
    limit = info.compress_size if stored else MAX_DEFLATE_RATIO * info.compress_size + 1024
    if info.file_size > limit or (stored and info.file_size != info.compress_size):
        raise _cannot_read(path, f"entry {key!r} claims {info.file_size:,} bytes from "
                                 f"{info.compress_size:,} compressed ones, which no zip file can "
                                 f"hold: {_DAMAGED}")


def _read_npy_header(zf: zipfile.ZipFile, info: zipfile.ZipInfo, key: str, path) -> _Entry:
    """Parse one entry's ``.npy`` header without reading its data; check the entry's size."""
    with zf.open(info) as stream:
        major, minor = np.lib.format.read_magic(stream)
        if (major, minor) not in ((1, 0), (2, 0)):
            raise _cannot_read(path, f"entry {key!r} is a .npy version {major}.{minor} file; "
                                     "digitnet writes version 1.0")
        length_bytes = stream.read(2 if major == 1 else 4)
        length = int.from_bytes(length_bytes, "little")
        if len(length_bytes) != (2 if major == 1 else 4) or length > MAX_NPY_HEADER_BYTES:
            raise _cannot_read(path, f"entry {key!r} has a damaged .npy header ({length:,} bytes "
                                     f"long): {_DAMAGED}")
        text = stream.read(length)
    if len(text) != length:
        raise EOFError("the .npy header is cut short")
    reader = np.lib.format.read_array_header_1_0 if major == 1 else np.lib.format.read_array_header_2_0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")   # headers from Python 2 parse, with a warning we do not want
        shape, _fortran_order, dtype = reader(io.BytesIO(length_bytes + text))
    if dtype.hasobject:
        raise _cannot_read(path, f"entry {key!r} holds Python objects, not numbers: digitnet never "
                                 "loads pickled data")
    if any(n < 0 for n in shape):
        raise _cannot_read(path, f"entry {key!r} declares a negative shape {shape}: {_DAMAGED}")
    entry = _Entry(key, info, tuple(shape), dtype, np.lib.format.MAGIC_LEN + len(length_bytes) + length)
    needed = entry.offset + entry.size * dtype.itemsize
    if info.file_size != needed:
        raise _cannot_read(path, f"entry {key!r} declares {entry.size:,} values of {dtype} "
                                 f"({needed:,} bytes with its .npy header) but the zip directory says "
                                 f"{info.file_size:,} bytes: {_DAMAGED}")
    return entry


def _read_data(zf: zipfile.ZipFile, entry: _Entry) -> np.ndarray:
    """An entry's values: exactly the declared bytes, read in chunks into one new array."""
    out = np.empty(entry.shape, dtype=entry.dtype)
    buffer = out.reshape(-1).view(np.uint8)
    with zf.open(entry.info) as stream:
        if len(stream.read(entry.offset)) != entry.offset:
            raise EOFError("entry cut short")
        done, total = 0, buffer.size
        while done < total:
            chunk = stream.read(min(_READ_CHUNK, total - done))
            if not chunk:
                raise EOFError("entry cut short")
            buffer[done:done + len(chunk)] = np.frombuffer(chunk, dtype=np.uint8)
            done += len(chunk)
        if stream.read(1):
            raise zipfile.BadZipFile("entry longer than declared")
    if not out.dtype.isnative:
        out = out.astype(out.dtype.newbyteorder("="))
    return out


def _parse_int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise _Invalid("", f"holds a whole number with {digits:,} digits (Python reads at most "
                           f"{MAX_INT_DIGITS:,})")
    return int(text)


def _header_message(exc: _Invalid) -> str:
    where, message = exc.args
    return f"the model header's {where} {message}" if where else f"the model header {message}"


def _check_json_size(raw) -> None:
    """Bound the Python objects the JSON text (bytes or a uint8 array) can become, before parsing it."""
    if len(raw) > MAX_HEADER_BYTES:
        raise _Invalid("", f"is {len(raw):,} bytes, more than the {MAX_HEADER_BYTES:,} digitnet reads")
    codes = np.frombuffer(raw, dtype=np.uint8)
    items = sum(int(np.count_nonzero(codes == ord(c))) for c in ",:")
    containers = sum(int(np.count_nonzero(codes == ord(c))) for c in "{[")
    if items > MAX_JSON_ITEMS or containers > MAX_JSON_CONTAINERS:
        raise _Invalid("", f"holds too many values to read safely ({items:,} commas and colons, "
                           f"{containers:,} lists and objects; at most {MAX_JSON_ITEMS:,} and "
                           f"{MAX_JSON_CONTAINERS:,}, enough for a history of 40,000 epochs)")


def _parse_header(zf: zipfile.ZipFile, entry: _Entry, path) -> dict:
    """The JSON header, parsed within limits; its format and version checked."""
    if entry.dtype != np.uint8 or len(entry.shape) != 1:
        raise ModelFileError(f"{path}: the model header is damaged (a {entry.dtype} array of shape "
                             f"{entry.shape}, not text)")
    try:
        if entry.size > MAX_HEADER_BYTES:   # before reading it
            raise _Invalid("", f"is {entry.size:,} bytes, more than the {MAX_HEADER_BYTES:,} digitnet reads")
        raw = _read_data(zf, entry)
        _check_json_size(raw)
        text = str(memoryview(raw), "utf-8")
        del raw
        header = json.loads(text, parse_int=_parse_int)
    except UnicodeDecodeError:
        raise ModelFileError(f"{path}: the model header is damaged (not UTF-8 text)") from None
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path}: the model header is damaged (not valid JSON: {exc.msg} at "
                             f"character {exc.pos})") from None
    except _Invalid as exc:
        raise ModelFileError(f"{path}: {_header_message(exc)}: {_DAMAGED}") from None
    except RecursionError:
        raise ModelFileError(f"{path}: the model header is nested too deeply: {_DAMAGED}") from None
    if not isinstance(header, dict):
        raise ModelFileError(f"{path}: the model header is damaged (a JSON {type(header).__name__}, "
                             "not an object)")
    if header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a digitnet model file (format {_show(header.get('format'))})")
    version = header.get("format_version")
    if type(version) is not int or version < 1:
        raise ModelFileError(f"{path}: unknown model format version {_show(version)}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer digitnet (model format {version}; this digitnet "
            f"{__version__} reads format {FORMAT_VERSION}): upgrade digitnet to load it")
    return header


def _check_json_values(header: dict) -> None:
    """Every value of the header, known or not: its nesting depth, and text that can be printed.

    Walks with one iterator per open list or object, so its memory grows with the depth only.
    """
    stack = [iter((header,))]
    while stack:
        for value in stack[-1]:
            if isinstance(value, (dict, list)):
                if len(stack) > MAX_JSON_DEPTH:
                    raise _Invalid("", f"is nested more than {MAX_JSON_DEPTH} levels deep")
                if isinstance(value, dict):
                    for key in value:
                        _check_text(key)
                    value = value.values()
                stack.append(iter(value))
                break
            if isinstance(value, str):
                _check_text(value)
        else:
            stack.pop()


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _Invalid("", f"holds text that is not valid Unicode ({_show(text)})") from None


def _check_fields(header: dict) -> None:
    """The whole header: its values, :data:`HEADER_SCHEMA`, and how the fields depend on each other.

    Raises :class:`_Invalid`; saving and loading word it each their own way.
    """
    _check_json_values(header)
    _validate(HEADER_SCHEMA, header, "")
    _check_consistency(header)


def _check_consistency(header: dict) -> None:
    """What the schema cannot say: how the header's fields depend on each other."""
    config = header["config"]
    sizes, activations = config["sizes"], config["activations"]
    n_layers = len(sizes) - 1
    if len(activations) != n_layers:
        raise _Invalid("config.activations", f"lists {len(activations)} activations but layers {sizes} "
                                             f"need {n_layers}")
    if isinstance(config.get("init"), list) and len(config["init"]) != n_layers:
        raise _Invalid("config.init", f"lists {len(config['init'])} initializers for {n_layers} layers")
    n_params = _n_params(sizes)
    if n_params > MAX_PARAMS:
        raise _Invalid("config.sizes", f"{sizes} need {n_params:,} parameters, more than the "
                                       f"{MAX_PARAMS:,} digitnet loads")
    if "n_params" in header and header["n_params"] != n_params:
        raise _Invalid("n_params", f"is {header['n_params']} but layers {sizes} hold {n_params}")

    pre = header.get("preprocessing") or {}
    if "input_shape" in pre and math.prod(pre["input_shape"]) != sizes[0]:
        raise _Invalid("preprocessing.input_shape", f"{pre['input_shape']} does not match the "
                                                    f"network's {sizes[0]} inputs")
    n_classes = max(sizes[-1], 2)
    if "classes" in pre and len(pre["classes"]) != n_classes:
        raise _Invalid("preprocessing.classes", f"names {len(pre['classes'])} classes but the network "
                                                f"has {n_classes}")

    history = header.get("history") or {}
    epochs = [record["epoch"] for record in history.get("records") or []]
    if any(a >= b for a, b in zip(epochs, epochs[1:])):
        raise _Invalid("history.records", "do not list their epochs in increasing order")
    best = history.get("best_epoch")
    if best is not None and best not in set(epochs):
        raise _Invalid("history.best_epoch", f"{best} is not one of the recorded epochs")

    recipe = header.get("recipe") or {}
    if "optimizer" in header:
        name = header["optimizer"]["config"]["name"].lower()
        if "optimizer" in recipe and recipe["optimizer"].lower() != name:
            raise _Invalid("optimizer.config.name", f"is {name!r} but the recipe trains with "
                                                    f"{recipe['optimizer']!r}")


def _n_params(sizes) -> int:
    return sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))


class _BadArrays(Exception):
    """The arrays do not match the header: one message."""


def _check_arrays(header: dict, arrays: dict) -> None:
    """The dtype and shape of every array (declared, or real when saving) against the valid header.

    ``arrays`` maps entry names to anything with ``shape``, ``size`` and ``dtype``.
    """
    config = header["config"]
    sizes, n_params = config["sizes"], _n_params(config["sizes"])
    params = arrays["params"]
    if len(params.shape) != 1 or params.dtype.kind != "f" or params.dtype.itemsize not in (4, 8):
        raise _BadArrays(f"parameters have the wrong type {params.dtype}/{params.shape}: expected a flat "
                         "float32 or float64 array")
    if params.size != n_params:
        raise _BadArrays(f"the file holds {params.size} parameters but layers {sizes} need {n_params}")
    dtype = config.get("dtype", "float32")
    if params.dtype.name != dtype:
        raise _BadArrays(f"the parameters are {params.dtype.name} but the header says {dtype}")
    state = {key[5:] for key in arrays if key.startswith("opt__")}
    if "optimizer" not in header:
        if state:
            raise _BadArrays(f"the file holds optimiser state {sorted(state)} but its header names no "
                             "optimiser")
        return
    name = header["optimizer"]["config"]["name"].lower()
    if state - set(_OPTIMIZER_STATE[name]):
        raise _BadArrays(f"the file holds optimiser state {sorted(state)}, which {name} does not keep")
    if name == "adam" and len(state) == 1:
        raise _BadArrays("the file holds only one of Adam's moments m and s")
    for key in sorted(state):
        array = arrays[f"opt__{key}"]
        if array.shape != params.shape or array.dtype != params.dtype:
            raise _BadArrays(f"optimiser state {key!r} has the wrong shape or type ({array.dtype} "
                             f"{array.shape}; the parameters are {params.dtype} {params.shape})")


def _check_values(arrays: dict) -> None:
    """The numbers themselves: finite, and Adam's squared gradients not negative."""
    for key, values in arrays.items():
        if key != "header" and not np.isfinite(values).all():
            what = "weights" if key == "params" else f"optimiser state {key[5:]!r}"
            raise _BadArrays(f"the model's {what} contain NaN or infinity")
    if "opt__s" in arrays and (arrays["opt__s"] < 0).any():
        raise _BadArrays("the optimiser state 's' (Adam's squared gradients) holds negative numbers")


def read_model_file(path) -> tuple[dict, dict]:
    """Return ``(header, arrays)`` after checking the whole file.

    Checked, in this order, before any array is read: the zip structure, each
    entry's ``.npy`` header and size, every header field
    (:data:`HEADER_SCHEMA`) and the arrays' dtypes and shapes against the
    header, and that the header describes a network digitnet can build.
    ``arrays`` holds ``params`` and any ``opt__*`` optimiser state, finite,
    in native byte order.  Anything wrong raises :class:`ModelFileError`.
    """
    header, arrays, _ = _read(path)
    return header, arrays


def _read(path) -> tuple[dict, dict, Network]:
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist: train one with 'digitnet train --out {path}'")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    handle = _guarded(path, open, path, "rb")
    with handle:
        zf = _guarded(path, _open_archive, handle, path)
        with zf:
            entries = _guarded(path, _scan_entries, zf, os.fstat(handle.fileno()).st_size, path)
            header = _guarded(path, _parse_header, zf, entries.pop("header"), path)
            # Validation needs no guard: whatever it raises besides these is a bug to see.
            try:
                _check_fields(header)
            except _Invalid as exc:
                raise ModelFileError(f"{path}: {_header_message(exc)}: {_DAMAGED}") from None
            try:
                _check_arrays(header, entries)
            except _BadArrays as exc:
                raise ModelFileError(f"{path}: {exc}: {_DAMAGED}") from None
            try:
                network = _guarded(path, Network.from_config, header["config"])
            except ModelFileError:
                raise
            except DigitnetError as exc:   # e.g. a tanh output under a cross-entropy loss
                raise ModelFileError(f"{path}: the model header describes an invalid network "
                                     f"({exc})") from None
            arrays = {key: _guarded(path, _read_data, zf, entry) for key, entry in entries.items()}
    try:
        _guarded(path, _check_values, arrays)
    except _BadArrays as exc:
        raise ModelFileError(f"{path}: {exc}") from None
    network.params[...] = arrays["params"]
    network.metadata = header
    return header, arrays, network


def _guarded(path, function, *args):
    """``function(*args)``, with what a damaged file makes zipfile, zlib or NumPy raise as one line."""
    try:
        return function(*args)
    except (DigitnetError, _Invalid, _BadArrays):   # our own, already one line
        raise
    except _READ_ERRORS as exc:
        raise _cannot_read(path, _reason(exc)) from None


def _open_archive(handle, path) -> zipfile.ZipFile:
    file_size = os.fstat(handle.fileno()).st_size
    _check_zip_directory(handle, path, file_size)
    handle.seek(0)
    return zipfile.ZipFile(handle)


def _scan_entries(zf: zipfile.ZipFile, file_size: int, path) -> dict:
    """Every entry's zip record and ``.npy`` header checked; ``{key: _Entry}``."""
    infos = zf.infolist()
    if len(infos) > MAX_ENTRIES:
        raise _cannot_read(path, f"it holds {len(infos):,} entries: not a digitnet model")
    entries: dict[str, _Entry] = {}
    for info in infos:
        key = _entry_key(info.filename)
        if key is None:
            raise _cannot_read(path, f"it holds an entry {_show(info.filename)} that is not part of a "
                                     "digitnet model")
        if key in entries:
            raise _cannot_read(path, f"it holds the entry {key!r} twice: {_DAMAGED}")
        _check_entry(info, key, file_size, path)
        entries[key] = _read_npy_header(zf, info, key, path)
    if "header" not in entries or "params" not in entries:
        raise ModelFileError(f"{path} is not a digitnet model file (no header or parameters)")
    return entries


def load_model(path) -> Network:
    """Load a model file; the header is kept as ``network.metadata``."""
    network, _ = _load(path)
    return network


def load_checkpoint(path):
    """Load a checkpoint: ``(network, optimizer_state)``; the state is ``{}`` if none was saved."""
    return _load(path)


def _load(path):
    header, arrays, network = _read(path)
    state = {}
    if "optimizer" in header:
        state["steps"] = header["optimizer"].get("steps", 0)
        state["config"] = header["optimizer"]["config"]
        for key, value in arrays.items():
            if key.startswith("opt__"):
                state[key[5:]] = value
    return network, state
