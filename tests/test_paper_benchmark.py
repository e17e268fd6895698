"""``benchmarks/paper.py``: its rows, trials and reports, on a tiny time budget."""

import csv
import importlib.util
import json
import os
import subprocess
import sys

import numpy as np
import pytest

_PATH = os.path.join(os.path.dirname(__file__), os.pardir, "benchmarks", "paper.py")


@pytest.fixture(scope="module")
def paper():
    spec = importlib.util.spec_from_file_location("paper_benchmark", _PATH)
    module = importlib.util.module_from_spec(spec)
    # dataclasses and the worker processes look the module up by name
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_quick_rows_and_recipes(paper):
    rows = [(s.exp, s.kwargs.get("T"), s.net.get("output_activation"), s.recipes)
            for s in paper._specs(False)]
    # Exps. 4 and 5 run with the paper's logistic output and with a linear one; the
    # linear rows are a reading of the paper's recipe, not a second modern run
    assert ("4", 100, None, ("paper", "modern")) in rows
    assert ("4", 100, "identity", ("paper",)) in rows
    assert ("5", 100, "identity", ("paper",)) in rows
    assert sorted({r[0] for r in rows}) == ["1", "2c", "3a", "3b", "3c", "4", "5",
                                            "6a", "6b"]
    full = paper._specs(True)
    assert [s.kwargs["T"] for s in full if s.exp == "4"
            and s.net.get("output_activation") == "identity"] == [100, 500, 1000]
    # Exps. 1 and 2c also with Table 10's squashing (Exp. 1 then updating after
    # every step); 2a/2b only in the full run
    # every possible next symbol as Exp. 1's target is a third reading
    table10 = [(s.exp, s.net.get("update"), s.targets, s.recipes)
               for s in paper._specs(False)
               if s.net.get("squashing") == "table10" and "loss" not in s.net
               and "recurrent_weights" not in s.net]
    assert table10 == [("1", "step", "next", ("paper",)),
                       ("1", "step", "possible", ("paper",)),
                       ("2c", None, "next", ("paper",))]
    assert len([s for s in full if s.net.get("squashing") == "table10"
                and "loss" not in s.net and "recurrent_weights" not in s.net
                and s.net.get("update") != "sequence"
                and s.target_values == (0.0, 1.0)]) == 19
    # Exp. 1 with every possible next symbol as target once more with targets 0.1
    # and 0.9, one row per rate and network of Table 1, in --full only
    soft = [s for s in full if s.target_values != (0.0, 1.0)
            and s.net["update"] == "step"]
    assert sorted((s.lr, s.net["hidden_size"]) for s in soft) == sorted(
        (s.lr, s.net["hidden_size"]) for s in full
        if s.exp == "1" and "squashing" not in s.net)
    assert all(s.exp == "1" and s.target_values == (0.1, 0.9)
               and s.targets == "possible" and s.net["squashing"] == "table10"
               and s.net["update"] == "step" and "loss" not in s.net
               and s.recipes == ("paper",) for s in soft)
    assert all(s.target_values == (0.0, 1.0) for s in paper._specs(False))
    # 2c's Table-10 rows (both losses) once more without recurrent weights; in the
    # quick run at q = p = 100
    no_recurrence = [(s.kwargs["q"], s.kwargs["p"], s.net.get("loss"), s.recipes)
                     for s in full
                     if s.exp == "2c" and s.net.get("recurrent_weights") is False]
    assert sorted(no_recurrence, key=str) == sorted(
        [(s.kwargs["q"], s.kwargs["p"], s.net.get("loss"), ("paper",)) for s in full
         if s.exp == "2c" and s.net.get("squashing") == "table10"
         and "recurrent_weights" not in s.net], key=str)
    assert len(no_recurrence) == 18
    # and the log-loss rows of Exps. 4 and 5 (T = 100 in the quick run)
    assert sorted((s.exp, s.kwargs["T"], s.beta, s.net.get("loss"), s.recipes)
                  for s in full if s.exp in ("4", "5")
                  and s.net.get("recurrent_weights") is False) == [
        ("4", T, 0.01, "log_loss", ("paper",)) for T in (100, 500, 1000)] + [
        ("5", 100, n_seq, "log_loss", ("paper",)) for n_seq in (13, 140)]
    assert [(s.exp, *s.kwargs.values(), s.net.get("loss"))
            for s in paper._specs(False)
            if s.net.get("recurrent_weights") is False] == [
        ("2c", 100, 100, None), ("4", 100, "log_loss"), ("5", 100, "log_loss"),
        ("2c", 100, 100, "log_loss")]
    for exp in ("2c", "4", "5"):
        spec = next(s for s in full
                    if s.exp == exp and s.net.get("recurrent_weights") is False)
        assert paper._estimator(spec, "paper", 0).recurrent_weights is False
        assert paper._weights(spec, "paper") == (6 * spec.kwargs["p"] + 28
                                                 if exp == "2c" else 29)
        setting = paper._summary(spec, "paper", [dict(
            success=False, sequences=8, wrong=1, n_test=2560, seconds=1.0)])["setting"]
        assert "no recurrent weights" in setting.split(", ")
    assert {s.targets for s in full if s.exp != "1"} == {"next"}
    # Exps. 4 and 5 (logistic output), 2c and Exp. 1 (Table 10 squashing; Exp. 1
    # with every possible next symbol as target) and 2a (g in [-1, 1]) also with
    # binary cross-entropy at the outputs; not 2b
    log_loss = [s for s in full if s.net.get("loss") == "log_loss"
                and not paper._no_recurrence(s) and s.check == "chunk"]
    assert sorted((s.exp, s.kwargs.get("T"), s.beta) for s in log_loss
                  if s.exp in ("4", "5")) == [("4", 100, 0.01), ("4", 500, 0.01),
                                        ("4", 1000, 0.01), ("5", 100, 13),
                                        ("5", 100, 140)]
    assert sorted((s.kwargs["q"], s.kwargs["p"]) for s in log_loss
                  if s.exp == "2c") == sorted(
        (s.kwargs["q"], s.kwargs["p"]) for s in full
        if s.exp == "2c" and "squashing" not in s.net)
    assert [(s.exp, s.kwargs, s.net["squashing"]) for s in log_loss
            if s.exp in ("2a", "2b")] == [("2a", dict(p=100), "exp2_centered")]
    assert sorted((s.lr, s.net["hidden_size"], s.net["update"], s.targets)
                  for s in log_loss if s.exp == "1") == sorted(
        (s.lr, s.net["hidden_size"], "step", "possible") for s in full
        if s.exp == "1" and "squashing" not in s.net)
    squashing = {"1": "table10", "2c": "table10", "2a": "exp2_centered"}
    assert all(s.recipes == ("paper",) and "output_activation" not in s.net
               and s.net.get("squashing") == squashing.get(s.exp)
               for s in log_loss)
    assert [(s.exp, s.kwargs.get("T")) for s in paper._specs(False)
            if s.net.get("loss") == "log_loss"
            and "recurrent_weights" not in s.net] == [("4", 100), ("5", 100),
                                                      ("2c", None)]
    spec = next(s for s in full if s.net.get("loss") == "log_loss")
    model = paper._estimator(spec, "paper", 0)
    assert (model.loss, model.output_activation) == ("log_loss", "sigmoid")
    assert paper._summary(spec, "paper", [dict(success=False, sequences=8, wrong=1,
                                               n_test=2560, seconds=1.0)])[
        "setting"] == "T=100, log loss"
    assert [(s.exp, s.net["squashing"]) for s in full if s.exp in ("2a", "2b")
            and "loss" not in s.net] == [
        ("2a", "exp2"), ("2b", "exp2"), ("2a", "exp2_centered"),
        ("2b", "exp2_centered")]


