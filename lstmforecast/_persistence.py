"""Safe persistence: ``estimator.save(path)`` and :func:`lstmforecast.load`.

A saved model can be loaded without running any code from the file: there is no
pickle anywhere in the format, and everything in the file is checked before an
estimator is built from it.

File format (``"lstmforecast-model"``, format version 1)
-----------------------------------------------------------
One ``.npz`` archive (a zip of ``.npy`` members, written by :func:`numpy.savez`):

* ``header``: a JSON object encoded as UTF-8 (pure ASCII), stored as a 1-D ``uint8``
  array::

      {"format": "lstmforecast-model", "format_version": 1,
       "library_version": "0.1.0",           # lstmforecast.__version__ at save time
       "estimator": "LSTMRegressor",          # checked against an allow-list
       "params": {...},                       # get_params(), JSON values only
       "notes": ["..."],                      # what save had to change, if anything
       "fitted": {...},                       # fitted attributes that are not arrays
       "arrays": {"params_": {"dtype": "float32", "shape": [81]}, ...}}

* one ``.npy`` member per entry of ``header["arrays"]``, numeric dtypes only. For the
  LSTM estimators: ``params_`` (all weights), ``_layout`` (the int64 offset table),
  ``_l2_mask`` and ``_train_mask``, the optimizer state ``_opt_state`` and
  ``_opt_step``, ``last_batch_losses_`` when the model has it, and ``classes_`` for a
  classifier with numeric (bool, int, uint, float) labels. String labels are kept
  in the header (``fitted["classes_"]["values"]``) with their NumPy dtype
  (``"<U5"``, or ``"object"`` for Python ``str`` objects) and restored exactly.

``fitted`` holds, by attribute name, ``input_size_``, ``n_features_in_``,
``feature_names_in_`` (a list of str, or null), ``_table_input``, ``n_outputs_``,
``_net`` (the fitted network's shape), ``_loss_kind``, ``loss_curve_``,
``validation_scores_``, ``best_validation_score_``, ``best_loss_`` (``Infinity`` is
written as in Python's :mod:`json`), ``n_iter_``, ``t_``, ``_no_improvement_count``,
``_rng`` (the PCG64 state of the training random generator), and ``_y_squeeze``
(regressor) or ``_single_output`` and ``classes_`` (classifier).

Everything a fit leaves behind is saved, optimizer and random-generator state
included: a loaded model predicts exactly (bit for bit) like the saved one, and
``partial_fit`` or ``fit`` with ``warm_start=True`` continues exactly as the saved
model would have.

Paths
-----
The path is used exactly as given (``str`` or path-like): no ``.npz`` suffix is
added or required (``np.savez`` would add one to a name; ``save`` writes through a
file object so that ``save(p)`` and ``load(p)`` always name the same file). ``save``
writes a temporary file in the target's directory and renames it over the target
with :func:`os.replace`, so a crash never leaves a half-written model (an existing
file at ``path`` is either kept or replaced whole).

What ``load`` checks, before building anything
----------------------------------------------
The zip signature (pickles, ``.npy`` files and other data are refused without being
parsed); no duplicate or non-``.npy`` members; the header's JSON (no duplicate keys,
exactly the documented top-level keys); format name and version; the estimator
class is in the allow-list; hyper-parameters are known to the class and pass its
validation (a key the file lacks takes the class default); the fitted attributes'
types and their consistency (network shape, loss kind, outputs, classes); the list of
arrays is exactly the one this network needs, each member's ``.npy`` header (dtype,
shape, no Python objects) and size are checked before its data is read, the offset
table equals :func:`lstmforecast._layout.make_layout`'s, and all weights and the
optimizer state are finite. Any problem raises ``ValueError`` naming it; a path that
does not exist raises ``FileNotFoundError`` (as :func:`open` does); a directory
raises ``ValueError``.

LSTMForecaster
--------------
:class:`ForecasterCodec` stores the forecaster's ``regressor_`` as a nested
``LSTMRegressor`` (arrays ``"regressor_.*"``), the float64 arrays ``y_center_``,
``y_scale_``, ``calibration_residuals_``, ``_y_buf`` (and ``x_center_``,
``x_scale_``, ``_x_buf`` with covariates), and in ``fitted`` the counts, the column
names (None, str, int or float), the kind of ``y`` and the index: its type, the
frequency as a pandas alias (``"MS"``, ``"Y-DEC"``), the last label (an ISO time
stamp with its time zone and unit, a period ordinal, or an integer). On load the
shapes are checked against the hyper-parameters and the regressor's network, and
values for finiteness and positivity.

Adding an estimator class
-------------------------
Write a :class:`Codec` subclass (``name``, ``module``, :meth:`Codec.attributes`,
:meth:`Codec.dump`, :meth:`Codec.expected_arrays`, :meth:`Codec.restore`; the LSTM
ones below show how) and :func:`register` an instance here, in this module (the
allow-list must not depend on what happens to be imported). An estimator that holds
another allow-listed one (a forecaster's ``regressor_``) stores it with
:func:`dump_nested` / :func:`expected_nested` / :func:`restore_nested`, which prefix
its array names (``"regressor_.params_"``). ``save`` refuses an estimator with
instance attributes its codec does not know, so a new fitted attribute can never be
dropped silently.
"""

from __future__ import annotations

import importlib
import json
import numbers
import os
import re
import secrets
import warnings
import zipfile

import numpy as np
from numpy.lib import format as npy_format
from sklearn.utils.validation import check_is_fitted

from . import _layout
from ._layout import recurrent_size

__all__ = ["FORMAT_NAME", "FORMAT_VERSION", "Codec", "ModelFileError",
           "dump_nested", "expected_nested", "load", "register", "restore_nested",
           "save"]

FORMAT_NAME = "lstmforecast-model"
FORMAT_VERSION = 1
HEADER_NAME = "header"
MAX_HEADER_BYTES = 64 * 2**20
# An .npy member is its own header (at most numpy's max_header_size, 10000 bytes, in
# the formats np.load accepts by default) followed by the raw data.
_NPY_HEADER_SLACK = 16384
_MAX_STR_LABEL = 2**20
_HEADER_KEYS = ("format", "format_version", "library_version", "estimator", "params",
                "notes", "fitted", "arrays")
_NUMERIC_DTYPES = {name: np.dtype(name) for name in (
    "bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
    "float16", "float32", "float64")}
_FLOAT_DTYPES = ("float32", "float64")


class ModelFileError(ValueError):
    """A file that is not a valid lstmforecast model (a ``ValueError``)."""


def _require(condition, message):
    if not condition:
        raise ModelFileError(message)


# ------------------------------------------------------------ JSON value checks
def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _check_keys(obj, required, where, optional=()):
    _require(isinstance(obj, dict), f"{where} must be a JSON object, got "
                                    f"{type(obj).__name__}")
    missing = sorted(set(required) - set(obj))
    extra = sorted(set(obj) - set(required) - set(optional))
    _require(not missing, f"{where} lacks the key(s) {missing}")
    _require(not extra, f"{where} has unknown key(s) {extra}")


def _int(obj, key, where, minimum=None):
    value = obj[key]
    _require(_is_int(value), f"{where}[{key!r}] must be an integer, got {value!r}")
    _require(minimum is None or value >= minimum,
             f"{where}[{key!r}] must be >= {minimum}, got {value}")
    return value


def _bool(obj, key, where):
    value = obj[key]
    _require(isinstance(value, bool), f"{where}[{key!r}] must be true or false, got "
                                      f"{value!r}")
    return value


def _real(obj, key, where, allow_none=False):
    value = obj[key]
    if allow_none and value is None:
        return None
    _require(_is_real(value), f"{where}[{key!r}] must be a number, got {value!r}")
    return float(value)


