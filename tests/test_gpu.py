"""The GPU path (``lstmforecast/gpu_lstm.py``) against the CPU kernels.

Runs where ``numba.cuda`` sees a GPU, or without one under Numba's CUDA simulator::

    NUMBA_ENABLE_CUDASIM=1 python -m pytest tests/test_gpu.py

and is skipped otherwise. Sizes are tiny (the simulator runs every CUDA thread as a
Python thread) and ``LSTMF_THREADS_PER_BLOCK`` is patched to 4, so batches, sequences
and parameters span several blocks.

* ``gpu_loss_grad`` / ``gpu_forward`` equal ``loss_grad`` / ``forward`` (1e-6 in
  float64, 1e-4 in float32) for both cells, one and two layers, every loss, variable
  lengths, masks with zeros, initial states, weights in shared or global memory, and
  many models at once.
* ``gpu_train_batches`` equals ``train_batches`` (SGD, momentum, Adam, L2, frozen
  parameters, clipping, a diverging batch), also for many models at once.
* Estimators: ``device="cuda"`` fits what ``device="cpu"`` fits; the fitted model
  pickles, saves and predicts on a machine without a GPU; ``device="cuda"`` without
  a GPU raises, ``device="auto"`` falls back to the CPU.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

from lstmforecast import _device, config
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
    make_layout,
    recurrent_size,
)
from lstmforecast._optimizers import OPT_ADAM, OPT_SGD, make_hyper
from lstmforecast._training import train_batches

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not _device.cuda_available(),
                       reason="numba.cuda sees no GPU (set NUMBA_ENABLE_CUDASIM=1 "
                              "to run these tests on Numba's CUDA simulator)"),
]

ROOT = Path(__file__).resolve().parent.parent

LOSS_KINDS = [LOSS_SQUARED, LOSS_SIGMOID_SQUARED, LOSS_SOFTMAX_XENT,
              LOSS_LOGISTIC_XENT]
LOSS_NAMES = {LOSS_SQUARED: "sq", LOSS_SIGMOID_SQUARED: "sigsq",
              LOSS_SOFTMAX_XENT: "softmax", LOSS_LOGISTIC_XENT: "logistic"}
# (cell, hidden_size, block_size)
CELLS = [(CELL_LSTM, 3, 1), (CELL_LSTM1997, 3, 1), (CELL_LSTM1997, 4, 2),
         (CELL_LSTM1997_TABLE10, 4, 2), (CELL_LSTM1997_EXP2, 4, 2),
         (CELL_LSTM1997_EXP2_CENTERED, 4, 2)]
CELL_IDS = ["lstm-H3", "lstm1997-H3-S1", "lstm1997-H4-S2", "lstm1997table10-H4-S2",
            "lstm1997exp2-H4-S2", "lstm1997exp2centered-H4-S2"]
TOL = {np.float64: dict(rtol=1e-6, atol=1e-6), np.float32: dict(rtol=1e-4, atol=1e-4)}
LENGTHS = (5, 1, 3, 6, 4, 2, 6)   # 7 sequences: 2 blocks of 4 threads


@pytest.fixture(autouse=True)
def _small_blocks(monkeypatch):
    """Four threads per block: every launch here spans several blocks."""
    monkeypatch.setattr(config, "LSTMF_THREADS_PER_BLOCK", 4)


@pytest.fixture
def gpu():
    from lstmforecast import gpu_lstm
    return gpu_lstm


class Problem:
    """A random network and padded data set, in ``dtype``."""

    def __init__(self, seed, cell, hidden_size, block_size, num_layers, loss_kind,
                 lengths=LENGTHS, input_size=2, n_outputs=3, dtype=np.float64,
                 n_models=None, input_to_output=False):
        rng = np.random.default_rng(seed)
        self.dtype = dtype
        self.args = (cell, hidden_size, block_size, loss_kind)
        self.layout, n_params = make_layout(cell, input_size, hidden_size,
                                            num_layers, n_outputs, block_size,
                                            input_to_output)
        shape = (n_params,) if n_models is None else (n_models, n_params)
        self.params = rng.normal(scale=0.7, size=shape).astype(dtype)
        N, T = len(lengths), max(lengths)
        self.lengths = np.asarray(lengths, dtype=np.int64)
        self.X = np.zeros((N, T, input_size), dtype=dtype)
        self.Y = np.zeros((N, T, n_outputs), dtype=dtype)
        self.mask = np.zeros((N, T), dtype=dtype)
        for b, length in enumerate(lengths):
            self.X[b, :length] = rng.normal(size=(length, input_size))
            self.Y[b, :length] = _targets(rng, length, n_outputs, loss_kind)
            m = rng.uniform(0.5, 2.0, size=length)
            m[rng.uniform(size=length) < 0.3] = 0.0
            m[-1] = 1.0
            self.mask[b, :length] = m
        R = recurrent_size(cell, hidden_size, block_size)
        state0 = rng.normal(scale=0.5, size=(N, num_layers, R + hidden_size))
        if cell != CELL_LSTM:                      # gate activations in (0, 1)
            state0[:, :, hidden_size:R] = rng.uniform(size=(N, num_layers,
                                                            R - hidden_size))
        self.state0 = state0.astype(dtype)
        self.no_state = np.zeros((0, num_layers, 1), dtype=dtype)
        # forward runs the sequences in this order (not the rows' own)
        self.order = rng.permutation(N).astype(np.int64)

    def data(self, with_state0=True):
        state0 = self.state0 if with_state0 else self.no_state
        return self.layout, self.X, self.lengths, self.Y, self.mask, state0


def _targets(rng, T, n_outputs, loss_kind):
    if loss_kind == LOSS_SQUARED:
        return rng.normal(size=(T, n_outputs))
    if loss_kind == LOSS_SIGMOID_SQUARED:
        return rng.uniform(size=(T, n_outputs))
    if loss_kind == LOSS_SOFTMAX_XENT:
        return np.eye(n_outputs)[rng.integers(n_outputs, size=T)]
    return rng.uniform(size=(T, n_outputs))  # soft, as loss="log_loss" sends


def _close(actual, expected, dtype, err_msg=""):
    tol = TOL[dtype]
    scale = max(1.0, float(np.max(np.abs(expected))) if np.size(expected) else 1.0)
    np.testing.assert_allclose(actual, expected, rtol=tol["rtol"],
                               atol=tol["atol"] * scale, err_msg=err_msg)


# ----------------------------------------------------------------------------------
# 1. Kernels: loss and gradient, forward
# ----------------------------------------------------------------------------------

SEQ_INDEX = np.array([6, 0, 3, 3, 1, 4], dtype=np.int64)   # permuted, one repeat


@pytest.mark.parametrize("loss_kind", LOSS_KINDS, ids=LOSS_NAMES.get)
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("cell, hidden_size, block_size", CELLS, ids=CELL_IDS)
def test_loss_grad_matches_cpu(gpu, cell, hidden_size, block_size, num_layers,
                               loss_kind):
    prob = Problem(3, cell, hidden_size, block_size, num_layers, loss_kind)
    args = prob.data(with_state0=num_layers == 2)
    ref_loss, ref_grad = loss_grad(prob.params, *args, SEQ_INDEX, *prob.args, True)
    loss, grad = gpu.gpu_loss_grad(prob.params, *args, SEQ_INDEX, *prob.args, True)
    assert np.linalg.norm(ref_grad) > 1e-3, "weak test: the gradient vanishes"
    assert isinstance(loss, float) and grad.dtype == np.float64
    assert loss == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
    _close(grad, ref_grad, np.float64)


@pytest.mark.parametrize("memory", ["shared", "global"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("cell, hidden_size, block_size", CELLS, ids=CELL_IDS)
def test_loss_grad_dtypes_and_weight_memory(gpu, monkeypatch, cell, hidden_size,
                                            block_size, dtype, memory):
    if memory == "global":
        monkeypatch.setattr(config, "LSTMF_GPU_SHARED_BYTES", 0)
    prob = Problem(5, cell, hidden_size, block_size, 2, LOSS_SQUARED, dtype=dtype)
    args = prob.data()
    ref_loss, ref_grad = loss_grad(prob.params, *args, SEQ_INDEX, *prob.args, True)
    loss, grad = gpu.gpu_loss_grad(prob.params, *args, SEQ_INDEX, *prob.args, True)
    assert grad.dtype == dtype
    assert loss == pytest.approx(ref_loss, rel=TOL[dtype]["rtol"],
                                 abs=TOL[dtype]["atol"])
    _close(grad, ref_grad, dtype)


@pytest.mark.parametrize("last_only", [False, True], ids=["sequence", "last"])
@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("cell, hidden_size, block_size", CELLS, ids=CELL_IDS)
def test_forward_matches_cpu(gpu, cell, hidden_size, block_size, num_layers,
                             last_only):
    for loss_kind in (LOSS_SQUARED, LOSS_SIGMOID_SQUARED, LOSS_SOFTMAX_XENT):
        prob = Problem(7, cell, hidden_size, block_size, num_layers, loss_kind)
        for with_state0 in (False, True):
            args = (prob.layout, prob.X, prob.lengths,
                    prob.state0 if with_state0 else prob.no_state, prob.order)
            ref_out, ref_state = forward(prob.params, *args, *prob.args, last_only,
                                         True)
            out, state = gpu.gpu_forward(prob.params, *args, *prob.args, last_only,
                                         True)
            assert out.shape == ref_out.shape and state.shape == ref_state.shape
            msg = f"loss_kind={loss_kind} state0={with_state0}"
            _close(out, ref_out, np.float64, msg)
            _close(state, ref_state, np.float64, msg)


@pytest.mark.parametrize("num_layers", [1, 2], ids=["L1", "L2"])
@pytest.mark.parametrize("cell, hidden_size, block_size", CELLS[::2],
                         ids=CELL_IDS[::2])
def test_head_that_sees_the_input_matches_cpu(gpu, cell, hidden_size, block_size,
                                              num_layers):
    """``input_to_output`` (``head.weight_input``): gradient and both forward
    modes as the CPU kernels."""
    prob = Problem(8, cell, hidden_size, block_size, num_layers, LOSS_SIGMOID_SQUARED,
                   input_to_output=True)
    args = prob.data()
    ref_loss, ref_grad = loss_grad(prob.params, *args, SEQ_INDEX, *prob.args, True)
    loss, grad = gpu.gpu_loss_grad(prob.params, *args, SEQ_INDEX, *prob.args, True)
    assert loss == pytest.approx(ref_loss, rel=1e-6, abs=1e-6)
    _close(grad, ref_grad, np.float64)
    for last_only in (False, True):
        fargs = (prob.layout, prob.X, prob.lengths, prob.state0, prob.order)
        ref_out, _ = forward(prob.params, *fargs, *prob.args, last_only, True)
        out, _ = gpu.gpu_forward(prob.params, *fargs, *prob.args, last_only, True)
        _close(out, ref_out, np.float64, f"last_only={last_only}")


@pytest.mark.parametrize("memory", ["shared", "global"])
def test_forward_float32(gpu, monkeypatch, memory):
    if memory == "global":
        monkeypatch.setattr(config, "LSTMF_GPU_SHARED_BYTES", 0)
    prob = Problem(8, CELL_LSTM, 3, 1, 2, LOSS_LOGISTIC_XENT, dtype=np.float32)
    args = (prob.layout, prob.X, prob.lengths, prob.state0, prob.order, *prob.args,
            False, True)
    ref_out, ref_state = forward(prob.params, *args)
    out, state = gpu.gpu_forward(prob.params, *args)
    assert out.dtype == np.float32
    _close(out, ref_out, np.float32)
    _close(state, ref_state, np.float32)


def test_many_models_match_one_at_a_time(gpu):
    """``params (M, P)``: each model equals its own CPU run (loss, gradient with a
    per-model ``seq_index``, forward)."""
    prob = Problem(9, CELL_LSTM1997, 4, 2, 1, LOSS_SQUARED, n_models=3)
    args = prob.data()
    seq = np.array([[0, 1, 2, 3], [6, 5, 4, 3], [2, 2, 0, 6]], dtype=np.int64)
    losses, grads = gpu.gpu_loss_grad(prob.params, *args, seq, *prob.args)
    out, state = gpu.gpu_forward(prob.params, prob.layout, prob.X, prob.lengths,
                                 prob.state0, prob.order, *prob.args, True)
    assert losses.shape == (3,) and grads.shape == prob.params.shape
    for m in range(3):
        ref_loss, ref_grad = loss_grad(prob.params[m], *args, seq[m], *prob.args, True)
        assert losses[m] == pytest.approx(ref_loss, rel=1e-6)
        _close(grads[m], ref_grad, np.float64, f"model {m}")
        ref_out, ref_state = forward(prob.params[m], prob.layout, prob.X,
                                     prob.lengths, prob.state0, prob.order,
                                     *prob.args, True, True)
        _close(out[m], ref_out, np.float64, f"model {m}")
        _close(state[m], ref_state, np.float64, f"model {m}")


# ----------------------------------------------------------------------------------
# 2. Training: gpu_train_batches == train_batches
# ----------------------------------------------------------------------------------

OPTIMIZERS = {
    "sgd": (OPT_SGD, dict(learning_rate=0.1)),
    "nesterov-l2-clip-frozen": (OPT_SGD, dict(learning_rate=0.05, momentum=0.9,
                                              nesterov=True, alpha=0.01,
                                              clip_norm=0.5)),
    "adam-l2-clip": (OPT_ADAM, dict(learning_rate=0.01, alpha=0.1, clip_norm=1.0)),
}


def _train_inputs(prob, frozen, seed=0):
    P = prob.params.shape[-1]
    rng = np.random.default_rng(seed)
    l2_mask = np.ones(P, dtype=prob.dtype)
    l2_mask[-3:] = 0.0
    train_mask = np.ones(P, dtype=prob.dtype)
    if frozen:
        train_mask[rng.uniform(size=P) < 0.3] = 0.0
    order = rng.permutation(len(prob.lengths)).astype(np.int64)
    return l2_mask, train_mask, order


def _run(fn, prob, params, opt_kind, hyper, l2_mask, train_mask, order, batch_size=3,
         first_batch=0, n_batches=3):
    lead = params.shape[:-1]
    opt_state = np.zeros(lead + (2, params.shape[-1]), dtype=prob.dtype)
    step = np.zeros(lead if lead else (1,), dtype=np.int64)
    result = fn(params, prob.layout, prob.X, prob.lengths, prob.Y, prob.mask,
                prob.no_state, order, batch_size, first_batch, n_batches,
                *prob.args, opt_kind, opt_state, step, make_hyper(**hyper),
                l2_mask, train_mask, True)
    return result, opt_state, step


@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_train_batches_matches_cpu(gpu, name, dtype):
    opt_kind, hyper = OPTIMIZERS[name]
    prob = Problem(11, CELL_LSTM, 3, 1, 2, LOSS_SQUARED, dtype=dtype)
    l2_mask, train_mask, order = _train_inputs(prob, "frozen" in name)
    p_cpu, p_gpu = prob.params.copy(), prob.params.copy()
    (l_c, s_c, f_c), o_c, st_c = _run(train_batches, prob, p_cpu, opt_kind, hyper,
                                      l2_mask, train_mask, order)
    (l_g, s_g, f_g), o_g, st_g = _run(gpu.gpu_train_batches, prob, p_gpu, opt_kind,
                                      hyper, l2_mask, train_mask, order)
    assert f_c == f_g == -1
    assert st_c.tolist() == st_g.tolist() == [3]
    assert s_c.tolist() == s_g.tolist() == [3, 3, 1]
    _close(l_g, l_c, dtype)
    _close(p_gpu, p_cpu, dtype)
    _close(o_g, o_c, dtype)
    assert not np.array_equal(p_gpu, prob.params)
    if "frozen" in name:
        frozen = train_mask == 0
        assert np.array_equal(p_gpu[frozen], prob.params[frozen])


def test_train_batches_first_batch_and_slices(gpu):
    """Batches 1..2 of an order, as the estimator's sliced calls run them."""
    prob = Problem(12, CELL_LSTM1997, 4, 2, 1, LOSS_SIGMOID_SQUARED)
    l2_mask, train_mask, order = _train_inputs(prob, False)
    hyper = dict(learning_rate=0.02)
    p_cpu, p_gpu = prob.params.copy(), prob.params.copy()
    (l_c, s_c, _), _, _ = _run(train_batches, prob, p_cpu, OPT_ADAM, hyper, l2_mask,
                               train_mask, order, batch_size=2, first_batch=1,
                               n_batches=2)
    (l_g, s_g, _), _, _ = _run(gpu.gpu_train_batches, prob, p_gpu, OPT_ADAM, hyper,
                               l2_mask, train_mask, order, batch_size=2,
                               first_batch=1, n_batches=2)
    assert s_g.tolist() == s_c.tolist() == [2, 2]
    _close(l_g, l_c, np.float64)
    _close(p_gpu, p_cpu, np.float64)


