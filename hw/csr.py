"""Register block: an AXI4-Lite register slave generated from one register description.

The description is a :class:`RegisterMap` of :class:`Register` objects, each a list
of :class:`Field` objects. The same object generates the hardware
(:class:`CSRBank`) and the manifest section that becomes ``manifest.json``'s
``registers`` and the C header's ``INTFORMER_REGISTER_*`` defines
(:meth:`RegisterMap.manifest`). :func:`standard_registers` gives the map every
accelerator starts from (control, status, interrupts, DMA window, error address,
performance counters); the top adds its own registers with :meth:`RegisterMap.add`
before building the bank::

    regs = standard_registers(addr_width=config.axi_addr_width)
    regs.add(Register("cmd_addr", [Field("addr", 32)], doc="Command stream address"))
    m.submodules.csr = csr = CSRBank(regs, addr_width=config.csr_addr_width)
    m.d.comb += [dma.window_base.eq(csr.window_base.addr), csr.status.busy.eq(busy)]
    # manifest(): {"registers": regs.manifest()}
"""

from __future__ import annotations

from collections.abc import Iterable

from amaranth.hdl import Cat, Module, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .axi import AXI4LiteSignature, AXIResp, check_width

__all__ = ["ACCESS", "Field", "Register", "RegisterMap", "CSRBank", "standard_registers"]

#: Field access kinds.
#:
#: ``rw``  read/write, held in the bank; port ``Out(width)`` carries the value.
#: ``ro``  read-only; port ``In(width)`` supplies the value.
#: ``w1p`` write-one-to-pulse (reads 0); port ``Out(width)`` is high for the one cycle
#:         after a write with that bit set.
#: ``w1c`` sticky bits that hardware sets and software clears by writing 1; port
#:         ``Out(width)`` carries the value, port ``<field>_set : In(width)`` sets bits
#:         (a set wins over a clear in the same cycle, so no event is lost).
ACCESS = ("rw", "ro", "w1p", "w1c")

_NAME_CHARS = set("abcdefghijklmnopqrstuvwxyz0123456789_")


def _check_name(owner: str, name) -> None:
    if not isinstance(name, str):
        raise TypeError(f"{owner} name must be a string, not {name!r}")
    if not name or not set(name) <= _NAME_CHARS or name[0].isdigit() or "__" in name \
            or name.endswith("_set"):
        raise ValueError(f"{owner} name must be lower-case letters, digits and single "
                         f"underscores, not starting with a digit or ending in _set, "
                         f"not {name!r}")


class Field:
    """One field of a register.

    Parameters
    ----------
    name : str
        Lower-case identifier, unique within its register.
    width : int
        Bits, 1 to 32.
    access : str
        One of :data:`ACCESS`.
    reset : int
        Value after reset (``rw`` and ``w1c`` only).
    doc : str
        One line for the manifest.

    Raises
    ------
    TypeError
        If a parameter has the wrong type.
    ValueError
        If the name, width, access or reset value is invalid.
    """

    def __init__(self, name: str, width: int = 1, *, access: str = "rw", reset: int = 0,
                 doc: str = ""):
        _check_name("Field", name)
        check_width(f"Field {name!r}", "width", width, lo=1, hi=32)
        if access not in ACCESS:
            raise ValueError(f"Field {name!r} access must be one of {', '.join(ACCESS)}, "
                             f"not {access!r}")
        if isinstance(reset, bool) or not isinstance(reset, int):
            raise TypeError(f"Field {name!r} reset must be an integer, not {reset!r}")
        if not 0 <= reset < 1 << width or (reset and access in ("ro", "w1p")):
            raise ValueError(f"Field {name!r} reset must fit {width} bits and be 0 for "
                             f"{access} fields, not {reset}")
        self.name, self.width, self.access, self.reset, self.doc = \
            name, width, access, reset, doc

    def __repr__(self):
        return f"Field({self.name!r}, {self.width}, access={self.access!r})"


