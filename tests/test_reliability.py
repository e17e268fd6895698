"""Reliability tests: the rows of RELIABILITY.md not covered elsewhere.

* forced divergence (learning rate 1e3, weights scaled by 1e5, targets of 1e30) for
  both estimators and both gradients, and gradient clipping as the remedy;
* threads: predictions from several Python threads, two fits in two threads;
* processes: predictions in worker processes started by fork and by spawn, after
  the parent has fitted (so Numba's threading layer is running);
* the Numba cache: a read-only cache directory or install, corrupt cache files,
  several processes compiling into one empty cache;
* memory: repeated fit/predict cycles, ``NUMBA_BOUNDSCHECK=1``;
* side effects: the global random states, files written by ``fit``/``predict``.

Already covered elsewhere and not repeated here: the bad-input matrix, thread-count
determinism of ``fit`` (``NUMBA_NUM_THREADS`` 1 and 2), Ctrl-C, verbosity and the
basic divergence / clipping test (``tests/test_estimators.py``); the kernels'
divergence handling (``tests/test_kernels.py``).

Tests that compile the kernels from scratch in a fresh ``NUMBA_CACHE_DIR`` are the
expensive ones (cold compile on 2 shared cores: about 15-25 s for the forward kernel
alone, 60-100 s for the float32 training kernels of both gradients); the default run
keeps the cheap forward-only variants (about 90 s for the whole file with a warm
cache) and marks the rest ``slow`` (about 13 min:
``python -m pytest -m slow tests/test_reliability.py``). All other subprocesses
inherit the caller's ``NUMBA_CACHE_DIR`` and load the kernels compiled by the
in-process tests at the top of this file.
"""

from __future__ import annotations

import copy
import hashlib
import json
import multiprocessing
import os
import pickle
import random
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import lstmforecast._base as _base
from lstmforecast import LSTMClassifier, LSTMRegressor

REPO_ROOT = Path(__file__).resolve().parents[1]
PACKAGE_DIR = REPO_ROOT / "lstmforecast"

pytestmark = pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning")

CELLS = [("lstm", "bptt"), ("lstm1997", "bptt"), ("lstm1997", "truncated")]


# --------------------------------------------------------------------- helpers
def _digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _env(pythonpath=REPO_ROOT, **extra):
    """The environment of a child interpreter: ours, the package first on the path."""
    env = os.environ.copy()
    old = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join([str(pythonpath)] + ([old] if old else []))
    env.update({k: str(v) for k, v in extra.items()})
    return env


def _python(code_or_file, *args, env=None, timeout=600, cwd=None):
    """Run a child interpreter on ``code_or_file`` (code string or a Path)."""
    argv = ([sys.executable, str(code_or_file)] if isinstance(code_or_file, Path)
            else [sys.executable, "-c", code_or_file])
    return subprocess.run(argv + [str(a) for a in args], env=env or _env(),
                          cwd=cwd or REPO_ROOT, capture_output=True, text=True,
                          timeout=timeout)


def _result(proc):
    """The JSON object a child printed on its ``RESULT`` line."""
    assert proc.returncode == 0, (
        f"child failed (rc={proc.returncode}):\n{proc.stderr[-4000:]}\n"
        f"{proc.stdout[-2000:]}")
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert len(lines) == 1, proc.stdout[-3000:]
    return json.loads(lines[0][len("RESULT "):])


# ============================================================ 1. forced divergence
_DIVERGED = re.compile(r"epoch (\d+), batch (\d+) of (\d+)")


def _div_data(cls=LSTMRegressor):
    rng = np.random.default_rng(40)
    X = rng.normal(size=(64, 6, 1))
    y = X[:, :2, 0].sum(axis=1)
    return X, (y if cls is LSTMRegressor else (y > 0).astype(int))


def _start(cls, cell, gradient, X, y, scale=1.0, **params):
    """An estimator after one quiet epoch, its weights times ``scale``, set up to
    continue (``warm_start``) with ``params``. One batch per epoch and no shuffling,
    so a run can be replayed epoch by epoch."""
    est = cls(hidden_size=4, cell=cell, gradient=gradient, optimizer="sgd",
              learning_rate=1e-3, batch_size=X.shape[0], shuffle=False, max_epochs=1,
              random_state=0).fit(X, y)
    if scale != 1.0:
        weights = est.get_weights(layout="native")
        est.set_weights({k: v * scale for k, v in weights.items()}, layout="native")
    defaults = dict(warm_start=True, max_epochs=30, n_iter_no_change=1000)
    est.set_params(**{**defaults, **params})
    return est


def _outputs(est, X):
    return est.predict_proba(X) if isinstance(est, LSTMClassifier) else est.predict(X)


def _assert_diverges_as_documented(est, X, y):
    """README: a ValueError naming epoch and batch; the weights from before that
    batch kept; a usable model with finite weights. Returns the failing epoch."""
    before = copy.deepcopy(est)
    with pytest.raises(ValueError, match="diverged") as info:
        est.fit(X, y)
    message = str(info.value)
    match = _DIVERGED.search(message)
    assert match, message
    epoch, batch, n_batches = map(int, match.groups())
    assert (batch, n_batches) == (1, 1), message
    assert epoch > before.n_iter_
    assert est.n_iter_ == epoch - 1 == len(est.loss_curve_)
    assert np.all(np.isfinite(est.loss_curve_))
    assert np.all(np.isfinite(est.params_))
    # Replay the epochs that succeeded: the kept weights are exactly theirs.
    done = epoch - 1 - before.n_iter_
    expected = (before.params_ if done == 0 else
                copy.deepcopy(before).set_params(max_epochs=done).fit(X, y).params_)
    assert est.params_.dtype == expected.dtype
    assert np.array_equal(est.params_, expected)
    assert np.all(np.isfinite(_outputs(est, X)))
    return epoch


