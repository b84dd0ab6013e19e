"""Training in the browser: the Train view's jobs, their events and their routes.

A *job* trains one recipe -- a preset plus overrides, checked exactly as
``digitnet train`` checks them (:meth:`~digitnet.train.recipes.Preset.with_overrides`,
:meth:`~digitnet.train.recipes.Preset.check`, :meth:`~digitnet.train.recipes.Preset.build_network`)
and against the server's caps (:class:`TrainLimits`) -- with
:func:`~digitnet.train.recipes.train_recipe` in a background thread, so that
the event loop stays free and predictions stay fast while it trains.  One job
runs at a time.  A :class:`~digitnet.train.Callback` (:class:`_Watcher`) turns
the run into events:

``start``      once: the recipe, the training and held-out set sizes, steps per epoch, parameters;
``progress``   at most every 0.1 s: the points of the loss and accuracy curves since the last one
               (a point every few dozen steps: the loss and accuracy of the rows trained in between,
               as the epoch's own figures are worked out, from the outputs the steps stored);
``weights``    at most every 0.5 s, plus the first (before any step) and the last: the first
               layer's weights as 28x28 tiles, one byte per weight;
``epoch``      after each epoch: its history record, and the held-out accuracy and confusion matrix;
``done`` | ``diverged`` | ``cancelled`` | ``error``  once, last.

Clients read them as Server-Sent Events (``GET /api/train/{job}/events``).  A
client that connects late first gets everything so far (of the ``weights``
events, the first and the latest only), then the rest as it happens.

``DELETE /api/train/{job}`` asks the job to stop; its callback raises
:class:`~digitnet.train.StopTraining` after the step under way, so it stops
within one batch.  ``POST .../use`` puts the trained network behind the Draw
view; ``POST .../save`` writes it as a model file into the server's folder.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import json
import logging
import math
import os
import secrets
import sys
import threading
import time
from bisect import bisect_right
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from digitnet.app.web.app import ApiError, one_line
from digitnet.errors import DigitnetError, TrainingDiverged
from digitnet.nn.activations import ACTIVATIONS
from digitnet.nn.losses import LOSSES
from digitnet.nn.network import Network
from digitnet.nn.optimizers import OPTIMIZERS, all_hyperparameters
from digitnet.nn.schedules import SCHEDULES
from digitnet.train import Callback, StopTraining
from digitnet.train.recipes import (
    DEFAULT_PRESET,
    PRESETS,
    check_training_memory,
    get_preset,
    train_recipe,
    training_memory_bytes,
)

__all__ = [
    "WEB_PRESETS",
    "Plan",
    "TrainLimits",
    "Trainer",
    "add_to_openapi",
    "install",
    "openapi_paths",
    "openapi_schemas",
    "plan_recipe",
    "training_bytes",
    "valid_losses",
]

logger = logging.getLogger("digitnet.app.web")

#: Side of the images the network reads, and the number of classes it tells apart.
SIDE = 28
N_INPUTS = SIDE * SIDE
N_CLASSES = 10
#: Largest recipe body accepted, in bytes (a recipe is a few hundred).
MAX_RECIPE_BYTES = 16_384
#: Finished jobs kept (for their events, Try it and Save); older ones are forgotten.
KEEP_JOBS = 4
#: Job ids: 12 lowercase hexadecimal digits.
JOB_ID_PATTERN = "^[0-9a-f]{12}$"
#: Curve points stored per run at most (a long run gets a point every more steps).
MAX_POINTS = 20_000
#: A ``Last-Event-ID`` header: a whole number in plain digits.
EVENT_ID_PATTERN = "^(0|[1-9][0-9]{0,15})$"
#: The GIL's switch interval while a job trains (Python's default is 5 ms): the training
#: thread holds the GIL between its NumPy calls, and a prediction waiting for it would
#: otherwise wait up to that long.  1 ms: predictions wait less, training loses about 1%
#: to the extra switches (0.5 ms cost it 2%; benchmarks/WEB.md).
GIL_SWITCH_S = 0.001
#: States a job ends in (``running`` until then).
FINAL_STATES = ("done", "diverged", "cancelled", "error")

#: The presets the Train view offers: every one that reads 28x28 images (not ``xor``).
WEB_PRESETS = tuple(name for name, p in PRESETS.items() if p.data != "xor" and p.sizes[0] == N_INPUTS)


@dataclass(frozen=True)
class TrainLimits:
    """What one job may ask for; stated in the OpenAPI document and docs/web.md.

    ``max_memory_bytes`` caps the run's memory as
    :func:`~digitnet.train.recipes.training_memory_bytes` estimates it: the
    parameters with their gradients, copies and optimiser state, one step's
    arrays and the epoch's stored outputs (mostly the parameters, unless the
    batch is huge).  The machine's free memory is checked too
    (:func:`~digitnet.train.recipes.check_training_memory`).
    """

    max_width: int = 1024              # units in one hidden layer
    max_hidden_layers: int = 4         # depth: hidden layers
    max_epochs: int = 500              # the zhang preset's 500 full-batch steps fit
    max_memory_bytes: int = 512 * 2**20
    max_subset: int = 60_000           # training images (more than there are means all)
    max_batch_size: int = 60_000
    progress_every_s: float = 0.1      # progress events: at most 10 per second
    weights_every_s: float = 0.5       # weights events: at most 2 per second
    max_tiles: int = 64                # first-layer units shown as tiles

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


# ---------------------------------------------------------------------------------
# The request: a preset plus overrides
#
# Each field is checked here for its JSON type and range (what the OpenAPI
# schema states field by field); the recipe as a whole is then checked by the
# core, exactly as for `digitnet train`: Preset.with_overrides, Preset.check,
# Preset.build_network (Network's own checks: which output layer goes with
# which loss), the caps and the memory estimate.

#: Every optimiser setting (momentum, beta1, ...) -> (help, the optimisers that take it).
HYPERPARAMETERS = all_hyperparameters()

#: Numeric ranges of the plain number fields: (minimum, exclusive minimum?, maximum, exclusive maximum?).
_NUMBER_RANGES = {
    "lr": (0.0, True, 1e4, False),
    "l2": (0.0, False, 1e6, False),
    "momentum": (0.0, False, 1.0, True),
    "beta1": (0.0, False, 1.0, True),
    "beta2": (0.0, False, 1.0, True),
    "eps": (0.0, True, 1.0, False),
}

_FIELD_HELP = {
    "preset": "the recipe to start from; every other field overrides one of its settings",
    "hidden_layers": "units of each hidden layer, first first ([] for none); the input (784) and output "
                     "(10) layers are fixed",
    "activation": "activation of every hidden layer",
    "output": "activation of the output layer; not every loss goes with every output (see the rules)",
    "loss": "the loss; cross_entropy and binary_cross_entropy need outputs in 0..1 (sigmoid, softmax)",
    "optimizer": "the optimiser",
    "lr": "learning rate η (> 0)",
    "batch_size": "samples per step, or null for full-batch gradient descent",
    "epochs": "passes over the training images",
    "l2": "L2 strength λ (Nielsen's: the loss gains (λ/2n)·Σw²)",
    "schedule": "learning-rate schedule",
    "shift": "move each training image by up to this many pixels, at random, every epoch (0: off)",
    "subset": "train on the first N training images only (more than there are means all of them)",
    "seed": "fixes the initial weights and the shuffling",
}


def _field_order() -> list[str]:
    return ["preset", "hidden_layers", "activation", "output", "loss", "optimizer", "lr",
            *HYPERPARAMETERS, "batch_size", "epochs", "l2", "schedule", "shift", "subset", "seed"]


FIELDS = tuple(_field_order())


@cache
def valid_losses() -> dict[str, tuple[str, ...]]:
    """Output activation -> the losses that go with it, as Network's own check decides."""
    table = {}
    for output in ACTIVATIONS:
        ok = []
        for loss in LOSSES:
            try:
                Network([2, N_CLASSES], activations=[output], loss=loss, seed=0)
            except DigitnetError:
                continue
            ok.append(loss)
        table[output] = tuple(ok)
    return table


def _shown(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, float) or math.isfinite(value) else str(value)
    return text if len(text) <= 40 else text[:40] + "..."


