"""GPU sibling of :mod:`lstmforecast._kernels` and :mod:`lstmforecast._training`.

numba.cuda kernels for the forward pass, full-gradient BPTT and the optimizer update,
with host drivers that take and return the same arrays as the CPU ones:

* :func:`gpu_forward` is :func:`lstmforecast._kernels.forward`,
* :func:`gpu_loss_grad` is :func:`lstmforecast._kernels.loss_grad`,
* :func:`gpu_train_batches` is :func:`lstmforecast._training.train_batches`,

and :class:`GpuTrainer` keeps a training run on the device between calls (what the
estimators use with ``device="cuda"``).

This module is imported only when a device resolves to ``"cuda"``
(:mod:`lstmforecast._device`); ``import lstmforecast`` never imports numba.cuda. The
kernels are lazy (no signatures): nothing compiles before the first launch.

Design
------
* **One thread per (model, sequence).** A launch runs ``M`` independent networks of
  one shape (``params`` of shape ``(M, P)``; the estimators use ``M = 1``) on a
  mini-batch each: block row ``blockIdx.y`` is the model, and the threads of a block
  are sequences of that model (grid-stride loops over both). Each thread runs the
  forward pass of its sequence, keeping every step's activations, then BPTT.
* **Weights in shared memory where they fit.** A block copies its model's packed
  parameters into dynamic shared memory when ``P * itemsize`` is at most
  ``config.LSTMF_GPU_SHARED_BYTES``; otherwise the threads read them from global
  memory (all threads of a warp read the same weight: one broadcast load).
* **Sequences as lanes.** Every per-thread scratch array has the sequence slot as its
  last axis (``acts[t, layer, unit, slot]``), and each sequence's gradient goes to
  its own slot ``G[m, p, slot]``, so the threads of a warp touch consecutive
  addresses.
* **Deterministic, no atomics.** Per-sequence gradients and losses are reduced by
  separate kernels in a fixed order; results do not depend on the launch shape
  beyond floating-point contraction.
* **No host round trip per step or per batch.** Data, parameters and optimizer state
  stay on the device; a call of :meth:`GpuTrainer.run` launches all of its
  mini-batches (forward/BPTT, loss sum, gradient sum with L2 and frozen
  parameters, global norm and clipping, optimizer step, undo of a non-finite step)
  and synchronises once, to read the losses.

Tunables (read at call time): ``config.LSTMF_THREADS_PER_BLOCK`` and
``config.LSTMF_GPU_SHARED_BYTES``. Shapes follow :mod:`lstmforecast._kernels`.
"""

from __future__ import annotations

import functools
import math
import warnings

import numba
import numpy as np
from numba import cuda, float64
from numba.core.errors import NumbaPerformanceWarning

from . import config
from ._layout import (
    CELL_LSTM,
    CELL_LSTM1997_EXP2,
    CELL_LSTM1997_EXP2_CENTERED,
    CELL_LSTM1997_TABLE10,
    LOSS_LOGISTIC_XENT,
    LOSS_SIGMOID_SQUARED,
    LOSS_SOFTMAX_XENT,
    LOSS_SQUARED,
    n_units,
    recurrent_size,
)
from ._optimizers import (
    H_ALPHA,
    H_BETA1,
    H_BETA2,
    H_CLIP,
    H_EPS,
    H_LR,
    H_MOMENTUM,
    H_NESTEROV,
    OPT_ADAM,
)

# Most threads in one block (CUDA's limit); the reduction kernel's shared buffer.
_MAX_THREADS = 1024
# Most blocks along a grid's y axis (CUDA's limit); larger M grid-strides.
_MAX_GRID_Y = 65535
# Status of a model that failed (non-finite loss or update) in an earlier call.
_FROZEN = -2


