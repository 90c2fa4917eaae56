"""Loss functions against torch.nn.functional in float64: values and gradients (w.r.t. the input
and, where torch has one, the target) for every reduction, over cases generated from small
option tables; then the layer classes, second-order gradients, dtypes and error messages."""
from __future__ import annotations

import itertools
import warnings
from dataclasses import dataclass, field

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import lamina
from lamina.nn import losses

rng = np.random.default_rng(0)
C = 5  # classes


def randn(*shape, scale=1.0):
    return rng.standard_normal(shape) * scale


def uniform(*shape, low=0.0, high=1.0):
    return rng.uniform(low, high, shape)


def softmax(a, dim=1):
    e = np.exp(a - a.max(axis=dim, keepdims=True))
    return e / e.sum(axis=dim, keepdims=True)


def log_softmax(a, dim=1):
    return np.log(softmax(a, dim))


def class_indices(shape, ignore=None):
    """Class indices of ``shape``; with ``ignore``, about a third are set to it (at least one is, and
    at least one is not)."""
    t = rng.integers(0, C, shape)
    if ignore is not None:
        flat = t.reshape(-1)
        mask = rng.random(flat.shape) < 0.3
        mask[0], mask[-1] = True, False
        flat[mask] = ignore
    return t


@dataclass
class Case:
    id: str
    fn: str
    input: np.ndarray
    target: np.ndarray
    kwargs: dict = field(default_factory=dict)  # numpy arrays become tensors without grad
    grad_target: bool = False
    reductions: tuple = ("none", "mean", "sum")
    marks: tuple = ()


CLASS_WEIGHT = uniform(C, low=0.2, high=2.0)
SHAPES = {"2d": (6, C), "4d": (2, C, 3, 4), "unbatched": (C,)}


def _target_shape(input_shape):
    return () if len(input_shape) == 1 else (input_shape[0],) + input_shape[2:]


def _class_index_cases(fn, smoothings):
    """nll_loss / cross_entropy with class indices: every shape x weight x ignore x smoothing."""
    cases = []
    for (sname, shape), weighted, ignore, ls in itertools.product(
            SHAPES.items(), (False, True), (None, -100, 2), smoothings):
        if sname == "unbatched" and ignore is not None:
            continue  # covered by the all-ignored cases
        kwargs = {}
        if weighted:
            kwargs["weight"] = CLASS_WEIGHT
        if ignore is not None:
            kwargs["ignore_index"] = ignore
        if ls:
            kwargs["label_smoothing"] = ls
        x = randn(*shape) if fn == "cross_entropy" else log_softmax(randn(*shape), dim=0 if len(shape) == 1 else 1)
        cases.append(Case(f"{fn}-{sname}-w{int(weighted)}-ign{ignore}-ls{ls}", fn, x,
                          class_indices(_target_shape(shape), ignore), kwargs))
    return cases


def _probability_cases():
    cases = []
    for (sname, shape), weighted, ls in itertools.product(SHAPES.items(), (False, True), (0.0, 0.25)):
        kwargs = {"label_smoothing": ls}
        if weighted:
            kwargs["weight"] = CLASS_WEIGHT
        dim = 0 if len(shape) == 1 else 1
        cases.append(Case(f"cross_entropy-probs-{sname}-w{int(weighted)}-ls{ls}", "cross_entropy",
                          randn(*shape), softmax(randn(*shape), dim), kwargs, grad_target=True))
    return cases


all_ignored = pytest.mark.filterwarnings("ignore::RuntimeWarning")  # 0/0 = nan, as in torch

