"""Pictures of a network and of its learning: ``digitnet.app.plots``, ``digitnet plot`` and ``digitnet report``.

Every picture is drawn from a real small run (a [784, 32, 10] network trained
for 2 epochs on 3,000 real MNIST images, saved with its history) and checked
as a real PNG: the magic bytes, decoded by Pillow, of the documented pixel
size, and not blank.  The confusion matrix is checked number by number
against the network's own predictions.  The commands run for real in
subprocesses.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from digitnet.app import plots
from digitnet.data import load
from digitnet.errors import DigitnetError
from digitnet.files.modelfile import load_model, save_model
from digitnet.nn.network import Network
from digitnet.nn.optimizers import SGD

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
N_TEST = 400          # test samples the pictures use (--limit): enough for some mistakes
PREPROCESSING = {"scale": "unit", "input_shape": [28, 28], "dataset": "mnist",
                 "classes": [str(d) for d in range(10)]}
# Small matrices: OpenBLAS's threads only get in each other's way on a shared machine.
_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """The decoded-MNIST cache folder, shared with the other test modules."""
    folder = tmp_path_factory.getbasetemp() / "digitnet-cache"
    folder.mkdir(exist_ok=True)
    return folder


@pytest.fixture(scope="module")
def run(cache, tmp_path_factory):
    """A real small run, saved as a model file and as a checkpoint (with optimiser state)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITNET_CACHE_DIR", str(cache))
        mnist = load("mnist")
    X, y = mnist.X_train[:3000], mnist.y_train[:3000]
    X_val, y_val = mnist.X_train[-1000:], mnist.y_train[-1000:]
    network = Network([784, 32, 10], seed=0)
    optimizer = SGD(lr=0.1)
    history = network.fit(X, y, epochs=2, batch_size=32, optimizer=optimizer,
                          validation_data=(X_val, y_val), seed=0)
    folder = tmp_path_factory.mktemp("plots")
    recipe = {"optimizer": "sgd", "lr": 0.1, "batch_size": 32, "epochs": 2}
    model = save_model(folder / "small.npz", network, history=history, recipe=recipe,
                       preprocessing=PREPROCESSING)
    checkpoint = save_model(folder / "small.ckpt.npz", network, history=history, recipe=recipe,
                            preprocessing=PREPROCESSING, optimizer=optimizer)
    return SimpleNamespace(folder=folder, model=model, checkpoint=checkpoint, network=load_model(model),
                           history=history, X_train=X, y_train=y,
                           X_test=mnist.X_test[:N_TEST], y_test=mnist.y_test[:N_TEST])


def assert_png(path, kind):
    """A complete PNG of the fixed size for ``kind`` that is not one flat colour."""
    from PIL import Image

    path = Path(path)
    assert path.read_bytes()[:8] == PNG_MAGIC, path
    with Image.open(path) as image:
        image.verify()                      # the whole stream, CRCs included
    with Image.open(path) as image:
        assert image.size == plots.FIGURE_PIXELS[kind], (kind, image.size)
        pixels = np.asarray(image.convert("L"), dtype=float)
    assert pixels.std() > 10, f"{path} is (nearly) blank"
    # No temporary file left next to it.
    assert not [p for p in path.parent.iterdir() if p.name.startswith(f".{path.name}.")]


def texts_of(figure) -> list[str]:
    """Every piece of text drawn in a figure (titles, captions, legends, tick labels)."""
    from matplotlib.text import Text

    return [t.get_text() for t in figure.findobj(Text) if t.get_text()]


# -- the Python API ---------------------------------------------------------------------------------
def test_confusion_matrix_draws_the_networks_own_counts(run, tmp_path):
    figure, counts = plots.confusion_matrix(run.network, run.X_test, run.y_test, tmp_path / "c.png")
    assert_png(tmp_path / "c.png", "confusion")
    predicted = run.network.predict(run.X_test)
    expected = np.zeros((10, 10), dtype=np.int64)
    for true, guess in zip(run.y_test, predicted):
        expected[true, guess] += 1
    np.testing.assert_array_equal(counts, expected)
    assert counts.sum() == N_TEST
    # Every count is written in its cell, and the worst pair is named in the title.
    drawn = texts_of(figure)
    for t in range(10):
        for p in range(10):
            assert f"{expected[t, p]:,}" in drawn
    off = expected - np.diag(np.diag(expected))
    t, p = np.unravel_index(np.argmax(off), off.shape)
    title = figure._suptitle.get_text()
    assert f"{t}→{p} ({off[t, p]})" in title, title
    assert f"{int(np.trace(expected)):,} predicted right" in title


def test_learning_curves_from_a_history_a_network_and_a_checkpoint(run, tmp_path):
    for i, source in enumerate([run.history, run.network, load_model(run.checkpoint)]):
        figure = plots.learning_curves(source, tmp_path / f"curves{i}.png")
        assert_png(tmp_path / f"curves{i}.png", "curves")
    # Two panels, each with a training and a validation line of one point per epoch.
    loss_axes, accuracy_axes = figure.axes
    train, val = loss_axes.get_lines()[:2]
    np.testing.assert_allclose(train.get_ydata(), run.history["loss"])
    np.testing.assert_allclose(val.get_ydata(), run.history["val_loss"])
    np.testing.assert_allclose(accuracy_axes.get_lines()[1].get_ydata(),
                               100 * np.array(run.history["val_accuracy"]))


