"""The truncated 1997 learning rule's kernel against the NumPy oracle of Appendix A."""

import numpy as np
import pytest

from lstmforecast import _layout
from lstmforecast._optimizers import OPT_SGD, make_hyper
from lstmforecast._truncated import train_truncated, truncated_loss_grad

try:
    from naive_truncated import naive_truncated_loss_grad, naive_truncated_online
except ImportError:  # tests/ imported as a package
    from tests.naive_truncated import naive_truncated_loss_grad, naive_truncated_online

CELL = _layout.CELL_LSTM1997


def _problem(rng, D, H, S, K, lengths, loss_kind, dtype=np.float64):
    layout, n_params = _layout.make_layout(CELL, D, H, 1, K, S)
    params = rng.uniform(-0.5, 0.5, n_params)
    N, T = len(lengths), max(lengths)
    X = np.zeros((N, T, D))
    Y = np.zeros((N, T, K))
    M = np.zeros((N, T))
    for b, length in enumerate(lengths):
        X[b, :length] = rng.normal(size=(length, D))
        if loss_kind == _layout.LOSS_SOFTMAX_XENT:
            Y[b, :length] = np.eye(K)[rng.integers(0, K, length)]
        elif loss_kind == _layout.LOSS_LOGISTIC_XENT:
            Y[b, :length] = rng.integers(0, 2, (length, K))
        else:
            Y[b, :length] = rng.random((length, K))
        M[b, :length] = (rng.random(length) > 0.4) * rng.uniform(0.5, 2, length)
        M[b, length - 1] = 1.0
    return (layout, params.astype(dtype), X.astype(dtype),
            np.array(lengths, dtype=np.int64), Y.astype(dtype), M.astype(dtype))


@pytest.mark.parametrize("block_size,hidden", [(1, 3), (2, 4)])
@pytest.mark.parametrize("loss_kind", [0, 1, 2, 3])
def test_truncated_gradient_matches_oracle(block_size, hidden, loss_kind):
    rng = np.random.default_rng(10 * block_size + loss_kind)
    D, K = 2, 3
    layout, p, X, lengths, Y, M = _problem(rng, D, hidden, block_size, K, [6, 1, 4],
                                           loss_kind)
    order = np.array([2, 0, 1], dtype=np.int64)
    loss, grad = truncated_loss_grad(p, layout, X, lengths, Y, M, order, hidden,
                                     block_size, loss_kind)
    ref_loss, ref_grad = naive_truncated_loss_grad(
        p, D, hidden, K, block_size, loss_kind,
        [X[b, :lengths[b]] for b in order], [Y[b, :lengths[b]] for b in order],
        [M[b, :lengths[b]] for b in order])
    np.testing.assert_allclose(loss, ref_loss, rtol=1e-10)
    np.testing.assert_allclose(grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_float32_agrees_with_float64():
    rng = np.random.default_rng(3)
    layout, p, X, lengths, Y, M = _problem(rng, 2, 4, 2, 1, [7, 5], 1)
    order = np.arange(2, dtype=np.int64)
    loss64, grad64 = truncated_loss_grad(p, layout, X, lengths, Y, M, order, 4, 2, 1)
    loss32, grad32 = truncated_loss_grad(
        p.astype(np.float32), layout, X.astype(np.float32), lengths,
        Y.astype(np.float32), M.astype(np.float32), order, 4, 2, 1)
    assert grad32.dtype == np.float32
    np.testing.assert_allclose(loss32, loss64, rtol=1e-4)
    assert np.linalg.norm(grad32 - grad64) <= 1e-4 * np.linalg.norm(grad64)


@pytest.mark.parametrize("loss_kind", [0, 1])
def test_step_updates_match_online_oracle(loss_kind):
    rng = np.random.default_rng(7)
    D, H, S, K, lr = 2, 4, 2, 1, 0.3
    layout, p, X, lengths, Y, M = _problem(rng, D, H, S, K, [8], loss_kind)
    expected = naive_truncated_online(p, D, H, K, S, loss_kind, X[0], Y[0], M[0], lr)
    params = p.copy()
    opt_state = np.zeros((2, p.size))
    step = np.zeros(1, dtype=np.int64)
    ones = np.ones_like(p)
    losses, sizes, failed = train_truncated(
        params, layout, X, lengths, Y, M, np.zeros(1, dtype=np.int64), 1, 0, 1, H, S,
        loss_kind, True, OPT_SGD, opt_state, step, make_hyper(lr, momentum=0.0),
        ones, ones)
    assert failed == -1
    assert step[0] == np.count_nonzero(M[0])
    np.testing.assert_allclose(params, expected, rtol=1e-10, atol=1e-13)


def test_sequence_update_is_one_sgd_step_with_the_batch_gradient():
    rng = np.random.default_rng(8)
    layout, p, X, lengths, Y, M = _problem(rng, 2, 4, 2, 1, [5, 3, 6], 1)
    order = np.arange(3, dtype=np.int64)
    _, grad = truncated_loss_grad(p, layout, X, lengths, Y, M, order, 4, 2, 1)
    params = p.copy()
    ones = np.ones_like(p)
    train_truncated(params, layout, X, lengths, Y, M, order, 3, 0, 1, 4, 2, 1, False,
                    OPT_SGD, np.zeros((2, p.size)), np.zeros(1, dtype=np.int64),
                    make_hyper(0.5, momentum=0.0), ones, ones)
    np.testing.assert_allclose(params, p - 0.5 * grad, rtol=1e-12)


def test_divergence_is_reported_and_rolled_back():
    rng = np.random.default_rng(9)
    layout, p, X, lengths, Y, M = _problem(rng, 2, 4, 2, 1, [5], 0)
    Y[0, lengths[0] - 1] = np.nan
    params = p.copy()
    ones = np.ones_like(p)
    _, _, failed = train_truncated(
        params, layout, X, lengths, Y, M, np.zeros(1, dtype=np.int64), 1, 0, 1, 4, 2,
        0, True, OPT_SGD, np.zeros((2, p.size)), np.zeros(1, dtype=np.int64),
        make_hyper(0.1, momentum=0.0), ones, ones)
    assert failed == 0
    assert np.all(np.isfinite(params))
