"""A float model as a list of named nodes, and its float reference execution.

The same node names are kept by :func:`intformer.sw.quant.quantize`, so every
intermediate tensor of the integer model has a float counterpart to compare with.

Node kinds (all tensors are per-image 2-D ``(rows, cols)``; execution adds a
leading batch axis):

``input``      the image tokens, shape from ``attrs["shape"]``
``param``      a constant tensor ``weights[attrs["key"]]``
``linear``     ``x @ W + b`` with ``W = weights[attrs["weight"]]`` of shape (in, out)
``matmul``     ``alpha * a @ b`` (``b`` transposed when ``attrs["transpose_b"]``)
``softmax``    over the last axis
``gelu``       exact (erf) GELU
``layernorm``  over the last axis with ``gamma``, ``beta``, ``eps``
``add``        element-wise sum of two tensors
``slice``      ``x[..., start:stop]`` along ``axis`` (0 = rows, 1 = columns)
``concat``     along ``axis`` (0 = rows, 1 = columns)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy.special import erf

__all__ = ["Node", "Graph", "run_float", "gelu_float", "layernorm_float", "softmax_float"]

KINDS = ("input", "param", "linear", "matmul", "softmax", "gelu", "layernorm", "add",
         "slice", "concat")


@dataclass(frozen=True)
class Node:
    """One operation of a float model; ``name`` names its output tensor."""

    kind: str
    name: str
    inputs: tuple[str, ...] = ()
    attrs: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"Node kind {self.kind!r} is not one of {', '.join(KINDS)}")


class Graph:
    """An ordered list of :class:`Node` s with unique names and known shapes."""

    def __init__(self):
        self.nodes: list[Node] = []
        self.shapes: dict[str, tuple[int, int]] = {}

    def __iter__(self):
        return iter(self.nodes)

    def __getitem__(self, name: str) -> Node:
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    @property
    def output(self) -> str:
        return self.nodes[-1].name

    def consumers(self, name: str) -> list[Node]:
        return [n for n in self.nodes if name in n.inputs]

    def add(self, kind: str, name: str, inputs=(), shape=None, **attrs) -> str:
        """Append a node, infer its output shape, and return its name."""
        if name in self.shapes:
            raise ValueError(f"Tensor name {name!r} is used twice")
        for i in inputs:
            if i not in self.shapes:
                raise ValueError(f"Node {name!r} reads {i!r}, which is not defined before it")
        node = Node(kind, name, tuple(inputs), attrs)
        self.shapes[name] = self._infer(node, shape)
        self.nodes.append(node)
        return name

    def _infer(self, node: Node, shape) -> tuple[int, int]:
        s = [self.shapes[i] for i in node.inputs]
        a = node.attrs
        if node.kind in ("input", "param"):
            return tuple(shape)
        if node.kind == "linear":
            return (s[0][0], a["out_features"])
        if node.kind == "matmul":
            rows_b = s[1][0] if a.get("transpose_b") else s[1][1]
            inner_b = s[1][1] if a.get("transpose_b") else s[1][0]
            if s[0][1] != inner_b:
                raise ValueError(f"matmul {node.name!r}: shapes {s[0]} and {s[1]} do not chain")
            return (s[0][0], rows_b)
        if node.kind in ("softmax", "gelu", "layernorm"):
            return s[0]
        if node.kind == "add":
            if s[0] != s[1]:
                raise ValueError(f"add {node.name!r}: shapes {s[0]} and {s[1]} differ")
            return s[0]
        if node.kind == "slice":
            out = list(s[0])
            out[a["axis"]] = a["stop"] - a["start"]
            return tuple(out)
        if node.kind == "concat":
            ax = a["axis"]
            out = list(s[0])
            out[ax] = sum(x[ax] for x in s)
            return tuple(out)
        raise AssertionError(node.kind)


def softmax_float(x):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


def gelu_float(x):
    return 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


def layernorm_float(x, gamma, beta, eps):
    mean = x.mean(axis=-1, keepdims=True)
    var = ((x - mean) ** 2).mean(axis=-1, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * gamma + beta


def run_float(graph: Graph, weights: dict, x) -> dict[str, np.ndarray]:
    """Execute ``graph`` in float64 on a batch ``x`` of shape (batch, rows, cols).

    Returns every tensor by name, each with the leading batch axis.
    """
    x = np.asarray(x, dtype=np.float64)
    batch = x.shape[0]
    env: dict[str, np.ndarray] = {}
    for node in graph:
        a = node.attrs
        ins = [env[i] for i in node.inputs]
        if node.kind == "input":
            out = x
        elif node.kind == "param":
            out = np.broadcast_to(np.asarray(weights[a["key"]], np.float64),
                                  (batch, *graph.shapes[node.name]))
        elif node.kind == "linear":
            out = ins[0] @ np.asarray(weights[a["weight"]], np.float64)
            if a.get("bias") is not None:
                out = out + np.asarray(weights[a["bias"]], np.float64)
        elif node.kind == "matmul":
            b = np.swapaxes(ins[1], -1, -2) if a.get("transpose_b") else ins[1]
            out = a.get("alpha", 1.0) * (ins[0] @ b)
        elif node.kind == "softmax":
            out = softmax_float(ins[0])
        elif node.kind == "gelu":
            out = gelu_float(ins[0])
        elif node.kind == "layernorm":
            out = layernorm_float(ins[0], np.asarray(weights[a["gamma"]], np.float64),
                                  np.asarray(weights[a["beta"]], np.float64), a["eps"])
        elif node.kind == "add":
            out = ins[0] + ins[1]
        elif node.kind == "slice":
            sl = [slice(None)] * 3
            sl[1 + a["axis"]] = slice(a["start"], a["stop"])
            out = ins[0][tuple(sl)]
        elif node.kind == "concat":
            out = np.concatenate(ins, axis=1 + a["axis"])
        else:
            raise AssertionError(node.kind)
        env[node.name] = out
    return env
