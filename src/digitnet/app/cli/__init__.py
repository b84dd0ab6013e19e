"""The ``digitnet`` command (also ``python -m digitnet``).

Each subcommand lives in its own module ``digitnet.app.cli.<name>``, which
defines ``add_parser(subparsers)``: it adds its subcommand(s) and sets
``parser.set_defaults(run=func)``, ``func(args) -> int`` being the exit
status.  :func:`main` catches user errors (:class:`~digitnet.errors.DigitnetError`)
and prints them as one line, exit status 2, without a traceback; so is
running out of memory (``MemoryError``).
"""

from __future__ import annotations

import importlib
import sys

from ... import __version__
from ...errors import DigitnetError
from .common import ArgumentParser, HelpFormatter, print_error

#: Subcommand modules, in the order ``digitnet --help`` lists them.  A module
#: that is not installed yet is skipped.
COMMAND_MODULES = ("train", "sweep", "evaluate", "predict", "info", "presets", "gradcheck", "plot", "serve",
                   "export")

EXAMPLES = """\
examples:
  digitnet train                              train the default preset ('best') on MNIST
  digitnet train --preset nielsen             reproduce Nielsen's network.py
  digitnet train --preset xor                 a two-second demo on the XOR table
  digitnet sweep --preset nielsen --grid lr=0.03,0.3,3,30 --epochs 5
                                              compare learning rates, in parallel
  digitnet evaluate digitnet-best.npz         accuracy, precision/recall, confusion matrix
  digitnet predict digitnet-best.npz seven.png
  digitnet presets                            the recipes and what they reach

'digitnet COMMAND --help' describes each command.
"""


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="digitnet",
        description="A multilayer perceptron for handwritten digits, from scratch in NumPy.",
        epilog=EXAMPLES, formatter_class=HelpFormatter)
    parser.add_argument("--version", action="version", version=f"digitnet {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module_name = f"{__name__}.{name}"
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name == module_name:
                continue  # that command is not written yet
            raise
        module.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Run the command line ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    run = getattr(args, "run", None)
    if run is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(run(args) or 0)
    except DigitnetError as exc:
        print_error(exc)
        return 2
    except KeyboardInterrupt:
        print("digitnet: interrupted", file=sys.stderr)
        return 130
    except MemoryError as exc:
        # numpy's _ArrayMemoryError says how much and for what shape: keep that line.
        detail = " ".join(str(exc).split())
        print_error(f"out of memory{': ' + detail if detail else ''}; use fewer or smaller layers, "
                    "a smaller --batch-size or --subset, or free some memory")
        return 2
    except BrokenPipeError:
        # `digitnet presets | head`: the reader left; nothing more to say.
        _silence_stdout()
        return 0
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        print_error(f"cannot access{where}: {exc.strerror or exc}")
        return 2


def _silence_stdout():
    import os

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass
