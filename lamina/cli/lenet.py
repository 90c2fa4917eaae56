"""``lamina train lenet``, ``lamina eval`` and ``lamina predict``: LeNet-5 on MNIST."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .. import backend, no_grad, optim, tensor
from ..data import MNIST, DataLoader, TensorDataset
from ..data.mnist import standardize
from ..models import LeNet5
from ..nn import functional as F
from .fit import Training, add_compile_option, fit, start_job
from .run import (
    UserError,
    add_run_options,
    existing_dir,
    load_run_checkpoint,
    nonneg_int,
    open_run,
    pick_device,
    positive_float,
    positive_int,
    ranks_note,
    train_device,
)

MODEL_NAME = "lenet5"
def _split(train: bool, data_dir, download=True):
    try:
        ds = MNIST(root=data_dir, train=train, download=download)
    except (RuntimeError, OSError, ValueError) as e:
        raise UserError(str(e).splitlines()[0] if str(e) else repr(e)) from None
    return standardize(ds.images), ds.labels


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
            preds.append(backend.to_device(logits.argmax(dim=1).array, backend.cpu))
    model.train()
    preds = np.concatenate(preds) if preds else np.zeros(0, np.int64)
    n = max(len(labels), 1)
    return total_loss / n, float((preds == labels).mean()) if len(labels) else 0.0, preds


def train(args) -> int:
    def new_config():
        optimizer = args.optimizer or "adam"
        return {"epochs": args.epochs or 8, "batch_size": args.batch_size or 64,
                "lr": args.lr if args.lr is not None else DEFAULT_LR[optimizer], "optimizer": optimizer,
                "seed": args.seed if args.seed is not None else 0, "schedule": "onecycle", "data_dir": args.data_dir}

    device = train_device(args)
    run, config, saved = open_run(args, MODEL_NAME, new_config, lambda c: "lenet")
    with run:
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
        first_epochs = saved["config"]["epochs"] if saved else config["epochs"]
        sched = optim.lr_scheduler.OneCycleLR(opt, max_lr=saved["config"]["lr"] if saved else config["lr"],
                                              epochs=first_epochs, steps_per_epoch=steps_per_epoch, pct_start=0.2)

        def evaluate_():
            loss, acc, _ = evaluate(model, test_x, test_y, device)
            return {"eval_loss": loss, "test_accuracy": acc}

        job = Training(
            model_name=MODEL_NAME, config=config, model=model, optimizer=opt, scheduler=sched,
            periods=config["epochs"], schedule_steps=first_epochs * steps_per_epoch,
            period_batches=lambda e, step: (loader, steps_per_epoch - loader.state_dict()["batches_consumed"]),
            loss=lambda net, batch: F.cross_entropy(net(batch[0]), batch[1]),
            evaluate=evaluate_, period_label=lambda e: f"epoch {e + 1}/{config['epochs']}",
            report=lambda r: (f"epoch {r['epoch']}: train loss {r['train_loss']:.4f}, test loss {r['eval_loss']:.4f}, "
                              f"test accuracy {100 * r['test_accuracy']:.2f}% ({r['elapsed_s']:.1f} s, "
                              f"{r['images_per_s']:.0f} images/s)"),
            parts={"loader": loader}, rate_unit="images/s", items_per_batch=lambda b: b[0].shape[0],
            title="LeNet-5 on MNIST")
        state = start_job(saved, job, run)
        if state is None:  # a finished run: nothing to do
            return 0
        print(f"training LeNet-5 on MNIST ({len(train_x)} train / {len(test_x)} test images) on {device}"
              f"{ranks_note(run)}; run folder {run.path}")
        code = fit(run, job, state, args)
        if code == 0 and state.metrics["epochs"]:
            print(f"test accuracy: {100 * state.metrics['epochs'][-1]['test_accuracy']:.2f}%")
        return code


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
        items.append((path, standardize(_read_image(path))))
    model.eval()
    with no_grad():
        probs = F.softmax(model(tensor(np.stack([x for _, x in items]), device=device)), dim=1)
    probs = backend.to_device(probs.array, backend.cpu)
    for (name, _), p in zip(items, probs):
        top = np.argsort(-p)[:min(args.top, len(p))]
        print(f"{name}: " + ", ".join(f"{c} ({100 * p[c]:.1f}%)" for c in top))
    return 0


def add_train_parser(sub):
    p = sub.add_parser("lenet", help="LeNet-5 on MNIST")
    p.add_argument("--epochs", type=positive_int, default=None, help="epochs (default 8)")
    p.add_argument("--batch-size", type=positive_int, default=None, help="default 64")
    p.add_argument("--lr", type=positive_float, default=None, help="peak learning rate (default per optimizer)")
    p.add_argument("--optimizer", default=None, choices=["adam", "adamw", "sgd"], help="default adam")
    p.add_argument("--seed", type=nonneg_int, default=None)
    p.add_argument("--data-dir", type=existing_dir, default=None,
                   help="folder with MNIST IDX files (default $LAMINA_HOME/mnist)")
    add_run_options(p, "runs/lenet-<time>")
    add_compile_option(p)
    p.set_defaults(func=train)
    return p


def add_eval_parser(sub):
    p = sub.add_parser("eval", help="test accuracy and confusion matrix of a LeNet run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=existing_dir, default=None)
    p.set_defaults(func=eval_)


def add_predict_parser(sub):
    p = sub.add_parser("predict", help="classify digit images with a LeNet run")
    p.add_argument("run", metavar="RUN_OR_CKPT")
    p.add_argument("images", nargs="*", metavar="IMAGE", help="28x28 PNG/JPEG digit images")
    p.add_argument("--index", type=nonneg_int, nargs="+", default=None, help="test-set sample numbers")
    p.add_argument("--top", type=positive_int, default=3, help="classes to show per image (1-10)")
    p.add_argument("--device", default="auto")
    p.add_argument("--data-dir", type=existing_dir, default=None)
    p.set_defaults(func=predict)

