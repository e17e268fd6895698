"""scikit-learn estimators: :class:`LSTMRegressor` and :class:`LSTMClassifier`."""

from __future__ import annotations

import numpy as np
from sklearn.base import ClassifierMixin, RegressorMixin
from sklearn.metrics import accuracy_score, r2_score
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, column_or_1d

from . import _layout
from ._base import BaseLSTM
from ._data import check_mask, pad_targets, step_targets

_SHARED_DOC = """
    Parameters
    ----------
    hidden_size : int, default=32
        Memory cells per layer (for ``cell="lstm1997"``: cells in all blocks).
    num_layers : int, default=1
        Stacked recurrent layers.
    cell : {"lstm", "lstm1997"}, default="lstm"
        ``"lstm"``: the forget-gate LSTM of ``torch.nn.LSTM``. ``"lstm1997"``:
        Hochreiter & Schmidhuber's cell (no forget gate, memory blocks of
        ``block_size`` cells sharing an input and an output gate).
    block_size : int, default=1
        Cells per memory block (``cell="lstm1997"``).
    squashing : {"appendix", "table10", "exp2", "exp2_centered"}, default="appendix"
        The squashing ranges of ``cell="lstm1997"``, where the paper contradicts
        itself. ``"appendix"`` (the Appendix and the prose): cell input
        ``g(z) = 2 tanh(z / 2)`` in [-2, 2], cell output ``h(s) = tanh(s / 2)`` in
        [-1, 1]. ``"table10"`` (Table 10's caption): ``g(z) = tanh(z / 2)`` in
        [-1, 1], ``h(s) = 2 tanh(s / 2)`` in [-2, 2]; with it the paper's embedded
        Reber (Exp. 1) and distractor (Exp. 2c) settings learn much more reliably.
        ``"exp2"`` (Exps. 2a/2b): ``g`` the logistic in [0, 1], ``h`` the identity.
        ``"exp2_centered"``: ``g(z) = tanh(z / 2)`` in [-1, 1], ``h`` the identity
        (Table 10's "g1" read like its "h1" and "g2"); with it Exp. 2a learns,
        while with ``"exp2"`` the state sums to about 25 over its 100 steps and
        training at the paper's rate diverges.
    gradient : {"bptt", "truncated"}, default="bptt"
        ``"bptt"``: full-gradient backpropagation through time. ``"truncated"``:
        the 1997 paper's rule (Appendix A.1): error flows back in time only through
        the constant error carousel, with RTRL-style traces carried forward; O(weights)
        time per step and memory independent of the sequence length. Needs
        ``cell="lstm1997"`` and ``num_layers=1``.
    update : {"sequence", "step"}, default="sequence"
        With ``gradient="truncated"`` and ``batch_size=1``, ``"step"`` updates the
        weights after every step that has a target (fully on-line); ``"sequence"``
        once per mini-batch. The paper says "on-line" without saying which; the two
        differ only when a sequence has several targets.
    optimizer : {"adam", "sgd"}, default="adam"
    learning_rate : float, default=1e-3
    momentum : float, default=0.0
        SGD momentum (``optimizer="sgd"``); 0 is plain SGD, as in PyTorch.
    nesterov : bool, default=False
        Nesterov momentum (``optimizer="sgd"``).
    beta_1, beta_2, epsilon : float, default=0.9, 0.999, 1e-8
        Adam's moment decay rates and denominator offset.
    batch_size : int, default=32
        Sequences per update.
    max_epochs : int, default=200
        Passes over the data; a ``ConvergenceWarning`` is raised when reached.
    shuffle : bool, default=True
        Shuffle the sequences every epoch.
    early_stopping : bool, default=False
        Hold out the **last** ``validation_fraction`` of the sequences (never a random
        split: later sequences must not leak into training), stop when the
        validation score stops improving, and restore the best weights.
    validation_fraction : float, default=0.1
    n_iter_no_change : int, default=10
        Epochs without an improvement of at least ``tol`` before stopping.
    tol : float, default=1e-4
    clip_norm : float or None, default=None
        Rescale each mini-batch gradient to at most this global L2 norm.
    alpha : float, default=0.0
        L2 penalty on the weight matrices (not the biases): ``0.5 * alpha * |W|^2``.
    output : {"last", "sequence"}, default="last"
        ``"last"``: one target per sequence, at its last step (many-to-one).
        ``"sequence"``: a target at every step (many-to-many); ``fit`` takes an
        optional ``mask`` of per-step weights.
    init_scale : float or None, default=None
        Weights start uniform in ``[-init_scale, init_scale]``; None uses
        ``1 / sqrt(hidden_size)`` as PyTorch does.
    input_gate_bias, output_gate_bias : float, array-like or None, default=None
        Initial input- / output-gate biases of ``cell="lstm1997"``, one value per
        memory block (e.g. ``[-3.0, -6.0]``, the paper's remedy for internal state
        drift and for the abuse problem); None keeps them random.
    forget_gate_bias : float or None, default=None
        Initial forget-gate bias of ``cell="lstm"`` (e.g. 1.0 as in Keras, or larger
        for long time lags: the gate then starts open and gradients survive long
        delays); None keeps PyTorch's random initialisation.
    hidden_bias : {"all", "gates", "none"}, default="all"
        Which recurrent units have (trainable) biases: all, only the gates
        (``cell="lstm1997"``), or none. Units without a bias have it fixed at 0.
    output_bias : bool, default=True
        Whether the output units have a bias.
    input_to_output : bool, default=False
        The output units also see the network's input of the same step (weights
        ``head.weight_input``; the paper's connectivity "B" of Exps. 2a/2b, a
        linear skip connection).
    output_gate : bool, default=True
        ``False`` (``cell="lstm1997"``): no output gates, as in Exps. 2a/2b. The
        gates stay in the weight layout but are held open (net input 40, so their
        activation is 1: exactly in float64, within one rounding in float32) with
        no weights in or out, none of them trained or counted in ``n_params_``.
    recurrent_weights : bool, default=True
        ``False``: cells and gates see only the layer's input, not the previous
        activations; the recurrent weights stay 0 and are not trained (Exps. 2a/2b:
        the constant error carousel is the only recurrence).
    dtype : {"float32", "float64"}, default="float32"
        Arithmetic precision of the weights and kernels.
    device : {"cpu", "cuda", "auto"}, default="cpu"
        Where training and prediction run. ``"cuda"`` needs a CUDA GPU and the
        ``gpu`` extra (numba-cuda); ``"auto"`` uses a GPU when
        ``numba.cuda.is_available()``, else the CPU. A model fitted on a GPU predicts,
        pickles and saves on a CPU-only machine. ``gradient="truncated"`` runs on the
        CPU only.
    random_state : int, RandomState instance or None, default=None
        Seeds weight initialisation and shuffling. The global ``np.random`` state is
        never used.
    verbose : int, default=0
        0 prints nothing; 1 one line per epoch (to stderr) and a progress bar
        within long epochs.
    warm_start : bool, default=False
        Continue from the previous fit's weights and optimizer state.
"""

