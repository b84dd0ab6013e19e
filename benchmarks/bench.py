"""Benchmarks: digitnet against PyTorch (CPU), scikit-learn, plain NumPy and the seed's per-sample loop.

One command runs every framework on the same recipes, the same data and the
same initial weights (where the framework lets us set them), with the same
number of threads, and writes the results table into ``benchmarks/RESULTS.md``::

    python benchmarks/bench.py                 # the full run (several minutes)
    python benchmarks/bench.py --quick         # 1 repetition, 2 epochs each
    python benchmarks/bench.py --profile       # where a training step's time goes

How it measures
---------------
* Every (framework, recipe, repetition) runs in **its own subprocess**, so
  peak memory is separable and one framework's thread pools or allocator
  state cannot slow another.  Repetitions are interleaved: repetition 1 runs
  every framework once (round-robin), then repetition 2, ….
* Epoch time is wall time of one pass over the training set, **median over
  every epoch after the first** of every repetition (the first epoch pays
  for warming caches, thread pools and allocators); min–max are shown too.
* The first repetition trains for the recipe's full length and reports the
  test accuracy; later ones train ``--timing-epochs`` epochs, for timing.
* Threads: ``--threads`` (default: the number of cores) is set for every
  framework (``OMP_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``,
  ``MKL_NUM_THREADS`` before the import; ``torch.set_num_threads``).
* Memory: peak resident set size while training, counted above the
  process's size just before it loaded the training data (interpreter,
  NumPy, the framework and the test set already there): so it is the
  training data itself plus whatever training adds.
* Roofline (digitnet, batch 128): the same process times the step's matrix
  products alone, for the same shapes and threads, and reports how much of
  that GEMM FLOP rate a whole training epoch achieves.

PyTorch and scikit-learn are only needed here (``pip install -e .[bench]``);
a framework that is not installed is skipped and said so.  "plain" is a
textbook vectorised NumPy loop (``plain_numpy.py``) and "seed" the seed's
per-sample loop (``seed_network.py``), both re-implemented here as yardsticks.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "RESULTS.md"
FRAMEWORKS = ("digitnet", "plain", "torch", "sklearn", "seed")
MARK_BEGIN, MARK_END = "<!-- bench:{tag}:begin -->", "<!-- bench:{tag}:end -->"
PROFILE_BEGIN, PROFILE_END = "<!-- profile:begin -->", "<!-- profile:end -->"


@dataclass(frozen=True)
class Recipe:
    """One training recipe, expressed so that every framework can run it."""

    name: str
    sizes: tuple
    hidden: str              # hidden activation
    output: str              # output activation
    loss: str                # digitnet loss name
    init: str                # digitnet initialiser (the others get digitnet's initial weights)
    optimizer: str           # sgd | momentum | adam
    lr: float
    batch_size: int
    epochs: int              # the recipe's full length (accuracy run)
    frameworks: tuple        # which frameworks have this recipe

    @property
    def label(self) -> str:
        arch = ",".join(map(str, self.sizes))
        opt = {"sgd": "SGD", "momentum": "momentum 0.9", "adam": "Adam"}[self.optimizer]
        loss = {"quadratic": "quadratic", "cross_entropy": "softmax-CE"}[self.loss]
        return (f"[{arch}] {self.hidden}, {loss}, {opt}, η {self.lr:g}, batch {self.batch_size}, "
                f"{self.epochs} epochs")


RECIPES = {
    "nielsen": Recipe("nielsen", (784, 30, 10), "sigmoid", "sigmoid", "quadratic", "normal",
                      "sgd", 3.0, 10, 30, ("digitnet", "plain", "torch", "seed")),
    "adam256": Recipe("adam256", (784, 256, 10), "relu", "softmax", "cross_entropy", "he",
                      "adam", 1e-3, 128, 10, ("digitnet", "plain", "torch", "sklearn")),
    "momentum800": Recipe("momentum800", (784, 800, 10), "relu", "softmax", "cross_entropy", "he",
                          "momentum", 0.05, 128, 10, ("digitnet", "plain", "torch", "sklearn")),
}


# ----------------------------------------------------------------------------------------------
# memory and machine

def _status_kb(field: str) -> int:
    """A ``kB`` field of /proc/self/status (VmRSS, VmHWM), or 0 where there is none."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _reset_peak_rss() -> bool:
    """Reset VmHWM (the peak RSS) to the current RSS (Linux ≥ 4.0); False where not possible."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def machine_info() -> dict:
    cpu = platform.processor() or platform.machine()
    flags = set()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name") and cpu in ("", platform.machine()):
                    cpu = line.split(":", 1)[1].strip()
                elif line.startswith("flags") and not flags:
                    flags = set(line.split(":", 1)[1].split())
    except OSError:
        pass
    simd = [f for f in ("avx2", "fma", "avx512f", "avx512_bf16") if f in flags]
    return {"cpu": cpu, "cores": os.cpu_count(), "simd": simd, "python": platform.python_version(),
            "os": f"{platform.system()} {platform.release()}"}


def load_average() -> str:
    try:
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    except OSError:
        return "unknown"


def blas_info() -> str:
    """NumPy's BLAS and the kernel set it picked (threadpoolctl, where installed)."""
    try:
        import numpy  # noqa: F401  (loads the BLAS threadpoolctl inspects)
        import threadpoolctl

        infos = [i for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
        return ", ".join(f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')} kernels)"
                         for i in infos[:1]) or "unknown"
    except ImportError:
        return "unknown (threadpoolctl not installed)"


def framework_available(name: str) -> bool:
    module = {"torch": "torch", "sklearn": "sklearn"}.get(name)
    if module is None:
        return True
    import importlib.util

    return importlib.util.find_spec(module) is not None


# ----------------------------------------------------------------------------------------------
# the worker: one framework, one recipe, one repetition, in a fresh process

def _gemm_roofline(sizes, batch, dtype, reps=50):
    """Seconds per step of the step's matrix products alone, and the FLOPs they do.

    The products of one training step of an MLP with layer sizes ``sizes``
    on ``batch`` rows: ``a·Wᵀ`` per layer, ``δᵀ·a`` per layer and ``δ·W``
    for every layer but the first (whose input gradient is never needed).
    """
    import numpy as np

    rng = np.random.default_rng(0)
    shapes = list(zip(sizes[:-1], sizes[1:]))
    W = [rng.standard_normal((o, i)).astype(dtype) for i, o in shapes]
    a = [rng.standard_normal((batch, k)).astype(dtype) for k in sizes]
    z = [np.empty((batch, o), dtype) for _, o in shapes]
    d = [rng.standard_normal((batch, o)).astype(dtype) for _, o in shapes]
    gW = [np.empty_like(w) for w in W]
    d_a = [np.empty((batch, i), dtype) for i, _ in shapes]

    def step():
        for l in range(len(W)):
            np.matmul(a[l], W[l].T, out=z[l])
        for l in reversed(range(len(W))):
            np.matmul(d[l].T, a[l], out=gW[l])
            if l > 0:
                np.matmul(d[l], W[l], out=d_a[l])

    flops = sum(2 * batch * i * o * (3 if l > 0 else 2) for l, (i, o) in enumerate(shapes))
    for _ in range(5):
        step()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times), flops