def _whole(name: str, value: Any, lo: int, hi: int, what: str = "a whole number") -> int:
    if (isinstance(value, bool) or not isinstance(value, (int, float))
            or (isinstance(value, float) and not value.is_integer())):
        raise ApiError(422, f"{name} must be {what} from {lo:,} to {hi:,}, got {_shown(value)}")
    if not lo <= value <= hi:
        raise ApiError(422, f"{name} must be {what} from {lo:,} to {hi:,}, got {_shown(value)}")
    return int(value)


def _number(name: str, value: Any) -> float:
    lo, lo_open, hi, hi_open = _NUMBER_RANGES[name]
    low = f"above {lo:g}" if lo_open else f"at least {lo:g}"
    high = f"below {hi:g}" if hi_open else f"at most {hi:g}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ApiError(422, f"{name} must be a number {low} and {high}, got {_shown(value)}")
    bad = (not math.isfinite(value) or value < lo or (lo_open and value == lo)
           or value > hi or (hi_open and value == hi))
    if bad:
        raise ApiError(422, f"{name} must be a number {low} and {high}, got {_shown(value)}")
    return float(value)


def _choice(name: str, value: Any, choices, note: str = "") -> str:
    if not isinstance(value, str) or value not in choices:
        raise ApiError(422, f"{name} must be one of {', '.join(choices)}, got {_shown(value)}{note}")
    return value


@dataclass
class Plan:
    """A checked recipe, ready to train: what ``POST /api/train`` accepted."""

    preset_name: str
    overrides: dict
    epochs: int | None
    seed: int
    subset: int | None
    preset: Any                 # the effective Preset
    n_params: int
    memory: dict                # training_memory_bytes(...)

    def recipe(self) -> dict:
        """The effective recipe as JSON: the preset's settings with the overrides applied."""
        out = {k: v for k, v in self.preset.to_dict().items() if k not in ("source", "published", "notes")}
        out.update(seed=self.seed, subset=self.subset, preset=self.preset_name,
                   overrides=dict(self.overrides))
        return out


def _fields(payload: Any, limits: TrainLimits) -> dict:
    """The request's fields, each checked for its type and range (the schema's rules)."""
    if not isinstance(payload, dict):
        raise ApiError(422, f"the body must be a JSON object, a recipe such as {{\"preset\": \"best\"}}, "
                            f"got {_json_kind(payload)}")
    unknown = sorted(set(payload) - set(FIELDS))
    if unknown:
        raise ApiError(422, f"unknown field {unknown[0]!r}: a recipe takes {', '.join(FIELDS)}")
    out: dict = {}
    for name in FIELDS:
        if name not in payload:
            continue
        value = payload[name]
        if name == "preset":
            note = ("; xor trains on its four-row table, not on images" if value == "xor" else "")
            out[name] = _choice(name, value, WEB_PRESETS, note)
        elif name == "hidden_layers":
            if not isinstance(value, list):
                raise ApiError(422, f"hidden_layers must be a list of whole numbers (units per hidden "
                                    f"layer), like [256, 128], got {_shown(value)}")
            if len(value) > limits.max_hidden_layers:
                raise ApiError(422, f"hidden_layers: {len(value)} hidden layers are more than this server "
                                    f"trains (at most {limits.max_hidden_layers}): use fewer")
            out[name] = [_whole(f"hidden_layers[{i}]", v, 1, limits.max_width, "a number of units")
                         for i, v in enumerate(value)]
        elif name in ("activation", "output"):
            out[name] = _choice(name, value, list(ACTIVATIONS))
        elif name == "loss":
            out[name] = _choice(name, value, list(LOSSES))
        elif name == "optimizer":
            out[name] = _choice(name, value, list(OPTIMIZERS))
        elif name == "schedule":
            out[name] = _choice(name, value, list(SCHEDULES))
        elif name in _NUMBER_RANGES:
            out[name] = _number(name, value)
        elif name == "batch_size":
            out[name] = None if value is None else _whole(name, value, 1, limits.max_batch_size)
        elif name == "epochs":
            out[name] = _whole(name, value, 1, limits.max_epochs)
        elif name == "shift":
            out[name] = _whole(name, value, 0, 8, "a whole number of pixels")
        elif name == "subset":
            out[name] = _whole(name, value, 1, limits.max_subset, "a number of training images")
        elif name == "seed":
            out[name] = _whole(name, value, 0, 2**32 - 1)
    return out


def _json_kind(value: Any) -> str:
    if value is None:
        return "null"
    return {bool: "a boolean", str: "a string", list: "a list"}.get(type(value), "a number")


@cache
def _split_rows(split: str, train_rows: int) -> tuple[int, int]:
    """``(training rows, validation rows)`` that ``split`` leaves of ``train_rows`` images."""
    from digitnet import data

    X = np.empty((train_rows, 0), np.float32)
    y = np.arange(train_rows, dtype=np.int64) % N_CLASSES
    _, y_train, _, y_val = data.split(split, X, y, seed=0)
    return len(y_train), 0 if y_val is None else len(y_val)


def _given(fields: dict, *names: str) -> str:
    """The fields among ``names`` the request gave, for naming them in an error."""
    given = [n for n in names if n in fields]
    return " / ".join(given) if given else "preset"


def plan_recipe(payload: Any, limits: TrainLimits = TrainLimits(), *, train_rows: int = 60_000,
                test_rows: int = 10_000, allocate: bool = True) -> Plan:
    """Check a recipe request as ``POST /api/train`` does; a :class:`Plan`, or ApiError 422 naming the field.

    ``train_rows`` and ``test_rows`` are the sizes of the server's training
    and test sets (for the memory estimate).  With ``allocate`` the recipe's
    network is built once (and dropped), so that Network's own checks run
    too: with its hidden layers narrowed to at most 16 units, as their sizes
    are checked above and its memory by the estimate (the job builds the real one).
    """
    fields = _fields(payload, limits)
    name = fields.get("preset", DEFAULT_PRESET)
    overrides: dict = {}
    if "hidden_layers" in fields:
        overrides["sizes"] = [N_INPUTS, *fields["hidden_layers"], N_CLASSES]
    for key in ("activation", "output", "loss", "optimizer", "lr", *HYPERPARAMETERS, "batch_size", "l2",
                "shift"):
        if key in fields:
            overrides[key] = fields[key]
    if "schedule" in fields:
        overrides["schedule"] = None if fields["schedule"] == "constant" else fields["schedule"]
    epochs = fields.get("epochs")
    seed = fields.get("seed", 0)
    subset = fields.get("subset")

    try:
        preset = get_preset(name).with_overrides(overrides)
    except DigitnetError as exc:
        raise ApiError(422, f"recipe: {exc}") from None
    if epochs is not None:
        preset = dataclasses.replace(preset, epochs=epochs)
    if preset.epochs > limits.max_epochs:
        raise ApiError(422, f"epochs: the {name} preset trains {preset.epochs} epochs, more than this server "
                            f"trains (at most {limits.max_epochs}): give epochs")
    hidden = preset.sizes[1:-1]
    if len(hidden) > limits.max_hidden_layers or max(hidden, default=0) > limits.max_width:
        raise ApiError(422, f"hidden_layers: the {name} preset's hidden layers ({', '.join(map(str, hidden))}) "
                            f"are more than this server trains (at most {limits.max_hidden_layers} of at "
                            f"most {limits.max_width} units): give hidden_layers")
    try:
        preset.check()
    except DigitnetError as exc:
        raise ApiError(422, f"{_given(fields, 'optimizer', *HYPERPARAMETERS, 'lr', 'schedule')}: {exc}") \
            from None
    # The output layer and the loss: Network's own check decides (valid_losses asks it).
    output, loss = preset.output_activation, preset.loss
    if loss not in valid_losses().get(output, ()):
        raise ApiError(422, f"{_given(fields, 'output', 'loss')}: the {loss} loss does not go with a {output} "
                            f"output layer; with {output} use {' or '.join(valid_losses()[output])}")

    n_split, n_val = _split_rows(preset.split, train_rows)
    n_train = min(subset or n_split, n_split)
    memory = training_memory_bytes(preset.sizes, batch_size=preset.batch_size, n_train=n_train,
                                   n_eval=max(n_val, test_rows), optimizer=preset.optimizer, l2=preset.l2)
    if memory["total"] > limits.max_memory_bytes:
        parts = {"parameters": "use fewer or smaller hidden layers",
                 "steps": "use a smaller batch_size",
                 "epoch": "train on fewer images (subset)"}
        biggest = max(parts, key=lambda part: memory[part])
        raise ApiError(422, f"{_given(fields, 'hidden_layers', 'batch_size', 'subset', 'optimizer')}: this "
                            f"recipe needs about {_mib(memory['total'])} to train ({memory['n_params']:,} "
                            f"parameters, {n_train:,} images), more than this server allows "
                            f"({_mib(limits.max_memory_bytes)}): {parts[biggest]}")
    try:
        check_training_memory(preset, n_train=n_train, n_eval=max(n_val, test_rows))
        if allocate:                        # Network's own checks: activations, loss, init
            narrow = tuple(min(n, 16) for n in preset.sizes[1:-1])
            dataclasses.replace(preset, sizes=(preset.sizes[0], *narrow, preset.sizes[-1])).build_network(seed)
    except MemoryError:
        raise ApiError(422, "hidden_layers: the network does not fit in this computer's memory: "
                            "use fewer or smaller hidden layers") from None
    except DigitnetError as exc:
        raise ApiError(422, f"{_given(fields, 'hidden_layers', 'activation', 'output', 'loss')}: {exc}") \
            from None
    return Plan(name, overrides, epochs, seed, subset, preset, memory["n_params"], memory)


