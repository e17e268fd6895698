"""lstmforecast: LSTM networks (Hochreiter & Schmidhuber 1997 and the modern
forget-gate cell) for time-series forecasting and sequence learning, with Numba
kernels and scikit-learn estimators.

Importing the package compiles nothing and imports none of its heavy dependencies:
the public names below are loaded on first access (scikit-learn, pandas and Numba
take over a second to import), and kernels are compiled (or loaded from Numba's
on-disk cache) on first use.
"""

import importlib

__version__ = "0.1.0"

# Estimator checks of scikit-learn that are expected to fail, with the reason:
# {"LSTMRegressor": {check_name: reason}, ...}. Kept empty: every check passes.
EXPECTED_FAILED_CHECKS: dict[str, dict[str, str]] = {
    "LSTMRegressor": {},
    "LSTMClassifier": {},
}

# public name -> module that defines it (None: the name is a submodule)
_LAZY = {
    "LSTMRegressor": ".estimators",
    "LSTMClassifier": ".estimators",
    "LSTMForecaster": ".forecaster",
    "ForecastInterval": ".forecaster",
    "load": "._persistence",
    "metrics": None,
    "model_selection": None,
    "datasets": None,
    "tasks": None,
}

__all__ = ["EXPECTED_FAILED_CHECKS", "ForecastInterval", "LSTMClassifier",
           "LSTMForecaster", "LSTMRegressor", "__version__", "datasets", "load",
           "metrics", "model_selection", "tasks"]


def __getattr__(name):
    if name not in _LAZY:
        raise AttributeError(f"module 'lstmforecast' has no attribute {name!r}")
    module_name = _LAZY[name]
    if module_name is None:
        value = importlib.import_module(f".{name}", __name__)
    else:
        value = getattr(importlib.import_module(module_name, __name__), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted(set(globals()) | set(__all__))
