"""DMA read and write engines against a cocotbext-axi memory with pauses on every
channel: random 2-D jobs checked byte-exactly with guard bytes, concurrent reads and
writes, backpressure on the internal streams, SLVERR/DECERR regions, out-of-window
jobs and soft reset mid-transfer, each followed by a normal job; a protocol checker
watches the AXI manager port throughout."""

import cocotb
import pytest
from cocotb.triggers import ClockCycles, RisingEdge
from cocotbext.axi import AxiBus, AxiResp

from intformer.gen.sim.drivers import (
    StreamSink,
    StreamSource,
    pause_generator,
    reset,
    rng,
    start_clock,
    wait_until,
)
from intformer.gen.sim.payload import load_ports
from tb.axi.checker import AxiMasterChecker
from tb.axi.memory import ErrorRam, bind_ports
from tb.dma.model import beats_per_job, pack_rows, row_spans, unpack_rows

MEM_SIZE = 1 << 18
READ_AREA = (0x00000, 0x20000)
WRITE_AREA = (0x20000, 0x40000)
GUARD = 48


class TB:
    def __init__(self, dut):
        self.dut = dut
        info = load_ports()
        self.p = info["params"]
        self.B = self.p["bytes_per_beat"]
        self.errors = self.p["errors"]
        self.r = rng()
        dut.rst.value = 1
        start_clock(dut.clk)
        bind_ports(dut, info["ports"])
        self.ram = ErrorRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, MEM_SIZE)
        for name in ("rvalid", "bvalid", "arready", "awready", "wready"):
            getattr(dut, f"m_axi_{name}").value = 0
        self.checker = AxiMasterChecker(dut, "m_axi", bytes_per_beat=self.B,
                                        max_burst=self.p["max_burst"],
                                        max_outstanding=self.p["max_outstanding"])
        self.rd_desc = StreamSource(dut, "rd_desc")
        self.wr_desc = StreamSource(dut, "wr_desc")
        self.wr_data = StreamSource(dut, "wr_data")
        self.rd_data = StreamSink(dut, "rd_data")
        self.rd_status = StreamSink(dut, "rd_status")
        self.wr_status = StreamSink(dut, "wr_status")
        dut.soft_reset.value = 0
        self.set_window(0, MEM_SIZE)
        # Random bytes everywhere, so every lane of every read beat is checkable.
        self.ram.write(0, self.r.randbytes(MEM_SIZE))

    def set_window(self, base, limit):
        self.dut.window_base.value = base
        self.dut.window_limit.value = limit

    async def reset(self):
        await reset(self.dut)

    def set_idle_generator(self, name):
        self.ram.set_pause_generators(lambda: pause_generator(name, self.r))
        self.wr_data.set_pause_generator(pause_generator(name, self.r))

    def set_backpressure_generator(self, name):
        self.rd_data.set_pause_generator(pause_generator(name, self.r))
        self.rd_status.set_pause_generator(pause_generator(name, self.r))
        self.wr_status.set_pause_generator(pause_generator(name, self.r))

    def assert_protocol(self):
        assert not self.checker.errors, "AXI protocol violations:\n" + \
            "\n".join(self.checker.errors)

    # Jobs ---------------------------------------------------------------------------

    def random_job(self, area, *, write):
        r, B = self.r, self.B
        span = self.p["burst_span"]
        choice = r.random()
        if choice < 0.05:
            rows, row_bytes = r.choice([(0, r.randint(1, 40)), (r.randint(1, 4), 0)])
        elif choice < 0.55:
            rows, row_bytes = r.randint(1, 6), r.randint(1, 4 * B)
        elif choice < 0.9:
            rows, row_bytes = r.randint(1, 3), r.randint(1, min(span + 3 * B, 1500))
        else:
            rows, row_bytes = 1, r.randint(span, min(3 * span, 9000))
        gap = r.choice([0, 0, r.randint(1, 3 * B), r.randint(B, 200)])
        if not write and r.random() < 0.2:
            gap = -r.randint(0, max(row_bytes - 1, 0))   # rows may overlap when reading
        stride = max(row_bytes + gap, 0)
        extent = (max(rows, 1) - 1) * stride + row_bytes
        lo, hi = area[0] + GUARD, area[1] - GUARD - extent
        if r.random() < 0.3:
            # Start just below a 4 KB boundary so bursts must be cut there.
            addr = min(hi, max(lo, r.randrange(lo, hi) // 4096 * 4096 - r.randint(1, 3 * B)))
        else:
            addr = r.randint(lo, hi)
        return {"addr": addr, "stride": stride, "rows": rows, "row_bytes": row_bytes,
                "tag": r.getrandbits(8)}

    async def run_reads(self, jobs, *, expect=None):
        """Issue ``jobs`` back to back on the read engine; check every beat and status.

        ``expect`` maps a job index to (error name, addr check) for failing jobs."""
        expect = expect or {}
        wants = []
        for job in jobs:
            rows_data = [self.ram.read(a, b - a) for a, b in
                         row_spans(job["addr"], job["rows"], job["row_bytes"], job["stride"])]
            wants.append(pack_rows(rows_data, self.B))
        self.rd_desc.send(jobs)
        for n, (job, want) in enumerate(zip(jobs, wants, strict=True)):
            got = await self.rd_data.recv(len(want), timeout_cycles=200000)
            status = (await self.rd_status.recv(1, timeout_cycles=20000))[0]
            assert status["tag"] == job["tag"], f"read job {n}: tag {status} for {job}"
            if n in expect:
                error, check_addr = expect[n]
                assert status["error"] == self.errors[error], \
                    f"read job {job}: status {status}, expected {error}"
                check_addr(status["addr"])
                for k, (g, w) in enumerate(zip(got, want, strict=True)):
                    for lane in range(self.B):
                        gb, wb = (g >> 8 * lane) & 0xff, (w >> 8 * lane) & 0xff
                        assert gb in (wb, 0), f"failed read job {job}: beat {k} lane {lane} " \
                                              f"is {gb:#x}, neither data {wb:#x} nor 0"
            else:
                assert status["error"] == self.errors["OK"] and status["addr"] == 0, \
                    f"read job {job}: status {status}"
                bad = [k for k, (g, w) in enumerate(zip(got, want, strict=True)) if g != w]
                assert not bad, (f"read job {job}: {len(bad)} beats differ, first {bad[0]}: "
                                 f"got {got[bad[0]]:#x} want {want[bad[0]]:#x}")
        await ClockCycles(self.dut.clk, 2)
        assert not self.rd_data.queue, f"{len(self.rd_data.queue)} extra read beats"

    async def run_writes(self, jobs, *, expect=None):
        """Issue ``jobs`` back to back on the write engine; check memory byte-exactly
        (including guard bytes and the gaps between rows) and every status."""
        expect = expect or {}
        r, B = self.r, self.B
        fill = bytes(r.getrandbits(8) for _ in range(64))
        plans = []
        for job in jobs:
            spans = row_spans(job["addr"], job["rows"], job["row_bytes"], job["stride"])
            lo = job["addr"] - GUARD
            hi = (spans[-1][1] if spans else job["addr"]) + GUARD
            before = bytes(r.getrandbits(8) for _ in range(hi - lo))
            self.ram.write(lo, before)
            rows_data = [bytes(r.getrandbits(8) for _ in range(b - a)) for a, b in spans]
            after = bytearray(before)
            for (a, b), data in zip(spans, rows_data, strict=True):
                after[a - lo:b - lo] = data
            plans.append((lo, before, bytes(after), rows_data))
            beats = pack_rows(rows_data, B, fill=fill)
            assert len(beats) == beats_per_job(job["rows"], job["row_bytes"], B)
            if job["rows"] and job["row_bytes"]:
                assert unpack_rows(beats, job["rows"], job["row_bytes"], B) == rows_data
        self.wr_desc.send(jobs)
        for plan in plans:
            self.wr_data.send(pack_rows(plan[3], B, fill=fill))
        for n, (job, (lo, before, after, _)) in enumerate(zip(jobs, plans, strict=True)):
            status = (await self.wr_status.recv(1, timeout_cycles=200000))[0]
            assert status["tag"] == job["tag"], f"write job {n}: tag {status} for {job}"
            got = self.ram.read(lo, len(after))
            if n in expect:
                error, check_addr = expect[n]
                assert status["error"] == self.errors[error], \
                    f"write job {job}: status {status}, expected {error}"
                check_addr(status["addr"])
                spans = row_spans(job["addr"], job["rows"], job["row_bytes"], job["stride"])
                inside = {a - lo + i for a, b in spans for i in range(b - a)}
                for i, (g, b, w) in enumerate(zip(got, before, after, strict=True)):
                    assert g == b or (i in inside and g == w), \
                        f"failed write job {job}: byte {lo + i:#x} is {g:#x}"
            else:
                assert status["error"] == self.errors["OK"] and status["addr"] == 0, \
                    f"write job {job}: status {status}"
                if got != after:
                    i = next(i for i in range(len(got)) if got[i] != after[i])
                    kind = "guard" if after[i] == before[i] else "data"
                    raise AssertionError(f"write job {job}: {kind} byte {lo + i:#x} is "
                                         f"{got[i]:#x}, want {after[i]:#x}")
        await wait_until(self.dut.clk, lambda: self.wr_data.idle, timeout_cycles=20000,
                         what="write data consumed")

    def place(self, jobs, area):
        """Move jobs so they occupy disjoint stretches of ``area`` (writes)."""
        cursor = area[0] + GUARD
        placed = []
        for job in jobs:
            extent = (max(job["rows"], 1) - 1) * job["stride"] + job["row_bytes"]
            offset = job["addr"] % 4096
            base = cursor // 4096 * 4096 + offset
            if base < cursor:
                base += 4096
            if base + extent + GUARD > area[1]:
                break
            placed.append({**job, "addr": base})
            cursor = base + extent + 2 * GUARD
        return placed


async def random_traffic(tb, count):
    reads = [tb.random_job(READ_AREA, write=False) for _ in range(count)]
    writes = tb.place([tb.random_job(WRITE_AREA, write=True) for _ in range(count)],
                      WRITE_AREA)
    for k in range(0, count, 4):
        rd = cocotb.start_soon(tb.run_reads(reads[k:k + 4]))
        await tb.run_writes(writes[k:k + 4])
        await rd
    tb.assert_protocol()


def overlaps_after(log, start_cycle):
    return [entry for entry in log if entry[0] > start_cycle]


async def error_jobs(tb, code):
    """A job through a faulty range fails with ``code`` and the failing burst's address,
    issues at most one burst after the error response, and the next job works."""
    B, r = tb.B, tb.r
    for write in (False, True):
        area = WRITE_AREA if write else READ_AREA
        job = tb.place([{"addr": area[0] + r.randint(0, B - 1), "stride": 0, "rows": 1,
                         "row_bytes": r.randint(6 * B, 40 * B), "tag": 0x5a}], area)[0]
        if r.random() < 0.5:
            job.update(rows=3, row_bytes=r.randint(2 * B, 8 * B))
            job["stride"] = job["row_bytes"] + r.randint(0, 2 * B)
        # B-aligned and inside row 0, so the burst reaching it must touch it.
        flo = (job["addr"] + r.randint(B, job["row_bytes"] - 1)) // B * B
        tb.ram.faults = [(flo, flo + B * r.randint(1, 3), getattr(AxiResp, code))]
        log = tb.checker.aw_log if write else tb.checker.ar_log
        seen = len(log)

        def check_addr(addr, log=log, seen=seen, flo=flo, write=write):
            bursts = log[seen:]
            hit = [b for b in bursts if b[1] < tb.ram.faults[0][1] and
                   flo < b[1] + b[2] * B]
            assert hit, f"no burst reached the faulty range at {flo:#x}: {bursts}"
            assert addr // B * B == hit[0][1], \
                f"error address {addr:#x} is not in the first failing burst {hit[0]}"
            errs = tb.checker.b_errors if write else tb.checker.r_errors
            first = min(e for e in errs if e >= bursts[0][0])
            later = overlaps_after(bursts, first)
            assert len(later) <= 1, f"{len(later)} bursts issued after the error: {later}"

        if write:
            await tb.run_writes([job], expect={0: (code, check_addr)})
        else:
            await tb.run_reads([job], expect={0: (code, check_addr)})
        tb.ram.faults = []
        tb.assert_protocol()
        if write:
            await tb.run_writes(tb.place([tb.random_job(area, write=True)], area))
        else:
            await tb.run_reads([tb.random_job(area, write=False)])


async def window_jobs(tb):
    """Jobs reaching outside the window are refused without a single burst."""
    r, B = tb.r, tb.B
    for write in (False, True):
        area = WRITE_AREA if write else READ_AREA
        job = tb.place([tb.random_job(area, write=write)], area)[0]
        while not job["rows"] or not job["row_bytes"]:
            job = tb.place([tb.random_job(area, write=write)], area)[0]
        end = job["addr"] + (job["rows"] - 1) * job["stride"] + job["row_bytes"]
        if r.random() < 0.5:
            tb.set_window(job["addr"] + r.randint(1, B), MEM_SIZE)   # starts below base
        else:
            tb.set_window(0, end - r.randint(1, min(B, end - job["addr"])))  # ends past limit
        log = tb.checker.aw_log if write else tb.checker.ar_log
        seen = len(log)

        def check_addr(addr, job=job):
            assert addr == job["addr"], f"window error address {addr:#x} for {job}"

        if write:
            await tb.run_writes([job], expect={0: ("WINDOW", check_addr)})
        else:
            await tb.run_reads([job], expect={0: ("WINDOW", check_addr)})
        assert len(log) == seen, f"refused job issued bursts: {log[seen:]}"
        # Exactly at the edges is allowed.
        tb.set_window(job["addr"], end)
        if write:
            await tb.run_writes([job])
        else:
            await tb.run_reads([job])
        tb.set_window(0, MEM_SIZE)


async def unchecked_window_jobs(tb):
    """Without check_window, jobs reaching outside the window run in full: the window
    inputs are ignored."""
    for write in (False, True):
        area = WRITE_AREA if write else READ_AREA
        job = tb.place([tb.random_job(area, write=write)], area)[0]
        while not job["rows"] or not job["row_bytes"]:
            job = tb.place([tb.random_job(area, write=write)], area)[0]
        log = tb.checker.aw_log if write else tb.checker.ar_log
        seen = len(log)
        tb.set_window(job["addr"] + 1, job["addr"] + 2)
        if write:
            await tb.run_writes([job])
        else:
            await tb.run_reads([job])
        assert len(log) > seen, "job outside the window issued no burst"
        tb.set_window(0, MEM_SIZE)


async def soft_reset(tb, *, delay=(20, 300)):
    """Abort long jobs mid-transfer (``delay`` cycles after issuing them), check every
    burst already issued completed cleanly, then run normal jobs."""
    r, B, dut = tb.r, tb.B, tb.dut
    span = tb.p["burst_span"]
    length = min(max(8 * span, 400 * B), 40000)
    rd = {"addr": READ_AREA[0] + r.randint(0, B), "stride": 0, "rows": 1,
          "row_bytes": length, "tag": 1}
    wr = {"addr": WRITE_AREA[0] + r.randint(0, B), "stride": 0, "rows": 1,
          "row_bytes": length, "tag": 2}
    tb.rd_desc.send([rd])
    tb.wr_desc.send([wr])
    tb.wr_data.send([r.getrandbits(8 * B) for _ in range(beats_per_job(1, length, B))])
    await ClockCycles(dut.clk, r.randint(*delay))
    tb.wr_data.queue.clear()
    dut.soft_reset.value = 1
    await RisingEdge(dut.clk)
    dut.soft_reset.value = 0
    await wait_until(dut.clk, lambda: not int(dut.rd_busy.value) and
                     not int(dut.wr_busy.value), timeout_cycles=50000, what="abort drained")
    await ClockCycles(dut.clk, 5)
    assert tb.checker.idle, "bursts left incomplete after abort"
    assert not tb.rd_status.queue and not tb.wr_status.queue, "aborted job reported"
    tb.assert_protocol()
    tb.rd_data.queue.clear()
    assert tb.wr_data.idle
    await random_traffic(tb, 4)


async def soft_reset_at_flush(tb, trials=6):
    """Pulse soft_reset in a cycle where the reader holds a row's flush beat (a row whose
    realigned bytes spill into one more output beat) while later bursts are in flight:
    the flushing record has had all its beats, and the next burst's beats must not be
    counted against it (the reader stayed busy forever when they were)."""
    r, B, dut = tb.r, tb.B, tb.dut
    reader = dut.inner.reader
    for _ in range(trials):
        # Rows of 2B - 1 bytes starting one byte into a beat: two memory beats and two
        # output beats, the second made from the last memory beat alone (a flush).
        job = {"addr": READ_AREA[0] + 4096 * r.randrange(8) + 1, "stride": 3 * B,
               "rows": 24, "row_bytes": 2 * B - 1, "tag": 3}
        tb.rd_desc.send([job])
        for _ in range(4000):
            await RisingEdge(dut.clk)
            if int(reader.flushing.value) and int(dut.m_axi_arvalid.value) == 0 and \
                    int(reader.outstanding.value) > 0:
                break
        else:
            raise AssertionError("the reader never flushed with a burst outstanding")
        dut.soft_reset.value = 1
        await RisingEdge(dut.clk)
        dut.soft_reset.value = 0
        await wait_until(dut.clk, lambda: not int(dut.rd_busy.value), timeout_cycles=5000,
                         what="reader idle after a soft reset during a flush")
        await ClockCycles(dut.clk, 5)
        assert tb.checker.idle, "bursts left incomplete after the soft reset"
        assert not tb.rd_status.queue, "aborted job reported"
        tb.rd_data.queue.clear()
        await random_traffic(tb, 2)


@cocotb.test()
async def run_dma(dut):
    tb = TB(dut)
    await tb.reset()
    for idle, backpressure in (("none", "none"), ("random", "random"),
                               ("alternate", "random"), ("random", "none"),
                               ("none", "random")):
        tb.set_idle_generator(idle)
        tb.set_backpressure_generator(backpressure)
        await random_traffic(tb, 24)
    for code in ("SLVERR", "DECERR"):
        await error_jobs(tb, code)
    if tb.p["check_window"]:
        await window_jobs(tb)
    else:
        await unchecked_window_jobs(tb)
    tb.set_idle_generator("none")
    tb.set_backpressure_generator("none")
    await soft_reset(tb)
    tb.set_idle_generator("random")
    tb.set_backpressure_generator("random")
    await soft_reset(tb)
    for _ in range(3):
        # While descriptors are still being checked or the first bursts planned.
        await soft_reset(tb, delay=(1, 8))
    if tb.p["max_outstanding"] > 1:
        await soft_reset_at_flush(tb)
    tb.assert_protocol()
    assert tb.checker.idle
    dut._log.info(f"checked {tb.rd_status.count} read and {tb.wr_status.count} write jobs, "
                  f"{len(tb.checker.ar_log)} read and {len(tb.checker.aw_log)} write bursts, "
                  f"{tb.rd_data.count} read and {tb.wr_data.count} write beats")


CASES = {
    # name: (data_width, max_burst, max_outstanding); "nowin": check_window=False
    "w32_b4_o1_nowin": (32, 4, 1),
    "w32_b16_o2": (32, 16, 2),
    "w64_b1_o1": (64, 1, 1),
    "w128_b256_o8": (128, 256, 8),
    "w32_b256_o3": (32, 256, 3),
    "w64_b2_o16": (64, 2, 16),
    "w256_b16_o4": (256, 16, 4),
    "w512_b64_o2": (512, 64, 2),
}


def build(name, sim):
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.dma import DMA

    width, burst, outstanding = CASES[name]
    dma = DMA(addr_width=32, data_width=width, max_burst=burst, max_outstanding=outstanding,
              check_window=not name.endswith("nowin"))
    path = harness.build_dir(f"dma_{name}_{sim}")
    source = harness.emit(FlatPorts(dma, flatten=["m_axi"]), path, params=dma.params())
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.dma.test_dma",
                path=path)


@pytest.mark.icarus_only
@pytest.mark.parametrize("name", ["w32_b16_o2", "w64_b1_o1", "w32_b4_o1_nowin"])
def test_dma_sweep(sim, name):
    build(name, sim)


@pytest.mark.parametrize("name", ["w128_b256_o8"])
def test_dma(sim, name):
    build(name, sim)


@pytest.mark.slow
@pytest.mark.icarus_only
@pytest.mark.parametrize("name", ["w32_b256_o3", "w64_b2_o16", "w256_b16_o4", "w512_b64_o2"])
def test_dma_wide_sweep(sim, name):
    build(name, sim)
