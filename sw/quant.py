"""Post-training quantization of a float graph to an integer-only model.

Symmetric INT8 throughout (zero point 0):

- weights per output channel: ``scale[c] = max|W[:, c]| / 127``;
- activations per tensor: ``scale = amax / 127`` with ``amax`` the largest
  magnitude seen over a calibration set (or a percentile of the magnitudes);
- biases INT32 at ``input_scale * weight_scale[c]``;
- attention scores (``Q @ K^T`` feeding a Softmax) stay INT32 at
  ``scale_q * scale_k * alpha``: the ``1/sqrt(d)`` factor is folded into the
  Softmax's input scale, so it costs nothing;
- the Softmax output has the kernel's fixed scale 1/128;
- the inputs of a concatenation take the concatenation's scale (head outputs,
  class token), so concatenating is only placing rows or columns in memory.

Every op's constants (requantization multipliers and shifts, Softmax, GELU,
LayerNorm and residual parameters) come from the :mod:`intformer.sw.golden`
``*_params`` functions; the resulting :class:`~intformer.sw.model.integer.IntegerModel`
holds integers only, plus each tensor's real scale for comparison.
"""

from __future__ import annotations

import numpy as np

from intformer.sw import golden
from intformer.sw.golden.softmax import OUT_FRAC as SOFTMAX_OUT_FRAC
from intformer.sw.model.graph import Graph, run_float
from intformer.sw.model.integer import IntegerModel, IntOp, IntTensor, quantize_values

__all__ = ["QMAX", "weight_scales", "quantize_weight", "activation_scale", "calibrate",
           "quantize", "quantize_multipliers"]

#: Largest INT8 magnitude used by symmetric quantization.
QMAX = 127
INT32_MAX = (1 << 31) - 1


def weight_scales(w) -> np.ndarray:
    """Per-output-channel scales of a weight matrix ``w`` of shape (in, out).

    ``max|w[:, c]| / 127`` per column; an all-zero column gets scale 1.0.

    Raises
    ------
    ValueError
        If ``w`` is not 2-D or not finite.
    """
    w = np.asarray(w, dtype=np.float64)
    if w.ndim != 2:
        raise ValueError(f"Weight matrix must be 2-D (in, out), not shape {w.shape}")
    if not np.all(np.isfinite(w)):
        raise ValueError("Weight matrix must be finite")
    amax = np.abs(w).max(axis=0)
    return np.where(amax > 0, amax / QMAX, 1.0)


def quantize_weight(w) -> tuple[np.ndarray, np.ndarray]:
    """``(q, scales)``: INT8 ``q`` of ``w`` (in, out) with per-column ``scales``."""
    s = weight_scales(w)
    return quantize_values(w, s), s


def activation_scale(amax: float) -> float:
    """Per-tensor scale for a tensor whose magnitudes reach ``amax``; 1.0 for 0.

    Raises
    ------
    ValueError
        If ``amax`` is negative or not finite.
    """
    if not (np.isfinite(amax) and amax >= 0):
        raise ValueError(f"Calibrated range must be non-negative and finite, not {amax}")
    return float(amax) / QMAX if amax > 0 else 1.0


def quantize_multipliers(scales) -> tuple[np.ndarray, np.ndarray]:
    """Per-element :func:`~intformer.sw.golden.quantize_multiplier` of ``scales``."""
    pairs = [golden.quantize_multiplier(float(s)) for s in np.atleast_1d(scales)]
    return (np.array([m for m, _ in pairs], dtype=np.int64),
            np.array([s for _, s in pairs], dtype=np.int64))


def calibrate(graph: Graph, weights: dict, x, *, percentile: float | None = None,
              batch: int = 512) -> dict[str, float]:
    """Run the float model on calibration inputs ``x`` (n, rows, cols) and return
    every tensor's range: the largest magnitude, or the ``percentile`` of the
    magnitudes if given (e.g. 99.99).

    Raises
    ------
    ValueError
        If ``x`` is empty or ``percentile`` is not in (0, 100].
    """
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 3 or x.shape[0] == 0:
        raise ValueError(f"Calibration inputs must be a non-empty batch (n, rows, cols), "
                         f"not shape {x.shape}")
    if percentile is not None and not 0 < percentile <= 100:
        raise ValueError(f"Calibration percentile must be in (0, 100], not {percentile}")
    mags: dict[str, list] = {}
    for i in range(0, x.shape[0], batch):
        env = run_float(graph, weights, x[i:i + batch])
        for name, v in env.items():
            mags.setdefault(name, []).append(np.abs(v).reshape(-1))
    out = {}
    for name, parts in mags.items():
        v = np.concatenate(parts)
        out[name] = float(v.max() if percentile is None else np.percentile(v, percentile))
    return out


