"""Where digitnet keeps things between runs.

Everything goes under one cache folder: the platform's user cache directory
(``$XDG_CACHE_HOME/digitnet`` or ``~/.cache/digitnet`` on Linux,
``~/Library/Caches/digitnet`` on macOS, ``%LOCALAPPDATA%\\digitnet\\Cache`` on
Windows), or ``$DIGITNET_CACHE_DIR`` when that is set.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

CACHE_ENV = "DIGITNET_CACHE_DIR"


def user_cache_dir() -> Path:
    """The cache folder (not created here)."""
    override = os.environ.get(CACHE_ENV)
    if override:
        return Path(override).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Caches" / "digitnet"
    if os.name == "nt":
        base = os.environ.get("LOCALAPPDATA") or str(home / "AppData" / "Local")
        return Path(base) / "digitnet" / "Cache"
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG spec says a relative XDG_CACHE_HOME is to be ignored.
    base = Path(xdg) if xdg and os.path.isabs(xdg) else home / ".cache"
    return base / "digitnet"


def models_dir() -> Path:
    """Where models go that the user did not name (``digitnet serve``'s trained default)."""
    return user_cache_dir() / "models"


def _last_model_pointer() -> Path:
    return user_cache_dir() / "last-model.txt"


def remember_last_model(path) -> None:
    """Record ``path`` as the model ``digitnet train`` saved last (best effort)."""
    from ..errors import DigitnetError
    from .fileio import atomic_write

    line = (str(Path(path).resolve()) + "\n").encode("utf-8")
    try:
        pointer = _last_model_pointer()
        pointer.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(pointer, lambda f: f.write(line))
    except (OSError, DigitnetError):
        pass  # a read-only cache must not break training


def last_model() -> Path | None:
    """The model ``digitnet train`` saved last, if it still exists."""
    try:
        path = Path(_last_model_pointer().read_text(encoding="utf-8").strip())
    except OSError:
        return None
    return path if path.is_file() else None
