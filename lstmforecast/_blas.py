"""Keep BLAS single-threaded while the kernels run.

The kernels call BLAS (through SciPy's OpenBLAS) from inside Numba's parallel
regions. A multi-threaded OpenBLAS called from OpenMP threads oversubscribes the
cores (2-3x slower here) and warns that it "may hang", so each kernel call runs
with BLAS limited to one thread; the parallelism comes from the chunks instead.
"""

from __future__ import annotations

_CONTROLLER = None


def one_blas_thread():
    """Context manager limiting BLAS libraries to one thread (restored on exit)."""
    global _CONTROLLER
    if _CONTROLLER is None:
        import scipy.linalg.cython_blas  # noqa: F401  (the BLAS Numba calls)
        from threadpoolctl import ThreadpoolController

        _CONTROLLER = ThreadpoolController()
    return _CONTROLLER.limit(limits=1, user_api="blas")
