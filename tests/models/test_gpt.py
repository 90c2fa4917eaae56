"""GPT against its PyTorch twin (bench/nanogpt.py): equal logits, loss and gradients from the same
weights, the same AdamW steps, and generation that respects top_k and the context window."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import lamina
from lamina.models import GPT, GPTConfig
from bench.nanogpt import TorchGPT

CFG = GPTConfig(vocab_size=11, block_size=8, n_layer=2, n_head=2, n_embd=16, dropout=0.0)


def _pair(cfg=CFG):
    lm = GPT(cfg).double()
    tm = TorchGPT(cfg).double()
    sd = {k: torch.from_numpy(np.array(v.numpy())) for k, v in lm.state_dict().items()}
    tm.load_state_dict(sd)
    return lm, tm


def test_state_dict_names_match_nanogpt():
    assert list(GPT(CFG).state_dict()) == list(TorchGPT(CFG).state_dict())


def test_forward_backward_match_torch():
    lm, tm = _pair()
    rng = np.random.default_rng(0)
    idx = rng.integers(0, CFG.vocab_size, (3, 8))
    tgt = rng.integers(0, CFG.vocab_size, (3, 8))
    tgt[0, :2] = -1  # ignored positions
    logits, loss = lm(lamina.tensor(idx), lamina.tensor(tgt))
    tlogits, tloss = tm(torch.from_numpy(idx), torch.from_numpy(tgt))
    np.testing.assert_allclose(logits.detach().numpy(), tlogits.detach().numpy(), rtol=1e-10, atol=1e-12)
    assert loss.item() == pytest.approx(tloss.item(), rel=1e-12)
    loss.backward()
    tloss.backward()
    tparams = dict(tm.named_parameters())
    for name, p in lm.named_parameters():
        np.testing.assert_allclose(p.grad.numpy(), tparams[name].grad.numpy(), rtol=1e-8, atol=1e-12, err_msg=name)


def test_training_steps_match_torch():
    lm, tm = _pair()
    opt = lamina.optim.AdamW(lm.optimizer_groups(0.1), lr=1e-2, betas=(0.9, 0.99))
    topt = torch.optim.AdamW(tm.optimizer_groups(0.1), lr=1e-2, betas=(0.9, 0.99))
    rng = np.random.default_rng(1)
    for _ in range(5):
        idx = rng.integers(0, CFG.vocab_size, (4, 8))
        _, loss = lm(lamina.tensor(idx[:, :-1]), lamina.tensor(idx[:, 1:]))
        _, tloss = tm(torch.from_numpy(idx[:, :-1]), torch.from_numpy(idx[:, 1:]))
        opt.zero_grad()
        loss.backward()
        lamina.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        opt.step()
        topt.zero_grad()
        tloss.backward()
        torch.nn.utils.clip_grad_norm_(tm.parameters(), 1.0)
        topt.step()
        assert loss.item() == pytest.approx(tloss.item(), rel=1e-9)
    tparams = dict(tm.named_parameters())
    for name, p in lm.named_parameters():
        np.testing.assert_allclose(p.detach().numpy(), tparams[name].detach().numpy(), rtol=1e-8, atol=1e-10)


def test_weight_tying_and_init_scale():
    m = GPT(GPTConfig(n_layer=4))
    assert m.lm_head.weight is m.transformer.wte.weight
    assert len(list(m.parameters())) == len(m.state_dict()) - 1  # lm_head.weight is listed once
    proj = m.transformer.h[0].attn.c_proj.weight.detach().numpy()
    assert abs(proj.std() - 0.02 / np.sqrt(8)) < 0.002


def test_generate_respects_top_k_and_context():
    m = GPT(CFG)
    start = lamina.tensor([[1, 2, 3]])
    out = m.generate(start, 20, top_k=1)
    assert out.shape == (1, 23) and out[:, :3].tolist() == [[1, 2, 3]]
    # top_k=1 is greedy: the same continuation every time
    np.testing.assert_array_equal(out.numpy(), m.generate(start, 20, top_k=1).numpy())
    lamina.manual_seed(0)
    a = m.generate(start, 10, temperature=2.0).numpy()
    lamina.manual_seed(0)
    np.testing.assert_array_equal(a, m.generate(start, 10, temperature=2.0).numpy())
    assert m.training


def test_errors():
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(n_embd=10, n_head=3)
    with pytest.raises(ValueError, match="block_size 8"):
        GPT(CFG)(lamina.zeros(1, 9, dtype=lamina.int64))
