"""lamina.utils.data is torch.utils.data's path: the same public names, backed by lamina.data."""
import importlib

import torch.utils.data as tud

import lamina
import lamina.data.loader
import lamina.utils.data as lud


def test_the_names_pytorch_programs_import_are_there():
    names = ["BatchSampler", "ChainDataset", "ConcatDataset", "DataLoader", "Dataset", "IterableDataset",
             "RandomSampler", "Sampler", "SequentialSampler", "Subset", "SubsetRandomSampler",
             "TensorDataset", "WeightedRandomSampler", "default_collate", "default_convert",
             "get_worker_info", "random_split"]
    for name in names:
        assert hasattr(tud, name)  # a real torch.utils.data name
        assert getattr(lud, name) is not None
    assert lud.DataLoader is lamina.data.loader.DataLoader
    assert lamina.utils.data is lud


def test_submodule_paths():
    assert importlib.import_module("lamina.utils.data.dataloader").DataLoader is lud.DataLoader
    assert importlib.import_module("lamina.utils.data.dataset").Subset is lud.Subset
    assert importlib.import_module("lamina.utils.data.sampler").BatchSampler is lud.BatchSampler


def test_distributed_sampler_comes_from_lamina_distributed():
    from lamina.distributed import DistributedSampler
    from lamina.utils.data.distributed import DistributedSampler as via_path
    assert lud.DistributedSampler is DistributedSampler is via_path
    sampler = DistributedSampler(range(10), num_replicas=2, rank=1, shuffle=False)
    loader = lud.DataLoader(lud.TensorDataset(lamina.tensor(list(range(10)))), batch_size=2, sampler=sampler)
    assert [b[0].numpy().tolist() for b in loader] == [[1, 3], [5, 7], [9]] and len(loader) == 3
