"""Elastic and affine distortions, and dropout: what they compute, that they are seeded, that
resumed runs stay bit-exact, that predictions never drop, and that bad values are one line."""

import dataclasses
import functools

import numpy as np
import pytest

from digitnet import Network, check_gradients, load_model
from digitnet.app.cli import main
from digitnet.data import load_mnist
from digitnet.errors import DigitnetError
from digitnet.nn.optimizers import Momentum
from digitnet.train.augment import Compose, Distort, RandomShift, fade_strength, get_augment, resample
from digitnet.train.batches import _DROPOUT_STREAM
from digitnet.train.recipes import get_preset, train_recipe


# -- the distortions ----------------------------------------------------------------------------

def test_resampling_is_bilinear_with_zeros_outside():
    rng = np.random.default_rng(0)
    images = rng.random((3, 5, 6)).astype(np.float32)
    dy = rng.uniform(-2, 2, (3, 5, 6)).astype(np.float32)
    dx = rng.uniform(-2, 2, (3, 5, 6)).astype(np.float32)
    out = resample(images, dy.copy(), dx.copy())

    def pixel(i, y, x):
        return images[i, y, x] if 0 <= y < 5 and 0 <= x < 6 else 0.0

    for i, y, x in np.ndindex(3, 5, 6):             # one pixel at a time, by hand
        sy, sx = y + float(dy[i, y, x]), x + float(dx[i, y, x])
        y0, x0 = int(np.floor(sy)), int(np.floor(sx))
        fy, fx = sy - y0, sx - x0
        expected = ((1 - fy) * ((1 - fx) * pixel(i, y0, x0) + fx * pixel(i, y0, x0 + 1))
                    + fy * ((1 - fx) * pixel(i, y0 + 1, x0) + fx * pixel(i, y0 + 1, x0 + 1)))
        assert out[i, y, x] == pytest.approx(expected, abs=1e-5)


def test_whole_pixel_offsets_move_the_image():
    images = np.random.default_rng(1).random((2, 7, 7)).astype(np.float32)
    dy, dx = np.full((2, 7, 7), -1, np.float32), np.full((2, 7, 7), 2, np.float32)
    out = resample(images, dy, dx)              # pixel (y, x) reads (y − 1, x + 2)
    np.testing.assert_allclose(out[:, 1:, :-2], images[:, :-1, 2:], atol=1e-6)
    assert not out[:, 0, :].any() and not out[:, :, -2:].any()


def test_the_affine_map_is_the_one_described():
    """A pure rotation (its angle is the generator's first draw) turns the sampling grid about the centre."""
    d = Distort(rotate=30)
    rng = np.random.default_rng(3)
    angle = np.deg2rad(np.random.default_rng(3).uniform(-30, 30, 1))[0]
    dy, dx = d.displacements(1, 9, 9, rng)
    y, x = np.mgrid[0:9, 0:9] - 4.0
    c, s = np.cos(angle), np.sin(angle)
    np.testing.assert_allclose(dy[0], c * y - s * x - y, atol=1e-5)
    np.testing.assert_allclose(dx[0], s * y + c * x - x, atol=1e-5)


def test_the_elastic_field_is_smooth_and_of_the_expected_size():
    d = Distort(alpha=34, sigma=4)
    dy, dx = d.displacements(500, 28, 28, np.random.default_rng(0))
    centre = dy[:, 10:18, 10:18]
    # Simard's field: uniform noise in −1…1 (std 1/√3) smoothed by a 2-D Gaussian
    # (std shrinks by 1/(2σ√π)), times α: about 1.4 pixels.
    assert centre.std() == pytest.approx(34 / np.sqrt(3) / (2 * 4 * np.sqrt(np.pi)), rel=0.1)
    assert abs(centre.mean()) < 0.1
    # smooth: neighbours move almost together
    assert np.abs(np.diff(dy, axis=2)).mean() < 0.25 * np.abs(dy).mean()
    assert not np.array_equal(dy, dx)


