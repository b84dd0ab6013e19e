"""How far ``preprocess_image`` is from another version of it, and how fast each is.

Renders MNIST test digits large, as the drawing page sends them (280x280 RGBA
PNGs, white strokes on black, enlarged with Pillow's bilinear filter: the
load run's canvases, see load_web.py), and runs them through
``digitnet.app.imaging.preprocess_image`` of this checkout and of a
reference checkout (``--reference SRC``, the ``src`` folder of another
version, e.g. the code before issue 14: ``git archive 915c4c1 src/digitnet | tar -x
-C /tmp/before``).  Prints the largest and mean absolute difference of the 28x28
results, the largest per image at a few percentiles, and each version's CPU
time per image (the median of ``--repeat`` passes over ``--timing`` images).

``--golden FILE`` instead writes the reference's results for the sample the
test suite checks (tests/test_preprocess_reference.py), made the same way as
there.

    python benchmarks/preprocess_tolerance.py --reference /tmp/before/src            # all 10,000
    python benchmarks/preprocess_tolerance.py --reference /tmp/before/src --golden tests/fixtures/preprocess_reference.npz

A benchmark, not a test: nothing here asserts anything.
"""

from __future__ import annotations

import argparse
import importlib.util
import io
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def load_imaging(src: Path):
    """``digitnet/app/imaging.py`` of the checkout at ``src``, as a module of its own."""
    spec = importlib.util.spec_from_file_location("reference_imaging", src / "digitnet" / "app" / "imaging.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def canvas_png(digit: np.ndarray) -> bytes:
    """One digit (784,) in [0, 1] as the page's canvas: 280x280 RGBA, bilinear, opaque."""
    from PIL import Image

    gray = Image.fromarray((digit.reshape(28, 28) * 255).round().astype(np.uint8))
    big = np.asarray(gray.resize((280, 280), Image.BILINEAR))
    rgba = np.empty((280, 280, 4), np.uint8)
    rgba[..., :3] = big[..., None]
    rgba[..., 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


def golden_png(digit: np.ndarray) -> bytes:
    """The test suite's rendering: each pixel a 10x10 block (exact, whatever Pillow's filters do)."""
    from PIL import Image

    block = np.repeat(np.repeat((digit.reshape(28, 28) * 255).round().astype(np.uint8), 10, 0), 10, 1)
    rgba = np.empty((280, 280, 4), np.uint8)
    rgba[..., :3] = block[..., None]
    rgba[..., 3] = 255
    buffer = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
    return buffer.getvalue()


#: The test suite's sample: every 157th test digit, 64 of them.
GOLDEN_INDICES = np.arange(64) * 157


def cpu_time_per_image(function, inputs, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.process_time()
        for x in inputs:
            function(x)
        times.append((time.process_time() - t0) / len(inputs))
    return float(np.median(times))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reference", type=Path, required=True, help="the src folder of the other version")
    parser.add_argument("--count", type=int, default=10_000, help="test digits to compare (default all 10,000)")
    parser.add_argument("--timing", type=int, default=200, help="images per timing pass (default 200)")
    parser.add_argument("--repeat", type=int, default=5, help="timing passes (default 5; the median is shown)")
    parser.add_argument("--golden", type=Path, help="write the reference's results for the test suite's sample")
    args = parser.parse_args(argv)

    from threadpoolctl import threadpool_limits

    from digitnet.app import imaging
    from digitnet.data import load_mnist

    threadpool_limits(1, "blas")  # as digitnet serve runs
    reference = load_imaging(args.reference)
    X, _ = load_mnist("test")

    if args.golden:
        outputs = np.stack([reference.preprocess_image(golden_png(X[i])) for i in GOLDEN_INDICES])
        np.savez_compressed(args.golden, indices=GOLDEN_INDICES, outputs=outputs.astype(np.float32))
        print(f"wrote {args.golden}: {len(GOLDEN_INDICES)} results of {args.reference}'s preprocess_image")
        return 0

    worst = np.zeros(args.count)
    total = 0.0
    started = time.monotonic()
    for i in range(args.count):
        png = canvas_png(X[i])
        difference = np.abs(imaging.preprocess_image(png) - reference.preprocess_image(png))
        worst[i] = difference.max()
        total += difference.sum()
        if (i + 1) % 1000 == 0:
            print(f"  {i + 1:,} of {args.count:,} digits ({time.monotonic() - started:.0f} s)", file=sys.stderr)
    print(f"{args.count:,} MNIST test digits as 280x280 canvas PNGs: largest difference {worst.max():.3g}, "
          f"mean {total / (args.count * 784):.3g} per pixel; largest per image: median {np.median(worst):.3g}, "
          f"99.9th percentile {np.quantile(worst, 0.999):.3g}")

    sample = [canvas_png(X[i]) for i in range(args.timing)]
    new = cpu_time_per_image(imaging.preprocess_image, sample, args.repeat)
    old = cpu_time_per_image(reference.preprocess_image, sample, args.repeat)
    print(f"CPU time per image (median of {args.repeat} passes over {args.timing}): this checkout "
          f"{new * 1e6:.0f} us, reference {old * 1e6:.0f} us")
    return 0


if __name__ == "__main__":
    sys.exit(main())
