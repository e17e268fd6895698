"""Scalar math for the CPU kernels that keeps float32 arithmetic float32 and vectorised.

Numba has no vector ``tanh``/``exp`` without Intel's SVML, so a loop calling
``np.tanh`` runs one libm call per element, and a float literal such as ``1.0``
promotes float32 arithmetic to float64. These helpers dispatch on the argument's type
when a kernel is compiled:

- float64: the exact functions (``np.tanh``), so the float64 kernels match the
  plain-NumPy oracles and the finite-difference gradient checks to round-off;
- float32: a branch-free rational approximation of ``tanh`` (the coefficients of
  Eigen's ``generic_fast_tanh_float``; maximum absolute error 3.6e-7, a few float32
  ulps) that LLVM vectorises across the lanes of a loop, and constants of the
  argument's own type.

NaN propagates (a NaN input gives a NaN output: the divergence checks rely on it) and
``tanh(+-inf) = +-1``.

:func:`flush` and :func:`flush_floor` keep backward passes out of subnormal numbers.
A gradient carried back through many steps shrinks geometrically (by the forget gate,
or by the recurrent weights) and, in float32, turns subnormal after one or two hundred
steps; every multiply with a subnormal operand or result then costs ~100 cycles of
microcode on x86, which made BPTT over T=500 run 10-30x slower than over T=50. The
kernels flush such values to zero, as the FTZ/DAZ modes of a GPU or of PyTorch's
``set_flush_denormal`` would: values below ``flush_floor`` (``2**24`` times the
smallest normal number, so that a product with a factor of at least ``2**-24`` stays
normal) are far below anything that can move a weight.

The kernels that call these helpers are compiled with ``error_model="numpy"``
(``config.jit_options``): Python's error model guards every float division with a
zero check, which keeps LLVM from vectorising the loop.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import types
from numba.extending import intrinsic, overload

_NUMPY_ERRORS = {"error_model": "numpy"}

# Beyond +-_CLAMP, float32 tanh rounds to +-1 within the approximation's error.
_CLAMP = np.float32(7.90531110763549805)
_NUMERATOR = tuple(np.float32(v) for v in (
    -2.76076847742355e-16, 2.00018790482477e-13, -8.60467152213735e-11,
    5.12229709037114e-08, 1.48572235717979e-05, 6.37261928875436e-04,
    4.89352455891786e-03))
_DENOMINATOR = tuple(np.float32(v) for v in (
    1.19825839466702e-06, 1.18534705686654e-04, 2.26843463243900e-03,
    4.89352518554385e-03))
_P13, _P11, _P9, _P7, _P5, _P3, _P1 = _NUMERATOR
_Q6, _Q4, _Q2, _Q0 = _DENOMINATOR
_HALF32 = np.float32(0.5)
_FLUSH_FLOOR32 = np.float32(np.finfo(np.float32).tiny * 2.0**24)
_FLUSH_FLOOR64 = np.float64(np.finfo(np.float64).tiny * 2.0**24)


def tanh(x):
    """Hyperbolic tangent: exact for float64, vectorisable approximation for float32."""
    return np.tanh(x)


def sigmoid(x):
    """Logistic function ``1 / (1 + exp(-x))``, typed like :func:`tanh`."""
    return 1.0 / (1.0 + np.exp(-x))


def like(value, x):
    """``value`` as a scalar of ``x``'s float type (``x`` a scalar or an array)."""
    return value


def flush_floor(x):
    """Magnitude below which :func:`flush` zeroes a value of ``x``'s float type."""
    return _FLUSH_FLOOR64


def flush(v, floor):
    """``v``, or zero when ``abs(v) < floor``; NaN and inf are kept."""
    return v


def _is_float32(x):
    return x == types.float32 or (isinstance(x, types.Array) and x.dtype == types.float32)


@intrinsic
def muladd(typingctx, a, b, c):
    """``a * b + c`` as LLVM's ``fmuladd``: one fused multiply-add instruction on
    CPUs that have one (every x86-64 since 2013), else a multiply and an add. The
    same on every code path of one machine, so results stay reproducible."""
    if not (a == b == c and isinstance(a, types.Float)):
        return None

    def codegen(context, builder, signature, args):
        ty = context.get_value_type(signature.return_type)
        fn = builder.module.declare_intrinsic("llvm.fmuladd", [ty],
                                              ir.FunctionType(ty, [ty, ty, ty]))
        return builder.call(fn, args)

    return a(a, a, a), codegen


@overload(tanh, jit_options=_NUMPY_ERRORS)
def _tanh_impl(x):
    if x == types.float32:
        def tanh32(x):
            # selects, not min/max: a NaN must stay NaN
            v = _CLAMP if x > _CLAMP else x
            v = -_CLAMP if v < -_CLAMP else v
            v2 = v * v
            # (fused multiply-adds: a 30% faster tanh, as accurate; this function
            # is most of the gate arithmetic)
            p = muladd(v2, _P13, _P11)
            p = muladd(p, v2, _P9)
            p = muladd(p, v2, _P7)
            p = muladd(p, v2, _P5)
            p = muladd(p, v2, _P3)
            p = muladd(p, v2, _P1)
            q = muladd(v2, _Q6, _Q4)
            q = muladd(q, v2, _Q2)
            q = muladd(q, v2, _Q0)
            return v * p / q
        return tanh32
    if isinstance(x, types.Float):
        return lambda x: np.tanh(x)
    return None


@overload(sigmoid, jit_options=_NUMPY_ERRORS)
def _sigmoid_impl(x):
    if x == types.float32:
        return lambda x: _HALF32 + _HALF32 * tanh(_HALF32 * x)
    if isinstance(x, types.Float):
        return lambda x: 1.0 / (1.0 + np.exp(-x))
    return None


@overload(like, jit_options=_NUMPY_ERRORS)
def _like_impl(value, x):
    if _is_float32(x):
        return lambda value, x: np.float32(value)
    return lambda value, x: np.float64(value)


@overload(flush_floor, jit_options=_NUMPY_ERRORS)
def _flush_floor_impl(x):
    if _is_float32(x):
        return lambda x: _FLUSH_FLOOR32
    return lambda x: _FLUSH_FLOOR64


@overload(flush, jit_options=_NUMPY_ERRORS)
def _flush_impl(v, floor):
    # "not (abs(v) < floor)" rather than "abs(v) >= floor": NaN must be kept
    return lambda v, floor: v if not (abs(v) < floor) else v - v
