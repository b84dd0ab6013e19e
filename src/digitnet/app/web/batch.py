"""Many digits in one request, ``POST /api/predict/batch``, and the fast JSON both predict routes use.

The body is **either** JSON, ``{"images": [[784 numbers in 0..1], ...],
"preprocess": false}`` (each image as ``POST /api/predict`` takes its
``pixels``: 784 numbers, or 28 rows of 28), **or** ``multipart/form-data``
with one part named ``images`` per picture (a file of any format
:func:`digitnet.app.imaging.read_image` reads).  At most
:data:`MAX_BATCH_ITEMS` images, and the same body limit as everywhere
(``max_body_bytes``).

What the OpenAPI schema states about the request is checked for the whole
request: a body that breaks it (a pixel outside 0..1, 783 numbers, an
unknown field or part, no images, too many) is refused with one 4xx line
naming the item (``images[3][17] is 1.5, ...``).  What only reading an item
can tell -- a drawing with no ink (a blank drawing), bytes that are not an
image, an image over the side limit -- is that item's own answer: the
request still gets a 200, with ``{"index", "detail"}`` (and ``"blank":
true`` for a blank drawing) in that item's place.  A read item is
``{"index", "digit", "label", "confidence", "probabilities"}``, the same
numbers ``POST /api/predict`` gives for it alone (up to float32 rounding in
the last of the six decimals: the images go through the network together).

Speed: JSON is decoded and checked by msgspec (in C) against the schema's
types and ranges; only a body it refuses -- or 28-row images, or a missing
msgspec -- goes through the slower Python checks, which find the first
problem and word the error.  Answers are encoded by msgspec too.  Decoding
images and the forward pass run in a worker thread, off the event loop.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import numpy as np
from fastapi import FastAPI, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import Response

from digitnet.app import imaging
from digitnet.app.web.app import (
    N_PIXELS,
    SIDE,
    ApiError,
    _check_pixels,
    _image_input,
    _json_type,
    _media_type,
    _parse_json,
    _pixel_input,
    _read_body,
    one_line,
)
from digitnet.errors import DigitnetError

__all__ = ["MAX_BATCH_ITEMS", "FastJSONResponse", "add_to_openapi", "batch_answers", "decode_pixels",
           "encode_json", "install"]

#: Most images in one batch request (JSON or multipart).
MAX_BATCH_ITEMS = 200
#: The field (JSON) or part name (multipart) that holds the images.
FIELD = "images"
#: Most pixels decoded for one multipart batch, all images together (from their headers): 200
#: canvases of 280x280 are 15.7 million; an image past this budget is refused as its own error,
#: so that a 1 MB form of tiny files that claim 2000x2000 pixels each cannot cost seconds.
MAX_BATCH_PIXELS = 40_000_000

_BATCH_HINT = ('send JSON {"images": [[784 numbers in 0..1], ...]} as "Content-Type: application/json", '
               'or the images as "multipart/form-data" parts named "images"')

try:  # a dependency of the web extra; without it the slower stdlib paths below do the same
    import msgspec
except ImportError:  # pragma: no cover - exercised only where msgspec is missing
    msgspec = None


# --------------------------------------------------------------------------
# JSON out


def encode_json(content: Any) -> bytes:
    """``content`` as compact UTF-8 JSON (msgspec when installed, else the json module)."""
    if msgspec is not None:
        return msgspec.json.encode(content)
    return json.dumps(content, ensure_ascii=False, allow_nan=False, separators=(",", ":")).encode()


class FastJSONResponse(Response):
    """A JSON answer encoded by :func:`encode_json` (Starlette's JSONResponse uses the json module)."""

    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return encode_json(content)


# --------------------------------------------------------------------------
# JSON in: the fast path
#
# msgspec decodes straight into these types and refuses anything else: a
# bool, a string or null for a number, a number outside 0..1, a list of the
# wrong length, an unknown field.  A refusal is not the answer: it sends
# the body to the Python checks, which word the error (or accept 28 rows of
# 28, which these types leave out).  So the fast path can only accept what
# the Python checks accept.

if msgspec is not None:
    _Pixel = Annotated[float, msgspec.Meta(ge=0.0, le=1.0)]
    _Flat = Annotated[list[_Pixel], msgspec.Meta(min_length=N_PIXELS, max_length=N_PIXELS)]

    class _One(msgspec.Struct, forbid_unknown_fields=True):
        pixels: _Flat
        preprocess: bool = False

    class _Many(msgspec.Struct, forbid_unknown_fields=True):
        images: Annotated[list[_Flat], msgspec.Meta(min_length=1, max_length=MAX_BATCH_ITEMS)]
        preprocess: bool = False

    _decode_one = msgspec.json.Decoder(_One).decode
    _decode_many = msgspec.json.Decoder(_Many).decode
    _Refused = (msgspec.ValidationError, msgspec.DecodeError)


def decode_pixels(body: bytes) -> tuple[np.ndarray, bool] | None:
    """``{"pixels": [784 numbers], "preprocess": bool}`` -> ``(x (784,) float64, preprocess)``.

    None when the fast decoder refuses the body (or is missing): the caller
    then runs the full checks, which accept it or say what is wrong.
    """
    if msgspec is None:
        return None
    try:
        one = _decode_one(body)
    except _Refused:
        return None
    return np.array(one.pixels, dtype=np.float64), one.preprocess


def _decode_batch_json(body: bytes) -> tuple[np.ndarray, bool]:
    """A JSON batch -> ``(X (n, 784) float64, preprocess)``, or ApiError 400/422 naming the problem."""
    if msgspec is not None:
        try:
            many = _decode_many(body)
        except _Refused:
            pass
        else:
            return np.array(many.images, dtype=np.float64), many.preprocess

    payload = _parse_json(body, _BATCH_HINT)
    shape_hint = 'expected a JSON object {"images": [[784 numbers in 0..1], ...]}'
    if not isinstance(payload, dict):
        raise ApiError(422, f"{shape_hint}, got {_json_type(payload)}")
    unknown = sorted(set(payload) - {FIELD, "preprocess"})
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}; {shape_hint}")
    if FIELD not in payload:
        raise ApiError(422, f'the "images" field is missing; {shape_hint}')
    preprocess = payload.get("preprocess", False)
    if not isinstance(preprocess, bool):
        raise ApiError(422, f'"preprocess" must be true or false, got {_json_type(preprocess)}')
    images = payload[FIELD]
    if not isinstance(images, list):
        raise ApiError(422, f'"images" must be a list of images, got {_json_type(images)}; {shape_hint}')
    _check_count(len(images))
    X = np.empty((len(images), N_PIXELS), np.float64)
    for k, image in enumerate(images):
        X[k] = _check_pixels(image, f"images[{k}]", f"images[{k}]")
    return X, preprocess