def test_full_has_every_lstm_row_of_tables_1_to_9(paper):
    """``--full`` runs each LSTM row of the paper's Tables 1-9 once in the paper's
    own reading (the other readings come on top)."""
    def key(spec):
        if spec.exp == "1":
            return ("1", spec.lr, spec.net["hidden_size"] // spec.net["block_size"],
                    spec.paper_after)
        if spec.exp == "5":
            return ("5", spec.kwargs["T"], spec.beta, spec.paper_after)
        return (spec.exp, *spec.kwargs.values(), spec.paper_after)

    own = sorted(key(s) for s in paper._specs(True)
                 if s.net.get("squashing") in (None, "exp2") and s.targets == "next"
                 and s.net.get("output_activation") is None and "loss" not in s.net
                 and s.check == "chunk" and s.check_set == "fixed")
    table_1 = [("1", 0.1, 4, "39,740"), ("1", 0.1, 3, "21,730"),
               ("1", 0.2, 3, "14,060"), ("1", 0.5, 4, "9,500"),
               ("1", 0.5, 3, "8,440")]
    table_2 = [("2a", 100, "5,040"), ("2b", 100, "5,680")]
    table_3 = [("2c", q, p, after) for q, p, after in (
        (50, 50, "30,000"), (100, 100, "31,000"), (200, 200, "33,000"),
        (500, 500, "38,000"), (1000, 1000, "49,000"), (1000, 500, "49,000"),
        (1000, 200, "75,000"), (1000, 100, "135,000"), (1000, 50, "203,000"))]
    tables_4_6 = [("3a", 100, 3, "27,380 / 39,850"), ("3a", 100, 1, "58,370 / 64,330"),
                  ("3a", 1000, 3, "446,850 / 452,460"),
                  ("3b", 100, 3, "41,740 / 43,250"), ("3b", 100, 1, "74,950 / 78,430"),
                  ("3b", 1000, 1, "481,060 / 485,080"),
                  ("3c", 100, 3, "269,650"), ("3c", 100, 1, "565,640")]
    tables_7_9 = [("4", 100, "74,000"), ("4", 500, "209,000"), ("4", 1000, "853,000"),
                  ("5", 100, 140, "482,000"), ("5", 100, 13, "1,273,000"),
                  ("6a", "31,390"), ("6b", "571,100")]
    assert own == sorted(table_1 + table_2 + table_3 + tables_4_6 + tables_7_9)
    n_seq = [paper._summary(s, "paper", [dict(success=False, sequences=1, wrong=0,
                                               n_test=2560, seconds=0.0)])["setting"]
             for s in paper._specs(True) if s.exp == "5"]
    assert n_seq == ["T=100, n_seq=140", "T=100, linear output, n_seq=140",
                     "T=100, n_seq=13", "T=100, log loss, n_seq=140",
                     "T=100, log loss, n_seq=13",
                     "T=100, log loss, no recurrent weights, n_seq=140",
                     "T=100, log loss, no recurrent weights, n_seq=13",
                     "T=100, judged on-line, n_seq=140",
                     "T=100, judged on-line, n_seq=13",
                     "T=100, log loss, judged on-line, n_seq=140",
                     "T=100, log loss, judged on-line, n_seq=13"]


