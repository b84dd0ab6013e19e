"""The math of the network, NumPy only: layers, activations, losses, initialisers,
optimisers, learning-rate schedules and the gradient check.

Nothing here imports the training loop, the data loaders or the applications
(tests/test_layout.py holds that line), so a learner can read all of it alone.
The place to start is :mod:`digitnet.nn.network`: ``feedforward``,
``backprop`` and ``update_mini_batch``.
"""

from .gradcheck import check_gradients
from .network import Network
from .optimizers import SGD, Adam, Momentum, Nesterov

__all__ = ["Network", "check_gradients", "SGD", "Momentum", "Nesterov", "Adam"]
