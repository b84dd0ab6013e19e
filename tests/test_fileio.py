"""Atomic writes leave no temporary files: not after an error, SIGTERM or Ctrl-C, and after
``kill -9`` not beyond the next write of the same file.  The kills are real, in subprocesses."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from digitnet.errors import DigitnetError
from digitnet.files import fileio
from digitnet.files.fileio import atomic_write, create_temp, remove_stale_temps

pytestmark = pytest.mark.skipif(os.name == "nt", reason="POSIX signals and process ids")

# A save that writes 8 MiB, says so, and then takes its time: killed "during a large save".
_SLOW_WRITER = """
import sys, time
from digitnet.files.fileio import atomic_write

def write(f):
    f.write(b"x" * (8 << 20))
    f.flush()
    print("writing", flush=True)
    time.sleep(120)

atomic_write(sys.argv[1], write, "model file")
"""


def _temps(folder, name="model.npz"):
    return sorted(p for p in Path(folder).iterdir()
                  if p.name.startswith(f".{name}.") and p.name.endswith(".tmp"))


def _start_writer(target):
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_WRITER, str(target)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline()
    if line.strip() != "writing":
        proc.kill()
        pytest.fail(f"the writer did not start: {line!r} {proc.stderr.read()}")
    return proc


def _age(path, seconds):
    then = time.time() - seconds
    os.utime(path, (then, then))


def test_kill_9_leaves_a_temp_that_the_next_save_removes(tmp_path):
    target = tmp_path / "model.npz"
    proc = _start_writer(target)
    proc.kill()                                   # SIGKILL: no cleanup can run
    proc.wait(timeout=30)
    left = _temps(tmp_path)
    assert len(left) == 1 and not target.exists()
    # The name carries the writer's process id.
    assert re.fullmatch(rf"\.model\.npz\.{proc.pid}\.[0-9a-f]{{8}}\.tmp", left[0].name)
    # Another file's temporary file is none of this target's business.
    other = tmp_path / f".other.npz.{proc.pid}.0123abcd.tmp"
    other.write_bytes(b"?")
    _age(left[0], 10)
    _age(other, 10)

    saved = subprocess.run([sys.executable, "-c",
                            "import sys; from digitnet.files.fileio import atomic_write; "
                            "atomic_write(sys.argv[1], lambda f: f.write(b'complete'))", str(target)],
                           capture_output=True, text=True, timeout=60)
    assert saved.returncode == 0, saved.stderr
    assert target.read_bytes() == b"complete"
    assert _temps(tmp_path) == [] and other.exists()


def test_a_live_writers_temp_is_left_alone_and_sigterm_removes_it(tmp_path):
    target = tmp_path / "model.npz"
    proc = _start_writer(target)
    try:
        theirs = _temps(tmp_path)
        assert len(theirs) == 1
        _age(theirs[0], 60)                       # idle for a minute, but its writer is alive
        atomic_write(target, lambda f: f.write(b"mine"))
        assert target.read_bytes() == b"mine" and _temps(tmp_path) == theirs

        # SIGTERM during the write: the temporary file goes, the process still ends.
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "Traceback" not in err
    assert _temps(tmp_path) == []
    assert target.read_bytes() == b"mine"         # the target is as it was


def test_ctrl_c_during_a_save_leaves_no_temp(tmp_path):
    proc = _start_writer(tmp_path / "model.npz")
    try:
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode != 0
    assert _temps(tmp_path) == [] and not (tmp_path / "model.npz").exists()


def test_an_error_during_a_write_leaves_no_temp(tmp_path):
    def fail(f):
        f.write(b"half")
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_write(tmp_path / "model.npz", fail)
    assert list(tmp_path.iterdir()) == []


def test_the_sigterm_handler_is_only_borrowed_during_the_write(tmp_path):
    before = signal.getsignal(signal.SIGTERM)
    seen = []
    atomic_write(tmp_path / "a.bin", lambda f: seen.append(signal.getsignal(signal.SIGTERM)))
    assert signal.getsignal(signal.SIGTERM) == before
    if before == signal.SIG_DFL:
        assert seen[0] not in (signal.SIG_DFL, signal.SIG_IGN)

    # A program's own handler (a server's graceful stop, say) is left as it is.
    def own(signum, frame):
        pass

    signal.signal(signal.SIGTERM, own)
    try:
        atomic_write(tmp_path / "b.bin", lambda f: seen.append(signal.getsignal(signal.SIGTERM)))
        assert seen[-1] is own and signal.getsignal(signal.SIGTERM) is own
    finally:
        signal.signal(signal.SIGTERM, before)

    # Outside the main thread no handler can be set: the write still works.
    errors = []

    def in_thread():
        try:
            atomic_write(tmp_path / "c.bin", lambda f: f.write(b"thread"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    worker = threading.Thread(target=in_thread)
    worker.start()
    worker.join()
    assert not errors and (tmp_path / "c.bin").read_bytes() == b"thread"
    assert signal.getsignal(signal.SIGTERM) == before


def test_stale_temps_rules(tmp_path):
    target = tmp_path / "model.npz"
    dead = _dead_pid()
    fresh_dead = tmp_path / f".model.npz.{dead}.00000001.tmp"         # just written: a grace period
    old_dead = tmp_path / f".model.npz.{dead}.00000002.tmp"
    mine = tmp_path / f".model.npz.{os.getpid()}.00000003.tmp"        # another thread of ours
    old_unknown = tmp_path / ".model.npz.00000004.tmp"                 # older digitnet, no pid
    young_unknown = tmp_path / ".model.npz.00000005.tmp"
    lookalike = tmp_path / f".model.npz.{dead}.0000000g.tmp"           # not the pattern
    longer = tmp_path / f".model.npz.bak.{dead}.00000006.tmp"          # another target's
    for path in (fresh_dead, old_dead, mine, old_unknown, young_unknown, lookalike, longer):
        path.write_bytes(b"?")
    for path in (old_dead, mine, lookalike, longer):
        _age(path, 60)
    _age(old_unknown, 2 * 3600)
    removed = remove_stale_temps(target)
    assert sorted(removed) == sorted([old_dead, old_unknown])
    assert {p.name for p in tmp_path.iterdir()} == {p.name for p in (fresh_dead, mine, young_unknown,
                                                                      lookalike, longer)}
    fd, name = create_temp(target)
    os.close(fd)
    assert re.fullmatch(rf"\.model\.npz\.{os.getpid()}\.[0-9a-f]{{8}}\.tmp", Path(name).name)


def test_a_missing_folder_is_one_clear_error(tmp_path):
    with pytest.raises(DigitnetError, match="cannot write the model file"):
        atomic_write(tmp_path / "missing" / "m.npz", lambda f: f.write(b"x"), "model file")


def _dead_pid() -> int:
    """The id of a process that has just ended."""
    proc = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(proc.stdout)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return pid
    pytest.skip("the process id was reused at once")


def test_terminated_is_a_system_exit():
    exc = fileio.Terminated(signal.SIGTERM)
    assert isinstance(exc, SystemExit) and exc.code == 143