def _epoch_flops(sizes, n):
    """FLOPs of the matrix products of one epoch over ``n`` samples (see :func:`_gemm_roofline`)."""
    shapes = list(zip(sizes[:-1], sizes[1:]))
    return sum(2 * n * i * o * (3 if l > 0 else 2) for l, (i, o) in enumerate(shapes))


def _median_seconds(fn, repeats=7):
    """Median wall time of ``repeats`` calls of ``fn()`` (prediction timings)."""
    times = []
    for _ in range(repeats):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def _run_digitnet(recipe, X, y, X_test, y_test, init_params, epochs, threads):
    import numpy as np

    from digitnet import Callback, Network

    net = Network(list(recipe.sizes), activation=recipe.hidden, output=recipe.output,
                  loss=recipe.loss, init=recipe.init, seed=0)
    net.params[...] = init_params

    class Clock(Callback):
        def __init__(self):
            self.cpu = []

        def on_epoch_begin(self, epoch, n_batches):
            self.started = time.process_time()

        def on_epoch_end(self, epoch, record):
            self.cpu.append(time.process_time() - self.started)

    clock = Clock()
    history = net.fit(X, y, epochs=epochs, batch_size=recipe.batch_size, optimizer=recipe.optimizer,
                      lr=recipe.lr, seed=0, callbacks=[clock])
    peak = _status_kb("VmHWM")
    accuracy = float(np.mean(net.predict(X_test) == y_test))
    predict = _median_seconds(lambda: net.predict(X_test))
    extra = {"dtype": net.dtype.name}
    if recipe.batch_size >= 64:
        seconds, flops = _gemm_roofline(recipe.sizes, recipe.batch_size, net.dtype)
        extra["gemm_gflops"] = flops / seconds / 1e9
    return history["seconds"], clock.cpu, accuracy, predict, peak, extra