def test_exp1_pairs_truncated_and_full_gradient_at_one_update_per_string(paper):
    """``--full`` runs Exp. 1 at the rate 0.5 (both networks, targets 0 / 1 and
    0.1 / 0.9) with one update per string, once with the paper's truncated
    gradient and once with the full one: the same network, trained two ways; and
    every row of Table 1 with targets 0.1 / 0.9 so at ten times its rate."""
    full = paper._specs(True)
    per_string = [s for s in full if s.net.get("update") == "sequence"
                  and s.lr == 0.5]
    assert sorted((s.net["hidden_size"], s.target_values,
                   s.net.get("gradient", "truncated")) for s in per_string) == sorted(
        (hidden, values, gradient) for hidden in (4, 6)
        for values in ((0.0, 1.0), (0.1, 0.9)) for gradient in ("truncated", "bptt"))
    assert all(s.exp == "1" and s.lr == 0.5 and s.targets == "possible"
               and s.net["squashing"] == "table10" and "loss" not in s.net
               and s.recipes == ("paper",) for s in per_string)
    for truncated in (s for s in per_string if "gradient" not in s.net):
        bptt = next(s for s in per_string if s.net == {**truncated.net,
                                                      "gradient": "bptt"}
                    and s.target_values == truncated.target_values)
        assert paper._weights(bptt, "paper") == paper._weights(truncated, "paper")
        setting = paper._summary(bptt, "paper", [dict(
            success=False, sequences=8, wrong=1, n_test=256, seconds=1.0)])["setting"]
        assert "full gradient" in setting.split(", ")
    # and each of Table 1's rows with targets 0.1 / 0.9, both ways, at ten times
    # its rate (about the paper's step per string), with the row's budget
    at_paper_step = [s for s in full if s.net.get("update") == "sequence"
                     and s.lr != 0.5]
    soft = [s for s in full if s.exp == "1" and s.net.get("update") == "step"
            and s.target_values == (0.1, 0.9)]
    assert sorted((s.lr, s.net["hidden_size"], s.budget,
                   s.net.get("gradient", "truncated")) for s in at_paper_step) == sorted(
        (10 * s.lr, s.net["hidden_size"], s.budget, gradient) for s in soft
        for gradient in ("truncated", "bptt"))
    assert all(s.target_values == (0.1, 0.9) and s.targets == "possible"
               and s.net["squashing"] == "table10" for s in at_paper_step)
    # the two trainings differ from the same initial weights and strings
    from lstmforecast import tasks

    train = tasks.reber_train_test(np.random.default_rng(0)).train
    spec = next(s for s in per_string if s.net["hidden_size"] == 6
                and "gradient" not in s.net and s.target_values == (0.0, 1.0))
    weights = []
    for net in (spec.net, {**spec.net, "gradient": "bptt"}):
        model = paper._estimator(paper.replace(spec, net=net), "paper", 0)
        assert (model.gradient, model.update) == (net.get("gradient", "truncated"),
                                                  "sequence")
        model.partial_fit(train.X[:8], train.allowed[:8])
        weights.append(model.get_weights("native")["weight_ih_l0"])
    assert weights[0].shape == weights[1].shape
    assert not np.allclose(weights[0], weights[1])


