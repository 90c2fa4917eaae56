"""Drawing a graph: DOT text, SVG laid out by Graphviz's dot (the ``graphviz-pure`` wheel's
command, or a system ``dot``), and one self-contained HTML page (zoom and pan, modules collapsed
to any depth, click a node for its shapes, FLOPs and bytes).

``main(argv)`` is the ``lamina graph MODEL_OR_RUN --out g.svg|g.html|g.dot`` command: a model
name (lenet, mlp, gpt, bert, char-rnn, seq2seq; small example inputs) or a run folder /
checkpoint the CLI wrote (LeNet-5, GPT, char-RNN).
"""
from __future__ import annotations

import argparse
import html
import json
import shutil
import subprocess
import sys
from pathlib import Path

from . import costs

_PHASE_COLOURS = {"forward": "#dbeafe", "backward": "#fde2e2", "recompute": "#fef3c7", "update": "#dcfce7"}
_KIND_COLOURS = {"input": "#bbf7d0", "parameter": "#e5e7eb", "buffer": "#e5e7eb", "constant": "#f3f4f6"}


def _q(s) -> str:
    """A DOT string: quotes and backslashes escaped, line breaks as dot's ``\\n``."""
    return '"' + str(s).replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _shape(v) -> str:
    return "[" + ", ".join(str(s) for s in v.shape) + "]"


def _group_key(node, depth):
    """The module box a node is drawn in at ``depth`` (None: drawn as itself)."""
    if depth is None or not node.module:
        return None
    parts = node.module.split(".")
    # a module path counts its list indices too (h.0): keep them with their container
    return ".".join(parts[:depth]) if len(parts) >= depth and depth > 0 else None


def layout_items(graph, depth=None, show_params=False, show_constants=False):
    """What a drawing shows: ``(items, edges)``. Items are dicts keyed by DOT id with a label, a
    fill colour, a cluster (module path) and the details the HTML view shows on click."""
    items, edges = {}, set()
    owner = {}  # id(value) -> DOT id of what makes it
    for v in graph.live_values():
        if v.producer is None and (v.kind in ("input",) or (v.kind in ("parameter", "buffer") and show_params)
                                   or (v.kind == "constant" and show_constants)):
            did = f"v{v.id}"
            items[did] = {"label": f"{v.name or v.kind}\n{v.dtype}{_shape(v)}", "fill": _KIND_COLOURS[v.kind],
                          "shape": "ellipse", "cluster": None,
                          "info": {"kind": v.kind, "name": v.name, "shape": list(v.shape), "dtype": str(v.dtype),
                                   "bytes": v.nbytes}}
            owner[id(v)] = did
    for i, n in enumerate(graph.nodes):
        key = _group_key(n, depth)
        did = f"m_{key}" if key is not None else f"n{i}"
        outs = [v for v in n.outputs if isinstance(v.index, int)]
        if did in items:
            it = items[did]
            it["info"]["ops"] += 1
            it["info"]["flops"] += costs.flops(n)
            it["info"]["output_bytes"] += sum(v.nbytes for v in outs)
            it["info"]["output"] = [_shape(v) for v in outs]
        elif key is not None:
            mtype = graph.module_types.get(key, "module")
            items[did] = {"label": f"{key}\n({mtype})", "fill": "#ede9fe", "shape": "box3d",
                          "cluster": ".".join(key.split(".")[:-1]) or None,
                          "info": {"module": key, "type": mtype, "ops": 1, "flops": costs.flops(n),
                                   "output_bytes": sum(v.nbytes for v in outs), "output": [_shape(v) for v in outs]}}
        else:
            label = n.name + "\n" + " ".join(_shape(v) for v in outs)
            attrs = {k: repr(x)[:60] for k, x in n.attrs.items()}
            items[did] = {"label": label, "fill": _PHASE_COLOURS.get(n.phase, "#ffffff"), "shape": "box",
                          "cluster": n.module or None,
                          "info": {"op": n.op_cls.__name__, "module": n.module, "phase": n.phase, "attrs": attrs,
                                   "inputs": [f"%{v.id} {v.name + ' ' if v.name else ''}{v.kind} {v.dtype}{_shape(v)}"
                                              for v in n.inputs],
                                   "outputs": [f"%{v.id} {v.dtype}{_shape(v)}" for v in n.outputs],
                                   "flops": costs.flops(n), "output_bytes": sum(v.nbytes for v in outs),
                                   "scratch_bytes": costs.workspace(n)}}
        for v in n.inputs:
            src = owner.get(id(v))
            if src is not None and src != did:
                edges.add((src, did))
        for v in n.outputs:
            owner[id(v)] = did
    for j, v in enumerate(graph.outputs):
        did = f"out{j}"
        items[did] = {"label": f"output {j}\n{v.dtype}{_shape(v)}", "fill": "#bbf7d0", "shape": "ellipse",
                      "cluster": None, "info": {"output": j, "shape": list(v.shape), "dtype": str(v.dtype)}}
        if id(v) in owner:
            edges.add((owner[id(v)], did))
    return items, sorted(edges)


