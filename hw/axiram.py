"""A board's memory: an AXI4 subordinate in on-chip RAM, with a byte port for the host.

The RAM is single-ported (one address for its read and its write port), which every
FPGA family's block RAM takes: Yosys maps the inferred memory to ECP5 DP16KD and Xilinx
RAMB36. On the iCE40UP5K it maps it to EBR, not SPRAM (Yosys 0.70 ``synth_ice40
-spram`` leaves a byte-enabled 32K x 32 memory in 256 SB_RAM40_4K, 8 times the
device's 30), so ``spram=True`` builds it from ``SB_SPRAM256KA`` instances instead.
Two clients share it:

* the AXI4 subordinate port (the accelerator's DMA), one burst at a time, reads and
  writes taken in turn;
* a byte-wide host port (:class:`~intformer.hw.hostlink.HostBridge`), served between
  bursts, ahead of the next one.
"""

from __future__ import annotations

from amaranth.hdl import Array, Cat, ClockSignal, Const, Instance, Module, Signal
from amaranth.lib import memory, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, AXIResp

__all__ = ["AXIRam", "SPRAM_WORDS", "SPRAM_BITS"]

#: Words and bits of one iCE40UP5K SB_SPRAM256KA.
SPRAM_WORDS = 16384
SPRAM_BITS = 16


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
    spram : bool
        Build the RAM from iCE40UP5K ``SB_SPRAM256KA`` blocks (16K x 16 each, tiled
        ``data_width / 16`` wide and as deep as needed) rather than an inferred
        memory. The blocks are Yosys cells: such a RAM synthesizes for the UP5K only
        and does not simulate in Amaranth.

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

    def __init__(self, *, addr_width: int, data_width: int, id_width: int, mem_bytes: int,
                 spram: bool = False):
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
        # Every AXI4 data width (32 bits up) is whole SPRAM columns.
        assert data_width % SPRAM_BITS == 0
        self._beat = beat
        self._mem_bytes = mem_bytes
        self._spram = bool(spram)
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

    @property
    def spram(self) -> bool:
        return self._spram

    @property
    def spram_blocks(self) -> int:
        """SB_SPRAM256KA blocks used (0 unless ``spram``)."""
        if not self._spram:
            return 0
        return -(-self.depth // SPRAM_WORDS) * (8 * self._beat // SPRAM_BITS)

    def _spram_port(self, m: Module, addr, ren, wen, wdata, rdata) -> None:
        """The RAM as a grid of SB_SPRAM256KA: columns of 16 bits (a nibble write mask
        per byte strobe), rows of 16K words picked by the top address bits. A block
        that is not selected keeps its output, as the inferred read port would."""
        cols = 8 * self._beat // SPRAM_BITS
        rows = -(-self.depth // SPRAM_WORDS)
        low = min(14, len(addr))
        row = addr[14:] if len(addr) > 14 else Const(0, 1)
        row_q = Signal.like(row)
        with m.If(ren):
            m.d.sync += row_q.eq(row)
        outs = []
        for r in range(rows):
            sel = row == r
            word = []
            for c in range(cols):
                dout = Signal(SPRAM_BITS, name=f"spram_r{r}c{c}_dout")
                mask = Cat(wen[2 * c].replicate(2), wen[2 * c + 1].replicate(2))
                m.submodules[f"spram_r{r}c{c}"] = Instance(
                    "SB_SPRAM256KA",
                    i_ADDRESS=addr[:low], i_DATAIN=wdata[16 * c:16 * (c + 1)],
                    i_MASKWREN=mask, i_WREN=sel & wen.any(),
                    i_CHIPSELECT=sel & (ren | wen.any()), i_CLOCK=ClockSignal(),
                    i_STANDBY=0, i_SLEEP=0, i_POWEROFF=1, o_DATAOUT=dout)
                word.append(dout)
            outs.append(Cat(*word))
        m.d.comb += rdata.eq(Array(outs)[row_q] if rows > 1 else outs[0])

    def elaborate(self, platform) -> Module:
        m = Module()
        bus = self.s_axi
        beat = self._beat
        shift = (beat - 1).bit_length()
        iw = (self.depth - 1).bit_length()
        addr = Signal(iw)
        wdata, wen = Signal(8 * beat), Signal(beat)
        rdata, ren = Signal(8 * beat), Signal()
        if self._spram:
            self._spram_port(m, addr, ren, wen, wdata, rdata)
        else:
            m.submodules.mem = mem = memory.Memory(shape=8 * beat, depth=self.depth, init=[])
            wp = mem.write_port(granularity=8)
            rp = mem.read_port()
            m.d.comb += [wp.addr.eq(addr), rp.addr.eq(addr), wp.data.eq(wdata),
                         wp.en.eq(wen), rp.en.eq(ren), rdata.eq(rp.data)]

        # The host's byte lane, registered for the cycle its read data comes back.
        lane = Signal(range(beat))
        m.d.comb += self.host_rdata.eq(rdata.word_select(lane, 8))

        rd_rem = Signal(9)
        ptr = Signal(iw)         # the beat of the burst in progress, read or write
        rid = Signal.like(bus.rid)
        bid = Signal.like(bus.bid)
        rvalid = Signal()
        rlast = Signal()
        bvalid = Signal()
        read_next = Signal()     # a read burst goes first if both are waiting
        m.d.comb += [bus.rvalid.eq(rvalid), bus.rlast.eq(rlast), bus.rid.eq(rid),
                     bus.rdata.eq(rdata), bus.rresp.eq(AXIResp.OKAY),
                     bus.bvalid.eq(bvalid), bus.bid.eq(bid), bus.bresp.eq(AXIResp.OKAY)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.host_req):
                    m.d.comb += [self.host_ack.eq(1), addr.eq(self.host_addr >> shift),
                                 wdata.eq(self.host_wdata.replicate(beat)),
                                 ren.eq(~self.host_we)]
                    with m.If(self.host_we):
                        m.d.comb += wen.eq(Const(1, beat) << self.host_addr[:shift])
                    m.d.sync += lane.eq(self.host_addr[:shift])
                with m.Elif(bus.arvalid & (read_next | ~bus.awvalid)):
                    m.d.comb += bus.arready.eq(1)
                    m.d.sync += [ptr.eq((bus.araddr >> shift)[:iw]), rid.eq(bus.arid),
                                 rd_rem.eq(bus.arlen + 1), read_next.eq(0)]
                    m.next = "READ"
                with m.Elif(bus.awvalid):
                    m.d.comb += bus.awready.eq(1)
                    m.d.sync += [ptr.eq((bus.awaddr >> shift)[:iw]), bid.eq(bus.awid),
                                 read_next.eq(1)]
                    m.next = "WRITE"
            with m.State("READ"):
                advance = Signal()
                m.d.comb += [advance.eq((rd_rem != 0) & (~rvalid | bus.rready)),
                             addr.eq(ptr), ren.eq(advance)]
                with m.If(advance):
                    m.d.sync += [rvalid.eq(1), rlast.eq(rd_rem == 1), ptr.eq(ptr + 1),
                                 rd_rem.eq(rd_rem - 1)]
                with m.Elif(bus.rready):
                    m.d.sync += rvalid.eq(0)
                    with m.If(rlast & rvalid):
                        m.next = "IDLE"
            with m.State("WRITE"):
                m.d.comb += [bus.wready.eq(1), addr.eq(ptr), wdata.eq(bus.wdata)]
                with m.If(bus.wvalid):
                    m.d.comb += wen.eq(bus.wstrb)
                    m.d.sync += ptr.eq(ptr + 1)
                    with m.If(bus.wlast):
                        m.d.sync += bvalid.eq(1)
                        m.next = "RESP"
            with m.State("RESP"):
                with m.If(bus.bready):
                    m.d.sync += bvalid.eq(0)
                    m.next = "IDLE"
        return m