# ----------------------------------------------------------------------------------
# Kernels, built once per dtype (the dtype is a compile-time constant)
# ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=None)
def _kernels(dtype_char):
    """The CUDA kernels for one float dtype (``"f"`` or ``"d"``), lazily compiled."""
    DT = np.dtype(dtype_char).type
    NB_DT = numba.from_dtype(np.dtype(dtype_char))  # for cuda.shared.array

    @cuda.jit(device=True)
    def sigmoid(z):
        # exp of a non-positive number only: no overflow (the simulator's Python
        # math.exp raises on overflow where CUDA returns inf); NaN stays NaN.
        if z >= 0:
            return DT(1.0) / (DT(1.0) + math.exp(-z))
        e = math.exp(z)
        return e / (DT(1.0) + e)

    @cuda.jit(device=True)
    def squashing(cell):
        """``_kernels._squashing`` for the GPU: ``(amp_g, off_g, slope_g,
        inv_sq_g, amp_h, slope_h, h_identity)`` of a 1997 cell code."""
        if cell == CELL_LSTM1997_TABLE10:
            return DT(1.0), DT(0.0), DT(0.5), DT(1.0), DT(2.0), DT(1.0), False
        if cell == CELL_LSTM1997_EXP2:
            return DT(0.5), DT(0.5), DT(0.25), DT(4.0), DT(1.0), DT(1.0), True
        if cell == CELL_LSTM1997_EXP2_CENTERED:
            return DT(1.0), DT(0.0), DT(0.5), DT(1.0), DT(1.0), DT(1.0), True
        return DT(2.0), DT(0.0), DT(1.0), DT(0.25), DT(1.0), DT(0.5), False

    @cuda.jit(device=True)
    def layer_step(w, layout, layer, cell, H, block_size, X, b, t, rs, cs, acts, tp,
                   tn, ta, s):
        """One step of one layer for lane ``s``: reads state slice ``tp`` (and the
        layer below at ``tn``), writes activations ``acts[ta]`` and state ``tn``."""
        n_u = acts.shape[2]
        R = rs.shape[2]
        off_wih = layout[layer, 0]
        off_whh = layout[layer, 1]
        off_bih = layout[layer, 2]
        off_bhh = layout[layer, 3]
        din = layout[layer, 4]
        for u in range(n_u):
            z = w[off_bih + u]
            if off_bhh >= 0:
                z += w[off_bhh + u]
            row = off_wih + u * din
            if layer == 0:
                for d in range(din):
                    z += w[row + d] * X[b, t, d]
            else:
                for d in range(din):
                    z += w[row + d] * rs[tn, layer - 1, d, s]
            row = off_whh + u * R
            for k in range(R):
                z += w[row + k] * rs[tp, layer, k, s]
            acts[ta, layer, u, s] = z
        if cell == CELL_LSTM:
            for k in range(H):
                gi = sigmoid(acts[ta, layer, k, s])
                gf = sigmoid(acts[ta, layer, H + k, s])
                gg = math.tanh(acts[ta, layer, 2 * H + k, s])
                go = sigmoid(acts[ta, layer, 3 * H + k, s])
                acts[ta, layer, k, s] = gi
                acts[ta, layer, H + k, s] = gf
                acts[ta, layer, 2 * H + k, s] = gg
                acts[ta, layer, 3 * H + k, s] = go
                ck = gf * cs[tp, layer, k, s] + gi * gg
                cs[tn, layer, k, s] = ck
                rs[tn, layer, k, s] = go * math.tanh(ck)
        else:
            n_blocks = H // block_size
            amp_g, off_g, _, _, amp_h, _, h_identity = squashing(cell)
            for q in range(H, n_u):
                a = sigmoid(acts[ta, layer, q, s])
                acts[ta, layer, q, s] = a
                rs[tn, layer, q, s] = a
            for k in range(H):
                blk = k // block_size
                gk = amp_g * math.tanh(DT(0.5) * acts[ta, layer, k, s]) + off_g
                acts[ta, layer, k, s] = gk
                ck = cs[tp, layer, k, s] + acts[ta, layer, H + blk, s] * gk
                cs[tn, layer, k, s] = ck
                h = ck if h_identity else amp_h * math.tanh(DT(0.5) * ck)
                rs[tn, layer, k, s] = acts[ta, layer, H + n_blocks + blk, s] * h

    @cuda.jit(device=True)
    def head_logits(w, layout, rs, tn, top, H, X, b, t, logits, s):
        """The head's net inputs at step ``t`` of sequence ``b`` (the top layer's
        output in ``rs[tn]``; the input ``X[b, t]`` too when the head sees it)."""
        n_layers = layout.shape[0] - 1
        off_w = layout[n_layers, 0]
        off_b = layout[n_layers, 1]
        n_out = layout[n_layers, 2]
        d_in = layout[n_layers, 4]
        for k in range(n_out):
            z = w[off_b + k]
            row = off_w + k * H
            for j in range(H):
                z += w[row + j] * rs[tn, top, j, s]
            row = off_b + n_out + k * d_in
            for d in range(d_in):
                z += w[row + d] * X[b, t, d]
            logits[k, s] = z
        return n_out

    @cuda.jit(device=True)
    def activate(loss_kind, logits, n_out, s):
        if loss_kind == LOSS_SIGMOID_SQUARED or loss_kind == LOSS_LOGISTIC_XENT:
            for k in range(n_out):
                logits[k, s] = sigmoid(logits[k, s])
        elif loss_kind == LOSS_SOFTMAX_XENT:
            zmax = logits[0, s]
            for k in range(1, n_out):
                if logits[k, s] > zmax:
                    zmax = logits[k, s]
            total = DT(0.0)
            for k in range(n_out):
                e = math.exp(logits[k, s] - zmax)
                logits[k, s] = e
                total += e
            for k in range(n_out):
                logits[k, s] = logits[k, s] / total

    @cuda.jit(device=True)
    def head_loss_grad(w, layout, loss_kind, rs, tn, top, H, X, Y, b, t, wt, logits,
                       G, m, i, s, dr):
        """Weighted loss of one target step; head gradients into ``G[m, :, i]`` and
        the gradient with respect to the top layer's output added to ``dr``."""
        n_out = head_logits(w, layout, rs, tn, top, H, X, b, t, logits, s)
        loss = 0.0
        if loss_kind == LOSS_SQUARED:
            for k in range(n_out):
                diff = logits[k, s] - Y[b, t, k]
                loss += wt * 0.5 * diff * diff
                logits[k, s] = wt * diff
        elif loss_kind == LOSS_SIGMOID_SQUARED:
            for k in range(n_out):
                y = sigmoid(logits[k, s])
                diff = y - Y[b, t, k]
                loss += wt * 0.5 * diff * diff
                logits[k, s] = wt * diff * y * (DT(1.0) - y)
        elif loss_kind == LOSS_SOFTMAX_XENT:
            zmax = logits[0, s]
            for k in range(1, n_out):
                if logits[k, s] > zmax:
                    zmax = logits[k, s]
            total = 0.0
            t_sum = 0.0
            for k in range(n_out):
                total += math.exp(logits[k, s] - zmax)
                t_sum += Y[b, t, k]
            log_norm = zmax + math.log(total)
            for k in range(n_out):
                z = logits[k, s]
                loss -= wt * Y[b, t, k] * (z - log_norm)
                logits[k, s] = wt * (math.exp(z - log_norm) * t_sum - Y[b, t, k])
        else:
            for k in range(n_out):
                z = logits[k, s]
                tk = Y[b, t, k]
                # log(1 + exp(-|z|)) + max(z, 0) - t z, stable for any z
                zpos = z if z > 0.0 else DT(0.0)
                loss += wt * (math.log1p(math.exp(-math.fabs(z))) + zpos - tk * z)
                logits[k, s] = wt * (sigmoid(z) - tk)
        n_layers = layout.shape[0] - 1
        off_w = layout[n_layers, 0]
        off_b = layout[n_layers, 1]
        d_in = layout[n_layers, 4]
        for k in range(n_out):
            g = logits[k, s]
            G[m, off_b + k, i] += g
            row = off_w + k * H
            for j in range(H):
                G[m, row + j, i] += g * rs[tn, top, j, s]
            row = off_b + n_out + k * d_in
            for d in range(d_in):
                G[m, row + d, i] += g * X[b, t, d]
        for j in range(H):
            dh = DT(0.0)
            for k in range(n_out):
                dh += w[off_w + k * H + j] * logits[k, s]
            dr[top, j, s] += dh
        return loss

    @cuda.jit(device=True)
    def layer_back(w, layout, layer, cell, H, block_size, X, b, t, rs, cs, acts, dr,
                   dc, dz, G, m, i, s):
        """Backward through step ``t`` of one layer (see ``_kernels._layer_backward``):
        ``dr[layer]``/``dc[layer]`` in (gradient w.r.t. this step's output and cell),
        out (w.r.t. the previous step's); the input gradient is added to
        ``dr[layer - 1]``; parameter gradients go to ``G[m, :, i]``."""
        n_u = acts.shape[2]
        R = rs.shape[2]
        if cell == CELL_LSTM:
            for k in range(H):
                gi = acts[t, layer, k, s]
                gf = acts[t, layer, H + k, s]
                gg = acts[t, layer, 2 * H + k, s]
                go = acts[t, layer, 3 * H + k, s]
                tc = math.tanh(cs[t + 1, layer, k, s])
                dh = dr[layer, k, s]
                dck = dc[layer, k, s] + dh * go * (DT(1.0) - tc * tc)
                dz[k, s] = dck * gg * gi * (DT(1.0) - gi)
                dz[H + k, s] = dck * cs[t, layer, k, s] * gf * (DT(1.0) - gf)
                dz[2 * H + k, s] = dck * gi * (DT(1.0) - gg * gg)
                dz[3 * H + k, s] = dh * tc * go * (DT(1.0) - go)
                dc[layer, k, s] = dck * gf
        else:
            n_blocks = H // block_size
            _, off_g, slope_g, inv_sq_g, amp_h, slope_h, h_identity = squashing(cell)
            for q in range(H, n_u):
                dz[q, s] = dr[layer, q, s]
            for k in range(H):
                blk = k // block_size
                yin = acts[t, layer, H + blk, s]
                yout = acts[t, layer, H + n_blocks + blk, s]
                ck = cs[t + 1, layer, k, s]
                if h_identity:
                    h = ck
                    h_slope = DT(1.0)
                else:
                    hs = math.tanh(DT(0.5) * ck)
                    h = amp_h * hs
                    h_slope = slope_h * (DT(1.0) - hs * hs)
                dz[H + n_blocks + blk, s] += dr[layer, k, s] * h
                dsk = dc[layer, k, s] + dr[layer, k, s] * yout * h_slope
                gk = acts[t, layer, k, s]
                dz[H + blk, s] += dsk * gk
                g0 = gk - off_g
                dz[k, s] = dsk * yin * slope_g * (DT(1.0) - inv_sq_g * g0 * g0)
                dc[layer, k, s] = dsk
            for q in range(H, n_u):
                a = acts[t, layer, q, s]
                dz[q, s] *= a * (DT(1.0) - a)
        off_wih = layout[layer, 0]
        off_whh = layout[layer, 1]
        off_bih = layout[layer, 2]
        off_bhh = layout[layer, 3]
        din = layout[layer, 4]
        for u in range(n_u):
            g = dz[u, s]
            G[m, off_bih + u, i] += g
            if off_bhh >= 0:
                G[m, off_bhh + u, i] += g
            row = off_wih + u * din
            if layer == 0:
                for d in range(din):
                    G[m, row + d, i] += g * X[b, t, d]
            else:
                for d in range(din):
                    G[m, row + d, i] += g * rs[t + 1, layer - 1, d, s]
            row = off_whh + u * R
            for k in range(R):
                G[m, row + k, i] += g * rs[t, layer, k, s]
        if layer > 0:
            for d in range(din):
                acc = DT(0.0)
                for u in range(n_u):
                    acc += w[off_wih + u * din + d] * dz[u, s]
                dr[layer - 1, d, s] += acc
        for k in range(R):
            acc = DT(0.0)
            for u in range(n_u):
                acc += w[off_whh + u * R + k] * dz[u, s]
            dr[layer, k, s] = acc

    @cuda.jit(device=True)
    def load_state(state0, has_state0, b, rs, cs, slot, s):
        n_layers = rs.shape[1]
        R = rs.shape[2]
        H = cs.shape[2]
        for layer in range(n_layers):
            for k in range(R):
                rs[slot, layer, k, s] = state0[b, layer, k] if has_state0 else DT(0.0)
            for k in range(H):
                cs[slot, layer, k, s] = (state0[b, layer, R + k] if has_state0
                                         else DT(0.0))

    @cuda.jit(device=True)
    def train_one(w, layout, X, lengths, Y, mask, state0, has_state0, b, cell, H,
                  block_size, loss_kind, acts, cs, rs, dr, dc, dz, logits, G, m, i, s,
                  lslots, wslots):
        """Forward and BPTT of sequence ``b`` into slot ``i`` of model ``m``."""
        n_layers = layout.shape[0] - 1
        R = rs.shape[2]
        top = n_layers - 1
        length = lengths[b]
        load_state(state0, has_state0, b, rs, cs, 0, s)
        for t in range(length):
            for layer in range(n_layers):
                layer_step(w, layout, layer, cell, H, block_size, X, b, t, rs, cs,
                           acts, t, t + 1, t, s)
        for p in range(G.shape[1]):
            G[m, p, i] = DT(0.0)
        for layer in range(n_layers):
            for k in range(R):
                dr[layer, k, s] = DT(0.0)
            for k in range(H):
                dc[layer, k, s] = DT(0.0)
        loss = 0.0
        weight = 0.0
        for t in range(length - 1, -1, -1):
            wt = mask[b, t]
            weight += wt
            if wt != 0.0:
                loss += head_loss_grad(w, layout, loss_kind, rs, t + 1, top, H, X, Y,
                                       b, t, wt, logits, G, m, i, s, dr)
            for layer in range(top, -1, -1):
                layer_back(w, layout, layer, cell, H, block_size, X, b, t, rs, cs,
                           acts, dr, dc, dz, G, m, i, s)
        lslots[m, i] = loss
        wslots[m, i] = weight

    @cuda.jit(device=True)
    def forward_one(w, layout, X, lengths, state0, has_state0, n, cell, H,
                    block_size, loss_kind, last_only, acts, cs, rs, logits, out, state,
                    m, s):
        """Forward of sequence ``n`` keeping two time slices (ping-pong)."""
        n_layers = layout.shape[0] - 1
        R = rs.shape[2]
        top = n_layers - 1
        length = lengths[n]
        load_state(state0, has_state0, n, rs, cs, 0, s)
        cur = 0
        for t in range(length):
            nxt = 1 - cur
            for layer in range(n_layers):
                layer_step(w, layout, layer, cell, H, block_size, X, n, t, rs, cs,
                           acts, cur, nxt, 0, s)
            if not last_only:
                n_out = head_logits(w, layout, rs, nxt, top, H, X, n, t, logits, s)
                activate(loss_kind, logits, n_out, s)
                for k in range(n_out):
                    out[m, n, t, k] = logits[k, s]
            cur = nxt
        if last_only:
            n_out = head_logits(w, layout, rs, cur, top, H, X, n, length - 1, logits,
                                s)
            activate(loss_kind, logits, n_out, s)
            for k in range(n_out):
                out[m, n, 0, k] = logits[k, s]
        else:
            for t in range(length, out.shape[2]):
                for k in range(out.shape[3]):
                    out[m, n, t, k] = DT(0.0)
        for layer in range(n_layers):
            for k in range(R):
                state[m, n, layer, k] = rs[cur, layer, k, s]
            for k in range(H):
                state[m, n, layer, R + k] = cs[cur, layer, k, s]

    # -- kernels: forward + BPTT of a mini-batch ---------------------------------
    @cuda.jit
    def train_global(params, layout, X, lengths, Y, mask, state0, has_state0, order,
                     start, n_batch, cell, H, block_size, loss_kind, status, acts, cs,
                     rs, dr, dc, dz, logits, G, lslots, wslots):
        n_models = params.shape[0]
        cap = G.shape[2]
        first = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        stride = cuda.gridDim.x * cuda.blockDim.x
        for m in range(cuda.blockIdx.y, n_models, cuda.gridDim.y):
            if status[m] != -1:
                continue
            w = params[m]
            for i in range(first, n_batch, stride):
                train_one(w, layout, X, lengths, Y, mask, state0, has_state0,
                          order[m, start + i], cell, H, block_size, loss_kind, acts,
                          cs, rs, dr, dc, dz, logits, G, m, i, m * cap + i, lslots,
                          wslots)

    @cuda.jit
    def train_shared(params, layout, X, lengths, Y, mask, state0, has_state0, order,
                     start, n_batch, cell, H, block_size, loss_kind, status, acts, cs,
                     rs, dr, dc, dz, logits, G, lslots, wslots):
        w = cuda.shared.array(0, NB_DT)
        n_models, n_params = params.shape
        cap = G.shape[2]
        tid = cuda.threadIdx.x
        first = cuda.blockIdx.x * cuda.blockDim.x + tid
        stride = cuda.gridDim.x * cuda.blockDim.x
        for m in range(cuda.blockIdx.y, n_models, cuda.gridDim.y):
            if status[m] != -1:  # the same for the whole block
                continue
            for p in range(tid, n_params, cuda.blockDim.x):
                w[p] = params[m, p]
            cuda.syncthreads()
            for i in range(first, n_batch, stride):
                train_one(w, layout, X, lengths, Y, mask, state0, has_state0,
                          order[m, start + i], cell, H, block_size, loss_kind, acts,
                          cs, rs, dr, dc, dz, logits, G, m, i, m * cap + i, lslots,
                          wslots)
            cuda.syncthreads()

    # -- kernels: forward only -------------------------------------------------------
    @cuda.jit
    def forward_global(params, layout, X, lengths, state0, has_state0, order, cell, H,
                       block_size, loss_kind, last_only, acts, cs, rs, logits, out,
                       state):
        n_models = params.shape[0]
        n_seq = X.shape[0]
        first = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        stride = cuda.gridDim.x * cuda.blockDim.x
        for m in range(cuda.blockIdx.y, n_models, cuda.gridDim.y):
            w = params[m]
            for i in range(first, n_seq, stride):
                forward_one(w, layout, X, lengths, state0, has_state0, order[i], cell,
                            H, block_size, loss_kind, last_only, acts, cs, rs, logits,
                            out, state, m, m * n_seq + i)

    @cuda.jit
    def forward_shared(params, layout, X, lengths, state0, has_state0, order, cell, H,
                       block_size, loss_kind, last_only, acts, cs, rs, logits, out,
                       state):
        w = cuda.shared.array(0, NB_DT)
        n_models, n_params = params.shape
        n_seq = X.shape[0]
        tid = cuda.threadIdx.x
        first = cuda.blockIdx.x * cuda.blockDim.x + tid
        stride = cuda.gridDim.x * cuda.blockDim.x
        for m in range(cuda.blockIdx.y, n_models, cuda.gridDim.y):
            for p in range(tid, n_params, cuda.blockDim.x):
                w[p] = params[m, p]
            cuda.syncthreads()
            for i in range(first, n_seq, stride):
                forward_one(w, layout, X, lengths, state0, has_state0, order[i], cell,
                            H, block_size, loss_kind, last_only, acts, cs, rs, logits,
                            out, state, m, m * n_seq + i)
            cuda.syncthreads()

    # -- kernels: reductions and the update -----------------------------------------
    @cuda.jit
    def sum_losses(lslots, wslots, n_batch, status, loss, weight):
        """Per model: data loss ``sum(loss) / sum(mask)`` and ``sum(mask)``."""
        for m in range(cuda.grid(1), lslots.shape[0], cuda.gridsize(1)):
            if status[m] != -1:
                continue
            total = 0.0
            wsum = 0.0
            for i in range(n_batch):
                total += lslots[m, i]
                wsum += wslots[m, i]
            if wsum > 0.0:
                total *= 1.0 / wsum
            loss[m] = total
            weight[m] = wsum

    @cuda.jit
    def sum_grads(params, G, n_batch, weight, l2_mask, train_mask, alpha, use_masks,
                  status, grad):
        """Per (model, parameter): mean gradient, plus L2, times the train mask."""
        n_models, n_params = params.shape
        first = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        stride = cuda.gridDim.x * cuda.blockDim.x
        for m in range(cuda.blockIdx.y, n_models, cuda.gridDim.y):
            if status[m] != -1:
                continue
            wsum = weight[m]
            scale = 1.0 / wsum if wsum > 0.0 else 1.0
            for p in range(first, n_params, stride):
                g = DT(0.0)
                for i in range(n_batch):
                    g += G[m, p, i]
                if wsum > 0.0:
                    g = DT(g * scale)
                if use_masks:
                    if alpha > 0.0 and l2_mask[p] != 0.0:
                        g = DT(g + alpha * params[m, p])
                    g = g * train_mask[p]
                grad[m, p] = g

    @cuda.jit
    def check_step(params, grad, l2_mask, alpha, clip, status, loss, batch,
                   losses_out, scale, step):
        """One block per model: L2 penalty, global norm, finiteness and clipping."""
        part_norm = cuda.shared.array(_MAX_THREADS, float64)
        part_pen = cuda.shared.array(_MAX_THREADS, float64)
        n_models, n_params = params.shape
        tid = cuda.threadIdx.x
        nthreads = cuda.blockDim.x
        for m in range(cuda.blockIdx.x, n_models, cuda.gridDim.x):
            if status[m] != -1:  # read by all threads before thread 0 may write it
                continue
            norm2 = 0.0
            penalty = 0.0
            for p in range(tid, n_params, nthreads):
                g = grad[m, p]
                norm2 += g * g
                if alpha > 0.0 and l2_mask[p] != 0.0:
                    v = params[m, p]
                    penalty += v * v
            part_norm[tid] = norm2
            part_pen[tid] = penalty
            cuda.syncthreads()
            if tid == 0:
                norm2 = 0.0
                penalty = 0.0
                for j in range(nthreads):
                    norm2 += part_norm[j]
                    penalty += part_pen[j]
                total = loss[m] + 0.5 * alpha * penalty
                losses_out[m, batch] = total
                if math.isfinite(total) and math.isfinite(norm2):
                    factor = 1.0
                    if clip > 0.0 and norm2 > clip * clip:
                        factor = clip / math.sqrt(norm2)
                    scale[m] = factor
                    step[m] += 1
                else:
                    status[m] = batch
            cuda.syncthreads()

    @cuda.jit
    def update(params, grad, opt_state, params_before, state_before, scale, step,
               hyper, opt_kind, status, batch, bad):
        """Per (model, parameter): one SGD or Adam step (``_optimizers``' rules)."""
        n_models, n_params = params.shape
        first = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        stride = cuda.gridDim.x * cuda.blockDim.x
        lr = hyper[H_LR]
        for m in range(cuda.blockIdx.y, n_models, cuda.gridDim.y):
            if status[m] != -1:
                continue
            factor = scale[m]
            t = step[m] * 1.0
            for p in range(first, n_params, stride):
                g = grad[m, p]
                if factor != 1.0:
                    g = DT(g * factor)
                old = params[m, p]
                s0 = opt_state[m, 0, p]
                s1 = opt_state[m, 1, p]
                params_before[m, p] = old
                state_before[m, 0, p] = s0
                state_before[m, 1, p] = s1
                if opt_kind == OPT_ADAM:
                    beta1 = hyper[H_BETA1]
                    beta2 = hyper[H_BETA2]
                    corr1 = 1.0 - math.pow(beta1, t)
                    corr2 = 1.0 - math.pow(beta2, t)
                    mom1 = DT(beta1 * s0 + (1.0 - beta1) * g)
                    mom2 = DT(beta2 * s1 + (1.0 - beta2) * g * g)
                    opt_state[m, 0, p] = mom1
                    opt_state[m, 1, p] = mom2
                    new = DT(old - (lr / corr1) * mom1
                             / (math.sqrt(mom2 / corr2) + hyper[H_EPS]))
                else:
                    mom = hyper[H_MOMENTUM]
                    if mom == 0.0:
                        new = DT(old - lr * g)
                    else:
                        vel = DT(mom * s0 - lr * g)
                        opt_state[m, 0, p] = vel
                        if hyper[H_NESTEROV] != 0.0:
                            new = DT(old + (mom * vel - lr * g))
                        else:
                            new = DT(old + vel)
                params[m, p] = new
                if not math.isfinite(new):
                    bad[m] = batch + 1

    @cuda.jit
    def undo(params, opt_state, params_before, state_before, bad, batch, status,
             step):
        """Restore the models whose update of this batch was not finite."""
        n_models, n_params = params.shape
        first = cuda.blockIdx.x * cuda.blockDim.x + cuda.threadIdx.x
        stride = cuda.gridDim.x * cuda.blockDim.x
        for m in range(cuda.blockIdx.y, n_models, cuda.gridDim.y):
            if bad[m] != batch + 1:
                continue
            for p in range(first, n_params, stride):
                params[m, p] = params_before[m, p]
                opt_state[m, 0, p] = state_before[m, 0, p]
                opt_state[m, 1, p] = state_before[m, 1, p]
                if p == 0:
                    status[m] = batch
                    step[m] -= 1

    return {"train_global": train_global, "train_shared": train_shared,
            "forward_global": forward_global, "forward_shared": forward_shared,
            "sum_losses": sum_losses, "sum_grads": sum_grads,
            "check_step": check_step, "update": update, "undo": undo}


