"""Presets: the seed material's training recipes, and ours, as named objects.

A :class:`Preset` fixes everything a training run needs: the architecture,
activations, loss, initialiser, optimiser, batch size, learning rate,
epochs, L2 strength, schedule, how pixels are scaled and how the training
set is split.  :func:`train_recipe` runs one end to end: load the data,
split it, build the seeded network, train, evaluate, save.

>>> from digitnet.train.recipes import get_preset
>>> get_preset("nielsen").sizes
(784, 30, 10)

``digitnet train --preset NAME`` is a thin shell around :func:`train_recipe`.
The same seed gives the same weights, bit for bit; a run resumed from a
checkpoint ends with the weights of the uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..data.datasets import CLASS_NAMES, DIGIT_CLASSES
from ..errors import DataError, DigitnetError, TrainingDiverged
from ..nn.network import Network
from ..nn.optimizers import (
    OPTIMIZERS,
    all_hyperparameters,
    check_options,
    get_optimizer,
)
from ..nn.schedules import get_schedule
from . import Callback, History

__all__ = ["Preset", "PRESETS", "DEFAULT_PRESET", "get_preset", "train_recipe", "TrainResult",
           "TrainingInterrupted", "load_data", "preprocessing_for", "checkpoint_path_for",
           "training_memory_bytes", "available_memory_bytes", "check_training_memory",
           "XOR_X", "XOR_Y"]

#: The preset ``digitnet train`` uses when none is named.
DEFAULT_PRESET = "best"

#: The Boolean example: inputs X1 X2 X3 (X3 is a constant 1, a bias input), target X1 xor X2.
XOR_X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0], dtype=np.int64)


@dataclass(frozen=True)
class Preset:
    """A complete, named training recipe.

    ``sizes`` lists the units per layer, input first; ``activations`` has one
    name per layer (``len(sizes) - 1``); ``batch_size`` ``None`` means
    full-batch gradient descent; ``l2`` is Nielsen's λ (the penalty
    (λ/2n)·Σ‖W‖²); ``schedule`` is ``None`` (constant), ``"step"`` or
    ``"cosine"``; ``scale`` is ``"unit"`` (pixels in [0, 1]) or
    ``"symmetric"`` ([−1, 1]); ``split`` names a :func:`digitnet.data.split`
    (``"standard"``, ``"nielsen"``, ``"raschka"``, ``"zhang"``); ``data`` is
    ``"mnist"`` or ``"xor"`` (the built-in four-row table).
    ``reported_on`` says which set the headline accuracy comes from:
    ``"test"``, or ``"validation"`` where the source reports its dev set.
    ``shift`` > 0 moves every training image by a random whole number of
    pixels, up to ``shift`` each way, afresh every epoch
    (:class:`digitnet.train.augment.RandomShift`).  ``optimizer_options`` sets
    the optimiser's own hyperparameters (``{"momentum": 0.95}``,
    ``{"beta2": 0.99}``…; see :attr:`digitnet.nn.optimizers.Optimizer.hyperparameters`);
    those not given keep the optimiser's defaults.
    ``elastic`` (α, 0 = off) and ``elastic_sigma`` (σ) distort every training
    image elastically each epoch, and ``rotate`` (degrees), ``zoom`` (a
    fraction: 0.1 is ±10%) and ``shear`` turn, scale and shear it at random
    (:class:`digitnet.train.augment.Distort`); ``fade`` > 0 weakens those
    distortions over the last ``fade`` epochs, to none in the last one;
    ``dropout`` is the probability of dropping each hidden unit in a
    training step (0 = off).
    """

    name: str
    source: str
    published: str
    sizes: tuple
    activations: tuple
    loss: str
    init: str
    optimizer: str
    lr: float
    batch_size: int | None
    epochs: int
    l2: float = 0.0
    schedule: str | None = None
    scale: str = "unit"
    split: str = "standard"
    data: str = "mnist"
    notes: str = ""
    reported_on: str = "test"
    shift: int = 0
    optimizer_options: dict = field(default_factory=dict)
    elastic: float = 0.0
    elastic_sigma: float = 4.0
    rotate: float = 0.0
    zoom: float = 0.0
    shear: float = 0.0
    dropout: float = 0.0
    fade: int = 0

    # -- derived ------------------------------------------------------------------
    @property
    def hidden_activation(self) -> str | None:
        return self.activations[0] if len(self.activations) > 1 else None

    @property
    def output_activation(self) -> str:
        return self.activations[-1]

    @property
    def command(self) -> str:
        return f"digitnet train --preset {self.name}"

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists."""
        out = dataclasses.asdict(self)
        out["sizes"] = list(self.sizes)
        out["activations"] = list(self.activations)
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Preset":
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in data.items() if k in names}
        try:
            kwargs["sizes"] = tuple(int(s) for s in kwargs["sizes"])
            kwargs["activations"] = tuple(kwargs["activations"])
            return cls(**kwargs)
        except (KeyError, TypeError, ValueError) as exc:
            raise DigitnetError(f"not a usable recipe ({type(exc).__name__}: {exc})") from None

    def with_overrides(self, overrides: dict | None) -> "Preset":
        """A copy with some fields replaced.

        Keys are field names, plus ``activation`` (every hidden layer),
        ``output`` (the output layer) and any optimiser hyperparameter
        (``momentum``, ``beta1``…, merged into ``optimizer_options``).
        Changing ``sizes`` keeps the hidden and output activations, however
        many hidden layers there now are; changing ``optimizer`` drops the
        preset's options that the new optimiser does not take.
        """
        if not overrides:
            return self
        changes = dict(overrides)
        options = dict(changes.pop("optimizer_options", None) or self.optimizer_options)
        given = {k: changes.pop(k) for k in list(changes) if k in all_hyperparameters()}
        optimizer = changes.get("optimizer", self.optimizer)
        if optimizer != self.optimizer and str(optimizer).lower() in OPTIMIZERS:
            takes = OPTIMIZERS[str(optimizer).lower()].hyperparameters
            options = {k: v for k, v in options.items() if k in takes}
        changes["optimizer_options"] = {**options, **given}
        hidden = changes.pop("activation", None) or self.hidden_activation
        output = changes.pop("output", None) or self.output_activation
        sizes = tuple(changes.pop("sizes", self.sizes))
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)} - {"name"}
        if unknown:
            raise DigitnetError(f"unknown recipe fields {sorted(unknown)}")
        n_hidden = len(sizes) - 2
        if n_hidden > 0 and hidden is None:
            hidden = "relu"  # a preset without hidden layers given some: ReLU unless told
        activations = (hidden,) * max(n_hidden, 0) + (output,)
        return dataclasses.replace(self, sizes=sizes, activations=activations, **changes)

    def build_network(self, seed: int | None = 0, dtype=np.float32) -> Network:
        """The recipe's untrained network, initialised from ``seed``."""
        return Network(list(self.sizes), activations=list(self.activations), loss=self.loss,
                       init=self.init, dtype=dtype, seed=seed)

    @property
    def distorts(self) -> bool:
        """Whether the recipe distorts its training images (elastically or by an affine map)."""
        return bool(self.elastic or self.rotate or self.zoom or self.shear)

    def augmentation_text(self) -> str:
        """The recipe's random changes to the training images, in words ("" if none)."""
        words = []
        if self.elastic:
            words.append(f"elastic α {self.elastic:g}, σ {self.elastic_sigma:g}")
        if self.rotate:
            words.append(f"rotations ≤ {self.rotate:g}°")
        if self.zoom:
            words.append(f"zoom ≤ ±{self.zoom:g}")
        if self.shear:
            words.append(f"shear ≤ {self.shear:g}")
        if self.fade and self.distorts:
            words.append(f"fading to none over the last {self.fade} epochs")
        if self.shift:
            words.append(f"shifts ≤ {self.shift} px")
        return ", ".join(words)

    def make_augment(self):
        """The recipe's augmentation for :func:`digitnet.train.fit` (``None`` if it has none)."""
        from .augment import Distort, get_augment

        steps = []
        if self.distorts:
            steps.append(Distort(alpha=self.elastic, sigma=self.elastic_sigma, rotate=self.rotate,
                                 zoom=self.zoom, shear=self.shear, fade=self.fade))
        if self.shift:
            steps.append(self.shift)
        return get_augment(steps)

    def make_optimizer(self):
        """The recipe's optimiser, with its learning rate and options."""
        return get_optimizer(self.optimizer, self.lr, **self.optimizer_options)

    def check(self) -> None:
        """Raise :class:`DigitnetError` if a training field cannot work.

        The architecture fields are checked by :meth:`build_network`.
        """
        if not isinstance(self.optimizer_options, dict):
            raise DigitnetError(f"optimizer_options must be a mapping, got {self.optimizer_options!r}")
        get_optimizer(self.optimizer, self.lr, **check_options(self.optimizer, self.optimizer_options))
        get_schedule(self.schedule, self.epochs)
        if isinstance(self.epochs, bool) or not isinstance(self.epochs, int) or self.epochs < 1:
            raise DigitnetError(f"epochs must be a whole number ≥ 1, got {self.epochs!r}")
        if self.batch_size is not None and (isinstance(self.batch_size, bool)
                                            or not isinstance(self.batch_size, int)
                                            or self.batch_size < 1):
            raise DigitnetError(f"batch size must be a whole number ≥ 1 or full, got {self.batch_size!r}")
        if not (isinstance(self.l2, (int, float)) and math.isfinite(self.l2) and self.l2 >= 0):
            raise DigitnetError(f"l2 must be a finite number ≥ 0, got {self.l2!r}")
        if isinstance(self.shift, bool) or not isinstance(self.shift, int) or not 0 <= self.shift <= 8:
            raise DigitnetError(f"shift must be a whole number of pixels from 0 to 8, got {self.shift!r}")
        if self.scale not in ("unit", "symmetric"):
            raise DigitnetError(f"scale must be unit or symmetric, got {self.scale!r}")
        from .augment import Distort

        Distort(alpha=self.elastic, sigma=self.elastic_sigma, rotate=self.rotate, zoom=self.zoom,
                shear=self.shear, fade=self.fade)          # checks the values, used or not
        if (isinstance(self.dropout, bool) or not isinstance(self.dropout, (int, float))
                or not 0 <= self.dropout < 1):
            raise DigitnetError(f"dropout is the probability of dropping a hidden unit, from 0 up to "
                                f"(not including) 1, got {self.dropout!r}")
        from ..data import SPLITS

        if self.split not in SPLITS:
            raise DigitnetError(f"unknown split {self.split!r}: choose one of {', '.join(SPLITS)}")