def _assert_ends_finite(est, X, y, min_epochs):
    """The run completes ``min_epochs`` or more epochs with finite losses."""
    n0 = est.n_iter_
    est.fit(X, y)
    assert est.n_iter_ - n0 >= min_epochs
    assert len(est.loss_curve_) == est.n_iter_
    assert np.all(np.isfinite(est.loss_curve_))
    assert np.all(np.isfinite(est.params_))
    assert np.all(np.isfinite(_outputs(est, X)))


# name: (estimator, weight scale, parameters of the diverging run). Each diverges
# without clipping around epoch 7-12 of 30 (SGD: momentum-free steps of lr * grad)
# and stays below a loss of 1e10 with clip_norm=1, wide margins both ways. The
# classifier's cross-entropy gradient is bounded by construction (see
# test_classifier_cross_entropy_keeps_training_finite), so a learning rate of 1e3
# alone does not make it diverge: an L2 penalty (alpha * lr >> 2) does.
_SCENARIOS = {
    "regressor-lr1e3": (LSTMRegressor, 1.0, dict(learning_rate=1e3)),
    "regressor-weights1e5": (LSTMRegressor, 1e5, dict(learning_rate=100.0)),
    "classifier-lr1e3": (LSTMClassifier, 1.0, dict(learning_rate=1e3, alpha=1.0)),
    "classifier-weights1e5": (LSTMClassifier, 1e5,
                              dict(learning_rate=1e3, alpha=0.1)),
}


@pytest.mark.parametrize("cell, gradient", CELLS)
@pytest.mark.parametrize("scenario", sorted(_SCENARIOS))
def test_forced_divergence_stops_as_documented_and_clipping_rescues(
        scenario, cell, gradient):
    cls, scale, params = _SCENARIOS[scenario]
    X, y = _div_data(cls)
    est = _start(cls, cell, gradient, X, y, scale, **params)
    clipped = copy.deepcopy(est).set_params(clip_norm=1.0)
    epoch = _assert_diverges_as_documented(est, X, y)
    # The same run with clipping: all 30 epochs, finite loss, past the failure point.
    _assert_ends_finite(clipped, X, y, min_epochs=30)
    assert clipped.n_iter_ > epoch
    assert clipped.get_params()["clip_norm"] == 1.0


@pytest.mark.parametrize("cell, gradient", CELLS)
@pytest.mark.parametrize("scale", [1.0, 1e5])
def test_classifier_cross_entropy_keeps_training_finite(scale, cell, gradient):
    # Learning rate 1e3 without a penalty: the cross-entropy gradient is bounded,
    # weights grow at most linearly and the loss stays finite (documented
    # behaviour: a fitted model never holds non-finite weights).
    X, y = _div_data(LSTMClassifier)
    est = _start(LSTMClassifier, cell, gradient, X, y, scale, learning_rate=1e3)
    _assert_ends_finite(est, X, y, min_epochs=30)
    proba = est.predict_proba(X)
    assert np.allclose(proba.sum(axis=1), 1.0)


@pytest.mark.parametrize("cell, gradient", CELLS)
def test_huge_targets_stop_as_documented(cell, gradient):
    # float32 and targets of 1e30: the run stops with the documented error (today
    # on the first batch, where the squared gradient norm overflows; see the next
    # test) and keeps the weights from before the failing batch.
    X, y = _div_data()
    est = _start(LSTMRegressor, cell, gradient, X, y, learning_rate=1e-3)
    _assert_diverges_as_documented(est, X, 1e30 * y)


@pytest.mark.parametrize("cell, gradient", CELLS)
def test_huge_targets_with_clipping_end_with_a_finite_loss(cell, gradient):
    X, y = _div_data()
    est = _start(LSTMRegressor, cell, gradient, X, y, learning_rate=1e-3,
                 clip_norm=1.0)
    _assert_ends_finite(est, X, 1e30 * y, min_epochs=30)


@pytest.mark.parametrize("cell, gradient", CELLS)
def test_divergence_in_a_later_batch_names_it_and_keeps_the_weights_before_it(
        monkeypatch, cell, gradient):
    # Several batches per epoch: one batch per jitted call, the weights recorded
    # after every call; the error names the batch that failed and the estimator
    # holds the weights from right before it.
    monkeypatch.setattr(_base, "_SECONDS_PER_CALL", 0.0)
    calls = []
    for name in ("train_batches", "train_truncated"):
        original = getattr(_base, name)

        def recorder(params, *args, _original=original):
            losses, sizes, failed = _original(params, *args)
            calls.append((failed, len(losses), params.copy()))
            return losses, sizes, failed

        monkeypatch.setattr(_base, name, recorder)
    X, y = _div_data()
    est = LSTMRegressor(hidden_size=4, cell=cell, gradient=gradient, optimizer="sgd",
                        learning_rate=1e3, batch_size=16, max_epochs=30,
                        random_state=0)
    with pytest.raises(ValueError, match="diverged") as info:
        est.fit(X, y)
    epoch, batch, n_batches = map(int, _DIVERGED.search(str(info.value)).groups())
    assert n_batches == 4
    assert all(n == 1 for _, n, _ in calls)
    assert [f for f, _, _ in calls] == [-1] * (len(calls) - 1) + [0]
    assert len(calls) - 1 == (epoch - 1) * n_batches + (batch - 1)
    assert (epoch, batch) != (1, 1), "diverged at once; want a later batch"
    assert np.array_equal(est.params_, calls[-2][2])
    assert np.all(np.isfinite(est.params_))


