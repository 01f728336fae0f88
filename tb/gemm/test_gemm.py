# amaranth: UnusedElaboratable=no
"""GEMM engine (with its own memories) against intformer.sw.golden gemm and requantize:
random shapes (M, K, N of 1, ragged edges, K over many tiles), bias, accumulation,
per-tensor and per-channel requantization, extreme operands that wrap the INT32
accumulator, requantization corners, and random memory-port contention that stalls
every engine port (input gaps and output backpressure)."""

import math
import random

import cocotb
import numpy as np
import pytest
from cocotb.triggers import FallingEdge, RisingEdge

from intformer.gen.bench.gemm import Layout, plan
from intformer.gen.bench.gemm_sim import GemmHost
from intformer.gen.sim.drivers import rng
from intformer.sw.golden import MAX_SHIFT, MULT_WIDTH, gemm, requantize

#: Random shapes per configuration (four configurations: over 200 in all).
SHAPES = 55
#: Chains of dependent back-to-back commands per configuration.
CHAINS = 6


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


def random_case(host, g, r):
    R, C = host.R, host.C
    kind = r.random()
    m = int(g.integers(1, 3 * R + 3))
    n = int(g.integers(1, 3 * C + 2))
    k = int(g.integers(1, 12 * R + 1)) if kind < 0.25 else int(g.integers(1, 4 * R + 4))
    if r.random() < 0.15:
        m, k, n = r.choice([(1, k, n), (m, 1, n), (m, k, 1), (1, 1, 1)])
    a = g.integers(-128, 128, size=(m, k))
    b = g.integers(-128, 128, size=(k, n))
    bias = g.integers(-2**31, 2**31, size=n) if r.random() < 0.5 else None
    init = g.integers(-2**31, 2**31, size=(m, n)) if r.random() < 0.3 else None
    requant = None
    choice = r.random()
    if choice < 0.35:
        requant = (int(g.integers(0, 2**MULT_WIDTH)), int(g.integers(10, 30)))
    elif choice < 0.7:
        requant = (g.integers(0, 2**MULT_WIDTH, size=n), g.integers(0, 40, size=n))
    return a, b, dict(bias=bias, init=init, requant=requant, noise=r.random() < 0.5)


def extreme_cases(host, g):
    """All -128, all 127 and alternating operands over K of several tiles, started near
    the INT32 limits so the accumulators wrap both ways."""
    R, C = host.R, host.C
    m, k, n = R + 1, 3 * R + 1, C + 1
    alt = np.where(np.indices((m, k)).sum(0) % 2 == 0, 127, -128)
    alt_b = np.where(np.indices((k, n)).sum(0) % 2 == 0, -128, 127)
    top, bottom = 2**31 - 1, -2**31
    for a, b, start in ((np.full((m, k), -128), np.full((k, n), -128), top - 1000),
                        (np.full((m, k), 127), np.full((k, n), -128), bottom + 1000),
                        (np.full((m, k), 127), np.full((k, n), 127), top),
                        (alt, alt_b, bottom),
                        (np.full((m, k), -128), np.full((k, n), 127), 0)):
        yield a, b, dict(init=np.full((m, n), start), noise=False)
        yield a, b, dict(bias=np.full(n, start), noise=True)


