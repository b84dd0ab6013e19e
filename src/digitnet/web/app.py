"""The HTTP side of the drawing page: a FastAPI app around one trained network.

Routes (all JSON bodies are UTF-8; every error answer is ``{"detail": "<one
line saying what is wrong>"}`` with a 4xx status, never a 500 for bad input):

``GET /``
    The drawing page (``static/index.html``); ``/static/*`` its script and style.
``POST /api/predict``
    Body: the canvas as an image (``Content-Type: image/png``; any format
    :func:`digitnet.imaging.read_image` reads) **or** JSON
    ``{"pixels": [784 numbers in 0..1], "preprocess": false}`` -- a 28x28
    digit, row by row, ink = 1, as the network takes it (``preprocess: true``
    runs MNIST's normalisation on it first).  Images go through
    :func:`digitnet.imaging.preprocess_image`, the same code as
    ``digitnet predict``.  Answer (see :class:`Prediction`)::

        {"blank": false, "digit": 7, "label": "7", "confidence": 0.98,
         "probabilities": [10 floats], "input": [784 floats in 0..1],
         "activations": [[n_1 floats], ..., [n_{L-1} floats]]}

    A blank drawing is ``422 {"detail": "the image is blank: ...", "blank": true}``.
``GET /api/sample?index=I``
    MNIST test digit ``I`` (random when omitted):
    ``{"index", "label", "pixels": [784], "count", "dataset"}``.
``GET /api/model``
    The model: layers, parameter count, recipe, preprocessing and its accuracy
    on the test set (measured on first request).
``GET /openapi.json``
    The OpenAPI schema.  The interactive ``/docs`` pages are switched off:
    they load their scripts from a CDN, and this server loads nothing from
    outside.

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
import threading
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.requests import ClientDisconnect

from digitnet import __version__, imaging
from digitnet.errors import BlankImageError, DataError, DigitnetError, ImageError
from digitnet.modelfile import class_names, input_scale, to_network_inputs
from digitnet.network import Network

__all__ = ["MAX_BODY_BYTES", "MAX_IMAGE_SIDE", "ApiError", "create_app"]

logger = logging.getLogger("digitnet.web")

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
# Schemas (for /openapi.json; answers are built as plain dicts)


class Prediction(BaseModel):
    """What ``POST /api/predict`` answers for a drawing with a digit in it."""

    blank: bool = Field(False, description="always false here; blank drawings get a 422")
    digit: int = Field(..., description="index of the most likely class (the digit itself for MNIST)")
    label: str = Field(..., description="that class's name from the model file, e.g. \"7\"")
    confidence: float = Field(..., description="probability of that class, 0..1")
    probabilities: list[float] = Field(..., description="one probability per class (10), summing to 1")
    input: list[float] = Field(
        ..., description="784 values in 0..1: the 28x28 image as the network received it, row by row, ink = 1")
    activations: list[list[float]] = Field(
        ..., description="each hidden layer's activations, first hidden layer first")


class PixelsRequest(BaseModel):
    """JSON body of ``POST /api/predict``."""

    pixels: list[float] = Field(
        ..., description="784 numbers in 0..1 (or 28 rows of 28): a 28x28 digit, row by row, ink = 1")
    preprocess: bool = Field(
        False, description="run MNIST's normalisation (crop, 20x20 box, centre of mass) first")


class ErrorAnswer(BaseModel):
    detail: str = Field(..., description="one line: what is wrong and what to do")
    blank: bool | None = Field(None, description="true when the drawing is blank")


class Sample(BaseModel):
    index: int
    label: int
    pixels: list[float] = Field(..., description="784 values in 0..1, row by row, ink = 1")
    count: int = Field(..., description="number of test images")
    dataset: str


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
        out = layers[-1][0].astype(np.float64)
        if self.softmax_output:
            probabilities = out
        else:
            # Sigmoid outputs (Nielsen's network) need not sum to 1: show
            # their shares, which keeps the ranking.
            positive = np.clip(out, 0.0, None)
            total = positive.sum()
            probabilities = positive / total if total > 0 else np.full_like(out, 1 / out.size)
        probabilities = np.round(probabilities, 6)
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


def _json_schema(model: type[BaseModel]) -> dict:
    """A pydantic model's JSON schema (pydantic 2, or 1 under older FastAPI)."""
    schema = getattr(model, "model_json_schema", None) or model.schema
    return schema()


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


