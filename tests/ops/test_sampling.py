"""Sampling ops, checked statistically (their streams cannot match PyTorch's)."""
from __future__ import annotations

import numpy as np
import pytest

import lamina


def test_multinomial_frequencies_match_probabilities():
    p = np.array([0.1, 0.0, 0.6, 0.3])
    draws = lamina.multinomial(lamina.tensor(np.tile(p, (4000, 1))), 1).numpy().ravel()
    freq = np.bincount(draws, minlength=4) / draws.size
    assert freq[1] == 0.0
    np.testing.assert_allclose(freq, p, atol=0.03)


def test_multinomial_without_replacement_draws_distinct_categories():
    out = lamina.multinomial(lamina.ones(50, 6), 6).numpy()
    assert all(sorted(row) == list(range(6)) for row in out)
    first = np.bincount(lamina.multinomial(lamina.tensor(np.tile([8.0, 1.0, 1.0], (3000, 1))), 2)[:, 0].numpy(),
                        minlength=3) / 3000
    np.testing.assert_allclose(first, [0.8, 0.1, 0.1], atol=0.03)


def test_multinomial_is_seeded():
    p = lamina.rand(5, 7) + 0.1
    lamina.manual_seed(3)
    a = lamina.multinomial(p, 3).numpy()
    lamina.manual_seed(3)
    np.testing.assert_array_equal(a, lamina.multinomial(p, 3).numpy())


def test_multinomial_errors():
    with pytest.raises(ValueError, match="without replacement"):
        lamina.multinomial(lamina.ones(3), 4)
    with pytest.raises(ValueError, match="non-negative"):
        lamina.multinomial(lamina.tensor([0.5, -0.1]), 1)
    with pytest.raises(ValueError, match="positive total"):
        lamina.multinomial(lamina.zeros(2, 3), 1)


def test_dropout_statistics_and_gradient():
    x = lamina.ones(200, 500, requires_grad=True)
    y = lamina.dropout(x, p=0.3)
    kept = y.detach().numpy() != 0
    assert abs(kept.mean() - 0.7) < 0.01
    np.testing.assert_allclose(y.detach().numpy()[kept], 1 / 0.7, rtol=1e-6)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy() != 0, kept)
    assert lamina.dropout(x, 0.3, training=False) is x