def _real_list(obj, key, where, allow_none=False):
    value = obj[key]
    if allow_none and value is None:
        return None
    _require(isinstance(value, list) and all(_is_real(v) for v in value),
             f"{where}[{key!r}] must be a list of numbers")
    return [float(v) for v in value]


def _one_of(obj, key, where, options):
    value = obj[key]
    _require(isinstance(value, str) and value in options,
             f"{where}[{key!r}] must be one of {sorted(options)}, got {value!r}")
    return value


# --------------------------------------------------------------------- codecs
class Codec:
    """How one allow-listed estimator class is written to and read from a file.

    ``name`` is the class name written in the header, ``module`` the module it is
    imported from on load (fixed here, never taken from a file).
    """

    name = None
    module = None

    def estimator_class(self):
        return getattr(importlib.import_module(self.module), self.name)

    def attributes(self):
        """Instance attributes (besides the hyper-parameters) the codec stores."""
        raise NotImplementedError

    def dump(self, est):
        """``(fitted, arrays)``: a JSON-able dict and a dict of numeric arrays."""
        raise NotImplementedError

    def expected_arrays(self, cls, fitted, manifest):
        """``{name: (dtype, shape)}`` the file must hold, from the header alone.

        Checks as much of ``fitted`` as the shapes depend on; ``manifest`` is the
        header's ``arrays`` entry (for arrays whose shape is free).
        """
        raise NotImplementedError

    def check_fitted(self, est):
        """Raise ``NotFittedError`` when ``est`` is not fitted."""
        check_is_fitted(est)

    def check_params(self, est):
        """Validate the hyper-parameters of a new estimator built from a file."""
        if hasattr(est, "_parameter_constraints"):
            est._validate_params()

    def restore(self, est, fitted, arrays):
        """Check everything left and set the fitted attributes on ``est``."""
        raise NotImplementedError


_NET_KEYS = ("cell", "hidden_size", "block_size", "num_layers", "output", "dtype",
             "output_activation")
# Files written before these parameters lack them: the Appendix's squashing, a head
# that sees the cells only, and the loss its output activation implied.
_NET_DEFAULTS = {"squashing": "appendix", "input_to_output": False, "loss": "auto"}
_NET_OPTIONAL_KEYS = tuple(_NET_DEFAULTS)


def _plain(value):
    """NumPy scalars to Python ones (for JSON)."""
    if isinstance(value, np.generic):
        return value.item()
    return value


def _n_params(cell, input_size, hidden_size, num_layers, n_outputs, block_size,
              input_to_output):
    """Total parameter count, arithmetically (nothing is allocated)."""
    units = _layout.n_units(cell, hidden_size, block_size)
    rec = _layout.recurrent_size(cell, hidden_size, block_size)
    n_bias = 2 if cell == _layout.CELL_LSTM else 1
    total = units * (input_size + rec + n_bias)
    total += (num_layers - 1) * units * (hidden_size + rec + n_bias)
    head_in = hidden_size + 1 + (input_size if input_to_output else 0)
    return total + n_outputs * head_in


def _rng_state(rng):
    if not (isinstance(rng, np.random.Generator)
            and isinstance(rng.bit_generator, np.random.PCG64)):
        raise ValueError(f"cannot save the training random generator {rng!r}: only "
                         "a numpy Generator on PCG64 is supported")
    state = rng.bit_generator.state
    return {"bit_generator": "PCG64",
            "state": {"state": int(state["state"]["state"]),
                      "inc": int(state["state"]["inc"])},
            "has_uint32": int(state["has_uint32"]),
            "uinteger": int(state["uinteger"])}


def _rng_from_state(state):
    where = "fitted['_rng']"
    _check_keys(state, ("bit_generator", "state", "has_uint32", "uinteger"), where)
    _require(state["bit_generator"] == "PCG64",
             f"{where}['bit_generator'] must be 'PCG64', got "
             f"{state['bit_generator']!r}")
    _check_keys(state["state"], ("state", "inc"), f"{where}['state']")
    for key in ("state", "inc"):
        value = state["state"][key]
        _require(_is_int(value) and 0 <= value < 2**128,
                 f"{where}['state'][{key!r}] must be an integer in [0, 2**128)")
    _require(state["has_uint32"] in (0, 1) and _is_int(state["has_uint32"]),
             f"{where}['has_uint32'] must be 0 or 1")
    _require(_is_int(state["uinteger"]) and 0 <= state["uinteger"] < 2**32,
             f"{where}['uinteger'] must be an integer in [0, 2**32)")
    bit_generator = np.random.PCG64()
    bit_generator.state = {"bit_generator": "PCG64",
                           "state": dict(state["state"]),
                           "has_uint32": state["has_uint32"],
                           "uinteger": state["uinteger"]}
    return np.random.Generator(bit_generator)


