"""Time-series forecasting with an LSTM: :class:`LSTMForecaster`.

The forecaster is a thin layer over :class:`~lstmforecast.LSTMRegressor`: it turns a
series into sliding windows, trains the regressor on them and turns its outputs back
into a forecast in the caller's units, type and time index. All the mathematics of
the network stays in the regressor (and its Numba kernels).

Data flow of :meth:`LSTMForecaster.fit`
---------------------------------------
1. Validate ``y`` (and ``X``) and the index; nothing is modified in place.
2. Transform the targets: ``log`` (optional), then ``difference`` (optional: 1 for
   first differences, ``m`` for seasonal differences ``y[t] - y[t - m]``).
3. Split the origins in time. The **last** origins, whose horizon of targets is
   still inside ``y``, form the *calibration* set (``calibration_size``); the data
   up to the first calibration origin is the *proper training* part.
4. Fit the scaling (``scaling``) of the transformed targets and of the covariates on
   the proper training part only.
5. Train the regressor on the sliding windows of the proper training part (the
   regressor's early stopping holds out the last ``validation_fraction`` of these
   windows, in time order).
6. Forecast ``horizon`` steps from every calibration origin and keep the residuals
   in the original units: the split-conformal intervals of :meth:`predict_interval`.

The model is **not** refit on the calibration part: the intervals are valid for the
very model that forecasts (split conformal prediction), at the price of training on
less data. The most recent observations still drive every forecast through the
look-back window.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import NamedTuple

import numpy as np
import pandas as pd
from pandas.api.types import is_complex_dtype, is_numeric_dtype
from sklearn.base import BaseEstimator
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from ._base import BaseLSTM
from ._optimizers import OPTIMIZER_CODES
from ._truncated import fresh_state, truncated_stream
from .config import call_kernel
from .estimators import LSTMRegressor

__all__ = ["ForecastInterval", "LSTMForecaster"]

# The LSTMRegressor parameters the forecaster exposes under the same names.
# Left out: ``output`` (always "last": one window, one forecast),
# ``output_activation`` and ``loss`` (identity and squared error: the scaled targets
# are unbounded), ``warm_start`` (every fit refits the scaling), ``update`` (its two
# settings coincide with one target per window; the name is the forecaster's
# ``update`` method), and ``output_gate`` and ``recurrent_weights`` (for the paper's
# Exp. 2 network).
_REGRESSOR_PARAMS = (
    "hidden_size", "num_layers", "cell", "block_size", "squashing", "gradient",
    "optimizer",
    "learning_rate", "momentum", "nesterov", "beta_1", "beta_2", "epsilon",
    "batch_size", "max_epochs", "shuffle", "early_stopping", "validation_fraction",
    "n_iter_no_change", "tol", "clip_norm", "alpha", "init_scale",
    "input_gate_bias", "output_gate_bias", "hidden_bias", "output_bias",
    "input_to_output", "dtype", "device", "random_state", "verbose",
)


class ForecastInterval(NamedTuple):
    """A point forecast and its prediction interval, each in the caller's type."""

    forecast: object
    lower: object
    upper: object


# ---------------------------------------------------------------- input checks
def _as_table(obj, name):
    """Validate ``obj`` and return ``(values, meta)``.

    ``values`` is a new float64 array ``(n, n_columns)``; ``meta`` records how to
    give results back in the caller's type: ``kind`` ("series", "frame" or
    "array"), ``ndim``, ``columns`` (names, or None) and ``index`` (or None).
    """
    if isinstance(obj, pd.Series):
        frame, kind, columns = obj.to_frame(), "series", [obj.name]
    elif isinstance(obj, pd.DataFrame):
        frame, kind, columns = obj, "frame", list(obj.columns)
    else:
        frame, kind, columns = None, "array", None
    if frame is not None:
        if frame.shape[1] == 0:
            raise ValueError(f"{name} has 0 columns; at least 1 is required")
        bad = [col for col, dtype in zip(columns, frame.dtypes)
               if not is_numeric_dtype(dtype) or is_complex_dtype(dtype)]
        if bad:
            what = "non-numeric column" if kind == "frame" else "non-numeric dtype"
            raise ValueError(f"{name} has a {what}: {bad!r} "
                             f"({', '.join(str(frame[c].dtype) for c in bad)}); "
                             "only real numbers can be forecast")
        values = frame.to_numpy(dtype=np.float64, na_value=np.nan, copy=True)
        ndim, index = (1 if kind == "series" else 2), obj.index
    else:
        arr = np.asarray(obj)
        if arr.dtype.kind not in "biuf":
            raise ValueError(f"{name} has a non-numeric dtype {arr.dtype}; only real "
                             "numbers can be forecast")
        if arr.ndim not in (1, 2):
            raise ValueError(f"{name} must be 1-D (n,) or 2-D (n, n_columns), got "
                             f"{arr.ndim} dimensions")
        if arr.shape[0] == 0:
            raise ValueError(f"{name} is empty")
        ndim, index = arr.ndim, None
        values = np.array(arr, dtype=np.float64).reshape(arr.shape[0], -1)
        if values.shape[1] == 0:
            raise ValueError(f"{name} has 0 columns; at least 1 is required")
    if values.shape[0] == 0:
        raise ValueError(f"{name} is empty")
    nan = np.isnan(values)
    if nan.any():
        row = int(np.argwhere(nan)[0, 0])
        raise ValueError(f"{name} contains NaN ({int(nan.sum())} value(s), the first "
                         f"in row {row}); LSTMForecaster has no missing-value "
                         "policy: fill or drop them first (e.g. interpolate)")
    if not np.isfinite(values).all():
        raise ValueError(f"{name} contains infinite values")
    return values, {"kind": kind, "ndim": ndim, "columns": columns, "index": index}


