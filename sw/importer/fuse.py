"""Subgraphs of an ONNX export that are one intformer op: GELU and LayerNorm written
out in elementary ops.

``torch.onnx.export`` writes ``nn.GELU()`` as ``x * 0.5 * (1 + erf(x / sqrt(2)))``
(``Div``, ``Erf``, ``Add``, ``Mul``, ``Mul``) and, before opset 17, ``nn.LayerNorm``
as ``ReduceMean``, ``Sub``, ``Pow``, ``ReduceMean``, ``Add``, ``Sqrt``, ``Div``, then
``Mul`` by gamma and ``Add`` of beta. :func:`fuse` replaces each such chain by one
``Gelu`` or ``LayerNormalization`` node, so the importer sees the op it supports.
Works on plain tuples so it needs no ``onnx`` import of its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Op", "fuse"]


@dataclass
class Op:
    """One ONNX node: ``op_type``, ``name``, input and output value names, attributes."""

    op_type: str
    name: str
    inputs: list[str]
    outputs: list[str]
    attrs: dict = field(default_factory=dict)


def _scalar(consts: dict, name: str):
    v = consts.get(name)
    if v is None or np.asarray(v).size != 1:
        return None
    return float(np.asarray(v).reshape(()))


def _close(v, target) -> bool:
    return v is not None and math.isclose(v, target, rel_tol=1e-5)


class _Index:
    def __init__(self, ops: list[Op]):
        self.producer = {o: op for op in ops for o in op.outputs}
        self.users: dict[str, list[Op]] = {}
        for op in ops:
            for i in op.inputs:
                self.users.setdefault(i, []).append(op)

    def only_user(self, value: str, op_type: str):
        users = self.users.get(value, [])
        if len(users) == 1 and users[0].op_type == op_type:
            return users[0]
        return None

    def make(self, value: str, op_type: str):
        op = self.producer.get(value)
        return op if op is not None and op.op_type == op_type else None


def _other(op: Op, value: str) -> str | None:
    """The input of a binary ``op`` that is not ``value``."""
    if len(op.inputs) != 2 or value not in op.inputs:
        return None
    return op.inputs[1] if op.inputs[0] == value else op.inputs[0]


def _gelu(erf: Op, ix: _Index, consts: dict):
    """The ops of ``x * 0.5 * (1 + erf(x / sqrt(2)))`` around ``erf`` and ``x``."""
    pre = ix.producer.get(erf.inputs[0])
    if pre is None or pre.op_type not in ("Div", "Mul") or len(pre.inputs) != 2:
        return None
    x, c = pre.inputs
    if pre.op_type == "Div" and _close(_scalar(consts, c), math.sqrt(2)):
        pass
    elif pre.op_type == "Mul" and x in consts:
        x, c = c, x
        if not _close(_scalar(consts, c), 1 / math.sqrt(2)):
            return None
    elif not (pre.op_type == "Mul" and _close(_scalar(consts, c), 1 / math.sqrt(2))):
        return None
    add = ix.only_user(erf.outputs[0], "Add")
    if add is None or not _close(_scalar(consts, _other(add, erf.outputs[0])), 1.0):
        return None
    m1 = ix.only_user(add.outputs[0], "Mul")
    if m1 is None or ix.users.get(pre.outputs[0]) != [erf]:
        return None
    y = _other(m1, add.outputs[0])
    if y == x:
        m2 = ix.only_user(m1.outputs[0], "Mul")
        if m2 is None or not _close(_scalar(consts, _other(m2, m1.outputs[0])), 0.5):
            return None
        return x, [pre, erf, add, m1, m2], m2.outputs[0]
    half = ix.make(y, "Mul")
    if (half is not None and x in half.inputs and _close(_scalar(consts, _other(half, x)), 0.5)
            and ix.users.get(y) == [m1]):
        return x, [pre, erf, add, half, m1], m1.outputs[0]
    return None


def _axes(op: Op, consts: dict):
    if "axes" in op.attrs:
        return list(op.attrs["axes"])
    if len(op.inputs) > 1 and op.inputs[1] in consts:
        return [int(a) for a in np.asarray(consts[op.inputs[1]]).reshape(-1)]
    return None


def _layernorm(mean: Op, ix: _Index, consts: dict):
    """The ops of a decomposed LayerNorm starting at its first ``ReduceMean``."""
    x = mean.inputs[0]
    axes = _axes(mean, consts)
    if axes is None or len(axes) != 1 or not mean.attrs.get("keepdims", 1):
        return None
    sub = ix.only_user(mean.outputs[0], "Sub")
    if sub is None or sub.inputs != [x, mean.outputs[0]]:
        return None
    users = ix.users.get(sub.outputs[0], [])
    pow_ = next((u for u in users if u.op_type == "Pow"), None)
    div = next((u for u in users if u.op_type == "Div"), None)
    if len(users) != 2 or pow_ is None or div is None or div.inputs[0] != sub.outputs[0]:
        return None
    if not _close(_scalar(consts, pow_.inputs[1]), 2.0):
        return None
    var = ix.only_user(pow_.outputs[0], "ReduceMean")
    if var is None or _axes(var, consts) != axes:
        return None
    add = ix.only_user(var.outputs[0], "Add")
    eps = _scalar(consts, _other(add, var.outputs[0])) if add is not None else None
    if eps is None:
        return None
    sqrt = ix.only_user(add.outputs[0], "Sqrt")
    if sqrt is None or div.inputs[1] != sqrt.outputs[0]:
        return None
    ops, out, gamma, beta = [mean, sub, pow_, var, add, sqrt, div], div.outputs[0], None, None
    mul = ix.only_user(out, "Mul")
    if mul is not None and _other(mul, out) in consts:
        gamma, out = _other(mul, out), mul.outputs[0]
        ops.append(mul)
        plus = ix.only_user(out, "Add")
        if plus is not None and _other(plus, out) in consts:
            beta, out = _other(plus, out), plus.outputs[0]
            ops.append(plus)
    return x, ops, out, gamma, beta, eps, axes[0]


def fuse(ops: list[Op], consts: dict) -> list[Op]:
    """``ops`` with each GELU or decomposed LayerNorm chain replaced by one op.

    ``consts`` maps the names of constant values (initializers and ``Constant``
    outputs) to arrays; fused LayerNorms without gamma or beta get new entries.
    """
    ix = _Index(ops)
    replaced: dict[int, Op] = {}
    gone: set[int] = set()
    for op in ops:
        if id(op) in gone:
            continue
        if op.op_type == "Erf":
            m = _gelu(op, ix, consts)
            if m is not None:
                x, chain, out = m
                last = chain[-1]
                replaced[id(last)] = Op("Gelu", op.name, [x], [out], {"approximate": "none"})
                gone |= {id(o) for o in chain if o is not last}
        elif op.op_type == "ReduceMean":
            m = _layernorm(op, ix, consts)
            if m is not None:
                x, chain, out, gamma, beta, eps, axis = m
                if gamma is None:
                    gamma = f"{op.name}.gamma"
                    consts[gamma] = np.float64(1.0)
                if beta is None:
                    beta = f"{op.name}.beta"
                    consts[beta] = np.float64(0.0)
                last = chain[-1]
                replaced[id(last)] = Op("LayerNormalization", op.name, [x, gamma, beta], [out],
                                        {"epsilon": eps, "axis": axis})
                gone |= {id(o) for o in chain if o is not last}
    return [replaced.get(id(op), op) for op in ops if id(op) not in gone]
