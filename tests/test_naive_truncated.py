"""Checks of the truncated-gradient oracle in ``tests/naive_truncated.py`` itself.

* The loss is the full oracle's loss; the head gradient is always exact.
* At T = 1 (zero initial state) there is nothing to truncate: truncated == BPTT.
* With ``weight_hh_l0 = 0`` the truncation drops nothing either (every dropped
  derivative ``d net_u(t) / d y^m(t-1)`` is a recurrent weight, here 0), so the
  whole gradient, ``weight_hh_l0`` included, equals BPTT and finite differences.
* In general the traces of eqs. 25-28 equal BPTT in which the error is stopped at
  ``r_{t-1}`` and carried back only through the carousel ``s`` (an independent
  derivation built from ``naive``'s backward step).
* With recurrent weights the result differs from BPTT but stays well aligned.
* The on-line form matches the batch form for a single target and to first order
  in the learning rate otherwise.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstmforecast._layout import (
    CELL_LSTM1997,
    CELL_LSTM1997_TABLE10,
    LOSS_LOGISTIC_XENT,
    LOSS_SIGMOID_SQUARED,
    LOSS_SOFTMAX_XENT,
    LOSS_SQUARED,
    unpack,
)

try:
    import naive
    from naive import n_params, naive_loss, naive_loss_grad
    from naive_truncated import naive_truncated_loss_grad, naive_truncated_online
except ImportError:  # tests/ imported as a package
    from tests import naive
    from tests.naive import n_params, naive_loss, naive_loss_grad
    from tests.naive_truncated import naive_truncated_loss_grad, naive_truncated_online

LOSS_KINDS = [LOSS_SQUARED, LOSS_SIGMOID_SQUARED, LOSS_SOFTMAX_XENT, LOSS_LOGISTIC_XENT]
BLOCK_SIZES = [1, 2]
D, H, K = 3, 4, 2
ATOL = 1e-12


def _targets(rng, T, loss_kind):
    if loss_kind == LOSS_SQUARED:
        return rng.normal(size=(T, K))
    if loss_kind == LOSS_SIGMOID_SQUARED:
        return rng.uniform(size=(T, K))
    if loss_kind == LOSS_SOFTMAX_XENT:
        return np.eye(K)[rng.integers(K, size=T)]
    return rng.integers(0, 2, size=(T, K)).astype(np.float64)


def _problem(seed, block_size, loss_kind, lengths=(5, 3, 7), scale=0.5,
             zero_hh=False, zero_mask=True):
    """Uniform(-scale, scale) weights, variable lengths, masks with some zeros."""
    rng = np.random.default_rng(seed)
    params = rng.uniform(-scale, scale,
                         size=n_params(CELL_LSTM1997, D, H, 1, K, block_size))
    if zero_hh:
        _blocks(params, block_size)["weight_hh_l0"][:] = 0.0
    X_list = [rng.normal(size=(T, D)) for T in lengths]
    Y_list = [_targets(rng, T, loss_kind) for T in lengths]
    M_list = []
    for T in lengths:
        m = rng.uniform(0.5, 2.0, size=T)
        if zero_mask:
            m[rng.uniform(size=T) < 0.3] = 0.0
        m[-1] = max(m[-1], 0.5)              # every sequence has a target
        M_list.append(m)
    return params, X_list, Y_list, M_list


def _blocks(vec, block_size):
    return unpack(vec, CELL_LSTM1997, D, H, 1, K, block_size)


def _full(params, block_size, loss_kind, X_list, Y_list, M_list):
    return naive_loss_grad(params, CELL_LSTM1997, D, H, 1, K, block_size, loss_kind,
                           X_list, Y_list, M_list)


def _trunc(params, block_size, loss_kind, X_list, Y_list, M_list):
    return naive_truncated_loss_grad(params, D, H, K, block_size, loss_kind, X_list,
                                     Y_list, M_list)


def _cosine(a, b):
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


def _stopped_bptt_grad(params, block_size, loss_kind, X_list, Y_list, M_list):
    """BPTT with the error stopped at ``r_{t-1}``, carried back only through ``s``.

    Built from ``naive``'s forward and its 1997 backward step, discarding the
    ``dr_prev`` it returns. Summing the carried ``ds`` over later steps is the same
    sum as the forward traces of eqs. 25-28, so this must equal the oracle.
    """
    params = np.asarray(params, dtype=np.float64)
    blocks = _blocks(params, block_size)
    grad = np.zeros_like(params)
    grads = _blocks(grad, block_size)
    w = {"w_ih": blocks["weight_ih_l0"], "w_hh": blocks["weight_hh_l0"],
         "b_ih": blocks["bias_ih_l0"]}
    gw = {"w_ih": grads["weight_ih_l0"], "w_hh": grads["weight_hh_l0"],
          "b_ih": grads["bias_ih_l0"]}
    U = H + 2 * (H // block_size)
    total = sum(float(np.sum(m)) for m in M_list)
    Wh, bh = blocks["head.weight"], blocks["head.bias"]
    for X, Y, M in zip(X_list, Y_list, M_list):
        state0 = np.zeros((1, U + H))
        top, _, caches = naive._forward_sequence(blocks, CELL_LSTM1997, H, 1,
                                                 block_size, X, state0)
        ds = np.zeros(H)
        for t in reversed(range(len(X))):
            _, d_a = naive._step_loss_and_grad(Wh @ top[t] + bh, Y[t], loss_kind)
            d_a = d_a * M[t] / total
            grads["head.weight"] += np.outer(d_a, top[t])
            grads["head.bias"] += d_a
            dr = np.zeros(U)
            dr[:H] = Wh.T @ d_a
            _, _, ds = naive._lstm1997_step_back(w, gw, caches[0][t], dr, ds, H,
                                                 block_size)
    return grad


def _loss_of(params, block_size, loss_kind, X_list, Y_list, M_list):
    return naive_loss(params, CELL_LSTM1997, D, H, 1, K, block_size, loss_kind,
                      X_list, Y_list, M_list)


# ----------------------------------------------------------------------------------
# Batch form
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_loss_and_head_gradient_match_full_oracle(block_size, loss_kind):
    problem = _problem(1, block_size, loss_kind)
    loss_full, g_full = _full(problem[0], block_size, loss_kind, *problem[1:])
    loss_tr, g_tr = _trunc(problem[0], block_size, loss_kind, *problem[1:])
    assert loss_tr == pytest.approx(loss_full, rel=1e-13, abs=1e-15)
    bf, bt = _blocks(g_full, block_size), _blocks(g_tr, block_size)
    for name in ("head.weight", "head.bias"):
        np.testing.assert_allclose(bt[name], bf[name], rtol=1e-12, atol=ATOL)


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_length_one_equals_full_gradient(block_size, loss_kind):
    params, X_list, Y_list, M_list = _problem(2, block_size, loss_kind,
                                              lengths=(1, 1, 1), zero_mask=False)
    _, g_full = _full(params, block_size, loss_kind, X_list, Y_list, M_list)
    _, g_tr = _trunc(params, block_size, loss_kind, X_list, Y_list, M_list)
    np.testing.assert_allclose(g_tr, g_full, rtol=1e-12, atol=ATOL)
    # r_0 = 0, so the recurrent weights get nothing at all
    assert np.all(_blocks(g_tr, block_size)["weight_hh_l0"] == 0.0)


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_zero_recurrent_weights_truncation_is_exact(block_size, loss_kind):
    """W_hh = 0: every dropped term d net(t)/d r(t-1) = W_hh is exactly zero, so
    the truncated gradient is the true gradient for *all* blocks, W_hh included
    (its gradient sum_t dz(t) r(t-1)^T is nonzero, r(t-1) treated as a constant
    being exact to first order because W_hh = 0)."""
    params, X_list, Y_list, M_list = _problem(3, block_size, loss_kind,
                                              zero_hh=True)
    _, g_full = _full(params, block_size, loss_kind, X_list, Y_list, M_list)
    _, g_tr = _trunc(params, block_size, loss_kind, X_list, Y_list, M_list)
    bf, bt = _blocks(g_full, block_size), _blocks(g_tr, block_size)
    for name in bf:
        np.testing.assert_allclose(bt[name], bf[name], rtol=1e-10, atol=ATOL,
                                   err_msg=name)
    assert np.abs(bt["weight_hh_l0"]).max() > 1e-3      # not trivially zero
    # and the true gradient it is: central finite differences of the loss
    eps = 1e-6
    for i in range(params.size):
        p_plus, p_minus = params.copy(), params.copy()
        p_plus[i] += eps
        p_minus[i] -= eps
        fd = (_loss_of(p_plus, block_size, loss_kind, X_list, Y_list, M_list)
              - _loss_of(p_minus, block_size, loss_kind, X_list, Y_list, M_list))
        assert g_tr[i] == pytest.approx(fd / (2 * eps), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("loss_kind", [LOSS_SQUARED, LOSS_SIGMOID_SQUARED])
def test_table10_squashing_zero_recurrent_weights_truncation_is_exact(loss_kind):
    """Table 10's squashing (g in [-1, 1], h in [-2, 2]): with ``W_hh = 0`` the
    truncated oracle equals the full one for that cell and finite differences."""
    # (large weights: for small activations the two readings nearly agree, as
    # a_g * a_h = 2 in both)
    params, X_list, Y_list, M_list = _problem(4, 2, loss_kind, zero_hh=True,
                                              scale=2.0)
    g_tr = naive_truncated_loss_grad(params, D, H, K, 2, loss_kind, X_list, Y_list,
                                     M_list, squashing="table10")[1]
    g_full = naive_loss_grad(params, CELL_LSTM1997_TABLE10, D, H, 1, K, 2, loss_kind,
                             X_list, Y_list, M_list)[1]
    g_appendix = _trunc(params, 2, loss_kind, X_list, Y_list, M_list)[1]
    np.testing.assert_allclose(g_tr, g_full, rtol=1e-10, atol=ATOL)
    # the reading matters
    assert np.linalg.norm(g_tr - g_appendix) > 0.2 * np.linalg.norm(g_tr)
    eps = 1e-6
    for i in range(params.size):
        p_plus, p_minus = params.copy(), params.copy()
        p_plus[i] += eps
        p_minus[i] -= eps
        fd = (naive_loss(p_plus, CELL_LSTM1997_TABLE10, D, H, 1, K, 2, loss_kind,
                         X_list, Y_list, M_list)
              - naive_loss(p_minus, CELL_LSTM1997_TABLE10, D, H, 1, K, 2, loss_kind,
                           X_list, Y_list, M_list))
        assert g_tr[i] == pytest.approx(fd / (2 * eps), rel=1e-5, abs=1e-8)


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_traces_equal_bptt_stopped_at_recurrent_inputs(block_size, loss_kind):
    params, X_list, Y_list, M_list = _problem(4, block_size, loss_kind, scale=1.0)
    _, g_tr = _trunc(params, block_size, loss_kind, X_list, Y_list, M_list)
    g_ref = _stopped_bptt_grad(params, block_size, loss_kind, X_list, Y_list,
                               M_list)
    np.testing.assert_allclose(g_tr, g_ref, rtol=1e-10, atol=ATOL)


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_recurrent_weights_truncated_differs_but_aligned(block_size, loss_kind):
    """T >= 3 with W_hh != 0: not BPTT, yet well aligned with it.

    Over 50 seeds at this scale (uniform +-0.5, T = 8) the cosine of the whole
    gradients was >= 0.978 and that of the layer blocks alone >= 0.93, with a
    relative difference of the layer blocks >= 0.07; the bounds below keep a
    margin.
    """
    params, X_list, Y_list, M_list = _problem(5, block_size, loss_kind,
                                              lengths=(8, 6, 3))
    _, g_full = _full(params, block_size, loss_kind, X_list, Y_list, M_list)
    _, g_tr = _trunc(params, block_size, loss_kind, X_list, Y_list, M_list)
    n_head = K * H + K
    layer_full, layer_tr = g_full[:-n_head], g_tr[:-n_head]
    assert np.linalg.norm(layer_tr - layer_full) > 0.01 * np.linalg.norm(layer_full)
    assert _cosine(g_tr, g_full) > 0.9
    assert _cosine(layer_tr, layer_full) > 0.8


def test_sigmoid_squared_delta_is_minus_paper_error():
    """Loss kind 1, one output, one cell, T = 1: hand-written eqs. 19, 21-23, 25-28."""
    rng = np.random.default_rng(6)
    params = rng.uniform(-1, 1, size=n_params(CELL_LSTM1997, 1, 1, 1, 1, 1))
    x, target = np.array([0.7]), np.array([0.3])
    _, g = naive_truncated_loss_grad(params, 1, 1, 1, 1, LOSS_SIGMOID_SQUARED,
                                     [x[None]], [target[None]], [np.ones(1)])
    b = unpack(params, CELL_LSTM1997, 1, 1, 1, 1, 1)
    gb = unpack(g, CELL_LSTM1997, 1, 1, 1, 1, 1)
    f = lambda z: 1.0 / (1.0 + np.exp(-z))  # noqa: E731
    net = b["weight_ih_l0"][:, 0] * x[0] + b["bias_ih_l0"]     # r_0 = 0
    y_in, y_out = f(net[1]), f(net[2])
    gc = 4.0 * f(net[0]) - 2.0
    s = y_in * gc
    hs = 2.0 * f(s) - 1.0
    yc = y_out * hs
    yk = f(b["head.weight"][0, 0] * yc + b["head.bias"][0])
    e_k = yk * (1 - yk) * (target[0] - yk)                      # eq. 19
    w_kc = b["head.weight"][0, 0]
    e_out = y_out * (1 - y_out) * hs * w_kc * e_k               # eq. 21
    e_s = y_out * 0.5 * (1 - hs**2) * w_kc * e_k                # eq. 23
    dS_in = gc * y_in * (1 - y_in)                              # eq. 25, y^m = 1
    dS_c = (1 - (gc / 2) ** 2) * y_in                           # eq. 27, y^m = 1
    # gradient = -(the paper's Delta w / alpha)
    assert gb["head.bias"][0] == pytest.approx(-e_k, rel=1e-12)
    assert gb["head.weight"][0, 0] == pytest.approx(-e_k * yc, rel=1e-12)
    assert gb["bias_ih_l0"][2] == pytest.approx(-e_out, rel=1e-12)
    assert gb["bias_ih_l0"][1] == pytest.approx(-e_s * dS_in, rel=1e-12)
    assert gb["bias_ih_l0"][0] == pytest.approx(-e_s * dS_c, rel=1e-12)
    assert gb["weight_ih_l0"][0, 0] == pytest.approx(-e_s * dS_c * x[0], rel=1e-12)


# ----------------------------------------------------------------------------------
# On-line form
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
@pytest.mark.parametrize("weight", [1.0, 1.7])
def test_online_single_final_target_is_one_batch_step(block_size, loss_kind, weight):
    params, X_list, Y_list, _ = _problem(7, block_size, loss_kind, lengths=(6,))
    X, Y = X_list[0], Y_list[0]
    M = np.zeros(len(X))
    M[-1] = weight
    lr = 0.3
    before = params.copy()
    new = naive_truncated_online(params, D, H, K, block_size, loss_kind, X, Y, M, lr)
    np.testing.assert_array_equal(params, before)          # input left alone
    _, g = _trunc(params, block_size, loss_kind, [X], [Y], [M])
    # the batch gradient is normalised by the total mask weight, the on-line one not
    np.testing.assert_allclose(new, params - lr * weight * g, rtol=1e-12, atol=ATOL)


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
@pytest.mark.parametrize("block_size", BLOCK_SIZES)
def test_online_many_targets_first_order_in_learning_rate(block_size, loss_kind):
    """Updates after every target step: equal to one batch step up to O(lr^2),
    and visibly different from it at a finite learning rate."""
    params, X_list, Y_list, M_list = _problem(8, block_size, loss_kind,
                                              lengths=(7,))
    X, Y, M = X_list[0], Y_list[0], M_list[0]
    assert np.count_nonzero(M) >= 3
    _, g = _trunc(params, block_size, loss_kind, [X], [Y], [M])
    batch_dir = -float(np.sum(M)) * g

    def gap(lr):
        new = naive_truncated_online(params, D, H, K, block_size, loss_kind, X, Y, M,
                                     lr)
        return np.linalg.norm(new - (params + lr * batch_dir))

    np.testing.assert_array_equal(
        naive_truncated_online(params, D, H, K, block_size, loss_kind, X, Y, M, 0.0),
        params)
    gap_small, gap_smaller = gap(1e-3), gap(1e-4)
    # second order: ten times smaller lr, about a hundred times smaller gap
    assert 50.0 < gap_small / gap_smaller < 200.0
    assert gap(1.0) > 1e-3 * np.linalg.norm(batch_dir)