def test_distortions_are_reproducible_and_change_the_images():
    X = _mnist("test")[0][:64]
    d = Distort(alpha=34, sigma=4, rotate=10, zoom=0.1, shear=0.15)
    a, b = X.copy(), X.copy()
    d(a, np.random.default_rng(7))
    Distort(alpha=34, sigma=4, rotate=10, zoom=0.1, shear=0.15)(b, np.random.default_rng(7))
    np.testing.assert_array_equal(a, b)
    assert a.dtype == np.float32 and a.min() >= 0 and a.max() <= 1 + 1e-6
    moved = np.abs(a - X).sum(axis=1) / X.sum(axis=1)
    assert (moved > 0.05).all()                              # every image changed
    # the ink stays about the same (no digit vanishes or doubles)
    assert np.median(a.sum(axis=1) / X.sum(axis=1)) == pytest.approx(1.0, abs=0.15)
    c = X.copy()
    d(c, np.random.default_rng(8))
    assert not np.array_equal(a, c)
    untouched = X.copy()
    Distort()(untouched, np.random.default_rng(0))           # nothing asked: nothing changes
    np.testing.assert_array_equal(untouched, X)


def test_distorted_digits_keep_their_labels():
    """A network trained on distorted digits reads distorted test digits nearly as well as plain
    ones: the distortions change the handwriting, not the digit."""
    X, y = _mnist("train")
    X_test, y_test = _mnist("test")
    X_test, y_test = X_test[:2000], y_test[:2000]
    # The record's distortions at full strength: no fade in three epochs, nor on the test digits
    record = dataclasses.replace(get_preset("record"), fade=0)
    net = Network([784, 256, 10], seed=0)
    net.fit(X[:15000], y[:15000], epochs=3, batch_size=100, optimizer="adam", lr=2e-3, seed=0,
            augment=record.make_augment())
    distorted = X_test.copy()
    record.make_augment()(distorted, np.random.default_rng(0))
    assert np.abs(distorted - X_test).mean() > 0.05          # they are changed, and much
    on_plain, on_distorted = np.mean(net.predict(X_test) == y_test), np.mean(net.predict(distorted) == y_test)
    # (measured: 94.4% plain, 86.4% distorted; the record preset's full runs read 98.7% of their
    # distorted training images right after 80 epochs, before the fade)
    assert on_plain > 0.93 and on_distorted > 0.83 and on_distorted > on_plain - 0.10
    scrambled = np.random.default_rng(0).permuted(distorted, axis=1)   # the same pixels, no digit
    assert np.mean(net.predict(scrambled) == y_test) < 0.3


def test_compose_and_get_augment():
    assert get_augment([]) is None and get_augment([0]) is None
    shift = get_augment([1])
    assert isinstance(shift, RandomShift)
    both = get_augment([Distort(rotate=5), 1])
    assert isinstance(both, Compose) and both.shape_for(784) == (28, 28)
    X = _mnist("test")[0][:8]
    by_hand = X.copy()
    rng = np.random.default_rng(2)
    Distort(rotate=5)(by_hand, rng)
    RandomShift(1)(by_hand, rng)
    composed = X.copy()
    both(composed, np.random.default_rng(2))
    np.testing.assert_array_equal(composed, by_hand)


@pytest.mark.parametrize("kwargs, message", [
    ({"alpha": -1}, "alpha must be ≥ 0"), ({"sigma": 0}, "sigma must be > 0"),
    ({"rotate": 120}, "rotation"), ({"zoom": 1.5}, "zoom"), ({"shear": -0.1}, "shear"),
    ({"alpha": "much"}, "must be a number"), ({"alpha": float("nan")}, "alpha"),
    ({"fade": -1}, "whole number of epochs"), ({"fade": 2.5}, "whole number of epochs"),
])
def test_bad_distortions_are_one_line(kwargs, message):
    with pytest.raises(DigitnetError, match=message) as caught:
        Distort(**kwargs)
    assert "\n" not in str(caught.value)


