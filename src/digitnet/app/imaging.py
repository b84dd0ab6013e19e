"""Turn a picture of a handwritten digit into what an MNIST network expects.

The same code serves ``digitnet predict MODEL IMAGE...`` and the web server
that receives PNGs from a drawing canvas.  Two steps:

1. :func:`read_image` decodes a file or bytes into a float32 grayscale array
   in [0, 1] (1 = white).  Pillow is needed only here, and is imported lazily
   so that the rest of digitnet works without it.
2. :func:`mnist_preprocess` redoes MNIST's own normalisation (LeCun et al.):
   the digit is scaled, keeping its aspect ratio, so that its longer side is
   20 pixels, anti-aliased, and placed in a 28x28 frame so that its
   intensity-weighted centre of mass lies on the centre.  Pure NumPy.

Coordinate conventions
----------------------
*Centre of mass* is given in **index coordinates**: pixel ``(r, c)`` sits at
``(r, c)``, and the target is ``(14.0, 14.0)``.  That is MNIST's own
convention: over the 10,000 real test digits the mean centre of mass is
(13.99, 14.01) with each digit within +-0.5 px of 14 (MNIST shifted digits by
whole pixels).  Here the shift is sub-pixel, so every digit lands within
0.0001 px of (14, 14), unless that would push ink out of the frame (see
:func:`mnist_preprocess`).  On a quick NumPy MLP trained on raw MNIST,
sub-pixel centring scored as well as or better than whole-pixel centring on
re-rendered MNIST test digits, so the sub-pixel shift is kept; it costs
nothing extra here (next paragraph).

*Resampling* uses **edge coordinates** internally: pixel ``k`` covers
``[k, k + 1)``.  The cropped digit is reconstructed as a continuous image
(bilinear between pixel centres, constant out to the crop's edges, zero
outside the crop) and every output pixel is the exact average of that image
over the output pixel's square.  One pass therefore does the anti-aliased
resize *and* the sub-pixel shift: there is no second interpolation to blur the
strokes, every output value is a weighted average of input values (no
ringing, so nothing to clip), and ink never bleeds outside the mapped 20 px
box (at most 21 pixels are touched when the box starts between pixels).

*Speed* (the web server runs this for every drawing): :func:`preprocess_image`
keeps an 8-bit picture 8-bit until the digit is cropped out of it
(:func:`_ink_crop_8bit`, the same arithmetic per 8-bit level), and the search
for the centring offsets evaluates the resampled profiles through prefix sums
(:class:`_AreaIntegral`) instead of building a matrix per step; the results
are those of the plain float computation to float rounding (within 1e-5,
tests/test_preprocess_reference.py).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from typing import Any, Union

import numpy as np

from digitnet.errors import BlankImageError, ImageError

__all__ = [
    "DEFAULT_MAX_SIDE",
    "SUPPORTED_FORMATS",
    "image_from_array",
    "image_size",
    "mnist_preprocess",
    "preprocess_image",
    "read_image",
    "to_png_bytes",
]

#: Largest accepted width or height, in pixels.  Checked from the header,
#: before any pixel is decoded, so a tiny file that claims to be enormous is
#: rejected without allocating memory for it.
DEFAULT_MAX_SIDE = 4096

#: Formats Pillow may use to open an image.  An explicit list, so that an
#: uploaded file is never handed to exotic decoders (EPS would call
#: Ghostscript).  Formats this Pillow build lacks are skipped.
SUPPORTED_FORMATS = ("PNG", "JPEG", "BMP", "GIF", "TIFF", "WEBP", "PPM")

#: The digit's longer side in the output, and the output frame, as in MNIST.
BOX_SIDE = 20
FRAME_SIDE = 28
#: Target centre of mass, index coordinates (see the module docstring).
CENTRE = 14.0

#: Pixels whose ink (after background subtraction, scaled so the strongest
#: ink is 1) exceeds this define the crop box.  Keeps JPEG noise and faint
#: smudges from enlarging the box; on MNIST itself a threshold of 0.1 leaves
#: the longer side at 20 px for 9996 of 10000 test digits.
CROP_LEVEL = 0.1

#: Below this contrast between the strongest ink and the background (on the
#: 0..1 scale) the image counts as blank: a white page photographed or saved
#: as JPEG varies by a few hundredths at most.
MIN_CONTRAST = 0.1

#: Pixels that differ from the background by less than this are ignored when
#: deciding the polarity, so that noise does not vote.
_POLARITY_NOISE = 0.05

_NEEDS_PILLOW = "reading images needs Pillow: pip install 'digitnet[images]'"

Source = Union[str, "os.PathLike[str]", bytes, bytearray, memoryview]


# --------------------------------------------------------------------------
# Pillow access


def _pil() -> Any:
    """Import Pillow's ``Image`` module, or raise ImageError saying how to get it."""
    try:
        from PIL import Image
    except ImportError:
        raise ImageError(_NEEDS_PILLOW) from None
    return Image


