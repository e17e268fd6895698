"""Tunables of lstmforecast, in one place.

Values read by host code are read at call time, so tests may patch them. Values used
inside jitted bodies (``LSTMF_FASTMATH``, ``LSTMF_CACHE``, ``LSTMF_LANES``,
``LSTMF_PARALLEL_CHUNKS``) are
frozen when a kernel is first compiled (or loaded from Numba's cache); change them
before the first fit of a process, or clear the cache.
"""

from __future__ import annotations

import functools
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


def jit_options():
    """Options of every CPU kernel's ``@njit`` (read once, when a kernel module is
    imported). ``error_model="numpy"`` drops the zero-division checks of Python's
    error model, which would keep the lane loops from vectorising (see
    :mod:`lstmforecast._math`)."""
    return {"cache": LSTMF_CACHE, "fastmath": LSTMF_FASTMATH, "nogil": True,
            "error_model": "numpy"}


# LLVM optimisation level of the training kernels (Numba's default is 3). At -O2 the
# first, cold compile of a fit took 30 s instead of 46 s on 2 cores, and training
# ran as fast as at -O3. A NUMBA_OPT set by the user wins.
_KERNEL_OPT = 2
_compiled_at_kernel_opt = set()


def call_kernel(dispatcher, *args):
    """``dispatcher(*args)``; the first call per dispatcher and parameter dtype
    compiles it (or loads it from Numba's cache) at ``_KERNEL_OPT``.

    The level is set only inside Numba's compiler lock, which every compilation
    in the process takes, so no other function is compiled at it.
    """
    key = (dispatcher, getattr(args[0], "dtype", None))
    if key not in _compiled_at_kernel_opt:
        if "NUMBA_OPT" not in os.environ and hasattr(dispatcher, "typeof_pyval"):
            from numba.core import config as numba_config
            from numba.core.compiler_lock import global_compiler_lock

            signature = tuple(dispatcher.typeof_pyval(a) for a in args)
            with global_compiler_lock:
                saved = numba_config.OPT
                numba_config.OPT = type(saved)(_KERNEL_OPT)
                try:
                    dispatcher.compile(signature)
                finally:
                    numba_config.OPT = saved
        _compiled_at_kernel_opt.add(key)
    return dispatcher(*args)


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
_KERNEL_MODULES = ("config.py", "_layout.py", "_math.py", "_views.py", "_kernels.py",
                   "_optimizers.py", "_training.py", "_truncated.py")
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


class _IndexLock:
    """Exclusive lock on ``path`` (``fcntl.flock``) for an index's read-modify-write;
    without ``fcntl`` (Windows) or a writable directory it does nothing, and a
    racing writer can then only drop an index entry (a later recompile), never
    point one at the wrong code."""

    def __init__(self, path):
        self._path = path
        self._file = None

    def __enter__(self):
        try:
            import fcntl
            self._file = open(self._path, "a+b")
            fcntl.flock(self._file, fcntl.LOCK_EX)
        except (ImportError, OSError):
            if self._file is not None:
                self._file.close()
            self._file = None
        return self

    def __exit__(self, *exc):
        if self._file is not None:
            self._file.close()      # closing releases the lock
        return False


@functools.cache
def _keyed_cache_file_class():
    from numba.core.caching import IndexDataCacheFile

    class _KeyedIndexDataCacheFile(IndexDataCacheFile):
        """Numba's index + data cache files, with each data file named after its
        key and source stamp, and holding both.

        Numba numbers data files in the order entries are added to the index
        (``name.1.nbc``, ``name.2.nbc``...). Two processes that compile different
        signatures of one function at the same time both pick ``name.1.nbc``; the
        index and the data file are then written last-writer-wins independently,
        and the index can map the float64 signature to the float32 machine code,
        which segfaults (or computes garbage) in every later process. Here a data
        file belongs to one key and one source version, the index is updated under
        a lock, and a load checks the key and stamp stored in the file.
        """

        def _keyed_data_name(self, key):
            import hashlib
            digest = hashlib.sha256(
                repr((self._source_stamp, key)).encode()).hexdigest()[:24]
            return "%s.%s.nbc" % (self._index_name[:-len(".nbi")], digest)

        def save(self, key, data):
            data_name = self._keyed_data_name(key)
            self._save_data(data_name, (self._source_stamp, key, data))
            with _IndexLock(self._index_path + ".lock"):
                stale = self._stale_data_names()
                overloads = self._load_index()
                if overloads.get(key) != data_name:
                    overloads[key] = data_name
                    self._save_index(overloads)
            for name in stale - {data_name}:
                try:
                    os.unlink(self._data_path(name))
                except OSError:
                    pass

        def load(self, key):
            data_name = self._load_index().get(key)
            if data_name is None:
                return None
            try:
                stored = self._load_data(data_name)
            except OSError:
                return None
            if (isinstance(stored, tuple) and len(stored) == 3
                    and stored[0] == self._source_stamp and stored[1] == key):
                return stored[2]
            return None

        def _stale_data_names(self):
            """Data files listed by an index written for other sources (they are
            never loaded again; numbered files were overwritten, keyed ones are
            deleted)."""
            import pickle
            try:
                with open(self._index_path, "rb") as f:
                    version = pickle.load(f)
                    stamp, overloads = pickle.loads(f.read())
            except Exception:
                return set()
            if version == self._version and stamp == self._source_stamp:
                return set()
            return {name for name in overloads.values()
                    if isinstance(name, str) and os.sep not in name}

    return _KeyedIndexDataCacheFile


def harden_caches(namespace):
    """Make the Numba caches of the dispatchers in ``namespace`` tolerate corrupt,
    foreign or unwritable cache files (load failures recompile, save failures pass),
    stale ones (every index is stamped with :func:`kernel_fingerprint`) and
    processes that compile into one cache at the same time (data files keyed by
    signature, see ``_keyed_cache_file_class``)."""
    from numba.core.caching import FunctionCache, IndexDataCacheFile
    from numba.np.ufunc.parallel import _launch_threads

    keyed_cache_file = _keyed_cache_file_class()

    class _TolerantCache(FunctionCache):
        def load_overload(self, sig, target_context):
            try:
                # A function compiled in a process that had loaded its parallel
                # callee from the cache is saved without the callee's "launch the
                # thread pool first" hook (Numba does not restore it on a cache
                # load), and loading it into a process whose pool has not started
                # aborts or segfaults ("Symbol not found: allocate_sched").
                # Starting the pool (once; later calls return at once) first makes
                # every such load safe.
                _launch_threads()
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
            if type(index) is IndexDataCacheFile:
                index.__class__ = keyed_cache_file
            if index is not None and hasattr(index, "_source_stamp"):
                index._source_stamp = (index._source_stamp, kernel_fingerprint())
