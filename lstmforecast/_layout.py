"""Packed parameter layout shared by every kernel, CPU and GPU.

All trainable numbers of a network live in one flat vector ``params``. The kernels
find each block through an ``int64`` offset table, ``layout``, of shape
``(num_layers + 1, 5)``:

* row ``l < num_layers`` (a recurrent layer):
  ``[off_weight_ih, off_weight_hh, off_bias_ih, off_bias_hh, input_size]``;
  ``off_bias_hh`` is ``-1`` for ``cell="lstm1997"``, which has a single bias.
* row ``num_layers`` (the output layer, "head"):
  ``[off_head_weight, off_head_bias, n_outputs, hidden_size, head_input_size]``;
  ``head_input_size`` is the number of network inputs the head also sees (``0``, or
  ``input_size`` with ``input_to_output=True``: the paper's connectivity "B"), whose
  weights ``head.weight_input`` (``n_outputs x head_input_size``) follow
  ``head.bias``.

Blocks are stored row-major, in the order weight_ih, weight_hh, bias_ih, bias_hh for
each layer, then head.weight, head.bias (and head.weight_input).

Cells
-----
``cell="lstm"`` (code ``CELL_LSTM``), exactly ``torch.nn.LSTM``: ``n_units = 4H`` with
the gates in the order i, f, g, o and the recurrent vector ``r = h`` (size ``H``)::

    z = W_ih x_t + b_ih + W_hh h_{t-1} + b_hh
    i, f, o = sigmoid(z_i), sigmoid(z_f), sigmoid(z_o);  g = tanh(z_g)
    c_t = f * c_{t-1} + i * g;  h_t = o * tanh(c_t)

``cell="lstm1997"`` (code ``CELL_LSTM1997``), Hochreiter & Schmidhuber (1997):
``n_blocks = H / block_size`` blocks; ``n_units = H + 2 n_blocks`` units ordered as
the ``H`` cells (cell ``v`` of block ``j`` is unit ``j * block_size + v``), the
input gates, then the output gates. Every unit sees the layer input and the previous
activations of all units, ``r_{t-1} = [y^c, y^in, y^out]`` (size ``n_units``)::

    z = W_ih x_t + W_hh r_{t-1} + b
    y^in_j = sigmoid(z_in_j);  y^out_j = sigmoid(z_out_j)
    s_k(t) = s_k(t-1) + y^in_{j(k)} * 2 tanh(z_k / 2)        (constant error carousel)
    y^c_k = y^out_{j(k)} * tanh(s_k(t) / 2)

These are the squashing ranges of the paper's Appendix and prose (g in [-2, 2], h in
[-1, 1]; ``squashing="appendix"``). Table 10's caption swaps them (g in [-1, 1], h in
[-2, 2]); ``squashing="table10"`` (code ``CELL_LSTM1997_TABLE10``) is that reading,
the same network and layout with ``g(z) = tanh(z / 2)`` and ``h(s) = 2 tanh(s / 2)``.
``squashing="exp2"`` (code ``CELL_LSTM1997_EXP2``) is the cell of Exps. 2a/2b:
``g(z) = 1 / (1 + e^-z)`` in [0, 1] (computed as ``0.5 + 0.5 tanh(z / 2)``) and
``h(s) = s``. ``squashing="exp2_centered"`` (code ``CELL_LSTM1997_EXP2_CENTERED``)
reads Table 10's "g1" for Exps. 2a/2b like its "h1" and "g2" under the Appendix, a
logistic scaled to [-1, 1]: ``g(z) = tanh(z / 2)`` and ``h(s) = s``.

In both cells the output of a layer at step t (fed to the next layer and the head)
is ``r_t[:H]``. The recurrent state of a layer is ``[r (R values), c (H values)]``
with ``R = H`` for lstm and ``R = n_units`` for lstm1997; state arrays have shape
``(n_sequences, num_layers, R + H)``.

Head and losses (``loss_kind``)
-------------------------------
``y_t = act(head.weight @ r_t[:H] + head.bias [+ head.weight_input @ x_t])`` (``x_t``
the network's input at step t) with, per target step:

* ``LOSS_SQUARED`` (0): identity, ``0.5 * sum_k (y_k - t_k)^2``
* ``LOSS_SIGMOID_SQUARED`` (1): logistic, ``0.5 * sum_k (y_k - t_k)^2`` (the paper)
* ``LOSS_SOFTMAX_XENT`` (2): softmax, ``-sum_k t_k log y_k``
* ``LOSS_LOGISTIC_XENT`` (3): logistic, ``-sum_k [t_k log y_k + (1-t_k) log(1-y_k)]``

The data loss is ``sum_{b,t} mask[b,t] * loss[b,t] / sum_{b,t} mask[b,t]``.
"""

