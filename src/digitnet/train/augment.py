"""Data augmentation: small random changes to the training images, new every epoch.

A network that sees every digit moved a pixel this way or that learns that a
digit's position does not matter, which a fully connected network cannot
know by itself: on MNIST, random shifts of at most one pixel take the
``best`` preset's test accuracy from about 98.5% to about 99%.

:class:`Distort` goes further: elastic distortions (Simard et al. 2003) and
small rotations, scalings and shears, the deformations behind the best
plain-MLP results on MNIST (Cireşan et al. 2010).

An augmentation is a callable ``augment(X, rng) -> None`` that changes the
rows of ``X`` ``(n, n_features)`` **in place**, drawing its randomness from
the ``numpy.random.Generator`` ``rng``.  :func:`digitnet.train.fit` calls
it on its own copy of each group of training rows it gathers (the caller's
data is never touched), with a generator seeded by ``(seed, epoch)``, so one
seed still fixes the whole run and a resumed run sees what the uninterrupted
one would have.  An augmentation may also have a method
``set_epoch(epoch, epochs)``, which ``fit`` calls before each epoch
(:class:`Distort` uses it to fade out at the end of a run).
"""

from __future__ import annotations

import math

import numpy as np

from ..errors import DataError, DigitnetError


class RandomShift:
    """Move each image by a random whole number of pixels, at most ``max_shift`` each way.

    For every row the vertical and horizontal moves are drawn independently
    and uniformly from ``−max_shift … max_shift`` (so with ``max_shift=1``
    one image in nine stays where it is); pixels moved in from outside the
    frame are 0 (background), pixels moved out are dropped.

    ``image_shape`` is ``(height, width)``; by default each row is taken to
    be a square image (784 features: 28 × 28).
    """

    def __init__(self, max_shift: int = 1, image_shape: tuple[int, int] | None = None):
        if isinstance(max_shift, bool) or not isinstance(max_shift, (int, np.integer)) or max_shift < 0:
            raise DigitnetError(f"the shift must be a whole number of pixels ≥ 0, got {max_shift!r}")
        self.max_shift = int(max_shift)
        self.image_shape = None if image_shape is None else _check_shape(image_shape)
        self._padded = None   # reused frame with a zero border (only its centre is ever written)

    def __repr__(self) -> str:
        return f"RandomShift(max_shift={self.max_shift})"

    def shape_for(self, n_features: int) -> tuple[int, int]:
        """The image shape of rows with ``n_features`` values (see ``image_shape``)."""
        if self.image_shape is not None:
            if self.image_shape[0] * self.image_shape[1] != n_features:
                raise DataError(f"images of {self.image_shape[0]}×{self.image_shape[1]} pixels need "
                                f"{self.image_shape[0] * self.image_shape[1]} features per row, "
                                f"not {n_features}")
            return self.image_shape
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise DataError(f"random shifts and distortions move square images (MNIST's 784 values "
                            f"are 28×28), but these rows have {n_features} values: turn them off, or "
                            f"give {type(self).__name__} an image_shape=(height, width)")
        return side, side

    def __call__(self, X: np.ndarray, rng: np.random.Generator) -> None:
        n, s = len(X), self.max_shift
        if s == 0 or n == 0:
            return
        h, w = self.shape_for(X.shape[1])
        images = X.reshape(n, h, w)           # a view: X's rows are contiguous
        # The images inside a zero frame s pixels wide; a moved image is then
        # one (h, w) window of it: moved by (dy, dx), pixel (y, x) comes from
        # (y − dy, x − dx), which is padded[s + y − dy, s + x − dx].
        padded, frame = self._padded, (h + 2 * s, w + 2 * s)
        if padded is None or len(padded) < n or padded.dtype != X.dtype or padded.shape[1:] != frame:
            padded = self._padded = np.zeros((n, *frame), X.dtype)
        padded = padded[:n]
        padded[:, s:s + h, s:s + w] = images
        dy = rng.integers(-s, s + 1, n)
        dx = rng.integers(-s, s + 1, n)
        # One gather and one scatter per distinct move, not one per image.
        move = (dy + s) * (2 * s + 1) + (dx + s)
        for code in np.unique(move):
            y_move, x_move = int(code) // (2 * s + 1) - s, int(code) % (2 * s + 1) - s
            if y_move == 0 and x_move == 0:
                continue
            rows = np.flatnonzero(move == code)
            images[rows] = padded[rows, s - y_move:s - y_move + h, s - x_move:s - x_move + w]


def _check_shape(shape) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in shape)
    except (TypeError, ValueError):
        raise DigitnetError(f"image_shape must be (height, width), got {shape!r}") from None
    if h < 1 or w < 1:
        raise DigitnetError(f"image_shape must be positive, got {shape!r}")
    return h, w


