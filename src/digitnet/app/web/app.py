"""The HTTP side of the drawing page: a FastAPI app around one trained network.

Routes (all JSON bodies are UTF-8; every error answer is ``{"detail": "<one
line saying what is wrong>"}`` with a 4xx status, never a 500 for bad input):

``GET /``
    The drawing page (``static/index.html``); ``/static/*`` its script and style.
``POST /api/predict``
    Body: the canvas as an image (``Content-Type: image/png``, or any
    ``image/*``; any format :func:`digitnet.app.imaging.read_image` reads) **or**
    JSON ``{"pixels": [784 numbers in 0..1], "preprocess": false}`` -- a 28x28
    digit, row by row (or 28 rows of 28), ink = 1 on background 0, as the
    network takes it (``preprocess: true`` runs MNIST's normalisation on it
    first).  Images go through :func:`digitnet.app.imaging.preprocess_image`, the
    same code as ``digitnet predict``.  Answer (schema ``Prediction``)::

        {"blank": false, "digit": 7, "label": "7", "confidence": 0.98,
         "probabilities": [10 floats], "input": [784 floats in 0..1],
         "activations": [[n_1 floats], ..., [n_{L-1} floats]]}

    A blank drawing (an image of one colour; pixels of which none reaches
    ``MIN_CONTRAST``, 0.1) is ``422 {"detail": "the image is blank: ...",
    "blank": true}``.
``POST /api/predict/batch``
    Up to 200 digits at once, as JSON ``{"images": [[784 numbers], ...]}``
    or as a multipart/form-data form of ``images`` parts; one answer or
    one error per image, in order (see :mod:`digitnet.app.web.batch`).
``GET /api/sample?index=I``
    Test digit ``I`` (0 to count - 1, in plain digits; random when omitted)
    of the model's data set: ``{"index", "label", "pixels": [784], "count",
    "dataset"}``.
``GET /api/model``
    The model: layers, parameter count, recipe, preprocessing and its accuracy
    on the test set (measured on first request).
``GET /openapi.json``
    The OpenAPI 3.1 schema (:func:`openapi_document`).  It states every rule
    the handlers enforce -- lengths, ranges, the size of the test set, the
    content types, every status each route answers -- so that a request
    that follows it is accepted and one that breaks it gets a 4xx; the
    tests check this with Schemathesis.  The interactive ``/docs`` pages are
    switched off: they load their scripts from a CDN, and this server loads
    nothing from outside.

Limits: request bodies over ``max_body_bytes`` (1 MB) are refused with 413,
checked against Content-Length before reading and again while the body
streams in; images wider or taller than ``max_image_side`` (2000 px) are
refused from their header, before any pixel is decoded.
"""

from __future__ import annotations

import json
import logging
import math
import random
import re
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digitnet import __version__
from digitnet.app import imaging
from digitnet.errors import BlankImageError, DataError, DigitnetError, ImageError
from digitnet.files.modelfile import class_names, input_scale, to_network_inputs
from digitnet.nn.network import Network

__all__ = ["MAX_BODY_BYTES", "MAX_IMAGE_SIDE", "ApiError", "create_app"]

logger = logging.getLogger("digitnet.app.web")

#: Largest request body accepted, in bytes.  A 280x280 canvas PNG is a few KB.
MAX_BODY_BYTES = 1_000_000
#: Largest image width or height accepted by the web API (the library allows 4096).
MAX_IMAGE_SIDE = 2000
#: Side of the square images the network reads.
SIDE = 28
N_PIXELS = SIDE * SIDE
#: Data sets whose test images /api/sample can serve; other models get MNIST's.
SAMPLE_DATASETS = ("mnist", "fashion-mnist", "kmnist")

STATIC_DIR = Path(__file__).resolve().parent / "static"

# Sent with every answer: the page may load only from this server (no CDN, no
# inline script), and nothing here is to be cached stale.
_EXTRA_HEADERS = [
    (b"content-security-policy",
     (b"default-src 'self'; img-src 'self' data: blob:; object-src 'none'; "
      b"base-uri 'none'; frame-ancestors 'none'; form-action 'self'")),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
    (b"cache-control", b"no-cache"),
]

_IMAGE_OR_JSON = (
    'send the drawing as "Content-Type: image/png", or JSON {"pixels": [784 numbers in 0..1]} '
    'as "Content-Type: application/json"'
)


# --------------------------------------------------------------------------
# Errors


class ApiError(Exception):
    """A request the API refuses: HTTP ``status`` and a one-line ``detail``.

    ``extra`` fields are added to the JSON answer (``blank=True`` for a blank
    drawing, so the page can tell "nothing drawn yet" from a real error).
    """

    def __init__(self, status: int, detail: str, **extra: Any):
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.extra = extra


