"""Load run for ``digitnet serve``: many concurrent clients POSTing canvas PNGs, pixels or batches.

Starts the real server (``python -m digitnet serve MODEL --port 0``) in a
subprocess on loopback, then runs ``--clients`` asyncio clients (one
``httpx.AsyncClient`` and keep-alive connection each) for ``--seconds`` or
until ``--max-requests`` requests have been answered, whichever comes first.
What every request sends (``--mode``):

``png`` (default)
    ``POST /api/predict`` with a PNG like the drawing page sends: 280x280
    RGBA, white anti-aliased strokes on black, made from real MNIST test
    digits (``--pngs`` of them, cycled).
``json``
    ``POST /api/predict`` with one real MNIST test digit as JSON
    ``{"pixels": [784 numbers]}`` (rounded to 4 decimals, as /api/sample
    serves them).
``batch``
    ``POST /api/predict/batch`` with ``--batch`` such digits as JSON
    ``{"images": [[784 numbers], ...]}``; throughput is then counted in
    images per second.

Reports requests (and images) per second, latency percentiles, the server's
CPU time (user + system, from /proc, all its processes) per request and per
image, and the error count: any non-200 answer, any exception, or any answer
whose digit differs from the one the server gave for the same input when
asked alone beforehand (concurrency must not change answers).  ``--repeat R``
runs the load R times against the same server and reports each run and the
medians.  ``--answers FILE`` writes the server's answers to every distinct
input, asked alone (probabilities included), and ``--compare FILE`` compares
them with such a file written earlier -- by another version of the server,
say -- and prints the largest difference.

This is a benchmark, not a test: nothing here asserts a timing.  Usage::

    python benchmarks/load_web.py                      # a 784-512-10 model trained here in seconds
    python benchmarks/load_web.py MODEL.npz --clients 16 --seconds 10 --repeat 5
    python benchmarks/load_web.py MODEL.npz --mode batch --batch 200 --clients 4 --workers 2
    python benchmarks/load_web.py --json out.json      # the numbers as JSON too

Client and server share the machine, so the clients' own CPU use is part of
the picture; the load average before and after is printed with the results.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import platform
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def canvas_pngs(n: int, seed: int = 0) -> list[bytes]:
    """``n`` PNGs like the page's canvas: real MNIST test digits, 280x280 RGBA, smooth strokes."""
    from PIL import Image

    from digitnet.data import load_mnist

    X, _ = load_mnist("test")
    rng = np.random.default_rng(seed)
    pngs = []
    for i in rng.choice(len(X), size=n, replace=False):
        gray = Image.fromarray((X[i].reshape(28, 28) * 255).round().astype(np.uint8))
        big = np.asarray(gray.resize((280, 280), Image.BILINEAR))
        rgba = np.empty((280, 280, 4), np.uint8)
        rgba[..., :3] = big[..., None]
        rgba[..., 3] = 255  # the page fills its canvas black: opaque
        buffer = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buffer, format="PNG")
        pngs.append(buffer.getvalue())
    return pngs


def mnist_pixels(n: int, seed: int = 0) -> list[list[float]]:
    """``n`` real MNIST test digits as lists of 784 numbers rounded to 4 decimals (as /api/sample serves them)."""
    from digitnet.data import load_mnist

    X, _ = load_mnist("test")
    rng = np.random.default_rng(seed)
    picked = rng.choice(len(X), size=n, replace=False)
    return np.round(X[picked].astype(np.float64), 4).tolist()


def quick_model(folder: Path) -> Path:
    """A [784, 512, 10] model (the 'best' preset's shape), one quick epoch: accuracy is beside the point."""
    from digitnet import Network
    from digitnet.data import load_mnist
    from digitnet.files.modelfile import save_model

    X, y = load_mnist("train")
    net = Network([784, 512, 10], seed=0)
    net.fit(X[:10000], y[:10000], epochs=1, batch_size=128, optimizer="adam", lr=1e-3, seed=0)
    path = folder / "load-model.npz"
    save_model(path, net, preprocessing={"scale": "unit", "input_shape": [28, 28], "dataset": "mnist",
                                         "classes": [str(d) for d in range(10)]},
               recipe={"name": "load-run"})
    return path


