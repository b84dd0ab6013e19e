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

Loading uses ``numpy.load(allow_pickle=False)``: a model file can hold
numbers and text, never code.  Saving writes a temporary file in the target
folder and renames it into place, so a crash or Ctrl-C never leaves a
half-written model behind (the rename is atomic on POSIX and Windows).
"""

from __future__ import annotations

import datetime as _dt
import json
import zipfile
from pathlib import Path

import numpy as np

from . import __version__
from .errors import DigitnetError, ModelFileError
from .fileio import atomic_write
from .network import Network

FORMAT = "digitnet-model"
FORMAT_VERSION = 1


def save_model(path, network: Network, *, recipe: dict | None = None,
               preprocessing: dict | None = None, history=None, optimizer=None,
               extra: dict | None = None) -> Path:
    """Write ``network`` (and, for checkpoints, ``optimizer``'s state) to ``path`` atomically.

    ``history`` is a :class:`~digitnet.training.History` or its ``to_dict()``.
    ``extra`` is merged into the header (JSON-serialisable values only).
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
    except (TypeError, ValueError) as exc:
        raise DigitnetError(f"cannot save model: header is not JSON-serialisable ({exc})") from None
    arrays["header"] = np.frombuffer(header_bytes, dtype=np.uint8)
    path = Path(path)
    if path.is_dir():
        raise DigitnetError(f"cannot write {path}: it is a folder; give a file name such as {path / 'model.npz'}")
    return atomic_write(path, lambda f: np.savez(f, **arrays), "model file")


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


def read_model_file(path) -> tuple[dict, dict]:
    """Return ``(header, arrays)`` after checking the file's structure (not the shapes)."""
    path = Path(path)
    if not path.exists():
        raise ModelFileError(f"model file {path} does not exist: train one with 'digitnet train --out {path}'")
    if path.is_dir():
        raise ModelFileError(f"{path} is a folder, not a model file")
    try:
        with np.load(path, allow_pickle=False) as archive:
            arrays = {key: archive[key] for key in archive.files}
    except (zipfile.BadZipFile, EOFError, OSError, ValueError, KeyError, TypeError) as exc:
        # TypeError: a bare .npy file loads as an ndarray, which is no context manager
        reason = "it is truncated or not a digitnet model" if not isinstance(exc, PermissionError) \
            else "permission denied"
        raise ModelFileError(f"cannot read model file {path}: {reason} ({type(exc).__name__})") from None
    if "header" not in arrays or "params" not in arrays:
        raise ModelFileError(f"{path} is not a digitnet model file (no header or parameters)")
    try:
        header = json.loads(arrays.pop("header").tobytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ModelFileError(f"{path}: the model header is damaged (not valid JSON)") from None
    if not isinstance(header, dict) or header.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not a digitnet model file (format {header.get('format')!r})"
                             if isinstance(header, dict) else f"{path}: the model header is damaged")
    version = header.get("format_version")
    if not isinstance(version, int) or version < 1:
        raise ModelFileError(f"{path}: unknown model format version {version!r}")
    if version > FORMAT_VERSION:
        raise ModelFileError(
            f"{path} was written by a newer digitnet (model format {version}; this digitnet "
            f"{__version__} reads format {FORMAT_VERSION}): upgrade digitnet to load it")
    return header, arrays


def load_model(path) -> Network:
    """Load a model file; the header is kept as ``network.metadata``."""
    network, _ = _load(path)
    return network


def load_checkpoint(path):
    """Load a checkpoint: ``(network, optimizer_state)``; the state is ``{}`` if none was saved."""
    return _load(path)


def _load(path):
    header, arrays = read_model_file(path)
    config = header.get("config")
    if not isinstance(config, dict) or "sizes" not in config or "activations" not in config:
        raise ModelFileError(f"{path}: the model header has no usable layer description")
    params = arrays["params"]
    if params.dtype.kind != "f" or params.ndim != 1:
        raise ModelFileError(f"{path}: parameters have the wrong type {params.dtype}/{params.shape}")
    # Count the parameters the header implies before building anything, so a
    # damaged header with absurd sizes fails here rather than in a huge allocation.
    sizes = config["sizes"]
    if (not isinstance(sizes, list) or len(sizes) < 2
            or not all(isinstance(s, int) and s >= 1 for s in sizes)):
        raise ModelFileError(f"{path}: the model header's layer sizes {sizes!r} are not valid")
    expected = sum(n_in * n_out + n_out for n_in, n_out in zip(sizes[:-1], sizes[1:]))
    if expected != params.size:
        raise ModelFileError(
            f"{path}: the file holds {params.size} parameters but layers {sizes} need "
            f"{expected}: the file is damaged or was edited")
    try:
        network = Network.from_config(config)
    except DigitnetError as exc:
        raise ModelFileError(f"{path}: the model header describes an invalid network ({exc})") from None
    if params.shape != network.params.shape:
        raise ModelFileError(
            f"{path}: the file holds {params.size} parameters but layers {network.sizes} need "
            f"{network.n_params}: the file is damaged or was edited")
    if not np.isfinite(params).all():
        raise ModelFileError(f"{path}: the model's weights contain NaN or infinity")
    network.params[...] = params
    network.metadata = header
    state = {}
    if "optimizer" in header:
        if not isinstance(header["optimizer"], dict):
            raise ModelFileError(f"{path}: the optimiser state in the model header is damaged")
        state["steps"] = header["optimizer"].get("steps", 0)
        state["config"] = header["optimizer"].get("config", {})
        for key, value in arrays.items():
            if key.startswith("opt__"):
                if value.shape != network.params.shape:
                    raise ModelFileError(f"{path}: optimiser state {key[5:]!r} has the wrong shape")
                state[key[5:]] = value
    return network, state
