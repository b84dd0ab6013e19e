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
from digitnet.files.modelfile import load_model
from digitnet.train.recipes import (
    PRESETS,
    Preset,
    TrainingInterrupted,
    get_preset,
    train_recipe,
)

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
                             "softmax-mse", "xor", "best", "record"]
    from digitnet.train.recipes import DEFAULT_PRESET

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
        get_preset("best").with_overrides({"colour": 0.5})


def test_optimizer_hyperparameters_are_recipe_settings():
    best = get_preset("best")
    assert best.optimizer_options == {"momentum": 0.9}
    faster = best.with_overrides({"momentum": 0.95})
    assert faster.optimizer_options == {"momentum": 0.95} and faster.make_optimizer().momentum == 0.95
    # a new optimiser drops the settings it does not take, and keeps the ones given with it
    adam = best.with_overrides({"optimizer": "adam", "beta2": 0.99})
    assert adam.optimizer_options == {"beta2": 0.99}
    assert (adam.make_optimizer().beta1, adam.make_optimizer().beta2) == (0.9, 0.99)
    with pytest.raises(DigitnetError, match="the sgd optimizer has no setting momentum"):
        get_preset("nielsen").with_overrides({"momentum": 0.5}).check()
    with pytest.raises(DigitnetError, match="momentum must be below 1"):
        best.with_overrides({"momentum": 1.5}).check()


def test_a_recipe_s_optimizer_settings_change_the_run_and_are_recorded(tmp_path):
    runs = {}
    for mu in (0.5, 0.9):
        runs[mu] = train_recipe("best", subset=640, epochs=1, overrides={"momentum": mu, "shift": 0},
                                out=tmp_path / f"m{mu}.npz", checkpoint=None)
    assert not np.array_equal(runs[0.5].network.params, runs[0.9].network.params)
    recipe = load_model(tmp_path / "m0.5.npz").metadata["recipe"]
    assert recipe["optimizer_options"] == {"momentum": 0.5}


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
    with pytest.raises(DigitnetError, match="only the number of epochs and the learning rate"):
        train_recipe(resume=tmp_path / "x.ckpt.npz", overrides={"l2": 1.0})
    with pytest.raises(DigitnetError, match="already trained 3"):
        train_recipe(resume=tmp_path / "x.ckpt.npz", epochs=2)


@pytest.mark.parametrize("kwargs, message", [
    ({"subset": 0}, "subset"), ({"seed": -1}, "seed"), ({"data": "no-such-set"}, "no-such-set"),
    ({"overrides": {"sizes": [784, 0, 10]}}, "at least one unit"),
])
def test_train_recipe_rejects_bad_arguments(kwargs, message):
    with pytest.raises(DigitnetError, match=message):
        train_recipe("best", epochs=1, **kwargs)


# -- resuming at another rate, and divergence ----------------------------------------------------

def test_resume_at_another_learning_rate(tmp_path):
    args = dict(subset=1000, overrides={"sizes": [784, 16, 10], "schedule": None, "shift": 0})
    train_recipe("best", epochs=2, checkpoint=tmp_path / "c.npz", **args)
    same = train_recipe(resume=tmp_path / "c.npz", epochs=3, overrides={"lr": 0.1})
    assert np.array_equal(same.network.params, train_recipe("best", epochs=3, **args).network.params)

    train_recipe("best", epochs=2, checkpoint=tmp_path / "d.npz", **args)
    slower = train_recipe(resume=tmp_path / "d.npz", epochs=3, overrides={"lr": 0.01},
                          out=tmp_path / "slower.npz")
    assert [r["lr"] for r in slower.history.records] == pytest.approx([0.1, 0.1, 0.01])
    assert not np.array_equal(slower.network.params, same.network.params)
    recipe = load_model(tmp_path / "slower.npz").metadata["recipe"]
    assert recipe["lr"] == 0.01 and recipe["overrides"]["lr"] == 0.01
    assert recipe["resumed_from"] == str(tmp_path / "d.npz")


def _blow_up_after(epochs_done):
    """A callback that, after ``epochs_done`` epochs, makes the weights so large that the next diverges."""
    from digitnet.train import Callback

    class BlowUp(Callback):
        def on_train_begin(self, network, optimizer, epochs):
            self.network = network

        def on_epoch_end(self, epoch, record):
            if epoch + 1 == epochs_done:
                self.network.params[...] = 1e30

    return BlowUp()


def test_divergence_keeps_the_last_completed_epoch_in_the_checkpoint(tmp_path):
    from digitnet.errors import TrainingDiverged
    from digitnet.files.modelfile import read_model_file

    args = dict(subset=500, overrides={"sizes": [784, 16, 10], "schedule": None, "shift": 0})
    # Checkpoints at most once an hour: the file holds epoch 1 when epoch 4 diverges,
    # and is then brought up to epoch 3, the last completed one.
    with pytest.raises(TrainingDiverged) as caught:
        train_recipe("best", epochs=6, out=tmp_path / "m.npz", checkpoint=tmp_path / "c.npz",
                     callbacks=[_blow_up_after(3)], checkpoint_every=3600, **args)
    exc = caught.value
    assert exc.checkpoint == tmp_path / "c.npz" and exc.checkpoint_epoch == 3
    assert np.isfinite(exc.checkpoint_loss)
    assert not (tmp_path / "m.npz").exists()
    header = read_model_file(tmp_path / "c.npz")[0]
    assert header["checkpoint"]["epoch"] == 3 and len(header["history"]["records"]) == 3
    # It holds the weights of epoch 3 exactly (the blow-up came after the snapshot).
    assert np.array_equal(load_model(tmp_path / "c.npz").params,
                          train_recipe("best", epochs=6, callbacks=[_stop_after(3)], **args).network.params)

    # Diverging in the first epoch: nothing of the run to keep.
    with pytest.raises(TrainingDiverged) as caught:
        train_recipe("best", epochs=2, checkpoint=tmp_path / "first.npz",
                     overrides={**args["overrides"], "lr": 1e30, "optimizer": "sgd"}, subset=500)
    assert caught.value.checkpoint is None and not (tmp_path / "first.npz").exists()


