"""Tiny float64 models and training steps the graph tests share."""
import copy

import numpy as np

import lamina
import lamina.nn.functional as F
from lamina.models import (GPT, MLP, BertConfig, BertModel, CharRNN, CharRNNConfig, GPTConfig, LeNet5,
                           Seq2SeqTransformer)


def _ids(rng, shape, vocab, low=0):
    return lamina.tensor(rng.integers(low, vocab, size=shape))


def make(name, seed=0):
    """``(model, loss_fn(model, *inputs) -> loss, inputs_fn(rng) -> inputs)`` for one model."""
    lamina.manual_seed(seed)
    if name == "lenet":
        m = LeNet5()
        return m, lambda m, x, t: F.cross_entropy(m(x), t), \
            lambda r: (lamina.tensor(r.standard_normal((2, 1, 28, 28))), _ids(r, (2,), 10))
    if name == "mlp":
        m = MLP([12, 16, 8, 5])
        return m, lambda m, x, t: F.cross_entropy(m(x), t), \
            lambda r: (lamina.tensor(r.standard_normal((4, 12))), _ids(r, (4,), 5))
    if name == "gpt":
        m = GPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=2, n_embd=8))
        return m, lambda m, x, t: m(x, t)[1], lambda r: (_ids(r, (2, 6), 11), _ids(r, (2, 6), 11))
    if name == "bert":
        m = BertModel(BertConfig(vocab_size=13, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                                 intermediate_size=16, max_position_embeddings=8, hidden_dropout_prob=0.0,
                                 attention_probs_dropout_prob=0.0))
        return m, lambda m, x: (m(x).last_hidden_state ** 2).mean(), lambda r: (_ids(r, (2, 5), 13),)
    if name == "charrnn":
        m = CharRNN(CharRNNConfig(vocab_size=7, n_embd=4, hidden_size=6, n_layer=1))
        return m, lambda m, x, t: m(x, t)[1], lambda r: (_ids(r, (2, 5), 7), _ids(r, (2, 5), 7))
    if name == "seq2seq":
        m = Seq2SeqTransformer(9, d_model=8, nhead=2, num_encoder_layers=1, num_decoder_layers=1,
                               dim_feedforward=16, dropout=0.0, max_len=8)
        return m, lambda m, s, t, y: F.cross_entropy(m(s, t).reshape(-1, 9), y.reshape(-1)), \
            lambda r: (_ids(r, (2, 5), 9, 1), _ids(r, (2, 4), 9), _ids(r, (2, 4), 9))  # no padding: a
        # source row of padding only is NaN in PyTorch's attention too
    raise KeyError(name)


NAMES = ["lenet", "mlp", "gpt", "bert", "charrnn", "seq2seq"]


def train_step(model, loss_fn, lr=0.05, opt=None, clip=None):
    """A whole training step closing over ``model`` and its optimiser (``opt``, else SGD); with
    ``clip`` the gradients' norm is clipped to it before the update."""
    if opt is None:
        opt = lamina.optim.SGD(model.parameters(), lr=lr, weight_decay=0.01)

    def step(*inputs):
        opt.zero_grad()
        loss = loss_fn(model, *inputs)
        loss.backward()
        if clip is not None:
            lamina.nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        return loss
    return step


def twin(model):
    m2 = copy.deepcopy(model)
    return m2


def arrays(model):
    return {n: p.detach().numpy().copy() for n, p in model.named_parameters()}


def grads(model):
    return {n: (None if p.grad is None else p.grad.numpy().copy()) for n, p in model.named_parameters()}


def assert_close(a, b, tol=1e-10):
    assert a.keys() == b.keys()
    for k in a:
        if a[k] is None or b[k] is None:
            assert a[k] is None and b[k] is None, k
        else:
            np.testing.assert_allclose(a[k], b[k], rtol=tol, atol=tol, err_msg=k)
