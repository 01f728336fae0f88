"""Bring your own model: a user's encoder, as ONNX or a PyTorch module, as an
intformer float graph (:class:`~intformer.sw.model.graph.Graph` and weights) that
:func:`intformer.sw.quant.quantize` turns into the integer model.

:mod:`.onnx_import` imports ONNX (needs the ``onnx`` package: ``pip install
intformer[onnx]``); :mod:`.torch_import` exports a PyTorch module to ONNX in memory
and imports that (needs ``torch`` as well); :mod:`.files` reads a model file and the
calibration and input arrays (npz) the command line takes.
"""

from .files import load_inputs, load_model
from .onnx_import import SUPPORTED_OPS, Imported, ModelImportError, import_onnx

__all__ = ["import_onnx", "Imported", "ModelImportError", "SUPPORTED_OPS", "load_model",
           "load_inputs"]
