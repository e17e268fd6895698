"""Time per step and peak memory against sequence length T.

For the paper's truncated rule (``gradient="truncated"``), full BPTT and inference,
on the Exp. 4 network (``cell="lstm1997"``, 2 blocks of 2 cells, 93 weights), one
sequence of length T = 100 ... 100,000. Each measurement runs in a fresh process and
reports the growth of its peak resident memory over the same process's footprint just
before the measured call (interpreter, libraries, compiled kernels and the input
arrays excluded), so the figure is what the algorithm itself allocates.

``--wide`` measures instead the estimator's ``predict`` on wide inputs (64 one-hot
sequences of 1000 steps and 1004 features, float64, like Exp. 2c at q = p = 1000):
its time (median of 5) and its peak memory beyond the process's footprint with the
inputs and the fitted model, against the size of the inputs.

Usage::

    python benchmarks/memory.py [--lengths 100,1000,10000,100000]
    python benchmarks/memory.py --wide
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

_SNIPPET = r"""
import json, resource, sys, time
import numpy as np
from lstmforecast import _layout
from lstmforecast._kernels import forward, loss_grad
from lstmforecast._optimizers import OPT_SGD, make_hyper
from lstmforecast._truncated import train_truncated

mode, T = sys.argv[1], int(sys.argv[2])
D, H, S, K = 2, 4, 2, 1
cell = _layout.CELL_LSTM1997
layout, P = _layout.make_layout(cell, D, H, 1, K, S)
rng = np.random.default_rng(0)

def problem(T):
    X = rng.uniform(-1, 1, (1, T, D))
    Y = np.full((1, T, K), 0.5)
    M = np.zeros((1, T))
    M[0, -1] = 1.0
    return X, np.array([T], dtype=np.int64), Y, M

def run(X, lengths, Y, M):
    params = rng.uniform(-0.1, 0.1, P)
    start = time.perf_counter()
    if mode == "truncated":
        train_truncated(params, layout, X, lengths, Y, M, np.zeros(1, np.int64), 1,
                        0, 1, cell, H, S, 1, True, OPT_SGD, np.zeros((2, P)),
                        np.zeros(1, np.int64), make_hyper(0.5, 0.0), np.ones(P),
                        np.ones(P))
    elif mode == "bptt":
        loss_grad(params, layout, X, lengths, Y, M, np.zeros((0, 1, 1)),
                  np.zeros(1, np.int64), cell, H, S, 1, True)
    else:
        forward(params, layout, X, lengths, np.zeros((0, 1, 1)),
                np.zeros(1, np.int64), cell, H, S, 1, True, True)
    return time.perf_counter() - start

run(*problem(10))  # compile or load the kernels
data = problem(T)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
seconds = run(*data)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"mode": mode, "T": T, "us_per_step": 1e6 * seconds / T,
                  "extra_peak_kib": peak - base}))
"""


_WIDE_SNIPPET = r"""
import json, resource, statistics, time, warnings
import numpy as np
from lstmforecast import LSTMRegressor

n, T, D = 64, 1000, 1004
rng = np.random.default_rng(0)
X = np.zeros((n, T, D))
X[np.arange(n)[:, None], np.arange(T), rng.integers(0, D, (n, T))] = 1.0
model = LSTMRegressor(hidden_size=2, max_epochs=1, dtype="float64", random_state=0)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    model.fit(X[:4], rng.normal(size=4))
model.predict(X[:2])
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
times = []
for _ in range(5):
    start = time.perf_counter()
    model.predict(X)
    times.append(time.perf_counter() - start)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({"input_mib": X.nbytes / 2**20,
                  "extra_peak_mib": (peak - base) / 1024,
                  "predict_s": statistics.median(times)}))
"""


def _run_snippet(snippet, *args):
    """Run ``snippet`` in a fresh process; the JSON object it prints last."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    out = subprocess.run([sys.executable, "-c", snippet, *args], env=env,
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", default="100,1000,10000,100000")
    parser.add_argument("--wide", action="store_true",
                        help="predict on wide one-hot inputs instead")
    args = parser.parse_args(argv)
    if args.wide:
        row = _run_snippet(_WIDE_SNIPPET)
        print(f"predict, 64 one-hot sequences of 1000 x 1004: inputs "
              f"{row['input_mib']:.0f} MiB, extra peak memory "
              f"{row['extra_peak_mib']:.0f} MiB, {row['predict_s'] * 1e3:.0f} ms")
        return 0
    lengths = [int(v) for v in args.lengths.split(",")]
    print("| mode | T | time per step (us) | extra peak memory (KiB) |")
    print("|---|---|---|---|")
    for mode in ("truncated", "bptt", "inference"):
        for T in lengths:
            row = _run_snippet(_SNIPPET, mode, str(T))
            print(f"| {mode} | {T} | {row['us_per_step']:.3f} | "
                  f"{row['extra_peak_kib']} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
