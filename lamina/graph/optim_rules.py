"""Optimiser updates in Tensor-op form, for tracing a training step.

The optimisers of ``lamina.optim`` update flat buffers with in-place array code, which a trace
cannot see. While tracing, an optimiser's ``step`` runs the rule written here instead: the same
arithmetic, in the same order (so float results match the eager step), as Tensor ops. The new
parameter values become graph updates ``("data", parameter)``; the real parameters are not
touched. Rules exist for stateless updates (SGD without momentum); an optimiser whose step keeps
state raises a clear ``TraceError``.
"""
from __future__ import annotations

from ..autograd import no_grad


def _sgd(tracer, opt):
    from .trace import TraceError
    for group in opt.param_groups:
        if group.get("momentum", 0) != 0:
            raise TraceError(f"trace: SGD with momentum={group['momentum']!r} keeps state between steps, "
                             "which a traced step cannot update yet; trace with momentum=0")
        lr, wd = group["lr"], group.get("weight_decay", 0)
        for p in group["params"]:
            if p.grad is None:
                continue
            pv = tracer.value_of(p)  # before detach(): the detached tensor is found through p's array
            g = p.grad
            if group.get("maximize"):
                g = -g
            if wd != 0:
                g = g + p.detach() * wd
            new = p.detach() + g * (-lr)
            tracer.graph.updates.append((("data", pv), tracer.value_of(new)))


RULES = {"SGD": _sgd}


def traced_step(tracer, opt, closure=None):
    """The traced form of ``opt.step(closure)``."""
    from .trace import TraceError
    name = type(opt).__name__
    rule = RULES.get(name)
    if rule is None:
        raise TraceError(f"trace: {name}.step() updates its state with in-place array code that cannot "
                         f"be traced; traced optimisers: {', '.join(RULES)}")
    loss = None
    if closure is not None:
        from ..autograd import enable_grad
        with enable_grad():
            loss = closure()
    with no_grad():
        rule(tracer, opt)
    return loss
