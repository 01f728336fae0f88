"""Residual add of two INT8 tensors with different scales, to INT8.

Numeric contract
----------------
``y = saturate(round_shift(a * mult_a + b * mult_b, shift), 8)``: ``a`` and
``b`` are signed 8-bit (real ``a * scale_a``, ``b * scale_b``), the multipliers
unsigned 16-bit with one common shift, rounding half away from zero
(:func:`round_shift`), output INT8 of real scale ``out_scale``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .requant import MAX_SHIFT, MULT_WIDTH, round_shift, saturate

__all__ = ["ResidualParams", "residual_params", "residual_add", "IN_BITS"]

#: Width of each signed input.
IN_BITS = 8


@dataclass(frozen=True)
class ResidualParams:
    """Run-time constants of the residual add (all integers).

    Attributes
    ----------
    mult_a, mult_b : int
        Unsigned 16-bit multipliers ``round(scale / out_scale * 2**shift)``.
    shift : int
        Common right shift, in ``[0, 62]``.
    """

    mult_a: int
    mult_b: int
    shift: int


def residual_params(scale_a: float, scale_b: float, out_scale: float) -> ResidualParams:
    """Constants for ``a * scale_a + b * scale_b`` requantized to ``out_scale``.

    The shift is the largest (at most 62) keeping both multipliers below
    ``2**16``, so the larger ratio gets 16 significant bits.

    Raises
    ------
    ValueError
        If a scale is not positive and finite, or a ratio ``scale / out_scale``
        is 2**16 or more, or both ratios round to a zero multiplier.
    """
    for name, value in (("scale_a", scale_a), ("scale_b", scale_b), ("out_scale", out_scale)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"Residual {name} must be positive and finite, not {value}")
    ra, rb = scale_a / out_scale, scale_b / out_scale
    limit = (1 << MULT_WIDTH) - 1
    for shift in range(MAX_SHIFT - 1, -1, -1):
        ma, mb = round(ra * 2.0 ** shift), round(rb * 2.0 ** shift)
        if ma <= limit and mb <= limit:
            break
    else:
        raise ValueError(f"Residual scale ratio {max(ra, rb)} is too large for a "
                         f"{MULT_WIDTH}-bit multiplier")
    if ma == 0 and mb == 0:
        raise ValueError(f"Residual scale ratios {ra} and {rb} are too small to represent")
    return ResidualParams(mult_a=int(ma), mult_b=int(mb), shift=int(shift))


def residual_add(a, b, p: ResidualParams):
    """``a + b`` with rescaling, elementwise (``a`` and ``b`` broadcast).

    Parameters
    ----------
    a, b : array of int
        Signed 8-bit inputs.
    p : ResidualParams
        From :func:`residual_params`.

    Returns
    -------
    int64 array in ``[-128, 127]`` with real scale ``out_scale``.

    Raises
    ------
    ValueError
        If an input does not fit 8 signed bits.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    lo, hi = -(1 << (IN_BITS - 1)), (1 << (IN_BITS - 1)) - 1
    if np.any((a < lo) | (a > hi)) or np.any((b < lo) | (b > hi)):
        raise ValueError(f"Residual inputs must fit {IN_BITS} signed bits")
    return saturate(round_shift(a * p.mult_a + b * p.mult_b, p.shift), 8)
