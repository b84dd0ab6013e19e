"""The multilayer perceptron: dense layers, forward pass, backpropagation.

Notation (the seed material's, batch-first):

* ``X`` is ``(n_samples, n_features)``; one row per sample.
* Layer ``l`` has weights ``W[l]`` of shape ``(n_out, n_in)`` and biases
  ``b[l]`` of shape ``(n_out,)``.  It computes, for the whole batch at once,
  ``z = a_prev · Wᵀ + b`` (``(n, n_in) @ (n_in, n_out) -> (n, n_out)``) and
  ``a = f(z)``.
* Backpropagation starts from ``δ_L = ∂loss/∂z_L`` (the loss object's
  ``delta``) and walks back with the chain rule:

  - ``∂loss/∂W[l] = δ_lᵀ · a_{l−1}``   ``(n_out, n) @ (n, n_in) -> (n_out, n_in)``
  - ``∂loss/∂b[l] = Σ_samples δ_l``     ``(n_out,)``
  - ``∂loss/∂a_{l−1} = δ_l · W[l]``     ``(n, n_out) @ (n_out, n_in) -> (n, n_in)``
  - ``δ_{l−1} = f'_{l−1} applied to ∂loss/∂a_{l−1}`` (the activation's ``backward``)

Every weight and bias lives in one flat buffer ``params`` (and every
gradient in ``grads``), with ``weights[l]``/``biases[l]`` as reshaped views.
That lets an optimiser update the whole network with a few array operations
and makes saving, copying and gradient checking trivial.
"""

from __future__ import annotations

import numpy as np

from .activations import Activation, get_activation, supports_out
from .errors import DataError, DigitnetError
from .initializers import default_initializer, initialize, resolve_initializer
from .losses import Loss, get_loss

_DTYPES = {"float32": np.float32, "float64": np.float64}


def _as_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _DTYPES:
        raise DigitnetError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


