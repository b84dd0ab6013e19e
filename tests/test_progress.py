"""The training progress display: tqdm's bar where someone watches, plain epoch lines in a pipe.

Real training runs on a small MNIST subset; "a terminal" is a stream whose
``isatty()`` says so, which is all tqdm and the callback look at.  (The
Jupyter widget is exercised by tests/test_notebook.py, in a real kernel.)
"""

from __future__ import annotations

import io
import sys

import numpy as np
import pytest

from digitnet import Network
from digitnet.app.progress import ProgressBar, format_epoch_line
from digitnet.data import load_mnist

pytest.importorskip("tqdm")


@pytest.fixture(autouse=True)
def one_blas_thread():
    """Small matrices: on a shared two-core machine BLAS's second thread only waits (as in test_cli)."""
    from threadpoolctl import threadpool_limits

    with threadpool_limits(limits=1, user_api="blas"):
        yield


class Terminal(io.StringIO):
    def isatty(self):
        return True


class Unplugged(Terminal):
    """A terminal that goes away after a few writes."""

    def __init__(self, writes):
        super().__init__()
        self.left = writes

    def write(self, text):
        self.left -= 1
        if self.left < 0:
            raise OSError(5, "Input/output error")
        return super().write(text)


@pytest.fixture(scope="module")
def data():
    X, y = load_mnist("test")
    return X[:2000], y[:2000]


def train(data, epochs=2, batch_size=50, **options):
    net = Network([784, 16, 10], seed=0)
    lines = io.StringIO()
    bar = options.pop("bar_stream", None) or io.StringIO()
    history = net.fit(*data, epochs=epochs, batch_size=batch_size,
                      callbacks=[ProgressBar(line_stream=lines, bar_stream=bar, min_interval=0, **options)])
    return history, lines.getvalue(), bar.getvalue()


def test_terminal_gets_a_tqdm_bar_per_epoch_and_a_line_per_epoch(data):
    history, lines, bar = train(data, bar_stream=Terminal())
    assert lines.splitlines() == [format_epoch_line(r, 2) for r in history.records]
    assert "epoch 1/2:" in bar and "epoch 2/2:" in bar
    assert "40/40" in bar and "batch/s" in bar and "100%" in bar      # tqdm's own bar
    assert bar.endswith("\r")          # cleared after each epoch (leave=False): the lines stay alone


def test_pipe_gets_only_the_lines(data):
    _, lines, bar = train(data)                  # a StringIO is not a terminal
    assert bar == ""
    assert [line.split("  ")[0] for line in lines.splitlines()] == ["epoch 1/2", "epoch 2/2"]


def test_full_batch_runs_get_one_bar_for_the_run_and_every_nth_line(data):
    _, lines, bar = train((data[0][:300], data[1][:300]), epochs=120, batch_size=None,
                          bar_stream=Terminal())
    numbers = [int(line.split()[1].split("/")[0]) for line in lines.splitlines()]
    assert numbers == [1] + list(range(5, 121, 5))            # ~25 lines: every 5th, first and last
    assert "training:" in bar and "epoch/s" in bar and "120/120" in bar
    assert "epoch 1/" not in bar                                   # no per-epoch bars of one step


def test_bar_forced_off_or_tqdm_missing_leaves_the_lines(data, monkeypatch):
    _, lines, bar = train(data, bar_stream=Terminal(), bar=False)
    assert bar == "" and lines.count("\n") == 2
    monkeypatch.setitem(sys.modules, "tqdm.auto", None)          # as if tqdm were not installed
    progress = ProgressBar(bar_stream=Terminal())
    assert progress.bar is False and progress.notebook is False
    _, lines, bar = train(data, bar_stream=Terminal())
    assert bar == "" and lines.count("\n") == 2


def test_a_terminal_that_goes_away_does_not_stop_training(data):
    history, lines, _ = train(data, epochs=3, bar_stream=Unplugged(writes=5))
    assert len(history) == 3 and lines.count("\n") == 3


def test_resumed_run_prints_its_first_epoch(data):
    net = Network([784, 16, 10], seed=0)
    data = data[0][:200], data[1][:200]
    first = net.fit(*data, epochs=150, batch_size=None, callbacks=[])
    del first.records[100:]
    lines = io.StringIO()
    net.fit(*data, epochs=150, batch_size=None, initial_epoch=100, history=first,
            callbacks=[ProgressBar(line_stream=lines, bar_stream=io.StringIO())])
    numbers = [int(line.split()[1].split("/")[0]) for line in lines.getvalue().splitlines()]
    assert numbers[0] == 101 and numbers[-1] == 150 and np.all(np.diff(numbers) > 0)