class LSTMCodec(Codec):
    """The state every :class:`~lstmforecast._base.BaseLSTM` estimator has."""

    module = "lstmforecast.estimators"
    _FITTED_KEYS = ("input_size_", "n_features_in_", "feature_names_in_",
                    "_table_input", "n_outputs_", "_net", "_loss_kind", "loss_curve_",
                    "validation_scores_", "best_validation_score_", "best_loss_",
                    "n_iter_", "t_", "_no_improvement_count", "_rng")
    _ARRAYS = ("params_", "_layout", "_l2_mask", "_train_mask", "_opt_state",
               "_opt_step")
    _OPTIONAL_ARRAYS = ("last_batch_losses_",)

    def attributes(self):
        return set(self._FITTED_KEYS) | set(self._ARRAYS) | set(self._OPTIONAL_ARRAYS)

    def fitted_keys(self):
        return self._FITTED_KEYS

    # -- save
    def dump(self, est):
        names = getattr(est, "feature_names_in_", None)
        if names is not None:
            if not all(isinstance(n, str) for n in names):
                raise ValueError("feature_names_in_ must hold str only to be saved")
            names = [str(n) for n in names]
        scores = est.validation_scores_
        best_score = est.best_validation_score_
        fitted = {
            "input_size_": int(est.input_size_),
            "n_features_in_": int(est.n_features_in_),
            "feature_names_in_": names,
            "_table_input": bool(est._table_input),
            "n_outputs_": int(est.n_outputs_),
            "_net": {k: _plain(v) for k, v in est._net.items()},
            "_loss_kind": int(est._loss_kind),
            "loss_curve_": [float(v) for v in est.loss_curve_],
            "validation_scores_": None if scores is None else [float(v)
                                                                for v in scores],
            "best_validation_score_": None if best_score is None else float(best_score),
            "best_loss_": float(est.best_loss_),
            "n_iter_": int(est.n_iter_),
            "t_": int(est.t_),
            "_no_improvement_count": int(est._no_improvement_count),
            "_rng": _rng_state(est._rng),
        }
        arrays = {name: getattr(est, name) for name in self._ARRAYS}
        for name in self._OPTIONAL_ARRAYS:
            if hasattr(est, name):
                arrays[name] = np.asarray(getattr(est, name))
        return fitted, arrays

    # -- load
    def _check_net(self, cls, net):
        where = "fitted['_net']"
        _check_keys(net, _NET_KEYS, where, optional=_NET_OPTIONAL_KEYS)
        cell = _one_of(net, "cell", where, _layout.CELL_CODES)
        if "squashing" in net:
            squashing = _one_of(net, "squashing", where, _layout.SQUASHINGS)
            _require(cell == "lstm1997" or squashing == "appendix",
                     f"{where}: squashing={squashing!r} applies to cell='lstm1997' "
                     "only")
        if "input_to_output" in net:
            _bool(net, "input_to_output", where)
        hidden = _int(net, "hidden_size", where, 1)
        block = _int(net, "block_size", where, 1)
        _int(net, "num_layers", where, 1)
        _one_of(net, "output", where, ("last", "sequence"))
        _one_of(net, "dtype", where, _FLOAT_DTYPES)
        for name in ("output_activation", "loss"):
            if name not in net:
                continue
            value = net[name]
            constraint = cls._parameter_constraints[name][0]
            _require(isinstance(value, str) and constraint.is_satisfied_by(value),
                     f"{where}[{name!r}] {value!r} is not valid for {cls.__name__}")
        if cell == "lstm1997":
            _require(hidden % block == 0, f"{where}: hidden_size={hidden} is not a "
                                          f"multiple of block_size={block}")
        else:
            _require(block == 1, f"{where}: cell='lstm' needs block_size=1")
        return net

    def expected_arrays(self, cls, fitted, manifest):
        _check_keys(fitted, self.fitted_keys(), "fitted")
        net = self._check_net(cls, fitted["_net"])
        input_size = _int(fitted, "input_size_", "fitted", 1)
        n_outputs = _int(fitted, "n_outputs_", "fitted", 1)
        cell = _layout.CELL_CODES[net["cell"]]
        n = _n_params(cell, input_size, net["hidden_size"], net["num_layers"],
                      n_outputs, net["block_size"],
                      net.get("input_to_output", False))
        dtype = np.dtype(net["dtype"])
        int64 = np.dtype(np.int64)
        expected = {"params_": (dtype, (n,)),
                    "_layout": (int64, (net["num_layers"] + 1, 5)),
                    "_l2_mask": (dtype, (n,)),
                    "_train_mask": (dtype, (n,)),
                    "_opt_state": (dtype, (2, n)),
                    "_opt_step": (int64, (1,))}
        for name in self._OPTIONAL_ARRAYS:
            if isinstance(manifest, dict) and name in manifest:
                entry = manifest[name]
                where = f"arrays[{name!r}]"
                _check_keys(entry, ("dtype", "shape"), where)
                _one_of(entry, "dtype", where, _FLOAT_DTYPES)
                shape = entry["shape"]
                _require(isinstance(shape, list) and len(shape) == 1
                         and _is_int(shape[0]) and shape[0] >= 0,
                         f"{where}['shape'] must be [length]")
                expected[name] = (np.dtype(entry["dtype"]), (shape[0],))
        return expected

    def check_fitted(self, est):
        check_is_fitted(est, "params_")

    def check_params(self, est):
        est._check_hyper_parameters()

    def restore(self, est, fitted, arrays):
        net = fitted["_net"]
        cell = _layout.CELL_CODES[net["cell"]]
        input_size = fitted["input_size_"]
        n_outputs = fitted["n_outputs_"]
        n_features = _int(fitted, "n_features_in_", "fitted", 1)
        table = _bool(fitted, "_table_input", "fitted")
        if table:
            _require(input_size == 1, "fitted: a model fitted on a table (2-D X) has "
                                      f"input_size_ 1, got {input_size}")
        else:
            _require(n_features == input_size,
                     f"fitted: n_features_in_ ({n_features}) must equal input_size_ "
                     f"({input_size}) for sequence input")
        names = fitted["feature_names_in_"]
        if names is not None:
            _require(table, "fitted: feature_names_in_ exists only for table input")
            _require(isinstance(names, list) and all(isinstance(s, str) for s in names),
                     "fitted['feature_names_in_'] must be a list of str or null")
            _require(len(names) == n_features,
                     f"fitted: {len(names)} feature names for n_features_in_ "
                     f"{n_features}")
        _int(fitted, "_loss_kind", "fitted", 0)
        loss_curve = _real_list(fitted, "loss_curve_", "fitted")
        scores = _real_list(fitted, "validation_scores_", "fitted", allow_none=True)
        best_score = _real(fitted, "best_validation_score_", "fitted", allow_none=True)
        best_loss = _real(fitted, "best_loss_", "fitted")
        n_iter = _int(fitted, "n_iter_", "fitted", 0)
        t = _int(fitted, "t_", "fitted", 0)
        no_improvement = _int(fitted, "_no_improvement_count", "fitted", 0)
        rng = _rng_from_state(fitted["_rng"])

        layout, n_params = _layout.make_layout(
            cell, input_size, net["hidden_size"], net["num_layers"], n_outputs,
            net["block_size"], net.get("input_to_output", False))
        _require(arrays["params_"].shape == (n_params,),
                 f"params_ has {arrays['params_'].shape[0]} values, the network "
                 f"needs {n_params}")
        _require(np.array_equal(arrays["_layout"], layout),
                 "_layout does not match the network described by the header")
        for name in ("params_", "_opt_state"):
            _require(np.all(np.isfinite(arrays[name])),
                     f"{name} has non-finite values (NaN or inf)")
        for name in ("_l2_mask", "_train_mask"):
            values = arrays[name]
            _require(np.all((values == 0) | (values == 1)),
                     f"{name} must hold only 0 and 1")
        _require(arrays["_opt_step"][0] >= 0, "_opt_step must be >= 0")

        est.input_size_ = input_size
        est.n_features_in_ = n_features
        if names is not None:
            est.feature_names_in_ = np.asarray(names, dtype=object)
        est._table_input = table
        est.n_outputs_ = n_outputs
        est._net = {**_NET_DEFAULTS, **dict(net)}
        est._loss_kind = fitted["_loss_kind"]
        est.loss_curve_ = loss_curve
        est.validation_scores_ = scores
        est.best_validation_score_ = best_score
        est.best_loss_ = best_loss
        est.n_iter_ = n_iter
        est.t_ = t
        est._no_improvement_count = no_improvement
        est._rng = rng
        for name in self._ARRAYS + self._OPTIONAL_ARRAYS:
            if name in arrays:
                setattr(est, name, arrays[name])


class RegressorCodec(LSTMCodec):
    name = "LSTMRegressor"

    def attributes(self):
        return super().attributes() | {"_y_squeeze"}

    def fitted_keys(self):
        return self._FITTED_KEYS + ("_y_squeeze",)

    def dump(self, est):
        fitted, arrays = super().dump(est)
        fitted["_y_squeeze"] = bool(est._y_squeeze)
        return fitted, arrays

    def restore(self, est, fitted, arrays):
        squeeze = _bool(fitted, "_y_squeeze", "fitted")
        net = fitted["_net"]
        try:
            want = _layout.regressor_loss_kind(net["output_activation"],
                                               net.get("loss", "auto"))
        except ValueError as exc:
            raise ValueError(f"fitted['_net']: {exc}") from None
        _require(fitted["_loss_kind"] == want,
                 f"fitted['_loss_kind'] is {fitted['_loss_kind']!r}, the regressor's "
                 f"output activation and loss need {want}")
        _require(not squeeze or fitted["n_outputs_"] == 1,
                 "fitted: _y_squeeze needs n_outputs_ 1")
        super().restore(est, fitted, arrays)
        est._y_squeeze = squeeze


