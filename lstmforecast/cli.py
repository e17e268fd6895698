"""Command-line interface: ``lstmforecast forecast``, ``datasets`` and ``demo``.

``lstmforecast forecast --dataset airline --horizon 12`` (or ``--csv FILE --column
y [--date-column ds]``) fits an :class:`~lstmforecast.LSTMForecaster`, prints the
forecast with its prediction interval and a rolling-origin backtest, and writes a
CSV (``--output``), a plot (``--plot``, with matplotlib) and the model (``--save``).

Defaults that depend on the data (each can be set explicitly):

* **season** ``m``, from the time index: hourly 24, daily 7, business-daily 5,
  weekly 52, monthly 12, quarterly 4; 1 otherwise (yearly, other frequencies, or a
  CSV without ``--date-column``);
* ``--log``: on when every value is positive;
* ``--difference``: ``m`` (seasonal differencing) when ``m > 1``, none otherwise;
* ``--window``: ``3 m`` capped at 48 when ``m > 1``, 24 otherwise; shortened (to
  keep at least 8 training windows) for short series;
* ``--horizon``: ``m`` when ``m > 1``, 10 otherwise;
* calibration origins for the interval: 20% of the possible origins, at least the
  ``ceil(c / (1 - c))`` a coverage ``c`` needs (9 for 0.9).

Errors in the input (files, columns, dates, options) print one line
``lstmforecast: error: ...`` on stderr and exit with status 2.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import time
import warnings

import numpy as np

PROG = "lstmforecast"
MIN_WINDOWS = 8  # training windows the automatic window length tries to keep
WINDOW_CAP = 48
DEFAULT_MAX_TRAIN = 2000


class CliError(Exception):
    """A problem with the user's input: one line on stderr, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (``lstmforecast: error: ...``)."""

    def error(self, message):
        raise CliError(f"{message} (see '{self.prog} --help')")


# ---------------------------------------------------------------------- demo
def _demo(args):
    from .estimators import LSTMRegressor

    rng = np.random.default_rng(args.seed)
    t = np.arange(args.length)
    series = (np.sin(2 * np.pi * t / 25) + 0.5 * np.sin(2 * np.pi * t / 7)
              + 0.1 * rng.normal(size=t.size))
    window = 24
    X = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    y = series[window:]
    split = int(0.8 * len(y))
    model = LSTMRegressor(hidden_size=16, max_epochs=args.epochs, learning_rate=0.01,
                          early_stopping=True, random_state=args.seed)
    start = time.perf_counter()
    model.fit(X[:split], y[:split])
    seconds = time.perf_counter() - start
    score = model.score(X[split:], y[split:])
    naive = 1 - np.mean((y[split:] - X[split:, -1]) ** 2) / np.var(y[split:])
    print("lstmforecast demo: one-step forecast of a noisy two-tone sine")
    print(f"  training windows {split}, test windows {len(y) - split}, "
          f"window {window}, epochs run {model.n_iter_}")
    print(f"  fit time {seconds:.1f} s (the first run includes Numba compilation)")
    print(f"  test R^2: LSTM {score:.3f}   last-value baseline {naive:.3f}")
    return 0


# ------------------------------------------------------------------ datasets
def _datasets(args):
    import pandas as pd

    from .datasets import list_datasets

    table = list_datasets()
    with pd.option_context("display.max_colwidth", 100, "display.width", 200):
        print(table.to_string(index=False))
    print("\nGenerator: lstmforecast.datasets.mackey_glass(n, tau=17) (the "
          "Mackey-Glass chaotic series).")
    print("Forecast one with: lstmforecast forecast --dataset NAME "
          "[--column COLUMN] --horizon H")
    return 0


