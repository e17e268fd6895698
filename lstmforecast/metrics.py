"""Forecast accuracy metrics: point errors, scaled errors and interval quality.

Every function takes array-likes (NumPy arrays, lists, pandas Series or DataFrames,
read by position, never aligned on their index) of shape ``(n,)`` or
``(n, n_outputs)`` and returns a float, or one value per output column with
``multioutput="raw_values"``.

* :func:`mae`: ``mean |y - f|``
* :func:`rmse`: ``sqrt(mean (y - f)^2)``
* :func:`mape`: ``100 * mean |y - f| / |y|``, in percent
* :func:`smape`: ``100 * mean 2 |y - f| / (|y| + |f|)``, in percent, 0 to 200
* :func:`mase`: ``mean |y - f| / mean_t |y_train[t] - y_train[t - m]|``
* :func:`interval_coverage`: the fraction of ``y`` inside ``[lower, upper]``
* :func:`interval_width`: ``mean (upper - lower)``

(means over the n forecasts of each output).

Notes
-----
* **sMAPE** follows the M3 / M4 competitions (Makridakis & Hibon 2000; Makridakis
  et al. 2020): ``200 * |y - f| / (|y| + |f|)`` per forecast, so it ranges from 0 to
  200 (percent). A term where ``y == f == 0`` counts as 0.
* **MAPE** is in percent too (scikit-learn's ``mean_absolute_percentage_error``
  returns a fraction). It is undefined when ``y`` has a zero: a ``ValueError`` says
  so instead of returning an infinite or arbitrarily large value.
* **MASE** (Hyndman & Koehler 2006) scales the error by the in-sample mean absolute
  error of the seasonal naive forecast ``y_train[t - m]`` on the training series
  (``m=1``: the last-value naive forecast). Below 1: better than that naive
  forecast was in sample. A constant training series (zero scale) raises
  ``ValueError``.

Every metric validates its input: numeric, finite, not empty, 1-D or 2-D, same
shapes; otherwise a ``ValueError`` names the problem. Inputs are never modified.

Examples
--------
>>> from lstmforecast import metrics
>>> metrics.mae([1.0, 2.0, 4.0], [1.0, 3.0, 2.0])
1.0
>>> round(metrics.smape([100.0], [50.0]), 4)
66.6667
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["interval_coverage", "interval_width", "mae", "mape", "mase", "rmse",
           "smape"]

_MULTIOUTPUT = ("uniform_average", "raw_values")


def _as_2d(values, name):
    """Validate ``values``; return a float64 2-D copy ``(n, n_outputs)``."""
    arr = np.asarray(values)
    if arr.dtype.kind not in "biuf":
        raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, n_outputs), got "
                         f"{arr.ndim} dimensions")
    if arr.size == 0:
        raise ValueError(f"{name} is empty")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains infinite values")
    return arr


def _check_same(arrays, names):
    shapes = {a.shape for a in arrays}
    if len(shapes) > 1:
        listed = ", ".join(f"{n} {a.shape}" for n, a in zip(names, arrays))
        raise ValueError(f"shapes differ: {listed}")


def _pair(y_true, y_pred):
    a = _as_2d(y_true, "y_true")
    b = _as_2d(y_pred, "y_pred")
    _check_same([a, b], ["y_true", "y_pred"])
    return a, b


def _reduce(per_output, multioutput):
    if multioutput not in _MULTIOUTPUT:
        raise ValueError(f"multioutput must be one of {_MULTIOUTPUT}, got "
                         f"{multioutput!r}")
    if multioutput == "raw_values":
        return per_output
    return float(np.mean(per_output))


def mae(y_true, y_pred, *, multioutput="uniform_average"):
    """Mean absolute error.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_outputs)
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"
        Average over the outputs, or one value per output.

    Returns
    -------
    error : float or ndarray of shape (n_outputs,)

    Examples
    --------
    >>> mae([1.0, 2.0], [2.0, 4.0])
    1.5
    """
    a, b = _pair(y_true, y_pred)
    return _reduce(np.mean(np.abs(a - b), axis=0), multioutput)


def rmse(y_true, y_pred, *, multioutput="uniform_average"):
    """Root mean squared error (the square root of each output's MSE).

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_outputs)
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"

    Returns
    -------
    error : float or ndarray of shape (n_outputs,)

    Examples
    --------
    >>> rmse([0.0, 0.0], [3.0, 4.0])
    3.5355339059327378
    """
    a, b = _pair(y_true, y_pred)
    return _reduce(np.sqrt(np.mean((a - b) ** 2, axis=0)), multioutput)


def mape(y_true, y_pred, *, multioutput="uniform_average"):
    """Mean absolute percentage error, in percent: ``100 * mean |y - f| / |y|``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_outputs)
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"

    Returns
    -------
    error : float or ndarray of shape (n_outputs,)

    Raises
    ------
    ValueError
        When ``y_true`` has a zero (MAPE is undefined there).

    Examples
    --------
    >>> mape([100.0, 200.0], [110.0, 180.0])
    10.0
    """
    a, b = _pair(y_true, y_pred)
    if np.any(a == 0):
        raise ValueError("MAPE is undefined: y_true contains zeros; use smape or "
                         "mase instead")
    return _reduce(100.0 * np.mean(np.abs(a - b) / np.abs(a), axis=0), multioutput)


def smape(y_true, y_pred, *, multioutput="uniform_average"):
    """Symmetric MAPE in percent, from 0 to 200 (the M3/M4 definition).

    ``100 * mean 2 |y - f| / (|y| + |f|)``; a term with ``y == f == 0`` is 0.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_outputs)
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"

    Returns
    -------
    error : float or ndarray of shape (n_outputs,)

    Examples
    --------
    >>> smape([1.0, 0.0], [1.0, 5.0])
    100.0
    """
    a, b = _pair(y_true, y_pred)
    denom = np.abs(a) + np.abs(b)
    safe = np.where(denom == 0, 1.0, denom)
    terms = np.where(denom == 0, 0.0, 2.0 * np.abs(a - b) / safe)
    return _reduce(100.0 * np.mean(terms, axis=0), multioutput)


def mase(y_true, y_pred, y_train, *, m=1, multioutput="uniform_average"):
    """Mean absolute scaled error with seasonal period ``m``.

    The MAE of the forecast divided by the in-sample MAE of the seasonal naive
    forecast on the training series: ``mean_t |y_train[t] - y_train[t - m]|`` over
    ``t = m, ..., n_train - 1``.

    Parameters
    ----------
    y_true, y_pred : array-like of shape (n,) or (n, n_outputs)
    y_train : array-like of shape (n_train,) or (n_train, n_outputs)
        The series the forecast was made from (at least ``m + 1`` values).
    m : int, default=1
        Seasonal period of the naive forecast (1: the last value).
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"

    Returns
    -------
    error : float or ndarray of shape (n_outputs,)

    Raises
    ------
    ValueError
        When ``y_train`` is too short for ``m`` or its naive error is zero.

    Examples
    --------
    >>> mase([5.0, 6.0], [4.0, 6.0], [1.0, 2.0, 4.0])
    0.3333333333333333
    """
    a, b = _pair(y_true, y_pred)
    train = _as_2d(y_train, "y_train")
    if train.shape[1] != a.shape[1]:
        raise ValueError(f"y_train has {train.shape[1]} outputs, y_true has "
                         f"{a.shape[1]}")
    if (not isinstance(m, numbers.Integral) or isinstance(m, bool)) or m < 1:
        raise ValueError(f"m (the seasonal period) must be an integer >= 1, got {m!r}")
    if train.shape[0] <= m:
        raise ValueError(f"y_train needs more than m={m} values for the seasonal "
                         f"naive error, got {train.shape[0]}")
    scale = np.mean(np.abs(train[m:] - train[:-m]), axis=0)
    if np.any(scale == 0):
        raise ValueError(f"MASE is undefined: the in-sample seasonal naive error "
                         f"(m={m}) of y_train is zero (a constant or exactly periodic "
                         "training series)")
    return _reduce(np.mean(np.abs(a - b), axis=0) / scale, multioutput)


def _bounds(lower, upper):
    """Validate interval bounds (infinite ones allowed); return 2-D copies."""
    out = []
    for name, values in (("lower", lower), ("upper", upper)):
        arr = np.asarray(values)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} must be numeric, got dtype {arr.dtype}")
        arr = np.array(arr, dtype=np.float64)
        if arr.ndim == 1:
            arr = arr[:, None]
        if arr.ndim != 2 or arr.size == 0:
            raise ValueError(f"{name} must be a non-empty 1-D or 2-D array")
        if np.isnan(arr).any():
            raise ValueError(f"{name} contains NaN")
        out.append(arr)
    lo, hi = out
    _check_same([lo, hi], ["lower", "upper"])
    if np.any(lo > hi):
        raise ValueError("lower exceeds upper for some intervals")
    return lo, hi


def interval_coverage(y_true, lower, upper, *, multioutput="uniform_average"):
    """Fraction of observations inside their interval ``lower <= y <= upper``.

    Parameters
    ----------
    y_true, lower, upper : array-like of shape (n,) or (n, n_outputs)
        Bounds may be infinite (an interval with no bound on that side).
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"

    Returns
    -------
    coverage : float or ndarray of shape (n_outputs,), between 0 and 1

    Examples
    --------
    >>> interval_coverage([1.0, 5.0], [0.0, 0.0], [2.0, 2.0])
    0.5
    """
    a = _as_2d(y_true, "y_true")
    lo, hi = _bounds(lower, upper)
    _check_same([a, lo, hi], ["y_true", "lower", "upper"])
    inside = (lo <= a) & (a <= hi)
    return _reduce(np.mean(inside, axis=0), multioutput)


def interval_width(lower, upper, *, multioutput="uniform_average"):
    """Mean interval width ``mean (upper - lower)``.

    Parameters
    ----------
    lower, upper : array-like of shape (n,) or (n, n_outputs)
        An infinite bound gives an infinite width.
    multioutput : {"uniform_average", "raw_values"}, default="uniform_average"

    Returns
    -------
    width : float or ndarray of shape (n_outputs,)

    Examples
    --------
    >>> interval_width([0.0, 1.0], [2.0, 5.0])
    3.0
    """
    lo, hi = _bounds(lower, upper)
    return _reduce(np.mean(hi - lo, axis=0), multioutput)
