"""Exp. 4 with the cells' bias channels held at their start values.

Trains ``paper.py``'s network of one Exp. 4 ``--full`` row (default: row 21,
squared error) on fresh sequences, judged as the trial judges them (each chunk
predicted with the weights from before it trains; ST3 on the window of the
latest 2000), but one sequence at a time, and after each sequence it puts back
the start values of the weights that ``--hold`` names:

* ``bias``: the cells' biases;
* ``recurrent``: the cells' weights from the recurrent units (cell outputs and
  gate activations);
* ``both``: both;
* ``none``: nothing (chunks train as in the trial; same sequences, same result).

Through these weights every step of a sequence adds about the same amount to
a cell's state: a change to them moves the cell's end state in proportion to T,
where through the weight from the value input (the values' signs are random)
the steps add up to about the square root of T. ``--release`` trains all
weights again once the search has ended (the first full window with fewer than
half its sequences wrong), ``--stop-at-search-end`` ends the trial there.
Every ``--every`` sequences it prints a JSON line: the wrong in the window, each
cell's weight from the value input and the output weights; the last line gives
the search end, the sequences to ST3 (or the budget) and the wrong of 2560 test
sequences.
``benchmarks/PAPER.md`` ("What slows the search") reports what it measured.

Usage::

    python benchmarks/exp4_hold.py --T 400 --seed 0 --hold both --stop-at-search-end
    python benchmarks/exp4_hold.py --row 34 --seed 0 --hold both --release
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from exp4_probe import load_paper  # noqa: E402

HOLDS = ("none", "bias", "recurrent", "both")


def hold_weights(weights, start, hold, n_cells):
    """Put the start values of the held weights back into ``weights`` (in
    place): the cells' biases and / or their recurrent weights."""
    if hold in ("bias", "both"):
        weights["bias_ih_l0"][:n_cells] = start["bias_ih_l0"][:n_cells]
    if hold in ("recurrent", "both"):
        weights["weight_hh_l0"][:n_cells] = start["weight_hh_l0"][:n_cells]
    return weights


def held_trial(row=21, seed=0, hold="both", T=None, lr=None, until=None,
               release=False, every=None, emit=print, stop_at_search_end=False):
    """One trial of ``--full`` row ``row`` with ``hold``'s weights held after
    every sequence (``release``: until the search ends; ``stop_at_search_end``:
    the trial ends there). Returns a dict with
    ``search_end`` (None if the window never held fewer than half wrong),
    ``sequences``, ``success`` (ST3 met), ``wrong`` (of 2560 test sequences),
    ``held_drift`` (the largest change of a cell's bias or recurrent weight from
    its start value: 0 where both are held to the end) and ``seconds``."""
    if hold not in HOLDS:
        raise ValueError(f"hold must be one of {HOLDS}, got {hold!r}")
    paper = load_paper()
    spec = paper._specs(True)[row]
    if spec.task != "adding" or spec.check != "chunk" or spec.stop != "st3":
        raise ValueError(f"row {row} is not an Exp. 4 row judged by chunk")
    if T is not None:
        spec = replace(spec, kwargs={**spec.kwargs, "T": T})
    if lr is not None:
        spec = replace(spec, lr=lr)
    if until is not None:
        spec = replace(spec, budget=until)
    window = paper._window_size(spec)
    state = {"start": None, "model": None, "search_end": None,
             "ok": np.zeros(0, dtype=bool), "next_report": every}

    def train_chunk(model, X, Y):
        if state["start"] is None:  # the weights the first partial_fit built
            state["start"] = model.get_weights(layout="native")
        if hold == "none" or (release and state["search_end"] is not None):
            model.partial_fit(X, Y)
            return
        n_cells = state["start"]["head.weight"].shape[1]
        for i in range(len(X)):
            model.partial_fit(X[i:i + 1], Y[i:i + 1])
            model.set_weights(hold_weights(model.get_weights(layout="native"),
                                           state["start"], hold, n_cells),
                              layout="native")

    def on_chunk(seen, model, Y, pred, ok, E, stopped):
        state["model"] = model
        state["ok"] = np.concatenate([state["ok"], ok])[-window:]
        n_wrong = int((~state["ok"]).sum())
        if (state["search_end"] is None and len(state["ok"]) == window
                and 2 * n_wrong < window):
            state["search_end"] = seen
        end = stop_at_search_end and state["search_end"] is not None
        if every and (seen >= state["next_report"] or stopped or end
                      or seen >= spec.budget):
            state["next_report"] += every
            weights = model.get_weights(layout="native")
            n_cells = weights["head.weight"].shape[1]
            emit(json.dumps({
                "seen": seen, "wrong": n_wrong,
                "cell_w_value": np.round(
                    weights["weight_ih_l0"][:n_cells, 0], 3).tolist(),
                "out_w": np.round(weights["head.weight"][0], 3).tolist()}))
        return end

    start_time = time.perf_counter()
    out = paper._trial_online(spec, "paper", seed, float("inf"), on_chunk=on_chunk,
                              train_chunk=train_chunk)
    start, end = state["start"], state["model"].get_weights(layout="native")
    n_cells = start["head.weight"].shape[1]
    held_drift = max(float(np.max(np.abs(end[key][:n_cells] - start[key][:n_cells])))
                     for key in ("bias_ih_l0", "weight_hh_l0"))
    return {"row": row, "T": spec.kwargs["T"], "lr": spec.lr, "seed": seed,
            "hold": hold, "release": release, "search_end": state["search_end"],
            "sequences": out["sequences"], "success": out["success"],
            "wrong": out["wrong"], "held_drift": held_drift,
            "seconds": round(time.perf_counter() - start_time, 1)}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--row", type=int, default=21,
                        help="a --full row of Exp. 4 (paper.py --full --list)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hold", choices=HOLDS, default="both")
    parser.add_argument("--T", type=int, default=None,
                        help="the minimal sequence length (default: the row's)")
    parser.add_argument("--lr", type=float, default=None,
                        help="the learning rate (default: the row's)")
    parser.add_argument("--until", type=int, default=None,
                        help="stop after this many sequences "
                             "(default: the row's budget)")
    parser.add_argument("--release", action="store_true",
                        help="train every weight once the search has ended")
    parser.add_argument("--stop-at-search-end", action="store_true",
                        help="end the trial where the search ends")
    parser.add_argument("--every", type=int, default=None,
                        help="sequences between reports (default: none)")
    args = parser.parse_args(argv)
    if args.lr is not None and not (np.isfinite(args.lr) and args.lr > 0):
        parser.error("--lr must be a positive number")
    if args.every is not None and args.every < 1:
        parser.error("--every must be at least 1")
    out = held_trial(args.row, args.seed, args.hold, args.T, args.lr, args.until,
                     args.release, args.every, emit=lambda s: print(s, flush=True),
                     stop_at_search_end=args.stop_at_search_end)
    print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
