"""The multilayer perceptron: dense layers, the forward pass, backpropagation.

Read it beside Nielsen's chapter 2 (``feedforward``, ``backprop``,
``update_mini_batch`` carry his names) or Raschka's ``NeuralNetMLP``; the
guide (docs/guide.md) ties each equation of the seed texts to its lines.

Notation, batch-first (one row per sample, as in Raschka's code; Nielsen and
Zhang write one *column* per sample, which is the same math transposed):

* ``X`` is ``(n, n_inputs)``; ``a_0 = X``.
* Layer ``l`` (1-based in the math, 0-based in the lists) has weights
  ``W_l`` ``(n_out, n_in)`` and biases ``b_l`` ``(n_out,)``, and computes, for
  the whole batch at once,

      z_l = a_{l−1} · W_lᵀ + b_l      (n, n_in) @ (n_in, n_out) -> (n, n_out)
      a_l = f_l(z_l)

* Backpropagation starts from the output error ``δ_L = ∂C/∂z_L`` (the loss
  object's ``delta``; ``(a_L − y)/n`` for softmax + cross-entropy) and walks
  back with the chain rule (Nielsen's BP1–BP4):

      ∂C/∂W_l     = δ_lᵀ · a_{l−1}           (n_out, n) @ (n, n_in) -> (n_out, n_in)   BP4
      ∂C/∂b_l     = Σ_samples δ_l = 1ᵀ · δ_l  (n,) @ (n, n_out) -> (n_out,)            BP3
      ∂C/∂a_{l−1} = δ_l · W_l                (n, n_out) @ (n_out, n_in) -> (n, n_in)
      δ_{l−1}     = ∂C/∂a_{l−1} ⊙ f′(z_{l−1})   (the activation's ``backward``)        BP2

Every weight and bias lives in one flat array ``params`` (every gradient in
``grads``), with ``weights[l]`` and ``biases[l]`` as reshaped views of it.
An optimiser then updates the whole network with a few array operations, and
saving, copying and gradient checking are one array each.

Every pass writes into work arrays allocated once per batch size (see
:class:`WorkArrays`), so the math below has a single path whether it trains,
predicts or checks gradients.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from ..errors import DigitnetError
from .activations import Activation, get_activation, supports_out
from .initializers import default_initializer, initialize, resolve_initializer
from .inputs import as_inputs, as_targets
from .losses import Loss, get_loss

_DTYPES = {"float32": np.float32, "float64": np.float64}
# Rows per forward pass when predicting or evaluating: large enough for
# efficient matrix products, small enough that the work arrays of a wide
# network stay a few tens of MB.
_ROWS_PER_PASS = 8192
# Work arrays are kept for this many batch sizes (a training run uses two:
# the batch and the epoch's last, shorter one; evaluation two more).
_CACHED_BATCH_SIZES = 6


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
        :mod:`digitnet.nn.initializers`); by default He for ReLU layers and
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
        self.sizes = _check_sizes(sizes)
        self.activations: list[Activation] = self._resolve_activations(activations, activation, output)
        self.loss: Loss = get_loss(loss)
        self.dtype = _as_dtype(dtype)
        self._check_output_and_loss()
        self.init = self._resolve_init(init)
        self.seed = _check_seed(seed)
        #: free-form description kept with saved models (recipe, preprocessing, history)
        self.metadata: dict = {}
        self._allocate()
        rng = np.random.default_rng(seed)
        for l, (n_in, n_out) in enumerate(zip(self.sizes[:-1], self.sizes[1:])):
            W, b = initialize(self.init[l], n_in, n_out, rng, self.dtype)
            self.weights[l][...] = W
            self.biases[l][...] = b

    # =========================================================================
    # The math: the forward pass, backpropagation, one step of gradient descent
    # =========================================================================

    def feedforward(self, X) -> np.ndarray:
        """The network's output ``a_L`` ``(n, n_outputs)`` for inputs ``X`` ``(n, n_inputs)``.

        Class probabilities for a softmax output.  Checks ``X`` first, then
        runs :meth:`_forward` over it ``_ROWS_PER_PASS`` rows at a time.
        This is the one forward pass: ``predict_proba``, ``predict``,
        ``evaluate`` and ``forward`` all come here or to ``_forward``.
        """
        return self._feedforward_checked(self.check_inputs(X), _ROWS_PER_PASS)

    def _forward(self, X: np.ndarray, masks=None) -> list[np.ndarray]:
        """Activations ``[a_0 = X, a_1, …, a_L]`` of a checked batch ``X`` ``(n, n_inputs)``.

        They are views of the work arrays for ``n`` rows, so the next pass
        over as many rows overwrites them; ``work.z[-1]`` keeps the output
        layer's ``z_L``, which the fused losses need.

        ``masks`` (training only, see :meth:`dropout_masks`): one ``(n, k)``
        array or ``None`` per hidden layer.  Layer ``l + 1`` then reads
        ``ã_l = a_l ⊙ m_l`` (written to ``work.dropped[l]``) instead of
        ``a_l``, which stays in the list for backprop's ``f′``.
        """
        work = self._work_arrays(len(X))
        a = X
        activations = [X]
        for l, (W, b, f) in enumerate(zip(self.weights, self.biases, self.activations)):
            z = np.matmul(a, W.T, out=work.z[l])         # (n, n_in) @ (n_in, n_out) -> (n, n_out)
            z += b                                         # the bias, broadcast over the batch
            # a_l = f(z_l).  A hidden layer's a_l overwrites its z_l: backprop
            # needs only a_l (every f′ here is written in terms of f's output).
            a = f.forward(z, out=work.a[l]) if work.forward_in_place[l] else f.forward(z)
            activations.append(a)
            if masks is not None and l < len(masks) and masks[l] is not None:
                a = np.multiply(a, masks[l], out=work.dropped[l])   # dropout: ã_l = a_l ⊙ m_l
        return activations

    def backprop(self, X: np.ndarray, Y: np.ndarray, l2_coef: float = 0.0,
                 scale: float = 1.0, masks=None) -> np.ndarray:
        """Gradient of the batch's loss, written into ``grad_weights`` and ``grad_biases``.

        ``X`` ``(n, n_inputs)`` and ``Y`` ``(n, n_outputs)`` are checked
        arrays of the network's dtype (see :meth:`check_inputs`,
        :meth:`check_targets`).  ``l2_coef`` is λ/n_train: the L2 penalty
        (λ/2n)·Σ‖W‖² adds (λ/n)·W to each weight gradient.  The result is
        ``scale`` × the gradient (see :meth:`update_mini_batch` for why).
        ``masks``: dropout masks, one per hidden layer (see :meth:`dropout_masks`);
        with them the gradient is that of the thinned network they pick.

        Returns the output layer's ``z_L`` ``(n, n_outputs)``, a view of a
        work array that the next pass over ``n`` rows overwrites.
        """
        if Y.shape != (len(X), self.sizes[-1]) or X.dtype != self.dtype or Y.dtype != self.dtype:
            raise DigitnetError(
                f"backprop takes X ({len(X)}, {self.sizes[0]}) and Y ({len(X)}, {self.sizes[-1]}) of "
                f"{self.dtype.name}, got {X.dtype.name} {X.shape} and {Y.dtype.name} {Y.shape}: pass "
                "them through check_inputs and check_targets first (labels become one-hot rows there)")
        activations = self._forward(X, masks)
        work = self._work_arrays(len(X))
        # What each layer read: a_{l−1}, or ã_{l−1} = a_{l−1} ⊙ m_{l−1} under dropout
        inputs = activations if masks is None else [
            X, *(a if m is None else d for a, m, d in zip(activations[1:-1], masks, work.dropped))]
        # BP1, the output error: δ_L = ∂C/∂z_L (times scale), (n, n_outputs)
        delta = self.loss.scaled_delta(self.activations[-1], activations[-1], Y, scale, work.delta_out)
        for l in range(self.n_layers - 1, -1, -1):
            a_prev = activations[l]
            # BP4: ∂C/∂W_l = δ_lᵀ · a_{l−1}     (n_out, n) @ (n, n_in) -> (n_out, n_in)
            #      (ã_{l−1} under dropout: what the layer read)
            np.matmul(delta.T, inputs[l], out=self.grad_weights[l])
            # BP3: ∂C/∂b_l = Σ over samples of δ_l, as 1ᵀ·δ_l   (n,) @ (n, n_out) -> (n_out,)
            np.matmul(work.ones, delta, out=self.grad_biases[l])
            if l > 0:  # the inputs' own gradient is never needed
                # ∂C/∂a_{l−1} = δ_l · W_l        (n, n_out) @ (n_out, n_in) -> (n, n_in)
                d_loss__d_a_prev = np.matmul(delta, self.weights[l], out=work.d_a[l - 1])
                if masks is not None and masks[l - 1] is not None:
                    d_loss__d_a_prev *= masks[l - 1]      # dropout: ∂C/∂a = ∂C/∂ã ⊙ m
                # BP2: δ_{l−1} = ∂C/∂a_{l−1} ⊙ f′(z_{l−1}), in place where f allows it
                f = self.activations[l - 1]
                delta = (f.backward(a_prev, d_loss__d_a_prev, out=d_loss__d_a_prev)
                         if work.backward_in_place[l - 1] else f.backward(a_prev, d_loss__d_a_prev))
        if l2_coef:
            for W, d_W, decay in zip(self.weights, self.grad_weights, work.decay):
                d_W += np.multiply(W, l2_coef * scale, out=decay)   # ∂/∂W of (λ/2n)·‖W‖² = (λ/n)·W
        return work.z[-1]

    def update_mini_batch(self, X: np.ndarray, Y: np.ndarray, optimizer, l2_coef: float = 0.0,
                          masks=None) -> np.ndarray:
        """One step of gradient descent on a mini-batch: backprop, then the optimiser's update.

        For plain SGD this is Nielsen's w → w − (η/m)·Σ∇C_x (the 1/m is in
        the loss's mean).  ``X``, ``Y`` and ``l2_coef`` are as in
        :meth:`backprop`; ``optimizer`` is a :mod:`digitnet.nn.optimizers`
        object; ``masks`` are the step's dropout masks (:meth:`dropout_masks`)
        or ``None``.  Returns ``z_L`` (for the epoch's loss and accuracy).

        Why a ``scale``: backprop is linear in δ_L, so the optimiser's factor
        (η for SGD and momentum, 1 − β₁ for Adam) can be applied to that one
        ``(n, n_outputs)`` array instead of to the whole gradient afterwards,
        which saves one pass over every parameter per step.  Measured in
        interleaved runs on a busy two-core machine (benchmarks/RESULTS.md,
        "η folded into δ_L"): the plain-gradient step was 1–11% slower for
        Nielsen's recipe, and within the noise for [784, 800, 10].  An
        optimiser that overrides only ``update`` gets the plain gradient.
        """
        if optimizer.takes_scaled_gradients():
            z_out = self.backprop(X, Y, l2_coef, scale=optimizer.gradient_scale(), masks=masks)
            optimizer.update_scaled(self.params, self.grads)   # θ ← θ − (η·∇), η·∇ ready-made
        else:
            z_out = self.backprop(X, Y, l2_coef, masks=masks)
            optimizer.update(self.params, self.grads)
        return z_out

    def dropout_masks(self, n: int, rates, rng: np.random.Generator) -> list:
        """Fresh dropout masks for a training step over ``n`` rows (inverted dropout).

        ``rates`` has one drop probability ``p_l`` (0 ≤ p_l < 1) per hidden
        layer.  Each unit of each sample is dropped with probability ``p_l``:

            m_l = [u ≥ p_l] / (1 − p_l),   u uniform in [0, 1), one per entry of (n, k)

        so ``ã_l = a_l ⊙ m_l`` is 0 for dropped units and ``a_l/(1 − p_l)``
        for kept ones, whose expected value is ``a_l`` itself: the trained
        network predicts with no masks and no rescaling.  Returns one
        ``(n, k)`` array per hidden layer (``None`` where ``p_l`` is 0),
        views of the work arrays that the next call overwrites; pass them to
        :meth:`update_mini_batch` or :meth:`backprop`.
        """
        work = self._work_arrays(n)
        masks = []
        for rate, mask in zip(rates, work.masks):
            if rate == 0:
                masks.append(None)
                continue
            rng.random(out=mask, dtype=self.dtype.type)        # u
            np.greater_equal(mask, rate, out=mask)              # [u ≥ p]: 1 keeps the unit, 0 drops it
            mask *= 1.0 / (1.0 - rate)
            masks.append(mask)
        return masks

    # =========================================================================
    # Using the network: predictions, evaluation, gradients for a batch
    # =========================================================================

    def predict_proba(self, X, batch_size: int = _ROWS_PER_PASS) -> np.ndarray:
        """Output activations ``(n, n_outputs)`` (class probabilities for softmax): :meth:`feedforward`."""
        return self._feedforward_checked(self.check_inputs(X), _check_batch_size(batch_size))

    def predict(self, X, batch_size: int = _ROWS_PER_PASS) -> np.ndarray:
        """Predicted class per sample ``(n,)`` int64 (argmax; threshold 0.5 for one output)."""
        return self.labels_from_outputs(self.predict_proba(X, batch_size))

    def forward(self, X) -> list[np.ndarray]:
        """Every layer's activations for a batch: ``[X, a_1, …, a_L]``, each ``(n, sizes[l])`` (copies)."""
        return [np.array(a) for a in self._forward(self.check_inputs(X))]

    def evaluate(self, X, y, batch_size: int = _ROWS_PER_PASS) -> tuple[float, float]:
        """Mean loss and accuracy (fraction correct) on a data set."""
        X = self.check_inputs(X)
        Y, labels = self.check_targets(y, len(X))
        batch_size = _check_batch_size(batch_size)
        total, correct = 0.0, 0
        for start in range(0, len(X), batch_size):
            stop = start + batch_size
            a_out = self._forward(X[start:stop])[-1]
            z_out = self._work_arrays(len(a_out)).z[-1]
            total += self.loss_of_outputs(a_out, Y[start:stop], z_out) * len(a_out)
            correct += int(np.count_nonzero(self.labels_from_outputs(a_out) == labels[start:stop]))
        return total / len(X), correct / len(X)

    def backward(self, X, y, l2: float = 0.0, n_train: int | None = None, masks=None):
        """Loss and every gradient for a batch, from raw inputs and labels.

        Not the seeds' ``backward`` step (Raschka's takes the cached forward
        outputs): this checks ``X`` and ``y``, runs the forward pass and
        :meth:`backprop`, and returns copies.  Returns ``(loss, gradients)`` where ``gradients`` is a list with one
        ``(dW (n_out, n_in), db (n_out,))`` pair per layer (copies).  With
        ``l2`` = λ > 0 the loss includes Nielsen's (λ/2n)·Σ‖W‖², ``n`` being
        ``n_train`` (default: the batch size).  ``masks``: fixed dropout masks,
        one ``(n, k)`` array (or ``None``) per hidden layer, as
        :meth:`dropout_masks` makes them.
        """
        X = self.check_inputs(X)
        Y, _ = self.check_targets(y, len(X))
        l2_coef = float(l2) / (n_train or len(X))
        z_out = self.backprop(X, Y, l2_coef, masks=self._check_masks(masks, len(X)))
        a_out = self.activations[-1].forward(np.array(z_out))
        loss = self.loss_of_outputs(a_out, Y, z_out) + self.l2_penalty(l2_coef)
        return loss, [(gW.copy(), gb.copy()) for gW, gb in zip(self.grad_weights, self.grad_biases)]

    def loss_value(self, X, y, l2: float = 0.0, n_train: int | None = None, masks=None) -> float:
        """The mean loss (plus the L2 penalty, if asked) without computing gradients.

        With ``masks`` (as in :meth:`backward`), the loss of the thinned network they pick.
        """
        X = self.check_inputs(X)
        Y, _ = self.check_targets(y, len(X))
        a_out = self._forward(X, self._check_masks(masks, len(X)))[-1]
        loss = self.loss_of_outputs(a_out, Y, self._work_arrays(len(X)).z[-1])
        return loss + self.l2_penalty(float(l2) / (n_train or len(X)))

    def loss_of_outputs(self, a_out, Y, z_out) -> float:
        """The mean loss of outputs ``a_out`` for targets ``Y`` (both ``(n, n_outputs)``).

        ``z_out`` (the output layer's pre-activation) is used by the losses
        that fuse with the output activation (softmax + cross-entropy,
        sigmoid + binary cross-entropy), which then work in log space.
        """
        fused = self.activations[-1].name == self.loss.fused_with
        return self.loss.value(a_out, Y, z_out if fused else None)

    def labels_from_outputs(self, a_out) -> np.ndarray:
        """The class of each row of outputs ``(n, n_outputs)``: argmax, or ``> 0.5`` for one output."""
        if a_out.shape[1] == 1:
            return (a_out[:, 0] > 0.5).astype(np.int64)
        return a_out.argmax(axis=1)

    def l2_penalty(self, l2_coef: float) -> float:
        """(λ/2n)·Σ‖W‖² for ``l2_coef`` = λ/n (biases are not decayed)."""
        return 0.5 * l2_coef * float(sum(np.sum(W * W, dtype=np.float64) for W in self.weights))

    def fit(self, X, y, **kwargs):
        """Train with gradient descent: a shortcut for :func:`digitnet.train.fit` (see it for the options).

        The loop lives in :mod:`digitnet.train`, outside the math; this is
        the one place the math reaches for it, when called.
        """
        from ..train.loop import fit

        return fit(self, X, y, **kwargs)

    # =========================================================================
    # Input checks (the functions themselves are in digitnet.nn.inputs)
    # =========================================================================

    def check_inputs(self, X, name="X") -> np.ndarray:
        """``X`` as a C-contiguous ``(n_samples, sizes[0])`` array of the network's dtype."""
        return as_inputs(X, self.sizes[0], self.dtype, name)

    def check_targets(self, y, n_samples: int, name="y"):
        """Labels ``(n,)`` or targets ``(n, n_outputs)`` as ``(Y (n, n_outputs), labels (n,))``."""
        return as_targets(y, n_samples, self.sizes[-1], self.dtype, self.loss, name)

    def _check_masks(self, masks, n_samples: int):
        """Dropout masks given by hand: one ``(n, k)`` array or ``None`` per hidden layer, in the network's dtype."""
        if masks is None:
            return None
        shapes = [(n_samples, k) for k in self.sizes[1:-1]]
        if not isinstance(masks, (list, tuple)) or len(masks) != len(shapes):
            raise DigitnetError(f"masks must list one array (or None) per hidden layer ({len(shapes)})")
        checked = []
        for l, (m, shape) in enumerate(zip(masks, shapes)):
            if m is not None:
                m = np.asarray(m, dtype=self.dtype)
                if m.shape != shape:
                    raise DigitnetError(f"the mask of hidden layer {l + 1} must be {shape}, got {m.shape}")
            checked.append(m)
        return checked

    # =========================================================================
    # Construction, description, copies
    # =========================================================================

    def _resolve_activations(self, activations, activation, output) -> list[Activation]:
        n_layers = len(self.sizes) - 1
        if activations is None:
            activations = [activation] * (n_layers - 1) + [output]
        if not isinstance(activations, (list, tuple)) or len(activations) != n_layers:
            raise DigitnetError(
                f"activations must list one name per layer ({n_layers}), got {activations!r}")
        return [get_activation(a) for a in activations]

    def _resolve_init(self, init) -> list[str]:
        n_layers = len(self.sizes) - 1
        if init is None or isinstance(init, str):
            init = [init] * n_layers
        if not isinstance(init, (list, tuple)) or len(init) != n_layers:
            raise DigitnetError(f"init must be one name or one per layer ({n_layers}), got {init!r}")
        return [resolve_initializer(name) if name is not None else default_initializer(act.name)
                for name, act in zip(init, self.activations)]

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
        try:
            self.params = np.zeros(total, dtype=self.dtype)
            self.grads = np.zeros(total, dtype=self.dtype)
        except MemoryError:
            raise DigitnetError(
                f"layers {self.sizes} need {2 * total * self.dtype.itemsize / 2**30:.1f} GiB for their "
                "parameters and gradients, more than this machine can give: use fewer units") from None
        self.weights, self.biases = [], []
        self.grad_weights, self.grad_biases = [], []
        offset = 0
        for n_out, n_in in shapes:
            for flat, W_list, b_list in ((self.params, self.weights, self.biases),
                                         (self.grads, self.grad_weights, self.grad_biases)):
                W_list.append(flat[offset:offset + n_out * n_in].reshape(n_out, n_in))
                b_list.append(flat[offset + n_out * n_in:offset + n_out * n_in + n_out])
            offset += n_out * n_in + n_out
        self._work = threading.local()

    def _work_arrays(self, n: int) -> "WorkArrays":
        """The work arrays for passes over ``n`` rows, allocated on first need.

        One set per thread (a web server may predict from several threads at
        once), for the few batch sizes used last.
        """
        local = self._work
        work = getattr(local, "last", None)
        if work is not None and work.n == n:   # a training step asks twice per step: be quick
            return work
        cache = getattr(local, "by_rows", None)
        if cache is None:
            cache = local.by_rows = OrderedDict()
        work = cache.get(n)
        if work is None:
            work = cache[n] = WorkArrays(self, n)
            if len(cache) > _CACHED_BATCH_SIZES:
                cache.popitem(last=False)
        else:
            cache.move_to_end(n)
        local.last = work
        return work

    def _feedforward_checked(self, X: np.ndarray, rows: int) -> np.ndarray:
        out = np.empty((len(X), self.sizes[-1]), dtype=self.dtype)
        for start in range(0, len(X), rows):
            out[start:start + rows] = self._forward(X[start:start + rows])[-1]
        return out

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_work", None)       # per-thread scratch space, rebuilt on need
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._work = threading.local()

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

    def _repr_html_(self) -> str:
        """The :meth:`summary` as an HTML table: how Jupyter shows a network."""
        from html import escape

        cells = "".join(
            f"<tr><td>{l}</td><td>{W.shape[1]} → {W.shape[0]}</td><td>{escape(act.name)}</td>"
            f"<td>{escape(self.init[l - 1])}</td><td style='text-align:right'>{W.size + W.shape[0]:,}</td></tr>"
            for l, (W, act) in enumerate(zip(self.weights, self.activations), start=1))
        return (f"<table><caption>Network {' → '.join(map(str, self.sizes))} "
                f"(loss: {escape(self.loss.name)}, {self.dtype.name})</caption>"
                "<thead><tr><th>layer</th><th>shape</th><th>activation</th><th>init</th>"
                f"<th>parameters</th></tr></thead><tbody>{cells}</tbody>"
                f"<tfoot><tr><td colspan='4'>total</td><td style='text-align:right'>{self.n_params:,}"
                "</td></tr></tfoot></table>")

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


class WorkArrays:
    """Every array a pass over ``n`` rows writes, allocated once and reused.

    Reusing them saves each step a few allocations per layer (and, for
    large batches, the page faults of fresh memory).  For layer ``l``
    (0-based) with ``k = sizes[l + 1]`` units:

    * ``z[l]`` ``(n, k)``: ``z_l``, until the activation runs: for a hidden
      layer it then holds ``a_l`` (unlike Nielsen's ``zs`` list, the ``z``
      of a hidden layer is not kept);
    * ``a[l]``: where ``a_l = f(z_l)`` is written: ``z[l]`` itself for a
      hidden layer (its ``z_l`` is not needed once ``a_l`` exists), a
      separate ``(n, k)`` array for the output layer, whose ``z_L`` the
      fused losses need;
    * ``d_a[l]`` ``(n, k)``, hidden layers only: ``∂C/∂a_l``, which the
      activation's derivative then turns into ``δ_l = ∂C/∂z_l`` in place;
    * ``masks[l]`` and ``dropped[l]`` ``(n, k)``, hidden layers only, used
      by dropout: the layer's mask ``m_l`` and ``ã_l = a_l ⊙ m_l``;
    * ``delta_out`` ``(n, n_outputs)``: ``δ_L``;
    * ``decay[l]`` ``(k, sizes[l])``: the L2 term ``(λ/n)·W_l``;
    * ``ones`` ``(n,)``: the bias gradient is ``onesᵀ·δ``.

    ``np.empty`` memory is only resident once written, so the backward
    arrays cost nothing while a network only predicts.  Not thread-safe:
    the network keeps one set per thread.
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
        self.a = self.z[:-1] + [np.empty((n, units[-1]), dtype, order="F")]
        self.d_a = [np.empty((n, k), dtype, order="F") for k in units[:-1]]
        # Dropout, hidden layers only: the masks m_l and the dropped ã_l = a_l ⊙ m_l
        self.masks = [np.empty((n, k), dtype, order="F") for k in units[:-1]]
        self.dropped = [np.empty((n, k), dtype, order="F") for k in units[:-1]]
        self.delta_out = np.empty((n, units[-1]), dtype, order="F")
        self.decay = [np.empty_like(W) for W in network.weights]
        self.ones = np.ones(n, dtype)
        flags = [supports_out(f) for f in network.activations]
        self.forward_in_place = [fwd for fwd, _ in flags]
        self.backward_in_place = [bwd for _, bwd in flags]


def _as_dtype(dtype) -> np.dtype:
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    if dt is None or dt.name not in _DTYPES:
        raise DigitnetError(f"dtype must be float32 or float64, got {dtype!r}")
    return dt


def _check_sizes(sizes) -> list[int]:
    try:
        if isinstance(sizes, str):  # "78" would otherwise become [7, 8]
            raise TypeError
        ints = [int(s) for s in sizes]
        # int() truncates silently: 2.5 units must be an error, not 2
        if any(isinstance(s, (float, np.floating)) and s != i for s, i in zip(sizes, ints)):
            raise ValueError
    except (TypeError, ValueError, OverflowError):
        raise DigitnetError(f"sizes must be a list of integers like [784, 30, 10], got {sizes!r}") from None
    if len(ints) < 2:
        raise DigitnetError(f"a network needs at least 2 layer sizes (inputs and outputs), got {sizes!r}")
    if min(ints) < 1:
        raise DigitnetError(f"every layer needs at least one unit, got {sizes!r}")
    return ints


def _check_seed(seed):
    if seed is None:
        return None
    try:
        seed = int(seed)
    except (TypeError, ValueError, OverflowError):
        raise DigitnetError(f"seed must be an integer, got {seed!r}") from None
    if seed < 0:
        raise DigitnetError(f"seed must be ≥ 0, got {seed}")
    return seed


def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise DigitnetError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}")
    return int(batch_size)
