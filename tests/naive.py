"""Slow, plain NumPy (float64) reference for the forward pass, loss and gradient.

Everything here follows the equations in the docstring of
:mod:`lstmforecast._layout` literally: one sequence at a time, one time step at a
time, one matrix-vector product per step. The gradient is a hand-written, full
(untruncated) backpropagation through time. It is meant to be read and trusted, not
to be fast.
"""

from __future__ import annotations

import numpy as np

from lstmforecast._layout import (
    CELL_CODES,
    CELL_LSTM,
    CELL_LSTM1997,
    CELL_LSTM1997_EXP2,
    CELL_LSTM1997_EXP2_CENTERED,
    CELL_LSTM1997_TABLE10,
    LOSS_LOGISTIC_XENT,
    LOSS_SIGMOID_SQUARED,
    LOSS_SOFTMAX_XENT,
    LOSS_SQUARED,
    block_shapes,
    recurrent_size,
    state_size,
    unpack,
)

__all__ = ["n_params", "naive_forward", "naive_loss", "naive_loss_grad"]


# ----------------------------------------------------------------------------------
# Small helpers
# ----------------------------------------------------------------------------------


def _sigmoid(x):
    """Logistic function, numerically stable for large ``|x|``."""
    x = np.asarray(x, dtype=np.float64)
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _softplus(x):
    """``log(1 + exp(x))``, numerically stable."""
    return np.logaddexp(0.0, x)


def _cell_code(cell):
    """Accept an int cell code or a cell name."""
    return CELL_CODES[cell] if isinstance(cell, str) else int(cell)


def _check_loss_kind(loss_kind):
    kinds = (LOSS_SQUARED, LOSS_SIGMOID_SQUARED, LOSS_SOFTMAX_XENT, LOSS_LOGISTIC_XENT)
    if loss_kind not in kinds:
        raise ValueError(f"unknown loss_kind {loss_kind!r}")


def _initial_state(state0, n_seq, cell, hidden_size, num_layers, block_size):
    """Zeros, or a float64 copy of ``state0`` with its shape checked."""
    shape = (n_seq, num_layers, state_size(cell, hidden_size, block_size))
    if state0 is None:
        return np.zeros(shape)
    state0 = np.array(state0, dtype=np.float64)
    if state0.shape != shape:
        raise ValueError(f"state0 has shape {state0.shape}, expected {shape}")
    return state0


# ----------------------------------------------------------------------------------
# One time step of one layer, forward and backward
# ----------------------------------------------------------------------------------


def _lstm_step(w, x, r_prev, c_prev, hidden_size):
    """One ``torch.nn.LSTM`` step; returns ``(r, c, cache)`` with ``r = h``."""
    H = hidden_size
    z = w["w_ih"] @ x + w["b_ih"] + w["w_hh"] @ r_prev + w["b_hh"]
    i = _sigmoid(z[0:H])
    f = _sigmoid(z[H:2 * H])
    g = np.tanh(z[2 * H:3 * H])
    o = _sigmoid(z[3 * H:4 * H])
    c = f * c_prev + i * g
    tc = np.tanh(c)
    h = o * tc
    cache = {"x": x, "r_prev": r_prev, "c_prev": c_prev, "i": i, "f": f, "g": g,
             "o": o, "tc": tc}
    return h, c, cache


def _lstm_step_back(w, grads, cache, dr, dc_next, hidden_size):
    """Backward of :func:`_lstm_step`.

    ``dr`` is dL/dh_t (all paths), ``dc_next`` is dL/dc_t from step t+1. Weight
    gradients are accumulated into ``grads``; returns ``(dx, dr_prev, dc_prev)``.
    """
    i, f, g, o, tc = cache["i"], cache["f"], cache["g"], cache["o"], cache["tc"]
    do = dr * tc
    dc = dc_next + dr * o * (1.0 - tc * tc)
    di = dc * g
    df = dc * cache["c_prev"]
    dg = dc * i
    dc_prev = dc * f
    dz = np.concatenate([
        di * i * (1.0 - i),
        df * f * (1.0 - f),
        dg * (1.0 - g * g),
        do * o * (1.0 - o),
    ])
    grads["w_ih"] += np.outer(dz, cache["x"])
    grads["w_hh"] += np.outer(dz, cache["r_prev"])
    grads["b_ih"] += dz
    grads["b_hh"] += dz
    dx = w["w_ih"].T @ dz
    dr_prev = w["w_hh"].T @ dz
    return dx, dr_prev, dc_prev


