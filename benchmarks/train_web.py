"""Training through the web page: its throughput against ``digitnet train``, and the Draw API meanwhile.

Two measurements, both against the real server (``python -m digitnet serve
MODEL --port 0``, a subprocess on loopback):

``throughput``
    The same recipe trained by ``digitnet train`` (a subprocess) and by the
    server's Train API (``POST /api/train``, its events read to the end),
    alternately, ``--repeat`` times each.  Both report the training time of
    :func:`digitnet.train.recipes.train_recipe` (data loading and the final
    test evaluation excluded): the CLI in its model file
    (``evaluation.train_seconds``), the server in its ``done`` event
    (``seconds``).  Images per second = training images x epochs / seconds.
    The server keeps NumPy's BLAS to one thread (threadpoolctl); the CLI is
    run with ``OPENBLAS_NUM_THREADS=1`` for the like-for-like figure, and
    once with the machine's default, for reference.
``latency``
    ``--clients`` clients POST canvas PNGs (made as benchmarks/load_web.py
    makes them, from real MNIST test digits) to ``/api/predict`` for
    ``--seconds``: first with the server idle, then while a training job runs
    (the recipe's epochs raised so that it outlasts the load), which is
    stopped afterwards.  Latency percentiles and requests per second for
    both, and the job's images per second under the load.

A benchmark, not a test: nothing here asserts a timing.  Usage::

    python benchmarks/train_web.py                         # best preset, 20,000 images, 2 epochs
    python benchmarks/train_web.py --preset nielsen --subset 50000 --epochs 2 --repeat 3
    python benchmarks/train_web.py --only latency --clients 1 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))

from load_web import canvas_pngs, quick_model, start_server


def cli_run(args, threads: str | None, folder: Path) -> dict:
    """``digitnet train`` with the recipe; its training time from the model file it wrote."""
    from digitnet.files.modelfile import read_model_file

    out = folder / "cli.npz"
    env = dict(os.environ)
    if threads is not None:
        env["OPENBLAS_NUM_THREADS"] = threads
    else:
        env.pop("OPENBLAS_NUM_THREADS", None)
    command = [sys.executable, "-m", "digitnet", "train", "--preset", args.preset, "--epochs", str(args.epochs),
               "--seed", "0", "--no-checkpoint", "--out", str(out)]
    if args.subset:
        command += ["--subset", str(args.subset)]
    subprocess.run(command, check=True, capture_output=True, text=True, cwd=folder, env=env)
    header, _ = read_model_file(out)
    seconds = header["evaluation"]["train_seconds"]
    return {"seconds": seconds, "test_accuracy": header["evaluation"]["test_accuracy"]}


def read_events(http, job: str, on_event=None) -> list[tuple[str, dict]]:
    events = []
    with http.stream("GET", f"/api/train/{job}/events", timeout=None) as response:
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                events.append((name, json.loads(line[6:])))
                if on_event:
                    on_event(name, events[-1][1])
    return events


def web_run(http, recipe: dict) -> dict:
    """The recipe through POST /api/train; its training time from the done event."""
    job = http.post("/api/train", json=recipe).json()["job"]
    events = read_events(http, job)
    name, final = events[-1]
    assert name == "done", events[-1]
    start = next(data for name, data in events if name == "start")
    return {"seconds": final["seconds"], "test_accuracy": final["test_accuracy"], "n_train": start["n_train"]}


async def predict_load(url: str, pngs: list[bytes], clients: int, seconds: float) -> dict:
    import httpx

    latencies: list[float] = []
    errors = 0
    deadline = time.perf_counter() + seconds

    async def client(k: int) -> None:
        nonlocal errors
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            j = k
            while time.perf_counter() < deadline:
                t0 = time.perf_counter()
                response = await http.post("/api/predict", content=pngs[j % len(pngs)],
                                           headers={"content-type": "image/png"})
                latencies.append(time.perf_counter() - t0)
                errors += response.status_code != 200
                j += clients

    started = time.perf_counter()
    await asyncio.gather(*(client(k) for k in range(clients)))
    elapsed = time.perf_counter() - started
    ms = np.asarray(latencies) * 1000
    return {"requests": len(latencies), "requests_per_second": round(len(latencies) / elapsed, 1),
            "errors": errors, **{q: round(float(np.percentile(ms, p)), 1)
                                 for q, p in (("p50", 50), ("p90", 90), ("p99", 99), ("max", 100))}}


def measure_latency(http, url: str, args) -> dict:
    pngs = canvas_pngs(64)
    for png in pngs[:8]:                                    # warm up
        http.post("/api/predict", content=png, headers={"content-type": "image/png"})
    idle = asyncio.run(predict_load(url, pngs, args.clients, args.seconds))
    # A job that outlasts the load: the recipe with more epochs.
    recipe = {**recipe_of(args), "epochs": max(args.epochs, 50)}
    job = http.post("/api/train", json=recipe).json()["job"]
    progress: list[dict] = []
    reader = threading.Thread(target=read_events, args=(http, job),
                              kwargs={"on_event": lambda n, d: n == "progress" and progress.append(d)}, daemon=True)
    reader.start()
    while not progress:
        time.sleep(0.05)
    first = len(progress) - 1
    training = asyncio.run(predict_load(url, pngs, args.clients, args.seconds))
    last = len(progress) - 1
    http.delete(f"/api/train/{job}")
    reader.join(30)
    # The job's pace under the load: the images its curve points cover, over the time they took.
    images = sum(point["rows"] for event in progress[first + 1:last + 1] for point in event["points"])
    spent = progress[last]["seconds"] - progress[first]["seconds"]
    training["job_images_per_second"] = round(images / spent) if spent > 0 else None
    return {"clients": args.clients, "seconds": args.seconds, "idle": idle, "training": training}


def recipe_of(args) -> dict:
    recipe = {"preset": args.preset, "epochs": args.epochs, "seed": 0}
    if args.subset:
        recipe["subset"] = args.subset
    return recipe


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", nargs="?", help="model the server serves (default: a quick 784-512-10 model)")
    parser.add_argument("--preset", default="best")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--subset", type=int, default=20_000, help="training images (0: all)")
    parser.add_argument("--repeat", type=int, default=3, help="runs of each side, alternating (default 3)")
    parser.add_argument("--clients", type=int, default=4, help="prediction clients for the latency run")
    parser.add_argument("--seconds", type=float, default=8, help="seconds of each latency run")
    parser.add_argument("--only", choices=("throughput", "latency"))
    parser.add_argument("--server-env", metavar="NAME=VALUE", action="append", default=[],
                        help="environment variable for the server, e.g. OPENBLAS_NUM_THREADS=1 (repeatable)")
    parser.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    args = parser.parse_args(argv)
    import httpx

    results: dict = {"recipe": recipe_of(args), "cpus": os.cpu_count(), "python": platform.python_version(),
                     "load_average_before": [round(v, 2) for v in os.getloadavg()]}
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        model = Path(args.model) if args.model else quick_model(folder)
        server_env = dict(item.split("=", 1) for item in args.server_env)
        process, url = start_server(model, {"DIGITNET_CACHE_DIR": str(folder / "cache"), **server_env})
        try:
            with httpx.Client(base_url=url, timeout=120) as http:
                if args.only != "latency":
                    web_run(http, {**recipe_of(args), "epochs": 1, "subset": 100})   # the server loads MNIST
                    cli, web = [], []
                    for _ in range(args.repeat):
                        cli.append(cli_run(args, "1", folder))
                        web.append(web_run(http, recipe_of(args)))
                    default = cli_run(args, None, folder)
                    n = web[0]["n_train"] * args.epochs
                    rate = lambda runs: round(n / statistics.median(r["seconds"] for r in runs))
                    results["throughput"] = {
                        "images": n,
                        "cli_one_thread_seconds": [round(r["seconds"], 3) for r in cli],
                        "web_seconds": [round(r["seconds"], 3) for r in web],
                        "cli_default_threads_seconds": round(default["seconds"], 3),
                        "cli_images_per_second": rate(cli), "web_images_per_second": rate(web),
                        "cli_default_threads_images_per_second": round(n / default["seconds"]),
                        "web_vs_cli": round(rate(web) / rate(cli), 3),
                        "test_accuracy": {"cli": cli[0]["test_accuracy"], "web": web[0]["test_accuracy"]},
                    }
                if args.only != "throughput":
                    results["latency"] = measure_latency(http, url, args)
        finally:
            process.terminate()
            process.wait(timeout=30)
    results["load_average_after"] = [round(v, 2) for v in os.getloadavg()]
    print(json.dumps(results, indent=2))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