def training_bytes(payload: Any, limits: TrainLimits = TrainLimits(), *, train_rows: int = 60_000,
                   test_rows: int = 10_000) -> int | None:
    """The memory estimate :func:`plan_recipe` holds against ``max_memory_bytes``, or ``None``.

    ``None`` when the request fails another rule first.  (The one rule the
    OpenAPI schema cannot state; the Schemathesis hooks use this.)
    """
    try:
        plan = plan_recipe(payload, dataclasses.replace(limits, max_memory_bytes=2**62), train_rows=train_rows,
                           test_rows=test_rows, allocate=False)
    except (ApiError, DigitnetError):
        return None
    return plan.memory["total"]


def _mib(n_bytes: float) -> str:
    return f"{n_bytes / 2**20:,.0f} MiB"


# ---------------------------------------------------------------------------------
# Jobs and their events


@dataclass
class _Event:
    id: int
    name: str
    text: str       # the data line: compact JSON


def _clean(value: Any) -> Any:
    """JSON-ready: NumPy numbers as Python's, NaN and infinities as None, tuples as lists."""
    if isinstance(value, (float, np.floating)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, dict):
        return {str(k): _clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return _clean(value.tolist())
    return value


class Job:
    """One training run: its recipe, state, network and the events it has sent."""

    def __init__(self, job_id: str, plan: Plan):
        self.id = job_id
        self.plan = plan
        self.state = "running"
        self.created = time.time()
        self.steps = 0
        self.epochs_done = 0
        self.detail: str | None = None
        self.network: Network | None = None       # the network being trained (set when training starts)
        self.metadata: dict = {}                   # recipe, preprocessing, history: for Try it and Save
        self.evaluation: dict = {}
        self.serving = False
        self.saved_path: Path | None = None
        self.stop = threading.Event()
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._events: list[_Event] = []
        self._next_id = 0
        self._first_weights: int | None = None
        self._waiters: set = set()
        self.thread: threading.Thread | None = None

    # -- events ---------------------------------------------------------------------
    def emit(self, name: str, data: dict) -> None:
        """Record an event and wake the clients streaming this job."""
        text = json.dumps(_clean(data), separators=(",", ":"), allow_nan=False)
        with self._lock:
            event = _Event(self._next_id, name, text)
            self._next_id += 1
            if name == "weights":
                # Late joiners get the first and the latest tiles, not every frame in between.
                if self._first_weights is None:
                    self._first_weights = event.id
                else:
                    self._drop_latest_weights()
            self._events.append(event)
            if name in FINAL_STATES:
                self.state = name
                self.detail = data.get("detail")
            waiters = list(self._waiters)
        for loop, wake in waiters:
            with contextlib.suppress(RuntimeError):     # that client's loop has closed
                loop.call_soon_threadsafe(wake.set)

    def _drop_latest_weights(self) -> None:
        for i in range(len(self._events) - 1, -1, -1):
            event = self._events[i]
            if event.name == "weights":
                if event.id != self._first_weights:
                    del self._events[i]
                return

    def events_after(self, last_id: int) -> tuple[list[_Event], bool]:
        """The events with an id above ``last_id``, and whether the job's last event is among them or sent."""
        with self._lock:
            start = bisect_right(self._events, last_id, key=lambda e: e.id)
            events = self._events[start:]
            ended = bool(self._events) and self._events[-1].name in FINAL_STATES
        return events, ended

    def subscribe(self, loop, wake) -> None:
        with self._lock:
            self._waiters.add((loop, wake))

    def unsubscribe(self, loop, wake) -> None:
        with self._lock:
            self._waiters.discard((loop, wake))

    # -- what the API says about it ---------------------------------------------------
    @property
    def usable(self) -> bool:
        """Whether Try it and Save can use the network: trained (or stopped) after at least one step."""
        return self.state in ("done", "cancelled") and self.network is not None and self.steps > 0

    def status(self) -> dict:
        return _clean({
            "job": self.id,
            "state": self.state,
            "preset": self.plan.preset_name,
            "recipe": self.plan.recipe(),
            "n_params": self.plan.n_params,
            "steps": self.steps,
            "epochs_done": self.epochs_done,
            "epochs": self.plan.preset.epochs,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(self.created)),
            "detail": self.detail,
            "usable": self.usable,
            "serving": self.serving,
            "saved": None if self.saved_path is None else str(self.saved_path),
            "events": f"/api/train/{self.id}/events",
        })


def _lowest_priority() -> None:
    """Give the calling thread the lowest CPU priority (nice 19), where the system allows it.

    On Linux a thread is a task of its own, so its nice value is its own; elsewhere this
    would renice the whole process, so it does nothing there.
    """
    if not sys.platform.startswith("linux"):
        return
    with contextlib.suppress(OSError, AttributeError):
        os.setpriority(os.PRIO_PROCESS, threading.get_native_id(), 19)


