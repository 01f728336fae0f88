"""AXI4-Lite register bank against cocotbext-axi AxiLiteMaster: every access kind
(rw, ro, w1p, w1c) with byte strobes, unmapped addresses, concurrent reads and
writes, pauses on every channel, and the interrupt output; the expected behaviour
comes from the register description in the manifest (ports.json params)."""

import cocotb
import pytest
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiLiteBus, AxiLiteMaster, AxiResp

from intformer.gen.sim.drivers import PAUSE_PATTERNS, pause_generator, reset, rng, start_clock
from intformer.gen.sim.payload import load_ports
from tb.axi.memory import bind_ports


class TB:
    def __init__(self, dut):
        self.dut = dut
        info = load_ports()
        self.regs = info["params"]["registers"]
        self.addr_width = info["params"]["addr_width"]
        self.r = rng()
        bind_ports(dut, info["ports"])
        dut.rst.value = 1
        start_clock(dut.clk)
        self.master = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
        for name in ("awvalid", "wvalid", "arvalid", "bready", "rready"):
            getattr(dut, f"s_axil_{name}").value = 0
        # Model: register -> field -> value (rw and w1c), ro inputs the TB drives.
        self.model = {name: {f: spec["reset"] for f, spec in reg["fields"].items()}
                      for name, reg in self.regs.items()}
        self.pulses = {}
        for name, reg in self.regs.items():
            for f, spec in reg["fields"].items():
                port = getattr(dut, f"{name}__{f}")
                if spec["access"] == "ro":
                    port.value = 0
                if spec["access"] == "w1c":
                    getattr(dut, f"{name}__{f}_set").value = 0
                if spec["access"] == "w1p":
                    self.pulses[(name, f)] = []
                    cocotb.start_soon(self._watch(port, self.pulses[(name, f)]))

    async def _watch(self, port, seen):
        while True:
            await RisingEdge(self.dut.clk)
            value = int(port.value)
            if value:
                seen.append(value)

    async def reset(self):
        await reset(self.dut)

    def set_idle_generator(self, name):
        for ch in (self.master.write_if.aw_channel, self.master.write_if.w_channel,
                   self.master.read_if.ar_channel):
            ch.set_pause_generator(pause_generator(name, self.r))

    def set_backpressure_generator(self, name):
        for ch in (self.master.write_if.b_channel, self.master.read_if.r_channel):
            ch.set_pause_generator(pause_generator(name, self.r))

    def expected_word(self, name):
        reg = self.regs[name]
        word = 0
        for f, spec in reg["fields"].items():
            if spec["access"] == "w1p":
                continue
            word |= (self.model[name][f] & ((1 << spec["width"]) - 1)) << spec["bit"]
        return word

    def apply_write(self, name, data, strobe):
        mask = 0
        for i in range(4):
            if strobe >> i & 1:
                mask |= 0xff << (8 * i)
        bits = data & mask
        expect_pulses = []
        for f, spec in self.regs[name]["fields"].items():
            fmask = (1 << spec["width"]) - 1
            fbits = bits >> spec["bit"] & fmask
            fm = mask >> spec["bit"] & fmask
            if spec["access"] == "rw":
                self.model[name][f] = (self.model[name][f] & ~fm) | fbits
            elif spec["access"] == "w1c":
                self.model[name][f] &= ~fbits
            elif spec["access"] == "w1p" and fbits:
                expect_pulses.append((f, fbits))
        return expect_pulses

    async def write(self, address, data, strobe):
        """A write of the strobed bytes (contiguous, as AxiLiteMaster issues them)."""
        lanes = [i for i in range(4) if strobe >> i & 1]
        payload = (data >> (8 * lanes[0])).to_bytes(4, "little")[:len(lanes)]
        resp = await self.master.write(address + lanes[0], payload)
        assert resp.resp == AxiResp.OKAY, f"write to {address:#x} answered {resp.resp}"

    async def read(self, address):
        resp = await self.master.read(address, 4)
        assert resp.resp == AxiResp.OKAY, f"read of {address:#x} answered {resp.resp}"
        return int.from_bytes(resp.data, "little")

    def check_ports(self):
        enabled = 0
        for name, reg in self.regs.items():
            for f, spec in reg["fields"].items():
                if spec["access"] in ("rw", "w1c"):
                    got = int(getattr(self.dut, f"{name}__{f}").value)
                    assert got == self.model[name][f], \
                        f"port {name}.{f} is {got:#x}, model {self.model[name][f]:#x}"
        status, enable = self.model.get("irq_status"), self.model.get("irq_enable")
        if status is not None and enable is not None:
            enabled = any(status[f] & enable[f] for f in status)
            assert int(self.dut.irq.value) == enabled, f"irq is {self.dut.irq.value}"


