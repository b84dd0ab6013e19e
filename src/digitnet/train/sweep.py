"""Sweeps: many seeded recipe runs from one description, on this machine or on Ray.

A sweep starts from a preset and changes some of its fields: every value of
a *grid* (``{"lr": [0.03, 0.3, 3, 30], "layers": ["784-30-10", "784-100-10"]}``,
all combinations), ``random`` points drawn from *ranges*
(``{"lr": "log:1e-3..1"}``), each for every seed.  Every trial is one
:func:`~digitnet.train.recipes.train_recipe` run, the code ``digitnet train``
runs, and writes its model file; the table of results goes to
``OUT/results.json`` and ``OUT/results.csv`` after every trial, and the best
trial's model is copied to ``OUT/best.npz``.

>>> from digitnet.train.sweep import plan_trials
>>> [t.params for t in plan_trials("nielsen", {"lr": "0.3,3"}).trials]
[{'lr': 0.3}, {'lr': 3.0}]

The trials run in worker processes of this machine (a standard-library
process pool, ``parallel`` of them, each with ``threads`` BLAS threads,
set in its environment before NumPy loads) or, with ``ray=``, as Ray tasks on
a local Ray or an existing cluster.  Running the same sweep again into the
same folder skips the trials that finished (a trial is known by a digest of
its whole recipe, seed, data and subset); Ctrl-C keeps every finished trial.
A trial whose loss becomes NaN is recorded as ``diverged`` with its last good
epoch; one that fails otherwise as ``failed`` with the error (and is run
again next time).

The pictures and the HTML page of a sweep are drawn by
:mod:`digitnet.app.sweep_report` (``digitnet sweep`` draws them).
"""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import io
import itertools
import json
import math
import os
import re
import signal
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import DigitnetError, TrainingDiverged

__all__ = ["sweep", "SweepResult", "SweepInterrupted", "SweepProgress", "Trial", "Plan",
           "plan_trials", "parse_grid", "parse_range", "run_trial", "FIELDS", "COLUMNS",
           "available_cores", "thread_environment", "load_results"]

#: Version of the results file's layout.
RESULTS_FORMAT = 1

#: Result columns after the swept fields (``results.csv`` has exactly these, in this order).
COLUMNS = ("seed", "status", "val_accuracy", "test_accuracy", "train_loss", "val_loss", "epochs_done",
           "last_good_epoch", "seconds", "wall_seconds", "model", "error", "host", "key")

#: A trial's status: trained to the end, stopped by a NaN loss, or failed with an error.
STATUSES = ("ok", "diverged", "failed")

#: Environment variables that fix the BLAS (and OpenMP) thread count of a process, read
#: when NumPy loads its BLAS library.
THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                    "BLIS_NUM_THREADS", "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS")


class SweepInterrupted(KeyboardInterrupt):
    """Ctrl-C during :func:`sweep`: the finished trials are saved; ``result`` is their table."""

    def __init__(self, result: "SweepResult"):
        super().__init__("sweep interrupted")
        self.result = result


# ---------------------------------------------------------------------------------
# The fields a sweep can change


def _number(field_name: str, text, *, kind=float, low=None, low_open=False, high=None):
    """``text`` as a number of ``kind`` within bounds, or a one-line error naming the field."""
    if isinstance(text, bool):
        raise DigitnetError(f"{field_name} must be a number, got {text!r}")
    try:
        if kind is int:
            value = float(text) if not isinstance(text, (int, np.integer)) else int(text)
            if isinstance(value, float):
                if not value.is_integer():
                    raise ValueError
                value = int(value)
        else:
            value = float(text)
    except (TypeError, ValueError, OverflowError):
        word = "a whole number" if kind is int else "a number"
        raise DigitnetError(f"{field_name} must be {word}, got {text!r}") from None
    if kind is float and not math.isfinite(value):
        raise DigitnetError(f"{field_name} must be a finite number, got {text!r}")
    if low is not None and (value <= low if low_open else value < low):
        sign = ">" if low_open else "≥"
        raise DigitnetError(f"{field_name} must be {sign} {low:g}, got {text!r}")
    if high is not None and value > high:
        raise DigitnetError(f"{field_name} must be ≤ {high:g}, got {text!r}")
    return value


def _layers(field_name, text) -> str:
    """``"784-30-10"`` (or a list of sizes) → ``"784-30-10"``."""
    if isinstance(text, (list, tuple)):
        parts = [str(p) for p in text]
    else:
        parts = re.split(r"\s*[-x:]\s*", str(text).strip())
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        raise DigitnetError(f"{field_name} must be whole numbers joined by '-', like 784-30-10, "
                            f"got {text!r}") from None
    if len(sizes) < 2:
        raise DigitnetError(f"{field_name} needs at least an input and an output size, like "
                            f"784-30-10, got {text!r}")
    if min(sizes) < 1:
        raise DigitnetError(f"every layer needs at least 1 unit, got {text!r}")
    return "-".join(map(str, sizes))


def _batch(field_name, text):
    if isinstance(text, str) and text.strip().lower() in ("full", "all", "none") or text is None:
        return "full"
    return _number(field_name, text, kind=int, low=1)


def _registry(resolve):
    def check(field_name, text):
        name = str(text).strip()
        resolve(name)          # raises the registry's own one-line list of choices
        return name
    return check


def _choice(choices):
    def check(field_name, text):
        name = str(text).strip().lower()
        if name not in choices:
            raise DigitnetError(f"unknown {field_name} {text!r}: choose one of {', '.join(choices)}")
        return name
    return check


def _schedule(field_name, text):
    from ..nn.schedules import SCHEDULES

    if text is None:
        return "constant"
    return _choice(tuple(SCHEDULES))(field_name, text)