def to_dot(graph, depth=None, show_params=False, show_constants=False) -> str:
    """The graph as Graphviz DOT: one box per node (per module at ``depth``), clusters per module.
    Parameters are listed in each node's details rather than drawn, unless ``show_params``."""
    items, edges = layout_items(graph, depth, show_params, show_constants)
    lines = ["digraph lamina {", '  rankdir=TB; newrank=true; fontname="Helvetica";',
             '  node [shape=box, style="rounded,filled", fontname="Helvetica", fontsize=10];',
             '  edge [color="#6b7280", arrowsize=0.6];']
    clusters = {}
    for did, it in items.items():
        clusters.setdefault(it["cluster"], []).append(did)

    def emit(did, indent):
        it = items[did]
        lines.append(f'{indent}{_q(did)} [label={_q(it["label"])}, fillcolor={_q(it["fill"])}, shape={it["shape"]}, '
                     f'id={_q(did)}];')

    tree = {}
    for c in clusters:
        if c is None:
            continue
        parts = c.split(".")
        for k in range(1, len(parts) + 1):
            tree.setdefault(".".join(parts[:k - 1]) or None, set()).add(".".join(parts[:k]))

    def cluster(name, indent):
        label = f"{name} ({graph.module_types.get(name, '')})" if graph.module_types.get(name) else name
        lines.append(f"{indent}subgraph {_q('cluster_' + name)} {{")
        lines.append(f'{indent}  label={_q(label)}; style="rounded"; color="#9ca3af"; fontsize=9;')
        for did in clusters.get(name, ()):
            emit(did, indent + "  ")
        for child in sorted(tree.get(name, ())):
            cluster(child, indent + "  ")
        lines.append(f"{indent}}}")
    for did in clusters.get(None, ()):
        emit(did, "  ")
    for top in sorted(tree.get(None, ())):
        cluster(top, "  ")
    for a, b in edges:
        lines.append(f"  {_q(a)} -> {_q(b)};")
    lines.append("}")
    return "\n".join(lines) + "\n"


def dot_command():
    """The dot-compatible layout command: ``graphviz-pure`` (pip install graphviz-pure) or ``dot``."""
    for name in ("graphviz-pure", "dot"):
        path = shutil.which(name)
        if path:
            return path
    raise RuntimeError("drawing SVG needs Graphviz's dot: pip install graphviz-pure (or install graphviz)")


def dot_to_svg(dot: str) -> str:
    res = subprocess.run([dot_command(), "-Tsvg"], input=dot.encode(), capture_output=True, timeout=300)
    if res.returncode != 0:
        raise RuntimeError(f"dot failed ({res.returncode}): {res.stderr.decode(errors='replace')[:500]}")
    return res.stdout.decode()


def to_svg(graph, depth=None, **kw) -> str:
    return dot_to_svg(to_dot(graph, depth, **kw))


def max_depth(graph) -> int:
    return max((len(n.module.split(".")) for n in graph.nodes if n.module), default=0)


