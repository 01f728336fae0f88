"""The host bridge: a framed, checksummed protocol over a byte stream (a UART).

The host sends a request frame and the bridge answers each one with a response frame
(:data:`PROTOCOL` holds every constant; the manifest's ``link`` section carries it to
the host, :mod:`intformer.sw.link`)::

    request   SYNC_REQ  cmd  addr[4]  len[2]  payload  crc[2]
    response  SYNC_RESP status  payload  crc[2]

Multi-byte fields are little-endian. ``crc`` is CRC-16/CCITT-FALSE (polynomial
0x1021, initial value 0xFFFF, no reflection) of the bytes after the sync byte.

==========  =================  =================================================
command     request payload    response payload (status OK only)
==========  =================  =================================================
REG_WRITE   value[4]           (none): done once the register write is answered
REG_READ    (none)             value[4]
MEM_WRITE   ``len`` bytes      (none)
MEM_READ    (none)             ``len`` bytes
STATUS      (none)             flags (bit 0 irq, bit 1 busy), cycles[4]
==========  =================  =================================================

``addr`` is a register offset or a byte address in the board's memory; ``len`` is
0 except for the memory commands. A register write is performed only after its CRC
checked; memory bytes are written as they arrive (a retried write rewrites them).
``cycles`` counts clock cycles since the last register write while ``irq`` is low:
from a start to the interrupt.

Errors answer with a status other than OK and no payload: BAD_CRC, BAD_COMMAND
(unknown ``cmd``), BAD_ADDRESS (a memory access past ``mem_bytes``; nothing is
written), BUS_ERROR (the register block answered SLVERR/DECERR) and TIMEOUT: a
frame that stops for ``timeout`` cycles between two bytes is dropped and answered
TIMEOUT, so a lost byte never leaves the bridge waiting. Between frames the bridge
hunts for the request sync byte, so stray bytes are skipped.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature

__all__ = ["PROTOCOL", "HostBridge", "crc16_next"]

#: The protocol's constants, exported as the manifest's ``link`` section.
PROTOCOL: dict = {
    "sync_request": 0x5A,
    "sync_response": 0xA5,
    "commands": {"reg_write": 1, "reg_read": 2, "mem_write": 3, "mem_read": 4, "status": 5},
    "status": {"ok": 0, "bad_crc": 1, "bad_command": 2, "bad_address": 3, "timeout": 4,
               "bus_error": 5},
    "crc": {"name": "CRC-16/CCITT-FALSE", "poly": 0x1021, "init": 0xFFFF, "bytes": 2},
    "header_bytes": 7,
    "max_len": 0xFFFF,
    "status_flags": {"irq": 1, "busy": 2},
}

_CMD = PROTOCOL["commands"]
_ST = PROTOCOL["status"]
_CRC = PROTOCOL["crc"]


def _crc16_terms() -> list[tuple[frozenset, frozenset]]:
    # The CRC step is linear over GF(2): per output bit, the CRC and byte bits it XORs.
    bits = [(frozenset([i]), frozenset()) for i in range(16)]
    for j in range(8):
        c, b = bits[8 + j]
        bits[8 + j] = (c, b ^ {j})
    for _ in range(8):
        top = bits[15]
        bits = [(frozenset(), frozenset())] + bits[:15]
        for i in range(16):
            if _CRC["poly"] >> i & 1:
                bits[i] = (bits[i][0] ^ top[0], bits[i][1] ^ top[1])
    return bits


_CRC16_TERMS = _crc16_terms()


def crc16_next(crc: Value, byte: Value) -> Value:
    """The CRC register after ``byte`` (MSB first, polynomial of :data:`PROTOCOL`), as
    one XOR per output bit."""
    out = []
    for c_bits, b_bits in _CRC16_TERMS:
        terms = [crc[i] for i in sorted(c_bits)] + [byte[j] for j in sorted(b_bits)]
        v = terms[0]
        for t in terms[1:]:
            v = v ^ t
        out.append(v)
    return Cat(*out)


class HostBridge(wiring.Component):
    """Serves the :data:`PROTOCOL` frames from ``rx`` on the accelerator's registers
    (an AXI4-Lite manager) and the board memory's byte port, answering on ``tx``.

    Timing: one request byte is taken per cycle at most (a UART delivers one per 10
    bit times); a memory byte is written or read through the memory's host port
    (:class:`~intformer.hw.axiram.AXIRam`), waiting for its ``ack``. A response
    starts at most a few cycles after the request's last byte (a register access
    waits for the AXI4-Lite answer).

    Parameters
    ----------
    csr_addr_width : int
        Width of the register block's address.
    mem_bytes : int
        Size of the memory behind the byte port (a power of two).
    timeout : int
        Cycles a frame may pause between two bytes before it is dropped.

    Members
    -------
    rx : In(stream.Signature(8))
        Request bytes.
    tx : Out(stream.Signature(8))
        Response bytes.
    m_axil : Out(AXI4LiteSignature)
        To the accelerator's ``s_axil``.
    mem_addr : Out(log2(mem_bytes))
    mem_req, mem_we : Out(1)
    mem_wdata : Out(8)
    mem_ack : In(1)
    mem_rdata : In(8)
        The memory's host port (see :class:`~intformer.hw.axiram.AXIRam`).
    irq, busy : In(1)
        The accelerator's interrupt and busy lines.
    error : Out(1)
        High from a frame answered with an error status to the next one answered OK.
    active : Out(1)
        High while a frame is received or answered.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If ``mem_bytes`` is not a power of two or ``timeout`` is below 16.
    """

    def __init__(self, *, csr_addr_width: int, mem_bytes: int, timeout: int):
        for name, value in (("csr_addr_width", csr_addr_width), ("mem_bytes", mem_bytes),
                            ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"HostBridge {name} must be an integer, not {value!r}")
        if mem_bytes < 1 or mem_bytes & (mem_bytes - 1):
            raise ValueError(f"HostBridge mem_bytes must be a power of two, not {mem_bytes}")
        if timeout < 16:
            raise ValueError(f"HostBridge timeout must be at least 16 cycles, not {timeout}")
        self._mem_bytes = mem_bytes
        self._timeout = timeout
        super().__init__({
            "rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8)),
            "m_axil": Out(AXI4LiteSignature(addr_width=csr_addr_width)),
            "mem_addr": Out((mem_bytes - 1).bit_length()), "mem_req": Out(1),
            "mem_we": Out(1), "mem_wdata": Out(8), "mem_ack": In(1), "mem_rdata": In(8),
            "irq": In(1), "busy": In(1), "error": Out(1), "active": Out(1),
        })

    @property
    def mem_bytes(self) -> int:
        return self._mem_bytes

    @property
    def timeout(self) -> int:
        return self._timeout

    def manifest(self) -> dict:
        """The ``link`` section: :data:`PROTOCOL` plus this bridge's sizes."""
        return {**PROTOCOL, "mem_bytes": self._mem_bytes, "timeout_cycles": self._timeout}

    def elaborate(self, platform) -> Module:
        m = Module()
        rx, tx, lite = self.rx, self.tx, self.m_axil
        got = Signal()
        byte = rx.payload
        m.d.comb += got.eq(rx.valid & rx.ready)
        # Memory byte addresses are taken modulo the memory's size: the frame's address
        # check looks at the bits above once, and the access then counts ``ptr`` from the
        # address up to ``end`` (address + length, up to one bit wider than the memory
        # and the length), so no byte count is kept.
        aw = len(self.mem_addr)

        hdr = Signal(56)                  # cmd, addr[4], len[2], little-endian
        cmd, addr, length = hdr[:8], hdr[8:40], hdr[40:56]
        pw = max(aw, len(length)) + 1
        n = Signal(3)
        data = Signal(40)                 # register value, STATUS payload, or a memory byte
        crc = Signal(16)
        crc_bad = Signal()                # a received CRC byte differed from ours
        status = Signal(range(max(_ST.values()) + 1))
        ptr = Signal(pw)
        end = Signal(pw)
        pending = Signal()
        error = Signal()
        m.d.comb += [self.error.eq(error), self.mem_addr.eq(ptr[:aw]), self.mem_wdata.eq(data[:8])]

        # One CRC step serves both directions: the byte received, or the byte sent
        # (the bridge never does both in one cycle).
        crc_next = Signal(16)
        m.d.comb += crc_next.eq(crc16_next(crc, Mux(tx.valid, tx.payload, byte)))

        idle = Signal(range(self._timeout + 1))
        with m.If(got):
            m.d.sync += idle.eq(0)
        with m.Elif(idle != self._timeout):
            m.d.sync += idle.eq(idle + 1)
        timed_out = Signal()
        m.d.comb += timed_out.eq(idle == self._timeout)

        cycles = Signal(32)
        cycles_reset = Signal()
        with m.If(cycles_reset):
            m.d.sync += cycles.eq(0)
        with m.Elif(~self.irq & (cycles != 0xFFFFFFFF)):
            m.d.sync += cycles.eq(cycles + 1)

        is_mem = (cmd == _CMD["mem_write"]) | (cmd == _CMD["mem_read"])
        known = Signal()
        m.d.comb += known.eq((cmd >= _CMD["reg_write"]) & (cmd <= _CMD["status"]))

        def take():
            m.d.sync += crc.eq(crc_next)

        def timeout_to_respond():
            with m.If(timed_out & ~pending):
                m.d.sync += status.eq(_ST["timeout"])
                m.next = "RESPOND"

        with m.FSM():
            with m.State("HUNT"):
                m.d.comb += rx.ready.eq(1)
                with m.If(got & (byte == PROTOCOL["sync_request"])):
                    m.d.sync += [crc.eq(_CRC["init"]), n.eq(0)]
                    m.next = "HEADER"
            with m.State("HEADER"):
                m.d.comb += [rx.ready.eq(1), self.active.eq(1)]
                with m.If(got):
                    take()
                    m.d.sync += [hdr.eq(Cat(hdr[8:], byte)), n.eq(n + 1)]
                    with m.If(n == PROTOCOL["header_bytes"] - 1):
                        m.next = "DECODE"
                with m.Else():
                    timeout_to_respond()
            with m.State("DECODE"):
                m.d.comb += self.active.eq(1)
                last = Signal(pw)
                m.d.comb += last.eq(addr[:aw] + length)
                m.d.sync += [n.eq(0), ptr.eq(addr[:aw]), end.eq(last), status.eq(_ST["ok"]),
                             crc_bad.eq(0)]
                with m.If(~known):
                    m.d.sync += status.eq(_ST["bad_command"])
                with m.Elif(is_mem & ((addr[aw:] != 0) | (last > self._mem_bytes))):
                    m.d.sync += status.eq(_ST["bad_address"])
                with m.If(known & (cmd == _CMD["reg_write"])):
                    m.next = "REG_PAYLOAD"
                with m.Elif(known & (cmd == _CMD["mem_write"]) & (length != 0)):
                    m.next = "MEM_PAYLOAD"
                with m.Else():
                    m.next = "CRC"
            with m.State("REG_PAYLOAD"):
                m.d.comb += [rx.ready.eq(1), self.active.eq(1)]
                with m.If(got):
                    take()
                    m.d.sync += [data.eq(Cat(data[8:32], byte)), n.eq(n + 1)]
                    with m.If(n == 3):
                        m.d.sync += n.eq(0)
                        m.next = "CRC"
                with m.Else():
                    timeout_to_respond()
            with m.State("MEM_PAYLOAD"):
                # Without a byte pending, ptr counts the bytes taken.
                m.d.comb += [rx.ready.eq(~pending & (ptr != end)), self.active.eq(1),
                             self.mem_req.eq(pending), self.mem_we.eq(1)]
                with m.If(pending & self.mem_ack):
                    m.d.sync += [pending.eq(0), ptr.eq(ptr + 1)]
                with m.If(got):
                    take()
                    # A BAD_ADDRESS frame is read to its end, nothing written.
                    m.d.sync += [data[:8].eq(byte), pending.eq(status == _ST["ok"])]
                    with m.If(status != _ST["ok"]):
                        m.d.sync += ptr.eq(ptr + 1)
                with m.If((ptr == end) & ~pending):
                    m.d.sync += n.eq(0)
                    m.next = "CRC"
                with m.Elif(~got):
                    timeout_to_respond()
            with m.State("CRC"):
                # Each CRC byte is compared as it arrives, low byte first.
                m.d.comb += [rx.ready.eq(1), self.active.eq(1)]
                with m.If(got):
                    m.d.sync += n.eq(n + 1)
                    with m.If(byte != crc.word_select(n[0], 8)):
                        m.d.sync += crc_bad.eq(1)
                    with m.If(n == 1):
                        m.next = "CHECK"
                with m.Else():
                    timeout_to_respond()
            with m.State("CHECK"):
                m.d.comb += self.active.eq(1)
                m.d.sync += [ptr.eq(addr[:aw]), n.eq(0)]
                with m.If(crc_bad):
                    m.d.sync += status.eq(_ST["bad_crc"])
                    m.next = "RESPOND"
                with m.Elif(status != _ST["ok"]):
                    m.next = "RESPOND"
                with m.Elif(cmd == _CMD["reg_write"]):
                    m.next = "LITE_WRITE"
                with m.Elif(cmd == _CMD["reg_read"]):
                    m.next = "LITE_READ"
                with m.Else():
                    with m.If(cmd == _CMD["status"]):
                        m.d.sync += data.eq(Cat(self.irq, self.busy, Const(0, 6), cycles))
                    m.next = "RESPOND"
            self._lite(m, lite, addr, data, status, cycles_reset)
            with m.State("RESPOND"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(PROTOCOL["sync_response"]),
                             self.active.eq(1)]
                with m.If(tx.ready):
                    m.d.sync += crc.eq(_CRC["init"])
                    m.next = "T_STATUS"
            with m.State("T_STATUS"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(status), self.active.eq(1)]
                with m.If(tx.ready):
                    m.d.sync += [crc.eq(crc_next), n.eq(0), error.eq(status != _ST["ok"])]
                    with m.If(status != _ST["ok"]):
                        m.next = "T_CRC"
                    with m.Elif((cmd == _CMD["reg_read"]) | (cmd == _CMD["status"])):
                        m.next = "T_DATA"
                    with m.Elif((cmd == _CMD["mem_read"]) & (ptr != end)):
                        m.next = "T_MEM"
                    with m.Else():
                        m.next = "T_CRC"
            with m.State("T_DATA"):
                last = Signal()
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(data[:8]), self.active.eq(1),
                             last.eq(n == Mux(cmd == _CMD["status"], 4, 3))]
                with m.If(tx.ready):
                    m.d.sync += [crc.eq(crc_next), data.eq(data >> 8), n.eq(n + 1)]
                    with m.If(last):
                        m.d.sync += n.eq(0)
                        m.next = "T_CRC"
            with m.State("T_MEM"):
                m.d.comb += [self.mem_req.eq(1), self.active.eq(1)]
                with m.If(self.mem_ack):
                    m.next = "T_MEM_DATA"
            with m.State("T_MEM_DATA"):
                m.d.comb += self.active.eq(1)
                m.d.sync += [data[:8].eq(self.mem_rdata), ptr.eq(ptr + 1)]
                m.next = "T_MEM_SEND"
            with m.State("T_MEM_SEND"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(data[:8]), self.active.eq(1)]
                with m.If(tx.ready):
                    m.d.sync += crc.eq(crc_next)
                    with m.If(ptr == end):
                        m.next = "T_CRC"
                    with m.Else():
                        m.next = "T_MEM"
            with m.State("T_CRC"):
                m.d.comb += [tx.valid.eq(1), tx.payload.eq(crc.word_select(n[0], 8)),
                             self.active.eq(1)]
                with m.If(tx.ready):
                    m.d.sync += n.eq(n + 1)
                    with m.If(n[0]):
                        m.next = "HUNT"
        return m

    def _lite(self, m: Module, lite, addr: Value, data: Signal, status: Signal,
              cycles_reset: Signal) -> None:
        aw_done = Signal()
        w_done = Signal()
        with m.State("LITE_WRITE"):
            m.d.comb += [self.active.eq(1),
                         lite.awaddr.eq(addr), lite.awvalid.eq(~aw_done),
                         lite.wdata.eq(data[:32]), lite.wstrb.eq(0xF), lite.wvalid.eq(~w_done),
                         lite.bready.eq(aw_done & w_done)]
            with m.If(lite.awvalid & lite.awready):
                m.d.sync += aw_done.eq(1)
            with m.If(lite.wvalid & lite.wready):
                m.d.sync += w_done.eq(1)
            with m.If(lite.bready & lite.bvalid):
                m.d.sync += [aw_done.eq(0), w_done.eq(0)]
                m.d.comb += cycles_reset.eq(1)
                with m.If(lite.bresp != 0):
                    m.d.sync += status.eq(_ST["bus_error"])
                m.next = "RESPOND"
        with m.State("LITE_READ"):
            m.d.comb += [self.active.eq(1), lite.araddr.eq(addr), lite.arvalid.eq(~aw_done),
                         lite.rready.eq(aw_done)]
            with m.If(lite.arvalid & lite.arready):
                m.d.sync += aw_done.eq(1)
            with m.If(lite.rready & lite.rvalid):
                m.d.sync += [aw_done.eq(0), data.eq(lite.rdata)]
                with m.If(lite.rresp != 0):
                    m.d.sync += status.eq(_ST["bus_error"])
                m.next = "RESPOND"
