"""Input validation: turn what users pass into the padded arrays the kernels take.

Accepted ``X``:

* a 2-D array-like or DataFrame ``(n_sequences, n_timesteps)``: univariate sequences
  (a lag matrix, or what a scikit-learn pipeline hands on), validated as a table;
* a 3-D array ``(n_sequences, n_timesteps, n_features)``;
* a list of 2-D arrays ``(T_i, n_features)`` (or 1-D arrays ``(T_i,)``) whose lengths
  may differ.

The kernels get C-contiguous arrays of the model dtype. A list is padded into a new
array; an array already in that form is passed on as it is, since the kernels only
read it (a read-only or unaligned one is copied: Numba would compile every kernel
again for it). The caller's arrays are never modified.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from sklearn.utils.validation import check_array, validate_data


@dataclass
class Sequences:
    """Zero-padded sequences: ``X (N, T, D)`` and ``lengths (N,)`` (int64)."""

    X: np.ndarray
    lengths: np.ndarray
    ragged: bool
    table: bool

    @property
    def n_sequences(self):
        return self.X.shape[0]


def _is_ragged_list(X):
    """True when X is a list/tuple of sequences rather than a table of numbers."""
    if not isinstance(X, (list, tuple)) or len(X) == 0:
        return False
    if all(type(item) is np.ndarray for item in X):
        shapes = {item.shape for item in X}
        return any(len(shape) == 2 for shape in shapes) or len(shapes) > 1
    shapes = []
    for item in X:
        if np.isscalar(item) or item is None:
            return False
        shape = np.shape(item)
        shapes.append(shape)
    if any(len(shape) == 2 for shape in shapes):
        return True
    return len({shape for shape in shapes}) > 1


def _plain_numeric(item, dtype, max_ndim):
    """``item`` in ``dtype`` when it is a plain, non-empty, finite real NumPy array
    of at most ``max_ndim`` dimensions; None when :func:`check_array` must look at
    it (and give its error message).

    ``check_array`` costs about 0.1 ms per call (mostly its DataFrame detection),
    several times the kernels' time per sequence when a list holds thousands of
    short sequences, as in on-line training.
    """
    if type(item) is not np.ndarray or item.dtype.kind not in "biuf" \
            or not 1 <= item.ndim <= max_ndim or item.shape[0] == 0:
        return None
    arr = item.astype(dtype, copy=False)
    # the check runs after the cast: a float64 value beyond float32 becomes inf
    if arr.dtype.kind == "f" and not np.isfinite(arr).all():
        return None
    return arr


def _check_sequence(item, index, dtype):
    arr = _plain_numeric(item, dtype, 2)
    if arr is None:
        arr = check_array(item, ensure_2d=False, allow_nd=True, dtype=dtype,
                          input_name=f"X[{index}]", ensure_min_samples=1)
    if arr.ndim == 1:
        arr = arr[:, None]
    if arr.ndim != 2:
        raise ValueError(f"X[{index}] must be a 1-D (T,) or 2-D (T, n_features) array, "
                         f"got {arr.ndim} dimensions")
    if arr.shape[1] == 0:
        raise ValueError(f"X[{index}] has 0 features; at least 1 is required")
    return arr


def _pack_plain(X, dtype):
    """``(X3, lengths)``: the sequences of ``X`` zero-padded into one array, when
    they are plain, non-empty, finite real NumPy arrays of one shape but for their
    lengths; None when any is not, so that :func:`_check_sequence` looks at each
    and names the one at fault.

    One finiteness check for the whole padded array: checking sequence by sequence
    cost about 6 microseconds each, a tenth of an on-line trial's time on the
    paper's adding problem (500 sequences of about 100 steps per call).
    """
    first = X[0]
    if type(first) is not np.ndarray or first.ndim not in (1, 2):
        return None
    tail = first.shape[1:]
    if tail == (0,) or not all(type(item) is np.ndarray and item.dtype.kind in "biuf"
                               and item.shape[1:] == tail for item in X):
        return None
    lengths = np.fromiter((item.shape[0] for item in X), dtype=np.int64, count=len(X))
    if lengths.min() == 0:
        return None
    X3 = np.zeros((len(X), int(lengths.max()), tail[0] if tail else 1), dtype=dtype)
    dest = X3[..., 0] if not tail else X3     # 1-D items fill the one feature
    with np.errstate(over="ignore"):
        for i, item in enumerate(X):
            dest[i, :item.shape[0]] = item     # casts as astype would
    # the check runs after the cast: a float64 value beyond float32 becomes inf
    if not np.isfinite(X3).all():
        return None
    return X3, lengths


def _kernel_input(X):
    """``X`` itself (the kernels only read it, so the caller's array is not copied),
    or a copy where it is read-only or unaligned: Numba compiles every kernel
    again for such arrays."""
    return X if X.flags.writeable and X.flags.aligned else X.copy()


def check_sequences(estimator, X, dtype, reset):
    """Validate ``X`` and return :class:`Sequences` in ``dtype``.

    On ``reset`` the estimator's ``n_features_in_`` (and ``feature_names_in_`` for a
    DataFrame), ``input_size_`` and ``_table_input`` are set; otherwise ``X`` is
    checked against them.
    """
    ragged = _is_ragged_list(X)
    packed = _pack_plain(X, dtype) if ragged else None
    if packed is not None:
        out = Sequences(*packed, ragged=True, table=False)
    elif ragged:
        seqs = [_check_sequence(item, i, dtype) for i, item in enumerate(X)]
        n_feat = {s.shape[1] for s in seqs}
        if len(n_feat) > 1:
            raise ValueError("the sequences in X have different numbers of features: "
                             f"{sorted(n_feat)}")
        lengths = np.array([s.shape[0] for s in seqs], dtype=np.int64)
        D = seqs[0].shape[1]
        X3 = np.zeros((len(seqs), int(lengths.max()), D), dtype=dtype)
        for i, s in enumerate(seqs):
            X3[i, :s.shape[0]] = s
        out = Sequences(X3, lengths, ragged=True, table=False)
    else:
        ndim = getattr(X, "ndim", None)
        if ndim is None:
            ndim = np.ndim(np.asarray(X, dtype=object)) if not hasattr(X, "shape") \
                else len(X.shape)
        if ndim == 3:
            X3 = check_array(X, allow_nd=True, dtype=dtype, input_name="X",
                             copy=False, order="C")
            if X3.shape[1] == 0:
                raise ValueError("X has sequences of length 0; at least 1 time step "
                                 "is required")
            if X3.shape[2] == 0:
                raise ValueError("X has 0 features per time step; at least 1 is "
                                 "required")
            lengths = np.full(X3.shape[0], X3.shape[1], dtype=np.int64)
            out = Sequences(_kernel_input(X3), lengths, ragged=False, table=False)
        else:
            if reset or getattr(estimator, "_table_input", False):
                X2 = validate_data(estimator, X, reset=reset, dtype=dtype, copy=False,
                                   order="C")
            else:
                X2 = check_array(X, dtype=dtype, input_name="X", copy=False, order="C")
            X3 = np.ascontiguousarray(X2[:, :, None])
            lengths = np.full(X3.shape[0], X3.shape[1], dtype=np.int64)
            out = Sequences(_kernel_input(X3), lengths, ragged=False, table=True)
    D = out.X.shape[2]
    if reset:
        estimator._table_input = out.table
        estimator.input_size_ = D
        if not out.table:
            estimator.n_features_in_ = D
            if hasattr(estimator, "feature_names_in_"):
                del estimator.feature_names_in_
    elif D != estimator.input_size_:
        raise ValueError(f"X has {D} features per time step, but "
                         f"{type(estimator).__name__} is expecting "
                         f"{estimator.input_size_} features as input")
    return out


def _as_target_array(y, index, dtype, numeric):
    if numeric:
        arr = _plain_numeric(y, dtype, 3) if index is not None else None
        if arr is not None:
            return arr
        return check_array(y, ensure_2d=False, allow_nd=True, dtype=dtype,
                           input_name="y" if index is None else f"y[{index}]")
    arr = np.asarray(y)
    if arr.dtype.kind == "c":
        raise ValueError("Complex data not supported in y")
    return arr


def step_targets(seqs, y, output, dtype, numeric=True):
    """Targets as a list (per sequence) of arrays ``(n_target_steps, K)``.

    For ``output="last"`` each sequence has one target row; for
    ``output="sequence"`` one row per time step. ``numeric=False`` keeps labels as
    they are (for classifiers). Returns ``(rows, squeeze)`` where ``squeeze`` says the
    caller's ``y`` had no output dimension.
    """
    N = seqs.n_sequences
    if output == "last":
        arr = _as_target_array(y, None, dtype, numeric)
        if arr.ndim not in (1, 2):
            raise ValueError(f"y must be 1-D (n_sequences,) or 2-D (n_sequences, "
                             f"n_outputs) for output='last', got shape {arr.shape}")
        if arr.shape[0] != N:
            raise ValueError(f"X and y have inconsistent numbers of sequences: "
                             f"{N} and {arr.shape[0]}")
        squeeze = arr.ndim == 1
        rows = arr.reshape(N, 1, -1)
        return [rows[i] for i in range(N)], squeeze
    if seqs.ragged or isinstance(y, (list, tuple)):
        if len(y) != N:
            raise ValueError(f"X and y have inconsistent numbers of sequences: "
                             f"{N} and {len(y)}")
        items = [_as_target_array(yi, i, dtype, numeric) for i, yi in enumerate(y)]
    else:
        arr = _as_target_array(y, None, dtype, numeric)
        if arr.ndim not in (2, 3) or arr.shape[0] != N:
            raise ValueError(f"y must have shape (n_sequences, n_timesteps[, "
                             f"n_outputs]) = ({N}, {seqs.X.shape[1]}, ...) for "
                             f"output='sequence', got {arr.shape}")
        items = [arr[i] for i in range(N)]
    squeeze = all(np.ndim(item) == 1 for item in items)
    rows = []
    for i, item in enumerate(items):
        if item.ndim not in (1, 2) or item.shape[0] != seqs.lengths[i]:
            raise ValueError(f"y[{i}] must have {seqs.lengths[i]} time steps like "
                             f"X[{i}], got shape {item.shape}")
        rows.append(item.reshape(item.shape[0], -1))
    if len({r.shape[1] for r in rows}) > 1:
        raise ValueError("the target sequences in y have different numbers of outputs")
    return rows, squeeze


def check_mask(seqs, mask, output, dtype):
    """Target weights ``(N, T)``: ones on valid steps (or the last one) by default."""
    N, T = seqs.X.shape[:2]
    M = np.zeros((N, T), dtype=dtype)
    if output == "last":
        if mask is not None:
            raise ValueError("mask is only used with output='sequence'")
        M[np.arange(N), seqs.lengths - 1] = 1.0
        return M
    if mask is None:
        for i, length in enumerate(seqs.lengths):
            M[i, :length] = 1.0
        return M
    items = mask if isinstance(mask, (list, tuple)) else list(np.asarray(mask))
    if len(items) != N:
        raise ValueError(f"mask has {len(items)} sequences, X has {N}")
    for i, item in enumerate(items):
        m = _plain_numeric(item, dtype, 1)
        if m is None:
            m = check_array(item, ensure_2d=False, dtype=dtype,
                            input_name=f"mask[{i}]")
        if m.ndim != 1 or m.shape[0] < seqs.lengths[i]:
            raise ValueError(f"mask[{i}] must be 1-D with {seqs.lengths[i]} steps, "
                             f"got shape {m.shape}")
        if np.any(m < 0):
            raise ValueError(f"mask[{i}] has negative weights")
        M[i, :seqs.lengths[i]] = m[:seqs.lengths[i]]
    if not np.any(M > 0):
        raise ValueError("mask selects no target step")
    return M


def pad_targets(seqs, rows, output, dtype):
    """Dense ``Y (N, T, K)`` from per-sequence target rows."""
    N, T = seqs.X.shape[:2]
    K = rows[0].shape[1]
    Y = np.zeros((N, T, K), dtype=dtype)
    for i, r in enumerate(rows):
        if output == "last":
            Y[i, seqs.lengths[i] - 1] = r[0]
        else:
            Y[i, :r.shape[0]] = r
    return Y