def _run_torch(recipe, X, y, X_test, y_test, init_params, epochs, threads):
    import torch

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    acts = {"relu": torch.nn.ReLU, "sigmoid": torch.nn.Sigmoid}
    layers = []
    shapes = list(zip(recipe.sizes[:-1], recipe.sizes[1:]))
    offset = 0
    for l, (n_in, n_out) in enumerate(shapes):
        linear = torch.nn.Linear(n_in, n_out)
        with torch.no_grad():  # digitnet's initial weights: the same starting point
            linear.weight.copy_(torch.from_numpy(init_params[offset:offset + n_in * n_out].reshape(n_out, n_in)))
            offset += n_in * n_out
            linear.bias.copy_(torch.from_numpy(init_params[offset:offset + n_out]))
            offset += n_out
        layers.append(linear)
        if l < len(shapes) - 1:
            layers.append(acts[recipe.hidden]())
        elif recipe.output == "sigmoid":
            layers.append(torch.nn.Sigmoid())
        # a softmax output is folded into CrossEntropyLoss (log-softmax + NLL), as PyTorch users do
    model = torch.nn.Sequential(*layers)
    params = model.parameters()
    if recipe.optimizer == "adam":
        opt = torch.optim.Adam(params, lr=recipe.lr)
    else:
        opt = torch.optim.SGD(params, lr=recipe.lr, momentum=0.9 if recipe.optimizer == "momentum" else 0.0)
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y)
    if recipe.loss == "quadratic":
        Y_t = torch.nn.functional.one_hot(y_t, recipe.sizes[-1]).to(X_t.dtype)

        def loss_fn(out, rows):  # ½‖a − y‖², averaged over the batch
            return 0.5 * ((out - Y_t[rows]) ** 2).sum() / len(rows)
    else:
        ce = torch.nn.CrossEntropyLoss()

        def loss_fn(out, rows):
            return ce(out, y_t[rows])

    n, batch = len(X), recipe.batch_size
    generator = torch.Generator().manual_seed(0)
    seconds, cpu = [], []
    for _ in range(epochs):
        t, c = time.perf_counter(), time.process_time()
        order = torch.randperm(n, generator=generator)
        for start in range(0, n, batch):
            rows = order[start:start + batch]
            loss = loss_fn(model(X_t[rows]), rows)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        seconds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = _status_kb("VmHWM")
    X_test_t = torch.from_numpy(X_test)
    with torch.no_grad():
        accuracy = float((model(X_test_t).argmax(1).numpy() == y_test).mean())
        predict = _median_seconds(lambda: model(X_test_t).argmax(1))
    return seconds, cpu, accuracy, predict, peak, {"dtype": str(X_t.dtype).replace("torch.", "")}


def _run_sklearn(recipe, X, y, X_test, y_test, init_params, epochs, threads):
    import warnings

    import numpy as np
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier

    kwargs = dict(hidden_layer_sizes=tuple(recipe.sizes[1:-1]), activation=recipe.hidden, alpha=0.0,
                  batch_size=recipe.batch_size, learning_rate_init=recipe.lr, shuffle=True,
                  random_state=0)
    if recipe.optimizer == "adam":
        kwargs.update(solver="adam")
    else:
        kwargs.update(solver="sgd", momentum=0.9, nesterovs_momentum=False, learning_rate="constant")
    model = MLPClassifier(**kwargs)
    classes = np.arange(recipe.sizes[-1])
    seconds, cpu = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for _ in range(epochs):  # partial_fit: one pass over the data per call
            t, c = time.perf_counter(), time.process_time()
            model.partial_fit(X, y, classes=classes)
            seconds.append(time.perf_counter() - t)
            cpu.append(time.process_time() - c)
    peak = _status_kb("VmHWM")
    accuracy = float(np.mean(model.predict(X_test) == y_test))
    predict = _median_seconds(lambda: model.predict(X_test))
    return seconds, cpu, accuracy, predict, peak, {"dtype": model.coefs_[0].dtype.name}