CASES = [
    # regression losses
    Case("mse", "mse_loss", randn(3, 4), randn(3, 4), grad_target=True),
    Case("mse-weight", "mse_loss", randn(3, 4), randn(3, 4), {"weight": uniform(3, 4)}, grad_target=True),
    Case("l1", "l1_loss", randn(3, 4), randn(3, 4), grad_target=True),
    Case("l1-weight", "l1_loss", randn(3, 4), randn(3, 4), {"weight": uniform(3, 4)}, grad_target=True),
    Case("smooth_l1", "smooth_l1_loss", randn(3, 4, scale=2), randn(3, 4), grad_target=True),
    Case("smooth_l1-beta0.5", "smooth_l1_loss", randn(3, 4), randn(3, 4), {"beta": 0.5}, grad_target=True),
    Case("smooth_l1-beta0", "smooth_l1_loss", randn(3, 4), randn(3, 4), {"beta": 0.0}, grad_target=True),
    Case("huber", "huber_loss", randn(3, 4, scale=2), randn(3, 4), grad_target=True),
    Case("huber-delta0.3", "huber_loss", randn(3, 4), randn(3, 4), {"delta": 0.3}, grad_target=True),
    Case("huber-weight", "huber_loss", randn(3, 4, scale=2), randn(3, 4), {"weight": uniform(3, 4)},
         grad_target=True),
    # class-index and probability targets
    *_class_index_cases("nll_loss", (0.0,)),
    *_class_index_cases("cross_entropy", (0.0, 0.2)),
    *_probability_cases(),
    Case("cross_entropy-all-ignored", "cross_entropy", randn(3, C), np.full(3, -100), marks=(all_ignored,)),
    Case("cross_entropy-all-ignored-w-ls", "cross_entropy", randn(3, C), np.full(3, 1),
         {"weight": CLASS_WEIGHT, "ignore_index": 1, "label_smoothing": 0.1}, marks=(all_ignored,)),
    Case("cross_entropy-unbatched-ignored", "cross_entropy", randn(C), np.array(-100), marks=(all_ignored,)),
    Case("nll_loss-all-ignored-w", "nll_loss", randn(2, C, 3), np.full((2, 3), -100),
         {"weight": CLASS_WEIGHT}, marks=(all_ignored,)),
    Case("cross_entropy-empty", "cross_entropy", randn(0, C), np.zeros(0, dtype=np.int64), marks=(all_ignored,)),
    Case("cross_entropy-probs-empty", "cross_entropy", randn(0, C), np.zeros((0, C)), marks=(all_ignored,)),
    Case("cross_entropy-large", "cross_entropy", randn(6, C, scale=1e4), class_indices((6,), -100),
         {"weight": CLASS_WEIGHT, "label_smoothing": 0.1}),
    Case("cross_entropy-probs-large", "cross_entropy", randn(6, C, scale=1e4), softmax(randn(6, C)),
         {"label_smoothing": 0.1}, grad_target=True),
    # binary
    Case("bce", "binary_cross_entropy", uniform(3, 4, low=0.02, high=0.98), uniform(3, 4), grad_target=True),
    Case("bce-hard", "binary_cross_entropy", uniform(3, 4, low=0.02, high=0.98),
         rng.integers(0, 2, (3, 4)).astype(float), grad_target=True),
    Case("bce-weight", "binary_cross_entropy", uniform(3, 4, low=0.02, high=0.98), uniform(3, 4),
         {"weight": uniform(3, 4)}, grad_target=True),
    Case("bce-weight-broadcast", "binary_cross_entropy", uniform(3, 4, low=0.02, high=0.98), uniform(3, 4),
         {"weight": uniform(4)}, grad_target=True),
    Case("bce_logits", "binary_cross_entropy_with_logits", randn(3, 4, scale=3), uniform(3, 4), grad_target=True),
    Case("bce_logits-zero-logits", "binary_cross_entropy_with_logits", np.zeros((2, 3)), uniform(2, 3),
         grad_target=True),
    Case("bce_logits-weight-pos_weight", "binary_cross_entropy_with_logits", randn(3, 4, scale=3), uniform(3, 4),
         {"weight": uniform(3, 1), "pos_weight": uniform(4, high=3.0)}, grad_target=True),
    Case("bce_logits-large", "binary_cross_entropy_with_logits", randn(3, 4, scale=1e4), uniform(3, 4),
         {"pos_weight": uniform(4, high=3.0)}, grad_target=True),
    # KL divergence
    Case("kl_div", "kl_div", log_softmax(randn(4, C)), softmax(randn(4, C)), grad_target=True,
         reductions=("none", "batchmean", "mean", "sum")),
    Case("kl_div-zero-target", "kl_div", log_softmax(randn(4, C)), np.eye(4, C),
         reductions=("none", "batchmean", "mean", "sum")),
    Case("kl_div-log_target", "kl_div", log_softmax(randn(4, C)), log_softmax(randn(4, C)),
         {"log_target": True}, grad_target=True, reductions=("none", "batchmean", "mean", "sum")),
    Case("kl_div-1d-batchmean", "kl_div", log_softmax(randn(C), 0), softmax(randn(C), 0), grad_target=True,
         reductions=("batchmean",)),
]

PARAMS = [pytest.param(c, r, id=f"{c.id}-{r}", marks=c.marks) for c in CASES for r in c.reductions]


