"""One-pass optimiser updates over flat 1-D buffers (the layout of ``lamina.optim.flat``):
SGD (momentum, dampening, Nesterov, weight decay), Adam/AdamW (amsgrad) and RMSprop (centred,
momentum), bitwise equal to the NumPy rules in ``lamina.optim``. Each updates the parameter and
state buffers in place and returns True, or returns False (touching nothing) when it does not
take the arrays: kernels off, not C-contiguous 1-D float32/float64 NumPy arrays of one dtype and
length. The gradient is only read (``maximize`` negates it on the fly)."""
from __future__ import annotations

from . import _checks, _runtime

_k = None


def _lib():
    global _k
    if _k is None:
        _k = _runtime.load("optim")
    return _k


def _run(fn, arrays, scalars):
    """fn over slices of the 1-D ``arrays`` (empty ones passed whole) in parts."""
    n = arrays[0].size
    spans = _checks.split(n, _checks.parallel(n))
    _runtime.run_parts(fn, [tuple(a[lo:hi] if a.size else a for a in arrays) + scalars for lo, hi in spans])


def _flat(*arrays) -> bool:
    if not _checks.floats(*arrays):
        return False
    n = arrays[0].shape
    return all(a.ndim == 1 and a.shape == n for a in arrays)


def sgd_update(param, grad, momentum_buffer, step, lr, momentum=0.0, dampening=0.0, weight_decay=0.0,
               nesterov=False, maximize=False) -> bool:
    """``lamina.optim.SGD``'s step; ``momentum_buffer`` may be None when momentum is 0; ``step``
    is the step number (1 on the first, when the buffer takes the gradient as is)."""
    has_mom = momentum != 0
    arrays = (param, grad, momentum_buffer) if has_mom else (param, grad)
    if not _flat(*arrays):
        return False
    k = _lib()
    t = param.dtype.type
    buf = momentum_buffer if has_mom else param[:0]
    _run(k.sgd, (param, grad, buf), (step == 1, t(-lr), t(momentum), t(1 - dampening), t(weight_decay),
                                     weight_decay != 0, has_mom, bool(nesterov), bool(maximize)))
    return True


def adam_update(param, grad, exp_avg, exp_avg_sq, max_exp_avg_sq, step, lr, beta1=0.9, beta2=0.999,
                eps=1e-8, weight_decay=0.0, amsgrad=False, decoupled_weight_decay=False,
                maximize=False) -> bool:
    """``lamina.optim.Adam``'s (and, with ``decoupled_weight_decay``, AdamW's) step number
    ``step``; ``max_exp_avg_sq`` may be None unless ``amsgrad``."""
    arrays = (param, grad, exp_avg, exp_avg_sq) + ((max_exp_avg_sq,) if amsgrad else ())
    if not _flat(*arrays):
        return False
    k = _lib()
    t = param.dtype.type
    vmax = max_exp_avg_sq if amsgrad else param[:0]
    step_size = lr / (1 - beta1 ** step)
    bc2_sqrt = (1 - beta2 ** step) ** 0.5
    _run(k.adam, (param, grad, exp_avg, exp_avg_sq, vmax),
         (t(1 - lr * weight_decay), t(weight_decay), t(1 - beta1), t(beta2), t(1 - beta2), t(bc2_sqrt), t(eps),
          t(-step_size), weight_decay != 0, bool(decoupled_weight_decay), bool(amsgrad), bool(maximize)))
    return True


def rmsprop_update(param, grad, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8,
                   weight_decay=0.0, momentum=0.0, centered=False, maximize=False) -> bool:
    """``lamina.optim.RMSprop``'s step; ``momentum_buffer`` may be None when momentum is 0 and
    ``grad_avg`` None unless ``centered``."""
    has_mom = momentum > 0
    arrays = ((param, grad, square_avg) + ((momentum_buffer,) if has_mom else ())
              + ((grad_avg,) if centered else ()))
    if not _flat(*arrays):
        return False
    k = _lib()
    t = param.dtype.type
    empty = param[:0]
    _run(k.rmsprop, (param, grad, square_avg, momentum_buffer if has_mom else empty, grad_avg if centered else empty),
         (t(-lr), t(alpha), t(1 - alpha), t(eps), t(momentum), t(weight_decay), weight_decay != 0, bool(centered),
          has_mom, bool(maximize)))
    return True
