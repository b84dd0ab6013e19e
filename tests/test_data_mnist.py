"""Bundled MNIST, other sources of load(), the decode cache, scaling, one-hot and splits."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import numpy as np
import pytest

from digitnet.data import (
    SPLITS,
    Dataset,
    cache_dir,
    datasets,
    load,
    load_idx_pair,
    load_mnist,
    one_hot,
    scale_images,
    split,
    write_idx,
    write_kaggle_csv,
)
from digitnet.errors import DataError

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory):
    """One cache folder for the whole session (the CSV tests use the same path),
    so the 47 MB training images are decoded once, and the user's cache is untouched."""
    folder = tmp_path_factory.getbasetemp() / "digitnet-cache"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("DIGITNET_CACHE_DIR", str(folder))
        yield folder


@pytest.fixture(scope="module")
def raw():
    """Bundled MNIST as stored: uint8 images (n, 28, 28), int64 labels."""
    return load("mnist", scale=None, flatten=False, dtype=np.uint8)


# --------------------------------------------------------------------------- #
# bundled MNIST


def test_bundled_files_are_package_data():
    names = sorted(p.name for p in datasets.BUNDLED_MNIST_DIR.iterdir())
    assert names == sorted(f"{n}.gz" for n in datasets.IDX_FILES.values())


def test_mnist_shapes_and_pixels(raw):
    assert raw.name == "mnist"
    assert raw.X_train.shape == (60000, 28, 28) and raw.X_train.dtype == np.uint8
    assert raw.X_test.shape == (10000, 28, 28) and raw.X_test.dtype == np.uint8
    assert raw.y_train.shape == (60000,) and raw.y_train.dtype == np.int64
    assert raw.y_test.shape == (10000,) and raw.y_test.dtype == np.int64
    for X in (raw.X_train, raw.X_test):
        assert X.min() == 0 and X.max() == 255
    assert raw.n_classes == 10


def test_mnist_label_counts(raw):
    assert np.bincount(raw.y_train, minlength=10).tolist() == TRAIN_COUNTS
    assert np.bincount(raw.y_test, minlength=10).tolist() == TEST_COUNTS


def test_mnist_known_pixels(raw):
    # The first training image is a 5; its pixel sum is a cheap fingerprint.
    assert raw.y_train[:5].tolist() == [5, 0, 4, 1, 9]
    assert raw.y_test[:5].tolist() == [7, 2, 1, 0, 4]
    assert int(raw.X_train[0].sum()) == 27525
    assert raw.X_train[0, 14].tolist()[:8] == [0, 0, 0, 0, 0, 0, 0, 0]


def test_default_load_is_flat_unit_float32(raw):
    ds = load()
    assert isinstance(ds, Dataset)
    assert ds.X_train.shape == (60000, 784) and ds.X_train.dtype == np.float32
    assert ds.X_test.shape == (10000, 784)
    assert float(ds.X_train.min()) == 0.0 and float(ds.X_train.max()) == 1.0
    np.testing.assert_array_equal(ds.X_test, raw.X_test.reshape(10000, 784) / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, raw.y_train)
    assert "float32[60000, 784]" in repr(ds)


def test_load_mnist_sugar(raw):
    X, y = load_mnist("test", scale="symmetric", flatten=False, dtype=np.float64)
    assert X.shape == (10000, 28, 28) and X.dtype == np.float64
    assert X.min() == -1.0 and X.max() == 1.0
    np.testing.assert_array_equal(y, raw.y_test)
    with pytest.raises(DataError, match="unknown MNIST split 'valid'"):
        load_mnist("valid")


def test_decoded_arrays_are_cached(shared_cache, raw):
    entries = sorted(p.name.split(".")[0] for p in (shared_cache / "decoded" / "mnist").glob("*.npy"))
    assert entries == sorted(datasets.IDX_FILES.values())
    assert cache_dir() == shared_cache
    assert not list((shared_cache / "decoded" / "mnist").glob(".*"))  # no temporary files


def test_damaged_cache_entry_is_rebuilt(shared_cache, raw):
    entry = next((shared_cache / "decoded" / "mnist").glob("t10k-labels-idx1-ubyte.*.npy"))
    entry.write_bytes(entry.read_bytes()[:50])
    X, y = load_mnist("test", scale=None, dtype=np.uint8)
    np.testing.assert_array_equal(y, raw.y_test)
    assert np.load(entry).shape == (10000,)


