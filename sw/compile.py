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
        self.spad_banks, self.acc_banks = c["spad_banks"], c["acc_banks"]
        self.spad_bank_rows, self.acc_bank_rows = d["spad_bank_rows"], d["acc_bank_rows"]
        self._load_waits = False
        self.free_all()

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

    def _alloc(self, nexts: list[int], bank_rows: int, rows: int, bank: int | None,
               what: str, total: int) -> int:
        """``rows`` consecutive rows from per-bank bump pointers ``nexts``: in ``bank``
        if it has room, else in the first bank that has, else spanning banks from a
        bank's free rows over the following empty banks."""
        nb = len(nexts)
        order = list(range(nb))
        if bank is not None:
            order.remove(bank % nb)
            order.insert(0, bank % nb)
        for b in order:
            if nexts[b] + rows <= (b + 1) * bank_rows:
                addr = nexts[b]
                nexts[b] += rows
                return addr
        for b in range(nb):
            addr, end = nexts[b], nexts[b] + rows
            last = (end - 1) // bank_rows
            if last < nb and all(nexts[j] == j * bank_rows for j in range(b + 1, last + 1)):
                for j in range(b, last + 1):
                    nexts[j] = min(end, (j + 1) * bank_rows)
                return addr
        used = sum(n - b * bank_rows for b, n in enumerate(nexts))
        raise ValueError(f"{what} of {total} rows cannot hold {rows} more rows after "
                         f"{used}")

    def alloc_spad(self, rows: int, *, bank: int | None = None) -> int:
        """``rows`` scratchpad rows, in scratchpad bank ``bank`` (modulo the banks)
        where it has room: operands read in the same cycle by one unit go to
        different banks, since each bank has one read port."""
        return self._alloc(self._spad_next, self.spad_bank_rows, rows, bank, "Scratchpad",
                           self.spad_rows)

    def alloc_acc(self, rows: int, *, bank: int | None = None) -> int:
        """``rows`` accumulator rows, in accumulator bank ``bank`` where it has room."""
        return self._alloc(self._acc_next, self.acc_bank_rows, rows, bank, "Accumulator",
                           self.acc_rows)

    def free_all(self) -> None:
        self._spad_next = [b * self.spad_bank_rows for b in range(self.spad_banks)]
        self._acc_next = [b * self.acc_bank_rows for b in range(self.acc_banks)]

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
        compute a token, the GEMM gives store one). ``out`` may be a list of tensors
        that take the result's columns in turn (each but the last a multiple of
        ``array_cols`` wide), e.g. the Q, K and V of one GEMM with the weights side by
        side.

        ``scale`` is a 1 x N int32 tensor of ``mult | shift << 16`` per column (per
        channel); without it ``mult`` and ``shift`` apply to the whole tensor. With
        ``b_transposed`` the tensor ``b`` holds B transposed (N x K, e.g. the keys of
        attention for Q K^T); transposing loads put it into place.
        """
        M, K = a.rows, a.cols
        N = b.rows if b_transposed else b.cols
        R, C = self.R, self.C
        outs = list(out) if isinstance(out, (list, tuple)) else [out]
        cols = [o.cols for o in outs]
        if (b.cols if b_transposed else b.rows) != K or any(o.rows != M for o in outs) \
                or sum(cols) != N:
            raise ValueError(f"matmul shapes {M}x{K}, {b.rows}x{N} -> "
                             f"{' + '.join(f'{o.rows}x{o.cols}' for o in outs)} do not chain")
        if any(n % C for n in cols[:-1]):
            raise ValueError(f"matmul outputs of {cols} columns: each but the last must be "
                             f"a multiple of array_cols {C}")
        KT, NT = _ceil_div(K, R), _ceil_div(N, C)
        # A and B are read in the same cycles: different scratchpad banks; the
        # constants (bias, scale) in another accumulator bank than the partial sums.
        a_loc = self.alloc_spad(M * KT, bank=0)
        b_loc = self.alloc_spad(K * NT, bank=1)
        c_loc = self.alloc_acc(M * NT, bank=0)
        d_loc = self.alloc_spad(M * NT, bank=0) if requant else 0
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
            bias_loc = self.alloc_acc(NT, bank=1)
            loads += self.load_tiles(bias, loc=bias_loc, tile_bytes=self.acc_row_bytes,
                                     loc_stride=NT, space="acc")
        if scale is not None:
            scale_loc = self.alloc_acc(NT, bank=1)
            loads += self.load_tiles(scale, loc=scale_loc, tile_bytes=self.acc_row_bytes,
                                     loc_stride=NT, space="acc")
        loads[-1]["push_next"] = 1
        self.emit("gemm", a=a_loc, a_stride=KT, b=b_loc, b_stride=NT, c=c_loc, c_stride=NT,
                  d=d_loc, d_stride=NT, bias=bias_loc, scale=scale_loc, m=M, k=K, n=N,
                  accumulate=0, use_bias=int(bias is not None), requant=int(requant),
                  per_channel=int(scale is not None), mult=mult, shift=shift,
                  pop_prev=1, push_next=1)
        stores = []
        col = 0
        for o in outs:
            if requant:
                stores += self.store_tiles(o, loc=d_loc + col // C, tile_bytes=C,
                                           loc_stride=NT)
            else:
                stores += self.store_tiles(o, loc=c_loc + col // C, tile_bytes=4 * C,
                                           loc_stride=NT, space="acc")
            col += o.cols
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
        src = self.alloc_acc(M * NT, bank=0)
        loads = []
        for nt in range(NT):
            tile = Tensor(acc.offset + nt * self.acc_row_bytes, M, min(C, N - nt * C),
                          np.int32, stride=acc.stride)
            loads += self.load_tiles(tile, loc=src + nt * M, tile_bytes=self.acc_row_bytes,
                                     loc_stride=1, space="acc")
        scale_loc = 0
        if scale is not None:
            scale_loc = self.alloc_acc(NT, bank=1)
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
        src = self.alloc_spad(rows * chunks, bank=0) if src_space == "spad" else \
            self.alloc_acc(rows * chunks, bank=0)
        loads = self.load_tiles(x, loc=src, tile_bytes=local, loc_stride=chunks,
                                space=src_space)
        src2 = 0
        src2_space = "spad"
        out_chunks = _ceil_div(length, self.spad_row_bytes)
        if op == "layernorm":
            gb = self.place(np.array([params.gamma_q, params.beta_q], dtype=np.int32))
            gb_chunks = _ceil_div(length, self.C)
            src2, src2_space = self.alloc_acc(2 * gb_chunks, bank=1), "acc"
            loads += self.load_tiles(gb, loc=src2, tile_bytes=self.acc_row_bytes,
                                     loc_stride=gb_chunks, space="acc")
        elif x2 is not None:
            src2 = self.alloc_spad(rows * out_chunks, bank=1)
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


def _gemm_groups(model, array_cols: int) -> dict[int, list]:
    """Runs of consecutive ``gemm`` ops (indices into ``model.ops``) that one GEMM
    command can compute: the same A, constant untransposed weights of the same K side
    by side, all with or all without bias and requantization, and outputs that end
    on an ``array_cols`` boundary except the last (so that each output is whole
    column tiles of the joint result). Maps each run's first op index to its ops."""
    ops = model.ops
    groups: dict[int, list] = {}
    i = 0
    while i < len(ops):
        op = ops[i]
        if op.kind != "gemm" or not model.tensors[op.inputs[1]].is_const \
                or op.consts.get("transpose_b"):
            i += 1
            continue
        run = [op]
        j = i + 1
        while j < len(ops):
            nxt = ops[j]
            if (nxt.kind != "gemm" or nxt.inputs[0] != op.inputs[0]
                    or not model.tensors[nxt.inputs[1]].is_const
                    or nxt.consts.get("transpose_b")
                    or len(nxt.inputs) != len(op.inputs)
                    or ("multiplier" in nxt.consts) != ("multiplier" in op.consts)
                    or model.tensors[nxt.inputs[1]].shape[0]
                    != model.tensors[op.inputs[1]].shape[0]
                    or model.tensors[run[-1].output].shape[1] % array_cols):
                break
            run.append(nxt)
            j += 1
        if len(run) > 1:
            groups[i] = run
        i = j
    return groups


