"""``benchmarks/exp4_hold.py``: Exp. 4 with the cells' bias channels held."""

import importlib.util
import os
import sys
from dataclasses import replace

import numpy as np
import pytest

_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


@pytest.fixture(scope="module")
def hold():
    spec = importlib.util.spec_from_file_location(
        "exp4_hold", os.path.join(_DIR, "exp4_hold.py"))
    module = importlib.util.module_from_spec(spec)
    had = {name: name in sys.modules for name in ("paper_benchmark", "exp4_probe")}
    path = list(sys.path)
    spec.loader.exec_module(module)
    yield module
    sys.path[:] = path
    for name, was_there in had.items():
        if not was_there:
            sys.modules.pop(name, None)


def _weights(rng, n_units=8):
    return {"bias_ih_l0": rng.normal(size=n_units),
            "weight_hh_l0": rng.normal(size=(n_units, n_units)),
            "weight_ih_l0": rng.normal(size=(n_units, 2))}


@pytest.mark.parametrize("which", ["none", "bias", "recurrent", "both"])
def test_hold_weights_puts_back_only_the_cells_rows_it_names(hold, which):
    rng = np.random.default_rng(0)
    start, moved = _weights(rng), _weights(rng)
    before = {key: value.copy() for key, value in moved.items()}
    out = hold.hold_weights(moved, start, which, n_cells=4)
    bias_held = which in ("bias", "both")
    recurrent_held = which in ("recurrent", "both")
    np.testing.assert_array_equal(
        out["bias_ih_l0"][:4], (start if bias_held else before)["bias_ih_l0"][:4])
    np.testing.assert_array_equal(
        out["weight_hh_l0"][:4],
        (start if recurrent_held else before)["weight_hh_l0"][:4])
    # the gates' rows and the input weights are never touched
    np.testing.assert_array_equal(out["bias_ih_l0"][4:], before["bias_ih_l0"][4:])
    np.testing.assert_array_equal(out["weight_hh_l0"][4:], before["weight_hh_l0"][4:])
    np.testing.assert_array_equal(out["weight_ih_l0"], before["weight_ih_l0"])


def test_holding_nothing_is_the_trial(hold):
    paper = hold.load_paper()
    spec = paper._specs(True)[21]
    spec = replace(spec, kwargs={**spec.kwargs, "T": 30}, budget=3000)
    trial = paper._trial_online(spec, "paper", 1, float("inf"))
    out = hold.held_trial(21, seed=1, hold="none", T=30, until=3000)
    assert out["sequences"] == trial["sequences"] == 3008
    assert out["wrong"] == trial["wrong"] and out["success"] == trial["success"]
    assert out["held_drift"] > 0  # nothing held: the cells' biases moved


def test_held_weights_stay_and_release_frees_them(hold):
    held = hold.held_trial(21, seed=1, hold="both", T=30, until=1000)
    assert held["held_drift"] == 0.0 and held["search_end"] is None
    # this seed's search ends within 8,008 sequences at T = 11 and the rate 1.0
    lines = []
    released = hold.held_trial(21, seed=2, hold="both", T=11, lr=1.0, until=8008,
                               release=True, every=4000, emit=lines.append)
    assert released["search_end"] is not None and released["held_drift"] > 0
    assert len(lines) == 2 and '"cell_w_value"' in lines[0]


def test_bad_arguments(hold):
    with pytest.raises(ValueError, match="hold must be one of"):
        hold.held_trial(21, hold="gates")
    with pytest.raises(ValueError, match="not an Exp. 4 row"):
        hold.held_trial(0)


def test_stop_at_search_end(hold):
    # seed 1 at T = 30 first has fewer than half wrong at 20,008
    out = hold.held_trial(21, seed=1, hold="none", T=30, until=30000,
                          stop_at_search_end=True)
    assert out["search_end"] == out["sequences"] == 20008
    assert not out["success"]
