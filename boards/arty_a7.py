"""Arty A7-100T (XC7A100T): the ``arty_a7`` preset at 50 MHz from an MMCM on the
100 MHz oscillator, its 256 KiB of memory in block RAM, the host link on the FTDI UART;
LEDs LD4 busy, LD5 done, LD6 link, LD7 error, the RESET button resets the design.

Why 50 MHz: the open flow cannot place and route a 7-series part, so the design's
Fmax on the Artix-7 is unmeasured, and the same RTL reaches well under 100 MHz on the
other families (see the README's board table); 50 MHz gives the whole accelerator
(every unit) a 20 ns cycle. The Vivado project's build.tcl stops after routing, before
the bitstream, if it misses it.
"""

from amaranth.hdl import ClockDomain, ClockSignal, Elaboratable, Instance, Module, Signal
from amaranth.lib import io
from amaranth.lib.cdc import ResetSynchronizer

from intformer.hw.boardtop import BoardPins

from . import Board

__all__ = ["BOARD", "LEDS", "OSC_HZ", "VCO_HZ", "design"]

BOARD = Board(name="arty_a7", preset="arty_a7", family="xilinx", device="xc7a100ti",
              package="csg324", clock_hz=50_000_000, baud=1_000_000, mem_bytes=256 * 1024,
              platform="amaranth_boards.arty_a7:ArtyA7_100Platform")

#: Status -> (platform resource, number).
LEDS = {"busy": ("led", 0), "done": ("led", 1), "link": ("led", 2), "error": ("led", 3)}

#: The board oscillator and the MMCM's VCO (within the -1 grade's 600 to 1200 MHz).
OSC_HZ = 100_000_000
VCO_HZ = 1_000_000_000


class _Design(Elaboratable):
    """The ``sync`` domain at ``board.clock_hz`` from an MMCME2_BASE on ``clk100``,
    held in reset while the MMCM is unlocked or RESET is pressed, and the board top."""

    def __init__(self, board: Board):
        self._board = board

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.clk100 = clk100 = io.Buffer("i", platform.request("clk100", 0, dir="-"))
        m.submodules.rst = rst = io.Buffer("i", platform.request("rst", 0, dir="-"))
        m.domains.sync = ClockDomain()
        feedback, locked, clkout = Signal(), Signal(), Signal()
        m.submodules.mmcm = Instance(
            "MMCME2_BASE",
            p_CLKIN1_PERIOD=1e9 / OSC_HZ, p_DIVCLK_DIVIDE=1,
            p_CLKFBOUT_MULT_F=VCO_HZ / OSC_HZ, p_CLKOUT0_DIVIDE_F=VCO_HZ / self._board.clock_hz,
            i_CLKIN1=clk100.i, i_CLKFBIN=feedback, o_CLKFBOUT=feedback,
            i_RST=rst.i, i_PWRDWN=0, o_CLKOUT0=clkout, o_LOCKED=locked)
        m.submodules.bufg = Instance("BUFG", i_I=clkout, o_O=ClockSignal("sync"))
        m.submodules.reset = ResetSynchronizer(~locked, domain="sync")
        m.submodules.board = BoardPins(self._board.top(), leds=LEDS)
        return m


def design(board: Board = BOARD) -> Elaboratable:
    """The board design: the MMCM clock and :class:`~intformer.hw.boardtop.BoardTop` on
    the pins. ``board`` replaces :data:`BOARD` (a test builds a smaller preset on these
    pins)."""
    return _Design(board)
