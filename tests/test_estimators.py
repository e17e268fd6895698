"""Behaviour of the scikit-learn estimators ``LSTMRegressor`` and ``LSTMClassifier``.

* a counted matrix of bad inputs and bad hyper-parameters, each rejected with a
  ``ValueError``/``TypeError`` naming the problem, inputs hashed before and after;
* fit and predict never modify their inputs;
* every accepted input form (2-D, DataFrame, 3-D, ragged lists, many-to-many with
  masks, multi-output) and the shapes that come back;
* parameter counts (the 1997 paper's Exp. 4 network, torch's formula);
* ``get_weights`` / ``set_weights`` and agreement with ``torch.nn.LSTM``;
* determinism (seeds, the global ``np.random`` state, thread count);
* training behaviour (convergence warning, early stopping on the last sequences,
  ``partial_fit``, ``warm_start``, learning, clipping), Ctrl-C, verbosity;
* scikit-learn integration (pipelines, grid search, ``TimeSeriesSplit``, clone,
  pickle).
"""

from __future__ import annotations

import hashlib
import math
import os
import pickle
import subprocess
import sys
import warnings
from typing import Callable, NamedTuple

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.base import clone
from sklearn.exceptions import ConvergenceWarning
from sklearn.model_selection import GridSearchCV, TimeSeriesSplit, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import lstmforecast._base as _base
from lstmforecast import LSTMClassifier, LSTMRegressor

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Most fits below stop at max_epochs on purpose; the tests that are about the
# ConvergenceWarning record it with pytest.warns, which overrides this filter.
pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------- helpers
def _reg(**kwargs):
    """A tiny, quick, seeded regressor."""
    params = dict(hidden_size=4, max_epochs=2, batch_size=8, random_state=0)
    params.update(kwargs)
    return LSTMRegressor(**params)


def _clf(**kwargs):
    """A tiny, quick, seeded classifier."""
    params = dict(hidden_size=4, max_epochs=2, batch_size=8, random_state=0)
    params.update(kwargs)
    return LSTMClassifier(**params)


def _digest(obj):
    """sha256 of an array, DataFrame, list/tuple of them (recursively) or None."""
    h = hashlib.sha256()

    def feed(o):
        if o is None:
            h.update(b"<None>")
        elif isinstance(o, (list, tuple)):
            h.update(f"<{type(o).__name__} {len(o)}>".encode())
            for item in o:
                feed(item)
        elif isinstance(o, pd.DataFrame):
            h.update(repr(list(o.columns)).encode())
            feed(o.to_numpy())
        else:
            a = np.asarray(o)
            h.update(f"<{a.dtype} {a.shape}>".encode())
            if a.dtype == object:
                h.update(repr(a.tolist()).encode())
            else:
                h.update(np.ascontiguousarray(a).tobytes())

    feed(obj)
    return h.hexdigest()


def _table(seed, n=12, T=5):
    """2-D X (n, T) float64 and a 1-D target."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T))
    return X, X[:, 0].copy()


def _cube(seed, n=12, T=5, D=2):
    """3-D X (n, T, D) float64 and a 1-D target."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, D))
    return X, X[:, 0, 0].copy()


def _ragged(seed, lengths=(3, 6, 4, 5, 2, 7), D=2):
    """A list of (T_i, D) arrays and a 1-D target."""
    rng = np.random.default_rng(seed)
    X = [rng.normal(size=(T, D)) for T in lengths]
    return X, np.array([x[0, 0] for x in X])


def _with(a, index, value):
    """Copy of ``a`` with ``a[index] = value``."""
    a = np.array(a, copy=True)
    a[index] = value
    return a


# ------------------------------------------------------------- 1. bad inputs
class BadCase(NamedTuple):
    make_est: Callable          # () -> estimator
    method: str                 # "fit", "predict" or "partial_fit"
    make_data: Callable         # () -> (X, y, kwargs)
    match: str                  # a word of the error message naming the problem
    prefit: Callable | None = None   # () -> (X, y) to fit on first (predict cases)


def _fit_case(data, match, est=_reg):
    return BadCase(est, "fit", data, match)


def _param_case(match, **params):
    return BadCase(lambda: _reg(**params), "fit",
                   lambda: (*_table(1), {}), match)


def _seq_data(y_fn=None, mask_fn=None):
    """2-D X (12, 5) with output='sequence' targets and an optional mask."""
    def make():
        X, _ = _table(2)
        y = X.copy() if y_fn is None else y_fn(X)
        kwargs = {} if mask_fn is None else {"mask": mask_fn(X)}
        return X, y, kwargs
    return make


def _seq_reg():
    return _reg(output="sequence")