class _Watcher(Callback):
    """The job's callback: counts steps, stops when asked, and sends the run's events."""

    def __init__(self, job: Job, limits: TrainLimits, held_out: tuple, held_out_set: str, n_train: int):
        self.job = job
        self.limits = limits
        self.X_eval, self.y_eval = held_out
        self.held_out_set = held_out_set
        self.n_train = n_train
        self.l2_coef = job.plan.preset.l2 / max(n_train, 1)
        self.points: list[dict] = []
        self.last_progress = -math.inf
        self.last_weights = -math.inf
        self.next_due = -math.inf       # when a progress or weights event may next be due
        self.started = time.monotonic()      # the events' "seconds" count from here, on the clock
                                             # that spaces them out
        self.network = self.optimizer = None
        self.arrays = None
        self.row0 = 0
        self.every = 1
        self.n_batches = 1
        self.epoch = 0                  # the epoch under way, from 1 (0 before the first)
        self.records: list[dict] = []   # the completed epochs' history records
        self.weights_step = -1          # the step of the last weights sent
        self.scorer: ThreadPoolExecutor | None = None    # scores each epoch on the held-out set

    def _check_stop(self) -> None:
        if self.job.stop.is_set():
            raise StopTraining(f"stopped at step {self.job.steps}")

    # -- the hooks ------------------------------------------------------------------
    def on_train_begin(self, network, optimizer, epochs):
        self.network, self.optimizer, self.epochs = network, optimizer, epochs
        self.job.network = network
        self.job.metadata = dict(network.metadata)
        self._check_stop()
        preset = self.job.plan.preset
        batch = self.n_train if preset.batch_size is None else min(preset.batch_size, self.n_train)
        self.n_batches = math.ceil(self.n_train / max(batch, 1))
        total_steps = self.n_batches * epochs
        self.every = max(1, min(32, math.ceil(self.n_batches / 16)), math.ceil(total_steps / MAX_POINTS))
        self.job.emit("start", {
            "job": self.job.id, "recipe": self.job.plan.recipe(), "n_params": network.n_params,
            "n_train": self.n_train, "batch_size": batch, "batches": self.n_batches, "epochs": epochs,
            "points_every": self.every,
            "held_out": {"set": self.held_out_set, "size": len(self.y_eval)},
        })
        self._send_weights()

    def on_epoch_begin(self, epoch, n_batches):
        self._check_stop()
        self.n_batches = n_batches
        self.epoch = epoch + 1

    def on_epoch_arrays(self, epoch, outputs, targets, labels, batch_size):
        self.arrays = (outputs, targets, labels, batch_size)
        self.row0 = 0

    def on_batch_end(self, epoch, batch, n_batches):
        # Every step passes here: a few operations, and the rest only when something is due.
        job = self.job
        job.steps += 1
        if job.stop.is_set():
            raise StopTraining(f"stopped at step {job.steps}")
        if (batch + 1) % self.every == 0 or batch + 1 == n_batches:
            self._point(epoch, batch, n_batches)
        now = time.monotonic()
        if now >= self.next_due:
            if self.points and now - self.last_progress >= self.limits.progress_every_s:
                self._send_progress(now)
            if now - self.last_weights >= self.limits.weights_every_s:
                self._send_weights(now)
            self.next_due = min(self.last_progress + self.limits.progress_every_s,
                                self.last_weights + self.limits.weights_every_s)

    def on_epoch_end(self, epoch, record):
        self.job.epochs_done = epoch + 1
        self.records.append(dict(record))
        # The held-out figures are worked out on a copy of the weights in a thread of their own, at
        # the lowest CPU priority: training goes on meanwhile, and the scoring takes a core that
        # would otherwise idle rather than time from training.
        if self.scorer is None:
            self.scorer = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"digitnet-score-{self.job.id}",
                                             initializer=_lowest_priority)
        self.scorer.submit(self._send_epoch, epoch, dict(record), self.job.steps, self.network.copy())
        self._check_stop()

    def _send_epoch(self, epoch: int, record: dict, step: int, network: Network) -> None:
        try:
            self._score(epoch, record, step, network)
        except Exception:
            logger.exception("scoring epoch %d of training job %s failed", epoch + 1, self.job.id)

    def _score(self, epoch: int, record: dict, step: int, network: Network) -> None:
        predictions = network.predict(self.X_eval)
        confusion = np.bincount(self.y_eval * N_CLASSES + predictions,
                                minlength=N_CLASSES * N_CLASSES).reshape(N_CLASSES, N_CLASSES)
        seconds = record.get("seconds")
        self.job.emit("epoch", {
            "epoch": epoch + 1, "epochs": self.epochs, "step": step, "record": record,
            "images_per_second": self.n_train / seconds if seconds else None,
            "validation": {"set": self.held_out_set, "size": len(self.y_eval),
                           "accuracy": float(np.mean(predictions == self.y_eval)),
                           "confusion": confusion.tolist()},
        })

    def on_train_end(self, history):
        self._flush()           # the last epoch may still be being scored: finish() waits for it

    def finish(self, weights: bool = True) -> None:
        """Send what is still pending -- the epochs being scored, the last curve points, the last
        weights -- before the final event.  Called once training is over (outside its timing)."""
        if self.scorer is not None:
            self.scorer.shutdown(wait=True)
            self.scorer = None
        self._flush(weights)

    def _flush(self, weights: bool = True) -> None:
        if self.points:
            self._send_progress(time.monotonic())
        if weights and self.network is not None and self.job.steps and self.weights_step != self.job.steps:
            self._send_weights()

    # -- the events -----------------------------------------------------------------
    def _point(self, epoch, batch, n_batches) -> None:
        outputs, targets, labels, batch_size = self.arrays
        stop = min((batch + 1) * batch_size, len(outputs))
        rows = slice(self.row0, stop)
        self.row0 = stop
        z = outputs[rows]
        with np.errstate(all="ignore"):
            a = self.network.activations[-1].forward(z)       # a new array: z is left as it is
            loss = self.network.loss_of_outputs(a, targets[rows], z)
            correct = np.count_nonzero(self.network.labels_from_outputs(a) == labels[rows])
        self.points.append({"step": self.job.steps, "epoch": epoch + 1, "batch": batch + 1, "loss": loss,
                            "accuracy": correct / max(stop - rows.start, 1), "rows": stop - rows.start,
                            "lr": self.optimizer.lr})

    def _send_progress(self, now: float) -> None:
        points, self.points = self.points, []
        if self.l2_coef:
            # The L2 penalty at this moment, as the epoch's record adds it at its end.
            penalty = self.network.l2_penalty(self.l2_coef)
            for point in points:
                point["loss"] += penalty
        last = points[-1]
        elapsed = now - self.started
        self.job.emit("progress", {
            "step": last["step"], "epoch": last["epoch"], "batch": last["batch"], "batches": self.n_batches,
            "epochs": self.epochs, "loss": last["loss"], "accuracy": last["accuracy"],
            "lr": last["lr"], "seconds": elapsed, "points": points,
        })
        self.last_progress = now

    def _send_weights(self, now: float | None = None) -> None:
        now = time.monotonic() if now is None else now
        W = self.network.weights[0][: self.limits.max_tiles]
        if W.shape[1] != N_INPUTS:
            return
        with np.errstate(all="ignore"):
            top = np.abs(W).max(axis=1, keepdims=True)
            top[~np.isfinite(top) | (top == 0)] = 1.0
            tiles = np.clip(np.rint(W / top * 127.5 + 127.5), 0, 255)
        tiles = np.nan_to_num(tiles, nan=127.0).astype(np.uint8)
        self.job.emit("weights", {
            "step": self.job.steps, "epoch": self.epoch, "seconds": now - self.started, "units": int(W.shape[0]), "of": int(self.network.sizes[1]), "side": SIDE,
            "data": base64.b64encode(tiles.tobytes()).decode("ascii"),
        })
        self.weights_step = self.job.steps
        self.last_weights = now


# ---------------------------------------------------------------------------------
# The trainer: one job at a time


