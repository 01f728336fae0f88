"""Accuracy of the residual add against float."""

import dataclasses

import numpy as np
import pytest

from intformer.sw.golden.residual import residual_add, residual_params

#: Residual add against float, in output LSBs: rounding plus 16-bit multipliers.
BOUND = 0.501

A, B = np.meshgrid(np.arange(-128, 128), np.arange(-128, 128), indexing="ij")


def error(p, sa, sb, so):
    ref = (A * sa + B * sb) / so
    y = residual_add(A, B, p)
    if not (np.all(y[ref >= 127.5] == 127) and np.all(y[ref <= -128.5] == -128)):
        return np.inf
    inside = (ref > -128.5) & (ref < 127.5)
    return np.abs(y - ref)[inside].max()


@pytest.mark.parametrize("sa,sb,so", [(0.05, 0.02, 0.04), (0.01, 0.01, 0.02), (0.1, 0.001, 0.1),
                                      (0.03, 0.07, 0.05), (1e-3, 2e-3, 1e-2), (0.5, 0.25, 0.01)])
def test_residual_exhaustive_within_bound(sa, sb, so):
    assert error(residual_params(sa, sb, so), sa, sb, so) <= BOUND


@pytest.mark.parametrize("name,factor", [("mult_a", 1.01), ("mult_b", 0.99)])
def test_residual_bound_trips_on_wrong_constant(name, factor):
    sa, sb, so = 0.05, 0.03, 0.04
    p = residual_params(sa, sb, so)
    q = dataclasses.replace(p, **{name: round(getattr(p, name) * factor)})
    assert error(q, sa, sb, so) > BOUND


def test_residual_errors():
    with pytest.raises(ValueError, match="Residual scale_b must be positive and finite, not 0"):
        residual_params(0.1, 0, 0.1)
    with pytest.raises(ValueError, match="Residual scale ratio 100000.0 is too large"):
        residual_params(1e4, 0.1, 0.1)
    with pytest.raises(ValueError, match="Residual inputs must fit 8 signed bits"):
        residual_add(np.array([128]), np.array([0]), residual_params(0.1, 0.1, 0.1))
