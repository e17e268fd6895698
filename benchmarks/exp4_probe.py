"""Follow one trial of Exp. 4 (adding) or Exp. 5 (multiplication) as it trains.

Runs ``paper.py``'s trial of one ``--full`` row and seed through the trial's
per-chunk hook, so it stops where that trial stops (row 21, seed 0: 623,508
sequences). Every ``--every`` sequences it prints one JSON line:
the 2000 training sequences that ST3 reads, split by target band (wrong / in the
band, mean signed error), and with ``--weights`` the weights that decide whether
the markers are learned and the cells' end states on 200 fixed sequences, from a
plain NumPy forward of the 1997 cell (``predict`` is checked against it).
Its last line says where the search ended: the first full window with fewer
than half its sequences wrong, and the block whose input gate then had the
largest weight from the marker. ``--T`` and ``--lr`` change the row's lag and
rate, ``--stop-below`` ends the run once the window holds fewer wrong than that.
``--step-spread N`` also reports, for the cells' weights from the value input,
the mean and the standard deviation of the update that one sequence makes
(``partial_fit`` on each of N fixed sequences alone, from the current weights, on
a copy of the network): the drift of those weights against its noise.
``benchmarks/PAPER.md`` ("Where the sequences go differs with T") reports what
it measured.

Usage::

    python benchmarks/exp4_probe.py --row 21 --seed 0 --every 10000
    python benchmarks/exp4_probe.py --row 22 --seed 0 --every 100000 --weights
    python benchmarks/exp4_probe.py --row 22 --seed 0 --every 50000 \\
        --net '{"input_gate_bias": [-3, -4.5]}' --until 900000
    python benchmarks/exp4_probe.py --row 21 --T 400 --seed 0 --every 1000000 \\
        --stop-below 300
    python benchmarks/exp4_probe.py --row 21 --T 400 --seed 0 --every 50000 \\
        --weights --step-spread 1000 --stop-below 300
"""

from __future__ import annotations

import argparse
import copy
import importlib.util
import json
import sys
import warnings
from dataclasses import replace
from pathlib import Path

import numpy as np

# target bands: the ends (below 0.1, above 0.9) are where squared error lags
BAND_EDGES = (0.0, 0.1, 0.2, 0.3, 0.7, 0.8, 0.9, 1.0)
N_PROBE = 200


