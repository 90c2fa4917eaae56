"""``lamina.backends``: the ``torch.backends`` switches programs set, accepted and stored.

Not to be confused with ``lamina.backend`` (singular), which owns devices, dtypes and the
array module. PyTorch's switches choose among vendor libraries Lamina does not use, so almost
all of them are recorded and have no effect; each flag's line below says so. A flag keeps the
value assigned to it (so code that reads it back sees its own setting); assigning a non-bool to
a bool flag, or to a flag that does not exist, raises at once.

===============================  =========  ===============================================
flag                             default    effect in Lamina
===============================  =========  ===============================================
cudnn.enabled                    True       none: convolutions run on Lamina's own kernels
                                            (NumPy/Numba on CPU, CuPy on GPU), not cuDNN
cudnn.benchmark                  False      none: there is no algorithm search to enable
cudnn.deterministic              False      none: Lamina's CPU ops are deterministic; on GPU
                                            CuPy's scatter-adds may reorder sums regardless
cudnn.allow_tf32                 True       none
cuda.matmul.allow_tf32           False      none: CuPy's matmul precision is its own
cuda.matmul.allow_fp16_reduced_precision_reduction  True   none
cuda.matmul.allow_bf16_reduced_precision_reduction  True   none
cuda.enable_*_sdp(bool)          True       recorded; attention has one implementation
mkldnn.enabled                   True       none: no oneDNN
opt_einsum.enabled               available  none: the contraction order is NumPy's own
opt_einsum.strategy              'auto'     stored only
===============================  =========  ===============================================

``cudnn.is_available()``, ``mps.is_available()``, ``mps.is_built()``, ``mkldnn.is_available()``
and ``mkl.is_available()`` answer False, since Lamina uses none of those libraries;
``cuda.is_built()`` answers whether CuPy is installed; ``opt_einsum.is_available()`` whether
the opt_einsum package is.
"""
from __future__ import annotations

import importlib.util
import sys


class _Flags:
    """A fixed set of named flags: bools must be bools; an unknown name is an error."""

    def __init__(self, prefix: str, **defaults):
        object.__setattr__(self, "_prefix", prefix)
        object.__setattr__(self, "_values", dict(defaults))

    def __getattr__(self, name):
        values = object.__getattribute__(self, "_values")
        if name in values:
            return values[name]
        raise AttributeError(f"{self._prefix} has no flag {name!r}; its flags are {', '.join(sorted(values))}")

    def __setattr__(self, name, value):
        if name not in self._values:
            raise AttributeError(f"{self._prefix} has no flag {name!r} (a misspelling?); its flags are "
                                 f"{', '.join(sorted(self._values))}")
        if isinstance(self._values[name], bool) and not isinstance(value, bool):
            raise TypeError(f"{self._prefix}.{name} must be True or False, got {value!r}")
        self._values[name] = value

    def __repr__(self):
        return f"<{self._prefix}: {', '.join(f'{k}={v!r}' for k, v in self._values.items())}>"


class _Cudnn(_Flags):
    def is_available(self) -> bool:
        return False

    def version(self):
        return None


class _Unavailable:
    """A backend Lamina never uses (Apple's MPS, Intel's MKL)."""

    def __init__(self, name: str):
        self._name = name

    def is_available(self) -> bool:
        return False

    def is_built(self) -> bool:
        return False

    def __repr__(self):
        return f"<lamina.backends.{self._name}: not used by Lamina>"


class _CudaBackend:
    def __init__(self):
        self.matmul = _Flags("lamina.backends.cuda.matmul", allow_tf32=False,
                             allow_fp16_reduced_precision_reduction=True,
                             allow_bf16_reduced_precision_reduction=True)
        self._sdp = {"flash": True, "mem_efficient": True, "math": True, "cudnn": True}

    def is_built(self) -> bool:
        return importlib.util.find_spec("cupy") is not None

    def _enable(self, kind, enabled):
        if not isinstance(enabled, bool):
            raise TypeError(f"lamina.backends.cuda.enable_{kind}_sdp: expected True or False, got {enabled!r}")
        self._sdp[kind] = enabled

    def enable_flash_sdp(self, enabled: bool) -> None:
        self._enable("flash", enabled)

    def enable_mem_efficient_sdp(self, enabled: bool) -> None:
        self._enable("mem_efficient", enabled)

    def enable_math_sdp(self, enabled: bool) -> None:
        self._enable("math", enabled)

    def enable_cudnn_sdp(self, enabled: bool) -> None:
        self._enable("cudnn", enabled)

    def flash_sdp_enabled(self) -> bool:
        return self._sdp["flash"]

    def mem_efficient_sdp_enabled(self) -> bool:
        return self._sdp["mem_efficient"]

    def math_sdp_enabled(self) -> bool:
        return self._sdp["math"]

    def cudnn_sdp_enabled(self) -> bool:
        return self._sdp["cudnn"]


class _OptEinsum(_Flags):
    def is_available(self) -> bool:
        return importlib.util.find_spec("opt_einsum") is not None


cudnn = _Cudnn("lamina.backends.cudnn", enabled=True, benchmark=False, deterministic=False, allow_tf32=True)
cuda = _CudaBackend()
mkldnn = _Cudnn("lamina.backends.mkldnn", enabled=True)
mps = _Unavailable("mps")
mkl = _Unavailable("mkl")
opt_einsum = _OptEinsum("lamina.backends.opt_einsum", enabled=importlib.util.find_spec("opt_einsum") is not None,
                        strategy="auto" if importlib.util.find_spec("opt_einsum") is not None else None)

# ``import torch.backends.cudnn as cudnn`` is how programs reach these (dcgan, imagenet): PyTorch's
# are submodules, so each object is registered under its dotted name for the import system to find.
for _name in ("cudnn", "cuda", "mkldnn", "mps", "mkl", "opt_einsum"):
    sys.modules[f"{__name__}.{_name}"] = globals()[_name]
del _name