def _requant_columns(consts: dict, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Multiplier and shift of each of ``n`` output columns."""
    m = np.broadcast_to(np.asarray(consts["multiplier"]).reshape(-1), (n,))
    s = np.broadcast_to(np.asarray(consts["shift"]).reshape(-1), (n,))
    return m.astype(np.int64), s.astype(np.int64)


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
    groups = _gemm_groups(model, prog.C)
    for run in groups.values():
        # The weights (and biases) of a run side by side; each op's own tensor is a
        # column view of them.
        for k in range(1, len(run[0].inputs)):
            names = [op.inputs[k] for op in run]
            parts = [np.asarray(model.tensors[n].data).astype(dtypes[model.tensors[n].dtype])
                     for n in names]
            parts = [p[None, :] if p.ndim == 1 else p for p in parts]
            joint = prog.place(np.concatenate(parts, axis=1))
            col = 0
            for n, p in zip(names, parts, strict=True):
                tensors[n] = Tensor(joint.offset + col * joint.dtype.itemsize, joint.rows,
                                    p.shape[1], joint.dtype, stride=joint.stride)
                col += p.shape[1]
    for name, t in model.tensors.items():
        if name in tensors:
            continue
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

    def joint(run, k):
        """Input ``k`` of every op of a run, as one tensor (columns side by side)."""
        first, last = tensors[run[0].inputs[k]], tensors[run[-1].inputs[k]]
        cols = (last.offset - first.offset) // first.dtype.itemsize + last.cols
        return Tensor(first.offset, first.rows, cols, first.dtype, stride=first.stride)

    mult_width = manifest["config"]["requant_mult_width"]
    first = True
    skip = set()
    for i, op in enumerate(model.ops):
        if op.kind == "slice":
            view(op.output)
            continue
        if i in skip:
            continue
        if not first:
            prog.sync()
        first = False
        prog.free_all()
        c = op.consts
        out = view(op.output)
        if op.kind == "gemm":
            run = groups.get(i, [op])
            skip.update(range(i, i + len(run)))
            a = view(op.inputs[0])
            b = joint(run, 1) if len(run) > 1 else view(op.inputs[1])
            bias = None
            if len(op.inputs) > 2:
                bias = joint(run, 2) if len(run) > 1 else view(op.inputs[2])
            outs = [view(o.output) for o in run]
            const_b = model.tensors[op.inputs[1]].is_const
            requant = "multiplier" in c
            scale = None
            mult = shift = 0
            if requant:
                cols = [_requant_columns(o.consts, view(o.output).cols) for o in run]
                m_arr = np.concatenate([m for m, _ in cols])
                s_arr = np.concatenate([s for _, s in cols])
                if np.all(m_arr == m_arr[0]) and np.all(s_arr == s_arr[0]):
                    mult, shift = int(m_arr[0]), int(s_arr[0])
                else:
                    scale = prog.place((m_arr | (s_arr << mult_width)).astype(np.int32)[None, :])
            prog.matmul(a, b, outs if len(run) > 1 else out, bias=bias, scale=scale,
                        mult=mult, shift=shift, requant=requant,
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
