"""``digitnet predict``: read digits from image files."""

from __future__ import annotations

import numpy as np

from ...errors import DigitnetError, ImageError
from ...files.modelfile import class_names, to_network_inputs
from .common import add_command, load_model, positive_int, print_error

EXAMPLES = """\
  digitnet predict digitnet-best.npz seven.png
  digitnet predict model.npz scans/*.jpg --top 3
  digitnet predict model.npz photo.jpg --invert yes     force dark ink on light paper
"""

DESCRIPTION = """\
Read handwritten digits from PNG, JPEG, BMP or GIF files, any size, dark ink
on light paper or light on dark. Each image goes through MNIST's own
preprocessing (crop to the ink, fit into 20x20 keeping the aspect ratio,
centre of mass at the centre of a 28x28 frame, anti-aliased), then through
the model, with the pixel scaling it was trained with.

Prints one line per file: the digit and its probability (for models with
sigmoid outputs, such as the nielsen presets, the outputs divided by their
sum). Every file is tried: a file that is missing, not an image, or blank
gets one error line on stderr, and the exit status is then 2.
"""


def add_parser(subparsers):
    p = add_command(subparsers, "predict", help="read the digit in image files",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("model", metavar="MODEL", help="a model file written by 'digitnet train'")
    p.add_argument("images", metavar="IMAGE", nargs="+", help="image files")
    p.add_argument("--top", type=positive_int, default=1, metavar="K",
                   help="show the K most likely digits (default 1)")
    p.add_argument("--invert", choices=("auto", "yes", "no"), default="auto",
                   help="yes: dark ink on light paper; no: light on dark; auto (default) decides")
    return p


def probabilities(network, outputs: np.ndarray) -> np.ndarray:
    """Output activations ``(n, k)`` as rows that sum to 1."""
    if network.activations[-1].name == "softmax":
        return outputs
    clipped = np.clip(outputs, 0, None)
    totals = clipped.sum(axis=1, keepdims=True)
    return np.divide(clipped, totals, out=np.full_like(clipped, 1 / clipped.shape[1]),
                     where=totals > 0)


def run(args) -> int:
    from ..imaging import preprocess_image

    network = load_model(args.model)
    preprocessing = network.metadata.get("preprocessing") or {}
    if network.sizes[0] != 784 or list(preprocessing.get("input_shape", [28, 28])) != [28, 28]:
        raise DigitnetError(f"{args.model} takes {network.sizes[0]} inputs, not 28x28 images: "
                            "predict needs a model trained on MNIST-style images")
    if network.sizes[-1] < 2:
        raise DigitnetError(f"{args.model} has a single output: predict needs a classifier")
    names = class_names(network)
    invert = {"auto": "auto", "yes": True, "no": False}[args.invert]
    failures = 0
    for path in args.images:
        try:
            pixels = preprocess_image(path, invert=invert)          # (784,) in [0, 1]
        except ImageError as exc:
            message = str(exc)
            print_error(message if path in message else f"{path}: {message}")
            failures += 1
            continue
        outputs = network.predict_proba(to_network_inputs(network, pixels[None, :]))
        probs = probabilities(network, outputs)[0]
        order = np.argsort(-probs, kind="stable")[: args.top]
        guesses = ", ".join(f"{names[k]} ({100 * probs[k]:.1f}%)" for k in order)
        print(f"{path}: {guesses}", flush=True)
    return 2 if failures else 0
