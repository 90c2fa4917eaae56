"""ONNX for Lamina: ``load`` an ONNX file as a runnable, trainable ``nn.Module``; the operator
table (``lamina.onnx.ops.OPS``); the ``onnx`` backend-test backend (``lamina.onnx.backend``);
``cli_import`` for ``lamina import model.onnx``.

Needs the ``onnx`` package (the ``onnx`` extra); importing ``lamina`` does not import it.
"""
from .errors import OnnxImportError, UnsupportedOperatorError  # noqa: F401
from .module import OnnxModule, from_model, load  # noqa: F401
from .ops import OPS  # noqa: F401
from .cli import cli_import, add_import_parser  # noqa: F401


def supported_ops() -> list:
    """The ONNX operator types ``load`` maps onto Lamina, sorted."""
    return sorted(OPS)