from __future__ import annotations

import numpy as np

CELL_LSTM = 0
CELL_LSTM1997 = 1
CELL_LSTM1997_TABLE10 = 2
CELL_LSTM1997_EXP2 = 3
CELL_LSTM1997_EXP2_CENTERED = 4
CELL_CODES = {"lstm": CELL_LSTM, "lstm1997": CELL_LSTM1997}
SQUASHINGS = ("appendix", "table10", "exp2", "exp2_centered")
_SQUASHING_CODES = {"table10": CELL_LSTM1997_TABLE10, "exp2": CELL_LSTM1997_EXP2,
                    "exp2_centered": CELL_LSTM1997_EXP2_CENTERED}

LOSS_SQUARED = 0
LOSS_SIGMOID_SQUARED = 1
LOSS_SOFTMAX_XENT = 2
LOSS_LOGISTIC_XENT = 3


def _require_sigmoid(loss, output_activation):
    if output_activation != "sigmoid":
        raise ValueError(f"loss={loss!r} needs output_activation='sigmoid'; got "
                         f"output_activation={output_activation!r}")


def regressor_loss_kind(output_activation, loss):
    """The regressor's ``loss_kind`` for its ``output_activation`` and ``loss``.

    ``loss="log_loss"`` (binary cross-entropy per output, for targets in [0, 1])
    needs logistic outputs; its delta at an output's net input is ``y - t``, the
    1997 paper's eq. 19 without the factor ``f'(net)``.
    """
    if loss == "log_loss":
        _require_sigmoid(loss, output_activation)
        return LOSS_LOGISTIC_XENT
    if output_activation == "sigmoid":
        return LOSS_SIGMOID_SQUARED
    return LOSS_SQUARED


def classifier_loss_kind(output_activation, loss, n_classes):
    """The classifier's ``loss_kind`` for its ``output_activation``, ``loss`` and
    number of classes (``loss="auto"``: squared error on logistic units, the
    paper's, for ``output_activation="sigmoid"``; cross-entropy otherwise)."""
    if loss == "squared_error":
        _require_sigmoid(loss, output_activation)
        return LOSS_SIGMOID_SQUARED
    if output_activation == "sigmoid":
        return LOSS_LOGISTIC_XENT if loss == "log_loss" else LOSS_SIGMOID_SQUARED
    if output_activation == "softmax" or n_classes > 2:
        return LOSS_SOFTMAX_XENT
    return LOSS_LOGISTIC_XENT


def cell_code(cell, squashing="appendix"):
    """The kernels' code of a cell name and its ``squashing`` reading."""
    if cell == "lstm1997" and squashing in _SQUASHING_CODES:
        return _SQUASHING_CODES[squashing]
    return CELL_CODES[cell]


