"""Reverse-mode automatic differentiation over the graph that ops record.

Grad mode and anomaly mode (``no_grad``, ``enable_grad``, ``detect_anomaly``, ...) live in
``grad_mode`` and are re-exported here. ``backward`` and ``grad`` walk the recorded nodes
(``Op`` instances) from the outputs back to the leaves in reverse topological order,
accumulating gradients and freeing each node's saved values as soon as it has run.
"""
from __future__ import annotations

from . import backend
from .grad_mode import (  # noqa: F401  (the public names of grad mode live here too)
    _mode, creation_trace, detect_anomaly, enable_grad, is_grad_enabled, no_grad, set_detect_anomaly,
    set_grad_enabled,
)
from .tensor import Tensor, _wrap


# ---------------------------------------------------------------- the engine

def backward(tensors, grad_tensors=None, retain_graph=None, create_graph=False):
    """Accumulate d(tensors)/d(leaf) into ``leaf.grad`` for every leaf that requires grad."""
    tensors, grad_tensors = _as_lists(tensors, grad_tensors)
    if retain_graph is None:
        retain_graph = create_graph
    _run(tensors, grad_tensors, retain_graph, create_graph, targets=None)


def grad(outputs, inputs, grad_outputs=None, retain_graph=None, create_graph=False, allow_unused=False):
    """Return d(outputs)/d(inputs) as a tuple, without touching any ``.grad``.

    With ``create_graph=True`` the returned gradients are themselves differentiable, which gives
    higher-order derivatives.
    """
    outputs, grad_outputs = _as_lists(outputs, grad_outputs)
    single = not isinstance(inputs, (list, tuple))
    inputs = [inputs] if single else list(inputs)
    for i, t in enumerate(inputs):
        if not t.requires_grad:
            raise RuntimeError(f"grad: input {i} (shape {t.shape}) does not require grad")
    if retain_graph is None:
        retain_graph = create_graph
    found = _run(outputs, grad_outputs, retain_graph, create_graph, targets=inputs)
    result = []
    for i, t in enumerate(inputs):
        g = found[i]
        if g is None and not allow_unused:
            raise RuntimeError(f"grad: input {i} (shape {t.shape}) is not reachable from the outputs; "
                               "pass allow_unused=True to get None for it")
        result.append(g)
    return tuple(result)


def _as_lists(tensors, grads):
    if isinstance(tensors, Tensor):
        tensors = [tensors]
    tensors = list(tensors)
    if grads is None:
        grads = [None] * len(tensors)
    elif isinstance(grads, Tensor):
        grads = [grads]
    grads = list(grads)
    if len(grads) != len(tensors):
        raise ValueError(f"backward: got {len(tensors)} tensors but {len(grads)} gradients")
    return tensors, grads


def _seed(t, g, i):
    if not t.requires_grad:
        raise RuntimeError(f"backward: element {i} of tensors does not require grad and has no grad_fn")
    if g is None:
        if t.array.size != 1:
            raise RuntimeError(f"backward: grad can be implicitly created only for scalar outputs, "
                               f"got shape {t.shape}; pass a gradient of that shape")
        a = t.array
        return _wrap(backend.xp_of(a).ones(a.shape, dtype=a.dtype))
    if not isinstance(g, Tensor):
        g = Tensor(g, dtype=t.dtype, device=t.device)
    if g.shape != t.shape:
        raise RuntimeError(f"backward: gradient of shape {g.shape} does not match output shape {t.shape}")
    return g


def queue_callback(fn) -> None:
    """Call ``fn()`` once the running ``backward``/``grad`` has finished (from a hook, e.g. to
    wait for gradient communication that hooks started). Callbacks run in the order queued; a
    callback may queue another."""
    if _mode.callbacks is None:
        raise RuntimeError("queue_callback: no backward() is running")
    _mode.callbacks.append(fn)


