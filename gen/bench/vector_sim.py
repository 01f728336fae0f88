"""Simulation side of the vector units (GELU, residual add, Softmax, LayerNorm):
rows to beats and back, constants, and the ``intformer bench`` cocotb test.

Runs inside cocotb (1.9 or 2.x): imports neither Amaranth nor :mod:`intformer.hw`.
Parameters come from ``ports.json`` (``params``), written by the harness.
"""

from __future__ import annotations

import json

import cocotb
import numpy as np
from cocotb.triggers import FallingEdge, RisingEdge

from intformer.gen.sim.drivers import StreamSink, StreamSource, reset, rng, start_clock
from intformer.gen.sim.payload import Packer, build_path, load_ports
from intformer.sw import golden

__all__ = ["rows_to_beats", "beats_to_rows", "VectorTB", "golden_rows", "params_for",
           "random_scales", "run_bench", "gb_beats", "layernorm_row_params"]


def rows_to_beats(rows, lanes: int, *, extra_rows=None, extra_key: str = "b") -> list[dict]:
    """Beats of the rows (lists of ints): ``lanes`` elements each, the last beat of a
    row partial (``count``) and marked ``last``; ``extra_rows`` go into field
    ``extra_key`` beside ``data`` (the second operand of the residual add)."""
    beats = []
    for r, row in enumerate(rows):
        row = [int(v) for v in row]
        other = None if extra_rows is None else [int(v) for v in extra_rows[r]]
        for start in range(0, len(row), lanes):
            chunk = row[start:start + lanes]
            beat = {"data": chunk + [0] * (lanes - len(chunk)), "count": len(chunk),
                    "last": int(start + lanes >= len(row))}
            if other is not None:
                part = other[start:start + lanes]
                beat[extra_key] = part + [0] * (lanes - len(part))
            beats.append(beat)
    return beats


def beats_to_rows(beats) -> list[list[int]]:
    """Rows from output beats; checks that lanes at or above ``count`` are 0."""
    rows, current = [], []
    for beat in beats:
        n = beat["count"]
        assert 1 <= n <= len(beat["data"]), f"output beat count {n} out of range"
        assert all(v == 0 for v in beat["data"][n:]), f"lanes past count not 0: {beat}"
        current += beat["data"][:n]
        if beat["last"]:
            rows.append(current)
            current = []
    assert not current, "output ended inside a row"
    return rows


def random_scales(r, unit: str) -> tuple:
    """Realistic scales for ``unit``, drawn log-uniformly."""
    def logu(lo, hi):
        return float(np.exp(r.uniform(np.log(lo), np.log(hi))))
    if unit == "gelu":
        return (logu(1e-5, 0.1), logu(5e-3, 0.2))
    if unit == "softmax":
        return (logu(1e-5, 0.5),)
    if unit == "residual":
        return (logu(5e-3, 0.2), logu(5e-3, 0.2), logu(5e-3, 0.2))
    raise ValueError(f"Unknown vector unit {unit!r}")


def params_for(unit: str, scales: tuple):
    """The golden params object for ``unit`` from its scales."""
    return {"gelu": golden.gelu_params, "softmax": golden.softmax_params,
            "residual": golden.residual_params}[unit](*scales)


def layernorm_row_params(p, length: int):
    """The constants of a ``length``-element row taken from params ``p`` of a longer
    row: the same eps and shift, the first ``length`` gamma/beta."""
    return golden.LayerNormParams(eps_q=p.eps_q, gamma_q=p.gamma_q[:length],
                                  beta_q=p.beta_q[:length], shift=p.shift)


def gb_beats(row_params, lanes: int) -> list[dict]:
    """``gb`` side-stream beats (gamma/beta per output beat) for rows with these params."""
    beats = []
    for p in row_params:
        for start in range(0, p.length, lanes):
            g = list(p.gamma_q[start:start + lanes])
            b = list(p.beta_q[start:start + lanes])
            beats.append({"gamma": g + [0] * (lanes - len(g)), "beta": b + [0] * (lanes - len(b))})
    return beats


def golden_rows(unit: str, p, rows, other_rows=None) -> list[list[int]]:
    """Expected output rows (for LayerNorm ``p`` is a list of per-row params)."""
    out = []
    for k, row in enumerate(rows):
        x = np.array(row, dtype=np.int64)
        if unit == "gelu":
            y = golden.gelu(x, p)
        elif unit == "softmax":
            y = golden.softmax(x, p)
        elif unit == "residual":
            y = golden.residual_add(x, np.array(other_rows[k], dtype=np.int64), p)
        elif unit == "layernorm":
            y = golden.layernorm(x, p[k])
        else:
            raise ValueError(f"Unknown vector unit {unit!r}")
        out.append([int(v) for v in y])
    return out


