"""CPU kernels: forward pass and full-gradient BPTT for both cells.

Kernels take arrays and scalars only (the parameter layout is documented in
:mod:`lstmforecast._layout`). Each public driver here runs in parallel over sequences
with per-chunk buffers; the chunk split depends only on the number of sequences and
chunk results are reduced in a fixed order, so results do not depend on the thread
count.

Shapes used throughout: ``X (N, T, D)`` zero-padded inputs, ``lengths (N,)`` int64,
``Y (N, T, K)`` targets, ``mask (N, T)`` target weights, ``state0 (N0, L, R + H)``
initial states (``N0 == 0`` means zeros), ``seq_index (B,)`` int64 rows of ``X`` to
use (a mini-batch).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import config
from ._layout import (
    CELL_LSTM,
    LOSS_LOGISTIC_XENT,
    LOSS_SIGMOID_SQUARED,
    LOSS_SOFTMAX_XENT,
    LOSS_SQUARED,
)

_JIT = {"cache": config.LSTMF_CACHE, "fastmath": config.LSTMF_FASTMATH, "nogil": True}
_N_CHUNKS = config.LSTMF_N_CHUNKS


@njit(inline="always", **_JIT)
def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


@njit(**_JIT)
def _layer_forward_step(params, layout, layer, cell, hidden_size, block_size, x,
                        r_prev, c_prev, act, c, r):
    """One step of one layer: fill ``act`` (U), ``c`` (H) and ``r`` (R)."""
    off_wih = layout[layer, 0]
    off_whh = layout[layer, 1]
    off_bih = layout[layer, 2]
    off_bhh = layout[layer, 3]
    din = layout[layer, 4]
    n_units = act.shape[0]
    n_rec = r_prev.shape[0]
    for u in range(n_units):
        acc = params[off_bih + u]
        if off_bhh >= 0:
            acc += params[off_bhh + u]
        base = off_wih + u * din
        for k in range(din):
            acc += params[base + k] * x[k]
        base = off_whh + u * n_rec
        for k in range(n_rec):
            acc += params[base + k] * r_prev[k]
        act[u] = acc
    H = hidden_size
    if cell == CELL_LSTM:
        for k in range(H):
            gi = _sigmoid(act[k])
            gf = _sigmoid(act[H + k])
            gg = np.tanh(act[2 * H + k])
            go = _sigmoid(act[3 * H + k])
            act[k] = gi
            act[H + k] = gf
            act[2 * H + k] = gg
            act[3 * H + k] = go
            c[k] = gf * c_prev[k] + gi * gg
            r[k] = go * np.tanh(c[k])
    else:
        n_blocks = H // block_size
        for j in range(n_blocks):
            act[H + j] = _sigmoid(act[H + j])
            act[H + n_blocks + j] = _sigmoid(act[H + n_blocks + j])
            r[H + j] = act[H + j]
            r[H + n_blocks + j] = act[H + n_blocks + j]
        for k in range(H):
            j = k // block_size
            gk = 2.0 * np.tanh(0.5 * act[k])
            act[k] = gk
            c[k] = c_prev[k] + act[H + j] * gk
            r[k] = act[H + n_blocks + j] * np.tanh(0.5 * c[k])


@njit(**_JIT)
def _layer_backward_step(params, layout, layer, cell, hidden_size, block_size, x,
                         r_prev, c_prev, act, c, dr, dc, grad, dz, dx, dr_prev):
    """Backward through one step of one layer.

    On entry ``dr`` (R) and ``dc`` (H) hold the loss gradient with respect to this
    step's recurrent output and cell state. On exit ``dc`` holds the gradient with
    respect to ``c_prev``, ``dx`` with respect to ``x`` and ``dr_prev`` with respect
    to ``r_prev``; parameter gradients are added to ``grad``.
    """
    off_wih = layout[layer, 0]
    off_whh = layout[layer, 1]
    off_bih = layout[layer, 2]
    off_bhh = layout[layer, 3]
    din = layout[layer, 4]
    n_units = act.shape[0]
    n_rec = r_prev.shape[0]
    H = hidden_size
    if cell == CELL_LSTM:
        for k in range(H):
            gi = act[k]
            gf = act[H + k]
            gg = act[2 * H + k]
            go = act[3 * H + k]
            tc = np.tanh(c[k])
            dh = dr[k]
            dck = dc[k] + dh * go * (1.0 - tc * tc)
            dz[k] = dck * gg * gi * (1.0 - gi)
            dz[H + k] = dck * c_prev[k] * gf * (1.0 - gf)
            dz[2 * H + k] = dck * gi * (1.0 - gg * gg)
            dz[3 * H + k] = dh * tc * go * (1.0 - go)
            dc[k] = dck * gf
    else:
        n_blocks = H // block_size
        for j in range(n_blocks):
            yin = act[H + j]
            yout = act[H + n_blocks + j]
            d_out = dr[H + n_blocks + j]
            d_in = dr[H + j]
            for v in range(block_size):
                k = j * block_size + v
                hs = np.tanh(0.5 * c[k])
                d_out += dr[k] * hs
                dsk = dc[k] + dr[k] * yout * 0.5 * (1.0 - hs * hs)
                gk = act[k]
                d_in += dsk * gk
                dz[k] = dsk * yin * (1.0 - 0.25 * gk * gk)
                dc[k] = dsk
            dz[H + j] = d_in * yin * (1.0 - yin)
            dz[H + n_blocks + j] = d_out * yout * (1.0 - yout)
    for k in range(din):
        dx[k] = 0.0
    for k in range(n_rec):
        dr_prev[k] = 0.0
    for u in range(n_units):
        du = dz[u]
        grad[off_bih + u] += du
        if off_bhh >= 0:
            grad[off_bhh + u] += du
        base = off_wih + u * din
        for k in range(din):
            grad[base + k] += du * x[k]
            dx[k] += params[base + k] * du
        base = off_whh + u * n_rec
        for k in range(n_rec):
            grad[base + k] += du * r_prev[k]
            dr_prev[k] += params[base + k] * du


@njit(**_JIT)
def _head_forward(params, layout, loss_kind, h, out):
    """Output layer: ``out = act(W h + b)``; returns nothing."""
    n_layers = layout.shape[0] - 1
    off_w = layout[n_layers, 0]
    off_b = layout[n_layers, 1]
    n_out = out.shape[0]
    H = h.shape[0]
    for k in range(n_out):
        acc = params[off_b + k]
        base = off_w + k * H
        for m in range(H):
            acc += params[base + m] * h[m]
        out[k] = acc
    if loss_kind == LOSS_SIGMOID_SQUARED or loss_kind == LOSS_LOGISTIC_XENT:
        for k in range(n_out):
            out[k] = _sigmoid(out[k])
    elif loss_kind == LOSS_SOFTMAX_XENT:
        zmax = out[0]
        for k in range(1, n_out):
            zmax = max(zmax, out[k])
        total = 0.0
        for k in range(n_out):
            out[k] = np.exp(out[k] - zmax)
            total += out[k]
        for k in range(n_out):
            out[k] = out[k] / total


@njit(**_JIT)
def _head_loss_grad(params, layout, loss_kind, h, target, weight, logits, dlogit,
                    grad, dh):
    """Loss of one target step, times ``weight``; adds head gradients to ``grad``.

    ``dh`` receives (is added) the gradient with respect to the head input ``h``.
    ``logits`` and ``dlogit`` are scratch buffers of size K. Returns the weighted
    loss.
    """
    n_layers = layout.shape[0] - 1
    off_w = layout[n_layers, 0]
    off_b = layout[n_layers, 1]
    n_out = logits.shape[0]
    H = h.shape[0]
    for k in range(n_out):
        acc = params[off_b + k]
        base = off_w + k * H
        for m in range(H):
            acc += params[base + m] * h[m]
        logits[k] = acc
    loss = 0.0
    if loss_kind == LOSS_SQUARED:
        for k in range(n_out):
            diff = logits[k] - target[k]
            loss += 0.5 * diff * diff
            dlogit[k] = diff
    elif loss_kind == LOSS_SIGMOID_SQUARED:
        for k in range(n_out):
            y = _sigmoid(logits[k])
            diff = y - target[k]
            loss += 0.5 * diff * diff
            dlogit[k] = diff * y * (1.0 - y)
    elif loss_kind == LOSS_SOFTMAX_XENT:
        zmax = logits[0]
        for k in range(1, n_out):
            zmax = max(zmax, logits[k])
        total = 0.0
        for k in range(n_out):
            total += np.exp(logits[k] - zmax)
        log_norm = zmax + np.log(total)
        t_sum = 0.0
        for k in range(n_out):
            t_sum += target[k]
        for k in range(n_out):
            loss -= target[k] * (logits[k] - log_norm)
            dlogit[k] = np.exp(logits[k] - log_norm) * t_sum - target[k]
    else:
        for k in range(n_out):
            z = logits[k]
            # log(1 + exp(-|z|)) + max(z, 0) - t z, stable for any z
            loss += np.log1p(np.exp(-abs(z))) + max(z, 0.0) - target[k] * z
            dlogit[k] = _sigmoid(z) - target[k]
    for k in range(n_out):
        d = dlogit[k] * weight
        grad[off_b + k] += d
        base = off_w + k * H
        for m in range(H):
            grad[base + m] += d * h[m]
            dh[m] += params[base + m] * d
    return loss * weight


@njit(**_JIT)
def _sequence_loss_grad(params, layout, X, length, Y, mask, state0, has_state0, cell,
                        hidden_size, block_size, loss_kind, grad, acts, cs, rs,
                        scratch):
    """Forward and BPTT of one sequence; adds to ``grad``, returns the weighted loss.

    ``acts (T, L, U)``, ``cs (T + 1, L, H)`` and ``rs (T + 1, L, R)`` are per-chunk
    caches (index 0 of ``cs``/``rs`` holds the initial state).
    """
    n_layers = layout.shape[0] - 1
    H = hidden_size
    n_rec = rs.shape[2]
    n_out = Y.shape[1]
    for layer in range(n_layers):
        for k in range(n_rec):
            rs[0, layer, k] = state0[layer, k] if has_state0 else 0.0
        for k in range(H):
            cs[0, layer, k] = state0[layer, n_rec + k] if has_state0 else 0.0
    for t in range(length):
        for layer in range(n_layers):
            x = X[t] if layer == 0 else rs[t + 1, layer - 1, :H]
            _layer_forward_step(params, layout, layer, cell, H, block_size, x,
                                rs[t, layer], cs[t, layer], acts[t, layer],
                                cs[t + 1, layer], rs[t + 1, layer])
    # scratch rows: 0 dr per layer (L*R), then dc (L*H), dz (U), dx (max(D, H)),
    # dr_prev (R), logits (K), dlogit (K), dh (H)
    n_units = acts.shape[2]
    dr_all = scratch[:n_layers * n_rec].reshape((n_layers, n_rec))
    pos = n_layers * n_rec
    dc_all = scratch[pos:pos + n_layers * H].reshape((n_layers, H))
    pos += n_layers * H
    dz = scratch[pos:pos + n_units]
    pos += n_units
    din_max = max(X.shape[1], H)
    dx = scratch[pos:pos + din_max]
    pos += din_max
    dr_prev = scratch[pos:pos + n_rec]
    pos += n_rec
    logits = scratch[pos:pos + n_out]
    pos += n_out
    dlogit = scratch[pos:pos + n_out]
    pos += n_out
    dh = scratch[pos:pos + H]
    for i in range(n_layers * n_rec + n_layers * H):
        scratch[i] = 0.0
    loss = 0.0
    top = n_layers - 1
    for t in range(length - 1, -1, -1):
        w = mask[t]
        if w != 0.0:
            for m in range(H):
                dh[m] = 0.0
            loss += _head_loss_grad(params, layout, loss_kind, rs[t + 1, top, :H], Y[t],
                                    w, logits, dlogit, grad, dh)
            for m in range(H):
                dr_all[top, m] += dh[m]
        for layer in range(top, -1, -1):
            din = layout[layer, 4]
            x = X[t] if layer == 0 else rs[t + 1, layer - 1, :H]
            _layer_backward_step(params, layout, layer, cell, H, block_size, x,
                                 rs[t, layer], cs[t, layer], acts[t, layer],
                                 cs[t + 1, layer], dr_all[layer], dc_all[layer],
                                 grad, dz, dx[:din], dr_prev)
            for k in range(n_rec):
                dr_all[layer, k] = dr_prev[k]
            if layer > 0:
                for k in range(H):
                    dr_all[layer - 1, k] += dx[k]
    return loss


@njit(**_JIT)
def _chunk_bounds(n_items, n_chunks, chunk):
    return (chunk * n_items) // n_chunks, ((chunk + 1) * n_items) // n_chunks


# Below this much work (time steps x parameters) a call runs on one thread: the
# parallel launch costs more than it saves, and badly so when cores are shared.
_PARALLEL_MIN_WORK = 200_000


@njit(**_JIT)
def _network_sizes(layout, cell, hidden_size, block_size):
    """``(n_layers, n_units, n_rec)`` of a network."""
    n_layers = layout.shape[0] - 1
    if cell == CELL_LSTM:
        return n_layers, 4 * hidden_size, hidden_size
    n_units = hidden_size + 2 * (hidden_size // block_size)
    return n_layers, n_units, n_units


@njit(**_JIT)
def _loss_grad_chunk(chunk, n_chunks, params, layout, X, lengths, Y, mask, state0,
                     seq_index, cell, hidden_size, block_size, loss_kind, t_max,
                     grads, losses):
    """Accumulate one chunk's sequences into ``grads[chunk]`` and ``losses[chunk]``."""
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    H = hidden_size
    n_out = Y.shape[2]
    has_state0 = state0.shape[0] > 0
    acts = np.empty((t_max, n_layers, n_units), dtype=params.dtype)
    cs = np.empty((t_max + 1, n_layers, H), dtype=params.dtype)
    rs = np.empty((t_max + 1, n_layers, n_rec), dtype=params.dtype)
    n_scratch = (n_layers * (n_rec + H) + n_units + max(X.shape[2], H) + n_rec
                 + 2 * n_out + H)
    scratch = np.empty(n_scratch, dtype=params.dtype)
    no_state = np.zeros((n_layers, n_rec + H), dtype=params.dtype)
    start, stop = _chunk_bounds(seq_index.shape[0], n_chunks, chunk)
    for i in range(start, stop):
        b = seq_index[i]
        s0 = state0[b] if has_state0 else no_state
        losses[chunk] += _sequence_loss_grad(
            params, layout, X[b], lengths[b], Y[b], mask[b], s0, has_state0, cell,
            H, block_size, loss_kind, grads[chunk], acts, cs, rs, scratch)