def _fields() -> dict:
    """Field name → (parser, what it overrides, numeric kind or None)."""
    from ..data import SPLITS
    from ..nn.activations import get_activation
    from ..nn.initializers import resolve_initializer
    from ..nn.losses import get_loss
    from ..nn.optimizers import all_hyperparameters, get_optimizer

    fields = {
        "layers": (_layers, "sizes", None),
        "activation": (_registry(get_activation), "activation", None),
        "output": (_registry(get_activation), "output", None),
        "loss": (_registry(get_loss), "loss", None),
        "init": (_registry(resolve_initializer), "init", None),
        "optimizer": (_registry(get_optimizer), "optimizer", None),
        "lr": (lambda n, t: _number(n, t, low=0, low_open=True), "lr", float),
        "batch_size": (_batch, "batch_size", int),
        "epochs": (lambda n, t: _number(n, t, kind=int, low=1), "epochs", int),
        "l2": (lambda n, t: _number(n, t, low=0), "l2", float),
        "schedule": (_schedule, "schedule", None),
        "scale": (_choice(("unit", "symmetric")), "scale", None),
        "split": (_choice(tuple(SPLITS)), "split", None),
        "shift": (lambda n, t: _number(n, t, kind=int, low=0, high=8), "shift", int),
        "data": (lambda n, t: str(t).strip(), "data", None),
    }
    for name in all_hyperparameters():
        fields[name] = (lambda n, t: _number(n, t), name, float)
    # Any other field of the recipe (the augmentations, dropout…), by the type of its default;
    # Preset.check judges the values.
    from .recipes import Preset

    for spec in dataclasses.fields(Preset):
        if spec.name in fields or spec.name in _NOT_SWEPT:
            continue
        default = spec.default
        if isinstance(default, bool):
            continue
        if isinstance(default, int):
            fields[spec.name] = (lambda n, t: _number(n, t, kind=int), spec.name, int)
        elif isinstance(default, float):
            fields[spec.name] = (lambda n, t: _number(n, t), spec.name, float)
        elif isinstance(default, str):
            fields[spec.name] = (lambda n, t: str(t).strip(), spec.name, None)
    return fields


#: Recipe fields a sweep leaves alone: names and prose, and those set through other fields
#: (``sizes`` is ``layers``; ``activations`` are ``activation`` and ``output``).
_NOT_SWEPT = {"name", "source", "published", "notes", "reported_on", "optimizer_options", "sizes",
              "activations"}


#: The fields a sweep can change (Preset fields, plus ``activation``/``output``
#: and every optimiser hyperparameter); filled on first use.
FIELDS: dict = {}
_ALIASES = {"sizes": "layers", "batch": "batch_size", "rate": "lr", "learning_rate": "lr",
            "hidden_activation": "activation"}


def _field_table() -> dict:
    if not FIELDS:
        FIELDS.update(_fields())
    return FIELDS


def field_name(name) -> str:
    """The canonical name of a sweepable field (``batch-size`` → ``batch_size``), or a one-line error."""
    key = str(name).strip().lower().replace("-", "_")
    key = _ALIASES.get(key, key)
    if key not in _field_table():
        raise DigitnetError(f"unknown field {str(name)!r}: a sweep can change "
                            f"{', '.join(_field_table())}")
    return key


def parse_value(name: str, value):
    """One value of field ``name`` in its canonical form (a number, a name, ``"784-30-10"``)."""
    parse, _, _ = _field_table()[name]
    return parse(name, value)


def parse_grid(grid) -> dict:
    """``{"lr": "0.03,0.3"}``, ``{"lr": [0.03, 0.3]}`` or ``["lr=0.03,0.3", …]`` → ``{field: [values]}``.

    Raises a one-line :class:`DigitnetError` for an unknown field, a field
    given twice, a field without values, or a value the field cannot take.
    """
    items = _items(grid, "--grid", "FIELD=V1,V2,…, like lr=0.03,0.3,3")
    out: dict = {}
    for given, values in items:
        name = field_name(given)
        if name in out:
            raise DigitnetError(f"--grid gives {name} twice: list all its values in one "
                                f"--grid {name}=V1,V2,…")
        if isinstance(values, str):
            values = [v for v in (part.strip() for part in values.split(",")) if v != ""]
        elif name == "layers" and isinstance(values, (list, tuple)) and values and \
                all(isinstance(v, (int, np.integer)) for v in values):
            values = [values]      # one architecture given as a list of sizes
        else:
            values = list(values) if isinstance(values, (list, tuple, range, np.ndarray)) else [values]
        if not values:
            raise DigitnetError(f"--grid {given}= has no values: give them separated by commas, "
                                f"like {name}={_example(name)}")
        parsed = []
        for value in values:
            value = parse_value(name, value)
            if value not in parsed:
                parsed.append(value)
        out[name] = parsed
    return out


def _example(name):
    return {"layers": "784-30-10,784-100-10", "activation": "sigmoid,relu"}.get(name, "0.03,0.3,3")


def _items(spec, flag, form):
    """``(field, value)`` pairs from a mapping or a list of ``"field=value"`` strings."""
    if spec is None:
        return []
    if isinstance(spec, dict):
        return list(spec.items())
    if isinstance(spec, str):
        spec = [spec]
    items = []
    for text in spec:
        if not isinstance(text, str) or "=" not in text:
            raise DigitnetError(f"{flag} {text!r} is not FIELD=VALUES: write {form}")
        name, _, values = text.partition("=")
        if not name.strip():
            raise DigitnetError(f"{flag} {text!r} names no field: write {form}")
        items.append((name.strip(), values))
    return items


@dataclass(frozen=True)
class Range:
    """Where random values of a field are drawn: uniformly, or log-uniformly (``log``)."""

    low: float
    high: float
    log: bool = False

    def text(self) -> str:
        return f"{'log:' if self.log else ''}{self.low:g}..{self.high:g}"


_RANGE_FORM = "FIELD=[log:]LOW..HIGH, like lr=log:1e-3..1"


