"""MNIST preprocessing stays within its stated tolerance of the results it gave before it was sped up.

``tests/fixtures/preprocess_reference.npz`` holds what ``preprocess_image``
returned, before the faster code (8-bit pictures kept 8-bit until the crop;
the area averaging as prefix sums instead of resampling matrices), for 64
real MNIST test digits drawn large as the page's canvas draws them (280x280
RGBA PNGs, each pixel a 10x10 block).  Written by
``python benchmarks/preprocess_tolerance.py --reference SRC --golden FILE``
from that code (commit 915c4c1).  The stated tolerance (docs/web.md): every pixel within
1e-5 of before; over all 10,000 test digits the measured largest difference
is 4.8e-7 (benchmarks/WEB.md).
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest

Image = pytest.importorskip("PIL.Image")

from digitnet.app.imaging import mnist_preprocess, preprocess_image, read_image  # noqa: E402
from digitnet.data import load_mnist  # noqa: E402

REFERENCE = Path(__file__).resolve().parent / "fixtures" / "preprocess_reference.npz"
#: The largest difference allowed, per pixel (results are in [0, 1]).
TOLERANCE = 1e-5


def canvas_png(digit: np.ndarray) -> bytes:
    """As benchmarks/preprocess_tolerance.py's golden_png: 10x10 blocks, white on black, opaque RGBA."""
    block = np.repeat(np.repeat((digit.reshape(28, 28) * 255).round().astype(np.uint8), 10, 0), 10, 1)
    rgba = np.empty((280, 280, 4), np.uint8)
    rgba[..., :3] = block[..., None]
    rgba[..., 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def reference():
    with np.load(REFERENCE) as stored:
        return stored["indices"], stored["outputs"]


def test_preprocessing_is_within_tolerance_of_before(reference):
    indices, before = reference
    X, _ = load_mnist("test")
    now = np.stack([preprocess_image(canvas_png(X[i])) for i in indices])
    assert now.shape == before.shape == (64, 784)
    assert np.abs(now - before).max() <= TOLERANCE


def test_the_8bit_route_equals_the_float_route(reference):
    """preprocess_image keeps an 8-bit picture 8-bit until the crop; mnist_preprocess of the
    same picture as floats in [0, 1] takes the other route, and must agree."""
    indices, _ = reference
    X, _ = load_mnist("test")
    for i in indices[:16]:
        png = canvas_png(X[i])
        floats = read_image(png)
        assert floats.dtype == np.float32
        np.testing.assert_allclose(preprocess_image(png).reshape(28, 28), mnist_preprocess(floats), atol=1e-6)
        eight_bit = np.round(floats * 255).astype(np.uint8)
        for invert in ("auto", False):
            np.testing.assert_allclose(mnist_preprocess(eight_bit, invert=invert),
                                       mnist_preprocess(eight_bit.astype(np.float32) / 255, invert=invert),
                                       atol=1e-6)
        dark = 255 - eight_bit  # the same digit, dark ink on white paper
        np.testing.assert_allclose(mnist_preprocess(dark), mnist_preprocess(dark.astype(np.float32) / 255),
                                   atol=1e-6)