def one_line(text: str) -> str:
    """``text`` with its lines joined by spaces: error answers are one line."""
    parts = [line.strip() for line in str(text).splitlines() if line.strip()]
    return " ".join(parts) or "bad request"


def _is_blank_error(exc: ImageError) -> bool:
    return isinstance(exc, BlankImageError)


# --------------------------------------------------------------------------
# The OpenAPI document
#
# Written out by hand rather than derived from the handlers' signatures: the
# handlers check more than Python types can say (784 numbers in 0..1 with
# some ink among them, an index below the size of the test set), and the
# schema states every one of those rules, so that a client -- or a fuzzer --
# that follows it is never refused, and one that breaks it always is.

#: The parts of the schema that do not depend on the model or the data set.
_PIXEL = {"type": "number", "minimum": 0, "maximum": 1}
#: A pixel with enough ink to count: a drawing needs at least one (else it is blank).
_INKED_PIXEL = {"type": "number", "minimum": imaging.MIN_CONTRAST, "maximum": 1}


def _number_list(n: int, item: dict, description: str | None = None) -> dict:
    schema = {"type": "array", "minItems": n, "maxItems": n, "items": item}
    if description:
        schema["description"] = description
    return schema


def _error_schema() -> dict:
    return {
        "type": "object",
        "title": "Error",
        "description": "Every refusal (4xx): one line saying what is wrong and what to do.",
        "required": ["detail"],
        "additionalProperties": False,
        "properties": {
            "detail": {"type": "string", "minLength": 1, "pattern": "^[^\\r\\n]+$",
                       "description": "one line: what is wrong and what to do"},
            "blank": {"const": True, "description": "present (true) only when the drawing is blank"},
        },
    }


def _pixels_request_schema() -> dict:
    ink = (f"at least one pixel must be {imaging.MIN_CONTRAST:g} or more, "
           "or the drawing is blank (422 with \"blank\": true)")
    flat = _number_list(N_PIXELS, _PIXEL, f"{N_PIXELS} numbers in 0..1, row by row; {ink}")
    flat["contains"] = _INKED_PIXEL
    rows = _number_list(SIDE, _number_list(SIDE, _PIXEL), f"{SIDE} rows of {SIDE} numbers in 0..1; {ink}")
    rows["contains"] = {"type": "array", "contains": _INKED_PIXEL}
    return {
        "type": "object",
        "title": "PixelsRequest",
        "description": "A 28x28 digit, ink = 1 on background 0, as MNIST stores it.  No other fields.",
        "required": ["pixels"],
        "additionalProperties": False,
        "properties": {
            "pixels": {"anyOf": [flat, rows],
                       "description": "the digit, row by row: 784 numbers, or 28 rows of 28"},
            "preprocess": {"type": "boolean", "default": False,
                           "description": "run MNIST's normalisation (crop, 20x20 box, centre of mass) first"},
        },
    }


def _prediction_schema(reader: "_Reader") -> dict:
    n_classes = len(reader.classes)
    hidden = list(reader.network.sizes[1:-1])
    return {
        "type": "object",
        "title": "Prediction",
        "required": ["blank", "digit", "label", "confidence", "probabilities", "input", "activations"],
        "additionalProperties": False,
        "properties": {
            "blank": {"const": False, "description": "always false here; blank drawings get a 422"},
            "digit": {"type": "integer", "minimum": 0, "maximum": n_classes - 1,
                      "description": "index of the most likely class (the digit itself for MNIST)"},
            "label": {"type": "string", "enum": sorted(set(reader.classes)),
                      "description": "that class's name from the model file, e.g. \"7\""},
            "confidence": {**_PIXEL, "description": "probability of that class"},
            "probabilities": _number_list(n_classes, _PIXEL, "one probability per class, summing to 1"),
            "input": _number_list(N_PIXELS, _PIXEL, "the 28x28 image the network received, row by row, "
                                                     "in 0..1 (before the model's input scale)"),
            "activations": {
                # One list per hidden layer, of that layer's size.  (prefixItems
                # would pin each list's length to its place, but not every
                # OpenAPI tool reads it yet.)
                "type": "array", "minItems": len(hidden), "maxItems": len(hidden),
                "items": {"anyOf": [_number_list(n, {"type": "number"}) for n in sorted(set(hidden))]}
                if hidden else {"type": "array"},
                "description": "each hidden layer's activations, first hidden layer first "
                               f"({', '.join(map(str, hidden)) or 'no hidden layers'} units)",
            },
        },
    }


