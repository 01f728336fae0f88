"""Banked on-chip memories: the INT8 scratchpad and the INT32 accumulator.

Both are :class:`BankedMemory`: ``banks`` simple dual-port block RAMs (one read and
one write port each, what every FPGA's block RAM offers), split by the high
address bits so that a region the compiler double-buffers lives in one bank while
the other bank serves the other side. Several requesters share the banks: each
read or write port asks with ``en``; a port whose bank is free this cycle is
granted (``grant``), lower-numbered ports first, except that a read waits while
its row is being written. A granted read returns its row in ``data`` one cycle
later. Ports hitting different banks proceed in the same
cycle, so a DMA load into one bank never slows compute reading the other.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import Config

__all__ = ["ReadPortSignature", "WritePortSignature", "BankedMemory", "scratchpad",
           "accumulator"]


class ReadPortSignature(wiring.Signature):
    """A requester's read port (flows as seen from the requester).

    Members
    -------
    addr : Out(addr_width)
        Row to read.
    en : Out(1)
        Request a read this cycle; keep it and ``addr`` until ``grant``.
    grant : In(1)
        The read was accepted this cycle.
    data : In(width)
        The row, valid in the cycle after ``grant`` (only then: another port may
        read the same bank later).
    """

    def __init__(self, *, addr_width: int, width: int):
        self._addr_width = addr_width
        self._width = width
        super().__init__({"addr": Out(addr_width), "en": Out(1), "grant": In(1),
                          "data": In(width)})

    def __eq__(self, other):
        return (type(other) is type(self) and other._addr_width == self._addr_width
                and other._width == self._width)

    def __repr__(self):
        return f"ReadPortSignature(addr_width={self._addr_width}, width={self._width})"


class WritePortSignature(wiring.Signature):
    """A requester's write port (flows as seen from the requester).

    Members
    -------
    addr : Out(addr_width)
    data : Out(width)
    en : Out(1)
        Request a write this cycle; keep it, ``addr`` and ``data`` until ``grant``.
    grant : In(1)
        The write happens at the end of this cycle.
    """

    def __init__(self, *, addr_width: int, width: int):
        self._addr_width = addr_width
        self._width = width
        super().__init__({"addr": Out(addr_width), "data": Out(width), "en": Out(1),
                          "grant": In(1)})

    def __eq__(self, other):
        return (type(other) is type(self) and other._addr_width == self._addr_width
                and other._width == self._width)

    def __repr__(self):
        return f"WritePortSignature(addr_width={self._addr_width}, width={self._width})"


class BankedMemory(wiring.Component):
    """``depth`` rows of ``width`` bits in ``banks`` block RAMs, shared by several ports.

    Read latency is one cycle after ``grant``; a port alone on its bank is granted in
    the cycle it asks, so a single requester reads or writes one row per cycle. A read
    of the row that a write is granted in the same cycle is not granted (its bank
    stays taken for lower-priority reads): it is granted a later cycle and returns
    the new row, so a read never meets a write of its row. Block RAMs then map
    without the flip-flops and bypass that synthesis adds to give colliding ports
    defined (read-first) behaviour.

    Parameters
    ----------
    width : int
        Bits per row.
    depth : int
        Rows, a multiple of ``banks``.
    banks : int
        Block RAMs, a power of 2; bank ``b`` holds rows ``b * depth / banks`` onwards.
    read_ports, write_ports : int
        Requesters of each kind, in priority order (port 0 first).

    Members
    -------
    read : In(ReadPortSignature).array(read_ports)
    write : In(WritePortSignature).array(write_ports)

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range or ``depth`` is not a multiple of ``banks``.
    """

    def __init__(self, width: int, *, depth: int, banks: int, read_ports: int = 1,
                 write_ports: int = 1):
        for name, value, lo in (("width", width, 1), ("depth", depth, 1), ("banks", banks, 1),
                                ("read_ports", read_ports, 1), ("write_ports", write_ports, 1)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Memory {name} must be an integer, not {value!r}")
            if value < lo:
                raise ValueError(f"Memory {name} must be at least {lo}, not {value}")
        if banks & (banks - 1):
            raise ValueError(f"Memory banks must be a power of 2, not {banks}")
        if depth % banks:
            raise ValueError(f"Memory depth {depth} is not a multiple of {banks} banks")
        self._width = width
        self._depth = depth
        self._banks = banks
        self._addr_width = max(1, (depth - 1).bit_length())
        super().__init__({
            "read": In(ReadPortSignature(addr_width=self._addr_width, width=width))
            .array(read_ports),
            "write": In(WritePortSignature(addr_width=self._addr_width, width=width))
            .array(write_ports),
        })

    @property
    def width(self) -> int:
        return self._width

    @property
    def depth(self) -> int:
        return self._depth

    @property
    def banks(self) -> int:
        return self._banks

    @property
    def bank_depth(self) -> int:
        return self._depth // self._banks

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def read_latency(self) -> int:
        """Cycles from ``grant`` to ``data``."""
        return 1

    def elaborate(self, platform) -> Module:
        m = Module()
        bank_depth = self.bank_depth
        row_bits = max(1, (bank_depth - 1).bit_length())

        def bank_of(addr):
            return addr // bank_depth if self._banks > 1 else 0

        def row_of(addr):
            return (addr % bank_depth)[:row_bits] if self._banks > 1 else addr[:row_bits]

        read_bank = [Signal(range(self._banks), name=f"read{p}_bank")
                     for p in range(len(self.read))]
        for b in range(self._banks):
            mem = Memory(shape=self._width, depth=bank_depth, init=[])
            m.submodules[f"bank{b}"] = mem
            rp = mem.read_port()
            wp = mem.write_port()
            # A read of the row being written this cycle waits: Yosys then sees that
            # the ports never collide and maps them onto the block RAM as they are,
            # instead of delaying every write a cycle in flip-flops and bypassing
            # it into the read data (its emulation of read-first block RAM).
            clash = Signal(name=f"bank{b}_clash")
            m.d.comb += clash.eq(wp.en & (wp.addr == rp.addr))
            taken = 0
            for p, port in enumerate(self.read):
                want = port.en & (bank_of(port.addr) == b) & (port.addr < self._depth)
                win = Signal(name=f"bank{b}_read{p}_win")
                m.d.comb += win.eq(want & ~taken)
                with m.If(win):
                    m.d.comb += [rp.addr.eq(row_of(port.addr)), port.grant.eq(~clash)]
                    m.d.sync += read_bank[p].eq(b)
                taken = taken | want
            m.d.comb += rp.en.eq(taken & ~clash)
            taken = 0
            for p, port in enumerate(self.write):
                want = port.en & (bank_of(port.addr) == b) & (port.addr < self._depth)
                win = Signal(name=f"bank{b}_write{p}_win")
                m.d.comb += win.eq(want & ~taken)
                with m.If(win):
                    m.d.comb += [wp.addr.eq(row_of(port.addr)), wp.data.eq(port.data),
                                 wp.en.eq(1), port.grant.eq(1)]
                taken = taken | want
            for p, port in enumerate(self.read):
                with m.If(read_bank[p] == b):
                    m.d.comb += port.data.eq(rp.data)
        return m


def scratchpad(config: Config, *, read_ports: int = 2, write_ports: int = 2) -> BankedMemory:
    """The INT8 scratchpad of ``config``: ``spad_rows`` rows of ``spad_row_bytes``."""
    return BankedMemory(config.spad_row_bytes * 8, depth=config.spad_rows,
                        banks=config.spad_banks, read_ports=read_ports, write_ports=write_ports)


def accumulator(config: Config, *, read_ports: int = 2, write_ports: int = 2) -> BankedMemory:
    """The INT32 accumulator of ``config``: ``acc_rows`` rows of ``array_cols`` values."""
    return BankedMemory(config.acc_row_bytes * 8, depth=config.acc_rows,
                        banks=config.acc_banks, read_ports=read_ports, write_ports=write_ports)
