"""``lamina export RUN_FOLDER --onnx model.onnx``: the model of a ``lamina train`` run as an ONNX file.

The run's checkpoint names its model (``lenet5``, ``gpt``, ``char_rnn``, ``seq2seq``) and keeps its
configuration; the model is rebuilt the way ``lamina eval`` / ``generate`` rebuild it, its trained
weights loaded, and exported with a symbolic batch axis. The inputs and outputs get names a
serving runtime can use (``image`` -> ``logits``; ``ids`` -> ``logits`` (and ``h_n``, ``c_n``);
``src``, ``tgt_in`` -> ``logits``), and the run's configuration (and a text model's alphabet)
travel in the file's metadata.
"""
from __future__ import annotations

import json
import sys

import numpy as np

MODELS = ("lenet5", "gpt", "char_rnn", "seq2seq")


def add_export_parser(subparsers):
    """Add the ``export`` command to the ``lamina`` command's subparsers."""
    from ..cli.run import positive_int
    p = subparsers.add_parser("export", help="write a trained run's model as an ONNX file")
    p.add_argument("run", metavar="RUN_OR_CKPT", help="a run folder of lamina train (or its checkpoint file)")
    p.add_argument("--onnx", required=True, metavar="PATH", help="the .onnx file to write")
    p.add_argument("--opset", type=positive_int, default=17, help="ONNX opset (17 or newer; default 17)")
    p.add_argument("--seq-len", type=positive_int, default=None,
                   help="text models: the fixed sequence length of the exported graph (default: the run's block size)")
    p.set_defaults(func=cli_export)
    return p


def rebuild(run_or_ckpt):
    """``(model in eval mode, example inputs, input names, output names, metadata)`` for a run."""
    from .. import tensor
    from ..cli.run import UserError, load_run_checkpoint
    state = load_run_checkpoint(run_or_ckpt, MODELS)
    name, cfg = state["model_name"], state["config"]
    meta = {"lamina.model_name": name, "lamina.config": json.dumps(cfg, sort_keys=True, default=str)}
    if name == "lenet5":
        from ..models import LeNet5
        model = LeNet5()
        inputs, in_names, out_names = (tensor(np.zeros((1, 1, 28, 28), np.float32)),), ["image"], ["logits"]
    elif name in ("gpt", "char_rnn"):
        from ..cli.textlm import _build
        from ..data import CharTokenizer
        tok = CharTokenizer.from_state_dict(state["tokenizer"])
        model = _build(name, dict(cfg, dropout=0.0), tok.vocab_size)
        inputs, in_names = None, ["ids"]
        out_names = ["logits"] if name == "gpt" else ["logits", "h_n", "c_n"]
        meta["lamina.tokenizer"] = json.dumps(state["tokenizer"], sort_keys=True, default=str)
    else:
        from ..cli.seq2seq import make_model, make_task
        task = make_task(cfg)
        model = make_model(cfg, task)
        inputs = (tensor(np.asarray(task.heldout.src[:1])), tensor(np.asarray(task.heldout.tgt_in[:1])))
        in_names, out_names = ["src", "tgt_in"], ["logits"]
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise UserError(str(e)) from None
    model.eval()
    return model, inputs, in_names, out_names, meta, cfg


def cli_export(args, out=None) -> int:
    """Run ``lamina export``; returns the exit status (0, or 1 with a one-line error on stderr)."""
    from .. import tensor
    from ..cli.run import UserError
    from .export import ExportError, export
    out = out or sys.stdout
    try:
        model, inputs, in_names, out_names, meta, cfg = rebuild(args.run)
        if inputs is None:  # a text model: one row of token ids of the chosen length
            T = args.seq_len or cfg["block_size"]
            if T > cfg["block_size"] and "n_head" in cfg:
                raise UserError(f"--seq-len {T} is longer than the GPT's block size {cfg['block_size']}")
            inputs = (tensor(np.zeros((1, T), np.int64)),)
        proto = export(model, inputs, args.onnx, opset=args.opset, input_names=in_names, output_names=out_names,
                       metadata=meta)
    except (UserError, ExportError) as e:
        print(f"lamina export: {e}", file=sys.stderr)
        return 1
    g = proto.graph
    n_params = sum(int(np.prod(t.dims)) for t in g.initializer)
    print(f"wrote {args.onnx}: {meta['lamina.model_name']}, opset {args.opset}, {len(g.node)} nodes, "
          f"{n_params} weights; inputs {', '.join(_sig(v) for v in g.input)}; "
          f"outputs {', '.join(_sig(v) for v in g.output)}", file=out)
    return 0


def _sig(v) -> str:
    dims = [d.dim_param or str(d.dim_value) for d in v.type.tensor_type.shape.dim]
    return f"{v.name}[{', '.join(dims)}]"
