"""The data layer: IDX and Kaggle CSV files, bundled MNIST, downloads, splits.

Everything here depends on NumPy and the standard library only.  The usual
entry point is :func:`load`::

    from digitnet.data import load, split
    ds = load("mnist")                      # Dataset: X_train (60000, 784) float32 in [0, 1]
    X_tr, y_tr, X_val, y_val = split("nielsen", ds.X_train, ds.y_train)

Every problem with input files raises :class:`digitnet.errors.DataError`
(a ``ValueError``) carrying one line that names the file and what to do.
"""

from .datasets import (
    CHECKSUMS,
    CLASS_NAMES,
    IDX_FILES,
    SCALE_MODES,
    SPLITS,
    Dataset,
    FileChecksum,
    cache_dir,
    load,
    load_idx_pair,
    load_mnist,
    one_hot,
    scale_images,
    split,
)
from .download import MIRRORS, download
from .idx import read_idx, write_idx
from .kaggle_csv import read_kaggle_csv, write_kaggle_csv

__all__ = [
    "CHECKSUMS",
    "CLASS_NAMES",
    "IDX_FILES",
    "MIRRORS",
    "SCALE_MODES",
    "SPLITS",
    "Dataset",
    "FileChecksum",
    "cache_dir",
    "download",
    "load",
    "load_idx_pair",
    "load_mnist",
    "one_hot",
    "read_idx",
    "read_kaggle_csv",
    "scale_images",
    "split",
    "write_idx",
    "write_kaggle_csv",
]