def _run_seed(recipe, X, y, X_test, y_test, init_params, epochs, threads):
    import numpy as np

    sys.path.insert(0, str(HERE))
    from seed_network import SeedNetwork, as_pairs

    net = SeedNetwork(recipe.sizes)
    offset = 0
    for l, (n_in, n_out) in enumerate(zip(recipe.sizes[:-1], recipe.sizes[1:])):
        net.weights[l] = init_params[offset:offset + n_in * n_out].reshape(n_out, n_in).astype(np.float64)
        offset += n_in * n_out
        net.biases[l] = init_params[offset:offset + n_out].reshape(n_out, 1).astype(np.float64)
        offset += n_out
    pairs = as_pairs(X, y, recipe.sizes[-1])
    rng = np.random.default_rng(0)
    seconds, cpu = [], []
    for _ in range(epochs):
        t, c = time.perf_counter(), time.process_time()
        net.train_epoch(pairs, recipe.batch_size, recipe.lr, rng)
        seconds.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    peak = _status_kb("VmHWM")
    accuracy = net.accuracy(X_test, y_test)
    t0 = time.perf_counter()
    net.accuracy(X_test, y_test)
    return seconds, cpu, accuracy, time.perf_counter() - t0, peak, {"dtype": "float64"}


def _run_plain(recipe, X, y, X_test, y_test, init_params, epochs, threads):
    import numpy as np

    sys.path.insert(0, str(HERE))
    from plain_numpy import PlainMLP, train

    net = PlainMLP(recipe.sizes, recipe.hidden, recipe.output, init_params)
    seconds, cpu = train(net, X, y, recipe.sizes[-1], recipe.optimizer, recipe.lr, recipe.batch_size, epochs)
    peak = _status_kb("VmHWM")
    accuracy = float(np.mean(net.forward(X_test)[-1].argmax(axis=1) == y_test))
    predict = _median_seconds(lambda: net.forward(X_test)[-1].argmax(axis=1))
    return seconds, cpu, accuracy, predict, peak, {"dtype": str(X.dtype)}


RUNNERS = {"digitnet": _run_digitnet, "plain": _run_plain, "torch": _run_torch, "sklearn": _run_sklearn,
           "seed": _run_seed}


def worker(spec: dict) -> dict:
    """Run one (framework, recipe) in this process; ``spec`` names the data files."""
    framework, recipe = spec["framework"], RECIPES[spec["recipe"]]
    if framework == "torch":
        import torch  # noqa: F401  (imported before the baseline is taken)
    elif framework == "sklearn":
        import sklearn.neural_network  # noqa: F401
    import numpy as np

    if framework == "baseline":  # digitnet from another source tree (--baseline-src)
        sys.path.insert(0, spec["baseline_src"])
        framework = "digitnet"
    data = Path(spec["data_dir"])
    X_test, y_test = np.load(data / "X_test.npy"), np.load(data / "y_test.npy")
    init_params = np.load(data / f"init_{recipe.name}.npy")
    baseline = _status_kb("VmRSS")
    X, y = np.load(data / "X_train.npy"), np.load(data / "y_train.npy")
    after_data = _status_kb("VmRSS")
    peak_reset = _reset_peak_rss()
    seconds, cpu, accuracy, predict, peak, extra = RUNNERS[framework](
        recipe, X, y, X_test, y_test, init_params, spec["epochs"], spec["threads"])
    return {"framework": spec["framework"], "recipe": recipe.name, "epochs": spec["epochs"],
            "repetition": spec["repetition"], "seconds": seconds, "cpu_seconds": cpu,
            "accuracy": accuracy, "predict_seconds": predict,
            "rss_baseline_mb": baseline / 1024, "data_mb": (after_data - baseline) / 1024,
            "peak_mb": peak / 1024, "peak_above_baseline_mb": (peak - baseline) / 1024,
            "peak_measured_during_training": peak_reset, "n_train": len(X), **extra}


# ----------------------------------------------------------------------------------------------
# the parent: data, scheduling, the table

def prepare_data(directory: Path, train_size: int | None, test_size: int | None, recipes) -> dict:
    """Write the data and every recipe's initial weights as .npy files for the workers."""
    import numpy as np

    from digitnet import Network
    from digitnet.data import load

    ds = load("mnist")
    X, y, X_test, y_test = ds.X_train, ds.y_train, ds.X_test, ds.y_test
    if train_size:
        X, y = X[:train_size], y[:train_size]
    if test_size:
        X_test, y_test = X_test[:test_size], y_test[:test_size]
    for name, array in (("X_train", X), ("y_train", y), ("X_test", X_test), ("y_test", y_test)):
        np.save(directory / f"{name}.npy", np.ascontiguousarray(array))
    for recipe in recipes:
        net = Network(list(recipe.sizes), activation=recipe.hidden, output=recipe.output,
                      loss=recipe.loss, init=recipe.init, seed=0)
        np.save(directory / f"init_{recipe.name}.npy", net.params)
    return {"n_train": len(X), "n_test": len(X_test), "train_mb": X.nbytes / 1e6, "train_mib": X.nbytes / 2**20}


