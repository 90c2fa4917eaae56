"""Waiting for another thread without the GIL: the kernel threads' spin-wait.

A thread that sleeps on a lock between two split kernel calls is slow to wake: the system has to
schedule it again, and on a virtual machine an idle core may first have to be woken by the
host. That lag (0.1-1 ms measured here) is as long as a LeNet-sized kernel call, so splitting
such calls over threads did not pay. Like the spin phase of an OpenMP or BLAS thread pool, a
helper thread therefore first watches a counter in memory for a short while, without the GIL,
and only then sleeps.

    load_acquire(a, i)   a[i] of an int64 array, read from memory every time (an atomic load:
                         the compiler may not keep it in a register across the loop)
    cpu_pause()          the processor's spin-loop hint (x86's ``pause``; nothing elsewhere)
    spin_until(flag, old, spins)
                         flag[0] once it differs from old, or old after ``spins`` rounds
                         of checking and pausing
"""
from __future__ import annotations

import platform

from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic

from .scalar import JIT


@intrinsic
def load_acquire(typingctx, a, i):
    if not (isinstance(a, types.Array) and a.dtype == types.int64 and isinstance(i, types.Integer)):
        return None
    sig = types.int64(a, i)

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        index = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [index])
        return builder.load_atomic(ptr, ordering="acquire", align=8)
    return sig, codegen


# The processor's spin-loop hint, an LLVM intrinsic (Numba's LLVM has no inline assembly).
_PAUSE = platform.machine().lower() in ("x86_64", "amd64", "i686", "i386")


@intrinsic
def cpu_pause(typingctx):
    sig = types.void()

    def codegen(context, builder, sig, args):
        if _PAUSE:
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                                "llvm.x86.sse2.pause")
            builder.call(fn, [])
        return context.get_dummy_value()
    return sig, codegen


@njit(**JIT)
def spin_until(flag, old, spins):
    for _ in range(spins):
        v = load_acquire(flag, 0)
        if v != old:
            return v
        cpu_pause()
    return load_acquire(flag, 0)
