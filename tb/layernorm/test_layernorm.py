"""LayerNorm unit against intformer.sw.golden.layernorm: rows of every awkward
length with their own gamma/beta, random constants from realistic scales, zero
variance and other extremes, gaps on both inputs, backpressure, back-to-back rows,
and rejection of rows longer than the maximum."""

import gc

import cocotb
import numpy as np
import pytest
from cocotb.triggers import ClockCycles, FallingEdge

from intformer.gen.bench.vector_sim import (
    VectorTB,
    beats_to_rows,
    gb_beats,
    golden_rows,
    layernorm_row_params,
    rows_to_beats,
)
from intformer.gen.sim.drivers import PAUSE_PATTERNS, pause_generator, rng
from intformer.sw.golden import layernorm_params

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


def random_params(g, max_row):
    """Constants for rows up to ``max_row`` from random realistic scales."""
    in_scale = float(np.exp(g.uniform(np.log(1e-3), np.log(0.2))))
    out_scale = float(np.exp(g.uniform(np.log(5e-3), np.log(0.1))))
    eps = float(g.choice([1e-5, 1e-6, 1e-3]))
    spread = float(g.choice([0.1, 0.5, 1.0]))
    return layernorm_params(in_scale, g.normal(1, spread, max_row), g.normal(0, spread, max_row),
                            out_scale, eps)


async def run_batch(tb, p, rows):
    row_params = [layernorm_row_params(p, len(row)) for row in rows]
    tb.set_consts({"eps_q": p.eps_q, "shift": p.shift})
    got = await tb.run_rows(rows, side_beats=gb_beats(row_params, tb.lanes))
    check(got, golden_rows("layernorm", row_params, rows), f"eps_q {p.eps_q} shift {p.shift}")


