"""The shared rounding shift and saturation of the vector units against the golden
round_shift/saturate, exhaustively for an 8-bit value and every shift up to 12."""

import numpy as np


def test_round_shift_and_saturate_match_golden():
    from amaranth.hdl import Module, Signal, signed, unsigned
    from amaranth.sim import Simulator

    from intformer.hw.vector import round_shift, saturate
    from intformer.sw.golden import round_shift as golden_round_shift
    from intformer.sw.golden import saturate as golden_saturate

    value = Signal(signed(8))
    shift = Signal(unsigned(4))
    rounded = Signal(signed(10))
    clamped = Signal(signed(5))
    m = Module()
    m.d.comb += [rounded.eq(round_shift(value, shift)), clamped.eq(saturate(value, 5))]
    values = np.arange(-128, 128)
    got_round, got_sat = {}, {}

    async def bench(ctx):
        for s in range(13):
            for v in values:
                ctx.set(value, int(v))
                ctx.set(shift, s)
                got_round[int(v), s] = ctx.get(rounded)
                got_sat[int(v)] = ctx.get(clamped)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for s in range(13):
        want = golden_round_shift(values, s)
        assert [got_round[int(v), s] for v in values] == list(want), f"shift {s}"
    assert [got_sat[int(v)] for v in values] == list(golden_saturate(values, 5))


def test_round_saturate_matches_golden():
    """The narrow-window rounding and saturation equals saturate(round_shift(...)),
    exhaustively for a 9-bit value, every shift up to 13 and two output widths."""
    from amaranth.hdl import Module, Signal, signed, unsigned
    from amaranth.sim import Simulator

    from intformer.hw.vector import round_saturate
    from intformer.sw.golden import round_shift as golden_round_shift
    from intformer.sw.golden import saturate as golden_saturate

    value = Signal(signed(9))
    shift = Signal(unsigned(4))
    outs = {bits: Signal(signed(bits), name=f"out{bits}") for bits in (3, 5)}
    m = Module()
    m.d.comb += [out.eq(round_saturate(m, value, shift, bits, name=f"rs{bits}"))
                 for bits, out in outs.items()]
    values = np.arange(-256, 256)
    got = {bits: {} for bits in outs}

    async def bench(ctx):
        for s in range(14):
            ctx.set(shift, s)
            for v in values:
                ctx.set(value, int(v))
                for bits, out in outs.items():
                    got[bits][int(v), s] = ctx.get(out)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    for bits in outs:
        for s in range(14):
            want = golden_saturate(golden_round_shift(values, s), bits)
            assert [got[bits][int(v), s] for v in values] == list(want), f"bits {bits} shift {s}"


def test_round_saturate_wide_matches_golden():
    """A 40-bit value (as GELU's and LayerNorm's products are wide) into 8 bits, every
    shift up to 63, on random values and on each side of every power of two, where
    the overflow test and the rounding carry change; combinational and in two
    stages (``en``), whose result comes one clock later."""
    from amaranth.hdl import Module, Signal, signed, unsigned
    from amaranth.sim import Simulator

    from intformer.hw.vector import round_saturate
    from intformer.sw.golden import round_shift as golden_round_shift
    from intformer.sw.golden import saturate as golden_saturate

    width, bits = 40, 8
    value = Signal(signed(width))
    shift = Signal(unsigned(6))
    out = Signal(signed(bits))
    staged = Signal(signed(bits))
    m = Module()
    m.d.comb += [out.eq(round_saturate(m, value, shift, bits)),
                 staged.eq(round_saturate(m, value, shift, bits, name="rs2", en=1))]
    rng = np.random.default_rng(13)
    edges = [sign * ((1 << k) + d) for k in range(width - 1) for d in (-2, -1, 0, 1)
             for sign in (1, -1)]
    values = np.array(sorted({*edges, -(1 << (width - 1)), (1 << (width - 1)) - 1,
                              *rng.integers(-(1 << (width - 1)), 1 << (width - 1), 200)}),
                      dtype=np.int64)
    values = values[(values >= -(1 << (width - 1))) & (values < (1 << (width - 1)))]
    got, got_staged = {}, {}

    async def bench(ctx):
        for s in range(64):
            ctx.set(shift, s)
            for v in values:
                ctx.set(value, int(v))
                got[int(v), s] = ctx.get(out)
                await ctx.tick()
                got_staged[int(v), s] = ctx.get(staged)

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    for s in range(64):
        want = list(golden_saturate(golden_round_shift(values, s), bits))
        assert [got[int(v), s] for v in values] == want, f"shift {s}"
        assert [got_staged[int(v), s] for v in values] == want, f"shift {s}, two stages"
