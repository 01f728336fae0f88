"""The bit-exact integer reference: the specification every hardware unit matches.

Vectorised numpy on int64; no floating point inside a kernel (floats appear only
where constants are derived from real scales).
"""

from .gemm import gemm, wrap
from .requant import MAX_SHIFT, MULT_WIDTH, quantize_multiplier, requantize, round_shift, saturate

__all__ = ["gemm", "wrap", "requantize", "round_shift", "saturate", "quantize_multiplier",
           "MULT_WIDTH", "MAX_SHIFT"]