async def random_ops(tb, count):
    r, dut = tb.r, tb.dut
    names = list(tb.regs)
    size = 4 * len(names)
    for _ in range(count):
        choice = r.random()
        if choice < 0.15:
            # Hardware events: new read-only values and w1c sets.
            for name, reg in tb.regs.items():
                for f, spec in reg["fields"].items():
                    if spec["access"] == "ro":
                        value = r.getrandbits(spec["width"])
                        getattr(dut, f"{name}__{f}").value = value
                        tb.model[name][f] = value
            sets = []
            for name, reg in tb.regs.items():
                for f, spec in reg["fields"].items():
                    if spec["access"] == "w1c" and r.random() < 0.5:
                        bits = r.getrandbits(spec["width"])
                        getattr(dut, f"{name}__{f}_set").value = bits
                        tb.model[name][f] |= bits
                        sets.append((name, f))
            await RisingEdge(dut.clk)
            for name, f in sets:
                getattr(dut, f"{name}__{f}_set").value = 0
            await ClockCycles(dut.clk, 2)
        elif choice < 0.25:
            address = r.randrange(size, 1 << tb.addr_width) & ~3
            if r.random() < 0.5:
                await tb.write(address, r.getrandbits(32), 0xf)
            else:
                assert await tb.read(address) == 0, f"unmapped {address:#x} reads non-zero"
        elif choice < 0.45:
            # A read and a write to different registers at the same time.
            wname, rname = r.sample(names, 2)
            data, first = r.getrandbits(32), r.randrange(4)
            strobe = sum(1 << i for i in range(first, r.randint(first, 3) + 1))
            want = tb.expected_word(rname)
            pulses = tb.apply_write(wname, data, strobe)
            before = {k: len(v) for k, v in tb.pulses.items()}
            reader = cocotb.start_soon(tb.read(tb.regs[rname]["offset"]))
            await tb.write(tb.regs[wname]["offset"], data, strobe)
            got = await reader
            assert got == want, f"{rname} read {got:#x}, want {want:#x}"
            await ClockCycles(dut.clk, 2)
            for f, bits in pulses:
                seen = tb.pulses[(wname, f)][before[(wname, f)]:]
                assert seen == [bits], f"{wname}.{f} pulsed {seen}, want [{bits:#x}]"
        else:
            name = r.choice(names)
            address = tb.regs[name]["offset"]
            if r.random() < 0.5:
                data, first = r.getrandbits(32), r.randrange(4)
                strobe = sum(1 << i for i in range(first, r.randint(first, 3) + 1))
                pulses = tb.apply_write(name, data, strobe)
                before = {k: len(v) for k, v in tb.pulses.items()}
                await tb.write(address, data, strobe)
                await ClockCycles(dut.clk, 2)
                for f, bits in pulses:
                    seen = tb.pulses[(name, f)][before[(name, f)]:]
                    assert seen == [bits], f"{name}.{f} pulsed {seen}, want [{bits:#x}]"
            else:
                got = await tb.read(address)
                want = tb.expected_word(name)
                assert got == want, f"{name} read {got:#x}, want {want:#x}"
        tb.check_ports()
    total = sum(len(v) for v in tb.pulses.values())
    return total


@cocotb.test()
async def run_csr(dut):
    tb = TB(dut)
    await tb.reset()
    tb.check_ports()
    pulses = 0
    for idle in PAUSE_PATTERNS:
        for backpressure in PAUSE_PATTERNS:
            tb.set_idle_generator(idle)
            tb.set_backpressure_generator(backpressure)
            pulses = await random_ops(tb, 120)
    assert pulses > 0, "no w1p pulse was exercised"
    dut._log.info(f"{pulses} w1p pulses checked")


def build(sim, addr_width):
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.csr import CSRBank, Field, Register, standard_registers

    regs = standard_registers(addr_width=32 if addr_width == 12 else 40)
    regs.add(Register("mixed", [Field("mode", 5, reset=0x11), Field("kick", 3, access="w1p"),
                                Field("level", 8, access="ro"), Field("flags", 4, access="w1c"),
                                Field("wide", 12, reset=0xabc)]))
    bank = CSRBank(regs, addr_width=addr_width, irq=("irq_enable", "irq_status"))
    path = harness.build_dir(f"csr_a{addr_width}_{sim}")
    source = harness.emit(FlatPorts(bank, flatten=["s_axil"]), path,
                          params={"registers": regs.manifest(), "addr_width": addr_width})
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.csr.test_csr",
                path=path)


@pytest.mark.icarus_only
def test_csr_small(sim):
    build(sim, 6)


def test_csr(sim):
    build(sim, 12)
