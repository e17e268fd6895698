"""Command-line interface: ``lstmforecast demo``."""

from __future__ import annotations

import argparse
import sys
import time

import numpy as np


def _demo(args):
    from .estimators import LSTMRegressor

    rng = np.random.default_rng(args.seed)
    t = np.arange(args.length)
    series = (np.sin(2 * np.pi * t / 25) + 0.5 * np.sin(2 * np.pi * t / 7)
              + 0.1 * rng.normal(size=t.size))
    window = 24
    X = np.lib.stride_tricks.sliding_window_view(series[:-1], window)
    y = series[window:]
    split = int(0.8 * len(y))
    model = LSTMRegressor(hidden_size=16, max_epochs=args.epochs, learning_rate=0.01,
                          early_stopping=True, random_state=args.seed)
    start = time.perf_counter()
    model.fit(X[:split], y[:split])
    seconds = time.perf_counter() - start
    score = model.score(X[split:], y[split:])
    naive = 1 - np.mean((y[split:] - X[split:, -1]) ** 2) / np.var(y[split:])
    print("lstmforecast demo: one-step forecast of a noisy two-tone sine")
    print(f"  training windows {split}, test windows {len(y) - split}, "
          f"window {window}, epochs run {model.n_iter_}")
    print(f"  fit time {seconds:.1f} s (the first run includes Numba compilation)")
    print(f"  test R^2: LSTM {score:.3f}   last-value baseline {naive:.3f}")
    return 0


def build_parser():
    """The argument parser of the ``lstmforecast`` command."""
    parser = argparse.ArgumentParser(
        prog="lstmforecast",
        description="LSTM forecasting toolkit (Numba kernels, scikit-learn API).")
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="fit an LSTM on a synthetic series and print "
                          "its test score")
    demo.add_argument("--length", type=int, default=1200,
                      help="length of the synthetic series (default 1200)")
    demo.add_argument("--epochs", type=int, default=60,
                      help="maximum training epochs (default 60)")
    demo.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    demo.set_defaults(func=_demo)
    return parser


def main(argv=None):
    """Entry point; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "length", 100) < 100:
        parser.error("--length must be at least 100")
    if getattr(args, "epochs", 1) < 1:
        parser.error("--epochs must be at least 1")
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