# ============================================================ 2. Python threads
_THREADS_CHILD = r"""
import hashlib, json, sys, threading, warnings
from concurrent.futures import ThreadPoolExecutor
warnings.simplefilter("ignore")
import numba
import numpy as np
from lstmforecast import LSTMClassifier, LSTMRegressor, _kernels

def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

rng = np.random.default_rng(11)
X = rng.normal(size=(64, 20, 1))
y = X[:, :3, 0].sum(axis=1)
data = [(X, y), (X, (y > 0).astype(int))]
# Big enough for the kernels' parallel paths (2+ chunks, work over the threshold).
make = [lambda: LSTMRegressor(hidden_size=8, max_epochs=3, batch_size=32,
                              random_state=1),
        lambda: LSTMClassifier(hidden_size=8, cell="lstm1997", max_epochs=3,
                               batch_size=32, random_state=2)]
serial = [m().fit(*d) for m, d in zip(make, data)]
out = {"parallel": bool(_kernels._n_chunks(64) > 1
                        and 32 * 20 * serial[0].params_.size
                        >= _kernels._PARALLEL_MIN_WORK),
       "fit_serial": [digest(e.params_) for e in serial]}

def predict(est):
    return est.predict_proba(X) if hasattr(est, "classes_") else est.predict(X)

out["predict_serial"] = [digest(predict(e)) for e in serial]

# Two different estimators fitted at the same time in two threads.
barrier = threading.Barrier(2, timeout=60)
def fit(i):
    est = make[i]()
    barrier.wait()
    return digest(est.fit(*data[i]).params_)
with ThreadPoolExecutor(2) as ex:
    futures = [ex.submit(fit, i) for i in range(2)]
    out["fit_threads"] = [f.result(timeout=300) for f in futures]

# 4 threads x 20 predictions, alternating the two fitted estimators.
barrier4 = threading.Barrier(4, timeout=60)
def predict_many(k):
    barrier4.wait()
    return [(i % 2, digest(predict(serial[i % 2]))) for i in range(k, k + 20)]
with ThreadPoolExecutor(4) as ex:
    futures = [ex.submit(predict_many, k) for k in range(4)]
    out["predict_threads"] = [r for f in futures for r in f.result(timeout=300)]
out["layer"] = numba.threading_layer()
print("RESULT " + json.dumps(out))
"""


@pytest.mark.parametrize("layer", ["default", "workqueue"])
def test_predict_and_fit_from_several_threads(layer):
    env = _env() if layer == "default" else _env(NUMBA_THREADING_LAYER=layer)
    proc = _python(_THREADS_CHILD, env=env, timeout=600)
    res = _result(proc)
    if os.cpu_count() and os.cpu_count() > 1:
        assert res["parallel"], "the threads should exercise the parallel kernels"
    if layer != "default":
        assert res["layer"] == layer
    assert res["fit_threads"] == res["fit_serial"]
    assert res["fit_serial"][0] != res["fit_serial"][1]
    assert len(res["predict_threads"]) == 80
    for which, digest in res["predict_threads"]:
        assert digest == res["predict_serial"][which]


# ============================================================ 3. worker processes
_PROCESS_CHILD = r'''
import json, pickle, sys, warnings
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
import numpy as np


def predict(blob, X):
    import numba
    est = pickle.loads(blob)
    pred = est.predict(X)
    try:
        layer = numba.threading_layer()
    except ValueError:
        layer = None
    return pred, layer


def refit(blob, X, y):
    est = pickle.loads(blob)
    return est.fit(X, y).params_


def main():
    warnings.simplefilter("ignore")
    import numba
    from lstmforecast import LSTMRegressor
    method = sys.argv[1]
    rng = np.random.default_rng(12)
    X = rng.normal(size=(64, 20, 1))
    y = X[:, :3, 0].sum(axis=1)
    est = LSTMRegressor(hidden_size=8, max_epochs=2, batch_size=32,
                        random_state=0).fit(X, y)
    # (each subset against the parent's prediction of that subset: how a sum
    # rounds in the last bits can depend on the lane a sequence takes in a chunk)
    expected = [est.predict(X[k:]) for k in range(4)]
    out = {"parent_layer": numba.threading_layer()}
    blob = pickle.dumps(est)
    with ProcessPoolExecutor(2, mp_context=mp.get_context(method)) as ex:
        futures = [ex.submit(predict, blob, X[k:]) for k in range(4)]
        results = [f.result(timeout=240) for f in futures]
        refits = [f.result(timeout=240)
                  for f in [ex.submit(refit, blob, X, y) for _ in range(2)]]
    out["equal"] = [bool(np.array_equal(pred, expected[k]))
                    for k, (pred, _) in enumerate(results)]
    out["refit_equal"] = [bool(np.array_equal(p, est.params_)) for p in refits]
    out["worker_layers"] = [layer for _, layer in results]
    print("RESULT " + json.dumps(out))


if __name__ == "__main__":
    main()
'''


@pytest.mark.parametrize("method", ["fork", "spawn"])
def test_predict_in_worker_processes(method, tmp_path):
    if method not in multiprocessing.get_all_start_methods():
        pytest.skip(f"no {method} start method here")
    script = tmp_path / "child.py"
    script.write_text(_PROCESS_CHILD)
    proc = _python(script, method, timeout=400, cwd=tmp_path)
    res = _result(proc)
    assert res["equal"] == [True] * 4
    assert res["refit_equal"] == [True] * 2      # fit (from the same start) too
    assert len(res["worker_layers"]) == 4


def _parallel_sized_fit():
    """Data and a regressor large enough for the kernels' parallel paths."""
    rng = np.random.default_rng(13)
    X = rng.normal(size=(64, 20, 1))
    y = X[:, :3, 0].sum(axis=1)
    return X, y, LSTMRegressor(hidden_size=8, max_epochs=2, batch_size=32,
                               random_state=0)


