"""Small transformer encoders written as ONNX graphs with ``onnx.helper``, in the
patterns exporters emit, for the importer's tests (no downloads, no torch).

Styles:

``"bert"``  separate Q/K/V ``MatMul`` + ``Add`` (bias first, as torch writes it),
            heads by ``Reshape`` to (1, T, H, dh) and ``Transpose``, K^T by a
            ``Transpose``, scores divided by sqrt(dh) after ``Q @ K^T``, reshape
            targets computed from ``Shape``/``Gather``/``Concat``; LayerNorm written
            out (``ReduceMean``/``Sub``/``Pow``/``Sqrt``/``Div``/``Mul``/``Add``).
``"torch"`` ``nn.MultiheadAttention`` as ``torch.onnx.export`` writes it: one fused
            in-projection, ``Reshape`` to (T, 3, H, dh), ``Transpose``, ``Gather``
            of Q, K and V, both Q and K^T multiplied by ``dh ** -0.25``;
            ``LayerNormalization`` (opset 17).
``"vit"``   2-D ``Gemm`` linears (``transB``) around ``Reshape`` s, a patch
            embedding, a class token (``Concat`` with a constant), a position
            embedding, ``Gather`` of the class token's row and a classifier head.

GELU is always the ``Erf`` pattern ``x * 0.5 * (1 + erf(x / sqrt(2)))`` (the ``"vit"``
style writes ``(x * 0.5) * (1 + erf(x * (1 / sqrt(2))))``).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["encoder_onnx"]


class _B:
    def __init__(self, rng):
        from onnx import helper
        self.h = helper
        self.nodes, self.inits = [], []
        self.rng = rng
        self.k = 0

    def name(self, hint):
        self.k += 1
        return f"{hint}_{self.k}"

    def const(self, value, hint="c", dtype=np.float32):
        from onnx import numpy_helper
        n = self.name(hint)
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype), n))
        return n

    def op(self, op_type, inputs, hint=None, n_out=1, **attrs):
        name = self.name(hint or op_type)
        outs = [f"{name}_out{i}" for i in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, inputs, outs, name=name, **attrs))
        return outs[0] if n_out == 1 else outs

    def weight(self, *shape, hint="w"):
        return self.const(self.rng.standard_normal(shape) / math.sqrt(shape[0]), hint)

    def bias(self, n, hint="b"):
        return self.const(0.1 * self.rng.standard_normal(n), hint)

    def linear(self, x, d_in, d_out, hint):
        return self.op("Add", [self.bias(d_out, f"{hint}.b"),
                               self.op("MatMul", [x, self.weight(d_in, d_out, hint=f"{hint}.w")],
                                       f"{hint}.matmul")], f"{hint}.add")

    def gemm(self, x, d_in, d_out, hint):
        w = self.const(self.rng.standard_normal((d_out, d_in)) / math.sqrt(d_in), f"{hint}.w")
        return self.op("Gemm", [x, w, self.bias(d_out, f"{hint}.b")], hint, transB=1)

    def gelu(self, x, hint, variant=0):
        if variant == 0:
            e = self.op("Erf", [self.op("Div", [x, self.const(math.sqrt(2))])], f"{hint}.erf")
            a = self.op("Add", [e, self.const(1.0)])
            return self.op("Mul", [self.op("Mul", [x, a]), self.const(0.5)], f"{hint}.out")
        e = self.op("Erf", [self.op("Mul", [x, self.const(1 / math.sqrt(2))])], f"{hint}.erf")
        a = self.op("Add", [self.const(1.0), e])
        return self.op("Mul", [self.op("Mul", [x, self.const(0.5)]), a], f"{hint}.out")

    def layernorm(self, x, d, hint, decomposed):
        g = self.const(1.0 + 0.2 * self.rng.standard_normal(d), f"{hint}.gamma")
        b = self.const(0.1 * self.rng.standard_normal(d), f"{hint}.beta")
        if not decomposed:
            return self.op("LayerNormalization", [x, g, b], hint, axis=-1, epsilon=1e-5)
        mean = self.op("ReduceMean", [x], f"{hint}.mean", axes=[-1], keepdims=1)
        sub = self.op("Sub", [x, mean])
        var = self.op("ReduceMean", [self.op("Pow", [sub, self.const(2.0)])], axes=[-1],
                      keepdims=1)
        std = self.op("Sqrt", [self.op("Add", [var, self.const(1e-5)])])
        return self.op("Add", [self.op("Mul", [self.op("Div", [sub, std]), g]), b],
                       f"{hint}.out")

    def shape_of(self, x, dims, hint):
        """A reshape target (batch, tokens, *dims) computed from Shape(x)."""
        s = self.op("Shape", [x])
        lead = self.op("Slice", [s, self.const([0], dtype=np.int64),
                                 self.const([2], dtype=np.int64)], f"{hint}.lead")
        return self.op("Concat", [lead, self.const(dims, dtype=np.int64)], axis=0)


def _attention(b: _B, x, tokens, dim, heads, style, hint):
    dh = dim // heads
    if style == "torch":
        qkv = b.linear(b.op("Reshape", [x, b.const([tokens, dim], dtype=np.int64)]),
                       dim, 3 * dim, f"{hint}.in_proj")
        t = b.op("Transpose", [b.op("Reshape", [qkv, b.const([tokens, 3, heads, dh],
                                                             dtype=np.int64)])],
                 perm=[1, 2, 0, 3])
        q, k, v = (b.op("Gather", [t, b.const(i, dtype=np.int64)], axis=0) for i in range(3))
        c = b.const(dh ** -0.25)
        s = b.op("MatMul", [b.op("Mul", [q, c]),
                            b.op("Mul", [b.op("Transpose", [k], perm=[0, 2, 1]), c])])
        p = b.op("Softmax", [s], axis=-1)
        ctx = b.op("Transpose", [b.op("MatMul", [p, v])], perm=[1, 0, 2])
        ctx = b.op("Reshape", [ctx, b.const([1, tokens, dim], dtype=np.int64)])
        return b.linear(ctx, dim, dim, f"{hint}.out_proj")
    q, k, v = (b.linear(x, dim, dim, f"{hint}.{n}") for n in "qkv")
    target = b.shape_of(x, [heads, dh], hint)
    q = b.op("Transpose", [b.op("Reshape", [q, target])], perm=[0, 2, 1, 3])
    kt = b.op("Transpose", [b.op("Reshape", [k, target])], perm=[0, 2, 3, 1])
    v = b.op("Transpose", [b.op("Reshape", [v, target])], perm=[0, 2, 1, 3])
    s = b.op("Div", [b.op("MatMul", [q, kt]), b.const(math.sqrt(dh))], f"{hint}.scores")
    p = b.op("Softmax", [s], f"{hint}.probs", axis=3)
    ctx = b.op("Transpose", [b.op("MatMul", [p, v])], perm=[0, 2, 1, 3])
    ctx = b.op("Reshape", [ctx, b.shape_of(x, [dim], hint)])
    return b.linear(ctx, dim, dim, f"{hint}.o")


def encoder_onnx(*, tokens: int, dim: int, heads: int, ffn: int, depth: int, norm: str,
                 style: str, seed: int = 0, patch: int = 12, classes: int = 5,
                 extra=None):
    """An ONNX ``ModelProto`` of an encoder of the given shape (see the module doc).

    ``"vit"`` takes ``tokens - 1`` patches of ``patch`` values and puts a class
    token in front; the others take (batch, tokens, dim). ``extra(b, x) -> x``, if
    given, is applied to the encoder's output (for tests of unsupported ops).
    """
    from onnx import TensorProto, helper
    b = _B(np.random.default_rng(seed))
    opset = 13 if style == "bert" else 17
    if style == "vit":
        feat = patch
        x_in = "x"
        x = b.op("Reshape", [x_in, b.const([tokens - 1, patch], dtype=np.int64)])
        x = b.op("Reshape", [b.gemm(x, patch, dim, "patch"),
                             b.const([1, tokens - 1, dim], dtype=np.int64)])
        cls = b.const(0.5 * b.rng.standard_normal((1, 1, dim)), "cls")
        x = b.op("Concat", [cls, x], "tokens", axis=1)
        x = b.op("Add", [x, b.const(0.5 * b.rng.standard_normal((1, tokens, dim)), "pos")],
                 "embed")
    else:
        feat, x = dim, "x"
    decomposed = style == "bert"
    for i in range(depth):
        h = f"l{i}"
        y = b.layernorm(x, dim, f"{h}.ln1", decomposed) if norm == "pre" else x
        x = b.op("Add", [x, _attention(b, y, tokens, dim, heads,
                                       "bert" if style == "vit" else style, f"{h}.attn")],
                 f"{h}.res1")
        if norm == "post":
            x = b.layernorm(x, dim, f"{h}.ln1", decomposed)
        y = b.layernorm(x, dim, f"{h}.ln2", decomposed) if norm == "pre" else x
        if style == "vit":
            f = b.op("Reshape", [y, b.const([tokens, dim], dtype=np.int64)])
            f = b.gemm(b.gelu(b.gemm(f, dim, ffn, f"{h}.ffn1"), f"{h}.gelu", 1), ffn, dim,
                       f"{h}.ffn2")
            f = b.op("Reshape", [f, b.const([1, tokens, dim], dtype=np.int64)])
        else:
            f = b.linear(b.gelu(b.linear(y, dim, ffn, f"{h}.ffn1"), f"{h}.gelu"), ffn, dim,
                         f"{h}.ffn2")
        x = b.op("Add", [x, f], f"{h}.res2")
        if norm == "post":
            x = b.layernorm(x, dim, f"{h}.ln2", decomposed)
    if norm == "pre":
        x = b.layernorm(x, dim, "norm", decomposed)
    if style == "vit":
        x = b.op("Gather", [x, b.const([0], dtype=np.int64)], "cls_out", axis=1)
        x = b.gemm(b.op("Reshape", [x, b.const([1, dim], dtype=np.int64)]), dim, classes,
                   "head")
    if extra is not None:
        x = extra(b, x)
    shape = ["N", tokens - 1 if style == "vit" else tokens, feat]
    graph = helper.make_graph(
        b.nodes, "encoder",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
        [helper.make_tensor_value_info(x, TensorProto.FLOAT, [1, classes] if style == "vit"
                                       else ["N", tokens, dim])], b.inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
