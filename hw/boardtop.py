"""What every board holds: the accelerator, its memory in on-chip RAM, and a UART host
link.

:class:`BoardTop` is the part of a board design that does not depend on the board:
:class:`~intformer.hw.top.Accelerator` with an :class:`~intformer.hw.axiram.AXIRam` on
its AXI4 master port, and a :class:`~intformer.hw.hostlink.HostBridge` behind an 8N1
UART (:mod:`intformer.hw.uart`) that reaches the accelerator's registers and the
memory's host port. A board file (``intformer.boards``) wires its ports to pins; the
board simulation drives them directly.
"""

from __future__ import annotations

from amaranth.hdl import ClockDomain, Elaboratable, Module, Signal
from amaranth.lib import io, wiring
from amaranth.lib.wiring import In, Out

from .axiram import AXIRam
from .config import Config
from .hostlink import HostBridge
from .uart import UARTRx, UARTTx, check_divisor

__all__ = ["BoardTop", "BoardPins"]


class BoardTop(wiring.Component):
    """The accelerator, its on-chip memory and the UART host bridge.

    Parameters
    ----------
    config : Config
    mem_bytes : int
        Memory size (a power of two, within ``config.axi_addr_width``).
    divisor : int
        UART clock cycles per bit (clock frequency / baud rate).
    timeout : int or None
        Cycles a request frame may pause before the bridge drops it; default 64
        byte times (``640 * divisor``).
    power_on_reset : bool
        As :class:`~intformer.hw.simtop.SimTop`: reset from a counter, ``clk`` a port
        (for simulation; a board's platform gives the ``sync`` domain its reset).
    spram : bool
        Memory in iCE40UP5K SPRAM (:class:`AXIRam` ``spram``); for the board build only.

    Members
    -------
    uart_rx : In(1)
        Host to board serial line.
    uart_tx : Out(1)
        Board to host serial line.
    led_busy, led_done, led_error, led_link : Out(1)
        The accelerator is running; its interrupt is pending; the last frame was
        answered with an error; a frame is in progress.

    Raises
    ------
    TypeError
        If ``config`` is not a Config or a size is not an integer.
    ValueError
        As :class:`AXIRam`, :class:`HostBridge` and the UART for their parameters.
    """

    #: Cycles in reset after power-on with ``power_on_reset``.
    POR_CYCLES = 4

    def __init__(self, config: Config, *, mem_bytes: int, divisor: int,
                 timeout: int | None = None, power_on_reset: bool = False,
                 spram: bool = False):
        from .top import Accelerator
        if not isinstance(config, Config):
            raise TypeError(f"BoardTop config must be a Config, not {config!r}")
        self._config = config
        self._divisor = check_divisor("BoardTop", divisor)
        self._por = bool(power_on_reset)
        self._mem = AXIRam(addr_width=config.axi_addr_width, data_width=config.axi_data_width,
                           id_width=config.axi_id_width, mem_bytes=mem_bytes, spram=spram)
        self._bridge = HostBridge(csr_addr_width=config.csr_addr_width, mem_bytes=mem_bytes,
                                  timeout=640 * divisor if timeout is None else timeout)
        self._accel = Accelerator(config)
        super().__init__({
            "uart_rx": In(1, init=1), "uart_tx": Out(1, init=1),
            "led_busy": Out(1), "led_done": Out(1), "led_error": Out(1), "led_link": Out(1),
            **({"clk": In(1)} if self._por else {}),
        })

    @property
    def config(self) -> Config:
        return self._config

    @property
    def mem_bytes(self) -> int:
        return self._mem.mem_bytes

    @property
    def divisor(self) -> int:
        return self._divisor

    def manifest(self) -> dict:
        """The accelerator's manifest sections, plus ``link``: the protocol, the memory
        size, the bridge's timeout and the UART divisor."""
        return {**self._accel.manifest(),
                "link": {**self._bridge.manifest(), "divisor": self._divisor}}

    def elaborate(self, platform) -> Module:
        m = Module()
        if self._por:
            m.domains.por = por = ClockDomain(reset_less=True, local=True)
            m.domains.sync = sync = ClockDomain()
            count = Signal(range(self.POR_CYCLES + 1), init=self.POR_CYCLES)
            with m.If(count != 0):
                m.d.por += count.eq(count - 1)
            m.d.comb += [por.clk.eq(self.clk), sync.clk.eq(self.clk),
                         sync.rst.eq(count != 0)]
        m.submodules.accel = accel = self._accel
        m.submodules.mem = mem = self._mem
        m.submodules.bridge = bridge = self._bridge
        m.submodules.uart_rx = rx = UARTRx(divisor=self._divisor)
        m.submodules.uart_tx = tx = UARTTx(divisor=self._divisor)
        wiring.connect(m, accel.m_axi, mem.s_axi)
        wiring.connect(m, bridge.m_axil, accel.s_axil)
        wiring.connect(m, rx.data, bridge.rx)
        wiring.connect(m, bridge.tx, tx.data)
        # Accelerator exposes only its buses and irq; busy is its core's.
        busy = accel._core.busy
        m.d.comb += [
            rx.rx.eq(self.uart_rx), self.uart_tx.eq(tx.tx),
            mem.host_addr.eq(bridge.mem_addr), mem.host_req.eq(bridge.mem_req),
            mem.host_we.eq(bridge.mem_we), mem.host_wdata.eq(bridge.mem_wdata),
            bridge.mem_ack.eq(mem.host_ack), bridge.mem_rdata.eq(mem.host_rdata),
            bridge.irq.eq(accel.irq), bridge.busy.eq(busy),
            self.led_busy.eq(busy), self.led_done.eq(accel.irq),
            self.led_error.eq(bridge.error), self.led_link.eq(bridge.active),
        ]
        return m


class BoardPins(Elaboratable):
    """A :class:`BoardTop` on a platform's pins: its UART on the platform's ``uart`` 0
    (the board's FTDI serial port), its LEDs on the resources ``leds`` names.

    The ``sync`` domain is the platform's default clock unless the board design adds
    its own.

    Parameters
    ----------
    top : BoardTop
    leds : dict
        ``{"busy" | "done" | "error" | "link": (resource name, number)}``; a status
        left out drives no LED.

    Raises
    ------
    TypeError
        If ``top`` is not a BoardTop.
    ValueError
        If ``leds`` names a status BoardTop does not have.
    """

    STATUS = ("busy", "done", "error", "link")

    def __init__(self, top: BoardTop, *, leds: dict):
        if not isinstance(top, BoardTop):
            raise TypeError(f"BoardPins top must be a BoardTop, not {top!r}")
        unknown = sorted(set(leds) - set(self.STATUS))
        if unknown:
            raise ValueError(f"BoardPins LED status {unknown[0]!r} is not one of "
                             f"{', '.join(self.STATUS)}")
        self._top = top
        self._leds = dict(leds)

    @property
    def top(self) -> BoardTop:
        return self._top

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.top = top = self._top
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx = io.Buffer("o", uart.tx)
        m.d.comb += [top.uart_rx.eq(rx.i), tx.o.eq(top.uart_tx)]
        for status, (name, number) in self._leds.items():
            m.submodules[f"led_{status}"] = led = io.Buffer(
                "o", platform.request(name, number, dir="-"))
            m.d.comb += led.o.eq(getattr(top, f"led_{status}"))
        return m