class Trainer:
    """Starts, watches, stops and keeps the training jobs of one server.

    ``use_network(network)`` is called by Try it (it puts the network behind
    the Draw view); ``save_dir`` is where Save writes model files (by
    default the cache folder's ``models``, see :func:`digitnet.files.paths.models_dir`).
    ``disabled``, a line saying why, turns training off: every new job is a
    503 with that line (``digitnet serve --workers N`` does this, as its
    processes could not share the jobs).
    """

    def __init__(self, *, limits: TrainLimits = TrainLimits(), data: str = "mnist",
                 save_dir: str | Path | None = None,
                 use_network: Callable[[Network, Job], None] | None = None,
                 disabled: str | None = None):
        self.limits = limits
        self.disabled = disabled
        self.data_source = data
        self._save_dir = None if save_dir is None else Path(save_dir)
        #: called by Try it with the trained network (create_app sets it)
        self.use_network = use_network
        self._jobs: OrderedDict[str, Job] = OrderedDict()
        self._lock = threading.Lock()
        self._data_lock = threading.Lock()
        self._data: dict = {}                    # scale -> Dataset
        self._rows: tuple[int, int] | None = None

    @property
    def save_dir(self) -> Path:
        if self._save_dir is not None:
            return self._save_dir
        from digitnet.files.paths import models_dir

        return models_dir()

    # -- data -------------------------------------------------------------------------
    def dataset(self, scale: str = "unit"):
        """The training data at ``scale`` (unit, or symmetric for raschka), loaded once."""
        with self._data_lock:
            if scale not in self._data:
                from digitnet.train.recipes import load_data

                dataset = load_data(self.data_source, scale=scale)
                self._data[scale] = dataset
                self._rows = (len(dataset.y_train), 0 if dataset.y_test is None else len(dataset.y_test))
            return self._data[scale]

    def rows(self) -> tuple[int, int]:
        """``(training images, test images)`` of the server's data; ApiError 503 if it cannot be loaded."""
        if self._rows is None:
            try:
                self.dataset()
            except DigitnetError as exc:
                raise ApiError(503, f"the training data ({self.data_source}) cannot be loaded: "
                                    f"{one_line(str(exc))}") from None
        return self._rows

    # -- the API's operations --------------------------------------------------------
    def options(self) -> dict:
        """What the Train view offers: the core's registries, the presets, the caps, the jobs."""
        presets = {}
        for name in WEB_PRESETS:
            p = PRESETS[name]
            presets[name] = {
                "hidden_layers": list(p.sizes[1:-1]), "activation": p.hidden_activation,
                "output": p.output_activation, "loss": p.loss, "optimizer": p.optimizer,
                "optimizer_options": dict(p.optimizer_options), "lr": p.lr, "batch_size": p.batch_size,
                "epochs": p.epochs, "l2": p.l2, "schedule": p.schedule or "constant", "shift": p.shift,
                "split": p.split, "source": p.source, "published": p.published,
            }
        with self._lock:
            jobs = [job.status() for job in self._jobs.values()]
        return _clean({
            "default_preset": DEFAULT_PRESET,
            "presets": presets,
            "activations": list(ACTIVATIONS),
            "losses": list(LOSSES),
            "valid_losses": {k: list(v) for k, v in valid_losses().items()},
            "optimizers": {name: {"hyperparameters": {h: HYPERPARAMETERS[h][0] for h in cls.hyperparameters}}
                           for name, cls in OPTIMIZERS.items()},
            "schedules": list(SCHEDULES),
            "limits": self.limits.as_dict(),
            "jobs": jobs,
            "disabled": self.disabled,
        })

    def plan(self, payload: Any) -> Plan:
        if self.disabled:
            raise ApiError(503, self.disabled)
        train_rows, test_rows = self.rows()
        return plan_recipe(payload, self.limits, train_rows=train_rows, test_rows=test_rows)

    def start(self, plan: Plan) -> Job:
        """Start a job for ``plan``; ApiError 409 while another one runs."""
        with self._lock:
            running = [job for job in self._jobs.values() if job.state == "running"]
            if running:
                raise ApiError(409, f"a training job is already running ({running[0].id}): stop it "
                                    f"(DELETE /api/train/{running[0].id}) or wait for it to finish")
            job = Job(secrets.token_hex(6), plan)
            self._jobs[job.id] = job
            self._forget_old_jobs()
        thread = threading.Thread(target=self._run, args=(job,), name=f"digitnet-train-{job.id}", daemon=True)
        job.thread = thread
        thread.start()
        return job

    def _forget_old_jobs(self) -> None:
        """Keep KEEP_JOBS jobs.  The first forgotten are those stopped before any step (nothing
        to show), then those that did not finish (stopped, diverged, failed), then the oldest
        finished ones; never a running job, nor the one the Draw view reads with."""
        while len(self._jobs) > KEEP_JOBS:
            candidates = [j for j in self._jobs.values() if j.state != "running" and not j.serving]
            if not candidates:
                return
            first = min(candidates, key=lambda j: (j.steps > 0, j.state == "done"))  # oldest among equals
            self._jobs.pop(first.id)

    def job(self, job_id: str) -> Job:
        with self._lock:
            job = self._jobs.get(job_id)
        if job is None:
            shown = job_id if len(job_id) <= 24 else job_id[:24] + "..."
            raise ApiError(404, f"no training job {shown!r} on this server: start one with POST /api/train "
                                "(jobs older than the last few are forgotten)")
        return job

    def stop(self, job_id: str, wait: float = 10.0) -> dict:
        """Ask the job to stop (it does within one step) and wait for it, at most ``wait`` seconds."""
        job = self.job(job_id)
        job.stop.set()
        asked_at = job.steps
        job.finished.wait(wait)
        return {**job.status(), "stop_requested_at_step": asked_at}

    def use(self, job_id: str) -> dict:
        job = self._usable(job_id, "try")
        network = job.network.copy()
        network.metadata = {**job.metadata, "trained_by": f"the Train view, job {job.id}"}
        if self.use_network is not None:
            self.use_network(network, job)
        with self._lock:
            for other in self._jobs.values():
                other.serving = other is job
        return job.status()

    def save(self, job_id: str) -> dict:
        from digitnet.files.modelfile import save_model

        job = self._usable(job_id, "save")
        folder = self.save_dir
        path = folder / f"web-{job.plan.preset_name}-{job.id}.npz"
        meta = job.metadata
        try:
            folder.mkdir(parents=True, exist_ok=True)
            save_model(path, job.network, recipe=meta.get("recipe"), preprocessing=meta.get("preprocessing"),
                       history=meta.get("history"),
                       extra={"evaluation": job.evaluation, "trained_by": f"the Train view, job {job.id}"})
        except (OSError, DigitnetError) as exc:
            reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else one_line(str(exc))
            raise ApiError(503, f"cannot save the model into {folder}: {reason}") from None
        job.saved_path = path
        return {"job": job.id, "path": str(path), "name": path.name, "bytes": path.stat().st_size}

    def _usable(self, job_id: str, verb: str) -> Job:
        job = self.job(job_id)
        if job.usable:
            return job
        if job.state == "running":
            why = "it is still training: wait for it to finish, or stop it"
        elif job.state == "diverged":
            why = "its training diverged, so there is no network worth using: train again with a lower rate"
        elif job.state == "error":
            why = "it failed before training anything"
        else:
            why = "it stopped before its first step"
        raise ApiError(409, f"cannot {verb} job {job.id}: {why}")

    def shutdown(self) -> None:
        """Stop every running job (the server is going away)."""
        with self._lock:
            jobs = list(self._jobs.values())
        for job in jobs:
            job.stop.set()
        for job in jobs:
            job.finished.wait(5)

    # -- the training thread ------------------------------------------------------------
    def _run(self, job: Job) -> None:
        plan = job.plan
        watcher = None
        # While it trains, the server's other threads (the event loop answering predictions) get
        # the GIL back within GIL_SWITCH_S rather than Python's 5 ms (one job at a time: no nesting).
        switch = sys.getswitchinterval()
        sys.setswitchinterval(min(switch, GIL_SWITCH_S))
        try:
            dataset = self.dataset(plan.preset.scale)
            if job.stop.is_set():
                raise StopTraining("stopped before training began")
            held_out, held_out_set, n_train = self._held_out(dataset, plan)
            watcher = _Watcher(job, self.limits, held_out, held_out_set, n_train)
            result = train_recipe(plan.preset_name, data=dataset, seed=plan.seed, epochs=plan.epochs,
                                  subset=plan.subset, overrides=plan.overrides or None, callbacks=[watcher])
        except StopTraining:
            if watcher is not None:
                watcher.finish()
            if job.network is not None:      # the weights of the last step, with the epochs completed
                job.metadata = {**job.network.metadata,
                                "history": {"records": watcher.records, "seed": plan.seed}}
            job.emit("cancelled", {"state": "cancelled", "steps": job.steps, "epochs_done": job.epochs_done,
                                   "detail": f"stopped on request after {job.steps:,} steps "
                                             f"({job.epochs_done} of {plan.preset.epochs} epochs complete)",
                                   "usable": job.steps > 0 and job.network is not None})
        except TrainingDiverged as exc:
            if watcher is not None:
                watcher.finish(weights=False)    # the curve up to the blow-up
            job.network = None          # nothing worth trying or saving
            lr = plan.preset.lr
            text = str(exc).split(" The weights of the last")[0].split("; lower the learning rate")[0]
            job.emit("diverged", {"state": "diverged", "steps": job.steps, "epochs_done": job.epochs_done,
                                  "detail": f"{text}; a learning rate of {lr:g} is too high for this "
                                            f"recipe: try {lr / 10:g}",
                                  "lr": lr, "suggested_lr": lr / 10, "usable": False})
        except DigitnetError as exc:
            if watcher is not None:
                watcher.finish(weights=False)
            job.network = None
            job.emit("error", {"state": "error", "steps": job.steps, "epochs_done": job.epochs_done,
                               "detail": one_line(str(exc)), "usable": False})
        except MemoryError:
            if watcher is not None:
                watcher.finish(weights=False)
            job.network = None
            job.emit("error", {"state": "error", "steps": job.steps, "epochs_done": job.epochs_done,
                               "detail": "the computer ran out of memory while training: use fewer or "
                                         "smaller hidden layers, or fewer images", "usable": False})
        except Exception:
            logger.exception("training job %s failed", job.id)
            if watcher is not None:
                watcher.finish(weights=False)
            job.network = None
            job.emit("error", {"state": "error", "steps": job.steps, "epochs_done": job.epochs_done,
                               "detail": "internal error in the digitnet server (a bug); see the server's log",
                               "usable": False})
        else:
            watcher.finish()
            job.network = result.network
            job.metadata = dict(result.network.metadata)
            job.evaluation = {"test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy,
                              "train_seconds": result.seconds}
            job.emit("done", {"state": "done", "steps": job.steps, "epochs_done": job.epochs_done,
                              "test_accuracy": result.test_accuracy, "val_accuracy": result.val_accuracy,
                              "seconds": result.seconds,
                              "images_per_second": watcher.n_train * job.epochs_done / result.seconds
                              if result.seconds else None,
                              "detail": None, "usable": job.steps > 0})
        finally:
            sys.setswitchinterval(switch)
            job.finished.set()

    def _held_out(self, dataset, plan: Plan) -> tuple[tuple, str, int]:
        """The images each epoch is scored on: the split's validation set, else the test set."""
        from digitnet import data

        _, y_train, X_val, y_val = data.split(plan.preset.split, dataset.X_train, dataset.y_train,
                                              seed=plan.seed)
        n_train = min(plan.subset or len(y_train), len(y_train))
        if X_val is not None and len(y_val):
            return (X_val, np.asarray(y_val, dtype=np.int64)), "validation", n_train
        if dataset.X_test is None:
            raise DigitnetError("the training data has neither a validation split nor a test set to score")
        return (dataset.X_test, np.asarray(dataset.y_test, dtype=np.int64)), "test", n_train


