"""The presets: their definitions, and each one reproduced quickly on an MNIST subset.

The full runs (every preset on all of MNIST) are benchmarks, not tests:
``benchmarks/presets.py``, results in ``benchmarks/PRESETS.md``.
"""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
import sys

import numpy as np
import pytest

from digitnet.errors import DigitnetError
from digitnet.modelfile import load_model
from digitnet.recipes import (PRESETS, Preset, TrainingInterrupted, get_preset, train_recipe)

# See tests/test_cli.py: small matrices train faster on one thread of a busy machine.
_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def cache_env(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "digitnet-cache"
    cache.mkdir(exist_ok=True)
    return dict(os.environ, DIGITNET_CACHE_DIR=str(cache), **_THREADS)


@pytest.fixture(autouse=True)
def private_cache(cache_env, monkeypatch):
    # In-process runs decode MNIST into the same private cache as the subprocesses.
    monkeypatch.setenv("DIGITNET_CACHE_DIR", cache_env["DIGITNET_CACHE_DIR"])


# -- the definitions ------------------------------------------------------------------------

def test_every_seed_recipe_is_there_and_best_is_the_default():
    assert list(PRESETS) == ["nielsen", "nielsen-deep", "nielsen-ce", "raschka", "zhang",
                             "softmax-mse", "xor", "best"]
    from digitnet.recipes import DEFAULT_PRESET

    assert DEFAULT_PRESET == "best"


@pytest.mark.parametrize("name", list(PRESETS))
def test_preset_is_complete_and_buildable(name):
    preset = PRESETS[name]
    for field in ("source", "published", "notes", "loss", "init", "optimizer", "scale", "split"):
        assert getattr(preset, field), field
    assert len(preset.activations) == len(preset.sizes) - 1
    preset.check()
    net = preset.build_network(seed=0)
    assert net.sizes == list(preset.sizes)
    assert [a.name for a in net.activations] == list(preset.activations)
    assert Preset.from_dict(preset.to_dict()) == preset


def test_seed_recipes_match_their_sources():
    nielsen = get_preset("nielsen")
    assert (nielsen.sizes, nielsen.activations, nielsen.loss, nielsen.init) == \
        ((784, 30, 10), ("sigmoid", "sigmoid"), "quadratic", "normal")
    assert (nielsen.optimizer, nielsen.lr, nielsen.batch_size, nielsen.epochs, nielsen.split) == \
        ("sgd", 3.0, 10, 30, "nielsen")
    assert get_preset("nielsen-deep").build_network().n_params == 13_002
    ce = get_preset("nielsen-ce")
    assert (ce.sizes, ce.loss, ce.init, ce.l2, ce.lr) == \
        ((784, 100, 10), "binary_cross_entropy", "normal_scaled", 5.0, 0.5)
    raschka = get_preset("raschka")
    assert (raschka.sizes, raschka.loss, raschka.init, raschka.batch_size, raschka.epochs) == \
        ((784, 50, 10), "mse", "normal_0.1", 100, 50)
    assert (raschka.scale, raschka.split, raschka.lr) == ("symmetric", "raschka", 1.0)
    assert "lr = 1.0" in raschka.notes
    zhang = get_preset("zhang")
    assert (zhang.sizes, zhang.activations, zhang.init, zhang.batch_size, zhang.lr, zhang.epochs) \
        == ((784, 10, 10), ("relu", "softmax"), "uniform", None, 0.1, 500)
    assert (zhang.split, zhang.reported_on) == ("zhang", "validation")
    smse = get_preset("softmax-mse")
    assert (smse.sizes, smse.activations, smse.loss, smse.batch_size) == \
        ((784, 128, 64, 10), ("sigmoid", "sigmoid", "softmax"), "quadratic", 1)
    xor = get_preset("xor")
    assert (xor.sizes, xor.data, xor.batch_size) == ((3, 4, 1), "xor", None)


def test_unknown_preset_lists_the_names():
    with pytest.raises(DigitnetError, match="unknown preset 'nope'.*nielsen.*best"):
        get_preset("nope")


def test_overrides_keep_activations_when_layers_change():
    deeper = get_preset("nielsen").with_overrides({"sizes": [784, 50, 40, 10], "lr": 0.5})
    assert deeper.activations == ("sigmoid", "sigmoid", "sigmoid") and deeper.lr == 0.5
    relu = get_preset("nielsen").with_overrides({"activation": "relu", "output": "softmax",
                                                 "loss": "cross_entropy"})
    assert relu.activations == ("relu", "softmax")
    assert get_preset("nielsen").activations == ("sigmoid", "sigmoid")  # presets are not changed
    with pytest.raises(DigitnetError, match="unknown recipe fields"):
        get_preset("best").with_overrides({"momentum": 0.5})


@pytest.mark.parametrize("change, message", [
    ({"epochs": 0}, "epochs"), ({"batch_size": 0}, "batch size"), ({"l2": -1.0}, "l2"),
    ({"optimizer": "rmsprop"}, "unknown optimizer"), ({"lr": -1.0}, "learning rate"),
    ({"schedule": "linear"}, "unknown schedule"), ({"split": "random"}, "unknown split"),
    ({"scale": "raw"}, "scale"), ({"shift": -1}, "shift"), ({"shift": 9}, "shift"),
    ({"shift": 1.5}, "shift"),
])
def test_check_rejects_unusable_fields(change, message):
    with pytest.raises(DigitnetError, match=message):
        dataclasses.replace(get_preset("best"), **change).check()


# -- each recipe, reproduced on a subset through the command -------------------------------------

# (preset, training rows, epochs, floor, which accuracy). Floors sit a few points under what
# the seeded runs reach (in brackets), far above chance (10%).
QUICK_RUNS = [
    ("nielsen", 10_000, 3, 0.88, "test"),        # [89.4%]
    ("nielsen-deep", 10_000, 3, 0.84, "test"),   # [86.6%]
    ("nielsen-ce", 10_000, 3, 0.91, "test"),     # [93.4%]
    ("raschka", 10_000, 10, 0.80, "test"),       # [83.0%]
    ("zhang", 5_000, 150, 0.65, "dev"),          # [71.5%]
    ("softmax-mse", 3_000, 1, 0.75, "test"),     # [82.4%]
    ("best", 10_000, 2, 0.90, "test"),           # [91.8%]
]


@pytest.mark.slow
@pytest.mark.parametrize("name, subset, epochs, floor, reported", QUICK_RUNS,
                         ids=[run[0] for run in QUICK_RUNS])
def test_preset_learns_on_a_subset(cache_env, tmp_path, name, subset, epochs, floor, reported):
    proc = subprocess.run(
        [sys.executable, "-m", "digitnet", "train", "--preset", name, "--subset", str(subset),
         "--epochs", str(epochs), "--out", "m.npz", "--no-checkpoint"],
        cwd=tmp_path, env=cache_env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    match = re.search(rf"^{reported} accuracy: ([0-9.]+)%", proc.stdout, re.MULTILINE)
    assert match, proc.stdout
    assert float(match.group(1)) / 100 >= floor
    # The saved model is the preset's recipe, nothing else.
    preset = PRESETS[name]
    net = load_model(tmp_path / "m.npz")
    recipe = net.metadata["recipe"]
    assert recipe == {**preset.to_dict(), "epochs": epochs, "overrides": {}, "seed": 0,
                      "data": "mnist", "subset": subset}
    assert net.get_config()["init"] == [preset.init] * (len(preset.sizes) - 1)
    assert net.metadata["preprocessing"]["scale"] == preset.scale
    assert len(net.metadata["history"]["records"]) == epochs
    assert (net.metadata["history"]["records"][-1]["val_accuracy"] is None) == \
        (preset.split == "standard")


def test_xor_learns_the_table():
    result = train_recipe("xor")
    assert result.test_accuracy == 1.0 and result.accuracy == 1.0
    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    outputs = result.network.predict_proba(X)[:, 0]
    assert np.all(np.abs(outputs - np.array([0, 1, 1, 0])) < 0.1), outputs


# -- train_recipe, the API ----------------------------------------------------------------------

def test_train_recipe_result_and_saved_model(tmp_path):
    result = train_recipe("zhang", subset=2000, epochs=30, out=tmp_path / "z.npz",
                          overrides={"lr": 0.2})
    assert result.preset.lr == 0.2 and result.preset.epochs == 30
    assert result.path == tmp_path / "z.npz" and result.seconds > 0
    assert len(result.history) == 30 and result.history.seed == 0
    # zhang's headline figure is its dev set: the first 1,000 training images.
    assert result.accuracy == result.val_accuracy
    from digitnet.data import load

    data = load("mnist")
    assert result.val_accuracy == pytest.approx(
        np.mean(result.network.predict(data.X_train[:1000]) == data.y_train[:1000]))
    assert result.test_accuracy == pytest.approx(
        np.mean(result.network.predict(data.X_test) == data.y_test))
    header = load_model(result.path).metadata
    assert header["recipe"]["overrides"] == {"lr": 0.2} and header["recipe"]["lr"] == 0.2
    assert header["evaluation"]["val_accuracy"] == pytest.approx(result.val_accuracy)


def test_interrupt_keeps_the_last_completed_epoch(tmp_path):
    def stop_in_epoch_3(epoch, record):
        if epoch == 2:
            raise KeyboardInterrupt

    # with random shifts: a resumed run must also draw the same shifts
    args = dict(subset=1000, overrides={"sizes": [784, 16, 10], "schedule": None, "shift": 1})
    with pytest.raises(TrainingInterrupted) as caught:
        train_recipe("best", epochs=5, out=tmp_path / "cut.npz", checkpoint=tmp_path / "c.npz",
                     callbacks=[stop_in_epoch_3], **args)
    kept = caught.value.result
    # The callback runs after epoch 3's snapshot: epoch 3 is the last completed one.
    assert kept.epochs_done == 3 and kept.path == tmp_path / "cut.npz"
    assert load_model(kept.path).metadata["recipe"]["shift"] == 1
    straight = train_recipe("best", epochs=3, **args)
    assert np.array_equal(load_model(kept.path).params, straight.network.params)
    resumed = train_recipe(resume=tmp_path / "c.npz", epochs=5)
    full = train_recipe("best", epochs=5, **args)
    assert np.array_equal(resumed.network.params, full.network.params)


def test_resume_refuses_a_different_recipe(tmp_path):
    train_recipe("xor", epochs=3, checkpoint=tmp_path / "x.ckpt.npz")
    with pytest.raises(DigitnetError, match="only the number of epochs"):
        train_recipe(resume=tmp_path / "x.ckpt.npz", overrides={"lr": 1.0})
    with pytest.raises(DigitnetError, match="already trained 3"):
        train_recipe(resume=tmp_path / "x.ckpt.npz", epochs=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"subset": 0}, "subset"), ({"seed": -1}, "seed"), ({"data": "no-such-set"}, "no-such-set"),
    ({"overrides": {"sizes": [784, 0, 10]}}, "at least one unit"),
])
def test_train_recipe_rejects_bad_arguments(kwargs, message):
    with pytest.raises(DigitnetError, match=message):
        train_recipe("best", epochs=1, **kwargs)
