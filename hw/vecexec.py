"""Vector executor: runs ``gelu``, ``softmax``, ``residual`` and ``layernorm`` commands
on the vector units, reading rows from and writing rows to the scratchpad or
accumulator.

A command processes ``rows`` rows of ``length`` elements; row ``r`` of an operand
occupies the ``ceil(length / lanes)`` local rows from ``addr + r * stride``. One local
row is one vector beat, so this executor needs ``vector_lanes`` to equal both the
scratchpad row (``spad_row_bytes``) and the accumulator row (``array_cols``);
:func:`supported` says whether a configuration qualifies (others leave the vector
commands out, and they end a stream with ``unit_absent``). Scratchpad elements are
INT8, accumulator elements INT32 (outputs are sign-extended there). LayerNorm reads
INT8 inputs (low 8 bits of accumulator lanes) and its gamma and beta from ``src2``:
``chunks`` accumulator rows of ``gamma_q`` (low 16 bits of each lane) followed by
``chunks`` rows of ``beta_q``, shared by every row.

Timing: one beat per cycle in steady state: reads are issued while the input
buffers have room, the units take one beat per cycle, and each output beat is
written as it leaves. ``done`` pulses once the last output row is written.

Constants come from the ``set_const`` register file: :data:`CONSTANTS` names the
index of every field of the units' constant structures.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import Config
from .gelu import Gelu, GeluConsts
from .layernorm import LayerNorm, LayerNormConsts
from .memories import ReadPortSignature, WritePortSignature
from .residual import ResidualAdd, ResidualConsts
from .softmax import Softmax, SoftmaxConsts

__all__ = ["VectorExecutor", "supported", "CONSTANTS", "OPS"]

#: Commands this executor carries out, with their unit's constants layout.
OPS = {"gelu": GeluConsts, "softmax": SoftmaxConsts, "residual": ResidualConsts,
       "layernorm": LayerNormConsts}


def _constant_names() -> dict[str, int]:
    names = {}
    for op, layout in OPS.items():
        for field, _ in layout():
            names[f"{op}.{field}"] = len(names)
    return names


#: ``set_const`` index of each unit constant, ``"<command>.<field>"``.
CONSTANTS = _constant_names()


def supported(config: Config) -> bool:
    """Whether this executor can run on ``config`` (one local row is one beat)."""
    return config.vector_lanes == config.spad_row_bytes == config.array_cols



class _RowReader:
    """Reads the local rows of one operand in beat order into a FIFO."""

    def __init__(self, m, name, *, spad_port, acc_port, lanes, depth=4):
        self.m = m
        self.name = name
        self.spad, self.acc = spad_port, acc_port
        self.lanes = lanes
        self.fifo = fifo.SyncFIFOBuffered(width=lanes * 32, depth=depth)
        m.submodules[f"{name}_fifo"] = self.fifo
        self.depth = depth

    def elaborate(self, *, start, base, stride, space, rows, chunks):
        m, lanes = self.m, self.lanes
        row_addr = Signal(17, name=f"{self.name}_row_addr")
        chunk = Signal(12, name=f"{self.name}_chunk")
        rows_left = Signal(12, name=f"{self.name}_rows_left")
        in_flight = Signal(name=f"{self.name}_in_flight")   # granted last cycle
        in_flight_space = Signal(name=f"{self.name}_in_flight_space")
        with m.If(start):
            m.d.sync += [row_addr.eq(base), chunk.eq(0), rows_left.eq(rows)]
        room = self.fifo.level + in_flight < self.depth - 1
        want = (rows_left != 0) & room & ~start
        is_acc = space == isa.SPACES["acc"]
        addr = row_addr + chunk
        m.d.comb += [
            self.spad.addr.eq(addr), self.acc.addr.eq(addr),
            self.spad.en.eq(want & ~is_acc), self.acc.en.eq(want & is_acc),
        ]
        granted = Signal(name=f"{self.name}_granted")
        m.d.comb += granted.eq(Mux_(is_acc, self.acc.grant, self.spad.grant) & want)
        m.d.sync += [in_flight.eq(granted), in_flight_space.eq(is_acc)]
        with m.If(granted):
            with m.If(chunk == chunks - 1):
                m.d.sync += [chunk.eq(0), row_addr.eq(row_addr + stride),
                             rows_left.eq(rows_left - 1)]
            with m.Else():
                m.d.sync += chunk.eq(chunk + 1)
        # Data arrive the cycle after the grant; widen INT8 lanes to INT32.
        spad_lanes = data.View(data.ArrayLayout(8, lanes), self.spad.data)
        wide = Signal(lanes * 32, name=f"{self.name}_wide")
        for i in range(lanes):
            m.d.comb += wide.word_select(i, 32).eq(
                Mux_(in_flight_space, self.acc.data.word_select(i, 32),
                     spad_lanes[i].as_signed()))
        m.d.comb += [self.fifo.w_data.eq(wide), self.fifo.w_en.eq(in_flight)]
        return rows_left


def Mux_(sel, a, b):
    from amaranth.hdl import Mux
    return Mux(sel, a, b)


class VectorExecutor(wiring.Component):
    """Carries out ``gelu``, ``softmax`` and ``residual`` commands.

    Parameters
    ----------
    config : Config

    Members
    -------
    cmd : In(stream.Signature(command_layout))
        Vector commands; ready while idle.
    spad_rd_a, spad_rd_b : Out(ReadPortSignature)
    acc_rd_a, acc_rd_b, acc_rd_c : Out(ReadPortSignature)
        Input (``a``), second operand or gamma (``b``) and beta (``c``) reads.
    spad_wr, acc_wr : Out(WritePortSignature)
    constants : In(32).array(N_CONSTANTS)
        The ``set_const`` register file.
    busy, done : Out(1)

    Raises
    ------
    TypeError
        If ``config`` is not a Config.
    ValueError
        If the configuration is not :func:`supported`.
    """

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"Vector executor config must be a Config, not {config!r}")
        if not supported(config):
            raise ValueError(f"Vector executor needs vector_lanes ({config.vector_lanes}) "
                             f"equal to spad_row_bytes ({config.spad_row_bytes}) and "
                             f"array_cols ({config.array_cols})")
        self._config = c = config
        spad = dict(addr_width=c.spad_addr_width, width=c.spad_row_bytes * 8)
        acc = dict(addr_width=c.acc_addr_width, width=c.acc_row_bytes * 8)
        super().__init__({
            "cmd": In(stream.Signature(isa.command_layout())),
            "spad_rd_a": Out(ReadPortSignature(**spad)),
            "spad_rd_b": Out(ReadPortSignature(**spad)),
            "acc_rd_a": Out(ReadPortSignature(**acc)),
            "acc_rd_b": Out(ReadPortSignature(**acc)),
            "acc_rd_c": Out(ReadPortSignature(**acc)),
            "spad_wr": Out(WritePortSignature(**spad)),
            "acc_wr": Out(WritePortSignature(**acc)),
            "constants": In(32).array(isa.N_CONSTANTS),
            "busy": Out(1), "done": Out(1),
        })

    @property
    def ops(self) -> tuple[str, ...]:
        """Commands carried out on this configuration (units it includes)."""
        return tuple(op for op in OPS if getattr(self._config, f"has_{op}"))

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        lanes = c.vector_lanes

        units = {}
        if c.has_gelu:
            units["gelu"] = m.submodules.gelu = Gelu(lanes, in_width=32)
        if c.has_softmax:
            units["softmax"] = m.submodules.softmax = Softmax(
                lanes, max_row=c.vector_max_row, in_width=32)
        if c.has_residual:
            units["residual"] = m.submodules.residual = ResidualAdd(lanes)
        if c.has_layernorm:
            units["layernorm"] = m.submodules.layernorm = LayerNorm(
                lanes, max_row=c.vector_max_row, in_width=8)
        for op, unit in units.items():
            consts = unit.consts
            for field, _ in OPS[op]():
                value = self.constants[CONSTANTS[f"{op}.{field}"]]
                m.d.comb += getattr(consts, field).eq(value)
        for name in ("softmax", "layernorm"):
            if name in units:
                m.d.comb += units[name].clear.eq(self.cmd.valid & self.cmd.ready)

        v = self.cmd.payload.gelu   # every vector command has the same fields
        op = Signal(5)
        f = {name: Signal(width, name=f"cmd_{name}") for name, width in (
            ("src", 16), ("src_stride", 12), ("src_space", 1), ("src2", 16),
            ("src2_stride", 12), ("src2_space", 1), ("dst", 16), ("dst_stride", 12),
            ("dst_space", 1), ("rows", 12), ("length", 12))}
        chunks = Signal(12)
        tail = Signal(range(lanes + 1))   # elements in a row's last beat
        start = Signal()
        busy = Signal()
        m.d.comb += [self.cmd.ready.eq(~busy), self.busy.eq(busy)]
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += [op.eq(self.cmd.payload.header.opcode), busy.eq(1), start.eq(1),
                         chunks.eq((v.length + lanes - 1) // lanes),
                         tail.eq(v.length - ((v.length - 1) // lanes) * lanes)]
            for name, sig in f.items():
                m.d.sync += sig.eq(getattr(v, name))
        with m.Else():
            m.d.sync += start.eq(0)

        is_res = op == isa.OPCODES["residual"].code
        is_ln = op == isa.OPCODES["layernorm"].code
        # The c reader has no scratchpad port: beta always comes from the accumulator.
        dummy = ReadPortSignature(addr_width=c.spad_addr_width,
                                  width=c.spad_row_bytes * 8).flip().create()
        rd_c = _RowReader(m, "c", spad_port=dummy, acc_port=self.acc_rd_c, lanes=lanes)
        rd_c.elaborate(start=start, base=f["src2"] + chunks, stride=0,
                       space=isa.SPACES["acc"], rows=Mux_(is_ln, f["rows"], 0),
                       chunks=chunks)
        rd_a = _RowReader(m, "a", spad_port=self.spad_rd_a, acc_port=self.acc_rd_a,
                          lanes=lanes)
        rd_b = _RowReader(m, "b", spad_port=self.spad_rd_b, acc_port=self.acc_rd_b,
                          lanes=lanes)
        rd_a.elaborate(start=start, base=f["src"], stride=f["src_stride"],
                       space=f["src_space"], rows=f["rows"], chunks=chunks)
        rd_b.elaborate(start=start, base=f["src2"], stride=Mux_(is_ln, 0, f["src2_stride"]),
                       space=f["src2_space"], rows=Mux_(is_res | is_ln, f["rows"], 0),
                       chunks=chunks)
        if "layernorm" in units:
            ln = units["layernorm"]
            for i in range(lanes):
                m.d.comb += [ln.gb.payload.gamma[i].eq(rd_b.fifo.r_data.word_select(i, 32)),
                             ln.gb.payload.beta[i].eq(rd_c.fifo.r_data.word_select(i, 32))]
            m.d.comb += ln.gb.valid.eq(is_ln & rd_b.fifo.r_rdy & rd_c.fifo.r_rdy)
            gb_take = ln.gb.valid & ln.gb.ready
        else:
            gb_take = 0

        # Beat markers, in input order.
        in_chunk = Signal(12)
        in_valid = rd_a.fifo.r_rdy & (rd_b.fifo.r_rdy | ~is_res)
        last = in_chunk == chunks - 1
        count = Mux_(last, tail, lanes)
        in_ready = Signal()
        for name, unit in units.items():
            sel = op == isa.OPCODES[name].code
            with m.If(sel):
                m.d.comb += [unit.i.valid.eq(in_valid), in_ready.eq(unit.i.ready)]
            m.d.comb += [unit.i.payload.count.eq(count), unit.i.payload.last.eq(last)]
            for i in range(lanes):
                m.d.comb += unit.i.payload.data[i].eq(rd_a.fifo.r_data.word_select(i, 32))
                if name == "residual":
                    m.d.comb += unit.i.payload.b[i].eq(rd_b.fifo.r_data.word_select(i, 32))
        take = in_valid & in_ready
        m.d.comb += [rd_a.fifo.r_en.eq(take),
                     rd_b.fifo.r_en.eq((take & is_res) | gb_take), rd_c.fifo.r_en.eq(gb_take)]
        with m.If(start):
            m.d.sync += in_chunk.eq(0)
        with m.Elif(take):
            m.d.sync += in_chunk.eq(Mux_(last, 0, in_chunk + 1))

        # Outputs: one local row per beat.
        out = Signal(data.ArrayLayout(8, lanes))
        out_valid = Signal()
        for name, unit in units.items():
            with m.If(op == isa.OPCODES[name].code):
                m.d.comb += [out.eq(unit.o.payload.data), out_valid.eq(unit.o.valid)]
        out_row = Signal(17)
        out_chunk = Signal(12)
        out_rows = Signal(12)
        with m.If(start):
            m.d.sync += [out_row.eq(f["dst"]), out_chunk.eq(0), out_rows.eq(f["rows"])]
        is_acc = f["dst_space"] == isa.SPACES["acc"]
        wide = Signal(lanes * 32)
        for i in range(lanes):
            m.d.comb += wide.word_select(i, 32).eq(out[i].as_signed())
        addr = out_row + out_chunk
        m.d.comb += [
            self.spad_wr.addr.eq(addr), self.acc_wr.addr.eq(addr),
            self.spad_wr.data.eq(Cat(*(out[i] for i in range(lanes)))),
            self.acc_wr.data.eq(wide),
            self.spad_wr.en.eq(out_valid & busy & ~is_acc),
            self.acc_wr.en.eq(out_valid & busy & is_acc),
        ]
        written = Signal()
        m.d.comb += written.eq(out_valid & busy & Mux_(is_acc, self.acc_wr.grant,
                                                         self.spad_wr.grant))
        for name, unit in units.items():
            with m.If(op == isa.OPCODES[name].code):
                m.d.comb += unit.o.ready.eq(written)
        with m.If(written):
            with m.If(out_chunk == chunks - 1):
                m.d.sync += [out_chunk.eq(0), out_row.eq(out_row + f["dst_stride"]),
                             out_rows.eq(out_rows - 1)]
                with m.If(out_rows == 1):
                    m.d.sync += busy.eq(0)
                    m.d.comb += self.done.eq(1)
            with m.Else():
                m.d.sync += out_chunk.eq(out_chunk + 1)
        return m
