"""The Network object: construction, shapes, dtypes, numerics and clear errors."""

import warnings

import numpy as np
import pytest
from numerics import assert_close

from digitnet import Network
from digitnet.errors import DataError, DigitnetError
from digitnet.nn.activations import Softmax, get_activation
from digitnet.nn.losses import BinaryCrossEntropy, CategoricalCrossEntropy, get_loss


def _one_line_error(excinfo):
    message = str(excinfo.value)
    assert message and "\n" not in message
    return message


# -- architecture and description ---------------------------------------------------

def test_parameter_count_of_the_classic_784_16_16_10():
    net = Network([784, 16, 16, 10])
    # 784·16+16 + 16·16+16 + 16·10+10
    assert net.n_params == 13_002 == net.params.size
    assert "13,002" in net.summary()
    assert [W.shape for W in net.weights] == [(16, 784), (16, 16), (10, 16)]
    assert [b.shape for b in net.biases] == [(16,), (16,), (10,)]


def test_weights_are_views_into_the_flat_buffer():
    net = Network([3, 4, 2], seed=0)
    net.params[:] = np.arange(net.n_params)
    assert net.weights[0][0, 0] == 0 and net.biases[0][0] == 12 and net.weights[1][0, 0] == 16
    net.weights[1][...] = -1  # writing a view writes the buffer
    assert np.all(net.params[16:24] == -1)


def test_default_activations_and_initializers():
    net = Network([5, 4, 3, 2])
    assert [a.name for a in net.activations] == ["relu", "relu", "softmax"]
    assert net.loss.name == "cross_entropy"
    assert net.init == ["he", "he", "glorot"]
    custom = Network([5, 4, 2], activations=["tanh", "sigmoid"], loss="quadratic",
                     init=["nielsen", "raschka"])
    assert [a.name for a in custom.activations] == ["tanh", "sigmoid"]
    assert custom.init == ["normal", "normal_0.1"]
    assert np.all(custom.biases[1] == 0)  # Raschka's biases start at zero


def test_same_seed_same_weights_different_seed_different_weights():
    a, b, c = Network([6, 5, 3], seed=4), Network([6, 5, 3], seed=4), Network([6, 5, 3], seed=5)
    assert np.array_equal(a.params, b.params)
    assert not np.array_equal(a.params, c.params)


def test_config_round_trip_and_copy():
    net = Network([4, 3, 2], activation="tanh", output="sigmoid", loss="bce", dtype=np.float64, seed=9)
    again = Network.from_config(net.get_config(), net.params)
    assert again.get_config() == net.get_config()
    assert np.array_equal(again.params, net.params)

    twin = net.copy()
    twin.params += 1  # independent buffers
    assert not np.array_equal(twin.params, net.params)
    as32 = net.copy(dtype="float32")
    assert as32.dtype == np.float32 and as32.params.dtype == np.float32
    np.testing.assert_allclose(as32.params, net.params, rtol=1e-6)


def test_from_config_rejects_a_parameter_vector_of_the_wrong_length():
    net = Network([4, 3, 2])
    with pytest.raises(DigitnetError, match="expected 23 parameters") as excinfo:
        Network.from_config(net.get_config(), np.zeros(22))
    _one_line_error(excinfo)


# -- dtypes and shapes ----------------------------------------------------------------

@pytest.mark.parametrize("dtype", [None, np.float64, "float64", np.float32])
def test_float32_by_default_float64_on_request(dtype):
    expected = np.float32 if dtype in (None, np.float32) else np.float64
    net = Network([5, 4, 3], seed=0) if dtype is None else Network([5, 4, 3], dtype=dtype, seed=0)
    X = np.random.default_rng(0).standard_normal((7, 5))  # float64 input either way
    assert net.params.dtype == expected and net.grads.dtype == expected
    assert all(W.dtype == expected for W in net.weights)
    assert all(a.dtype == expected for a in net.forward(X))
    assert net.predict_proba(X).dtype == expected
    _, grads = net.backward(X, np.arange(7) % 3)
    assert all(g.dtype == expected for pair in grads for g in pair)