def evaluate(lib, case, reduction):
    """(loss, input grad, target grad) of one case in lamina or torch, as NumPy arrays."""
    if lib == "torch":
        fn, make = getattr(F, case.fn), (lambda a, g=False: torch.tensor(a, requires_grad=g))
    else:
        fn, make = getattr(losses, case.fn), (lambda a, g=False: lamina.tensor(a, requires_grad=g))
    x = make(case.input, True)
    t = make(case.target, case.grad_target)
    kwargs = {k: make(v) if isinstance(v, np.ndarray) else v for k, v in case.kwargs.items()}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # torch's kl_div warns about 'mean'
        loss = fn(x, t, reduction=reduction, **kwargs)
    # a fixed projection of an unreduced loss checks every element's gradient
    proj = np.random.default_rng(1).standard_normal(tuple(loss.shape))
    (loss * make(proj)).sum().backward()

    def numpy(a):
        return None if a is None else np.asarray(a.detach().numpy())
    return numpy(loss), numpy(x.grad), numpy(t.grad) if case.grad_target else None


@pytest.mark.parametrize("case, reduction", PARAMS)
def test_matches_torch(case, reduction):
    ours, ref = evaluate("lamina", case, reduction), evaluate("torch", case, reduction)
    for what, a, b in zip(("loss", "input grad", "target grad"), ours, ref):
        if b is None:
            continue
        assert a.shape == b.shape, f"{what}: shape {a.shape} != torch's {b.shape}"
        np.testing.assert_allclose(a, b, rtol=1e-10, atol=1e-12, err_msg=what)


def test_large_logits_stay_finite_in_float32():
    x = randn(8, C, scale=1e4).astype(np.float32)
    t = class_indices((8,))
    ours = losses.cross_entropy(lamina.tensor(x, requires_grad=True), lamina.tensor(t), label_smoothing=0.1)
    ref = F.cross_entropy(torch.tensor(x), torch.tensor(t), label_smoothing=0.1)
    assert ours.dtype == lamina.float32 and np.isfinite(ours.item())
    np.testing.assert_allclose(ours.item(), ref.item(), rtol=1e-5)
    ours.backward()


def test_bce_saturated_probabilities_have_finite_gradients():
    # sigmoid outputs round to exactly 0 or 1; torch clamps the logs at -100 and so must we
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    t = np.array([1.0, 0.0, 0.0, 1.0, 0.5])
    x = lamina.tensor(p, requires_grad=True)
    loss = losses.binary_cross_entropy(x, lamina.tensor(t), reduction="sum")
    np.testing.assert_allclose(loss.item(), F.binary_cross_entropy(torch.tensor(p), torch.tensor(t),
                                                                   reduction="sum").item())
    loss.backward()
    assert np.isfinite(x.grad.numpy()).all()


def test_kl_div_zero_target_has_finite_target_gradient():
    # torch's xlogy backward gives NaN here (0/0); zero targets are common (one-hot), so ours stays finite
    t = lamina.tensor(np.eye(3), requires_grad=True)
    losses.kl_div(lamina.tensor(log_softmax(randn(3, 3))), t, reduction="batchmean").backward()
    assert np.isfinite(t.grad.numpy()).all()


@pytest.mark.parametrize("kwargs", [{}, {"weight": CLASS_WEIGHT, "ignore_index": 1, "label_smoothing": 0.3}],
                         ids=["plain", "weight-ignore-smoothing"])
def test_cross_entropy_second_order_gradient(kwargs):
    x, t = randn(4, C, 3), class_indices((4, 3), ignore=1)
    v = randn(4, C, 3)

    def hvp(lib, tensor, grad):
        xs = tensor(x, requires_grad=True)
        kw = {k: tensor(a) if isinstance(a, np.ndarray) else a for k, a in kwargs.items()}
        loss = (losses if lib == "lamina" else F).cross_entropy(xs, tensor(t), **kw)
        (g,) = grad(loss, xs, create_graph=True)
        (h,) = grad((g * tensor(v)).sum(), xs, create_graph=True)
        return h.detach().numpy()
    ours = hvp("lamina", lamina.tensor, lamina.grad)
    ref = hvp("torch", torch.tensor, lambda y, xs, **kw: torch.autograd.grad(y, [xs], **kw))
    np.testing.assert_allclose(ours, ref, rtol=1e-10, atol=1e-12)


# ---------------------------------------------------------------- layers

MODULES = [
    ("MSELoss", {}, "mse"),
    ("L1Loss", {"reduction": "sum"}, "l1"),
    ("SmoothL1Loss", {"beta": 0.5, "reduction": "none"}, "smooth_l1"),
    ("HuberLoss", {"delta": 0.3}, "huber"),
    ("CrossEntropyLoss", {"weight": CLASS_WEIGHT, "ignore_index": 2, "label_smoothing": 0.2},
     "cross_entropy-4d-w1-ign2-ls0.2"),
    ("NLLLoss", {"weight": CLASS_WEIGHT, "ignore_index": -100, "reduction": "sum"}, "nll_loss-2d-w1-ign-100-ls0.0"),
    ("BCELoss", {"weight": uniform(3, 4)}, "bce"),
    ("BCEWithLogitsLoss", {"weight": uniform(3, 1), "pos_weight": uniform(4, high=3.0)}, "bce_logits"),
    ("KLDivLoss", {"reduction": "batchmean", "log_target": True}, "kl_div-log_target"),
]
CASES_BY_ID = {c.id: c for c in CASES}


