"""Accuracy of the integer LayerNorm against float."""

import dataclasses

import numpy as np
import pytest

from intformer.sw.golden.layernorm import layernorm, layernorm_params

#: LayerNorm against float, in output LSBs, where the float is inside the INT8 range.
BOUND = 0.52


def layernorm_float(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = x.var(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def error(p, x, in_scale, gamma, beta, out_scale, eps):
    """Largest |y - float| in LSBs inside the range; saturated outputs at the rails."""
    ref = layernorm_float(x * in_scale, gamma, beta, eps) / out_scale
    y = layernorm(x, p)
    inside = (ref > -128) & (ref < 127)
    if not (np.all(y[ref >= 127.6] == 127) and np.all(y[ref <= -128.6] == -128)):
        return np.inf
    return np.abs(y - ref)[inside].max(initial=0)


@pytest.mark.parametrize("length", [1, 2, 3, 7, 8, 9, 64, 768, 4096])
def test_layernorm_within_bound(length):
    rng = np.random.default_rng(length)
    for in_scale, out_scale, spread, eps in [(0.05, 0.03, 0.3, 1e-5), (0.01, 0.05, 1.0, 1e-5),
                                             (1e-3, 0.02, 0.1, 1e-6), (0.2, 0.1, 1.0, 1e-3)]:
        gamma = rng.normal(1, spread, length)
        beta = rng.normal(0, spread, length)
        p = layernorm_params(in_scale, gamma, beta, out_scale, eps)
        rows = 4096 // length + 20
        x = rng.integers(-128, 128, (rows, length)) >> rng.integers(0, 8, (rows, 1))
        assert error(p, x, in_scale, gamma, beta, out_scale, eps) <= BOUND


def test_layernorm_extremes():
    rng = np.random.default_rng(6)
    n = 64
    gamma, beta = rng.normal(1, 0.5, n), rng.normal(0, 0.5, n)
    p = layernorm_params(0.05, gamma, beta, 0.03, 1e-5)
    # Zero variance: the normalised value is 0, the output is beta.
    for v in (-128, 0, 5, 127):
        x = np.full((1, n), v)
        np.testing.assert_array_equal(layernorm(x, p)[0], np.clip(np.round(beta / 0.03), -128, 127))
    # Largest dynamic range, one outlier, 12-bit inputs.
    cases = [np.array([[-128, 127] * 32]), np.array([[0] * 63 + [127]]),
             rng.integers(-2048, 2048, (50, n))]
    for x in cases:
        assert error(p, x, 0.05, gamma, beta, 0.03, 1e-5) <= BOUND


def test_layernorm_eps_matters_for_tiny_variance():
    # Two levels one LSB apart: the variance (0.25 * in_scale**2) is close to eps.
    n = 16
    gamma, beta = np.ones(n), np.zeros(n)
    x = np.array([[3, 4] * 8])
    for eps in (1e-5, 1e-4, 1e-3):
        p = layernorm_params(0.01, gamma, beta, 0.01, eps)
        assert error(p, x, 0.01, gamma, beta, 0.01, eps) <= BOUND


@pytest.mark.parametrize("change", ["gamma", "beta", "eps", "shift"])
def test_layernorm_bound_trips_on_wrong_constant(change):
    rng = np.random.default_rng(7)
    n = 32
    gamma, beta = rng.normal(1, 0.3, n), rng.normal(0, 0.5, n)
    eps = 3e-5
    x = np.concatenate([rng.integers(-128, 128, (200, n)), [[3, 4] * 16]])
    p = layernorm_params(0.01, gamma, beta, 0.02, eps)
    assert error(p, x, 0.01, gamma, beta, 0.02, eps) <= BOUND
    if change == "gamma":
        q = dataclasses.replace(p, gamma_q=tuple(round(g * 1.01) for g in p.gamma_q))
    elif change == "beta":
        q = dataclasses.replace(p, beta_q=tuple(b + (1 << p.shift) for b in p.beta_q))
    elif change == "eps":
        q = dataclasses.replace(p, eps_q=round(p.eps_q * 1.2))
    else:
        q = dataclasses.replace(p, shift=p.shift + 1)
    assert error(q, x, 0.01, gamma, beta, 0.02, eps) > BOUND


def test_layernorm_params_errors():
    with pytest.raises(ValueError, match="LayerNorm in_scale must be positive and finite, not 0"):
        layernorm_params(0, [1.0], [0.0], 0.1)
    with pytest.raises(ValueError, match="LayerNorm gamma and beta must have the same length, "
                                         "1 to 4096, not 2 and 3"):
        layernorm_params(0.1, [1.0, 1.0], [0.0] * 3, 0.1)
    with pytest.raises(ValueError, match="LayerNorm eps must be non-negative, not -1"):
        layernorm_params(0.1, [1.0], [0.0], 0.1, -1)
    with pytest.raises(ValueError, match="LayerNorm eps 1.0 is .* more than 30 bits"):
        layernorm_params(1e-4, [1.0], [0.0], 0.1, 1.0)
    with pytest.raises(ValueError, match="LayerNorm gamma .* too large for output scale"):
        layernorm_params(0.1, [1e20], [0.0], 0.1)
    p = layernorm_params(0.1, [1.0] * 4, [0.0] * 4, 0.1)
    with pytest.raises(ValueError,
                       match=r"LayerNorm rows must have 4 elements, not shape \(1, 5\)"):
        layernorm(np.zeros((1, 5)), p)
    with pytest.raises(ValueError, match="LayerNorm inputs must fit 12 signed bits"):
        layernorm(np.full((1, 4), 2048), p)
