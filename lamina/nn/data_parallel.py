"""``DataParallel``: PyTorch's single-process multi-GPU wrapper, which Lamina runs on one device.

PyTorch's ``nn.DataParallel`` copies the module to every GPU in ``device_ids`` at each forward,
splits the batch between the copies and gathers the outputs. Lamina runs the wrapped module as
it is, on the device its parameters are on: the forward pass is the module's own, so results
and gradients are those of the plain module, and programs written for ``DataParallel`` (its
``.module`` attribute, its ``module.``-prefixed state dict) run unchanged. For several devices or
machines use ``lamina.nn.parallel.DistributedDataParallel`` (one process per device), as PyTorch
recommends over ``DataParallel`` too.
"""
from __future__ import annotations

import collections.abc

from .. import backend
from ..tensor import Tensor
from .module import Module


def _move(obj, device):
    if isinstance(obj, Tensor):
        return obj if obj.device == device else obj.to(device)
    if isinstance(obj, tuple) and hasattr(obj, "_fields"):
        return type(obj)(*(_move(o, device) for o in obj))
    if isinstance(obj, (list, tuple)):
        return type(obj)(_move(o, device) for o in obj)
    if isinstance(obj, collections.abc.Mapping):
        return type(obj)((k, _move(v, device)) for k, v in obj.items())
    return obj


def _cuda_device(d) -> backend.Device:
    if isinstance(d, int) and not isinstance(d, bool):
        return backend.Device(f"cuda:{d}")
    return backend.Device(d)


class DataParallel(Module):
    """Wraps ``module``; ``forward`` calls it on its one device.

    - ``device_ids``: ignored without a GPU, as in PyTorch. With one, the module's parameters
      must already be on ``device_ids[0]`` (PyTorch's rule) and tensor inputs are moved there;
      further ids add no devices.
    - ``output_device``: tensor outputs are moved there (default: ``device_ids[0]``).
    - ``dim``: the batch dim PyTorch would split; kept for compatibility.
    """

    def __init__(self, module, device_ids=None, output_device=None, dim=0):
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(f"DataParallel: module must be a lamina.nn.Module, got {type(module).__name__}")
        self.module = module
        self.dim = dim
        if not backend.cuda_is_available() or (device_ids is not None and len(device_ids) == 0):
            self.device_ids = []
            self.output_device = None
            self.src_device = None
            return
        if device_ids is None:
            device_ids = [0]
        devices = [_cuda_device(d) for d in device_ids]
        self.device_ids = [d.index for d in devices]
        self.src_device = devices[0]
        self.output_device = _cuda_device(output_device) if output_device is not None else devices[0]
        for name, t in list(module.named_parameters()) + list(module.named_buffers()):
            if t.device != self.src_device:
                raise ValueError(f"DataParallel: module must have its parameters and buffers on device "
                                 f"{self.src_device} (device_ids[0]), but {name!r} is on {t.device}")

    def forward(self, *inputs, **kwargs):
        if self.src_device is None:
            return self.module(*inputs, **kwargs)
        out = self.module(*_move(inputs, self.src_device), **_move(kwargs, self.src_device))
        return _move(out, self.output_device)
