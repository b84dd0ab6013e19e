"""Schemathesis hooks for the digitnet web API: how to make a valid image body.

The OpenAPI schema states every rule of ``POST /api/predict`` that JSON Schema
can state, but "the bytes of an image with a digit in it" is not one of them:
for an ``image/*`` body the schema can only say "bytes".  Left alone,
Schemathesis sends its own 1x1-pixel sample files there, which the server
rightly refuses as blank drawings (422), so its ``positive_data_acceptance``
check would report them.  These hooks teach it what a valid image body is:
digit-like strokes on a plain canvas, encoded in the formats the server reads.

The same drawings fill the batch route's multipart form: its ``images``
part names these types in its ``encoding``, and Schemathesis takes a part's
body from the strategy registered for its type.

Load them with ``SCHEMATHESIS_HOOKS=tests/schemathesis_hooks.py`` (what
``tests/test_schemathesis.py`` does); see docs/web.md.
"""

from __future__ import annotations

import io

import schemathesis
from hypothesis import strategies as st
from PIL import Image, ImageDraw, features

#: Image formats the server reads, by media type.  The schema's ``image/*``
#: entry makes Schemathesis try these (and its own samples of PNG, JPEG, GIF
#: and WebP, which is why each of those needs a strategy here).  The server
#: decodes the bytes whatever image/* type is named, so a Pillow without
#: WebP support gets PNG bytes sent as image/webp.
FORMATS = {"image/png": "PNG", "image/jpeg": "JPEG", "image/gif": "GIF", "image/bmp": "BMP",
           "image/tiff": "TIFF", "image/webp": "WEBP" if features.check("webp") else "PNG"}


@st.composite
def drawings(draw, image_format: str) -> bytes:
    """A canvas of 28..300 px a side with 1..4 strokes on it, as ``image_format`` bytes.

    The strokes keep away from the edges (the server takes the background
    from the border), and they have full contrast, so no drawing is blank.
    """
    width = draw(st.integers(28, 300), label="width")
    height = draw(st.integers(28, 300), label="height")
    dark_on_light = draw(st.booleans(), label="dark_on_light")
    background, ink = (255, 0) if dark_on_light else (0, 255)
    image = Image.new("L", (width, height), background)
    pen = ImageDraw.Draw(image)
    thickest = max(2, min(width, height) // 10)
    x = st.integers(width // 6, width - 1 - width // 6)
    y = st.integers(height // 6, height - 1 - height // 6)
    for _ in range(draw(st.integers(1, 4), label="strokes")):
        points = draw(st.lists(st.tuples(x, y), min_size=2, max_size=6), label="points")
        stroke = draw(st.integers(2, thickest), label="stroke width")
        pen.line(points, fill=ink, width=stroke, joint="curve")
        # A stroke whose points coincide draws nothing as a line: a dot, then.
        x0, y0 = points[0]
        pen.ellipse((x0 - stroke // 2, y0 - stroke // 2, x0 + stroke // 2, y0 + stroke // 2), fill=ink)
    buffer = io.BytesIO()
    image.save(buffer, format=image_format)
    return buffer.getvalue()


for _media_type, _format in FORMATS.items():
    schemathesis.openapi.media_type(_media_type, drawings(_format))


# ---------------------------------------------------------------------------
# POST /api/train: the Train view's training jobs

#: The sizes of the MNIST training and test sets the server trains on (for the memory estimate).
MNIST_ROWS = (60_000, 10_000)


@schemathesis.hook("filter_case").apply_to(method="POST", path="/api/train")
def recipes_within_the_memory_cap(context, case) -> bool:
    """Leave out schema-valid recipes over the server's memory cap (``x-max-training-bytes``).

    That cap is the one rule of a recipe JSON Schema cannot state: it weighs
    the layers, the batch size, the optimiser and the number of images
    together (digitnet.train.recipes.training_memory_bytes).  The server
    rightly refuses such a recipe with a 422, which Schemathesis would report
    as a valid request rejected.  Recipes that break the schema are all kept.
    """
    from digitnet.app.web.training import TrainLimits, training_bytes

    meta = case.meta
    if meta is None or not meta.generation.mode.is_positive or not isinstance(case.body, dict):
        return True
    need = training_bytes(case.body, train_rows=MNIST_ROWS[0], test_rows=MNIST_ROWS[1])
    return need is None or need <= TrainLimits().max_memory_bytes


@schemathesis.hook("after_call").apply_to(method="POST", path="/api/train")
def stop_the_job_it_started(context, case, response) -> None:
    """Stop each training job a request started (202) at once, so that the run tests the API
    on an idle server rather than alongside training runs it started by chance.  The DELETE
    goes out from a thread: the run need not wait for the job to wind down (a request in the
    meantime may get a 409, which is what the API says of a job still running)."""
    if response.status_code != 202:
        return
    import threading

    import httpx

    job = response.json()["job"]
    url = response.request.url.rsplit("/api/train", 1)[0]
    threading.Thread(target=httpx.delete, args=(f"{url}/api/train/{job}",), kwargs={"timeout": 30},
                     daemon=True).start()
