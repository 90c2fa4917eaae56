"""The documented way in from PyTorch: a training program written for torch runs on Lamina with
only its imports mapped (``torch`` -> ``lamina``, ``torchvision`` -> ``lamina.vision``). The
program below is written in PyTorch's idiom (device, DataLoader, Sequential, Adam, StepLR, a
checkpoint dict through save/load with map_location, no_grad, ``.item()``); it runs under
torch and, after the mapping, under Lamina, and both must learn."""
from __future__ import annotations

import re

import pytest

PROGRAM = '''
import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset
from torch.optim.lr_scheduler import StepLR


def make_model():
    return nn.Sequential(nn.Linear(8, 32), nn.ReLU(), nn.Dropout(0.1), nn.Linear(32, 3))


def run(path):
    torch.manual_seed(0)
    use_accel = torch.accelerator.is_available()
    device = torch.accelerator.current_accelerator() if use_accel else torch.device("cpu")
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(512, 8, generator=gen)
    y = (x @ torch.randn(8, 3, generator=gen)).argmax(dim=1)
    loader = DataLoader(TensorDataset(x, y), batch_size=64, shuffle=True)
    model = make_model().to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    scheduler = StepLR(optimizer, step_size=1, gamma=0.9)
    losses = []
    for epoch in range(4):
        model.train()
        for data, target in loader:
            data, target = data.to(device), target.to(device)
            optimizer.zero_grad()
            loss = F.cross_entropy(model(data), target)
            loss.backward()
            optimizer.step()
            losses.append(loss.item())
        scheduler.step()
    torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(), "epoch": 4}, path)
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    restored = make_model()
    restored.load_state_dict(checkpoint["model"])
    restored.eval()
    with torch.no_grad():
        correct = (restored(x).argmax(dim=1) == y).sum().item()
    return losses, correct / len(y), checkpoint["epoch"], optimizer.param_groups[0]["lr"]
'''


def port(source: str) -> str:
    """The mapping of the README's "Coming from PyTorch" section, as a text substitution."""
    return re.sub(r"\btorch\b", "lamina", re.sub(r"\btorchvision\b", "lamina.vision", source))


def run_program(source, path):
    namespace = {"__name__": "ported_program"}
    exec(compile(source, "<program>", "exec"), namespace)  # noqa: S102  (the test's own program text)
    return namespace["run"](str(path))


@pytest.mark.parametrize("framework", ["torch", "lamina"])
def test_a_pytorch_program_learns_with_only_its_imports_mapped(framework, tmp_path):
    source = PROGRAM if framework == "torch" else port(PROGRAM)
    if framework == "lamina":
        assert "torch" not in source and "import lamina.nn as nn" in source
    losses, accuracy, epoch, lr = run_program(source, tmp_path / "checkpoint.pt")
    assert len(losses) == 32
    first, last = sum(losses[:4]) / 4, sum(losses[-4:]) / 4
    assert last < 0.5 * first, (first, last)
    assert accuracy > 0.85, accuracy
    assert epoch == 4 and lr == pytest.approx(1e-2 * 0.9 ** 4)


def test_the_mapping_rewrites_every_path_programs_use():
    text = ("import torch\nimport torch.nn as nn\nfrom torch.utils.data import DataLoader\n"
            "import torchvision.transforms as T\nfrom torchvision import datasets\nimport torch.onnx\n"
            "import torch.backends.cudnn as cudnn\nfrom torch.nn.parallel import DistributedDataParallel\n"
            "x = torch.zeros(2)  # torch_dtype stays\n")
    assert port(text) == (
        "import lamina\nimport lamina.nn as nn\nfrom lamina.utils.data import DataLoader\n"
        "import lamina.vision.transforms as T\nfrom lamina.vision import datasets\nimport lamina.onnx\n"
        "import lamina.backends.cudnn as cudnn\nfrom lamina.nn.parallel import DistributedDataParallel\n"
        "x = lamina.zeros(2)  # torch_dtype stays\n")
    for line in port(text).splitlines():
        if line.startswith(("import", "from")):
            exec(line, {})  # noqa: S102  (each mapped import resolves)
