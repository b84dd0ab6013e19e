"""Pictures of a network and of its learning.

Every function draws one picture and returns the matplotlib ``Figure``; with
``out=`` it also writes a PNG (atomically: a temporary file renamed into
place, so a crash never leaves half a picture).  ``confusion_matrix`` also
returns the counts it drew.

============================  ===============================================
:func:`learning_curves`       loss and accuracy per epoch, training and validation
:func:`confusion_matrix`      true class × predicted class counts
:func:`mistakes`              a grid of misclassified digits
:func:`hidden_units`          each first-layer unit's weights as a 28×28 image
:func:`activations`           one digit through the network, layer by layer
:func:`learning_rates`        the same recipe trained briefly at several rates
:func:`data_grid`             examples of every class of a data set
============================  ===============================================

Array conventions (batch-first, as everywhere in digitnet): ``X`` is
``(n_samples, n_inputs)`` network inputs (``(n, 28, 28)`` is accepted and
flattened), ``y`` is ``(n,)`` integer labels (or ``(n, n_outputs)`` target
rows).  Images are drawn over the range of values in ``X``, so inputs scaled
to [0, 1] or to [-1, 1] both show as dark ink on white paper.

Each kind of picture has a fixed size, :data:`FIGURE_PIXELS` at :data:`DPI`,
whatever it shows: pictures of different runs line up, and tests can check.

matplotlib is imported only inside these functions, and only its object
interface (``matplotlib.figure.Figure``) is used, never ``pyplot``: nothing
here needs a display, keeps global figure state, or changes the backend of a
notebook that imports this module.
"""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import numpy as np

from ..errors import DataError, DigitnetError, TrainingDiverged
from ..nn.network import Network
from ..train import Callback

__all__ = [
    "DPI", "FIGURE_PIXELS", "KINDS", "NotDrawable", "MAX_HIDDEN_UNITS",
    "learning_curves", "confusion_matrix", "confusion_counts", "mistakes", "hidden_units",
    "activations", "learning_rates", "data_grid", "augment_grid", "save_figure",
]

#: Dots per inch of every PNG.
DPI = 100
#: Width and height in pixels of each kind of picture.
FIGURE_PIXELS = {
    "curves": (1100, 480),
    "confusion": (820, 820),
    "mistakes": (1000, 1120),
    "hidden": (1000, 1000),
    "activations": (1200, 700),
    "lr": (1000, 600),
    "data": (860, 800),
    "augment": (900, 1040),
}
#: The kinds of picture, in the order a report shows them.  ("augment" pictures
#: a recipe rather than a model: ``digitnet plot augment`` draws it.)
KINDS = tuple(kind for kind in FIGURE_PIXELS if kind != "augment")
#: At most this many first-layer units are drawn by :func:`hidden_units`.
MAX_HIDDEN_UNITS = 100
#: Learning rates compared when none are given, per optimiser family.
DEFAULT_LRS = {"sgd": (0.01, 0.3, 10.0), "momentum": (0.001, 0.03, 3.0),
               "nesterov": (0.001, 0.03, 3.0), "adam": (1e-5, 1e-3, 0.3)}

_NO_MATPLOTLIB = "plots need matplotlib: pip install 'digitnet[plots]'"


class NotDrawable(DigitnetError):
    """This model cannot have this picture (no training history, inputs that are not an image)."""


# -- plumbing -------------------------------------------------------------------
def _matplotlib():
    """The matplotlib package, or a one-line error saying how to install it."""
    try:
        import matplotlib
        import matplotlib.figure  # the object interface: no pyplot, no display
    except ImportError:
        raise DigitnetError(_NO_MATPLOTLIB) from None
    return matplotlib


def _new_figure(kind: str):
    """An empty Figure of the fixed size for ``kind``."""
    matplotlib = _matplotlib()
    width, height = FIGURE_PIXELS[kind]
    # Constrained layout keeps titles, tick labels and colour bars from
    # overlapping without changing the figure's size (bbox_inches="tight"
    # would, and the PNG size would then depend on the text).
    return matplotlib.figure.Figure(figsize=(width / DPI, height / DPI), dpi=DPI, layout="constrained")


def _rectangle(corner, width, height):
    """A thin grey frame, to show where an image ends."""
    _matplotlib()
    from matplotlib.patches import Rectangle

    return Rectangle(corner, width, height, fill=False, edgecolor="0.75", linewidth=0.6, clip_on=False)


def _frame_only(ax):
    """No ticks or labels, just a light frame around the picture."""
    ax.set_xticks([])
    ax.set_yticks([])
    for side in ax.spines.values():
        side.set_edgecolor("0.7")


def _colormap(name: str, bad=None):
    """A named colour map; ``bad`` colours the NaN cells (gaps between tiles)."""
    colours = _matplotlib().colormaps[name]
    return colours if bad is None else colours.with_extremes(bad=bad)


def save_figure(figure, out) -> Path:
    """Write ``figure`` to ``out`` as a PNG, atomically; the folder must exist."""
    from ..files.fileio import atomic_write

    out = Path(out)
    if out.is_dir():
        raise DigitnetError(f"cannot write {out}: it is a folder; give a file name such as {out / 'plot.png'}")

    return atomic_write(out, lambda file: figure.savefig(file, format="png", dpi=DPI), "picture")


