"""Check backpropagation against central finite differences, in float64.

For every parameter θ_i the numerical gradient is

    (L(θ + ε·e_i) − L(θ − ε·e_i)) / 2ε,

whose error is O(ε²), against the analytic gradient from
:meth:`Network.backward`.  The default ε = 1e-5 balances that truncation
error against rounding (≈ ε_mach·|L|/ε); the optimum for float64 lies near
ε_mach^(1/3) ≈ 6e-6, and at 1e-6 rounding already dominates, so a correct
gradient through a few saturating layers would read as ~1e-6 wrong.

The error reported per parameter array is

    max_i |analytic_i − numeric_i|  /  max(max_i |analytic_i|, max_i |numeric_i|),

the worst deviation relative to the array's largest gradient.  Dividing each
entry by its own magnitude instead would blow up on entries that are zero up
to rounding (a dead ReLU unit, a saturated sigmoid).  A correct
implementation gives around 1e-9; a wrong one gives 1e-2 or worse.
"""

from __future__ import annotations

import numpy as np


def check_gradients(network, X, y, *, l2: float = 0.0, eps: float = 1e-5,
                    max_checks_per_array: int | None = None, seed: int = 0,
                    masks=None) -> dict[str, float]:
    """Worst relative error per parameter array, as ``{"W1": …, "b1": …, …}``.

    The check runs on a float64 copy of ``network`` (the original is not
    touched).  ``X`` is ``(n, n_inputs)``, ``y`` labels ``(n,)`` or targets
    ``(n, n_outputs)``.  For big networks, ``max_checks_per_array`` checks a
    random (seeded) subset of each array's entries instead of all of them.
    ``masks`` checks a network trained with dropout: fixed masks, one
    ``(n, k)`` array (or ``None``) per hidden layer (see
    :meth:`Network.dropout_masks`), held the same in the analytic gradient
    and in every finite difference, so both are of the one thinned network.
    """
    net = network.copy(dtype=np.float64)
    X = net.check_inputs(X)
    y = np.asarray(y)
    analytic = net.backward(X, y, l2=l2, masks=masks)[1]

    def loss_at():
        return net.loss_value(X, y, l2=l2, n_train=len(X), masks=masks)

    rng = np.random.default_rng(seed)
    report = {}
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        for name, array, grad in ((f"W{l + 1}", W, analytic[l][0]), (f"b{l + 1}", b, analytic[l][1])):
            flat, flat_grad = array.reshape(-1), grad.reshape(-1)
            idx = np.arange(flat.size)
            if max_checks_per_array is not None and flat.size > max_checks_per_array:
                idx = rng.choice(flat.size, max_checks_per_array, replace=False)
            numeric = np.empty(idx.size)
            for j, i in enumerate(idx):
                saved = flat[i]
                flat[i] = saved + eps
                up = loss_at()
                flat[i] = saved - eps
                down = loss_at()
                flat[i] = saved
                numeric[j] = (up - down) / (2 * eps)
            chosen = flat_grad[idx]
            scale = max(np.abs(chosen).max(), np.abs(numeric).max())
            report[name] = 0.0 if scale == 0 else float(np.abs(chosen - numeric).max() / scale)
    return report
