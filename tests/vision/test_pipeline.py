"""lamina.vision end to end, the way torchvision programs use it: a dataset with a transform
pipeline feeding a DataLoader, a model from ``models``, a few optimiser steps, and the batch
written with ``save_image``."""
import numpy as np
from PIL import Image

import lamina
import lamina.vision.utils as vutils
from lamina import nn
from lamina.data import DataLoader
from lamina.vision import datasets, models, transforms


def test_fake_data_pipeline_trains_and_saves(tmp_path):
    lamina.manual_seed(0)
    tf = transforms.Compose([transforms.Resize(32), transforms.CenterCrop(28), transforms.Grayscale(),
                             transforms.ToTensor(), transforms.Normalize((0.5,), (0.5,))])
    ds = datasets.FakeData(size=32, image_size=(3, 36, 40), num_classes=10, transform=tf)
    loader = DataLoader(ds, batch_size=16, shuffle=True)
    x, y = next(iter(loader))
    assert x.shape == (16, 1, 28, 28) and x.dtype == lamina.float32 and y.dtype == lamina.int64
    assert float(x.min()) >= -1.0 and float(x.max()) <= 1.0

    model = models.LeNet()
    opt = lamina.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(25):
        for xb, yb in loader:
            loss = nn.functional.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
    # random targets for noise images: the loss falls only by memorising the 32 samples
    assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses

    vutils.save_image(x, tmp_path / "batch.png", nrow=4, normalize=True)
    saved = np.asarray(Image.open(tmp_path / "batch.png"))
    assert saved.shape == (4 * 30 + 2, 4 * 30 + 2, 3)
