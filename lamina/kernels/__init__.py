"""Compiled CPU kernels (Numba) on raw NumPy arrays: fused elementwise activations,
softmax/log_softmax and cross-entropy, layer_norm, scaled dot-product attention, matrix
products split over threads, convolution packing around one BLAS GEMM per direction, pooling,
optimiser updates over flat buffers, embedding backward, dropout masks, large reductions and
large binary arithmetic on the kernel threads.

Every kernel function takes plain arrays and returns its result, or None when it does not
take the input (kernels switched off, Numba missing, a dtype other than float32/float64, a
non-contiguous layout): the caller then runs its NumPy/CuPy path, which stays the reference.

- Switches: ``LAMINA_KERNELS=0`` in the environment, or ``set_enabled(False)``; ``enabled()``.
- Compilation: lazy, on a kernel's first call; Numba itself is imported then, not here. Compiled
  code is cached on disk in ``$NUMBA_CACHE_DIR`` if set, else in
  ``$LAMINA_HOME/numba-cache/<hash of the kernel sources>`` (``LAMINA_HOME`` defaults to
  ``~/.cache/lamina``), so changed sources never load stale code; an unwritable directory means
  compiling in memory in every process. ``warmup()`` compiles everything ahead of time. One line goes to stderr when
  compiling takes longer than a second in a process.
- Threads: kernels are compiled serial and release the GIL; a large call is split into parts
  run at once on a small pool of Python threads (no OpenMP pool, fork-safe). Small inputs run
  in the calling thread. ``set_num_threads(n)`` sets the kernels' and BLAS's threads together.
  With several threads the matrix products run on the same pool (``gemm``): compiled parts call
  NumPy's own ``cblas_?gemm`` on blocks, with BLAS put on one thread from the first such call
  (``set_num_threads`` or ``set_enabled(False)`` give it its threads back), so one pool of
  threads serves the whole program and BLAS's own workers (which busy-wait between calls) stay
  asleep.
"""
from __future__ import annotations

from ._runtime import cache_dir, cache_enabled, enabled, get_num_threads, set_enabled, set_num_threads
from .activation import (bias_act_backward, bias_act_forward, gelu_backward, gelu_forward,
                         leaky_relu_backward, leaky_relu_forward, relu_backward, relu_forward,
                         sigmoid_backward, sigmoid_forward, silu_backward, silu_forward,
                         tanh_backward, tanh_forward)
from .attention import attention_backward, attention_forward
from .conv import (avg_pool2d_backward, avg_pool2d_forward, col2im, conv2d_backward, conv2d_forward,
                   im2col, max_pool2d_backward, max_pool2d_forward, max_pool_blocks_backward,
                   max_pool_blocks_forward)
from .gemm import matmul, matmuls
from .misc import binary, dropout_forward, embedding_backward, mean_all, scale_rows, sum_all, var_all
from .norm import layer_norm_backward, layer_norm_forward
from .softmax import (cross_entropy, log_softmax_backward, log_softmax_forward, softmax_backward,
                      softmax_forward)
from .optim import adam_update, rmsprop_update, sgd_update
from .warmup import warmup

__all__ = [
    "adam_update",
    "attention_backward",
    "attention_forward",
    "avg_pool2d_backward",
    "avg_pool2d_forward",
    "bias_act_backward",
    "bias_act_forward",
    "binary",
    "cache_dir",
    "cache_enabled",
    "col2im",
    "conv2d_backward",
    "conv2d_forward",
    "cross_entropy",
    "dropout_forward",
    "embedding_backward",
    "enabled",
    "gelu_backward",
    "gelu_forward",
    "get_num_threads",
    "im2col",
    "layer_norm_backward",
    "layer_norm_forward",
    "leaky_relu_backward",
    "leaky_relu_forward",
    "log_softmax_backward",
    "log_softmax_forward",
    "matmul",
    "matmuls",
    "max_pool2d_backward",
    "max_pool2d_forward",
    "max_pool_blocks_backward",
    "max_pool_blocks_forward",
    "mean_all",
    "relu_backward",
    "relu_forward",
    "rmsprop_update",
    "scale_rows",
    "set_enabled",
    "set_num_threads",
    "sgd_update",
    "sigmoid_backward",
    "sigmoid_forward",
    "silu_backward",
    "silu_forward",
    "softmax_backward",
    "softmax_forward",
    "sum_all",
    "tanh_backward",
    "tanh_forward",
    "var_all",
    "warmup",
]
