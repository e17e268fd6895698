"""Slow, plain NumPy (float64) oracle of the 1997 *truncated* learning rule.

Hochreiter & Schmidhuber (1997), §4 "Learning" and Appendix A.1, eqs. 19-28 (see
``shared/paper/LSTM1997.md`` §1.2), written out for a single ``lstm1997`` layer in
the packed layout of :mod:`lstmforecast._layout`:

* ``weight_ih_l0`` (U, D), ``weight_hh_l0`` (U, U), ``bias_ih_l0`` (U),
  ``head.weight`` (K, H), ``head.bias`` (K), with ``U = H + 2 H/S`` units ordered
  cells, input gates, output gates (cell ``v`` of block ``j`` is unit
  ``j * S + v``).
* Every unit sees the sources ``[x_t, r_{t-1}, 1]`` with
  ``r_{t-1} = [y^c, y^in, y^out](t-1)``; the head sees the cells of the *same*
  step, ``y^c(t)``.

The truncation sets ``d net_u(t) / d y^m(t-1) = 0`` for every cell and gate ``u``:
error reaches the past only through the internal states ``s_c`` (the constant error
carousel), via the forward-carried RTRL-like traces

* ``dS_in[cv, m] = d s_cv(t) / d w_{in_j, m}``  (eq. 25) and
* ``dS_c[cv, m]  = d s_cv(t) / d w_{cv, m}``    (eq. 27),

where ``m`` runs over the ``D + U + 1`` sources ``[x_t, r_{t-1}, 1]``. Both start
at zero with each sequence (as does the state) and are updated at *every* step,
target or not, before being used at that step. Output-gate weights get only the
immediate term (eqs. 21-22). Signs follow the "gradient" convention: a descent step
is ``params -= lr * grad`` (the paper's ``Delta w = -alpha dE/dw`` with its deltas
``e_k`` equal to ``-dLoss/dnet_k`` for loss kind 1, half squared error).

It is meant to be read and trusted, not to be fast.
"""

from __future__ import annotations

import numpy as np

from lstmforecast._layout import CELL_LSTM1997, n_units, unpack

try:
    from naive import _check_loss_kind, _sigmoid, _step_loss_and_grad
except ImportError:  # tests/ imported as a package
    from tests.naive import _check_loss_kind, _sigmoid, _step_loss_and_grad

__all__ = ["naive_truncated_loss_grad", "naive_truncated_online"]


# ----------------------------------------------------------------------------------
# Squashing functions of the paper (eqs. 3-5) and their derivatives
# ----------------------------------------------------------------------------------


def _f(x):
    """Gate squashing, the logistic (eq. 3)."""
    return _sigmoid(x)


def _scaled_logistic(a):
    """``x -> 2 a / (1 + e^-x) - a`` (range [-a, a]) and its derivative
    ``a/2 (1 - (y / a)^2)`` written as a function of x."""
    def value(x):
        return 2.0 * a * _sigmoid(x) - a

    def slope(x):
        return 2.0 * a * _sigmoid(x) * (1.0 - _sigmoid(x))
    return value, slope


# Cell-input squashing g and cell-output squashing h with their derivatives,
# ``(g, g', h, h')``, for each reading of the paper: the Appendix's (eqs. 4-5: g in
# [-2, 2], h in [-1, 1]), Table 10's caption's (g in [-1, 1], h in [-2, 2]), and
# Exps. 2a/2b's (g the logistic in [0, 1], h the identity).
_SQUASHING = {
    "appendix": (*_scaled_logistic(2.0), *_scaled_logistic(1.0)),
    "table10": (*_scaled_logistic(1.0), *_scaled_logistic(2.0)),
    "exp2": (_sigmoid, lambda x: _sigmoid(x) * (1.0 - _sigmoid(x)),
             lambda x: x, lambda x: 1.0),
    "exp2_centered": (*_scaled_logistic(1.0), lambda x: x, lambda x: 1.0),
}


# ----------------------------------------------------------------------------------
# Network description and one forward step
# ----------------------------------------------------------------------------------