def _index_info(index, name):
    """Check a pandas index and return what is needed to continue it.

    Returns ``{"type": "datetime"|"period"|"range", "freq": offset or step}``.
    """
    if isinstance(index, pd.MultiIndex):
        raise ValueError(f"{name} has a MultiIndex; one series per column is expected")
    if index.has_duplicates:
        dup = index[index.duplicated()][0]
        raise ValueError(f"{name}'s index has duplicated values (e.g. {dup!r})")
    if not index.is_monotonic_increasing:
        raise ValueError(f"{name}'s index is not monotonic increasing; sort it "
                         "first (e.g. y.sort_index())")
    if isinstance(index, pd.DatetimeIndex):
        freq = index.freq
        if freq is None and len(index) >= 3:
            with warnings.catch_warnings():
                # pandas 3 warns that infer_freq will return an offset, not a
                # string; to_offset below takes either.
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", FutureWarning)
                freq = pd.infer_freq(index)
        if freq is None:
            raise ValueError(f"cannot infer the frequency of {name}'s DatetimeIndex "
                             "(irregular spacing, gaps, or fewer than 3 timestamps); "
                             "set one, e.g. y.asfreq('MS')")
        return {"type": "datetime", "freq": pd.tseries.frequencies.to_offset(freq)}
    if isinstance(index, pd.PeriodIndex):
        expected = pd.period_range(index[0], periods=len(index), freq=index.freq)
        if not expected.equals(index):
            raise ValueError(f"{name}'s PeriodIndex has gaps; every period must be "
                             "present")
        return {"type": "period", "freq": index.freq}
    if isinstance(index, pd.RangeIndex):
        return {"type": "range", "freq": index.step}
    if pd.api.types.is_integer_dtype(index.dtype):
        steps = np.unique(np.diff(index.to_numpy()))
        if steps.size > 1:
            raise ValueError(f"{name}'s integer index is not evenly spaced")
        return {"type": "range", "freq": int(steps[0]) if steps.size else 1}
    raise ValueError(f"{name} has an unsupported index type {type(index).__name__}; "
                     "use a DatetimeIndex, PeriodIndex or RangeIndex")


def _next_index(info, last, n):
    """Return the ``n`` index labels that follow ``last``."""
    kind, freq = info["type"], info["freq"]
    if kind == "datetime":
        return pd.DatetimeIndex([last + i * freq for i in range(1, n + 1)], freq=freq)
    if kind == "period":
        return pd.period_range(last + 1, periods=n, freq=freq)
    last, freq = int(last), int(freq)
    return pd.RangeIndex(last + freq, last + freq * (n + 1), freq)


def _check_positive(values, name):
    bad = int(np.count_nonzero(values <= 0))
    if bad:
        raise ValueError(f"log=True needs strictly positive values, but {name} has "
                         f"{bad} value(s) <= 0 (minimum {values.min():g})")