def test_learning_curves_without_history_is_a_clear_error():
    untrained = Network([784, 16, 10], seed=0)
    with pytest.raises(DigitnetError, match="this model has no training history"):
        plots.learning_curves(untrained)


def test_mistakes_shows_the_most_confident_mistakes_in_order(run, tmp_path):
    figure = plots.mistakes(run.network, run.X_test, run.y_test, tmp_path / "m.png", max_images=16)
    assert_png(tmp_path / "m.png", "mistakes")
    proba = run.network.predict_proba(run.X_test)
    predicted = proba.argmax(axis=1)
    wrong = np.flatnonzero(predicted != run.y_test)
    assert len(wrong) >= 16, "the small run should make enough mistakes to fill the grid"
    surest = wrong[np.argsort(-proba[wrong, predicted[wrong]], kind="stable")][:16]
    captions = [t for t in texts_of(figure) if " → " in t and "%" in t and "\n" not in t]
    assert captions == [f"{run.y_test[i]} → {predicted[i]} ({plots._confidence(proba[i, predicted[i]])})"
                        for i in surest]


def test_hidden_units_caps_at_100_and_says_so(tmp_path):
    wide = Network([784, 150, 10], seed=0)
    figure = plots.hidden_units(wide, tmp_path / "h.png")
    assert_png(tmp_path / "h.png", "hidden")
    image = figure.axes[0].get_images()[0].get_array()
    # 10 × 10 tiles of 28 pixels with 3-pixel gaps; the colour scale is centred on 0.
    assert image.shape == (10 * 31 - 3, 10 * 31 - 3)
    low, high = figure.axes[0].get_images()[0].get_clim()
    assert low == -high
    assert any("first 100 of them shown" in t for t in texts_of(figure))


def test_image_pictures_need_28x28_inputs(run):
    small = Network([64, 8, 10], seed=0)
    X = np.zeros((5, 64), dtype=np.float32)
    with pytest.raises(DigitnetError, match="28×28"):
        plots.hidden_units(small)
    with pytest.raises(DigitnetError, match="28×28"):
        plots.mistakes(small, X, np.zeros(5, dtype=np.int64))


def test_activations_of_one_digit(run, tmp_path):
    figure = plots.activations(run.network, run.X_test[0], tmp_path / "a.png", label=int(run.y_test[0]))
    assert_png(tmp_path / "a.png", "activations")
    output_axes = figure.axes[-1]
    heights = [bar.get_height() for bar in output_axes.patches]
    np.testing.assert_allclose(heights, run.network.predict_proba(run.X_test[:1])[0], rtol=1e-6)
    with pytest.raises(DigitnetError, match="one sample"):
        plots.activations(run.network, run.X_test[:2])


def test_learning_rates_marks_a_diverging_run_instead_of_failing(run, tmp_path):
    # A linear network with a squared loss blows up within a few steps at η = 10.
    linear = Network([784, 16, 10], activation="identity", output="identity", loss="mse", seed=0)
    figure = plots.learning_rates(linear, run.X_train[:600], run.y_train[:600], tmp_path / "lr.png",
                                  lrs=[0.01, 0.1, 10], epochs=1, batch_size=32)
    assert_png(tmp_path / "lr.png", "lr")
    legend = [t.get_text() for t in figure.axes[0].get_legend().get_texts()]
    assert legend[0].startswith("η = 0.01: too low, final loss")
    assert legend[1].startswith("η = 0.1: best, final loss")
    assert legend[2] == "η = 10: too high, diverged in epoch 1"
    assert "η = 10 diverged" in texts_of(figure)


def test_data_grid_shows_ten_of_each_class(run, tmp_path):
    figure = plots.data_grid(run.X_train, run.y_train, tmp_path / "d.png")
    assert_png(tmp_path / "d.png", "data")
    sheet = figure.axes[0].get_images()[0].get_array()
    first_three = run.X_train[np.flatnonzero(run.y_train == 3)[0]].reshape(28, 28)
    row = 3 * (28 + 2)
    np.testing.assert_allclose(sheet[row:row + 28, :28], first_three)


def test_without_matplotlib_the_error_says_what_to_install(monkeypatch):
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)     # makes `import matplotlib` fail
    with pytest.raises(DigitnetError, match=r"pip install 'digitnet\[plots\]'"):
        plots.hidden_units(Network([784, 4, 10], seed=0))


# -- the commands ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(cache):
    environment = dict(os.environ, DIGITNET_CACHE_DIR=str(cache), **_THREADS)
    environment.pop("DISPLAY", None)          # pictures must never need a display
    return environment