class _Net:
    """Sizes and views of the blocks of one single-layer lstm1997 network."""

    def __init__(self, params, input_size, hidden_size, n_outputs, block_size,
                 squashing="appendix", input_to_output=False):
        if hidden_size % block_size:
            raise ValueError("hidden_size must be a multiple of block_size")
        self.g, self.g_prime, self.h, self.h_prime = _SQUASHING[squashing]
        self.input_to_output = input_to_output
        self.D = int(input_size)
        self.H = int(hidden_size)
        self.K = int(n_outputs)
        self.S = int(block_size)
        self.nb = self.H // self.S
        self.U = n_units(CELL_LSTM1997, self.H, self.S)
        self.n_sources = self.D + self.U + 1          # [x_t, r_{t-1}, 1]
        self.blocks = unpack(params, CELL_LSTM1997, self.D, self.H, 1, self.K,
                             self.S, input_to_output)

    def output_net_input(self, step):
        """``net_k(t)`` of the output units: they see the cells of step t (and,
        with connectivity B, the input of step t)."""
        a = self.blocks["head.weight"] @ step["y_c"] + self.blocks["head.bias"]
        if self.input_to_output:
            a = a + self.blocks["head.weight_input"] @ step["x"]
        return a

    def block_of(self, cv):
        """Block ``j`` of cell unit ``cv``."""
        return cv // self.S

    def in_unit(self, j):
        """Row (unit index) of input gate ``j``."""
        return self.H + j

    def out_unit(self, j):
        """Row (unit index) of output gate ``j``."""
        return self.H + self.nb + j


def _forward_step(net, x, r_prev, s_prev):
    """One step of the 1997 cell (paper eqs. 6-9, order of §5: input, hidden).

    Returns a dict with the sources, the net inputs and all activations of step t.
    """
    b = net.blocks
    H, nb = net.H, net.nb
    source = np.concatenate([x, r_prev, [1.0]])        # y^m(t-1) of the paper
    net_u = b["weight_ih_l0"] @ x + b["weight_hh_l0"] @ r_prev + b["bias_ih_l0"]
    net_c = net_u[0:H]
    net_in = net_u[H:H + nb]
    net_out = net_u[H + nb:H + 2 * nb]
    y_in = _f(net_in)
    y_out = _f(net_out)
    g_c = net.g(net_c)
    s = np.empty(H)
    h_s = np.empty(H)
    y_c = np.empty(H)
    for cv in range(H):
        j = net.block_of(cv)
        s[cv] = s_prev[cv] + y_in[j] * g_c[cv]          # the CEC, self-weight 1
        h_s[cv] = net.h(s[cv])
        y_c[cv] = y_out[j] * h_s[cv]
    r = np.concatenate([y_c, y_in, y_out])
    return {"x": x, "source": source, "y_in": y_in, "y_out": y_out, "net_c": net_c,
            "g_c": g_c, "s": s, "h_s": h_s, "y_c": y_c, "r": r}


def _update_traces(net, step, dS_in, dS_c):
    """Eqs. 25 and 27: add step t's contribution to the traces, in place."""
    src = step["source"]
    y_in, g_c = step["y_in"], step["g_c"]
    for cv in range(net.H):
        j = net.block_of(cv)
        f_prime_in = y_in[j] * (1.0 - y_in[j])
        g_prime = net.g_prime(step["net_c"][cv])
        dS_in[cv] += g_c[cv] * f_prime_in * src
        dS_c[cv] += g_prime * y_in[j] * src


def _add_to_row(grads, unit, d_row, net):
    """Add ``d_row`` (one value per source) to the incoming weights of ``unit``."""
    D, U = net.D, net.U
    grads["weight_ih_l0"][unit] += d_row[0:D]
    grads["weight_hh_l0"][unit] += d_row[D:D + U]
    grads["bias_ih_l0"][unit] += d_row[D + U]


def _target_step_grad(net, grads, step, dS_in, dS_c, delta):
    """Truncated gradient contribution of one target step, added into ``grads``.

    ``delta`` (K,) is ``m_t * dLoss_t / dnet_k`` (for loss kind 1: ``-m_t e_k``).
    """
    H, nb = net.H, net.nb
    W = net.blocks["head.weight"]
    y_c, y_out, h_s = step["y_c"], step["y_out"], step["h_s"]

    # Output units (eqs. 19, 22): they see the cells of the same step t.
    grads["head.weight"] += np.outer(delta, y_c)
    grads["head.bias"] += delta
    if net.input_to_output:
        grads["head.weight_input"] += np.outer(delta, step["x"])

    # Error arriving at each cell output: sum_k w_{k,cv} e_k.
    dy_c = W.T @ delta

    # Output gates (eqs. 21-22): immediate term only.
    for j in range(nb):
        total = 0.0
        for v in range(net.S):
            cv = j * net.S + v
            total += h_s[cv] * dy_c[cv]
        dz_out = y_out[j] * (1.0 - y_out[j]) * total
        _add_to_row(grads, net.out_unit(j), dz_out * step["source"], net)

    # Internal-state errors (eq. 23), then input gates (eq. 26) and cells (eq. 28).
    for cv in range(H):
        j = net.block_of(cv)
        ds = y_out[j] * net.h_prime(step["s"][cv]) * dy_c[cv]
        _add_to_row(grads, net.in_unit(j), ds * dS_in[cv], net)
        _add_to_row(grads, cv, ds * dS_c[cv], net)


