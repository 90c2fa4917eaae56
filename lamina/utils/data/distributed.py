"""``torch.utils.data.distributed``'s ``DistributedSampler``, defined in ``lamina.distributed``
and imported on first use (so importing the data path does not load the distributed stack)."""


def __getattr__(name):
    if name == "DistributedSampler":
        try:
            from ...distributed import DistributedSampler
        except ImportError as error:
            raise ImportError(f"lamina.utils.data.distributed.DistributedSampler comes from "
                              f"lamina.distributed, which could not be imported: {error}") from None
        return DistributedSampler
    raise AttributeError(f"module 'lamina.utils.data.distributed' has no attribute {name!r}")
