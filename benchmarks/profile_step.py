"""Where a training step's microseconds go: ``python benchmarks/bench.py --profile``.

The step of :func:`digitnet.train.fit` is re-enacted operation by
operation, exactly as ``Network.update_mini_batch`` and ``Network.backprop`` do it, with a
clock read between stages.  Every stage's time is taken per step and the
**median over the steps** is reported, so a step that the operating system
interrupted does not count (the machine is shared); the two stages that
happen once per many steps (the gather, one ``np.take`` per ~1,000 rows, and
the epoch's loss and accuracy) are spread evenly over the steps instead.
The same recipe is then run through the real ``fit`` for 3 epochs (before
and after the re-enactment), and its fastest epoch after the first, divided
by the steps, is the *real step*; what it spends beyond the sum of the
stages is shown as *Python*: the loop, the calls and attribute look-ups
around the stages (plus, on a busy machine, whatever the other processes
cost it in between; it is an estimate).

Stages: *gather* (the batch's rows of X, the slice of the epoch's targets),
*GEMM forward* (``a·Wᵀ``), *bias*, *activation forward*, *loss delta*
(``δ_L``, scaled by the optimiser's factor), *GEMM dW* (``δᵀ·a``), *bias
gradient*, *GEMM d_a* (``δ·W``), *activation backward*, *optimizer*,
*bookkeeping* (storing z_L, the periodic inf/NaN look), *epoch loss &
accuracy* (from the stored outputs, once per epoch), *Python* (the loop and
calls around them).
"""

from __future__ import annotations

import time

import numpy as np

STAGES = ("gather", "GEMM forward", "bias", "activation forward", "loss delta",
          "GEMM dW", "bias gradient", "GEMM d_a", "activation backward", "optimizer",
          "bookkeeping", "epoch loss & accuracy", "Python")
_AMORTISED = ("gather", "epoch loss & accuracy")


def _network_and_optimizer(recipe, seed=0):
    from digitnet import Network
    from digitnet.nn.optimizers import get_optimizer

    net = Network(list(recipe.sizes), activation=recipe.hidden, output=recipe.output, loss=recipe.loss,
                  init=recipe.init, seed=seed)
    return net, get_optimizer(recipe.optimizer, recipe.lr)


