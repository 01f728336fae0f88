"""Integer LayerNorm over the last axis: exact integer statistics, integer
square root and integer division, per-element gamma/beta, INT8 output.

Numeric contract
----------------
Input
    Signed integers of at most 12 bits (the INT8 residual stream, or wider),
    real value ``x * in_scale``; rows of ``n`` = 1 to 4096 elements.
Steps (all integer; :func:`isqrt` and :func:`floor_div` are exact floors)
    1. ``s1 = sum(x)``, ``s2 = sum(x*x)`` (one pass).
    2. ``v = ((n*s2 - s1*s1) << EPS_FRAC) + n*n*eps_q``: ``n**2 2**EPS_FRAC``
       times the variance plus eps (``v < 2**61``), exact. The mean is never
       divided out: ``D = n*x - s1`` is ``n`` times the centred value, exactly.
    3. Normalise: ``j = (62 - bit_length(max(v, 1))) // 2`` and
       ``r = isqrt(max(v, 1) << 2*j)``, so ``2**30 <= r < 2**31`` and
       ``r / 2**(j + EPS_FRAC/2)`` is ``n`` times the standard deviation, to 31
       significant bits.
    4. Reciprocal: ``R = floor_div(2**(31 + RECIP_BITS), r)`` (17 bits).
    5. ``z = round_shift(D * R, max(ZSHIFT - j, 0))`` with ``ZSHIFT = 31 +
       RECIP_BITS - NORM_FRAC - EPS_FRAC/2 = 28``: the normalised value
       ``(x - mean) / std`` with ``NORM_FRAC`` fraction bits (``|z| < 2**18``).
       The shift is at least 5 whenever the variance is not zero; when it is
       zero, ``D`` is 0 and the shift does not matter.
    6. ``y = saturate(round_shift(z * gamma_q[i] + beta_q[i], shift), 8)``.
Output
    INT8 with real scale ``out_scale``; rounding half away from zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from .intmath import bit_length, floor_div, isqrt
from .requant import MAX_SHIFT, round_shift, saturate

__all__ = ["LayerNormParams", "layernorm_params", "layernorm",
           "NORM_FRAC", "RECIP_BITS", "GAMMA_BITS", "BETA_BITS", "EPS_BITS", "EPS_FRAC",
           "IN_BITS", "MAX_ROW", "ZSHIFT"]

#: Fraction bits of the normalised value ``z``.
NORM_FRAC = 12
#: Precision of the reciprocal of the standard deviation, in bits.
RECIP_BITS = 16
#: Width of the signed per-element ``gamma_q``.
GAMMA_BITS = 16
#: Width of the signed per-element ``beta_q``.
BETA_BITS = 32
#: Width of the unsigned ``eps_q``.
EPS_BITS = 30
#: Fraction bits of ``eps_q`` (even, so the square root halves it exactly).
EPS_FRAC = 14
#: Widest accepted input, in bits (signed).
IN_BITS = 12
#: ``31 + RECIP_BITS - NORM_FRAC - EPS_FRAC / 2``: the shift of step 5 before ``- j``.
ZSHIFT = 31 + RECIP_BITS - NORM_FRAC - EPS_FRAC // 2
#: Longest row the golden model accepts (the widths above are sized for it).
MAX_ROW = 4096


@dataclass(frozen=True)
class LayerNormParams:
    """Run-time constants of the integer LayerNorm (all integers).

    Attributes
    ----------
    eps_q : int
        ``round(eps / in_scale**2 * 2**EPS_FRAC)``: eps in squared input units,
        unsigned 30 bits.
    gamma_q : tuple of int
        Per element ``round(gamma / out_scale * 2**(shift - NORM_FRAC))``, signed 16 bits.
    beta_q : tuple of int
        Per element ``round(beta / out_scale * 2**shift)``, signed 32 bits.
    shift : int
        Final right shift, in ``[0, 62]``.
    """

    eps_q: int
    gamma_q: tuple[int, ...]
    beta_q: tuple[int, ...]
    shift: int

    @property
    def length(self) -> int:
        """Row length these constants are for."""
        return len(self.gamma_q)


def layernorm_params(in_scale: float, gamma, beta, out_scale: float,
                     eps: float = 1e-5) -> LayerNormParams:
    """Constants for a LayerNorm with float ``gamma``/``beta`` (one per element).

    The shift is the largest that keeps every ``gamma_q`` within 16 bits and
    every ``beta_q`` within 32 bits (at most 62).

    Raises
    ------
    ValueError
        If a scale is not positive, ``gamma`` and ``beta`` differ in length or
        are empty or longer than 4096, ``eps`` is negative or too large for
        30 bits, or ``gamma`` is too large relative to ``out_scale``.
    """
    for name, value in (("in_scale", in_scale), ("out_scale", out_scale)):
        if not (math.isfinite(value) and value > 0):
            raise ValueError(f"LayerNorm {name} must be positive and finite, not {value}")
    gamma = np.asarray(gamma, dtype=np.float64).reshape(-1)
    beta = np.asarray(beta, dtype=np.float64).reshape(-1)
    if gamma.shape != beta.shape or not 1 <= gamma.size <= MAX_ROW:
        raise ValueError(f"LayerNorm gamma and beta must have the same length, 1 to "
                         f"{MAX_ROW}, not {gamma.size} and {beta.size}")
    if not (math.isfinite(eps) and eps >= 0):
        raise ValueError(f"LayerNorm eps must be non-negative, not {eps}")
    eps_q = round(eps / in_scale ** 2 * 2 ** EPS_FRAC)
    if eps_q >= 1 << EPS_BITS:
        raise ValueError(f"LayerNorm eps {eps} is {eps_q} in squared input units, "
                         f"more than {EPS_BITS} bits")
    g = gamma / out_scale * 2.0 ** -NORM_FRAC
    b = beta / out_scale
    g_lim, b_lim = (1 << (GAMMA_BITS - 1)) - 1, (1 << (BETA_BITS - 1)) - 1
    for shift in range(MAX_SHIFT - 1, -1, -1):
        gq = np.round(g * 2.0 ** shift)
        bq = np.round(b * 2.0 ** shift)
        if np.abs(gq).max() <= g_lim and np.abs(bq).max() <= b_lim:
            break
    else:
        raise ValueError(f"LayerNorm gamma (max {np.abs(gamma).max()}) and beta (max "
                         f"{np.abs(beta).max()}) are too large for output scale {out_scale}")
    return LayerNormParams(eps_q=int(eps_q), gamma_q=tuple(int(v) for v in gq),
                           beta_q=tuple(int(v) for v in bq), shift=int(shift))


def layernorm(x, p: LayerNormParams):
    """Integer LayerNorm of every row (last axis) of ``x``.

    Parameters
    ----------
    x : array of int
        Signed inputs of at most 12 bits; the last axis has ``p.length`` elements.
    p : LayerNormParams
        From :func:`layernorm_params`.

    Returns
    -------
    int64 array of the shape of ``x`` in ``[-128, 127]``, scale ``out_scale``.

    Raises
    ------
    ValueError
        If the rows do not have ``p.length`` elements or an input does not fit
        12 signed bits.
    """
    x = np.asarray(x, dtype=np.int64)
    if x.ndim == 0 or x.shape[-1] != p.length:
        raise ValueError(f"LayerNorm rows must have {p.length} elements, not shape {x.shape}")
    if np.any((x < -(1 << (IN_BITS - 1))) | (x >= (1 << (IN_BITS - 1)))):
        raise ValueError(f"LayerNorm inputs must fit {IN_BITS} signed bits")
    n = x.shape[-1]
    s1 = x.sum(axis=-1, keepdims=True)
    s2 = (x * x).sum(axis=-1, keepdims=True)
    v = np.maximum(((n * s2 - s1 * s1) << EPS_FRAC) + n * n * p.eps_q, 1)
    j = (62 - bit_length(v)) // 2
    r = isqrt(v << (2 * j))
    recip = floor_div(np.int64(1) << (31 + RECIP_BITS), r)
    z = round_shift((n * x - s1) * recip, np.maximum(ZSHIFT - j, 0))
    gq = np.asarray(p.gamma_q, dtype=np.int64)
    bq = np.asarray(p.beta_q, dtype=np.int64)
    return saturate(round_shift(z * gq + bq, p.shift), 8)
