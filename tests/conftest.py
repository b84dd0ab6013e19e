"""Shared fixtures.  Keep this small: most helpers belong in the test module that uses them."""

from pathlib import Path

import pytest

#: the real MNIST files shipped inside the package (IDX format, gzip-compressed)
MNIST_DIR = Path(__file__).resolve().parents[1] / "src" / "digitnet" / "datasets" / "mnist"


@pytest.fixture(scope="session")
def mnist_dir() -> Path:
    """Folder holding train-/t10k- images and labels ``*-idx?-ubyte.gz``.

    No skip when they are missing: they ship with the package, so their
    absence is a defect the tests should report.
    """
    return MNIST_DIR
