"""The board link's hardware: UART, host bridge and the single-port AXI RAM together.

The testbench is the host at bit level (:class:`tb.link.uart.UartModel`) and, at
the same time, a DMA: a cocotbext-axi ``AxiMaster`` running random bursts on the
RAM's AXI4 port (with pauses and backpressure) in a region of its own, while frames
write and read the rest through the bridge. The bridge's register port is a
cocotbext-axi ``AxiLiteRam``. Frames are random (addresses, lengths 0 to 100,
payloads); every error status is provoked (a corrupted checksum, an unknown command,
an address past the memory, a frame cut short) and the next frame must work. The
CRC is :func:`intformer.sw.link.crc16`, the constants the manifest's ``link``
section.
"""

import struct

import cocotb
import pytest
from cocotb.triggers import ClockCycles
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteRam, AxiMaster

from intformer.gen.sim.drivers import PAUSE_PATTERNS, pause_generator, reset, rng, start_clock
from intformer.gen.sim.payload import load_ports
from intformer.sw.link import crc16
from tb.axi.memory import bind_ports
from tb.link.uart import UartModel

DMA_BASE_FRACTION = 2        # the DMA's region: the upper half of the memory


class TB:
    def __init__(self, dut):
        self.dut = dut
        info = load_ports()
        self.p = info["params"]
        self.link = self.p["link"]
        self.r = rng()
        bind_ports(dut, info["ports"])
        start_clock(dut.clk)
        dut.rst.value = 1
        for name in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
            getattr(dut, f"s_axi_{name}").value = 0
        self.uart = UartModel(dut.clk, dut.uart_rx, dut.uart_tx, divisor=self.p["divisor"])
        self.regs = AxiLiteRam(AxiLiteBus.from_prefix(dut, "m_axil"), dut.clk, dut.rst,
                               size=1 << self.p["csr_addr_width"])
        self.dma = AxiMaster(AxiBus.from_prefix(dut, "s_axi"), dut.clk, dut.rst)
        self.mem = bytearray(self.p["mem_bytes"])

    def set_idle_generator(self, name):
        for ch in (self.dma.write_if.aw_channel, self.dma.write_if.w_channel,
                   self.dma.read_if.ar_channel, self.regs.write_if.b_channel,
                   self.regs.read_if.r_channel):
            ch.set_pause_generator(pause_generator(name, self.r))

    def set_backpressure_generator(self, name):
        for ch in (self.dma.write_if.b_channel, self.dma.read_if.r_channel,
                   self.regs.write_if.aw_channel, self.regs.write_if.w_channel,
                   self.regs.read_if.ar_channel):
            ch.set_pause_generator(pause_generator(name, self.r))

    def frame(self, command, addr, length=0, payload=b""):
        body = struct.pack("<BIH", command, addr, length) + payload
        crc = crc16(body, poly=self.link["crc"]["poly"], init=self.link["crc"]["init"])
        return bytes([self.link["sync_request"]]) + body + struct.pack("<H", crc)

    async def answer(self, payload_len):
        """(status name, payload) of the next response, its CRC checked."""
        sync = await self.uart.recv(1)
        assert sync[0] == self.link["sync_response"], f"response sync {sync[0]:#x}"
        status = await self.uart.recv(1)
        ok = status[0] == self.link["status"]["ok"]
        payload = await self.uart.recv(payload_len) if ok else b""
        (crc,) = struct.unpack("<H", await self.uart.recv(2))
        assert crc == crc16(status + payload, poly=self.link["crc"]["poly"],
                            init=self.link["crc"]["init"]), "bad response CRC"
        names = {v: k for k, v in self.link["status"].items()}
        return names[status[0]], payload

    async def request(self, name, addr, length=0, payload=b"", answer=0, raw=None):
        cmd = self.link["commands"][name]
        self.uart.send(raw if raw is not None else self.frame(cmd, addr, length, payload))
        return await self.answer(answer)


async def dma_traffic(tb, stop):
    """Random bursts in the DMA's region, checked against the model."""
    lo = tb.p["mem_bytes"] // DMA_BASE_FRACTION
    beat = tb.p["beat"]
    while not stop:
        n = tb.r.randint(1, 8) * beat
        addr = lo + tb.r.randrange(0, tb.p["mem_bytes"] - lo - n + 1, beat)
        if tb.r.random() < 0.5:
            data = bytes(tb.r.getrandbits(8) for _ in range(n))
            await tb.dma.write(addr, data)
            tb.mem[addr:addr + n] = data
        else:
            got = await tb.dma.read(addr, n)
            assert got.data == tb.mem[addr:addr + n], f"DMA read at {addr:#x}"


