"""``torch.utils.data.dataloader``'s names: the loader, its collation and ``get_worker_info``."""
from ...data.collate import default_collate, default_convert  # noqa: F401
from ...data.loader import DataLoader  # noqa: F401
from ...data.worker import get_worker_info  # noqa: F401
