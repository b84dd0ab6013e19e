"""The training loop: learning, reproducibility, resuming, callbacks and clear errors."""

import gzip
import math
import re

import numpy as np
import pytest

from digitnet import Callback, History, Network
from digitnet.errors import DataError, DigitnetError, TrainingDiverged
from digitnet.files.modelfile import load_checkpoint, save_model
from digitnet.nn.optimizers import get_optimizer
from digitnet.train import epoch_order


def _blobs(n=60, seed=0, k=3, d=2):
    """``k`` well-separated Gaussian clusters in ``d`` dimensions: X ``(n, d)``, labels ``(n,)``."""
    rng = np.random.default_rng(seed)
    angles = 2 * np.pi * np.arange(k) / k
    centres = np.zeros((k, d))
    centres[:, 0], centres[:, 1] = 3 * np.cos(angles), 3 * np.sin(angles)
    y = np.arange(n) % k
    return centres[y] + 0.8 * rng.standard_normal((n, d)), y


# -- the seed material's Boolean example --------------------------------------------

XOR_X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]], dtype=float)  # X1 X2 X3 (bias-like 1)
XOR_Y = np.array([0, 1, 1, 0])                                                 # Y = X1 xor X2


@pytest.mark.parametrize("seed", range(5))
def test_sigmoid_network_learns_xor(seed):
    net = Network([3, 4, 1], activation="sigmoid", output="sigmoid", loss="quadratic", seed=seed)
    history = net.fit(XOR_X, XOR_Y, epochs=600, batch_size=None, optimizer="sgd", lr=10.0)
    assert np.array_equal(net.predict(XOR_X), XOR_Y)
    assert history["accuracy"][-1] == 1.0
    assert history["loss"][-1] < 0.01 < history["loss"][0]
    out = net.predict_proba(XOR_X)[:, 0]
    assert np.all(np.abs(out - XOR_Y) < 0.2)  # learned, not merely on the right side of 0.5


# -- full-batch, per-sample and mini-batch descent ------------------------------------

@pytest.mark.parametrize("batch_size, lr", [(None, 0.5), (1, 0.02), (10, 0.1)])
def test_every_batch_mode_reduces_the_loss(batch_size, lr):
    X, y = _blobs()
    net = Network([2, 8, 3], seed=1)
    before, _ = net.evaluate(X, y)
    history = net.fit(X, y, epochs=15, batch_size=batch_size, lr=lr)
    after, accuracy = net.evaluate(X, y)
    assert after < 0.5 * before
    assert history["loss"][-1] < history["loss"][0]
    assert accuracy > 0.9
    assert [r["epoch"] for r in history.records] == list(range(1, 16))
    assert all(r["lr"] == lr and r["seconds"] >= 0 and r["val_loss"] is None for r in history.records)


def test_full_batch_gradient_descent_is_exactly_one_step_per_epoch():
    X, y = _blobs(n=12)
    net = Network([2, 5, 3], dtype=np.float64, seed=2)
    expected = net.copy()
    net.fit(X, y, epochs=3, batch_size=None, lr=0.3)
    for _ in range(3):
        _, grads = expected.backward(X, y)
        for W, b, (dW, db) in zip(expected.weights, expected.biases, grads):
            W -= 0.3 * dW
            b -= 0.3 * db
    np.testing.assert_allclose(net.params, expected.params, rtol=1e-12, atol=1e-15)


def test_minibatches_follow_the_documented_epoch_order():
    """Two epochs of batch-5 SGD equal the same steps taken by hand in epoch_order's order."""
    X, y = _blobs(n=13)
    net = Network([2, 4, 3], dtype=np.float64, seed=3)
    by_hand = net.copy()
    history = net.fit(X, y, epochs=2, batch_size=5, lr=0.2, seed=77)
    for epoch in range(2):
        order = epoch_order(77, epoch, 13)
        loss_sum, correct = 0.0, 0
        for start in range(0, 13, 5):
            rows = order[start:start + 5]
            # the record's loss and accuracy: each batch seen by the weights of its own step
            loss_sum += by_hand.loss_value(X[rows], y[rows]) * len(rows)
            correct += int(np.sum(by_hand.predict(X[rows]) == y[rows]))
            _, grads = by_hand.backward(X[rows], y[rows])
            for W, b, (dW, db) in zip(by_hand.weights, by_hand.biases, grads):
                W -= 0.2 * dW
                b -= 0.2 * db
        assert history["loss"][epoch] == pytest.approx(loss_sum / 13, rel=1e-12)
        assert history["accuracy"][epoch] == correct / 13
    np.testing.assert_allclose(net.params, by_hand.params, rtol=1e-12, atol=1e-15)


