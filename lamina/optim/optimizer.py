"""``Optimizer``: the base of every optimiser, built-in or written by a user.

It owns what all optimisers share: param groups (defaults merged in, ``add_param_group``),
``zero_grad``, ``optimizer.state`` (a ``defaultdict(dict)`` keyed by parameter, as in PyTorch),
and ``state_dict`` / ``load_state_dict`` in PyTorch's layout.

Two ways to be an optimiser:

- Built-in (flat): a subclass supplies its defaults, a check of a group's hyper-parameters, the
  state kinds a group needs, and ``_update``: its rule written once on raw 1-D arrays with
  in-place ufuncs. The base keeps every group in flat buffers (see ``lamina.optim.flat``) and
  runs ``_update`` once per chunk of consecutive parameters, so a group of many parameters costs
  a fixed handful of array operations per chunk rather than per parameter, and no autograd graph
  is ever built. The state lives in those buffers; ``optimizer.state`` shows it as tensors that
  share their memory, and values a user stores there under the optimiser's own keys are copied
  in at the next step.
- Written the PyTorch way (generic): a subclass that defines ``step`` but no ``_update`` gets
  plain per-parameter handling: parameters stay where they are, ``self.state[p]`` is an ordinary
  dict the subclass fills with whatever it likes, and ``state_dict`` saves it as it is.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np

from .. import backend
from ..autograd import enable_grad
from ..creation import tensor
from ..tensor import Tensor, _wrap
from .flat import LayoutChanged, build_buckets


class Optimizer:
    """Base class of optimisers.

    ``params`` is an iterable of Parameters, or of dicts (param groups) holding ``"params"`` and
    hyper-parameters that override the optimiser's defaults for that group. Editing
    ``param_groups`` (``group["lr"] = ...``, new keys, new parameters in ``group["params"]``)
    takes effect at the next step.

    Memory (built-in optimisers): the optimiser moves each group's parameters into one flat buffer
    per device and dtype and rebinds every parameter's array to a view of it, so one update covers many
    parameters (see ``lamina.optim.flat``); besides its state it keeps two chunk-sized work
    buffers. In-place writes to ``p.data`` are seen. Rebinding ``p.data`` to another tensor is
    noticed at the next step and the new values are copied in (a new shape, dtype or device only
    before any state exists). Tensors that shared a parameter's array before the optimiser was
    built stop sharing it. A parameter may appear only once in an optimiser. A subclass that
    defines its own ``step`` (and no ``_update``) leaves its parameters' memory alone.
    """

    # Every state kind the optimiser keeps, in PyTorch's order (``state_dict`` lists them so).
    _state_keys: tuple = ()
    # Those of ``_state_keys`` that are one number per parameter rather than one per element.
    _scalar_keys: tuple = ()
    # Whether per-parameter state carries "step" (PyTorch's SGD keeps none).
    _exports_step = True
    # Whether every parameter has state from construction on (PyTorch's Adagrad).
    _eager_state = False
    # Whether a subclass with its own ``step`` still wants its parameters in flat buffers (LBFGS).
    _flat_params = False

    def __init__(self, params, defaults):
        self.defaults = dict(defaults)
        self.param_groups = []
        cls = type(self)
        self._flat_state = cls._update is not Optimizer._update
        self._flat = self._flat_state or cls._flat_params
        self._buckets = []  # per group: its FlatBuckets (flat optimisers only)
        self._state = defaultdict(dict)
        # What ``state`` last showed of the flat state: id(p) -> (p, {key: object}, {key: number}),
        # so the next step can tell which values a user replaced or removed.
        self._exported = {}
        self._epoch = 0  # bumped whenever the flat state changes
        self._exported_epoch = -1
        self._handed_out = False  # whether ``state`` was ever given to the user
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

    def _check_adam_family(self, group) -> None:
        """The checks every Adam-like optimiser makes: lr, eps and weight_decay >= 0, betas in [0, 1)."""
        beta1, beta2 = group["betas"]
        self._require(group["lr"] >= 0, "learning rate", group["lr"], ">= 0")
        self._require(group["eps"] >= 0, "epsilon", group["eps"], ">= 0")
        self._require(0 <= beta1 < 1, "beta parameter at index 0", beta1, "in [0, 1)")
        self._require(0 <= beta2 < 1, "beta parameter at index 1", beta2, "in [0, 1)")
        self._require(group["weight_decay"] >= 0, "weight_decay", group["weight_decay"], ">= 0")

    def _state_kinds(self, group) -> tuple:
        """The per-element state kinds the next update of ``group`` needs."""
        return self._array_keys()

    def _state_fill(self, group, kind) -> float:
        """The value a state kind starts from."""
        return 0.0

    def _keeps_state(self, group) -> bool:
        """Whether an update of ``group`` creates or advances per-parameter state."""
        return True

    def _advance_scalars(self, group, scalars, step) -> dict:
        """The per-parameter scalar state after this step, from its value before (one run)."""
        return scalars

    def _update(self, group, xp, param, grad, state, tmp, step) -> None:
        """Update ``param`` in place. All arrays are 1-D slices of one bucket's flat buffers:
        ``grad`` and ``tmp`` may be overwritten, ``state`` maps kind to slice (and each scalar
        kind to its value after this step), ``step`` is the step number of every parameter in the
        slice counting this one (1 on the first)."""
        raise NotImplementedError

    @classmethod
    def _array_keys(cls) -> tuple:
        return tuple(k for k in cls._state_keys if k not in cls._scalar_keys)

    # ------------------------------------------------------------ param groups
    def add_param_group(self, param_group: dict) -> None:
        """Add a group of parameters with its own hyper-parameters (missing ones from defaults).

        As in PyTorch, ``params`` may hold ``(name, parameter)`` pairs (``named_parameters()``);
        the names are kept as the group's ``"param_names"``.
        """
        name = self._name
        if not isinstance(param_group, dict):
            raise TypeError(f"{name}: a param group must be a dict, got {type(param_group).__name__}")
        if "params" not in param_group:
            raise ValueError(f"{name}: a param group needs a 'params' entry, got keys "
                             f"{sorted(param_group)}")
        params, names = param_group["params"], []
        if not isinstance(params, (Tensor, set, frozenset)):
            params = list(params)
            named = [isinstance(p, tuple) for p in params]
            if any(named):
                if not all(named) or any(len(p) != 2 for p in params):
                    raise ValueError(f"{name}: give every parameter of a group with a name, as "
                                     "(name, parameter) pairs, or none")
                names = [n for n, _ in params]
                params = [p for _, p in params]
        params = self._check_params(params, "the group")
        group = dict(param_group)
        group["params"] = params
        if names:
            group["param_names"] = names
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self._check_group(group)
        ids = {id(p) for p in params}
        if any(id(p) in ids for g in self.param_groups for p in g["params"]):
            raise ValueError(f"{name}: some parameters appear in more than one parameter group")
        if self._flat:
            self._buckets.append(build_buckets(params))
        self.param_groups.append(group)

    def _check_params(self, params, where) -> list:
        name = self._name
        if isinstance(params, Tensor):
            params = [params]
        elif isinstance(params, (set, frozenset)):
            raise TypeError(f"{name}: parameters must be in an ordered collection, not a set "
                            "(a set's order changes between runs)")
        else:
            params = list(params)
        for i, p in enumerate(params):
            if not isinstance(p, Tensor):
                raise TypeError(f"{name}: can only optimize Tensors, but parameter {i} of {where} "
                                f"is a {type(p).__name__}")
            if p._node is not None:
                raise ValueError(f"{name}: can't optimize a non-leaf Tensor (parameter {i} of "
                                 f"{where}, shape {p.shape}, made by {type(p._node).__name__})")
        if len({id(p) for p in params}) != len(params):
            raise ValueError(f"{name}: a parameter appears twice in one param group")
        return params

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
        if not self._flat_state:
            raise NotImplementedError(f"{self._name}: a subclass of Optimizer must define "
                                      "step(self, closure=None)")
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        self._import_state()
        scalar_keys = self._scalar_keys
        for gi, group in enumerate(self.param_groups):
            kinds = self._state_kinds(group)
            keeps = self._keeps_state(group)
            for bucket, runs in self._runs(gi):
                if not runs:
                    continue
                xp, steps = bucket.xp, bucket.steps
                states = {k: bucket.state_array(k, self._state_fill(group, k)) for k in kinds}
                lists = {k: bucket.scalar_list(k, self._state_fill(group, k)) for k in scalar_keys}
                for a, b, grads in (_split_runs(runs, lists) if lists else runs):
                    step = steps[a] + 1
                    scalars = self._advance_scalars(group, {k: v[a] for k, v in lists.items()},
                                                    step) if lists else None
                    for s, pieces in bucket.chunks(a, b, grads):
                        grad, tmp = bucket.work(s.stop - s.start)
                        xp.concatenate(pieces, out=grad)
                        slices = {k: v[s] for k, v in states.items()}
                        if scalars:
                            slices.update(scalars)
                        self._update(group, xp, bucket.flat[s], grad, slices, tmp, step)
                    if keeps:
                        steps[a:b] = [step] * (b - a)
                        if scalars:
                            for k, v in scalars.items():
                                lists[k][a:b] = [v] * (b - a)
                    for p in bucket.params[a:b]:
                        p._version[0] += 1
        self._epoch += 1
        return loss

    def _runs(self, gi):
        """``(bucket, runs)`` for every bucket of group ``gi``, rebuilding a stale layout."""
        buckets = self._buckets[gi]
        if buckets.stale(self.param_groups[gi]["params"]):
            buckets = self._relayout(gi)
        try:
            return [(b, b.runs(self._name)) for b in buckets]
        except LayoutChanged as e:
            if any(any(b.steps) for b in buckets):
                raise ValueError(f"{e} after its optimizer state was created; build the optimizer "
                                 "after moving, casting or reshaping the model") from None
        buckets = self._buckets[gi] = build_buckets(self.param_groups[gi]["params"])
        return [(b, b.runs(self._name)) for b in buckets]

    def _relayout(self, gi):
        """New buckets for group ``gi`` after its ``params`` list was edited; state carries over."""
        group = self.param_groups[gi]
        params = group["params"] = self._check_params(group["params"], f"param group {gi}")
        ids = {id(p) for p in params}
        if any(id(p) in ids for g in self.param_groups if g is not group for p in g["params"]):
            raise ValueError(f"{self._name}: some parameters appear in more than one parameter group")
        old = {id(p): (b, j) for b in self._buckets[gi] for j, p in enumerate(b.params)}
        new = build_buckets(params)
        for bucket in new:
            for j, p in enumerate(bucket.params):
                if id(p) not in old:
                    continue
                src, i = old[id(p)]
                if not src.steps[i]:
                    continue
                if src.shapes[i] != bucket.shapes[j] or src.dtype != bucket.dtype \
                        or src.device != bucket.device:
                    raise ValueError(
                        f"{self._name}: parameter {bucket.indices[j]} of group {gi} changed from "
                        f"{src.shapes[i]} {src.dtype} on {src.device} to {bucket.shapes[j]} "
                        f"{bucket.dtype} on {bucket.device} after its optimizer state was created")
                bucket.steps[j] = src.steps[i]
                for kind, flat in src.state.items():
                    bucket.state_array(kind, self._state_fill(group, kind))[bucket.slice(j)] = \
                        flat[src.slice(i)]
                for kind, values in src.scalars.items():
                    bucket.scalar_list(kind, self._state_fill(group, kind))[j] = values[i]
        self._buckets[gi] = new
        self._epoch += 1
        return new

    # ------------------------------------------------------------ state
    @property
    def state(self):
        """Per-parameter state keyed by parameter, like PyTorch's ``optimizer.state``: a
        ``defaultdict(dict)``, so ``state[p]`` of a parameter without state is ``{}`` (and stays).

        Built-in optimisers keep their state in flat buffers; here its tensors share memory with
        them (in-place edits are seen at once), while values stored under the optimiser's own keys
        replace its state at the next step (removing a key resets that parameter's state). Other
        keys are the user's own and are kept.
        """
        self._handed_out = True
        if self._flat_state and self._exported_epoch != self._epoch:
            self._export_state()
        return self._state

    @state.setter
    def state(self, value):
        if not isinstance(value, dict):
            raise TypeError(f"{self._name}.state: expected a dict keyed by parameter, got "
                            f"{type(value).__name__}")
        if not isinstance(value, defaultdict) or value.default_factory is not dict:
            value = defaultdict(dict, value)
        if self._flat_state and self._exported_epoch != self._epoch:
            self._export_state()  # record what exists now, so the next step sees what went away
        self._state = value
        self._handed_out = True

    def _scalar_dtype(self):
        """The dtype of "step" and scalar state, as PyTorch's (float64 only under a float64 default)."""
        return backend.float64 if backend.get_default_dtype() == backend.float64 else backend.float32

    def _slots(self):
        """``(group index, bucket, position in bucket)`` of every parameter, by ``id``."""
        return {id(p): (gi, b, j) for gi, buckets in enumerate(self._buckets)
                for b in buckets for j, p in enumerate(b.params)}

    def _flat_entries(self):
        """``(p, {key: value}, {key: number})`` for every parameter with flat state."""
        sdt = self._scalar_dtype()
        for group, buckets in zip(self.param_groups, self._buckets):
            for bucket in buckets:
                if self._eager_state:
                    for kind in self._state_kinds(group):
                        bucket.state_array(kind, self._state_fill(group, kind))
                for j, p in enumerate(bucket.params):
                    if not bucket.steps[j] and not self._eager_state:
                        continue
                    entry, numbers = {}, {}
                    if self._exports_step:
                        numbers["step"] = float(bucket.steps[j])
                        entry["step"] = tensor(numbers["step"], dtype=sdt)
                    for kind in self._state_keys:
                        if kind in bucket.scalars:
                            numbers[kind] = float(bucket.scalars[kind][j])
                            entry[kind] = tensor(numbers[kind], dtype=sdt)
                        elif kind in bucket.state:
                            entry[kind] = _wrap(bucket.state[kind][bucket.slice(j)]
                                                .reshape(bucket.shapes[j]))
                    yield p, entry, numbers

    def _export_state(self):
        """Write the flat state into ``self._state`` (user keys untouched)."""
        live = {}
        for p, entry, numbers in self._flat_entries():
            self._state[p].update(entry)
            live[id(p)] = (p, entry, numbers)
        for pid, (p, entry, _) in self._exported.items():
            if pid in live:
                continue
            held = self._state.get(p)
            for key, value in entry.items():
                if held is not None and held.get(key) is value:
                    del held[key]
        self._exported, self._exported_epoch = live, self._epoch

    def _import_state(self):
        """Copy into the flat buffers what the user stored in ``state`` under the optimiser's keys
        since it was last shown; all checked before anything changes."""
        if not (self._handed_out and self._flat_state):
            return
        name = f"{self._name}.state"
        known = set(self._state_keys) | ({"step"} if self._exports_step else set())
        slots = None
        changes = []  # (p, slot, reset, {key: value})
        seen = set()
        for p, held in list(self._state.items()):
            seen.add(id(p))
            _, shown, numbers = self._exported.get(id(p), (None, {}, {}))
            reset = any(k not in held for k in shown)
            changed = {k: v for k, v in held.items() if k in known and (
                reset or shown.get(k) is not v or (k in numbers and _number(v) != numbers[k]))}
            if not (reset or changed):
                continue
            slots = self._slots() if slots is None else slots
            slot = slots.get(id(p))
            if slot is None:
                raise ValueError(f"{name}: has state for a tensor of shape {tuple(p.shape)} that "
                                 "is in no parameter group")
            shape = slot[1].shapes[slot[2]]
            for key, value in changed.items():
                self._check_value(name, key, value, shape)
            changes.append((p, slot, reset, changed))
        for pid, (p, shown, _) in self._exported.items():
            if pid not in seen and shown:
                slots = self._slots() if slots is None else slots
                if pid in slots:
                    changes.append((p, slots[pid], True, {}))
        for p, (gi, bucket, j), reset, changed in changes:
            group = self.param_groups[gi]
            if reset:
                self._clear_slot(group, bucket, j)
            self._fill_slot(group, bucket, j, changed)
            record = self._exported.setdefault(id(p), (p, {}, {}))
            if reset:
                record[1].clear()
                record[2].clear()
            for key, value in changed.items():
                record[1][key] = value
                if key == "step" or key in self._scalar_keys:
                    record[2][key] = _number(value)
        if changes:
            self._epoch += 1

    def _check_value(self, name, key, value, shape):
        if key == "step" or key in self._scalar_keys:
            try:
                number = _number(value)
            except (TypeError, ValueError):
                raise ValueError(f"{name}: '{key}' must be a number or a one-element tensor, got "
                                 f"{type(value).__name__}") from None
            if key == "step" and not (number >= 0 and number == int(number)):
                raise ValueError(f"{name}: 'step' must be a whole number >= 0, got {number!r}")
            return
        if value is None:
            return
        a = _as_array(value)
        if a.shape != shape:
            raise ValueError(f"{name}: state '{key}' has shape {a.shape}, the parameter has shape "
                             f"{shape}")

    def _clear_slot(self, group, bucket, j):
        bucket.steps[j] = 0
        for kind, flat in bucket.state.items():
            flat[bucket.slice(j)] = self._state_fill(group, kind)
        for kind, values in bucket.scalars.items():
            values[j] = self._state_fill(group, kind)

    def _fill_slot(self, group, bucket, j, entry):
        """Write one parameter's checked state values (any subset of its keys) into the buckets."""
        has_arrays = False
        for key, value in entry.items():
            if key == "step":
                bucket.steps[j] = int(_number(value))
            elif key in self._scalar_keys:
                bucket.scalar_list(key, self._state_fill(group, key))[j] = _number(value)
            elif value is not None:
                flat = bucket.state_array(key, self._state_fill(group, key))
                flat[bucket.slice(j)] = backend.to_device(_as_array(value), bucket.device).reshape(-1)
                has_arrays = True
        if not self._exports_step and has_arrays:
            bucket.steps[j] = max(bucket.steps[j], 1)

    def state_dict(self) -> dict:
        """``{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}``.

        Parameters are numbered in group order, as PyTorch does. Like PyTorch, the state tensors
        share memory with the optimiser: copy them to keep a snapshot while training goes on.
        A built-in optimiser saves its own state keys only; a user-written one saves
        ``self.state`` as it is.
        """
        index = {}
        groups = []
        for group in self.param_groups:
            packed = {k: v for k, v in group.items() if k != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        if self._flat_state:
            self._import_state()
            state = {index[id(p)]: entry for p, entry, _ in self._flat_entries()}
        else:
            state = {index[id(p)]: entry for p, entry in self._state.items() if id(p) in index}
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
        if not self._flat_state:
            state = self._parse_generic_state(name, state_dict["state"], where)
            self.param_groups = new_groups
            self._state = state
            return
        entries = [self._parse_entry(name, k, entry, where)
                   for k, entry in state_dict["state"].items()]

        self.param_groups = new_groups
        for gi, group in enumerate(new_groups):
            try:
                if self._buckets[gi].stale(group["params"]):
                    raise LayoutChanged
                for bucket in self._buckets[gi]:
                    bucket.sync(self._name)
            except LayoutChanged:
                self._buckets[gi] = build_buckets(group["params"])
            for bucket in self._buckets[gi]:
                bucket.reset()
        slots = [{pos: (b, j) for b in buckets for j, pos in enumerate(b.indices)}
                 for buckets in self._buckets]
        for gi, pos, entry in entries:
            bucket, j = slots[gi][pos]
            self._fill_slot(new_groups[gi], bucket, j, entry)
        self._state = defaultdict(dict)
        self._exported = {}
        self._epoch += 1

    def _parse_entry(self, name, k, entry, where):
        """Check one saved parameter's state: ``(group, position, {key: value})``."""
        if k not in where:
            raise ValueError(f"{name}: the loaded state has an entry for parameter {k}, which no "
                             "parameter group lists")
        gi, pos = where[k]
        shape = tuple(self.param_groups[gi]["params"][pos].shape)
        keys = ("step",) * self._exports_step + self._state_keys
        for key, value in entry.items():
            if key not in keys:
                raise ValueError(f"{name}: unknown state '{key}' for parameter {k}; {self._name} "
                                 f"keeps {', '.join(keys)}")
            try:
                self._check_value(name, key, value, shape)
            except ValueError as e:
                raise ValueError(str(e).replace(f"state '{key}'", f"state '{key}' of parameter {k}"))
        arrays = [key for key, v in entry.items() if key in self._array_keys() and v is not None]
        if self._exports_step and arrays and "step" not in entry:
            raise ValueError(f"{name}: the state of parameter {k} has no 'step'")
        return gi, pos, dict(entry)

    def _parse_generic_state(self, name, saved, where):
        """PyTorch's rule for a user-written optimiser: every saved value is kept, tensors (and
        arrays, such as PyTorch's) become lamina tensors on their parameter's device, in its dtype
        when both are floating point, except "step"."""
        state = defaultdict(dict)
        for k, entry in saved.items():
            if k not in where:
                raise ValueError(f"{name}: the loaded state has an entry for parameter {k}, which "
                                 "no parameter group lists")
            if not isinstance(entry, dict):
                raise TypeError(f"{name}: the state of parameter {k} must be a dict, got "
                                 f"{type(entry).__name__}")
            gi, pos = where[k]
            param = self.param_groups[gi]["params"][pos]
            state[param] = {key: _cast_like(param, v, key) for key, v in entry.items()}
        return state

    def __repr__(self):
        lines = [f"{self._name} ("]
        for i, group in enumerate(self.param_groups):
            lines.append(f"Parameter Group {i}")
            lines += [f"    {k}: {group[k]}" for k in sorted(group) if k != "params"]
        return "\n".join(lines + [")"])


def _split_runs(runs, lists):
    """Cut runs where a per-parameter scalar state differs (never, unless loaded so)."""
    for a, b, grads in runs:
        start = a
        for i in range(a + 1, b + 1):
            if i == b or any(v[i] != v[start] for v in lists.values()):
                yield start, i, grads[start - a:i - a]
                start = i


def _number(value) -> float:
    if isinstance(value, Tensor):
        return float(value.item())
    return float(value)


def _as_array(value):
    """The array behind a saved state value: a lamina Tensor, a NumPy/CuPy array, or anything
    ``numpy.asarray`` takes (a CPU ``torch.Tensor``, a list)."""
    if isinstance(value, Tensor):
        return value.array
    if type(value) is np.ndarray or type(value).__module__.startswith("cupy"):
        return value
    return np.asarray(value)


def _cast_like(param, value, key):
    """A loaded state value for a user-written optimiser, as PyTorch casts it (copies arrays)."""
    if isinstance(value, dict):
        return {k: _cast_like(param, v, key) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(_cast_like(param, v, key) for v in value)
    if value is None or isinstance(value, (bool, int, float, str, complex)):
        return value
    if not (isinstance(value, Tensor) or hasattr(value, "__array__") or hasattr(value, "__dlpack__")):
        return value
    a = _as_array(value)
    if key == "step":  # PyTorch keeps "step" as saved (a CPU scalar)
        return _wrap(a.copy())
    if backend.is_floating(a.dtype) and param.is_floating_point():
        a = a.astype(param.dtype)  # a copy, so the optimiser never shares the loaded dict's memory
    else:
        a = a.copy()
    return _wrap(backend.to_device(a, param.device))

