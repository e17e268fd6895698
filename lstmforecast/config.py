"""Tunables of lstmforecast, in one place.

Values read by host code are read at call time, so tests may patch them. Values used
inside jitted bodies (``LSTMF_FASTMATH``, ``LSTMF_CACHE``, ``LSTMF_LANES``,
``LSTMF_PARALLEL_CHUNKS``) are
frozen when a kernel is first compiled (or loaded from Numba's cache); change them
before the first fit of a process, or clear the cache.
"""

from __future__ import annotations

import os


def _env_flag(name, default):
    """Parse a boolean environment variable strictly ("1"/"true"/"0"/"false")."""
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    value = raw.strip().lower()
    if value in ("1", "true", "yes", "on"):
        return True
    if value in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"environment variable {name}={raw!r} is not a boolean "
                     "(use 1/0 or true/false)")


_DEFAULTS = {
    # Numba's on-disk cache of compiled kernels: compile once per machine.
    "LSTMF_CACHE": _env_flag("LSTMF_CACHE", True),
    # Fast-math flags. Off: with "reassoc"/"contract" a kernel compiled fresh and
    # the same kernel loaded from Numba's cache gave results differing in the last
    # bits (parallel path), which breaks bitwise reproducibility between a first and
    # a later run. Never add "nnan"/"ninf": the divergence checks need NaN and inf.
    "LSTMF_FASTMATH": set(),
    # Sequences stepped together (vector lanes) in a chunk, at least.
    "LSTMF_LANES": 16,
    # Batches are split into about this many chunks (run in parallel). The split
    # never depends on the thread count and chunk sums are reduced in a fixed order,
    # so results are bitwise identical for 1 or many threads.
    "LSTMF_PARALLEL_CHUNKS": max(1, os.cpu_count() or 1),
    # CUDA threads per block for the GPU kernels.
    "LSTMF_THREADS_PER_BLOCK": 128,
    # GPU: a model's weights go to shared memory when they take at most this many
    # bytes (48 KiB: what every CUDA GPU gives a block without opting in).
    "LSTMF_GPU_SHARED_BYTES": 48 * 1024,
}

LSTMF_CACHE = _DEFAULTS["LSTMF_CACHE"]
LSTMF_FASTMATH = set(_DEFAULTS["LSTMF_FASTMATH"])
LSTMF_LANES = _DEFAULTS["LSTMF_LANES"]
LSTMF_PARALLEL_CHUNKS = _DEFAULTS["LSTMF_PARALLEL_CHUNKS"]
LSTMF_THREADS_PER_BLOCK = _DEFAULTS["LSTMF_THREADS_PER_BLOCK"]
LSTMF_GPU_SHARED_BYTES = _DEFAULTS["LSTMF_GPU_SHARED_BYTES"]


def _reset(var=None):
    """Restore one tunable (``var``), or all of them, to its default."""
    names = list(_DEFAULTS) if var is None else [var]
    for name in names:
        if name not in _DEFAULTS:
            raise ValueError(f"unknown config variable {name!r}")
        value = _DEFAULTS[name]
        globals()[name] = set(value) if isinstance(value, set) else value


def _numba_cache_usable():
    """Whether Numba has a writable cache location for this package's modules."""
    try:
        from numba.core.caching import FunctionCache
        FunctionCache(_numba_cache_usable)
    except Exception:
        return False
    return True


if LSTMF_CACHE and not _numba_cache_usable():
    import warnings
    warnings.warn("lstmforecast: no writable Numba cache location (read-only "
                  "install and NUMBA_CACHE_DIR); kernels are compiled in memory in "
                  "each process",
                  RuntimeWarning, stacklevel=2)
    LSTMF_CACHE = False
    _DEFAULTS["LSTMF_CACHE"] = False


# Modules whose jitted functions call one another (and get compiled into each
# other's cached machine code).
_KERNEL_MODULES = ("config.py", "_layout.py", "_math.py", "_kernels.py", "_optimizers.py",
                   "_training.py", "_truncated.py")
_kernel_fingerprint = None


def kernel_fingerprint():
    """SHA-256 of the kernel modules' sources (and the Numba version).

    Numba keys a cached function on its own file's modification time and size only,
    so after an edit to a helper in another module (say ``_optimizers.py``) the
    callers in unchanged modules (``_training.py``) would load machine code built
    from the old helper. Adding this fingerprint to every index's stamp makes any
    change to any kernel module recompile them all.
    """
    global _kernel_fingerprint
    if _kernel_fingerprint is None:
        import hashlib

        import numba

        digest = hashlib.sha256(numba.__version__.encode())
        here = os.path.dirname(os.path.abspath(__file__))
        for name in _KERNEL_MODULES:
            with open(os.path.join(here, name), "rb") as f:
                digest.update(name.encode() + b"\0" + f.read())
        _kernel_fingerprint = digest.hexdigest()
    return _kernel_fingerprint


def harden_caches(namespace):
    """Make the Numba caches of the dispatchers in ``namespace`` tolerate corrupt,
    foreign or unwritable cache files (load failures recompile, save failures pass)
    and stale ones (every index is stamped with :func:`kernel_fingerprint`)."""
    from numba.core.caching import FunctionCache

    class _TolerantCache(FunctionCache):
        def load_overload(self, sig, target_context):
            try:
                return super().load_overload(sig, target_context)
            except Exception:
                try:
                    self.flush()
                except Exception:
                    pass
                return None

        def save_overload(self, sig, data):
            try:
                super().save_overload(sig, data)
            except Exception:
                pass

    for obj in list(namespace.values()):
        cache = getattr(obj, "_cache", None)
        if type(cache) is FunctionCache:
            cache.__class__ = _TolerantCache
            index = getattr(cache, "_cache_file", None)
            if index is not None and hasattr(index, "_source_stamp"):
                index._source_stamp = (index._source_stamp, kernel_fingerprint())
