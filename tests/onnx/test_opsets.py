"""Operators whose inputs and attributes changed across opset versions, each version checked
against onnxruntime (test-only). Not onnx.reference: its Softmax before opset 13 ignores the
flatten-to-2-d rule, its Pad refuses negative pads and its LSTM ignores sequence_lens, where
onnxruntime and Lamina agree with the specification."""
import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
ort = pytest.importorskip("onnxruntime")

import lamina  # noqa: E402
from lamina.onnx import from_model  # noqa: E402

RNG = np.random.default_rng(0)
X = RNG.standard_normal((2, 1, 6, 4)).astype(np.float32)


def _check(node, opset, inits=(), x=X, n_out=1):
    outs = [helper.make_tensor_value_info(o, TensorProto.FLOAT, None) for o in node.output[:n_out]]
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, x.shape)], outs,
                          [numpy_helper.from_array(np.asarray(v), k) for k, v in inits])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    want = _ort(model, x)
    got = from_model(model)(x)
    got = got if isinstance(got, tuple) else (got,)
    assert len(got) == len(want)
    for a, b in zip(got, want):
        assert a.shape == b.shape
        np.testing.assert_allclose(a.detach().numpy(), b, rtol=1e-5, atol=1e-6)
    return got


def _ort(model, x):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), opts).run(None, {"x": x})


def test_split_across_opsets():
    outs = ["a", "b", "c"]
    _check(helper.make_node("Split", ["x"], outs, axis=2, split=[1, 2, 3]), 11, n_out=3)
    _check(helper.make_node("Split", ["x"], outs, axis=2), 11, n_out=3)
    _check(helper.make_node("Split", ["x", "s"], outs, axis=2), 13, [("s", np.array([3, 2, 1], np.int64))], n_out=3)
    _check(helper.make_node("Split", ["x"], outs, axis=2, num_outputs=3), 18, n_out=3)
    _check(helper.make_node("Split", ["x"], ["a", "b"], axis=2, num_outputs=2), 18, n_out=2)


def test_squeeze_unsqueeze_across_opsets():
    _check(helper.make_node("Squeeze", ["x"], ["y"], axes=[1]), 11)
    _check(helper.make_node("Squeeze", ["x"], ["y"]), 11)
    _check(helper.make_node("Squeeze", ["x", "a"], ["y"]), 13, [("a", np.array([-3], np.int64))])
    _check(helper.make_node("Unsqueeze", ["x"], ["y"], axes=[0, 5]), 11)
    _check(helper.make_node("Unsqueeze", ["x", "a"], ["y"]), 13, [("a", np.array([-1, 1], np.int64))])


def test_reductions_across_opsets():
    _check(helper.make_node("ReduceSum", ["x"], ["y"], axes=[1, 3], keepdims=0), 11)
    _check(helper.make_node("ReduceSum", ["x", "a"], ["y"], keepdims=1), 13, [("a", np.array([2], np.int64))])
    _check(helper.make_node("ReduceSum", ["x", "a"], ["y"], noop_with_empty_axes=1), 13,
           [("a", np.array([], np.int64))])
    _check(helper.make_node("ReduceSum", ["x"], ["y"]), 13)
    _check(helper.make_node("ReduceMean", ["x"], ["y"], axes=[-1]), 13)
    _check(helper.make_node("ReduceMean", ["x", "a"], ["y"], keepdims=0), 18, [("a", np.array([0, 2], np.int64))])
    _check(helper.make_node("ReduceMax", ["x"], ["y"], axes=[2]), 13)
    _check(helper.make_node("ReduceL2", ["x", "a"], ["y"]), 18, [("a", np.array([3], np.int64))])


def test_clip_across_opsets():
    _check(helper.make_node("Clip", ["x"], ["y"], min=-0.5, max=0.7), 6)
    _check(helper.make_node("Clip", ["x"], ["y"], max=0.1), 6)
    _check(helper.make_node("Clip", ["x", "lo", "hi"], ["y"]), 11,
           [("lo", np.array(-0.2, np.float32)), ("hi", np.array(0.3, np.float32))])
    _check(helper.make_node("Clip", ["x", "", "hi"], ["y"]), 13, [("hi", np.array(0.0, np.float32))])


