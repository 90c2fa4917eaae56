"""lamina.onnx.cli_import: the logic of `lamina import model.onnx` (graph, summary, errors)."""
import argparse
import io

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import lamina.onnx as lo  # noqa: E402


def _parser():
    p = argparse.ArgumentParser(prog="lamina")
    lo.add_import_parser(p.add_subparsers(dest="command", required=True))
    return p


def _mlp(path):
    r = np.random.default_rng(0)
    inits = [numpy_helper.from_array(r.standard_normal((4, 8)).astype(np.float32), "fc1.weight"),
             numpy_helper.from_array(np.zeros(8, np.float32), "fc1.bias")]
    nodes = [helper.make_node("MatMul", ["x", "fc1.weight"], ["h"]), helper.make_node("Add", ["h", "fc1.bias"], ["a"]),
             helper.make_node("Relu", ["a"], ["y"], name="act")]
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 8])
    m = helper.make_model(helper.make_graph(nodes, "mlp", [x], [y], inits), producer_name="test",
                          opset_imports=[helper.make_opsetid("", 17)])
    path.write_bytes(m.SerializeToString())
    return str(path)


def test_import_prints_graph_and_summary(tmp_path):
    path = _mlp(tmp_path / "mlp.onnx")
    out = io.StringIO()
    assert lo.cli_import(_parser().parse_args(["import", path]), out) == 0
    text = out.getvalue()
    assert "input  x: float[batch, 4]" in text
    assert "y = Relu(a)" in text and "h = MatMul(x, fc1.weight)" in text
    assert "nodes: 3   operators: Add x1, MatMul x1, Relu x1" in text
    assert "parameters: 40 in 2 tensors" in text
    out = io.StringIO()
    assert lo.cli_import(_parser().parse_args(["import", path, "--no-graph"]), out) == 0
    assert "MatMul(" not in out.getvalue() and "opset 17" in out.getvalue()


def test_import_names_parameters_after_the_initializers(tmp_path):
    m = lo.load(_mlp(tmp_path / "mlp.onnx"))
    assert dict(m.onnx_names) == {"fc1_weight": "fc1.weight", "fc1_bias": "fc1.bias"}
    assert sorted(m.state_dict()) == ["fc1_bias", "fc1_weight"]


def test_import_of_a_bad_file_is_one_line_and_exit_1(tmp_path, capsys):
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x08\x07\x12\xff\xff\xff")
    assert lo.cli_import(_parser().parse_args(["import", str(bad)])) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith("lamina import: lamina.onnx") and "\n" not in err
    assert lo.cli_import(_parser().parse_args(["import", str(tmp_path / "none.onnx")])) == 1


def test_import_run_feeds_zeros_of_fixed_shapes(tmp_path):
    path = _mlp(tmp_path / "mlp.onnx")
    out = io.StringIO()
    assert lo.cli_import(_parser().parse_args(["import", path, "--no-graph", "--run"]), out) == 0
    assert "input 'x' has no fixed shape (float[batch, 4]); not run" in out.getvalue()
    m = onnx.load(path)
    m.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 3
    path2 = tmp_path / "fixed.onnx"
    path2.write_bytes(m.SerializeToString())
    out = io.StringIO()
    assert lo.cli_import(_parser().parse_args(["import", str(path2), "--no-graph", "--run"]), out) == 0
    assert "ran: output y shape (3, 8) dtype float32" in out.getvalue()
