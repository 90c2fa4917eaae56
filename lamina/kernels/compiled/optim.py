"""Optimiser updates over flat 1-D buffers, one pass over parameter, gradient and state.

Each element goes through exactly the operations of the NumPy rule in ``lamina.optim`` in the
same order, with every hyper-parameter already rounded to the buffers' dtype by the caller, so
the result is bitwise the same as the reference path: no fast-math flags here (no fused
multiply-add, no reassociation). A kernel reads the gradient and never writes it.
"""
from __future__ import annotations

import numpy as np
from numba import njit

from .scalar import JIT, like


@njit(**JIT)
def _sgd(p, g, buf, first, lr_neg, momentum, one_minus_damp, wd, has_wd, has_mom, nesterov, maximize):
    for i in range(p.shape[0]):
        d = -g[i] if maximize else g[i]
        if has_wd:
            d = d + p[i] * wd
        if has_mom:
            if first:
                b = d
            else:
                b = buf[i] * momentum
                b = b + d * one_minus_damp
            buf[i] = b
            d = d + b * momentum if nesterov else b
        p[i] = p[i] + d * lr_neg


@njit(**JIT)
def _adam(p, g, m, v, vmax, lr_wd, wd, one_minus_b1, beta2, one_minus_b2, bc2_sqrt, eps, step_neg,
          has_wd, decoupled, amsgrad, maximize):
    if not amsgrad and not (has_wd and not decoupled):
        # The common case as a loop without branches, so it vectorises: negation is a product
        # with -1 and no decay a product with 1, both exact.
        sign = like(eps, -1.0) if maximize else like(eps, 1.0)
        shrink = lr_wd if has_wd else like(eps, 1.0)
        for i in range(p.shape[0]):
            d = g[i] * sign
            mi = m[i] + (d - m[i]) * one_minus_b1
            vi = v[i] * beta2
            vi = vi + (d * d) * one_minus_b2
            m[i], v[i] = mi, vi
            den = np.sqrt(vi) / bc2_sqrt + eps
            p[i] = p[i] * shrink + (mi / den) * step_neg
        return
    for i in range(p.shape[0]):
        d = -g[i] if maximize else g[i]
        pi = p[i]
        if has_wd:
            if decoupled:
                pi = pi * lr_wd
            else:
                d = d + pi * wd
        mi = m[i] + (d - m[i]) * one_minus_b1
        vi = v[i] * beta2
        vi = vi + (d * d) * one_minus_b2
        m[i], v[i] = mi, vi
        if amsgrad:
            a = vmax[i]
            if not (a >= vi):  # NaN propagates, as np.maximum
                a = vi
            vmax[i] = a
            vi = a
        den = np.sqrt(vi) / bc2_sqrt + eps
        p[i] = pi + (mi / den) * step_neg


@njit(**JIT)
def _rmsprop(p, g, sq, buf, gavg, lr_neg, alpha, one_minus_a, eps, momentum, wd, has_wd, centered,
             has_mom, maximize):
    for i in range(p.shape[0]):
        d = -g[i] if maximize else g[i]
        if has_wd:
            d = d + p[i] * wd
        s = sq[i] * alpha
        s = s + (d * d) * one_minus_a
        sq[i] = s
        if centered:
            ga = gavg[i] + (d - gavg[i]) * one_minus_a
            gavg[i] = ga
            den = np.sqrt(s - ga * ga)
        else:
            den = np.sqrt(s)
        t = d / (den + eps)
        if has_mom:
            b = buf[i] * momentum + t
            buf[i] = b
            t = b * lr_neg
        else:
            t = t * lr_neg
        p[i] = p[i] + t




@njit(**JIT)
def sgd(p, g, buf, first, lr_neg, momentum, one_minus_damp, wd, has_wd, has_mom, nesterov, maximize):
    _sgd(p, g, buf, first, lr_neg, momentum, one_minus_damp, wd, has_wd, has_mom, nesterov, maximize)


@njit(**JIT)
def adam(p, g, m, v, vmax, lr_wd, wd, one_minus_b1, beta2, one_minus_b2, bc2_sqrt, eps, step_neg,
         has_wd, decoupled, amsgrad, maximize):
    _adam(p, g, m, v, vmax, lr_wd, wd, one_minus_b1, beta2, one_minus_b2, bc2_sqrt, eps, step_neg,
          has_wd, decoupled, amsgrad, maximize)


@njit(**JIT)
def rmsprop(p, g, sq, buf, gavg, lr_neg, alpha, one_minus_a, eps, momentum, wd, has_wd, centered,
            has_mom, maximize):
    _rmsprop(p, g, sq, buf, gavg, lr_neg, alpha, one_minus_a, eps, momentum, wd, has_wd, centered,
             has_mom, maximize)
