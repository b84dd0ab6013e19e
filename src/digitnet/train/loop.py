"""The training loop: gradient descent in all its seed-material flavours.

``batch_size=None``  full-batch gradient descent (Zhang's notebook)
``batch_size=1``     per-sample stochastic gradient descent
``batch_size=10``    mini-batch SGD (Nielsen's ``network.py``)

A mini-batch is always computed at once, as matrices; there is no Python
loop over samples.  The step itself is
:meth:`digitnet.nn.network.Network.update_mini_batch` (backprop, then the
optimiser's update); this module decides what each step sees and keeps the
books: the epoch's order and batches (:mod:`.batches`), the learning-rate
schedule, the epoch's loss and accuracy, validation, early stopping,
divergence and callbacks.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass

import numpy as np

from ..errors import DataError, DigitnetError, TrainingDiverged
from ..nn.optimizers import Optimizer, get_optimizer
from ..nn.schedules import Constant, Schedule, get_schedule
from .augment import get_augment
from .batches import Batches
from .history import COLUMNS, Callback, History, as_callbacks

# Rows of outputs between two looks for inf/NaN.
_CHECK_ROWS = 4096
# Augmented chunks are prepared in a background thread while the steps run
# (see Batches); False makes them in line, between the steps.
_PREFETCH = True


def fit(network, X, y, *, epochs: int = 10, batch_size: int | None = 32, optimizer="sgd",
        lr: float | None = None, l2: float = 0.0, schedule=None, validation_data=None,
        early_stopping: int | None = None, seed: int | None = None, shuffle: bool = True,
        callbacks=(), initial_epoch: int = 0, history: History | None = None,
        augment=None, dropout=0.0) -> History:
    """Train ``network`` on ``X`` ``(n, n_inputs)`` and ``y`` (labels ``(n,)`` or targets ``(n, n_outputs)``).

    Parameters
    ----------
    epochs : total number of passes over the data (counting any ``initial_epoch``).
    batch_size : samples per gradient step; ``None`` for full-batch descent.
    optimizer : ``"sgd"``, ``"momentum"``, ``"nesterov"``, ``"adam"`` or an
        :class:`~digitnet.nn.optimizers.Optimizer` (whose state is kept, for resuming).
    lr : base learning rate (η); defaults per optimiser (0.1 for SGD, 1e-3 for Adam).
    l2 : Nielsen's λ: adds (λ/2n)·Σ‖W‖² to the loss, n = ``len(X)``.
    schedule : ``None``/``"constant"``, ``"step"``, ``"cosine"`` or a
        :class:`~digitnet.nn.schedules.Schedule`.
    validation_data : ``(X_val, y_val)``, evaluated after every epoch.
    early_stopping : patience: stop after this many epochs without a lower
        validation loss, and restore the best weights.
    seed : fixes the shuffling; defaults to the network's seed.
    callbacks : :class:`Callback` objects or functions ``f(epoch, record)``.
    initial_epoch, history : continue a run (``--resume``): epochs before
        ``initial_epoch`` are skipped and new records appended to ``history``.
    augment : a function ``augment(X_rows, rng)`` that changes training
        inputs in place (see :mod:`digitnet.train.augment`), or a whole number k
        for random shifts of up to k pixels.  It works on copies of the
        rows, every epoch afresh, with ``rng`` seeded by (seed, epoch); one
        with a ``set_epoch(epoch, epochs)`` method hears of each epoch first.
    dropout : the probability p of dropping each hidden unit in a training
        step (inverted dropout, :meth:`~digitnet.nn.network.Network.dropout_masks`),
        one for every hidden layer or a sequence with one per hidden layer;
        0 ≤ p < 1.  The masks come from their own stream, seeded by
        (seed, epoch); predictions and evaluation never drop anything.

    Returns the :class:`History`.  Raises :class:`~digitnet.errors.TrainingDiverged`
    (with the weights of the last good epoch restored) if the loss becomes NaN or infinite.
    A :class:`~digitnet.train.StopTraining` raised by a callback passes through
    unchanged, leaving the weights of the last step taken.
    """
    run = _Run.prepare(network, X, y, epochs=epochs, batch_size=batch_size, optimizer=optimizer,
                       lr=lr, l2=l2, schedule=schedule, validation_data=validation_data,
                       early_stopping=early_stopping, seed=seed, shuffle=shuffle,
                       callbacks=callbacks, initial_epoch=initial_epoch, history=history,
                       augment=augment, dropout=dropout)
    for cb in run.callbacks:
        cb.on_train_begin(network, run.optimizer, run.epochs)
    for epoch in range(run.initial_epoch, run.epochs):
        record = _train_one_epoch(network, run, epoch)
        if _end_of_epoch(network, run, epoch, record):
            run.history.stopped_early = epoch + 1 < run.epochs
            break
    if run.best_params is not None:
        network.params[...] = run.best_params
    for cb in run.callbacks:
        cb.on_train_end(run.history)
    return run.history


def _train_one_epoch(network, run: "_Run", epoch: int) -> dict:
    """One pass over the data, a mini-batch at a time; returns the epoch's record."""
    started = time.perf_counter()
    n_batches = run.batches.n_batches
    for cb in run.callbacks:
        cb.on_epoch_begin(epoch, n_batches)
    last_good = network.params.copy()     # a diverging run gets these weights back
    Y_epoch, labels_epoch, inputs = run.batches.epoch(epoch)
    opt, outputs, checked = run.optimizer, run.outputs, 0
    for cb in run.callbacks:
        cb.on_epoch_arrays(epoch, outputs, Y_epoch, labels_epoch, run.batches.batch)
    dropout_rng = run.batches.dropout_rng(epoch) if run.dropout else None
    masks = None
    for b, (start, stop, X_b) in enumerate(inputs):
        if run.per_step_lr:
            opt.lr = run.schedule(run.base_lr, epoch + b / n_batches)
        if dropout_rng is not None:
            masks = network.dropout_masks(stop - start, run.dropout, dropout_rng)
        outputs[start:stop] = network.update_mini_batch(X_b, Y_epoch[start:stop], opt, run.l2_coef,
                                                        masks)
        # A diverging run shows up as inf/NaN in the outputs; they are looked
        # at every few thousand rows, so a blow-up stops training soon after.
        if (b + 1) % run.check_every == 0 or b + 1 == n_batches:
            if not _all_finite(outputs[checked:stop]):
                _restore_and_raise(network, run, last_good, epoch, outputs[:stop], Y_epoch, checked)
            checked = stop
        for cb in run.callbacks:
            cb.on_batch_end(epoch, b, n_batches)
    record = _epoch_record(network, run, epoch, Y_epoch, labels_epoch, last_good)
    record["seconds"] = time.perf_counter() - started
    return record