def _sample_schema(dataset: str, count: int | None) -> dict:
    index = {"type": "integer", "minimum": 0}
    if count is not None:
        index["maximum"] = count - 1
    return {
        "type": "object",
        "title": "Sample",
        "required": ["index", "label", "pixels", "count", "dataset"],
        "additionalProperties": False,
        "properties": {
            "index": index,
            "label": {"type": "integer", "minimum": 0},
            "pixels": _number_list(N_PIXELS, _PIXEL, "the test image in 0..1, row by row, ink = 1"),
            "count": ({"const": count} if count is not None else {"type": "integer", "minimum": 1})
            | {"description": "number of test images"},
            "dataset": {"const": dataset},
        },
    }


def _model_schema() -> dict:
    count = {"type": "integer", "minimum": 0}
    names = {"type": "array", "items": {"type": "string"}}
    from_file = "as the model file's header has it"
    return {
        "type": "object",
        "title": "Model",
        "required": ["path", "sizes", "hidden_layers", "activations", "loss", "dtype", "n_params", "layers",
                     "classes", "input_scale", "preprocessing", "recipe", "created", "digitnet_version",
                     "history", "accuracy"],
        "additionalProperties": False,
        "properties": {
            "path": {"type": ["string", "null"], "description": "the model file, when it came from one"},
            "sizes": {"type": "array", "minItems": 2, "items": {"type": "integer", "minimum": 1}},
            "hidden_layers": {"type": "array", "items": {"type": "integer", "minimum": 1}},
            "activations": names,
            "loss": {"type": "string"},
            "dtype": {"type": "string"},
            "n_params": count,
            "layers": {"type": "array", "items": {
                "type": "object",
                "required": ["index", "n_in", "n_out", "activation", "init", "params"],
                "additionalProperties": False,
                "properties": {"index": {"type": "integer", "minimum": 1}, "n_in": count, "n_out": count,
                               "activation": {"type": "string"}, "init": {"type": "string"},
                               "params": count},
            }},
            "classes": names,
            "input_scale": {"enum": ["unit", "symmetric"]},
            "preprocessing": {"type": "object", "description": from_file},
            "recipe": {"description": from_file},
            "created": {"description": from_file},
            "digitnet_version": {"description": from_file},
            "history": {"type": ["object", "null"], "description": "the last epoch's record, if saved"},
            "accuracy": {
                "type": "object",
                "required": ["test", "dataset", "n_test"],
                "additionalProperties": False,
                "properties": {
                    "test": {"type": ["number", "null"], "minimum": 0, "maximum": 1,
                             "description": "accuracy on the whole test set; null when it is unavailable"},
                    "dataset": {"type": "string"},
                    "n_test": count,
                    "reason": {"type": "string", "description": "why test is null"},
                },
            },
        },
    }


def _json_answer(ref: str, description: str) -> dict:
    return {"description": description,
            "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{ref}"}}}}


