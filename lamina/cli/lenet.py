"""``lamina train lenet``, ``lamina eval`` and ``lamina predict``: LeNet-5 on MNIST."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from .. import backend, no_grad, optim, tensor
from ..data import MNIST, DataLoader, TensorDataset
from ..models import LeNet5
from ..nn import functional as F
from .run import (UserError, load_run_checkpoint, pick_device, plot_curves, progress, restore_run,
                  save_run_checkpoint, start_run, write_json)

MODEL_NAME = "lenet5"
MEAN, STD = 0.1307, 0.3081  # MNIST pixel statistics: inputs are standardised with these


def _normalise(images: np.ndarray) -> np.ndarray:
    return ((images.astype(np.float32) - MEAN) / STD).astype(np.float32)


def _split(train: bool, data_dir, download=True):
    try:
        ds = MNIST(root=data_dir, train=train, download=download)
    except (RuntimeError, OSError, ValueError) as e:
        raise UserError(str(e).splitlines()[0] if str(e) else repr(e)) from None
    return _normalise(ds.images), ds.labels


def _make_optimizer(name, params, lr):
    if name == "adam":
        return optim.Adam(params, lr=lr)
    if name == "adamw":
        return optim.AdamW(params, lr=lr, weight_decay=1e-4)
    if name == "sgd":
        return optim.SGD(params, lr=lr, momentum=0.9, nesterov=True, weight_decay=5e-4)
    raise UserError(f"unknown optimizer {name!r}; choose adam, adamw or sgd")


DEFAULT_LR = {"adam": 3e-3, "adamw": 3e-3, "sgd": 0.05}


def evaluate(model, images, labels, device, batch_size=1000):
    """(mean cross-entropy, accuracy, predictions) over a whole split."""
    model.eval()
    total_loss, preds = 0.0, []
    with no_grad():
        for i in range(0, len(images), batch_size):
            x = tensor(images[i:i + batch_size], device=device)
            y = tensor(labels[i:i + batch_size], device=device)
            logits = model(x)
            total_loss += F.cross_entropy(logits, y, reduction="sum").item()
            preds.append(backend.to_device(logits.argmax(dim=1).data, backend.cpu))
    model.train()
    preds = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    n = max(len(labels), 1)
    return total_loss / n, float((preds == labels).mean()) if len(labels) else 0.0, preds


def train(args) -> int:
    device = pick_device(args.device)

    def new_config():
        lr = args.lr if args.lr is not None else DEFAULT_LR.get(args.optimizer, 1e-3)
        return {"epochs": args.epochs, "batch_size": args.batch_size, "lr": lr, "optimizer": args.optimizer,
                "seed": args.seed, "schedule": "onecycle", "data_dir": args.data_dir}

    config, run_dir, resume = start_run(args, MODEL_NAME, new_config, lambda c: "lenet", device)

    import lamina
    lamina.manual_seed(config["seed"])
    train_x, train_y = _split(True, config["data_dir"])
    test_x, test_y = _split(False, config["data_dir"])
    model = LeNet5().to(device)
    opt = _make_optimizer(config["optimizer"], model.parameters(), config["lr"])
    loader = DataLoader(TensorDataset(tensor(train_x, device=device), tensor(train_y, device=device)),
                        batch_size=config["batch_size"], shuffle=True, drop_last=False,
                        generator=lamina.Generator(seed=config["seed"]))
    steps_per_epoch = len(loader)
    sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=config["lr"], epochs=config["epochs"],
                                          steps_per_epoch=steps_per_epoch, pct_start=0.2)
    metrics = {"config": config, "epochs": [], "steps": []}
    epoch, step = 0, 0
    if resume is not None:
        restore_run(resume, model=model, optimizer=opt, scheduler=sched, loader=loader)
        metrics, epoch, step = resume["metrics"], resume["epoch"], resume["step"]
        print(f"resuming {run_dir} at epoch {epoch + 1}, step {step}")

    def checkpoint():
        save_run_checkpoint(run_dir, {
            "model_name": MODEL_NAME, "config": config, "model": model.state_dict(),
            "optimizer": opt.state_dict(), "scheduler": sched.state_dict(), "loader": loader.state_dict(),
            "epoch": epoch, "step": step, "metrics": metrics})

    print(f"training LeNet-5 on MNIST ({len(train_x)} train / {len(test_x)} test images) on {device}; "
          f"run folder {run_dir}")
    while epoch < config["epochs"]:
        start = time.perf_counter()
        done_before = loader.state_dict()["batches_consumed"]
        bar = progress(loader, steps_per_epoch - done_before, f"epoch {epoch + 1}/{config['epochs']}",
                       disable=args.quiet)
        running, seen = None, 0
        for x, y in bar:
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            step += 1
            seen += x.shape[0]
            value = loss.item()
            running = value if running is None else 0.95 * running + 0.05 * value
            if step % 10 == 0:
                metrics["steps"].append([step, running])
                bar.set_postfix(loss=f"{running:.4f}", img_s=f"{seen / (time.perf_counter() - start):.0f}",
                                refresh=False)
            if args.checkpoint_every and step % args.checkpoint_every == 0:
                checkpoint()
        elapsed = time.perf_counter() - start
        test_loss, test_acc, _ = evaluate(model, test_x, test_y, device)
        epoch += 1
        metrics["epochs"].append({"epoch": epoch, "step": step, "train_loss": running, "eval_loss": test_loss,
                                  "test_accuracy": test_acc, "epoch_time_s": elapsed,
                                  "images_per_s": seen / elapsed if elapsed else 0.0})
        print(f"epoch {epoch}: train loss {running:.4f}, test loss {test_loss:.4f}, "
              f"test accuracy {100 * test_acc:.2f}% ({elapsed:.1f} s, {seen / elapsed:.0f} images/s)")
        checkpoint()
        write_json(run_dir / "metrics.json", metrics)
    final = metrics["epochs"][-1]["test_accuracy"] if metrics["epochs"] else 0.0
    plot_curves(run_dir, metrics, "LeNet-5 on MNIST")
    print(f"test accuracy: {100 * final:.2f}%")
    print(f"checkpoint, metrics and plot in {run_dir}")
    return 0


def _checkpoint_model(run_or_ckpt, device):
    state = load_run_checkpoint(run_or_ckpt, MODEL_NAME, device)
    model = LeNet5().to(device)
    try:
        model.load_state_dict(state["model"])
    except RuntimeError as e:
        raise UserError(str(e)) from None
    return model, state


def eval_(args) -> int:
    device = pick_device(args.device)
    model, state = _checkpoint_model(args.run, device)
    test_x, test_y = _split(False, args.data_dir or state["config"].get("data_dir"))
    loss, acc, preds = evaluate(model, test_x, test_y, device)
    print(f"test accuracy: {100 * acc:.2f}% ({int(round(acc * len(test_y)))}/{len(test_y)}), "
          f"mean cross-entropy {loss:.4f}")
    confusion = np.zeros((10, 10), dtype=np.int64)
    np.add.at(confusion, (test_y, preds), 1)
    print("confusion matrix (rows: true digit, columns: predicted):")
    print("      " + "".join(f"{c:>6d}" for c in range(10)))
    for r in range(10):
        print(f"{r:>6d}" + "".join(f"{v:>6d}" for v in confusion[r]))
    return 0


def _read_image(path: str) -> np.ndarray:
    try:
        from PIL import Image
    except ImportError:
        raise UserError("reading images needs Pillow: pip install lamina[image]") from None
    p = Path(path)
    if not p.exists():
        raise UserError(f"no such image: {path}")
    try:
        img = Image.open(p).convert("L")
    except Exception as e:  # Pillow raises many types for unreadable files
        raise UserError(f"cannot read image {path}: {e}") from None
    if img.size != (28, 28):
        raise UserError(f"{path}: expected a 28x28 image, got {img.size[0]}x{img.size[1]}")
    a = np.asarray(img, dtype=np.float32) / 255.0
    border = np.concatenate([a[0], a[-1], a[:, 0], a[:, -1]])
    if border.mean() > 0.5:  # dark digit on a light background: MNIST is the other way round
        a = 1.0 - a
    return a[None]


def predict(args) -> int:
    device = pick_device(args.device)
    model, state = _checkpoint_model(args.run, device)
    if not args.images and args.index is None:
        raise UserError("give image files or --index N (a test-set sample)")
    items = []
    if args.index is not None:
        test_x, test_y = _split(False, args.data_dir or state["config"].get("data_dir"))
        for i in args.index:
            if not 0 <= i < len(test_x):
                raise UserError(f"--index {i} is out of range for the {len(test_x)} test images")
            items.append((f"test[{i}] (label {test_y[i]})", test_x[i]))
    for path in args.images:
        items.append((path, _normalise(_read_image(path))))
    model.eval()
    with no_grad():
        probs = F.softmax(model(tensor(np.stack([x for _, x in items]), device=device)), dim=1)
    probs = backend.to_device(probs.data, backend.cpu)
    for (name, _), p in zip(items, probs):
        top = np.argsort(-p)[:args.top]
        print(f"{name}: " + ", ".join(f"{c} ({100 * p[c]:.1f}%)" for c in top))
    return 0


def add_train_parser(sub):
    p = sub.add_parser("lenet", help="LeNet-5 on MNIST")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (default per optimizer)")
    p.add_argument("--optimizer", default="adam", choices=["adam", "adamw", "sgd"])
    p.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="run folder (default runs/lenet-<time>)")
    p.add_argument("--resume", default=None, metavar="RUN_OR_CKPT", help="continue an interrupted run")
    p.add_argument("--data-dir", default=None, help="folder with MNIST IDX files (default $LAMINA_HOME/mnist)")
    p.add_argument("--checkpoint-every", type=int, default=200, metavar="STEPS",
                   help="also checkpoint every N steps inside an epoch (0: only at epoch ends)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    p.set_defaults(func=train)
    return p


def add_eval_parser(sub):
    p = sub.add_parser("eval", help="test accuracy and confusion matrix of a LeNet run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=eval_)


def add_predict_parser(sub):
    p = sub.add_parser("predict", help="classify digit images with a LeNet run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="28x28 PNG/JPEG digit images")
    p.add_argument("--index", type=int, nargs="+", default=None, help="test-set sample numbers")
    p.add_argument("--top", type=int, default=3)
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", default=None)
    p.set_defaults(func=predict)