# The 1997 cell's squashing functions and their derivatives, ``(g, g', h, h')``:
# the Appendix's ranges (g in [-2, 2], h in [-1, 1]), Table 10's caption's (g in
# [-1, 1], h in [-2, 2]), and Exps. 2a/2b's (g logistic in [0, 1], or scaled to
# [-1, 1]; h the identity).
_SQUASHING = {
    CELL_LSTM1997: (lambda z: 2.0 * np.tanh(z / 2.0),
                    lambda z: 1.0 - np.tanh(z / 2.0) ** 2,
                    lambda s: np.tanh(s / 2.0),
                    lambda s: 0.5 * (1.0 - np.tanh(s / 2.0) ** 2)),
    CELL_LSTM1997_TABLE10: (lambda z: np.tanh(z / 2.0),
                            lambda z: 0.5 * (1.0 - np.tanh(z / 2.0) ** 2),
                            lambda s: 2.0 * np.tanh(s / 2.0),
                            lambda s: 1.0 - np.tanh(s / 2.0) ** 2),
    CELL_LSTM1997_EXP2: (_sigmoid,
                         lambda z: _sigmoid(z) * (1.0 - _sigmoid(z)),
                         lambda s: s,
                         lambda s: np.ones_like(s)),
    CELL_LSTM1997_EXP2_CENTERED: (lambda z: 2.0 * _sigmoid(z) - 1.0,
                                  lambda z: 2.0 * _sigmoid(z) * (1.0 - _sigmoid(z)),
                                  lambda s: s,
                                  lambda s: np.ones_like(s)),
}


def _lstm1997_step(w, x, r_prev, s_prev, hidden_size, block_size, cell):
    """One 1997 step; returns ``(r, s, cache)`` with ``r = [y^c, y^in, y^out]``."""
    H = hidden_size
    nb = H // block_size
    g_fn, _, h_fn, _ = _SQUASHING[cell]
    z = w["w_ih"] @ x + w["w_hh"] @ r_prev + w["b_ih"]
    z_c = z[0:H]
    y_in = _sigmoid(z[H:H + nb])
    y_out = _sigmoid(z[H + nb:H + 2 * nb])
    g = g_fn(z_c)
    s = np.empty(H)
    y_c = np.empty(H)
    for k in range(H):
        j = k // block_size                  # block of cell k
        s[k] = s_prev[k] + y_in[j] * g[k]
        y_c[k] = y_out[j] * h_fn(s[k])
    r = np.concatenate([y_c, y_in, y_out])
    cache = {"x": x, "r_prev": r_prev, "y_in": y_in, "y_out": y_out, "z_c": z_c,
             "g": g, "s": s, "cell": cell}
    return r, s, cache


def _lstm1997_step_back(w, grads, cache, dr, ds_next, hidden_size, block_size):
    """Backward of :func:`_lstm1997_step`.

    ``dr`` is dL/dr_t (size ``n_units``, all paths), ``ds_next`` is dL/ds_t from
    step t+1 (the carousel carries it unchanged). Weight gradients are accumulated
    into ``grads``; returns ``(dx, dr_prev, ds_prev)``.
    """
    H = hidden_size
    nb = H // block_size
    y_in, y_out = cache["y_in"], cache["y_out"]
    z_c, g, s = cache["z_c"], cache["g"], cache["s"]
    _, dg_fn, h_fn, dh_fn = _SQUASHING[cache["cell"]]
    dy_c = dr[0:H]
    dy_in = dr[H:H + nb].copy()
    dy_out = dr[H + nb:H + 2 * nb].copy()
    ds = np.empty(H)
    dz_c = np.empty(H)
    for k in range(H):
        j = k // block_size
        dy_out[j] += dy_c[k] * h_fn(s[k])
        ds[k] = ds_next[k] + dy_c[k] * y_out[j] * dh_fn(s[k])
        dy_in[j] += ds[k] * g[k]
        dz_c[k] = ds[k] * y_in[j] * dg_fn(z_c[k])
    dz = np.concatenate([
        dz_c,
        dy_in * y_in * (1.0 - y_in),
        dy_out * y_out * (1.0 - y_out),
    ])
    grads["w_ih"] += np.outer(dz, cache["x"])
    grads["w_hh"] += np.outer(dz, cache["r_prev"])
    grads["b_ih"] += dz
    dx = w["w_ih"].T @ dz
    dr_prev = w["w_hh"].T @ dz
    return dx, dr_prev, ds


