"""The ``digitnet`` command, run for real in subprocesses.

Every test starts ``python -m digitnet ...`` with its own cache folder
(``DIGITNET_CACHE_DIR``) and checks the exit status, what it printed and
which files it left behind.  Training runs use small MNIST subsets.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from digitnet.files.modelfile import load_model, read_model_file, save_model
from digitnet.nn.network import Network

# Small models train in a second single-threaded; on a shared two-core machine
# OpenBLAS's threads mostly wait for each other on matrices this small.
_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="session")
def cli_env(tmp_path_factory):
    """Environment for the subprocesses: a private (but shared) cache folder."""
    cache = tmp_path_factory.getbasetemp() / "digitnet-cache"
    cache.mkdir(exist_ok=True)
    env = dict(os.environ, DIGITNET_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1", **_THREADS)
    env.pop("COLUMNS", None)
    return env


def digitnet(env, *args, cwd, timeout=120):
    """Run ``python -m digitnet ARGS`` and return the CompletedProcess (text)."""
    return subprocess.run([sys.executable, "-m", "digitnet", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def assert_one_line_error(proc, *fragments):
    """Exit status 2, a single line on stderr that says what is wrong, no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    assert lines[0].startswith("digitnet"), lines[0]
    for fragment in fragments:
        assert fragment.lower() in lines[0].lower(), (fragment, lines[0])


def accuracy_of(text, label="test"):
    match = re.search(rf"^{label} accuracy: ([0-9.]+)%", text, re.MULTILINE)
    assert match, text
    return float(match.group(1)) / 100


# A tiny but real MNIST model, trained once through the command for the tests
# of evaluate, predict, info and gradcheck.
SMALL = ["--preset", "best", "--layers", "784,64,10", "--subset", "6000", "--epochs", "3"]


@pytest.fixture(scope="module")
def small_model(cli_env, tmp_path_factory):
    folder = tmp_path_factory.mktemp("small")
    proc = digitnet(cli_env, "train", *SMALL, "--out", "small.npz", cwd=folder)
    assert proc.returncode == 0, proc.stderr
    return folder / "small.npz", proc


def png_of_mnist_digit(path, index, *, dark_on_light=True, zoom=4):
    """Write test image ``index`` of MNIST as a PNG (enlarged; dark ink on light by default)."""
    from PIL import Image

    from digitnet.data import load_mnist

    X, y = load_mnist("test", scale=None, flatten=False, dtype=np.uint8)
    pixels = X[index]
    if dark_on_light:
        pixels = 255 - pixels
    Image.fromarray(pixels).resize((28 * zoom, 28 * zoom), Image.BILINEAR).save(path)
    return int(y[index])


# -- help ---------------------------------------------------------------------------------

@pytest.mark.parametrize("command", ["", "train", "evaluate", "predict", "info", "presets",
                                     "gradcheck"])
def test_help_has_examples(cli_env, tmp_path, command):
    proc = digitnet(cli_env, *([command] if command else []), "--help", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "usage: digitnet" in proc.stdout and "examples:" in proc.stdout


def test_no_command_prints_usage_and_fails(cli_env, tmp_path):
    proc = digitnet(cli_env, cwd=tmp_path)
    assert proc.returncode == 2
    assert "usage: digitnet" in proc.stderr


def test_command_list_skips_only_missing_modules(monkeypatch, tmp_path):
    from digitnet.app import cli

    assert {"plot", "serve"} <= set(cli.COMMAND_MODULES)
    # A command module that is not written yet is skipped ...
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("train", "not_written_yet"))
    parser = cli.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    assert list(sub.choices) == ["train"]
    # ... but one that exists and lacks a dependency of its own is an error, not silence.
    (tmp_path / "needs_missing_dep.py").write_text("import digitnet_no_such_dependency\n")
    monkeypatch.setattr(cli, "__path__", [*cli.__path__, str(tmp_path)])
    monkeypatch.setattr(cli, "COMMAND_MODULES", ("train", "needs_missing_dep"))
    with pytest.raises(ModuleNotFoundError, match="digitnet_no_such_dependency"):
        cli.build_parser()
    sys.modules.pop("digitnet.app.cli.needs_missing_dep", None)