def test_serial_path_is_bitwise_equal_to_parallel(monkeypatch):
    """The path a forked child takes (``parallel=False``) visits the same chunks in
    the same order: fit and predict give identical bits."""
    from lstmforecast import _kernels, _threads

    X, y, est = _parallel_sized_fit()
    if _kernels._n_chunks(64) < 2:
        pytest.skip("one CPU: the kernels have no parallel path to compare with")
    parallel = est.fit(X, y)
    expected_params, expected_pred = parallel.params_.copy(), parallel.predict(X)
    calls = []
    original = _kernels.forward

    def forward(*args):
        calls.append(args[-1])
        return original(*args)

    monkeypatch.setattr(_threads, "_forked_after_omp", True)
    monkeypatch.setattr(_kernels, "forward", forward)
    serial = _parallel_sized_fit()[2].fit(X, y)
    assert np.array_equal(serial.params_, expected_params)
    assert np.array_equal(serial.predict(X), expected_pred)
    assert calls and not any(calls), "the serial path was not taken"


def test_blas_thread_limit_restored_after_concurrent_calls():
    """Kernels held BLAS to one thread from several Python threads at once; the
    caller's BLAS setting is back once they are done."""
    from concurrent.futures import ThreadPoolExecutor

    from threadpoolctl import ThreadpoolController

    from lstmforecast import _threads

    X, y, est = _parallel_sized_fit()
    est.fit(X, y)
    controller = ThreadpoolController()
    before = [(m["prefix"], m["num_threads"]) for m in controller.info()
              if m["user_api"] == "blas"]
    with ThreadPoolExecutor(4) as ex:
        preds = list(ex.map(lambda _: est.predict(X), range(16)))
    after = [(m["prefix"], m["num_threads"]) for m in controller.info()
             if m["user_api"] == "blas"]
    assert after == before
    assert _threads._blas_users == 0
    assert all(np.array_equal(p, preds[0]) for p in preds)


# ============================================================ 4. the Numba cache
# A child that predicts with a pickled model (compiles the forward kernel only: the
# cheap variant) or fits and predicts two small models (the training kernels of
# both gradients). With RELTEST_UNSHARE_USER=1 it first moves into a new user
# namespace, where even root cannot write to a directory without write permission;
# it then checks that the RELTEST_READONLY directories are indeed read-only.
_CACHE_CHILD = r"""
import os, sys
if os.environ.get("RELTEST_UNSHARE_USER") == "1":
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.unshare(0x10000000) != 0:          # CLONE_NEWUSER
        print("UNSHARE_FAILED", ctypes.get_errno())
        sys.exit(77)
for probe in filter(None, os.environ.get("RELTEST_READONLY", "").split(os.pathsep)):
    try:
        with open(os.path.join(probe, ".write-probe"), "w"):
            pass
    except OSError:
        continue
    os.remove(os.path.join(probe, ".write-probe"))
    print("STILL_WRITABLE", probe)
    sys.exit(78)
import importlib.util, json, pickle, warnings
expected = os.environ.get("RELTEST_EXPECT_PACKAGE")
origin = importlib.util.find_spec("lstmforecast").origin
if expected and os.path.dirname(os.path.abspath(origin)) != expected:
    print("WRONG_PACKAGE", origin)          # never fall back into another tree
    sys.exit(79)
warnings.simplefilter("ignore")
import numpy as np
import lstmforecast
mode, data = sys.argv[1], sys.argv[2]
with np.load(data) as arrays:
    X, y = arrays["X"], arrays["y"]
out = {"package": os.path.dirname(os.path.abspath(lstmforecast.__file__))}
if mode == "predict":
    with open(sys.argv[3], "rb") as f:
        est = pickle.load(f)
    out["predict"] = est.predict(X).tobytes().hex()
else:
    from lstmforecast import LSTMRegressor
    for cell, gradient in (("lstm", "bptt"), ("lstm1997", "truncated")):
        est = LSTMRegressor(hidden_size=4, cell=cell, gradient=gradient, max_epochs=2,
                            batch_size=16, random_state=0).fit(X, y)
        out[gradient + "-params"] = est.params_.tobytes().hex()
        out[gradient + "-predict"] = est.predict(X).tobytes().hex()
print("RESULT " + json.dumps(out))
"""


def _cache_data():
    rng = np.random.default_rng(13)
    X = rng.normal(size=(32, 8, 1))
    return X, X[:, :2, 0].sum(axis=1)


@pytest.fixture(scope="module")
def cache_case(tmp_path_factory):
    """Data, a pickled fitted model and what the children must print."""
    path = tmp_path_factory.mktemp("cache_case")
    X, y = _cache_data()
    np.savez(path / "data.npz", X=X, y=y)
    model = LSTMRegressor(hidden_size=4, max_epochs=2, batch_size=16,
                          random_state=0).fit(X, y)
    (path / "model.pkl").write_bytes(pickle.dumps(model))
    expected = {"predict": {"predict": model.predict(X).tobytes().hex()}, "fit": {}}
    for cell, gradient in (("lstm", "bptt"), ("lstm1997", "truncated")):
        est = LSTMRegressor(hidden_size=4, cell=cell, gradient=gradient, max_epochs=2,
                            batch_size=16, random_state=0).fit(X, y)
        expected["fit"][gradient + "-params"] = est.params_.tobytes().hex()
        expected["fit"][gradient + "-predict"] = est.predict(X).tobytes().hex()
    return {"data": path / "data.npz", "model": path / "model.pkl",
            "expected": expected}


def _cache_run(case, mode, cache_dir, pythonpath=REPO_ROOT, **extra):
    # cwd = the directory holding the package: with ``python -c`` the working
    # directory comes first on sys.path and would shadow PYTHONPATH.
    env = _env(pythonpath, NUMBA_CACHE_DIR=cache_dir,
               RELTEST_EXPECT_PACKAGE=Path(pythonpath).resolve() / "lstmforecast",
               **extra)
    args = [mode, case["data"]] + ([case["model"]] if mode == "predict" else [])
    return _python(_CACHE_CHILD, *args, env=env, timeout=900, cwd=pythonpath)


