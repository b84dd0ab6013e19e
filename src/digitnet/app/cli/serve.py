"""``digitnet serve``: the drawing page on a local web server."""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
from pathlib import Path

from ...errors import DigitnetError
from .common import add_command

EXAMPLES = """\
  digitnet serve                          the last model 'digitnet train' saved
  digitnet serve digitnet-best.npz        a model file of your choice
  digitnet serve --port 8080              another port
  digitnet serve --port 0                 any free port (the URL is printed)
  digitnet serve --workers 2              two server processes (one per CPU core)
"""

DESCRIPTION = """\
Serve a page where you draw a digit and the network reads it as you draw:
the ten probabilities, the 28x28 image the network reads (cropped, scaled
and centred as 'digitnet predict' does) and its hidden layers' activations.
Its Train view trains a network on MNIST while you watch it learn; Try it
then reads your drawings with it, and Save keeps it as a model file in the
cache folder's models/ (one server process only: not with --workers).

Without MODEL it uses the last model 'digitnet train' saved; if there is
none, it trains the 'best' preset once (a few minutes) and keeps it in the
cache folder for next time. It listens on 127.0.0.1 (this computer only)
unless --host says otherwise. The API is described at /openapi.json.

It runs on uvicorn with uvloop and httptools where they are installed (the
'web' extra installs them), else on asyncio and h11. --workers N starts N
server processes sharing the port, each with its own copy of the model: for
a machine with several cores and many clients.
"""

_NEEDS_WEB = "digitnet serve needs FastAPI and uvicorn: pip install 'digitnet[web]'"