def n_units(cell, hidden_size, block_size=1):
    """Number of pre-activation units of one layer (``4H`` or ``H + 2 H/S``)."""
    if cell == CELL_LSTM:
        return 4 * hidden_size
    return hidden_size + 2 * (hidden_size // block_size)


def recurrent_size(cell, hidden_size, block_size=1):
    """Size ``R`` of the recurrent vector a layer feeds back to itself."""
    if cell == CELL_LSTM:
        return hidden_size
    return n_units(cell, hidden_size, block_size)


def state_size(cell, hidden_size, block_size=1):
    """Size ``R + H`` of one layer's carried state."""
    return recurrent_size(cell, hidden_size, block_size) + hidden_size


def block_names(cell, num_layers, input_to_output=False):
    """Names of the parameter blocks in storage order (torch ``state_dict`` style)."""
    names = []
    for layer in range(num_layers):
        names += [f"weight_ih_l{layer}", f"weight_hh_l{layer}", f"bias_ih_l{layer}"]
        if cell == CELL_LSTM:
            names.append(f"bias_hh_l{layer}")
    names += ["head.weight", "head.bias"]
    return names + ["head.weight_input"] if input_to_output else names


def block_shapes(cell, input_size, hidden_size, num_layers, n_outputs, block_size=1,
                 input_to_output=False):
    """Ordered ``{name: shape}`` of every parameter block."""
    units = n_units(cell, hidden_size, block_size)
    rec = recurrent_size(cell, hidden_size, block_size)
    shapes = {}
    for layer in range(num_layers):
        din = input_size if layer == 0 else hidden_size
        shapes[f"weight_ih_l{layer}"] = (units, din)
        shapes[f"weight_hh_l{layer}"] = (units, rec)
        shapes[f"bias_ih_l{layer}"] = (units,)
        if cell == CELL_LSTM:
            shapes[f"bias_hh_l{layer}"] = (units,)
    shapes["head.weight"] = (n_outputs, hidden_size)
    shapes["head.bias"] = (n_outputs,)
    if input_to_output:
        shapes["head.weight_input"] = (n_outputs, input_size)
    return shapes


def make_layout(cell, input_size, hidden_size, num_layers, n_outputs, block_size=1,
                input_to_output=False):
    """Offset table and total parameter count for a network.

    Returns
    -------
    layout : ndarray of int64, shape (num_layers + 1, 5)
    n_params : int
    """
    shapes = block_shapes(cell, input_size, hidden_size, num_layers, n_outputs,
                          block_size, input_to_output)
    offsets = {}
    pos = 0
    for name, shape in shapes.items():
        offsets[name] = pos
        pos += int(np.prod(shape))
    layout = np.zeros((num_layers + 1, 5), dtype=np.int64)
    for layer in range(num_layers):
        layout[layer, 0] = offsets[f"weight_ih_l{layer}"]
        layout[layer, 1] = offsets[f"weight_hh_l{layer}"]
        layout[layer, 2] = offsets[f"bias_ih_l{layer}"]
        layout[layer, 3] = offsets.get(f"bias_hh_l{layer}", -1)
        layout[layer, 4] = input_size if layer == 0 else hidden_size
    layout[num_layers] = [offsets["head.weight"], offsets["head.bias"], n_outputs,
                          hidden_size, input_size if input_to_output else 0]
    return layout, pos


def unpack(params, cell, input_size, hidden_size, num_layers, n_outputs,
           block_size=1, input_to_output=False):
    """Split a flat vector into ``{name: array}`` views (no copy)."""
    shapes = block_shapes(cell, input_size, hidden_size, num_layers, n_outputs,
                          block_size, input_to_output)
    blocks = {}
    pos = 0
    for name, shape in shapes.items():
        size = int(np.prod(shape))
        blocks[name] = params[pos:pos + size].reshape(shape)
        pos += size
    return blocks


def pack(blocks, cell, input_size, hidden_size, num_layers, n_outputs, block_size=1,
         input_to_output=False, dtype=np.float64):
    """Join ``{name: array}`` into a flat vector; shapes are checked."""
    shapes = block_shapes(cell, input_size, hidden_size, num_layers, n_outputs,
                          block_size, input_to_output)
    missing = sorted(set(shapes) - set(blocks))
    extra = sorted(set(blocks) - set(shapes))
    if missing or extra:
        raise ValueError(f"weights do not match the network: missing {missing}, "
                         f"unexpected {extra}")
    parts = []
    for name, shape in shapes.items():
        arr = np.asarray(blocks[name])
        if arr.shape != shape:
            raise ValueError(f"weight {name!r} has shape {arr.shape}, expected {shape}")
        parts.append(arr.astype(dtype, copy=False).ravel())
    return np.concatenate(parts).astype(dtype, copy=False)
