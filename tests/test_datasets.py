"""The shipped datasets (lstmforecast/data/, documented in datasets/README.md) and the
Mackey-Glass generator of lstmforecast.datasets."""

import hashlib
import math
import re
import shutil
import subprocess
import sys
import zipfile
from importlib import resources
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from lstmforecast import datasets
from lstmforecast.datasets import (
    CO2_MISSING_WEEKS,
    DATA_FILES,
    DATASETS,
    list_datasets,
    load_airline,
    load_co2,
    load_dataset,
    load_electricity,
    load_macro,
    load_sunspots,
    mackey_glass,
)

REPO = Path(__file__).resolve().parents[1]
README = REPO / "datasets" / "README.md"
DATA_DIR = REPO / "lstmforecast" / "data"


def _readme_table():
    """{file name: (dataset name, rows, sha256)} from datasets/README.md's table."""
    table = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        if not line.startswith("|"):
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        files = re.findall(r"`([\w.-]+\.csv)`", line)
        digests = re.findall(r"\b[0-9a-f]{64}\b", line)
        if len(files) == 1 and len(digests) == 1:
            table[files[0]] = (cells[0], int(cells[2]), digests[0])
    return table


def _sha256(data):
    return hashlib.sha256(data).hexdigest()


def _yearly():
    return pd.period_range("2000", periods=1, freq="Y").freq


def _quarterly():
    return pd.period_range("2000Q1", periods=1, freq="Q").freq


# name: (type, length, index class, freq, first index, last index)
EXPECTED = {
    "airline": (pd.Series, 144, pd.DatetimeIndex, pd.offsets.MonthBegin(),
                pd.Timestamp("1949-01-01"), pd.Timestamp("1960-12-01")),
    "sunspots": (pd.Series, 309, pd.PeriodIndex, _yearly(),
                 pd.Period("1700", freq="Y"), pd.Period("2008", freq="Y")),
    "co2": (pd.Series, 2284, pd.DatetimeIndex, pd.offsets.Week(weekday=5),
            pd.Timestamp("1958-03-29"), pd.Timestamp("2001-12-29")),
    "electricity": (pd.Series, 26304, pd.DatetimeIndex, pd.offsets.Hour(),
                    pd.Timestamp("2012-01-01 00:00"),
                    pd.Timestamp("2014-12-31 23:00")),
    "macro": (pd.DataFrame, 203, pd.PeriodIndex, _quarterly(),
              pd.Period("1959Q1", freq="Q"), pd.Period("2009Q3", freq="Q")),
}


def test_registry_lists_every_dataset_once():
    assert set(DATASETS) == set(EXPECTED) == set(DATA_FILES)
    for name, (loader, description) in DATASETS.items():
        assert callable(loader)
        assert loader.__name__ == f"load_{name}"
        assert isinstance(description, str) and description
        assert "\n" not in description


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_loader_type_length_index_and_no_nan(name):
    kind, length, index_class, freq, first, last = EXPECTED[name]
    kwargs = {"fill": "interpolate"} if name == "co2" else {}
    data = DATASETS[name][0](**kwargs)
    assert type(data) is kind
    assert len(data) == length
    assert isinstance(data.index, index_class)
    assert data.index.freq == freq
    assert data.index[0] == first and data.index[-1] == last
    assert data.index.is_monotonic_increasing and data.index.is_unique
    assert data.index.name
    if kind is pd.Series:
        assert data.name == ("passengers" if name == "airline" else name)
        assert data.dtype == np.float64
        assert not data.isna().any()
    else:
        assert (data.dtypes == np.float64).all()
        assert not data.isna().any().any()
    # a fresh object each call: modifying one result leaves the next load intact
    data.iloc[0] = -1.0
    again = DATASETS[name][0](**kwargs)
    assert np.all(np.asarray(again.iloc[0]) != -1.0)


def test_load_dataset_by_name_matches_loader():
    pd.testing.assert_series_equal(load_dataset("airline"), load_airline())
    pd.testing.assert_series_equal(load_dataset("co2", fill="interpolate"),
                                   load_co2(fill="interpolate"))


