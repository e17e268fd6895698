"""``lstmforecast.metrics`` against hand-computed values, and its input checks."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose
from sklearn.metrics import (
    mean_absolute_error,
    mean_absolute_percentage_error,
    mean_squared_error,
)

from lstmforecast import metrics

Y = np.array([2.0, 4.0, 5.0, 10.0])
F = np.array([1.0, 4.0, 7.0, 6.0])  # errors -1, 0, 2, -4


def test_mae_by_hand():
    assert metrics.mae(Y, F) == pytest.approx((1 + 0 + 2 + 4) / 4)


def test_rmse_by_hand():
    assert metrics.rmse(Y, F) == pytest.approx(np.sqrt((1 + 0 + 4 + 16) / 4))


def test_mape_by_hand_in_percent():
    expected = 100 * (1 / 2 + 0 / 4 + 2 / 5 + 4 / 10) / 4
    assert metrics.mape(Y, F) == pytest.approx(expected)
    assert metrics.mape(Y, F) == pytest.approx(
        100 * mean_absolute_percentage_error(Y, F))


def test_smape_by_hand_ranges_0_to_200():
    expected = 100 * np.mean([2 * 1 / 3, 0.0, 2 * 2 / 12, 2 * 4 / 16])
    assert metrics.smape(Y, F) == pytest.approx(expected)
    assert metrics.smape([1.0], [-1.0]) == pytest.approx(200.0)  # the maximum
    assert metrics.smape([0.0], [5.0]) == pytest.approx(200.0)
    assert metrics.smape([3.0, 0.0], [3.0, 0.0]) == 0.0  # 0/0 terms count as 0
    assert metrics.smape(Y, Y) == 0.0


def test_mase_first_difference_scale():
    train = np.array([1.0, 3.0, 2.0, 6.0])  # naive errors 2, 1, 4: mean 7/3
    assert metrics.mase(Y, F, train) == pytest.approx((7 / 4) / (7 / 3))


def test_mase_seasonal_period():
    train = np.array([1.0, 5.0, 2.0, 6.0, 3.0, 9.0])
    # m = 2: |2 - 1|, |6 - 5|, |3 - 2|, |9 - 6| -> mean 6 / 4
    assert metrics.mase(Y, F, train, m=2) == pytest.approx((7 / 4) / (6 / 4))
    # m = 1 on the same series: 4, 3, 4, 3, 6 -> mean 4
    assert metrics.mase(Y, F, train, m=1) == pytest.approx((7 / 4) / 4)


def test_mase_of_the_seasonal_naive_forecast_on_a_repeating_season_is_its_scale():
    rng = np.random.default_rng(0)
    y = rng.normal(size=40)
    train, test = y[:36], y[36:]
    naive = train[-4:]  # seasonal naive forecast for the next season, m = 4
    scale = np.mean(np.abs(train[4:] - train[:-4]))
    assert metrics.mase(test, naive, train, m=4) == pytest.approx(
        np.mean(np.abs(test - naive)) / scale)


def test_agreement_with_scikit_learn():
    rng = np.random.default_rng(1)
    a, b = rng.normal(size=(2, 30)) + 5
    assert metrics.mae(a, b) == pytest.approx(mean_absolute_error(a, b))
    assert metrics.rmse(a, b) == pytest.approx(np.sqrt(mean_squared_error(a, b)))


def test_multioutput():
    y = np.column_stack([Y, 2 * Y])
    f = np.column_stack([F, 2 * Y])  # second column perfect
    raw = metrics.mae(y, f, multioutput="raw_values")
    assert_allclose(raw, [7 / 4, 0.0])
    assert metrics.mae(y, f) == pytest.approx(7 / 8)
    assert_allclose(metrics.rmse(y, f, multioutput="raw_values"),
                    [np.sqrt(21 / 4), 0.0])
    train = np.column_stack([[1.0, 3.0, 2.0, 6.0], [0.0, 1.0, 2.0, 3.0]])
    assert_allclose(metrics.mase(y, f, train, multioutput="raw_values"),
                    [(7 / 4) / (7 / 3), 0.0])
    with pytest.raises(ValueError, match="multioutput"):
        metrics.mae(y, f, multioutput="variance_weighted")


def test_interval_coverage_and_width_by_hand():
    lower = np.array([1.0, 4.5, 4.0, 9.0])
    upper = np.array([3.0, 6.0, 5.0, 12.0])  # Y inside: yes, no, yes (edge), yes
    assert metrics.interval_coverage(Y, lower, upper) == pytest.approx(0.75)
    assert metrics.interval_width(lower, upper) == pytest.approx((2 + 1.5 + 1 + 3) / 4)
    raw = metrics.interval_coverage(np.column_stack([Y, Y]),
                                    np.column_stack([lower, lower - 10]),
                                    np.column_stack([upper, upper + 10]),
                                    multioutput="raw_values")
    assert_allclose(raw, [0.75, 1.0])


def test_infinite_interval_bounds():
    lower = np.full(4, -np.inf)
    upper = np.full(4, np.inf)
    assert metrics.interval_coverage(Y, lower, upper) == 1.0
    assert metrics.interval_width(lower, upper) == np.inf


def test_pandas_inputs_are_read_by_position():
    y = pd.Series(Y, index=[3, 2, 1, 0])
    f = pd.Series(F, index=[0, 1, 2, 3])
    assert metrics.mae(y, f) == pytest.approx(7 / 4)
    frame = pd.DataFrame({"a": Y, "b": Y})
    assert metrics.mae(frame, frame) == 0.0


def test_inputs_are_not_modified():
    y, f, train = Y.copy(), F.copy(), np.array([1.0, 3.0, 2.0, 6.0])
    for func in (metrics.mae, metrics.rmse, metrics.mape, metrics.smape):
        func(y, f)
    metrics.mase(y, f, train)
    metrics.interval_coverage(y, f - 1, f + 1)
    metrics.interval_width(f - 1, f + 1)
    assert_allclose(y, Y)
    assert_allclose(f, F)
    assert_allclose(train, [1.0, 3.0, 2.0, 6.0])


# name -> (call, message pattern)
BAD_INPUTS = {
    "shape mismatch": (lambda: metrics.mae([1.0, 2.0], [1.0]), "shapes differ"),
    "NaN in y_true": (lambda: metrics.rmse([1.0, np.nan], [1.0, 2.0]),
                      "y_true contains NaN"),
    "inf in y_pred": (lambda: metrics.mae([1.0, 2.0], [1.0, np.inf]),
                      "y_pred contains infinite"),
    "empty": (lambda: metrics.mae([], []), "empty"),
    "3-D": (lambda: metrics.mae(np.ones((2, 2, 2)), np.ones((2, 2, 2))),
            "dimensions"),
    "strings": (lambda: metrics.mae(["a", "b"], [1.0, 2.0]), "numeric"),
    "MAPE with a zero": (lambda: metrics.mape([0.0, 1.0], [1.0, 1.0]),
                         "y_true contains zeros"),
    "MASE constant training series": (
        lambda: metrics.mase([1.0], [2.0], [3.0, 3.0, 3.0]), "naive error"),
    "MASE m < 1": (lambda: metrics.mase([1.0], [2.0], [1.0, 2.0], m=0), "m "),
    "MASE training shorter than m": (
        lambda: metrics.mase([1.0], [2.0], [1.0, 2.0], m=4), "more than m=4"),
    "MASE training outputs differ": (
        lambda: metrics.mase([1.0], [2.0], np.ones((5, 2))), "outputs"),
    "lower above upper": (lambda: metrics.interval_width([2.0], [1.0]),
                          "lower exceeds upper"),
    "NaN bound": (lambda: metrics.interval_coverage([1.0], [np.nan], [2.0]),
                  "lower contains NaN"),
    "bounds shape mismatch": (
        lambda: metrics.interval_coverage([1.0, 2.0], [0.0], [3.0]),
        "shapes differ"),
}


def test_bad_input_matrix_is_complete():
    assert len(BAD_INPUTS) == 14


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_input_raises_value_error(name):
    call, message = BAD_INPUTS[name]
    with pytest.raises(ValueError, match=message):
        call()
