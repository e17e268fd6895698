"""lstmforecast: LSTM networks (Hochreiter & Schmidhuber 1997 and the modern
forget-gate cell) for time-series forecasting and sequence learning, with Numba
kernels and scikit-learn estimators.

Importing the package compiles nothing: kernels are compiled (or loaded from Numba's
on-disk cache) on first use.
"""

from . import metrics, model_selection
from ._persistence import load
from .estimators import LSTMClassifier, LSTMRegressor
from .forecaster import ForecastInterval, LSTMForecaster

__version__ = "0.1.0"

# Estimator checks of scikit-learn that are expected to fail, with the reason:
# {"LSTMRegressor": {check_name: reason}, ...}. Kept empty: every check passes.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "LSTMRegressor": {},
    "LSTMClassifier": {},
}

__all__ = ["EXPECTED_FAILED_CHECKS", "ForecastInterval", "LSTMClassifier",
           "LSTMForecaster", "LSTMRegressor", "__version__", "load", "metrics",
           "model_selection"]