def test_airline_values():
    y = load_airline()
    assert y.iloc[0] == 112 and y.iloc[-1] == 432
    assert y.min() == 104 and y.max() == 622
    assert y.index.freqstr == "MS"
    # yearly seasonality: July above the yearly mean every year
    assert (y[y.index.month == 7].to_numpy()
            > y.groupby(y.index.year).mean().to_numpy()).all()


def test_sunspots_values():
    y = load_sunspots()
    assert y.index[0].year == 1700 and y.index[-1].year == 2008
    assert y.index.year.tolist() == list(range(1700, 2009))
    assert y.iloc[0] == 5 and y.min() >= 0 and y.max() == pytest.approx(190.2)


def test_co2_missing_weeks_kept_as_nan_and_documented():
    raw = load_co2()
    assert raw.index.freqstr == "W-SAT"
    assert (raw.index.day_of_week == 5).all()
    assert raw.isna().sum() == CO2_MISSING_WEEKS == 59
    assert not np.isnan(raw.iloc[0]) and not np.isnan(raw.iloc[-1])
    text = README.read_text(encoding="utf-8")
    assert f"**{CO2_MISSING_WEEKS} weeks have no value**" in text
    assert f"{CO2_MISSING_WEEKS} missing weeks" in DATASETS["co2"][1]
    observed = raw.dropna()
    assert 313 <= observed.min() and observed.max() <= 374


def test_co2_interpolation_fills_only_the_gaps():
    raw = load_co2(fill=None)
    filled = load_co2(fill="interpolate")
    assert filled.isna().sum() == 0
    pd.testing.assert_series_equal(filled[raw.notna()], raw.dropna())
    # the single missing week 1985-08-03 is the mean of its neighbours
    gap = pd.Timestamp("1985-08-03")
    assert np.isnan(raw[gap])
    week = pd.Timedelta(weeks=1)
    assert filled[gap] == pytest.approx((raw[gap - week] + raw[gap + week]) / 2)
    # interpolated values stay between the neighbouring observations
    assert filled.min() >= raw.min() and filled.max() <= raw.max()


@pytest.mark.parametrize("fill", ["linear", "ffill", "", 0, True])
def test_co2_bad_fill_raises(fill):
    with pytest.raises(ValueError, match="fill"):
        load_co2(fill=fill)


def test_electricity_values_and_seasonality():
    y = load_electricity()
    assert y.index.tz is None
    assert (y > 0).all() and y.max() < 6000
    # only the three spring daylight-saving hours are near zero (documented)
    low = y[y < 500]
    assert [t.strftime("%Y-%m-%d %H:%M") for t in low.index] == [
        "2012-03-25 01:00", "2013-03-31 01:00", "2014-03-30 01:00"]
    assert y.autocorr(24) > 0.8 and y.autocorr(168) > 0.8
    assert y.autocorr(12) < y.autocorr(24)


def test_macro_values():
    df = load_macro()
    assert list(df.columns) == ["realgdp", "realcons", "realinv", "realgovt",
                                "realdpi", "cpi", "m1", "tbilrate", "unemp", "pop",
                                "infl", "realint"]
    assert df.index.freqstr == "Q-DEC"
    assert df.index.name == "quarter"
    assert df.loc[pd.Period("1959Q1", freq="Q"), "realgdp"] == pytest.approx(2710.349)
    assert df["unemp"].between(3, 11).all()
    assert (df["realgdp"] > 2000).all() and (df["pop"] > 170).all()


def test_list_datasets_table():
    table = list_datasets()
    assert isinstance(table, pd.DataFrame)
    assert list(table["name"]) == list(DATASETS)
    for column in ("name", "frequency", "length", "description"):
        assert column in table.columns
    lengths = dict(zip(table["name"], table["length"]))
    assert lengths == {name: spec[1] for name, spec in EXPECTED.items()}
    assert dict(zip(table["name"], table["frequency"])) == {
        "airline": "monthly", "sunspots": "yearly", "co2": "weekly",
        "electricity": "hourly", "macro": "quarterly"}
    assert table.loc[table["name"] == "macro", "columns"].item() == 12


