"""The integer-only model: named INT8/INT32 tensors and a list of ops, each one
:mod:`intformer.sw.golden` kernel call (or a pure data movement) with integer
constants only.

This is what the compiler walks to emit a command stream; every op maps onto
one accelerator command:

``gemm``          ``C = A @ B (+ bias)`` in INT32 (:func:`~intformer.sw.golden.gemm`),
                  ``B`` transposed first when ``consts["transpose_b"]``; then, if
                  ``consts`` has ``multiplier``/``shift`` (int64 arrays, one entry per
                  output column: per-channel weights, or one value repeated),
                  :func:`~intformer.sw.golden.requantize` to INT8, otherwise the INT32
                  accumulators are the output (attention scores feeding a Softmax).
                  ``inputs`` are ``(A, B)`` or ``(A, B, bias)``; ``B`` is a constant
                  weight (in, out) or an activation (``K`` or ``V`` of one head).
``softmax``       :func:`~intformer.sw.golden.softmax` with ``consts["params"]``
``gelu``          :func:`~intformer.sw.golden.gelu` with ``consts["params"]``
``layernorm``     :func:`~intformer.sw.golden.layernorm` with ``consts["params"]``
``residual_add``  :func:`~intformer.sw.golden.residual_add` with ``consts["params"]``
``slice``         rows (``axis`` 0) or columns (``axis`` 1) ``start:stop`` of a tensor
                  (the per-head Q/K/V views, the class token's row): an address offset
``concat``        rows or columns placed side by side (head outputs; the class token
                  row in front of the patch embeddings): a placement in memory

Tensors are per image, 2-D ``(rows, cols)``; :meth:`IntegerModel.run` executes a
batch with a leading axis. Constant tensors (weights, biases, the class token and
position embedding) carry their integer ``data``; every tensor records its real
``scale`` (real value = integer x scale; per column for per-channel weights) so
results can be compared with the float model, but execution never reads it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from intformer.sw import golden

__all__ = ["IntTensor", "IntOp", "IntegerModel", "OP_KINDS", "quantize_values"]

OP_KINDS = ("gemm", "softmax", "gelu", "layernorm", "residual_add", "slice", "concat")
DTYPES = {"int8": (-128, 127), "int32": (-(1 << 31), (1 << 31) - 1)}


def quantize_values(x, scale):
    """``saturate(round(x / scale))`` to INT8, ties away from zero (host side only)."""
    q = np.asarray(x, dtype=np.float64) / scale
    q = np.sign(q) * np.floor(np.abs(q) + 0.5)
    return np.clip(q, -128, 127).astype(np.int64)


@dataclass(frozen=True, eq=False)
class IntTensor:
    """A named integer tensor.

    Attributes
    ----------
    name : str
    shape : tuple of int
        Per-image shape (2-D) for activations; the array's shape for constants.
    dtype : str
        ``"int8"`` or ``"int32"`` (biases, attention scores).
    scale : float or ndarray
        Real value of one unit; an array of one scale per column for
        per-output-channel weights and their biases.
    data : ndarray or None
        The integers of a constant tensor; None for activations.
    """

    name: str
    shape: tuple[int, ...]
    dtype: str
    scale: float | np.ndarray
    data: np.ndarray | None = None

    @property
    def is_const(self) -> bool:
        return self.data is not None


@dataclass(frozen=True, eq=False)
class IntOp:
    """One integer op: ``output = kind(*inputs; consts)``; see the module docstring."""

    kind: str
    output: str
    inputs: tuple[str, ...]
    consts: dict = field(default_factory=dict)

    def __post_init__(self):
        if self.kind not in OP_KINDS:
            raise ValueError(f"Integer op kind {self.kind!r} is not one of {', '.join(OP_KINDS)}")


class IntegerModel:
    """An integer-only model: :attr:`tensors` by name, :attr:`ops` in execution order.

    Parameters
    ----------
    tensors : dict of str to IntTensor
    ops : list of IntOp
    input : str
        The INT8 input tensor (the host quantizes the float input to its scale).
    output : str
        The final tensor (INT8 logits for the digits ViT).
    """

    def __init__(self, tensors: dict[str, IntTensor], ops: list[IntOp], *, input: str,
                 output: str):
        self.tensors = dict(tensors)
        self.ops = list(ops)
        self.input = input
        self.output = output
        defined = {n for n, t in self.tensors.items() if t.is_const} | {input}
        for op in self.ops:
            for i in op.inputs:
                if i not in defined:
                    raise ValueError(f"Op {op.output!r} reads {i!r} before it is defined")
            if op.output not in self.tensors:
                raise ValueError(f"Op {op.output!r} writes a tensor that is not declared")
            defined.add(op.output)
        if output not in defined:
            raise ValueError(f"Model output {output!r} is never produced")

    def quantize_input(self, x):
        """The host's float -> INT8 conversion of a batch of inputs."""
        return quantize_values(x, self.tensors[self.input].scale)

    def dequantize(self, name: str, values):
        """Real values of integer ``values`` of tensor ``name``."""
        return np.asarray(values, dtype=np.float64) * self.tensors[name].scale

    def run(self, x) -> dict[str, np.ndarray]:
        """Execute on a batch of INT8 inputs (batch, rows, cols); integer only.

        Returns every activation tensor by name (int64 arrays with the batch axis).
        """
        x = np.asarray(x, dtype=np.int64)
        lo, hi = DTYPES["int8"]
        if x.ndim != 3 or x.shape[1:] != tuple(self.tensors[self.input].shape):
            raise ValueError(f"Input must have shape (batch, "
                             f"{', '.join(map(str, self.tensors[self.input].shape))}), "
                             f"not {x.shape}")
        if np.any((x < lo) | (x > hi)):
            raise ValueError("Input values must be INT8")
        env = {self.input: x}
        batch = x.shape[0]

        def get(name):
            t = self.tensors[name]
            return np.broadcast_to(t.data, (batch, *t.data.shape)) if t.is_const else env[name]

        for op in self.ops:
            c = op.consts
            if op.kind == "gemm":
                out = self._gemm(op, env, batch)
            elif op.kind == "softmax":
                out = golden.softmax(get(op.inputs[0]), c["params"])
            elif op.kind == "gelu":
                out = golden.gelu(get(op.inputs[0]), c["params"])
            elif op.kind == "layernorm":
                out = golden.layernorm(get(op.inputs[0]), c["params"])
            elif op.kind == "residual_add":
                out = golden.residual_add(get(op.inputs[0]), get(op.inputs[1]), c["params"])
            elif op.kind == "slice":
                sl = [slice(None)] * 3
                sl[1 + c["axis"]] = slice(c["start"], c["stop"])
                out = get(op.inputs[0])[tuple(sl)]
            elif op.kind == "concat":
                out = np.concatenate([get(i) for i in op.inputs], axis=1 + c["axis"])
            else:
                raise AssertionError(op.kind)
            env[op.output] = np.ascontiguousarray(out)
        return env

    def _gemm(self, op: IntOp, env, batch):
        c = op.consts
        a = env[op.inputs[0]]
        bt = self.tensors[op.inputs[1]]
        bias = self.tensors[op.inputs[2]].data if len(op.inputs) > 2 else None
        if bt.is_const:
            b = bt.data.T if c.get("transpose_b") else bt.data
            rows = a.shape[1]
            acc = golden.gemm(a.reshape(batch * rows, -1), b, bias).reshape(batch, rows, -1)
        else:
            bs = env[op.inputs[1]]
            acc = np.stack([golden.gemm(a[i], bs[i].T if c.get("transpose_b") else bs[i], bias)
                            for i in range(batch)])
        if "multiplier" in c:
            return golden.requantize(acc, c["multiplier"], c["shift"])
        return acc

    def predict(self, x_float):
        """Class predictions from float inputs: host quantization, integer run,
        argmax of the integer output (first index on ties)."""
        out = self.run(self.quantize_input(x_float))[self.output]
        return out.reshape(out.shape[0], -1).argmax(axis=1)

    def summary(self) -> list[dict]:
        """One row per op: kind, output, inputs, output shape and dtype."""
        return [{"kind": op.kind, "output": op.output, "inputs": list(op.inputs),
                 "shape": list(self.tensors[op.output].shape),
                 "dtype": self.tensors[op.output].dtype} for op in self.ops]