def test_exps_4_5_and_6_judged_on_line(paper):
    """``--full`` runs Exps. 4 and 5 at T = 100 (logistic output, both losses),
    6a and 6b once more with each training sequence judged by the weights about to train on
    it. Judging from the training pass's own losses (squared error) gives the
    judgments and weights that predicting each sequence before training on it
    gives, and a trial stops right after the sequence that meets the rule."""
    full = paper._specs(True)
    judged = [s for s in full if s.check == "sequence"]
    assert sorted((s.exp, s.beta, s.net.get("loss", "squared_error"))
                  for s in judged) == sorted(
        [(exp, beta, loss) for exp, beta in (("4", 0.01), ("5", 140), ("5", 13))
         for loss in ("squared_error", "log_loss")]
        + [("6a", 0.1, "squared_error"), ("6b", 0.1, "squared_error")])
    assert all(s.kwargs == (dict(T=100) if s.exp in ("4", "5") else {})
               and s.recipes == ("paper",) and "output_activation" not in s.net
               and not paper._no_recurrence(s) for s in judged)
    assert all(s.check == "chunk" for s in paper._specs(False))
    setting = paper._summary(judged[0], "paper", [dict(
        success=False, sequences=8, wrong=1, n_test=2560, seconds=1.0)])["setting"]
    assert "judged on-line" in setting.split(", ")

    spec = next(s for s in judged if s.exp == "5" and s.beta == 13
                and "loss" not in s.net)
    X, Y, _ = paper._make(spec, np.random.default_rng(0), 40)

    def run(beta, from_losses, n=40):
        model = paper._estimator(spec, "paper", 0)
        model.partial_fit(X[:1], Y[:1])
        window = paper._Window(20)
        trained, stopped = paper._train_judged(paper.replace(spec, beta=beta), model,
                                               X[:n], Y[:n], window, from_losses)
        return (trained, stopped, list(window.ok), np.array(window.e),
                model.get_weights("native"))

    # beta = 0: the rule never holds, every sequence is judged and trained on;
    # beta = 21: it holds as soon as the window is full, after the 20th sequence
    for beta, expected in ((0, (40, False)), (21, (20, True))):
        fast, slow = run(beta, True), run(beta, False)
        assert fast[:2] == slow[:2] == expected
        assert fast[2] == slow[2] and len(fast[2]) == 20
        np.testing.assert_allclose(fast[3], slow[3], rtol=1e-9, atol=0)
        for name in fast[4]:
            np.testing.assert_allclose(fast[4][name], slow[4][name], rtol=1e-12)
    # stopped after 20: the weights are those of training on the first 20 alone,
    # not on all 40 that the fast path's pass went through
    alone = run(0, True, n=20)[4]
    for name in fast[4]:
        np.testing.assert_array_equal(fast[4][name], alone[name])
    assert not np.allclose(run(0, True)[4]["weight_ih_l0"], alone["weight_ih_l0"])


def test_exp3_check_set_fixed_or_fresh(paper, monkeypatch):
    """``--full``'s rows of Exp. 3 check ST1 / ST2 on one set of 256 sequences
    drawn before training and run each again with a fresh set drawn at every
    check, ``--quick``'s with a fresh set only. Journals written before the field
    existed still resume the fixed rows."""
    full = paper._specs(True)
    fresh = [s for s in full if s.check_set == "fresh"]
    fixed_exp3 = [s for s in full if s.task in ("3a", "3b", "3c")
                  and s.check_set == "fixed"]
    assert len(fixed_exp3) == 8
    assert ([paper.replace(s, check_set="fixed", recipes=("paper",)) for s in fresh]
            == [paper.replace(s, recipes=("paper",)) for s in fixed_exp3])
    quick_exp3 = [s for s in paper._specs(False) if s.task in ("3a", "3b", "3c")]
    assert [s.task for s in quick_exp3] == ["3a", "3b", "3c"]
    assert all(s.check_set == "fresh" and s.recipes == ("paper", "modern")
               for s in quick_exp3)
    assert all(s.check_set == "fixed" for s in paper._specs(False)
               if s.task not in ("3a", "3b", "3c"))
    assert "check_set" not in paper._trial_key(fixed_exp3[0], "paper", 0, 60.0)
    assert (paper._trial_key(fresh[0], "paper", 0, 60.0)
            != paper._trial_key(fixed_exp3[0], "paper", 0, 60.0))
    setting = paper._summary(fresh[0], "paper", [dict(
        success=False, sequences=8, wrong=1, n_test=2560, seconds=1.0)])["setting"]
    assert setting.endswith(", a fresh check set at every check")

    seen = []

    def st_exp3(spec, model, X, Y, clean):
        seen.append(np.concatenate([np.ravel(x) for x in X]))
        return False

    monkeypatch.setattr(paper, "_st_exp3", st_exp3)
    spec = next(s for s in fixed_exp3 if s.task == "3b" and s.kwargs["T"] == 100)
    for check_set in ("fixed", "fresh"):
        seen.clear()
        out = paper._trial_online(paper.replace(spec, check_set=check_set,
                                                budget=8 + 3 * paper.CHUNK),
                                  "paper", 0, float("inf"))
        assert out["sequences"] == 8 + 3 * paper.CHUNK and len(seen) == 3
        same = [np.array_equal(seen[0], other) for other in seen[1:]]
        assert same == ([True, True] if check_set == "fixed" else [False, False])