# -- the fade -----------------------------------------------------------------------------------

def test_the_fade_steps_down_to_nothing_over_the_last_epochs():
    assert [fade_strength(e, 10, 4) for e in range(10)] == [1] * 6 + [0.75, 0.5, 0.25, 0.0]
    assert [fade_strength(e, 5, 0) for e in range(5)] == [1.0] * 5
    assert [fade_strength(e, 2, 4) for e in range(2)] == [0.25, 0.0]   # longer than the run


def test_a_fading_distortion_is_the_plain_one_until_it_fades_and_nothing_at_the_end():
    X = _mnist("test")[0][:64]
    kwargs = dict(alpha=34, sigma=6, rotate=10, zoom=0.1, shear=0.1)
    plain, fading = Distort(**kwargs), Distort(**kwargs, fade=2)
    fading.set_epoch(7, 10)                           # before the fade: bit for bit the same images
    a, b = X.copy(), X.copy()
    plain(a, np.random.default_rng(3))
    fading(b, np.random.default_rng(3))
    np.testing.assert_array_equal(a, b)
    fading.set_epoch(9, 10)                           # the last epoch: the digits as they are
    c = X.copy()
    fading(c, np.random.default_rng(3))
    np.testing.assert_array_equal(c, X)
    # Half way through the fade the elastic field is half as large (it is linear in α)
    elastic, half = Distort(alpha=34, sigma=6), Distort(alpha=34, sigma=6, fade=2)
    half.set_epoch(8, 10)
    assert half.strength == 0.5
    full = [d.copy() for d in elastic.displacements(5, 28, 28, np.random.default_rng(4))]
    halved = half.displacements(5, 28, 28, np.random.default_rng(4))
    for f, h in zip(full, halved):
        np.testing.assert_allclose(h, f / 2, rtol=1e-5, atol=1e-6)
        assert np.abs(f).max() > 0.5


def test_fit_fades_the_distortions_and_resumes_bit_exact():
    X, y = _small(300)
    make = lambda: [Distort(alpha=30, sigma=4, rotate=8, zoom=0.1, shear=0.1, fade=2), 1]
    kwargs = dict(batch_size=50, seed=2, dropout=0.2)
    whole = Network([784, 24, 10], seed=1)
    whole.fit(X, y, epochs=4, optimizer="momentum", lr=0.05, augment=make(), **kwargs)
    # Stopped after epoch 2 of 4 (a callback asks to stop) and continued
    part, opt = Network([784, 24, 10], seed=1), Momentum(0.05)
    history = part.fit(X, y, epochs=4, optimizer=opt, augment=make(), **kwargs,
                       callbacks=[lambda epoch, record: epoch == 1])
    assert len(history.records) == 2
    part.fit(X, y, epochs=4, optimizer=opt, initial_epoch=2, history=history, augment=make(), **kwargs)
    np.testing.assert_array_equal(part.params, whole.params)
    # The fade is felt: its last epoch sees the shifted digits only, not the distorted ones
    only_shifts = Network([784, 24, 10], seed=1)
    resumed = Momentum(0.05)
    history = only_shifts.fit(X, y, epochs=4, optimizer=resumed, augment=make(), **kwargs,
                              callbacks=[lambda epoch, record: epoch == 2])
    only_shifts.fit(X, y, epochs=4, optimizer=resumed, initial_epoch=3, history=history, augment=1,
                    **kwargs)
    np.testing.assert_array_equal(only_shifts.params, whole.params)
    never_fading = Network([784, 24, 10], seed=1)
    never_fading.fit(X, y, epochs=4, optimizer="momentum", lr=0.05,
                     augment=[Distort(alpha=30, sigma=4, rotate=8, zoom=0.1, shear=0.1), 1], **kwargs)
    assert not np.array_equal(never_fading.params, whole.params)