class ClassifierCodec(LSTMCodec):
    name = "LSTMClassifier"

    def attributes(self):
        return super().attributes() | {"classes_", "_single_output"}

    def fitted_keys(self):
        return self._FITTED_KEYS + ("_single_output", "classes_")

    def dump(self, est):
        fitted, arrays = super().dump(est)
        fitted["_single_output"] = bool(est._single_output)
        classes = np.asarray(est.classes_)
        kind = classes.dtype.kind
        if kind in "biuf" and classes.dtype.name in _NUMERIC_DTYPES:
            fitted["classes_"] = {"dtype": classes.dtype.name}
            arrays["classes_"] = classes
        elif kind == "U":
            fitted["classes_"] = {"dtype": classes.dtype.str,
                                  "values": [str(v) for v in classes]}
        elif kind == "O":
            values = list(classes)
            if all(type(v) is str for v in values):
                pass
            elif all(isinstance(v, numbers.Integral) and not isinstance(v, bool)
                     for v in values):
                values = [int(v) for v in values]
            elif all(isinstance(v, float) for v in values):
                values = [float(v) for v in values]
            else:
                raise ValueError("cannot save class labels of mixed or unsupported "
                                 f"types: {sorted({type(v).__name__ for v in values})}")
            fitted["classes_"] = {"dtype": "object", "values": values}
        else:
            raise ValueError(f"cannot save class labels of dtype {classes.dtype}; "
                             "use str, int, float or bool labels")
        return fitted, arrays

    def _n_classes(self, fitted):
        single = _bool(fitted, "_single_output", "fitted")
        return 2 if single else fitted["n_outputs_"]

    def expected_arrays(self, cls, fitted, manifest):
        expected = super().expected_arrays(cls, fitted, manifest)
        where = "fitted['classes_']"
        desc = fitted["classes_"]
        _require(isinstance(desc, dict) and "dtype" in desc,
                 f"{where} must be an object with a 'dtype'")
        if "values" not in desc:
            _check_keys(desc, ("dtype",), where)
            _one_of(desc, "dtype", where, _NUMERIC_DTYPES)
            expected["classes_"] = (_NUMERIC_DTYPES[desc["dtype"]],
                                    (self._n_classes(fitted),))
        return expected

    def _header_classes(self, desc, n_classes):
        where = "fitted['classes_']"
        _check_keys(desc, ("dtype", "values"), where)
        values, dtype = desc["values"], desc["dtype"]
        _require(isinstance(values, list) and len(values) == n_classes,
                 f"{where}['values'] must list the {n_classes} classes")
        if dtype == "object":
            for kind in (str, int, float):
                if all(type(v) is kind for v in values):
                    break
            else:
                raise ModelFileError(f"{where}['values'] must be all str, all int "
                                     "or all float")
            if kind is float:
                _require(all(np.isfinite(values)), f"{where} has non-finite labels")
            classes = np.empty(len(values), dtype=object)
            classes[:] = values
            _require(values == sorted(values) and len(set(values)) == len(values),
                     f"{where}['values'] must be sorted and unique")
            return classes
        match = re.fullmatch(r"[<>=|]?U([0-9]{1,7})", dtype) if isinstance(
            dtype, str) else None
        _require(match is not None and 0 < int(match.group(1)) <= _MAX_STR_LABEL,
                 f"{where}['dtype'] must be 'object' or a unicode dtype like '<U5', "
                 f"got {dtype!r}")
        width = int(match.group(1))
        _require(all(isinstance(v, str) and len(v) <= width for v in values),
                 f"{where}['values'] must be str of at most {width} characters")
        classes = np.array(values, dtype=f"U{width}")
        _require(classes.tolist() == values,
                 f"{where}['values'] do not survive as {dtype} (trailing NULs?)")
        _require(np.array_equal(np.unique(classes), classes),
                 f"{where}['values'] must be sorted and unique")
        return classes

    def restore(self, est, fitted, arrays):
        single = _bool(fitted, "_single_output", "fitted")
        n_classes = self._n_classes(fitted)
        _require(n_classes >= 2, "fitted: a classifier needs at least 2 classes")
        desc = fitted["classes_"]
        if "values" in desc:
            classes = self._header_classes(desc, n_classes)
        else:
            classes = arrays["classes_"]
            if classes.dtype.kind == "f":
                _require(np.all(np.isfinite(classes)),
                         "classes_ has non-finite labels")
            _require(np.array_equal(np.unique(classes), classes),
                     "classes_ must be sorted and unique")
        act = fitted["_net"]["output_activation"]
        loss = fitted["_net"].get("loss", "auto")
        try:
            want = _layout.classifier_loss_kind(act, loss, n_classes)
        except ValueError as exc:
            raise ValueError(f"fitted['_net']: {exc}") from None
        _require(fitted["_loss_kind"] == want,
                 f"fitted['_loss_kind'] is {fitted['_loss_kind']!r}; "
                 f"output_activation={act!r} and loss={loss!r} with {n_classes} "
                 f"classes need {want}")
        _require(single == (n_classes == 2 and want != _layout.LOSS_SOFTMAX_XENT),
                 "fitted['_single_output'] does not match the classes and the loss")
        super().restore(est, fitted, arrays)
        est._single_output = single
        est.classes_ = classes


# ------------------------------------------------------------- the forecaster
_LABEL_TYPES = (str, int, float)


def _label_to_json(value, what):
    """A column / Series name as a JSON value (None, str, int or finite float)."""
    value = _plain(value)
    if value is None or (type(value) in _LABEL_TYPES and not isinstance(value, bool)
                         and (not isinstance(value, float) or np.isfinite(value))):
        return value
    raise ValueError(f"cannot save: {what} {value!r} ({type(value).__name__}) cannot "
                     "be stored; names must be None, str, int or a finite float")


def _labels_from_json(value, where, length=None, allow_none=True):
    if value is None and allow_none:
        return None
    ok = isinstance(value, list) and all(
        v is None or type(v) is str or _is_int(v)
        or (type(v) is float and np.isfinite(v)) for v in value)
    _require(ok, f"{where} must be a list of names (null, str, int or float)")
    _require(length is None or len(value) == length,
             f"{where} must list {length} name(s), got {len(value)}")
    return list(value)


def _index_to_json(info, cutoff):
    """``fitted["index"]``: how to continue the fitted index, in JSON."""
    import pandas as pd

    if info is None:
        return {"type": "array", "cutoff": int(cutoff)}
    kind, freq = info["type"], info["freq"]
    if kind == "range":
        return {"type": "range", "step": int(freq), "cutoff": int(cutoff)}
    if kind == "datetime":
        stamp = pd.Timestamp(cutoff)
        entry = {"type": "datetime", "freq": freq.freqstr,
                 "cutoff": (stamp.tz_convert("UTC").tz_localize(None).isoformat()
                            if stamp.tz is not None else stamp.isoformat()),
                 "tz": None if stamp.tz is None else str(stamp.tz),
                 "unit": stamp.unit}
    elif kind == "period":
        entry = {"type": "period", "freq": cutoff.freqstr,
                 "cutoff": int(cutoff.ordinal)}
    else:  # pragma: no cover - _index_info knows no other type
        raise ValueError(f"cannot save an index of type {kind!r}")
    restored, restored_cutoff = _index_from_json(entry)
    if not (restored["freq"] == freq and restored_cutoff == cutoff
            and type(restored_cutoff) is type(cutoff)):
        raise ValueError(f"cannot save: the forecast index (frequency {freq!r}, last "
                         f"label {cutoff!r}) does not survive a round trip through "
                         "its text form")
    return entry


