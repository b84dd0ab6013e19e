"""Model files: exact round trips, atomic writes, and clear errors for every kind of bad file."""

import io
import json
import os
import pathlib
import warnings
import zipfile

import numpy as np
import pytest

from digitnet import History, Network
from digitnet.errors import DigitnetError, ModelFileError
from digitnet.files.modelfile import (
    FORMAT_VERSION,
    atomic_write,
    load_checkpoint,
    load_model,
    read_model_file,
    save_model,
)
from digitnet.nn.optimizers import Adam

# the test network below takes 6 inputs (a 2x3 "image") and has 4 classes
PREPROCESSING = {"scale": "unit", "input_shape": [2, 3], "dataset": "toy",
                 "classes": ["a", "b", "c", "d"]}
RECIPE = {"preset": "nielsen", "epochs": 3, "batch_size": 10, "lr": 3.0}


def _trained(dtype=np.float32):
    rng = np.random.default_rng(0)
    X, y = rng.standard_normal((30, 6)), rng.integers(0, 4, 30)
    net = Network([6, 5, 4], activation="tanh", dtype=dtype, seed=3)
    history = net.fit(X, y, epochs=2, batch_size=8, validation_data=(X[:10], y[:10]))
    return net, history, X


def _leftovers(folder):
    """Anything but the finished files: temporary files of an atomic write."""
    return sorted(p.name for p in pathlib.Path(folder).iterdir() if p.name.endswith(".tmp"))


def _write_npz(path, header, **arrays):
    """A model file written by hand, bypassing save_model's checks."""
    header_bytes = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with open(path, "wb") as f:
        np.savez(f, header=header_bytes, **arrays)


def _expect_model_error(path, fragment):
    with pytest.raises(ModelFileError, match=fragment) as excinfo:
        load_model(path)
    assert "\n" not in str(excinfo.value)
    return str(excinfo.value)


# -- round trips ---------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_save_load_round_trip(tmp_path, dtype):
    net, history, X = _trained(dtype)
    path = save_model(tmp_path / "model.npz", net, recipe=RECIPE, preprocessing=PREPROCESSING,
                      history=history, extra={"note": "unit test"})
    assert path == tmp_path / "model.npz" and _leftovers(tmp_path) == []

    loaded = load_model(path)
    assert loaded.dtype == dtype and loaded.params.dtype == dtype
    assert np.array_equal(loaded.params, net.params)
    assert loaded.get_config() == net.get_config()
    np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))
    meta = loaded.metadata
    assert meta["recipe"] == RECIPE and meta["preprocessing"] == PREPROCESSING
    assert meta["note"] == "unit test" and meta["format_version"] == FORMAT_VERSION
    assert meta["n_params"] == net.n_params and "digitnet_version" in meta
    assert History.from_dict(meta["history"]).records == history.records


def test_metadata_of_a_loaded_model_is_saved_again(tmp_path):
    net, history, _ = _trained()
    save_model(tmp_path / "a.npz", net, recipe=RECIPE, preprocessing=PREPROCESSING, history=history)
    again = load_model(tmp_path / "a.npz")
    save_model(tmp_path / "b.npz", again)  # e.g. a copy: recipe and preprocessing travel along
    meta = load_model(tmp_path / "b.npz").metadata
    assert meta["recipe"] == RECIPE and meta["preprocessing"] == PREPROCESSING


def test_checkpoint_keeps_the_optimizer_state(tmp_path):
    rng = np.random.default_rng(1)
    X, y = rng.standard_normal((20, 3)), rng.integers(0, 2, 20)
    net = Network([3, 4, 2], seed=0)
    adam = Adam(0.01)
    net.fit(X, y, epochs=2, batch_size=5, optimizer=adam)
    save_model(tmp_path / "ckpt.npz", net, optimizer=adam)
    loaded, state = load_checkpoint(tmp_path / "ckpt.npz")
    assert state["steps"] == adam.steps == 8
    assert state["config"] == adam.config()
    assert np.array_equal(state["m"], adam.m) and np.array_equal(state["s"], adam.s)
    assert np.array_equal(loaded.params, net.params)
    # a plain model has no optimiser state
    save_model(tmp_path / "plain.npz", net)
    assert load_checkpoint(tmp_path / "plain.npz")[1] == {}