class Register:
    """One 32-bit register: fields packed from bit 0 upwards in the order given.

    Parameters
    ----------
    name : str
        Lower-case identifier, unique within the map.
    fields : iterable of Field
        At most 32 bits in all, names unique.
    doc : str
        One line for the manifest.

    Raises
    ------
    TypeError
        If ``fields`` holds something other than :class:`Field`.
    ValueError
        If the name is invalid, a field name repeats or the fields exceed 32 bits.
    """

    def __init__(self, name: str, fields: Iterable[Field], *, doc: str = ""):
        _check_name("Register", name)
        fields = list(fields)
        if not fields:
            raise ValueError(f"Register {name!r} needs at least one field")
        bit = 0
        self._bits = {}
        for f in fields:
            if not isinstance(f, Field):
                raise TypeError(f"Register {name!r} fields must be Field objects, not {f!r}")
            if f.name in self._bits:
                raise ValueError(f"Register {name!r} has two fields named {f.name!r}")
            self._bits[f.name] = bit
            bit += f.width
        if bit > 32:
            raise ValueError(f"Register {name!r} fields take {bit} bits, more than 32")
        self.name, self.fields, self.doc = name, fields, doc
        self.offset = None

    def bit(self, field: str) -> int:
        """The lowest bit of ``field``."""
        return self._bits[field]

    def __repr__(self):
        return f"Register({self.name!r}, {self.fields!r})"


class RegisterMap:
    """An ordered set of registers at consecutive 32-bit word offsets.

    Parameters
    ----------
    registers : iterable of Register
        Added in order with :meth:`add`.

    Raises
    ------
    ValueError
        From :meth:`add`.
    """

    def __init__(self, registers: Iterable[Register] = ()):
        self._registers: list[Register] = []
        for reg in registers:
            self.add(reg)

    def add(self, register: Register) -> Register:
        """Place ``register`` at the next free word offset and return it.

        Raises
        ------
        TypeError
            If ``register`` is not a :class:`Register`.
        ValueError
            If its name is taken or it is already in a map.
        """
        if not isinstance(register, Register):
            raise TypeError(f"RegisterMap holds Register objects, not {register!r}")
        if any(r.name == register.name for r in self._registers):
            raise ValueError(f"RegisterMap already has a register named {register.name!r}")
        if register.offset is not None:
            raise ValueError(f"Register {register.name!r} is already in a map")
        register.offset = 4 * len(self._registers)
        self._registers.append(register)
        return register

    def __iter__(self):
        return iter(self._registers)

    def __len__(self):
        return len(self._registers)

    def __getitem__(self, name: str) -> Register:
        for reg in self._registers:
            if reg.name == name:
                return reg
        raise KeyError(name)

    @property
    def size(self) -> int:
        """Bytes of address space the map occupies."""
        return 4 * len(self._registers)

    def manifest(self) -> dict:
        """The map as plain data for ``manifest.json`` (section ``registers``) and the C
        header: register -> offset, doc and fields (bit, width, mask, access, reset)."""
        return {reg.name: {
            "offset": reg.offset, "doc": reg.doc,
            "fields": {f.name: {"bit": reg.bit(f.name), "width": f.width,
                                "mask": ((1 << f.width) - 1) << reg.bit(f.name),
                                "access": f.access, "reset": f.reset, "doc": f.doc}
                       for f in reg.fields}}
            for reg in self._registers}


