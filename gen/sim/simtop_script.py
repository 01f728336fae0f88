"""cocotb side of ``intformer run --sim icarus``, and the backdoor bus of SimTop tests.

:class:`BackdoorBus` is the host driver's bus (:mod:`intformer.sw.driver`) on
:class:`intformer.hw.simtop.SimTop`: registers through a cocotbext-axi
``AxiLiteMaster``, memory through the backdoor port, the ``irq`` port. The cocotb
test :func:`run_script` executes a script of ``simtop_main.cpp``'s format (see that
file; ``params["script"]``) and writes the same output (``params["output"]``), so
that :mod:`intformer.gen.run` treats both simulators alike.

Runs inside the simulation: imports neither Amaranth nor ``intformer.hw``.
"""

import time

import cocotb
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge
from cocotb.utils import get_sim_time
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from .drivers import start_clock
from .payload import load_ports

__all__ = ["BackdoorBus", "idle_inputs", "run_script"]


class BackdoorBus:
    """The driver's bus on SimTop (inputs driven on falling edges); ``irq_cycles``
    is the number of cycles the last :meth:`wait_irq` waited."""

    def __init__(self, dut, lite, beat: int):
        self.dut, self.lite, self.beat = dut, lite, beat
        self.irq_cycles = 0

    async def read_reg(self, offset):
        return int.from_bytes((await self.lite.read(offset, 4)).data, "little")

    async def write_reg(self, offset, value):
        await self.lite.write(offset, int(value).to_bytes(4, "little"))

    async def _read_beat(self, index):
        await FallingEdge(self.dut.clk)
        self.dut.bd_addr.value = index
        await RisingEdge(self.dut.clk)
        await FallingEdge(self.dut.clk)
        return int(self.dut.bd_rdata.value).to_bytes(self.beat, "little")

    async def _write_beat(self, index, data):
        await FallingEdge(self.dut.clk)
        self.dut.bd_addr.value = index
        self.dut.bd_wdata.value = int.from_bytes(data, "little")
        self.dut.bd_we.value = 1
        await FallingEdge(self.dut.clk)
        self.dut.bd_we.value = 0

    async def write_mem(self, addr, data):
        done = 0
        while done < len(data):
            a = addr + done
            off = a % self.beat
            n = min(self.beat - off, len(data) - done)
            word = bytearray(await self._read_beat(a // self.beat) if n < self.beat
                             else bytes(self.beat))
            word[off:off + n] = data[done:done + n]
            await self._write_beat(a // self.beat, bytes(word))
            done += n

    async def read_mem(self, addr, length):
        out = bytearray()
        while len(out) < length:
            a = addr + len(out)
            word = await self._read_beat(a // self.beat)
            out += word[a % self.beat:][:length - len(out)]
        return bytes(out)

    async def wait_irq(self, timeout):
        self.irq_cycles = 0
        for _ in range(int(timeout)):
            if int(self.dut.irq.value):
                return
            await RisingEdge(self.dut.clk)
            self.irq_cycles += 1
        raise TimeoutError("no interrupt")


def idle_inputs(dut) -> None:
    dut.bd_we.value = 0
    dut.bd_addr.value = 0
    dut.bd_wdata.value = 0


@cocotb.test()
async def run_script(dut):
    params = load_ports()["params"]
    start_clock(dut.clk)
    idle_inputs(dut)
    # SimTop(power_on_reset=True) resets itself in its first cycles; the AXI4-Lite
    # master starts after them (it has no reset to watch, and outputs are X before).
    await ClockCycles(dut.clk, 8)
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk)
    bus = BackdoorBus(dut, lite, params["beat"])
    t0 = time.monotonic()
    start = get_sim_time("ns")
    out = []
    with open(params["script"]) as f:
        for line in f:
            parts = line.split()
            if not parts:
                continue
            op, args = parts[0], parts[1:]
            if op == "M":
                await bus.write_mem(int(args[0], 16), bytes.fromhex(args[1]))
            elif op == "D":
                out.append("D " + (await bus.read_mem(int(args[0], 16), int(args[1], 16))).hex())
            elif op == "W":
                await bus.write_reg(int(args[0], 16), int(args[1], 16))
            elif op == "R":
                out.append(f"R {await bus.read_reg(int(args[0], 16)):x}")
            elif op == "I":
                try:
                    await bus.wait_irq(int(args[0], 16))
                    timed_out = 0
                except TimeoutError:
                    timed_out = 1
                out.append(f"I {bus.irq_cycles:x} {timed_out}")
            else:
                raise ValueError(f"bad script line: {line.strip()[:80]}")
    cycles = int((get_sim_time("ns") - start) // 10)
    out.append(f"T {cycles:x} {time.monotonic() - t0:.6f}")
    with open(params["output"], "w") as f:
        f.write("\n".join(out) + "\n")
