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
    spin_to(flag, target, spins)
                         flag[0] once it is at least target, or flag[0] after ``spins``
                         rounds of checking and pausing (the counters watched only grow)
    store_release(a, i, v)
                         a[i] = v for an int64 array, visible to the other threads' loads
    wait_post(state, seen, spins, grace, done)
                         a helper thread's wait for the next posted call (below)
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


@intrinsic
def store_release(typingctx, a, i, v):
    if not (isinstance(a, types.Array) and a.dtype == types.int64 and isinstance(i, types.Integer)
            and isinstance(v, types.Integer)):
        return None
    sig = types.void(a, i, v)

    def codegen(context, builder, sig, args):
        aty = sig.args[0]
        ary = context.make_array(aty)(context, builder, args[0])
        index = context.cast(builder, args[1], sig.args[1], types.intp)
        ptr = cgutils.get_item_pointer(context, builder, aty, ary, [index])
        value = context.cast(builder, args[2], sig.args[2], types.int64)
        builder.store_atomic(value, ptr, ordering="release", align=8)
        return context.get_dummy_value()
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
def spin_to(flag, target, spins):
    for _ in range(spins):
        v = load_acquire(flag, 0)
        if v >= target:
            return v
        cpu_pause()
    return load_acquire(flag, 0)


# Slots of the helpers' shared state array (``_runtime._Helpers.state``), a cache line apart.
POSTED, ENTERED, DONE = 0, 8, 16


@njit(**JIT)
def wait_post(state, seen, spins, grace, done):
    """A helper thread between two calls, all without the GIL. First, when ``done`` > 0, it
    publishes that it finished call ``done`` (the calling thread watches ``state[DONE]``; it sees
    the store only once this thread has let the GIL go, so it takes the GIL without waiting).
    Then it watches ``state[POSTED]`` for a call after ``seen``, for ``spins`` rounds, and returns
    ``seen`` if none came. For a new call it also waits (as long again at most) until the calling
    thread says it is entering its own first part (``state[ENTERED]``), and ``grace`` rounds
    more, so that the calling thread has let the GIL go before this one takes it. A thread that
    finds the GIL taken sleeps until it is free, and waking it took 20-50 us here."""
    if done > 0:
        store_release(state, DONE, done)
    seq = spin_to(state[POSTED:], seen + 1, spins)
    if seq <= seen:
        return seen
    for _ in range(spins):
        if load_acquire(state, ENTERED) >= seq:
            break
        cpu_pause()
    for _ in range(grace):
        cpu_pause()
    return seq
