"""Device selection: ``device="cpu" | "cuda" | "auto"``.

The GPU path lives in :mod:`lstmforecast.gpu_lstm` and needs ``numba.cuda`` (the
``gpu`` extra, ``numba-cuda``, and a CUDA driver). Nothing here imports numba.cuda
until a device other than ``"cpu"`` is asked for, so ``import lstmforecast`` never
needs CUDA.

* ``"cpu"``: the Numba CPU kernels.
* ``"cuda"``: the GPU kernels; fitting without a usable GPU raises a ``ValueError``
  naming the CPU alternative. A model fitted on a GPU keeps its weights as a NumPy
  array, so it predicts, pickles and saves on any machine: prediction with
  ``device="cuda"`` where no GPU is available runs on the CPU.
* ``"auto"``: the GPU when ``numba.cuda.is_available()``, else the CPU.

Under Numba's CUDA simulator (``NUMBA_ENABLE_CUDASIM=1``) ``numba.cuda`` reports a
device and the GPU kernels run, slowly, in Python: that is how the GPU path is tested
without a GPU.
"""

from __future__ import annotations

DEVICES = ("cpu", "cuda", "auto")


def cuda_available():
    """True when numba.cuda can be imported and sees a GPU (or the simulator)."""
    try:
        from numba import cuda
    except Exception:  # numba without its CUDA target, or a broken install
        return False
    try:
        return bool(cuda.is_available())
    except Exception:
        return False


def resolve_device(device, *, fallback=False):
    """``"cpu"`` or ``"cuda"``: where work asked to run on ``device`` runs.

    Parameters
    ----------
    device : {"cpu", "cuda", "auto"}
    fallback : bool, default=False
        With ``device="cuda"`` and no usable GPU, return ``"cpu"`` instead of
        raising (prediction with a model fitted on a GPU).

    Raises
    ------
    ValueError
        ``device`` is not one of :data:`DEVICES`, or it is ``"cuda"``, no GPU is
        available and ``fallback`` is False.
    """
    if device == "cpu":
        return "cpu"
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if cuda_available():
        return "cuda"
    if device == "auto" or fallback:
        return "cpu"
    raise ValueError(
        "device='cuda' was asked for but no CUDA GPU is available "
        "(numba.cuda.is_available() is False: the GPU path needs the 'gpu' extra, "
        "numba-cuda, and a CUDA driver); use device='cpu' (or device='auto', which "
        "falls back to the CPU)")


def gpu_backend():
    """The GPU kernel module, :mod:`lstmforecast.gpu_lstm` (imported on first use)."""
    from . import gpu_lstm
    return gpu_lstm
