"""``lamina import model.onnx``: load an ONNX file and print its graph and a summary."""
from __future__ import annotations

import sys


def add_import_parser(subparsers):
    """Add the ``import`` command to the ``lamina`` command's subparsers."""
    p = subparsers.add_parser("import", help="load an ONNX model and print its graph and a summary")
    p.add_argument("model", help="path of the .onnx file")
    p.add_argument("--no-graph", action="store_true", help="print only the summary")
    p.add_argument("--run", action="store_true",
                   help="also run the model once on zeros where the input shapes are fixed, and print output shapes")
    p.set_defaults(func=cli_import)
    return p


def cli_import(args, out=None) -> int:
    """Run ``lamina import``; returns the exit status (0, or 1 with a one-line error on stderr)."""
    from .errors import OnnxImportError
    from .module import load
    out = out or sys.stdout
    try:
        model = load(args.model)
    except (OnnxImportError, FileNotFoundError) as e:
        print(f"lamina import: {e}", file=sys.stderr)
        return 1
    if not getattr(args, "no_graph", False):
        print(model.graph_text(), file=out)
        print(file=out)
    print(model.summary(), file=out)
    if getattr(args, "run", False):
        import numpy as np
        import lamina
        feeds = []
        for name in model.input_names:
            shape = _fixed_shape(model.input_info[name])
            if shape is None:
                print(f"--run: input {name!r} has no fixed shape ({model.input_info[name]}); not run", file=out)
                return 0
            dtype, dims = shape
            feeds.append(lamina.from_numpy(np.zeros(dims, dtype)))
        with lamina.no_grad():
            res = model(*feeds)
        res = res if isinstance(res, tuple) else (res,)
        for name, r in zip(model.output_names, res):
            print(f"ran: output {name} shape {tuple(r.shape)} dtype {r.dtype}", file=out)
    return 0


def _fixed_shape(text):
    import numpy as np
    if "[" not in text:
        return None
    dt, dims = text.split("[", 1)
    dims = dims.rstrip("]").split(", ") if dims.rstrip("]") else []
    if not all(d.isdigit() for d in dims):
        return None
    try:
        return np.dtype({"float": "float32", "double": "float64"}.get(dt, dt)), [int(d) for d in dims]
    except TypeError:
        return None


def main(argv=None) -> int:
    """``python -m lamina.onnx.cli model.onnx``: the import command on its own."""
    import argparse
    parser = argparse.ArgumentParser(prog="lamina")
    sub = parser.add_subparsers(dest="command", required=True)
    add_import_parser(sub)
    args = parser.parse_args(["import"] + list(sys.argv[1:] if argv is None else argv))
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