def _index_from_json(entry):
    """``(index info or None, cutoff)`` from ``fitted["index"]``."""
    import pandas as pd

    where = "fitted['index']"
    _require(isinstance(entry, dict) and "type" in entry,
             f"{where} must be an object with a 'type'")
    kind = _one_of(entry, "type", where, ("array", "range", "datetime", "period"))
    if kind == "array":
        _check_keys(entry, ("type", "cutoff"), where)
        return None, _int(entry, "cutoff", where, 0)
    if kind == "range":
        _check_keys(entry, ("type", "step", "cutoff"), where)
        step = _int(entry, "step", where, 1)
        return {"type": "range", "freq": step}, _int(entry, "cutoff", where)
    if kind == "datetime":
        _check_keys(entry, ("type", "freq", "cutoff", "tz", "unit"), where)
        for key in ("freq", "cutoff"):
            _require(isinstance(entry[key], str) and len(entry[key]) <= 64,
                     f"{where}[{key!r}] must be a short string")
        _require(entry["tz"] is None or (isinstance(entry["tz"], str)
                                         and len(entry["tz"]) <= 64),
                 f"{where}['tz'] must be null or a time-zone name")
        unit = _one_of(entry, "unit", where, ("s", "ms", "us", "ns"))
        try:
            freq = pd.tseries.frequencies.to_offset(entry["freq"])
            stamp = pd.Timestamp(entry["cutoff"])
            _require(stamp.tz is None, f"{where}['cutoff'] must be a naive time")
            if entry["tz"] is not None:
                stamp = stamp.tz_localize("UTC").tz_convert(entry["tz"])
            stamp = stamp.as_unit(unit)
        except ModelFileError:
            raise
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            raise ModelFileError(f"{where} is not a valid frequency and time "
                                 f"({exc})") from None
        _require(freq is not None and stamp is not pd.NaT,
                 f"{where} must hold a frequency and a time")
        return {"type": "datetime", "freq": freq}, stamp
    _check_keys(entry, ("type", "freq", "cutoff"), where)
    _require(isinstance(entry["freq"], str) and len(entry["freq"]) <= 64,
             f"{where}['freq'] must be a short string")
    ordinal = _int(entry, "cutoff", where)
    try:
        period = pd.Period(ordinal=ordinal, freq=entry["freq"])
    except (ValueError, TypeError, KeyError, OverflowError) as exc:
        raise ModelFileError(f"{where} is not a valid period ({exc})") from None
    return {"type": "period", "freq": period.freq}, period


class ForecasterCodec(Codec):
    """:class:`~lstmforecast.LSTMForecaster`: the regressor (nested) and the state
    around it.

    Arrays (float64): ``y_center_``, ``y_scale_`` (``(n_targets,)``),
    ``x_center_``, ``x_scale_`` (``(n_covariates,)``, only with covariates),
    ``calibration_residuals_`` (``(n_calibration, horizon, n_targets)``),
    ``_y_buf`` / ``_x_buf`` (the last ``min(n_obs, difference + window + horizon)``
    observations and covariates), for ``stateful=True`` the carried stream
    ``_stream_r`` ``(R, 1)``, ``_stream_c`` ``(H, 1)`` and ``_stream_traces``
    ``(3, H, input_size + R + 1)`` in the network's dtype, and the regressor's
    arrays (``regressor_.*``). ``fitted`` holds the regressor's entry, the counts,
    the names, the input kind (``_y_meta``) and the index (``{"type": "datetime",
    "freq": "MS", "cutoff": "1960-12-01T00:00:00", "tz": null, "unit": "ns"}``, a
    period's ordinal and frequency, a range's step and last label, or an array's
    last position).
    """

    name = "LSTMForecaster"
    module = "lstmforecast.forecaster"
    _FITTED_KEYS = ("regressor_", "n_targets_", "n_covariates_", "target_names_",
                    "covariate_names_", "n_train_windows_", "n_calibration_",
                    "n_obs_", "_y_meta", "index")
    _STATE = ("calibration_residuals_", "n_targets_", "n_covariates_",
              "target_names_", "covariate_names_", "n_train_windows_",
              "n_calibration_", "n_obs_", "_y_meta", "_index", "freq_", "cutoff_",
              "_y_buf", "_x_buf", "y_center_", "y_scale_", "x_center_", "x_scale_",
              "_stream_r", "_stream_c", "_stream_traces")
    _STREAM = ("_stream_r", "_stream_c", "_stream_traces")

    def attributes(self):
        return {"regressor_", *self._STATE}

    def check_fitted(self, est):
        check_is_fitted(est, "regressor_")

    # -- save
    def dump(self, est):
        entry, arrays = dump_nested(est.regressor_, "regressor_")
        meta = est._y_meta
        columns = meta["columns"]
        if columns is not None:
            columns = [_label_to_json(c, "target name") for c in columns]
        names = est.covariate_names_
        if names is not None:
            names = [_label_to_json(c, "covariate name") for c in names]
        fitted = {
            "regressor_": entry,
            "n_targets_": int(est.n_targets_),
            "n_covariates_": int(est.n_covariates_),
            "target_names_": columns,
            "covariate_names_": names,
            "n_train_windows_": int(est.n_train_windows_),
            "n_calibration_": int(est.n_calibration_),
            "n_obs_": int(est.n_obs_),
            "_y_meta": {"kind": meta["kind"], "ndim": int(meta["ndim"])},
            "index": _index_to_json(est._index, est.cutoff_),
        }
        arrays.update({
            "y_center_": np.asarray(est.y_center_, dtype=np.float64),
            "y_scale_": np.asarray(est.y_scale_, dtype=np.float64),
            "calibration_residuals_": np.asarray(est.calibration_residuals_,
                                                 dtype=np.float64),
            "_y_buf": np.asarray(est._y_buf, dtype=np.float64),
        })
        if est.n_covariates_:
            arrays.update({
                "x_center_": np.asarray(est.x_center_, dtype=np.float64),
                "x_scale_": np.asarray(est.x_scale_, dtype=np.float64),
                "_x_buf": np.asarray(est._x_buf, dtype=np.float64),
            })
        if est.stateful:
            arrays.update({name: np.asarray(getattr(est, name))
                           for name in self._STREAM})
        return fitted, arrays

    # -- load
    def expected_arrays(self, cls, fitted, manifest):
        where = "fitted"
        _check_keys(fitted, self._FITTED_KEYS, where)
        _require(isinstance(fitted["regressor_"], dict)
                 and fitted["regressor_"].get("estimator") == "LSTMRegressor",
                 "fitted['regressor_'] must hold an LSTMRegressor")
        expected = expected_nested(fitted["regressor_"], manifest, "regressor_")
        k = _int(fitted, "n_targets_", where, 1)
        p = _int(fitted, "n_covariates_", where, 0)
        n_cal = _int(fitted, "n_calibration_", where, 0)
        _int(fitted, "n_obs_", where, 1)
        rows, horizon = self._free_dims(manifest)
        f64 = np.dtype(np.float64)
        expected.update({
            "y_center_": (f64, (k,)), "y_scale_": (f64, (k,)),
            "calibration_residuals_": (f64, (n_cal, horizon, k)),
            "_y_buf": (f64, (rows, k)),
        })
        if p:
            expected.update({"x_center_": (f64, (p,)), "x_scale_": (f64, (p,)),
                             "_x_buf": (f64, (rows, p))})
        if isinstance(manifest, dict) and "_stream_r" in manifest:
            net = expected["regressor_.params_"][0]
            H, R, D = self._stream_dims(manifest)
            expected.update({"_stream_r": (net, (R, 1)), "_stream_c": (net, (H, 1)),
                             "_stream_traces": (net, (3, H, D + R + 1))})
        return expected

    @staticmethod
    def _manifest_dims(manifest, names_axes):
        """The sizes ``shape[axis]`` the manifest declares for ``(name, axis)``
        pairs (checked against the hyper-parameters in :meth:`restore`)."""
        dims = []
        for name, axis in names_axes:
            entry = manifest.get(name) if isinstance(manifest, dict) else None
            shape = entry.get("shape") if isinstance(entry, dict) else None
            _require(isinstance(shape, list) and len(shape) > axis
                     and _is_int(shape[axis]) and shape[axis] >= 1,
                     f"arrays[{name!r}] must give a shape")
            dims.append(shape[axis])
        return dims

    def _free_dims(self, manifest):
        """Rows of the buffers and steps of the residuals."""
        return self._manifest_dims(manifest, (("_y_buf", 0),
                                              ("calibration_residuals_", 1)))

    def _stream_dims(self, manifest):
        """``(H, R, D)`` of the carried stream (``stateful=True``)."""
        H, R, width = self._manifest_dims(
            manifest, (("_stream_c", 0), ("_stream_r", 0), ("_stream_traces", 2)))
        return H, R, width - R - 1

    def restore(self, est, fitted, arrays):
        where = "fitted"
        regressor = restore_nested(fitted["regressor_"], arrays, "regressor_")
        k, p = fitted["n_targets_"], fitted["n_covariates_"]
        n_cal, n_obs = fitted["n_calibration_"], fitted["n_obs_"]
        n_windows = _int(fitted, "n_train_windows_", where, 1)
        steps = est.horizon if est.strategy == "direct" else 1
        output = "sequence" if est.stateful else "last"
        _require(regressor._net["output"] == output,
                 f"regressor_: this forecaster's network has output {output!r}")
        _require(("_stream_r" in arrays) == bool(est.stateful),
                 "the carried stream (_stream_*) must be stored exactly when "
                 "stateful=True")
        _require(regressor.n_outputs_ == k * steps,
                 f"regressor_: {regressor.n_outputs_} outputs, the forecaster needs "
                 f"{k * steps} ({k} target(s) x {steps} step(s))")
        _require(regressor.input_size_ == k + p and not regressor._table_input,
                 f"regressor_: input size {regressor.input_size_}, the forecaster "
                 f"needs {k + p} ({k} target(s) + {p} covariate(s))")
        size = est.calibration_size
        if size == 0:
            _require(n_cal == 0, "fitted: calibration_size=0 but n_calibration_ "
                                 f"is {n_cal}")
        elif isinstance(size, numbers.Integral):
            _require(n_cal == size, f"fitted: n_calibration_ ({n_cal}) differs from "
                                    f"calibration_size ({size})")
        else:
            _require(n_cal >= 1, "fitted: n_calibration_ must be >= 1")
        meta = fitted["_y_meta"]
        _check_keys(meta, ("kind", "ndim"), "fitted['_y_meta']")
        kind = _one_of(meta, "kind", "fitted['_y_meta']", ("series", "frame", "array"))
        ndim = _int(meta, "ndim", "fitted['_y_meta']", 1)
        _require(ndim in (1, 2), "fitted['_y_meta']['ndim'] must be 1 or 2")
        _require(kind != "series" or (ndim == 1 and k == 1),
                 "fitted: a Series target has ndim 1 and one target")
        _require(kind != "frame" or ndim == 2, "fitted: a DataFrame target has ndim 2")
        _require(kind != "array" or ndim == 2 or k == 1,
                 "fitted: a 1-D array target has one target")
        columns = _labels_from_json(fitted["target_names_"],
                                    "fitted['target_names_']", k,
                                    allow_none=(kind == "array"))
        _require(kind != "array" or columns is None,
                 "fitted: an array target has no names")
        names = _labels_from_json(fitted["covariate_names_"],
                                  "fitted['covariate_names_']", p)
        _require(names is None or p > 0, "fitted: covariate names without covariates")
        info, cutoff = _index_from_json(fitted["index"])
        _require((info is None) == (kind == "array"),
                 "fitted['index'] does not match the target kind")
        for name in ("y_center_", "y_scale_", "calibration_residuals_", "_y_buf",
                     "x_center_", "x_scale_", "_x_buf"):
            if name in arrays:
                _require(np.all(np.isfinite(arrays[name])),
                         f"{name} has non-finite values (NaN or inf)")
        for name in ("y_scale_", "x_scale_"):
            if name in arrays:
                _require(np.all(arrays[name] > 0), f"{name} must be positive")
        if est.log:
            _require(np.all(arrays["_y_buf"] > 0),
                     "_y_buf must be positive for a forecaster with log=True")
        rows = min(n_obs, (est.difference or 0) + est.window + est.horizon)
        _require(arrays["_y_buf"].shape[0] == rows,
                 f"_y_buf has {arrays['_y_buf'].shape[0]} rows; difference, window, "
                 f"horizon and n_obs_ need {rows}")
        _require(arrays["calibration_residuals_"].shape[1] == est.horizon,
                 f"calibration_residuals_ covers "
                 f"{arrays['calibration_residuals_'].shape[1]} steps, horizon is "
                 f"{est.horizon}")

        est.regressor_ = regressor
        est.calibration_residuals_ = arrays["calibration_residuals_"]
        est.n_targets_ = k
        est.n_covariates_ = p
        est.target_names_ = columns
        est.covariate_names_ = names
        est.n_train_windows_ = n_windows
        est.n_calibration_ = n_cal
        est.n_obs_ = n_obs
        est._y_meta = {"kind": kind, "ndim": ndim,
                       "columns": None if columns is None else list(columns)}
        est._index = info
        est.freq_ = None if info is None else info["freq"]
        est.cutoff_ = cutoff
        est.y_center_ = arrays["y_center_"]
        est.y_scale_ = arrays["y_scale_"]
        est.x_center_ = arrays.get("x_center_")
        est.x_scale_ = arrays.get("x_scale_")
        est._y_buf = arrays["_y_buf"]
        est._x_buf = arrays.get("_x_buf")
        if est.stateful:
            cell, hidden, block, _ = regressor._network_args()
            R = recurrent_size(cell, hidden, block)
            _require(arrays["_stream_c"].shape == (hidden, 1)
                     and arrays["_stream_r"].shape == (R, 1)
                     and arrays["_stream_traces"].shape
                     == (3, hidden, regressor.input_size_ + R + 1),
                     "the carried stream's shapes do not match the network")
            for name in self._STREAM:
                _require(np.all(np.isfinite(arrays[name])),
                         f"{name} has non-finite values (NaN or inf)")
                setattr(est, name, np.array(arrays[name]))


