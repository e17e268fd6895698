"""The ``lstmforecast`` command line: ``forecast``, ``datasets``, ``demo``.

Mostly in-process ``main([...])`` calls (the kernels compile once per test process)
with tiny models (``--epochs 2 --hidden-size 4``); one subprocess run checks the
installed entry point and that an error prints no traceback.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmforecast import cli, load
from lstmforecast.datasets import DATASETS, load_airline

REPO = Path(__file__).resolve().parents[1]
FAST = ["--epochs", "2", "--hidden-size", "4"]
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None


def run(capsys, *args):
    """``(exit status, stdout, stderr)`` of ``lstmforecast ARGS``."""
    code = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return code, out.out, out.err


def forecast_rows(stdout):
    """The rows of the printed forecast table."""
    lines = stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("forecast,"))
    assert lines[start + 1].split() == ["time", "forecast", "lower", "upper"]
    rows = []
    for line in lines[start + 2:]:
        if not line.strip():
            break
        rows.append(line.split())
    return rows


@pytest.fixture(scope="module")
def airline_csv(tmp_path_factory):
    folder = tmp_path_factory.mktemp("csv")
    y = load_airline()
    frame = pd.DataFrame({"ds": y.index.strftime("%Y-%m"), "y": y.to_numpy(),
                          "note": ["x"] * len(y)})
    path = folder / "airline.csv"
    frame.to_csv(path, index=False)
    return path


# ------------------------------------------------------------------- forecast
def test_forecast_airline_prints_table_and_backtest(capsys):
    code, out, err = run(capsys, "forecast", "--dataset", "airline", "--horizon", 12,
                         *FAST)
    assert code == 0, err
    rows = forecast_rows(out)
    assert len(rows) == 12
    assert rows[0][0] == "1961-01-01" and rows[-1][0] == "1961-12-01"
    for _, forecast, lower, upper in rows:
        assert float(lower) <= float(forecast) <= float(upper)
    # defaults for monthly data
    assert "season 12, log, difference 12, window 36" in out
    # backtest summary: 3 folds + the pooled line + the seasonal naive comparison
    assert "backtest: 3 rolling origin(s), 12 step(s) each" in out
    header = next(line for line in out.splitlines() if line.startswith("cutoff"))
    assert header.split() == ["cutoff", "MAE", "RMSE", "MAPE%", "MASE", "coverage"]
    for cutoff in ("1957-12-01", "1958-12-01", "1959-12-01", "all"):
        assert any(line.startswith(cutoff) for line in out.splitlines()), cutoff
    assert "seasonal naive (m=12) on the same origins: MAE" in out
    assert err == ""


def test_forecast_csv_with_date_column(capsys, airline_csv):
    code, out, err = run(capsys, "forecast", "--csv", airline_csv, "--column", "y",
                         "--date-column", "ds", "--horizon", 6, "--folds", 1,
                         "--interval", 0.8, *FAST)
    assert code == 0, err
    assert "144 monthly observations, 1949-01-01 to 1960-12-01" in out
    rows = forecast_rows(out)
    assert [r[0] for r in rows] == [f"1961-0{i}-01" for i in range(1, 7)]
    assert "80% interval" in out


def test_forecast_csv_without_date_column_uses_steps(capsys, airline_csv):
    code, out, err = run(capsys, "forecast", "--csv", airline_csv, "--column", "y",
                         "--horizon", 4, "--folds", 1, "--season", 12, *FAST)
    assert code == 0, err
    assert "144 evenly spaced observations" in out
    assert "season 12" in out
    assert [r[0] for r in forecast_rows(out)] == ["144", "145", "146", "147"]


def test_forecast_csv_picks_the_only_numeric_column(capsys, tmp_path):
    path = tmp_path / "s.csv"
    t = np.arange(60)
    pd.DataFrame({"label": ["a"] * 60, "value": 5 + np.sin(t / 3)}).to_csv(
        path, index=False)
    code, out, err = run(capsys, "forecast", "--csv", path, "--horizon", 3,
                         "--folds", 0, *FAST)
    assert code == 0, err
    assert "[value]" in out and len(forecast_rows(out)) == 3
    assert "backtest: skipped (--folds 0)" in out


def test_output_writes_the_forecast_csv(capsys, tmp_path):
    target = tmp_path / "forecast.csv"
    code, out, err = run(capsys, "forecast", "--dataset", "airline", "--horizon", 12,
                         "--folds", 1, "--output", target, *FAST)
    assert code == 0, err
    table = pd.read_csv(target)
    assert list(table.columns) == ["time", "forecast", "lower", "upper"]
    assert len(table) == 12
    assert table["time"].iloc[0] == "1961-01-01"
    assert (table["lower"] <= table["forecast"]).all()
    assert (table["forecast"] <= table["upper"]).all()
    printed = forecast_rows(out)
    assert np.allclose(table["forecast"], [float(r[1]) for r in printed], atol=0.06)


def test_save_writes_a_loadable_forecaster(capsys, tmp_path):
    target = tmp_path / "model.npz"
    code, out, err = run(capsys, "forecast", "--dataset", "sunspots", "--horizon", 5,
                         "--folds", 1, "--save", target, "--output",
                         tmp_path / "f.csv", *FAST)
    assert code == 0, err
    model = load(target)
    table = pd.read_csv(tmp_path / "f.csv")
    assert np.allclose(model.predict().to_numpy(), table["forecast"].to_numpy())
    assert str(model.predict().index[0]) == "2009"


@pytest.mark.skipif(not HAVE_MATPLOTLIB, reason="matplotlib is not installed")
def test_plot_writes_a_png(capsys, tmp_path):
    target = tmp_path / "forecast.png"
    code, out, err = run(capsys, "forecast", "--dataset", "airline", "--horizon", 12,
                         "--folds", 0, "--plot", target, *FAST)
    assert code == 0, err
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"wrote {target}" in out


def test_plot_without_matplotlib_is_a_notice(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import fails
    target = tmp_path / "forecast.png"
    code, out, err = run(capsys, "forecast", "--dataset", "airline", "--horizon", 12,
                         "--folds", 0, "--plot", target, *FAST)
    assert code == 0
    assert len(forecast_rows(out)) == 12
    assert not target.exists()
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "matplotlib is not installed" in lines[0]


# ---------------------------------------------------------------- bad input
def _write(tmp_path, name, data):
    path = tmp_path / name
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


BAD = {
    "missing_file": (lambda p: ["--csv", p / "nope.csv", "--column", "y"],
                     "no such file"),
    "directory": (lambda p: ["--csv", p, "--column", "y"], "directory"),
    "empty_file": (lambda p: ["--csv", _write(p, "e.csv", ""), "--column", "y"],
                   "empty"),
    "header_only": (lambda p: ["--csv", _write(p, "h.csv", "ds,y\n"), "--column",
                               "y"], "no data rows"),
    "binary_file": (lambda p: ["--csv", _write(p, "b.csv", b"\x89PNG\r\n\x1a\n\x00\x00"
                                               b"\x00\rIHDR" * 20), "--column", "y"],
                    "not a CSV"),
    "unknown_column": (lambda p: ["--csv", _good(p), "--column", "sales"],
                       "'sales': no such column"),
    "unknown_date_column": (lambda p: ["--csv", _good(p), "--column", "y",
                                       "--date-column", "when"],
                            "'when': no such column"),
    "non_numeric_column": (lambda p: ["--csv", _good(p, y="oops"), "--column", "y"],
                           "not numeric"),
    "missing_values": (lambda p: ["--csv", _good(p, y=""), "--column", "y"],
                       "missing value"),
    "bad_dates": (lambda p: ["--csv", _good(p, ds="not-a-date"), "--column", "y",
                             "--date-column", "ds"], "not a date"),
    "duplicate_dates": (lambda p: ["--csv", _good(p, ds="2000-01-01"), "--column",
                                   "y", "--date-column", "ds"], "repeats the date"),
    "irregular_dates": (lambda p: ["--csv", _good(p, ds="2031-07-05"), "--column",
                                   "y", "--date-column", "ds"], "frequency"),
    "horizon_zero": (lambda p: ["--dataset", "airline", "--horizon", "0"],
                     "--horizon: must be at least 1"),
    "horizon_negative": (lambda p: ["--dataset", "airline", "--horizon", "-3"],
                         "--horizon"),
    "horizon_too_long": (lambda p: ["--dataset", "airline", "--horizon", "200"],
                         "too long for 144 observations"),
    "horizon_too_long_csv": (lambda p: ["--csv", _good(p, n=12), "--column", "y",
                                        "--horizon", "8"], "too long"),
    "unknown_dataset": (lambda p: ["--dataset", "nope"], "unknown dataset 'nope'"),
    "dataset_needs_column": (lambda p: ["--dataset", "macro"], "--column"),
    "no_source": (lambda p: ["--horizon", "3"], "--dataset --csv is required"),
    "both_sources": (lambda p: ["--dataset", "airline", "--csv", _good(p)],
                     "not allowed"),
    "bad_interval": (lambda p: ["--dataset", "airline", "--interval", "1.5"],
                     "--interval"),
    "bad_epochs": (lambda p: ["--dataset", "airline", "--epochs", "many"],
                   "--epochs"),
    "log_of_negative": (lambda p: ["--csv", _good(p, y="-1"), "--column", "y",
                                   "--log"], "--log needs positive"),
    "output_folder_missing": (lambda p: ["--dataset", "airline", "--output",
                                         p / "no" / "f.csv"], "does not exist"),
}


def _good(folder, n=60, **replace):
    """A monthly CSV; ``replace`` sets row 5's value of a column."""
    frame = pd.DataFrame({"ds": pd.date_range("2000-01-01", periods=n, freq="MS")
                          .strftime("%Y-%m-%d"),
                          "y": (10 + np.sin(np.arange(n) / 2)).round(3).astype(str)})
    for column, value in replace.items():
        frame.loc[5, column] = value
    path = folder / f"good_{n}_{'_'.join(replace)}.csv"
    frame.to_csv(path, index=False)
    return path


