"""The synthetic tasks of the 1997 paper (lstmforecast.tasks), checked to the letter
of the spec (shared/paper/LSTM1997.md, section 2) and of the module's readings."""

import re

import numpy as np
import pytest

from lstmforecast import tasks

REBER = tasks.REBER_SYMBOLS
SYM6 = {s: i for i, s in enumerate(tasks.TEMPORAL_ORDER_SYMBOLS)}


def _rng(seed=0):
    return np.random.default_rng(seed)


def _symbols(seq):
    """Indices of a one-hot sequence, checking that it is one-hot."""
    seq = np.asarray(seq)
    assert np.all((seq == 0) | (seq == 1))
    assert np.all(seq.sum(axis=-1) == 1)
    return seq.argmax(axis=-1)


# ------------------------------------------------------------- reproducibility

GENERATORS = {
    "embedded_reber": lambda rng: tasks.embedded_reber(20, rng),
    "reber_train_test": lambda rng: tasks.reber_train_test(rng, 20, 20),
    "noise_free_long_lag": lambda rng: tasks.noise_free_long_lag(20, rng, p=10),
    "noise_free_random": lambda rng: tasks.noise_free_random(20, rng, p=10),
    "long_lag_distractors": lambda rng: tasks.long_lag_distractors(20, rng, 10, 5),
    "two_sequence": lambda rng: tasks.two_sequence(20, rng, noise=True,
                                                   noisy_targets=True),
    "adding": lambda rng: tasks.adding(20, rng),
    "multiplication": lambda rng: tasks.multiplication(20, rng),
    "temporal_order": lambda rng: tasks.temporal_order(20, rng, 3),
}


def _flatten(obj):
    if isinstance(obj, str):
        return [obj]
    if isinstance(obj, (list, tuple)):
        return [leaf for item in obj for leaf in _flatten(item)]
    return [np.asarray(obj)]


def _same(a, b):
    fa, fb = _flatten(a), _flatten(b)
    return len(fa) == len(fb) and all(
        (x == y) if isinstance(x, str) else
        (x.shape == y.shape and np.array_equal(x, y)) for x, y in zip(fa, fb))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_same_seed_same_data_other_seed_other_data(name):
    make = GENERATORS[name]
    assert _same(make(_rng(1)), make(_rng(1)))
    assert not _same(make(_rng(1)), make(_rng(2)))


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_global_numpy_state_is_neither_used_nor_touched(name):
    state = np.random.get_state()
    np.random.seed(123)
    a = GENERATORS[name](_rng(5))
    np.random.seed(456)
    b = GENERATORS[name](_rng(5))
    assert _same(a, b)
    np.random.set_state(state)


# ------------------------------------------------------------------ bad arguments

BAD_ARGUMENTS = [
    (tasks.embedded_reber, (0,), {}, "n"),
    (tasks.embedded_reber_strings, (0,), {}, "n"),
    (tasks.reber_train_test, (), {"n_train": 0}, "n_train"),
    (tasks.reber_train_test, (), {"n_test": 0}, "n_test"),
    (tasks.noise_free_long_lag, (0,), {}, "n"),
    (tasks.noise_free_long_lag, (5,), {"p": 0}, "p"),
    (tasks.noise_free_random, (0,), {}, "n"),
    (tasks.noise_free_random, (5,), {"p": 0}, "p"),
    (tasks.long_lag_distractors, (0,), {}, "n"),
    (tasks.long_lag_distractors, (5,), {"p": 0}, "p"),
    (tasks.long_lag_distractors, (5,), {"q": -1}, "q"),
    (tasks.two_sequence, (0,), {}, "n"),
    (tasks.two_sequence, (5,), {"T": 0}, "T"),
    (tasks.two_sequence, (5,), {"T": 2, "N": 3}, "T"),
    (tasks.two_sequence, (5,), {"N": 0}, "N"),
    (tasks.adding, (0,), {}, "n"),
    (tasks.adding, (5,), {"T": 5}, "T"),
    (tasks.multiplication, (0,), {}, "n"),
    (tasks.multiplication, (5,), {"T": 10}, "T"),
    (tasks.temporal_order, (0,), {}, "n"),
    (tasks.temporal_order, (5,), {"n_relevant": 4}, "n_relevant"),
    (tasks.temporal_order, (5,), {"n_relevant": 1}, "n_relevant"),
]


