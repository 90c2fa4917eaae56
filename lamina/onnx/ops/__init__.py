"""The ONNX operator table: ``OPS`` maps an ONNX op type to the function that runs it with Lamina.

Each function takes the node (``Node``: attributes, opset version, module) and the node's input
tensors (None for an omitted optional input) and returns one tensor or a tuple of them. The
functions live by family in the modules of this package and register themselves with
``@onnx_op("Name", ...)``; the differences between opset versions of an operator (an attribute
that became an input, changed defaults) are handled inside its function, from ``node.opset``.
"""
from __future__ import annotations

OPS: dict = {}


def onnx_op(*names):
    """Register the decorated function as the mapping of the ONNX op types ``names``."""
    def deco(fn):
        for name in names:
            OPS[name] = fn
        return fn
    return deco


class Node:
    """One ONNX node ready to run: its op type, value names, decoded attributes and opset."""

    # ``scope``: the values visible while the node runs, for the subgraphs of If and Loop
    __slots__ = ("op_type", "name", "inputs", "outputs", "attrs", "opset", "fn", "owner", "scope")

    def __init__(self, op_type, name, inputs, outputs, attrs, opset, fn, owner=None):
        self.op_type, self.name, self.inputs, self.outputs = op_type, name, inputs, outputs
        self.attrs, self.opset, self.fn, self.owner = attrs, opset, fn, owner
        self.scope = None

    def attr(self, key, default=None):
        return self.attrs.get(key, default)

    @property
    def training(self) -> bool:
        return bool(self.owner is not None and self.owner.training)

    def where(self) -> str:
        return f"{self.op_type}" + (f" node {self.name!r}" if self.name else "")

    def __repr__(self):
        return f"Node({self.op_type}, {self.inputs} -> {self.outputs})"


from . import attention, control, elementwise, nn, reduce, resize, rnn, tensor  # noqa: E402,F401  (they fill OPS)