# ----------------------------------------------------------------------------------
# Host helpers
# ----------------------------------------------------------------------------------


def _quiet_launches(func):
    """Silence Numba's low-occupancy warning: small grids (one small model) are
    expected here, and the many-models path fills the GPU."""
    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NumbaPerformanceWarning)
            return func(*args, **kwargs)
    return wrapper


def _threads_per_block():
    return int(min(_MAX_THREADS, max(1, int(config.LSTMF_THREADS_PER_BLOCK))))


def _lane_threads(n_items):
    """Threads per block for ``n_items`` lanes: at most LSTMF_THREADS_PER_BLOCK,
    and no more than ``n_items`` rounded up to a warp (small batches of many
    models)."""
    tpb = _threads_per_block()
    return max(1, min(tpb, 32 * (-(-n_items // 32))))


def _blocks(n_items, threads):
    return max(1, -(-n_items // threads))


def _shared_bytes(n_params, dtype):
    """Dynamic shared memory for the weights of one model, or 0 to use global."""
    size = int(n_params) * np.dtype(dtype).itemsize
    return size if size <= int(config.LSTMF_GPU_SHARED_BYTES) else 0


def _sizes(layout, cell, hidden_size, block_size):
    n_layers = layout.shape[0] - 1
    return (n_layers, n_units(cell, hidden_size, block_size),
            recurrent_size(cell, hidden_size, block_size), int(layout[n_layers, 2]))


def _as_models(params):
    """``(params2d, single)``: a C-contiguous ``(M, P)`` view of ``params``."""
    params = np.asarray(params)
    if params.ndim == 1:
        return np.ascontiguousarray(params[None, :]), True
    if params.ndim != 2:
        raise ValueError(f"params must be 1-D (P,) or 2-D (M, P), got {params.shape}")
    return np.ascontiguousarray(params), False


def _device_state0(state0, dtype, n_layers):
    """``(device array, has_state0)``; a dummy array stands for 'zeros'."""
    state0 = np.asarray(state0)
    if state0.shape[0] == 0:
        return cuda.to_device(np.zeros((1, n_layers, 1), dtype=dtype)), 0
    return cuda.to_device(np.ascontiguousarray(state0, dtype=dtype)), 1


@_quiet_launches
def gpu_forward(params, layout, X, lengths, state0, order, cell, hidden_size,
                block_size, loss_kind, last_only, parallel=True):
    """Network outputs and final states on the GPU (see ``_kernels.forward``).

    Parameters
    ----------
    params : ndarray (P,) or (M, P)
        Packed parameters of one network, or of ``M`` networks of the same shape
        (then every returned array gets a leading model axis).
    layout, X, lengths, state0, order
        As for :func:`lstmforecast._kernels.forward` (thread ``i`` runs the
        sequence ``order[i]``).
    cell, hidden_size, block_size, loss_kind, last_only
        As for :func:`lstmforecast._kernels.forward`.
    parallel : bool, default=True
        Accepted for the CPU kernel's signature; a GPU launch is always parallel.

    Returns
    -------
    out : ndarray (N, T, K), or (N, 1, K) when ``last_only``
    state : ndarray (N, L, R + H)
        Host arrays in ``params.dtype``.
    """
    P2, single = _as_models(params)
    dt = P2.dtype
    n_models, n_params = P2.shape
    X = np.ascontiguousarray(X, dtype=dt)
    n_seq, t_max = X.shape[0], X.shape[1]
    n_layers, n_u, R, n_out = _sizes(layout, cell, hidden_size, block_size)
    t_out = 1 if last_only else t_max
    if n_seq == 0:
        out = np.zeros((n_models, 0, t_out, n_out), dtype=dt)
        state = np.zeros((n_models, 0, n_layers, R + hidden_size), dtype=dt)
        return (out[0], state[0]) if single else (out, state)
    kern = _kernels(dt.char)
    lanes = n_models * n_seq
    d_state0, has_state0 = _device_state0(state0, dt, n_layers)
    d_out = cuda.device_array((n_models, n_seq, t_out, n_out), dtype=dt)
    d_state = cuda.device_array((n_models, n_seq, n_layers, R + hidden_size),
                                dtype=dt)
    threads = _lane_threads(n_seq)
    grid = (_blocks(n_seq, threads), min(n_models, _MAX_GRID_Y))
    shared = _shared_bytes(n_params, dt)
    fn = kern["forward_shared"] if shared else kern["forward_global"]
    fn[grid, threads, 0, shared](
        cuda.to_device(P2), cuda.to_device(np.ascontiguousarray(layout,
                                                                dtype=np.int64)),
        cuda.to_device(X), cuda.to_device(np.ascontiguousarray(lengths,
                                                               dtype=np.int64)),
        d_state0, has_state0,
        cuda.to_device(np.ascontiguousarray(order, dtype=np.int64)), int(cell),
        int(hidden_size), int(block_size),
        int(loss_kind), 1 if last_only else 0,
        cuda.device_array((1, n_layers, n_u, lanes), dtype=dt),
        cuda.device_array((2, n_layers, hidden_size, lanes), dtype=dt),
        cuda.device_array((2, n_layers, R, lanes), dtype=dt),
        cuda.device_array((n_out, lanes), dtype=dt), d_out, d_state)
    out = d_out.copy_to_host()
    state = d_state.copy_to_host()
    return (out[0], state[0]) if single else (out, state)


class _Batch:
    """Device scratch for mini-batches of at most ``capacity`` sequences per model."""

    def __init__(self, n_models, n_params, capacity, t_max, n_layers, n_u, R,
                 hidden_size, n_out, dtype):
        lanes = n_models * capacity
        self.capacity = capacity
        self.acts = cuda.device_array((t_max, n_layers, n_u, lanes), dtype=dtype)
        self.cs = cuda.device_array((t_max + 1, n_layers, hidden_size, lanes),
                                    dtype=dtype)
        self.rs = cuda.device_array((t_max + 1, n_layers, R, lanes), dtype=dtype)
        self.dr = cuda.device_array((n_layers, R, lanes), dtype=dtype)
        self.dc = cuda.device_array((n_layers, hidden_size, lanes), dtype=dtype)
        self.dz = cuda.device_array((n_u, lanes), dtype=dtype)
        self.logits = cuda.device_array((n_out, lanes), dtype=dtype)
        self.G = cuda.device_array((n_models, n_params, capacity), dtype=dtype)
        self.lslots = cuda.device_array((n_models, capacity), dtype=np.float64)
        self.wslots = cuda.device_array((n_models, capacity), dtype=np.float64)
        self.grad = cuda.device_array((n_models, n_params), dtype=dtype)
        self.loss = cuda.device_array(n_models, dtype=np.float64)
        self.weight = cuda.device_array(n_models, dtype=np.float64)


class _Network:
    """A network shape, its data and its parameters on the device."""

    def __init__(self, params, layout, X, lengths, Y, mask, state0, cell, hidden_size,
                 block_size, loss_kind):
        P2, self.single = _as_models(params)
        self.dtype = P2.dtype
        self.n_models, self.n_params = P2.shape
        self.cell, self.hidden_size = int(cell), int(hidden_size)
        self.block_size, self.loss_kind = int(block_size), int(loss_kind)
        self.n_layers, self.n_u, self.R, self.n_out = _sizes(layout, cell,
                                                             hidden_size, block_size)
        dt = self.dtype
        self.t_max = int(np.asarray(X).shape[1])
        self.kern = _kernels(dt.char)
        self.d_params = cuda.to_device(P2)
        self.d_layout = cuda.to_device(np.ascontiguousarray(layout, dtype=np.int64))
        self.d_X = cuda.to_device(np.ascontiguousarray(X, dtype=dt))
        self.d_lengths = cuda.to_device(np.ascontiguousarray(lengths, dtype=np.int64))
        self.d_Y = cuda.to_device(np.ascontiguousarray(Y, dtype=dt))
        self.d_mask = cuda.to_device(np.ascontiguousarray(mask, dtype=dt))
        self.d_state0, self.has_state0 = _device_state0(state0, dt, self.n_layers)
        self.shared = _shared_bytes(self.n_params, dt)
        self._batch = None

    def batch_scratch(self, capacity):
        if self._batch is None or self._batch.capacity < capacity:
            self._batch = _Batch(self.n_models, self.n_params, capacity, self.t_max,
                                 self.n_layers, self.n_u, self.R, self.hidden_size,
                                 self.n_out, self.dtype)
        return self._batch

    def as_order(self, order):
        order = np.asarray(order, dtype=np.int64)
        if order.ndim == 1:
            order = np.broadcast_to(order, (self.n_models, order.shape[0]))
        if order.shape[0] != self.n_models:
            raise ValueError(f"order has {order.shape[0]} rows for {self.n_models} "
                             "models")
        return order

    def launch_loss_grad(self, d_order, start, n_batch, d_status, alpha, use_masks,
                         d_l2_mask, d_train_mask):
        """Forward/BPTT of rows ``order[:, start:start + n_batch]``, then the mean
        loss (``batch.loss``) and gradient (``batch.grad``) per model."""
        kern = self.kern
        batch = self.batch_scratch(max(1, n_batch))
        threads = _lane_threads(n_batch)
        grid_y = min(self.n_models, _MAX_GRID_Y)
        fn = kern["train_shared"] if self.shared else kern["train_global"]
        fn[(_blocks(n_batch, threads), grid_y), threads, 0, self.shared](
            self.d_params, self.d_layout, self.d_X, self.d_lengths, self.d_Y,
            self.d_mask, self.d_state0, self.has_state0, d_order, start, n_batch,
            self.cell, self.hidden_size, self.block_size, self.loss_kind, d_status,
            batch.acts, batch.cs, batch.rs, batch.dr, batch.dc, batch.dz,
            batch.logits, batch.G, batch.lslots, batch.wslots)
        tpb = _threads_per_block()
        kern["sum_losses"][_blocks(self.n_models, tpb), tpb](
            batch.lslots, batch.wslots, n_batch, d_status, batch.loss, batch.weight)
        kern["sum_grads"][(_blocks(self.n_params, tpb), grid_y), tpb](
            self.d_params, batch.G, n_batch, batch.weight, d_l2_mask, d_train_mask,
            float(alpha), 1 if use_masks else 0, d_status, batch.grad)
        return batch


@_quiet_launches
def gpu_loss_grad(params, layout, X, lengths, Y, mask, state0, seq_index, cell,
                  hidden_size, block_size, loss_kind, parallel=True):
    """Mean loss and its full BPTT gradient on the GPU (see ``_kernels.loss_grad``).

    ``params`` may also be ``(M, P)`` (``M`` networks, each on the rows
    ``seq_index``, or ``seq_index[m]`` when it is 2-D); then ``loss`` is an array
    ``(M,)`` and ``grad`` is ``(M, P)``.

    Returns
    -------
    loss : float
    grad : ndarray (P,)
        In ``params.dtype``.
    """
    net = _Network(params, layout, X, lengths, Y, mask, state0, cell, hidden_size,
                   block_size, loss_kind)
    order = net.as_order(seq_index)
    n_batch = order.shape[1]
    if n_batch == 0:
        loss = np.zeros(net.n_models)
        grad = np.zeros((net.n_models, net.n_params), dtype=net.dtype)
        return (0.0, grad[0]) if net.single else (loss, grad)
    d_status = cuda.to_device(np.full(net.n_models, -1, dtype=np.int64))
    dummy = cuda.to_device(np.zeros(1, dtype=net.dtype))
    batch = net.launch_loss_grad(cuda.to_device(np.ascontiguousarray(order)), 0,
                                 n_batch, d_status, 0.0, False, dummy, dummy)
    loss = batch.loss.copy_to_host()
    grad = batch.grad.copy_to_host()
    return (float(loss[0]), grad[0]) if net.single else (loss, grad)


class GpuTrainer:
    """A BPTT training run kept on the GPU between calls.

    Holds the data, the parameters and the optimizer state of ``M`` networks of
    one shape on the device (``M = 1`` for an estimator). :meth:`run` has the
    contract of :func:`lstmforecast._training.train_batches` and, after its
    batches, copies the parameters, optimizer state and step count back into the
    host arrays given here (in place), so the host always sees the state after the
    last call.

    Parameters
    ----------
    params : ndarray (P,) or (M, P)
    layout, X, lengths, Y, mask, state0, cell, hidden_size, block_size, loss_kind
        As for :func:`lstmforecast._kernels.loss_grad`; the data are shared by all
        models.
    opt_kind : int
    opt_state : ndarray (2, P) or (M, 2, P)
    step : ndarray of int64 (1,) or (M,)
    hyper : ndarray of float64
    l2_mask, train_mask : ndarray (P,)
        Shared by all models.
    """

    def __init__(self, params, layout, X, lengths, Y, mask, state0, cell,
                 hidden_size, block_size, loss_kind, opt_kind, opt_state, step,
                 hyper, l2_mask, train_mask):
        self._net = net = _Network(params, layout, X, lengths, Y, mask, state0, cell,
                                   hidden_size, block_size, loss_kind)
        M, P, dt = net.n_models, net.n_params, net.dtype
        self._host = (params, opt_state, step)
        self._opt_kind = int(opt_kind)
        self._hyper = np.asarray(hyper, dtype=np.float64)
        self._d_hyper = cuda.to_device(self._hyper)
        self._d_opt_state = cuda.to_device(
            np.ascontiguousarray(np.asarray(opt_state, dtype=dt).reshape(M, 2, P)))
        self._d_step = cuda.to_device(
            np.ascontiguousarray(np.asarray(step, dtype=np.int64).reshape(M)))
        self._d_l2_mask = cuda.to_device(np.ascontiguousarray(l2_mask, dtype=dt))
        self._d_train_mask = cuda.to_device(np.ascontiguousarray(train_mask,
                                                                 dtype=dt))
        self._d_params_before = cuda.device_array((M, P), dtype=dt)
        self._d_state_before = cuda.device_array((M, 2, P), dtype=dt)
        self._d_scale = cuda.device_array(M, dtype=np.float64)
        self._d_bad = cuda.device_array(M, dtype=np.int64)
        self._frozen = np.zeros(M, dtype=bool)

    @property
    def n_models(self):
        return self._net.n_models

    @_quiet_launches
    def run(self, order, batch_size, first_batch, n_batches):
        """Run mini-batches ``first_batch .. first_batch + n_batches - 1`` of ``order``.

        ``order`` is ``(n,)`` (every model sees the same rows) or ``(M, n)``.

        Returns
        -------
        losses : ndarray (n_batches,), or (M, n_batches)
        sizes : ndarray (n_batches,)
        failed : int, or ndarray of int64 (M,)
            ``-1``, or the index within this call of the batch whose loss,
            gradient or update was not finite (that update is undone and the
            model takes no further step, in this call or later ones; later calls
            report it as ``-2``).
        """
        net = self._net
        kern = net.kern
        M, P = net.n_models, net.n_params
        order = net.as_order(order)
        n_seq = order.shape[1]
        d_order = cuda.to_device(np.ascontiguousarray(order))
        status = np.where(self._frozen, _FROZEN, -1).astype(np.int64)
        d_status = cuda.to_device(status)
        self._d_bad.copy_to_device(np.zeros(M, dtype=np.int64))
        d_losses = cuda.to_device(np.zeros((M, n_batches)))
        sizes = np.zeros(n_batches)
        alpha = float(self._hyper[H_ALPHA])
        clip = float(self._hyper[H_CLIP])
        tpb = _threads_per_block()
        grid_p = (_blocks(P, tpb), min(M, _MAX_GRID_Y))
        for j in range(n_batches):
            start = (first_batch + j) * batch_size
            stop = min(n_seq, start + batch_size)
            sizes[j] = stop - start
            batch = net.launch_loss_grad(d_order, start, stop - start, d_status,
                                         alpha, True, self._d_l2_mask,
                                         self._d_train_mask)
            kern["check_step"][min(M, _MAX_GRID_Y), tpb](
                net.d_params, batch.grad, self._d_l2_mask, alpha, clip, d_status,
                batch.loss, j, d_losses, self._d_scale, self._d_step)
            kern["update"][grid_p, tpb](
                net.d_params, batch.grad, self._d_opt_state, self._d_params_before,
                self._d_state_before, self._d_scale, self._d_step, self._d_hyper,
                self._opt_kind, d_status, j, self._d_bad)
            kern["undo"][grid_p, tpb](
                net.d_params, self._d_opt_state, self._d_params_before,
                self._d_state_before, self._d_bad, j, d_status, self._d_step)
        losses = d_losses.copy_to_host()
        status = d_status.copy_to_host()
        self._frozen |= status != -1
        self.sync()
        if net.single:
            failed = int(status[0])
            if failed >= 0:
                sizes[failed + 1:] = 0.0
            return losses[0], sizes, failed
        return losses, sizes, status

    def params(self):
        """The parameters on the device, copied to a new host array."""
        P2 = self._net.d_params.copy_to_host()
        return P2[0] if self._net.single else P2

    def sync(self):
        """Copy parameters, optimizer state and step count into the host arrays."""
        params, opt_state, step = self._host
        params[...] = self._net.d_params.copy_to_host().reshape(params.shape)
        opt_state[...] = self._d_opt_state.copy_to_host().reshape(opt_state.shape)
        step[...] = self._d_step.copy_to_host().reshape(step.shape)


def gpu_train_batches(params, layout, X, lengths, Y, mask, state0, order, batch_size,
                      first_batch, n_batches, cell, hidden_size, block_size,
                      loss_kind, opt_kind, opt_state, step, hyper, l2_mask,
                      train_mask, parallel=True):
    """:func:`lstmforecast._training.train_batches` on the GPU (same contract).

    ``params``, ``opt_state`` and ``step`` are updated in place. For many models at
    once pass ``params (M, P)``, ``opt_state (M, 2, P)``, ``step (M,)`` and
    ``order (n,)`` or ``(M, n)``; ``losses`` is then ``(M, n_batches)`` and
    ``failed`` an array ``(M,)``. ``parallel`` is accepted for the CPU kernel's
    signature; a GPU launch is always parallel.
    """
    trainer = GpuTrainer(params, layout, X, lengths, Y, mask, state0, cell,
                         hidden_size, block_size, loss_kind, opt_kind, opt_state,
                         step, hyper, l2_mask, train_mask)
    return trainer.run(order, batch_size, first_batch, n_batches)
