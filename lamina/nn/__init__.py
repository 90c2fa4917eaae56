"""Layers (``Module`` and its subclasses), parameters, initialisation, losses and the functional API."""
from . import functional, init, parallel, utils  # noqa: F401
from .attention import MultiheadAttention  # noqa: F401
from .activation import ELU, GELU, LeakyReLU, LogSoftmax, ReLU, Sigmoid, SiLU, Softmax, Softplus, Tanh  # noqa: F401
from .container import ModuleDict, ModuleList, Sequential  # noqa: F401
from .conv import Conv1d, Conv2d, ConvTranspose1d, ConvTranspose2d  # noqa: F401
from .dropout import Dropout  # noqa: F401
from .embedding import Embedding  # noqa: F401
from .linear import Flatten, Identity, Linear, Unflatten  # noqa: F401
from .losses import (  # noqa: F401
    BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, HuberLoss, KLDivLoss, L1Loss, MSELoss, NLLLoss, SmoothL1Loss,
)
from .module import Module  # noqa: F401
from .normalization import BatchNorm1d, BatchNorm2d, LayerNorm  # noqa: F401
from .parameter import Parameter  # noqa: F401
from .rnn import GRU, GRUCell, LSTM, LSTMCell, RNN, RNNBase, RNNCell, RNNCellBase  # noqa: F401
from .positional import LearnedPositionalEmbedding, SinusoidalPositionalEncoding  # noqa: F401
from .transformer import (  # noqa: F401
    Transformer, TransformerDecoder, TransformerDecoderLayer, TransformerEncoder, TransformerEncoderLayer,
)
from .pooling import (  # noqa: F401
    AdaptiveAvgPool1d, AdaptiveAvgPool2d, AvgPool1d, AvgPool2d, MaxPool1d, MaxPool2d,
)
from . import rnn_utils as _rnn_utils  # noqa: E402
from .activation import (  # noqa: F401,E402
    CELU, GLU, Hardsigmoid, Hardswish, Hardtanh, LogSigmoid, Mish, PReLU, ReLU6, SELU, Softmin, Softsign,
    Tanhshrink, Threshold,
)
from .distance import CosineSimilarity, PairwiseDistance  # noqa: F401,E402
from .dropout import Dropout1d, Dropout2d, Dropout3d  # noqa: F401,E402
from .normalization import GroupNorm, InstanceNorm1d, InstanceNorm2d, InstanceNorm3d  # noqa: F401,E402
from .padding import (  # noqa: F401,E402
    CircularPad1d, CircularPad2d, CircularPad3d, ConstantPad1d, ConstantPad2d, ConstantPad3d, ReflectionPad1d,
    ReflectionPad2d, ReflectionPad3d, ReplicationPad1d, ReplicationPad2d, ReplicationPad3d, ZeroPad1d, ZeroPad2d,
    ZeroPad3d,
)
from .upsampling import PixelShuffle, PixelUnshuffle, Upsample, UpsamplingBilinear2d, UpsamplingNearest2d  # noqa: F401,E402

# lamina.nn.utils is a module, not a package: its ``rnn`` part is registered by name (as os.path
# is), so ``import lamina.nn.utils.rnn`` and ``from lamina.nn.utils.rnn import ...`` work as in PyTorch.
utils.rnn = _rnn_utils
__import__("sys").modules[__name__ + ".utils.rnn"] = _rnn_utils
from .activation import Hardshrink, Softmax2d, Softshrink  # noqa: F401,E402
from .data_parallel import DataParallel  # noqa: F401,E402