def _finish(figure, out):
    if out is not None:
        save_figure(figure, out)
    return figure


def _class_names(network: Network | None, n_classes: int, classes=None) -> list[str]:
    """Labels for classes 0..n_classes-1: given, from the model file, or the digits."""
    if classes is None and network is not None:
        classes = (network.metadata.get("preprocessing") or {}).get("classes")
    if classes is None or len(classes) < n_classes:
        return [str(c) for c in range(n_classes)]
    return [str(c) for c in classes[:n_classes]]


def _image_shape(network: Network, image_shape, what: str) -> tuple[int, int]:
    """The (height, width) of an input image; the network must take exactly that many inputs."""
    if image_shape is None:
        image_shape = (network.metadata.get("preprocessing") or {}).get("input_shape") or (28, 28)
    image_shape = tuple(int(s) for s in image_shape)
    if len(image_shape) != 2:
        raise NotDrawable(f"{what} needs a network whose inputs are an image (28×28 = 784 inputs), but "
                          f"this network's {network.sizes[0]} inputs are not one")
    if image_shape[0] * image_shape[1] != network.sizes[0]:
        raise NotDrawable(
            f"{what} needs a network whose inputs are a {image_shape[0]}×{image_shape[1]} image "
            f"({image_shape[0] * image_shape[1]} inputs), but this network has {network.sizes[0]} inputs")
    return image_shape


def _labels_and_confidence(network: Network, proba: np.ndarray):
    """Predicted class per sample and the network's output for that prediction."""
    if proba.shape[1] == 1:   # one sigmoid output: class 1 when above ½
        pred = (proba[:, 0] > 0.5).astype(np.int64)
        conf = np.where(pred == 1, proba[:, 0], 1 - proba[:, 0])
    else:
        pred = proba.argmax(axis=1)
        conf = proba[np.arange(len(proba)), pred]
    return pred, conf


def _mosaic(images: np.ndarray, cols: int, gap: int = 1) -> np.ndarray:
    """Tile ``images`` ``(n, h, w)`` into one ``(rows·(h+gap)−gap, cols·(w+gap)−gap)`` array.

    Gaps and unused cells are NaN (drawn in the colour map's "bad" colour).
    Image ``i`` goes to row ``i // cols``, column ``i % cols``.
    """
    n, h, w = images.shape
    rows = max(1, math.ceil(n / cols))
    sheet = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap), np.nan)
    for i, image in enumerate(images):
        r, c = divmod(i, cols)
        sheet[r * (h + gap):r * (h + gap) + h, c * (w + gap):c * (w + gap) + w] = image
    return sheet


def _near_square(n: int) -> tuple[int, int]:
    """(rows, cols) of the squarest grid holding n cells (cols ≥ rows); it gives the biggest tiles."""
    cols = math.ceil(math.sqrt(n))
    return math.ceil(n / cols), cols


def _confidence(p: float) -> str:
    """A probability as a percentage that never rounds up to a certainty it is not (99.96% → "99.9%")."""
    if p >= 1.0:
        return "100%"
    if p >= 0.99:
        return f"{math.floor(p * 1000) / 10:.1f}%"
    return f"{100 * p:.0f}%"


def _percent(x) -> str:
    return "—" if x is None or not np.isfinite(x) else f"{100 * x:.1f}%"


# -- learning curves ----------------------------------------------------------------
def _history_of(obj):
    """``(records, best_epoch, network_or_None)`` from a Network, History, dict or list of records."""
    network = obj if isinstance(obj, Network) else None
    if network is not None:
        obj = network.metadata.get("history") or {}
    if hasattr(obj, "to_dict"):
        obj = obj.to_dict()
    if isinstance(obj, dict):
        records, best = obj.get("records") or [], obj.get("best_epoch")
    elif isinstance(obj, (list, tuple)):
        records, best = list(obj), None
    else:
        raise DigitnetError("learning_curves needs a History, a Network or a list of records, "
                            f"got {type(obj).__name__}")
    if not records:
        raise NotDrawable("this model has no training history: learning curves need a model saved by "
                          "'digitnet train' (or save_model(..., history=h))")
    return records, best, network


def _column(records, key) -> np.ndarray:
    return np.array([np.nan if r.get(key) is None else float(r[key]) for r in records], dtype=float)