@pytest.mark.parametrize("name, kwargs, case_id", MODULES, ids=[m[0] for m in MODULES])
def test_module_matches_torch_module(name, kwargs, case_id):
    case = CASES_BY_ID[case_id]
    ours = getattr(losses, name)(**{k: lamina.tensor(v) if isinstance(v, np.ndarray) else v
                                    for k, v in kwargs.items()})
    ref = getattr(torch.nn, name)(**{k: torch.tensor(v) if isinstance(v, np.ndarray) else v
                                     for k, v in kwargs.items()})
    got = ours(lamina.tensor(case.input), lamina.tensor(case.target)).numpy()
    want = ref(torch.tensor(case.input), torch.tensor(case.target)).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    for k, v in kwargs.items():
        if isinstance(v, np.ndarray):
            assert k in dict(ours.named_buffers())  # weights follow .to() and the state dict
        else:
            assert getattr(ours, k) == v


def test_module_weight_follows_dtype():
    m = losses.CrossEntropyLoss(weight=lamina.tensor(CLASS_WEIGHT)).to(lamina.float32)
    assert m.weight.dtype == lamina.float32
    assert "weight" in m.state_dict()
    loss = m(lamina.tensor(randn(4, C).astype(np.float32)), lamina.tensor(class_indices((4,))))
    assert loss.dtype == lamina.float32


# ---------------------------------------------------------------- errors

def lam(a):
    return lamina.tensor(np.asarray(a))


X, IDX = randn(3, 4), np.array([0, 1, 3])
ERRORS = [
    ("reduction", "mse_loss", (X, X), {"reduction": "avg"}, ValueError, r"mse_loss: reduction must be one of"),
    ("batchmean-not-kl", "l1_loss", (X, X), {"reduction": "batchmean"}, ValueError, r"l1_loss: reduction"),
    ("int-input", "mse_loss", (IDX, IDX), {}, TypeError, r"mse_loss: input must be a floating-point tensor"),
    ("no-broadcast", "mse_loss", (X, randn(3, 5)), {}, ValueError, r"mse_loss: target of shape \(3, 5\) "
     r"does not broadcast"),
    ("mse-weight-shape", "mse_loss", (X, X), {"weight": uniform(4)}, ValueError, r"mse_loss: weight of shape \(4,\)"),
    ("beta", "smooth_l1_loss", (X, X), {"beta": -1.0}, ValueError, r"smooth_l1_loss: beta must be >= 0"),
    ("delta", "huber_loss", (X, X), {"delta": 0.0}, ValueError, r"huber_loss: delta must be > 0"),
    ("index-range", "cross_entropy", (X, np.array([0, 4, 1])), {}, IndexError,
     r"cross_entropy: target 4 is out of range for 4 classes"),
    ("index-negative", "nll_loss", (X, np.array([0, -1, 1])), {}, IndexError, r"nll_loss: target -1 is out of range"),
    ("float-index-target", "nll_loss", (X, IDX.astype(float)), {}, TypeError,
     r"nll_loss: target must hold integer class indices, got lamina.float64"),
    ("batch-mismatch", "cross_entropy", (X, np.array([0, 1])), {}, ValueError,
     r"cross_entropy: target of shape \(2,\) does not fit input of shape \(3, 4\); expected .* \(3,\)"),
    ("spatial-mismatch", "cross_entropy", (randn(2, 4, 3), np.zeros((2, 4), dtype=np.int64)), {}, ValueError,
     r"expected class indices of shape \(2, 3\)"),
    ("0-d-input", "cross_entropy", (np.array(1.0), np.array(0)), {}, ValueError, r"cross_entropy: input must have"),
    ("class-weight", "cross_entropy", (X, IDX), {"weight": uniform(3)}, ValueError,
     r"cross_entropy: weight must be 1-D with one entry per class \(4\), got shape \(3,\)"),
    ("int-probabilities", "cross_entropy", (X, np.zeros((3, 4), dtype=np.int64)), {}, TypeError,
     r"cross_entropy: a target of the input's shape \(3, 4\) holds class probabilities"),
    ("probabilities-ignore", "cross_entropy", (X, softmax(X)), {"ignore_index": 0}, ValueError,
     r"ignore_index \(0\) is not supported with class-probability targets"),
    ("smoothing", "cross_entropy", (X, IDX), {"label_smoothing": 1.5}, ValueError,
     r"cross_entropy: label_smoothing must be in \[0, 1\]"),
    ("bce-range", "binary_cross_entropy", (X, uniform(3, 4)), {}, ValueError,
     r"binary_cross_entropy: all elements of input must be in \[0, 1\]"),
    ("bce-target-range", "binary_cross_entropy", (uniform(3, 4), X), {}, ValueError,
     r"all elements of target must be in \[0, 1\]"),
    ("bce-shape", "binary_cross_entropy", (uniform(3, 4), uniform(4)), {}, ValueError,
     r"binary_cross_entropy: target of shape \(4,\) must have the input's shape \(3, 4\)"),
    ("bce-weight", "binary_cross_entropy", (uniform(3, 4), uniform(3, 4)), {"weight": uniform(2, 3, 4)},
     ValueError, r"weight of shape \(2, 3, 4\) does not broadcast to the input's shape \(3, 4\)"),
    ("bce-logits-shape", "binary_cross_entropy_with_logits", (X, uniform(3, 1)), {}, ValueError,
     r"binary_cross_entropy_with_logits: target of shape \(3, 1\)"),
    ("bce-logits-int-target", "binary_cross_entropy_with_logits", (X, np.ones((3, 4), dtype=np.int64)), {},
     TypeError, r"target must be a floating-point tensor, got lamina.int64"),
    ("pos_weight", "binary_cross_entropy_with_logits", (X, uniform(3, 4)), {"pos_weight": uniform(3)},
     ValueError, r"pos_weight of shape \(3,\) does not broadcast"),
    ("kl-reduction", "kl_div", (X, X), {"reduction": "batch"}, ValueError,
     r"kl_div: reduction must be one of 'none', 'batchmean', 'mean', 'sum'"),
]