def profile_recipe(recipe, X, y, steps: int) -> dict:
    """µs per stage of one training step (medians; amortised stages: means), and the real ``fit``'s step."""
    from digitnet.train.batches import _GATHER_ROWS, epoch_order
    from digitnet.train.loop import _CHECK_ROWS, _all_finite

    batch = recipe.batch_size
    X = np.ascontiguousarray(X[:steps * batch], dtype=np.float32)
    y = y[:steps * batch]

    # -- the real thing: fit's whole epoch, divided by its steps ---------------------------
    def real_step():
        net, opt = _network_and_optimizer(recipe)
        history = net.fit(X, y, epochs=3, batch_size=batch, optimizer=opt, seed=0)
        # the fastest epoch after the first: the one other processes disturbed least
        return min(r["seconds"] for r in history.records[1:]) / steps * 1e6

    real_before = real_step()

    # -- the re-enactment -----------------------------------------------------------------
    net, opt = _network_and_optimizer(recipe)
    Xc = net.check_inputs(X)
    Y, labels = net.check_targets(y, len(Xc))
    n = len(Xc)
    buffers = net._work_arrays(batch)
    order = epoch_order(0, 0, n)
    Y_epoch, labels_epoch = Y[order], labels[order]
    rows_per_gather = max(1, _GATHER_ROWS // batch) * batch
    gathered = np.empty((min(rows_per_gather, n), Xc.shape[1]), Xc.dtype)
    outputs = np.empty((n, net.sizes[-1]), net.dtype, order="F")
    check_every = max(1, _CHECK_ROWS // batch)
    last = net.n_layers - 1
    times = {stage: np.zeros(steps) for stage in STAGES}
    clock = time.perf_counter
    scale = opt.gradient_scale()
    checked = 0
    for b in range(steps):
        t0 = clock()
        start, stop = b * batch, (b + 1) * batch
        offset = start % rows_per_gather
        if offset == 0:
            rows = order[start:start + rows_per_gather]
            np.take(Xc, rows, axis=0, out=gathered[:len(rows)], mode="clip")
        X_b = gathered[offset:offset + batch]
        Y_b = Y_epoch[start:stop]
        t1 = clock()
        times["gather"][b] = t1 - t0
        # forward (Network._forward)
        a, acts = X_b, [X_b]
        for l, (W, bias, f) in enumerate(zip(net.weights, net.biases, net.activations)):
            t = clock()
            z = np.matmul(a, W.T, out=buffers.z[l])
            t2 = clock()
            z += bias
            t3 = clock()
            a = f.forward(z, out=buffers.a[l])
            t4 = clock()
            acts.append(a)
            times["GEMM forward"][b] += t2 - t
            times["bias"][b] += t3 - t2
            times["activation forward"][b] += t4 - t3
        t = clock()
        delta = net.loss.scaled_delta(net.activations[-1], acts[-1], Y_b, scale, buffers.delta_out)
        t2 = clock()
        times["loss delta"][b] = t2 - t
        for l in range(last, -1, -1):
            a_prev = acts[l]
            t = clock()
            np.matmul(delta.T, a_prev, out=net.grad_weights[l])
            t2 = clock()
            np.matmul(buffers.ones, delta, out=net.grad_biases[l])
            t3 = clock()
            times["GEMM dW"][b] += t2 - t
            times["bias gradient"][b] += t3 - t2
            if l > 0:
                f = net.activations[l - 1]
                d_a = np.matmul(delta, net.weights[l], out=buffers.d_a[l - 1])
                t4 = clock()
                delta = f.backward(a_prev, d_a, out=d_a)
                t5 = clock()
                times["GEMM d_a"][b] += t4 - t3
                times["activation backward"][b] += t5 - t4
        t = clock()
        outputs[start:stop] = z
        if (b + 1) % check_every == 0:
            if not _all_finite(outputs[checked:stop]):
                raise RuntimeError("diverged")
            checked = stop
        t2 = clock()
        opt.update_scaled(net.params, net.grads)
        t3 = clock()
        times["bookkeeping"][b] = t2 - t
        times["optimizer"][b] = t3 - t2
    # Once per epoch, spread over its steps: the loss and accuracy from the stored outputs.
    t = clock()
    a_all = net.activations[-1].forward(outputs[:steps * batch])
    net.loss_of_outputs(a_all, np.asfortranarray(Y_epoch[:steps * batch]), outputs[:steps * batch])
    int(np.count_nonzero(net.labels_from_outputs(a_all) == labels_epoch[:steps * batch]))
    times["epoch loss & accuracy"][:] = (clock() - t) / steps
    # The real step is timed before and after the re-enactment and the
    # smaller taken: other processes come and go on a shared machine.
    real = min(real_before, real_step())
    # Medians, except where the work happens once per many steps (the gather
    # of ~1,000 rows, the epoch's loss): those are spread evenly (means).
    medians = {stage: float(np.mean(v) if stage in _AMORTISED else np.median(v)) * 1e6
               for stage, v in times.items() if stage != "Python"}
    # What the real step spends beyond the stages: the loop, calls, attribute look-ups.
    medians["Python"] = max(real - sum(medians.values()), 0.0)
    gemm = medians["GEMM forward"] + medians["GEMM dW"] + medians["GEMM d_a"]
    return {"stages": medians, "real_step_us": real, "gemm_us": gemm}


def render(results: dict, info: dict) -> str:
    names = list(results)
    lines = ["<!-- profile:begin -->",
             f"_Written by `python benchmarks/bench.py --profile` on {info['date']}; {info['threads']} thread(s); "
             f"load average {info['load']}._", "",
             "µs per training step, stage by stage (medians over the steps of one epoch slice; "
             "gather and epoch loss spread evenly), and the real `fit`'s step (its fastest epoch ÷ steps):", "",
             "| stage | " + " | ".join(f"{n} (batch {results[n]['batch']})" for n in names) + " |",
             "|---|" + "---:|" * len(names)]
    for stage in STAGES:
        lines.append(f"| {stage} | " + " | ".join(f"{results[n]['stages'][stage]:.1f}" for n in names) + " |")
    lines.append("| **real step (fit)** | " + " | ".join(f"**{results[n]['real_step_us']:.1f}**"
                                                                 for n in names) + " |")
    lines.append("| GEMM share | " + " | ".join(f"{100 * results[n]['gemm_us'] / results[n]['real_step_us']:.0f}%"
                                                for n in names) + " |")
    lines.append("<!-- profile:end -->")
    return "\n".join(lines)


def main(args) -> int:
    import datetime
    import os
    from pathlib import Path

    from bench import PROFILE_BEGIN, PROFILE_END, RECIPES, load_average, write_section

    from digitnet.data import load

    ds = load("mnist")
    results = {}
    for name in (args.recipes.split(",") if args.recipes else RECIPES):
        recipe = RECIPES[name]
        steps = 6000 if recipe.batch_size <= 16 else 400
        if args.quick:
            steps = min(steps, 200)
        if args.train_size:
            steps = min(steps, max(args.train_size // recipe.batch_size, 2))
        print(f"profiling {name} ({steps} steps of batch {recipe.batch_size}) …", flush=True)
        result = profile_recipe(recipe, ds.X_train, ds.y_train, steps)
        result["batch"] = recipe.batch_size
        results[name] = result
        print("  " + ", ".join(f"{k} {v:.1f}" for k, v in result["stages"].items()),
              f"| real step {result['real_step_us']:.1f} µs")
    info = {"date": datetime.date.today().isoformat(), "load": load_average(),
            "threads": os.environ.get("OPENBLAS_NUM_THREADS", "default")}
    write_section(Path(args.output), PROFILE_BEGIN, PROFILE_END, render(results, info))
    print(f"wrote {args.output}")
    return 0
