"""Exact integer square root, division and bit length, integer-only.

Each function is vectorised numpy on int64 and follows, step for step, the
bit-serial circuit in ``hw/`` (one result bit per step), so the golden model
and the hardware agree by construction. The results are exact floors.

Accepted widths
---------------
:func:`isqrt`
    ``0 <= n < 2**62`` (any ``bits`` up to 62); the root is below ``2**31``.
:func:`floor_div`
    ``0 <= num < 2**62`` and ``1 <= den < 2**62``.
:func:`bit_length`
    ``0 <= x < 2**63``; ``bit_length(0) == 0``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["isqrt", "floor_div", "bit_length", "MAX_BITS"]

#: Widest operand (in bits) :func:`isqrt` and :func:`floor_div` accept.
MAX_BITS = 62


def _check_bits(bits: int) -> int:
    if isinstance(bits, bool) or not isinstance(bits, int):
        raise TypeError(f"Operand width must be an integer, not {bits!r}")
    if not 1 <= bits <= MAX_BITS:
        raise ValueError(f"Operand width must be between 1 and {MAX_BITS}, not {bits}")
    return bits


def isqrt(n, *, bits: int = MAX_BITS):
    """Floor of the square root of non-negative integers: ``r*r <= n < (r+1)**2``.

    Digit-by-digit (restoring) method, two operand bits per step, as the
    hardware does it in ``ceil(bits / 2)`` steps.

    Parameters
    ----------
    n : array of int
        Values in ``[0, 2**bits)``.
    bits : int
        Width of ``n`` (at most 62); it sets the number of steps.

    Returns
    -------
    int64 array of the same shape, in ``[0, 2**ceil(bits/2))``.

    Raises
    ------
    ValueError
        If a value of ``n`` is negative or does not fit in ``bits`` bits.
    """
    bits = _check_bits(bits)
    n = np.asarray(n, dtype=np.int64)
    if np.any((n < 0) | (n >= (np.int64(1) << bits))):
        raise ValueError(f"isqrt operand must be between 0 and 2**{bits} - 1")
    steps = (bits + 1) // 2
    rem = n.copy()
    root = np.zeros_like(n)
    for i in range(steps - 1, -1, -1):
        # Setting root bit i grows the square by (4*root + 1) * 4**i, where
        # root holds the bits above i (the remainder is n minus the square).
        trial = ((root << 2) + 1) << (2 * i)
        take = rem >= trial
        rem = np.where(take, rem - trial, rem)
        root = (root << 1) | take.astype(np.int64)
    return root


def floor_div(num, den, *, bits: int = MAX_BITS):
    """Exact ``num // den`` for non-negative ``num`` and positive ``den``.

    Restoring long division, one quotient bit per step (``bits`` steps), as
    the hardware divider does it.

    Parameters
    ----------
    num : array of int
        Dividends in ``[0, 2**bits)``.
    den : array of int
        Divisors in ``[1, 2**62)``, broadcast against ``num``.
    bits : int
        Width of ``num`` (at most 62); it sets the number of steps.

    Returns
    -------
    int64 array: the floor of the quotient.

    Raises
    ------
    ValueError
        If a dividend is negative or too wide, or a divisor is not positive.
    """
    bits = _check_bits(bits)
    num = np.asarray(num, dtype=np.int64)
    den = np.asarray(den, dtype=np.int64)
    if np.any((num < 0) | (num >= (np.int64(1) << bits))):
        raise ValueError(f"Dividend must be between 0 and 2**{bits} - 1")
    if np.any((den < 1) | (den >= (np.int64(1) << MAX_BITS))):
        raise ValueError(f"Divisor must be between 1 and 2**{MAX_BITS} - 1")
    num, den = np.broadcast_arrays(num, den)
    rem = np.zeros(num.shape, dtype=np.int64)
    quo = np.zeros(num.shape, dtype=np.int64)
    for i in range(bits - 1, -1, -1):
        rem = (rem << 1) | ((num >> i) & 1)
        take = rem >= den
        rem = np.where(take, rem - den, rem)
        quo = (quo << 1) | take.astype(np.int64)
    return quo


def bit_length(x):
    """Number of bits needed for non-negative ``x`` (``0`` for ``0``), like
    :meth:`int.bit_length`; a priority encoder in hardware."""
    x = np.asarray(x, dtype=np.int64)
    if np.any(x < 0):
        raise ValueError("bit_length operand must be non-negative")
    n = np.zeros_like(x)
    for i in range(63):
        n = np.where((x >> i) != 0, i + 1, n)
    return n
