"""Load and store executors: 2-D tiles between memory (through the DMA) and the
scratchpad or accumulator.

A ``load``/``store`` command (:mod:`intformer.hw.isa`) moves ``rows`` memory rows of
``row_bytes`` bytes, row ``r`` at ``window_base + dram + r * dram_stride``; memory row
``r`` occupies the ``ceil(row_bytes / L)`` consecutive local rows from
``loc + r * loc_stride`` (``L`` bytes per local row), little-endian, byte 0 of the
memory row in byte 0 of the first local row. A load writes whole local rows, zero
past the row's end; a store writes only the row's bytes to memory.

The DMA streams carry each row packed from lane 0 of a fresh beat (see
:mod:`intformer.hw.dma`), so the executors only regroup beats of ``B`` bytes into
local rows of ``L`` bytes. ``L`` must be a multiple of ``B`` or divide it.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Signal, Value
from amaranth.lib import fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import Config
from .dma import DMADescriptor, DMAError, DMAStatus
from .memories import ReadPortSignature, WritePortSignature

__all__ = ["LoadExecutor", "StoreExecutor"]



def _log2(n: int) -> int:
    return n.bit_length() - 1


def _check_ratio(owner: str, bus: int, local: int, what: str) -> None:
    if local % bus and bus % local:
        raise ValueError(f"{owner}: {what} rows of {local} bytes and bus beats of {bus} "
                         f"bytes must divide one another")


#: Widths of the command fields the executors count with.
_ROWS = isa.OPCODES["load"].field("rows").width
_ROW_BYTES = isa.OPCODES["load"].field("row_bytes").width


class _Executor(wiring.Component):
    def __init__(self, config: Config, members: dict):
        if not isinstance(config, Config):
            raise TypeError(f"{type(self).__name__} config must be a Config, not {config!r}")
        B = config.axi_bytes
        _check_ratio(type(self).__name__, B, config.spad_row_bytes, "scratchpad")
        _check_ratio(type(self).__name__, B, config.acc_row_bytes, "accumulator")
        self._config = config
        aw = config.axi_addr_width
        super().__init__({
            "cmd": In(stream.Signature(isa.command_layout())),
            "desc": Out(stream.Signature(DMADescriptor(addr_width=aw))),
            "status": In(stream.Signature(DMAStatus(addr_width=aw))),
            "window_base": In(aw),
            "done": Out(1), "error": Out(8),
            "bytes": Out(32),
            **members,
        })

    def _job(self, m: Module, view) -> None:
        """The DMA job of command ``view``, straight from the command (a command
        stays at the head of its queue until the DMA takes its job, so only the
        fields the data phase needs are latched), and the error code of the DMA's
        report."""
        m.d.comb += [
            # Unconditional, so that every payload bit is a continuous assignment.
            self.desc.payload.addr.eq(self.window_base + view.dram),
            self.desc.payload.stride.eq(view.dram_stride),
            self.desc.payload.rows.eq(view.rows),
            self.desc.payload.row_bytes.eq(view.row_bytes),
            self.desc.payload.tag.eq(0),
        ]
        with m.Switch(self.status.payload.error):
            with m.Case(DMAError.OK):
                m.d.comb += self.error.eq(0)
            with m.Case(DMAError.WINDOW):
                m.d.comb += self.error.eq(isa.ERRORS["dma_window"][0])
            with m.Default():
                m.d.comb += self.error.eq(isa.ERRORS["bus_error"][0])

    def _start(self, m: Module) -> Value:
        """In the idle state: offer the head command's job; true when the DMA takes it
        (and the command leaves its queue)."""
        m.d.comb += [self.desc.valid.eq(self.cmd.valid), self.cmd.ready.eq(self.desc.ready)]
        return self.cmd.valid & self.desc.ready

    def _finish(self, m: Module) -> Value:
        """In the last state: the command ends (``done``, with ``error``) in the cycle
        the DMA reports its job; true then."""
        m.d.comb += [self.status.ready.eq(1), self.done.eq(self.status.valid)]
        return self.status.valid


class LoadExecutor(_Executor):
    """Carries out ``load`` commands: one DMA read job per command, its beats written
    to local rows.

    Timing: one local row written per cycle when the write port is granted and the
    DMA delivers (a local row no wider than a beat is written straight from it); a
    command ends (``done``) when the DMA reports the job.

    Parameters
    ----------
    config : Config

    Members
    -------
    cmd : In(stream.Signature(command_layout))
        ``load`` commands. While idle, ``desc`` offers the head command's job and
        ``cmd.ready`` follows ``desc.ready``: a command is taken in the cycle the DMA
        takes its job.
    desc : Out(stream.Signature(DMADescriptor))
    data : In(stream.Signature(axi_data_width))
    status : In(stream.Signature(DMAStatus))
        The DMA read engine's job, data and completion ports.
    spad_wr, acc_wr : Out(WritePortSignature)
    window_base : In(axi_addr_width)
    done : Out(1)
        Pulse when a command has finished: in the cycle the DMA reports its job.
    error : Out(8)
        With ``done``: 0, or the error code (``bus_error``, ``dma_window``).
    bytes : Out(32)
        Bytes loaded since reset.

    Raises
    ------
    TypeError
        If ``config`` is not a Config.
    ValueError
        If a local row width and the bus width do not divide one another.
    """

    def __init__(self, config: Config):
        c = config
        super().__init__(config, {
            "data": In(stream.Signature(c.axi_data_width)),
            "spad_wr": Out(WritePortSignature(addr_width=c.spad_addr_width,
                                              width=c.spad_row_bytes * 8)),
            "acc_wr": Out(WritePortSignature(addr_width=c.acc_addr_width,
                                             width=c.acc_row_bytes * 8)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        B = c.axi_bytes
        cmd = self.cmd.payload.load
        self._job(m, cmd)

        # Local addresses wrap at the ports' width, so the row pointers need no more.
        aw = max(len(self.spad_wr.addr), len(self.acc_wr.addr))
        row_bytes = Signal(_ROW_BYTES, name="cmd_row_bytes")
        stride = Signal(aw, name="cmd_loc_stride")
        space = Signal(name="cmd_space")
        transpose = Signal(name="cmd_transpose")
        last_byte = Signal(_ROW_BYTES)  # of a memory row: row_bytes - 1
        m.d.comb += last_byte.eq(row_bytes - 1)
        row = Signal(_ROWS)             # memory rows left
        row_base = Signal(aw)           # first local row of the current memory row
        beat = Signal(max(1, _ROW_BYTES - _log2(B)))  # beats received of the memory row
        chunk = Signal(_ROW_BYTES)      # local rows written of the current memory row
        written = Signal(32)
        m.d.comb += self.bytes.eq(written)
        in_data = Signal()
        pending = []
        # A transposed load gathers its (at most L x L byte) tile here, one memory row
        # per entry, then writes it out column by column. The command processor has
        # checked that rows and row_bytes are at most L.
        L = c.spad_row_bytes
        tile = [Signal(L * 8, name=f"tile{i}") for i in range(L)]
        tile_row = Signal(range(L + 1))
        transposing = Signal()
        col = Signal(range(max(2, L)))
        col_addr = Signal(len(self.spad_wr.addr))
        for sp, port, width in (("spad", self.spad_wr, c.spad_row_bytes),
                                ("acc", self.acc_wr, c.acc_row_bytes)):
            active = Signal(name=f"active_{sp}")
            m.d.comb += active.eq(in_data & (space == isa.SPACES[sp]))
            capture = transpose if sp == "spad" else None
            result = self._gearbox(
                m, port, width, B, active=active, row=row, row_base=row_base, beat=beat,
                chunk=chunk, last_byte=last_byte, stride=stride, written=written,
                row_bytes=row_bytes, capture=capture)
            pending.append(result[0])
            if sp == "spad":
                _, wdata, captured = result
                with m.If(captured):
                    with m.Switch(tile_row):
                        for i in range(L):
                            with m.Case(i):
                                m.d.sync += tile[i].eq(wdata)
                    m.d.sync += tile_row.eq(tile_row + 1)
        with m.If(transposing):
            m.d.comb += [
                self.spad_wr.en.eq(1), self.spad_wr.addr.eq(col_addr),
                self.spad_wr.data.eq(Cat(*(t.word_select(col[:max(1, (L - 1).bit_length())],
                                                         8) for t in tile))),
            ]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self._start(m)):
                    m.d.sync += [
                        row_bytes.eq(cmd.row_bytes), stride.eq(cmd.loc_stride),
                        space.eq(cmd.space), transpose.eq(cmd.transpose),
                        row.eq(cmd.rows), row_base.eq(cmd.loc), beat.eq(0), chunk.eq(0),
                    ]
                    m.d.sync += [t.eq(0) for t in tile]
                    m.d.sync += [tile_row.eq(0), col.eq(0), col_addr.eq(cmd.loc)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += in_data.eq(1)
                with m.If((row == 0) & ~pending[0] & ~pending[1]):
                    m.next = "STATUS"
                    with m.If(transpose):
                        m.next = "TRANSPOSE"
            with m.State("TRANSPOSE"):
                m.d.comb += transposing.eq(1)
                with m.If(self.spad_wr.grant):
                    m.d.sync += [col.eq(col + 1), col_addr.eq(col_addr + stride)]
                    with m.If(col == last_byte):
                        m.next = "STATUS"
            with m.State("STATUS"):
                with m.If(self._finish(m)):
                    m.next = "IDLE"
        return m

    def _gearbox(self, m, port, L, B, *, active, row, row_base, beat, chunk, last_byte,
                 stride, written, row_bytes, capture=None):
        """Beats of ``B`` bytes into local rows of ``L`` bytes, through ``port``; returns
        the signal that says a row write is still waiting for its grant, the row, and
        the signal that says it was captured instead (when ``capture`` is high)."""
        wdata = Signal(L * 8, name=f"wdata_{L}")
        waddr = Signal(len(port.addr), name=f"waddr_{L}")
        capture = Const(0, 1) if capture is None else capture
        captured = Signal(name=f"captured_{L}")
        taken = port.grant | capture

        def next_row():
            m.d.sync += [row.eq(row - 1), row_base.eq(row_base + stride), beat.eq(0),
                         chunk.eq(0), written.eq(written + row_bytes)]

        if L > B:
            n = L // B
            pending = Signal(name=f"pending_{L}")
            k = Signal(range(n), name=f"slot_{L}")
            m.d.comb += [port.en.eq(pending & ~capture), port.data.eq(wdata),
                         port.addr.eq(waddr), captured.eq(pending & capture)]
            with m.If(pending & taken):
                m.d.sync += pending.eq(0)
            with m.If(active):
                m.d.comb += self.data.ready.eq((~pending | taken) & (row != 0))
            with m.If(active & self.data.valid & self.data.ready):
                # The row gathers in wdata itself: a beat is taken only once the
                # previous row has been written (at the latest in this cycle).
                with m.If(k == 0):
                    m.d.sync += wdata.eq(self.data.payload)   # zeros past the beat
                with m.Else():
                    m.d.sync += wdata.word_select(k, B * 8).eq(self.data.payload)
                last_of_row = beat == last_byte[_log2(B):]
                with m.If((k == n - 1) | last_of_row):
                    m.d.sync += [waddr.eq(row_base + chunk), pending.eq(1), k.eq(0),
                                 chunk.eq(chunk + 1)]
                with m.Else():
                    m.d.sync += k.eq(k + 1)
                m.d.sync += beat.eq(beat + 1)
                with m.If(last_of_row):
                    next_row()
            return pending, wdata, captured

        # A beat holds one or several local rows: each is written straight from the
        # beat, which the DMA keeps offering until its last row is written.
        n = B // L
        j = Signal(range(n), name=f"part_{L}")
        have = Signal(name=f"have_{L}")     # a beat is offered whose rows are ours
        m.d.comb += [have.eq(active & self.data.valid & (row != 0)),
                     wdata.eq(self.data.payload.word_select(j, L * 8) if n > 1
                              else self.data.payload),
                     waddr.eq(row_base + chunk),
                     port.en.eq(have & ~capture), port.data.eq(wdata), port.addr.eq(waddr),
                     captured.eq(have & capture)]
        with m.If(have & taken):
            m.d.sync += [chunk.eq(chunk + 1), j.eq(j + 1)]
            last_of_row = chunk == last_byte[_log2(L):]
            with m.If((j == n - 1) | last_of_row):
                m.d.comb += self.data.ready.eq(1)
                m.d.sync += j.eq(0)
            with m.If(last_of_row):
                next_row()
        return Const(0, 1), wdata, captured


class StoreExecutor(_Executor):
    """Carries out ``store`` commands: local rows read and packed into the beats of
    one DMA write job per command.

    Timing: where a local row is one bus beat, one beat per cycle while the read port
    is granted and the DMA takes data (rows are read up to three ahead); otherwise
    one local row read every other cycle. A command ends (``done``) when the DMA reports the job
    (after the last write response).

    Parameters
    ----------
    config : Config

    Members
    -------
    cmd : In(stream.Signature(command_layout))
        ``store`` commands, taken as for :class:`LoadExecutor`.
    desc : Out(stream.Signature(DMADescriptor))
    data : Out(stream.Signature(axi_data_width))
    status : In(stream.Signature(DMAStatus))
        The DMA write engine's job, data and completion ports.
    spad_rd, acc_rd : Out(ReadPortSignature)
    window_base : In(axi_addr_width)
    done, error, bytes : Out
        As for :class:`LoadExecutor` (bytes stored).

    Raises
    ------
    TypeError
        If ``config`` is not a Config.
    ValueError
        If a local row width and the bus width do not divide one another.
    """

    def __init__(self, config: Config):
        c = config
        super().__init__(config, {
            "data": Out(stream.Signature(c.axi_data_width)),
            "spad_rd": Out(ReadPortSignature(addr_width=c.spad_addr_width,
                                             width=c.spad_row_bytes * 8)),
            "acc_rd": Out(ReadPortSignature(addr_width=c.acc_addr_width,
                                            width=c.acc_row_bytes * 8)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        B = c.axi_bytes
        cmd = self.cmd.payload.store
        self._job(m, cmd)

        # Local addresses wrap at the ports' width, so the row pointers need no more.
        aw = max(len(self.spad_rd.addr), len(self.acc_rd.addr))
        row_bytes = Signal(_ROW_BYTES, name="cmd_row_bytes")
        stride = Signal(aw, name="cmd_loc_stride")
        space = Signal(name="cmd_space")
        last_byte = Signal(_ROW_BYTES)  # of a memory row: row_bytes - 1
        m.d.comb += last_byte.eq(row_bytes - 1)
        row = Signal(_ROWS)
        row_base = Signal(aw)
        beat = Signal(max(1, _ROW_BYTES - _log2(B)))
        chunk = Signal(_ROW_BYTES)
        stored = Signal(32)
        m.d.comb += self.bytes.eq(stored)
        in_data = Signal()
        start = Signal()
        for sp, port, L in (("spad", self.spad_rd, c.spad_row_bytes),
                            ("acc", self.acc_rd, c.acc_row_bytes)):
            active = Signal(name=f"active_{sp}")
            m.d.comb += active.eq(in_data & (space == isa.SPACES[sp]))
            self._gearbox(m, port, L, B, sp=sp, active=active, start=start, cmd=cmd, row=row,
                          row_base=row_base, beat=beat, chunk=chunk, last_byte=last_byte,
                          stride=stride, stored=stored, row_bytes=row_bytes)

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += start.eq(self._start(m))
                with m.If(start):
                    m.d.sync += [
                        row_bytes.eq(cmd.row_bytes), stride.eq(cmd.loc_stride),
                        space.eq(cmd.space),
                        row.eq(cmd.rows), row_base.eq(cmd.loc), beat.eq(0), chunk.eq(0),
                    ]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += in_data.eq(1)
                with m.If(row == 0):
                    m.next = "STATUS"
            with m.State("STATUS"):
                with m.If(self._finish(m)):
                    m.next = "IDLE"
        return m

    def _gearbox(self, m, port, L, B, *, sp, active, start, cmd, row, row_base, beat, chunk,
                 last_byte, stride, stored, row_bytes):
        """Local rows of ``L`` bytes of memory ``sp`` into beats of ``B`` bytes, through
        ``port``."""
        asked = Signal(name=f"asked_{L}")      # a read was granted; its data come now
        m.d.sync += asked.eq(0)
        last_beat = beat == last_byte[_log2(B):]

        def next_row():
            m.d.sync += [row.eq(row - 1), row_base.eq(row_base + stride), beat.eq(0),
                         chunk.eq(0), stored.eq(stored + row_bytes)]

        if L == B:
            # One beat per local row: read ahead through a 3-entry FIFO (one row
            # being sent, one arriving, one asked for), so a granted port gives one
            # beat per cycle. The read side keeps its own row and chunk counters.
            # Named by memory: both memories' rows may be as wide as a beat.
            m.submodules[f"ahead_{sp}"] = ahead = fifo.SyncFIFO(width=L * 8, depth=3)
            rd_row = Signal(_ROWS, name=f"rd_row_{L}")
            rd_base = Signal(len(row_base), name=f"rd_base_{L}")
            rd_chunk = Signal(_ROW_BYTES, name=f"rd_chunk_{L}")
            m.d.comb += port.addr.eq(rd_base + rd_chunk)
            with m.If(start):
                m.d.sync += [rd_row.eq(cmd.rows), rd_base.eq(cmd.loc), rd_chunk.eq(0)]
            with m.Elif(active & (rd_row != 0) & (ahead.level + asked < ahead.depth)):
                m.d.comb += port.en.eq(1)
                with m.If(port.grant):
                    m.d.sync += [asked.eq(1), rd_chunk.eq(rd_chunk + 1)]
                    with m.If(rd_chunk == last_byte[_log2(L):]):
                        m.d.sync += [rd_chunk.eq(0), rd_row.eq(rd_row - 1),
                                     rd_base.eq(rd_base + stride)]
            m.d.comb += [ahead.w_en.eq(asked), ahead.w_data.eq(port.data)]
            with m.If(active):
                m.d.comb += [self.data.valid.eq(ahead.r_rdy), self.data.payload.eq(ahead.r_data),
                             ahead.r_en.eq(self.data.ready)]
            with m.If(active & self.data.valid & self.data.ready):
                m.d.sync += beat.eq(beat + 1)
                with m.If(last_beat):
                    next_row()
            return

        # Otherwise one local row is read at a time: ask (en until grant), then the
        # data come.
        buf = Signal(max(L, B) * 8, name=f"buf_{L}")
        have = Signal(name=f"have_{L}")        # buf holds data to send
        out = Signal(B * 8, name=f"out_{L}")
        m.d.comb += port.addr.eq(row_base + chunk)
        if L > B:
            n = L // B
            k = Signal(range(n), name=f"slot_{L}")
            with m.If(active & ~have & ~asked & (row != 0)):
                m.d.comb += port.en.eq(1)
                with m.If(port.grant):
                    m.d.sync += asked.eq(1)
            with m.If(asked):
                m.d.sync += [buf.eq(port.data), have.eq(1), k.eq(0), chunk.eq(chunk + 1)]
            m.d.comb += out.eq(buf.word_select(k, B * 8))
            with m.If(active):
                m.d.comb += [self.data.valid.eq(have), self.data.payload.eq(out)]
            with m.If(active & self.data.valid & self.data.ready):
                m.d.sync += [beat.eq(beat + 1), k.eq(k + 1)]
                with m.If((k == n - 1) | last_beat):
                    m.d.sync += have.eq(0)
                with m.If(last_beat):
                    next_row()
        else:
            n = B // L
            j = Signal(range(n + 1), name=f"part_{L}")
            with m.If(active & ~have & ~asked & (row != 0)):
                m.d.comb += port.en.eq(1)
                with m.If(port.grant):
                    m.d.sync += asked.eq(1)
            with m.If(asked):
                m.d.sync += [buf.word_select(j[:max(1, (n - 1).bit_length())], L * 8)
                             .eq(port.data), j.eq(j + 1), chunk.eq(chunk + 1)]
                with m.If((j == n - 1) | (chunk == last_byte[_log2(L):])):
                    m.d.sync += have.eq(1)
            with m.If(active):
                m.d.comb += [self.data.valid.eq(have), self.data.payload.eq(buf)]
            with m.If(active & self.data.valid & self.data.ready):
                m.d.sync += [have.eq(0), j.eq(0), buf.eq(0), beat.eq(beat + 1)]
                with m.If(last_beat):
                    next_row()
