"""The `record` preset's runs and its ablations, written up in ``benchmarks/PRESETS.md``.

Usage::

    python benchmarks/record.py run --seeds 0,1,2              # the full preset, one seed after the other
    python benchmarks/record.py run --seeds 0,1,2 --checkpoints   # ... writing the checkpoint, as users do
    python benchmarks/record.py run --seeds 0 --epochs 15 --tag "no dropout" --set dropout=0
    python benchmarks/record.py report                         # only rewrite the section of PRESETS.md
    python benchmarks/record.py cost                           # CPU time of the distortions per epoch
    python benchmarks/record.py prefetch                       # an epoch with and without the prefetch thread

Every run is the command a user types, ``digitnet train --preset record --seed S``
(plus ``--epochs``, the recipe flags that ``--set`` turns into overrides, and
``--no-checkpoint`` unless ``--checkpoints`` is given), started
as a child process; its time is the wall-clock time of that whole process:
Python's start, the imports, loading MNIST, training, the test evaluation and
saving the model.  The accuracy is the test accuracy the model file records.
Results accumulate in ``benchmarks/out/record.json`` (each run one entry), and
the "The record preset" section of ``benchmarks/PRESETS.md`` is rewritten from
them; the rest of that file is left as it is.

This is a benchmark, not a test: it asserts nothing and takes ten minutes a run.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
RESULTS = OUT / "record.json"
REPORT = HERE / "PRESETS.md"
HEADING = "## The record preset"
# The recipe flags --set may give, as `digitnet train` spells them.
FLAGS = {"layers": "--layers", "dropout": "--dropout", "elastic": "--elastic", "affine": "--affine",
         "shift": "--shift", "lr": "--lr", "batch_size": "--batch-size", "l2": "--l2",
         "fade": "--fade"}


def machine() -> dict:
    try:
        load = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        load = None
    threads = {k: os.environ[k] for k in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS") if k in os.environ}
    return {"cpus": os.cpu_count(), "load_average": load, "python": platform.python_version(),
            "threads": threads}


def run_one(seed: int, epochs: int | None, settings: dict, tag: str, checkpoints: bool = False) -> dict:
    from digitnet.files.modelfile import load_model

    OUT.mkdir(exist_ok=True)
    model = OUT / f"record-{tag.replace(' ', '_')}-seed{seed}.npz"
    command = [sys.executable, "-m", "digitnet", "train", "--preset", "record", "--seed", str(seed),
               "--out", str(model)]
    # Without --checkpoints, none is written (~15 MB an epoch); with it, the
    # default one next to the model, as the plain command does.
    command += [] if checkpoints else ["--no-checkpoint"]
    if epochs is not None:
        command += ["--epochs", str(epochs)]
    for key, value in settings.items():
        command += [FLAGS[key], value]
    before = machine()
    cpu_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True)
    wall = time.perf_counter() - started
    cpu_after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (cpu_after.ru_utime - cpu_before.ru_utime) + (cpu_after.ru_stime - cpu_before.ru_stime)
    if done.returncode != 0:
        raise SystemExit(f"run failed: {' '.join(command)}\n{done.stderr}")
    net = load_model(model)
    evaluation = net.metadata.get("evaluation", {})
    records = net.metadata["history"]["records"]
    shown = ["digitnet", "train", "--preset", "record", "--seed", str(seed)]
    shown += [] if epochs is None else ["--epochs", str(epochs)]
    for key, value in settings.items():
        shown += [FLAGS[key], value]
    return {"tag": tag, "seed": seed, "epochs": len(records), "settings": settings,
            "test_accuracy": evaluation.get("test_accuracy"),
            "train_seconds": evaluation.get("train_seconds"), "wall_seconds": wall,
            "cpu_seconds": cpu, "checkpoints": checkpoints,
            "command": " ".join(shown + ([] if checkpoints else ["--no-checkpoint"])),
            "when": dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "machine_before": before, "machine_after": machine()}


def augmentation_cost() -> None:
    """CPU time of the record's and best's augmentation over one MNIST epoch, in fit's chunks of 1,024 rows."""
    import numpy as np

    from digitnet.data import load_mnist
    from digitnet.train.recipes import get_preset

    X = load_mnist("train")[0]

    def cpu():
        r = resource.getrusage(resource.RUSAGE_SELF)
        return r.ru_utime + r.ru_stime

    for name in ("record", "best"):
        augment, rng = get_preset(name).make_augment(), np.random.default_rng(0)
        rows = np.empty((1024, X.shape[1]), np.float32)
        started_cpu, started = cpu(), time.perf_counter()
        for start in range(0, len(X), len(rows)):
            chunk = rows[:min(len(rows), len(X) - start)]
            np.copyto(chunk, X[start:start + len(chunk)])
            augment(chunk, rng)
        print(f"{name}: {augment!r}: {cpu() - started_cpu:.2f} s of CPU "
              f"({time.perf_counter() - started:.2f} s wall) per {len(X):,}-image epoch")


