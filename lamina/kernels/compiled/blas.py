"""Single-thread BLAS GEMM called from compiled code, without the GIL.

NumPy's OpenBLAS exports the CBLAS interface (``cblas_sgemm``/``cblas_dgemm``, with 64-bit
integers in NumPy's wheels). ``lamina.kernels.gemm`` finds the function's address in that
library at run time and passes it in as an integer: the call goes through that address, so the
compiled code holds no process-specific pointer and stays cacheable on disk. BLAS is set to one
thread around every call made this way (``lamina.kernels.gemm``): the kernel threads are the
parallelism, and OpenBLAS's own worker threads stay asleep.

Matrices are given as (pointer, strides in elements) with one unit stride: a row-major matrix,
or the transpose of one, as NumPy views of either kind are.
"""
from __future__ import annotations

from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from .scalar import JIT, like

_ROW_MAJOR, _NO_TRANS, _TRANS = 101, 111, 112


@intrinsic
def _call(typingctx, addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc):
    """``cblas_?gemm(RowMajor, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)`` through the
    function at ``addr`` (64-bit integers, ILP64); pointers are integers. Single precision when
    alpha is float32."""
    sig = types.void(addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)

    def codegen(context, builder, signature, args):
        addr, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc = args
        i32, i64 = ir.IntType(32), ir.IntType(64)
        real = ir.FloatType() if signature.args[6] == types.float32 else ir.DoubleType()
        ptr = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i32, i32, i32, i64, i64, i64, real, ptr, i64, ptr, i64,
                                                 real, ptr, i64])
        fn = builder.inttoptr(addr, fnty.as_pointer())
        as_i64 = lambda v: builder.sext(v, i64) if v.type.width < 64 else v  # noqa: E731
        builder.call(fn, [ir.Constant(i32, _ROW_MAJOR), builder.trunc(ta, i32), builder.trunc(tb, i32),
                          as_i64(m), as_i64(n), as_i64(k), alpha, builder.inttoptr(a, ptr), as_i64(lda),
                          builder.inttoptr(b, ptr), as_i64(ldb), beta, builder.inttoptr(c, ptr), as_i64(ldc)])
        return context.get_dummy_value()
    return sig, codegen


@njit(inline="always")
def _layout(rows, cols, rs, cs):
    """(transpose flag, leading dimension) of a rows x cols matrix with row/column strides rs/cs
    in elements, one of which is 1 (a stride along a dimension of 1 is never used, whatever it
    says, and the leading dimension is then made what BLAS requires)."""
    if cs == 1 or cols == 1:
        return _NO_TRANS, max(rs if rows > 1 else cols, cols, 1)
    return _TRANS, max(cs, rows, 1)


@njit(inline="always")
def gemm(addr, m, n, k, a, ars, acs, b, brs, bcs, beta, c, ldc):
    """c (m x n, row stride ldc, unit columns) = a @ b + beta * c: a (m x k) and b (k x n) at
    pointers a, b with row/column strides in elements (one of each pair 1). The scalars take
    c's precision from beta's type."""
    ta, lda = _layout(m, k, ars, acs)
    tb, ldb = _layout(k, n, brs, bcs)
    _call(addr, ta, tb, m, n, k, like(beta, 1.0), a, lda, b, ldb, beta, c, max(ldc, n, 1))


@njit(**JIT)
def product(addr, d, y, bias, lo, hi, rows, cols):
    """``y[i, block] = a[i, block rows] @ b[i, :, block columns] (+ bias)`` for the blocks lo..hi-1
    of stacks a (B, M, K), b (B, K, N) into y (B, M, N, C-contiguous), blocks of ``rows`` x
    ``cols`` numbered matrix by matrix, row-major. a and b come as addresses and strides in
    elements, ``d = [a, a0, a1, a2, b, b0, b1, b2, K]``, so that one compiled version serves
    every memory layout. ``bias`` (N,) is added to each row of a block while it is in cache; an
    empty one adds nothing."""
    B, M, N = y.shape
    K, size = d[8], y.itemsize
    zero = like(y[0, 0, 0], 0.0)  # only y's type: its values are never read
    row_blocks, col_blocks = (M + rows - 1) // rows, (N + cols - 1) // cols
    for t in range(lo, hi):
        i, rc = t // (row_blocks * col_blocks), t % (row_blocks * col_blocks)
        r0, c0 = (rc // col_blocks) * rows, (rc % col_blocks) * cols
        m, n = min(rows, M - r0), min(cols, N - c0)
        gemm(addr, m, n, K, d[0] + (i * d[1] + r0 * d[2]) * size, d[2], d[3],
             d[4] + (i * d[5] + c0 * d[7]) * size, d[6], d[7], zero,
             y.ctypes.data + ((i * M + r0) * N + c0) * size, N)
        if bias.shape[0]:
            for r in range(r0, r0 + m):
                row = y[i, r]
                for j in range(c0, c0 + n):
                    row[j] += bias[j]
