"""An ONNX encoder (ViT- or BERT-style, as ``torch.onnx.export`` writes it) as an
intformer float graph.

The ONNX graph is executed symbolically once, node by node. Values computed from
constants only (initializers, ``Constant``, ``Shape`` of an activation, the
arithmetic on them that exporters emit for head sizes) are folded with numpy.
Activations are arrays of element ids (:mod:`.layout`), so reshapes, transposes,
gathers, slices, splits, squeezes and concatenations are free, and every op that
computes becomes :class:`~intformer.sw.model.graph.Graph` nodes on 2-D blocks:

============================  ==================================================
ONNX                          intformer graph
============================  ==================================================
``MatMul`` by a constant,     ``linear`` (a following ``Add`` of a constant row
``Gemm``                      vector is its bias)
``MatMul`` of activations     ``matmul`` per head (``transpose_b`` when the
                              second operand is a transposed block)
``Mul``/``Div`` by a scalar   folded into the next ``matmul`` (``alpha``) or
constant                      ``linear`` (its weights)
``Softmax`` (last axis)       ``softmax``
``LayerNormalization``, or    ``layernorm`` (last axis)
the decomposed pattern
``Gelu``, or the ``Erf``      ``gelu``
pattern
``Add`` of activations        ``add``; an ``Add`` of a constant is an ``add`` of a
                              ``param`` (position embeddings)
``Concat`` with a constant    ``param`` and ``concat`` (a class token)
============================  ==================================================

``Identity``, ``Dropout`` and ``Cast`` pass activations through. Any other op on
an activation, a data movement no slice or concatenation expresses, a constant
factor that cannot be folded, or a broadcast the graph has no node for is one
:class:`ModelImportError` naming the node, its op type and what is wrong.

The input is one tensor ``(batch, tokens, dim)`` (or ``(tokens, batch, dim)``, or
``(tokens, dim)``); the batch axis is the one that is symbolic or 1 and is run
with batch 1, image by image, as the accelerator does.
"""

from __future__ import annotations

import math

import numpy as np

from intformer.sw.model.graph import Graph

from .fuse import Op, fuse
from .layout import Act, Layout, LayoutError

__all__ = ["ModelImportError", "Imported", "import_onnx", "SUPPORTED_OPS"]

#: Op types an activation may flow through.
SUPPORTED_OPS = ("MatMul", "Gemm", "Add", "Mul", "Div", "Softmax", "LayerNormalization",
                 "Gelu", "Erf (in the GELU pattern)", "ReduceMean (in the LayerNorm pattern)",
                 "Reshape", "Transpose", "Gather", "Slice", "Split", "Squeeze", "Unsqueeze",
                 "Concat", "Expand", "Flatten", "Identity", "Dropout", "Cast")


class ModelImportError(ValueError):
    """A model the importer cannot express; the message names the node or value."""


class Imported:
    """An imported model: the float ``graph`` and its ``weights``, the input's
    per-image ``(tokens, dim)``, and the ONNX value names of the input and output."""

    def __init__(self, graph: Graph, weights: dict, *, input_name: str, output_name: str):
        self.graph = graph
        self.weights = weights
        self.input_name = input_name
        self.output_name = output_name

    @property
    def input_shape(self) -> tuple[int, int]:
        return self.graph.shapes[next(n.name for n in self.graph if n.kind == "input")]

    @property
    def output_shape(self) -> tuple[int, int]:
        return self.graph.shapes[self.graph.output]


def _attrs(node) -> dict:
    import onnx
    out = {}
    for a in node.attribute:
        v = onnx.helper.get_attribute_value(a)
        out[a.name] = v.decode() if isinstance(v, bytes) else v
    return out


def _load(model):
    import onnx
    if isinstance(model, (bytes, bytearray)):
        return onnx.load_from_string(bytes(model))
    if isinstance(model, onnx.ModelProto):
        return model
    return onnx.load(str(model))


def _dims(value_info) -> list:
    t = value_info.type.tensor_type
    return [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]