def thread_env(threads: int) -> dict:
    env = dict(os.environ)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env[var] = str(threads)
    src = HERE.parent / "src"  # the digitnet in this tree, installed or not
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(src), env.get("PYTHONPATH")]))
    return env


def run_worker(spec: dict, threads: int, timeout: float) -> dict:
    proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)],
                          env=thread_env(threads), capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["(no output)"]
        return {"framework": spec["framework"], "recipe": spec["recipe"], "error": tail[0]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def versions() -> dict:
    from importlib import metadata

    out = {}
    for dist in ("digitnet", "numpy", "torch", "scikit-learn"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return out


def summarise(results: list[dict], recipes, frameworks) -> list[dict]:
    """One row per (recipe, framework): median epoch over epochs after the first, etc."""
    rows = []
    for recipe in recipes:
        base = None
        for fw in frameworks:
            runs = [r for r in results if r["recipe"] == recipe.name and r["framework"] == fw]
            if not runs:
                continue
            errors = [r["error"] for r in runs if "error" in r]
            good = [r for r in runs if "error" not in r]
            if not good:
                rows.append({"recipe": recipe.name, "framework": fw, "error": errors[0]})
                continue
            epochs = [s for r in good for s in (r["seconds"][1:] or r["seconds"])]
            cpu = [s for r in good for s in (r["cpu_seconds"][1:] or r["cpu_seconds"])]
            accuracy_run = max(good, key=lambda r: r["epochs"])
            # every framework's accuracy after the same (smallest) number of epochs, to compare like with like
            short = min(r["epochs"] for r in good)
            row = {"recipe": recipe.name, "framework": fw, "median": statistics.median(epochs),
                   "min": min(epochs), "max": max(epochs), "n_epochs_timed": len(epochs),
                   "cpu_median": statistics.median(cpu),
                   "accuracy": accuracy_run["accuracy"], "accuracy_epochs": accuracy_run["epochs"],
                   "short_accuracy": statistics.median(r["accuracy"] for r in good if r["epochs"] == short),
                   "short_epochs": short,
                   "predict_ms": 1000 * statistics.median(r["predict_seconds"] for r in good),
                   "peak_above_baseline_mb": max(r["peak_above_baseline_mb"] for r in good),
                   "peak_mb": max(r["peak_mb"] for r in good),
                   "data_mb": good[0]["data_mb"], "dtype": good[0].get("dtype", "")}
            if "gemm_gflops" in good[0]:
                row["gemm_gflops"] = statistics.median(r["gemm_gflops"] for r in good)
                row["train_gflops"] = _epoch_flops(recipe.sizes, good[0]["n_train"]) / row["median"] / 1e9
            if fw == "digitnet":
                base = row["median"]
            row["ratio"] = row["median"] / base if base else None
            rows.append(row)
    return rows


def render(rows, recipes, info) -> str:
    lines = [MARK_BEGIN.format(tag=info["tag"]),
             f"_Written by `{info['command']}` on {info['date']}._", "",
             f"- Machine: {info['machine']['cpu']}, {info['machine']['cores']} cores "
             f"({', '.join(info['machine']['simd'])}), {info['machine']['os']}, Python {info['machine']['python']}",
             "- Libraries: " + ", ".join(f"{k} {v}" for k, v in info["versions"].items()),
             f"- NumPy's BLAS: {info['blas']}",
             f"- Threads: {info['threads']} for every framework; data: MNIST, {info['data']['n_train']:,} training "
             f"images ({info['data']['train_mb']:.0f} MB = {info['data']['train_mib']:.0f} MiB as float32), "
             f"{info['data']['n_test']:,} test images",
             f"- Load average (1, 5, 15 min): {info['load_before']} before, {info['load_after']} after; "
             f"{info['repeats']} interleaved repetition(s); wall time {info['wall_minutes']:.1f} min",
             "",
             "Epoch: median wall time of every epoch after the first (min–max); ratio: that median "
             "divided by digitnet's (above 1 = slower than digitnet); CPU: median process CPU time "
             "per epoch (all threads). Test accuracy: MNIST test set after the longest run; short "
             "runs: median over the repetitions with the fewest epochs, the same for every framework "
             "(the seed's loop only runs those). Predict: the whole test set, median of 7. Memory: "
             "peak RSS while training minus the RSS before the training data was loaded (so it "
             "includes the training data itself).",
             ""]
    for recipe in recipes:
        recipe_rows = [r for r in rows if r["recipe"] == recipe.name]
        if not recipe_rows:
            continue
        lines += [f"**{recipe.name}**: {recipe.label}", "",
                  "| framework | epoch (s) | min–max (s) | ratio | CPU s/epoch | test accuracy | "
                  "accuracy, short runs | predict (ms) | memory (MiB) | dtype |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
        for r in recipe_rows:
            name = {"seed": "seed's per-sample loop", "torch": "PyTorch", "sklearn": "scikit-learn",
                    "plain": "plain NumPy loop",
                    "baseline": f"digitnet baseline ({info.get('baseline', '')})"}.get(
                r["framework"], r["framework"])
            if "error" in r:
                lines.append(f"| {name} | failed: {r['error']} | | | | | | | | |")
                continue
            ratio = f"{r['ratio']:.2f}×" if r["ratio"] else "—"
            lines.append(
                f"| {name} | {r['median']:.3f} | {r['min']:.3f}–{r['max']:.3f} | {ratio} | {r['cpu_median']:.3f} "
                f"| {100 * r['accuracy']:.2f}% ({r['accuracy_epochs']} ep) "
                f"| {100 * r['short_accuracy']:.2f}% ({r['short_epochs']} ep) | {r['predict_ms']:.1f} "
                f"| {r['peak_above_baseline_mb']:.0f} | {r['dtype']} |")
        gemm = [r for r in recipe_rows if "gemm_gflops" in r]
        if gemm:
            r = gemm[0]
            lines += ["", f"Roofline: the step's matrix products alone run at {r['gemm_gflops']:.1f} GFLOP/s "
                          f"on these shapes; a whole digitnet epoch achieves {r['train_gflops']:.1f} GFLOP/s of "
                          f"matrix work, {100 * r['train_gflops'] / r['gemm_gflops']:.0f}% of that."]
        lines.append("")
    for note in info.get("notes", []):
        lines.append(f"- {note}")
    lines.append(MARK_END.format(tag=info["tag"]))
    return "\n".join(lines)


def write_section(path: Path, begin: str, end: str, body: str) -> None:
    """Replace the text between ``begin`` and ``end`` in ``path`` (append it if absent)."""
    text = path.read_text() if path.exists() else ""
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + body + rest.split(end, 1)[1]
    else:
        text = (text.rstrip() + "\n\n" if text.strip() else "") + body + "\n"
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def run_best(threads: int, timeout: float) -> dict:
    """Time ``digitnet train --preset best`` end to end (data loading included)."""
    with tempfile.TemporaryDirectory() as tmp:
        cmd = [sys.executable, "-m", "digitnet", "train", "--preset", "best", "--out", str(Path(tmp) / "best.npz"),
               "--no-checkpoint"]
        t = time.perf_counter()
        proc = subprocess.run(cmd, env=thread_env(threads), capture_output=True, text=True, timeout=timeout)
        wall = time.perf_counter() - t
        out = {"wall_seconds": wall, "returncode": proc.returncode, "tail": (proc.stdout + proc.stderr).strip()[-600:]}
        if proc.returncode == 0:
            code = ("import sys, time, statistics, numpy as np; from digitnet import load_model; "
                    "from digitnet.data import load; ds = load('mnist'); net = load_model(sys.argv[1]); "
                    "acc = float(np.mean(net.predict(ds.X_test) == ds.y_test)); times = []\n"
                    "for _ in range(7):\n"
                    "    t = time.perf_counter(); net.predict(ds.X_test); times.append(time.perf_counter() - t)\n"
                    "print(acc, statistics.median(times))")
            acc = subprocess.run([sys.executable, "-c", code, str(Path(tmp) / "best.npz")], env=thread_env(threads),
                                 capture_output=True, text=True, timeout=timeout)
            if acc.returncode == 0:
                accuracy, predict = acc.stdout.strip().splitlines()[-1].split()
                out["accuracy"], out["predict_ms"] = float(accuracy), 1000 * float(predict)
        return out


def run_pairs(args, recipes) -> int:
    """Paired runs: the baseline engine and the current one back to back, N times per recipe.

    Each run trains 2 epochs in its own subprocess and the second epoch is
    timed; the order within a pair alternates.  The median of the per-pair
    ratios (baseline ÷ current; above 1 = the current engine is faster) is
    robust to the machine's load drifting between pairs.
    """
    started, load_before = time.perf_counter(), load_average()
    lines = []
    with tempfile.TemporaryDirectory(prefix="digitnet-pairs-") as tmp:
        prepare_data(Path(tmp), args.train_size, args.test_size, recipes)
        for recipe in recipes:
            ratios = []
            for i in range(args.pairs):
                seconds = {}
                for fw in (("baseline", "digitnet") if i % 2 == 0 else ("digitnet", "baseline")):
                    spec = {"framework": fw, "recipe": recipe.name, "epochs": 2, "repetition": i,
                            "threads": args.threads, "data_dir": tmp,
                            "baseline_src": str(args.baseline_src.resolve())}
                    result = run_worker(spec, args.threads, args.timeout)
                    if "error" in result:
                        print(f"{recipe.name} {fw}: failed: {result['error']}")
                        return 1
                    seconds[fw] = result["seconds"][-1]
                ratios.append(seconds["baseline"] / seconds["digitnet"])
                print(f"{recipe.name:12s} pair {i + 1}/{args.pairs}: baseline {seconds['baseline']:.3f} s, "
                      f"current {seconds['digitnet']:.3f} s, ratio {ratios[-1]:.2f}", flush=True)
            lines.append(f"| `{recipe.name}` | **{statistics.median(ratios):.2f}×** "
                         f"({min(ratios):.2f}–{max(ratios):.2f}) |")
    tag = f"pairs-{args.threads}"
    body = "\n".join([
        MARK_BEGIN.format(tag=tag),
        f"_Written by `python benchmarks/bench.py {' '.join(sys.argv[1:])}` on "
        f"{datetime.date.today().isoformat()}; {args.threads} thread(s), {args.pairs} pairs per recipe; "
        f"baseline: `{args.baseline_src.resolve().name}`; load average {load_before} before, "
        f"{load_average()} after; {(time.perf_counter() - started) / 60:.1f} min._", "",
        "| recipe | baseline ÷ current, median (range) |", "|---|---:|", *lines,
        MARK_END.format(tag=tag)])
    write_section(args.output, MARK_BEGIN.format(tag=tag), MARK_END.format(tag=tag), body)
    print(f"wrote {args.output}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 repetition, 2 epochs per run")
    parser.add_argument("--repeats", type=int, default=None, help="interleaved repetitions (default 3)")
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--recipes", default=",".join(RECIPES), help=f"comma-separated: {', '.join(RECIPES)}")
    parser.add_argument("--frameworks", default=",".join(FRAMEWORKS),
                        help=f"comma-separated: {', '.join(FRAMEWORKS)}")
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of every run (default: the recipe's in the first repetition, "
                             "--timing-epochs in the others)")
    parser.add_argument("--timing-epochs", type=int, default=3)
    parser.add_argument("--seed-epochs", type=int, default=3,
                        help="epochs of the seed's per-sample loop in the first repetition too "
                             "(it takes ~100× longer per epoch than the others)")
    parser.add_argument("--train-size", type=int, default=None, help="use the first N training images")
    parser.add_argument("--test-size", type=int, default=None, help="use the first N test images")
    parser.add_argument("--best", action="store_true", help="also time `digitnet train --preset best`")
    parser.add_argument("--profile", action="store_true",
                        help="profile digitnet's training step instead (see benchmarks/profile_step.py)")
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker")
    parser.add_argument("--output", type=Path, default=DEFAULT_OUTPUT)
    parser.add_argument("--tag", default="main",
                        help="which results section of --output to (re)write; other sections are kept")
    parser.add_argument("--json", type=Path, default=None, help="also write every run's raw numbers here")
    parser.add_argument("--baseline-src", type=Path, default=None,
                        help="also run the digitnet found in this folder (e.g. an older checkout's src/), "
                             "as the framework 'baseline'")
    parser.add_argument("--pairs", type=int, default=None, metavar="N",
                        help="with --baseline-src: instead of the tables, N paired runs (baseline and "
                             "current back to back, 2 epochs each, the second timed) per recipe, "
                             "reported as the median of the per-pair ratios")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.profile:
        for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(args.threads)  # before NumPy is imported
        sys.path.insert(0, str(HERE))
        from profile_step import main as profile_main

        return profile_main(args)

    recipes = [RECIPES[name] for name in args.recipes.split(",") if name]
    if args.pairs:
        if not args.baseline_src:
            parser.error("--pairs compares with --baseline-src DIR")
        return run_pairs(args, recipes)
    wanted = [fw for fw in args.frameworks.split(",") if fw]
    unknown = set(wanted) - set(FRAMEWORKS)
    if unknown:
        parser.error(f"unknown framework(s) {sorted(unknown)}: choose from {', '.join(FRAMEWORKS)}")
    notes = []
    frameworks = []
    if args.baseline_src:
        wanted.insert(1, "baseline")
        for recipe in list(recipes):
            recipes[recipes.index(recipe)] = replace(recipe, frameworks=recipe.frameworks + ("baseline",))
    for fw in wanted:
        if framework_available(fw):
            frameworks.append(fw)
        else:
            notes.append(f"{fw}: not installed, skipped (`pip install -e .[bench]`)")
    repeats = args.repeats or (1 if args.quick else 3)
    started, load_before = time.perf_counter(), load_average()
    results = []
    with tempfile.TemporaryDirectory(prefix="digitnet-bench-") as tmp:
        data = prepare_data(Path(tmp), args.train_size, args.test_size, recipes)
        for rep in range(repeats):
            # Rotate the order each repetition, so no framework always runs first.
            order = frameworks[rep % len(frameworks):] + frameworks[:rep % len(frameworks)]
            for recipe in recipes:
                for fw in order:
                    if fw not in recipe.frameworks:
                        continue
                    if args.epochs:
                        epochs = args.epochs
                    elif args.quick:
                        epochs = 2
                    elif fw == "seed":
                        epochs = min(args.seed_epochs, recipe.epochs if rep == 0 else args.timing_epochs)
                    else:
                        epochs = recipe.epochs if rep == 0 else args.timing_epochs
                    spec = {"framework": fw, "recipe": recipe.name, "epochs": epochs, "repetition": rep,
                            "threads": args.threads, "data_dir": tmp,
                            "baseline_src": str(args.baseline_src.resolve()) if args.baseline_src else None}
                    print(f"[{rep + 1}/{repeats}] {recipe.name:12s} {fw:9s} {epochs:3d} epochs … ",
                          end="", flush=True)
                    result = run_worker(spec, args.threads, args.timeout)
                    results.append(result)
                    if "error" in result:
                        print(f"failed: {result['error']}")
                    else:
                        print(f"median epoch {statistics.median(result['seconds'][1:] or result['seconds']):.3f} s, "
                              f"accuracy {100 * result['accuracy']:.2f}%")
    best = None
    if args.best:
        print("best preset: digitnet train --preset best … ", end="", flush=True)
        best = run_best(args.threads, args.timeout)
        print(best.get("wall_seconds"), best.get("accuracy"))
        if best["returncode"] == 0:
            notes.append(f"`digitnet train --preset best` (data loading, training, saving; threads: {args.threads}): "
                         f"{best['wall_seconds']:.1f} s wall, test accuracy "
                         f"{100 * best.get('accuracy', float('nan')):.2f}%; the saved model predicts the "
                         f"10,000 test images in {best.get('predict_ms', float('nan')):.1f} ms (median of 7)")
        else:
            notes.append(f"`digitnet train --preset best` failed: {best['tail'].splitlines()[-1:]}")
    rows = summarise(results, recipes, frameworks)
    info = {"command": "python benchmarks/bench.py " + " ".join(argv if argv is not None else sys.argv[1:]),
            "date": datetime.date.today().isoformat(), "machine": machine_info(), "versions": versions(),
            "blas": blas_info(), "threads": args.threads, "data": data, "repeats": repeats,
            "load_before": load_before, "load_after": load_average(),
            "wall_minutes": (time.perf_counter() - started) / 60, "notes": notes,
            "baseline": args.baseline_src.resolve().name if args.baseline_src else None, "tag": args.tag}
    write_section(args.output, MARK_BEGIN.format(tag=args.tag), MARK_END.format(tag=args.tag),
                  render(rows, recipes, info))
    if args.json:
        args.json.write_text(json.dumps({"info": info, "rows": rows, "runs": results, "best": best}, indent=1))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
