"""The seed material's algorithm, per sample: the yardstick for the ``nielsen`` recipe.

This is the algorithm of Nielsen's ``network.py`` (the seed's own code),
written afresh for the benchmark so the ratio "digitnet vs the seed" can be
measured on the same machine, data and run:

* every sample is a column vector ``x`` of shape ``(784, 1)``; weights are
  ``(n_out, n_in)`` and biases ``(n_out, 1)`` columns, drawn from N(0, 1)
  in float64 (``np.random.randn`` in the original);
* stochastic gradient descent visits the shuffled training set in
  mini-batches, and **for each sample of a mini-batch** runs one forward
  pass and one backward pass in a Python loop, adding the per-sample
  gradients up;
* the update is ``w ← w − (η/m)·Σ∇w`` for a mini-batch of ``m`` samples
  (sigmoid everywhere, quadratic cost ½‖a − y‖², so ``δ_L = (a − y)·σ'(z)``).

It is deliberately *not* vectorised over the batch: that Python loop is what
digitnet's batch-first matrices replace.  Nothing in the package imports it.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def _sigmoid_prime(z):
    s = _sigmoid(z)
    return s * (1.0 - s)


class SeedNetwork:
    """A sigmoid network trained one sample at a time.

    ``sizes`` lists units per layer, input first (``[784, 30, 10]``).
    """

    def __init__(self, sizes, seed=0):
        rng = np.random.default_rng(seed)
        self.sizes = list(sizes)
        self.biases = [rng.standard_normal((n, 1)) for n in self.sizes[1:]]
        self.weights = [rng.standard_normal((n_out, n_in))
                        for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:])]

    def feedforward(self, a):
        """Output column ``(n_outputs, 1)`` for one input column ``(n_inputs, 1)``."""
        for b, w in zip(self.biases, self.weights):
            a = _sigmoid(w @ a + b)
        return a

    def backprop(self, x, y):
        """Gradients ``(∇b, ∇w)`` of ½‖a − y‖² for ONE sample (columns ``x``, ``y``)."""
        grad_b = [np.zeros_like(b) for b in self.biases]
        grad_w = [np.zeros_like(w) for w in self.weights]
        activation, activations, zs = x, [x], []
        for b, w in zip(self.biases, self.weights):
            z = w @ activation + b
            zs.append(z)
            activation = _sigmoid(z)
            activations.append(activation)
        delta = (activations[-1] - y) * _sigmoid_prime(zs[-1])
        grad_b[-1] = delta
        grad_w[-1] = delta @ activations[-2].T
        for l in range(2, len(self.sizes)):
            delta = (self.weights[-l + 1].T @ delta) * _sigmoid_prime(zs[-l])
            grad_b[-l] = delta
            grad_w[-l] = delta @ activations[-l - 1].T
        return grad_b, grad_w

    def update_mini_batch(self, batch, eta):
        """One gradient step from a list of ``(x, y)`` column pairs, looping over the samples."""
        sum_b = [np.zeros_like(b) for b in self.biases]
        sum_w = [np.zeros_like(w) for w in self.weights]
        for x, y in batch:
            grad_b, grad_w = self.backprop(x, y)
            sum_b = [s + g for s, g in zip(sum_b, grad_b)]
            sum_w = [s + g for s, g in zip(sum_w, grad_w)]
        scale = eta / len(batch)
        self.weights = [w - scale * s for w, s in zip(self.weights, sum_w)]
        self.biases = [b - scale * s for b, s in zip(self.biases, sum_b)]

    def train_epoch(self, pairs, batch_size, eta, rng):
        """One epoch of SGD over ``pairs`` (a list of ``(x, y)`` columns), shuffled by ``rng``."""
        rng.shuffle(pairs)
        for start in range(0, len(pairs), batch_size):
            self.update_mini_batch(pairs[start:start + batch_size], eta)

    def accuracy(self, X, labels):
        """Fraction of rows of ``X`` ``(n, n_inputs)`` classified as ``labels`` ``(n,)``."""
        correct = sum(int(np.argmax(self.feedforward(x.reshape(-1, 1))) == label)
                      for x, label in zip(X, labels))
        return correct / len(X)


def as_pairs(X, labels, n_outputs=10):
    """The seed's data format: a list of ``(x (n_inputs, 1), one-hot y (n_outputs, 1))`` pairs."""
    pairs = []
    for x, label in zip(X, labels):
        y = np.zeros((n_outputs, 1))
        y[int(label)] = 1.0
        pairs.append((x.reshape(-1, 1), y))
    return pairs
