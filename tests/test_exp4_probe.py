"""``benchmarks/exp4_probe.py``: its NumPy forward, target bands and replay."""

import copy
import importlib.util
import json
import os
import sys
import warnings

import numpy as np
import pytest

_DIR = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks")


@pytest.fixture(scope="module")
def probe():
    spec = importlib.util.spec_from_file_location(
        "exp4_probe", os.path.join(_DIR, "exp4_probe.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    had_paper = "paper_benchmark" in sys.modules
    yield module
    if not had_paper:
        sys.modules.pop("paper_benchmark", None)


def _fitted(probe, row, T=20, seed=3):
    from lstmforecast import tasks

    paper = probe.load_paper()
    spec = paper._specs(True)[row]
    model = paper._estimator(spec, "paper", seed)
    data = tasks.adding(16, np.random.default_rng(seed), T=T)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.partial_fit(data.X, data.y)
    return model, data


def test_numpy_forward_matches_predict(probe):
    model, data = _fitted(probe, 21)
    weights = model.get_weights(layout="native")
    X = data.X[:6]
    ends, out, gate_marked, gate_other = probe.forward_1997(weights, X, 2)
    np.testing.assert_allclose(out, np.asarray(model.predict(X)).reshape(-1),
                               rtol=0, atol=1e-12)
    assert ends.shape == (6, 4) and gate_marked.shape == gate_other.shape == (6, 2)
    # each gate is a logistic: strictly between 0 and 1 wherever it was seen
    assert np.all((gate_other > 0) & (gate_other < 1))
    # the wrong block size does not fit the weights
    with pytest.raises(ValueError, match="blocks of 1"):
        probe.forward_1997(weights, X, 1)


def test_band_summary_counts_wrong_and_bias_per_band(probe):
    y = np.array([0.05, 0.5, 0.5, 0.95])
    pred = np.array([0.1, 0.52, 0.5, 0.9])
    ok = np.array([False, True, True, False])
    bands = probe.band_summary(y, pred, ok)
    assert bands["0.0-0.1"] == "1/1 +0.050"
    assert bands["0.3-0.7"] == "0/2 +0.010"
    assert bands["0.9-1.0"] == "1/1 -0.050"
    assert bands["0.1-0.2"] == "0/0 +0.000"
    assert len(bands) == len(probe.BAND_EDGES) - 1


def test_replay_reports_the_window_by_band(probe):
    lines = []
    seen = probe.replay(21, 0, every=1000, until=3008, weights=True,
                        emit=lines.append)
    assert seen == 3008
    # nothing is learned in 3008 sequences: the search has not ended
    assert json.loads(lines.pop()) == {"T": 100, "lr": 0.5, "seed": 0,
                                       "search_end": None, "block": None,
                                       "seen": 3008}
    reports = [json.loads(line) for line in lines]
    assert [r["seen"] for r in reports] == [1008, 2008, 3008]
    for r in reports:
        counts = [v.split()[0].split("/") for k, v in r.items() if "-" in k
                  and k[0].isdigit()]
        assert sum(int(n) for _, n in counts) == min(2000, r["seen"] - 8)
        assert sum(int(w) for w, _ in counts) == r["wrong"]
        assert r["gate_bias"][1] == pytest.approx(-6.0, abs=0.05)
        assert len(r["cell_w_value"]) == len(r["out_w"]) == 4


def test_replay_says_where_the_search_ended(probe):
    # at T = 20 the first block learns the markers within about 20,000 sequences
    lines = []
    seen = probe.replay(21, 0, every=10**9, emit=lines.append, T=20,
                        stop_below=300)
    summary = json.loads(lines[-1])
    last = json.loads(lines[-2])
    assert summary["T"] == 20 and summary["seen"] == seen == last["seen"]
    assert summary["block"] == 1
    assert 2008 < summary["search_end"] < seen < 200_000
    assert last["wrong"] < 300
    # the run ended at the first window below 300 wrong: one chunk before, it was not
    earlier = []
    probe.replay(21, 0, every=500, until=seen - 500, emit=earlier.append, T=20)
    assert json.loads(earlier[-2])["wrong"] >= 300


def test_replay_takes_the_rate(probe):
    runs = {}
    for lr in (0.25, 0.5):
        lines = []
        probe.replay(21, 0, every=1008, until=1008, emit=lines.append, T=20, lr=lr)
        assert json.loads(lines[-1])["lr"] == lr
        runs[lr] = json.loads(lines[-2])["mean_E"]
    # the same sequences, judged by weights trained at another rate
    assert runs[0.25] != runs[0.5]
    with pytest.raises(ValueError, match="T must be"):
        probe.replay(21, 0, every=10**9, until=1008, T=5)


def test_replay_rejects_rows_it_cannot_follow(probe):
    paper = probe.load_paper()
    full = paper._specs(True)
    reber = next(i for i, s in enumerate(full) if s.task == "reber")
    with pytest.raises(ValueError, match="not an Exp. 4 / 5 row"):
        probe.replay(reber, 0, every=1000, until=10)
    linear = next(i for i, s in enumerate(full) if s.exp == "4"
                  and s.net.get("output_activation") == "identity")
    with pytest.raises(ValueError, match="logistic output"):
        probe.replay(linear, 0, every=1000, until=10, weights=True)


def test_step_spread_is_the_mean_and_spread_of_one_sequence_updates(probe):
    model, data = _fitted(probe, 21)
    before = model.get_weights(layout="native")
    X, y = data.X, np.asarray(data.y)
    # one sequence twice: no spread, and the mean is that sequence's own update
    twice = probe.step_spread(model, [X[0], X[0]], y[[0, 0]])
    single = copy.deepcopy(model)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        single.partial_fit(X[:1], y[:1])
    by_hand = (single.get_weights(layout="native")["weight_ih_l0"][:4, 0]
               - before["weight_ih_l0"][:4, 0])
    assert np.any(by_hand != 0)
    # (reported to 3 significant digits)
    np.testing.assert_allclose(twice["cell_step_mean"], by_hand, rtol=6e-3)
    assert twice["cell_step_sd"] == [0.0] * 4
    # two different sequences: the mean of their own updates, and a spread
    other = probe.step_spread(model, [X[1], X[1]], y[[1, 1]])["cell_step_mean"]
    pair = probe.step_spread(model, X[:2], y[:2])
    np.testing.assert_allclose(
        pair["cell_step_mean"],
        (np.array(twice["cell_step_mean"]) + np.array(other)) / 2, rtol=1.2e-2)
    np.testing.assert_allclose(
        pair["cell_step_sd"],
        np.abs(np.array(twice["cell_step_mean"]) - np.array(other)) / np.sqrt(2),
        rtol=1.2e-2)
    # the network it was given is left as it was
    after = model.get_weights(layout="native")
    for name in before:
        np.testing.assert_array_equal(before[name], after[name])


def test_replay_reports_the_step_spread_without_changing_the_trial(probe):
    plain, spread, reported = [], [], False
    probe.replay(21, 0, every=1000, until=2008, emit=plain.append, T=20)
    probe.replay(21, 0, every=1000, until=2008, emit=spread.append, T=20, spread=3)
    assert len(plain) == len(spread)
    for a, b in zip(plain, spread):
        a, b = json.loads(a), json.loads(b)
        if "cell_step_mean" in b:
            assert len(b.pop("cell_step_mean")) == len(b.pop("cell_step_sd")) == 4
            reported = True
        # the trial itself is the same with the spread measured beside it
        assert a == b
    assert reported


def test_every_must_be_positive(probe, capsys):
    with pytest.raises(SystemExit):
        probe.main(["--row", "21", "--every", "0"])
    assert "--every" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe.main(["--row", "21", "--lr", "nan"])
    assert "--lr" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        probe.main(["--row", "21", "--step-spread", "1"])
    assert "--step-spread" in capsys.readouterr().err


@pytest.mark.slow
def test_replay_stops_where_the_trial_stops(probe):
    paper = probe.load_paper()
    spec = paper._specs(True)[21]
    trial = paper._trial(spec, "paper", 0, 3600)
    assert trial["success"]
    assert probe.replay(21, 0, every=10**9, emit=lambda line: None) == trial["sequences"]
