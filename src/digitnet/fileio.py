"""Atomic file writes, shared by model files, data files, plots and reports.

A file is written to a hidden temporary file in the target folder, flushed to
disk, and renamed over the target.  Readers therefore see either the old file
or the complete new one, never a half-written file, and a failure (including
Ctrl-C) leaves no temporary file behind.  The temporary file lives in the
same folder because ``os.replace`` is only atomic within one file system.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import IO, Callable, Iterator

from .errors import DigitnetError


def create_temp(path: Path) -> tuple[int, str]:
    """Create a new, empty, hidden file next to ``path``; return ``(fd, name)``.

    Unlike ``tempfile.mkstemp`` (always mode 0600), ``os.open`` with mode 0666
    lets the umask decide, so the final file gets the usual permissions.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = str(path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def os_reason(exc: OSError) -> str:
    """A short human reason for an OSError, without the file name repeated."""
    return exc.strerror or exc.__class__.__name__


@contextlib.contextmanager
def atomic_output(path, what: str = "file", error: type[DigitnetError] = DigitnetError
                  ) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``path``; rename it to ``path`` on success.

    OS errors (missing folder, no permission, disk full) become ``error``
    with one line naming the file.
    """
    path = Path(path)
    try:
        fd, tmp_name = create_temp(path)
    except OSError as exc:
        raise error(f"{path}: cannot write the {what} ({os_reason(exc)}); "
                    "check that the folder exists and is writable") from None
    try:
        with os.fdopen(fd, "wb") as handle:
            yield handle
            handle.flush()
            # fsync so a crash right after the rename cannot leave an empty
            # file under the final name on file systems that reorder writes.
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp_name)
        if isinstance(exc, OSError):
            raise error(f"{path}: cannot write the {what} ({os_reason(exc)}); "
                        "check free disk space and permissions") from None
        raise


def atomic_write(path, write: Callable[[IO[bytes]], object], what: str = "file") -> Path:
    """Call ``write(file_object)`` on a temporary file next to ``path``, then rename it to ``path``."""
    with atomic_output(path, what) as handle:
        write(handle)
    return Path(path)