def test_a_model_file_loads_without_pickle(tmp_path):
    net, _, _ = _trained()
    save_model(tmp_path / "m.npz", net)
    with np.load(tmp_path / "m.npz", allow_pickle=False) as archive:
        assert sorted(archive.files) == ["header", "params"]
        assert archive["header"].dtype == np.uint8


# -- atomic writes ----------------------------------------------------------------------------

def test_overwriting_leaves_no_temporary_file(tmp_path):
    net, _, _ = _trained()
    path = tmp_path / "m.npz"
    save_model(path, net)
    net.params += 1
    save_model(path, net)
    assert np.array_equal(load_model(path).params, net.params)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_an_unserialisable_header_leaves_the_old_file_intact(tmp_path):
    net, _, _ = _trained()
    path = tmp_path / "m.npz"
    save_model(path, net)
    before = path.read_bytes()
    with pytest.raises(DigitnetError, match="not JSON-serialisable") as excinfo:
        save_model(path, Network([6, 5, 4], seed=99), extra={"oops": object()})
    assert "\n" not in str(excinfo.value)
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]


def test_a_failure_while_writing_leaves_the_old_file_intact(tmp_path):
    path = tmp_path / "m.npz"
    path.write_bytes(b"the old model")

    def write_half_then_fail(f):
        f.write(b"half a new mod")
        raise OSError("disk full")

    with pytest.raises(DigitnetError, match="cannot write the file .*disk space"):
        atomic_write(path, write_half_then_fail)
    assert path.read_bytes() == b"the old model"
    assert _leftovers(tmp_path) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["m.npz"]

    with pytest.raises(KeyboardInterrupt):  # Ctrl-C half-way cleans up too
        atomic_write(path, lambda f: (f.write(b"x"), (_ for _ in ()).throw(KeyboardInterrupt())))
    assert path.read_bytes() == b"the old model" and _leftovers(tmp_path) == []


def test_saving_into_a_missing_folder_is_a_clear_error(tmp_path):
    net, _, _ = _trained()
    with pytest.raises(DigitnetError, match="cannot write the model file .*folder exists"):
        save_model(tmp_path / "no" / "such" / "m.npz", net)


# -- bad files ----------------------------------------------------------------------------------

def _good_header(net):
    return {"format": "digitnet-model", "format_version": FORMAT_VERSION,
            "config": net.get_config(), "preprocessing": {}, "recipe": {}, "history": {}}


def test_missing_file_and_folder(tmp_path):
    _expect_model_error(tmp_path / "nope.npz", "does not exist")
    _expect_model_error(tmp_path, "is a folder")


