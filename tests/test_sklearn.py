"""digitnet.sklearn.DigitNetClassifier against scikit-learn itself.

scikit-learn's own estimator checks (``parametrize_with_checks``: every one
of them, none marked as an expected failure), then what people do with a
classifier: a ``Pipeline`` with a ``StandardScaler`` in a ``GridSearchCV``
on real MNIST images, ``clone`` and ``get_params``/``set_params``, pickling,
``partial_fit``, early stopping, string labels.
"""

from __future__ import annotations

import copy
import pickle
import warnings

import numpy as np
import pytest

pytest.importorskip("sklearn")

from sklearn.base import clone  # noqa: E402
from sklearn.exceptions import NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline, make_pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import digitnet  # noqa: E402
from digitnet import Network  # noqa: E402
from digitnet.data import load_mnist  # noqa: E402
from digitnet.files.modelfile import load_model, save_model  # noqa: E402
from digitnet.sklearn import DigitNetClassifier, InconsistentVersionWarning  # noqa: E402

#: The estimators scikit-learn's checks run on.  The checks train on small
#: blobs and random data, so a small network and a few epochs keep them fast
#: (about two seconds each), and the three cover both kinds of output
#: (softmax; sigmoid made probabilities), float32 and float64, early stopping.
CHECKED = [
    DigitNetClassifier(hidden_layer_sizes=(16,), epochs=20, batch_size=32, learning_rate=0.01),
    DigitNetClassifier(hidden_layer_sizes=(16,), loss="binary_cross_entropy", activation="tanh",
                       optimizer="momentum", epochs=20, batch_size=32, dtype="float64"),
    DigitNetClassifier(hidden_layer_sizes=(16,), epochs=20, batch_size=16, learning_rate=0.01,
                       early_stopping=3),
]
#: the checks that may not pass, and why: none.  (Kept as a name so that a
#: future exception has to be written here, with its reason, and in docs/ecosystem.md.)
EXPECTED_FAILURES: dict = {}

NAMES = np.array(["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"])


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: on a shared two-core machine BLAS's second thread only waits (as in test_cli)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


@parametrize_with_checks(CHECKED, expected_failed_checks=lambda estimator: EXPECTED_FAILURES)
def test_scikit_learn_estimator_checks(estimator, check, monkeypatch):
    # The array-API check runs only with SciPy's array API switched on (it is skipped otherwise).
    monkeypatch.setenv("SCIPY_ARRAY_API", "1")
    check(estimator)


@pytest.fixture(scope="module")
def mnist_subset():
    X, y = load_mnist("train")
    X_test, y_test = load_mnist("test")
    return X[:3000], y[:3000], X_test[:2000], y_test[:2000]


@pytest.mark.slow
def test_pipeline_with_scaler_in_grid_search_on_mnist(mnist_subset):
    X, y, X_test, y_test = mnist_subset
    labels, labels_test = NAMES[y], NAMES[y_test]       # any label type: here strings
    pipeline = Pipeline([("scale", StandardScaler()),
                         ("net", DigitNetClassifier(hidden_layer_sizes=(32,), epochs=4,
                                                    random_state=0))])
    search = GridSearchCV(pipeline, {"net__learning_rate": [1e-4, 3e-3]}, cv=2)
    search.fit(X, labels)
    assert search.best_params_ == {"net__learning_rate": 3e-3}
    assert search.best_score_ > 0.85
    assert set(search.cv_results_["mean_test_score"]) and len(search.cv_results_["params"]) == 2
    best = search.best_estimator_
    assert list(best.named_steps["net"].classes_) == sorted(NAMES)
    assert best.score(X_test, labels_test) > 0.85
    predicted = best.predict(X_test[:5])
    assert predicted.dtype.kind == "U" and set(predicted) <= set(NAMES)
    proba = best.predict_proba(X_test[:5])
    assert proba.shape == (5, 10) and np.allclose(proba.sum(axis=1), 1)