def test_train_batches_nan_target_fails_without_update(gpu):
    prob = Problem(13, CELL_LSTM, 3, 1, 1, LOSS_SQUARED)
    l2_mask, train_mask, order = _train_inputs(prob, False)
    b = order[3]                            # in the second batch of 3
    prob.Y[b, prob.lengths[b] - 1, 0] = np.nan
    p_cpu, p_gpu = prob.params.copy(), prob.params.copy()
    hyper = dict(learning_rate=0.1, momentum=0.9)
    (l_c, s_c, f_c), o_c, st_c = _run(train_batches, prob, p_cpu, OPT_SGD, hyper,
                                      l2_mask, train_mask, order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # the simulator's NaN math
        (l_g, s_g, f_g), o_g, st_g = _run(gpu.gpu_train_batches, prob, p_gpu,
                                          OPT_SGD, hyper, l2_mask, train_mask, order)
    assert f_c == f_g == 1
    assert st_c.tolist() == st_g.tolist() == [1]
    assert s_g.tolist() == s_c.tolist() == [3, 3, 0]
    assert np.isnan(l_g[1]) and l_g[2] == 0.0
    _close(l_g[:1], l_c[:1], np.float64)
    _close(p_gpu, p_cpu, np.float64)
    _close(o_g, o_c, np.float64)


def test_train_batches_overflowing_update_is_undone(gpu):
    prob = Problem(14, CELL_LSTM, 3, 1, 1, LOSS_SQUARED)
    l2_mask, train_mask, order = _train_inputs(prob, False)
    hyper = dict(learning_rate=1e300)
    p_cpu, p_gpu = prob.params.copy(), prob.params.copy()
    (_, _, f_c), _, st_c = _run(train_batches, prob, p_cpu, OPT_SGD, hyper, l2_mask,
                                train_mask, order)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        (_, _, f_g), _, st_g = _run(gpu.gpu_train_batches, prob, p_gpu, OPT_SGD,
                                    hyper, l2_mask, train_mask, order)
    assert f_g == f_c >= 0
    assert st_g.tolist() == st_c.tolist()
    np.testing.assert_allclose(p_gpu, p_cpu, rtol=1e-6)
    assert np.all(np.isfinite(p_gpu))


def test_many_models_train_independently(gpu):
    """Three models with their own rows: each equals its own CPU run; a model that
    diverges stops without disturbing the others, also in the next call."""
    prob = Problem(15, CELL_LSTM1997, 4, 2, 1, LOSS_SQUARED, n_models=3)
    l2_mask, train_mask, _ = _train_inputs(prob, False)
    order = np.array([[0, 1, 2, 3, 4, 5], [6, 5, 4, 3, 2, 1], [1, 3, 5, 0, 2, 4]],
                     dtype=np.int64)
    prob.params[1, -15:] = 1e200          # model 1's head overflows: inf loss
    hyper = dict(learning_rate=0.02)
    params = prob.params.copy()
    opt_state = np.zeros((3, 2, params.shape[1]))
    step = np.zeros(3, dtype=np.int64)
    trainer = gpu.GpuTrainer(params, prob.layout, prob.X, prob.lengths, prob.Y,
                             prob.mask, prob.no_state, *prob.args, OPT_ADAM,
                             opt_state, step, make_hyper(**hyper), l2_mask,
                             train_mask)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        losses, sizes, failed = trainer.run(order, 4, 0, 2)
        losses2, _, failed2 = trainer.run(order, 4, 0, 1)
    assert losses.shape == (3, 2) and sizes.tolist() == [4, 2]
    assert failed[0] == failed[2] == -1 and failed[1] >= 0
    assert failed2.tolist() == [-1, -2, -1] and losses2[1, 0] == 0.0
    for m in (0, 2):
        p_ref = prob.params[m].copy()
        o_ref = np.zeros((2, p_ref.size))
        s_ref = np.zeros(1, dtype=np.int64)
        for first, n in ((0, 2), (0, 1)):
            train_batches(p_ref, prob.layout, prob.X, prob.lengths, prob.Y,
                          prob.mask, prob.no_state, order[m], 4, first, n,
                          *prob.args, OPT_ADAM, o_ref, s_ref, make_hyper(**hyper),
                          l2_mask, train_mask, True)
        _close(params[m], p_ref, np.float64, f"model {m}")
        _close(opt_state[m], o_ref, np.float64, f"model {m}")
        assert step[m] == s_ref[0] == 3
    assert step[1] == failed[1]


# ----------------------------------------------------------------------------------
# 3. Estimators
# ----------------------------------------------------------------------------------


def _series_data(seed=0, n=14, T=5):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, 2))
    return X, X[:, :, 0].sum(axis=1) * 0.3