def test_l2_shrinks_the_weights():
    X, y = _blobs()
    plain, decayed = Network([2, 8, 3], seed=4), Network([2, 8, 3], seed=4)
    plain.fit(X, y, epochs=10, batch_size=10, lr=0.1)
    history = decayed.fit(X, y, epochs=10, batch_size=10, lr=0.1, l2=5.0)
    norm = lambda net: sum(float(np.sum(W * W)) for W in net.weights)  # noqa: E731
    assert norm(decayed) < 0.8 * norm(plain)
    # the recorded loss includes (λ/2n)·Σ‖W‖²
    assert history["loss"][-1] > decayed.l2_penalty(5.0 / 60) > 0


# -- reproducibility --------------------------------------------------------------------

@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch_size", [None, 1, 10])
def test_same_seed_same_weights_bit_for_bit(optimizer, batch_size):
    X, y = _blobs(n=40)

    def run(seed, fit_seed=None):
        net = Network([2, 6, 3], seed=seed)
        net.fit(X, y, epochs=3, batch_size=batch_size, optimizer=optimizer, lr=0.05, seed=fit_seed)
        return net.params

    first = run(5)
    assert np.array_equal(first, run(5))
    assert np.array_equal(run(5, fit_seed=9), run(5, fit_seed=9))
    assert not np.array_equal(first, run(6))
    if batch_size is not None:  # with one batch per epoch there is nothing to shuffle
        assert not np.array_equal(run(5, fit_seed=1), run(5, fit_seed=2))


def test_unseeded_runs_record_the_seed_they_drew():
    X, y = _blobs(n=30)
    net = Network([2, 4, 3])
    start = net.params.copy()
    history = net.fit(X, y, epochs=2, batch_size=4)
    assert isinstance(history.seed, int)
    replay = Network.from_config(net.get_config(), start)
    replay.fit(X, y, epochs=2, batch_size=4, seed=history.seed)
    assert np.array_equal(replay.params, net.params)


# -- resuming from a checkpoint ---------------------------------------------------------

def _rebuild_optimizer(state):
    config = dict(state["config"])
    optimizer = get_optimizer(config.pop("name"), config.pop("lr"), **config)
    optimizer.load_state_dict(state)
    return optimizer


@pytest.mark.parametrize("schedule", [None, "cosine"])
@pytest.mark.parametrize("name, lr", [("momentum", 0.05), ("nesterov", 0.05), ("adam", 0.01)])
def test_resumed_run_ends_exactly_where_an_uninterrupted_one_does(tmp_path, name, lr, schedule):
    X, y = _blobs(n=50)
    Xv, yv = _blobs(n=20, seed=1)
    kwargs = dict(epochs=4, batch_size=7, schedule=schedule, validation_data=(Xv, yv))

    straight = Network([2, 5, 3], seed=8)
    full_history = straight.fit(X, y, optimizer=name, lr=lr, **kwargs)

    first = Network([2, 5, 3], seed=8)
    optimizer = get_optimizer(name, lr)
    # stop after 2 of the 4 epochs, as an interrupted run would
    history = first.fit(X, y, optimizer=optimizer, callbacks=[lambda epoch, record: epoch == 1], **kwargs)
    assert len(history) == 2
    path = tmp_path / "checkpoint.npz"
    save_model(path, first, optimizer=optimizer, history=history)

    network, state = load_checkpoint(path)
    resumed_optimizer = _rebuild_optimizer(state)
    assert resumed_optimizer.steps == optimizer.steps == 2 * math.ceil(50 / 7)
    resumed_history = History.from_dict(network.metadata["history"])
    network.fit(X, y, optimizer=resumed_optimizer, initial_epoch=2, history=resumed_history, **kwargs)

    assert np.array_equal(network.params, straight.params)
    assert len(resumed_history) == 4
    for key in ("loss", "val_loss", "accuracy", "lr"):
        assert resumed_history[key] == full_history[key]


def test_the_optimizer_keeps_its_base_rate_after_a_scheduled_run():
    X, y = _blobs(n=20)
    optimizer = get_optimizer("sgd", 0.4)
    history = Network([2, 3, 3], seed=0).fit(X, y, epochs=3, optimizer=optimizer, schedule="cosine")
    assert history["lr"][-1] < 0.4
    assert optimizer.lr == 0.4