_REGISTRY: dict[str, Codec] = {}


def register(codec):
    """Add ``codec`` (a :class:`Codec` instance) to the allow-list; returns it."""
    if not isinstance(codec, Codec) or not isinstance(codec.name, str):
        raise TypeError("register needs a Codec instance with a name")
    _REGISTRY[codec.name] = codec
    return codec


register(RegressorCodec())
register(ClassifierCodec())
register(ForecasterCodec())


def allowed_estimators():
    """Names of the estimator classes a file may hold."""
    return sorted(_REGISTRY)


# ---------------------------------------------------------------- parameters
def _json_param(name, value, notes, stacklevel):
    """A JSON value for one hyper-parameter, or a ValueError naming it."""
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return float(value)
    if name == "random_state" and isinstance(value, (np.random.RandomState,
                                                     np.random.Generator)):
        note = (f"random_state was a {type(value).__name__} instance, which cannot be "
                "saved; it was saved as None. The training generator's state is "
                "saved, so continued training is unaffected, but refitting the loaded "
                "model is not reproducible.")
        notes.append(note)
        warnings.warn(note, UserWarning, stacklevel=stacklevel + 1)
        return None
    if isinstance(value, (list, tuple, np.ndarray)):
        arr = np.asarray(value)
        if arr.dtype.kind in "biuf":
            if not isinstance(value, list):
                notes.append(f"{name} was a {type(value).__name__}; saved (and "
                             "loaded) as a list")
            return arr.tolist()
    raise ValueError(f"cannot save: hyper-parameter {name}={value!r} "
                     f"({type(value).__name__}) cannot be stored in the JSON header; "
                     "use None, bool, int, float, str or a list of numbers")


