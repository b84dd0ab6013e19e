"""What a training run leaves behind (:class:`History`) and how to hook into it (:class:`Callback`)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import DigitnetError

#: the columns of every History record
COLUMNS = ("epoch", "loss", "accuracy", "val_loss", "val_accuracy", "lr", "seconds")


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

    def _repr_html_(self) -> str:
        """The records as an HTML table (first and last rows of a long run): how Jupyter shows it."""
        from html import escape

        notes = [f"{len(self.records)} epoch{'s' if len(self.records) != 1 else ''}"]
        if self.seed is not None:
            notes.append(f"seed {self.seed}")
        if self.best_epoch is not None:
            notes.append(f"best epoch {self.best_epoch}")
        if self.stopped_early:
            notes.append("stopped early")
        rows = self.records
        cut = len(rows) > _HTML_ROWS
        if cut:
            rows = rows[:_HTML_ROWS // 2] + [None] + rows[-(_HTML_ROWS // 2):]
        body = "".join(
            f"<tr><td colspan='{len(COLUMNS)}'>… {len(self.records) - _HTML_ROWS} more …</td></tr>"
            if r is None else
            "<tr>" + "".join(f"<td style='text-align:right'>{escape(_html_cell(c, r.get(c)))}</td>"
                             for c in COLUMNS) + "</tr>"
            for r in rows)
        head = "".join(f"<th>{c}</th>" for c in COLUMNS)
        return (f"<table><caption>History: {escape(', '.join(notes))}</caption>"
                f"<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>")

    def to_dict(self) -> dict:
        return {"records": [dict(r) for r in self.records], "seed": self.seed,
                "best_epoch": self.best_epoch, "stopped_early": self.stopped_early}

    @classmethod
    def from_dict(cls, data: dict) -> "History":
        return cls([dict(r) for r in data.get("records", [])], data.get("seed"),
                   data.get("best_epoch"), bool(data.get("stopped_early", False)))


#: rows of a History's HTML table (the first and last half of a longer run)
_HTML_ROWS = 20


def _html_cell(column: str, value) -> str:
    if value is None:
        return "–"
    if column == "epoch":
        return str(value)
    if column in ("accuracy", "val_accuracy"):
        return f"{100 * value:.2f}%"
    if column == "seconds":
        return f"{value:.2f}"
    return f"{value:.4g}"


class StopTraining(Exception):
    """Raised by a callback, from any of its hooks, to end training at once.

    :func:`~digitnet.train.fit` (and :func:`~digitnet.train.recipes.train_recipe`)
    let it through unchanged: the network keeps the weights of the last step
    taken, and the history the epochs completed before it.  Raised from
    ``on_batch_end`` it stops training within one step of being asked to
    (the web page's Stop button); returning ``True`` from ``on_epoch_end``
    stops at the end of an epoch instead.
    """


class Callback:
    """Hooks into the training loop; override what you need.

    ``on_epoch_end`` may return ``True`` to stop training after that epoch;
    any hook may raise :class:`StopTraining` to stop at once.
    """

    def on_train_begin(self, network, optimizer, epochs: int) -> None:
        pass

    def on_epoch_begin(self, epoch: int, n_batches: int) -> None:
        pass

    def on_epoch_arrays(self, epoch: int, outputs, targets, labels, batch_size: int) -> None:
        """The arrays the epoch fills, once before its first step.

        ``outputs`` ``(n, n_outputs)`` receives each step's output
        pre-activations z_L as the step is taken: after batch ``b`` the rows
        up to ``min((b + 1) * batch_size, n)`` are filled.  ``targets``
        ``(n, n_outputs)`` and ``labels`` ``(n,)`` are the epoch's targets and
        labels in the same (shuffled) order.  The loop works out the epoch's
        loss and accuracy from these arrays at its end; a callback may read
        them (never write) for figures during the epoch, such as the web
        page's live loss curve, at no extra forward pass.
        """

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


def as_callbacks(callbacks) -> list[Callback]:
    """Callback objects, with plain functions ``f(epoch, record)`` wrapped as ``on_epoch_end``."""
    out = []
    for cb in callbacks or ():
        if isinstance(cb, Callback):
            out.append(cb)
        elif callable(cb):
            out.append(_EpochEndFunction(cb))
        else:
            raise DigitnetError(f"callbacks must be Callback objects or functions, got {cb!r}")
    return out