def _check_count(n: int) -> None:
    if n == 0:
        raise ApiError(422, "the batch holds no images; send at least one")
    if n > MAX_BATCH_ITEMS:
        raise ApiError(422, f"the batch holds {n} images, more than the {MAX_BATCH_ITEMS} allowed; "
                            "split it into several requests")


# --------------------------------------------------------------------------
# multipart in


def decode_multipart(body: bytes, content_type: str) -> list[bytes]:
    """The ``images`` parts of a multipart/form-data body, in order, as bytes.

    Refuses (ApiError) a body that is not well-formed multipart (400), a part
    with another name (422, like an unknown JSON field), no images or too
    many (422).  Each part's bytes are not looked at here: a part that is no
    image gets its own error in the answer.
    """
    try:
        from python_multipart.multipart import MultipartParseError, MultipartParser, parse_options_header
    except ImportError:  # the web extra installs it
        raise ApiError(415, "this server cannot read multipart/form-data (python-multipart is not installed); "
                            'send JSON {"images": [[784 numbers in 0..1], ...]}') from None

    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise ApiError(400, 'the multipart/form-data Content-Type has no boundary; '
                            'let the HTTP client build the form (e.g. curl -F "images=@seven.png")')
    parts: list[dict] = []
    header: dict[str, bytearray] = {}
    ended = False

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header.setdefault("field", bytearray()).extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header.setdefault("value", bytearray()).extend(data[start:end])

    def on_header_end() -> None:
        name = bytes(header.get("field", b"")).decode("latin-1").strip().lower()
        parts[-1]["headers"][name] = bytes(header.get("value", b""))
        header.clear()

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"].extend(data[start:end])

    def on_end() -> None:
        nonlocal ended
        ended = True

    parser = MultipartParser(boundary, {
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end,
        "on_part_data": on_part_data, "on_end": on_end,
    })
    try:
        parser.write(body)
        parser.finalize()
    except (MultipartParseError, ValueError) as exc:
        raise ApiError(400, f"the body is not valid multipart/form-data ({one_line(str(exc))})") from None
    if not ended:
        raise ApiError(400, "the multipart/form-data body ends before its closing boundary; send the whole form")

    images = []
    for k, part in enumerate(parts):
        disposition = part["headers"].get("content-disposition")
        name = None
        if disposition is not None:
            kind, params = parse_options_header(disposition)
            name = params.get(b"name")
            if kind.lower() != b"form-data":
                name = None
        if name is None:
            raise ApiError(400, f"part {k} of the form has no Content-Disposition form-data name; "
                                'name every part "images"')
        if name != FIELD.encode():
            shown = name.decode("utf-8", "replace")[:40]
            raise ApiError(422, f'unknown form field {shown!r}; send every image as a part named "images"')
        images.append(bytes(part["data"]))
    _check_count(len(images))
    return images