def test_pad_across_opsets():
    _check(helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 1, 2, 0, 1, 2, 0], value=1.5), 2)
    _check(helper.make_node("Pad", ["x"], ["y"], pads=[0, 0, 2, 1, 0, 0, 1, 2], mode="reflect"), 2)
    _check(helper.make_node("Pad", ["x", "p", "v"], ["y"], mode="constant"), 11,
           [("p", np.array([0, 1, 0, 1, 0, 0, 2, 0], np.int64)), ("v", np.array(-1.0, np.float32))])
    _check(helper.make_node("Pad", ["x", "p"], ["y"], mode="edge"), 13,
           [("p", np.array([0, 0, 1, 1, 0, 0, 1, 1], np.int64))])
    _check(helper.make_node("Pad", ["x", "p", "", "a"], ["y"], mode="wrap"), 19,
           [("p", np.array([2, 1, 1, 3], np.int64)), ("a", np.array([2, 3], np.int64))])
    _check(helper.make_node("Pad", ["x", "p"], ["y"]), 13, [("p", np.array([0, 0, -1, 1, 0, 0, -2, 0], np.int64))])


def test_slice_and_softmax_across_opsets():
    _check(helper.make_node("Slice", ["x"], ["y"], starts=[1, -3], ends=[100, -1], axes=[2, 3]), 9)
    _check(helper.make_node("Slice", ["x", "s", "e", "a", "k"], ["y"]), 13,
           [("s", np.array([-1, 3], np.int64)), ("e", np.array([-100, 0], np.int64)),
            ("a", np.array([2, 3], np.int64)), ("k", np.array([-2, -1], np.int64))])
    # before opset 13 Softmax works on the input flattened to 2-d at ``axis``
    _check(helper.make_node("Softmax", ["x"], ["y"], axis=2), 11)
    _check(helper.make_node("LogSoftmax", ["x"], ["y"]), 11)
    _check(helper.make_node("Softmax", ["x"], ["y"], axis=2), 13)


def test_dropout_is_the_identity_in_inference_across_opsets():
    _check(helper.make_node("Dropout", ["x"], ["y", "m"], ratio=0.3), 10, n_out=1)
    _check(helper.make_node("Dropout", ["x", "r"], ["y"]), 13, [("r", np.array(0.4, np.float32))])


def test_dropout_in_training_scales_what_it_keeps():
    g = helper.make_graph([helper.make_node("Dropout", ["x", "r", "t"], ["y", "m"], seed=3)], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, (50, 40))],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, None),
                           helper.make_tensor_value_info("m", TensorProto.BOOL, None)],
                          [numpy_helper.from_array(np.array(0.25, np.float32), "r"),
                           numpy_helper.from_array(np.array(True), "t")])
    m = from_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 13)]))
    x = np.ones((50, 40), np.float32)
    y, keep = (t.numpy() for t in m(x))
    assert keep.dtype == np.bool_ and 0.65 < keep.mean() < 0.85
    np.testing.assert_allclose(y, np.where(keep, 1 / 0.75, 0.0), rtol=1e-6)


