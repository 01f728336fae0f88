"""The compiler: integer model operations to a command stream and a memory image.

Everything it knows about the hardware comes from the manifest dict (sizes in
``config``/``derived``, encodings in ``commands``), never from ``intformer.hw``.

:class:`Program` lays out a memory image (inputs, weights, constants, outputs, all
as byte offsets from the DMA window base), allocates scratchpad and accumulator
rows bank-aware, and emits commands with their dependency tokens. Its methods
(:meth:`Program.matmul`, :meth:`Program.vector`, :meth:`Program.requant`,
:meth:`Program.copy`) each run one operation on its own: load the operands, compute,
store, with :meth:`Program.sync` and :meth:`Program.free_all` between operations.

:func:`compile_model` compiles a whole model, with the ``"dataflow"`` schedule where
the configuration allows it (results stay on chip, constants are loaded ahead while
the previous operation computes, stores run behind, and each command waits for
exactly the commands it depends on) and the per-operation ``"serial"`` schedule
otherwise; see there.
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

    The operation methods schedule serially: each loads its operands (the first load
    waits for the stores before it when :meth:`sync` was called), computes with one
    or a few commands that wait for the last load, and stores with a first store
    that waits for the computation. Local rows come from per-bank bump allocators
    reset by :meth:`free_all`; the two operands one unit reads in the same cycle are
    put into different banks (each bank has one read port), which is what lets the
    GEMM engine take one A row per cycle.

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
        #: The schedule that :func:`compile_model` used.
        self.schedule = "serial"
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


class _NoRoom(ValueError):
    """A dataflow schedule does not apply: the live tensors do not fit a local memory,
    or an operand cannot be put into the layout its consumer reads."""


class _Space:
    """The rows of one local memory: next-fit allocation within a preferred bank (so
    that freed rows are not reused at once), or from the top down for small
    constants (so that they do not cut the long runs that large results need),
    explicit release."""

    def __init__(self, name: str, rows: int, banks: int):
        self.name, self.rows, self.banks = name, rows, banks
        self.bank_rows = rows // banks
        self.free = [[0, rows]]
        self.cursor = [b * self.bank_rows for b in range(banks)]

    def bank(self, row: int) -> int:
        return min(row // self.bank_rows, self.banks - 1)

    def alloc(self, n: int, bank: int, what: str = "", *, top: bool = False) -> int:
        b = bank % self.banks
        lo, hi = b * self.bank_rows, (b + 1) * self.bank_rows
        start = None
        if top:
            for s, e in reversed(self.free):
                if min(e, hi) - max(s, lo) >= n:
                    start = min(e, hi) - n
                    break
        for after in () if start is not None else (self.cursor[b], lo):
            for s, e in self.free:
                st = max(s, after)
                if st + n <= min(e, hi):
                    start = st
                    break
            if start is not None:
                break
        if start is None:  # another bank, or a run across banks
            start = next((s for s, e in self.free if s + n <= e), None)
        if start is None:
            run = max((e - s for s, e in self.free), default=0)
            raise _NoRoom(f"{self.name} of {self.rows} rows has no {n} free consecutive "
                          f"rows{what}: the longest free run is {run} rows, {n - run} "
                          f"short")
        for k, (s, e) in enumerate(self.free):
            if s <= start and start + n <= e:
                self.free[k:k + 1] = [r for r in ([s, start], [start + n, e]) if r[0] < r[1]]
                break
        if not top:
            self.cursor[self.bank(start)] = start + n
        return start

    def release(self, start: int, n: int) -> None:
        merged = []
        for s, e in sorted(self.free + [[start, start + n]]):
            if merged and merged[-1][1] == s:
                merged[-1][1] = e
            else:
                merged.append([s, e])
        self.free = merged


class _Region:
    """Rows of a local memory holding results (``names``) or a step's operands."""

    __slots__ = ("space", "start", "rows", "names")

    def __init__(self, space: str, start: int, rows: int, names=()):
        self.space, self.start, self.rows, self.names = space, start, rows, set(names)


_QUEUES = ("load", "compute", "store")
#: Token edges: (pushing queue, popping queue, push flag, pop flag).
_EDGES = (("load", "compute", "push_next", "pop_prev"),
          ("compute", "load", "push_prev", "pop_next"),
          ("compute", "store", "push_next", "pop_prev"),
          ("store", "compute", "push_prev", "pop_next"))
_VECTOR = {"softmax": "softmax", "gelu": "gelu", "layernorm": "layernorm",
           "residual_add": "residual"}


