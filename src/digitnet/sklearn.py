"""digitnet as a scikit-learn classifier: :class:`DigitNetClassifier`.

It fits where scikit-learn estimators fit — a ``Pipeline`` after a
``StandardScaler``, ``GridSearchCV``, ``cross_val_score``, ``clone`` —
while the network inside is digitnet's own :class:`~digitnet.nn.network.Network`,
trained by digitnet's loop (:func:`digitnet.train.fit`)::

    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from digitnet.sklearn import DigitNetClassifier

    model = make_pipeline(StandardScaler(), DigitNetClassifier(hidden_layer_sizes=(64,), epochs=5,
                                                               random_state=0))
    model.fit(X_train, y_train).score(X_test, y_test)

Needs scikit-learn (``pip install "digitnet[sklearn]"``); ``import digitnet``
never imports this module.  Pickling follows scikit-learn's convention for
estimators (``pickle``/``joblib`` of the fitted object, for trusted files
only); to keep a trained network in digitnet's own pickle-free format, save
``clf.network_`` with :func:`digitnet.save_model`.
"""

from __future__ import annotations

import copy
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, check_random_state, validate_data

from . import __version__
from .nn.losses import get_loss
from .nn.network import Network
from .nn.optimizers import Optimizer, get_optimizer
from .train.history import History
from .train.loop import fit as _train

__all__ = ["DigitNetClassifier", "InconsistentVersionWarning"]

class InconsistentVersionWarning(UserWarning):
    """A pickled classifier is loaded by another digitnet version than the one that pickled it."""


#: patience (epochs without a lower validation loss) for ``early_stopping=True``
DEFAULT_PATIENCE = 10


