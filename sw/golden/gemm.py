"""INT8 x INT8 matrix product with INT32 accumulation and INT32 bias."""

from __future__ import annotations

import numpy as np

__all__ = ["gemm", "wrap"]


def wrap(x, bits: int = 32):
    """Reduce ``x`` to the signed ``bits``-bit range by two's-complement wrap-around,
    as a ``bits``-wide hardware accumulator does."""
    x = np.asarray(x, dtype=np.int64)
    mod = np.int64(1) << bits
    return ((x + (mod >> 1)) & (mod - 1)) - (mod >> 1)


def gemm(a, b, bias=None, *, acc_bits: int = 32):
    """``C = A @ B + bias`` on integers.

    Parameters
    ----------
    a : (M, K) array of int8 values
    b : (K, N) array of int8 values
    bias : (N,) array of int32 values, or None
    acc_bits : accumulator width; the sum wraps to it as the hardware does.

    Returns
    -------
    (M, N) int64 array in the signed ``acc_bits`` range. Summation order does
    not matter: every partial sum is exact in int64 and wraps only at the end,
    which equals wrapping at every step.
    """
    a = np.asarray(a, dtype=np.int64)
    b = np.asarray(b, dtype=np.int64)
    if a.ndim != 2 or b.ndim != 2 or a.shape[1] != b.shape[0]:
        raise ValueError(f"GEMM shapes {a.shape} and {b.shape} do not chain")
    c = a @ b
    if bias is not None:
        c = c + np.asarray(bias, dtype=np.int64)
    return wrap(c, acc_bits)