def _as_sequence(net, X, Y, M):
    X = np.asarray(X, dtype=np.float64).reshape(-1, net.D)
    Y = np.asarray(Y, dtype=np.float64).reshape(-1, net.K)
    M = np.asarray(M, dtype=np.float64).reshape(-1)
    if Y.shape[0] != X.shape[0] or M.shape[0] != X.shape[0]:
        raise ValueError("X, Y and mask lengths differ")
    return X, Y, M


# ----------------------------------------------------------------------------------
# Public API
# ----------------------------------------------------------------------------------


def naive_truncated_loss_grad(params, input_size, hidden_size, n_outputs, block_size,
                              loss_kind, X_list, Y_list, M_list, squashing="appendix",
                              input_to_output=False):
    """Mask-weighted mean loss and the paper's truncated gradient (batch form).

    Parameters
    ----------
    params : ndarray, shape (n_params,)
        Flat parameters of a single-layer ``lstm1997`` network (packed layout).
    input_size, hidden_size, n_outputs, block_size : int
        Network sizes.
    loss_kind : int
        One of the ``LOSS_*`` codes of :mod:`lstmforecast._layout`.
    X_list, Y_list, M_list : lists of ndarray, shapes (T_i, D), (T_i, K), (T_i,)
        Sequences (state and traces start at zero for each), targets, mask weights.
    squashing : {"appendix", "table10", "exp2", "exp2_centered"}, default="appendix"
        The reading of g and h (see ``_SQUASHING``).
    input_to_output : bool, default=False
        Whether the output units also see the input (``head.weight_input``).

    Returns
    -------
    loss : float
        ``sum mask * loss / sum mask``, the same value as ``naive.naive_loss``.
    grad : ndarray, shape (n_params,)
        Sum over sequences and target steps of the truncated contributions
        (eqs. 19-28), divided by the total mask weight.
    """
    _check_loss_kind(loss_kind)
    params = np.asarray(params, dtype=np.float64)
    net = _Net(params, input_size, hidden_size, n_outputs, block_size, squashing,
               input_to_output)
    grad = np.zeros_like(params)
    grads = unpack(grad, CELL_LSTM1997, net.D, net.H, 1, net.K, net.S,
                   input_to_output)
    if not (len(X_list) == len(Y_list) == len(M_list)):
        raise ValueError("X_list, Y_list and M_list must have the same length")
    total_weight = float(sum(np.sum(np.asarray(m, dtype=np.float64)) for m in M_list))
    if total_weight <= 0.0:
        raise ValueError("the total mask weight must be positive")

    loss = 0.0
    for X, Y, M in zip(X_list, Y_list, M_list):
        X, Y, M = _as_sequence(net, X, Y, M)
        r = np.zeros(net.U)
        s = np.zeros(net.H)
        dS_in = np.zeros((net.H, net.n_sources))
        dS_c = np.zeros((net.H, net.n_sources))
        for t in range(X.shape[0]):
            step = _forward_step(net, X[t], r, s)
            r, s = step["r"], step["s"]
            _update_traces(net, step, dS_in, dS_c)
            if M[t] > 0.0:
                step_loss, d_a = _step_loss_and_grad(net.output_net_input(step),
                                                     Y[t], loss_kind)
                loss += M[t] * step_loss
                _target_step_grad(net, grads, step, dS_in, dS_c, M[t] * d_a)
    grad /= total_weight
    return loss / total_weight, grad


def naive_truncated_online(params, input_size, hidden_size, n_outputs, block_size,
                           loss_kind, X, Y, M, learning_rate, squashing="appendix",
                           input_to_output=False):
    """One sequence of on-line truncated learning, SGD after every target step.

    At each step t with ``M[t] > 0`` the weights become
    ``params - learning_rate * g_t``, where ``g_t`` is that step's truncated
    contribution with weight ``M[t]`` (not normalised by the total mask). The
    forward pass of step t uses the weights in force after step t-1; the state and
    the traces are carried on unchanged across updates (they are not recomputed).

    Returns
    -------
    new_params : ndarray, shape (n_params,)
        A new array; ``params`` is not modified.
    """
    _check_loss_kind(loss_kind)
    params = np.array(params, dtype=np.float64)       # a private copy we update
    # (the blocks are views of params: the in-place updates below reach them)
    net = _Net(params, input_size, hidden_size, n_outputs, block_size, squashing,
               input_to_output)
    X, Y, M = _as_sequence(net, X, Y, M)

    r = np.zeros(net.U)
    s = np.zeros(net.H)
    dS_in = np.zeros((net.H, net.n_sources))
    dS_c = np.zeros((net.H, net.n_sources))
    for t in range(X.shape[0]):
        step = _forward_step(net, X[t], r, s)
        r, s = step["r"], step["s"]
        _update_traces(net, step, dS_in, dS_c)
        if M[t] > 0.0:
            _, d_a = _step_loss_and_grad(net.output_net_input(step), Y[t], loss_kind)
            g_t = np.zeros_like(params)
            grads = unpack(g_t, CELL_LSTM1997, net.D, net.H, 1, net.K, net.S,
                           input_to_output)
            _target_step_grad(net, grads, step, dS_in, dS_c, M[t] * d_a)
            params -= learning_rate * g_t               # in place: views follow
    return params


