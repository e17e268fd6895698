"""Rolling-origin evaluation of forecasters: :func:`backtest`.

Folds
-----
With ``n`` observations, fold ``i`` has the origin ``initial + i * step``: the
forecaster sees ``y[:origin]`` (and ``X[:origin]``) only, forecasts ``horizon``
steps and is scored on ``y[origin:origin + horizon]``. Folds run while
``origin + horizon <= n`` (complete folds only). The training part grows (an
expanding window).

``refit`` chooses how the forecaster reaches each origin:

* ``True``: a fresh :func:`sklearn.base.clone` is fitted at every fold;
* ``False``: the clone fitted at the first fold is moved on with
  ``update(y[previous:origin], X_new=..., learn=learn)`` (no refit);
* an integer ``k``: refit every ``k`` folds, update in between.

Any object with ``fit(y[, X])``, ``predict(horizon=..., [X=...])`` (and
``update``, ``predict_interval`` when used) works, not only
:class:`~lstmforecast.LSTMForecaster`.
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np
import pandas as pd
from sklearn.base import clone

from . import metrics as _metrics
from .forecaster import _as_table

__all__ = ["FORECAST_COLUMNS", "METRIC_COLUMNS", "BacktestResult", "backtest"]

#: Columns of :attr:`BacktestResult.forecasts` (``lower``/``upper`` only with
#: ``coverage``).
FORECAST_COLUMNS = ("fold", "cutoff", "time", "step", "target", "y_true", "y_pred",
                    "lower", "upper")
#: Columns of :attr:`BacktestResult.metrics` (``coverage``/``width`` only with
#: ``coverage``).
METRIC_COLUMNS = ("fold", "cutoff", "n_train", "target", "mae", "rmse", "mape",
                  "smape", "mase", "coverage", "width")


class BacktestResult(NamedTuple):
    """What :func:`backtest` returns.

    Attributes
    ----------
    forecasts : DataFrame
        One row per fold, forecast step and target: ``fold`` (0, 1, ...),
        ``cutoff`` (index label of the last observation the fold's model saw; its
        position for NumPy input), ``time`` (label of the forecast observation),
        ``step`` (1 to ``horizon``), ``target`` (column name; ``"y"`` for an
        unnamed Series or 1-D array, the column position for a 2-D array),
        ``y_true``, ``y_pred``, and with ``coverage`` the interval ``lower`` and
        ``upper``.
    metrics : DataFrame
        One row per fold and target: ``fold``, ``cutoff``, ``n_train``
        (observations seen), ``target``, ``mae``, ``rmse``, ``mape`` and ``smape``
        (percent), ``mase`` (scaled by the fold's in-sample seasonal naive error
        with period ``m``), and with ``coverage`` the interval ``coverage``
        (fraction) and mean ``width``. A metric undefined on a fold (MAPE with a
        zero, MASE on a constant training part) is NaN.
    """

    forecasts: pd.DataFrame
    metrics: pd.DataFrame


def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) \
            or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _rows(data, start, stop):
    """Rows ``start:stop`` of a pandas object or array, in its own type."""
    if data is None:
        return None
    if isinstance(data, (pd.Series, pd.DataFrame)):
        return data.iloc[start:stop]
    return data[start:stop]


def _target_names(y, meta, k):
    if meta["kind"] == "series":
        return ["y" if y.name is None else y.name]
    if meta["kind"] == "frame":
        return list(meta["columns"])
    return ["y"] if meta["ndim"] == 1 else list(range(k))


def _safe(metric, *args, **kwargs):
    """Compute the metric, or NaN where it is undefined (it raises ValueError)."""
    try:
        return metric(*args, **kwargs)
    except ValueError:
        return np.nan


def backtest(forecaster, y, X=None, *, initial, step=None, horizon=None, refit=True,
             coverage=None, learn=False, m=1):
    """Rolling-origin (time-series cross-validation) evaluation of a forecaster.

    Parameters
    ----------
    forecaster : estimator
        An unfitted or fitted forecaster; it is cloned, never modified.
    y : Series, DataFrame or array-like of shape (n,) or (n, n_targets)
    X : DataFrame or array-like of shape (n, n_covariates), optional
        Covariates aligned with ``y``. Each fold passes ``X[:origin]`` to ``fit``
        and ``X[origin:origin + horizon]`` to ``predict`` (the future-known
        covariates; for a direct :class:`~lstmforecast.LSTMForecaster` the backtest
        ``horizon`` must then equal the forecaster's).
    initial : int
        Observations of the first fold's training part (the first origin).
    step : int, optional
        Observations between consecutive origins; ``horizon`` by default
        (non-overlapping test windows).
    horizon : int, optional
        Steps forecast at each origin; the forecaster's ``horizon`` by default.
    refit : bool or int, default=True
        ``True``: fit a clone at every fold. ``False``: fit once at the first fold
        and ``update`` it with the observations between origins. ``k``: refit every
        ``k`` folds.
    coverage : float, optional
        Also ask ``predict_interval(coverage, ...)`` and score the intervals.
    learn : bool, default=False
        Passed to ``update`` between refits (online learning of the weights).
    m : int, default=1
        Seasonal period of the MASE scaling.

    Returns
    -------
    result : BacktestResult
        Named tuple ``(forecasts, metrics)`` of two DataFrames (see
        :class:`BacktestResult` for their columns).

    Examples
    --------
    >>> import numpy as np
    >>> from lstmforecast import LSTMForecaster
    >>> from lstmforecast.model_selection import backtest
    >>> y = np.sin(np.arange(300) / 5)
    >>> result = backtest(LSTMForecaster(window=10, horizon=5, max_epochs=5),
    ...                   y, initial=200, step=25)  # doctest: +SKIP
    >>> result.metrics["mae"].mean()  # doctest: +SKIP
    """
    values, meta = _as_table(y, "y")
    n, k = values.shape
    horizon = getattr(forecaster, "horizon", None) if horizon is None else horizon
    if horizon is None:
        raise ValueError("horizon is required (the forecaster has no horizon "
                         "attribute)")
    horizon = _check_int(horizon, "horizon", 1)
    step = horizon if step is None else _check_int(step, "step", 1)
    initial = _check_int(initial, "initial", 1)
    if isinstance(refit, (bool, np.bool_)):
        refit_every = 1 if refit else 0
    else:
        refit_every = _check_int(refit, "refit", 0)
    if coverage is not None and (isinstance(coverage, bool)
                                 or not isinstance(coverage, numbers.Real)
                                 or not 0 < coverage < 1):
        raise ValueError(f"coverage must be None or a number in (0, 1), got "
                         f"{coverage!r}")
    m = _check_int(m, "m", 1)
    if X is not None:
        x_values, _ = _as_table(X, "X")
        if x_values.shape[0] != n:
            raise ValueError(f"X has {x_values.shape[0]} rows but y has {n}")
    origins = list(range(initial, n - horizon + 1, step))
    if not origins:
        raise ValueError(f"no fold: initial + horizon = {initial + horizon} exceeds "
                         f"the {n} observations of y")
    labels = meta["index"] if meta["index"] is not None else pd.RangeIndex(n)
    names = _target_names(y, meta, k)

    forecast_rows, metric_rows = [], []
    model, previous = None, None
    for fold, origin in enumerate(origins):
        if model is None or (refit_every and fold % refit_every == 0):
            model = clone(forecaster)
            y_train = _rows(y, 0, origin)
            if X is None:
                model.fit(y_train)
            else:
                model.fit(y_train, _rows(X, 0, origin))
        else:
            y_new = _rows(y, previous, origin)
            if X is None:
                model.update(y_new, learn=learn)
            else:
                model.update(y_new, X_new=_rows(X, previous, origin), learn=learn)
        previous = origin
        extra = {} if X is None else {"X": _rows(X, origin, origin + horizon)}
        lower = upper = None
        if coverage is None:
            pred = model.predict(horizon=horizon, **extra)
        else:
            pred, lower, upper = model.predict_interval(coverage, horizon=horizon,
                                                        **extra)
            lower = _as_forecast(lower, horizon, k, "lower")
            upper = _as_forecast(upper, horizon, k, "upper")
        pred = _as_forecast(pred, horizon, k, "forecast")
        truth = values[origin:origin + horizon]
        cutoff = labels[origin - 1]
        for j in range(horizon):
            for c in range(k):
                row = {"fold": fold, "cutoff": cutoff, "time": labels[origin + j],
                       "step": j + 1, "target": names[c], "y_true": truth[j, c],
                       "y_pred": pred[j, c]}
                if coverage is not None:
                    row["lower"], row["upper"] = lower[j, c], upper[j, c]
                forecast_rows.append(row)
        for c in range(k):
            t, p = truth[:, c], pred[:, c]
            row = {"fold": fold, "cutoff": cutoff, "n_train": origin,
                   "target": names[c],
                   "mae": _metrics.mae(t, p), "rmse": _metrics.rmse(t, p),
                   "mape": _safe(_metrics.mape, t, p),
                   "smape": _metrics.smape(t, p),
                   "mase": _safe(_metrics.mase, t, p, values[:origin, c], m=m)}
            if coverage is not None:
                row["coverage"] = _metrics.interval_coverage(t, lower[:, c],
                                                             upper[:, c])
                row["width"] = _metrics.interval_width(lower[:, c], upper[:, c])
            metric_rows.append(row)
    forecast_cols = [c for c in FORECAST_COLUMNS
                     if coverage is not None or c not in ("lower", "upper")]
    metric_cols = [c for c in METRIC_COLUMNS
                   if coverage is not None or c not in ("coverage", "width")]
    return BacktestResult(pd.DataFrame(forecast_rows, columns=forecast_cols),
                          pd.DataFrame(metric_rows, columns=metric_cols))


def _as_forecast(values, horizon, k, what):
    """Return a forecaster's output as a float array ``(horizon, k)``."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size != horizon * k:
        raise ValueError(f"the forecaster returned a {what} of shape {arr.shape}; "
                         f"expected {horizon} steps x {k} targets")
    return arr.reshape(horizon, k)
