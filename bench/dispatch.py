"""Per-call dispatch time of small ops, best of many repeats: run it once per source tree to compare
two versions side by side (``PYTHONPATH=<tree> python bench/dispatch.py``), alternating runs."""
import timeit

import lamina
x = lamina.randn(4, 4); y = lamina.randn(4, 4)
a = lamina.randn(4, 4, requires_grad=True); b = lamina.randn(4, 4, requires_grad=True)
r = {}
for name, stmt in [("mul", lambda: x * y), ("add", lambda: x + y), ("matmul", lambda: x @ y),
                   ("mul_rec", lambda: a * b)]:
    r[name] = min(timeit.repeat(stmt, number=3000, repeat=25)) / 3000 * 1e6
print(" ".join(f"{k}={v:.2f}" for k, v in r.items()))