# ----------------------------------------------------------------------------------
# cell="lstm": the forget-gate traces of Gers, Schmidhuber & Cummins (2000)
# ----------------------------------------------------------------------------------


def naive_truncated_lstm_loss_grad(params, input_size, hidden_size, n_outputs,
                                   loss_kind, X_list, Y_list, M_list):
    """The truncated gradient of a single-layer ``cell="lstm"`` network.

    ``c_t = f c_{t-1} + i g`` and ``h_t = o tanh(c_t)`` (torch's equations, gates
    i, f, g, o). As in the 1997 rule, error reaches the past only through ``c``:
    ``d c_t / d w`` for the rows of ``u in {i, f, g}`` is carried forward as

    ``dC_u(t) = f_t dC_u(t-1) + (d c_t / d net_u) * source_t`` with
    ``d c / d net_i = g i (1-i)``, ``d c / d net_f = c_{t-1} f (1-f)``,
    ``d c / d net_g = i (1 - g^2)``,

    and the output gate gets its immediate term. Sources are ``[x_t, h_{t-1}, 1]``;
    the two bias vectors get the same gradient. Returns ``(loss, grad)`` normalised
    like :func:`naive_truncated_loss_grad`.
    """
    from lstmforecast._layout import CELL_LSTM

    _check_loss_kind(loss_kind)
    params = np.asarray(params, dtype=np.float64)
    D, H, K = int(input_size), int(hidden_size), int(n_outputs)
    blocks = unpack(params, CELL_LSTM, D, H, 1, K, 1)
    grad = np.zeros_like(params)
    grads = unpack(grad, CELL_LSTM, D, H, 1, K, 1)
    W_ih, W_hh = blocks["weight_ih_l0"], blocks["weight_hh_l0"]
    bias = blocks["bias_ih_l0"] + blocks["bias_hh_l0"]
    W, b = blocks["head.weight"], blocks["head.bias"]
    total_weight = float(sum(np.sum(m) for m in M_list))
    loss = 0.0
    for X, Y, M in zip(X_list, Y_list, M_list):
        h, c = np.zeros(H), np.zeros(H)
        traces = {u: np.zeros((H, D + H + 1)) for u in "ifg"}
        for t in range(X.shape[0]):
            source = np.concatenate([X[t], h, [1.0]])
            z = W_ih @ X[t] + W_hh @ h + bias
            i, f = _sigmoid(z[:H]), _sigmoid(z[H:2 * H])
            g, o = np.tanh(z[2 * H:3 * H]), _sigmoid(z[3 * H:])
            c_new = f * c + i * g
            slope = {"i": g * i * (1 - i), "f": c * f * (1 - f), "g": i * (1 - g * g)}
            for u in "ifg":
                traces[u] = f[:, None] * traces[u] + np.outer(slope[u], source)
            c = c_new
            h = o * np.tanh(c)
            if M[t] == 0:
                continue
            step_loss, d_a = _step_loss_and_grad(W @ h + b, Y[t], loss_kind)
            loss += M[t] * step_loss
            d_a = M[t] * d_a
            grads["head.weight"] += np.outer(d_a, h)
            grads["head.bias"] += d_a
            dh = W.T @ d_a
            ds = dh * o * (1 - np.tanh(c) ** 2)
            rows = {"i": slice(0, H), "f": slice(H, 2 * H), "g": slice(2 * H, 3 * H)}
            d_rows = np.zeros((4 * H, D + H + 1))
            for u in "ifg":
                d_rows[rows[u]] = ds[:, None] * traces[u]
            d_rows[3 * H:] = np.outer(dh * np.tanh(c) * o * (1 - o), source)
            grads["weight_ih_l0"] += d_rows[:, :D]
            grads["weight_hh_l0"] += d_rows[:, D:D + H]
            grads["bias_ih_l0"] += d_rows[:, -1]
            grads["bias_hh_l0"] += d_rows[:, -1]
    return loss / total_weight, grad / total_weight