def _fit_pair(cls, X, y, **params):
    from sklearn.exceptions import ConvergenceWarning
    models = []
    for device in ("cpu", "cuda"):
        model = cls(device=device, random_state=0, **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            model.fit(X, y)
        models.append(model)
    return models


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_regressor_cuda_fits_and_predicts_like_cpu(dtype, tmp_path, monkeypatch):
    from lstmforecast import LSTMRegressor, load

    X, y = _series_data()
    cpu, gpu_model = _fit_pair(LSTMRegressor, X, y, hidden_size=3, num_layers=2,
                               batch_size=5, max_epochs=2, learning_rate=0.05,
                               dtype=dtype, alpha=1e-3, clip_norm=5.0)
    tol = TOL[np.dtype(dtype).type]
    assert gpu_model.params_.dtype == np.dtype(dtype)
    assert isinstance(gpu_model.params_, np.ndarray)
    assert gpu_model._opt_step[0] == cpu._opt_step[0] == 6
    np.testing.assert_allclose(gpu_model.loss_curve_, cpu.loss_curve_, **tol)
    np.testing.assert_allclose(gpu_model.params_, cpu.params_, **tol)
    pred_gpu = gpu_model.predict(X)                 # on the GPU
    np.testing.assert_allclose(pred_gpu, cpu.predict(X), **tol)

    # The fitted model moves to a machine without a GPU: pickle and save/load.
    blob = pickle.dumps(gpu_model)
    path = tmp_path / "model.npz"
    gpu_model.save(path)
    monkeypatch.setattr(_device, "cuda_available", lambda: False)
    for moved in (pickle.loads(blob), load(path)):
        assert moved.device == "cuda"
        np.testing.assert_allclose(moved.predict(X), pred_gpu, **tol)
        np.testing.assert_array_equal(moved.params_, gpu_model.params_)


def test_classifier_sequence_output_on_cuda():
    from lstmforecast import LSTMClassifier

    rng = np.random.default_rng(1)
    X = rng.normal(size=(9, 4, 2))
    y = (X[:, :, 0] > 0).astype(int) + (X[:, :, 1] > 1)  # 3 classes per step
    cpu, gpu_model = _fit_pair(LSTMClassifier, X, y, hidden_size=3, batch_size=4,
                               max_epochs=2, learning_rate=0.05, output="sequence",
                               dtype="float64")
    np.testing.assert_allclose(gpu_model.params_, cpu.params_, **TOL[np.float64])
    np.testing.assert_allclose(gpu_model.predict_proba(X), cpu.predict_proba(X),
                               **TOL[np.float64])


def test_partial_fit_and_warm_start_continue_on_cuda():
    from lstmforecast import LSTMRegressor

    X, y = _series_data(2, n=8)
    models = []
    for device in ("cpu", "cuda"):
        model = LSTMRegressor(hidden_size=2, batch_size=4, learning_rate=0.05,
                              optimizer="sgd", momentum=0.5, device=device,
                              dtype="float64", random_state=3)
        model.partial_fit(X, y)
        model.partial_fit(X, y)
        models.append(model)
    assert models[1]._opt_step[0] == 4
    np.testing.assert_allclose(models[1].params_, models[0].params_, rtol=1e-6,
                               atol=1e-6)
    np.testing.assert_allclose(models[1]._opt_state, models[0]._opt_state,
                               rtol=1e-6, atol=1e-6)


def test_forecaster_cuda_forecasts_like_cpu():
    from lstmforecast import LSTMForecaster

    y = np.sin(np.arange(60) / 5.0) + 0.05 * np.random.default_rng(0).normal(size=60)
    forecasts = []
    for device in ("cpu", "cuda"):
        model = LSTMForecaster(window=6, horizon=3, hidden_size=3, max_epochs=2,
                               batch_size=16, early_stopping=False, dtype="float64",
                               device=device, random_state=0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            model.fit(y)
        forecasts.append(np.asarray(model.predict(), dtype=float))
    np.testing.assert_allclose(forecasts[1], forecasts[0], **TOL[np.float64])


def test_device_cuda_without_gpu_raises(monkeypatch):
    from lstmforecast import LSTMRegressor

    monkeypatch.setattr(_device, "cuda_available", lambda: False)
    X, y = _series_data()
    model = LSTMRegressor(hidden_size=2, max_epochs=1, device="cuda")
    with pytest.raises(ValueError, match="no CUDA GPU.*device='cpu'"):
        model.fit(X, y)
    assert not hasattr(model, "params_")


def test_device_auto_without_gpu_runs_on_cpu(monkeypatch):
    from lstmforecast import LSTMRegressor

    def no_backend():
        raise AssertionError("the GPU backend was used without a GPU")

    X, y = _series_data()
    cpu, _ = _fit_pair(LSTMRegressor, X, y, hidden_size=2, max_epochs=1,
                       dtype="float64")
    monkeypatch.setattr(_device, "cuda_available", lambda: False)
    monkeypatch.setattr(_device, "gpu_backend", no_backend)
    auto = LSTMRegressor(hidden_size=2, max_epochs=1, random_state=0, device="auto",
                         dtype="float64")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        auto.fit(X, y)
    assert auto.params_.tobytes() == cpu.params_.tobytes()
    assert auto.predict(X).tobytes() == cpu.predict(X).tobytes()


def test_device_resolution(monkeypatch):
    assert _device.resolve_device("cpu") == "cpu"
    assert _device.resolve_device("cuda") == "cuda"
    assert _device.resolve_device("auto") == "cuda"
    monkeypatch.setattr(_device, "cuda_available", lambda: False)
    assert _device.resolve_device("auto") == "cpu"
    assert _device.resolve_device("cuda", fallback=True) == "cpu"
    with pytest.raises(ValueError, match="device='cpu'"):
        _device.resolve_device("cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        _device.resolve_device("tpu")


def test_truncated_gradient_has_no_gpu_kernel():
    from lstmforecast import LSTMRegressor

    X, y = _series_data()
    model = LSTMRegressor(hidden_size=2, cell="lstm1997", gradient="truncated",
                          batch_size=1, max_epochs=1, device="cuda")
    with pytest.raises(ValueError, match="truncated.*device='cpu'"):
        model.fit(X, y)


def test_import_does_not_import_numba_cuda():
    code = ("import sys, lstmforecast\n"
            "from lstmforecast import LSTMRegressor\n"
            "print('numba.cuda' in sys.modules, 'lstmforecast.gpu_lstm' in "
            "sys.modules)\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["False", "False"]