def test_train_and_evaluate_on_a_kaggle_csv(cli_env, tmp_path):
    from digitnet.data import load_mnist, write_kaggle_csv

    X, y = load_mnist("train", scale=None, dtype=np.uint8)
    write_kaggle_csv(tmp_path / "train.csv", X[:2500], y[:2500])
    proc = digitnet(cli_env, "train", "--preset", "zhang", "--data", "train.csv", "--epochs", "40",
                    "--out", "z.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "test accuracy" not in proc.stdout  # a CSV file has no test part
    dev = accuracy_of(proc.stdout, "dev")
    assert dev > 0.2
    # The file is recorded as its absolute path: found again from any folder.
    csv_path = str((tmp_path / "train.csv").resolve())
    assert load_model(tmp_path / "z.npz").metadata["recipe"]["data"] == csv_path
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = digitnet(cli_env, "evaluate", "../z.npz", cwd=elsewhere)  # the CSV named in the model
    assert proc.returncode == 0, proc.stderr
    assert f"data: {csv_path} (all rows, 2,500 samples)" in proc.stdout


# -- train ---------------------------------------------------------------------------------

def test_train_xor_end_to_end(cli_env, tmp_path):
    proc = digitnet(cli_env, "train", "--preset", "xor", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert accuracy_of(proc.stdout) == 1.0
    # Plain lines, no bar, when stderr is not a terminal.
    assert "\r" not in proc.stderr and "#" not in proc.stderr
    epoch_lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch")]
    assert epoch_lines[0].startswith("epoch    1/1000") and epoch_lines[-1].startswith("epoch 1000/1000")
    model = tmp_path / "digitnet-xor.npz"  # the stated default name
    assert model.is_file() and (tmp_path / "digitnet-xor.ckpt.npz").is_file()
    net = load_model(model)
    X = np.array([[0, 0, 1], [0, 1, 1], [1, 0, 1], [1, 1, 1]])
    assert list(net.predict(X)) == [0, 1, 1, 0]
    header = net.metadata
    assert header["recipe"]["name"] == "xor" and header["recipe"]["seed"] == 0
    assert header["preprocessing"]["dataset"] == "xor"
    assert len(header["history"]["records"]) == 1000
    pointer = Path(cli_env["DIGITNET_CACHE_DIR"]) / "last-model.txt"
    assert pointer.read_text().strip() == str(model.resolve())


def test_train_prints_epochs_saves_and_records_overrides(cli_env, small_model):
    path, proc = small_model
    lines = [line for line in proc.stdout.splitlines() if line.startswith("epoch")]
    assert [line.split()[1] for line in lines] == ["1/3", "2/3", "3/3"]
    for line in lines:
        assert re.search(r"loss [0-9.]+ +acc +[0-9.]+% +val +- +lr \S+ +[0-9.]+s$", line), line
    accuracy = accuracy_of(proc.stdout)
    assert accuracy > 0.85
    header = load_model(path).metadata
    recipe = header["recipe"]
    assert recipe["sizes"] == [784, 64, 10] and recipe["name"] == "best"
    assert recipe["overrides"] == {"sizes": [784, 64, 10]}
    assert recipe["epochs"] == 3 and recipe["subset"] == 6000 and recipe["seed"] == 0
    assert header["preprocessing"] == {"scale": "unit", "input_shape": [28, 28],
                                       "dataset": "mnist", "classes": [str(d) for d in range(10)]}
    assert header["evaluation"]["test_accuracy"] == pytest.approx(accuracy, abs=5e-5)


def test_same_seed_same_weights_other_seed_other_weights(cli_env, tmp_path, small_model):
    args = ["train", *SMALL, "--no-checkpoint"]
    same = digitnet(cli_env, *args, "--out", "same.npz", cwd=tmp_path)
    other = digitnet(cli_env, *args, "--seed", "1", "--out", "other.npz", cwd=tmp_path)
    assert same.returncode == 0 and other.returncode == 0, same.stderr + other.stderr
    reference = load_model(small_model[0]).params
    assert np.array_equal(load_model(tmp_path / "same.npz").params, reference)
    assert not np.array_equal(load_model(tmp_path / "other.npz").params, reference)
    assert not list(tmp_path.glob("*.ckpt.npz"))


def test_resume_ends_with_the_uninterrupted_weights(cli_env, tmp_path):
    # Adam carries state (moments, step count) that the checkpoint must restore exactly.
    args = ["train", "--preset", "best", "--layers", "784,32,10", "--schedule", "constant",
            "--subset", "3000"]
    first = digitnet(cli_env, *args, "--epochs", "2", "--out", "part.npz", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert read_model_file(tmp_path / "part.ckpt.npz")[0]["checkpoint"]["epoch"] == 2
    resumed = digitnet(cli_env, "train", "--resume", "part.ckpt.npz", "--epochs", "4",
                       cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = digitnet(cli_env, *args, "--epochs", "4", "--out", "straight.npz", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr

    continued = load_model(tmp_path / "part.npz")  # --resume X.ckpt.npz saves to X.npz
    assert np.array_equal(continued.params, load_model(tmp_path / "straight.npz").params)
    assert [r["epoch"] for r in continued.metadata["history"]["records"]] == [1, 2, 3, 4]
    assert "epoch 3/4" in resumed.stdout and "epoch 1/4" not in resumed.stdout
    assert accuracy_of(resumed.stdout) == accuracy_of(straight.stdout)


def test_resume_refuses_recipe_flags_and_plain_models(cli_env, tmp_path):
    proc = digitnet(cli_env, "train", "--preset", "xor", "--epochs", "3", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    changed = digitnet(cli_env, "train", "--resume", "digitnet-xor.ckpt.npz", "--l2", "0.1",
                       cwd=tmp_path)
    assert_one_line_error(changed, "--l2", "only --epochs and --lr")
    model = digitnet(cli_env, "train", "--resume", "digitnet-xor.npz", "--epochs", "5",
                     cwd=tmp_path)
    assert_one_line_error(model, "not a checkpoint")
    fewer = digitnet(cli_env, "train", "--resume", "digitnet-xor.ckpt.npz", "--epochs", "2",
                     cwd=tmp_path)
    assert_one_line_error(fewer, "already trained 3 epochs")


def test_ctrl_c_keeps_the_last_epoch_and_resumes_exactly(cli_env, tmp_path):
    # Cosine schedule over 6 epochs plus Adam: only an exact checkpoint resumes to
    # the weights of the uninterrupted run.
    args = ["train", "--preset", "best", "--layers", "784,100,10", "--batch-size", "10",
            "--subset", "8000", "--epochs", "6"]
    proc = subprocess.Popen([sys.executable, "-m", "digitnet", *args, "--out", "cut.npz"],
                            cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        for line in proc.stdout:
            if line.startswith("epoch"):
                proc.send_signal(signal.SIGINT)
                break
        out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, (proc.returncode, err)
    assert "Traceback" not in err
    message = err.strip().splitlines()[-1]
    match = re.search(r"interrupted: kept epoch (\d) of 6, saved it as cut\.npz", message)
    assert match, err
    kept = int(match.group(1))
    assert 1 <= kept < 6
    saved = load_model(tmp_path / "cut.npz")
    assert len(saved.metadata["history"]["records"]) == kept
    assert saved.metadata["interrupted"] == {"epoch": kept, "epochs": 6}
    assert read_model_file(tmp_path / "cut.ckpt.npz")[0]["checkpoint"]["epoch"] == kept
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]

    resumed = digitnet(cli_env, "train", "--resume", "cut.ckpt.npz", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    straight = digitnet(cli_env, *args, "--out", "straight.npz", "--no-checkpoint", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    assert np.array_equal(load_model(tmp_path / "cut.npz").params,
                          load_model(tmp_path / "straight.npz").params)


def test_divergence_is_one_line_and_writes_no_model(cli_env, tmp_path):
    # Diverging in the first epoch: no model, and no checkpoint either.
    proc = digitnet(cli_env, "train", "--preset", "best", "--layers", "784,32,10", "--optimizer",
                    "sgd", "--lr", "1e30", "--subset", "500", "--epochs", "2", "--out", "m.npz",
                    cwd=tmp_path)
    assert_one_line_error(proc, "diverged", "no model or checkpoint was written",
                          "start again with a lower rate (e.g. --lr 1e+29)")
    assert not list(tmp_path.iterdir())


def test_divergence_keeps_the_checkpoint_and_resume_continues_at_a_lower_rate(cli_env, tmp_path):
    base = ["train", "--preset", "best", "--layers", "784,32,10", "--subset", "1000",
            "--schedule", "constant", "--shift", "0"]
    first = digitnet(cli_env, *base, "--epochs", "1", "--out", "m.npz", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    before = (tmp_path / "m.npz").read_bytes()
    # Resumed at an absurd rate, epoch 2 diverges: the checkpoint of epoch 1 stays.
    blown = digitnet(cli_env, "train", "--resume", "m.ckpt.npz", "--lr", "1e30", "--epochs", "3",
                     cwd=tmp_path)
    assert_one_line_error(blown, "diverged", "in epoch 2", "no model was written",
                          "the checkpoint m.ckpt.npz keeps the last completed epoch (epoch 1")
    assert (tmp_path / "m.npz").read_bytes() == before          # the earlier model is untouched
    assert read_model_file(tmp_path / "m.ckpt.npz")[0]["checkpoint"]["epoch"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    # The command the message gives works: it continues epoch 1 at the lower rate.
    command = re.search(r"'digitnet (train --resume \S+ --lr \S+ --epochs 3)'", blown.stderr)
    assert command, blown.stderr
    assert command.group(1) == "train --resume m.ckpt.npz --lr 1e+29 --epochs 3"
    again = digitnet(cli_env, "train", "--resume", "m.ckpt.npz", "--lr", "0.01", "--epochs", "3",
                     cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "epoch 2/3" in again.stdout and "lr 0.01" in again.stdout
    model = load_model(tmp_path / "m.npz")
    assert [r["lr"] for r in model.metadata["history"]["records"]] == pytest.approx([0.1, 0.01, 0.01])
    assert model.metadata["recipe"]["lr"] == 0.01


@pytest.mark.parametrize("flags, fragments", [
    (["--lr", "-1"], ["--lr", "greater than 0"]),
    (["--lr", "nan"], ["--lr", "finite"]),
    (["--epochs", "abc"], ["--epochs", "whole number"]),
    (["--epochs", "0"], ["--epochs"]),
    (["--layers", "784,x"], ["--layers", "784,100,10"]),
    (["--layers", "784"], ["--layers", "at least"]),
    (["--layers", "784,,10"], ["--layers", "empty field"]),
    (["--layers", "784,10,"], ["--layers", "empty field"]),
    (["--layers", "784,100000000,10"], ["79,500,000,010 parameters", "memory", "available",
                                        "fewer or smaller layers"]),
    (["--batch-size", "0"], ["--batch-size", "'full'"]),
    (["--preset", "nope"], ["unknown preset", "nielsen", "best"]),
    (["--activation", "swish"], ["unknown activation"]),
    (["--optimizer", "rmsprop"], ["unknown optimizer"]),
    (["--layers", "784,10,1"], ["softmax", "single output"]),
    (["--data", "no-such-folder"], ["no-such-folder"]),
    (["--out", "missing-folder/m.npz"], ["missing-folder", "does not exist"]),
    (["--preset", "xor", "--data", "mnist"], ["xor", "--data"]),
    (["--layers", "100,10"], ["784 features", "100 units"]),
    (["--shift", "-1"], ["--shift", "0 to 8"]),
    (["--preset", "xor", "--shift", "1"], ["not square images", "--shift 0"]),
])
def test_train_rejects_nonsense(cli_env, tmp_path, flags, fragments):
    proc = digitnet(cli_env, "train", "--subset", "100", "--epochs", "1", *flags, cwd=tmp_path)
    assert_one_line_error(proc, *fragments)
    assert not list(tmp_path.iterdir()), "nothing may be written"


# -- evaluate --------------------------------------------------------------------------------

def test_evaluate_reports_accuracy_per_class_and_confusion_matrix(cli_env, small_model):
    path, train = small_model
    proc = digitnet(cli_env, "evaluate", path.name, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    accuracy = float(re.search(r"^accuracy: ([0-9.]+)%", proc.stdout, re.MULTILINE).group(1)) / 100
    assert accuracy == accuracy_of(train.stdout)  # the same model on the same 10,000 images
    lines = proc.stdout.splitlines()
    start = lines.index("confusion matrix (rows: true class, columns: predicted class)")
    matrix = np.array([[int(v.replace(",", "")) for v in row.split()[1:]]
                       for row in lines[start + 2:start + 12]])
    assert matrix.shape == (10, 10) and matrix.sum() == 10_000
    assert np.trace(matrix) / 10_000 == pytest.approx(accuracy, abs=1e-9)
    per_class = [line.split() for line in lines if re.match(r"^\s+\d\s+[0-9.]+%", line)]
    assert len(per_class) == 10
    recall_of_3 = float(per_class[3][2].rstrip("%")) / 100
    assert recall_of_3 == pytest.approx(matrix[3, 3] / matrix[3].sum(), abs=5e-5)


def test_evaluate_uses_the_models_pixel_scale(cli_env, tmp_path):
    # raschka trains on pixels in [-1, 1]; evaluated in [0, 1] it would score far lower.
    train = digitnet(cli_env, "train", "--preset", "raschka", "--subset", "3000", "--epochs", "3",
                     "--out", "r.npz", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    proc = digitnet(cli_env, "evaluate", "r.npz", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    shown = float(re.search(r"^accuracy: ([0-9.]+)%", proc.stdout, re.MULTILINE).group(1)) / 100
    assert shown == accuracy_of(train.stdout)


# -- predict ---------------------------------------------------------------------------------

def test_predict_reads_digits_from_images(cli_env, small_model, tmp_path):
    path, _ = small_model
    labels = {}
    for index, dark in ((0, True), (1, False), (2, True)):
        image = tmp_path / f"digit{index}.png"
        labels[image.name] = png_of_mnist_digit(image, index, dark_on_light=dark)
    proc = digitnet(cli_env, "predict", path, *labels, "--top", "2", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.strip().splitlines()
    assert len(lines) == 3
    for line in lines:
        match = re.match(r"^(digit\d\.png): (\d) \(([0-9.]+)%\), (\d) \(([0-9.]+)%\)$", line)
        assert match, line
        assert int(match.group(2)) == labels[match.group(1)]
        assert float(match.group(3)) >= float(match.group(5))


def test_predict_applies_the_models_scale(cli_env, tmp_path):
    from digitnet.app.imaging import preprocess_image

    train = digitnet(cli_env, "train", "--preset", "raschka", "--subset", "2000", "--epochs", "2",
                     "--out", "r.npz", "--no-checkpoint", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    png_of_mnist_digit(tmp_path / "d.png", 7)
    proc = digitnet(cli_env, "predict", "r.npz", "d.png", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    net = load_model(tmp_path / "r.npz")
    probs = net.predict_proba(2 * preprocess_image(tmp_path / "d.png") - 1)[0]
    probs = probs / probs.sum()  # sigmoid outputs, shown normalised
    digit = int(np.argmax(probs))
    assert proc.stdout.strip() == f"d.png: {digit} ({100 * probs[digit]:.1f}%)"


def test_predict_reports_each_bad_image_and_exits_2(cli_env, small_model, tmp_path):
    from PIL import Image

    path, _ = small_model
    label = png_of_mnist_digit(tmp_path / "good.png", 0)
    (tmp_path / "text.png").write_text("this is not an image\n")
    Image.new("L", (64, 64), 255).save(tmp_path / "blank.png")
    proc = digitnet(cli_env, "predict", path, "missing.png", "text.png", "good.png", "blank.png",
                    cwd=tmp_path)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    errors = proc.stderr.strip().splitlines()
    assert len(errors) == 3
    assert "missing.png" in errors[0] and "no such file" in errors[0]
    assert "text.png" in errors[1] and "not a readable image" in errors[1]
    assert "blank.png" in errors[2] and "blank" in errors[2]
    assert proc.stdout.startswith(f"good.png: {label} (")


def test_predict_refuses_a_model_that_does_not_read_images(cli_env, tmp_path):
    digitnet(cli_env, "train", "--preset", "xor", "--epochs", "2", cwd=tmp_path)
    png_of_mnist_digit(tmp_path / "d.png", 0)
    proc = digitnet(cli_env, "predict", "digitnet-xor.npz", "d.png", cwd=tmp_path)
    assert_one_line_error(proc, "takes 3 inputs", "28x28")


# -- info, presets, gradcheck ---------------------------------------------------------------

def test_info_describes_model_and_checkpoint(cli_env, small_model):
    path, _ = small_model
    proc = digitnet(cli_env, "info", path.name, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "784 → 64 → 10" in out and "total parameters: 50,890" in out
    assert "recipe: preset best, seed 0, data mnist, first 6,000 training images" in out
    assert "changed from the preset: sizes=[784, 64, 10]" in out
    assert "training record: 3 epochs" in out and "evaluation: test accuracy" in out
    ckpt = digitnet(cli_env, "info", "small.ckpt.npz", cwd=path.parent)
    assert ckpt.returncode == 0 and "checkpoint: after epoch 3 of 3" in ckpt.stdout


def test_presets_table_and_details(cli_env, tmp_path):
    from digitnet.train.recipes import PRESETS

    proc = digitnet(cli_env, "presets", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    table = proc.stdout.split("\n\n")[0].splitlines()
    assert table[0].split()[:3] == ["name", "layers", "activations"]
    assert [line.split()[0] for line in table[1:]] == list(PRESETS)
    one = digitnet(cli_env, "presets", "raschka", cwd=tmp_path)
    assert one.returncode == 0 and "η = 0.1 is lr = 1.0" in " ".join(one.stdout.split())
    assert_one_line_error(digitnet(cli_env, "presets", "nope", cwd=tmp_path), "unknown preset")


def test_gradcheck_passes_on_model_and_preset_and_fails_at_zero_tolerance(cli_env, small_model):
    path, _ = small_model
    proc = digitnet(cli_env, "gradcheck", path.name, cwd=path.parent)
    assert proc.returncode == 0, proc.stderr
    errors = [float(m) for m in re.findall(r"worst relative error ([0-9.e+-]+)", proc.stdout)]
    assert len(errors) == 4 and max(errors) < 1e-6
    assert proc.stdout.strip().splitlines()[-1].startswith("PASS")
    preset = digitnet(cli_env, "gradcheck", "--preset", "nielsen-ce", cwd=path.parent)
    assert preset.returncode == 0 and "L2 λ=5" in preset.stdout, preset.stdout + preset.stderr
    strict = digitnet(cli_env, "gradcheck", "--preset", "xor", "--tolerance", "1e-300",
                      cwd=path.parent)
    assert strict.returncode == 1 and strict.stdout.strip().splitlines()[-1].startswith("FAIL")
    both = digitnet(cli_env, "gradcheck", path.name, "--preset", "xor", cwd=path.parent)
    assert_one_line_error(both, "not both")


# -- damaged model files ----------------------------------------------------------------------

def _newer_version(path):
    net = Network([784, 8, 10], seed=0)
    save_model(path, net, extra={"format_version": 99})


def _wrong_shapes(path):
    net = Network([784, 8, 10], seed=0)
    save_model(path, net)
    with np.load(path) as archive:
        arrays = dict(archive)
    header = json.loads(arrays["header"].tobytes())
    header["config"]["sizes"] = [784, 9, 10]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def _truncated(path):
    net = Network([784, 8, 10], seed=0)
    save_model(path, net)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _not_a_model(path):
    path.write_text("hello\n")


@pytest.mark.parametrize("damage, fragments", [
    (_truncated, ["truncated"]),
    (_newer_version, ["newer digitnet", "upgrade"]),
    (_wrong_shapes, ["damaged or was edited"]),
    (_not_a_model, ["not a digitnet model"]),
    (None, ["does not exist"]),
])
@pytest.mark.parametrize("command", ["evaluate", "info", "predict", "gradcheck"])
def test_bad_model_files_are_one_line_errors(cli_env, tmp_path, damage, fragments, command):
    path = tmp_path / "model.npz"
    if damage is not None:
        damage(path)
    extra = ["whatever.png"] if command == "predict" else []
    before = sorted(p.name for p in tmp_path.iterdir())
    proc = digitnet(cli_env, command, path.name, *extra, cwd=tmp_path)
    assert_one_line_error(proc, "model.npz", *fragments)
    assert sorted(p.name for p in tmp_path.iterdir()) == before


def test_truncated_file_really_is_truncated(tmp_path):
    # Guards the fixture above: half an archive must not be a readable zip.
    _truncated(tmp_path / "m.npz")
    with pytest.raises(zipfile.BadZipFile):
        zipfile.ZipFile(tmp_path / "m.npz").namelist()


def test_output_that_is_a_folder_fails_before_training(cli_env, tmp_path):
    (tmp_path / "models").mkdir()
    proc = digitnet(cli_env, "train", "--preset", "nielsen", "--out", "models", cwd=tmp_path)
    assert_one_line_error(proc, "models", "is a folder")
    assert not list((tmp_path / "models").iterdir())


def test_unwritable_output_fails_before_training(cli_env, tmp_path):
    if os.geteuid() == 0:
        pytest.skip("root may write anywhere")
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    started = time.monotonic()
    proc = digitnet(cli_env, "train", "--preset", "nielsen", "--out", "ro/m.npz", cwd=tmp_path)
    assert_one_line_error(proc, "no permission")
    assert time.monotonic() - started < 30


# -- memory ----------------------------------------------------------------------------------

def test_running_out_of_memory_is_one_line(cli_env, tmp_path):
    # The estimate sees the machine's free memory, not an address-space limit: with one,
    # a full batch of 20,000 rows × 20,000 units (1.5 GiB per array) runs into MemoryError.
    resource = pytest.importorskip("resource")
    if not sys.platform.startswith("linux"):
        pytest.skip("RLIMIT_AS behaves this way on Linux")
    limit = 2 * 2**30

    def limit_memory():
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))

    proc = subprocess.run([sys.executable, "-m", "digitnet", "train", "--layers", "784,20000,10",
                           "--batch-size", "full", "--subset", "20000", "--epochs", "1",
                           "--out", "m.npz"], cwd=tmp_path, env=cli_env, capture_output=True,
                          text=True, timeout=120, preexec_fn=limit_memory)
    # (On a machine with under ~4 GiB free the estimate refuses it first: also one line.)
    assert_one_line_error(proc, "memory")
    assert not list(tmp_path.iterdir()), "nothing may be written"


# -- a model trained on a folder of IDX files -----------------------------------------------

def _tiny_idx_folder(folder, n_train=600, n_test=200):
    from digitnet.data import load_mnist, write_idx

    folder.mkdir()
    X, y = load_mnist("train", scale=None, flatten=False, dtype=np.uint8)
    write_idx(folder / "train-images-idx3-ubyte", X[:n_train])
    write_idx(folder / "train-labels-idx1-ubyte", y[:n_train].astype(np.uint8))
    X, y = load_mnist("test", scale=None, flatten=False, dtype=np.uint8)
    write_idx(folder / "t10k-images-idx3-ubyte.gz", X[:n_test])
    write_idx(folder / "t10k-labels-idx1-ubyte.gz", y[:n_test].astype(np.uint8))
    return folder


def test_a_model_trained_on_a_data_folder_can_be_plotted_and_reported(cli_env, tmp_path):
    pytest.importorskip("matplotlib")
    _tiny_idx_folder(tmp_path / "tiny")
    train = digitnet(cli_env, "train", "--preset", "best", "--layers", "784,16,10", "--epochs", "2",
                     "--data", "tiny", "--out", "tiny.npz", cwd=tmp_path)
    assert train.returncode == 0, train.stderr
    header = load_model(tmp_path / "tiny.npz").metadata
    assert header["recipe"]["data"] == str((tmp_path / "tiny").resolve())

    # From another folder, the recorded path finds the data.
    work = tmp_path / "work"
    work.mkdir()
    plot = digitnet(cli_env, "plot", "confusion", "../tiny.npz", "--out", "confusion.png", cwd=work)
    assert plot.returncode == 0, plot.stderr
    assert (work / "confusion.png").stat().st_size > 0
    report = digitnet(cli_env, "report", "../tiny.npz", "--out", "report", "--subset", "300",
                      "--epochs", "1", cwd=work)
    assert report.returncode == 0, report.stderr
    page = (work / "report" / "index.html").read_text()
    assert "tiny test set (200 samples)" in page
    evaluate = digitnet(cli_env, "evaluate", "../tiny.npz", cwd=work)
    assert evaluate.returncode == 0, evaluate.stderr
    assert "200 samples" in evaluate.stdout

    # Moved away, the data can be given with --data; without it, one line says how.
    (tmp_path / "tiny").rename(tmp_path / "moved")
    lost = digitnet(cli_env, "plot", "confusion", "../tiny.npz", "--out", "again.png", cwd=work)
    assert_one_line_error(lost, "trained on", "--data DIR")
    assert not (work / "again.png").exists()
    lost = digitnet(cli_env, "report", "../tiny.npz", "--out", "report2", cwd=work)
    assert_one_line_error(lost, "trained on", "--data DIR")
    assert not (work / "report2").exists()
    found = digitnet(cli_env, "plot", "confusion", "../tiny.npz", "--data", "../moved",
                     "--out", "again.png", cwd=work)
    assert found.returncode == 0, found.stderr
    assert (work / "again.png").exists()


def test_choices_and_optimizer_settings_come_from_the_registries(capsys):
    from digitnet.app.cli import main
    from digitnet.nn.activations import ACTIVATIONS
    from digitnet.nn.optimizers import OPTIMIZERS, all_hyperparameters

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    help_text = capsys.readouterr().out
    for name in [*ACTIVATIONS, *OPTIMIZERS]:
        assert name in help_text
    for setting in all_hyperparameters():
        assert f"--{setting}" in help_text
    # a setting the chosen optimiser does not take: one line, exit 2, before any training
    assert main(["train", "--preset", "xor", "--beta1", "0.5", "--no-checkpoint"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == "digitnet: error: the sgd optimizer has no setting beta1: it takes nothing besides the learning rate"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--activation", "swish"])
    assert exit_info.value.code == 2
    assert "unknown activation 'swish'" in capsys.readouterr().err
