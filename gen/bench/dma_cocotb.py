"""Simulation side of ``intformer bench dma`` (no Amaranth imports: runs under cocotb
1.9 and 2.x).

Against an always-ready cocotbext-axi ``AxiRam`` it times one read job, one write job
and both at once, each moving ``INTFORMER_BENCH_BYTES`` bytes as one contiguous row,
checks every byte moved, and writes ``bench.json`` into the build folder.
"""

from __future__ import annotations

import json

import cocotb
from cocotb.triggers import RisingEdge
from cocotbext.axi import AxiBus, AxiRam

from intformer.gen.sim.drivers import StreamSink, StreamSource, reset, rng, start_clock
from intformer.gen.sim.payload import build_path, load_ports

READ_BASE = 0x10000
WRITE_BASE = 0x100000


class _Timer:
    """Counts cycles from a descriptor handshake to the status handshake."""

    def __init__(self, dut, prefix):
        self.clk = dut.clk
        self.desc_valid = getattr(dut, f"{prefix}_desc__valid")
        self.desc_ready = getattr(dut, f"{prefix}_desc__ready")
        self.st_valid = getattr(dut, f"{prefix}_status__valid")
        self.st_ready = getattr(dut, f"{prefix}_status__ready")

    async def measure(self) -> int:
        start = None
        cycle = 0
        while True:
            await RisingEdge(self.clk)
            cycle += 1
            if start is None and int(self.desc_valid.value) and int(self.desc_ready.value):
                start = cycle
            if start is not None and int(self.st_valid.value) and int(self.st_ready.value):
                return cycle - start


@cocotb.test()
async def bench_dma(dut):
    info = load_ports()
    params = info["params"]
    nbytes = params["bench_bytes"]
    B = params["bytes_per_beat"]
    r = rng()
    for name in ("clk", "rst", *info["ports"]):
        # Bind port handles before from_prefix probes missing signals (see
        # tb/axi/memory.py: cocotb 1.9 + Verilator loses writes otherwise).
        getattr(dut, name)
    dut.rst.value = 1
    start_clock(dut.clk)
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, size=1 << 21)
    for name in ("rvalid", "bvalid", "arready", "awready", "wready"):
        getattr(dut, f"m_axi_{name}").value = 0
    dut.soft_reset.value = 0
    dut.window_base.value = 0
    dut.window_limit.value = 1 << 21
    rd_desc, wr_desc = StreamSource(dut, "rd_desc"), StreamSource(dut, "wr_desc")
    wr_data = StreamSource(dut, "wr_data")
    rd_data, rd_status, wr_status = (StreamSink(dut, n) for n in
                                     ("rd_data", "rd_status", "wr_status"))
    await reset(dut)

    source = r.randbytes(nbytes)
    ram.write(READ_BASE, source)
    beats = nbytes // B

    async def read():
        timer = cocotb.start_soon(_Timer(dut, "rd").measure())
        rd_desc.send([{"addr": READ_BASE, "stride": 0, "rows": 1, "row_bytes": nbytes,
                       "tag": 1}])
        got = await rd_data.recv(beats, timeout_cycles=20 * beats)
        status = (await rd_status.recv(1))[0]
        assert status["error"] == 0, f"read failed: {status}"
        data = b"".join(v.to_bytes(B, "little") for v in got)
        assert data == source, "read data differ from memory"
        return await timer

    async def write():
        payload = r.randbytes(nbytes)
        wr_data.send([int.from_bytes(payload[k:k + B], "little") for k in range(0, nbytes, B)])
        timer = cocotb.start_soon(_Timer(dut, "wr").measure())
        wr_desc.send([{"addr": WRITE_BASE, "stride": 0, "rows": 1, "row_bytes": nbytes,
                       "tag": 2}])
        status = (await wr_status.recv(1, timeout_cycles=20 * beats))[0]
        assert status["error"] == 0, f"write failed: {status}"
        assert ram.read(WRITE_BASE, nbytes) == payload, "memory differs from written data"
        return await timer

    results = {"read": await read(), "write": await write()}
    both = cocotb.start_soon(read())
    results["write_concurrent"] = await write()
    results["read_concurrent"] = await both
    (build_path() / "bench.json").write_text(json.dumps(results))