BAD_INPUT_CASES = {
    # non-finite values
    "nan_in_X_2d": _fit_case(
        lambda: (_with(_table(1)[0], (3, 2), np.nan), _table(1)[1], {}), "NaN"),
    "inf_in_X_2d": _fit_case(
        lambda: (_with(_table(1)[0], (0, 0), np.inf), _table(1)[1], {}), "infinity"),
    "nan_in_X_3d": _fit_case(
        lambda: (_with(_cube(1)[0], (2, 1, 1), np.nan), _cube(1)[1], {}), "NaN"),
    "neg_inf_in_X_3d": _fit_case(
        lambda: (_with(_cube(1)[0], (2, 1, 1), -np.inf), _cube(1)[1], {}),
        "infinity"),
    "nan_in_X_ragged": _fit_case(
        lambda: ([_with(x, (0, 0), np.nan) if i == 1 else x
                  for i, x in enumerate(_ragged(1)[0])], _ragged(1)[1], {}), "NaN"),
    "nan_in_y": _fit_case(
        lambda: (_table(1)[0], _with(_table(1)[1], 4, np.nan), {}), "NaN"),
    "inf_in_y": _fit_case(
        lambda: (_table(1)[0], _with(_table(1)[1], 4, np.inf), {}), "infinity"),
    "nan_in_y_sequence": BadCase(
        _seq_reg, "fit", _seq_data(lambda X: _with(X, (1, 1), np.nan)), "NaN"),
    "nan_in_y_ragged_sequence": BadCase(
        _seq_reg, "fit",
        lambda: (_ragged(1)[0],
                 [_with(x[:, 0], -1, np.nan) for x in _ragged(1)[0]], {}), "NaN"),
    # (ragged items that are plain arrays skip check_array unless it must speak)
    "inf_in_X_ragged": _fit_case(
        lambda: ([_with(x, (1, 1), -np.inf) if i == 2 else x
                  for i, x in enumerate(_ragged(1)[0])], _ragged(1)[1], {}),
        r"X\[2\] contains infinity"),
    "float32_overflow_in_X_ragged": _fit_case(
        lambda: ([_with(x, (0, 0), 1e39) if i == 1 else x
                  for i, x in enumerate(_ragged(1)[0])], _ragged(1)[1], {}),
        r"X\[1\] contains infinity", est=lambda: _reg(dtype="float32")),
    "empty_item_in_X_ragged": _fit_case(
        lambda: ([x if i != 3 else x[:0] for i, x in enumerate(_ragged(1)[0])],
                 _ragged(1)[1], {}), "0 sample"),
    "inf_in_y_ragged_sequence": BadCase(
        _seq_reg, "fit",
        lambda: (_ragged(1)[0], [_with(x[:, 0], 0, np.inf) if i == 4 else x[:, 0]
                                 for i, x in enumerate(_ragged(1)[0])], {}),
        r"y\[4\] contains infinity"),
    "nan_in_mask_ragged": BadCase(
        _seq_reg, "fit",
        lambda: (_ragged(1)[0], [x[:, 0] for x in _ragged(1)[0]],
                 {"mask": [_with(np.ones(len(x)), 0, np.nan) if i == 1
                           else np.ones(len(x)) for i, x in enumerate(_ragged(1)[0])]}),
        r"mask\[1\] contains NaN"),
    "nan_in_X_classifier": _fit_case(
        lambda: (_with(_table(1)[0], (3, 2), np.nan), _table(1)[1] > 0, {}), "NaN",
        est=_clf),
    # empty / wrong dimensions
    "empty_X_2d": _fit_case(lambda: (np.empty((0, 5)), np.empty(0), {}), "0 sample"),
    "empty_X_3d": _fit_case(lambda: (np.empty((0, 5, 2)), np.empty(0), {}),
                            "0 sample"),
    "empty_list": _fit_case(lambda: ([], [], {}), "2D array"),
    "zero_time_steps_3d": _fit_case(lambda: (np.ones((12, 0, 2)), np.ones(12), {}),
                                    "length 0"),
    "zero_features_3d": _fit_case(lambda: (np.ones((12, 5, 0)), np.ones(12), {}),
                                  "0 features"),
    "zero_columns_2d": _fit_case(lambda: (np.ones((12, 0)), np.ones(12), {}),
                                 "0 feature"),
    "zero_length_sequence_in_list": _fit_case(
        lambda: ([np.ones((0, 2)), np.ones((3, 2))], np.ones(2), {}), "0 sample"),
    "X_1d": _fit_case(lambda: (np.ones(12), np.ones(12), {}), "2D array"),
    "X_4d": _fit_case(lambda: (np.ones((12, 5, 2, 1)), np.ones(12), {}), "dim 4"),
    "list_of_3d_items": _fit_case(
        lambda: ([np.ones((3, 2, 1)), np.ones((4, 2, 1))], np.ones(2), {}),
        "dimensions"),
    # wrong data types
    "complex_X_2d": _fit_case(lambda: (_table(1)[0] + 1j, _table(1)[1], {}),
                              "Complex"),
    "complex_X_3d": _fit_case(lambda: (_cube(1)[0] + 1j, _cube(1)[1], {}),
                              "Complex"),
    "complex_y": _fit_case(lambda: (_table(1)[0], _table(1)[1] + 1j, {}), "Complex"),
    "string_X": _fit_case(lambda: (np.full((12, 5), "a"), np.ones(12), {}),
                          "convert string"),
    "string_X_3d": _fit_case(lambda: (np.full((12, 5, 2), "x"), np.ones(12), {}),
                             "convert string"),
    "object_X_with_none": _fit_case(
        lambda: (np.array([[1.0, None, 2.0]] * 12, dtype=object), np.ones(12), {}),
        "NaN"),
    "string_y_regressor": _fit_case(
        lambda: (_table(1)[0], np.full(12, "a"), {}), "convert string"),
    "continuous_y_classifier": _fit_case(
        lambda: (*_table(1), {}), "continuous", est=_clf),
    "single_class_classifier": _fit_case(
        lambda: (_table(1)[0], np.zeros(12), {}), "2 classes", est=_clf),
    "y_none": _fit_case(lambda: (_table(1)[0], None, {}), "requires y"),
    # inconsistent shapes
    "len_X_ne_len_y": _fit_case(lambda: (_table(1)[0], _table(1)[1][:-1], {}),
                                "inconsistent"),
    "len_ragged_X_ne_len_y": _fit_case(
        lambda: (_ragged(1)[0], _ragged(1)[1][:-1], {}), "inconsistent"),
    "ragged_different_features": _fit_case(
        lambda: ([np.ones((5, 2)), np.ones((4, 3))], np.ones(2), {}),
        "different numbers of features"),
    "y_3d_for_output_last": _fit_case(
        lambda: (_table(1)[0], np.ones((12, 1, 1)), {}), "output='last'"),
    "y_1d_for_output_sequence": BadCase(
        _seq_reg, "fit", _seq_data(lambda X: X[:, 0].copy()), "shape"),
    "y_too_few_steps_for_output_sequence": BadCase(
        _seq_reg, "fit", _seq_data(lambda X: X[:, :4].copy()), "time steps"),
    "ragged_y_wrong_lengths": BadCase(
        _seq_reg, "fit",
        lambda: (_ragged(1)[0], [np.ones(3) for _ in _ragged(1)[0]], {}),
        "time steps"),
    # masks
    "negative_mask": BadCase(
        _seq_reg, "fit", _seq_data(mask_fn=lambda X: _with(np.ones(X.shape), (2, 3),
                                                           -1.0)), "negative"),
    "all_zero_mask": BadCase(
        _seq_reg, "fit", _seq_data(mask_fn=lambda X: np.zeros(X.shape)),
        "no target step"),
    "nan_mask": BadCase(
        _seq_reg, "fit", _seq_data(mask_fn=lambda X: _with(np.ones(X.shape), (0, 0),
                                                           np.nan)), "NaN"),
    "mask_too_short": BadCase(
        _seq_reg, "fit", _seq_data(mask_fn=lambda X: np.ones((X.shape[0], 4))),
        "steps"),
    "mask_wrong_n_sequences": BadCase(
        _seq_reg, "fit", _seq_data(mask_fn=lambda X: np.ones((3, X.shape[1]))),
        "sequences"),
    "mask_with_output_last": _fit_case(
        lambda: (*_table(1), {"mask": np.ones((12, 5))}), "output='sequence'"),
    # predict on data unlike the fit's
    "predict_more_features_3d": BadCase(
        _reg, "predict", lambda: (_cube(3, D=3)[0], None, {}), "features",
        prefit=lambda: _cube(1)),
    "predict_fewer_features_list": BadCase(
        _reg, "predict", lambda: ([np.ones((4, 1)), np.ones((2, 1))], None, {}),
        "features", prefit=lambda: _cube(1)),
    "predict_other_time_steps_2d": BadCase(
        _reg, "predict", lambda: (_table(3, T=6)[0], None, {}), "features",
        prefit=lambda: _table(1)),
    "predict_nan": BadCase(
        _reg, "predict", lambda: (_with(_cube(3)[0], (0, 0, 0), np.nan), None, {}),
        "NaN", prefit=lambda: _cube(1)),
    "predict_empty": BadCase(
        _reg, "predict", lambda: (np.empty((0, 5, 2)), None, {}), "0 sample",
        prefit=lambda: _cube(1)),
    "predict_unfitted": BadCase(
        _reg, "predict", lambda: (_table(1)[0], None, {}), "not fitted"),
    "partial_fit_other_features": BadCase(
        _reg, "partial_fit", lambda: (*_cube(3, D=3), {}), "features",
        prefit=lambda: _cube(1)),
    # out-of-range hyper-parameters
    "hidden_size_0": _param_case("hidden_size", hidden_size=0),
    "num_layers_0": _param_case("num_layers", num_layers=0),
    "learning_rate_0": _param_case("learning_rate", learning_rate=0.0),
    "learning_rate_negative": _param_case("learning_rate", learning_rate=-0.01),
    "batch_size_0": _param_case("batch_size", batch_size=0),
    "max_epochs_0": _param_case("max_epochs", max_epochs=0),
    "validation_fraction_1": _param_case("validation_fraction",
                                         validation_fraction=1.0),
    "validation_fraction_leaves_nothing": _param_case(
        "validation_fraction", early_stopping=True, validation_fraction=0.95),
    "momentum_1": _param_case("momentum", optimizer="sgd", momentum=1.0),
    "cell_gru": _param_case("cell", cell="gru"),
    "optimizer_rmsprop": _param_case("optimizer", optimizer="rmsprop"),
    "dtype_float16": _param_case("dtype", dtype="float16"),
    "device_cuda": _param_case("cpu", device="cuda"),
    "block_size_not_dividing_hidden": _param_case(
        "multiple", cell="lstm1997", hidden_size=4, block_size=3),
    "block_size_with_lstm": _param_case("block_size", cell="lstm", block_size=2),
    "squashing_unknown": _param_case("squashing", cell="lstm1997",
                                     squashing="logistic"),
    "squashing_table10_with_lstm": _param_case("squashing", cell="lstm",
                                               squashing="table10"),
    "no_output_gate_with_lstm": _param_case("output_gate", cell="lstm",
                                            output_gate=False),
    "output_gate_bias_without_output_gate": _param_case(
        "output_gate_bias", cell="lstm1997", output_gate=False,
        output_gate_bias=-1.0),
    "clip_norm_0": _param_case("clip_norm", clip_norm=0.0),
    "alpha_negative": _param_case("alpha", alpha=-1.0),
    "output_bad": _param_case("output", output="all"),
    "loss_unknown": _param_case("loss", loss="hinge"),
    "log_loss_on_a_linear_output": _param_case("output_activation='sigmoid'",
                                               loss="log_loss"),
    "log_loss_targets_outside_0_1": BadCase(
        lambda: _reg(output_activation="sigmoid", loss="log_loss"), "fit",
        lambda: (_table(1)[0], _with(np.full(12, 0.5), (3,), 1.25), {}),
        r"targets in \[0, 1\]"),
    "log_loss_partial_fit_targets_outside_0_1": BadCase(
        lambda: _reg(output_activation="sigmoid", loss="log_loss"), "partial_fit",
        lambda: (_table(1)[0], _with(np.full(12, 0.5), (0,), -0.5), {}),
        r"targets in \[0, 1\]",
        prefit=lambda: (_table(2)[0], np.full(12, 0.25))),
    "classifier_squared_error_on_softmax": BadCase(
        lambda: _clf(loss="squared_error"), "fit",
        lambda: (_table(1)[0], np.arange(12) % 3, {}), "output_activation='sigmoid'"),
}

assert len(BAD_INPUT_CASES) >= 25, len(BAD_INPUT_CASES)


@pytest.mark.parametrize("case_id", list(BAD_INPUT_CASES))
def test_bad_input_raises_and_leaves_inputs_unchanged(case_id):
    case = BAD_INPUT_CASES[case_id]
    est = case.make_est()
    if case.prefit is not None:
        est.fit(*case.prefit())
    X, y, kwargs = case.make_data()
    before = (_digest(X), _digest(y), _digest(kwargs.get("mask")))
    with pytest.raises((ValueError, TypeError), match=case.match):
        if case.method == "predict":
            est.predict(X)
        else:
            getattr(est, case.method)(X, y, **kwargs)
    assert (_digest(X), _digest(y), _digest(kwargs.get("mask"))) == before


