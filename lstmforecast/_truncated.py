"""The 1997 paper's truncated, online learning rule (Appendix A.1, eqs. 19-28).

For a single layer of ``lstm1997`` cells, and of ``lstm`` cells (with a forget gate)
using the matching traces of Gers, Schmidhuber & Cummins (2000), "Learning to
forget". Error reaches the incoming weights of the cells and gates but flows back in
time only through the constant error carousel (the cell state): the partial
derivatives of each cell state with respect to the weights of the units that feed
it (cell input and input gate; for ``lstm`` also the forget gate) are carried
forward as traces (RTRL-style) and updated at every step. Cost O(weights) per time
step and memory O(weights), independent of the sequence length: no history is
stored.

Each unit's sources are ``[x_t (D), r_{t-1} (R), 1]``; the output layer sees the
cells of the same step. Traces start at zero with each sequence (activations are
reset), or are carried along a stream by :func:`truncated_stream`.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from . import config
from ._kernels import (
    _head_loss_grad,
    _layer_forward_one,
    _squashing,
    _transposed_weights,
)
from ._math import tanh
from ._views import borrowed
from ._training import apply_update

_JIT = config.jit_options()


@njit(inline="always", **_JIT)
def _add_row(grad, off_wih, off_whh, off_b, off_b2, D, n_rec, u, scale, src):
    """``grad[row u] += scale * src`` for one unit's weight_ih, weight_hh and bias
    (both biases for ``cell="lstm"``, whose two bias vectors act as one)."""
    for m in range(D):
        grad[off_wih + u * D + m] += scale * src[m]
    for m in range(n_rec):
        grad[off_whh + u * n_rec + m] += scale * src[D + m]
    grad[off_b + u] += scale * src[D + n_rec]
    if off_b2 >= 0:
        grad[off_b2 + u] += scale * src[D + n_rec]


@njit(**_JIT)
def _truncated_sequence(params, layout, X, length, Y, mask, cell, hidden_size,
                        block_size, loss_kind, grad, step_update, opt_kind, opt_state,
                        step, hyper, l2_mask, train_mask, params_before, state_before,
                        r_prev, c_prev, traces):
    """Run one sequence from the state ``r_prev (R, 1)``, ``c_prev (H, 1)`` and the
    traces ``traces (3, H, n_src)``, adding the truncated gradient to ``grad``.

    The state and traces are updated in place (zero them to start a sequence; keep
    them to continue a stream). ``cell="lstm1997"`` (codes 1-4: the Appendix's,
    Table 10's or Exp. 2's two squashings) uses the paper's traces (eqs. 25 and 27:
    ``traces[0]`` for the input gates, ``traces[1]`` for the cell inputs);
    ``cell="lstm"`` (code 0) those of Gers et al. (2000), decayed by the forget
    gate, for the input gate, the forget gate and the cell input
    (``traces[0..2]``). Output gates get the immediate term only.

    With ``step_update`` the optimizer is applied after every step that has a target
    (``grad`` then holds only that step's contribution and is cleared after each
    update). Returns ``(weighted_loss, ok)``; ``ok`` is False when an update was not
    finite (the parameters are then as before that update).
    """
    H = hidden_size
    n_blocks = H // block_size
    n_units = 4 * H if cell == 0 else H + 2 * n_blocks
    n_rec = r_prev.shape[0]
    n_out = Y.shape[1]
    dt = params.dtype
    return _truncated_steps(
        params, layout, X, length, Y, mask, cell, hidden_size, block_size, loss_kind,
        grad, step_update, opt_kind, opt_state, step, hyper, l2_mask, train_mask,
        params_before, state_before, r_prev, c_prev, traces,
        np.empty(X.shape[1] + n_rec + 1, dtype=dt), np.empty((n_rec, 1), dtype=dt),
        np.empty((H, 1), dtype=dt), np.empty((n_units, 1), dtype=dt),
        np.empty((n_out, 1), dtype=dt), np.empty(1, dtype=dt),
        np.empty((n_out, 1), dtype=dt), np.empty((H, 1), dtype=dt),
        np.empty(H, dtype=dt), np.empty((1, n_rec + X.shape[1], n_units), dtype=dt),
        np.empty((1, n_units), dtype=dt), np.empty((X.shape[1], 1), dtype=dt))


@njit(**_JIT)
def _truncated_steps(params, layout, X, length, Y, mask, cell, hidden_size,
                     block_size, loss_kind, grad, step_update, opt_kind, opt_state,
                     step, hyper, l2_mask, train_mask, params_before, state_before,
                     r_prev, c_prev, traces, src, r, c, act, target, weight, logits,
                     dy, ds, weights_t, bias, x_col):
    """The time loop of :func:`_truncated_sequence` (buffers allocated there).

    The forward step is the one-sequence kernels' (bitwise the chunk kernels'
    arithmetic, on 1-D vectors), with the weights transposed into ``weights_t``,
    ``bias`` at the start and after every update.
    """
    # (views of borrowed arguments carry no reference count; see _views)
    params = borrowed(params)
    X = borrowed(X)
    Y = borrowed(Y)
    grad = borrowed(grad)
    r_prev = borrowed(r_prev)
    c_prev = borrowed(c_prev)
    traces = borrowed(traces)
    src = borrowed(src)
    r = borrowed(r)
    c = borrowed(c)
    act = borrowed(act)
    target = borrowed(target)
    weight = borrowed(weight)
    logits = borrowed(logits)
    dy = borrowed(dy)
    ds = borrowed(ds)
    weights_t = borrowed(weights_t)
    bias = borrowed(bias)
    x_col = borrowed(x_col)
    H = hidden_size
    lstm = cell == 0
    # the 1997 cell's squashing: the Appendix's, Table 10's or Exp. 2's (see _layout)
    _, off_g, slope_g, inv_sq_g, amp_h, slope_h, h_identity = _squashing(cell)
    n_blocks = H // block_size
    n_rec = r_prev.shape[0]
    D = X.shape[1]
    n_src = D + n_rec + 1
    n_out = Y.shape[1]
    off_wih = layout[0, 0]
    off_whh = layout[0, 1]
    off_b = layout[0, 2]
    off_b2 = layout[0, 3]
    n_units = act.shape[0]
    # 1-D views of the one-lane state (the arguments are borrowed: no count)
    r_prev_1 = r_prev.reshape(n_rec)
    c_prev_1 = c_prev.reshape(H)
    act_1 = act.reshape(n_units)
    c_1 = c.reshape(H)
    r_1 = r.reshape(n_rec)
    _transposed_weights(params, layout, n_units, n_rec, weights_t, bias)
    loss = 0.0
    for t in range(length):
        for m in range(D):
            src[m] = X[t, m]
        for m in range(n_rec):
            src[D + m] = r_prev[m, 0]
        src[n_src - 1] = 1.0
        _layer_forward_one(weights_t[0], bias[0], cell, H, block_size, X[t],
                           r_prev_1, c_prev_1, act_1, c_1, r_1)
        if lstm:
            # Gers et al. (2000): s = f s_prev + i g, so each trace decays by f
            for k in range(H):
                gi = act[k, 0]
                gf = act[H + k, 0]
                gg = act[2 * H + k, 0]
                a_i = gg * gi * (1.0 - gi)
                a_f = c_prev[k, 0] * gf * (1.0 - gf)
                a_g = gi * (1.0 - gg * gg)
                for m in range(n_src):
                    traces[0, k, m] = gf * traces[0, k, m] + a_i * src[m]
                    traces[1, k, m] = gf * traces[1, k, m] + a_f * src[m]
                    traces[2, k, m] = gf * traces[2, k, m] + a_g * src[m]
        else:
            # eqs. 25 and 27: carry d s_c / d w forward for the input-gate and cell
            # rows
            for k in range(H):
                j = k // block_size
                yin = act[H + j, 0]
                gk = act[k, 0]
                a_in = gk * yin * (1.0 - yin)
                g0 = gk - off_g
                a_c = slope_g * (1.0 - inv_sq_g * g0 * g0) * yin
                for m in range(n_src):
                    traces[0, k, m] += a_in * src[m]
                    traces[1, k, m] += a_c * src[m]
        w = mask[t]
        if w != 0.0:
            for k in range(n_out):
                target[k, 0] = Y[t, k]
            for m in range(D):
                x_col[m, 0] = X[t, m]
            weight[0] = w
            # eq. 19 and the head's update: delta at the output, dy at the cells
            loss += _head_loss_grad(params, layout, loss_kind, r[:H], x_col, target,
                                    weight, logits, grad, dy)
            if lstm:
                for k in range(H):
                    go = act[3 * H + k, 0]
                    hs = tanh(c[k, 0])
                    ds[k] = go * (1.0 - hs * hs) * dy[k, 0]
                    _add_row(grad, off_wih, off_whh, off_b, off_b2, D, n_rec,
                             3 * H + k, hs * go * (1.0 - go) * dy[k, 0], src)
                    for q in range(3):
                        _add_row(grad, off_wih, off_whh, off_b, off_b2, D, n_rec,
                                 q * H + k, ds[k], traces[q, k])
            else:
                for k in range(H):
                    j = k // block_size
                    if h_identity:
                        h_slope = 1.0
                    else:
                        hs = tanh(0.5 * c[k, 0])
                        h_slope = slope_h * (1.0 - hs * hs)
                    ds[k] = act[H + n_blocks + j, 0] * h_slope * dy[k, 0]
                for j in range(n_blocks):
                    # eqs. 21-22: output gates, immediate term only
                    yout = act[H + n_blocks + j, 0]
                    d_out = 0.0
                    for v in range(block_size):
                        k = j * block_size + v
                        h = c[k, 0] if h_identity else amp_h * tanh(0.5 * c[k, 0])
                        d_out += h * dy[k, 0]
                    d_out *= yout * (1.0 - yout)
                    _add_row(grad, off_wih, off_whh, off_b, off_b2, D, n_rec,
                             H + n_blocks + j, d_out, src)
                    # eq. 26: input gates, through the traces of the block's cells
                    for v in range(block_size):
                        k = j * block_size + v
                        _add_row(grad, off_wih, off_whh, off_b, off_b2, D, n_rec,
                                 H + j, ds[k], traces[0, k])
                # eq. 28: cell inputs
                for k in range(H):
                    _add_row(grad, off_wih, off_whh, off_b, off_b2, D, n_rec, k,
                             ds[k], traces[1, k])
            if step_update:
                _, ok = apply_update(params, grad, 0.0, opt_kind, opt_state, step,
                                     hyper, l2_mask, train_mask, params_before,
                                     state_before)
                grad[:] = 0.0
                if not ok:
                    return loss, False
                _transposed_weights(params, layout, n_units, n_rec, weights_t, bias)
        for m in range(n_rec):
            r_prev[m, 0] = r[m, 0]
        for k in range(H):
            c_prev[k, 0] = c[k, 0]
    return loss, True


@njit(**_JIT)
def fresh_state(params, input_size, cell, hidden_size, block_size):
    """Zero state and traces, in ``params.dtype``, to start a sequence or a
    stream: ``(r (R, 1), c (H, 1), traces (3, H, input_size + R + 1))``."""
    H = hidden_size
    n_rec = H if cell == 0 else H + 2 * (H // block_size)
    dt = params.dtype
    return (np.zeros((n_rec, 1), dtype=dt), np.zeros((H, 1), dtype=dt),
            np.zeros((3, H, input_size + n_rec + 1), dtype=dt))


@njit(**_JIT)
def truncated_loss_grad(params, layout, X, lengths, Y, mask, seq_index, cell,
                        hidden_size, block_size, loss_kind):
    """Mean loss and the truncated gradient over ``seq_index`` (no update).

    Same normalisation as :func:`lstmforecast._kernels.loss_grad`: sums over target
    steps divided by the total mask weight.
    """
    grad = np.zeros_like(params)
    dummy_state = np.zeros((2, params.shape[0]), dtype=params.dtype)
    dummy_step = np.zeros(1, dtype=np.int64)
    hyper = np.zeros(8)
    ones = np.ones_like(params)
    before = np.empty_like(params)
    state_before = np.empty_like(dummy_state)
    loss = 0.0
    weight_total = 0.0
    for i in range(seq_index.shape[0]):
        b = seq_index[i]
        for t in range(lengths[b]):
            weight_total += mask[b, t]
        r, c, traces = fresh_state(params, X.shape[2], cell, hidden_size,
                                   block_size)
        seq_loss, _ = _truncated_sequence(
            params, layout, X[b], lengths[b], Y[b], mask[b], cell, hidden_size,
            block_size, loss_kind, grad, False, 0, dummy_state, dummy_step, hyper,
            ones, ones, before, state_before, r, c, traces)
        loss += seq_loss
    if weight_total > 0.0:
        loss /= weight_total
        for p in range(grad.shape[0]):
            grad[p] /= weight_total
    return loss, grad


@njit(**_JIT)
def train_truncated(params, layout, X, lengths, Y, mask, order, batch_size,
                    first_batch, n_batches, cell, hidden_size, block_size,
                    loss_kind, step_update, opt_kind, opt_state, step, hyper, l2_mask,
                    train_mask):
    """Train with the truncated rule; same contract as
    :func:`lstmforecast._training.train_batches`.

    ``step_update`` (``update="step"``, which needs ``batch_size == 1``) applies the
    optimizer after every target step of every sequence, using that step's
    mask-weighted gradient; otherwise each batch's mean gradient is applied once.
    """
    n_seq = order.shape[0]
    losses = np.zeros(n_batches)
    sizes = np.zeros(n_batches)
    params_before = np.empty_like(params)
    state_before = np.empty_like(opt_state)
    grad = np.zeros_like(params)
    for i in range(n_batches):
        start = (first_batch + i) * batch_size
        stop = min(n_seq, start + batch_size)
        sizes[i] = stop - start
        if step_update:
            loss = 0.0
            weight_total = 0.0
            for q in range(start, stop):
                b = order[q]
                for t in range(lengths[b]):
                    weight_total += mask[b, t]
                grad[:] = 0.0
                r, c, traces = fresh_state(params, X.shape[2], cell, hidden_size,
                                           block_size)
                seq_loss, ok = _truncated_sequence(
                    params, layout, X[b], lengths[b], Y[b], mask[b], cell,
                    hidden_size, block_size, loss_kind, grad, True, opt_kind,
                    opt_state, step, hyper, l2_mask, train_mask, params_before,
                    state_before, r, c, traces)
                loss += seq_loss
                if not ok or not np.isfinite(seq_loss):
                    losses[i] = seq_loss
                    return losses, sizes, i
            losses[i] = loss / weight_total if weight_total > 0.0 else 0.0
        else:
            loss, g = truncated_loss_grad(params, layout, X, lengths, Y, mask,
                                          order[start:stop], cell, hidden_size,
                                          block_size, loss_kind)
            loss, ok = apply_update(params, g, loss, opt_kind, opt_state, step,
                                    hyper, l2_mask, train_mask, params_before,
                                    state_before)
            losses[i] = loss
            if not ok:
                return losses, sizes, i
    return losses, sizes, -1


@njit(**_JIT)
def truncated_stream(params, layout, X, Y, mask, cell, hidden_size, block_size,
                     loss_kind, opt_kind, opt_state, step, hyper, l2_mask, train_mask,
                     r, c, traces):
    """Continue one stream by ``X.shape[0]`` steps: O(weights) time per step.

    ``r (R, 1)``, ``c (H, 1)`` and ``traces (3, H, n_src)`` carry the stream's state
    and traces between calls (updated in place). Each step with ``mask[t] != 0`` is
    followed by an optimizer update from that step's truncated gradient (the paper's
    online rule); with an all-zero mask the weights do not change and the call only
    advances the state and traces.

    Returns
    -------
    loss : float
        Mask-weighted loss of the target steps before their updates.
    ok : bool
        False when an update was not finite; the parameters are then as before that
        update and the call stops there.
    """
    grad = np.zeros_like(params)
    params_before = np.empty_like(params)
    state_before = np.empty_like(opt_state)
    return _truncated_sequence(params, layout, X, X.shape[0], Y, mask, cell,
                               hidden_size, block_size, loss_kind, grad, True,
                               opt_kind, opt_state, step, hyper, l2_mask, train_mask,
                               params_before, state_before, r, c, traces)


# Corrupt or unwritable cache files recompile instead of failing.
config.harden_caches(globals())
