"""iCEBreaker (iCE40UP5K): the ``icebreaker`` preset, 128 KiB of memory for the
accelerator (the UP5K's SPRAM), the host link on the FTDI UART."""

from . import Board

__all__ = ["BOARD"]

BOARD = Board(name="icebreaker", preset="icebreaker", family="ice40", device="iCE40UP5K",
              package="SG48", clock_hz=12_000_000, baud=1_000_000, mem_bytes=128 * 1024,
              platform="amaranth_boards.icebreaker:ICEBreakerPlatform")