# -- validation, early stopping and callbacks ----------------------------------------------

def test_validation_metrics_are_recorded_with_the_final_weights():
    X, y = _blobs()
    Xv, yv = _blobs(n=30, seed=5)
    net = Network([2, 6, 3], seed=1)
    history = net.fit(X, y, epochs=4, batch_size=10, validation_data=(Xv, yv))
    assert all(isinstance(v, float) for v in history["val_loss"])
    assert all(0 <= a <= 1 for a in history["val_accuracy"])
    assert (history["val_loss"][-1], history["val_accuracy"][-1]) == net.evaluate(Xv, yv)


def test_early_stopping_stops_and_restores_the_best_weights():
    # Random labels: the training set can only be memorised, so the loss on
    # other random labels bottoms out early and then climbs.
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 5)), rng.integers(0, 3, 30)
    Xv, yv = rng.standard_normal((30, 5)), rng.integers(0, 3, 30)
    net = Network([5, 32, 3], seed=0)
    history = net.fit(X, y, epochs=200, batch_size=5, optimizer="adam", lr=0.01,
                      validation_data=(Xv, yv), early_stopping=3)
    assert history.stopped_early and len(history) < 200
    val = history["val_loss"]
    best = int(np.argmin(val))
    assert history.best_epoch == best + 1
    assert len(history) == best + 1 + 3  # exactly `patience` epochs without improvement
    assert net.evaluate(Xv, yv)[0] == val[best] < val[-1]


class _Recorder(Callback):
    def __init__(self):
        self.calls = []

    def on_train_begin(self, network, optimizer, epochs):
        self.calls.append(("train_begin", epochs))

    def on_epoch_begin(self, epoch, n_batches):
        self.calls.append(("epoch_begin", epoch, n_batches))

    def on_batch_end(self, epoch, batch, n_batches):
        self.calls.append(("batch_end", epoch, batch, n_batches))

    def on_epoch_end(self, epoch, record):
        self.calls.append(("epoch_end", epoch, record["epoch"]))

    def on_train_end(self, history):
        self.calls.append(("train_end", len(history)))


def test_callbacks_are_called_once_per_batch_and_epoch():
    X, y = _blobs(n=23)
    recorder = _Recorder()
    Network([2, 3, 3], seed=0).fit(X, y, epochs=2, batch_size=10, callbacks=[recorder])
    expected = [("train_begin", 2)]
    for epoch in range(2):
        expected.append(("epoch_begin", epoch, 3))
        expected += [("batch_end", epoch, b, 3) for b in range(3)]  # 23 samples: 10 + 10 + 3
        expected.append(("epoch_end", epoch, epoch + 1))
    expected.append(("train_end", 2))
    assert recorder.calls == expected


def test_a_callback_returning_true_stops_training():
    X, y = _blobs(n=20)
    seen = []

    def stop_after_third(epoch, record):
        seen.append(record["epoch"])
        return record["epoch"] == 3

    history = Network([2, 3, 3], seed=0).fit(X, y, epochs=10, callbacks=[stop_after_third])
    assert seen == [1, 2, 3] and len(history) == 3 and history.stopped_early


def test_history_round_trip():
    X, y = _blobs(n=20)
    history = Network([2, 3, 3], seed=0).fit(X, y, epochs=2, validation_data=(X, y))
    again = History.from_dict(history.to_dict())
    assert again.records == history.records and again.seed == history.seed
    assert len(again) == 2 and again["epoch"] == [1, 2]


# -- bad arguments ----------------------------------------------------------------------------

def _fit_error(kwargs=None, X=None, y=None, net=None):
    X0, y0 = _blobs(n=20)
    net = net or Network([2, 4, 3], seed=0)
    with pytest.raises(DigitnetError) as excinfo:
        net.fit(X0 if X is None else X, y0 if y is None else y, **(kwargs or {}))
    message = str(excinfo.value)
    assert "\n" not in message
    return excinfo.value, message


