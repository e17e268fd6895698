"""Behaviour of :class:`lstmforecast.LSTMForecaster`.

* every accepted input type (Series with a monthly DatetimeIndex, PeriodIndex,
  RangeIndex, DataFrame with two targets, NumPy 1-D / 2-D) and the future index of
  the forecast;
* both strategies give horizon-length forecasts; transforms are inverted (an exact
  linear trend with first differences, exponential growth with log + differences,
  a pure seasonal pattern with seasonal differences are forecast almost exactly);
* scaling is fitted on the training part only;
* it learns a noisy sine better than the last-value forecast;
* exogenous covariates: used (a target driven by a future-known covariate), and
  required at predict with the right length, columns and index;
* split-conformal intervals: the documented quantile, and coverage near nominal on
  a backtest of a long noisy AR(1) series;
* ``update``: the origin moves, the forecast comes from the carried window, weights
  stay unless ``learn=True`` (also with the 1997 truncated rule);
* ``clone`` / ``get_params`` / ``set_params`` / pickle, determinism;
* a counted matrix of bad inputs, each a ``ValueError`` naming the problem, with the
  inputs hashed before and after.
"""

from __future__ import annotations

import hashlib
import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone

from lstmforecast import ForecastInterval, LSTMForecaster
from lstmforecast.model_selection import backtest

# Tiny models stop at max_epochs on purpose.
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------- helpers
def _fc(**kwargs):
    """A tiny, quick, seeded forecaster."""
    params = dict(window=6, horizon=3, hidden_size=4, max_epochs=3, batch_size=16,
                  random_state=0)
    params.update(kwargs)
    return LSTMForecaster(**params)


# Settings under which a constant (differenced) series is learnt to ~1e-7.
_EXACT = dict(hidden_size=4, max_epochs=100, early_stopping=False,
              learning_rate=0.02, batch_size=8, tol=0.0, random_state=0)


def _sine(n, seed=0, noise=0.1, period=20):
    rng = np.random.default_rng(seed)
    t = np.arange(n)
    return 10 + np.sin(2 * np.pi * t / period) + noise * rng.normal(size=n)


def _monthly(n=80, seed=0):
    return pd.Series(_sine(n, seed, period=12),
                     index=pd.date_range("2000-01-01", periods=n, freq="MS"),
                     name="sales")


def _digest(obj):
    """A hash of the values and index of an input, to detect mutation."""
    if obj is None:
        return None
    if isinstance(obj, (pd.Series, pd.DataFrame)):
        return hashlib.sha256(
            pd.util.hash_pandas_object(obj, index=True).to_numpy().tobytes()
            + repr(list(obj.columns) if isinstance(obj, pd.DataFrame)
                   else [obj.name]).encode()).hexdigest()
    arr = np.asarray(obj)
    return hashlib.sha256(arr.tobytes() + str(arr.dtype).encode()).hexdigest()


def _ar1(n, seed, phi=0.8):
    rng = np.random.default_rng(seed)
    e = rng.normal(size=n)
    y = np.zeros(n)
    for i in range(1, n):
        y[i] = phi * y[i - 1] + e[i]
    return 5.0 + y


# ---------------------------------------------------------- types and indexes
def test_series_with_monthly_datetime_index():
    y = _monthly(80)
    pred = _fc(horizon=4).fit(y).predict()
    assert isinstance(pred, pd.Series)
    assert pred.name == "sales"
    expected = pd.date_range("2006-09-01", periods=4, freq="MS")
    assert pred.index.equals(expected)
    assert pred.index.freqstr == "MS"
    assert np.all(np.isfinite(pred.to_numpy()))


def test_datetime_index_without_freq_is_inferred():
    y = _monthly(60)
    y.index = pd.DatetimeIndex(list(y.index))  # drops .freq
    assert y.index.freq is None
    model = _fc().fit(y)
    assert model.freq_ == pd.tseries.frequencies.to_offset("MS")
    assert model.predict().index[0] == pd.Timestamp("2005-01-01")


def test_period_index():
    y = pd.Series(_sine(60), index=pd.period_range("1990Q1", periods=60, freq="Q"))
    pred = _fc(horizon=5).fit(y).predict()
    assert pred.index.equals(pd.period_range("2005Q1", periods=5, freq="Q"))


def test_range_index_continues_with_its_step():
    y = pd.Series(_sine(60), index=pd.RangeIndex(10, 130, 2))
    pred = _fc(horizon=3).fit(y).predict()
    assert pred.index.equals(pd.RangeIndex(130, 136, 2))


