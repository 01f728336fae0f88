"""Soft reset and bus errors of the accelerator core, on an ``ErrorRam`` with random
pauses on every AXI channel and a protocol checker.

Soft reset: a GEMM stream (loads, compute, stores) is started and ``soft_reset``
pulsed at a random moment, often while a read or write burst is under way; the core
must go idle within a bound derived from the DMA's bursts in flight, report
``soft_reset`` with ``done`` and ``irq``, leave no AXI transaction half done, and run
the stream again bit-exactly against the golden model. ``INTFORMER_RESET_TRIALS`` sets
the number of pulses (the slow sweep runs more).

Bus errors: SLVERR and DECERR on the command fetch and a load (reads) and on a store
(writes) end the stream with ``bus_error`` and ``error_addr`` in the first failing
burst; the next stream clears it.
"""

import os

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiResp

from intformer.gen.sim.drivers import reset
from intformer.sw.compile import Program
from intformer.sw.golden import gemm, quantize_multiplier, requantize
from tb.top.test_core import STREAM, TB, WINDOW

#: When the pulse comes, after a random delay: at once, or once the bus shows this.
MOMENTS = {
    "any": lambda d: True,
    "r_beat": lambda d: int(d.m_axi_rvalid.value) == 1,
    "w_beat": lambda d: int(d.m_axi_wvalid.value) == 1,
    "ar_wait": lambda d: int(d.m_axi_arvalid.value) == 1 and int(d.m_axi_arready.value) == 0,
    "aw_wait": lambda d: int(d.m_axi_awvalid.value) == 1 and int(d.m_axi_awready.value) == 0,
}


def gemm_program(tb: TB):
    """A GEMM with bias and per-tensor requantization: the program, its A and output
    tensors and the expected output."""
    g = tb.g
    prog = Program(tb.man)
    R, C = tb.man["config"]["array_rows"], tb.man["config"]["array_cols"]
    M, K, N = 3 * R + 1, 4 * R - 1, 3 * C + 1
    a, b = tb.int8(M, K), tb.int8(K, N)
    bias = g.integers(-2**16, 2**16, size=N).astype(np.int32)
    mult, shift = quantize_multiplier(float(g.uniform(1e-3, 4e-3)))
    out = prog.reserve(M, N, np.int8)
    ta = prog.place(a)
    prog.matmul(ta, prog.place(b), out, bias=prog.place(bias[None, :]), mult=mult,
                shift=shift)
    prog.end()
    return prog, ta, out, requantize(gemm(a, b, bias), mult, shift)


def drain_bound(tb: TB) -> int:
    """Cycles a soft reset may take: every burst in flight in both directions, at the
    slowest a paused memory is expected to run (a beat per 4 cycles), and some slack."""
    c = tb.man["config"]
    return 4 * 2 * c["axi_max_outstanding"] * c["axi_max_burst"] + 64


async def start(tb: TB, prog: Program) -> None:
    dut = tb.dut
    stream = prog.assemble()
    tb.ram.write(WINDOW, bytes(prog.image))
    tb.ram.write(WINDOW + STREAM, stream)
    dut.window_base.value = WINDOW
    dut.window_limit.value = WINDOW + 0x20000
    dut.cmd_addr.value = WINDOW + STREAM
    dut.cmd_count.value = len(stream) // prog.cs.bytes
    dut.start.value = 1
    await RisingEdge(dut.clk)
    dut.start.value = 0


async def soft_reset(tb: TB, bound: int) -> int:
    """Pulse soft_reset; return the cycles until busy fell, having checked the report."""
    dut = tb.dut
    code = tb.man["errors"]["soft_reset"]
    dut.soft_reset.value = 1
    await RisingEdge(dut.clk)
    dut.soft_reset.value = 0
    done = irq = cycles = 0
    while True:
        await RisingEdge(dut.clk)
        cycles += 1
        if int(dut.done.value):
            done += 1
            irq += int(dut.irq.value)
            assert int(dut.error.value) == code, \
                f"done after a soft reset with error {int(dut.error.value)}, not {code}"
        if not int(dut.busy.value):
            break
        assert cycles < bound, f"still busy {bound} cycles after a soft reset; {tb.state()}"
    await RisingEdge(dut.clk)
    assert done == 1 and irq == 1, f"soft reset pulsed done {done} and irq {irq} times"
    assert int(dut.error.value) == code and int(dut.error_addr.value) == 0
    assert tb.checker.idle, "a burst is still in flight once the core is idle"
    assert not tb.checker.errors, "\n".join(tb.checker.errors)
    return cycles


