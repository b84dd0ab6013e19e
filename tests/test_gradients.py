"""Backpropagation is right: finite differences over random networks, and a reference loop.

Two independent checks of ``Network.backward``:

* ``check_gradients`` compares it with central finite differences for
  hypothesis-drawn architectures (1–4 weight layers, 1–6 units, batches of
  1–8, every activation, every valid output/loss pair, with and without L2);
  a deliberately wrong derivative shows that the check can fail.
* A per-sample loop written here in the style of Nielsen's ``network.py``
  (column vectors, one sample at a time) must give the same numbers as the
  batched, batch-first implementation.
"""

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from digitnet import Network, check_gradients
from digitnet.nn.activations import Sigmoid
from digitnet.nn.losses import Quadratic

HIDDEN = ["sigmoid", "relu", "tanh", "identity", "softmax"]
# (output activation, loss, kind of targets)
PAIRS = (
    [(out, loss, "values") for loss in ("quadratic", "mse")
     for out in ("sigmoid", "relu", "tanh", "identity", "softmax")]
    + [(out, "binary_cross_entropy", kind) for out in ("sigmoid", "softmax")
       for kind in ("binary", "soft")]
    + [(out, "cross_entropy", kind) for out in ("sigmoid", "softmax")
       for kind in ("labels", "distributions")]
)
TOLERANCE = 1e-6
# Central differences step over [z − ε, z + ε] (ε = 1e-5, moved along by the
# downstream weights); a ReLU unit that close to its kink makes the numerical
# derivative meaningless, so such draws are skipped.
RELU_MARGIN = 1e-3
# Finite differences cannot resolve a gradient below their rounding noise,
# about 1e-16·|L|/ε: an array whose gradient has all but vanished (a chain of
# saturated sigmoids, say) measures the noise, not backpropagation.  Arrays
# that are exactly zero are fine (both sides agree exactly).
VANISHED = 1e-4


def _targets(kind, rng, n, k):
    """Targets ``(n, k)`` (or labels ``(n,)``) of the given kind."""
    if kind == "labels":        # one-hot class labels
        return rng.integers(0, k, n)
    if kind == "binary":        # independent 0/1 targets
        return rng.integers(0, 2, (n, k)).astype(np.float64)
    if kind == "soft":          # independent probabilities
        return rng.uniform(0.0, 1.0, (n, k))
    if kind == "distributions":  # soft class probabilities: each row sums to 1
        return rng.dirichlet(np.ones(k), n)
    return rng.uniform(-0.5, 1.0, (n, k))  # regression values


def _pre_activations(net, X):
    """Every layer's ``z`` for ``X`` ``(n, n_in)``, computed independently of the network."""
    zs, a = [], X
    for W, b, f in zip(net.weights, net.biases, net.activations):
        z = a @ W.T + b
        zs.append(z)
        a = f.forward(z)
    return zs


@st.composite
def gradient_problems(draw, pair=None, hidden=None):
    """A network description and data seed; ``pair``/``hidden`` pin the output pair or hidden activation."""
    n_layers = draw(st.integers(1 if hidden is None else 2, 4))
    sizes = [draw(st.integers(1, 6)) for _ in range(n_layers + 1)]
    hiddens = [hidden or draw(st.sampled_from(HIDDEN)) for _ in range(n_layers - 1)]
    out, loss, kind = pair or draw(st.sampled_from(PAIRS))
    if out == "softmax" or kind == "labels":
        sizes[-1] = max(sizes[-1], 2)  # a softmax over one unit is constant
    batch = draw(st.integers(1, 8))
    l2 = draw(st.sampled_from([0.0, 0.3, 2.0]))
    seed = draw(st.integers(0, 2**32 - 1))
    return sizes, hiddens + [out], loss, kind, batch, l2, seed