@pytest.mark.parametrize("func, args, kwargs, name", BAD_ARGUMENTS)
def test_bad_arguments_raise_value_error_naming_them(func, args, kwargs, name):
    if func is tasks.reber_train_test:
        call = lambda: func(_rng(), **kwargs)  # noqa: E731
    else:
        call = lambda: func(*args, _rng(), **kwargs)  # noqa: E731
    with pytest.raises(ValueError, match=rf"^{name} must"):
        call()


@pytest.mark.parametrize("name", sorted(GENERATORS))
def test_rng_must_be_a_generator(name):
    for bad in (0, np.random.RandomState(0), None):
        with pytest.raises(TypeError, match="rng must be a numpy.random.Generator"):
            GENERATORS[name](bad)


def test_non_integer_arguments_and_float_dtype():
    with pytest.raises(TypeError, match="^n must be an integer"):
        tasks.adding(2.5, _rng())
    with pytest.raises(TypeError, match="^T must be an integer"):
        tasks.adding(3, _rng(), T=True)
    with pytest.raises(ValueError, match="dtype"):
        tasks.adding(3, _rng(), dtype=np.int64)
    data = tasks.adding(3, _rng(), dtype=np.float32)
    assert all(x.dtype == np.float32 for x in data.X) and data.y.dtype == np.float32


# ----------------------------------------------------------- Exp. 1: embedded Reber

# The Reber graph of the spec as a regular expression, written independently of the
# module's automaton: from state 4, (X T* V P)* (S | X T* V V) reaches the end.
_FROM4 = r"(?:XT*VP)*(?:S|XT*VV)"
_INNER = rf"B(?:TS*X{_FROM4}|PT*V(?:V|P{_FROM4}))E"
_EMBEDDED = re.compile(rf"B([TP]){_INNER}\1E")

# The spec's graph, state -> {symbol: next}; 6 = end (emits E).
_GRAPH = {1: {"T": 2, "P": 3}, 2: {"S": 2, "X": 4}, 3: {"T": 3, "V": 5},
          4: {"X": 3, "S": 6}, 5: {"P": 4, "V": 6}}


def _allowed_sets(s):
    """The possible next symbols after each prefix s[:t+1], from the spec's graph."""
    e = s[1]
    sets = [{"T", "P"}, {"B"}, {"T", "P"}]          # after B, after e, after inner B
    state = 1
    for sym in s[3:-3]:
        state = _GRAPH[state][sym]
        sets.append(set(_GRAPH[state]) if state != 6 else {"E"})
    sets += [{e}, {"E"}]                              # after inner E, after e
    assert len(sets) == len(s) - 1
    return sets


def test_reber_strings_are_in_the_grammar_with_the_embedded_symbol_repeated():
    strings = tasks.embedded_reber_strings(500, _rng(3))
    for s in strings:
        assert _EMBEDDED.fullmatch(s), s
        assert s[1] == s[-2] and s[1] in "TP"
        assert len(s) >= 9
    assert min(map(len, strings)) == 9
    # every edge is taken with probability 0.5
    assert 0.4 < np.mean([s[1] == "T" for s in strings]) < 0.6
    assert 0.4 < np.mean([s[3] == "T" for s in strings]) < 0.6
    assert len(set(strings)) > 50


def test_reber_encoding_inputs_targets_and_allowed():
    rng = _rng(4)
    state = rng.bit_generator.state
    strings = tasks.embedded_reber_strings(200, rng)
    rng.bit_generator.state = state
    data = tasks.embedded_reber(200, rng)
    assert len(data.X) == len(data.Y) == len(data.allowed) == 200
    for s, x, y, ok in zip(strings, *data):
        assert x.shape == y.shape == ok.shape == (len(s) - 1, 7)
        assert "".join(REBER[i] for i in _symbols(x)) == s[:-1]
        assert "".join(REBER[i] for i in _symbols(y)) == s[1:]
        assert set(np.unique(ok)) <= {0.0, 1.0}
        assert np.all(ok[y == 1] == 1)               # the actual next is allowed
        expected = [{REBER[i] for i in np.flatnonzero(row)} for row in ok]
        assert expected == _allowed_sets(s)
        # the long-lag step: after the inner E only the embedded symbol is allowed
        assert expected[-2] == {s[1]}


