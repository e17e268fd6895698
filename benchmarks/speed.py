"""Training and inference throughput of LSTMRegressor against torch.nn.LSTM.

Usage::

    python benchmarks/speed.py [--repeats 5] [--threads 2] [--workloads NAME,...]
    python benchmarks/speed.py --compile      # cold-compile and warm-start times

Each workload trains with Adam, float32, the loss on the last output, no shuffling
and a fixed number of epochs, after a warm-up fit; PyTorch runs the same batches
through ``nn.LSTM`` + ``nn.Linear`` with ``torch.optim.Adam`` on the same number of
threads. Reported: time steps per second (sequences x steps / seconds), the ratio
torch time / our time (above 1 means faster than torch), medians over repeats, and the
achieved GFLOP/s of the training step (6 flops per weight per step: forward,
backward to inputs, backward to weights).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import warnings

import numpy as np

# name: (input D, hidden H, length T, batch B, batches per epoch, epochs)
WORKLOADS = {
    "tiny_longlag": (2, 8, 500, 32, 4, 2),
    "small_window": (1, 32, 48, 64, 16, 2),
    "medium": (8, 128, 100, 64, 2, 1),
    "large": (32, 256, 100, 128, 1, 1),
    "online": (2, 4, 100, 1, 256, 1),
    # as "online", but X a list of sequences of lengths T..T+T/10 (the paper's tasks)
    "online_ragged": (2, 4, 100, 1, 256, 1),
}
RAGGED = frozenset({"online_ragged"})


def _data(D, T, n, ragged=False, seed=0):
    """``(X, y)``: an array ``(n, T, D)``, or a list of ``(T_i, D)`` arrays."""
    rng = np.random.default_rng(seed)
    if ragged:
        X = [rng.normal(size=(T_i, D)).astype(np.float32)
             for T_i in rng.integers(T, T + T // 10 + 1, size=n)]
    else:
        X = rng.normal(size=(n, T, D)).astype(np.float32)
    y = np.array([x[:5, 0].sum() for x in X], dtype=np.float32)
    return X, y


def _weights_per_step(D, H):
    return 4 * H * (D + H) + 8 * H


def time_ours(X, y, H, B, epochs, repeats):
    from sklearn.exceptions import ConvergenceWarning

    from lstmforecast import LSTMRegressor

    model = LSTMRegressor(hidden_size=H, batch_size=B, max_epochs=epochs,
                          n_iter_no_change=epochs + 1, shuffle=False,
                          learning_rate=1e-3, dtype="float32", random_state=0)
    fit_times, predict_times = [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)  # warm-up (compilation, caches)
        model.predict(X)
        for _ in range(repeats):
            start = time.perf_counter()
            model.fit(X, y)
            fit_times.append(time.perf_counter() - start)
            start = time.perf_counter()
            model.predict(X)
            predict_times.append(time.perf_counter() - start)
    return statistics.median(fit_times), statistics.median(predict_times)


def time_torch(X, y, H, B, n_batches, epochs, repeats):
    import torch

    ragged = isinstance(X, list)
    D = X[0].shape[-1]
    if ragged:  # batches of one sequence each (B = 1): no padding needed
        Xt = [torch.from_numpy(x)[None] for x in X]
        lengths = torch.tensor([len(x) for x in X])
        padded = torch.nn.utils.rnn.pad_sequence([x[0] for x in Xt],
                                                 batch_first=True)
    else:
        Xt = torch.from_numpy(X)
    yt = torch.from_numpy(y)[:, None]
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(D, H, batch_first=True)
    head = torch.nn.Linear(H, 1)
    params = list(lstm.parameters()) + list(head.parameters())

    def fit():
        opt = torch.optim.Adam(params, lr=1e-3)
        for _ in range(epochs):
            for b in range(n_batches):
                xb = Xt[b] if ragged else Xt[b * B:(b + 1) * B]
                yb = yt[b * B:(b + 1) * B]
                opt.zero_grad()
                out, _ = lstm(xb)
                loss = 0.5 * ((head(out[:, -1]) - yb) ** 2).mean()
                loss.backward()
                opt.step()

    def predict():
        with torch.no_grad():
            if ragged:
                packed = torch.nn.utils.rnn.pack_padded_sequence(
                    padded, lengths, batch_first=True, enforce_sorted=False)
                _, (h_last, _) = lstm(packed)
                head(h_last[-1])
            else:
                out, _ = lstm(Xt)
                head(out[:, -1])

    fit()
    predict()
    fit_times, predict_times = [], []
    for _ in range(repeats):
        start = time.perf_counter()
        fit()
        fit_times.append(time.perf_counter() - start)
        start = time.perf_counter()
        predict()
        predict_times.append(time.perf_counter() - start)
    return statistics.median(fit_times), statistics.median(predict_times)


def run_speed(names, repeats, threads):
    try:
        import torch

        torch.set_num_threads(threads)
        have_torch = True
    except ImportError:
        have_torch = False
    rows = []
    for name in names:
        D, H, T, B, n_batches, epochs = WORKLOADS[name]
        X, y = _data(D, T, B * n_batches, name in RAGGED)
        steps = sum(len(x) for x in X)
        ours_fit, ours_pred = time_ours(X, y, H, B, epochs, repeats)
        row = {
            "workload": name, "D": D, "H": H, "T": T, "B": B,
            "train_steps_per_s": steps * epochs / ours_fit,
            "predict_steps_per_s": steps / ours_pred,
            "gflops": 6 * _weights_per_step(D, H) * steps * epochs / ours_fit / 1e9,
        }
        if have_torch:
            torch_fit, torch_pred = time_torch(X, y, H, B, n_batches, epochs,
                                               repeats)
            row["torch_train_steps_per_s"] = steps * epochs / torch_fit
            row["train_ratio"] = torch_fit / ours_fit
            row["predict_ratio"] = torch_pred / ours_pred
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def _format_row(row):
    text = (f"| {row['workload']} | {row['D']} | {row['H']} | {row['T']} | {row['B']} "
            f"| {row['train_steps_per_s'] / 1e6:.3f} M")
    if "train_ratio" in row:
        text += (f" | {row['torch_train_steps_per_s'] / 1e6:.3f} M"
                 f" | {row['train_ratio']:.2f}x | {row['predict_ratio']:.2f}x")
    else:
        text += " | - | - | -"
    return text + f" | {row['gflops']:.2f} |"


_COMPILE_SNIPPET = """
import time, warnings
start = time.perf_counter()
import numpy as np
from lstmforecast import LSTMRegressor
X = np.random.default_rng(0).normal(size=(32, 10)).astype(np.float32)
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    LSTMRegressor(hidden_size=4, max_epochs=1).fit(X, X[:, 0]).predict(X)
print(time.perf_counter() - start)
"""


def run_compile(threads):
    """Seconds for a first fit+predict in a fresh process: empty cache, then warm."""
    env = dict(os.environ, NUMBA_NUM_THREADS=str(threads))
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = repo + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as cache:
        env["NUMBA_CACHE_DIR"] = cache
        times = []
        for _ in range(2):
            out = subprocess.run([sys.executable, "-c", _COMPILE_SNIPPET], env=env,
                                 capture_output=True, text=True, check=True)
            times.append(float(out.stdout.strip().splitlines()[-1]))
    print(f"cold compile (empty cache), first fit+predict: {times[0]:.1f} s")
    print(f"warm start (cache on disk), first fit+predict: {times[1]:.2f} s")
    return times


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--compile", action="store_true",
                        help="measure cold-compile and warm-start time only")
    args = parser.parse_args(argv)
    if args.compile:
        run_compile(args.threads)
        return 0
    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    names = [n.strip() for n in args.workloads.split(",") if n.strip()]
    unknown = set(names) - set(WORKLOADS)
    if unknown:
        parser.error(f"unknown workloads: {sorted(unknown)}")
    print("| workload | D | H | T | B | ours train steps/s | torch train steps/s "
          "| train torch/ours | predict torch/ours | ours GFLOP/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    run_speed(names, args.repeats, args.threads)
    return 0


if __name__ == "__main__":
    sys.exit(main())