@pytest.mark.parametrize("kwargs, fragment", [
    (dict(batch_size=0), "batch_size must be ≥ 1, got 0"),
    (dict(batch_size=2.5), "batch_size must be a whole number"),
    (dict(epochs=0), "epochs must be ≥ 1, got 0"),
    (dict(epochs="ten"), "epochs must be a whole number"),
    (dict(lr=-0.1), "learning rate must be a finite number > 0, got -0.1"),
    (dict(lr=0), "learning rate must be a finite number > 0"),
    (dict(optimizer="rmsprop"), "unknown optimizer 'rmsprop'"),
    (dict(schedule="exponential"), "unknown schedule 'exponential'"),
    (dict(l2=-1), "l2 must be a finite number ≥ 0"),
    (dict(early_stopping=3), "early stopping watches the validation loss: pass validation_data"),
    (dict(validation_data=(np.zeros((3, 2)),)), "validation_data must be a pair"),
    (dict(validation_data=(np.zeros((3, 5)), [0, 1, 2])), r"X_val has shape \(3, 5\)"),
    (dict(validation_data=(np.zeros((3, 2)), [0, 1, 7])), "y_val contains label 7"),
    (dict(callbacks=[42]), "callbacks must be Callback objects or functions"),
])
def test_bad_fit_arguments(kwargs, fragment):
    _, message = _fit_error(kwargs)
    assert re.search(fragment, message), message


@pytest.mark.parametrize("X, y, fragment", [
    (np.zeros((20, 2)), np.zeros(19, dtype=int), "X has 20 samples but y has 19"),
    (np.zeros((20, 3)), None, r"X has shape \(20, 3\), but the network expects \(n_samples, 2\)"),
    (np.where(np.eye(20, 2) == 1, np.nan, 0.0), None, r"X contains NaN or infinite values \(first in row 0\)"),
    (None, np.r_[np.zeros(19), np.nan], "y contains NaN or infinite values"),
    (None, np.r_[np.zeros(19, dtype=int), -2], "y contains label -2 .*labels must be 0..2"),
    (None, np.r_[np.zeros(19, dtype=int), 3], "y contains label 3 .*labels must be 0..2"),
    (None, np.r_[np.zeros(19), 0.5], "whole-number class labels"),
])
def test_bad_training_data(X, y, fragment):
    error, message = _fit_error(X=X, y=y)
    assert isinstance(error, DataError)
    assert re.search(fragment, message), message


class _Snapshots(Callback):
    """The network's parameters at the end of every completed epoch."""

    def on_train_begin(self, network, optimizer, epochs):
        self.network, self.params = network, [network.params.copy()]

    def on_epoch_end(self, epoch, record):
        self.params.append(self.network.params.copy())


@pytest.mark.parametrize("kwargs, lr, epochs", [
    (dict(activation="identity", output="identity", loss="quadratic"), 1e6, 3),
    (dict(activation="relu", output="softmax", loss="cross_entropy"), 1e4, 20),
])
def test_divergence_raises_and_keeps_the_last_good_weights(kwargs, lr, epochs):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((40, 4))
    targets = rng.standard_normal((40, 3)) if kwargs["loss"] == "quadratic" else rng.integers(0, 3, 40)
    net = Network([4, 6, 3], seed=0, **kwargs)
    snapshots = _Snapshots()
    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as excinfo:  # overflow is the point
        net.fit(X, targets, epochs=epochs, batch_size=8, lr=lr, callbacks=[snapshots])
    message = str(excinfo.value)
    assert "learning rate" in message and f"{lr:g}" in message and "\n" not in message
    assert np.all(np.isfinite(net.params))
    assert np.array_equal(net.params, snapshots.params[-1])  # the last completed epoch's weights
    assert len(excinfo.value.history) == len(snapshots.params) - 1


def test_a_blow_up_early_in_a_long_epoch_stops_training_soon_and_names_its_batch():
    """Outputs are checked every few thousand rows, not only at the end of the epoch."""
    rng = np.random.default_rng(1)
    X, Y = rng.standard_normal((20_000, 4)), rng.standard_normal((20_000, 3))
    net = Network([4, 6, 3], activation="identity", output="identity", loss="quadratic", seed=0)
    start = net.params.copy()

    class Count(Callback):
        batches = 0

        def on_batch_end(self, epoch, batch, n_batches):
            Count.batches += 1

    with np.errstate(all="ignore"), pytest.raises(TrainingDiverged) as excinfo:
        net.fit(X, Y, epochs=2, batch_size=10, lr=1e5, callbacks=[Count()])
    assert 0 < Count.batches < 500                       # of 2,000 in the epoch
    batch = int(re.search(r"batch (\d+) of 2000", str(excinfo.value)).group(1))
    assert batch <= 20 and "epoch 1 " in str(excinfo.value)
    assert re.search(r"loss became (nan|inf)", str(excinfo.value))
    assert np.array_equal(net.params, start)             # nothing completed: the initial weights


