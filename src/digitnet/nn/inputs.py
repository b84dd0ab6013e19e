"""Input checks for the network: arrays in, clear errors out.

Kept apart from :mod:`digitnet.nn.network` so that the math there reads
without interruption.  Each function returns arrays the network can use as
they are (its dtype, C order) or raises :class:`~digitnet.errors.DataError`
with one line naming what is wrong.
"""

from __future__ import annotations

import numpy as np

from ..errors import DataError


def as_inputs(X, n_inputs: int, dtype, name: str = "X") -> np.ndarray:
    """``X`` as a C-contiguous ``(n_samples, n_inputs)`` array of ``dtype``.

    A single sample may be given flat ``(n_inputs,)``, and images
    ``(n, 28, 28)`` are flattened to rows.
    """
    X = np.asarray(X)
    if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
        raise DataError(f"{name} must be numeric, got an array of {X.dtype}")
    if X.ndim == 1 and X.size == n_inputs:
        X = X.reshape(1, -1)
    elif X.ndim > 2 and int(np.prod(X.shape[1:])) == n_inputs:
        X = X.reshape(len(X), -1)  # e.g. (n, 28, 28) images
    if X.ndim != 2 or X.shape[1] != n_inputs:
        raise DataError(f"{name} has shape {X.shape}, but the network expects (n_samples, {n_inputs})")
    if len(X) == 0:
        raise DataError(f"{name} is empty: there are no samples")
    X = np.ascontiguousarray(X, dtype=dtype)
    # A NaN or ±inf anywhere makes the sum non-finite, so a finite sum
    # settles it without np.isfinite(X)'s boolean copy of X (47 MB for
    # MNIST); only a non-finite sum (or finite values overflowing it)
    # needs the element-wise look.
    with np.errstate(over="ignore", invalid="ignore"):
        total = X.sum()
    if not np.isfinite(total) and not np.isfinite(X).all():
        row = int(np.argwhere(~np.isfinite(X))[0, 0])
        raise DataError(f"{name} contains NaN or infinite values (first in row {row}): "
                        "clean or drop those rows")
    return X


def as_targets(y, n_samples: int, n_outputs: int, dtype, loss, name: str = "y"):
    """Labels or target rows as ``(Y (n, n_outputs) of dtype, labels (n,) int64)``.

    ``y`` may be integer class labels ``(n,)`` (one-hot encoded here: row i
    of ``Y`` is ``np.eye(n_outputs)[y[i]]``), target rows ``(n, n_outputs)``,
    or for a single output ``(n,)`` values.  ``labels`` is the class index
    per sample, used for accuracy.
    """
    y = np.asarray(y)
    k = n_outputs
    if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
        raise DataError(f"{name} must be numeric labels, got an array of {y.dtype}")
    if y.ndim == 0 or len(y) != n_samples:
        got = "a single value" if y.ndim == 0 else len(y)
        raise DataError(f"X has {n_samples} samples but {name} has {got}: they must match")
    if not np.isfinite(y).all():
        raise DataError(f"{name} contains NaN or infinite values")
    if k == 1:
        if y.size != n_samples:
            raise DataError(f"{name} has shape {y.shape}, but the network has one output")
        Y = y.reshape(n_samples, 1).astype(dtype)
        _check_probability_targets(Y, loss, name)
        return Y, (Y[:, 0] > 0.5).astype(np.int64)
    if y.ndim == 1:
        labels = y.astype(np.int64)
        if not np.array_equal(labels, y):
            raise DataError(f"{name} must hold whole-number class labels 0..{k - 1}")
        bad = np.flatnonzero((labels < 0) | (labels >= k))
        if bad.size:
            raise DataError(f"{name} contains label {labels[bad[0]]} (row {bad[0]}), but the network has "
                            f"{k} outputs: labels must be 0..{k - 1}")
        Y = np.zeros((n_samples, k), dtype=dtype)
        Y[np.arange(n_samples), labels] = 1          # one-hot: np.eye(k)[labels], without the k×k eye
        return Y, labels
    if y.ndim == 2 and y.shape[1] == k:
        Y = np.ascontiguousarray(y, dtype=dtype)
        _check_probability_targets(Y, loss, name)
        return Y, Y.argmax(axis=1)
    raise DataError(f"{name} has shape {y.shape}: expected labels (n,) or targets (n, {k})")


def _check_probability_targets(Y, loss, name):
    # Cross-entropies compare probabilities: a target of 5 has no meaning there.
    if loss.needs_outputs_in is not None and (Y.min() < 0 or Y.max() > 1):
        raise DataError(f"{name} holds targets outside 0..1, but the {loss.name} loss "
                        "compares probabilities: pass 0/1 (or one-hot) targets")