def parse_range(name, text) -> tuple[str, Range]:
    """``("lr", "log:1e-3..1")`` → ``("lr", Range(0.001, 1.0, log=True))``; one-line errors."""
    key = field_name(name)
    kind = _field_table()[key][2]
    if kind is None:
        numeric = ", ".join(n for n, f in _field_table().items() if f[2] is not None)
        raise DigitnetError(f"--range {name}: {key} is not a number; draw only numeric fields "
                            f"({numeric}) and give {key} in --grid")
    if isinstance(text, Range):
        spec = text
    elif isinstance(text, (tuple, list)) and len(text) in (2, 3):
        log = len(text) == 3 and str(text[0]).lower() == "log"
        low, high = (text[1], text[2]) if len(text) == 3 else text
        spec = Range(_range_number(key, name, low), _range_number(key, name, high), log)
    else:
        body = str(text).strip()
        log = body.lower().startswith("log:")
        if log:
            body = body[4:].strip()
        low, sep, high = body.partition("..")
        if not sep or not low.strip() or not high.strip():
            raise DigitnetError(f"--range {name}={text} is not a range: write {_RANGE_FORM}")
        spec = Range(_range_number(key, name, low.strip()), _range_number(key, name, high.strip()), log)
    if not spec.low < spec.high:
        raise DigitnetError(f"--range {name}={spec.text()}: the low end must be below the high end")
    if spec.log and spec.low <= 0:
        raise DigitnetError(f"--range {name}={spec.text()}: a log range needs a low end above 0")
    for end in (spec.low, spec.high):
        parse_value(key, int(end) if kind is int and float(end).is_integer() else end)
    return key, spec


def _range_number(key, given, text) -> float:
    try:
        value = float(text)
    except (TypeError, ValueError):
        raise DigitnetError(f"--range {given}: {text!r} is not a number: write {_RANGE_FORM}") from None
    if not math.isfinite(value):
        raise DigitnetError(f"--range {given}: the ends must be finite numbers, got {text!r}")
    return value


def parse_ranges(ranges) -> dict:
    out = {}
    for given, text in _items(ranges, "--range", _RANGE_FORM):
        key, spec = parse_range(given, text)
        if key in out:
            raise DigitnetError(f"--range gives {key} twice")
        out[key] = spec
    return out


def _draw(rng, key: str, spec: Range):
    """One random value of ``key`` in ``spec``, rounded to 3 significant figures (whole for counts)."""
    kind = _field_table()[key][2]
    u = rng.random()
    if spec.log:
        value = math.exp(math.log(spec.low) + u * (math.log(spec.high) - math.log(spec.low)))
    else:
        value = spec.low + u * (spec.high - spec.low)
    if kind is int:
        return int(min(max(round(value), math.ceil(spec.low)), math.floor(spec.high)))
    value = float(f"{value:.3g}")
    return min(max(value, spec.low), spec.high)


