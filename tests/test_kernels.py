"""The Numba CPU kernels, optimizers and training loop against the NumPy reference.

* ``loss_grad`` and ``forward`` (float64) agree with ``tests/naive.py`` for both
  cells, one and two layers, every loss, variable lengths, masks with zeros, zero and
  nonzero initial states and mini-batches given by ``seq_index``.
* The kernel's gradient agrees with central finite differences of its own loss.
* The float32 kernels agree with the float64 ones.
* Chunking: several chunks of ``LSTMF_LANES`` sequences still give the reference result,
  on both the serial and the parallel branch; results are bitwise reproducible,
  also across thread counts (in fresh interpreters).
* ``train_batches``: one SGD step with L2, frozen parameters and clipping, and the
  handling of a diverging run.
* ``sgd_step`` / ``adam_step`` against hand-computed values (and torch if present).

Every array handed to a kernel is C-contiguous with the dtype the package itself
uses, so each kernel is compiled (or loaded from Numba's cache) only for float64 and
float32.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from lstmforecast import _kernels, config
from lstmforecast._kernels import forward, loss_grad
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
    make_layout,
    recurrent_size,
    state_size,
    unpack,
)
from lstmforecast._optimizers import (
    OPT_SGD,
    adam_step,
    make_hyper,
    sgd_step,
)
from lstmforecast._training import train_batches, train_sequences

try:
    from naive import n_params, naive_forward, naive_loss_grad
except ImportError:  # tests/ imported as a package
    from tests.naive import n_params, naive_forward, naive_loss_grad

ROOT = Path(__file__).resolve().parent.parent

LOSS_KINDS = [LOSS_SQUARED, LOSS_SIGMOID_SQUARED, LOSS_SOFTMAX_XENT, LOSS_LOGISTIC_XENT]
LOSS_NAMES = {LOSS_SQUARED: "sq", LOSS_SIGMOID_SQUARED: "sigsq",
              LOSS_SOFTMAX_XENT: "softmax", LOSS_LOGISTIC_XENT: "logistic"}

# (cell, hidden_size, block_size); CELL_LSTM1997_TABLE10 and CELL_LSTM1997_EXP2
# (and _CENTERED) are the 1997 cell with Table 10's squashing ranges and with Exp.
# 2's squashings
CELLS = [(CELL_LSTM, 3, 1), (CELL_LSTM1997, 3, 1), (CELL_LSTM1997, 4, 2),
         (CELL_LSTM1997_TABLE10, 4, 2), (CELL_LSTM1997_EXP2, 4, 2),
         (CELL_LSTM1997_EXP2_CENTERED, 4, 2)]
CELL_NAMES = {CELL_LSTM: "lstm", CELL_LSTM1997: "lstm1997",
              CELL_LSTM1997_TABLE10: "lstm1997table10",
              CELL_LSTM1997_EXP2: "lstm1997exp2",
              CELL_LSTM1997_EXP2_CENTERED: "lstm1997exp2centered"}


def _cell_id(cell, hidden_size, block_size):
    return f"{CELL_NAMES[cell]}-H{hidden_size}-S{block_size}"


# ----------------------------------------------------------------------------------
# Problem construction
# ----------------------------------------------------------------------------------


class Problem:
    """A random network and data set, as lists (for naive) and padded arrays."""

    def __init__(self, seed, cell, input_size, hidden_size, num_layers, n_outputs,
                 block_size, loss_kind, lengths, param_scale=1.0,
                 zero_mask_prob=0.3, input_to_output=False):
        rng = np.random.default_rng(seed)
        self.cell, self.input_size, self.hidden_size = cell, input_size, hidden_size
        self.num_layers, self.n_outputs, self.block_size = (num_layers, n_outputs,
                                                            block_size)
        self.loss_kind = loss_kind
        self.input_to_output = input_to_output
        self.shape_args = (cell, input_size, hidden_size, num_layers, n_outputs,
                           block_size, input_to_output)
        self.sizes = self.shape_args[:-1] + (loss_kind,)
        self.layout, n = make_layout(*self.shape_args)
        assert n == n_params(*self.shape_args)
        self.params = rng.normal(scale=param_scale, size=n)
        self.X_list = [rng.normal(size=(T, input_size)) for T in lengths]
        self.Y_list = [_targets(rng, T, n_outputs, loss_kind) for T in lengths]
        self.M_list = []
        for T in lengths:
            m = rng.uniform(0.5, 2.0, size=T)
            m[rng.uniform(size=T) < zero_mask_prob] = 0.0
            m[-1] = 1.0                            # every sequence counts somewhere
            self.M_list.append(m)
        S = state_size(cell, hidden_size, block_size)
        R = recurrent_size(cell, hidden_size, block_size)
        state0 = rng.normal(scale=0.5, size=(len(lengths), num_layers, S))
        if cell != CELL_LSTM:                      # gate activations live in (0, 1)
            state0[:, :, hidden_size:R] = rng.uniform(size=(len(lengths), num_layers,
                                                            R - hidden_size))
        self.state0 = state0
        # padded arrays for the kernels
        N, T_max = len(lengths), max(lengths)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.X = np.zeros((N, T_max, input_size))
        self.Y = np.zeros((N, T_max, n_outputs))
        self.mask = np.zeros((N, T_max))
        for b, T in enumerate(lengths):
            self.X[b, :T] = self.X_list[b]
            self.Y[b, :T] = self.Y_list[b]
            self.mask[b, :T] = self.M_list[b]
        self.no_state = np.zeros((0, num_layers, S))
        # forward runs the sequences in this order (not the rows' own)
        self.order = rng.permutation(N).astype(np.int64)

    @property
    def n_seq(self):
        return len(self.X_list)

    def kernel_state0(self, with_state0, dtype=np.float64):
        arr = self.state0 if with_state0 else self.no_state
        return np.ascontiguousarray(arr, dtype=dtype)

    def kernel_loss_grad(self, params=None, seq_index=None, with_state0=True,
                         dtype=np.float64):
        params = self.params if params is None else params
        if seq_index is None:
            seq_index = np.arange(self.n_seq, dtype=np.int64)
        return loss_grad(
            np.ascontiguousarray(params, dtype=dtype), self.layout,
            np.ascontiguousarray(self.X, dtype=dtype), self.lengths,
            np.ascontiguousarray(self.Y, dtype=dtype),
            np.ascontiguousarray(self.mask, dtype=dtype),
            self.kernel_state0(with_state0, dtype),
            np.ascontiguousarray(seq_index, dtype=np.int64), int(self.cell),
            int(self.hidden_size), int(self.block_size), int(self.loss_kind), True)

    def kernel_forward(self, with_state0=True, last_only=False, dtype=np.float64):
        return forward(
            np.ascontiguousarray(self.params, dtype=dtype), self.layout,
            np.ascontiguousarray(self.X, dtype=dtype), self.lengths,
            self.kernel_state0(with_state0, dtype), self.order, int(self.cell),
            int(self.hidden_size), int(self.block_size), int(self.loss_kind),
            bool(last_only), True)

    def naive_loss_grad(self, seq_index=None, with_state0=True, params=None):
        params = self.params if params is None else params
        if seq_index is None:
            seq_index = np.arange(self.n_seq)
        state0 = self.state0[seq_index] if with_state0 else None
        return naive_loss_grad(
            params, *self.sizes, [self.X_list[b] for b in seq_index],
            [self.Y_list[b] for b in seq_index], [self.M_list[b] for b in seq_index],
            state0, input_to_output=self.input_to_output)

    def naive_forward(self, with_state0=True):
        return naive_forward(self.params, *self.sizes, self.X_list,
                             self.state0 if with_state0 else None,
                             input_to_output=self.input_to_output)

    def n_steps(self):
        return int(self.lengths.sum())


def _targets(rng, T, n_outputs, loss_kind):
    """Targets suited to ``loss_kind``."""
    if loss_kind == LOSS_SQUARED:
        return rng.normal(size=(T, n_outputs))
    if loss_kind == LOSS_SIGMOID_SQUARED:
        return rng.uniform(size=(T, n_outputs))
    if loss_kind == LOSS_SOFTMAX_XENT:
        return np.eye(n_outputs)[rng.integers(n_outputs, size=T)]
    # logistic cross-entropy: soft targets, as the regressor's loss="log_loss" sends
    # (labels 0 and 1, the classifier's, are a special case of the same formula)
    return rng.uniform(size=(T, n_outputs))


def _rel_err(a, b):
    return np.linalg.norm(a - b) / max(np.linalg.norm(a) + np.linalg.norm(b), 1e-30)


# Lengths include 1 and one shorter than the padded length; index sets select the
# whole batch, or a permuted subset with a repeated row (row 2 left out).
LENGTHS = (5, 1, 3, 6)
SEQ_INDEX = {"all": np.arange(4, dtype=np.int64),
             "subset-permuted-repeated": np.array([3, 0, 3, 1], dtype=np.int64)}

EQUIV_CASES = [(c, H, S, L, k) for (c, H, S) in CELLS for L in (1, 2)
               for k in LOSS_KINDS]
EQUIV_IDS = [f"{_cell_id(c, H, S)}-L{L}-{LOSS_NAMES[k]}"
             for c, H, S, L, k in EQUIV_CASES]


# ----------------------------------------------------------------------------------
# 1. Kernels against the NumPy reference
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("with_state0", [False, True], ids=["zero-state", "state0"])
@pytest.mark.parametrize("cell, hidden_size, block_size, num_layers, loss_kind",
                         EQUIV_CASES, ids=EQUIV_IDS)
def test_loss_grad_matches_naive(cell, hidden_size, block_size, num_layers,
                                 loss_kind, with_state0):
    prob = Problem(17, cell, 2, hidden_size, num_layers, 3, block_size, loss_kind,
                   LENGTHS)
    for name, seq_index in SEQ_INDEX.items():
        loss, grad = prob.kernel_loss_grad(seq_index=seq_index,
                                           with_state0=with_state0)
        ref_loss, ref_grad = prob.naive_loss_grad(seq_index, with_state0)
        assert grad.dtype == np.float64 and grad.shape == prob.params.shape
        assert np.linalg.norm(ref_grad) > 1e-3, "weak test: gradient vanishes"
        assert loss == pytest.approx(ref_loss, rel=1e-10), name
        np.testing.assert_allclose(grad, ref_grad, rtol=1e-10,
                                   atol=1e-12 * np.abs(ref_grad).max(),
                                   err_msg=f"seq_index={name}")


def test_seq_index_selects_rows():
    """A different selection gives a different result (the index is really used)."""
    prob = Problem(4, CELL_LSTM, 2, 3, 1, 2, 1, LOSS_SQUARED, LENGTHS)
    a = prob.kernel_loss_grad(seq_index=np.array([0, 1], dtype=np.int64))
    b = prob.kernel_loss_grad(seq_index=np.array([2, 3], dtype=np.int64))
    c = prob.kernel_loss_grad(seq_index=np.array([1, 0], dtype=np.int64))
    assert a[0] != pytest.approx(b[0], rel=1e-3)
    np.testing.assert_allclose(a[1], c[1], rtol=1e-12, atol=1e-15)
    # a repeated row counts twice: index [0, 0, 1] == weights 2 and 1
    d = prob.kernel_loss_grad(seq_index=np.array([0, 0, 1], dtype=np.int64))
    w0, w1 = prob.M_list[0].sum(), prob.M_list[1].sum()
    l0, g0 = prob.kernel_loss_grad(seq_index=np.array([0], dtype=np.int64))
    l1, g1 = prob.kernel_loss_grad(seq_index=np.array([1], dtype=np.int64))
    total = 2 * w0 + w1
    assert d[0] == pytest.approx((2 * w0 * l0 + w1 * l1) / total, rel=1e-12)
    np.testing.assert_allclose(d[1], (2 * w0 * g0 + w1 * g1) / total, rtol=1e-10,
                               atol=1e-14)


def test_empty_mask_gives_zero_loss():
    prob = Problem(5, CELL_LSTM1997, 2, 4, 2, 3, 2, LOSS_SQUARED, LENGTHS)
    prob.mask[:] = 0.0
    loss, grad = prob.kernel_loss_grad()
    assert loss == 0.0
    assert not np.any(grad)


@pytest.mark.parametrize("with_state0", [False, True], ids=["zero-state", "state0"])
@pytest.mark.parametrize("cell, hidden_size, block_size, num_layers, loss_kind",
                         EQUIV_CASES, ids=EQUIV_IDS)
def test_forward_matches_naive(cell, hidden_size, block_size, num_layers, loss_kind,
                               with_state0):
    prob = Problem(23, cell, 2, hidden_size, num_layers, 3, block_size, loss_kind,
                   LENGTHS)
    ref_out, ref_state = prob.naive_forward(with_state0)
    out, state = prob.kernel_forward(with_state0, last_only=False)
    N, T_max = prob.X.shape[:2]
    assert out.shape == (N, T_max, 3) and out.dtype == np.float64
    S = state_size(cell, hidden_size, block_size)
    assert state.shape == (N, num_layers, S)
    for b, T in enumerate(LENGTHS):
        np.testing.assert_allclose(out[b, :T], ref_out[b], rtol=1e-12, atol=1e-14,
                                   err_msg=f"sequence {b}")
        assert not np.any(out[b, T:]), f"sequence {b}: nonzero output past length"
    np.testing.assert_allclose(state, ref_state, rtol=1e-12, atol=1e-14)

    out_last, state_last = prob.kernel_forward(with_state0, last_only=True)
    assert out_last.shape == (N, 1, 3)
    for b, T in enumerate(LENGTHS):
        np.testing.assert_allclose(out_last[b, 0], ref_out[b][T - 1], rtol=1e-12,
                                   atol=1e-14, err_msg=f"sequence {b}")
    np.testing.assert_allclose(state_last, ref_state, rtol=1e-12, atol=1e-14)
    # the initial state must matter (otherwise the state0 cases test nothing)
    if with_state0:
        out_zero, _ = prob.kernel_forward(False, last_only=False)
        assert np.abs(out_zero[0, 0] - out[0, 0]).max() > 1e-6


# (cell, hidden_size, block_size, num_layers)
HEAD_INPUT_CASES = [(CELL_LSTM, 3, 1, 2), (CELL_LSTM1997, 4, 2, 1),
                    (CELL_LSTM1997_EXP2, 4, 2, 1)]


@pytest.mark.parametrize("cell, hidden_size, block_size, num_layers",
                         HEAD_INPUT_CASES,
                         ids=[f"{_cell_id(c, H, S)}-L{L}"
                              for c, H, S, L in HEAD_INPUT_CASES])
def test_head_that_sees_the_input_matches_naive(cell, hidden_size, block_size,
                                                num_layers):
    """``input_to_output`` (the paper's connectivity B): the head also sees the
    network's input; every kernel path against the NumPy reference."""
    prob = Problem(41, cell, 2, hidden_size, num_layers, 3, block_size,
                   LOSS_SIGMOID_SQUARED, LENGTHS, input_to_output=True)
    assert prob.layout[-1, 4] == 2
    loss, grad = prob.kernel_loss_grad()
    ref_loss, ref_grad = prob.naive_loss_grad()
    assert np.abs(unpack(ref_grad, *prob.shape_args)["head.weight_input"]).max() > 1e-3
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9,
                               atol=1e-12 * np.abs(ref_grad).max())
    ref_out, ref_state = prob.naive_forward()
    out, state = prob.kernel_forward(last_only=False)
    out_last, _ = prob.kernel_forward(last_only=True)
    for b, T in enumerate(LENGTHS):
        np.testing.assert_allclose(out[b, :T], ref_out[b], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(out_last[b, 0], ref_out[b][T - 1], rtol=1e-12,
                                   atol=1e-14)
        # the one-sequence kernels (batch_size=1) do the chunk kernels' arithmetic
        one = _loss_grad_one(prob, b)
        chunk = prob.kernel_loss_grad(seq_index=np.array([b]))
        assert one[0] == chunk[0] and one[1].tobytes() == chunk[1].tobytes()
    # the input's weights matter (otherwise this tests nothing)
    unpack(prob.params, *prob.shape_args)["head.weight_input"][...] = 0.0
    assert np.abs(prob.kernel_forward(last_only=False)[0] - out).max() > 1e-3


# ----------------------------------------------------------------------------------
# 2. Gradient against finite differences of the kernel's own loss
# ----------------------------------------------------------------------------------

FD_EPS = 1e-6
FD_RTOL = 1e-6
# (lengths, hidden_size): different T, batch size and hidden size
FD_SHAPES = {"T6-B3-H3": ((4, 1, 6), 3), "T8-B2-H4": ((8, 5), 4)}
FD_CASES = [(cell, L, shape, k)
            for cell in (CELL_LSTM, CELL_LSTM1997) for L in (1, 2)
            for shape in FD_SHAPES for k in LOSS_KINDS]
FD_CASES += [(cell, L, "T8-B2-H4", k)
             for cell in (CELL_LSTM1997_TABLE10, CELL_LSTM1997_EXP2,
                          CELL_LSTM1997_EXP2_CENTERED) for L in (1, 2)
             for k in (LOSS_SQUARED, LOSS_SIGMOID_SQUARED)]


@pytest.mark.parametrize(
    "cell, num_layers, shape, loss_kind", FD_CASES,
    ids=[f"{CELL_NAMES[c]}-L{L}-{s}-{LOSS_NAMES[k]}" for c, L, s, k in FD_CASES])
def test_grad_matches_finite_differences(cell, num_layers, shape, loss_kind):
    lengths, hidden_size = FD_SHAPES[shape]
    block_size = 2 if (cell != CELL_LSTM and hidden_size % 2 == 0) else 1
    prob = Problem(31, cell, 2, hidden_size, num_layers, 3, block_size, loss_kind,
                   lengths)
    _, grad = prob.kernel_loss_grad()
    numeric = np.empty_like(prob.params)
    for p in range(prob.params.size):
        plus, minus = prob.params.copy(), prob.params.copy()
        plus[p] += FD_EPS
        minus[p] -= FD_EPS
        numeric[p] = (prob.kernel_loss_grad(params=plus)[0]
                      - prob.kernel_loss_grad(params=minus)[0]) / (2.0 * FD_EPS)
    exact_blocks = unpack(grad, *prob.shape_args)
    numeric_blocks = unpack(numeric, *prob.shape_args)
    for name in block_names(cell, num_layers):
        a, b = exact_blocks[name], numeric_blocks[name]
        assert np.linalg.norm(a) > 1e-6, f"{name}: gradient vanishes, weak test"
        err = _rel_err(a, b)
        assert err <= FD_RTOL, f"{name}: relative error {err:.3g}"


# ----------------------------------------------------------------------------------
# 3. float32 against float64
# ----------------------------------------------------------------------------------

F32_CASES = [(c, H, S, L, k) for (c, H, S) in CELLS for L in (1, 2)
             for k in (LOSS_SQUARED, LOSS_SOFTMAX_XENT)]


@pytest.mark.parametrize(
    "cell, hidden_size, block_size, num_layers, loss_kind", F32_CASES,
    ids=[f"{_cell_id(c, H, S)}-L{L}-{LOSS_NAMES[k]}" for c, H, S, L, k in F32_CASES])
def test_float32_matches_float64(cell, hidden_size, block_size, num_layers,
                                 loss_kind):
    prob = Problem(41, cell, 2, hidden_size, num_layers, 3, block_size, loss_kind,
                   LENGTHS, param_scale=0.5)
    # compare at the float32-rounded parameters, so only the arithmetic differs
    prob.params = prob.params.astype(np.float32).astype(np.float64)
    prob.X = prob.X.astype(np.float32).astype(np.float64)
    prob.state0 = prob.state0.astype(np.float32).astype(np.float64)
    loss64, grad64 = prob.kernel_loss_grad(dtype=np.float64)
    loss32, grad32 = prob.kernel_loss_grad(dtype=np.float32)
    assert grad32.dtype == np.float32
    assert loss32 == pytest.approx(loss64, rel=1e-4)
    assert _rel_err(grad32.astype(np.float64), grad64) <= 1e-4
    np.testing.assert_allclose(grad32, grad64, rtol=1e-3,
                               atol=1e-4 * np.abs(grad64).max())
    for last_only in (False, True):
        out64, st64 = prob.kernel_forward(True, last_only, dtype=np.float64)
        out32, st32 = prob.kernel_forward(True, last_only, dtype=np.float32)
        assert out32.dtype == np.float32 and st32.dtype == np.float32
        np.testing.assert_allclose(out32, out64, rtol=1e-4,
                                   atol=1e-5 * np.abs(out64).max())
        np.testing.assert_allclose(st32, st64, rtol=1e-4,
                                   atol=1e-5 * np.abs(st64).max())


# ----------------------------------------------------------------------------------
# 4. Chunking and determinism
# ----------------------------------------------------------------------------------


def _many_sequences(seed, cell, hidden_size, block_size, n_seq, t_range, input_size=2,
                    n_outputs=2, loss_kind=LOSS_SQUARED):
    rng = np.random.default_rng(seed + 1000)
    lengths = tuple(int(t) for t in rng.integers(t_range[0], t_range[1] + 1,
                                                 size=n_seq))
    return Problem(seed, cell, input_size, hidden_size, 1 if cell == CELL_LSTM else 2,
                   n_outputs, block_size, loss_kind, lengths, param_scale=0.5)


# "serial": too little work for the parallel branch; "parallel": enough for it.
MANY_CASES = {
    "lstm1997-serial": (CELL_LSTM1997, 4, 2, (1, 6), 5, "serial"),
    "lstm-serial": (CELL_LSTM, 3, 1, (1, 5), 2, "serial"),
    "lstm-parallel": (CELL_LSTM, 8, 1, (6, 10), 3, "parallel"),
}


@pytest.mark.parametrize("case", sorted(MANY_CASES))
def test_many_sequences_match_naive(case):
    cell, H, S, t_range, input_size, branch = MANY_CASES[case]
    n_seq = 70
    assert n_seq > 2 * config.LSTMF_LANES
    prob = _many_sequences(51, cell, H, S, n_seq, t_range, input_size=input_size)
    work = prob.n_steps() * prob.params.size
    if branch == "parallel":
        assert work >= _kernels._PARALLEL_MIN_WORK
    else:
        assert work < _kernels._PARALLEL_MIN_WORK // 3
    rng = np.random.default_rng(52)
    seq_index = rng.permutation(n_seq).astype(np.int64)
    loss, grad = prob.kernel_loss_grad(seq_index=seq_index)
    ref_loss, ref_grad = prob.naive_loss_grad(seq_index)
    assert loss == pytest.approx(ref_loss, rel=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9,
                               atol=1e-12 * np.abs(ref_grad).max())
    again = prob.kernel_loss_grad(seq_index=seq_index)
    assert again[0] == loss
    assert again[1].tobytes() == grad.tobytes()

    ref_out, ref_state = prob.naive_forward()
    out, state = prob.kernel_forward(True, last_only=False)
    for b, T in enumerate(prob.lengths):
        np.testing.assert_allclose(out[b, :T], ref_out[b], rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(state, ref_state, rtol=1e-11, atol=1e-13)
    out2, state2 = prob.kernel_forward(True, last_only=False)
    assert out2.tobytes() == out.tobytes()
    assert state2.tobytes() == state.tobytes()


@pytest.mark.parametrize("case", sorted(MANY_CASES))
def test_stacked_net_inputs_equal_the_separate_products(case):
    """Chunks whose recurrent product goes to BLAS compute the net inputs as one
    stacked product ``[W_hh, W_ih, b] @ [r_prev; x; 1]`` (every layer; the oracle
    tests above then run through it); it equals the separate products."""
    cell, H, S, _, input_size, _ = MANY_CASES[case]
    num_layers = 2
    prob = Problem(57, cell, input_size, H, num_layers, 2, S, LOSS_SQUARED, (3,))
    U = 4 * H if cell == CELL_LSTM else H + 2 * (H // S)
    R = recurrent_size(cell, H, S)
    n = 24
    assert _kernels._stacked(U, R, n) and not _kernels._stacked(U, R, 1)
    wbuf, sbuf = _kernels._stacked_buffers(prob.params, prob.layout, U, R, n)
    rng = np.random.default_rng(58)
    for layer in range(num_layers):
        din = input_size if layer == 0 else H
        x = rng.normal(size=(din, n))
        r_prev = rng.normal(size=(R, n))
        w_cat, stack = _kernels._stacked_layer(wbuf, sbuf, prob.layout, layer, U, R,
                                               n)
        assert w_cat.shape == (U, R + din + 1) and stack.shape == (R + din + 1, n)
        stacked = np.empty((U, n))
        _kernels._stacked_preact(w_cat, stack, x, r_prev, stacked)
        separate = np.empty((U, n))
        _kernels._layer_preact(prob.params, prob.layout, layer, x, r_prev, separate)
        np.testing.assert_allclose(stacked, separate, rtol=1e-12, atol=1e-12)
        assert np.all(stack[-1] == 1.0)


def _loss_grad_into(prob, seq_index, work):
    return _kernels.loss_grad_into(
        prob.params, prob.layout, prob.X, prob.lengths, prob.Y, prob.mask,
        prob.kernel_state0(True), np.ascontiguousarray(seq_index, dtype=np.int64),
        int(prob.cell), int(prob.hidden_size), int(prob.block_size),
        int(prob.loss_kind), True, work)


@pytest.mark.parametrize("case", ["lstm1997-serial", "lstm-parallel"])
def test_workspace_reused_across_batches_gives_the_same_results(case):
    """``train_batches`` carves every batch's step arrays from one workspace: stale
    contents from an earlier (longer, larger) batch must not leak into a later one,
    and a workspace too small is replaced, not overrun."""
    cell, H, S, t_range, input_size, _ = MANY_CASES[case]
    prob = _many_sequences(53, cell, H, S, 70, t_range, input_size=input_size)
    batch_size = 40
    work = _kernels.loss_grad_workspace(prob.params, prob.layout, prob.X, batch_size,
                                        int(prob.cell), int(prob.hidden_size),
                                        int(prob.block_size))
    assert work.dtype == prob.params.dtype
    rng = np.random.default_rng(54)
    batches = [rng.permutation(70)[:size] for size in (40, 17, 3, 40, 1)]
    for seq_index in batches:
        fresh = prob.kernel_loss_grad(seq_index=seq_index)
        before = work.copy()
        reused = _loss_grad_into(prob, seq_index, work)
        assert reused[0] == fresh[0]
        assert reused[1].tobytes() == fresh[1].tobytes()
        assert not np.array_equal(work, before, equal_nan=True)   # it was used
    too_small = np.zeros((1, 3))
    loss, grad = _loss_grad_into(prob, batches[0], too_small)
    assert np.all(too_small == 0.0)
    fresh = prob.kernel_loss_grad(seq_index=batches[0])
    assert loss == fresh[0] and grad.tobytes() == fresh[1].tobytes()


def test_borrowed_views_share_data_and_leave_the_owners_count_alone():
    import sys

    from numba import njit

    from lstmforecast._views import borrowed

    @njit
    def double_rows_through_borrowed(a):
        b = borrowed(a)
        for i in range(b.shape[0]):
            row = b[i]
            for j in range(row.shape[0]):
                row[j] *= 2.0
        return b.sum()

    a = np.arange(12.0).reshape(3, 4)
    expected = 2 * np.arange(12.0).reshape(3, 4)
    assert double_rows_through_borrowed(a) == expected.sum()
    np.testing.assert_array_equal(a, expected)
    owner = np.ones((2, 2))
    refs = sys.getrefcount(owner)
    for _ in range(100):
        double_rows_through_borrowed(owner)
    assert sys.getrefcount(owner) == refs


_DIGEST_CODE = """
import hashlib, numba, numpy as np
from lstmforecast._kernels import loss_grad, _PARALLEL_MIN_WORK
from lstmforecast._layout import CELL_LSTM, LOSS_SQUARED, make_layout
rng = np.random.default_rng(2024)
N, T, D, H, K = 70, 10, 3, 8, 2
layout, P = make_layout(CELL_LSTM, D, H, 1, K, 1)
params = rng.normal(scale=0.5, size=P)
lengths = rng.integers(6, T + 1, size=N).astype(np.int64)
X = rng.normal(size=(N, T, D))
Y = rng.normal(size=(N, T, K))
mask = rng.uniform(0.5, 2.0, size=(N, T))
for b in range(N):
    X[b, lengths[b]:] = 0.0
    Y[b, lengths[b]:] = 0.0
    mask[b, lengths[b]:] = 0.0
assert int(lengths.sum()) * P >= _PARALLEL_MIN_WORK
state0 = np.zeros((0, 1, 2 * H))
seq_index = rng.permutation(N).astype(np.int64)
loss, grad = loss_grad(params, layout, X, lengths, Y, mask, state0, seq_index,
                       CELL_LSTM, H, 1, LOSS_SQUARED, True)
print(numba.get_num_threads())
print(hashlib.sha256(grad.tobytes() + np.float64(loss).tobytes()).hexdigest())
"""


def _digest(n_threads=None):
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(ROOT)] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    if n_threads is not None:
        env["NUMBA_NUM_THREADS"] = str(n_threads)
    res = subprocess.run([sys.executable, "-c", _DIGEST_CODE], env=env,
                         capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert res.returncode == 0, res.stderr
    threads, digest = res.stdout.split()
    if n_threads is not None:
        assert int(threads) == n_threads
    return digest


def test_gradient_bitwise_identical_across_thread_counts():
    one = _digest(1)
    two = _digest(2)
    assert len(one) == 64
    assert one == two
    # and equal to this process (default thread count)
    ns = {}
    exec_code = _DIGEST_CODE.replace("print(numba.get_num_threads())", "")
    exec_code = exec_code.replace("print(hashlib", "digest = (hashlib")
    exec(compile(exec_code, "<digest>", "exec"), ns)
    assert ns["digest"] == one


# ----------------------------------------------------------------------------------
# 5. train_batches
# ----------------------------------------------------------------------------------


def _train_problem(seed=61, cell=CELL_LSTM1997, hidden_size=4, block_size=2,
                   num_layers=2):
    return Problem(seed, cell, 2, hidden_size, num_layers, 2, block_size,
                   LOSS_SQUARED, (4, 1, 3, 5, 2), param_scale=0.5)


def _train(prob, hyper, l2_mask=None, train_mask=None, order=None, batch_size=None,
           n_batches=1, first_batch=0, opt_state=None, step=None):
    P = prob.params.size
    order = np.arange(prob.n_seq, dtype=np.int64) if order is None else order
    batch_size = prob.n_seq if batch_size is None else batch_size
    l2_mask = np.zeros(P) if l2_mask is None else l2_mask
    train_mask = np.ones(P) if train_mask is None else train_mask
    opt_state = np.zeros((2, P)) if opt_state is None else opt_state
    step = np.zeros(1, dtype=np.int64) if step is None else step
    return train_batches(
        prob.params, prob.layout, prob.X, prob.lengths, prob.Y, prob.mask,
        prob.no_state, order, int(batch_size), int(first_batch), int(n_batches),
        int(prob.cell), int(prob.hidden_size), int(prob.block_size),
        int(prob.loss_kind), OPT_SGD, opt_state, step, hyper, l2_mask, train_mask,
        True)


def _weights_mask(prob):
    """1 on weight blocks, 0 on biases (as the estimators build it)."""
    mask = np.zeros(prob.params.size)
    for name, block in unpack(mask, *prob.shape_args).items():
        if "weight" in name:
            block[...] = 1.0
    return mask


TRAIN_SCENARIOS = ["plain", "l2", "clip", "clip-inactive", "frozen", "l2-frozen-clip"]


@pytest.mark.parametrize("cell", [CELL_LSTM, CELL_LSTM1997], ids=["lstm", "lstm1997"])
@pytest.mark.parametrize("scenario", TRAIN_SCENARIOS)
def test_train_batches_one_sgd_step(scenario, cell):
    block_size = 2 if cell == CELL_LSTM1997 else 1
    prob = _train_problem(cell=cell, block_size=block_size)
    P = prob.params.size
    rng = np.random.default_rng(62)
    lr = 0.1
    alpha = 0.3 if "l2" in scenario else 0.0
    l2_mask = _weights_mask(prob)
    train_mask = np.ones(P)
    if "frozen" in scenario:
        train_mask[rng.uniform(size=P) < 0.4] = 0.0
    order = rng.permutation(prob.n_seq).astype(np.int64)
    p0 = prob.params.copy()

    ref_loss, g = naive_loss_grad(p0, *prob.sizes, prob.X_list, prob.Y_list,
                                  prob.M_list)
    g = g + alpha * p0 * l2_mask
    g = g * train_mask
    norm = np.linalg.norm(g)
    clip = None
    if scenario == "clip-inactive":
        clip = 2.0 * norm
    elif "clip" in scenario:
        clip = 0.25 * norm
        g = g * (clip / norm)
    expected_delta = -lr * g
    expected_loss = ref_loss + 0.5 * alpha * np.sum(p0 ** 2 * l2_mask)

    hyper = make_hyper(lr, momentum=0.0, alpha=alpha, clip_norm=clip)
    step = np.zeros(1, dtype=np.int64)
    losses, sizes, failed = _train(prob, hyper, l2_mask, train_mask, order, step=step)
    assert failed == -1
    assert step[0] == 1
    assert sizes.tolist() == [prob.n_seq]
    assert losses[0] == pytest.approx(expected_loss, rel=1e-10)
    delta = prob.params - p0
    np.testing.assert_allclose(delta, expected_delta, rtol=1e-8,
                               atol=1e-12 * np.abs(expected_delta).max())
    if "frozen" in scenario:
        frozen = train_mask == 0
        assert np.array_equal(prob.params[frozen], p0[frozen])
        assert np.all(prob.params[~frozen] != p0[~frozen])
    if clip is not None and scenario != "clip-inactive":
        assert np.linalg.norm(delta) == pytest.approx(lr * clip, rel=1e-10)


def test_train_batches_runs_batches_in_order():
    """Two batches in one call equal two one-batch calls and two naive SGD steps."""
    prob = _train_problem(seed=63)
    order = np.array([4, 0, 2, 1, 3], dtype=np.int64)
    hyper = make_hyper(0.05)
    p0 = prob.params.copy()
    losses, sizes, failed = _train(prob, hyper, order=order, batch_size=3,
                                   n_batches=2)
    assert failed == -1
    assert sizes.tolist() == [3, 2]
    p_two = prob.params.copy()

    p = p0.copy()
    for i, batch in enumerate((order[:3], order[3:])):
        ref_loss, g = naive_loss_grad(
            p, *prob.sizes, [prob.X_list[b] for b in batch],
            [prob.Y_list[b] for b in batch], [prob.M_list[b] for b in batch])
        assert losses[i] == pytest.approx(ref_loss, rel=1e-10)
        p = p - 0.05 * g
    np.testing.assert_allclose(p_two, p, rtol=1e-10, atol=1e-13)

    prob.params[:] = p0
    for first in (0, 1):
        _train(prob, hyper, order=order, batch_size=3, n_batches=1,
               first_batch=first)
    assert prob.params.tobytes() == p_two.tobytes()


def test_train_batches_nan_target_fails_without_update():
    prob = _train_problem(seed=64)
    prob.Y[2, 1, 0] = np.nan                  # a step that counts (mask > 0)
    assert prob.mask[2, 1] > 0
    p0 = prob.params.copy()
    opt_state = np.zeros((2, p0.size))
    step = np.zeros(1, dtype=np.int64)
    losses, sizes, failed = _train(prob, make_hyper(0.1, momentum=0.9),
                                   opt_state=opt_state, step=step)
    assert failed == 0
    assert np.array_equal(prob.params, p0)
    assert not np.any(opt_state)
    assert step[0] == 0


def test_train_batches_overflowing_update_is_undone():
    """A finite gradient whose update overflows: the update is rolled back."""
    prob = _train_problem(seed=65)
    prob.Y *= 1e30
    p0 = prob.params.copy()
    opt_state = np.zeros((2, p0.size))
    step = np.zeros(1, dtype=np.int64)
    hyper = make_hyper(1e300, momentum=0.5)
    losses, sizes, failed = _train(prob, hyper, opt_state=opt_state, step=step)
    assert failed == 0
    assert np.isfinite(losses[0])             # loss and gradient were finite
    assert np.array_equal(prob.params, p0)
    assert not np.any(opt_state)
    assert step[0] == 0


def test_train_batches_divergence_keeps_last_finite_params():
    prob = _train_problem(seed=66)
    prob.Y *= 1e30
    hyper = make_hyper(1e30)
    p_start = prob.params.copy()
    # replay one batch per call, remembering the parameters before each batch
    history = []
    for _ in range(50):
        history.append(prob.params.copy())
        _, _, failed = _train(prob, hyper)
        if failed >= 0:
            break
    assert failed == 0, "no divergence within 50 batches"
    n_ok = len(history) - 1
    assert n_ok >= 1, "diverged at once; the test wants a later failure"
    assert np.array_equal(prob.params, history[-1])
    # the same in one call of many batches (batch i of order = the whole set)
    prob.params[:] = p_start
    n_seq = prob.n_seq
    order = np.tile(np.arange(n_seq, dtype=np.int64), 60)
    step = np.zeros(1, dtype=np.int64)
    losses, sizes, failed = _train(prob, hyper, order=order, batch_size=n_seq,
                                   n_batches=60, step=step)
    assert failed == n_ok
    assert step[0] == n_ok
    assert np.all(np.isfinite(prob.params))
    assert np.array_equal(prob.params, history[-1])
    assert np.all(np.isfinite(losses[:n_ok]))


# ----------------------------------------------------------------------------------
# 5b. One sequence at a time (batch_size=1): loss_grad_one and train_sequences
# ----------------------------------------------------------------------------------


def _loss_grad_one(prob, row, with_state0=True, dtype=np.float64, work=None,
                   params=None):
    params = prob.params if params is None else params
    grad = np.full(params.size, np.nan, dtype=dtype)   # overwritten, not added to
    work = np.empty(0, dtype=dtype) if work is None else work
    loss = _kernels.loss_grad_one(
        np.ascontiguousarray(params, dtype=dtype), prob.layout,
        np.ascontiguousarray(prob.X, dtype=dtype), prob.lengths,
        np.ascontiguousarray(prob.Y, dtype=dtype),
        np.ascontiguousarray(prob.mask, dtype=dtype),
        prob.kernel_state0(with_state0, dtype), int(row), int(prob.cell),
        int(prob.hidden_size), int(prob.block_size), int(prob.loss_kind), work, grad)
    return loss, grad


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell, hidden_size, block_size, num_layers, loss_kind",
                         EQUIV_CASES, ids=EQUIV_IDS)
def test_loss_grad_one_matches_naive_and_the_chunk_kernels(
        cell, hidden_size, block_size, num_layers, loss_kind, dtype):
    """The one-sequence kernels do the chunk kernels' arithmetic in the same order:
    bitwise equal to ``loss_grad`` of a one-row batch, and to the NumPy oracle."""
    prob = Problem(19, cell, 2, hidden_size, num_layers, 3, block_size, loss_kind,
                   LENGTHS)
    work = np.empty(0, dtype=dtype)
    for with_state0 in (False, True):
        for row in range(prob.n_seq):
            loss, grad = _loss_grad_one(prob, row, with_state0, dtype)
            ref = prob.kernel_loss_grad(seq_index=np.array([row]),
                                        with_state0=with_state0, dtype=dtype)
            assert grad.dtype == dtype
            assert loss == ref[0]
            assert grad.tobytes() == ref[1].tobytes()
            reused = _loss_grad_one(prob, row, with_state0, dtype, work=work)
            assert reused[0] == loss and reused[1].tobytes() == grad.tobytes()
            if dtype == np.float64:
                ref_loss, ref_grad = prob.naive_loss_grad([row], with_state0)
                assert np.linalg.norm(ref_grad) > 1e-3, "weak test"
                assert loss == pytest.approx(ref_loss, rel=1e-10)
                np.testing.assert_allclose(grad, ref_grad, rtol=1e-10,
                                           atol=1e-12 * np.abs(ref_grad).max())


@pytest.mark.parametrize("cell", [CELL_LSTM, CELL_LSTM1997], ids=["lstm", "lstm1997"])
def test_loss_grad_one_matches_finite_differences(cell):
    block_size = 2 if cell == CELL_LSTM1997 else 1
    prob = Problem(33, cell, 2, 4, 2, 2, block_size, LOSS_SQUARED, (7, 3))
    _, grad = _loss_grad_one(prob, 0)
    numeric = np.empty_like(prob.params)
    for p in range(prob.params.size):
        plus, minus = prob.params.copy(), prob.params.copy()
        plus[p] += FD_EPS
        minus[p] -= FD_EPS
        numeric[p] = (_loss_grad_one(prob, 0, params=plus)[0]
                      - _loss_grad_one(prob, 0, params=minus)[0]) / (2.0 * FD_EPS)
    for name in block_names(cell, 2):
        a = unpack(grad, *prob.shape_args)[name]
        b = unpack(numeric, *prob.shape_args)[name]
        assert np.linalg.norm(a) > 1e-6, f"{name}: gradient vanishes, weak test"
        assert _rel_err(a, b) <= FD_RTOL, f"{name}: relative error {_rel_err(a, b):.3g}"


def test_loss_grad_one_replaces_a_small_workspace_and_ignores_other_rows():
    prob = Problem(35, CELL_LSTM, 2, 3, 1, 2, 1, LOSS_SQUARED, (6, 2, 5))
    expected = _loss_grad_one(prob, 2)
    too_small = np.zeros(3)
    got = _loss_grad_one(prob, 2, work=too_small)
    assert np.all(too_small == 0.0)
    assert got[0] == expected[0] and got[1].tobytes() == expected[1].tobytes()
    # a stale, longer sequence's contents in the workspace change nothing
    work = np.empty(0)
    _loss_grad_one(prob, 0, work=work)
    prob.X[[0, 1]] = np.nan
    prob.Y[[0, 1]] = np.nan
    got = _loss_grad_one(prob, 2)
    assert got[0] == expected[0] and got[1].tobytes() == expected[1].tobytes()


def _train_both(prob, opt_kind, hyper, order, dtype, l2_mask, train_mask):
    """train_batches with batch_size=1 and train_sequences from the same start."""
    results = []
    for kernel in (train_batches, train_sequences):
        P = prob.params.size
        params = prob.params.astype(dtype)
        opt_state = np.zeros((2, P), dtype=dtype)
        step = np.zeros(1, dtype=np.int64)
        losses, sizes, failed = kernel(
            params, prob.layout, prob.X.astype(dtype), prob.lengths,
            prob.Y.astype(dtype), prob.mask.astype(dtype), prob.no_state.astype(dtype),
            order, 1, 1, order.size - 1, int(prob.cell), int(prob.hidden_size),
            int(prob.block_size), int(prob.loss_kind), opt_kind, opt_state, step,
            hyper, l2_mask.astype(dtype), train_mask.astype(dtype), True)
        results.append((params, opt_state, step, losses, sizes, failed))
    return results


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell", [CELL_LSTM, CELL_LSTM1997], ids=["lstm", "lstm1997"])
def test_train_sequences_equals_train_batches_of_one(cell, dtype):
    from lstmforecast._optimizers import OPT_ADAM
    block_size = 2 if cell == CELL_LSTM1997 else 1
    prob = _train_problem(seed=67, cell=cell, block_size=block_size)
    rng = np.random.default_rng(68)
    order = rng.integers(0, prob.n_seq, size=12).astype(np.int64)
    train_mask = (rng.uniform(size=prob.params.size) > 0.2).astype(np.float64)
    for opt_kind, hyper in ((OPT_SGD, make_hyper(0.05, momentum=0.5, alpha=0.01,
                                                 clip_norm=0.5)),
                            (OPT_ADAM, make_hyper(0.01, alpha=0.01))):
        a, b = _train_both(prob, opt_kind, hyper, order, dtype,
                           _weights_mask(prob), train_mask)
        assert a[5] == b[5] == -1
        assert b[2][0] == order.size - 1                  # first_batch=1 honoured
        assert np.all(b[4] == 1.0)
        assert not np.array_equal(b[0], prob.params.astype(dtype))
        for x, y in zip(a[:4], b[:4]):
            assert x.tobytes() == y.tobytes()


def test_train_sequences_stops_at_a_non_finite_sequence_without_its_update():
    prob = _train_problem(seed=69)
    prob.Y[3, 2, 1] = np.nan
    assert prob.mask[3, 2] > 0
    order = np.array([0, 1, 2, 3, 4, 0], dtype=np.int64)
    a, b = _train_both(prob, OPT_SGD, make_hyper(0.1), order, np.float64,
                       np.zeros(prob.params.size), np.ones(prob.params.size))
    assert a[5] == b[5] == 2                 # order[3] is the third batch from 1
    assert b[2][0] == 2
    for x, y in zip(a[:4], b[:4]):
        assert x.tobytes() == y.tobytes()
    assert np.all(np.isfinite(b[0]))


# ----------------------------------------------------------------------------------
# 6. Optimizer steps
# ----------------------------------------------------------------------------------

P0 = np.array([1.0, -2.0, 0.5])
GRADS = [np.array([1.0, -2.0, 4.0]), np.array([2.0, 0.0, -1.0]),
         np.array([-0.5, 3.0, 0.25])]


def test_sgd_step_plain():
    params, state = P0.copy(), np.zeros((2, 3))
    sgd_step(params, GRADS[0], state, make_hyper(0.1))
    np.testing.assert_allclose(params, [0.9, -1.8, 0.1], rtol=1e-14, atol=1e-15)


def test_sgd_step_momentum_by_hand():
    params, state = P0.copy(), np.zeros((2, 3))
    hyper = make_hyper(0.1, momentum=0.5)
    sgd_step(params, GRADS[0], state, hyper)
    # v1 = -0.1 g1 = [-0.1, 0.2, -0.4]; p1 = p0 + v1
    np.testing.assert_allclose(state[0], [-0.1, 0.2, -0.4], rtol=1e-12)
    np.testing.assert_allclose(params, [0.9, -1.8, 0.1], rtol=1e-14, atol=1e-15)
    sgd_step(params, GRADS[1], state, hyper)
    # v2 = 0.5 v1 - 0.1 g2 = [-0.25, 0.1, -0.1]; p2 = p1 + v2
    np.testing.assert_allclose(state[0], [-0.25, 0.1, -0.1], rtol=1e-12)
    np.testing.assert_allclose(params, [0.65, -1.7, 0.0], rtol=1e-14, atol=1e-15)


def test_sgd_step_nesterov_by_hand():
    params, state = P0.copy(), np.zeros((2, 3))
    hyper = make_hyper(0.1, momentum=0.5, nesterov=True)
    sgd_step(params, GRADS[0], state, hyper)
    # v1 = [-0.1, 0.2, -0.4]; p1 = p0 + 0.5 v1 - 0.1 g1
    np.testing.assert_allclose(state[0], [-0.1, 0.2, -0.4], rtol=1e-12)
    np.testing.assert_allclose(params, [0.85, -1.7, -0.1], rtol=1e-14, atol=1e-15)
    sgd_step(params, GRADS[1], state, hyper)
    # v2 = [-0.25, 0.1, -0.1]; p2 = p1 + 0.5 v2 - 0.1 g2
    np.testing.assert_allclose(state[0], [-0.25, 0.1, -0.1], rtol=1e-12)
    np.testing.assert_allclose(params, [0.525, -1.65, -0.05], rtol=1e-14, atol=1e-15)


@pytest.mark.parametrize("eps", [1e-8, 0.1])
def test_adam_two_steps_by_hand(eps):
    lr, b1, b2 = 0.01, 0.9, 0.999
    params, state = P0.copy(), np.zeros((2, 3))
    hyper = make_hyper(lr, beta_1=b1, beta_2=b2, epsilon=eps)
    g1, g2 = GRADS[0], GRADS[1]

    adam_step(params, g1, state, hyper, 1)
    m1 = (1 - b1) * g1
    v1 = (1 - b2) * g1 ** 2
    # bias-corrected: m1 / (1 - b1) = g1, v1 / (1 - b2) = g1^2
    p1 = P0 - lr * g1 / (np.abs(g1) + eps)
    np.testing.assert_allclose(state[0], m1, rtol=1e-12)
    np.testing.assert_allclose(state[1], v1, rtol=1e-12)
    np.testing.assert_allclose(params, p1, rtol=1e-13)

    adam_step(params, g2, state, hyper, 2)
    m2 = b1 * m1 + (1 - b1) * g2
    v2 = b2 * v1 + (1 - b2) * g2 ** 2
    m_hat = m2 / (1 - b1 ** 2)
    v_hat = v2 / (1 - b2 ** 2)
    p2 = p1 - lr * m_hat / (np.sqrt(v_hat) + eps)
    np.testing.assert_allclose(state[0], m2, rtol=1e-12)
    np.testing.assert_allclose(state[1], v2, rtol=1e-12)
    np.testing.assert_allclose(params, p2, rtol=1e-13)
    if eps == 1e-8:
        # literal check of step 1: each coordinate moves by lr against its gradient
        np.testing.assert_allclose(p1, [0.99, -1.99, 0.49], rtol=1e-7)


def test_adam_matches_torch():
    torch = pytest.importorskip(
        "torch", reason="torch is not installed; cannot compare with torch.optim.Adam")
    lr, b1, b2, eps = 0.05, 0.8, 0.99, 1e-3
    params, state = P0.copy(), np.zeros((2, 3))
    hyper = make_hyper(lr, beta_1=b1, beta_2=b2, epsilon=eps)
    p_t = torch.tensor(P0.copy(), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.Adam([p_t], lr=lr, betas=(b1, b2), eps=eps)
    for t, g in enumerate(GRADS, start=1):
        adam_step(params, g, state, hyper, t)
        p_t.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(params, p_t.detach().numpy(), rtol=1e-13,
                                   atol=1e-15, err_msg=f"step {t}")


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_matches_torch(nesterov):
    torch = pytest.importorskip(
        "torch", reason="torch is not installed; cannot compare with torch.optim.SGD")
    lr, mom = 0.05, 0.7
    params, state = P0.copy(), np.zeros((2, 3))
    hyper = make_hyper(lr, momentum=mom, nesterov=nesterov)
    p_t = torch.tensor(P0.copy(), dtype=torch.float64, requires_grad=True)
    opt = torch.optim.SGD([p_t], lr=lr, momentum=mom, nesterov=nesterov)
    for t, g in enumerate(GRADS, start=1):
        sgd_step(params, g, state, hyper)
        p_t.grad = torch.tensor(g, dtype=torch.float64)
        opt.step()
        np.testing.assert_allclose(params, p_t.detach().numpy(), rtol=1e-13,
                                   atol=1e-15, err_msg=f"step {t}")
