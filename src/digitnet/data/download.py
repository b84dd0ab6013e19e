"""Fetching MNIST, Fashion-MNIST and Kuzushiji-MNIST from public mirrors.

Only the standard library is used (``urllib``).  Each file is streamed into a
temporary file inside the destination folder, checked against its known
SHA-256, and only then renamed to its final name; whatever goes wrong, no
partial or temporary file is left behind.  Mirrors are tried in turn, and a
failure on every mirror becomes one :class:`~digitnet.errors.DataError` that
lists what each mirror said and where to put the files by hand.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import os
import sys
import time
import urllib.error
import urllib.request
import zlib
from pathlib import Path
from typing import Mapping, Optional, Sequence, Union

from digitnet import __version__
from digitnet.errors import DataError

from ..files.fileio import create_temp as _create_temp
from . import datasets
from .datasets import IDX_FILES, FileChecksum
from .idx import PathLike, read_idx

__all__ = ["download", "MIRRORS"]

#: Base URLs per data set, tried in order; a file's URL is base + file name.
#: MNIST: PyTorch's copy on S3 and the copy of Google's CVDF, both the
#: original LeCun files (the original site now often refuses downloads).
#: Fashion-MNIST: Zalando's GitHub repository and their S3 website bucket
#: (plain HTTP only; the checksum still protects the content).
#: Kuzushiji-MNIST: ROIS-CODH's own server and their Google Cloud bucket.
MIRRORS: dict[str, tuple[str, ...]] = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "https://storage.googleapis.com/cvdf-datasets/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
    ),
    "kmnist": (
        "https://codh.rois.ac.jp/kmnist/dataset/kmnist/",
        "https://storage.googleapis.com/kuzushiji-mnist/",
        "http://codh.rois.ac.jp/kmnist/dataset/kmnist/",
    ),
}

_CHUNK = 1 << 16


def download(
    name: str,
    *,
    cache_dir: Optional[PathLike] = None,
    mirrors: Optional[Sequence[str]] = None,
    checksums: Optional[Mapping[str, Union[str, FileChecksum]]] = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    """Download the four ``.gz`` IDX files of a data set into the cache folder.

    Files already present and intact are not fetched again.

    Args:
        name: ``"mnist"``, ``"fashion-mnist"`` or ``"kmnist"``.
        cache_dir: parent folder; the files go to ``cache_dir/name``.
            Defaults to :func:`digitnet.data.cache_dir`.
        mirrors: base URLs to try in order instead of ``MIRRORS[name]``.
        checksums: digests to check instead of ``datasets.CHECKSUMS[name]``:
            file name (with or without ``.gz``) -> hex SHA-256 of the ``.gz``
            file, or a :class:`FileChecksum`.  A file with no known digest at
            all is accepted if it parses as a complete IDX file.
        progress: draw a text progress bar on stderr.
        timeout: seconds to wait for a stalled connection before giving up
            on that mirror.

    Returns:
        The folder holding ``train-images-idx3-ubyte.gz``,
        ``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz`` and
        ``t10k-labels-idx1-ubyte.gz``; ``load(name)`` finds them there.

    Raises:
        DataError: unknown name, unwritable folder, or a file that no mirror
            delivered intact (one line: each mirror's last error and where to
            put the files by hand).
    """
    set_name = datasets._ALIASES.get(str(name).strip().lower())
    if set_name is None:
        raise DataError(f"cannot download {name!r}; known data sets: {', '.join(MIRRORS)}")
    bases = list(MIRRORS[set_name] if mirrors is None else mirrors)
    if not bases:
        raise DataError("no mirrors given; pass at least one base URL")
    known = _normalise_checksums(datasets.CHECKSUMS.get(set_name, {}) if checksums is None else checksums)
    folder = Path(cache_dir).expanduser() if cache_dir is not None else datasets.cache_dir()
    folder = folder / set_name
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(
            f"{folder}: cannot create the download folder ({exc.strerror or exc}); "
            f"set {datasets.CACHE_ENV} to a writable folder"
        ) from None

    file_names = [base + ".gz" for base in IDX_FILES.values()]
    for file_name in file_names:
        target = folder / file_name
        checksum = known.get(file_name[: -len(".gz")], FileChecksum())
        if target.is_file() and _verify(target, checksum) is None:
            continue
        errors: list[str] = []
        for base in bases:
            url = base if base.endswith("/") else base + "/"
            url += file_name
            problem = _fetch(url, target, checksum, progress=progress, timeout=timeout)
            if problem is None:
                # Try the mirror that just worked first for the remaining files.
                bases.remove(base)
                bases.insert(0, base)
                break
            errors.append(f"{base}: {problem}")
        else:
            hint = " (or run 'apt-get install dataset-fashion-mnist')" if set_name == "fashion-mnist" else ""
            raise DataError(
                f"could not download {set_name} file {file_name} from any mirror [{'; '.join(errors)}]; "
                f"if this machine is offline, fetch {', '.join(file_names)} elsewhere and put them in {folder}{hint}"
            )
    return folder


def _normalise_checksums(given: Mapping[str, Union[str, FileChecksum]]) -> dict[str, FileChecksum]:
    out = {}
    for key, value in given.items():
        base = key[: -len(".gz")] if key.endswith(".gz") else key
        out[base] = value if isinstance(value, FileChecksum) else FileChecksum(gz_sha256=str(value).lower())
    return out


def _fetch(url: str, target: Path, checksum: FileChecksum, *, progress: bool, timeout: float) -> Optional[str]:
    """Download ``url`` to ``target`` atomically; ``None`` on success, else a short reason."""
    try:
        fd, tmp_name = _create_temp(target)
    except OSError as exc:
        return f"cannot write to {target.parent} ({exc.strerror or exc})"
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            problem = _stream(url, out, target.name, progress=progress, timeout=timeout)
            if problem is None:
                out.flush()
                os.fsync(out.fileno())
        if problem is None:
            problem = _verify(tmp, checksum)
        if problem is None:
            os.replace(tmp, target)
        return problem
    except OSError as exc:  # local disk trouble while writing
        return f"cannot write {target.name} ({exc.strerror or exc})"
    finally:
        # Also runs on Ctrl-C: a half-downloaded file never survives.
        with contextlib.suppress(OSError):
            tmp.unlink()


def _stream(url: str, out, label: str, *, progress: bool, timeout: float) -> Optional[str]:
    """Copy the body at ``url`` into ``out``; ``None`` on success, else a short reason."""
    request = urllib.request.Request(url, headers={"User-Agent": f"digitnet/{__version__}"})
    bar = _ProgressBar(label) if progress else None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length and length.isdigit() else None
            done = 0
            while True:
                block = response.read(_CHUNK)
                if not block:
                    break
                out.write(block)
                done += len(block)
                if bar:
                    bar.update(done, total)
            # urllib does not complain when the server closes early.
            if total is not None and done < total:
                return f"connection closed after {done} of {total} bytes"
            return None
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code} {exc.reason}"
    except urllib.error.URLError as exc:
        return f"{_reason(exc.reason)}"
    except (http.client.HTTPException, OSError, ValueError) as exc:
        return _reason(exc)
    finally:
        if bar:
            bar.close()


def _reason(exc: object) -> str:
    """One short line for an exception (or a URLError's reason)."""
    text = str(exc)
    if isinstance(exc, BaseException):
        name = type(exc).__name__
        # Timeouts and protocol errors have terse texts; their class names say more.
        if isinstance(exc, (TimeoutError, http.client.HTTPException)) or not text:
            text = f"{name}: {text}" if text else name
    return text.splitlines()[0][:120] if text else "unknown error"


def _verify(path: Path, checksum: FileChecksum) -> Optional[str]:
    """``None`` if ``path`` matches ``checksum`` (either digest), else what is wrong."""
    if checksum.gz_sha256 is None and checksum.raw_sha256 is None:
        # No digest known: at least make sure it is a complete, sane IDX file.
        try:
            read_idx(path)
        except DataError as exc:
            return f"not a valid IDX file ({str(exc).split(': ', 1)[-1]})"
        return None
    hasher = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            hasher.update(block)
    digest = hasher.hexdigest()
    if digest == checksum.gz_sha256:
        return None
    if checksum.raw_sha256:
        # A mirror may have recompressed the file; the content can still match.
        raw = hashlib.sha256()
        try:
            with gzip.open(path, "rb") as handle:
                for block in iter(lambda: handle.read(1 << 20), b""):
                    raw.update(block)
        except (OSError, EOFError, zlib.error):
            return f"checksum mismatch (SHA-256 {digest[:12]}..., and not valid gzip)"
        if raw.hexdigest() == checksum.raw_sha256:
            return None
        return f"checksum mismatch (uncompressed SHA-256 {raw.hexdigest()[:12]}..., expected {checksum.raw_sha256[:12]}...)"
    return f"checksum mismatch (SHA-256 {digest[:12]}..., expected {checksum.gz_sha256[:12]}...)"


class _ProgressBar:
    """A one-line text bar on stderr, redrawn at most ten times a second."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.last = 0.0
        self.drawn = False

    def update(self, done: int, total: Optional[int]) -> None:
        now = time.monotonic()
        if now - self.last < 0.1 and not (total and done >= total):
            return
        self.last = now
        if total:
            filled = int(30 * done / total)
            line = f"{self.label} [{'#' * filled}{'.' * (30 - filled)}] {100 * done // total:3d}% " \
                   f"{done / 1e6:.1f}/{total / 1e6:.1f} MB"
        else:
            line = f"{self.label} {done / 1e6:.1f} MB"
        sys.stderr.write("\r" + line)
        sys.stderr.flush()
        self.drawn = True

    def close(self) -> None:
        if self.drawn:
            sys.stderr.write("\n")
            sys.stderr.flush()
