"""Shared estimator machinery: parameters, fitting loop, weights, prediction."""

from __future__ import annotations

import numbers
import sys
import time
import warnings

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.exceptions import ConvergenceWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.validation import check_is_fitted

from . import _device, _kernels, _layout
from .config import call_kernel
from ._data import check_mask, check_sequences, pad_targets
from ._optimizers import OPTIMIZER_CODES, make_hyper
from ._threads import cpu_kernels
from ._training import train_batches, train_sequences
from ._truncated import train_truncated

_DTYPES = {"float32": np.float32, "float64": np.float64}

# The net input of an output gate held open (output_gate=False): in float64
# sigmoid(40) is exactly 1.0 and its slope 1 - 1 = 0.
_OPEN_GATE_BIAS = 40.0

# Target duration of one jitted training call: short enough for Ctrl-C and progress
# to respond, long enough that Python overhead does not count.
_SECONDS_PER_CALL = 0.25


# --- device selection (GPU path: lstmforecast/gpu_lstm.py, via _device) ----------
def _check_device(device, gradient):
    """Where a fit runs, ``"cpu"`` or ``"cuda"``; raises when ``device="cuda"``
    cannot be used. Checked when fitting only: a model fitted on a GPU loads,
    pickles and predicts on any machine."""
    if device == "cuda" and gradient == "truncated":
        raise ValueError("gradient='truncated' has no GPU kernel; use device='cpu' "
                         "(or device='auto', which runs it on the CPU)")
    resolved = _device.resolve_device(device)
    return "cpu" if gradient == "truncated" else resolved
# --- end device selection ---------------------------------------------------------


def _canonical_order(X, lengths, state0):
    """An order of the sequences (int64 row indices) that depends only on their
    contents.

    Sequences are run in chunks, and a sequence's position in its chunk decides
    which BLAS kernel sums its products (edge kernels round differently in the
    last bits). Running them sorted by length, then by a fixed random projection
    of their inputs (and initial states), makes every output independent of the
    order in which the caller lists the sequences, bit for bit. The kernels take
    the order itself: reordering ``X`` would copy all of the inputs.
    """
    n = X.shape[0]
    if n < 2:
        return np.arange(n, dtype=np.int64)
    # (float64 keys: distinct sequences, one-hot ones included, do not tie)
    flat = X.reshape(n, -1)
    key = flat @ np.random.default_rng(1997).standard_normal(flat.shape[1])
    if state0.shape[0]:
        flat0 = state0.reshape(n, -1)
        key += flat0 @ np.random.default_rng(1998).standard_normal(flat0.shape[1])
    return np.lexsort((key, lengths)).astype(np.int64, copy=False)


