"""SimTop: the accelerator with its AXI memory inside the design.

A short compiled program (GEMMs with bias, INT32 and requantized INT8 results, of
sizes that are not multiples of the array, so that loads and stores use partial
bursts and strobes) runs through the host driver; the memory is loaded and read back
through the backdoor port, one beat per cycle, and registers through AXI4-Lite. The
results are compared with the golden GEMM and requantization.
"""

import cocotb
import numpy as np
import pytest
from cocotbext.axi import AxiLiteBus, AxiLiteMaster

from intformer.gen.sim.drivers import reset, rng, start_clock
from intformer.gen.sim.payload import load_ports
from intformer.gen.sim.simtop_script import BackdoorBus, idle_inputs
from intformer.sw.compile import Program
from intformer.sw.driver import Driver
from intformer.sw.golden.gemm import gemm
from intformer.sw.golden.requant import requantize


@cocotb.test()
async def run_program(dut):
    params = load_ports()["params"]
    man = params["manifest"]
    beat = man["simtop"]["beat_bytes"]
    r = rng()
    nr = np.random.default_rng(r.getrandbits(32))
    start_clock(dut.clk)
    idle_inputs(dut)
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    await reset(dut)
    bus = BackdoorBus(dut, lite, beat)

    # The backdoor itself: an unaligned write read back, neighbours untouched.
    await bus.write_mem(0, bytes(range(3 * beat)))
    await bus.write_mem(beat - 1, b"\xaa\xbb\xcc")
    want = bytearray(range(3 * beat))
    want[beat - 1:beat + 2] = b"\xaa\xbb\xcc"
    assert await bus.read_mem(0, 3 * beat) == bytes(want)
    assert await bus.read_mem(beat + 1, 5) == bytes(want[beat + 1:beat + 6])

    drv = Driver(man, bus, base=params["base"])
    for run in range(2):
        prog = Program(man)
        cases = []
        for _ in range(2):
            m, k, n = (r.randint(1, 20) for _ in range(3))
            a = nr.integers(-128, 128, (m, k), dtype=np.int8)
            b = nr.integers(-128, 128, (k, n), dtype=np.int8)
            bias = nr.integers(-5000, 5000, (1, n), dtype=np.int32)
            ta, tb, tbias = prog.place(a), prog.place(b), prog.place(bias)
            out32 = prog.reserve(m, n, np.int32)
            out8 = prog.reserve(m, n, np.int8)
            mult, shift = r.randint(1 << 14, (1 << 15) - 1), r.randint(8, 14)
            # Local memory reused after each product: wait for its stores first.
            prog.matmul(ta, tb, out32, bias=tbias, requant=False)
            prog.sync()
            prog.free_all()
            prog.matmul(ta, tb, out8, bias=tbias, mult=mult, shift=shift)
            prog.sync()
            prog.free_all()
            acc = gemm(a, b, bias[0])
            cases.append((out32, acc, out8, requantize(acc, mult, shift)))
        prog.end()
        res = await drv.run(prog.image, prog.assemble(), command_bytes=man["commands"]["bytes"],
                            timeout=200_000)
        for out32, acc, out8, q in cases:
            np.testing.assert_array_equal(prog.read(res.image, out32), acc)
            np.testing.assert_array_equal(prog.read(res.image, out8), q)
        c = res.counters
        assert c["gemm_rows"] > 0 and 0 < c["gemm_busy"] < c["cycles_busy"]
        assert c["bytes_read"] > 0 and c["bytes_written"] > 0
        dut._log.info(f"run {run}: {len(prog.commands)} commands, {c}")


def test_simtop_errors():
    from intformer.hw.config import preset
    from intformer.hw.simtop import AXIMemory, SimTop
    with pytest.raises(TypeError, match="SimTop config must be a Config"):
        SimTop("default")
    with pytest.raises(TypeError, match="AXIMemory mem_bytes must be an integer"):
        SimTop(preset("tiny"), mem_bytes=4096.0)
    with pytest.raises(ValueError, match="power of two of at least two beats"):
        SimTop(preset("tiny"), mem_bytes=3000)
    with pytest.raises(ValueError, match="power of two of at least two beats"):
        AXIMemory(addr_width=16, data_width=64, id_width=2, mem_bytes=8)
    with pytest.raises(ValueError, match="exceeds the 16-bit address space"):
        AXIMemory(addr_width=16, data_width=64, id_width=2, mem_bytes=1 << 17)


@pytest.mark.icarus_only
def test_simtop(sim):
    from intformer.gen.emit import manifest
    from intformer.gen.run import strip_memory_init
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.config import preset
    from intformer.hw.simtop import SimTop
    from tb.top.icarus import kick_comb_blocks

    config = preset("tiny")
    dut = FlatPorts(SimTop(config, mem_bytes=1 << 16), flatten=("s_axil",))
    path = harness.build_dir(f"simtop_tiny_{sim}")
    source = harness.emit(dut, path, params={"manifest": manifest(config, dut), "base": 0x1000})
    source.write_text(strip_memory_init(source.read_text()))
    if sim == "icarus":
        kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.top.test_simtop",
                path=path)