def test_evenly_spaced_integer_index_is_a_range():
    y = pd.Series(_sine(60), index=pd.Index(np.arange(60) * 5 + 1000))
    pred = _fc(horizon=2).fit(y).predict()
    assert list(pred.index) == [1300, 1305]


def test_dataframe_with_two_targets():
    idx = pd.date_range("2001-01-01", periods=70, freq="D")
    y = pd.DataFrame({"a": _sine(70, 1), "b": 3 * _sine(70, 2)}, index=idx)
    model = _fc(horizon=4).fit(y)
    pred = model.predict()
    assert isinstance(pred, pd.DataFrame)
    assert list(pred.columns) == ["a", "b"]
    assert pred.shape == (4, 2)
    assert pred.index.equals(pd.date_range("2001-03-12", periods=4, freq="D"))
    # each target in its own units
    assert abs(pred["b"].mean() - 30) < abs(pred["a"].mean() - 30)
    interval = model.predict_interval(0.8)
    assert interval.lower.shape == (4, 2)
    assert model.calibration_residuals_.shape == (model.n_calibration_, 4, 2)


@pytest.mark.parametrize("ndim", [1, 2])
def test_numpy_input_returns_numpy(ndim):
    y = _sine(60) if ndim == 1 else np.column_stack([_sine(60, 1), _sine(60, 2)])
    model = _fc(horizon=4).fit(y)
    pred = model.predict()
    assert type(pred) is np.ndarray
    assert pred.shape == ((4,) if ndim == 1 else (4, 2))
    assert model.cutoff_ == 59
    assert model.freq_ is None
    lower, upper = model.predict_interval(0.9)[1:]
    assert type(lower) is np.ndarray and lower.shape == pred.shape


@pytest.mark.parametrize("strategy", ["recursive", "direct"])
@pytest.mark.parametrize("horizon", [1, 5])
def test_strategies_give_horizon_length_forecasts(strategy, horizon):
    y = _monthly(80)
    model = _fc(strategy=strategy, horizon=horizon).fit(y)
    assert len(model.predict()) == horizon
    assert len(model.predict(horizon=1)) == 1
    if strategy == "direct":
        assert model.regressor_.n_outputs_ == horizon
        with pytest.raises(ValueError, match="exceeds the fitted horizon"):
            model.predict(horizon=horizon + 1)
    else:
        assert model.regressor_.n_outputs_ == 1
        longer = model.predict(horizon=horizon + 3)
        assert len(longer) == horizon + 3
        # the recursive forecast of h steps starts with the shorter one
        assert_allclose(longer.to_numpy()[:horizon], model.predict().to_numpy())


def test_direct_multi_target_outputs():
    y = np.column_stack([_sine(60, 1), _sine(60, 2)])
    model = _fc(strategy="direct", horizon=3).fit(y)
    assert model.regressor_.n_outputs_ == 6
    assert model.predict().shape == (3, 2)


# ------------------------------------------------------------------ transforms
@pytest.mark.parametrize("strategy", ["recursive", "direct"])
def test_linear_trend_with_first_difference_is_near_exact(strategy):
    t = np.arange(66)
    y = 5.0 + 2.0 * t
    model = LSTMForecaster(window=4, horizon=6, strategy=strategy, difference=1,
                           **_EXACT).fit(y[:60])
    assert_allclose(model.predict(), y[60:], atol=1e-3)
    # without differencing the same model cannot extrapolate the trend
    plain = LSTMForecaster(window=4, horizon=6, strategy=strategy,
                           **_EXACT).fit(y[:60])
    assert np.max(np.abs(plain.predict() - y[60:])) > 1.0


def test_exponential_growth_with_log_and_difference_is_near_exact():
    t = np.arange(66)
    y = pd.Series(100.0 * 1.03 ** t)
    model = LSTMForecaster(window=4, horizon=6, log=True, difference=1,
                           **_EXACT).fit(y.iloc[:60])
    assert_allclose(model.predict().to_numpy(), y.iloc[60:].to_numpy(), rtol=1e-4)


@pytest.mark.parametrize("strategy", ["recursive", "direct"])
def test_pure_seasonal_pattern_with_seasonal_difference(strategy):
    season = np.array([3, 1, 4, 1, 5, 9, 2, 6, 5, 3, 5, 8.0])
    y = 10 + np.tile(season, 8)
    model = LSTMForecaster(window=6, horizon=12, strategy=strategy, difference=12,
                           calibration_size=0, **_EXACT).fit(y[:84])
    assert_allclose(model.predict(), y[84:], atol=1e-3)


def test_seasonal_difference_with_trend_under_log():
    season = np.array([1.0, 1.2, 0.9, 1.1])
    t = np.arange(60)
    y = 50 * 1.01 ** t * np.tile(season, 15)
    model = LSTMForecaster(window=4, horizon=4, log=True, difference=4,
                           **_EXACT).fit(y[:56])
    assert_allclose(model.predict(), y[56:], rtol=1e-4)