# --------------------------------------------------------- 2. no mutation
def _mutation_data(form, dtype):
    rng = np.random.default_rng(11)
    if form == "2d":
        X = rng.normal(size=(20, 6)).astype(dtype)
        return X, X[:, 0].copy(), None, "last"
    if form == "3d":
        X = rng.normal(size=(20, 6, 2)).astype(dtype)
        return X, X[:, 1, 0].copy(), None, "last"
    if form == "ragged":
        X = [rng.normal(size=(T, 2)).astype(dtype) for T in (4, 7, 3, 6, 5, 2)]
        return X, np.array([x[0, 1] for x in X]), None, "last"
    if form == "sequence":
        X = rng.normal(size=(20, 6, 2)).astype(dtype)
        y = np.cumsum(X[:, :, 0], axis=1)
        mask = rng.uniform(size=(20, 6)).astype(dtype)
        return X, y, mask, "sequence"
    # ragged many-to-many with a list mask
    X = [rng.normal(size=(T, 2)).astype(dtype) for T in (4, 7, 3, 6, 5, 2)]
    y = [np.cumsum(x[:, 0]) for x in X]
    mask = [np.ones(x.shape[0], dtype=dtype) for x in X]
    return X, y, mask, "sequence"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("form", ["2d", "3d", "ragged", "sequence",
                                  "ragged_sequence"])
def test_fit_and_predict_do_not_mutate_inputs(form, dtype):
    # Inputs already in the model dtype and C order: the path where a lazy
    # implementation would work in place.
    X, y, mask, output = _mutation_data(form, dtype)
    before = [_digest(X), _digest(y), _digest(mask)]
    est = _reg(output=output, dtype=dtype)
    est.fit(X, y) if mask is None else est.fit(X, y, mask=mask)
    assert [_digest(X), _digest(y), _digest(mask)] == before
    est.predict(X)
    est.score(X, y)
    assert [_digest(X), _digest(y), _digest(mask)] == before


@pytest.mark.parametrize("form", ["3d", "2d"])
def test_predict_does_not_copy_the_inputs(form):
    """An ``X`` in the model's dtype and C order is read where it is: Python's
    allocations during predict stay far below its size (both the validation and
    the run in a canonical order used to copy it: twice its size). A read-only or
    unaligned ``X`` is copied (Numba would compile again), and predicts the same."""
    import tracemalloc

    rng = np.random.default_rng(5)
    shape = (40, 400, 40) if form == "3d" else (400, 1600)
    X = rng.normal(size=shape)
    est = LSTMRegressor(hidden_size=2, max_epochs=1, dtype="float64",
                        random_state=0).fit(X[:8], X[:8, 0, 0] if form == "3d"
                                            else X[:8, 0])
    est.predict(X[:3])
    tracemalloc.start()
    try:
        pred = est.predict(X)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < X.nbytes / 4, (peak, X.nbytes)
    frozen = X.copy()
    frozen.flags.writeable = False
    assert np.array_equal(est.predict(frozen), pred)
    buffer = bytearray(X.nbytes + 1)
    unaligned = np.frombuffer(buffer, dtype=X.dtype, offset=1).reshape(X.shape)
    unaligned[...] = X
    assert not unaligned.flags.aligned
    assert np.array_equal(est.predict(unaligned), pred)


def test_fit_does_not_mutate_dataframe():
    X, y = _table(3, n=20)
    df = pd.DataFrame(X, columns=[f"lag{i}" for i in range(X.shape[1])])
    before = _digest(df), _digest(y)
    _reg().fit(df, y).predict(df)
    assert (_digest(df), _digest(y)) == before


# ------------------------------------------------------------------ 3. inputs
def test_2d_input():
    X, y = _table(4, n=30, T=6)
    est = _reg().fit(X, y)
    assert est.n_features_in_ == 6
    assert est.input_size_ == 1
    assert not hasattr(est, "feature_names_in_")
    pred = est.predict(X)
    assert pred.shape == (30,)
    assert np.all(np.isfinite(pred))


def test_dataframe_input_sets_feature_names():
    X, y = _table(4, n=30, T=6)
    columns = [f"lag{i}" for i in range(6)]
    df = pd.DataFrame(X, columns=columns)
    est = _reg().fit(df, y)
    assert list(est.feature_names_in_) == columns
    assert est.n_features_in_ == 6
    pred = est.predict(df)
    assert pred.shape == (30,)
    # Same numbers as the bare array (the DataFrame is only a wrapper).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)   # "no valid feature names"
        assert_allclose(est.predict(X), pred, rtol=0, atol=0)
    renamed = df.rename(columns={"lag0": "other"})
    with pytest.raises(ValueError, match="feature names"):
        est.predict(renamed)
    # A later fit on a 3-D array forgets the names.
    est.fit(*_cube(4, n=30))
    assert not hasattr(est, "feature_names_in_")


def test_3d_input():
    X, y = _cube(5, n=30, T=6, D=3)
    est = _reg().fit(X, y)
    assert est.n_features_in_ == 3
    assert est.input_size_ == 3
    assert est.predict(X).shape == (30,)
    # Sequences of another length are fine for a 3-D fit.
    assert est.predict(_cube(6, n=4, T=9, D=3)[0]).shape == (4,)


@pytest.mark.parametrize("item_ndim", [1, 2])
def test_ragged_list_input(item_ndim):
    X, y = _ragged(7, lengths=(3, 8, 5, 1, 6, 4, 7, 2), D=1)
    if item_ndim == 1:
        X = [x[:, 0] for x in X]
    est = _reg().fit(X, y)
    assert est.input_size_ == 1
    pred = est.predict(X)
    assert isinstance(pred, np.ndarray) and pred.shape == (8,)
    assert np.all(np.isfinite(pred))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_ragged_fast_validation_equals_check_array(dtype):
    """Ragged items that are plain NumPy arrays skip scikit-learn's check_array
    (0.1 ms each); the packed sequences, targets and mask equal those of the same
    data given as nested lists, which go through check_array."""
    from lstmforecast._data import check_mask, check_sequences, step_targets

    rng = np.random.default_rng(3)
    lengths = (3, 1, 5, 2)
    X = [rng.normal(size=(lengths[0], 2)),
         rng.integers(-3, 4, size=(lengths[1], 2)),
         rng.normal(size=(lengths[2], 2)).astype(np.float32),
         rng.uniform(size=(lengths[3], 2)) > 0.5]
    Y = [rng.integers(0, 2, size=T) for T in lengths]
    Y[0] = rng.normal(size=(lengths[0], 1))
    M = [rng.uniform(size=T) for T in lengths]
    M[1] = np.ones(1, dtype=np.int64)
    copies = [np.copy(a) for a in X + Y + M]

    def pack(X, Y, M):
        est = _reg(output="sequence", dtype=dtype)
        seqs = check_sequences(est, X, np.dtype(dtype), reset=True)
        rows, squeeze = step_targets(seqs, Y, "sequence", np.dtype(dtype))
        return seqs, rows, squeeze, check_mask(seqs, M, "sequence", np.dtype(dtype))

    fast = pack(X, Y, M)
    slow = pack(*[[a.tolist() for a in items] for items in (X, Y, M)])
    assert fast[0].X.dtype == np.dtype(dtype)
    assert_array_equal = np.testing.assert_array_equal
    assert_array_equal(fast[0].X, slow[0].X)
    assert_array_equal(fast[0].lengths, slow[0].lengths)
    assert fast[2] == slow[2]
    for a, b in zip(fast[1], slow[1]):
        assert a.dtype == b.dtype == np.dtype(dtype)
        assert_array_equal(a, b)
    assert_array_equal(fast[3], slow[3])
    # the caller's arrays are untouched, and the packed input is not a view of them
    fast[0].X[...] = 0.0
    for a, b in zip(X + Y + M, copies):
        assert a.dtype == b.dtype
        assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("features", [None, 1, 3])
def test_ragged_packing_equals_sequence_by_sequence(dtype, features):
    """A list of plain arrays is padded in one pass (one finiteness check for the
    whole); the result equals the sequence-by-sequence padding of the same items
    (1-D items, or 2-D with one or several features; several dtypes), and every
    item the one pass cannot vouch for is handed to the per-sequence check."""
    from lstmforecast._data import _check_sequence, _pack_plain

    rng = np.random.default_rng(5)
    lengths = (4, 1, 7, 3, 7)
    shape = (lambda T: (T,)) if features is None else (lambda T: (T, features))
    X = [rng.normal(size=shape(lengths[0])),
         rng.integers(-9, 9, size=shape(lengths[1])),
         rng.normal(size=shape(lengths[2])).astype(np.float32),
         rng.uniform(size=shape(lengths[3])) > 0.5,
         np.asfortranarray(rng.normal(size=shape(lengths[4])))]
    copies = [np.copy(a) for a in X]
    packed = _pack_plain(X, np.dtype(dtype))
    assert packed is not None
    X3, got_lengths = packed
    items = [_check_sequence(item, i, np.dtype(dtype)) for i, item in enumerate(X)]
    assert X3.dtype == np.dtype(dtype) and X3.shape == (5, 7, features or 1)
    np.testing.assert_array_equal(got_lengths, lengths)
    for i, item in enumerate(items):
        np.testing.assert_array_equal(X3[i, :lengths[i]], item)
        assert not X3[i, lengths[i]:].any()
    X3[...] = 0.0
    for a, b in zip(X, copies):
        np.testing.assert_array_equal(a, b)

    def changed(i, value):
        out = list(X)
        out[i] = value
        return out

    big = np.full(shape(2), 1e39)
    for bad in (changed(2, np.full(shape(2), np.nan)),
                changed(0, np.full(shape(2), -np.inf)),
                changed(1, np.zeros(shape(0))),
                changed(3, X[3].tolist()),
                changed(3, X[3].astype(complex)),
                changed(3, X[3].astype(object)),
                changed(4, np.ones((3, (features or 1) + 1))),
                changed(4, np.ones((3, 1, 1)))):
        assert _pack_plain(bad, np.dtype(dtype)) is None
    assert (_pack_plain(changed(1, big), np.dtype(dtype)) is None) == (dtype == "float32")