class Compose:
    """Several augmentations, one after the other, drawing in turn from the one generator."""

    def __init__(self, steps):
        self.steps = list(steps)

    def __repr__(self) -> str:
        return f"Compose({self.steps!r})"

    def shape_for(self, n_features: int):
        shapes = [step.shape_for(n_features) for step in self.steps if hasattr(step, "shape_for")]
        return shapes[0] if shapes else None

    def set_epoch(self, epoch: int, epochs: int) -> None:
        for step in self.steps:
            if hasattr(step, "set_epoch"):
                step.set_epoch(epoch, epochs)

    def __call__(self, X: np.ndarray, rng: np.random.Generator) -> None:
        for step in self.steps:
            step(X, rng)


def get_augment(spec):
    """``None``, a callable ``augment(X, rng)``, a whole number ``k`` meaning
    :class:`RandomShift` (k), or a list of these, applied in turn (:class:`Compose`)."""
    if spec is None or callable(spec):
        return spec
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        return RandomShift(int(spec)) if spec != 0 else None
    if isinstance(spec, (list, tuple)):
        steps = [step for step in (get_augment(s) for s in spec) if step is not None]
        return None if not steps else steps[0] if len(steps) == 1 else Compose(steps)
    raise DigitnetError(f"augment must be a function augment(X, rng) or a shift in pixels, got {spec!r}")