def test_scaling_is_fitted_on_the_training_part_only():
    y = _sine(100) + np.linspace(0, 5, 100)
    model = _fc(horizon=3, calibration_size=10).fit(y)
    n_fit = 100 - 3 - 10 + 1  # up to the first calibration origin
    assert_allclose(model.y_center_, [y[:n_fit].mean()])
    assert_allclose(model.y_scale_, [y[:n_fit].std()])
    assert not np.isclose(model.y_center_[0], y.mean())
    everything = _fc(horizon=3, calibration_size=0).fit(y)
    assert_allclose(everything.y_center_, [y.mean()])


@pytest.mark.parametrize("scaling", ["minmax", None])
def test_other_scalings(scaling):
    y = _sine(80)
    model = _fc(scaling=scaling).fit(y)
    if scaling is None:
        assert_array_equal(model.y_center_, [0.0])
        assert_array_equal(model.y_scale_, [1.0])
    else:
        assert model.y_center_[0] == y[:model.n_obs_ - 3 - model.n_calibration_
                                        + 1].min()
    assert np.all(np.isfinite(model.predict()))


# -------------------------------------------------------------------- learning
def test_learns_a_noisy_sine_better_than_the_last_value():
    y = _sine(400, seed=3)
    model = LSTMForecaster(window=20, horizon=5, hidden_size=16, max_epochs=60,
                           learning_rate=0.01, random_state=0)
    result = backtest(model, y, initial=300, step=5, refit=False)
    origins = range(300, 396, 5)
    naive = np.mean([np.abs(y[o:o + 5] - y[o - 1]).mean() for o in origins])
    lstm = result.metrics["mae"].mean()
    assert lstm < 0.5 * naive


# ------------------------------------------------------------------ covariates
def _covariate_data(n=300, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=n + 4)
    y = 2 * x + 0.05 * rng.normal(size=n + 4)
    idx = pd.date_range("2010-01-04", periods=n + 4, freq="W-MON")
    return (pd.Series(y, index=idx, name="y"),
            pd.DataFrame({"promo": x, "const": 1.0}, index=idx))


@pytest.mark.parametrize("strategy", ["recursive", "direct"])
def test_future_known_covariates_are_used(strategy):
    # y[t] = 2 x[t] + noise: only the covariate of the forecast step helps.
    y, X = _covariate_data()
    kw = dict(window=6, horizon=4, strategy=strategy, hidden_size=8, max_epochs=40,
              learning_rate=0.01, random_state=0)
    with_x = LSTMForecaster(**kw).fit(y.iloc[:300], X.iloc[:300])
    without = LSTMForecaster(**kw).fit(y.iloc[:300])
    err_x = np.abs(with_x.calibration_residuals_).mean()
    err = np.abs(without.calibration_residuals_).mean()
    assert err_x < 0.35 * err
    pred = with_x.predict(X=X.iloc[300:])
    assert pred.index.equals(y.index[300:])
    assert np.abs(pred - y.iloc[300:]).mean() < 0.35 * np.abs(y.iloc[300:]).mean()


def test_covariates_required_and_checked_at_predict():
    y, X = _covariate_data(120)
    model = _fc(horizon=4).fit(y.iloc[:120], X.iloc[:120])
    assert model.n_covariates_ == 2
    assert model.covariate_names_ == ["promo", "const"]
    future = X.iloc[120:]
    assert len(model.predict(X=future)) == 4
    assert len(model.predict(X=future.to_numpy())) == 4  # positional is fine
    with pytest.raises(ValueError, match="fitted with covariates X"):
        model.predict()
    with pytest.raises(ValueError, match="X must have 4 rows"):
        model.predict(X=future.iloc[:3])
    with pytest.raises(ValueError, match="X must have 2 rows"):
        model.predict(horizon=2, X=future)
    with pytest.raises(ValueError, match=r"differ from those seen in fit.*missing: "
                       r"\['const'\]"):
        model.predict(X=future.rename(columns={"const": "other"}))
    with pytest.raises(ValueError, match="X has 1 columns"):
        model.predict(X=future[["promo"]])
    with pytest.raises(ValueError, match="X's index must be the 4 steps after"):
        model.predict(X=future.set_axis(X.index[100:104]))
    with pytest.raises(ValueError, match="X contains NaN"):
        model.predict(X=future.assign(promo=np.nan))
    plain = _fc(horizon=4).fit(y.iloc[:120])
    with pytest.raises(ValueError, match="fitted without"):
        plain.predict(X=future)