# ------------------------------------------------------------ reading the data
_SEASONS = {  # offset class name -> (season, adjective)
    "Hour": (24, "hourly"),
    "Day": (7, "daily"),
    "BusinessDay": (5, "business-daily"),
    "Week": (52, "weekly"),
    "MonthBegin": (12, "monthly"),
    "MonthEnd": (12, "monthly"),
    "BusinessMonthBegin": (12, "monthly"),
    "BusinessMonthEnd": (12, "monthly"),
    "QuarterBegin": (4, "quarterly"),
    "QuarterEnd": (4, "quarterly"),
    "YearBegin": (1, "yearly"),
    "YearEnd": (1, "yearly"),
}


def season_of(freq):
    """``(season, description)`` of a pandas offset (None: no time index)."""
    if freq is None:
        return 1, "evenly spaced"
    name = type(freq).__name__
    if getattr(freq, "n", 1) == 1 and name in _SEASONS:
        return _SEASONS[name]
    return 1, f"frequency {freq.freqstr}"


def _one_line(text):
    return " ".join(str(text).split())


def _read_csv(path, column, date_column, freq):
    """The series of ``column`` in the CSV file ``path``, checked."""
    import pandas as pd

    if not os.path.exists(path):
        raise CliError(f"cannot read {path!r}: no such file")
    if os.path.isdir(path):
        raise CliError(f"cannot read {path!r}: it is a directory, not a CSV file")
    try:
        with open(path, "rb") as f:
            head = f.read(65536)
    except OSError as exc:
        raise CliError(f"cannot read {path!r}: {exc.strerror or exc}") from None
    if not head.strip():
        raise CliError(f"{path!r} is empty: a CSV file with a header line and one "
                       "row per time step is expected")
    if b"\x00" in head:
        raise CliError(f"{path!r} is not a CSV file (it holds binary data)")
    try:
        frame = pd.read_csv(path)
    except UnicodeDecodeError:
        raise CliError(f"{path!r} is not a CSV file (not UTF-8 text)") from None
    except pd.errors.EmptyDataError:
        raise CliError(f"{path!r} is empty: a CSV file with a header line and one "
                       "row per time step is expected") from None
    except (pd.errors.ParserError, ValueError) as exc:
        raise CliError(f"{path!r} is not a valid CSV file "
                       f"({_one_line(exc)})") from None
    frame.columns = [str(c).strip() for c in frame.columns]
    if frame.shape[0] == 0:
        raise CliError(f"{path!r} has a header but no data rows")
    names = list(frame.columns)
    listing = ", ".join(repr(c) for c in names)
    for option, name in (("--date-column", date_column), ("--column", column)):
        if name is not None and name not in names:
            raise CliError(f"{option} {name!r}: no such column in {path!r} "
                           f"(its columns: {listing})")
    if column is None:
        candidates = [c for c in names if c != date_column
                      and pd.api.types.is_numeric_dtype(frame[c])]
        if len(candidates) != 1:
            raise CliError(f"choose the column to forecast with --column (the "
                           f"columns of {path!r}: {listing})")
        column = candidates[0]
    if column == date_column:
        raise CliError("--column and --date-column name the same column "
                       f"{column!r}")
    values = _numeric(frame[column], f"column {column!r} of {path!r}")
    if date_column is None:
        if freq is not None:
            raise CliError("--freq needs --date-column")
        series = pd.Series(values, name=column)
        return series, f"{path} [{column}]"
    index = _dates(frame[date_column], date_column, path, freq)
    order = np.argsort(index.asi8, kind="stable")
    if not (order == np.arange(order.size)).all():
        index, values = index[order], values[order]
    index = _with_freq(index, date_column, path, freq)
    series = pd.Series(values, index=index, name=column)
    return series, f"{path} [{column}]"