def test_encode_reber_rejects_strings_outside_the_grammar():
    with pytest.raises(ValueError, match="not in the embedded Reber grammar"):
        tasks.encode_reber(["BTBTXSEPE"])
    with pytest.raises(ValueError, match="incomplete"):
        tasks.encode_reber(["BTBTXSET"])


def test_reber_train_test_disjoint():
    split = tasks.reber_train_test(_rng(6))
    assert len(split.train_strings) == len(split.test_strings) == 256
    assert not set(split.train_strings) & set(split.test_strings)
    assert len(split.train.X) == len(split.test.X) == 256
    for strings, data in ((split.train_strings, split.train),
                          (split.test_strings, split.test)):
        for s, x in zip(strings, data.X):
            assert _EMBEDDED.fullmatch(s)
            assert "".join(REBER[i] for i in _symbols(x)) == s[:-1]


def test_reber_correct_is_the_most_active_units_rule():
    data = tasks.embedded_reber(10, _rng(7))
    perfect = [ok * 0.9 + 0.05 for ok in data.allowed]
    assert tasks.reber_correct(perfect, data.allowed).all()
    wrong = [p.copy() for p in perfect]
    wrong[3][-2] = 0.5                                # a tie at the long-lag step
    result = tasks.reber_correct(wrong, data.allowed)
    assert not result[3] and result.sum() == 9


# ------------------------------------------------------------- Exps. 2a, 2b

@pytest.mark.parametrize("p", [1, 2, 10])
def test_noise_free_long_lag(p):
    data = tasks.noise_free_long_lag(200, _rng(8), p=p)
    assert data.X.shape == data.Y.shape == (200, p, p + 1)
    assert data.mask.shape == (200, p)
    sx, sy = _symbols(data.X), _symbols(data.Y)
    # (x, a_1, ..., a_{p-1}, x) or (y, a_1, ..., a_{p-1}, y); x = p - 1, y = p
    assert set(np.unique(sx[:, 0])) == {p - 1, p}
    assert np.array_equal(sx[:, 1:], np.broadcast_to(np.arange(p - 1), (200, p - 1)))
    assert np.array_equal(sy[:, :-1], sx[:, 1:])      # next-symbol targets
    assert np.array_equal(sy[:, -1], sx[:, 0])        # the final symbol repeats
    assert np.all(data.mask[:, -1] == 1) and np.all(data.mask[:, :-1] == 0)


def test_noise_free_random():
    p = 10
    data = tasks.noise_free_random(500, _rng(9), p=p)
    sx, sy = _symbols(data.X), _symbols(data.Y)
    assert set(np.unique(sx[:, 0])) == {p - 1, p}
    middle = sx[:, 1:]
    assert set(np.unique(middle)) == set(range(p - 1))   # a_1..a_{p-1} only
    assert len({tuple(row) for row in middle}) > 490      # random, not fixed
    assert np.array_equal(sy[:, :-1], sx[:, 1:])
    assert np.array_equal(sy[:, -1], sx[:, 0])
    assert np.all(data.mask[:, -1] == 1) and data.mask.sum() == 500


# ------------------------------------------------------------------- Exp. 2c

