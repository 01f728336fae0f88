# amaranth: UnusedElaboratable=no
"""GEMM engine (with its own memories) against intformer.sw.golden gemm and requantize:
random shapes (M, K, N of 1, ragged edges, K over many tiles), bias, accumulation,
per-tensor and per-channel requantization, extreme operands that wrap the INT32
accumulator, requantization corners, and random memory-port contention that stalls
every engine port (input gaps and output backpressure)."""

import random

import cocotb
import numpy as np
import pytest

from intformer.gen.bench.gemm_sim import GemmHost
from intformer.gen.sim.drivers import rng
from intformer.sw.golden import MAX_SHIFT, MULT_WIDTH

#: Random shapes per configuration (four configurations: over 200 in all).
SHAPES = 55


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
    assert counters["bubbles"] == 0, f"2x2 tile sequence left bubbles: {counters}"
    if R >= 3:
        assert counters["cycles"] == counters["rows"] + host.p["fill_latency"], counters
    dut._log.info("2x2 tile sequence: %s", counters)
    for _ in range(host.p.get("shapes", SHAPES)):
        a, b, opts = random_case(host, g, r)
        await host.gemm(a, b, r=r, **opts)
        count += 1
    dut._log.info("%d random shapes passed", count)


CONFIGS = {
    "2x2": dict(array_rows=2, array_cols=2),
    "4x8": dict(array_rows=4, array_cols=8),
    "8x4": dict(array_rows=8, array_cols=4),
    "8x8": dict(),
    # rows and columns that are not powers of two; memories sized to whole rows
    "3x5": dict(array_rows=3, array_cols=5, spad_bytes=40960, acc_bytes=20480),
    # two PEs per SB_MAC16 (Yosys's model)
    "4x4_packed": dict(array_rows=4, array_cols=4, dsp_packing=True),
}


def _run(sim, name, shapes=SHAPES):
    from intformer.gen.sim import harness
    from intformer.hw.config import BASE
    from intformer.hw.gemm import GemmUnit

    config = BASE.replace(**CONFIGS[name])
    unit = GemmUnit(config)
    path = harness.build_dir(f"gemm_{name}_{shapes}_{sim}")
    source = harness.emit(unit, path, params={**config.to_dict(), **config.derived(),
                                              "fill_latency": unit.engine.fill_latency,
                                              "shapes": shapes})
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.gemm.test_gemm",
                path=path)


@pytest.mark.parametrize("name", [
    "2x2",
    pytest.param("4x8", marks=pytest.mark.icarus_only),
    pytest.param("8x4", marks=pytest.mark.icarus_only),
    "8x8",
    "4x4_packed",
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
    with pytest.raises(ValueError, match="GEMM engine scale lanes of 32 bits cannot hold a "
                                         "32-bit multiplier and a 6-bit shift"):
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

    out = bench(preset("tiny"), 40, 300, 10, sim=sim)
    assert out["exact"] and out["mismatches"] == 0
    assert out["commands"] > 1
    assert out["tile_sequence"]["bubbles"] == 0
    assert out["cycles"] <= (out["array_rows_in"] + out["commands"] *
                             (out["fill_latency"] + 3))
    assert out["macs"] == 40 * 300 * 10


def test_packing_facts():
    from intformer.hw.config import BASE
    from intformer.hw.gemm import GemmEngine

    plain = GemmEngine(BASE.replace(array_rows=4, array_cols=4)).facts()["array"]
    packed = GemmEngine(BASE.replace(array_rows=4, array_cols=4, dsp_packing=True)).facts()
    assert (plain["dsp_packing"], plain["multipliers"]) == (False, 16)
    assert (packed["array"]["dsp_packing"], packed["array"]["multipliers"]) == (True, 8)
    with pytest.raises(ValueError, match="dsp_packing needs at least 2 PEs to pair, not 1x1"):
        GemmEngine(BASE.replace(array_rows=1, array_cols=1, dsp_packing=True))