class _Dataflow:
    """The ``"dataflow"`` schedule of :func:`compile_model` (see there).

    Commands are appended to ``prog.commands`` in program order; every local row and
    every memory range remembers its last writer and (per queue) its last reader, so
    each command knows the earlier commands it must wait for. At the end each
    command pops one token per neighbour queue it waits for (only when an earlier
    command of its queue has not waited for the same or a later one) and the
    command it waits for pushes it; tokens count, so the k-th pop on an edge is
    matched by the k-th push, which is the command waited for. Every wait is on an
    earlier command, so the stream cannot deadlock.
    """

    #: Steps whose constant operands are loaded ahead (measured on the digits ViT:
    #: 2 is best; 4 delays the transposing loads behind weights).
    LOOKAHEAD = 2
    #: Scratchpad bank of the constants (weights), and of results read with nothing
    #: else; the others go to the other bank than what they are read with.
    CONST_BANK = 1
    RESULT_BANK = 0

    def __init__(self, prog: Program, model, tensors: dict, views: dict, steps: list,
                 gemm_args):
        self.p, self.cs, self.model = prog, prog.cs, model
        self.tensors, self.views, self.steps, self.gemm_args = tensors, views, steps, gemm_args
        c = prog.manifest["config"]
        self.L = prog.spad_row_bytes
        self.mem = {"spad": _Space("Scratchpad", prog.spad_rows, c["spad_banks"]),
                    "acc": _Space("Accumulator", prog.acc_rows, c["acc_banks"])}
        self.elems = {"spad": prog.spad_row_bytes, "acc": prog.C}
        self.row_bytes = {"spad": prog.spad_row_bytes, "acc": prog.acc_row_bytes}
        self.meta: list[tuple[str, int, dict]] = []
        self.count = dict.fromkeys(_QUEUES, 0)
        self.last_w = {sp: np.full(m.rows, -1) for sp, m in self.mem.items()}
        self.last_r = {(sp, q): np.full(m.rows, -1) for sp, m in self.mem.items()
                       for q in _QUEUES}
        self.dram_w: list[tuple[int, int, int]] = []
        self.dram_r: list[tuple[int, int, int]] = []
        self.scratch = self.cs.constants["count"] - 1
        self.const_values: dict[int, int] = {}
        self.deferred: list = []
        self.loc: dict[str, tuple] = {}        # result -> (space, row, stride, region,
        #                                        elements per local row)
        self.alias: dict[str, tuple] = {}      # concat input -> (concat output, r0, c0)
        self.shared: set[str] = set()          # ... stored with the concatenation
        self.in_memory: set[str] = set()       # concatenations put together in memory
        self.producer: dict[str, int] = {}     # result -> its step
        self.last_use: dict[str, int] = {}
        self.temps: dict[int, list] = {}       # step -> its operand regions

    # Dependencies ------------------------------------------------------------------------

    def _append(self, name: str, deps: dict, **fields) -> int:
        self.cs.encode(name, **fields)  # validates widths now
        q = self.cs.queue(name)
        self.p.commands.append({"name": name, **fields})
        self.meta.append((q, self.count[q], deps))
        self.count[q] += 1
        return len(self.meta) - 1

    def cmd(self, name: str, *, reads=(), writes=(), dram_r=None, dram_w=None,
            **fields) -> int:
        """Append a command that reads and writes these local rows and memory ranges,
        waiting for the earlier commands it depends on."""
        if dram_r and self.deferred:
            # A store put off (see finish) of memory this command reads goes now.
            due = [a for a in self.deferred
                   if self.extent(a[0])[0] < dram_r[1] and dram_r[0] < self.extent(a[0])[1]]
            self.deferred = [a for a in self.deferred if a not in due]
            for args in due:
                self.store(*args)
        q = self.cs.queue(name)
        gids = [self.last_w[sp][r].max() for sp, r in reads]
        for sp, r in writes:
            gids.append(self.last_w[sp][r].max())
            gids += [self.last_r[(sp, q2)][r].max() for q2 in _QUEUES]
        if dram_r:
            gids += [g for lo, hi, g in self.dram_w if lo < dram_r[1] and dram_r[0] < hi]
        if dram_w:
            gids += [g for lo, hi, g in self.dram_w + self.dram_r
                     if lo < dram_w[1] and dram_w[0] < hi]
        deps: dict[str, int] = {}
        for g in gids:
            if g >= 0:
                gq, gi, _ = self.meta[int(g)]
                if gq != q:
                    deps[gq] = max(deps.get(gq, -1), gi)
        far = {"load": "store", "store": "load"}.get(q)
        if far in deps:
            # No token joins loads and stores: a no-op on the compute queue relays.
            relay = self._append("set_const", {far: deps.pop(far)}, index=self.scratch,
                                 value=0)
            deps["compute"] = max(deps.get("compute", -1), self.meta[relay][1])
        g = self._append(name, deps, **fields)
        for sp, r in reads:
            self.last_r[(sp, q)][r] = g
        for sp, r in writes:
            self.last_w[sp][r] = g
        if dram_r:
            self.dram_r.append((*dram_r, g))
        if dram_w:
            self.dram_w.append((*dram_w, g))
        return g

    def tokens(self) -> None:
        """Set the pop and push flags of every command from its dependencies."""
        byq = {q: [] for q in _QUEUES}
        for g, (q, _, _) in enumerate(self.meta):
            byq[q].append(g)
        for src, dst, push, pop in _EDGES:
            seen = -1
            for g in byq[dst]:
                t = self.meta[g][2].get(src)
                if t is not None and t > seen:
                    self.p.commands[g][pop] = 1
                    self.p.commands[byq[src][t]][push] = 1
                    seen = t

    # Local rows ---------------------------------------------------------------------------

    @staticmethod
    def rows(loc: int, n: int, stride: int, chunks: int) -> np.ndarray:
        return (loc + np.arange(n)[:, None] * stride + np.arange(chunks)[None, :]).ravel()

    def chunks(self, t: Tensor, space: str) -> int:
        return _ceil_div(t.cols, self.elems[space])

    @staticmethod
    def extent(t: Tensor) -> tuple[int, int]:
        return t.offset, t.offset + (t.rows - 1) * t.stride + t.row_bytes

    def tiles(self, t: Tensor, space: str, width: int | None):
        """``t`` as the column tiles of ``width`` elements (default: a whole local row)
        that a layout puts into consecutive local rows: one tile when ``width`` is the
        local row or ``t`` fits one tile, else one per tile, with its first row."""
        if width is None or width == self.elems[space] or t.cols <= width:
            return [(t, 0)]
        return [(Tensor(t.offset + j * width * t.dtype.itemsize, t.rows,
                        min(width, t.cols - j * width), t.dtype, stride=t.stride), j)
                for j in range(_ceil_div(t.cols, width))]

    def load(self, t: Tensor, space: str, loc: int, stride: int,
             width: int | None = None) -> None:
        """Load ``t`` with ``width`` elements per local row (default: a whole row)."""
        for tile, j in self.tiles(t, space, width):
            n = _ceil_div(tile.row_bytes, self.row_bytes[space])
            self.cmd("load", writes=[(space, self.rows(loc + j, tile.rows, stride, n))],
                     dram_r=self.extent(tile), dram=tile.offset, dram_stride=tile.stride,
                     row_bytes=tile.row_bytes, rows=tile.rows, loc=loc + j,
                     loc_stride=stride, space=self.cs.spaces[space])

    def store(self, t: Tensor, space: str, loc: int, stride: int,
              width: int | None = None) -> None:
        """Store ``t`` from ``width`` elements per local row (default: a whole row)."""
        tiles = self.tiles(t, space, width)
        if len(tiles) > 1:
            for tile, j in tiles:
                self.store(tile, space, loc + j, stride)
            return
        n = _ceil_div(t.row_bytes, self.row_bytes[space])
        width = 1 << self.cs.fields("store")["row_bytes"]["width"]
        if stride == n and t.stride == t.row_bytes == n * self.row_bytes[space] \
                and t.rows * t.row_bytes < width:
            # Dense here and there: one long row (a few cycles less per command).
            t = Tensor(t.offset, 1, t.rows * t.cols, t.dtype)
            n = _ceil_div(t.row_bytes, self.row_bytes[space])
        self.cmd("store", reads=[(space, self.rows(loc, t.rows, stride, n))],
                 dram_w=self.extent(t), dram=t.offset, dram_stride=t.stride,
                 row_bytes=t.row_bytes, rows=t.rows, loc=loc, loc_stride=stride,
                 space=self.cs.spaces[space])

    def temp(self, k: int, space: str, n: int, bank: int, *, top: bool = False) -> int:
        """Rows for an operand of step ``k``, released after the step (from the top of
        ``bank`` down with ``top``)."""
        start = self.mem[space].alloc(n, bank, self.for_step(k), top=top)
        self.temps.setdefault(k, []).append(_Region(space, start, n))
        return start

    # Residency ----------------------------------------------------------------------------

    def root(self, name: str) -> str:
        while True:
            if name in self.views:
                name = self.views[name].inputs[0]
            elif name in self.alias:
                name = self.alias[name][0]
            else:
                return name

    def is_result(self, name: str) -> bool:
        return self.root(name) in self.producer

    def for_step(self, k: int) -> str:
        """`` for <outputs> (step k)``, for the errors of the allocator."""
        return f" for {', '.join(op.output for op in self.steps[k][1])} (step {k})"

    @staticmethod
    def fits(cols: int, have: int, want: int) -> bool:
        """Whether ``cols`` columns laid out ``have`` elements per local row are also
        laid out ``want`` per row (the same widths, or one local row either way: the
        data are in the low bytes)."""
        return have == want or cols <= min(have, want)

    def local(self, name: str):
        """``(space, row, stride, width)`` of a resident tensor (or view), ``width``
        elements per local row, or None."""
        if name in self.views:
            base = self.local(self.views[name].inputs[0])
            if base is None:
                return None
            space, addr, stride, width = base
            c = self.views[name].consts
            if c["axis"] == 0:
                return space, addr + c["start"] * stride, stride, width
            if c["start"] % width:
                return None
            return space, addr + c["start"] // width, stride, width
        if name in self.alias:
            parent, r0, c0 = self.alias[name]
            base = self.local(parent)
            if base is None:
                return None
            space, addr, stride, width = base
            return space, addr + r0 * stride + c0 // width, stride, width
        if name not in self.loc:
            return None
        space, addr, stride, _, width = self.loc[name]
        return space, addr, stride, width

    def bank_of(self, name: str):
        """The scratchpad bank a step will read ``name`` from, if known: constants
        are loaded into bank 1, results stay where they were put."""
        r = self.root(name)
        if r in self.loc:
            return self.mem[self.loc[r][0]].bank(self.loc[r][1])
        if r not in self.producer:
            return self.CONST_BANK
        return None

    def pick_bank(self, names: set, after: int) -> int:
        """A scratchpad bank for results ``names``: the other bank than the operand
        the first step reading them together with another one reads with them."""
        for kind, run in self.steps[after + 1:]:
            op = run[0]
            if kind == "gemm" and not (op.consts.get("transpose_b")
                                       and not self.model.tensors[op.inputs[1]].is_const):
                pair = op.inputs[:2]
            elif kind == "residual_add":
                pair = op.inputs[:2]
            else:
                continue
            for me, other in (pair, pair[::-1]):
                if self.root(me) in names and self.root(other) not in names:
                    b = self.bank_of(other)
                    if b is not None:
                        return 1 - b
        return self.RESULT_BANK

    def region(self, k: int, space: str, n: int, names: set, bank: int) -> _Region:
        """Rows for results ``names`` of step ``k``, released after their last use."""
        return _Region(space, self.mem[space].alloc(n, bank, self.for_step(k)), n, names)

    def concat_region(self, name: str, k: int) -> tuple:
        """The rows of concatenation result ``name`` (allocated by its first writer)."""
        if name not in self.loc:
            t = self.tensors[name]
            n = self.chunks(t, "spad")
            reg = self.region(k, "spad", t.rows * n, {name}, self.pick_bank({name}, k))
            self.loc[name] = ("spad", reg.start, n, reg, self.L)
        return self.loc[name]

    def out_place(self, k: int, names: list[str], n: int, chunks: int):
        """``(row, stride, region)`` where step ``k`` writes results ``names``
        (together ``n`` rows of ``chunks`` local rows each): in place in a
        concatenation (no region of their own), or new rows."""
        if len(names) == 1 and names[0] in self.alias:
            self.concat_region(self.alias[names[0]][0], k)
            _, addr, stride, _ = self.local(names[0])
            return addr, stride, None
        reg = self.region(k, "spad", n * chunks, set(names), self.pick_bank(set(names), k))
        return reg.start, chunks, reg

    # Plan ---------------------------------------------------------------------------------

    def plan(self) -> None:
        """Producers, concatenation aliases and last uses of every result."""
        for k, (_, run) in enumerate(self.steps):
            for op in run:
                self.producer[op.output] = k
        for kind, run in self.steps:
            op = run[0]
            if kind != "concat":
                continue
            if self.tensors[op.output].dtype != np.int8:
                raise _NoRoom(f"concatenation {op.output} is not INT8")
            if op.consts["axis"] == 1 and self.memory_concat(op):
                continue
            r0 = c0 = 0
            for name in op.inputs:
                t = self.tensors[name] if name in self.tensors else None
                pk = self.producer.get(name)
                if (t is not None and name not in self.views and name not in self.alias
                        and pk is not None and t.dtype == np.int8
                        and c0 % self.L == 0
                        and (self.steps[pk][0] in _VECTOR
                             or (self.steps[pk][0] == "gemm"
                                 and len(self.steps[pk][1]) == 1
                                 and "multiplier" in self.steps[pk][1][0].consts
                                 and self.fits(t.cols, self.p.C, self.L)))):
                    self.alias[name] = (op.output, r0, c0)
                    if sum(name in o.inputs for o in self.model.ops) == 1:
                        # Read only by the concatenation: its memory is the part of
                        # the concatenation's, stored once with it.
                        out = self.tensors[op.output]
                        self.tensors[name] = Tensor(out.offset + r0 * out.stride
                                                    + c0 * out.dtype.itemsize, t.rows, t.cols,
                                                    t.dtype, stride=out.stride)
                        self.shared.add(name)
                elif c0 % self.L:
                    raise _NoRoom(f"concatenation {op.output}: input {name} at column {c0}")
                if op.consts["axis"] == 0:
                    r0 += self.tensors[name].rows if name in self.tensors else 0
                else:
                    c0 += self.model.tensors[name].shape[1]
        for k, (_, run) in enumerate(self.steps):
            for op in run:
                r = self.root(op.output)
                self.last_use[r] = max(self.last_use.get(r, -1), k)
                for name in op.inputs:
                    if self.is_result(name):
                        r = self.root(name)
                        self.last_use[r] = max(self.last_use.get(r, -1), k)

    def memory_concat(self, op) -> bool:
        """Put column concatenation ``op`` together in memory when an input starts
        inside a local row (heads narrower than a scratchpad row): each input is
        stored into its columns of the concatenation's memory, and the readers load
        the concatenation from there. Whether it does."""
        c0, cuts = 0, False
        for name in op.inputs:
            cuts = cuts or c0 % self.L != 0
            c0 += self.model.tensors[name].shape[1]
        if not cuts:
            return False
        out = self.tensors[op.output]
        c0 = 0
        for name in op.inputs:
            t = self.tensors.get(name)
            pk = self.producer.get(name)
            if (t is None or name in self.views or name in self.alias or pk is None
                    or self.steps[pk][0] == "concat" or t.dtype != np.int8):
                raise _NoRoom(f"concatenation {op.output}: input {name} at column {c0} "
                              f"starts inside a scratchpad row of {self.L} bytes and is "
                              f"not an INT8 result that can be stored into place")
            self.tensors[name] = Tensor(out.offset + c0 * out.dtype.itemsize, t.rows, t.cols,
                                        t.dtype, stride=out.stride)
            c0 += t.cols
        self.in_memory.add(op.output)
        return True

    def retire(self, k: int) -> None:
        """Release the rows whose tensors step ``k`` read for the last time (later
        writers of these rows wait for the readers: the dependencies see to it)."""
        for reg in self.temps.pop(k, []):
            self.mem[reg.space].release(reg.start, reg.rows)
        done = set()
        for space, _, _, reg, _ in list(self.loc.values()):
            if id(reg) in done:
                continue
            if all(self.last_use.get(n, -1) <= k for n in reg.names):
                done.add(id(reg))
                self.mem[space].release(reg.start, reg.rows)
                for n in reg.names:
                    self.loc.pop(n, None)

    # Steps --------------------------------------------------------------------------------

    def is_input(self, name: str) -> bool:
        """An operand with no producer: a constant or the graph input (loaded ahead)."""
        return not self.is_result(name)

    def operand(self, k: int, name: str, t: Tensor, space: str, bank: int,
                width: int | None = None):
        """``(row, stride)`` of operand ``name`` in ``space`` with ``width`` elements
        per local row (default: a whole row): where it stays if it is laid out so,
        else loaded from memory into rows of step ``k``."""
        width = width or self.elems[space]
        here = self.local(name) if self.is_result(name) else None
        if here is not None and here[0] == space and self.fits(t.cols, here[3], width):
            return here[1], here[2]
        n = _ceil_div(t.cols, width)
        loc = self.temp(k, space, t.rows * n, bank)
        self.load(t, space, loc, n, width)
        return loc, n

    def consts(self, k: int) -> dict:
        """Load the operands of step ``k`` that do not depend on results."""
        kind, run = self.steps[k]
        op = run[0]
        got = {}
        if kind == "gemm":
            g = self.gemm_args(run)
            R, C = self.p.R, self.p.C
            K, N = g["a"].cols, sum(o.cols for o in g["outs"])
            KT, NT = _ceil_div(K, R), _ceil_div(N, C)
            if not g["b_transposed"] and self.is_input(op.inputs[1]):
                got["b"] = self.temp(k, "spad", K * NT, self.CONST_BANK)
                self.load(g["b"], "spad", got["b"], NT, C)
            if self.is_input(op.inputs[0]):
                got["a"] = self.temp(k, "spad", g["a"].rows * KT, 1 - self.CONST_BANK)
                self.load(g["a"], "spad", got["a"], KT, R)
            for key in ("bias", "scale"):
                if g[key] is not None:
                    got[key] = self.temp(k, "acc", NT, 1, top=True)
                    self.load(g[key], "acc", got[key], NT)
        elif kind in _VECTOR:
            x = self.tensors[op.inputs[0]]
            if self.is_input(op.inputs[0]):
                sp = "acc" if x.dtype == np.int32 else "spad"
                got["src"] = self.operand(k, op.inputs[0], x, sp, 1 - self.CONST_BANK)
            if kind == "residual_add" and self.is_input(op.inputs[1]):
                got["src2"] = self.operand(k, op.inputs[1], self.tensors[op.inputs[1]],
                                           "spad", self.CONST_BANK)
            if kind == "layernorm":
                p = op.consts["params"]
                gb = self.p.place(np.array([p.gamma_q, p.beta_q], dtype=np.int32))
                n = self.chunks(gb, "acc")
                got["src2"] = (self.temp(k, "acc", 2 * n, 1, top=True), n)
                self.load(gb, "acc", got["src2"][0], n)
        return got

    def emit(self) -> None:
        """The whole stream: per step its result operands (loaded only where they do
        not stay on chip), the constant operands of the step ``LOOKAHEAD`` ahead,
        the computation and the stores of its results."""
        self.plan()
        n = len(self.steps)
        got = {k: self.consts(k) for k in range(min(self.LOOKAHEAD, n))}

        def ahead(k):
            if k + self.LOOKAHEAD < n:
                got[k + self.LOOKAHEAD] = self.consts(k + self.LOOKAHEAD)

        for k, (kind, run) in enumerate(self.steps):
            if kind == "gemm":
                self.gemm(k, run, got.pop(k), lambda k=k: ahead(k))
            elif kind in _VECTOR:
                self.vector(k, run[0], got.pop(k), lambda k=k: ahead(k))
            else:
                got.pop(k)
                ahead(k)
                self.concat(k, run[0])
            self.retire(k)
        for args in self.deferred:
            self.store(*args)
        self._append("end", {}, irq=1)
        self.tokens()

    def gemm(self, k: int, run: list, got: dict, ahead) -> None:
        op = run[0]
        g = self.gemm_args(run)
        a, b = g["a"], g["b"]
        R, C = self.p.R, self.p.C
        M, K, N = a.rows, a.cols, sum(o.cols for o in g["outs"])
        KT, NT = _ceil_div(K, R), _ceil_div(N, C)
        if "a" in got:
            a_loc, a_stride = got["a"], KT
        else:
            bb = self.bank_of(op.inputs[1]) if not g["b_transposed"] else None
            a_loc, a_stride = self.operand(k, op.inputs[0], a, "spad",
                                           0 if bb is None else 1 - bb, R)
        a_bank = self.mem["spad"].bank(a_loc)
        if "b" in got:
            b_loc, b_stride = got["b"], NT
        elif g["b_transposed"]:
            L = self.L
            b_loc, b_stride = self.temp(k, "spad", K * NT, 1 - a_bank), NT
            for nt in range(NT):
                for kb in range(_ceil_div(K, L)):
                    rows, width = min(C, N - nt * C), min(L, K - kb * L)
                    t = Tensor(b.offset + nt * C * b.stride + kb * L, rows, width, b.dtype,
                               stride=b.stride)
                    loc = b_loc + kb * L * NT + nt
                    self.cmd("load", writes=[("spad", self.rows(loc, width, NT, 1))],
                             dram_r=self.extent(t), dram=t.offset, dram_stride=t.stride,
                             row_bytes=width, rows=rows, loc=loc, loc_stride=NT,
                             space=self.cs.spaces["spad"], transpose=1)
        else:
            b_loc, b_stride = self.operand(k, op.inputs[1], b, "spad", 1 - a_bank, C)
        ahead()
        names = [o.output for o in run]
        if g["requant"]:
            c_loc = self.temp(k, "acc", M * NT, 0)
            d_loc, d_stride, reg = self.out_place(k, names, M, NT)
        else:
            reg = self.region(k, "acc", M * NT, set(names), 0)
            c_loc, d_loc, d_stride = reg.start, 0, NT
        reads = [("spad", self.rows(a_loc, M, a_stride, KT)),
                 ("spad", self.rows(b_loc, K, b_stride, NT))]
        for key in ("bias", "scale"):
            if key in got:
                reads.append(("acc", self.rows(got[key], 1, 0, NT)))
        writes = [("acc", self.rows(c_loc, M, NT, NT))]
        if g["requant"]:
            writes.append(("spad", self.rows(d_loc, M, d_stride, NT)))
        self.cmd("gemm", reads=reads, writes=writes, a=a_loc, a_stride=a_stride, b=b_loc,
                 b_stride=b_stride, c=c_loc, c_stride=NT, d=d_loc, d_stride=d_stride,
                 bias=got.get("bias", 0), scale=got.get("scale", 0), m=M, k=K, n=N,
                 accumulate=0, use_bias=int("bias" in got), requant=int(g["requant"]),
                 per_channel=int("scale" in got), mult=g["mult"], shift=g["shift"])
        col = 0
        stores = []
        for o, t in zip(run, g["outs"], strict=True):
            if g["requant"]:
                space, loc, stride = "spad", d_loc + col // C, d_stride
            else:
                space, loc, stride = "acc", c_loc + col // C, NT
            if o.output not in self.alias:
                self.loc[o.output] = (space, loc, stride, reg, C)
            stores.append((not self.read_back(o.output),
                           (o, None if o.output in self.shared else t, space, loc, stride)))
            col += t.cols
        # Results read back from memory (K for its transposing load) first.
        self.finish(k, [(o.output, t, space, loc, stride, C)
                        for _, (o, t, space, loc, stride)
                        in sorted(stores, key=lambda s: s[0]) if t is not None])

    def finish(self, k: int, stores: list) -> None:
        """Emit the stores of step ``k``'s results, then those step ``k - 1`` put off.
        A result that step ``k + 1`` streams through its first operand (GEMM A, vector
        source) is put off until after that step's stores: while a unit reads a bank
        every cycle, the store executor (the lowest-priority reader) gets no turn
        there, and a store waiting for its turn would hold up the store queue."""
        later = []
        nxt = self.steps[k + 1] if k + 1 < len(self.steps) else None
        for name, t, space, loc, stride, width in stores:
            if (nxt is not None and nxt[0] != "concat"
                    and self.root(nxt[1][0].inputs[0]) == name and not self.read_back(name)):
                later.append((t, space, loc, stride, width))
            else:
                self.store(t, space, loc, stride, width)
        for args in self.deferred:
            self.store(*args)
        self.deferred = later

    def read_back(self, name: str) -> bool:
        """Whether a later step loads result ``name`` (or a view of it) from memory:
        as a transposed GEMM operand (the others stay on chip)."""
        for _, run in self.steps:
            op = run[0]
            if op.kind == "gemm" and op.consts.get("transpose_b") \
                    and self.is_result(op.inputs[1]) and self.root(op.inputs[1]) == name:
                return True
        return False

    def vector(self, k: int, op, got: dict, ahead) -> None:
        name = _VECTOR[op.kind]
        spaces = self.cs.spaces
        x = self.tensors[op.inputs[0]]
        sp = "acc" if x.dtype == np.int32 else "spad"
        rows, length = x.rows, x.cols
        src, src_stride = got["src"] if "src" in got else \
            self.operand(k, op.inputs[0], x, sp, 0)
        reads = [(sp, self.rows(src, rows, src_stride, _ceil_div(length, self.elems[sp])))]
        src2, src2_stride, src2_space = 0, 0, "spad"
        out_chunks = _ceil_div(length, self.L)
        if op.kind == "layernorm":
            src2, n = got["src2"]
            src2_space = "acc"
            reads.append(("acc", self.rows(src2, 1, 0, 2 * n)))
        elif op.kind == "residual_add":
            bank = 1 - self.mem[sp].bank(src) if sp == "spad" else 1
            src2, src2_stride = got["src2"] if "src2" in got else \
                self.operand(k, op.inputs[1], self.tensors[op.inputs[1]], "spad", bank)
            reads.append(("spad", self.rows(src2, rows, src2_stride, out_chunks)))
        ahead()
        for cname, index in self.cs.constants.items():
            prefix, _, field = cname.partition(".")
            value = int(getattr(op.consts["params"], field)) if prefix == name else None
            if value is not None and self.const_values.get(index) != value:
                # The constants keep their values: set only those that change.
                self._append("set_const", {}, index=index, value=value)
                self.const_values[index] = value
        dst, dst_stride, reg = self.out_place(k, [op.output], rows, out_chunks)
        self.cmd(name, reads=reads,
                 writes=[("spad", self.rows(dst, rows, dst_stride, out_chunks))],
                 src=src, src_stride=src_stride, src_space=spaces[sp], src2=src2,
                 src2_stride=src2_stride, src2_space=spaces[src2_space], dst=dst,
                 dst_stride=dst_stride, dst_space=spaces["spad"], rows=rows, length=length)
        if op.output not in self.alias:
            self.loc[op.output] = ("spad", dst, dst_stride, reg, self.L)
        if op.output not in self.shared:
            self.finish(k, [(op.output, self.tensors[op.output], "spad", dst, dst_stride,
                             self.L)])
        else:
            self.finish(k, [])

    def concat(self, k: int, op) -> None:
        """Inputs that are not written in place are loaded into place; the whole
        result is stored."""
        if op.output in self.in_memory:
            self.finish(k, [])
            return
        _, base, stride, _, _ = self.concat_region(op.output, k)
        r0 = c0 = 0
        for name in op.inputs:
            t = self.tensors[name]
            if name not in self.alias:
                self.load(t, "spad", base + r0 * stride + c0 // self.L, stride)
            if op.consts["axis"] == 0:
                r0 += t.rows
            else:
                c0 += t.cols
        self.finish(k, [(op.output, self.tensors[op.output], "spad", base, stride, self.L)])


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


def compile_model(manifest: dict, model, x, *,
                  schedule: str = "auto") -> tuple[Program, dict[str, Tensor]]:
    """A program that runs the integer model ``model`` (:class:`intformer.sw.model.
    IntegerModel`) on one INT8 input ``x`` (``model.tensors[model.input].shape``).

    Every tensor lives in the memory image (constants with their data, activations
    reserved), and every op's result is stored there, so each can be read back and
    compared. Slices are views (an offset and a row stride). Consecutive GEMMs with
    the same A and constant weights (Q, K and V) run as one GEMM command with the
    weights side by side. Operands are placed bank-aware: the two operands a unit
    reads in the same cycle (GEMM A and B, bias/scale and partial sums, the two
    sources of a residual add) lie in different banks.

    Two schedules:

    ``"dataflow"``
        Results stay on chip: an op's output remains in the scratchpad (INT8) or
        accumulator (INT32) in the layout its consumers read, until its last use
        (allocation by liveness, next-fit per bank, so freed rows are not reused at
        once). Only operands that need another layout go through memory: transposed
        ones (K^T, the DMA's transposing load), the graph input and constants. A
        concatenation is free when its inputs are results: their producers write
        them into place, and an input read by nothing else is a view of the
        concatenation's memory (stored once with it). The constant operands of the
        op two steps ahead (weights, bias, scale, LayerNorm gamma/beta) are loaded
        while the current op computes (double buffering, :attr:`_Dataflow.LOOKAHEAD`);
        vector constants are set only when they change. Every result is stored, off
        the critical path: a result read back from memory (K) first, and a result
        the next op streams through its first operand after that op's stores (the
        store executor gets no read turn in a bank a unit reads every cycle). Each
        command carries the tokens of exactly the dependencies it has on earlier
        commands (a load into rows a compute still reads, a compute overwriting
        rows a store still reads, a load of memory a store writes through a
        ``set_const`` relay on the compute queue), so the queues run ahead of each
        other as far as the data allow and the stream cannot deadlock. Each
        resident result remembers its layout (elements per local row: ``array_cols``
        for a GEMM result, ``spad_row_bytes`` for a vector result); a consumer that
        reads another layout (GEMM A takes ``array_rows`` per row, B ``array_cols``,
        a vector unit ``spad_row_bytes``; they differ on non-square arrays) loads the
        stored result from memory, one load per column tile. A column concatenation
        whose inputs start inside a scratchpad row (heads narrower than the row) is
        put together in memory by its inputs' stores and loaded by its readers.
    ``"serial"``
        Ops run one after the other, each loading its operands, computing and
        storing its result; a :meth:`Program.sync` between ops orders the stores
        before the next loads; a concatenation copies its inputs through the
        scratchpad.

    ``"auto"`` (default) is ``"dataflow"`` where the live tensors fit the local
    memories, else ``"serial"``.

    Returns the program (its ``schedule`` attribute names the schedule used) and the
    tensor of every name.

    Raises
    ------
    ValueError
        If ``schedule`` is unknown, if ``"dataflow"`` does not apply (the error names
        the local memory, the rows asked for and the shortfall), or if an op does
        not fit the hardware (for example a dimension past a field's width or an
        operand larger than the scratchpad).
    """
    if schedule not in ("auto", "dataflow", "serial"):
        raise ValueError(f"Schedule must be 'auto', 'dataflow' or 'serial', not {schedule!r}")
    if schedule != "serial":
        try:
            return _compile(manifest, model, x, dataflow=True)
        except _NoRoom:
            if schedule == "dataflow":
                raise
    return _compile(manifest, model, x, dataflow=False)


def _compile(manifest: dict, model, x, *, dataflow: bool) -> tuple[Program, dict[str, Tensor]]:
    """:func:`compile_model` with one schedule."""
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

    def gemm_args(run) -> dict:
        """The operands and constants of the GEMM command of a run of ops."""
        op, c = run[0], run[0].consts
        b = joint(run, 1) if len(run) > 1 else view(op.inputs[1])
        bias = None
        if len(op.inputs) > 2:
            bias = joint(run, 2) if len(run) > 1 else view(op.inputs[2])
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
        const_b = model.tensors[op.inputs[1]].is_const
        return dict(a=view(op.inputs[0]), b=b, outs=[view(o.output) for o in run], bias=bias,
                    scale=scale, mult=mult, shift=shift, requant=requant,
                    b_transposed=bool(c.get("transpose_b")) and not const_b)

    steps = []   # (kind, ops): a run of GEMMs, or one other op; slices are views
    skip = set()
    for i, op in enumerate(model.ops):
        if op.kind == "slice":
            view(op.output)
        elif i not in skip:
            run = groups.get(i, [op]) if op.kind == "gemm" else [op]
            skip.update(range(i, i + len(run)))
            if op.kind not in ("gemm", "softmax", "gelu", "layernorm", "residual_add",
                               "concat"):
                raise ValueError(f"Cannot compile op kind {op.kind!r}")
            steps.append((op.kind, run))
    if dataflow:
        _Dataflow(prog, model, tensors, views, steps, gemm_args).emit()
        prog.schedule = "dataflow"
        return prog, tensors

    for k, (kind, run) in enumerate(steps):
        if k:
            prog.sync()
        prog.free_all()
        op = run[0]
        c = op.consts
        out = view(op.output)
        if kind == "gemm":
            g = gemm_args(run)
            prog.matmul(g["a"], g["b"], g["outs"] if len(run) > 1 else out, bias=g["bias"],
                        scale=g["scale"], mult=g["mult"], shift=g["shift"],
                        requant=g["requant"], b_transposed=g["b_transposed"])
        elif kind in ("softmax", "gelu", "layernorm"):
            x_t = view(op.inputs[0])
            prog.vector(kind, x_t, out, c["params"],
                        src_space="acc" if x_t.dtype == np.int32 else "spad")
        elif kind == "residual_add":
            prog.vector("residual", view(op.inputs[0]), out, c["params"],
                        x2=view(op.inputs[1]))
        else:  # concat
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
    prog.end()
    return prog, tensors
