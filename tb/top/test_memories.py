"""BankedMemory against a Python model: random reads and writes from several ports
with bank conflicts and reads of rows being written, checked every cycle in
Amaranth's simulator (the memory has no bus, so a cocotb run would add nothing)."""

import random

import pytest


def _run(width, depth, banks, nread, nwrite, cycles, seed):
    from amaranth.sim import Simulator

    from intformer.hw.memories import BankedMemory

    dut = BankedMemory(width, depth=depth, banks=banks, read_ports=nread, write_ports=nwrite)
    model = [0] * depth  # rows never written read as 0 (init=[])
    r = random.Random(seed)
    stats = {"reads": 0, "writes": 0, "conflicts": 0, "clashes": 0}

    async def bench(ctx):
        pending = []  # (port, expected) for reads granted last cycle
        for _ in range(cycles):
            reqs_r = [(r.random() < 0.7, r.randrange(depth)) for _ in range(nread)]
            reqs_w = [(r.random() < 0.6, r.randrange(depth), r.getrandbits(width))
                      for _ in range(nwrite)]
            for port, (en, addr) in zip(dut.read, reqs_r, strict=True):
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
            for port, (en, addr, data) in zip(dut.write, reqs_w, strict=True):
                ctx.set(port.en, en)
                ctx.set(port.addr, addr)
                ctx.set(port.data, data)
            for p, want in pending:
                assert ctx.get(dut.read[p].data) == want, f"read port {p}"
            pending = []
            banks_r, banks_w = set(), set()
            writes = []
            for p, (en, addr, data) in enumerate(reqs_w):
                granted = ctx.get(dut.write[p].grant)
                free = en and addr // (depth // banks) not in banks_w
                assert granted == free, f"write port {p} grant"
                if granted:
                    banks_w.add(addr // (depth // banks))
                    writes.append((addr, data))
                    stats["writes"] += 1
            for p, (en, addr) in enumerate(reqs_r):
                granted = ctx.get(dut.read[p].grant)
                # the first asker takes the bank; it waits if its row is being written
                first = en and addr // (depth // banks) not in banks_r
                clash = addr in (a for a, _ in writes)
                assert granted == (first and not clash), f"read port {p} grant"
                if first:
                    banks_r.add(addr // (depth // banks))
                if granted:
                    pending.append((p, model[addr]))
                    stats["reads"] += 1
                elif first:
                    stats["clashes"] += 1
                elif en:
                    stats["conflicts"] += 1
            await ctx.tick()
            for addr, data in writes:
                model[addr] = data

    sim = Simulator(dut)
    sim.add_clock(1e-8)
    sim.add_testbench(bench)
    sim.run()
    return stats


@pytest.mark.parametrize("width,depth,banks,nread,nwrite", [
    (64, 64, 2, 2, 2), (96, 32, 4, 3, 2), (8, 16, 1, 1, 1),
    # one bank shared by three readers and two writers (the icebreaker accumulator)
    (64, 32, 1, 3, 2)])
def test_banked_memory(width, depth, banks, nread, nwrite):
    stats = _run(width, depth, banks, nread, nwrite, 400, seed=width + depth)
    assert stats["reads"] > 100 and stats["writes"] > 100 and stats["clashes"] > 0
    if nread > 1 or nwrite > 1:
        assert stats["conflicts"] > 0


def test_config_memories():
    from intformer.hw.config import preset
    from intformer.hw.memories import accumulator, scratchpad
    c = preset("default")
    spad, acc = scratchpad(c), accumulator(c)
    assert (spad.width, spad.depth, spad.banks) == (64, c.spad_rows, 2)
    assert (acc.width, acc.depth) == (c.array_cols * 32, c.acc_rows)


def test_memory_errors():
    from intformer.hw.memories import BankedMemory
    with pytest.raises(ValueError, match=r"Memory banks must be a power of 2, not 3"):
        BankedMemory(8, depth=12, banks=3)
    with pytest.raises(ValueError, match=r"Memory depth 10 is not a multiple of 4 banks"):
        BankedMemory(8, depth=10, banks=4)
    with pytest.raises(TypeError, match=r"Memory width must be an integer, not '8'"):
        BankedMemory("8", depth=10, banks=2)
    with pytest.raises(ValueError, match=r"Memory read_ports must be at least 1, not 0"):
        BankedMemory(8, depth=16, banks=2, read_ports=0)