def learning_curves(history_or_network, out=None, *, title: str | None = None):
    """Loss and accuracy per epoch, for training and (when recorded) validation data.

    ``history_or_network`` is a :class:`~digitnet.train.History`, its
    ``to_dict()``, a list of per-epoch records, or a loaded model (its
    ``metadata["history"]``; checkpoints carry one too).  Raises
    ``DigitnetError`` when there is no history.
    """
    records, best_epoch, network = _history_of(history_or_network)
    fig = _new_figure("curves")
    ax_loss, ax_acc = fig.subplots(1, 2)
    epochs = _column(records, "epoch")
    loss_name = network.loss.name.replace("_", " ") if network is not None else ""
    for ax, key, scale, ylabel in ((ax_loss, "loss", 1.0, f"{loss_name} loss".strip()),
                                   (ax_acc, "accuracy", 100.0, "accuracy (%)")):
        train, val = scale * _column(records, key), scale * _column(records, "val_" + key)
        few = len(records) <= 60          # markers only while they do not merge into a line
        ax.plot(epochs, train, "o-" if few else "-", color="tab:blue", label="training (average over the epoch)")
        if np.isfinite(val).any():
            ax.plot(epochs, val, "s-" if few else "-", color="tab:orange", label="validation (end of the epoch)")
        if best_epoch is not None:
            ax.axvline(best_epoch, color="tab:green", linestyle=":",
                       label=f"best epoch ({best_epoch}), weights kept")
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3)
        ax.legend(loc="upper right" if key == "loss" else "lower right", fontsize=9)
    ax_loss.set_title("loss (lower is better)")
    ax_acc.set_title("accuracy (higher is better)")
    if title is None:
        last = records[-1]
        what = "validation" if last.get("val_accuracy") is not None else "training"
        acc = last.get("val_accuracy") if what == "validation" else last.get("accuracy")
        arch = f"network {' → '.join(map(str, network.sizes))}: " if network is not None else ""
        title = (f"Learning curves — {arch}{len(records)} epoch{'s' if len(records) != 1 else ''}, "
                 f"final {what} accuracy {_percent(acc)}")
    fig.suptitle(title, fontsize=13)
    return _finish(fig, out)


# -- confusion matrix -------------------------------------------------------------------
def confusion_counts(y_true, y_pred, n_classes: int) -> np.ndarray:
    """``counts[t, p]``: how many samples of true class ``t`` were predicted as ``p``; ``(k, k)`` int64."""
    y_true = np.asarray(y_true, dtype=np.int64)
    y_pred = np.asarray(y_pred, dtype=np.int64)
    return np.bincount(y_true * n_classes + y_pred, minlength=n_classes * n_classes) \
        .reshape(n_classes, n_classes)


