"""Random shifts: the right pixels move, nothing else changes, and runs stay reproducible."""

import numpy as np
import pytest

from digitnet import Network
from digitnet.errors import DataError, DigitnetError
from digitnet.train.augment import RandomShift, get_augment
from digitnet.train.batches import _AUGMENT_STREAM


def _shift_by_hand(image, dy, dx):
    """``image`` (h, w) moved down by dy and right by dx, zeros moved in: one pixel at a time."""
    h, w = image.shape
    out = np.zeros_like(image)
    for y in range(h):
        for x in range(w):
            if 0 <= y - dy < h and 0 <= x - dx < w:
                out[y, x] = image[y - dy, x - dx]
    return out


@pytest.mark.parametrize("max_shift, shape", [(1, (5, 5)), (2, (6, 4)), (3, (4, 4))])
def test_every_image_is_moved_as_drawn(max_shift, shape):
    rng = np.random.default_rng(0)
    h, w = shape
    X = rng.random((1000, h * w)).astype(np.float32) + 1     # no zero pixels: every move shows
    moved = X.copy()
    RandomShift(max_shift, shape)(moved, np.random.default_rng(42))
    # the same draws as RandomShift makes: dy for every row, then dx
    draws = np.random.default_rng(42)
    dy = draws.integers(-max_shift, max_shift + 1, len(X))
    dx = draws.integers(-max_shift, max_shift + 1, len(X))
    for row in range(len(X)):
        expected = _shift_by_hand(X[row].reshape(h, w), dy[row], dx[row])
        np.testing.assert_array_equal(moved[row].reshape(h, w), expected)
    # every possible move happened, including none at all
    assert len(set(zip(dy, dx))) == (2 * max_shift + 1) ** 2
    assert moved.dtype == np.float32


def test_square_rows_are_read_as_square_images_and_other_rows_are_refused():
    X = np.arange(2 * 784, dtype=np.float64).reshape(2, 784)
    moved = X.copy()
    RandomShift(1)(moved, np.random.default_rng(3))
    assert moved.shape == X.shape and not np.array_equal(moved, X)
    with pytest.raises(DataError, match="square images.*10 values") as excinfo:
        RandomShift(1)(np.zeros((3, 10)), np.random.default_rng(0))
    assert "\n" not in str(excinfo.value)
    with pytest.raises(DataError, match="4×4 pixels need 16 features"):
        RandomShift(1, (4, 4))(np.zeros((3, 10)), np.random.default_rng(0))


def test_a_zero_shift_changes_nothing():
    X = np.random.default_rng(1).random((5, 9))
    kept = X.copy()
    RandomShift(0)(X, np.random.default_rng(0))
    np.testing.assert_array_equal(X, kept)
    assert get_augment(0) is None and get_augment(None) is None


@pytest.mark.parametrize("bad, message", [(-1, "whole number of pixels"), (1.5, "augment must be"),
                                          ("1", "augment must be"), (True, "augment must be")])
def test_bad_shifts_are_refused(bad, message):
    with pytest.raises(DigitnetError, match=message):
        get_augment(bad)
    with pytest.raises(DigitnetError, match="image_shape"):
        RandomShift(1, image_shape=(0, 4))


def _digits(n=200, seed=0):
    """Tiny 6×6 'images': a bright square whose position depends on the class."""
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    X = 0.1 * rng.random((n, 6, 6))
    for i, label in enumerate(y):
        X[i, 1:3, 1 + label:3 + label] += 1.0
    return X.reshape(n, 36), y


def test_training_with_shifts_is_reproducible_and_leaves_the_data_alone():
    X, y = _digits()
    kept = X.copy()
    runs = []
    for _ in range(2):
        net = Network([36, 12, 3], seed=4)
        net.fit(X, y, epochs=3, batch_size=16, lr=0.3, seed=9, augment=1)
        runs.append(net.params.copy())
    np.testing.assert_array_equal(runs[0], runs[1])
    np.testing.assert_array_equal(X, kept)
    plain = Network([36, 12, 3], seed=4)
    plain.fit(X, y, epochs=3, batch_size=16, lr=0.3, seed=9)
    assert not np.allclose(plain.params, runs[0])        # the shifts did reach the network


def test_the_shifts_of_an_epoch_come_from_seed_and_epoch():
    """Every step sees gathered rows shifted by the (seed, epoch) stream, also without shuffling."""
    X, y = _digits(n=40)
    seen = []

    def recording_shift(rows, rng):
        RandomShift(1)(rows, rng)
        seen.append(rows.copy())

    net = Network([36, 5, 3], seed=0)
    net.fit(X, y, epochs=2, batch_size=8, lr=0.1, seed=5, shuffle=False, augment=recording_shift)
    assert len(seen) == 2                              # one gather of all 40 rows per epoch
    for epoch, rows in enumerate(seen):
        expected = X.astype(np.float32)                # the network's dtype
        RandomShift(1)(expected, np.random.default_rng([5, epoch, _AUGMENT_STREAM]))
        np.testing.assert_array_equal(rows, expected)
    assert not np.array_equal(seen[0], seen[1])


def test_resuming_a_shifted_run_gives_the_uninterrupted_weights():
    X, y = _digits()
    whole = Network([36, 10, 3], seed=1)
    whole.fit(X, y, epochs=4, batch_size=20, optimizer="momentum", lr=0.1, seed=2, augment=1)
    part = Network([36, 10, 3], seed=1)
    from digitnet.nn.optimizers import Momentum
    opt = Momentum(0.1)
    history = part.fit(X, y, epochs=2, batch_size=20, optimizer=opt, seed=2, augment=1)
    part.fit(X, y, epochs=4, batch_size=20, optimizer=opt, seed=2, augment=1, initial_epoch=2,
             history=history)
    np.testing.assert_array_equal(part.params, whole.params)
