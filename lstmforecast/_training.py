"""The training loop: a jitted run of mini-batches, driven epoch by epoch from Python.

:func:`train_batches` runs a slice of an epoch's mini-batches entirely in Numba (loss
and gradient, L2 penalty, frozen parameters, global-norm clipping, optimizer update),
so there is no Python work per sequence or per time step. The Python driver calls it
in slices of about half a second, which keeps Ctrl-C and the progress display
responsive.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import config
from ._kernels import loss_grad_into, loss_grad_one, loss_grad_workspace
from ._optimizers import H_ALPHA, H_CLIP, optimizer_step

_JIT = config.jit_options()


@njit(**_JIT)
def _copy(src, dst):
    """``dst[...] = src`` for C-contiguous arrays of one shape."""
    src_flat = src.reshape(src.size)
    dst_flat = dst.reshape(dst.size)
    for i in range(src_flat.shape[0]):
        dst_flat[i] = src_flat[i]


@njit(**_JIT)
def apply_update(params, grad, loss, opt_kind, opt_state, step, hyper, l2_mask,
                 train_mask, params_before, state_before):
    """L2 penalty, frozen parameters, clipping and one optimizer step, in place.

    Returns ``(loss_with_penalty, ok)``. When the loss, the gradient or the updated
    parameters are not finite, ``params``, ``opt_state`` and ``step`` are left as
    they were before the call and ``ok`` is False.
    """
    alpha = hyper[H_ALPHA]
    clip = hyper[H_CLIP]
    norm2 = 0.0
    penalty = 0.0
    for p in range(params.shape[0]):
        if alpha > 0.0 and l2_mask[p] != 0.0:
            # float64 squares: a float32 gradient above ~1.8e19 would square to
            # inf and count as divergence before clipping could rescue it
            v = np.float64(params[p])
            penalty += v * v
            grad[p] += alpha * params[p]
        grad[p] *= train_mask[p]
        g = np.float64(grad[p])
        norm2 += g * g
    loss += 0.5 * alpha * penalty
    if not (np.isfinite(loss) and np.isfinite(norm2)):
        return loss, False
    if clip > 0.0 and norm2 > clip * clip:
        scale = clip / np.sqrt(norm2)
        for p in range(params.shape[0]):
            grad[p] *= scale
    # (element loops, not slice assignment: Numba's array-to-slice assignment
    # compiles a shape-mismatch error path with string formatting, seconds of the
    # cold compile)
    _copy(params, params_before)
    _copy(opt_state, state_before)
    step[0] += 1
    optimizer_step(opt_kind, params, grad, opt_state, hyper, step[0])
    for p in range(params.shape[0]):
        if not np.isfinite(params[p]):
            _copy(params_before, params)
            _copy(state_before, opt_state)
            step[0] -= 1
            return loss, False
    return loss, True


@njit(**_JIT)
def train_batches(params, layout, X, lengths, Y, mask, state0, order, batch_size,
                  first_batch, n_batches, cell, hidden_size, block_size, loss_kind,
                  opt_kind, opt_state, step, hyper, l2_mask, train_mask, parallel):
    """Run mini-batches ``first_batch .. first_batch + n_batches - 1`` of ``order``.

    Parameters
    ----------
    params : ndarray (P,)
        Packed parameters, updated in place.
    order : ndarray of int64
        Row indices of ``X`` in the order of this epoch; batch ``b`` is
        ``order[b * batch_size:(b + 1) * batch_size]``.
    opt_kind : int
        Optimizer code (:data:`lstmforecast._optimizers.OPT_SGD` or ``OPT_ADAM``).
    opt_state : ndarray (2, P)
        Optimizer state, updated in place.
    step : ndarray of int64 (1,)
        Optimizer step count, updated in place.
    hyper : ndarray of float64
        Hyper-parameters (see :func:`lstmforecast._optimizers.make_hyper`).
    l2_mask, train_mask : ndarray (P,)
        1 where the L2 penalty applies / where a parameter is trained, else 0.
    parallel : bool
        Passed to :func:`lstmforecast._kernels.loss_grad_into`.

    Returns
    -------
    losses : ndarray (n_batches,)
        Each batch's loss (data loss plus L2 penalty) before its update.
    sizes : ndarray (n_batches,)
        Each batch's number of sequences.
    failed : int
        ``-1``, or the index (within this call) of the batch whose loss, gradient or
        update was not finite. That batch's update is undone and the call stops.
    """
    n_seq = order.shape[0]
    losses = np.zeros(n_batches)
    sizes = np.zeros(n_batches)
    params_before = np.empty_like(params)
    state_before = np.empty_like(opt_state)
    work = loss_grad_workspace(params, layout, X, batch_size, cell, hidden_size,
                               block_size)
    for i in range(n_batches):
        start = (first_batch + i) * batch_size
        stop = min(n_seq, start + batch_size)
        loss, grad = loss_grad_into(params, layout, X, lengths, Y, mask, state0,
                                    order[start:stop], cell, hidden_size, block_size,
                                    loss_kind, parallel, work)
        loss, ok = apply_update(params, grad, loss, opt_kind, opt_state, step, hyper,
                                l2_mask, train_mask, params_before, state_before)
        losses[i] = loss
        sizes[i] = stop - start
        if not ok:
            return losses, sizes, i
    return losses, sizes, -1


@njit(**_JIT)
def train_sequences(params, layout, X, lengths, Y, mask, state0, order, batch_size,
                    first_batch, n_batches, cell, hidden_size, block_size, loss_kind,
                    opt_kind, opt_state, step, hyper, l2_mask, train_mask, parallel):
    """:func:`train_batches` for ``batch_size == 1`` (online training), on the
    one-sequence kernels (:func:`lstmforecast._kernels.loss_grad_one`).

    Same arguments and results as :func:`train_batches`, bitwise; ``batch_size``
    must be 1 and ``parallel`` is unused (one sequence runs on one thread). A
    separate kernel, so that fits with larger batches never compile it.
    """
    losses = np.zeros(n_batches)
    sizes = np.ones(n_batches)
    params_before = np.empty_like(params)
    state_before = np.empty_like(opt_state)
    grad = np.empty_like(params)
    work = loss_grad_workspace(params, layout, X, 1, cell, hidden_size, block_size)
    work = work.reshape(work.size)
    for i in range(n_batches):
        loss = loss_grad_one(params, layout, X, lengths, Y, mask, state0,
                             order[first_batch + i], cell, hidden_size, block_size,
                             loss_kind, work, grad)
        loss, ok = apply_update(params, grad, loss, opt_kind, opt_state, step, hyper,
                                l2_mask, train_mask, params_before, state_before)
        losses[i] = loss
        if not ok:
            return losses, sizes, i
    return losses, sizes, -1


# Corrupt or unwritable cache files recompile instead of failing.
config.harden_caches(globals())
