"""The accelerator through its registers: intformer.sw.driver over cocotbext-axi
AxiLiteMaster (registers) and an AxiRam that can answer SLVERR or DECERR (memory,
random pauses), a GEMM and a vector op against the golden model, a malformed stream
reported through status and irq, a bus error reported with its address, a soft reset
in the middle of a stream, each followed by a good stream."""

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiResp

from intformer.gen.sim.drivers import pause_generator, reset, rng, start_clock
from intformer.gen.sim.payload import load_ports
from intformer.sw.compile import Program
from intformer.sw.driver import AcceleratorError, Driver
from intformer.sw.golden import gelu, gelu_params, gemm, quantize_multiplier, requantize
from tb.axi.memory import ErrorRam, bind_ports
from tb.top.simbus import CocotbBus

MEM = 1 << 20
BASE = 0x40000


@cocotb.test()
async def run_accel(dut):
    man = load_ports()["params"]["manifest"]
    r = rng()
    g = np.random.default_rng(r.getrandbits(32))
    start_clock(dut.clk)
    bind_ports(dut, load_ports()["ports"])
    ram = ErrorRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, MEM, dut.rst)
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    await reset(dut)
    drv = Driver(man, CocotbBus(dut, ram, lite), base=BASE)
    nbytes = man["commands"]["bytes"]

    for pauses in ("none", "random"):
        ram.set_pause_generators(lambda pauses=pauses: pause_generator(pauses, r))
        prog = Program(man)
        M, K, N = (int(v) for v in g.integers(1, 20, size=3))
        a = g.integers(-128, 128, size=(M, K), dtype=np.int8)
        b = g.integers(-128, 128, size=(K, N), dtype=np.int8)
        bias = g.integers(-2**16, 2**16, size=N).astype(np.int32)
        mult, shift = quantize_multiplier(float(g.uniform(1e-3, 4e-3)))
        ta, tb_, tbias = prog.place(a), prog.place(b), prog.place(bias[None, :])
        out = prog.reserve(M, N, np.int8)
        prog.matmul(ta, tb_, out, bias=tbias, mult=mult, shift=shift)
        y_out = None
        if "gelu" in man["commands"]["implemented"]:
            params = gelu_params(0.03, 0.02)
            y_out = prog.reserve(M, N, np.int8)
            prog.sync()
            prog.free_all()
            prog.vector("gelu", out, y_out, params)
        prog.end()
        res = await drv.run(prog.image, prog.assemble(), command_bytes=nbytes)
        want = requantize(gemm(a, b, bias), mult, shift)
        got = prog.read(res.image, out)
        assert (got == want).all(), "GEMM through the driver differs from the golden model"
        if y_out is not None:
            assert (prog.read(res.image, y_out) == gelu(want, params)).all(), "GELU differs"
        assert res.counters["cycles_busy"] > 0 and res.counters["gemm_rows"] > 0
        assert res.counters["bytes_written"] >= M * N
        dut._log.info(f"{M}x{K}x{N} GEMM (+GELU): {res.counters}")

        # A malformed stream: status and irq report it, the next stream runs.
        bad = Program(man)
        bad.emit("load", dram=0, dram_stride=0, row_bytes=8, rows=1, loc=0, loc_stride=0,
                 space=0, pop_prev=1)
        bad.end()
        try:
            await drv.run(bytes(64), bad.assemble(), command_bytes=nbytes)
        except AcceleratorError as e:
            assert e.name == "bad_dependency" and e.index == 0, str(e)
        else:
            raise AssertionError("malformed stream reported no error")

        # A bus error on a load: the driver names it and its address (the load's first
        # burst fails, and it starts at the tensor).
        code = AxiResp.SLVERR if pauses == "none" else AxiResp.DECERR
        ram.faults = [(BASE + ta.offset, BASE + ta.offset + ta.nbytes, code)]
        addr = BASE + ta.offset
        try:
            await drv.run(prog.image, prog.assemble(), command_bytes=nbytes)
        except AcceleratorError as e:
            assert e.name == "bus_error" and e.addr == addr, str(e)
            assert str(e).endswith(f"at address {addr:#x}"), str(e)
        else:
            raise AssertionError(f"{code.name} on a load reported no error")
        ram.faults = []

        # A soft reset once the stream has started reading: the waiting run raises
        # soft_reset, the accelerator is idle, and the next run is right again.
        run = cocotb.start_soon(drv.run(prog.image, prog.assemble(), command_bytes=nbytes))
        while not int(dut.m_axi_arvalid.value):
            await RisingEdge(dut.clk)
        await ClockCycles(dut.clk, r.randrange(60))
        assert await drv.soft_reset() == "soft_reset"
        try:
            await run
        except AcceleratorError as e:
            assert e.name == "soft_reset", str(e)
        else:
            raise AssertionError("a run interrupted by a soft reset reported no error")
        res = await drv.run(prog.image, prog.assemble(), command_bytes=nbytes)
        assert (prog.read(res.image, out) == want).all(), "GEMM after a soft reset differs"
        assert res.error_addr == 0


# Verilator covers the core (tb/top/test_core.py, tiny); the register path is the same
# logic on both simulators, and a Verilator build of the whole accelerator takes minutes.
@pytest.mark.icarus_only
def test_accel(sim):
    from intformer.gen.emit import manifest
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.config import preset
    from intformer.hw.top import Accelerator
    from tb.top.icarus import kick_comb_blocks
    config = preset("tiny")
    dut = FlatPorts(Accelerator(config), flatten=("m_axi", "s_axil"))
    path = harness.build_dir(f"accel_tiny_{sim}")
    source = harness.emit(dut, path, params={"manifest": manifest(config, dut)})
    if sim == "icarus":
        kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.top.test_accel",
                path=path)


def test_accel_errors():
    from intformer.hw.config import preset
    from intformer.hw.top import Accelerator
    with pytest.raises(TypeError, match=r"Accelerator config must be a Config, not 1"):
        Accelerator(1)
    # Config refuses addresses wider than the accelerator's 32 bits.
    with pytest.raises(ValueError, match=r"axi_addr_width must be between 16 and 32, not 40"):
        Accelerator(preset("tiny").replace(axi_addr_width=40))


def test_accel_without_perf_counters(tmp_path):
    """perf_counters off: no perf_* register in the map, the manifest or the C header,
    an empty counters section, and the design elaborates."""
    from amaranth.hdl import Fragment

    from intformer.gen.emit import generate
    from intformer.hw.config import preset
    from intformer.hw.top import COUNTERS, Accelerator

    full = Accelerator(preset("tiny")).manifest()
    Fragment.get(Accelerator(preset("tiny")), None)
    assert "perf_cycles_busy" in full["registers"] and len(full["counters"]) == len(COUNTERS)
    config = preset("tiny").replace(perf_counters=False)
    accel = Accelerator(config)
    man = accel.manifest()
    assert list(man["registers"]) == ["ctrl", "status", "irq_enable", "irq_status",
                                      "window_base", "window_limit", "error_addr", "cmd_addr",
                                      "cmd_count", "error_index"]
    assert man["counters"] == {}
    Fragment.get(accel, None)
    header = generate(config, tmp_path)["header"].read_text()
    assert "REGISTER_CMD_COUNT" in header and "REGISTER_PERF" not in header
    assert "#define INTFORMER_PERF_COUNTERS                  0u" in header
