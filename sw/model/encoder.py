"""Transformer encoder layers as :class:`~intformer.sw.model.graph.Graph` nodes.

One layer is multi-head self-attention followed by a feed-forward network
(``Linear -> GELU -> Linear``), each wrapped in a residual connection and a
LayerNorm, either before the branch (``pre``: ``x + f(LN(x))``) or after the
sum (``post``: ``LN(x + f(x))``). Q, K and V are separate linear layers so each
has its own activation scale; heads are column slices of them, and the head
outputs are concatenated back along the columns before the output projection.

Weights are named ``{prefix}.ln1.gamma``, ``{prefix}.attn.q.w`` (shape
(dim, dim), applied as ``x @ W``), ``{prefix}.attn.q.b``, likewise ``k``, ``v``,
``o``, then ``{prefix}.ln2.*``, ``{prefix}.ffn.1.w`` (dim, ffn), ``{prefix}.ffn.1.b``,
``{prefix}.ffn.2.w`` (ffn, dim), ``{prefix}.ffn.2.b``.
"""

from __future__ import annotations

import math

import numpy as np

from .graph import Graph

__all__ = ["encoder_layer", "encoder_weight_shapes", "random_encoder_weights", "NORMS"]

NORMS = ("pre", "post")


def _check(dim: int, heads: int, ffn: int, norm: str) -> None:
    for what, v in (("Model dimension", dim), ("Head count", heads), ("FFN width", ffn)):
        if not isinstance(v, int) or v <= 0:
            raise ValueError(f"{what} must be a positive integer, not {v!r}")
    if dim % heads:
        raise ValueError(f"Model dimension {dim} is not a multiple of the head count {heads}")
    if norm not in NORMS:
        raise ValueError(f"Norm placement {norm!r} is not one of {', '.join(NORMS)}")


def encoder_weight_shapes(prefix: str, *, dim: int, ffn: int) -> dict[str, tuple[int, ...]]:
    """The name and shape of every weight one encoder layer reads."""
    shapes = {f"{prefix}.ln1.gamma": (dim,), f"{prefix}.ln1.beta": (dim,)}
    for p in "qkvo":
        shapes[f"{prefix}.attn.{p}.w"] = (dim, dim)
        shapes[f"{prefix}.attn.{p}.b"] = (dim,)
    shapes.update({f"{prefix}.ln2.gamma": (dim,), f"{prefix}.ln2.beta": (dim,),
                   f"{prefix}.ffn.1.w": (dim, ffn), f"{prefix}.ffn.1.b": (ffn,),
                   f"{prefix}.ffn.2.w": (ffn, dim), f"{prefix}.ffn.2.b": (dim,)})
    return shapes


def random_encoder_weights(prefix: str, *, dim: int, ffn: int, rng) -> dict[str, np.ndarray]:
    """Random weights of roughly trained magnitude (for tests)."""
    w = {}
    for name, shape in encoder_weight_shapes(prefix, dim=dim, ffn=ffn).items():
        if name.endswith(".gamma"):
            w[name] = 1.0 + 0.2 * rng.standard_normal(shape)
        elif name.endswith((".beta", ".b")):
            w[name] = 0.1 * rng.standard_normal(shape)
        else:
            w[name] = rng.standard_normal(shape) / math.sqrt(shape[0])
    return w


def encoder_layer(g: Graph, x: str, prefix: str, *, dim: int, heads: int, ffn: int,
                  norm: str = "pre", eps: float = 1e-5) -> str:
    """Append one encoder layer reading tensor ``x``; return the name of its output."""
    _check(dim, heads, ffn, norm)
    dh = dim // heads

    def ln(name, t):
        return g.add("layernorm", f"{prefix}.{name}", [t], gamma=f"{prefix}.{name}.gamma",
                     beta=f"{prefix}.{name}.beta", eps=eps)

    def linear(name, t, out):
        return g.add("linear", f"{prefix}.{name}", [t], weight=f"{prefix}.{name}.w",
                     bias=f"{prefix}.{name}.b", out_features=out)

    a = ln("ln1", x) if norm == "pre" else x
    q, k, v = (linear(f"attn.{p}", a, dim) for p in "qkv")
    outs = []
    for h in range(heads):
        cols = dict(axis=1, start=h * dh, stop=(h + 1) * dh)
        qh = g.add("slice", f"{prefix}.attn.h{h}.q", [q], **cols)
        kh = g.add("slice", f"{prefix}.attn.h{h}.k", [k], **cols)
        vh = g.add("slice", f"{prefix}.attn.h{h}.v", [v], **cols)
        s = g.add("matmul", f"{prefix}.attn.h{h}.scores", [qh, kh], transpose_b=True,
                  alpha=1.0 / math.sqrt(dh))
        p = g.add("softmax", f"{prefix}.attn.h{h}.probs", [s])
        outs.append(g.add("matmul", f"{prefix}.attn.h{h}.ctx", [p, vh]))
    ctx = g.add("concat", f"{prefix}.attn.ctx", outs, axis=1)
    o = linear("attn.o", ctx, dim)
    h1 = g.add("add", f"{prefix}.res1", [x, o])
    if norm == "post":
        h1 = ln("ln1", h1)
    b = ln("ln2", h1) if norm == "pre" else h1
    f = linear("ffn.1", b, ffn)
    f = g.add("gelu", f"{prefix}.ffn.gelu", [f])
    f = linear("ffn.2", f, dim)
    out = g.add("add", f"{prefix}.res2", [h1, f])
    if norm == "post":
        out = ln("ln2", out)
    return out