def _run(tensors, grad_tensors, retain_graph, create_graph, targets):
    """Run backward from ``tensors``, then the callbacks queued while it ran.

    With ``targets`` (a list of tensors) return their gradients instead of accumulating into
    leaves; only the part of the graph that leads to a target is evaluated.
    """
    seeds = [_seed(t, g, i) for i, (t, g) in enumerate(zip(tensors, grad_tensors))]
    prev, outer = _mode.enabled, _mode.callbacks
    _mode.enabled = create_graph
    _mode.callbacks = callbacks = []
    try:
        found = _execute(tensors, seeds, retain_graph, create_graph, targets)
        _mode.enabled = prev
        i = 0
        while i < len(callbacks):
            callbacks[i]()
            i += 1
        return found
    finally:
        _mode.enabled = prev
        _mode.callbacks = outer


def _execute(tensors, seeds, retain_graph, create_graph, targets):
    grad_mode = targets is not None
    # gradients of targets: leaves by identity, non-leaves by (node, output index)
    leaf_targets, node_targets = {}, {}
    for k, t in enumerate(targets or ()):
        if t._node is None:
            leaf_targets.setdefault(id(t), []).append(k)
        else:
            node_targets.setdefault((t._node, t._out_idx), []).append(k)
    found = [None] * len(targets or ())
    # ids of gradient arrays a .grad must not take without a copy: the seeds (the caller may
    # hold them) and any array already handed to another .grad
    owned = {id(g.array) for g in seeds}
    pending = {}  # node -> list of accumulated output gradients
    roots = []
    for t, g in zip(tensors, seeds):
        node = t._node
        if node is None:
            _deliver(t, g, grad_mode, leaf_targets, found, owned, create_graph)
            continue
        slot = pending.get(node)
        if slot is None:
            slot = pending[node] = [None] * node.n_outputs
            roots.append(node)
        idx = t._out_idx
        slot[idx] = g if slot[idx] is None else slot[idx] + g

    deps = _dependencies(roots)
    needed = _needed_nodes(_topological_order(roots), leaf_targets, node_targets) if grad_mode else None

    def wanted(t, n, j):
        """Whether ``grad`` needs the gradient of input ``t`` made by output ``j`` of node ``n``
        (only consulted in grad mode)."""
        return id(t) in leaf_targets if n is None else (n in needed or (n, j) in node_targets)

    ready = [n for n in roots if n not in deps]
    anomaly = _mode.anomaly
    while ready:
        node = ready.pop()
        grads = pending.pop(node, None)
        inputs = node.inputs
        if inputs is None:
            raise RuntimeError(
                f"{node.name}: trying to backward through the graph a second time (its saved values "
                "were freed by the first backward); pass retain_graph=True to the first backward")
        if grads is not None:
            if node_targets:
                for i, g in enumerate(grads):
                    for k in node_targets.get((node, i), ()):
                        found[k] = g
            if node._retained:
                _retain(node, grads)
        if grads is None or (grad_mode and node not in needed):
            in_grads = None
        else:
            in_grads = _call_backward(node, grads, wanted if grad_mode else None, anomaly, create_graph)
        in_nodes, in_idx = node.in_nodes, node.in_idx
        if not retain_graph:
            node.release()
        for i, t in enumerate(inputs):
            n = in_nodes[i]
            g = in_grads[i] if in_grads is not None else None
            if n is None:
                if g is not None:
                    _deliver(t, g, grad_mode, leaf_targets, found, owned, create_graph)
                continue
            if g is not None:
                slot = pending.get(n)
                if slot is None:
                    slot = pending[n] = [None] * n.n_outputs
                j = in_idx[i]
                slot[j] = g if slot[j] is None else slot[j] + g
            d = deps[n] - 1
            if d:
                deps[n] = d
            else:
                del deps[n]
                ready.append(n)
    return found


