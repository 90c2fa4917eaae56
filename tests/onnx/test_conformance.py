"""The onnx package's backend node tests through lamina.onnx.backend.LaminaBackend.

The fast test runs the operators CNNs, RNNs and Transformers lean on most (about a third of the
set, a few seconds); the slow one runs the whole set of bench/onnx_conformance.py and checks
that at least 95 % pass and that nothing fails beyond the failures explained in
bench/ONNX_CONFORMANCE.md."""
import importlib.util
import os

import pytest

pytest.importorskip("onnx")

_BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench", "onnx_conformance.py")


def _conformance():
    spec = importlib.util.spec_from_file_location("onnx_conformance", _BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


# operator -> the module of onnx.backend.test.case.node that generates its tests
CORE = {"Conv": "conv", "ConvTranspose": "convtranspose", "MaxPool": "maxpool", "AveragePool": "averagepool",
        "GlobalAveragePool": "globalaveragepool", "BatchNormalization": "batch_normalization", "Gemm": "gemm",
        "MatMul": "matmul", "Softmax": "softmax", "LayerNormalization": "layernormalization", "LSTM": "lstm",
        "GRU": "gru", "RNN": "rnn", "Reshape": "reshape", "Slice": "slice", "Split": "split", "Squeeze": "squeeze",
        "Unsqueeze": "unsqueeze", "Gather": "gather", "Clip": "clip", "Pad": "pad", "Einsum": "einsum",
        "ReduceSum": "reducesum", "Expand": "expand", "TopK": "topk", "CumSum": "cumsum", "Trilu": "trilu"}

# optional- and sequence-typed values (Lamina values are tensors)
KNOWN_FAILURES = {"test_identity_opt", "test_identity_sequence"}


def test_core_operators_pass_their_node_tests():
    conf = _conformance()
    cases = conf.node_tests(sorted(set(CORE.values())))
    selected = conf.select(tuple(CORE), tests=cases)
    assert len(selected) > 200
    results = conf.check_cases([c for c in cases if c.name in selected])
    assert set(results) == set(selected)
    failed = {n: r[1] for n, r in results.items() if r[0] != "pass"}
    assert not failed, failed


@pytest.mark.slow
def test_the_issue_operator_set_passes_95_percent():
    conf = _conformance()
    selected = conf.select()
    results, _ = conf.run(selected)
    passed = sum(r[0] == "pass" for r in results.values())
    assert passed / len(selected) >= 0.95
    failed = {n for n, r in results.items() if r[0] != "pass"}
    assert failed <= KNOWN_FAILURES, failed - KNOWN_FAILURES


# operators beyond the issue's set that modern exports use (Transformers, detection, quantisation)
EXTRA = {"Resize": "resize", "Attention": "attention", "RotaryEmbedding": "rotaryembedding",
         "RMSNormalization": "rmsnormalization", "GroupNormalization": "groupnormalization",
         "QuantizeLinear": "quantizelinear", "DequantizeLinear": "dequantizelinear", "GridSample": "gridsample",
         "DepthToSpace": "depthtospace", "SoftmaxCrossEntropyLoss": "softmax_cross_entropy_loss"}
# cubic GridSample is not mapped
EXTRA_KNOWN = {"test_gridsample_bicubic", "test_gridsample_bicubic_align_corners_0_additional_1",
               "test_gridsample_bicubic_align_corners_1_additional_1"}


def test_operators_beyond_the_issue_set_pass_their_node_tests():
    conf = _conformance()
    cases = conf.node_tests(sorted(set(EXTRA.values())))
    selected = conf.select(tuple(EXTRA), tests=cases)
    assert len(selected) > 180
    results = conf.check_cases([c for c in cases if c.name in selected])
    failed = {n: r[1] for n, r in results.items() if r[0] != "pass"}
    assert set(failed) <= EXTRA_KNOWN, failed
