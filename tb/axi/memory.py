"""An AXI4 memory model (cocotbext-axi ``AxiRam``) that answers SLVERR or DECERR for
chosen address ranges, with pause generators on every channel.

Runs inside the simulation: no Amaranth imports.
"""

from __future__ import annotations

from cocotbext.axi import AxiResp
from cocotbext.axi.axi_ram import AxiRamRead, AxiRamWrite
from cocotbext.axi.memory import Memory

__all__ = ["ErrorRam", "bind_ports"]


class _Faulty:
    """Mixin for the read and write halves: accesses touching a faulty range raise,
    which cocotbext-axi turns into SLVERR; the response is then rewritten to the
    range's code (SLVERR or DECERR)."""

    def _init_faults(self, owner, channel):
        self._owner = owner
        self._code = None
        send = channel.send

        async def patched(transaction):
            for field in ("rresp", "bresp"):
                if hasattr(transaction, field) and self._code is not None:
                    if int(getattr(transaction, field)) == AxiResp.SLVERR:
                        setattr(transaction, field, self._code)
            if hasattr(transaction, "bresp"):
                self._code = None
            await send(transaction)

        channel.send = patched

    def _check(self, address, length):
        for lo, hi, code in self._owner.faults:
            if address < hi and lo < address + length:
                self._code = code
                raise OSError(f"access at {address:#x} hits a {code.name} range")
        if hasattr(self, "r_channel"):
            self._code = None


class _Read(_Faulty, AxiRamRead):
    def __init__(self, owner, bus, clock, reset, mem):
        super().__init__(bus, clock, reset, mem=mem)
        self._init_faults(owner, self.r_channel)

    async def _read(self, address, length):
        self._check(address % self.size, length)
        return await super()._read(address, length)


class _Write(_Faulty, AxiRamWrite):
    def __init__(self, owner, bus, clock, reset, mem):
        super().__init__(bus, clock, reset, mem=mem)
        self._init_faults(owner, self.b_channel)

    async def _write(self, address, data):
        self._check(address % self.size, len(data))
        await super()._write(address, data)


class ErrorRam(Memory):
    """``AxiRam`` whose ``faults`` list of ``(lo, hi, AxiResp)`` makes accesses to
    ``[lo, hi)`` fail with that response (data of failing writes is not stored)."""

    def __init__(self, bus, clock, size: int, reset=None):
        super().__init__(size)
        self.faults: list = []
        self.write_if = _Write(self, bus.write, clock, reset, self.mem)
        self.read_if = _Read(self, bus.read, clock, reset, self.mem)

    def channels(self):
        return (self.write_if.aw_channel, self.write_if.w_channel, self.write_if.b_channel,
                self.read_if.ar_channel, self.read_if.r_channel)

    def set_pause_generators(self, make) -> None:
        """``make()`` returns a fresh generator for each channel (or None for none)."""
        for ch in self.channels():
            ch.set_pause_generator(make())


def bind_ports(dut, names) -> None:
    """Look up every top-level port handle before cocotbext-axi's ``from_prefix`` runs.

    ``from_prefix`` probes optional signals that do not exist, which makes cocotb 1.9
    discover all objects; under Verilator 5.006 that caches handles to the module's
    internal copies of input ports, and writes through those are lost. Handles
    fetched first stay bound to the ports themselves."""
    for name in ("clk", "rst", *names):
        getattr(dut, name)
