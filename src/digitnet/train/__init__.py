"""Training: the loop, its batches, history and callbacks, augmentation.

:func:`fit` is what ``Network.fit`` runs; one step of it is
:meth:`digitnet.nn.network.Network.update_mini_batch`.
"""

from .batches import epoch_order
from .history import Callback, History, StopTraining
from .loop import fit

__all__ = ["fit", "History", "Callback", "StopTraining", "epoch_order"]