def digitnet(env, *args, cwd):
    return subprocess.run([sys.executable, "-m", "digitnet", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=180, check=False)


def assert_one_line_error(proc, fragment):
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert fragment.lower() in lines[0].lower(), (fragment, lines[0])


QUICK = ["--limit", N_TEST, "--subset", 600, "--epochs", 1]


@pytest.mark.parametrize("kind", plots.KINDS)
def test_plot_command_draws_every_kind(run, env, tmp_path, kind):
    # RUN may be a checkpoint; `data` needs no model at all.
    source = {"curves": [run.checkpoint], "data": []}.get(kind, [run.model])
    out = tmp_path / f"{kind}.png"
    proc = digitnet(env, "plot", kind, *source, "--out", out, *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == f"wrote {out}"
    assert proc.stderr == ""                  # no warnings either
    assert_png(out, kind)


@pytest.fixture(scope="module")
def odd_models(run):
    """A model without history, one with 64 inputs, and a file that is not a model."""
    no_history = save_model(run.folder / "untrained.npz", Network([784, 16, 10], seed=0),
                            preprocessing=PREPROCESSING)
    small_inputs = save_model(run.folder / "8x8.npz", Network([64, 8, 10], seed=0))
    broken = run.folder / "broken.npz"
    broken.write_bytes(run.model.read_bytes()[:500])
    return SimpleNamespace(no_history=no_history, small_inputs=small_inputs, broken=broken)


@pytest.mark.parametrize("case, fragment", [
    ("missing", "does not exist"),
    ("broken", "cannot read model file"),
    ("kind", "invalid choice"),
    ("index", "--index 400 is out of range"),
    ("no-history", "this model has no training history"),
    ("not-784", "28×28"),
    ("folder", "does not exist"),
    ("lrs", "--lrs must be"),
])
def test_plot_command_bad_input_is_one_line_exit_2(run, odd_models, env, tmp_path, case, fragment):
    out = tmp_path / "picture.png"
    args = {
        "missing": ["curves", tmp_path / "nope.npz", "--out", out],
        "broken": ["curves", odd_models.broken, "--out", out],
        "kind": ["histogram", run.model, "--out", out],
        "index": ["activations", run.model, "--out", out, "--limit", N_TEST, "--index", N_TEST],
        "no-history": ["curves", odd_models.no_history, "--out", out],
        "not-784": ["hidden", odd_models.small_inputs, "--out", out],
        "folder": ["curves", run.model, "--out", tmp_path / "no" / "such" / "folder.png"],
        "lrs": ["lr", run.model, "--out", out, "--lrs", "0.1,fast"],
    }[case]
    proc = digitnet(env, "plot", *args, cwd=tmp_path)
    assert_one_line_error(proc, fragment)
    assert list(tmp_path.iterdir()) == [], "an error must leave no file behind"


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_report_writes_every_picture_and_a_page_that_shows_them(run, env, tmp_path):
    out = tmp_path / "new" / "report"             # folders that do not exist yet
    proc = digitnet(env, "report", run.model, "--out", out, *QUICK, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    page = (out / "index.html").read_text(encoding="utf-8")
    parser = _Images()
    parser.feed(page)
    assert sorted(parser.sources) == sorted(f"{kind}.png" for kind in plots.KINDS)
    for source in parser.sources:
        assert_png(out / source, source[:-4])
    # The story of the run: its summary, its recipe, its accuracies, its epochs.
    import html

    assert html.escape(run.network.summary().splitlines()[0]) in page
    assert "<td class='key'>optimizer</td><td class='text'>sgd</td>" in page
    test_accuracy = np.mean(run.network.predict(run.X_test) == run.y_test)
    assert f"mnist test set ({N_TEST} samples)</td><td>{100 * test_accuracy:.1f}%" in page
    for record in run.history.records:
        assert f"<td>{100 * record['val_accuracy']:.2f}%</td>" in page
    # Readable like any file the user writes (the temporary files were private).
    umask = os.umask(0)
    os.umask(umask)
    for path in out.iterdir():
        assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~umask, path


def test_report_bad_input_is_one_line_and_creates_nothing(run, env, tmp_path):
    proc = digitnet(env, "report", run.model, "--out", "r", "--limit", 10, "--index", 10, cwd=tmp_path)
    assert_one_line_error(proc, "--index 10 is out of range")
    proc = digitnet(env, "report", tmp_path / "nope.npz", "--out", "r", cwd=tmp_path)
    assert_one_line_error(proc, "does not exist")
    assert list(tmp_path.iterdir()) == []


def test_report_of_a_model_without_history_says_so_on_the_page(odd_models, cache, tmp_path, monkeypatch):
    from digitnet.app.report import write_report

    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(cache))
    index = write_report(odd_models.no_history, tmp_path / "r", kinds=["curves", "confusion"], limit=50)
    page = index.read_text(encoding="utf-8")
    assert "Not drawn: this model has no training history" in page
    assert "<img src='confusion.png'" in page and "curves.png" not in page
    assert sorted(p.name for p in index.parent.iterdir()) == ["confusion.png", "index.html"]
