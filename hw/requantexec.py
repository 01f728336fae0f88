"""Requant executor: runs ``requant`` commands, accumulator rows (INT32) to scratchpad
rows (INT8), through a :class:`~intformer.hw.requant.Requantizer`.

A command reads ``rows`` consecutive accumulator rows from ``src`` (``array_cols``
INT32 lanes each) and writes each requantized row to scratchpad row
``dst + r * dst_stride``: the low ``array_cols`` bytes, the rest of the row 0 (as the
GEMM engine writes its INT8 results). The constants are the command's ``mult`` and
``shift`` for the whole tensor, or with ``per_channel`` lane ``j`` of accumulator row
``scale``: the multiplier in bits ``0 .. requant_mult_width-1`` and the shift in the
6 bits above (the GEMM engine's scale layout). The result is exactly
:func:`intformer.sw.golden.requantize`.

Timing: the scale row (if any) is read first; then one row per cycle in steady
state (reads are issued while the input buffer has room), plus the requantizer's
latency of 3 cycles. ``done`` pulses once the last output row is written.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import Config
from .memories import ReadPortSignature, WritePortSignature
from .requant import Requantizer

__all__ = ["RequantExecutor", "SHIFT_WIDTH"]

#: Width of a shift, in the command and in a scale lane.
SHIFT_WIDTH = 6



class RequantExecutor(wiring.Component):
    """Carries out ``requant`` commands.

    Parameters
    ----------
    config : Config

    Members
    -------
    cmd : In(stream.Signature(command_layout))
        ``requant`` commands; ready while idle.
    acc_rd : Out(ReadPortSignature)
        Accumulator rows to requantize.
    scale_rd : Out(ReadPortSignature)
        The per-channel constants row.
    spad_wr : Out(WritePortSignature)
        INT8 results.
    busy, done : Out(1)

    Raises
    ------
    TypeError
        If ``config`` is not a Config.
    ValueError
        If a scale lane cannot hold a multiplier and a shift.
    """

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"Requant executor config must be a Config, not {config!r}")
        if config.requant_mult_width + SHIFT_WIDTH > config.acc_width:
            raise ValueError(f"Requant executor needs requant_mult_width "
                             f"({config.requant_mult_width}) + {SHIFT_WIDTH} shift bits to "
                             f"fit an accumulator lane of {config.acc_width} bits")
        self._config = c = config
        self._rq = Requantizer(c.array_cols, acc_width=c.acc_width,
                               mult_width=c.requant_mult_width)
        spad = dict(addr_width=c.spad_addr_width, width=c.spad_row_bytes * 8)
        acc = dict(addr_width=c.acc_addr_width, width=c.acc_row_bytes * 8)
        super().__init__({
            "cmd": In(stream.Signature(isa.command_layout())),
            "acc_rd": Out(ReadPortSignature(**acc)),
            "scale_rd": Out(ReadPortSignature(**acc)),
            "spad_wr": Out(WritePortSignature(**spad)),
            "busy": Out(1), "done": Out(1),
        })

    @property
    def latency(self) -> int:
        """Cycles from a granted accumulator read to its scratchpad write request,
        without stalls: the read, the input buffer and the requantizer."""
        return 1 + 1 + self._rq.latency

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        lanes, aw, mw = c.array_cols, c.acc_width, c.requant_mult_width
        m.submodules.rq = rq = self._rq

        v = self.cmd.payload.requant
        src = Signal(17)
        dst = Signal(17)
        dst_stride = Signal(12)
        rows_rd = Signal(12)     # rows still to read
        rows_wr = Signal(12)     # rows still to write
        per_channel = Signal()
        mult = Signal(16)
        shift = Signal(SHIFT_WIDTH)
        scale_addr = Signal(16)
        need_scale = Signal()    # per-channel constants not read yet
        scale_wait = Signal()    # scale read granted last cycle
        scale = Signal(c.acc_row_bytes * 8)
        busy = Signal()
        m.d.comb += [self.cmd.ready.eq(~busy), self.busy.eq(busy)]
        with m.If(self.cmd.valid & ~busy):
            m.d.sync += [busy.eq(1), src.eq(v.src), dst.eq(v.dst),
                         dst_stride.eq(v.dst_stride), rows_rd.eq(v.rows), rows_wr.eq(v.rows),
                         per_channel.eq(v.per_channel), mult.eq(v.mult), shift.eq(v.shift),
                         scale_addr.eq(v.scale), need_scale.eq(v.per_channel)]

        # The scale row, once per command, before any data row enters the requantizer.
        m.d.comb += [self.scale_rd.addr.eq(scale_addr), self.scale_rd.en.eq(need_scale)]
        m.d.sync += scale_wait.eq(self.scale_rd.en & self.scale_rd.grant)
        with m.If(self.scale_rd.en & self.scale_rd.grant):
            m.d.sync += need_scale.eq(0)
        with m.If(scale_wait):
            m.d.sync += scale.eq(self.scale_rd.data)

        # Accumulator rows into a buffer; a read is issued only while the buffer has
        # room for it and every read in flight (data arrive the cycle after the grant).
        depth = 4
        m.submodules.buf = buf = fifo.SyncFIFOBuffered(width=lanes * aw, depth=depth)
        in_flight = Signal()
        want = busy & (rows_rd != 0) & (buf.level + in_flight < depth - 1)
        m.d.comb += [self.acc_rd.addr.eq(src), self.acc_rd.en.eq(want)]
        granted = want & self.acc_rd.grant
        m.d.sync += in_flight.eq(granted)
        with m.If(granted):
            m.d.sync += [src.eq(src + 1), rows_rd.eq(rows_rd - 1)]
        m.d.comb += [buf.w_data.eq(self.acc_rd.data[:lanes * aw]), buf.w_en.eq(in_flight)]

        # Requantize: constants ready once the scale row is in (or at once per tensor).
        consts_ready = ~need_scale & ~scale_wait
        m.d.comb += [rq.i.valid.eq(busy & buf.r_rdy & consts_ready),
                     buf.r_en.eq(rq.i.valid & rq.i.ready)]
        for j in range(lanes):
            lane = scale.word_select(j, aw)
            m.d.comb += [
                rq.i.payload.acc[j].eq(buf.r_data.word_select(j, aw)),
                rq.i.payload.mult[j].eq(Mux(per_channel, lane[:mw], mult)),
                rq.i.payload.shift[j].eq(Mux(per_channel, lane[mw:mw + SHIFT_WIDTH], shift)),
            ]

        # Outputs: one scratchpad row per beat, low bytes, the rest 0.
        m.d.comb += [
            self.spad_wr.addr.eq(dst),
            self.spad_wr.data.eq(Cat(*(rq.o.payload[j] for j in range(lanes)))),
            self.spad_wr.en.eq(rq.o.valid & busy),
            rq.o.ready.eq(self.spad_wr.grant & busy),
        ]
        with m.If(rq.o.valid & rq.o.ready):
            m.d.sync += [dst.eq(dst + dst_stride), rows_wr.eq(rows_wr - 1)]
            with m.If(rows_wr == 1):
                m.d.sync += busy.eq(0)
                m.d.comb += self.done.eq(1)
        return m
