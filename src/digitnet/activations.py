"""Activation functions and their derivatives.

Each activation is a small object with two methods:

``forward(z) -> a``
    ``z`` and ``a`` are ``(n_samples, n_units)``.
``backward(a, d_loss__d_a) -> d_loss__d_z``
    The chain rule through the activation, written in terms of its *output*
    ``a`` (every derivative here can be: σ' = σ(1−σ), tanh' = 1−tanh², ReLU'
    = [a > 0]), so the forward pass only has to keep the activations.

For the element-wise functions ``d_loss__d_z = d_loss__d_a * f'(z)``.  Softmax
mixes its inputs, so its backward pass multiplies by the full Jacobian
``J = diag(a) − a aᵀ`` (per sample), which collapses to
``a ⊙ (g − (g·a))`` without ever forming the matrix.
"""

from __future__ import annotations

import numpy as np

from .errors import DigitnetError


class Activation:
    name = "activation"
    #: the (open) interval the outputs fall into, used to validate losses
    output_range = (-np.inf, np.inf)

    def forward(self, z: np.ndarray) -> np.ndarray:  # pragma: no cover - abstract
        raise NotImplementedError

    def backward(self, a: np.ndarray, d_loss__d_a: np.ndarray) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Sigmoid(Activation):
    """σ(z) = 1 / (1 + e^−z), outputs in (0, 1)."""

    name = "sigmoid"
    output_range = (0.0, 1.0)

    def forward(self, z):
        # σ(z) = ½·tanh(z/2) + ½ is the same function, but never overflows
        # (1 + e^−z overflows float32 for z < −88 and NumPy warns).
        a = np.multiply(z, 0.5)
        np.tanh(a, out=a)
        a *= 0.5
        a += 0.5
        return a

    def backward(self, a, d_loss__d_a):
        # dσ/dz = σ(z)·(1 − σ(z)) = a·(1 − a)
        return d_loss__d_a * a * (1.0 - a)


class Tanh(Activation):
    """tanh(z), outputs in (−1, 1)."""

    name = "tanh"
    output_range = (-1.0, 1.0)

    def forward(self, z):
        return np.tanh(z)

    def backward(self, a, d_loss__d_a):
        # d tanh/dz = 1 − tanh²(z) = 1 − a²
        return d_loss__d_a * (1.0 - a * a)


class ReLU(Activation):
    """max(0, z).  Its derivative at exactly 0 is taken as 0."""

    name = "relu"
    output_range = (0.0, np.inf)

    def forward(self, z):
        return np.maximum(z, 0.0)

    def backward(self, a, d_loss__d_a):
        # dReLU/dz = 1 where z > 0, which is exactly where a > 0
        return d_loss__d_a * (a > 0)


class Identity(Activation):
    """f(z) = z (a linear output layer)."""

    name = "identity"

    def forward(self, z):
        return z.copy()

    def backward(self, a, d_loss__d_a):
        return d_loss__d_a.copy()


class Softmax(Activation):
    """softmax(z)_k = e^{z_k} / Σ_j e^{z_j}, per sample (row); outputs sum to 1."""

    name = "softmax"
    output_range = (0.0, 1.0)

    def forward(self, z):
        # Subtracting the row maximum leaves softmax unchanged and keeps
        # exp() from overflowing: the largest exponent becomes e^0 = 1.
        a = z - z.max(axis=1, keepdims=True)
        np.exp(a, out=a)
        a /= a.sum(axis=1, keepdims=True)
        return a

    def backward(self, a, d_loss__d_a):
        # Per sample, ∂a_i/∂z_j = a_i(δ_ij − a_j), so
        # d_loss__d_z_j = Σ_i g_i a_i (δ_ij − a_j) = a_j (g_j − Σ_i g_i a_i).
        g_dot_a = np.sum(d_loss__d_a * a, axis=1, keepdims=True)  # (n, 1)
        return a * (d_loss__d_a - g_dot_a)


ACTIVATIONS = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, Identity, Softmax)
}
_ALIASES = {"linear": "identity", "none": "identity", "logistic": "sigmoid"}


def get_activation(spec) -> Activation:
    """Return an activation object from a name (``"relu"``) or an instance."""
    if isinstance(spec, Activation):
        return spec
    if isinstance(spec, str):
        key = _ALIASES.get(spec.lower(), spec.lower())
        if key in ACTIVATIONS:
            return ACTIVATIONS[key]()
    raise DigitnetError(
        f"unknown activation {spec!r}: choose one of {', '.join(sorted(ACTIVATIONS))}"
    )
