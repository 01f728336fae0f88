"""A bit-level 8N1 UART for cocotb testbenches: drives the board's receive pin and
decodes its transmit pin, ``divisor`` clock periods per bit.

Runs inside the simulation: no Amaranth imports.
"""

from __future__ import annotations

from collections import deque

import cocotb
from cocotb.triggers import FallingEdge, RisingEdge, Timer

__all__ = ["UartModel"]


class UartModel:
    """Host end of a serial line. ``send(data)`` queues bytes; ``received`` collects
    what the design transmits (``recv(n)`` waits for ``n`` bytes)."""

    def __init__(self, clk, rx, tx, *, divisor: int, period_ns: int = 10):
        self.clk, self.rx, self.tx = clk, rx, tx
        self.bit = divisor * period_ns
        self.received: deque[int] = deque()
        self._out: deque[int] = deque()
        self._gap = 0
        rx.value = 1
        cocotb.start_soon(self._send_loop())
        cocotb.start_soon(self._recv_loop())

    def send(self, data: bytes, *, gap_bits: int = 0) -> None:
        self._gap = gap_bits
        self._out.extend(data)

    async def _send_loop(self):
        while True:
            if not self._out:
                await RisingEdge(self.clk)
                continue
            byte = self._out.popleft()
            for bit in [0] + [(byte >> i) & 1 for i in range(8)] + [1]:
                self.rx.value = bit
                await Timer(self.bit, "ns")
            if self._gap:
                await Timer(self._gap * self.bit, "ns")

    async def _recv_loop(self):
        while True:
            await FallingEdge(self.tx)
            await Timer(self.bit // 2, "ns")
            if int(self.tx.value):
                continue          # a glitch, not a start bit
            byte = 0
            for i in range(8):
                await Timer(self.bit, "ns")
                byte |= int(self.tx.value) << i
            await Timer(self.bit, "ns")
            assert int(self.tx.value) == 1, "stop bit low on the design's transmit pin"
            self.received.append(byte)

    async def recv(self, n: int, *, timeout_bits: int = 2000) -> bytes:
        while self._out:              # the request is still going out
            await Timer(self.bit, "ns")
        waited = 0
        while len(self.received) < n:
            await Timer(self.bit, "ns")
            waited += 1
            assert waited < timeout_bits + 11 * n, (
                f"design answered {len(self.received)} of {n} bytes")
        return bytes(self.received.popleft() for _ in range(n))

    async def idle(self) -> None:
        while self._out:
            await Timer(self.bit, "ns")
        await Timer(11 * self.bit, "ns")