def load_paper():
    """``benchmarks/paper.py`` as the module ``paper_benchmark``."""
    if "paper_benchmark" in sys.modules:
        return sys.modules["paper_benchmark"]
    path = Path(__file__).with_name("paper.py")
    spec = importlib.util.spec_from_file_location("paper_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    sys.modules["paper_benchmark"] = module
    spec.loader.exec_module(module)
    return module


def _sigmoid(z):
    return 1.0 / (1.0 + np.exp(-z))


def forward_1997(weights, X, block_size, marker_column=1):
    """Plain NumPy forward of a one-layer ``cell="lstm1997"`` network with the
    Appendix's squashing (g in [-2, 2], h in [-1, 1]) and a logistic output that
    sees the cells only.

    Parameters
    ----------
    weights : dict
        ``get_weights(layout="native")`` of the fitted estimator.
    X : sequence of ndarray of shape (T_i, n_inputs)
    block_size : int
    marker_column : int
        The input that marks the steps whose gate opening is reported.

    Returns
    -------
    ends : ndarray of shape (n, H)
        Each cell's state after the last step.
    out : ndarray of shape (n,)
        The output at the last step.
    gate_marked, gate_other : ndarray of shape (n, n_blocks)
        Each block's mean input-gate activation at marked (input 1.0) and at the
        other steps.
    """
    W_in, W_rec, b = (weights["weight_ih_l0"], weights["weight_hh_l0"],
                      weights["bias_ih_l0"])
    w_out, b_out = weights["head.weight"][0], weights["head.bias"][0]
    H = w_out.shape[0]
    n_blocks = H // block_size
    if W_in.shape[0] != H + 2 * n_blocks:
        raise ValueError(f"weights do not fit {H} cells in blocks of {block_size}")
    ends, out = np.empty((len(X), H)), np.empty(len(X))
    gate_marked = np.full((len(X), n_blocks), np.nan)
    gate_other = np.full((len(X), n_blocks), np.nan)
    for i, x in enumerate(X):
        x = np.asarray(x, dtype=np.float64)
        r, s = np.zeros(W_rec.shape[1]), np.zeros(H)
        y_in_all = np.empty((len(x), n_blocks))
        for t in range(len(x)):
            z = W_in @ x[t] + W_rec @ r + b
            g = 2.0 * np.tanh(z[:H] / 2.0)
            y_in = _sigmoid(z[H:H + n_blocks])
            y_out = _sigmoid(z[H + n_blocks:])
            s = s + np.repeat(y_in, block_size) * g
            y_c = np.repeat(y_out, block_size) * np.tanh(s / 2.0)
            r = np.concatenate([y_c, y_in, y_out])
            y_in_all[t] = y_in
        marked = x[:, marker_column] == 1.0
        ends[i], out[i] = s, _sigmoid(w_out @ y_c + b_out)
        if marked.any():
            gate_marked[i] = y_in_all[marked].mean(axis=0)
        if (~marked).any():
            gate_other[i] = y_in_all[~marked].mean(axis=0)
    return ends, out, gate_marked, gate_other


def band_summary(y, pred, ok):
    """``{band: "wrong/in band, mean signed error"}`` over the target bands."""
    band = np.clip(np.digitize(y, BAND_EDGES[1:-1]), 0, len(BAND_EDGES) - 2)
    out = {}
    for k in range(len(BAND_EDGES) - 1):
        m = band == k
        bias = float(np.mean(pred[m] - y[m])) if m.any() else 0.0
        out[f"{BAND_EDGES[k]:.1f}-{BAND_EDGES[k + 1]:.1f}"] = (
            f"{int((~ok[m]).sum())}/{int(m.sum())} {bias:+.3f}")
    return out


def weight_summary(model, probe_X, probe_target):
    """What the markers' learning shows in: input-gate biases and weights from
    the marker, the cells' weights from the value input, the output weights, and
    the cells' end states on the probe sequences (spread, correlation with the
    target)."""
    weights = model.get_weights(layout="native")
    block_size = model.block_size
    ends, out, gate_marked, gate_other = forward_1997(weights, probe_X, block_size)
    mismatch = float(np.max(np.abs(
        out - np.asarray(model.predict(probe_X), dtype=np.float64).reshape(-1))))
    if mismatch > 1e-8:
        raise RuntimeError(f"the NumPy forward differs from predict by {mismatch}")
    W_in, b = weights["weight_ih_l0"], weights["bias_ih_l0"]
    H = ends.shape[1]
    n_blocks = H // block_size
    gates = slice(H, H + n_blocks)
    corr = [float(np.corrcoef(ends[:, k], probe_target)[0, 1]) for k in range(H)]
    return {
        "gate_bias": np.round(b[gates], 2).tolist(),
        "gate_w_marker": np.round(W_in[gates, 1], 2).tolist(),
        "gate_marked": np.round(np.nanmean(gate_marked, axis=0), 3).tolist(),
        "gate_other": np.round(np.nanmean(gate_other, axis=0), 3).tolist(),
        "cell_w_value": np.round(W_in[:H, 0], 2).tolist(),
        "out_w": np.round(weights["head.weight"][0], 2).tolist(),
        "end_state_std": np.round(ends.std(axis=0), 2).tolist(),
        "end_state_corr": np.round(corr, 2).tolist(),
    }


def step_spread(model, X, Y):
    """The update one sequence makes to each cell's weight from the value input
    (input 0): its mean and standard deviation over the sequences ``X``, each
    trained on alone from ``model``'s current weights. Runs on a copy: ``model``
    is left as it is."""
    trial = copy.deepcopy(model)
    start = model.get_weights(layout="native")
    H = start["head.weight"].shape[1]
    start_value = start["weight_ih_l0"][:H, 0]
    steps = np.empty((len(X), H))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(len(X)):
            trial.set_weights(start, layout="native")
            trial.partial_fit(X[i:i + 1], Y[i:i + 1])
            steps[i] = (trial.get_weights(layout="native")["weight_ih_l0"][:H, 0]
                        - start_value)
    return {"cell_step_mean": [float(f"{v:.3g}") for v in steps.mean(axis=0)],
            "cell_step_sd": [float(f"{v:.3g}") for v in steps.std(axis=0, ddof=1)]}


def replay(row, seed, every, until=None, net=None, weights=False, emit=print,
           T=None, lr=None, stop_below=None, spread=None):
    """Follow ``paper.py``'s trial of ``--full`` row ``row`` with ``seed`` (it runs
    the trial itself, through its per-chunk hook); returns the sequences seen when
    it stopped (or when ``until`` was reached, or the window first held fewer than
    ``stop_below`` wrong). ``T`` and ``lr`` replace the row's lag and rate;
    ``spread`` (a number of sequences) adds :func:`step_spread` to each report."""
    paper = load_paper()
    spec = paper._specs(True)[row]
    if spec.task not in ("adding", "multiplication") or spec.check != "chunk":
        raise ValueError(f"row {row} is not an Exp. 4 / 5 row judged by chunk")
    if spec.net.get("squashing", "appendix") != "appendix":
        raise ValueError(f"row {row}: only the Appendix's squashing is probed")
    if net:
        spec = replace(spec, net={**spec.net, **net})
    if T is not None:
        spec = replace(spec, kwargs={**spec.kwargs, "T": T})
    if lr is not None:
        spec = replace(spec, lr=lr)
    if (weights and paper._estimator(spec, "paper", seed).output_activation
            != "sigmoid"):
        raise ValueError(f"row {row}: --weights reads a logistic output only")
    until = spec.budget if until is None else until
    probe_X, probe_Y, _ = paper._make(spec, np.random.default_rng(12345), N_PROBE)
    probe_target = np.asarray(probe_Y, dtype=np.float64).reshape(-1)
    if spread:
        spread_X, spread_Y, _ = paper._make(spec, np.random.default_rng(54321),
                                            spread)
    window = paper._window_size(spec)
    recent = {"ok": np.zeros(0, bool), "e": np.zeros(0), "y": np.zeros(0),
              "pred": np.zeros(0)}
    next_report = [every]
    search = {"search_end": None, "block": None}

    def on_chunk(seen, model, Y, pred, ok, E, stopped):
        y = np.asarray(Y, dtype=np.float64).reshape(-1)
        pred = np.asarray(pred, dtype=np.float64).reshape(len(Y), -1)[:, 0]
        for key, new in (("ok", ok), ("e", E), ("y", y), ("pred", pred)):
            recent[key] = np.concatenate([recent[key], new])[-window:]
        full = len(recent["ok"]) == window
        n_wrong = int((~recent["ok"]).sum())
        if full and search["search_end"] is None and 2 * n_wrong < window:
            search["search_end"] = seen
            search["block"] = learned_block(model)
        end = seen >= until or (stop_below is not None and full
                                and n_wrong < stop_below)
        if seen >= next_report[0] or stopped or end:
            next_report[0] += every
            line = {"seen": seen, "wrong": n_wrong,
                    "mean_E": round(float(recent["e"].mean()), 6)}
            line.update(band_summary(recent["y"], recent["pred"], recent["ok"]))
            if weights:
                line.update(weight_summary(model, probe_X, probe_target))
            if spread:
                line.update(step_spread(model, spread_X, spread_Y))
            emit(json.dumps(line))
        if stopped:
            emit(f"stopped after {seen} sequences")
        return end

    out = paper._trial_online(spec, "paper", seed, float("inf"), on_chunk=on_chunk)
    emit(json.dumps({"T": spec.kwargs["T"], "lr": spec.lr, "seed": seed,
                     **search, "seen": out["sequences"]}))
    return out["sequences"]


def learned_block(model):
    """The block (from 1) whose input gate has the largest weight from the
    marker input, in absolute value."""
    weights = model.get_weights(layout="native")
    H = weights["head.weight"].shape[1]
    n_blocks = H // model.block_size
    marker = weights["weight_ih_l0"][H:H + n_blocks, 1]
    return int(np.argmax(np.abs(marker))) + 1


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--row", type=int, required=True,
                        help="a --full row of Exp. 4 or 5 (paper.py --full --list)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--every", type=int, default=50_000,
                        help="sequences between reports")
    parser.add_argument("--until", type=int, default=None,
                        help="stop after this many sequences (default: the row's budget)")
    parser.add_argument("--net", type=json.loads, default=None,
                        help='network settings to override, as JSON: '
                             '\'{"input_gate_bias": [-3, -4.5]}\'')
    parser.add_argument("--weights", action="store_true",
                        help="also report weights and the cells' end states")
    parser.add_argument("--T", type=int, default=None,
                        help="the minimal sequence length (default: the row's)")
    parser.add_argument("--lr", type=float, default=None,
                        help="the learning rate (default: the row's)")
    parser.add_argument("--stop-below", type=int, default=None,
                        help="stop once the window holds fewer wrong than this")
    parser.add_argument("--step-spread", type=int, default=None, metavar="N",
                        help="also report the mean and spread of one sequence's "
                             "update to the cells' value weights, over N sequences")
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error("--every must be at least 1")
    if args.lr is not None and not (np.isfinite(args.lr) and args.lr > 0):
        parser.error("--lr must be a positive number")
    if args.step_spread is not None and args.step_spread < 2:
        parser.error("--step-spread must be at least 2")
    replay(args.row, args.seed, args.every, args.until, args.net, args.weights,
           emit=lambda s: print(s, flush=True), T=args.T, lr=args.lr,
           stop_below=args.stop_below, spread=args.step_spread)


if __name__ == "__main__":
    main()