# --------------------------------------------------------------------------
# the route


def install(app: FastAPI, reader: Any, *, max_body_bytes: int, max_image_side: int) -> None:
    """Add ``POST /api/predict/batch`` to ``app``, reading with ``reader`` (the app's ``_Reader``)."""

    async def predict_batch(request: Request):
        media = _media_type(request)
        is_json = media == "application/json" or media.endswith("+json")
        if not (is_json or media == "multipart/form-data"):
            shown = f'"{media}"' if media else "none"
            raise ApiError(415, f"unsupported Content-Type {shown}; {_BATCH_HINT}")
        body = await _read_body(request, max_body_bytes)
        if not body:
            raise ApiError(400, f"the request body is empty; {_BATCH_HINT}")
        content_type = request.headers.get("content-type", "")
        # Up to 200 images: decoding and the forward pass run in a worker
        # thread (NumPy, Pillow and msgspec's decoder do not hold the event
        # loop up), so other requests are answered meanwhile.
        answer = await run_in_threadpool(batch_answers, reader, body, content_type,
                                         "application/json" if is_json else media,
                                         max_image_side=max_image_side)
        return FastJSONResponse(answer)

    app.add_route("/api/predict/batch", predict_batch, methods=["POST"])  # plain Starlette, as /api/predict


# --------------------------------------------------------------------------
# answers


def batch_answers(reader: Any, body: bytes, content_type: str, media: str, *, max_image_side: int) -> dict:
    """The answer to one batch request (runs in a worker thread).

    ``reader`` is the app's model (``_Reader``); ``media`` is the request's
    bare media type, already known to be JSON or multipart/form-data.
    """
    answers: list[dict | None]
    if media == "multipart/form-data":
        pictures = decode_multipart(body, content_type)
        answers = [None] * len(pictures)
        rows = []
        budget = MAX_BATCH_PIXELS
        for k, picture in enumerate(pictures):
            size = imaging.image_size(picture)  # from the header; None: refused below at once
            if size is not None and size[0] <= max_image_side and size[1] <= max_image_side:
                budget -= size[0] * size[1]
                if budget < 0:
                    answers[k] = {"index": k, "detail": (
                        f"the batch's images hold more than {MAX_BATCH_PIXELS:,} pixels in all; "
                        "send big images in smaller batches")}
                    continue
            try:
                rows.append((k, _image_input(picture, max_image_side)))
            except ApiError as exc:  # a blank drawing
                answers[k] = {"index": k, "detail": exc.detail, **exc.extra}
            except DigitnetError as exc:  # not an image, too large, truncated ...
                answers[k] = {"index": k, "detail": one_line(str(exc))}
    else:
        X, preprocess = _decode_batch_json(body)
        answers = [None] * len(X)
        if preprocess:
            rows = []
            for k, x in enumerate(X):
                try:
                    rows.append((k, _pixel_input(x, True)))
                except ApiError as exc:
                    answers[k] = {"index": k, "detail": exc.detail, **exc.extra}
        else:
            # The blank rule of /api/predict, on every row at once: no pixel
            # reaches MIN_CONTRAST, compared as sent (float64).
            blank = X.max(axis=1) < imaging.MIN_CONTRAST
            detail = one_line(f"the image is blank: no pixel reaches {imaging.MIN_CONTRAST:g}; draw a digit first")
            for k in np.flatnonzero(blank).tolist():
                answers[k] = {"index": k, "detail": detail, "blank": True}
            keep = np.flatnonzero(~blank)
            rows = [(k, X[k]) for k in keep.tolist()] if len(keep) < len(X) else None
            if rows is None:  # all read: no row-by-row copy
                _fill(reader, answers, np.arange(len(X)), X.astype(np.float32))
                return _summary(answers)
    if rows:
        index = np.fromiter((k for k, _ in rows), dtype=np.int64, count=len(rows))
        images = np.stack([x for _, x in rows]).astype(np.float32, copy=False)
        _fill(reader, answers, index, images)
    return _summary(answers)