def _dependencies(roots):
    """For every node below ``roots``: how many edges from its consumers point at it."""
    deps = {}
    stack = list(roots)
    seen = set(roots)
    while stack:
        for n in stack.pop().in_nodes or ():
            if n is not None:
                if n in deps:
                    deps[n] += 1
                else:
                    deps[n] = 1
                if n not in seen:
                    seen.add(n)
                    stack.append(n)
    return deps


def _topological_order(roots):
    """Every node reachable from ``roots``, each after all of its consumers."""
    post, seen = [], set()
    for root in roots:
        if root in seen:
            continue
        seen.add(root)
        stack = [(root, iter(root.in_nodes or ()))]
        while stack:
            node, it = stack[-1]
            for n in it:
                if n is not None and n not in seen:
                    seen.add(n)
                    stack.append((n, iter(n.in_nodes or ())))
                    break
            else:
                stack.pop()
                post.append(node)
    post.reverse()
    return post


def _needed_nodes(order, leaf_targets, node_targets):
    """Nodes from which some target is reachable: the only ones ``grad`` has to run."""
    needed = set()
    for node in reversed(order):  # producers before consumers
        for t, n, j in zip(node.inputs or (), node.in_nodes or (), node.in_idx or ()):
            if (id(t) in leaf_targets) if n is None else (n in needed or (n, j) in node_targets):
                needed.add(node)
                break
    return needed


def _call_backward(node, grads, wanted, anomaly, create_graph):
    inputs = node.inputs
    if node._versions is not None:
        node.check_versions()
    full_mask = node.needs_input_grad
    if wanted is not None:
        node.needs_input_grad = tuple([m and wanted(t, n, j) for m, t, n, j
                                       in zip(full_mask, inputs, node.in_nodes, node.in_idx)])
    mask = node.needs_input_grad
    if anomaly:
        # the ops inside a backward are checked as one: the gradients it returns are checked below
        _mode.anomaly = False
    try:
        fast = None if create_graph else node.backward_arrays
        if fast is None:
            res = node.backward(grads[0] if node.n_outputs == 1 else tuple(grads), *inputs)
        else:
            g = grads[0].array if node.n_outputs == 1 else tuple([None if x is None else x.array for x in grads])
            res = fast(g, *[t.array for t in inputs])
            if res is NotImplemented:  # the fast path does not take these arrays (dtype, layout, device)
                res = node.backward(grads[0] if node.n_outputs == 1 else tuple(grads), *inputs)
            elif res.__class__ is tuple or res.__class__ is list:
                res = tuple([None if a is None else _wrap(a) for a in res])
            elif res is not None:
                res = _wrap(res)
    except Exception as e:
        if anomaly and node._trace:
            e.add_note(f"the op {node.name} that failed in backward was created at:\n" + "".join(node._trace))
        raise
    finally:
        node.needs_input_grad = full_mask
        _mode.anomaly = anomaly
    if res.__class__ is not tuple:
        res = tuple(res) if isinstance(res, list) else (res,)
    if len(res) != len(inputs):
        raise RuntimeError(f"{node.name}.backward returned {len(res)} gradients for {len(inputs)} inputs")
    out = list(res)
    for i, g in enumerate(res):
        if g is None:
            continue
        t = inputs[i]
        if not mask[i]:
            out[i] = None
            continue
        gd, td = g.array, t.array
        if gd.shape != td.shape:
            raise RuntimeError(f"{node.name}.backward: gradient for input {i} has shape {gd.shape}, "
                               f"expected {td.shape}")
        if gd.dtype != td.dtype:
            out[i] = g = g.to(td.dtype)
        if anomaly:
            _check_finite_grad(node, i, g)
    return out


def _check_finite_grad(node, i, g):
    xp = g.device.xp
    if g.dtype.kind == "f" and not bool(xp.isfinite(g.array).all()):
        where = ("\nthe op was created at:\n" + "".join(node._trace)) if node._trace else ""
        raise RuntimeError(f"anomaly: backward of {node.name} returned NaN/Inf in the gradient "
                           f"of input {i} (shape {g.shape}){where}")


