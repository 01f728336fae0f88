"""Cocotb side of the GEMM engine's tests and benchmark: fills the memories of a
``GemmUnit`` through its host ports, runs commands, reads results back.

Runs inside the simulation: imports neither Amaranth nor :mod:`intformer.hw`, and
works on cocotb 1.9 and 2.x. Sizes come from ``ports.json`` params (written by the
harness from the configuration), never retyped.
"""

from __future__ import annotations

import json
import random

import cocotb
import numpy as np
from cocotb.triggers import ClockCycles, FallingEdge, RisingEdge

from intformer.gen.bench.gemm import Layout, plan
from intformer.gen.sim.drivers import StreamSource, reset, start_clock
from intformer.gen.sim.payload import build_path, load_ports
from intformer.sw.golden import gemm, requantize

__all__ = ["GemmHost", "run_bench"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


class GemmHost:
    """Drives a ``GemmUnit``: host memory ports, the command stream, the counters."""

    def __init__(self, dut, params: dict | None = None):
        self.dut = dut
        info = load_ports()
        self.p = params if params is not None else info["params"]
        self.R, self.C = self.p["array_rows"], self.p["array_cols"]
        self.ow, self.aw = self.p["operand_width"], self.p["acc_width"]
        self.mw = self.p["requant_mult_width"]
        self.spad_bits = self.p["spad_row_bytes"] * 8
        self.lane_bits = self.p["acc_row_bytes"] * 8 // self.C
        self.cmd = StreamSource(dut, "cmd", info["ports"])
        for port in ("spad_rd", "spad_wr", "acc_rd", "acc_wr"):
            getattr(dut, f"{port}__en").value = 0
        self.noise_on = False
        self.noise_rows: dict[str, int] = {}
        self.host_cycles = 0

    async def start(self):
        start_clock(self.dut.clk)
        await reset(self.dut)

    # ---- packing ----------------------------------------------------------------------

    def _pack(self, values, bits: int) -> int:
        out = 0
        mask = (1 << bits) - 1
        for i, v in enumerate(values):
            out |= (int(v) & mask) << (i * bits)
        return out

    def _unpack(self, raw: int, bits: int, count: int) -> list[int]:
        out = []
        for i in range(count):
            v = (raw >> (i * bits)) & ((1 << bits) - 1)
            out.append(v - (1 << bits) if v >> (bits - 1) else v)
        return out

    # ---- host ports ---------------------------------------------------------------------

    async def write(self, space: str, rows: dict[int, int]) -> None:
        """Write ``{address: row value}`` through the host write port, one row a cycle."""
        port = "spad_wr" if space == "spad" else "acc_wr"
        en, addr, data, grant = (getattr(self.dut, f"{port}__{s}")
                                 for s in ("en", "addr", "data", "grant"))
        for address, value in rows.items():
            await FallingEdge(self.dut.clk)
            en.value, addr.value, data.value = 1, address, value
            while True:
                await RisingEdge(self.dut.clk)
                self.host_cycles += 1
                if int(grant.value):
                    break
        await FallingEdge(self.dut.clk)
        en.value = 0

    async def read(self, space: str, addresses: list[int]) -> list[int]:
        """Read rows through the host read port, one row a cycle."""
        port = "spad_rd" if space == "spad" else "acc_rd"
        en, addr, data = (getattr(self.dut, f"{port}__{s}") for s in ("en", "addr", "data"))
        out = []
        await FallingEdge(self.dut.clk)
        for i, address in enumerate(addresses):
            en.value, addr.value = 1, address
            await RisingEdge(self.dut.clk)
            self.host_cycles += 1
            await FallingEdge(self.dut.clk)
            if i == len(addresses) - 1:
                en.value = 0
            if not data.value.is_resolvable:
                raise AssertionError(f"{space} row {address}: {data.value}")
            out.append(int(data.value))
        return out

    async def noise(self, r: random.Random, probability: float) -> None:
        """While a command runs, take random memory cycles from the engine with host
        reads of random rows and writes of the rows in ``noise_rows`` (kept unused)."""
        clk = self.dut.clk
        ports = {s: {f: getattr(self.dut, f"{s}__{f}") for f in ("en", "addr")}
                 for s in ("spad_rd", "spad_wr", "acc_rd", "acc_wr")}
        depth = {"spad": self.p["spad_rows"], "acc": self.p["acc_rows"]}
        was_on = False
        while True:
            await FallingEdge(clk)
            if not self.noise_on and not was_on:
                continue
            was_on = self.noise_on
            for name, sig in ports.items():
                space = name.split("_")[0]
                if not self.noise_on or r.random() >= probability:
                    sig["en"].value = 0
                elif name.endswith("rd"):
                    sig["en"].value, sig["addr"].value = 1, r.randrange(depth[space])
                else:
                    rows = self.noise_rows[space]
                    sig["en"].value, sig["addr"].value = 1, r.choice(rows)
                    getattr(self.dut, f"{name}__data").value = 0

    # ---- one GEMM -----------------------------------------------------------------------

    async def load(self, lay: Layout, a, b, *, bias=None, init=None, scale=None,
                   r: random.Random | None = None) -> None:
        """Write A, B, bias, the per-channel constants and the initial accumulator rows.
        Padding lanes get random bytes: the engine must not use them."""
        r = r or random.Random(0)
        m, k = a.shape
        n = b.shape[1]
        R, C = self.R, self.C
        kt, nt = _ceil(k, R), _ceil(n, C)
        lanes = self.spad_bits // self.ow

        def spad_row(vals):
            vals = list(vals) + [r.randrange(-128, 128) for _ in range(lanes - len(vals))]
            return self._pack(vals, self.ow)

        rows = {}
        for i in range(m):
            for t in range(kt):
                rows[lay.a + i * lay.a_stride + t] = spad_row(a[i, t * R:(t + 1) * R])
        for kk in range(k):
            for t in range(nt):
                rows[lay.b + kk * lay.b_stride + t] = spad_row(b[kk, t * C:(t + 1) * C])
        await self.write("spad", rows)
        acc = {}

        def acc_row(vals):
            vals = list(vals) + [r.randrange(-1000, 1000) for _ in range(C - len(vals))]
            return self._pack(vals, self.lane_bits)

        for t in range(nt):
            if bias is not None:
                acc[lay.bias + t] = acc_row(bias[t * C:(t + 1) * C])
            if scale is not None:
                mult, shift = scale
                lanes_v = [int(mu) | (int(s) << self.mw)
                           for mu, s in zip(mult[t * C:(t + 1) * C], shift[t * C:(t + 1) * C],
                                            strict=True)]
                acc[lay.scale + t] = self._pack(lanes_v + [0] * (C - len(lanes_v)),
                                                self.lane_bits)
        if init is not None:
            for i in range(m):
                for t in range(nt):
                    acc[lay.c + i * lay.c_stride + t] = acc_row(init[i, t * C:(t + 1) * C])
        await self.write("acc", acc)

    async def command(self, lay: Layout, m: int, k: int, n: int, *, accumulate=False,
                      use_bias=False, requant=False, per_channel=False, mult=0,
                      shift=0) -> dict:
        """Run one command; return the engine's counters."""
        self.cmd.send([{**lay.__dict__, "m": m, "k": k, "n": n, "accumulate": int(accumulate),
                        "use_bias": int(use_bias), "requant": int(requant),
                        "per_channel": int(per_channel), "mult": int(mult),
                        "shift": int(shift)}])
        await RisingEdge(self.dut.busy)
        await FallingEdge(self.dut.busy)
        # the counters take their last step at the edge that clears busy: read them
        # once that edge has settled
        await FallingEdge(self.dut.clk)
        return {"cycles": int(self.dut.cycles.value), "rows": int(self.dut.rows.value),
                "bubbles": int(self.dut.bubbles.value)}

    async def result(self, lay: Layout, m: int, n: int, *, requant: bool):
        """The (m, n) result matrix: INT8 from the scratchpad or INT32 from the
        accumulator."""
        C = self.C
        nt = _ceil(n, C)
        if requant:
            addrs = [lay.d + i * lay.d_stride + t for i in range(m) for t in range(nt)]
            raw = await self.read("spad", addrs)
            bits, count = self.ow, self.spad_bits // self.ow
        else:
            addrs = [lay.c + i * lay.c_stride + t for i in range(m) for t in range(nt)]
            raw = await self.read("acc", addrs)
            bits, count = self.lane_bits, C
        out = np.zeros((m, nt * C), dtype=np.int64)
        for idx, value in enumerate(raw):
            i, t = divmod(idx, nt)
            out[i, t * C:(t + 1) * C] = self._unpack(value, bits, count)[:C]
        return out[:, :n]

    async def gemm(self, a, b, *, bias=None, init=None, requant=None, lay=None,
                   r: random.Random | None = None, noise: bool = False) -> dict:
        """Load, run and check one GEMM against the golden model. ``requant`` is None
        (INT32 result) or ``(mult, shift)`` with ints (per tensor) or arrays (per
        channel); ``noise`` lets :meth:`noise` take memory cycles meanwhile. Returns
        the counters."""
        m, k = a.shape
        n = b.shape[1]
        lay = lay or plan(self.p, m, k, n)
        per_channel = requant is not None and np.ndim(requant[0]) > 0
        await self.load(lay, a, b, bias=bias, init=init,
                        scale=requant if per_channel else None, r=r)
        self.noise_rows = {"spad": [self.p["spad_rows"] - 1], "acc": [self.p["acc_rows"] - 1]}
        self.noise_on = noise
        counters = await self.command(
            lay, m, k, n, accumulate=init is not None, use_bias=bias is not None,
            requant=requant is not None, per_channel=per_channel,
            mult=0 if requant is None or per_channel else requant[0],
            shift=0 if requant is None or per_channel else requant[1])
        self.noise_on = False
        # let noise() withdraw its requests before the host ports are used again
        await ClockCycles(self.dut.clk, 2)
        got = await self.result(lay, m, n, requant=requant is not None)
        start = np.zeros((m, n), dtype=np.int64) if init is None else init
        full_bias = start + (0 if bias is None else np.asarray(bias, dtype=np.int64))
        want = gemm(a, b, full_bias, acc_bits=self.aw)
        if requant is not None:
            want = requantize(want, requant[0], requant[1], out_bits=self.ow)
        bad = np.argwhere(got != want)
        assert not bad.size, (f"GEMM {m}x{k}x{n} bias={bias is not None} "
                              f"accumulate={init is not None} requant={requant is not None}: "
                              f"{len(bad)} mismatches, first at {tuple(bad[0])}: got "
                              f"{got[tuple(bad[0])]} want {want[tuple(bad[0])]}")
        assert counters["rows"] == m * _ceil(k, self.R) * _ceil(n, self.C), counters
        return counters


def _blocks(total: int, size: int) -> list[tuple[int, int]]:
    return [(s, min(size, total - s)) for s in range(0, total, size)]


async def run_bench(dut) -> None:
    """The ``intformer bench gemm`` simulation: one GEMM of the requested shape, split
    into blocks that fit the memories as a compiler would, every block checked
    bit-exactly; then a 2 x 2 tile sequence for the bubble check. Writes
    ``bench.json`` into the build folder."""
    host = GemmHost(dut)
    await host.start()
    p = host.p
    job = p["bench"]
    m, k, n, seed = job["m"], job["k"], job["n"], job["seed"]
    mb, nb = job["m_block"], job["n_block"]
    g = np.random.default_rng(seed)
    a = g.integers(-128, 128, size=(m, k))
    b = g.integers(-128, 128, size=(k, n))
    bias = g.integers(-2**20, 2**20, size=n)
    mult = g.integers(2**14, 2**16, size=n)
    shift = g.integers(16, 24, size=n)
    c_int8 = np.zeros((m, n), dtype=np.int64)
    engine_cycles = rows = bubbles = 0
    commands = 0
    host.host_cycles = 0
    r = random.Random(seed)
    for n0, nn in _blocks(n, nb):
        for m0, mm in _blocks(m, mb):
            lay = plan(p, mm, k, nn)
            await host.load(lay, a[m0:m0 + mm], b[:, n0:n0 + nn], bias=bias[n0:n0 + nn],
                            scale=(mult[n0:n0 + nn], shift[n0:n0 + nn]), r=r)
            counters = await host.command(lay, mm, k, nn, use_bias=True, requant=True,
                                          per_channel=True)
            engine_cycles += counters["cycles"]
            rows += counters["rows"]
            bubbles += counters["bubbles"]
            commands += 1
            c_int8[m0:m0 + mm, n0:n0 + nn] = await host.result(lay, mm, nn, requant=True)
    want = requantize(gemm(a, b, bias, acc_bits=host.aw), mult, shift, out_bits=host.ow)
    mismatches = int(np.count_nonzero(c_int8 != want))

    # 2 x 2 tile sequence: K = 2 tiles, N = 2 tiles, M = the tile rows that hide the
    # weight load (array_rows), back to back.
    R, C = host.R, host.C
    tm, tk, tn = max(R, 2), 2 * R, 2 * C
    lay = plan(p, tm, tk, tn)
    tiles = await host.gemm(g.integers(-128, 128, size=(tm, tk)),
                            g.integers(-128, 128, size=(tk, tn)), lay=lay, r=r)
    macs = m * k * n
    out = {
        "m": m, "k": k, "n": n, "array": f"{R}x{C}",
        "commands": commands, "blocks": {"m": mb, "n": nb, "k": k},
        "cycles": engine_cycles, "macs": macs, "macs_per_cycle": macs / engine_cycles,
        "utilization": macs / (R * C * engine_cycles),
        "array_rows_in": rows, "bubbles": bubbles,
        "exact": mismatches == 0, "mismatches": mismatches,
        "data_loading": ("operands written row by row through the unit's host write port "
                         "between commands (like a DMA); those cycles are not engine cycles"),
        "host_cycles": host.host_cycles,
        "tile_sequence": {"m": tm, "k": tk, "n": tn, "tiles": "2x2", **tiles},
    }
    (build_path() / "bench.json").write_text(json.dumps(out, indent=1))
    assert mismatches == 0, f"{mismatches} mismatches against the golden model"


@cocotb.test()
async def bench_gemm(dut):
    await run_bench(dut)
