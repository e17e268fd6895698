"""CPU kernels: forward pass and full-gradient BPTT for both cells.

Kernels take arrays and scalars only (the parameter layout is documented in
:mod:`lstmforecast._layout`). Sequences are processed in chunks stepped together
through time, with the chunk's sequences as the innermost ("lane") axis of every
buffer, so the small matrix products of small networks vectorise across sequences,
and large ones go to BLAS. Chunks run in parallel, each with its own buffers and
gradient accumulator. The chunk split depends only on the number of sequences and the
machine's CPU count (``config.LSTMF_PARALLEL_CHUNKS``), never on the number of
threads, and chunk gradients are reduced in a fixed order: results are bitwise the
same for any ``NUMBA_NUM_THREADS``.

Shapes used throughout: ``X (N, T, D)`` zero-padded inputs, ``lengths (N,)`` int64,
``Y (N, T, K)`` targets, ``mask (N, T)`` target weights, ``state0 (N0, L, R + H)``
initial states (``N0 == 0`` means zeros), ``seq_index (B,)`` int64 rows of ``X`` to
use (a mini-batch).
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange

from . import config
from ._math import flush, flush_floor, like, muladd, sigmoid, tanh
from ._views import borrowed
from ._layout import (
    CELL_LSTM,
    CELL_LSTM1997_EXP2,
    CELL_LSTM1997_EXP2_CENTERED,
    CELL_LSTM1997_TABLE10,
    LOSS_LOGISTIC_XENT,
    LOSS_SIGMOID_SQUARED,
    LOSS_SOFTMAX_XENT,
    LOSS_SQUARED,
)

_JIT = config.jit_options()

# At least this many sequences are stepped together in one chunk (vector lanes);
# larger batches are split into about LSTMF_PARALLEL_CHUNKS chunks.
_LANES = config.LSTMF_LANES
_PARALLEL_CHUNKS = config.LSTMF_PARALLEL_CHUNKS
# At most this many lanes per chunk (unless LSTMF_LANES is larger): the step arrays
# of a 32-unit network then stay in the L2 cache. Predicting 1,024 sequences of
# small_window (H=32) took 4.7 ms in chunks of 256 lanes and 3.4-3.7 ms in chunks
# of 128 (64: the same as 128); chunks of 512 were 20% slower than 256.
_MAX_LANES = 128
# Matrix products over several lanes with at least this many multiply-adds go to
# BLAS: a hand loop over a short lane axis cannot keep the vector units busy (with
# 16 lanes, a 32x8 by 8x16 product took 800 ns as a loop and 110 ns in sgemm), while
# a single lane (one sequence) is a matrix-vector product the loop does well.
_BLAS_MIN_WORK = 512
# Parallel functions use prange only: no automatic conversion of array expressions
# (less for the parfor passes to analyse at compile time).
_PRANGE_ONLY = {"comprehension": False, "reduction": False, "inplace_binop": False,
                "setitem": False, "numpy": False, "stencil": False, "fusion": False,
                "prange": True}
# Below this much work (time steps x parameters) a call runs on one thread: the
# parallel launch costs more than it saves, and badly so when cores are shared.
_PARALLEL_MIN_WORK = 200_000


@njit(**_JIT)
def _mm_tn_set(A, B, C):
    """``C = A.T @ B`` (overwriting ``C``), BLAS for large products."""
    k, m = A.shape
    n = B.shape[1]
    if n > 1 and m * k * n >= _BLAS_MIN_WORK:
        np.dot(A.T, B, C)
        return
    C[:, :] = 0.0
    _mm_tn(A, B, C)


@njit(**_JIT)
def _mm_set(A, B, C):
    """``C = A @ B`` for ``A (m, k)``, ``B (k, n)`` (lanes ``n`` innermost): BLAS
    for large products, else loops that sum as OpenBLAS's kernels do (fused
    multiply-adds, ``k`` ascending from zero; see :func:`_layer_preact`)."""
    m, k = A.shape
    n = B.shape[1]
    if n > 1 and m * k * n >= _BLAS_MIN_WORK:
        np.dot(A, B, C)
        return
    if n == 1:
        zero = like(0.0, C)
        for i in range(m):
            acc = zero
            for p in range(k):
                acc = muladd(A[i, p], B[p, 0], acc)
            C[i, 0] = acc
        return
    for i in range(m):
        row = C[i]
        for j in range(n):
            row[j] = 0.0
        for p in range(k):
            a = A[i, p]
            b_row = B[p]
            for j in range(n):
                row[j] = muladd(a, b_row[j], row[j])


@njit(**_JIT)
def _mm_tn(A, B, C):
    """``C += A.T @ B`` for ``A (k, m)``, ``B (k, n)``."""
    k, m = A.shape
    n = B.shape[1]
    if n > 1 and m * k * n >= _BLAS_MIN_WORK:
        C += np.dot(A.T, B)
        return
    if n == 1:
        for p in range(k):
            b = B[p, 0]
            for i in range(m):
                C[i, 0] += A[p, i] * b
        return
    for p in range(k):
        for i in range(m):
            a = A[p, i]
            for j in range(n):
                C[i, j] += a * B[p, j]


@njit(**_JIT)
def _mm_nt(A, B, C):
    """``C += A @ B.T`` for ``A (m, n)``, ``B (k, n)``: reduction over lanes."""
    m, n = A.shape
    k = B.shape[0]
    if n > 1 and m * k * n >= _BLAS_MIN_WORK:
        C += np.dot(A, B.T)
        return
    if n == 1:
        for i in range(m):
            a = A[i, 0]
            for p in range(k):
                C[i, p] += a * B[p, 0]
        return
    for i in range(m):
        for p in range(k):
            acc = C[i, p]
            for j in range(n):
                acc += A[i, j] * B[p, j]
            C[i, p] = acc


@njit(**_JIT)
def _network_sizes(layout, cell, hidden_size, block_size):
    """``(n_layers, n_units, n_rec)`` of a network."""
    n_layers = layout.shape[0] - 1
    if cell == CELL_LSTM:
        return n_layers, 4 * hidden_size, hidden_size
    n_units = hidden_size + 2 * (hidden_size // block_size)
    return n_layers, n_units, n_units


@njit(**_JIT)
def _weights(params, layout, layer, n_units, n_rec):
    """Views ``(W_ih, W_hh)`` of one layer's weight matrices."""
    off_wih = layout[layer, 0]
    off_whh = layout[layer, 1]
    din = layout[layer, 4]
    w_ih = params[off_wih:off_wih + n_units * din].reshape((n_units, din))
    w_hh = params[off_whh:off_whh + n_units * n_rec].reshape((n_units, n_rec))
    return w_ih, w_hh


@njit(**_JIT)
def _layer_preact(params, layout, layer, x, r_prev, act):
    """The units' net inputs ``act (U, n) = W_hh r_prev + W_ih x + b`` by loops,
    for chunks too small for :func:`_stacked_preact`.

    Each sum runs in the order of the stacked product, ``r_prev`` then ``x`` then
    the bias, with fused multiply-adds, as OpenBLAS's kernels sum (bitwise so on
    blocks of 16 lanes on the machine where this was measured; edge kernels, and
    some lanes of OpenBLAS's Haswell kernels, differ in the last bits): a
    sequence's outputs then hardly depend on whether it is predicted alone (here)
    or in a batch (in BLAS).
    """
    n_units = act.shape[0]
    n_rec = r_prev.shape[0]
    n = act.shape[1]
    din = x.shape[0]
    off_wih = layout[layer, 0]
    off_whh = layout[layer, 1]
    off_bih = layout[layer, 2]
    off_bhh = layout[layer, 3]
    if n == 1:
        # (one lane: the same sums in registers, without a lane loop per term)
        zero = like(0.0, act)
        for u in range(n_units):
            acc = zero
            w = off_whh + u * n_rec
            for k in range(n_rec):
                acc = muladd(params[w + k], r_prev[k, 0], acc)
            w = off_wih + u * din
            for d in range(din):
                acc = muladd(params[w + d], x[d, 0], acc)
            b = params[off_bih + u]
            if off_bhh >= 0:
                b += params[off_bhh + u]
            act[u, 0] = acc + b
        return
    for u in range(n_units):
        row = act[u]
        for j in range(n):
            row[j] = 0.0
        w = off_whh + u * n_rec
        for k in range(n_rec):
            a = params[w + k]
            r_row = r_prev[k]
            for j in range(n):
                row[j] = muladd(a, r_row[j], row[j])
        w = off_wih + u * din
        for d in range(din):
            a = params[w + d]
            x_row = x[d]
            for j in range(n):
                row[j] = muladd(a, x_row[j], row[j])
        b = params[off_bih + u]
        if off_bhh >= 0:
            b += params[off_bhh + u]
        for j in range(n):
            row[j] += b