# ---------------------------------------------------------------------------------
# HTTP


async def _read_json(request: Request) -> Any:
    media = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if not (media == "application/json" or media.endswith("+json")):
        shown = f'"{media}"' if media else "none"
        raise ApiError(415, f'unsupported Content-Type {shown}: send the recipe as JSON with '
                            f'"Content-Type: application/json"')
    declared = request.headers.get("content-length")
    too_large = f"the recipe is larger than {MAX_RECIPE_BYTES:,} bytes; a recipe is a few hundred"
    if declared is not None:
        if not declared.isdigit():
            raise ApiError(400, f"Content-Length {declared!r} is not a number")
        if int(declared) > MAX_RECIPE_BYTES:
            raise ApiError(413, too_large)
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > MAX_RECIPE_BYTES:
                raise ApiError(413, too_large)
    except ClientDisconnect:
        raise ApiError(400, "the client disconnected before sending the whole body") from None
    if not body:
        raise ApiError(400, 'the request body is empty: send a JSON recipe, such as {"preset": "best"} or {}')

    def no_constants(name):
        raise ValueError(f"{name} is not JSON")

    try:
        return json.loads(bytes(body), parse_constant=no_constants)
    except json.JSONDecodeError as exc:
        raise ApiError(400, f"the body is not valid JSON ({exc.msg} at line {exc.lineno} column {exc.colno}); "
                            "send a recipe such as {\"preset\": \"best\"}") from None
    except (ValueError, RecursionError) as exc:
        reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc) if "JSON" in str(exc) \
            else "not UTF-8 text"
        raise ApiError(400, f"the body is not valid JSON ({reason}); send a recipe such as "
                            "{\"preset\": \"best\"}") from None


def _last_event_id(request: Request) -> int:
    given = request.headers.getlist("last-event-id")
    if not given:
        return -1
    text = given[-1]
    if len(given) > 1 or not (text.isascii() and text.isdigit() and (text == "0" or text[0] != "0")
                              and len(text) <= 16):
        shown = text if len(text) <= 20 else text[:20] + "..."
        raise ApiError(422, f"header Last-Event-ID must be a whole number in plain digits (an event id this "
                            f"server sent), got {shown!r}")
    return int(text)


async def _event_stream(job: Job, last_id: int):
    """The job's events after ``last_id`` as Server-Sent Events, until its final event."""
    loop = asyncio.get_running_loop()
    wake = asyncio.Event()
    job.subscribe(loop, wake)
    try:
        yield "retry: 2000\n\n"
        while True:
            wake.clear()
            events, ended = job.events_after(last_id)
            if events:
                yield "".join(f"id: {e.id}\nevent: {e.name}\ndata: {e.text}\n\n" for e in events)
                last_id = events[-1].id
            if ended:
                return
            try:
                await asyncio.wait_for(wake.wait(), timeout=15)
            except asyncio.TimeoutError:
                yield ": still training\n\n"      # a comment: keeps idle connections open
    finally:
        job.unsubscribe(loop, wake)


def install(app: FastAPI, trainer: Trainer) -> None:
    """Add the training routes to ``app`` and stop running jobs when it shuts down."""

    # GET and POST as one route, so that a 405 for another method names both in Allow.
    @app.api_route("/api/train", methods=["GET", "POST"])
    async def train(request: Request):
        if request.method != "POST":
            return JSONResponse(trainer.options())
        payload = await _read_json(request)
        plan = await run_in_threadpool(trainer.plan, payload)      # may load the data: a thread
        job = trainer.start(plan)
        return JSONResponse(job.status(), status_code=202)

    @app.delete("/api/train/{job_id}")
    async def train_stop(job_id: str):
        trainer.job(job_id)
        return JSONResponse(await run_in_threadpool(trainer.stop, job_id))

    @app.get("/api/train/{job_id}/events")
    async def train_events(job_id: str, request: Request):
        job = trainer.job(job_id)
        last_id = _last_event_id(request)
        return StreamingResponse(_event_stream(job, last_id), media_type="text/event-stream",
                                 headers={"x-accel-buffering": "no"})

    @app.post("/api/train/{job_id}/use")
    async def train_use(job_id: str):
        return JSONResponse(await run_in_threadpool(trainer.use, job_id))

    @app.post("/api/train/{job_id}/save")
    async def train_save(job_id: str):
        return JSONResponse(await run_in_threadpool(trainer.save, job_id))

    previous = app.router.lifespan_context

    @contextlib.asynccontextmanager
    async def lifespan(app_):
        async with previous(app_) as state:
            try:
                yield state
            finally:
                await run_in_threadpool(trainer.shutdown)

    app.router.lifespan_context = lifespan


# ---------------------------------------------------------------------------------
# The OpenAPI document's part


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _answer(ref: str, description: str) -> dict:
    return {"description": description, "content": {"application/json": {"schema": _ref(ref)}}}


def _number_schema(name: str) -> dict:
    lo, lo_open, hi, hi_open = _NUMBER_RANGES[name]
    schema: dict = {"type": "number"}
    schema["exclusiveMinimum" if lo_open else "minimum"] = lo
    schema["exclusiveMaximum" if hi_open else "maximum"] = hi
    return schema


def _presets_where(test) -> list[str]:
    return [name for name in WEB_PRESETS if test(PRESETS[name])]


def _when_absent(field: str, presets: list[str]) -> dict | None:
    """A branch: ``field`` not given, and the preset (its default when absent) one of ``presets``."""
    if not presets:
        return None
    branch = {"not": {"required": [field]}, "properties": {"preset": {"enum": presets}}}
    if DEFAULT_PRESET not in presets:
        branch["required"] = ["preset"]
    return branch


def _recipe_rules(limits: TrainLimits) -> list[dict]:
    """The rules between fields, as JSON Schema ``if``/``then``: the core decides each of them."""
    rules = []
    # A preset beyond the caps trains only with the field that brings it within them.
    for field, too_big in (
            ("epochs", lambda p: p.epochs > limits.max_epochs),
            ("hidden_layers", lambda p: len(p.sizes) - 2 > limits.max_hidden_layers
             or max(p.sizes[1:-1], default=0) > limits.max_width)):
        names = _presets_where(too_big)
        if names:
            rules.append({"if": {"properties": {"preset": {"enum": names}}, "required": ["preset"]},
                          "then": {"required": [field]}})
        if DEFAULT_PRESET in names:
            rules.append({"if": {"not": {"required": ["preset"]}}, "then": {"required": [field]}})
    # Optimiser settings: only for an optimiser that takes them (the given one, else the preset's).
    for name, (_, takers) in HYPERPARAMETERS.items():
        branches = [{"required": ["optimizer"], "properties": {"optimizer": {"enum": list(takers)}}}]
        absent = _when_absent("optimizer", _presets_where(lambda p, takers=takers: p.optimizer in takers))
        if absent:
            branches.append(absent)
        rules.append({"if": {"required": [name]}, "then": {"anyOf": branches}})
    # Output layer and loss: Network's own check (valid_losses) says which go together.
    table = valid_losses()
    groups: dict[tuple, list[str]] = {}
    for output, losses in table.items():
        if set(losses) != set(LOSSES):
            groups.setdefault(losses, []).append(output)
    for losses, outputs in groups.items():
        branches = [{"required": ["loss"], "properties": {"loss": {"enum": list(losses)}}}]
        absent = _when_absent("loss", _presets_where(lambda p, losses=losses: p.loss in losses))
        if absent:
            branches.append(absent)
        rules.append({"if": {"required": ["output"], "properties": {"output": {"enum": outputs}}},
                      "then": {"anyOf": branches}})
    for loss in LOSSES:
        outputs = [o for o, ok in table.items() if loss in ok]
        fits = _presets_where(lambda p, outputs=outputs: p.output_activation in outputs)
        if set(fits) != set(WEB_PRESETS):
            then = {"properties": {"preset": {"enum": fits}}}
            if DEFAULT_PRESET not in fits:
                then["required"] = ["preset"]
            rules.append({"if": {"required": ["loss"], "properties": {"loss": {"const": loss}},
                                 "not": {"required": ["output"]}}, "then": then})
    return rules


