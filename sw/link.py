"""The host side of the board link: a bus for :class:`intformer.sw.driver.Driver` over a
serial port.

:class:`SerialBus` speaks the framed protocol of the board's host bridge. Every
constant (sync bytes, command and status codes, the CRC, the largest frame) comes
from the manifest's ``link`` section, which the generator writes from the same table
the hardware is built from; this module repeats none of them.

Each request is answered by one response frame. What can go wrong is named, never
a silent wrong result:

* the bridge answers with an error status (:class:`LinkNak`: a bad checksum or a
  timeout it saw in the request, an unknown command, an address past the memory, a
  register bus error);
* the response's checksum does not match (:class:`LinkChecksumError`);
* no complete response arrives within ``silence`` seconds of quiet
  (:class:`LinkTimeout`).

After an error the bus drains the line until it is quiet, so the bridge has dropped
any partial frame, and tries again, up to ``retries`` times, for requests that are
safe to repeat: reads, memory writes, and register writes the bridge reports it did
not perform (its bad-checksum, timeout and unknown-command answers). A register
write whose answer is lost is not repeated (a second ``start`` is not the same as
one): the error is raised.
"""

from __future__ import annotations

import struct
import time

__all__ = ["LinkError", "LinkNak", "LinkChecksumError", "LinkTimeout", "SerialBus", "crc16",
           "open_serial"]


class LinkError(RuntimeError):
    """A request over the board link failed."""


class LinkNak(LinkError):
    """The bridge answered with an error status."""

    def __init__(self, command: str, status: str):
        super().__init__(f"board link: {command} answered {status.upper()} "
                         f"({_NAK_MEANING.get(status, 'unknown status')})")
        self.command, self.status = command, status


class LinkChecksumError(LinkError):
    """A response frame's CRC does not match its bytes."""


class LinkTimeout(LinkError):
    """No complete response within the silence limit."""


_NAK_MEANING = {
    "bad_crc": "the bridge received the request with a bad checksum",
    "timeout": "the request stopped before its end: a byte was lost",
    "bad_command": "the bridge does not know the command",
    "bad_address": "the memory access runs past the board's memory",
    "bus_error": "the register block answered with an AXI error",
}


def _crc_table(poly: int) -> list[int]:
    table = []
    for b in range(256):
        c = b << 8
        for _ in range(8):
            c = ((c << 1) ^ poly) if c & 0x8000 else c << 1
        table.append(c & 0xFFFF)
    return table


def crc16(data: bytes, *, poly: int, init: int) -> int:
    """CRC-16, MSB first, no reflection, no final XOR (CCITT-FALSE with poly 0x1021 and
    init 0xFFFF)."""
    table = _TABLES.get(poly)
    if table is None:
        table = _TABLES[poly] = _crc_table(poly)
    c = init
    for b in data:
        c = ((c << 8) & 0xFFFF) ^ table[(c >> 8) ^ b]
    return c


_TABLES: dict[int, list[int]] = {}


def open_serial(port: str, baudrate: int, *, timeout: float):
    """A pyserial port (``port`` may be a device or a pyserial URL)."""
    try:
        import serial
    except ImportError as e:
        raise LinkError("the board link needs pyserial (pip install pyserial)") from e
    try:
        return serial.serial_for_url(port, baudrate=baudrate, timeout=timeout)
    except (serial.SerialException, OSError) as e:
        raise LinkError(f"cannot open serial port {port!r}: {e}") from e