def requant_corners(host, g):
    """Accumulators chosen through the initial value (A is zero): rounding ties both
    ways, saturation both ways, shift 0 and the maximum, multipliers 0 and the maximum,
    per channel."""
    C = host.C
    n = 2 * C + 1
    accs = []
    for s in (1, 2, 5, 16):
        for kk in (-3, -1, 1, 3):
            accs.append(kk << (s - 1))
    accs += [2**31 - 1, -2**31, 127, 128, -128, -129, 255, -255, -257, 0, -1, 1]
    vals = np.array(accs, dtype=np.int64)
    m = -(-len(vals) // n) * 2
    init = np.resize(vals, (m, n))
    init[m // 2:] = g.integers(-2**31, 2**31, size=(m - m // 2, n))
    a = np.zeros((m, 3), dtype=np.int64)
    b = g.integers(-128, 128, size=(3, n))
    shifts = np.array([0, 1, 2, 5, 16, MAX_SHIFT, 31, 47] * n)[:n]
    mults = np.array([1, 2**MULT_WIDTH - 1, 0, 1, 1, 2**MULT_WIDTH - 1, 12345, 1] * n)[:n]
    yield a, b, dict(init=init, requant=(mults, shifts))
    yield a, b, dict(init=init, requant=(np.roll(mults, 3), np.roll(shifts, 1)))
    yield a, b, dict(init=init, requant=(2**MULT_WIDTH - 1, MAX_SHIFT))
    yield a, b, dict(init=init, requant=(1, 0))


@cocotb.test()
async def run_gemm(dut):
    host = GemmHost(dut)
    await host.start()
    r = rng()
    g = np.random.default_rng(r.getrandbits(32))
    cocotb.start_soon(host.noise(random.Random(r.getrandbits(32)), 0.3))
    count = 0
    for a, b, opts in requant_corners(host, g):
        await host.gemm(a, b, r=r, **opts)
    for a, b, opts in extreme_cases(host, g):
        await host.gemm(a, b, r=r, **opts)
    # Back-to-back tiles of array_rows rows each must leave no bubble.
    R, C = host.R, host.C
    counters = await host.gemm(g.integers(-128, 128, size=(R, 2 * R)),
                               g.integers(-128, 128, size=(2 * R, 2 * C)), r=r)
    if host.p["small"]:
        # The first row of the second K tile waits for its accumulator row (1 cycle),
        # the second N tile for its constants (5).
        assert counters["bubbles"] <= 6, f"2x2 tile sequence: {counters}"
    else:
        assert counters["bubbles"] == 0, f"2x2 tile sequence left bubbles: {counters}"
    if R >= 3:
        assert counters["cycles"] == counters["rows"] + host.p["fill_latency"], counters
    dut._log.info("2x2 tile sequence: %s", counters)
    for _ in range(host.p.get("shapes", SHAPES)):
        a, b, opts = random_case(host, g, r)
        await host.gemm(a, b, r=r, **opts)
        count += 1
    dut._log.info("%d random shapes passed", count)


async def run_commands(host, cmds: list[dict]) -> int:
    """Send ``cmds`` back to back; wait for every ``done``; return the cycles the
    engine was busy."""
    dut = host.dut
    host.cmd.send([{"accumulate": 0, "use_bias": 0, "requant": 0, "per_channel": 0,
                    "mult": 0, "shift": 0, "bias": 0, "scale": 0, **c} for c in cmds])
    done = busy = 0
    while done < len(cmds):
        await RisingEdge(dut.clk)
        busy += int(dut.busy.value)
        done += int(dut.done.value)
    await FallingEdge(dut.clk)
    return busy


async def chain_case(host, g, r):
    """Commands that each use earlier results, sent back to back so that the engine
    overlaps them: an INT8 result as the next B (and as a later A when its rows have
    the A layout, ``array_rows == array_cols``), an INT32 result row as a bias, and
    a command accumulating onto INT32 rows written two commands before."""
    R, C, ow = host.R, host.C, host.ow
    lanes = host.spad_bits // ow
    spad_bank = host.p["spad_rows"] // host.p["spad_banks"]
    acc_bank = host.p["acc_rows"] // max(2, host.p["acc_banks"])
    free = {0: 0, 1: spad_bank}     # next free scratchpad row in banks 0 and 1
    rows = {}

    def place(bank, mat, width):
        """Put ``mat`` into the scratchpad, ``width`` columns per row; return the
        address and the stride."""
        at = free[bank]
        chunks = _ceil(mat.shape[1], width)
        for i in range(mat.shape[0]):
            for t in range(chunks):
                vals = list(mat[i, t * width:(t + 1) * width])
                vals += [r.randrange(-128, 128) for _ in range(lanes - len(vals))]
                rows[at + i * chunks + t] = host._pack(vals, ow)
        free[bank] += mat.shape[0] * chunks
        return at, chunks

    def reserve(bank, n_rows):
        at = free[bank]
        free[bank] += n_rows
        return at

    def dims(hi_r, hi_c):
        return int(g.integers(1, hi_r)), int(g.integers(1, hi_c))

    m1, k1 = dims(3 * R + 2, 3 * R + 2)
    n1 = int(g.integers(1, 3 * C + 2))
    nt1 = _ceil(n1, C)
    a1 = g.integers(-128, 128, size=(m1, k1))
    b1 = g.integers(-128, 128, size=(k1, n1))
    bias1 = g.integers(-2**12, 2**12, size=n1)
    mult, shift = int(g.integers(2**10, 2**16)), int(g.integers(8, 14))
    a1_at, kt1 = place(0, a1, R)
    b1_at, _ = place(1, b1, C)
    d1_at = reserve(1, m1 * nt1)
    cmds = [dict(a=a1_at, a_stride=kt1, b=b1_at, b_stride=nt1, c=0, c_stride=nt1,
                 d=d1_at, d_stride=nt1, m=m1, k=k1, n=n1, use_bias=1, bias=acc_bank,
                 requant=1, mult=mult, shift=shift)]
    d1 = requantize(gemm(a1, b1, bias1), mult, shift, out_bits=ow)
    # 2: B = D1 (K = m1), INT32 result C2
    m2 = int(g.integers(1, 2 * R + 2))
    a2 = g.integers(-128, 128, size=(m2, m1))
    a2_at, kt2 = place(0, a2, R)
    c2 = m1 * nt1
    cmds.append(dict(a=a2_at, a_stride=kt2, b=d1_at, b_stride=nt1, c=c2, c_stride=nt1,
                     d=0, d_stride=0, m=m2, k=m1, n=n1))
    c2_want = gemm(a2, d1)
    # 3: bias = row 0 of C2
    a3 = g.integers(-128, 128, size=(m2, m1))
    a3_at, _ = place(0, a3, R)
    c3 = c2 + m2 * nt1
    cmds.append(dict(cmds[-1], a=a3_at, c=c3, use_bias=1, bias=c2))
    c3_want = gemm(a3, d1, c2_want[0])
    # 4: accumulate onto C2
    cmds.append(dict(cmds[1], accumulate=1))
    c2_want = gemm(a2, d1, c2_want)
    checks = [("acc", c2, m2, n1, c2_want), ("acc", c3, m2, n1, c3_want)]
    if R == C and lanes >= R:
        # 5: A = D1 (K = n1), requantized into D5
        n5 = int(g.integers(1, 2 * C + 2))
        nt5 = _ceil(n5, C)
        b5 = g.integers(-128, 128, size=(n1, n5))
        b5_at, _ = place(1, b5, C)
        d5_at = reserve(1, m1 * nt5)
        cmds.append(dict(a=d1_at, a_stride=nt1, b=b5_at, b_stride=nt5, c=c3 + m2 * nt1,
                         c_stride=nt5, d=d5_at, d_stride=nt5, m=m1, k=n1, n=n5, requant=1,
                         mult=mult, shift=shift))
        checks.append(("spad", d5_at, m1, n5, requantize(gemm(d1, b5), mult, shift,
                                                         out_bits=ow)))
    await host.write("spad", rows)
    bias_row = list(bias1) + [0] * (nt1 * C - n1)
    await host.write("acc", {acc_bank + t: host._pack(bias_row[t * C:(t + 1) * C],
                                                      host.lane_bits) for t in range(nt1)})
    await run_commands(host, cmds)
    for space, at, m, n, want in checks:
        stride = _ceil(n, C)
        got = await host.result(Layout(a=0, a_stride=0, b=0, b_stride=0, c=at,
                                       c_stride=stride, d=at, d_stride=stride, bias=0,
                                       scale=0), m, n, requant=space == "spad")
        bad = np.argwhere(got != want)
        assert not bad.size, (f"chain from {m1}x{k1}x{n1}: {space} result at {at}: "
                              f"{len(bad)} mismatches, first at {tuple(bad[0])}: got "
                              f"{got[tuple(bad[0])]} want {want[tuple(bad[0])]}")


@cocotb.test()
async def run_chains(dut):
    """Dependent commands back to back, and the overlap of independent ones."""
    host = GemmHost(dut)
    await host.start()
    r = rng()
    g = np.random.default_rng(r.getrandbits(32))
    for _ in range(CHAINS):
        await chain_case(host, g, r)
    # Two independent commands of whole tiles (M >= array_rows hides each weight
    # load): the second one's fill overlaps the first one's drain.
    R, C = host.R, host.C
    mm, kk, nn = max(R, 3), 2 * R, 2 * C
    lay = plan(host.p, mm, kk, nn)
    await host.load(lay, g.integers(-128, 128, size=(mm, kk)),
                    g.integers(-128, 128, size=(kk, nn)), r=r)
    cmd = dict(lay.__dict__, m=mm, k=kk, n=nn)
    one = await run_commands(host, [cmd])
    two = await run_commands(host, [cmd, cmd])
    rows = mm * 4
    dut._log.info("one command %d cycles, two back to back %d (%d rows each)", one, two, rows)
    if host.p["small"]:
        # The small engine takes the next command once the previous one is done.
        assert two == 2 * one, f"overlap in the small engine: one {one} cycles, two {two}"
    else:
        # The next command starts its reads once the previous one has issued its last
        # A row, so its first weight tile (array_rows rows) is loaded while that row
        # drains, not hidden behind it: the array_rows + 1 cycles are the rest of a fill.
        assert two <= one + rows + R + 1, f"no overlap: one command {one} cycles, two {two}"


CONFIGS = {
    "2x2": dict(array_rows=2, array_cols=2),
    "4x8": dict(array_rows=4, array_cols=8),
    "8x4": dict(array_rows=8, array_cols=4),
    "8x8": dict(),
    # rows and columns that are not powers of two (12-byte rows: a 32-bit bus, whose
    # beats divide them); memories sized to whole rows
    "3x12": dict(array_rows=3, array_cols=12, axi_data_width=32, spad_bytes=24576,
                 acc_bytes=12288),
    # two PEs per SB_MAC16 (Yosys's model)
    "4x4_packed": dict(array_rows=4, array_cols=4, dsp_packing=True),
    # the icebreaker array: one column, one SB_MAC16, one accumulator bank
    "2x1_packed": dict(array_rows=2, array_cols=1, dsp_packing=True, acc_banks=1),
}


def _run(sim, name, shapes=SHAPES):
    from intformer.gen.sim import harness
    from intformer.hw.config import BASE
    from intformer.hw.gemm import GemmUnit

    changes = CONFIGS[name]
    shape = BASE.replace(**changes, has_softmax=False, has_gelu=False, has_layernorm=False,
                         has_residual=False)
    # The vector units (not under test) take the widest lanes the rows allow.
    fit = math.gcd(shape.array_cols, shape.spad_row_bytes)
    config = BASE.replace(vector_lanes=fit & -fit, **changes)
    unit = GemmUnit(config)
    path = harness.build_dir(f"gemm_{name}_{shapes}_{sim}")
    source = harness.emit(unit, path, params={**config.to_dict(), **config.derived(),
                                              "fill_latency": unit.engine.fill_latency,
                                              "small": unit.engine.small,
                                              "shapes": shapes})
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.gemm.test_gemm",
                path=path)


@pytest.mark.parametrize("name", [
    "2x2",
    pytest.param("4x8", marks=pytest.mark.icarus_only),
    pytest.param("8x4", marks=pytest.mark.icarus_only),
    pytest.param("8x8", marks=pytest.mark.verilator_slow),
    pytest.param("4x4_packed", marks=pytest.mark.verilator_slow),
    pytest.param("2x1_packed", marks=pytest.mark.icarus_only),
])
def test_gemm(sim, name):
    _run(sim, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(CONFIGS))
def test_gemm_sweep(request, sim, name):
    """Five times the shapes of test_gemm, and a non-power-of-two array."""
    if "slow" not in request.config.getoption("markexpr", ""):
        pytest.skip("long sweep: run with -m slow")
    _run(sim, name, shapes=5 * SHAPES)


def test_gemm_errors():
    from intformer.hw.config import BASE
    from intformer.hw.gemm import GemmEngine, GemmUnit

    with pytest.raises(TypeError, match="GEMM engine config must be a Config, not 8"):
        GemmUnit(8)
    # A multiplier too wide for a scale lane never reaches the engine: Config refuses it.
    with pytest.raises(ValueError, match="requant_mult_width must be between 8 and 16, not 32"):
        GemmEngine(BASE.replace(requant_mult_width=32))


def test_plan_and_blocks():
    from intformer.gen.bench.gemm import choose_blocks, plan
    from intformer.hw.config import BASE

    p = {**BASE.to_dict(), **BASE.derived()}
    assert choose_blocks(p, 256, 512, 256) == (64, 56)
    lay = plan(p, 64, 512, 56)
    assert lay.b == p["spad_rows"] // 2 and lay.d == lay.b + 512 * 7
    with pytest.raises(ValueError, match="GEMM 65x512x8: A needs 4160 rows, its bank has 4096"):
        plan(p, 65, 512, 8)
    with pytest.raises(ValueError, match="GEMM with K = 100000 does not fit the memories"):
        choose_blocks(p, 8, 100000, 8)


@pytest.mark.icarus_only
def test_bench_small(sim):
    """The benchmark end to end on a small problem that needs several blocks."""
    from intformer.gen.bench.gemm import bench
    from intformer.hw.config import preset
    from intformer.hw.gemm import GemmEngine

    config = preset("tiny")
    out = bench(config, 40, 300, 10, sim=sim)
    assert out["exact"] and out["mismatches"] == 0
    assert out["commands"] > 1
    engine = GemmEngine(config)
    per_command = out["fill_latency"] + engine.requant_latency
    cycles = out["array_rows_in"]
    if engine.small:
        # 2x2: commands do not overlap, each N tile reads its constants (5 cycles),
        # each requantized row takes array_cols cycles.
        assert out["tile_sequence"]["bubbles"] <= 6, out["tile_sequence"]
        per_command += 5 * -(-out["blocks"]["n"] // config.array_cols)
        cycles += (engine.requant_row_cycles - 1) * 40 * -(-10 // config.array_cols)
    else:
        assert out["tile_sequence"]["bubbles"] == 0
    assert out["cycles"] <= cycles + out["commands"] * per_command
    assert out["macs"] == 40 * 300 * 10


def test_packing_facts():
    from intformer.hw.config import BASE
    from intformer.hw.gemm import GemmEngine

    plain = GemmEngine(BASE.replace(array_rows=4, array_cols=4, vector_lanes=4)).facts()["array"]
    packed = GemmEngine(BASE.replace(array_rows=4, array_cols=4, vector_lanes=4,
                                         dsp_packing=True)).facts()
    assert (plain["dsp_packing"], plain["multipliers"]) == (False, 16)
    assert (packed["array"]["dsp_packing"], packed["array"]["multipliers"]) == (True, 8)
    with pytest.raises(ValueError, match="dsp_packing needs at least 2 PEs to pair, not 1x1"):
        GemmEngine(BASE.replace(array_rows=1, array_cols=1, dsp_packing=True))
