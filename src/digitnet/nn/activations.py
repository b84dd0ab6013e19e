"""Activation functions and their derivatives.

Each activation is a small object with two methods:

``forward(z, out=None) -> a``
    ``z`` and ``a`` are ``(n_samples, n_units)``.
``backward(a, d_loss__d_a, out=None) -> d_loss__d_z``
    The chain rule through the activation, written in terms of its *output*
    ``a`` (every derivative here can be: σ' = σ(1−σ), tanh' = 1−tanh², ReLU'
    = [a > 0]), so the forward pass only has to keep the activations.

``out`` (optional) is an array of the result's shape to write into; it may
be the input itself (``forward(z, out=z)``, ``backward(a, g, out=g)``), which
is how the training step reuses one preallocated buffer per layer instead of
allocating new arrays at every step.  A custom activation may implement the
two-argument form only: the network checks for ``out`` (:func:`supports_out`)
and falls back to using the returned array.

For the element-wise functions ``d_loss__d_z = d_loss__d_a * f'(z)``.  Softmax
mixes its inputs, so its backward pass multiplies by the full Jacobian
``J = diag(a) − a aᵀ`` (per sample), which collapses to
``a ⊙ (g − (g·a))`` without ever forming the matrix.
"""

from __future__ import annotations

import inspect

import numpy as np

from ..errors import DigitnetError


class Activation:
    name = "activation"
    #: the (open) interval the outputs fall into, used to validate losses
    output_range = (-np.inf, np.inf)

    def forward(self, z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def backward(self, a: np.ndarray, d_loss__d_a: np.ndarray,
                 out: np.ndarray | None = None) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        return self.name


class Sigmoid(Activation):
    """σ(z) = 1 / (1 + e^−z), outputs in (0, 1)."""

    name = "sigmoid"
    output_range = (0.0, 1.0)

    def forward(self, z, out=None):
        # σ(z) = ½·tanh(z/2) + ½ is the same function, but never overflows
        # (1 + e^−z overflows float32 for z < −88 and NumPy warns).
        a = np.multiply(z, 0.5, out=out)
        np.tanh(a, out=a)
        a *= 0.5
        a += 0.5
        return a

    def backward(self, a, d_loss__d_a, out=None):
        # dσ/dz = σ(z)·(1 − σ(z)) = a·(1 − a)
        d_loss__d_z = np.multiply(d_loss__d_a, a, out=out)
        d_loss__d_z *= 1.0 - a
        return d_loss__d_z


class Tanh(Activation):
    """tanh(z), outputs in (−1, 1)."""

    name = "tanh"
    output_range = (-1.0, 1.0)

    def forward(self, z, out=None):
        return np.tanh(z, out=out)

    def backward(self, a, d_loss__d_a, out=None):
        # d tanh/dz = 1 − tanh²(z) = 1 − a²
        return np.multiply(d_loss__d_a, 1.0 - a * a, out=out)


class ReLU(Activation):
    """max(0, z).  Its derivative at exactly 0 is taken as 0."""

    name = "relu"
    output_range = (0.0, np.inf)

    def forward(self, z, out=None):
        return np.maximum(z, 0.0, out=out)

    def backward(self, a, d_loss__d_a, out=None):
        # dReLU/dz = 1 where z > 0, which is exactly where a > 0
        return np.multiply(d_loss__d_a, a > 0, out=out)


class Identity(Activation):
    """f(z) = z (a linear output layer)."""

    name = "identity"

    def forward(self, z, out=None):
        return _copy(z, out)

    def backward(self, a, d_loss__d_a, out=None):
        return _copy(d_loss__d_a, out)


class Softmax(Activation):
    """softmax(z)_k = e^{z_k} / Σ_j e^{z_j}, per sample (row); outputs sum to 1."""

    name = "softmax"
    output_range = (0.0, 1.0)

    def forward(self, z, out=None):
        # Subtracting the row maximum leaves softmax unchanged and keeps
        # exp() from overflowing: the largest exponent becomes e^0 = 1.
        a = np.subtract(z, z.max(axis=1, keepdims=True), out=out)
        np.exp(a, out=a)
        a /= a.sum(axis=1, keepdims=True)
        return a

    def backward(self, a, d_loss__d_a, out=None):
        # Per sample, ∂a_i/∂z_j = a_i(δ_ij − a_j), so
        # d_loss__d_z_j = Σ_i g_i a_i (δ_ij − a_j) = a_j (g_j − Σ_i g_i a_i).
        g_dot_a = np.sum(d_loss__d_a * a, axis=1, keepdims=True)  # (n, 1)
        d_loss__d_z = np.subtract(d_loss__d_a, g_dot_a, out=out)
        d_loss__d_z *= a
        return d_loss__d_z


def _copy(x, out):
    if out is None:
        return x.copy()
    if out is not x:
        np.copyto(out, x)
    return out


ACTIVATIONS = {
    cls.name: cls for cls in (Sigmoid, Tanh, ReLU, Identity, Softmax)
}
_ALIASES = {"linear": "identity", "none": "identity", "logistic": "sigmoid"}


_SUPPORTS_OUT: dict[type, tuple[bool, bool]] = {}


def supports_out(activation: Activation) -> tuple[bool, bool]:
    """Whether ``activation.forward`` and ``activation.backward`` accept ``out=``.

    The built-ins do; a custom subclass written against the two-argument
    API may not.  Looked up once per class.
    """
    cls = type(activation)
    flags = _SUPPORTS_OUT.get(cls)
    if flags is None:
        flags = _SUPPORTS_OUT[cls] = (_takes_out(cls.forward), _takes_out(cls.backward))
    return flags


def _takes_out(method) -> bool:
    try:
        return "out" in inspect.signature(method).parameters
    except (TypeError, ValueError):  # a callable without an inspectable signature
        return False


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