# ---------------------------------------------------------------------------------
# The plan: which trials a sweep has


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: the swept fields' values and a seed.

    ``number`` is its place in the plan (1-based), ``key`` a digest of
    everything that decides its result (the whole recipe after the changes,
    the seed, the data and the subset): the same key, the same model.
    """

    number: int
    params: dict
    seed: int
    key: str
    overrides: dict
    model: str
    data: str = "mnist"


@dataclass
class Plan:
    preset: object
    fields: list
    grid: dict
    ranges: dict
    random: int
    sample_seed: int
    seeds: list
    epochs: int | None
    subset: int | None
    data: str
    trials: list

    def describe(self) -> dict:
        return {"preset": self.preset.name, "fields": list(self.fields),
                "grid": {k: list(v) for k, v in self.grid.items()},
                "ranges": {k: r.text() for k, r in self.ranges.items()},
                "random": self.random, "sample_seed": self.sample_seed, "seeds": list(self.seeds),
                "epochs": self.epochs, "subset": self.subset, "data": self.data}


def _override(name, value) -> tuple[str, object]:
    target = _field_table()[name][1]
    if name == "layers":
        return target, [int(s) for s in value.split("-")]
    if name == "batch_size":
        return target, None if value == "full" else value
    if name == "schedule":
        return target, None if value == "constant" else value
    return target, value


def _seeds(seeds) -> list:
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool):
        if seeds < 1:
            raise DigitnetError(f"seeds must be 1 or more, got {seeds}")
        return list(range(int(seeds)))
    try:
        out = [int(s) for s in seeds]
    except (TypeError, ValueError):
        raise DigitnetError(f"seeds must be a count or a list of whole numbers ≥ 0, got {seeds!r}") \
            from None
    if not out or min(out) < 0 or len(set(out)) != len(out):
        raise DigitnetError(f"seeds must be distinct whole numbers ≥ 0, got {seeds!r}")
    return out


def _slug(params: dict, seed: int) -> str:
    parts = [f"{k}{v:g}" if isinstance(v, float) else f"{k}{v}" for k, v in params.items()]
    text = "_".join(parts + [f"seed{seed}"])
    return re.sub(r"[^A-Za-z0-9._+-]", "-", text)[:90]


def plan_trials(preset="best", grid=None, *, random: int = 0, ranges=None, sample_seed: int = 0,
                seeds=1, epochs=None, subset=None, data=None) -> Plan:
    """Every trial of a sweep, in order (grid values, then random draws, then seeds).

    Checks everything that can be checked without training: the fields and
    their values, the ranges, and each trial's recipe (``Preset.check`` and the
    memory it needs); each problem is a one-line :class:`DigitnetError`.
    """
    from .recipes import check_training_memory, get_preset, recorded_source

    base = get_preset(preset)
    grid = parse_grid(grid)
    ranges = parse_ranges(ranges)
    if isinstance(random, bool) or not isinstance(random, (int, np.integer)) or random < 0:
        raise DigitnetError(f"random must be a whole number of draws ≥ 0, got {random!r}")
    random = int(random)
    if ranges and not random:
        raise DigitnetError("--range needs --random N: how many points to draw from the ranges")
    if random and not ranges:
        raise DigitnetError("--random needs at least one --range FIELD=[log:]LOW..HIGH to draw from")
    both = sorted(set(grid) & set(ranges))
    if both:
        raise DigitnetError(f"{both[0]} is in --grid and in --range: give it in one of them")
    seeds = _seeds(seeds)
    if epochs is not None:
        epochs = _number("epochs", epochs, kind=int, low=1)
        if "epochs" in grid or "epochs" in ranges:
            raise DigitnetError("epochs is swept and also set for the whole sweep: give one of them")
    if subset is not None:
        subset = _number("subset", subset, kind=int, low=1)
    if not grid and not random and len(seeds) == 1:
        raise DigitnetError("nothing to sweep: give --grid FIELD=V1,V2,… (or --random N with "
                            "--range FIELD=LOW..HIGH, or --seeds N)")
    data_text = base.data if data is None else str(data)
    data_source = recorded_source(data_text)

    rng = np.random.default_rng(int(sample_seed))
    draws = []
    for _ in range(random):
        draw = {k: _draw(rng, k, spec) for k, spec in ranges.items()}
        if draw not in draws:       # a narrow range of whole numbers can repeat itself
            draws.append(draw)
    draws = draws or [{}]
    points = [dict(zip(grid, combo)) for combo in itertools.product(*grid.values())]
    fields = list(grid) + list(ranges)
    fixed = {} if epochs is None else {"epochs": epochs}
    trials, checked = [], {}
    for point in points:
        for draw in draws:
            params = {**point, **draw}
            overrides = dict(_override(k, v) for k, v in params.items())
            recipe = base.with_overrides({k: v for k, v in overrides.items() if k != "data"})
            recipe = dataclasses.replace(recipe, **fixed)
            trial_data = recorded_source(params["data"]) if "data" in params else data_source
            signature = json.dumps(_recipe_signature(recipe), sort_keys=True)
            if signature not in checked:
                try:
                    recipe.check()
                    check_training_memory(recipe, n_train=subset or 0)
                except DigitnetError as exc:
                    where = ", ".join(f"{k} {show_value(v)}" for k, v in params.items())
                    raise DigitnetError(f"the trial {where}: {exc}") from None
                checked[signature] = recipe
            for seed in seeds:
                key = _key(recipe, seed, subset, trial_data)
                trials.append(Trial(len(trials) + 1, dict(params), seed, key, overrides,
                                    f"models/{_slug(params, seed)}-{key[:8]}.npz", trial_data))
    keys = [t.key for t in trials]
    if len(set(keys)) != len(keys):
        same = next(t for t in trials if keys.count(t.key) > 1)
        raise DigitnetError(f"two trials are the same run (trial {same.number}: "
                            f"{', '.join(f'{k} {show_value(v)}' for k, v in same.params.items())}): "
                            "list each value once")
    return Plan(base, fields, grid, ranges, random, int(sample_seed), seeds, epochs, subset,
                data_source, trials)


def _recipe_signature(recipe) -> dict:
    out = recipe.to_dict()
    for text_field in ("name", "source", "published", "notes"):
        out.pop(text_field, None)
    return out


def _key(recipe, seed, subset, data) -> str:
    text = json.dumps({"recipe": _recipe_signature(recipe), "seed": seed, "subset": subset,
                       "data": data}, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def show_value(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


# ---------------------------------------------------------------------------------
# One trial (in a worker process or a Ray task)


def thread_environment(threads: int) -> dict:
    """The environment variables that give a process ``threads`` BLAS threads."""
    return {name: str(int(threads)) for name in THREAD_VARIABLES}


def available_cores() -> int:
    """The cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def _thread_limit(threads):
    """threadpoolctl's limit where it is installed (the environment did the rest)."""
    import contextlib

    if not threads:
        return contextlib.nullcontext()
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return contextlib.nullcontext()
    return threadpool_limits(limits=int(threads))


def run_trial(spec: dict) -> dict:
    """Train one trial; return its row (never raises for a bad trial: the row says ``failed``).

    ``spec`` holds ``preset`` (a :meth:`Preset.to_dict`), ``overrides``,
    ``seed``, ``epochs``, ``subset``, ``data``, ``key``, ``threads``, and
    either ``model_path`` (write the model there) or ``return_model`` (write
    it to a temporary file and return its bytes as ``model_bytes``: a Ray
    worker on another machine cannot write into the driver's folder).
    """
    import tempfile

    from .recipes import Preset, train_recipe

    started = time.perf_counter()
    row = {"key": spec["key"], "seed": spec["seed"], "status": "failed", "val_accuracy": None,
           "test_accuracy": None, "train_loss": None, "val_loss": None, "epochs_done": 0,
           "last_good_epoch": None, "seconds": None, "wall_seconds": None, "model": None,
           "error": None, "host": socket.gethostname(), "history": []}
    temp_dir = None
    try:
        if spec.get("return_model"):
            temp_dir = tempfile.TemporaryDirectory(prefix="digitnet-trial-")
            out = Path(temp_dir.name) / "model.npz"
        else:
            out = Path(spec["model_path"])
        with _thread_limit(spec.get("threads")):
            result = train_recipe(Preset.from_dict(spec["preset"]), data=spec.get("data"),
                                  seed=spec["seed"], epochs=spec.get("epochs"),
                                  subset=spec.get("subset"), overrides=spec.get("overrides") or None,
                                  out=out)
        records = [dict(r) for r in result.history.records]
        row.update(status="ok", val_accuracy=result.val_accuracy, test_accuracy=result.test_accuracy,
                   epochs_done=len(records), seconds=result.seconds, history=records,
                   model=str(out))
        if records:
            row.update(train_loss=records[-1].get("loss"), val_loss=records[-1].get("val_loss"))
        if spec.get("return_model"):
            row["model_bytes"] = out.read_bytes()
            row["model"] = None
    except TrainingDiverged as exc:
        history = getattr(exc, "history", None)
        records = [dict(r) for r in history.records] if history is not None else []
        row.update(status="diverged", epochs_done=len(records), last_good_epoch=len(records),
                   history=records, error=str(exc).split(" The weights of")[0].strip())
        if records:
            row.update(train_loss=records[-1].get("loss"), val_loss=records[-1].get("val_loss"),
                       seconds=sum(r.get("seconds") or 0.0 for r in records))
    except DigitnetError as exc:
        row["error"] = " ".join(str(exc).split())
    except MemoryError:
        row["error"] = "out of memory: use fewer or smaller layers, or a smaller --subset"
    except Exception as exc:  # a bug in one trial must not end the sweep: record it
        row["error"] = f"{type(exc).__name__}: {' '.join(str(exc).split())}"
    finally:
        if temp_dir is not None:
            temp_dir.cleanup()
    row["wall_seconds"] = time.perf_counter() - started
    return row


