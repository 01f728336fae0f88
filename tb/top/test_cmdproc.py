"""Command processor: fetch, check, dispatch and dependency tokens.

The testbench plays the DMA read engine (fetch jobs answered from a Python memory
with the DMA's contract: full beat count, then a status, optional bus-error
injection) and the three executors (random backpressure and completion delays). A
token model checks that no command is issued before the tokens it pops were pushed.
Expected error codes come from :class:`intformer.sw.commands.Checker`.
"""

import cocotb
import pytest
from cocotb.triggers import RisingEdge

from intformer.gen.sim.drivers import (
    StreamSink,
    StreamSource,
    random_pauses,
    reset,
    rng,
    start_clock,
)
from intformer.gen.sim.payload import load_ports
from intformer.sw.commands import Checker, CommandSet

QUEUES = ("load", "compute", "store")
# queue -> (token popped by pop_prev, pop_next, pushed by push_prev, push_next)
EDGES = {"load": (None, "c2l", None, "l2c"), "compute": ("l2c", "s2c", "c2l", "c2s"),
         "store": ("c2s", None, "s2c", None)}


class TB:
    #: Internal registers printed when a stream hangs.
    STATE = ("running", "aborting", "ending", "stage", "committed", "awaiting", "chk_err",
             "chk_queue", "dispatched")

    def __init__(self, dut):
        self.dut = dut
        params = load_ports()["params"]
        self.man = params["manifest"]
        self.cs = CommandSet(self.man)
        self.checker = Checker(self.man)
        self.errors = self.man["errors"]
        self.bus_bytes = self.man["config"]["axi_data_width"] // 8
        # The bits of a command each queue hands on (the others reach executors as 0).
        self.keep = {q: sum(((1 << (hi - lo)) - 1) << lo for lo, hi in runs)
                     for q, runs in params["queue_bits"].items()}
        self.r = rng()
        start_clock(dut.clk)
        for name in ("start", "cmd_addr", "cmd_count", "window_base", "window_limit",
                     "fetch_done", "fetch_error", "load_done", "compute_done", "store_done",
                     "exec_error"):
            getattr(dut, name).value = 0
        for q in QUEUES:
            getattr(dut, f"{q}__ready").value = 0
        self.mem = {}
        self.fetch_req = StreamSink(dut, "fetch_req")
        self.fetch_data = StreamSource(dut, "fetch_data")
        self.fetch_fault = None     # byte address from which fetch reads fail
        self.exec_fault = None      # (queue, nth command) whose execution fails
        self.pauses = False
        self.new_stream()
        cocotb.start_soon(self._fetch())
        cocotb.start_soon(self._exec())

    def new_stream(self):
        self.tokens = {name: 0 for name in ("l2c", "c2l", "c2s", "s2c")}
        self.issued = {q: [] for q in QUEUES}
        self.inflight = {q: [] for q in QUEUES}
        self.completed = {q: 0 for q in QUEUES}
        self.jobs = []

    def set_pauses(self, on: bool):
        self.pauses = on
        r = self.r
        self.fetch_data.set_pause_generator(random_pauses(r, 0.3) if on else None)
        self.fetch_req.set_pause_generator(random_pauses(r, 0.5) if on else None)

    async def _fetch(self):
        while True:
            while not self.fetch_req.queue:
                await RisingEdge(self.dut.clk)
            req = self.fetch_req.queue.popleft()
            addr, nbytes = req["addr"], req["count"] * self.cs.bytes
            assert self.wbase <= addr and addr + nbytes <= self.wlimit, "fetch outside window"
            self.jobs.append((addr, req["count"]))
            failed = False
            blob = bytearray()
            for a in range(addr, addr + nbytes):
                if self.fetch_fault is not None and a >= self.fetch_fault:
                    failed = True
                blob.append(0 if failed else self.mem.get(a, 0))
            blob += bytes(-len(blob) % self.bus_bytes)
            self.fetch_data.send([int.from_bytes(blob[i:i + self.bus_bytes], "little")
                                  for i in range(0, len(blob), self.bus_bytes)])
            await self.fetch_data.wait_idle()
            for _ in range(self.r.randrange(3) if self.pauses else 0):
                await RisingEdge(self.dut.clk)
            self.dut.fetch_done.value = 1
            self.dut.fetch_error.value = int(failed)
            await RisingEdge(self.dut.clk)
            self.dut.fetch_done.value = 0
            self.dut.fetch_error.value = 0

    async def _exec(self):
        dut, r = self.dut, self.r
        done = {q: 0 for q in QUEUES}
        while True:
            await RisingEdge(dut.clk)
            for q in QUEUES:
                if int(getattr(dut, f"{q}__valid").value) and int(getattr(dut, f"{q}__ready")
                                                                   .value):
                    word = int(getattr(dut, f"{q}__payload").value)
                    name, f = self.cs.decode(word)
                    assert self.cs.queue(name) == q, f"{name} issued to the {q} queue"
                    for flag, tok in (("pop_prev", EDGES[q][0]), ("pop_next", EDGES[q][1])):
                        if f[flag]:
                            assert self.tokens[tok] > 0, f"{name} issued without a {tok} token"
                            self.tokens[tok] -= 1
                    self.issued[q].append(word)
                    delay = r.randrange(8) if self.pauses else r.randrange(2)
                    self.inflight[q].append([delay, word, f])
            for q in QUEUES:
                if done[q]:
                    _, word, f = self.inflight[q].pop(0)
                    self.completed[q] += 1
                    for flag, tok in (("push_prev", EDGES[q][2]), ("push_next", EDGES[q][3])):
                        if f[flag]:
                            self.tokens[tok] += 1
            dut.exec_error.value = 0
            for q in QUEUES:
                done[q] = 0
                if self.inflight[q]:
                    head = self.inflight[q][0]
                    head[0] -= 1
                    if head[0] < 0:
                        done[q] = 1
                        if self.exec_fault == (q, self.completed[q]):
                            dut.exec_error.value = self.errors["bus_error"]
                getattr(dut, f"{q}_done").value = done[q]
                busy = self.pauses and r.random() < 0.3
                getattr(dut, f"{q}__ready").value = int(not busy)

    # Streams ----------------------------------------------------------------------------------

    def expected(self, words, window_bytes):
        """(error name, index) as the Checker predicts, and the commands that may run."""
        for i, w in enumerate(words):
            try:
                name, f = self.cs.decode(w)
            except ValueError:
                return "unknown_opcode", i
            err = self.checker.error(name, f, window_bytes=window_bytes)
            if err != "none":
                return err, i
            if name == "end":
                return "none", i
        return "no_end", len(words)

    async def run(self, words, *, addr=0x1000, wbase=0, wlimit=0x10000, count=None,
                  expect=None, timeout=20000):
        """Run one stream; check the error code, index, irq and what was issued."""
        dut = self.dut
        self.new_stream()
        self.wbase, self.wlimit = wbase, wlimit
        blob = self.cs.assemble(words)
        for i, b in enumerate(blob):
            self.mem[addr + i] = b
        count = len(words) if count is None else count
        err, index = expect if expect is not None else self.expected(words[:count],
                                                                     wlimit - wbase)
        dut.cmd_addr.value = addr
        dut.cmd_count.value = count
        dut.window_base.value = wbase
        dut.window_limit.value = wlimit
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        for _ in range(timeout):
            await RisingEdge(dut.clk)
            if int(dut.done.value):
                break
        else:
            raise AssertionError(
                f"stream did not finish (expected {err} at {index}); issued "
                f"{ {q: len(v) for q, v in self.issued.items()} }, in flight "
                f"{ {q: len(v) for q, v in self.inflight.items()} }, tokens {self.tokens}, "
                f"fetch jobs {self.jobs}; state "
                f"{ {n: str(getattr(dut, n).value) for n in self.STATE if hasattr(dut, n)} }")
        irq = int(dut.irq.value)
        got = int(dut.error.value)
        got_name = {v: k for k, v in self.errors.items()}.get(got, got)
        assert got_name == err, f"error {got_name}, expected {err} (command {index})"
        if err != "none" and index is not None:
            assert int(dut.error_index.value) == index, \
                f"{err} reported at command {int(dut.error_index.value)}, expected {index}"
        end_irq = err == "none" and self.cs.decode(words[index])[1]["irq"]
        assert irq == (1 if err != "none" else end_irq), "irq"
        await RisingEdge(dut.clk)
        assert not int(dut.busy.value), "busy after done"
        good = words[:index if index is not None else len(words)]
        for q in QUEUES:
            want = [w & self.keep[q] for w in good
                    if self.cs.queue(self.cs.decode(w)[0]) == q]
            got_q = self.issued[q]
            if err == "none":
                assert got_q == want, f"{q} queue issued {len(got_q)} of {len(want)} commands"
            else:
                assert got_q == want[:len(got_q)], f"{q} queue issued commands out of order"
            assert not self.inflight[q], f"{q} queue: done before its commands finished"

    # Command generation -------------------------------------------------------------------

    def legal(self, name):
        """Random fields of a legal command ``name`` (no token flags)."""
        r, c, d = self.r, self.man["config"], self.man["derived"]
        spad, acc = d["spad_rows"], d["acc_rows"]
        for _ in range(1000):
            if name in ("load", "store"):
                space = r.randrange(2)
                depth = acc if space else spad
                rb = (d["acc_row_bytes"] if space else d["spad_row_bytes"])
                f = dict(dram=r.randrange(0, 0x8000), dram_stride=r.randrange(0, 256),
                         row_bytes=r.randrange(1, 2 * rb + 1), rows=r.randrange(1, 9),
                         loc=r.randrange(depth), loc_stride=r.randrange(0, 4), space=space)
            elif name == "gemm":
                f = dict(a=r.randrange(spad), a_stride=r.randrange(4), b=r.randrange(spad),
                         b_stride=r.randrange(4), c=r.randrange(acc), c_stride=r.randrange(4),
                         d=r.randrange(spad), d_stride=r.randrange(4),
                         bias=r.randrange(acc), scale=r.randrange(acc), m=r.randrange(1, 20),
                         k=r.randrange(1, 3 * c["array_rows"]),
                         n=r.randrange(1, 3 * c["array_cols"]),
                         accumulate=r.randrange(2), use_bias=r.randrange(2),
                         requant=r.randrange(2), per_channel=r.randrange(2),
                         mult=r.getrandbits(16), shift=r.getrandbits(6))
            elif name == "requant":
                f = dict(src=r.randrange(acc), dst=r.randrange(spad), dst_stride=r.randrange(4),
                         rows=r.randrange(1, 20), scale=r.randrange(acc),
                         per_channel=r.randrange(2))
            elif name in ("gelu", "softmax", "layernorm", "residual"):
                f = dict(src=r.randrange(spad), src_stride=r.randrange(8),
                         src_space=r.randrange(2), src2=r.randrange(spad),
                         src2_stride=r.randrange(8), src2_space=r.randrange(2),
                         dst=r.randrange(spad), dst_stride=r.randrange(8),
                         dst_space=r.randrange(2), rows=r.randrange(1, 9),
                         length=r.randrange(1, c["vector_max_row"] + 1))
            elif name == "set_const":
                f = dict(index=r.randrange(self.cs.constants["count"]),
                         value=r.getrandbits(32))
            else:
                f = dict(irq=r.randrange(2))
            full = {**{k: 0 for k in ("pop_prev", "pop_next", "push_prev", "push_next")}, **f}
            if self.checker.error(name, full, window_bytes=0x10000) in ("none", "unit_absent"):
                return f
        raise AssertionError(f"no legal {name} found")

    def good_stream(self, n, *, tokens=True):
        r = self.r
        c = self.man["config"]
        names = [x for x in self.cs.implemented if x != "end" and c.get(f"has_{x}", True)]
        avail = {name: 0 for name in ("l2c", "c2l", "c2s", "s2c")}
        words = []
        for _ in range(n):
            name = r.choice(names)
            f = self.legal(name)
            q = self.cs.queue(name)
            if tokens:
                for flag, tok in zip(("pop_prev", "pop_next", "push_prev", "push_next"),
                                     EDGES[q], strict=True):
                    if tok is None:
                        continue
                    if flag.startswith("pop") and avail[tok] and r.random() < 0.6:
                        avail[tok] -= 1
                        f[flag] = 1
                    elif flag.startswith("push") and r.random() < 0.4:
                        avail[tok] += 1
                        f[flag] = 1
            words.append(self.cs.encode(name, **f))
        words.append(self.cs.encode("end", irq=r.randrange(2)))
        return words

    def mutated(self):
        """A command that is legal but for one field set to a random value."""
        r = self.r
        name = r.choice(self.cs.names)
        f = self.legal(name)
        fields = self.cs.fields(name)
        victim = r.choice([k for k in fields if k not in ("opcode", "pop_prev", "pop_next",
                                                          "push_prev", "push_next")])
        width = fields[victim]["width"]
        f[victim] = r.choice([0, (1 << width) - 1, r.getrandbits(width)])
        q = self.cs.queue(name)
        # Pushes never hurt; an illegal push/pop flag is a bad_dependency.
        if q == "load" and r.random() < 0.1:
            f["push_prev"] = 1
        if q == "store" and r.random() < 0.1:
            f["pop_next"] = 1
        return self.cs.encode(name, **f)