def start_server(model: Path, env: dict[str, str], workers: int = 1) -> tuple[subprocess.Popen, str]:
    """``digitnet serve MODEL --port 0`` (with ``env`` added) and the URL it prints."""
    command = [sys.executable, "-m", "digitnet", "serve", str(model), "--port", "0"]
    if workers > 1:
        command += ["--workers", str(workers)]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               env={**os.environ, **env})
    found: list[str] = []

    def read():
        for line in process.stdout:
            match = re.search(r"http://\S+", line)
            if match and not found:
                found.append(match.group(0).rstrip("/"))

    threading.Thread(target=read, daemon=True).start()
    deadline = time.monotonic() + 60
    while not found:
        if process.poll() is not None or time.monotonic() > deadline:
            process.kill()
            raise SystemExit(f"digitnet serve did not start: {process.stderr.read()}")
        time.sleep(0.05)
    return process, found[0]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and its live children (Linux /proc), or NaN elsewhere.

    The children are ``--workers``' processes; a child that exits takes its
    time with it, which does not happen during a run.
    """
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        total = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")
    for child in _children(pid):
        total += cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    try:
        return [int(c) for c in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]
    except (OSError, ValueError):
        return []


class Request:
    """What one kind of request sends, and how to read its answer's digits."""

    def __init__(self, mode: str, pngs: list[bytes], pixels: list[list[float]], batch: int):
        self.mode = mode
        if mode == "png":
            self.path, self.content_type = "/api/predict", "image/png"
            self.bodies = pngs
            self.images_per_request = 1
        elif mode == "json":
            self.path, self.content_type = "/api/predict", "application/json"
            self.bodies = [json.dumps({"pixels": p}, separators=(",", ":")).encode() for p in pixels]
            self.images_per_request = 1
        else:
            self.path, self.content_type = "/api/predict/batch", "application/json"
            groups = [pixels[i:i + batch] for i in range(0, len(pixels) - batch + 1, batch)] or [pixels]
            self.bodies = [json.dumps({"images": g}, separators=(",", ":")).encode() for g in groups]
            self.images_per_request = len(groups[0])

    def digits(self, answer: dict) -> list:
        if self.mode == "batch":
            return [r.get("digit") for r in answer["results"]]
        return [answer["digit"]]

    def probabilities(self, answer: dict) -> list:
        if self.mode == "batch":
            return [r.get("probabilities") for r in answer["results"]]
        return [answer["probabilities"]]


