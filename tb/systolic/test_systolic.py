# amaranth: UnusedElaboratable=no
"""Systolic array against intformer.sw.golden.gemm: random and extreme weight tiles and
activation rows, tiles of 1 to 3 x rows activations, with input gaps on both streams
and output backpressure; a back-to-back tile sequence must leave no bubble."""

import cocotb
import numpy as np
import pytest
from cocotb.triggers import RisingEdge

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
from intformer.sw.golden import gemm


class TB:
    def __init__(self, dut):
        self.dut = dut
        params = load_ports()["params"]
        self.rows, self.cols = params["rows"], params["cols"]
        self.acc_width, self.latency = params["acc_width"], params["latency"]
        start_clock(dut.clk)
        self.a = StreamSource(dut, "a")
        self.w = StreamSource(dut, "w")
        self.sink = StreamSink(dut, "o")
        self.stalls = 0
        self.started = False
        cocotb.start_soon(self._watch())

    async def _watch(self):
        """Count cycles an activation waited for the array after the first one entered."""
        while True:
            await RisingEdge(self.dut.clk)
            valid, ready = int(self.dut.a__valid.value), int(self.dut.a__ready.value)
            if valid and ready:
                self.started = True
            elif valid and self.started:
                self.stalls += 1

    async def reset(self):
        await reset(self.dut)

    def set_idle_generator(self, generator_a, generator_w):
        self.a.set_pause_generator(generator_a)
        self.w.set_pause_generator(generator_w)

    def set_backpressure_generator(self, generator):
        self.sink.set_pause_generator(generator)

    async def check(self, tiles):
        """Run a list of (weights R x C, activations M x R) tiles back to back."""
        tag = 0
        want = []
        for weights, acts in tiles:
            self.w.send([[int(v) for v in row] for row in weights])
            beats = []
            for i, row in enumerate(acts):
                beats.append({"data": [int(v) for v in row], "last": int(i == len(acts) - 1),
                              "tag": tag & 0xFF})
                tag += 1
            self.a.send(beats)
            want.append(gemm(acts, weights, acc_bits=self.acc_width))
        want = np.concatenate(want)
        got = await self.sink.recv(len(want), timeout_cycles=20000)
        got_data = np.array([g["data"] for g in got], dtype=np.int64)
        got_tag = [g["tag"] for g in got]
        assert got_tag == [i & 0xFF for i in range(len(want))], "results out of order"
        bad = np.argwhere(got_data != want)
        assert not bad.size, (f"{len(bad)} mismatches, first at {tuple(bad[0])}: "
                              f"got {got_data[tuple(bad[0])]} want {want[tuple(bad[0])]}")


def random_tiles(tb, r, count, *, min_rows=1):
    g = np.random.default_rng(r.getrandbits(32))
    tiles = []
    for _ in range(count):
        kind = g.integers(0, 5)
        m = int(g.integers(min_rows, 3 * tb.rows + 1))
        shape_w, shape_a = (tb.rows, tb.cols), (m, tb.rows)
        if kind == 0:
            w, a = np.full(shape_w, -128), np.full(shape_a, -128)
        elif kind == 1:
            w, a = np.full(shape_w, -128), np.full(shape_a, 127)
        elif kind == 2:
            alt = np.where((np.indices(shape_a).sum(0) % 2) == 0, 127, -128)
            w, a = np.full(shape_w, 127), alt
        else:
            w, a = g.integers(-128, 128, size=shape_w), g.integers(-128, 128, size=shape_a)
        tiles.append((w, a))
    return tiles


@cocotb.test()
async def run_systolic(dut):
    tb = TB(dut)
    r = rng()
    await tb.reset()

    # Back to back tiles of `rows` activations each, no gaps: no bubble allowed.
    tb.set_idle_generator(None, None)
    tb.set_backpressure_generator(None)
    await tb.check(random_tiles(tb, r, 6, min_rows=tb.rows))
    assert tb.stalls == 0, f"{tb.stalls} bubbles between back-to-back tiles"
    dut._log.info("back-to-back tiles: 0 bubbles")

    for idle in PAUSE_PATTERNS:
        for backpressure in PAUSE_PATTERNS:
            tb.set_idle_generator(pause_generator(idle, r), pause_generator(idle, r))
            tb.set_backpressure_generator(pause_generator(backpressure, r))
            await tb.check(random_tiles(tb, r, 5))
    assert not tb.sink.queue, "unexpected extra output beats"


@pytest.mark.parametrize("rows,cols,packing", [
    (2, 2, False), (4, 8, False),
    pytest.param(8, 4, False, marks=pytest.mark.icarus_only),
    pytest.param(3, 5, False, marks=pytest.mark.icarus_only),
    # Two PEs per SB_MAC16 (Yosys's model); 3x5 leaves one PE alone in a DSP.
    (4, 4, True),
    pytest.param(3, 5, True, marks=pytest.mark.icarus_only),
    # ECP5 MULT18X18D with its operand and product registers (this package's model).
    (3, 4, "ecp5"),
])
def test_systolic(sim, rows, cols, packing):
    from intformer.gen.sim import harness
    from intformer.hw.systolic import SystolicArray

    dut = SystolicArray(rows, cols, tag_width=8, dsp_packing=packing is True,
                        ecp5_dsp=packing == "ecp5")
    kind = {True: "_packed", "ecp5": "_ecp5"}.get(packing, "")
    path = harness.build_dir(f"systolic_{rows}x{cols}{kind}_{sim}")
    source = harness.emit(dut, path, params={"rows": rows, "cols": cols, "acc_width": 32,
                                             "latency": dut.latency})
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="tb.systolic.test_systolic", path=path)


