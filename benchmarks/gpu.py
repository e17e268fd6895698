"""GPU throughput: the numba.cuda kernels against the CPU kernels and torch on CUDA.

Usage::

    pip install ".[gpu,bench]"               # numba-cuda, torch
    python benchmarks/gpu.py [--repeats 3] [--workloads tiny_longlag,medium]
    python benchmarks/gpu.py --many-only      # only "many small models"
    python benchmarks/gpu.py --json out.json  # also write the rows as JSON
    NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu.py --smoke   # check the script

Workloads are those of ``benchmarks/speed.py`` (the speed issue): name, input size D,
hidden size H, length T, batch B. Each trains ``cell="lstm"`` with Adam in float32,
the loss on the last output, no shuffling, a fixed number of mini-batches. Reported,
as time steps per second (sequences x steps / seconds, medians over repeats):

* ``gpu kernels``: :class:`lstmforecast.gpu_lstm.GpuTrainer` with the data already
  on the device (one host sync per epoch), and :func:`gpu_forward` (host arrays in
  and out) for prediction;
* ``gpu fit``: ``LSTMRegressor(device="cuda").fit`` end to end (validation, upload,
  the estimator's Python loop);
* ``cpu kernels``: :func:`lstmforecast._training.train_batches` and
  :func:`lstmforecast._kernels.forward` on ``--threads`` threads;
* ``torch cuda``: ``nn.LSTM`` + ``nn.Linear`` + ``torch.optim.Adam`` on the GPU
  (cuDNN), same batches, synchronised before the clock stops.

"Many small models" trains ``--models`` (default 1,000) independent paper-sized
networks (one per random seed, each with its own shuffling of a shared data set) in
one :class:`GpuTrainer`, against training them one after another with the CPU
kernels and with torch on CUDA (both timed on a few models and extrapolated, as
marked).

First-call (compile) times are reported apart from the steady-state numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
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
}
# "many small models": (D, H, T, B, batches per epoch, epochs)
MANY = (2, 8, 100, 32, 4, 2)
# --smoke: tiny sizes, to check the script under NUMBA_ENABLE_CUDASIM=1
SMOKE = {"smoke": (2, 3, 6, 4, 2, 1)}
SMOKE_MANY = (2, 3, 6, 4, 2, 1)


def _data(D, T, n, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, T, D)).astype(np.float32)
    y = X[:, :5, 0].sum(axis=1).astype(np.float32)
    return X, y


def _problem(D, H, T, B, n_batches, n_models=None, seed=0):
    """Kernel arguments for ``cell="lstm"``, squared loss on the last step."""
    from lstmforecast._layout import CELL_LSTM, make_layout

    X, y = _data(D, T, B * n_batches, seed)
    N = X.shape[0]
    layout, P = make_layout(CELL_LSTM, D, H, 1, 1)
    rng = np.random.default_rng(seed)
    shape = (P,) if n_models is None else (n_models, P)
    params = rng.uniform(-1 / np.sqrt(H), 1 / np.sqrt(H), shape).astype(np.float32)
    Y = np.zeros((N, T, 1), dtype=np.float32)
    Y[:, -1, 0] = y
    mask = np.zeros((N, T), dtype=np.float32)
    mask[:, -1] = 1.0
    return dict(params=params, layout=layout, X=X, lengths=np.full(N, T, np.int64),
                Y=Y, mask=mask, state0=np.zeros((0, 1, 1), np.float32), H=H)


def _train_args(prob, n_models=None):
    from lstmforecast._optimizers import make_hyper

    P = prob["params"].shape[-1]
    lead = () if n_models is None else (n_models,)
    return dict(opt_state=np.zeros(lead + (2, P), np.float32),
                step=np.zeros(lead if lead else (1,), np.int64),
                hyper=make_hyper(1e-3), l2_mask=np.ones(P, np.float32),
                train_mask=np.ones(P, np.float32))


def _median_time(fn, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _first_call(fn):
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


# ----------------------------------------------------------------------------------
# ours: GPU kernels, CPU kernels, GPU estimator
# ----------------------------------------------------------------------------------


def time_gpu_kernels(D, H, T, B, n_batches, epochs, repeats):
    from lstmforecast import gpu_lstm
    from lstmforecast._layout import CELL_LSTM, LOSS_SQUARED
    from lstmforecast._optimizers import OPT_ADAM

    prob = _problem(D, H, T, B, n_batches)
    targs = _train_args(prob)
    trainer = gpu_lstm.GpuTrainer(
        prob["params"].copy(), prob["layout"], prob["X"], prob["lengths"], prob["Y"],
        prob["mask"], prob["state0"], CELL_LSTM, H, 1, LOSS_SQUARED, OPT_ADAM,
        targs["opt_state"], targs["step"], targs["hyper"], targs["l2_mask"],
        targs["train_mask"])
    order = np.arange(prob["X"].shape[0], dtype=np.int64)

    def fit():
        for _ in range(epochs):
            trainer.run(order, B, 0, n_batches)

    def predict():
        gpu_lstm.gpu_forward(prob["params"], prob["layout"], prob["X"],
                             prob["lengths"], prob["state0"], order, CELL_LSTM,
                             H, 1, LOSS_SQUARED, True)

    compile_s = _first_call(fit) + _first_call(predict)
    return _median_time(fit, repeats), _median_time(predict, repeats), compile_s


def time_cpu_kernels(D, H, T, B, n_batches, epochs, repeats):
    from lstmforecast._kernels import forward
    from lstmforecast._threads import cpu_kernels
    from lstmforecast._layout import CELL_LSTM, LOSS_SQUARED
    from lstmforecast._optimizers import OPT_ADAM
    from lstmforecast._training import train_batches

    prob = _problem(D, H, T, B, n_batches)
    targs = _train_args(prob)
    params = prob["params"].copy()
    order = np.arange(prob["X"].shape[0], dtype=np.int64)

    # cpu_kernels: BLAS held to one thread inside the parallel kernels, as the
    # estimators do (a multi-threaded OpenBLAS inside OpenMP oversubscribes)
    def fit():
        with cpu_kernels() as parallel:
            for _ in range(epochs):
                train_batches(params, prob["layout"], prob["X"], prob["lengths"],
                              prob["Y"], prob["mask"], prob["state0"], order, B, 0,
                              n_batches, CELL_LSTM, H, 1, LOSS_SQUARED, OPT_ADAM,
                              targs["opt_state"], targs["step"], targs["hyper"],
                              targs["l2_mask"], targs["train_mask"], parallel)

    def predict():
        with cpu_kernels() as parallel:
            forward(prob["params"], prob["layout"], prob["X"], prob["lengths"],
                    prob["state0"], order, CELL_LSTM, H, 1, LOSS_SQUARED, True,
                    parallel)

    fit()
    predict()
    return _median_time(fit, repeats), _median_time(predict, repeats)


def time_gpu_estimator(D, H, T, B, n_batches, epochs, repeats):
    from sklearn.exceptions import ConvergenceWarning

    from lstmforecast import LSTMRegressor

    X, y = _data(D, T, B * n_batches)
    model = LSTMRegressor(hidden_size=H, batch_size=B, max_epochs=epochs,
                          n_iter_no_change=epochs + 1, shuffle=False,
                          learning_rate=1e-3, dtype="float32", device="cuda",
                          random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        model.fit(X, y)
        return _median_time(lambda: model.fit(X, y), repeats)


# ----------------------------------------------------------------------------------
# torch on CUDA
# ----------------------------------------------------------------------------------


def _torch_cuda():
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def time_torch_cuda(torch, D, H, T, B, n_batches, epochs, repeats, seed=0):
    dev = torch.device("cuda")
    X, y = _data(D, T, B * n_batches)
    Xt = torch.from_numpy(X).to(dev)
    yt = torch.from_numpy(y)[:, None].to(dev)
    torch.manual_seed(seed)
    lstm = torch.nn.LSTM(D, H, batch_first=True).to(dev)
    head = torch.nn.Linear(H, 1).to(dev)
    params = list(lstm.parameters()) + list(head.parameters())

    def fit():
        opt = torch.optim.Adam(params, lr=1e-3)
        for _ in range(epochs):
            for b in range(n_batches):
                xb = Xt[b * B:(b + 1) * B]
                yb = yt[b * B:(b + 1) * B]
                opt.zero_grad()
                out, _ = lstm(xb)
                loss = 0.5 * ((head(out[:, -1]) - yb) ** 2).mean()
                loss.backward()
                opt.step()
        torch.cuda.synchronize()

    def predict():
        with torch.no_grad():
            out, _ = lstm(torch.from_numpy(X).to(dev))
            head(out[:, -1]).cpu()
        torch.cuda.synchronize()

    fit()
    predict()
    return _median_time(fit, repeats), _median_time(predict, repeats)


# ----------------------------------------------------------------------------------
# runs
# ----------------------------------------------------------------------------------


def run_workloads(workloads, repeats, with_estimator=True):
    torch = _torch_cuda()
    print("| workload | D | H | T | B | gpu kernels train | gpu fit | cpu kernels "
          "train | torch cuda train | gpu/cpu | gpu/torch | gpu predict | cpu "
          "predict | torch predict | gpu first call (s) |")
    print("|---" * 15 + "|")
    rows = []
    for name, (D, H, T, B, n_batches, epochs) in workloads.items():
        steps = B * n_batches * T
        g_fit, g_pred, g_first = time_gpu_kernels(D, H, T, B, n_batches, epochs,
                                                  repeats)
        c_fit, c_pred = time_cpu_kernels(D, H, T, B, n_batches, epochs, repeats)
        row = {"workload": name, "D": D, "H": H, "T": T, "B": B,
               "gpu_train_steps_per_s": steps * epochs / g_fit,
               "cpu_train_steps_per_s": steps * epochs / c_fit,
               "gpu_predict_steps_per_s": steps / g_pred,
               "cpu_predict_steps_per_s": steps / c_pred,
               "gpu_first_call_s": g_first}
        if with_estimator:
            e_fit = time_gpu_estimator(D, H, T, B, n_batches, epochs, repeats)
            row["gpu_fit_steps_per_s"] = steps * epochs / e_fit
        if torch is not None:
            t_fit, t_pred = time_torch_cuda(torch, D, H, T, B, n_batches, epochs,
                                            repeats)
            row["torch_train_steps_per_s"] = steps * epochs / t_fit
            row["torch_predict_steps_per_s"] = steps / t_pred
        rows.append(row)
        print(_format_row(row), flush=True)
    return rows


def _m(row, key):
    return f"{row[key] / 1e6:.3f} M" if key in row else "-"


def _ratio(row, a, b):
    return f"{row[a] / row[b]:.2f}x" if a in row and b in row else "-"


def _format_row(row):
    return (f"| {row['workload']} | {row['D']} | {row['H']} | {row['T']} | {row['B']} "
            f"| {_m(row, 'gpu_train_steps_per_s')} | {_m(row, 'gpu_fit_steps_per_s')} "
            f"| {_m(row, 'cpu_train_steps_per_s')} "
            f"| {_m(row, 'torch_train_steps_per_s')} "
            f"| {_ratio(row, 'gpu_train_steps_per_s', 'cpu_train_steps_per_s')} "
            f"| {_ratio(row, 'gpu_train_steps_per_s', 'torch_train_steps_per_s')} "
            f"| {_m(row, 'gpu_predict_steps_per_s')} "
            f"| {_m(row, 'cpu_predict_steps_per_s')} "
            f"| {_m(row, 'torch_predict_steps_per_s')} "
            f"| {row['gpu_first_call_s']:.1f} |")


def run_many(n_models, sample, repeats, sizes=MANY):
    """Train ``n_models`` independent networks at once on the GPU, against one after
    another on the CPU kernels and on torch CUDA (``sample`` models, extrapolated)."""
    from lstmforecast import gpu_lstm
    from lstmforecast._layout import CELL_LSTM, LOSS_SQUARED
    from lstmforecast._optimizers import OPT_ADAM
    from lstmforecast._threads import cpu_kernels
    from lstmforecast._training import train_batches

    D, H, T, B, n_batches, epochs = sizes
    prob = _problem(D, H, T, B, n_batches, n_models=n_models)
    targs = _train_args(prob, n_models)
    N = prob["X"].shape[0]
    rng = np.random.default_rng(1)
    orders = np.stack([rng.permutation(N) for _ in range(n_models)]).astype(np.int64)
    trainer = gpu_lstm.GpuTrainer(
        prob["params"].copy(), prob["layout"], prob["X"], prob["lengths"], prob["Y"],
        prob["mask"], prob["state0"], CELL_LSTM, H, 1, LOSS_SQUARED, OPT_ADAM,
        targs["opt_state"], targs["step"], targs["hyper"], targs["l2_mask"],
        targs["train_mask"])

    def gpu_fit():
        for _ in range(epochs):
            trainer.run(orders, B, 0, n_batches)

    first = _first_call(gpu_fit)
    gpu_s = _median_time(gpu_fit, repeats)

    k = min(sample, n_models)

    def cpu_fit():
        for m in range(k):
            targs_m = _train_args(prob)
            params = prob["params"][m].copy()
            with cpu_kernels() as parallel:
                for _ in range(epochs):
                    train_batches(params, prob["layout"], prob["X"], prob["lengths"],
                                  prob["Y"], prob["mask"], prob["state0"], orders[m],
                                  B, 0, n_batches, CELL_LSTM, H, 1, LOSS_SQUARED,
                                  OPT_ADAM, targs_m["opt_state"], targs_m["step"],
                                  targs_m["hyper"], targs_m["l2_mask"],
                                  targs_m["train_mask"], parallel)

    cpu_fit()
    cpu_s = _median_time(cpu_fit, repeats) * n_models / k
    steps = n_models * epochs * n_batches * B * T
    print(f"\nmany small models: {n_models} x (D={D}, H={H}, T={T}, B={B}, "
          f"{n_batches} batches x {epochs} epochs)")
    print("| backend | seconds for all models | model-steps/s |")
    print("|---|---|---|")
    print(f"| gpu, all models at once | {gpu_s:.3f} | {steps / gpu_s / 1e6:.3f} M |")
    print(f"| cpu kernels, one after another (x{n_models / k:.0f} from {k}) "
          f"| {cpu_s:.3f} | {steps / cpu_s / 1e6:.3f} M |")
    row = {"n_models": n_models, "D": D, "H": H, "T": T, "B": B, "gpu_s": gpu_s,
           "gpu_first_call_s": first, "cpu_s_extrapolated": cpu_s,
           "speedup_vs_cpu": cpu_s / gpu_s}
    torch = _torch_cuda()
    if torch is not None:
        t_one, _ = time_torch_cuda(torch, D, H, T, B, n_batches, epochs, repeats)
        torch_s = t_one * n_models
        print(f"| torch cuda, one after another (x{n_models} from 1) "
              f"| {torch_s:.3f} | {steps / torch_s / 1e6:.3f} M |")
        row.update(torch_s_extrapolated=torch_s, speedup_vs_torch=torch_s / gpu_s)
    print(f"gpu first call (compile + run): {first:.1f} s", flush=True)
    return row


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                        help="CPU threads for the CPU kernels (default: all)")
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--models", type=int, default=1000,
                        help="networks in the 'many small models' run")
    parser.add_argument("--cpu-sample", type=int, default=20,
                        help="CPU: time this many of the many models, extrapolate")
    parser.add_argument("--many-only", action="store_true")
    parser.add_argument("--no-many", action="store_true")
    parser.add_argument("--no-estimator", action="store_true",
                        help="skip the end-to-end LSTMRegressor(device='cuda') fit")
    parser.add_argument("--smoke", action="store_true",
                        help="tiny sizes, 1 repeat: checks the script (simulator)")
    parser.add_argument("--json", help="also write the rows to this JSON file")
    args = parser.parse_args(argv)

    os.environ.setdefault("NUMBA_NUM_THREADS", str(args.threads))
    from lstmforecast import _device

    if not _device.cuda_available():
        print("no CUDA GPU: numba.cuda.is_available() is False. Install the 'gpu' "
              "extra (numba-cuda) on a machine with a CUDA driver, or run "
              "NUMBA_ENABLE_CUDASIM=1 python benchmarks/gpu.py --smoke to check "
              "the script.", file=sys.stderr)
        return 2
    import numba

    numba.set_num_threads(min(args.threads, numba.config.NUMBA_NUM_THREADS))
    if args.smoke:
        workloads, many, n_models, repeats = SMOKE, SMOKE_MANY, 3, 1
    else:
        names = [n.strip() for n in args.workloads.split(",") if n.strip()]
        unknown = set(names) - set(WORKLOADS)
        if unknown:
            parser.error(f"unknown workloads: {sorted(unknown)}")
        workloads = {n: WORKLOADS[n] for n in names}
        many, n_models, repeats = MANY, args.models, args.repeats
    result = {"workloads": [], "many": None}
    if not args.many_only:
        result["workloads"] = run_workloads(workloads, repeats,
                                            not args.no_estimator)
    if not args.no_many:
        result["many"] = run_many(n_models, args.cpu_sample, repeats, many)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