def most_confused(counts: np.ndarray, top: int = 5) -> list[tuple[int, int, int]]:
    """The largest off-diagonal cells as ``(true, predicted, count)``, biggest first."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    cells = [(int(t), int(p), int(off[t, p])) for t, p in zip(*np.nonzero(off))]
    cells.sort(key=lambda c: (-c[2], c[0], c[1]))
    return cells[:top]


def confusion_matrix(network: Network, X, y, out=None, *, classes=None, title: str | None = None):
    """Count which class the network predicts for each true class.

    ``X`` ``(n, n_inputs)``, ``y`` ``(n,)`` labels.  Returns ``(figure,
    counts)`` where ``counts`` is the ``(k, k)`` int64 array drawn:
    ``counts[true, predicted]``, summing to ``n``.  Correct cells (the
    diagonal) are green, mistakes red, each shaded by its size; the title
    names the most confused pairs.
    """
    X = network.check_inputs(X)
    _, labels = network.check_targets(y, len(X))
    pred = network.predict(X)
    k = max(network.sizes[-1], 2)
    counts = confusion_counts(labels, pred, k)
    names = _class_names(network, k, classes)

    greens, reds = _colormap("Greens"), _colormap("Reds")
    row_total = np.maximum(counts.sum(axis=1), 1)
    off = counts.astype(float).copy()
    np.fill_diagonal(off, 0)
    max_off = max(off.max(), 1.0)
    rgba = np.ones((k, k, 4))
    for t in range(k):
        for p in range(k):
            if t == p:
                rgba[t, p] = greens(0.2 + 0.6 * counts[t, p] / row_total[t])
            elif counts[t, p]:
                rgba[t, p] = reds(0.15 + 0.7 * counts[t, p] / max_off)

    fig = _new_figure("confusion")
    ax = fig.subplots()
    ax.imshow(rgba, interpolation="nearest")
    fontsize = 10 if k <= 10 else max(5, int(100 / k))
    for t in range(k):
        for p in range(k):
            r, g, b, _ = rgba[t, p]
            dark = 0.299 * r + 0.587 * g + 0.114 * b < 0.55
            ax.text(p, t, f"{counts[t, p]:,}", ha="center", va="center", fontsize=fontsize,
                    color="white" if dark else ("0.75" if counts[t, p] == 0 else "black"))
    recall = counts.diagonal() / row_total
    ax.set_xticks(range(k), names, rotation=45 if max(map(len, names)) > 2 else 0,
                  ha="right" if max(map(len, names)) > 2 else "center")
    ax.set_yticks(range(k), [f"{name} ({100 * r:.1f}%)" for name, r in zip(names, recall)])
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class (share of it recognised)")
    ax.tick_params(length=0)

    n, correct = int(counts.sum()), int(counts.trace())
    pairs = most_confused(counts)
    confused = ", ".join(f"{names[t]}→{names[p]} ({c})" for t, p, c in pairs) or "nothing: no mistakes"
    if title is None:
        title = f"Confusion matrix: {n:,} samples, {correct:,} predicted right ({_percent(correct / n)})"
    # A figure title, not an Axes title: long class names push the Axes right,
    # and the title should still be centred on (and fit) the picture.
    fig.suptitle(title + "\n" + textwrap.fill(f"most confused (true→predicted): {confused}", 85),
                 fontsize=11)
    return _finish(fig, out), counts


# -- images of digits -----------------------------------------------------------------------
def _display_range(X: np.ndarray) -> tuple[float, float]:
    """The value range to draw inputs over: [0, 1] for unit scaling, [-1, 1] for symmetric."""
    lo, hi = float(X.min()), float(X.max())
    lo = min(lo, 0.0)
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


def mistakes(network: Network, X, y, out=None, *, max_images: int = 36, classes=None,
             image_shape=None, title: str | None = None):
    """The misclassified samples the network was most sure about, as a grid of images.

    ``X`` ``(n, 784)`` inputs, ``y`` ``(n,)`` labels.  Each tile is captioned
    "true → predicted (confidence)", where the confidence is the network's
    output for its prediction; at most ``max_images`` tiles, most confident
    first.  Needs a network with 28×28 = 784 inputs (or ``image_shape``).
    """
    shape = _image_shape(network, image_shape, "the mistakes grid")
    X = network.check_inputs(X)
    _, labels = network.check_targets(y, len(X))
    max_images = int(max_images)
    if max_images < 1:
        raise DigitnetError(f"max_images must be at least 1, got {max_images}")
    proba = network.predict_proba(X)
    pred, conf = _labels_and_confidence(network, proba)
    names = _class_names(network, max(network.sizes[-1], 2), classes)
    wrong = np.flatnonzero(pred != labels)
    wrong = wrong[np.argsort(-conf[wrong], kind="stable")]
    shown = wrong[:max_images]

    # One image of tiles with room above each for its caption: far faster than
    # one matplotlib Axes per digit, and the captions cannot collide.
    rows, cols = _near_square(max_images)
    h, w = shape
    gap, row_gap = 3, 10
    sheet = np.full((rows * (h + row_gap), cols * (w + gap) - gap), np.nan)
    for tile, i in enumerate(shown):
        r, c = divmod(tile, cols)
        top, left = r * (h + row_gap) + row_gap, c * (w + gap)
        sheet[top:top + h, left:left + w] = X[i].reshape(h, w)
    vmin, vmax = _display_range(X)
    cmap = _colormap("gray_r", bad="white")

    fig = _new_figure("mistakes")
    ax = fig.subplots()
    ax.imshow(sheet, cmap=cmap, vmin=vmin, vmax=vmax, interpolation="nearest")
    ax.set_axis_off()
    short = max(map(len, names)) <= 3          # digits; names like "Ankle boot" get two lines
    softmax = network.activations[-1].name == "softmax"

    def strength(i):   # a probability for softmax; otherwise the output unit's value
        return _confidence(conf[i]) if softmax else f"{proba[i, 0 if proba.shape[1] == 1 else pred[i]]:.2f}"

    for tile, i in enumerate(shown):
        r, c = divmod(tile, cols)
        top, left = r * (h + row_gap) + row_gap, c * (w + gap)
        ax.add_patch(_rectangle((left - 0.5, top - 0.5), w, h))
        ax.text(left + w / 2, top - 1.5,
                f"{names[labels[i]]} →{' ' if short else chr(10)}{names[pred[i]]} ({strength(i)})",
                ha="center", va="bottom", fontsize=10 if short else 8, color="firebrick",
                linespacing=1.1)
    if not len(shown):
        ax.text(0.5, 0.5, f"no mistakes on these {len(X):,} samples", fontsize=14, ha="center",
                transform=ax.transAxes)
    if title is None:
        title = (f"Mistakes: {len(wrong):,} of {len(X):,} test samples misclassified "
                 f"({_percent(len(wrong) / len(X))})")
        if len(shown):
            what = "the one" if len(shown) == 1 else f"the {len(shown)}"
            title += (f"; {what} the network was surest about\n"
                      "caption: true → predicted ("
                      + ("the probability it gave its prediction)" if softmax
                         else "the output of the unit behind the prediction)"))
    fig.suptitle(title, fontsize=12)
    return _finish(fig, out)


def hidden_units(network: Network, out=None, *, max_units: int = MAX_HIDDEN_UNITS,
                 image_shape=None, title: str | None = None):
    """Each first-layer unit's incoming weights ``W[0][j]`` ``(784,)`` drawn as a 28×28 image.

    Red is a positive weight (ink there raises the unit's input), blue a
    negative one, white zero; one colour scale for all tiles, so strong and
    weak units can be compared.  At most ``max_units`` units (the first ones)
    are drawn.  Needs a network with 28×28 = 784 inputs (or ``image_shape``).
    """
    shape = _image_shape(network, image_shape, "the hidden-unit picture")
    max_units = int(max_units)
    if max_units < 1:
        raise DigitnetError(f"max_units must be at least 1, got {max_units}")
    W = network.weights[0].astype(np.float64)          # (n_units, 784)
    n_units = len(W)
    n_shown = min(n_units, max_units)
    tiles = W[:n_shown].reshape(n_shown, *shape)
    # A robust limit: one extreme weight would otherwise wash every tile out.
    limit = float(np.percentile(np.abs(tiles), 99.5)) or 1.0
    _, cols = _near_square(n_shown)
    cmap = _colormap("RdBu_r", bad="white")              # white gaps between tiles

    fig = _new_figure("hidden")
    ax = fig.subplots()
    image = ax.imshow(_mosaic(tiles, cols, gap=3), cmap=cmap, vmin=-limit, vmax=limit, interpolation="nearest")
    ax.set_axis_off()
    h, w = shape
    for j in range(n_shown):
        r, c = divmod(j, cols)
        ax.add_patch(_rectangle((c * (w + 3) - 0.5, r * (h + 3) - 0.5), w, h))
    bar = fig.colorbar(image, ax=ax, shrink=0.6, extend="both")
    bar.set_label("weight (colour scale capped at the 99.5th percentile of |w|)")
    if title is None:
        layer = "hidden" if network.n_layers > 1 else "output"
        count = (f"the first {n_shown} of them shown" if n_shown < n_units
                 else "all shown, left to right, top to bottom")
        title = (f"What the {n_units} {layer} units of the first layer look for ({count})\n"
                 "each tile: one unit's weights from the 28×28 pixels; "
                 "red: ink there excites the unit, blue: ink there inhibits it")
    ax.set_title(title, fontsize=11)
    return _finish(fig, out)


def _draw_units(fig, ax, values: np.ndarray, *, cmap: str, lo: float, hi: float, label: str | None):
    """A vector of unit values ``(n,)`` as the squarest grid of cells (numbers written in when few)."""
    _, cols = _near_square(len(values))
    colours = _colormap(cmap, bad="white")        # white: the unused cells of the last row
    image = ax.imshow(_mosaic(values.reshape(-1, 1, 1), cols, gap=0), cmap=colours, vmin=lo, vmax=hi,
                      interpolation="nearest")
    if len(values) <= 36:
        for i, value in enumerate(values):
            r, c = divmod(i, cols)
            shade = (value - lo) / (hi - lo) if hi > lo else 0.0
            dark = shade < 0.6 if cmap == "viridis" else shade > 0.5
            ax.text(c, r, f"{value:.2g}", ha="center", va="center", fontsize=9,
                    color="white" if dark else "black")
    _frame_only(ax)
    if label is not None:
        bar = fig.colorbar(image, ax=ax, shrink=0.8, location="bottom", pad=0.02)
        bar.set_label(label, fontsize=9)


def _prediction_text(network: Network, output_row: np.ndarray, pred: int, conf: float) -> str:
    """How sure the network is, in its own terms: a probability for softmax, else the raw output."""
    if network.activations[-1].name == "softmax":
        return _confidence(conf)
    value = output_row[0] if len(output_row) == 1 else output_row[pred]
    return f"output {value:.2f}"


def activations(network: Network, x, out=None, *, label: int | None = None, classes=None,
                image_shape=None, title: str | None = None):
    """One sample's trip through the network: the input, every hidden layer, the output.

    ``x`` is one sample, ``(n_inputs,)``, ``(1, n_inputs)`` or ``(28, 28)``;
    ``label`` its true class, if known.  Hidden layers are drawn as grids of
    units (layer ``l`` has ``sizes[l]`` cells, coloured by activation, over
    the activation's whole range where it has one: 0 to 1 for sigmoid), the
    output as a bar chart of the output activations (probabilities for softmax).
    """
    x = network.check_inputs(x, "x")
    if len(x) != 1:
        raise DataError(f"activations draws one sample: pass x of shape ({network.sizes[0]},), got {len(x)} samples")
    layers = network.forward(x)                              # [x, a_1, …, a_L], each (1, sizes[l])
    k = network.sizes[-1]
    names = _class_names(network, max(k, 2), classes)
    output = layers[-1][0].astype(np.float64)
    pred, conf = _labels_and_confidence(network, layers[-1])
    pred, conf = int(pred[0]), float(conf[0])
    label = None if label is None else int(label)

    fig = _new_figure("activations")
    grid = fig.add_gridspec(2, network.n_layers, height_ratios=[1.25, 1])   # input + hidden layers on top
    try:
        shape = _image_shape(network, image_shape, "")
    except NotDrawable:
        shape = None
    ax_in = fig.add_subplot(grid[0, 0])
    lo, hi = _display_range(x)
    if shape is not None:
        ax_in.imshow(x[0].reshape(shape), cmap="gray_r", vmin=lo, vmax=hi, interpolation="nearest")
        ax_in.set_title(f"input: {shape[0]}×{shape[1]} pixels", fontsize=10)
        _frame_only(ax_in)
    else:
        _draw_units(fig, ax_in, x[0].astype(np.float64), cmap="gray_r", lo=lo, hi=hi, label=None)
        ax_in.set_title(f"input: {network.sizes[0]} values", fontsize=10)

    for l in range(1, network.n_layers):
        a = layers[l][0].astype(np.float64)
        act = network.activations[l - 1]
        lo, hi = act.output_range
        if not (np.isfinite(lo) and np.isfinite(hi)):       # ReLU, identity: the values' own range
            lo, hi = min(0.0, float(a.min())), max(float(a.max()), 1e-6)
        ax = fig.add_subplot(grid[0, l])
        _draw_units(fig, ax, a, cmap="viridis", lo=lo, hi=hi, label="activation")
        busy = (f"{np.count_nonzero(a > 0)} of {len(a)} active" if act.name == "relu"
                else f"mean {a.mean():.2f}")
        ax.set_title(f"layer {l}: {len(a)} {act.name} unit{'s' if len(a) != 1 else ''}\n{busy}", fontsize=10)

    ax_out = fig.add_subplot(grid[1, :])
    right = label is None or pred == label
    out_act = network.activations[-1].name
    if len(output) == 1:
        # One output unit: class 1 above ½, class 0 below.
        ax_out.bar([0], output, width=0.3, color="tab:blue" if right else "tab:red")
        ax_out.axhline(0.5, color="0.4", linestyle="--", linewidth=1)
        ax_out.text(0.2, 0.5, f"threshold ½: above → {names[1]}, below → {names[0]}", va="bottom", fontsize=9)
        ax_out.set_xlim(-1, 1)
        ax_out.set_xticks([0], ["output"])
        ax_out.text(0, output[0], f"{output[0]:.2f}", ha="center", va="bottom", fontsize=9)
    else:
        colours = ["0.7"] * len(output)
        if not right and 0 <= label < len(output):
            colours[label] = "tab:green"
        colours[pred] = "tab:blue" if right else "tab:red"
        bars = ax_out.bar(range(len(output)), output, color=colours)
        for bar, value in zip(bars, output):
            if abs(value) >= 0.005:
                ax_out.text(bar.get_x() + bar.get_width() / 2, value, f"{value:.2f}", ha="center",
                            va="bottom", fontsize=9)
        ax_out.set_xticks(range(len(output)), names[:len(output)])
    ax_out.set_ylabel("probability" if out_act == "softmax" else f"{out_act} output")
    if out_act in ("softmax", "sigmoid"):
        ax_out.set_ylim(0, 1.12)
    key = ("" if len(output) == 1 else
           "(blue: the prediction)" if right else "(red: the prediction, green: the true class)")
    ax_out.set_title(f"output layer: {len(output)} {out_act} unit{'s' if len(output) != 1 else ''} {key}",
                     fontsize=10)
    ax_out.grid(axis="y", alpha=0.3)
    if title is None:
        truth = f"true class {names[label]}, " if label is not None else ""
        verdict = "" if label is None else (" — right" if right else " — wrong")
        title = (f"One sample through the network: {truth}predicted {names[pred]} "
                 f"({_prediction_text(network, output, pred, conf)}){verdict}")
    fig.suptitle(title, fontsize=13)
    return _finish(fig, out)


# -- learning rates ------------------------------------------------------------------------------
class _LossProbe(Callback):
    """A training callback that measures the loss on fixed samples a few times per epoch.

    ``at`` and ``loss`` are the points of the curve (epochs as fractions,
    losses); ``reached`` is how far training got, in epochs, so a run that
    diverges can be marked where it happened.
    """

    def __init__(self, X, y, points_per_epoch: int):
        self.X, self.y, self.points_per_epoch = X, y, points_per_epoch
        self.at, self.loss = [], []
        self.reached = 0.0
        self.network = None

    def on_train_begin(self, network, optimizer, epochs):
        self.network = network
        self._record(0.0)

    def on_batch_end(self, epoch, batch, n_batches):
        self.reached = epoch + (batch + 1) / n_batches
        every = max(1, n_batches // self.points_per_epoch)
        if (batch + 1) % every == 0 or batch + 1 == n_batches:
            self._record(self.reached)

    def _record(self, at):
        loss = self.network.loss_value(self.X, self.y)
        if np.isfinite(loss):
            self.at.append(at)
            self.loss.append(max(float(loss), 1e-12))   # the axis is logarithmic


def _recipe_value(network: Network, key, default):
    """``metadata["recipe"][key]`` (a checkpoint's optimiser as a fallback), else ``default``.

    A recipe's ``batch_size`` of ``None`` means full-batch descent and is kept.
    """
    recipe = network.metadata.get("recipe") or {}
    if key == "batch_size":
        return recipe.get("batch_size", default)
    value = recipe.get(key)
    if key == "optimizer":
        if isinstance(value, dict):
            value = value.get("name")
        if value is None:
            value = ((network.metadata.get("optimizer") or {}).get("config") or {}).get("name")
    return default if value is None else value


def learning_rates(network: Network, X, y, out=None, *, lrs=None, epochs: int = 3,
                   batch_size: int | str | None = None, optimizer: str | None = None,
                   seed: int | None = None, points_per_epoch: int = 10, title: str | None = None):
    """Train the same architecture briefly at several learning rates; draw the loss curves.

    Each run starts from the same initial weights (a fresh network built
    from ``network.get_config()``; the trained weights are not touched) and
    trains on ``X`` ``(n, n_inputs)``, ``y`` ``(n,)`` for ``epochs`` epochs,
    at a constant rate, without L2.  ``optimizer`` and ``batch_size``
    (``"full"`` for full-batch descent) default to the model's recipe
    (``metadata["recipe"]``), else SGD with batches of 32; ``lrs`` defaults
    to :data:`DEFAULT_LRS` for the optimiser plus the recipe's own ``lr``,
    marked in the legend.  The loss is measured on (up
    to) the first 1,000 samples ``points_per_epoch`` times per epoch.
    A run that diverges is drawn up to the divergence and marked, it is not
    an error.  The runs are compared with each other: the lowest final loss
    is "best", a final loss within 10% of it "about as good", other smaller
    rates "too low" and larger ones "too high".
    """
    optimizer = str(optimizer or _recipe_value(network, "optimizer", "sgd")).lower()
    if batch_size is None:
        batch_size = _recipe_value(network, "batch_size", 32)   # may be None: full batch
    elif batch_size == "full":
        batch_size = None
    recipe_lr = _recipe_value(network, "lr", None)
    if lrs is None:
        lrs = list(DEFAULT_LRS.get(optimizer, DEFAULT_LRS["sgd"]))
        # The model's own rate, for reference, when it is not one of them already.
        if isinstance(recipe_lr, (int, float)) and not isinstance(recipe_lr, bool) and recipe_lr > 0 \
                and float(recipe_lr) not in lrs:
            lrs.append(float(recipe_lr))
    lrs = [float(lr) for lr in lrs]
    if not lrs or any(not (math.isfinite(lr) and lr > 0) for lr in lrs):
        raise DigitnetError(f"learning rates must be positive numbers, got {lrs}")
    if int(points_per_epoch) < 1:
        raise DigitnetError(f"points_per_epoch must be at least 1, got {points_per_epoch}")
    X = network.check_inputs(X)
    _, labels = network.check_targets(y, len(X))
    config = network.get_config()
    if seed is not None:
        config["seed"] = int(seed)
    elif config.get("seed") is None:
        config["seed"] = 0
    probe_X, probe_y = X[:1000], labels[:1000]

    runs = []
    for lr in lrs:
        net = Network.from_config(config)
        probe = _LossProbe(probe_X, probe_y, int(points_per_epoch))
        diverged = None
        try:
            # A diverging run overflows on purpose; NumPy's warnings about it are noise here.
            with np.errstate(all="ignore"):
                net.fit(X, labels, epochs=epochs, batch_size=batch_size, optimizer=optimizer, lr=lr,
                        seed=config["seed"], callbacks=[probe])
        except TrainingDiverged:
            diverged = probe.reached                  # epochs completed before the loss blew up
        runs.append({"lr": lr, "at": probe.at, "loss": probe.loss, "diverged": diverged})

    finished = [r for r in runs if r["diverged"] is None and r["loss"]]
    best = min(finished, key=lambda r: r["loss"][-1]) if len(runs) > 1 and finished else None
    start = max((r["loss"][0] for r in runs if r["loss"]), default=1.0)
    fig = _new_figure("lr")
    ax = fig.subplots()
    colours = _colormap("plasma")
    for i, run in enumerate(sorted(runs, key=lambda r: r["lr"])):
        colour = colours(0.1 + 0.75 * i / max(1, len(runs) - 1))
        lower = best is not None and run["lr"] < best["lr"]
        if run["diverged"] is not None:
            verdict = "too high, " if not lower and best is not None else ""
            text = f"diverged in epoch {math.floor(run['diverged']) + 1}"
        else:
            # Within 10% of the best final loss is within the noise of three short epochs.
            close = best is not None and run["loss"] and run["loss"][-1] <= 1.1 * best["loss"][-1]
            verdict = ("best, " if run is best else "about as good, " if close else
                       "too low, " if lower else "too high, " if best is not None else "")
            text = f"final loss {run['loss'][-1]:.3g}" if run["loss"] else "no finite loss"
        own = " (the recipe's)" if recipe_lr is not None and run["lr"] == recipe_lr else ""
        ax.plot(run["at"], run["loss"], "-", color=colour, linewidth=2.4 if run is best else 1.6,
                label=f"η = {run['lr']:g}{own}: {verdict}{text}")
        if run["diverged"] is not None:
            # The loss went to infinity: draw the jump off the top of the plot and mark it.
            last_at, last_loss = (run["at"][-1], run["loss"][-1]) if run["at"] else (0.0, start)
            ax.plot([last_at, run["diverged"]], [last_loss, 1e30], "--", color=colour, linewidth=1.2)
            ax.plot(run["diverged"], 0.96, "X", color=colour, markersize=13, markeredgecolor="black",
                    transform=ax.get_xaxis_transform(), clip_on=False)
            ax.annotate(f"η = {run['lr']:g} diverged", (run["diverged"], 0.96), xycoords=ax.get_xaxis_transform(),
                        textcoords="offset points", xytext=(10, -4), fontsize=10, va="top")
    ax.set_yscale("log")
    finite = [v for r in runs for v in r["loss"]]
    low = min(finite, default=0.1)
    # Room above the start for a run that gets worse, but not so much that the others flatten out.
    bottom, top = low / 1.5, min(max(finite, default=1.0) * 1.5, start * 50)
    ax.set_ylim(bottom, top)
    from matplotlib.ticker import FuncFormatter

    # Plain numbers (0.3, not 3×10⁻¹).  The in-between ticks are labelled
    # sparingly when the axis spans more decades, so labels never crowd.
    decades = math.log10(top / bottom)
    keep = ({1, 2, 3, 4, 5, 6, 7, 8, 9} if decades <= 1 else {1, 2, 3, 5} if decades <= 2
            else {1, 2, 5} if decades <= 3.5 else {1})

    def label(value, _):
        mantissa = round(value / 10 ** math.floor(math.log10(value) + 1e-9))
        return f"{value:g}" if mantissa in keep else ""

    ax.yaxis.set_major_formatter(FuncFormatter(label))
    ax.yaxis.set_minor_formatter(FuncFormatter(label))
    ax.set_xlim(0, epochs)
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{network.loss.name.replace('_', ' ')} loss on {len(probe_X):,} training samples")
    ax.xaxis.get_major_locator().set_params(integer=True)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=10, loc="best")
    if title is None:
        title = (f"Learning rate η: too low learns slowly, too high stalls or diverges\n"
                 f"network {' → '.join(map(str, network.sizes))}, {optimizer}, "
                 f"{'full-batch' if batch_size is None else f'batches of {batch_size}'}; "
                 f"{epochs} epoch{'s' if epochs != 1 else ''} on {len(X):,} training samples "
                 "from the same initial weights (log scale)")
    # The title is centred on the axes, which the y label pushes right: lines of
    # more than about 95 characters would run off the picture's right edge.
    ax.set_title("\n".join(textwrap.fill(line, 90, break_on_hyphens=False)
                           for line in title.split("\n")), fontsize=11)
    return _finish(fig, out)


# -- the data ---------------------------------------------------------------------------------------
def data_grid(X, y, out=None, *, per_class: int = 10, classes=None, image_shape=(28, 28),
              title: str | None = None):
    """The first ``per_class`` images of every class, one row per class.

    ``X`` ``(n, 784)`` or ``(n, 28, 28)`` images (any value range; drawn as
    dark ink on white), ``y`` ``(n,)`` integer labels 0..k-1.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    shape = tuple(int(s) for s in image_shape)
    if len(X) == 0 or X.dtype.kind not in "uif" or X[:1].size != shape[0] * shape[1]:
        raise DataError(f"data_grid needs images of {shape[0]}×{shape[1]} pixels, got an array of shape {X.shape}")
    if y.shape != (len(X),) or y.dtype.kind not in "iu" or y.min() < 0:
        raise DataError(f"data_grid needs one label 0..k-1 per image, got labels of shape {y.shape}")
    per_class = int(per_class)
    if per_class < 1:
        raise DigitnetError(f"per_class must be at least 1, got {per_class}")
    n_classes = int(y.max()) + 1
    names = _class_names(None, n_classes, classes)
    counts = np.bincount(y, minlength=n_classes)
    tiles = np.full((n_classes * per_class, *shape), np.nan)
    for c in range(n_classes):
        rows = np.flatnonzero(y == c)[:per_class]
        tiles[c * per_class:c * per_class + len(rows)] = X[rows].reshape(len(rows), *shape)
    lo, hi = _display_range(tiles[np.isfinite(tiles)])
    gap = 2
    sheet = _mosaic(tiles, per_class, gap=gap)
    cmap = _colormap("gray_r", bad="white")

    fig = _new_figure("data")
    ax = fig.subplots()
    ax.imshow(sheet, cmap=cmap, vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_yticks([c * (shape[0] + gap) + (shape[0] - 1) / 2 for c in range(n_classes)],
                  [f"{name} ({count:,})" for name, count in zip(names, counts)])
    ax.set_xticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title is None:
        title = f"The data: the first {per_class} of each class ({len(X):,} samples)"
    title += "\nrows: class (its number of samples)"
    fig.suptitle("\n".join(textwrap.fill(line, 80) for line in title.split("\n")), fontsize=12)
    return _finish(fig, out)


# -- augmentation -----------------------------------------------------------------------------------
def augment_grid(X, augment, out=None, *, copies: int = 8, seed: int = 0, image_shape=(28, 28),
                 title: str | None = None):
    """Each image of ``X`` (one row each) beside ``copies`` randomly augmented versions of it.

    ``X`` ``(n, h·w)`` images; ``augment`` a function ``augment(X, rng)``
    that changes rows in place (see :mod:`digitnet.train.augment`).  Column
    ``j`` is drawn with a generator seeded by ``(seed, j)``, so the picture
    is the same every time.
    """
    X = np.array(X, dtype=np.float32)
    shape = tuple(int(s) for s in image_shape)
    if X.ndim != 2 or len(X) == 0 or X.shape[1] != shape[0] * shape[1]:
        raise DataError(f"augment_grid needs rows of {shape[0]}×{shape[1]} pixels, got an array of "
                        f"shape {X.shape}")
    copies = int(copies)
    if copies < 1:
        raise DigitnetError(f"copies must be at least 1, got {copies}")
    columns = [X]
    for j in range(copies):
        changed = X.copy()
        augment(changed, np.random.default_rng([seed, j]))
        columns.append(changed)
    n = len(X)
    tiles = np.stack(columns, axis=1).reshape(n * (copies + 1), *shape)   # row i: original, copies
    gap = 2
    sheet = _mosaic(tiles, copies + 1, gap=gap)
    lo, hi = _display_range(X)
    fig = _new_figure("augment")
    ax = fig.subplots()
    ax.imshow(sheet, cmap=_colormap("gray_r", bad="white"), vmin=lo, vmax=hi, interpolation="nearest")
    ax.set_xticks([(shape[1] + gap) * j + (shape[1] - 1) / 2 for j in range(copies + 1)],
                  ["original"] + [f"#{j + 1}" for j in range(copies)])
    ax.set_yticks([])
    ax.tick_params(length=0)
    for side in ax.spines.values():
        side.set_visible(False)
    if title is None:
        title = f"{n} images and {copies} random versions of each"
    fig.suptitle("\n".join(textwrap.fill(line, 90) for line in title.split("\n")), fontsize=12)
    return _finish(fig, out)
