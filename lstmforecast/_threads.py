"""How the CPU kernels may run in this process: BLAS threads, Numba's threading
layer, and processes forked after a parallel run.

- **BLAS.** The kernels call BLAS (through SciPy's OpenBLAS) from inside Numba's
  parallel regions. A multi-threaded OpenBLAS called from those threads
  oversubscribes the cores (2-3x slower here) and warns that it "may hang", so BLAS
  is held to one thread while kernels run; the parallelism comes from the chunks.
  The limit is reference-counted, so kernels running in several Python threads at
  once restore the caller's BLAS setting only when the last one finishes.
- **Fork.** GNU OpenMP (Numba's ``omp`` layer, the default on Linux without TBB) is
  not fork-safe: a forked child that launches a parallel region aborts. A child
  forked after the parent started that layer runs the kernels' serial path, which
  visits the same chunks in the same order, so its results are bitwise equal.
- **Workqueue.** Numba's ``workqueue`` layer (the fallback when neither TBB nor
  OpenMP is available) aborts when two threads launch parallel regions at once, so
  under it (or before the layer is known) kernel calls take a lock.
"""

from __future__ import annotations

import os
import threading
from contextlib import contextmanager, nullcontext

_CONTROLLER = None
_BLAS_LOCK = threading.Lock()
_blas_users = 0
_blas_limit = None
_LAUNCH_LOCK = threading.RLock()
_forked_after_omp = False


def _threading_layer():
    """Numba's threading layer, or None before this process's first parallel run."""
    import numba

    try:
        return numba.threading_layer()
    except ValueError:
        return None


def _after_fork_in_child():
    global _forked_after_omp, _blas_users, _blas_limit, _BLAS_LOCK, _LAUNCH_LOCK
    # The parent's locks may have been held by threads that do not exist here.
    _BLAS_LOCK = threading.Lock()
    _LAUNCH_LOCK = threading.RLock()
    _blas_users, _blas_limit = 0, None
    if not _forked_after_omp:
        _forked_after_omp = _threading_layer() == "omp"


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def parallel_allowed():
    """False in a child forked after the parent started the ``omp`` layer."""
    return not _forked_after_omp


def _enter_one_blas_thread():
    global _CONTROLLER, _blas_users, _blas_limit
    with _BLAS_LOCK:
        if _blas_users == 0:
            if _CONTROLLER is None:
                import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls)
                from threadpoolctl import ThreadpoolController

                _CONTROLLER = ThreadpoolController()
            _blas_limit = _CONTROLLER.limit(limits=1, user_api="blas")
        _blas_users += 1


def _exit_one_blas_thread():
    global _blas_users, _blas_limit
    with _BLAS_LOCK:
        _blas_users -= 1
        if _blas_users == 0:
            limit, _blas_limit = _blas_limit, None
            limit.restore_original_limits()


@contextmanager
def cpu_kernels():
    """Context for one call of the CPU kernels; yields their ``parallel`` flag.

    Holds BLAS to one thread (restored when the last concurrent call ends),
    serialises parallel launches under the ``workqueue`` layer, and turns the
    parallel path off in a child forked after GNU OpenMP started.
    """
    parallel = parallel_allowed()
    serialise = parallel and _threading_layer() in (None, "workqueue")
    with (_LAUNCH_LOCK if serialise else nullcontext()):
        _enter_one_blas_thread()
        try:
            yield parallel
        finally:
            _exit_one_blas_thread()
