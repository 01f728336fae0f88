"""A serial port that loses or corrupts chosen bytes, for fault tests of the board link.

:class:`FaultyPort` wraps a pyserial-like port (what
:class:`intformer.sw.link.SerialBus` takes). Each :class:`Fault` picks one request
frame by a predicate on its bytes (``SerialBus`` writes one frame per ``write``) and
drops or flips one byte of it (``"out"``, host to board) or of its answer (``"in"``,
board to host). A fault fires once, on the first frame it matches; a frame takes at
most one fault (the first in the list that matches it), so two faults on the same
kind of frame hit a request and its retry.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["Fault", "FaultyPort", "frame_is"]


@dataclass
class Fault:
    """One lost or corrupted byte.

    Parameters
    ----------
    direction : str
        ``"out"`` (a byte of the request frame) or ``"in"`` (a byte of its answer).
    action : str
        ``"drop"`` or ``"flip"`` (XOR with ``mask``).
    when : callable
        ``when(frame: bytes) -> bool`` on request frames; the first match is the target.
    byte : int
        Offset of the byte in the request frame or in its answer.
    mask : int
        Bits a flip inverts.
    """

    direction: str
    action: str
    when: Callable[[bytes], bool]
    byte: int = 0
    mask: int = 0x01
    fired: bool = False

    def __post_init__(self):
        if self.direction not in ("out", "in"):
            raise ValueError(f"Fault direction must be 'out' or 'in', not {self.direction!r}")
        if self.action not in ("drop", "flip"):
            raise ValueError(f"Fault action must be 'drop' or 'flip', not {self.action!r}")


def frame_is(manifest: dict, command: str, addr: int | None = None) -> Callable[[bytes], bool]:
    """A :attr:`Fault.when` matching request frames of ``command`` (at ``addr``), the
    codes from the manifest's ``link`` section."""
    code = manifest["link"]["commands"][command]

    def when(frame: bytes) -> bool:
        return (len(frame) >= 6 and frame[1] == code and
                (addr is None or struct.unpack("<I", frame[2:6])[0] == addr))
    return when


class FaultyPort:
    """``port`` with :attr:`faults` applied; everything else passes through.

    Attributes
    ----------
    faults : list of Fault
    log : list of str
        What each fault did, in order.
    """

    def __init__(self, port, faults: list[Fault] = ()):
        self.port = port
        self.faults = list(faults)
        self.log: list[str] = []
        self._answer: Fault | None = None
        self._pos = 0

    def _apply(self, data: bytearray, i: int, fault: Fault, what: str) -> bytearray:
        fault.fired = True
        if fault.action == "drop":
            self.log.append(f"dropped byte {fault.byte} (0x{data[i]:02x}) of {what}")
            del data[i]
        else:
            self.log.append(f"flipped byte {fault.byte} (0x{data[i]:02x}) of {what}")
            data[i] ^= fault.mask
        return data

    def write(self, data: bytes) -> int:
        frame = bytearray(data)
        self._answer, self._pos = None, 0
        for f in self.faults:
            if f.fired or not f.when(bytes(data)):
                continue
            if f.direction == "out" and f.byte < len(frame):
                frame = self._apply(frame, f.byte, f, f"a request (command {data[1]})")
            else:
                self._answer = f
            break
        self.port.write(bytes(frame))
        return len(data)

    def read(self, n: int = 1) -> bytes:
        data = bytearray(self.port.read(n))
        start = self._pos
        self._pos += len(data)
        f = self._answer
        if f is not None and not f.fired and start <= f.byte < self._pos:
            data = self._apply(data, f.byte - start, f, "an answer")
        return bytes(data)

    def __getattr__(self, name):
        return getattr(self.port, name)

    def __setattr__(self, name, value):
        if name == "timeout":
            self.port.timeout = value
        else:
            super().__setattr__(name, value)