@njit(**_JIT)
def _stacked(n_units, n_rec, n):
    """Whether a chunk's net inputs are one stacked product (see
    :func:`_stacked_preact`): when the recurrent product goes to BLAS."""
    return n > 1 and n_units * n_rec * n >= _BLAS_MIN_WORK


@njit(**_JIT)
def _stacked_weight(params, layout, layer, n_rec, u, col):
    """Entry ``(u, col)`` of layer ``layer``'s ``[W_hh, W_ih, b] (U, R + D_in + 1)``;
    the last column is the summed bias ``b_ih + b_hh``."""
    din = layout[layer, 4]
    if col < n_rec:
        return params[layout[layer, 1] + u * n_rec + col]
    if col < n_rec + din:
        return params[layout[layer, 0] + u * din + col - n_rec]
    b = params[layout[layer, 2] + u]
    if layout[layer, 3] >= 0:
        b += params[layout[layer, 3] + u]
    return b


@njit(**_JIT)
def _stacked_buffers(params, layout, n_units, n_rec, n):
    """Each layer's ``[W_hh, W_ih, b] (U, R + D_in + 1)`` and a buffer for its
    ``[r_prev; x; 1] (R + D_in + 1, n)``, flat, layer after layer (see
    :func:`_stacked_layer`)."""
    n_layers = layout.shape[0] - 1
    w_size = 0
    s_size = 0
    for layer in range(n_layers):
        m = n_rec + layout[layer, 4] + 1
        w_size += n_units * m
        s_size += m * n
    wbuf = np.empty(w_size, dtype=params.dtype)
    sbuf = np.empty(s_size, dtype=params.dtype)
    w_pos = 0
    s_pos = 0
    for layer in range(n_layers):
        m = n_rec + layout[layer, 4] + 1
        for u in range(n_units):
            for col in range(m):
                wbuf[w_pos + u * m + col] = _stacked_weight(params, layout, layer,
                                                            n_rec, u, col)
        for j in range(n):
            sbuf[s_pos + (m - 1) * n + j] = 1.0
        w_pos += n_units * m
        s_pos += m * n
    return wbuf, sbuf


@njit(**_JIT)
def _stacked_layer(wbuf, sbuf, layout, layer, n_units, n_rec, n):
    """Layer ``layer``'s views ``(w_cat, stack)`` of :func:`_stacked_buffers`."""
    w_pos = 0
    s_pos = 0
    for below in range(layer):
        m = n_rec + layout[below, 4] + 1
        w_pos += n_units * m
        s_pos += m * n
    m = n_rec + layout[layer, 4] + 1
    return (wbuf[w_pos:w_pos + n_units * m].reshape((n_units, m)),
            sbuf[s_pos:s_pos + m * n].reshape((m, n)))


@njit(**_JIT)
def _stacked_preact(w_cat, stack, x, r_prev, act):
    """:func:`_layer_preact` as one matrix product, ``act = [W_hh, W_ih, b] @
    [r_prev; x; 1]``: one BLAS call instead of two, a temporary and two passes over
    ``act`` (5% of a medium network's forward step)."""
    n_rec = r_prev.shape[0]
    n = act.shape[1]
    for k in range(n_rec):
        for j in range(n):
            stack[k, j] = r_prev[k, j]
    for d in range(x.shape[0]):
        for j in range(n):
            stack[n_rec + d, j] = x[d, j]
    np.dot(w_cat, stack, act)


@njit(inline="always", **_JIT)
def _squashing(cell):
    """The 1997 cell's squashing functions for a cell code (see _layout):
    ``g(z) = amp_g tanh(z / 2) + off_g`` with ``g' = slope_g (1 - inv_sq_g
    (g - off_g)^2)``, and ``h(s) = amp_h tanh(s / 2)`` with ``h' = slope_h (1 -
    tanh(s / 2)^2)``, or ``h(s) = s`` where ``h_identity``. Returns
    ``(amp_g, off_g, slope_g, inv_sq_g, amp_h, slope_h, h_identity)``; where a
    constant is 1 or 0 it leaves a value bit for bit."""
    if cell == CELL_LSTM1997_TABLE10:    # Table 10: g in [-1, 1], h in [-2, 2]
        return 1.0, 0.0, 0.5, 1.0, 2.0, 1.0, False
    if cell == CELL_LSTM1997_EXP2:       # Exps. 2a/2b: g logistic, h identity
        return 0.5, 0.5, 0.25, 4.0, 1.0, 1.0, True
    if cell == CELL_LSTM1997_EXP2_CENTERED:   # g in [-1, 1], h identity
        return 1.0, 0.0, 0.5, 1.0, 1.0, 1.0, True
    return 2.0, 0.0, 1.0, 0.25, 1.0, 0.5, False   # the Appendix


@njit(**_JIT)
def _layer_gates(cell, hidden_size, block_size, r_prev, c_prev, active, act, c, r):
    """One step of one layer for a chunk of lanes, after :func:`_layer_preact` or
    :func:`_stacked_preact`: the gates (``act (U, n)``, activated in place), cell
    states ``c (H, n)`` and outputs ``r (R, n)`` from ``r_prev (R, n)`` and
    ``c_prev (H, n)``. Lanes with ``active[j] == 0`` (past their sequence's end)
    keep their previous state."""
    n_units = act.shape[0]
    n_rec = r_prev.shape[0]
    n = act.shape[1]
    H = hidden_size
    # Every lane loop below writes at most two rows: with more, LLVM needs too many
    # runtime overlap checks between the rows (their offsets depend on H) and
    # leaves the loop scalar, which made these loops 3-4 times slower.
    # (the gate blocks are contiguous; loops over them count from 0, so Numba's
    # negative-index wraparound, which also stops vectorisation, folds away)
    flat = act.reshape(n_units * n)
    if cell == CELL_LSTM:
        gates_if = flat[:2 * H * n]
        for i in range(gates_if.shape[0]):
            gates_if[i] = sigmoid(gates_if[i])
        gates_g = flat[2 * H * n:3 * H * n]
        for i in range(gates_g.shape[0]):
            gates_g[i] = tanh(gates_g[i])
        gates_o = flat[3 * H * n:]
        for i in range(gates_o.shape[0]):
            gates_o[i] = sigmoid(gates_o[i])
        for k in range(H):
            gi = act[k]
            gf = act[H + k]
            gg = act[2 * H + k]
            go = act[3 * H + k]
            cp = c_prev[k]
            ck_row = c[k]
            r_row = r[k]
            for j in range(n):
                ck = gf[j] * cp[j] + gi[j] * gg[j]
                ck_row[j] = ck
                r_row[j] = go[j] * tanh(ck)
    else:
        n_blocks = H // block_size
        half = like(0.5, act)
        amp_g, off_g, _, _, amp_h, _, h_identity = _squashing(cell)
        amp_g = like(amp_g, act)
        off_g = like(off_g, act)
        amp_h = like(amp_h, act)
        gates = flat[H * n:]
        for i in range(gates.shape[0]):
            gates[i] = sigmoid(gates[i])
        for q in range(H, n_units):
            a_row = act[q]
            r_row = r[q]
            for j in range(n):
                r_row[j] = a_row[j]
        cell_inputs = flat[:H * n]
        for i in range(cell_inputs.shape[0]):
            cell_inputs[i] = amp_g * tanh(half * cell_inputs[i]) + off_g
        for k in range(H):
            blk = k // block_size
            gk = act[k]
            y_in = act[H + blk]
            y_out = act[H + n_blocks + blk]
            cp = c_prev[k]
            ck_row = c[k]
            r_row = r[k]
            if h_identity:
                for j in range(n):
                    ck = cp[j] + y_in[j] * gk[j]
                    ck_row[j] = ck
                    r_row[j] = y_out[j] * ck
            else:
                for j in range(n):
                    ck = cp[j] + y_in[j] * gk[j]
                    ck_row[j] = ck
                    r_row[j] = y_out[j] * (amp_h * tanh(half * ck))
    for j in range(n):
        if active[j] == 0:
            for k in range(H):
                c[k, j] = c_prev[k, j]
            for k in range(n_rec):
                r[k, j] = r_prev[k, j]


