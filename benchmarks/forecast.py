"""Forecast accuracy of LSTMForecaster against classical baselines, on real series.

Usage::

    python benchmarks/forecast.py [--quick] [--seeds 3] [--output results.md]
                                  [--datasets airline,sunspots,mackey_glass,electricity]

A fixed protocol per dataset (every forecast is made from data before its origin):

* **airline** (monthly, season 12): the last 12, 24 and 36 months held out; one
  forecast of that many steps from the end of the rest.
* **sunspots** (yearly): the last 30 years, (a) one step ahead from each of the 30
  origins and (b) 10 steps ahead from each of the 21 origins that leave 10 years to
  score. Models are fitted once, on the data before the first origin, and moved on
  with ``update`` (no refit, no learning).
* **mackey_glass** (tau = 17, one sample per time unit): fitted on 2000 values,
  then 84 steps free-running (the model's own outputs fed back) from 5 origins 100
  apart in the following 484 values, moved on with ``update``; NRMSE = RMSE / the
  standard deviation of the series.
* **electricity** (hourly): day-ahead, 24 steps from the midnights of the 7 days
  2014-12-15 to 2014-12-21 (the last 3 in ``--quick``), the last week before the
  Christmas holidays, which no model here knows about. To keep the run short, only
  the last 12 weeks before the first origin (6 in ``--quick``) are used: fitted
  once, moved on with ``update``.

``--quick`` (about 30 s): airline 12 months only, sunspots the last 15 years,
Mackey-Glass 1000 training values and 3 origins, one LSTM seed.

Methods: ``LSTM (recursive)`` and ``LSTM (direct)`` (:class:`LSTMForecaster`; the
mean over ``--seeds`` seeds, random_state 0, 1, ...; hidden_size 32, with: airline
``window=36, log=True, difference=12`` (the command line's monthly defaults);
sunspots ``window=24``, 60 epochs without early stopping; Mackey-Glass
``window=24``; electricity ``window=48, log=True, difference=168``, at most 60
epochs); ``seasonal naive`` (the value
one season before, season ``m``: 12 airline, 11 sunspots, 1 Mackey-Glass (the last
value), 168 electricity (same hour last week)); ``ridge on lags`` (scikit-learn
``Ridge(alpha=1)`` on the same transformed, standardised window as the LSTM,
forecasting recursively); with statsmodels installed, ``Holt-Winters`` (additive
trend, multiplicative season for airline; additive season 168, no trend, for
electricity) and ``SARIMA(0,1,1)(0,1,1)12`` on logs (airline), both refitted at
every origin.

Metrics over all forecasts of a protocol: MAE, RMSE, NRMSE (RMSE / standard
deviation of the whole series), MAPE (%), MASE (seasonal period ``m`` as above,
scaled on each fold's training part, averaged over folds) and, for the LSTM, the
coverage of its 90% split-conformal interval. ``time`` is the wall time of the whole
protocol for that method, per seed (fits and forecasts; Numba compilation excluded
by a warm-up). The run is deterministic for a given machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import platform
import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import Ridge

from lstmforecast import LSTMForecaster, metrics
from lstmforecast.datasets import (
    load_airline,
    load_electricity,
    load_sunspots,
    mackey_glass,
)
from lstmforecast.model_selection import backtest

COVERAGE = 0.9
HAVE_STATSMODELS = importlib.util.find_spec("statsmodels") is not None


# ------------------------------------------------------------------- baselines
def _values(y):
    return np.asarray(y, dtype=np.float64).reshape(-1)


class SeasonalNaive(BaseEstimator):
    """``y[t + j] = y[t + j - m * ceil(j / m)]``: the last observed season again."""

    def __init__(self, m=1):
        self.m = m

    def fit(self, y):
        self.history_ = _values(y)
        return self

    def update(self, y_new, learn=False):
        self.history_ = np.concatenate([self.history_, _values(y_new)])
        return self

    def predict(self, horizon):
        last = self.history_[-self.m:]
        return np.resize(last, horizon)


class RidgeLags(BaseEstimator):
    """Ridge regression on a window of lags of the (log-, differenced,) standardised
    series: the transforms and window of the LSTM, a linear model in its place."""

    def __init__(self, window=24, log=False, difference=None, alpha=1.0):
        self.window = window
        self.log = log
        self.difference = difference
        self.alpha = alpha

    def _z(self, levels):
        d = self.difference or 0
        return levels[d:] - levels[:-d] if d else levels

    def fit(self, y):
        values = _values(y)
        levels = np.log(values) if self.log else values
        z = self._z(levels)
        self.center_, self.scale_ = z.mean(), z.std() or 1.0
        zs = (z - self.center_) / self.scale_
        w = self.window
        X = np.lib.stride_tricks.sliding_window_view(zs[:-1], w)
        self.model_ = Ridge(alpha=self.alpha).fit(X, zs[w:])
        self.levels_ = levels
        return self

    def update(self, y_new, learn=False):
        values = _values(y_new)
        new = np.log(values) if self.log else values
        self.levels_ = np.concatenate([self.levels_, new])
        return self

    def predict(self, horizon):
        d, w = self.difference or 0, self.window
        levels = list(self.levels_[-(d + w):])
        for _ in range(horizon):
            z = self._z(np.asarray(levels))[-w:]
            step = self.model_.predict(((z - self.center_) / self.scale_)[None])[0]
            step = step * self.scale_ + self.center_
            levels.append(step + levels[-d] if d else step)
        out = np.asarray(levels[-horizon:])
        return np.exp(out) if self.log else out


class _Refitted(BaseEstimator):
    """A statsmodels model refitted on the whole history at every origin."""

    def fit(self, y):
        self.history_ = _values(y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            self.model_ = self._fit(self.history_)
        return self

    def update(self, y_new, learn=False):
        return self.fit(np.concatenate([self.history_, _values(y_new)]))


class HoltWinters(_Refitted):
    """statsmodels' ExponentialSmoothing, refitted at every origin."""

    def __init__(self, trend=None, seasonal=None, m=None):
        self.trend = trend
        self.seasonal = seasonal
        self.m = m

    def _fit(self, values):
        from statsmodels.tsa.holtwinters import ExponentialSmoothing

        return ExponentialSmoothing(values, trend=self.trend, seasonal=self.seasonal,
                                    seasonal_periods=self.m).fit()

    def predict(self, horizon):
        return np.asarray(self.model_.forecast(horizon))


