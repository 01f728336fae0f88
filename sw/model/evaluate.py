"""Float vs integer evaluation of the digits ViT on the fixed held-out split."""

from __future__ import annotations

import time

import numpy as np

from .graph import Graph, run_float
from .integer import IntegerModel
from .vit import DEFAULT_WEIGHTS, build_vit, digits_split, load_weights, patchify

__all__ = ["layer_errors", "load_digits_model", "evaluate"]


def layer_errors(graph: Graph, model: IntegerModel, float_env: dict, int_env: dict) -> list[dict]:
    """Error of every integer intermediate against its float counterpart, in real units.

    One row per op output (slices, which only re-address a tensor, are left out):
    ``max_abs`` and ``mean_abs`` of ``int * scale - float``, ``cosine`` similarity
    (over the whole batch), and ``float_max``, the float tensor's largest magnitude,
    to put the errors in proportion.
    """
    rows = []
    for op in model.ops:
        if op.kind == "slice":
            continue
        f = float_env[op.output].reshape(-1)
        q = model.dequantize(op.output, int_env[op.output]).reshape(-1)
        err = np.abs(q - f)
        denom = np.linalg.norm(q) * np.linalg.norm(f)
        rows.append({"tensor": op.output, "op": op.kind, "kind": graph[op.output].kind,
                     "max_abs": float(err.max()), "mean_abs": float(err.mean()),
                     "cosine": float(q @ f / denom) if denom > 0 else 1.0,
                     "float_max": float(np.abs(f).max())})
    return rows


def load_digits_model(path=DEFAULT_WEIGHTS, *, percentile: float | None = None):
    """Load the weights file and quantize: ``(cfg, weights, graph, integer_model)``.

    Calibration runs the float model on the training split only.
    """
    from intformer.sw.quant import quantize
    cfg, weights = load_weights(path)
    graph = build_vit(cfg)
    x_train = digits_split()[0]
    model = quantize(graph, weights, patchify(x_train / 16.0, cfg.patch), percentile=percentile)
    return cfg, weights, graph, model


def evaluate(path=DEFAULT_WEIGHTS, *, limit: int | None = None,
             percentile: float | None = None) -> dict:
    """Run the float and the integer model on the held-out split (the first ``limit``
    images if given) and return accuracies, agreement and per-layer errors."""
    if limit is not None and (not isinstance(limit, int) or limit <= 0):
        raise ValueError(f"Image limit must be a positive integer, not {limit!r}")
    t0 = time.perf_counter()
    cfg, weights, graph, model = load_digits_model(path, percentile=percentile)
    _, x_test, _, y_test = digits_split()
    if limit is not None:
        x_test, y_test = x_test[:limit], y_test[:limit]
    x = patchify(x_test / 16.0, cfg.patch)
    float_env = run_float(graph, weights, x)
    int_env = model.run(model.quantize_input(x))
    pf = float_env[graph.output].reshape(len(x), -1).argmax(axis=1)
    pi = int_env[model.output].reshape(len(x), -1).argmax(axis=1)
    return {
        "weights": str(path),
        "config": {"patch": cfg.patch, "dim": cfg.dim, "heads": cfg.heads, "ffn": cfg.ffn,
                   "depth": cfg.depth, "norm": cfg.norm, "tokens": cfg.tokens},
        "images": len(x),
        "float_accuracy": float((pf == y_test).mean()),
        "integer_accuracy": float((pi == y_test).mean()),
        "agreement": float((pf == pi).mean()),
        "ops": len(model.ops),
        "layers": layer_errors(graph, model, float_env, int_env),
        "seconds": round(time.perf_counter() - t0, 3),
    }
