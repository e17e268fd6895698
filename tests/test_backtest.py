"""``lstmforecast.model_selection.backtest``: folds, leakage, refit, output columns.

A recording stub forecaster (last-value forecast) checks the fold origins and that
each fold's model sees only the data up to its origin; the real
:class:`~lstmforecast.LSTMForecaster` checks the output and the refit / update paths.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.base import BaseEstimator

from lstmforecast import LSTMForecaster, metrics
from lstmforecast.model_selection import (
    FORECAST_COLUMNS,
    METRIC_COLUMNS,
    BacktestResult,
    backtest,
)

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


class Recorder:
    """Shared log of the calls; survives ``clone`` (deepcopy returns itself)."""

    def __init__(self):
        self.calls = []

    def __deepcopy__(self, memo):
        return self


class LastValue(BaseEstimator):
    """A last-value forecaster that records what it is given."""

    def __init__(self, log=None, horizon=4):
        self.log = log
        self.horizon = horizon

    def fit(self, y, X=None):
        values = np.asarray(y, dtype=float)
        self.log.calls.append(("fit", values.copy(),
                               None if X is None else np.asarray(X).copy()))
        self.last_ = values[-1]
        self.id_ = id(self)
        return self

    def update(self, y_new, X_new=None, learn=False):
        values = np.asarray(y_new, dtype=float)
        self.log.calls.append(("update", values.copy(),
                               None if X_new is None else np.asarray(X_new).copy(),
                               learn))
        self.last_ = values[-1]
        return self

    def predict(self, horizon=None, X=None):
        self.log.calls.append(("predict", horizon,
                               None if X is None else np.asarray(X).copy(),
                               self.id_))
        return np.repeat(self.last_, horizon)


def _series(n=100, seed=0):
    rng = np.random.default_rng(seed)
    return 10 + np.cumsum(rng.normal(size=n))


# ------------------------------------------------------------------ the stub
def test_folds_at_the_right_origins_without_leakage():
    y = _series(100)
    log = Recorder()
    result = backtest(LastValue(log), y, initial=50, step=10, horizon=5)
    origins = [50, 60, 70, 80, 90]  # 90 + 5 <= 100 < 100 + 5
    fits = [c for c in log.calls if c[0] == "fit"]
    assert [len(c[1]) for c in fits] == origins
    for (_, seen, _), origin in zip(fits, origins):
        assert_allclose(seen, y[:origin])  # exactly the past, nothing after
    assert list(result.metrics["n_train"]) == origins
    assert list(result.metrics["cutoff"]) == [o - 1 for o in origins]
    fc = result.forecasts
    assert len(fc) == 5 * 5
    for fold, origin in enumerate(origins):
        rows = fc[fc["fold"] == fold]
        assert list(rows["time"]) == list(range(origin, origin + 5))
        assert list(rows["step"]) == [1, 2, 3, 4, 5]
        assert_allclose(rows["y_true"], y[origin:origin + 5])
        assert_allclose(rows["y_pred"], y[origin - 1])  # last value before origin


def test_step_defaults_to_the_horizon_and_horizon_to_the_forecaster():
    log = Recorder()
    result = backtest(LastValue(log, horizon=4), _series(30), initial=10)
    assert list(result.metrics["n_train"]) == [10, 14, 18, 22, 26]
    assert set(result.forecasts["step"]) == {1, 2, 3, 4}


def test_covariates_fit_on_the_past_and_predict_with_the_future_rows():
    y = _series(60)
    X = np.arange(120.0).reshape(60, 2)
    log = Recorder()
    backtest(LastValue(log), y, X, initial=40, step=7, horizon=3)
    fits = [c for c in log.calls if c[0] == "fit"]
    predicts = [c for c in log.calls if c[0] == "predict"]
    for (_, seen_y, seen_x), (_, h, future, _), origin in zip(fits, predicts,
                                                             [40, 47, 54]):
        assert_allclose(seen_x, X[:origin])
        assert len(seen_y) == origin
        assert h == 3
        assert_allclose(future, X[origin:origin + 3])


def test_refit_false_updates_the_first_model():
    y = _series(80)
    log = Recorder()
    backtest(LastValue(log), y, initial=40, step=10, horizon=5, refit=False,
             learn=True)
    kinds = [c[0] for c in log.calls]
    assert kinds.count("fit") == 1
    updates = [c for c in log.calls if c[0] == "update"]
    assert len(updates) == 3  # origins 50, 60, 70
    for (_, seen, _, learn), start in zip(updates, [40, 50, 60]):
        assert_allclose(seen, y[start:start + 10])
        assert learn is True
    model_ids = {c[3] for c in log.calls if c[0] == "predict"}
    assert len(model_ids) == 1  # one model throughout


def test_refit_every_k_folds():
    log = Recorder()
    backtest(LastValue(log), _series(100), initial=50, step=10, horizon=5,
             refit=2)
    kinds = [c[0] for c in log.calls if c[0] != "predict"]
    assert kinds == ["fit", "update", "fit", "update", "fit"]


def test_the_given_forecaster_is_not_modified():
    log = Recorder()
    stub = LastValue(log)
    backtest(stub, _series(60), initial=40, horizon=5)
    assert not hasattr(stub, "last_")


def test_metrics_per_fold_match_the_metrics_module():
    y = _series(100)
    result = backtest(LastValue(Recorder()), y, initial=60, step=10, horizon=5, m=2)
    for fold, origin in enumerate([60, 70, 80, 90]):
        row = result.metrics.iloc[fold]
        truth, pred = y[origin:origin + 5], np.repeat(y[origin - 1], 5)
        assert row["mae"] == pytest.approx(metrics.mae(truth, pred))
        assert row["rmse"] == pytest.approx(metrics.rmse(truth, pred))
        assert row["smape"] == pytest.approx(metrics.smape(truth, pred))
        assert row["mape"] == pytest.approx(metrics.mape(truth, pred))
        assert row["mase"] == pytest.approx(
            metrics.mase(truth, pred, y[:origin], m=2))


def test_undefined_metrics_are_nan():
    y = np.r_[np.ones(20), np.zeros(5)]  # constant training part, zeros to forecast
    result = backtest(LastValue(Recorder()), y, initial=20, horizon=5)
    assert np.isnan(result.metrics.loc[0, "mape"])
    assert np.isnan(result.metrics.loc[0, "mase"])
    assert result.metrics.loc[0, "mae"] == 1.0


# --------------------------------------------------------- the real forecaster
def _tiny(**kwargs):
    params = dict(window=6, horizon=3, hidden_size=4, max_epochs=3, batch_size=16,
                  random_state=0)
    params.update(kwargs)
    return LSTMForecaster(**params)


def test_documented_columns_with_a_datetime_index():
    idx = pd.date_range("2020-01-01", periods=90, freq="D")
    y = pd.Series(_series(90), index=idx, name="load")
    result = backtest(_tiny(), y, initial=60, step=10)
    assert isinstance(result, BacktestResult)
    assert list(result.forecasts.columns) == [
        c for c in FORECAST_COLUMNS if c not in ("lower", "upper")]
    assert list(result.metrics.columns) == [
        c for c in METRIC_COLUMNS if c not in ("coverage", "width")]
    assert list(result.metrics["cutoff"]) == list(idx[[59, 69, 79]])
    first = result.forecasts[result.forecasts["fold"] == 0]
    assert list(first["time"]) == list(idx[60:63])
    assert set(result.forecasts["target"]) == {"load"}
    with_intervals = backtest(_tiny(), y, initial=60, step=10, coverage=0.8)
    assert list(with_intervals.forecasts.columns) == list(FORECAST_COLUMNS)
    assert list(with_intervals.metrics.columns) == list(METRIC_COLUMNS)
    fc = with_intervals.forecasts
    assert (fc["lower"] <= fc["y_pred"]).all() and (fc["y_pred"] <= fc["upper"]).all()


def test_two_targets_give_a_row_per_target():
    y = pd.DataFrame({"a": _series(80, 1), "b": _series(80, 2)})
    result = backtest(_tiny(), y, initial=60, step=5, horizon=3)
    assert len(result.metrics) == 4 * 2
    assert len(result.forecasts) == 4 * 3 * 2
    assert list(result.metrics["target"][:2]) == ["a", "b"]


def test_each_fold_fits_on_data_up_to_its_origin(monkeypatch):
    seen = []
    original = LSTMForecaster.fit

    def recording_fit(self, y, X=None):
        seen.append((len(y), y.index[-1]))
        return original(self, y, X)

    monkeypatch.setattr(LSTMForecaster, "fit", recording_fit)
    y = pd.Series(_series(90), index=pd.RangeIndex(100, 190))
    result = backtest(_tiny(), y, initial=60, step=10)
    assert seen == [(60, 159), (70, 169), (80, 179)]
    assert list(result.metrics["cutoff"]) == [159, 169, 179]


def test_refit_false_uses_update_on_the_lstm_forecaster(monkeypatch):
    counts = {"fit": 0, "update": 0}
    fit, update = LSTMForecaster.fit, LSTMForecaster.update

    def counting_fit(self, *args, **kwargs):
        counts["fit"] += 1
        return fit(self, *args, **kwargs)

    def counting_update(self, *args, **kwargs):
        counts["update"] += 1
        return update(self, *args, **kwargs)

    monkeypatch.setattr(LSTMForecaster, "fit", counting_fit)
    monkeypatch.setattr(LSTMForecaster, "update", counting_update)
    y = pd.Series(_series(90), index=pd.period_range("2000-01", periods=90,
                                                     freq="M"))
    result = backtest(_tiny(), y, initial=60, step=5, refit=False)
    assert counts == {"fit": 1, "update": 5}
    refit = backtest(_tiny(), y, initial=60, step=5, refit=True)
    # fold 0 is the same model either way
    assert_allclose(result.forecasts["y_pred"][:3], refit.forecasts["y_pred"][:3])


def test_numpy_with_covariates_on_the_lstm_forecaster():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(80, 1))
    y = 2 * X[:, 0] + 10
    result = backtest(_tiny(), y, X, initial=60, step=5, horizon=3, refit=False)
    assert len(result.metrics) == 4
    assert set(result.forecasts["target"]) == {"y"}


# ---------------------------------------------------------------- bad arguments
BAD = {
    "no fold": (dict(initial=98, horizon=5), "no fold"),
    "horizon 0": (dict(initial=50, horizon=0), "horizon must be"),
    "step 0": (dict(initial=50, horizon=5, step=0), "step must be"),
    "initial 0": (dict(initial=0, horizon=5), "initial must be"),
    "refit negative": (dict(initial=50, horizon=5, refit=-1), "refit must be"),
    "coverage 1.5": (dict(initial=50, horizon=5, coverage=1.5), "coverage must be"),
    "m 0": (dict(initial=50, horizon=5, m=0), "m must be"),
    "X wrong length": (dict(initial=50, horizon=5, X=np.ones((90, 1))),
                       "X has 90 rows but y has 100"),
}


def test_bad_argument_matrix_is_complete():
    assert len(BAD) == 8


@pytest.mark.parametrize("name", list(BAD))
def test_bad_arguments_raise_value_error(name):
    kwargs, message = BAD[name]
    log = Recorder()
    with pytest.raises(ValueError, match=message):
        backtest(LastValue(log), _series(100), **kwargs)
    assert log.calls == []  # validated before any fit


def test_bad_y_is_rejected_before_fitting():
    log = Recorder()
    y = _series(100)
    y[10] = np.nan
    with pytest.raises(ValueError, match="y contains NaN"):
        backtest(LastValue(log), y, initial=50, horizon=5)
    assert log.calls == []