def _assert_same_as_parent(case, mode, res, package_dir=PACKAGE_DIR):
    assert Path(res.pop("package")) == Path(package_dir)
    assert res == case["expected"][mode]


def _cache_files(cache_dir):
    return sorted(p for p in Path(cache_dir).rglob("*")
                  if p.suffix in (".nbi", ".nbc"))


def _copy_package(dst):
    """A copy of the package (sources only) in ``dst``; returns its directory."""
    target = Path(dst) / "lstmforecast"
    shutil.copytree(PACKAGE_DIR, target, ignore=shutil.ignore_patterns(
        "__pycache__", "*.pyc", "*.nbi", "*.nbc"))
    return target


def _set_writable(root, writable):
    """chmod -R u+w / a-w (directories keep r-x)."""
    paths = [Path(root)] + list(Path(root).rglob("*"))
    for p in paths:
        mode = p.stat().st_mode
        if writable:
            p.chmod(mode | stat.S_IWUSR)
        else:
            p.chmod(mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _privilege_drop():
    """Environment that makes chmod a-w effective for the child: nothing for a
    normal user; a new user namespace for root (root ignores permissions). None when
    that is impossible (root without user namespaces, or not POSIX)."""
    if not hasattr(os, "geteuid"):
        return None
    if os.geteuid() != 0:
        return {}
    probe = _python("import ctypes, sys; "
                    "sys.exit(ctypes.CDLL(None).unshare(0x10000000) != 0)",
                    timeout=60)
    return {"RELTEST_UNSHARE_USER": "1"} if probe.returncode == 0 else None


def _run_read_only(case, mode, tmp_path, scenario):
    """Run the child with an unusable cache location; returns (proc, package_dir)."""
    drop = _privilege_drop()
    if scenario == "readonly-cache-dir" and drop is None:
        # Root without user namespaces: chmod cannot stop root, so use the fallback
        # the task allows: NUMBA_CACHE_DIR is an existing regular file.
        scenario = "cache-dir-is-a-file"
    if scenario in ("readonly-install", "readonly-prewarmed-cache") and drop is None:
        pytest.skip("cannot make a directory read-only for this (root) user")
    # Always a copy of the package, so that Numba's fallback (the package's own
    # __pycache__) never writes into the repository.
    package = _copy_package(tmp_path / "site")
    extra = dict(drop or {})
    readonly = []
    home = tmp_path / "home"
    home.mkdir()
    if scenario == "cache-dir-is-a-file":
        cache = tmp_path / "cache-file"
        cache.write_text("not a directory\n")
    elif scenario == "readonly-prewarmed-cache":
        cache = tmp_path / "cache"
        _result(_cache_run(case, mode, cache, package.parent))   # warm it
        assert _cache_files(cache)
        readonly += [cache, package.parent, package, home]
    else:
        cache = tmp_path / "cache"
        cache.mkdir()
        readonly.append(cache)
        if scenario == "readonly-install":
            # Nothing writable: cache dir, install directory, HOME (Numba's
            # user-wide fallback ~/.cache/numba) all read-only.
            readonly += [package.parent, package, home]
    for path in readonly:
        _set_writable(path, False)
    try:
        proc = _cache_run(case, mode, cache, package.parent, **extra, HOME=home,
                          XDG_CACHE_HOME=home / ".cache",
                          RELTEST_READONLY=os.pathsep.join(map(str, readonly)))
    finally:
        for path in readonly:
            _set_writable(path, True)
    if proc.returncode == 78:
        pytest.skip(f"could not make a directory read-only: {proc.stdout.strip()}")
    assert proc.returncode != 79, proc.stdout       # wrong package imported
    if proc.returncode == 77:
        pytest.skip("no user namespace to drop root's permission override")
    return proc, package


# A read-only install and cache once broke `import lstmforecast` (njit(cache=True)
# raised "no locator available"); config.py now probes the cache and falls back to
# in-memory compilation.


@pytest.mark.parametrize("mode", [
    "predict", pytest.param("fit", marks=pytest.mark.slow)])
@pytest.mark.parametrize("scenario", [
    "readonly-cache-dir",
    pytest.param("cache-dir-is-a-file", marks=pytest.mark.slow),
    "readonly-install",
    pytest.param("readonly-prewarmed-cache", marks=pytest.mark.slow),
])
def test_unwritable_cache_still_fits_and_predicts(cache_case, tmp_path, scenario,
                                                  mode):
    proc, package = _run_read_only(cache_case, mode, tmp_path, scenario)
    res = _result(proc)
    _assert_same_as_parent(cache_case, mode, res, package)


# Corrupt cache files once broke every later run; the package's dispatchers now
# use a cache that recompiles on a failed load (config.harden_caches).


@pytest.mark.parametrize("mode", [
    "predict", pytest.param("fit", marks=pytest.mark.slow)])
def test_corrupt_cache_files_are_recompiled(cache_case, tmp_path, mode):
    cache = tmp_path / "cache"
    first = _result(_cache_run(cache_case, mode, cache))
    _assert_same_as_parent(cache_case, mode, dict(first))
    files = _cache_files(cache)
    assert any(p.suffix == ".nbi" for p in files) and any(
        p.suffix == ".nbc" for p in files)
    garbage = np.random.default_rng(14)
    for path in files:
        size = max(path.stat().st_size, 64)
        path.write_bytes(b"\x80\x05garbage" + garbage.bytes(size))
    second = _result(_cache_run(cache_case, mode, cache))
    assert second == first


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["predict", "fit"])
def test_processes_compiling_into_one_empty_cache(cache_case, tmp_path, mode):
    cache = tmp_path / "cache"
    args = [mode, cache_case["data"]] + (
        [cache_case["model"]] if mode == "predict" else [])
    env = _env(NUMBA_CACHE_DIR=cache)
    env["RELTEST_EXPECT_PACKAGE"] = str(PACKAGE_DIR)
    children = [subprocess.Popen([sys.executable, "-c", _CACHE_CHILD]
                                 + [str(a) for a in args], env=env, cwd=REPO_ROOT,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                 text=True) for _ in range(3)]
    results = []
    try:
        for child in children:
            out, err = child.communicate(timeout=1200)
            results.append(subprocess.CompletedProcess(child.args, child.returncode,
                                                       out, err))
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
    for proc in results:
        _assert_same_as_parent(cache_case, mode, _result(proc))
    # The cache they wrote together is whole: a fourth run compiles nothing.
    fourth = _cache_run(cache_case, mode, cache, NUMBA_DEBUG_CACHE=1)
    _assert_same_as_parent(cache_case, mode, _result(fourth))
    assert "data loaded from" in fourth.stdout
    assert "data saved to" not in fourth.stdout