def test_prediction_shapes_and_probabilities():
    rng = np.random.default_rng(1)
    net = Network([8, 6, 4], seed=1)
    X = rng.standard_normal((11, 8))
    proba = net.predict_proba(X)
    assert proba.shape == (11, 4)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert np.all(proba > 0)
    labels = net.predict(X)
    assert labels.shape == (11,) and labels.dtype == np.int64
    assert np.array_equal(labels, proba.argmax(axis=1))
    acts = net.forward(X)
    assert [a.shape for a in acts] == [(11, 8), (11, 6), (11, 4)]
    # one forward pass in the code base: the same rows through it give the same bits
    np.testing.assert_array_equal(acts[-1], proba)
    np.testing.assert_array_equal(net.feedforward(X), proba)
    # one sample as a flat vector, and batches smaller than the data; a batch
    # of 3 rows may run other BLAS kernels than one of 11, so only rounding apart
    assert net.predict_proba(X[0]).shape == (1, 4)
    assert_close(net.predict_proba(X, batch_size=3), proba)


def test_images_are_flattened():
    net = Network([784, 5, 10], seed=0)
    images = np.random.default_rng(0).random((3, 28, 28))
    np.testing.assert_array_equal(net.predict_proba(images), net.predict_proba(images.reshape(3, 784)))


def test_single_sigmoid_output_predicts_by_threshold():
    net = Network([2, 1], activations=["sigmoid"], loss="bce", dtype=np.float64, seed=0)
    net.weights[0][...] = [[1.0, 0.0]]
    net.biases[0][...] = 0.0
    X = np.array([[-3.0, 0.0], [3.0, 0.0], [0.5, 9.0]])
    assert net.predict_proba(X).shape == (3, 1)
    np.testing.assert_array_equal(net.predict(X), [0, 1, 1])
    loss, accuracy = net.evaluate(X, [0, 1, 0])
    assert accuracy == pytest.approx(2 / 3)
    assert loss > 0


def test_evaluate_matches_a_direct_computation():
    rng = np.random.default_rng(2)
    net = Network([5, 7, 3], dtype=np.float64, seed=2)
    X, y = rng.standard_normal((20, 5)), rng.integers(0, 3, 20)
    loss, accuracy = net.evaluate(X, y, batch_size=6)  # in several chunks
    p = net.predict_proba(X)
    assert loss == pytest.approx(-np.mean(np.log(p[np.arange(20), y])), rel=1e-12)
    assert accuracy == np.mean(p.argmax(axis=1) == y)


# -- numerical stability --------------------------------------------------------------

