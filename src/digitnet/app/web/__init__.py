"""The local drawing page: draw a digit in the browser, the network reads it.

``digitnet serve`` runs :func:`create_app` on uvicorn; the page itself is
plain HTML, CSS and JavaScript under ``static/`` (no build step, nothing
loaded from elsewhere).  Needs the ``web`` extra: ``pip install 'digitnet[web]'``.
"""

from __future__ import annotations

__all__ = ["MAX_BODY_BYTES", "MAX_IMAGE_SIDE", "create_app"]


def __getattr__(name):
    # Imported lazily so that `import digitnet.app.web` does not need FastAPI.
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'digitnet.app.web' has no attribute {name!r}")
