"""The compiler: integer model operations to a command stream and a memory image.

Everything it knows about the hardware comes from the manifest dict (sizes in
``config``/``derived``, encodings in ``commands``), never from ``intformer.hw``.

:class:`Program` lays out a memory image (inputs, weights, constants, outputs, all
as byte offsets from the DMA window base), allocates scratchpad and accumulator
rows, and emits commands with their dependency tokens. :meth:`Program.matmul` is the
building block: ``C = requant(A @ B + bias)`` (or INT32 ``A @ B + bias``) of any size,
loaded, computed and stored in the layout the GEMM command expects.
"""

from __future__ import annotations

import numpy as np

from .commands import CommandSet

__all__ = ["Program", "Tensor", "compile_model"]


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Tensor:
    """A 2-D tensor in the memory image: ``rows x cols`` of ``dtype`` at byte ``offset``,
    rows ``stride`` bytes apart (default: packed)."""

    def __init__(self, offset: int, rows: int, cols: int, dtype, *, stride: int | None = None):
        self.offset, self.rows, self.cols = offset, rows, cols
        self.dtype = np.dtype(dtype)
        self.stride = self.row_bytes if stride is None else stride

    @property
    def row_bytes(self) -> int:
        return self.cols * self.dtype.itemsize

    @property
    def nbytes(self) -> int:
        return self.rows * self.row_bytes

    def __repr__(self):
        return f"Tensor({self.offset:#x}, {self.rows}x{self.cols} {self.dtype})"