# ----------------------------------------------------------------------------------
# Head and per-step losses
# ----------------------------------------------------------------------------------


def _head_activation(a, loss_kind):
    """Output activation of the head for one step."""
    if loss_kind == LOSS_SQUARED:
        return a.copy()
    if loss_kind == LOSS_SOFTMAX_XENT:
        e = np.exp(a - a.max())
        return e / e.sum()
    return _sigmoid(a)


def _step_loss_and_grad(a, t, loss_kind):
    """Per-step loss and its gradient with respect to the head pre-activation ``a``."""
    if loss_kind == LOSS_SQUARED:
        d = a - t
        return 0.5 * np.sum(d * d), d
    if loss_kind == LOSS_SIGMOID_SQUARED:
        y = _sigmoid(a)
        d = y - t
        return 0.5 * np.sum(d * d), d * y * (1.0 - y)
    if loss_kind == LOSS_SOFTMAX_XENT:
        log_y = a - np.logaddexp.reduce(a)
        y = np.exp(log_y)
        return -np.sum(t * log_y), y * np.sum(t) - t
    # LOSS_LOGISTIC_XENT: -[t log y + (1-t) log(1-y)] with y = sigmoid(a)
    loss = np.sum(t * _softplus(-a) + (1.0 - t) * _softplus(a))
    return loss, _sigmoid(a) - t


# ----------------------------------------------------------------------------------
# Whole network, one sequence
# ----------------------------------------------------------------------------------


def _layer_weights(blocks, cell, layer):
    w = {
        "w_ih": blocks[f"weight_ih_l{layer}"],
        "w_hh": blocks[f"weight_hh_l{layer}"],
        "b_ih": blocks[f"bias_ih_l{layer}"],
    }
    if cell == CELL_LSTM:
        w["b_hh"] = blocks[f"bias_hh_l{layer}"]
    return w


def _forward_sequence(blocks, cell, hidden_size, num_layers, block_size, X, state0):
    """Run all layers over one sequence.

    Returns ``(top, final, caches)``: ``top`` (T, H) are the outputs ``r_t[:H]`` of
    the last layer, ``final`` (num_layers, R + H) the state after the last step and
    ``caches[layer][t]`` what the backward pass needs.
    """
    H = hidden_size
    R = recurrent_size(cell, hidden_size, block_size)
    final = np.empty_like(state0)
    caches = []
    inputs = [X[t] for t in range(X.shape[0])]
    for layer in range(num_layers):
        w = _layer_weights(blocks, cell, layer)
        r = state0[layer, :R].copy()
        c = state0[layer, R:].copy()
        layer_caches = []
        outputs = []
        for x in inputs:
            if cell == CELL_LSTM:
                r, c, cache = _lstm_step(w, x, r, c, H)
            else:
                r, c, cache = _lstm1997_step(w, x, r, c, H, block_size, cell)
            layer_caches.append(cache)
            outputs.append(r[:H].copy())
        final[layer, :R] = r
        final[layer, R:] = c
        caches.append(layer_caches)
        inputs = outputs
    top = np.array(inputs).reshape(len(inputs), H)
    return top, final, caches


