"""Shared fixtures.  Keep this small: most helpers belong in the test module that uses them."""

from pathlib import Path

import pytest

#: test modules whose results depend on floating-point arithmetic (matrix
#: products through BLAS).  They carry the ``numeric`` mark, and CI runs them
#: again under other OpenBLAS kernels and thread counts (see .ci/run), so a
#: comparison that holds on one CPU only cannot land.
NUMERIC_MODULES = {"test_network", "test_gradients", "test_training", "test_optimizers",
                   "test_augment", "test_modelfile", "test_recipes", "test_bench_smoke",
                   "test_web_api", "test_plots", "test_guide", "test_layout", "test_train_hooks"}


def pytest_collection_modifyitems(items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in NUMERIC_MODULES:
            item.add_marker(pytest.mark.numeric)

#: the real MNIST files shipped inside the package (IDX format, gzip-compressed)
MNIST_DIR = Path(__file__).resolve().parents[1] / "src" / "digitnet" / "data" / "mnist"


@pytest.fixture(scope="session", autouse=True)
def private_cache_dir(tmp_path_factory):
    """Keep the whole session, subprocesses included, out of the user's own cache folder.

    Tests that need a particular cache set ``DIGITNET_CACHE_DIR`` themselves.
    """
    import os

    saved = os.environ.get("DIGITNET_CACHE_DIR")
    os.environ["DIGITNET_CACHE_DIR"] = str(tmp_path_factory.mktemp("digitnet-session-cache"))
    yield
    if saved is None:
        os.environ.pop("DIGITNET_CACHE_DIR", None)
    else:
        os.environ["DIGITNET_CACHE_DIR"] = saved


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding train-/t10k- images and labels ``*-idx?-ubyte.gz``.

    No skip when they are missing: they ship with the package, so their
    absence is a defect the tests should report.
    """
    return MNIST_DIR


#: the preprocessing header `digitnet train` writes for an MNIST model
MNIST_PREPROCESSING = {"scale": "unit", "input_shape": [28, 28], "dataset": "mnist",
                       "classes": [str(d) for d in range(10)]}


@pytest.fixture(scope="session")
def small_model_path(tmp_path_factory) -> Path:
    """A small accurate model ([784, 64, 10] ReLU/softmax, ~95%), saved as a real model file.

    Trained once per test session on the first 20,000 real MNIST training
    images; the web API and browser tests share it.
    """
    from digitnet import Network
    from digitnet.data import load_mnist
    from digitnet.files.modelfile import save_model

    X, y = load_mnist("train")
    net = Network([784, 64, 10], activation="relu", output="softmax", seed=0)
    net.fit(X[:20000], y[:20000], epochs=3, batch_size=128, optimizer="adam", lr=3e-3, seed=0)
    path = tmp_path_factory.mktemp("small-model") / "small.npz"
    save_model(path, net, preprocessing=MNIST_PREPROCESSING, recipe={"name": "small-test-model"})
    return path