def add_parser(subparsers):
    p = add_command(subparsers, "serve", help="draw digits in the browser and watch the network read them",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("model", nargs="?", metavar="MODEL",
                   help="model file (default: the last one 'digitnet train' saved)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to listen on (default: 127.0.0.1, this computer only)")
    p.add_argument("--port", type=_port, default=8000, help="port to listen on, 0 for any free one (default: 8000)")
    p.add_argument("--workers", type=_workers, default=1, metavar="N",
                   help="server processes sharing the port, each with its own copy of the model (default: 1)")
    return p


#: The environment variable that hands the model file to --workers' processes.
MODEL_ENV = "DIGITNET_SERVE_MODEL"
#: The most --workers accepts (each process holds a copy of the model).
MAX_WORKERS = 64


def _workers(text: str) -> int:
    import argparse

    try:
        n = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of processes, got {text!r}") from None
    if not 1 <= n <= MAX_WORKERS:
        raise argparse.ArgumentTypeError(f"the number of worker processes is 1..{MAX_WORKERS}, got {n}")
    return n


def _port(text: str) -> int:
    import argparse

    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a port number, got {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0..65535, got {port}")
    return port


def _load(path: Path):
    from ...files.modelfile import load_model

    return load_model(path)


def find_model(model_arg) -> tuple:
    """``(network, path)`` for MODEL, else the last trained model, else the 'best' preset.

    Says on stdout which model it took, and trains (once) when there is none.
    """
    from ...files import paths

    if model_arg:
        path = Path(model_arg)
        return _load(path), path
    last = paths.last_model()
    if last is not None:
        print(f"using the last model 'digitnet train' saved: {last}", flush=True)
        return _load(last), last
    best = paths.models_dir() / "best.npz"
    if best.is_file():
        print(f"using the model trained for 'digitnet serve' earlier: {best}", flush=True)
        return _load(best), best
    return _train_best(best), best


def _train_best(path: Path):
    from ...train.recipes import train_recipe
    from ..progress import ProgressBar

    print("no trained model yet: training the 'best' preset once (a few minutes on two cores); "
          f"it will be kept at {path}", flush=True)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DigitnetError(f"cannot create {path.parent} ({exc.strerror}); "
                            "name a model file: digitnet serve MODEL") from None
    result = train_recipe("best", out=path, callbacks=[ProgressBar()])
    if result.test_accuracy is not None:
        print(f"trained: {100 * result.test_accuracy:.2f}% on the MNIST test set", flush=True)
    return _load(path)


def _bind(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port``, or a one-line DigitnetError saying why not.

    Bound here rather than by uvicorn so that a busy port is reported in one
    line (and before the model is loaded), and so that port 0 can print the
    port the system picked.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except (socket.gaierror, UnicodeError) as exc:
        raise DigitnetError(f"cannot listen on host {host!r}: {getattr(exc, 'strerror', None) or exc}; "
                            "use an address such as 127.0.0.1") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        if hasattr(socket, "SO_REUSEADDR") and not _windows():
            # Lets a restarted server reuse the port while old connections
            # linger in TIME_WAIT; a live listener still makes bind() fail.
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise DigitnetError(f"port {port} on {host} is already in use: stop the other server "
                                "or choose another port with --port") from None
        if exc.errno == errno.EACCES:
            raise DigitnetError(f"not allowed to listen on port {port}: "
                                "choose a port above 1023 with --port") from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise DigitnetError(f"{host} is not an address of this computer: "
                                "use 127.0.0.1 or one of its own addresses") from None
        raise DigitnetError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.setblocking(False)
    return sock


def _single_threaded_blas() -> bool:
    """Limit NumPy's BLAS to one thread per request, if threadpoolctl is installed.

    The server already works on several requests at once (one worker thread
    each), and the matrices of one request are small: there, extra BLAS
    threads only wait for each other.  On a busy two-core machine this
    doubled throughput and cut p99 latency by three (benchmarks/WEB.md).
    Without threadpoolctl, set OPENBLAS_NUM_THREADS=1 before starting.
    """
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return False
    threadpool_limits(limits=1, user_api="blas")
    return True


def _windows() -> bool:
    return os.name == "nt"


def http_stack() -> tuple[str, str]:
    """uvicorn's ``(loop, http)``: uvloop and httptools where installed, else asyncio and h11.

    uvloop is a faster event loop and httptools a faster HTTP parser (both
    C); uvloop does not exist for Windows, and either may be missing from a
    minimal install, so each falls back on its own.
    """
    try:
        import uvloop  # noqa: F401
        loop = "uvloop"
    except ImportError:
        loop = "asyncio"
    try:
        import httptools  # noqa: F401
        http = "httptools"
    except ImportError:
        http = "h11"
    return loop, http


def worker_app():
    """The app of one ``--workers`` process: the model file named by ``$DIGITNET_SERVE_MODEL``.

    uvicorn starts each worker process afresh and builds its app from an
    import string, so the parent hands the model over by name: this factory
    (``digitnet.app.cli.serve:worker_app``) loads it, as the parent did.
    """
    from ..web.app import create_app

    path = os.environ.get(MODEL_ENV)
    if not path:
        raise DigitnetError(f"{MODEL_ENV} is not set: worker_app() serves the model file it names")
    from ..web.training import Trainer

    # A training job lives in one process; the next request may reach another.
    no_training = Trainer(disabled="this server runs several processes (digitnet serve --workers), which "
                                   "cannot share a training job: start digitnet serve without --workers to train")
    app = create_app(_load(Path(path)), model_path=path, trainer=no_training)
    _single_threaded_blas()
    return app


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


def page_url(sock: socket.socket) -> str:
    """``http://HOST:PORT/`` for a listening socket (IPv6 in brackets)."""
    host, port = sock.getsockname()[:2]
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1" if host == "0.0.0.0" else "::1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{port}/"


def run(args) -> int:
    try:
        import uvicorn

        from ..web.app import create_app
    except ImportError as exc:
        if getattr(exc, "name", None) in ("fastapi", "uvicorn", "starlette", "pydantic"):
            raise DigitnetError(_NEEDS_WEB) from None
        raise

    # The port first: a busy port should not wait for a model to load or train.
    sock = _bind(args.host, args.port)
    try:
        network, path = find_model(args.model)  # training, if any, keeps all BLAS threads
        app = create_app(network, model_path=str(path))
        _single_threaded_blas()
        url = page_url(sock)
        if not _is_loopback(args.host):
            print(f"warning: listening on {args.host}: other computers that can reach this one "
                  "can use the page too", flush=True)
        loop, http = http_stack()
        processes = f", {args.workers} worker processes" if args.workers > 1 else ""
        print(f"serving {path} ({' → '.join(map(str, network.sizes))}) on {http} + {loop}{processes}",
              flush=True)
        print(f"open {url} in a browser; Ctrl-C stops the server", flush=True)
        options = dict(log_level="warning", access_log=False, timeout_graceful_shutdown=2,
                       loop=loop, http=http)
        try:
            if args.workers == 1:
                uvicorn.Server(uvicorn.Config(app, **options)).run(sockets=[sock])
            else:
                _run_workers(sock, path, args.workers, options)
        except KeyboardInterrupt:
            # uvicorn shuts down gracefully on Ctrl-C, then re-raises it:
            # for a server that is the normal way to stop.
            pass
    finally:
        sock.close()
    print("server stopped", flush=True)
    return 0


def _run_workers(sock: socket.socket, path: Path, workers: int, options: dict) -> None:
    """Serve with ``workers`` processes on the bound ``sock`` until stopped (Ctrl-C, SIGTERM).

    uvicorn's own supervisor starts them (and restarts one that dies); each
    builds its app with :func:`worker_app` from the model file, which the
    parent has already loaded once, so a bad file was reported before any
    worker started.
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    os.environ[MODEL_ENV] = str(Path(path).resolve())
    config = uvicorn.Config("digitnet.app.cli.serve:worker_app", factory=True, workers=workers, **options)
    Multiprocess(config, sockets=[sock]).run()
