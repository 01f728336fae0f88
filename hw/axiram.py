"""A board's memory: an AXI4 subordinate in on-chip RAM, with a byte port for the host.

The RAM is single-ported (one address for its read and its write port), which every
FPGA family's block RAM takes, and which Yosys maps to the iCE40UP5K's SPRAM
(``synth_ice40 -spram``), ECP5 DP16KD and Xilinx RAMB36. Two clients share it:

* the AXI4 subordinate port (the accelerator's DMA), one burst at a time, reads and
  writes taken in turn;
* a byte-wide host port (:class:`~intformer.hw.hostlink.HostBridge`), served between
  bursts, ahead of the next one.
"""

from __future__ import annotations

from amaranth.hdl import Const, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, AXIResp

__all__ = ["AXIRam"]


class AXIRam(wiring.Component):
    """An AXI4 subordinate memory in a single-port RAM, plus a byte port.

    AXI: INCR bursts of full-width beats (what the accelerator's DMA issues; FIXED
    and WRAP are served as INCR), byte strobes, addresses wrapping at ``mem_bytes``.
    One burst is served at a time: a read burst's first beat is valid two cycles
    after its ``AR`` handshake, then one beat per cycle while ``rready`` is high; a
    write burst takes its beats one per cycle, then answers on ``B``. Between
    bursts, a pending host access goes first, then reads and writes alternate, so
    neither starves.

    Host port: hold ``host_req`` with ``host_addr`` (a byte address), ``host_we``
    and ``host_wdata`` until ``host_ack``; a read's byte is on ``host_rdata`` in the
    cycle after the ack. The host waits at most for the burst in progress.

    Parameters
    ----------
    addr_width, data_width, id_width : int
        As :class:`~intformer.hw.axi.AXI4Signature`.
    mem_bytes : int
        Size; a power of two of at least two beats, within the address space.

    Members
    -------
    s_axi : In(AXI4Signature)
    host_addr : In(log2(mem_bytes))
    host_req, host_we : In(1)
    host_wdata : In(8)
    host_ack : Out(1)
    host_rdata : Out(8)

    Raises
    ------
    TypeError
        If ``mem_bytes`` is not an integer.
    ValueError
        If ``mem_bytes`` is not a power of two of at least two beats, or exceeds the
        address space.
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int, mem_bytes: int):
        sig = AXI4Signature(addr_width=addr_width, data_width=data_width, id_width=id_width)
        if isinstance(mem_bytes, bool) or not isinstance(mem_bytes, int):
            raise TypeError(f"AXIRam mem_bytes must be an integer, not {mem_bytes!r}")
        beat = data_width // 8
        if mem_bytes < 2 * beat or mem_bytes & (mem_bytes - 1):
            raise ValueError(f"AXIRam mem_bytes must be a power of two of at least two "
                             f"beats ({2 * beat} bytes), not {mem_bytes}")
        if mem_bytes > 1 << addr_width:
            raise ValueError(f"AXIRam mem_bytes {mem_bytes} exceeds the {addr_width}-bit "
                             f"address space")
        self._beat = beat
        self._mem_bytes = mem_bytes
        super().__init__({
            "s_axi": In(sig),
            "host_addr": In((mem_bytes - 1).bit_length()), "host_req": In(1),
            "host_we": In(1), "host_wdata": In(8),
            "host_ack": Out(1), "host_rdata": Out(8),
        })

    @property
    def mem_bytes(self) -> int:
        return self._mem_bytes

    @property
    def depth(self) -> int:
        """Beats held."""
        return self._mem_bytes // self._beat

    def elaborate(self, platform) -> Module:
        m = Module()
        bus = self.s_axi
        beat = self._beat
        shift = (beat - 1).bit_length()
        iw = (self.depth - 1).bit_length()
        m.submodules.mem = mem = memory.Memory(shape=8 * beat, depth=self.depth, init=[])
        wr = mem.write_port(granularity=8)
        rd = mem.read_port()
        addr = Signal(iw)
        m.d.comb += [wr.addr.eq(addr), rd.addr.eq(addr)]

        # The host's byte lane, registered for the cycle its read data comes back.
        lane = Signal(range(beat))
        m.d.comb += self.host_rdata.eq(rd.data.word_select(lane, 8))

        rd_rem = Signal(9)
        rd_addr = Signal(iw)
        wr_addr = Signal(iw)
        rid = Signal.like(bus.rid)
        bid = Signal.like(bus.bid)
        rvalid = Signal()
        rlast = Signal()
        bvalid = Signal()
        read_next = Signal()     # a read burst goes first if both are waiting
        m.d.comb += [bus.rvalid.eq(rvalid), bus.rlast.eq(rlast), bus.rid.eq(rid),
                     bus.rdata.eq(rd.data), bus.rresp.eq(AXIResp.OKAY),
                     bus.bvalid.eq(bvalid), bus.bid.eq(bid), bus.bresp.eq(AXIResp.OKAY)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.host_req):
                    m.d.comb += [self.host_ack.eq(1), addr.eq(self.host_addr >> shift),
                                 wr.data.eq(self.host_wdata.replicate(beat)),
                                 rd.en.eq(~self.host_we)]
                    with m.If(self.host_we):
                        m.d.comb += wr.en.eq(Const(1, beat) << self.host_addr[:shift])
                    m.d.sync += lane.eq(self.host_addr[:shift])
                with m.Elif(bus.arvalid & (read_next | ~bus.awvalid)):
                    m.d.comb += bus.arready.eq(1)
                    m.d.sync += [rd_addr.eq((bus.araddr >> shift)[:iw]), rid.eq(bus.arid),
                                 rd_rem.eq(bus.arlen + 1), read_next.eq(0)]
                    m.next = "READ"
                with m.Elif(bus.awvalid):
                    m.d.comb += bus.awready.eq(1)
                    m.d.sync += [wr_addr.eq((bus.awaddr >> shift)[:iw]), bid.eq(bus.awid),
                                 read_next.eq(1)]
                    m.next = "WRITE"
            with m.State("READ"):
                advance = Signal()
                m.d.comb += [advance.eq((rd_rem != 0) & (~rvalid | bus.rready)),
                             addr.eq(rd_addr), rd.en.eq(advance)]
                with m.If(advance):
                    m.d.sync += [rvalid.eq(1), rlast.eq(rd_rem == 1), rd_addr.eq(rd_addr + 1),
                                 rd_rem.eq(rd_rem - 1)]
                with m.Elif(bus.rready):
                    m.d.sync += rvalid.eq(0)
                    with m.If(rlast & rvalid):
                        m.next = "IDLE"
            with m.State("WRITE"):
                m.d.comb += [bus.wready.eq(1), addr.eq(wr_addr), wr.data.eq(bus.wdata)]
                with m.If(bus.wvalid):
                    m.d.comb += wr.en.eq(bus.wstrb)
                    m.d.sync += wr_addr.eq(wr_addr + 1)
                    with m.If(bus.wlast):
                        m.d.sync += bvalid.eq(1)
                        m.next = "RESP"
            with m.State("RESP"):
                with m.If(bus.bready):
                    m.d.sync += bvalid.eq(0)
                    m.next = "IDLE"
        return m