@njit(**_JIT)
def _layer_backward(params, layout, layer, cell, hidden_size, block_size, r_prev,
                    c_prev, act, c, active, dr, dc, dz, dx, dr_prev):
    """Backward through one step of one layer for a chunk of lanes.

    On entry ``dr (R, n)`` and ``dc (H, n)`` hold the gradient with respect to this
    step's recurrent output and cell state; on exit ``dc`` holds it with respect to
    ``c_prev``, ``dz (U, n)`` with respect to the units' net inputs (zero on inactive
    lanes), ``dx`` with respect to the layer's input (untouched for layer 0, whose
    input is the data) and ``dr_prev`` with respect to ``r_prev``. The weight
    gradients, ``sum over steps of dz x^T``, are left to
    :func:`_add_weight_grads`, once per chunk.
    """
    n_units = act.shape[0]
    n_rec = r_prev.shape[0]
    n = act.shape[1]
    H = hidden_size
    one = like(1.0, act)
    floor = flush_floor(act)
    # (at most two rows written per lane loop; see _layer_gates)
    if cell == CELL_LSTM:
        for k in range(H):
            gi = act[k]
            gf = act[H + k]
            gg = act[2 * H + k]
            go = act[3 * H + k]
            ck = c[k]
            cp = c_prev[k]
            dh = dr[k]
            dck = dc[k]     # becomes the gradient wrt this cell state, then c_prev
            dz_i = dz[k]
            dz_f = dz[H + k]
            dz_g = dz[2 * H + k]
            dz_o = dz[3 * H + k]
            for j in range(n):
                tc = tanh(ck[j])
                dz_o[j] = flush(dh[j] * tc * go[j] * (one - go[j]), floor)
                dck[j] = dck[j] + dh[j] * go[j] * (one - tc * tc)
            for j in range(n):
                dz_i[j] = flush(dck[j] * gg[j] * gi[j] * (one - gi[j]), floor)
                dz_g[j] = flush(dck[j] * gi[j] * (one - gg[j] * gg[j]), floor)
            for j in range(n):
                dz_f[j] = flush(dck[j] * cp[j] * gf[j] * (one - gf[j]), floor)
                dck[j] = flush(dck[j] * gf[j], floor)
    else:
        n_blocks = H // block_size
        half = like(0.5, act)
        _, off_g, slope_g, inv_sq_g, amp_h, slope_h, h_identity = _squashing(cell)
        off_g = like(off_g, act)
        slope_g = like(slope_g, act)
        inv_sq_g = like(inv_sq_g, act)
        amp_h = like(amp_h, act)
        slope_h = like(slope_h, act)
        for q in range(H, n_units):
            d_row = dz[q]
            dr_row = dr[q]
            for j in range(n):
                d_row[j] = dr_row[j]
        for k in range(H):
            blk = k // block_size
            y_in = act[H + blk]
            y_out = act[H + n_blocks + blk]
            gk = act[k]
            ck = c[k]
            dh = dr[k]
            dsk = dc[k]     # becomes the gradient wrt this cell state (and c_prev)
            dz_k = dz[k]
            dz_in = dz[H + blk]
            dz_out = dz[H + n_blocks + blk]
            if h_identity:
                for j in range(n):
                    dz_out[j] += dh[j] * ck[j]
                    dsk[j] = dsk[j] + dh[j] * y_out[j]
            else:
                for j in range(n):
                    hs = tanh(half * ck[j])
                    dz_out[j] += dh[j] * (amp_h * hs)
                    dsk[j] = dsk[j] + dh[j] * y_out[j] * slope_h * (one - hs * hs)
            for j in range(n):
                dz_in[j] += dsk[j] * gk[j]
                g0 = gk[j] - off_g
                dz_k[j] = flush(dsk[j] * y_in[j] * slope_g
                                * (one - inv_sq_g * g0 * g0), floor)
            for j in range(n):
                dsk[j] = flush(dsk[j], floor)
        for q in range(H, n_units):
            a_row = act[q]
            d_row = dz[q]
            for j in range(n):
                d_row[j] = flush(d_row[j] * a_row[j] * (one - a_row[j]), floor)
    # Lanes past their end: no parameter gradient; state gradients pass through.
    for j in range(n):
        if active[j] == 0:
            for u in range(n_units):
                dz[u, j] = 0.0
    w_ih, w_hh = _weights(params, layout, layer, n_units, n_rec)
    if layer > 0:   # (the network's inputs need no gradient)
        _mm_tn_set(w_ih, dz, dx)
    _mm_tn_set(w_hh, dz, dr_prev)
    for k in range(n_rec):
        for j in range(n):
            dr_prev[k, j] = flush(dr_prev[k, j], floor)
    for j in range(n):
        if active[j] == 0:
            for k in range(n_rec):
                dr_prev[k, j] = dr[k, j]


@njit(**_JIT)
def _store_step(t, dz, x, r_prev, dz_all, inputs_all):
    """Keep step ``t``'s ``dz`` and the layer's inputs ``[x; r_prev]`` for
    :func:`_add_weight_grads` (``dz_all (U, T, n)``, ``inputs_all (>= D_in + R + 1,
    T, n)``)."""
    n = dz.shape[1]
    din = x.shape[0]
    n_rec = r_prev.shape[0]
    for u in range(dz.shape[0]):
        for j in range(n):
            dz_all[u, t, j] = dz[u, j]
    for d in range(din):
        for j in range(n):
            inputs_all[d, t, j] = x[d, j]
    for k in range(n_rec):
        for j in range(n):
            inputs_all[din + k, t, j] = r_prev[k, j]


@njit(**_JIT)
def _add_weight_grads(layout, layer, din, n_rec, dz_all, inputs_all, grad):
    """Add one layer's weight and bias gradients over a whole chunk to ``grad``.

    One matrix product over all steps and lanes, ``dz_all (U, T*n) @ [x; r_prev;
    1] (D_in + R + 1, T*n)^T``, instead of a small product (and a reduction across
    the vector lanes) at every step; the row of ones gives the bias gradient.
    """
    n_units = dz_all.shape[0]
    m = din + n_rec + 1
    inputs_all[m - 1] = 1.0
    K = dz_all.shape[1] * dz_all.shape[2]
    Z = dz_all.reshape((n_units, K))
    A = inputs_all.reshape((inputs_all.shape[0], K))[:m]
    G = np.dot(Z, A.T)
    off_wih = layout[layer, 0]
    off_whh = layout[layer, 1]
    off_bih = layout[layer, 2]
    off_bhh = layout[layer, 3]
    for u in range(n_units):
        for d in range(din):
            grad[off_wih + u * din + d] += G[u, d]
        for k in range(n_rec):
            grad[off_whh + u * n_rec + k] += G[u, din + k]
        grad[off_bih + u] += G[u, m - 1]
        if off_bhh >= 0:
            grad[off_bhh + u] += G[u, m - 1]