def test_ragged_prediction_equals_prediction_alone():
    X, y = _ragged(8, lengths=(3, 9, 5, 1, 6, 4))
    est = _reg(hidden_size=6, max_epochs=3).fit(X, y)
    together = est.predict(X)
    alone = np.array([est.predict([x])[0] for x in X])
    assert_allclose(together, alone, rtol=1e-6, atol=1e-7)
    alone_3d = np.array([est.predict(x[None])[0] for x in X])
    assert_allclose(together, alone_3d, rtol=1e-6, atol=1e-7)
    # The check can fail: running a short sequence on through zero padding (what a
    # leak of padding would do) changes its prediction.
    T = max(len(x) for x in X)
    padded = np.zeros((1, T, 2))
    padded[0, :len(X[0])] = X[0]
    assert abs(est.predict(padded)[0] - together[0]) > 1e-4


def test_ragged_sequence_prediction_equals_prediction_alone():
    X, _ = _ragged(9, lengths=(3, 9, 5, 1, 6, 4))
    y = [np.cumsum(x[:, 0]) for x in X]
    est = _reg(output="sequence", hidden_size=6, max_epochs=3).fit(X, y)
    together = est.predict(X)
    assert isinstance(together, list)
    for x, p in zip(X, together):
        assert p.shape == (len(x),)
        assert_allclose(p, est.predict(x[None])[0], rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("mask_form", ["array", "list", "none"])
def test_sequence_output_regressor_with_mask(mask_form):
    rng = np.random.default_rng(10)
    X = rng.normal(size=(16, 7, 2))
    y = np.cumsum(X[:, :, 0], axis=1)
    mask = (rng.uniform(size=(16, 7)) > 0.3).astype(float)
    mask[:, -1] = 1.0
    kwargs = {"array": {"mask": mask}, "list": {"mask": list(mask)},
              "none": {}}[mask_form]
    est = _reg(output="sequence").fit(X, y, **kwargs)
    pred = est.predict(X)
    assert pred.shape == (16, 7)
    assert np.isfinite(est.score(X, y, **kwargs))


def test_sequence_output_list_and_array_forms_fit_the_same():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(10, 6, 2))
    y = np.cumsum(X[:, :, 0], axis=1)
    mask = rng.uniform(size=(10, 6))
    a = _reg(output="sequence").fit(X, y, mask=mask)
    b = _reg(output="sequence").fit(list(X), list(y), mask=list(mask))
    assert np.array_equal(a.params_, b.params_)
    pred_list = b.predict(list(X))
    assert isinstance(pred_list, list) and len(pred_list) == 10
    assert_allclose(np.array(pred_list), a.predict(X), rtol=0, atol=0)


def test_masked_steps_do_not_influence_training():
    rng = np.random.default_rng(13)
    X = rng.normal(size=(12, 6, 1))
    y = np.cumsum(X[:, :, 0], axis=1)
    mask = np.ones((12, 6))
    mask[:, :3] = 0.0
    y_a, y_b = y.copy(), y.copy()
    y_a[:, :3] = 100.0
    y_b[:, :3] = -55.0
    a = _reg(output="sequence").fit(X, y_a, mask=mask)
    b = _reg(output="sequence").fit(X, y_b, mask=mask)
    assert np.array_equal(a.params_, b.params_)
    # Without the mask those targets count and the fits differ.
    c = _reg(output="sequence").fit(X, y_a)
    assert not np.array_equal(a.params_, c.params_)


@pytest.mark.parametrize("ragged", [False, True])
def test_sequence_output_classifier(ragged):
    rng = np.random.default_rng(14)
    if ragged:
        X = [rng.normal(size=(T, 2)) for T in (5, 3, 7, 6, 4, 5, 2, 6)]
    else:
        X = list(rng.normal(size=(8, 6, 2)))
    y = [np.where(x[:, 0] > 0, "up", "down") for x in X]
    mask = [np.ones(len(x)) for x in X]
    Xf = X if ragged else np.array(X)
    yf = y if ragged else np.array(y)
    clf = _clf(output="sequence").fit(Xf, yf, mask=mask)
    assert list(clf.classes_) == ["down", "up"]
    pred = clf.predict(Xf)
    if ragged:
        assert isinstance(pred, list)
        assert [p.shape for p in pred] == [(len(x),) for x in X]
        labels = np.concatenate(pred)
    else:
        assert pred.shape == (8, 6)
        labels = pred.ravel()
    assert set(labels) <= {"down", "up"}
    proba = clf.predict_proba(Xf)
    for p, x in zip(proba, X):
        assert p.shape == (len(x), 2)
        assert_allclose(p.sum(axis=-1), 1.0, atol=1e-6)
    assert 0.0 <= clf.score(Xf, yf) <= 1.0


def test_multi_output_regression():
    X, _ = _cube(15, n=24, T=5, D=2)
    y = np.stack([X[:, 0, 0], X[:, -1, 1], X[:, :, 0].sum(axis=1)], axis=1)
    est = _reg().fit(X, y)
    assert est.n_outputs_ == 3
    pred = est.predict(X)
    assert pred.shape == (24, 3)
    # A (N, 1) target keeps its output axis.
    assert _reg().fit(X, y[:, :1]).predict(X).shape == (24, 1)
    # Many-to-many with several outputs per step.
    Y = np.stack([np.cumsum(X[:, :, 0], axis=1), X[:, :, 1]], axis=-1)
    seq = _reg(output="sequence").fit(X, Y)
    assert seq.predict(X).shape == (24, 5, 2)


# ------------------------------------------------------- 4. parameter counts
def test_paper_experiment_4_network_has_93_parameters():
    X, y = _cube(16, n=10, T=6, D=2)
    est = LSTMRegressor(cell="lstm1997", hidden_size=4, block_size=2, max_epochs=1,
                        random_state=0).fit(X, y)
    assert est.n_params_ == 93
    assert est.params_.shape == (93,)


def test_paper_experiment_2a_network_has_10504_parameters():
    """Exps. 2a/2b (Table 10): one cell and its input gate, no output gate, no
    biases, cell and gate seeing only the 101 inputs, and 101 logistic outputs
    seeing the inputs and the cell (connectivity B): 2 * 101 + 101 * 102."""
    from lstmforecast import tasks

    data = tasks.noise_free_long_lag(3, np.random.default_rng(0), p=100)
    est = LSTMRegressor(cell="lstm1997", hidden_size=1, block_size=1,
                        squashing="exp2", output_gate=False, recurrent_weights=False,
                        input_to_output=True, hidden_bias="none", output_bias=False,
                        output="sequence", output_activation="sigmoid",
                        optimizer="sgd", learning_rate=1.0, gradient="truncated",
                        update="step", batch_size=1, init_scale=0.2, max_epochs=1,
                        random_state=0).fit(data.X, data.Y)
    assert est.n_params_ == 10504
    w = est.get_weights(layout="native")
    assert w["head.weight_input"].shape == (101, 101)
    # frozen through training: no recurrent weights, the output gate held open
    assert not np.any(w["weight_hh_l0"])
    assert not np.any(w["weight_ih_l0"][2]) and w["bias_ih_l0"][2] == 40.0
    assert np.any(w["weight_ih_l0"][:2])