class Distort:
    """Random elastic distortions and small affine transforms, one resampling per image.

    Every output pixel ``p = (y, x)`` of an image is read from the point

        s(p) = c + A·(p − c) + α·(G_σ ∗ u)(p)

    of the original, by bilinear interpolation (points outside the frame
    read 0, the background), where

    * ``c`` is the image's centre and ``A`` a random matrix per image:
      a rotation by up to ``rotate`` degrees, a scaling by a factor within
      ``1 ± zoom`` (the same both ways) and a shear of up to ``shear``
      (``x`` moves by ``shear·y``), each drawn uniformly;
    * ``u`` is a random displacement field (two numbers per pixel, uniform in
      −1…1), ``G_σ ∗ u`` the field smoothed by a Gaussian of width ``sigma``
      pixels and ``α`` = ``alpha`` its scale: Simard, Steinkraus and Platt's
      elastic distortion (2003), who used σ = 4 and α = 34 on MNIST.  A small
      σ makes the field look like noise, a large one like a plain shift;
      ``alpha=0`` turns the elastic part off.

    ``fade`` > 0 weakens the distortions over the last ``fade`` epochs of a
    run: every size above (α, the largest angle, zoom and shear) is
    multiplied by a :attr:`strength` that falls in equal steps from 1 to 0,
    so the last epoch sees the digits as they are (see :func:`fade_strength`;
    :func:`digitnet.train.fit` tells the object the epoch through
    :meth:`set_epoch`).  The idea: the digits a network will read are not
    distorted (nor blurred by a resampling), so training ends on such
    digits.  What it is worth is small: in four paired runs of the
    ``record`` preset, −0.03 to +0.08 points (benchmarks/PRESETS.md).

    The Gaussian is applied along each axis as a product with an ``(h, h)``
    (and ``(w, w)``) matrix of its weights, zero outside the frame: two
    matrix products per batch, cheap at 28 × 28.  Everything is drawn from
    the ``rng`` it is given, so the same generator state gives the same
    images bit for bit.  ``image_shape`` is as in :class:`RandomShift`.
    """

    def __init__(self, alpha: float = 0.0, sigma: float = 4.0, rotate: float = 0.0,
                 zoom: float = 0.0, shear: float = 0.0, image_shape: tuple[int, int] | None = None,
                 fade: int = 0):
        self.alpha = _check_number("the elastic distortion's alpha", alpha, 0.0, 100.0)
        self.sigma = _check_number("the elastic distortion's sigma", sigma, 0.0, 100.0, open_low=True)
        self.rotate = _check_number("the rotation (degrees)", rotate, 0.0, 90.0)
        self.zoom = _check_number("the zoom", zoom, 0.0, 0.9)
        self.shear = _check_number("the shear", shear, 0.0, 1.0)
        self.image_shape = None if image_shape is None else _check_shape(image_shape)
        self.fade = check_fade(fade)
        #: what every size is multiplied by in this epoch (1 until the fade begins)
        self.strength = 1.0
        self._kernels = {}
        # Arrays reused from call to call: fresh ones of a few MB each would
        # cost more in page faults than the arithmetic itself (measured: a
        # batch of 1,024 images in ~30 ms instead of ~12 ms).  So one Distort
        # object must not be called from two threads at once.
        self._scratch = _Scratch()

    def __repr__(self) -> str:
        fade = f", fade={self.fade}" if self.fade else ""
        return (f"Distort(alpha={self.alpha:g}, sigma={self.sigma:g}, rotate={self.rotate:g}, "
                f"zoom={self.zoom:g}, shear={self.shear:g}{fade})")

    @property
    def elastic(self) -> bool:
        return self.alpha * self.strength > 0

    @property
    def affine(self) -> bool:
        return self.strength > 0 and (self.rotate > 0 or self.zoom > 0 or self.shear > 0)

    def set_epoch(self, epoch: int, epochs: int) -> None:
        """Set :attr:`strength` for epoch ``epoch`` (0-based) of a run of ``epochs``."""
        self.strength = fade_strength(epoch, epochs, self.fade)

    shape_for = RandomShift.shape_for

    def _smoothing(self, size: int) -> np.ndarray:
        """The ``(size, size)`` matrix of the 1-D Gaussian of width σ.

        Normalised as the untruncated kernel is (its weights over all whole
        offsets sum to 1), and zero outside the frame, so a field fades
        towards the edges, where MNIST has no ink anyway.
        """
        G = self._kernels.get(size)
        if G is None:
            d = np.arange(size)[:, None] - np.arange(size)[None, :]
            reach = np.arange(-int(8 * self.sigma) - 1, int(8 * self.sigma) + 2)
            G = np.exp(-0.5 * (d / self.sigma) ** 2) / np.exp(-0.5 * (reach / self.sigma) ** 2).sum()
            G = self._kernels[size] = G.astype(np.float32)
        return G

    def displacements(self, n: int, h: int, w: int, rng: np.random.Generator):
        """Where each pixel reads from, minus where it is: ``(dy, dx)``, each ``(n, h, w)`` float32.

        Views of arrays that the next call overwrites.
        """
        get = self._scratch.get
        dy, dx = get("dy", (n, h, w)), get("dx", (n, h, w))
        dy[...] = 0
        dx[...] = 0
        s = self.strength
        if self.affine:
            rotate, zoom, shear = self.rotate * s, self.zoom * s, self.shear * s
            angle = np.deg2rad(rng.uniform(-rotate, rotate, n))
            factor = rng.uniform(1 - zoom, 1 + zoom, n)
            shear = rng.uniform(-shear, shear, n)
            cos, sin = factor * np.cos(angle), factor * np.sin(angle)
            # A = factor · R(angle) · [[1, 0], [shear, 1]], acting on (y, x); A − I, per image (n, 1, 1)
            a_yy, a_yx = _col(cos - sin * shear - 1), _col(-sin)
            a_xy, a_xx = _col(sin + cos * shear), _col(cos - 1)
            ys = (np.arange(h, dtype=np.float32) - (h - 1) / 2)[:, None]     # p − c: rows (h, 1)
            xs = (np.arange(w, dtype=np.float32) - (w - 1) / 2)[None, :]     # and columns (1, w)
            np.add(a_yy * ys, a_yx * xs, out=dy)                               # (A − I)·(p − c)
            np.add(a_xy * ys, a_xx * xs, out=dx)
        if self.elastic:
            u = rng.random(out=get("u", (2 * n, h, w)), dtype=np.float32)   # dy's field, then dx's, in 0…1
            # α·G_h·(2u − 1)·G_wᵀ = 2α·G_h·u·G_wᵀ − α·G_h·1·G_wᵀ: the constant
            # part is one (h, w) field, so the batch is two matrix products
            # (along the rows, then the columns) and one subtraction.  Both
            # are stacks of small (h, w) products, which BLAS does on one
            # thread each: as one tall (2n·h, w) product, a two-thread BLAS
            # took 10× longer on a busy machine.
            Gh, Gw, alpha = self._smoothing(h), self._smoothing(w), self.alpha * s
            smooth = np.matmul(u, 2 * alpha * Gw.T, out=get("along_rows", (2 * n, h, w)))
            smooth = np.matmul(Gh, smooth, out=u)
            smooth -= alpha * (Gh.sum(axis=1)[:, None] * Gw.sum(axis=1)[None, :])
            dy += smooth[:n]
            dx += smooth[n:]
        return dy, dx

    def __call__(self, X: np.ndarray, rng: np.random.Generator) -> None:
        n = len(X)
        if n == 0 or not (self.elastic or self.affine):
            return
        h, w = self.shape_for(X.shape[1])
        dy, dx = self.displacements(n, h, w, rng)
        X[...] = resample(X.reshape(n, h, w), dy, dx, self._scratch).reshape(n, h * w)


def _col(v) -> np.ndarray:
    """Per-image numbers ``(n,)`` as float32 ``(n, 1, 1)``, to broadcast over an image."""
    return np.asarray(v, np.float32)[:, None, None]