class LogSarima(_Refitted):
    """SARIMA(0,1,1)(0,1,1)m on log(y) (the "airline model"), refitted per origin."""

    def __init__(self, m=12):
        self.m = m

    def _fit(self, values):
        from statsmodels.tsa.statespace.sarimax import SARIMAX

        return SARIMAX(np.log(values), order=(0, 1, 1),
                       seasonal_order=(0, 1, 1, self.m)).fit(disp=False)

    def predict(self, horizon):
        return np.exp(np.asarray(self.model_.forecast(horizon)))


# --------------------------------------------------------------------- protocols
class Protocol:
    """One row group of the table: a series and how the origins are laid out."""

    def __init__(self, dataset, name, y, *, m, initial, horizon, step=None,
                 refit=True, lstm=None, ridge=None, hw=None, sarima=False):
        self.dataset, self.name, self.y, self.m = dataset, name, y, m
        self.initial, self.horizon = initial, horizon
        self.step = step or horizon
        self.refit, self.lstm, self.ridge, self.hw = refit, lstm, ridge, hw
        self.sarima = sarima


def protocols(quick):
    airline = load_airline()
    n = len(airline)
    lstm_airline = dict(window=36, log=True, difference=12)
    out = []
    for held_out in ((12,) if quick else (12, 24, 36)):
        out.append(Protocol(
            "airline", f"last {held_out} months", airline, m=12,
            initial=n - held_out, horizon=held_out, lstm=lstm_airline,
            ridge=dict(window=36, log=True, difference=12),
            hw=dict(trend="add", seasonal="mul", m=12), sarima=True))

    sunspots = load_sunspots()
    n = len(sunspots)
    years = 15 if quick else 30
    # Early stopping on the last 10% of the windows (about 20 years, under two
    # cycles) stops far too early on this series: train a fixed 60 epochs.
    lstm_sun = dict(window=24, early_stopping=False, max_epochs=60)
    out.append(Protocol("sunspots", f"1 step, last {years} years", sunspots, m=11,
                        initial=n - years, horizon=1, step=1, refit=False,
                        lstm=lstm_sun, ridge=dict(window=24)))
    out.append(Protocol("sunspots", f"10 steps, last {years} years", sunspots, m=11,
                        initial=n - years, horizon=10, step=1, refit=False,
                        lstm=lstm_sun, ridge=dict(window=24)))

    n_train, n_origins = (1000, 3) if quick else (2000, 5)
    mg = mackey_glass(n_train + 100 * (n_origins - 1) + 84, tau=17)
    out.append(Protocol("mackey_glass", "84 steps free-running", mg, m=1,
                        initial=n_train, horizon=84, step=100, refit=False,
                        lstm=dict(window=24), ridge=dict(window=24)))

    weeks, days = (6, 3) if quick else (12, 7)
    elec = load_electricity()
    # The week before Christmas: the holidays after it are unlike any day the
    # models are trained on (no model here knows the calendar).
    elec = elec[:"2014-12-21 23:00"]
    elec = elec.iloc[-(weeks * 168 + days * 24):]
    out.append(Protocol("electricity", f"day-ahead, {days} days to 2014-12-21", elec,
                        m=168,
                        initial=weeks * 168, horizon=24, step=24, refit=False,
                        lstm=dict(window=48, log=True, difference=168,
                                  max_epochs=30 if quick else 60),
                        ridge=dict(window=48, log=True, difference=168),
                        hw=dict(trend=None, seasonal="add", m=168)))
    return out


