"""A simulation top: the accelerator with its memory inside the design.

Long runs (a whole transformer, image after image) are limited by a memory model
in Python that answers every AXI beat. :class:`SimTop` puts an AXI4 subordinate
memory (:class:`AXIMemory`) next to the :class:`~intformer.hw.top.Accelerator`, so
that a simulator runs the accelerator and its memory on its own; the testbench
only writes registers, loads and reads memory through a backdoor port, and waits
for the interrupt. It is meant for simulation (a real system has its own memory).
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXI4Signature, AXIResp
from .config import Config

__all__ = ["AXIMemory", "SimTop"]


class AXIMemory(wiring.Component):
    """An AXI4 subordinate memory with a backdoor port.

    Serves INCR bursts of full bus-width beats (``AxSIZE`` equal to the bus width,
    which is what the accelerator's DMA issues), one read beat per cycle and one
    write beat per cycle, with byte strobes. An unaligned burst start addresses the
    beat that holds it (as AXI defines for full-width transfers); addresses wrap at
    ``mem_bytes``. FIXED and WRAP bursts are served as INCR.

    Latency and throughput: a read burst's first beat is valid two cycles after the
    ``AR`` handshake, then one beat per cycle while ``rready`` is high; the next
    burst's address is accepted during the last beat, so back-to-back bursts stream
    without a gap. A write burst takes its address, then one beat per cycle while
    ``wvalid`` is high, then the response (``awready`` drops until ``bready``).
    ``wready`` is low outside a burst's data phase.

    Parameters
    ----------
    addr_width, data_width, id_width : int
        As :class:`~intformer.hw.axi.AXI4Signature`.
    mem_bytes : int
        Size; a power of two of at least two beats.

    Members
    -------
    s_axi : In(AXI4Signature)
        The subordinate port.
    bd_addr : In(log2(mem_bytes / beat bytes))
        Backdoor beat index.
    bd_we : In(1)
        Backdoor write of ``bd_wdata`` at ``bd_addr`` (all bytes) this cycle.
    bd_wdata : In(data_width)
    bd_rdata : Out(data_width)
        The beat at the ``bd_addr`` of the previous cycle.

    Raises
    ------
    TypeError
        If ``mem_bytes`` is not an integer.
    ValueError
        If ``mem_bytes`` is not a power of two of at least two beats.
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int, mem_bytes: int):
        sig = AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        if isinstance(mem_bytes, bool) or not isinstance(mem_bytes, int):
            raise TypeError(f"AXIMemory mem_bytes must be an integer, not {mem_bytes!r}")
        beat = data_width // 8
        if mem_bytes < 2 * beat or mem_bytes & (mem_bytes - 1):
            raise ValueError(f"AXIMemory mem_bytes must be a power of two of at least two "
                             f"beats ({2 * beat} bytes), not {mem_bytes}")
        if mem_bytes > 1 << addr_width:
            raise ValueError(f"AXIMemory mem_bytes {mem_bytes} exceeds the {addr_width}-bit "
                             f"address space")
        self._beat = beat
        self._depth = mem_bytes // beat
        self._mem_bytes = mem_bytes
        index_width = (self._depth - 1).bit_length()
        super().__init__({
            "s_axi": In(sig),
            "bd_addr": In(index_width), "bd_we": In(1), "bd_wdata": In(data_width),
            "bd_rdata": Out(data_width),
        })

    @property
    def mem_bytes(self) -> int:
        return self._mem_bytes

    @property
    def depth(self) -> int:
        """Beats held."""
        return self._depth

    def elaborate(self, platform) -> Module:
        m = Module()
        bus = self.s_axi
        sig = bus.signature
        shift = (self._beat - 1).bit_length()
        iw = len(self.bd_addr)
        m.submodules.mem = mem = memory.Memory(shape=sig.data_width, depth=self._depth,
                                               init=[])
        # The AXI write port has byte lanes; the backdoor writes whole beats.
        wr = mem.write_port(granularity=8)
        bd_wr = mem.write_port()
        rd = mem.read_port()
        bd_rd = mem.read_port()
        m.d.comb += [
            bd_wr.addr.eq(self.bd_addr), bd_wr.data.eq(self.bd_wdata), bd_wr.en.eq(self.bd_we),
            bd_rd.addr.eq(self.bd_addr), self.bd_rdata.eq(bd_rd.data),
        ]

        # Read: a beat is read whenever the output register is free or being taken.
        rd_rem = Signal(9)           # beats of the current burst still to read
        rd_addr = Signal(iw)
        rd_id = Signal.like(bus.arid)
        advance = Signal()
        m.d.comb += [
            advance.eq((rd_rem != 0) & (~bus.rvalid | bus.rready)),
            rd.addr.eq(rd_addr), rd.en.eq(advance),
            bus.rdata.eq(rd.data), bus.rresp.eq(AXIResp.OKAY),
            bus.arready.eq((rd_rem == 0) | ((rd_rem == 1) & advance)),
        ]
        rvalid = Signal()
        rlast = Signal()
        rid = Signal.like(bus.rid)
        m.d.comb += [bus.rvalid.eq(rvalid), bus.rlast.eq(rlast), bus.rid.eq(rid)]
        with m.If(advance):
            m.d.sync += [rvalid.eq(1), rlast.eq(rd_rem == 1), rid.eq(rd_id),
                         rd_addr.eq(rd_addr + 1), rd_rem.eq(rd_rem - 1)]
        with m.Elif(bus.rready):
            m.d.sync += rvalid.eq(0)
        # Assigned after the advance so that a burst accepted on the previous one's
        # last beat takes effect.
        with m.If(bus.arvalid & bus.arready):
            m.d.sync += [rd_addr.eq((bus.araddr >> shift)[:iw]), rd_rem.eq(bus.arlen + 1),
                         rd_id.eq(bus.arid)]

        # Write: address, data beats, response.
        wr_addr = Signal(iw)
        wr_id = Signal.like(bus.awid)
        bvalid = Signal()
        m.d.comb += [bus.bvalid.eq(bvalid), bus.bid.eq(wr_id), bus.bresp.eq(AXIResp.OKAY),
                     wr.addr.eq(wr_addr), wr.data.eq(bus.wdata)]
        with m.FSM():
            with m.State("ADDR"):
                m.d.comb += bus.awready.eq(1)
                with m.If(bus.awvalid):
                    m.d.sync += [wr_addr.eq((bus.awaddr >> shift)[:iw]), wr_id.eq(bus.awid)]
                    m.next = "DATA"
            with m.State("DATA"):
                m.d.comb += bus.wready.eq(1)
                with m.If(bus.wvalid):
                    m.d.comb += wr.en.eq(bus.wstrb)
                    m.d.sync += wr_addr.eq(wr_addr + 1)
                    with m.If(bus.wlast):
                        m.d.sync += bvalid.eq(1)
                        m.next = "RESP"
            with m.State("RESP"):
                with m.If(bus.bready):
                    m.d.sync += bvalid.eq(0)
                    m.next = "ADDR"
        return m