def _numeric(column, what):
    import pandas as pd

    raw = column
    if not pd.api.types.is_numeric_dtype(raw) or pd.api.types.is_bool_dtype(raw):
        converted = pd.to_numeric(raw.astype(str).str.strip().replace("", np.nan),
                                  errors="coerce")
        bad = converted.isna() & raw.notna() & (raw.astype(str).str.strip() != "")
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise CliError(f"{what} is not numeric: data row {row + 1} holds "
                           f"{str(raw.iloc[row])[:40]!r}")
        raw = converted
    values = raw.to_numpy(dtype=np.float64, na_value=np.nan)
    missing = np.isnan(values)
    if missing.any():
        row = int(np.flatnonzero(missing)[0])
        raise CliError(f"{what} has {int(missing.sum())} missing value(s) (the first "
                       f"in data row {row + 1}); fill or drop them first")
    if not np.isfinite(values).all():
        raise CliError(f"{what} has infinite values")
    return values


def _dates(column, name, path, freq):
    import pandas as pd

    text = column.astype(str).str.strip()
    if column.isna().any():
        row = int(np.flatnonzero(column.isna().to_numpy())[0])
        raise CliError(f"date column {name!r} of {path!r} has an empty value in data "
                       f"row {row + 1}")
    if pd.api.types.is_integer_dtype(column):
        text = column.astype(str)  # years such as 1700
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            parsed = pd.to_datetime(text, errors="coerce", format="mixed")
        except (ValueError, TypeError, OverflowError):
            parsed = pd.Series(pd.NaT, index=text.index)
    bad = parsed.isna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise CliError(f"date column {name!r} of {path!r} has a value that is not a "
                       f"date: {text.iloc[row][:40]!r} in data row {row + 1}")
    index = pd.DatetimeIndex(parsed)
    if index.tz is not None:
        index = index.tz_convert(None)
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise CliError(f"date column {name!r} of {path!r} repeats the date {dup}")
    return index


def _with_freq(index, name, path, freq):
    import pandas as pd

    if freq is None:
        if len(index) < 3:
            raise CliError(f"date column {name!r} of {path!r} has fewer than 3 dates; "
                           "cannot infer the frequency")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            freq = pd.infer_freq(index)
        if freq is None:
            raise CliError(f"cannot infer a regular frequency from the dates in "
                           f"column {name!r} of {path!r} (gaps or irregular "
                           "spacing); fill the gaps, or give --freq")
    try:
        offset = pd.tseries.frequencies.to_offset(freq)
    except ValueError:
        raise CliError(f"--freq {freq!r} is not a pandas frequency (e.g. MS, W-SUN, "
                       "D, h)") from None
    try:
        return pd.DatetimeIndex(index, freq=offset)
    except ValueError:
        raise CliError(f"the dates in column {name!r} of {path!r} do not follow the "
                       f"frequency {offset.freqstr} (gaps or irregular spacing)"
                       ) from None


def _load_dataset(name, column):
    import pandas as pd

    from .datasets import DATASETS, load_dataset

    if name not in DATASETS:
        raise CliError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)} "
                       f"(see '{PROG} datasets')")
    data = load_dataset(name, fill="interpolate") if name == "co2" else \
        load_dataset(name)
    if isinstance(data, pd.DataFrame):
        listing = ", ".join(data.columns)
        if column is None:
            raise CliError(f"dataset {name!r} has {data.shape[1]} columns; choose one "
                           f"with --column ({listing})")
        if column not in data.columns:
            raise CliError(f"--column {column!r}: dataset {name!r} has no such "
                           f"column ({listing})")
        data = data[column]
    elif column is not None and column != data.name:
        raise CliError(f"--column {column!r}: dataset {name!r} is the single series "
                       f"{data.name!r}")
    return data, f"{name} ({data.name})"


# --------------------------------------------------------------- model choice
class Plan:
    """The forecaster's settings, chosen from the data and the options."""

    def __init__(self, **kwargs):
        self.__dict__.update(kwargs)


def _n_windows(n, window, difference, horizon, steps, n_cal):
    n_fit = n - horizon - n_cal + 1
    return n_fit - difference - window - steps + 1


def _n_calibration(n, window, difference, horizon, need):
    n_full = n - difference - window - horizon + 1
    return max(need, int(math.floor(0.2 * n_full)))


