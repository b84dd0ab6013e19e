"""Optimisers: small objects with one ``update`` method.

``update(params, grads)`` changes ``params`` **in place**.  Both are flat
1-D arrays of the same length holding every weight and bias of the network
(the network keeps them in one buffer, with each layer's ``W`` and ``b`` as
views into it), so one update is a handful of whole-array operations however
deep the network is.

Every optimiser follows one template (:class:`Optimizer`): ``update``
scales the gradient by ``c = gradient_scale()`` (η for SGD and momentum,
1 − β₁ for Adam) and calls the optimiser's own ``apply(params, c·∇)``.  The
training step calls ``update_scaled(params, c·∇)`` directly: the network
folds ``c`` into its backward pass for free (see
:meth:`digitnet.nn.network.Network.update_mini_batch`), which saves one pass
over every parameter per step.

Learning-rate schedules live in :mod:`digitnet.nn.schedules`; the training loop
sets ``optimizer.lr`` before each step.

State (velocities, Adam's moments, the step count) can be saved with
``state_dict()`` and restored with ``load_state_dict()``, which is what lets a
resumed run end bit for bit where an uninterrupted one would.
"""

from __future__ import annotations

import functools

import numpy as np

from ..errors import DigitnetError


def _check_positive(name, value, allow_zero=False):
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise DigitnetError(f"{name} must be a number, got {value!r}") from None
    if not np.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        bound = "≥ 0" if allow_zero else "> 0"
        raise DigitnetError(f"{name} must be a finite number {bound}, got {value!r}")
    return value


class Optimizer:
    """The update template every optimiser shares.

    ``update(params, ∇)`` multiplies the gradient by :meth:`gradient_scale`
    and hands it to :meth:`update_scaled`, which counts the step and calls
    the optimiser's own :meth:`apply` with ``c·∇``.  A new optimiser defines
    ``gradient_scale`` and ``apply`` (scikit-learn's ``_get_updates`` plays
    the same part there).
    """

    name = "optimizer"
    #: the optimiser's own settings besides η, with a line of help each (the
    #: command line's flags and the presets' ``optimizer_options`` come from these)
    hyperparameters: dict[str, str] = {}
    #: parameter-sized arrays the optimiser keeps between steps (for memory estimates)
    state_arrays = 0

    def __init__(self, lr: float):
        self.lr = _check_positive("learning rate", lr)
        self.steps = 0
        self._buffer = None

    def update(self, params: np.ndarray, grads: np.ndarray) -> None:
        """One step: change ``params`` in place, given the gradient ``grads`` (left as it is)."""
        scaled = np.multiply(grads, self.gradient_scale(), out=self._scratch(grads))
        self.update_scaled(params, scaled)

    def update_scaled(self, params: np.ndarray, scaled_grads: np.ndarray) -> None:
        """:meth:`update` given ``gradient_scale() · ∇`` instead of ``∇`` (may overwrite it)."""
        self.steps += 1
        self.apply(params, scaled_grads)

    def gradient_scale(self) -> float:
        """The factor ``c`` the optimiser wants the gradient multiplied by.

        Backpropagation is linear in δ_L, so the network can deliver
        ``c·∇`` for the price of scaling one ``(batch, n_outputs)`` array,
        where multiplying the gradient itself costs a pass over every
        parameter (see :meth:`digitnet.nn.network.Network.update_mini_batch`).
        """
        return 1.0

    def apply(self, params: np.ndarray, scaled_grads: np.ndarray) -> None:  # pragma: no cover
        """The optimiser's own rule, given ``c·∇`` (which it may overwrite)."""
        raise NotImplementedError

    def takes_scaled_gradients(self) -> bool:
        """Whether the training step may hand over ``c·∇`` (through :meth:`update_scaled`).

        Not when a subclass redefined only ``update``: its own step must run,
        and it expects the plain gradient.
        """
        return _takes_scaled_gradients(type(self))

    def _scratch(self, like: np.ndarray) -> np.ndarray:
        """A parameter-sized scratch array, allocated once and reused each step."""
        if self._buffer is None or self._buffer.shape != like.shape or self._buffer.dtype != like.dtype:
            self._buffer = np.empty_like(like)
        return self._buffer

    # -- state, for checkpoints -------------------------------------------------
    def config(self) -> dict:
        return {"name": self.name, "lr": self.lr}

    def state_dict(self) -> dict:
        return {"steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


@functools.lru_cache(maxsize=None)
def _takes_scaled_gradients(cls) -> bool:
    # Looked up once per class: the training step asks before every update.
    for klass in cls.__mro__:
        if "update_scaled" in vars(klass) or "apply" in vars(klass):
            return True
        if "update" in vars(klass):
            return False
    return True


class SGD(Optimizer):
    """Plain gradient descent: θ ← θ − η·∇."""

    name = "sgd"

    def gradient_scale(self):
        return self.lr

    def apply(self, params, scaled_grads):
        params -= scaled_grads                    # θ ← θ − η·∇, η·∇ given


class Momentum(SGD):
    """Gradient descent with (heavy-ball or Nesterov) momentum; SGD's η·∇ step, remembered.

    v ← μ·v − η·∇,   θ ← θ + v                    (classical)
    v ← μ·v − η·∇,   θ ← θ + μ·v − η·∇            (Nesterov, Sutskever's form)
    """

    name = "momentum"
    hyperparameters = {"momentum": "μ, the share of the last step that carries over (default 0.9)"}
    state_arrays = 1

    def __init__(self, lr: float, momentum: float = 0.9, nesterov: bool = False):
        super().__init__(lr)
        self.momentum = _check_positive("momentum", momentum, allow_zero=True)
        if self.momentum >= 1:
            raise DigitnetError(f"momentum must be below 1, got {momentum!r}")
        self.nesterov = bool(nesterov)
        self.velocity = None

    def apply(self, params, scaled_grads):
        if self.velocity is None or self.velocity.shape != params.shape:
            self.velocity = np.zeros_like(params)
        v, step = self.velocity, scaled_grads    # step = η·∇
        v *= self.momentum
        v -= step                                # v = μ·v − η·∇
        if self.nesterov:
            params -= step
            # + μ·v, written over η·∇, which is no longer needed
            params += np.multiply(v, self.momentum, out=step)
        else:
            params += v

    def config(self):
        return {"name": "nesterov" if self.nesterov else "momentum", "lr": self.lr,
                "momentum": self.momentum}

    def state_dict(self):
        state = super().state_dict()
        if self.velocity is not None:
            state["velocity"] = self.velocity.copy()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        self.velocity = np.array(state["velocity"]) if "velocity" in state else None


class Nesterov(Momentum):
    """Momentum with Nesterov's look-ahead."""

    name = "nesterov"

    def __init__(self, lr: float, momentum: float = 0.9):
        super().__init__(lr, momentum, nesterov=True)


class Adam(Optimizer):
    """Adam (Kingma & Ba 2015) with bias-corrected moment estimates.

    m ← β₁m + (1−β₁)∇,  s ← β₂s + (1−β₂)∇²,
    θ ← θ − η · m̂ / (√ŝ + ε)  with  m̂ = m/(1−β₁ᵗ), ŝ = s/(1−β₂ᵗ).
    """

    name = "adam"
    hyperparameters = {"beta1": "β₁, decay of the mean of the gradients (default 0.9)",
                       "beta2": "β₂, decay of the mean of their squares (default 0.999)",
                       "eps": "ε, added to √ŝ so that no step divides by zero (default 1e-8)"}
    state_arrays = 2

    def __init__(self, lr: float = 1e-3, beta1: float = 0.9, beta2: float = 0.999,
                 eps: float = 1e-8):
        super().__init__(lr)
        for label, beta in (("beta1", beta1), ("beta2", beta2)):
            if not (0.0 <= float(beta) < 1.0):
                raise DigitnetError(f"{label} must be in [0, 1), got {beta!r}")
        self.beta1, self.beta2 = float(beta1), float(beta2)
        self.eps = _check_positive("eps", eps)
        self.m = self.s = None

    def gradient_scale(self):
        return 1.0 - self.beta1

    def apply(self, params, scaled_grads):
        if self.m is None or self.m.shape != params.shape:
            self.m = np.zeros_like(params)
            self.s = np.zeros_like(params)
        t = self.steps
        # g = (1−β₁)·∇ arrives ready-made; once m has it, its array is the scratch space.
        m, s, g = self.m, self.s, scaled_grads
        m *= self.beta1
        m += g                                        # m = β₁m + (1−β₁)∇
        work = np.multiply(g, g, out=g)               # (1−β₁)²∇²
        work *= (1.0 - self.beta2) / (1.0 - self.beta1) ** 2
        s *= self.beta2
        s += work                                     # s = β₂s + (1−β₂)∇²
        # Fold both bias corrections into one scalar step size:
        # η·m̂/(√ŝ+ε) = η·√(1−β₂ᵗ)/(1−β₁ᵗ) · m/(√s + ε·√(1−β₂ᵗ))
        correction2 = np.sqrt(1.0 - self.beta2**t)
        step_size = self.lr * correction2 / (1.0 - self.beta1**t)
        np.sqrt(s, out=work)
        work += self.eps * correction2
        np.divide(m, work, out=work)
        work *= step_size
        params -= work

    def config(self):
        return {"name": "adam", "lr": self.lr, "beta1": self.beta1, "beta2": self.beta2,
                "eps": self.eps}

    def state_dict(self):
        state = super().state_dict()
        if self.m is not None:
            state["m"], state["s"] = self.m.copy(), self.s.copy()
        return state

    def load_state_dict(self, state):
        super().load_state_dict(state)
        if "m" in state:
            self.m, self.s = np.array(state["m"]), np.array(state["s"])


OPTIMIZERS = {"sgd": SGD, "momentum": Momentum, "nesterov": Nesterov, "adam": Adam}


def get_optimizer(spec, lr: float | None = None, **options) -> Optimizer:
    """An optimiser from a name (``"adam"``) or an instance; ``lr`` defaults per optimiser.

    ``options`` are the optimiser's :attr:`~Optimizer.hyperparameters`
    (``momentum=0.95``, ``beta2=0.99``…); one it does not take is an error.
    """
    if isinstance(spec, Optimizer):
        return spec
    if isinstance(spec, str) and spec.lower() in OPTIMIZERS:
        cls = OPTIMIZERS[spec.lower()]
        check_options(cls.name, options)
        if lr is None:
            lr = 1e-3 if cls is Adam else 0.1
        return cls(lr, **options)
    raise DigitnetError(
        f"unknown optimizer {spec!r}: choose one of {', '.join(OPTIMIZERS)}"
    )


def check_options(name: str, options: dict) -> dict:
    """``options`` if optimiser ``name`` takes every one of them; a one-line error otherwise."""
    cls = OPTIMIZERS.get(str(name).lower())
    if cls is None:
        raise DigitnetError(f"unknown optimizer {name!r}: choose one of {', '.join(OPTIMIZERS)}")
    wrong = sorted(set(options) - set(cls.hyperparameters))
    if wrong:
        takes = ", ".join(cls.hyperparameters) or "nothing besides the learning rate"
        raise DigitnetError(f"the {cls.name} optimizer has no setting {', '.join(wrong)}: it takes {takes}")
    return dict(options)


def all_hyperparameters() -> dict[str, tuple[str, list[str]]]:
    """Every optimiser setting: name → (help, the optimisers that take it)."""
    out: dict[str, tuple[str, list[str]]] = {}
    for name, cls in OPTIMIZERS.items():
        for key, text in cls.hyperparameters.items():
            out.setdefault(key, (text, []))[1].append(name)
    return out
