"""AXI4 and AXI4-Lite interface signatures, and conventional flat port names.

Both signatures are written from the manager's (master's) side: manager-driven
signals are ``Out``, subordinate-driven signals ``In``. A component that *is*
the manager declares ``m_axi: Out(AXI4Signature(...))``; a subordinate declares
``s_axil: In(AXI4LiteSignature(...))``.

Member names are the AXI signal names without a prefix (``awaddr``, ``wdata``,
``rresp``...). Amaranth joins nested names with ``__``, so a component member
``m_axi`` would become the Verilog ports ``m_axi__awaddr``...; vendor IP
packagers and cocotbext-axi's ``AxiBus.from_prefix(dut, "m_axi")`` expect
``m_axi_awaddr``. :class:`FlatPorts` wraps a component and re-exposes chosen
members as flat top-level ports named ``<member>_<signal>``; the accelerator top
wraps itself in it before emission::

    top = FlatPorts(Accelerator(config), flatten=("m_axi", "s_axil"))
    verilog.convert(top, name="intformer_top")   # ports m_axi_awaddr, s_axil_wdata, ...
"""

from __future__ import annotations

from collections.abc import Iterable

from amaranth.hdl import Module
from amaranth.lib import enum, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["AXIResp", "AXIBurst", "AXI4Signature", "AXI4LiteSignature", "FlatPorts",
           "check_width"]


class AXIResp(enum.Enum, shape=2):
    """``xRESP`` encodings (AXI spec A3.4.4)."""
    OKAY = 0
    EXOKAY = 1
    SLVERR = 2
    DECERR = 3


class AXIBurst(enum.Enum, shape=2):
    """``AxBURST`` encodings."""
    FIXED = 0
    INCR = 1
    WRAP = 2