def _assert_backprop_matches_finite_differences(problem):
    sizes, activations, loss, kind, batch, l2, seed = problem
    rng = np.random.default_rng(seed)
    net = Network(sizes, activations=activations, loss=loss, dtype=np.float64, seed=seed)
    X = rng.standard_normal((batch, sizes[0]))
    y = _targets(kind, rng, batch, sizes[-1])
    for z, f in zip(_pre_activations(net, X), net.activations):
        if f.name == "relu":
            assume(np.abs(z).min() > RELU_MARGIN)
    loss_value, grads = net.backward(X, y, l2=l2)
    for array in (g for pair in grads for g in pair):
        largest = np.abs(array).max()
        assume(largest == 0 or largest > VANISHED * max(1.0, loss_value))

    errors = check_gradients(net, X, y, l2=l2)

    assert set(errors) == {f"{p}{l}" for l in range(1, len(sizes)) for p in "Wb"}
    worst = max(errors, key=errors.get)
    assert errors[worst] < TOLERANCE, (
        f"{worst}: relative error {errors[worst]:.3g} for {sizes} {activations} {loss} "
        f"targets={kind} batch={batch} l2={l2}")


# derandomize: the same examples on every run and machine (the suite is seeded);
# each example's data comes from a generator seeded by hypothesis.
PROPERTY = settings(max_examples=15, deadline=None, derandomize=True, database=None,
                    suppress_health_check=[HealthCheck.filter_too_much])


@pytest.mark.parametrize("pair", PAIRS, ids=["-".join(p) for p in PAIRS])
@PROPERTY
@given(data=st.data())
def test_backprop_matches_finite_differences_for_every_output_and_loss(pair, data):
    _assert_backprop_matches_finite_differences(data.draw(gradient_problems(pair=pair)))


@pytest.mark.parametrize("hidden", HIDDEN)
@PROPERTY
@given(data=st.data())
def test_backprop_matches_finite_differences_for_every_hidden_activation(hidden, data):
    _assert_backprop_matches_finite_differences(data.draw(gradient_problems(hidden=hidden)))


def test_every_pair_of_the_property_test_builds():
    """The PAIRS table only lists combinations the network accepts."""
    for out, loss, _ in PAIRS:
        Network([3, 2], activations=[out], loss=loss)


class _SigmoidWithWrongDerivative(Sigmoid):
    """σ'(z) written as σ(z) instead of σ(z)(1 − σ(z)): a classic slip."""

    def backward(self, a, d_loss__d_a):
        return d_loss__d_a * a


class _QuadraticWithoutMean(Quadratic):
    """Its gradient forgets the 1/n of the mean over samples; the value keeps it."""

    def gradient(self, a, y):
        return a - y


def _small_problem(n=6):
    rng = np.random.default_rng(7)
    return rng.standard_normal((n, 3)), rng.integers(0, 2, n)


def test_gradient_check_catches_a_wrong_activation_derivative():
    X, y = _small_problem()
    good = Network([3, 4, 2], activations=["sigmoid", "softmax"], dtype=np.float64, seed=1)
    bad = Network([3, 4, 2], activations=[_SigmoidWithWrongDerivative(), "softmax"],
                  dtype=np.float64, seed=1)
    assert max(check_gradients(good, X, y).values()) < TOLERANCE
    errors = check_gradients(bad, X, y)
    assert errors["W1"] > 1e-2 and errors["b1"] > 1e-2
    # the last layer's gradient does not pass through the wrong derivative
    assert errors["W2"] < TOLERANCE


def test_gradient_check_catches_a_wrong_loss_gradient():
    X, y = _small_problem()
    bad = Network([3, 4, 2], activations=["tanh", "sigmoid"], loss=_QuadraticWithoutMean(),
                  dtype=np.float64, seed=2)
    assert min(check_gradients(bad, X, y).values()) > 0.5  # every gradient is n× too big


def test_gradient_check_leaves_the_network_alone():
    X, y = _small_problem()
    net = Network([3, 5, 2], seed=3)  # float32: the check works on a float64 copy
    before = net.params.copy()
    errors = check_gradients(net, X, y, l2=1.0, max_checks_per_array=4)
    assert np.array_equal(net.params, before) and net.dtype == np.float32
    assert max(errors.values()) < TOLERANCE


