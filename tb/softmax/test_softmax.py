"""Softmax unit against intformer.sw.golden.softmax: rows of every awkward length,
random constants from realistic scales, extremes, gaps, backpressure, back-to-back
rows, and rejection of rows longer than the maximum."""

import gc

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, FallingEdge

from intformer.gen.bench.vector_sim import (
    VectorTB,
    beats_to_rows,
    golden_rows,
    random_scales,
    rows_to_beats,
)
from intformer.gen.sim.drivers import PAUSE_PATTERNS, pause_generator, rng
from intformer.sw.golden import softmax_params

STALLS = [0]


async def count_input_stalls(dut):
    """Count cycles with an input beat offered but not taken (into ``STALLS``)."""
    STALLS[0] = 0
    while True:
        await FallingEdge(dut.clk)
        if int(dut.i__valid.value) and not int(dut.i__ready.value):
            STALLS[0] += 1


def check(got, want, what):
    assert len(got) == len(want), f"{what}: {len(got)} rows out, {len(want)} expected"
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a == b, f"{what}: row {k} (length {len(b)}) differs\n got {a}\nwant {b}"


def random_row(g, n, in_scale, width):
    """Logits spread over a few real units, as integers of the input scale."""
    hi = (1 << (width - 1)) - 1
    spread = float(g.choice([1.0, 5.0, 20.0]))
    x = np.round(g.normal(0, spread, n) / in_scale)
    return [int(v) for v in np.clip(x, -hi - 1, hi)]


@cocotb.test()
async def run_softmax(dut):
    tb = VectorTB(dut)
    r = rng()
    g = np.random.default_rng(r.getrandbits(32))
    lanes, max_row, width = tb.lanes, tb.params["max_row"], tb.params["in_width"]
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    await tb.reset()
    lengths = sorted({1, 2, max(lanes - 1, 1), lanes, lanes + 1, max_row, 2 * lanes + 3})
    for idle in PAUSE_PATTERNS:
        for backpressure in PAUSE_PATTERNS:
            tb.set_idle_generator(pause_generator(idle, r))
            tb.set_backpressure_generator(pause_generator(backpressure, r))
            (in_scale,) = random_scales(r, "softmax")
            if width <= 8:
                in_scale = max(in_scale, 0.02)
            p = softmax_params(in_scale)
            tb.set_consts(p.__dict__)
            order = [int(n) for n in g.permutation(lengths)]
            rows = [random_row(g, n, in_scale, width) for n in order]
            got = await tb.run_rows(rows)
            check(got, golden_rows("softmax", p, rows), f"in_scale {in_scale}")
    # Extremes: all equal, one huge element, the input range ends, maximum range.
    tb.set_idle_generator(pause_generator("none", r))
    tb.set_backpressure_generator(pause_generator("random", r))
    p = softmax_params(0.05 if width <= 8 else 1e-4)
    tb.set_consts(p.__dict__)
    n = min(max_row, 3 * lanes + 1)
    rows = [[7] * n, [lo] * n, [hi] * n, [lo] * (n - 1) + [hi], [hi] + [lo] * (n - 1),
            [lo, hi] * (n // 2) + [0] * (n % 2), [0] * max_row, [hi] * max_row, [5]]
    got = await tb.run_rows(rows)
    check(got, golden_rows("softmax", p, rows), "extremes")
    # Many rows back to back against a slow output: the ring and the reciprocal
    # queue fill up, and the input must wait rather than overwrite.
    tb.set_idle_generator(pause_generator("none", r))
    tb.set_backpressure_generator(pause_generator("random", r))
    rows = [random_row(g, int(n), 0.05, width) for n in g.integers(1, max_row + 1, 40)]
    stalls = cocotb.start_soon(count_input_stalls(dut))
    got = await tb.run_rows(rows)
    check(got, golden_rows("softmax", p, rows), "ring full")
    stalls.cancel()
    assert STALLS[0] > 0, "the input never had to wait: the ring did not fill"
    # A row longer than max_row is dropped with the error flag; the next rows are fine.
    assert int(dut.error.value) == 0
    good = [random_row(g, lanes + 1, 0.05, width)]
    long_row = random_row(g, max_row + 1, 0.05, width)
    tb.source.send(rows_to_beats([long_row] + good, lanes))
    out = await tb.sink.recv(-(-len(good[0]) // lanes))
    await ClockCycles(dut.clk, 5)
    assert int(dut.error.value) == 1, "an overlong row did not raise the error flag"
    check(beats_to_rows(out), golden_rows("softmax", p, good), "after an overlong row")
    dut.clear.value = 1
    await ClockCycles(dut.clk, 1)
    dut.clear.value = 0
    await ClockCycles(dut.clk, 1)
    assert int(dut.error.value) == 0, "clear did not clear the error flag"
    await ClockCycles(dut.clk, 50)
    assert not tb.sink.queue, "unexpected extra output beats"


def _run(sim, lanes, max_row, in_width, shared_mul=False):
    from intformer.gen.sim import harness
    from intformer.hw.softmax import Softmax
    from tb.common.sharedmul import OwnMultipliers

    dut = Softmax(lanes, max_row=max_row, in_width=in_width, shared_mul=shared_mul)
    path = harness.build_dir(
        f"softmax_l{lanes}_m{max_row}_w{in_width}{'_shared' * shared_mul}_{sim}")
    top = OwnMultipliers(dut) if shared_mul else dut
    source = harness.emit(top, path, params={"lanes": lanes, "max_row": max_row,
                                             "in_width": in_width})
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="tb.softmax.test_softmax", path=path)


@pytest.mark.verilator_slow
@pytest.mark.parametrize("lanes,max_row,in_width", [(8, 64, 32)])
def test_softmax(sim, lanes, max_row, in_width):
    _run(sim, lanes, max_row, in_width)


@pytest.mark.parametrize("lanes,max_row,in_width", [
    (3, 22, 8),
    *(pytest.param(*case, marks=pytest.mark.icarus_only) for case in [(1, 16, 32), (4, 256, 16)]),
])
def test_softmax_sweep(sim, lanes, max_row, in_width):
    _run(sim, lanes, max_row, in_width)


def test_softmax_shared_mul(sim):
    """The products through the mul ports, as in the vector executor."""
    _run(sim, 3, 22, 32, shared_mul=True)


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_softmax_parameter_errors():
    from intformer.hw.softmax import Softmax

    with pytest.raises(ValueError, match="Softmax max_row must be between 8 and 4096, not 4"):
        Softmax(8, max_row=4)
    with pytest.raises(ValueError, match="Softmax in_width must be between 2 and 32, not 40"):
        Softmax(8, max_row=64, in_width=40)
    with pytest.raises(TypeError, match="Softmax lanes must be an integer, not None"):
        Softmax(None, max_row=64)
    # The half-built components warn when collected; collect them under the filter.
    gc.collect()


@pytest.mark.icarus_only
def test_softmax_bench(sim):
    """`intformer bench softmax` on the default configuration: bit-exact, the latency the
    unit documents, and a sustained rate of at least 0.9 x lanes for rows of 64."""
    from intformer.gen.bench.vector import bench
    from intformer.hw.config import BASE

    out = bench(BASE, "softmax", length=64, rows=24, sim=sim)
    assert out["bit_exact"]
    assert out["latency_cycles"] == out["expected_latency_cycles"]
    assert out["sustained_elements_per_cycle"] >= 0.9 * BASE.vector_lanes
