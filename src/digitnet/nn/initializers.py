"""Weight initialisers: the seed material's own and the modern ones.

Each initialiser is a function ``(n_in, n_out, rng, dtype) -> (W, b)`` with
``W`` of shape ``(n_out, n_in)`` and ``b`` of shape ``(n_out,)``.

=================  ====================================  ===========================
name               weights                               biases
=================  ====================================  ===========================
``normal``         N(0, 1)                               N(0, 1)   (Nielsen, network.py)
``normal_scaled``  N(0, 1/n_in)  (std 1/√n_in)           N(0, 1)   (Nielsen, network2.py)
``normal_0.1``     N(0, 0.1²)    (std 0.1)               0         (Raschka, NeuralNetMLP)
``uniform``        U(−0.5, 0.5)                          U(−0.5, 0.5) (Zhang's notebook)
``glorot``         U(±√(6/(n_in+n_out)))                 0         (Glorot & Bengio 2010)
``he``             N(0, 2/n_in)                          0         (He et al. 2015)
=================  ====================================  ===========================

The default for a layer depends on its activation: He for ReLU, Glorot for
everything else.
"""

from __future__ import annotations

import numpy as np

from ..errors import DigitnetError


def normal(n_in, n_out, rng, dtype):
    return rng.standard_normal((n_out, n_in)), rng.standard_normal(n_out)


def normal_scaled(n_in, n_out, rng, dtype):
    return rng.standard_normal((n_out, n_in)) / np.sqrt(n_in), rng.standard_normal(n_out)


def normal_01(n_in, n_out, rng, dtype):
    return rng.normal(0.0, 0.1, (n_out, n_in)), np.zeros(n_out)


def uniform(n_in, n_out, rng, dtype):
    return rng.uniform(-0.5, 0.5, (n_out, n_in)), rng.uniform(-0.5, 0.5, n_out)


def glorot(n_in, n_out, rng, dtype):
    limit = np.sqrt(6.0 / (n_in + n_out))
    return rng.uniform(-limit, limit, (n_out, n_in)), np.zeros(n_out)


def he(n_in, n_out, rng, dtype):
    return rng.standard_normal((n_out, n_in)) * np.sqrt(2.0 / n_in), np.zeros(n_out)


INITIALIZERS = {
    "normal": normal,
    "normal_scaled": normal_scaled,
    "normal_0.1": normal_01,
    "uniform": uniform,
    "glorot": glorot,
    "he": he,
}
_ALIASES = {
    "nielsen": "normal",
    "nielsen2": "normal_scaled",
    "raschka": "normal_0.1",
    "zhang": "uniform",
    "xavier": "glorot",
    "kaiming": "he",
}


def default_initializer(activation_name: str) -> str:
    return "he" if activation_name == "relu" else "glorot"


def resolve_initializer(name: str) -> str:
    """Return the canonical initialiser name, or raise a clear error."""
    if isinstance(name, str):
        key = name.lower().replace("-", "_")
        key = _ALIASES.get(key, key)
        if key in INITIALIZERS:
            return key
    names = sorted(set(INITIALIZERS) | set(_ALIASES))
    raise DigitnetError(f"unknown initializer {name!r}: choose one of {', '.join(names)}")


def initialize(name: str, n_in: int, n_out: int, rng: np.random.Generator, dtype):
    """Draw ``(W (n_out, n_in), b (n_out,))`` with the named initialiser."""
    W, b = INITIALIZERS[resolve_initializer(name)](n_in, n_out, rng, dtype)
    return W.astype(dtype, copy=False), b.astype(dtype, copy=False)
