"""Float and integer-only transformer models.

:mod:`.graph` holds a float model as named nodes and runs it in float64;
:mod:`.encoder` builds encoder layers (pre- or post-norm); :mod:`.vit` the
digits Vision Transformer, its fixed data split and its weights file;
:mod:`.integer` the integer-only twin built by :func:`intformer.sw.quant.quantize`,
a list of ops that each call one :mod:`intformer.sw.golden` kernel.
"""

from .evaluate import evaluate, layer_errors, load_digits_model
from .graph import Graph, Node, run_float
from .integer import OP_KINDS, IntegerModel, IntOp, IntTensor
from .vit import DEFAULT_WEIGHTS, ViTConfig, build_vit, digits_split, load_weights, patchify

__all__ = ["Graph", "Node", "run_float", "IntegerModel", "IntOp", "IntTensor", "OP_KINDS",
           "ViTConfig", "build_vit", "digits_split", "load_weights", "patchify",
           "DEFAULT_WEIGHTS", "evaluate", "layer_errors", "load_digits_model"]