def make_plan(series, args):
    """Choose season, transforms, window and calibration for ``series``."""
    n = len(series)
    freq = getattr(series.index, "freq", None)
    season, frequency = season_of(freq)
    if args.season is not None:
        season = args.season
    values = series.to_numpy()
    if args.log is None:
        log = bool((values > 0).all())
    else:
        log = args.log
        if log and not (values > 0).all():
            raise CliError(f"--log needs positive values; the series has "
                           f"{int((values <= 0).sum())} value(s) <= 0")
    if args.difference is None:
        difference = season if season > 1 else 0
    else:
        difference = args.difference
    horizon = args.horizon if args.horizon is not None else (
        season if season > 1 else 10)
    steps = horizon if args.strategy == "direct" else 1
    need = math.ceil(args.interval / (1 - args.interval) - 1e-9)

    def fits(window, n_obs, n_cal=None):
        """Training windows left for ``n_obs`` observations, and the calibration."""
        if n_cal is None:
            n_cal = _n_calibration(n_obs, window, difference, horizon, need)
        return _n_windows(n_obs, window, difference, horizon, steps, n_cal), n_cal

    if args.window is not None:
        window = args.window
        count, n_cal = fits(window, n)
    else:
        window = min(3 * season, WINDOW_CAP) if season > 1 else 24
        count, n_cal = fits(window, n)
        while count < MIN_WINDOWS and window > 1:
            window -= 1
            count, n_cal = fits(window, n)
    if count < 2:
        how = (f"with window {window}" if args.window is not None
               else "even with a window of 1")
        raise CliError(
            f"--horizon {horizon} is too long for {n} observations: {how}, "
            f"difference {difference} and the {need} calibration origins "
            f"a {args.interval:g} interval needs, fewer than 2 training windows "
            "remain; use a shorter --horizon (or --window, --difference), a lower "
            "--interval, or more data")
    folds = args.folds
    while folds > 0 and fits(window, n - folds * horizon)[0] < 2:
        folds -= 1
    # 20% of the origins calibrate, at every backtest fold too, unless that is
    # fewer than the interval needs somewhere: then a fixed count everywhere.
    smallest = n - folds * horizon
    n_full = smallest - difference - window - horizon + 1
    if math.floor(0.2 * n_full) >= need:
        calibration = 0.2
    else:
        calibration = n_cal
        while folds > 0 and fits(window, n - folds * horizon, n_cal)[0] < 2:
            folds -= 1
    return Plan(season=season, frequency=frequency, log=log, difference=difference,
                window=window, horizon=horizon, calibration=calibration,
                folds=folds, windows=count)


def _forecaster(plan, args):
    from .forecaster import LSTMForecaster

    return LSTMForecaster(
        window=plan.window, horizon=plan.horizon, strategy=args.strategy,
        log=plan.log, difference=plan.difference or None,
        calibration_size=plan.calibration, hidden_size=args.hidden_size,
        max_epochs=args.epochs, early_stopping=args.early_stopping,
        random_state=args.seed)


# ------------------------------------------------------------------ printing
def _decimals(values):
    top = float(np.max(np.abs(values))) if len(values) else 1.0
    if not np.isfinite(top) or top == 0:
        return 3
    return int(min(6, max(0, 3 - math.floor(math.log10(top)))))


def _label(value):
    import pandas as pd

    if isinstance(value, pd.Timestamp):
        if value == value.normalize():
            return value.strftime("%Y-%m-%d")
        return value.strftime("%Y-%m-%d %H:%M")
    return str(value)


def _number(value, decimals, width):
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return f"{'n/a':>{width}}"
    return f"{value:>{width}.{decimals}f}"


def _print_table(headers, rows, widths):
    print("  ".join(f"{h:<{w}}" if i == 0 else f"{h:>{w}}"
                    for i, (h, w) in enumerate(zip(headers, widths))))
    for row in rows:
        print("  ".join(row))


