"""The errors ``lamina.onnx`` raises for files and graphs it cannot take."""
from __future__ import annotations


class OnnxImportError(ValueError):
    """An ONNX file or graph that Lamina cannot load: corrupt, truncated, hostile or malformed.

    The message is one line naming the file or node and what is wrong with it."""


class UnsupportedOperatorError(OnnxImportError):
    """The graph uses operators Lamina has no mapping for; ``ops`` lists every one of them."""

    def __init__(self, message: str, ops: list):
        super().__init__(message)
        self.ops = list(ops)