# Numba numbers a function's data files in the order signatures reach its index, so
# two processes compiling the float32 and the float64 kernels at the same time both
# wrote "name.1.nbc", and the index could map one signature to the other's machine
# code: every later run that loaded it segfaulted. config.harden_caches names data
# files by key and source stamp, and a load checks both.


def _keyed_cache_file(tmp_path, stamp=("mtime", "fingerprint")):
    from lstmforecast import config
    return config._keyed_cache_file_class()(
        cache_path=str(tmp_path), filename_base="kernel-12.py311", source_stamp=stamp)


def test_package_kernels_use_keyed_cache_files():
    from lstmforecast import _kernels, _optimizers, _training, _truncated, config
    keyed = config._keyed_cache_file_class()
    dispatchers = [obj for module in (_kernels, _optimizers, _training, _truncated)
                   for obj in vars(module).values()
                   if getattr(obj, "_cache", None) is not None
                   and hasattr(obj._cache, "_cache_file")]
    if not config.LSTMF_CACHE:
        pytest.skip("Numba's cache is off in this environment (LSTMF_CACHE=0)")
    assert len(dispatchers) > 20
    assert all(type(d._cache._cache_file) is keyed for d in dispatchers)


def test_cache_entry_pointing_at_another_signatures_code_is_not_loaded(tmp_path):
    cache_file = _keyed_cache_file(tmp_path)
    key32, key64 = ("float32", "cpu", "code"), ("float64", "cpu", "code")
    cache_file.save(key32, "machine code for float32")
    cache_file.save(key64, "machine code for float64")
    assert cache_file.load(key32) == "machine code for float32"
    assert cache_file.load(key64) == "machine code for float64"
    overloads = cache_file._load_index()
    assert overloads[key32] != overloads[key64]
    # What two interleaved writers of Numba's numbered files could leave behind:
    overloads[key64] = overloads[key32]
    cache_file._save_index(overloads)
    assert cache_file.load(key64) is None           # recompiled, not the f32 code
    assert cache_file.load(key32) == "machine code for float32"


def test_writers_racing_on_one_cache_file_never_mix_signatures(tmp_path):
    from concurrent.futures import ThreadPoolExecutor
    keys = [(f"signature {i}", "cpu", "code") for i in range(24)]

    def save(key):
        _keyed_cache_file(tmp_path).save(key, f"code of {key[0]}")

    with ThreadPoolExecutor(8) as pool:
        list(pool.map(save, keys * 3))
    reader = _keyed_cache_file(tmp_path)
    assert [reader.load(key) for key in keys] == [f"code of {k[0]}" for k in keys]


def test_cache_files_of_edited_sources_are_removed_and_never_loaded(tmp_path):
    key = ("float32", "cpu", "code")
    old = _keyed_cache_file(tmp_path, stamp=("mtime 1", "fingerprint 1"))
    old.save(key, "old code")
    old_files = set(tmp_path.glob("*.nbc"))
    assert len(old_files) == 1
    new = _keyed_cache_file(tmp_path, stamp=("mtime 2", "fingerprint 2"))
    assert new.load(key) is None
    new.save(key, "new code")
    assert new.load(key) == "new code"
    assert old.load(key) is None
    assert not old_files & set(tmp_path.glob("*.nbc"))


_PARALLEL_CALLEE_CHILD = r"""
import hashlib, json, sys
import numpy as np
from lstmforecast import _kernels
from lstmforecast._layout import CELL_LSTM, LOSS_SQUARED, make_layout
rng = np.random.default_rng(5)
layout, P = make_layout(CELL_LSTM, 2, 3, 1, 1, 1)
args = (rng.normal(size=P), layout, rng.normal(size=(4, 5, 2)),
        np.full(4, 5, np.int64), rng.normal(size=(4, 5, 1)), np.ones((4, 5)),
        np.zeros((0, 1, 6)), np.arange(4), CELL_LSTM, 3, 1, LOSS_SQUARED, True)
if sys.argv[1] == "callee":
    loss, grad = _kernels.loss_grad_into(*args, np.empty((0, 0)))
else:
    loss, grad = _kernels.loss_grad(*args)
print("RESULT " + json.dumps(hashlib.sha256(grad.tobytes()).hexdigest()))
"""


def test_caller_compiled_against_a_cached_parallel_callee_loads_safely(tmp_path):
    """Numba drops a cached parallel function's "start the thread pool" hook when it
    loads it, so a caller compiled against it (``loss_grad`` over the cached
    ``loss_grad_into``) was cached without the hook; a fresh process loading that
    caller first aborted ("Symbol not found: allocate_sched") or segfaulted."""
    env = _env(NUMBA_CACHE_DIR=tmp_path / "cache")
    callee = _result(_python(_PARALLEL_CALLEE_CHILD, "callee", env=env))
    compiled = _result(_python(_PARALLEL_CALLEE_CHILD, "caller", env=env))
    loaded = _result(_python(_PARALLEL_CALLEE_CHILD, "caller", env=env))
    assert callee == compiled == loaded