def _epoch_record(network, run: "_Run", epoch, Y_epoch, labels_epoch, last_good) -> dict:
    """Loss and accuracy of the epoch (from every step's stored z_L), and validation figures.

    Working them out once per epoch from the stored outputs is cheaper than a
    loss and an argmax per step and gives the same numbers: each row is still
    the output of the weights of its own step.
    """
    a_epoch = network.activations[-1].forward(run.outputs)
    loss = network.loss_of_outputs(a_epoch, np.asfortranarray(Y_epoch), run.outputs)
    if not (math.isfinite(loss) and _all_finite(network.params)):
        network.params[...] = last_good
        raise _diverged(epoch, run.batches.n_batches - 1, run.batches.n_batches,
                        loss if not math.isfinite(loss) else math.inf, run.optimizer.lr, run.history)
    correct = int(np.count_nonzero(network.labels_from_outputs(a_epoch) == labels_epoch))
    record = dict.fromkeys(COLUMNS)
    record.update(epoch=epoch + 1, loss=loss + network.l2_penalty(run.l2_coef),
                  accuracy=correct / run.batches.n, lr=run.optimizer.lr)
    if run.validation is not None:
        record["val_loss"], record["val_accuracy"] = network.evaluate(*run.validation)
    return record


def _end_of_epoch(network, run: "_Run", epoch: int, record: dict) -> bool:
    """Book the record, watch for early stopping, call the callbacks; ``True`` stops training."""
    run.history.records.append(record)
    # Between epochs the optimiser carries the base rate, not the scheduled
    # one, so a checkpoint saved now (or after fit) resumes on the same schedule.
    run.optimizer.lr = run.base_lr
    stop = False
    if run.early_stopping is not None:
        if record["val_loss"] < run.best_loss:
            run.best_loss, run.best_params, run.waited = record["val_loss"], network.params.copy(), 0
            run.history.best_epoch = epoch + 1
        else:
            run.waited += 1
            stop = run.waited >= run.early_stopping
    for cb in run.callbacks:
        stop = bool(cb.on_epoch_end(epoch, record)) or stop
    return stop


