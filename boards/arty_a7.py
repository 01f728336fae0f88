"""Arty A7-100T (XC7A100T): the ``arty_a7`` preset, its memory in block RAM, the host
link on the FTDI UART."""

from . import Board

__all__ = ["BOARD"]

BOARD = Board(name="arty_a7", preset="arty_a7", family="xilinx", device="xc7a100ti",
              package="csg324", clock_hz=100_000_000, baud=1_000_000, mem_bytes=256 * 1024,
              platform="amaranth_boards.arty_a7:ArtyA7_100Platform")
