"""``digitnet sweep``: many trainings from one command, in worker processes or on Ray."""

from __future__ import annotations

import signal
import sys
import time

from ...errors import DigitnetError
from ...train.sweep import SweepProgress, show_value, format_header, format_row
from .common import add_command, nonnegative_int, percent, positive_int

EXAMPLES = """\
  digitnet sweep --preset nielsen --grid lr=0.03,0.3,3,30 --epochs 5
                                  the seed's experiment: learning rates too low, right, too high
  digitnet sweep --preset nielsen --grid lr=0.3,3 --grid layers=784-30-10,784-100-10 --seeds 3
                                  2 rates × 2 networks × 3 seeds = 12 trials
  digitnet sweep --preset best --random 8 --range lr=log:1e-3..1 --range l2=0..10 --epochs 3
                                  8 random points (lr drawn log-uniformly)
  digitnet sweep --preset nielsen --grid lr=0.3,3 --subset 5000 --epochs 2 --out quick/
  digitnet sweep --preset nielsen --grid lr=0.3,3,30 --ray            a local Ray
  digitnet sweep --preset nielsen --grid lr=0.3,3,30 --ray auto       the Ray cluster this machine is in
  digitnet sweep --preset nielsen --grid lr=0.3,3,30 --ray 10.0.0.5:6379

Run the same command again to finish a sweep: trials that finished are kept.
Ctrl-C stops at once and keeps every finished trial (exit status 130).
"""

DESCRIPTION = """\
Train many variants of a preset and compare them.

Each --grid FIELD=V1,V2,... lists values of one field of the preset; every
combination is a trial, trained with each seed (--seeds N: seeds 0..N-1).
--random N --range FIELD=[log:]LOW..HIGH adds N random points instead (or on
top of the grid). Fields: layers (784-30-10), activation, output, loss, init,
optimizer, lr, batch_size, epochs, l2, schedule, scale, split, shift, data,
the optimiser settings momentum, beta1, beta2, eps, and the recipe's other
numeric fields (the augmentations, dropout).

Every trial is 'digitnet train' with those changes, and saves its model. The
trials run in worker processes on this machine (--parallel, default: one per
core), or as Ray tasks with --ray: on a local Ray, or on a running cluster
('auto' or the head node's HOST:PORT). A table grows on the terminal as
trials finish; OUT/results.csv and OUT/results.json hold every trial
(parameters, seed, validation and test accuracy, loss, time, status, model
file), OUT/best.npz is the model with the best validation accuracy, and
OUT/index.html shows the results against each swept field and every
trial's learning curves. A trial whose loss becomes NaN is recorded as
'diverged' (with its last good epoch), not an error.
"""


def add_parser(subparsers):
    p = add_command(subparsers, "sweep", help="train many variants of a preset and compare them",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("--preset", metavar="NAME", help="recipe every trial starts from (default: best)")
    g = p.add_argument_group("what varies")
    g.add_argument("--grid", action="append", metavar="FIELD=V1,V2,...", default=[],
                   help="values of one field; repeat for more fields (every combination is tried)")
    g.add_argument("--random", type=nonnegative_int, default=0, metavar="N",
                   help="N random points drawn from the --range fields")
    g.add_argument("--range", action="append", metavar="FIELD=[log:]LOW..HIGH", default=[],
                   dest="ranges", help="where --random draws a field (log: log-uniformly)")
    g.add_argument("--sample-seed", type=nonnegative_int, default=0, metavar="N",
                   help="seed of the random draws (default: 0; the same seed, the same points)")
    g.add_argument("--seeds", type=positive_int, default=1, metavar="N",
                   help="train every point with seeds 0..N-1 (default: 1)")
    d = p.add_argument_group("every trial")
    d.add_argument("--epochs", type=positive_int, metavar="N", help="passes over the training data")
    d.add_argument("--subset", type=positive_int, metavar="N",
                   help="train on only the first N training images (quick sweeps)")
    d.add_argument("--data", metavar="SOURCE",
                   help="mnist (default), fashion-mnist, kmnist, a folder of IDX files or a "
                        "labelled FILE.csv (on Ray: present at the same path on every node)")
    r = p.add_argument_group("where the trials run")
    r.add_argument("--parallel", type=positive_int, metavar="K",
                   help="trials at once on this machine (default: cores / T)")
    r.add_argument("--threads", type=positive_int, metavar="T",
                   help="BLAS threads per trial (default: cores / K, at least 1)")
    r.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run the trials as Ray tasks: on a local Ray, or on the cluster at "
                        "ADDRESS ('auto' or HOST:PORT); needs pip install 'digitnet[ray]'")
    f = p.add_argument_group("files")
    f.add_argument("--out", metavar="DIR",
                   help="folder of the results (default: sweep-PRESET here); run again to resume")
    f.add_argument("--no-plots", action="store_true",
                   help="write the tables and models only, no pictures or page")
    return p