# ---------------------------------------------------------------------------------
# Running the trials: a local process pool, or Ray


class SweepProgress:
    """Hooks for showing a sweep as it goes; override what you need.

    ``on_start(result, todo)``: before the first trial, ``result`` holding the
    trials kept from an earlier run and ``todo`` the number still to run;
    ``on_trial(row, result)``: a trial finished (``result`` already has it);
    ``on_wait(result, elapsed)``: about once a second while trials run.
    """

    def on_start(self, result: "SweepResult", todo: int) -> None:
        pass

    def on_trial(self, row: dict, result: "SweepResult") -> None:
        pass

    def on_wait(self, result: "SweepResult", elapsed: float) -> None:
        pass


def _worker_init(threads):
    # Ctrl-C belongs to the parent, which stops the workers itself; a worker that
    # saw it too would die with a traceback in the middle of the terminal.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.environ.update(thread_environment(threads))


def _run_local(specs, parallel, threads, deliver, tick):
    """Run ``specs`` in a standard-library process pool; ``deliver(spec, row)`` as each ends."""
    import concurrent.futures as cf
    import multiprocessing

    # "spawn": a fresh interpreter per worker, so the BLAS thread count set in its
    # environment is read when it loads NumPy (a forked child would inherit the
    # parent's BLAS, already started).
    context = multiprocessing.get_context("spawn")
    before = set(multiprocessing.active_children())
    in_main = threading.current_thread() is threading.main_thread()
    saved_env = {name: os.environ.get(name) for name in THREAD_VARIABLES}
    saved_int = signal.getsignal(signal.SIGINT) if in_main else None
    futures = {}
    executor = None
    try:
        os.environ.update(thread_environment(threads))
        if in_main:   # workers started now inherit "ignore SIGINT" from their first instruction
            signal.signal(signal.SIGINT, signal.SIG_IGN)
        executor = cf.ProcessPoolExecutor(max_workers=parallel, mp_context=context,
                                          initializer=_worker_init, initargs=(threads,))
        for spec in specs:
            futures[executor.submit(run_trial, spec)] = spec
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if in_main:   # (None: a handler set outside Python; Python's own is the best guess)
            signal.signal(signal.SIGINT, signal.default_int_handler if saved_int is None else saved_int)
    workers = set(multiprocessing.active_children()) - before
    try:
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=1.0, return_when=cf.FIRST_COMPLETED)
            for future in sorted(done, key=lambda f: futures[f]["number"]):
                spec = futures[future]
                try:
                    row = future.result()
                except cf.process.BrokenProcessPool:
                    row = _failed_row(spec, "a worker process died (killed, or out of memory) "
                                            "and stopped the pool")
                except Exception as exc:  # the row could not come back (a pickling problem…)
                    row = _failed_row(spec, f"{type(exc).__name__}: {exc}")
                deliver(spec, row)
            tick()
    except BaseException:
        for future in futures:
            future.cancel()
        workers |= set(multiprocessing.active_children()) - before
        for process in workers:
            if process.is_alive():
                process.terminate()
        executor.shutdown(wait=True, cancel_futures=True)
        raise
    executor.shutdown(wait=True)


def _failed_row(spec, message) -> dict:
    return {"key": spec["key"], "seed": spec["seed"], "status": "failed", "val_accuracy": None,
            "test_accuracy": None, "train_loss": None, "val_loss": None, "epochs_done": 0,
            "last_good_epoch": None, "seconds": None, "wall_seconds": None, "model": None,
            "error": message, "host": None, "history": []}


def _import_ray():
    try:
        import ray
    except ImportError:
        raise DigitnetError("--ray needs Ray: pip install 'digitnet[ray]'") from None
    return ray


def _check_address(address: str) -> None:
    """Fail in a moment, not after Ray's minute of retries, when nothing listens at ``address``."""
    text = address.split("://", 1)[-1].strip().rstrip("/")
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise DigitnetError(f"--ray {address!r} is not an address: give HOST:PORT (the head node's "
                            "address that 'ray start --head' prints), 'auto', or nothing for a local Ray")
    host = host.strip("[]")
    try:
        with socket.create_connection((host, int(port)), timeout=3.0):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise DigitnetError(f"cannot reach a Ray cluster at {address} ({reason}): start one with "
                            "'ray start --head' on the head node, or check the address and port") \
            from None


def _connect_ray(ray, address, cpus):
    """``ray.init`` for a local Ray (``address`` None) or an existing cluster; one-line errors."""
    import logging

    quiet = dict(include_dashboard=False, log_to_driver=False, logging_level=logging.ERROR,
                 configure_logging=True)
    try:
        if address in (None, "", "local"):
            ray.init(num_cpus=cpus, **quiet)
        elif str(address).lower() == "auto":
            ray.init(address="auto", **quiet)
        else:
            _check_address(str(address))
            ray.init(address=str(address), **quiet)
    except DigitnetError:
        raise
    except ConnectionError:
        where = "running on this machine" if str(address).lower() == "auto" else f"at {address}"
        raise DigitnetError(f"no Ray cluster is {where}: start one with 'ray start --head', or give "
                            "--ray without an address for a local Ray") from None
    except (ValueError, RuntimeError, TimeoutError) as exc:
        raise DigitnetError(f"cannot start Ray {'locally' if address in (None, '', 'local') else 'at ' + str(address)}: "
                            f"{' '.join(str(exc).split())[:200]}") from None