@pytest.mark.parametrize("fn, args, kwargs, exc, match", [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_errors(fn, args, kwargs, exc, match):
    args = [lam(a) for a in args]
    kwargs = {k: lam(v) if isinstance(v, np.ndarray) else v for k, v in kwargs.items()}
    with pytest.raises(exc, match=match):
        getattr(losses, fn)(*args, **kwargs)


def test_non_tensor_target():
    with pytest.raises(TypeError, match=r"mse_loss: target must be a Tensor, got list"):
        losses.mse_loss(lam(X), [1.0, 2.0])


def test_module_rejects_bad_reduction_at_construction():
    with pytest.raises(ValueError, match=r"CrossEntropyLoss: reduction must be one of"):
        losses.CrossEntropyLoss(reduction="batchmean")
    assert losses.KLDivLoss(reduction="batchmean").reduction == "batchmean"


def test_mismatched_shapes_broadcast_with_a_warning():
    # torch broadcasts (3, 1) against (3,) to (3, 3) and warns; so do we
    x, t = randn(3, 1), randn(3)
    with pytest.warns(UserWarning, match=r"mse_loss: target shape \(3,\) differs from input shape \(3, 1\)"):
        ours = losses.mse_loss(lam(x), lam(t), reduction="none")
    assert ours.shape == (3, 3)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("smoothing", [0.0, 0.3])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_cross_entropy_equals_composite(reduction, smoothing, weighted):
    """The fused (N, C) op against the log_softmax composite it replaces (run on (N, C, 1))."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 5)) * 3
    t = np.array([0, 4, 2, -100, 1, 1, 3])
    w = lamina.tensor(rng.random(5) + 0.5, dtype=lamina.float64) if weighted else None
    a = lamina.tensor(x, dtype=lamina.float64, requires_grad=True)
    b = lamina.tensor(x[:, :, None], dtype=lamina.float64, requires_grad=True)
    fa = lamina.nn.functional.cross_entropy(a, lamina.tensor(t), weight=w, reduction=reduction,
                                            label_smoothing=smoothing)
    fb = lamina.nn.functional.cross_entropy(b, lamina.tensor(t[:, None]), weight=w, reduction=reduction,
                                            label_smoothing=smoothing)
    np.testing.assert_allclose(fa.detach().numpy().ravel(), fb.detach().numpy().ravel(), rtol=1e-12)
    fa.sum().backward()
    fb.sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), b.grad.numpy()[:, :, 0], rtol=1e-10, atol=1e-14)
    assert a.grad_fn is None and type(fa.grad_fn).__name__ == "CrossEntropy"