def openapi_document(reader: "_Reader", *, dataset: str, count: int | None,
                     max_body_bytes: int, max_image_side: int) -> dict:
    """The OpenAPI 3.1 document of the API served for ``reader``'s model.

    ``count`` is the number of test images ``/api/sample`` serves (None when
    the data set cannot be loaded: every sample is then a 503).
    """
    error = "Error"
    image = {
        # The size limit is on the body's bytes (x-max-body-bytes), which JSON
        # Schema's maxLength, a count of characters, does not measure.
        "schema": {"type": "string", "format": "binary", "minLength": 1},
        "x-max-body-bytes": max_body_bytes,
        "x-max-image-side": max_image_side,
        "description": (
            f"The image file's bytes, 1 to {max_body_bytes:,} of them, in a format the server reads ("
            f"{', '.join(imaging.SUPPORTED_FORMATS)}), whichever image/* type is named; at most "
            f"{max_image_side} pixels wide and tall; with a digit in it: an image of one colour is blank "
            "(a 422 with \"blank\": true), which JSON Schema has no words for."),
    }
    last_index = "" if count is None else f" to {count - 1}"
    index_rule = f"a whole number from 0{last_index}, in plain digits"
    document = {
        "openapi": "3.1.0",
        "info": {
            "title": "digitnet",
            "version": __version__,
            "description": (
                "Draw a digit; a from-scratch NumPy network reads it.  Every refusal is a 4xx with "
                "one line, {\"detail\": \"...\"}; request bodies over "
                f"{max_body_bytes:,} bytes are a 413."),
        },
        "paths": {
            "/api/predict": {"post": {
                "summary": "Read the digit in an image or a 28x28 pixel array",
                "operationId": "predict_api_predict_post",
                "description": (
                    f"The body is an image (Content-Type image/*) or JSON (application/json), at most "
                    f"{max_body_bytes:,} bytes (x-max-body-bytes): larger is a 413, any other Content-Type "
                    "a 415, an empty or unparseable body a 400."),
                "x-max-body-bytes": max_body_bytes,
                "requestBody": {"required": True, "content": {
                    "image/png": image,
                    "image/*": image,
                    "application/json": {
                        "schema": {"$ref": "#/components/schemas/PixelsRequest"},
                        "x-max-body-bytes": max_body_bytes,
                        "description": "UTF-8 JSON (any application/*+json type is read the same way)",
                    },
                }},
                "responses": {
                    "200": _json_answer("Prediction", "what the network reads"),
                    "400": _json_answer(error, "an empty body; JSON that does not parse; a Content-Length "
                                               "that is not a number"),
                    "413": _json_answer(error, f"a body over {max_body_bytes:,} bytes"),
                    "415": _json_answer(error, "a Content-Type neither image/* nor application/json"),
                    "422": _json_answer(error, "JSON outside the schema; an image that cannot be decoded, "
                                               f"or over {max_image_side} pixels on a side; a blank drawing "
                                               "(\"blank\": true)"),
                },
            }},
            "/api/sample": {"get": {
                "summary": "A test digit to compare with",
                "operationId": "sample_api_sample_get",
                "parameters": [{
                    "name": "index", "in": "query", "required": False,
                    "description": f"which test image ({index_rule}); random when left out",
                    "schema": _sample_schema(dataset, count)["properties"]["index"],
                }],
                "responses": {
                    "200": _json_answer("Sample", f"test image `index` of the {dataset} test set"),
                    "422": _json_answer(error, f"an index that is not {index_rule}, or given more than once"),
                    "503": _json_answer(error, f"the {dataset} test set cannot be loaded"),
                },
            }},
            "/api/model": {"get": {
                "summary": "What model is serving",
                "operationId": "model_api_model_get",
                "responses": {"200": _json_answer("Model", "the model and its accuracy on the test set")},
            }},
        },
        "components": {"schemas": {
            "PixelsRequest": _pixels_request_schema(),
            "Prediction": _prediction_schema(reader),
            "Sample": _sample_schema(dataset, count),
            "Model": _model_schema(),
            error: _error_schema(),
        }},
    }
    from .batch import add_to_openapi  # POST /api/predict/batch (batch.py)

    return add_to_openapi(document, reader, max_body_bytes=max_body_bytes, max_image_side=max_image_side)


# --------------------------------------------------------------------------
# The model behind the API


class _Reader:
    """A network plus what its file says about its input; answers predictions."""

    def __init__(self, network: Network, model_path: str | None):
        if not isinstance(network, Network):
            raise TypeError(f"create_app() needs a digitnet Network, got {type(network).__name__}")
        if network.sizes[0] != N_PIXELS:
            raise DigitnetError(
                f"the drawing page needs a model with {N_PIXELS} inputs (28x28 images), "
                f"but this one has {network.sizes[0]}")
        if network.sizes[-1] < 2:
            raise DigitnetError("the drawing page needs a model with one output per class (at least 2)")
        self.network = network
        self.model_path = model_path
        metadata = network.metadata if isinstance(network.metadata, dict) else {}
        self.metadata = metadata
        preprocessing = metadata.get("preprocessing") or {}
        self.preprocessing = preprocessing if isinstance(preprocessing, dict) else {}
        self.scale = input_scale(network)
        self.classes = class_names(network)
        self.softmax_output = network.activations[-1].name == "softmax"
        dataset = self.preprocessing.get("dataset", "mnist")
        self.dataset = dataset if dataset in SAMPLE_DATASETS else "mnist"

    def network_input(self, x: np.ndarray) -> np.ndarray:
        """Images ``(n, 784)`` in [0, 1] -> the network's input scale (preprocessing contract)."""
        return to_network_inputs(self.network, x)

    def answer(self, x: np.ndarray) -> dict:
        """The prediction for one image ``x`` ``(784,)`` in [0, 1], as the API's JSON dict."""
        layers = self.network.forward(self.network_input(x.reshape(1, N_PIXELS)))
        probabilities = self.probabilities(layers[-1])[0]
        top = int(np.argmax(probabilities))
        return {
            "blank": False,
            "digit": top,
            "label": self.classes[top],
            "confidence": float(probabilities[top]),
            "probabilities": probabilities.tolist(),
            "input": _rounded(x, 4),
            "activations": [_rounded(a[0], 4) for a in layers[1:-1]],
        }

    def probabilities(self, out: np.ndarray) -> np.ndarray:
        """Output rows ``(n, classes)`` -> the probabilities the API reports (float64, 6 places)."""
        out = out.astype(np.float64)
        if not self.softmax_output:
            # Sigmoid outputs (Nielsen's network) need not sum to 1: show
            # their shares, which keeps the ranking.
            positive = np.clip(out, 0.0, None)
            total = positive.sum(axis=1, keepdims=True)
            out = np.where(total > 0, positive / np.where(total > 0, total, 1.0), 1 / out.shape[1])
        return np.round(out, 6)

    def describe(self) -> dict:
        """Everything ``/api/model`` says except the measured accuracy."""
        net = self.network
        layers = [
            {"index": l, "n_in": int(W.shape[1]), "n_out": int(W.shape[0]),
             "activation": act.name, "init": net.init[l - 1], "params": int(W.size + W.shape[0])}
            for l, (W, act) in enumerate(zip(net.weights, net.activations), start=1)
        ]
        meta = self.metadata
        return {
            "path": self.model_path,
            "sizes": list(net.sizes),
            "hidden_layers": list(net.sizes[1:-1]),
            "activations": [a.name for a in net.activations],
            "loss": net.loss.name,
            "dtype": net.dtype.name,
            "n_params": int(net.n_params),
            "layers": layers,
            "classes": self.classes,
            "input_scale": self.scale,
            "preprocessing": self.preprocessing,
            "recipe": meta.get("recipe") or {},
            "created": meta.get("created"),
            "digitnet_version": meta.get("digitnet_version", __version__),
            "history": _history_summary(meta.get("history")),
        }


