"""The files ``intformer compile`` and ``intformer run --model`` read: a model
(``.onnx``, or ``.pt``/``.pth`` holding a whole PyTorch module saved with
``torch.save(model)``, whose classes must then be importable, or a TorchScript
module saved with ``torch.jit.save``) and arrays of inputs (npz with one array ``x`` of shape
``(N, tokens, dim)``, float)."""

from __future__ import annotations

import warnings
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["load_model", "load_inputs", "INPUT_KEY", "MODEL_SUFFIXES"]

#: The npz array holding the inputs, shape (N, tokens, dim).
INPUT_KEY = "x"
MODEL_SUFFIXES = (".onnx", ".pt", ".pth")


def load_inputs(path, *, what: str = "Inputs") -> np.ndarray:
    """The float array ``x`` (N, tokens, dim) of npz file ``path``.

    Raises
    ------
    ValueError
        If the file is missing, not an npz, lacks ``x``, or ``x`` is not a non-empty
        3-D finite array; the message names the file.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"{what} file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"{what} file {str(path)!r} is not an npz file")
    with np.load(path, allow_pickle=False) as npz:
        if INPUT_KEY not in npz.files:
            raise ValueError(f"{what} file {str(path)!r} lacks the array {INPUT_KEY!r} "
                             f"(shape (N, tokens, dim)); it has {', '.join(npz.files) or 'none'}")
        x = npz[INPUT_KEY]
    if x.ndim != 3 or x.shape[0] == 0 or x.dtype.kind not in "fiu":
        raise ValueError(f"{what} file {str(path)!r}: array {INPUT_KEY!r} must be a non-empty "
                         f"numeric (N, tokens, dim) array, not {x.dtype} of shape {x.shape}")
    x = x.astype(np.float64)
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} file {str(path)!r}: array {INPUT_KEY!r} is not finite")
    return x


def load_model(path, *, shape: tuple[int, int] | None = None):
    """Import model file ``path``; ``shape`` (tokens, dim) is the input of a PyTorch
    module (an ONNX file states its own).

    Returns an :class:`~.onnx_import.Imported`.

    Raises
    ------
    ValueError
        If the file is missing or of another kind, or ``onnx`` (or ``torch`` for a
        PyTorch file) is not installed; :class:`~.onnx_import.ModelImportError` if the
        model has something intformer does not support.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Model file {str(path)!r} does not exist")
    suffix = path.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ValueError(f"Model file {str(path)!r} is not one of "
                         f"{', '.join(MODEL_SUFFIXES)}")
    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ValueError("Importing a model needs the onnx package: pip install "
                         "'intformer[onnx]'") from e
    if suffix == ".onnx":
        from .onnx_import import import_onnx
        try:
            return import_onnx(path)
        except Exception as e:
            if isinstance(e, ValueError):
                raise
            raise ValueError(f"Model file {str(path)!r} is not a readable ONNX model: "
                             f"{e}") from e
    try:
        import torch
    except ImportError as e:
        raise ValueError(f"Model file {str(path)!r} is a PyTorch file, which needs torch "
                         f"installed (or export it to ONNX)") from e
    from .torch_import import import_torch
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module = torch.load(path, weights_only=False, map_location="cpu")
    except Exception as e:
        try:
            module = torch.jit.load(str(path), map_location="cpu")
        except Exception:
            raise ValueError(f"Model file {str(path)!r} is not a readable PyTorch file: {e} "
                             f"(torch.save(model) pickles the model's classes by name, so "
                             f"they must be importable here; a TorchScript file from "
                             f"torch.jit.save, or ONNX, needs no code)") from e
    if not isinstance(module, torch.nn.Module):
        raise ValueError(f"Model file {str(path)!r} holds a {type(module).__name__}, not a "
                         f"whole nn.Module (save it with torch.save(model))")
    if shape is None:
        raise ValueError(f"Model file {str(path)!r}: a PyTorch module needs the input "
                         f"shape (tokens, dim), from the calibration data")
    return import_torch(module, shape)
