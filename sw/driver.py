"""Host driver: load a program's memory image, start the accelerator, wait for the
interrupt, read the results and the performance counters.

The same logic serves simulation and boards: it talks to the hardware only through
a *bus* object with five coroutines (a synchronous host wraps its calls in trivial
coroutines):

``read_reg(offset) -> int`` / ``write_reg(offset, value)``
    32-bit accesses to the register block.
``write_mem(addr, data)`` / ``read_mem(addr, length) -> bytes``
    The memory the accelerator's DMA sees, by byte address.
``wait_irq(timeout)``
    Return once the interrupt line is high (or raise ``TimeoutError``).

Register offsets and fields come from the manifest's ``registers`` section, error
names from ``errors``; nothing is hard-coded.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Driver", "RunResult", "AcceleratorError"]


class AcceleratorError(RuntimeError):
    """A stream ended with an error code; ``addr`` is the ``error_addr`` register (the
    address of the first bus error), named in the message for ``bus_error``."""

    def __init__(self, name: str, code: int, index: int, addr: int = 0):
        where = f" at address {addr:#x}" if name == "bus_error" else ""
        super().__init__(f"Command stream failed with {name} (code {code}) at command "
                         f"{index}{where}")
        self.name, self.code, self.index, self.addr = name, code, index, addr


@dataclass
class RunResult:
    """What one run returns: the memory image after the run, the error (``"none"``
    on success), the command index at fault, every ``perf_*`` counter and the address
    of the first bus error (0 without one)."""
    image: bytes
    error: str
    error_index: int
    counters: dict[str, int] = field(default_factory=dict)
    error_addr: int = 0


class Driver:
    """Runs programs on one accelerator.

    Parameters
    ----------
    manifest : dict
        The design's manifest (``registers``, ``errors``, ``commands``).
    bus : object
        See the module documentation.
    base : int
        Byte address of the memory region the driver uses: the image goes there, the
        command stream after it, and the DMA window covers both.

    Raises
    ------
    ValueError
        If the manifest has no register map.
    """

    def __init__(self, manifest: dict, bus, *, base: int = 0):
        if "registers" not in manifest:
            raise ValueError("Manifest has no 'registers' section; is this an accelerator?")
        self.manifest = manifest
        self.bus = bus
        self.base = base
        self.regs = manifest["registers"]
        self.errors = {code: name for name, code in manifest["errors"].items()}

    def _offset(self, reg: str) -> int:
        return self.regs[reg]["offset"]

    def _field(self, reg: str, name: str, value: int) -> int:
        f = self.regs[reg]["fields"][name]
        return (value & f["mask"]) >> f["bit"]

    def _mask(self, reg: str, *names: str) -> int:
        out = 0
        for name in names:
            out |= self.regs[reg]["fields"][name]["mask"]
        return out

    async def write(self, reg: str, value: int) -> None:
        await self.bus.write_reg(self._offset(reg), value)

    async def read(self, reg: str) -> int:
        return await self.bus.read_reg(self._offset(reg))

    async def counters(self) -> dict[str, int]:
        return {name[len("perf_"):]: await self.read(name)
                for name in self.regs if name.startswith("perf_")}

    async def run(self, image: bytes, stream: bytes, *, command_bytes: int,
                  timeout: float = 1e7, check: bool = True) -> RunResult:
        """Run one command stream on ``image`` and return the image after it.

        Raises
        ------
        AcceleratorError
            If the stream ends with an error and ``check`` is set.
        """
        stream_off = -(-len(image) // 64) * 64
        size = stream_off + len(stream)
        await self.bus.write_mem(self.base, bytes(image))
        await self.bus.write_mem(self.base + stream_off, bytes(stream))
        await self.write("window_base", self.base)
        await self.write("window_limit", self.base + size)
        await self.write("cmd_addr", self.base + stream_off)
        await self.write("cmd_count", len(stream) // command_bytes)
        both = self._mask("irq_status", "done", "error")
        await self.write("irq_status", both)
        await self.write("irq_enable", both)
        await self.write("ctrl", self._mask("ctrl", "start"))
        await self.bus.wait_irq(timeout)
        status = await self.read("status")
        code = self._field("status", "error", status)
        index = await self.read("error_index")
        addr = await self.read("error_addr")
        counters = await self.counters()
        await self.write("irq_status", both)
        after = await self.bus.read_mem(self.base, len(image))
        name = self.errors.get(code, f"code {code}")
        if check and code:
            raise AcceleratorError(name, code, index, addr)
        return RunResult(bytes(after), name, index, counters, addr)

    async def soft_reset(self, *, polls: int = 10000) -> str:
        """Abandon whatever the accelerator does (``ctrl.soft_reset``), wait until it is
        idle, clear the interrupt causes and return the status error (``"soft_reset"``).
        A :meth:`run` waiting meanwhile raises :class:`AcceleratorError` with it.

        Raises
        ------
        TimeoutError
            If ``status.busy`` is still set after ``polls`` reads.
        """
        await self.write("ctrl", self._mask("ctrl", "soft_reset"))
        for _ in range(polls):
            status = await self.read("status")
            if not self._field("status", "busy", status):
                break
        else:
            raise TimeoutError(f"Accelerator still busy {polls} status reads after a soft "
                               f"reset")
        await self.write("irq_status", self._mask("irq_status", "done", "error"))
        code = self._field("status", "error", status)
        return self.errors.get(code, f"code {code}")