def test_clone_get_params_set_params_round_trip():
    clf = DigitNetClassifier(hidden_layer_sizes=(8, 4), activation="tanh", loss="quadratic",
                             optimizer="nesterov", learning_rate=0.05, batch_size=None, epochs=3,
                             l2=0.5, shift=1, early_stopping=2, validation_fraction=0.2,
                             random_state=7, verbose=1, schedule="cosine", init="glorot",
                             dtype="float64")
    params = clf.get_params()
    assert params["hidden_layer_sizes"] == (8, 4) and params["random_state"] == 7
    copy = clone(clf)
    assert copy is not clf and copy.get_params() == params
    fresh = DigitNetClassifier().set_params(**params)
    assert fresh.get_params() == params
    assert repr(fresh) == repr(clf)
    # Nested parameters through a pipeline, both ways.
    pipeline = make_pipeline(StandardScaler(), DigitNetClassifier())
    pipeline.set_params(digitnetclassifier__epochs=2, digitnetclassifier__activation="sigmoid")
    deep = pipeline.get_params(deep=True)
    assert deep["digitnetclassifier__epochs"] == 2 and deep["digitnetclassifier__activation"] == "sigmoid"
    assert clone(pipeline).get_params(deep=True)["digitnetclassifier__epochs"] == 2
    # A clone of a fitted classifier is unfitted, with the same parameters.
    X, y = np.random.default_rng(0).random((40, 6)), np.arange(40) % 2
    fitted = DigitNetClassifier(hidden_layer_sizes=(4,), epochs=1).fit(X, y)
    assert hasattr(fitted, "network_") and not hasattr(clone(fitted), "network_")


def test_pickle_round_trip_and_model_file_stays_pickle_free(mnist_subset, tmp_path):
    X, y, X_test, _ = mnist_subset
    clf = DigitNetClassifier(hidden_layer_sizes=(24,), epochs=2, random_state=0).fit(X[:1000], y[:1000])
    # scikit-learn's convention: the fitted estimator pickles, with the version that pickled it.
    state = clf.__getstate__()
    assert state["_digitnet_version"] == digitnet.__version__
    assert "_work" not in state["network_"].__getstate__()
    data = pickle.dumps(clf)
    with warnings.catch_warnings():
        warnings.simplefilter("error")           # the same version: no warning
        again = pickle.loads(data)
    np.testing.assert_array_equal(again.predict_proba(X_test), clf.predict_proba(X_test))
    assert again.get_params() == clf.get_params() and "_digitnet_version" not in vars(again)
    # Another version's pickle loads with a warning that says what to do.
    other = copy.copy(clf)
    other.__getstate__ = lambda: dict(state, _digitnet_version="0.0.1")
    with pytest.warns(InconsistentVersionWarning, match="pickled by digitnet 0.0.1 .*save_model"):
        pickle.loads(pickle.dumps(other))
    # digitnet's own file of the network needs no pickle to load.
    path = save_model(tmp_path / "clf.npz", clf.network_)
    with np.load(path, allow_pickle=False) as archive:
        assert set(archive.files) == {"params", "header"}
    np.testing.assert_array_equal(load_model(path).predict_proba(X_test), clf.network_.predict_proba(X_test))


def test_random_state_is_digitnets_seed(mnist_subset):
    """An int random_state gives the very network Network(seed=…).fit(seed=…) gives."""
    X, y, _, _ = mnist_subset
    clf = DigitNetClassifier(hidden_layer_sizes=(20,), optimizer="momentum", learning_rate=0.05,
                             batch_size=50, epochs=2, l2=1.0, random_state=3).fit(X[:1000], y[:1000])
    net = Network([784, 20, 10], activation="relu", output="softmax", seed=3)
    net.fit(X[:1000], y[:1000], optimizer="momentum", lr=0.05, batch_size=50, epochs=2, l2=1.0)
    np.testing.assert_array_equal(clf.network_.params, net.params)
    assert clf.n_iter_ == 2 and clf.n_features_in_ == 784 and list(clf.classes_) == list(range(10))
    assert len(clf.history_) == 2 and clf.history_.seed == 3