def _fill(reader: Any, answers: list, index: np.ndarray, images: np.ndarray) -> None:
    """Read ``images`` ``(n, 784)`` in [0, 1] with one forward pass; answers go to ``answers[index]``."""
    out = reader.network.feedforward(reader.network_input(images))
    probabilities = reader.probabilities(out)
    top = probabilities.argmax(axis=1)
    classes = reader.classes
    confidence = probabilities[np.arange(len(top)), top].tolist()
    for k, t, c, p in zip(index.tolist(), top.tolist(), confidence, probabilities.tolist()):
        answers[k] = {"index": k, "digit": t, "label": classes[t], "confidence": c, "probabilities": p}


def _summary(answers: list) -> dict:
    errors = sum(1 for a in answers if "detail" in a)
    return {"count": len(answers), "errors": errors, "results": answers}


# --------------------------------------------------------------------------
# the OpenAPI document's part


def openapi_paths(max_body_bytes: int, max_image_side: int) -> dict:
    """The batch route, for the app's OpenAPI document."""
    error = "#/components/schemas/Error"

    def answer(description: str, ref: str = error) -> dict:
        return {"description": description, "content": {"application/json": {"schema": {"$ref": ref}}}}

    return {"/api/predict/batch": {"post": {
        "summary": f"Read up to {MAX_BATCH_ITEMS} digits at once: 28x28 pixel arrays (JSON) or images (multipart)",
        "operationId": "predict_batch_api_predict_batch_post",
        "description": (
            f"The body is JSON (application/json) or a form (multipart/form-data) holding 1 to "
            f"{MAX_BATCH_ITEMS} images, at most {max_body_bytes:,} bytes in all (x-max-body-bytes): larger "
            "is a 413, any other Content-Type a 415, an empty or unparseable body a 400, a body outside the "
            "schema a 422 naming the first item at fault.  Items that cannot be read -- a blank drawing, "
            f"bytes that are not an image, an image over {max_image_side} pixels on a side -- get their own "
            "error in the 200 answer, in their place; the others are read."),
        "x-max-body-bytes": max_body_bytes,
        "requestBody": {"required": True, "content": {
            "application/json": {
                "schema": {"$ref": "#/components/schemas/BatchPixelsRequest"},
                "x-max-body-bytes": max_body_bytes,
                "description": "UTF-8 JSON (any application/*+json type is read the same way)",
            },
            "multipart/form-data": {
                "schema": {"$ref": "#/components/schemas/BatchImagesRequest"},
                "encoding": {FIELD: {"contentType": "image/png, image/*"}},
                "x-max-body-bytes": max_body_bytes,
                "x-max-image-side": max_image_side,
                "x-max-batch-pixels": MAX_BATCH_PIXELS,
                "description": (
                    f"One part named \"{FIELD}\" per image, in order: the image file's bytes, in a format the "
                    f"server reads ({', '.join(imaging.SUPPORTED_FORMATS)}), whatever Content-Type the part "
                    "names.  A part that is not an image, or is blank, gets its own error in the answer, as "
                    f"does an image past {MAX_BATCH_PIXELS:,} pixels for the whole batch (x-max-batch-pixels)."),
            },
        }},
        "responses": {
            "200": answer("one answer per image, in order: what the network reads, or why it could not "
                          "read that image", "#/components/schemas/BatchAnswer"),
            "400": answer("an empty body; JSON or multipart that does not parse; a Content-Length that is "
                          "not a number"),
            "413": answer(f"a body over {max_body_bytes:,} bytes"),
            "415": answer("a Content-Type neither application/json nor multipart/form-data"),
            "422": answer(f"a body outside the schema: not an object, an unknown field or form part, no images "
                          f"or more than {MAX_BATCH_ITEMS}, an image that is not 784 numbers in 0..1"),
        },
    }}}


