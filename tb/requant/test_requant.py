"""Requantizer against intformer.sw.golden.requantize: random and corner inputs,
per-lane constants, with input gaps and output backpressure."""

import cocotb
import numpy as np
import pytest

from intformer.gen.sim.drivers import (
    PAUSE_PATTERNS,
    StreamSink,
    StreamSource,
    pause_generator,
    reset,
    rng,
    start_clock,
)
from intformer.gen.sim.payload import load_ports
from intformer.sw.golden import MAX_SHIFT, MULT_WIDTH, requantize


class TB:
    def __init__(self, dut):
        self.dut = dut
        info = load_ports()
        self.lanes = info["params"]["lanes"]
        start_clock(dut.clk)
        self.source = StreamSource(dut, "i")
        self.sink = StreamSink(dut, "o")

    async def reset(self):
        await reset(self.dut)

    def set_idle_generator(self, generator):
        self.source.set_pause_generator(generator)

    def set_backpressure_generator(self, generator):
        self.sink.set_pause_generator(generator)

    async def check(self, acc, mult, shift):
        """Send rows of (acc, mult, shift) lanes and compare with the golden model."""
        beats = [{"acc": [int(v) for v in a], "mult": [int(v) for v in m],
                  "shift": [int(v) for v in s]} for a, m, s in zip(acc, mult, shift, strict=True)]
        self.source.send(beats)
        got = np.array(await self.sink.recv(len(beats)), dtype=np.int64)
        want = requantize(acc, mult, shift)
        bad = np.argwhere(got != want)
        assert not bad.size, (f"{len(bad)} mismatches, first at {tuple(bad[0])}: acc="
                              f"{acc[tuple(bad[0])]} mult={mult[tuple(bad[0])]} "
                              f"shift={shift[tuple(bad[0])]} got {got[tuple(bad[0])]} "
                              f"want {want[tuple(bad[0])]}")


def corner_rows(lanes, r):
    """Rounding ties both ways, saturation both ways, shift 0 and the maximum shift."""
    cases = []
    for s in (1, 2, 5, 16, 31):
        for k in (-3, -1, 1, 3):
            cases.append((k << (s - 1), 1, s))  # exact ties: k/2 for odd k
    cases += [(2**31 - 1, 2**MULT_WIDTH - 1, 0), (-2**31, 2**MULT_WIDTH - 1, 0),
              (2**31 - 1, 2**MULT_WIDTH - 1, MAX_SHIFT), (-2**31, 2**MULT_WIDTH - 1, MAX_SHIFT),
              (-2**31, 1, 24), (2**31 - 1, 1, 24), (127, 1, 0), (128, 1, 0), (-128, 1, 0),
              (-129, 1, 0), (255, 1, 1), (-257, 1, 1), (-255, 1, 1), (0, 0, 0), (-1, 1, 63),
              (-2**31, 2**MULT_WIDTH - 1, 47), (2**31 - 1, 2**MULT_WIDTH - 1, 47),
              (-2**31, 2**MULT_WIDTH - 1, 46)]
    cases = [c for c in cases if -2**31 <= c[0] < 2**31]
    r.shuffle(cases)
    rows = -(-len(cases) // lanes)
    cases += [(0, 0, 0)] * (rows * lanes - len(cases))
    arr = np.array(cases, dtype=np.int64).reshape(rows, lanes, 3)
    return arr[..., 0], arr[..., 1], arr[..., 2]


def random_rows(lanes, r, n):
    g = np.random.default_rng(r.getrandbits(32))
    acc = g.integers(-2**31, 2**31, size=(n, lanes))
    small = g.random((n, lanes)) < 0.5
    acc = np.where(small, g.integers(-2**14, 2**14, size=(n, lanes)), acc)
    mult = g.integers(0, 2**MULT_WIDTH, size=(n, lanes))
    shift = g.integers(0, MAX_SHIFT + 1, size=(n, lanes))
    shift = np.where(g.random((n, lanes)) < 0.7, g.integers(14, 40, size=(n, lanes)), shift)
    return acc, mult, shift


@cocotb.test()
async def run_requant(dut):
    tb = TB(dut)
    r = rng()
    await tb.reset()
    for idle in PAUSE_PATTERNS:
        for backpressure in PAUSE_PATTERNS:
            tb.set_idle_generator(pause_generator(idle, r))
            tb.set_backpressure_generator(pause_generator(backpressure, r))
            await tb.check(*corner_rows(tb.lanes, r))
            await tb.check(*random_rows(tb.lanes, r, 60))
    assert not tb.sink.queue, "unexpected extra output beats"


@pytest.mark.parametrize("lanes", [1, 3, pytest.param(8, marks=pytest.mark.verilator_slow)])
def test_requant(sim, lanes):
    from intformer.gen.sim import harness
    from intformer.hw.requant import Requantizer

    dut = Requantizer(lanes)
    path = harness.build_dir(f"requant_l{lanes}_{sim}")
    source = harness.emit(dut, path, params={"lanes": lanes, "latency": dut.latency})
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.requant.test_requant",
                path=path)