def test_cache_entry_claiming_a_huge_array_is_rebuilt(shared_cache, raw):
    """A damaged .npy header must not make NumPy allocate what it claims."""
    entry = next((shared_cache / "decoded" / "mnist").glob("t10k-labels-idx1-ubyte.*.npy"))
    data = entry.read_bytes()
    assert b"(10000,)" in data
    entry.write_bytes(data.replace(b"(10000,)", b"(999999999999999,)", 1))
    X, y = load_mnist("test", scale=None, dtype=np.uint8)
    np.testing.assert_array_equal(y, raw.y_test)
    assert np.load(entry).shape == (10000,)


def test_unwritable_cache_still_loads(monkeypatch, tmp_path, raw):
    blocker = tmp_path / "a-file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(blocker / "cache"))
    ds = load("mnist", scale=None, dtype=np.uint8, flatten=False)
    np.testing.assert_array_equal(ds.X_train, raw.X_train)
    assert blocker.read_text() == "not a folder"


def copy_bundle(target: Path) -> Path:
    target.mkdir()
    for path in datasets.BUNDLED_MNIST_DIR.iterdir():
        shutil.copyfile(path, target / path.name)
    return target


def test_changed_content_fails_the_sha_check(monkeypatch, tmp_path, raw):
    folder = copy_bundle(tmp_path / "mnist-copy")
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[8 + 1234] = (content[8 + 1234] + 1) % 10  # still a valid label, valid gzip
    labels.write_bytes(gzip.compress(bytes(content)))
    monkeypatch.setattr(datasets, "BUNDLED_MNIST_DIR", folder)
    with pytest.raises(DataError) as info:
        load("mnist")
    message = str(info.value)
    assert str(labels) in message and "SHA-256" in message and "not the genuine mnist file" in message
    assert "\n" not in message


def test_verdict_is_redone_when_the_file_changes(monkeypatch, tmp_path, raw):
    folder = copy_bundle(tmp_path / "mnist-copy")
    monkeypatch.setattr(datasets, "BUNDLED_MNIST_DIR", folder)
    np.testing.assert_array_equal(load_mnist("test", scale=None, dtype=np.uint8)[1], raw.y_test)
    labels = folder / "train-labels-idx1-ubyte.gz"
    content = bytearray(gzip.decompress(labels.read_bytes()))
    content[-1] = (content[-1] + 3) % 10
    labels.write_bytes(gzip.compress(bytes(content)))
    with pytest.raises(DataError, match="SHA-256"):
        load("mnist")


def test_damaged_gzip_in_bundle(monkeypatch, tmp_path):
    folder = copy_bundle(tmp_path / "mnist-copy")
    labels = folder / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(labels.read_bytes()[:-100])
    monkeypatch.setattr(datasets, "BUNDLED_MNIST_DIR", folder)
    with pytest.raises(DataError, match="corrupt gzip data"):
        load("mnist")


def test_missing_bundle_points_to_download(monkeypatch, tmp_path):
    monkeypatch.setattr(datasets, "BUNDLED_MNIST_DIR", tmp_path / "gone")
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(DataError, match=r"mnist is not on this machine .*download\('mnist'\)"):
        load("mnist")


# --------------------------------------------------------------------------- #
# other sources