class Program:
    """A command stream and the memory image it runs on.

    Parameters
    ----------
    manifest : dict
        The design's manifest.

    Raises
    ------
    ValueError
        If an operand does not fit the scratchpad or accumulator.
    """

    def __init__(self, manifest: dict):
        self.manifest = manifest
        self.cs = CommandSet(manifest)
        c, d = manifest["config"], manifest["derived"]
        self.R, self.C = c["array_rows"], c["array_cols"]
        self.spad_rows, self.acc_rows = d["spad_rows"], d["acc_rows"]
        self.spad_row_bytes, self.acc_row_bytes = d["spad_row_bytes"], d["acc_row_bytes"]
        self.bus_bytes = c["axi_data_width"] // 8
        self.image = bytearray()
        self.commands = []
        self._spad_next = 0
        self._acc_next = 0
        self._load_waits = False

    # Memory image ---------------------------------------------------------------------------

    def place(self, array, *, align: int = 64) -> Tensor:
        """Put a 2-D array (int8 or int32) into the image; return its tensor."""
        array = np.asarray(array)
        if array.ndim == 1:
            array = array[None, :]
        off = _ceil_div(len(self.image), align) * align
        self.image += bytes(off - len(self.image))
        self.image += np.ascontiguousarray(array).tobytes()
        return Tensor(off, array.shape[0], array.shape[1], array.dtype)

    def reserve(self, rows: int, cols: int, dtype, *, align: int = 64) -> Tensor:
        """Space for an output tensor, zero-filled."""
        return self.place(np.zeros((rows, cols), dtype=dtype), align=align)

    def read(self, image: bytes, t: Tensor) -> np.ndarray:
        """Tensor ``t`` out of a memory image (for results read back)."""
        rows = [bytes(image[t.offset + r * t.stride:t.offset + r * t.stride + t.row_bytes])
                for r in range(t.rows)]
        return np.frombuffer(b"".join(rows), dtype=t.dtype).reshape(t.rows, t.cols) \
            .astype(np.int64)

    # Local memories ---------------------------------------------------------------------------

    def alloc_spad(self, rows: int) -> int:
        if self._spad_next + rows > self.spad_rows:
            raise ValueError(f"Scratchpad of {self.spad_rows} rows cannot hold {rows} more "
                             f"rows after {self._spad_next}")
        addr, self._spad_next = self._spad_next, self._spad_next + rows
        return addr

    def alloc_acc(self, rows: int) -> int:
        if self._acc_next + rows > self.acc_rows:
            raise ValueError(f"Accumulator of {self.acc_rows} rows cannot hold {rows} more "
                             f"rows after {self._acc_next}")
        addr, self._acc_next = self._acc_next, self._acc_next + rows
        return addr

    def free_all(self) -> None:
        self._spad_next = self._acc_next = 0

    def sync(self) -> None:
        """Make the next load wait until every store so far has finished (a result in
        memory read back, or local rows reused): the last store gives compute a token,
        a ``set_const`` of the scratch constant (the last one) passes it on, and the
        next load waits for it."""
        stores = [c for c in self.commands if c["name"] == "store"]
        if not stores:
            return
        stores[-1]["push_prev"] = 1
        self.emit("set_const", index=self.cs.constants["count"] - 1, value=0, pop_next=1,
                  push_prev=1)
        self._load_waits = True

    # Commands ---------------------------------------------------------------------------------

    def emit(self, name: str, **fields) -> dict:
        if name == "load" and self._load_waits:
            fields["pop_next"] = 1
            self._load_waits = False
        self.cs.encode(name, **fields)  # validates widths now, not at assembly
        cmd = {"name": name, **fields}
        self.commands.append(cmd)
        return cmd

    def load_tiles(self, t: Tensor, *, loc: int, tile_bytes: int, loc_stride: int,
                   space: str = "spad", col_bytes: int | None = None) -> list[dict]:
        """Load ``t`` so that column tile ``j`` (``tile_bytes`` wide) of row ``r`` is at
        local row ``loc + r * loc_stride + j``; one command per tile, or one for the
        whole tensor when a tile is exactly one local row."""
        row_bytes = col_bytes or t.row_bytes
        local = self.spad_row_bytes if space == "spad" else self.acc_row_bytes
        sp = self.cs.spaces[space]
        if tile_bytes == local:
            return [self.emit("load", dram=t.offset, dram_stride=t.stride,
                              row_bytes=row_bytes, rows=t.rows, loc=loc,
                              loc_stride=loc_stride, space=sp)]
        out = []
        for j in range(_ceil_div(row_bytes, tile_bytes)):
            out.append(self.emit("load", dram=t.offset + j * tile_bytes,
                                 dram_stride=t.stride,
                                 row_bytes=min(tile_bytes, row_bytes - j * tile_bytes),
                                 rows=t.rows, loc=loc + j, loc_stride=loc_stride, space=sp))
        return out

    def store_tiles(self, t: Tensor, *, loc: int, tile_bytes: int, loc_stride: int,
                    space: str = "spad") -> list[dict]:
        """Store local column tiles (as :meth:`load_tiles` lays them out) into ``t``."""
        local = self.spad_row_bytes if space == "spad" else self.acc_row_bytes
        sp = self.cs.spaces[space]
        if tile_bytes == local:
            return [self.emit("store", dram=t.offset, dram_stride=t.stride,
                              row_bytes=t.row_bytes, rows=t.rows, loc=loc,
                              loc_stride=loc_stride, space=sp)]
        out = []
        for j in range(_ceil_div(t.row_bytes, tile_bytes)):
            out.append(self.emit("store", dram=t.offset + j * tile_bytes,
                                 dram_stride=t.stride,
                                 row_bytes=min(tile_bytes, t.row_bytes - j * tile_bytes),
                                 rows=t.rows, loc=loc + j, loc_stride=loc_stride, space=sp))
        return out

    def matmul(self, a: Tensor, b: Tensor, out: Tensor, *, bias: Tensor | None = None,
               scale: Tensor | None = None, mult: int = 0, shift: int = 0,
               requant: bool = True, b_transposed: bool = False) -> None:
        """``out = requant(a @ b + bias)`` (INT8) or ``a @ b + bias`` (INT32, ``requant``
        False): loads, one ``gemm``, stores, chained by tokens (the last load gives
        compute a token, the GEMM gives store one).

        ``scale`` is a 1 x N int32 tensor of ``mult | shift << 16`` per column (per
        channel); without it ``mult`` and ``shift`` apply to the whole tensor. With
        ``b_transposed`` the tensor ``b`` holds B transposed (N x K, e.g. the keys of
        attention for Q K^T); transposing loads put it into place.
        """
        M, K = a.rows, a.cols
        N = b.rows if b_transposed else b.cols
        if (b.cols if b_transposed else b.rows) != K or out.rows != M or out.cols != N:
            raise ValueError(f"matmul shapes {M}x{K}, {b.rows}x{N} -> {out.rows}x{out.cols} "
                             f"do not chain")
        R, C = self.R, self.C
        KT, NT = _ceil_div(K, R), _ceil_div(N, C)
        a_loc = self.alloc_spad(M * KT)
        b_loc = self.alloc_spad(K * NT)
        c_loc = self.alloc_acc(M * NT)
        d_loc = self.alloc_spad(M * NT) if requant else 0
        loads = self.load_tiles(a, loc=a_loc, tile_bytes=R, loc_stride=KT)
        if b_transposed:
            L = self.spad_row_bytes
            for nt in range(NT):
                for kb in range(_ceil_div(K, L)):
                    loads.append(self.emit(
                        "load", dram=b.offset + nt * C * b.stride + kb * L,
                        dram_stride=b.stride, row_bytes=min(L, K - kb * L),
                        rows=min(C, N - nt * C), loc=b_loc + kb * L * NT + nt, loc_stride=NT,
                        space=self.cs.spaces["spad"], transpose=1))
        else:
            loads += self.load_tiles(b, loc=b_loc, tile_bytes=C, loc_stride=NT)
        bias_loc = scale_loc = 0
        if bias is not None:
            bias_loc = self.alloc_acc(NT)
            loads += self.load_tiles(bias, loc=bias_loc, tile_bytes=self.acc_row_bytes,
                                     loc_stride=NT, space="acc")
        if scale is not None:
            scale_loc = self.alloc_acc(NT)
            loads += self.load_tiles(scale, loc=scale_loc, tile_bytes=self.acc_row_bytes,
                                     loc_stride=NT, space="acc")
        loads[-1]["push_next"] = 1
        self.emit("gemm", a=a_loc, a_stride=KT, b=b_loc, b_stride=NT, c=c_loc, c_stride=NT,
                  d=d_loc, d_stride=NT, bias=bias_loc, scale=scale_loc, m=M, k=K, n=N,
                  accumulate=0, use_bias=int(bias is not None), requant=int(requant),
                  per_channel=int(scale is not None), mult=mult, shift=shift,
                  pop_prev=1, push_next=1)
        if requant:
            stores = self.store_tiles(out, loc=d_loc, tile_bytes=C, loc_stride=NT)
        else:
            stores = self.store_tiles(out, loc=c_loc, tile_bytes=4 * C, loc_stride=NT,
                                      space="acc")
        stores[0]["pop_prev"] = 1

    def requant(self, acc: Tensor, out: Tensor, *, scale: Tensor | None = None,
                mult: int = 0, shift: int = 0) -> None:
        """``out = requantize(acc, ...)``: an INT32 tensor to INT8 with ``requant``
        commands, one per column tile of ``array_cols`` columns (each tile's rows are
        consecutive accumulator rows, as the command reads them); ``scale`` and
        ``mult``/``shift`` as in :meth:`matmul`."""
        M, N = acc.rows, acc.cols
        if acc.dtype != np.int32 or out.dtype != np.int8 or (out.rows, out.cols) != (M, N):
            raise ValueError(f"requant takes an int32 tensor to an int8 one of the same "
                             f"shape, not {acc} to {out}")
        C = self.C
        NT = _ceil_div(N, C)
        src = self.alloc_acc(M * NT)
        loads = []
        for nt in range(NT):
            tile = Tensor(acc.offset + nt * self.acc_row_bytes, M, min(C, N - nt * C),
                          np.int32, stride=acc.stride)
            loads += self.load_tiles(tile, loc=src + nt * M, tile_bytes=self.acc_row_bytes,
                                     loc_stride=1, space="acc")
        scale_loc = 0
        if scale is not None:
            scale_loc = self.alloc_acc(NT)
            loads += self.load_tiles(scale, loc=scale_loc, tile_bytes=self.acc_row_bytes,
                                     loc_stride=NT, space="acc")
        loads[-1]["push_next"] = 1
        dst = self.alloc_spad(M * NT)
        for nt in range(NT):
            self.emit("requant", src=src + nt * M, dst=dst + nt, dst_stride=NT, rows=M,
                      scale=scale_loc + nt, per_channel=int(scale is not None), mult=mult,
                      shift=shift, pop_prev=int(nt == 0), push_next=int(nt == NT - 1))
        stores = self.store_tiles(out, loc=dst, tile_bytes=C, loc_stride=NT)
        stores[0]["pop_prev"] = 1

    def set_params(self, op: str, params) -> None:
        """``set_const`` every field of a golden parameter object (``GeluParams``...)
        into the constants the manifest names ``<op>.<field>``."""
        for name, index in self.cs.constants.items():
            prefix, _, field = name.partition(".")
            if prefix == op:
                self.emit("set_const", index=index, value=int(getattr(params, field)))
                # gamma and beta are not constants: they travel through memory

    def vector(self, op: str, x: Tensor, out: Tensor, params, *, x2: Tensor | None = None,
               src_space: str = "spad") -> None:
        """``out = op(x[, x2])`` row by row on a vector unit: loads, constants, the
        command, the store; ``out`` is INT8 in the scratchpad. For ``layernorm`` the
        gamma and beta of ``params`` go to the accumulator as the command's ``src2``."""
        rows, length = x.rows, x.cols
        local = self.spad_row_bytes if src_space == "spad" else self.acc_row_bytes
        elems = self.spad_row_bytes if src_space == "spad" else self.C
        chunks = _ceil_div(length, elems)
        src = self.alloc_spad(rows * chunks) if src_space == "spad" else \
            self.alloc_acc(rows * chunks)
        loads = self.load_tiles(x, loc=src, tile_bytes=local, loc_stride=chunks,
                                space=src_space)
        src2 = 0
        src2_space = "spad"
        out_chunks = _ceil_div(length, self.spad_row_bytes)
        if op == "layernorm":
            gb = self.place(np.array([params.gamma_q, params.beta_q], dtype=np.int32))
            gb_chunks = _ceil_div(length, self.C)
            src2, src2_space = self.alloc_acc(2 * gb_chunks), "acc"
            loads += self.load_tiles(gb, loc=src2, tile_bytes=self.acc_row_bytes,
                                     loc_stride=gb_chunks, space="acc")
        elif x2 is not None:
            src2 = self.alloc_spad(rows * out_chunks)
            loads += self.load_tiles(x2, loc=src2, tile_bytes=self.spad_row_bytes,
                                     loc_stride=out_chunks)
        loads[-1]["push_next"] = 1
        dst = self.alloc_spad(rows * out_chunks)
        self.set_params(op, params)
        spaces = self.cs.spaces
        self.emit(op, src=src, src_stride=chunks, src_space=spaces[src_space], src2=src2,
                  src2_stride=out_chunks if x2 is not None else 0,
                  src2_space=spaces[src2_space], dst=dst,
                  dst_stride=out_chunks, dst_space=spaces["spad"], rows=rows, length=length,
                  pop_prev=1, push_next=1)
        stores = self.store_tiles(out, loc=dst, tile_bytes=self.spad_row_bytes,
                                  loc_stride=out_chunks)
        stores[0]["pop_prev"] = 1

    def copy(self, src: Tensor, dst: Tensor) -> None:
        """Copy ``src`` to ``dst`` (same shape and type) through the scratchpad."""
        chunks = _ceil_div(src.row_bytes, self.spad_row_bytes)
        loc = self.alloc_spad(src.rows * chunks)
        loads = self.load_tiles(src, loc=loc, tile_bytes=self.spad_row_bytes,
                                loc_stride=chunks)
        loads[-1]["push_next"] = 1
        self.emit("set_const", index=self.cs.constants["count"] - 1, value=0, pop_prev=1,
                  push_next=1)
        stores = self.store_tiles(dst, loc=loc, tile_bytes=self.spad_row_bytes,
                                  loc_stride=chunks)
        stores[0]["pop_prev"] = 1

    def end(self, *, irq: bool = True) -> None:
        self.emit("end", irq=int(irq))

    def assemble(self) -> bytes:
        """The command stream's bytes."""
        return self.cs.assemble(
            self.cs.command(c["name"], **{k: v for k, v in c.items() if k != "name"})
            for c in self.commands)