# -- dropout ------------------------------------------------------------------------------------

def test_masks_drop_the_asked_share_and_scale_the_rest():
    net = Network([20, 300, 200, 4], seed=0)
    masks = net.dropout_masks(100, [0.5, 0.0], np.random.default_rng(0))
    assert masks[1] is None
    m = masks[0]
    assert m.shape == (100, 300) and set(np.unique(m)) == {0.0, 2.0}
    assert (m == 0).mean() == pytest.approx(0.5, abs=0.02)


@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh"])
def test_gradients_with_fixed_masks_match_finite_differences(activation):
    rng = np.random.default_rng(1)
    X, y = rng.random((6, 8)), rng.integers(0, 3, 6)
    net = Network([8, 7, 6, 3], activation=activation, seed=2, dtype="float64")
    for b in net.biases:         # nonzero biases: no ReLU input sits exactly on its kink
        b[...] = rng.normal(0, 0.1, b.shape)
    masks = [m.copy() for m in net.dropout_masks(6, [0.5, 0.3], np.random.default_rng(4))]
    assert any((m == 0).any() for m in masks)
    errors = check_gradients(net, X, y, masks=masks, l2=0.3)
    assert max(errors.values()) < 1e-6, errors
    # and the masks matter: the thinned network's gradient is not the full one
    dropped = net.backward(X, y, masks=masks)[1]
    full = net.backward(X, y)[1]
    assert not np.allclose(dropped[0][0], full[0][0])
    # a dropped unit's incoming weights get no gradient from that sample alone
    one = [masks[0][:1], masks[1][:1]]
    grad = net.backward(X[:1], y[:1], masks=one)[1][0][0]
    assert not grad[one[0][0] == 0].any()


def test_bad_masks_are_refused():
    net = Network([8, 7, 3], seed=0)
    with pytest.raises(DigitnetError, match="one array .* per hidden layer"):
        net.backward(np.zeros((2, 8)), [0, 1], masks=[None, None])
    with pytest.raises(DigitnetError, match=r"hidden layer 1 must be \(2, 7\)"):
        net.backward(np.zeros((2, 8)), [0, 1], masks=[np.ones((2, 6))])


@functools.lru_cache(maxsize=None)
def _mnist(part):
    X, y = load_mnist(part)
    X.flags.writeable = y.flags.writeable = False       # shared between tests: read only
    return X, y


def _small(n=600):
    X, y = _mnist("train")
    return X[:n], y[:n]


def test_dropout_is_reproducible_changes_training_and_never_touches_predictions():
    X, y = _small()
    runs = []
    for _ in range(2):
        net = Network([784, 32, 16, 10], seed=3)
        net.fit(X, y, epochs=2, batch_size=50, lr=0.1, seed=1, dropout=0.3)
        runs.append(net)
    np.testing.assert_array_equal(runs[0].params, runs[1].params)
    plain = Network([784, 32, 16, 10], seed=3)
    plain.fit(X, y, epochs=2, batch_size=50, lr=0.1, seed=1)
    assert not np.allclose(plain.params, runs[0].params)
    # predictions are deterministic: no masks outside training
    net = runs[0]
    first = net.predict_proba(X[:100])
    np.testing.assert_array_equal(first, net.predict_proba(X[:100]))
    np.testing.assert_array_equal(first, net.forward(X[:100])[-1])
    loss, _ = net.evaluate(X[:100], y[:100])
    assert loss == net.loss_value(X[:100], y[:100])


