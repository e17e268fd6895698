"""Synthetic tasks of Hochreiter & Schmidhuber (1997), "Long Short-Term Memory".

Every generator draws from a :class:`numpy.random.Generator` passed as ``rng``
(never the global ``np.random`` state), so the same seed gives the same data. The
arrays are ready for :class:`~lstmforecast.LSTMRegressor` and
:class:`~lstmforecast.LSTMClassifier`: ``X`` is a list of 2-D arrays ``(T_i, D)``
(sequences of different lengths) or a 3-D array ``(n, T, D)`` (one length); targets
are ``(n,)`` / ``(n, K)`` for ``output="last"`` or per step, with a mask, for
``output="sequence"``.

=====================================  ===========  =================================
generator                              paper        returns
=====================================  ===========  =================================
:func:`embedded_reber`                 Exp. 1       ``ReberData(X, Y, allowed)``
:func:`reber_train_test`               Exp. 1       ``ReberSplit(train, test, ...)``
:func:`noise_free_long_lag`            Exp. 2a      ``NextSymbolData(X, Y, mask)``
:func:`noise_free_random`              Exp. 2b      ``NextSymbolData(X, Y, mask)``
:func:`long_lag_distractors`           Exp. 2c      ``TaskData(X, y)``, y one-hot
:func:`two_sequence`                   Exp. 3a-3c   ``TwoSequenceData(X, y, y_clean)``
:func:`adding`                         Exp. 4       ``TaskData(X, y)``
:func:`multiplication`                 Exp. 5       ``TaskData(X, y)``
:func:`temporal_order`                 Exp. 6a, 6b  ``TaskData(X, y)``, y labels
=====================================  ===========  =================================

All results are named tuples, so ``X, y = adding(n, rng)`` works as well as
``data.X``. Arrays are ``float64`` unless ``dtype`` says otherwise (``float32``
halves the memory of the large one-hot tasks). The sequences of a list ``X`` may be
views of one shared buffer; copy one before modifying it in place.

Readings of the points the paper leaves open (see ``LSTM1997.md``, section 3):

1. **Integer ranges are inclusive.** "Length random between T and T+T/10" is an
   integer drawn uniformly from ``T, ..., T + T // 10`` (Exps. 3-5); "100-110",
   "10-20", ... include both ends (Exp. 6).
2. **Positions are 0-based array indices** (Exp. 6): ``X[i][t1]`` with
   ``10 <= t1 <= 20``; the start symbol E is at index 0, so the relevant symbols are
   the 11th to 21st elements. "The first ten pairs" (Exps. 4, 5) are indices 0-9.
3. **Exps. 4/5, marking** (open point 5). X2 is drawn from the first ``T // 2 - 1``
   pairs that are still unmarked, so it *may* fall on the first pair (when X1 did
   not). A marked pair always has marker 1.0, also at the first pair (the mark takes
   precedence over the -1 start marker). When the first pair is marked (by X1 or
   X2), its value in the input *and* in the target is set to the neutral element:
   0.0 for adding, 1.0 for multiplication (the paper's "X1 is set to zero / 1.0").
   Hence the target is always the paper's formula over the two pairs with marker 1,
   read from ``X`` alone. The last pair is never marked (``T >= 11``), so its marker
   is always -1.
4. **Exp. 2c, distractors** (open point 6): drawn uniformly from ``a_1..a_p``
   (the printed "1 <= i <= q" read as "1 <= i <= p").
5. **Exp. 2c, outputs** (open point 7): 2 one-hot output units, column 0 = x,
   column 1 = y; the input is the sequence without its final x/y, so the target sits
   at the last input step, where e is shown.
6. **Exp. 2c, length.** Generated exactly as described (prefix of q+2, then
   distractor with probability 9/10 or e with 1/10), the number k of extra
   distractors is geometric with mean 9: minimal length q+4 (as printed) and mean
   length q+13. The paper's "expected length q+14" (and "(q+10)/p") counts one
   more; the generation rule is followed, not that figure.
7. **Exp. 3c**: class 1 (first elements +1.0) has target 0.2, class 2 (-1.0)
   target 0.8, as printed; the target noise is drawn afresh per sequence and not
   clipped to [0, 1].
8. **Exp. 1**: the training target is the one-hot *actual* next symbol; ``allowed``
   holds the grammar's possible next symbols for the success criterion (the allowed
   units must be the most active ones, :func:`reber_correct`).
9. **Exps. 2a/2b**: the target is the next symbol at every step (train with no
   mask: an error signal at every step); ``mask`` marks only the last input step
   (where the final x/y must be predicted) for the success criterion "absolute error
   at sequence end" (Table 11, ABS(0.25)).
"""