def test_partial_fit_continues_one_epoch_per_call(mnist_subset):
    X, y, X_test, y_test = mnist_subset
    clf = DigitNetClassifier(hidden_layer_sizes=(32,), learning_rate=1e-2, random_state=0)
    with pytest.raises(ValueError, match="needs classes="):
        clf.partial_fit(X[:100], NAMES[y[:100]])
    for start in range(0, 3000, 1000):
        clf.partial_fit(X[start:start + 1000], NAMES[y[start:start + 1000]], classes=NAMES)
    assert clf.n_iter_ == 3 and [r["epoch"] for r in clf.history_.records] == [1, 2, 3]
    assert clf.score(X_test, NAMES[y_test]) > 0.8
    with pytest.raises(ValueError, match="'ten'.*not among the classes"):
        clf.partial_fit(X[:2], np.array(["one", "ten"]))
    with pytest.raises(ValueError, match="differs from the classes"):
        clf.partial_fit(X[:2], NAMES[y[:2]], classes=NAMES[:5])
    with pytest.raises(ValueError, match="784 features"):
        clf.partial_fit(X[:2, :100], NAMES[y[:2]])


def test_early_stopping_and_shift_on_mnist(mnist_subset, capsys):
    X, y, X_test, y_test = mnist_subset
    clf = DigitNetClassifier(hidden_layer_sizes=(32,), learning_rate=1e-2, epochs=30, shift=1,
                             early_stopping=2, validation_fraction=0.2, random_state=0, verbose=1)
    clf.fit(X[:1500], y[:1500])
    history = clf.history_
    assert clf.n_iter_ == len(history) < 30 and history.stopped_early
    assert all(r["val_accuracy"] is not None for r in history.records)
    best = min(history.records, key=lambda r: r["val_loss"])
    assert history.best_epoch == best["epoch"]
    assert clf.score(X_test, y_test) > 0.8
    # verbose: one line per epoch (no bar: the test's stderr is not a terminal)
    out = capsys.readouterr()
    assert out.out.count("epoch ") == clf.n_iter_ and "val " in out.out and out.err == ""
    # A shift needs square images.
    with pytest.raises(ValueError, match="square images"):
        DigitNetClassifier(shift=1, epochs=1).fit(X[:20, :50], y[:20])


def test_one_class_and_bad_parameters_are_clear_errors():
    X = np.random.default_rng(0).random((10, 3))
    refused = DigitNetClassifier()
    with pytest.raises(ValueError, match=r"at least 2 classes.*1 class \(1\.0\)"):
        refused.fit(X, np.ones(10))
    with pytest.raises(NotFittedError):            # a refused fit leaves nothing half-fitted
        refused.predict(X)
    with pytest.raises(ValueError, match="label 'c', which is not among"):
        refused.partial_fit(X, np.array(list("abcabcabca")), classes=["a", "b"])
    assert not hasattr(refused, "classes_") and not hasattr(refused, "network_")
    # Parameters are checked when fitting (scikit-learn's rule), with digitnet's messages.
    with pytest.raises(ValueError, match="unknown optimizer"):
        DigitNetClassifier(optimizer="newton").fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="activation"):
        DigitNetClassifier(activation="swish").fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="validation_fraction"):
        DigitNetClassifier(early_stopping=True, validation_fraction=1.5).fit(X, np.arange(10) % 2)
    with pytest.raises(ValueError, match="random_state"):
        DigitNetClassifier(random_state=-1).fit(X, np.arange(10) % 2)


def test_import_digitnet_does_not_import_it():
    import subprocess
    import sys

    code = "import sys, digitnet; print('digitnet.sklearn' in sys.modules, 'sklearn' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]