@njit(parallel=True, **_JIT)
def _loss_grad_parallel(n_chunks, params, layout, X, lengths, Y, mask, state0,
                        seq_index, cell, hidden_size, block_size, loss_kind, t_max,
                        grads, losses):
    for chunk in prange(n_chunks):
        _loss_grad_chunk(chunk, n_chunks, params, layout, X, lengths, Y, mask, state0,
                         seq_index, cell, hidden_size, block_size, loss_kind, t_max,
                         grads, losses)


@njit(**_JIT)
def loss_grad(params, layout, X, lengths, Y, mask, state0, seq_index, cell,
              hidden_size, block_size, loss_kind):
    """Mean loss and its full BPTT gradient over the sequences ``seq_index``.

    Parameters
    ----------
    params : ndarray (P,)
        Packed parameters (float32 or float64; sets the arithmetic dtype).
    layout : ndarray of int64 (L + 1, 5)
        Offset table from :func:`lstmforecast._layout.make_layout`.
    X, lengths, Y, mask, state0, seq_index : ndarray
        See the module docstring.
    cell, hidden_size, block_size, loss_kind : int
        Network codes (see :mod:`lstmforecast._layout`).

    Returns
    -------
    loss : float
        ``sum(mask * per-step loss) / sum(mask)`` over the selected sequences
        (0 when the mask is empty).
    grad : ndarray (P,)
        Gradient of ``loss`` with respect to ``params``, in ``params.dtype``.
    """
    n_seq = seq_index.shape[0]
    n_params = params.shape[0]
    t_max = 0
    n_steps = 0
    weight_total = 0.0
    for i in range(n_seq):
        b = seq_index[i]
        t_max = max(t_max, lengths[b])
        n_steps += lengths[b]
        for t in range(lengths[b]):
            weight_total += mask[b, t]
    n_chunks = max(1, min(n_seq, _N_CHUNKS))
    grads = np.zeros((n_chunks, n_params), dtype=params.dtype)
    losses = np.zeros(n_chunks)
    if n_chunks > 1 and n_steps * n_params >= _PARALLEL_MIN_WORK:
        _loss_grad_parallel(n_chunks, params, layout, X, lengths, Y, mask, state0,
                            seq_index, cell, hidden_size, block_size, loss_kind,
                            t_max, grads, losses)
    else:
        for chunk in range(n_chunks):
            _loss_grad_chunk(chunk, n_chunks, params, layout, X, lengths, Y, mask,
                             state0, seq_index, cell, hidden_size, block_size,
                             loss_kind, t_max, grads, losses)
    grad = np.zeros(n_params, dtype=params.dtype)
    loss = 0.0
    for chunk in range(n_chunks):
        loss += losses[chunk]
        for p in range(n_params):
            grad[p] += grads[chunk, p]
    if weight_total > 0.0:
        scale = 1.0 / weight_total
        loss *= scale
        for p in range(n_params):
            grad[p] *= scale
    return loss, grad