# ---------------------------------------------------------------------------------
# The presets

_PRESET_LIST = [
    Preset(
        name="nielsen",
        source="Michael Nielsen, Neural Networks and Deep Learning, ch. 1 (network.py)",
        published="about 95% on the test set",
        sizes=(784, 30, 10), activations=("sigmoid", "sigmoid"), loss="quadratic", init="normal",
        optimizer="sgd", lr=3.0, batch_size=10, epochs=30, split="nielsen",
        notes="Sigmoid everywhere (the output too), the quadratic cost ½‖a−y‖², weights and biases "
              "drawn from N(0, 1), mini-batch SGD with η = 3.0 on 50,000 images; the last 10,000 "
              "training images validate. Our quadratic cost averages over the mini-batch exactly "
              "as his update η/m·Σ∇ does, so η carries over unchanged. N(0, 1) sigmoid units "
              "saturate easily and some seeds start slowly: seeds 0-2 reached 94.5-95.3% on the "
              "test set, seed 3 was still stuck at 86.6% after 30 epochs (float32; in float64, "
              "whose rounding takes another path, it reaches 95.0%)."),
    Preset(
        name="nielsen-deep",
        source="network.py with two hidden layers of 16 (the layout of 3Blue1Brown's videos)",
        published="none (a variant of network.py)",
        sizes=(784, 16, 16, 10), activations=("sigmoid", "sigmoid", "sigmoid"), loss="quadratic",
        init="normal", optimizer="sgd", lr=3.0, batch_size=10, epochs=30, split="nielsen",
        notes="Nielsen's recipe unchanged except for the layers: 13,002 parameters instead of "
              "23,860."),
    Preset(
        name="nielsen-ce",
        source="Michael Nielsen, Neural Networks and Deep Learning, ch. 3 (network2.py)",
        published="about 98% on the validation set",
        sizes=(784, 100, 10), activations=("sigmoid", "sigmoid"), loss="binary_cross_entropy",
        init="normal_scaled", optimizer="sgd", lr=0.5, batch_size=10, epochs=30, l2=5.0,
        split="nielsen",
        notes="network2.py's CrossEntropyCost is −Σ[y ln a + (1−y) ln(1−a)] over sigmoid outputs: "
              "digitnet's binary_cross_entropy, whose gradient with a sigmoid output is a−y. "
              "Weights N(0, 1/n_in), biases N(0, 1); L2 with λ = 5.0 over n = 50,000."),
    Preset(
        name="raschka",
        source="Raschka, Liu & Mirjalili, Machine Learning with PyTorch and Scikit-Learn, ch. 11 "
               "(NeuralNetMLP)",
        published="94.5% on the test set",
        sizes=(784, 50, 10), activations=("sigmoid", "sigmoid"), loss="mse", init="normal_0.1",
        optimizer="sgd", lr=1.0, batch_size=100, epochs=50, scale="symmetric", split="raschka",
        notes="Pixels scaled to [−1, 1]; weights N(0, 0.1²), biases 0; a stratified 5,000 of the "
              "60,000 training images validate. His MSE is the mean over the 10 outputs, but his "
              "code steps along 2(a−y)/n, the gradient of the sum over the outputs; digitnet's mse "
              "gradient is the true gradient of the mean, 10× smaller, so his η = 0.1 is lr = 1.0 "
              "here."),
    Preset(
        name="zhang",
        source="Samson Zhang, 'Building a neural network FROM SCRATCH' (Kaggle notebook)",
        published="about 85% on the dev set",
        sizes=(784, 10, 10), activations=("relu", "softmax"), loss="cross_entropy", init="uniform",
        optimizer="sgd", lr=0.1, batch_size=None, epochs=500, split="zhang",
        reported_on="validation",
        notes="Full-batch gradient descent: one epoch is one step, so 500 epochs are his 500 "
              "iterations. Weights and biases U(−0.5, 0.5); the first 1,000 training images are "
              "the dev set, whose accuracy is the headline figure (he used Kaggle's 42,000-image "
              "train.csv; we use MNIST's 60,000). His bias gradient sums dZ over all units "
              "(np.sum without an axis); digitnet uses the per-unit gradient."),
    Preset(
        name="softmax-mse",
        source="the lecture's network: sigmoid hidden layers, softmax output, quadratic loss",
        published="none",
        sizes=(784, 128, 64, 10), activations=("sigmoid", "sigmoid", "softmax"), loss="quadratic",
        init="glorot", optimizer="sgd", lr=0.5, batch_size=1, epochs=5, split="standard",
        notes="The quadratic loss is back-propagated through the softmax's full Jacobian "
              "diag(a) − aaᵀ (no cross-entropy shortcut), one sample per step. The Jacobian "
              "shrinks the gradient, so the step is large: lr = 0.5 for 5 epochs (our choice)."),
    Preset(
        name="xor",
        source="the Boolean example: Y = X1 xor X2 (X3 is a constant 1)",
        published="learns the table",
        sizes=(3, 4, 1), activations=("sigmoid", "sigmoid"), loss="quadratic", init="normal",
        optimizer="sgd", lr=10.0, batch_size=None, epochs=1000, data="xor",
        notes="Four rows, built in; full-batch gradient descent. The 'test set' is the table "
              "itself: 100% means every row is right."),
    Preset(
        name="best",
        source="digitnet's own: the best MLP we could train in about a minute on two cores",
        published="none (our target: ≥ 98.5% on the test set in a minute)",
        sizes=(784, 256, 128, 10), activations=("relu", "relu", "softmax"),
        loss="cross_entropy", init="he", optimizer="nesterov", lr=0.1, batch_size=64, epochs=15,
        l2=6.0, schedule="cosine", split="standard", shift=1, optimizer_options={"momentum": 0.9},
        notes="Two ReLU layers with He init, softmax with cross-entropy, Nesterov momentum (0.9) "
              "at lr 0.1 decayed to 0 along a cosine, mini-batches of 64, L2 λ = 6 (λ/n = 1e-4, "
              "PyTorch's weight_decay=1e-4), all 60,000 training images, each moved by a random "
              "pixel or none in each direction every epoch (--shift 1). The shifts are worth "
              "about half a point: in our trials this network scored 98.97-99.03% with them "
              "(seeds 0-2) and 98.58-98.61% without (seeds 0-1); without them even "
              "[784, 512, 256, 10] scored 98.46-98.66%. "
              "Being small (235k multiply-adds per image) it also reads fast: the 10,000 test "
              "images in about 30 ms on two cores."),
    Preset(
        name="record",
        source="digitnet's own, after Simard et al. 2003 and Cireşan et al. 2010: a plain MLP "
               "trained on digits deformed anew every epoch",
        published="none (our target: ≥ 99.5% on the test set in 10 minutes on two CPU cores; "
                  "Cireşan et al. 2010 reached 99.65% with 12 million weights on a GPU)",
        sizes=(784, 1024, 1024, 10), activations=("relu", "relu", "softmax"),
        loss="cross_entropy", init="he", optimizer="nesterov", lr=0.1, batch_size=256, epochs=100,
        l2=3.0, schedule="cosine", split="standard", optimizer_options={"momentum": 0.9},
        elastic=34.0, elastic_sigma=5.0, rotate=15.0, zoom=0.15, shear=0.15, dropout=0.0, fade=20,
        notes="Two ReLU layers of 1,024 with He init, softmax with cross-entropy, Nesterov "
              "momentum (0.9) at lr 0.1 decayed to 0 along a cosine, mini-batches of 256, L2 "
              "λ = 3, 100 epochs over all 60,000 training images, each distorted anew every epoch: "
              "an elastic field (α 34, σ 5; --elastic 34,5) and a rotation of up to 15°, a zoom of "
              "up to ±15% and a shear of up to 0.15 (--affine 15,0.15,0.15), in one bilinear "
              "resampling ('digitnet plot augment record' shows them); over the last 20 epochs "
              "the distortions fade to none (--fade 20). No dropout: in our trials it cost "
              "accuracy at these budgets. Seeds 0-2 reached 99.56%, 99.45% and 99.50% on the test set "
              "(median 99.50%), each run alone on two cores with two BLAS threads in 465 s, 474 s "
              "and 480 s of wall time, loading, checkpoints and saving included. "
              "benchmarks/PRESETS.md has every run and what each ingredient is worth."),
]

