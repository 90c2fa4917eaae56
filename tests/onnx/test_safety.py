"""lamina.onnx.load on corrupt, truncated and hostile files: one clear OnnxImportError, no crash,
no file read outside the model's folder; unsupported operators all listed at once."""
import os

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

import lamina  # noqa: E402
import lamina.onnx as lo  # noqa: E402
from lamina.onnx import OnnxImportError, UnsupportedOperatorError  # noqa: E402


def _model(nodes, inputs, outputs, inits=(), opset=17):
    g = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", opset)])


def _vi(name, shape=(2, 3), t=TensorProto.FLOAT):
    return helper.make_tensor_value_info(name, t, shape)


def _add_model(w):
    return _model([helper.make_node("Add", ["x", "w"], ["y"])], [_vi("x")], [_vi("y")], [w])


def _save(model, path):
    path.write_bytes(model.SerializeToString())
    return str(path)


def test_valid_model_runs(tmp_path):
    w = numpy_helper.from_array(np.arange(6, dtype=np.float32).reshape(2, 3), "w")
    m = lo.load(_save(_add_model(w), tmp_path / "m.onnx"))
    x = np.ones((2, 3), np.float32)
    np.testing.assert_array_equal(m(x).detach().numpy(), x + np.arange(6).reshape(2, 3))


def test_not_onnx_and_truncated_files(tmp_path):
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"\xff\xfe this is not a protobuf \x00\x01" * 10)
    with pytest.raises(OnnxImportError, match="not a valid ONNX model"):
        lo.load(str(junk))
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(OnnxImportError, match="no ONNX graph"):
        lo.load(str(empty))
    w = numpy_helper.from_array(np.random.rand(64, 64).astype(np.float32), "w")
    data = _add_model(w).SerializeToString()
    for cut in (len(data) // 3, len(data) // 2, len(data) - 7):
        p = tmp_path / f"cut{cut}.onnx"
        p.write_bytes(data[:cut])
        with pytest.raises(OnnxImportError) as e:
            lo.load(str(p))
        assert "\n" not in str(e.value)
    with pytest.raises(FileNotFoundError):
        lo.load(str(tmp_path / "missing.onnx"))
    with pytest.raises(OnnxImportError, match="not a regular file"):
        lo.load(str(tmp_path))


def test_huge_declared_size_is_refused_before_allocating(tmp_path):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20], raw_data=b"\0" * 16)
    with pytest.raises(OnnxImportError, match="over the .* byte limit"):
        lo.load(_save(_add_model(w), tmp_path / "huge.onnx"))
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1000, 1000], raw_data=b"\0" * 16)
    with pytest.raises(OnnxImportError, match=r"declares shape \[1000, 1000\] \(4000000 bytes\) but holds 16"):
        lo.load(_save(_add_model(w), tmp_path / "short.onnx"))
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[100, 100])
    w.float_data.extend([1.0, 2.0])
    with pytest.raises(OnnxImportError, match="holds 2 values"):
        lo.load(_save(_add_model(w), tmp_path / "few.onnx"))
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, -3], raw_data=b"")
    with pytest.raises(OnnxImportError, match="negative dims"):
        lo.load(_save(_add_model(w), tmp_path / "neg.onnx"))


def _external(location, length=24, offset=0):
    w = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[2, 3])
    w.data_location = TensorProto.EXTERNAL
    for k, v in (("location", location), ("offset", str(offset)), ("length", str(length))):
        e = w.external_data.add()
        e.key, e.value = k, v
    return w


def test_external_data_inside_the_folder_loads(tmp_path):
    vals = np.arange(6, dtype=np.float32)
    (tmp_path / "weights.bin").write_bytes(b"\0" * 8 + vals.tobytes())
    m = lo.load(_save(_add_model(_external("weights.bin", 24, 8)), tmp_path / "m.onnx"))
    np.testing.assert_array_equal(m.w.detach().numpy(), vals.reshape(2, 3))


def test_external_data_outside_the_folder_is_never_read(tmp_path, monkeypatch):
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(6, dtype=np.float32).tobytes())
    folder = tmp_path / "model"
    folder.mkdir()
    opened = []
    real_open = open

    def spy(path, *a, **k):
        opened.append(os.path.realpath(path))
        return real_open(path, *a, **k)
    monkeypatch.setattr("builtins.open", spy)
    for loc in ("../secret.bin", str(secret), "sub/../../secret.bin"):
        with pytest.raises(OnnxImportError, match="outside the model's folder|relative to the model's folder"):
            lo.load(_save(_add_model(_external(loc)), folder / "m.onnx"))
    os.symlink(secret, folder / "link.bin")
    with pytest.raises(OnnxImportError, match="outside the model's folder"):
        lo.load(_save(_add_model(_external("link.bin")), folder / "m.onnx"))
    assert str(secret.resolve()) not in opened