def test_window_rules(paper):
    """The window of judged sequences counts the wrong ones and sums E as it
    slides, and each stopping rule reads it only once it is full."""
    spec = paper._specs(True)[0]
    window = paper._Window(3)
    for ok, e in ((False, 1.0), (True, 0.5), (True, 0.25)):
        assert not window.rule_holds(paper.replace(spec, stop="nseq", beta=5))
        window.push(ok, e)
    assert (window.n_wrong, window.e_sum) == (1, 1.75)
    assert window.rule_holds(paper.replace(spec, stop="nseq", beta=2))
    assert not window.rule_holds(paper.replace(spec, stop="nseq", beta=1))
    assert not window.rule_holds(paper.replace(spec, stop="successive"))
    window.push(True, 0.25)  # the wrong one slides out
    assert (window.n_wrong, window.e_sum) == (0, 1.0)
    assert window.rule_holds(paper.replace(spec, stop="successive"))
    assert window.rule_holds(paper.replace(spec, stop="st3", beta=0.34))
    assert not window.rule_holds(paper.replace(spec, stop="st3", beta=0.33))


@pytest.mark.parametrize("targets, values", [("next", (0.0, 1.0)),
                                             ("possible", (0.0, 1.0)),
                                             ("possible", (0.1, 0.9))])
def test_exp1_trains_on_its_targets_reading(paper, monkeypatch, targets, values):
    """Exp. 1 trains on the next symbol (one-hot), or on every symbol the grammar
    allows next (two symbols after each fork, as in the success criterion), with
    the row's values for an absent and a present symbol."""
    if values == (0.0, 1.0):
        spec = next(s for s in paper._specs(False)
                    if s.exp == "1" and s.targets == targets)
    else:
        spec = next(s for s in paper._specs(True) if s.target_values == values)
    spec = paper.replace(spec, budget=256)
    trained = []
    build = paper._estimator

    def recording_estimator(spec, recipe, seed):
        model = build(spec, recipe, seed)
        partial_fit = model.partial_fit

        def recording_partial_fit(X, Y):
            trained.extend(np.asarray(y) for y in Y)
            return partial_fit(X, Y)

        model.partial_fit = recording_partial_fit
        return model

    monkeypatch.setattr(paper, "_estimator", recording_estimator)
    # (the warm-up's throwaway network is not the trial's)
    monkeypatch.setattr(paper, "_warm_up", lambda spec, recipe: None)
    out = paper._trial(spec, "paper", 0, 60)
    assert out["sequences"] == 256 and len(trained) == 256
    absent, present = values
    assert set(np.unique(np.concatenate(trained))) == {absent, present}
    per_step = np.concatenate([(y == present).sum(axis=1) for y in trained])
    if targets == "next":
        assert (per_step == 1).all()
    else:
        assert set(np.unique(per_step)) == {1, 2}
    setting = paper._summary(spec, "paper", [out])["setting"]
    assert (", targets: possible next symbols" in setting) == (targets == "possible")
    assert setting.endswith(" (0.1 / 0.9)") == (values == (0.1, 0.9))


def test_an_exp1_trial_out_of_time_trains_its_first_pass(paper, monkeypatch):
    """A trial whose seconds end before its first pass still trains that pass (it
    builds the network) and reports on it, instead of predicting with no network."""
    spec = next(s for s in paper._specs(False) if s.exp == "1")
    monkeypatch.setattr(paper, "_warm_up", lambda spec, recipe: None)
    out = paper._trial(spec, "paper", 0, 0.0)
    assert out["sequences"] == 256 and not out["success"]
    assert 0 <= out["wrong"] <= out["n_test"]


def test_exp2_network_is_built_with_its_initial_weights(paper):
    """The sequential construction starts the cell from its initial weights: the
    call that builds the network does not train (a plain first ``partial_fit``
    on one sequence moves weights far outside the initial [-0.2, 0.2])."""
    from lstmforecast import tasks

    spec = next(s for s in paper._specs(True) if s.exp == "2a")
    data = tasks.noise_free_long_lag(1, np.random.default_rng(0), p=100)
    built = paper._build_untrained(paper._estimator(spec, "paper", 0), data.X, data.Y)
    trained = paper._estimator(spec, "paper", 0).partial_fit(data.X, data.Y)
    assert built.learning_rate == spec.lr == 1.0
    names = ("weight_ih_l0", "head.weight", "head.weight_input")
    w_built = [built.get_weights(layout="native")[n] for n in names]
    w_trained = [trained.get_weights(layout="native")[n] for n in names]
    assert max(np.abs(w).max() for w in w_built) <= 0.2
    assert max(np.abs(w).max() for w in w_trained) > 1.0
    # the same initial draw: only training tells the two apart
    moved = np.concatenate([np.abs(a - b).ravel() for a, b in zip(w_trained, w_built)])
    assert moved.min() == 0.0 and moved.max() > 1.0