def _float32(model):
    """The same model in float32 (onnxruntime runs these operators in float32 only)."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.data_type == TensorProto.DOUBLE:
            t.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(t).astype(np.float32), t.name))
    for v in list(m.graph.input) + list(m.graph.output):
        v.type.tensor_type.elem_type = TensorProto.FLOAT
    m.ir_version = 8
    return m


def test_imported_ops_are_differentiable():
    """Gradients through paths that are not plain Lamina layers (the step-by-step LSTM with
    peepholes, GRU with linear_before_reset=0, Einsum, Asin) against central differences."""
    H, I, T, B = 3, 2, 4, 2
    r = np.random.default_rng(1)
    mk = numpy_helper.from_array
    inits = {
        "lstm": [mk(r.standard_normal((1, 4 * H, I)), "W"), mk(r.standard_normal((1, 4 * H, H)), "R"),
                 mk(r.standard_normal((1, 8 * H)), "B"), mk(np.array([3, 4], np.int32), "L"),
                 mk(r.standard_normal((1, B, H)), "h0"), mk(r.standard_normal((1, B, H)), "c0"),
                 mk(r.standard_normal((1, 3 * H)), "P")],
        "gru": [mk(r.standard_normal((1, 3 * H, I)), "W"), mk(r.standard_normal((1, 3 * H, H)), "R"),
                mk(r.standard_normal((1, 6 * H)), "B")],
    }
    nodes = {
        "lstm": helper.make_node("LSTM", ["x", "W", "R", "B", "L", "h0", "c0", "P"], ["y"], hidden_size=H,
                                 direction="reverse"),
        "gru": helper.make_node("GRU", ["x", "W", "R", "B"], ["y"], hidden_size=H, linear_before_reset=0),
        "einsum": helper.make_node("Einsum", ["x", "x"], ["y"], equation="tbi,sbi->bts"),
        "asin": helper.make_node("Asin", ["x"], ["y"]),
    }
    x0 = r.uniform(-0.9, 0.9, (T, B, I))
    for name, node in nodes.items():
        g = helper.make_graph([node], name, [helper.make_tensor_value_info("x", TensorProto.DOUBLE, x0.shape)],
                              [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)], inits.get(name, []))
        model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
        mod = from_model(model)
        want = _ort(_float32(model), x0.astype(np.float32))[0]
        np.testing.assert_allclose(mod(x0).detach().numpy(), want, rtol=1e-4, atol=1e-5, err_msg=name)
        x = lamina.tensor(x0, requires_grad=True)
        weights = lamina.tensor(r.standard_normal(want.shape))
        (mod(x) * weights).sum().backward()
        eps = 1e-6
        num = np.zeros_like(x0)
        for i in np.ndindex(x0.shape):
            d = np.zeros_like(x0)
            d[i] = eps
            up = (mod(x0 + d).detach().numpy() * weights.numpy()).sum()
            dn = (mod(x0 - d).detach().numpy() * weights.numpy()).sum()
            num[i] = (up - dn) / (2 * eps)
        np.testing.assert_allclose(x.grad.numpy(), num, rtol=1e-5, atol=1e-7, err_msg=name)
        if name in inits:  # the weights are Parameters and receive gradients too
            assert all(p.grad is not None for p in mod.parameters())


@pytest.mark.parametrize("eq, shapes", [
    ("bhqd,bhkd->bhqk", [(2, 3, 4, 5), (2, 3, 6, 5)]), ("ij,jk,kl->il", [(3, 4), (4, 5), (5, 2)]),
    ("...ij,...jk", [(2, 3, 4), (4, 5)]), ("ii->i", [(4, 4)]), ("ij,ij->", [(3, 4), (3, 4)]),
    ("bij,bkj->bik", [(1, 3, 4), (5, 2, 4)]), ("i,j->ij", [(3,), (4,)]),
    ("abc,cd,dbe->ae", [(2, 3, 4), (4, 5), (5, 3, 6)]), ("ij->", [(3, 4)]), ("ji", [(3, 4)]),
])
def test_einsum_matches_numpy(eq, shapes):
    r = np.random.default_rng(0)
    xs = [r.standard_normal(s) for s in shapes]
    node = helper.make_node("Einsum", [f"x{i}" for i in range(len(xs))], ["y"], equation=eq)
    g = helper.make_graph([node], "g", [helper.make_tensor_value_info(f"x{i}", TensorProto.DOUBLE, s)
                                        for i, s in enumerate(shapes)],
                          [helper.make_tensor_value_info("y", TensorProto.DOUBLE, None)])
    m = from_model(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]))
    np.testing.assert_allclose(m(*xs).numpy(), np.einsum(eq, *xs), rtol=1e-12, atol=1e-12)


def _graph_model(nodes, inputs, outputs, opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs)
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])
    m.ir_version = 8
    return m


def test_if_reads_the_enclosing_graph_and_is_differentiable():
    f = TensorProto.FLOAT
    then_g = helper.make_graph([helper.make_node("Mul", ["h", "h"], ["t"])], "then", [],
                               [helper.make_tensor_value_info("t", f, None)])
    else_g = helper.make_graph([helper.make_node("Neg", ["h"], ["e"])], "else", [],
                               [helper.make_tensor_value_info("e", f, None)])
    # h is made by a node and read only inside the branches: it must stay alive until If runs
    nodes = [helper.make_node("Relu", ["x"], ["h"]), helper.make_node("ReduceSum", ["x"], ["s"], keepdims=0),
             helper.make_node("Greater", ["s", "zero"], ["c"]),
             helper.make_node("If", ["c"], ["y"], then_branch=then_g, else_branch=else_g)]
    m = _graph_model(nodes, [helper.make_tensor_value_info("x", f, (3,))], [helper.make_tensor_value_info("y", f, None)])
    m.graph.initializer.append(numpy_helper.from_array(np.array(0.0, np.float32), "zero"))
    mod = from_model(m)
    sess = ort.InferenceSession(m.SerializeToString())
    for x in (np.array([1.0, -2.0, 3.0], np.float32), np.array([-1.0, -2.0, 3.0], np.float32)):
        np.testing.assert_allclose(mod(x).numpy(), sess.run(None, {"x": x})[0])
    xt = lamina.tensor([1.0, -2.0, 3.0], requires_grad=True)
    mod(xt).sum().backward()
    np.testing.assert_allclose(xt.grad.numpy(), [2.0, 0.0, 6.0])


def test_loop_carries_values_and_stacks_scan_outputs():
    f, i64 = TensorProto.FLOAT, TensorProto.INT64
    body = helper.make_graph(
        [helper.make_node("Add", ["acc_in", "x"], ["acc_out"]), helper.make_node("Identity", ["cond_in"], ["cond_out"]),
         helper.make_node("Cast", ["i"], ["fi"], to=f), helper.make_node("Mul", ["acc_out", "fi"], ["scan"])],
        "body", [helper.make_tensor_value_info("i", i64, ()), helper.make_tensor_value_info("cond_in", TensorProto.BOOL, ()),
                 helper.make_tensor_value_info("acc_in", f, (2,))],
        [helper.make_tensor_value_info("cond_out", TensorProto.BOOL, ()), helper.make_tensor_value_info("acc_out", f, (2,)),
         helper.make_tensor_value_info("scan", f, (2,))])
    nodes = [helper.make_node("Loop", ["n", "", "a0"], ["acc", "scans"], body=body)]
    m = _graph_model(nodes, [helper.make_tensor_value_info("x", f, (2,)), helper.make_tensor_value_info("n", i64, ()),
                             helper.make_tensor_value_info("a0", f, (2,))],
                     [helper.make_tensor_value_info("acc", f, None), helper.make_tensor_value_info("scans", f, None)])
    feeds = {"x": np.array([1.0, 2.0], np.float32), "n": np.array(4, np.int64), "a0": np.array([0.5, 0.0], np.float32)}
    want = ort.InferenceSession(m.SerializeToString()).run(None, feeds)
    got = from_model(m)(**feeds)
    assert got[1].shape == (4, 2)
    for a, b in zip(got, want):
        np.testing.assert_allclose(a.numpy(), b)


def test_unsupported_operators_inside_subgraphs_are_listed():
    f = TensorProto.FLOAT
    branch = helper.make_graph([helper.make_node("Unique", ["x"], ["u"])], "b", [],
                               [helper.make_tensor_value_info("u", f, None)])
    nodes = [helper.make_node("If", ["c"], ["y"], then_branch=branch, else_branch=branch)]
    m = _graph_model(nodes, [helper.make_tensor_value_info("c", TensorProto.BOOL, ()),
                             helper.make_tensor_value_info("x", f, (3,))], [helper.make_tensor_value_info("y", f, None)])
    with pytest.raises(lamina.onnx.UnsupportedOperatorError, match="Unique"):
        from_model(m)
