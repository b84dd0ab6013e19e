"""``digitnet plot KIND MODEL --out FILE.png`` and ``digitnet report MODEL --out DIR``."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ...errors import DigitnetError
from .common import add_command, nonnegative_int, positive_int

# Listed here rather than imported from digitnet.app.plots, so that building the
# parser (which every digitnet command does) never imports matplotlib.
KINDS = ("curves", "confusion", "mistakes", "hidden", "activations", "lr", "data", "augment")

PLOT_DESCRIPTION = """\
Draw one picture of a trained model, of its training or of its data, as a PNG.

kinds:
  curves       loss and accuracy per epoch, training and validation (the model's history)
  confusion    confusion matrix on the test set, the most confused pairs named
  mistakes     misclassified test digits: true → predicted (confidence)
  hidden       each first-layer unit's weights as a 28×28 image
  activations  one test digit (--index) through every layer, and the output
  lr           the model's recipe trained briefly at several learning rates
               (--lrs, --epochs, --subset), loss curves on one plot
  data         10 examples of every class of the data set (--data; MODEL optional)
  augment      a recipe's random distortions: one test digit of every class beside
               8 versions as training sees them (MODEL: a model file or a preset
               name; --seed picks other versions)

The test data is the data set the model was trained on (its header), scaled
the same way, unless --data names another.
"""

PLOT_EXAMPLES = """\
  digitnet plot curves model.npz --out curves.png
  digitnet plot confusion model.npz --out confusion.png --limit 2000
  digitnet plot activations model.npz --index 7 --out seven.png
  digitnet plot lr model.npz --lrs 0.01,0.3,10 --epochs 3 --subset 5000 --out lr.png
  digitnet plot data --data fashion-mnist --out fashion.png
  digitnet plot augment record --out distortions.png
"""

REPORT_DESCRIPTION = """\
Write every picture of a model (learning curves, confusion matrix, mistakes,
hidden units, activations, learning rates, data) into a folder, created if
needed, with an index.html that shows them next to the model's summary, its
recipe, its final accuracies and its per-epoch table: open one page and see
the whole story of a run.
"""

REPORT_EXAMPLES = """\
  digitnet report model.npz --out report/
  digitnet report model.ckpt.npz --out report/ --limit 2000 --subset 2000
"""


def _add_data_options(parser) -> None:
    parser.add_argument("--data", metavar="SOURCE",
                        help="mnist, fashion-mnist, kmnist, a folder of IDX files or a labelled .csv "
                             "(default: the data set named in the model, else mnist)")
    parser.add_argument("--limit", type=positive_int, metavar="N",
                        help="use only the first N test samples")
    parser.add_argument("--index", type=nonnegative_int, default=0, metavar="N",
                        help="the test sample 'activations' follows through the network (default 0)")
    parser.add_argument("--lrs", metavar="LR,LR,...",
                        help="learning rates 'lr' compares (default for SGD: 0.01,0.3,10, "
                             "and the recipe's own rate)")
    parser.add_argument("--epochs", type=positive_int, default=3, metavar="N",
                        help="epochs of each 'lr' run (default 3)")
    parser.add_argument("--subset", type=positive_int, default=5000, metavar="N",
                        help="training samples of the 'lr' runs, drawn at random (default 5000)")
    parser.add_argument("--seed", type=nonnegative_int, default=0, metavar="N",
                        help="seed of the 'lr' runs: their subset, initial weights, shuffling (default 0)")


def add_parser(subparsers):
    plot = add_command(subparsers, "plot", help="draw a picture of a model or its training (PNG)",
                       description=PLOT_DESCRIPTION, examples=PLOT_EXAMPLES, run=run_plot)
    plot.add_argument("kind", choices=KINDS, metavar="KIND", help="what to draw: " + ", ".join(KINDS))
    plot.add_argument("model", nargs="?", metavar="MODEL|RUN",
                      help="a model file or a checkpoint (*.ckpt.npz); optional for 'data'; "
                           "a preset name also does for 'augment'")
    plot.add_argument("--out", required=True, metavar="FILE.png", help="the PNG to write")
    _add_data_options(plot)

    report = add_command(subparsers, "report", help="all pictures of a model and an index.html",
                         description=REPORT_DESCRIPTION, examples=REPORT_EXAMPLES, run=run_report)
    report.add_argument("model", metavar="MODEL|RUN", help="a model file or a checkpoint (*.ckpt.npz)")
    report.add_argument("--out", required=True, metavar="DIR", help="folder for index.html and the PNGs")
    _add_data_options(report)
    return plot


def _png_path(out: str) -> Path:
    """Check ``--out`` before any slow work: a .png name in a folder that exists."""
    path = Path(out)
    if path.is_dir():
        raise DigitnetError(f"--out {out} is a folder: give a file name such as {path / 'picture.png'}")
    if path.suffix.lower() != ".png":
        raise DigitnetError(f"--out {out}: pictures are written as PNG, so the name must end in .png")
    folder = path.parent if str(path.parent) else Path(".")
    if not folder.is_dir():
        raise DigitnetError(f"cannot write {out}: the folder {folder} does not exist (create it first)")
    return path


def _use_agg() -> None:
    # A command never opens a window: draw with Agg even where a display exists.
    try:
        import matplotlib
    except ImportError:
        raise DigitnetError("plots need matplotlib: pip install 'digitnet[plots]'") from None
    matplotlib.use("Agg")


def run_plot(args) -> int:
    from ..report import parse_lrs, render
    from .common import load_model

    out = _png_path(args.out)
    if args.kind == "augment":
        return _plot_augment(args, out)
    lrs = parse_lrs(args.lrs)
    if args.model is None and args.kind != "data":
        raise DigitnetError(f"'{args.kind}' draws a model: digitnet plot {args.kind} MODEL --out {args.out}")
    network = load_model(args.model) if args.model is not None else None
    _use_agg()
    render(args.kind, network, out, data=args.data, limit=args.limit, index=args.index, lrs=lrs,
           epochs=args.epochs, subset=args.subset, seed=args.seed)
    print(f"wrote {out}")
    return 0


def _plot_augment(args, out: Path) -> int:
    """``digitnet plot augment MODEL|PRESET``: the recipe's augmentation on test digits."""
    from ...train.recipes import PRESETS, Preset
    from ..report import load_data
    from .common import load_model

    if args.model is None:
        raise DigitnetError(f"'augment' draws a recipe's distortions: digitnet plot augment PRESET "
                            f"(e.g. record) or MODEL --out {args.out}")
    network = None
    if args.model.strip().lower() in PRESETS and not Path(args.model).exists():
        preset = PRESETS[args.model.strip().lower()]
    else:
        network = load_model(args.model)
        recipe = network.metadata.get("recipe")
        if not recipe:
            raise DigitnetError(f"{args.model} records no training recipe, so no augmentation to draw")
        preset = Preset.from_dict(recipe)
    augment = preset.make_augment()
    if augment is None:
        raise DigitnetError(f"the recipe of {args.model} trains on its images unchanged (no shifts, "
                            "distortions or affine transforms): nothing to draw")
    _use_agg()
    from .. import plots

    dataset = load_data(network, args.data)
    X, y = dataset.X_test, dataset.y_test
    rows = [int(np.flatnonzero(y == c)[0]) for c in np.unique(y)[:10]]
    plots.augment_grid(X[rows], augment, out, seed=args.seed,
                       title=f"How the {preset.name} recipe changes {dataset.name}'s images for training"
                             f"\n{preset.augmentation_text()}"
                             f"\ncolumns: a test image, then 8 random versions (seed {args.seed})"
                             + (", at full strength" if preset.fade else ""))
    print(f"wrote {out}")
    return 0


def run_report(args) -> int:
    from ..report import parse_lrs, write_report

    lrs = parse_lrs(args.lrs)
    _use_agg()
    index = write_report(args.model, args.out, data=args.data, limit=args.limit, index=args.index,
                         lrs=lrs, epochs=args.epochs, subset=args.subset, seed=args.seed)
    print(f"wrote {index}: open it in a browser")
    return 0
