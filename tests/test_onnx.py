"""ONNX export, run for real: onnx's full checker and onnxruntime against digitnet.

For the architecture of every preset (and the hidden activations no preset
uses: tanh, identity; float64 too), the exported graph must pass
``onnx.checker.check_model(full_check=True)`` and onnxruntime's outputs must
equal digitnet's within 1e-5 (max absolute difference) on MNIST's 10,000
test images, scaled as the preset scales them.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from digitnet import Network  # noqa: E402
from digitnet.data import load_mnist  # noqa: E402
from digitnet.files.modelfile import save_model  # noqa: E402
from digitnet.files.onnx_export import save_onnx, to_onnx  # noqa: E402
from digitnet.train.recipes import PRESETS, XOR_X  # noqa: E402

TOLERANCE = 1e-5


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: on a shared two-core machine BLAS's second thread only waits (as in test_cli)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@pytest.fixture(scope="module")
def test_images():
    X, y = load_mnist("test")
    assert X.shape == (10000, 784)
    return X, y


def session(model):
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1      # a shared two-core machine
    return ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])


def assert_same_answers(net, model, X):
    """onnxruntime's outputs within TOLERANCE of digitnet's, and the same labels except near-ties."""
    onnx.checker.check_model(model, full_check=True)
    output, label = session(model).run(None, {"input": X.astype(net.dtype)})
    expected = net.predict_proba(X)
    assert output.shape == expected.shape and output.dtype == net.dtype
    worst = float(np.max(np.abs(output - expected)))
    assert worst <= TOLERANCE, worst
    assert label.dtype == np.int64 and label.shape == (len(X),)
    differ = label != net.predict(X)
    if expected.shape[1] > 1 and differ.any():     # only where two outputs are within the tolerance
        top2 = np.sort(expected[differ], axis=1)[:, -2:]
        assert np.all(top2[:, 1] - top2[:, 0] <= 2 * TOLERANCE)
    else:
        assert not differ.any() or np.all(np.abs(expected[differ, 0] - 0.5) <= TOLERANCE)
    return worst


@pytest.mark.parametrize("name", sorted(PRESETS))
def test_every_preset_architecture_matches_onnxruntime(name, test_images):
    preset = PRESETS[name]
    net = preset.build_network(seed=0)       # the preset's own initial weights
    if preset.sizes[0] == 784:
        X = test_images[0] * 2 - 1 if preset.scale == "symmetric" else test_images[0]
    else:                                     # xor's three inputs: the table and 10,000 random rows
        X = np.vstack([XOR_X, np.random.default_rng(0).random((10000, 3), dtype=np.float32)])
    model = to_onnx(net, scale=preset.scale)
    assert_same_answers(net, model, X)
    props = {p.key: p.value for p in model.metadata_props}
    assert props["digitnet.input_scale"] == preset.scale
    assert json.loads(props["digitnet.layers"]) == list(preset.sizes)
    assert json.loads(props["digitnet.activations"]) == list(preset.activations)
    ops = [node.op_type for node in model.graph.node]
    assert ops.count("Gemm") == len(preset.sizes) - 1
    assert model.opset_import[0].version >= 17


@pytest.mark.parametrize("activations, dtype", [
    (["tanh", "softmax"], "float32"),
    (["identity", "sigmoid"], "float32"),
    (["tanh", "identity", "softmax"], "float64"),
    (["relu", "relu", "softmax"], "float64"),
])
def test_hidden_activations_no_preset_uses(activations, dtype, test_images):
    sizes = [784] + [48] * (len(activations) - 1) + [10]
    loss = "cross_entropy" if activations[-1] == "softmax" else "quadratic"
    net = Network(sizes, activations=activations, loss=loss, dtype=dtype, seed=1)
    model = to_onnx(net)
    assert_same_answers(net, model, test_images[0])
    if "identity" in activations:      # no node for the identity: the next Gemm reads z directly
        assert not any(n.op_type == "Identity" for n in model.graph.node)


def test_trained_model_file_through_the_command(test_images, tmp_path):
    """A briefly trained 'best'-architecture model, symmetric inputs, fashion class names, via `digitnet export`."""
    X, y = test_images
    net = PRESETS["best"].build_network(seed=0)
    net.fit(X[:4000] * 2 - 1, y[:4000], epochs=1, batch_size=64, optimizer="nesterov", lr=0.05, seed=0)
    classes = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
               "Bag", "Ankle boot"]
    save_model(tmp_path / "m.npz", net, preprocessing={"scale": "symmetric", "input_shape": [28, 28],
                                                       "dataset": "fashion-mnist", "classes": classes})
    proc = subprocess.run([sys.executable, "-m", "digitnet", "export", "m.npz", "--format", "onnx",
                           "--out", "m.onnx"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "wrote m.onnx: ONNX opset 17" in proc.stdout and "pixel / 255 * 2 - 1" in proc.stdout
    model = onnx.load(tmp_path / "m.onnx")
    props = {p.key: p.value for p in model.metadata_props}
    assert props["digitnet.input_scale"] == "symmetric"
    assert json.loads(props["digitnet.classes"]) == classes
    assert json.loads(props["digitnet.input_shape"]) == [28, 28]
    # The dynamic batch dimension: any number of rows.
    dims = model.graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch" and dims[1].dim_value == 784
    worst = assert_same_answers(net, model, X * 2 - 1)
    assert worst <= TOLERANCE
    out, label = session(model).run(None, {"input": (X[:1] * 2 - 1)})
    assert out.shape == (1, 10) and label.shape == (1,)
    assert not list(tmp_path.glob(".*.tmp"))        # written atomically, nothing left over


def test_the_docs_example_runs(tmp_path, test_images):
    """The example of docs/ecosystem.md, as written there, on a real (small) model file."""
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[1] / "docs" / "ecosystem.md").read_text(encoding="utf-8")
    start = doc.index("```python\n# onnx example") + len("```python\n")
    code = doc[start:doc.index("```", start)]
    net = Network([784, 32, 10], seed=0)
    net.fit(*test_images, epochs=1, batch_size=64, optimizer="adam", lr=3e-3)
    save_model(tmp_path / "digitnet-best.npz", net)
    subprocess.run([sys.executable, "-m", "digitnet", "export", "digitnet-best.npz", "--format", "onnx",
                    "--out", "digitnet-best.onnx"], cwd=tmp_path, check=True, capture_output=True)
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "same answers as digitnet: True" in proc.stdout, proc.stdout


def test_errors_are_one_line(tmp_path, monkeypatch, capsys):
    from digitnet.app.cli import main

    net = Network([784, 8, 10], seed=0)
    save_model(tmp_path / "m.npz", net)
    with pytest.raises(ValueError, match="opset must be a whole number from 17"):
        to_onnx(net, opset=13)
    with pytest.raises(ValueError, match="class names"):
        to_onnx(net, classes=["a", "b"])
    with pytest.raises(ValueError, match="it is a folder"):
        save_onnx(net, tmp_path)
    monkeypatch.chdir(tmp_path)
    for args, fragment in [(["missing.npz"], "does not exist"),
                           (["m.npz", "--out", "m.npz"], "would overwrite the model"),
                           (["m.npz", "--opset", "12"], "opset must be"),
                           (["m.npz", "--out", str(tmp_path)], "it is a folder")]:
        assert main(["export", *args]) == 2
        err = capsys.readouterr().err
        assert err.startswith("digitnet: error: ") and err.count("\n") == 1 and fragment in err, err
    # Without the onnx package: one line that says what to install, and no file.
    monkeypatch.setitem(sys.modules, "onnx", None)
    assert main(["export", "m.npz"]) == 2
    assert capsys.readouterr().err.strip() == (
        'digitnet: error: ONNX export needs the onnx package: pip install "digitnet[onnx]"')
    assert not (tmp_path / "m.onnx").exists() and not list(tmp_path.glob(".*.tmp"))
