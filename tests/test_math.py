"""The scalar helpers of lstmforecast._math, as the kernels see them (jitted)."""

import numpy as np
import numpy.testing as npt
import pytest
from numba import njit

from lstmforecast._math import flush, flush_floor, like, sigmoid, tanh


@njit
def _tanh_and_sigmoid(x):
    t = np.empty_like(x)
    s = np.empty_like(x)
    for i in range(x.shape[0]):
        t[i] = tanh(x[i])
        s[i] = sigmoid(x[i])
    return t, s


@njit
def _flush_all(x):
    floor = flush_floor(x)
    out = np.empty_like(x)
    for i in range(x.shape[0]):
        out[i] = flush(x[i], floor)
    return out, floor


@njit
def _like(x):
    out = np.empty(1, dtype=np.float64)
    half = like(0.5, x)
    out[0] = half * x[0] + like(1e-12, x)  # 1e-12 is lost when float32 stays float32
    return out


def _grid(dtype):
    x = np.concatenate([np.linspace(-12, 12, 200_001), [-np.inf, np.inf, 0.0, -0.0,
                                                        1e-30, -1e-30, 7.9, 8.0]])
    return x.astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_tanh_and_sigmoid_match_numpy(dtype):
    x = _grid(dtype)
    t, s = _tanh_and_sigmoid(x)
    assert t.dtype == dtype and s.dtype == dtype
    exact_t = np.tanh(x.astype(np.float64))
    exact_s = 1.0 / (1.0 + np.exp(-x.astype(np.float64)))
    # float64: the exact functions; float32: the rational approximation, a few ulps
    tol = 1e-15 if dtype == np.float64 else 1e-6
    npt.assert_allclose(t, exact_t, rtol=0, atol=tol)
    npt.assert_allclose(s, exact_s, rtol=0, atol=tol)
    assert np.all(np.abs(t) <= 1.0)
    assert np.all((s >= 0.0) & (s <= 1.0))
    # odd, and monotone up to rounding (no wiggles from the approximation)
    npt.assert_array_equal(_tanh_and_sigmoid(-x)[0], -t)
    assert np.all(np.diff(t[:200_001]) >= -2 * tol)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_nan_propagates(dtype):
    x = np.array([np.nan, 1.0], dtype=dtype)
    t, s = _tanh_and_sigmoid(x)
    assert np.isnan(t[0]) and np.isnan(s[0])
    assert np.isnan(_flush_all(x)[0][0])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_flush_zeroes_only_values_below_the_floor(dtype):
    tiny = np.finfo(dtype).tiny
    x = np.array([tiny / 4, -tiny, tiny * 2.0**23, tiny * 2.0**25, -tiny * 2.0**25,
                  1.0, np.inf, -np.inf, 0.0], dtype=dtype)
    out, floor = _flush_all(x)
    assert floor == dtype(tiny * 2.0**24)
    expected = x.copy()
    expected[:3] = 0.0
    npt.assert_array_equal(out, expected)
    assert out.dtype == dtype


def test_like_keeps_the_argument_type():
    # float32 arithmetic stays float32 (a float literal would promote it to float64)
    assert _like(np.ones(1, np.float32))[0] == 0.5
    assert _like(np.ones(1, np.float64))[0] == 0.5 + 1e-12
