"""``torch.utils.data.sampler``'s names: the samplers."""
from ...data.sampler import (  # noqa: F401
    BatchSampler, RandomSampler, Sampler, SequentialSampler, SubsetRandomSampler, WeightedRandomSampler,
)
