"""Borrowed array views: no reference counting on the kernels' per-step views.

Every view a jitted function makes (``rs[t, layer]``, a ``reshape`` of the weights)
shares its parent's memory-info block, and Numba increments and decrements that
block's reference count atomically for each one. For a small network stepping one
sequence, those atomic operations were about half of all the time spent: about 16
views per layer-step at roughly 17 ns each, against a few hundred multiply-adds.

:func:`borrowed` returns the same array without a memory-info block (as for an array
made by ``numba.carray`` over foreign memory), so it and every view of it carry no
reference count. It must only be applied to an array that stays alive for as long
as the borrowed one is used. The kernels apply it to their own *arguments* only,
which the caller holds for the whole call, never to arrays they allocate.
"""

from __future__ import annotations

from numba import types
from numba.core import cgutils
from numba.extending import intrinsic


@intrinsic
def borrowed(typingctx, array):
    """``array`` without ownership: same data, shape and strides, no reference
    count (see the module docstring for when this is safe)."""
    if not isinstance(array, types.Array):
        return None

    def codegen(context, builder, signature, args):
        view = context.make_array(array)(context, builder, value=args[0])
        view.meminfo = cgutils.get_null_value(view.meminfo.type)
        view.parent = cgutils.get_null_value(view.parent.type)
        return view._getvalue()

    return array(array), codegen
