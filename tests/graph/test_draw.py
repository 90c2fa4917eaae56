"""Drawing: DOT laid out by the graphviz-pure command into SVG, the self-contained HTML view,
and the ``lamina graph`` command logic (model names, run folders, errors)."""
import json
import re
import shutil
import subprocess

import numpy as np
import pytest

import lamina
from lamina.graph import draw, trace
from lamina.models import LeNet5

from .models import make

needs_dot = pytest.mark.skipif(shutil.which("graphviz-pure") is None and shutil.which("dot") is None,
                               reason="needs graphviz-pure (pip install graphviz-pure) or Graphviz")


def _gpt_graph():
    model, loss_fn, inputs = make("gpt")
    return trace(lambda x, t: loss_fn(model, x, t), *inputs(np.random.default_rng(0)))


def test_dot_has_every_node_and_module_clusters():
    g = _gpt_graph()
    dot = draw.to_dot(g)
    assert dot.count("->") >= len(g.nodes)
    for i in range(len(g.nodes)):
        assert f'"n{i}" [' in dot
    assert 'subgraph "cluster_transformer.h.0.attn"' in dot and "(CausalSelfAttention)" in dot
    collapsed = draw.to_dot(g, depth=1)
    assert '"m_transformer" [' in collapsed
    assert collapsed.count("[label=") < dot.count("[label=")


@needs_dot
def test_svg_from_the_layout_engine():
    g = _gpt_graph()
    svg = draw.to_svg(g, depth=4)
    assert svg.lstrip().startswith("<?xml") or "<svg" in svg
    assert "graphviz" in svg.lower() and 'id="m_transformer.h.0.attn"' in svg


@needs_dot
def test_html_view_is_self_contained_with_every_level():
    g = _gpt_graph()
    page = draw.to_html(g, title="gpt")
    assert "http://" not in page.replace("http://www.w3.org", "") and "https://" not in page
    levels = json.loads(re.search(r"const LEVELS = (.*);\n", page).group(1).replace("<\\/", "</"))
    assert draw.max_depth(g) == 5  # transformer.h.0.attn.c_attn
    assert [lv["name"] for lv in levels] == ["1", "2", "3", "4", "5", "all ops"]
    info = json.loads(re.search(r"const INFO = (.*);\n", page).group(1).replace("<\\/", "</"))
    linear = [d for d in info[-1].values() if d.get("op") == "Linear"][0]
    assert linear["flops"] > 0 and linear["output_bytes"] > 0 and linear["outputs"]
    assert "addEventListener('wheel'" in page and "dblclick" in page


@needs_dot
def test_command_writes_each_format(tmp_path, capsys):
    for name in draw.MODELS:
        assert draw.main([name, "--out", str(tmp_path / f"{name}.dot")]) == 0
    dot = (tmp_path / "lenet.dot").read_text()
    res = subprocess.run([draw.dot_command(), "-Tsvg"], input=dot.encode(), capture_output=True)
    assert res.returncode == 0
    assert draw.main(["lenet", "--train", "--out", str(tmp_path / "step.svg")]) == 0
    assert "<svg" in (tmp_path / "step.svg").read_text()
    assert draw.main(["mlp", "--out", str(tmp_path / "mlp.txt")]) == 0
    assert "linear(" in (tmp_path / "mlp.txt").read_text()
    assert draw.main(["nonsense", "--out", str(tmp_path / "x.svg")]) == 2
    assert "unknown model 'nonsense'" in capsys.readouterr().err
    assert draw.main(["lenet", "--out", str(tmp_path / "x.png")]) == 2


def test_command_reads_a_run_checkpoint(tmp_path):
    model = LeNet5()
    lamina.io.save_checkpoint(tmp_path / "checkpoint.safetensors",
                              {"model_name": "lenet5", "model": model.state_dict(), "config": {}})
    assert draw.main([str(tmp_path), "--out", str(tmp_path / "g.dot")]) == 0
    assert "conv" in (tmp_path / "g.dot").read_text()


@needs_dot
@pytest.mark.skipif(shutil.which("chromium") is None, reason="needs Debian's chromium (headless)")
def test_html_view_runs_in_headless_chromium(tmp_path):
    """The page's script runs in a real browser: the first level's SVG is in the view, one button
    per level, and a click on a node fills the details panel."""
    g = _gpt_graph()
    page = draw.to_html(g, title="gpt", start_depth=4)
    probe = ("<script>window.addEventListener('load',()=>{const n=document.querySelector('#view g.node');"
             "n.dispatchEvent(new MouseEvent('click',{bubbles:true}));});</script></body>")
    (tmp_path / "g.html").write_text(page.replace("</body>", probe))
    res = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--virtual-time-budget=3000",
                          "--dump-dom", (tmp_path / "g.html").as_uri()], capture_output=True, timeout=120)
    dom = res.stdout.decode()
    view = dom[dom.index('<div id="view"'):]
    assert "<svg" in view[:2000]
    assert dom.count("<button") == draw.max_depth(g) + 2  # the levels and "fit"
    info = dom[dom.index('<div id="info">'):]
    assert info.startswith('<div id="info"><h4>') and "<pre>" in info[:300]
