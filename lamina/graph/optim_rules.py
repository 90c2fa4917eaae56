"""Optimiser updates in Tensor-op form, for tracing a training step.

The optimisers of ``lamina.optim`` update flat buffers with in-place array code, which a trace
cannot see. While tracing, an optimiser's ``step`` runs the rule written here instead: the same
arithmetic, in the same order (so float results match the eager step), as Tensor ops. The new
parameter values become graph updates ``("data", parameter)``; the real parameters are not
touched. State (SGD's momentum buffers) is read and written in place through the tensors
``opt.state`` hands out, which share memory with the optimiser's buffers; before the first step
there is no state and ``NeedsState`` is raised. Adam's step count is the 0-d ``state[p]["step"]``
tensor, updated in place. Rules exist for SGD (momentum, dampening, Nesterov, weight decay,
maximize) and Adam/AdamW (amsgrad, maximize, L2 or decoupled decay); other optimisers raise a
clear ``TraceError``.
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


def _adam(tracer, opt):
    from ..creation import tensor
    for group in opt.param_groups:
        lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        for p in group["params"]:
            if p.grad is None:
                continue
            pv = tracer.value_of(p)
            g = p.grad
            if group["maximize"]:
                g = -g
            param = p.detach()
            if wd != 0:
                if group["decoupled_weight_decay"]:
                    param = param * (1 - lr * wd)
                else:
                    g = g + param * wd
            m_t, mv = _state_value(tracer, opt, p, pv, "exp_avg")
            v_t, vv = _state_value(tracer, opt, p, pv, "exp_avg_sq")
            s_t, sv = _state_value(tracer, opt, p, pv, "step")
            m = m_t + (g - m_t) * (1 - beta1)
            v = v_t * beta2 + (g * g) * (1 - beta2)
            step = s_t + 1
            # the bias corrections in float64 from the step count, as the eager rule's Python floats
            s64 = step.to(tensor(0.0, dtype="float64").dtype)
            step_size = (lr / (1 - tensor(beta1, dtype="float64") ** s64)).to(p.dtype)
            bc2 = ((1 - tensor(beta2, dtype="float64") ** s64) ** 0.5).to(p.dtype)
            denom = v
            if group["amsgrad"]:
                x_t, xv = _state_value(tracer, opt, p, pv, "max_exp_avg_sq")
                denom = x_t.maximum(v)
                tracer.graph.updates.append((("data", xv), tracer.value_of(denom)))
            new = param + (m / (denom.sqrt() / bc2 + eps)) * -step_size
            for target, value in ((mv, m), (vv, v), (sv, step), (pv, new)):
                tracer.graph.updates.append((("data", target), tracer.value_of(value)))


RULES = {"SGD": _sgd, "Adam": _adam, "AdamW": _adam}


def traced_step(tracer, opt, closure=None):
    """The traced form of ``opt.step(closure)``."""
    name = type(opt).__name__
    rule = RULES.get(name)
    if rule is None:
        raise TraceError(f"trace: {name}.step() updates its state with in-place array code that cannot "
                         f"be traced; traced optimisers: {', '.join(RULES)}")
    for group in opt.param_groups:
        for p in group["params"]:
            if p.grad is not None:
                tracer.check_unchanged(p.grad, f"the gradient {type(opt).__name__}.step() reads")
    loss = None
    if closure is not None:
        from ..autograd import enable_grad
        with enable_grad():
            loss = closure()
    with no_grad():
        rule(tracer, opt)
    return loss
