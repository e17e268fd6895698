"""Safe persistence: ``estimator.save(path)`` and ``lstmforecast.load(path)``.

* round trips of both estimators over the accepted input forms, cells, dtypes, label
  types and output modes: identical fitted state, identical predictions and
  probabilities (``np.array_equal``), and identical continued training
  (``partial_fit`` and ``warm_start``: the optimizer and random-generator state are
  saved);
* a counted matrix of malformed files (empty, truncated, random, pickles, object
  arrays, tampered headers and arrays, a directory): each is a ``ValueError`` naming
  the problem, runs no code from the file (a ``__reduce__`` marker stays unset) and
  writes nothing; a missing path is a ``FileNotFoundError``;
* saving: exact paths (no suffix added), atomic replacement, unfitted estimators,
  parameters that JSON cannot hold, unknown attributes, pickling still working.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import zipfile

import numpy as np
import pandas as pd
import pytest
from sklearn.base import BaseEstimator, clone
from sklearn.exceptions import NotFittedError

import lstmforecast
from lstmforecast import LSTMClassifier, LSTMRegressor, _persistence, load

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")


# --------------------------------------------------------------------- helpers
def _reg(**kwargs):
    params = dict(hidden_size=3, max_epochs=2, batch_size=8, random_state=0)
    params.update(kwargs)
    return LSTMRegressor(**params)


def _clf(**kwargs):
    params = dict(hidden_size=3, max_epochs=2, batch_size=8, random_state=0)
    params.update(kwargs)
    return LSTMClassifier(**params)


def _table(seed=0, n=16, T=5):
    X = np.random.default_rng(seed).normal(size=(n, T))
    return X, X[:, 0] + X[:, 1]


def _cube(seed=0, n=16, T=5, D=2):
    X = np.random.default_rng(seed).normal(size=(n, T, D))
    return X, X[:, 0, 0] - X[:, -1, 1]


def _ragged(seed=0, lengths=(3, 6, 4, 5, 2, 7, 4, 3)):
    rng = np.random.default_rng(seed)
    return [rng.normal(size=(T, 2)) for T in lengths]


def _same(a, b):
    """Exactly equal: arrays (same dtype), lists of arrays, scalars, generators."""
    if isinstance(a, np.random.Generator):
        return a.bit_generator.state == b.bit_generator.state
    if isinstance(a, np.ndarray):
        return (isinstance(b, np.ndarray) and a.dtype == b.dtype
                and a.shape == b.shape and np.array_equal(a, b))
    if isinstance(a, list) and any(isinstance(x, np.ndarray) for x in a):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return a == b


def _assert_same_state(original, loaded):
    assert type(loaded) is type(original)
    assert set(vars(loaded)) == set(vars(original))
    for name, value in vars(original).items():
        assert _same(value, getattr(loaded, name)), name


def _assert_same_predictions(original, loaded, X):
    assert _same(original.predict(X), loaded.predict(X))
    if hasattr(original, "predict_proba"):
        assert _same(original.predict_proba(X), loaded.predict_proba(X))


def _snapshot(folder):
    """Names, sizes and modification times of everything under ``folder``."""
    out = []
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            st = os.stat(os.path.join(root, name))
            out.append((os.path.relpath(os.path.join(root, name), folder),
                        st.st_size, st.st_mtime_ns))
    return sorted(out)


# ----------------------------------------------------------- 1. round trips
def _case_reg_table_f32():
    X, y = _table(1)
    return _reg().fit(X, y), X


def _case_reg_cube_lstm1997_f64_multi():
    X, y = _cube(2, D=3)
    Y = np.column_stack([y, -y])
    est = _reg(cell="lstm1997", hidden_size=4, block_size=2, dtype="float64",
               input_gate_bias=[-1.0, -2.0], output_gate_bias=-1.5,
               hidden_bias="gates", output_bias=False, optimizer="sgd",
               momentum=0.5, nesterov=True, clip_norm=1.0, alpha=1e-3)
    return est.fit(X, Y), X


def _case_reg_sequence_cube():
    X, _ = _cube(3)
    return _reg(output="sequence", num_layers=2).fit(X, X[:, :, 0]), X


def _case_reg_sequence_ragged_f64():
    X = _ragged(4)
    y = [x[:, 0] * 2 for x in X]
    mask = [np.ones(len(x)) for x in X]
    return _reg(output="sequence", dtype="float64").fit(X, y, mask=mask), X


def _case_reg_dataframe():
    X, y = _table(5)
    df = pd.DataFrame(X, columns=[f"lag_{i}" for i in range(X.shape[1])])
    est = _reg().fit(df, y)
    assert list(est.feature_names_in_) == list(df.columns)
    return est, df


def _case_reg_truncated_sigmoid():
    X, y = _cube(6)
    est = _reg(cell="lstm1997", hidden_size=2, gradient="truncated",
               output_activation="sigmoid", batch_size=1, update="step",
               max_epochs=1)
    return est.fit(X, 1 / (1 + np.exp(-y))), X


def _case_reg_truncated_log_loss():
    X, y = _cube(6)
    est = _reg(cell="lstm1997", hidden_size=2, gradient="truncated",
               output_activation="sigmoid", loss="log_loss", batch_size=1,
               update="step", max_epochs=1)
    return est.fit(X, 1 / (1 + np.exp(-y))), X


def _case_reg_truncated_table10():
    X, y = _cube(16)
    est = _reg(cell="lstm1997", hidden_size=4, block_size=2, squashing="table10",
               gradient="truncated", batch_size=1, update="step", max_epochs=1,
               dtype="float64")
    return est.fit(X, y), X


def _case_reg_exp2_net_input_to_output():
    X, y = _cube(17, n=10, T=5, D=3)
    est = _reg(cell="lstm1997", hidden_size=2, block_size=1, squashing="exp2",
               output_gate=False, recurrent_weights=False, input_to_output=True,
               hidden_bias="none", output_bias=False, dtype="float64")
    return est.fit(X, y), X


def _case_reg_truncated_exp2_centered():
    X, y = _cube(18, n=10, T=5, D=3)
    est = _reg(cell="lstm1997", hidden_size=2, block_size=1,
               squashing="exp2_centered", output_gate=False, input_to_output=True,
               gradient="truncated", batch_size=1, update="step", max_epochs=1,
               dtype="float64")
    return est.fit(X, y), X


def _case_reg_early_stopping():
    X, y = _table(7, n=20)
    est = _reg(early_stopping=True, validation_fraction=0.25, max_epochs=3)
    est = est.fit(X, y)
    assert len(est.validation_scores_) == 3
    return est, X


def _labels(values, y):
    values = np.asarray(values)
    qs = np.quantile(y, np.linspace(0, 1, len(values) + 1)[1:-1])
    return values[np.searchsorted(qs, y)]


def _case_clf_binary_str():
    X, y = _table(8)
    est = _clf().fit(X, _labels(["no", "yes"], y))
    assert est.classes_.dtype.kind == "U"
    return est, X


def _case_clf_binary_int():
    X, y = _table(9)
    est = _clf(dtype="float64").fit(X, _labels([0, 1], y))
    assert est._single_output
    return est, X


def _case_clf_multiclass_int():
    X, y = _cube(10)
    est = _clf(cell="lstm1997", hidden_size=4, block_size=2)
    return est.fit(X, _labels([-1, 3, 7], y)), X


def _case_clf_multiclass_str_object():
    X, y = _table(11, n=18)
    labels = pd.Series(_labels(["cat", "dog", "emu"], y).tolist(), dtype=object)
    est = _clf(dtype="float64").fit(X, labels)
    assert est.classes_.dtype == object
    return est, X


def _case_clf_sequence_str():
    X, _ = _cube(12)
    y = np.where(X[:, :, 0] > 0, "up", "down")
    return _clf(output="sequence").fit(X, y), X


def _case_clf_bool_labels():
    X, y = _table(13)
    return _clf().fit(X, y > 0), X


def _case_clf_float_labels_softmax():
    X, y = _table(14)
    est = _clf(output_activation="softmax").fit(X, _labels([1.0, 2.0], y))
    assert not est._single_output
    return est, X


def _case_clf_sigmoid_multiclass():
    X, y = _table(15, n=18)
    return _clf(output_activation="sigmoid").fit(X, _labels([0, 1, 2], y)), X


def _case_clf_sigmoid_log_loss_multiclass():
    X, y = _table(16, n=18)
    est = _clf(output_activation="sigmoid", loss="log_loss")
    return est.fit(X, _labels([0, 1, 2], y)), X


ROUND_TRIP_CASES = {
    "reg_table_float32": _case_reg_table_f32,
    "reg_cube_lstm1997_float64_multioutput": _case_reg_cube_lstm1997_f64_multi,
    "reg_sequence_cube_2layers": _case_reg_sequence_cube,
    "reg_sequence_ragged_float64": _case_reg_sequence_ragged_f64,
    "reg_dataframe": _case_reg_dataframe,
    "reg_truncated_sigmoid": _case_reg_truncated_sigmoid,
    "reg_truncated_table10": _case_reg_truncated_table10,
    "reg_truncated_log_loss": _case_reg_truncated_log_loss,
    "reg_exp2_net_input_to_output": _case_reg_exp2_net_input_to_output,
    "reg_truncated_exp2_centered": _case_reg_truncated_exp2_centered,
    "reg_early_stopping": _case_reg_early_stopping,
    "clf_binary_str": _case_clf_binary_str,
    "clf_binary_int": _case_clf_binary_int,
    "clf_multiclass_int_lstm1997": _case_clf_multiclass_int,
    "clf_multiclass_str_object": _case_clf_multiclass_str_object,
    "clf_sequence_str": _case_clf_sequence_str,
    "clf_bool_labels": _case_clf_bool_labels,
    "clf_float_labels_softmax": _case_clf_float_labels_softmax,
    "clf_sigmoid_multiclass": _case_clf_sigmoid_multiclass,
    "clf_sigmoid_log_loss_multiclass": _case_clf_sigmoid_log_loss_multiclass,
}


@pytest.mark.parametrize("case", ROUND_TRIP_CASES)
def test_round_trip_is_exact(case, tmp_path):
    est, X = ROUND_TRIP_CASES[case]()
    path = tmp_path / "model.npz"
    est.save(path)
    loaded = load(path)
    _assert_same_state(est, loaded)
    assert loaded.get_params() == est.get_params()
    _assert_same_predictions(est, loaded, X)
    assert loaded.score(X, est.predict(X)) == est.score(X, est.predict(X))
    # Nothing but the model was written.
    assert os.listdir(tmp_path) == ["model.npz"]


def test_round_trip_covers_both_dtypes_cells_outputs_and_label_kinds():
    fitted = [ROUND_TRIP_CASES[c]()[0] for c in ("reg_table_float32",
                                                 "clf_multiclass_int_lstm1997",
                                                 "reg_sequence_ragged_float64")]
    assert {e.params_.dtype.name for e in fitted} == {"float32", "float64"}
    assert {e._net["cell"] for e in fitted} == {"lstm", "lstm1997"}
    assert {e._net["output"] for e in fitted} == {"last", "sequence"}


CONTINUE_CASES = ["reg_table_float32", "reg_truncated_sigmoid", "reg_truncated_table10",
                  "reg_truncated_log_loss", "clf_sigmoid_log_loss_multiclass",
                  "reg_exp2_net_input_to_output", "reg_truncated_exp2_centered",
                  "clf_multiclass_str_object", "clf_sequence_str"]


@pytest.mark.parametrize("case", CONTINUE_CASES)
def test_loaded_model_continues_training_exactly(case, tmp_path):
    est, X = ROUND_TRIP_CASES[case]()
    y = est.predict(X)  # any targets of the right form
    est.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    twin = pickle.loads(pickle.dumps(est))
    est.partial_fit(X, y)
    loaded.partial_fit(X, y)
    assert _same(est.params_, loaded.params_)
    assert est.n_iter_ == loaded.n_iter_ and est.t_ == loaded.t_
    _assert_same_predictions(est, loaded, X)
    # warm_start=True continues from the saved optimizer state and shuffling RNG.
    twin.set_params(warm_start=True, max_epochs=2)
    warm = load(tmp_path / "m").set_params(warm_start=True, max_epochs=2)
    twin.fit(X, y)
    warm.fit(X, y)
    assert _same(twin.params_, warm.params_)
    assert twin.loss_curve_ == warm.loss_curve_
    _assert_same_state(twin, warm)


def test_loaded_model_pickles_and_clones(tmp_path):
    est, X = _case_clf_binary_str()
    est.save(tmp_path / "m.npz")
    loaded = load(tmp_path / "m.npz")
    again = pickle.loads(pickle.dumps(loaded))
    _assert_same_predictions(est, again, X)
    assert clone(loaded).get_params() == est.get_params()
    # Saving does not change the estimator, which still pickles.
    _assert_same_state(est, pickle.loads(pickle.dumps(est)))


def test_file_layout_is_plain_npz_with_json_header(tmp_path):
    est, _ = _case_clf_binary_str()
    est.save(tmp_path / "m.npz")
    with np.load(tmp_path / "m.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("header").tobytes().decode("ascii"))
    assert header["format"] == "lstmforecast-model"
    assert header["format_version"] == 1
    assert header["library_version"] == lstmforecast.__version__
    assert header["estimator"] == "LSTMClassifier"
    assert header["params"] == est.get_params()
    assert header["fitted"]["classes_"] == {"dtype": "<U3", "values": ["no", "yes"]}
    expected = {"params_", "_layout", "_l2_mask", "_train_mask", "_opt_state",
                "_opt_step"}
    if hasattr(est, "last_batch_losses_"):
        expected.add("last_batch_losses_")
    assert set(arrays) == set(header["arrays"]) == expected
    for name, arr in arrays.items():
        assert arr.dtype != object
        assert header["arrays"][name] == {"dtype": arr.dtype.name,
                                          "shape": list(arr.shape)}
    with zipfile.ZipFile(tmp_path / "m.npz") as zf:
        assert sorted(zf.namelist()) == sorted(f"{k}.npy" for k in [*arrays, "header"])


def test_numeric_classes_are_an_array(tmp_path):
    est, X = _case_clf_multiclass_int()
    est.save(tmp_path / "m")
    with np.load(tmp_path / "m", allow_pickle=False) as z:
        assert np.array_equal(z["classes_"], est.classes_)
        header = json.loads(z["header"].tobytes())
    assert header["fitted"]["classes_"] == {"dtype": est.classes_.dtype.name}


# ------------------------------------------------------------------ 2. saving
def test_save_unfitted_raises_not_fitted(tmp_path):
    for est in (_reg(), _clf()):
        with pytest.raises(NotFittedError):
            est.save(tmp_path / "m.npz")
    assert os.listdir(tmp_path) == []


def test_save_uses_the_exact_path_str_or_pathlike(tmp_path):
    est, X = _case_reg_table_f32()
    est.save(str(tmp_path / "model"))           # no suffix added
    est.save(tmp_path / "model.bin")            # any suffix kept
    est.save(os.fsencode(tmp_path / "model.npz"))
    assert sorted(os.listdir(tmp_path)) == ["model", "model.bin", "model.npz"]
    for name in ("model", "model.bin", "model.npz"):
        _assert_same_predictions(est, load(tmp_path / name), X)
        _assert_same_predictions(est, load(str(tmp_path / name)), X)


def test_save_replaces_an_existing_file(tmp_path):
    first, X = _case_reg_table_f32()
    second = _reg(random_state=1).fit(X, X[:, 0])
    first.save(tmp_path / "m")
    second.save(tmp_path / "m")
    _assert_same_predictions(second, load(tmp_path / "m"), X)
    assert os.listdir(tmp_path) == ["m"]


def test_crash_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    est, X = _case_reg_table_f32()
    est.save(tmp_path / "m")
    before = (tmp_path / "m").read_bytes()

    def crash(file, *args, **kwargs):
        file.write(b"PK\x03\x04 half a model")
        raise KeyboardInterrupt

    monkeypatch.setattr(_persistence.np, "savez", crash)
    with pytest.raises(KeyboardInterrupt):
        _reg(random_state=3).fit(X, X[:, 1]).save(tmp_path / "m")
    monkeypatch.undo()
    assert (tmp_path / "m").read_bytes() == before
    assert os.listdir(tmp_path) == ["m"]  # no temporary file left
    _assert_same_predictions(est, load(tmp_path / "m"), X)


def test_save_into_missing_directory_or_onto_directory(tmp_path):
    est, _ = _case_reg_table_f32()
    with pytest.raises(FileNotFoundError):
        est.save(tmp_path / "nope" / "m")
    (tmp_path / "d").mkdir()
    with pytest.raises(OSError):
        est.save(tmp_path / "d")
    assert os.listdir(tmp_path) == ["d"]  # no temporary file left
    assert os.listdir(tmp_path / "d") == []


def test_random_state_instance_is_saved_as_none_with_a_note(tmp_path):
    X, y = _table(1)
    est = _reg(random_state=np.random.RandomState(0)).fit(X, y)
    with pytest.warns(UserWarning, match="random_state") as record:
        est.save(tmp_path / "m")
    assert record[0].filename == __file__  # the warning points at the caller
    loaded = load(tmp_path / "m")
    assert loaded.random_state is None
    _assert_same_predictions(est, loaded, X)
    with np.load(tmp_path / "m", allow_pickle=False) as z:
        header = json.loads(z["header"].tobytes())
    assert any("random_state" in note for note in header["notes"])
    # The training generator is saved: continued training is still identical.
    est.partial_fit(X, y)
    loaded.partial_fit(X, y)
    assert _same(est.params_, loaded.params_)


def test_array_hyper_parameters_become_lists(tmp_path):
    X, y = _cube(2)
    est = _reg(cell="lstm1997", hidden_size=4, block_size=2,
               input_gate_bias=np.array([-1.0, -3.0]),
               learning_rate=np.float32(0.01), max_epochs=np.int64(2))
    est.fit(X, y)
    est.save(tmp_path / "m")
    loaded = load(tmp_path / "m")
    assert loaded.input_gate_bias == [-1.0, -3.0]
    assert loaded.max_epochs == 2 and type(loaded.max_epochs) is int
    _assert_same_predictions(est, loaded, X)


def test_unsaveable_state_is_a_clear_error(tmp_path):
    est, X = _case_reg_table_f32()
    bad = clone(est).fit(X, X[:, 0])
    bad.tol = {"not": "a number"}
    with pytest.raises(ValueError, match="tol"):
        bad.save(tmp_path / "a")
    extra = clone(est).fit(X, X[:, 0])
    extra.scaler_mean_ = 1.0
    with pytest.raises(ValueError, match="scaler_mean_"):
        extra.save(tmp_path / "b")
    nan = clone(est).fit(X, X[:, 0])
    nan.params_[0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        nan.save(tmp_path / "c")

    class MyRegressor(LSTMRegressor):
        pass

    sub = MyRegressor(hidden_size=2, max_epochs=1).fit(X, X[:, 0])
    with pytest.raises(TypeError, match="only"):
        sub.save(tmp_path / "d")
    assert os.listdir(tmp_path) == []


# ------------------------------------------------------- 3. malformed files
# Code in a file must never run: unpickling an _Evil object sets this marker.
_MARKER = {"ran": False}


def _set_marker():
    _MARKER["ran"] = True
    return "pwned"


class _Evil:
    def __reduce__(self):
        return (_set_marker, ())


def test_the_marker_works():
    # The side-effect check can fail: a plain unpickle of the payloads runs code.
    for payload in (pickle.dumps(_Evil()),
                    pickle.dumps([_Evil()], protocol=0)):
        _MARKER["ran"] = False
        pickle.loads(payload)
        assert _MARKER["ran"]
    _MARKER["ran"] = False


def _write_npz(dst, arrays, header=None):
    """Write ``arrays`` (+ a header: a dict, raw bytes or an array) with np.savez."""
    arrays = dict(arrays)
    if isinstance(header, dict):
        header = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    elif isinstance(header, bytes):
        header = np.frombuffer(header, dtype=np.uint8)
    if header is not None:
        arrays["header"] = header
    with open(dst, "wb") as f:
        np.savez(f, **arrays)


def _tamper(which, mutate):
    """A case: rewrite the good ``which`` file after ``mutate(header, arrays)``.

    ``mutate`` edits in place, or returns the header to write (bytes, an array).
    """
    def make(good, dst):
        with np.load(good[which], allow_pickle=False) as z:
            arrays = {k: z[k].copy() for k in z.files}
        header = json.loads(arrays.pop("header").tobytes())
        replaced = mutate(header, arrays)
        _write_npz(dst, arrays, header if replaced is None else replaced)
        return dst
    return make


def _raw(make_bytes):
    def make(good, dst):
        dst.write_bytes(make_bytes(good))
        return dst
    return make


def _cut(n):
    def cut(good):
        data = good["reg"].read_bytes()
        return data[:n] if n >= 0 else data[:len(data) + n]
    return cut


def _set(path, value):
    """Mutation that sets header[path...] = value (``...`` deletes)."""
    def mutate(header, arrays):
        node = header
        for key in path[:-1]:
            node = node[key]
        if value is ...:
            del node[path[-1]]
        else:
            node[path[-1]] = value
    return mutate


def _both(*mutations):
    def mutate(header, arrays):
        for m in mutations:
            m(header, arrays)
    return mutate


def _arr(name, fn, manifest=False):
    """Mutation that replaces arrays[name] by fn(arrays[name]) (None: delete)."""
    def mutate(header, arrays):
        value = fn(arrays.get(name))
        if value is None:
            arrays.pop(name)
            if manifest:
                header["arrays"].pop(name)
            return
        arrays[name] = value
        if manifest:
            header["arrays"][name] = {"dtype": np.asarray(value).dtype.name,
                                      "shape": list(np.shape(value))}
    return mutate


def _evil_pickle(protocol):
    def make(good, dst):
        est = load(good["reg"])
        dst.write_bytes(pickle.dumps((_Evil(), est), protocol=protocol))
        return dst
    return make


def _object_array(name):
    def make(good, dst):
        with np.load(good["reg"], allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        arrays[name] = np.array([_Evil(), 1.0], dtype=object)
        with open(dst, "wb") as f:
            np.savez(f, allow_pickle=True, **arrays)
        return dst
    return make


def _npy_file(good, dst):
    with open(dst, "wb") as f:
        np.save(f, np.arange(5.0))
    return dst


def _zip_with(extra_members, drop=()):
    """Copy the good regressor file's members into a new zip, plus extras."""
    def make(good, dst):
        with zipfile.ZipFile(good["reg"]) as src, \
                zipfile.ZipFile(dst, "w") as out:
            for info in src.infolist():
                if info.filename not in drop:
                    out.writestr(info.filename, src.read(info))
            for name, data in extra_members(src).items():
                with pytest.warns(UserWarning, match="Duplicate") \
                        if name in src.namelist() else contextlib.nullcontext():
                    out.writestr(name, data)
        return dst
    return make


