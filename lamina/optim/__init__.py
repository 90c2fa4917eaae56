"""Optimisers (SGD, Adam, AdamW, RMSprop, Adagrad), learning-rate schedules and gradient clipping.

Every optimiser keeps each param group in flat buffers (see ``lamina.optim.flat``) and updates
it with a few in-place array operations per step; schedulers live in ``lr_scheduler``.
"""
from . import lr_scheduler  # noqa: F401
from .adagrad import Adagrad  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .clip import clip_grad_norm_, clip_grad_value_  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401
