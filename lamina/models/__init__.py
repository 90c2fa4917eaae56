"""Ready-made models: LeNet-5, MLP, char-RNN, GPT, BERT (and its sentence-embedding pipeline) and
an encoder-decoder Transformer."""
from .bert import BertConfig, BertModel  # noqa: F401
from .char_rnn import CharRNN, CharRNNConfig  # noqa: F401
from .gpt import GPT, GPTConfig  # noqa: F401
from .lenet import LeNet5  # noqa: F401
from .mlp import MLP  # noqa: F401
from .sentence import SentenceEncoder, all_minilm_l6_v2  # noqa: F401
from .seq2seq import Seq2SeqTransformer  # noqa: F401