def compile_model(manifest: dict, model, x) -> tuple[Program, dict[str, Tensor]]:
    """A program that runs the integer model ``model`` (:class:`intformer.sw.model.
    IntegerModel`) on one INT8 input ``x`` (``model.tensors[model.input].shape``).

    Every tensor lives in the memory image (constants with their data, activations
    reserved), so each op's result can be read back and compared. Ops run one after
    the other, each loading its operands, computing and storing its result; a
    :meth:`Program.sync` between ops orders the stores before the next loads. Slices
    are views (an offset and a row stride); a concatenation copies its inputs into
    place through the scratchpad.

    Returns the program and the tensor of every name.

    Raises
    ------
    ValueError
        If an op does not fit the hardware (for example a dimension past a field's
        width or an operand larger than the scratchpad).
    """
    prog = Program(manifest)
    tensors: dict[str, Tensor] = {}
    dtypes = {"int8": np.int8, "int32": np.int32}
    views = {op.output: op for op in model.ops if op.kind == "slice"}

    def place_const(t):
        data = np.asarray(t.data).astype(dtypes[t.dtype])
        return prog.place(data[None, :] if data.ndim == 1 else data.reshape(data.shape[0], -1))

    inp = model.tensors[model.input]
    tensors[model.input] = prog.place(np.asarray(x, dtype=np.int8).reshape(inp.shape))
    for name, t in model.tensors.items():
        if t.is_const:
            if any(op.kind == "gemm" and op.inputs[1] == name and op.consts.get("transpose_b")
                   for op in model.ops):
                tensors[name] = prog.place(np.ascontiguousarray(
                    np.asarray(t.data).astype(dtypes[t.dtype]).T))
            else:
                tensors[name] = place_const(t)
        elif name != model.input and name not in views:
            rows, cols = t.shape
            tensors[name] = prog.reserve(rows, cols, dtypes[t.dtype])

    def view(name):
        if name in tensors:
            return tensors[name]
        op = views[name]
        src = view(op.inputs[0])
        c = op.consts
        item = src.dtype.itemsize
        if c["axis"] == 0:
            t = Tensor(src.offset + c["start"] * src.stride, c["stop"] - c["start"], src.cols,
                       src.dtype, stride=src.stride)
        else:
            t = Tensor(src.offset + c["start"] * item, src.rows, c["stop"] - c["start"],
                       src.dtype, stride=src.stride)
        tensors[name] = t
        return t

    first = True
    for op in model.ops:
        if op.kind == "slice":
            view(op.output)
            continue
        if not first:
            prog.sync()
        first = False
        prog.free_all()
        c = op.consts
        out = view(op.output)
        if op.kind == "gemm":
            a, b = view(op.inputs[0]), view(op.inputs[1])
            bias = view(op.inputs[2]) if len(op.inputs) > 2 else None
            const_b = model.tensors[op.inputs[1]].is_const
            requant = "multiplier" in c
            scale = None
            mult = shift = 0
            if requant:
                m_arr = np.asarray(c["multiplier"]).reshape(-1)
                s_arr = np.asarray(c["shift"]).reshape(-1)
                if np.all(m_arr == m_arr[0]) and np.all(s_arr == s_arr[0]):
                    mult, shift = int(m_arr[0]), int(s_arr[0])
                else:
                    n = out.cols
                    m_arr = np.broadcast_to(m_arr, (n,))
                    s_arr = np.broadcast_to(s_arr, (n,))
                    scale = prog.place((m_arr.astype(np.int64) | (s_arr.astype(np.int64) << 16))
                                       .astype(np.int32)[None, :])
            prog.matmul(a, b, out, bias=bias, scale=scale, mult=mult, shift=shift,
                        requant=requant,
                        b_transposed=bool(c.get("transpose_b")) and not const_b)
        elif op.kind in ("softmax", "gelu", "layernorm"):
            x_t = view(op.inputs[0])
            prog.vector(op.kind, x_t, out, c["params"],
                        src_space="acc" if x_t.dtype == np.int32 else "spad")
        elif op.kind == "residual_add":
            prog.vector("residual", view(op.inputs[0]), out, c["params"],
                        x2=view(op.inputs[1]))
        elif op.kind == "concat":
            r0 = c0 = 0
            for i, name in enumerate(op.inputs):
                src = view(name)
                if i:
                    prog.sync()
                    prog.free_all()
                dst = Tensor(out.offset + r0 * out.stride + c0 * out.dtype.itemsize,
                             src.rows, src.cols, out.dtype, stride=out.stride)
                prog.copy(src, dst)
                if c["axis"] == 0:
                    r0 += src.rows
                else:
                    c0 += src.cols
        else:
            raise ValueError(f"Cannot compile op kind {op.kind!r}")
    prog.end()
    return prog, tensors