@dataclass
class _Run:
    """Everything one call of :func:`fit` works with, checked once up front."""

    batches: Batches
    epochs: int
    initial_epoch: int
    optimizer: Optimizer
    base_lr: float
    schedule: Schedule
    per_step_lr: bool
    l2_coef: float
    validation: tuple | None
    early_stopping: int | None
    history: History
    callbacks: list[Callback]
    outputs: np.ndarray
    check_every: int
    dropout: list | None
    best_loss: float = math.inf
    best_params: np.ndarray | None = None
    waited: int = 0

    @classmethod
    def prepare(cls, network, X, y, *, epochs, batch_size, optimizer, lr, l2, schedule,
                validation_data, early_stopping, seed, shuffle, callbacks, initial_epoch, history,
                augment, dropout) -> "_Run":
        X = network.check_inputs(X)
        Y, labels = network.check_targets(y, len(X))
        epochs = _check_int("epochs", epochs, 1)
        batch = len(X) if batch_size is None else min(_check_int("batch_size", batch_size, 1), len(X))
        opt = get_optimizer(optimizer, lr)
        if isinstance(optimizer, Optimizer) and lr is not None:
            opt.lr = float(lr)
        sched = get_schedule(schedule, epochs)
        seed = _run_seed(seed, network)
        history = history if history is not None else History()
        history.seed = seed
        augment = get_augment(augment)
        if hasattr(augment, "shape_for"):
            augment.shape_for(X.shape[1])    # rows that are not images fail now, not mid-epoch
        batches = Batches(X, Y, labels, batch, shuffle, augment, seed, prefetch=_PREFETCH, epochs=epochs)
        # Every step's output pre-activations z_L, in the epoch's order, for the
        # epoch's loss and accuracy.  Column-major: the per-sample reductions
        # over a row's few outputs then run along whole columns, ~10× faster.
        outputs = np.empty((len(X), network.sizes[-1]), network.dtype, order="F")
        return cls(batches=batches, epochs=epochs,
                   initial_epoch=_check_int("initial_epoch", initial_epoch, 0),
                   optimizer=opt, base_lr=opt.lr, schedule=sched,
                   per_step_lr=not isinstance(sched, Constant),   # a constant rate is set once
                   l2_coef=_check_l2(l2) / len(X),
                   validation=_check_validation(network, validation_data),
                   early_stopping=_check_early_stopping(early_stopping, validation_data),
                   history=history, callbacks=as_callbacks(callbacks), outputs=outputs,
                   check_every=max(1, _CHECK_ROWS // batch),
                   dropout=_check_dropout(dropout, network.n_layers - 1))


# -- argument checks ---------------------------------------------------------------------

def _check_int(name, value, minimum):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if not (isinstance(value, float) and value.is_integer()):
            raise DigitnetError(f"{name} must be a whole number ≥ {minimum}, got {value!r}")
    if value < minimum:
        raise DigitnetError(f"{name} must be ≥ {minimum}, got {value!r}")
    return int(value)


def _check_l2(l2) -> float:
    try:
        l2 = float(l2)
    except (TypeError, ValueError):
        raise DigitnetError(f"l2 must be a number, got {l2!r}") from None
    if not math.isfinite(l2) or l2 < 0:
        raise DigitnetError(f"l2 must be a finite number ≥ 0, got {l2!r}")
    return l2


def _check_dropout(dropout, n_hidden: int) -> list | None:
    """One drop probability per hidden layer, or ``None`` when nothing is dropped."""
    rates = list(dropout) if isinstance(dropout, (list, tuple, np.ndarray)) else [dropout] * n_hidden
    if len(rates) != n_hidden:
        raise DigitnetError(f"dropout takes one rate, or one per hidden layer ({n_hidden}), got {dropout!r}")
    for p in rates:
        if isinstance(p, bool) or not isinstance(p, (int, float, np.integer, np.floating)) or not 0 <= p < 1:
            raise DigitnetError(f"a dropout rate is the probability of dropping a unit, from 0 up to "
                                f"(not including) 1, got {p!r}")
    return [float(p) for p in rates] if any(rates) else None


def _check_validation(network, validation_data):
    if validation_data is None:
        return None
    if len(validation_data) != 2:
        raise DataError("validation_data must be a pair (X_val, y_val)")
    X_val = network.check_inputs(validation_data[0], "X_val")
    network.check_targets(validation_data[1], len(X_val), "y_val")
    return X_val, validation_data[1]


def _check_early_stopping(patience, validation_data):
    if patience is None:
        return None
    patience = _check_int("early_stopping patience", patience, 1)
    if validation_data is None:
        raise DigitnetError("early stopping watches the validation loss: pass validation_data too")
    return patience


def _run_seed(seed, network) -> int:
    if seed is None:
        seed = network.seed
    if seed is None:  # still reproducible afterwards: the drawn seed is recorded
        seed = int(np.random.SeedSequence().entropy % (2**63))
    return int(seed)


# -- divergence --------------------------------------------------------------------------

def _all_finite(a: np.ndarray) -> bool:
    """No NaN or ±inf in ``a``: a finite sum proves it (both propagate into a
    sum); only a non-finite sum, which may also be an overflow, is looked at
    element by element."""
    return math.isfinite(np.add.reduce(a, axis=None)) or bool(np.isfinite(a).all())


def _restore_and_raise(network, run, last_good, epoch, outputs, Y_epoch, checked):
    """Put the last good epoch's weights back and raise :class:`TrainingDiverged`
    naming the first batch (at or after row ``checked`` of the rows written so
    far, ``outputs``) whose outputs blew up."""
    network.params[...] = last_good
    batch = run.batches.batch
    bad_row = checked + int(np.argmax(~np.isfinite(outputs[checked:]).all(axis=1)))
    b = bad_row // batch
    z = outputs[b * batch:(b + 1) * batch]
    with np.errstate(all="ignore"):
        loss = network.loss_of_outputs(network.activations[-1].forward(z), Y_epoch[b * batch:(b + 1) * batch], z)
    raise _diverged(epoch, b, run.batches.n_batches, loss if not math.isfinite(loss) else math.nan,
                    run.optimizer.lr, run.history)


def _diverged(epoch, batch, n_batches, loss, lr, history):
    err = TrainingDiverged(
        f"training diverged: the loss became {loss} in epoch {epoch + 1} (batch {batch + 1} of "
        f"{n_batches}) at learning rate {lr:g}; lower the learning rate (try {lr / 10:g}). "
        f"The weights of the last completed epoch were kept.")
    err.history = history
    return err
