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
