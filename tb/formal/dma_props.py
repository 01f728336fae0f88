"""Formal harness for the DMA's AXI4 manager port (needs Amaranth; used by the pytest
in this folder to generate an RTLIL design with embedded assertions).

Every input of :class:`intformer.hw.dma.DMA` is left free: descriptors, stream
handshakes, the window, soft reset and every subordinate-side AXI signal. The
assertions are what the manager alone must guarantee whatever the other side does:
AW, W and AR hold valid and payload until accepted, and every burst is a full-width
INCR burst of at most ``max_burst`` beats that does not cross a 4 KB boundary.
"""

from __future__ import annotations

from amaranth.hdl import Assert, Cat, Module, ResetSignal, Signal
from amaranth.lib import wiring

__all__ = ["DMAProperties"]


class DMAProperties(wiring.Component):
    """A :class:`DMA` plus assertions on its ``m_axi`` port; ``broken=True`` adds an
    assertion that must fail (proof that the flow checks something)."""

    def __init__(self, dma, *, broken: bool = False):
        self._dma = dma
        self._broken = broken
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
        if self._broken:
            m.d.comb += Assert(~bus.arvalid, "deliberately false: AR never valid")
        return m
