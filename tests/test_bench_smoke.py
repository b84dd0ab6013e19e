"""A short run of the benchmark, so that it cannot rot: tiny data, one repetition, no timing asserted.

PyTorch and scikit-learn take part only where they are installed (the
``bench`` extra); the benchmark then says it skipped them.
"""

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "benchmarks" / "bench.py"

sys.path.insert(0, str(ROOT / "benchmarks"))
from seed_network import SeedNetwork, as_pairs  # noqa: E402


def _installed(module):
    return importlib.util.find_spec(module) is not None


@pytest.mark.slow
def test_quick_benchmark_writes_a_results_table(tmp_path):
    output, raw = tmp_path / "RESULTS.md", tmp_path / "runs.json"
    output.write_text("# Results\n\nHand-written notes stay.\n")
    cmd = [sys.executable, str(BENCH), "--quick", "--epochs", "2", "--train-size", "600", "--test-size", "200",
           "--threads", "1", "--output", str(output), "--json", str(raw)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]

    text = output.read_text()
    assert text.startswith("# Results\n\nHand-written notes stay.")  # only the marked section is rewritten
    assert text.count("<!-- bench:main:begin -->") == 1 and text.count("<!-- bench:main:end -->") == 1
    for recipe in ("nielsen", "adam256", "momentum800"):
        assert f"**{recipe}**" in text
    assert "Roofline:" in text

    runs = json.loads(raw.read_text())["runs"]
    expected = {("nielsen", "digitnet"), ("nielsen", "seed"), ("adam256", "digitnet"), ("momentum800", "digitnet")}
    expected |= {(r, "plain") for r in ("nielsen", "adam256", "momentum800")}
    if _installed("torch"):
        expected |= {(r, "torch") for r in ("nielsen", "adam256", "momentum800")}
    else:
        assert "torch: not installed, skipped" in text
    if _installed("sklearn"):
        expected |= {("adam256", "sklearn"), ("momentum800", "sklearn")}
    assert {(r["recipe"], r["framework"]) for r in runs} == expected
    for run in runs:
        assert "error" not in run, run
        assert len(run["seconds"]) == 2 and all(s > 0 for s in run["seconds"])
        assert 0.0 <= run["accuracy"] <= 1.0
        assert run["n_train"] == 600
        # a run that learned nothing would sit at chance (10%) on 200 test digits
        assert run["accuracy"] > 0.2, run
    digitnet = {r["recipe"]: r for r in runs if r["framework"] == "digitnet"}
    assert digitnet["adam256"]["gemm_gflops"] > 0


def test_the_seed_loop_matches_digitnet_on_one_mini_batch():
    """The per-sample reference and digitnet's batch step agree on one SGD step (same weights, data)."""
    from digitnet import Network

    rng = np.random.default_rng(0)
    X, y = rng.random((10, 6)), rng.integers(0, 3, 10)
    net = Network([6, 4, 3], activation="sigmoid", output="sigmoid", loss="quadratic", init="normal",
                  dtype=np.float64, seed=1)
    seed = SeedNetwork([6, 4, 3])
    seed.weights = [W.copy() for W in net.weights]
    seed.biases = [b.reshape(-1, 1).copy() for b in net.biases]
    seed.update_mini_batch(as_pairs(X, y, 3), eta=3.0)
    net.fit(X, y, epochs=1, batch_size=10, optimizer="sgd", lr=3.0, shuffle=False)
    for W, b, W_seed, b_seed in zip(net.weights, net.biases, seed.weights, seed.biases):
        np.testing.assert_allclose(W, W_seed, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, b_seed[:, 0], rtol=1e-10, atol=1e-12)


@pytest.mark.slow
def test_paired_runs_write_their_table(tmp_path):
    """``--pairs`` (old engine against new, back to back) on tiny data: this tree against itself."""
    output = tmp_path / "RESULTS.md"
    cmd = [sys.executable, str(BENCH), "--pairs", "2", "--recipes", "nielsen", "--train-size", "600",
           "--test-size", "200", "--threads", "1", "--baseline-src", str(ROOT / "src"),
           "--output", str(output)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = output.read_text()
    assert "<!-- bench:pairs-1:begin -->" in text and "<!-- bench:pairs-1:end -->" in text
    row = next(line for line in text.splitlines() if line.startswith("| `nielsen` |"))
    assert re.search(r"\*\*\d+\.\d\d×\*\* \(\d+\.\d\d–\d+\.\d\d\)", row), row
    assert proc.stdout.count("pair ") == 2


@pytest.mark.parametrize("hidden, output, loss", [("sigmoid", "sigmoid", "quadratic"),
                                                  ("relu", "softmax", "cross_entropy")])
def test_the_plain_numpy_yardstick_computes_digitnets_gradients(hidden, output, loss):
    """The benchmark's plain loop must do the same arithmetic, or its timing compares nothing."""
    from plain_numpy import PlainMLP

    from digitnet import Network

    rng = np.random.default_rng(2)
    X, y = rng.random((8, 6)), rng.integers(0, 3, 8)
    net = Network([6, 5, 3], activation=hidden, output=output, loss=loss, dtype=np.float64, seed=4)
    plain = PlainMLP([6, 5, 3], hidden, output, net.params)
    loss_value, grads = net.backward(X, y)
    plain_loss, plain_grads = plain.gradients(X, np.eye(3)[y])
    assert plain_loss == pytest.approx(loss_value, rel=1e-12)
    for (dW, db), (pW, pb) in zip(grads, plain_grads):
        np.testing.assert_allclose(pW, dW, rtol=1e-10, atol=1e-14)
        np.testing.assert_allclose(pb, db, rtol=1e-10, atol=1e-14)


def test_the_ablation_twins_share_their_start(tmp_path):
    """A run resumed from its own saved state with nothing changed ends where the run did;
    with the fade it does not: what `record_ablation.py` measures in pairs is the ingredient."""
    results = tmp_path / "r.jsonl"
    common = ["--layers", "784,8,10", "--epochs", "2", "--subset", "1000", "--batch", "50",
              "--eval-every", "1", "--label-smoothing", "0.1", "--ema", "0.99", "--swa", "2",
              "--results", str(results)]
    script = [sys.executable, str(ROOT / "benchmarks" / "record_ablation.py")]
    for extra in (["--tag", "whole", "--save-at", "1", "--save", str(tmp_path / "a.npz")],
                  ["--tag", "twin", "--resume", str(tmp_path / "a.npz")],
                  ["--tag", "faded twin", "--resume", str(tmp_path / "a.npz"), "--fade", "1"]):
        subprocess.run(script + common + extra, check=True, capture_output=True, timeout=300)
    whole, twin, faded = (json.loads(line) for line in results.read_text().splitlines())
    assert twin["test_accuracy"] == whole["test_accuracy"] and twin["curve"]["2"] == whole["curve"]["2"]
    assert "ema_test_accuracy" in whole and "swa_test_accuracy" in whole
    assert faded["test_accuracy"] != whole["test_accuracy"]
    assert 0.5 < whole["test_accuracy"] < 1
