"""Optimizers on the flat parameter vector, apart from any model.

The update rules are Numba kernels (used by the jitted epoch loop in
:mod:`lstmforecast._training`); :class:`SGDOptimizer` and :class:`AdamOptimizer` wrap
them with scikit-learn's optimizer interface and hold the state between calls.

Optimizer state lives in one array ``state`` of shape ``(2, P)`` (velocity for SGD;
first and second moments for Adam) and the step count in a separate scalar ``t``.
Hyper-parameters travel as a float64 vector indexed by the ``H_*`` constants.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import config

_JIT = config.jit_options()

OPT_SGD = 0
OPT_ADAM = 1
OPTIMIZER_CODES = {"sgd": OPT_SGD, "adam": OPT_ADAM}

H_LR, H_MOMENTUM, H_NESTEROV, H_BETA1, H_BETA2, H_EPS, H_ALPHA, H_CLIP = range(8)
N_HYPER = 8


def make_hyper(learning_rate, momentum=0.0, nesterov=False, beta_1=0.9,
               beta_2=0.999, epsilon=1e-8, alpha=0.0, clip_norm=None):
    """Pack hyper-parameters into the float64 vector the kernels read."""
    hyper = np.zeros(N_HYPER)
    hyper[H_LR] = learning_rate
    hyper[H_MOMENTUM] = momentum
    hyper[H_NESTEROV] = 1.0 if nesterov else 0.0
    hyper[H_BETA1] = beta_1
    hyper[H_BETA2] = beta_2
    hyper[H_EPS] = epsilon
    hyper[H_ALPHA] = alpha
    hyper[H_CLIP] = 0.0 if clip_norm is None else clip_norm
    return hyper


@njit(**_JIT)
def sgd_step(params, grad, state, hyper):
    """SGD with momentum (``v = m v - lr g``; ``p += v``, or Nesterov's form)."""
    lr = hyper[H_LR]
    mom = hyper[H_MOMENTUM]
    velocity = state[0]
    if mom == 0.0:
        for p in range(params.shape[0]):
            params[p] -= lr * grad[p]
        return
    nesterov = hyper[H_NESTEROV] != 0.0
    for p in range(params.shape[0]):
        velocity[p] = mom * velocity[p] - lr * grad[p]
        if nesterov:
            params[p] += mom * velocity[p] - lr * grad[p]
        else:
            params[p] += velocity[p]


@njit(**_JIT)
def adam_step(params, grad, state, hyper, t):
    """Adam as in ``torch.optim.Adam`` (bias-corrected moments); ``t`` starts at 1."""
    lr = hyper[H_LR]
    beta1 = hyper[H_BETA1]
    beta2 = hyper[H_BETA2]
    eps = hyper[H_EPS]
    m = state[0]
    v = state[1]
    corr1 = 1.0 - beta1 ** t
    corr2 = 1.0 - beta2 ** t
    step = lr / corr1
    for p in range(params.shape[0]):
        g = grad[p]
        m[p] = beta1 * m[p] + (1.0 - beta1) * g
        v[p] = beta2 * v[p] + (1.0 - beta2) * g * g
        params[p] -= step * m[p] / (np.sqrt(v[p] / corr2) + eps)


@njit(**_JIT)
def optimizer_step(opt_kind, params, grad, state, hyper, t):
    """Dispatch one update; ``t`` is the 1-based step count (used by Adam)."""
    if opt_kind == OPT_ADAM:
        adam_step(params, grad, state, hyper, t)
    else:
        sgd_step(params, grad, state, hyper)


class _BaseOptimizer:
    """scikit-learn style wrapper: ``update_params(params, grads)`` in place."""

    opt_kind = OPT_SGD

    def __init__(self, n_params, dtype, hyper):
        self.state = np.zeros((2, n_params), dtype=dtype)
        self.hyper = hyper
        self.t = 0

    def update_params(self, params, grads):
        """Apply one update to ``params`` (a flat array) in place."""
        self.t += 1
        optimizer_step(self.opt_kind, params, np.asarray(grads, dtype=params.dtype),
                       self.state, self.hyper, self.t)

    def iteration_ends(self, time_step):
        """Hook called at the end of an epoch (no learning-rate schedule here)."""

    def trigger_stopping(self, msg, verbose):
        """Return True: with a fixed learning rate there is nothing left to try."""
        return True


class SGDOptimizer(_BaseOptimizer):
    """Stochastic gradient descent with optional (Nesterov) momentum."""

    opt_kind = OPT_SGD

    def __init__(self, n_params, dtype=np.float64, learning_rate=0.1, momentum=0.0,
                 nesterov=False):
        super().__init__(n_params, dtype, make_hyper(learning_rate, momentum,
                                                     nesterov))


class AdamOptimizer(_BaseOptimizer):
    """Adam (Kingma & Ba 2015) with PyTorch's bias-correction form."""

    opt_kind = OPT_ADAM

    def __init__(self, n_params, dtype=np.float64, learning_rate=1e-3, beta_1=0.9,
                 beta_2=0.999, epsilon=1e-8):
        super().__init__(n_params, dtype, make_hyper(learning_rate, beta_1=beta_1,
                                                     beta_2=beta_2, epsilon=epsilon))


# Corrupt or unwritable cache files recompile instead of failing.
config.harden_caches(globals())
