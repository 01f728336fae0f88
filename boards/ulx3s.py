"""ULX3S (LFE5U-85F): the ``ulx3s`` preset at the 25 MHz oscillator, its 128 KiB of
memory in DP16KD block RAM, the host link on the FTDI UART; LEDs 0 busy, 1 done, 2 link,
7 error."""

from intformer.hw.boardtop import BoardPins

from . import Board

__all__ = ["BOARD", "LEDS", "design"]

BOARD = Board(name="ulx3s", preset="ulx3s", family="ecp5", device="LFE5U-85F",
              package="BG381", clock_hz=25_000_000, baud=1_000_000, mem_bytes=128 * 1024,
              platform="amaranth_boards.ulx3s:ULX3S_85F_Platform")

#: Status -> (platform resource, number).
LEDS = {"busy": ("led", 0), "done": ("led", 1), "link": ("led", 2), "error": ("led", 7)}


def design(board: Board = BOARD) -> BoardPins:
    """The board design: :class:`~intformer.hw.boardtop.BoardTop` on the pins, clocked by
    the platform's 25 MHz ``clk25``. ``board`` replaces :data:`BOARD` (a test builds a
    smaller preset on these pins)."""
    return BoardPins(board.top(), leds=LEDS)