@pytest.mark.parametrize("q, p", [(50, 50), (20, 5)])
def test_long_lag_distractors_structure(q, p):
    n = 4000
    X, y = tasks.long_lag_distractors(n, _rng(10), q=q, p=p)
    e, b, x, yy = p, p + 1, p + 2, p + 3
    assert y.shape == (n, 2) and np.all(y.sum(axis=1) == 1)
    lengths = []
    used = set()
    for seq, target in zip(X, y):
        assert seq.shape[1] == p + 4
        s = _symbols(seq)
        assert s[0] == b
        assert s[1] in (x, yy)
        assert s[-1] == e                                  # e right before the end
        middle = s[2:-1]
        assert len(middle) >= q                            # the q-distractor prefix
        assert np.all(middle < p)                          # distractors a_1..a_p
        used.update(np.unique(middle).tolist())
        assert np.array_equal(target, [s[1] == x, s[1] == yy])   # x/y repeated
        lengths.append(len(s) + 1)                         # with the final x/y
    lengths = np.array(lengths)
    assert lengths.min() == q + 4                          # minimal length q + 4
    assert used == set(range(p))
    # Expected length: q + 4 + 9 (geometric, mean 0.9 / 0.1) = q + 13 by the
    # generation rule; the paper prints q + 14 (see the module docstring).
    assert abs(lengths.mean() - (q + 13)) < 0.6
    assert abs(lengths.mean() - (q + 14)) <= 1.6
    assert 0.45 < y[:, 0].mean() < 0.55


# ------------------------------------------------------------------- Exp. 3

def _lengths(X):
    return np.array([len(x) for x in X])


@pytest.mark.parametrize("N", [1, 3])
def test_two_sequence_3a(N):
    n, T = 1000, 100
    X, y, y_clean = tasks.two_sequence(n, _rng(11), T=T, N=N)
    L = _lengths(X)
    assert L.min() == T and L.max() == T + T // 10      # inclusive range, both ends
    assert all(x.shape == (len(x), 1) for x in X)
    first = np.array([x[:N, 0] for x in X])
    assert np.all((first == 1.0) | (first == -1.0))
    assert np.all(first == first[:, :1])                # all first N agree
    assert np.array_equal(y, np.where(first[:, 0] == 1.0, 1.0, 0.0))
    assert np.array_equal(y, y_clean)
    assert 0.45 < y.mean() < 0.55
    rest = np.concatenate([x[N:, 0] for x in X])
    assert abs(rest.mean()) < 0.01
    assert abs(rest.var() - 0.2) < 0.01


def test_two_sequence_3b_noise_on_the_first_elements():
    n, N = 4000, 3
    X, y, _ = tasks.two_sequence(n, _rng(12), T=20, N=N, noise=True)
    first = np.array([x[:N, 0] for x in X])
    sign = np.where(y == 1.0, 1.0, -1.0)[:, None]
    noise = first - sign
    assert abs(noise.mean()) < 0.02
    assert abs(noise.var() - 0.2) < 0.02
    assert np.all(np.isin(y, [0.0, 1.0]))


def test_two_sequence_3c_noisy_targets():
    n, N = 4000, 1
    X, y, y_clean = tasks.two_sequence(n, _rng(13), T=20, N=N, noisy_targets=True)
    first = np.array([x[0, 0] for x in X])
    assert np.all(np.isin(first, [1.0, -1.0]))          # no input noise in 3c
    assert np.array_equal(y_clean, np.where(first == 1.0, 0.2, 0.8))  # class 1 -> 0.2
    noise = y - y_clean
    assert abs(noise.mean()) < 0.02
    assert abs(noise.var() - 0.1) < 0.01


# ----------------------------------------------------------- Exps. 4, 5

def _check_marked_pairs(X, T, low, high, neutral):
    m = T // 2 - 1
    L = _lengths(X)
    assert L.min() == T and L.max() == T + T // 10
    first_marked = 0
    for x in X:
        assert x.shape == (len(x), 2)
        values, markers = x[:, 0], x[:, 1]
        assert np.all((values >= low) & (values <= high))
        marked = np.flatnonzero(markers == 1.0)
        assert len(marked) == 2                             # exactly two marks
        a, b = marked
        # one mark among the first ten pairs, the other among the first T/2 - 1
        # pairs that are still unmarked (its rank skips the other mark)
        rank_a, rank_b = a, b - 1
        assert (a <= 9 and rank_b < m) or (b <= 9 and rank_a < m)
        assert len(x) - 1 not in marked                     # last pair never marked
        assert markers[-1] == -1.0
        if 0 in marked:
            first_marked += 1
            assert values[0] == neutral
        else:
            assert markers[0] == -1.0
        others = np.setdiff1d(np.arange(1, len(x) - 1), marked)
        assert np.all(markers[others] == 0.0)
    return first_marked