def test_softmax_of_huge_logits_is_finite_without_warnings():
    z = np.array([[1e4, 0.0, -1e4], [-1e4, -1e4, -1e4], [5e3, 5e3, -3e3]], dtype=np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # an overflow RuntimeWarning fails the test
        a = Softmax().forward(z)
        sigmoid = get_activation("sigmoid").forward(np.array([[-1e4, 1e4]], dtype=np.float32))
    assert np.all(np.isfinite(a))
    np.testing.assert_allclose(a, [[1, 0, 0], [1 / 3, 1 / 3, 1 / 3], [0.5, 0.5, 0]], atol=1e-7)
    np.testing.assert_array_equal(sigmoid, [[0.0, 1.0]])


def test_network_with_huge_logits_predicts_and_evaluates_finitely():
    net = Network([2, 3], seed=0)  # float32, softmax + cross-entropy
    net.weights[0][...] = [[1e4, 0], [0, 1e4], [-1e4, -1e4]]
    X = np.array([[1.0, 0.0], [0.0, 1.0]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        proba = net.predict_proba(X)
        loss_right, _ = net.evaluate(X, [0, 1])
        loss_wrong, accuracy = net.evaluate(X, [1, 0])
    np.testing.assert_array_equal(proba, [[1, 0, 0], [0, 1, 0]])
    assert loss_right == pytest.approx(0.0, abs=1e-6)
    # log-sum-exp: the exact loss 1e4 rather than −log(clipped probability) ≈ 16
    assert loss_wrong == pytest.approx(1e4, rel=1e-6) and accuracy == 0


def _naive_softmax_cross_entropy(z, y):
    e = np.exp(z)
    return -np.mean(np.sum(y * np.log(e / e.sum(axis=1, keepdims=True)), axis=1))


def _naive_binary_cross_entropy(z, y):
    a = 1 / (1 + np.exp(-z))
    return -np.mean(np.sum(y * np.log(a) + (1 - y) * np.log(1 - a), axis=1))


def test_cross_entropy_from_logits_equals_the_naive_formula_where_that_is_safe():
    rng = np.random.default_rng(3)
    z = rng.normal(0, 3, (6, 4))
    y = np.eye(4)[rng.integers(0, 4, 6)]
    soft = rng.dirichlet(np.ones(4), 6)
    ce = CategoricalCrossEntropy()
    a = Softmax().forward(z)
    for targets in (y, soft):
        assert ce.value(a, targets, z) == pytest.approx(_naive_softmax_cross_entropy(z, targets), rel=1e-12)
        assert ce.value(a, targets) == pytest.approx(_naive_softmax_cross_entropy(z, targets), rel=1e-9)
    bce = BinaryCrossEntropy()
    yb = rng.integers(0, 2, (6, 4)).astype(float)
    sig = get_activation("sigmoid").forward(z)
    assert bce.value(sig, yb, z) == pytest.approx(_naive_binary_cross_entropy(z, yb), rel=1e-12)
    assert bce.value(sig, yb) == pytest.approx(_naive_binary_cross_entropy(z, yb), rel=1e-9)


def test_cross_entropy_from_logits_is_finite_where_the_naive_formula_overflows():
    z = np.array([[800.0, 0.0], [0.0, -800.0]])
    y = np.array([[0.0, 1.0], [0.0, 1.0]])
    with np.errstate(all="ignore"):  # the naive formulas overflow, on purpose
        assert not np.isfinite(_naive_softmax_cross_entropy(z, y))
        assert not np.isfinite(_naive_binary_cross_entropy(z, y))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        a = Softmax().forward(z)
        ce = CategoricalCrossEntropy().value(a, y, z)
        sig = get_activation("sigmoid").forward(z)
        bce = BinaryCrossEntropy().value(sig, y, z)
    # sample 1: logsumexp(800, 0) − 0 = 800; sample 2: logsumexp(0, −800) + 800 = 800
    assert ce == pytest.approx(800.0, rel=1e-12)
    # sample 1: softplus(800) − 0 + softplus(0) − 0; sample 2: softplus(0) + softplus(−800) + 800
    assert bce == pytest.approx((800 + np.log(2) + np.log(2) + 800) / 2, rel=1e-12)


# -- bad arguments: one clear line naming the problem ---------------------------------

@pytest.mark.parametrize("sizes, fragment", [
    ([784], "at least 2 layer sizes"),
    ([], "at least 2 layer sizes"),
    ([784, 0, 10], "at least one unit"),
    ([784, -3, 10], "at least one unit"),
    ([784, 2.5, 10], "must be a list of integers"),
    ([784, "thirty", 10], "must be a list of integers"),
    ("78", "must be a list of integers"),
    (784, "must be a list of integers"),
    (None, "must be a list of integers"),
])
def test_bad_sizes(sizes, fragment):
    with pytest.raises(DigitnetError, match=fragment) as excinfo:
        Network(sizes)
    _one_line_error(excinfo)


def test_whole_number_floats_are_accepted_as_sizes():
    assert Network([4.0, np.float64(3), np.int32(2)]).sizes == [4, 3, 2]


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(activation="swish"), "unknown activation 'swish'"),
    (dict(output="softplus"), "unknown activation 'softplus'"),
    (dict(loss="hinge"), "unknown loss 'hinge'"),
    (dict(init="lecun"), "unknown initializer 'lecun'"),
    (dict(init=["he"]), "one per layer"),
    (dict(init=5), "one name or one per layer"),
    (dict(activations=["relu"]), "one name per layer"),
    (dict(activations=5), "one name per layer"),
    (dict(output="relu", loss="cross_entropy"), "cross_entropy loss needs outputs between 0 and 1"),
    (dict(output="identity", loss="bce"), "binary_cross_entropy loss needs outputs between 0 and 1"),
    (dict(output="tanh", loss="ce"), "use a sigmoid or softmax output"),
    (dict(dtype=np.int32), "dtype must be float32 or float64"),
    (dict(dtype="float16"), "dtype must be float32 or float64"),
    (dict(seed=-1), "seed must be"),
    (dict(seed="abc"), "seed must be an integer"),
])
def test_bad_construction_arguments(kwargs, fragment):
    with pytest.raises(DigitnetError, match=fragment) as excinfo:
        Network([4, 3, 2], **kwargs)
    _one_line_error(excinfo)


