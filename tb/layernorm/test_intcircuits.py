"""The pipelined divider and square root against the golden floor_div and isqrt
(Amaranth's simulator: small circuits, many operands, one operand per cycle)."""

import gc

import numpy as np
import pytest


def _pipeline(dut, inputs, output, operands):
    """Feed one operand tuple per cycle (with a stall every fifth cycle), collect
    the results ``dut.latency`` advances later."""
    from amaranth.sim import Simulator

    results = []

    async def bench(ctx):
        pending = []
        k = 0
        cycle = 0
        while len(results) < len(operands):
            stall = cycle % 5 == 4
            ctx.set(dut.en, 0 if stall else 1)
            if not stall:
                if k < len(operands):
                    for port, value in zip(inputs, operands[k], strict=True):
                        ctx.set(port, int(value))
                    pending.append(k)
                    k += 1
                else:
                    pending.append(None)
            await ctx.tick()
            cycle += 1
            if not stall and len(pending) >= dut.latency:
                done = pending.pop(0)
                if done is not None:
                    results.append(ctx.get(output))
        return results

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return results


def test_divider_matches_golden():
    from intformer.hw.intdiv import PipelinedDivider
    from intformer.sw.golden.intmath import floor_div

    rng = np.random.default_rng(8)
    qw, dw = 18, 28
    den = np.concatenate([rng.integers(1, 1 << dw, 400), [1, 2, (1 << dw) - 1, 1 << (dw - 1)]])
    # Any dividend whose quotient fits qw bits.
    num = np.minimum(rng.integers(0, 1 << 62, den.size) % (den << qw), (den << qw) - 1)
    num[:4] = [0, (2 << qw) - 1, 1 << (dw + qw - 2), (1 << (dw - 1)) << qw]
    num = np.minimum(num, (den << qw) - 1)
    dut = PipelinedDivider(dw + qw, den_width=dw, quotient_width=qw)
    got = _pipeline(dut, [dut.num, dut.den], dut.quotient, list(zip(num, den, strict=True)))
    np.testing.assert_array_equal(got, floor_div(num, den))


@pytest.mark.parametrize("width", [9, 62])
def test_sqrt_matches_golden(width):
    from intformer.hw.isqrt import PipelinedSqrt
    from intformer.sw.golden.intmath import isqrt

    rng = np.random.default_rng(width)
    if width <= 9:
        values = np.arange(1 << width)
    else:
        values = rng.integers(0, 1 << width, 400) >> rng.integers(0, width, 400)
        values = np.concatenate([values, [0, 1, (1 << width) - 1, (1 << 60), (1 << 60) - 1]])
    dut = PipelinedSqrt(width)
    got = _pipeline(dut, [dut.value], dut.root, [(v,) for v in values])
    np.testing.assert_array_equal(got, isqrt(values, bits=width))


@pytest.mark.filterwarnings("ignore::amaranth.hdl._ir.UnusedElaboratable")
def test_parameter_errors():
    from intformer.hw.intdiv import PipelinedDivider
    from intformer.hw.isqrt import PipelinedSqrt

    with pytest.raises(ValueError, match="Divider quotient_width must be between 1 and 8, not 9"):
        PipelinedDivider(8, den_width=4, quotient_width=9)
    with pytest.raises(ValueError, match="Square root width must be between 1 and 64, not 0"):
        PipelinedSqrt(0)
    with pytest.raises(TypeError, match="Divider den_width must be an integer, not None"):
        PipelinedDivider(8, den_width=None, quotient_width=4)
    # The half-built components warn when collected; collect them under the filter.
    gc.collect()
