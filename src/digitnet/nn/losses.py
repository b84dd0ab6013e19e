"""Loss functions as objects with a value and a gradient (Nielsen's "cost" objects).

Shapes: ``a`` (the network's output), ``y`` (the targets) and ``z`` (the output
layer's pre-activation) are all ``(n_samples, n_outputs)``.  Every loss is the
**mean over the samples** of a per-sample loss, so the gradients below carry a
factor ``1/n``; that is what Nielsen's ``η/m · Σ ∇`` update and Raschka's
``/ y.shape[0]`` both do.

``value(a, y, z=None) -> float``
    The mean loss.  The network passes ``z`` only when the output activation
    is the one the loss fuses with (``fused_with``); the cross-entropies then
    work in log space (log-sum-exp, softplus) instead of on a rounded
    probability.
``gradient(a, y) -> d_loss__d_a``
    ∂loss/∂a, for the chain rule through any output activation.
``delta(activation, a, y) -> d_loss__d_z``
    ∂loss/∂z for the output layer.  Softmax with categorical cross-entropy and
    sigmoid with binary cross-entropy share the famous simplification
    ``(a − y)/n``: the activation's derivative cancels the loss's, which is
    both cheaper and numerically stable.  Every other pair goes through
    ``activation.backward(a, gradient(a, y))``.
"""

from __future__ import annotations

import numpy as np

from ..errors import DigitnetError
from .activations import Activation, supports_out

# Probabilities are clipped this far from 0 and 1 before a logarithm or a
# division, so a saturated unit gives a large finite loss instead of inf/NaN.
_EPS32 = 1e-7
_EPS64 = 1e-12


def _eps(a: np.ndarray) -> float:
    return _EPS64 if a.dtype == np.float64 else _EPS32


def _softplus(z: np.ndarray) -> np.ndarray:
    """log(1 + e^z), without overflow: max(z, 0) + log1p(e^−|z|)."""
    return np.maximum(z, 0.0) + np.log1p(np.exp(-np.abs(z)))


class Loss:
    name = "loss"
    #: the output activation whose derivative cancels this loss's (fused gradient)
    fused_with: str | None = None
    #: output activations this loss makes sense with (None: any)
    needs_outputs_in: tuple[float, float] | None = None

    def value(self, a, y, z=None) -> float:  # pragma: no cover - abstract
        raise NotImplementedError

    def gradient(self, a, y):  # pragma: no cover - abstract
        raise NotImplementedError

    def delta(self, activation: Activation, a, y):
        if activation.name == self.fused_with:
            return (a - y) / a.shape[0]
        return activation.backward(a, self.gradient(a, y))

    def scaled_delta(self, activation: Activation, a, y, scale: float, out: np.ndarray):
        """``scale · delta(activation, a, y)``, written into ``out`` where it can be.

        The training step uses this: it multiplies δ_L by the optimiser's
        gradient scale (η for SGD), so every gradient downstream comes out
        already scaled at the cost of one small array (see
        :meth:`digitnet.nn.optimizers.Optimizer.gradient_scale`).
        """
        if activation.name == self.fused_with and type(self).delta is Loss.delta:
            d_loss__d_z = np.subtract(a, y, out=out)          # (a − y)
            d_loss__d_z *= scale / a.shape[0]                # · scale/n
            return d_loss__d_z
        d_loss__d_z = self.delta(activation, a, y)
        if scale != 1.0:
            d_loss__d_z *= scale
        return d_loss__d_z

    def __repr__(self) -> str:
        return self.name


class Quadratic(Loss):
    """Nielsen's quadratic cost: ½‖a − y‖² summed over the outputs, averaged over samples."""

    name = "quadratic"

    def value(self, a, y, z=None):
        # Σ(a − y)² as a dot product: one BLAS call instead of a square and a sum
        # (ravel in memory order: a view, whatever the layout)
        diff = (a - y).ravel(order="K")
        return 0.5 * float(np.dot(diff, diff)) / a.shape[0]

    def gradient(self, a, y):
        # ∂/∂a of ½Σ(a−y)², averaged over n samples
        return (a - y) / a.shape[0]

    def scaled_delta(self, activation, a, y, scale, out):
        # The same (a − y)/n as gradient(), made in the step's buffer, scaled,
        # then through the activation's derivative in place (unless a subclass
        # has a gradient of its own, which must then be the one used).
        if type(self).gradient is not Quadratic.gradient:
            return super().scaled_delta(activation, a, y, scale, out)
        d_loss__d_a = np.subtract(a, y, out=out)
        d_loss__d_a *= scale / a.shape[0]
        if supports_out(activation)[1]:
            return activation.backward(a, d_loss__d_a, out=d_loss__d_a)
        return activation.backward(a, d_loss__d_a)


