"""A PyTorch encoder module as an intformer float graph: exported to ONNX in memory
with ``torch.onnx.export`` (the TorchScript exporter, opset 17) and imported by
:func:`~.onnx_import.import_onnx`, so whatever the module is built from, the op set
is the ONNX importer's. The module takes ``(batch, tokens, dim)``: use
``batch_first=True`` for ``nn.TransformerEncoderLayer`` and ``nn.MultiheadAttention``.
"""

from __future__ import annotations

import contextlib
import io
import os
import sys
import tempfile
import warnings

__all__ = ["import_torch", "OPSET"]

OPSET = 17


@contextlib.contextmanager
def _quiet():
    """Hold back what the exporter prints on stdout and stderr, from Python or C++ (a
    whole TorchScript IR dump when it fails); the exception says what went wrong."""
    try:
        fds = [sys.stdout.fileno(), sys.stderr.fileno()]
    except (AttributeError, OSError, ValueError):
        yield
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(fd) for fd in fds]
    with tempfile.TemporaryFile() as sink:
        for fd in fds:
            os.dup2(sink.fileno(), fd)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            for fd, old in zip(fds, saved, strict=True):
                os.dup2(old, fd)
                os.close(old)


def import_torch(module, shape: tuple[int, int]):
    """Import ``module`` (an ``nn.Module`` taking ``(batch, *shape)``).

    Raises
    ------
    ValueError
        If a ``batch_first=False`` attention layer is found, or the export fails;
        :class:`~.onnx_import.ModelImportError` for what the importer does not support.
    """
    import torch

    from .onnx_import import import_onnx
    for name, sub in module.named_modules():
        if isinstance(sub, torch.nn.MultiheadAttention) and not sub.batch_first:
            raise ValueError(f"Module {name!r} (MultiheadAttention) has batch_first=False; "
                             f"intformer feeds (batch, tokens, dim), so build it with "
                             f"batch_first=True")
    module = module.eval()
    example = torch.zeros((1, *shape), dtype=torch.float32)
    buf = io.BytesIO()
    # The fused inference kernel of nn.TransformerEncoderLayer has no ONNX export.
    mha = getattr(torch.backends, "mha", None)
    fastpath = mha.get_fastpath_enabled() if mha else None
    try:
        if mha:
            mha.set_fastpath_enabled(False)
        with torch.no_grad(), warnings.catch_warnings(), _quiet():
            warnings.simplefilter("ignore")
            torch.onnx.export(module, (example,), buf, dynamo=False, opset_version=OPSET,
                              input_names=["x"], output_names=["y"])
    except Exception as e:
        first = (str(e).strip().splitlines() or [type(e).__name__])[0]
        raise ValueError(f"torch.onnx.export failed on the module: {first}") from e
    finally:
        if mha:
            mha.set_fastpath_enabled(fastpath)
    return import_onnx(buf.getvalue())