def methods(p, seeds):
    """``[(label, [estimators], coverage)]`` for protocol ``p``."""
    rows = []
    for strategy in ("recursive", "direct"):
        if strategy == "direct" and p.horizon == 1:
            continue  # one step: the direct model is the recursive one
        label = "LSTM" if p.horizon == 1 else f"LSTM ({strategy})"
        models = [LSTMForecaster(horizon=p.horizon, strategy=strategy,
                                 random_state=seed, **p.lstm) for seed in seeds]
        rows.append((label, models, COVERAGE))
    rows.append((f"seasonal naive (m={p.m})" if p.m > 1 else "naive (last value)",
                 [SeasonalNaive(m=p.m)], None))
    rows.append(("ridge on lags", [RidgeLags(**p.ridge)], None))
    if HAVE_STATSMODELS and p.hw is not None:
        rows.append(("Holt-Winters", [HoltWinters(**p.hw)], None))
    if HAVE_STATSMODELS and p.sarima:
        rows.append(("SARIMA(0,1,1)(0,1,1)12, logs", [LogSarima(m=12)], None))
    return rows


def evaluate(p, models, coverage):
    """Mean metrics over ``models`` (seeds) of one method on protocol ``p``."""
    scores = []
    scale = float(np.std(_values(p.y)))
    for model in models:
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                result = backtest(model, p.y, initial=p.initial, step=p.step,
                                  horizon=p.horizon, refit=p.refit,
                                  coverage=coverage, m=p.m)
        except ValueError as exc:
            if "too short" not in str(exc):
                raise
            return {"note": "series too short for this model"}
        f = result.forecasts
        err = f["y_true"] - f["y_pred"]
        row = {"MAE": float(np.mean(np.abs(err))),
               "RMSE": float(np.sqrt(np.mean(err ** 2))),
               "MAPE %": float(np.mean(np.abs(err) / np.abs(f["y_true"])) * 100),
               "MASE": float(result.metrics["mase"].mean())}
        row["NRMSE"] = row["RMSE"] / scale
        if coverage is not None:
            row["coverage"] = metrics.interval_coverage(f["y_true"], f["lower"],
                                                        f["upper"])
        scores.append(row)
    return {key: float(np.mean([s[key] for s in scores])) for key in scores[0]}


