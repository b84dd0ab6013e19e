"""Plain vectorised NumPy: the issue's middle yardstick, written the way a tutorial would.

The same recipes as digitnet, batch-first and in float32, one matrix product
per layer and mini-batch, but none of digitnet's engineering: every step
gathers its rows with fancy indexing, allocates its arrays, computes the loss
(as a training loop that prints it would) and updates each weight and bias
array separately.  It answers "how much of digitnet's speed is just NumPy?".
Nothing in the package imports it.
"""

from __future__ import annotations

import numpy as np


def _sigmoid(z):
    return 0.5 * np.tanh(0.5 * z) + 0.5          # σ(z), without exp overflow


def _softmax(z):
    e = np.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


class PlainMLP:
    """``sizes`` units per layer; weights ``(n_out, n_in)`` and biases ``(n_out,)`` from ``params``
    (digitnet's flat layout: each layer's W row by row, then its b)."""

    def __init__(self, sizes, hidden, output, params):
        self.hidden, self.output = hidden, output
        self.W, self.b = [], []
        offset = 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            self.W.append(params[offset:offset + n_in * n_out].reshape(n_out, n_in).copy())
            offset += n_in * n_out
            self.b.append(params[offset:offset + n_out].copy())
            offset += n_out

    def forward(self, X):
        acts = [X]
        for l, (W, b) in enumerate(zip(self.W, self.b)):
            z = acts[-1] @ W.T + b
            last = l == len(self.W) - 1
            kind = self.output if last else self.hidden
            acts.append(_sigmoid(z) if kind == "sigmoid" else _softmax(z) if kind == "softmax"
                        else np.maximum(z, 0))
        return acts

    def gradients(self, X, Y):
        """Loss and ``(dW, db)`` per layer for a batch; quadratic with sigmoid, or softmax-CE."""
        acts = self.forward(X)
        a, n = acts[-1], len(X)
        if self.output == "sigmoid":                       # ½‖a − y‖², through σ' = a(1 − a)
            loss = 0.5 * np.sum((a - Y) ** 2) / n
            delta = (a - Y) * a * (1 - a) / n
        else:                                              # cross-entropy on softmax: a − y
            loss = -np.sum(Y * np.log(np.maximum(a, 1e-7))) / n
            delta = (a - Y) / n
        grads = []
        for l in range(len(self.W) - 1, -1, -1):
            grads.append((delta.T @ acts[l], delta.sum(axis=0)))
            if l > 0:
                a_prev = acts[l]
                d = delta @ self.W[l]
                delta = d * a_prev * (1 - a_prev) if self.hidden == "sigmoid" else d * (a_prev > 0)
        return loss, grads[::-1]


def train(net, X, y, n_outputs, optimizer, lr, batch_size, epochs, seed=0):
    """Mini-batch training; returns the wall and the CPU seconds of every epoch."""
    import time

    Y = np.eye(n_outputs, dtype=X.dtype)[y]
    rng = np.random.default_rng(seed)
    params = [p for pair in zip(net.W, net.b) for p in pair]
    v = [np.zeros_like(p) for p in params]            # momentum, or Adam's first moment
    s = [np.zeros_like(p) for p in params]            # Adam's second moment
    t, seconds, cpu = 0, [], []
    for _ in range(epochs):
        started, started_cpu = time.perf_counter(), time.process_time()
        order = rng.permutation(len(X))
        for start in range(0, len(X), batch_size):
            rows = order[start:start + batch_size]
            loss, grads = net.gradients(X[rows], Y[rows])
            t += 1
            for i, g in enumerate(g for pair in grads for g in pair):
                if optimizer == "sgd":
                    params[i] -= lr * g
                elif optimizer == "momentum":
                    v[i] = 0.9 * v[i] - lr * g
                    params[i] += v[i]
                else:                                      # Adam, β 0.9 / 0.999, ε 1e-8
                    v[i] = 0.9 * v[i] + 0.1 * g
                    s[i] = 0.999 * s[i] + 0.001 * g * g
                    m_hat, s_hat = v[i] / (1 - 0.9 ** t), s[i] / (1 - 0.999 ** t)
                    params[i] -= lr * m_hat / (np.sqrt(s_hat) + 1e-8)
        seconds.append(time.perf_counter() - started)
        cpu.append(time.process_time() - started_cpu)
        if not np.isfinite(loss):
            raise FloatingPointError("diverged")
    return seconds, cpu
