"""Optimisers (SGD, Adam, AdamW, NAdam, RAdam, Adamax, RMSprop, Adagrad, Adadelta, LBFGS),
learning-rate schedules and gradient clipping.

Every built-in optimiser keeps each param group in flat buffers (see ``lamina.optim.flat``) and
updates it with a few in-place array operations per step; LBFGS works on the whole flat
parameter vector. ``Optimizer`` is also the base for optimisers written the PyTorch way (their
own ``step`` over ``param_groups`` and ``self.state[p]``). Schedulers live in ``lr_scheduler``.
"""
from . import lr_scheduler  # noqa: F401
from .adadelta import Adadelta  # noqa: F401
from .adagrad import Adagrad  # noqa: F401
from .adam import Adam, AdamW  # noqa: F401
from .adamax import Adamax  # noqa: F401
from .clip import clip_grad_norm_, clip_grad_value_  # noqa: F401
from .lbfgs import LBFGS  # noqa: F401
from .nadam import NAdam  # noqa: F401
from .optimizer import Optimizer  # noqa: F401
from .radam import RAdam  # noqa: F401
from .rmsprop import RMSprop  # noqa: F401
from .sgd import SGD  # noqa: F401
