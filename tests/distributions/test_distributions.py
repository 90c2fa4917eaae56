"""Normal, Categorical and Bernoulli against torch.distributions: values and float64 gradients of
log_prob / entropy / kl_divergence, shapes, sample statistics under a fixed seed, and argument
validation."""
import math

import numpy as np
import pytest
import torch
import torch.distributions as TD

import lamina
from lamina import distributions as D


def pair(a, requires_grad=True):
    """The same float64 leaf in Lamina and torch."""
    a = np.asarray(a, dtype=np.float64)
    return (lamina.tensor(a, dtype=lamina.float64, requires_grad=requires_grad),
            torch.tensor(a, dtype=torch.float64, requires_grad=requires_grad))


def grads_match(lam_out, torch_out, lam_leaves, torch_leaves, seed=0):
    """Outputs equal, and gradients of a random weighting of the outputs equal, leaf by leaf."""
    np.testing.assert_allclose(lam_out.detach().numpy(), torch_out.detach().numpy(), rtol=1e-10, atol=1e-12)
    w = np.random.default_rng(seed).standard_normal(tuple(torch_out.shape))
    (lam_out * lamina.tensor(w, dtype=lamina.float64)).sum().backward()
    (torch_out * torch.tensor(w)).sum().backward()
    for lam, tor in zip(lam_leaves, torch_leaves):
        np.testing.assert_allclose(lam.grad.numpy(), tor.grad.numpy(), rtol=1e-9, atol=1e-12)


# ---- Normal ---------------------------------------------------------------------------------

