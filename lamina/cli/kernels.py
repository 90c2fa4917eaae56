"""``lamina kernels warmup``: compile the CPU kernels ahead of time into the on-disk cache, so
the first training run of a fresh install or a new version does not spend its first seconds
compiling. Prints the seconds each kernel family took and where the cache lives."""
from __future__ import annotations

from .run import UserError, add_threads_option

DTYPES = ("float32", "float64")


def add_parser(sub) -> None:
    p = sub.add_parser("kernels", help="the compiled CPU kernels (fill the cache ahead of time)")
    actions = p.add_subparsers(dest="action", required=True)
    warm = actions.add_parser("warmup", help="compile every CPU kernel into the on-disk cache")
    warm.add_argument("--dtype", nargs="+", choices=DTYPES, default=list(DTYPES),
                      help="the dtypes to compile for (default: float32 float64)")
    add_threads_option(warm)
    warm.set_defaults(func=_warmup)


def _warmup(args) -> int:
    import time

    from .. import kernels
    if not kernels.enabled():
        raise UserError("kernels warmup: compiled kernels are off (LAMINA_KERNELS=0, or Numba is not installed)")
    start = time.perf_counter()
    times = kernels.warmup(dtypes=tuple(dict.fromkeys(args.dtype)))
    for family, seconds in times.items():
        print(f"{family:<12s} {seconds:7.2f} s")
    print(f"{'total':<12s} {time.perf_counter() - start:7.2f} s")
    where = kernels.cache_dir()
    print(f"cache: {where}" if kernels.cache_enabled() else f"cache: none ({where} is not writable; "
          "kernels compile in every process)")
    return 0