class DigitNetClassifier(ClassifierMixin, BaseEstimator):
    """A digitnet multilayer perceptron with scikit-learn's classifier interface.

    Parameters
    ----------
    hidden_layer_sizes : tuple of int, default (100,)
        Units of each hidden layer (``()``: none, a linear model with a
        softmax).  The input layer has ``n_features_in_`` units, the output
        layer one per class (two for a yes/no problem).
    activation : str, default "relu"
        Activation of the hidden layers: "relu", "sigmoid", "tanh", "identity".
    loss : str, default "cross_entropy"
        "cross_entropy", "binary_cross_entropy", "quadratic" or "mse".
    optimizer : str or Optimizer, default "adam"
        "sgd", "momentum", "nesterov", "adam", or a digitnet optimiser
        object (used as a template: each fit trains a copy of it).
    learning_rate : float, default None
        η; ``None`` is the optimiser's default (1e-3 for Adam, 0.1 otherwise).
    batch_size : int or None, default 64
        Samples per step; ``None`` for full-batch gradient descent.
    epochs : int, default 10
        Passes over the training data in :meth:`fit` (:meth:`partial_fit`
        makes one pass per call).
    l2 : float, default 0.0
        Nielsen's λ: the loss gains (λ/2n)·Σ‖W‖², n the number of training samples.
    shift : int, default 0
        Move each training image by up to this many pixels at random every
        epoch (square images only, e.g. MNIST's 784 = 28×28; 0: off).
    early_stopping : bool or int, default False
        Hold out ``validation_fraction`` of the training data and stop when
        its loss has not fallen for this many epochs (``True``: 10),
        restoring the best weights.
    validation_fraction : float, default 0.1
        The share held out when ``early_stopping`` is on, per class (at
        least one sample of each class that has two or more).
    random_state : int, RandomState, Generator or None
        An int ≥ 0 is digitnet's seed: it fixes the initial weights, the
        shuffling and the shifts (the same int gives the same network, bit
        for bit, as ``Network(..., seed=random_state)`` would).
    verbose : int, default 0
        Above 0: a progress bar and one line per epoch
        (:class:`digitnet.app.progress.ProgressBar`).
    output_activation : str, default "auto"
        The output layer's activation: "softmax", except "sigmoid" for the
        binary cross-entropy.
    schedule : str or None, default None
        Learning-rate schedule in :meth:`fit`: None (constant), "step", "cosine".
    init : str or None, default None
        Initial weights (digitnet's initialiser names); None: He for ReLU
        layers, Glorot otherwise.
    dtype : str, default "float32"
        The network's floating-point type, "float32" or "float64".

    Attributes
    ----------
    classes_ : ndarray (n_classes,)
        The class labels, sorted (any type: ints, strings…); output unit i is ``classes_[i]``.
    n_features_in_ : int
    feature_names_in_ : ndarray, when fitted on a DataFrame with string column names
    network_ : digitnet.Network
        The trained network (save it with :func:`digitnet.save_model`).
    history_ : digitnet.History
        One record per epoch (loss, accuracy, validation figures).
    n_iter_ : int
        Epochs trained (fewer than ``epochs`` if early stopping stopped the run).
    """

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", loss="cross_entropy",
                 optimizer="adam", learning_rate=None, batch_size=64, epochs=10, l2=0.0, shift=0,
                 early_stopping=False, validation_fraction=0.1, random_state=None, verbose=0,
                 output_activation="auto", schedule=None, init=None, dtype="float32"):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.loss = loss
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.epochs = epochs
        self.l2 = l2
        self.shift = shift
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.random_state = random_state
        self.verbose = verbose
        self.output_activation = output_activation
        self.schedule = schedule
        self.init = init
        self.dtype = dtype

    # -- training ---------------------------------------------------------------------
    def fit(self, X, y):
        """Train a new network on ``X`` ``(n_samples, n_features)`` and labels ``y`` ``(n_samples,)``."""
        X, y = validate_data(self, X, y, dtype=(np.float32, np.float64))
        check_classification_targets(y)
        classes, y_index = np.unique(y, return_inverse=True)
        self._start(X.shape[1], classes)
        patience = self._patience()
        X_train, y_train, validation = X, y_index, None
        if patience is not None:
            X_train, y_train, validation = self._hold_out(X, y_index)
        self.history_ = _train(
            self.network_, X_train, y_train, epochs=self.epochs, batch_size=self.batch_size,
            optimizer=self.optimizer_, l2=self.l2, schedule=self.schedule,
            validation_data=validation, early_stopping=patience, seed=self._seed,
            callbacks=self._callbacks(), augment=self._augment())
        self.n_iter_ = len(self.history_)
        return self

    def partial_fit(self, X, y, classes=None):
        """One epoch over ``X``, ``y``; the first call builds the network and needs ``classes`` (every label).

        Later calls continue the same network and optimiser state: the
        learning rate stays constant (no schedule), there is no early
        stopping, and ``l2``'s n is the number of samples of each call.
        """
        first = not hasattr(self, "network_")
        X, y = validate_data(self, X, y, dtype=(np.float32, np.float64), reset=first)
        check_classification_targets(y)
        if first:
            if classes is None:
                raise ValueError("the first call to partial_fit needs classes=: every label the "
                                 "data can have (e.g. classes=np.unique(y_all))")
            classes = np.unique(np.asarray(classes))
            y_index = _indices(classes, y)      # before anything is built: a wrong label changes nothing
            self._start(X.shape[1], classes)
            self.history_ = History()
        else:
            if classes is not None and not np.array_equal(np.unique(np.asarray(classes)), self.classes_):
                raise ValueError(f"classes={classes!r} differs from the classes of the first call to "
                                 f"partial_fit, {self.classes_!r}")
            y_index = _indices(self.classes_, y)
        epoch = len(self.history_)
        _train(self.network_, X, y_index, epochs=epoch + 1, initial_epoch=epoch,
               history=self.history_, batch_size=self.batch_size, optimizer=self.optimizer_,
               l2=self.l2, seed=self._seed, callbacks=self._callbacks(), augment=self._augment())
        self.n_iter_ = len(self.history_)
        return self

    # -- using it ---------------------------------------------------------------------
    def predict_proba(self, X):
        """Class probabilities ``(n_samples, n_classes)``, columns in the order of ``classes_``.

        A softmax output's activations as they are; other outputs (sigmoid)
        are made probabilities by clipping at 0 and dividing by their row
        sum (a row of zeros becomes uniform).
        """
        check_is_fitted(self)
        X = validate_data(self, X, dtype=(np.float32, np.float64), reset=False)
        out = self.network_.predict_proba(X).astype(np.float64)
        if self.network_.activations[-1].name == "softmax":
            return out
        np.clip(out, 0.0, None, out=out)
        total = out.sum(axis=1, keepdims=True)
        empty = total[:, 0] <= 0
        out[empty], total[empty] = 1.0, out.shape[1]
        return out / total

    def predict(self, X):
        """The most probable class of each row of ``X``, as a label of ``classes_``."""
        check_is_fitted(self)
        return self.classes_[np.argmax(self.predict_proba(X), axis=1)]

    def __sklearn_is_fitted__(self) -> bool:
        # Fitted means trained: a fit refused after the data were checked leaves n_features_in_ only.
        return hasattr(self, "network_")

    # -- pickling -----------------------------------------------------------------------
    # scikit-learn's convention: the pickle of a fitted estimator records the
    # version that wrote it, and loading it under another version warns
    # (scikit-learn does so for its own estimators; here digitnet's version).
    # The network inside pickles without its per-thread work arrays.
    def __getstate__(self):
        return dict(super().__getstate__(), _digitnet_version=__version__)

    def __setstate__(self, state):
        state = dict(state)
        written_by = state.pop("_digitnet_version", "unknown")
        if written_by != __version__:
            warnings.warn(InconsistentVersionWarning(
                f"this {type(self).__name__} was pickled by digitnet {written_by} and is loaded by "
                f"digitnet {__version__}: it may not work, or give other answers; refit it, or "
                "keep the network in digitnet's own model file (digitnet.save_model(path, clf.network_))"),
                stacklevel=2)
        super().__setstate__(state)

    # -- the pieces ---------------------------------------------------------------------
    def _start(self, n_features: int, classes: np.ndarray) -> None:
        """A new seeded network (and optimiser) for ``n_features`` inputs, one output per class.

        Sets ``classes_``, ``network_`` and ``optimizer_`` only once every
        parameter has been checked: a refused fit leaves no half-fitted estimator.
        """
        if len(classes) < 2:
            raise ValueError(f"a classifier needs samples of at least 2 classes to learn from, but "
                             f"y holds 1 class ({_plain(classes[0])!r})")
        self._seed = self._draw_seed()
        hidden = self.hidden_layer_sizes
        hidden = [hidden] if isinstance(hidden, numbers.Integral) else list(hidden)
        loss = get_loss(self.loss)
        output = self.output_activation
        if output == "auto":
            output = "sigmoid" if loss.name == "binary_cross_entropy" else "softmax"
        network = Network([n_features, *hidden, len(classes)], activation=self.activation,
                          output=output, loss=loss, init=self.init, dtype=self.dtype, seed=self._seed)
        optimizer = self.optimizer
        optimizer = (copy.deepcopy(optimizer) if isinstance(optimizer, Optimizer)
                     else get_optimizer(optimizer, self.learning_rate))
        if self.learning_rate is not None:
            optimizer.lr = float(self.learning_rate)
        self.classes_, self.network_, self.optimizer_ = classes, network, optimizer

    def _draw_seed(self) -> int:
        state = self.random_state
        if isinstance(state, numbers.Integral) and not isinstance(state, bool):
            if state < 0:
                raise ValueError(f"random_state must be an int ≥ 0, a RandomState or None, got {state}")
            return int(state)
        if isinstance(state, np.random.Generator):
            return int(state.integers(2**63))
        return int(check_random_state(state).randint(np.iinfo(np.int32).max))

    def _patience(self):
        stop = self.early_stopping
        if stop is None or stop is False:
            return None
        if stop is True:
            return DEFAULT_PATIENCE
        return stop  # digitnet's fit checks it is a whole number ≥ 1

    def _hold_out(self, X, y_index):
        """A stratified ``validation_fraction`` of ``X`` for early stopping: ``(X_train, y_train, (X_val, y_val))``."""
        fraction = self.validation_fraction
        if not (isinstance(fraction, numbers.Real) and 0 < fraction < 1):
            raise ValueError(f"validation_fraction must be a number between 0 and 1 (exclusive), "
                             f"got {fraction!r}")
        rng = np.random.default_rng(self._seed)
        held = np.zeros(len(X), dtype=bool)
        for c in range(len(self.classes_)):
            rows = np.flatnonzero(y_index == c)
            # at least one sample of every class that has two, and never all of them
            take = min(max(1, int(round(fraction * len(rows)))), len(rows) - 1)
            held[rng.permutation(rows)[:take]] = True
        if not held.any():
            raise ValueError(f"early stopping needs a validation sample, but no class of y has 2 "
                             f"samples (of {len(X)}) to spare one: give more samples or set "
                             "early_stopping=False")
        return X[~held], y_index[~held], (X[held], y_index[held])

    def _augment(self):
        return self.shift or None

    def _callbacks(self):
        if not self.verbose:
            return []
        from .app.progress import ProgressBar

        return [ProgressBar()]


def _indices(classes: np.ndarray, y) -> np.ndarray:
    """The index in ``classes`` of every label of ``y``; a label not among them is an error."""
    index = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[index] != y
    if np.any(unknown):
        raise ValueError(f"y holds the label {_plain(y[np.argmax(unknown)])!r}, which is not among the "
                         f"classes {classes.tolist()!r} given to the first partial_fit")
    return index


def _plain(label):
    """A NumPy scalar label as the Python value it holds (for messages: 3, not np.int64(3))."""
    return label.item() if isinstance(label, np.generic) else label