@pytest.mark.parametrize("name", ["nope", "", None, 3, "Airline"])
def test_unknown_dataset_raises(name):
    with pytest.raises(ValueError, match="unknown dataset"):
        load_dataset(name)
    with pytest.raises(ValueError, match="unknown dataset"):
        datasets.data_file(name)


# -------------------------------------------------------- files, README, resources

def test_readme_table_lists_every_file_with_its_rows():
    table = _readme_table()
    on_disk = {path.name for path in DATA_DIR.glob("*.csv")}
    assert set(table) == on_disk == set(DATA_FILES.values())
    for filename, (name, rows, _) in table.items():
        assert DATA_FILES[name] == filename
        assert rows == EXPECTED[name][1]


@pytest.mark.parametrize("filename", sorted(DATA_FILES.values()))
def test_file_sha256_matches_readme(filename):
    expected = _readme_table()[filename][2]
    assert _sha256((DATA_DIR / filename).read_bytes()) == expected


@pytest.mark.parametrize("name", sorted(DATA_FILES))
def test_files_read_through_importlib_resources(name):
    # the loaders' own path: importlib.resources, as from an installed wheel
    resource = resources.files("lstmforecast") / "data" / DATA_FILES[name]
    assert resource.is_file()
    with resource.open("rb") as fh:
        data = fh.read()
    assert _sha256(data) == _readme_table()[DATA_FILES[name]][2]
    assert datasets.data_file(name).read_bytes() == data
    assert len(data) < 2_000_000