class Network:
    """A fully connected feed-forward network.

    Parameters
    ----------
    sizes : sequence of int
        Units per layer, input first: ``[784, 30, 10]`` is 784 inputs, one
        hidden layer of 30 units and 10 outputs.
    activation : str
        Activation of every hidden layer: ``"relu"``, ``"sigmoid"``, ``"tanh"``,
        ``"identity"`` or ``"softmax"``.
    output : str
        Activation of the output layer (default ``"softmax"``).
    loss : str or Loss
        ``"cross_entropy"`` (``"ce"``), ``"binary_cross_entropy"`` (``"bce"``),
        ``"quadratic"`` (Nielsen's ½‖a−y‖²) or ``"mse"`` (Raschka's mean).
    init : str or list of str, optional
        Initialiser for all layers or one per layer (see
        :mod:`digitnet.initializers`); by default He for ReLU layers and
        Glorot otherwise.
    activations : list of str, optional
        One activation per layer (``len(sizes) - 1`` of them); overrides
        ``activation`` and ``output``.
    dtype : float32 (default) or float64
    seed : int, optional
        Seeds the initial weights and, unless ``fit`` is given its own seed,
        the shuffling.  The same seed gives the same network bit for bit.
    """

    def __init__(self, sizes, activation="relu", output="softmax", loss="cross_entropy",
                 init=None, *, activations=None, dtype=np.float32, seed=None):
        self.sizes = self._check_sizes(sizes)
        n_layers = len(self.sizes) - 1
        if activations is None:
            activations = [activation] * (n_layers - 1) + [output]
        if not isinstance(activations, (list, tuple)) or len(activations) != n_layers:
            raise DigitnetError(
                f"activations must list one name per layer ({n_layers}), got {activations!r}")
        self.activations: list[Activation] = [get_activation(a) for a in activations]
        self.loss: Loss = get_loss(loss)
        self.dtype = _as_dtype(dtype)
        self._check_output_and_loss()

        if init is None or isinstance(init, str):
            init = [init] * n_layers
        if not isinstance(init, (list, tuple)) or len(init) != n_layers:
            raise DigitnetError(f"init must be one name or one per layer ({n_layers}), got {init!r}")
        self.init = [resolve_initializer(name) if name is not None
                     else default_initializer(act.name)
                     for name, act in zip(init, self.activations)]
        if seed is not None:
            try:
                seed = int(seed)
            except (TypeError, ValueError):
                raise DigitnetError(f"seed must be an integer, got {seed!r}") from None
            if seed < 0:
                raise DigitnetError(f"seed must be ≥ 0, got {seed}")
        self.seed = seed

        #: free-form description kept with saved models (recipe, preprocessing, history)
        self.metadata: dict = {}
        self._allocate()
        rng = np.random.default_rng(seed)
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            W, b = initialize(self.init[l], n_in, n_out, rng, self.dtype)
            self.weights[l][...] = W
            self.biases[l][...] = b

    # -- construction helpers ---------------------------------------------------
    @staticmethod
    def _check_sizes(sizes):
        try:
            if isinstance(sizes, str):  # "78" would otherwise become [7, 8]
                raise TypeError
            ints = [int(s) for s in sizes]
            # int() truncates silently: 2.5 units must be an error, not 2
            if any(isinstance(s, (float, np.floating)) and s != i for s, i in zip(sizes, ints)):
                raise ValueError
            sizes = ints
        except (TypeError, ValueError):
            raise DigitnetError(f"sizes must be a list of integers like [784, 30, 10], got {sizes!r}") from None
        if len(sizes) < 2:
            raise DigitnetError(
                f"a network needs at least 2 layer sizes (inputs and outputs), got {sizes!r}")
        if min(sizes) < 1:
            raise DigitnetError(f"every layer needs at least one unit, got {sizes!r}")
        return sizes

    def _check_output_and_loss(self):
        out = self.activations[-1]
        if out.name == "softmax" and self.sizes[-1] == 1:
            raise DigitnetError("softmax over a single output is always 1: use sigmoid for one output")
        need = self.loss.needs_outputs_in
        if need is not None and not (need[0] <= out.output_range[0] and out.output_range[1] <= need[1]):
            raise DigitnetError(
                f"the {self.loss.name} loss needs outputs between 0 and 1, but the output layer is "
                f"{out.name}: use a sigmoid or softmax output, or a quadratic/mse loss")

    def _allocate(self):
        """One flat buffer for all parameters, one for all gradients; per-layer views."""
        shapes = [(n_out, n_in) for n_in, n_out in zip(self.sizes[:-1], self.sizes[1:])]
        total = sum(o * i + o for o, i in shapes)
        self.params = np.zeros(total, dtype=self.dtype)
        self.grads = np.zeros(total, dtype=self.dtype)
        self.weights, self.biases = [], []
        self.grad_weights, self.grad_biases = [], []
        offset = 0
        for n_out, n_in in shapes:
            for flat, W_list, b_list in ((self.params, self.weights, self.biases),
                                         (self.grads, self.grad_weights, self.grad_biases)):
                W_list.append(flat[offset:offset + n_out * n_in].reshape(n_out, n_in))
                b_list.append(flat[offset + n_out * n_in:offset + n_out * n_in + n_out])
            offset += n_out * n_in + n_out

    # -- description ------------------------------------------------------------
    @property
    def n_layers(self) -> int:
        return len(self.sizes) - 1

    @property
    def n_params(self) -> int:
        return int(self.params.size)

    def summary(self) -> str:
        """A table of the layers and the parameter count."""
        rows = [f"Network {' → '.join(map(str, self.sizes))}  "
                f"(loss: {self.loss.name}, {self.dtype.name})",
                f"{'layer':>5}  {'shape':>13}  {'activation':<10} {'init':<13} {'parameters':>10}"]
        for l, (W, act) in enumerate(zip(self.weights, self.activations), start=1):
            n_out, n_in = W.shape
            rows.append(f"{l:>5}  {f'{n_in} → {n_out}':>13}  {act.name:<10} {self.init[l - 1]:<13} "
                        f"{W.size + n_out:>10,}")
        rows.append(f"total parameters: {self.n_params:,}")
        return "\n".join(rows)

    def __repr__(self) -> str:
        acts = ", ".join(a.name for a in self.activations)
        return f"Network({self.sizes}, activations=[{acts}], loss={self.loss.name!r}, params={self.n_params:,})"

    def get_config(self) -> dict:
        """Everything but the numbers: enough to rebuild the architecture."""
        return {"sizes": list(self.sizes),
                "activations": [a.name for a in self.activations],
                "loss": self.loss.name,
                "init": list(self.init),
                "dtype": self.dtype.name,
                "seed": self.seed}

    @classmethod
    def from_config(cls, config: dict, params: np.ndarray | None = None) -> "Network":
        net = cls(config["sizes"], activations=config["activations"], loss=config["loss"],
                  init=config.get("init"), dtype=config.get("dtype", "float32"),
                  seed=config.get("seed"))
        if params is not None:
            params = np.asarray(params)
            if params.shape != net.params.shape:
                raise DigitnetError(
                    f"expected {net.params.size} parameters for layers {net.sizes}, got shape {params.shape}")
            net.params[...] = params
        return net

    def copy(self, dtype=None) -> "Network":
        """An independent copy, optionally converted to another dtype."""
        config = self.get_config()
        # The objects themselves, not their names: a custom Activation/Loss
        # (e.g. one under test in check_gradients) must survive the copy.
        config["activations"], config["loss"] = list(self.activations), self.loss
        if dtype is not None:
            config["dtype"] = _as_dtype(dtype).name
        return Network.from_config(config, self.params)

    # -- input checking ---------------------------------------------------------
    def check_inputs(self, X, name="X") -> np.ndarray:
        """Return ``X`` as a C-contiguous ``(n_samples, sizes[0])`` array of the network's dtype."""
        X = np.asarray(X)
        if X.dtype == object or not (np.issubdtype(X.dtype, np.number) or X.dtype == bool):
            raise DataError(f"{name} must be numeric, got an array of {X.dtype}")
        if X.ndim == 1 and X.size == self.sizes[0]:
            X = X.reshape(1, -1)
        elif X.ndim > 2 and int(np.prod(X.shape[1:])) == self.sizes[0]:
            X = X.reshape(len(X), -1)  # e.g. (n, 28, 28) images
        if X.ndim != 2 or X.shape[1] != self.sizes[0]:
            raise DataError(
                f"{name} has shape {X.shape}, but the network expects (n_samples, {self.sizes[0]})")
        if len(X) == 0:
            raise DataError(f"{name} is empty: there are no samples")
        X = np.ascontiguousarray(X, dtype=self.dtype)
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

    def check_targets(self, y, n_samples: int, name="y"):
        """Turn labels or target rows into ``(Y, labels)``.

        ``y`` may be integer class labels ``(n,)`` (one-hot encoded here),
        target rows ``(n, n_outputs)``, or for a single output ``(n,)``
        values.  Returns ``Y`` ``(n, n_outputs)`` of the network's dtype and
        ``labels`` ``(n,)`` (the class index per sample, used for accuracy).
        """
        y = np.asarray(y)
        k = self.sizes[-1]
        if y.dtype == object or not (np.issubdtype(y.dtype, np.number) or y.dtype == bool):
            raise DataError(f"{name} must be numeric labels, got an array of {y.dtype}")
        if len(y) != n_samples:
            raise DataError(f"X has {n_samples} samples but {name} has {len(y)}: they must match")
        if not np.isfinite(y).all():
            raise DataError(f"{name} contains NaN or infinite values")
        if k == 1:
            Y = y.reshape(n_samples, 1).astype(self.dtype) if y.size == n_samples else None
            if Y is None:
                raise DataError(f"{name} has shape {y.shape}, but the network has one output")
            self._check_probability_targets(Y, name)
            return Y, (Y[:, 0] > 0.5).astype(np.int64)
        if y.ndim == 1:
            labels = y.astype(np.int64)
            if not np.array_equal(labels, y):
                raise DataError(f"{name} must hold whole-number class labels 0..{k - 1}")
            bad = np.flatnonzero((labels < 0) | (labels >= k))
            if bad.size:
                raise DataError(
                    f"{name} contains label {labels[bad[0]]} (row {bad[0]}), but the network has "
                    f"{k} outputs: labels must be 0..{k - 1}")
            Y = np.zeros((n_samples, k), dtype=self.dtype)
            Y[np.arange(n_samples), labels] = 1
            return Y, labels
        if y.ndim == 2 and y.shape[1] == k:
            Y = np.ascontiguousarray(y, dtype=self.dtype)
            self._check_probability_targets(Y, name)
            return Y, Y.argmax(axis=1)
        raise DataError(f"{name} has shape {y.shape}: expected labels (n,) or targets (n, {k})")

    def _check_probability_targets(self, Y, name):
        # Cross-entropies compare probabilities: a target of 5 has no meaning there.
        if self.loss.needs_outputs_in is not None and (Y.min() < 0 or Y.max() > 1):
            raise DataError(f"{name} holds targets outside 0..1, but the {self.loss.name} loss "
                            "compares probabilities: pass 0/1 (or one-hot) targets")

    # -- the forward pass -------------------------------------------------------
    def _forward(self, X, buffers: "StepBuffers | None" = None):
        """Activations of every layer ``[X, a_1, …, a_L]`` and the output's ``z_L``.

        With ``buffers`` (the training step's preallocated arrays) every
        ``z_l`` is computed into ``buffers.z[l]``, and a hidden layer's
        activation overwrites its ``z_l`` in place: backpropagation needs only
        ``a_l`` there (the derivatives are written in terms of the outputs).
        The output layer keeps ``z_L``, which the fused losses need, and
        writes ``a_L`` into ``buffers.a_out``.
        """
        a = X
        activations = [X]
        z = None
        last = self.n_layers - 1
        for l, (W, b, f) in enumerate(zip(self.weights, self.biases, self.activations)):
            z = np.matmul(a, W.T, out=None if buffers is None else buffers.z[l])  # (n, n_in) @ (n_in, n_out)
            z += b               # bias broadcast over the batch
            if buffers is None or not buffers.forward_in_place[l]:
                a = f.forward(z)
            elif l < last:
                a = f.forward(z, out=z)
            else:
                a = f.forward(z, out=buffers.a_out)
            activations.append(a)
        return activations, z

    def forward(self, X) -> list[np.ndarray]:
        """Every layer's activations for a batch: ``[X, a_1, …, a_L]``, each ``(n, sizes[l])``."""
        activations, _ = self._forward(self.check_inputs(X))
        return activations

    def predict_proba(self, X, batch_size: int = 8192) -> np.ndarray:
        """Output activations ``(n, n_outputs)`` (class probabilities for softmax)."""
        X = self.check_inputs(X)
        out = np.empty((len(X), self.sizes[-1]), dtype=self.dtype)
        in_place = [supports_out(f)[0] for f in self.activations]
        last = self.n_layers - 1
        for start in range(0, len(X), batch_size):
            stop = start + batch_size
            a = X[start:stop]
            for l, (W, b, f) in enumerate(zip(self.weights, self.biases, self.activations)):
                # (n, n_in) @ (n_in, n_out) -> (n, n_out); hidden layers column-major, as in training
                z = np.empty((len(a), W.shape[0]), self.dtype, order="C" if l == last else "F")
                np.matmul(a, W.T, out=z)
                z += b
                a = f.forward(z, out=z) if in_place[l] else f.forward(z)  # z is not needed again
            out[start:stop] = a
        return out

    def predict(self, X, batch_size: int = 8192) -> np.ndarray:
        """Predicted class per sample ``(n,)`` int64 (argmax; threshold 0.5 for one output)."""
        return self._labels_from_outputs(self.predict_proba(X, batch_size))

    def _labels_from_outputs(self, a):
        if a.shape[1] == 1:
            return (a[:, 0] > 0.5).astype(np.int64)
        return a.argmax(axis=1)

    def _loss_value(self, a, Y, z):
        fused = self.activations[-1].name == self.loss.fused_with
        return self.loss.value(a, Y, z if fused else None)

    def evaluate(self, X, y, batch_size: int = 8192) -> tuple[float, float]:
        """Mean loss and accuracy (fraction correct) on a data set."""
        X = self.check_inputs(X)
        Y, labels = self.check_targets(y, len(X))
        total, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            stop = start + batch_size
            acts, z = self._forward(X[start:stop])
            total += self._loss_value(acts[-1], Y[start:stop], z) * len(acts[-1])
            correct += int(np.sum(self._labels_from_outputs(acts[-1]) == labels[start:stop]))
        return total / len(X), correct / len(X)

    # -- backpropagation --------------------------------------------------------
    def _backprop(self, X, Y, l2_coef: float = 0.0, buffers: "StepBuffers | None" = None,
                  scale: float = 1.0):
        """Forward and backward pass; fills ``self.grads`` with ``scale`` × the gradient.

        Returns ``(loss, z_out)``: the mean data loss of the batch (without
        the L2 term) and the output layer's pre-activation ``z_L``
        ``(n, n_outputs)``.  ``l2_coef`` is λ/n_train: the L2 penalty
        (λ/2n)·Σ‖W‖² adds (λ/n)·W to each weight gradient.

        The training loop passes ``buffers`` (from :meth:`_step_buffers`, for
        ``len(X)`` rows): the step then writes into preallocated arrays
        instead of allocating new ones, ``z_out`` is overwritten by the next
        step, and the loss is not computed (``None``): the loop works the
        epoch's loss out once per epoch from every step's ``z_out``.  It also
        passes the optimiser's ``scale`` (η for SGD): every gradient is linear
        in δ_L, so scaling that one ``(n, n_outputs)`` array scales them all,
        and the optimiser need not multiply the whole parameter vector by η.
        """
        activations, z_out = self._forward(X, buffers)
        a_out = activations[-1]
        if buffers is None:
            loss = self._loss_value(a_out, Y, z_out)
            delta = self.loss.delta(self.activations[-1], a_out, Y)   # d_loss__d_z_L, (n, n_L)
            if scale != 1.0:
                delta *= scale
        else:
            loss = None
            delta = self.loss.scaled_delta(self.activations[-1], a_out, Y, scale, buffers.delta_out)
        for l in range(self.n_layers - 1, -1, -1):
            a_prev = activations[l]
            # d_loss__d_W = δᵀ · a_prev: (n_out, n) @ (n, n_in) -> (n_out, n_in)
            np.matmul(delta.T, a_prev, out=self.grad_weights[l])
            # d_loss__d_b = Σ over samples of δ, (n_out,)
            if buffers is None:
                np.add.reduce(delta, axis=0, out=self.grad_biases[l])
            else:  # the same sum as 1ᵀ·δ, (n,) @ (n, n_out): BLAS does it 1.1–4× faster
                np.matmul(buffers.ones, delta, out=self.grad_biases[l])
            if l > 0:  # the input layer's own gradient is never needed
                f = self.activations[l - 1]
                # (n, n_out) @ (n_out, n_in) -> (n, n_in)
                if buffers is None:
                    delta = f.backward(a_prev, delta @ self.weights[l])
                else:
                    d_loss__d_a_prev = np.matmul(delta, self.weights[l], out=buffers.d_a[l - 1])
                    if buffers.backward_in_place[l - 1]:
                        delta = f.backward(a_prev, d_loss__d_a_prev, out=d_loss__d_a_prev)
                    else:
                        delta = f.backward(a_prev, d_loss__d_a_prev)
        if l2_coef:
            for l, (W, gW) in enumerate(zip(self.weights, self.grad_weights)):
                # ∂/∂W of (λ/2n)·‖W‖² is (λ/n)·W (times the step's scale, like the rest)
                gW += np.multiply(W, l2_coef * scale, out=None if buffers is None else buffers.decay[l])
        return loss, z_out

    def _step_buffers(self, n: int) -> "StepBuffers":
        """Preallocated arrays for training steps on batches of ``n`` rows (see :class:`StepBuffers`)."""
        return StepBuffers(self, n)

    def l2_penalty(self, l2_coef: float) -> float:
        """(λ/2n)·Σ‖W‖² for ``l2_coef`` = λ/n (biases are not decayed)."""
        return 0.5 * l2_coef * float(sum(np.sum(W * W, dtype=np.float64) for W in self.weights))

    def backward(self, X, y, l2: float = 0.0, n_train: int | None = None):
        """Loss and every gradient for a batch.

        Returns ``(loss, gradients)`` where ``gradients`` is a list with one
        ``(dW (n_out, n_in), db (n_out,))`` pair per layer (copies).  With
        ``l2`` = λ > 0 the loss includes Nielsen's (λ/2n)·Σ‖W‖², ``n`` being
        ``n_train`` (default: the batch size).
        """
        X = self.check_inputs(X)
        Y, _ = self.check_targets(y, len(X))
        l2_coef = float(l2) / (n_train or len(X))
        loss, _ = self._backprop(X, Y, l2_coef)
        loss += self.l2_penalty(l2_coef)
        return loss, [(gW.copy(), gb.copy()) for gW, gb in zip(self.grad_weights, self.grad_biases)]

    def loss_value(self, X, y, l2: float = 0.0, n_train: int | None = None) -> float:
        """The mean loss (plus the L2 penalty, if asked) without computing gradients."""
        X = self.check_inputs(X)
        Y, _ = self.check_targets(y, len(X))
        activations, z = self._forward(X)
        return self._loss_value(activations[-1], Y, z) + self.l2_penalty(float(l2) / (n_train or len(X)))

    # -- training ---------------------------------------------------------------
    def fit(self, X, y, **kwargs):
        """Train with gradient descent; see :func:`digitnet.training.fit` for the options."""
        from .training import fit

        return fit(self, X, y, **kwargs)