def _rounded(a: np.ndarray, decimals: int) -> list:
    """A float array as a list of Python floats with few digits (smaller JSON)."""
    return np.round(np.asarray(a, dtype=np.float64), decimals).tolist()


def _json_safe(value: Any) -> Any:
    """``value`` with NaN and infinities (allowed in model headers) turned into None.

    Strict JSON has no NaN, and Starlette refuses to encode it.
    """
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value


def _history_summary(history: Any) -> dict | None:
    """The last epoch's record of a saved training history, if there is one."""
    if not isinstance(history, dict):
        return None
    records = history.get("records")
    if not isinstance(records, list) or not records or not isinstance(records[-1], dict):
        return None
    last = records[-1]
    keys = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy")
    return {"epochs": len(records), **{k: last.get(k) for k in keys if k in last}}


class _TestSet:
    """The test images for /api/sample and the accuracy figure, loaded on first use."""

    def __init__(self, dataset: str):
        self.dataset = dataset
        self._lock = threading.Lock()
        self._data: tuple[np.ndarray, np.ndarray] | None = None

    def get(self) -> tuple[np.ndarray, np.ndarray]:
        """``(X (n, 784) float32 in [0, 1], y (n,) int64)``; raises ApiError 503 if unavailable."""
        with self._lock:
            if self._data is None:
                from digitnet import data

                try:
                    if self.dataset == "mnist":
                        X, y = data.load_mnist("test", scale="unit")
                    else:
                        ds = data.load(self.dataset, scale="unit")
                        X, y = ds.X_test, ds.y_test
                except DataError as exc:
                    raise ApiError(503, f"the {self.dataset} test set is not available: {one_line(exc)}") from None
                self._data = (X, y)
            return self._data


# --------------------------------------------------------------------------
# Reading a request


def _media_type(request: Request) -> str:
    return request.headers.get("content-type", "").split(";", 1)[0].strip().lower()


#: Work done on the event loop itself rather than in a worker thread: images
#: of at most this many pixels (the page's canvas has 78,400) ...
INLINE_MAX_PIXELS = 512 * 512
#: ... and JSON bodies of at most this many bytes (784 numbers take ~2-20 KB).
INLINE_MAX_JSON_BYTES = 65_536


def _small_work(body: bytes, is_json: bool) -> bool:
    """Whether answering ``body`` is quick enough to do on the event loop (about a millisecond)."""
    if is_json:
        return len(body) <= INLINE_MAX_JSON_BYTES
    size = imaging.image_size(body)  # from the header: nothing is decoded
    return size is None or size[0] * size[1] <= INLINE_MAX_PIXELS  # None: refused at once


async def _read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing more than ``limit`` bytes (413).

    Content-Length is checked first so an honest large upload is refused
    without reading it; the streamed length is checked too, for chunked
    uploads that declare no length.
    """
    declared = request.headers.get("content-length")
    too_large = f"the request body is larger than the {limit:,}-byte limit; send a smaller image"
    if declared is not None:
        try:
            n_declared = int(declared)
        except ValueError:
            raise ApiError(400, f"Content-Length {declared!r} is not a number") from None
        if n_declared > limit:
            raise ApiError(413, too_large)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise ApiError(413, too_large)
    except ClientDisconnect:
        # Nobody will read the answer; still not a server bug.
        raise ApiError(400, "the client disconnected before sending the whole body") from None
    return bytes(body)


def _json_type(value: Any) -> str:
    """JSON's name for a parsed value's type, for error messages."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "an object"
    return "a number"


