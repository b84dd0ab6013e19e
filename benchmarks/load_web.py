"""Load run for ``digitnet serve``: many concurrent clients POSTing canvas PNGs.

Starts the real server (``python -m digitnet serve MODEL --port 0``) in a
subprocess on loopback, then runs ``--clients`` asyncio clients (one
``httpx.AsyncClient`` and keep-alive connection each) for ``--seconds`` or
until ``--max-requests`` requests have been answered, whichever comes first.
Every client POSTs ``/api/predict`` with PNGs like the drawing page sends:
280x280 RGBA, white anti-aliased strokes on black, made from real MNIST test
digits.  Reports requests per second, latency percentiles, the server's CPU
time per request and the error count: any non-200 answer, any exception, or
any answer whose digit differs from the one the server gave for the same PNG
when asked alone beforehand (concurrency must not change answers).

This is a benchmark, not a test: nothing here asserts a timing.  Usage::

    python benchmarks/load_web.py                      # a 784-512-10 model trained here in seconds
    python benchmarks/load_web.py MODEL.npz --clients 32 --seconds 20
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


def start_server(model: Path, env: dict[str, str]) -> tuple[subprocess.Popen, str]:
    """``digitnet serve MODEL --port 0`` (with ``env`` added) and the URL it prints."""
    process = subprocess.Popen([sys.executable, "-m", "digitnet", "serve", str(model), "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
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
    """User + system CPU time of a process (Linux /proc), or NaN elsewhere."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return float("nan")


async def load(url: str, pngs: list[bytes], expected: list[int], clients: int, seconds: float,
               max_requests: int) -> dict:
    import httpx

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
                index = j % len(pngs)
                j += clients
                t0 = time.perf_counter()
                try:
                    response = await http.post("/api/predict", content=pngs[index],
                                               headers={"content-type": "image/png"})
                    latencies.append(time.perf_counter() - t0)
                    if response.status_code != 200:
                        errors.append(f"HTTP {response.status_code}: {response.text[:120]}")
                    elif response.json()["digit"] != expected[index]:
                        errors.append(f"PNG {index}: digit {response.json()['digit']} under load, "
                                      f"{expected[index]} alone")
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
        "latency_ms": {q: round(float(np.percentile(lat_ms, p)), 1)
                       for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}
        if len(lat_ms) else {},
        "errors": len(errors),
        "first_errors": errors[:5],
    }


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="model file (default: a quick 784-512-10 model)")
    parser.add_argument("--clients", type=int, default=32, help="concurrent clients (default 32)")
    parser.add_argument("--seconds", type=float, default=20, help="how long to run (default 20)")
    parser.add_argument("--max-requests", type=int, default=50_000, help="stop after this many (default 50000)")
    parser.add_argument("--pngs", type=int, default=64, help="distinct digit PNGs to cycle through")
    parser.add_argument("--server-env", metavar="NAME=VALUE", action="append", default=[],
                        help="environment variable for the server, e.g. OPENBLAS_NUM_THREADS=1 (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    server_env = {}
    for item in args.server_env:
        name, sep, value = item.partition("=")
        if not sep or not name:
            parser.error(f"--server-env wants NAME=VALUE, got {item!r}")
        server_env[name] = value

    import httpx

    with tempfile.TemporaryDirectory() as tmp:
        model = Path(args.model) if args.model else quick_model(Path(tmp))
        pngs = canvas_pngs(args.pngs)
        process, url = start_server(model, server_env)
        try:
            # Each PNG's answer when asked alone: the reference for the run.
            with httpx.Client(base_url=url, timeout=30) as http:
                expected = [http.post("/api/predict", content=png,
                                      headers={"content-type": "image/png"}).json()["digit"] for png in pngs]
            load_before = os.getloadavg()
            cpu_before = cpu_seconds(process.pid)
            result = asyncio.run(load(url, pngs, expected, args.clients, args.seconds, args.max_requests))
            server_cpu = cpu_seconds(process.pid) - cpu_before
            load_after = os.getloadavg()
        finally:
            process.terminate()
            process.wait(timeout=20)

    png_kb = np.mean([len(p) for p in pngs]) / 1024
    result.update({
        "clients": args.clients,
        "server_env": server_env,
        "model": str(args.model or "784-512-10 (quick)"),
        "png_kb_mean": round(float(png_kb), 1),
        "server_cpu_ms_per_request": round(1000 * server_cpu / max(result["answered"], 1), 2),
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in load_after],
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "machine": platform.machine(),
    })
    lat = result["latency_ms"]
    print(f"{result['answered']} requests in {result['seconds']} s from {args.clients} clients: "
          f"{result['requests_per_second']} requests/s; latency p50 {lat.get('p50')} ms, "
          f"p90 {lat.get('p90')} ms, p99 {lat.get('p99')} ms, max {lat.get('max')} ms; "
          f"errors {result['errors']}")
    print(f"server CPU {result['server_cpu_ms_per_request']} ms per request; PNGs {png_kb:.1f} KB on average; "
          f"load average {result['load_average_before']} before, {result['load_average_after']} after "
          f"({result['cpus']} CPUs)")
    for error in result["first_errors"]:
        print("  error:", error)
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 1 if result["errors"] else 0


if __name__ == "__main__":
    sys.exit(main())
