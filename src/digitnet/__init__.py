"""digitnet: a multilayer perceptron for handwritten digits, from scratch in NumPy.

>>> from digitnet import Network
>>> net = Network([784, 30, 10], activation="sigmoid", output="sigmoid", loss="quadratic")
>>> net.n_params
23860
"""

__version__ = "0.1.0"

from .errors import (  # noqa: E402
    DataError,
    DigitnetError,
    ImageError,
    ModelFileError,
    TrainingDiverged,
)
from .nn.gradcheck import check_gradients  # noqa: E402
from .nn.network import Network  # noqa: E402
from .nn.optimizers import SGD, Adam, Momentum, Nesterov  # noqa: E402
from .train import Callback, History  # noqa: E402

__all__ = [
    "Network", "History", "Callback", "check_gradients",
    "SGD", "Momentum", "Nesterov", "Adam",
    "DigitnetError", "DataError", "ModelFileError", "ImageError", "TrainingDiverged",
    "load_model", "save_model", "sweep",
]


def __getattr__(name):
    # Model files import lazily so that `import digitnet` stays light.
    if name in ("load_model", "save_model"):
        from .files import modelfile

        return getattr(modelfile, name)
    if name == "sweep":  # the sweep engine (and its process pool) loads when first used
        from .train.sweep import sweep

        return sweep
    raise AttributeError(f"module 'digitnet' has no attribute {name!r}")