async def random_frames(tb, count):
    host_top = tb.p["mem_bytes"] // DMA_BASE_FRACTION
    for _ in range(count):
        kind = tb.r.choice(("reg_write", "reg_read", "mem_write", "mem_read", "mem_write"))
        if kind == "reg_write":
            off = tb.r.randrange(0, 1 << tb.p["csr_addr_width"], 4)
            value = tb.r.choice((0, 0xFFFFFFFF, tb.r.getrandbits(32)))
            assert (await tb.request(kind, off, payload=struct.pack("<I", value)))[0] == "ok"
            assert tb.regs.read_dword(off) == value
        elif kind == "reg_read":
            off = tb.r.randrange(0, 1 << tb.p["csr_addr_width"], 4)
            status, data = await tb.request(kind, off, answer=4)
            assert status == "ok" and struct.unpack("<I", data)[0] == tb.regs.read_dword(off)
        else:
            n = tb.r.choice((0, 1, 2, tb.r.randint(3, tb.p["max_len"])))
            addr = tb.r.randrange(0, host_top - n + 1)
            if kind == "mem_write":
                data = bytes(tb.r.getrandbits(8) for _ in range(n))
                assert (await tb.request(kind, addr, n, data))[0] == "ok"
                tb.mem[addr:addr + n] = data
            else:
                status, data = await tb.request(kind, addr, n, answer=n)
                assert status == "ok" and data == tb.mem[addr:addr + n], f"read at {addr:#x}"


async def error_frames(tb):
    link = tb.link
    # A corrupted checksum: the register is not written.
    before = tb.regs.read_dword(8)
    bad = bytearray(tb.frame(link["commands"]["reg_write"], 8, 0, b"\x11\x22\x33\x44"))
    bad[-1] ^= 0x01
    assert (await tb.request("reg_write", 8, raw=bytes(bad)))[0] == "bad_crc"
    assert tb.regs.read_dword(8) == before
    # An unknown command.
    assert (await tb.request("reg_read", 0, raw=tb.frame(0x77, 0)))[0] == "bad_command"
    # Past the end of the memory: nothing written.
    end = tb.p["mem_bytes"]
    status, _ = await tb.request("mem_write", end - 2, 4, b"\xde\xad\xbe\xef")
    assert status == "bad_address"
    assert (await tb.request("mem_read", end - 1, 2, answer=2))[0] == "bad_address"
    assert (await tb.request("mem_read", end - 2, 2, answer=2)) == ("ok", bytes(tb.mem[-2:]))
    # A frame cut short (a byte lost): answered TIMEOUT, then the next one works.
    cut = tb.frame(link["commands"]["mem_write"], 16, 4, b"\x01\x02\x03\x04")
    assert (await tb.request("mem_write", 0, raw=cut[:-3]))[0] == "timeout"
    tb.mem[16:19] = b"\x01\x02\x03"        # memory bytes are written as they arrive
    assert (await tb.request("mem_read", 16, 4, answer=4)) == ("ok", bytes(tb.mem[16:20]))
    # Stray bytes between frames are skipped.
    tb.uart.send(b"\x00\xff\x13")
    assert (await tb.request("mem_read", 16, 4, answer=4)) == ("ok", bytes(tb.mem[16:20]))
    # Status: no interrupt, cycles counting since the last register write.
    status, data = await tb.request("status", 0, answer=5)
    flags, cycles = struct.unpack("<BI", data)
    assert status == "ok" and flags == 0 and cycles > 0
    tb.dut.irq.value = 1
    await ClockCycles(tb.dut.clk, 3)
    flags, frozen = struct.unpack("<BI", (await tb.request("status", 0, answer=5))[1])
    await ClockCycles(tb.dut.clk, 50)
    assert flags & link["status_flags"]["irq"]
    assert struct.unpack("<BI", (await tb.request("status", 0, answer=5))[1])[1] == frozen
    tb.dut.irq.value = 0


@cocotb.test()
async def run_link(dut):
    tb = TB(dut)
    dut.irq.value = 0
    dut.busy.value = 0
    await reset(dut)
    await ClockCycles(dut.clk, 5)
    # The whole memory zeroed through the AXI port, as the model starts.
    await tb.dma.write(0, bytes(tb.p["mem_bytes"]))
    for idle, back in zip(PAUSE_PATTERNS, reversed(PAUSE_PATTERNS), strict=True):
        tb.set_idle_generator(idle)
        tb.set_backpressure_generator(back)
        stop = []
        task = cocotb.start_soon(dma_traffic(tb, stop))
        await random_frames(tb, tb.p["frames"])
        stop.append(1)
        await task
    await error_frames(tb)
    await random_frames(tb, 4)
    assert not tb.uart.received, "bytes left over after the last answer"