def prefetch_ab(n: int = 10000, pairs: int = 4) -> None:
    """One epoch of the record preset on ``n`` images, distortions made in a background thread or in line.

    Alternates the two (``digitnet.train.loop._PREFETCH``) in one process, ``pairs`` times each.
    """
    import numpy as np

    import digitnet.train.loop as loop
    from digitnet.data import load_mnist
    from digitnet.train.recipes import get_preset

    X, y = load_mnist("train")
    preset = get_preset("record")
    seconds, weights = {True: [], False: []}, {}
    for p in range(pairs):
        for flag in ((True, False) if p % 2 == 0 else (False, True)):
            loop._PREFETCH = flag
            net = preset.build_network(0)
            started = time.perf_counter()
            net.fit(X[:n], y[:n], epochs=1, batch_size=preset.batch_size,
                    optimizer=preset.make_optimizer(), l2=preset.l2, schedule=preset.schedule,
                    seed=0, augment=preset.make_augment(), dropout=preset.dropout)
            seconds[flag].append(time.perf_counter() - started)
            weights.setdefault(flag, net.params.copy())
    ratios = [a / b for a, b in zip(seconds[True], seconds[False])]
    print(f"{n:,} images, one epoch: in line {statistics.median(seconds[False]):.2f} s, prefetched "
          f"{statistics.median(seconds[True]):.2f} s (medians of {pairs}); ratios per pair "
          f"{', '.join(f'{r:.3f}' for r in ratios)}; same weights: "
          f"{bool(np.array_equal(weights[True], weights[False]))}")


def load_results() -> list:
    try:
        return json.loads(RESULTS.read_text())
    except (OSError, ValueError):
        return []


def section(results: list) -> list[str]:
    lines = [HEADING, "",
             "Written by `python benchmarks/record.py` (see its docstring). *Wall* is the whole "
             "`digitnet train` process, from Python's start to the saved model (data loading and "
             "the test evaluation included); *training* is the part inside the training loop; "
             "*CPU* is the processor time the process used (all its threads), which a busy "
             "machine does not inflate: with one BLAS thread it is about the wall time the run "
             "takes on an idle machine. Accuracy: MNIST's 10,000 test images.", "",
             "| runs | command | seed | epochs | test accuracy | wall | training | CPU | load average at the start |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        load = ", ".join(f"{x:.1f}" for x in r["machine_before"]["load_average"] or [])
        threads = ", ".join(f"{k}={v}" for k, v in r["machine_before"]["threads"].items()) or "default"
        lines.append(f"| {r['tag']} | `{r['command']}` | {r['seed']} | {r['epochs']} | "
                     f"{100 * r['test_accuracy']:.2f}% | {r['wall_seconds']:.0f} s | "
                     f"{r['train_seconds']:.0f} s | "
                     f"{'–' if r.get('cpu_seconds') is None else format(r['cpu_seconds'], '.0f') + ' s'} | "
                     f"{load} ({threads}) |")
    by_tag = {}
    for r in results:
        by_tag.setdefault(r["tag"], []).append(r)
    lines += ["", "Medians per kind of run:", ""]
    for tag, runs in by_tag.items():
        accs = [r["test_accuracy"] for r in runs]
        walls = [r["wall_seconds"] for r in runs]
        lines.append(f"- {tag}: {len(runs)} run(s), median test accuracy "
                     f"{100 * statistics.median(accs):.2f}% (range {100 * min(accs):.2f}–"
                     f"{100 * max(accs):.2f}%), median wall time {statistics.median(walls):.0f} s.")
    return lines


def write_report(results: list, notes: str = "") -> None:
    text = REPORT.read_text(encoding="utf-8") if REPORT.exists() else ""
    kept = text.split(HEADING)[0].rstrip("\n")
    tail = ""
    if HEADING in text:   # hand-written notes after the generated table stay
        after = text.split(HEADING, 1)[1]
        marker = "<!-- notes -->"
        if marker in after:
            tail = "\n" + marker + after.split(marker, 1)[1].rstrip("\n")
    body = "\n".join(section(results))
    REPORT.write_text(kept + "\n\n" + body + "\n" + tail + ("\n" if tail else ""), encoding="utf-8")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="what", required=True)
    run = sub.add_parser("run", help="train and record")
    run.add_argument("--seeds", default="0", help="comma-separated seeds (default 0)")
    run.add_argument("--epochs", type=int, help="epochs (default: the preset's)")
    run.add_argument("--tag", default="record", help="the kind of run, for the table")
    run.add_argument("--checkpoints", action="store_true",
                     help="write the checkpoint after every epoch, as a plain 'digitnet train' does")
    run.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                     help=f"a recipe flag: {', '.join(FLAGS)} (e.g. dropout=0, elastic=0, "
                          "affine=0,0,0, layers=784,800,10)")
    sub.add_parser("report", help="only rewrite the section of PRESETS.md")
    sub.add_parser("cost", help="time the augmentation alone (CPU seconds per epoch)")
    sub.add_parser("prefetch", help="an epoch with the distortions made in a thread, and in line")
    args = parser.parse_args(argv)
    if args.what == "cost":
        augmentation_cost()
        return 0
    if args.what == "prefetch":
        prefetch_ab()
        return 0
    if args.what == "run":
        settings = dict(item.split("=", 1) for item in args.set)
        unknown = set(settings) - set(FLAGS)
        if unknown:
            parser.error(f"unknown fields {sorted(unknown)}")
        for seed in (int(s) for s in args.seeds.split(",")):
            entry = run_one(seed, args.epochs, settings, args.tag, args.checkpoints)
            results = load_results()
            results.append(entry)
            RESULTS.write_text(json.dumps(results, indent=2) + "\n")
            print(f"{args.tag} seed {seed}: {100 * entry['test_accuracy']:.2f}% in "
                  f"{entry['wall_seconds']:.0f} s ({entry['epochs']} epochs)", flush=True)
    write_report(load_results())
    print(f"wrote {REPORT}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