def test_external_data_ranges_are_checked(tmp_path):
    (tmp_path / "w.bin").write_bytes(b"\0" * 24)
    with pytest.raises(OnnxImportError, match="lies outside"):
        lo.load(_save(_add_model(_external("w.bin", 24, 8)), tmp_path / "a.onnx"))
    with pytest.raises(OnnxImportError, match="declared shape and type need 24"):
        lo.load(_save(_add_model(_external("w.bin", 16, 0)), tmp_path / "b.onnx"))
    with pytest.raises(OnnxImportError, match="does not exist"):
        lo.load(_save(_add_model(_external("nope.bin")), tmp_path / "c.onnx"))
    with pytest.raises(OnnxImportError, match="not a regular file|outside"):
        lo.load(_save(_add_model(_external(".")), tmp_path / "d.onnx"))


def test_cyclic_graph_missing_input_and_duplicate_output(tmp_path):
    cyc = _model([helper.make_node("Relu", ["b"], ["a"]), helper.make_node("Relu", ["a"], ["b"]),
                  helper.make_node("Add", ["x", "b"], ["y"])], [_vi("x")], [_vi("y")])
    with pytest.raises(OnnxImportError, match="cycle through nodes"):
        lo.load(_save(cyc, tmp_path / "cyc.onnx"))
    miss = _model([helper.make_node("Add", ["x", "nowhere"], ["y"])], [_vi("x")], [_vi("y")])
    with pytest.raises(OnnxImportError, match="reads 'nowhere'"):
        lo.load(_save(miss, tmp_path / "miss.onnx"))
    dup = _model([helper.make_node("Relu", ["x"], ["y"]), helper.make_node("Neg", ["x"], ["y"])],
                 [_vi("x")], [_vi("y")])
    with pytest.raises(OnnxImportError, match="produced twice"):
        lo.load(_save(dup, tmp_path / "dup.onnx"))
    lost = _model([helper.make_node("Relu", ["x"], ["y"])], [_vi("x")], [_vi("z")])
    with pytest.raises(OnnxImportError, match="produced by no node"):
        lo.load(_save(lost, tmp_path / "lost.onnx"))


def test_nodes_out_of_order_are_sorted(tmp_path):
    m = _model([helper.make_node("Neg", ["a"], ["y"]), helper.make_node("Relu", ["x"], ["a"])],
               [_vi("x")], [_vi("y")])
    mod = lo.load(_save(m, tmp_path / "m.onnx"))
    x = np.array([[-1, 2, -3], [4, -5, 6]], np.float32)
    np.testing.assert_array_equal(mod(x).numpy(), -np.maximum(x, 0))


def test_unsupported_operators_are_listed_all_at_once(tmp_path):
    nodes = [helper.make_node("Relu", ["x"], ["a"]), helper.make_node("StringNormalizer", ["a"], ["b"]),
             helper.make_node("Unique", ["b"], ["c"]), helper.make_node("Unique", ["c"], ["d"]),
             helper.make_node("FusedThing", ["d"], ["y"], domain="com.example")]
    m = _model(nodes, [_vi("x")], [_vi("y")])
    m.opset_import.append(helper.make_opsetid("com.example", 1))
    with pytest.raises(UnsupportedOperatorError) as e:
        lo.load(_save(m, tmp_path / "m.onnx"))
    assert e.value.ops == ["StringNormalizer", "Unique", "com.example::FusedThing"]
    assert "3 operator(s)" in str(e.value) and "\n" not in str(e.value)


def test_hostile_shape_inputs_are_refused_at_run_time(tmp_path):
    shape = numpy_helper.from_array(np.array([1 << 30, 1 << 30], np.int64), "s")
    m = _model([helper.make_node("ConstantOfShape", ["s"], ["y"])], [], [_vi("y", (None, None))], [shape])
    mod = lo.load(_save(m, tmp_path / "m.onnx"))
    with pytest.raises(OnnxImportError, match="byte limit"):
        mod()
    m = _model([helper.make_node("Expand", ["x", "s"], ["y"])], [_vi("x", (1, 1))], [_vi("y", (None, None))],
               [shape])
    with pytest.raises(OnnxImportError, match="byte limit"):
        lo.load(_save(m, tmp_path / "e.onnx"))(np.ones((1, 1), np.float32))


def test_wrong_inputs_are_a_clear_error(tmp_path):
    w = numpy_helper.from_array(np.zeros((2, 3), np.float32), "w")
    mod = lo.load(_save(_add_model(w), tmp_path / "m.onnx"))
    with pytest.raises(TypeError, match=r"missing inputs \['x'\]"):
        mod()
    with pytest.raises(TypeError, match="unknown input 'q'"):
        mod(q=np.zeros(1))
    with pytest.raises(RuntimeError, match=r"Add failed on inputs of shapes \(\(4, 5\), \(2, 3\)\)"):
        mod(lamina.zeros(4, 5))