@njit(**_JIT)
def _sequence_forward(params, layout, X, length, state0, has_state0, cell,
                      hidden_size, block_size, loss_kind, last_only, out, state_out,
                      act, r_buf, c_buf):
    """Forward one sequence without caching history: O(weights) memory in T."""
    n_layers = layout.shape[0] - 1
    H = hidden_size
    n_rec = r_buf.shape[2]
    for layer in range(n_layers):
        for k in range(n_rec):
            r_buf[0, layer, k] = state0[layer, k] if has_state0 else 0.0
        for k in range(H):
            c_buf[0, layer, k] = state0[layer, n_rec + k] if has_state0 else 0.0
    cur = 0
    for t in range(length):
        nxt = 1 - cur
        for layer in range(n_layers):
            x = X[t] if layer == 0 else r_buf[nxt, layer - 1, :H]
            _layer_forward_step(params, layout, layer, cell, H, block_size, x,
                                r_buf[cur, layer], c_buf[cur, layer], act,
                                c_buf[nxt, layer], r_buf[nxt, layer])
        if not last_only:
            _head_forward(params, layout, loss_kind, r_buf[nxt, n_layers - 1, :H],
                          out[t])
        cur = nxt
    if last_only:
        _head_forward(params, layout, loss_kind, r_buf[cur, n_layers - 1, :H], out[0])
    for layer in range(n_layers):
        for k in range(n_rec):
            state_out[layer, k] = r_buf[cur, layer, k]
        for k in range(H):
            state_out[layer, n_rec + k] = c_buf[cur, layer, k]