class BaseLSTM(BaseEstimator):
    """Base class of the LSTM estimators (not for direct use)."""

    _parameter_constraints = {
        "hidden_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "num_layers": [Interval(numbers.Integral, 1, None, closed="left")],
        "cell": [StrOptions(set(_layout.CELL_CODES))],
        "block_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "squashing": [StrOptions(set(_layout.SQUASHINGS))],
        "gradient": [StrOptions({"bptt", "truncated"})],
        "update": [StrOptions({"sequence", "step"})],
        "input_gate_bias": [None, "array-like", numbers.Real],
        "output_gate_bias": [None, "array-like", numbers.Real],
        "forget_gate_bias": [None, numbers.Real],
        "hidden_bias": [StrOptions({"all", "gates", "none"})],
        "output_bias": ["boolean"],
        "input_to_output": ["boolean"],
        "output_gate": ["boolean"],
        "recurrent_weights": ["boolean"],
        "optimizer": [StrOptions(set(OPTIMIZER_CODES))],
        "learning_rate": [Interval(numbers.Real, 0, None, closed="neither")],
        "momentum": [Interval(numbers.Real, 0, 1, closed="left")],
        "nesterov": ["boolean"],
        "beta_1": [Interval(numbers.Real, 0, 1, closed="left")],
        "beta_2": [Interval(numbers.Real, 0, 1, closed="left")],
        "epsilon": [Interval(numbers.Real, 0, None, closed="neither")],
        "batch_size": [Interval(numbers.Integral, 1, None, closed="left")],
        "max_epochs": [Interval(numbers.Integral, 1, None, closed="left")],
        "shuffle": ["boolean"],
        "early_stopping": ["boolean"],
        "validation_fraction": [Interval(numbers.Real, 0, 1, closed="neither")],
        "n_iter_no_change": [Interval(numbers.Integral, 1, None, closed="left")],
        "tol": [Interval(numbers.Real, 0, None, closed="left")],
        "clip_norm": [None, Interval(numbers.Real, 0, None, closed="neither")],
        "alpha": [Interval(numbers.Real, 0, None, closed="left")],
        "output": [StrOptions({"last", "sequence"})],
        "loss": [StrOptions({"auto", "squared_error", "log_loss"})],
        "init_scale": [None, Interval(numbers.Real, 0, None, closed="neither")],
        "dtype": [StrOptions(set(_DTYPES))],
        "device": [StrOptions({"cpu", "cuda", "auto"})],
        "random_state": ["random_state"],
        "verbose": ["verbose"],
        "warm_start": ["boolean"],
    }

    def __init__(self, hidden_size=32, *, num_layers=1, cell="lstm", block_size=1,
                 squashing="appendix", gradient="bptt", update="sequence",
                 optimizer="adam", learning_rate=1e-3,
                 momentum=0.0, nesterov=False, beta_1=0.9, beta_2=0.999,
                 epsilon=1e-8, batch_size=32, max_epochs=200, shuffle=True,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 tol=1e-4, clip_norm=None, alpha=0.0, output="last",
                 output_activation="auto", loss="auto", init_scale=None,
                 input_gate_bias=None, output_gate_bias=None, forget_gate_bias=None,
                 hidden_bias="all", output_bias=True, input_to_output=False,
                 output_gate=True, recurrent_weights=True, dtype="float32",
                 device="cpu", random_state=None, verbose=0, warm_start=False):
        self.hidden_size = hidden_size
        self.num_layers = num_layers
        self.cell = cell
        self.block_size = block_size
        self.squashing = squashing
        self.gradient = gradient
        self.update = update
        self.optimizer = optimizer
        self.learning_rate = learning_rate
        self.momentum = momentum
        self.nesterov = nesterov
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.shuffle = shuffle
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.n_iter_no_change = n_iter_no_change
        self.tol = tol
        self.clip_norm = clip_norm
        self.alpha = alpha
        self.output = output
        self.output_activation = output_activation
        self.loss = loss
        self.init_scale = init_scale
        self.input_gate_bias = input_gate_bias
        self.output_gate_bias = output_gate_bias
        self.forget_gate_bias = forget_gate_bias
        self.hidden_bias = hidden_bias
        self.output_bias = output_bias
        self.input_to_output = input_to_output
        self.output_gate = output_gate
        self.recurrent_weights = recurrent_weights
        self.dtype = dtype
        self.device = device
        self.random_state = random_state
        self.verbose = verbose
        self.warm_start = warm_start

    # ----------------------------------------------------------------- checks
    def _check_loss(self):
        """Raise ``ValueError`` when ``loss`` does not fit ``output_activation``."""
        raise NotImplementedError

    def _check_hyper_parameters(self):
        self._validate_params()
        self._check_loss()
        if self.cell == "lstm1997" and self.hidden_size % self.block_size:
            raise ValueError(f"hidden_size={self.hidden_size} must be a multiple of "
                             f"block_size={self.block_size} for cell='lstm1997'")
        if self.cell == "lstm" and self.block_size != 1:
            raise ValueError("block_size applies to cell='lstm1997' only; "
                             "cell='lstm' needs block_size=1")
        if self.cell == "lstm" and self.squashing != "appendix":
            raise ValueError(f"squashing={self.squashing!r} applies to "
                             "cell='lstm1997' only")
        if self.cell == "lstm1997" and self.forget_gate_bias is not None:
            raise ValueError("forget_gate_bias applies to cell='lstm' only: the 1997 "
                             "cell has no forget gate")
        if self.cell == "lstm":
            for name in ("input_gate_bias", "output_gate_bias"):
                if getattr(self, name) is not None:
                    raise ValueError(f"{name} applies to cell='lstm1997' only")
            if self.hidden_bias == "gates":
                raise ValueError("hidden_bias='gates' applies to cell='lstm1997' only")
            if not self.output_gate:
                raise ValueError("output_gate=False applies to cell='lstm1997' only")
        if not self.output_gate and self.output_gate_bias is not None:
            raise ValueError("output_gate_bias needs output_gate=True")
        if self.gradient == "truncated" and self.num_layers != 1:
            raise ValueError(
                "gradient='truncated' (the 1997 rule) needs num_layers=1: error "
                "flows back only through each cell's own state; use gradient='bptt' "
                "for stacked layers")
        if self.update == "step" and (self.gradient != "truncated"
                                      or self.batch_size != 1):
            raise ValueError("update='step' (a weight update after every target "
                             "step) needs gradient='truncated' and batch_size=1")
        self._gate_biases()

    def _gate_biases(self):
        """Initial input- and output-gate biases, one per block (or None)."""
        n_blocks = self.hidden_size // self.block_size
        values = []
        for name in ("input_gate_bias", "output_gate_bias"):
            value = getattr(self, name)
            if value is None:
                values.append(None)
                continue
            arr = np.asarray(value)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"{name} must be numeric, got {arr.dtype}")
            arr = np.broadcast_to(arr.astype(np.float64), (n_blocks,)) \
                if arr.ndim == 0 else arr.astype(np.float64)
            if arr.shape != (n_blocks,):
                raise ValueError(f"{name} needs one value per memory block "
                                 f"({n_blocks}), got shape {arr.shape}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"{name} has non-finite values")
            values.append(arr)
        return values

    @property
    def _np_dtype(self):
        """The dtype a fit trains in (the fitted model keeps ``params_.dtype``)."""
        return _DTYPES[self.dtype]

    def _network_config(self):
        """The hyper-parameters that shape the network (and its output)."""
        return {"cell": self.cell, "squashing": self.squashing,
                "hidden_size": self.hidden_size,
                "block_size": self.block_size, "num_layers": self.num_layers,
                "input_to_output": self.input_to_output,
                "output": self.output, "dtype": self.dtype,
                "output_activation": self.output_activation, "loss": self.loss}

    def _network_args(self):
        """``(cell, hidden_size, block_size, loss_kind)`` of the fitted network
        (``cell``: the kernels' code, which also says the squashing reading)."""
        net = self._net
        # (models saved before the squashing parameter have no such key)
        cell = _layout.cell_code(net["cell"], net.get("squashing", "appendix"))
        return cell, net["hidden_size"], net["block_size"], self._loss_kind

    def _unpack_args(self):
        net = self._net
        return (_layout.CELL_CODES[net["cell"]], self.input_size_, net["hidden_size"],
                net["num_layers"], self.n_outputs_, net["block_size"],
                net.get("input_to_output", False))

    def _no_state(self):
        """A zero-length initial-state array: every sequence starts from zeros."""
        return np.zeros((0, self._net["num_layers"], 1), dtype=self.params_.dtype)

    # ------------------------------------------------------------ parameters
    def _initialize(self, n_outputs, rng):
        self._net = self._network_config()
        cell = _layout.CELL_CODES[self.cell]
        self._layout, n_params = _layout.make_layout(
            cell, self.input_size_, self.hidden_size, self.num_layers, n_outputs,
            self.block_size, self.input_to_output)
        scale = (self.init_scale if self.init_scale is not None
                 else 1.0 / np.sqrt(self.hidden_size))
        params = rng.uniform(-scale, scale, n_params)
        l2_mask = np.zeros(n_params)
        train_mask = np.ones(n_params)
        args = (cell, self.input_size_, self.hidden_size, self.num_layers, n_outputs,
                self.block_size, self.input_to_output)
        blocks = _layout.unpack(params, *args)
        for name, block in _layout.unpack(l2_mask, *args).items():
            if "weight" in name:
                block[...] = 1.0
        trainable = _layout.unpack(train_mask, *args)
        H = self.hidden_size
        n_blocks = H // self.block_size
        in_bias, out_bias = self._gate_biases()
        for layer in range(self.num_layers):
            bias_names = [n for n in blocks if n.startswith("bias_")
                          and n.endswith(f"_l{layer}")]
            if self.hidden_bias == "none":
                frozen = slice(None)
            elif self.hidden_bias == "gates":
                frozen = slice(0, H)  # the cells' own biases
            else:
                frozen = slice(0, 0)
            for name in bias_names:
                blocks[name][frozen] = 0.0
                trainable[name][frozen] = 0.0
            bias = blocks[bias_names[0]]
            if self.cell == "lstm" and self.forget_gate_bias is not None:
                # the whole initial forget bias in bias_ih; bias_hh's part is 0
                bias[H:2 * H] = self.forget_gate_bias
                blocks[bias_names[1]][H:2 * H] = 0.0
            if in_bias is not None:
                bias[H:H + n_blocks] = in_bias
            if out_bias is not None:
                bias[H + n_blocks:] = out_bias
        if not self.output_bias:
            blocks["head.bias"][...] = 0.0
            trainable["head.bias"][...] = 0.0
        for layer in range(self.num_layers):
            w_ih, w_hh = f"weight_ih_l{layer}", f"weight_hh_l{layer}"
            if not self.recurrent_weights:
                blocks[w_hh][...] = 0.0
                trainable[w_hh][...] = 0.0
            if not self.output_gate:
                # A gate held open, no weights in or out, none trained: its
                # activation sigmoid(40) is 1.0 exactly in float64 (float32's fast
                # sigmoid comes within one rounding of it).
                gates = slice(H + n_blocks, H + 2 * n_blocks)
                for name in (w_ih, w_hh, f"bias_ih_l{layer}"):
                    blocks[name][gates] = 0.0
                    trainable[name][gates] = 0.0
                blocks[f"bias_ih_l{layer}"][gates] = _OPEN_GATE_BIAS
                blocks[w_hh][:, gates] = 0.0
                trainable[w_hh][:, gates] = 0.0
        self.params_ = params.astype(self._np_dtype)
        self.n_outputs_ = n_outputs
        self._l2_mask = l2_mask.astype(self._np_dtype)
        self._train_mask = train_mask.astype(self._np_dtype)
        self._opt_state = np.zeros((2, n_params), dtype=self._np_dtype)
        self._opt_step = np.zeros(1, dtype=np.int64)

    @property
    def n_params_(self):
        """Number of trainable parameters."""
        check_is_fitted(self, "params_")
        return int(np.count_nonzero(self._train_mask))

    def get_weights(self, layout="torch"):
        """Weights as a dict of new arrays named like ``torch.nn.LSTM.state_dict()``.

        Parameters
        ----------
        layout : {"torch", "native"}, default="torch"
            ``"torch"`` (``cell="lstm"`` only) gives ``weight_ih_l0``,
            ``weight_hh_l0``, ``bias_ih_l0``, ``bias_hh_l0``, ... plus
            ``head.weight`` and ``head.bias``; ``"native"`` gives the same names for
            any cell (``lstm1997`` has one bias per layer).

        Returns
        -------
        weights : dict of str to ndarray
        """
        check_is_fitted(self, "params_")
        self._check_layout(layout)
        blocks = _layout.unpack(self.params_, *self._unpack_args())
        return {name: block.copy() for name, block in blocks.items()}

    def set_weights(self, weights, layout="torch"):
        """Replace the fitted weights (shapes must match the fitted network).

        Parameters
        ----------
        weights : dict of str to array-like
            As returned by :meth:`get_weights`; a torch ``state_dict`` converted to
            NumPy works too.
        layout : {"torch", "native"}, default="torch"

        Returns
        -------
        self
        """
        check_is_fitted(self, "params_")
        self._check_layout(layout)
        converted = {}
        for name, value in weights.items():
            if hasattr(value, "detach"):
                value = value.detach().cpu().numpy()
            arr = np.asarray(value)
            if arr.dtype.kind not in "fiu":
                raise TypeError(f"weight {name!r} must be numeric, got {arr.dtype}")
            if not np.all(np.isfinite(arr)):
                raise ValueError(f"weight {name!r} has non-finite values")
            converted[name] = arr
        self.params_ = _layout.pack(converted, *self._unpack_args(),
                                    dtype=self.params_.dtype)
        return self

    def save(self, path):
        """Save the fitted model to ``path``; :func:`lstmforecast.load` reads it.

        The file is an ``.npz`` archive of numeric arrays (weights, optimizer state)
        plus a JSON header (format version, library version, class, hyper-parameters,
        fitted attributes, array shapes and dtypes); it holds no pickled data, so
        loading it cannot run code. ``path`` (str or path-like) is used exactly as
        given: no ``.npz`` suffix is added. The file is written to a temporary name in
        the same directory and then renamed, so a crash never leaves a half-written
        model. See :mod:`lstmforecast._persistence` for the format.

        Parameters
        ----------
        path : str or path-like

        Raises
        ------
        NotFittedError
            When the estimator is not fitted.
        ValueError
            When a hyper-parameter or fitted attribute cannot be stored (the message
            names it). A ``RandomState`` ``random_state`` is saved as None with a
            warning and a note in the header.
        """
        from ._persistence import save
        save(self, path)

    def _check_layout(self, layout):
        if layout not in ("torch", "native"):
            raise ValueError(f"layout must be 'torch' or 'native', got {layout!r}")
        if layout == "torch" and self._net["cell"] != "lstm":
            raise ValueError("layout='torch' exists for cell='lstm' only; use "
                             "layout='native' for cell='lstm1997'")

    # ---------------------------------------------------------------- fitting
    def _check_solver(self):
        return not self.early_stopping

    def _encode_targets(self, seqs, y, incremental):
        """Return ``(rows, n_outputs)``; subclasses encode labels."""
        raise NotImplementedError

    def _fit(self, X, y, mask, incremental):
        self._check_hyper_parameters()
        _check_device(self.device, self.gradient)  # device selection
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the "
                             "target y is None")
        first_pass = not hasattr(self, "params_") or (
            not self.warm_start and not incremental)
        if not first_pass and self._net != self._network_config():
            changed = sorted(k for k, v in self._network_config().items()
                             if self._net[k] != v)
            raise ValueError(f"{', '.join(changed)} changed since the last fit; "
                             "continuing training needs the same network: refit with "
                             "warm_start=False")
        # Validate everything before touching the fitted state: a failed call must
        # leave a fitted model as it was.
        saved = self.__dict__.copy()
        try:
            seqs = check_sequences(self, X, self._np_dtype, reset=first_pass)
            rows, n_outputs = self._encode_targets(seqs, y, first_pass)
            M = check_mask(seqs, mask, self.output, self._np_dtype)
            Y = pad_targets(seqs, rows, self.output, self._np_dtype)
            if not first_pass and n_outputs != self.n_outputs_:
                raise ValueError(f"y has {n_outputs} outputs, the fitted model has "
                                 f"{self.n_outputs_}")
        except Exception:
            self.__dict__.clear()
            self.__dict__.update(saved)
            raise
        if first_pass:
            self._rng = np.random.default_rng(
                self.random_state if not isinstance(self.random_state,
                                                    np.random.RandomState)
                else self.random_state.randint(2**31))
            self._initialize(n_outputs, self._rng)
            self.loss_curve_ = []
            self.validation_scores_ = [] if self.early_stopping else None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf
            self.n_iter_ = 0
            self.t_ = 0
            self._no_improvement_count = 0
        n_seq = seqs.n_sequences
        train_idx = np.arange(n_seq)
        val = None
        if self.early_stopping and not incremental:
            n_val = int(np.ceil(self.validation_fraction * n_seq))
            if n_seq - n_val < 1:
                raise ValueError(f"validation_fraction={self.validation_fraction} "
                                 f"leaves no training sequence out of {n_seq}")
            train_idx = np.arange(n_seq - n_val)
            val = np.arange(n_seq - n_val, n_seq)
        max_epochs = 1 if incremental else self.max_epochs
        self._run_epochs(seqs, Y, M, train_idx, val, max_epochs, incremental)
        return self

    def _hyper(self):
        """The optimizer's hyper-parameter vector (``_optimizers.make_hyper``)."""
        return make_hyper(self.learning_rate, self.momentum, self.nesterov,
                          self.beta_1, self.beta_2, self.epsilon, self.alpha,
                          self.clip_norm)

    def _run_epochs(self, seqs, Y, M, train_idx, val, max_epochs, incremental):
        hyper = self._hyper()
        opt_kind = OPTIMIZER_CODES[self.optimizer]
        cell, hidden, block, loss_kind = self._network_args()
        no_state = self._no_state()
        n_train = train_idx.shape[0]
        batch_size = min(self.batch_size, n_train)
        n_batches = -(-n_train // batch_size)
        best_params = self.params_.copy()
        # --- device dispatch: on the GPU, data, weights and optimizer state stay on
        # the device; each call copies params_ and the optimizer state back in place.
        gpu = None
        if _check_device(self.device, self.gradient) == "cuda":
            gpu = _device.gpu_backend().GpuTrainer(
                self.params_, self._layout, seqs.X, seqs.lengths, Y, M, no_state,
                cell, hidden, block, loss_kind, opt_kind, self._opt_state,
                self._opt_step, hyper, self._l2_mask, self._train_mask)
        # --- end device dispatch
        batches_per_call = 1
        stopped = False
        try:
            for _ in range(max_epochs):
                start_time = time.perf_counter()
                order = (self._rng.permutation(train_idx) if self.shuffle
                         else train_idx.copy())
                batch_losses = []
                batch_sizes = []
                done = 0
                while done < n_batches:
                    count = min(batches_per_call, n_batches - done)
                    call_start = time.perf_counter()
                    if self.gradient == "truncated":
                        # (no BLAS call: O(weights) scalar work per step)
                        losses, sizes, failed = call_kernel(
                            train_truncated, self.params_, self._layout, seqs.X,
                            seqs.lengths, Y, M, order, batch_size, done, count, cell,
                            hidden, block, loss_kind, self.update == "step", opt_kind,
                            self._opt_state, self._opt_step, hyper, self._l2_mask,
                            self._train_mask)
                    elif gpu is not None:  # device dispatch
                        losses, sizes, failed = gpu.run(order, batch_size, done, count)
                    else:
                        # (one sequence per update: the one-sequence kernels)
                        kernel = train_sequences if batch_size == 1 else train_batches
                        with cpu_kernels() as parallel:
                            losses, sizes, failed = call_kernel(
                                kernel, self.params_, self._layout, seqs.X,
                                seqs.lengths, Y, M, no_state, order, batch_size, done,
                                count, cell, hidden, block, loss_kind, opt_kind,
                                self._opt_state, self._opt_step, hyper, self._l2_mask,
                                self._train_mask, parallel)
                    if failed >= 0:
                        raise ValueError(
                            f"training diverged: the loss or the weights became "
                            f"non-finite at epoch {self.n_iter_ + 1}, batch "
                            f"{done + failed + 1} of {n_batches}; the weights from "
                            "before that batch were kept. Lower learning_rate or set "
                            "clip_norm.")
                    batch_losses.append(losses)
                    batch_sizes.append(sizes)
                    done += count
                    elapsed = time.perf_counter() - call_start
                    batches_per_call = max(1, int(count * _SECONDS_PER_CALL
                                                  / max(elapsed, 1e-6)))
                    if self.verbose and n_batches > 1 and done < n_batches:
                        self._progress(done, n_batches)
                self.n_iter_ += 1
                self.t_ += n_train
                # summed once over the epoch: the same rounding however the
                # batches were split into calls (that split depends on timing)
                epoch_loss = float(np.dot(np.concatenate(batch_losses),
                                          np.concatenate(batch_sizes))) / n_train
                self.loss_curve_.append(epoch_loss)
                self.last_batch_losses_ = np.concatenate(batch_losses)
                stopped = self._update_no_improvement(epoch_loss, val, seqs, Y, M,
                                                      best_params)
                if self.verbose:
                    msg = f"Epoch {self.n_iter_}: loss={epoch_loss:.6g}"
                    if val is not None:
                        msg += f" validation score={self.validation_scores_[-1]:.6g}"
                    msg += f" ({time.perf_counter() - start_time:.2f} s)"
                    print("\r" + msg, file=sys.stderr, flush=True)
                if stopped:
                    break
        except KeyboardInterrupt:
            warnings.warn(f"fit interrupted at epoch {self.n_iter_ + 1}; keeping the "
                          "best weights so far", UserWarning, stacklevel=3)
            if val is not None:
                self.params_ = best_params
            return
        if val is not None:
            self.params_ = best_params
        if not stopped and not incremental:
            warnings.warn(f"Stochastic optimizer: maximum epochs ({max_epochs}) "
                          "reached and the optimization hasn't converged yet.",
                          ConvergenceWarning, stacklevel=3)

    def _progress(self, done, total):
        width = 30
        filled = int(width * done / total)
        bar = "#" * filled + "-" * (width - filled)
        print(f"\r[{bar}] batch {done}/{total}", end="", file=sys.stderr, flush=True)

    def _update_no_improvement(self, epoch_loss, val, seqs, Y, M, best_params):
        """Record progress; return True when training should stop."""
        if val is not None:
            score = self._score_arrays(seqs.X[val], seqs.lengths[val], Y[val], M[val])
            self.validation_scores_.append(score)
            if (self.best_validation_score_ is None
                    or score > self.best_validation_score_ + self.tol):
                self._no_improvement_count = 0
            else:
                self._no_improvement_count += 1
            if (self.best_validation_score_ is None
                    or score > self.best_validation_score_):
                self.best_validation_score_ = score
                best_params[:] = self.params_
        else:
            if epoch_loss > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, epoch_loss)
        return self._no_improvement_count > self.n_iter_no_change

    # ------------------------------------------------------------- prediction
    def _forward(self, X):
        """Validate X and run the network: ``(seqs, out)`` with out (N, T|1, K)."""
        check_is_fitted(self, "params_")
        seqs = check_sequences(self, X, self.params_.dtype.type, reset=False)
        out, _ = self._run_forward(seqs.X, seqs.lengths,
                                   self._net["output"] == "last")
        return seqs, out.astype(np.float64)

    def _run_forward(self, X, lengths, last_only, state0=None):
        """Outputs ``(N, T|1, K)`` of the fitted network and its final states
        ``(N, L, R + H)``, from ``state0`` (zeros when None), on ``self.device``
        (the CPU where ``device="cuda"`` has no GPU: a GPU-fitted model predicts
        anywhere)."""
        cell, hidden, block, loss_kind = self._network_args()
        state0 = self._no_state() if state0 is None else state0
        args = (self.params_, self._layout, X, lengths, state0,
                _canonical_order(X, lengths, state0), cell, hidden, block, loss_kind,
                last_only)
        if _device.resolve_device(self.device, fallback=True) == "cuda":
            out, state = _device.gpu_backend().gpu_forward(*args, True)  # dispatch
        else:
            with cpu_kernels() as parallel:
                # (compiled at Numba's own level: at -O2, predict on medium and
                # large networks ran 6-10% slower, where training did not change)
                out, state = _kernels.forward(*args, parallel)
        return out, state

    def _per_sequence(self, seqs, out):
        """Split ``out`` into what the caller expects: an array or a list."""
        if self._net["output"] == "last":
            return out[:, 0, :]
        if seqs.ragged:
            return [out[i, :seqs.lengths[i]] for i in range(seqs.n_sequences)]
        return out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags
