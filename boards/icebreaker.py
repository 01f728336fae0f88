"""iCEBreaker (iCE40UP5K): the ``icebreaker`` preset at the 12 MHz oscillator, 128 KiB of
memory for the accelerator in the UP5K's four SPRAM blocks, the host link on the FTDI
UART; green LED busy, red LED error (done and link have no LED: the others are on the
snap-off PMOD, which a board may not have)."""

from intformer.hw.boardtop import BoardPins, BoardTop

from . import Board

__all__ = ["BOARD", "LEDS", "design"]

BOARD = Board(name="icebreaker", preset="icebreaker", family="ice40", device="iCE40UP5K",
              package="SG48", clock_hz=12_000_000, baud=1_000_000, mem_bytes=128 * 1024,
              platform="amaranth_boards.icebreaker:ICEBreakerPlatform")

#: Status -> (platform resource, number).
LEDS = {"busy": ("led", 1), "error": ("led", 0)}


def design(board: Board = BOARD) -> BoardPins:
    """The board design: :class:`BoardTop` with its memory in SPRAM, on the pins.
    ``board`` replaces :data:`BOARD` (a test builds a smaller preset on these pins)."""
    top = BoardTop(board.config, mem_bytes=board.mem_bytes, divisor=board.divisor,
                   spram=True)
    return BoardPins(top, leds=LEDS)