def _forecast_table(times, forecast, lower, upper, decimals):
    labels = [_label(t) for t in times]
    first = max(4, *(len(s) for s in labels))
    width = max(9, *(len(f"{v:.{decimals}f}") for v in
                     np.concatenate([forecast, lower, upper]) if np.isfinite(v)))
    rows = [[f"{s:<{first}}", _number(f, decimals, width), _number(lo, decimals, width),
             _number(hi, decimals, width)]
            for s, f, lo, hi in zip(labels, forecast, lower, upper)]
    _print_table(["time", "forecast", "lower", "upper"], rows,
                 [first, width, width, width])


def _naive_scores(values, origins, horizon, season):
    """Seasonal-naive errors on the backtest folds (the comparison line)."""
    from . import metrics

    truth, pred, mase = [], [], []
    for origin in origins:
        last = values[origin - season:origin]
        p = np.resize(last, horizon)
        t = values[origin:origin + horizon]
        truth.append(t)
        pred.append(p)
        try:
            mase.append(metrics.mase(t, p, values[:origin], m=season))
        except ValueError:
            mase.append(np.nan)
    truth, pred = np.concatenate(truth), np.concatenate(pred)
    return _scores(truth, pred) | {"mase": float(np.nanmean(mase))
                                   if not np.isnan(mase).all() else np.nan}


def _scores(truth, pred):
    err = truth - pred
    mape = (float(np.mean(np.abs(err) / np.abs(truth)) * 100)
            if np.all(truth != 0) else np.nan)
    return {"mae": float(np.mean(np.abs(err))),
            "rmse": float(np.sqrt(np.mean(err ** 2))), "mape": mape}


def _run_backtest(series, plan, args):
    """Print the backtest summary; return its metrics table (or None)."""
    from .model_selection import backtest

    if plan.folds == 0:
        why = ("--folds 0" if args.folds == 0
               else "too few observations for a fold")
        print(f"\nbacktest: skipped ({why})")
        return None
    n, H = len(series), plan.horizon
    start = time.perf_counter()
    result = backtest(_forecaster(plan, args), series, initial=n - plan.folds * H,
                      step=H, horizon=H, refit=True, coverage=args.interval,
                      m=plan.season)
    seconds = time.perf_counter() - start
    f, m = result.forecasts, result.metrics
    print(f"\nbacktest: {plan.folds} rolling origin(s), {H} step(s) each, refitted "
          f"at each origin ({seconds:.1f} s)")
    labels = [_label(c) for c in m["cutoff"]]
    first = max(10, *(len(s) for s in labels))
    dec = _decimals(series.to_numpy())
    w = max(8, len(f"{f['y_true'].abs().max():.{dec}f}") + 1)
    rows = []
    for label, (_, r) in zip(labels, m.iterrows()):
        rows.append([f"{label:<{first}}", _number(r["mae"], dec, w),
                     _number(r["rmse"], dec, w), _number(r["mape"], 2, 7),
                     _number(r["mase"], 3, 6), f"{100 * r['coverage']:>8.0f}%"])
    pooled = _scores(f["y_true"].to_numpy(), f["y_pred"].to_numpy())
    inside = ((f["lower"] <= f["y_true"]) & (f["y_true"] <= f["upper"])).mean()
    rows.append([f"{'all':<{first}}", _number(pooled["mae"], dec, w),
                 _number(pooled["rmse"], dec, w), _number(pooled["mape"], 2, 7),
                 _number(float(m["mase"].mean()), 3, 6), f"{100 * inside:>8.0f}%"])
    _print_table(["cutoff", "MAE", "RMSE", "MAPE%", "MASE", "coverage"], rows,
                 [first, w, w, 7, 6, 9])
    origins = list(range(n - plan.folds * H, n - H + 1, H))
    naive_m = plan.season if plan.season > 1 else 1
    if origins[0] >= naive_m:
        naive = _naive_scores(series.to_numpy(), origins, H, naive_m)
        name = (f"seasonal naive (m={naive_m})" if naive_m > 1
                else "naive (last value)")
        mape = "n/a" if np.isnan(naive["mape"]) else f"{naive['mape']:.2f}%"
        print(f"{name} on the same origins: MAE {naive['mae']:.{dec}f}, "
              f"RMSE {naive['rmse']:.{dec}f}, MAPE {mape}, "
              f"MASE {naive['mase']:.3f}")
    return m


