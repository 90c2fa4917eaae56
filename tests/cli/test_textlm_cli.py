"""``lamina train gpt`` / ``char-rnn`` and ``lamina generate`` on a tiny text file."""
from __future__ import annotations

import json

import numpy as np
import pytest

import lamina
from lamina.cli import main

TEXT = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\nSpeak, speak.\n\n" * 60


@pytest.fixture()
def text_file(tmp_path):
    p = tmp_path / "tiny.txt"
    p.write_text(TEXT)
    return p


def _train(recipe, text_file, out, *extra):
    args = ["train", recipe, "--text", str(text_file), "--max-iters", "40", "--eval-interval", "20",
            "--batch-size", "4", "--block-size", "16", "--n-layer", "1", "--n-embd", "16", "--out", str(out),
            "--device", "cpu", "--quiet", *extra]
    if recipe == "gpt":
        args += ["--n-head", "2"]
    else:
        args += ["--hidden-size", "32"]
    return main(args)


@pytest.mark.parametrize("recipe", ["gpt", "char-rnn"])
def test_train_generate_and_resume(recipe, text_file, tmp_path, capsys):
    full, part = tmp_path / "full", tmp_path / "part"
    assert _train(recipe, text_file, full) == 0
    out = capsys.readouterr().out
    metrics = json.loads((full / "metrics.json").read_text())
    assert [e["step"] for e in metrics["epochs"]] == [20, 40]
    assert metrics["epochs"][-1]["train_loss"] < np.log(len(set(TEXT)))  # learned something
    assert "final val loss" in out and "sample:" in out

    assert main(["generate", str(full), "--prompt", "All:", "--tokens", "25", "--device", "cpu"]) == 0
    sample = capsys.readouterr().out
    assert sample.startswith("All:") and len(sample.rstrip("\n")) >= 29

    # interrupted right after its checkpoint at iteration 20, then resumed: the same weights as
    # the uninterrupted run
    from lamina.cli import fit
    real_write = fit.write_json

    def interrupt(*a, **k):
        real_write(*a, **k)
        raise KeyboardInterrupt

    fit.write_json = interrupt
    try:
        assert _train(recipe, text_file, part) == 130
    finally:
        fit.write_json = real_write
    assert lamina.io.load_checkpoint(part / "checkpoint.safetensors")["step"] == 20
    assert main(["train", recipe, "--resume", str(part), "--device", "cpu", "--quiet"]) == 0
    a = lamina.io.load_checkpoint(full / "checkpoint.safetensors")
    b = lamina.io.load_checkpoint(part / "checkpoint.safetensors")
    assert b["step"] == 40
    for k in a["model"]:
        np.testing.assert_array_equal(a["model"][k].numpy(), b["model"][k].numpy(), err_msg=k)


def test_generate_refuses_other_models(tmp_path, capsys):
    other = tmp_path / "x.safetensors"
    lamina.io.save_checkpoint(other, {"model_name": "lenet5"})
    assert main(["generate", str(other), "--device", "cpu"]) == 2
    assert "not gpt or char_rnn" in capsys.readouterr().err


def test_unknown_prompt_character_is_one_line(text_file, tmp_path, capsys):
    assert _train("gpt", text_file, tmp_path / "r") == 0
    capsys.readouterr()
    assert main(["generate", str(tmp_path / "r"), "--prompt", "Zebra~", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lamina: error:") and err.count("\n") == 1


def test_generate_temperature_zero_is_greedy_and_top_k_zero_is_off(text_file, tmp_path, capsys):
    assert _train("gpt", text_file, tmp_path / "r") == 0
    capsys.readouterr()
    outs = []
    for seed in ("0", "1"):
        assert main(["generate", str(tmp_path / "r"), "--prompt", "All:", "--tokens", "30", "--temperature", "0",
                     "--seed", seed, "--device", "cpu"]) == 0
        outs.append(capsys.readouterr().out)
    assert outs[0] == outs[1]  # greedy: the seed does not matter
    for k in ("0", "3"):
        assert main(["generate", str(tmp_path / "r"), "--top-k", k, "--tokens", "10", "--device", "cpu"]) == 0
    assert main(["generate", str(tmp_path / "r"), "--prompt", "All:", "--tokens", "0", "--device", "cpu"]) == 0
    assert capsys.readouterr().out.endswith("All:\n")


def test_the_schedule_is_nanogpts():
    import math

    from lamina import optim
    from lamina.cli.textlm import BABY, nanogpt_schedule

    def get_lr(it, c):  # nanoGPT's train.py
        if it < c["warmup_iters"]:
            return c["lr"] * (it + 1) / (c["warmup_iters"] + 1)
        if it > c["lr_decay_iters"]:
            return c["min_lr"]
        ratio = (it - c["warmup_iters"]) / (c["lr_decay_iters"] - c["warmup_iters"])
        return c["min_lr"] + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (c["lr"] - c["min_lr"])

    cfg = dict(BABY, lr_decay_iters=BABY["max_iters"])
    opt = optim.SGD([lamina.nn.Parameter(lamina.zeros(1))], lr=cfg["lr"])
    sched = nanogpt_schedule(opt, cfg)
    for it in range(cfg["lr_decay_iters"] + 1):
        assert opt.param_groups[0]["lr"] == pytest.approx(get_lr(it, cfg), rel=1e-12, abs=1e-15), it
        if it < cfg["lr_decay_iters"]:
            sched.step()