@cocotb.test()
async def run_layernorm(dut):
    tb = VectorTB(dut, side="gb")
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
            p = random_params(g, max_row)
            rows = [[int(v) for v in g.integers(lo, hi + 1, n) >> int(g.integers(0, width))]
                    for n in g.permutation(lengths)]
            await run_batch(tb, p, rows)
    # Extremes: zero variance at several levels, one outlier, the input range ends,
    # the largest dynamic range, rows of the maximum length.
    tb.set_idle_generator(pause_generator("random", r))
    tb.set_backpressure_generator(pause_generator("random", r))
    n = min(max_row, 3 * lanes + 1)
    rows = [[0] * n, [lo] * n, [hi] * n, [5] * max_row, [lo] * (n - 1) + [hi],
            [hi] + [lo] * (n - 1), [lo, hi] * (n // 2) + [0] * (n % 2), [hi] * max_row,
            [3, 4] * (n // 2) + [3] * (n % 2), [7],
            # One outlier in a row of max_row: the largest |z| (sqrt(max_row - 1)
            # standard deviations), which the hardware's z width is sized for.
            [lo] * (max_row - 1) + [hi], [hi] + [lo] * (max_row - 1)]
    for eps in (1e-5, 0.0):
        p = layernorm_params(0.05, g.normal(1, 0.5, max_row), g.normal(0, 0.5, max_row), 0.02,
                             eps)
        await run_batch(tb, p, rows)
    # A small gamma: the outliers' z (sqrt(max_row - 1) standard deviations) shows
    # in the output instead of saturating it, so a z width too small would fail.
    p = layernorm_params(0.05, np.full(max_row, 0.04), np.zeros(max_row), 0.02, 0.0)
    await run_batch(tb, p, rows)
    # Many rows back to back against a slow output: the ring and the row credits
    # run out, and the input must wait rather than overwrite.
    tb.set_idle_generator(pause_generator("none", r))
    tb.set_backpressure_generator(pause_generator("random", r))
    rows = [[int(v) for v in g.integers(lo, hi + 1, int(n))]
            for n in g.integers(1, max_row + 1, 40)]
    stalls = cocotb.start_soon(count_input_stalls(dut))
    await run_batch(tb, random_params(g, max_row), rows)
    stalls.cancel()
    assert STALLS[0] > 0, "the input never had to wait: the ring did not fill"
    # A row longer than max_row is dropped with the error flag; the next row is fine.
    tb.set_idle_generator(pause_generator("none", r))
    tb.set_backpressure_generator(pause_generator("none", r))
    assert int(dut.error.value) == 0
    p = random_params(g, max_row)
    tb.set_consts({"eps_q": p.eps_q, "shift": p.shift})
    good = [[int(v) for v in g.integers(lo, hi + 1, lanes + 1)]]
    good_params = [layernorm_row_params(p, lanes + 1)]
    tb.side.send(gb_beats(good_params, lanes))
    tb.source.send(rows_to_beats([[int(v) for v in g.integers(lo, hi + 1, max_row + 1)]] + good,
                                 lanes))
    out = await tb.sink.recv(-(-(lanes + 1) // lanes))
    await ClockCycles(dut.clk, 5)
    assert int(dut.error.value) == 1, "an overlong row did not raise the error flag"
    check(beats_to_rows(out), golden_rows("layernorm", good_params, good), "after an overlong row")
    dut.clear.value = 1
    await ClockCycles(dut.clk, 1)
    dut.clear.value = 0
    await ClockCycles(dut.clk, 1)
    assert int(dut.error.value) == 0, "clear did not clear the error flag"
    await ClockCycles(dut.clk, 100)
    assert not tb.sink.queue, "unexpected extra output beats"
    assert not tb.side.queue and not int(dut.gb__ready.value), "gamma/beta beats left over"


def _run(sim, lanes, max_row, in_width, shared_mul=False):
    from intformer.gen.sim import harness
    from intformer.hw.layernorm import LayerNorm
    from tb.common.sharedmul import OwnMultipliers

    dut = LayerNorm(lanes, max_row=max_row, in_width=in_width, shared_mul=shared_mul)
    path = harness.build_dir(
        f"layernorm_l{lanes}_m{max_row}_w{in_width}{'_shared' * shared_mul}_{sim}")
    top = OwnMultipliers(dut) if shared_mul else dut
    source = harness.emit(top, path, params={"lanes": lanes, "max_row": max_row,
                                             "in_width": in_width})
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="tb.layernorm.test_layernorm", path=path)


@pytest.mark.verilator_slow
@pytest.mark.parametrize("lanes,max_row,in_width", [(8, 64, 8)])
def test_layernorm(sim, lanes, max_row, in_width):
    _run(sim, lanes, max_row, in_width)


@pytest.mark.parametrize("lanes,max_row,in_width", [
    (3, 22, 8),
    *(pytest.param(*case, marks=pytest.mark.icarus_only) for case in [(1, 16, 12), (4, 256, 12)]),
])
def test_layernorm_sweep(sim, lanes, max_row, in_width):
    _run(sim, lanes, max_row, in_width)


def test_layernorm_shared_mul(sim):
    """The products through the mul ports, as in the vector executor."""
    _run(sim, 3, 22, 8, shared_mul=True)


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_layernorm_parameter_errors():
    from intformer.hw.layernorm import LayerNorm

    with pytest.raises(ValueError, match="LayerNorm max_row must be between 4 and 4096, not 2"):
        LayerNorm(4, max_row=2)
    with pytest.raises(ValueError, match="LayerNorm in_width must be between 2 and 12, not 16"):
        LayerNorm(4, max_row=64, in_width=16)
    with pytest.raises(TypeError, match="LayerNorm lanes must be an integer, not 8.0"):
        LayerNorm(8.0, max_row=64)
    # The half-built components warn when collected; collect them under the filter.
    gc.collect()


@pytest.mark.icarus_only
def test_layernorm_bench(sim):
    """`intformer bench layernorm` on the default configuration: bit-exact, the latency the
    unit documents, and a sustained rate of at least 0.9 x lanes for rows of 64."""
    from intformer.gen.bench.vector import bench
    from intformer.hw.config import BASE

    out = bench(BASE, "layernorm", length=64, rows=24, sim=sim)
    assert out["bit_exact"]
    assert out["latency_cycles"] == out["expected_latency_cycles"]
    assert out["sustained_elements_per_cycle"] >= 0.9 * BASE.vector_lanes