def _plot(path, series, forecast, lower, upper, title, coverage):
    try:
        import matplotlib
    except ImportError:
        print(f"{PROG}: note: --plot skipped: matplotlib is not installed "
              "(pip install matplotlib)", file=sys.stderr)
        return False
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    keep = min(len(series), max(10 * len(forecast), 200))
    history = series.iloc[-keep:]

    def axis(index):
        return index.to_timestamp() if hasattr(index, "to_timestamp") else index

    fig, ax = plt.subplots(figsize=(9, 4.5))
    ax.plot(axis(history.index), history.to_numpy(), color="black", lw=1.2,
            label="history")
    x = axis(forecast.index)
    ax.fill_between(x, lower.to_numpy(), upper.to_numpy(), color="tab:blue",
                    alpha=0.25, lw=0, label=f"{coverage:.0%} interval")
    ax.plot(x, forecast.to_numpy(), color="tab:blue", lw=1.8, label="forecast")
    ax.set_title(title)
    ax.set_ylabel(str(series.name))
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


def _check_writable(option, path):
    if path is None:
        return
    folder = os.path.dirname(os.path.abspath(path))
    if os.path.isdir(path):
        raise CliError(f"{option} {path!r} is a directory")
    if not os.path.isdir(folder):
        raise CliError(f"{option} {path!r}: the folder {folder!r} does not exist")
    if not os.access(folder, os.W_OK):
        raise CliError(f"{option} {path!r}: the folder is not writable")


# ------------------------------------------------------------------ forecast
def _forecast(args):
    import pandas as pd
    from sklearn.exceptions import ConvergenceWarning

    for option in ("output", "plot", "save"):
        _check_writable(f"--{option}", getattr(args, option))
    if args.dataset is not None:
        if args.date_column is not None or args.freq is not None:
            raise CliError("--date-column and --freq apply to --csv only")
        series, source = _load_dataset(args.dataset, args.column)
    else:
        series, source = _read_csv(args.csv, args.column, args.date_column,
                                   args.freq)
    n_all = len(series)
    if args.max_train is not None and n_all > args.max_train:
        series = series.iloc[-args.max_train:]
    plan = make_plan(series, args)
    model = _forecaster(plan, args)
    index = series.index
    span = (f", {_label(index[0])} to {_label(index[-1])}"
            if not isinstance(index, pd.RangeIndex) else "")
    used = (f" (the last {len(series)} of {n_all} used; --max-train)"
            if len(series) < n_all else "")
    print(f"{PROG} forecast: {source}: {len(series)} {plan.frequency} "
          f"observations{span}{used}")
    choices = [f"season {plan.season}", "log" if plan.log else "no log",
               (f"difference {plan.difference}" if plan.difference
                else "no differencing"), f"window {plan.window}"]
    print(f"model: LSTMForecaster(strategy={args.strategy!r}, hidden_size="
          f"{args.hidden_size}, max_epochs={args.epochs}, early_stopping="
          f"{args.early_stopping}, random_state={args.seed}); " + ", ".join(choices))

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", RuntimeWarning)
        start = time.perf_counter()
        try:
            model.fit(series)
        except ValueError as exc:
            raise CliError(f"cannot fit the model: {_one_line(exc)}") from None
        seconds = time.perf_counter() - start
        forecast, lower, upper = model.predict_interval(args.interval)
        print(f"fitted in {seconds:.1f} s: {model.regressor_.n_iter_} epochs on "
              f"{model.n_train_windows_} windows, {model.n_calibration_} "
              "calibration origins for the interval")
        dec = _decimals(series.to_numpy())
        print(f"\nforecast, {plan.horizon} step(s), {args.interval:.0%} interval:")
        _forecast_table(forecast.index, forecast.to_numpy(), lower.to_numpy(),
                        upper.to_numpy(), dec)
        try:
            _run_backtest(series, plan, args)
        except ValueError as exc:
            print(f"\nbacktest: failed ({_one_line(exc)})")

    if args.output:
        table = pd.DataFrame({"time": [_label(t) for t in forecast.index],
                              "forecast": forecast.to_numpy(),
                              "lower": lower.to_numpy(), "upper": upper.to_numpy()})
        table.to_csv(args.output, index=False)
        print(f"\nwrote {args.output} (time, forecast, lower, upper)")
    if args.plot:
        title = (f"{source}: {plan.horizon}-step LSTM forecast, "
                 f"{args.interval:.0%} interval")
        if _plot(args.plot, series, forecast, lower, upper, title, args.interval):
            print(f"wrote {args.plot}")
    if args.save:
        model.save(args.save)
        print(f"wrote {args.save} (lstmforecast.load reads it)")
    return 0