def test_exp2_cell_is_absent_while_its_input_weights_are_minus_1000(paper):
    """The sequential construction of Exps. 2a/2b: with its cell-input and
    input-gate weights at -1000 the cell outputs exactly 0, and training moves
    neither them nor the cell's output weights."""
    from lstmforecast import tasks

    spec = next(s for s in paper._specs(True) if s.exp == "2a")
    rng = np.random.default_rng(0)
    data = tasks.noise_free_long_lag(4, rng, p=10)
    model = paper._estimator(spec, "paper", 0).partial_fit(data.X, data.Y)
    assert model.n_params_ == 11 * 2 + 11 * 12          # Table 10's count at p=10
    weights = model.get_weights(layout="native")
    weights["weight_ih_l0"][:2] = -1000.0
    model.set_weights(weights, layout="native")
    no_cell = model.get_weights(layout="native")
    no_cell["head.weight"][...] = 0.0
    twin = paper._estimator(spec, "paper", 0).partial_fit(data.X, data.Y)
    twin.set_weights(no_cell, layout="native")
    assert np.array_equal(model.predict(data.X), twin.predict(data.X))
    more = tasks.noise_free_long_lag(20, rng, p=10)
    model.partial_fit(more.X, more.Y)
    after = model.get_weights(layout="native")
    assert np.array_equal(after["weight_ih_l0"][:2], weights["weight_ih_l0"][:2])
    assert np.array_equal(after["head.weight"], weights["head.weight"])
    assert not np.array_equal(after["head.weight_input"],
                              weights["head.weight_input"])


def test_2c_chunks_stay_within_their_byte_cap(paper, monkeypatch):
    """2c's long lags and large alphabets train and test in chunks of at most
    ``MAX_CHUNK_BYTES`` (q = p = 1000 would take 4 GB per chunk of 500); rows whose
    chunks fit keep ``CHUNK``. A trial with small chunks still tests on the
    paper's 2,000 sequences."""
    full = {(s.kwargs.get("q"), s.kwargs.get("p")): paper._chunk_size(s)
            for s in paper._specs(True) if s.exp == "2c"}
    assert full[(50, 50)] == full[(200, 200)] == full[(1000, 50)] == paper.CHUNK
    assert full[(1000, 1000)] * 1080 * 1004 * 8 <= paper.MAX_CHUNK_BYTES
    assert 8 <= full[(1000, 1000)] < full[(1000, 500)] < full[(1000, 100)] < 500
    assert paper._pieces(2000, 300) == [300] * 6 + [200]
    assert paper._pieces(2000, 500) == [500] * 4

    spec = next(s for s in paper._specs(False) if s.exp == "2c")
    monkeypatch.setattr(paper, "MAX_CHUNK_BYTES", 130 * 54 * 8 * 24)
    assert paper._chunk_size(spec) == 24
    made = []
    make = paper._make
    monkeypatch.setattr(paper, "_make",
                        lambda spec, rng, n: made.append(n) or make(spec, rng, n))
    monkeypatch.setattr(paper, "_warm_up", lambda spec, recipe: None)
    out = paper._trial(paper.replace(spec, budget=50), "paper", 0, 60.0)
    assert out["n_test"] == 2000 and out["sequences"] == 8 + 2 * 24
    assert max(made) == 24 and sum(made) == 8 + 2 * 24 + 2000


@pytest.mark.parametrize("exp", ["1", "4"])
def test_a_trials_seconds_start_after_its_warm_up(paper, monkeypatch, exp):
    """Compiling the kernels does not come out of a trial's time budget: with a
    warm-up that takes longer than the whole budget (a clock that jumps 100 s in
    it), the trial still trains to its sequence budget and reports no seconds."""
    spec = next(s for s in paper._specs(False) if s.exp == exp)
    spec = paper.replace(spec, budget=256 if exp == "1" else 508)
    clock = [1000.0]
    warm_up = paper._warm_up
    warmed = []

    def slow_warm_up(spec, recipe):
        warm_up(spec, recipe)
        warmed.append(recipe)
        clock[0] += 100.0

    monkeypatch.setattr(paper, "_warm_up", slow_warm_up)
    monkeypatch.setattr(paper.time, "perf_counter", lambda: clock[0])
    out = paper._trial(spec, "paper", 0, 50.0)
    assert warmed == ["paper"]
    assert out["sequences"] == spec.budget and out["seconds"] == 0.0


