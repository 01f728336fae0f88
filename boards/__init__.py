"""Board support: one module per supported board, and the registry of them.

Each board module (``intformer.boards.<name>``) defines ``BOARD``, a :class:`Board`:
which preset runs on it, its clock and UART, the size of the on-chip memory behind the
accelerator's AXI4 port, the FPGA family, and the amaranth-boards platform. The board
module also holds the board design (pins, LEDs, clocking) and its build entry points;
this file only names what every board has, so that the CLI, the board simulation and
the tests read one description.
"""

from __future__ import annotations

import dataclasses
import importlib

__all__ = ["Board", "BOARDS", "board"]

#: The supported boards, in the order the CLI lists them.
BOARDS = ("icebreaker", "ulx3s", "arty_a7")


@dataclasses.dataclass(frozen=True)
class Board:
    """What the rest of intformer needs to know about one board.

    Parameters
    ----------
    name : str
        The board's name (its module in ``intformer.boards``).
    preset : str
        The configuration preset (:data:`intformer.hw.config.PRESETS`) built for it.
    family : str
        ``"ice40"``, ``"ecp5"`` or ``"xilinx"``.
    device, package : str
        The FPGA as the platform names it.
    clock_hz : int
        The design's clock frequency.
    baud : int
        The host link's UART rate; ``clock_hz`` must be a whole multiple of it.
    mem_bytes : int
        The on-chip memory behind the accelerator's AXI4 port (a power of two).
    platform : str
        ``"module:Class"`` of the amaranth-boards platform.
    """

    name: str
    preset: str
    family: str
    device: str
    package: str
    clock_hz: int
    baud: int
    mem_bytes: int
    platform: str

    def __post_init__(self):
        if self.family not in ("ice40", "ecp5", "xilinx"):
            raise ValueError(f"Board {self.name} family must be ice40, ecp5 or xilinx, "
                             f"not {self.family!r}")
        if self.clock_hz % self.baud or self.clock_hz // self.baud < 4:
            raise ValueError(f"Board {self.name} clock of {self.clock_hz} Hz is not a whole "
                             f"multiple (of at least 4) of {self.baud} baud")
        if self.mem_bytes <= 0 or self.mem_bytes & (self.mem_bytes - 1):
            raise ValueError(f"Board {self.name} memory must be a power of 2 bytes, not "
                             f"{self.mem_bytes}")

    @property
    def divisor(self) -> int:
        """UART clock cycles per bit."""
        return self.clock_hz // self.baud

    @property
    def config(self):
        """The preset's :class:`~intformer.hw.config.Config`."""
        from intformer.hw.config import preset
        return preset(self.preset)

    def top(self, *, power_on_reset: bool = False):
        """The board-independent design: :class:`~intformer.hw.boardtop.BoardTop` of
        the preset with this board's memory and UART divisor."""
        from intformer.hw.boardtop import BoardTop
        return BoardTop(self.config, mem_bytes=self.mem_bytes, divisor=self.divisor,
                        power_on_reset=power_on_reset)

    def platform_class(self):
        """The amaranth-boards platform class."""
        module, _, cls = self.platform.partition(":")
        return getattr(importlib.import_module(module), cls)


def board(name: str) -> Board:
    """The :class:`Board` called ``name``.

    Raises
    ------
    ValueError
        If there is no such board.
    """
    if name not in BOARDS:
        raise ValueError(f"Unknown board {name!r}; the boards are {', '.join(BOARDS)}")
    return importlib.import_module(f"{__name__}.{name}").BOARD
