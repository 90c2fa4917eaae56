"""ONNX for Lamina: ``export`` a model or function to an ONNX file (from its traced graph, through
the ``onnx`` method of each op in ``lamina/ops``); ``load`` an ONNX file as a runnable, trainable
``nn.Module``; the operator table (``lamina.onnx.ops.OPS``); the ``onnx`` backend-test backend
(``lamina.onnx.backend``); ``cli_import`` and ``cli_export`` for ``lamina import`` and ``lamina export``.

Needs the ``onnx`` package (the ``onnx`` extra); importing ``lamina`` does not import it.
"""
from .errors import OnnxImportError, UnsupportedOperatorError  # noqa: F401
from .export import ExportError, UnsupportedExportError, export  # noqa: F401
from .module import OnnxModule, from_model, load  # noqa: F401
from .ops import OPS  # noqa: F401


def supported_ops() -> list:
    """The ONNX operator types ``load`` maps onto Lamina, sorted."""
    return sorted(OPS)


def cli_import(args, out=None) -> int:
    """``lamina import``: see ``lamina.onnx.cli.cli_import``."""
    from .cli import cli_import as run
    return run(args, out)


def add_import_parser(subparsers):
    """Add ``lamina import`` to the ``lamina`` command's subparsers (``lamina.onnx.cli``)."""
    from .cli import add_import_parser as add
    return add(subparsers)


def cli_export(args, out=None) -> int:
    """``lamina export``: see ``lamina.onnx.export_cli.cli_export``."""
    from .export_cli import cli_export as run
    return run(args, out)


def add_export_parser(subparsers):
    """Add ``lamina export`` to the ``lamina`` command's subparsers (``lamina.onnx.export_cli``)."""
    from .export_cli import add_export_parser as add
    return add(subparsers)