def test_direct_strategy_needs_covariates_for_the_fitted_horizon():
    y, X = _covariate_data(120)
    model = _fc(horizon=4, strategy="direct").fit(y.iloc[:120], X.iloc[:120])
    assert len(model.predict(horizon=2, X=X.iloc[120:])) == 2
    with pytest.raises(ValueError, match="always needs the fitted horizon"):
        model.predict(horizon=2, X=X.iloc[120:122])


# ------------------------------------------------------------------- intervals
def test_interval_is_the_documented_conformal_quantile():
    y = _monthly(120)
    model = _fc(horizon=3, calibration_size=19).fit(y)
    interval = model.predict_interval(coverage=0.9)
    assert isinstance(interval, ForecastInterval)
    forecast, lower, upper = interval
    pd.testing.assert_series_equal(forecast, model.predict())
    assert lower.index.equals(forecast.index)
    # n = 19 residuals: k = ceil(20 * 0.9) = 18th smallest absolute residual
    ranked = np.sort(np.abs(model.calibration_residuals_[:, :, 0]), axis=0)
    assert_allclose((upper - forecast).to_numpy(), ranked[17])
    assert_allclose((forecast - lower).to_numpy(), ranked[17])
    narrow = model.predict_interval(coverage=0.5)  # k = ceil(20 * 0.5) = 10
    assert_allclose((narrow.upper - forecast).to_numpy(), ranked[9])
    short = model.predict_interval(0.9, horizon=2)
    assert len(short.lower) == 2


def test_interval_is_infinite_with_too_few_calibration_origins():
    model = _fc(horizon=2, calibration_size=5).fit(_sine(60))
    with pytest.warns(UserWarning, match="intervals are infinite"):
        _, lower, upper = model.predict_interval(0.9)  # needs 9 origins
    assert np.all(np.isinf(lower)) and np.all(np.isinf(upper))


@pytest.mark.parametrize("strategy", ["recursive", "direct"])
def test_interval_coverage_is_near_nominal_on_ar1_backtest(strategy):
    y = _ar1(1500, seed=1)
    model = LSTMForecaster(window=5, horizon=3, strategy=strategy, hidden_size=4,
                           max_epochs=20, learning_rate=0.01, calibration_size=0.3,
                           random_state=0)
    result = backtest(model, y, initial=1000, step=1, refit=False, coverage=0.9)
    fc = result.forecasts
    inside = (fc["lower"] <= fc["y_true"]) & (fc["y_true"] <= fc["upper"])
    assert 0.85 <= inside.mean() <= 0.95
    for step, group in inside.groupby(fc["step"]):
        assert 0.75 <= group.mean() <= 1.0, step
    assert result.metrics["coverage"].mean() == pytest.approx(inside.mean())


def test_predict_interval_errors():
    model = _fc(calibration_size=0).fit(_sine(60))
    with pytest.raises(ValueError, match="calibration_size=0"):
        model.predict_interval()
    model = _fc(horizon=3).fit(_sine(60))
    for bad in (0, 1, 1.5, -0.1, True, "0.9"):
        with pytest.raises(ValueError, match="coverage must be"):
            model.predict_interval(bad)
    with pytest.raises(ValueError, match="calibration residuals cover at most 3"):
        model.predict_interval(0.9, horizon=4)


# ---------------------------------------------------------------------- update
def test_update_moves_the_origin_without_refit():
    y = _monthly(100)
    model = _fc(horizon=3).fit(y.iloc[:80])
    weights = model.regressor_.params_.copy()
    n_iter = model.regressor_.n_iter_
    before = model.predict()
    model.update(y.iloc[80:90])
    after = model.predict()
    assert model.n_obs_ == 90
    assert model.cutoff_ == y.index[89]
    assert after.index.equals(y.index[90:93])
    assert not np.allclose(before.to_numpy(), after.to_numpy())
    assert_array_equal(model.regressor_.params_, weights)
    assert model.regressor_.n_iter_ == n_iter


def test_update_forecasts_from_the_carried_window():
    y = _sine(120)
    model = _fc(horizon=1, window=6).fit(y[:100])
    model.update(y[100:110])
    # one step from the last 6 observations, scaled as in fit
    window = (y[104:110] - model.y_center_) / model.y_scale_
    step = model.regressor_.predict(window.reshape(1, 6, 1))[0, 0]
    assert_allclose(model.predict(), [step * model.y_scale_[0] + model.y_center_[0]])