def test_frozen_recurrent_weights_and_open_output_gates():
    """``recurrent_weights=False`` keeps every recurrent weight at 0 and
    ``output_gate=False`` every output gate at exactly 1 through training (with
    Adam and an L2 penalty, which would move any weight they reached)."""
    from lstmforecast._data import check_sequences

    X, y = _cube(24, n=16, T=5, D=2)
    est = _reg(cell="lstm1997", hidden_size=4, block_size=2, output_gate=False,
               recurrent_weights=False, dtype="float64", alpha=0.01,
               learning_rate=0.05).fit(X, y)
    full = _reg(cell="lstm1997", hidden_size=4, block_size=2).fit(X, y)
    # 8 units see 2 inputs and 8 recurrent values, one bias each; the 2 output
    # gates and all 8 x 8 recurrent weights go
    assert full.n_params_ - est.n_params_ == 2 * (2 + 8 + 1) + 8 * 8 - 2 * 8
    w = est.get_weights(layout="native")
    assert not np.any(w["weight_hh_l0"])
    assert not np.any(w["weight_ih_l0"][6:]) and np.all(w["bias_ih_l0"][6:] == 40.0)
    seqs = check_sequences(est, X, est.params_.dtype, reset=False)
    _, state = est._run_forward(seqs.X, seqs.lengths, True)
    assert np.all(state[:, 0, 6:8] == 1.0)        # the output gates' activations
    # (float32's sigmoid, a fast tanh, comes within one rounding of 1)
    est32 = clone(est).set_params(dtype="float32").fit(X, y)
    _, state = est32._run_forward(seqs.X.astype(np.float32), seqs.lengths, True)
    assert np.all(state[:, 0, 6:8] >= np.float32(1.0) - 2e-7)
    assert np.isfinite(est.loss_curve_[-1]) and est.loss_curve_[-1] < est.loss_curve_[0]


def test_without_recurrent_weights_lstm1997_cannot_tell_input_order():
    """With no recurrent weights and no forget gate, a cell's state is a sum of
    terms that each depend on one step's input, so permuting every step but the
    last leaves the output unchanged (why the paper benchmark's order tasks, Exp.
    6, are out of such a network's reach); with the recurrent weights it changes."""
    X, y = _cube(26, n=16, T=6, D=3)
    swapped = X.copy()
    swapped[:, :-1] = X[:, -2::-1]             # steps 0..T-2 reversed, T-1 kept
    kwargs = dict(cell="lstm1997", hidden_size=4, block_size=2, dtype="float64",
                  max_epochs=3, learning_rate=0.05)
    est = _reg(recurrent_weights=False, **kwargs).fit(X, y)
    assert_allclose(est.predict(swapped), est.predict(X), rtol=1e-12, atol=1e-12)
    full = _reg(**kwargs).fit(X, y)
    assert np.abs(full.predict(swapped) - full.predict(X)).max() > 1e-3


def test_input_to_output_head_sees_the_input():
    """``input_to_output=True``: the head also sees the input of the step, its
    weights travel through get_weights / set_weights, and a network whose cells
    are silenced still predicts through that path."""
    X, y = _cube(25, n=20, T=5, D=2)
    y = X[:, -1, 0] - 0.5 * X[:, -1, 1]      # a function of the last input only
    est = _reg(input_to_output=True, max_epochs=60, learning_rate=0.05).fit(X, y)
    assert est.score(X, y) > 0.9
    w = est.get_weights()
    assert w["head.weight_input"].shape == (1, 2)
    assert est.n_params_ == _reg(max_epochs=1).fit(X, y).n_params_ + 2
    w["head.weight"][...] = 0.0
    est.set_weights(w)
    assert_allclose(est.predict(X), X[:, -1] @ w["head.weight_input"][0]
                    + w["head.bias"][0], rtol=1e-5, atol=1e-6)


def _torch_lstm_count(input_size, hidden, layers, n_out):
    count = 0
    for layer in range(layers):
        din = input_size if layer == 0 else hidden
        count += 4 * hidden * (din + hidden) + 2 * 4 * hidden
    return count + hidden * n_out + n_out


def test_lstm_parameter_count_matches_torch_formula():
    X, y = _cube(17, n=10, T=6, D=2)
    est = _reg(hidden_size=3, num_layers=2, max_epochs=1).fit(X, y)
    assert est.n_params_ == _torch_lstm_count(2, 3, 2, 1) == 184
    try:
        import torch
    except ImportError:
        return
    lstm = torch.nn.LSTM(2, 3, num_layers=2)
    head = torch.nn.Linear(3, 1)
    n_torch = sum(p.numel() for p in lstm.parameters())
    n_torch += sum(p.numel() for p in head.parameters())
    assert est.n_params_ == n_torch


# ------------------------------------------------------------------- 5. weights
def _expected_names(num_layers, cell="lstm"):
    names = []
    for layer in range(num_layers):
        names += [f"weight_ih_l{layer}", f"weight_hh_l{layer}", f"bias_ih_l{layer}"]
        if cell == "lstm":
            names.append(f"bias_hh_l{layer}")
    return names + ["head.weight", "head.bias"]


@pytest.fixture(scope="module")
def fitted_lstm2():
    """A 2-layer lstm, input 3, hidden 5, float64."""
    X, y = _cube(18, n=16, T=6, D=3)
    est = _reg(hidden_size=5, num_layers=2, dtype="float64", max_epochs=3)
    return est.fit(X, y), X


def test_weight_names_match_torch_state_dict(fitted_lstm2):
    est, _ = fitted_lstm2
    weights = est.get_weights()
    assert list(weights) == _expected_names(2)
    assert weights["weight_ih_l0"].shape == (20, 3)
    assert weights["weight_hh_l1"].shape == (20, 5)
    assert weights["head.weight"].shape == (1, 5)
    try:
        import torch
    except ImportError:
        return
    state = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True).state_dict()
    lstm_names = [n for n in weights if not n.startswith("head.")]
    assert lstm_names == list(state)
    for name in lstm_names:
        assert weights[name].shape == tuple(state[name].shape)


def test_weights_round_trip(fitted_lstm2):
    est, X = fitted_lstm2
    est = pickle.loads(pickle.dumps(est))
    pred = est.predict(X)
    params = est.params_.copy()
    weights = est.get_weights()
    # get_weights hands out copies.
    weights["head.bias"][...] = 123.0
    assert np.array_equal(est.params_, params)
    est.set_weights(est.get_weights())
    assert np.array_equal(est.params_, params)
    assert np.array_equal(est.predict(X), pred)
    # Changed weights do change predictions (the check can fail).
    est.set_weights(weights)
    assert not np.allclose(est.predict(X), pred)


def test_native_layout_for_lstm1997():
    X, y = _cube(19, n=10, T=5, D=2)
    est = _reg(cell="lstm1997", hidden_size=4, block_size=2).fit(X, y)
    with pytest.raises(ValueError, match="layout='native'"):
        est.get_weights()
    with pytest.raises(ValueError, match="layout='native'"):
        est.set_weights({}, layout="torch")
    weights = est.get_weights(layout="native")
    assert list(weights) == _expected_names(1, cell="lstm1997")
    assert weights["weight_hh_l0"].shape == (8, 8)   # 4 cells + 2 + 2 gates
    pred = est.predict(X)
    est.set_weights(weights, layout="native")
    assert np.array_equal(est.predict(X), pred)


@pytest.mark.parametrize("squashing", ["table10", "exp2", "exp2_centered"])
def test_squashing_runs_its_cell(squashing):
    """``squashing`` reaches the kernels: predictions are the NumPy oracle's 1997
    cell with that reading of g and h (Table 10's: g in [-1, 1] and h in [-2, 2];
    Exp. 2's: g in [0, 1] or [-1, 1] and h the identity), not the Appendix's."""
    try:
        from naive import naive_forward
    except ImportError:  # tests/ imported as a package
        from tests.naive import naive_forward
    from lstmforecast._layout import CELL_LSTM1997, LOSS_SQUARED, cell_code
    X, y = _cube(23, n=8, T=6, D=2)
    est = _reg(cell="lstm1997", hidden_size=4, block_size=2, squashing=squashing,
               dtype="float64", init_scale=1.0).fit(X, y)
    assert est._net["squashing"] == squashing
    sizes = (2, 4, 1, 1, 2, LOSS_SQUARED, list(X))
    ours = [o[-1, 0] for o in naive_forward(
        est.params_, cell_code("lstm1997", squashing), *sizes)[0]]
    appendix = [o[-1, 0] for o in naive_forward(est.params_, CELL_LSTM1997,
                                                 *sizes)[0]]
    assert_allclose(est.predict(X), ours, rtol=1e-10, atol=1e-12)
    assert np.abs(np.subtract(ours, appendix)).max() > 1e-3


def _bad_weights(weights, kind):
    w = {k: v.copy() for k, v in weights.items()}
    if kind == "wrong_shape":
        w["weight_hh_l0"] = w["weight_hh_l0"][:, :-1]
    elif kind == "transposed":
        w["weight_ih_l1"] = w["weight_ih_l1"].T
    elif kind == "missing_key":
        del w["bias_hh_l1"]
    elif kind == "extra_key":
        w["bias_hh_l2"] = w["bias_hh_l1"]
    elif kind == "nan":
        w["weight_ih_l0"][0, 0] = np.nan
    elif kind == "inf":
        w["head.bias"][0] = np.inf
    return w


@pytest.mark.parametrize("kind, match", [
    ("wrong_shape", "shape"), ("transposed", "shape"), ("missing_key", "missing"),
    ("extra_key", "unexpected"), ("nan", "non-finite"), ("inf", "non-finite"),
])
def test_set_weights_rejects_bad_weights(fitted_lstm2, kind, match):
    est, X = fitted_lstm2
    est = pickle.loads(pickle.dumps(est))
    params = est.params_.copy()
    bad = _bad_weights(est.get_weights(), kind)
    with pytest.raises(ValueError, match=match):
        est.set_weights(bad)
    assert np.array_equal(est.params_, params)