class SimTop(wiring.Component):
    """The :class:`~intformer.hw.top.Accelerator` with an :class:`AXIMemory` on its
    AXI4 master port.

    Parameters
    ----------
    config : Config
    mem_bytes : int
        Memory size; a power of two within the address space (default 1 MiB).
    power_on_reset : bool
        Reset from a counter inside the design for the first :attr:`POR_CYCLES` cycles
        instead of a ``rst`` port; ``clk`` is then an explicit port. Verilator
        evaluates logic that depends on a top-level input on every ``eval`` call (both
        clock edges), and Amaranth's synchronous reset makes every register's next
        state depend on ``rst``: without the port the simulation runs about twice as
        fast.

    Members
    -------
    clk : In(1)
        Only with ``power_on_reset`` (otherwise the ``sync`` domain's ``clk`` and
        ``rst`` ports).
    s_axil : In(AXI4LiteSignature)
        The accelerator's registers.
    irq : Out(1)
    bd_addr, bd_we, bd_wdata, bd_rdata
        The memory's backdoor (see :class:`AXIMemory`): beat index, not byte address.

    Raises
    ------
    TypeError
        If ``config`` is not a Config or ``mem_bytes`` not an integer.
    ValueError
        As :class:`AXIMemory` for ``mem_bytes``.
    """

    #: Cycles in reset after power-on with ``power_on_reset``.
    POR_CYCLES = 4

    def __init__(self, config: Config, *, mem_bytes: int = 1 << 20,
                 power_on_reset: bool = False):
        from .top import Accelerator
        if not isinstance(config, Config):
            raise TypeError(f"SimTop config must be a Config, not {config!r}")
        self._config = config
        self._por = bool(power_on_reset)
        self._mem = AXIMemory(addr_width=config.axi_addr_width,
                              data_width=config.axi_data_width,
                              id_width=config.axi_id_width, mem_bytes=mem_bytes)
        self._accel = Accelerator(config)
        super().__init__({
            "s_axil": In(AXI4LiteSignature(addr_width=config.csr_addr_width, data_width=32)),
            "irq": Out(1),
            "bd_addr": In(len(self._mem.bd_addr)), "bd_we": In(1),
            "bd_wdata": In(config.axi_data_width), "bd_rdata": Out(config.axi_data_width),
            **({"clk": In(1)} if self._por else {}),
        })

    @property
    def config(self) -> Config:
        return self._config

    @property
    def mem_bytes(self) -> int:
        return self._mem.mem_bytes

    def manifest(self) -> dict:
        """The accelerator's manifest sections, plus the memory's size and beat."""
        return {**self._accel.manifest(),
                "simtop": {"mem_bytes": self._mem.mem_bytes,
                           "beat_bytes": self._config.axi_data_width // 8}}

    def elaborate(self, platform) -> Module:
        m = Module()
        if self._por:
            m.domains.por = por = ClockDomain(reset_less=True, local=True)
            m.domains.sync = sync = ClockDomain()
            count = Signal(range(self.POR_CYCLES + 1), init=self.POR_CYCLES)
            with m.If(count != 0):
                m.d.por += count.eq(count - 1)
            m.d.comb += [por.clk.eq(self.clk), sync.clk.eq(self.clk),
                         sync.rst.eq(count != 0)]
        m.submodules.accel = accel = self._accel
        m.submodules.mem = mem = self._mem
        wiring.connect(m, accel.m_axi, mem.s_axi)
        wiring.connect(m, wiring.flipped(self.s_axil), accel.s_axil)
        m.d.comb += [
            self.irq.eq(accel.irq),
            mem.bd_addr.eq(self.bd_addr), mem.bd_we.eq(self.bd_we),
            mem.bd_wdata.eq(self.bd_wdata), self.bd_rdata.eq(mem.bd_rdata),
        ]
        return m