@pytest.mark.parametrize("kwargs,error,message", [
    ({"rows": 0, "cols": 2}, ValueError, "Systolic array rows must be between 1 and 64, not 0"),
    ({"rows": 2, "cols": 2.0}, TypeError, "Systolic array cols must be an integer, not 2.0"),
    ({"rows": 2, "cols": 2, "acc_width": 12}, ValueError,
     "Systolic array acc_width must be at least 2 \\* operand_width \\(16\\), not 12"),
    ({"rows": 2, "cols": 2, "tag_width": -1}, ValueError,
     "Systolic array tag_width must be between 0 and 128, not -1"),
    ({"rows": 2, "cols": 2, "dsp_packing": 1}, TypeError,
     "Systolic array dsp_packing must be a boolean, not 1"),
    ({"rows": 2, "cols": 2, "operand_width": 9, "dsp_packing": True}, ValueError,
     "Systolic array dsp_packing needs operand_width of at most 8 \\(an SB_MAC16 holds "
     "two 8x8 products\\), not 9"),
    ({"rows": 1, "cols": 1, "dsp_packing": True}, ValueError,
     "Systolic array dsp_packing needs at least 2 PEs to pair, not 1x1"),
    ({"rows": 2, "cols": 2, "ecp5_dsp": "yes"}, TypeError,
     "Systolic array ecp5_dsp must be a boolean, not 'yes'"),
    ({"rows": 2, "cols": 2, "ecp5_dsp": True, "dsp_packing": True}, ValueError,
     "Systolic array ecp5_dsp and dsp_packing exclude each other"),
])
def test_systolic_errors(kwargs, error, message):
    from intformer.hw.systolic import SystolicArray

    with pytest.raises(error, match=message):
        SystolicArray(kwargs.pop("rows"), **kwargs)


@pytest.mark.parametrize("rows,cols", [(4, 4), (3, 5), (1, 2)])
def test_packing_structure(rows, cols):
    """With dsp_packing every product comes from an SB_MAC16 in dual 8x8 mode, two PEs
    per DSP: no multiplication is left for synthesis to map on its own."""
    from amaranth.back import verilog

    from intformer.hw.systolic import SystolicArray

    plain = SystolicArray(rows, cols)
    packed = SystolicArray(rows, cols, dsp_packing=True)
    assert (plain.multipliers, packed.multipliers) == (rows * cols, (rows * cols + 1) // 2)
    text = verilog.convert(packed, name="top", emit_src=False)
    assert text.count("SB_MAC16 #(") == packed.multipliers
    assert ".MODE_8x8(1'h1)" in text and ".TOPOUTPUT_SELECT(2'h2)" in text
    # Operands registered inside the DSP, like the plain array's operand registers.
    assert ".A_REG(1'h1)" in text and ".B_REG(1'h1)" in text
    assert " * " not in text
    assert " * " in verilog.convert(plain, name="top", emit_src=False)


def test_packing_needs_ice40_platform():
    from amaranth.hdl import Fragment
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from intformer.hw.systolic import SystolicArray

    Fragment.get(SystolicArray(2, 2, dsp_packing=True), ICEBreakerPlatform())
    Fragment.get(SystolicArray(2, 2), ULX3S_85F_Platform())
    with pytest.raises(ValueError, match="Systolic array dsp_packing needs an iCE40 "
                                         "\\(SiliconBlue\\) platform for its SB_MAC16, "
                                         "not ULX3S_85F_Platform"):
        Fragment.get(SystolicArray(2, 2, dsp_packing=True), ULX3S_85F_Platform())


def test_ecp5_dsp_structure_and_platform():
    """With ecp5_dsp every product comes from a MULT18X18D whose operand and product
    registers are in use; another vendor's platform is refused."""
    from amaranth.back import verilog
    from amaranth.hdl import Fragment
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    from amaranth_boards.ulx3s import ULX3S_85F_Platform

    from intformer.hw.systolic import SystolicArray

    text = verilog.convert(SystolicArray(3, 4, ecp5_dsp=True), name="top", emit_src=False)
    assert text.count("MULT18X18D #(") == 12 and " * " not in text
    for reg in ("REG_INPUTA_CLK", "REG_INPUTB_CLK", "REG_OUTPUT_CLK"):
        assert text.count(f'.{reg}("CLK0")') == 12, reg
    Fragment.get(SystolicArray(2, 2, ecp5_dsp=True), ULX3S_85F_Platform())
    with pytest.raises(ValueError, match="Systolic array ecp5_dsp needs an ECP5 platform for "
                                         "its MULT18X18D, not ICEBreakerPlatform"):
        Fragment.get(SystolicArray(2, 2, ecp5_dsp=True), ICEBreakerPlatform())