#: Every preset by name.
PRESETS: dict[str, Preset] = {p.name: p for p in _PRESET_LIST}


def get_preset(name) -> Preset:
    """The preset called ``name`` (a :class:`Preset` is returned as is)."""
    if isinstance(name, Preset):
        return name
    if isinstance(name, str) and name.strip().lower() in PRESETS:
        return PRESETS[name.strip().lower()]
    raise DigitnetError(f"unknown preset {name!r}: choose one of {', '.join(PRESETS)} "
                        "('digitnet presets' describes them)")


# ---------------------------------------------------------------------------------
# Data


@dataclass
class _Data:
    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_val: np.ndarray | None
    y_val: np.ndarray | None
    X_test: np.ndarray | None
    y_test: np.ndarray | None


def load_data(source="mnist", *, scale="unit"):
    """``digitnet.data.load`` plus the built-in ``"xor"`` table.

    Returns a dataset with ``name``, ``X_train`` ``(n, n_features)``,
    ``y_train`` ``(n,)``, ``X_test``, ``y_test`` (``None`` for a CSV file).
    A :class:`digitnet.data.Dataset` already loaded (at ``scale``) is
    returned as it is: a server that trains again and again loads MNIST once.
    """
    if isinstance(source, str) and source.lower() == "xor":
        return _Data("xor", XOR_X.copy(), XOR_Y.copy(), None, None, XOR_X.copy(), XOR_Y.copy())
    from .. import data

    if isinstance(source, data.Dataset):
        return source
    return data.load(source, scale=scale)