def _run_ray(specs, threads, deliver, tick):
    """Run ``specs`` as tasks of the connected Ray (one CPU per BLAS thread); ``deliver(spec, row)``
    as each ends.  Ray's scheduler places them; the models come back as bytes."""
    ray = _import_ray()
    # A fresh worker process gets the thread count in its environment before it loads NumPy.
    task = ray.remote(run_trial).options(num_cpus=threads, max_retries=0,
                                         runtime_env={"env_vars": thread_environment(threads)})
    refs = {}
    for spec in specs:
        refs[task.remote({**spec, "return_model": True})] = spec
    pending = list(refs)
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1, timeout=1.0)
            for ref in ready:
                spec = refs[ref]
                try:
                    row = ray.get(ref)
                except Exception as exc:   # the task's worker died, the node went away…
                    row = _failed_row(spec, f"Ray: {type(exc).__name__}: "
                                            f"{' '.join(str(exc).split())[:200]}")
                deliver(spec, row)
            tick()
    except BaseException:
        for ref in pending:
            try:
                ray.cancel(ref, force=True)
            except Exception:
                pass
        raise


# ---------------------------------------------------------------------------------
# The results


@dataclass
class SweepResult:
    """The table of a sweep: one row (a dict) per finished trial, in the plan's order.

    Each row has the swept fields (``fields``), then :data:`COLUMNS`
    (``seed``, ``status``, ``val_accuracy``, ``test_accuracy``, ``train_loss``,
    ``val_loss``, ``epochs_done``, ``last_good_epoch``, ``seconds``,
    ``wall_seconds``, ``model``, ``error``, ``host``, ``key``), ``trial`` (its
    number in the plan) and ``history`` (the per-epoch records).
    ``result["lr"]`` is a column, ``result[0]`` a row.  ``best`` is the row
    with the highest ``ranked_by`` (validation accuracy, or test accuracy for
    data without a validation split) among the trials that trained to the end.
    """

    rows: list
    fields: list
    out: Path
    total: int
    plan: dict = field(default_factory=dict)
    reused: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    backend: str = "local"

    def __len__(self):
        return len(self.rows)

    def __iter__(self):
        return iter(self.rows)

    def __getitem__(self, item):
        if isinstance(item, str):
            return [row.get(item) for row in self.rows]
        return self.rows[item]

    @property
    def varied(self) -> list:
        """The fields that take more than one value (a one-value grid field just changes the preset)."""
        grid = self.plan.get("grid") or {}
        ranges = self.plan.get("ranges") or {}
        return [f for f in self.fields if f in ranges or len(grid.get(f, ())) > 1]

    @property
    def ranked_by(self) -> str:
        if any(row.get("val_accuracy") is not None for row in self.rows):
            return "val_accuracy"
        return "test_accuracy"

    @property
    def best(self) -> dict | None:
        key = self.ranked_by
        ok = [row for row in self.rows if row["status"] == "ok" and row.get(key) is not None]
        return max(ok, key=lambda row: (row[key], -row["trial"])) if ok else None

    def count(self, status: str) -> int:
        return sum(row["status"] == status for row in self.rows)

    @property
    def csv_path(self) -> Path:
        return self.out / "results.csv"

    @property
    def json_path(self) -> Path:
        return self.out / "results.json"

    @property
    def best_model(self) -> Path | None:
        path = self.out / "best.npz"
        return path if self.best is not None and path.exists() else None

    def by_config(self) -> list:
        """Trials that differ only in their seed, together: mean and spread of ``ranked_by``."""
        key = self.ranked_by
        groups: dict = {}
        for row in self.rows:
            groups.setdefault(tuple(show_value(row[f]) for f in self.fields), []).append(row)
        out = []
        for values, rows in groups.items():
            scores = [r[key] for r in rows if r["status"] == "ok" and r.get(key) is not None]
            out.append({**dict(zip(self.fields, (rows[0][f] for f in self.fields))),
                        "trials": len(rows), "ok": len(scores),
                        "diverged": sum(r["status"] == "diverged" for r in rows),
                        "mean": float(np.mean(scores)) if scores else None,
                        "std": float(np.std(scores)) if len(scores) > 1 else None,
                        "min": min(scores) if scores else None, "max": max(scores) if scores else None})
        return out

    def to_dict(self) -> dict:
        best = self.best
        return {"format": RESULTS_FORMAT, "kind": "digitnet sweep", "plan": self.plan,
                "fields": list(self.fields), "columns": ["trial", *self.fields, *COLUMNS],
                "ranked_by": self.ranked_by, "trials_planned": self.total,
                "trials_finished": len(self.rows), "backend": self.backend,
                "best": None if best is None else {"trial": best["trial"], "key": best["key"],
                                                   "model": best["model"], "copy": "best.npz"},
                "trials": self.rows}

    def to_csv(self) -> str:
        buffer = io.StringIO()
        writer = csv.writer(buffer, lineterminator="\n")
        columns = ["trial", *self.fields, *COLUMNS]
        writer.writerow(columns)
        for row in self.rows:
            writer.writerow(["" if row.get(c) is None else row.get(c) for c in columns])
        return buffer.getvalue()

    @property
    def widths(self) -> dict:
        """Column widths for the swept fields in :meth:`table` (their longest planned value)."""
        values = {f: list((self.plan.get("grid") or {}).get(f, ())) + self[f] for f in self.fields}
        return column_widths(self.fields, values)

    def table(self) -> str:
        """The results as aligned text, one line per trial."""
        widths = self.widths
        return "\n".join([format_header(self.fields, widths),
                          *(format_row(row, self.fields, widths) for row in self.rows)])