@pytest.mark.parametrize("case", BAD)
def test_bad_input_is_one_line_and_exit_2(case, capsys, tmp_path):
    make, match = BAD[case]
    code, out, err = run(capsys, "forecast", *make(tmp_path), *FAST)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("lstmforecast: error: ")
    assert match in lines[0]
    assert "Traceback" not in err


@pytest.mark.parametrize("args", [["nonsense"], [], ["demo", "--length", "5"],
                                  ["forecast", "--dataset", "airline", "--bogus"]])
def test_bad_command_line_is_one_line_and_exit_2(args, capsys):
    code, out, err = run(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lstmforecast: error: ")


# ---------------------------------------------------------- other commands
def test_datasets_lists_every_bundled_dataset(capsys):
    code, out, err = run(capsys, "datasets")
    assert code == 0, err
    names = [line.split()[0] for line in out.splitlines()[1:] if line.strip()]
    for name in DATASETS:
        assert name in names
    assert "monthly" in out and "mackey_glass" in out


@pytest.mark.parametrize("command", [[], ["forecast"], ["datasets"], ["demo"]])
def test_help_exits_0(command, capsys):
    code, out, err = run(capsys, *command, "--help")
    assert code == 0
    assert out.startswith("usage: lstmforecast")
    if command == ["forecast"]:
        for option in ("--dataset", "--csv", "--column", "--date-column",
                       "--horizon", "--interval", "--plot", "--output", "--window",
                       "--epochs", "--seed", "--log", "--difference", "--strategy",
                       "--season", "--save", "--folds"):
            assert option in out, option
        assert "monthly 12" in out  # the documented defaults


def test_entry_point_subprocess_has_no_traceback(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    ok = subprocess.run([sys.executable, "-m", "lstmforecast", "forecast",
                         "--dataset", "airline", "--horizon", "3", "--folds", "1",
                         *FAST], capture_output=True, text=True, env=env,
                        timeout=300)
    assert ok.returncode == 0, ok.stderr
    assert len(forecast_rows(ok.stdout)) == 3
    bad = subprocess.run([sys.executable, "-m", "lstmforecast", "forecast", "--csv",
                          str(tmp_path / "missing.csv")], capture_output=True,
                         text=True, env=env, timeout=300)
    assert bad.returncode == 2
    assert bad.stderr.count("\n") == 1 and "Traceback" not in bad.stderr
