"""Schemathesis hooks for the digitnet web API: how to make a valid image body.

The OpenAPI schema states every rule of ``POST /api/predict`` that JSON Schema
can state, but "the bytes of an image with a digit in it" is not one of them:
for an ``image/*`` body the schema can only say "bytes".  Left alone,
Schemathesis sends its own 1x1-pixel sample files there, which the server
rightly refuses as blank drawings (422), so its ``positive_data_acceptance``
check would report them.  These hooks teach it what a valid image body is:
digit-like strokes on a plain canvas, encoded in the formats the server reads.

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