def test_update_with_differencing_and_covariates_matches_a_refit_free_forecast():
    y, X = _covariate_data(140)
    full = _fc(horizon=2, difference=1).fit(y.iloc[:120], X.iloc[:120])
    twin = pickle.loads(pickle.dumps(full))
    full.update(y.iloc[120:130], X.iloc[120:130])
    twin.update(y.iloc[120:125], X.iloc[120:125])
    twin.update(y.iloc[125:130], X.iloc[125:130])
    future = X.iloc[130:132]
    pd.testing.assert_series_equal(full.predict(X=future), twin.predict(X=future))
    with pytest.raises(ValueError, match="needs X_new"):
        full.update(y.iloc[130:131])


def test_update_accepts_numpy_for_a_pandas_model_and_checks_the_index():
    y = _monthly(100)
    model = _fc().fit(y.iloc[:80])
    model.update(y.iloc[80:82].to_numpy())
    assert model.cutoff_ == y.index[81]
    with pytest.raises(ValueError, match="must continue the fitted one"):
        model.update(y.iloc[83:85])  # skips a month
    with pytest.raises(ValueError, match="y_new has 2 columns"):
        model.update(np.ones((2, 2)))
    assert model.cutoff_ == y.index[81]


def test_update_learn_changes_the_weights():
    y = _monthly(100)
    model = _fc(horizon=3).fit(y.iloc[:80])  # early_stopping=True by default
    weights = model.regressor_.params_.copy()
    before = pickle.loads(pickle.dumps(model))
    model.update(y.iloc[80:90], learn=True)
    assert not np.array_equal(model.regressor_.params_, weights)
    assert np.all(np.isfinite(model.regressor_.params_))
    assert model.regressor_.early_stopping  # restored after partial_fit
    before.update(y.iloc[80:90])
    assert not np.allclose(model.predict().to_numpy(), before.predict().to_numpy())


def test_update_learn_with_the_truncated_1997_rule():
    y = _sine(100)
    model = _fc(cell="lstm1997", gradient="truncated", early_stopping=False,
                batch_size=1, max_epochs=1).fit(y[:80])
    weights = model.regressor_.params_.copy()
    model.update(y[80:85], learn=True)
    assert not np.array_equal(model.regressor_.params_, weights)
    assert np.all(np.isfinite(model.predict()))


# ------------------------------------------------------------ sklearn contract
def test_get_params_set_params_and_clone():
    model = _fc(window=7, strategy="direct", log=True, difference=12)
    params = model.get_params()
    assert params["window"] == 7 and params["strategy"] == "direct"
    assert params["hidden_size"] == 4 and params["difference"] == 12
    assert "output" not in params and "update" not in params
    defaults = LSTMForecaster().get_params()
    assert defaults["hidden_size"] == 32 and defaults["learning_rate"] == 0.005
    assert defaults["max_epochs"] == 100 and defaults["early_stopping"] is True
    model.set_params(window=8, max_epochs=2)
    assert model.window == 8
    assert clone(model).get_params() == model.get_params()
    assert not hasattr(model, "regressor_")


def test_squashing_reaches_the_network_and_the_stream():
    """``squashing`` is passed on to the regressor, and the stateful stream (which
    calls the truncated kernels itself) runs Table 10's cell with it."""
    y = _sine(120, seed=5)
    kwargs = dict(cell="lstm1997", hidden_size=4, block_size=2, max_epochs=3,
                  init_scale=1.0)
    forecasts = {}
    for squashing in ("appendix", "table10"):
        model = _stateful(squashing=squashing, **kwargs).fit(y[:100])
        assert model.regressor_.squashing == squashing
        assert model.regressor_._net["squashing"] == squashing
        model.update(y[100:110], learn=True)
        forecasts[squashing] = model.predict()
        assert np.all(np.isfinite(forecasts[squashing]))
    assert not np.allclose(forecasts["appendix"], forecasts["table10"])


@pytest.mark.parametrize("stateful", [False, True], ids=["windows", "stateful"])
def test_input_to_output_reaches_the_network_and_the_stream(stateful):
    """With ``input_to_output`` the head also sees the step's input: the regressor
    gets the weights, and ``update(learn=True)`` trains them."""
    y = _sine(120, seed=6)
    model = (_stateful(input_to_output=True, max_epochs=3) if stateful
             else _fc(input_to_output=True)).fit(y[:100])
    weights = model.regressor_.get_weights()["head.weight_input"].copy()
    assert weights.shape == (1, model.regressor_.input_size_)
    model.update(y[100:110], learn=True)
    after = model.regressor_.get_weights()["head.weight_input"]
    assert not np.array_equal(after, weights)
    assert np.all(np.isfinite(model.predict()))


def test_init_only_assigns():
    model = LSTMForecaster(window=-3, strategy="nonsense", horizon=0)
    assert model.window == -3  # validated in fit, not in __init__
    with pytest.raises(ValueError):
        model.fit(_sine(60))