# -------------------------------------------------------------------- parser
def _int_at_least(minimum, what):
    def parse(text):
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got "
                                             f"{text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got "
                                             f"{value}")
        return value
    return parse


def _coverage(text):
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0 < value < 1:
        raise argparse.ArgumentTypeError(f"must be between 0 and 1 (e.g. 0.9), got "
                                         f"{text}")
    return value


_FORECAST_EPILOG = """\
defaults that depend on the data (override them with the options above):
  season     from the dates: hourly 24, daily 7, business-daily 5, weekly 52,
             monthly 12, quarterly 4; otherwise (yearly, no --date-column) 1
  --log      on when every value is positive
  --difference  the season when it is > 1 (seasonal differencing), else none
  --window   3 x season (at most 48) when season > 1, else 24; shortened for
             short series
  --horizon  the season when it is > 1, else 10
The interval is split conformal: the absolute errors of the model's forecasts
from the last origins of the data (20%% of them, at least 9 for 0.9).
The backtest refits the model at the last --folds origins, --horizon apart, and
compares it with the seasonal naive forecast on the same origins.

examples:
  lstmforecast forecast --dataset airline --horizon 12
  lstmforecast forecast --csv sales.csv --column y --date-column ds --horizon 6 \\
      --interval 0.8 --plot forecast.png --output forecast.csv
"""