def import_onnx(model) -> Imported:
    """Import an ONNX model (a path, the serialized bytes, or an ``onnx.ModelProto``).

    Raises
    ------
    ModelImportError
        For an unsupported op on an activation (naming the node and op type), a
        shape the graph cannot express, or not exactly one input and one output.
    """
    from onnx import numpy_helper
    m = _load(model)
    g = m.graph
    consts: dict[str, np.ndarray] = {i.name: numpy_helper.to_array(i).astype(np.float64)
                                     if numpy_helper.to_array(i).dtype.kind == "f"
                                     else numpy_helper.to_array(i) for i in g.initializer}
    ops = []
    for k, node in enumerate(g.node):
        attrs = _attrs(node)
        name = node.name or f"{node.op_type}_{k}"
        if node.op_type == "Constant":
            consts[node.output[0]] = _constant(name, attrs)
            continue
        ops.append(Op(node.op_type, name, list(node.input), list(node.output), attrs))
    inputs = [i for i in g.input if i.name not in consts]
    if len(inputs) != 1:
        raise ModelImportError(f"The model must have exactly one input, not {len(inputs)} "
                           f"({', '.join(i.name for i in inputs)})")
    if len(g.output) != 1:
        raise ModelImportError(f"The model must have exactly one output, not {len(g.output)}")
    ops = fuse(ops, consts)
    opset = next((o.version for o in m.opset_import if o.domain in ("", "ai.onnx")), 17)
    return _Importer(consts, opset).run(ops, inputs[0].name, _dims(inputs[0]),
                                        g.output[0].name)


def _constant(name: str, attrs: dict) -> np.ndarray:
    from onnx import numpy_helper
    if "value" in attrs:
        v = numpy_helper.to_array(attrs["value"])
    elif "value_float" in attrs:
        v = np.asarray(attrs["value_float"])
    elif "value_floats" in attrs:
        v = np.asarray(attrs["value_floats"])
    elif "value_int" in attrs:
        v = np.asarray(attrs["value_int"], np.int64)
    elif "value_ints" in attrs:
        v = np.asarray(attrs["value_ints"], np.int64)
    else:
        raise ModelImportError(f"Constant {name!r} has none of the attributes value, "
                           f"value_float(s), value_int(s)")
    return v.astype(np.float64) if v.dtype.kind == "f" else v


def _axis(axis: int, rank: int, where: str) -> int:
    a = axis + rank if axis < 0 else axis
    if not 0 <= a < rank:
        raise ModelImportError(f"{where}: axis {axis} is outside a rank-{rank} tensor")
    return a