def _stop_after(epochs_done):
    return lambda epoch, record: epoch + 1 == epochs_done


# -- memory -------------------------------------------------------------------------------------

def test_memory_estimate_counts_parameters_optimiser_state_and_batches():
    from digitnet.train.recipes import training_memory_bytes

    sgd = training_memory_bytes([784, 100, 10], batch_size=10, optimizer="sgd")
    adam = training_memory_bytes([784, 100, 10], batch_size=10, optimizer="adam")
    n_params = 784 * 100 + 100 + 100 * 10 + 10
    assert sgd["n_params"] == n_params
    assert adam["parameters"] - sgd["parameters"] == 4 * n_params * 4   # two moments, and their copies
    big_batch = training_memory_bytes([784, 100, 10], batch_size=1000, optimizer="sgd")
    assert big_batch["steps"] > sgd["steps"] and big_batch["parameters"] == sgd["parameters"]
    full = training_memory_bytes([784, 100, 10], batch_size=None, n_train=60000)
    assert full["steps"] > 60000 * 2 * 110 * 4 and full["epoch"] >= 5 * 60000 * 10 * 4
    huge = training_memory_bytes([784, 100_000_000, 10], batch_size=64)
    assert huge["total"] > 2**40 and huge["total"] == huge["parameters"] + huge["steps"] + huge["epoch"]


def test_memory_check_refuses_before_allocating(monkeypatch):
    from digitnet.train import recipes

    monkeypatch.setattr(recipes, "available_memory_bytes", lambda: 2**30)
    preset = get_preset("best").with_overrides({"sizes": [784, 100_000, 10]})
    with pytest.raises(DigitnetError, match=r"need about .* GiB .* only 1 GiB is available: "
                                            r"use fewer or smaller layers"):
        recipes.check_training_memory(preset)
    full = get_preset("best").with_overrides({"sizes": [784, 2_000, 10], "batch_size": None})
    recipes.check_training_memory(full, n_train=1000)
    with pytest.raises(DigitnetError, match="smaller --batch-size"):
        recipes.check_training_memory(full, n_train=60000)
    # train_recipe checks before building the network (which would take 2 × 314 MB here).
    monkeypatch.setattr(recipes.Preset, "build_network", lambda *a, **k: pytest.fail("allocated"))
    with pytest.raises(DigitnetError, match="memory"):
        train_recipe("best", overrides={"sizes": [784, 100_000, 10]})
    # Unknown available memory: nothing is refused.
    monkeypatch.setattr(recipes, "available_memory_bytes", lambda: None)
    recipes.check_training_memory(preset)


def test_available_memory_reads_meminfo_and_survives_without_it(monkeypatch, tmp_path):
    import builtins

    from digitnet.train import recipes

    value = recipes.available_memory_bytes()
    assert value is None or value > 0
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24683584 kB\nMemAvailable:    1048576 kB\n")
    real_open = builtins.open

    def fake_open(name, *args, **kwargs):
        if name == "/proc/meminfo":
            return real_open(meminfo, *args, **kwargs)
        if str(name).startswith("/sys/fs/cgroup"):
            raise FileNotFoundError(name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", fake_open)
    assert recipes.available_memory_bytes() == 2**30

    def no_files(name, *args, **kwargs):
        if name == "/proc/meminfo" or str(name).startswith("/sys/fs/cgroup"):
            raise FileNotFoundError(name)
        return real_open(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", no_files)
    monkeypatch.setattr(os, "sysconf", lambda name: 4096 if name == "SC_PAGE_SIZE" else 1000,
                        raising=False)
    assert recipes.available_memory_bytes() == 4096 * 1000

    def no_sysconf(name):
        raise ValueError(name)

    monkeypatch.setattr(os, "sysconf", no_sysconf, raising=False)
    assert recipes.available_memory_bytes() is None
    monkeypatch.delattr(os, "sysconf", raising=False)
    assert recipes.available_memory_bytes() is None


# -- where the data came from -------------------------------------------------------------------

def test_a_data_folder_is_recorded_as_its_absolute_path(tmp_path, monkeypatch):
    from digitnet.train.recipes import recorded_source

    folder = tmp_path / "digits"
    folder.mkdir()
    monkeypatch.chdir(tmp_path)
    assert recorded_source("digits") == str(folder.resolve())
    assert recorded_source("mnist") == "mnist" and recorded_source("xor") == "xor"
    assert recorded_source("no-such-thing") == "no-such-thing"