async def load(url: str, kind: Request, expected: list[list], clients: int, seconds: float,
               max_requests: int) -> dict:
    import httpx

    bodies = kind.bodies
    latencies: list[float] = []
    errors: list[str] = []
    started = time.perf_counter()
    deadline = started + seconds
    issued = 0

    async def client(k: int) -> None:
        nonlocal issued
        async with httpx.AsyncClient(base_url=url, timeout=30) as http:
            j = k
            while time.perf_counter() < deadline and issued < max_requests:
                issued += 1
                index = j % len(bodies)
                j += clients
                t0 = time.perf_counter()
                try:
                    response = await http.post(kind.path, content=bodies[index],
                                               headers={"content-type": kind.content_type})
                    latencies.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
                    elif kind.digits(response.json()) != expected[index]:
                        errors.append(f"input {index}: digits {kind.digits(response.json())[:5]} under load, "
                                      f"{expected[index][:5]} alone")
                except Exception as exc:  # noqa: BLE001 - every failure counts as an error
                    errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    lat_ms = np.asarray(latencies) * 1000
    return {
        "requests": issued,
        "answered": len(latencies),
        "seconds": round(elapsed, 2),
        "requests_per_second": round(len(latencies) / elapsed, 1),
        "images_per_second": round(len(latencies) * kind.images_per_request / elapsed, 1),
        "latency_ms": {q: round(float(np.percentile(lat_ms, p)), 1)
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}
        if len(lat_ms) else {},
        "errors": len(errors),
        "first_errors": errors[:5],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="model file (default: a quick 784-512-10 model)")
    parser.add_argument("--mode", choices=("png", "json", "batch"), default="png",
                        help="what each request sends (default png)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to run (default 20)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="stop after this many (default 50000)")
    parser.add_argument("--pngs", type=int, default=64, help="distinct digit PNGs to cycle through")
    parser.add_argument("--digits", type=int, default=1000, help="distinct MNIST digits for json/batch (default 1000)")
    parser.add_argument("--batch", type=int, default=200, help="digits per batch request (default 200)")
    parser.add_argument("--workers", type=int, default=1, help="digitnet serve --workers (default 1)")
    parser.add_argument("--repeat", type=int, default=1, help="load runs against the same server (default 1)")
    parser.add_argument("--server-env", metavar="NAME=VALUE", action="append", default=[],
                        help="environment variable for the server, e.g. OPENBLAS_NUM_THREADS=1 (repeatable)")
    parser.add_argument("--answers", metavar="FILE", help="write the answer to every distinct input, asked alone")
    parser.add_argument("--compare", metavar="FILE", help="compare the answers with a file --answers wrote")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    server_env = {}
    for item in args.server_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--server-env wants NAME=VALUE, got {item!r}")
        server_env[name] = value

    import httpx

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else quick_model(Path(tmp))
        kind = Request(args.mode, canvas_pngs(args.pngs) if args.mode == "png" else [],
                       mnist_pixels(args.digits) if args.mode != "png" else [], args.batch)
        process, url = start_server(model, server_env, args.workers)
        try:
            # Each input's answer when asked alone: the reference for the run.
            with httpx.Client(base_url=url, timeout=60) as http:
                answers = [http.post(kind.path, content=body, headers={"content-type": kind.content_type}).json()
                           for body in kind.bodies]
            expected = [kind.digits(a) for a in answers]
            for _ in range(args.repeat):
                load_before = os.getloadavg()
                cpu_before = cpu_seconds(process.pid)
                result = asyncio.run(load(url, kind, expected, args.clients, args.seconds, args.max_requests))
                server_cpu = cpu_seconds(process.pid) - cpu_before
                load_after = os.getloadavg()
                answered = max(result["answered"], 1)
                result.update({
                    "server_cpu_ms_per_request": round(1000 * server_cpu / answered, 3),
                    "server_cpu_us_per_image": round(1e6 * server_cpu / (answered * kind.images_per_request), 2),
                    "load_average_before": [round(v, 2) for v in load_before],
                    "load_average_after": [round(v, 2) for v in load_after],
                })
                runs.append(result)
                report(result, args, kind)
        finally:
            process.terminate()
            process.wait(timeout=20)

    summary = {
        "mode": args.mode, "clients": args.clients, "workers": args.workers, "server_env": server_env,
        "model": str(args.model or "784-512-10 (quick)"), "images_per_request": kind.images_per_request,
        "request_kb_mean": round(float(np.mean([len(b) for b in kind.bodies])) / 1024, 1),
        "cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
        "runs": runs,
    }
    if len(runs) > 1:
        keys = ("requests_per_second", "images_per_second", "server_cpu_ms_per_request", "server_cpu_us_per_image")
        summary["median"] = {k: round(float(np.median([r[k] for r in runs])), 3) for k in keys}
        summary["median"]["latency_ms"] = {q: round(float(np.median([r["latency_ms"][q] for r in runs])), 1)
                                           for q in ("p50", "p90", "p99", "max")}
        m = summary["median"]
        print(f"median of {len(runs)} runs: {m['requests_per_second']} requests/s, {m['images_per_second']} images/s; "
              f"server CPU {m['server_cpu_ms_per_request']} ms per request ({m['server_cpu_us_per_image']} us per "
              f"image); latency p50 {m['latency_ms']['p50']} ms, p99 {m['latency_ms']['p99']} ms")
    recorded = {"mode": args.mode, "probabilities": [kind.probabilities(a) for a in answers],
                "digits": expected}
    if args.answers:
        Path(args.answers).write_text(json.dumps(recorded) + "\n")
    if args.compare:
        summary["compare"] = compare_answers(json.loads(Path(args.compare).read_text()), recorded)
        print(f"answers against {args.compare}: {summary['compare']}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=2) + "\n")
    return 1 if any(r["errors"] for r in runs) else 0


def report(result: dict, args, kind: Request) -> None:
    lat = result["latency_ms"]
    images = f", {result['images_per_second']} images/s" if kind.images_per_request > 1 else ""
    print(f"{result['answered']} requests in {result['seconds']} s from {args.clients} clients: "
          f"{result['requests_per_second']} requests/s{images}; latency p50 {lat.get('p50')} ms, "
          f"p90 {lat.get('p90')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms; "
          f"errors {result['errors']}", flush=True)
    print(f"  server CPU {result['server_cpu_ms_per_request']} ms per request "
          f"({result['server_cpu_us_per_image']} us per image); load average "
          f"{result['load_average_before']} before, {result['load_average_after']} after "
          f"({os.cpu_count()} CPUs)", flush=True)
    for error in result["first_errors"]:
        print("  error:", error)


def compare_answers(before: dict, after: dict) -> dict:
    """The largest difference between two --answers files' probabilities, and how many digits differ."""
    a = np.asarray([p for group in before["probabilities"] for p in group], dtype=np.float64)
    b = np.asarray([p for group in after["probabilities"] for p in group], dtype=np.float64)
    if a.shape != b.shape:
        return {"error": f"different inputs: {a.shape} against {b.shape}"}
    digits_a = [d for group in before["digits"] for d in group]
    digits_b = [d for group in after["digits"] for d in group]
    return {"inputs": len(a), "max_abs_difference": float(np.abs(a - b).max()),
            "digits_differing": int(sum(x != y for x, y in zip(digits_a, digits_b)))}


if __name__ == "__main__":
    sys.exit(main())