@cocotb.test()
async def run_cmdproc(dut):
    tb = TB(dut)
    cs, r = tb.cs, tb.r
    await reset(dut)
    spad = tb.man["derived"]["spad_rows"]
    acc = tb.man["derived"]["acc_rows"]
    c = tb.man["config"]
    spad_row = tb.man["derived"]["spad_row_bytes"]

    for pauses in (False, True):
        tb.set_pauses(pauses)
        for _ in range(3):
            await tb.run(tb.good_stream(r.randrange(1, 40)))

    bad = [
        ("unknown_opcode", (r.randrange(10, 15) | r.getrandbits(100) << 16)),
        ("unknown_opcode", 0),
        ("spad_range", cs.encode("load", rows=2, row_bytes=1, loc=spad - 1, loc_stride=1)),
        ("acc_range", cs.encode("gemm", m=5, k=1, n=1, c=acc - 2, c_stride=1)),
        ("spad_range", cs.encode("gemm", m=1, k=c["array_rows"] + 1, n=1, a=spad - 1)),
        ("dma_window", cs.encode("store", rows=1, row_bytes=8, dram=0x10000 - 4)),
        ("zero_length", cs.encode("load", rows=0, row_bytes=4)),
        ("zero_length", cs.encode("gemm", m=3, k=0, n=1)),
        ("bad_shape", cs.encode("gelu", rows=1, length=c["vector_max_row"] + 1)),
        ("bad_shape", cs.encode("load", rows=spad_row + 1, row_bytes=1, transpose=1)),
        ("bad_shape", cs.encode("load", rows=1, row_bytes=1, transpose=1, space=1)),
        ("spad_range", cs.encode("load", rows=1, row_bytes=2, transpose=1, loc=spad - 1,
                                 loc_stride=1)),
        ("bad_dependency", cs.encode("load", rows=1, row_bytes=1, pop_prev=1)),
        ("bad_dependency", cs.encode("store", rows=1, row_bytes=1, push_next=1)),
        ("bad_constant", cs.encode("set_const", index=cs.constants["count"])),
        # Offsets, sums and products past the address width (where the checker's sum
        # saturates) are outside any window.
        ("dma_window", cs.encode("store", rows=1, row_bytes=1,
                                 dram=1 << min(c["axi_addr_width"], 31))),
        ("dma_window", cs.encode("store", rows=2, row_bytes=1, dram_stride=1,
                                 dram=(1 << min(c["axi_addr_width"], 32)) - 1)),
        ("dma_window", cs.encode("store", rows=257, row_bytes=1, dram_stride=1 << 16)),
    ]
    # Operands that end exactly at a memory's last row pass; one element more does not.
    acc_row = tb.man["derived"]["acc_row_bytes"]
    R, C = c["array_rows"], c["array_cols"]
    edges = [
        (cs.encode("load", rows=1, row_bytes=2 * spad_row, loc=spad - 2), "spad_range",
         cs.encode("load", rows=1, row_bytes=2 * spad_row + 1, loc=spad - 2)),
        (cs.encode("load", rows=2, row_bytes=3 * acc_row, loc=acc - 5, loc_stride=2,
                   space=1), "acc_range",
         cs.encode("load", rows=2, row_bytes=3 * acc_row + 1, loc=acc - 5, loc_stride=2,
                   space=1)),
        (cs.encode("gemm", m=1, k=2 * R, n=1, a=spad - 2), "spad_range",
         cs.encode("gemm", m=1, k=2 * R + 1, n=1, a=spad - 2)),
        (cs.encode("gemm", m=2, k=1, n=3 * C, c=acc - 4, c_stride=1), "acc_range",
         cs.encode("gemm", m=2, k=1, n=3 * C + 1, c=acc - 4, c_stride=1)),
        (cs.encode("store", rows=3, row_bytes=4, dram=0x10000 - 4 - 2 * 16, dram_stride=16),
         "dma_window",
         cs.encode("store", rows=3, row_bytes=5, dram=0x10000 - 4 - 2 * 16, dram_stride=16)),
    ]
    for good, name, word in edges:
        assert tb.checker.error(cs.decode(good)[0], cs.decode(good)[1],
                                window_bytes=0x10000) == "none"
        await tb.run([good, cs.encode("end")])
        bad.append((name, word))
    # Strides a one-row operand does not use may be as large as their fields; the next
    # command's small strides are not taken for large ones.
    words = [cs.encode("store", rows=1, row_bytes=1, dram_stride=(1 << 20) - 1,
                       loc_stride=(1 << 12) - 1),
             cs.encode("store", rows=2, row_bytes=1, dram_stride=1, loc_stride=1),
             cs.encode("gemm", m=1, k=1, n=1, a_stride=0xFFFF, c_stride=0xFFFF,
                       d_stride=0xFFFF, requant=1),
             cs.encode("gemm", m=2, k=1, n=1, a_stride=1, c_stride=1, d_stride=1, requant=1),
             cs.encode("end")]
    assert tb.expected(words, 0x10000) == ("none", 4)
    await tb.run(words)
    if not c["has_softmax"]:
        bad.append(("unit_absent", cs.encode("softmax", rows=1, length=1)))
    for pauses in (False, True):
        tb.set_pauses(pauses)
        for want, word in bad:
            if want != "unknown_opcode" and cs.decode(word)[0] not in cs.implemented:
                want = "unit_absent"
            prefix = tb.good_stream(r.randrange(0, 6), tokens=False)[:-1]
            words = prefix + [word] + tb.good_stream(3)
            assert tb.expected(words, 0x10000) == (want, len(prefix)), want
            await tb.run(words)
            await tb.run(tb.good_stream(r.randrange(1, 10)))

        # A stream without end, and one whose count stops before its end.
        await tb.run(tb.good_stream(5)[:-1])
        words = tb.good_stream(8)
        await tb.run(words, count=4)
        await tb.run(tb.good_stream(4))
        # Deadlock: compute waits for a load token nothing pushes.
        words = [cs.encode("load", rows=1, row_bytes=1),
                 cs.encode("gemm", m=1, k=1, n=1, pop_prev=1), cs.encode("end")]
        # Without queues (depth 0) the gemm waits at the checker, not dispatched.
        depth = c["cmd_queue_depth"]
        await tb.run(words, expect=("deadlock", 2 if depth else 1))
        # Deadlock while dispatching: the store queue fills behind a blocked head.
        words = [cs.encode("store", rows=1, row_bytes=1, pop_prev=1)] + \
            [cs.encode("store", rows=1, row_bytes=1)] * (depth + 2) + [cs.encode("end")]
        await tb.run(words, expect=("deadlock", depth))
        await tb.run(tb.good_stream(6))
        # The stream itself outside the window.
        await tb.run(tb.good_stream(3), addr=0x800, wbase=0x1000, wlimit=0x2000,
                     expect=("dma_window", 0))
        words = tb.good_stream(3)
        await tb.run(words, addr=0x2008 - cs.bytes * len(words), wbase=0x1000, wlimit=0x2000,
                     expect=("dma_window", 0))
        # A count whose bytes wrap the address space, an empty and a reversed window.
        await tb.run(tb.good_stream(3), addr=0x1000, wbase=0x1000, wlimit=0x2000,
                     count=3 + (1 << 27), expect=("dma_window", 0))
        await tb.run(tb.good_stream(3), addr=0x1000, wbase=0x1000, wlimit=0x1000,
                     count=0, expect=("dma_window", 0))
        await tb.run(tb.good_stream(3), addr=0x1000, wbase=0x1800, wlimit=0x1000,
                     expect=("dma_window", 0))
        await tb.run(tb.good_stream(5), addr=0x1100, wbase=0x1000, wlimit=0x2000)
        # A bus error while fetching command 5 of a long stream.
        words = tb.good_stream(30, tokens=False)
        tb.fetch_fault = 0x1000 + cs.bytes * 5 + 3
        chunk = load_ports()["params"]["fetch_chunk"]
        await tb.run(words, expect=("bus_error", 5 // chunk * chunk))
        tb.fetch_fault = None
        await tb.run(tb.good_stream(8))
        # An executor reports an error.
        words = [cs.encode("load", rows=1, row_bytes=1)] * 3 + [cs.encode("end")]
        tb.exec_fault = ("load", 1)
        await tb.run(words, expect=("bus_error", None))
        tb.exec_fault = None
        await tb.run(tb.good_stream(8))

    # Hardware checks agree with the Checker on mutated commands.
    tb.set_pauses(False)
    for _ in range(150):
        await tb.run([tb.mutated(), cs.encode("end", irq=1)])


def _manifest(config, implemented=None):
    from intformer.hw import isa
    return {"config": config.to_dict(), "derived": config.derived(),
            **isa.manifest_section(implemented)}


CONFIGS = {
    "default": {},
    "partial": {"implemented": ("load", "store", "gemm", "set_const", "end")},
    "tiny_nosoftmax": {"preset": "tiny", "has_softmax": False},
    "wide": {"axi_data_width": 256, "axi_max_burst": 4, "array_rows": 4, "array_cols": 8,
             "cmd_queue_depth": 2},
    # One-entry queues; a bus as wide as a command (checked in place at the fetch buffer).
    "one_entry": {"axi_data_width": 256, "axi_max_burst": 4, "cmd_queue_depth": 1},
    "direct_wide": {"axi_data_width": 256, "axi_max_burst": 4, "cmd_queue_depth": 0},
    # Rows of 12 and 48 bytes (340 and 40 of them): range checks for a row size that is
    # not a power of 2 (a 32-bit beat divides both, as Config requires).
    "odd_rows": {"preset": "tiny", "array_cols": 12, "spad_bytes": 4080, "acc_bytes": 1920},
    # No queues (depth 0), 17-bit addresses, GEMM only: the narrowest commands.
    "icebreaker": {"preset": "icebreaker",
                   "implemented": ("load", "store", "gemm", "set_const", "end")},
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.icarus_only] if n != "default" else [])
    for n in CONFIGS])
def test_cmdproc(sim, name):
    from intformer.gen.sim import harness
    from intformer.hw.cmdproc import CommandProcessor
    from intformer.hw.config import preset

    changes = dict(CONFIGS[name])
    implemented = changes.pop("implemented", None)
    config = preset(changes.pop("preset", "default")).replace(**changes)
    dut = CommandProcessor(config, implemented=implemented)
    path = harness.build_dir(f"cmdproc_{name}_{sim}")
    source = harness.emit(dut, path, params={"manifest": _manifest(config, implemented),
                                             "fetch_chunk": dut.fetch_chunk,
                                             "queue_bits": dut.queue_bits})
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.top.test_cmdproc",
                path=path)


def test_cmdproc_errors():
    from intformer.hw.cmdproc import CommandProcessor
    with pytest.raises(TypeError, match=r"Command processor config must be a Config, not 3"):
        CommandProcessor(3)
