"""GELU unit against intformer.sw.golden.gelu: random constants from realistic
scales, random rows, extremes, input gaps and output backpressure."""

import gc

import cocotb
import numpy as np
import pytest

from intformer.gen.bench.vector_sim import VectorTB, golden_rows, params_for, random_scales
from intformer.gen.sim.drivers import PAUSE_PATTERNS, pause_generator, rng
from intformer.sw.golden import gelu_params


def check(got, want, what):
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a == b, f"{what}: row {k} differs\n got {a}\nwant {b}"


@cocotb.test()
async def run_gelu(dut):
    tb = VectorTB(dut)
    r = rng()
    g = np.random.default_rng(r.getrandbits(32))
    width, lanes = tb.params["in_width"], tb.lanes
    lo, hi = -(1 << (width - 1)), (1 << (width - 1)) - 1
    await tb.reset()
    lengths = [1, 2, max(lanes - 1, 1), lanes, lanes + 1, 3 * lanes + 2]
    for idle in PAUSE_PATTERNS:
        for backpressure in PAUSE_PATTERNS:
            tb.set_idle_generator(pause_generator(idle, r))
            tb.set_backpressure_generator(pause_generator(backpressure, r))
            scales = random_scales(r, "gelu")
            if width <= 8:
                scales = (scales[0] * 1000 if scales[0] < 1e-3 else scales[0], scales[1])
            p = params_for("gelu", scales)
            tb.set_consts(p.__dict__)
            rows = [list(g.integers(lo, hi + 1, n) >> int(g.integers(0, width)))
                    for n in lengths]
            got = await tb.run_rows(rows)
            check(got, golden_rows("gelu", p, rows), f"scales {scales}")
    # Extremes: the input range ends, saturation both ways, the clipping point.
    tb.set_idle_generator(pause_generator("none", r))
    tb.set_backpressure_generator(pause_generator("none", r))
    for in_scale, out_scale in ((0.1, 0.01), (1e-3, 1e-3), (2.0 ** -10, 1.0), (0.05, 0.002)):
        if width > 8 or in_scale > 1e-3:
            p = gelu_params(in_scale, out_scale)
            tb.set_consts(p.__dict__)
            row = [lo, hi, 0, 1, -1, lo + 1, hi - 1] + [int(v) for v in
                                                        np.linspace(lo, hi, 4 * lanes + 3)]
            got = await tb.run_rows([row])
            check(got, golden_rows("gelu", p, [row]), f"extremes {in_scale}, {out_scale}")
    assert not tb.sink.queue, "unexpected extra output beats"


def _run(sim, lanes, in_width, shared_mul=False):
    from intformer.gen.sim import harness
    from intformer.hw.gelu import Gelu
    from tb.common.sharedmul import OwnMultipliers

    dut = Gelu(lanes, in_width=in_width, shared_mul=shared_mul)
    path = harness.build_dir(f"gelu_l{lanes}_w{in_width}{'_shared' * shared_mul}_{sim}")
    top = OwnMultipliers(dut) if shared_mul else dut
    source = harness.emit(top, path, params={"lanes": lanes, "in_width": in_width,
                                             "latency": dut.latency})
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.gelu.test_gelu",
                path=path)


@pytest.mark.verilator_slow
@pytest.mark.parametrize("lanes,in_width", [(8, 32)])
def test_gelu(sim, lanes, in_width):
    _run(sim, lanes, in_width)


@pytest.mark.parametrize("lanes,in_width", [
    (3, 8),
    *(pytest.param(*case, marks=pytest.mark.icarus_only) for case in [(1, 32), (5, 16)]),
])
def test_gelu_sweep(sim, lanes, in_width):
    _run(sim, lanes, in_width)


def test_gelu_shared_mul(sim):
    """The products through the mul ports, as in the vector executor."""
    _run(sim, 3, 32, shared_mul=True)


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_gelu_parameter_errors():
    from intformer.hw.gelu import Gelu

    with pytest.raises(ValueError, match="GELU lanes must be between 1 and 64, not 0"):
        Gelu(0)
    with pytest.raises(ValueError, match="GELU in_width must be between 2 and 32, not 33"):
        Gelu(4, in_width=33)
    with pytest.raises(TypeError, match="GELU lanes must be an integer, not '4'"):
        Gelu("4")
    # The half-built components warn when collected; collect them under the filter.
    gc.collect()


@pytest.mark.icarus_only
def test_gelu_bench(sim):
    """`intformer bench gelu` on the default configuration: bit-exact, the latency the
    unit documents, and a sustained rate of at least 0.9 x lanes for rows of 64."""
    from intformer.gen.bench.vector import bench
    from intformer.hw.config import BASE

    out = bench(BASE, "gelu", length=64, rows=24, sim=sim)
    assert out["bit_exact"]
    assert out["latency_cycles"] == out["expected_latency_cycles"]
    assert out["sustained_elements_per_cycle"] >= 0.9 * BASE.vector_lanes
