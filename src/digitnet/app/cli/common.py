"""Pieces the subcommands share: the parser class, value checkers, output helpers."""

from __future__ import annotations

import argparse
import math
import re
import sys

from ...errors import DigitnetError

HelpFormatter = argparse.RawDescriptionHelpFormatter


class ArgumentParser(argparse.ArgumentParser):
    """argparse, but a usage error is one line (and still exit status 2)."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message} (see '{self.prog} --help')\n")


def print_error(message) -> None:
    """``digitnet: error: <message>`` on stderr, one line."""
    text = " ".join(str(message).split("\n")).strip()
    print(f"digitnet: error: {text}", file=sys.stderr)


def add_command(subparsers, name: str, *, help: str, description: str, examples: str, run):
    """Add a subcommand with the shared formatting; returns its parser."""
    parser = subparsers.add_parser(name, help=help, description=description,
                                   epilog="examples:\n" + examples, formatter_class=HelpFormatter)
    parser.set_defaults(run=run)
    return parser


# -- value checkers for argparse (they raise ArgumentTypeError: a one-line usage error) --

def _number(text: str, kind=float):
    try:
        value = kind(text)
    except (TypeError, ValueError):
        word = "a whole number" if kind is int else "a number"
        raise argparse.ArgumentTypeError(f"expected {word}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def positive_float(text: str) -> float:
    value = _number(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be greater than 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    value = _number(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def positive_int(text: str) -> int:
    value = _number(text, int)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {text!r}")
    return value


def nonnegative_int(text: str) -> int:
    value = _number(text, int)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {text!r}")
    return value


def shift_pixels(text: str) -> int:
    value = _number(text, int)
    if not 0 <= value <= 8:
        raise argparse.ArgumentTypeError(f"must be a whole number of pixels from 0 to 8, got {text!r}")
    return value


def elastic_spec(text: str) -> tuple[float, float | None]:
    """``ALPHA`` or ``ALPHA,SIGMA`` of the elastic distortion (α = 0: off)."""
    parts = text.split(",")
    if len(parts) > 2:
        raise argparse.ArgumentTypeError(f"expected ALPHA or ALPHA,SIGMA (e.g. 34,4), got {text!r}")
    alpha = _number(parts[0])
    if not 0 <= alpha <= 100:
        raise argparse.ArgumentTypeError(f"alpha (the size of the distortion) must be from 0 to 100, "
                                         f"got {parts[0]!r}")
    sigma = None
    if len(parts) == 2:
        sigma = _number(parts[1])
        if not 0 < sigma <= 100:
            raise argparse.ArgumentTypeError(f"sigma (the smoothness, in pixels) must be greater than 0 "
                                             f"and at most 100, got {parts[1]!r}")
    return alpha, sigma


def affine_spec(text: str) -> tuple[float, float, float]:
    """``DEGREES,ZOOM,SHEAR``: the largest rotation, scaling (a fraction) and shear (0,0,0: off)."""
    parts = text.split(",")
    if len(parts) != 3:
        raise argparse.ArgumentTypeError(f"expected DEGREES,ZOOM,SHEAR (e.g. 10,0.1,0.15), got {text!r}")
    rotate, zoom, shear = (_number(p) for p in parts)
    for what, value, high in (("the rotation", rotate, 90), ("the zoom", zoom, 0.9),
                              ("the shear", shear, 1)):
        if not 0 <= value <= high:
            raise argparse.ArgumentTypeError(f"{what} must be from 0 to {high:g}, got {value:g} in {text!r}")
    return rotate, zoom, shear


def dropout_rate(text: str) -> float:
    value = _number(text)
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"is the probability of dropping a hidden unit: from 0 up to "
                                         f"(not including) 1, got {text!r}")
    return value


FULL_BATCH = "full"


def registry_name(kind: str, resolve):
    """An argparse type for a name in one of the core's registries.

    ``resolve`` is the registry's own lookup (``get_activation``,
    ``resolve_initializer``…), so aliases work as they do in Python and an
    unknown name gets the registry's own one-line list of choices.
    """
    def check(text: str) -> str:
        try:
            resolve(text)
        except DigitnetError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
        return text

    check.__name__ = kind      # argparse names the type in some messages
    return check


def names_help(text: str, names) -> str:
    """Help text ending in the registry's names: ``'text: a, b, c'``."""
    return f"{text}: {', '.join(names)}"


def batch_size(text: str):
    """A whole number ≥ 1, or ``full`` (every training sample in one step)."""
    if text.strip().lower() in ("full", "all", "none"):
        return FULL_BATCH
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(
            f"must be a whole number of samples ≥ 1 or 'full', got {text!r}") from None


def layer_sizes(text: str) -> list[int]:
    """``784,100,10`` → ``[784, 100, 10]`` (``784, 100, 10`` and ``784 100 10`` too).

    An empty field (``784,,10``, a trailing comma) is an error, not a layer
    silently dropped.
    """
    stripped = text.strip()
    if not stripped:
        raise argparse.ArgumentTypeError("is empty: give one whole number per layer, like 784,100,10")
    parts = re.split(r"\s*,\s*|\s+", stripped)
    if "" in parts:
        raise argparse.ArgumentTypeError(
            f"has an empty field in {text!r}: give one whole number per layer, separated by "
            "commas, like 784,100,10")
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected whole numbers separated by commas, like 784,100,10, got {text!r}") from None
    if len(sizes) < 2:
        raise argparse.ArgumentTypeError(
            f"needs at least an input and an output size, like 784,100,10, got {text!r}")
    if min(sizes) < 1:
        raise argparse.ArgumentTypeError(f"every layer needs at least 1 unit, got {text!r}")
    return sizes


# -- models ---------------------------------------------------------------------------

def load_model(path):
    """Load a model file, raising one-line :class:`ModelFileError` for anything wrong."""
    from ...files.modelfile import load_model as _load

    return _load(path)


def percent(value) -> str:
    return "-" if value is None else f"{100 * value:.2f}%"


def require(condition: bool, message: str) -> None:
    if not condition:
        raise DigitnetError(message)