def test_set_weights_rejects_non_numeric_and_bad_layout(fitted_lstm2):
    est, _ = fitted_lstm2
    est = pickle.loads(pickle.dumps(est))
    weights = est.get_weights()
    weights["head.bias"] = np.array(["a"])
    with pytest.raises(TypeError, match="numeric"):
        est.set_weights(weights)
    with pytest.raises(ValueError, match="layout"):
        est.get_weights(layout="keras")
    with pytest.raises(ValueError, match="not fitted"):
        _reg().get_weights()


def _torch_predict(torch, weights, X, input_size, hidden, layers, last):
    lstm = torch.nn.LSTM(input_size, hidden, num_layers=layers,
                         batch_first=True).double()
    head = torch.nn.Linear(hidden, weights["head.weight"].shape[0]).double()
    lstm.load_state_dict({k: torch.from_numpy(v) for k, v in weights.items()
                          if not k.startswith("head.")})
    head.load_state_dict({"weight": torch.from_numpy(weights["head.weight"]),
                          "bias": torch.from_numpy(weights["head.bias"])})
    with torch.no_grad():
        out, _ = lstm(torch.from_numpy(X))
        y = head(out[:, -1] if last else out)
    return y.numpy()[..., 0]


@pytest.mark.parametrize("output", ["last", "sequence"])
def test_predictions_equal_torch(output):
    torch = pytest.importorskip("torch", reason="torch is needed to compare with "
                                                "torch.nn.LSTM")
    rng = np.random.default_rng(20)
    X = rng.normal(size=(12, 7, 3))
    y = X[:, -1, 0] if output == "last" else np.cumsum(X[:, :, 0], axis=1)
    est = _reg(hidden_size=5, num_layers=2, dtype="float64", output=output,
               max_epochs=3).fit(X, y)
    expected = _torch_predict(torch, est.get_weights(), X, 3, 5, 2,
                              last=output == "last")
    assert_allclose(est.predict(X), expected, rtol=1e-10, atol=1e-10)
    # And the other way: torch's random weights, loaded as tensors.
    lstm = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True).double()
    head = torch.nn.Linear(5, 1).double()
    state = dict(lstm.state_dict())
    state["head.weight"] = head.weight
    state["head.bias"] = head.bias
    est.set_weights(state)
    with torch.no_grad():
        out, _ = lstm(torch.from_numpy(X))
        ref = head(out[:, -1] if output == "last" else out).numpy()[..., 0]
    assert_allclose(est.predict(X), ref, rtol=1e-10, atol=1e-10)


def test_ragged_predictions_equal_torch_per_sequence():
    torch = pytest.importorskip("torch", reason="torch is needed to compare with "
                                                "torch.nn.LSTM")
    X, y = _ragged(21, lengths=(2, 7, 4, 5))
    est = _reg(hidden_size=5, num_layers=2, dtype="float64").fit(X, y)
    weights = est.get_weights()
    expected = np.array([_torch_predict(torch, weights, x[None], 2, 5, 2, True)[0]
                         for x in X])
    assert_allclose(est.predict(X), expected, rtol=1e-10, atol=1e-10)


# -------------------------------------------------------------- 6. determinism
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_same_model_different_seed_different_model(dtype):
    X, y = _cube(22, n=24, T=5)
    a = _reg(dtype=dtype, random_state=3).fit(X, y)
    b = _reg(dtype=dtype, random_state=3).fit(X, y)
    c = _reg(dtype=dtype, random_state=4).fit(X, y)
    assert a.params_.dtype == np.dtype(dtype)
    assert np.array_equal(a.params_, b.params_)
    assert np.array_equal(a.predict(X), b.predict(X))
    assert a.loss_curve_ == b.loss_curve_
    assert not np.array_equal(a.params_, c.params_)
    assert not np.array_equal(a.predict(X), c.predict(X))


def test_seeded_refit_is_idempotent():
    X, y = _cube(23, n=24, T=5)
    est = _reg(random_state=5).fit(X, y)
    first = est.params_.copy()
    est.fit(X, y)
    assert np.array_equal(est.params_, first)


@pytest.mark.parametrize("random_state", [0, None, "RandomState"])
def test_fit_does_not_touch_global_random_state(random_state):
    if random_state == "RandomState":
        random_state = np.random.RandomState(1)
    X, y = _cube(24, n=24, T=5)
    before = np.random.get_state()
    _reg(random_state=random_state, shuffle=True).fit(X, y).predict(X)
    _clf(random_state=random_state).fit(X, y > 0)
    after = np.random.get_state()
    assert before[0] == after[0]
    assert np.array_equal(before[1], after[1])
    assert before[2:] == after[2:]


_THREAD_SCRIPT = r"""
import hashlib, os, warnings
import numba
import numpy as np
import lstmforecast
from lstmforecast import LSTMRegressor, _kernels

warnings.simplefilter("ignore")
rng = np.random.default_rng(7)
X = rng.normal(size=(64, 50, 1))
y = X[:, :5, 0].sum(axis=1)
print("FILE", os.path.abspath(lstmforecast.__file__))
print("THREADS", numba.get_num_threads())
for dtype in ("float32", "float64"):
    est = LSTMRegressor(hidden_size=16, max_epochs=2, batch_size=32, dtype=dtype,
                        random_state=0).fit(X, y)
    pred = est.predict(X)
    work = 32 * 50 * est.n_params_
    print("WORK", dtype, work >= _kernels._PARALLEL_MIN_WORK, work)
    print("HASH", dtype, hashlib.sha256(est.params_.tobytes()).hexdigest(),
          hashlib.sha256(pred.tobytes()).hexdigest())
"""