def _params_from_header(cls, params):
    _require(isinstance(params, dict), "header['params'] must be a JSON object")
    defaults = cls().get_params(deep=False)
    unknown = sorted(set(params) - set(defaults))
    _require(not unknown, f"header['params'] has parameter(s) {unknown} unknown to "
                          f"{cls.__name__}")
    for name, value in params.items():
        ok = (value is None or isinstance(value, (bool, int, float, str))
              or (isinstance(value, list) and all(_is_real(v) for v in value)))
        _require(ok, f"header['params'][{name!r}] has an unsupported value {value!r}")
    return {**defaults, **params}


# -------------------------------------------------------------------- saving
def _codec_for(est):
    codec = _REGISTRY.get(type(est).__name__)
    if codec is None or codec.estimator_class() is not type(est):
        raise TypeError(f"cannot save a {type(est).__qualname__}: only "
                        f"{allowed_estimators()} can be saved")
    return codec


def _encode_header(header):
    text = json.dumps(header, sort_keys=True, ensure_ascii=True, allow_nan=True)
    return np.frombuffer(text.encode("ascii"), dtype=np.uint8).copy()


def _dump(est, stacklevel):
    """``(codec, entry, arrays)``: entry holds estimator, params, notes, fitted."""
    codec = _codec_for(est)
    codec.check_fitted(est)
    params = est.get_params(deep=False)
    unknown = sorted(set(vars(est)) - set(params) - codec.attributes())
    if unknown:
        raise ValueError(f"cannot save: {type(est).__name__} has attribute(s) "
                         f"{unknown} that the file format does not know; update "
                         "lstmforecast/_persistence.py")
    notes = []
    json_params = {}
    for name, value in params.items():  # (a loop: warnings point at est.save(...))
        json_params[name] = _json_param(name, value, notes, stacklevel + 1)
    fitted, arrays = codec.dump(est)
    arrays = {name: np.ascontiguousarray(arr) for name, arr in arrays.items()}
    entry = {"estimator": codec.name, "params": json_params, "notes": notes,
             "fitted": fitted}
    return codec, entry, arrays


_NESTED_KEYS = ("estimator", "params", "notes", "fitted")


def _check_prefix(prefix):
    if not (isinstance(prefix, str) and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*",
                                                     prefix)):
        raise ValueError(f"invalid array-name prefix {prefix!r}")


def dump_nested(est, prefix):
    """Store an allow-listed estimator held by another one (a codec helper).

    For a codec whose estimator wraps another (e.g. a forecaster's ``regressor_``):
    returns ``(entry, arrays)``; put ``entry`` (JSON) in the outer ``fitted`` dict
    and ``arrays`` (named ``"<prefix>.<name>"``) in the outer arrays. Read it back
    with :func:`expected_nested` and :func:`restore_nested`.
    """
    _check_prefix(prefix)
    _, entry, arrays = _dump(est, stacklevel=3)
    return entry, {f"{prefix}.{name}": arr for name, arr in arrays.items()}


def _nested_codec(entry, prefix):
    where = f"fitted[{prefix!r}]"
    _check_keys(entry, _NESTED_KEYS, where)
    name = entry["estimator"]
    _require(isinstance(name, str) and name in _REGISTRY,
             f"{where}: estimator class {name!r} is not in the allow-list "
             f"{allowed_estimators()}")
    notes = entry["notes"]
    _require(isinstance(notes, list) and all(isinstance(n, str) for n in notes),
             f"{where}['notes'] must be a list of str")
    _require(isinstance(entry["fitted"], dict),
             f"{where}['fitted'] must be a JSON object")
    codec = _REGISTRY[name]
    return codec, codec.estimator_class()


def _strip(mapping, prefix):
    start = len(prefix) + 1
    return {k[start:]: v for k, v in mapping.items() if k.startswith(prefix + ".")}


def expected_nested(entry, manifest, prefix):
    """The arrays (prefixed) an estimator stored by :func:`dump_nested` needs."""
    _check_prefix(prefix)
    codec, cls = _nested_codec(entry, prefix)
    sub = _strip(manifest, prefix) if isinstance(manifest, dict) else {}
    try:
        expected = codec.expected_arrays(cls, entry["fitted"], sub)
    except ModelFileError as exc:
        raise ModelFileError(f"{prefix}: {exc}") from None
    return {f"{prefix}.{name}": spec for name, spec in expected.items()}


def restore_nested(entry, arrays, prefix):
    """Build the estimator stored by :func:`dump_nested` (after the checks)."""
    _check_prefix(prefix)
    codec, cls = _nested_codec(entry, prefix)
    try:
        return _build(entry, _strip(arrays, prefix), codec, cls)
    except ModelFileError as exc:
        raise ModelFileError(f"{prefix}: {exc}") from None


def _state(est):
    """``(header, arrays)`` of a fitted estimator, checked by the loader's rules."""
    from . import __version__

    codec, entry, arrays = _dump(est, stacklevel=4)
    header = {"format": FORMAT_NAME, "format_version": FORMAT_VERSION,
              "library_version": __version__, **entry,
              "arrays": {name: {"dtype": arr.dtype.name, "shape": list(arr.shape)}
                         for name, arr in arrays.items()}}
    encoded = _encode_header(header)
    # What is written must load: run the loader's checks on it now.
    try:
        decoded = _decode_header(encoded)
        codec, cls = _check_top(decoded)
        expected = codec.expected_arrays(cls, decoded["fitted"], decoded["arrays"])
        _check_manifest(decoded["arrays"], expected)
        for name, (dtype, shape) in expected.items():
            _require(name in arrays, f"array {name!r} is missing")
            _require(arrays[name].dtype == dtype and arrays[name].shape == shape,
                     f"array {name!r} is {arrays[name].dtype} {arrays[name].shape}, "
                     f"expected {dtype} {shape}")
        _require(set(arrays) == set(expected),
                 f"unexpected array(s) {sorted(set(arrays) - set(expected))}")
        _build(decoded, dict(arrays), codec, cls)
    except ModelFileError as exc:
        raise ValueError(f"cannot save {type(est).__name__}: its fitted state is not "
                         f"valid: {exc}") from None
    arrays[HEADER_NAME] = encoded
    return arrays


def _fspath(path):
    path = os.fspath(path)
    if isinstance(path, bytes):
        path = os.fsdecode(path)
    return path


def save(est, path):
    """Write the fitted estimator ``est`` to ``path`` (see the module docstring).

    Raises ``NotFittedError`` when ``est`` is not fitted, ``ValueError`` when its
    state cannot be stored (the message says which part), and ``OSError`` when the
    file cannot be written; an existing file at ``path`` is then left as it was.
    """
    path = _fspath(path)
    arrays = _state(est)
    directory = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            # Every array is numeric (checked above): nothing is pickled. (Not passing
            # allow_pickle=False: numpy < 2.1 would store it as an array.)
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:  # make the rename durable (POSIX); best effort
        dir_fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


# ------------------------------------------------------------------- loading
def _no_duplicate_keys(pairs):
    keys = [k for k, _ in pairs]
    dupes = sorted({k for k in keys if keys.count(k) > 1})
    _require(not dupes, f"the header repeats the key(s) {dupes}")
    return dict(pairs)


def _decode_header(raw):
    _require(raw.dtype == np.uint8 and raw.ndim == 1,
             "the header must be a 1-D uint8 array")
    try:
        text = raw.tobytes().decode("utf-8")
        header = json.loads(text, object_pairs_hook=_no_duplicate_keys)
    except ModelFileError:
        raise
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise ModelFileError(f"the header is not valid JSON text ({exc})") from None
    _require(isinstance(header, dict), "the header must be a JSON object")
    return header


