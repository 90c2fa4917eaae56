"""The benchmark suite's smoke run: every case of ``python -m bench --quick`` runs on the CPU and
lands in the JSON with positive times. No timing is asserted."""
import json

import pytest

pytest.importorskip("torch")

from bench import model_cases, ops_cases  # noqa: E402
from bench.run import main  # noqa: E402


def test_quick_suite_writes_every_case(tmp_path):
    path = tmp_path / "bench.json"
    assert main(["--suite", "all", "--quick", "--device", "cpu", "--threads", "1", "--json", str(path)]) == 0
    results = json.loads(path.read_text())
    cases = {c["name"]: c for c in results["cases"]}
    assert list(cases) == [c.name for c in ops_cases.CASES + model_cases.CASES]
    for name, case in cases.items():
        if "skipped" in case:
            assert name == "gpt baby train", f"{name} was skipped: {case['skipped']}"
            continue
        for impl in ("lamina", "pytorch"):
            assert case[f"{impl}_s"] > 0, name
            assert len(case["samples_s"][impl]) == results["settings"]["rounds"]
        assert case["ratio"] > 0
    assert cases["add 4x4 fwd"]["raw_s"] > 0
    assert cases["lenet5 train b64"]["lamina_images_per_s"] > 0
    assert results["machine"]["gemm_peak"]["gflops"] > 0
    assert results["machine"]["numpy"] and results["machine"]["torch"] and results["command"]


def test_filter_threads_and_missing_gpu(tmp_path, capsys):
    import torch
    path = tmp_path / "bench.json"
    before = torch.get_num_threads()
    assert main(["--suite", "ops", "--quick", "--threads", "2", "--filter", "ADD 4X4 FWD", "--json", str(path)]) == 0
    assert torch.get_num_threads() == before  # the caller's thread settings come back
    results = json.loads(path.read_text())
    assert [c["name"] for c in results["cases"]] == ["add 4x4 fwd", "add 4x4 fwd+bwd"]
    assert results["machine"]["torch_num_threads"] == 2
    assert main(["--quick", "--filter", "no such case", "--json", str(path)]) == 2
    import lamina
    if not (lamina.cuda_is_available() and torch.cuda.is_available()):
        assert main(["--quick", "--device", "cuda", "--json", str(path)]) == 2
        assert "--device cuda needs" in capsys.readouterr().err


def test_numpy_column_gets_blas_threads_back(monkeypatch):
    """Lamina's split products leave NumPy's BLAS on one thread; NumPy's column is timed with its
    threads given back."""
    from threadpoolctl import threadpool_limits

    from bench import harness
    from lamina.kernels import _runtime
    controllers = _runtime._blas_controllers()
    if not controllers:
        pytest.skip("no BLAS library that threadpoolctl can control")
    monkeypatch.setattr(_runtime, "_threads", 2)
    seen = {}
    with threadpool_limits(2, user_api="blas"):
        _runtime.single_thread_blas()  # as a split product does
        impls = {"lamina": lambda: None,
                 "raw": lambda: seen.setdefault("raw", {c.get_num_threads() for c in controllers})}
        harness.measure(impls, {"lamina": lambda: None, "raw": lambda: None}, rounds=1, target_s=1e-4,
                        warmup=0, settle_s=0)
        _runtime.restore_blas()
    assert seen["raw"] == {2}