from __future__ import annotations

import numbers
from typing import NamedTuple

import numpy as np

__all__ = [
    "NextSymbolData",
    "REBER_SYMBOLS",
    "ReberData",
    "ReberSplit",
    "TEMPORAL_ORDER_SYMBOLS",
    "TaskData",
    "TwoSequenceData",
    "adding",
    "embedded_reber",
    "embedded_reber_strings",
    "encode_reber",
    "long_lag_distractors",
    "multiplication",
    "noise_free_long_lag",
    "noise_free_random",
    "one_hot",
    "reber_correct",
    "reber_train_test",
    "temporal_order",
    "two_sequence",
]

#: Symbol order of the one-hot code of Exp. 1.
REBER_SYMBOLS = "BTPSXVE"
#: Symbol order of the one-hot code of Exp. 6.
TEMPORAL_ORDER_SYMBOLS = "EBabcdXY"


# --------------------------------------------------------------------------- results

class TaskData(NamedTuple):
    """Sequences with one target per sequence (``output="last"``).

    Attributes
    ----------
    X : list of ndarray of shape (T_i, D)
        Input sequences.
    y : ndarray of shape (n,) or (n, K)
        Target of each sequence, at its last step.
    """

    X: list
    y: np.ndarray


class TwoSequenceData(NamedTuple):
    """Result of :func:`two_sequence` (Exp. 3).

    Attributes
    ----------
    X : list of ndarray of shape (T_i, 1)
        Input sequences.
    y : ndarray of shape (n,)
        Training target at the sequence end (noisy for Exp. 3c).
    y_clean : ndarray of shape (n,)
        Noise-free target: 1.0 / 0.0 (Exps. 3a, 3b) or 0.2 / 0.8 (Exp. 3c) for
        class 1 / class 2. Equal to ``y`` when ``noisy_targets=False``.
    """

    X: list
    y: np.ndarray
    y_clean: np.ndarray


class NextSymbolData(NamedTuple):
    """Result of :func:`noise_free_long_lag` and :func:`noise_free_random` (Exp. 2).

    Attributes
    ----------
    X : ndarray of shape (n, p, p + 1)
        One-hot inputs: every symbol but the last.
    Y : ndarray of shape (n, p, p + 1)
        One-hot targets: the next symbol at every step.
    mask : ndarray of shape (n, p)
        1.0 at the last step (where the final x/y is predicted), 0.0 elsewhere: the
        steps the success criterion evaluates. Train with ``mask=None`` (an error
        signal at every step, as in the paper) and score with this mask.
    """

    X: np.ndarray
    Y: np.ndarray
    mask: np.ndarray


class ReberData(NamedTuple):
    """Encoded embedded Reber strings (Exp. 1).

    Attributes
    ----------
    X : list of ndarray of shape (T_i, 7)
        One-hot inputs (symbol order ``REBER_SYMBOLS``): every symbol but the last.
    Y : list of ndarray of shape (T_i, 7)
        One-hot targets: the actual next symbol.
    allowed : list of ndarray of shape (T_i, 7)
        1.0 for each symbol the grammar allows next, 0.0 otherwise.
    """

    X: list
    Y: list
    allowed: list


class ReberSplit(NamedTuple):
    """Result of :func:`reber_train_test`.

    Attributes
    ----------
    train, test : ReberData
        Encoded training and test strings.
    train_strings, test_strings : list of str
        The strings themselves (symbols of ``REBER_SYMBOLS``).
    """

    train: ReberData
    test: ReberData
    train_strings: list
    test_strings: list


# ----------------------------------------------------------------------- validation

def _check_rng(rng):
    if not isinstance(rng, np.random.Generator):
        raise TypeError("rng must be a numpy.random.Generator (e.g. "
                        f"numpy.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


def _check_int(name, value, minimum):
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)