def _open_formats(Image: Any) -> list[str]:
    """SUPPORTED_FORMATS restricted to the plugins this Pillow build has.

    ``Image.open(..., formats=[...])`` raises KeyError for a name it does not
    know, so unknown ones (WEBP without libwebp, say) must be dropped first.
    """
    if not all(f in Image.OPEN for f in SUPPORTED_FORMATS):
        Image.init()  # registers every plugin; a no-op after the first call
    return [f for f in SUPPORTED_FORMATS if f in Image.OPEN]


def _one_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name."""
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


# --------------------------------------------------------------------------
# Reading


def read_image(source: Source, *, max_side: int = DEFAULT_MAX_SIDE) -> np.ndarray:
    """Decode an image into grayscale.

    Parameters
    ----------
    source:
        A path (``str`` or ``os.PathLike``) or the encoded bytes of a PNG,
        JPEG, BMP, GIF, TIFF, WebP or PPM image (``bytes``, ``bytearray`` or
        ``memoryview``).  Animated images give their first frame; a JPEG's
        EXIF orientation is applied.
    max_side:
        Largest accepted width and height in pixels, checked from the header
        before any pixel is decoded.

    Returns
    -------
    np.ndarray
        float32, shape ``(H, W)``, values in [0, 1] with 1 = white.  Colour is
        reduced to luma (ITU-R 601-2, as Pillow's ``"L"`` mode); 16-bit images
        keep their precision.  Transparency: an image whose border is mostly
        transparent (a drawing canvas) has its transparent pixels turned into
        background, white behind dark strokes and black behind light strokes,
        so that white-on-transparent drawings survive; any other image is
        composited over white.

    Raises
    ------
    ImageError
        Pillow missing, file missing, undecodable or truncated data, or an
        image larger than ``max_side`` in either direction.
    TypeError
        ``source`` is neither a path nor bytes.
    """
    img, label = _open_image(source, max_side)
    with img:
        return _decode(img, label, max_side, _to_gray)


def _open_image(source: Source, max_side: int) -> tuple[Any, str]:
    """Open ``source`` with Pillow and check its header: ``(image, label)``.

    Nothing is decoded yet; the caller closes the image (``with image:``).
    ``label`` names the file in messages ("image data" for bytes).
    """
    if isinstance(source, (bytes, bytearray, memoryview)):
        label = "image data"
        data = bytes(source)
        if not data:
            raise ImageError(f"{label} is empty: send the bytes of a PNG or JPEG file")
        fp: Any = io.BytesIO(data)
    elif isinstance(source, (str, os.PathLike)):
        label = os.fspath(source)
        if isinstance(label, bytes):  # os.PathLike[bytes]
            label = os.fsdecode(label)
        if not os.path.exists(label):
            raise ImageError(f"{label}: no such file; check the image path")
        if os.path.isdir(label):
            raise ImageError(f"{label}: is a directory, not an image file")
        fp = label
    else:
        raise TypeError(
            f"read_image() takes a path or bytes, not {type(source).__name__}"
        )
    if max_side < 1:
        raise ImageError(f"max_side must be a positive number of pixels, got {max_side}")

    Image = _pil()
    unreadable = (
        f"{label}: not a readable image; use a PNG, JPEG, BMP or GIF file"
    )
    try:
        img = Image.open(fp, formats=_open_formats(Image))
    except Image.DecompressionBombError:
        # Pillow itself refuses, at open time, headers above twice its
        # MAX_IMAGE_PIXELS (~179 Mpx); the size is not available to us then.
        raise ImageError(_too_large(label, max_side)) from None
    except FileNotFoundError:  # removed between the check and the open
        raise ImageError(f"{label}: no such file; check the image path") from None
    except Image.UnidentifiedImageError:
        raise ImageError(unreadable) from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied; check the file's permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise ImageError(f"{unreadable} ({_one_line(exc)})") from None

    width, height = img.size
    # img.size comes from the header; nothing has been decoded yet.
    if width > max_side or height > max_side:
        img.close()
        raise ImageError(
            f"{label}: the image is {width}x{height} pixels, larger than "
            f"the {max_side}x{max_side} limit; shrink it first"
        )
    if width < 1 or height < 1:
        img.close()
        raise ImageError(f"{label}: the image has no pixels ({width}x{height})")
    return img, label


def image_size(data: bytes) -> tuple[int, int] | None:
    """``(width, height)`` of encoded image bytes, from the header alone; None if unreadable."""
    try:
        Image = _pil()
        with Image.open(io.BytesIO(data), formats=_open_formats(Image)) as img:
            return img.size
    except Exception:  # noqa: BLE001 - anything unreadable; read_image says why when asked
        return None


def _too_large(label: str, max_side: int) -> str:
    return (f"{label}: the image is too large (Pillow refuses it as a possible "
            f"decompression bomb); shrink it to at most {max_side}x{max_side} pixels")


def _decode(img: Any, label: str, max_side: int, convert: Any) -> np.ndarray:
    """Decode an opened image, turn it upright and return ``convert(image)``.

    Every decoding failure becomes one ImageError line naming ``label``.
    """
    Image = _pil()
    try:
        img.load()
        return convert(_exif_upright(img))
    except Image.DecompressionBombError:
        raise ImageError(_too_large(label, max_side)) from None
    except (
        OSError, SyntaxError, ValueError, EOFError, IndexError,
        struct.error, zlib.error,
    ) as exc:
        raise ImageError(
            f"{label}: the image data is truncated or corrupt "
            f"({_one_line(exc)}); save or upload the image again"
        ) from None


def _exif_upright(img: Any) -> Any:
    """Apply a JPEG's EXIF orientation (phone photos), else return ``img``."""
    if img.format not in ("JPEG", "TIFF", "WEBP"):
        return img
    from PIL import ImageOps

    return ImageOps.exif_transpose(img)


def _to_gray(img: Any) -> np.ndarray:
    """A loaded Pillow image as float32 ``(H, W)`` grayscale in [0, 1], 1 = white."""
    mode = img.mode
    if mode.startswith("I;16"):
        # 16-bit grayscale (PNG, TIFF): keep the full precision.  (A rare
        # 16-bit transparent colour key is ignored.)
        return np.asarray(img).astype(np.float32) / np.float32(65535)
    if mode in ("I", "F"):
        # 32-bit int or float: the file does not say what white is.  Older
        # Pillow reads 16-bit PNGs as "I", so guess the nominal range from the
        # largest value: 1 (float images), 255 or 65535.
        a = np.asarray(img, dtype=np.float64)
        if not np.all(np.isfinite(a)):
            raise ValueError("the image contains NaN or infinite pixels")
        top = float(a.max(initial=0.0))
        full = 1.0 if (mode == "F" and top <= 1.0) else (255.0 if top <= 255.0 else 65535.0)
        return np.clip(a / full, 0.0, 1.0).astype(np.float32)

    has_alpha = "A" in img.getbands() or "a" in img.getbands() or "transparency" in img.info
    if not has_alpha:
        return np.asarray(img.convert("L"), dtype=np.float32) / np.float32(255)

    rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / np.float32(255)
    luma = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114
    alpha = rgba[..., 3]
    background = 1.0  # composite over white, as a viewer would show it
    if np.median(_border(alpha)) < 0.5 and alpha.sum() > 0:
        # A canvas: transparent where nothing was drawn.  What counts is the
        # strokes' own colour (transparent pixels' RGB is arbitrary, often
        # black), so weight the luma by alpha.  Light strokes get a black
        # background, or compositing over white would erase them.
        stroke_luma = float((luma * alpha).sum() / alpha.sum())
        if stroke_luma >= 0.5:
            background = 0.0
    gray = luma * alpha + np.float32(background) * (1 - alpha)
    return np.clip(gray, 0.0, 1.0).astype(np.float32)


def _gray_pixels(img: Any) -> np.ndarray:
    """A loaded image's grayscale pixels for :func:`mnist_preprocess`.

    uint8 ``(H, W)`` whenever the picture is 8-bit gray or colour without
    transparency (an opaque canvas included): :func:`mnist_preprocess` reads
    those values exactly as :func:`_to_gray`'s floats, only faster.  Colour
    is reduced by Pillow's ``"L"`` conversion, which rounds the same luma to
    whole steps of 1/255 (at most 0.5/255 from the float luma).  Anything
    else -- 16- and 32-bit images, real transparency -- goes through
    :func:`_to_gray`: float32 in [0, 1].
    """
    mode = img.mode
    if mode == "L":
        return np.asarray(img)
    if mode in ("RGBA", "LA"):
        # An opaque canvas (the drawing page sends one) carries an alpha
        # band that says nothing: every pixel 255.
        if np.asarray(img.getchannel("A")).min() == 255:
            return np.asarray(img.convert("L"))
        return _to_gray(img)
    bands = img.getbands()
    if mode.startswith("I") or mode == "F" or "A" in bands or "a" in bands or "transparency" in img.info:
        return _to_gray(img)
    return np.asarray(img.convert("L"))


def _border(a: np.ndarray) -> np.ndarray:
    """The outermost rows and columns of a 2-D array, as one 1-D array."""
    if a.shape[0] <= 2 or a.shape[1] <= 2:
        return a.ravel()
    return np.concatenate([a[0], a[-1], a[1:-1, 0], a[1:-1, -1]])


# --------------------------------------------------------------------------
# MNIST normalisation


def _as_gray_array(gray: Any) -> np.ndarray:
    """Validate ``gray`` and return it as float32 ``(H, W)`` in [0, 1].

    Float32 input already in range is returned as is (no copy): callers must
    not write into the result.
    """
    a = np.asarray(gray)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(
            f"expected a 2-D grayscale image array of shape (H, W), got shape {a.shape}"
        )
    if a.dtype == np.bool_:
        return a.astype(np.float32)
    if a.dtype == np.uint8:
        return a.astype(np.float32) / np.float32(255)
    if a.dtype == np.uint16:
        return a.astype(np.float32) / np.float32(65535)
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"expected a numeric image array, got dtype {a.dtype}")
    a = a.astype(np.float32, copy=False)
    # min and max propagate NaN, so two passes check finiteness and range.
    lo, hi = float(a.min()), float(a.max())
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ImageError("the image array contains NaN or infinite values")
    if lo < -1e-6 or hi > 1 + 1e-6:
        raise ImageError(
            f"image values must lie in [0, 1], got [{lo:g}, {hi:g}]; "
            "divide 8-bit pixel values by 255"
        )
    return a if (lo >= 0 and hi <= 1) else np.clip(a, 0.0, 1.0)