def _parse_json(body: bytes, hint: str = _IMAGE_OR_JSON) -> Any:
    """The parsed JSON body; ApiError 400 (ending with ``hint``) when it does not parse."""
    try:
        return json.loads(body)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}); {hint}") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, absurd nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "not UTF-8 text"
        raise ApiError(400, f"the body is not valid JSON ({reason}); {hint}") from None


def _pixels_from_json(body: bytes) -> tuple[np.ndarray, bool]:
    """Parse ``{"pixels": [...], "preprocess": bool}``; returns ``(x (784,) float64, preprocess)``."""
    payload = _parse_json(body)
    shape_hint = 'expected a JSON object {"pixels": [784 numbers in 0..1]}'
    if not isinstance(payload, dict):
        raise ApiError(422, f"{shape_hint}, got {_json_type(payload)}")
    unknown = sorted(set(payload) - {"pixels", "preprocess"})
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; {shape_hint}")
    if "pixels" not in payload:
        raise ApiError(422, f'the "pixels" field is missing; {shape_hint}')
    preprocess = payload.get("preprocess", False)
    if not isinstance(preprocess, bool):
        raise ApiError(422, f'"preprocess" must be true or false, got {_json_type(preprocess)}')
    return _check_pixels(payload["pixels"]), preprocess


def _check_pixels(pixels: Any, name: str = '"pixels"', element: str = "pixels") -> np.ndarray:
    """One digit's pixels as JSON gave them -> float64 ``(784,)``; ApiError 422 unless valid.

    ``name`` and ``element`` say where they were in the messages (``"pixels"``
    and ``pixels[i]`` for /api/predict, ``images[k]`` and ``images[k][i]`` in a batch).
    """
    if not isinstance(pixels, list):
        raise ApiError(422, f'{name} must be a list of {N_PIXELS} numbers, got {_json_type(pixels)}')
    if len(pixels) == SIDE and all(isinstance(row, list) for row in pixels):
        lengths = [len(row) for row in pixels]
        if any(n != SIDE for n in lengths):
            bad = next(i for i, n in enumerate(lengths) if n != SIDE)
            raise ApiError(422, f'{name} as rows needs 28 rows of 28 numbers; row {bad} has {lengths[bad]}')
        pixels = [v for row in pixels for v in row]
    if len(pixels) != N_PIXELS:
        raise ApiError(422, f'{name} must hold {N_PIXELS} numbers (28x28, row by row), got {len(pixels)}')
    for i, v in enumerate(pixels):
        # bool is an int in Python but not a number in JSON; huge integers
        # would overflow float conversion, so range-check before converting.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ApiError(422, f"{element}[{i}] is {_json_type(v)}, not a number; every pixel must be 0..1")
        if isinstance(v, float) and not math.isfinite(v):
            raise ApiError(422, f"{element}[{i}] is {v}: every pixel must be a finite number from 0 to 1")
        if not 0 <= v <= 1:
            shown = f"{v:g}" if isinstance(v, float) or abs(v) < 10**12 else "a huge integer"
            raise ApiError(422, f"{element}[{i}] is {shown}, outside 0..1; divide 8-bit values by 255")
    # float64: the blank test compares the numbers as sent, not their float32 roundings.
    return np.asarray(pixels, dtype=np.float64)


def _blank(detail: str) -> ApiError:
    return ApiError(422, one_line(detail), blank=True)


def _image_input(body: bytes, max_side: int) -> np.ndarray:
    """An uploaded image -> ``(784,)`` float32 in [0, 1], via ``digitnet predict``'s code."""
    try:
        return imaging.preprocess_image(body, max_side=max_side)
    except ImageError as exc:
        if _is_blank_error(exc):
            raise _blank(str(exc)) from None
        raise


def _pixel_input(x: np.ndarray, preprocess: bool) -> np.ndarray:
    """JSON pixels ``(784,)`` float64 -> the network's image, optionally normalised like MNIST.

    Blank means what the schema says: no pixel reaches ``MIN_CONTRAST``.  The
    pixels are ink = 1 on background 0 by contract, so the normalisation is
    told so (a frame of background around them, no polarity guess) rather
    than left to guess the background from the border, which could call a
    drawing with ink blank.
    """
    if float(x.max()) < imaging.MIN_CONTRAST:
        raise _blank("the image is blank: no pixel reaches "
                     f"{imaging.MIN_CONTRAST:g}; draw a digit first")
    image = x.astype(np.float32).reshape(SIDE, SIDE)
    if not preprocess:
        return image.reshape(N_PIXELS)
    framed = np.pad(image, 1)
    try:
        return imaging.mnist_preprocess(framed, invert=False).reshape(N_PIXELS)
    except ImageError as exc:  # not expected after the check above; still a refusal, not a bug
        if _is_blank_error(exc):
            raise _blank(str(exc)) from None
        raise


