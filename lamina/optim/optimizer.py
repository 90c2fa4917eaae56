"""``Optimizer``: the base of every optimiser.

It owns what all optimisers share: param groups (defaults merged in, ``add_param_group``), the
step loop over flat buckets (see ``lamina.optim.flat``), ``zero_grad``, and ``state_dict`` /
``load_state_dict`` in PyTorch's layout. A subclass supplies its defaults, a check of a group's
hyper-parameters, the state kinds a group needs, and ``_update``: its rule written once on raw
1-D arrays with in-place ufuncs. The base runs ``_update`` once per chunk of consecutive
parameters (see ``flat``), so a group of many parameters costs a fixed handful of array
operations per chunk rather than per parameter, and no autograd graph is ever built.
"""
from __future__ import annotations

import numpy as np

from .. import backend
from ..autograd import enable_grad
from ..creation import from_dlpack, tensor
from ..tensor import Tensor
from .flat import LayoutChanged, build_buckets


class Optimizer:
    """Base class of optimisers.

    ``params`` is an iterable of Parameters, or of dicts (param groups) holding ``"params"`` and
    hyper-parameters that override the optimiser's defaults for that group.

    Memory: the optimiser moves each group's parameters into one flat buffer per device and dtype
    and rebinds every ``p.data`` to a view of it, so one update covers many parameters (see
    ``lamina.optim.flat``); besides its state it keeps two chunk-sized work buffers. In-place
    writes to ``p.data`` are seen. Rebinding ``p.data`` to another array is noticed at the next
    step and the new values are copied in (a new shape, dtype or device only before any state
    exists). Tensors that shared a parameter's array before the optimiser was built stop sharing
    it. A parameter may appear only once in an optimiser.
    """

    # Every state kind the optimiser keeps, in PyTorch's order (``state_dict`` lists them so).
    _state_keys: tuple = ()
    # Whether per-parameter state carries "step" (PyTorch's SGD keeps none).
    _exports_step = True
    # Whether every parameter has state from construction on (PyTorch's Adagrad).
    _eager_state = False

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        self._buckets = []  # per group: its FlatBuckets
        if isinstance(params, (Tensor, dict)):
            raise TypeError(f"{self._name}: params must be an iterable of Parameters or of param "
                            f"group dicts, got a single {type(params).__name__}")
        if isinstance(params, (set, frozenset)):
            raise TypeError(f"{self._name}: parameters must be in an ordered collection, not a set "
                            "(a set's order changes between runs)")
        groups = list(params)
        if not groups:
            raise ValueError(f"{self._name}: got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    @property
    def _name(self) -> str:
        return type(self).__name__

    # ------------------------------------------------------------ what subclasses define
    def _check_group(self, group) -> None:
        """Raise ``ValueError`` for a hyper-parameter out of range; may normalise the group."""

    def _require(self, ok, what, value, rule) -> None:
        """Raise a ``ValueError`` naming this optimiser and the value unless ``ok``."""
        if not ok:
            raise ValueError(f"{self._name}: invalid {what} {value!r}; expected {rule}")

    def _state_kinds(self, group) -> tuple:
        """The state kinds the next update of ``group`` needs."""
        return self._state_keys

    def _state_fill(self, group, kind) -> float:
        """The value a state kind starts from."""
        return 0.0

    def _keeps_state(self, group) -> bool:
        """Whether an update of ``group`` creates or advances per-parameter state."""
        return True

    def _update(self, group, xp, param, grad, state, tmp, step) -> None:
        """Update ``param`` in place. All arrays are 1-D slices of one bucket's flat buffers:
        ``grad`` and ``tmp`` may be overwritten, ``state`` maps kind to slice, ``step`` is the
        step number of every parameter in the slice counting this one (1 on the first)."""
        raise NotImplementedError

    # ------------------------------------------------------------ param groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyper-parameters (missing ones from defaults)."""
        name = self._name
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: a param group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}: a param group needs a 'params' entry, got keys "
                             f"{sorted(param_group)}")
        params = param_group["params"]
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{name}: parameters must be in an ordered collection, not a set "
                            "(a set's order changes between runs)")
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, but parameter {i} of the group "
                                f"is a {type(p).__name__}")
            if p._node is not None:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (parameter {i} of the "
                                 f"group, shape {p.shape}, made by {type(p._node).__name__})")
        group = dict(param_group)
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        ids = {id(p) for p in params}
        if len(ids) != len(params):
            raise ValueError(f"{name}: a parameter appears twice in one param group")
        if any(id(p) in ids for g in self.param_groups for p in g["params"]):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        self._buckets.append(build_buckets(params))
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Reset every parameter's gradient: to ``None`` (default), or zero it in place."""
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                if set_to_none:
                    p.grad = None
                else:
                    p.grad.detach_()
                    p.grad.zero_()

    # ------------------------------------------------------------ the update
    def step(self, closure=None):
        """Update every parameter that has a gradient; return ``closure()``'s loss if given.

        ``closure`` re-evaluates the model and returns the loss (run with grad mode on).
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        for gi, group in enumerate(self.param_groups):
            kinds = self._state_kinds(group)
            keeps = self._keeps_state(group)
            for bucket, runs in self._runs(gi):
                if not runs:
                    continue
                xp, steps = bucket.xp, bucket.steps
                states = {k: bucket.state_array(k, self._state_fill(group, k)) for k in kinds}
                for a, b, grads in runs:
                    step = steps[a] + 1
                    for s, pieces in bucket.chunks(a, b, grads):
                        grad, tmp = bucket.work(s.stop - s.start)
                        xp.concatenate(pieces, out=grad)
                        self._update(group, xp, bucket.flat[s], grad,
                                     {k: v[s] for k, v in states.items()}, tmp, step)
                    if keeps:
                        steps[a:b] = [step] * (b - a)
                    for p in bucket.params[a:b]:
                        p._version[0] += 1
        return loss

    def _runs(self, gi):
        """``(bucket, runs)`` for every bucket of group ``gi``, rebuilding a stale layout."""
        buckets = self._buckets[gi]
        try:
            return [(b, b.runs(self._name)) for b in buckets]
        except LayoutChanged as e:
            if any(any(b.steps) for b in buckets):
                raise ValueError(f"{e} after its optimizer state was created; build the optimizer "
                                 "after moving, casting or reshaping the model") from None
        buckets = self._buckets[gi] = build_buckets(self.param_groups[gi]["params"])
        return [(b, b.runs(self._name)) for b in buckets]

    # ------------------------------------------------------------ state
    @property
    def state(self) -> dict:
        """Per-parameter state keyed by parameter, like PyTorch's ``optimizer.state``.

        A fresh dict on every access; its tensors share memory with the optimiser's buffers.
        """
        scalar_dtype = backend.float64 if backend.get_default_dtype() == backend.float64 \
            else backend.float32
        out = {}
        for group, buckets in zip(self.param_groups, self._buckets):
            for bucket in buckets:
                if self._eager_state:
                    for kind in self._state_kinds(group):
                        bucket.state_array(kind, self._state_fill(group, kind))
                for j, p in enumerate(bucket.params):
                    if not bucket.steps[j] and not self._eager_state:
                        continue
                    entry = {}
                    if self._exports_step:
                        entry["step"] = tensor(float(bucket.steps[j]), dtype=scalar_dtype)
                    for kind in self._state_keys:
                        if kind in bucket.state:
                            view = bucket.state[kind][bucket.slice(j)].reshape(bucket.shapes[j])
                            entry[kind] = from_dlpack(view)
                    out[p] = entry
        return out

    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered in group order, as PyTorch does. Like PyTorch, the state tensors
        share memory with the optimiser: copy them to keep a snapshot while training goes on.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: entry for p, entry in self.state.items()}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict) -> None:
        """Load a ``state_dict`` (from this class, or PyTorch's same optimiser) made for the same
        parameter groups; everything is checked before anything changes."""
        name = f"{self._name}.load_state_dict"
        if not isinstance(state_dict, dict) or not {"state", "param_groups"} <= state_dict.keys():
            raise ValueError(f"{name}: expected a dict with 'state' and 'param_groups'")
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}: the loaded state has {len(saved_groups)} parameter groups, "
                             f"this optimizer has {len(self.param_groups)}")
        where = {}  # saved parameter index -> (group, position in group)
        for gi, (group, saved) in enumerate(zip(self.param_groups, saved_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}: parameter group {gi} has {len(saved['params'])} "
                                 f"parameters in the loaded state, {len(group['params'])} here")
            for pos, k in enumerate(saved["params"]):
                where[k] = (gi, pos)
        new_groups = []
        for group, saved in zip(self.param_groups, saved_groups):
            new = {k: v for k, v in saved.items() if k != "params"}
            new["params"] = group["params"]
            for key, value in self.defaults.items():
                new.setdefault(key, value)
            self._check_group(new)
            new_groups.append(new)
        entries = [self._parse_entry(name, k, entry, where)
                   for k, entry in state_dict["state"].items()]

        self.param_groups = new_groups
        for gi, group in enumerate(new_groups):
            try:
                for bucket in self._buckets[gi]:
                    bucket.sync(self._name)
            except LayoutChanged:
                self._buckets[gi] = build_buckets(group["params"])
            for bucket in self._buckets[gi]:
                bucket.state, bucket.steps = {}, [0] * len(bucket)
        slots = [{pos: (b, j) for b in buckets for j, pos in enumerate(b.indices)}
                 for buckets in self._buckets]
        for gi, pos, step, arrays in entries:
            group = new_groups[gi]
            bucket, j = slots[gi][pos]
            bucket.steps[j] = step
            for kind, value in arrays.items():
                flat = bucket.state_array(kind, self._state_fill(group, kind))
                flat[bucket.slice(j)] = backend.to_device(value, bucket.device).reshape(-1)

    def _parse_entry(self, name, k, entry, where):
        """Check one saved parameter's state: ``(group, position, step, {kind: array})``."""
        if k not in where:
            raise ValueError(f"{name}: the loaded state has an entry for parameter {k}, which no "
                             "parameter group lists")
        gi, pos = where[k]
        shape = self.param_groups[gi]["params"][pos].shape
        arrays, step = {}, None
        for key, value in entry.items():
            if key == "step":
                step = float(value)
            elif key in self._state_keys and value is None:
                continue  # PyTorch's way of saying "not created yet"
            elif key in self._state_keys:
                a = _as_array(value)
                if a.shape != shape:
                    raise ValueError(f"{name}: state '{key}' of parameter {k} has shape {a.shape}, "
                                     f"the parameter has shape {shape}")
                arrays[key] = a
            else:
                raise ValueError(f"{name}: unknown state '{key}' for parameter {k}; {self._name} "
                                 f"keeps {', '.join(('step',) * self._exports_step + self._state_keys)}")
        if not self._exports_step:
            step = 1 if arrays else 0
        elif step is None:
            if arrays:
                raise ValueError(f"{name}: the state of parameter {k} has no 'step'")
            step = 0
        return gi, pos, step, arrays

    def __repr__(self):
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines + [")"])


def _as_array(value):
    """The array behind a saved state value: a lamina Tensor, a NumPy/CuPy array, or anything
    ``numpy.asarray`` takes (a CPU ``torch.Tensor``, a list)."""
    if isinstance(value, Tensor):
        return value.data
    if type(value) is np.ndarray or type(value).__module__.startswith("cupy"):
        return value
    return np.asarray(value)