class LiveTable(SweepProgress):
    """The table on the terminal: a line per finished trial, and a status line on a terminal."""

    def __init__(self, stream=None, status_stream=None):
        self.stream = stream or sys.stdout
        self.status_stream = status_stream or sys.stderr
        try:
            self.live = bool(self.status_stream.isatty())
        except (AttributeError, ValueError):
            self.live = False
        self.drawn = False
        self.widths = None

    def on_start(self, result, todo):
        if result.reused:
            print(f"kept {result.reused} finished trial{'s' if result.reused != 1 else ''} from an "
                  f"earlier run in {result.out}; {todo} to train", file=self.stream, flush=True)
        self.widths = result.widths
        print(format_header(result.fields, self.widths), file=self.stream, flush=True)
        for row in result.rows:
            print(format_row(row, result.fields, self.widths), file=self.stream, flush=True)

    def on_trial(self, row, result):
        self._clear()
        print(format_row(row, result.fields, self.widths), file=self.stream, flush=True)

    def on_wait(self, result, elapsed):
        if not self.live:
            return
        best = result.best
        best_text = "" if best is None else \
            f" · best {percent(best.get(result.ranked_by))} (trial {best['trial']})"
        text = (f"\r{len(result)}/{result.total} trials finished · {_duration(elapsed)}"
                f"{best_text}\033[K")
        try:
            self.status_stream.write(text)
            self.status_stream.flush()
            self.drawn = True
        except (OSError, ValueError):
            self.live = False

    def _clear(self):
        if self.drawn:
            try:
                self.status_stream.write("\r\033[K")
                self.status_stream.flush()
            except (OSError, ValueError):
                self.live = False
            self.drawn = False


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    if seconds < 60:
        return f"{seconds}s"
    minutes, seconds = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m"


def _describe_trial(row, fields) -> str:
    parts = [f"{name} {show_value(row[name])}" for name in fields]
    return ", ".join(parts + [f"seed {row['seed']}"])


def run(args) -> int:
    from ...train.recipes import DEFAULT_PRESET
    from ...train.sweep import SweepInterrupted, sweep

    preset = args.preset or DEFAULT_PRESET
    table = LiveTable()
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    started = time.perf_counter()
    try:
        result = sweep(preset, args.grid, random=args.random, ranges=args.ranges,
                       sample_seed=args.sample_seed, seeds=args.seeds, epochs=args.epochs,
                       subset=args.subset, data=args.data, out=args.out, parallel=args.parallel,
                       threads=args.threads, ray=args.ray, progress=table)
    except SweepInterrupted as stop:
        table._clear()
        res = stop.result
        print(f"digitnet: interrupted: {len(res)} of {res.total} trials finished and are kept in "
              f"{res.csv_path}; run the same command again to train the other "
              f"{res.total - len(res)}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, previous)
    table._clear()

    counts = ", ".join(f"{result.count(s)} {s}" for s in ("ok", "diverged", "failed") if result.count(s))
    trained = len(result) - result.reused
    print(f"{result.total} trials: {counts}; {trained} ran in {_duration(time.perf_counter() - started)}"
          f"{f', {result.reused} kept from before' if result.reused else ''}", flush=True)
    best = result.best
    if best is not None:
        label = "validation" if result.ranked_by == "val_accuracy" else "test"
        test = f", test {percent(best['test_accuracy'])}" if result.ranked_by == "val_accuracy" \
            and best.get("test_accuracy") is not None else ""
        print(f"best: trial {best['trial']} ({_describe_trial(best, result.fields)}): {label} "
              f"{percent(best[result.ranked_by])}{test} → {result.best_model}", flush=True)
    files = f"results: {result.csv_path}, {result.json_path}"
    if not args.no_plots:
        from ..sweep_report import write_sweep_report

        page = write_sweep_report(result)
        files += f"; pictures: {page}"
    print(files, flush=True)
    failed = [row for row in result if row["status"] == "failed"]
    if failed:
        first = failed[0]
        raise DigitnetError(f"{len(failed)} of {result.total} trials failed (trial {first['trial']}, "
                            f"{_describe_trial(first, result.fields)}: {first['error']}); the others "
                            "finished: run the same command again to retry the failed ones")
    return 0