def _pixels_from_json(body: bytes) -> tuple[np.ndarray, bool]:
    """Parse ``{"pixels": [...], "preprocess": bool}``; returns ``(x (784,) float32, preprocess)``."""
    try:
        payload = json.loads(body)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} "
                            f"column {exc.colno}); {_IMAGE_OR_JSON}") from None
    except (ValueError, RecursionError) as exc:  # bad UTF-8, absurd nesting
        reason = "nested too deeply" if isinstance(exc, RecursionError) else "not UTF-8 text"
        raise ApiError(400, f"the body is not valid JSON ({reason}); {_IMAGE_OR_JSON}") from None

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

    pixels = payload["pixels"]
    if not isinstance(pixels, list):
        raise ApiError(422, f'"pixels" must be a list of {N_PIXELS} numbers, got {_json_type(pixels)}')
    if len(pixels) == SIDE and all(isinstance(row, list) for row in pixels):
        lengths = [len(row) for row in pixels]
        if any(n != SIDE for n in lengths):
            bad = next(i for i, n in enumerate(lengths) if n != SIDE)
            raise ApiError(422, f'"pixels" as rows needs 28 rows of 28 numbers; row {bad} has {lengths[bad]}')
        pixels = [v for row in pixels for v in row]
    if len(pixels) != N_PIXELS:
        raise ApiError(422, f'"pixels" must hold {N_PIXELS} numbers (28x28, row by row), got {len(pixels)}')
    for i, v in enumerate(pixels):
        # bool is an int in Python but not a number in JSON; huge integers
        # would overflow float conversion, so range-check before converting.
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            raise ApiError(422, f"pixels[{i}] is {_json_type(v)}, not a number; every pixel must be 0..1")
        if isinstance(v, float) and not math.isfinite(v):
            raise ApiError(422, f"pixels[{i}] is {v}: every pixel must be a finite number from 0 to 1")
        if not 0 <= v <= 1:
            shown = f"{v:g}" if isinstance(v, float) or abs(v) < 10**12 else "a huge integer"
            raise ApiError(422, f"pixels[{i}] is {shown}, outside 0..1; divide 8-bit values by 255")
    return np.asarray(pixels, dtype=np.float32), preprocess


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
    """JSON pixels ``(784,)`` -> the network's image, optionally normalised like MNIST."""
    if preprocess:
        try:
            return imaging.mnist_preprocess(x.reshape(SIDE, SIDE)).reshape(N_PIXELS)
        except ImageError as exc:
            if _is_blank_error(exc):
                raise _blank(str(exc)) from None
            raise
    if float(x.max()) < imaging.MIN_CONTRAST:
        raise _blank("the image is blank: no digit found; draw a digit first")
    return x


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
               max_body_bytes: int = MAX_BODY_BYTES, max_image_side: int = MAX_IMAGE_SIDE) -> FastAPI:
    """The web application serving the drawing page and the API for ``network``.

    ``network`` takes 784 inputs (28x28 images); its ``metadata`` (the model
    file's header) gives the input scale (``preprocessing.scale``) and class
    names.  ``model_path`` is only shown on the page.  Raises DigitnetError for
    a network the page cannot use.
    """
    reader = _Reader(network, None if model_path is None else str(model_path))
    test_set = _TestSet(reader.dataset)
    accuracy_lock = threading.Lock()
    accuracy: dict = {}

    app = FastAPI(
        title="digitnet",
        version=__version__,
        description="Draw a digit; a from-scratch NumPy network reads it.",
        docs_url=None, redoc_url=None,  # both load their scripts from a CDN
    )
    app.add_middleware(_ExtraHeaders)
    _install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    @app.post(
        "/api/predict",
        summary="Read the digit in an image or a 28x28 pixel array",
        response_model=Prediction,
        responses={
            400: {"model": ErrorAnswer, "description": "empty body or unparseable JSON"},
            413: {"model": ErrorAnswer, "description": f"body over {max_body_bytes:,} bytes"},
            415: {"model": ErrorAnswer, "description": "neither image/* nor application/json"},
            422: {"model": ErrorAnswer, "description": "not a usable image or pixel list; blank drawing"},
        },
        openapi_extra={"requestBody": {"required": True, "content": {
            "image/png": {"schema": {"type": "string", "format": "binary"}},
            "application/json": {"schema": _json_schema(PixelsRequest)},
        }}},
    )
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
                pixels, preprocess = _pixels_from_json(body)
                x = _pixel_input(pixels, preprocess)
            else:
                x = _image_input(body, max_image_side)
            return reader.answer(x)

        # Decoding and the forward pass run in a worker thread (NumPy and
        # Pillow release the GIL), keeping the event loop free for others.
        return JSONResponse(await run_in_threadpool(work))

    @app.get("/api/sample", summary="A test digit to compare with", response_model=Sample,
             responses={422: {"model": ErrorAnswer}, 503: {"model": ErrorAnswer}})
    def sample(index: int | None = Query(None, description="which test image; random when omitted")):
        X, y = test_set.get()
        n = len(X)
        if index is None:
            index = random.randrange(n)
        elif not 0 <= index < n:
            raise ApiError(422, f"index must be from 0 to {n - 1}, got {index}")
        return {"index": index, "label": int(y[index]), "pixels": _rounded(X[index], 4),
                "count": n, "dataset": test_set.dataset}

    @app.get("/api/model", summary="What model is serving")
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