_WHOLE_NUMBER = re.compile(r"-?(0|[1-9][0-9]*)")


def _parse_index(text: str) -> int:
    """``?index=`` as sent -> an int; ApiError 422 unless it is a whole number in plain digits.

    A minus sign is allowed (so that -1 is told it is out of range); spaces,
    "+", leading zeros, "_" and "5.0", which a looser parser would take, are
    not: the schema's integer does not allow them.  The range is checked by
    the caller, which knows the size of the test set.
    """
    if not _WHOLE_NUMBER.fullmatch(text):
        shown = text if len(text) <= 40 else text[:40] + "..."
        raise ApiError(422, f"index must be a whole number written in plain digits, got {shown!r}")
    # Far beyond any test set; int() of thousands of digits is slow or refused.
    return int(text) if len(text) <= 20 else (-1 if text[0] == "-" else 10**20)


# --------------------------------------------------------------------------
# Plumbing: headers and error answers


class _ExtraHeaders:
    """ASGI middleware adding :data:`_EXTRA_HEADERS` to every response."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message = {**message, "headers": [*message.get("headers", []), *_EXTRA_HEADERS]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


def _error_answer(status: int, detail: str, headers: dict | None = None, **extra) -> JSONResponse:
    return JSONResponse({"detail": one_line(detail), **extra}, status_code=status, headers=headers)


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: ApiError):
        return _error_answer(exc.status, exc.detail, **exc.extra)

    async def digitnet_error(request: Request, exc: DigitnetError):
        # ImageError, DataError, ...: the input could be read but not used.
        return _error_answer(422, str(exc))

    async def validation_error(request: Request, exc: RequestValidationError):
        errors = exc.errors()
        if not errors:
            return _error_answer(422, "invalid request")
        first = errors[0]
        loc = [str(p) for p in first.get("loc", ())]
        where = f"{loc[0]} parameter {loc[-1]}" if len(loc) >= 2 else ".".join(loc) or "request"
        return _error_answer(422, f"{where}: {first.get('msg', 'invalid')}")

    async def http_error(request: Request, exc: StarletteHTTPException):
        headers = getattr(exc, "headers", None)
        detail = exc.detail
        if exc.status_code == 405 and headers and "Allow" in headers:
            detail = f"{request.method} is not allowed on {request.url.path}; use {headers['Allow']}"
        elif exc.status_code == 404:
            detail = f"{request.url.path} not found; the API is under /api (see /openapi.json)"
        return _error_answer(exc.status_code, str(detail), headers=headers)

    async def bug(request: Request, exc: Exception):
        # Only genuine bugs get here: every refusal above has its own status.
        logger.exception("unexpected error answering %s %s", request.method, request.url.path)
        return _error_answer(500, "internal error in the digitnet server (a bug); see the server's log")

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(DigitnetError, digitnet_error)
    app.add_exception_handler(RequestValidationError, validation_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(Exception, bug)


# --------------------------------------------------------------------------
# The application


def create_app(network: Network, *, model_path: str | None = None,
               max_body_bytes: int = MAX_BODY_BYTES, max_image_side: int = MAX_IMAGE_SIDE,
               trainer=None) -> FastAPI:
    """The web application serving the drawing page and the API for ``network``.

    ``network`` takes 784 inputs (28x28 images); its ``metadata`` (the model
    file's header) gives the input scale (``preprocessing.scale``) and class
    names.  ``model_path`` is only shown on the page.  Raises DigitnetError for
    a network the page cannot use.  ``trainer`` runs the Train view's jobs
    (:class:`digitnet.app.web.training.Trainer`; by default one with the
    standard caps, training on MNIST).
    """
    from . import batch  # POST /api/predict/batch and the fast JSON answers
    from .training import Trainer, add_to_openapi, install

    reader = _Reader(network, None if model_path is None else str(model_path))
    test_set = _TestSet(reader.dataset)
    accuracy_lock = threading.Lock()
    accuracy: dict = {}
    trainer = trainer if trainer is not None else Trainer()

    app = FastAPI(
        title="digitnet",
        version=__version__,
        description="Draw a digit; a from-scratch NumPy network reads it.",
        # /docs and /redoc load their scripts from a CDN; /openapi.json is served below.
        docs_url=None, redoc_url=None, openapi_url=None,
    )
    app.add_middleware(_ExtraHeaders)
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    def openapi() -> dict:
        # Cached once the test set's size is known; it says how far ?index= goes.
        if app.openapi_schema is not None:
            return app.openapi_schema
        try:
            count: int | None = len(test_set.get()[0])
        except ApiError:
            count = None
        document = openapi_document(reader, dataset=test_set.dataset, count=count,
                                    max_body_bytes=max_body_bytes, max_image_side=max_image_side)
        add_to_openapi(document, trainer.limits)  # the Train view's routes (training.py)
        if count is not None:
            app.openapi_schema = document
        return document

    app.openapi = openapi  # what FastAPI's own tools call

    def use_network(trained: Network, job=None) -> None:
        # The Train view's "Try it": from now on the Draw view reads with `trained`.
        new = _Reader(trained, None)
        with accuracy_lock:
            reader.__dict__ = dict(vars(new))     # one assignment: a request sees one reader or the other
            if test_set.dataset != reader.dataset:
                test_set.__init__(reader.dataset)
            accuracy.clear()
            app.openapi_schema = None              # the Prediction schema names the hidden layers

    trainer.use_network = use_network
    install(app, trainer)

    @app.get("/openapi.json", include_in_schema=False)
    def openapi_json() -> JSONResponse:
        # A plain (threaded) route: the first call may load the test set.
        return JSONResponse(openapi())

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    # The API.  What each route accepts and answers is in openapi_document(),
    # which the tests hold to what these handlers do.

    batch.install(app, reader, max_body_bytes=max_body_bytes, max_image_side=max_image_side)

    async def predict(request: Request):
        media = _media_type(request)
        is_json = media == "application/json" or media.endswith("+json")
        if not (is_json or media.startswith("image/")):
            shown = f'"{media}"' if media else "none"
            raise ApiError(415, f"unsupported Content-Type {shown}; {_IMAGE_OR_JSON}")
        body = await _read_body(request, max_body_bytes)
        if not body:
            raise ApiError(400, f"the request body is empty; {_IMAGE_OR_JSON}")

        def work() -> dict:
            if is_json:
                # msgspec's checked decoding first; the full checks word any error.
                pixels, preprocess = batch.decode_pixels(body) or _pixels_from_json(body)
                x = _pixel_input(pixels, preprocess)
            else:
                x = _image_input(body, max_image_side)
            return reader.answer(x)

        # A canvas PNG or 784 numbers take about a millisecond: done right
        # here, since a hand-off to a worker thread would cost a good part of
        # that again.  Big images and big JSON bodies go to a worker thread
        # (NumPy and Pillow release the GIL), keeping the event loop free.
        if _small_work(body, is_json):
            return batch.FastJSONResponse(work())
        return batch.FastJSONResponse(await run_in_threadpool(work))

    # A plain Starlette route: the handler reads the request itself, so
    # FastAPI's parameter machinery would only add time to every request.
    app.add_route("/api/predict", predict, methods=["POST"])

    @app.get("/api/sample")
    def sample(request: Request):
        given = request.query_params.getlist("index")
        if len(given) > 1:
            raise ApiError(422, f"give index once, not {len(given)} times")
        wanted = _parse_index(given[0]) if given else None  # 422 before 503: the request is wrong
        X, y = test_set.get()
        n = len(X)
        if wanted is None:
            index = random.randrange(n)
        elif 0 <= wanted < n:
            index = wanted
        else:
            shown = given[0] if len(given[0]) <= 20 else f"a {len(given[0].lstrip('-'))}-digit number"
            raise ApiError(422, f"index must be from 0 to {n - 1}, got {shown}")
        return {"index": index, "label": int(y[index]), "pixels": _rounded(X[index], 4),
                "count": n, "dataset": test_set.dataset}

    @app.get("/api/model")
    def model() -> JSONResponse:
        description = reader.describe()
        with accuracy_lock:
            if not accuracy:
                accuracy.update(_measure_accuracy(reader, test_set))
        description["accuracy"] = dict(accuracy)
        return JSONResponse(_json_safe(description))

    return app


def _measure_accuracy(reader: _Reader, test_set: _TestSet) -> dict:
    """Accuracy on the whole test set: ``{"test": float|None, "dataset", "n_test"}``."""
    try:
        X, y = test_set.get()
        _, acc = reader.network.evaluate(reader.network_input(X), y)
    except (ApiError, DigitnetError) as exc:
        reason = exc.detail if isinstance(exc, ApiError) else one_line(str(exc))
        return {"test": None, "dataset": test_set.dataset, "n_test": 0, "reason": reason}
    return {"test": round(float(acc), 4), "dataset": test_set.dataset, "n_test": len(X)}
