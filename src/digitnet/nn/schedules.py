"""Learning-rate schedules.

A schedule maps training progress, measured in epochs as a float (epoch 2.5
is half-way through the third epoch), to a learning rate.  The training
loop asks for the rate before every step, so a cosine schedule decays
smoothly within epochs while a step schedule changes only at epoch
boundaries.
"""

from __future__ import annotations

import math

from ..errors import DigitnetError


class Schedule:
    name = "schedule"

    def __call__(self, base_lr: float, progress: float) -> float:  # pragma: no cover
        raise NotImplementedError

    def config(self) -> dict:
        return {"name": self.name, **{k: v for k, v in vars(self).items()}}


class Constant(Schedule):
    """The same learning rate throughout."""

    name = "constant"

    def __call__(self, base_lr, progress):
        return base_lr


class Step(Schedule):
    """Multiply the rate by ``gamma`` every ``step_size`` epochs."""

    name = "step"

    def __init__(self, step_size: int = 10, gamma: float = 0.1):
        if int(step_size) < 1 or not (0 < float(gamma) <= 1):
            raise DigitnetError(
                f"step schedule needs step_size ≥ 1 and 0 < gamma ≤ 1, got {step_size}, {gamma}")
        self.step_size, self.gamma = int(step_size), float(gamma)

    def __call__(self, base_lr, progress):
        return base_lr * self.gamma ** (int(progress) // self.step_size)


class Cosine(Schedule):
    """Cosine decay from the base rate to ``min_lr`` over ``epochs`` epochs
    (Loshchilov & Hutter's SGDR without restarts)."""

    name = "cosine"

    def __init__(self, epochs: float, min_lr: float = 0.0):
        if float(epochs) <= 0 or float(min_lr) < 0:
            raise DigitnetError(f"cosine schedule needs epochs > 0 and min_lr ≥ 0, got {epochs}, {min_lr}")
        self.epochs, self.min_lr = float(epochs), float(min_lr)

    def __call__(self, base_lr, progress):
        t = min(progress / self.epochs, 1.0)
        return self.min_lr + 0.5 * (base_lr - self.min_lr) * (1.0 + math.cos(math.pi * t))


SCHEDULES = {"constant": Constant, "step": Step, "cosine": Cosine}


def get_schedule(spec, epochs: int | None = None) -> Schedule:
    """A schedule from ``None``/a name/an instance; ``"cosine"`` spans ``epochs``."""
    if spec is None:
        return Constant()
    if isinstance(spec, Schedule):
        return spec
    if spec == "cosine":
        return Cosine(epochs or 1)
    if isinstance(spec, str) and spec in SCHEDULES:
        return SCHEDULES[spec]()
    raise DigitnetError(f"unknown schedule {spec!r}: choose one of {', '.join(SCHEDULES)}")