@njit(**_JIT)
def _head(params, layout, h, x, logits):
    """``logits (K, n) = head.weight @ h + head.bias``, plus
    ``head.weight_input @ x`` when the head also sees the network's input ``x``
    (``layout[-1, 4] > 0``)."""
    n_layers = layout.shape[0] - 1
    off_w = layout[n_layers, 0]
    off_b = layout[n_layers, 1]
    d_in = layout[n_layers, 4]
    n_out, n = logits.shape
    H = h.shape[0]
    _mm_set(params[off_w:off_w + n_out * H].reshape((n_out, H)), h, logits)
    if d_in > 0:
        off_wx = off_b + n_out
        # (C += W @ x, as _mm_tn's C += A.T @ B with A = W.T)
        _mm_tn(params[off_wx:off_wx + n_out * d_in].reshape((n_out, d_in)).T, x,
               logits)
    for k in range(n_out):
        b = params[off_b + k]
        for j in range(n):
            logits[k, j] += b


@njit(**_JIT)
def _activate(loss_kind, logits):
    """Apply the output activation to ``logits (K, n)`` in place."""
    n_out, n = logits.shape
    if loss_kind == LOSS_SIGMOID_SQUARED or loss_kind == LOSS_LOGISTIC_XENT:
        for k in range(n_out):
            for j in range(n):
                logits[k, j] = sigmoid(logits[k, j])
    elif loss_kind == LOSS_SOFTMAX_XENT:
        for j in range(n):
            zmax = logits[0, j]
            for k in range(1, n_out):
                zmax = max(zmax, logits[k, j])
            total = 0.0
            for k in range(n_out):
                e = np.exp(logits[k, j] - zmax)
                logits[k, j] = e
                total += e
            for k in range(n_out):
                logits[k, j] = logits[k, j] / total


@njit(**_JIT)
def _head_loss_grad(params, layout, loss_kind, h, x, target, weight, logits, grad,
                    dh):
    """Weighted loss of one step for a chunk; head gradients into ``grad``.

    ``h (H, n)`` is the top layer's output and ``x (D, n)`` the network's input at
    the step (used when the head sees it); ``target (K, n)``, ``weight (n,)``;
    ``dh (H, n)`` is overwritten with the gradient with respect to ``h``.
    ``logits (K, n)`` is scratch. Returns the summed weighted loss.
    """
    _head(params, layout, h, x, logits)
    n_out, n = logits.shape
    loss = 0.0
    for j in range(n):
        w = weight[j]
        if w == 0.0:
            for k in range(n_out):
                logits[k, j] = 0.0
            continue
        if loss_kind == LOSS_SQUARED:
            for k in range(n_out):
                diff = logits[k, j] - target[k, j]
                loss += w * 0.5 * diff * diff
                logits[k, j] = w * diff
        elif loss_kind == LOSS_SIGMOID_SQUARED:
            for k in range(n_out):
                y = sigmoid(logits[k, j])
                diff = y - target[k, j]
                loss += w * 0.5 * diff * diff
                logits[k, j] = w * diff * y * (1.0 - y)
        elif loss_kind == LOSS_SOFTMAX_XENT:
            zmax = logits[0, j]
            for k in range(1, n_out):
                zmax = max(zmax, logits[k, j])
            total = 0.0
            t_sum = 0.0
            for k in range(n_out):
                total += np.exp(logits[k, j] - zmax)
                t_sum += target[k, j]
            log_norm = zmax + np.log(total)
            for k in range(n_out):
                z = logits[k, j]
                loss -= w * target[k, j] * (z - log_norm)
                logits[k, j] = w * (np.exp(z - log_norm) * t_sum - target[k, j])
        else:
            for k in range(n_out):
                z = logits[k, j]
                t = target[k, j]
                # log(1 + exp(-|z|)) + max(z, 0) - t z, stable for any z
                loss += w * (np.log1p(np.exp(-abs(z))) + max(z, 0.0) - t * z)
                logits[k, j] = w * (sigmoid(z) - t)
    n_layers = layout.shape[0] - 1
    off_w = layout[n_layers, 0]
    off_b = layout[n_layers, 1]
    H = h.shape[0]
    for k in range(n_out):
        s = 0.0
        for j in range(n):
            s += logits[k, j]
        grad[off_b + k] += s
    _mm_nt(logits, h, grad[off_w:off_w + n_out * H].reshape((n_out, H)))
    d_in = layout[n_layers, 4]
    if d_in > 0:
        off_wx = off_b + n_out
        _mm_nt(logits, x, grad[off_wx:off_wx + n_out * d_in].reshape((n_out, d_in)))
    dh[:, :] = 0.0
    _mm_tn(params[off_w:off_w + n_out * H].reshape((n_out, H)), logits, dh)
    return loss