_SHARED_ATTRIBUTES = """
    Attributes
    ----------
    params_ : ndarray
        All weights in one flat vector (see :meth:`get_weights`).
    n_features_in_ : int
        Columns of a 2-D ``X`` (time steps), or features per step for 3-D / list
        input.
    input_size_ : int
        Features per time step.
    n_outputs_ : int
        Output units.
    loss_curve_ : list of float
        Mean training loss of each epoch.
    last_batch_losses_ : ndarray
        The loss of each mini-batch of the last epoch, in training order, computed
        before that batch's update (with ``batch_size=1``: each sequence's error as
        it was processed, what the paper's stopping rules look at).
    validation_scores_ : list of float or None
        Validation score of each epoch (``early_stopping=True``).
    best_validation_score_ : float or None
    best_loss_ : float
    n_iter_ : int
        Epochs run.
    t_ : int
        Training sequences seen.
"""


def _rows_as_1d(rows):
    return np.concatenate([r[:, 0] if r.ndim == 2 else r for r in rows])


class LSTMRegressor(RegressorMixin, BaseLSTM):
    __doc__ = ("""LSTM regressor: one or many real-valued targets per sequence or step.

    Trains with squared error (``0.5 * sum_k (y_k - t_k)^2`` per target, averaged
    over targets) on a linear output layer, or on logistic output units with
    ``output_activation="sigmoid"`` as in the 1997 paper; or, for targets in
    [0, 1], with binary cross-entropy on logistic output units.
""" + _SHARED_DOC + """    output_activation : {"auto", "identity", "sigmoid"}, \
default="auto"
        ``"auto"`` is ``"identity"``.
    loss : {"auto", "squared_error", "log_loss"}, default="auto"
        ``"auto"`` is ``"squared_error"``. ``"log_loss"`` (binary cross-entropy
        per output, ``-[t log y + (1 - t) log(1 - y)]``; needs
        ``output_activation="sigmoid"`` and targets in [0, 1]) sends ``t - y``
        back from each output, without the factor ``y (1 - y)`` that squared
        error on a logistic unit has (the 1997 paper's eq. 19 has it). That
        factor nearly vanishes for targets near 0 or 1: on the paper's adding
        problem (Exp. 4) ``"log_loss"`` meets the stopping rule about eight times
        sooner.
""" + _SHARED_ATTRIBUTES + """
    See Also
    --------
    LSTMClassifier : the classification counterpart.

    Examples
    --------
    >>> import numpy as np
    >>> from lstmforecast import LSTMRegressor
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 10))
    >>> y = X[:, :3].sum(axis=1)
    >>> model = LSTMRegressor(hidden_size=8, max_epochs=5, random_state=0).fit(X, y)
    >>> model.predict(X[:2]).shape
    (2,)
    """)

    _parameter_constraints = {
        **BaseLSTM._parameter_constraints,
        "output_activation": [StrOptions({"auto", "identity", "sigmoid"})],
    }

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _check_loss(self):
        _layout.regressor_loss_kind(self.output_activation, self.loss)

    def _encode_targets(self, seqs, y, first_pass):
        rows, squeeze = step_targets(seqs, y, self.output, self._np_dtype)
        if rows[0].shape[1] == 0:
            raise ValueError("y has 0 outputs")
        kind = _layout.regressor_loss_kind(self.output_activation, self.loss)
        if kind == _layout.LOSS_LOGISTIC_XENT:
            low = min(float(r.min()) for r in rows)
            high = max(float(r.max()) for r in rows)
            if low < 0.0 or high > 1.0:
                raise ValueError("loss='log_loss' needs targets in [0, 1]; y has "
                                 f"values in [{low:.6g}, {high:.6g}]")
        if first_pass:
            self._y_squeeze = squeeze
            self._loss_kind = kind
        return rows, rows[0].shape[1]

    def fit(self, X, y, mask=None):
        """Fit the model to sequences ``X`` and targets ``y``.

        Parameters
        ----------
        X : array-like (n_sequences, n_timesteps[, n_features]), DataFrame, or list
            of arrays (T_i, n_features)
        y : array-like
            ``output="last"``: (n_sequences,) or (n_sequences, n_outputs).
            ``output="sequence"``: (n_sequences, n_timesteps[, n_outputs]) or a list
            of (T_i[, n_outputs]) arrays.
        mask : array-like or list, optional
            Per-step target weights (``output="sequence"`` only).

        Returns
        -------
        self
        """
        return self._fit(X, y, mask, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, mask=None):
        """One pass over ``(X, y)``, keeping the weights and optimizer state.

        Not available with ``early_stopping=True``.

        Returns
        -------
        self
        """
        return self._fit(X, y, mask, incremental=True)

    def predict(self, X):
        """Predict the targets of ``X``.

        Returns
        -------
        y_pred : ndarray or list of ndarray
            Shaped like the ``y`` used in ``fit``.
        """
        seqs, out = self._forward(X)
        pred = self._per_sequence(seqs, out)
        if self._y_squeeze:
            if isinstance(pred, list):
                return [p[:, 0] for p in pred]
            return pred[..., 0]
        return pred

    def _score_arrays(self, X, lengths, Y, M):
        out, _ = self._run_forward(X, lengths, False)
        sel = M > 0
        return r2_score(Y[sel].astype(np.float64), out[sel].astype(np.float64),
                        sample_weight=M[sel])

    def score(self, X, y, sample_weight=None, mask=None):
        """Coefficient of determination R^2 (over all target steps).

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "params_")
        if self._net["output"] == "last":
            return super().score(X, y, sample_weight=sample_weight)
        seqs, out = self._forward(X)
        rows, _ = step_targets(seqs, y, "sequence", np.float64)
        M = check_mask(seqs, mask, "sequence", np.float64)
        Y = pad_targets(seqs, rows, "sequence", np.float64)
        sel = M > 0
        return r2_score(Y[sel], out[sel], sample_weight=M[sel])


class LSTMClassifier(ClassifierMixin, BaseLSTM):
    __doc__ = ("""LSTM classifier: a label per sequence (or per step).

    Trains with cross-entropy on a logistic (two classes) or softmax output, or with
    squared error on logistic output units (``output_activation="sigmoid"``, the 1997
    paper's setting, one unit per class or one unit for two classes).
""" + _SHARED_DOC + """    output_activation : {"auto", "softmax", "sigmoid"}, \
default="auto"
        ``"auto"``: logistic with cross-entropy for two classes, softmax otherwise.
    loss : {"auto", "squared_error", "log_loss"}, default="auto"
        ``"auto"``: squared error for ``output_activation="sigmoid"`` (the
        paper's), cross-entropy otherwise. ``"squared_error"`` needs
        ``output_activation="sigmoid"``. With ``"sigmoid"``, ``"log_loss"`` is
        binary cross-entropy per output unit.
""" + _SHARED_ATTRIBUTES + """    classes_ : ndarray
        The class labels.

    See Also
    --------
    LSTMRegressor : the regression counterpart.

    Examples
    --------
    >>> import numpy as np
    >>> from lstmforecast import LSTMClassifier
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(64, 10))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> clf = LSTMClassifier(hidden_size=8, max_epochs=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X[:2]).shape
    (2, 2)
    """)

    _parameter_constraints = {
        **BaseLSTM._parameter_constraints,
        "output_activation": [StrOptions({"auto", "softmax", "sigmoid"})],
    }

    def _check_loss(self):
        _layout.classifier_loss_kind(self.output_activation, self.loss, 2)

    def _encode_targets(self, seqs, y, first_pass, classes=None):
        if self.output == "last":
            y = column_or_1d(y, warn=True)
        rows, _ = step_targets(seqs, y, self.output, None, numeric=False)
        labels = np.concatenate([r.ravel() for r in rows])
        if any(r.shape[1] != 1 for r in rows):
            raise ValueError("LSTMClassifier supports one label per target step; "
                             "multi-output classification is not supported")
        check_classification_targets(labels)
        if first_pass:
            if classes is None:
                classes = getattr(self, "_pending_classes", None)
            classes = np.unique(labels) if classes is None else np.unique(classes)
            if classes.shape[0] < 2:
                raise ValueError("LSTMClassifier needs samples of at least 2 classes "
                                 f"in the data; got only class {classes!r} in "
                                 f"{labels.shape[0]} sample(s)")
            self.classes_ = classes
            n_classes = classes.shape[0]
            self._loss_kind = _layout.classifier_loss_kind(
                self.output_activation, self.loss, n_classes)
            self._single_output = (n_classes == 2
                                   and self._loss_kind != _layout.LOSS_SOFTMAX_XENT)
        unknown = np.setdiff1d(labels, self.classes_)
        if unknown.size:
            raise ValueError(f"y has labels not seen in the first fit: {unknown!r}")
        n_out = 1 if self._single_output else self.classes_.shape[0]
        encoded = []
        for r in rows:
            codes = np.searchsorted(self.classes_, r[:, 0])
            if self._single_output:
                onehot = codes[:, None].astype(self._np_dtype)
            else:
                onehot = np.zeros((codes.shape[0], n_out), dtype=self._np_dtype)
                onehot[np.arange(codes.shape[0]), codes] = 1.0
            encoded.append(onehot)
        return encoded, n_out

    def fit(self, X, y, mask=None):
        """Fit the classifier to sequences ``X`` and labels ``y``.

        Parameters
        ----------
        X : array-like (n_sequences, n_timesteps[, n_features]), DataFrame, or list
            of arrays (T_i, n_features)
        y : array-like
            ``output="last"``: (n_sequences,) labels. ``output="sequence"``: a label
            per step, (n_sequences, n_timesteps) or a list of (T_i,) arrays.
        mask : array-like or list, optional
            Per-step target weights (``output="sequence"`` only).

        Returns
        -------
        self
        """
        return self._fit(X, y, mask, incremental=False)

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X, y, classes=None, mask=None):
        """One pass over ``(X, y)``, keeping the weights and optimizer state.

        Parameters
        ----------
        classes : array-like, optional
            All labels that will ever occur; taken from ``y`` on the first call when
            omitted.

        Returns
        -------
        self
        """
        if classes is not None and not hasattr(self, "classes_"):
            self._pending_classes = classes
        try:
            return self._fit(X, y, mask, incremental=True)
        finally:
            self.__dict__.pop("_pending_classes", None)

    def predict_proba(self, X):
        """Class probabilities.

        Returns
        -------
        proba : ndarray (n_sequences, n_classes), or per step for
            ``output="sequence"`` (a list for sequences of different lengths)
        """
        seqs, out = self._forward(X)
        proba = self._proba_from_outputs(out)
        return self._per_sequence(seqs, proba)

    def _proba_from_outputs(self, out):
        if self._single_output:
            p = out[..., 0:1]
            return np.concatenate([1.0 - p, p], axis=-1)
        if self._loss_kind != _layout.LOSS_SOFTMAX_XENT:
            total = out.sum(axis=-1, keepdims=True)
            total[total == 0] = 1.0
            return out / total
        return out

    def predict(self, X):
        """Predicted labels.

        Returns
        -------
        labels : ndarray (n_sequences,), or per step for ``output="sequence"``
        """
        proba = self.predict_proba(X)
        if isinstance(proba, list):
            return [self.classes_[np.argmax(p, axis=-1)] for p in proba]
        return self.classes_[np.argmax(proba, axis=-1)]

    def _score_arrays(self, X, lengths, Y, M):
        out, _ = self._run_forward(X, lengths, False)
        sel = M > 0
        proba = self._proba_from_outputs(out.astype(np.float64))[sel]
        if self._single_output:
            true = Y[sel][:, 0].astype(int)
        else:
            true = np.argmax(Y[sel], axis=-1)
        return accuracy_score(true, np.argmax(proba, axis=-1), sample_weight=M[sel])

    def score(self, X, y, sample_weight=None, mask=None):
        """Accuracy (over all target steps for ``output="sequence"``).

        Returns
        -------
        score : float
        """
        check_is_fitted(self, "params_")
        if self._net["output"] == "last":
            return super().score(X, y, sample_weight=sample_weight)
        pred = self.predict(X)
        seqs_pred = pred if isinstance(pred, list) else list(pred)
        true = y if isinstance(y, (list, tuple)) else list(np.asarray(y))
        if mask is None:
            return accuracy_score(_rows_as_1d(true), _rows_as_1d(seqs_pred))
        weights = mask if isinstance(mask, (list, tuple)) else list(np.asarray(mask))
        return accuracy_score(_rows_as_1d(true), _rows_as_1d(seqs_pred),
                              sample_weight=_rows_as_1d(weights))
