"""Optimisers (one step by hand, convergence, state round trips) and learning-rate schedules."""

import math

import numpy as np
import pytest

from digitnet.errors import DigitnetError
from digitnet.nn.optimizers import SGD, Adam, Momentum, Nesterov, get_optimizer
from digitnet.nn.schedules import Constant, Cosine, Step, get_schedule

THETA = np.array([1.0, -2.0, 0.5, 3.0])
GRAD = np.array([0.4, -0.1, 2.0, 0.0])


def _step(optimizer, theta, grad):
    params = theta.copy()
    optimizer.update(params, grad.copy())
    return params


# -- one step, by hand ----------------------------------------------------------------

def test_sgd_step():
    np.testing.assert_allclose(_step(SGD(0.1), THETA, GRAD), THETA - 0.1 * GRAD, rtol=1e-15)


def test_momentum_steps():
    opt = Momentum(0.1, momentum=0.9)
    params = THETA.copy()
    opt.update(params, GRAD.copy())
    v1 = -0.1 * GRAD                       # v ← μ·0 − η∇
    np.testing.assert_allclose(params, THETA + v1, rtol=1e-15)
    grad2 = np.array([1.0, 1.0, -1.0, 0.5])
    opt.update(params, grad2)
    v2 = 0.9 * v1 - 0.1 * grad2            # v ← μv − η∇
    np.testing.assert_allclose(params, THETA + v1 + v2, rtol=1e-14)
    np.testing.assert_allclose(opt.velocity, v2, rtol=1e-14)
    assert opt.steps == 2


def test_nesterov_steps():
    opt = Nesterov(0.1, momentum=0.9)
    params = THETA.copy()
    opt.update(params, GRAD.copy())
    v1 = -0.1 * GRAD
    # θ ← θ + μv − η∇ (Sutskever's form): the first step is −η(1+μ)∇
    np.testing.assert_allclose(params, THETA - 0.1 * 1.9 * GRAD, rtol=1e-14)
    grad2 = np.array([1.0, 1.0, -1.0, 0.5])
    before = params.copy()
    opt.update(params, grad2)
    v2 = 0.9 * v1 - 0.1 * grad2
    np.testing.assert_allclose(params, before + 0.9 * v2 - 0.1 * grad2, rtol=1e-14)


def test_adam_first_step_is_the_learning_rate_times_the_sign():
    opt = Adam(0.01)
    params = _step(opt, THETA, GRAD)
    # m̂ = ∇ and ŝ = ∇² after one step, so the step is η·∇/(|∇| + ε) ≈ η·sign(∇)
    np.testing.assert_allclose(params - THETA, -0.01 * np.sign(GRAD), rtol=1e-6, atol=1e-12)
    assert params[3] == THETA[3]  # zero gradient, no step


def test_adam_second_step_by_hand():
    b1, b2, eps, lr = 0.9, 0.999, 1e-8, 0.01
    opt = Adam(lr, b1, b2, eps)
    g1, g2 = GRAD, np.array([1.0, 1.0, -1.0, 0.5])
    params = THETA.copy()
    opt.update(params, g1.copy())
    opt.update(params, g2.copy())
    m = b1 * (1 - b1) * g1 + (1 - b1) * g2
    s = b2 * (1 - b2) * g1**2 + (1 - b2) * g2**2
    m_hat, s_hat = m / (1 - b1**2), s / (1 - b2**2)
    first = -lr * g1 / (np.abs(g1) + eps)
    np.testing.assert_allclose(params, THETA + first - lr * m_hat / (np.sqrt(s_hat) + eps), rtol=1e-9)


def test_float32_parameters_stay_float32():
    for opt in (SGD(0.1), Momentum(0.1), Nesterov(0.1), Adam(0.1)):
        params = THETA.astype(np.float32)
        opt.update(params, GRAD.astype(np.float32))
        assert params.dtype == np.float32


# -- they all minimise a simple quadratic -----------------------------------------------

@pytest.mark.parametrize("make", [lambda: SGD(0.1), lambda: Momentum(0.05), lambda: Nesterov(0.05),
                                  lambda: Adam(0.05)], ids=["sgd", "momentum", "nesterov", "adam"])
def test_optimizers_minimise_a_quadratic(make):
    # f(θ) = ½ Σ c_i (θ_i − t_i)²,  ∇f = c ⊙ (θ − t): a badly scaled bowl
    c = np.array([1.0, 10.0, 0.5, 3.0])
    target = np.array([2.0, -1.0, 0.0, 4.0])
    f = lambda th: 0.5 * np.sum(c * (th - target) ** 2)  # noqa: E731
    opt, theta = make(), THETA.copy()
    start = f(theta)
    for _ in range(300):
        opt.update(theta, c * (theta - target))
    assert f(theta) < 1e-3 * start
    np.testing.assert_allclose(theta, target, atol=0.05)


# -- state, for checkpoints -------------------------------------------------------------

