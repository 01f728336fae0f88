"""Testbench helpers that run under cocotb 1.9 and 2.x alike.

Clock and reset, random seeds, and drivers for Amaranth ``lib.stream`` ports
(``<name>__valid``, ``<name>__ready``, ``<name>__payload``) with pause
(idle) and backpressure generators, as in the verilog-axi testbenches.
"""

from __future__ import annotations

import itertools
import random
from collections import deque

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ClockCycles, RisingEdge

from .payload import Packer, load_ports

__all__ = ["COCOTB2", "start_clock", "reset", "seed", "rng", "StreamSource", "StreamSink",
           "random_pauses", "no_pauses", "PAUSE_PATTERNS", "pause_generator", "signed_value",
           "wait_until"]

COCOTB2 = int(cocotb.__version__.split(".")[0]) >= 2


def start_clock(signal, period_ns: int = 10) -> None:
    """Start a free-running clock on ``signal``."""
    if COCOTB2:
        Clock(signal, period_ns, unit="ns").start()
    else:
        cocotb.start_soon(Clock(signal, period_ns, units="ns").start())


async def reset(dut, cycles: int = 2) -> None:
    """Hold Amaranth's synchronous ``rst`` high for ``cycles`` clock cycles."""
    dut.rst.value = 1
    await ClockCycles(dut.clk, cycles)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


def seed() -> int:
    """The seed cocotb chose for this run (``COCOTB_RANDOM_SEED`` to repeat it)."""
    return int(cocotb.RANDOM_SEED)


def rng(salt: int = 0) -> random.Random:
    return random.Random(seed() * 1000003 + salt)


def signed_value(handle, width: int | None = None) -> int:
    """A handle's value read as a two's-complement integer."""
    value = handle.value
    width = width or len(value)
    raw = int(value)
    return raw - (1 << width) if raw >> (width - 1) else raw


def no_pauses():
    return itertools.repeat(False)


def random_pauses(r: random.Random, probability: float = 0.3):
    while True:
        yield r.random() < probability


#: Named idle/backpressure patterns that tests run with: none, a regular
#: pattern, and random pauses.
PAUSE_PATTERNS = ("none", "alternate", "random")


def pause_generator(name: str, r: random.Random):
    if name == "none":
        return no_pauses()
    if name == "alternate":
        return itertools.cycle([False, False, True])
    if name == "random":
        return random_pauses(r)
    raise ValueError(f"Unknown pause pattern {name!r}")


class _StreamEnd:
    def __init__(self, dut, name: str, ports: dict | None = None):
        self.clk = dut.clk
        self.valid = getattr(dut, f"{name}__valid")
        self.ready = getattr(dut, f"{name}__ready")
        self.payload = getattr(dut, f"{name}__payload", None)
        ports = ports if ports is not None else load_ports()["ports"]
        desc = ports.get(f"{name}__payload")
        self.packer = Packer(desc) if desc else None
        self.queue: deque = deque()
        self._pause = no_pauses()
        self.count = 0

    def set_pause_generator(self, generator) -> None:
        self._pause = generator if generator is not None else no_pauses()


class StreamSource(_StreamEnd):
    """Drives a stream input of the DUT; beats are nested values (or ints)."""

    def __init__(self, dut, name: str, ports: dict | None = None):
        super().__init__(dut, name, ports)
        self.valid.value = 0
        self._task = cocotb.start_soon(self._run())

    def send(self, beats) -> None:
        self.queue.extend(beats)

    @property
    def idle(self) -> bool:
        return not self.queue and not int(self.valid.value)

    async def wait_idle(self) -> None:
        while not self.idle:
            await RisingEdge(self.clk)

    async def _run(self) -> None:
        busy = False
        while True:
            await RisingEdge(self.clk)
            if busy and int(self.ready.value):
                busy = False
                self.count += 1
            if not busy and self.queue and not next(self._pause):
                beat = self.queue.popleft()
                if self.payload is not None:
                    self.payload.value = (self.packer.pack(beat) if self.packer is not None
                                          else int(beat))
                self.valid.value = 1
                busy = True
            elif not busy:
                self.valid.value = 0


class StreamSink(_StreamEnd):
    """Accepts beats from a stream output of the DUT into ``queue`` (unpacked)."""

    def __init__(self, dut, name: str, ports: dict | None = None):
        super().__init__(dut, name, ports)
        self.ready.value = 0
        self._task = cocotb.start_soon(self._run())

    async def recv(self, count: int, *, timeout_cycles: int = 100000) -> list:
        """Wait for ``count`` beats and return them."""
        for _ in range(timeout_cycles):
            if len(self.queue) >= count:
                return [self.queue.popleft() for _ in range(count)]
            await RisingEdge(self.clk)
        raise AssertionError(f"Timed out after {timeout_cycles} cycles waiting for {count} "
                             f"beats, got {len(self.queue)}")

    async def _run(self) -> None:
        while True:
            await RisingEdge(self.clk)
            if int(self.valid.value) and int(self.ready.value):
                raw = int(self.payload.value) if self.payload is not None else 0
                self.queue.append(self.packer.unpack(raw) if self.packer is not None else raw)
                self.count += 1
            self.ready.value = 0 if next(self._pause) else 1


async def wait_until(clk, condition, *, timeout_cycles: int = 100000, what: str = "condition"):
    for _ in range(timeout_cycles):
        if condition():
            return
        await RisingEdge(clk)
    raise AssertionError(f"Timed out after {timeout_cycles} cycles waiting for {what}")