def small_set(folder: Path, n_train=30, n_test=12, seed=1, gz=True, dotted=False):
    """Write a tiny MNIST-style set of random images; return the arrays."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        "train_images": rng.integers(0, 256, (n_train, 28, 28)).astype(np.uint8),
        "train_labels": rng.integers(0, 10, n_train).astype(np.uint8),
        "test_images": rng.integers(0, 256, (n_test, 28, 28)).astype(np.uint8),
        "test_labels": rng.integers(0, 10, n_test).astype(np.uint8),
    }
    for role, name in datasets.IDX_FILES.items():
        if dotted:
            name = name.replace("-idx", ".idx")
        write_idx(folder / (name + (".gz" if gz else "")), arrays[role])
    return arrays


@pytest.mark.parametrize("gz, dotted", [(True, False), (False, False), (False, True)])
def test_load_idx_folder(tmp_path, gz, dotted):
    arrays = small_set(tmp_path / "my-digits", gz=gz, dotted=dotted)
    ds = load(tmp_path / "my-digits", scale="raw", flatten=False)
    assert ds.name == "my-digits"
    assert ds.X_train.shape == (30, 28, 28) and ds.X_train.dtype == np.float32
    np.testing.assert_array_equal(ds.X_train, arrays["train_images"])
    np.testing.assert_array_equal(ds.y_test, arrays["test_labels"])
    assert ds.y_test.dtype == np.int64
    flat = load(str(tmp_path / "my-digits"))
    assert flat.X_test.shape == (12, 784)


def test_folder_with_missing_file(tmp_path):
    small_set(tmp_path / "d")
    (tmp_path / "d" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"missing t10k-labels-idx1-ubyte\[\.gz\]"):
        load(tmp_path / "d")


def test_folder_with_mismatched_counts(tmp_path):
    small_set(tmp_path / "d")
    write_idx(tmp_path / "d" / "train-labels-idx1-ubyte.gz", np.zeros(29, np.uint8))
    with pytest.raises(DataError, match="29 labels but train-images-idx3-ubyte.gz has 30 images"):
        load(tmp_path / "d")


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "plain"])
@pytest.mark.parametrize("role", ["test_images", "train_images"])
def test_folder_with_no_samples(tmp_path, role, gz):
    """A valid header declaring 0 images: one line naming the file (was a reshape traceback)."""
    small_set(tmp_path / "d")
    name = datasets.IDX_FILES[role]
    (tmp_path / "d" / (name + ".gz")).unlink()
    empty = tmp_path / "d" / (name + (".gz" if gz else ""))
    write_idx(empty, np.zeros((0, 28, 28), np.uint8))
    labels = tmp_path / "d" / (datasets.IDX_FILES[role.replace("images", "labels")] + ".gz")
    write_idx(labels, np.zeros(0, np.uint8))
    with pytest.raises(DataError) as info:
        load(tmp_path / "d")
    assert str(info.value) == (f"{empty}: has no samples (its header declares shape (0, 28, 28)); "
                               "the file is empty or damaged, fetch it again")
    with pytest.raises(DataError, match="has no samples"):
        load_idx_pair(empty, labels)


def test_folder_with_images_of_no_pixels(tmp_path):
    small_set(tmp_path / "d")
    write_idx(tmp_path / "d" / "t10k-images-idx3-ubyte.gz", np.zeros((12, 28, 0), np.uint8))
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte.gz: its images hold no pixels \(shape \(12, 28, 0\)\)"):
        load(tmp_path / "d")


@pytest.mark.parametrize("bad, message", [
    (np.nan, "holds NaN or infinite pixel values"),
    (-np.inf, "holds NaN or infinite pixel values"),
    (256.0, r"pixel values must be grey levels 0\.\.255, got 0\.0\.\.256\.0"),
    (-1.0, r"pixel values must be grey levels 0\.\.255, got -1\.0\.\.0\.0"),
])
def test_folder_with_out_of_range_pixels_names_the_file(tmp_path, bad, message):
    small_set(tmp_path / "d")
    images = np.zeros((30, 28, 28), np.float32)
    images[3, 4, 5] = bad
    write_idx(tmp_path / "d" / "train-images-idx3-ubyte.gz", images)
    with pytest.raises(DataError, match="train-images-idx3-ubyte.gz: " + message):
        load(tmp_path / "d")


def test_scale_images_refuses_nan():
    with pytest.raises(DataError, match="NaN or infinite"):
        scale_images(np.array([0.0, np.nan], dtype=np.float32))


def test_load_csv_source(tmp_path, raw):
    path = tmp_path / "kaggle-train.csv"
    write_kaggle_csv(path, raw.X_train[:50], raw.y_train[:50])
    ds = load(path, flatten=False)
    assert ds.name == "kaggle-train" and ds.X_test is None and ds.y_test is None
    np.testing.assert_array_equal(ds.X_train, raw.X_train[:50] / np.float32(255))
    np.testing.assert_array_equal(ds.y_train, raw.y_train[:50])
    write_kaggle_csv(tmp_path / "test.csv", raw.X_test[:5])
    with pytest.raises(DataError, match="has no label column"):
        load(tmp_path / "test.csv")


def test_unknown_source():
    with pytest.raises(DataError, match="unknown data source 'cifar10'.*fashion-mnist, kmnist, mnist"):
        load("cifar10")


def test_kmnist_missing_says_how_to_download(monkeypatch, tmp_path):
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError) as info:
        load("kmnist")
    assert "kmnist is not on this machine" in str(info.value)
    assert f"download('kmnist') saves a checked copy to {tmp_path / 'kmnist'}" in str(info.value)


def test_fashion_missing_says_how_to_get_it(monkeypatch, tmp_path):
    monkeypatch.setitem(datasets.SYSTEM_DATA_DIRS, "fashion-mnist", (tmp_path / "nowhere",))
    monkeypatch.setenv("DIGITNET_CACHE_DIR", str(tmp_path))
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist.*download\\('fashion-mnist'\\)"):
        load("fashion-mnist")


@pytest.mark.skipif(not FASHION_DIR.is_dir(), reason="Debian package dataset-fashion-mnist is not installed")
def test_fashion_mnist_from_debian_package():
    ds = load("fashion-mnist", scale=None, flatten=False, dtype=np.uint8)
    assert ds.name == "fashion-mnist"
    assert ds.X_train.shape == (60000, 28, 28) and ds.X_test.shape == (10000, 28, 28)
    # Fashion-MNIST is balanced: 6,000 / 1,000 images per class.
    assert np.bincount(ds.y_train).tolist() == [6000] * 10
    assert np.bincount(ds.y_test).tolist() == [1000] * 10
    assert ds.X_train.max() == 255
    assert ds.classes[0] == "T-shirt/top" and ds.classes[9] == "Ankle boot"


def test_class_names_follow_the_data_set():
    from digitnet.train.recipes import get_preset, preprocessing_for

    assert load("mnist", scale=None, dtype=np.uint8).classes == [str(d) for d in range(10)]
    # a model trained on Fashion-MNIST records the garments' names in its header
    assert preprocessing_for(get_preset("best"), "fashion-mnist")["classes"][9] == "Ankle boot"
    assert preprocessing_for(get_preset("best"), "mnist")["classes"] == [str(d) for d in range(10)]


# --------------------------------------------------------------------------- #
# load_idx_pair


def test_load_idx_pair(tmp_path):
    arrays = small_set(tmp_path)
    images, labels = load_idx_pair(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-labels-idx1-ubyte.gz")
    np.testing.assert_array_equal(images, arrays["train_images"])
    assert labels.dtype == np.int64
    write_idx(tmp_path / "l.idx", np.array([0, 1, 10] * 10, dtype=np.uint8))
    with pytest.raises(DataError, match=r"label 10 at index 2 is outside 0\.\.9"):
        load_idx_pair(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "l.idx")
    images, labels = load_idx_pair(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "l.idx", n_classes=11)
    assert labels.max() == 10
    with pytest.raises(DataError, match="labels must be a 1-D integer array"):
        load_idx_pair(tmp_path / "train-images-idx3-ubyte.gz", tmp_path / "train-images-idx3-ubyte.gz")


# --------------------------------------------------------------------------- #
# scaling and one-hot


def test_scale_modes():
    pixels = np.array([0, 51, 255], dtype=np.uint8)
    np.testing.assert_allclose(scale_images(pixels, "unit"), [0.0, 0.2, 1.0], rtol=1e-7)
    np.testing.assert_allclose(scale_images(pixels, "symmetric"), [-1.0, -0.6, 1.0], rtol=1e-6)
    assert scale_images(pixels, None).tolist() == [0.0, 51.0, 255.0]
    assert scale_images(pixels, "raw", dtype=np.uint8).dtype == np.uint8
    assert scale_images(pixels, "unit").dtype == np.float32
    assert scale_images(pixels, "unit", dtype=np.float64).dtype == np.float64
    out = scale_images(pixels, "raw")
    out[0] = 7
    assert pixels[0] == 0  # always a copy


@pytest.mark.parametrize(
    "images, mode, dtype, message",
    [
        (np.zeros(3, np.uint8), "zscore", np.float32, "unknown scale mode 'zscore'"),
        (np.zeros(3, np.uint8), "unit", np.int32, "needs a floating dtype"),
        (np.array([0.0, 0.5, 1.0]), "unit", np.float32, None),
        (np.array([-1.0, 300.0]), "unit", np.float32, "got values -1.0..300.0; are they already scaled"),
        (np.array(["a"]), "unit", np.float32, "must be numbers 0..255"),
    ],
)
def test_scale_errors(images, mode, dtype, message):
    if message is None:
        scale_images(images, mode, dtype)  # already-scaled floats within 0..255 are allowed
        return
    with pytest.raises(DataError, match=message):
        scale_images(images, mode, dtype)


def test_one_hot():
    encoded = one_hot(np.array([3, 0, 9]))
    assert encoded.shape == (3, 10) and encoded.dtype == np.float32
    assert encoded.argmax(axis=1).tolist() == [3, 0, 9] and encoded.sum() == 3
    assert one_hot(np.array([1, 2]), n_classes=3, dtype=np.int8).tolist() == [[0, 1, 0], [0, 0, 1]]
    assert one_hot(np.array([], dtype=np.int64)).shape == (0, 10)
    assert one_hot(np.array([2.0, 1.0]), 3).tolist() == [[0, 0, 1], [0, 1, 0]]
    with pytest.raises(DataError, match=r"label 10 at index 1 is outside 0\.\.9"):
        one_hot(np.array([1, 10]))
    with pytest.raises(DataError, match="outside 0..9"):
        one_hot(np.array([-1]))
    with pytest.raises(DataError, match="whole numbers"):
        one_hot(np.array([0.5]))
    with pytest.raises(DataError, match="1-D"):
        one_hot(np.zeros((2, 2), np.int64))


# --------------------------------------------------------------------------- #
# splits


def rows(n):
    return np.arange(n)  # X = row ids, so parts can be checked for overlap


def test_split_sizes_on_mnist(raw):
    y = raw.y_train
    X = rows(60000)
    expected = {"standard": (60000, None), "nielsen": (50000, 10000), "raschka": (55000, 5000), "zhang": (59000, 1000)}
    for name, (n_train, n_val) in expected.items():
        X_tr, y_tr, X_val, y_val = split(name, X, y)
        assert len(X_tr) == len(y_tr) == n_train
        if n_val is None:
            assert X_val is None and y_val is None
            continue
        assert len(X_val) == len(y_val) == n_val
        # disjoint and complete, labels travel with their rows
        assert np.intersect1d(X_tr, X_val).size == 0
        assert np.union1d(X_tr, X_val).size == 60000
        np.testing.assert_array_equal(y_tr, y[X_tr])
        np.testing.assert_array_equal(y_val, y[X_val])


def test_fixed_splits_take_the_documented_rows(raw):
    X_tr, _, X_val, _ = split("nielsen", rows(60000), raw.y_train)
    assert X_tr[0] == 0 and X_tr[-1] == 49999 and X_val[0] == 50000 and X_val[-1] == 59999
    X_tr, _, X_val, _ = split("zhang", rows(60000), raw.y_train)
    assert X_val.tolist() == list(range(1000)) and X_tr[0] == 1000
    X_tr, _, X_val, _ = split("nielsen", rows(1200), raw.y_train[:1200])
    assert len(X_val) == 200 and X_val[0] == 1000


def test_raschka_is_stratified(raw):
    y = raw.y_train
    _, y_tr, _, y_val = split("raschka", rows(60000), y)
    share = np.bincount(y) / 12
    assert np.all(np.abs(np.bincount(y_val, minlength=10) - share) < 1)
    np.testing.assert_allclose(np.bincount(y_tr) / len(y_tr), np.bincount(y) / len(y), atol=1e-4)


def test_raschka_depends_only_on_the_seed(raw):
    y = raw.y_train
    first = split("raschka", rows(60000), y, seed=7)[2]
    again = split("raschka", rows(60000), y, seed=7)[2]
    other = split("raschka", rows(60000), y, seed=8)[2]
    np.testing.assert_array_equal(first, again)
    assert not np.array_equal(first, other)
    # rows keep their original order
    assert np.all(np.diff(first) > 0)


def test_split_errors():
    assert set(SPLITS) == {"standard", "nielsen", "raschka", "zhang"}
    with pytest.raises(DataError, match="unknown split 'random'"):
        split("random", rows(10), rows(10))
    with pytest.raises(DataError, match="same samples"):
        split("nielsen", rows(10), rows(9))
    with pytest.raises(DataError, match="needs more than 1,000"):
        split("zhang", rows(1000), rows(1000) % 10)
    with pytest.raises(DataError, match="at least 12 rows"):
        split("raschka", rows(11), rows(11) % 10)