class VectorTB:
    """Clock, reset, the ``i``/``o`` streams and the ``consts`` port of a vector unit."""

    def __init__(self, dut, *, side: str | None = None):
        self.dut = dut
        info = load_ports()
        self.params = info["params"]
        self.lanes = self.params["lanes"]
        self.ports = info["ports"]
        start_clock(dut.clk)
        self.source = StreamSource(dut, "i")
        self.sink = StreamSink(dut, "o")
        self.side = StreamSource(dut, side) if side else None
        self._consts = Packer(self.ports["consts"]) if "consts" in self.ports else None

    async def reset(self):
        await reset(self.dut)

    def set_consts(self, values: dict) -> None:
        """Drive the ``consts`` port from a params dataclass's fields (by name)."""
        self.dut.consts.value = self._consts.pack(values)

    def set_idle_generator(self, generator):
        self.source.set_pause_generator(generator)
        if self.side is not None:
            self.side.set_pause_generator(generator)

    def set_backpressure_generator(self, generator):
        self.sink.set_pause_generator(generator)

    async def run_rows(self, rows, *, extra_rows=None, side_beats=None,
                       timeout_cycles: int = 200000):
        """Send rows (and ``side_beats`` on the side stream), return the output rows."""
        beats = rows_to_beats(rows, self.lanes, extra_rows=extra_rows)
        if side_beats is not None:
            self.side.send(side_beats)
        self.source.send(beats)
        out_beats = await self.sink.recv(len(beats), timeout_cycles=timeout_cycles)
        return beats_to_rows(out_beats)


@cocotb.test()
async def run_bench(dut):
    """``intformer bench``: stream rows back to back, measure, check bit-exactly,
    write ``bench.json`` into the build folder."""
    tb = VectorTB(dut, side=load_ports()["params"].get("side"))
    params = tb.params
    unit, length, nrows = params["unit"], params["length"], params["rows"]
    r = rng()
    g = np.random.default_rng(r.getrandbits(32))
    await tb.reset()
    width = params["in_width"]
    rows = [list(g.integers(-(1 << (width - 1)), 1 << (width - 1), length)) for _ in range(nrows)]
    if unit == "layernorm":
        one = golden.layernorm_params(params["scales"][0], g.normal(1, 0.2, length),
                                      g.normal(0, 0.2, length), params["scales"][1])
        tb.set_consts({"eps_q": one.eps_q, "shift": one.shift})
        p = [one] * nrows
        tb.side.send(gb_beats(p, tb.lanes))
    else:
        p = params_for(unit, tuple(params["scales"]))
        tb.set_consts(p.__dict__)
    beats = rows_to_beats(rows, tb.lanes)
    tb.source.send(beats)
    # Handshakes are sampled at the falling edge, half a cycle before the rising
    # edge that completes them, where every signal is settled.
    first_in = first_out = last_out = None
    seen = cycle = 0
    while seen < len(beats):
        await FallingEdge(dut.clk)
        if first_in is None and int(dut.i__valid.value) and int(dut.i__ready.value):
            first_in = cycle
        if int(dut.o__valid.value) and int(dut.o__ready.value):
            seen += 1
            first_out = cycle if first_out is None else first_out
            last_out = cycle
        cycle += 1
        if cycle > 100 * len(beats) + 10000:
            raise AssertionError("bench timed out")
    await RisingEdge(dut.clk)
    got = beats_to_rows([tb.sink.queue.popleft() for _ in range(len(beats))])
    want = golden_rows(unit, p, rows)
    mismatches = sum(int(a != b) for ra, rb in zip(got, want, strict=True)
                     for a, b in zip(ra, rb, strict=True))
    cycles = last_out - first_in + 1
    steady = last_out - first_out
    result = {"unit": unit, "lanes": tb.lanes, "length": length, "rows": nrows,
              "elements": length * nrows, "cycles": cycles,
              "elements_per_cycle": length * nrows / cycles,
              "efficiency": length * nrows / cycles / tb.lanes,
              "sustained_elements_per_cycle": ((length * nrows - min(length, tb.lanes)) / steady
                                               if steady else float(length * nrows)),
              "latency_cycles": first_out - first_in, "mismatches": mismatches,
              "bit_exact": mismatches == 0}
    (build_path() / "bench.json").write_text(json.dumps(result))
    assert mismatches == 0, f"{mismatches} outputs differ from the golden model"
