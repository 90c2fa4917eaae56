"""ONNX operator conformance of Lamina: the ``onnx`` package's node tests, run through
``onnx.backend.test.runner.Runner`` with ``lamina.onnx.backend.LaminaBackend``.

The set: every node test (generated from the installed ``onnx`` package, nothing downloaded)
whose graph uses only one operator, that operator being one of ``OPERATORS`` (those CNNs, RNNs
and Transformers need). ``--expanded`` also runs the function-expanded variants of those
operators' tests (graphs of several simpler ops), reported separately.

    python bench/onnx_conformance.py --onnxruntime --all   # writes bench/ONNX_CONFORMANCE.md
    python bench/onnx_conformance.py --ops Relu Conv --out -
"""
from __future__ import annotations

import argparse
import collections
import os
import re
import sys
import time
import unittest
import warnings

OPERATORS = (
    "Abs Acos Add And ArgMax ArgMin Asin Atan AveragePool BatchNormalization Cast Ceil Clip Concat Constant "
    "ConstantOfShape Conv ConvTranspose Cos Cosh CumSum Div Dropout Einsum Elu Equal Erf Exp Expand Flatten Floor "
    "GRU Gather GatherElements Gemm GlobalAveragePool GlobalMaxPool Greater HardSigmoid Identity LayerNormalization "
    "LeakyRelu Less Log LogSoftmax LSTM MatMul Max MaxPool Mean Min Mul Neg Not Or Pad Pow PRelu Range Reciprocal "
    "ReduceL2 ReduceLogSumExp ReduceMax ReduceMean ReduceMin ReduceProd ReduceSum ReduceSumSquare Relu Reshape RNN "
    "ScatterElements Selu Shape Sigmoid Sign Sin Sinh Size Slice Softmax Softplus Softsign Split Sqrt Squeeze Sub "
    "Sum Tan Tanh Tile TopK Transpose Trilu Unsqueeze Where Xor"
).split()


def node_tests(modules=None):
    """The node test cases of the installed onnx package: all of them, or only those that the
    named modules of ``onnx.backend.test.case.node`` generate (much faster: generating all of
    them runs every reference implementation)."""
    import importlib
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if modules is None:
            from onnx.backend.test.loader import load_model_tests
            return load_model_tests(kind="node")
        for m in modules:
            importlib.import_module(f"onnx.backend.test.case.node.{m}")
        from onnx.backend.test.case.node import _NodeTestCases
        return list(_NodeTestCases)


def select(ops=OPERATORS, expanded=False, tests=None):
    """{test name: operator} for the node tests of ``ops`` (single-operator graphs; with
    ``expanded``, the ``*_expanded*`` variants of those tests instead)."""
    tests = node_tests() if tests is None else tests
    single = {}
    for t in tests:
        kinds = {n.op_type for n in t.model.graph.node}
        if len(kinds) == 1 and next(iter(kinds)) in ops:
            single[t.name] = next(iter(kinds))
    if not expanded:
        return single
    out = {}
    for t in tests:
        base = re.sub(r"_expanded(_ver\d+)?$", "", t.name)
        if base != t.name and base in single and t.name not in single:
            out[t.name] = single[base]
    return out


class _Result(unittest.TestResult):
    def __init__(self):
        super().__init__()
        self.outcome = {}

    def addSuccess(self, test):
        self.outcome[test._testMethodName] = ("pass", "")

    def addFailure(self, test, err):
        self.outcome[test._testMethodName] = ("fail", _reason(err))

    def addError(self, test, err):
        self.outcome[test._testMethodName] = ("fail", _reason(err))

    def addSkip(self, test, reason):
        self.outcome[test._testMethodName] = ("skip", reason)


def _reason(err):
    _, e, _ = err
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text[:300]}"


def run(names, device="CPU", backend=None):
    """Run the named node tests (with Lamina, or another backend such as ``onnxruntime.backend``);
    {name: (status, reason)} and the seconds taken."""
    import onnx.backend.test
    if backend is None:
        from lamina.onnx.backend import LaminaBackend as backend
    runner = onnx.backend.test.runner.Runner(backend, __name__)
    pattern = "^(" + "|".join(re.escape(n) for n in sorted(names)) + f")_{device.lower()}$"
    runner.include(pattern)
    suite = runner.test_suite
    result = _Result()
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import numpy as np
        with np.errstate(all="ignore"):
            suite.run(result)
    secs = time.perf_counter() - t0
    out = {}
    for method, res in result.outcome.items():
        out[method[: -len(device) - 1]] = res
    out = {n: out.get(n, ("skip", "not run by the runner")) for n in names}
    return out, secs


def check_cases(cases, device="CPU"):
    """Run test cases the way the Runner's node tests do (prepare, run every data set, compare
    with ``Runner.assert_similar_outputs``) without building the Runner's full test list:
    {name: (status, reason)}."""
    import numpy as np
    from onnx.backend.test.runner import Runner, _normalize_tensor
    from lamina.onnx.backend import LaminaBackend
    out = {}
    for case in cases:
        try:
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore")
                rep = LaminaBackend.prepare(case.model, device)
                for inputs, ref in case.data_sets:
                    got = rep.run([_normalize_tensor(x) for x in inputs])
                    Runner.assert_similar_outputs([_normalize_tensor(x) for x in ref], got, rtol=case.rtol,
                                                  atol=case.atol)
            out[case.name] = ("pass", "")
        except Exception as e:  # a failing case is a result, not a crash of the run
            out[case.name] = ("fail", _reason((type(e), e, None)))
    return out