def standard_registers(*, addr_width: int = 32, perf_counters: bool = True) -> RegisterMap:
    """The registers every accelerator has; the top adds its own after these.

    ``ctrl`` (start, soft_reset pulses), ``status`` (busy, done, error code),
    ``irq_enable`` / ``irq_status`` (done, error; status is write-one-to-clear),
    ``window_base`` / ``window_limit`` (DMA window ``[base, limit)``, byte addresses),
    ``error_addr`` (address of the first bus error since start or soft reset), and, with
    ``perf_counters``, the performance counters ``perf_cycles_busy``,
    ``perf_bytes_read``, ``perf_bytes_written``, ``perf_stall_cycles``. Addresses wider
    than 32 bits get ``*_hi`` registers.
    """
    check_width("standard_registers", "addr_width", addr_width, lo=12, hi=64)
    regs = RegisterMap([
        Register("ctrl", [Field("start", access="w1p", doc="Start the command stream"),
                          Field("soft_reset", access="w1p",
                                doc="Abandon all work, drain the bus, return to idle")],
                 doc="Control"),
        Register("status", [Field("busy", access="ro", doc="A job is running"),
                            Field("done", access="ro", doc="The last job finished"),
                            Field("error", 4, access="ro",
                                  doc="Error code of the last job (0: none)")],
                 doc="Status"),
        Register("irq_enable", [Field("done"), Field("error")], doc="Interrupt enables"),
        Register("irq_status", [Field("done", access="w1c"), Field("error", access="w1c")],
                 doc="Interrupt causes; write 1 to clear"),
    ])
    hi = addr_width > 32
    for name, doc in (("window_base", "DMA window start (byte address)"),
                      ("window_limit", "DMA window end, exclusive (byte address)"),
                      ("error_addr", "Address of the first bus error (SLVERR or DECERR) "
                                     "since start or soft reset")):
        access = "ro" if name == "error_addr" else "rw"
        # Only as wide as the bus address (the limit one bit more, to reach 2**width).
        width = min(32, addr_width + (name == "window_limit"))
        regs.add(Register(name, [Field("addr", width, access=access)], doc=doc))
        if hi:
            regs.add(Register(f"{name}_hi", [Field("addr", addr_width - 32, access=access)],
                              doc=f"{doc}, upper bits"))
    for name, doc in (("perf_cycles_busy", "Cycles the accelerator was busy"),
                      ("perf_bytes_read", "Bytes the DMA read"),
                      ("perf_bytes_written", "Bytes the DMA wrote"),
                      ("perf_stall_cycles", "Busy cycles spent waiting for memory")
                      ) if perf_counters else ():
        regs.add(Register(name, [Field("count", 32, access="ro")], doc=doc))
    return regs


def _register_signature(reg: Register) -> wiring.Signature:
    members = {}
    for f in reg.fields:
        members[f.name] = In(f.width) if f.access == "ro" else Out(f.width, init=f.reset)
        if f.access == "w1c":
            members[f"{f.name}_set"] = In(f.width)
    return wiring.Signature(members)