def _request_schema(limits: TrainLimits) -> dict:
    props: dict = {
        "preset": {"enum": list(WEB_PRESETS), "default": DEFAULT_PRESET},
        "hidden_layers": {"type": "array", "maxItems": limits.max_hidden_layers,
                          "items": {"type": "integer", "minimum": 1, "maximum": limits.max_width}},
        "activation": {"enum": list(ACTIVATIONS)},
        "output": {"enum": list(ACTIVATIONS)},
        "loss": {"enum": list(LOSSES)},
        "optimizer": {"enum": list(OPTIMIZERS)},
        "lr": _number_schema("lr"),
        **{name: {**_number_schema(name), "description": f"{text}; for {', '.join(takers)}"}
           for name, (text, takers) in HYPERPARAMETERS.items()},
        "batch_size": {"type": ["integer", "null"], "minimum": 1, "maximum": limits.max_batch_size},
        "epochs": {"type": "integer", "minimum": 1, "maximum": limits.max_epochs},
        "l2": _number_schema("l2"),
        "schedule": {"enum": list(SCHEDULES)},
        "shift": {"type": "integer", "minimum": 0, "maximum": 8},
        "subset": {"type": "integer", "minimum": 1, "maximum": limits.max_subset},
        "seed": {"type": "integer", "minimum": 0, "maximum": 2**32 - 1, "default": 0},
    }
    for name, text in _FIELD_HELP.items():
        props[name].setdefault("description", text)
    assert list(props) == list(FIELDS)
    return {
        "type": "object",
        "title": "TrainRequest",
        "description": (
            "A recipe: a preset (default " + DEFAULT_PRESET + ") and any of its settings to change, checked "
            "as `digitnet train` checks them. Every field is optional; no others are allowed. The "
            "allOf rules state which settings go together (an optimiser setting needs an optimiser that "
            "takes it; a loss needs an output layer it works with), as the core decides. One rule JSON "
            "Schema cannot state: the run's memory, as digitnet.train.recipes.training_memory_bytes "
            f"estimates it, must be at most x-max-training-bytes ({limits.max_memory_bytes:,}) and fit "
            "in the computer's free memory; otherwise the answer is a 422 naming the fields to change."),
        "additionalProperties": False,
        "properties": props,
        "allOf": _recipe_rules(limits),
        "x-max-training-bytes": limits.max_memory_bytes,
    }


def _job_schema() -> dict:
    count = {"type": "integer", "minimum": 0}
    return {
        "type": "object",
        "title": "TrainJob",
        "description": "A training job: its recipe and where it stands.",
        "required": ["job", "state", "preset", "recipe", "n_params", "steps", "epochs_done", "epochs",
                     "created", "detail", "usable", "serving", "saved", "events"],
        "additionalProperties": False,
        "properties": {
            "job": {"type": "string", "pattern": JOB_ID_PATTERN},
            "state": {"enum": ["running", *FINAL_STATES]},
            "preset": {"enum": list(WEB_PRESETS)},
            "recipe": {"type": "object", "required": ["sizes", "activations", "loss", "optimizer", "lr",
                                                      "batch_size", "epochs", "seed", "subset"],
                       "description": "the effective recipe: the preset's settings with the overrides applied"},
            "n_params": count,
            "steps": count,
            "epochs_done": count,
            "epochs": {"type": "integer", "minimum": 1},
            "created": {"type": "string"},
            "detail": {"type": ["string", "null"], "description": "the final event's line, once there is one"},
            "usable": {"type": "boolean", "description": "whether use and save work now"},
            "serving": {"type": "boolean", "description": "whether the Draw view reads with this network"},
            "saved": {"type": ["string", "null"], "description": "the model file save wrote, if any"},
            "events": {"type": "string", "description": "the path of its event stream"},
            "stop_requested_at_step": {**count, "description": "DELETE only: the steps taken when it was asked "
                                                               "to stop (it stops within one more)"},
        },
    }


def _event_schemas() -> dict:
    """The data of each event (JSON), for reference and for the tests."""
    number = {"type": ["number", "null"]}
    count = {"type": "integer", "minimum": 0}
    point = {"type": "object", "required": ["step", "epoch", "batch", "loss", "accuracy", "rows", "lr"],
             "additionalProperties": False,
             "properties": {"step": count, "epoch": count, "batch": count, "loss": number,
                            "accuracy": {"type": "number", "minimum": 0, "maximum": 1}, "rows": count,
                            "lr": number}}
    final = {"type": "object", "required": ["state", "steps", "epochs_done", "detail", "usable"],
             "additionalProperties": False,
             "description": "done adds test_accuracy, val_accuracy, seconds and images_per_second; diverged "
                            "adds lr and suggested_lr (a tenth of it)",
             "properties": {"state": {"enum": list(FINAL_STATES)}, "steps": count, "epochs_done": count,
                            "detail": {"type": ["string", "null"]}, "usable": {"type": "boolean"},
                            "test_accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                            "val_accuracy": {"type": ["number", "null"], "minimum": 0, "maximum": 1},
                            "seconds": {"type": "number", "minimum": 0}, "images_per_second": number,
                            "lr": {"type": "number", "exclusiveMinimum": 0},
                            "suggested_lr": {"type": "number", "exclusiveMinimum": 0}}}
    matrix = {"type": "array", "minItems": N_CLASSES, "maxItems": N_CLASSES,
              "items": {"type": "array", "minItems": N_CLASSES, "maxItems": N_CLASSES, "items": count}}
    return {
        "TrainEventStart": {
            "type": "object",
            "required": ["job", "recipe", "n_params", "n_train", "batch_size", "batches", "epochs",
                         "points_every", "held_out"],
            "additionalProperties": False,
            "properties": {"job": {"type": "string", "pattern": JOB_ID_PATTERN}, "recipe": {"type": "object"},
                           "n_params": count, "n_train": count, "batch_size": count, "batches": count,
                           "epochs": count, "points_every": count,
                           "held_out": {"type": "object", "required": ["set", "size"],
                                        "properties": {"set": {"enum": ["validation", "test"]}, "size": count}}},
        },
        "TrainEventProgress": {
            "type": "object",
            "required": ["step", "epoch", "batch", "batches", "epochs", "loss", "accuracy", "lr", "seconds",
                         "points"],
            "additionalProperties": False,
            "properties": {"step": count, "epoch": count, "batch": count, "batches": count, "epochs": count,
                           "loss": number, "accuracy": {"type": "number", "minimum": 0, "maximum": 1},
                           "lr": number, "seconds": {"type": "number", "minimum": 0},
                           "points": {"type": "array", "minItems": 1, "items": point}},
        },
        "TrainEventWeights": {
            "type": "object",
            "required": ["step", "epoch", "seconds", "units", "of", "side", "data"],
            "additionalProperties": False,
            "properties": {"step": count, "epoch": count, "seconds": {"type": "number", "minimum": 0},
                           "units": count, "of": count, "side": {"const": SIDE},
                           "data": {"type": "string", "contentEncoding": "base64",
                                    "description": "units x 784 bytes: each unit's 28x28 weights, row by "
                                                   "row, scaled by the unit's largest |w| to 0..255 "
                                                   "(128 is 0)"}},
        },
        "TrainEventEpoch": {
            "type": "object",
            "required": ["epoch", "epochs", "step", "record", "images_per_second", "validation"],
            "additionalProperties": False,
            "properties": {"epoch": count, "epochs": count, "step": count,
                           "record": {"type": "object", "required": ["epoch", "loss", "accuracy", "val_loss",
                                                                     "val_accuracy", "lr", "seconds"]},
                           "images_per_second": number,
                           "validation": {"type": "object", "required": ["set", "size", "accuracy", "confusion"],
                                          "properties": {"set": {"enum": ["validation", "test"]}, "size": count,
                                                         "accuracy": {"type": "number", "minimum": 0,
                                                                      "maximum": 1},
                                                         "confusion": matrix}}},
        },
        "TrainEventFinal": final,
        "TrainEvent": _stream_event_schema(),
    }