def test_clone_and_pickle_round_trip_give_identical_forecasts():
    y = _monthly(90)
    model = _fc(horizon=4).fit(y)
    twin = clone(model).fit(y)
    pd.testing.assert_series_equal(model.predict(), twin.predict())
    restored = pickle.loads(pickle.dumps(model))
    pd.testing.assert_series_equal(model.predict(), restored.predict())
    for a, b in zip(model.predict_interval(0.8), restored.predict_interval(0.8)):
        pd.testing.assert_series_equal(a, b)
    model.update(y.iloc[-4:].set_axis(pd.date_range("2007-07-01", periods=4,
                                                    freq="MS")))
    restored.update(y.iloc[-4:].to_numpy())
    pd.testing.assert_series_equal(model.predict(), restored.predict())


def test_same_seed_same_forecast_different_seed_different():
    y = _sine(80)
    a = _fc(random_state=1).fit(y).predict()
    b = _fc(random_state=1).fit(y).predict()
    c = _fc(random_state=2).fit(y).predict()
    assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_fit_and_predict_do_not_modify_inputs():
    y, X = _covariate_data(120)
    y_fit, X_fit = y.iloc[:120].copy(), X.iloc[:120].copy()
    digests = [_digest(y_fit), _digest(X_fit), _digest(X.iloc[120:])]
    model = _fc(horizon=4, log=False, difference=1).fit(y_fit, X_fit)
    model.predict(X=X.iloc[120:])
    model.predict_interval(0.9, X=X.iloc[120:])
    arr = np.abs(_sine(60)) + 1
    arr_digest = _digest(arr)
    _fc(log=True, difference=1).fit(arr).update(arr[:5].copy(), learn=True)
    assert digests == [_digest(y_fit), _digest(X_fit), _digest(X.iloc[120:])]
    assert arr_digest == _digest(arr)


def test_a_failed_fit_leaves_the_fitted_model_as_it_was():
    y = _sine(80)
    model = _fc().fit(y)
    before = model.predict()
    bad = y.copy()
    bad[5] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        model.fit(bad)
    assert_array_equal(model.predict(), before)


def test_unfitted_forecaster_raises_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        LSTMForecaster().predict()
    with pytest.raises(NotFittedError):
        LSTMForecaster().update(np.ones(3))


# ------------------------------------------------------------- bad input matrix
def _with_nan(values, pos=7):
    out = np.array(values, dtype=float)
    out[pos] = np.nan
    return out


def _fitted(**kwargs):
    return _fc(max_epochs=1, **kwargs).fit(_sine(60))


_Y = _sine(60)
_YS = _monthly(60)
_X = pd.DataFrame({"a": np.linspace(0, 1, 60)}, index=_YS.index)