def preprocessing_for(preset: Preset, dataset_name: str) -> dict:
    """The model header's ``preprocessing`` entry for a model trained with ``preset``."""
    if preset.data == "xor" or dataset_name == "xor":
        return {"scale": "unit", "input_shape": [3], "dataset": "xor", "classes": ["0", "1"]}
    return {"scale": preset.scale, "input_shape": [28, 28], "dataset": dataset_name,
            "classes": list(CLASS_NAMES.get(dataset_name, DIGIT_CLASSES))}


def checkpoint_path_for(out) -> Path:
    """``model.npz`` → ``model.ckpt.npz`` (any other name gets ``.ckpt.npz`` appended)."""
    out = Path(out)
    if out.suffix == ".npz":
        return out.with_suffix(".ckpt.npz")
    return out.with_name(out.name + ".ckpt.npz")


def recorded_source(data) -> str:
    """How a model's header records its data source: a folder or file as an absolute path.

    Names of known data sets (``"mnist"``, ``"fashion-mnist"``, ``"xor"``…)
    stay as they are; a folder of IDX files or a CSV file becomes its
    absolute path, so ``digitnet evaluate``, ``plot``, ``report`` and
    ``train --resume`` find it again from any working folder.
    """
    from ..data import Dataset

    if isinstance(data, Dataset):       # loaded already: its name says which
        return recorded_source(data.name)
    text = str(data)
    if not isinstance(data, (str, os.PathLike)):
        return text
    if isinstance(data, str):
        from ..data import datasets

        known = set(getattr(datasets, "_ALIASES", {})) | {"xor"}
        if text.strip().lower() in known:
            return text
    path = Path(text).expanduser()
    try:
        return str(path.resolve()) if path.exists() else text
    except OSError:
        return text


# ---------------------------------------------------------------------------------
# Memory

#: Rows a model is evaluated on at once (``Network.evaluate``'s chunks).
_EVAL_ROWS = 8192
#: Rows of shuffled training inputs gathered at once by the training loop.
_GATHER_ROWS = 1024


