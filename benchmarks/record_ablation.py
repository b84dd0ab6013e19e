"""What each ingredient of the ``record`` preset is worth, measured in pairs that share a start.

A 100-epoch run of the record network takes ~8 minutes of CPU, and two seeds
differ by ~0.05 points, about what an ingredient is worth.  So the
ingredients that act at the end of a run (the fade) are measured on the same
run: a run saves its state after epoch K (``--save-at K --save FILE``), and
its twin continues from that state (``--resume FILE``) with one thing
changed.  The two are the same network, bit for bit, until epoch K, so the
difference at the end is the ingredient's, not the seed's.  The rest
(distortion strength, width, label smoothing) are whole runs of the same
seed.  It trains through the Python API (``Network.fit``), the same
arithmetic as ``digitnet train --preset record`` (checked: one epoch gives the
same weights bit for bit), and reads the test accuracy every few epochs::

    OPENBLAS_NUM_THREADS=1 python benchmarks/record_ablation.py --tag plain --seed 1 \\
        --save-at 80 --save benchmarks/out/plain80.npz
    OPENBLAS_NUM_THREADS=1 python benchmarks/record_ablation.py --tag "plain, fade 20" --seed 1 \\
        --fade 20 --resume benchmarks/out/plain80.npz

Each run appends a line to ``benchmarks/out/record_ablation.jsonl``: its
settings, the test accuracy along the way and at the end, and (with
``--ema``/``--swa``) that of averaged weights.  The defaults are the record
network with its optimiser (batch 256, lr 0.1, 100 epochs) and the milder
distortions (``--elastic 34,6 --affine 10,0.1,0.1``) the preset used before.
A benchmark, not a test: it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from digitnet import Network
from digitnet.data import load_mnist
from digitnet.nn.optimizers import Momentum
from digitnet.train import fit
from digitnet.train.augment import Distort
from digitnet.train.history import Callback

OUT = Path(__file__).resolve().parent / "out"
RESULTS = OUT / "record_ablation.jsonl"


def pair(text: str, n: int) -> list[float]:
    values = [float(v) for v in text.split(",")]
    if len(values) != n:
        raise argparse.ArgumentTypeError(f"expected {n} numbers separated by commas, got {text!r}")
    return values


def parse(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--tag", required=True, help="the name of the run in the results")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=100)
    p.add_argument("--layers", default="784,1024,1024,10")
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--l2", type=float, default=3.0)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--elastic", type=lambda t: pair(t, 2), default=[34, 6], metavar="ALPHA,SIGMA")
    p.add_argument("--affine", type=lambda t: pair(t, 3), default=[10, 0.1, 0.1], metavar="DEG,ZOOM,SHEAR")
    p.add_argument("--fade", type=int, default=0, help="epochs at the end whose distortions fade to none")
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--label-smoothing", type=float, default=0.0,
                   help="targets (1 − ε) on the label and ε/10 everywhere (ε = this)")
    p.add_argument("--ema", type=float, default=0.0,
                   help="also read the test set with an exponential average of the weights (decay per step)")
    p.add_argument("--swa", type=int, default=0,
                   help="also read it with the mean of the weights after each of the last N epochs")
    p.add_argument("--eval-every", type=int, default=10, help="read the test set every N epochs")
    p.add_argument("--save-at", type=int, default=0, help="save the weights and momentum after epoch K")
    p.add_argument("--save", type=Path, help="... into this file (.npz)")
    p.add_argument("--resume", type=Path, help="continue from a file --save wrote")
    p.add_argument("--subset", type=int, help="train on the first N training images only (quick checks)")
    p.add_argument("--results", type=Path, default=RESULTS,
                   help=f"where to append the result (default {RESULTS})")
    return p.parse_args(argv)


class Watch(Callback):
    """Reads the test set now and then, saves the state once, and keeps the weight averages."""

    def __init__(self, args, network, optimizer, X_test, y_test):
        self.args, self.net, self.opt = args, network, optimizer
        self.X_test, self.y_test = X_test, y_test
        self.curve = {}
        self.ema = network.params.copy() if args.ema else None
        self.swa, self.n_swa = np.zeros(network.params.shape, np.float64), 0

    def accuracy(self, params=None) -> float:
        kept = self.net.params.copy()
        if params is not None:
            self.net.params[...] = params
        accuracy = float(np.mean(self.net.predict(self.X_test) == self.y_test))
        self.net.params[...] = kept
        return accuracy

    def on_batch_end(self, epoch, batch, n_batches):
        if self.ema is not None:          # ema ← ema + (1 − decay)·(θ − ema)
            self.ema += (1 - self.args.ema) * (self.net.params - self.ema)

    def on_epoch_end(self, epoch, record):
        done, args = epoch + 1, self.args
        if args.swa and done > args.epochs - args.swa:
            self.swa += self.net.params
            self.n_swa += 1
        if args.save_at and done == args.save_at:
            np.savez(args.save, params=self.net.params, velocity=self.opt.velocity, epoch=done)
        if done % args.eval_every == 0 or done == args.epochs:
            self.curve[done] = self.accuracy()
            print(f"epoch {done}: loss {record['loss']:.4f}, training accuracy {record['accuracy']:.4f}, "
                  f"test accuracy {self.curve[done]:.4f} ({record['seconds']:.1f} s)", flush=True)


def main(argv=None) -> int:
    args = parse(argv)
    started = time.perf_counter()
    X, y = load_mnist("train")
    X, y = X[:args.subset], y[:args.subset]
    X_test, y_test = load_mnist("test")
    net = Network([int(s) for s in args.layers.split(",")], activation="relu", output="softmax",
                  loss="cross_entropy", init="he", seed=args.seed)
    targets = y
    if args.label_smoothing:
        targets = np.full((len(y), 10), args.label_smoothing / 10, np.float32)
        targets[np.arange(len(y)), y] += 1 - args.label_smoothing
    optimizer, first_epoch = Momentum(args.lr, args.momentum, nesterov=True), 0
    if args.resume:
        state = np.load(args.resume)
        net.params[...] = state["params"]
        optimizer.velocity = state["velocity"].copy()
        first_epoch = int(state["epoch"])
    (alpha, sigma), (rotate, zoom, shear) = args.elastic, args.affine
    distort = Distort(alpha=alpha, sigma=sigma, rotate=rotate, zoom=zoom, shear=shear, fade=args.fade)
    watch = Watch(args, net, optimizer, X_test, y_test)
    fit(net, X, targets, epochs=args.epochs, batch_size=args.batch, optimizer=optimizer, lr=args.lr,
        l2=args.l2, schedule="cosine", seed=args.seed, augment=distort, dropout=args.dropout,
        initial_epoch=first_epoch, callbacks=[watch])
    result = {"tag": args.tag, "settings": {k: (str(v) if isinstance(v, Path) else v)
                                            for k, v in vars(args).items()},
              "test_accuracy": watch.accuracy(), "curve": watch.curve,
              "seconds": time.perf_counter() - started, "cpu_seconds": time.process_time()}
    if watch.ema is not None:
        result["ema_test_accuracy"] = watch.accuracy(watch.ema)
    if watch.n_swa:
        result["swa_test_accuracy"] = watch.accuracy((watch.swa / watch.n_swa).astype(net.dtype))
    args.results.parent.mkdir(parents=True, exist_ok=True)
    with args.results.open("a", encoding="utf-8") as f:
        f.write(json.dumps(result) + "\n")
    print(json.dumps({k: v for k, v in result.items() if k not in ("settings", "curve")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