def _run_with_threads(n_threads):
    env = os.environ.copy()
    env["NUMBA_NUM_THREADS"] = str(n_threads)
    env["PYTHONPATH"] = os.pathsep.join(
        [REPO_ROOT] + ([env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
    proc = subprocess.run([sys.executable, "-c", _THREAD_SCRIPT], env=env,
                          cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = {}
    for line in proc.stdout.splitlines():
        key, _, rest = line.partition(" ")
        lines.setdefault(key, []).append(rest)
    return lines


def test_bitwise_identical_for_1_and_2_threads():
    one = _run_with_threads(1)
    two = _run_with_threads(2)
    pkg = os.path.join(REPO_ROOT, "lstmforecast", "__init__.py")
    assert one["FILE"] == two["FILE"] == [pkg]
    assert one["THREADS"] == ["1"] and two["THREADS"] == ["2"]
    # Enough work per batch that the kernels take their parallel path.
    assert all(w.split()[1] == "True" for w in one["WORK"]), one["WORK"]
    assert len(one["HASH"]) == 2
    assert one["HASH"] == two["HASH"]


# ------------------------------------------------------- 7. training behaviour
@pytest.mark.parametrize("early_stopping", [False, True])
def test_loss_curve_length_and_convergence_warning(early_stopping):
    X, y = _cube(25, n=30, T=5)
    est = _reg(max_epochs=4, early_stopping=early_stopping, n_iter_no_change=50)
    with pytest.warns(ConvergenceWarning, match="maximum epochs"):
        est.fit(X, y)
    assert est.n_iter_ == 4
    assert len(est.loss_curve_) == est.n_iter_
    assert all(np.isfinite(est.loss_curve_))
    if early_stopping:
        assert len(est.validation_scores_) == 4
    else:
        assert est.validation_scores_ is None


def test_stopping_on_no_improvement_does_not_warn():
    X, y = _cube(26, n=30, T=5)
    est = _reg(max_epochs=50, tol=1e9, n_iter_no_change=1)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.fit(X, y)
    # Epoch 1 sets the best loss; epochs 2 and 3 do not improve by tol.
    assert est.n_iter_ == 3
    assert len(est.loss_curve_) == 3


@pytest.mark.parametrize("n, fraction", [(20, 0.2), (23, 0.1), (10, 0.25)])
def test_early_stopping_validates_on_the_last_sequences(monkeypatch, n, fraction):
    rng = np.random.default_rng(27)
    X = rng.normal(size=(n, 4, 2))
    X[:, 0, 1] = np.arange(n)                  # each sequence carries its index
    y = X[:, -1, 0].copy()
    n_val = math.ceil(fraction * n)
    est = _reg(early_stopping=True, validation_fraction=fraction, max_epochs=3,
               n_iter_no_change=50, batch_size=4)
    seen_val = []
    seen_train = set()
    original_score = type(est)._score_arrays
    original_train = _base.train_batches

    def score_arrays(X_val, lengths, Y, M):
        seen_val.append(X_val[:, 0, 1].copy())
        return original_score(est, X_val, lengths, Y, M)

    def train_batches(*args):
        seen_train.update(int(i) for i in args[7])   # ``order``
        return original_train(*args)

    monkeypatch.setattr(est, "_score_arrays", score_arrays)
    monkeypatch.setattr(_base, "train_batches", train_batches)
    est.fit(X, y)
    assert len(seen_val) == 3
    for ids in seen_val:
        assert ids.tolist() == list(range(n - n_val, n))
    assert seen_train == set(range(n - n_val))
    assert est.t_ == 3 * (n - n_val)


@pytest.mark.parametrize("batch_size, kernel", [(1, "train_sequences"),
                                                (5, "train_batches")])
def test_batch_size_one_trains_on_the_one_sequence_kernels(monkeypatch, batch_size,
                                                           kernel):
    X, y = _cube(30, n=10, T=5)
    used = []
    for name in ("train_batches", "train_sequences"):
        def spy(*args, _original=getattr(_base, name), _name=name):
            used.append(_name)
            return _original(*args)
        monkeypatch.setattr(_base, name, spy)
    est = _reg(batch_size=batch_size, max_epochs=2, optimizer="adam")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        est.fit(X, y)
    assert used and set(used) == {kernel}
    assert len(est.loss_curve_) == 2 and np.all(np.isfinite(est.loss_curve_))
    assert est.t_ == 2 * 10


def test_early_stopping_restores_best_weights():
    # The validation sequences (the last 20%) have the opposite target, so the
    # better the fit to the training part, the worse the validation score.
    rng = np.random.default_rng(28)
    X = rng.normal(size=(50, 4, 1))
    y = X[:, -1, 0].copy()
    y[40:] *= -1.0
    est = _reg(early_stopping=True, validation_fraction=0.2, learning_rate=0.02,
               n_iter_no_change=3, max_epochs=40)
    est.fit(X, y)
    scores = est.validation_scores_
    assert len(scores) == est.n_iter_ == len(est.loss_curve_)
    assert est.n_iter_ < 40                           # stopped early
    assert est.best_validation_score_ == max(scores)
    best = int(np.argmax(scores))
    assert best < len(scores) - 1                     # the last epoch was not best
    assert scores[-1] < max(scores) - 1e-3
    final = est.score(X[40:], y[40:])
    assert final == pytest.approx(est.best_validation_score_, rel=1e-5, abs=1e-6)


def test_partial_fit_is_one_epoch_and_keeps_optimizer_state():
    X, y = _cube(29, n=40, T=5)
    est = _reg(batch_size=16)                          # 3 batches per epoch
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)
        est.partial_fit(X, y)
        assert est.n_iter_ == 1 and len(est.loss_curve_) == 1
        assert est._opt_step[0] == 3
        moments = est._opt_state.copy()
        assert np.any(moments != 0)
        est.partial_fit(X, y)
    assert est.n_iter_ == 2 and est._opt_step[0] == 6
    assert est.t_ == 80
    # Two partial fits are exactly one fit of two epochs: same weights, same
    # optimizer state, so nothing was reset in between.
    full = _reg(batch_size=16, max_epochs=2).fit(X, y)
    assert np.array_equal(est.params_, full.params_)
    assert np.array_equal(est._opt_state, full._opt_state)
    assert est.loss_curve_ == full.loss_curve_


def test_partial_fit_unavailable_with_early_stopping():
    for cls in (LSTMRegressor, LSTMClassifier):
        assert hasattr(cls(), "partial_fit")
        assert not hasattr(cls(early_stopping=True), "partial_fit")
        with pytest.raises(AttributeError):
            cls(early_stopping=True).partial_fit


def test_warm_start_continues_training():
    X, y = _cube(30, n=30, T=5)
    est = _reg(max_epochs=3, warm_start=True).fit(X, y)
    first = est.params_.copy()
    est.fit(X, y)
    assert est.n_iter_ == 6 and len(est.loss_curve_) == 6
    assert not np.array_equal(est.params_, first)
    # 3 + 3 warm epochs are 6 epochs in one go.
    six = _reg(max_epochs=6).fit(X, y)
    assert np.array_equal(est.params_, six.params_)
    # Without warm_start a second fit starts again from scratch.
    cold = _reg(max_epochs=3).fit(X, y)
    cold.fit(X, y)
    assert cold.n_iter_ == 3
    assert np.array_equal(cold.params_, first)


def test_classifier_partial_fit_with_classes():
    rng = np.random.default_rng(31)
    X = rng.normal(size=(30, 5, 1))
    y_ab = np.where(X[:, 0, 0] > 0, "a", "b")
    clf = _clf()
    clf.partial_fit(X, y_ab, classes=["a", "b", "c"])
    assert list(clf.classes_) == ["a", "b", "c"]
    assert clf.predict_proba(X).shape == (30, 3)
    y_abc = y_ab.copy()
    y_abc[:5] = "c"
    clf.partial_fit(X, y_abc)
    assert clf.n_iter_ == 2
    assert set(clf.predict(X)) <= {"a", "b", "c"}
    # Without classes= the first call fixes the classes.
    other = _clf().partial_fit(X, y_ab)
    assert list(other.classes_) == ["a", "b"]
    with pytest.raises(ValueError, match="not seen"):
        other.partial_fit(X, y_abc)


def test_learns_a_memory_task():
    # The target is the first value of a 5-step sequence: the network must carry
    # it to the last step.
    rng = np.random.default_rng(32)
    X = rng.normal(size=(256, 5))
    X_test = rng.normal(size=(100, 5))
    est = LSTMRegressor(hidden_size=8, learning_rate=0.02, max_epochs=30,
                        batch_size=16, random_state=0).fit(X, X[:, 0])
    assert est.score(X, X[:, 0]) > 0.9
    assert est.score(X_test, X_test[:, 0]) > 0.9
    # An untrained network does not do it (the check can fail).
    untrained = LSTMRegressor(hidden_size=8, max_epochs=1, learning_rate=1e-5,
                              random_state=0).fit(X, X[:, 0])
    assert untrained.score(X_test, X_test[:, 0]) < 0.5


@pytest.mark.parametrize("nesterov", [False, True])
def test_sgd_with_momentum_reduces_the_loss(nesterov):
    rng = np.random.default_rng(33)
    X = rng.normal(size=(128, 5))
    est = _reg(hidden_size=8, optimizer="sgd", learning_rate=0.1, momentum=0.9,
               nesterov=nesterov, max_epochs=10, batch_size=16).fit(X, X[:, 0])
    assert est.loss_curve_[-1] < 0.5 * est.loss_curve_[0]
    other = _reg(hidden_size=8, optimizer="sgd", learning_rate=0.1, momentum=0.9,
                 nesterov=not nesterov, max_epochs=10, batch_size=16).fit(X, X[:, 0])
    assert not np.array_equal(est.params_, other.params_)


def test_clip_norm_rescues_a_diverging_run():
    rng = np.random.default_rng(34)
    X = rng.normal(size=(128, 5))
    y = 1e3 * X[:, 0]
    est = _reg(hidden_size=8, optimizer="sgd", learning_rate=50.0, max_epochs=5,
               batch_size=16)
    with pytest.raises(ValueError, match="epoch") as info:
        est.fit(X, y)
    assert "batch" in str(info.value)
    assert np.all(np.isfinite(est.params_))
    clipped = _reg(hidden_size=8, optimizer="sgd", learning_rate=50.0, max_epochs=5,
                   batch_size=16, clip_norm=1.0).fit(X, y)
    assert clipped.n_iter_ == 5
    assert np.all(np.isfinite(clipped.loss_curve_))
    assert np.all(np.isfinite(clipped.params_))
    assert np.all(np.isfinite(clipped.predict(X)))
    assert clipped.get_params()["clip_norm"] == 1.0


@pytest.mark.parametrize("loss", ["squared_error", "log_loss"])
def test_regressor_loss_sets_the_output_delta(loss):
    """One SGD step on one sequence moves the output bias by ``lr * (t - y)``
    under ``loss="log_loss"`` (binary cross-entropy on a logistic unit) and by
    ``lr * (t - y) * y * (1 - y)`` under squared error (the paper's eq. 19)."""
    X, _ = _cube(3, n=2)
    y = np.array([0.9, 0.05])
    est = _reg(output_activation="sigmoid", loss=loss, optimizer="sgd",
               batch_size=1, dtype="float64", learning_rate=1e-300)
    est.partial_fit(X[:1], y[:1])                   # builds; weights stay
    before = est.get_weights()["head.bias"][0]
    out = est.predict(X[1:])[0]
    est.set_params(learning_rate=0.5).partial_fit(X[1:], y[1:])
    step = est.get_weights()["head.bias"][0] - before
    delta = (y[1] - out) * (1.0 if loss == "log_loss" else out * (1.0 - out))
    assert_allclose(step, 0.5 * delta, rtol=1e-10)
    # the loss is part of the network: a warm start may not change it
    est.set_params(warm_start=True, max_epochs=1,
                   loss="squared_error" if loss == "log_loss" else "log_loss")
    with pytest.raises(ValueError, match="changed"):
        est.fit(X, y)


def test_classifier_sigmoid_units_with_log_loss():
    """``output_activation="sigmoid", loss="log_loss"``: one logistic unit per
    class trained on binary cross-entropy; probabilities are the units' outputs
    normalised, it learns a 3-class task, and it trains otherwise than its
    squared-error twin (``loss="auto"``)."""
    X, _ = _cube(7, n=90, T=4, D=2)
    y = np.digitize(X[:, -1, 0], [-0.5, 0.5])        # 3 classes
    est = _clf(output_activation="sigmoid", loss="log_loss", hidden_size=8,
               max_epochs=60, learning_rate=0.02).fit(X, y)
    assert est.n_outputs_ == 3 and not est._single_output
    proba = est.predict_proba(X)
    assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-6)
    assert est.score(X, y) > 0.85
    squared = clone(est).set_params(loss="auto").fit(X, y)
    assert squared._loss_kind != est._loss_kind
    assert not np.array_equal(squared.params_, est.params_)


# --------------------------------------------------------- 8. KeyboardInterrupt
@pytest.mark.parametrize("early_stopping", [False, True])
def test_keyboard_interrupt_returns_a_usable_estimator(monkeypatch, early_stopping):
    # As in test_early_stopping_restores_best_weights, the validation part (the
    # last 25%) has the opposite target, so the best epoch is not the last one.
    rng = np.random.default_rng(35)
    X = rng.normal(size=(80, 4, 1))
    y = X[:, -1, 0].copy()
    y[60:] *= -1.0
    est = _reg(max_epochs=20, early_stopping=early_stopping, n_iter_no_change=50,
               validation_fraction=0.25, learning_rate=0.02)
    original = type(est)._update_no_improvement

    def interrupt_at_epoch_3(*args):
        stop = original(est, *args)
        if est.n_iter_ == 3:
            raise KeyboardInterrupt
        return stop

    monkeypatch.setattr(est, "_update_no_improvement", interrupt_at_epoch_3)
    with pytest.warns(UserWarning, match="interrupted") as record:
        returned = est.fit(X, y)
    assert returned is est
    assert not any(issubclass(w.category, ConvergenceWarning) for w in record)
    assert est.n_iter_ == 3 and len(est.loss_curve_) == 3
    pred = est.predict(X)
    assert pred.shape == (80,)
    assert np.all(np.isfinite(pred))
    if early_stopping:
        scores = est.validation_scores_
        assert len(scores) == 3
        assert scores[-1] < max(scores) - 1e-3       # the best weights are older
        assert est.score(X[60:], y[60:]) == pytest.approx(
            est.best_validation_score_, rel=1e-5, abs=1e-6)


# --------------------------------------------------------------- 9. verbosity
def test_verbose_0_prints_nothing(capsys):
    X, y = _cube(36, n=40, T=5)
    _reg(verbose=0, max_epochs=3, early_stopping=True).fit(X, y)
    out, err = capsys.readouterr()
    assert out == "" and err == ""


def test_verbose_1_prints_one_line_per_epoch_to_stderr(capsys):
    X, y = _cube(37, n=40, T=5)
    est = _reg(verbose=1, max_epochs=3, batch_size=8).fit(X, y)
    out, err = capsys.readouterr()
    assert out == ""
    lines = err.rstrip("\n").split("\n")
    assert len(lines) == est.n_iter_ == 3
    for epoch, line in enumerate(lines, start=1):
        assert f"Epoch {epoch}" in line


# ------------------------------------------------------------- 10. integration
def test_pipeline_with_scaler():
    X, y = _table(38, n=60, T=6)
    pipe = make_pipeline(StandardScaler(), _reg(max_epochs=3)).fit(X, y)
    pred = pipe.predict(X)
    assert pred.shape == (60,)
    assert np.isfinite(pipe.score(X, y))


def test_grid_search_with_time_series_split_in_parallel():
    X, y = _table(39, n=60, T=5)
    search = GridSearchCV(_reg(max_epochs=2), {"hidden_size": [4, 6]},
                          cv=TimeSeriesSplit(3), n_jobs=2)
    search.fit(X, y)
    assert search.best_params_["hidden_size"] in (4, 6)
    scores = search.cv_results_["mean_test_score"]
    assert scores.shape == (2,) and np.all(np.isfinite(scores))
    assert search.best_estimator_.hidden_size == search.best_params_["hidden_size"]
    assert search.predict(X).shape == (60,)


def test_cross_val_score_with_time_series_split():
    X, y = _cube(40, n=48, T=5)
    scores = cross_val_score(_reg(), X, y, cv=TimeSeriesSplit(3))
    assert scores.shape == (3,)
    assert np.all(np.isfinite(scores))


def test_clone():
    X, y = _cube(41, n=20, T=5)
    est = _reg(hidden_size=6, cell="lstm1997", block_size=3, clip_norm=2.0).fit(X, y)
    copy = clone(est)
    assert copy.get_params() == est.get_params()
    assert not hasattr(copy, "params_")
    copy.fit(X, y)
    assert np.array_equal(copy.params_, est.params_)


@pytest.mark.parametrize("cls", [LSTMRegressor, LSTMClassifier])
def test_pickle_round_trip(cls):
    X, y = _cube(42, n=20, T=5)
    if cls is LSTMClassifier:
        y = y > 0
    est = cls(hidden_size=4, max_epochs=2, random_state=0).fit(X, y)
    restored = pickle.loads(pickle.dumps(est))
    assert np.array_equal(restored.predict(X), est.predict(X))
    assert np.array_equal(restored.params_, est.params_)
    if cls is LSTMClassifier:
        assert np.array_equal(restored.predict_proba(X), est.predict_proba(X))


def test_classifier_pipeline_with_string_labels():
    rng = np.random.default_rng(43)
    X = rng.normal(size=(60, 6))
    y = np.where(X[:, -1] < -0.4, "a", np.where(X[:, -1] < 0.4, "b", "c"))
    pipe = make_pipeline(StandardScaler(),
                         _clf(max_epochs=20, learning_rate=0.02)).fit(X, y)
    assert list(pipe.classes_) == ["a", "b", "c"]
    proba = pipe.predict_proba(X)
    assert proba.shape == (60, 3)
    assert np.all(proba >= 0)
    assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    pred = pipe.predict(X)
    assert pred.dtype.kind == "U"
    assert set(pred) <= {"a", "b", "c"}
    assert np.array_equal(pred, pipe.classes_[np.argmax(proba, axis=1)])
    assert pipe.score(X, y) > 0.5


# ---------------------------------------------- the fitted network is fixed
def test_set_params_after_fit_does_not_change_predictions():
    X, y = _cube(44, n=20, T=5)
    est = _reg().fit(X, y)
    pred = est.predict(X)
    est.set_params(hidden_size=64, dtype="float64", cell="lstm1997")
    assert np.array_equal(est.predict(X), pred)
    assert est.get_weights()["weight_hh_l0"].shape == (16, 4)


def test_failed_refit_leaves_the_fitted_model_as_it_was():
    X, y = _cube(46, n=20, T=5)
    est = _reg().fit(X, y)
    pred = est.predict(X)
    X3 = np.concatenate([X, X[:, :, :1]], axis=2)
    bad_y = y.copy()
    bad_y[0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        est.fit(X3, bad_y)
    assert est.input_size_ == X.shape[2]
    assert np.array_equal(est.predict(X), pred)


@pytest.mark.parametrize("change", [dict(hidden_size=3), dict(hidden_size=16),
                                   dict(cell="lstm1997", block_size=2),
                                   dict(dtype="float64"), dict(output="sequence")])
def test_warm_start_with_another_network_raises(change):
    X, y = _cube(45, n=20, T=5)
    est = _reg(warm_start=True).fit(X, y)
    est.set_params(**change)
    with pytest.raises(ValueError, match="changed"):
        est.fit(X, y)


@pytest.mark.parametrize("kind", ["classifier", "sequence_regressor"])
def test_predictions_do_not_depend_on_the_order_of_the_sequences(kind):
    """Bit for bit: 45 ragged float32 sequences, listed in 10 orders. Run in the
    caller's order, every one of 20 permutations changed some output in the last
    bits (a sequence's lane in its chunk picks the BLAS kernel that sums for it);
    scikit-learn's check_methods_sample_order_invariance failed on that at random."""
    rng = np.random.default_rng(0)
    X = [rng.normal(size=(rng.integers(3, 9), 2)).astype(np.float32)
         for _ in range(45)]
    if kind == "classifier":
        model = LSTMClassifier(hidden_size=8, max_epochs=3, random_state=0)
        model.fit(X, rng.integers(0, 3, 45))
        predict = model.predict_proba
    else:
        model = LSTMRegressor(hidden_size=8, output="sequence", max_epochs=3,
                              random_state=0)
        model.fit(X, [x[:, :1] * 0.5 for x in X])
        predict = model.predict
    reference = predict(X)
    for seed in range(10):
        idx = np.random.default_rng(seed).permutation(45)
        got = predict([X[i] for i in idx])
        for i, j in enumerate(idx):
            assert np.array_equal(np.asarray(got[i]), np.asarray(reference[j]))
