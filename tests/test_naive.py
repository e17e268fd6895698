"""Checks of the NumPy reference in ``tests/naive.py`` itself.

* The hand-written BPTT gradient agrees with central finite differences.
* The lstm1997 forward pass agrees with the paper's formulas written out by hand.
* Carrying the final state into a continuation reproduces the unsplit sequence.
* For ``cell="lstm"``, outputs, final states and gradients agree with torch.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstmforecast._layout import (
    CELL_LSTM,
    CELL_LSTM1997,
    CELL_LSTM1997_EXP2,
    CELL_LSTM1997_EXP2_CENTERED,
    CELL_LSTM1997_TABLE10,
    LOSS_LOGISTIC_XENT,
    LOSS_SIGMOID_SQUARED,
    LOSS_SOFTMAX_XENT,
    LOSS_SQUARED,
    block_names,
    pack,
    recurrent_size,
    state_size,
    unpack,
)

try:
    from naive import n_params, naive_forward, naive_loss, naive_loss_grad
except ImportError:  # tests/ imported as a package
    from tests.naive import n_params, naive_forward, naive_loss, naive_loss_grad

LOSS_KINDS = [LOSS_SQUARED, LOSS_SIGMOID_SQUARED, LOSS_SOFTMAX_XENT, LOSS_LOGISTIC_XENT]
EPS = 1e-6
RTOL = 1e-6


def _targets(rng, T, n_outputs, loss_kind):
    """Targets suited to ``loss_kind``."""
    if loss_kind == LOSS_SQUARED:
        return rng.normal(size=(T, n_outputs))
    if loss_kind == LOSS_SIGMOID_SQUARED:
        return rng.uniform(size=(T, n_outputs))
    if loss_kind == LOSS_SOFTMAX_XENT:
        return np.eye(n_outputs)[rng.integers(n_outputs, size=T)]
    return rng.integers(0, 2, size=(T, n_outputs)).astype(np.float64)


def _problem(seed, cell, input_size, hidden_size, num_layers, n_outputs, block_size,
             loss_kind, lengths=(5, 3, 6)):
    """Random parameters, variable-length data, masks with zeros, nonzero state0."""
    rng = np.random.default_rng(seed)
    n = n_params(cell, input_size, hidden_size, num_layers, n_outputs, block_size)
    params = rng.normal(size=n)
    X_list = [rng.normal(size=(T, input_size)) for T in lengths]
    Y_list = [_targets(rng, T, n_outputs, loss_kind) for T in lengths]
    M_list = []
    for T in lengths:
        m = rng.uniform(0.5, 2.0, size=T)
        m[rng.uniform(size=T) < 0.3] = 0.0
        if T:
            m[-1] = 1.0                        # every sequence counts somewhere
        M_list.append(m)
    shape = (len(lengths), num_layers, state_size(cell, hidden_size, block_size))
    state0 = rng.normal(scale=0.5, size=shape)
    R = recurrent_size(cell, hidden_size, block_size)
    if cell != CELL_LSTM:                      # gate activations live in (0, 1)
        state0[:, :, hidden_size:R] = rng.uniform(size=shape[:2] + (R - hidden_size,))
    return params, X_list, Y_list, M_list, state0


def _central_differences(f, params, eps=EPS):
    grad = np.empty_like(params)
    for p in range(params.size):
        plus, minus = params.copy(), params.copy()
        plus[p] += eps
        minus[p] -= eps
        grad[p] = (f(plus) - f(minus)) / (2.0 * eps)
    return grad


def _rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-8)


GRAD_CASES = (
    [(CELL_LSTM, 4, 1, L, k) for L in (1, 2) for k in LOSS_KINDS]
    + [(CELL_LSTM1997, H, S, L, k)
       for H, S in ((3, 1), (4, 2)) for L in (1, 2) for k in LOSS_KINDS]
    + [(cell, 4, 2, L, k) for cell in (CELL_LSTM1997_TABLE10, CELL_LSTM1997_EXP2,
                                       CELL_LSTM1997_EXP2_CENTERED)
       for L in (1, 2) for k in (LOSS_SQUARED, LOSS_SIGMOID_SQUARED)]
)
CELL_NAMES = {CELL_LSTM: "lstm", CELL_LSTM1997: "lstm1997",
              CELL_LSTM1997_TABLE10: "lstm1997table10",
              CELL_LSTM1997_EXP2: "lstm1997exp2",
              CELL_LSTM1997_EXP2_CENTERED: "lstm1997exp2centered"}


@pytest.mark.parametrize(
    "cell, hidden_size, block_size, num_layers, loss_kind", GRAD_CASES,
    ids=[f"{CELL_NAMES[c]}-H{H}-S{S}-L{L}-loss{k}" for c, H, S, L, k in GRAD_CASES])
def test_grad_matches_finite_differences(cell, hidden_size, block_size, num_layers,
                                         loss_kind):
    input_size, n_outputs = 2, 3
    sizes = (cell, input_size, hidden_size, num_layers, n_outputs, block_size,
             loss_kind)
    params, X_list, Y_list, M_list, state0 = _problem(7, *sizes)

    loss, grad = naive_loss_grad(params, *sizes, X_list, Y_list, M_list, state0)
    assert loss == pytest.approx(
        naive_loss(params, *sizes, X_list, Y_list, M_list, state0), rel=1e-14)
    numeric = _central_differences(
        lambda p: naive_loss(p, *sizes, X_list, Y_list, M_list, state0), params)

    shape_args = (cell, input_size, hidden_size, num_layers, n_outputs, block_size)
    exact_blocks = unpack(grad, *shape_args)
    numeric_blocks = unpack(numeric, *shape_args)
    for name in block_names(cell, num_layers):
        a, b = exact_blocks[name], numeric_blocks[name]
        assert np.linalg.norm(a) > 1e-6, f"{name}: gradient vanishes, weak test"
        assert _rel_err(a, b) <= RTOL, f"{name}: relative error {_rel_err(a, b):.3g}"


@pytest.mark.parametrize("cell", [CELL_LSTM, CELL_LSTM1997_EXP2],
                         ids=["lstm", "lstm1997exp2"])
def test_head_that_sees_the_input_grad_matches_finite_differences(cell):
    """``input_to_output``: the head's extra weights ``head.weight_input`` (after
    ``head.bias``) and everything below them."""
    input_size, n_outputs, block_size = 2, 3, 1 if cell == CELL_LSTM else 2
    sizes = (cell, input_size, 4, 1, n_outputs, block_size, LOSS_SIGMOID_SQUARED)
    params, X_list, Y_list, M_list, state0 = _problem(9, *sizes)
    params = np.concatenate([params, np.random.default_rng(10).normal(
        size=n_outputs * input_size)])
    loss, grad = naive_loss_grad(params, *sizes, X_list, Y_list, M_list, state0,
                                 input_to_output=True)
    numeric = _central_differences(
        lambda p: naive_loss(p, *sizes, X_list, Y_list, M_list, state0,
                             input_to_output=True), params)
    shape_args = sizes[:-1] + (True,)
    exact_blocks = unpack(grad, *shape_args)
    numeric_blocks = unpack(numeric, *shape_args)
    for name in block_names(cell, 1, input_to_output=True):
        a, b = exact_blocks[name], numeric_blocks[name]
        assert np.linalg.norm(a) > 1e-6, f"{name}: gradient vanishes, weak test"
        assert _rel_err(a, b) <= RTOL, f"{name}: relative error {_rel_err(a, b):.3g}"


@pytest.mark.parametrize("loss_kind", LOSS_KINDS)
def test_masked_steps_do_not_count(loss_kind):
    sizes = (CELL_LSTM1997, 2, 4, 2, 3, 2, loss_kind)
    params, X_list, Y_list, M_list, state0 = _problem(3, *sizes)
    rng = np.random.default_rng(11)
    Y_other = []
    for Y, M in zip(Y_list, M_list, strict=True):
        Y2 = Y.copy()
        Y2[M == 0] = _targets(rng, int(np.sum(M == 0)), Y.shape[1], loss_kind)
        Y_other.append(Y2)
    a = naive_loss_grad(params, *sizes, X_list, Y_list, M_list, state0)
    b = naive_loss_grad(params, *sizes, X_list, Y_other, M_list, state0)
    assert a[0] == pytest.approx(b[0], rel=1e-14)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-13, atol=1e-15)


@pytest.mark.parametrize("cell, block_size", [(CELL_LSTM, 1), (CELL_LSTM1997, 1),
                                              (CELL_LSTM1997, 2)])
@pytest.mark.parametrize("loss_kind", [LOSS_SQUARED, LOSS_SOFTMAX_XENT])
def test_state_carry_reproduces_unsplit_sequence(cell, block_size, loss_kind):
    sizes = (cell, 2, 4, 2, 3, block_size, loss_kind)
    params, X_list, _, _, state0 = _problem(5, *sizes, lengths=(6, 4, 5))
    out_full, final_full = naive_forward(params, *sizes, X_list, state0)
    split = 2
    out_a, mid = naive_forward(params, *sizes, [X[:split] for X in X_list], state0)
    out_b, final_b = naive_forward(params, *sizes, [X[split:] for X in X_list], mid)
    for full, a, b in zip(out_full, out_a, out_b, strict=True):
        np.testing.assert_allclose(np.concatenate([a, b]), full, rtol=1e-13, atol=0)
    np.testing.assert_allclose(final_b, final_full, rtol=1e-13, atol=0)
    if loss_kind == LOSS_SOFTMAX_XENT:
        for out in out_full:
            np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-14)


def test_zero_length_sequence_keeps_state0():
    sizes = (CELL_LSTM1997, 2, 4, 2, 3, 2, LOSS_SQUARED)
    params, X_list, _, _, state0 = _problem(9, *sizes, lengths=(3, 0))
    outputs, final = naive_forward(params, *sizes, X_list, state0)
    assert outputs[1].shape == (0, 3)
    np.testing.assert_array_equal(final[1], state0[1])


# Gate unit indices of each cell for H = 2: one block of two cells, or two blocks.
HAND_CASES = {
    "one-block-of-2": (2, [2, 2], [3, 3]),
    "two-blocks-of-1": (1, [2, 3], [4, 5]),
}


@pytest.mark.parametrize("case", sorted(HAND_CASES))
def test_lstm1997_forward_by_hand(case):
    """The paper's eqs. 3-9 with logistic squashers g = 4f - 2, h = 2f - 1."""
    block_size, in_of, out_of = HAND_CASES[case]
    H, input_size, n_outputs = 2, 1, 1
    n_units = H + 2 * (H // block_size)
    rng = np.random.default_rng(21)
    blocks = {
        "weight_ih_l0": rng.normal(size=(n_units, input_size)),
        "weight_hh_l0": rng.normal(size=(n_units, n_units)),
        "bias_ih_l0": rng.normal(size=n_units),
        "head.weight": rng.normal(size=(n_outputs, H)),
        "head.bias": rng.normal(size=n_outputs),
    }
    args = (CELL_LSTM1997, input_size, H, 1, n_outputs, block_size)
    params = pack(blocks, *args)
    xs = rng.normal(size=4)

    def f(x):
        return 1.0 / (1.0 + np.exp(-x))

    y = np.zeros(n_units)                      # activations of all units at t - 1
    s = np.zeros(H)
    expected = []
    for x in xs:
        net = [blocks["weight_ih_l0"][u, 0] * x + blocks["bias_ih_l0"][u]
               + sum(blocks["weight_hh_l0"][u, v] * y[v] for v in range(n_units))
               for u in range(n_units)]
        y_new = np.zeros(n_units)
        for gate in set(in_of) | set(out_of):
            y_new[gate] = f(net[gate])
        for v in range(H):
            s[v] = s[v] + y_new[in_of[v]] * (4.0 * f(net[v]) - 2.0)
            y_new[v] = y_new[out_of[v]] * (2.0 * f(s[v]) - 1.0)
        y = y_new
        expected.append(blocks["head.weight"][0, 0] * y[0]
                        + blocks["head.weight"][0, 1] * y[1] + blocks["head.bias"][0])

    outputs, final = naive_forward(params, *args, LOSS_SQUARED, [xs[:, None]])
    np.testing.assert_allclose(outputs[0][:, 0], expected, rtol=1e-12)
    np.testing.assert_allclose(final[0, 0], np.concatenate([y, s]), rtol=1e-12)


@pytest.mark.parametrize("num_layers", [1, 2])
def test_lstm_matches_torch(num_layers):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed; cannot compare with torch.nn.LSTM")
    input_size, H, n_outputs = 3, 4, 2
    sizes = (CELL_LSTM, input_size, H, num_layers, n_outputs, 1, LOSS_SQUARED)
    params, X_list, Y_list, M_list, state0 = _problem(13, *sizes)
    shape_args = sizes[:-1]
    blocks = unpack(params, *shape_args)

    lstm = torch.nn.LSTM(input_size, H, num_layers=num_layers, batch_first=True,
                         dtype=torch.float64)
    head = torch.nn.Linear(H, n_outputs, dtype=torch.float64)
    lstm.load_state_dict({name: torch.tensor(blocks[name]) for name in
                          block_names(CELL_LSTM, num_layers)[:-2]})
    head.load_state_dict({"weight": torch.tensor(blocks["head.weight"]),
                          "bias": torch.tensor(blocks["head.bias"])})

    outputs, final = naive_forward(params, *sizes, X_list, state0)
    total = sum(M.sum() for M in M_list)
    loss_t = 0.0
    for n, (X, Y, M) in enumerate(zip(X_list, Y_list, M_list, strict=True)):
        h0 = torch.tensor(state0[n, :, :H][:, None, :].copy())
        c0 = torch.tensor(state0[n, :, H:][:, None, :].copy())
        seq, (h_n, c_n) = lstm(torch.tensor(X)[None], (h0, c0))
        out = head(seq[0])
        np.testing.assert_allclose(outputs[n], out.detach().numpy(), rtol=1e-12,
                                   atol=1e-14)
        np.testing.assert_allclose(final[n, :, :H], h_n[:, 0].detach().numpy(),
                                   rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(final[n, :, H:], c_n[:, 0].detach().numpy(),
                                   rtol=1e-12, atol=1e-14)
        step = 0.5 * ((out - torch.tensor(Y)) ** 2).sum(dim=1)
        loss_t = loss_t + (torch.tensor(M) * step).sum() / total
    loss_t.backward()

    loss, grad = naive_loss_grad(params, *sizes, X_list, Y_list, M_list, state0)
    assert loss == pytest.approx(loss_t.item(), rel=1e-12)
    torch_grads = {name: p.grad.numpy() for name, p in lstm.named_parameters()}
    torch_grads["head.weight"] = head.weight.grad.numpy()
    torch_grads["head.bias"] = head.bias.grad.numpy()
    for name, g in unpack(grad, *shape_args).items():
        np.testing.assert_allclose(g, torch_grads[name], rtol=1e-10, atol=1e-14,
                                   err_msg=name)