# -- a reference implementation: Nielsen-style, one sample (column vector) at a time ------------

def _f(name, z):
    return {"sigmoid": lambda: 1.0 / (1.0 + np.exp(-z)), "tanh": lambda: np.tanh(z),
            "relu": lambda: np.maximum(z, 0.0), "identity": lambda: z}[name]()


def _f_prime(name, z):
    s = 1.0 / (1.0 + np.exp(-z))
    return {"sigmoid": lambda: s * (1 - s), "tanh": lambda: 1 - np.tanh(z) ** 2,
            "relu": lambda: (z > 0).astype(float), "identity": lambda: np.ones_like(z)}[name]()


def _reference_backprop(weights, biases, hidden, output, loss, X, Y, lam):
    """Loss and ``[(dW, db), ...]`` with one loop iteration per sample.

    ``weights[l]`` is ``(n_out, n_in)``, ``biases[l]`` a column ``(n_out, 1)``;
    each sample ``x`` is a column ``(n_in, 1)``.  The batch loss is the mean
    per-sample loss plus (λ/2n)·Σ‖W‖².
    """
    n = len(X)
    nabla_w = [np.zeros_like(W) for W in weights]
    nabla_b = [np.zeros_like(b) for b in biases]
    total = 0.0
    for x_row, y_row in zip(X, Y):
        activation = x_row.reshape(-1, 1)
        y = y_row.reshape(-1, 1)
        activations, zs = [activation], []
        for l, (W, b) in enumerate(zip(weights, biases)):
            z = W @ activation + b
            zs.append(z)
            if l < len(weights) - 1:
                activation = _f(hidden, z)
            elif output == "softmax":
                e = np.exp(z - z.max())
                activation = e / e.sum()
            else:
                activation = _f(output, z)
            activations.append(activation)
        a = activations[-1]
        if loss == "quadratic":
            total += 0.5 * float(np.sum((a - y) ** 2))
            delta = (a - y) * _f_prime(output, zs[-1])
        else:  # softmax + categorical cross-entropy
            total += -float(np.sum(y * np.log(a)))
            delta = a - y
        nabla_b[-1] += delta
        nabla_w[-1] += delta @ activations[-2].T
        for l in range(2, len(weights) + 1):
            delta = (weights[-l + 1].T @ delta) * _f_prime(hidden, zs[-l])
            nabla_b[-l] += delta
            nabla_w[-l] += delta @ activations[-l - 1].T
    loss_value = total / n + lam / (2 * n) * sum(float(np.sum(W * W)) for W in weights)
    grads = [(nw / n + lam / n * W, (nb / n).ravel())
             for nw, nb, W in zip(nabla_w, nabla_b, weights)]
    return loss_value, grads


@pytest.mark.parametrize("sizes, hidden, output, loss, lam", [
    ([4, 5, 3], "sigmoid", "sigmoid", "quadratic", 0.0),   # Nielsen's network.py
    ([4, 5, 3], "sigmoid", "sigmoid", "quadratic", 5.0),   # network2.py's L2
    ([5, 4, 3, 2], "tanh", "identity", "quadratic", 0.0),
    ([5, 6, 4, 3], "relu", "softmax", "cross_entropy", 1.5),
    ([2, 3], "sigmoid", "softmax", "cross_entropy", 0.0),  # no hidden layer
])
def test_backward_matches_a_per_sample_reference(sizes, hidden, output, loss, lam):
    rng = np.random.default_rng(sum(sizes))
    net = Network(sizes, activation=hidden, output=output, loss=loss, init="normal",
                  dtype=np.float64, seed=11)
    n = 7
    X = rng.standard_normal((n, sizes[0]))
    labels = rng.integers(0, sizes[-1], n)
    Y = np.eye(sizes[-1])[labels]
    weights = [W.copy() for W in net.weights]
    biases = [b.reshape(-1, 1).copy() for b in net.biases]

    expected_loss, expected = _reference_backprop(weights, biases, hidden, output, loss, X, Y, lam)
    got_loss, got = net.backward(X, labels, l2=lam)

    assert got_loss == pytest.approx(expected_loss, rel=1e-12)
    assert len(got) == len(expected)
    for (dW, db), (rW, rb), W in zip(got, expected, net.weights):
        assert dW.shape == W.shape and db.shape == (W.shape[0],)
        np.testing.assert_allclose(dW, rW, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-13)
    assert np.abs(got[0][0]).max() > 1e-6  # the comparison is not between two zero arrays


