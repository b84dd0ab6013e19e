"""Sweeps: the local process pool and real Ray on small grids over an MNIST subset.

Every trial trains Nielsen's recipe for one or two epochs on the first 1,000
training images (a fraction of a second each).  The pool's and Ray's runs use
one BLAS thread per trial, so they train bit for bit the same networks.
"""

from __future__ import annotations

import csv
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest

from digitnet.errors import DigitnetError
from digitnet.files.modelfile import load_model
from digitnet.train.sweep import COLUMNS, SweepProgress, load_results, plan_trials, sweep

GRID = {"lr": [0.5, 3.0], "layers": ["784-30-10", "784-16-10"]}
SMALL = dict(epochs=2, subset=1000, threads=1)
_THREADS = {"OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}


class Recorder(SweepProgress):
    def __init__(self):
        self.started, self.finished = [], []

    def on_start(self, result, todo):
        self.started.append((result.reused, todo))

    def on_trial(self, row, result):
        self.finished.append(row["trial"])


@pytest.fixture(scope="module")
def grid_sweep(tmp_path_factory):
    """2 rates × 2 networks, seed 0, in a pool of two worker processes."""
    out = tmp_path_factory.mktemp("sweep") / "grid"
    recorder = Recorder()
    result = sweep("nielsen", GRID, out=out, parallel=2, progress=recorder, **SMALL)
    return result, recorder


# -- the local pool ------------------------------------------------------------------------------

def test_the_table_has_every_trial_in_the_plans_order(grid_sweep):
    result, recorder = grid_sweep
    assert result.fields == ["lr", "layers"] and result.total == len(result) == 4
    assert [(r["trial"], r["lr"], r["layers"], r["seed"]) for r in result] == [
        (1, 0.5, "784-30-10", 0), (2, 0.5, "784-16-10", 0),
        (3, 3.0, "784-30-10", 0), (4, 3.0, "784-16-10", 0)]
    assert sorted(recorder.finished) == [1, 2, 3, 4] and recorder.started == [(0, 4)]
    for row in result:
        assert row["status"] == "ok" and row["error"] is None
        assert 0.1 < row["val_accuracy"] < 1 and 0.1 < row["test_accuracy"] < 1
        assert row["epochs_done"] == 2 and len(row["history"]) == 2
        assert row["train_loss"] == row["history"][-1]["loss"]
        assert row["seconds"] > 0 and row["wall_seconds"] >= row["seconds"]
        assert (result.out / row["model"]).is_file()
    # Nielsen's rate beats a sixth of it after two short epochs.
    assert min(result["val_accuracy"][2:]) > max(result["val_accuracy"][:2])


def test_each_model_is_the_trained_recipe(grid_sweep):
    result, _ = grid_sweep
    row = result[3]
    net = load_model(result.out / row["model"])
    recipe = net.metadata["recipe"]
    assert net.sizes == [784, 16, 10]
    assert (recipe["name"], recipe["lr"], recipe["seed"], recipe["subset"], recipe["epochs"]) == \
        ("nielsen", 3.0, 0, 1000, 2)
    assert recipe["overrides"] == {"lr": 3.0, "sizes": [784, 16, 10]}
    assert net.metadata["evaluation"]["test_accuracy"] == row["test_accuracy"]
    from digitnet.data import load

    mnist = load("mnist")
    assert net.evaluate(mnist.X_test, mnist.y_test)[1] == pytest.approx(row["test_accuracy"], abs=2e-4)


def test_results_files_and_the_best_model(grid_sweep):
    result, _ = grid_sweep
    with open(result.out / "results.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["trial", "lr", "layers", *COLUMNS]
    assert [(r["lr"], r["layers"], r["status"]) for r in table] == \
        [("0.5", "784-30-10", "ok"), ("0.5", "784-16-10", "ok"), ("3.0", "784-30-10", "ok"),
         ("3.0", "784-16-10", "ok")]
    assert [float(r["val_accuracy"]) for r in table] == result["val_accuracy"]
    data = json.loads((result.out / "results.json").read_text())
    assert data["kind"] == "digitnet sweep" and data["ranked_by"] == "val_accuracy"
    assert data["plan"]["grid"] == {"lr": [0.5, 3.0], "layers": ["784-30-10", "784-16-10"]}
    assert [t["key"] for t in data["trials"]] == result["key"]

    best = result.best
    assert best["val_accuracy"] == max(result["val_accuracy"])
    assert data["best"]["trial"] == best["trial"]
    assert (result.out / "best.npz").read_bytes() == (result.out / best["model"]).read_bytes()
    assert len(set(result["key"])) == 4


def test_the_same_command_again_skips_finished_trials(grid_sweep, tmp_path):
    result, _ = grid_sweep
    out = tmp_path / "again"
    shutil.copytree(result.out, out)
    stamps = {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()}
    recorder = Recorder()
    again = sweep("nielsen", GRID, out=out, parallel=2, progress=recorder, **SMALL)
    assert recorder.started == [(4, 0)] and recorder.finished == []
    assert again.reused == 4 and again["val_accuracy"] == result["val_accuracy"]
    assert {p.name: p.stat().st_mtime_ns for p in (out / "models").iterdir()} == stamps

    # One more rate, and a model file gone: only those trials train.
    (out / result[0]["model"]).unlink()
    recorder = Recorder()
    more = sweep("nielsen", {**GRID, "lr": [0.5, 3.0, 1.0]}, out=out, parallel=1,
                 progress=recorder, **SMALL)
    assert recorder.started == [(3, 3)]
    assert sorted(recorder.finished) == [1, 5, 6]
    assert more["lr"] == [0.5, 0.5, 3.0, 3.0, 1.0, 1.0] and more.count("ok") == 6
    assert more[0]["val_accuracy"] == result[0]["val_accuracy"]    # retrained: the same result
    assert len(load_results(out)["trials"]) == 6


def test_a_diverging_trial_is_recorded_not_fatal(tmp_path):
    # A linear network trained by full-batch descent at rate 1 grows ×100s an epoch until inf.
    grid = {"activation": "identity", "output": "identity", "init": "normal_scaled",
            "batch_size": "full", "lr": [0.001, 1.0]}
    result = sweep("nielsen", grid, epochs=6, subset=1000, threads=1, parallel=1, out=tmp_path)
    ok, diverged = result
    assert ok["status"] == "ok" and ok["epochs_done"] == 6
    assert diverged["status"] == "diverged" and diverged["model"] is None
    assert diverged["test_accuracy"] is None and diverged["val_accuracy"] is None
    assert 1 <= diverged["last_good_epoch"] < 6
    assert diverged["epochs_done"] == diverged["last_good_epoch"] == len(diverged["history"])
    assert f"epoch {diverged['last_good_epoch'] + 1}" in diverged["error"]
    assert result.best["trial"] == 1 and result.varied == ["lr"]
    # The results file is strict JSON even though the diverging epochs' losses were infinite.
    json.loads((tmp_path / "results.json").read_text(), parse_constant=lambda c: pytest.fail(c))
    # A diverged trial counts as finished: running again trains nothing.
    recorder = Recorder()
    sweep("nielsen", grid, epochs=6, subset=1000, threads=1, parallel=1, out=tmp_path,
          progress=recorder)
    assert recorder.started == [(2, 0)]


def test_random_points_are_drawn_from_their_ranges_the_same_each_time():
    plan = plan_trials("nielsen", {"layers": "784-30-10,784-100-10"}, random=5,
                       ranges={"lr": "log:1e-3..1", "batch_size": "8..64"}, seeds=2)
    assert len(plan.trials) == 2 * 5 * 2 and plan.fields == ["layers", "lr", "batch_size"]
    lrs = {t.params["lr"] for t in plan.trials}
    assert len(lrs) == 5 and all(1e-3 <= lr <= 1 for lr in lrs)
    assert all(isinstance(t.params["batch_size"], int) and 8 <= t.params["batch_size"] <= 64
               for t in plan.trials)
    again = plan_trials("nielsen", {"layers": "784-30-10,784-100-10"}, random=5,
                        ranges=["lr=log:1e-3..1", "batch_size=8..64"], seeds=2)
    assert [t.key for t in again.trials] == [t.key for t in plan.trials]
    other = plan_trials("nielsen", random=5, ranges={"lr": "log:1e-3..1"}, sample_seed=1)
    assert {t.params["lr"] for t in other.trials} != lrs


def test_digitnet_sweep_is_the_api_and_import_stays_light():
    code = ("import sys, digitnet\n"
            "print('digitnet.train.sweep' in sys.modules)\n"
            "print(digitnet.sweep.__module__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "digitnet.train.sweep"]


# -- bad input -------------------------------------------------------------------------------------

@pytest.mark.parametrize("kwargs, fragment", [
    (dict(grid={"colour": [1, 2]}), "unknown field 'colour'"),
    (dict(grid=["lr="]), "has no values"),
    (dict(grid=["lr"]), "is not FIELD=VALUES"),
    (dict(grid={"lr": [0.1, -1]}), "lr must be > 0"),
    (dict(grid={"layers": ["784-x"]}), "whole numbers joined by '-'"),
    (dict(grid={"activation": ["sigmoid", "swish"]}), "swish"),
    (dict(grid={"momentum": [0.9, 0.5]}), "no setting momentum"),
    (dict(random=3, ranges={"lr": "log:1..1e-3"}), "low end must be below"),
    (dict(random=3, ranges={"lr": "log:0..1"}), "log range needs a low end above 0"),
    (dict(random=3, ranges={"lr": "1e-3-1"}), "is not a range"),
    (dict(random=3, ranges={"activation": "1..2"}), "not a number"),
    (dict(ranges={"lr": "0.1..1"}), "needs --random"),
    (dict(random=2), "needs at least one --range"),
    (dict(), "nothing to sweep"),
])
def test_bad_sweeps_are_one_line_errors_before_anything_is_written(tmp_path, kwargs, fragment):
    out = tmp_path / "never"
    with pytest.raises(DigitnetError) as caught:
        sweep("nielsen", out=out, **kwargs)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
    assert not out.exists()


@pytest.fixture(scope="module")
def cli_env(tmp_path_factory):
    cache = tmp_path_factory.getbasetemp() / "digitnet-cache"
    cache.mkdir(exist_ok=True)
    return dict(os.environ, DIGITNET_CACHE_DIR=str(cache), PYTHONUNBUFFERED="1", **_THREADS)


def digitnet_cli(env, *args, cwd, timeout=120):
    return subprocess.run([sys.executable, "-m", "digitnet", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("args, fragment", [
    (["--grid", "colour=red,blue"], "unknown field 'colour'"),
    (["--grid", "lr="], "has no values"),
    (["--random", "4", "--range", "lr=log:1..0.001"], "low end must be below"),
    (["--grid", "lr=0.3,3", "--ray", "127.0.0.1:{port}"], "cannot reach a Ray cluster at 127.0.0.1"),
])
def test_cli_bad_input_is_one_line_exit_2(cli_env, tmp_path, args, fragment):
    args = [a.format(port=_closed_port()) for a in args]
    proc = digitnet_cli(cli_env, "sweep", "--preset", "nielsen", *args, "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("digitnet: error: "), proc.stderr
    assert fragment in lines[0] and "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


# -- the command -------------------------------------------------------------------------------

def test_cli_help_lists_the_fields_and_examples(cli_env, tmp_path):
    proc = digitnet_cli(cli_env, "sweep", "--help", cwd=tmp_path)
    assert proc.returncode == 0 and "examples:" in proc.stdout
    for text in ("--grid FIELD=V1,V2,...", "--range FIELD=[log:]LOW..HIGH", "--ray [ADDRESS]",
                 "momentum", "layers (784-30-10)", "--lr".strip("-")):
        assert text in proc.stdout, text


def test_cli_prints_the_table_as_trials_finish_and_draws_the_page(cli_env, tmp_path):
    proc = digitnet_cli(cli_env, "sweep", "--preset", "nielsen", "--grid", "lr=0.5,3", "--epochs", "1",
                        "--subset", "1000", "--parallel", "1", "--out", "lr", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split() == ["#", "lr", "seed", "status", "val", "test", "loss", "time"]
    rows = sorted(line.split()[:4] for line in lines[1:3])
    assert rows == [["1", "0.5", "0", "ok"], ["2", "3", "0", "ok"]]
    assert lines[3].startswith("2 trials: 2 ok")
    assert lines[4].startswith("best: trial 2 (lr 3, seed 0): validation ")
    out = tmp_path / "lr"
    for name in ("results.csv", "results.json", "best.npz", "results.png", "curves.png", "index.html"):
        assert (out / name).is_file(), name
    page = (out / "index.html").read_text()
    assert "digitnet sweep: lr" in page and "<img src='results.png'" in page
    assert "best.npz" in page and page.count("<tr>") >= 2 + 2
    # Again: nothing to train, the same table.
    again = digitnet_cli(cli_env, "sweep", "--preset", "nielsen", "--grid", "lr=0.5,3", "--epochs", "1",
                         "--subset", "1000", "--out", "lr", "--no-plots", cwd=tmp_path)
    assert again.returncode == 0 and again.stdout.startswith("kept 2 finished trials")
    assert "; 0 ran in " in again.stdout and "2 kept from before" in again.stdout


def test_ctrl_c_keeps_the_finished_trials(cli_env, tmp_path):
    args = [sys.executable, "-m", "digitnet", "sweep", "--preset", "nielsen", "--grid",
            "lr=0.5,1,2,3,4,5", "--epochs", "2", "--subset", "5000", "--parallel", "1", "--out", "cut"]
    proc = subprocess.Popen(args, cwd=tmp_path, env=cli_env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    header = proc.stdout.readline()
    first = proc.stdout.readline()       # the first trial finished
    assert header.split()[0] == "#" and first.split()[:2] == ["1", "0.5"], (header, first)
    proc.send_signal(signal.SIGINT)
    rest, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (rest, err)
    assert err.strip().startswith("digitnet: interrupted: ") and "Traceback" not in err
    kept = load_results(tmp_path / "cut")["trials"]
    assert 1 <= len(kept) < 6 and all(t["status"] == "ok" for t in kept)
    assert all((tmp_path / "cut" / t["model"]).is_file() for t in kept)
    leftovers = [p.name for p in (tmp_path / "cut").rglob(".*.tmp")]
    assert leftovers == []


# -- Ray ------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (its start-up takes seconds), two CPUs, a small object store."""
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
             object_store_memory=100 * 1024 * 1024)
    yield ray
    ray.shutdown()


def test_ray_gives_the_pools_results_for_the_same_seeds(grid_sweep, local_ray, tmp_path):
    pool, _ = grid_sweep
    result = sweep("nielsen", GRID, out=tmp_path, ray=True, **SMALL)
    assert local_ray.is_initialized()          # an initialised Ray is used, not shut down
    assert result.backend == "ray local" and result.count("ok") == 4
    for column in ("val_accuracy", "test_accuracy", "train_loss", "val_loss", "epochs_done"):
        assert result[column] == pool[column], column
    for ours, theirs in zip(result, pool):
        assert ours["key"] == theirs["key"]
        a, b = load_model(tmp_path / ours["model"]), load_model(pool.out / theirs["model"])
        assert np.array_equal(a.params, b.params)
    assert (tmp_path / "best.npz").read_bytes() == (tmp_path / result.best["model"]).read_bytes()