@cocotb.test()
async def soft_reset_recovers(dut):
    tb = TB(dut, faulty=True)
    r = tb.r
    await reset(dut)
    tb.set_pauses("random")
    prog, _, out, want = gemm_program(tb)
    bound = drain_bound(tb)
    # An idle soft reset reports too, and the first run measures the stream and when
    # each moment occurs in it (cycles after start), so that a trial aiming at a moment
    # waits for a time at which it was seen, not past the last read burst.
    await soft_reset(tb, bound)
    seen = {name: [] for name in MOMENTS}
    watching = [True]

    async def watch():
        cycle = 0
        while watching[0]:
            await RisingEdge(dut.clk)
            cycle += 1
            if int(dut.busy.value):
                for name, holds in MOMENTS.items():
                    if holds(dut):
                        seen[name].append(cycle)

    cocotb.start_soon(watch())
    got = prog.read(await tb.run(prog, guard_outputs=[out]), out)
    watching[0] = False
    assert (got == want).all(), "GEMM differs from the golden model"
    length = tb.cycles
    assert seen["r_beat"] and seen["w_beat"], f"the stream has no burst: {seen}"
    trials = int(os.environ.get("INTFORMER_RESET_TRIALS", "8"))
    worst = 0
    hits = dict.fromkeys(MOMENTS, 0)
    for trial in range(trials):
        moment = list(MOMENTS)[trial % len(MOMENTS)]
        await start(tb, prog)
        # Random pauses move the moments: start looking a little before one was seen.
        delay = r.choice(seen[moment]) - r.randrange(8) if seen[moment] else r.randrange(length)
        for _ in range(max(0, delay)):
            await RisingEdge(dut.clk)
        for _ in range(length):
            if MOMENTS[moment](dut) or not int(dut.busy.value):
                break
            await RisingEdge(dut.clk)
        hits[moment] += MOMENTS[moment](dut) and int(dut.busy.value)
        busy = int(dut.busy.value)
        dut._log.debug(f"trial {trial}: pulse at {moment} after {delay} cycles")
        cycles = await soft_reset(tb, bound)
        worst = max(worst, cycles)
        tb.ram.write(WINDOW, bytes(prog.image))
        got = prog.read(await tb.run(prog, guard_outputs=[out]), out)
        assert (got == want).all(), \
            f"trial {trial} ({moment}, busy {busy}): the next GEMM differs from the golden model"
        assert not tb.checker.errors, "\n".join(tb.checker.errors)
    dut._log.info(f"{trials} soft resets during a {length}-cycle stream: idle within "
                  f"{worst} cycles (bound {bound}); pulses at {hits}")
    if trials >= len(MOMENTS):
        assert hits["r_beat"] and hits["w_beat"], f"no pulse inside a burst: {hits}"


async def faulty_run(tb: TB, prog: Program, out, lo: int, hi: int, code, *, write: bool):
    """Run ``prog`` with ``[lo, hi)`` answering ``code``; check error_addr."""
    dut = tb.dut
    B = tb.man["config"]["axi_data_width"] // 8
    log = tb.checker.aw_log if write else tb.checker.ar_log
    seen = len(log)
    tb.ram.faults = [(lo, hi, code)]
    await tb.run(prog, expect="bus_error", guard_outputs=[out])
    tb.ram.faults = []
    hit = [b for b in log[seen:] if b[1] < hi and lo < b[1] + b[2] * B]
    assert hit, f"no burst reached the faulty range at {lo:#x}: {log[seen:]}"
    addr = int(dut.error_addr.value)
    assert addr // B * B == hit[0][1], \
        f"error_addr {addr:#x} is not in the first failing burst {hit[0]}"
    assert not tb.checker.errors, "\n".join(tb.checker.errors)


@cocotb.test()
async def bus_error_address(dut):
    tb = TB(dut, faulty=True)
    await reset(dut)
    tb.set_pauses("random")
    B = tb.man["config"]["axi_data_width"] // 8
    for code in (AxiResp.SLVERR, AxiResp.DECERR):
        for where in ("fetch", "load", "store"):
            prog, ta, out, want = gemm_program(tb)
            if where == "fetch":
                # The second beat of the stream on.
                lo = WINDOW + STREAM + B
                hi = WINDOW + STREAM + len(prog.assemble())
            else:
                t = out if where == "store" else ta
                lo = (WINDOW + t.offset + t.nbytes // 2) // B * B
                hi = lo + B
            await faulty_run(tb, prog, out, lo, hi, code, write=where == "store")
            got = prog.read(await tb.run(prog, guard_outputs=[out]), out)
            assert (got == want).all(), f"the GEMM after a {code.name} on the {where} differs"
            assert int(tb.dut.error_addr.value) == 0, "error_addr not cleared by start"


@pytest.mark.parametrize("trials", [pytest.param(8, id="quick"),
                                    pytest.param(60, id="sweep", marks=pytest.mark.slow)])
def test_reset(sim, trials):
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.config import preset
    from intformer.hw.top import COUNTERS, AcceleratorCore
    from tb.top.test_core import _manifest

    config = preset("tiny")
    core = AcceleratorCore(config)
    dut = FlatPorts(core, flatten=("m_axi",))
    path = harness.build_dir(f"core_reset_tiny_{sim}")
    source = harness.emit(dut, path, params={"manifest": _manifest(core, config),
                                             "counters": list(COUNTERS)})
    if sim == "icarus":
        from tb.top.icarus import kick_comb_blocks
        assert kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.top.test_reset",
                path=path, env={"INTFORMER_RESET_TRIALS": str(trials)})
