"""Integer GELU (I-BERT i-erf polynomial with clipping) and requantization to INT8.

Numeric contract
----------------
Input
    Signed integers of at most 32 bits (INT32 accumulators or INT8), real
    value ``x * in_scale``.
Steps (all integer)
    1. ``u = saturate(round_shift(x * in_mult, in_shift), U_BITS)``: the input
       in fixed point with ``FRAC`` fraction bits (signed 18 bits, +-128 real).
    2. ``d = min(|u|, clip) - clip`` (``clip = round(1.769 sqrt2 2**FRAC)``, the
       I-BERT clipping point of ``erf(x / sqrt2)`` taken on ``x``).
    3. ``h = 2 * poly_c - d*d`` if ``u >= 0`` else ``d*d``: this is
       ``1 + erf(x / sqrt2)`` in units of ``|a| / 2 * 2**(-2 FRAC)`` with I-BERT's
       ``erf(y) ~ sign(y) (a (min(|y|, -b) + b)**2 + 1)``, ``a = -0.2888``,
       ``b = -1.769`` (``poly_c = round(2**(2 FRAC + 1) / |a|)``, 23 bits).
    4. ``y = requantize(u * h, out_mult, out_shift)``: the project's dyadic
       requantization (round half away from zero, saturate to INT8) of
       ``x (1 + erf(x / sqrt2)) / 2``, whose unit is ``|a| / 4 * 2**(-3 FRAC)``.
Output
    INT8 with real scale ``out_scale`` (at most 1.0, so that the input
    saturation at 128 never shows below the output saturation).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .requant import quantize_multiplier, requantize, round_shift, saturate

__all__ = ["GeluParams", "gelu_params", "gelu", "i_gelu", "i_gelu_scale",
           "FRAC", "U_BITS", "IN_BITS"]

#: Fraction bits of the fixed-point GELU input ``u``.
FRAC = 10
#: Width of ``u`` (signed): real inputs saturate to +-128.
U_BITS = 18
#: Widest accepted input, in bits.
IN_BITS = 32

_A, _B = -0.2888, -1.769  # I-BERT i-erf


@dataclass(frozen=True)
class GeluParams:
    """Run-time constants of the integer GELU (all integers).

    Attributes
    ----------
    in_mult, in_shift : int
        16-bit unsigned multiplier and shift taking the input to ``u``
        (``2**-FRAC`` units).
    clip : int
        Clipping point of ``|u|`` (``round(-b sqrt2 2**FRAC)`` = 2562), 12 bits.
    poly_c : int
        ``round(2**(2 FRAC + 1) / |a|)``, unsigned 23 bits.
    out_mult, out_shift : int
        16-bit unsigned multiplier and shift of the final requantization.
    """

    in_mult: int
    in_shift: int
    clip: int
    poly_c: int
    out_mult: int
    out_shift: int


def i_gelu_scale() -> float:
    """Real value of one unit of :func:`i_gelu` (``|a| / 4 * 2**(-3 FRAC)``)."""
    return -_A / 4 * 2.0 ** (-3 * FRAC)


def gelu_params(in_scale: float, out_scale: float) -> GeluParams:
    """Constants for a GELU from real scale ``in_scale`` to INT8 of ``out_scale``.

    Raises
    ------
    ValueError
        If a scale is not positive, ``out_scale`` is above 1.0, ``in_scale``
        is 64 or more, or a ratio cannot be represented by a 16-bit multiplier
        and a shift.
    """
    if not (math.isfinite(out_scale) and 0 < out_scale <= 1.0):
        raise ValueError(f"GELU output scale must be positive and at most 1.0, not {out_scale}")
    if not (math.isfinite(in_scale) and 0 < in_scale < 64):
        raise ValueError(f"GELU input scale must be positive and below 64, not {in_scale}")
    in_mult, in_shift = quantize_multiplier(in_scale * 2.0 ** FRAC)
    out_mult, out_shift = quantize_multiplier(i_gelu_scale() / out_scale)
    return GeluParams(in_mult=in_mult, in_shift=in_shift,
                      clip=round(-_B * math.sqrt(2) * 2 ** FRAC),
                      poly_c=round(2.0 ** (2 * FRAC + 1) / -_A),
                      out_mult=out_mult, out_shift=out_shift)


def i_gelu(x, p: GeluParams):
    """The GELU before requantization: ``u * h`` (signed, below ``2**42`` in
    magnitude), real value ``u * h * i_gelu_scale()``."""
    x = np.asarray(x, dtype=np.int64)
    if np.any((x < -(1 << (IN_BITS - 1))) | (x >= (1 << (IN_BITS - 1)))):
        raise ValueError(f"GELU inputs must fit {IN_BITS} signed bits")
    u = saturate(round_shift(x * p.in_mult, p.in_shift), U_BITS)
    d = np.minimum(np.abs(u), p.clip) - p.clip
    h = np.where(u >= 0, 2 * p.poly_c - d * d, d * d)
    return u * h


def gelu(x, p: GeluParams):
    """Integer GELU of every element of ``x``, requantized to INT8.

    Parameters
    ----------
    x : array of int
        Signed inputs of at most :data:`IN_BITS` bits, real value ``x * in_scale``.
    p : GeluParams
        From :func:`gelu_params`.

    Returns
    -------
    int64 array in ``[-128, 127]`` with real scale ``out_scale``.
    """
    return requantize(i_gelu(x, p), p.out_mult, p.out_shift)
