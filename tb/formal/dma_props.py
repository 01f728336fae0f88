"""Formal harness for the DMA's AXI4 manager port (needs Amaranth; used by the pytest
in this folder to generate an RTLIL design with embedded assertions).

Every input of :class:`intformer.hw.dma.DMA` is left free: descriptors, stream
handshakes, the window, soft reset (at any cycle, so every property holds across soft
resets) and every subordinate-side AXI signal, except that the subordinate is assumed
to answer only what was asked: an R beat only while read beats are owed, a B response
only for a burst whose address and last W beat it has taken. The assertions are what
the manager alone must guarantee whatever the other side does: AW, W and AR hold valid
and payload until accepted; every burst is a full-width INCR burst of at most
``max_burst`` beats that does not cross a 4 KB boundary; and an engine that reports
idle (``rd_busy`` / ``wr_busy`` low, which is how a soft reset ends) owes nothing on
the bus: every R beat of its read bursts taken, every W beat of its write bursts sent
(with ``wlast`` once per burst) and every B response taken. ``cover`` adds the
witnesses that a soft reset can hit a read and a write burst in flight and still end
idle within the depth, so the reset path is reached, not vacuously true.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Assume, Cat, Cover, Module, Mux, ResetSignal, Signal, signed
from amaranth.lib import wiring

__all__ = ["DMAProperties"]


class DMAProperties(wiring.Component):
    """A :class:`DMA` plus assertions on its ``m_axi`` port; ``broken=True`` adds an
    assertion that must fail (proof that the flow checks something), ``cover=True``
    the soft reset witnesses (for a ``cover`` run)."""

    def __init__(self, dma, *, broken: bool = False, cover: bool = False):
        self._dma = dma
        self._broken = broken
        self._cover = cover
        super().__init__(dict(dma.signature.members))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.dma = dma = self._dma
        for name, member in dma.signature.members.items():
            ours, theirs = getattr(self, name), getattr(dma, name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(ours), theirs)
            elif member.flow == wiring.Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        bus = dma.m_axi
        B = dma.bytes_per_beat
        lb = B.bit_length() - 1

        def hold(valid, ready, payload, what):
            pending = Signal(name=f"{what}_pending")
            held = Signal(len(payload), name=f"{what}_held")
            m.d.sync += [pending.eq(valid & ~ready), held.eq(payload)]
            with m.If(pending & ~ResetSignal()):
                m.d.comb += Assert(valid, f"{what} valid dropped before ready")
                m.d.comb += Assert(payload == held, f"{what} payload changed before ready")

        def burst(ch, addr, length, size, kind, valid):
            with m.If(valid):
                m.d.comb += [
                    Assert(length < dma.max_burst, f"{ch} burst longer than max_burst"),
                    Assert(size == lb, f"{ch} burst narrower than the bus"),
                    Assert(kind == 1, f"{ch} burst not INCR"),
                    Assert(addr[:lb] == 0 if lb else 1, f"{ch} address not aligned"),
                    Assert(addr[:12] + ((length + 1) << lb) <= 4096,
                           f"{ch} burst crosses 4 KB"),
                ]

        hold(bus.arvalid, bus.arready, Cat(bus.araddr, bus.arlen, bus.arsize, bus.arburst,
                                           bus.arid), "AR")
        hold(bus.awvalid, bus.awready, Cat(bus.awaddr, bus.awlen, bus.awsize, bus.awburst,
                                           bus.awid), "AW")
        hold(bus.wvalid, bus.wready, Cat(bus.wdata, bus.wstrb, bus.wlast), "W")
        burst("AR", bus.araddr, bus.arlen, bus.arsize, bus.arburst, bus.arvalid)
        burst("AW", bus.awaddr, bus.awlen, bus.awsize, bus.awburst, bus.awvalid)
        self._accounting(m, dma, bus)
        if self._broken:
            m.d.comb += Assert(~bus.arvalid, "deliberately false: AR never valid")
        return m

    def _accounting(self, m, dma, bus) -> None:
        """What each direction owes the bus; nothing once it reports idle."""
        r_owed = Signal(8)      # read beats asked for and not yet taken
        w_owed = Signal(signed(9))   # W beats of accepted AWs not yet sent (< 0: W first)
        w_bursts = Signal(signed(6))  # AWs accepted minus W bursts ended by wlast
        b_owed = Signal(6)      # AWs accepted minus B responses taken
        b_ready = Signal(6)     # W bursts ended minus B responses taken
        ar, r = bus.arvalid & bus.arready, bus.rvalid & bus.rready
        aw, w, b = bus.awvalid & bus.awready, bus.wvalid & bus.wready, bus.bvalid & bus.bready
        m.d.sync += [
            r_owed.eq(r_owed + Mux(ar, bus.arlen + 1, 0) - r),
            w_owed.eq(w_owed + Mux(aw, bus.awlen + 1, 0) - w),
            w_bursts.eq(w_bursts + aw - (w & bus.wlast)),
            b_owed.eq(b_owed + aw - b),
            b_ready.eq(b_ready + (w & bus.wlast) - b),
        ]
        live = ~ResetSignal()
        with m.If(live):
            m.d.comb += [
                Assume(~bus.rvalid | (r_owed != 0)),
                Assume(~bus.bvalid | ((b_owed != 0) & (b_ready != 0))),
            ]
            with m.If(~dma.rd_busy):
                m.d.comb += Assert(r_owed == 0, "reader idle with read beats owed")
            with m.If(~dma.wr_busy):
                m.d.comb += [Assert(w_owed == 0, "writer idle with W beats owed"),
                             Assert(w_bursts == 0, "writer idle with a W burst unended"),
                             Assert(b_owed == 0, "writer idle with B responses owed")]
        if self._cover:
            # A soft reset while a burst is owed, then idle with nothing owed.
            for what, owed, busy in (("read", r_owed != 0, dma.rd_busy),
                                     ("write", (b_owed != 0) & (w_owed != 0), dma.wr_busy)):
                hit = Signal(name=f"reset_in_{what}")
                with m.If(dma.soft_reset & owed & live):
                    m.d.sync += hit.eq(1)
                m.d.comb += Cover(hit & ~busy & live, f"soft reset during a {what} burst "
                                                      f"ends idle")