def build_parser():
    """The argument parser of the ``lstmforecast`` command."""
    parser = _Parser(
        prog=PROG,
        description="LSTM forecasting toolkit (Numba kernels, scikit-learn API).")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND",
                                parser_class=_Parser)

    fc = sub.add_parser(
        "forecast", help="forecast a series (bundled dataset or CSV file) with an "
        "LSTM, with intervals and a backtest",
        description="Fit an LSTMForecaster to a series, print its forecast with a "
        "split-conformal prediction interval and a rolling-origin backtest "
        "(MAE, RMSE, MAPE, MASE, interval coverage) against the seasonal naive "
        "forecast.", epilog=_FORECAST_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    source = fc.add_argument_group("data (one of --dataset, --csv)")
    which = source.add_mutually_exclusive_group(required=True)
    which.add_argument("--dataset", metavar="NAME",
                       help="a bundled dataset: airline, sunspots, co2, electricity, "
                            "macro (see 'lstmforecast datasets')")
    which.add_argument("--csv", metavar="FILE",
                       help="a CSV file with a header line, one row per time step")
    source.add_argument("--column", metavar="NAME",
                        help="the column to forecast (needed when the file, or the "
                             "macro dataset, has several numeric columns)")
    source.add_argument("--date-column", metavar="NAME",
                        help="the CSV column with the dates (default: none, the "
                             "rows are evenly spaced steps)")
    source.add_argument("--freq", metavar="FREQ",
                        help="the pandas frequency of the dates (e.g. MS, W-SUN, D, "
                             "h); inferred by default")
    source.add_argument("--max-train", type=_int_at_least(10, "--max-train"),
                        default=DEFAULT_MAX_TRAIN, metavar="N",
                        help=f"use only the last N observations (default "
                             f"{DEFAULT_MAX_TRAIN})")

    model = fc.add_argument_group("forecast and model")
    model.add_argument("--horizon", type=_int_at_least(1, "--horizon"), metavar="H",
                       help="steps to forecast (default: the season, or 10)")
    model.add_argument("--interval", type=_coverage, default=0.9, metavar="C",
                       help="coverage of the prediction interval (default 0.9)")
    model.add_argument("--strategy", choices=("recursive", "direct"),
                       default="recursive",
                       help="recursive: a one-step model fed its own forecasts; "
                            "direct: one model for the whole horizon (default "
                            "recursive)")
    model.add_argument("--window", type=_int_at_least(1, "--window"), metavar="W",
                       help="look-back window in steps (default: see below)")
    model.add_argument("--season", type=_int_at_least(1, "--season"), metavar="M",
                       help="season length (default: from the dates)")
    model.add_argument("--log", action=argparse.BooleanOptionalAction, default=None,
                       help="model the log of the series (default: when every "
                            "value is positive)")
    model.add_argument("--difference", type=_int_at_least(0, "--difference"),
                       metavar="D", help="difference the (log) series at lag D, 0 "
                                         "for none (default: the season)")
    model.add_argument("--hidden-size", type=_int_at_least(1, "--hidden-size"),
                       default=32, metavar="N", help="LSTM units (default 32)")
    model.add_argument("--epochs", type=_int_at_least(1, "--epochs"), default=100,
                       metavar="N", help="maximum training epochs, with early "
                                         "stopping (default 100)")
    model.add_argument("--early-stopping", action=argparse.BooleanOptionalAction,
                       default=True,
                       help="stop when the score on the last 10%% of the training "
                            "windows stops improving, keeping the best weights "
                            "(default on)")
    model.add_argument("--seed", type=int, default=0,
                       help="random seed (default 0)")
    model.add_argument("--folds", type=_int_at_least(0, "--folds"), default=3,
                       metavar="K", help="backtest origins (default 3; 0 skips the "
                                         "backtest)")

    out = fc.add_argument_group("output")
    out.add_argument("--output", metavar="FILE",
                     help="write the forecast as CSV: time, forecast, lower, upper")
    out.add_argument("--plot", metavar="FILE",
                     help="draw history, forecast and interval to an image "
                          "(PNG, SVG, PDF; needs matplotlib)")
    out.add_argument("--save", metavar="FILE",
                     help="save the fitted forecaster (lstmforecast.load reads it)")
    fc.set_defaults(func=_forecast)

    ds = sub.add_parser("datasets", help="list the bundled datasets",
                        description="List the real time series bundled with "
                        "lstmforecast (see datasets/README.md for their sources "
                        "and licences).")
    ds.set_defaults(func=_datasets)

    demo = sub.add_parser("demo", help="fit an LSTM on a synthetic series and print "
                          "its test score",
                          description="Fit an LSTMRegressor to a noisy two-tone sine "
                          "and print its one-step test R^2 against the last-value "
                          "baseline.")
    demo.add_argument("--length", type=_int_at_least(100, "--length"), default=1200,
                      help="length of the synthetic series (default 1200)")
    demo.add_argument("--epochs", type=_int_at_least(1, "--epochs"), default=60,
                      help="maximum training epochs (default 60)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Entry point; returns the exit status (0 ok, 2 bad input, 1 other failure)."""
    parser = build_parser()
    try:
        try:
            args = parser.parse_args(argv)
        except SystemExit as exc:  # --help
            return exc.code if isinstance(exc.code, int) else 0
        return args.func(args)
    except CliError as exc:
        print(f"{PROG}: error: {_one_line(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