# ------------------------------------------------------------------ the model
class LSTMForecaster(BaseEstimator):
    """Forecast one or several series with an LSTM over a sliding look-back window.

    A thin layer over :class:`~lstmforecast.LSTMRegressor`: windows of the last
    ``window`` (transformed, scaled) observations are the sequences, the next value
    (``strategy="recursive"``) or the next ``horizon`` values (``"direct"``) the
    targets. Forecasts come back in the caller's type (Series, DataFrame or NumPy
    array), units and time index.

    Parameters
    ----------
    window : int, default=24
        Look-back: observations per input window.
    horizon : int, default=1
        Steps ahead forecast by default; also the steps of the calibration residuals
        (:meth:`predict_interval` covers steps ``1..horizon``) and, for
        ``strategy="direct"``, the outputs of the network.
    strategy : {"recursive", "direct"}, default="recursive"
        ``"recursive"``: a one-step model whose forecasts are fed back as inputs
        (any forecast length). ``"direct"``: one model emitting the whole horizon at
        once (``horizon * n_targets`` outputs; forecasts up to ``horizon`` steps).
    log : bool, default=False
        Model ``log(y)``; ``y`` must then be strictly positive. Inverted with ``exp``
        (the forecast is the exponentiated forecast of the log, a median-type
        forecast, not bias-corrected).
    difference : int or None, default=None
        Model ``y[t] - y[t - difference]`` (after ``log``): 1 for first differences,
        a season length (e.g. 12) for seasonal differences. Inverted by cumulating
        the forecast differences onto the last observed values.
    scaling : {"standard", "minmax"} or None, default="standard"
        Per-column scaling of the transformed targets and of the covariates, fitted
        on the proper training part only: zero mean and unit variance, or [0, 1].
        A constant column is only centred.
    calibration_size : float or int, default=0.2
        Origins held out at the end of ``y`` for the split-conformal intervals: a
        fraction of the origins that have ``horizon`` future values in ``y``, or a
        number of origins. 0 disables :meth:`predict_interval` and trains on all of
        ``y``.
    stateful : bool, default=False
        Carry the network's state along the whole series instead of re-running a
        window: needs ``gradient="truncated"`` (either cell). ``fit`` trains on the
        series as one stream with the online rule (an update after every step; the
        first ``window - 1`` steps only warm the state up; ``batch_size``,
        ``shuffle`` and ``early_stopping`` do not apply), and :meth:`update` costs
        one O(weights) step per new observation (see the Notes).
    hidden_size, num_layers, cell, block_size, squashing, gradient, optimizer, \
learning_rate, momentum, nesterov, beta_1, beta_2, epsilon, batch_size, max_epochs, \
shuffle, early_stopping, validation_fraction, n_iter_no_change, tol, clip_norm, alpha, \
init_scale, input_gate_bias, output_gate_bias, hidden_bias, output_bias, \
input_to_output, dtype, device, random_state, verbose
        Passed on to :class:`~lstmforecast.LSTMRegressor` (see there), with
        forecasting defaults: ``hidden_size=32``, ``learning_rate=0.005``,
        ``max_epochs=100`` and ``early_stopping=True`` (on the last
        ``validation_fraction`` of the training windows, in time order).

    Attributes
    ----------
    regressor_ : LSTMRegressor
        The fitted network.
    n_targets_ : int
        Target columns.
    n_covariates_ : int
        Covariate columns (0 when fitted without ``X``).
    target_names_ : list or None
        Column names of a DataFrame ``y``, ``[name]`` for a Series, None for an
        array.
    covariate_names_ : list or None
        Column names of a DataFrame ``X``.
    n_obs_ : int
        Observations seen: by ``fit`` and every :meth:`update`.
    cutoff_ : object
        Index label of the last observation (its position for NumPy input): the
        forecast origin.
    freq_ : pandas offset, int or None
        Step of the index (DatetimeIndex / PeriodIndex frequency, RangeIndex step;
        None for NumPy input).
    y_center_, y_scale_ : ndarray of shape (n_targets,)
        Scaling of the transformed targets: ``(z - y_center_) / y_scale_``.
    x_center_, x_scale_ : ndarray of shape (n_covariates,) or None
        Scaling of the covariates.
    n_train_windows_ : int
        Windows the regressor was trained on (before its validation split).
    n_calibration_ : int
        Calibration origins.
    calibration_residuals_ : ndarray of shape (n_calibration, horizon, n_targets)
        ``y - forecast`` in the original units, per calibration origin and step.

    See Also
    --------
    LSTMRegressor : the network trained on the windows.
    lstmforecast.model_selection.backtest : rolling-origin evaluation.

    Notes
    -----
    **Windows.** Feature row ``t`` holds the transformed, scaled targets at ``t``
    and, when fitted with covariates ``X``, the covariates at ``t + s``, where
    ``s = 1`` for the recursive strategy and ``s = horizon`` for the direct one.
    The window ending at origin ``o`` therefore sees the future-known covariates of
    the step being forecast (recursive), or of the last ``min(window, horizon)``
    steps of the horizon (direct: all of them when ``window >= horizon``). Hence
    :meth:`predict` needs the covariates of the forecast steps: ``horizon`` rows
    (for ``"direct"``, always the fitted ``horizon``).

    **Conformal intervals.** From each calibration origin the model forecasts
    ``horizon`` steps (recursively or directly); the absolute residuals of each
    step and target give the interval half-width: the ``k``-th smallest with
    ``k = ceil((n + 1) * coverage)`` for ``n`` calibration origins (the quantile at
    level ``ceil((n + 1) coverage) / n``). Intervals are symmetric around the
    forecast; if ``k > n`` they are infinite (with a warning). The final model is
    the one trained on the proper training part; it is not refit on all the data.

    **Missing values.** There is no missing-value policy: NaN (or infinity) in ``y``
    or ``X`` raises ``ValueError``; fill or drop them first. The index must be
    regular (no gaps), so that the forecast index can be continued.

    **State and updates.** The network is windowed: its state at the origin is
    recomputed from the last ``window`` observations, kept (with the few more that
    differencing and online learning need) in a bounded buffer. :meth:`update`
    appends observations to that buffer, moving the forecast origin without
    refitting; ``learn=True`` additionally takes one
    :meth:`~lstmforecast.LSTMRegressor.partial_fit` pass over the windows whose
    targets are the new observations (one window per new observation). With
    ``cell="lstm1997"`` and ``gradient="truncated"`` that pass uses the 1997
    paper's truncated rule: O(weights) time per time step and memory independent of
    the window length, so O(weights * window) time per new observation, since each
    window is re-run from a zero state. With the default cell it is a BPTT step on
    those recent windows. The scaling and the calibration residuals stay as they
    were fitted.

    **Stateful streaming** (``stateful=True``). The input at step ``t`` is
    ``[z_t, x_{t+s}]`` (``s`` as above) and the network reads the series once, from
    a zero state at its start; the state, and the truncated rule's traces, are kept
    after the last input whose targets are known. A forecast runs the remaining
    inputs from that state. :meth:`update` feeds each new observation to the stream
    once: one step of the truncated rule, O(weights) time and memory whatever the
    length of the series, with ``learn=True`` followed by an online weight update
    (the paper's rule; Gers et al. 2000's traces for ``cell="lstm"``, whose forget
    gate keeps an endless stream's cell state bounded, which ``lstm1997`` cannot).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> from lstmforecast import LSTMForecaster
    >>> t = np.arange(120)
    >>> y = pd.Series(10 + np.sin(2 * np.pi * t / 12),
    ...               index=pd.date_range("2000-01", periods=120, freq="MS"))
    >>> model = LSTMForecaster(window=12, horizon=6, hidden_size=8, max_epochs=5,
    ...                        random_state=0).fit(y)  # doctest: +SKIP
    >>> model.predict().index[0]  # doctest: +SKIP
    Timestamp('2010-01-01 00:00:00')
    """

    _parameter_constraints = {
        "window": [Interval(numbers.Integral, 1, None, closed="left")],
        "horizon": [Interval(numbers.Integral, 1, None, closed="left")],
        "strategy": [StrOptions({"recursive", "direct"})],
        "log": ["boolean"],
        "difference": [None, Interval(numbers.Integral, 1, None, closed="left")],
        "scaling": [StrOptions({"standard", "minmax"}), None],
        "calibration_size": [Interval(numbers.Real, 0, 1, closed="left"),
                             Interval(numbers.Integral, 1, None, closed="left")],
        "stateful": ["boolean"],
        **{name: BaseLSTM._parameter_constraints[name] for name in _REGRESSOR_PARAMS},
    }

    def __init__(self, window=24, horizon=1, *, strategy="recursive", log=False,
                 difference=None, scaling="standard", calibration_size=0.2,
                 stateful=False, hidden_size=32, num_layers=1, cell="lstm",
                 block_size=1, squashing="appendix", gradient="bptt",
                 optimizer="adam", learning_rate=0.005,
                 momentum=0.9, nesterov=False, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, batch_size=32, max_epochs=100, shuffle=True,
                 early_stopping=True, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, clip_norm=None, alpha=0.0, init_scale=None,
                 input_gate_bias=None, output_gate_bias=None, hidden_bias="all",
                 output_bias=True, input_to_output=False, dtype="float32",
                 device="cpu", random_state=None, verbose=0):
        self.window = window
        self.horizon = horizon
        self.strategy = strategy
        self.log = log
        self.difference = difference
        self.scaling = scaling
        self.calibration_size = calibration_size
        self.stateful = stateful
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.block_size = block_size
        self.squashing = squashing
        self.gradient = gradient
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.clip_norm = clip_norm
        self.alpha = alpha
        self.init_scale = init_scale
        self.input_gate_bias = input_gate_bias
        self.output_gate_bias = output_gate_bias
        self.hidden_bias = hidden_bias
        self.output_bias = output_bias
        self.input_to_output = input_to_output
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose

    # ------------------------------------------------------------ geometry
    @property
    def _diff(self):
        return self.difference or 0

    @property
    def _steps_out(self):
        """Forecast steps per network output (and covariate shift ``s``)."""
        return self.horizon if self.strategy == "direct" else 1

    def _make_regressor(self):
        params = {name: getattr(self, name) for name in _REGRESSOR_PARAMS}
        if self.stateful:
            if self.gradient != "truncated":
                raise ValueError("stateful=True streams the series through the "
                                 "network with the truncated rule: it needs "
                                 "gradient='truncated'")
            # one stream, updated after every step; no held-out sequences to stop on
            params.update(batch_size=1, early_stopping=False, shuffle=False)
            return LSTMRegressor(output="sequence", update="step", **params)
        return LSTMRegressor(output="last", **params)

    def _n_calibration(self, n):
        """Calibration origins for a series of ``n`` observations."""
        size = self.calibration_size
        if size == 0:
            return 0
        if isinstance(size, numbers.Integral):
            return int(size)
        n_full = n - self._diff - self.window - self.horizon + 1
        return max(1, int(math.floor(size * n_full)))

    # ----------------------------------------------------------- transforms
    def _levels(self, Y):
        """``log(Y)`` or a copy of ``Y``."""
        return np.log(Y) if self.log else Y.copy()

    def _differenced(self, L):
        """``L[t] - L[t - d]`` (NaN for ``t < d``), or ``L`` without differencing."""
        d = self._diff
        if not d:
            return L
        Z = np.full_like(L, np.nan)
        Z[d:] = L[d:] - L[:-d]
        return Z

    def _invert(self, Zs, L, origins):
        """Forecasts in original units from scaled forecasts ``Zs (N, h, k)``.

        ``L`` holds the (log-)levels by time; ``origins`` the time of the last
        observation of each forecast.
        """
        Z = Zs * self.y_scale_ + self.y_center_
        d = self._diff
        if d:
            h = Z.shape[1]
            past = L[origins[:, None] + np.arange(1 - d, 1)]
            buf = np.concatenate([past, np.zeros_like(Z)], axis=1)
            for j in range(h):
                buf[:, d + j] = Z[:, j] + buf[:, j]
            Z = buf[:, d:]
        return np.exp(Z) if self.log else Z

    @staticmethod
    def _fit_scaling(values, kind):
        if kind is None:
            return np.zeros(values.shape[1]), np.ones(values.shape[1])
        if kind == "standard":
            center, scale = values.mean(axis=0), values.std(axis=0)
        else:
            center = values.min(axis=0)
            scale = values.max(axis=0) - center
        # Constant columns (up to rounding) are only centred: dividing rounding
        # noise by a scale of 1e-16 would feed the network garbage.
        tiny = 1e-10 * np.abs(values).max(axis=0)
        scale = np.where(scale > tiny, scale, 1.0)
        return center, scale

    def _scaled_series(self, Y):
        """``(L, Zs)``: the (log-)levels of ``Y`` and the scaled transformed
        targets (NaN for the first ``difference`` steps)."""
        L = self._levels(Y)
        return L, (self._differenced(L) - self.y_center_) / self.y_scale_

    def _scaled_covariates(self, Xv):
        if Xv is None:
            return None
        return (Xv - self.x_center_) / self.x_scale_

    # ---------------------------------------------------------- forecasting
    def _inputs(self, Zs, Xs, idx, shift):
        """Inputs ``[z_t, x_{t+shift}]`` at the time indices ``idx`` (any shape):
        windows ``(N, window, k + p)`` for ``idx (N, window)``."""
        Zw = Zs[idx]
        if Xs is None:
            return Zw
        return np.concatenate([Zw, Xs[idx + shift]], axis=-1)

    def _targets(self, Zs, t):
        """The ``s`` values after each time ``t``, flattened: ``(len(t), s * k)``."""
        s = self._steps_out
        return Zs[t[:, None] + np.arange(1, s + 1)].reshape(t.shape[0], -1)

    def _forecast_scaled(self, regressor, Zs, Xs, origins, h):
        """Scaled forecasts ``(N, h, k)`` of ``h`` steps from each origin.

        ``Zs`` holds the scaled transformed targets by time (known up to each
        origin), ``Xs`` the scaled covariates by time (known up to ``origin + h``,
        or ``origin + horizon`` for the direct strategy).
        """
        k = Zs.shape[1]
        N = origins.shape[0]
        idx = origins[:, None] + np.arange(1 - self.window, 1)
        if self.strategy == "direct":
            out = regressor.predict(self._inputs(Zs, Xs, idx, self.horizon))
            return out.reshape(N, self.horizon, k)[:, :h]
        Zw = Zs[idx]
        out = np.empty((N, h, k))
        for j in range(h):
            inputs = Zw if Xs is None else np.concatenate(
                [Zw, Xs[idx + j + 1]], axis=2)
            step = regressor.predict(inputs).reshape(N, k)
            out[:, j] = step
            Zw = np.concatenate([Zw[:, 1:], step[:, None]], axis=1)
        return out

    def _training_windows(self, Zs, Xs, origins):
        s = self._steps_out
        idx = origins[:, None] + np.arange(1 - self.window, 1)
        return self._inputs(Zs, Xs, idx, s), self._targets(Zs, origins)

    # ------------------------------------------------------------- stateful
    def _fit_stream(self, regressor, Zs, Xs, n_fit):
        """Train on ``u_d .. u_{n_fit-s-1}`` as one sequence with the online rule;
        the first ``window - 1`` steps only warm the state up."""
        d, w = self._diff, self.window
        t = np.arange(d, n_fit - self._steps_out)
        mask = (t >= d + w - 1).astype(np.float64)
        regressor.fit(self._inputs(Zs, Xs, t, self._steps_out)[None],
                      self._targets(Zs, t)[None], mask=mask[None])

    def _advance(self, Zs, Xs, t0, t1, learn):
        """Feed the inputs ``u_t0 .. u_{t1-1}`` to the carried stream: O(weights) per
        step; with ``learn`` each step is also an online update of the weights."""
        if t1 <= t0:
            return
        reg = self.regressor_
        dt = reg.params_.dtype
        t = np.arange(t0, t1)
        U = np.ascontiguousarray(self._inputs(Zs, Xs, t, self._steps_out), dtype=dt)
        T = np.ascontiguousarray(self._targets(Zs, t), dtype=dt)
        mask = np.full(t.shape[0], 1.0 if learn else 0.0, dtype=dt)
        cell, hidden, block, loss_kind = reg._network_args()
        _, ok = call_kernel(truncated_stream, reg.params_, reg._layout, U, T, mask,
                            cell, hidden, block, loss_kind,
                            OPTIMIZER_CODES[reg.optimizer], reg._opt_state,
                            reg._opt_step, reg._hyper(), reg._l2_mask,
                            reg._train_mask, self._stream_r, self._stream_c,
                            self._stream_traces)
        if not ok:
            raise ValueError("the online update diverged (non-finite loss or "
                             "weights); the weights are as before that step. Lower "
                             "learning_rate or set clip_norm.")

    def _stream_through(self, Zs, Xs, n, cal):
        """Stream the whole series from a zero state (no learning), keeping the
        state at the end; returns the scaled forecasts ``(n_cal, horizon, k)``
        from the calibration origins ``cal``."""
        reg = self.regressor_
        cell, hidden, block, _ = reg._network_args()
        self._stream_r, self._stream_c, self._stream_traces = fresh_state(
            reg.params_, reg.input_size_, cell, hidden, block)
        s = self._steps_out
        states = np.empty((cal.shape[0], self._carried_state().shape[0]),
                          dtype=reg.params_.dtype)
        pos = self._diff
        for i, origin in enumerate(cal):
            # the state after u_{origin-s}: origins are consecutive, one step each
            self._advance(Zs, Xs, pos, origin - s + 1, learn=False)
            pos = origin - s + 1
            states[i] = self._carried_state()
        self._advance(Zs, Xs, pos, n - s, learn=False)
        if cal.shape[0] == 0:
            return None
        return self._forecast_stream(Zs, Xs, cal, states, self.horizon)

    def _carried_state(self):
        return np.concatenate([self._stream_r[:, 0], self._stream_c[:, 0]])

    def _forecast_stream(self, Zs, Xs, origins, states, h):
        """Scaled forecasts ``(N, h, k)`` from the stream states ``states (N, R+H)``
        taken after the input ``u_{origin-s}`` of each origin."""
        reg = self.regressor_
        dt = reg.params_.dtype
        k, s, N = Zs.shape[1], self._steps_out, origins.shape[0]

        def run(inputs, state):
            lengths = np.full(N, inputs.shape[1], dtype=np.int64)
            out, state = reg._run_forward(
                np.ascontiguousarray(inputs, dtype=dt), lengths, True,
                np.ascontiguousarray(state[:, None], dtype=dt))
            return out[:, 0], state[:, 0]

        if self.strategy == "direct":
            t = origins[:, None] + np.arange(1 - s, 1)
            out, _ = run(self._inputs(Zs, Xs, t, s), states)
            return out.reshape(N, self.horizon, k)[:, :h]
        out = np.empty((N, h, k))
        z, state = Zs[origins], states
        for j in range(h):
            u = z if Xs is None else np.concatenate([z, Xs[origins + j + 1]], axis=1)
            z, state = run(u[:, None], state)
            out[:, j] = z
        return out

    # ------------------------------------------------------------------ fit
    def fit(self, y, X=None):
        """Fit the forecaster to the series ``y`` (and covariates ``X``).

        Parameters
        ----------
        y : Series, DataFrame or array-like of shape (n,) or (n, n_targets)
            The series, oldest first. A pandas index must be a DatetimeIndex (with
            a frequency that can be inferred), a PeriodIndex or a RangeIndex (or an
            evenly spaced integer index), increasing and without duplicates.
        X : DataFrame, Series or array-like of shape (n, n_covariates), optional
            Exogenous covariates aligned with ``y`` (same length; same index when
            both are pandas objects). Fitting with ``X`` makes :meth:`predict` need
            its future values.

        Returns
        -------
        self
        """
        # A failed fit leaves a previously fitted forecaster as it was.
        saved = self.__dict__.copy()
        try:
            return self._fit(y, X)
        except BaseException:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise

    def _fit(self, y, X):
        self._validate_params()
        regressor = self._make_regressor()
        regressor._check_hyper_parameters()
        Y, y_meta = _as_table(y, "y")
        index_info = (_index_info(y_meta["index"], "y")
                      if y_meta["index"] is not None else None)
        n, k = Y.shape
        Xv, x_meta = None, None
        if X is not None:
            Xv, x_meta = _as_table(X, "X")
            if Xv.shape[0] != n:
                raise ValueError(f"X has {Xv.shape[0]} rows but y has {n}; X must be "
                                 "aligned with y")
            if (x_meta["index"] is not None and y_meta["index"] is not None
                    and not x_meta["index"].equals(y_meta["index"])):
                raise ValueError("X must be aligned with y: their indexes differ")
        if self.log:
            _check_positive(Y, "y")

        d, w, H, s = self._diff, self.window, self.horizon, self._steps_out
        n_cal = self._n_calibration(n)
        n_fit = n - H - n_cal + 1 if n_cal else n
        n_windows = n_fit - d - w - s + 1
        needed = 2 if self.early_stopping and not self.stateful else 1
        if n_windows < needed:
            minimum = d + w + s - 1 + needed + (H - 1 + n_cal if n_cal else 0)
            raise ValueError(
                f"y is too short: {n} observations leave {max(n_windows, 0)} "
                f"training window(s) (window={w}, horizon={H}, difference={d}, "
                f"{n_cal} calibration origin(s)); at least {needed} needed"
                f"{' with early_stopping' if needed == 2 else ''}, so y needs about "
                f"{minimum} observations. Shorten window, horizon or "
                "calibration_size, or provide more data.")

        L = self._levels(Y)
        Z = self._differenced(L)
        y_center, y_scale = self._fit_scaling(Z[d:n_fit], self.scaling)
        Zs = (Z - y_center) / y_scale
        self.y_center_, self.y_scale_ = y_center, y_scale
        if Xv is not None:
            self.x_center_, self.x_scale_ = self._fit_scaling(Xv[:n_fit],
                                                              self.scaling)
        else:
            self.x_center_ = self.x_scale_ = None
        Xs = self._scaled_covariates(Xv)

        origins = np.arange(d + w - 1, n_fit - s)
        if self.stateful:
            self._fit_stream(regressor, Zs, Xs, n_fit)
        else:
            inputs, targets = self._training_windows(Zs, Xs, origins)
            regressor.fit(inputs, targets)
        self.regressor_ = regressor

        cal = np.arange(n_fit - 1, n_fit - 1 + n_cal)
        if self.stateful:  # also leaves the stream's state at the series' end
            zs_cal = self._stream_through(Zs, Xs, n, cal)
        elif n_cal:
            zs_cal = self._forecast_scaled(regressor, Zs, Xs, cal, H)
        if n_cal:
            pred = self._invert(zs_cal, L, cal)
            truth = Y[cal[:, None] + np.arange(1, H + 1)]
            self.calibration_residuals_ = truth - pred
        else:
            self.calibration_residuals_ = np.zeros((0, H, k))

        self.n_targets_ = k
        self.n_covariates_ = 0 if Xv is None else Xv.shape[1]
        self.target_names_ = y_meta["columns"]
        self.covariate_names_ = (list(x_meta["columns"]) if x_meta is not None
                                 and x_meta["kind"] == "frame" else None)
        self.n_train_windows_ = int(origins.shape[0])
        self.n_calibration_ = int(n_cal)
        self.n_obs_ = n
        self._y_meta = {key: v for key, v in y_meta.items() if key != "index"}
        self._index = index_info
        self.freq_ = None if index_info is None else index_info["freq"]
        self.cutoff_ = (y_meta["index"][-1] if y_meta["index"] is not None
                        else int(n - 1))
        keep = self._buffer_length()
        self._y_buf = Y[-keep:].copy()
        self._x_buf = None if Xv is None else Xv[-keep:].copy()
        return self

    def _buffer_length(self):
        """Observations kept for forecasting and online learning."""
        return self._diff + self.window + self.horizon

    # -------------------------------------------------------------- predict
    def _check_horizon(self, horizon, interval=False):
        if horizon is None:
            return int(self.horizon)
        if (not isinstance(horizon, numbers.Integral) or isinstance(horizon, bool)
                or horizon < 1):
            raise ValueError(f"horizon must be an integer >= 1, got {horizon!r}")
        if horizon > self.horizon and (self.strategy == "direct" or interval):
            why = ("strategy='direct' forecasts" if not interval
                   else "the calibration residuals cover")
            raise ValueError(f"horizon={horizon} exceeds the fitted horizon="
                             f"{self.horizon}: {why} at most {self.horizon} steps; "
                             "refit with a larger horizon")
        return int(horizon)

    def _future_covariates(self, X, h):
        """Validate the future covariates: ``(rows, n_covariates)`` or None."""
        if self.n_covariates_ == 0:
            if X is not None:
                raise ValueError("X was given, but the forecaster was fitted without "
                                 "covariates")
            return None
        rows = self.horizon if self.strategy == "direct" else h
        if X is None:
            raise ValueError(f"the forecaster was fitted with covariates X: pass X "
                             f"with their future values for the next {rows} steps")
        Xv, meta = _as_table(X, "X")
        if Xv.shape[0] != rows:
            extra = (" (strategy='direct' always needs the fitted horizon)"
                     if self.strategy == "direct" else "")
            raise ValueError(f"X must have {rows} rows, one per forecast step{extra}; "
                             f"got {Xv.shape[0]}")
        if Xv.shape[1] != self.n_covariates_:
            raise ValueError(f"X has {Xv.shape[1]} columns, but the forecaster was "
                             f"fitted with {self.n_covariates_} covariates")
        if self.covariate_names_ is not None and meta["kind"] == "frame":
            names = list(meta["columns"])
            if names != self.covariate_names_:
                missing = [c for c in self.covariate_names_ if c not in names]
                unexpected = [c for c in names if c not in self.covariate_names_]
                raise ValueError(f"X's columns {names} differ from those seen in fit "
                                 f"{self.covariate_names_} (missing: {missing}, "
                                 f"unexpected: {unexpected})")
        if meta["index"] is not None and self._index is not None:
            expected = _next_index(self._index, self.cutoff_, rows)
            if not meta["index"].equals(expected):
                raise ValueError(f"X's index must be the {rows} steps after the "
                                 f"forecast origin {self.cutoff_!r}, starting at "
                                 f"{expected[0]!r}; got {meta['index'][0]!r}...")
        return Xv

    def _forecast(self, horizon, X, interval=False):
        check_is_fitted(self, "regressor_")
        h = self._check_horizon(horizon, interval)
        Xf = self._future_covariates(X, h)
        Y = self._y_buf
        L, Zs = self._scaled_series(Y)
        Xs = None
        if Xf is not None:
            Xs = self._scaled_covariates(np.concatenate([self._x_buf, Xf]))
        origin = np.array([Y.shape[0] - 1])
        if self.stateful:
            zs = self._forecast_stream(Zs, Xs, origin, self._carried_state()[None], h)
        else:
            zs = self._forecast_scaled(self.regressor_, Zs, Xs, origin, h)
        return self._invert(zs, L, origin)[0], h

    def _wrap(self, values):
        """``values (h, k)`` in the type of the fitted ``y``, on the future index."""
        meta = self._y_meta
        index = (None if self._index is None
                 else _next_index(self._index, self.cutoff_, values.shape[0]))
        if meta["kind"] == "series":
            return pd.Series(values[:, 0], index=index, name=meta["columns"][0])
        if meta["kind"] == "frame":
            return pd.DataFrame(values, index=index, columns=meta["columns"])
        return values[:, 0].copy() if meta["ndim"] == 1 else values

    def predict(self, horizon=None, X=None):
        """Forecast the next ``horizon`` steps after the last observation.

        Parameters
        ----------
        horizon : int, optional
            Steps to forecast; the fitted ``horizon`` by default. The direct
            strategy forecasts at most the fitted ``horizon``.
        X : DataFrame or array-like, optional
            Future covariates, one row per step (the fitted ``horizon`` rows for the
            direct strategy); required when fitted with ``X``, refused otherwise.

        Returns
        -------
        forecast : Series, DataFrame or ndarray
            The type of the fitted ``y``, indexed by the future timestamps (periods,
            or the continued range) for pandas input.
        """
        values, _ = self._forecast(horizon, X)
        return self._wrap(values)

    def predict_interval(self, coverage=0.9, horizon=None, X=None):
        """Forecast with split-conformal prediction intervals.

        Parameters
        ----------
        coverage : float, default=0.9
            Nominal probability that an interval holds the observed value, in
            (0, 1).
        horizon : int, optional
            Steps to forecast, at most the fitted ``horizon`` (the steps with
            calibration residuals).
        X : DataFrame or array-like, optional
            Future covariates, as for :meth:`predict`.

        Returns
        -------
        interval : ForecastInterval
            Named tuple ``(forecast, lower, upper)``, each in the type and index of
            :meth:`predict`. The half-width of step ``j`` and target ``c`` is the
            ``ceil((n + 1) * coverage)``-th smallest absolute calibration residual of
            that step and target (``n = n_calibration_``); infinite, with a warning,
            when that exceeds ``n``.
        """
        check_is_fitted(self, "regressor_")
        if (isinstance(coverage, bool) or not isinstance(coverage, numbers.Real)
                or not 0 < coverage < 1):
            raise ValueError(f"coverage must be a number in (0, 1), got {coverage!r}")
        if self.n_calibration_ == 0:
            raise ValueError("predict_interval needs calibration residuals; the "
                             "forecaster was fitted with calibration_size=0")
        values, h = self._forecast(horizon, X, interval=True)
        half = self._half_width(coverage)[:h]
        return ForecastInterval(self._wrap(values), self._wrap(values - half),
                                self._wrap(values + half))

    def _half_width(self, coverage):
        """Conformal half-widths ``(horizon, n_targets)``."""
        n = self.n_calibration_
        rank = math.ceil((n + 1) * coverage - 1e-9)
        if rank > n:
            warnings.warn(f"coverage={coverage} needs at least "
                          f"{math.ceil(coverage / (1 - coverage) - 1e-9)} calibration "
                          f"origins, the forecaster has {n}: the intervals are "
                          "infinite. Increase calibration_size.", UserWarning,
                          stacklevel=3)
            return np.full(self.calibration_residuals_.shape[1:], np.inf)
        ranked = np.sort(np.abs(self.calibration_residuals_), axis=0)
        return ranked[rank - 1]

    # ----------------------------------------------------------- persistence
    def save(self, path):
        """Save the fitted forecaster to ``path``; :func:`lstmforecast.load` reads it.

        The same safe format as :meth:`LSTMRegressor.save
        <lstmforecast.LSTMRegressor.save>`: an ``.npz`` archive of numeric arrays
        (the network, the scaling, the calibration residuals, the recent
        observations and covariates the next forecast starts from) and a JSON header
        (hyper-parameters, counts, column names, the index frequency and last
        label); no pickle. The loaded forecaster's :meth:`predict`,
        :meth:`predict_interval` and :meth:`update` give exactly the results the
        saved one would. ``path`` is used as given (no suffix added); the file is
        replaced atomically. See :mod:`lstmforecast._persistence`.

        Parameters
        ----------
        path : str or path-like

        Raises
        ------
        NotFittedError
            When the forecaster is not fitted.
        ValueError
            When something cannot be stored, e.g. a column name that is not None,
            str, int or float (the message names it).
        """
        from ._persistence import save
        save(self, path)

    # --------------------------------------------------------------- update
    def update(self, y_new, X_new=None, learn=False):
        """Append new observations and move the forecast origin, without refitting.

        Parameters
        ----------
        y_new : Series, DataFrame or array-like
            Observations that follow the last one seen, with the fitted number of
            target columns (and names, for a DataFrame). A pandas index must
            continue the fitted one; a NumPy array continues it implicitly.
        X_new : DataFrame or array-like, optional
            The covariates of those observations; required when fitted with ``X``.
        learn : bool, default=False
            Also adapt the weights: one
            :meth:`~lstmforecast.LSTMRegressor.partial_fit` pass over the windows
            whose targets include the new observations (see the Notes of the
            class).

        Returns
        -------
        self
        """
        check_is_fitted(self, "regressor_")
        Ynew, meta = _as_table(y_new, "y_new")
        m, k = Ynew.shape
        if k != self.n_targets_:
            raise ValueError(f"y_new has {k} columns, the forecaster was fitted with "
                             f"{self.n_targets_} targets")
        if (meta["kind"] == "frame" and self._y_meta["kind"] == "frame"
                and list(meta["columns"]) != list(self.target_names_)):
            raise ValueError(f"y_new's columns {list(meta['columns'])} differ from "
                             f"those seen in fit {list(self.target_names_)}")
        if self._index is not None:
            expected = _next_index(self._index, self.cutoff_, m)
            if meta["index"] is not None and not meta["index"].equals(expected):
                raise ValueError(f"y_new's index must continue the fitted one: "
                                 f"expected it to start at {expected[0]!r} and "
                                 f"follow the step {self.freq_!r}; got "
                                 f"{meta['index'][0]!r}...")
            new_cutoff = expected[-1]
        else:
            new_cutoff = self.cutoff_ + m
        if self.log:
            _check_positive(Ynew, "y_new")
        Xnew = None
        if self.n_covariates_:
            if X_new is None:
                raise ValueError("the forecaster was fitted with covariates X: "
                                 "update needs X_new for the new observations")
            Xnew, x_meta = _as_table(X_new, "X_new")
            if Xnew.shape != (m, self.n_covariates_):
                raise ValueError(f"X_new must have shape ({m}, {self.n_covariates_}) "
                                 f"(one row per new observation), got {Xnew.shape}")
            if (x_meta["index"] is not None and meta["index"] is not None
                    and not x_meta["index"].equals(meta["index"])):
                raise ValueError("X_new must be aligned with y_new: their indexes "
                                 "differ")
        elif X_new is not None:
            raise ValueError("X_new was given, but the forecaster was fitted without "
                             "covariates")
        if not isinstance(learn, (bool, np.bool_)):
            raise ValueError(f"learn must be True or False, got {learn!r}")

        Y = np.concatenate([self._y_buf, Ynew])
        Xall = None if Xnew is None else np.concatenate([self._x_buf, Xnew])
        if self.stateful:
            B, s = self._y_buf.shape[0], self._steps_out
            _, Zs = self._scaled_series(Y)
            self._advance(Zs, self._scaled_covariates(Xall), B - s, B + m - s,
                          learn=bool(learn))
        elif learn:
            self._learn(Y, Xall, first_new=self._y_buf.shape[0])
        keep = self._buffer_length()
        self._y_buf = Y[-keep:].copy()
        self._x_buf = None if Xall is None else Xall[-keep:].copy()
        self.n_obs_ += m
        self.cutoff_ = new_cutoff
        return self

    def _learn(self, Y, Xall, first_new):
        """One ``partial_fit`` pass over the windows whose targets are new."""
        s, d, w = self._steps_out, self._diff, self.window
        _, Zs = self._scaled_series(Y)
        Xs = self._scaled_covariates(Xall)
        origins = np.arange(max(d + w - 1, first_new - s), Y.shape[0] - s)
        if origins.size == 0:
            return
        inputs, targets = self._training_windows(Zs, Xs, origins)
        regressor = self.regressor_
        early_stopping = regressor.early_stopping
        # partial_fit is one epoch without a validation split.
        regressor.early_stopping = False
        try:
            regressor.partial_fit(inputs, targets)
        finally:
            regressor.early_stopping = early_stopping