class MeanSquaredError(Loss):
    """Raschka's MSE: (a − y)² averaged over the outputs and over the samples.

    It is ``2/n_outputs`` times the quadratic cost, so for the same learning
    rate its steps are 5× smaller with 10 outputs.  (Raschka's ``NeuralNetMLP``
    reports this loss but steps along ``2(a−y)/n``, the gradient of the summed
    version; digitnet keeps value and gradient consistent, and the ``raschka``
    preset raises the learning rate to match his steps.)
    """

    name = "mse"

    def value(self, a, y, z=None):
        diff = (a - y).ravel(order="K")
        return float(np.dot(diff, diff)) / diff.size

    def gradient(self, a, y):
        return 2.0 * (a - y) / a.size


class BinaryCrossEntropy(Loss):
    """−Σ_k [y log a + (1−y) log(1−a)] over the outputs, averaged over samples.

    Each output is an independent yes/no probability (sigmoid outputs).
    """

    name = "binary_cross_entropy"
    fused_with = "sigmoid"
    needs_outputs_in = (0.0, 1.0)

    def value(self, a, y, z=None):
        n = a.shape[0]
        if z is not None:
            # With a = σ(z):  −[y log σ(z) + (1−y) log(1−σ(z))] = softplus(z) − y·z
            return float(np.sum(_softplus(z) - y * z) / n)
        eps = _eps(a)
        a = np.clip(a, eps, 1.0 - eps)
        return float(-np.sum(y * np.log(a) + (1.0 - y) * np.log1p(-a)) / n)

    def gradient(self, a, y):
        eps = _eps(a)
        a = np.clip(a, eps, 1.0 - eps)
        return (a - y) / (a * (1.0 - a)) / a.shape[0]


class CategoricalCrossEntropy(Loss):
    """−Σ_k y_k log a_k, averaged over samples (one-hot ``y``, softmax outputs)."""

    name = "cross_entropy"
    fused_with = "softmax"
    needs_outputs_in = (0.0, 1.0)

    def value(self, a, y, z=None):
        n = a.shape[0]
        if z is not None:
            # log softmax(z)_k = z_k − logsumexp(z), so the loss is
            # Σ_k y_k (logsumexp(z) − z_k); shift by the max for stability.
            z_max = z.max(axis=1, keepdims=True)
            lse = z_max + np.log(np.exp(z - z_max).sum(axis=1, keepdims=True))  # (n, 1)
            return float((y * (lse - z)).sum()) / n     # Σ over samples and classes
        a = np.maximum(a, _eps(a))
        return -float((y * np.log(a)).sum()) / n

    def gradient(self, a, y):
        return -y / np.maximum(a, _eps(a)) / a.shape[0]


LOSSES = {
    cls.name: cls
    for cls in (Quadratic, MeanSquaredError, BinaryCrossEntropy, CategoricalCrossEntropy)
}
_ALIASES = {
    "quadratic": "quadratic",
    "nielsen": "quadratic",
    "sse": "quadratic",
    "mse": "mse",
    "mean_squared_error": "mse",
    "bce": "binary_cross_entropy",
    "binary_crossentropy": "binary_cross_entropy",
    "ce": "cross_entropy",
    "cce": "cross_entropy",
    "crossentropy": "cross_entropy",
    "categorical_cross_entropy": "cross_entropy",
    "categorical_crossentropy": "cross_entropy",
}


def get_loss(spec) -> Loss:
    """Return a loss object from a name (``"ce"``, ``"mse"``, ``"quadratic"``…) or an instance."""
    if isinstance(spec, Loss):
        return spec
    if isinstance(spec, str):
        key = spec.lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key in LOSSES:
            return LOSSES[key]()
    names = sorted(set(LOSSES) | set(_ALIASES))
    raise DigitnetError(f"unknown loss {spec!r}: choose one of {', '.join(names)}")
