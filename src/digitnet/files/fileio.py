"""Atomic file writes, shared by model files, data files, plots and reports.

A file is written to a hidden temporary file in the target folder, flushed to
disk, and renamed over the target.  Readers therefore see either the old file
or the complete new one, never a half-written file.  The temporary file lives
in the same folder because ``os.replace`` is only atomic within one file
system.

No temporary file outlives its write:

* an exception, Ctrl-C (``KeyboardInterrupt``) or ``SIGTERM``/``SIGHUP``
  during the write removes it.  A process would die of ``SIGTERM`` without
  running any cleanup, so while a write is under way in the main thread (and
  the signal has its default action) the signal is turned into
  :class:`Terminated`, a ``SystemExit`` with status 128 + the signal's number:
  the temporary file is removed, the previous handler is put back, and the
  exception carries on up, so the process still ends.
* nothing can clean up after ``kill -9`` or a power cut, so the next write of
  the same target removes that target's stale temporary files
  (:func:`remove_stale_temps`).  Their names,
  ``.NAME.PID.XXXXXXXX.tmp``, carry the writer's process id: a file whose
  writer has died is stale; a file whose writer is alive belongs to a
  concurrent write and is left alone.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import signal
import threading
import time
from pathlib import Path
from typing import IO, Callable, Iterator

from ..errors import DigitnetError

__all__ = ["atomic_output", "atomic_write", "create_temp", "remove_stale_temps", "Terminated",
           "terminating_raises", "os_reason"]

#: A temporary file whose writer is dead is removed once it has not changed for this long
#: (a margin for file systems shared between machines, where process ids mean nothing).
DEAD_WRITER_GRACE_S = 2.0
#: A temporary file that has not changed for this long is removed whoever wrote it: a
#: live writer keeps writing, so this only catches a reused process id or a file whose
#: writer cannot be checked (an older digitnet, another machine).
ABANDONED_AFTER_S = 24 * 3600.0
#: Temporary files without a process id in their name (written by digitnet before 0.2).
UNKNOWN_WRITER_AFTER_S = 3600.0


class Terminated(SystemExit):
    """``SIGTERM`` (or ``SIGHUP``) arrived while a file was being written.

    A ``SystemExit`` with status 128 + the signal number (143 for ``SIGTERM``),
    so it ends the program as the signal would have, after the ``finally``
    blocks (and so the temporary file's removal) have run.
    """

    def __init__(self, signum: int):
        super().__init__(128 + int(signum))
        self.signum = int(signum)


def _temp_pattern(target_name: str) -> re.Pattern:
    """Names of ``target_name``'s temporary files: ``.NAME.PID.XXXXXXXX.tmp`` or ``.NAME.XXXXXXXX.tmp``."""
    return re.compile(r"\." + re.escape(target_name) + r"\.(?:(\d{1,10})\.)?([0-9a-f]{8})\.tmp\Z")


def _writer_alive(pid: int) -> bool | None:
    """Whether process ``pid`` exists on this machine; ``None`` when that cannot be told."""
    if os.name == "nt":      # os.kill(pid, 0) would terminate the process on Windows
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, belongs to someone else
        return True
    except (OSError, OverflowError, ValueError):
        return None
    return True


def remove_stale_temps(path) -> list[Path]:
    """Remove the temporary files of ``path`` left by writers that were killed; return them.

    Only names of exactly ``path``'s pattern are looked at.  A file is stale
    when its writer's process is gone (and it has not changed for
    :data:`DEAD_WRITER_GRACE_S`), or when it has not changed for a long time
    (:data:`ABANDONED_AFTER_S`, or :data:`UNKNOWN_WRITER_AFTER_S` for names
    without a process id).  Files of live writers, this process's included,
    are left alone.  Best effort: problems are ignored.
    """
    path = Path(path)
    folder = path.parent if str(path.parent) else Path(".")
    pattern = _temp_pattern(path.name)
    prefix = f".{path.name}."
    removed = []
    now = time.time()
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        if not entry.name.startswith(prefix):
            continue
        match = pattern.match(entry.name)
        if match is None:
            continue
        try:
            if not entry.is_file(follow_symlinks=False):
                continue
            age = now - entry.stat(follow_symlinks=False).st_mtime
        except OSError:
            continue
        pid = match.group(1)
        if pid is None:
            stale = age >= UNKNOWN_WRITER_AFTER_S
        elif int(pid) == os.getpid():
            stale = age >= ABANDONED_AFTER_S   # another thread of ours may be writing it
        else:
            alive = _writer_alive(int(pid))
            stale = (alive is False and age >= DEAD_WRITER_GRACE_S) or age >= ABANDONED_AFTER_S
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def create_temp(path: Path) -> tuple[int, str]:
    """Create a new, empty, hidden file next to ``path``; return ``(fd, name)``.

    Stale temporary files of ``path`` (see :func:`remove_stale_temps`) are
    removed first.  Unlike ``tempfile.mkstemp`` (always mode 0600),
    ``os.open`` with mode 0666 lets the umask decide, so the final file gets
    the usual permissions.
    """
    path = Path(path)
    remove_stale_temps(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        name = str(path.parent / f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
        try:
            return os.open(name, flags, 0o666), name
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary name next to {path}")


def _raise_terminated(signum, frame):
    raise Terminated(signum)


@contextlib.contextmanager
def terminating_raises() -> Iterator[None]:
    """Within the block, ``SIGTERM`` and ``SIGHUP`` raise :class:`Terminated` instead of killing.

    Only signals left at their default action are changed (a program's own
    handler, or an ignored signal, stays as it is), and only in the main
    thread, where Python runs signal handlers; elsewhere this does nothing.
    The previous handlers are put back on the way out.
    """
    installed = {}
    if threading.current_thread() is threading.main_thread():
        for name in ("SIGTERM", "SIGHUP"):
            signum = getattr(signal, name, None)
            if signum is None:
                continue
            try:
                if signal.getsignal(signum) == signal.SIG_DFL:
                    signal.signal(signum, _raise_terminated)
                    installed[signum] = signal.SIG_DFL
            except (OSError, ValueError, RuntimeError):
                continue
    try:
        yield
    finally:
        for signum, previous in installed.items():
            with contextlib.suppress(OSError, ValueError, RuntimeError):
                signal.signal(signum, previous)


def os_reason(exc: OSError) -> str:
    """A short human reason for an OSError, without the file name repeated."""
    return exc.strerror or exc.__class__.__name__


@contextlib.contextmanager
def atomic_output(path, what: str = "file", error: type[DigitnetError] = DigitnetError
                  ) -> Iterator[IO[bytes]]:
    """Open a temporary file next to ``path``; rename it to ``path`` on success.

    OS errors (missing folder, no permission, disk full) become ``error``
    with one line naming the file.  Any failure, Ctrl-C and ``SIGTERM``
    included, removes the temporary file (see the module's description).
    """
    path = Path(path)
    with terminating_raises():
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
