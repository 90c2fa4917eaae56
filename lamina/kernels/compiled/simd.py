"""Explicit SIMD vectors inside compiled kernels.

LLVM vectorises simple loops by itself, but not a register-blocked inner kernel: a loop that
keeps several accumulators of one output-channel vector each in registers across a long
reduction. Written with arrays, those accumulators live in memory (each step a load, a
fused multiply-add and a store), 3-4x slower than keeping them in registers. ``Vec`` is an
LLVM vector as a Numba value (float32 x 16 or float64 x 8: 64 bytes, one AVX-512 register or
two AVX2 ones; LLVM splits it on machines with narrower vectors), so a loop-carried ``Vec``
stays in a register.

    lanes(a)          the number of lanes of a's dtype (a compile-time constant)
    vzero(a)          a vector of zeros of a's dtype
    vload(a, i)       a[i:i + lanes] of a 1-D contiguous array (unaligned load)
    vstore(a, i, v)   a[i:i + lanes] = v
    vfma(acc, s, v)   acc + s * v with the scalar s broadcast, one fused multiply-add
    vfma_v(acc, u, v) acc + u * v lane by lane
    vadd(u, v)        u + v
    vmax(u, v)        lane by lane, u where u > v else v (a NaN in u is passed over)
    vhmax(v)          the largest lane (NaN lanes passed over; -inf when every lane is NaN)
    vsplat(a, s)      every lane s (of a's dtype)
    vload_n(a, i, n), vstore_n(a, i, v, n)
                      the same on the first n lanes only (masked: nothing past them is touched)

No bounds checks: callers keep ``i + lanes <= a.size``.
"""
from __future__ import annotations

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, overload, register_model


class Vec(types.Type):
    """An LLVM vector of ``count`` floats of ``dtype``."""

    def __init__(self, dtype, count):
        self.dtype, self.count = dtype, count
        super().__init__(name=f"Vec({dtype} x {count})")


@register_model(Vec)
class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        element = dmm.lookup(fe_type.dtype).get_value_type()
        super().__init__(dmm, fe_type, ir.VectorType(element, fe_type.count))


def _vec_of(array_type):
    if not isinstance(array_type, types.Array) or array_type.dtype not in (types.float32, types.float64):
        return None
    return Vec(array_type.dtype, 512 // array_type.dtype.bitwidth)


def lanes(a):
    raise NotImplementedError("lanes() is only defined inside compiled kernels")


@overload(lanes, inline="always")
def _lanes(a):
    vt = _vec_of(a)
    if vt is not None:
        n = vt.count
        return lambda a: n


def _pointer(context, builder, array_type, array, index, vector_type):
    data = context.make_array(array_type)(context, builder, array).data
    return builder.bitcast(builder.gep(data, [index]), vector_type.as_pointer())


@intrinsic
def vzero(typingctx, a):
    vt = _vec_of(a)
    if vt is None:
        return None

    def codegen(context, builder, sig, args):
        return ir.Constant(context.get_value_type(vt), None)
    return vt(a), codegen


@intrinsic
def vload(typingctx, a, i):
    vt = _vec_of(a)
    if vt is None or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], context.get_value_type(vt))
        return builder.load(ptr, align=1)
    return vt(a, i), codegen


@intrinsic
def vstore(typingctx, a, i, v):
    vt = _vec_of(a)
    if vt is None or v != vt or not isinstance(i, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], args[2].type)
        builder.store(args[2], ptr, align=1)
        return context.get_dummy_value()
    return types.none(a, i, v), codegen


def _splat(builder, value, vector_type):
    one = builder.insert_element(ir.Constant(vector_type, ir.Undefined), value, ir.Constant(ir.IntType(32), 0))
    mask = ir.Constant(ir.VectorType(ir.IntType(32), vector_type.count), [0] * vector_type.count)
    return builder.shuffle_vector(one, ir.Constant(vector_type, ir.Undefined), mask)


@intrinsic
def vfma(typingctx, acc, s, v):
    if not isinstance(acc, Vec) or v != acc or s != acc.dtype:
        return None

    def codegen(context, builder, sig, args):
        a, x, w = args
        vty = a.type
        suffix = "f32" if acc.dtype == types.float32 else "f64"
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                             f"llvm.fma.v{vty.count}{suffix}")
        return builder.call(fma, [_splat(builder, x, vty), w, a])
    return acc(acc, s, v), codegen


@intrinsic
def vadd(typingctx, u, v):
    if not isinstance(u, Vec) or v != u:
        return None

    def codegen(context, builder, sig, args):
        return builder.fadd(args[0], args[1])
    return u(u, v), codegen


@intrinsic
def vmax(typingctx, u, v):
    if not isinstance(u, Vec) or v != u:
        return None

    def codegen(context, builder, sig, args):
        return builder.select(builder.fcmp_ordered(">", args[0], args[1]), args[0], args[1])
    return u(u, v), codegen


