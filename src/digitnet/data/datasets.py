"""Whole data sets: bundled MNIST, Fashion-MNIST, Kuzushiji-MNIST, IDX folders, CSV.

The entry point is :func:`load`, which returns a :class:`Dataset` of scaled,
optionally flattened images and int64 labels.  The helpers it is built from
(:func:`scale_images`, :func:`one_hot`, :func:`split`, :func:`load_idx_pair`)
are public too.

Known data sets are checked against SHA-256 digests of their *uncompressed*
IDX files the first time they are read, then decoded into ``.npy`` files in
the cache folder (see :func:`cache_dir`).  Later loads read those directly,
which takes a few tens of milliseconds instead of decompressing 47 MB.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from pathlib import Path
from typing import Optional, Union

import numpy as np

from digitnet.errors import DataError
from digitnet.files.paths import CACHE_ENV, user_cache_dir  # noqa: F401  (re-exported)

from .idx import PathLike, atomic_output, read_idx, read_idx_and_sha256
from .kaggle_csv import read_kaggle_csv

__all__ = [
    "CLASS_NAMES",
    "Dataset",
    "FileChecksum",
    "CHECKSUMS",
    "IDX_FILES",
    "SPLITS",
    "SCALE_MODES",
    "cache_dir",
    "load",
    "load_mnist",
    "load_idx_pair",
    "scale_images",
    "one_hot",
    "split",
]

#: The four IDX files of every MNIST-style set, by role (names without ``.gz``).
IDX_FILES: dict[str, str] = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}

#: MNIST as shipped inside the package (package data).
BUNDLED_MNIST_DIR = Path(__file__).resolve().parent / "mnist"

#: Where operating-system packages put data sets; ``apt-get install
#: dataset-fashion-mnist`` (Debian, Ubuntu) fills the first one.
SYSTEM_DATA_DIRS: dict[str, tuple[Path, ...]] = {
    "fashion-mnist": (Path("/usr/share/datasets/fashion-mnist"),),
}

_ALIASES = {
    "mnist": "mnist",
    "fashion-mnist": "fashion-mnist",
    "fashion_mnist": "fashion-mnist",
    "fashionmnist": "fashion-mnist",
    "fashion": "fashion-mnist",
    "kmnist": "kmnist",
    "kuzushiji-mnist": "kmnist",
    "kuzushiji_mnist": "kmnist",
}


@dataclasses.dataclass(frozen=True)
class FileChecksum:
    """What a known file must hash to (hex SHA-256; either may be unknown).

    ``raw_sha256`` is the digest of the uncompressed IDX bytes and is
    preferred: it stays valid when a mirror or a distribution recompresses the
    file (Debian's Fashion-MNIST and the bundled MNIST training images are
    such recompressed copies).  ``gz_sha256`` is the digest of the ``.gz``
    file as published.
    """

    raw_sha256: Optional[str] = None
    gz_sha256: Optional[str] = None


#: Known digests per data set and file (names without ``.gz``).  Module-level
#: so that tests and users with private mirrors can add entries.
#:
#: MNIST raw digests: the project's issue 3.  MNIST and Fashion-MNIST ``.gz``
#: digests: the files as published (Fashion-MNIST's agree with its published
#: MD5 sums); Fashion-MNIST raw digests were computed from Debian's
#: dataset-fashion-mnist 0.0~git20200523.55506a9-1 and agree with those other
#: projects publish.  Kuzushiji-MNIST: only the ``.gz`` digests are known.
CHECKSUMS: dict[str, dict[str, FileChecksum]] = {
    "mnist": {
        "train-images-idx3-ubyte": FileChecksum(
            raw_sha256="ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
            gz_sha256="440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
        ),
        "train-labels-idx1-ubyte": FileChecksum(
            raw_sha256="65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5",
            gz_sha256="3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
        ),
        "t10k-images-idx3-ubyte": FileChecksum(
            raw_sha256="0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
            gz_sha256="8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
        ),
        "t10k-labels-idx1-ubyte": FileChecksum(
            raw_sha256="ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
            gz_sha256="f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        ),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte": FileChecksum(
            raw_sha256="c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
            gz_sha256="3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
        ),
        "train-labels-idx1-ubyte": FileChecksum(
            raw_sha256="bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
            gz_sha256="a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
        ),
        "t10k-images-idx3-ubyte": FileChecksum(
            raw_sha256="5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
            gz_sha256="346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
        ),
        "t10k-labels-idx1-ubyte": FileChecksum(
            raw_sha256="0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
            gz_sha256="67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        ),
    },
    "kmnist": {
        "train-images-idx3-ubyte": FileChecksum(
            gz_sha256="51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"
        ),
        "train-labels-idx1-ubyte": FileChecksum(
            gz_sha256="e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"
        ),
        "t10k-images-idx3-ubyte": FileChecksum(
            gz_sha256="edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"
        ),
        "t10k-labels-idx1-ubyte": FileChecksum(
            gz_sha256="20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"
        ),
    },
}


# --------------------------------------------------------------------------- #
# the Dataset record

#: The names of the ten classes, in label order, for the sets whose classes are not digits.
CLASS_NAMES: dict[str, tuple[str, ...]] = {
    "fashion-mnist": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                      "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
}
DIGIT_CLASSES = tuple(str(d) for d in range(10))


@dataclasses.dataclass(frozen=True, eq=False, repr=False)
class Dataset:
    """A loaded data set.

    Attributes:
        name: ``"mnist"``, ``"fashion-mnist"``, ``"kmnist"``, or the folder /
            file name it came from.
        X_train: images, ``(n_train, 784)`` when flattened, else
            ``(n_train, 28, 28)``; dtype as requested from :func:`load`
            (float32 by default).
        y_train: int64 class labels 0..9, shape ``(n_train,)``.
        X_test: like ``X_train`` with ``n_test`` rows, or ``None`` (a single
            Kaggle CSV file has no test part).
        y_test: int64, shape ``(n_test,)``, or ``None``.
    """

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: Optional[np.ndarray] = None
    y_test: Optional[np.ndarray] = None

    @property
    def n_classes(self) -> int:
        """Number of classes (10 for every supported source)."""
        return 10

    @property
    def classes(self) -> list[str]:
        """The class names in label order: ``"0"``…``"9"``, or Fashion-MNIST's garments."""
        return list(CLASS_NAMES.get(self.name, DIGIT_CLASSES))

    def __repr__(self) -> str:
        # The default repr would print four large arrays.
        def describe(array: Optional[np.ndarray]) -> str:
            return "None" if array is None else f"{array.dtype}{list(array.shape)}"

        return (
            f"Dataset(name={self.name!r}, X_train={describe(self.X_train)}, y_train={describe(self.y_train)}, "
            f"X_test={describe(self.X_test)}, y_test={describe(self.y_test)})"
        )

    def _repr_html_(self) -> str:
        """A table of the parts (samples, shape, dtype, value range, samples per class): how Jupyter shows it."""
        from html import escape

        classes = self.classes
        head = "".join(f"<th>{escape(c)}</th>" for c in classes)
        rows = []
        for part, X, y in (("train", self.X_train, self.y_train), ("test", self.X_test, self.y_test)):
            if X is None:
                rows.append(f"<tr><td>{part}</td><td colspan='{4 + len(classes)}'>none</td></tr>")
                continue
            span = f"{X.min():g} … {X.max():g}" if X.size else "–"
            counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=len(classes)) if y is not None \
                else [None] * len(classes)
            cells = "".join(f"<td style='text-align:right'>{'–' if c is None else f'{c:,}'}</td>"
                            for c in counts[:len(classes)])
            rows.append(f"<tr><td>{part}</td><td style='text-align:right'>{len(X):,}</td>"
                        f"<td>{' × '.join(map(str, X.shape[1:]))}</td><td>{X.dtype}</td>"
                        f"<td>{span}</td>{cells}</tr>")
        return (f"<table><caption>Dataset {escape(self.name)!r}: {len(classes)} classes; samples per "
                "class on the right</caption><thead><tr><th>part</th><th>samples</th><th>each</th>"
                f"<th>dtype</th><th>values</th>{head}</tr></thead><tbody>{''.join(rows)}</tbody></table>")


