"""Vector executor: runs ``gelu``, ``softmax``, ``residual`` and ``layernorm`` commands
on the vector units, reading rows from and writing rows to the scratchpad or
accumulator.

A command processes ``rows`` rows of ``length`` elements; row ``r`` of an operand
occupies the ``ceil(length / W)`` local rows from ``addr + r * stride``, where ``W``
is the row width of the operand's memory: ``spad_row_bytes`` INT8 elements in the
scratchpad, ``array_cols`` INT32 elements in the accumulator. The units take
``vector_lanes`` elements per beat, a power of 2 that divides both row widths
(:func:`supported`; :class:`~intformer.hw.config.Config` checks it): one local row
read feeds ``W / vector_lanes`` beats, and output beats are assembled into a whole
local row before it is written (the memories have no per-lane write enables).
Scratchpad elements are INT8, accumulator elements INT32 (outputs are sign-extended
there). LayerNorm reads INT8 inputs (low 8 bits of accumulator lanes) and its gamma
and beta from ``src2``: ``chunks`` accumulator rows of ``gamma_q`` (low 16 bits of
each lane) followed by ``chunks`` rows of ``beta_q``, shared by every row.

Timing: one beat per cycle in steady state: reads are issued while the input
buffers have room, the units take one beat per cycle, and each output row is
written as its last beat leaves (beats before it are held, ``ready`` at once).
``done`` pulses once the last output row is written.

The units share their per-lane multipliers (:mod:`intformer.hw.vecmul`): a command
runs alone and its unit's pipelines drain before ``done``, so product slot ``k`` of
every lane is one multiplier, as wide as the widest unit's product ``k``, whose
operands the running command's unit drives.

Constants come from the ``set_const`` register file: :data:`CONSTANTS` names the
index of every field of the units' constant structures.
"""

from __future__ import annotations

from amaranth.hdl import C, Module, Mux, Signal, signed
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
    """Whether this executor can run on ``config``: ``vector_lanes`` is a power of 2
    that divides the accumulator row (``array_cols`` elements) and the scratchpad row
    (``spad_row_bytes``), the rule :class:`~intformer.hw.config.Config` checks when a
    vector unit is included."""
    return config.vector_lanes_fit


class _RowReader:
    """Reads the local rows of one operand into a FIFO and hands them out as beats of
    ``lanes`` elements, widened to INT32: ``W / lanes`` beats per local row of ``W``
    elements, fewer in a row's last local row."""

    def __init__(self, m, name, *, spad_port, acc_port, config, depth=4):
        c = config
        self.m = m
        self.name = name
        self.spad, self.acc = spad_port, acc_port
        self.lanes = c.vector_lanes
        self.elems = {"spad": c.spad_row_bytes, "acc": c.array_cols}
        raw = max(c.array_cols * 32, c.spad_row_bytes * 8 if spad_port is not None else 0)
        self.fifo = fifo.SyncFIFOBuffered(width=raw, depth=depth)
        m.submodules[f"{name}_fifo"] = self.fifo
        self.depth = depth
        self.data = Signal(self.lanes * 32, name=f"{name}_beat")

    def elaborate(self, *, start, base, stride, space, rows, chunks, beats, take):
        """``chunks``: local rows per row in this operand's space; ``beats``: beats per
        row; ``take``: the beat at the head (``fifo.r_rdy``) is consumed this cycle."""
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
        granted = Signal(name=f"{self.name}_granted")
        m.d.comb += [self.acc.addr.eq(addr), self.acc.en.eq(want & is_acc)]
        if self.spad is None:
            m.d.comb += granted.eq(self.acc.grant & want & is_acc)
        else:
            m.d.comb += [self.spad.addr.eq(addr), self.spad.en.eq(want & ~is_acc),
                         granted.eq(Mux(is_acc, self.acc.grant, self.spad.grant) & want)]
        m.d.sync += [in_flight.eq(granted), in_flight_space.eq(is_acc)]
        with m.If(granted):
            with m.If(chunk == chunks - 1):
                m.d.sync += [chunk.eq(0), row_addr.eq(row_addr + stride),
                             rows_left.eq(rows_left - 1)]
            with m.Else():
                m.d.sync += chunk.eq(chunk + 1)
        # Data arrive the cycle after the grant, and are kept as read.
        raw = self.acc.data if self.spad is None else \
            Mux(in_flight_space, self.acc.data, self.spad.data)
        m.d.comb += [self.fifo.w_data.eq(raw), self.fifo.w_en.eq(in_flight)]

        # The beat at the head: lane group `sub` of the head row, widened to INT32.
        groups = {s: self.elems[s] // lanes for s in self.elems
                  if s == "acc" or self.spad is not None}
        head = self.fifo.r_data
        acc_groups = data.View(data.ArrayLayout(lanes * 32, groups["acc"]),
                               head[:self.elems["acc"] * 32])
        if max(groups.values()) == 1:
            sub, row_end = 0, 1
            acc_beat = acc_groups[0]
        else:
            sub = Signal(range(max(groups.values())), name=f"{self.name}_sub")
            beat = Signal(12, name=f"{self.name}_beat_index")
            row_end = Signal(name=f"{self.name}_row_end")
            group_end = Mux(is_acc, sub == groups["acc"] - 1,
                            sub == groups.get("spad", 1) - 1)
            m.d.comb += row_end.eq((beat == beats - 1) | group_end)
            with m.If(start):
                m.d.sync += [sub.eq(0), beat.eq(0)]
            with m.Elif(take):
                m.d.sync += [sub.eq(Mux(row_end, 0, sub + 1)),
                             beat.eq(Mux(beat == beats - 1, 0, beat + 1))]
            acc_beat = acc_groups[sub]
        m.d.comb += self.fifo.r_en.eq(take & row_end)
        if self.spad is None:
            m.d.comb += self.data.eq(acc_beat)
            return
        spad_groups = data.View(
            data.ArrayLayout(data.ArrayLayout(signed(8), lanes), groups["spad"]),
            head[:self.elems["spad"] * 8])
        spad_beat = spad_groups[sub]
        for i in range(lanes):
            m.d.comb += self.data.word_select(i, 32).eq(
                Mux(is_acc, acc_beat.word_select(i, 32), spad_beat[i]))


