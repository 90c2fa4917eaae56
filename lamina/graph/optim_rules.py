"""Optimiser updates in Tensor-op form, for tracing a training step.

The optimisers of ``lamina.optim`` update flat buffers with in-place array code, which a trace
cannot see. While tracing, an optimiser's ``step`` runs the rule written here instead: the same
arithmetic, in the same order (so float results match the eager step), as Tensor ops. The new
parameter values become graph updates ``("data", parameter)``; the real parameters are not
touched. State (SGD's momentum buffers) is read and written in place through the tensors
``opt.state`` hands out, which share memory with the optimiser's buffers; before the first step
there is no state and ``NeedsState`` is raised. Rules exist for SGD (momentum, dampening,
Nesterov, weight decay, maximize); other optimisers raise a clear ``TraceError``.
"""
from __future__ import annotations

from ..autograd import no_grad
from .trace import TraceError


class NeedsState(TraceError):
    """The optimiser's state does not exist yet (before its first step): ``compile`` runs that
    step eagerly and traces the next one."""


def _state_value(tracer, opt, p, pv, key):
    """The graph value of optimiser state ``key`` of ``p``, read and written in place (the
    tensors ``opt.state`` hands out share memory with the optimiser's own buffers)."""
    t = opt.state.get(p, {}).get(key)
    if t is None:
        raise NeedsState(f"trace: {type(opt).__name__} has no {key} for {pv.name} before its first step")
    tracer.state[id(t)] = (f"{pv.name}.{key}", "buffer")
    return t, tracer.value_of(t)


def _sgd(tracer, opt):
    for group in opt.param_groups:
        lr, wd = group["lr"], group.get("weight_decay", 0)
        momentum, dampening = group.get("momentum", 0), group.get("dampening", 0)
        for p in group["params"]:
            if p.grad is None:
                continue
            pv = tracer.value_of(p)  # before detach(): the detached tensor is found through p's array
            g = p.grad
            if group.get("maximize"):
                g = -g
            if wd != 0:
                g = g + p.detach() * wd
            if momentum != 0:
                buf, bv = _state_value(tracer, opt, p, pv, "momentum_buffer")
                buf = buf * momentum + g * (1 - dampening)
                tracer.graph.updates.append((("data", bv), tracer.value_of(buf)))
                g = g + buf * momentum if group.get("nesterov") else buf
            new = p.detach() + g * (-lr)
            tracer.graph.updates.append((("data", pv), tracer.value_of(new)))


RULES = {"SGD": _sgd}


def traced_step(tracer, opt, closure=None):
    """The traced form of ``opt.step(closure)``."""
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