def _backward_sequence(blocks, grads, cell, hidden_size, num_layers, block_size,
                       caches, d_top):
    """Full BPTT through all layers of one sequence.

    ``d_top`` (T, H) is dL/d(r_t[:H]) of the last layer coming from the head.
    Weight gradients are accumulated into ``grads``.
    """
    H = hidden_size
    R = recurrent_size(cell, hidden_size, block_size)
    d_out = d_top
    for layer in reversed(range(num_layers)):
        w = _layer_weights(blocks, cell, layer)
        g = _layer_weights(grads, cell, layer)
        layer_caches = caches[layer]
        T = len(layer_caches)
        d_in = [None] * T
        dr_rec = np.zeros(R)                 # dL/dr_t through W_hh of step t+1
        dc_rec = np.zeros(H)                 # dL/dc_t (or s_t) from step t+1
        for t in reversed(range(T)):
            dr = dr_rec.copy()
            dr[:H] += d_out[t]
            if cell == CELL_LSTM:
                dx, dr_rec, dc_rec = _lstm_step_back(
                    w, g, layer_caches[t], dr, dc_rec, H)
            else:
                dx, dr_rec, dc_rec = _lstm1997_step_back(
                    w, g, layer_caches[t], dr, dc_rec, H, block_size)
            d_in[t] = dx
        d_out = d_in


def _head_net_input(blocks, h, x):
    """``head.weight @ h + head.bias``, plus ``head.weight_input @ x`` where the head
    also sees the network's input (the paper's connectivity B)."""
    a = blocks["head.weight"] @ h + blocks["head.bias"]
    if "head.weight_input" in blocks:
        a = a + blocks["head.weight_input"] @ x
    return a


def _run(params, cell, input_size, hidden_size, num_layers, n_outputs, block_size,
         loss_kind, X_list, Y_list, M_list, state0, want_grad, input_to_output):
    """Shared driver of :func:`naive_loss` and :func:`naive_loss_grad`."""
    cell = _cell_code(cell)
    _check_loss_kind(loss_kind)
    params = np.asarray(params, dtype=np.float64)
    blocks = unpack(params, cell, input_size, hidden_size, num_layers, n_outputs,
                    block_size, input_to_output)
    grad = np.zeros_like(params)
    grads = unpack(grad, cell, input_size, hidden_size, num_layers, n_outputs,
                   block_size, input_to_output)
    n_seq = len(X_list)
    if len(Y_list) != n_seq or len(M_list) != n_seq:
        raise ValueError("X_list, Y_list and M_list must have the same length")
    state0 = _initial_state(state0, n_seq, cell, hidden_size, num_layers, block_size)
    W = blocks["head.weight"]

    total_weight = float(sum(np.sum(np.asarray(m, dtype=np.float64)) for m in M_list))
    if total_weight <= 0.0:
        raise ValueError("the total mask weight must be positive")

    loss = 0.0
    for n in range(n_seq):
        X = np.asarray(X_list[n], dtype=np.float64).reshape(-1, input_size)
        Y = np.asarray(Y_list[n], dtype=np.float64).reshape(-1, n_outputs)
        M = np.asarray(M_list[n], dtype=np.float64).reshape(-1)
        T = X.shape[0]
        if Y.shape[0] != T or M.shape[0] != T:
            raise ValueError(f"sequence {n}: X, Y and mask lengths differ")
        top, _, caches = _forward_sequence(blocks, cell, hidden_size, num_layers,
                                           block_size, X, state0[n])
        d_top = np.zeros((T, hidden_size))
        for t in range(T):
            a = _head_net_input(blocks, top[t], X[t])
            step_loss, d_a = _step_loss_and_grad(a, Y[t], loss_kind)
            loss += M[t] * step_loss / total_weight
            if want_grad:
                d_a = d_a * (M[t] / total_weight)
                grads["head.weight"] += np.outer(d_a, top[t])
                grads["head.bias"] += d_a
                if input_to_output:
                    grads["head.weight_input"] += np.outer(d_a, X[t])
                d_top[t] = W.T @ d_a
        if want_grad:
            _backward_sequence(blocks, grads, cell, hidden_size, num_layers,
                               block_size, caches, d_top)
    return loss, grad


# ----------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------