@pytest.mark.parametrize("name", ["sgd", "momentum", "nesterov", "adam"])
def test_state_dict_round_trip_continues_identically(name):
    rng = np.random.default_rng(0)
    grads = [rng.standard_normal(6) for _ in range(6)]
    a = get_optimizer(name, 0.05)
    pa = np.ones(6)
    for g in grads[:3]:
        a.update(pa, g)
    state = a.state_dict()
    config = dict(a.config())
    b = get_optimizer(config.pop("name"), config.pop("lr"), **config)
    b.load_state_dict(state)
    assert b.config() == a.config() and b.steps == 3
    pb = pa.copy()
    for g in grads[3:]:
        a.update(pa, g)
        b.update(pb, g)
    assert np.array_equal(pa, pb)
    # the state is a copy: later updates do not change a saved state
    if name != "sgd":
        key = "velocity" if name != "adam" else "m"
        assert not np.array_equal(state[key], a.state_dict()[key])


# -- bad arguments --------------------------------------------------------------------------

@pytest.mark.parametrize("make, fragment", [
    (lambda: SGD(-0.1), "learning rate must be a finite number > 0"),
    (lambda: SGD(0), "learning rate must be a finite number > 0"),
    (lambda: SGD(float("nan")), "learning rate"),
    (lambda: SGD("fast"), "learning rate must be a number"),
    (lambda: Momentum(0.1, momentum=1.0), "momentum must be below 1"),
    (lambda: Momentum(0.1, momentum=-0.5), "momentum must be a finite number"),
    (lambda: Adam(0.1, beta1=1.0), "beta1 must be in"),
    (lambda: Adam(0.1, beta2=-0.1), "beta2 must be in"),
    (lambda: get_optimizer("rmsprop"), "unknown optimizer 'rmsprop': choose one of sgd, momentum"),
    (lambda: get_schedule("exponential", 5), "unknown schedule 'exponential'"),
    (lambda: Step(0), "step_size"),
    (lambda: Cosine(0), "epochs > 0"),
])
def test_bad_optimizer_and_schedule_arguments(make, fragment):
    with pytest.raises(DigitnetError, match=fragment) as excinfo:
        make()
    assert "\n" not in str(excinfo.value)


def test_default_learning_rates():
    assert get_optimizer("sgd").lr == 0.1 and get_optimizer("adam").lr == 1e-3
    assert get_optimizer("Nesterov", 0.2).config() == {"name": "nesterov", "lr": 0.2, "momentum": 0.9}


# -- schedules ----------------------------------------------------------------------------

def test_constant_schedule():
    assert get_schedule(None)(0.3, 7.5) == 0.3 == Constant()(0.3, 0)


def test_step_schedule_values():
    step = Step(step_size=2, gamma=0.5)
    assert [step(0.8, p) for p in (0, 1.99, 2, 3.5, 4, 6.0)] == [0.8, 0.8, 0.4, 0.4, 0.2, 0.1]
    assert get_schedule("step")(1.0, 10) == pytest.approx(0.1)  # default: ×0.1 every 10 epochs


def test_cosine_schedule_values():
    cos = Cosine(epochs=10, min_lr=0.01)
    assert cos(1.0, 0) == pytest.approx(1.0)
    assert cos(1.0, 5) == pytest.approx(0.01 + 0.5 * 0.99)           # half-way
    assert cos(1.0, 2.5) == pytest.approx(0.01 + 0.5 * 0.99 * (1 + math.cos(math.pi / 4)))
    assert cos(1.0, 10) == pytest.approx(0.01)
    assert cos(1.0, 12) == pytest.approx(0.01)                        # stays at the floor
    values = [cos(1.0, p / 4) for p in range(41)]
    assert all(a > b for a, b in zip(values, values[1:]))             # smooth, strictly falling
    assert get_schedule("cosine", 4)(0.2, 2) == pytest.approx(0.1)  # spans the run's epochs


# -- the training loop's shortcut: gradients that arrive pre-scaled ----------------------------

@pytest.mark.parametrize("make", [lambda: SGD(0.3), lambda: Momentum(0.3, 0.8), lambda: Nesterov(0.3, 0.8),
                                  lambda: Adam(0.01, beta1=0.8, beta2=0.99)])
def test_update_scaled_given_the_scaled_gradient_equals_update(make):
    """fit hands ``gradient_scale()·∇`` to ``update_scaled``; that must be ``update(∇)``."""
    rng = np.random.default_rng(1)
    plain, scaled = make(), make()
    p1, p2 = THETA.copy(), THETA.copy()
    for _ in range(4):
        grad = rng.standard_normal(THETA.shape)
        kept = grad.copy()
        plain.update(p1, grad)
        assert np.array_equal(grad, kept)          # update leaves the caller's gradient alone
        scaled.update_scaled(p2, scaled.gradient_scale() * grad)
        np.testing.assert_allclose(p2, p1, rtol=1e-13, atol=1e-15)
    assert not np.allclose(p1, THETA)
    for key, value in plain.state_dict().items():
        np.testing.assert_allclose(scaled.state_dict()[key], value, rtol=1e-13, atol=1e-15)


def test_gradient_scales():
    assert SGD(0.3).gradient_scale() == 0.3 and Nesterov(0.2).gradient_scale() == 0.2
    assert Adam(beta1=0.9).gradient_scale() == pytest.approx(0.1)