class SerialBus:
    """The driver's bus over the board's host bridge.

    Parameters
    ----------
    manifest : dict
        The board design's manifest (its ``link`` section).
    port : object
        An open serial port: ``write(bytes)``, ``read(n) -> bytes`` returning early
        only after ``timeout`` seconds of quiet, ``reset_input_buffer()``, a settable
        ``timeout`` (a pyserial ``Serial``).
    retries : int
        Further attempts after a failed request that is safe to repeat.
    silence : float
        Seconds of quiet after which a response is given up.
    chunk : int
        Largest memory burst per frame, in bytes.
    poll : float
        Seconds between two status polls while waiting for the interrupt.

    Attributes
    ----------
    stats : dict
        ``frames``, ``bytes_out``, ``bytes_in``, ``retries`` and ``seconds`` spent in
        requests.
    irq_cycles : int
        Clock cycles from the last register write to the interrupt, as the bridge
        counted them, after :meth:`wait_irq`.

    Raises
    ------
    ValueError
        If the manifest has no ``link`` section or ``chunk`` is out of range.
    """

    def __init__(self, manifest: dict, port, *, retries: int = 3, silence: float = 1.0,
                 chunk: int = 4096, poll: float = 0.0):
        if "link" not in manifest:
            raise ValueError("Manifest has no 'link' section; is this a board design?")
        self.link = link = manifest["link"]
        if not 1 <= chunk <= link["max_len"]:
            raise ValueError(f"SerialBus chunk must be between 1 and {link['max_len']} "
                             f"bytes, not {chunk}")
        self.port = port
        self.retries = retries
        self.silence = silence
        self.chunk = chunk
        self.poll = poll
        self._cmd = link["commands"]
        self._status = {code: name for name, code in link["status"].items()}
        self._not_done = {link["status"][s] for s in ("bad_crc", "timeout", "bad_command")}
        self.stats = {"frames": 0, "bytes_out": 0, "bytes_in": 0, "retries": 0,
                      "seconds": 0.0}
        self.irq_cycles = 0

    def _crc(self, data: bytes) -> int:
        return crc16(data, poly=self.link["crc"]["poly"], init=self.link["crc"]["init"])

    def _read(self, n: int, what: str) -> bytes:
        out = b""
        while len(out) < n:
            got = self.port.read(n - len(out))
            if not got:
                raise LinkTimeout(f"board link: no answer to {what} within {self.silence} s "
                                  f"({len(out)} of {n} bytes received)")
            out += got
        self.stats["bytes_in"] += n
        return out

    def _drain(self) -> None:
        # Wait for quiet: the bridge drops a partial frame after its timeout, and may
        # still be answering stray bytes.
        while self.port.read(4096):
            pass
        self.port.reset_input_buffer()

    def _once(self, name: str, body: bytes, answer: int) -> bytes:
        frame = bytes([self.link["sync_request"]]) + body + struct.pack("<H", self._crc(body))
        self.port.write(frame)
        self.stats["bytes_out"] += len(frame)
        self.stats["frames"] += 1
        # Skip stray bytes before the sync byte (the rest of an earlier answer).
        for _ in range(64):
            if self._read(1, name)[0] == self.link["sync_response"]:
                break
        else:
            raise LinkChecksumError(f"board link: no response sync byte in the answer to "
                                    f"{name}")
        status = self._read(1, name)
        payload = self._read(answer, name) if status[0] == self.link["status"]["ok"] else b""
        (crc,) = struct.unpack("<H", self._read(2, name))
        if crc != self._crc(status + payload):
            raise LinkChecksumError(f"board link: bad checksum in the answer to {name} "
                                    f"(got 0x{crc:04x}, computed "
                                    f"0x{self._crc(status + payload):04x})")
        if status[0] != self.link["status"]["ok"]:
            raise LinkNak(name, self._status.get(status[0], f"status {status[0]}"))
        return payload

    def request(self, command: str, addr: int, *, length: int = 0, payload: bytes = b"",
                answer: int = 0) -> bytes:
        """Send one frame and return the response's payload, retrying as the module
        documentation says.

        Raises
        ------
        LinkError
            Naming what went wrong on the last attempt and how many were made.
        """
        body = struct.pack("<BIH", self._cmd[command], addr, length) + payload
        name = f"{command} at 0x{addr:x}" + (f" ({length} bytes)" if length else "")
        t0 = time.monotonic()
        try:
            for attempt in range(self.retries + 1):
                try:
                    return self._once(name, body, answer)
                except LinkError as e:
                    self._drain()
                    repeatable = (command != "reg_write" or
                                  (isinstance(e, LinkNak) and
                                   self.link["status"][e.status] in self._not_done))
                    if attempt == self.retries or not repeatable:
                        if attempt:
                            e.args = (f"{e.args[0]} after {attempt + 1} attempts",)
                        raise
                    self.stats["retries"] += 1
        finally:
            self.stats["seconds"] += time.monotonic() - t0
        raise AssertionError("unreachable")

    async def write_reg(self, offset: int, value: int) -> None:
        self.request("reg_write", offset, payload=struct.pack("<I", value & 0xFFFFFFFF))

    async def read_reg(self, offset: int) -> int:
        return struct.unpack("<I", self.request("reg_read", offset, answer=4))[0]

    async def write_mem(self, addr: int, data: bytes) -> None:
        data = bytes(data)
        for off in range(0, len(data), self.chunk):
            part = data[off:off + self.chunk]
            self.request("mem_write", addr + off, length=len(part), payload=part)

    async def read_mem(self, addr: int, length: int) -> bytes:
        out = bytearray()
        for off in range(0, length, self.chunk):
            n = min(self.chunk, length - off)
            out += self.request("mem_read", addr + off, length=n, answer=n)
        return bytes(out)

    def status(self) -> tuple[int, int]:
        """The bridge's flags and its cycle count."""
        flags, cycles = struct.unpack("<BI", self.request("status", 0, answer=5))
        return flags, cycles

    async def wait_irq(self, timeout: float) -> None:
        """Poll until the interrupt is high; ``timeout`` is in clock cycles from the
        last register write (the bridge counts them).

        Raises
        ------
        TimeoutError
            If the bridge counted more than ``timeout`` cycles with no interrupt.
        """
        irq = self.link["status_flags"]["irq"]
        while True:
            flags, cycles = self.status()
            if flags & irq:
                self.irq_cycles = cycles
                return
            if cycles > timeout:
                raise TimeoutError(f"no interrupt within {int(timeout)} cycles")
            if self.poll:
                time.sleep(self.poll)