def _check_top(header):
    """Check the header's top level; return ``(codec, estimator class)``."""
    _check_keys(header, _HEADER_KEYS, "the header")
    _require(header["format"] == FORMAT_NAME,
             f"the header's format is {header['format']!r}, not {FORMAT_NAME!r}")
    version = header["format_version"]
    _require(_is_int(version), f"format_version must be an integer, got {version!r}")
    _require(version <= FORMAT_VERSION,
             f"format_version {version} was written by a newer lstmforecast; this one "
             f"reads version {FORMAT_VERSION}")
    _require(version == FORMAT_VERSION, f"unsupported format_version {version}")
    _require(isinstance(header["library_version"], str),
             "library_version must be a string")
    name = header["estimator"]
    _require(isinstance(name, str) and name in _REGISTRY,
             f"estimator class {name!r} is not in the allow-list "
             f"{allowed_estimators()}")
    notes = header["notes"]
    _require(isinstance(notes, list) and all(isinstance(n, str) for n in notes),
             "notes must be a list of str")
    _require(isinstance(header["fitted"], dict), "fitted must be a JSON object")
    _require(isinstance(header["arrays"], dict), "arrays must be a JSON object")
    codec = _REGISTRY[name]
    return codec, codec.estimator_class()


def _check_manifest(manifest, expected):
    missing = sorted(set(expected) - set(manifest))
    extra = sorted(set(manifest) - set(expected))
    _require(not missing, f"the header's arrays lack {missing}")
    _require(not extra, f"the header lists unknown array(s) {extra}")
    for name, (dtype, shape) in expected.items():
        entry = manifest[name]
        where = f"arrays[{name!r}]"
        _check_keys(entry, ("dtype", "shape"), where)
        _require(entry["dtype"] == dtype.name,
                 f"{where}: dtype {entry['dtype']!r}, the network needs {dtype.name}")
        _require(entry["shape"] == list(shape),
                 f"{where}: shape {entry['shape']!r}, the network needs {list(shape)}")


def _peek_npy(zf, info):
    """``(shape, dtype)`` from a member's .npy header, reading nothing else."""
    with zf.open(info) as fp:
        version = npy_format.read_magic(fp)
        if version == (1, 0):
            shape, fortran, dtype = npy_format.read_array_header_1_0(fp)
        elif version == (2, 0):
            shape, fortran, dtype = npy_format.read_array_header_2_0(fp)
        else:
            raise ModelFileError(f"member {info.filename!r} has .npy version "
                                 f"{version}")
    return shape, dtype


def _read_member(npz, info, name, dtype, shape):
    zf = npz.zip
    found_shape, found_dtype = _peek_npy(zf, info)
    _require(not found_dtype.hasobject,
             f"array {name!r} holds Python objects (pickled data); refused")
    _require(found_dtype.kind == dtype.kind and found_dtype.itemsize == dtype.itemsize
             and found_dtype.newbyteorder("=") == dtype,
             f"array {name!r} has dtype {found_dtype}, expected {dtype}")
    _require(tuple(found_shape) == tuple(shape),
             f"array {name!r} has shape {found_shape}, expected {tuple(shape)}")
    nbytes = int(np.prod(shape, dtype=object)) * dtype.itemsize
    _require(nbytes <= info.file_size <= nbytes + _NPY_HEADER_SLACK,
             f"array {name!r}: the member's size ({info.file_size} bytes) does not "
             f"match its header")
    arr = npz[name]
    _require(isinstance(arr, np.ndarray) and arr.shape == tuple(shape),
             f"array {name!r} could not be read")
    return np.ascontiguousarray(arr, dtype=dtype)


def _read(f):
    """``(header, arrays, codec, cls)`` of an open file, everything checked."""
    magic = f.read(4)
    _require(len(magic) > 0, "the file is empty")
    if magic != b"PK\x03\x04":
        hint = ""
        if magic[:1] == b"\x80" or magic[:1] in (b"(", b"c", b"}", b"]"):
            hint = " (it looks like a pickle, which is never loaded)"
        elif magic == b"\x93NUM":
            hint = " (it is a single .npy array, not a model)"
        raise ModelFileError(f"not an lstmforecast model file: no .npz (zip) "
                             f"signature{hint}")
    f.seek(0)
    with np.load(f, allow_pickle=False) as npz:
        _require(isinstance(npz, np.lib.npyio.NpzFile), "not an .npz archive")
        infos = npz.zip.infolist()
        names = [info.filename for info in infos]
        dupes = sorted({n for n in names if names.count(n) > 1})
        _require(not dupes, f"the archive repeats the member(s) {dupes}")
        bad = sorted(n for n in names if not n.endswith(".npy"))
        _require(not bad, f"the archive has non-.npy member(s) {bad}")
        members = {info.filename[:-4]: info for info in infos}
        _require(HEADER_NAME in members, "the archive has no 'header' member")
        info = members.pop(HEADER_NAME)
        _require(info.file_size <= MAX_HEADER_BYTES + _NPY_HEADER_SLACK,
                 "the header is too large")
        shape, dtype = _peek_npy(npz.zip, info)
        _require(not dtype.hasobject,
                 "the header holds Python objects (pickled data); refused")
        _require(dtype == np.uint8 and len(shape) == 1,
                 f"the header must be a 1-D uint8 array, got {dtype} {shape}")
        raw = _read_member(npz, info, HEADER_NAME, np.dtype(np.uint8), shape)
        header = _decode_header(raw)
        codec, cls = _check_top(header)
        expected = codec.expected_arrays(cls, header["fitted"], header["arrays"])
        _check_manifest(header["arrays"], expected)
        missing = sorted(set(expected) - set(members))
        extra = sorted(set(members) - set(expected))
        _require(not missing, f"the archive lacks the array(s) {missing}")
        _require(not extra, f"the archive has unknown array(s) {extra}")
        arrays = {name: _read_member(npz, members[name], name, dtype, shape)
                  for name, (dtype, shape) in expected.items()}
    return header, arrays, codec, cls


def _build(header, arrays, codec, cls):
    params = _params_from_header(cls, header["params"])
    est = cls(**params)
    try:
        codec.check_params(est)
    except (ValueError, TypeError) as exc:
        raise ModelFileError(f"invalid hyper-parameters: {exc}") from None
    codec.restore(est, header["fitted"], arrays)
    return est


def load(path):
    """Load a model written by ``save`` (``estimator.save(path)``).

    Parameters
    ----------
    path : str or path-like
        The file, exactly as given to ``save`` (no suffix is added).

    Returns
    -------
    estimator
        A fitted estimator whose predictions equal the saved one's exactly.

    Raises
    ------
    ValueError
        The file is not a valid model file (empty, truncated, not an ``.npz``, a
        pickle, tampered, an unknown estimator class, inconsistent shapes,
        non-finite weights, ...); the message names the problem. Nothing from the
        file is executed and nothing is written.
    FileNotFoundError
        ``path`` does not exist.
    """
    path = _fspath(path)
    if os.path.isdir(path):
        raise ModelFileError(f"cannot load {path!r}: it is a directory")
    try:
        f = open(path, "rb")
    except IsADirectoryError:
        raise ModelFileError(f"cannot load {path!r}: it is a directory") from None
    with f:
        try:
            header, arrays, codec, cls = _read(f)
            return _build(header, arrays, codec, cls)
        except ModelFileError as exc:
            raise ModelFileError(f"cannot load {path!r}: {exc}") from None
        except (zipfile.BadZipFile, EOFError) as exc:
            raise ModelFileError(f"cannot load {path!r}: not a valid lstmforecast "
                                 f"model file: the archive is damaged or truncated "
                                 f"({type(exc).__name__}: {exc})") from exc
        except Exception as exc:  # zip, .npy and JSON errors of a damaged file
            raise ModelFileError(f"cannot load {path!r}: not a valid lstmforecast "
                                 f"model file ({type(exc).__name__}: {exc})") from exc