# name -> (call, y, X, message pattern); y and X are hashed before and after.
BAD_INPUTS = {
    "too short for window + horizon":
        (lambda y, X: _fc(window=10, horizon=5).fit(y), _Y[:14], None, "too short"),
    "too short without calibration":
        (lambda y, X: _fc(window=10, horizon=5, strategy="direct", calibration_size=0,
                          early_stopping=False).fit(y), _Y[:14], None, "too short"),
    "NaN in y": (lambda y, X: _fc().fit(y), _with_nan(_Y), None, "y contains NaN"),
    "NaN in Series y": (lambda y, X: _fc().fit(y), _YS.where(_YS.index.month != 3),
                        None, "y contains NaN"),
    "NaN in X": (lambda y, X: _fc().fit(y, X), _YS,
                 _X.assign(a=_with_nan(_X["a"])), "X contains NaN"),
    "infinite y": (lambda y, X: _fc().fit(y), np.where(_Y > 10.5, np.inf, _Y), None,
                   "infinite"),
    "non-numeric column in y": (lambda y, X: _fc().fit(y),
                                pd.DataFrame({"a": _Y, "b": ["x"] * 60}), None,
                                r"non-numeric column: \['b'\]"),
    "non-numeric column in X": (lambda y, X: _fc().fit(y, X), _YS,
                                _X.assign(c="text"), r"X has a non-numeric column"),
    "string array y": (lambda y, X: _fc().fit(y), _Y.astype(str), None,
                       "non-numeric dtype"),
    "complex y": (lambda y, X: _fc().fit(y), _Y + 1j, None, "non-numeric dtype"),
    "non-monotonic index": (lambda y, X: _fc().fit(y), _YS.iloc[::-1], None,
                            "not monotonic"),
    "duplicated index": (lambda y, X: _fc().fit(y),
                         pd.Series(_Y, index=np.r_[0:30, 29:59]), None,
                         "duplicated"),
    "irregular DatetimeIndex": (lambda y, X: _fc().fit(y),
                                _YS.drop(_YS.index[[10, 30]]), None,
                                "cannot infer the frequency"),
    "PeriodIndex with gaps": (lambda y, X: _fc().fit(y),
                              pd.Series(_Y[:59], index=pd.PeriodIndex(
                                  list(pd.period_range("2000-01", periods=60,
                                                       freq="M").delete(20)))),
                              None, "gaps"),
    "string index": (lambda y, X: _fc().fit(y),
                     pd.Series(_Y, index=[f"t{i:02d}" for i in range(60)]), None,
                     "unsupported index"),
    "empty y": (lambda y, X: _fc().fit(y), np.array([]), None, "empty"),
    "3-D y": (lambda y, X: _fc().fit(y), _Y.reshape(60, 1, 1), None, "dimensions"),
    "0 columns": (lambda y, X: _fc().fit(y), pd.DataFrame(index=range(60)), None,
                  "0 columns"),
    "horizon < 1": (lambda y, X: _fc(horizon=0).fit(y), _Y, None, "'horizon'"),
    "window < 1": (lambda y, X: _fc(window=0).fit(y), _Y, None, "'window'"),
    "invalid strategy": (lambda y, X: _fc(strategy="multi").fit(y), _Y, None,
                         "'strategy'"),
    "difference < 1": (lambda y, X: _fc(difference=0).fit(y), _Y, None,
                       "'difference'"),
    "invalid scaling": (lambda y, X: _fc(scaling="robust").fit(y), _Y, None,
                        "'scaling'"),
    "negative calibration_size": (lambda y, X: _fc(calibration_size=-0.1).fit(y),
                                  _Y, None, "'calibration_size'"),
    "invalid regressor parameter": (lambda y, X: _fc(hidden_size=0).fit(y), _Y,
                                    None, "'hidden_size'"),
    "stateful without the truncated rule": (
        lambda y, X: _fc(stateful=True).fit(y), _Y, None, "gradient='truncated'"),
    "truncated gradient with two layers": (
        lambda y, X: _fc(gradient="truncated", num_layers=2).fit(y), _Y, None,
        "num_layers=1"),
    "log with non-positive y": (lambda y, X: _fc(log=True).fit(y), _Y - 10, None,
                                "log=True needs strictly positive"),
    "log with non-positive update": (
        lambda y, X: _fitted(log=True).update(y), np.array([1.0, 0.0]), None,
        "log=True needs strictly positive"),
    "X of the wrong length": (lambda y, X: _fc().fit(y, X), _YS, _X.iloc[:50],
                              "X has 50 rows but y has 60"),
    "X not aligned with y": (lambda y, X: _fc().fit(y, X), _YS,
                             _X.set_axis(pd.RangeIndex(60)), "aligned"),
    "predict horizon < 1": (lambda y, X: _fitted().predict(horizon=0), _Y, None,
                            "horizon must be an integer >= 1"),
    "predict horizon not an integer": (lambda y, X: _fitted().predict(horizon=2.5),
                                       _Y, None, "horizon must be an integer"),
    "predict X for a model without covariates": (
        lambda y, X: _fitted().predict(X=X), _Y, np.ones((3, 1)), "fitted without"),
    "update with NaN": (lambda y, X: _fitted().update(y), np.array([1.0, np.nan]),
                        None, "y_new contains NaN"),
    "update with wrong columns": (lambda y, X: _fitted().update(y), np.ones((2, 3)),
                                  None, "y_new has 3 columns"),
    "update learn not a bool": (lambda y, X: _fitted().update(y, learn="yes"),
                                np.ones(2), None, "learn must be True or False"),
}


def test_bad_input_matrix_is_complete():
    # A counted matrix: adding or dropping a case is a deliberate change.
    assert len(BAD_INPUTS) == 37


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_value_error_naming_the_problem(name):
    call, y, X, message = BAD_INPUTS[name]
    digests = (_digest(y), _digest(X))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        with pytest.raises(ValueError, match=message):
            call(y, X)
    assert (_digest(y), _digest(X)) == digests


# ------------------------------------------------------------ stateful streaming
def _stateful(**kwargs):
    """A seeded forecaster that carries the network's state along the series."""
    params = dict(window=10, horizon=4, stateful=True, gradient="truncated",
                  hidden_size=6, learning_rate=0.01, max_epochs=30,
                  calibration_size=12, random_state=0)
    params.update(kwargs)
    return LSTMForecaster(**params)