def build(sim, *, divisor, beat_bits, mem_bytes, frames, spram=False):
    from amaranth.hdl import Module
    from amaranth.lib import wiring
    from amaranth.lib.wiring import In, Out

    from intformer.gen.sim import harness
    from intformer.hw.axi import AXI4LiteSignature, AXI4Signature, FlatPorts
    from intformer.hw.axiram import AXIRam
    from intformer.hw.hostlink import HostBridge
    from intformer.hw.uart import UARTRx, UARTTx

    csr_addr_width = 8

    class LinkHarness(wiring.Component):
        def __init__(self):
            self.ram = AXIRam(addr_width=20, data_width=beat_bits, id_width=2,
                              mem_bytes=mem_bytes, spram=spram)
            self.bridge = HostBridge(csr_addr_width=csr_addr_width, mem_bytes=mem_bytes,
                                     timeout=40 * divisor)
            super().__init__({
                "uart_rx": In(1, init=1), "uart_tx": Out(1), "irq": In(1), "busy": In(1),
                "s_axi": In(AXI4Signature(addr_width=20, data_width=beat_bits, id_width=2)),
                "m_axil": Out(AXI4LiteSignature(addr_width=csr_addr_width)),
            })

        def elaborate(self, platform):
            m = Module()
            m.submodules.ram = ram = self.ram
            m.submodules.bridge = br = self.bridge
            m.submodules.rx = rx = UARTRx(divisor=divisor)
            m.submodules.tx = tx = UARTTx(divisor=divisor)
            wiring.connect(m, wiring.flipped(self.s_axi), ram.s_axi)
            wiring.connect(m, br.m_axil, wiring.flipped(self.m_axil))
            wiring.connect(m, rx.data, br.rx)
            wiring.connect(m, br.tx, tx.data)
            m.d.comb += [
                rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
                ram.host_addr.eq(br.mem_addr), ram.host_req.eq(br.mem_req),
                ram.host_we.eq(br.mem_we), ram.host_wdata.eq(br.mem_wdata),
                br.mem_ack.eq(ram.host_ack), br.mem_rdata.eq(ram.host_rdata),
                br.irq.eq(self.irq), br.busy.eq(self.busy),
            ]
            return m

    top = LinkHarness()
    path = harness.build_dir(f"link_d{divisor}_b{beat_bits}{'_spram' if spram else ''}_{sim}")
    params = {"link": top.bridge.manifest(), "divisor": divisor, "mem_bytes": mem_bytes,
              "beat": beat_bits // 8, "csr_addr_width": csr_addr_width, "frames": frames,
              "max_len": 100}
    source = harness.emit(FlatPorts(top, flatten=("s_axi", "m_axil")), path, params=params)
    if sim == "icarus":
        from tb.top.icarus import kick_comb_blocks
        kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.link.test_link",
                path=path)


# The smallest divisor on a 32-bit RAM, and an odd one on a 128-bit RAM (Arty's bus).
@pytest.mark.parametrize("divisor,beat_bits", [
    (4, 32), pytest.param(7, 128, marks=pytest.mark.icarus_only)])
def test_link(sim, divisor, beat_bits):
    build(sim, divisor=divisor, beat_bits=beat_bits, mem_bytes=4096, frames=6)


# The iCEBreaker's memory: 128 KiB in a 2 x 2 grid of SB_SPRAM256KA (the Yosys cell
# model), so frames reach both rows and every byte lane of both columns.
@pytest.mark.icarus_only
def test_link_spram(sim):
    build(sim, divisor=4, beat_bits=32, mem_bytes=128 * 1024, frames=6, spram=True)


def test_link_errors():
    from intformer.hw.axiram import AXIRam
    from intformer.hw.hostlink import HostBridge
    from intformer.hw.uart import UARTRx

    with pytest.raises(ValueError, match="divisor must be at least 4 clock cycles per bit, "
                                         "not 3"):
        UARTRx(divisor=3)
    with pytest.raises(TypeError, match="UARTRx divisor must be an integer, not 4.0"):
        UARTRx(divisor=4.0)
    with pytest.raises(ValueError, match="HostBridge timeout must be at least 16 cycles, not 8"):
        HostBridge(csr_addr_width=8, mem_bytes=1024, timeout=8)
    with pytest.raises(ValueError, match="HostBridge mem_bytes must be a power of two, not 1000"):
        HostBridge(csr_addr_width=8, mem_bytes=1000, timeout=100)
    with pytest.raises(ValueError, match="AXIRam mem_bytes must be a power of two of at least "
                                         "two beats"):
        AXIRam(addr_width=16, data_width=64, id_width=1, mem_bytes=12)
    with pytest.raises(ValueError, match="AXIRam mem_bytes 131072 exceeds the 16-bit"):
        AXIRam(addr_width=16, data_width=64, id_width=1, mem_bytes=1 << 17)