def test_normal_log_prob_entropy_cdf_and_grads():
    rng = np.random.default_rng(1)
    loc, tloc = pair(rng.standard_normal((3, 1)))
    scale, tscale = pair(rng.uniform(0.5, 2.0, (1, 4)))
    x = rng.standard_normal((2, 3, 4))
    d, td = D.Normal(loc, scale), TD.Normal(tloc, tscale)
    assert d.batch_shape == tuple(td.batch_shape) == (3, 4) and d.event_shape == ()
    grads_match(d.log_prob(lamina.tensor(x)), td.log_prob(torch.tensor(x)), [loc, scale], [tloc, tscale])
    loc.grad = scale.grad = tloc.grad = tscale.grad = None
    # a fresh pair: each backward frees the graph built by the constructor
    d, td = D.Normal(loc, scale), TD.Normal(tloc, tscale)
    grads_match(d.entropy(), td.entropy(), [scale], [tscale], seed=1)
    assert loc.grad is None and tloc.grad is None
    np.testing.assert_allclose(d.cdf(lamina.tensor(x)).detach().numpy(), td.cdf(torch.tensor(x)).detach().numpy(),
                               rtol=1e-7, atol=1e-12)
    np.testing.assert_allclose(d.variance.detach().numpy(), td.variance.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(d.stddev.detach().numpy(), td.stddev.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(d.mean.detach().numpy(), td.mean.detach().numpy(), rtol=1e-12)


def test_normal_numbers_give_scalar_batch_and_default_dtype():
    d = D.Normal(0.0, 1.0)
    assert d.batch_shape == () and d.sample().shape == () and d.sample((5, 2)).shape == (5, 2)
    assert d.sample().dtype == lamina.float32
    np.testing.assert_allclose(d.log_prob(lamina.tensor(0.0)).item(), -0.5 * math.log(2 * math.pi), rtol=1e-6)


def test_normal_rsample_is_reparameterised():
    loc = lamina.tensor([1.0, -2.0], dtype=lamina.float64, requires_grad=True)
    scale = lamina.tensor([0.5, 3.0], dtype=lamina.float64, requires_grad=True)
    d = D.Normal(loc, scale)
    x = d.rsample((7,))
    assert x.shape == (7, 2) and x.requires_grad
    x.sum().backward()
    eps = (x.detach().numpy() - loc.detach().numpy()) / scale.detach().numpy()
    np.testing.assert_allclose(loc.grad.numpy(), [7.0, 7.0])
    np.testing.assert_allclose(scale.grad.numpy(), eps.sum(0), rtol=1e-10)
    assert not d.sample((3,)).requires_grad


def test_normal_sample_statistics():
    lamina.manual_seed(123)
    d = D.Normal(lamina.tensor([1.5, -3.0]), lamina.tensor([0.5, 2.0]))
    x = d.sample((20000,)).numpy().astype(np.float64)
    # 5 standard errors: fails for a wrong loc/scale or a generator ignoring the parameters
    se_mean = np.array([0.5, 2.0]) / math.sqrt(20000)
    assert np.all(np.abs(x.mean(0) - [1.5, -3.0]) < 5 * se_mean)
    se_std = np.array([0.5, 2.0]) / math.sqrt(2 * 20000)
    assert np.all(np.abs(x.std(0) - [0.5, 2.0]) < 5 * se_std)


def test_sampling_follows_manual_seed():
    d = D.Normal(lamina.zeros(3), lamina.ones(3))
    lamina.manual_seed(7)
    a = d.sample((4,)).numpy()
    lamina.manual_seed(7)
    b = d.sample((4,)).numpy()
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, d.sample((4,)).numpy())


def test_normal_validation():
    with pytest.raises(ValueError, match=r"Normal: scale of shape \(3,\) must be positive; found 0, -1"):
        D.Normal(lamina.zeros(3), lamina.tensor([1.0, 0.0, -1.0]))
    with pytest.raises(ValueError, match=r"Normal: parameter shapes \(2,\), \(3,\) do not broadcast"):
        D.Normal(lamina.zeros(2), lamina.ones(3))
    D.Normal(lamina.zeros(3), lamina.tensor([1.0, 0.0, -1.0]), validate_args=False)  # checks off
    with pytest.raises(ValueError, match=r"Normal.log_prob: value of shape \(4,\) does not broadcast"):
        D.Normal(lamina.zeros(3), 1.0).log_prob(lamina.zeros(4))
    with pytest.raises(ValueError, match="sample_shape must not have negative sizes"):
        D.Normal(0.0, 1.0).sample((-1,))


# ---- Categorical ----------------------------------------------------------------------------

@pytest.mark.parametrize("param", ["probs", "logits"])
def test_categorical_log_prob_entropy_and_grads(param):
    rng = np.random.default_rng(2)
    raw = rng.uniform(0.1, 1.0, (2, 3, 5)) if param == "probs" else rng.standard_normal((2, 3, 5))
    p, tp = pair(raw)
    d, td = D.Categorical(**{param: p}), TD.Categorical(**{param: tp})
    assert d.batch_shape == tuple(td.batch_shape) == (2, 3) and d.event_shape == ()
    assert d.param_shape == tuple(td.param_shape) == (2, 3, 5)
    np.testing.assert_allclose(d.probs.detach().numpy(), td.probs.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(d.logits.detach().numpy(), td.logits.detach().numpy(), rtol=1e-10)
    value = rng.integers(0, 5, (4, 2, 3))
    grads_match(d.log_prob(lamina.tensor(value)), td.log_prob(torch.tensor(value)), [p], [tp])
    p.grad = tp.grad = None
    d, td = D.Categorical(**{param: p}), TD.Categorical(**{param: tp})
    grads_match(d.entropy(), td.entropy(), [p], [tp], seed=3)
    np.testing.assert_array_equal(d.mode.numpy(), td.mode.numpy())
    # log_prob of a value that broadcasts against the batch from the left
    v1 = rng.integers(0, 5, (3,))
    np.testing.assert_allclose(d.log_prob(lamina.tensor(v1)).detach().numpy(),
                               td.log_prob(torch.tensor(v1)).detach().numpy(), rtol=1e-10)


def test_categorical_zero_probability_entropy_and_mean_are_torchs():
    probs = [[0.0, 0.25, 0.75], [1.0, 0.0, 0.0]]
    d, td = D.Categorical(probs=lamina.tensor(probs)), TD.Categorical(probs=torch.tensor(probs))
    np.testing.assert_allclose(d.entropy().numpy(), td.entropy().numpy(), rtol=1e-6)
    assert np.isnan(d.mean.numpy()).all() and d.mean.shape == (2,)
    np.testing.assert_allclose(d.log_prob(lamina.tensor([1, 0])).numpy(),
                               td.log_prob(torch.tensor([1, 0])).numpy(), rtol=1e-6)


def test_categorical_sample_shape_and_frequencies():
    lamina.manual_seed(5)
    probs = np.array([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    d = D.Categorical(probs=lamina.tensor(probs))
    s = d.sample((30000,))
    assert s.shape == (30000, 2) and s.dtype == lamina.int64
    s = s.numpy()
    for row in range(2):
        freq = np.bincount(s[:, row], minlength=3) / 30000
        # 5 standard errors of a binomial proportion
        tol = 5 * np.sqrt(probs[row] * (1 - probs[row]) / 30000) + 1e-12
        assert np.all(np.abs(freq - probs[row]) <= tol), (row, freq)
    assert D.Categorical(logits=lamina.zeros(4)).sample((2, 3)).shape == (2, 3)
    assert D.Categorical(logits=lamina.zeros(4)).sample().shape == ()


def test_categorical_enumerate_support_matches_torch():
    d, td = D.Categorical(logits=lamina.zeros(2, 3)), TD.Categorical(logits=torch.zeros(2, 3))
    np.testing.assert_array_equal(d.enumerate_support().numpy(), td.enumerate_support().numpy())
    np.testing.assert_array_equal(d.enumerate_support(expand=False).numpy(),
                                  td.enumerate_support(expand=False).numpy())


def test_categorical_validation():
    with pytest.raises(ValueError, match="give exactly one of probs or logits, got both"):
        D.Categorical(probs=lamina.ones(3), logits=lamina.ones(3))
    with pytest.raises(ValueError, match="give exactly one of probs or logits, got neither"):
        D.Categorical()
    with pytest.raises(ValueError, match=r"Categorical: probs of shape \(3,\) must be finite and non-negative; found -0.5"):
        D.Categorical(probs=lamina.tensor([0.5, -0.5, 1.0]))
    with pytest.raises(ValueError, match=r"probs must have at least one dim \(the classes\), got shape \(\)"):
        D.Categorical(probs=lamina.tensor(1.0))
    d = D.Categorical(logits=lamina.zeros(3))
    with pytest.raises(ValueError, match=r"value of shape \(2,\) must be an integer class index in 0..2; found 3"):
        d.log_prob(lamina.tensor([0, 3]))
    with pytest.raises(ValueError, match="found 1.5"):
        d.log_prob(lamina.tensor([1.5]))


# ---- Bernoulli ------------------------------------------------------------------------------

@pytest.mark.parametrize("param", ["probs", "logits"])
def test_bernoulli_log_prob_entropy_and_grads(param):
    rng = np.random.default_rng(3)
    raw = rng.uniform(0.05, 0.95, (4,)) if param == "probs" else rng.standard_normal((4,)) * 3
    p, tp = pair(raw)
    d, td = D.Bernoulli(**{param: p}), TD.Bernoulli(**{param: tp})
    assert d.batch_shape == tuple(td.batch_shape) == (4,)
    np.testing.assert_allclose(d.probs.detach().numpy(), td.probs.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(d.logits.detach().numpy(), td.logits.detach().numpy(), rtol=1e-10)
    value = rng.integers(0, 2, (3, 4)).astype(np.float64)
    grads_match(d.log_prob(lamina.tensor(value)), td.log_prob(torch.tensor(value)), [p], [tp])
    p.grad = tp.grad = None
    d, td = D.Bernoulli(**{param: p}), TD.Bernoulli(**{param: tp})
    grads_match(d.entropy(), td.entropy(), [p], [tp], seed=4)
    np.testing.assert_allclose(d.variance.detach().numpy(), td.variance.detach().numpy(), rtol=1e-12)
    np.testing.assert_allclose(d.mean.detach().numpy(), td.mean.detach().numpy(), rtol=1e-12)


def test_bernoulli_mode_matches_torch():
    probs = [0.2, 0.5, 0.8]
    np.testing.assert_array_equal(D.Bernoulli(probs=lamina.tensor(probs)).mode.numpy(),
                                  TD.Bernoulli(probs=torch.tensor(probs)).mode.numpy())


def test_bernoulli_sample_statistics_and_dtype():
    lamina.manual_seed(11)
    d = D.Bernoulli(probs=lamina.tensor([0.1, 0.5, 0.9]))
    s = d.sample((20000,))
    assert s.shape == (20000, 3) and s.dtype == lamina.float32
    s = s.numpy()
    assert set(np.unique(s)) <= {0.0, 1.0}
    p = np.array([0.1, 0.5, 0.9])
    assert np.all(np.abs(s.mean(0) - p) < 5 * np.sqrt(p * (1 - p) / 20000))
    assert D.Bernoulli(0.3).sample((2,)).shape == (2,)


def test_bernoulli_validation():
    with pytest.raises(ValueError, match=r"Bernoulli: probs of shape \(2,\) must be in \[0, 1\]; found 1.5"):
        D.Bernoulli(probs=lamina.tensor([0.5, 1.5]))
    with pytest.raises(ValueError, match=r"Bernoulli.log_prob: value of shape \(2,\) must be 0 or 1; found 0.5"):
        D.Bernoulli(probs=lamina.tensor([0.5, 0.5])).log_prob(lamina.tensor([1.0, 0.5]))


# ---- kl_divergence --------------------------------------------------------------------------

def test_kl_normal_normal_and_grads():
    rng = np.random.default_rng(4)
    (l1, tl1), (s1, ts1) = pair(rng.standard_normal(3)), pair(rng.uniform(0.5, 2, 3))
    (l2, tl2), (s2, ts2) = pair(rng.standard_normal(3)), pair(rng.uniform(0.5, 2, 3))
    grads_match(D.kl_divergence(D.Normal(l1, s1), D.Normal(l2, s2)),
                TD.kl_divergence(TD.Normal(tl1, ts1), TD.Normal(tl2, ts2)),
                [l1, s1, l2, s2], [tl1, ts1, tl2, ts2])


def test_kl_categorical_and_bernoulli():
    rng = np.random.default_rng(5)
    (a, ta), (b, tb) = pair(rng.standard_normal((2, 4))), pair(rng.standard_normal((2, 4)))
    grads_match(D.kl_divergence(D.Categorical(logits=a), D.Categorical(logits=b)),
                TD.kl_divergence(TD.Categorical(logits=ta), TD.Categorical(logits=tb)), [a, b], [ta, tb])
    p, q = [[0.0, 0.5, 0.5]], [[0.5, 0.0, 0.5]]
    np.testing.assert_allclose(
        D.kl_divergence(D.Categorical(probs=lamina.tensor(q)), D.Categorical(probs=lamina.tensor(p))).numpy(),
        TD.kl_divergence(TD.Categorical(probs=torch.tensor(q)), TD.Categorical(probs=torch.tensor(p))).numpy())
    (c, tc), (e, te) = pair(rng.uniform(0.1, 0.9, 3)), pair(rng.uniform(0.1, 0.9, 3))
    grads_match(D.kl_divergence(D.Bernoulli(probs=c), D.Bernoulli(probs=e)),
                TD.kl_divergence(TD.Bernoulli(probs=tc), TD.Bernoulli(probs=te)), [c, e], [tc, te])


def test_kl_unknown_pair_names_the_types():
    with pytest.raises(NotImplementedError, match=r"no formula for \(Normal, Bernoulli\)"):
        D.kl_divergence(D.Normal(0.0, 1.0), D.Bernoulli(0.5))


def test_extreme_logits_stay_finite_and_match_torch():
    logits = [-60.0, -5.0, 0.0, 5.0, 60.0]
    value = [1.0, 0.0, 1.0, 0.0, 1.0]
    d = D.Bernoulli(logits=lamina.tensor(logits, dtype=lamina.float64))
    td = TD.Bernoulli(logits=torch.tensor(logits, dtype=torch.float64))
    np.testing.assert_allclose(d.log_prob(lamina.tensor(value, dtype=lamina.float64)).numpy(),
                               td.log_prob(torch.tensor(value, dtype=torch.float64)).numpy(), rtol=1e-12, atol=1e-20)
    np.testing.assert_allclose(d.entropy().numpy(), td.entropy().numpy(), rtol=1e-12, atol=1e-20)
    with_inf = [[0.0, -float("inf"), 1.0]]
    c, tc = D.Categorical(logits=lamina.tensor(with_inf)), TD.Categorical(logits=torch.tensor(with_inf))
    np.testing.assert_allclose(c.entropy().numpy(), tc.entropy().numpy(), rtol=1e-6)
    np.testing.assert_allclose(c.log_prob(lamina.tensor([2])).numpy(), tc.log_prob(torch.tensor([2])).numpy(), rtol=1e-6)
    assert not np.isnan(c.entropy().numpy()).any()
