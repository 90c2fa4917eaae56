"""The ``lamina`` command (also ``python -m lamina``)."""
from __future__ import annotations

import argparse
import sys

from .run import UserError


def build_parser() -> argparse.ArgumentParser:
    from . import embed, lenet, seq2seq, textlm
    parser = argparse.ArgumentParser(prog="lamina", description="Train, evaluate and use Lamina models.")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS threads (default: the BLAS library's choice); 1 is often faster for "
                             "small models on a busy machine")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a model")
    models = train.add_subparsers(dest="model", required=True)
    lenet.add_train_parser(models)
    textlm.add_train_parsers(models)
    seq2seq.add_train_parser(models)
    lenet.add_eval_parser(sub)
    lenet.add_predict_parser(sub)
    textlm.add_generate_parser(sub)
    embed.add_parser(sub)
    info = sub.add_parser("info", help="versions and devices")
    info.set_defaults(func=_info)
    return parser


def _info(args) -> int:
    import numpy

    import lamina
    print(f"lamina {lamina.__version__}, numpy {numpy.__version__}")
    print(f"cuda: {'available' if lamina.cuda_is_available() else 'not available'}")
    return 0


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if args.threads is not None:
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
    try:
        return args.func(args)
    except UserError as e:
        print(f"lamina: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("lamina: interrupted", file=sys.stderr)
        return 130
