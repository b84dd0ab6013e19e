"""Wall time of a 12-trial sweep: the local pool with 1 and 2 workers, and a local Ray.

Usage::

    python benchmarks/sweep.py               # two rounds, writes benchmarks/SWEEP.md
    python benchmarks/sweep.py --rounds 1

The sweep is ``digitnet sweep --preset nielsen --grid lr=0.3,1,3,10 --seeds 3
--epochs 2 --subset 10000`` (12 trials of about a second each), run through
:func:`digitnet.train.sweep.sweep` into a fresh folder each time, one BLAS
thread per trial:

* ``pool, 1 worker`` and ``pool, 2 workers``: the standard-library process pool;
* ``Ray, 2 CPUs``: ``ray.init(num_cpus=2)`` (timed on its own, as *Ray start*),
  then the same sweep as Ray tasks, then ``ray.shutdown()``.

For each run: the sweep's wall time, the sum of the trials' own wall times (in
their worker: loading the data, training, evaluating, writing the model), and
the overhead per trial, ``(wall × workers − Σ trial) / trials``: the time a
worker slot spends on anything but a trial (starting workers, shipping specs
and results, writing the tables).  The rounds are interleaved so that a busy
spell of the shared machine does not land on one configuration only.

This is a benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import logging
import os
import platform
import statistics
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = HERE / "SWEEP.md"
RESULTS = HERE / "out" / "sweep.json"

GRID = {"lr": [0.3, 1.0, 3.0, 10.0]}
SETTINGS = dict(seeds=3, epochs=2, subset=10000, threads=1)
COMMAND = ("digitnet sweep --preset nielsen --grid lr=0.3,1,3,10 --seeds 3 --epochs 2 "
           "--subset 10000 --threads 1")


def machine() -> dict:
    import numpy as np

    try:
        load = os.getloadavg()
    except OSError:
        load = None
    try:
        import ray

        ray_version = ray.__version__
    except ImportError:
        ray_version = None
    return {"cpus": os.cpu_count(), "load_average": load, "python": platform.python_version(),
            "numpy": np.__version__, "ray": ray_version, "platform": platform.platform()}


def one(name: str, **backend) -> dict:
    from digitnet.train.sweep import sweep

    with tempfile.TemporaryDirectory(prefix="digitnet-bench-sweep-") as folder:
        started = time.perf_counter()
        result = sweep("nielsen", GRID, out=Path(folder) / "sweep", **SETTINGS, **backend)
        wall = time.perf_counter() - started
    trials = sum(row["wall_seconds"] for row in result)
    workers = backend.get("parallel", 2)
    return {"name": name, "wall": wall, "trial_sum": float(trials), "workers": workers,
            "trials": len(result), "ok": result.count("ok"),
            "overhead_per_trial": (wall * workers - trials) / len(result),
            "val_accuracy": result["val_accuracy"]}


def ray_run() -> dict:
    import ray

    started = time.perf_counter()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR)
    start = time.perf_counter() - started
    try:
        out = one("Ray, 2 CPUs", ray=True)
    finally:
        stopped = time.perf_counter()
        ray.shutdown()
        out["ray_shutdown"] = time.perf_counter() - stopped
    out["ray_start"] = start
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--report", action="store_true",
                        help="only rewrite SWEEP.md from the saved benchmarks/out/sweep.json")
    args = parser.parse_args()
    if args.report:
        write_report(json.loads(RESULTS.read_text()))
        return
    runs = []
    before = machine()
    for round_number in range(args.rounds):
        for run in (lambda: one("pool, 1 worker", parallel=1),
                    lambda: one("pool, 2 workers", parallel=2),
                    ray_run):
            result = run()
            result["round"] = round_number + 1
            print(json.dumps({k: v for k, v in result.items() if k != "val_accuracy"}), flush=True)
            runs.append(result)
    RESULTS.parent.mkdir(exist_ok=True)
    record = {"when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": before, "runs": runs}
    RESULTS.write_text(json.dumps(record, indent=1))
    write_report(record)


def write_report(record):
    runs = record["runs"]
    names = list(dict.fromkeys(r["name"] for r in runs))
    same = all(r["val_accuracy"] == runs[0]["val_accuracy"] for r in runs)
    lines = [
        "# Sweeps: the local pool against Ray",
        "",
        f"`python benchmarks/sweep.py` ({record['when']}): the 12-trial sweep `{COMMAND}` (4 rates × "
        "3 seeds of Nielsen's recipe, 2 epochs on 10,000 images), each run into a fresh folder, one "
        "BLAS thread per trial. *Σ trial* adds up the trials' own wall times in their workers "
        "(loading the data, training, evaluating, writing the model); *overhead per trial* is "
        "(wall × workers − Σ trial) / 12, the time a worker slot spent on anything else. Ray's start "
        "(`ray.init(num_cpus=2)`, a local Ray) is timed apart from its sweep. The rounds were "
        "interleaved on a two-core machine shared with other work, so the times move between rounds.",
        "",
        "| run | round | wall | Σ trial | overhead per trial | Ray start |",
        "|---|---|---|---|---|---|",
    ]
    for r in runs:
        start = f"{r['ray_start']:.1f} s" if "ray_start" in r else "–"
        lines.append(f"| {r['name']} | {r['round']} | {r['wall']:.1f} s | {r['trial_sum']:.1f} s | "
                     f"{r['overhead_per_trial']:.2f} s | {start} |")
    lines += ["", "Medians over the rounds:", "",
              "| run | wall | overhead per trial |", "|---|---|---|"]
    medians = {}
    for name in names:
        mine = [r for r in runs if r["name"] == name]
        medians[name] = (statistics.median(r["wall"] for r in mine),
                         statistics.median(r["overhead_per_trial"] for r in mine))
        lines.append(f"| {name} | {medians[name][0]:.1f} s | {medians[name][1]:.2f} s |")
    pool2, ray = medians.get("pool, 2 workers"), medians.get("Ray, 2 CPUs")
    ray_start = statistics.median(r["ray_start"] for r in runs if "ray_start" in r)
    if pool2 and ray:
        extra = (ray[0] - pool2[0]) * 2 / 12
        lines += ["", f"**Ray's overhead**: starting a local Ray took {ray_start:.1f} s (median); "
                  f"after that, the sweep through Ray took {ray[0]:.1f} s against {pool2[0]:.1f} s in "
                  f"the pool of two workers, so Ray added about {extra:.2f} s per trial (the extra wall time × "
                  f"2 CPUs ÷ 12 trials; {ray[1]:.2f} s per trial outside the trials, against "
                  f"{pool2[1]:.2f} s in the pool). That includes Ray starting the worker "
                  "processes of the trials' runtime environment (the BLAS thread count) and each "
                  "model's trip back through its object store; it was not broken down further. "
                  "It is paid per task, not per epoch, so it weighs less on longer trials; Ray's "
                  "start is paid once per command (with --ray auto, connecting to the running "
                  "cluster takes its place). On one machine the pool is the faster choice; Ray is for using "
                  "several."]
    pool1 = [r for r in runs if r["name"] == "pool, 1 worker"]
    pool2_runs = [r for r in runs if r["name"] == "pool, 2 workers"]
    if pool1 and pool2_runs:
        slower = statistics.median(r["trial_sum"] for r in pool2_runs) / \
            statistics.median(r["trial_sum"] for r in pool1)
        load = record["machine"].get("load_average")
        lines += ["", f"Two workers beat one by less than twice: side by side each trial took "
                  f"{slower:.1f}× as long as alone (Σ trial), the two cores being shared with other "
                  f"work (load average {load[0]:.1f} at the start)" if load else
                  f"Two workers beat one by less than twice: side by side each trial took "
                  f"{slower:.1f}× as long as alone (Σ trial)"]
        lines[-1] += "."
    lines += ["", f"Every run trained the same 12 networks: the validation accuracies were "
              f"{'identical' if same else 'NOT identical'} across all runs.", "",
              "Machine: " + ", ".join(f"{k} {v}" for k, v in record["machine"].items()) + "."]
    REPORT.write_text("\n".join(lines) + "\n")
    print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