_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>__TITLE__</title>
<style>
body{margin:0;font-family:Helvetica,Arial,sans-serif;display:flex;height:100vh;overflow:hidden}
#bar{position:absolute;top:8px;left:8px;z-index:2;background:#fffe;padding:6px 8px;border:1px solid #ccc;border-radius:6px;font-size:13px}
#bar button{margin:0 2px}
#view{flex:1;overflow:hidden;cursor:grab;background:#fafafa;position:relative}
#view svg{transform-origin:0 0;position:absolute;left:0;top:0}
#panel{width:330px;border-left:1px solid #ddd;padding:10px;overflow:auto;font-size:12px;background:#fff}
#panel pre{white-space:pre-wrap;word-break:break-all}
g.node{cursor:pointer} g.node.sel polygon,g.node.sel path,g.node.sel ellipse{stroke:#dc2626;stroke-width:3}
</style></head><body>
<div id="view"></div>
<div id="panel"><h3>__TITLE__</h3><p>__SUMMARY__</p><p>Wheel: zoom. Drag: pan. Click a node for its shapes,
FLOPs and bytes; double-click a module box to open it one level.</p><div id="info"></div></div>
<div id="bar">modules: <span id="levels"></span> <button id="fit">fit</button></div>
<script>
const LEVELS = __LEVELS__;
const INFO = __INFO__;
let level = __START__, scale = 1, tx = 0, ty = 0, drag = null;
const view = document.getElementById('view');
function apply(){const s=view.querySelector('svg'); if(s) s.style.transform=`translate(${tx}px,${ty}px) scale(${scale})`;}
function fit(){const s=view.querySelector('svg'); if(!s) return; const w=s.viewBox.baseVal.width||s.getBBox().width,
 h=s.viewBox.baseVal.height||s.getBBox().height; scale=Math.min(view.clientWidth/w, view.clientHeight/h, 2)*0.95;
 tx=(view.clientWidth-w*scale)/2; ty=10; apply();}
function show(k){level=k; view.innerHTML=LEVELS[k].svg; const s=view.querySelector('svg');
 const w=parseFloat(s.getAttribute('width')), h=parseFloat(s.getAttribute('height'));
 s.setAttribute('width', w); s.setAttribute('height', h);
 document.querySelectorAll('#levels button').forEach((b,i)=>b.style.fontWeight=i==k?'bold':'normal'); fit(); bind();}
function bind(){view.querySelectorAll('g.node').forEach(g=>{
 g.addEventListener('click',e=>{e.stopPropagation(); view.querySelectorAll('g.node.sel').forEach(x=>x.classList.remove('sel'));
  g.classList.add('sel'); const id=g.id; const d=INFO[level][id]; document.getElementById('info').innerHTML=
  '<h4>'+id+'</h4><pre>'+JSON.stringify(d,null,1).replace(/[<&]/g,c=>c=='<'?'&lt;':'&amp;')+'</pre>';});
 g.addEventListener('dblclick',e=>{if(g.id.startsWith('m_') && level+1<LEVELS.length) show(level+1);});});}
view.addEventListener('wheel',e=>{e.preventDefault(); const r=view.getBoundingClientRect(), x=e.clientX-r.left, y=e.clientY-r.top,
 f=Math.exp(-e.deltaY*0.0015); tx=x-(x-tx)*f; ty=y-(y-ty)*f; scale*=f; apply();},{passive:false});
view.addEventListener('mousedown',e=>{drag=[e.clientX-tx,e.clientY-ty]; view.style.cursor='grabbing';});
window.addEventListener('mouseup',()=>{drag=null; view.style.cursor='grab';});
window.addEventListener('mousemove',e=>{if(drag){tx=e.clientX-drag[0]; ty=e.clientY-drag[1]; apply();}});
document.getElementById('fit').onclick=fit;
LEVELS.forEach((l,i)=>{const b=document.createElement('button'); b.textContent=l.name; b.onclick=()=>show(i);
 document.getElementById('levels').appendChild(b);});
show(level);
</script></body></html>
"""


def _strip_svg(svg: str) -> str:
    i = svg.find("<svg")
    return svg[i:] if i >= 0 else svg


def to_html(graph, title="lamina graph", start_depth=1, **kw) -> str:
    """One self-contained page: the graph laid out by dot at every module depth (1 = top-level
    modules as boxes, the last = every op), zoom and pan, click for details."""
    depths = list(range(1, max_depth(graph) + 1)) + [None]
    levels, infos = [], []
    for d in depths:
        items, _ = layout_items(graph, d, **kw)
        levels.append({"name": "all ops" if d is None else str(d), "svg": _strip_svg(to_svg(graph, d, **kw))})
        infos.append({k: v["info"] for k, v in items.items()})
    summary = (f"{len(graph.nodes)} nodes, {costs.format_count(costs.total_flops(graph))} FLOPs, parameters "
               f"{costs.format_bytes(costs.parameter_bytes(graph))}, peak activations "
               f"{costs.format_bytes(costs.peak_bytes(graph))}")
    start = min(max(start_depth, 1), len(depths)) - 1
    page = _PAGE.replace("__TITLE__", html.escape(title)).replace("__SUMMARY__", html.escape(summary))
    page = page.replace("__LEVELS__", json.dumps(levels).replace("</", "<\\/"))
    page = page.replace("__INFO__", json.dumps(infos, default=str).replace("</", "<\\/"))
    return page.replace("__START__", str(start))


# ---------------------------------------------------------------- the command

MODELS = ("lenet", "mlp", "gpt", "bert", "char-rnn", "seq2seq")


def example_model(name):
    """A model by name with a small example input: ``(model, example args)``."""
    import numpy as np

    import lamina
    from lamina.models import (GPT, MLP, BertConfig, BertModel, CharRNN, CharRNNConfig, GPTConfig, LeNet5,
                               Seq2SeqTransformer)
    r = np.random.default_rng(0)
    if name == "lenet":
        return LeNet5(), (lamina.randn(1, 1, 28, 28),)
    if name == "mlp":
        return MLP([784, 256, 128, 10]), (lamina.randn(1, 784),)
    if name == "gpt":
        cfg = GPTConfig(vocab_size=65, block_size=64, n_layer=2, n_head=4, n_embd=64)
        return GPT(cfg), (lamina.tensor(r.integers(0, 65, (1, 16))), lamina.tensor(r.integers(0, 65, (1, 16))))
    if name == "bert":
        cfg = BertConfig(vocab_size=1000, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=128, max_position_embeddings=64)
        return BertModel(cfg).eval(), (lamina.tensor(r.integers(0, 1000, (1, 16))),)
    if name == "char-rnn":
        return CharRNN(CharRNNConfig(vocab_size=65, n_layer=2)), (lamina.tensor(r.integers(0, 65, (1, 16))),)
    if name == "seq2seq":
        return Seq2SeqTransformer(100, d_model=64, nhead=4, num_encoder_layers=2, num_decoder_layers=2,
                                  dim_feedforward=128, dropout=0.0).eval(), \
            (lamina.tensor(r.integers(1, 100, (1, 12))), lamina.tensor(r.integers(1, 100, (1, 10))))
    raise ValueError(f"lamina graph: unknown model {name!r}; expected one of {', '.join(MODELS)} or a run folder")


def model_from_run(path):
    """The model of a run folder or checkpoint the CLI wrote, with an example input."""
    import numpy as np

    import lamina
    from lamina.cli.run import load_run_checkpoint
    state = load_run_checkpoint(path, ("lenet5", "gpt", "char_rnn"))
    name = state["model_name"]
    if name == "lenet5":
        from lamina.models import LeNet5
        model = LeNet5()
        example = (lamina.randn(1, 1, 28, 28),)
    else:
        from lamina.cli.textlm import _build
        vocab = state["model"]["transformer.wte.weight" if name == "gpt" else "embed.weight"].shape[0]
        model = _build(name, dict(state["config"], dropout=0.0), vocab)
        t = min(16, state["config"].get("block_size", 16))
        example = (lamina.tensor(np.zeros((1, t), dtype=np.int64)),)
    model.load_state_dict(state["model"])
    return model.eval(), example


def parser(p=None):
    p = p or argparse.ArgumentParser(prog="lamina graph", description="Draw a model's data-flow graph.")
    p.add_argument("model", help=f"a model ({', '.join(MODELS)}) or a run folder / checkpoint")
    p.add_argument("--out", required=True, help="g.svg, g.html or g.dot (by extension), or g.txt for the text form")
    p.add_argument("--train", action="store_true", help="draw a whole training step (forward, backward, SGD update)")
    p.add_argument("--depth", type=int, default=None, help="collapse modules deeper than this (svg/dot)")
    return p


def run(args) -> int:
    """Run ``lamina graph`` with parsed ``args``; returns the exit status."""
    import lamina
    from .trace import trace
    out = Path(args.out)
    kind = out.suffix.lower().lstrip(".")
    if kind not in ("svg", "html", "dot", "txt"):
        print(f"lamina graph: --out must end in .svg, .html, .dot or .txt, got {out.name}", file=sys.stderr)
        return 2
    try:
        if Path(args.model).exists():
            model, example = model_from_run(args.model)
        else:
            model, example = example_model(args.model)
    except Exception as e:  # noqa: BLE001  (a bad name or checkpoint is a one-line error)
        print(f"lamina graph: {e}", file=sys.stderr)
        return 2
    if args.train:
        opt = lamina.optim.SGD(model.parameters(), lr=0.01)

        def step(*xs):
            opt.zero_grad()
            out = model(*xs)
            loss = out[1] if isinstance(out, tuple) and len(out) > 1 and out[1] is not None else \
                (out[0] if isinstance(out, tuple) else out).float().pow(2).mean()
            loss.backward()
            opt.step()
            return loss
        g = trace(step, *example)
    else:
        with lamina.no_grad():
            g = trace(model, *example)
    from .passes import dce
    g = dce(g)  # argument checks (e.g. a target's class range) leave ops nothing reads
    title = f"{args.model}{' training step' if args.train else ''}"
    if kind == "dot":
        text = to_dot(g, args.depth)
    elif kind == "svg":
        text = to_svg(g, args.depth)
    elif kind == "html":
        text = to_html(g, title=title, start_depth=args.depth or 1)
    else:
        text = str(g) + "\n"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"lamina graph: wrote {out} ({len(g.nodes)} nodes)")
    return 0


def main(argv=None) -> int:
    return run(parser().parse_args(argv))