@intrinsic
def vhmax(typingctx, v):
    if not isinstance(v, Vec):
        return None

    def codegen(context, builder, sig, args):
        vec = args[0]
        m = ir.Constant(vec.type.element, float("-inf"))
        for k in range(vec.type.count):
            e = builder.extract_element(vec, ir.Constant(ir.IntType(32), k))
            m = builder.select(builder.fcmp_ordered(">", e, m), e, m)
        return m
    return v.dtype(v), codegen


def _first_lanes(builder, count, vector_type):
    """The mask of lanes 0..count-1 (count an integer value)."""
    width = vector_type.count
    iota = ir.Constant(ir.VectorType(ir.IntType(64), width), list(range(width)))
    limit = builder.sext(count, ir.IntType(64)) if count.type.width < 64 else count
    splat = _splat(builder, limit, ir.VectorType(ir.IntType(64), width))
    return builder.icmp_signed("<", iota, splat)


def _suffix(vector_type):
    return f"v{vector_type.count}{'f32' if vector_type.element == ir.FloatType() else 'f64'}"


@intrinsic
def vload_n(typingctx, a, i, count):
    """a[i:i + count] in the first count lanes, zeros in the others; reads nothing past them."""
    vt = _vec_of(a)
    if vt is None or not isinstance(i, types.Integer) or not isinstance(count, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        vty = context.get_value_type(vt)
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], vty)
        fn = cgutils.get_or_insert_function(
            builder.module,
            ir.FunctionType(vty, [vty.as_pointer(), ir.IntType(32), ir.VectorType(ir.IntType(1), vty.count), vty]),
            f"llvm.masked.load.{_suffix(vty)}.p0{_suffix(vty)}")
        mask = _first_lanes(builder, args[2], vty)
        return builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 1), mask, ir.Constant(vty, None)])
    return vt(a, i, count), codegen


def _masked_store(builder, value, ptr, count):
    """``llvm.masked.store`` of the first ``count`` lanes of ``value`` at ``ptr``."""
    vty = value.type
    fn = cgutils.get_or_insert_function(
        builder.module,
        ir.FunctionType(ir.VoidType(), [vty, vty.as_pointer(), ir.IntType(32), ir.VectorType(ir.IntType(1), vty.count)]),
        f"llvm.masked.store.{_suffix(vty)}.p0{_suffix(vty)}")
    builder.call(fn, [value, ptr, ir.Constant(ir.IntType(32), 1), _first_lanes(builder, count, vty)])


@intrinsic
def vstore_n(typingctx, a, i, v, count):
    """a[i:i + count] = the first count lanes of v; writes nothing past them.

    Stored as two halves: a half whose lanes are all written is a plain store, only a half cut
    by ``count`` a masked one. Without AVX-512 a masked store is slow (AVX2's ``vmaskmovps``:
    8.2 ns per 16 float32 against 1.4 for a plain store on a Zen 3), and most calls store
    whole vectors or cut only one half."""
    vt = _vec_of(a)
    if vt is None or v != vt or not isinstance(i, types.Integer) or not isinstance(count, types.Integer):
        return None

    def codegen(context, builder, sig, args):
        vty = args[2].type
        half = vty.count // 2
        hty = ir.VectorType(vty.element, half)
        ptr = _pointer(context, builder, sig.args[0], args[0], args[1], vty)
        i64 = ir.IntType(64)
        count = builder.sext(args[3], i64) if args[3].type.width < 64 else args[3]
        for h in range(2):
            lanes_h = ir.Constant(ir.VectorType(ir.IntType(32), half), list(range(h * half, (h + 1) * half)))
            part = builder.shuffle_vector(args[2], ir.Constant(vty, ir.Undefined), lanes_h)
            hptr = builder.bitcast(builder.gep(builder.bitcast(ptr, vty.element.as_pointer()),
                                               [ir.Constant(i64, h * half)]), hty.as_pointer())
            left = builder.sub(count, ir.Constant(i64, h * half))
            with builder.if_else(builder.icmp_signed(">=", left, ir.Constant(i64, half))) as (whole, cut):
                with whole:
                    builder.store(part, hptr, align=1)
                with cut:
                    with builder.if_then(builder.icmp_signed(">", left, ir.Constant(i64, 0))):
                        _masked_store(builder, part, hptr, left)
        return context.get_dummy_value()
    return types.none(a, i, v, count), codegen


@intrinsic
def vsplat(typingctx, a, s):
    """A vector of a's dtype with every lane s."""
    vt = _vec_of(a)
    if vt is None or s != vt.dtype:
        return None

    def codegen(context, builder, sig, args):
        return _splat(builder, args[1], context.get_value_type(vt))
    return vt(a, s), codegen


@intrinsic
def vfma_v(typingctx, acc, u, v):
    """acc + u * v, lane by lane, one fused multiply-add."""
    if not isinstance(acc, Vec) or u != acc or v != acc:
        return None

    def codegen(context, builder, sig, args):
        vty = args[0].type
        fma = cgutils.get_or_insert_function(builder.module, ir.FunctionType(vty, [vty, vty, vty]),
                                             f"llvm.fma.{_suffix(vty)}")
        return builder.call(fma, [args[1], args[2], args[0]])
    return acc(acc, u, v), codegen