def _flip_byte_in_params(good, dst):
    data = bytearray(good["reg"].read_bytes())
    with zipfile.ZipFile(good["reg"]) as zf:
        info = zf.getinfo("params_.npy")
    # local file header (30 bytes + name + extra), then the stored .npy data
    with open(good["reg"], "rb") as f:
        f.seek(info.header_offset + 26)
        n_name, n_extra = np.frombuffer(f.read(4), dtype="<u2")
    start = info.header_offset + 30 + int(n_name) + int(n_extra)
    data[start + info.file_size - 3] ^= 0xFF  # inside the last weight
    dst.write_bytes(bytes(data))
    return dst


def _directory(good, dst):
    dst.mkdir()
    return dst


def _header_json(text):
    return lambda header, arrays: text.encode()


MALFORMED = {
    # not an npz at all
    "empty": (_raw(lambda g: b""), "empty"),
    "truncated_to_signature": (_raw(_cut(4)), "truncated"),
    "truncated_at_100_bytes": (_raw(_cut(100)), "truncated"),
    "truncated_at_half": (_raw(lambda g: _cut(len(g["reg"].read_bytes()) // 2)(g)),
                          "truncated"),
    "truncated_by_1_byte": (_raw(_cut(-1)), "truncated"),
    "truncated_in_central_directory": (_raw(_cut(-40)), "truncated"),
    "random_bytes": (_raw(lambda g: np.random.default_rng(0).bytes(4000)),
                     "signature"),
    "random_bytes_after_zip_signature": (
        _raw(lambda g: b"PK\x03\x04" + np.random.default_rng(1).bytes(4000)),
        "damaged"),
    "flipped_byte_in_weights": (_flip_byte_in_params, "CRC"),
    "pickle_renamed_npz": (_evil_pickle(pickle.HIGHEST_PROTOCOL), "pickle"),
    "pickle_protocol_0_renamed_npz": (_evil_pickle(0), "pickle"),
    "npy_renamed_npz": (_npy_file, "npy"),
    "directory": (_directory, "directory"),
    # archives that hold Python objects or the wrong members
    "object_array_as_weights": (_object_array("params_"), "Python objects"),
    "object_array_as_header": (_object_array("header"), "Python objects"),
    "object_array_extra_member": (_object_array("evil"), "unknown array"),
    "no_header_member": (_zip_with(lambda src: {}, drop=("header.npy",)),
                         "no 'header'"),
    "duplicate_member": (_zip_with(lambda src: {"params_.npy":
                                                src.read("params_.npy")}),
                         "repeats"),
    "non_npy_member": (_zip_with(lambda src: {"README.txt": b"hi"}), "non-.npy"),
    "unknown_array_member": (_tamper("reg", _arr("evil", lambda a: np.ones(3))),
                             "unknown array"),
    "unknown_array_in_manifest_too": (
        _tamper("reg", _arr("evil", lambda a: np.ones(3), manifest=True)),
        "unknown array"),
    "missing_array": (_tamper("reg", _arr("_layout", lambda a: None)),
                      r"lacks the array\(s\) \['_layout'\]"),
    "missing_array_and_manifest": (
        _tamper("reg", _arr("_opt_state", lambda a: None, manifest=True)),
        "lack"),
    # the header
    "header_not_json": (_tamper("reg", _header_json("{not json")), "JSON"),
    "header_not_utf8": (_tamper("reg", lambda h, a: b"\xff\xfe{}"), "JSON"),
    "header_json_list": (_tamper("reg", _header_json("[1, 2]")), "JSON object"),
    "header_duplicate_key": (
        _tamper("reg", lambda h, a: json.dumps(h)[:-1].encode()
                + b', "estimator": "LSTMRegressor"}'), "repeats"),
    "header_float_array": (_tamper("reg", lambda h, a: np.zeros(4)), "uint8"),
    "unknown_class": (_tamper("reg", _set(["estimator"], "Pipeline")), "allow-list"),
    "dotted_class_path": (_tamper("reg", _set(["estimator"], "os.system")),
                          "allow-list"),
    "regressor_file_claims_classifier": (
        _tamper("reg", _set(["estimator"], "LSTMClassifier")), "lacks the key"),
    "classifier_file_claims_regressor": (
        _tamper("clf", _set(["estimator"], "LSTMRegressor")), "_y_squeeze"),
    "wrong_format_name": (_tamper("reg", _set(["format"], "keras")), "format"),
    "newer_format_version": (_tamper("reg", _set(["format_version"], 2)), "newer"),
    "format_version_0": (_tamper("reg", _set(["format_version"], 0)), "unsupported"),
    "format_version_str": (_tamper("reg", _set(["format_version"], "1")),
                           "format_version"),
    "missing_header_key": (_tamper("reg", _set(["fitted"], ...)), "lacks"),
    "extra_header_key": (_tamper("reg", _set(["exec"], "import os")), "unknown key"),
    "unknown_param": (_tamper("reg", _set(["params", "evil"], 1)),
                      "unknown to LSTMRegressor"),
    "invalid_param_value": (_tamper("reg", _set(["params", "hidden_size"], -1)),
                            "hyper-parameters"),
    "param_dict_value": (_tamper("reg", _set(["params", "tol"], {"a": 1})),
                         "unsupported value"),
    "missing_fitted_key": (_tamper("reg", _set(["fitted", "n_outputs_"], ...)),
                           "lacks"),
    "extra_fitted_key": (_tamper("reg", _set(["fitted", "__class__"], "x")),
                         "unknown key"),
    "negative_n_iter": (_tamper("reg", _set(["fitted", "n_iter_"], -1)), ">= 0"),
    "hidden_size_changed": (_tamper("reg", _set(["fitted", "_net", "hidden_size"],
                                                4)), "network needs"),
    "unknown_cell": (_tamper("reg", _set(["fitted", "_net", "cell"], "gru")), "cell"),
    "unknown_squashing": (_tamper("reg", _set(["fitted", "_net", "squashing"],
                                              "relu")), "squashing"),
    "table10_squashing_on_lstm_cell": (
        _tamper("reg", _set(["fitted", "_net", "squashing"], "table10")),
        "applies to cell='lstm1997'"),
    "input_to_output_not_bool": (
        _tamper("reg", _set(["fitted", "_net", "input_to_output"], 1)),
        "true or false"),
    "input_to_output_without_its_weights": (
        _tamper("reg", _set(["fitted", "_net", "input_to_output"], True)),
        "network needs|shape"),
    "feature_names_wrong_length": (
        _tamper("reg", _set(["fitted", "feature_names_in_"], ["a", "b"])),
        "feature names"),
    "rng_not_pcg64": (_tamper("reg", _set(["fitted", "_rng", "bit_generator"],
                                          "MT19937")), "PCG64"),
    "regressor_loss_kind": (_tamper("reg", _set(["fitted", "_loss_kind"], 2)),
                            "_loss_kind"),
    "unknown_loss": (_tamper("reg", _set(["fitted", "_net", "loss"], "hinge")),
                     "loss"),
    "log_loss_on_a_linear_output": (
        _tamper("reg", _set(["fitted", "_net", "loss"], "log_loss")),
        "output_activation='sigmoid'"),
    "classes_unsorted": (_tamper("clf", _set(["fitted", "classes_", "values"],
                                             ["yes", "no"])), "sorted"),
    "classes_wrong_count": (_tamper("clf", _set(["fitted", "classes_", "values"],
                                                ["a", "b", "c"])), "classes"),
    "classes_bad_dtype": (_tamper("clf", _set(["fitted", "classes_", "dtype"],
                                              "<U999999999")), "dtype"),
    "classifier_single_output_flipped": (
        _tamper("clf", _set(["fitted", "_single_output"], False)), "2 classes"),
    # the arrays
    "params_too_short": (_tamper("reg", _arr("params_", lambda a: a[:-1])),
                         "shape"),
    "params_too_short_manifest_too": (
        _tamper("reg", _arr("params_", lambda a: a[:-1], manifest=True)),
        "network needs"),
    "params_float16": (
        _tamper("reg", _arr("params_", lambda a: a.astype(np.float16),
                            manifest=True)), "dtype"),
    "params_float64_for_float32_net": (
        _tamper("reg", _arr("params_", lambda a: a.astype(np.float64))), "dtype"),
    "nan_in_params": (_tamper("reg", _arr("params_", lambda a: np.where(
        np.arange(a.size) == 3, np.nan, a).astype(a.dtype))), "non-finite"),
    "inf_in_optimizer_state": (_tamper("reg", _arr("_opt_state", lambda a: np.where(
        a == a.max(), np.inf, a).astype(a.dtype))), "non-finite"),
    "layout_tampered": (_tamper("reg", _arr("_layout", lambda a: a + 1)),
                        "_layout does not match"),
    "mask_not_binary": (_tamper("reg", _arr("_l2_mask", lambda a: a * 2)),
                        "0 and 1"),
    "numeric_classes_unsorted": (
        _tamper("clf_int", _arr("classes_", lambda a: a[::-1].copy())), "sorted"),
}
N_MALFORMED = 68


def test_malformed_matrix_is_counted():
    assert len(MALFORMED) == N_MALFORMED


@pytest.fixture(scope="module")
def good_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("good")
    reg, _ = _case_reg_table_f32()
    clf, _ = _case_clf_binary_str()
    clf_int, _ = _case_clf_multiclass_int()
    paths = {"reg": folder / "reg.npz", "clf": folder / "clf.npz",
             "clf_int": folder / "clf_int.npz"}
    for est, key in ((reg, "reg"), (clf, "clf"), (clf_int, "clf_int")):
        est.save(paths[key])
        load(paths[key])  # the untampered files load
    return paths


@pytest.mark.parametrize("case", MALFORMED)
def test_malformed_file_is_rejected_without_side_effects(case, good_files, tmp_path):
    make, match = MALFORMED[case]
    bad = make(good_files, tmp_path / "model.npz")
    before = _snapshot(tmp_path)
    good_before = _snapshot(good_files["reg"].parent)
    _MARKER["ran"] = False
    with pytest.raises(ValueError, match=match) as info:
        load(bad)
    assert not _MARKER["ran"], "code from the file ran"
    assert _snapshot(tmp_path) == before, "load wrote files"
    assert _snapshot(good_files["reg"].parent) == good_before
    assert "cannot load" in str(info.value)


def test_file_from_before_the_squashing_parameter_loads_as_appendix(tmp_path):
    """Files written before ``squashing``, ``input_to_output``, ``output_gate``,
    ``recurrent_weights`` and ``loss`` existed lack them in the parameters and in
    ``_net``: they load as the network they were (the Appendix's squashing, a head
    that sees the cells only, the loss its output activation implied) and keep
    training."""
    est, X = _case_reg_cube_lstm1997_f64_multi()
    est.save(tmp_path / "new.npz")

    def drop_new_keys(header, arrays):
        for key in ("squashing", "input_to_output", "output_gate",
                    "recurrent_weights", "loss"):
            del header["params"][key]
        for key in ("squashing", "input_to_output", "loss"):
            del header["fitted"]["_net"][key]

    old = _tamper("new", drop_new_keys)({"new": tmp_path / "new.npz"},
                                        tmp_path / "old.npz")
    with np.load(old, allow_pickle=False) as z:
        assert b"squashing" not in z["header"].tobytes()
        assert b"input_to_output" not in z["header"].tobytes()
    loaded = load(old)
    assert loaded.squashing == "appendix" and not loaded.input_to_output
    assert loaded.loss == "auto"
    assert loaded._net == est._net
    _assert_same_predictions(est, loaded, X)
    loaded.partial_fit(X, est.predict(X))


def test_missing_path_is_file_not_found(tmp_path):
    # documented: a path that does not exist raises FileNotFoundError, as open() does
    with pytest.raises(FileNotFoundError):
        load(tmp_path / "missing.npz")
    assert os.listdir(tmp_path) == []


def test_object_array_payload_would_run_code_with_pickle_allowed(good_files,
                                                                 tmp_path):
    # The object-array cases of the matrix are real exploits for a careless loader.
    path = _object_array("params_")(good_files, tmp_path / "x.npz")
    _MARKER["ran"] = False
    with np.load(path, allow_pickle=True) as z:
        z["params_"]
    assert _MARKER["ran"]
    _MARKER["ran"] = False


# ----------------------------------------- 4. a wrapper estimator (forecaster-like)
class _Wrapper(BaseEstimator):
    """Holds an LSTMRegressor and scaling statistics, as a forecaster would."""

    def __init__(self, scale=2.0):
        self.scale = scale

    def fit(self, X, y):
        self.offset_ = np.array([float(np.mean(y)), 0.0])
        self.regressor_ = _reg().fit(X, (y - self.offset_[0]) / self.scale)
        return self

    def predict(self, X):
        return self.regressor_.predict(X) * self.scale + self.offset_[0]


class _WrapperCodec(_persistence.Codec):
    name = "_Wrapper"
    module = __name__

    def attributes(self):
        return {"regressor_", "offset_"}

    def dump(self, est):
        entry, arrays = _persistence.dump_nested(est.regressor_, "regressor_")
        return {"regressor_": entry}, {**arrays, "offset_": est.offset_}

    def expected_arrays(self, cls, fitted, manifest):
        _persistence._check_keys(fitted, ("regressor_",), "fitted")
        expected = _persistence.expected_nested(fitted["regressor_"], manifest,
                                                "regressor_")
        return {**expected, "offset_": (np.dtype(np.float64), (2,))}

    def restore(self, est, fitted, arrays):
        if not np.all(np.isfinite(arrays["offset_"])):
            raise _persistence.ModelFileError("offset_ has non-finite values")
        est.regressor_ = _persistence.restore_nested(fitted["regressor_"], arrays,
                                                     "regressor_")
        est.offset_ = arrays["offset_"]


def test_nested_estimator_helpers(tmp_path, monkeypatch):
    monkeypatch.setitem(_persistence._REGISTRY, "_Wrapper", _WrapperCodec())
    X, y = _table(3)
    est = _Wrapper().fit(X, y)
    _persistence.save(est, tmp_path / "w")
    loaded = load(tmp_path / "w")
    assert _same(est.predict(X), loaded.predict(X))
    _assert_same_state(est.regressor_, loaded.regressor_)
    with np.load(tmp_path / "w", allow_pickle=False) as z:
        assert "regressor_.params_" in z.files
    good = {"w": tmp_path / "w"}
    for mutate, match in [
            (_arr("regressor_.params_", lambda a: np.full_like(a, np.nan)),
             "regressor_: params_ has non-finite"),
            (_set(["fitted", "regressor_", "estimator"], "_Wrapper"),
             "regressor_: fitted lacks the key"),
            (_set(["fitted", "regressor_", "params", "evil"], 1), "unknown"),
            (_arr("offset_", lambda a: np.array([np.inf, 0.0])), "offset_")]:
        bad = _tamper("w", mutate)(good, tmp_path / "bad")
        with pytest.raises(ValueError, match=match):
            load(bad)
    # Without the registry entry the class is refused.
    monkeypatch.delitem(_persistence._REGISTRY, "_Wrapper")
    with pytest.raises(ValueError, match="allow-list"):
        load(tmp_path / "w")


# ------------------------------------------------------------ 5. LSTMForecaster
def _fc(**kwargs):
    from lstmforecast import LSTMForecaster

    params = dict(window=6, horizon=3, hidden_size=3, max_epochs=2, batch_size=8,
                  random_state=0)
    params.update(kwargs)
    return LSTMForecaster(**params)


def _wave(n=72, phase=0.0):
    t = np.arange(n)
    return 10 + np.sin(2 * np.pi * t / 12 + phase) + 0.02 * t


def _fc_datetime():
    y = pd.Series(_wave(), name="sales",
                  index=pd.date_range("2000-01-01", periods=72, freq="MS"))
    return _fc(log=True, difference=12).fit(y), {}


def _fc_datetime_hourly_tz():
    y = pd.Series(_wave(), index=pd.date_range("2021-03-27", periods=72, freq="h",
                                               tz="Europe/Lisbon"))
    return _fc(difference=1, dtype="float64").fit(y), {}


def _fc_period():
    y = pd.Series(_wave(), name="y",
                  index=pd.period_range("1900", periods=72, freq="Y"))
    return _fc(strategy="direct", scaling="minmax").fit(y), {}


def _fc_range():
    y = pd.Series(_wave(), index=pd.RangeIndex(10, 10 + 3 * 72, 3))
    return _fc(cell="lstm1997", hidden_size=4, block_size=2,
               calibration_size=5).fit(y), {}


def _fc_frame_covariates():
    index = pd.date_range("2010-01-04", periods=75, freq="W-MON")
    Y = pd.DataFrame({"a": _wave(75), "b": _wave(75, 1.0)}, index=index)
    X = pd.DataFrame({"promo": np.arange(75) % 4 == 0, "temp": np.cos(np.arange(75))},
                     index=index).astype(float)
    est = _fc(difference=1).fit(Y.iloc[:72], X.iloc[:72])
    return est, {"X": X.iloc[72:]}


def _fc_numpy():
    return _fc(calibration_size=0).fit(_wave()), {}


def _fc_numpy_2d_direct_covariates():
    Y = np.column_stack([_wave(75), _wave(75, 2.0)])
    X = np.sin(np.arange(75))[:, None]
    est = _fc(strategy="direct", horizon=4).fit(Y[:71], X[:71])
    return est, {"X": X[71:]}


FORECASTER_CASES = {
    "series_datetime_log_seasonal": _fc_datetime,
    "series_datetime_hourly_tz": _fc_datetime_hourly_tz,
    "series_period_direct": _fc_period,
    "series_range_lstm1997": _fc_range,
    "frame_two_targets_covariates": _fc_frame_covariates,
    "numpy_1d_no_calibration": _fc_numpy,
    "numpy_2d_direct_covariates": _fc_numpy_2d_direct_covariates,
}


def _assert_same_output(a, b):
    assert type(a) is type(b)
    if isinstance(a, pd.Series):
        pd.testing.assert_series_equal(a, b, check_exact=True)
    elif isinstance(a, pd.DataFrame):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    else:
        assert _same(a, b)


def _same_forecaster_state(original, loaded):
    assert type(loaded) is type(original)
    assert set(vars(loaded)) == set(vars(original))
    assert loaded.get_params() == original.get_params()
    for name, value in vars(original).items():
        other = getattr(loaded, name)
        if name == "regressor_":
            _assert_same_state(value, other)
        elif isinstance(value, np.ndarray):
            assert _same(value, other), name
        else:
            assert value == other and type(value) is type(other), name


@pytest.mark.parametrize("case", FORECASTER_CASES)
def test_forecaster_round_trip_is_exact(case, tmp_path):
    est, kw = FORECASTER_CASES[case]()
    est.save(tmp_path / "f.npz")
    assert os.listdir(tmp_path) == ["f.npz"]
    loaded = load(tmp_path / "f.npz")
    _same_forecaster_state(est, loaded)
    _assert_same_output(est.predict(**kw), loaded.predict(**kw))
    if est.n_calibration_:
        for a, b in zip(est.predict_interval(0.8, **kw),
                        loaded.predict_interval(0.8, **kw)):
            _assert_same_output(a, b)
    else:
        with pytest.raises(ValueError, match="calibration"):
            loaded.predict_interval()


def test_forecaster_file_holds_no_pickle_and_the_index_as_text(tmp_path):
    est, _ = _fc_datetime()
    est.save(tmp_path / "f")
    with np.load(tmp_path / "f", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays.pop("header").tobytes())
    assert header["estimator"] == "LSTMForecaster"
    assert header["fitted"]["index"] == {
        "type": "datetime", "freq": "MS", "cutoff": est.cutoff_.isoformat(),
        "tz": None, "unit": est.cutoff_.unit}
    assert header["fitted"]["target_names_"] == ["sales"]
    assert header["fitted"]["regressor_"]["estimator"] == "LSTMRegressor"
    assert {"y_center_", "y_scale_", "calibration_residuals_", "_y_buf",
            "regressor_.params_"} <= set(arrays)
    assert all(arr.dtype != object for arr in arrays.values())


def test_loaded_forecaster_updates_and_learns_exactly(tmp_path):
    est, _ = _fc_datetime()
    est.save(tmp_path / "f")
    loaded = load(tmp_path / "f")
    new = pd.Series([11.0, 12.0], name="sales",
                    index=pd.date_range(est.cutoff_, periods=3, freq="MS")[1:])
    est.update(new, learn=True)
    loaded.update(new, learn=True)
    _assert_same_output(est.predict(), loaded.predict())
    _same_forecaster_state(est, loaded)
    # and the updated forecaster saves and loads again
    loaded.save(tmp_path / "g")
    _assert_same_output(est.predict(), load(tmp_path / "g").predict())


def test_forecaster_save_unfitted_and_unsaveable_names(tmp_path):
    with pytest.raises(NotFittedError):
        _fc().save(tmp_path / "f")
    Y = pd.DataFrame({("a", 1): _wave(), ("b", 2): _wave(72, 1.0)})
    est = _fc().fit(Y)
    with pytest.raises(ValueError, match="target name"):
        est.save(tmp_path / "f")
    est, _ = _fc_datetime()
    est.extra_ = 1
    with pytest.raises(ValueError, match="extra_"):
        est.save(tmp_path / "f")
    assert os.listdir(tmp_path) == []


FORECASTER_MALFORMED = {
    "nan_in_buffer": (_arr("_y_buf", lambda a: np.full_like(a, np.nan)),
                      "_y_buf has non-finite"),
    "non_positive_buffer_with_log": (_arr("_y_buf", lambda a: -a), "positive"),
    "zero_scale": (_arr("y_scale_", lambda a: np.zeros_like(a)), "y_scale_"),
    "inf_residuals": (_arr("calibration_residuals_", lambda a: a + np.inf),
                      "non-finite"),
    "buffer_rows_changed": (_arr("_y_buf", lambda a: a[1:], manifest=True),
                            "_y_buf has"),
    "buffer_shape_not_in_manifest": (_arr("_y_buf", lambda a: a[1:]), "shape"),
    "residual_steps_changed": (_arr("calibration_residuals_", lambda a: a[:, :2],
                                    manifest=True), "steps"),
    "missing_scale": (_arr("y_center_", lambda a: None, manifest=True), "lack"),
    "n_targets_changed": (_set(["fitted", "n_targets_"], 2), "shape"),
    "covariates_claimed": (_set(["fitted", "n_covariates_"], 1), "lack"),
    "calibration_count_changed": (_set(["fitted", "n_calibration_"], 2), "shape"),
    "horizon_changed": (_set(["params", "horizon"], 4), "horizon"),
    "window_changed": (_set(["params", "window"], 7), "_y_buf has"),
    "extra_fitted_key": (_set(["fitted", "evil"], 1), "unknown key"),
    "missing_fitted_key": (_set(["fitted", "n_obs_"], ...), "lacks"),
    "names_wrong_length": (_set(["fitted", "target_names_"], ["a", "b"]),
                           "target_names_"),
    "names_not_labels": (_set(["fitted", "target_names_"], [{"x": 1}]),
                         "target_names_"),
    "kind_unknown": (_set(["fitted", "_y_meta", "kind"], "tensor"), "kind"),
    "kind_array_with_index": (_set(["fitted", "_y_meta", "kind"], "array"),
                              "array target"),
    "index_type_unknown": (_set(["fitted", "index", "type"], "interval"), "type"),
    "index_bad_freq": (_set(["fitted", "index", "freq"], "every full moon"),
                       "frequency"),
    "index_bad_time": (_set(["fitted", "index", "cutoff"], "yesterday"), "time"),
    "index_bad_unit": (_set(["fitted", "index", "unit"], "fortnight"), "unit"),
    "index_extra_key": (_set(["fitted", "index", "code"], "import os"),
                        "unknown key"),
    "regressor_is_a_classifier": (_set(["fitted", "regressor_", "estimator"],
                                       "LSTMClassifier"), "LSTMRegressor"),
    "regressor_is_a_forecaster": (_set(["fitted", "regressor_", "estimator"],
                                       "LSTMForecaster"), "LSTMRegressor"),
    "regressor_weights_nan": (_arr("regressor_.params_",
                                   lambda a: np.full_like(a, np.nan)),
                              "regressor_: params_ has non-finite"),
    "regressor_outputs_changed": (_set(["fitted", "regressor_", "fitted",
                                        "n_outputs_"], 3), "regressor_"),
    "regressor_unknown_param": (_set(["fitted", "regressor_", "params", "evil"], 1),
                                "unknown"),
    "invalid_forecaster_param": (_set(["params", "strategy"], "magic"),
                                 "hyper-parameters"),
}


@pytest.fixture(scope="module")
def forecaster_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("fc") / "f.npz"
    _fc_datetime()[0].save(path)
    load(path)
    return {"fc": path}


@pytest.mark.parametrize("case", FORECASTER_MALFORMED)
def test_tampered_forecaster_file_is_rejected(case, forecaster_file, tmp_path):
    mutate, match = FORECASTER_MALFORMED[case]
    bad = _tamper("fc", mutate)(forecaster_file, tmp_path / "bad.npz")
    before = _snapshot(tmp_path)
    _MARKER["ran"] = False
    with pytest.raises(ValueError, match=match) as info:
        load(bad)
    assert "cannot load" in str(info.value)
    assert not _MARKER["ran"]
    assert _snapshot(tmp_path) == before
