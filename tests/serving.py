"""A real ``digitnet serve`` for the tests: started on a free port of 127.0.0.1, stopped cleanly."""

from __future__ import annotations

import contextlib
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def start_serve(*args: str, env: dict | None = None, timeout: float = 60) -> tuple[subprocess.Popen, str]:
    """``digitnet serve ARGS --port 0`` and the URL it prints (it binds before printing).

    The process's output is read on a thread (so it never blocks on a full
    pipe); a server that exits or prints no URL within ``timeout`` seconds
    fails the test with the end of its error output.
    """
    process = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", *args, "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env=None if env is None else {**os.environ, **env})
    found: list[str] = []

    def read():
        for line in process.stdout:
            match = re.search(r"http://\S+", line)
            if match and not found:
                found.append(match.group(0).rstrip("/"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + timeout
    while not found:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise AssertionError(f"digitnet serve printed no URL: {process.communicate(timeout=10)[1][-2000:]}")
        time.sleep(0.05)
    return process, found[0]


@contextlib.contextmanager
def serving(*args: str, env: dict | None = None):
    """The URL of a running ``digitnet serve ARGS``; afterwards it is stopped, and its
    error output must hold no traceback and no "unexpected error"."""
    process, url = start_serve(*args, env=env)
    try:
        yield url
    finally:
        process.terminate()
        _, err = process.communicate(timeout=30)
    assert "Traceback" not in err and "unexpected error" not in err, err[-3000:]