def quantize(graph: Graph, weights: dict, calib_x, *, percentile: float | None = None,
             amax: dict[str, float] | None = None) -> IntegerModel:
    """Quantize ``graph`` with float ``weights`` into an :class:`IntegerModel`.

    Parameters
    ----------
    graph, weights
        The float model (see :mod:`intformer.sw.model.graph`).
    calib_x : array
        Calibration inputs (n, rows, cols) in float; ignored when ``amax`` is given.
    percentile : float or None
        Activation range from this percentile of magnitudes instead of the maximum.
    amax : dict or None
        Precomputed ranges from :func:`calibrate`.

    Raises
    ------
    ValueError
        If the graph has a construct the integer model cannot express, or a
        constant does not fit its integer width.
    """
    if amax is None:
        amax = calibrate(graph, weights, calib_x, percentile=percentile)
    # The inputs of a concatenation are produced directly in its scale.
    forced: dict[str, str] = {}
    for node in graph:
        if node.kind == "concat":
            for i in node.inputs:
                if graph[i].kind in ("slice", "softmax", "input") or i in forced:
                    raise ValueError(f"Concatenation {node.name!r} cannot set the scale of "
                                     f"{i!r} (a {graph[i].kind})")
                forced[i] = node.name

    def int32_scores(node) -> bool:
        users = graph.consumers(node.name)
        return node.kind == "matmul" and bool(users) and all(u.kind == "softmax" for u in users)

    tensors: dict[str, IntTensor] = {}
    ops: list[IntOp] = []
    scale: dict[str, float] = {}

    def act_scale(name):
        return activation_scale(amax[forced.get(name, name)])

    for node in graph:
        a = node.attrs
        name, shape = node.name, graph.shapes[node.name]
        ins = node.inputs
        if node.kind == "input":
            scale[name] = act_scale(name)
            tensors[name] = IntTensor(name, shape, "int8", scale[name])
            continue
        if node.kind == "param":
            scale[name] = act_scale(name)
            data = quantize_values(np.asarray(weights[a["key"]]).reshape(shape), scale[name])
            tensors[name] = IntTensor(name, shape, "int8", scale[name], data)
            continue
        consts: dict = {}
        dtype = "int8"
        if node.kind == "linear":
            wq, ws = quantize_weight(weights[a["weight"]])
            wname = a["weight"]
            tensors[wname] = IntTensor(wname, wq.shape, "int8", ws, wq)
            op_ins = [ins[0], wname]
            acc_scale = scale[ins[0]] * ws
            if a.get("bias") is not None:
                bq = np.round(np.asarray(weights[a["bias"]], np.float64) / acc_scale)
                if np.abs(bq).max() > INT32_MAX:
                    raise ValueError(f"Bias {a['bias']!r} does not fit INT32 at its scale")
                tensors[a["bias"]] = IntTensor(a["bias"], bq.shape, "int32", acc_scale,
                                               bq.astype(np.int64))
                op_ins.append(a["bias"])
            scale[name] = act_scale(name)
            consts["multiplier"], consts["shift"] = quantize_multipliers(acc_scale / scale[name])
            ops.append(IntOp("gemm", name, tuple(op_ins), consts))
        elif node.kind == "matmul":
            consts["transpose_b"] = bool(a.get("transpose_b"))
            acc_scale = scale[ins[0]] * scale[ins[1]]
            if int32_scores(node):
                dtype = "int32"
                scale[name] = acc_scale * a.get("alpha", 1.0)
            else:
                scale[name] = act_scale(name)
                m, s = golden.quantize_multiplier(acc_scale * a.get("alpha", 1.0) / scale[name])
                consts["multiplier"] = np.full(shape[1], m, dtype=np.int64)
                consts["shift"] = np.full(shape[1], s, dtype=np.int64)
            ops.append(IntOp("gemm", name, tuple(ins), consts))
        elif node.kind == "softmax":
            scale[name] = 2.0 ** -SOFTMAX_OUT_FRAC
            consts["params"] = golden.softmax_params(scale[ins[0]])
            ops.append(IntOp("softmax", name, tuple(ins), consts))
        elif node.kind == "gelu":
            scale[name] = act_scale(name)
            consts["params"] = golden.gelu_params(scale[ins[0]], scale[name])
            ops.append(IntOp("gelu", name, tuple(ins), consts))
        elif node.kind == "layernorm":
            scale[name] = act_scale(name)
            consts["params"] = golden.layernorm_params(scale[ins[0]], weights[a["gamma"]],
                                                       weights[a["beta"]], scale[name],
                                                       a["eps"])
            ops.append(IntOp("layernorm", name, tuple(ins), consts))
        elif node.kind == "add":
            scale[name] = act_scale(name)
            consts["params"] = golden.residual_params(scale[ins[0]], scale[ins[1]], scale[name])
            ops.append(IntOp("residual_add", name, tuple(ins), consts))
        elif node.kind == "slice":
            scale[name] = scale[ins[0]]
            dtype = tensors[ins[0]].dtype
            consts = {"axis": a["axis"], "start": a["start"], "stop": a["stop"]}
            ops.append(IntOp("slice", name, tuple(ins), consts))
        elif node.kind == "concat":
            scale[name] = act_scale(name)
            assert all(scale[i] == scale[name] for i in ins)
            consts = {"axis": a["axis"]}
            ops.append(IntOp("concat", name, tuple(ins), consts))
        else:
            raise AssertionError(node.kind)
        tensors[name] = IntTensor(name, shape, dtype, scale[name])
    inputs = [n.name for n in graph if n.kind == "input"]
    if len(inputs) != 1:
        raise ValueError(f"Graph must have exactly one input, not {len(inputs)}")
    return IntegerModel(tensors, ops, input=inputs[0], output=graph.output)