def test_a_run_writes_both_tables(tmp_path):
    # (a process of its own, as users run it: main() sets NUMBA_NUM_THREADS for
    # its forked workers, which Numba refuses in a process whose threads run)
    argv = ["--only", "4", "--recipes", "paper", "--seconds", "1", "--jobs", "1",
            "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, _PATH, *argv], capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "paper_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["setting"], r["recipe"]) for r in rows] == [
        ("T=100", "paper"), ("T=100, linear output", "paper"),
        ("T=100, log loss", "paper"), ("T=100, log loss, no recurrent weights",
                                       "paper")]
    # Table 10's 93; 29 without the recurrent weights
    assert [r["weights"] for r in rows] == ["93", "93", "93", "29"]
    for r in rows:
        assert r["paper_success_after"] == "74,000"
        assert r["trials"] == "1"
        assert r["successful"] == "0"        # not in 1 s
        assert int(r["max_seen"]) >= 8       # the first call builds the network
    assert rows[1]["network"].endswith("linear out")
    assert rows[2]["network"].endswith("log loss")
    assert rows[3]["network"].endswith("log loss, no recurrent weights")
    table = (tmp_path / "paper_results.md").read_text()
    assert "`python benchmarks/paper.py --only 4 --recipes paper --seconds 1" in table
    assert table.count("\n| 4 |") == 4
    assert table in proc.stdout

    # every trial is in the journal; --resume takes them and runs only the new seed
    journal = tmp_path / "paper_trials.jsonl"
    first = [json.loads(line) for line in journal.read_text().splitlines()]
    assert sorted(e["result"]["seed"] for e in first) == [0, 0, 0, 0]
    proc = subprocess.run([sys.executable, _PATH, *argv, "--trials", "2", "--resume"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "4 of 8 trials taken from" in proc.stdout
    assert proc.stdout.count(" seed 1: ") == 4 and " seed 0: " not in proc.stdout
    both = [json.loads(line) for line in journal.read_text().splitlines()]
    assert both[:4] == first and len(both) == 8
    with open(tmp_path / "paper_results.csv", newline="") as f:
        resumed = list(csv.DictReader(f))
    assert [r["trials"] for r in resumed] == ["2"] * 4
    # the first seed's trials count as before: the maximum seen includes them
    for before, after in zip(rows, resumed):
        assert int(after["max_seen"]) >= int(before["max_seen"])

    # --rows and --seeds: one row (the log-loss one, row 14 of --quick), seeds 1
    # and 2, seed 1 taken from the journal
    proc = subprocess.run([sys.executable, _PATH, *argv, "--rows", "14", "--seeds",
                           "1-2", "--resume"], capture_output=True, text=True,
                          timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "1 of 2 trials taken from" in proc.stdout
    assert proc.stdout.count(" seed 2: ") == 1 and " seed 1: " not in proc.stdout
    with open(tmp_path / "paper_results.csv", newline="") as f:
        selected = list(csv.DictReader(f))
    assert [(r["setting"], r["trials"]) for r in selected] == [("T=100, log loss",
                                                                "2")]
    third = [json.loads(line) for line in journal.read_text().splitlines()]
    assert third[:8] == both and [e["result"]["seed"] for e in third[8:]] == [2]


def test_numbers_of_rows_and_seeds(paper):
    assert paper._numbers("81-84,98") == [81, 82, 83, 84, 98]
    assert paper._numbers("3, 1,3,0-1") == [3, 1, 0]
    assert paper._numbers("7") == [7]
    for bad, part in (("x", "'x'"), ("", "''"), ("1,", "''"), ("3-1", "'3-1'"),
                      ("-2", "'-2'"), ("1-x", "'1-x'"), ("1.5", "'1.5'")):
        with pytest.raises(paper.argparse.ArgumentTypeError, match=f"^{part} is not"):
            paper._numbers(bad)


def test_jobs_cover_rows_recipes_and_seeds(paper):
    specs = paper._specs(True)
    rows = [(5, specs[5]), (47, specs[47])]
    assert specs[5].recipes == ("paper", "modern") and specs[47].recipes == ("paper",)
    jobs = paper._jobs(rows, ["paper", "modern"], [4, 2], 9.0)
    assert [(i, r, seed) for i, _, r, seed, _ in jobs] == [
        (5, "paper", 4), (5, "paper", 2), (5, "modern", 4), (5, "modern", 2),
        (47, "paper", 4), (47, "paper", 2)]
    assert all(spec is specs[i] and seconds == 9.0 for i, spec, _, _, seconds in jobs)
    # no seeds given: each row's own trial count, seeds 0 to trials - 1
    jobs = paper._jobs(rows, ["modern"], None, 1.0)
    assert [(i, seed) for i, _, _, seed, _ in jobs] == [(5, s) for s in
                                                       range(specs[5].trials)]


def test_list_prints_the_rows_and_rows_are_checked():
    proc = subprocess.run([sys.executable, _PATH, "--full", "--list", "--rows",
                           "98,84"], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert [line.split()[:2] for line in lines] == [["84", "2c"], ["98", "2c"]]
    assert "q=500, p=500, Table 10 squashing, no recurrent weights" in lines[0]
    assert "log loss, no recurrent weights" in lines[1]
    for argv, message in ((["--rows", "21"], "no row 21 in --quick (rows 0-20"),
                          (["--rows", "2-1"], "'2-1' is not a range"),
                          (["--trials", "0"], "--trials must be at least 1"),
                          (["--trials", "2", "--seeds", "1"], "not allowed with")):
        proc = subprocess.run([sys.executable, _PATH, *argv], capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr


def test_target_values_parse_and_are_checked(paper):
    assert paper._target_values("0.2,0.8") == (0.2, 0.8)
    assert paper._target_values("0, 1") == (0.0, 1.0)
    for bad, message in (("x,1", "is not two numbers"), ("0.5", "is not two numbers"),
                         ("0.1,0.5,0.9", "is not two numbers"),
                         ("0.8,0.2", "need 0 <= absent < present <= 1"),
                         ("0.5,0.5", "need 0 <= absent"), ("-0.1,0.9", "need 0"),
                         ("0.1,1.5", "need 0"), ("nan,0.9", "need 0")):
        with pytest.raises(paper.argparse.ArgumentTypeError, match=message):
            paper._target_values(bad)


def test_target_values_change_exp1_rows_only(tmp_path):
    """``--target-values`` sets Exp. 1's targets on the rows chosen, reaches the
    trials (their journal keys and the table's setting) and leaves other rows be."""
    proc = subprocess.run([sys.executable, _PATH, "--full", "--list", "--rows",
                           "38,47", "--target-values", "0.2,0.8"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    reber, lag = proc.stdout.splitlines()
    assert "targets: possible next symbols (0.2 / 0.8)  |" in reber
    assert lag.split()[:2] == ["47", "2c"] and "0.2 / 0.8" not in lag
    proc = subprocess.run([sys.executable, _PATH, "--full", "--rows", "47",
                           "--target-values", "0.2,0.8"], capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2 and "include no Exp. 1 row" in proc.stderr
    # a run: --quick's Exp. 1 rows, one pass of the 256 training strings each
    proc = subprocess.run([sys.executable, _PATH, "--only", "1", "--recipes", "paper",
                           "--seconds", "0.01", "--jobs", "1", "--target-values",
                           "0.2,0.8", "--out", str(tmp_path)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(tmp_path / "paper_results.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert rows and all(r["setting"].endswith(" (0.2 / 0.8)") for r in rows)
    journal = tmp_path / "paper_trials.jsonl"
    keys = [json.loads(json.loads(line)["key"])
            for line in journal.read_text().splitlines()]
    assert len(keys) == len(rows)
    assert all(row["target_values"] == [0.2, 0.8] for row, *_ in keys)


def test_journal_keys_and_reading(paper, tmp_path, monkeypatch):
    spec = paper._specs(False)[0]
    key = paper._trial_key(spec, "paper", 0, 60.0)
    assert key == paper._trial_key(paper.replace(spec, trials=99, paper_after="x"),
                                   "paper", 0, 60.0)
    for other in (paper._trial_key(spec, "paper", 1, 60.0),
                  paper._trial_key(spec, "modern", 0, 60.0),
                  paper._trial_key(spec, "paper", 0, 61.0),
                  paper._trial_key(paper.replace(spec, lr=spec.lr / 2), "paper", 0,
                                   60.0),
                  paper._trial_key(paper.replace(spec, net={**spec.net, "x": 1}),
                                   "paper", 0, 60.0),
                  paper._trial_key(paper.replace(spec, target_values=(0.1, 0.9)),
                                   "paper", 0, 60.0)):
        assert other != key
    # the modern recipe's key carries Adam's rate: a journal of trials run at
    # another rate does not resume them
    modern = paper._trial_key(spec, "modern", 0, 60.0)
    assert modern != json.dumps([json.loads(modern)[0], "modern", 0, 60.0],
                                sort_keys=True)
    assert paper._estimator(spec, "modern", 0).learning_rate == 1e-3
    monkeypatch.setattr(paper, "MODERN_LEARNING_RATE", 1e-2)
    assert paper._trial_key(spec, "modern", 0, 60.0) != modern
    assert paper._estimator(spec, "modern", 0).learning_rate == 1e-2
    path = tmp_path / "journal.jsonl"
    assert paper._read_journal(str(path)) == {}
    path.write_text(json.dumps({"key": key, "result": {"seed": 0, "sequences": 5}})
                    + "\n"
                    + json.dumps({"key": key, "result": {"seed": 0, "sequences": 7}})
                    + "\n" + '{"key": "cut sho')
    assert paper._read_journal(str(path)) == {key: {"seed": 0, "sequences": 7}}
