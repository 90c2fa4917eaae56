"""lamina.summary and the cost model: parameter counts, FLOPs against hand formulas, peak
activation bytes against tracemalloc's count of a measured eager run."""
import gc
import tracemalloc

import numpy as np
import pytest

import lamina
from lamina.graph import costs, summary, trace
from lamina.models import MLP, LeNet5

from .models import NAMES, make


@pytest.mark.parametrize("name", NAMES)
def test_parameter_counts_and_table(name):
    model, _, inputs = make(name)
    ex = inputs(np.random.default_rng(0))
    n_in = {"lenet": 1, "mlp": 1, "gpt": 1, "bert": 1, "charrnn": 1, "seq2seq": 2}[name]
    s = summary(model, ex[:n_in] if n_in > 1 else ex[0])
    params = list(model.parameters())
    assert s.total_params == sum(p.numel() for p in params)
    assert s.param_bytes == sum(p.numel() * p.element_size() for p in params)
    text = str(s)
    assert f"Total params: {s.total_params:,}" in text and "Peak activation bytes" in text
    assert s.rows and s.flops > 0 and s.inference_peak_bytes > 0
    assert s.training_peak_bytes > s.inference_peak_bytes


def test_flops_hand_formulas():
    lamina.manual_seed(0)
    x = lamina.randn(3, 5, 7)
    w, b = lamina.randn(4, 7), lamina.randn(4)
    g = trace(lambda x: lamina.nn.functional.linear(x, w, b), x)
    (node,) = g.nodes
    assert costs.flops(node) == 2 * 15 * 7 * 4 + 15 * 4
    a, c = lamina.randn(2, 3, 6, 5), lamina.randn(2, 3, 5, 9)
    g = trace(lambda a, c: a @ c, a, c)
    assert costs.flops(g.nodes[0]) == 2 * 2 * 3 * 6 * 5 * 9
    img = lamina.randn(2, 4, 11, 9)
    k, kb = lamina.randn(6, 2, 3, 3), lamina.randn(6)
    g = trace(lambda t: lamina.nn.functional.conv2d(t, k, kb, stride=2, padding=1, groups=2), img)
    (node,) = [n for n in g.nodes if n.name == "conv"]
    ho, wo = (11 + 2 - 3) // 2 + 1, (9 + 2 - 3) // 2 + 1
    assert node.outputs[0].shape == (2, 6, ho, wo)
    assert costs.flops(node) == 2 * 2 * 6 * ho * wo * (2 * 3 * 3) + 2 * 6 * ho * wo
    s = summary(LeNet5(), (8, 1, 28, 28))
    conv1 = [r for r in s.rows if r[0] == "features.0"][0]
    assert conv1[5] == 2 * 8 * 6 * 28 * 28 * 25 + 8 * 6 * 28 * 28
    fc = [r for r in s.rows if r[0] == "classifier.1"][0]
    assert fc[5] == 2 * 8 * 400 * 120 + 8 * 120


def _measure(model, x):
    """tracemalloc's peak of eager inference (no_grad) and of forward + backward of the sum, after
    one untraced step (which compiles any CPU kernels and fills caches)."""
    with lamina.no_grad():
        model(x)
    model(x).sum().backward()
    for p in model.parameters():
        p.grad = None
    gc.collect()
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        with lamina.no_grad():
            y = model(x)
        inference = tracemalloc.get_traced_memory()[1] - base
        del y
        gc.collect()
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        model(x).sum().backward()
        training = tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
    for p in model.parameters():
        p.grad = None
    return inference, training


@pytest.mark.parametrize("build", [lambda: (MLP([256, 512, 512, 10]), (128, 256)),
                                   lambda: (LeNet5(), (32, 1, 28, 28))], ids=["mlp", "lenet"])
def test_peak_activation_bytes_against_eager(build):
    lamina.manual_seed(0)
    model, shape = build()
    x = lamina.randn(*shape)
    s = summary(model, x)
    inference, training = _measure(model, x)
    assert abs(s.inference_peak_bytes / inference - 1) < 0.10, (s.inference_peak_bytes, inference)
    if isinstance(model, MLP):  # LeNet's eager backward uses im2col scratch the graph's ops do not
        assert abs(s.training_peak_bytes / training - 1) < 0.10, (s.training_peak_bytes, training)
    assert s.graph_training_peak_bytes <= s.training_peak_bytes
