"""Kept for old imports: the training loop now lives in :mod:`digitnet.train`."""

from .train.batches import _AUGMENT_STREAM, _GATHER_ROWS, epoch_order  # noqa: F401
from .train.history import COLUMNS as _COLUMNS, Callback, History  # noqa: F401
from .train.loop import _CHECK_ROWS, _all_finite, fit  # noqa: F401