def _dark_ink_on_light(gray: np.ndarray, background: float) -> bool:
    """True when the ink is darker than the background (pen on paper).

    Votes with the pixels that stand out from the background: the total
    darkness below it against the total brightness above it.  Unlike
    "is the border brighter than 0.5" this also gets a white digit on grey,
    or a pencil digit on dim grey paper, right.
    """
    deviation = gray - np.float32(background)
    darker = np.clip(-deviation - _POLARITY_NOISE, 0, None).sum(dtype=np.float64)
    lighter = np.clip(deviation - _POLARITY_NOISE, 0, None).sum(dtype=np.float64)
    return bool(darker > lighter)


#: What each 8-bit value is on the 0..1 scale: exactly what _as_gray_array makes of it.
_LEVELS = np.arange(256, dtype=np.float32) / np.float32(255)


def _check_invert(invert: Any) -> bool:
    """Validate ``invert``; True when the polarity is to be worked out ("auto")."""
    auto = isinstance(invert, str) and invert == "auto"
    if not auto and not isinstance(invert, (bool, np.bool_)):
        raise ImageError(f"invert must be 'auto', True or False, got {invert!r}")
    return auto


def _blank() -> BlankImageError:
    return BlankImageError(
        "the image is blank: no digit found; "
        "draw a digit with clear contrast against the background"
    )