def column_widths(fields, values: dict | None = None) -> dict:
    """Widths of the live table's field columns: each field's name or its longest value."""
    values = values or {}
    return {f: max([len(f), 6] + [len(show_value(v)) for v in values.get(f, ())]) for f in fields}


def _cells(fields, widths):
    widths = widths or column_widths(fields)
    return [("#", 4)] + [(f, widths.get(f, max(len(f), 6))) for f in fields] + \
        [("seed", 4), ("status", 10), ("val", 7), ("test", 7), ("loss", 9), ("time", 6)]


def format_header(fields, widths: dict | None = None) -> str:
    """The live table's header line (``widths``: see :func:`column_widths`)."""
    return "  ".join(text.rjust(width) for text, width in _cells(fields, widths))


def format_row(row: dict, fields, widths: dict | None = None) -> str:
    """One trial as a line of the live table (the columns of :func:`format_header`)."""
    def pct(value):
        return "-" if value is None else f"{100 * value:.2f}%"

    status = row["status"]
    if status == "diverged":
        status = f"diverged@{(row.get('last_good_epoch') or 0) + 1}"
    loss = row.get("train_loss")
    loss = None if loss is None else float(loss)
    texts = ([str(row.get("trial", ""))] + [show_value(row.get(f)) for f in fields]
             + [str(row.get("seed")), status, pct(row.get("val_accuracy")),
                pct(row.get("test_accuracy")), "-" if loss is None else f"{loss:.4g}",
                "-" if row.get("wall_seconds") is None else f"{row['wall_seconds']:.1f}s"])
    line = "  ".join(text.rjust(width) for text, (_, width) in zip(texts, _cells(fields, widths)))
    if row["status"] == "failed" and row.get("error"):
        line += f"  {row['error']}"
    return line


def load_results(out) -> dict | None:
    """``OUT/results.json`` as a dict (``None`` if there is none); one-line error if it is damaged."""
    path = Path(out) / "results.json"
    if not path.exists():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DigitnetError(f"{path} cannot be read ({type(exc).__name__}): remove it to run the "
                            "sweep afresh, or choose another --out") from None
    if not isinstance(data, dict) or data.get("kind") != "digitnet sweep" or \
            not isinstance(data.get("trials"), list) or \
            not all(isinstance(r, dict) and isinstance(r.get("key"), str) for r in data["trials"]):
        raise DigitnetError(f"{path} is not a digitnet sweep's results file: remove it, or choose "
                            "another --out")
    return data


def _write_results(result: SweepResult) -> None:
    from ..files.fileio import atomic_write

    data = json.dumps(_jsonable(result.to_dict()), indent=1, allow_nan=False)
    atomic_write(result.json_path, lambda f: f.write(data.encode("utf-8") + b"\n"), "sweep results")
    text = result.to_csv()
    atomic_write(result.csv_path, lambda f: f.write(text.encode("utf-8")), "sweep results")


def _jsonable(value):
    """NaN and infinities (a diverged epoch's loss) as strings: JSON has no such numbers."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, np.generic):
        return _jsonable(value.item())
    return value


def _copy_best(result: SweepResult, previous_key) -> object:
    """Keep ``OUT/best.npz`` a copy of the best trial's model; returns the best key now."""
    from ..files.fileio import atomic_write

    best = result.best
    target = result.out / "best.npz"
    if best is None:
        if target.exists():
            target.unlink()
        return None
    if best["key"] == previous_key and target.exists():
        return previous_key
    data = (result.out / best["model"]).read_bytes()
    atomic_write(target, lambda f: f.write(data), "best model")
    return best["key"]


