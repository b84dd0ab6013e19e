"""The training loop: gradient descent in all its seed-material flavours.

``batch_size=None``  full-batch gradient descent (Zhang's notebook)
``batch_size=1``     per-sample stochastic gradient descent
``batch_size=10``    mini-batch SGD (Nielsen's ``network.py``)

A mini-batch is always computed at once, as matrices; there is no Python
loop over samples.  Shuffling uses a fresh ``numpy.random.Generator`` per
epoch seeded from ``(seed, epoch)``, so one seed fixes the whole run bit for
bit, and a run resumed at epoch ``k`` sees exactly the order the
uninterrupted run would have.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field

import numpy as np

from .augment import get_augment
from .errors import DataError, DigitnetError, TrainingDiverged
from .optimizers import Optimizer, get_optimizer
from .schedules import Constant, get_schedule

# Rows gathered per np.take when shuffling (measured: per-batch gathers of
# 10 rows cost 40 ms per MNIST epoch, chunks of ~1,000 rows 26 ms).
_GATHER_ROWS = 1024
# Rows of outputs between two looks for inf/NaN.
_CHECK_ROWS = 4096
# Augmentation draws from its own stream, seeded (seed, epoch, 1), so that it
# leaves the shuffling order (seeded (seed, epoch)) as it is.
_AUGMENT_STREAM = 1

_COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


@dataclass
class History:
    """Per-epoch records of a training run.

    ``history["loss"]`` is the column of training losses (one per epoch),
    ``history.records`` the rows as dicts with keys ``epoch`` (1-based),
    ``loss``, ``accuracy``, ``val_loss``, ``val_accuracy`` (``None`` without
    validation data), ``lr`` (at the end of the epoch) and ``seconds``.

    The training loss and accuracy are averaged over the epoch's mini-batches
    as the weights changed (what the run saw, at no extra cost), plus the L2
    penalty at the end of the epoch; validation figures use the weights at
    the end of the epoch.
    """

    records: list = field(default_factory=list)
    seed: int | None = None
    best_epoch: int | None = None
    stopped_early: bool = False

    def __getitem__(self, key):
        return [r[key] for r in self.records]

    def __len__(self):
        return len(self.records)

    def to_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records], "seed": self.seed,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        return cls([dict(r) for r in data.get("records", [])], data.get("seed"),
                   data.get("best_epoch"), bool(data.get("stopped_early", False)))


class Callback:
    """Hooks into the training loop; override what you need.

    ``on_epoch_end`` may return ``True`` to stop training after that epoch.
    """

    def on_train_begin(self, network, optimizer, epochs: int) -> None:
        pass

    def on_epoch_begin(self, epoch: int, n_batches: int) -> None:
        pass

    def on_batch_end(self, epoch: int, batch: int, n_batches: int) -> None:
        pass

    def on_epoch_end(self, epoch: int, record: dict) -> bool | None:
        pass

    def on_train_end(self, history: History) -> None:
        pass


class _EpochEndFunction(Callback):
    def __init__(self, fn):
        self.fn = fn

    def on_epoch_end(self, epoch, record):
        return self.fn(epoch, record)


def _as_callbacks(callbacks):
    out = []
    for cb in callbacks or ():
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_EpochEndFunction(cb))
        else:
            raise DigitnetError(f"callbacks must be Callback objects or functions, got {cb!r}")
    return out


def epoch_order(seed: int, epoch: int, n: int) -> np.ndarray:
    """The sample order of one epoch: a permutation of ``range(n)`` fixed by (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(n)


def fit(network, X, y, *, epochs: int = 10, batch_size: int | None = 32, optimizer="sgd",
        lr: float | None = None, l2: float = 0.0, schedule=None, validation_data=None,
        early_stopping: int | None = None, seed: int | None = None, shuffle: bool = True,
        callbacks=(), initial_epoch: int = 0, history: History | None = None,
        augment=None) -> History:
    """Train ``network`` on ``X`` ``(n, n_inputs)`` and ``y`` (labels ``(n,)`` or targets ``(n, n_outputs)``).

    Parameters
    ----------
    epochs : total number of passes over the data (counting any ``initial_epoch``).
    batch_size : samples per gradient step; ``None`` for full-batch descent.
    optimizer : ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or an
        :class:`~digitnet.optimizers.Optimizer` (whose state is kept, for resuming).
    lr : base learning rate (η); defaults per optimiser (0.1 for SGD, 1e-3 for Adam).
    l2 : Nielsen's λ: adds (λ/2n)·Σ‖W‖² to the loss, n = ``len(X)``.
    schedule : ``None``/``"constant"``, ``"step"``, ``"cosine"`` or a
        :class:`~digitnet.schedules.Schedule`.
    validation_data : ``(X_val, y_val)``, evaluated after every epoch.
    early_stopping : patience: stop after this many epochs without a lower
        validation loss, and restore the best weights.
    seed : fixes the shuffling; defaults to the network's seed.
    callbacks : :class:`Callback` objects or functions ``f(epoch, record)``.
    initial_epoch, history : continue a run (``--resume``): epochs before
        ``initial_epoch`` are skipped and new records appended to ``history``.
    augment : a function ``augment(X_rows, rng)`` that changes training
        inputs in place (see :mod:`digitnet.augment`), or a whole number k
        for random shifts of up to k pixels.  It works on copies of the
        rows, every epoch afresh, with ``rng`` seeded by (seed, epoch).

    Returns the :class:`History`.  Raises :class:`~digitnet.errors.TrainingDiverged`
    (with the weights of the last good epoch restored) if the loss becomes NaN or infinite.
    """
    X = network.check_inputs(X)
    Y, labels = network.check_targets(y, len(X))
    n = len(X)
    epochs = _check_int("epochs", epochs, 1)
    initial_epoch = _check_int("initial_epoch", initial_epoch, 0)
    if batch_size is not None:
        batch_size = min(_check_int("batch_size", batch_size, 1), n)
    batch = n if batch_size is None else batch_size
    n_batches = math.ceil(n / batch)
    if validation_data is not None:
        if len(validation_data) != 2:
            raise DataError("validation_data must be a pair (X_val, y_val)")
        X_val = network.check_inputs(validation_data[0], "X_val")
        y_val = validation_data[1]
        network.check_targets(y_val, len(X_val), "y_val")
    if early_stopping is not None:
        early_stopping = _check_int("early_stopping patience", early_stopping, 1)
        if validation_data is None:
            raise DigitnetError("early stopping watches the validation loss: pass validation_data too")
    try:
        l2 = float(l2)
    except (TypeError, ValueError):
        raise DigitnetError(f"l2 must be a number, got {l2!r}") from None
    if not math.isfinite(l2) or l2 < 0:
        raise DigitnetError(f"l2 must be a finite number ≥ 0, got {l2!r}")
    l2_coef = l2 / n
    opt: Optimizer = get_optimizer(optimizer, lr)
    if isinstance(optimizer, Optimizer) and lr is not None:
        opt.lr = float(lr)
    base_lr = opt.lr
    # The scaled-gradient shortcut, unless a subclass changed update() alone
    # (its own step must run, and it expects the plain gradient).
    if _defines_update_last(type(opt)):
        gradient_scale, take_step = (lambda: 1.0), opt.update
    else:
        gradient_scale, take_step = opt.gradient_scale, opt.update_scaled
    sched = get_schedule(schedule, epochs)
    if seed is None:
        seed = network.seed
    if seed is None:  # still reproducible afterwards: the drawn seed is recorded
        seed = int(np.random.SeedSequence().entropy % (2**63))
    history = history if history is not None else History()
    history.seed = int(seed)
    callbacks = _as_callbacks(callbacks)

    # The arrays every step writes, allocated once per batch size (the last
    # batch of an epoch may be shorter than the others).
    buffers = {size: network._step_buffers(size) for size in {batch, n - (n_batches - 1) * batch}}
    shuffled = shuffle and n_batches > 1
    augment = get_augment(augment)
    if hasattr(augment, "shape_for"):
        augment.shape_for(X.shape[1])    # rows that are not images fail now, not mid-epoch
    # Shuffled (or augmented) inputs are gathered a few batches at a time into
    # one reused array (one np.take per ~1,000 rows instead of one gather per
    # batch); the data set itself is never copied whole.
    rows_per_gather = max(1, _GATHER_ROWS // batch) * batch
    gather = shuffled or augment is not None
    gathered = np.empty((min(rows_per_gather, n), X.shape[1]), X.dtype) if gather else None
    # Every step's output pre-activations z_L, in the epoch's order.  The
    # epoch's loss and accuracy are worked out from them once per epoch,
    # which is cheaper than a loss and an argmax per step and gives the same
    # numbers: each row is still the output of the weights of its own step.
    # Column-major: the per-sample reductions over a row's few outputs (softmax's
    # max and sum, the loss) then run along whole columns, ~10× faster for 10 outputs.
    outputs = np.empty((n, network.sizes[-1]), network.dtype, order="F")
    # A diverging run shows up as inf/NaN in those outputs; they are looked
    # at every few thousand rows, so a blow-up stops training soon after.
    check_every = max(1, _CHECK_ROWS // batch)
    # A constant schedule need not be asked for the rate before every step.
    per_step_lr = not isinstance(sched, Constant)

    best_loss, best_params, waited = math.inf, None, 0
    for cb in callbacks:
        cb.on_train_begin(network, opt, epochs)
    for epoch in range(initial_epoch, epochs):
        started = time.perf_counter()
        for cb in callbacks:
            cb.on_epoch_begin(epoch, n_batches)
        # Cheap insurance: a diverging run gets the weights of the last good epoch back.
        last_good = network.params.copy()
        order = epoch_order(seed, epoch, n) if shuffled else None
        # Shuffle the (small) targets and labels once per epoch, so that a step
        # slices its targets instead of gathering them.
        Y_epoch, labels_epoch = (Y, labels) if order is None else (Y[order], labels[order])
        scale = gradient_scale()
        augment_rng = None if augment is None else np.random.default_rng([seed, epoch, _AUGMENT_STREAM])
        checked = 0
        for b in range(n_batches):
            start, stop = b * batch, min((b + 1) * batch, n)
            if not gather:
                X_b = X[start:stop]
            else:
                offset = start % rows_per_gather
                if offset == 0:
                    end = min(start + rows_per_gather, n)
                    if order is None:
                        np.copyto(gathered[:end - start], X[start:end])
                    else:
                        # mode="clip" (the indices are a permutation, always in range)
                        # lets take() write straight into `gathered`; "raise" would buffer.
                        np.take(X, order[start:end], axis=0, out=gathered[:end - start], mode="clip")
                    if augment is not None:
                        augment(gathered[:end - start], augment_rng)
                X_b = gathered[offset:offset + stop - start]
            if per_step_lr:
                opt.lr = sched(base_lr, epoch + b / n_batches)
                scale = gradient_scale()
            _, z_out = network._backprop(X_b, Y_epoch[start:stop], l2_coef, buffers[stop - start], scale)
            outputs[start:stop] = z_out
            if (b + 1) % check_every == 0 or b + 1 == n_batches:
                if not _all_finite(outputs[checked:stop]):
                    _restore_and_raise(network, last_good, epoch, batch, n_batches,
                                       outputs[:stop], Y_epoch, checked, opt.lr, history)
                checked = stop
            take_step(network.params, network.grads)
            for cb in callbacks:
                cb.on_batch_end(epoch, b, n_batches)
        a_epoch = network.activations[-1].forward(outputs)
        loss = network._loss_value(a_epoch, np.asfortranarray(Y_epoch), outputs)
        if not (math.isfinite(loss) and _all_finite(network.params)):
            network.params[...] = last_good
            raise _diverged(epoch, n_batches - 1, n_batches, loss if not math.isfinite(loss) else math.inf,
                            opt.lr, history)
        correct = int(np.count_nonzero(network._labels_from_outputs(a_epoch) == labels_epoch))

        record = dict.fromkeys(_COLUMNS)
        record.update(epoch=epoch + 1, loss=loss + network.l2_penalty(l2_coef),
                      accuracy=correct / n, lr=opt.lr)
        if validation_data is not None:
            record["val_loss"], record["val_accuracy"] = network.evaluate(X_val, y_val)
        record["seconds"] = time.perf_counter() - started
        history.records.append(record)
        # Between epochs the optimiser carries the base rate, not the scheduled
        # one, so a checkpoint saved now (or after fit) resumes on the same schedule.
        opt.lr = base_lr

        stop = False
        if early_stopping is not None:
            if record["val_loss"] < best_loss:
                best_loss, best_params, waited = record["val_loss"], network.params.copy(), 0
                history.best_epoch = epoch + 1
            else:
                waited += 1
                stop = waited >= early_stopping
        for cb in callbacks:
            stop = bool(cb.on_epoch_end(epoch, record)) or stop
        if stop:
            history.stopped_early = epoch + 1 < epochs
            break
    if best_params is not None:
        network.params[...] = best_params
    for cb in callbacks:
        cb.on_train_end(history)
    return history


def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, float) and value.is_integer()):
            raise DigitnetError(f"{name} must be a whole number ≥ {minimum}, got {value!r}")
    if value < minimum:
        raise DigitnetError(f"{name} must be ≥ {minimum}, got {value!r}")
    return int(value)


def _defines_update_last(cls) -> bool:
    """Whether the most derived of ``update``/``update_scaled`` in ``cls`` is ``update``."""
    for klass in cls.__mro__:
        if "update_scaled" in vars(klass):
            return False
        if "update" in vars(klass):
            return True
    return True


def _all_finite(a: np.ndarray) -> bool:
    """No NaN or ±inf in ``a``: a finite sum proves it (both propagate into a
    sum); only a non-finite sum, which may also be an overflow, is looked at
    element by element."""
    return math.isfinite(np.add.reduce(a, axis=None)) or bool(np.isfinite(a).all())


def _restore_and_raise(network, last_good, epoch, batch, n_batches, outputs, Y_epoch, checked, lr,
                       history):
    """Put the last good epoch's weights back and raise :class:`TrainingDiverged`
    naming the first batch (at or after row ``checked`` of the rows written so
    far, ``outputs``) whose outputs blew up."""
    network.params[...] = last_good
    bad_row = checked + int(np.argmax(~np.isfinite(outputs[checked:]).all(axis=1)))
    b = bad_row // batch
    z = outputs[b * batch:(b + 1) * batch]
    with np.errstate(all="ignore"):
        loss = network._loss_value(network.activations[-1].forward(z), Y_epoch[b * batch:(b + 1) * batch], z)
    raise _diverged(epoch, b, n_batches, loss if not math.isfinite(loss) else math.nan, lr, history)


def _diverged(epoch, batch, n_batches, loss, lr, history):
    err = TrainingDiverged(
        f"training diverged: the loss became {loss} in epoch {epoch + 1} (batch {batch + 1} of "
        f"{n_batches}) at learning rate {lr:g}; lower the learning rate (try {lr / 10:g}). "
        f"The weights of the last completed epoch were kept.")
    err.history = history
    return err
