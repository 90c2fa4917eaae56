"""LeNet-5 on MNIST, one full epoch each for Lamina and PyTorch in the same process: the same
model, batch size, optimiser, schedule, data order and thread count. Prints wall time per epoch,
images/s, the ratio Lamina/PyTorch (throughput) and test accuracy after the epoch(s).

    python bench/lenet_epoch.py [--epochs 1] [--batch-size 64] [--threads 2] [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
import platform
import time

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # `bench.*` when run as a script


def mnist_arrays():
    from lamina.data import MNIST
    from lamina.data.mnist import standardize
    splits = [MNIST(train=train) for train in (True, False)]
    return [(standardize(ds.images), ds.labels) for ds in splits]


def epoch_lamina(train, test, epochs, batch_size, seed):
    import lamina
    from lamina.models import LeNet5
    from lamina.nn import functional as F
    lamina.manual_seed(seed)
    model = LeNet5()
    opt = lamina.optim.Adam(model.parameters(), lr=3e-3)
    steps = -(-len(train[0]) // batch_size)
    sched = lamina.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, epochs=epochs, steps_per_epoch=steps, pct_start=0.2)
    x_all, y_all = lamina.tensor(train[0]), lamina.tensor(train[1])
    loader = lamina.data.DataLoader(lamina.data.TensorDataset(x_all, y_all), batch_size=batch_size, shuffle=True,
                                    generator=lamina.Generator(seed=seed))
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y in loader:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with lamina.no_grad():
        pred = np.concatenate([model(lamina.tensor(test[0][i:i + 1000])).argmax(1).numpy()
                               for i in range(0, len(test[0]), 1000)])
    return times, float((pred == test[1]).mean())


def epoch_torch(train, test, epochs, batch_size, seed):
    import torch
    import torch.nn as tnn
    torch.manual_seed(seed)
    model = tnn.Sequential(tnn.Conv2d(1, 6, 5, padding=2), tnn.ReLU(), tnn.MaxPool2d(2), tnn.Conv2d(6, 16, 5),
                           tnn.ReLU(), tnn.MaxPool2d(2), tnn.Flatten(), tnn.Linear(400, 120), tnn.ReLU(),
                           tnn.Linear(120, 84), tnn.ReLU(), tnn.Linear(84, 10))
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    steps = -(-len(train[0]) // batch_size)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=3e-3, epochs=epochs, steps_per_epoch=steps, pct_start=0.2)
    x_all, y_all = torch.from_numpy(train[0]), torch.from_numpy(train[1])
    g = torch.Generator().manual_seed(seed)
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x_all, y_all), batch_size=batch_size,
                                         shuffle=True, generator=g)
    times = []
    for _ in range(epochs):
        t0 = time.perf_counter()
        for x, y in loader:
            loss = tnn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        times.append(time.perf_counter() - t0)
    model.eval()
    with torch.no_grad():
        pred = model(torch.from_numpy(test[0])).argmax(1).numpy()
    return times, float((pred == test[1]).mean())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--batch-size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(args.threads)
    train, test = mnist_arrays()
    n = len(train[0])
    results = {}
    for name, fn in (("lamina", epoch_lamina), ("pytorch", epoch_torch)):
        times, acc = fn(train, test, args.epochs, args.batch_size, args.seed)
        results[name] = {"epoch_s": times, "images_per_s": [n / t for t in times], "test_accuracy": acc}
        print(f"{name:8s} epoch time {', '.join(f'{t:.1f} s' for t in times)}; "
              f"{', '.join(f'{n / t:.0f}' for t in times)} images/s; test accuracy {100 * acc:.2f}%")
    ratio = np.median(results["lamina"]["images_per_s"]) / np.median(results["pytorch"]["images_per_s"])
    results["ratio_lamina_over_pytorch"] = ratio
    results["machine"] = f"{platform.processor() or platform.machine()}, {args.threads} threads"
    print(f"throughput ratio Lamina/PyTorch: {ratio:.2f}x")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=2)


if __name__ == "__main__":
    main()