@njit(**_JIT)
def _chunk_size(n_seq):
    """Lanes per chunk: about ``n_seq / _PARALLEL_CHUNKS``, or, above
    ``_MAX_LANES``, a multiple of ``_PARALLEL_CHUNKS`` chunks of at most that many
    (so the chunks still share out evenly over the cores)."""
    rounds = -(-n_seq // (_PARALLEL_CHUNKS * _MAX_LANES))
    return max(_LANES, -(-n_seq // (_PARALLEL_CHUNKS * max(rounds, 1))))


@njit(**_JIT)
def _n_chunks(n_seq):
    return max(1, -(-n_seq // _chunk_size(n_seq)))


@njit(**_JIT)
def _chunk_bounds(n_items, n_chunks, chunk):
    size = _chunk_size(n_items)
    return chunk * size, min(n_items, (chunk + 1) * size)


@njit(**_JIT)
def _load_chunk(X, lengths, state0, rows, n_layers, n_rec, H, xs, active, rs, cs):
    """Gather a chunk: inputs ``xs (T, D, n)``, activity ``active (T, n)`` and the
    initial states into ``rs[0]``, ``cs[0]``."""
    n = rows.shape[0]
    t_max = xs.shape[0]
    D = xs.shape[1]
    for j in range(n):
        b = rows[j]
        length = lengths[b]
        for t in range(t_max):
            on = t < length
            active[t, j] = 1 if on else 0
            for d in range(D):
                xs[t, d, j] = X[b, t, d] if on else 0.0
    has_state0 = state0.shape[0] > 0
    for layer in range(n_layers):
        for j in range(n):
            b = rows[j]
            for k in range(n_rec):
                rs[0, layer, k, j] = state0[b, layer, k] if has_state0 else 0.0
            for k in range(H):
                cs[0, layer, k, j] = state0[b, layer, n_rec + k] if has_state0 else 0.0


@njit(**_JIT)
def _carve(work, pos, shape):
    """The next ``shape`` of the 1-D ``work`` from ``pos`` (a C-contiguous view),
    and the position after it."""
    size = 1
    for extent in shape:
        size *= extent
    return work[pos:pos + size].reshape(shape), pos + size


@njit(**_JIT)
def _chunk_arrays(work, t_max, n, D, H, n_layers, n_units, n_rec):
    """A chunk's step arrays ``(xs, acts, cs, rs, dz_all, inputs_all)`` for ``n``
    lanes and ``t_max`` steps, carved from the 1-D ``work`` (see
    :func:`_chunk_work_size`)."""
    pos = 0
    xs, pos = _carve(work, pos, (t_max, D, n))
    acts, pos = _carve(work, pos, (t_max, n_layers, n_units, n))
    cs, pos = _carve(work, pos, (t_max + 1, n_layers, H, n))
    rs, pos = _carve(work, pos, (t_max + 1, n_layers, n_rec, n))
    dz_all, pos = _carve(work, pos, (n_layers, n_units, t_max, n))
    inputs_all, pos = _carve(work, pos, (n_layers, max(D, H) + n_rec + 1, t_max, n))
    return xs, acts, cs, rs, dz_all, inputs_all


@njit(**_JIT)
def _loss_grad_chunk(chunk, n_chunks, params, layout, X, lengths, Y, mask, state0,
                     seq_index, cell, hidden_size, block_size, loss_kind, grads,
                     losses, work):
    """Forward and BPTT of one chunk into ``grads[chunk]`` and ``losses[chunk]``,
    with the step arrays in ``work`` (1-D, at least :func:`_chunk_work_size`)."""
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    H = hidden_size
    n_out = Y.shape[2]
    D = X.shape[2]
    start, stop = _chunk_bounds(seq_index.shape[0], n_chunks, chunk)
    rows = seq_index[start:stop]
    n = rows.shape[0]
    t_max = 0
    for j in range(n):
        t_max = max(t_max, lengths[rows[j]])
    dt = params.dtype
    # The step arrays are carved from the caller's workspace: reused from batch to
    # batch, their pages stay mapped (fresh megabytes from malloc are new pages from
    # the kernel, and the page faults cost a quarter of a small network's step).
    xs, acts, cs, rs, dz_all, inputs_all = _chunk_arrays(work, t_max, n, D, H,
                                                         n_layers, n_units, n_rec)
    active = np.empty((t_max, n), dtype=np.int8)
    _load_chunk(X, lengths, state0, rows, n_layers, n_rec, H, xs, active, rs, cs)
    if _stacked(n_units, n_rec, n):
        wbuf, sbuf = _stacked_buffers(params, layout, n_units, n_rec, n)
    else:
        wbuf = sbuf = np.empty(0, dtype=dt)
    _bptt_forward(params, layout, cell, H, block_size, xs, active, acts, cs, rs, wbuf,
                  sbuf)
    losses[chunk] = _bptt_backward(
        params, layout, Y, mask, rows, cell, H, block_size, loss_kind, xs, active,
        acts, cs, rs, np.empty((n_out, n), dtype=dt), np.empty(n, dtype=dt),
        np.empty((n_out, n), dtype=dt), np.empty((H, n), dtype=dt),
        np.zeros((n_layers, n_rec, n), dtype=dt), np.zeros((n_layers, H, n), dtype=dt),
        np.empty((n_units, n), dtype=dt), np.empty((max(D, H), n), dtype=dt),
        np.empty((n_rec, n), dtype=dt), dz_all, inputs_all, grads[chunk])
    for layer in range(n_layers):
        _add_weight_grads(layout, layer, D if layer == 0 else H, n_rec,
                          dz_all[layer], inputs_all[layer], grads[chunk])


@njit(**_JIT)
def _bptt_forward(params, layout, cell, H, block_size, xs, active, acts, cs, rs, wbuf,
                  sbuf):
    """Forward through a chunk's steps, keeping every step's ``acts``, ``cs`` and
    ``rs`` for :func:`_bptt_backward` (stacked products when ``wbuf`` is not empty,
    see :func:`_stacked_buffers`)."""
    # (views of borrowed arguments carry no reference count; see _views)
    params = borrowed(params)
    xs = borrowed(xs)
    active = borrowed(active)
    acts = borrowed(acts)
    cs = borrowed(cs)
    rs = borrowed(rs)
    wbuf = borrowed(wbuf)
    sbuf = borrowed(sbuf)
    n_layers = acts.shape[1]
    n_units = acts.shape[2]
    n_rec = rs.shape[2]
    n = xs.shape[2]
    for t in range(xs.shape[0]):
        for layer in range(n_layers):
            x = xs[t] if layer == 0 else rs[t + 1, layer - 1, :H]
            if wbuf.shape[0] > 0:
                w_cat, stack = _stacked_layer(wbuf, sbuf, layout, layer, n_units,
                                              n_rec, n)
                _stacked_preact(w_cat, stack, x, rs[t, layer], acts[t, layer])
            else:
                _layer_preact(params, layout, layer, x, rs[t, layer], acts[t, layer])
            _layer_gates(cell, H, block_size, rs[t, layer], cs[t, layer], active[t],
                         acts[t, layer], cs[t + 1, layer], rs[t + 1, layer])


@njit(**_JIT)
def _bptt_backward(params, layout, Y, mask, rows, cell, H, block_size, loss_kind, xs,
                   active, acts, cs, rs, target, weight, logits, dh, dr, dc, dz, dx,
                   dr_prev, dz_all, inputs_all, grad):
    """Backward through a chunk's steps: head gradients into ``grad``, every step's
    ``dz`` and layer inputs into ``dz_all``, ``inputs_all`` (for
    :func:`_add_weight_grads`). Returns the chunk's summed weighted loss."""
    # (views of borrowed arguments carry no reference count; see _views)
    params = borrowed(params)
    xs = borrowed(xs)
    active = borrowed(active)
    acts = borrowed(acts)
    cs = borrowed(cs)
    rs = borrowed(rs)
    target = borrowed(target)
    weight = borrowed(weight)
    logits = borrowed(logits)
    dh = borrowed(dh)
    dr = borrowed(dr)
    dc = borrowed(dc)
    dz = borrowed(dz)
    dx = borrowed(dx)
    dr_prev = borrowed(dr_prev)
    dz_all = borrowed(dz_all)
    inputs_all = borrowed(inputs_all)
    grad = borrowed(grad)
    n_layers = acts.shape[1]
    n = xs.shape[2]
    n_out = Y.shape[2]
    loss = 0.0
    top = n_layers - 1
    for t in range(xs.shape[0] - 1, -1, -1):
        any_target = False
        for j in range(n):
            b = rows[j]
            w = mask[b, t] if active[t, j] else 0.0
            weight[j] = w
            if w != 0.0:
                any_target = True
            for k in range(n_out):
                target[k, j] = Y[b, t, k]
        if any_target:
            loss += _head_loss_grad(params, layout, loss_kind, rs[t + 1, top, :H],
                                    xs[t], target, weight, logits, grad, dh)
            # (element loops, not slice arithmetic: `a[:H] += b` compiles Numba's
            # shape-mismatch error path, seconds of the cold compile)
            for k in range(H):
                for j in range(n):
                    dr[top, k, j] += dh[k, j]
        for layer in range(top, -1, -1):
            x = xs[t] if layer == 0 else rs[t + 1, layer - 1, :H]
            din = x.shape[0]
            _layer_backward(params, layout, layer, cell, H, block_size,
                            rs[t, layer], cs[t, layer], acts[t, layer],
                            cs[t + 1, layer], active[t], dr[layer], dc[layer],
                            dz, dx[:din], dr_prev)
            _store_step(t, dz, x, rs[t, layer], dz_all[layer], inputs_all[layer])
            dr_layer = dr[layer]
            for k in range(dr_prev.shape[0]):
                for j in range(n):
                    dr_layer[k, j] = dr_prev[k, j]
            if layer > 0:
                for k in range(H):
                    for j in range(n):
                        dr[layer - 1, k, j] += dx[k, j]
    return loss


@njit(**_JIT)
def _zeros(n_rows, n_cols, like_array):
    """``np.zeros((n_rows, n_cols))`` in ``like_array``'s dtype, for the parallel
    functions (where Numba would turn ``np.zeros`` into a parallel loop)."""
    return np.zeros((n_rows, n_cols), dtype=like_array.dtype)


@njit(**_JIT)
def _chunk_work_size(t_max, n, D, H, n_layers, n_units, n_rec):
    """Workspace (elements) of one chunk of ``n`` lanes and ``t_max`` steps: the
    arrays that :func:`_loss_grad_chunk` carves from it."""
    m = max(D, H) + n_rec + 1
    return n * (t_max * D + 2 * t_max * n_layers * n_units
                + (t_max + 1) * n_layers * (H + n_rec) + t_max * n_layers * m)


@njit(**_JIT)
def loss_grad_workspace(params, layout, X, batch_size, cell, hidden_size, block_size):
    """A workspace for :func:`loss_grad_into` that fits every batch of up to
    ``batch_size`` sequences of ``X``."""
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    n_lanes = min(batch_size, _chunk_size(batch_size))
    size = _chunk_work_size(X.shape[1], n_lanes, X.shape[2], hidden_size, n_layers,
                            n_units, n_rec)
    return np.empty((_n_chunks(batch_size), size), dtype=params.dtype)


@njit(**_JIT)
def loss_grad(params, layout, X, lengths, Y, mask, state0, seq_index, cell,
              hidden_size, block_size, loss_kind, parallel):
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
    parallel : bool
        Whether the chunks may run in parallel (when the work is large enough).
        False runs the same chunks in the same order on the calling thread, with
        bitwise equal results (see :mod:`lstmforecast._threads`).

    Returns
    -------
    loss : float
        ``sum(mask * per-step loss) / sum(mask)`` over the selected sequences
        (0 when the mask is empty).
    grad : ndarray (P,)
        Gradient of ``loss`` with respect to ``params``, in ``params.dtype``.
    """
    return loss_grad_into(params, layout, X, lengths, Y, mask, state0, seq_index, cell,
                          hidden_size, block_size, loss_kind, parallel,
                          np.empty((0, 0), dtype=params.dtype))


@njit(parallel=_PRANGE_ONLY, **_JIT)
def loss_grad_into(params, layout, X, lengths, Y, mask, state0, seq_index, cell,
                   hidden_size, block_size, loss_kind, parallel, work):
    """:func:`loss_grad` with the step arrays in ``work`` (from
    :func:`loss_grad_workspace`; one too small is replaced by a fresh one)."""
    n_seq = seq_index.shape[0]
    n_params = params.shape[0]
    n_steps = 0
    weight_total = 0.0
    for i in range(n_seq):
        b = seq_index[i]
        n_steps += lengths[b]
        for t in range(lengths[b]):
            weight_total += mask[b, t]
    n_chunks = _n_chunks(n_seq)
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    size = 0
    for chunk in range(n_chunks):
        start, stop = _chunk_bounds(n_seq, n_chunks, chunk)
        t_max = 0
        for i in range(start, stop):
            t_max = max(t_max, lengths[seq_index[i]])
        size = max(size, _chunk_work_size(t_max, stop - start, X.shape[2],
                                          hidden_size, n_layers, n_units, n_rec))
    if work.shape[0] < n_chunks or work.shape[1] < size:
        work = np.empty((n_chunks, size), dtype=params.dtype)
    # (np.zeros and whole-array arithmetic would become parallel loops of their own
    # in this parallel function, run on every call: a forked child would abort)
    grads = _zeros(n_chunks, n_params, params)
    losses = np.empty(n_chunks)
    for chunk in range(n_chunks):
        losses[chunk] = 0.0
    if parallel and n_chunks > 1 and n_steps * n_params >= _PARALLEL_MIN_WORK:
        # (the parallel loop in this function rather than a callee of its own:
        # each level of the call tree compiles all the code below it again)
        for chunk in prange(n_chunks):
            # (prange's index is unsigned: as int64, the serial path's signature
            # serves)
            _loss_grad_chunk(np.int64(chunk), n_chunks, params, layout, X, lengths,
                             Y, mask, state0, seq_index, cell, hidden_size,
                             block_size, loss_kind, grads, losses, work[chunk])
    else:
        for chunk in range(n_chunks):
            _loss_grad_chunk(chunk, n_chunks, params, layout, X, lengths, Y, mask,
                             state0, seq_index, cell, hidden_size, block_size,
                             loss_kind, grads, losses, work[chunk])
    grad = _zeros(1, n_params, params)[0]
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


# ----------------------------------------------------------------------------------
# One sequence at a time (batch_size=1: online training)
#
# With one lane, every lane loop of the chunk kernels above runs once, and their
# loop set-up (vector preambles, overlap checks) was most of a small network's step.
# These kernels do the same arithmetic in the same order (bitwise equal results,
# tested) on 1-D step vectors, with the loops across units. The truncated rule
# (_truncated.py) steps its single sequence with _layer_forward_one too.
# ----------------------------------------------------------------------------------


@njit(**_JIT)
def _transposed_weights(params, layout, n_units, n_rec, weights_t, bias):
    """Each layer's ``[W_hh, W_ih]`` transposed into ``weights_t (L, R + D_in, U)``
    and its summed biases into ``bias (L, U)`` (see :func:`_stacked_weight`), for
    :func:`_layer_forward_one`."""
    # (the weights by direct loops, not an entry call each: this runs once per
    # sequence, per update in the truncated rule, and the calls cost 2 us of an
    # online sequence's 19)
    for layer in range(bias.shape[0]):
        off_wih = layout[layer, 0]
        off_whh = layout[layer, 1]
        din = layout[layer, 4]
        for u in range(n_units):
            for k in range(n_rec):
                weights_t[layer, k, u] = params[off_whh + u * n_rec + k]
            for d in range(din):
                weights_t[layer, n_rec + d, u] = params[off_wih + u * din + d]
            bias[layer, u] = _stacked_weight(params, layout, layer, n_rec, u,
                                             n_rec + din)


# (Inlined into the callers' time loops, as _layer_backward_one: once the squashing
# readings made them longer, LLVM stopped inlining them, and a step of the truncated
# rule on Exp. 4's network took 0.17 us instead of 0.12; benchmarks/memory.py.)
@njit(inline="always", **_JIT)
def _layer_forward_one(weights_t, bias, cell, hidden_size, block_size, x, r_prev,
                       c_prev, act, c, r):
    """:func:`_layer_preact` and :func:`_layer_gates` for one sequence: ``x (D_in,)``,
    ``r_prev (R,)``, ``c_prev (H,)`` in; ``act (U,)``, ``c (H,)``, ``r (R,)`` out.
    The layer's weights come transposed (``weights_t (R + D_in, U)``, ``bias (U,)``;
    see :func:`_transposed_weights`) so that the products vectorise across units."""
    n_units = act.shape[0]
    n_rec = r_prev.shape[0]
    din = x.shape[0]
    for u in range(n_units):
        act[u] = 0.0
    for k in range(n_rec):
        w = weights_t[k]
        v = r_prev[k]
        for u in range(n_units):
            act[u] = muladd(w[u], v, act[u])
    for d in range(din):
        w = weights_t[n_rec + d]
        v = x[d]
        for u in range(n_units):
            act[u] = muladd(w[u], v, act[u])
    for u in range(n_units):
        act[u] += bias[u]
    H = hidden_size
    if cell == CELL_LSTM:
        for u in range(2 * H):
            act[u] = sigmoid(act[u])
        for u in range(2 * H, 3 * H):
            act[u] = tanh(act[u])
        for u in range(3 * H, 4 * H):
            act[u] = sigmoid(act[u])
        for k in range(H):
            ck = act[H + k] * c_prev[k] + act[k] * act[2 * H + k]
            c[k] = ck
            r[k] = act[3 * H + k] * tanh(ck)
    else:
        n_blocks = H // block_size
        half = like(0.5, act)
        amp_g, off_g, _, _, amp_h, _, h_identity = _squashing(cell)
        amp_g = like(amp_g, act)
        off_g = like(off_g, act)
        amp_h = like(amp_h, act)
        for q in range(H, n_units):
            act[q] = sigmoid(act[q])
            r[q] = act[q]
        for k in range(H):
            act[k] = amp_g * tanh(half * act[k]) + off_g
        for k in range(H):
            blk = k // block_size
            ck = c_prev[k] + act[H + blk] * act[k]
            c[k] = ck
            if h_identity:
                r[k] = act[H + n_blocks + blk] * ck
            else:
                r[k] = act[H + n_blocks + blk] * (amp_h * tanh(half * ck))


@njit(inline="always", **_JIT)
def _layer_backward_one(weights_t, layer, cell, hidden_size, block_size, c_prev, act,
                        c, dr, dc, dz, dx, dr_prev):
    """:func:`_layer_backward` for one sequence, on 1-D vectors, with the layer's
    weights transposed as for :func:`_layer_forward_one` (``dx`` is untouched for
    layer 0)."""
    n_units = act.shape[0]
    n_rec = dr_prev.shape[0]
    H = hidden_size
    one = like(1.0, act)
    floor = flush_floor(act)
    if cell == CELL_LSTM:
        for k in range(H):
            gi = act[k]
            gf = act[H + k]
            gg = act[2 * H + k]
            go = act[3 * H + k]
            dh = dr[k]
            tc = tanh(c[k])
            dz[3 * H + k] = flush(dh * tc * go * (one - go), floor)
            dck = dc[k] + dh * go * (one - tc * tc)
            dz[k] = flush(dck * gg * gi * (one - gi), floor)
            dz[2 * H + k] = flush(dck * gi * (one - gg * gg), floor)
            dz[H + k] = flush(dck * c_prev[k] * gf * (one - gf), floor)
            dc[k] = flush(dck * gf, floor)
    else:
        n_blocks = H // block_size
        half = like(0.5, act)
        _, off_g, slope_g, inv_sq_g, amp_h, slope_h, h_identity = _squashing(cell)
        off_g = like(off_g, act)
        slope_g = like(slope_g, act)
        inv_sq_g = like(inv_sq_g, act)
        amp_h = like(amp_h, act)
        slope_h = like(slope_h, act)
        for q in range(H, n_units):
            dz[q] = dr[q]
        for k in range(H):
            blk = k // block_size
            gk = act[k]
            dh = dr[k]
            if h_identity:
                dz[H + n_blocks + blk] += dh * c[k]
                dsk = dc[k] + dh * act[H + n_blocks + blk]
            else:
                hs = tanh(half * c[k])
                dz[H + n_blocks + blk] += dh * (amp_h * hs)
                dsk = (dc[k]
                       + dh * act[H + n_blocks + blk] * slope_h * (one - hs * hs))
            dz[H + blk] += dsk * gk
            g0 = gk - off_g
            dz[k] = flush(dsk * act[H + blk] * slope_g * (one - inv_sq_g * g0 * g0),
                          floor)
            dc[k] = flush(dsk, floor)
        for q in range(H, n_units):
            a = act[q]
            dz[q] = flush(dz[q] * a * (one - a), floor)
    # dot products over units along the rows of the transposed weights, summed in
    # registers in the order of the chunk kernels' products
    zero = like(0.0, act)
    if layer > 0:
        for d in range(dx.shape[0]):
            w = weights_t[n_rec + d]
            acc = zero
            for u in range(n_units):
                acc += w[u] * dz[u]
            dx[d] = acc
    for k in range(n_rec):
        w = weights_t[k]
        acc = zero
        for u in range(n_units):
            acc += w[u] * dz[u]
        dr_prev[k] = flush(acc, floor)


@njit(**_JIT)
def _bptt_forward_one(cell, H, block_size, weights_t, bias, xs, acts, cs, rs):
    """:func:`_bptt_forward` for one sequence: ``xs (T, D)``, ``acts (T, L, U)``,
    ``cs (T + 1, L, H)``, ``rs (T + 1, L, R)``; the weights as
    :func:`_transposed_weights` gives them."""
    weights_t = borrowed(weights_t)
    bias = borrowed(bias)
    xs = borrowed(xs)
    acts = borrowed(acts)
    cs = borrowed(cs)
    rs = borrowed(rs)
    n_layers = acts.shape[1]
    n_rec = rs.shape[2]
    for t in range(xs.shape[0]):
        for layer in range(n_layers):
            x = xs[t] if layer == 0 else rs[t + 1, layer - 1, :H]
            _layer_forward_one(weights_t[layer, :n_rec + x.shape[0]], bias[layer],
                               cell, H, block_size, x, rs[t, layer], cs[t, layer],
                               acts[t, layer], cs[t + 1, layer], rs[t + 1, layer])


@njit(**_JIT)
def _bptt_backward_one(params, layout, weights_t, Y, mask, row, cell, H, block_size,
                       loss_kind, xs, acts, cs, rs, target, weight, logits, dh, dr, dc,
                       dz, dx, dr_prev, dz_all, inputs_all, grad):
    """:func:`_bptt_backward` for one sequence (row ``row`` of ``Y`` and ``mask``):
    step arrays as in :func:`_bptt_forward_one`, ``dr (L, R)``, ``dc (L, H)``,
    ``dz (U,)``, ``dx (max(D, H),)``, ``dr_prev (R,)``, ``dz_all (L, U, T)``,
    ``inputs_all (L, >= D_in + R + 1, T)``; ``target``, ``weight``, ``logits`` and
    ``dh`` are the one-lane buffers of :func:`_head_loss_grad`."""
    params = borrowed(params)
    weights_t = borrowed(weights_t)
    xs = borrowed(xs)
    acts = borrowed(acts)
    cs = borrowed(cs)
    rs = borrowed(rs)
    dr = borrowed(dr)
    dc = borrowed(dc)
    dz = borrowed(dz)
    dx = borrowed(dx)
    dr_prev = borrowed(dr_prev)
    dz_all = borrowed(dz_all)
    inputs_all = borrowed(inputs_all)
    n_layers = acts.shape[1]
    n_units = acts.shape[2]
    n_rec = rs.shape[2]
    n_out = Y.shape[2]
    loss = 0.0
    top = n_layers - 1
    for t in range(xs.shape[0] - 1, -1, -1):
        w = mask[row, t]
        if w != 0.0:
            weight[0] = w
            for k in range(n_out):
                target[k, 0] = Y[row, t, k]
            loss += _head_loss_grad(params, layout, loss_kind,
                                    rs[t + 1, top, :H].reshape((H, 1)),
                                    xs[t].reshape((xs.shape[1], 1)), target, weight,
                                    logits, grad, dh)
            for k in range(H):
                dr[top, k] += dh[k, 0]
        for layer in range(top, -1, -1):
            x = xs[t] if layer == 0 else rs[t + 1, layer - 1, :H]
            din = x.shape[0]
            _layer_backward_one(weights_t[layer, :n_rec + din], layer, cell, H,
                                block_size, cs[t, layer], acts[t, layer],
                                cs[t + 1, layer], dr[layer], dc[layer], dz, dx[:din],
                                dr_prev)
            dz_layer = dz_all[layer]
            inputs = inputs_all[layer]
            r_prev = rs[t, layer]
            for u in range(n_units):
                dz_layer[u, t] = dz[u]
            for d in range(din):
                inputs[d, t] = x[d]
            for k in range(n_rec):
                inputs[din + k, t] = r_prev[k]
                dr[layer, k] = dr_prev[k]
            if layer > 0:
                for k in range(H):
                    dr[layer - 1, k] += dx[k]
    return loss


@njit(**_JIT)
def loss_grad_one(params, layout, X, lengths, Y, mask, state0, row, cell, hidden_size,
                  block_size, loss_kind, work, grad):
    """:func:`loss_grad` of the single sequence ``row``, on the one-sequence kernels.

    ``work`` is a 1-D workspace (from :func:`loss_grad_workspace` with
    ``batch_size=1``, flattened; one too small is replaced) and ``grad (P,)`` is
    overwritten with the gradient. Returns the loss. Results are bitwise equal to
    ``loss_grad`` with ``seq_index=[row]``.
    """
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    H = hidden_size
    D = X.shape[2]
    n_out = Y.shape[2]
    t_max = lengths[row]
    dt = params.dtype
    size = _chunk_work_size(t_max, 1, D, H, n_layers, n_units, n_rec)
    if work.shape[0] < size:
        work = np.empty(size, dtype=dt)
    # the chunk kernels' arrays with one lane; the one-sequence kernels see them
    # as 1-D step vectors (same memory)
    xs4, acts4, cs4, rs4, dz_all4, inputs_all4 = _chunk_arrays(
        work, t_max, 1, D, H, n_layers, n_units, n_rec)
    _load_chunk(X, lengths, state0, np.full(1, row), n_layers, n_rec, H, xs4,
                np.empty((t_max, 1), dtype=np.int8), rs4, cs4)
    m = inputs_all4.shape[1]
    xs = xs4.reshape((t_max, D))
    acts = acts4.reshape((t_max, n_layers, n_units))
    cs = cs4.reshape((t_max + 1, n_layers, H))
    rs = rs4.reshape((t_max + 1, n_layers, n_rec))
    dz_all = dz_all4.reshape((n_layers, n_units, t_max))
    inputs_all = inputs_all4.reshape((n_layers, m, t_max))
    for p in range(grad.shape[0]):
        grad[p] = 0.0
    weights_t = np.empty((n_layers, n_rec + max(D, H), n_units), dtype=dt)
    bias = np.empty((n_layers, n_units), dtype=dt)
    _transposed_weights(params, layout, n_units, n_rec, weights_t, bias)
    _bptt_forward_one(cell, H, block_size, weights_t, bias, xs, acts, cs, rs)
    loss = _bptt_backward_one(
        params, layout, weights_t, Y, mask, row, cell, H, block_size, loss_kind, xs,
        acts, cs, rs,
        np.empty((n_out, 1), dtype=dt), np.empty(1, dtype=dt),
        np.empty((n_out, 1), dtype=dt), np.empty((H, 1), dtype=dt),
        np.zeros((n_layers, n_rec), dtype=dt), np.zeros((n_layers, H), dtype=dt),
        np.empty(n_units, dtype=dt), np.empty(max(D, H), dtype=dt),
        np.empty(n_rec, dtype=dt), dz_all, inputs_all, grad)
    for layer in range(n_layers):
        _add_weight_grads(layout, layer, D if layer == 0 else H, n_rec,
                          dz_all4[layer], inputs_all4[layer], grad)
    weight_total = 0.0
    for t in range(t_max):
        weight_total += mask[row, t]
    if weight_total > 0.0:
        scale = 1.0 / weight_total
        loss *= scale
        for p in range(grad.shape[0]):
            grad[p] *= scale
    return loss


@njit(**_JIT)
def _forward_chunk(chunk, n_chunks, params, layout, X, lengths, state0, order, cell,
                   hidden_size, block_size, loss_kind, last_only, out, state):
    """Forward one chunk of ``order`` keeping two time slices only: O(weights)
    memory in T."""
    n_layers, n_units, n_rec = _network_sizes(layout, cell, hidden_size, block_size)
    H = hidden_size
    n_out = out.shape[2]
    start, stop = _chunk_bounds(order.shape[0], n_chunks, chunk)
    rows = order[start:stop]
    n = rows.shape[0]
    dt = params.dtype
    D = X.shape[2]
    # one time step of inputs at a time: memory independent of the length
    xs = np.empty((1, D, n), dtype=dt)
    active = np.empty((1, n), dtype=np.int8)
    rs = np.empty((2, n_layers, n_rec, n), dtype=dt)
    cs = np.empty((2, n_layers, H, n), dtype=dt)
    _load_chunk(X, lengths, state0, rows, n_layers, n_rec, H, xs[:0], active[:0], rs,
                cs)
    if _stacked(n_units, n_rec, n):
        wbuf, sbuf = _stacked_buffers(params, layout, n_units, n_rec, n)
    else:
        wbuf = sbuf = np.empty(0, dtype=dt)
    _forward_steps(params, layout, X, lengths, rows, cell, H, block_size, loss_kind,
                   last_only, out, state, xs, active, np.empty((n_units, n), dtype=dt),
                   rs, cs, np.empty((n_out, n), dtype=dt),
                   np.zeros((layout[n_layers, 4], n), dtype=dt), wbuf, sbuf)


@njit(**_JIT)
def _forward_steps(params, layout, X, lengths, rows, cell, H, block_size, loss_kind,
                   last_only, out, state, xs, active, act, rs, cs, logits, x_last, wbuf,
                   sbuf):
    """The time loop of :func:`_forward_chunk` (buffers allocated there; stacked
    products when ``wbuf`` is not empty; ``x_last (D, n)`` keeps each lane's input
    at its last step for a head that sees the input, ``(0, n)`` otherwise)."""
    # (views of borrowed arguments carry no reference count; see _views)
    params = borrowed(params)
    xs = borrowed(xs)
    active = borrowed(active)
    act = borrowed(act)
    rs = borrowed(rs)
    cs = borrowed(cs)
    logits = borrowed(logits)
    x_last = borrowed(x_last)
    wbuf = borrowed(wbuf)
    sbuf = borrowed(sbuf)
    n_layers = rs.shape[1]
    keep_last_input = last_only and x_last.shape[0] > 0
    n_units = act.shape[0]
    n_rec = rs.shape[2]
    n = rows.shape[0]
    n_out = out.shape[2]
    D = X.shape[2]
    t_max = 0
    for j in range(n):
        t_max = max(t_max, lengths[rows[j]])
    cur = 0
    for t in range(t_max):
        nxt = 1 - cur
        for j in range(n):
            on = t < lengths[rows[j]]
            active[0, j] = 1 if on else 0
            for d in range(D):
                xs[0, d, j] = X[rows[j], t, d] if on else 0.0
            if keep_last_input and on:
                for d in range(D):
                    x_last[d, j] = xs[0, d, j]
        for layer in range(n_layers):
            x = xs[0] if layer == 0 else rs[nxt, layer - 1, :H]
            if wbuf.shape[0] > 0:
                w_cat, stack = _stacked_layer(wbuf, sbuf, layout, layer, n_units,
                                              n_rec, n)
                _stacked_preact(w_cat, stack, x, rs[cur, layer], act)
            else:
                _layer_preact(params, layout, layer, x, rs[cur, layer], act)
            _layer_gates(cell, H, block_size, rs[cur, layer], cs[cur, layer],
                         active[0], act, cs[nxt, layer], rs[nxt, layer])
        if not last_only:
            _head(params, layout, rs[nxt, n_layers - 1, :H], xs[0], logits)
            _activate(loss_kind, logits)
            for j in range(n):
                if active[0, j]:
                    for k in range(n_out):
                        out[rows[j], t, k] = logits[k, j]
        cur = nxt
    if last_only:
        _head(params, layout, rs[cur, n_layers - 1, :H], x_last, logits)
        _activate(loss_kind, logits)
        for j in range(n):
            for k in range(n_out):
                out[rows[j], 0, k] = logits[k, j]
    for j in range(n):
        for layer in range(n_layers):
            for k in range(n_rec):
                state[rows[j], layer, k] = rs[cur, layer, k, j]
            for k in range(H):
                state[rows[j], layer, n_rec + k] = cs[cur, layer, k, j]


@njit(parallel=_PRANGE_ONLY, **_JIT)
def forward(params, layout, X, lengths, state0, order, cell, hidden_size, block_size,
            loss_kind, last_only, parallel):
    """Network outputs (after the head activation) and final states.

    Memory is O(weights) per sequence besides the inputs and the returned arrays,
    whatever the sequence length. ``parallel`` as in :func:`loss_grad`.

    ``order`` (int64, a permutation of the ``N`` rows of ``X``) is the order in
    which the sequences are run, in chunks of consecutive entries; each result is
    written at its sequence's own row, so a caller that wants results independent
    of the row order passes a canonical one instead of reordering ``X`` (a copy of
    the inputs).

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
    # (no np.zeros here: see loss_grad_into)
    out = _zeros(n_seq, t_out * n_out, params).reshape((n_seq, t_out, n_out))
    state = np.empty((n_seq, n_layers, n_rec + hidden_size), dtype=params.dtype)
    n_chunks = _n_chunks(n_seq)
    n_steps = 0
    for b in range(n_seq):
        n_steps += lengths[b]
    if (parallel and n_chunks > 1
            and n_steps * params.shape[0] >= _PARALLEL_MIN_WORK // 3):
        for chunk in prange(n_chunks):
            _forward_chunk(np.int64(chunk), n_chunks, params, layout, X, lengths,
                           state0, order, cell, hidden_size, block_size, loss_kind,
                           last_only, out, state)
    else:
        for chunk in range(n_chunks):
            _forward_chunk(chunk, n_chunks, params, layout, X, lengths, state0, order,
                           cell, hidden_size, block_size, loss_kind, last_only, out,
                           state)
    return out, state


# Corrupt or unwritable cache files recompile instead of failing.
config.harden_caches(globals())