_STALE_CHILD = r"""
import json, os, sys
import numpy as np
from lstmforecast import _optimizers, _training
assert os.path.dirname(_training.__file__) == os.environ["RELTEST_EXPECT_PACKAGE"]
P = 3
params, grad = np.ones(P), np.array([1.0, 2.0, 3.0])
_training.apply_update(params, grad, 0.0, _optimizers.OPT_SGD, np.zeros((2, P)),
                       np.zeros(1, np.int64), _optimizers.make_hyper(0.5),
                       np.zeros(P), np.ones(P), np.empty(P), np.empty((2, P)))
print("RESULT " + json.dumps(params.tolist()))
"""


def test_edit_to_a_helper_module_invalidates_its_callers_caches(tmp_path):
    """Numba keys a cache on the function's own file only: ``apply_update``
    (``_training.py``) has ``sgd_step`` (``_optimizers.py``) compiled into it. After
    an edit to ``_optimizers.py`` alone, the cached ``apply_update`` must not run
    the old step."""
    package = _copy_package(tmp_path / "src")
    env = _env(tmp_path / "src", NUMBA_CACHE_DIR=tmp_path / "cache",
               RELTEST_EXPECT_PACKAGE=package)
    before = _result(_python(_STALE_CHILD, env=env, cwd=tmp_path / "src"))
    assert before == [0.5, 0.0, -0.5]          # 1 - 0.5 * grad
    helper = package / "_optimizers.py"
    source = helper.read_text()
    old = "params[p] -= lr * grad[p]"
    assert source.count(old) == 1
    stat_before = helper.stat()
    helper.write_text(source.replace(old, "params[p] -= lr * grad[p] * 2"))
    after = _result(_python(_STALE_CHILD, env=env, cwd=tmp_path / "src"))
    assert after == [0.0, -1.0, -2.0]          # 1 - 2 * 0.5 * grad
    assert stat_before.st_mtime_ns <= helper.stat().st_mtime_ns


# ============================================================ 5. memory, bounds
_MEMORY_CHILD = r"""
import gc, json, os, resource, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
from numba.core.runtime import rtsys
from lstmforecast import LSTMClassifier, LSTMRegressor

def rss():
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024

rng = np.random.default_rng(15)
X = rng.normal(size=(128, 30, 2))
y = X[:, :3, 0].sum(axis=1)
labels = (y > 0).astype(int)
out = {}
for cycle in range(1, 31):
    reg = LSTMRegressor(hidden_size=16, max_epochs=3, batch_size=32,
                        random_state=cycle).fit(X, y)
    reg.predict(X)
    clf = LSTMClassifier(hidden_size=4, cell="lstm1997", gradient="truncated",
                         max_epochs=1, batch_size=32, random_state=cycle)
    clf.fit(X[:32], labels[:32]).predict_proba(X)
    del reg, clf
    gc.collect()
    if cycle in (5, 30):
        stats = rtsys.get_allocation_stats()
        out[str(cycle)] = {"rss": rss(), "live": stats.alloc - stats.free,
                           "live_meminfos": stats.mi_alloc - stats.mi_free}
print("RESULT " + json.dumps(out))
"""


def test_repeated_fit_predict_cycles_do_not_grow_memory():
    res = _result(_python(_MEMORY_CHILD, env=_env(NUMBA_NRT_STATS=1), timeout=600))
    early, late = res["5"], res["30"]
    growth = late["rss"] - early["rss"]
    assert growth < 20 * 2**20, f"RSS grew by {growth / 2**20:.1f} MB in 25 cycles"
    # Every array a kernel allocated (Numba's runtime) has been freed again.
    assert late["live"] <= early["live"]
    assert late["live_meminfos"] <= early["live_meminfos"]


_BOUNDSCHECK_CHILD = r"""
import hashlib, json, os, warnings
warnings.simplefilter("ignore")
import numba
import numpy as np

checked = None
if os.environ.get("NUMBA_BOUNDSCHECK") == "1":
    @numba.njit
    def _out_of_bounds(a):
        return a[a.shape[0] + 3]

    try:
        _out_of_bounds(np.zeros(2))
        checked = False
    except IndexError:
        checked = True

from lstmforecast import LSTMClassifier, LSTMRegressor

def digest(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()

rng = np.random.default_rng(16)
X = rng.normal(size=(64, 20, 1))
y = X[:, :3, 0].sum(axis=1)
labels = np.digitize(y, [-1.0, 1.0])
ragged = [rng.normal(size=(t, 2)) for t in rng.integers(3, 12, size=40)]
out = {"boundscheck": checked}
models = {
    "lstm-2layers-ragged-sequence": (
        LSTMRegressor(hidden_size=4, num_layers=2, output="sequence", max_epochs=2,
                      batch_size=16, random_state=0),
        ragged, [x[:, 0].cumsum() for x in ragged]),
    "lstm-parallel": (LSTMRegressor(hidden_size=8, max_epochs=2, batch_size=32,
                                    random_state=0), X, y),
    "lstm1997-blocks": (LSTMRegressor(hidden_size=4, cell="lstm1997", block_size=2,
                                      max_epochs=2, batch_size=32, random_state=0),
                        X, y),
    "lstm-softmax": (LSTMClassifier(hidden_size=4, max_epochs=2, batch_size=32,
                                    random_state=0), X, labels),
    "lstm1997-truncated-step": (
        LSTMClassifier(hidden_size=4, cell="lstm1997", gradient="truncated",
                       update="step", batch_size=1, max_epochs=1, random_state=0),
        X[:16], labels[:16]),
    "lstm1997-truncated": (
        LSTMRegressor(hidden_size=4, cell="lstm1997", gradient="truncated",
                      max_epochs=2, batch_size=16, random_state=0), X, y),
}
for name, (est, data, target) in models.items():
    est.fit(data, target)
    pred = est.predict_proba(data) if hasattr(est, "classes_") else est.predict(data)
    if isinstance(pred, list):
        pred = np.concatenate(pred)
    out[name] = [digest(est.params_), digest(pred)]
print("RESULT " + json.dumps(out))
"""