class _RowWriter:
    """Assembles output beats of ``lanes`` INT8 elements into local rows and writes
    each row as its last beat arrives (sign-extended to INT32 in the accumulator)."""

    def __init__(self, m, *, spad_port, acc_port, config):
        c = config
        self.m = m
        self.spad, self.acc = spad_port, acc_port
        self.lanes = c.vector_lanes
        self.elems = {"spad": c.spad_row_bytes, "acc": c.array_cols}

    def elaborate(self, *, start, base, stride, space, rows, chunks, beats, out, valid):
        """Returns ``(ready, last_row_written)``: ``ready``, the beat ``out`` is taken
        this cycle; ``last_row_written``, the command's last row was written."""
        m, lanes = self.m, self.lanes
        groups = {s: w // lanes for s, w in self.elems.items()}
        width = max(self.elems.values())
        out_row = Signal(17)
        out_chunk = Signal(12)
        out_rows = Signal(12)
        with m.If(start):
            m.d.sync += [out_row.eq(base), out_chunk.eq(0), out_rows.eq(rows)]
        is_acc = space == isa.SPACES["acc"]
        row = Signal(data.ArrayLayout(8, width))   # the local row to write
        row_end = Signal()   # this beat ends a local row
        if max(groups.values()) == 1:
            m.d.comb += [row.eq(out), row_end.eq(1)]
        else:
            held = Signal(data.ArrayLayout(8, width))
            sub = Signal(range(max(groups.values())))
            beat = Signal(12)
            m.d.comb += row_end.eq((beat == beats - 1) | Mux(is_acc, sub == groups["acc"] - 1,
                                                            sub == groups["spad"] - 1))
            for g in range(width // lanes):
                # No group follows the last one (and Verilator flags `sub > max` as constant).
                later = sub > g if g < width // lanes - 1 else C(0)
                for i in range(lanes):
                    e = g * lanes + i
                    m.d.comb += row[e].eq(Mux(sub == g, out[i], Mux(later, held[e], 0)))
                    with m.If(valid & (sub == g)):
                        m.d.sync += held[e].eq(out[i])
        wide = Signal(self.elems["acc"] * 32)
        for i in range(self.elems["acc"]):
            m.d.comb += wide.word_select(i, 32).eq(row[i].as_signed())
        addr = out_row + out_chunk
        m.d.comb += [
            self.spad.addr.eq(addr), self.acc.addr.eq(addr),
            self.spad.data.eq(row.as_value()[:self.elems["spad"] * 8]),
            self.acc.data.eq(wide),
            self.spad.en.eq(valid & row_end & ~is_acc),
            self.acc.en.eq(valid & row_end & is_acc),
        ]
        written = Signal()
        ready = Signal()
        m.d.comb += [
            written.eq(valid & row_end & Mux(is_acc, self.acc.grant, self.spad.grant)),
            ready.eq(written | (valid & ~row_end)),
        ]
        if max(groups.values()) > 1:
            with m.If(start):
                m.d.sync += [sub.eq(0), beat.eq(0)]
            with m.Elif(ready):
                m.d.sync += [sub.eq(Mux(row_end, 0, sub + 1)),
                             beat.eq(Mux(beat == beats - 1, 0, beat + 1))]
        last_row = Signal()
        with m.If(written):
            with m.If(out_chunk == chunks - 1):
                m.d.sync += [out_chunk.eq(0), out_row.eq(out_row + stride),
                             out_rows.eq(out_rows - 1)]
                m.d.comb += last_row.eq(out_rows == 1)
            with m.Else():
                m.d.sync += out_chunk.eq(out_chunk + 1)
        return ready, last_row


class VectorExecutor(wiring.Component):
    """Carries out ``gelu``, ``softmax``, ``residual`` and ``layernorm`` commands.

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
                             f"to be a power of 2 dividing array_cols ({config.array_cols}) "
                             f"and spad_row_bytes ({config.spad_row_bytes})")
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
            units["gelu"] = m.submodules.gelu = Gelu(lanes, in_width=32, shared_mul=True)
        if c.has_softmax:
            units["softmax"] = m.submodules.softmax = Softmax(
                lanes, max_row=c.vector_max_row, in_width=32, shared_mul=True)
        if c.has_residual:
            units["residual"] = m.submodules.residual = ResidualAdd(lanes, shared_mul=True)
        if c.has_layernorm:
            units["layernorm"] = m.submodules.layernorm = LayerNorm(
                lanes, max_row=c.vector_max_row, in_width=8, shared_mul=True)
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
        self._share_multipliers(m, units, op, lanes)
        f = {name: Signal(width, name=f"cmd_{name}") for name, width in (
            ("src", 16), ("src_stride", 12), ("src_space", 1), ("src2", 16),
            ("src2_stride", 12), ("src2_space", 1), ("dst", 16), ("dst_stride", 12),
            ("dst_space", 1), ("rows", 12), ("length", 12))}
        # Local rows per row in each memory, and beats per row.
        widths = {"spad": c.spad_row_bytes, "acc": c.array_cols}
        chunks = {"spad": Signal(12, name="chunks_spad")}
        chunks["acc"] = chunks["spad"] if widths["acc"] == widths["spad"] else \
            Signal(12, name="chunks_acc")
        beats = Signal(12)
        tail = Signal(range(lanes + 1))   # elements in a row's last beat
        start = Signal()
        busy = Signal()
        m.d.comb += [self.cmd.ready.eq(~busy), self.busy.eq(busy)]
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += [op.eq(self.cmd.payload.header.opcode), busy.eq(1), start.eq(1),
                         beats.eq((v.length + lanes - 1) // lanes),
                         tail.eq(v.length - ((v.length - 1) // lanes) * lanes)]
            for s, w in widths.items():
                m.d.sync += chunks[s].eq((v.length + w - 1) // w)
            for name, sig in f.items():
                m.d.sync += sig.eq(getattr(v, name))
        with m.Else():
            m.d.sync += start.eq(0)

        def chunks_in(space):
            return Mux(space == isa.SPACES["acc"], chunks["acc"], chunks["spad"])

        is_res = op == isa.OPCODES["residual"].code
        is_ln = op == isa.OPCODES["layernorm"].code
        # Beat markers, in input order.
        in_chunk = Signal(12)
        last = in_chunk == beats - 1
        count = Mux(last, tail, lanes)
        in_ready = Signal()
        take = Signal()
        gb_take = Signal()
        # The c reader has no scratchpad port: beta always comes from the accumulator.
        rd_c = _RowReader(m, "c", spad_port=None, acc_port=self.acc_rd_c, config=c)
        rd_c.elaborate(start=start, base=f["src2"] + chunks["acc"], stride=0,
                       space=isa.SPACES["acc"], rows=Mux(is_ln, f["rows"], 0),
                       chunks=chunks["acc"], beats=beats, take=gb_take)
        rd_a = _RowReader(m, "a", spad_port=self.spad_rd_a, acc_port=self.acc_rd_a, config=c)
        rd_b = _RowReader(m, "b", spad_port=self.spad_rd_b, acc_port=self.acc_rd_b, config=c)
        rd_a.elaborate(start=start, base=f["src"], stride=f["src_stride"],
                       space=f["src_space"], rows=f["rows"], chunks=chunks_in(f["src_space"]),
                       beats=beats, take=take)
        rd_b.elaborate(start=start, base=f["src2"], stride=Mux(is_ln, 0, f["src2_stride"]),
                       space=f["src2_space"], rows=Mux(is_res | is_ln, f["rows"], 0),
                       chunks=chunks_in(f["src2_space"]), beats=beats,
                       take=(take & is_res) | gb_take)
        if "layernorm" in units:
            ln = units["layernorm"]
            for i in range(lanes):
                m.d.comb += [ln.gb.payload.gamma[i].eq(rd_b.data.word_select(i, 32)),
                             ln.gb.payload.beta[i].eq(rd_c.data.word_select(i, 32))]
            m.d.comb += [ln.gb.valid.eq(is_ln & rd_b.fifo.r_rdy & rd_c.fifo.r_rdy),
                         gb_take.eq(ln.gb.valid & ln.gb.ready)]

        in_valid = rd_a.fifo.r_rdy & (rd_b.fifo.r_rdy | ~is_res)
        for name, unit in units.items():
            sel = op == isa.OPCODES[name].code
            with m.If(sel):
                m.d.comb += [unit.i.valid.eq(in_valid), in_ready.eq(unit.i.ready)]
            m.d.comb += [unit.i.payload.count.eq(count), unit.i.payload.last.eq(last)]
            for i in range(lanes):
                m.d.comb += unit.i.payload.data[i].eq(rd_a.data.word_select(i, 32))
                if name == "residual":
                    m.d.comb += unit.i.payload.b[i].eq(rd_b.data.word_select(i, 32))
        m.d.comb += take.eq(in_valid & in_ready)
        with m.If(start):
            m.d.sync += in_chunk.eq(0)
        with m.Elif(take):
            m.d.sync += in_chunk.eq(Mux(last, 0, in_chunk + 1))

        # Outputs: beats assembled into local rows.
        out = Signal(data.ArrayLayout(8, lanes))
        out_valid = Signal()
        for name, unit in units.items():
            with m.If(op == isa.OPCODES[name].code):
                m.d.comb += [out.eq(unit.o.payload.data), out_valid.eq(unit.o.valid)]
        writer = _RowWriter(m, spad_port=self.spad_wr, acc_port=self.acc_wr, config=c)
        out_ready, last_row = writer.elaborate(
            start=start, base=f["dst"], stride=f["dst_stride"], space=f["dst_space"],
            rows=f["rows"], chunks=chunks_in(f["dst_space"]), beats=beats, out=out,
            valid=out_valid & busy)
        for name, unit in units.items():
            with m.If(op == isa.OPCODES[name].code):
                m.d.comb += unit.o.ready.eq(out_ready)
        with m.If(last_row):
            m.d.sync += busy.eq(0)
            m.d.comb += self.done.eq(1)
        return m

    @staticmethod
    def _share_multipliers(m, units, op, lanes):
        """One multiplier per product slot and lane, its operands from the unit of
        command ``op``; every unit using the slot reads its product."""
        slots = max((len(u.mul_widths) for u in units.values()), default=0)
        for k in range(slots):
            users = {name: u for name, u in units.items() if k < len(u.mul_widths)}
            aw = max(u.mul_widths[k][0] for u in users.values())
            bw = max(u.mul_widths[k][1] for u in users.values())
            for lane in range(lanes):
                a = Signal(signed(aw), name=f"mul{k}_a{lane}")
                b = Signal(signed(bw), name=f"mul{k}_b{lane}")
                p = Signal(signed(aw + bw), name=f"mul{k}_p{lane}")
                m.d.comb += p.eq(a * b)
                m.d.comb += [getattr(u, f"mul{k}")[lane].p.eq(p) for u in users.values()]
                with m.Switch(op):
                    for name, u in users.items():
                        port = getattr(u, f"mul{k}")[lane]
                        with m.Case(isa.OPCODES[name].code):
                            m.d.comb += [a.eq(port.a), b.eq(port.b)]
