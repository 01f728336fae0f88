"""Residual add unit against intformer.sw.golden.residual_add: random constants
from realistic scales, random rows, extremes, gaps and backpressure."""

import gc

import cocotb
import numpy as np
import pytest

from intformer.gen.bench.vector_sim import VectorTB, golden_rows, params_for, random_scales
from intformer.gen.sim.drivers import PAUSE_PATTERNS, pause_generator, rng
from intformer.sw.golden import residual_params


def check(got, want, what):
    for k, (a, b) in enumerate(zip(got, want, strict=True)):
        assert a == b, f"{what}: row {k} differs\n got {a}\nwant {b}"


@cocotb.test()
async def run_residual(dut):
    tb = VectorTB(dut)
    r = rng()
    g = np.random.default_rng(r.getrandbits(32))
    lanes = tb.lanes
    await tb.reset()
    lengths = [1, 2, max(lanes - 1, 1), lanes, lanes + 1, 3 * lanes + 2]
    for idle in PAUSE_PATTERNS:
        for backpressure in PAUSE_PATTERNS:
            tb.set_idle_generator(pause_generator(idle, r))
            tb.set_backpressure_generator(pause_generator(backpressure, r))
            scales = random_scales(r, "residual")
            p = params_for("residual", scales)
            tb.set_consts(p.__dict__)
            a = [list(g.integers(-128, 128, n)) for n in lengths]
            b = [list(g.integers(-128, 128, n)) for n in lengths]
            got = await tb.run_rows(a, extra_rows=b)
            check(got, golden_rows("residual", p, a, b), f"scales {scales}")
    # Extremes: both ends of INT8, saturation both ways, very unequal scales.
    tb.set_idle_generator(pause_generator("none", r))
    tb.set_backpressure_generator(pause_generator("none", r))
    edge = [-128, 127, 0, -1, 1, -128, 127, 127, -128]
    for scales in ((0.1, 0.1, 0.01), (0.5, 1e-3, 0.5), (1e-3, 0.2, 0.1), (0.02, 0.03, 0.05)):
        p = residual_params(*scales)
        tb.set_consts(p.__dict__)
        a = [edge + list(g.integers(-128, 128, 2 * lanes))]
        b = [edge[::-1] + list(g.integers(-128, 128, 2 * lanes))]
        got = await tb.run_rows(a, extra_rows=b)
        check(got, golden_rows("residual", p, a, b), f"extremes {scales}")
    assert not tb.sink.queue, "unexpected extra output beats"


def _run(sim, lanes, shared_mul=False):
    from intformer.gen.sim import harness
    from intformer.hw.residual import ResidualAdd
    from tb.common.sharedmul import OwnMultipliers

    dut = ResidualAdd(lanes, shared_mul=shared_mul)
    path = harness.build_dir(f"residual_l{lanes}{'_shared' * shared_mul}_{sim}")
    top = OwnMultipliers(dut) if shared_mul else dut
    source = harness.emit(top, path, params={"lanes": lanes, "latency": dut.latency})
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="tb.residual.test_residual", path=path)


@pytest.mark.parametrize("lanes", [8])
def test_residual(sim, lanes):
    _run(sim, lanes)


@pytest.mark.icarus_only
@pytest.mark.parametrize("lanes", [1, 3])
def test_residual_sweep(sim, lanes):
    _run(sim, lanes)


def test_residual_shared_mul(sim):
    """The products through the mul ports, as in the vector executor."""
    _run(sim, 3, shared_mul=True)


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_residual_parameter_errors():
    from intformer.hw.residual import ResidualAdd

    with pytest.raises(ValueError, match="Residual add lanes must be between 1 and 64, not 65"):
        ResidualAdd(65)
    with pytest.raises(TypeError, match="Residual add lanes must be an integer, not 2.5"):
        ResidualAdd(2.5)
    # The half-built components warn when collected; collect them under the filter.
    gc.collect()