class _Scratch:
    """Named work arrays, kept from call to call and reallocated only when a shape changes."""

    def __init__(self):
        self.arrays = {}

    def get(self, name, shape, dtype=np.float32) -> np.ndarray:
        a = self.arrays.get(name)
        if a is None or a.shape != shape or a.dtype != dtype:
            a = self.arrays[name] = np.empty(shape, dtype)
        return a


def resample(images: np.ndarray, dy: np.ndarray, dx: np.ndarray, scratch: _Scratch | None = None
             ) -> np.ndarray:
    """Bilinear resampling: ``out[i, y, x] = images[i]`` read at ``(y + dy[i, y, x], x + dx[i, y, x])``.

    ``images``, ``dy`` and ``dx`` are ``(n, h, w)``; points outside the
    frame read 0.  Returns a float32 array; ``dy`` and ``dx`` are used
    as scratch space (their values are lost), and so are the arrays of
    ``scratch``, if given (the result is then one of them, overwritten by
    the next call).
    """
    get = (scratch or _Scratch()).get
    n, h, w = images.shape
    pad = 2                                       # a zero frame that reads outside land on
    H, W = h + 2 * pad, w + 2 * pad
    padded = get("padded", (n, H, W))
    padded[...] = 0
    padded[:, pad:pad + h, pad:pad + w] = images
    # Where each pixel reads, in the padded frame, clipped to one pixel
    # outside the image (zeros, as is everything beyond).
    sy, sx = dy, dx
    sy += np.arange(pad, pad + h, dtype=np.float32)[:, None]
    sx += np.arange(pad, pad + w, dtype=np.float32)[None, :]
    np.clip(sy, pad - 1, pad + h, out=sy)
    np.clip(sx, pad - 1, pad + w, out=sx)
    y0, x0 = np.floor(sy, out=get("y0", (n, h, w))), np.floor(sx, out=get("x0", (n, h, w)))  # upper left
    fy, fx = np.subtract(sy, y0, out=sy), np.subtract(sx, x0, out=sx)   # and the weights of the others
    # Its index in the flattened batch (exact in float32 within one image)
    y0 *= W
    y0 += x0
    top_left = get("top_left", (n, h, w), np.intp)
    top_left[...] = y0
    top_left += (np.arange(n, dtype=np.intp) * (H * W))[:, None, None]
    flat = padded.reshape(-1)
    # The four neighbours: the one to the right is one entry further, the one below W further.
    # (mode="clip": the indices are in range; it lets take() write straight into `out`.)
    p00, p01, p10, p11 = (flat[offset:].take(top_left, out=get(name, (n, h, w)), mode="clip")
                          for name, offset in (("p00", 0), ("p01", 1), ("p10", W), ("p11", W + 1)))
    # (1 − fy)·((1 − fx)·p00 + fx·p01) + fy·((1 − fx)·p10 + fx·p11), in place
    p01 -= p00
    p01 *= fx
    p00 += p01                                     # along the upper row
    p11 -= p10
    p11 *= fx
    p10 += p11                                     # along the lower row
    p10 -= p00
    p10 *= fy
    p00 += p10                                     # between the two
    return p00


def fade_strength(epoch: int, epochs: int, fade: int) -> float:
    """How strong the distortions are in epoch ``epoch`` (0-based) of ``epochs`` that end with ``fade`` fading ones.

    1 before the fade; then ``1 − k/fade`` in its k-th epoch (k = 1 … fade),
    so with ``fade=4`` the last four epochs distort at 0.75, 0.5, 0.25 and 0.
    A function of the epoch alone: a resumed run fades exactly as the
    uninterrupted one.
    """
    into = epoch - (epochs - fade) + 1       # 1 in the fade's first epoch
    return 1.0 if fade <= 0 or into <= 0 else max(0.0, 1.0 - into / fade)


def check_fade(fade) -> int:
    """``fade``, a whole number of epochs ≥ 0, or a one-line error."""
    if isinstance(fade, bool) or not isinstance(fade, (int, np.integer)) or not 0 <= fade <= 10_000:
        raise DigitnetError(f"the fade is a whole number of epochs from 0 to 10000 (the last epochs, "
                            f"whose distortions weaken to none), got {fade!r}")
    return int(fade)


def _check_number(what, value, low, high, open_low=False):
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DigitnetError(f"{what} must be a number, got {value!r}") from None
    if isinstance(value, bool) or not math.isfinite(v) or v < low or v > high or (open_low and v == low):
        bound = f"> {low:g}" if open_low else f"≥ {low:g}"
        raise DigitnetError(f"{what} must be {bound} and ≤ {high:g}, got {value!r}")
    return v
