"""Integer Softmax over the last axis (I-BERT i-exp, integer reciprocal).

Numeric contract
----------------
Input
    Signed integers of at most 32 bits (INT32 attention accumulators, or INT8
    scores: any width up to 32), real value ``x * in_scale``.
Steps (all integer)
    1. ``d = max(row) - x`` (``0 <= d < 2**32``).
    2. ``t = min(round_shift(d * in_mult, in_shift), T_MAX)``: the distance to
       the row maximum in units of ``ln2 / 2**EXP_FRAC`` (unsigned, 19 bits).
    3. i-exp: ``z = t >> EXP_FRAC`` (how many ln2), ``f = t & (2**EXP_FRAC - 1)``,
       ``e = ((poly_b - f)**2 + poly_c) >> (z + EXP_DROP)``; ``e < 2**16`` with
       real value ``e * exp_scale()``. This is I-BERT's ``A (p + B)**2 + C``
       (coefficients refitted for least maximum error) on
       ``p = -f ln2 / 2**EXP_FRAC`` in ``(-ln2, 0]``, times ``2**-z``.
    4. ``s = sum(e)`` over the row (``s < 2**28`` for rows up to 4096).
    5. Reciprocal: ``k = bit_length(s)``, ``r = floor(2**(k + RECIP_BITS) / s)``
       (``2**RECIP_BITS < r <= 2**(RECIP_BITS + 1)``, exact integer division).
    6. ``y = min(round_shift(e * r, k + RECIP_BITS - OUT_FRAC), 127)``.
Output
    INT8 in ``[0, 127]`` with the fixed scale ``2**-OUT_FRAC = 1/128``
    (probability 1.0 saturates to 127/128, so the INT8 GEMM can take it as a
    signed operand). Rounding: ties away from zero (:func:`round_shift`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .intmath import bit_length, floor_div
from .requant import quantize_multiplier, round_shift

__all__ = ["SoftmaxParams", "softmax_params", "softmax", "i_exp",
           "EXP_FRAC", "EXP_DROP", "T_MAX", "RECIP_BITS", "OUT_FRAC", "IN_BITS",
           "exp_scale"]

#: Fraction bits of ``t`` (units of ln2).
EXP_FRAC = 14
#: Right shift applied to the polynomial so ``e`` fits 16 bits.
EXP_DROP = 15
#: Largest ``t``: at ``z >= 16`` the i-exp is 0 anyway, so ``t`` saturates to 19 bits.
T_MAX = (32 << EXP_FRAC) - 1
#: Precision of the row reciprocal, in bits.
RECIP_BITS = 16
#: Fraction bits of the output: scale 1/128.
OUT_FRAC = 7
#: Widest accepted input, in bits.
IN_BITS = 32

# I-BERT's form exp(p) ~ A (p + B)**2 + C on (-ln2, 0], with the coefficients refitted
# for the least maximum error (1.26e-3; I-BERT's 0.3585, 1.353, 0.344 reach 2.13e-3).
_A, _B, _C = 0.35826769, 1.34823543, 0.34750786


@dataclass(frozen=True)
class SoftmaxParams:
    """Run-time constants of the integer Softmax (all integers).

    Attributes
    ----------
    in_mult : int
        Unsigned 16-bit multiplier taking ``max - x`` to ``ln2 / 2**EXP_FRAC`` units.
    in_shift : int
        Right shift paired with ``in_mult``, in ``[0, 63]``.
    poly_b : int
        ``round(B / ln2 * 2**EXP_FRAC)``, unsigned 15 bits (31981).
    poly_c : int
        ``round(C / (A ln2**2) * 2**(2 EXP_FRAC))``, unsigned 30 bits.
    """

    in_mult: int
    in_shift: int
    poly_b: int
    poly_c: int


def exp_scale() -> float:
    """Real value of one unit of the i-exp output ``e``:
    ``A ln2**2 2**(EXP_DROP - 2 EXP_FRAC)``."""
    return _A * math.log(2) ** 2 * 2.0 ** (EXP_DROP - 2 * EXP_FRAC)


def softmax_params(in_scale: float) -> SoftmaxParams:
    """Constants for a Softmax whose input has real scale ``in_scale``.

    Raises
    ------
    ValueError
        If ``in_scale`` is not positive, or too large (above about 2.7) or too
        small to be represented by a 16-bit multiplier and a shift.
    """
    if not (math.isfinite(in_scale) and in_scale > 0):
        raise ValueError(f"Softmax input scale must be positive and finite, not {in_scale}")
    m, s = quantize_multiplier(in_scale / math.log(2) * 2.0 ** EXP_FRAC)
    return SoftmaxParams(
        in_mult=m, in_shift=s,
        poly_b=round(_B / math.log(2) * 2 ** EXP_FRAC),
        poly_c=round(_C / (_A * math.log(2) ** 2) * 2 ** (2 * EXP_FRAC)))


def i_exp(t, p: SoftmaxParams):
    """Integer ``exp(-t ln2 / 2**EXP_FRAC)`` for ``0 <= t <= T_MAX``.

    Returns int64 values below ``2**16`` with real scale :func:`exp_scale`.
    """
    t = np.asarray(t, dtype=np.int64)
    z = t >> EXP_FRAC
    f = t & ((1 << EXP_FRAC) - 1)
    poly = (p.poly_b - f) ** 2 + p.poly_c
    return poly >> np.minimum(z + EXP_DROP, 63)


def softmax(x, p: SoftmaxParams):
    """Integer Softmax of every row (last axis) of ``x``.

    Parameters
    ----------
    x : array of int
        Signed inputs of at most :data:`IN_BITS` bits; rows of length 1 to 4096.
    p : SoftmaxParams
        From :func:`softmax_params`.

    Returns
    -------
    int64 array of the shape of ``x``, in ``[0, 127]``, scale ``1/128``.

    Raises
    ------
    ValueError
        If an input does not fit 32 signed bits or a row is empty or longer
        than 4096.
    """
    x = np.asarray(x, dtype=np.int64)
    if x.ndim == 0 or not 1 <= x.shape[-1] <= 4096:
        raise ValueError(f"Softmax rows must have 1 to 4096 elements, not shape {x.shape}")
    if np.any((x < -(1 << (IN_BITS - 1))) | (x >= (1 << (IN_BITS - 1)))):
        raise ValueError(f"Softmax inputs must fit {IN_BITS} signed bits")
    d = x.max(axis=-1, keepdims=True) - x
    t = np.minimum(round_shift(d * p.in_mult, p.in_shift), T_MAX)
    e = i_exp(t, p)
    s = e.sum(axis=-1, keepdims=True)
    k = bit_length(s)
    r = floor_div(np.int64(1) << (k + RECIP_BITS), s)
    return np.minimum(round_shift(e * r, k + RECIP_BITS - OUT_FRAC), (1 << OUT_FRAC) - 1)
