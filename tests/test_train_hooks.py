"""The training loop's hooks the web page's Train view stands on.

``Callback.on_epoch_arrays`` hands a callback the arrays the epoch fills (each
step's outputs, the targets and labels in the epoch's order), so figures
during an epoch cost no extra forward pass; ``StopTraining`` raised by a
callback ends training within one step, leaving the weights of that step.
Real MNIST images, real training.
"""

from __future__ import annotations

import numpy as np
import pytest

from digitnet import Network
from digitnet.data import load_mnist
from digitnet.train import Callback, StopTraining, fit
from digitnet.train.recipes import train_recipe


@pytest.fixture(scope="module")
def mnist_small():
    X, y = load_mnist("train")
    return X[:600], y[:600]


class Recorder(Callback):
    """Reads the epoch's arrays after every step, as the web page's curve does."""

    def __init__(self, network):
        self.network = network
        self.filled = []          # rows filled after each step
        self.epoch_figures = []   # (loss, accuracy) worked out from the arrays at the epoch's end

    def on_epoch_arrays(self, epoch, outputs, targets, labels, batch_size):
        self.arrays = (outputs, targets, labels, batch_size)
        self.sizes = (outputs.shape, targets.shape, labels.shape)

    def on_batch_end(self, epoch, batch, n_batches):
        outputs, _, _, batch_size = self.arrays
        self.filled.append(min((batch + 1) * batch_size, len(outputs)))

    def on_epoch_end(self, epoch, record):
        outputs, targets, labels, _ = self.arrays
        a = self.network.activations[-1].forward(np.array(outputs))
        loss = self.network.loss_of_outputs(a, targets, outputs)
        accuracy = np.mean(self.network.labels_from_outputs(a) == labels)
        self.epoch_figures.append((loss, accuracy, record["loss"], record["accuracy"]))


def test_on_epoch_arrays_holds_what_the_epoch_record_is_made_of(mnist_small):
    X, y = mnist_small
    net = Network([784, 32, 10], seed=0)
    recorder = Recorder(net)
    fit(net, X, y, epochs=2, batch_size=64, optimizer="adam", lr=1e-3, seed=0, callbacks=[recorder])
    assert recorder.sizes == ((600, 10), (600, 10), (600,))
    # After batch b the rows up to min((b+1)·64, 600) are filled: 10 steps an epoch, the last short.
    assert recorder.filled == [64, 128, 192, 256, 320, 384, 448, 512, 576, 600] * 2
    for loss, accuracy, record_loss, record_accuracy in recorder.epoch_figures:
        assert loss == pytest.approx(record_loss, rel=1e-5)     # no L2: the record is the mean loss
        assert accuracy == record_accuracy
    # The labels are the epoch's (shuffled) order of the real labels.
    _, targets, labels, _ = recorder.arrays
    assert sorted(labels.tolist()) == sorted(y.tolist())
    assert np.array_equal(targets.argmax(axis=1), labels)


class StopAt(Callback):
    def __init__(self, step):
        self.step, self.steps = step, 0

    def on_batch_end(self, epoch, batch, n_batches):
        self.steps += 1
        if self.steps == self.step:
            raise StopTraining(f"stopped at step {self.steps}")


def test_stop_training_ends_within_one_step_with_that_steps_weights(mnist_small):
    X, y = mnist_small
    stopped = Network([784, 32, 10], seed=0)
    with pytest.raises(StopTraining, match="step 4"):
        fit(stopped, X, y, epochs=3, batch_size=50, optimizer="sgd", lr=0.1, seed=0, shuffle=False,
            callbacks=[StopAt(4)])
    # The same four steps, and nothing else: a run on the first 200 images, one epoch.
    reference = Network([784, 32, 10], seed=0)
    fit(reference, X[:200], y[:200], epochs=1, batch_size=50, optimizer="sgd", lr=0.1, seed=0, shuffle=False)
    assert np.array_equal(stopped.params, reference.params)


def test_train_recipe_lets_stop_training_through(mnist_small):
    stop = StopAt(3)
    with pytest.raises(StopTraining):
        train_recipe("nielsen", subset=500, epochs=2, callbacks=[stop])
    assert stop.steps == 3


def test_a_loaded_data_set_is_used_as_it_is():
    """train_recipe takes a Dataset already loaded (the web server loads MNIST once for every job)."""
    from digitnet.data import load

    dataset = load("mnist")
    result = train_recipe("nielsen", data=dataset, subset=1000, epochs=1)
    again = train_recipe("nielsen", data="mnist", subset=1000, epochs=1)
    assert np.array_equal(result.network.params, again.network.params)
    assert result.network.metadata["recipe"]["data"] == "mnist"
