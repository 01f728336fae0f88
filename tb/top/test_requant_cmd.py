"""The ``requant`` command on the accelerator core: random INT32 tensors loaded into the
accumulator, requantized to INT8 per tensor and per channel (intformer.sw.compile's
Program.requant, one command per column tile) and stored, compared with
intformer.sw.golden.requantize, on a cocotbext-axi AxiRam with random pauses on every
AXI channel; then malformed requant commands end with their error codes and the next
good stream runs. Without the unit (``has_requant`` off) a requant command ends the
stream with ``unit_absent`` and the next stream runs."""

import cocotb
import numpy as np
import pytest

from intformer.gen.sim.drivers import reset
from intformer.sw.commands import Checker
from intformer.sw.compile import Program
from intformer.sw.golden import quantize_multiplier, requantize
from tb.top.test_core import TB, roundtrip


def constants(tb: TB, n: int):
    """``n`` (multiplier, shift) pairs: from random scales, and the extremes."""
    r = tb.r
    out = []
    for _ in range(n):
        kind = r.random()
        if kind < 0.1:
            out.append((r.choice([0, 1, (1 << 16) - 1]), r.choice([0, 1, 31, 63])))
        else:
            out.append(quantize_multiplier(2.0 ** r.uniform(-24, -2)))
    return out


def int32(tb: TB, rows: int, cols: int):
    kind = tb.r.random()
    if kind < 0.1:
        return np.full((rows, cols), tb.r.choice([-(1 << 31), (1 << 31) - 1]), dtype=np.int32)
    bits = tb.r.choice([8, 16, 24, 31])
    return tb.g.integers(-(1 << bits), 1 << bits, size=(rows, cols)).astype(np.int32)


async def requant_case(tb: TB, *, per_channel: bool):
    r, C = tb.r, tb.man["config"]["array_cols"]
    M, N = r.randrange(1, 12), r.randrange(1, 3 * C + 1)
    prog = Program(tb.man)
    acc = int32(tb, M, N)
    a = prog.place(acc)
    out = prog.reserve(M, N, np.int8)
    if per_channel:
        ms, ss = zip(*constants(tb, N), strict=True)
        mult, shift = np.array(ms), np.array(ss)
        scale = prog.place((mult | (shift << 16)).astype(np.int32)[None, :])
        prog.requant(a, out, scale=scale)
    else:
        (mult, shift), = constants(tb, 1)
        prog.requant(a, out, mult=mult, shift=shift)
    prog.end()
    image = await tb.run(prog, guard_outputs=[out])
    got = prog.read(image, out)
    want = requantize(acc, mult, shift)
    bad = np.argwhere(got != want)
    assert not bad.size, (f"{M}x{N} per_channel={per_channel}: {len(bad)} of {want.size} "
                          f"differ, first at {tuple(bad[0])}: got {got[tuple(bad[0])]} "
                          f"want {want[tuple(bad[0])]}")


async def requant_absent(tb: TB):
    """The design has no requant unit: every requant command ends its stream with
    unit_absent, as the Checker says, and never hangs."""
    checker = Checker(tb.man)
    full = {f: 0 for f in tb.man["commands"]["opcodes"]["requant"]["fields"]}
    for fields in (dict(rows=1), dict(rows=2, per_channel=1, mult=3, shift=1)):
        assert checker.error("requant", {**full, **fields}, window_bytes=1 << 20) == \
            "unit_absent"
        prog = Program(tb.man)
        prog.emit("requant", **fields)
        prog.end()
        await tb.run(prog, expect="unit_absent")
        await roundtrip(tb)


@cocotb.test()
async def requant_commands(dut):
    tb = TB(dut)
    await reset(dut)
    if "requant" not in tb.man["commands"]["implemented"]:
        await requant_absent(tb)
        return
    cases = 0
    for pauses in ("none", "random", "alternate"):
        tb.set_pauses(pauses)
        for i in range(6):
            await requant_case(tb, per_channel=i % 2 == 1)
            cases += 1
    # Malformed requant commands: the hardware's code is the Checker's, and the next
    # good stream runs.
    d = tb.man["derived"]
    checker = Checker(tb.man)
    for fields, expect in ((dict(rows=0), "zero_length"),
                           (dict(rows=2, src=d["acc_rows"] - 1), "acc_range"),
                           (dict(rows=3, dst=d["spad_rows"] - 4, dst_stride=2), "spad_range"),
                           (dict(rows=1, per_channel=1, scale=d["acc_rows"]), "acc_range")):
        full = {f: 0 for f in tb.man["commands"]["opcodes"]["requant"]["fields"]}
        assert checker.error("requant", {**full, **fields}, window_bytes=1 << 20) == expect
        prog = Program(tb.man)
        prog.emit("requant", **fields)
        prog.end()
        await tb.run(prog, expect=expect)
        await requant_case(tb, per_channel=True)
        cases += 1
    # The same stream without per_channel ignores an out-of-range scale row.
    prog = Program(tb.man)
    prog.emit("requant", rows=1, scale=d["acc_rows"])
    prog.end()
    await tb.run(prog)
    assert cases == 22


CONFIGS = {"tiny": ("tiny", {}), "default": ("default", {}),
           "wide_rows": ("default", {"array_rows": 8, "array_cols": 4, "axi_data_width": 128,
                                       "vector_lanes": 4}),
           "absent": ("tiny", {"has_requant": False})}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.icarus_only] if n != "tiny" else [])
    for n in CONFIGS])
def test_requant_cmd(sim, name):
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.config import preset
    from intformer.hw.top import COUNTERS, AcceleratorCore, implemented
    from tb.top.test_core import _manifest

    base, changes = CONFIGS[name]
    config = preset(base).replace(**changes)
    assert ("requant" in implemented(config)) == config.has_requant
    core = AcceleratorCore(config)
    dut = FlatPorts(core, flatten=("m_axi",))
    path = harness.build_dir(f"requant_cmd_{name}_{sim}")
    source = harness.emit(dut, path, params={"manifest": _manifest(core, config),
                                             "counters": list(COUNTERS)})
    if sim == "icarus":
        from tb.top.icarus import kick_comb_blocks
        assert kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="tb.top.test_requant_cmd", path=path)


def test_requant_executor_errors():
    from intformer.hw.config import preset
    from intformer.hw.requantexec import RequantExecutor
    with pytest.raises(TypeError, match=r"Requant executor config must be a Config, not 'x'"):
        RequantExecutor("x")
    # Config refuses lanes the executor cannot read.
    with pytest.raises(ValueError, match=r"has_requant needs acc_width a multiple of 8 "
                                         r"\(the requant unit reads lanes of acc_width bits\)"):
        RequantExecutor(preset("tiny").replace(acc_width=22))
    prog = Program(_tiny_manifest())
    a = prog.reserve(2, 3, np.int32)
    with pytest.raises(ValueError, match=r"requant takes an int32 tensor to an int8 one of "
                                         r"the same shape"):
        prog.requant(a, prog.reserve(2, 4, np.int8))


def _tiny_manifest():
    from intformer.hw.config import preset
    from intformer.hw.top import AcceleratorCore
    from tb.top.test_core import _manifest
    config = preset("tiny")
    return _manifest(AcceleratorCore(config), config)