class StepBuffers:
    """Every array a training step writes, allocated once per batch size.

    Reusing them saves each step a few allocations per layer (and, for
    large batches, the page faults of fresh memory).  For layer ``l``
    (0-based) with ``k = sizes[l + 1]`` units and a batch of ``n`` rows:

    * ``z[l]`` ``(n, k)``: ``z_l``; in a hidden layer the activation then
      overwrites it with ``a_l`` (when the activation accepts ``out=``);
      the output layer's ``z_L`` stays for the loss;
    * ``d_a[l]`` ``(n, k)``, hidden layers only: ``∂loss/∂a_l``, which the
      activation's derivative then turns into ``δ_l = ∂loss/∂z_l`` in place;
    * ``decay[l]`` ``(k, sizes[l])``: the L2 term ``(λ/n)·W_l`` (``np.empty``
      memory is only touched, and so only resident, when L2 is used);
    * ``a_out`` and ``delta_out`` ``(n, n_outputs)``: the output layer's
      activations and ``δ_L``;
    * ``ones`` ``(n,)``: the bias gradient is ``onesᵀ·δ``.

    Not thread-safe: one set per training loop.
    """

    def __init__(self, network: Network, n: int):
        dtype, units = network.dtype, network.sizes[1:]
        self.n = n
        # Every (n, k) array is column-major (order="F"), the memory layout
        # only, not the arithmetic: BLAS writes a·Wᵀ about 10% faster into
        # them for batch-128 shapes (measured with OpenBLAS), and the output
        # layer's per-sample reductions over a few units (softmax's max and
        # sum) run along whole columns, 2.4× faster for (128, 10).
        self.z = [np.empty((n, k), dtype, order="F") for k in units]
        self.d_a = [np.empty((n, k), dtype, order="F") for k in units[:-1]]
        self.decay = [np.empty_like(W) for W in network.weights]
        self.a_out = np.empty((n, units[-1]), dtype, order="F")
        self.delta_out = np.empty((n, units[-1]), dtype, order="F")
        self.ones = np.ones(n, dtype)
        flags = [supports_out(f) for f in network.activations]
        self.forward_in_place = [fwd for fwd, _ in flags]
        self.backward_in_place = [bwd for _, bwd in flags]