def _count_stream_steps(monkeypatch):
    from lstmforecast import forecaster

    steps = []
    original = forecaster.truncated_stream

    def counting(params, layout, X, *args):
        steps.append(X.shape[0])
        return original(params, layout, X, *args)

    monkeypatch.setattr(forecaster, "truncated_stream", counting)
    return steps


@pytest.mark.parametrize("covariates", [False, True], ids=["y", "y+X"])
@pytest.mark.parametrize("strategy", ["recursive", "direct"])
@pytest.mark.parametrize("learn", [False, True], ids=["carry", "learn"])
def test_stateful_update_costs_one_online_step_per_observation(
        monkeypatch, learn, strategy, covariates):
    """``update`` feeds each new observation once to the carried stream (one
    O(weights) step of the truncated rule, whatever the series length): m
    observations at once or one by one give the same weights and forecasts."""
    y = _sine(160, seed=3)
    X = np.column_stack([np.cos(np.arange(160) / 3.0)]) if covariates else None
    n, m = 120, 25
    fitted = _stateful(strategy=strategy).fit(y[:n], None if X is None else X[:n])
    together, apart = pickle.loads(pickle.dumps(fitted)), pickle.loads(
        pickle.dumps(fitted))
    steps = _count_stream_steps(monkeypatch)
    together.update(y[n:n + m], None if X is None else X[n:n + m], learn=learn)
    assert steps == [m]
    del steps[:]
    for i in range(n, n + m):
        apart.update(y[i:i + 1], None if X is None else X[i:i + 1], learn=learn)
    assert steps == [1] * m
    assert_array_equal(together.regressor_.params_, apart.regressor_.params_)
    changed = not np.array_equal(together.regressor_.params_,
                                 fitted.regressor_.params_)
    assert changed == learn
    rows = 4
    future = None if X is None else X[n + m:n + m + rows]
    assert_array_equal(together.predict(X=future), apart.predict(X=future))
    assert not np.array_equal(together.predict(X=future),
                              fitted.predict(X=None if X is None else X[n:n + rows]))


def test_stateful_carried_state_equals_streaming_the_whole_series():
    """After ``update(learn=False)`` the state is the one a fresh pass over the
    whole series with the same weights reaches: nothing is lost between calls."""
    y = _sine(150, seed=4)
    model = _stateful(calibration_size=0).fit(y[:100])
    model.update(y[100:], learn=False)
    reference = pickle.loads(pickle.dumps(model))
    Zs = (y[:, None] - reference.y_center_) / reference.y_scale_
    reference._stream_through(Zs, None, 150, np.arange(0))
    assert_allclose(model._stream_r, reference._stream_r, rtol=1e-5, atol=1e-6)
    assert_allclose(model._stream_c, reference._stream_c, rtol=1e-5, atol=1e-6)
    assert_allclose(model._stream_traces, reference._stream_traces, rtol=1e-4,
                    atol=1e-5)
    assert_allclose(model.predict(), reference.predict(), rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "lstm1997"])
def test_stateful_forecaster_learns_a_seasonal_series(cell):
    # A claim on the median error over eight seeds, not on one seed: single fits,
    # the lstm1997 cell's especially, land anywhere from 0.06 to 1.8 times the
    # mean forecast's error depending on the seed, and which seeds fail moves with
    # float32 rounding. Medians seen over code changes: lstm 0.09-0.10, lstm1997
    # (400 epochs) 0.21-0.29.
    y = _sine(260, seed=5, noise=0.05, period=12)
    epochs = 200 if cell == "lstm" else 400
    params = dict(cell=cell, max_epochs=epochs, learning_rate=0.01,
                  n_iter_no_change=epochs)
    if cell == "lstm1997":
        params.update(block_size=2, input_gate_bias=[-1.0, -2.0, -3.0])
    mean_mae = np.mean(np.abs(y[:-12].mean() - y[-12:]))
    ratios = []
    for seed in range(8):
        model = _stateful(horizon=12, random_state=seed, **params).fit(y[:-12])
        ratios.append(np.mean(np.abs(model.predict() - y[-12:])) / mean_mae)
        interval = model.predict_interval(0.9)
        assert np.all(interval.lower <= interval.forecast)
    assert np.median(ratios) < 0.5, ratios


def test_stateful_save_load_and_learn_give_identical_results(tmp_path):
    from lstmforecast import load

    y = _sine(140, seed=6)
    model = _stateful().fit(y[:120])
    model.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    assert_array_equal(loaded.predict(), model.predict())
    model.update(y[120:], learn=True)
    loaded.update(y[120:], learn=True)
    assert_array_equal(loaded.predict(), model.predict())
    assert_array_equal(loaded._stream_traces, model._stream_traces)