def test_dropout_draws_from_its_own_stream():
    """Turning dropout on leaves the order and the augmentation's draws as they were."""
    X, y = _small(64)
    seen = []

    def record(rows, rng):
        seen.append(rows.copy())

    for dropout in (0.0, 0.5):
        Network([784, 8, 10], seed=0).fit(X, y, epochs=1, batch_size=16, lr=0.1, seed=5,
                                          augment=record, dropout=dropout)
    np.testing.assert_array_equal(seen[0], seen[1])
    # and the masks of epoch e come from (seed, e, 2)
    net = Network([784, 8, 10], seed=0)
    expected = net.dropout_masks(16, [0.5], np.random.default_rng([5, 0, _DROPOUT_STREAM]))[0].copy()
    masks_seen = []
    original = Network.dropout_masks

    class Spy(Network):
        def dropout_masks(self, n, rates, rng):
            masks = original(self, n, rates, rng)
            masks_seen.append(masks[0].copy())
            return masks

    Spy([784, 8, 10], seed=0).fit(X, y, epochs=1, batch_size=16, lr=0.1, seed=5, dropout=0.5)
    np.testing.assert_array_equal(masks_seen[0], expected)


@pytest.mark.parametrize("bad, message", [(1.0, "not including"), (-0.1, "not including"),
                                          ([0.5], "one per hidden layer"), ("half", "not including"),
                                          (True, "not including")])
def test_bad_dropout_is_one_line(bad, message):
    X, y = np.zeros((20, 784), np.float32), np.arange(20) % 10
    with pytest.raises(DigitnetError, match=message) as caught:
        Network([784, 8, 8, 10]).fit(X, y, epochs=1, dropout=bad)
    assert "\n" not in str(caught.value)


def test_resuming_with_distortions_and_dropout_is_bit_exact():
    X, y = _small(300)
    distort = Distort(alpha=30, sigma=4, rotate=8, zoom=0.1, shear=0.1)
    kwargs = dict(batch_size=50, seed=2, augment=[distort, 1], dropout=[0.2, 0.4])
    whole = Network([784, 24, 12, 10], seed=1)
    whole.fit(X, y, epochs=4, optimizer="momentum", lr=0.05, **kwargs)
    part = Network([784, 24, 12, 10], seed=1)
    opt = Momentum(0.05)
    history = part.fit(X, y, epochs=2, optimizer=opt, **kwargs)
    part.fit(X, y, epochs=4, optimizer=opt, initial_epoch=2, history=history, **kwargs)
    np.testing.assert_array_equal(part.params, whole.params)


def test_prefetching_in_a_thread_changes_nothing(monkeypatch):
    """The next chunk is distorted in a background thread: the weights are those of the plain loop."""
    import digitnet.train.loop as loop

    X, y = _small(2600)           # three chunks of ~1,000 rows, the last one short
    runs = {}
    for prefetch in (True, False):
        monkeypatch.setattr(loop, "_PREFETCH", prefetch)
        net = Network([784, 16, 10], seed=0)
        net.fit(X, y, epochs=2, batch_size=100, lr=0.1, seed=3, dropout=0.2,
                augment=[Distort(alpha=20, sigma=4, rotate=5), 1])
        runs[prefetch] = net.params
    np.testing.assert_array_equal(runs[True], runs[False])


# -- recipes, model files, the command line -------------------------------------------------------

_SMALL_RECIPE = {"sizes": [784, 16, 10], "schedule": None, "elastic": 30.0, "elastic_sigma": 5.0,
                 "rotate": 10.0, "zoom": 0.1, "shear": 0.1, "dropout": 0.25}


def test_a_recipe_with_distortions_and_dropout_resumes_bit_exact(tmp_path):
    args = dict(subset=400, overrides=_SMALL_RECIPE)
    train_recipe("best", epochs=2, checkpoint=tmp_path / "c.npz", **args)
    resumed = train_recipe(resume=tmp_path / "c.npz", epochs=3, out=tmp_path / "r.npz")
    straight = train_recipe("best", epochs=3, **args)
    np.testing.assert_array_equal(resumed.network.params, straight.network.params)
    recipe = load_model(tmp_path / "r.npz").metadata["recipe"]
    assert {k: recipe[k] for k in _SMALL_RECIPE if k != "sizes"} == \
        {k: v for k, v in _SMALL_RECIPE.items() if k != "sizes"}
    without = train_recipe("best", epochs=3, subset=400,
                           overrides={**_SMALL_RECIPE, "elastic": 0.0, "dropout": 0.0})
    assert not np.array_equal(without.network.params, straight.network.params)