def training_memory_bytes(sizes, *, batch_size: int | None, n_train: int = 0, n_eval: int = 0,
                          optimizer: str = "sgd", l2: float = 0.0, itemsize: int = 4) -> dict:
    """An estimate of the memory a training run needs, besides the data set itself.

    ``batch_size`` ``None`` is full-batch descent (a batch of ``n_train``
    rows); ``n_train`` and ``n_eval`` may be 0 when not known yet (their
    parts then count as nothing).  Returns bytes by part:

    ``parameters``  the parameters and gradients, the training loop's copy of
                    the last good epoch, the copy kept for Ctrl-C, the
                    checkpoint's copy (parameters and gradients), the
                    optimiser's state and its copy, the L2 term's buffer, and
                    the largest layer's initial weights drawn in float64;
    ``steps``       each step's arrays: every layer's ``z`` and ``∂loss/∂a``
                    for a batch, the output layer's activations and δ, and
                    the gathered (shuffled) input rows;
    ``epoch``       every step's outputs kept for the epoch's loss, their
                    activations, the one-hot targets and their shuffled copy,
                    and a chunk of an evaluation pass;
    ``total``       the sum;

    and ``n_params``, the number of parameters.
    """
    sizes = [int(s) for s in sizes]
    units = sizes[1:]
    pairs = list(zip(sizes[:-1], sizes[1:]))
    n_params = sum(n_in * n_out + n_out for n_in, n_out in pairs)
    n_weights = sum(n_in * n_out for n_in, n_out in pairs)
    largest = max(n_in * n_out for n_in, n_out in pairs)
    # parameter-sized arrays the optimiser keeps (momentum's velocity; Adam's two moments)
    state = getattr(OPTIMIZERS.get(str(optimizer).lower()), "state_arrays", 2)
    parameters = (n_params * (6 + 2 * state) + (n_weights if l2 else 0)) * itemsize + largest * 8
    n_train = max(int(n_train or 0), 0)
    batch = n_train if batch_size is None else min(int(batch_size), n_train or int(batch_size))
    gathered = min(max(1, _GATHER_ROWS // max(batch, 1)) * batch, n_train or batch)
    steps = (batch * (2 * sum(units) + 2 * units[-1] + 1) + gathered * sizes[0]) * itemsize
    chunk = min(_EVAL_ROWS, max(int(n_eval or 0), n_train))
    epoch = (5 * n_train * units[-1] + chunk * 2 * max(units)) * itemsize
    return {"parameters": parameters, "steps": steps, "epoch": epoch,
            "total": parameters + steps + epoch, "n_params": n_params}


def _meminfo_available() -> int | None:
    try:
        with open("/proc/meminfo", "rb") as f:
            for line in f:
                if line.startswith(b"MemAvailable:"):
                    fields = line.split()
                    scale = 1024 if len(fields) < 3 or fields[2].lower() == b"kb" else 1
                    return int(fields[1]) * scale
    except (OSError, ValueError, IndexError):
        pass
    return None


def _sysconf_available() -> int | None:
    sysconf = getattr(os, "sysconf", None)
    if sysconf is None:
        return None
    for name in ("SC_AVPHYS_PAGES", "SC_PHYS_PAGES"):
        try:
            pages, page_size = sysconf(name), sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, TypeError):
            continue
        if isinstance(pages, int) and isinstance(page_size, int) and pages > 0 and page_size > 0:
            return pages * page_size
    return None


def _cgroup_available() -> int | None:
    """What a container's memory limit leaves (cgroup v2, else v1); ``None`` without a limit."""
    for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                   ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                    "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
        try:
            with open(limit_file) as f:
                limit = f.read().strip()
            with open(usage_file) as f:
                usage = int(f.read().strip())
        except (OSError, ValueError):
            continue
        if not limit.isdigit() or int(limit) >= 2**60:   # "max", or v1's "no limit"
            return None
        return max(int(limit) - usage, 0)
    return None


def available_memory_bytes() -> int | None:
    """Memory this process can still use: ``MemAvailable`` from ``/proc/meminfo``, else the
    free (or total) physical pages ``os.sysconf`` reports, capped by a container's limit;
    ``None`` when none of these can be read."""
    found = [value for value in (_meminfo_available() or _sysconf_available(), _cgroup_available())
             if value is not None]
    return min(found) if found else None


def _size_text(n_bytes: float) -> str:
    for unit in ("bytes", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n_bytes < 1024 or unit == "PiB":
            return f"{n_bytes:.0f} {unit}" if unit == "bytes" else f"{n_bytes:.3g} {unit}"
        n_bytes /= 1024
    return f"{n_bytes:.3g} EiB"  # pragma: no cover


def check_training_memory(preset: "Preset", *, n_train: int = 0, n_eval: int = 0,
                          allocated: int = 0, itemsize: int = 4) -> None:
    """Raise :class:`DigitnetError` (one line) when ``preset`` cannot fit in memory.

    The estimate of :func:`training_memory_bytes`, less ``allocated`` bytes
    already in use by the run (and so already out of the available memory),
    is compared with :func:`available_memory_bytes`; when that cannot be
    read, nothing is checked.
    """
    need = training_memory_bytes(preset.sizes, batch_size=preset.batch_size, n_train=n_train,
                                 n_eval=n_eval, optimizer=preset.optimizer, l2=preset.l2,
                                 itemsize=itemsize)
    available = available_memory_bytes()
    if available is None or need["total"] - allocated <= available:
        return
    biggest = max(("parameters", "steps", "epoch"), key=lambda part: need[part])
    remedy = {"parameters": "use fewer or smaller layers",
              "steps": "use a smaller --batch-size" + (" (or --subset)" if preset.batch_size is None
                                                        else ""),
              "epoch": "train on fewer images (--subset)"}[biggest]
    batch = "full batch" if preset.batch_size is None else f"batch {preset.batch_size}"
    rows = f", {n_train:,} training rows" if n_train else ""
    raise DigitnetError(
        f"layers {','.join(map(str, preset.sizes))} ({need['n_params']:,} parameters, "
        f"{preset.optimizer}, {batch}{rows}) need about {_size_text(need['total'])} of memory to "
        f"train, but only {_size_text(available)} is available: {remedy}")


# ---------------------------------------------------------------------------------
# Running a recipe


@dataclass
class TrainResult:
    """What :func:`train_recipe` returns.

    ``test_accuracy`` is on the data's test set (``None`` without one),
    ``val_accuracy`` on the split's validation set (``None`` without one),
    ``path`` the saved model (``None`` if not saved), ``seconds`` the
    training time (data loading and evaluation excluded).  ``accuracy`` is
    the headline figure: the test accuracy, or for recipes whose source
    reports its dev set (``zhang``) the validation accuracy.
    """

    network: Network
    history: History
    test_accuracy: float | None
    val_accuracy: float | None
    path: Path | None
    seconds: float
    preset: Preset | None = None
    checkpoint: Path | None = None
    epochs_done: int = 0

    @property
    def accuracy(self) -> float | None:
        if self.preset is not None and self.preset.reported_on == "validation":
            return self.val_accuracy
        return self.test_accuracy

    @property
    def reported_on(self) -> str:
        return self.preset.reported_on if self.preset is not None else "test"


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`train_recipe`.

    Still a ``KeyboardInterrupt``; ``result`` is the :class:`TrainResult` of
    the last completed epoch (its model saved, if an output path was given),
    or ``None`` if no epoch had completed.
    """

    def __init__(self, result: TrainResult | None):
        super().__init__("training interrupted")
        self.result = result


class _Keeper(Callback):
    """Keeps a copy of the last completed epoch and writes the checkpoints.

    The copy is what Ctrl-C saves: the weights in the network at that moment
    may be half-way through an epoch.
    """

    def __init__(self, history: History, save_checkpoint, checkpoint_every: float):
        self.history = history
        self.save_checkpoint = save_checkpoint
        self.checkpoint_every = checkpoint_every
        self.optimizer = None
        self.epochs = None
        self.snapshot = None          # (epochs done, params, optimizer state, history records)
        self.checkpointed = None      # epochs done at the last checkpoint written
        self._last_write = -math.inf

    def on_train_begin(self, network, optimizer, epochs):
        self.network, self.optimizer, self.epochs = network, optimizer, epochs

    def on_epoch_end(self, epoch, record):
        # One assignment, so an interrupt never leaves a half-updated snapshot.
        self.snapshot = (epoch + 1, self.network.params.copy(), self.optimizer.state_dict(),
                         [dict(r) for r in self.history.records])
        now = time.monotonic()
        if self.save_checkpoint is not None and (epoch + 1 == self.epochs
                                                 or now - self._last_write >= self.checkpoint_every):
            self.save_checkpoint(*self.snapshot)
            self.checkpointed = epoch + 1
            self._last_write = time.monotonic()


def _start_or_resume(preset_or_name, data, seed, subset, overrides, epochs, resume):
    """The run's recipe, data, seed and subset, fresh or from a checkpoint, checked.

    Returns ``(preset, data, seed, subset, overrides, network, opt_state,
    history, initial_epoch, resumed_from)``; ``network`` is ``None`` for a
    fresh run (it is built once the memory check has passed).
    """
    history = History()
    opt_state = None
    initial_epoch = 0
    resumed_from = None
    if resume is not None:
        new_lr = (overrides or {}).get("lr")
        preset, data, seed, subset, overrides, network, opt_state, history, initial_epoch = \
            _read_resume(resume, preset_or_name, data, seed, subset, overrides)
        resumed_from = str(resume)
        if new_lr is not None and new_lr != preset.lr:
            # A new base rate from here on (after a divergence, say); the optimiser's
            # state (velocity, moments, steps) carries on.
            preset = dataclasses.replace(preset, lr=new_lr)
            overrides = {**overrides, "lr": new_lr}
    else:
        preset = get_preset(DEFAULT_PRESET if preset_or_name is None else preset_or_name)
        preset = preset.with_overrides(overrides)
        if data is None:
            data = preset.data
        seed = 0 if seed is None else seed
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise DigitnetError(f"seed must be a whole number ≥ 0, got {seed!r}")
        seed = int(seed)
        network = None
    if epochs is not None:
        preset = dataclasses.replace(preset, epochs=epochs)
    preset.check()
    if resume is not None and preset.epochs < initial_epoch:
        raise DigitnetError(f"the checkpoint {resume} has already trained {initial_epoch} epochs: "
                            f"ask for at least that many, not {preset.epochs}")
    if subset is not None:
        if isinstance(subset, bool) or not isinstance(subset, (int, np.integer)) or subset < 1:
            raise DigitnetError(f"subset must be a whole number of training rows ≥ 1, got {subset!r}")
        subset = int(subset)
    return (preset, data, seed, subset, overrides, network, opt_state, history, initial_epoch,
            resumed_from)


def _training_data(preset, data, seed, subset):
    """The data set, split and cut as the recipe says, checked against the network's input.

    Returns ``(dataset, X_train, y_train, X_val, y_val, X_test, y_test)``.
    """
    if preset.data == "xor" and str(data).lower() != "xor":
        raise DigitnetError("the xor preset trains on its built-in table: leave out --data")
    dataset = load_data(data, scale=preset.scale)
    X_train, y_train = dataset.X_train, dataset.y_train
    X_val = y_val = None
    if dataset.name != "xor":
        from .. import data as data_module

        X_train, y_train, X_val, y_val = data_module.split(preset.split, X_train, y_train, seed=seed)
    if subset is not None:
        X_train, y_train = X_train[:subset], y_train[:subset]
    X_test, y_test = dataset.X_test, dataset.y_test
    if X_train.shape[1] != preset.sizes[0]:
        raise DataError(f"the data has {X_train.shape[1]} features per sample but the network's "
                        f"input layer has {preset.sizes[0]} units")
    if preset.shift and math.isqrt(X_train.shape[1]) ** 2 != X_train.shape[1]:
        raise DataError(f"the recipe shifts its training images at random (shift {preset.shift}), but "
                        f"rows of {X_train.shape[1]} values are not square images: train without "
                        "shifts (--shift 0)")
    if preset.distorts and math.isqrt(X_train.shape[1]) ** 2 != X_train.shape[1]:
        raise DataError(f"the recipe distorts its training images at random, but rows of "
                        f"{X_train.shape[1]} values are not square images: train without "
                        "distortions (--elastic 0 --affine 0,0,0)")
    return dataset, X_train, y_train, X_val, y_val, X_test, y_test


def train_recipe(preset_or_name=DEFAULT_PRESET, *, data=None, seed=0, epochs=None, subset=None,
                 out=None, callbacks=(), overrides=None, checkpoint=None, resume=None,
                 checkpoint_every: float = 1.0) -> TrainResult:
    """Run a recipe end to end and return a :class:`TrainResult`.

    Parameters
    ----------
    preset_or_name : a :class:`Preset` or a preset name (default ``"best"``).
    data : ``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``, a folder of IDX files or a
        labelled ``.csv`` file; default: the preset's own (``"mnist"``, or the
        built-in table for ``"xor"``).  Pixels are scaled as the preset says.
        A :class:`~digitnet.data.Dataset` loaded at that scale is used as it is.
    seed : fixes the initial weights and the shuffling.
    epochs : total epochs (default: the preset's).
    subset : train on only the first ``subset`` rows of the training part
        (after the split); for quick runs and tests.
    out : where to save the model (nothing is saved if ``None``).
    callbacks : :class:`~digitnet.train.Callback` objects or functions
        ``f(epoch, record)``, as for :func:`~digitnet.train.fit`.
    overrides : recipe fields to change, e.g. ``{"lr": 0.01, "sizes": [784, 100, 10]}``
        (see :meth:`Preset.with_overrides`).
    checkpoint : path of a checkpoint written after every epoch (at most once
        per ``checkpoint_every`` seconds, and always after the last epoch):
        weights, optimiser state, history, epoch and seed, written atomically.
    resume : a checkpoint to continue.  Its recipe, seed, data and subset are
        used (``preset_or_name``, ``data``, ``seed`` and ``subset`` must be left
        at their defaults, and ``overrides`` may only hold ``"lr"``, a new base
        learning rate from here on); ``epochs`` may raise the total.  The
        run ends with the weights an uninterrupted run of that many epochs
        would have (for a cosine schedule only if the total is unchanged, as
        the decay is planned over the total, and only at the same rate).

    Raises
    ------
    DigitnetError
        A bad recipe, data or path, or a network too large for the memory
        available (checked before anything big is allocated, see
        :func:`check_training_memory`).
    TrainingDiverged
        When the loss becomes NaN/inf.  No model is saved then; the
        checkpoint, if one is written, is brought up to the last completed
        epoch and kept.  The exception's ``checkpoint`` is its path (``None``
        if no epoch of this run was saved there), ``checkpoint_epoch`` and
        ``checkpoint_loss`` the epoch it holds and that epoch's training loss.
    TrainingInterrupted
        On Ctrl-C, after saving the last completed epoch to ``out`` (and the
        checkpoint).
    StopTraining
        Raised by one of ``callbacks``, passed on as it is: nothing is saved.
    """
    started_all = time.perf_counter()
    (preset, data, seed, subset, overrides, network, opt_state, history, initial_epoch,
     resumed_from) = _start_or_resume(preset_or_name, data, seed, subset, overrides, epochs, resume)
    out = None if out is None else Path(out)
    checkpoint = None if checkpoint is None else Path(checkpoint)
    for path in (out, checkpoint):
        if path is not None:
            _check_writable(path)

    if network is None:  # before the data: a bad architecture fails fast
        # What can be told without the data (parameters, a batch's arrays) is
        # checked against the free memory before the network is allocated.
        check_training_memory(preset, n_train=subset or 0)
        network = preset.build_network(seed)
    dataset, X_train, y_train, X_val, y_val, X_test, y_test = _training_data(preset, data, seed, subset)

    # And with the data's size known, the rest (per-epoch outputs, full batches);
    # the network itself is already allocated.
    check_training_memory(preset, n_train=len(X_train),
                          n_eval=max(len(X_val) if X_val is not None else 0,
                                     len(X_test) if X_test is not None else 0),
                          allocated=network.params.nbytes + network.grads.nbytes,
                          itemsize=network.params.itemsize)

    recipe = {**preset.to_dict(), "overrides": dict(overrides or {}), "seed": seed,
              "data": recorded_source(data), "subset": subset}
    preprocessing = preprocessing_for(preset, dataset.name)
    network.metadata = {"recipe": recipe, "preprocessing": preprocessing}
    if resumed_from:
        recipe["resumed_from"] = resumed_from

    optimizer = preset.make_optimizer()
    if opt_state:
        optimizer.load_state_dict(opt_state)

    from ..files.modelfile import save_model

    def save_checkpoint(epochs_done, params, state, records):
        snap = network.copy()
        snap.params[...] = params
        opt = preset.make_optimizer()
        opt.load_state_dict(state)
        hist = History([dict(r) for r in records], seed)
        save_model(checkpoint, snap, recipe=recipe, preprocessing=preprocessing, history=hist,
                   optimizer=opt, extra={"checkpoint": {"epoch": epochs_done, "epochs": preset.epochs,
                                                        "seed": seed}})

    keeper = _Keeper(history, save_checkpoint if checkpoint is not None else None, checkpoint_every)
    if resume is not None:
        keeper.snapshot = (initial_epoch, network.params.copy(), optimizer.state_dict(),
                           [dict(r) for r in history.records])
        if checkpoint is not None and _same_file(checkpoint, resume):
            keeper.checkpointed = initial_epoch   # the file already holds that epoch

    validation = (X_val, y_val) if X_val is not None and len(X_val) else None
    started = time.perf_counter()
    try:
        # Overflow on the way to a NaN loss is reported as TrainingDiverged, not as warnings.
        with np.errstate(over="ignore", invalid="ignore"):
            network.fit(X_train, y_train, epochs=preset.epochs, batch_size=preset.batch_size,
                        optimizer=optimizer, lr=preset.lr, l2=preset.l2,
                        schedule=preset.schedule, validation_data=validation, seed=seed,
                        callbacks=[keeper, *callbacks], initial_epoch=initial_epoch,
                        history=history, augment=preset.make_augment(), dropout=preset.dropout)
    except KeyboardInterrupt:
        raise TrainingInterrupted(_save_interrupted(
            keeper, network, history, preset, recipe, preprocessing, out, checkpoint,
            save_checkpoint, time.perf_counter() - started)) from None
    except TrainingDiverged as exc:
        _keep_last_good_checkpoint(exc, keeper, checkpoint, save_checkpoint)
        raise
    seconds = time.perf_counter() - started

    test_acc = None if X_test is None else float(network.evaluate(X_test, y_test)[1])
    val_acc = None if validation is None else float(network.evaluate(X_val, y_val)[1])
    path = None
    if out is not None:
        path = save_model(out, network, recipe=recipe, preprocessing=preprocessing, history=history,
                          extra={"evaluation": {"test_accuracy": test_acc, "val_accuracy": val_acc,
                                                "train_seconds": seconds,
                                                "total_seconds": time.perf_counter() - started_all}})
    network.metadata = {**network.metadata, "history": history.to_dict()}
    return TrainResult(network, history, test_acc, val_acc, path, seconds, preset,
                       checkpoint if keeper.checkpointed is not None else None, len(history))


def _save_interrupted(keeper, network, history, preset, recipe, preprocessing, out, checkpoint,
                      save_checkpoint, seconds):
    """Put the last completed epoch back, save it, and describe it (``None`` if there is none)."""
    if keeper.snapshot is None:
        return None
    epochs_done, params, state, records = keeper.snapshot
    network.params[...] = params
    history.records[:] = [dict(r) for r in records]
    path = None
    if checkpoint is not None and keeper.checkpointed != epochs_done:
        save_checkpoint(epochs_done, params, state, records)
    if out is not None:
        from ..files.modelfile import save_model

        path = save_model(out, network, recipe=recipe, preprocessing=preprocessing, history=history,
                          extra={"interrupted": {"epoch": epochs_done, "epochs": preset.epochs}})
    return TrainResult(network, history, None, None, path, seconds, preset,
                       checkpoint, epochs_done)


def _keep_last_good_checkpoint(exc, keeper, checkpoint, save_checkpoint) -> None:
    """After a divergence: make sure the checkpoint holds the last completed epoch, and say so on ``exc``.

    Checkpoints are written at most once per ``checkpoint_every`` seconds, so
    the file may be an epoch or more behind; it is brought up to date here.
    """
    exc.checkpoint = exc.checkpoint_epoch = exc.checkpoint_loss = None
    if checkpoint is None or keeper.snapshot is None or keeper.snapshot[0] < 1:
        return
    epochs_done, params, state, records = keeper.snapshot
    if keeper.checkpointed != epochs_done:
        try:
            save_checkpoint(epochs_done, params, state, records)
        except DigitnetError:
            if keeper.checkpointed is None:
                return          # nothing of this run is in the file
            epochs_done = keeper.checkpointed
            records = records[:epochs_done]
        else:
            keeper.checkpointed = epochs_done
    exc.checkpoint = checkpoint
    exc.checkpoint_epoch = epochs_done
    exc.checkpoint_loss = records[epochs_done - 1].get("loss") if len(records) >= epochs_done else None


def _same_file(a, b) -> bool:
    try:
        return Path(a).resolve() == Path(b).resolve()
    except OSError:
        return False


def _read_resume(resume, preset_or_name, data, seed, subset, overrides):
    from ..files.modelfile import load_checkpoint

    changed = set(overrides or {}) - {"lr"}
    if changed or subset is not None or data is not None or seed not in (0, None) or \
            preset_or_name not in (None, DEFAULT_PRESET):
        raise DigitnetError("a resumed run continues the checkpoint's own recipe, data, seed and "
                            "subset: only the number of epochs and the learning rate can change")
    network, state = load_checkpoint(resume)
    header = network.metadata
    info = header.get("checkpoint")
    if not isinstance(info, dict) or not state:
        raise DigitnetError(f"{resume} is a model, not a checkpoint: resume from the .ckpt.npz file "
                            "written next to it during training")
    recipe = header.get("recipe") or {}
    preset = Preset.from_dict(recipe)
    if list(preset.sizes) != list(network.sizes):
        raise DigitnetError(f"{resume}: the checkpoint's recipe does not match its network")
    history = History.from_dict(header.get("history") or {})
    initial_epoch = int(info.get("epoch", len(history)))
    if len(history) != initial_epoch:
        raise DigitnetError(f"{resume}: the checkpoint's history does not match its epoch count")
    return (preset, recipe.get("data", preset.data), int(recipe.get("seed", info.get("seed", 0))),
            recipe.get("subset"), recipe.get("overrides") or {}, network, state, history,
            initial_epoch)


def _check_writable(path: Path) -> None:
    """Fail before training, not after it, when a file cannot be written."""
    import os

    folder = path.parent if str(path.parent) else Path(".")
    if path.is_dir():
        raise DigitnetError(f"cannot write {path}: it is a folder; give a file name like model.npz")
    if not folder.is_dir():
        raise DigitnetError(f"cannot write {path}: folder {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise DigitnetError(f"cannot write {path}: no permission to write in {folder}")