def test_adding():
    n, T = 2000, 100
    X, y = tasks.adding(n, _rng(14), T=T)
    first_marked = _check_marked_pairs(X, T, -1.0, 1.0, 0.0)
    expected = np.array([0.5 + x[x[:, 1] == 1.0, 0].sum() / 4.0 for x in X])
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    assert np.all((y >= 0) & (y <= 1))
    # P(first pair marked) = 1/10 + 9/10 * 1/49 ~ 0.118
    assert 0.08 < first_marked / n < 0.16
    # the first 49 unmarked pairs are pairs 0..49 less the first mark (0-based)
    positions = np.array([np.flatnonzero(x[:, 1] == 1.0) for x in X])
    assert positions[:, 0].min() == 0 and positions[:, 1].max() == T // 2 - 1


def test_adding_small_T():
    X, y = tasks.adding(500, _rng(15), T=11)
    _check_marked_pairs(X, 11, -1.0, 1.0, 0.0)


def test_multiplication():
    n, T = 2000, 100
    X, y = tasks.multiplication(n, _rng(16), T=T)
    first_marked = _check_marked_pairs(X, T, 0.0, 1.0, 1.0)
    expected = np.array([np.prod(x[x[:, 1] == 1.0, 0]) for x in X])
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-12)
    assert np.all((y >= 0) & (y <= 1))
    assert first_marked > 0


# ------------------------------------------------------------------- Exp. 6

@pytest.mark.parametrize("n_relevant, ranges", [
    (2, [(10, 20), (50, 60)]),
    (3, [(10, 20), (33, 43), (66, 76)]),
])
def test_temporal_order(n_relevant, ranges):
    n = 2000
    X, y = tasks.temporal_order(n, _rng(17), n_relevant)
    L = _lengths(X)
    assert L.min() == 100 and L.max() == 110
    assert y.dtype.kind == "i"
    seen_positions = [set() for _ in ranges]
    for seq, label in zip(X, y):
        assert seq.shape[1] == 8
        s = _symbols(seq)
        assert s[0] == SYM6["E"] and s[-1] == SYM6["B"]
        relevant = np.flatnonzero((s == SYM6["X"]) | (s == SYM6["Y"]))
        assert len(relevant) == n_relevant
        for k, (t, (lo, hi)) in enumerate(zip(relevant, ranges)):
            assert lo <= t <= hi
            seen_positions[k].add(int(t))
        others = np.setdiff1d(np.arange(1, len(s) - 1), relevant)
        assert np.all(np.isin(s[others], [SYM6[c] for c in "abcd"]))
        # XX -> 0 (Q), XY -> 1 (R), YX -> 2 (S), YY -> 3 (U); 6b likewise, 8 classes
        code = "".join("1" if s[t] == SYM6["Y"] else "0" for t in relevant)
        assert label == int(code, 2)
    for seen, (lo, hi) in zip(seen_positions, ranges):
        assert seen == set(range(lo, hi + 1))
    counts = np.bincount(y, minlength=2 ** n_relevant)
    assert len(counts) == 2 ** n_relevant and counts.min() > 0.6 * n / len(counts)
    targets = tasks.one_hot(y, 2 ** n_relevant)
    assert targets.shape == (n, 2 ** n_relevant)
    assert np.array_equal(targets.argmax(axis=1), y) and np.all(targets.sum(1) == 1)


def test_one_hot_validation():
    with pytest.raises(ValueError, match="labels"):
        tasks.one_hot([0, 4], 4)
    with pytest.raises(ValueError, match="n_classes"):
        tasks.one_hot([0], 0)


# ------------------------------------------------------------------- speed

def test_test_set_sized_generation_is_fast():
    import time
    rng = _rng(18)
    start = time.perf_counter()
    tasks.adding(2560, rng)
    tasks.multiplication(2560, rng)
    tasks.two_sequence(2560, rng)
    tasks.temporal_order(2560, rng, 3)
    tasks.long_lag_distractors(2560, rng)
    assert time.perf_counter() - start < 2.0
