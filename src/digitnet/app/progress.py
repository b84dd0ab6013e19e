"""Showing a training run as it goes: a tqdm progress bar and one line per epoch.

:class:`ProgressBar` is a training callback (see :class:`digitnet.train.Callback`).
After every epoch it prints one summary line to stdout::

    epoch  3/10  loss 0.0712  acc  97.85%  val  97.62%  lr 0.000905  4.1s

While an epoch runs, a bar shows its mini-batches (for full-batch recipes,
whose epochs are one step each, one bar follows the whole run).  The bar is
`tqdm <https://tqdm.github.io>`_'s ``tqdm.auto``:

* in Jupyter (with ipywidgets), a progress widget under the cell;
* on a terminal, a text bar on stderr, redrawn in place;
* in a pipe or a log file (stderr is not a terminal), no bar at all: only
  the epoch lines, flushed one by one so a reader sees each epoch as it ends.

tqdm is optional (the core of digitnet needs NumPy only): without it there
is no bar anywhere and the epoch lines are all there is.  ``pip install
"digitnet[notebook]"`` (or ``[all]``) brings it.
"""

from __future__ import annotations

import math
import sys

from ..train import Callback


def _is_terminal(stream) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # closed or replaced streams
        return False


def _tqdm_class():
    """``tqdm.auto.tqdm`` (the notebook widget in Jupyter, else the text bar), or ``None`` without tqdm."""
    try:
        from tqdm.auto import tqdm
    except ImportError:
        return None
    return tqdm


def _in_notebook(tqdm_class) -> bool:
    """Whether ``tqdm.auto`` chose the Jupyter widget (it does in a kernel with ipywidgets)."""
    if tqdm_class is None:
        return False
    try:
        from tqdm.notebook import tqdm as notebook_tqdm
    except ImportError:
        return False
    return issubclass(tqdm_class, notebook_tqdm)


def format_epoch_line(record: dict, epochs: int) -> str:
    """The summary line of one epoch's history record."""
    width = len(str(epochs))

    def pct(value):
        return "   -  " if value is None else f"{100 * value:6.2f}%"

    return (f"epoch {record['epoch']:>{width}}/{epochs}  loss {record['loss']:.4f}  "
            f"acc {pct(record['accuracy'])}  val {pct(record.get('val_accuracy'))}  "
            f"lr {record['lr']:.3g}  {record['seconds']:.1f}s")


class ProgressBar(Callback):
    """A tqdm bar (in Jupyter, on a terminal) and a summary line per epoch on ``line_stream``.

    ``every`` prints the summary of every ``every``-th epoch only (plus the
    first of the run and the last); by default all of them up to 100 epochs,
    and about 25 lines for longer runs (full-batch recipes run hundreds of
    one-step epochs).  ``bar`` forces the bar on or off; by default it is on
    in a notebook and when ``bar_stream`` (stderr) is a terminal, and always
    off without tqdm.  ``min_interval`` is the least time between two
    redraws of the bar, in seconds.
    """

    def __init__(self, *, line_stream=None, bar_stream=None, bar: bool | None = None,
                 every: int | None = None, min_interval: float = 0.1):
        self.line_stream = line_stream if line_stream is not None else sys.stdout
        self.bar_stream = bar_stream if bar_stream is not None else sys.stderr
        self._tqdm = _tqdm_class()
        self.notebook = _in_notebook(self._tqdm)
        wanted = (self.notebook or _is_terminal(self.bar_stream)) if bar is None else bool(bar)
        self.bar = wanted and self._tqdm is not None
        self.every = every
        self.min_interval = min_interval
        self.epochs = 1
        self._first_epoch = None
        self._epoch_bar = None      # the current epoch's mini-batches
        self._run_bar = None        # full-batch runs: the epochs of the whole run

    # -- callback hooks -----------------------------------------------------------
    def on_train_begin(self, network, optimizer, epochs):
        self.epochs = epochs
        if self.every is None:
            self.every = 1 if epochs <= 100 else math.ceil(epochs / 25)

    def on_epoch_begin(self, epoch, n_batches):
        if self._first_epoch is None:
            self._first_epoch = epoch  # a resumed run starts after epoch 1
        if not self.bar:
            return
        if n_batches == 1:           # one step per epoch: one bar over the run's epochs
            if self._run_bar is None:
                self._run_bar = self._open(total=self.epochs, initial=epoch, unit="epoch",
                                           desc="training", leave=False)
        else:
            self._epoch_bar = self._open(total=n_batches, unit="batch", leave=False,
                                         desc=f"epoch {epoch + 1}/{self.epochs}")

    def on_batch_end(self, epoch, batch, n_batches):
        if self._epoch_bar is not None:
            try:
                self._epoch_bar.update(1)   # tqdm redraws at most every min_interval seconds
            except (OSError, ValueError):
                self._epoch_bar, self.bar = None, False

    def on_epoch_end(self, epoch, record):
        number = epoch + 1
        self._close_epoch_bar()
        if epoch == self._first_epoch or number == self.epochs or number % self.every == 0:
            self._write(format_epoch_line(record, self.epochs))
        if self._run_bar is not None:
            self._safely(lambda: self._run_bar.update(1))

    def on_train_end(self, history):
        self._close_epoch_bar()
        if self._run_bar is not None:
            self._safely(self._run_bar.close)
            self._run_bar = None

    # -- the bar and the lines ----------------------------------------------------
    def _open(self, **kwargs):
        # The widget draws itself in the notebook; the text bar goes to bar_stream.
        stream = {} if self.notebook else {"file": self.bar_stream}
        try:
            return self._tqdm(mininterval=self.min_interval, dynamic_ncols=True, **stream, **kwargs)
        except Exception:  # noqa: BLE001 - a display problem must never stop training
            self.bar = False
            return None

    def _close_epoch_bar(self):
        if self._epoch_bar is not None:
            self._safely(self._epoch_bar.close)
            self._epoch_bar = None

    def _write(self, line: str) -> None:
        if self.bar and self._run_bar is not None:
            # tqdm.write clears the open bar, prints the line and redraws the bar under it.
            self._safely(lambda: self._tqdm.write(line, file=self.line_stream))
            self._safely(self.line_stream.flush)
        else:
            print(line, file=self.line_stream, flush=True)

    def _safely(self, action):
        try:
            action()
        except (OSError, ValueError):
            self.bar = False  # the terminal went away: keep training, stop drawing