def test_loaders_work_from_a_zip_without_a_filesystem_path(tmp_path):
    """A package imported from a zip archive has no data files on disk: the loaders
    must go through importlib.resources, not __file__."""
    archive = tmp_path / "pkg.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("lstmforecast/__init__.py", "")
        zf.write(REPO / "lstmforecast" / "datasets.py", "lstmforecast/datasets.py")
        for filename in DATA_FILES.values():
            zf.write(DATA_DIR / filename, f"lstmforecast/data/{filename}")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1])\n"
        "import lstmforecast.datasets as d\n"
        "assert d.__file__.startswith(sys.argv[1]), d.__file__\n"
        "print(*(len(loader()) for loader, _ in d.DATASETS.values()))\n"
    )
    out = subprocess.run([sys.executable, "-c", code, str(archive)],
                         capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [str(EXPECTED[name][1]) for name in DATASETS]


def test_pyproject_ships_the_csv_files():
    text = (REPO / "pyproject.toml").read_text()
    section = re.search(r"^\[tool\.setuptools\.package-data\]\n(.*?)(?=^\[|\Z)",
                        text, re.S | re.M)
    assert section and re.search(r'lstmforecast\s*=\s*\[[^]]*"data/\*\.csv"',
                                 section.group(1))


@pytest.mark.slow
def test_built_wheel_contains_the_data(tmp_path):
    pytest.importorskip("setuptools")
    pytest.importorskip("wheel")
    src = tmp_path / "src"
    shutil.copytree(REPO, src, ignore=shutil.ignore_patterns(
        ".git", "__pycache__", "*.egg-info", "build", "dist", ".pytest_cache"))
    out = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                          "--no-build-isolation", "-w", str(tmp_path / "dist"),
                          str(src)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    (wheel,) = (tmp_path / "dist").glob("lstmforecast-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        for filename in DATA_FILES.values():
            data = zf.read(f"lstmforecast/data/{filename}")
            assert _sha256(data) == _readme_table()[filename][2]


# ------------------------------------------------------------------ Mackey-Glass

def test_mackey_glass_type_and_index():
    y = mackey_glass(500)
    assert isinstance(y, pd.Series)
    assert isinstance(y.index, pd.RangeIndex)
    assert len(y) == 500 and y.index[0] == 0 and y.index[-1] == 499
    assert y.name == "mackey_glass" and y.dtype == np.float64
    assert y.attrs["tau"] == 17 and y.attrs["spacing"] == pytest.approx(1.0)


@pytest.mark.parametrize("tau", [17, 30])
def test_mackey_glass_bounded_and_chaotic_looking(tau):
    y = mackey_glass(3000, tau=tau).to_numpy()
    assert np.isfinite(y).all()
    assert y.min() > 0.2 and y.max() < 1.6
    assert y.std() > 0.15
    # not a fixed point nor a limit cycle: the heights of the local maxima vary
    peaks = y[1:-1][(y[1:-1] > y[:-2]) & (y[1:-1] > y[2:])]
    assert len(peaks) > 50
    assert peaks.max() - peaks.min() > 0.1
    assert len(np.unique(np.round(peaks, 3))) > len(peaks) // 2


def test_mackey_glass_noiseless_does_not_depend_on_rng():
    a = mackey_glass(300)
    pd.testing.assert_series_equal(a, mackey_glass(300, rng=1))
    pd.testing.assert_series_equal(a, mackey_glass(300, rng=np.random.default_rng(2)))


def test_mackey_glass_deterministic_given_seed():
    a = mackey_glass(400, noise=0.05, rng=7)
    b = mackey_glass(400, noise=0.05, rng=7)
    c = mackey_glass(400, noise=0.05, rng=np.random.default_rng(7))
    pd.testing.assert_series_equal(a, b)
    pd.testing.assert_series_equal(a, c)
    r1 = mackey_glass(400, initial="random", rng=3)
    r2 = mackey_glass(400, initial="random", rng=3)
    r3 = mackey_glass(400, initial="random", rng=4)
    pd.testing.assert_series_equal(r1, r2)
    assert not np.allclose(r1, r3)
    assert 0.5 <= r1.attrs["initial"] < 1.5


def test_mackey_glass_noise_changes_values_at_the_requested_level():
    clean = mackey_glass(5000)
    noisy = mackey_glass(5000, noise=0.1, rng=0)
    other = mackey_glass(5000, noise=0.1, rng=1)
    assert not np.allclose(clean, noisy)
    assert not np.allclose(noisy, other)
    ratio = (noisy - clean).std() / clean.std()
    assert ratio == pytest.approx(0.1, rel=0.05)
    assert abs((noisy - clean).mean()) < 0.01


def test_mackey_glass_integration_converges():
    # RK4 with Hermite-interpolated delays: halving the step barely moves the path
    coarse = mackey_glass(100, discard=0, delta_t=0.1, sample_every=10)
    fine = mackey_glass(100, discard=0, delta_t=0.05, sample_every=20)
    assert np.max(np.abs(coarse - fine)) < 1e-6
    # the sampling grid: delta_t * sample_every time units between values
    every = mackey_glass(50, discard=0, delta_t=0.1, sample_every=5)
    np.testing.assert_allclose(every.to_numpy()[1::2], coarse.to_numpy()[:25],
                               atol=1e-12)
    # discard drops the leading samples
    np.testing.assert_allclose(mackey_glass(50, discard=10).to_numpy(),
                               mackey_glass(60, discard=0).to_numpy()[10:])


@pytest.mark.parametrize("kwargs", [
    {"n": 0}, {"n": -5}, {"n": 2.5}, {"n": True}, {"n": "10"},
    {"tau": 0}, {"tau": -17}, {"tau": math.inf}, {"tau": math.nan},
    {"tau": 17.05}, {"tau": 0.05},
    {"noise": -0.1}, {"noise": math.nan}, {"noise": "0.1"},
    {"delta_t": 0}, {"delta_t": -0.1}, {"delta_t": 0.3},
    {"sample_every": 0}, {"sample_every": 1.5},
    {"discard": -1}, {"discard": 0.5},
    {"initial": 0}, {"initial": -1.2}, {"initial": "uniform"},
    {"beta": 0}, {"gamma": -0.1}, {"exponent": 0},
])
def test_mackey_glass_bad_arguments_raise(kwargs):
    kwargs = {"n": 10, **kwargs}
    with pytest.raises(ValueError):
        mackey_glass(**kwargs)
