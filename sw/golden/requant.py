"""Dyadic requantization, INT32 -> INT8: the rounding rule of the whole project.

``y = saturate(round(x * m / 2**s))`` where ``m`` is an unsigned integer
multiplier and ``s`` a right shift. Rounding is to nearest with ties away from
zero, done in integers as ``(p + 2**(s-1) - (p < 0)) >> s`` with ``p = x * m``
and an arithmetic shift; with ``s == 0`` the product is taken as it is. The
result saturates to the signed output range. The hardware requantizer
implements exactly this expression.
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["requantize", "round_shift", "saturate", "quantize_multiplier",
           "MULT_WIDTH", "MAX_SHIFT"]

#: Width of the unsigned multiplier that :func:`quantize_multiplier` produces.
MULT_WIDTH = 16
#: Largest right shift the hardware accepts (6-bit shift field).
MAX_SHIFT = 63


def round_shift(p, s):
    """Divide ``p`` by ``2**s`` rounding to nearest, ties away from zero.

    ``p`` is any int64 array (|p| < 2**62), ``s`` a broadcastable array or int in
    ``[0, 63]``. Integer arithmetic only.
    """
    p = np.asarray(p, dtype=np.int64)
    s = np.asarray(s, dtype=np.int64)
    if np.any((s < 0) | (s > MAX_SHIFT)):
        raise ValueError(f"Shift must be between 0 and {MAX_SHIFT}")
    half = np.where(s > 0, np.left_shift(np.int64(1), np.maximum(s - 1, 0)), 0)
    bias = np.where(s > 0, half - (p < 0), 0)
    return np.right_shift(p + bias, s)


def saturate(x, bits: int = 8):
    """Clamp ``x`` to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return np.clip(np.asarray(x, dtype=np.int64), lo, hi)


def requantize(acc, multiplier, shift, *, out_bits: int = 8):
    """Requantize accumulators to ``out_bits``-bit signed integers.

    Parameters
    ----------
    acc : array of int
        Signed accumulators (INT32 range).
    multiplier : int or array of int
        Unsigned multiplier(s), ``0 <= m < 2**MULT_WIDTH``; an array broadcasts
        against ``acc`` (per-output-channel: one per column, last axis).
    shift : int or array of int
        Right shift(s) in ``[0, MAX_SHIFT]``, broadcast like ``multiplier``.
    out_bits : int
        Output width; the result saturates to its signed range.

    Returns
    -------
    int64 array in ``[-2**(out_bits-1), 2**(out_bits-1) - 1]``.
    """
    acc = np.asarray(acc, dtype=np.int64)
    m = np.asarray(multiplier, dtype=np.int64)
    if np.any((m < 0) | (m >= (1 << MULT_WIDTH))):
        raise ValueError(f"Requantization multiplier must be between 0 and "
                         f"{(1 << MULT_WIDTH) - 1}")
    return saturate(round_shift(acc * m, shift), out_bits)


def quantize_multiplier(scale: float, *, width: int = MULT_WIDTH) -> tuple[int, int]:
    """Turn a positive real ``scale`` into ``(m, s)`` with ``m * 2**-s ~= scale``.

    ``m`` is normalised into ``[2**(width-1), 2**width)`` for the most precision
    the multiplier allows; ``s`` is in ``[0, MAX_SHIFT]``.

    Raises
    ------
    ValueError
        If ``scale`` is not positive and finite, or too large or too small to be
        represented with a ``width``-bit multiplier and a shift in range.
    """
    if not (math.isfinite(scale) and scale > 0):
        raise ValueError(f"Requantization scale must be positive and finite, not {scale}")
    mantissa, exponent = math.frexp(scale)  # scale = mantissa * 2**exponent, 0.5 <= mantissa < 1
    m = round(mantissa * (1 << width))
    s = width - exponent
    if m == 1 << width:
        m >>= 1
        s -= 1
    while s > MAX_SHIFT and m > 0:
        m = (m + 1) >> 1
        s -= 1
    if s < 0:
        raise ValueError(f"Requantization scale {scale} is too large for a "
                         f"{width}-bit multiplier")
    if m == 0:
        raise ValueError(f"Requantization scale {scale} is too small to represent")
    return int(m), int(s)