def test_a_stable_learning_rate_does_not_diverge():
    """The divergence check only fires on a real blow-up (the counterpart of the test above)."""
    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((40, 4)), rng.standard_normal((40, 3))
    net = Network([4, 6, 3], activation="identity", output="identity", loss="quadratic", seed=0)
    history = net.fit(X, Y, epochs=3, batch_size=8, lr=0.01)
    assert len(history) == 3 and all(math.isfinite(v) for v in history["loss"])


# -- real MNIST ---------------------------------------------------------------------------------

def _read_idx_gz(path, header_bytes, count, item_bytes):
    """The first ``count`` items of a gzip-compressed IDX file as a flat uint8 array."""
    with gzip.open(path, "rb") as f:
        f.read(header_bytes)
        data = f.read(count * item_bytes)
    assert len(data) == count * item_bytes, f"{path} is shorter than expected"
    return np.frombuffer(data, dtype=np.uint8)


def test_one_epoch_on_ten_thousand_mnist_digits(mnist_dir):
    X = _read_idx_gz(mnist_dir / "train-images-idx3-ubyte.gz", 16, 10_000, 784).reshape(-1, 784) / 255.0
    y = _read_idx_gz(mnist_dir / "train-labels-idx1-ubyte.gz", 8, 10_000, 1).astype(np.int64)
    X_test = _read_idx_gz(mnist_dir / "t10k-images-idx3-ubyte.gz", 16, 2_000, 784).reshape(-1, 784) / 255.0
    y_test = _read_idx_gz(mnist_dir / "t10k-labels-idx1-ubyte.gz", 8, 2_000, 1).astype(np.int64)
    assert set(np.unique(y)) == set(range(10))

    net = Network([784, 30, 10], seed=0)
    history = net.fit(X, y, epochs=1, batch_size=10, optimizer="sgd", lr=0.1)
    _, accuracy = net.evaluate(X_test, y_test)
    assert accuracy > 0.85
    assert history["accuracy"][0] > 0.7
    assert np.mean(net.predict(X_test) == y_test) == accuracy


def test_a_custom_two_argument_activation_trains_like_the_builtin():
    """The training step writes into preallocated arrays when an activation
    accepts ``out=``; one written against the plain two-argument API must take
    the allocating path and reach the very same weights."""
    from digitnet.nn.activations import Activation, Tanh

    class PlainTanh(Activation):
        name = "tanh"
        output_range = (-1.0, 1.0)

        def forward(self, z):
            return np.tanh(z)

        def backward(self, a, d_loss__d_a):
            return d_loss__d_a * (1.0 - a * a)

    rng = np.random.default_rng(3)
    X, y = rng.normal(size=(40, 5)), rng.integers(0, 3, 40)
    nets = []
    for hidden in (Tanh(), PlainTanh()):
        net = Network([5, 7, 3], activations=[hidden, "softmax"], dtype="float64", seed=11)
        net.fit(X, y, epochs=3, batch_size=8, lr=0.1, optimizer="momentum")
        nets.append(net)
    assert np.allclose(nets[0].params, nets[1].params, rtol=0, atol=1e-12)
    assert not np.array_equal(nets[0].params, Network([5, 7, 3], activations=["tanh", "softmax"],
                                                      dtype="float64", seed=11).params)


def test_an_optimizer_subclass_that_overrides_update_gets_its_update_called():
    """fit's scaled-gradient shortcut must not bypass a user's own update()."""
    from digitnet.nn.optimizers import SGD

    class LoggingSGD(SGD):
        calls = 0

        def update(self, params, grads):
            LoggingSGD.calls += 1
            super().update(params, grads)

    X, y = _blobs(n=30)
    logged, plain = Network([2, 4, 3], dtype=np.float64, seed=1), Network([2, 4, 3], dtype=np.float64, seed=1)
    logged.fit(X, y, epochs=2, batch_size=10, optimizer=LoggingSGD(0.2), seed=3)
    plain.fit(X, y, epochs=2, batch_size=10, optimizer="sgd", lr=0.2, seed=3)
    assert LoggingSGD.calls == 6
    np.testing.assert_allclose(logged.params, plain.params, rtol=1e-12)