COLUMNS = ("MAE", "RMSE", "NRMSE", "MAPE %", "MASE", "coverage")


def _fmt(value, column):
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "—"
    if column == "coverage":
        return f"{100 * value:.0f}%"
    if column in ("MAPE %",):
        return f"{value:.2f}"
    if column in ("NRMSE", "MASE"):
        return f"{value:.3f}"
    return f"{value:.4g}" if abs(value) < 1 else f"{value:.1f}"


def warm_up():
    """Compile the kernels once so that no method's time includes it."""
    y = np.sin(np.arange(80) / 3.0) + 2.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        LSTMForecaster(window=5, horizon=2, max_epochs=2, random_state=0).fit(y)


def run(quick=False, seeds=None, datasets=None, stream=sys.stdout):
    seeds = list(range(seeds if seeds is not None else (1 if quick else 3)))
    warm_up()
    lines = ["| dataset | protocol | method | MAE | RMSE | NRMSE | MAPE % | MASE | "
             "90% coverage | time (s) |",
             "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for p in protocols(quick):
        if datasets and p.dataset not in datasets:
            continue
        for label, models, coverage in methods(p, seeds):
            start = time.perf_counter()
            scores = evaluate(p, models, coverage)
            seconds = (time.perf_counter() - start) / len(models)
            if "note" in scores:
                cells = ["—"] * (len(COLUMNS) - 1) + [scores["note"]]
            else:
                cells = [_fmt(scores.get(c), c) for c in COLUMNS]
            line = (f"| {p.dataset} | {p.name} | {label} | " + " | ".join(cells)
                    + f" | {seconds:.1f} |")
            lines.append(line)
            print(line, file=stream, flush=True)
    return lines


def main(argv=None):
    parser = argparse.ArgumentParser(
        description="Forecast accuracy of LSTMForecaster against baselines on real "
                    "series (see the module docstring for the protocol).")
    parser.add_argument("--quick", action="store_true",
                        help="fewer origins, fewer seeds and shorter training")
    parser.add_argument("--seeds", type=int, default=None,
                        help="LSTM seeds averaged (default 3, 1 with --quick)")
    parser.add_argument("--datasets", default=None,
                        help="comma-separated subset of airline, sunspots, "
                             "mackey_glass, electricity")
    parser.add_argument("--output", default=None,
                        help="also write the Markdown table to this file")
    args = parser.parse_args(argv)
    if args.seeds is not None and args.seeds < 1:
        parser.error("--seeds must be at least 1")
    datasets = None if args.datasets is None else set(args.datasets.split(","))
    start = time.perf_counter()
    header = (f"lstmforecast forecast benchmark{' (quick)' if args.quick else ''}: "
              f"{platform.processor() or platform.machine()}, "
              f"{os.cpu_count()} CPU(s), statsmodels "
              f"{'installed' if HAVE_STATSMODELS else 'not installed'}")
    print(header, flush=True)
    lines = run(args.quick, args.seeds, datasets)
    total = time.perf_counter() - start
    print(f"\ntotal {total:.0f} s", flush=True)
    table = "\n".join(lines)
    print("\n" + table)
    if args.output:
        with open(args.output, "w") as f:
            f.write(f"{header}\n\n{table}\n\ntotal {total:.0f} s\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