@pytest.mark.parametrize("field, value, message", [
    ("dropout", 1.0, "not including"), ("elastic", -1.0, "alpha must be ≥ 0"),
    ("elastic_sigma", 0.0, "sigma must be > 0"), ("rotate", 100.0, "rotation"),
])
def test_bad_recipe_values_are_one_line(field, value, message):
    for name in ("best", "record"):      # checked whether or not the recipe distorts at all
        with pytest.raises(DigitnetError, match=message):
            get_preset(name).with_overrides({field: value}).check()


@pytest.mark.parametrize("flags, message", [
    (["--dropout", "1"], "--dropout: is the probability"),
    (["--elastic", "-34"], "--elastic: alpha"),
    (["--elastic", "34,0"], "sigma"),
    (["--affine", "10,0.1"], "DEGREES,ZOOM,SHEAR"),
    (["--affine", "10,2,0"], "the zoom must be"),
    (["--fade", "-2"], "--fade: must be 0 or more"),
])
def test_bad_flags_are_one_line(tmp_path, monkeypatch, capsys, flags, message):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as caught:
        main(["train", *flags])
    err = capsys.readouterr().err
    assert caught.value.code == 2
    assert err.count("\n") == 1 and message in err and "Traceback" not in err
    assert list(tmp_path.iterdir()) == []


def test_a_fade_without_distortions_is_one_line(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--fade", "3", "--subset", "100"]) == 2      # best only shifts
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "--fade 3 weakens the distortions" in err
    assert list(tmp_path.iterdir()) == []
    # A preset's own fade, its distortions turned off: nothing left to fade, nothing said
    assert main(["train", "--preset", "record", "--fade", "5", "--elastic", "0", "--affine", "0,0,0",
                 "--layers", "784,8,10", "--epochs", "1", "--subset", "100", "--no-checkpoint"]) == 2
    preset = get_preset("record").with_overrides({"fade": 5, "elastic": 0.0, "rotate": 0.0,
                                                  "zoom": 0.0, "shear": 0.0})
    preset.check()
    assert preset.make_augment() is None and "fad" not in preset.augmentation_text()


def test_train_flags_reach_the_model_and_plot_augment_draws_it(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train", "--layers", "784,16,10", "--subset", "300", "--epochs", "1",
                 "--elastic", "30,5", "--affine", "10,0.1,0.1", "--dropout", "0.25", "--fade", "1",
                 "--out", "m.npz", "--no-checkpoint"]) == 0
    out = capsys.readouterr().out
    assert "random elastic α 30, σ 5" in out and "dropout 0.25" in out
    assert "fading to none over the last 1 epochs" in out
    recipe = load_model(tmp_path / "m.npz").metadata["recipe"]
    assert (recipe["elastic"], recipe["elastic_sigma"], recipe["rotate"], recipe["zoom"],
            recipe["shear"], recipe["dropout"], recipe["fade"]) == (30, 5, 10, 0.1, 0.1, 0.25, 1)
    assert main(["info", "m.npz"]) == 0
    out = capsys.readouterr().out
    assert "elastic α 30, σ 5" in out and "dropout 0.25" in out and "over the last 1 epochs" in out
    pytest.importorskip("matplotlib")
    for source, name in (("m.npz", "model.png"), ("record", "record.png")):
        assert main(["plot", "augment", source, "--out", name]) == 0
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["plot", "augment", "nielsen", "--out", "n.png"]) == 2
    err = capsys.readouterr().err
    assert "nothing to draw" in err and err.count("\n") == 1 and not (tmp_path / "n.png").exists()