class _Importer:
    def __init__(self, consts: dict, opset: int):
        self.opset = opset
        self.consts = consts
        self.graph = Graph()
        self.weights: dict = {}
        self.lay = Layout(self.graph, self.weights)
        self.env: dict[str, object] = dict(consts)
        self.users: dict[str, int] = {}

    def run(self, ops: list[Op], in_name: str, dims: list, out_name: str) -> Imported:
        for op in ops:
            for i in op.inputs:
                self.users[i] = self.users.get(i, 0) + 1
        if len(dims) == 2 and None not in dims:
            shape, view = tuple(dims), None
        elif len(dims) == 3:
            batch = next((a for a in (0, 1) if dims[a] in (None, 1)), None)
            rest = [d for a, d in enumerate(dims) if a != batch]
            if batch is None or None in rest:
                raise ModelImportError(f"Input {in_name!r} of shape {dims} has no batch axis "
                                   f"(symbolic or 1) among its first two, or a symbolic "
                                   f"tokens or features axis; intformer takes (batch, tokens, "
                                   f"dim)")
            shape, view = tuple(rest), batch
        else:
            raise ModelImportError(f"Input {in_name!r} has shape {dims}; intformer takes "
                               f"(batch, tokens, dim) or (tokens, dim)")
        ids = self.lay.add("input", in_name, shape=shape)
        self.env[in_name] = Act(ids if view is None else np.expand_dims(ids, view))
        for op in ops:
            ins = [self.env.get(i) if i else None for i in op.inputs]
            for i, v in zip(op.inputs, ins, strict=True):
                if i and v is None:
                    raise ModelImportError(f"Node {op.name!r} ({op.op_type}) reads {i!r}, "
                                       f"which nothing defines")
            try:
                outs = self.step(op, ins)
            except LayoutError as e:
                raise ModelImportError(f"Node {op.name!r} ({op.op_type}): {e}") from e
            for name, v in zip(op.outputs, outs, strict=False):
                self.env[name] = v
        out = self.env[out_name]
        if not isinstance(out, Act):
            raise ModelImportError(f"Output {out_name!r} does not depend on the input")
        self.need_unit(out, f"output {out_name!r}")
        if out.ids.ndim < 2:
            raise ModelImportError(f"Output {out_name!r} has shape {out.shape}; intformer "
                               f"produces (tokens, dim)")
        flat = out.ids.reshape(-1, out.ids.shape[-1])
        name = self.lay.resolve(flat, out_name)
        return Imported(self._pruned(name), self.weights, input_name=in_name,
                        output_name=out_name)

    def _pruned(self, output: str) -> Graph:
        """The graph without nodes the output does not need, ending at ``output``."""
        need, todo = set(), [output]
        while todo:
            n = todo.pop()
            if n not in need:
                need.add(n)
                todo.extend(self.graph[n].inputs)
        g = Graph()
        for node in self.graph:
            if node.name in need and node.name != output:
                g.add(node.kind, node.name, node.inputs, shape=self.graph.shapes[node.name],
                      **node.attrs)
        node = self.graph[output]
        if node.kind == "input":
            raise ModelImportError("The model's output is its input")
        g.add(node.kind, node.name, node.inputs, shape=self.graph.shapes[node.name],
              **node.attrs)
        for key in [k for k in self.weights if not any(
                _key_used(n, k) for n in g)]:
            del self.weights[key]
        return g

    # -- helpers ------------------------------------------------------------------

    def need_unit(self, v: Act, where: str) -> None:
        if not math.isclose(v.scale, 1.0, rel_tol=1e-12):
            raise ModelImportError(f"{where}: a multiplication by the constant {v.scale:g} "
                               f"before it cannot be folded into a MatMul or Linear")

    def flat(self, v: Act) -> np.ndarray:
        if v.ids.ndim == 0:
            raise ModelImportError("a scalar activation has no rows")
        return v.ids.reshape(-1, v.ids.shape[-1]) if v.ids.ndim != 1 else v.ids[None]

    def groups(self, *acts: Act) -> list[tuple[int, int]]:
        """Row ranges of the flattened ``acts`` to compute as one graph tensor each:
        all rows when they form one tensor or there is one leading index (rows from
        several tensors are then concatenated), else one range per leading index (a
        head's scores: heads are separate tensors)."""
        shape = acts[0].shape
        rows = int(np.prod(shape[:-1]))
        if len(shape) <= 2 or all(self.lay.is_block(self.flat(v)) for v in acts) or \
                rows == shape[-2]:
            return [(0, rows)]
        return [(r, r + shape[-2]) for r in range(0, rows, shape[-2])]

    def rowwise(self, op: Op, v: Act, make) -> Act:
        """Apply a row-wise op (``make(name, hint) -> ids``) to every row group."""
        self.need_unit(v, f"Node {op.name!r} ({op.op_type})")
        f = self.flat(v)
        outs = []
        groups = self.groups(v)
        for k, (r0, r1) in enumerate(groups):
            hint = op.name if len(groups) == 1 else f"{op.name}.{k}"
            outs.append(make(self.lay.resolve(f[r0:r1], hint), hint))
        return Act(np.concatenate(outs).reshape(v.shape))

    # -- ops ----------------------------------------------------------------------

    def step(self, op: Op, ins: list):
        acts = [v for v in ins if isinstance(v, Act)]
        t = op.op_type
        if not acts:
            return [self.fold(op, ins)]
        where = f"Node {op.name!r} ({t})"
        a = op.attrs
        x = ins[0]
        if t in ("Identity", "Dropout", "Cast"):
            if t == "Cast" and a.get("to") not in (1, 10, 11):
                raise ModelImportError(f"{where}: casts an activation to a non-float type "
                                   f"({a.get('to')})")
            return [x, None]
        if t in ("Shape", "Size"):
            return [self.fold(op, [np.zeros(x.shape)])]
        if t == "Reshape":
            shape = self._ints(ins[1], where)
            shape = [x.shape[i] if s == 0 and not a.get("allowzero") else s
                     for i, s in enumerate(shape)]
            return [Act(x.ids.reshape(shape), x.scale)]
        if t == "Flatten":
            ax = _axis(a.get("axis", 1), x.ids.ndim, where)
            return [Act(x.ids.reshape(int(np.prod(x.shape[:ax])), -1), x.scale)]
        if t == "Transpose":
            return [Act(np.transpose(x.ids, a.get("perm")), x.scale)]
        if t == "Unsqueeze":
            axes = a.get("axes") if "axes" in a else self._ints(ins[1], where)
            rank = x.ids.ndim + len(axes)
            ids = x.ids
            for ax in sorted(_axis(i, rank, where) for i in axes):
                ids = np.expand_dims(ids, ax)
            return [Act(ids, x.scale)]
        if t == "Squeeze":
            axes = a.get("axes") if "axes" in a else (
                self._ints(ins[1], where) if len(ins) > 1 and ins[1] is not None else None)
            if axes is None:
                return [Act(np.squeeze(x.ids), x.scale)]
            return [Act(np.squeeze(x.ids, tuple(_axis(i, x.ids.ndim, where) for i in axes)),
                        x.scale)]
        if t == "Gather":
            if isinstance(ins[1], Act):
                raise ModelImportError(f"{where}: indices computed from the input")
            idx = np.asarray(ins[1]).astype(np.int64)
            ax = _axis(a.get("axis", 0), x.ids.ndim, where)
            idx = np.where(idx < 0, idx + x.shape[ax], idx)
            return [Act(np.take(x.ids, idx, axis=ax), x.scale)]
        if t == "Slice":
            return [Act(self._slice(op, x.ids, ins, where), x.scale)]
        if t == "Split":
            return [Act(p, x.scale) for p in self._split(op, x.ids, ins, where)]
        if t == "Expand":
            shape = self._ints(ins[1], where)
            ids = np.broadcast_to(x.ids, np.broadcast_shapes(x.shape, tuple(shape)))
            return [Act(ids.copy(), x.scale)]
        if t == "Concat":
            return [self.concat(op, ins, where)]
        if t in ("Mul", "Div"):
            return [self.scale(op, ins, where)]
        if t == "Add":
            return [self.add(op, ins, where)]
        if t in ("MatMul", "Gemm"):
            return [self.matmul(op, ins, where)]
        if t == "Softmax":
            # Before opset 13 the default axis is 1, over the input flattened from it.
            ax = a.get("axis", -1 if self.opset >= 13 else 1)
            if _axis(ax, x.ids.ndim, where) != x.ids.ndim - 1:
                raise ModelImportError(f"{where}: Softmax over axis {ax}; intformer's is over the "
                                   f"last axis")
            return [self.rowwise(op, x, lambda n, h: self.lay.add("softmax", h, [n]))]
        if t == "Gelu":
            if a.get("approximate", "none") != "none":
                raise ModelImportError(f"{where}: GELU approximation {a['approximate']!r}; "
                                   f"intformer computes the exact (erf) GELU")
            return [self.rowwise(op, x, lambda n, h: self.lay.add("gelu", h, [n]))]
        if t == "LayerNormalization":
            return [self.layernorm(op, ins, where), None, None]
        raise ModelImportError(f"{where} is not supported; intformer imports "
                           f"{', '.join(SUPPORTED_OPS)}")

    def _ints(self, v, where) -> list[int]:
        if isinstance(v, Act):
            raise ModelImportError(f"{where}: a shape or index computed from the input's values")
        return [int(i) for i in np.asarray(v).reshape(-1)]

    def _slice(self, op, data, ins, where):
        a = op.attrs
        if "starts" in a:
            starts, ends, axes, steps = a["starts"], a["ends"], a.get("axes"), None
        else:
            starts, ends = self._ints(ins[1], where), self._ints(ins[2], where)
            axes = self._ints(ins[3], where) if len(ins) > 3 and ins[3] is not None else None
            steps = self._ints(ins[4], where) if len(ins) > 4 and ins[4] is not None else None
        axes = list(range(len(starts))) if axes is None else axes
        steps = [1] * len(starts) if steps is None else steps
        sl = [slice(None)] * data.ndim
        for s, e, ax, st in zip(starts, ends, axes, steps, strict=True):
            sl[_axis(ax, data.ndim, where)] = slice(s, e, st)
        return data[tuple(sl)]

    def _split(self, op, data, ins, where):
        a = op.attrs
        ax = _axis(a.get("axis", 0), data.ndim, where)
        if "split" in a:
            sizes = list(a["split"])
        elif len(ins) > 1 and ins[1] is not None:
            sizes = self._ints(ins[1], where)
        else:
            n = a.get("num_outputs", len(op.outputs))
            size = -(-data.shape[ax] // n)
            sizes = [min(size, data.shape[ax] - k * size) for k in range(n)]
        return np.split(data, np.cumsum(sizes)[:-1], axis=ax)

    def fold(self, op: Op, ins: list):
        """Evaluate an op on constants."""
        from .fold import evaluate
        try:
            return evaluate(op, ins)
        except KeyError as e:
            raise ModelImportError(f"Node {op.name!r} ({op.op_type}) is not supported (on "
                               f"constants); intformer imports {', '.join(SUPPORTED_OPS)}"
                               ) from e

    def const_act(self, value, hint) -> Act:
        return Act(self.lay.const(value, hint))

    def concat(self, op, ins, where) -> Act:
        parts = [v if isinstance(v, Act) else self.const_act(v, f"{op.name}.const")
                 for v in ins]
        scales = {p.scale for p in parts}
        if len(scales) > 1:
            raise ModelImportError(f"{where}: concatenates tensors with different pending "
                               f"constant factors {sorted(scales)}")
        ax = _axis(op.attrs["axis"], parts[0].ids.ndim, where)
        return Act(np.concatenate([p.ids for p in parts], axis=ax), scales.pop())

    def scale(self, op, ins, where) -> Act:
        if op.op_type == "Div" and isinstance(ins[1], Act):
            raise ModelImportError(f"{where}: divides by an activation")
        act, c = (ins[0], ins[1]) if isinstance(ins[0], Act) else (ins[1], ins[0])
        if isinstance(c, Act):
            raise ModelImportError(f"{where}: multiplies two activations (element-wise); only "
                               f"the GELU pattern does that")
        c = np.asarray(c, dtype=np.float64)
        if c.size != 1:
            raise ModelImportError(f"{where}: multiplies by a constant of shape {c.shape}; "
                               f"only a scalar factor can be folded")
        f = float(c.reshape(()))
        f = 1.0 / f if op.op_type == "Div" else f
        if f == 0 or not math.isfinite(f):
            raise ModelImportError(f"{where}: constant factor {f}")
        if self.fold_factor(op, act, f):
            return act
        return Act(act.ids, act.scale * f)

    def fold_factor(self, op, act: Act, f: float) -> bool:
        """Fold factor ``f`` into the matmuls or linears that produced ``act`` (scores
        divided by sqrt(d) after ``Q @ K^T``), if only this op reads them."""
        owners = {self.lay.name_of(int(i)) for i in np.unique(self.lay.owner(act.ids))}
        value = op.inputs[0] if op.inputs[0] in self.env and isinstance(
            self.env[op.inputs[0]], Act) else op.inputs[1]
        size = sum(int(np.prod(self.graph.shapes[n])) for n in owners)
        if (self.users.get(value) != 1 or np.unique(act.ids).size != act.ids.size
                or act.ids.size != size):
            return False
        for n in owners:
            node = self.graph[n]
            if (node.kind not in ("matmul", "linear") or self.graph.consumers(n)
                    or self.lay.origin.get(n) != value):
                return False
        for n in owners:
            node = self.graph[n]
            if node.kind == "matmul":
                node.attrs["alpha"] = node.attrs.get("alpha", 1.0) * f
            else:
                for key in (node.attrs["weight"], node.attrs.get("bias")):
                    if key is not None:
                        self.weights[key] = self.weights[key] * f
            self.lay.origin[n] = op.outputs[0]
        return True

    def add(self, op, ins, where) -> Act:
        a, b = ins
        if not isinstance(a, Act):
            a, b = b, a
        if not isinstance(b, Act):
            folded = self.fold_bias(op, a, np.asarray(b, np.float64))
            if folded is not None:
                return folded
            self.need_unit(a, where)
            shape = np.broadcast_shapes(a.shape, np.shape(b))
            if shape != a.shape:
                raise ModelImportError(f"{where}: adding a constant of shape {np.shape(b)} "
                                   f"broadcasts the activation {a.shape} to {shape}")
            b = self.const_act(np.broadcast_to(b, shape), f"{op.name}.const")
        self.need_unit(a, where)
        self.need_unit(b, where)
        if a.shape != b.shape:
            raise ModelImportError(f"{where}: adds activations of shapes {a.shape} and "
                               f"{b.shape}")
        fa, fb = self.flat(a), self.flat(b)
        outs = []
        groups = self.groups(a, b)
        for k, (r0, r1) in enumerate(groups):
            hint = op.name if len(groups) == 1 else f"{op.name}.{k}"
            na, nb = self.lay.resolve(fa[r0:r1], hint), self.lay.resolve(fb[r0:r1], hint)
            outs.append(self.lay.add("add", hint, [na, nb]))
        return Act(np.concatenate(outs).reshape(a.shape))

    def fold_bias(self, op, a: Act, b: np.ndarray):
        """The bias of a Linear (MatMul by a constant) that only this Add reads."""
        f = self.flat(a)
        name = self.lay.whole(f)
        if name is None or a.scale != 1.0:
            return None
        node = self.graph[name]
        cols = f.shape[1]
        if (node.kind != "linear" or node.attrs.get("bias") is not None
                or self.graph.consumers(name) or self.users.get(self.lay.origin[name]) != 1
                or b.ndim == 0 or b.shape[-1] != cols or b.size != cols):
            return None
        key = self.lay.unique(f"{name}.b")
        self.weights[key] = b.reshape(cols)
        node.attrs["bias"] = key
        self.lay.origin[name] = op.outputs[0]
        return a

    def linear(self, op, x: Act, w: np.ndarray, bias, where) -> Act:
        if w.ndim != 2:
            raise ModelImportError(f"{where}: weight of shape {w.shape}; a Linear's is 2-D")
        w = w * x.scale
        f = self.flat(x)
        if f.shape[1] != w.shape[0]:
            raise ModelImportError(f"{where}: input of {f.shape[1]} features times a weight "
                               f"of shape {w.shape}")
        outs = []
        groups = self.groups(x)
        for k, (r0, r1) in enumerate(groups):
            hint = op.name if len(groups) == 1 else f"{op.name}.{k}"
            wkey = self.lay.unique(f"{hint}.w")
            self.weights[wkey] = w
            attrs = {"weight": wkey, "out_features": w.shape[1]}
            if bias is not None:
                bkey = self.lay.unique(f"{hint}.b")
                self.weights[bkey] = np.broadcast_to(bias, (w.shape[1],)).astype(np.float64)
                attrs["bias"] = bkey
            outs.append(self.lay.add("linear", hint, [self.lay.resolve(f[r0:r1], hint)],
                                     origin=op.outputs[0], **attrs))
        return Act(np.concatenate(outs).reshape(*x.shape[:-1], w.shape[1]))

    def matmul(self, op, ins, where) -> Act:
        a = op.attrs
        if op.op_type == "Gemm":
            x, w = ins[0], ins[1]
            if isinstance(w, Act) or not isinstance(x, Act) or a.get("transA"):
                raise ModelImportError(f"{where}: intformer imports Gemm as a Linear: an "
                                   f"activation times a constant weight, not transposed A")
            w = np.asarray(w, np.float64)
            w = (w.T if a.get("transB") else w) * a.get("alpha", 1.0)
            bias = None
            if len(ins) > 2 and ins[2] is not None:
                if isinstance(ins[2], Act):
                    raise ModelImportError(f"{where}: a bias computed from the input")
                bias = np.asarray(ins[2], np.float64) * a.get("beta", 1.0)
                if bias.size not in (1, w.shape[1]):
                    raise ModelImportError(f"{where}: bias of shape {bias.shape} for "
                                       f"{w.shape[1]} outputs")
                bias = bias.reshape(-1)
            return self.linear(op, x, w, bias, where)
        x, y = ins
        if not isinstance(x, Act):
            raise ModelImportError(f"{where}: a constant times an activation; intformer's "
                               f"Linear is x @ W")
        if not isinstance(y, Act):
            y = np.asarray(y, np.float64)
            if y.ndim > 2 and all(d == 1 for d in y.shape[:-2]):
                y = y.reshape(y.shape[-2:])
            return self.linear(op, x, y, None, where)
        if x.ids.ndim < 2 or y.ids.ndim < 2:
            raise ModelImportError(f"{where}: a 1-D operand")
        batch = np.broadcast_shapes(x.shape[:-2], y.shape[:-2])
        xb = np.broadcast_to(x.ids, (*batch, *x.shape[-2:])).reshape(-1, *x.shape[-2:])
        yb = np.broadcast_to(y.ids, (*batch, *y.shape[-2:])).reshape(-1, *y.shape[-2:])
        outs = []
        for k in range(xb.shape[0]):
            hint = op.name if xb.shape[0] == 1 else f"{op.name}.{k}"
            na = self.lay.resolve(xb[k], hint)
            nb, transposed = self.lay.resolve_transposed(yb[k], hint)
            outs.append(self.lay.add("matmul", hint, [na, nb], transpose_b=transposed,
                                     alpha=x.scale * y.scale, origin=op.outputs[0]))
        return Act(np.stack(outs).reshape(*batch, x.shape[-2], y.shape[-1]))

    def layernorm(self, op, ins, where) -> Act:
        x = ins[0]
        ax = _axis(op.attrs.get("axis", -1), x.ids.ndim, where)
        if ax != x.ids.ndim - 1:
            raise ModelImportError(f"{where}: normalizes from axis {ax}; intformer's LayerNorm "
                               f"is over the last axis")
        dim = x.shape[-1]
        params = []
        for v, what, default in ((ins[1], "scale", 1.0),
                                 (ins[2] if len(ins) > 2 else None, "bias", 0.0)):
            if isinstance(v, Act):
                raise ModelImportError(f"{where}: a {what} computed from the input")
            v = np.full(dim, default) if v is None else np.asarray(v, np.float64)
            if v.size not in (1, dim):
                raise ModelImportError(f"{where}: {what} of shape {v.shape} for {dim} features")
            params.append(np.broadcast_to(v.reshape(-1), (dim,)).copy())
        eps = float(op.attrs.get("epsilon", 1e-5))

        def make(name, hint):
            g, b = self.lay.unique(f"{hint}.gamma"), self.lay.unique(f"{hint}.beta")
            self.weights[g], self.weights[b] = params
            return self.lay.add("layernorm", hint, [name], gamma=g, beta=b, eps=eps)
        return self.rowwise(op, x, make)


def _key_used(node, key: str) -> bool:
    return key in (node.attrs.get("weight"), node.attrs.get("bias"), node.attrs.get("key"),
                   node.attrs.get("gamma"), node.attrs.get("beta"))