def _deliver(t, g, grad_mode, leaf_targets, found, owned, create_graph):
    """Hand a leaf its gradient: into ``found`` for ``grad()``, else accumulated into ``.grad``."""
    if grad_mode:
        for k in leaf_targets.get(id(t), ()):
            found[k] = g if found[k] is None else found[k] + g
        return
    if not t.requires_grad:
        return
    if t._hooks:
        for hook in t._hooks:
            r = hook(g)
            if r is not None:
                g = r
    if t.grad is None:
        # .grad must own its memory: optimisers update it in place, and the same gradient
        # array may have been handed to another input too (x + x, broadcast views, user seeds).
        if not create_graph:
            a = g.array
            if a.base is not None or id(a) in owned or not a.flags.writeable:
                g = g.clone()
            owned.add(id(g.array))
            if g._node is not None:
                g = g.detach()
        t.grad = g
    else:
        t.grad = t.grad + g
    if t._post_hooks:
        for hook in t._post_hooks:
            hook(t)


def _retain(node, grads):
    for i, ref in node._retained.items():
        t = ref()
        g = grads[i] if grads is not None else None
        if t is not None and g is not None:
            t.grad = g if t.grad is None else t.grad + g


# ---------------------------------------------------------------- showing the recorded graph

_NODE_FIELDS = {"inputs", "in_nodes", "in_idx", "needs_input_grad", "saved", "outputs", "n_outputs", "generator"}


def format_graph(tensor) -> str:
    """The graph recorded behind ``tensor`` as text, one line per node, producers first.

    Each line names the op, its attributes, its inputs and the shape and dtype of what it made:
        %2 = matmul(%0, %1) -> float32[64, 10]
    """
    if tensor._node is None:
        return f"%0 = leaf {_meta(tensor.shape, tensor.dtype)}" + (" requires_grad" if tensor.requires_grad else "")
    meta = {(tensor._node, tensor._out_idx): (tensor.shape, tensor.dtype)}
    order = _topological_order([tensor._node])
    for node in order:
        if node.inputs is None:
            raise RuntimeError(f"format_graph: the graph was freed by backward at {node.name}; "
                               "call it before backward or use retain_graph=True")
        for t, n, j in zip(node.inputs, node.in_nodes, node.in_idx):
            if n is not None:
                meta.setdefault((n, j), (t.shape, t.dtype))
    names, lines = {}, []

    def name_of_input(t, n, j):
        key = id(t) if n is None else (n, j)
        if key not in names:
            names[key] = f"%{len(names)}"
            kind = "param" if t.requires_grad else "input"
            lines.append(f"{names[key]} = {kind} {_meta(t.shape, t.dtype)}")
        return names[key]

    for node in reversed(order):
        args = ", ".join(name_of_input(*e) for e in zip(node.inputs, node.in_nodes, node.in_idx))
        attrs = ", ".join(f"{k}={v!r}" for k, v in vars(node).items()
                          if k not in _NODE_FIELDS and not k.startswith("_")
                          and isinstance(v, (int, float, str, bool, tuple, type(None))))
        outs = []
        for i in range(node.n_outputs):
            key = (node, i)
            names[key] = f"%{len(names)}"
            shape, dtype = meta.get(key, ("?", "?"))
            outs.append((names[key], _meta(shape, dtype)))
        lhs = ", ".join(n for n, _ in outs)
        rhs = ", ".join(m for _, m in outs)
        lines.append(f"{lhs} = {node.name}({args}{', ' + attrs if attrs else ''}) -> {rhs}")
    return "\n".join(lines)


def print_graph(tensor) -> None:
    """Print ``format_graph(tensor)``."""
    print(format_graph(tensor))


def _meta(shape, dtype):
    if shape == "?":
        return "?"
    return f"{dtype}[{', '.join(str(s) for s in shape)}]"



