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

#: How close (px) the centre of mass is put to CENTRE when it can be.
_COM_TOLERANCE = 1e-4

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
        raise ImageError(
            f"{label}: the image is too large (Pillow refuses it as a possible "
            f"decompression bomb); shrink it to at most {max_side}x{max_side} pixels"
        ) from None
    except FileNotFoundError:  # removed between the check and the open
        raise ImageError(f"{label}: no such file; check the image path") from None
    except Image.UnidentifiedImageError:
        raise ImageError(unreadable) from None
    except PermissionError:
        raise ImageError(f"{label}: permission denied; check the file's permissions") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, struct.error) as exc:
        raise ImageError(f"{unreadable} ({_one_line(exc)})") from None

    with img:
        width, height = img.size
        # img.size comes from the header; nothing has been decoded yet.
        if width > max_side or height > max_side:
            raise ImageError(
                f"{label}: the image is {width}x{height} pixels, larger than "
                f"the {max_side}x{max_side} limit; shrink it first"
            )
        if width < 1 or height < 1:
            raise ImageError(f"{label}: the image has no pixels ({width}x{height})")
        try:
            img.load()
            gray = _to_gray(_exif_upright(img))
        except Image.DecompressionBombError:
            raise ImageError(
                f"{label}: the image is too large (Pillow refuses it as a possible "
                f"decompression bomb); shrink it to at most {max_side}x{max_side} pixels"
            ) from None
        except (
            OSError, SyntaxError, ValueError, EOFError, IndexError,
            struct.error, zlib.error,
        ) as exc:
            raise ImageError(
                f"{label}: the image data is truncated or corrupt "
                f"({_one_line(exc)}); save or upload the image again"
            ) from None
    return gray


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


def _tent_cdf(x: np.ndarray) -> np.ndarray:
    """Integral from -inf to ``x`` of the hat function max(0, 1 - |t|)."""
    x = np.clip(x, -1.0, 1.0)
    return np.where(x < 0, 0.5 * (1 + x) ** 2, 1 - 0.5 * (1 - x) ** 2)


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

    Returns float64 ``(n_out, n_in)``; ``out = W_rows @ crop @ W_cols.T``.
    """
    j = np.arange(n_out, dtype=np.float64)
    # Output pixel j's square, in source coordinates, cut to the crop [0, n_in].
    lo = np.clip((j - offset) / scale, 0.0, n_in)[:, None]
    hi = np.clip((j + 1 - offset) / scale, 0.0, n_in)[:, None]
    # Hat functions centred on the pixel centres, plus one replicated pixel on
    # each side so that the reconstruction is flat out to the crop's edges.
    centres = np.arange(-1, n_in + 1, dtype=np.float64) + 0.5
    weights = (_tent_cdf(hi - centres) - _tent_cdf(lo - centres)) * scale
    weights[:, 1] += weights[:, 0]
    weights[:, -2] += weights[:, -1]
    # Rounding can leave ~1e-16 on a pixel just past the box; keep the
    # background exactly 0, as in MNIST.
    weights[weights < 1e-9] = 0.0
    return weights[:, 1:-1]


def _centred_offset(profile: np.ndarray, scale: float) -> float:
    """Offset that puts this axis's centre of mass on CENTRE (index coords).

    ``profile`` is the crop's ink summed over the other axis, float64
    ``(n,)``.  Because the mapped crop always lies inside the frame, every
    source pixel hands exactly ``scale`` of its mass to the output, so the
    output's profile along this axis is ``W @ profile`` and the 2-D centre of
    mass can be solved one axis at a time.  The offset is kept within
    [0, FRAME_SIDE - scale * n] so that no ink leaves the frame; for a
    lopsided shape (mass bunched at one end) that wins over exact centring.
    """
    n = profile.size
    lowest, highest = 0.0, FRAME_SIDE - scale * n
    index = np.arange(FRAME_SIDE, dtype=np.float64)

    def centre_of(offset: float) -> float:
        out = _resample_matrix(n, scale, offset) @ profile
        return float((out * index).sum() / out.sum())

    def clamp(offset: float) -> float:
        return min(max(offset, lowest), highest)

    # First guess: map the source's centre of mass (edge coordinates) onto
    # CENTRE + 0.5.  For ordinary strokes the output's centre of mass then
    # moves one for one with the offset, and a step or two fixes the few
    # hundredths that sampling onto whole pixels adds.
    source_com = float((profile * (np.arange(n) + 0.5)).sum() / profile.sum())
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


def mnist_preprocess(gray: Any, *, invert: Union[bool, str] = "auto") -> np.ndarray:
    """Normalise a grayscale picture of one digit the way MNIST's digits were.

    Parameters
    ----------
    gray:
        Array-like ``(H, W)``: float in [0, 1] with 1 = white (what
        :func:`read_image` returns), or uint8 / uint16 pixel values.
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
    a = _as_gray_array(gray)
    auto = isinstance(invert, str) and invert == "auto"
    if not auto and not isinstance(invert, (bool, np.bool_)):
        raise ImageError(f"invert must be 'auto', True or False, got {invert!r}")

    background = float(np.median(_border(a)))
    if auto:
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
        raise BlankImageError(
            "the image is blank: no digit found; "
            "draw a digit with clear contrast against the background"
        )
    # The strongest ink is scaled to 1 at the end, on the small output (it is
    # linear, so the crop threshold just scales along).
    mask = ink > np.float32(CROP_LEVEL * strongest)
    rows = np.flatnonzero(mask.any(axis=1))
    cols = np.flatnonzero(mask.any(axis=0))
    crop = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
    height, width = crop.shape
    scale = BOX_SIDE / max(height, width)

    row_offset = _centred_offset(crop.sum(axis=1, dtype=np.float64), scale)
    col_offset = _centred_offset(crop.sum(axis=0, dtype=np.float64), scale)
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
        raise BlankImageError("the image is blank: no digit found")
    out /= np.float32(brightest)  # division: the brightest becomes exactly 1
    # Non-negative weights and a positive scale: the clip only trims rounding.
    return np.clip(out, 0.0, 1.0).astype(np.float32, copy=False)


def preprocess_image(
    source: Source, *, invert: Union[bool, str] = "auto", max_side: int = DEFAULT_MAX_SIDE
) -> np.ndarray:
    """Read an image and normalise it for the network.

    ``source`` is a path or encoded bytes (see :func:`read_image`);
    ``invert`` as in :func:`mnist_preprocess`.  Returns float32 ``(784,)``
    in [0, 1], ink = 1, ready for ``network.predict``.  Raises ImageError,
    whose message names the file when there is one.
    """
    gray = read_image(source, max_side=max_side)
    try:
        digit = mnist_preprocess(gray, invert=invert)
    except ImageError as exc:
        if isinstance(source, (bytes, bytearray, memoryview)):
            raise
        raise ImageError(f"{os.fsdecode(os.fspath(source))}: {exc}") from None
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
