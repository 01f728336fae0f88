"""An 8N1 UART: a transmitter and a receiver at a fixed baud divisor.

Both sides run in the ``sync`` domain and count ``divisor`` clock cycles per bit
(``divisor = clock frequency / baud rate``, rounded). The receiver synchronises its
pin with two flip-flops, finds the start bit's falling edge, samples every bit in
its middle and checks the stop bit; a low stop bit is a framing error and the byte
is dropped. The host link (:mod:`intformer.hw.hostlink`) checks every frame, so a
byte the UART gets wrong is caught there.
"""

from __future__ import annotations

from amaranth.hdl import Module, Signal
from amaranth.lib import stream, wiring
from amaranth.lib.cdc import FFSynchronizer
from amaranth.lib.wiring import In, Out

__all__ = ["UARTTx", "UARTRx", "check_divisor"]


def check_divisor(owner: str, divisor) -> int:
    """Raise TypeError / ValueError naming ``owner`` unless ``divisor`` is an integer of at
    least 4 (the receiver samples the middle of a bit and needs room either side)."""
    if isinstance(divisor, bool) or not isinstance(divisor, int):
        raise TypeError(f"{owner} divisor must be an integer, not {divisor!r}")
    if divisor < 4:
        raise ValueError(f"{owner} divisor must be at least 4 clock cycles per bit, "
                         f"not {divisor}")
    return divisor


class UARTTx(wiring.Component):
    """8N1 transmitter.

    A byte taken from ``data`` goes out as a start bit, eight data bits (LSB first)
    and a stop bit, ``divisor`` cycles each: 10 x ``divisor`` cycles per byte.
    ``data.ready`` is high while the line is idle (between bytes, for the cycle after
    the stop bit), so back-to-back bytes leave with no gap.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    data : In(stream.Signature(8))
        Bytes to send.
    tx : Out(1)
        The serial line (high when idle).

    Raises
    ------
    TypeError, ValueError
        As :func:`check_divisor`.
    """

    def __init__(self, *, divisor: int):
        self._divisor = check_divisor("UARTTx", divisor)
        super().__init__({"data": In(stream.Signature(8)), "tx": Out(1, init=1)})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform) -> Module:
        m = Module()
        count = Signal(range(self._divisor))
        bits = Signal(10)          # stop, data[7:0], start: shifted out LSB first
        left = Signal(range(11))
        m.d.comb += self.data.ready.eq(left == 0)
        with m.If(left == 0):
            with m.If(self.data.valid):
                m.d.sync += [bits.eq((1 << 9) | (self.data.payload << 1)), left.eq(10),
                             count.eq(0)]
        with m.Else():
            m.d.comb += self.tx.eq(bits[0])
            with m.If(count == self._divisor - 1):
                m.d.sync += [count.eq(0), bits.eq(bits >> 1), left.eq(left - 1)]
            with m.Else():
                m.d.sync += count.eq(count + 1)
        with m.If(left == 0):
            m.d.comb += self.tx.eq(1)
        return m


class UARTRx(wiring.Component):
    """8N1 receiver.

    A byte is offered on ``data`` in the cycle after its stop bit's middle, and held
    until taken; a byte that arrives while the previous one is still held is lost
    and ``overrun`` pulses. A stop bit sampled low pulses ``frame_error`` and drops
    the byte. A start bit shorter than half a bit (a glitch) is ignored.

    Parameters
    ----------
    divisor : int
        Clock cycles per bit, at least 4.

    Members
    -------
    rx : In(1)
        The serial line (asynchronous: synchronised inside).
    data : Out(stream.Signature(8))
        Received bytes.
    frame_error, overrun : Out(1)
        One-cycle pulses.

    Raises
    ------
    TypeError, ValueError
        As :func:`check_divisor`.
    """

    def __init__(self, *, divisor: int):
        self._divisor = check_divisor("UARTRx", divisor)
        super().__init__({"rx": In(1, init=1), "data": Out(stream.Signature(8)),
                          "frame_error": Out(1), "overrun": Out(1)})

    @property
    def divisor(self) -> int:
        return self._divisor

    def elaborate(self, platform) -> Module:
        m = Module()
        div = self._divisor
        rx = Signal(init=1)
        m.submodules.sync = FFSynchronizer(self.rx, rx, init=1)
        count = Signal(range(div))
        shift = Signal(8)
        left = Signal(range(9))
        valid = Signal()
        m.d.comb += self.data.valid.eq(valid)
        with m.If(self.data.ready):
            m.d.sync += valid.eq(0)

        def deliver():
            with m.If(valid & ~self.data.ready):
                m.d.comb += self.overrun.eq(1)
            with m.Else():
                m.d.sync += [self.data.payload.eq(shift), valid.eq(1)]

        with m.FSM():
            with m.State("IDLE"):
                with m.If(~rx):
                    m.d.sync += count.eq(0)
                    m.next = "START"
            with m.State("START"):
                # Half a bit into the start bit: still low, or a glitch. The pin reaches
                # this state three edges after it fell (two synchroniser stages and
                # IDLE), so sampling lands in the middle of each bit after waiting
                # div // 2 - 2 more cycles.
                with m.If(count == div // 2 - 2):
                    m.d.sync += [count.eq(0), left.eq(8)]
                    with m.If(rx):
                        m.next = "IDLE"
                    with m.Else():
                        m.next = "DATA"
                with m.Else():
                    m.d.sync += count.eq(count + 1)
            with m.State("DATA"):
                with m.If(count == div - 1):
                    m.d.sync += count.eq(0)
                    with m.If(left == 0):
                        with m.If(rx):
                            deliver()
                        with m.Else():
                            m.d.comb += self.frame_error.eq(1)
                        m.next = "STOP"
                    with m.Else():
                        m.d.sync += [shift.eq((rx << 7) | (shift >> 1)), left.eq(left - 1)]
                with m.Else():
                    m.d.sync += count.eq(count + 1)
            with m.State("STOP"):
                # Back to hunting once the line is high (a framing error may hold it low).
                with m.If(rx):
                    m.next = "IDLE"
        return m
