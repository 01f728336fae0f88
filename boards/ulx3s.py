"""ULX3S (LFE5U-85F): the ``ulx3s`` preset, its memory in DP16KD block RAM, the host
link on the FTDI UART."""

from . import Board

__all__ = ["BOARD"]

BOARD = Board(name="ulx3s", preset="ulx3s", family="ecp5", device="LFE5U-85F",
              package="BG381", clock_hz=25_000_000, baud=1_000_000, mem_bytes=128 * 1024,
              platform="amaranth_boards.ulx3s:ULX3S_85F_Platform")