def _ink_crop(a: np.ndarray, invert: Union[bool, str]) -> np.ndarray:
    """Steps 1-3 of :func:`mnist_preprocess` on float32 ``(H, W)`` in [0, 1].

    Returns the ink inside its bounding box: float32 ``(h, w)``, >= 0, with
    the background level at 0 (not yet scaled to a strongest ink of 1).
    """
    background = float(np.median(_border(a)))
    if _check_invert(invert):
        # The vote needs totals, not every pixel: a strided view of at most
        # ~512x512 keeps big photos cheap and is still deterministic.
        step = max(1, -(-max(a.shape) // 512))
        dark_on_light = _dark_ink_on_light(a[::step, ::step], background)
    else:
        dark_on_light = bool(invert)
    # Ink above the background level: grey paper or a grey canvas becomes 0.
    if dark_on_light:
        ink = np.float32(background) - a  # == (1 - a) - (1 - background)
    else:
        ink = a - np.float32(background)
    np.maximum(ink, 0, out=ink)
    strongest = float(ink.max())
    if strongest < MIN_CONTRAST:
        raise _blank()
    mask = ink > np.float32(CROP_LEVEL * strongest)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    return ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def _ink_crop_8bit(a: np.ndarray, invert: Union[bool, str]) -> np.ndarray:
    """:func:`_ink_crop` for uint8 pixels, without a float copy of the whole picture.

    The same steps and the same float32 arithmetic, per 8-bit level instead
    of per pixel: the background is the median of the border's levels, the
    polarity vote sums the same clipped deviations (grouped by level, so
    only its rounding can differ), and the crop threshold becomes a cut
    between two levels, since the ink is monotone in the level.  Only the
    crop is converted to float.
    """
    background = _median_level(_border(a))
    bg = np.float32(background)
    if _check_invert(invert):
        step = max(1, -(-max(a.shape) // 512))
        dark_on_light = _dark_ink_on_light_8bit(a[::step, ::step], bg)
    else:
        dark_on_light = bool(invert)
    ink_of = (bg - _LEVELS) if dark_on_light else (_LEVELS - bg)
    np.maximum(ink_of, 0, out=ink_of)
    # Ink decreases with the level for dark ink and increases for light ink.
    strongest = float(ink_of[int(a.min())] if dark_on_light else ink_of[int(a.max())])
    if strongest < MIN_CONTRAST:
        raise _blank()
    inked = np.flatnonzero(ink_of > np.float32(CROP_LEVEL * strongest))
    # inked is a run of levels at the dark end (dark ink) or the light end.
    mask = (a <= inked[-1]) if dark_on_light else (a >= inked[0])
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1].astype(np.float32)
    crop /= np.float32(255)  # the same float32 values as _LEVELS[crop]
    if dark_on_light:
        np.subtract(bg, crop, out=crop)
    else:
        np.subtract(crop, bg, out=crop)
    return np.maximum(crop, 0, out=crop)


def _median_level(values: np.ndarray) -> float:
    """``np.median`` of uint8 ``values`` on the 0..1 scale (of their _LEVELS), from their counts."""
    counts = np.cumsum(np.bincount(values, minlength=256))
    n = int(counts[-1])
    low = int(np.searchsorted(counts, (n - 1) // 2, side="right"))  # the ((n-1)//2)-th smallest
    high = int(np.searchsorted(counts, n // 2, side="right"))       # the (n//2)-th smallest
    # np.median's mean of the two middle values, in float32 as it computes it.
    return float((_LEVELS[low] + _LEVELS[high]) / np.float32(2)) if low != high else float(_LEVELS[low])


def _dark_ink_on_light_8bit(a: np.ndarray, bg: np.float32) -> bool:
    """:func:`_dark_ink_on_light` for uint8 pixels (``bg`` on the 0..1 scale).

    The darker total is the sum over pixels at levels v below the cut
    ``bg - noise`` of ``(bg - noise) - v/255``: a count and a sum of levels,
    no float image needed (and no histogram, which is slow on a canvas of
    one colour).  Likewise the lighter total above ``bg + noise``.
    """
    n = a.size
    wide = np.uint32 if n < 2**24 else np.uint64  # 255 * 2**24 < 2**32: a sum that cannot overflow
    low = bg - np.float32(_POLARITY_NOISE)   # float32, as the float path computes it
    high = bg + np.float32(_POLARITY_NOISE)
    # Levels strictly below `low` (dark side) and strictly above `high`.
    below = int(np.searchsorted(_LEVELS, low, side="left"))    # levels 0 .. below-1
    above = int(np.searchsorted(_LEVELS, high, side="right"))  # levels above .. 255
    darker = lighter = 0.0
    if below > 0:
        cut = np.uint8(below)  # below <= 255 here: low < 1
        n_below = int(np.count_nonzero(a < cut))
        sum_below = int(np.minimum(a, cut).sum(dtype=wide)) - int(cut) * (n - n_below)
        darker = n_below * float(low) - sum_below / 255
    if darker <= 0:
        return False  # nothing darker (a black canvas): the lighter total cannot lose
    if above < 256:
        cut = np.uint8(above)
        n_above = int(np.count_nonzero(a >= cut))
        sum_above = int(np.maximum(a, cut).sum(dtype=wide)) - int(cut) * (n - n_above)
        lighter = sum_above / 255 - n_above * float(high)
    return darker > lighter


#: The output pixels' edges, 0..28, along one axis.
_EDGES = np.arange(FRAME_SIDE + 1, dtype=np.float64)
#: How close (px) the centre of mass is put to CENTRE when it can be.
_COM_TOLERANCE = 1e-4


def _resample_matrix(n_in: int, scale: float, offset: float, n_out: int = FRAME_SIDE) -> np.ndarray:
    """Weights mapping ``n_in`` source pixels onto ``n_out`` output pixels.

    Edge coordinates: source pixel i covers [i, i+1), output pixel j covers
    [j, j+1), and source position x lands on output position
    ``scale * x + offset``.  The source is read as the continuous function
    that interpolates linearly between pixel centres, stays constant from the
    first/last centre out to the crop's edge and is zero beyond it; output
    pixel j is the mean of that function over its own square.  Downscaling
    this is area averaging (full anti-aliasing); upscaling it is bilinear
    interpolation; either way the result is a convex combination, confined to
    the mapped box.

    Built from the integral of each source pixel's share of that function
    from 0 to every output edge x (see :class:`_AreaIntegral`): 1 for the
    pixels whose centres lie more than a pixel before x, 1/2 for the one whose
    centre k - 0.5 lies just before it, plus the two quadratic pieces of the
    stretch between the centres on either side of x.

    Returns float64 ``(n_out, n_in)``; ``out = W_rows @ crop @ W_cols.T``.
    """
    edges = np.clip((np.arange(n_out + 1) - offset) / scale, 0.0, n_in)
    k = (edges + 0.5).astype(np.intp)  # x lies between the centres of pixels k - 1 and k
    t = edges - k + 0.5               # ... t of the way from the first
    pixel = np.arange(n_in)
    before = (k - 1)[:, None]
    integral = (pixel < before).astype(np.float64)
    integral += 0.5 * (pixel == before)
    integral[k == 0, 0] = -0.5  # from 0 back to the centre at -0.5 of pixel 0 (read as pixel -1)
    rows = np.arange(n_out + 1)
    integral[rows, np.maximum(k - 1, 0)] += t * (1 - 0.5 * t)
    integral[rows, np.minimum(k, n_in - 1)] += 0.5 * t * t
    weights = (integral[1:] - integral[:-1]) * scale
    # Rounding can leave ~1e-16 on a pixel just past the box; keep the
    # background exactly 0, as in MNIST.
    weights[weights < 1e-9] = 0.0
    return weights


class _AreaIntegral:
    """A profile's continuous image, integrated from 0: what :func:`_resample_matrix` averages.

    ``a`` (float64 ``(n,)``) is read as _resample_matrix reads it: linear
    between pixel centres (pixel i covers [i, i+1), centre i + 0.5), flat
    from the first/last centre out to the edge, zero beyond.  The integral
    from 0 is piecewise quadratic, with value ``(C[k-1] + C[k]) / 2`` at the
    centre ``k - 0.5`` of pixel k (``C[k]``: the sum of the first k pixels,
    one cumulative sum computed once); :meth:`at` evaluates it anywhere in
    [0, n].  Output pixel j then holds ``scale * (at(hi_j) - at(lo_j))``, the
    same number as ``(_resample_matrix(...) @ a)[j]``, without building the
    matrix: what the centring below needs, evaluated for several offsets.
    """

    def __init__(self, a: np.ndarray):
        self.n = n = a.shape[0]
        self.a = a
        self.sums = np.empty(n + 1, np.float64)  # the sums of the first k pixels, k = 0..n
        self.sums[0] = 0.0
        np.cumsum(a, out=self.sums[1:])

    def at(self, x: np.ndarray) -> np.ndarray:
        """The integral from 0 to each ``x`` (float64, within [0, n])."""
        # x lies t of the way from the centre of pixel k - 1 (at k - 0.5) to
        # that of pixel k, with k = floor(x + 0.5) <= n; pixels -1 and n read
        # as pixels 0 and n - 1: the flat ends.
        k = (x + 0.5).astype(np.intp)  # x >= 0: truncation is floor
        t = x - k + 0.5
        before = np.maximum(k - 1, 0)
        here, there = self.a[before], self.a[np.minimum(k, self.n - 1)]
        at_centre = (self.sums[before] + self.sums[k]) * 0.5
        at_centre[k == 0] = -0.5 * self.a[0]  # from 0 back to the centre at -0.5
        return at_centre + t * (here + (there - here) * (0.5 * t))


def _centred_offset(profile: np.ndarray, scale: float) -> float:
    """Offset that puts this axis's centre of mass on CENTRE (index coords).

    ``profile`` is the crop's ink summed over the other axis, float64
    ``(n,)``.  Because the mapped crop always lies inside the frame, every
    source pixel hands exactly ``scale`` of its mass to the output, so the
    output's profile along this axis is the resampled profile and the 2-D
    centre of mass can be solved one axis at a time.  The offset is kept
    within [0, FRAME_SIDE - scale * n] so that no ink leaves the frame; for
    a lopsided shape (mass bunched at one end) that wins over exact centring.
    """
    n = profile.size
    lowest, highest = 0.0, FRAME_SIDE - scale * n
    integral = _AreaIntegral(profile)

    def centre_of(offset: float) -> float:
        # With G the integral at the 29 output edges, output pixel j holds
        # scale * (G[j+1] - G[j]), and summing by parts,
        # sum_j j * (G[j+1] - G[j]) = 28 * G[28] - sum_{j=1..28} G[j].
        g = integral.at(np.clip((_EDGES - offset) / scale, 0.0, n))
        return float((FRAME_SIDE * g[-1] - g[1:].sum()) / (g[-1] - g[0]))

    def clamp(offset: float) -> float:
        return min(max(offset, lowest), highest)

    # First guess: map the source's centre of mass (edge coordinates) onto
    # CENTRE + 0.5.  For ordinary strokes the output's centre of mass then
    # moves one for one with the offset, and a step or two fixes the few
    # hundredths that sampling onto whole pixels adds.
    source_com = float(profile @ (np.arange(n) + 0.5) / integral.sums[-1])
    offset = clamp(CENTRE + 0.5 - scale * source_com)
    for _ in range(3):
        error = CENTRE - centre_of(offset)
        if abs(error) < _COM_TOLERANCE:
            return offset
        offset = clamp(offset + error)
    # Features thinner than an output pixel make the centre of mass a
    # staircase in the offset (a thin bar moves inside one pixel without
    # moving the centre).  It is still continuous and non-decreasing, so
    # bisection finds the crossing -- or the frame's edge, when centring
    # would push ink out.
    lo, hi = lowest, highest
    if centre_of(lo) >= CENTRE:
        return lo
    if centre_of(hi) <= CENTRE:
        return hi
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        centre = centre_of(mid)
        if abs(centre - CENTRE) < _COM_TOLERANCE:
            return mid
        lo, hi = (mid, hi) if centre < CENTRE else (lo, mid)
    return 0.5 * (lo + hi)


def _fit_into_frame(crop: np.ndarray) -> np.ndarray:
    """Steps 4 and 5 of :func:`mnist_preprocess`: the ink crop -> 28x28 in [0, 1].

    ``crop``: float32 ``(h, w)``, the ink inside its bounding box (>= 0).
    Scaled by ``20 / max(h, w)`` and placed at the sub-pixel offsets that put
    its centre of mass on the frame's centre (found with :class:`_AreaIntegral`
    on the two profiles), in one resampling pass: two matrix products.
    """
    height, width = crop.shape
    scale = BOX_SIDE / max(height, width)
    ink = crop.astype(np.float64)  # the profiles in float64, as matrix-vector products
    row_offset = _centred_offset(ink @ np.ones(width), scale)
    col_offset = _centred_offset(np.ones(height) @ ink, scale)
    row_weights = _resample_matrix(height, scale, row_offset).astype(np.float32)
    col_weights = _resample_matrix(width, scale, col_offset).astype(np.float32)
    # (28, H) @ (H, W) first: one pass over the crop, then a tiny product.
    out = (row_weights @ crop) @ col_weights.T
    # Every MNIST digit reaches full intensity (255), so the output's
    # brightest pixel is set to 1.  For ordinary strokes it is there already
    # (within a few per cent); a thin pen in a big photo shrinks to strokes
    # far narrower than a pixel, which area averaging would leave faint.
    brightest = float(out.max())
    if brightest <= 0:  # cannot happen: the crop holds ink above CROP_LEVEL
        raise _blank()
    out /= np.float32(brightest)  # division: the brightest becomes exactly 1
    # Non-negative weights and a positive scale: the clip only trims rounding.
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def mnist_preprocess(gray: Any, *, invert: Union[bool, str] = "auto") -> np.ndarray:
    """Normalise a grayscale picture of one digit the way MNIST's digits were.

    Parameters
    ----------
    gray:
        Array-like ``(H, W)``: float in [0, 1] with 1 = white (what
        :func:`read_image` returns), or uint8 / uint16 pixel values (uint8
        takes a faster route to the same result).
    invert:
        ``"auto"`` (default) decides from the picture whether the ink is dark
        on a light background (it is then inverted) or light on dark; ``True``
        forces dark-on-light, ``False`` light-on-dark.

    Returns
    -------
    np.ndarray
        float32, shape ``(28, 28)``, values in [0, 1], ink = 1 on background
        0, as in MNIST.

    Steps:

    1. Polarity.  The background level is the median of the border pixels;
       ``"auto"`` inverts when the pixels that differ from it are mostly
       darker than it.
    2. Ink = ``gray`` or ``1 - gray``, minus the background level (grey paper
       becomes 0), clipped at 0.  Less than 0.1 of contrast means blank.
    3. Crop to the bounding box of ink above ``CROP_LEVEL`` (0.1), so JPEG
       noise does not enlarge it.
    4. Scale the crop so its longer side is 20 pixels, aspect ratio kept,
       anti-aliased (exact area averaging; bilinear when enlarging), and
       place it in the 28x28 frame with a sub-pixel offset that puts the
       centre of mass at (14, 14) in index coordinates -- both in a single
       resampling pass (see the module docstring).  Should that centring
       push ink past the frame's edge (a lopsided shape), the digit is
       instead kept inside the frame, as close to centred as it can be.
    5. Scale intensities so the brightest output pixel is 1, as in every
       MNIST digit.

    Raises
    ------
    ImageError
        Not a 2-D array, NaN or infinite values, values outside [0, 1], a
        bad ``invert``, or no ink: "the image is blank: no digit found".
    """
    _check_invert(invert)
    a = np.asarray(gray)
    if a.dtype == np.uint8 and a.ndim == 2 and a.size:
        crop = _ink_crop_8bit(a, invert)
    else:
        crop = _ink_crop(_as_gray_array(a), invert)
    return _fit_into_frame(crop)


def preprocess_image(
    source: Source, *, invert: Union[bool, str] = "auto", max_side: int = DEFAULT_MAX_SIDE
) -> np.ndarray:
    """Read an image and normalise it for the network.

    ``source`` is a path or encoded bytes (see :func:`read_image`);
    ``invert`` as in :func:`mnist_preprocess`.  Returns float32 ``(784,)``
    in [0, 1], ink = 1, ready for ``network.predict``.  Raises ImageError,
    whose message names the file when there is one.

    The same result as ``mnist_preprocess(read_image(source))``, faster: an
    8-bit picture stays 8-bit until the digit is cropped out of it (see
    :func:`_gray_pixels`).
    """
    _check_invert(invert)
    img, label = _open_image(source, max_side)
    with img:
        pixels = _decode(img, label, max_side, _gray_pixels)
    try:
        digit = mnist_preprocess(pixels, invert=invert)
    except ImageError as exc:
        if isinstance(source, (bytes, bytearray, memoryview)):
            raise
        raise ImageError(f"{label}: {exc}") from None
    return digit.reshape(FRAME_SIDE * FRAME_SIDE)


# --------------------------------------------------------------------------
# Arrays back to pictures


def _display_array(x: Any) -> np.ndarray:
    """Validate ``x`` ((784,) or (H, W), in [0, 1]) and return uint8 (H, W)."""
    a = np.asarray(x)
    if a.ndim == 1 and a.size == FRAME_SIDE * FRAME_SIDE:
        a = a.reshape(FRAME_SIDE, FRAME_SIDE)
    if a.ndim != 2 or a.shape[0] < 1 or a.shape[1] < 1:
        raise ImageError(
            f"expected a digit of shape (784,) or (28, 28), got shape {np.shape(x)}"
        )
    if not (np.issubdtype(a.dtype, np.number) or a.dtype == np.bool_):
        raise ImageError(f"expected a numeric array, got dtype {a.dtype}")
    a = a.astype(np.float64)
    if not np.all(np.isfinite(a)):
        raise ImageError("the array contains NaN or infinite values")
    return np.round(np.clip(a, 0.0, 1.0) * 255).astype(np.uint8)


def image_from_array(x: Any, *, scale: int = 1) -> Any:
    """A digit array as a Pillow grayscale (``"L"``) image.

    ``x``: (784,) or (H, W), typically (28, 28), values in [0, 1] (clipped),
    shown as they are: 1 = white, so an MNIST digit is white on black.
    ``scale``: whole-number enlargement with square pixels (nearest neighbour),
    1..64.  Returns ``PIL.Image.Image`` of size ``(W * scale, H * scale)``.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or not 1 <= scale <= 64:
        raise ImageError(f"scale must be a whole number from 1 to 64, got {scale!r}")
    pixels = _display_array(x)
    if scale > 1:
        # Nearest-neighbour enlargement: repeat rows, then columns.
        pixels = np.repeat(np.repeat(pixels, scale, axis=0), scale, axis=1)
    Image = _pil()
    # A 2-D uint8 array becomes an "L" image (fromarray's mode= is deprecated).
    return Image.fromarray(np.ascontiguousarray(pixels))


def to_png_bytes(x: Any, scale: int = 1) -> bytes:
    """Encode a digit array as PNG bytes (see :func:`image_from_array`)."""
    buffer = io.BytesIO()
    image_from_array(x, scale=scale).save(buffer, format="PNG")
    return buffer.getvalue()