def test_float32_backward_agrees_with_float64():
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((9, 6)), rng.integers(0, 4, 9)
    net64 = Network([6, 8, 4], dtype=np.float64, seed=5)
    net32 = net64.copy(dtype=np.float32)
    loss64, g64 = net64.backward(X, y, l2=0.5)
    loss32, g32 = net32.backward(X, y, l2=0.5)
    assert loss32 == pytest.approx(loss64, rel=1e-5)
    for (dW32, db32), (dW64, db64) in zip(g32, g64):
        assert dW32.dtype == np.float32
        np.testing.assert_allclose(dW32, dW64, rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(db32, db64, rtol=1e-4, atol=1e-6)


def test_backward_l2_uses_the_training_set_size():
    """With ``n_train`` the penalty is (λ/2·n_train)‖W‖², not per batch."""
    rng = np.random.default_rng(4)
    X, y = rng.standard_normal((5, 3)), rng.integers(0, 2, 5)
    net = Network([3, 2], dtype=np.float64, seed=0)
    loss0, g0 = net.backward(X, y)
    loss1, g1 = net.backward(X, y, l2=4.0, n_train=100)
    W = net.weights[0]
    assert loss1 - loss0 == pytest.approx(4.0 / 200 * np.sum(W * W), rel=1e-12)
    np.testing.assert_allclose(g1[0][0] - g0[0][0], 4.0 / 100 * W, rtol=1e-10)
    np.testing.assert_array_equal(g1[0][1], g0[0][1])  # biases are not decayed


# -- the training step's own path ----------------------------------------------------------------

class _TwoArgumentSigmoid(Sigmoid):
    """A custom activation written against the two-argument API (no ``out=``)."""

    name = "sigmoid2"

    def forward(self, z):
        return super().forward(z)

    def backward(self, a, d_loss__d_a):
        return super().backward(a, d_loss__d_a)


@pytest.mark.parametrize("out, loss, kind", PAIRS + [(_TwoArgumentSigmoid(), "quadratic", "values")])
@pytest.mark.parametrize("scale", [1.0, 0.37])
def test_the_training_step_gives_scale_times_the_gradient(out, loss, kind, scale):
    """fit's step (backprop with δ_L scaled by the optimiser's factor) equals
    ``scale`` × ``backward``'s gradient, and returns the output layer's z."""
    rng = np.random.default_rng(7)
    n, sizes = 6, [5, 4, 3, 3]
    net = Network(sizes, activations=["tanh", "relu", out], loss=loss, init="normal",
                  dtype=np.float64, seed=2)
    X = rng.standard_normal((n, sizes[0]))
    y = _targets(kind, rng, n, sizes[-1])
    _, expected = net.backward(X, y, l2=0.8, n_train=20)
    Y, _ = net.check_targets(y, n)
    X = net.check_inputs(X)
    for _ in range(2):  # the second step reuses the work arrays the first one wrote
        z_out = net.backprop(X, Y, 0.8 / 20, scale)
        np.testing.assert_allclose(z_out, _pre_activations(net, X)[-1], rtol=1e-12)
        for (gW, gb), (dW, db) in zip(zip(net.grad_weights, net.grad_biases), expected):
            np.testing.assert_allclose(gW, scale * dW, rtol=1e-10, atol=1e-14)
            np.testing.assert_allclose(gb, scale * db, rtol=1e-10, atol=1e-14)
    assert np.abs(net.grad_weights[0]).max() > 1e-6