@pytest.mark.slow
def test_fit_and_predict_pass_with_numba_boundscheck(tmp_path):
    # A fresh cache: kernels cached without bounds checking would be reused.
    proc = _python(_BOUNDSCHECK_CHILD, timeout=1200,
                   env=_env(NUMBA_BOUNDSCHECK=1, NUMBA_CACHE_DIR=tmp_path / "cache"))
    checked = _result(proc)
    assert checked.pop("boundscheck") is True
    # Same weights and predictions as the same fits without bounds checking
    # (kernels from the caller's cache).
    env = _env()
    env.pop("NUMBA_BOUNDSCHECK", None)
    plain = _result(_python(_BOUNDSCHECK_CHILD, env=env, timeout=1200))
    plain.pop("boundscheck")
    assert checked == plain


# ============================================================ 6. side effects
@pytest.mark.parametrize("random_state", [0, None])
def test_global_random_states_are_untouched(random_state):
    X, y = _div_data()
    labels = (y > 0).astype(int)
    np.random.seed(1234)
    random.seed(1234)
    np_before, py_before = np.random.get_state(), random.getstate()
    models = [
        LSTMRegressor(hidden_size=4, max_epochs=3, batch_size=16, early_stopping=True,
                      random_state=random_state),
        LSTMClassifier(hidden_size=4, cell="lstm1997", gradient="truncated",
                       max_epochs=2, batch_size=16, random_state=random_state),
    ]
    for est, target in zip(models, (y, labels)):
        est.fit(X, target)
        est.predict(X)
        est.score(X, target)
    models[1].predict_proba(X)
    partial = LSTMRegressor(hidden_size=4, batch_size=16, random_state=random_state)
    partial.partial_fit(X, y).partial_fit(X, y)
    warm = LSTMRegressor(hidden_size=4, max_epochs=2, warm_start=True,
                         random_state=random_state)
    warm.fit(X, y).fit(X, y)
    np_after, py_after = np.random.get_state(), random.getstate()
    assert np_before[0] == np_after[0]
    assert np.array_equal(np_before[1], np_after[1])
    assert np_before[2:] == np_after[2:]
    assert py_before == py_after


_FILES_CHILD = r"""
import json, os, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import lstmforecast
from lstmforecast import LSTMClassifier, LSTMRegressor

cache_dirs = [os.path.abspath(p) for p in (os.environ.get("NUMBA_CACHE_DIR"),) if p]
written = []

def in_numba_cache(path):
    path = os.path.abspath(path)
    return (any(path.startswith(d + os.sep) or path == d for d in cache_dirs)
            or "__pycache__" in path.split(os.sep))

WRITE = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

def hook(event, args):
    if event == "open":
        path, mode, flags = args
        if isinstance(path, int) or path is None:
            return
        writing = (mode is not None and any(c in str(mode) for c in "wax+")) or (
            flags is not None and flags & WRITE)
        if writing and not in_numba_cache(os.fsdecode(path)):
            written.append((event, os.fsdecode(path)))
    elif event in ("os.mkdir", "os.rename", "os.replace", "os.remove", "os.rmdir",
                   "os.symlink", "os.link", "os.truncate", "shutil.copyfile",
                   "shutil.rmtree"):
        path = args[0]
        if isinstance(path, (str, bytes, os.PathLike)) and not in_numba_cache(
                os.fsdecode(path)):
            written.append((event, os.fsdecode(path)))

rng = np.random.default_rng(17)
X = rng.normal(size=(48, 6, 1))
y = X[:, :2, 0].sum(axis=1)
sys.addaudithook(hook)
reg = LSTMRegressor(hidden_size=4, max_epochs=3, batch_size=16, early_stopping=True,
                    verbose=0, random_state=0).fit(X, y)
reg.predict(X)
reg.score(X, y)
clf = LSTMClassifier(hidden_size=4, cell="lstm1997", gradient="truncated",
                     max_epochs=2, batch_size=16, verbose=0, random_state=0)
clf.fit(X, (y > 0).astype(int)).predict_proba(X)
clf.predict(X)
print("RESULT " + json.dumps({"written": written}))
"""


def _listing(root):
    return sorted((str(p.relative_to(root)), p.stat().st_size, p.stat().st_mtime_ns)
                  for p in Path(root).rglob("*"))


def test_fit_and_predict_write_no_files(tmp_path):
    # The child runs in an empty working directory with its own empty TMPDIR and
    # HOME; an audit hook records every file opened for writing (or created,
    # renamed, removed) by fit/predict outside Numba's cache.
    dirs = {name: tmp_path / name for name in ("cwd", "tmp", "home")}
    for d in dirs.values():
        d.mkdir()
    before = {name: _listing(d) for name, d in dirs.items()}
    proc = _python(_FILES_CHILD, cwd=dirs["cwd"], timeout=600,
                   env=_env(TMPDIR=dirs["tmp"], TEMP=dirs["tmp"], TMP=dirs["tmp"],
                            HOME=dirs["home"]))
    res = _result(proc)
    assert proc.stderr == "", proc.stderr[-2000:]
    assert res["written"] == []
    assert {name: _listing(d) for name, d in dirs.items()} == before
