"""numpy evaluation of the ONNX ops an exporter applies to constants and shapes
(head sizes, reshape targets, ``1/sqrt(d)``), so the importer sees their values."""

from __future__ import annotations

import numpy as np
from scipy.special import erf

__all__ = ["evaluate"]

_DTYPES = {1: np.float32, 6: np.int32, 7: np.int64, 9: np.bool_, 10: np.float16,
           11: np.float64}


def _binary(fn):
    return lambda op, x: fn(x[0], x[1])


def _unary(fn):
    return lambda op, x: fn(x[0])


def _ints(v) -> list[int]:
    return [int(i) for i in np.asarray(v).reshape(-1)]


def _reshape(op, x):
    shape = [x[0].shape[i] if s == 0 and not op.attrs.get("allowzero") else s
             for i, s in enumerate(_ints(x[1]))]
    return np.reshape(x[0], shape)


def _unsqueeze(op, x):
    axes = op.attrs["axes"] if "axes" in op.attrs else _ints(x[1])
    out = np.asarray(x[0])
    rank = out.ndim + len(axes)
    for a in sorted(a % rank for a in axes):
        out = np.expand_dims(out, a)
    return out


def _squeeze(op, x):
    axes = op.attrs.get("axes")
    if axes is None and len(x) > 1 and x[1] is not None:
        axes = _ints(x[1])
    v = np.asarray(x[0])
    return np.squeeze(v) if axes is None else np.squeeze(v, tuple(a % v.ndim for a in axes))


def _slice(op, x):
    v = np.asarray(x[0])
    if "starts" in op.attrs:
        starts, ends, axes, steps = (op.attrs["starts"], op.attrs["ends"],
                                     op.attrs.get("axes"), None)
    else:
        starts, ends = _ints(x[1]), _ints(x[2])
        axes = _ints(x[3]) if len(x) > 3 and x[3] is not None else None
        steps = _ints(x[4]) if len(x) > 4 and x[4] is not None else None
    axes = list(range(len(starts))) if axes is None else axes
    steps = [1] * len(starts) if steps is None else steps
    sl = [slice(None)] * v.ndim
    for s, e, a, st in zip(starts, ends, axes, steps, strict=True):
        sl[a % v.ndim] = slice(s, e, st)
    return v[tuple(sl)]


def _cast(op, x):
    return np.asarray(x[0]).astype(_DTYPES[op.attrs["to"]])


def _constant_of_shape(op, x):
    from onnx import numpy_helper
    value = op.attrs.get("value")
    fill = numpy_helper.to_array(value).reshape(-1)[0] if value is not None else 0.0
    return np.full(_ints(x[0]), fill)


_OPS = {
    "Identity": _unary(lambda v: v),
    "Shape": lambda op, x: np.asarray(np.shape(x[0]), np.int64)[
        op.attrs.get("start", 0):op.attrs.get("end")],
    "Size": lambda op, x: np.asarray(np.size(x[0]), np.int64),
    "Cast": _cast,
    "Gather": lambda op, x: np.take(x[0], np.asarray(x[1]).astype(np.int64),
                                    axis=op.attrs.get("axis", 0)),
    "Unsqueeze": _unsqueeze,
    "Squeeze": _squeeze,
    "Concat": lambda op, x: np.concatenate([np.atleast_1d(v) for v in x],
                                           axis=op.attrs["axis"]),
    "Reshape": _reshape,
    "Transpose": lambda op, x: np.transpose(x[0], op.attrs.get("perm")),
    "Slice": _slice,
    "Add": _binary(np.add), "Sub": _binary(np.subtract), "Mul": _binary(np.multiply),
    "Div": lambda op, x: (np.floor_divide(x[0], x[1]) if np.asarray(x[0]).dtype.kind in "iu"
                          else np.divide(x[0], x[1])),
    "Pow": _binary(np.power), "MatMul": _binary(np.matmul),
    "Sqrt": _unary(np.sqrt), "Neg": _unary(np.negative), "Reciprocal": _unary(np.reciprocal),
    "Erf": _unary(erf), "Equal": _binary(np.equal),
    "Where": lambda op, x: np.where(x[0], x[1], x[2]),
    "ConstantOfShape": _constant_of_shape,
    "Expand": lambda op, x: np.broadcast_to(x[0], np.broadcast_shapes(np.shape(x[0]),
                                                                       tuple(_ints(x[1])))),
    "Range": lambda op, x: np.arange(x[0], x[1], x[2]),
    "Mod": lambda op, x: (np.fmod(x[0], x[1]) if op.attrs.get("fmod") else np.mod(x[0], x[1])),
    "Floor": _unary(np.floor), "Ceil": _unary(np.ceil), "Abs": _unary(np.abs),
    "Not": _unary(np.logical_not), "And": _binary(np.logical_and),
    "Or": _binary(np.logical_or), "Less": _binary(np.less), "Greater": _binary(np.greater),
    "Max": lambda op, x: np.maximum.reduce([np.asarray(v) for v in x]),
    "Min": lambda op, x: np.minimum.reduce([np.asarray(v) for v in x]),
    "ReduceProd": lambda op, x: np.prod(x[0], keepdims=bool(op.attrs.get("keepdims", 1))),
}


def evaluate(op, ins: list):
    """The output of ``op`` (a :class:`~.fuse.Op` of a type above) on constant ``ins``.

    Raises
    ------
    KeyError
        If the op type is not one of them.
    """
    return _OPS[op.op_type](op, ins)