def openapi_schemas(reader: Any) -> dict:
    """The components the batch route uses."""
    pixel = {"type": "number", "minimum": 0, "maximum": 1}
    flat = {"type": "array", "minItems": N_PIXELS, "maxItems": N_PIXELS, "items": pixel,
            "description": f"{N_PIXELS} numbers in 0..1, row by row"}
    rows = {"type": "array", "minItems": SIDE, "maxItems": SIDE,
            "items": {"type": "array", "minItems": SIDE, "maxItems": SIDE, "items": pixel},
            "description": f"{SIDE} rows of {SIDE} numbers in 0..1"}
    n_classes = len(reader.classes)
    return {
        "BatchPixelsRequest": {
            "type": "object",
            "title": "BatchPixelsRequest",
            "description": ("Several 28x28 digits, ink = 1 on background 0, each as /api/predict takes its "
                            "\"pixels\".  A digit with no pixel of 0.1 or more is blank: its answer is an "
                            "error (\"blank\": true), the others are read.  No other fields."),
            "required": [FIELD],
            "additionalProperties": False,
            "properties": {
                FIELD: {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ITEMS,
                        "items": {"anyOf": [flat, rows]},
                        "description": f"1 to {MAX_BATCH_ITEMS} digits: each 784 numbers, or 28 rows of 28"},
                "preprocess": {"type": "boolean", "default": False,
                               "description": "run MNIST's normalisation (crop, 20x20 box, centre of mass) "
                                              "on each digit first"},
            },
        },
        "BatchImagesRequest": {
            "type": "object",
            "title": "BatchImagesRequest",
            "description": f"1 to {MAX_BATCH_ITEMS} images, one form part named \"{FIELD}\" each.  No other parts.",
            "required": [FIELD],
            "additionalProperties": False,
            "properties": {
                FIELD: {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ITEMS,
                        "items": {"type": "string", "format": "binary"}},
            },
        },
        "BatchAnswer": {
            "type": "object",
            "title": "BatchAnswer",
            "required": ["count", "errors", "results"],
            "additionalProperties": False,
            "properties": {
                "count": {"type": "integer", "minimum": 1, "maximum": MAX_BATCH_ITEMS,
                          "description": "how many images the request held"},
                "errors": {"type": "integer", "minimum": 0, "maximum": MAX_BATCH_ITEMS,
                           "description": "how many of them could not be read"},
                "results": {"type": "array", "minItems": 1, "maxItems": MAX_BATCH_ITEMS,
                            "items": {"oneOf": [{"$ref": "#/components/schemas/BatchPrediction"},
                                                {"$ref": "#/components/schemas/BatchItemError"}]},
                            "description": "one per image, in the request's order"},
            },
        },
        "BatchPrediction": {
            "type": "object",
            "title": "BatchPrediction",
            "required": ["index", "digit", "label", "confidence", "probabilities"],
            "additionalProperties": False,
            "properties": {
                "index": {"type": "integer", "minimum": 0, "maximum": MAX_BATCH_ITEMS - 1,
                          "description": "the image's place in the request, from 0"},
                "digit": {"type": "integer", "minimum": 0, "maximum": n_classes - 1},
                "label": {"type": "string", "enum": sorted(set(reader.classes))},
                "confidence": {**pixel, "description": "probability of that class"},
                "probabilities": {"type": "array", "minItems": n_classes, "maxItems": n_classes, "items": pixel,
                                  "description": "one probability per class, summing to 1"},
            },
        },
        "BatchItemError": {
            "type": "object",
            "title": "BatchItemError",
            "description": "Why this image could not be read: one line.",
            "required": ["index", "detail"],
            "additionalProperties": False,
            "properties": {
                "index": {"type": "integer", "minimum": 0, "maximum": MAX_BATCH_ITEMS - 1},
                "detail": {"type": "string", "minLength": 1, "pattern": "^[^\\r\\n]+$"},
                "blank": {"const": True, "description": "present (true) only when the drawing is blank"},
            },
        },
    }


def add_to_openapi(document: dict, reader: Any, *, max_body_bytes: int, max_image_side: int) -> dict:
    """``document`` (the app's OpenAPI document) with the batch route and its schemas added."""
    document["paths"].update(openapi_paths(max_body_bytes, max_image_side))
    document["components"]["schemas"].update(openapi_schemas(reader))
    return document