def test_softmax_over_a_single_output_is_refused():
    with pytest.raises(DigitnetError, match="use sigmoid for one output"):
        Network([4, 1], output="softmax")


@pytest.mark.parametrize("X, fragment", [
    (np.zeros((5, 3)), r"shape \(5, 3\), but the network expects \(n_samples, 4\)"),
    (np.zeros((5, 4, 2)), r"expects \(n_samples, 4\)"),
    (np.zeros((0, 4)), "empty"),
    (np.array([["a", "b", "c", "d"]]), "must be numeric"),
    (np.array([[0, 1, np.nan, 2], [0, 0, 0, 0]]), "NaN or infinite values \\(first in row 0\\)"),
    (np.array([[0, 1, 1, 2], [0, np.inf, 0, 0]]), "NaN or infinite values \\(first in row 1\\)"),
])
def test_bad_inputs(X, fragment):
    net = Network([4, 3, 2])
    with pytest.raises(DataError, match=fragment) as excinfo:
        net.predict(X)
    _one_line_error(excinfo)


@pytest.mark.parametrize("y, fragment", [
    ([0, 1, 2], "X has 4 samples but y has 3"),
    ([0, 1, 2, 3], "contains label 3 \\(row 3\\).*labels must be 0..2"),
    ([0, -1, 2, 1], "contains label -1 \\(row 1\\)"),
    ([0, 1.5, 2, 1], "whole-number class labels 0..2"),
    ([0, np.nan, 2, 1], "NaN or infinite"),
    (np.zeros((4, 2)), r"shape \(4, 2\): expected labels \(n,\) or targets \(n, 3\)"),
    (["a", "b", "c", "d"], "must be numeric labels"),
])
def test_bad_targets(y, fragment):
    net = Network([2, 3])
    with pytest.raises(DataError, match=fragment) as excinfo:
        net.evaluate(np.zeros((4, 2)), y)
    _one_line_error(excinfo)


@pytest.mark.parametrize("loss, output, targets", [
    ("bce", "sigmoid", np.array([0.0, 1.0, 5.0])),
    ("ce", "softmax", np.array([[0.0, 1.5], [1.0, 0.0], [0.5, 0.5]])),
])
def test_cross_entropy_rejects_targets_outside_zero_one(loss, output, targets):
    n_out = 1 if targets.ndim == 1 else targets.shape[1]
    net = Network([2, 3, n_out], output=output, loss=loss, seed=0)
    X = np.zeros((3, 2))
    with pytest.raises(DataError, match="outside 0..1"):
        net.fit(X, targets, epochs=1)


@pytest.mark.parametrize("loss, output", [("quadratic", "sigmoid"), ("mse", "identity"),
                                          ("binary_cross_entropy", "sigmoid"), ("cross_entropy", "softmax")])
def test_loss_values_do_not_depend_on_the_memory_layout(loss, output):
    """The training loop keeps its outputs column-major; every loss must read them right."""
    rng = np.random.default_rng(5)
    z = rng.standard_normal((7, 4))
    f, L = get_activation(output), get_loss(loss)
    a = f.forward(z)
    y = np.eye(4)[rng.integers(0, 4, 7)]
    y[0] = [0.2, 0.3, 0.1, 0.4] if loss != "binary_cross_entropy" else [1, 0, 1, 1]
    expected = L.value(a, y, z if output == L.fused_with else None)
    for a_, y_, z_ in [(np.asfortranarray(a), y, np.asfortranarray(z)),
                       (np.asfortranarray(a), np.asfortranarray(y), np.asfortranarray(z)),
                       (a, np.asfortranarray(y), z)]:
        got = L.value(a_, y_, z_ if output == L.fused_with else None)
        assert got == pytest.approx(expected, rel=1e-12)
    # and the fused and unfused values agree (the layout test is not comparing constants)
    assert L.value(np.asfortranarray(a), y) == pytest.approx(expected, rel=1e-9)