# why the tests Lamina fails cannot pass (or are out of scope), for the table
WHY = {
    "test_identity_opt": "optional-typed input: Lamina values are tensors only (no optional or sequence types)",
    "test_identity_sequence": "sequence-typed input: Lamina values are tensors only (no optional or sequence types)",
}
WHY_ERROR = {
    "not support: Loop": "the expansion is a Loop over a subgraph; control-flow operators (Loop, If, Scan) are not "
                         "mapped",
}


def _why(name, err=""):
    for key, text in WHY.items():
        if name.startswith(key):
            return text
    for key, text in WHY_ERROR.items():
        if key in err:
            return text
    return ""


def table(selected, results, title, other=None, other_name=""):
    per = collections.defaultdict(lambda: collections.Counter())
    per_other = collections.defaultdict(lambda: collections.Counter())
    for name, op in selected.items():
        per[op][results[name][0]] += 1
        if other:
            per_other[op][other[name][0]] += 1
    total = collections.Counter()
    for c in per.values():
        total.update(c)
    n = sum(total.values())
    rate = 100.0 * total["pass"] / max(n, 1)
    lines = [f"### {title}", "",
             f"**Lamina: {total['pass']} / {n} passed ({rate:.1f} %)**, {total['fail']} failed, {total['skip']} skipped."]
    if other:
        op_pass = sum(c["pass"] for c in per_other.values())
        lines.append(f"{other_name} on the same tests and machine: {op_pass} / {n} passed "
                     f"({100.0 * op_pass / max(n, 1):.1f} %).")
    head = "| operator | pass | fail | skip |" + (f" {other_name} pass |" if other else "")
    lines += ["", head, "|---|---:|---:|---:|" + ("---:|" if other else "")]
    for op in sorted(per):
        c = per[op]
        lines.append(f"| {op} | {c['pass']} | {c['fail']} | {c['skip']} |" +
                     (f" {per_other[op]['pass']} |" if other else ""))
    fails = sorted((selected[n], n, r[1]) for n, r in results.items() if n in selected and r[0] == "fail")
    if fails:
        lines += ["", "Failures:", "", "| operator | test | why | error |", "|---|---|---|---|"]
        for op, name, err in fails:
            lines.append(f"| {op} | {name} | {_why(name, err)} | {err.replace('|', '/')[:160]} |")
    return "\n".join(lines), total["pass"], n


def whole_suite():
    """Every node test of the installed onnx package (all operators, all domains), summarised."""
    tests = node_tests()
    res = check_cases(tests)
    per = collections.defaultdict(collections.Counter)
    for t in tests:
        kinds = sorted({n.op_type for n in t.model.graph.node})
        per[kinds[0] if len(kinds) == 1 else "(several operators)"][res[t.name][0]] += 1
    passed = sum(c["pass"] for c in per.values())
    unmapped = sorted(op for op, c in per.items() if not c["pass"] and op != "(several operators)")
    partial = sorted(f"{op} ({c['pass']}/{c['pass'] + c['fail']})" for op, c in per.items()
                     if c["pass"] and c["fail"])
    return "\n".join([
        "### Every node test of the package", "",
        f"**Lamina: {passed} / {len(tests)} passed ({100.0 * passed / len(tests):.1f} %)** over all "
        f"{len(per)} operators the suite tests.", "",
        f"Partly passing: {', '.join(partial) or '-'}.", "",
        f"Not mapped (or failing every test): {', '.join(unmapped)}."])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--ops", nargs="*", default=list(OPERATORS), help="operators to test (default: the issue's set)")
    ap.add_argument("--no-expanded", action="store_true", help="skip the function-expanded variants")
    ap.add_argument("--onnxruntime", action="store_true", help="also run onnxruntime on the same tests, for reference")
    ap.add_argument("--all", action="store_true", help="also summarise every node test of the onnx package")
    ap.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "ONNX_CONFORMANCE.md"),
                    help="markdown file to write ('-': print only)")
    args = ap.parse_args(argv)
    import onnx
    selected = select(args.ops)
    results, secs = run(selected)
    ort_name, ort = "", None
    if args.onnxruntime:
        import onnxruntime
        import onnxruntime.backend
        ort_name = f"onnxruntime {onnxruntime.__version__}"
        ort, _ = run(selected, backend=onnxruntime.backend)
    text, passed, n = table(selected, results, "Node tests of single operators", ort, ort_name)
    parts = [
        "# ONNX operator conformance", "",
        f"Node tests of the `onnx` {onnx.__version__} backend test suite (generated from the installed package), "
        f"run with `lamina.onnx.backend.LaminaBackend` through `onnx.backend.test.runner.Runner` on the CPU "
        f"(`python bench/onnx_conformance.py --onnxruntime --all`; the tests themselves ran in {secs:.0f} s, generating them "
        f"takes longer). A test belongs to an operator when its graph uses "
        f"that operator only.", "", text]
    if not args.no_expanded:
        exp = select(args.ops, expanded=True)
        results_e, secs_e = run(exp)
        ort_e = run(exp, backend=onnxruntime.backend)[0] if args.onnxruntime else None
        text_e, _, _ = table(exp, results_e, "Function-expanded variants (graphs of simpler operators)", ort_e,
                             ort_name)
        parts += ["", text_e]
    if args.all:
        parts += ["", whole_suite()]
    doc = "\n".join(parts) + "\n"
    if args.out == "-":
        print(doc)
    else:
        with open(args.out, "w") as f:
            f.write(doc)
        print(f"{passed}/{n} passed ({100.0 * passed / max(n, 1):.1f} %); wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