@njit(**_JIT)
def _forward_chunk(chunk, n_chunks, params, layout, X, lengths, state0, cell,
                   hidden_size, block_size, loss_kind, last_only, out, state):
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    has_state0 = state0.shape[0] > 0
    act = np.empty(n_units, dtype=params.dtype)
    r_buf = np.empty((2, n_layers, n_rec), dtype=params.dtype)
    c_buf = np.empty((2, n_layers, hidden_size), dtype=params.dtype)
    start, stop = _chunk_bounds(X.shape[0], n_chunks, chunk)
    for b in range(start, stop):
        s0 = state0[b] if has_state0 else state[b]
        _sequence_forward(params, layout, X[b], lengths[b], s0, has_state0, cell,
                          hidden_size, block_size, loss_kind, last_only, out[b],
                          state[b], act, r_buf, c_buf)


@njit(parallel=True, **_JIT)
def _forward_parallel(n_chunks, params, layout, X, lengths, state0, cell,
                      hidden_size, block_size, loss_kind, last_only, out, state):
    for chunk in prange(n_chunks):
        _forward_chunk(chunk, n_chunks, params, layout, X, lengths, state0, cell,
                       hidden_size, block_size, loss_kind, last_only, out, state)


@njit(**_JIT)
def forward(params, layout, X, lengths, state0, cell, hidden_size, block_size,
            loss_kind, last_only):
    """Network outputs (after the head activation) and final states.

    Memory is O(weights) per sequence besides the returned arrays, whatever the
    sequence length.

    Returns
    -------
    out : ndarray (N, T, K), or (N, 1, K) when ``last_only``
        Outputs at every step (zeros past each sequence's length), or at each
        sequence's last valid step.
    state : ndarray (N, L, R + H)
        The carried state after each sequence's last valid step.
    """
    n_seq = X.shape[0]
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    n_out = layout[n_layers, 2]
    t_out = 1 if last_only else X.shape[1]
    out = np.zeros((n_seq, t_out, n_out), dtype=params.dtype)
    state = np.empty((n_seq, n_layers, n_rec + hidden_size), dtype=params.dtype)
    n_chunks = max(1, min(n_seq, _N_CHUNKS))
    n_steps = 0
    for b in range(n_seq):
        n_steps += lengths[b]
    if n_chunks > 1 and n_steps * params.shape[0] >= _PARALLEL_MIN_WORK // 3:
        _forward_parallel(n_chunks, params, layout, X, lengths, state0, cell,
                          hidden_size, block_size, loss_kind, last_only, out, state)
    else:
        for chunk in range(n_chunks):
            _forward_chunk(chunk, n_chunks, params, layout, X, lengths, state0, cell,
                           hidden_size, block_size, loss_kind, last_only, out, state)
    return out, state
