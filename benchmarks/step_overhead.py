"""Training-step CPU time of this checkout against another version of digitnet, interleaved in one process.

Usage::

    mkdir /tmp/base && git archive HEAD src/digitnet | tar -x -C /tmp/base
    OPENBLAS_NUM_THREADS=1 python benchmarks/step_overhead.py --baseline-src /tmp/base/src --rounds 40

Both versions are imported side by side (the baseline's package is copied to
a temporary folder as ``digitnet_base``).  Their networks start from the same
weights and step on the same batch; each round times a block of steps of one,
then of the other (alternating which goes first), as CPU time of the calling
thread (``time.thread_time``), so a machine busy with other work inflates
neither: with one BLAS thread all of a step's arithmetic runs on that thread.
Prints the median and fastest-round ratio new/old per network.  A benchmark,
not a test.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

NETWORKS = [([784, 30, 10], 10), ([784, 256, 128, 10], 64), ([784, 1024, 1024, 10], 128)]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--baseline-src", required=True, help="folder holding the other digitnet package")
    parser.add_argument("--rounds", type=int, default=40)
    args = parser.parse_args(argv)
    folder = Path(tempfile.mkdtemp())
    shutil.copytree(Path(args.baseline_src) / "digitnet", folder / "digitnet_base")
    sys.path.insert(0, str(folder))
    import digitnet
    import digitnet_base

    rng = np.random.default_rng(0)
    for sizes, batch in NETWORKS:
        versions = {"old": digitnet_base, "new": digitnet}
        nets = {k: v.Network(sizes, seed=0) for k, v in versions.items()}
        opts = {k: v.nn.optimizers.get_optimizer("nesterov", 0.01) for k, v in versions.items()}
        X = rng.random((batch, sizes[0]), dtype=np.float32)
        Y = np.eye(sizes[-1], dtype=np.float32)[rng.integers(0, sizes[-1], batch)]
        steps = max(5, int(3e7 / (6 * nets["new"].n_params * batch)))
        for k in nets:
            for _ in range(3):
                nets[k].update_mini_batch(X, Y, opts[k], 1e-4)
        times = {"old": [], "new": []}
        for r in range(args.rounds):
            for k in (("old", "new") if r % 2 == 0 else ("new", "old")):
                started = time.thread_time()
                for _ in range(steps):
                    nets[k].update_mini_batch(X, Y, opts[k], 1e-4)
                times[k].append((time.thread_time() - started) / steps)
        ratios = [n / o for n, o in zip(times["new"], times["old"])]
        print(f"{str(sizes):22s} batch {batch:3d}: old {1e6 * statistics.median(times['old']):8.1f} µs, "
              f"new {1e6 * statistics.median(times['new']):8.1f} µs of CPU per step; new/old median "
              f"{statistics.median(ratios):.3f} (quartiles {np.percentile(ratios, 25):.3f}–"
              f"{np.percentile(ratios, 75):.3f}), fastest rounds {min(times['new']) / min(times['old']):.3f} "
              f"({args.rounds} rounds of {steps} steps)", flush=True)
    shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