def check_width(owner: str, name: str, value, allowed=None, lo: int = 1, hi: int = 64) -> None:
    """Raise TypeError / ValueError naming ``owner``'s parameter ``name`` if ``value`` is not
    an integer in ``allowed`` (or in ``lo..hi``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} {name} must be an integer, not {value!r}")
    if allowed is not None:
        if value not in allowed:
            raise ValueError(f"{owner} {name} {value} is not one of "
                             f"{', '.join(str(a) for a in allowed)}")
    elif not lo <= value <= hi:
        raise ValueError(f"{owner} {name} must be between {lo} and {hi}, not {value}")


_DATA_WIDTHS = (32, 64, 128, 256, 512, 1024)


class AXI4Signature(wiring.Signature):
    """An AXI4 manager interface (all five channels, INCR/WRAP/FIXED capable).

    Parameters
    ----------
    addr_width : int
        ``AxADDR`` width, 12 to 64.
    data_width : int
        ``WDATA``/``RDATA`` width: 32, 64, 128, 256, 512 or 1024.
    id_width : int
        ``AxID``/``BID``/``RID`` width, 1 to 16.

    Members
    -------
    awid, awaddr, awlen, awsize, awburst, awlock, awcache, awprot, awqos, awvalid : Out
        Write address channel; ``awready : In(1)``.
    wdata, wstrb, wlast, wvalid : Out
        Write data channel; ``wready : In(1)``.
    bid, bresp, bvalid : In
        Write response channel; ``bready : Out(1)``.
    arid, araddr, arlen, arsize, arburst, arlock, arcache, arprot, arqos, arvalid : Out
        Read address channel; ``arready : In(1)``.
    rid, rdata, rresp, rlast, rvalid : In
        Read data channel; ``rready : Out(1)``.

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If a width is out of range.
    """

    def __init__(self, *, addr_width: int, data_width: int, id_width: int):
        check_width("AXI4Signature", "addr_width", addr_width, lo=12, hi=64)
        check_width("AXI4Signature", "data_width", data_width, allowed=_DATA_WIDTHS)
        check_width("AXI4Signature", "id_width", id_width, lo=1, hi=16)
        self._addr_width = addr_width
        self._data_width = data_width
        self._id_width = id_width
        members = {}
        for ch in ("aw", "ar"):
            members.update({
                f"{ch}id": Out(id_width), f"{ch}addr": Out(addr_width), f"{ch}len": Out(8),
                f"{ch}size": Out(3), f"{ch}burst": Out(2), f"{ch}lock": Out(1),
                f"{ch}cache": Out(4), f"{ch}prot": Out(3), f"{ch}qos": Out(4),
                f"{ch}valid": Out(1), f"{ch}ready": In(1),
            })
            if ch == "aw":
                members.update({
                    "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wlast": Out(1),
                    "wvalid": Out(1), "wready": In(1),
                    "bid": In(id_width), "bresp": In(2), "bvalid": In(1), "bready": Out(1),
                })
        members.update({
            "rid": In(id_width), "rdata": In(data_width), "rresp": In(2), "rlast": In(1),
            "rvalid": In(1), "rready": Out(1),
        })
        super().__init__(members)

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    @property
    def id_width(self) -> int:
        return self._id_width

    @property
    def bytes_per_beat(self) -> int:
        return self._data_width // 8

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width and
                other.data_width == self.data_width and other.id_width == self.id_width)

    def __hash__(self):
        return hash((type(self), self._addr_width, self._data_width, self._id_width))

    def __repr__(self):
        return (f"AXI4Signature(addr_width={self._addr_width}, "
                f"data_width={self._data_width}, id_width={self._id_width})")

    def create(self, *, path=None, src_loc_at=0):
        return AXI4Interface(self, path=path, src_loc_at=1 + src_loc_at)


class AXI4LiteSignature(wiring.Signature):
    """An AXI4-Lite manager interface.

    Parameters
    ----------
    addr_width : int
        ``AxADDR`` width, 4 to 64.
    data_width : int
        ``WDATA``/``RDATA`` width: 32 or 64.

    Members
    -------
    awaddr, awprot, awvalid : Out
        Write address channel; ``awready : In(1)``.
    wdata, wstrb, wvalid : Out
        Write data channel; ``wready : In(1)``.
    bresp, bvalid : In
        Write response channel; ``bready : Out(1)``.
    araddr, arprot, arvalid : Out
        Read address channel; ``arready : In(1)``.
    rdata, rresp, rvalid : In
        Read data channel; ``rready : Out(1)``.

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If a width is out of range.
    """

    def __init__(self, *, addr_width: int, data_width: int = 32):
        check_width("AXI4LiteSignature", "addr_width", addr_width, lo=4, hi=64)
        check_width("AXI4LiteSignature", "data_width", data_width, allowed=(32, 64))
        self._addr_width = addr_width
        self._data_width = data_width
        super().__init__({
            "awaddr": Out(addr_width), "awprot": Out(3), "awvalid": Out(1), "awready": In(1),
            "wdata": Out(data_width), "wstrb": Out(data_width // 8), "wvalid": Out(1),
            "wready": In(1),
            "bresp": In(2), "bvalid": In(1), "bready": Out(1),
            "araddr": Out(addr_width), "arprot": Out(3), "arvalid": Out(1), "arready": In(1),
            "rdata": In(data_width), "rresp": In(2), "rvalid": In(1), "rready": Out(1),
        })

    @property
    def addr_width(self) -> int:
        return self._addr_width

    @property
    def data_width(self) -> int:
        return self._data_width

    def __eq__(self, other):
        return (type(other) is type(self) and other.addr_width == self.addr_width and
                other.data_width == self.data_width)

    def __hash__(self):
        return hash((type(self), self._addr_width, self._data_width))

    def __repr__(self):
        return (f"AXI4LiteSignature(addr_width={self._addr_width}, "
                f"data_width={self._data_width})")

    def create(self, *, path=None, src_loc_at=0):
        return AXI4LiteInterface(self, path=path, src_loc_at=1 + src_loc_at)


class AXI4Interface(wiring.PureInterface):
    """The object :meth:`AXI4Signature.create` returns."""


class AXI4LiteInterface(wiring.PureInterface):
    """The object :meth:`AXI4LiteSignature.create` returns."""


class FlatPorts(wiring.Component):
    """Wrap a component so that chosen interface members become flat ports named
    ``<member>_<signal>`` (``m_axi_awaddr``) instead of Amaranth's ``m_axi__awaddr``.

    Members not listed in ``flatten`` are passed through unchanged (streams keep
    ``<name>__valid`` etc.). Every signal is wired straight through: no logic, no
    latency.

    Parameters
    ----------
    inner : wiring.Component
        The component to wrap; it becomes a submodule named ``inner``.
    flatten : iterable of str
        Names of ``inner``'s members to flatten, each an interface member whose
        signature contains only port members (such as :class:`AXI4Signature`).

    Members
    -------
    <member>_<signal> : In or Out
        One per signal of each flattened member, in the direction the wrapped
        component sees it.
    <other> : as in ``inner``
        Every other member of ``inner``.

    Raises
    ------
    TypeError
        If ``inner`` is not a component.
    ValueError
        If a name in ``flatten`` is not an interface member of ``inner``, or a
        flat name collides with another member.
    """

    def __init__(self, inner: wiring.Component, *, flatten: Iterable[str] = ("m_axi", "s_axil")):
        if not isinstance(inner, wiring.Component):
            raise TypeError(f"FlatPorts wraps a wiring.Component, not {inner!r}")
        flatten = tuple(flatten)
        members = {}
        self._inner = inner
        self._flat = []  # (flat name, inner member path)
        for name, member in inner.signature.members.items():
            if name not in flatten:
                members[name] = member
                continue
            if not member.is_signature:
                raise ValueError(f"FlatPorts member {name!r} is a port, not an interface")
            for path, sub in member.signature.members.flatten():
                if sub.is_signature:
                    continue
                flat = "_".join([name, *(str(p) for p in path)])
                # An In member's signature is already flipped: sub.flow is as the
                # wrapped component sees it.
                members[flat] = wiring.Member(sub.flow, sub.shape, init=sub.init)
                self._flat.append((flat, (name, *path)))
        for name in flatten:
            if name not in inner.signature.members:
                raise ValueError(f"FlatPorts member {name!r} is not a member of "
                                 f"{type(inner).__name__}")
        if len(members) != len(set(members)):  # pragma: no cover - dict keys are unique
            raise ValueError("FlatPorts names collide")
        for flat, _ in self._flat:
            if flat in inner.signature.members:
                raise ValueError(f"FlatPorts port {flat!r} collides with a member of "
                                 f"{type(inner).__name__}")
        super().__init__(members)

    @property
    def inner(self) -> wiring.Component:
        return self._inner

    def manifest(self) -> dict:
        """The wrapped component's ``manifest()`` (empty if it has none), so that
        :func:`intformer.gen.emit.manifest` sees through the wrapper."""
        inner = getattr(self._inner, "manifest", None)
        return inner() if callable(inner) else {}

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.inner = inner = self._inner
        for name, member in inner.signature.members.items():
            if name in dict.fromkeys(p[0] for _, p in self._flat):
                continue
            ours, theirs = getattr(self, name), getattr(inner, name)
            if member.is_signature:
                wiring.connect(m, wiring.flipped(ours), theirs)
            elif member.flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        for flat, path in self._flat:
            ours = getattr(self, flat)
            theirs = inner
            for p in path:
                theirs = getattr(theirs, p) if isinstance(p, str) else theirs[p]
            if self.signature.members[flat].flow == Out:
                m.d.comb += ours.eq(theirs)
            else:
                m.d.comb += theirs.eq(ours)
        return m
