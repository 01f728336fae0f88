"""The host side of the board link (:mod:`intformer.sw.link`): its CRC against the
published check value of CRC-16/CCITT-FALSE and against the hardware's CRC step, and
the bus's argument errors."""

import pytest

from intformer.sw.link import SerialBus, crc16


def test_crc_check_value():
    from intformer.hw.hostlink import PROTOCOL
    crc = PROTOCOL["crc"]
    # The catalogue's check value: CRC of the ASCII digits 1 to 9.
    assert crc16(b"123456789", poly=crc["poly"], init=crc["init"]) == 0x29B1


def test_crc_matches_hardware():
    import random

    from amaranth.hdl import Module, Signal
    from amaranth.sim import Simulator

    from intformer.hw.hostlink import PROTOCOL, crc16_next
    c, b, o = Signal(16), Signal(8), Signal(16)
    m = Module()
    m.d.comb += o.eq(crc16_next(c, b))
    r = random.Random(1)
    poly = PROTOCOL["crc"]["poly"]

    async def bench(ctx):
        for _ in range(200):
            x, y = r.getrandbits(16), r.getrandbits(8)
            ctx.set(c, x)
            ctx.set(b, y)
            assert ctx.get(o) == crc16(bytes([y]), poly=poly, init=x)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()


def test_bus_errors():
    with pytest.raises(ValueError, match="Manifest has no 'link' section"):
        SerialBus({}, None)
    from intformer.hw.hostlink import PROTOCOL
    with pytest.raises(ValueError, match="SerialBus chunk must be between 1 and 65535 bytes, "
                                         "not 0"):
        SerialBus({"link": PROTOCOL}, None, chunk=0)