# --------------------------------------------------------------------------- #
# cache folder


def cache_dir() -> Path:
    """The folder for decoded arrays and downloads (see :func:`digitnet.files.paths.user_cache_dir`)."""
    return user_cache_dir()


# --------------------------------------------------------------------------- #
# reading IDX pairs and folders


def load_idx_pair(
    images_path: PathLike, labels_path: PathLike, *, n_classes: int = 10
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file (IDX, gzipped or not).

    Returns:
        ``(images, labels)``: images as stored, usually uint8
        ``(n, 28, 28)``; labels int64 ``(n,)`` with values in
        ``0..n_classes-1``.

    Raises:
        DataError: either file is bad (see :func:`read_idx`), the images
            file holds no samples (or images of no pixels), the labels are
            not a 1-D integer array, the counts differ, or a label is out of
            range.
    """
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    return images, _check_pair(images, labels, Path(images_path), Path(labels_path), n_classes)


def _check_pair(images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path,
                n_classes: int) -> np.ndarray:
    """Validate an (images, labels) pair; return the labels as int64."""
    if images.ndim < 1:
        raise DataError(f"{images_path}: holds a single number, not images; check the file name")
    if images.shape[0] == 0:
        raise DataError(
            f"{images_path}: has no samples (its header declares shape {images.shape}); "
            "the file is empty or damaged, fetch it again"
        )
    if 0 in images.shape[1:]:
        raise DataError(
            f"{images_path}: its images hold no pixels (shape {images.shape}); "
            "the file is damaged, fetch it again"
        )
    if labels.ndim != 1 or labels.dtype.kind not in "ui":
        raise DataError(
            f"{labels_path}: labels must be a 1-D integer array, got {labels.dtype} of shape "
            f"{labels.shape}; is this an images file?"
        )
    if images.shape[0] != labels.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels but {images_path.name} has {images.shape[0]} images; "
            "the two files do not belong together"
        )
    if labels.size:
        bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
        if bad.size:
            raise DataError(
                f"{labels_path}: label {int(labels[bad[0]])} at index {int(bad[0])} is outside "
                f"0..{n_classes - 1}; the file is corrupt or not a labels file"
            )
    return labels.astype(np.int64)


def _find_idx_files(folder: Path) -> tuple[dict[str, Path], list[str]]:
    """Locate the four IDX files in ``folder``: ``(found by role, missing names)``.

    Accepts ``name.gz``, ``name`` and the ``train-images.idx3-ubyte`` spelling
    that some unzip tools produce.
    """
    found: dict[str, Path] = {}
    missing: list[str] = []
    for role, base in IDX_FILES.items():
        dotted = base.replace("-idx", ".idx")
        for candidate in (base + ".gz", base, dotted + ".gz", dotted):
            if (folder / candidate).is_file():
                found[role] = folder / candidate
                break
        else:
            missing.append(base + "[.gz]")
    return found, missing


def _load_folder(folder: Path, set_name: Optional[str]) -> tuple[np.ndarray, ...]:
    """Read the four IDX files of ``folder``; verified and cached when ``set_name`` is known."""
    found, missing = _find_idx_files(folder)
    if missing:
        raise DataError(
            f"{folder}: missing {', '.join(missing)}; a data folder needs the four MNIST-style IDX files"
        )
    arrays = {}
    # Labels first: they are small, so a damaged set is reported quickly.
    for role in ("train_labels", "test_labels", "train_images", "test_images"):
        path = found[role]
        if set_name is None:
            arrays[role] = read_idx(path)
        else:
            arrays[role] = _verified_array(path, set_name, IDX_FILES[role])
    out = []
    for part in ("train", "test"):
        images, labels = arrays[f"{part}_images"], arrays[f"{part}_labels"]
        y = _check_pair(images, labels, found[f"{part}_images"], found[f"{part}_labels"], 10)
        if images.ndim != 3:
            raise DataError(
                f"{found[f'{part}_images']}: images must have shape (n, height, width), got {images.shape}"
            )
        _check_grey_levels(images, found[f"{part}_images"])
        out += [images, y]
    return tuple(out)


def _check_grey_levels(images: np.ndarray, path: Path) -> None:
    """Refuse images outside 0..255 (or NaN) with a message naming their file."""
    if images.dtype == np.uint8 or not images.size:
        return
    if images.dtype.kind == "f" and not np.isfinite(images).all():
        raise DataError(f"{path}: holds NaN or infinite pixel values; the file is damaged, fetch it again")
    lo, hi = images.min(), images.max()
    if lo < 0 or hi > 255:
        raise DataError(
            f"{path}: pixel values must be grey levels 0..255, got {lo}..{hi}; "
            "the file is damaged or not an images file"
        )


# --------------------------------------------------------------------------- #
# verified, cached decoding of known files


def _verified_array(path: Path, set_name: str, file_name: str) -> np.ndarray:
    """The array in ``path``, checked against ``CHECKSUMS`` once and cached as ``.npy``.

    The cache entry's name carries a key made of the source file's identity
    (path, size, modification time, inode) and the expected digest, so a
    replaced or edited source file is verified afresh.  Cache problems
    (read-only folder, full disk, damaged entry) only cost speed.
    """
    checksum = CHECKSUMS.get(set_name, {}).get(file_name, FileChecksum())
    try:
        info = path.stat()
    except OSError as exc:
        raise DataError(f"{path}: cannot read the file ({exc.strerror}); check the path") from None
    # Two parts: which file (so two installs sharing one cache do not evict
    # each other's entries) and which version of it.
    where = hashlib.sha256(str(path.resolve()).encode()).hexdigest()[:8]
    version = f"{info.st_size}\0{info.st_mtime_ns}\0{info.st_ino}\0{checksum}"
    key = hashlib.sha256(version.encode()).hexdigest()[:12]
    entry = cache_dir() / "decoded" / set_name / f"{file_name}.{where}.{key}.npy"

    cached = _read_cache_entry(entry)
    if cached is not None:
        return cached
    array = _read_and_verify(path, set_name, checksum)
    _write_cache_entry(entry, array)
    return array


def _read_and_verify(path: Path, set_name: str, checksum: FileChecksum) -> np.ndarray:
    if checksum.raw_sha256:
        array, digest = read_idx_and_sha256(path)
        if digest != checksum.raw_sha256:
            raise DataError(
                f"{path}: SHA-256 of the uncompressed data is {digest[:16]}..., expected "
                f"{checksum.raw_sha256[:16]}...; this is not the genuine {set_name} file, replace it: "
                + _remedy(set_name)
            )
        return array
    array = read_idx(path)
    if checksum.gz_sha256:
        with open(path, "rb") as handle:
            head = handle.read(2)
        if head == b"\x1f\x8b":  # only a .gz file can match a .gz digest
            digest = _file_sha256(path)
            if digest != checksum.gz_sha256:
                raise DataError(
                    f"{path}: SHA-256 is {digest[:16]}..., expected {checksum.gz_sha256[:16]}...; "
                    f"this is not the genuine {set_name} file, replace it: " + _remedy(set_name)
                )
    return array


def _file_sha256(path: Path) -> str:
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    return hasher.hexdigest()


def _read_cache_entry(entry: Path) -> Optional[np.ndarray]:
    """The array in a cache entry, or ``None`` when it is missing or damaged.

    The ``.npy`` header is checked against the entry's size first: a damaged
    header claiming a huge array would otherwise make NumPy allocate it.
    """
    try:
        with open(entry, "rb") as handle:
            version = np.lib.format.read_magic(handle)
            if version == (1, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_1_0(handle)
            elif version == (2, 0):
                shape, fortran_order, dtype = np.lib.format.read_array_header_2_0(handle)
            else:
                return None
            data_bytes = os.fstat(handle.fileno()).st_size - handle.tell()
        count = 1
        for size in shape:
            count *= size
        if dtype.hasobject or data_bytes != count * dtype.itemsize:
            return None
        array = np.load(entry, allow_pickle=False)
    except FileNotFoundError:
        return None
    except (OSError, ValueError, EOFError, MemoryError):
        return None  # damaged entry: decode again and overwrite it
    return array if isinstance(array, np.ndarray) else None


def _write_cache_entry(entry: Path, array: np.ndarray) -> None:
    try:
        entry.parent.mkdir(parents=True, exist_ok=True)
        with atomic_output(entry, "cache file") as handle:
            np.save(handle, array, allow_pickle=False)
    except (OSError, DataError):
        return  # an unwritable cache only makes the next load slower
    # Entries for earlier versions of the same source file are dead weight.
    stem, where = entry.name.split(".")[:2]
    for old in entry.parent.glob(f"{stem}.{where}.*.npy"):
        if old != entry:
            try:
                old.unlink()
            except OSError:
                pass


def _remedy(set_name: str) -> str:
    """How to get a genuine copy of a known set, as a clause for messages."""
    folder = cache_dir() / set_name
    if set_name == "fashion-mnist":
        return (f"run 'apt-get install dataset-fashion-mnist' or "
                f"digitnet.data.download('fashion-mnist'), which saves to {folder}")
    return f"digitnet.data.download('{set_name}') saves a checked copy to {folder}"


def _load_known(set_name: str) -> tuple[np.ndarray, ...]:
    if set_name == "mnist":
        candidates = [BUNDLED_MNIST_DIR, cache_dir() / "mnist"]
    else:
        candidates = [*SYSTEM_DATA_DIRS.get(set_name, ()), cache_dir() / set_name]
    for folder in candidates:
        found, missing = _find_idx_files(folder)
        if not missing:
            return _load_folder(folder, set_name)
    where = " or ".join(str(folder) for folder in candidates)
    names = ", ".join(name + ".gz" for name in IDX_FILES.values())
    raise DataError(f"{set_name} is not on this machine (looked for {names} in {where}); {_remedy(set_name)}")


# --------------------------------------------------------------------------- #
# scaling, one-hot, splits


#: Accepted ``scale`` values for :func:`scale_images` and :func:`load`.
SCALE_MODES = ("unit", "symmetric", "raw", None)


def scale_images(images: np.ndarray, mode: Optional[str] = "unit", dtype=np.float32) -> np.ndarray:
    """Map grey levels 0..255 to network inputs.

    Args:
        images: grey levels 0..255, any shape, usually uint8 ``(n, 28, 28)``
            or ``(n, 784)``.
        mode: ``"unit"`` gives ``x / 255`` in [0, 1]; ``"symmetric"`` gives
            ``x / 255 * 2 - 1`` in [-1, 1] (the scaling in Raschka's book);
            ``"raw"`` or ``None`` keeps 0..255.
        dtype: output dtype; must be floating for ``"unit"`` and
            ``"symmetric"``.

    Returns:
        A new array of the same shape with the given dtype.

    Raises:
        DataError: unknown mode, an integer dtype with a fractional mode, or
            values outside 0..255.
    """
    if mode not in SCALE_MODES:
        raise DataError(f"unknown scale mode {mode!r}; use 'unit' ([0, 1]), 'symmetric' ([-1, 1]) or 'raw' (0..255)")
    images = np.asarray(images)
    dtype = np.dtype(dtype)
    if images.dtype.kind not in "uif":
        raise DataError(f"images must be numbers 0..255, got dtype {images.dtype}")
    if images.dtype.kind == "f" and images.size and not np.isfinite(images).all():
        raise DataError("images must hold grey levels 0..255, got NaN or infinite values; "
                        "the data are damaged")
    if images.dtype != np.uint8 and images.size and (images.min() < 0 or images.max() > 255):
        raise DataError(
            f"images must hold grey levels 0..255, got values {images.min()}..{images.max()}; "
            "are they already scaled?"
        )
    if mode in ("unit", "symmetric") and dtype.kind != "f":
        raise DataError(f"scale mode {mode!r} needs a floating dtype, got {dtype}; use np.float32")
    out = images.astype(dtype)  # always a copy, so callers may modify it
    if mode == "unit":
        out /= 255
    elif mode == "symmetric":
        out /= 255
        out *= 2
        out -= 1
    return out


def one_hot(labels: np.ndarray, n_classes: int = 10, dtype=np.float32) -> np.ndarray:
    """Turn class indices into one-hot rows.

    Args:
        labels: integers ``0..n_classes-1``, shape ``(n,)``.
        n_classes: number of columns.
        dtype: output dtype.

    Returns:
        Array of shape ``(n, n_classes)`` with a single 1 per row.

    Raises:
        DataError: labels that are not whole numbers or lie out of range.
    """
    labels = np.asarray(labels)
    if labels.ndim != 1:
        raise DataError(f"labels must be 1-D class indices, got shape {labels.shape}")
    if labels.dtype.kind not in "uif" or (labels.dtype.kind == "f" and not np.all(np.mod(labels, 1) == 0)):
        raise DataError(f"labels must be whole numbers 0..{n_classes - 1}, got dtype {labels.dtype}")
    if labels.size:
        bad = np.flatnonzero((labels < 0) | (labels >= n_classes))
        if bad.size:
            raise DataError(
                f"label {labels[bad[0]]} at index {int(bad[0])} is outside 0..{n_classes - 1}; "
                "check n_classes"
            )
    out = np.zeros((labels.shape[0], n_classes), dtype=dtype)
    out[np.arange(labels.shape[0]), labels.astype(np.intp)] = 1
    return out


#: Names accepted by :func:`split`.
SPLITS = ("standard", "nielsen", "raschka", "zhang")


def split(
    name: str, X: np.ndarray, y: np.ndarray, *, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, Optional[np.ndarray], Optional[np.ndarray]]:
    """Carve a validation set out of a training set, as various textbooks do.

    * ``"standard"``: everything trains; validation is ``None``.
    * ``"nielsen"``: the last sixth validates (50,000 / 10,000 for MNIST's
      60,000), as in Nielsen's *Neural Networks and Deep Learning*.
    * ``"raschka"``: a stratified random twelfth validates (55,000 / 5,000),
      as in Raschka's *Machine Learning with PyTorch and Scikit-Learn*;
      class proportions are preserved, the draw depends only on ``seed``.
    * ``"zhang"``: the first 1,000 rows validate, the rest train.

    Rows keep their original order within each part.

    Args:
        X: samples, shape ``(n, ...)``, any dtype.
        y: labels, shape ``(n,)``, integers for ``"raschka"``.
        seed: seeds ``"raschka"``'s draw; ignored by the others.

    Returns:
        ``(X_train, y_train, X_val, y_val)``; slices of ``X`` and ``y``
        (views for all but ``"raschka"``); ``X_val``/``y_val`` are ``None``
        for ``"standard"``.

    Raises:
        DataError: unknown name, mismatched lengths, or too few rows.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    if name not in SPLITS:
        raise DataError(f"unknown split {name!r}; use one of {', '.join(SPLITS)}")
    if X.ndim < 1 or y.ndim != 1 or X.shape[0] != y.shape[0]:
        raise DataError(f"split {name!r}: X has {X.shape[0] if X.ndim else 0} rows but y has shape {y.shape}; "
                        "they must describe the same samples")
    n = y.shape[0]
    if name == "standard":
        return X, y, None, None
    if name == "nielsen":
        n_val = n // 6
        if n_val == 0:
            raise DataError(f"split 'nielsen' needs at least 6 rows, got {n}")
        return X[: n - n_val], y[: n - n_val], X[n - n_val :], y[n - n_val :]
    if name == "zhang":
        if n <= 1000:
            raise DataError(f"split 'zhang' takes the first 1,000 rows for validation and needs more than 1,000, got {n}")
        return X[1000:], y[1000:], X[:1000], y[:1000]
    # raschka
    n_val = n // 12
    if n_val == 0:
        raise DataError(f"split 'raschka' needs at least 12 rows, got {n}")
    if y.dtype.kind not in "ui":
        raise DataError(f"split 'raschka' stratifies by class and needs integer labels, got {y.dtype}")
    is_val = _stratified_mask(y, n_val, seed)
    return X[~is_val], y[~is_val], X[is_val], y[is_val]


def _stratified_mask(y: np.ndarray, n_val: int, seed: int) -> np.ndarray:
    """Boolean mask choosing exactly ``n_val`` rows with the class mix of ``y``."""
    classes, inverse, counts = np.unique(y, return_inverse=True, return_counts=True)
    # Largest-remainder apportionment: each class gets floor(share), and the
    # rows still missing go to the classes with the largest fractions, so the
    # total is exactly n_val and every class is within one row of its share.
    share = counts * (n_val / y.shape[0])
    take = np.floor(share).astype(np.int64)
    short = n_val - int(take.sum())
    order = np.lexsort((np.arange(classes.size), -(share - take)))  # ties: lower class first
    take[order[:short]] += 1
    rng = np.random.default_rng(seed)
    mask = np.zeros(y.shape[0], dtype=bool)
    for c in range(classes.size):
        rows = np.flatnonzero(inverse == c)
        mask[rng.choice(rows, size=int(take[c]), replace=False)] = True
    return mask


# --------------------------------------------------------------------------- #
# the entry points


def load(
    source: Union[str, "os.PathLike[str]"] = "mnist",
    *,
    scale: Optional[str] = "unit",
    flatten: bool = True,
    dtype=np.float32,
) -> Dataset:
    """Load a data set, ready for training.

    Args:
        source: ``"mnist"`` (bundled with the package), ``"fashion-mnist"``
            (from ``/usr/share/datasets/fashion-mnist`` or the cache folder),
            ``"kmnist"`` (from the cache folder; see :func:`download`), a
            folder holding the four IDX files (``train-images-idx3-ubyte``,
            ``train-labels-idx1-ubyte``, ``t10k-images-idx3-ubyte``,
            ``t10k-labels-idx1-ubyte``, each optionally ``.gz``), or a
            labelled Kaggle ``.csv`` file.  To load a folder literally called
            ``mnist``, write ``./mnist``.
        scale: see :func:`scale_images`: ``"unit"``, ``"symmetric"``,
            ``"raw"`` or ``None``.
        flatten: images as ``(n, 784)`` rows (True) or ``(n, 28, 28)``.
        dtype: image dtype (float32 by default).

    Returns:
        A :class:`Dataset`; labels are int64 ``(n,)``.

    Raises:
        DataError: unknown source, missing or corrupt files (with what to
            do), bad ``scale``/``dtype``.
    """
    name, parts = _load_raw(source)
    X_train, y_train, X_test, y_test = parts
    return Dataset(
        name=name,
        X_train=_prepare(X_train, scale, flatten, dtype),
        y_train=y_train,
        X_test=None if X_test is None else _prepare(X_test, scale, flatten, dtype),
        y_test=y_test,
    )


def load_mnist(split: str = "train", *, scale: Optional[str] = "unit", flatten: bool = True,
               dtype=np.float32) -> tuple[np.ndarray, np.ndarray]:
    """One half of the bundled MNIST: ``(X, y)`` for ``split`` ``"train"`` or ``"test"``.

    ``X`` is ``(60000 or 10000, 784)`` (or ``(n, 28, 28)`` unflattened) in
    ``dtype``, scaled as :func:`scale_images`; ``y`` is int64 ``(n,)``.
    """
    if split not in ("train", "test"):
        raise DataError(f"unknown MNIST split {split!r}; use 'train' or 'test'")
    X_train, y_train, X_test, y_test = _load_known("mnist")
    X, y = (X_train, y_train) if split == "train" else (X_test, y_test)
    return _prepare(X, scale, flatten, dtype), y


def _prepare(images: np.ndarray, scale: Optional[str], flatten: bool, dtype) -> np.ndarray:
    out = scale_images(images, scale, dtype)
    if not flatten or out.ndim < 1:
        return out
    # Explicit row length: reshape(n, -1) cannot infer it for an empty array.
    return out.reshape(out.shape[0], int(np.prod(out.shape[1:], dtype=np.int64)))


def _load_raw(source) -> tuple[str, tuple]:
    """``(name, (X_train, y_train, X_test, y_test))`` with raw uint8 images."""
    if isinstance(source, str) and source.strip().lower() in _ALIASES:
        set_name = _ALIASES[source.strip().lower()]
        return set_name, _load_known(set_name)
    if not isinstance(source, (str, os.PathLike)):
        raise DataError(f"source must be a data set name or a path, got {type(source).__name__}")
    path = Path(source).expanduser()
    if path.is_dir():
        return path.resolve().name or str(path), _load_folder(path, None)
    if path.suffix.lower() == ".csv" and path.exists():
        X, y = read_kaggle_csv(path)
        if y is None:
            raise DataError(
                f"{path}: has no label column (a Kaggle test file); --data needs a labelled CSV "
                "such as Kaggle's train.csv, whose first column is 'label' (from Python, "
                "read_kaggle_csv() reads unlabelled images)"
            )
        return path.stem, (X.reshape(-1, 28, 28), y, None, None)
    known = ", ".join(sorted(set(_ALIASES.values())))
    raise DataError(
        f"unknown data source {str(source)!r}: not one of {known}, and no such folder or .csv file"
    )