def naive_forward(params, cell, input_size, hidden_size, num_layers, n_outputs,
                  block_size, loss_kind, X_list, state0=None, input_to_output=False):
    """Forward pass of the network, sequence by sequence and step by step.

    Parameters
    ----------
    params : ndarray, shape (n_params,)
        Flat parameter vector in the packed layout of :mod:`lstmforecast._layout`.
    cell : int or str
        ``CELL_LSTM`` / ``CELL_LSTM1997`` / ``CELL_LSTM1997_TABLE10`` /
        ``CELL_LSTM1997_EXP2`` / ``CELL_LSTM1997_EXP2_CENTERED`` (or ``"lstm"`` /
        ``"lstm1997"``).
    input_size, hidden_size, num_layers, n_outputs, block_size : int
        Network sizes; ``block_size`` only matters for lstm1997.
    loss_kind : int
        One of the ``LOSS_*`` codes; selects the head activation.
    X_list : list of ndarray, each of shape (T_i, input_size)
        Input sequences; lengths may differ.
    state0 : ndarray, shape (n_seq, num_layers, R + H), optional
        Initial states; zeros when None.
    input_to_output : bool, default=False
        Whether the head also sees the network's input (``head.weight_input``).

    Returns
    -------
    outputs : list of ndarray, each of shape (T_i, n_outputs)
        Head activation at every step (identity, logistic or softmax).
    final_states : ndarray, shape (n_seq, num_layers, R + H)
        ``[r, c]`` of every layer after the last step of each sequence.
    """
    cell = _cell_code(cell)
    _check_loss_kind(loss_kind)
    params = np.asarray(params, dtype=np.float64)
    blocks = unpack(params, cell, input_size, hidden_size, num_layers, n_outputs,
                    block_size, input_to_output)
    n_seq = len(X_list)
    state0 = _initial_state(state0, n_seq, cell, hidden_size, num_layers, block_size)
    outputs = []
    final_states = np.empty_like(state0)
    for n in range(n_seq):
        X = np.asarray(X_list[n], dtype=np.float64).reshape(-1, input_size)
        top, final, _ = _forward_sequence(blocks, cell, hidden_size, num_layers,
                                          block_size, X, state0[n])
        Y = np.empty((X.shape[0], n_outputs))
        for t in range(X.shape[0]):
            Y[t] = _head_activation(_head_net_input(blocks, top[t], X[t]), loss_kind)
        outputs.append(Y)
        final_states[n] = final
    return outputs, final_states


def naive_loss(params, cell, input_size, hidden_size, num_layers, n_outputs,
               block_size, loss_kind, X_list, Y_list, M_list, state0=None,
               input_to_output=False):
    """Mask-weighted mean loss.

    Parameters
    ----------
    params, cell, input_size, hidden_size, num_layers, n_outputs, block_size, \
loss_kind, X_list, state0, input_to_output
        As in :func:`naive_forward`.
    Y_list : list of ndarray, each of shape (T_i, n_outputs)
        Targets (one-hot rows for softmax, values in [0, 1] for logistic xent).
    M_list : list of ndarray, each of shape (T_i,)
        Non-negative mask weights; their total must be positive.

    Returns
    -------
    loss : float
        ``sum_{b,t} mask[b,t] * loss[b,t] / sum_{b,t} mask[b,t]``.
    """
    loss, _ = _run(params, cell, input_size, hidden_size, num_layers, n_outputs,
                   block_size, loss_kind, X_list, Y_list, M_list, state0,
                   want_grad=False, input_to_output=input_to_output)
    return loss


def naive_loss_grad(params, cell, input_size, hidden_size, num_layers, n_outputs,
                    block_size, loss_kind, X_list, Y_list, M_list, state0=None,
                    input_to_output=False):
    """Loss and its gradient by full backpropagation through time.

    Parameters
    ----------
    params, cell, input_size, hidden_size, num_layers, n_outputs, block_size, \
loss_kind, X_list, Y_list, M_list, state0, input_to_output
        As in :func:`naive_loss`.

    Returns
    -------
    loss : float
        Same value as :func:`naive_loss`.
    grad : ndarray, shape (n_params,)
        dloss/dparams in the packed layout (gradient is not taken w.r.t. state0).
    """
    return _run(params, cell, input_size, hidden_size, num_layers, n_outputs,
                block_size, loss_kind, X_list, Y_list, M_list, state0,
                want_grad=True, input_to_output=input_to_output)


def n_params(cell, input_size, hidden_size, num_layers, n_outputs, block_size=1,
             input_to_output=False):
    """Total number of parameters (convenience for tests)."""
    shapes = block_shapes(_cell_code(cell), input_size, hidden_size, num_layers,
                          n_outputs, block_size, input_to_output)
    return int(sum(np.prod(s) for s in shapes.values()))
