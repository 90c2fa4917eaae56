"""Kullback-Leibler divergence KL(p || q) between distributions, looked up by the pair of types."""
from __future__ import annotations

from ..ops import log
from .bernoulli import Bernoulli
from .categorical import Categorical
from .normal import Normal

_KL_REGISTRY: dict = {}


def register_kl(type_p, type_q):
    """Decorator registering ``fn(p, q)`` as KL(p || q) for ``p`` of ``type_p`` and ``q`` of ``type_q``."""
    def decorator(fn):
        _KL_REGISTRY[type_p, type_q] = fn
        return fn
    return decorator


def kl_divergence(p, q):
    """KL(p || q), elementwise over the broadcast batch shape."""
    for tp in type(p).__mro__:
        for tq in type(q).__mro__:
            fn = _KL_REGISTRY.get((tp, tq))
            if fn is not None:
                return fn(p, q)
    known = ", ".join(f"({a.__name__}, {b.__name__})" for a, b in _KL_REGISTRY)
    raise NotImplementedError(f"kl_divergence: no formula for ({type(p).__name__}, {type(q).__name__}); "
                              f"known pairs: {known}")


@register_kl(Normal, Normal)
def _kl_normal_normal(p, q):
    var_ratio = (p.scale / q.scale) ** 2
    t1 = ((p.loc - q.loc) / q.scale) ** 2
    return 0.5 * (var_ratio + t1 - 1 - log(var_ratio))


@register_kl(Categorical, Categorical)
def _kl_categorical_categorical(p, q):
    if p._num_events != q._num_events:
        raise ValueError(f"kl_divergence: Categorical distributions over {p._num_events} and "
                         f"{q._num_events} classes")
    t = p.probs * (p.logits - q.logits)
    # PyTorch's convention: classes p cannot produce add 0; classes q cannot produce make it inf
    t = t.masked_fill((q.probs == 0).expand(*t.shape), float("inf"))
    t = t.masked_fill((p.probs == 0).expand(*t.shape), 0.0)
    return t.sum(-1)


@register_kl(Bernoulli, Bernoulli)
def _kl_bernoulli_bernoulli(p, q):
    from ..nn.functional import softplus
    t1 = p.probs * (softplus(-q.logits) - softplus(-p.logits))
    t1 = t1.masked_fill(q.probs == 0, float("inf")).masked_fill(p.probs == 0, 0.0)
    t2 = (1 - p.probs) * (softplus(q.logits) - softplus(p.logits))
    t2 = t2.masked_fill(q.probs == 1, float("inf")).masked_fill(p.probs == 1, 0.0)
    return t1 + t2