#: Each event's name -> the schema of its data.
EVENT_DATA = {"start": "TrainEventStart", "progress": "TrainEventProgress", "weights": "TrainEventWeights",
              "epoch": "TrainEventEpoch", **{state: "TrainEventFinal" for state in FINAL_STATES}}


def _stream_event_schema() -> dict:
    """One Server-Sent Event of the stream: its name, id, and JSON data by the name's schema."""
    return {
        "type": "object",
        "title": "TrainEvent",
        "description": "one event of GET /api/train/{job_id}/events, as an SSE client reads it",
        "required": ["event", "data", "id"],
        "additionalProperties": False,
        "properties": {"event": {"enum": list(EVENT_DATA)}, "data": {"type": "string"},
                       "id": {"type": "string", "pattern": EVENT_ID_PATTERN}},
        "oneOf": [{"properties": {"event": {"const": name},
                                  "data": {"contentMediaType": "application/json", "contentSchema": _ref(ref)}}}
                  for name, ref in EVENT_DATA.items()],
    }


def add_to_openapi(document: dict, limits: TrainLimits) -> dict:
    """``document`` (the app's OpenAPI document) with the training routes and schemas added."""
    document["paths"].update(openapi_paths(limits))
    document["components"]["schemas"].update(openapi_schemas(limits))
    return document


def openapi_schemas(limits: TrainLimits) -> dict:
    """The components the training routes use."""
    return {
        "TrainRequest": _request_schema(limits),
        "TrainJob": _job_schema(),
        "TrainSaved": {
            "type": "object", "title": "TrainSaved",
            "required": ["job", "path", "name", "bytes"], "additionalProperties": False,
            "properties": {"job": {"type": "string", "pattern": JOB_ID_PATTERN},
                           "path": {"type": "string", "description": "the model file, in the server's folder"},
                           "name": {"type": "string", "pattern": "^web-[a-z-]+-[0-9a-f]{12}\\.npz$"},
                           "bytes": {"type": "integer", "minimum": 1}},
        },
        "TrainOptions": {
            "type": "object", "title": "TrainOptions",
            "description": "What the Train view offers: presets, the core's registries, the caps, the jobs.",
            "required": ["default_preset", "presets", "activations", "losses", "valid_losses", "optimizers",
                         "schedules", "limits", "jobs", "disabled"],
            "additionalProperties": False,
            "properties": {
                "default_preset": {"enum": list(WEB_PRESETS)},
                "presets": {"type": "object"},
                "activations": {"type": "array", "items": {"type": "string"}},
                "losses": {"type": "array", "items": {"type": "string"}},
                "valid_losses": {"type": "object", "description": "output activation -> the losses it takes"},
                "optimizers": {"type": "object"},
                "schedules": {"type": "array", "items": {"type": "string"}},
                "limits": {"type": "object"},
                "jobs": {"type": "array", "items": _ref("TrainJob")},
                "disabled": {"type": ["string", "null"],
                             "description": "why this server does not train (null: it does)"},
            },
        },
        **_event_schemas(),
    }


def openapi_paths(limits: TrainLimits) -> dict:
    """The training routes of the OpenAPI document."""
    error = "Error"
    job_param = {"name": "job_id", "in": "path", "required": True,
                 "description": "a job id, as POST /api/train answered it",
                 "schema": {"type": "string", "pattern": JOB_ID_PATTERN}}
    unknown = _answer(error, "no such job (or one forgotten: the server keeps the last few)")
    events = ", ".join(["start", "progress", "weights", "epoch", *FINAL_STATES])
    caps = (f"at most {limits.max_hidden_layers} hidden layers of at most {limits.max_width} units, "
            f"{limits.max_epochs} epochs, {limits.max_subset:,} images, and about "
            f"{_mib(limits.max_memory_bytes)} of memory (x-max-training-bytes)")
    return {
        "/api/train": {
            "get": {
                "summary": "What can be trained: presets, the core's registries, the caps, the recent jobs",
                "operationId": "train_options_api_train_get",
                "responses": {"200": _answer("TrainOptions", "the Train view's choices and the recent jobs")},
            },
            "post": {
                "summary": "Start training a recipe (one job at a time)",
                "operationId": "train_start_api_train_post",
                "description": (f"Caps: {caps}. A recipe the server would refuse is a 422 naming the "
                                "field; while another job runs, a 409."),
                "x-max-body-bytes": MAX_RECIPE_BYTES,
                "x-max-training-bytes": limits.max_memory_bytes,
                "x-limits": limits.as_dict(),
                "requestBody": {"required": True, "content": {"application/json": {
                    "schema": _ref("TrainRequest"), "x-max-body-bytes": MAX_RECIPE_BYTES}}},
                "responses": {
                    "202": _answer("TrainJob", "the job started; its events follow at /api/train/{job}/events"),
                    "400": _answer(error, "an empty body, or JSON that does not parse (NaN and Infinity "
                                          "included); a Content-Length that is not a number"),
                    "409": _answer(error, "another job is running"),
                    "413": _answer(error, f"a body over {MAX_RECIPE_BYTES:,} bytes"),
                    "415": _answer(error, "a Content-Type other than application/json"),
                    "422": _answer(error, "a recipe outside the schema or the caps, or one the core refuses "
                                          "(the line names the field)"),
                    "503": _answer(error, "this server does not train (digitnet serve --workers), or its "
                                          "training data cannot be loaded"),
                },
            },
        },
        "/api/train/{job_id}": {
            "delete": {
                "summary": "Stop a job (within one batch)",
                "operationId": "train_stop_api_train__job_id__delete",
                "description": "Answers once the job has stopped (or after 10 s); a finished job is left as it is.",
                "parameters": [job_param],
                "responses": {"200": _answer("TrainJob", "the job, stopped"), "404": unknown},
            },
        },
        "/api/train/{job_id}/events": {
            "get": {
                "summary": "The job's events, as Server-Sent Events",
                "operationId": "train_events_api_train__job_id__events_get",
                "description": (
                    f"Events: {events} (their data: the TrainEvent* schemas). progress at most every "
                    f"{limits.progress_every_s:g} s, weights at most every {limits.weights_every_s:g} s "
                    "besides the first and the last; exactly one final event (done, diverged, cancelled or "
                    "error), then the stream ends. A late client first gets everything so far (of the "
                    "weights, the first and the latest). Each event has an id; Last-Event-ID resumes after it."),
                "parameters": [job_param, {
                    "name": "Last-Event-ID", "in": "header", "required": False,
                    "description": "send only the events after this id (what EventSource sends on reconnecting)",
                    "schema": {"type": "string", "pattern": EVENT_ID_PATTERN}}],
                "responses": {
                    "200": {"description": "text/event-stream: `id`, `event` and one `data` line of JSON per event",
                            "content": {"text/event-stream": {"schema": _ref("TrainEvent")}}},
                    "404": unknown,
                    "422": _answer(error, "a Last-Event-ID that is not a whole number"),
                },
            },
        },
        "/api/train/{job_id}/use": {
            "post": {
                "summary": "Put the job's network behind the Draw view (Try it)",
                "operationId": "train_use_api_train__job_id__use_post",
                "parameters": [job_param],
                "responses": {"200": _answer("TrainJob", "the Draw view now reads with this network"),
                              "404": unknown,
                              "409": _answer(error, "the job is still running, diverged, failed, or stopped "
                                                    "before its first step")},
            },
        },
        "/api/train/{job_id}/save": {
            "post": {
                "summary": "Save the job's network as a model file in the server's folder",
                "operationId": "train_save_api_train__job_id__save_post",
                "parameters": [job_param],
                "responses": {"200": _answer("TrainSaved", "written (atomically); its name and path"),
                              "404": unknown,
                              "409": _answer(error, "the job is still running, diverged, failed, or stopped "
                                                    "before its first step"),
                              "503": _answer(error, "the file cannot be written (the line says why)")},
            },
        },
    }