class CSRBank(wiring.Component):
    """AXI4-Lite slave holding the registers of a :class:`RegisterMap`.

    Writes: ``awready`` and ``wready`` rise together once both ``awvalid`` and
    ``wvalid`` are high and no write response is pending; the write takes effect at
    that edge, honouring ``wstrb`` per byte, and ``bvalid`` follows one cycle later.
    Reads: ``arready`` is high while no read response is pending; ``rvalid`` follows
    one cycle after the address. One write and one read may be in progress at once.
    Every response is OKAY; unmapped addresses read 0 and ignore writes.

    Parameters
    ----------
    regmap : RegisterMap
        The registers; must fit the address space.
    addr_width : int
        AXI4-Lite address width, 4 to 32 (``Config.csr_addr_width``).
    irq : tuple of (str, str), optional
        Names of an enable register and a ``w1c`` status register with the same
        field names; adds ``irq : Out(1)``, high while any enabled status bit is set.

    Members
    -------
    s_axil : In(AXI4LiteSignature(addr_width=addr_width, data_width=32))
        The register port (wrap the top in :class:`intformer.hw.axi.FlatPorts` to emit
        ``s_axil_awaddr``...).
    <register> : Out(Signature)
        One member per register, one port per field (see :data:`ACCESS`), e.g.
        ``bank.ctrl.start``, ``bank.status.busy``, ``bank.irq_status.done_set``.
    irq : Out(1)
        Only with ``irq``.

    Raises
    ------
    TypeError
        If ``regmap`` is not a :class:`RegisterMap`.
    ValueError
        If the map is empty or does not fit ``addr_width``, a register name clashes
        with a member name, or ``irq`` names unsuitable registers.
    """

    def __init__(self, regmap: RegisterMap, *, addr_width: int = 12,
                 irq: tuple[str, str] | None = None):
        if not isinstance(regmap, RegisterMap):
            raise TypeError(f"CSRBank takes a RegisterMap, not {regmap!r}")
        check_width("CSRBank", "addr_width", addr_width, lo=4, hi=32)
        if not len(regmap):
            raise ValueError("CSRBank register map is empty")
        if regmap.size > 1 << addr_width:
            raise ValueError(f"CSRBank register map of {regmap.size} bytes does not fit "
                             f"a {addr_width}-bit address space")
        members = {"s_axil": In(AXI4LiteSignature(addr_width=addr_width, data_width=32))}
        for reg in regmap:
            if reg.name in ("s_axil", "irq"):
                raise ValueError(f"CSRBank register name {reg.name!r} is reserved")
            members[reg.name] = Out(_register_signature(reg))
        if irq is not None:
            en, st = irq
            try:
                en_reg, st_reg = regmap[en], regmap[st]
            except KeyError as e:
                raise ValueError(f"CSRBank irq register {e.args[0]!r} is not in the map") \
                    from None
            if [f.name for f in en_reg.fields] != [f.name for f in st_reg.fields] or \
                    any(f.access != "w1c" for f in st_reg.fields):
                raise ValueError(f"CSRBank irq needs {st!r} to have only w1c fields named "
                                 f"like those of {en!r}")
            members["irq"] = Out(1)
        self._regmap = regmap
        self._addr_width = addr_width
        self._irq = irq
        super().__init__(members)

    @property
    def regmap(self) -> RegisterMap:
        return self._regmap

    @property
    def addr_width(self) -> int:
        return self._addr_width

    def manifest(self) -> dict:
        return {"registers": self._regmap.manifest()}

    def elaborate(self, platform) -> Module:
        m = Module()
        bus = self.s_axil

        # Write channel: take AW and W together.
        write = Signal()
        m.d.comb += write.eq(bus.awvalid & bus.wvalid & ~bus.bvalid)
        m.d.comb += [bus.awready.eq(write), bus.wready.eq(write)]
        with m.If(write):
            m.d.sync += [bus.bvalid.eq(1), bus.bresp.eq(AXIResp.OKAY)]
        with m.Elif(bus.bready):
            m.d.sync += bus.bvalid.eq(0)
        wmask = Cat(*(bus.wstrb[i].replicate(8) for i in range(4)))
        wbits = Signal(32)
        m.d.comb += wbits.eq(bus.wdata & wmask)
        waddr = bus.awaddr[2:]

        # Read channel.
        read = Signal()
        m.d.comb += [bus.arready.eq(~bus.rvalid), read.eq(bus.arvalid & ~bus.rvalid)]
        with m.If(read):
            m.d.sync += [bus.rvalid.eq(1), bus.rresp.eq(AXIResp.OKAY)]
        with m.Elif(bus.rready):
            m.d.sync += bus.rvalid.eq(0)
        raddr = bus.araddr[2:]
        rdata = Signal(32)

        for reg in self._regmap:
            ports = getattr(self, reg.name)
            word = reg.offset // 4
            hit_w = write & (waddr == word)
            value = Signal(32, name=f"{reg.name}_value")
            for f in reg.fields:
                lo, hi = reg.bit(f.name), reg.bit(f.name) + f.width
                port = getattr(ports, f.name)
                bits = wbits[lo:hi]
                if f.access == "rw":
                    # One enable per byte lane: the bits load straight from wdata,
                    # with no per-bit merge logic in front of the flip-flops.
                    for byte in range(lo // 8, (hi + 7) // 8):
                        a, b = max(lo, 8 * byte), min(hi, 8 * byte + 8)
                        with m.If(hit_w & bus.wstrb[byte]):
                            m.d.sync += port[a - lo:b - lo].eq(bus.wdata[a:b])
                    m.d.comb += value[lo:hi].eq(port)
                elif f.access == "ro":
                    m.d.comb += value[lo:hi].eq(port)
                elif f.access == "w1p":
                    m.d.sync += port.eq(_gate(hit_w, bits))
                elif f.access == "w1c":
                    cleared = Signal(f.width, name=f"{reg.name}_{f.name}_clear")
                    m.d.comb += cleared.eq(_gate(hit_w, bits))
                    m.d.sync += port.eq((port & ~cleared) | getattr(ports, f"{f.name}_set"))
                    m.d.comb += value[lo:hi].eq(port)
            with m.If(raddr == word):
                m.d.comb += rdata.eq(value)
        with m.If(read):
            m.d.sync += bus.rdata.eq(rdata)

        if self._irq is not None:
            en, st = (getattr(self, name) for name in self._irq)
            m.d.comb += self.irq.eq(Cat(*(getattr(en, f.name) & getattr(st, f.name)
                                          for f in self._regmap[self._irq[0]].fields)).any())
        return m


def _gate(cond, value):
    """``value`` when ``cond``, else 0 (a masked copy, cheaper than a full mux)."""
    return value & cond.replicate(len(value))
