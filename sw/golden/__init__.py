"""The bit-exact integer reference: the specification every hardware unit matches.

Vectorised numpy on int64; no floating point inside a kernel (floats appear only
where constants are derived from real scales).
"""

from .gelu import GeluParams, gelu, gelu_params
from .gemm import gemm, wrap
from .intmath import bit_length, floor_div, isqrt
from .layernorm import LayerNormParams, layernorm, layernorm_params
from .requant import MAX_SHIFT, MULT_WIDTH, quantize_multiplier, requantize, round_shift, saturate
from .residual import ResidualParams, residual_add, residual_params
from .softmax import SoftmaxParams, softmax, softmax_params

__all__ = ["gemm", "wrap", "requantize", "round_shift", "saturate", "quantize_multiplier",
           "MULT_WIDTH", "MAX_SHIFT",
           "isqrt", "floor_div", "bit_length",
           "SoftmaxParams", "softmax_params", "softmax",
           "GeluParams", "gelu_params", "gelu",
           "LayerNormParams", "layernorm_params", "layernorm",
           "ResidualParams", "residual_params", "residual_add"]