def _check_dtype(dtype):
    dt = np.dtype(dtype)
    if dt.kind != "f":
        raise ValueError(f"dtype must be a floating-point dtype, got {dt}")
    return dt


def one_hot(labels, n_classes, dtype=np.float64):
    """One-hot code of integer labels.

    Turns the class labels of :func:`temporal_order` into the targets of the paper's
    squared-error setup (one output unit per class, Exp. 6) for
    :class:`~lstmforecast.LSTMRegressor`.

    Parameters
    ----------
    labels : array-like of int, shape (n,)
        Labels in ``0, ..., n_classes - 1``.
    n_classes : int
        Number of classes (columns).
    dtype : dtype, default=float64

    Returns
    -------
    ndarray of shape (n, n_classes)
    """
    n_classes = _check_int("n_classes", n_classes, 1)
    labels = np.asarray(labels)
    if labels.ndim != 1 or (labels.size and labels.dtype.kind not in "iu"):
        raise ValueError("labels must be a 1-D array of integers")
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise ValueError(f"labels must lie in 0..{n_classes - 1}")
    return np.eye(n_classes, dtype=_check_dtype(dtype))[labels]


def _random_lengths(rng, n, T):
    """Integers uniform in ``T, ..., T + T // 10`` (inclusive)."""
    return T + rng.integers(0, T // 10 + 1, size=n)


def _split_rows(A, lengths):
    """``[A[i, :lengths[i]] for i]``: the sequences of a padded (n, Tmax, D) array."""
    return [A[i, :length] for i, length in enumerate(lengths.tolist())]


def _one_hot_flat(symbols, lengths, n_symbols, dtype):
    """One-hot code of a flat symbol array, split into sequences of ``lengths``."""
    out = np.zeros((symbols.size, n_symbols), dtype=dtype)
    out[np.arange(symbols.size), symbols] = 1.0
    return np.split(out, np.cumsum(lengths)[:-1])


# --------------------------------------------------------------------- Exp. 1: Reber

# The Reber graph of the spec (section "Exp 1"): state -> ((symbol, next), ...);
# state 6 is "end", which emits E.
_REBER_INNER = {
    1: (("T", 2), ("P", 3)),
    2: (("S", 2), ("X", 4)),
    3: (("T", 3), ("V", 5)),
    4: (("X", 3), ("S", 6)),
    5: (("P", 4), ("V", 6)),
}


def _embedded_reber_automaton():
    """Deterministic automaton of the embedded grammar.

    B, then T or P (the embedded symbol e), then a Reber string (B ... E), then e,
    then E. States carry e; ``table[state]`` is the tuple of ``(symbol, next)``
    choices, each taken with probability 1 / len(choices).
    """
    table = {("start",): (("B", ("outer",)),),
             ("outer",): (("T", ("emb", "T")), ("P", ("emb", "P"))),
             ("final",): (("E", ("done",)),),
             ("done",): ()}
    for e in "TP":
        table[("emb", e)] = (("B", ("in", 1, e)),)
        for k, choices in _REBER_INNER.items():
            table[("in", k, e)] = tuple((sym, ("in", nxt, e)) for sym, nxt in choices)
        table[("in", 6, e)] = (("E", ("post", e)),)
        table[("post", e)] = ((e, ("final",)),)
    return table


_REBER_TABLE = _embedded_reber_automaton()
_REBER_INDEX = {s: i for i, s in enumerate(REBER_SYMBOLS)}


def _bit_stream(rng, chunk=4096):
    while True:
        yield from rng.integers(0, 2, size=chunk).tolist()


def embedded_reber_strings(n, rng):
    """Random strings of the embedded Reber grammar (Exp. 1, paper section 5.1).

    Every choice between two edges is made with probability 0.5.

    Parameters
    ----------
    n : int
        Number of strings, >= 1.
    rng : numpy.random.Generator

    Returns
    -------
    list of str
        Strings over ``REBER_SYMBOLS`` such as ``"BTBTXSETE"`` (minimal length 9).
    """
    n = _check_int("n", n, 1)
    bits = _bit_stream(_check_rng(rng))
    strings = []
    for _ in range(n):
        state, out = ("start",), []
        while choices := _REBER_TABLE[state]:
            sym, state = choices[next(bits)] if len(choices) == 2 else choices[0]
            out.append(sym)
        strings.append("".join(out))
    return strings


def encode_reber(strings, *, dtype=np.float64):
    """One-hot code embedded Reber strings for next-symbol prediction (Exp. 1).

    Parameters
    ----------
    strings : sequence of str
        Complete strings of the embedded Reber grammar.
    dtype : dtype, default=float64

    Returns
    -------
    ReberData
        ``X`` (all symbols but the last), ``Y`` (the next symbol) and ``allowed``
        (the symbols the grammar allows next), each a list of ``(len - 1, 7)``
        arrays in the symbol order ``REBER_SYMBOLS``.

    Raises
    ------
    ValueError
        If a string is not a complete string of the grammar.
    """
    dtype = _check_dtype(dtype)
    strings = list(strings)
    if not strings:
        raise ValueError("strings must contain at least one string")
    symbols, allowed_bits, lengths = [], [], []
    for idx, s in enumerate(strings):
        state = ("start",)
        for sym in s:
            moves = dict(_REBER_TABLE[state])
            if sym not in moves:
                raise ValueError(f"strings[{idx}] = {s!r} is not in the embedded "
                                 "Reber grammar")
            state = moves[sym]
            symbols.append(_REBER_INDEX[sym])
            allowed_bits.append(sum(1 << _REBER_INDEX[c] for c, _ in
                                    _REBER_TABLE[state]))
        if state != ("done",):
            raise ValueError(f"strings[{idx}] = {s!r} is incomplete")
        lengths.append(len(s))
    lengths = np.asarray(lengths)
    sym = np.asarray(symbols)
    bits = np.asarray(allowed_bits)
    first = np.zeros(sym.size, dtype=bool)
    first[np.cumsum(lengths)[:-1]] = True
    first[0] = True
    last = np.roll(first, -1)          # the last symbol of each string
    X = _one_hot_flat(sym[~last], lengths - 1, 7, dtype)
    Y = _one_hot_flat(sym[~first], lengths - 1, 7, dtype)
    allowed_rows = ((bits[~last, None] >> np.arange(7)) & 1).astype(dtype)
    allowed = np.split(allowed_rows, np.cumsum(lengths - 1)[:-1])
    return ReberData(X, Y, allowed)


def embedded_reber(n, rng, *, dtype=np.float64):
    """Embedded Reber grammar, next-symbol prediction (Exp. 1, paper section 5.1).

    Strings are B, T or P, a Reber string (B ... E), the same T or P, E; every edge
    of the Reber graph is taken with probability 0.5. The net reads one symbol per
    step and predicts the next one at every step (``output="sequence"``, no mask).

    Parameters
    ----------
    n : int
        Number of strings, >= 1.
    rng : numpy.random.Generator
    dtype : dtype, default=float64

    Returns
    -------
    ReberData
        ``X``, ``Y``, ``allowed``: lists of ``(T_i, 7)`` arrays (symbol order
        B, T, P, S, X, V, E); ``T_i`` is the string length minus one.

    See Also
    --------
    reber_train_test : the paper's disjoint 256/256 training and test sets.
    reber_correct : the paper's success criterion.
    """
    return encode_reber(embedded_reber_strings(n, rng), dtype=dtype)


def reber_train_test(rng, n_train=256, n_test=256, *, dtype=np.float64):
    """Training and test sets of Exp. 1 (paper section 5.1, after Fahlman 1991).

    The training strings are drawn from the grammar (a frequent string may occur
    more than once, as in random sampling); the test strings are drawn from the
    grammar as well but never equal a training string.

    Parameters
    ----------
    rng : numpy.random.Generator
    n_train, n_test : int, default=256
        Number of training and test strings, >= 1.
    dtype : dtype, default=float64

    Returns
    -------
    ReberSplit
        ``(train, test, train_strings, test_strings)``, ``train`` and ``test``
        being :class:`ReberData`.
    """
    _check_rng(rng)
    n_train = _check_int("n_train", n_train, 1)
    n_test = _check_int("n_test", n_test, 1)
    train_strings = embedded_reber_strings(n_train, rng)
    seen = set(train_strings)
    test_strings = []
    for _ in range(1000):
        batch = embedded_reber_strings(max(n_test, 64), rng)
        test_strings.extend(s for s in batch if s not in seen)
        if len(test_strings) >= n_test:
            break
    else:  # pragma: no cover - probability ~0
        raise RuntimeError("could not draw enough test strings outside the "
                           "training set")
    test_strings = test_strings[:n_test]
    return ReberSplit(encode_reber(train_strings, dtype=dtype),
                      encode_reber(test_strings, dtype=dtype),
                      train_strings, test_strings)


def reber_correct(outputs, allowed):
    """The success criterion of Exp. 1, per string.

    A string is predicted correctly when at every step the output units of the
    possible next symbols are the most active ones: the smallest output over the
    allowed symbols exceeds the largest output over the others.

    Parameters
    ----------
    outputs : list of ndarray of shape (T_i, 7)
        Network outputs, e.g. ``model.predict(X)`` with ``output="sequence"``.
    allowed : list of ndarray of shape (T_i, 7)
        ``ReberData.allowed``.

    Returns
    -------
    ndarray of bool, shape (n,)
    """
    if len(outputs) != len(allowed):
        raise ValueError(f"outputs has {len(outputs)} sequences, allowed has "
                         f"{len(allowed)}")
    result = np.empty(len(allowed), dtype=bool)
    for i, (out, ok) in enumerate(zip(outputs, allowed)):
        out = np.asarray(out, dtype=np.float64)
        ok = np.asarray(ok) > 0
        if out.shape != ok.shape:
            raise ValueError(f"outputs[{i}] has shape {out.shape}, allowed[{i}] "
                             f"has {ok.shape}")
        low = np.where(ok, out, np.inf).min(axis=1)
        high = np.where(ok, -np.inf, out).max(axis=1)
        result[i] = bool(np.all(low > high))
    return result


# -------------------------------------------------------- Exp. 2a, 2b: long lags

def _one_hot_dense(symbols, n_symbols, dtype):
    out = np.zeros(symbols.shape + (n_symbols,), dtype=dtype)
    flat = out.reshape(-1, n_symbols)
    flat[np.arange(flat.shape[0]), symbols.ravel()] = 1.0
    return out


def _next_symbol_data(symbols, n_symbols, dtype):
    n, length = symbols.shape
    mask = np.zeros((n, length - 1), dtype=dtype)
    mask[:, -1] = 1.0
    return NextSymbolData(_one_hot_dense(symbols[:, :-1], n_symbols, dtype),
                          _one_hot_dense(symbols[:, 1:], n_symbols, dtype), mask)


def _long_lag_symbols(n, rng, p, random_middle):
    n = _check_int("n", n, 1)
    p = _check_int("p", p, 1)
    _check_rng(rng)
    # symbols a_1..a_{p-1} -> 0..p-2, x = a_p -> p-1, y = a_{p+1} -> p
    end = (p - 1) + rng.integers(0, 2, size=n)
    if random_middle:
        middle = rng.integers(0, max(p - 1, 1), size=(n, p - 1))
    else:
        middle = np.broadcast_to(np.arange(p - 1), (n, p - 1))
    return np.concatenate([end[:, None], middle, end[:, None]], axis=1)


def noise_free_long_lag(n, rng, p=100, *, dtype=np.float64):
    """Noise-free sequences with long time lags (Exp. 2a, paper section 5.2).

    p + 1 one-hot symbols ``a_1, ..., a_{p-1}, x = a_p, y = a_{p+1}`` (column
    ``i - 1`` for ``a_i``). Each sequence is ``(y, a_1, ..., a_{p-1}, y)`` or
    ``(x, a_1, ..., a_{p-1}, x)`` with probability 0.5; the net predicts the next
    symbol at every step, and the last prediction needs the first symbol, p steps
    back.

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    rng : numpy.random.Generator
    p : int, default=100
        Delay, >= 1: sequences have p + 1 symbols.
    dtype : dtype, default=float64

    Returns
    -------
    NextSymbolData
        ``X`` and ``Y`` of shape ``(n, p, p + 1)`` (inputs: all symbols but the
        last; targets: the next symbol) and ``mask`` ``(n, p)``, 1.0 only at the
        last step. Train with ``output="sequence"`` and no mask (an error signal
        at every step); the success criterion (maximal absolute error below 0.25,
        Table 11 ABS(0.25)) looks at the steps of ``mask``.

    Notes
    -----
    ``X`` and ``Y`` take ``n * p * (p + 1)`` numbers each: about 0.8 GB apiece for
    the paper's 10,000 test sequences at p = 100 in float64. Use
    ``dtype=np.float32`` or generate in batches.
    """
    dtype = _check_dtype(dtype)
    return _next_symbol_data(_long_lag_symbols(n, rng, p, False), p + 1, dtype)


def noise_free_random(n, rng, p=100, *, dtype=np.float64):
    """Long time lags with a random middle (Exp. 2b, paper section 5.2).

    As :func:`noise_free_long_lag`, but the p - 1 middle symbols are drawn
    independently and uniformly from ``a_1, ..., a_{p-1}``: sequences
    ``(y, a_i1, ..., a_i(p-1), y)`` or ``(x, a_i1, ..., a_i(p-1), x)``. Only the
    final x / y is fully predictable.

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    rng : numpy.random.Generator
    p : int, default=100
        Delay, >= 1.
    dtype : dtype, default=float64

    Returns
    -------
    NextSymbolData
        As for :func:`noise_free_long_lag`; ``mask`` marks the sequence end, where
        the paper's success criterion (absolute error below 0.25) is evaluated.
    """
    dtype = _check_dtype(dtype)
    return _next_symbol_data(_long_lag_symbols(n, rng, p, True), p + 1, dtype)


# ------------------------------------------------- Exp. 2c: lags with distractors

def long_lag_distractors(n, rng, q=50, p=50, *, dtype=np.float64):
    """Very long time lags, no local regularities (Exp. 2c, paper section 5.2).

    p + 4 one-hot input symbols: distractors ``a_1..a_p`` (columns 0..p-1), then
    e (column p), b (p + 1), x (p + 2) and y (p + 3). A sequence starts with the
    prefix b, x-or-y (probability 0.5), q distractors; then, repeatedly, another
    distractor is appended with probability 9/10, or, with probability 1/10, e and
    the same x / y as element 2, which ends it. Distractors are uniform over
    ``a_1..a_p``. The input is the sequence without its final x / y; the target, at
    the last input step (where e is shown), is that x / y.

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    rng : numpy.random.Generator
    q : int, default=50
        Distractors in the prefix, >= 0 (the time lag is at least q + 1).
    p : int, default=50
        Number of distinct distractor symbols, >= 1.
    dtype : dtype, default=float64

    Returns
    -------
    TaskData
        ``X``: list of ``(q + 3 + k_i, p + 4)`` arrays, ``k_i >= 0`` the number of
        extra distractors (mean 9, so the full sequence has mean length q + 13);
        ``y``: ``(n, 2)`` one-hot targets for ``output="last"``, column 0 = x,
        column 1 = y.
    """
    n = _check_int("n", n, 1)
    q = _check_int("q", q, 0)
    p = _check_int("p", p, 1)
    _check_rng(rng)
    dtype = _check_dtype(dtype)
    e, b, x = p, p + 1, p + 2
    which = rng.integers(0, 2, size=n)              # 0: x, 1: y
    extra = rng.geometric(0.1, size=n) - 1          # distractors after the prefix
    lengths = q + 3 + extra                         # b, x/y, q + k distractors, e
    ends = np.cumsum(lengths)
    starts = ends - lengths
    symbols = rng.integers(0, p, size=int(ends[-1]))
    symbols[starts] = b
    symbols[starts + 1] = x + which
    symbols[ends - 1] = e
    X = _one_hot_flat(symbols, lengths, p + 4, dtype)
    return TaskData(X, np.eye(2, dtype=dtype)[which])


# --------------------------------------------------- Exp. 3: the 2-sequence problem

def two_sequence(n, rng, T=100, N=3, noise=False, noisy_targets=False, *,
                 dtype=np.float64):
    """Noise and signal on the same channel (Exps. 3a-3c, paper section 5.3).

    Bengio et al.'s 2-sequence problem. One input unit; the length is an integer
    uniform in ``T, ..., T + T // 10`` (inclusive). Class 1 or 2 with probability
    0.5; the first N elements are +1.0 (class 1) or -1.0 (class 2), the later ones
    Gaussian with mean 0 and variance 0.2.

    * Exp. 3a: defaults. Target 1.0 (class 1) or 0.0 (class 2) at the end.
    * Exp. 3b: ``noise=True`` adds Gaussian noise (mean 0, variance 0.2) to the
      first N elements.
    * Exp. 3c: ``noisy_targets=True``: target 0.2 (class 1) or 0.8 (class 2) plus
      Gaussian noise with mean 0 and variance 0.1 (st. dev. 0.32), drawn per
      sequence and not clipped. The paper's 3c has ``noise=False``.

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    rng : numpy.random.Generator
    T : int, default=100
        Minimal length, >= N.
    N : int, default=3
        Number of information-carrying elements, >= 1 (the paper uses 1 and 3).
    noise : bool, default=False
        Exp. 3b.
    noisy_targets : bool, default=False
        Exp. 3c.
    dtype : dtype, default=float64

    Returns
    -------
    TwoSequenceData
        ``X`` (list of ``(T_i, 1)`` arrays), ``y`` ``(n,)`` training targets for
        ``output="last"``, ``y_clean`` ``(n,)`` noise-free targets (for the
        misclassification criterion of 3c: ``|output - y_clean| > 0.1``).
    """
    n = _check_int("n", n, 1)
    N = _check_int("N", N, 1)
    T = _check_int("T", T, N)
    _check_rng(rng)
    dtype = _check_dtype(dtype)
    lengths = _random_lengths(rng, n, T)
    class1 = rng.integers(0, 2, size=n) == 0
    A = rng.normal(0.0, np.sqrt(0.2), size=(n, int(lengths.max())))
    sign = np.where(class1, 1.0, -1.0)[:, None]
    if noise:
        A[:, :N] += sign            # the draws at t <= N serve as the 3b noise
    else:
        A[:, :N] = sign
    X = _split_rows(A.astype(dtype, copy=False)[:, :, None], lengths)
    if noisy_targets:
        y_clean = np.where(class1, 0.2, 0.8)
        y = y_clean + rng.normal(0.0, np.sqrt(0.1), size=n)
    else:
        y_clean = np.where(class1, 1.0, 0.0)
        y = y_clean.copy()
    return TwoSequenceData(X, y.astype(dtype), y_clean.astype(dtype))


# ------------------------------------------------ Exps. 4, 5: adding, multiplication

def _marked_pairs(n, rng, T, low, high, neutral, dtype):
    """Value/marker pairs with two marks (Exps. 4, 5); returns X, X1, X2."""
    n = _check_int("n", n, 1)
    T = _check_int("T", T, 11)
    _check_rng(rng)
    dtype = _check_dtype(dtype)
    lengths = _random_lengths(rng, n, T)
    rows = np.arange(n)
    values = rng.uniform(low, high, size=(n, int(lengths.max())))
    pos1 = rng.integers(0, 10, size=n)              # one of the first ten pairs
    j = rng.integers(0, T // 2 - 1, size=n)         # j-th still-unmarked pair
    pos2 = j + (j >= pos1)
    markers = np.zeros_like(values)
    markers[:, 0] = -1.0
    markers[rows, lengths - 1] = -1.0
    markers[rows, pos1] = 1.0
    markers[rows, pos2] = 1.0
    values[(pos1 == 0) | (pos2 == 0), 0] = neutral  # a marked first pair
    X = _split_rows(np.stack([values, markers], axis=2).astype(dtype, copy=False),
                    lengths)
    return X, values[rows, pos1], values[rows, pos2]


def adding(n, rng, T=100, *, dtype=np.float64):
    """The adding problem (Exp. 4, paper section 5.4).

    Each step is a pair (value uniform in [-1, 1], marker). The length is an integer
    uniform in ``T, ..., T + T // 10``. One of the first ten pairs is marked (value
    X1), then one of the first ``T // 2 - 1`` still-unmarked pairs (value X2);
    marked pairs have marker 1.0, the first and last pairs -1.0 (unless marked), all
    others 0.0. If the first pair is marked, its value is 0.0 (the paper's "X1 is
    set to zero"), in the input too. Target at the end: 0.5 + (X1 + X2) / 4, in
    [0, 1].

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    rng : numpy.random.Generator
    T : int, default=100
        Minimal length, >= 11 (so that the last pair is never among the first ten).
    dtype : dtype, default=float64

    Returns
    -------
    TaskData
        ``X``: list of ``(T_i, 2)`` arrays, column 0 the value, column 1 the marker;
        ``y``: ``(n,)`` targets for ``output="last"``.
    """
    X, X1, X2 = _marked_pairs(n, rng, T, -1.0, 1.0, 0.0, dtype)
    return TaskData(X, (0.5 + (X1 + X2) / 4.0).astype(dtype))


def multiplication(n, rng, T=100, *, dtype=np.float64):
    """The multiplication problem (Exp. 5, paper section 5.5).

    As :func:`adding`, but values are uniform in [0, 1], a marked first pair has
    value 1.0 (the paper's "X1 is set to 1.0"), and the target is X1 * X2.

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    rng : numpy.random.Generator
    T : int, default=100
        Minimal length, >= 11.
    dtype : dtype, default=float64

    Returns
    -------
    TaskData
        ``X``: list of ``(T_i, 2)`` arrays (value, marker); ``y``: ``(n,)``.
    """
    X, X1, X2 = _marked_pairs(n, rng, T, 0.0, 1.0, 1.0, dtype)
    return TaskData(X, (X1 * X2).astype(dtype))


# ------------------------------------------------------------ Exp. 6: temporal order

_TEMPORAL_RANGES = {2: ((10, 20), (50, 60)),
                    3: ((10, 20), (33, 43), (66, 76))}


def temporal_order(n, rng, n_relevant=2, *, dtype=np.float64):
    """Temporal order (Exps. 6a and 6b, paper section 5.6).

    8 one-hot symbols in the order E, B, a, b, c, d, X, Y. The length is an
    integer uniform in 100..110; the sequence starts with E and ends with B (the
    trigger); the element at each relevant position is X or Y (probability 0.5),
    every other one uniform over a, b, c, d. Relevant positions (0-based indices,
    inclusive ranges): 6a ``t1`` in 10..20, ``t2`` in 50..60; 6b ``t1`` in 10..20,
    ``t2`` in 33..43, ``t3`` in 66..76.

    The class is the X/Y pattern read as a binary number (X = 0, Y = 1, first
    relevant symbol most significant): 6a XX -> 0 (Q), XY -> 1 (R), YX -> 2 (S),
    YY -> 3 (U); 6b XXX -> 0 (Q), XXY -> 1 (R), XYX -> 2 (S), XYY -> 3 (U),
    YXX -> 4 (V), YXY -> 5 (A), YYX -> 6 (B), YYY -> 7 (C).

    Parameters
    ----------
    n : int
        Number of sequences, >= 1.
    rng : numpy.random.Generator
    n_relevant : {2, 3}, default=2
        2 for Exp. 6a, 3 for Exp. 6b.
    dtype : dtype, default=float64

    Returns
    -------
    TaskData
        ``X``: list of ``(T_i, 8)`` arrays; ``y``: ``(n,)`` integer labels in
        ``0 .. 2**n_relevant - 1`` for :class:`~lstmforecast.LSTMClassifier`. For
        the paper's setup (one logistic output per class, squared error, success
        when every output is within 0.3 of its target) train an
        :class:`~lstmforecast.LSTMRegressor` on ``one_hot(y, 2**n_relevant)``.
    """
    n = _check_int("n", n, 1)
    if isinstance(n_relevant, bool) or n_relevant not in _TEMPORAL_RANGES:
        raise ValueError(f"n_relevant must be 2 (Exp. 6a) or 3 (Exp. 6b), got "
                         f"{n_relevant!r}")
    _check_rng(rng)
    dtype = _check_dtype(dtype)
    lengths = rng.integers(100, 111, size=n)
    rows = np.arange(n)
    symbols = rng.integers(2, 6, size=(n, int(lengths.max())))   # a, b, c, d
    symbols[:, 0] = 0                                            # E
    symbols[rows, lengths - 1] = 1                               # B
    bits = rng.integers(0, 2, size=(n, n_relevant))              # 0: X, 1: Y
    for k, (lo, hi) in enumerate(_TEMPORAL_RANGES[n_relevant]):
        symbols[rows, rng.integers(lo, hi + 1, size=n)] = 6 + bits[:, k]
    labels = bits @ (1 << np.arange(n_relevant - 1, -1, -1))
    X = _split_rows(_one_hot_dense(symbols, 8, dtype), lengths)
    return TaskData(X, labels.astype(np.int64))
