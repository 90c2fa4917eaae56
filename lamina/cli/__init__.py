"""The ``lamina`` command (also ``python -m lamina``)."""
from __future__ import annotations

import argparse
import os
import sys

from .run import UserError, add_threads_option


def build_parser() -> argparse.ArgumentParser:
    from . import embed, kernels, lenet, seq2seq, textlm
    parser = argparse.ArgumentParser(prog="lamina", description="Train, evaluate and use Lamina models.")
    add_threads_option(parser, suppress=False)
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
    kernels.add_parser(sub)
    from ..graph import draw
    graph = sub.add_parser("graph", help="draw a model's data-flow graph (svg, html, dot, txt)")
    draw.parser(graph)
    graph.set_defaults(func=draw.run)
    from ..onnx import add_export_parser, add_import_parser
    add_import_parser(sub)
    add_export_parser(sub)
    info = sub.add_parser("info", help="versions and devices")
    info.set_defaults(func=_info)
    for p in list(sub.choices.values()) + list(models.choices.values()):
        if p is not train and "--threads" not in p._option_string_actions:
            add_threads_option(p)
    return parser


def _info(args) -> int:
    import numpy

    import lamina
    print(f"lamina {lamina.__version__}, numpy {numpy.__version__}")
    print(f"cuda: {'available' if lamina.cuda_is_available() else 'not available'}")
    return 0


def idle_cores() -> tuple[int, int, float]:
    """(cores this process may use, of those the ones idle now, the 1-minute load average)."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except OSError:
        return cores, cores, 0.0
    return cores, max(1, min(cores, round(cores - load))), load


def _set_threads(args) -> None:
    """``--threads``, or by default the cores idle at start: BLAS thread pools that spin-wait for
    cores another process holds run several times slower than one thread does."""
    n = args.threads
    if n is None:
        cores, n, load = idle_cores()
        if n < cores and args.command == "train":
            print(f"lamina: the machine is busy (load {load:.1f} on {cores} cores): using {n} "
                  f"thread{'s' if n > 1 else ''}; --threads N chooses", file=sys.stderr)
    from .. import kernels
    kernels.set_num_threads(n)  # the compiled kernels' threads and BLAS's together


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    try:
        _set_threads(args)
        code = args.func(args)
    except UserError as e:
        if e.echo:
            print(f"lamina: error{_rank_label(args)}: {e}", file=sys.stderr)
        code = 2
    except KeyboardInterrupt:
        print(f"lamina: interrupted{_rank_label(args)}", file=sys.stderr)
        code = 130
    _end_job_on_failure(args, code)
    return code


def _rank_label(args) -> str:
    ranks = getattr(args, "_ranks", None)
    return f" (rank {ranks.rank} of {ranks.size})" if ranks is not None and not ranks.is_main else ""


def _end_job_on_failure(args, code) -> None:
    """A rank of a --distributed run that fails ends the whole job (MPI_Abort), however it was
    started: the other ranks would otherwise wait for it in their next collective."""
    ranks = getattr(args, "_ranks", None)
    if code and ranks is not None and ranks.distributed:
        from ..distributed.group import abort
        abort(code)
