"""Showing a training run as it goes: a progress bar and one line per epoch.

:class:`ProgressBar` is a training callback (see :class:`digitnet.train.Callback`).
On a terminal it redraws a bar on stderr while an epoch runs; after every
epoch it prints one summary line to stdout::

    epoch  3/10  loss 0.0712  acc 97.85%  val 97.62%  lr 0.000905  4.1s

When stderr is not a terminal (a pipe, a log file) there is no bar, only the
lines, flushed one by one so a reader sees each epoch as it ends.
"""

from __future__ import annotations

import math
import sys
import time

from ..train import Callback


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def format_epoch_line(record: dict, epochs: int) -> str:
    """The summary line of one epoch's history record."""
    width = len(str(epochs))

    def pct(value):
        return "   -  " if value is None else f"{100 * value:6.2f}%"

    return (f"epoch {record['epoch']:>{width}}/{epochs}  loss {record['loss']:.4f}  "
            f"acc {pct(record['accuracy'])}  val {pct(record.get('val_accuracy'))}  "
            f"lr {record['lr']:.3g}  {record['seconds']:.1f}s")


class ProgressBar(Callback):
    """Bar on ``bar_stream`` (if it is a terminal) and a summary line per epoch on ``line_stream``.

    ``every`` prints the summary of every ``every``-th epoch only (plus the
    first of the run and the last); by default all of them up to 100 epochs, and about
    25 lines for longer runs (full-batch recipes run hundreds of one-step
    epochs).  ``bar`` forces the bar on or off.
    """

    def __init__(self, *, line_stream=None, bar_stream=None, bar: bool | None = None,
                 every: int | None = None, width: int = 30, min_interval: float = 0.1):
        self.line_stream = line_stream if line_stream is not None else sys.stdout
        self.bar_stream = bar_stream if bar_stream is not None else sys.stderr
        self.bar = _is_terminal(self.bar_stream) if bar is None else bool(bar)
        self.every = every
        self.width = width
        self.min_interval = min_interval
        self.epochs = 1
        self._first_epoch = None
        self._drawn = False
        self._last_draw = 0.0
        self._epoch_started = 0.0

    # -- callback hooks -----------------------------------------------------------
    def on_train_begin(self, network, optimizer, epochs):
        self.epochs = epochs
        if self.every is None:
            self.every = 1 if epochs <= 100 else math.ceil(epochs / 25)

    def on_epoch_begin(self, epoch, n_batches):
        if self._first_epoch is None:
            self._first_epoch = epoch  # a resumed run starts after epoch 1
        self._epoch_started = time.perf_counter()
        if n_batches == 1:
            self._draw(epoch, self.epochs, f"epoch {epoch + 1}/{self.epochs}")
        else:
            self._draw(0, n_batches, f"epoch {epoch + 1}/{self.epochs}")

    def on_batch_end(self, epoch, batch, n_batches):
        if n_batches > 1:
            self._draw(batch + 1, n_batches, f"epoch {epoch + 1}/{self.epochs}")

    def on_epoch_end(self, epoch, record):
        number = epoch + 1
        if epoch == self._first_epoch or number == self.epochs or number % self.every == 0:
            self._clear()
            print(format_epoch_line(record, self.epochs), file=self.line_stream, flush=True)

    def on_train_end(self, history):
        self._clear()

    # -- drawing ------------------------------------------------------------------
    def _draw(self, done, total, label):
        if not self.bar:
            return
        now = time.perf_counter()
        if done not in (0, total) and now - self._last_draw < self.min_interval:
            return  # redrawing after every mini-batch would cost more than the batch
        self._last_draw = now
        filled = int(self.width * done / max(total, 1))
        elapsed = now - self._epoch_started
        eta = elapsed / done * (total - done) if done else 0.0
        text = (f"\r{label} [{'#' * filled}{'.' * (self.width - filled)}] "
                f"{100 * done / max(total, 1):3.0f}%  {elapsed:5.1f}s  eta {eta:5.1f}s")
        try:
            self.bar_stream.write(text)
            self.bar_stream.flush()
            self._drawn = True
        except (OSError, ValueError):
            self.bar = False  # the terminal went away: keep training, stop drawing

    def _clear(self):
        if self._drawn:
            try:
                self.bar_stream.write("\r\033[K")
                self.bar_stream.flush()
            except (OSError, ValueError):
                self.bar = False
            self._drawn = False