def test_truncated_file(tmp_path):
    net, _, _ = _trained()
    path = save_model(tmp_path / "m.npz", net)
    data = path.read_bytes()
    for cut in (len(data) // 2, len(data) - 30, 10):
        path.write_bytes(data[:cut])
        _expect_model_error(path, "truncated or not a digitnet model")


def test_random_bytes(tmp_path):
    path = tmp_path / "noise.npz"
    path.write_bytes(np.random.default_rng(0).bytes(3000))
    _expect_model_error(path, "cannot read model file")
    path.write_bytes(b"")
    _expect_model_error(path, "cannot read model file")


def test_a_bare_npy_array_is_not_a_model(tmp_path):
    path = tmp_path / "weights.npz"
    with open(path, "wb") as f:
        np.save(f, np.zeros(10))
    _expect_model_error(path, "not a digitnet model")


def test_a_pickled_object_is_refused_not_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Payload:  # unpickling it would create the marker file
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    net, _, _ = _trained()
    evil = np.empty(1, dtype=object)
    evil[0] = Payload()
    path = tmp_path / "evil.npz"
    buffer = io.BytesIO()
    np.savez(buffer, header=np.frombuffer(json.dumps(_good_header(net)).encode(), np.uint8),
             params=net.params, extra=evil)
    path.write_bytes(buffer.getvalue())
    # the payload really is live: numpy with pickling allowed would run it
    with np.load(path, allow_pickle=True) as archive:
        archive["extra"]
    assert marker.exists()
    marker.unlink()

    _expect_model_error(path, "cannot read model file")
    assert not marker.exists()
    # the parameters themselves as an object array: the same
    _write_npz(path, _good_header(net), params=evil)
    _expect_model_error(path, "cannot read model file")
    assert not marker.exists()


def test_a_newer_format_version_asks_for_an_upgrade(tmp_path):
    net, _, _ = _trained()
    header = _good_header(net)
    header["format_version"] = FORMAT_VERSION + 1
    path = tmp_path / "future.npz"
    _write_npz(path, header, params=net.params)
    message = _expect_model_error(path, "newer digitnet")
    assert f"format {FORMAT_VERSION + 1}" in message and "upgrade" in message


@pytest.mark.parametrize("change, fragment", [
    (lambda h: h.update(format="something-else"), "not a digitnet model file"),
    (lambda h: h.update(format_version="one"), "unknown model format version"),
    (lambda h: h.update(format_version=0), "unknown model format version"),
    (lambda h: h.pop("config"), "header's config is missing"),
    (lambda h: h["config"].update(activations=["relu", "warp"]),
     "config.activations\\[1\\] must be an activation name .*got \"warp\""),
    (lambda h: h["config"].update(activations=["relu", "relu", "softmax"]),
     "config.activations lists 3 activations but layers \\[6, 5, 4\\] need 2"),
    (lambda h: h["config"].update(sizes=[6, 0, 4]), "config.sizes\\[1\\] must be a whole number from 1"),
    (lambda h: h["config"].update(sizes=[10**6, 10**6], activations=["softmax"], init="he"),
     "need 1,000,001,000,000 parameters, more than"),
    (lambda h: h["config"].update(init=5), "config.init must be an initializer name or a list"),
    (lambda h: h["config"].update(activations=["tanh", "tanh"]), "describes an invalid network"),
    (lambda h: h.update(optimizer=5), "header's optimizer must be an object"),
])
def test_damaged_headers(tmp_path, change, fragment):
    net, _, _ = _trained()
    header = _good_header(net)
    change(header)
    path = tmp_path / "m.npz"
    _write_npz(path, header, params=net.params)
    _expect_model_error(path, fragment)


def test_header_that_is_not_json(tmp_path):
    net, _, _ = _trained()
    path = tmp_path / "m.npz"
    with open(path, "wb") as f:
        np.savez(f, header=np.frombuffer(b"{not json", np.uint8), params=net.params)
    _expect_model_error(path, "header is damaged")
    with open(path, "wb") as f:
        np.savez(f, params=net.params)
    _expect_model_error(path, "no header or parameters")


def test_parameter_count_that_does_not_match_the_layers(tmp_path):
    net, _, _ = _trained()
    header = _good_header(net)
    header["config"]["sizes"] = [6, 7, 4]  # header says more units than the weights hold
    path = tmp_path / "m.npz"
    _write_npz(path, header, params=net.params)
    message = _expect_model_error(path, "holds 59 parameters but layers \\[6, 7, 4\\] need 81")
    assert "damaged" in message
    _write_npz(path, _good_header(net), params=net.params.reshape(1, -1))
    _expect_model_error(path, "wrong type")
    _write_npz(path, _good_header(net), params=np.arange(net.n_params))  # integers
    _expect_model_error(path, "wrong type")


def test_optimizer_state_of_the_wrong_shape(tmp_path):
    net, _, _ = _trained()
    header = _good_header(net)
    header["optimizer"] = {"config": {"name": "momentum", "lr": 0.1, "momentum": 0.9}, "steps": 3}
    path = tmp_path / "ckpt.npz"
    _write_npz(path, header, params=net.params, opt__velocity=np.zeros(5, np.float32))
    with pytest.raises(ModelFileError, match="optimiser state 'velocity' has the wrong shape"):
        load_checkpoint(path)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_weights(tmp_path, bad):
    net, _, _ = _trained()
    params = net.params.copy()
    params[7] = bad
    path = tmp_path / "m.npz"
    _write_npz(path, _good_header(net), params=params)
    _expect_model_error(path, "weights contain NaN or infinity")


def test_read_model_file_returns_header_and_arrays(tmp_path):
    net, _, _ = _trained()
    save_model(tmp_path / "m.npz", net, recipe=RECIPE)
    header, arrays = read_model_file(tmp_path / "m.npz")
    assert header["recipe"] == RECIPE and set(arrays) == {"params"}
    assert os.path.getsize(tmp_path / "m.npz") > net.params.nbytes


def test_the_preprocessing_header_decides_inputs_and_class_names():
    from digitnet.files.modelfile import class_names, input_scale, to_network_inputs

    net = Network([4, 3, 2], seed=0)
    x = np.array([[0.0, 0.25, 0.5, 1.0]], dtype=np.float32)
    assert input_scale(net) == "unit" and to_network_inputs(net, x) is x
    assert class_names(net) == ["0", "1"]
    net.metadata = {"preprocessing": {"scale": "symmetric", "classes": ["no", "yes"]}}
    np.testing.assert_array_equal(to_network_inputs(net, x), [[-1.0, -0.5, 0.0, 1.0]])
    assert class_names(net) == ["no", "yes"]
    net.metadata = {"preprocessing": {"scale": "percent"}}
    with pytest.raises(ModelFileError, match="unknown pixel scale 'percent'"):
        input_scale(net)


# -- what the reader accepts and refuses beyond np.savez's own output ---------------------------

def _arrays_of(path):
    with np.load(path, allow_pickle=False) as archive:
        return {key: archive[key] for key in archive.files}


def test_a_compressed_or_big_endian_file_loads_the_same(tmp_path):
    net, history, X = _trained()
    path = save_model(tmp_path / "m.npz", net, history=history)
    arrays = _arrays_of(path)
    with open(tmp_path / "deflated.npz", "wb") as f:
        np.savez_compressed(f, **arrays)
    with open(tmp_path / "big-endian.npz", "wb") as f:
        np.savez(f, header=arrays["header"], params=arrays["params"].astype(">f4"))
    for name in ("deflated.npz", "big-endian.npz"):
        loaded = load_model(tmp_path / name)
        assert loaded.params.dtype == np.float32 and np.array_equal(loaded.params, net.params)
        np.testing.assert_array_equal(loaded.predict_proba(X), net.predict_proba(X))


def test_entries_digitnet_never_writes_are_refused(tmp_path):
    net, _, _ = _trained()
    arrays = _arrays_of(save_model(tmp_path / "m.npz", net))
    path = tmp_path / "odd.npz"
    with open(path, "wb") as f:
        np.savez(f, **arrays, notes=np.zeros(3))
    _expect_model_error(path, "an entry \"notes.npy\" that is not part of a digitnet model")
    with open(path, "wb") as f:      # optimiser state without an optimiser in the header
        np.savez(f, **arrays, opt__velocity=np.zeros(net.n_params, np.float32))
    _expect_model_error(path, "names no optimiser")
    with warnings.catch_warnings(), zipfile.ZipFile(path, "w") as zf:
        warnings.simplefilter("ignore")   # "Duplicate name": exactly what this file is for
        for name in ("header", "params", "params"):
            with zf.open(f"{name}.npy", "w") as entry:
                np.lib.format.write_array(entry, arrays[name])
    _expect_model_error(path, "holds the entry 'params' twice")


def test_read_model_file_checks_the_header_and_the_arrays(tmp_path):
    net, _, _ = _trained()
    header = _good_header(net)
    header["preprocessing"] = {"classes": ["a", "b"]}
    path = tmp_path / "m.npz"
    _write_npz(path, header, params=net.params)
    with pytest.raises(ModelFileError, match="names 2 classes but the network has 4"):
        read_model_file(path)
    _write_npz(path, _good_header(net), params=net.params[:-1])
    with pytest.raises(ModelFileError, match="holds 58 parameters but layers \\[6, 5, 4\\] need 59"):
        read_model_file(path)