def _prepare_folder(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise DigitnetError(f"cannot write the sweep into {out}: it is a file; give a folder")
    try:
        (out / "models").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DigitnetError(f"cannot create the sweep folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise DigitnetError(f"cannot write in the sweep folder {out}: no permission")


def _check_data(plan: Plan) -> None:
    """Load each data source once here: a wrong name or path fails now, and the cache is warm."""
    from ..errors import DataError
    from .recipes import load_data

    for source in sorted({t.data for t in plan.trials}):
        dataset = load_data(source, scale="unit")
        sizes = {tuple(int(s) for s in t.overrides.get("sizes", plan.preset.sizes))
                 for t in plan.trials if t.data == source}
        for layer_sizes in sorted(sizes):
            if dataset.X_train.shape[1] != layer_sizes[0]:
                raise DataError(f"{source} has {dataset.X_train.shape[1]} features per sample but "
                                f"layers {'-'.join(map(str, layer_sizes))} take {layer_sizes[0]} inputs")
        del dataset


def sweep(preset="best", grid=None, *, random: int = 0, ranges=None, sample_seed: int = 0, seeds=1,
          epochs=None, subset=None, data=None, out=None, parallel=None, threads=None, ray=None,
          progress: SweepProgress | None = None) -> SweepResult:
    """Train every trial of a sweep and return the results table (a :class:`SweepResult`).

    Parameters
    ----------
    preset : the preset (name or :class:`~digitnet.train.recipes.Preset`) every trial starts from.
    grid : ``{field: values}`` (values a list, or a comma-separated string;
        ``layers`` as ``"784-30-10"`` or a list of sizes), or a list of
        ``"field=v1,v2"`` strings; every combination is a trial.  Fields: the
        preset's (``layers``, ``activation``, ``output``, ``loss``, ``init``,
        ``optimizer``, ``lr``, ``batch_size``, ``epochs``, ``l2``,
        ``schedule``, ``scale``, ``split``, ``shift``, ``data``) and the
        optimiser settings (``momentum``, ``beta1``, ``beta2``, ``eps``).
    random, ranges : ``random`` points drawn from ``ranges``
        (``{"lr": "log:1e-3..1"}`` or ``["lr=log:1e-3..1"]``; uniform
        without ``log:``; whole numbers for whole-number fields; floats rounded
        to 3 significant figures) with a generator seeded by ``sample_seed``,
        each combined with every grid point.
    seeds : a count (seeds 0…N−1) or a list of seeds; each point is trained with each.
    epochs, subset, data : for every trial, as for ``digitnet train``.
    out : the folder (created if needed; default ``sweep-PRESET``).  Run again
        with the same folder, trials that finished are kept, not retrained.
    parallel : worker processes on this machine (default: the cores ÷ ``threads``), or
        with ``ray`` the trials a local Ray runs at once (it gets ``parallel × threads`` CPUs).
    threads : BLAS threads per trial (default: cores ÷ parallel, at least 1).
    ray : ``None`` for the local pool; ``True`` or ``"local"`` for a local
        Ray; ``"auto"`` or ``"HOST:PORT"`` for a running cluster.  An already
        initialised Ray (``ray.init`` in this process) is used as it is.
    progress : a :class:`SweepProgress` shown the trials as they finish.

    Raises
    ------
    DigitnetError
        Bad fields, values or ranges, a recipe that cannot work, unreadable
        data, an unreachable Ray address: before any training.
    SweepInterrupted
        On Ctrl-C, after saving the finished trials (``.result`` is their table).
    """
    from .recipes import get_preset

    started = time.perf_counter()
    progress = progress or SweepProgress()
    plan = plan_trials(preset, grid, random=random, ranges=ranges, sample_seed=sample_seed,
                       seeds=seeds, epochs=epochs, subset=subset, data=data)
    out = Path(f"sweep-{get_preset(preset).name}" if out is None else out)
    cores = available_cores()
    if parallel is not None:
        parallel = _number("parallel", parallel, kind=int, low=1)
    if threads is not None:
        threads = _number("threads", threads, kind=int, low=1)
    use_ray = ray not in (None, False)
    address = None if ray in (True, None, False) else str(ray).strip()
    local = not use_ray or address in (None, "", "local")
    if not local and parallel is not None:
        raise DigitnetError("--parallel sets the size of a local pool or a local Ray; on a cluster "
                            "Ray's own resources decide: leave it out")
    if use_ray:
        _import_ray()
        if not local and address.lower() != "auto" and not _ray_initialized():
            _check_address(address)
    if parallel is None and local:   # workers × threads ≤ cores
        parallel = max(1, cores // threads) if threads else cores
    if threads is None:
        threads = max(1, cores // parallel) if parallel else 1
    _check_data(plan)

    previous = load_results(out)
    kept = {}
    for row in (previous or {}).get("trials", []):
        if row.get("status") == "diverged" or (
                row.get("status") == "ok" and isinstance(row.get("model"), str)
                and (out / row["model"]).is_file()):
            kept[row["key"]] = row
    rows = {}
    for trial in plan.trials:
        if trial.key in kept:
            rows[trial.key] = {**kept[trial.key], "trial": trial.number, **trial.params}
    todo = [t for t in plan.trials if t.key not in rows]

    ray_module = None
    if use_ray and todo and not _ray_initialized():
        # Connected (or started) before anything is written: an unreachable cluster leaves nothing.
        ray_module = _import_ray()
        _connect_ray(ray_module, address, parallel * threads if local else None)
    try:
        return _sweep_run(plan, out, rows, todo, use_ray, address, local, parallel, threads,
                          progress, started)
    finally:
        if ray_module is not None:
            ray_module.shutdown()


def _sweep_run(plan, out, rows, todo, use_ray, address, local, parallel, threads, progress, started):
    _prepare_folder(out)
    backend = ("ray " + (address or "local")) if use_ray else "local"
    result = SweepResult([], plan.fields, out, len(plan.trials), plan=plan.describe(),
                         reused=len(rows), backend=backend)

    def refresh():
        result.rows = [_ordered(rows[t.key], plan.fields) for t in plan.trials if t.key in rows]

    refresh()
    best_key = _copy_best(result, None)
    _write_results(result)
    progress.on_start(result, len(todo))

    preset_dict = plan.preset.to_dict()
    specs = [{"number": t.number, "key": t.key, "preset": preset_dict, "overrides": t.overrides,
              "seed": t.seed, "epochs": plan.epochs, "subset": plan.subset,
              "data": t.data, "threads": threads,
              "model_path": str((out / t.model).resolve())} for t in todo]
    by_key = {t.key: t for t in todo}

    def deliver(spec, row):
        nonlocal best_key
        trial = by_key[spec["key"]]
        model_bytes = row.pop("model_bytes", None)
        if row["status"] == "ok":
            if model_bytes is not None:
                from ..files.fileio import atomic_write

                atomic_write(out / trial.model, lambda f: f.write(model_bytes), "model")
            row["model"] = trial.model
        else:
            row["model"] = None
        rows[trial.key] = {"trial": trial.number, **trial.params, **row}
        refresh()
        best_key = _copy_best(result, best_key)
        result.seconds = time.perf_counter() - started
        _write_results(result)
        progress.on_trial(rows[trial.key], result)

    def tick():
        progress.on_wait(result, time.perf_counter() - started)

    try:
        if specs:
            if use_ray:
                _run_ray(specs, threads, deliver, tick)
            else:
                _run_local(specs, min(parallel, len(specs)), threads, deliver, tick)
    except KeyboardInterrupt:
        result.interrupted = True
        result.seconds = time.perf_counter() - started
        raise SweepInterrupted(result) from None
    result.seconds = time.perf_counter() - started
    return result


def _ray_initialized() -> bool:
    try:
        import ray
    except ImportError:
        return False
    return ray.is_initialized()


def _ordered(row: dict, fields) -> dict:
    """A row with its keys in the table's order: trial, the fields, the columns, the history."""
    out = {"trial": row.get("trial")}
    for name in fields:
        out[name] = row.get(name)
    for name in COLUMNS:
        out[name] = row.get(name)
    out["history"] = row.get("history") or []
    return out
