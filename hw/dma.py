"""2-D strided DMA read and write engines on an AXI4 manager port.

A *job* moves ``rows`` rows of ``row_bytes`` bytes; row ``r`` starts at
``addr + r * stride``. Addresses, lengths and strides are byte-granular.

Bursts
    Each row is cut into INCR bursts of full bus width (``AxSIZE`` = log2 of the
    bytes per beat) that never cross a boundary of ``max_burst * bytes_per_beat``
    bytes. That figure is a power of two of at most 4096, so no burst crosses a
    4 KB boundary and none is longer than ``max_burst`` beats; an unaligned row
    costs at most one extra short burst. Up to ``max_outstanding`` bursts per
    direction are in flight. All bursts of an engine use ID 0, so responses come
    back in order.

Byte-lane alignment of the data streams (``rd_data``, ``wr_data``)
    Every row starts on a fresh stream beat, packed from byte lane 0: beat ``k``
    of a row carries the row's bytes ``k * B .. k * B + B - 1`` in lanes
    ``0 .. B - 1`` (``B`` = bytes per beat, little-endian lanes as on AXI). A row
    takes ``ceil(row_bytes / B)`` beats; in its last beat the lanes past the row's
    end are zero on ``rd_data`` and ignored on ``wr_data``. A job therefore moves
    exactly ``rows * ceil(row_bytes / B)`` beats on its stream, whatever happens on
    the bus: the engines realign between row order and memory lanes themselves.

Descriptors and completions
    ``rd_desc`` / ``wr_desc`` take a :class:`DMADescriptor`. When a job ends, one
    :class:`DMAStatus` with the job's ``tag`` leaves on ``rd_status`` /
    ``wr_status``, in job order. A read job reports once its last beat has left on
    ``rd_data``; a write job once the last write response has arrived.

Errors (:class:`DMAError`)
    * ``WINDOW``: some byte of the job lies outside ``[window_base, window_limit)``.
      The job is refused before it issues a single beat; ``addr`` is the job's
      start address. Engines built with ``check_window=False`` (for a user that has
      checked every job against the window already) never refuse a job and ignore
      the window inputs.
    * ``SLVERR`` / ``DECERR``: a read or write response carried that code. The
      engine issues no further bursts for the job, finishes the bursts already in
      flight (write bursts already issued carry a zero ``wstrb`` once the error is
      known) and reports the error with ``addr`` = the first byte address of the
      failing burst.

    A failed or refused read job still delivers its full beat count on
    ``rd_data`` (zeros from the failure on); a failed or refused write job still
    consumes its full beat count from ``wr_data`` (discarded). Producers and
    consumers stay in step and the next job starts cleanly.

Soft reset (``soft_reset``)
    A one-cycle pulse on ``soft_reset`` abandons every job that has not reported:
    no new bursts are issued, bursts already issued are completed on the bus
    (read data accepted and dropped, write bursts padded with ``wstrb`` = 0),
    the pending ``rd_data`` beat and statuses are withdrawn and ``wr_data`` beats
    offered meanwhile are discarded. ``busy`` falls when the engine is idle again;
    no AXI handshake is ever dropped. Descriptors offered while the soft reset
    drains are taken and dropped, like ``wr_data`` beats.
    A completion not yet taken from ``status`` holds only the end of the next job.

Throughput: one beat per cycle per direction in steady state; a burst is issued
per cycle at most, so bursts of 2 or more beats sustain the full rate when the
memory does. A read row whose start is not lane-aligned and whose end fits in
the row's last memory beat costs one extra cycle. A job's window check costs
3 cycles before its first burst, plus one per bit of ``rows - 1``: the extent
``(rows - 1) * stride`` is summed by shift and add, so the engines use no multiplier.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, unsigned
from amaranth.lib import data, enum, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .axi import AXI4Signature, AXIBurst, check_width

__all__ = ["DMAError", "DMADescriptor", "DMAStatus", "DMAReader", "DMAWriter", "DMA"]


class DMAError(enum.Enum, shape=2):
    """Completion codes of a DMA job."""
    OK = 0
    SLVERR = 1
    DECERR = 2
    WINDOW = 3


class DMADescriptor(data.StructLayout):
    """Payload of ``rd_desc`` / ``wr_desc``: one 2-D transfer.

    Fields
    ------
    addr : unsigned(addr_width)
        Byte address of the first byte of row 0.
    stride : unsigned(addr_width)
        Bytes from the start of one row to the start of the next.
    rows : unsigned(rows_width)
        Number of rows; 0 makes an empty job (reported at once, no traffic).
    row_bytes : unsigned(bytes_width)
        Bytes per row; 0 makes an empty job.
    tag : unsigned(tag_width)
        Returned unchanged in the job's :class:`DMAStatus`.
    """

    def __init__(self, *, addr_width: int, rows_width: int = 16, bytes_width: int = 24,
                 tag_width: int = 8):
        super().__init__({
            "addr": unsigned(addr_width), "stride": unsigned(addr_width),
            "rows": unsigned(rows_width), "row_bytes": unsigned(bytes_width),
            "tag": unsigned(tag_width),
        })


class DMAStatus(data.StructLayout):
    """Payload of ``rd_status`` / ``wr_status``: how one job ended.

    Fields
    ------
    tag : unsigned(tag_width)
        The job's descriptor tag.
    error : DMAError
        ``OK`` or why the job failed.
    addr : unsigned(addr_width)
        For ``SLVERR``/``DECERR`` the first byte address of the failing burst; for
        ``WINDOW`` the job's start address; 0 for ``OK``.
    """

    def __init__(self, *, addr_width: int, tag_width: int = 8):
        super().__init__({"tag": unsigned(tag_width), "error": DMAError,
                          "addr": unsigned(addr_width)})


def _log2(n: int) -> int:
    return n.bit_length() - 1


class _Params:
    """Checked engine parameters shared by the reader, the writer and :class:`DMA`."""

    def __init__(self, owner, *, addr_width, data_width, id_width, max_burst,
                 max_outstanding, rows_width, bytes_width, tag_width, check_window=True):
        check_width(owner, "addr_width", addr_width, lo=12, hi=64)
        if not isinstance(check_window, bool):
            raise TypeError(f"{owner} check_window must be a boolean, not {check_window!r}")
        check_width(owner, "data_width", data_width, allowed=(32, 64, 128, 256, 512))
        check_width(owner, "id_width", id_width, lo=1, hi=16)
        check_width(owner, "max_burst", max_burst, lo=1, hi=256)
        if max_burst & (max_burst - 1):
            raise ValueError(f"{owner} max_burst must be a power of 2, not {max_burst}")
        if max_burst * data_width // 8 > 4096:
            raise ValueError(f"{owner} max_burst of {max_burst} beats of {data_width // 8} "
                             f"bytes exceeds the 4096-byte AXI burst limit")
        check_width(owner, "max_outstanding", max_outstanding, lo=1, hi=64)
        check_width(owner, "rows_width", rows_width, lo=1, hi=32)
        check_width(owner, "bytes_width", bytes_width, lo=1, hi=32)
        check_width(owner, "tag_width", tag_width, lo=1, hi=32)
        self.addr_width = addr_width
        self.data_width = data_width
        self.id_width = id_width
        self.max_burst = max_burst
        self.max_outstanding = max_outstanding
        self.rows_width = rows_width
        self.bytes_width = bytes_width
        self.tag_width = tag_width
        self.check_window = check_window
        self.B = data_width // 8
        self.lb = _log2(self.B)
        # Bursts never cross a multiple of this many bytes (a power of 2 <= 4096).
        self.span = max_burst * self.B
        # Records between the generator and a response side: one per burst in flight
        # (a queue takes a record in the cycle its oldest one leaves, see _Queue).
        self.queue_depth = max_outstanding
        # While a response side holds a failure of job J, every job from J to the
        # generator's current one has a record in that side's queue, so they span at
        # most queue_depth + 1 jobs: sequence numbers modulo 2**seq_width never alias.
        self.seq_width = self.queue_depth.bit_length()

    def kwargs(self) -> dict:
        return dict(addr_width=self.addr_width, data_width=self.data_width,
                    id_width=self.id_width, max_burst=self.max_burst,
                    max_outstanding=self.max_outstanding, rows_width=self.rows_width,
                    bytes_width=self.bytes_width, tag_width=self.tag_width,
                    check_window=self.check_window)

    def descriptor(self) -> DMADescriptor:
        return DMADescriptor(addr_width=self.addr_width, rows_width=self.rows_width,
                             bytes_width=self.bytes_width, tag_width=self.tag_width)

    def status(self) -> DMAStatus:
        return DMAStatus(addr_width=self.addr_width, tag_width=self.tag_width)

    def record(self, fields=None) -> data.StructLayout:
        """One burst as the address generator plans it; only ``fields`` if given (what
        one response side reads, so that its queue stores nothing else)."""
        lb = self.lb
        layout = {
            "addr": unsigned(self.addr_width),          # first byte of the burst
            "beats": unsigned(_log2(self.max_burst) + 1),
            "lo": unsigned(max(lb, 1)),                 # first lane of the first beat
            "hi": unsigned(lb + 1),                     # lanes used in the last beat, 1..B
            "shift": unsigned(max(lb, 1)),              # lane of the row's first byte
            "tail": unsigned(lb + 1),                   # bytes in the row's last packed beat
            "extra": 1,           # read: flush beat after the row; write: last beat needs no input
            "row_end": 1, "job_end": 1, "phantom": 1, "empty": 1,
            # Only engines that check the window refuse jobs.
            **({"refused": 1} if self.check_window else {}),
            "seq": unsigned(self.seq_width),
            "tag": unsigned(self.tag_width),
        }
        return data.StructLayout({name: shape for name, shape in layout.items()
                                  if fields is None or name in fields})


def _pick(layout: data.StructLayout, rec) -> Cat:
    """The fields of burst record ``rec`` that ``layout`` (a :meth:`_Params.record`
    subset) holds, as one value of that layout."""
    return Cat(rec[name] for name, _ in layout)


def _refused(rec):
    """The ``refused`` bit of a burst record, 0 where the engine checks no window."""
    return rec.refused if "refused" in rec.shape().members else Const(0)


class _Queue(wiring.Component):
    """Burst records from the generator to one response side, ``depth`` records deep.

    A record written is readable in the next cycle. Unlike
    :class:`amaranth.lib.fifo.SyncFIFO`, a full queue takes a record in the cycle its
    oldest one leaves, so a queue as deep as ``max_outstanding`` keeps that many bursts
    in flight. Storage starts at zero: ``r.payload`` is never undefined, even when
    ``r.valid`` is low.
    """

    def __init__(self, layout: data.StructLayout, *, depth: int):
        assert depth >= 1
        self._depth = depth
        super().__init__({"w": In(stream.Signature(layout)),
                          "r": Out(stream.Signature(layout))})

    def elaborate(self, platform) -> Module:
        m = Module()
        w, r = self.w, self.r
        put, take = w.valid & w.ready, r.valid & r.ready
        if self._depth == 1:
            m.d.comb += w.ready.eq(~r.valid | r.ready)
            with m.If(take):
                m.d.sync += r.valid.eq(0)
            with m.If(put):
                m.d.sync += [r.valid.eq(1), r.payload.eq(w.payload)]
            return m

        depth = self._depth
        m.submodules.storage = storage = Memory(shape=w.payload.shape(), depth=depth, init=[])
        wr_port = storage.write_port()
        rd_port = storage.read_port(domain="comb")
        produce = Signal(range(depth))
        consume = Signal(range(depth))
        level = Signal(range(depth + 1))
        m.d.comb += [
            w.ready.eq((level != depth) | r.ready),
            r.valid.eq(level != 0),
            wr_port.addr.eq(produce), wr_port.data.eq(w.payload), wr_port.en.eq(put),
            rd_port.addr.eq(consume), r.payload.eq(rd_port.data),
        ]
        with m.If(put):
            m.d.sync += produce.eq(Mux(produce == depth - 1, 0, produce + 1))
        with m.If(take):
            m.d.sync += consume.eq(Mux(consume == depth - 1, 0, consume + 1))
        m.d.sync += level.eq(level + put - take)
        return m


class _Hold(wiring.Component):
    """Where one burst is in flight at most (``max_outstanding`` 1): the generator's
    plan itself is the record of the burst in flight, with no copy.

    ``w`` is the generator's ``burst`` stream, ``r`` what the response side sees. A
    phantom plan passes straight through. A real one is issued (``issue``, one cycle)
    and is shown on ``r`` from the next cycle on, as a real record whatever the plan's
    ``phantom`` says meanwhile (a failure found in this burst makes the rest of the
    job phantom, not this burst). The generator moves on in the cycle the response
    side takes the record; while a burst is ``issued`` its engine keeps the soft reset
    from the generator, so that the record stays until the burst is done on the bus.
    """

    def __init__(self, layout: data.StructLayout):
        super().__init__({"w": In(stream.Signature(layout)),
                          "r": Out(stream.Signature(layout)),
                          "issue": Out(1), "issued": Out(1)})

    def elaborate(self, platform) -> Module:
        m = Module()
        w, r = self.w, self.r
        plan = w.payload
        m.d.comb += [
            self.issue.eq(w.valid & ~plan.phantom & ~self.issued),
            r.valid.eq(w.valid & (plan.phantom | self.issued)),
            r.payload.eq(Cat(~self.issued if name == "phantom" else plan[name]
                             for name, _ in plan.shape())),
            w.ready.eq(r.valid & r.ready),
        ]
        with m.If(self.issue):
            m.d.sync += self.issued.eq(1)
        with m.If(r.valid & r.ready):
            m.d.sync += self.issued.eq(0)
        return m


class _Generator(wiring.Component):
    """Accepts descriptors, checks the window, and plans bursts one per cycle.

    ``burst`` carries one record per burst (or one ``empty`` record for an empty
    job). ``fail``/``fail_seq`` from the response side turn the rest of a failed
    job into phantom records, which issue no bus traffic.
    """

    def __init__(self, p: _Params, *, write: bool):
        self._p = p
        self._write = write
        aw = p.addr_width
        super().__init__({
            "desc": In(stream.Signature(p.descriptor())),
            "burst": Out(stream.Signature(p.record())),
            "window_base": In(aw), "window_limit": In(aw + 1),
            "fail": In(1), "fail_seq": In(p.seq_width),
            "soft_reset": In(1),
            "idle": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self._p
        B, lb = p.B, p.lb
        aw = p.addr_width

        # The job: what stays fixed (stride, row_bytes, tag) and where planning stands
        # (the row's start, the burst's index in the row, rows left).
        stride = Signal(aw)
        row_bytes = Signal(p.bytes_width)
        tag = Signal(p.tag_width)
        seq = Signal(p.seq_width)
        refused = Signal()
        row_addr = Signal(aw)
        rows_left = Signal(p.rows_width)
        shift = Signal(max(lb, 1))
        tail = Signal(lb + 1)
        m.d.comb += [shift.eq(row_addr[:lb] if lb else 0),
                     tail.eq(((row_bytes - 1)[:lb] if lb else 0) + 1)]
        # Window check only: (rows - 1) * stride by shift and add, one multiplier bit per
        # cycle; rows of 1 take no step.
        prod = Signal(aw + p.rows_width)
        mcand = Signal(aw + p.rows_width)
        mplier = Signal(p.rows_width)

        # Plan of burst `index` of the row, counted from the span (the aligned block of
        # `span` bytes) that holds the row's first byte: burst i covers span i from
        # offset `first` (the row's start in burst 0, else 0) to offset `final`
        # inclusive (the row's last byte in its last burst, else span - 1). `last`
        # (the row's last byte, from the start of span 0) tells where the row ends, so
        # no byte count or address is stepped per burst: the burst's address is the
        # row's span plus the index, and its length follows from the two offsets.
        k = _log2(p.span)
        last = Signal(max(p.bytes_width, k) + 1)
        index = Signal(max(1, (((1 << k) - 1 + (1 << p.bytes_width) - 2) >> k).bit_length()))
        first = Signal(k)
        final = Signal(k)
        row_end = Signal()
        m.d.comb += [
            last.eq(row_addr[:k] + row_bytes - 1),
            row_end.eq(index == (last >> k)),
            first.eq(Mux(index == 0, row_addr[:k], 0)),
            final.eq(last[:k] | (~row_end).replicate(k)),
        ]
        if lb:
            # tail is 1..B, shift 0..B-1: the row occupies one more memory beat than
            # packed beats exactly when shift + tail > B.
            extra = (shift != 0) & ((shift + tail > B) if self._write else (shift + tail <= B))
        else:
            extra = Const(0)
        # Every payload bit is one continuous assignment (Icarus does not evaluate
        # per-slice `always @*` blocks at time 0, which left fields undefined).
        is_empty = Signal()
        rec = self.burst.payload
        if p.check_window:
            m.d.comb += rec.refused.eq(~is_empty & refused)
        m.d.comb += [
            rec.addr.eq(Cat(first, (row_addr[k:] + index)[:aw - k]) if aw > k else first),
            rec.beats.eq(((final[lb:] - first[lb:]) if k > lb else 0) + 1),
            rec.lo.eq(first[:lb] if lb else 0),
            rec.hi.eq((final[:lb] if lb else 0) + 1),
            rec.shift.eq(shift),
            rec.tail.eq(tail),
            rec.extra.eq(extra & row_end),
            rec.row_end.eq(row_end),
            rec.job_end.eq(is_empty | (row_end & (rows_left == 1))),
            rec.phantom.eq(is_empty | refused | (self.fail & (self.fail_seq == seq))),
            rec.empty.eq(is_empty),
            rec.seq.eq(seq),
            rec.tag.eq(tag),
        ]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += [self.desc.ready.eq(~self.soft_reset), self.idle.eq(1)]
                with m.If(self.desc.valid & ~self.soft_reset):
                    desc = self.desc.payload
                    m.d.sync += [stride.eq(desc.stride), row_bytes.eq(desc.row_bytes),
                                 tag.eq(desc.tag), seq.eq(seq + 1),
                                 row_addr.eq(desc.addr), index.eq(0),
                                 rows_left.eq(desc.rows)]
                    if p.check_window:
                        m.d.sync += [prod.eq(0), mcand.eq(desc.stride),
                                     mplier.eq(Mux(desc.rows == 0, 0, desc.rows - 1))]
                        m.next = "PRODUCT"
                    else:
                        with m.If((desc.rows == 0) | (desc.row_bytes == 0)):
                            m.next = "EMPTY"
                        with m.Else():
                            m.next = "RUN"
            if p.check_window:
                with m.State("PRODUCT"):
                    with m.If(mplier == 0):
                        m.next = "CHECK"
                    with m.Else():
                        with m.If(mplier[0]):
                            m.d.sync += prod.eq(prod + mcand)
                        m.d.sync += [mcand.eq(mcand << 1), mplier.eq(mplier >> 1)]
                    with m.If(self.soft_reset):
                        m.next = "IDLE"
                with m.State("CHECK"):
                    last_byte = Signal(max(aw + p.rows_width, p.bytes_width) + 2)
                    m.d.comb += last_byte.eq(row_addr + prod + row_bytes)
                    m.d.sync += refused.eq((row_addr < self.window_base)
                                           | (last_byte > self.window_limit))
                    with m.If((rows_left == 0) | (row_bytes == 0)):
                        m.next = "EMPTY"
                    with m.Else():
                        m.next = "RUN"
                    with m.If(self.soft_reset):
                        m.next = "IDLE"
            with m.State("EMPTY"):
                m.d.comb += [self.burst.valid.eq(~self.soft_reset), is_empty.eq(1)]
                with m.If(self.burst.ready | self.soft_reset):
                    m.next = "IDLE"
            with m.State("RUN"):
                m.d.comb += self.burst.valid.eq(~self.soft_reset)
                with m.If(self.soft_reset):
                    m.next = "IDLE"
                with m.Elif(self.burst.ready):
                    with m.If(row_end):
                        m.d.sync += [rows_left.eq(rows_left - 1),
                                     row_addr.eq(row_addr + stride), index.eq(0)]
                        with m.If(rows_left == 1):
                            m.next = "IDLE"
                    with m.Else():
                        m.d.sync += index.eq(index + 1)
        return m


def _engine_members(p: _Params, write: bool) -> dict:
    aw = p.addr_width
    members = {
        "desc": In(stream.Signature(p.descriptor())),
        "status": Out(stream.Signature(p.status())),
        "data": (In if write else Out)(stream.Signature(unsigned(p.data_width))),
        "window_base": In(aw), "window_limit": In(aw + 1),
        "soft_reset": In(1), "busy": Out(1),
    }
    return members


class _Figures:
    """The transfer figures a read engine, a write engine and the DMA share, from ``_p``."""

    @property
    def bytes_per_beat(self) -> int:
        return self._p.B

    @property
    def data_width(self) -> int:
        return self._p.data_width

    @property
    def addr_width(self) -> int:
        return self._p.addr_width

    @property
    def max_burst(self) -> int:
        return self._p.max_burst

    @property
    def max_outstanding(self) -> int:
        return self._p.max_outstanding

    @property
    def burst_span(self) -> int:
        """Bytes; no burst crosses a multiple of this (``max_burst * bytes_per_beat``)."""
        return self._p.span

    @property
    def descriptor_layout(self) -> DMADescriptor:
        return self._p.descriptor()

    @property
    def status_layout(self) -> DMAStatus:
        return self._p.status()


class _Engine(_Figures, wiring.Component):
    _owner = "DMA engine"

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 4,
                 max_burst: int = 16, max_outstanding: int = 4, rows_width: int = 16,
                 bytes_width: int = 24, tag_width: int = 8, check_window: bool = True):
        self._p = _Params(self._owner, addr_width=addr_width, data_width=data_width,
                          id_width=id_width, max_burst=max_burst,
                          max_outstanding=max_outstanding, rows_width=rows_width,
                          bytes_width=bytes_width, tag_width=tag_width,
                          check_window=check_window)
        super().__init__(self._members())

    def _axi_constants(self, m, ch: str) -> None:
        bus = self.bus
        m.d.comb += [
            getattr(bus, f"{ch}id").eq(0),
            getattr(bus, f"{ch}size").eq(self._p.lb),
            getattr(bus, f"{ch}burst").eq(AXIBurst.INCR),
            # Normal non-cacheable bufferable, as Xilinx recommends for DMA masters.
            getattr(bus, f"{ch}cache").eq(0b0011),
            getattr(bus, f"{ch}lock").eq(0), getattr(bus, f"{ch}prot").eq(0),
            getattr(bus, f"{ch}qos").eq(0),
        ]


    def _address(self, m, ch: str, plan, issue, head):
        """Drive the AR or AW channel with the bursts ``issue`` marks in ``plan``; return
        a value that is 1 once the bus has taken the address of the burst of ``head``,
        the oldest record of the response side's queue."""
        bus, lb = self.bus, self._p.lb
        valid, ready = getattr(bus, f"{ch}valid"), getattr(bus, f"{ch}ready")
        addr, length = getattr(bus, f"{ch}addr"), getattr(bus, f"{ch}len")
        with m.If(valid & ready):
            m.d.sync += valid.eq(0)
        with m.If(issue):
            m.d.sync += valid.eq(1)
        if self._p.queue_depth == 1:
            # The held record is the burst in flight: address and length come from there,
            # and the response side takes no response of it before the address is taken.
            m.d.comb += [addr.eq(head.addr >> lb << lb), length.eq(head.beats - 1)]
            return ~valid
        with m.If(issue):
            m.d.sync += [addr.eq(plan.addr >> lb << lb), length.eq(plan.beats - 1)]
        return Const(1)


def _bus_member(p: _Params, write: bool):
    sig = AXI4Signature(addr_width=p.addr_width, data_width=p.data_width, id_width=p.id_width)
    chans = ("aw", "w", "b") if write else ("ar", "r")
    return Out(wiring.Signature({name: member for name, member in sig.members.items()
                                 if any(name.startswith(c) for c in chans)}))


class DMAReader(_Engine):
    """DMA read engine: memory -> ``data`` stream, 2-D strided (see the module
    documentation for bursts, byte lanes, errors and ``soft_reset``).

    Parameters
    ----------
    addr_width : int
        AXI address width, 12 to 64.
    data_width : int
        AXI data width and ``data`` stream width: 32, 64, 128, 256 or 512.
    id_width : int
        AXI ID width (every burst uses ID 0).
    max_burst : int
        Longest burst in beats, a power of 2; ``max_burst * data_width / 8 <= 4096``.
    max_outstanding : int
        Bursts in flight at most, 1 to 64. With 1, the engine keeps no copy of the
        burst in flight: the address generator holds its plan until the burst is done
        (same timing, the next burst is planned when the previous one ends either way).
    rows_width, bytes_width, tag_width : int
        Widths of the descriptor's ``rows``, ``row_bytes`` and ``tag`` fields.
    check_window : bool
        Refuse jobs outside the window (``WINDOW``); without it the engine has no
        window comparators and no ``(rows - 1) * stride`` product, and a job's first
        burst is planned in the cycle after its descriptor is taken.

    Members
    -------
    bus : Out(read half of AXI4Signature)
        ``ar*`` and ``r*`` signals (:meth:`DMA` joins both halves into one ``m_axi``).
    desc : In(stream.Signature(DMADescriptor))
        Jobs; ready while the engine is between jobs (one job is planned at a time,
        the next is accepted as soon as the previous one's last burst is planned).
    data : Out(stream.Signature(unsigned(data_width)))
        Row data, packed from lane 0 per row. Valid drops when memory data is late.
    status : Out(stream.Signature(DMAStatus))
        One completion per job, in order.
    window_base : In(addr_width), window_limit : In(addr_width + 1)
        Allowed memory, ``[base, limit)``; sampled when a job's check runs.
    soft_reset : In(1)
        Soft reset pulse.
    busy : Out(1)
        A job, burst, beat or status is in flight.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    _owner = "DMAReader"

    def _members(self):
        return {"bus": _bus_member(self._p, False), **_engine_members(self._p, False)}

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self._p
        B, lb, W = p.B, p.lb, p.data_width
        bus = self.bus

        m.submodules.gen = gen = _Generator(p, write=False)
        layout = p.record(("addr", "beats", "shift", "tail", "extra", "row_end", "job_end",
                           "phantom", "empty", "refused", "seq", "tag"))
        hold = p.queue_depth == 1
        m.submodules.fifo = q = _Hold(layout) if hold else _Queue(layout, depth=p.queue_depth)
        m.d.comb += [gen.window_base.eq(self.window_base),
                     gen.window_limit.eq(self.window_limit)]
        self._axi_constants(m, "ar")

        aborting = Signal()
        # Descriptors offered while a soft reset drains are taken and dropped.
        m.d.comb += [gen.desc.valid.eq(self.desc.valid & ~aborting),
                     gen.desc.payload.eq(self.desc.payload),
                     self.desc.ready.eq(gen.desc.ready | aborting)]
        outstanding = Signal(range(p.max_outstanding + 1))
        issue = Signal()
        complete = Signal()

        # Address side: load the AR register and the burst FIFO together.
        plan = gen.burst.payload
        if hold:
            m.d.comb += [
                q.w.valid.eq(gen.burst.valid), gen.burst.ready.eq(q.w.ready),
                q.w.payload.eq(_pick(layout, plan)), issue.eq(q.issue),
                gen.soft_reset.eq((self.soft_reset | aborting) & ~q.issued),
            ]
        else:
            ar_free = ~bus.arvalid | bus.arready
            m.d.comb += [
                gen.burst.ready.eq(q.w.ready & ar_free &
                                   (plan.phantom | (outstanding < p.max_outstanding))),
                q.w.valid.eq(gen.burst.valid & gen.burst.ready),
                q.w.payload.eq(_pick(layout, plan)),
                issue.eq(gen.burst.valid & gen.burst.ready & ~plan.phantom),
                gen.soft_reset.eq(self.soft_reset | aborting),
            ]
            m.d.sync += outstanding.eq(outstanding + issue - complete)
        rec = q.r.payload
        ar_taken = self._address(m, "ar", plan, issue, rec)

        # Data side.
        beat = Signal(range(p.max_burst))
        prev = Signal(W)
        in_row = Signal()
        flushing = Signal()
        failed = Signal()
        fail_code = Signal(DMAError)
        fail_addr = Signal(p.addr_width)
        fail_seq = Signal(p.seq_width)
        m.d.comb += [gen.fail.eq(failed), gen.fail_seq.eq(fail_seq)]

        o, st = self.data, self.status
        out_free = ~o.valid | o.ready
        st_free = ~st.valid | st.ready
        with m.If(o.valid & o.ready):
            m.d.sync += o.valid.eq(0)
        with m.If(st.valid & st.ready):
            m.d.sync += st.valid.eq(0)

        last = beat == rec.beats - 1
        real = ~rec.phantom
        err = Signal()
        failed_now = Signal()
        code_now = Signal(DMAError)
        addr_now = Signal(p.addr_width)
        m.d.comb += [
            err.eq(real & bus.rvalid & bus.rready & bus.rresp[1]),
            failed_now.eq(failed | err | _refused(rec)),
            code_now.eq(Mux(failed, fail_code,
                            Mux(_refused(rec), DMAError.WINDOW,
                                Mux(bus.rresp[0], DMAError.DECERR, DMAError.SLVERR)))),
            addr_now.eq(Mux(failed, fail_addr, rec.addr)),
        ]
        # One realigner for memory beats and the flush beat, which takes the row's last
        # bytes from prev alone: it has shift != 0 and shift + tail <= B, so the lanes
        # the bus would fill are past the tail and zeroed with it. Phantom beats need
        # no zeroing either: their job has failed, and failed_now zeroes what leaves.
        row_last = last & rec.row_end
        at_tail = flushing | (row_last & ~rec.extra)
        # Lane l takes byte l + shift of prev:rdata, byte l + B of it (rdata's lane l) for
        # shift 0: one B-way byte multiplexer per lane, selected by shift - 1 mod B.
        joined = (Cat(prev, bus.rdata)[8:] >> ((rec.shift - 1)[:lb] * 8))[:W]
        value = Signal(W)
        for lane in range(B):
            keep = ~failed_now & (~at_tail | (rec.tail > lane))
            picked = joined.word_select(lane, 8)
            m.d.comb += value.word_select(lane, 8).eq(Mux(keep, picked, 0))

        def finish_job():
            m.d.sync += [st.valid.eq(1), st.payload.tag.eq(rec.tag),
                         st.payload.error.eq(Mux(failed_now, code_now, DMAError.OK)),
                         st.payload.addr.eq(Mux(failed_now, addr_now, 0)),
                         failed.eq(0)]

        # Only the beat that ends a job needs the status register free.
        ends_job = last & rec.job_end & ~(rec.row_end & rec.extra)
        # rready as one continuous assignment (Icarus left one built in the branches
        # below undefined at time 0 when the record is the generator's plan).
        m.d.comb += bus.rready.eq(q.r.valid & real & ar_taken & ~flushing &
                                  (aborting | (out_free & (st_free | ~ends_job))))
        step = Signal()
        with m.If(aborting):
            # Take every beat already asked for, drop it; skip phantom records. A record
            # that was flushing has had all its beats (and counted its completion): drop
            # it first, so that the next burst's beats are not counted against it.
            with m.If(flushing):
                m.d.comb += q.r.ready.eq(1)
                m.d.sync += flushing.eq(0)
            with m.Elif(q.r.valid & ar_taken & (rec.phantom | bus.rvalid)):
                m.d.sync += beat.eq(beat + 1)
                with m.If(rec.phantom | last):
                    m.d.comb += q.r.ready.eq(1)
                    m.d.sync += beat.eq(0)
                m.d.comb += complete.eq(real & last)
            with m.If(~q.r.valid & ~bus.arvalid & gen.idle):
                m.d.sync += [aborting.eq(0), in_row.eq(0), flushing.eq(0), failed.eq(0),
                             beat.eq(0)]
        with m.Elif(flushing):
            with m.If(out_free & (st_free | ~rec.job_end)):
                m.d.sync += [o.valid.eq(1), o.payload.eq(value), flushing.eq(0),
                             in_row.eq(0)]
                m.d.comb += q.r.ready.eq(1)
                with m.If(rec.job_end):
                    finish_job()
        with m.Elif(q.r.valid & rec.empty):
            with m.If(st_free):
                m.d.comb += q.r.ready.eq(1)
                finish_job()
        with m.Elif(q.r.valid):
            room = out_free & (st_free | ~ends_job) & ar_taken
            m.d.comb += step.eq(room & (rec.phantom | bus.rvalid))
            with m.If(step):
                m.d.sync += [prev.eq(bus.rdata), in_row.eq(1), beat.eq(beat + 1),
                             o.payload.eq(value)]
                with m.If((rec.shift == 0) | in_row):
                    m.d.sync += o.valid.eq(1)
                with m.If(failed_now & ~failed):
                    m.d.sync += [failed.eq(1), fail_code.eq(code_now), fail_addr.eq(rec.addr),
                                 fail_seq.eq(rec.seq)]
                m.d.comb += complete.eq(real & last)
                with m.If(last):
                    m.d.sync += beat.eq(0)
                    with m.If(row_last & rec.extra):
                        m.d.sync += flushing.eq(1)
                    with m.Else():
                        m.d.comb += q.r.ready.eq(1)
                        with m.If(row_last):
                            m.d.sync += in_row.eq(0)
                        with m.If(rec.job_end):
                            finish_job()

        with m.If(self.soft_reset):
            m.d.sync += [aborting.eq(1), o.valid.eq(0), st.valid.eq(0)]
        with m.If(aborting):
            m.d.sync += [o.valid.eq(0), st.valid.eq(0)]
        m.d.comb += self.busy.eq(aborting | ~gen.idle | q.r.valid | bus.arvalid | o.valid |
                                 st.valid | flushing | (outstanding != 0 if not hold else 0))
        return m


class DMAWriter(_Engine):
    """DMA write engine: ``data`` stream -> memory, 2-D strided (see the module
    documentation for bursts, byte lanes, errors and ``soft_reset``).

    Parameters
    ----------
    addr_width, data_width, id_width, max_burst, max_outstanding, rows_width, bytes_width,
    tag_width : int
        As for :class:`DMAReader`.

    Members
    -------
    bus : Out(write half of AXI4Signature)
        ``aw*``, ``w*`` and ``b*`` signals.
    desc : In(stream.Signature(DMADescriptor))
        Jobs, as for :class:`DMAReader`.
    data : In(stream.Signature(unsigned(data_width)))
        Row data, packed from lane 0 per row. Ready drops while the W channel is
        stalled or no burst is planned yet.
    status : Out(stream.Signature(DMAStatus))
        One completion per job, in order, after its last write response.
    window_base, window_limit, soft_reset, busy
        As for :class:`DMAReader`.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    _owner = "DMAWriter"

    def _members(self):
        return {"bus": _bus_member(self._p, True), **_engine_members(self._p, True)}

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self._p
        B, lb, W = p.B, p.lb, p.data_width
        bus = self.bus

        m.submodules.gen = gen = _Generator(p, write=True)
        # Every burst record goes to the response side, all but an empty job's to the
        # data side too; each keeps only the fields it reads. With one burst in flight
        # at most, both read the generator's plan, held until the response side takes
        # it (the data side marks it done, w_done, when its last beat is sent).
        wq_fields = ("beats", "lo", "hi", "shift", "extra", "phantom", "seq")
        bq_fields = ("addr", "job_end", "phantom", "refused", "seq", "tag")
        hold = p.queue_depth == 1
        if hold:
            m.submodules.bq = hq = _Hold(p.record(wq_fields + bq_fields + ("empty",)))
            rec = brec = hq.r.payload
            wq_valid, wq_ready = Signal(), Signal()
            bq_valid, bq_ready = Signal(), Signal()
        else:
            m.submodules.wq = wq = _Queue(p.record(wq_fields), depth=p.queue_depth)
            m.submodules.bq = bq = _Queue(p.record(bq_fields), depth=p.queue_depth)
            rec, brec = wq.r.payload, bq.r.payload
            wq_valid, wq_ready = wq.r.valid, wq.r.ready
            bq_valid, bq_ready = bq.r.valid, bq.r.ready
        m.d.comb += [gen.window_base.eq(self.window_base),
                     gen.window_limit.eq(self.window_limit)]
        self._axi_constants(m, "aw")

        aborting = Signal()
        # Descriptors offered while a soft reset drains are taken and dropped.
        m.d.comb += [gen.desc.valid.eq(self.desc.valid & ~aborting),
                     gen.desc.payload.eq(self.desc.payload),
                     self.desc.ready.eq(gen.desc.ready | aborting)]
        outstanding = Signal(range(p.max_outstanding + 1))
        issue = Signal()
        complete = Signal()

        plan = gen.burst.payload
        if hold:
            w_done = Signal()
            m.d.comb += [
                hq.w.valid.eq(gen.burst.valid), gen.burst.ready.eq(hq.w.ready),
                hq.w.payload.eq(_pick(hq.w.payload.shape(), plan)), issue.eq(hq.issue),
                gen.soft_reset.eq((self.soft_reset | aborting) & ~hq.issued),
                wq_valid.eq(hq.r.valid & ~rec.empty & ~w_done),
                # A phantom record leaves once the data side is done with it (at the
                # latest in this cycle); a real one leaves on its response, which comes
                # after its last beat.
                bq_valid.eq(hq.r.valid & (~brec.phantom | brec.empty | w_done |
                                          (wq_valid & wq_ready))),
                hq.r.ready.eq(bq_ready),
            ]
            with m.If(wq_valid & wq_ready):
                m.d.sync += w_done.eq(1)
            with m.If(hq.r.valid & hq.r.ready):
                m.d.sync += w_done.eq(0)
        else:
            aw_free = ~bus.awvalid | bus.awready
            m.d.comb += [
                gen.burst.ready.eq(wq.w.ready & bq.w.ready & aw_free &
                                   (plan.phantom | (outstanding < p.max_outstanding))),
                bq.w.valid.eq(gen.burst.valid & gen.burst.ready),
                bq.w.payload.eq(_pick(bq.w.payload.shape(), plan)),
                wq.w.valid.eq(gen.burst.valid & gen.burst.ready & ~plan.empty),
                wq.w.payload.eq(_pick(wq.w.payload.shape(), plan)),
                issue.eq(gen.burst.valid & gen.burst.ready & ~plan.phantom),
                gen.soft_reset.eq(self.soft_reset | aborting),
            ]
            m.d.sync += outstanding.eq(outstanding + issue - complete)
        aw_taken = self._address(m, "aw", plan, issue, brec)

        # Response side (owns the job's error state).
        failed = Signal()
        fail_code = Signal(DMAError)
        fail_addr = Signal(p.addr_width)
        fail_seq = Signal(p.seq_width)
        m.d.comb += [gen.fail.eq(failed), gen.fail_seq.eq(fail_seq)]
        st = self.status
        st_free = ~st.valid | st.ready
        with m.If(st.valid & st.ready):
            m.d.sync += st.valid.eq(0)

        breal = ~brec.phantom
        err = Signal()
        failed_now = Signal()
        code_now = Signal(DMAError)
        m.d.comb += [
            err.eq(breal & bus.bvalid & bus.bready & bus.bresp[1]),
            failed_now.eq(failed | err | _refused(brec)),
            code_now.eq(Mux(failed, fail_code,
                            Mux(_refused(brec), DMAError.WINDOW,
                                Mux(bus.bresp[0], DMAError.DECERR, DMAError.SLVERR)))),
        ]
        # One continuous assignment: Icarus left a bready built in the branches below
        # undefined at time 0 when the record is the generator's plan.
        m.d.comb += bus.bready.eq(bq_valid & breal & aw_taken &
                                  (aborting | st_free | ~brec.job_end))
        with m.If(aborting):
            with m.If(bq_valid & aw_taken & (brec.phantom | bus.bvalid)):
                m.d.comb += [bq_ready.eq(1), complete.eq(breal)]
        with m.Elif(bq_valid):
            room = (st_free | ~brec.job_end) & aw_taken
            with m.If(room & (brec.phantom | bus.bvalid)):
                m.d.comb += [bq_ready.eq(1), complete.eq(breal)]
                with m.If(failed_now & ~failed):
                    m.d.sync += [failed.eq(1), fail_code.eq(code_now),
                                 fail_addr.eq(brec.addr), fail_seq.eq(brec.seq)]
                with m.If(brec.job_end):
                    m.d.sync += [st.valid.eq(1), st.payload.tag.eq(brec.tag),
                                 st.payload.error.eq(Mux(failed_now, code_now, DMAError.OK)),
                                 st.payload.addr.eq(Mux(failed_now,
                                                        Mux(failed, fail_addr, brec.addr), 0)),
                                 failed.eq(0)]

        # Data side: realign packed rows onto memory lanes.
        beat = Signal(range(p.max_burst))
        first = Signal(init=1)
        prev = Signal(W)
        i = self.data
        w_free = ~bus.wvalid | bus.wready
        with m.If(bus.wvalid & bus.wready):
            m.d.sync += bus.wvalid.eq(0)

        last = beat == rec.beats - 1
        no_input = last & rec.extra
        masked = failed & (fail_seq == rec.seq)
        strb = Signal(B)
        for lane in range(B):
            keep = Const(1)
            if lb:
                # The top lane is never below the first byte (lo < B): no comparison, which
                # Verilator would flag as constant (CMPCONST).
                after_lo = (rec.lo <= lane) if lane < B - 1 else Const(1)
                keep = (~first | after_lo) & (~last | (rec.hi > lane))
            m.d.comb += strb[lane].eq(keep & ~masked)
        # A beat that needs no input takes lanes >= shift from the input anyway: their
        # strobes are off (the row ended in the lanes prev fills).
        # Lane l takes byte l + B - shift of prev:data (the input's lane l for shift 0):
        # one B-way byte multiplexer per lane, selected by B - 1 - shift.
        value = (Cat(prev, i.payload)[8:] >> ((~rec.shift)[:lb] * 8))[:W]

        step = Signal()
        with m.If(aborting):
            m.d.comb += i.ready.eq(1)
            with m.If(wq_valid & (rec.phantom | w_free)):
                with m.If(rec.phantom):
                    m.d.comb += wq_ready.eq(1)
                with m.Else():
                    m.d.sync += [bus.wvalid.eq(1), bus.wstrb.eq(0), bus.wlast.eq(last),
                                 beat.eq(beat + 1), first.eq(last)]
                    with m.If(last):
                        m.d.comb += wq_ready.eq(1)
                        m.d.sync += beat.eq(0)
            with m.If(~wq_valid & ~bq_valid & ~bus.awvalid & ~bus.wvalid &
                      gen.idle):
                m.d.sync += [aborting.eq(0), failed.eq(0), beat.eq(0), first.eq(1)]
                if hold:
                    m.d.sync += w_done.eq(0)
        with m.Elif(wq_valid):
            room = rec.phantom | w_free
            m.d.comb += [i.ready.eq(room & ~no_input),
                         step.eq(room & (no_input | i.valid))]
            with m.If(step):
                with m.If(~no_input):
                    m.d.sync += prev.eq(i.payload)
                with m.If(~rec.phantom):
                    m.d.sync += [bus.wvalid.eq(1), bus.wdata.eq(value), bus.wstrb.eq(strb),
                                 bus.wlast.eq(last)]
                m.d.sync += [beat.eq(beat + 1), first.eq(last)]
                with m.If(last):
                    m.d.comb += wq_ready.eq(1)
                    m.d.sync += beat.eq(0)

        with m.If(self.soft_reset):
            m.d.sync += [aborting.eq(1), st.valid.eq(0)]
        with m.If(aborting):
            m.d.sync += st.valid.eq(0)
        m.d.comb += self.busy.eq(aborting | ~gen.idle | wq_valid | bq_valid |
                                 bus.awvalid | bus.wvalid | st.valid |
                                 (outstanding != 0 if not hold else 0))
        return m


class DMA(_Figures, wiring.Component):
    """A :class:`DMAReader` and a :class:`DMAWriter` sharing one AXI4 manager port;
    reads and writes run concurrently and independently.

    Parameters
    ----------
    addr_width, data_width, id_width, max_burst, max_outstanding, rows_width, bytes_width,
    tag_width : int
        As for :class:`DMAReader`; ``max_burst`` and ``max_outstanding`` apply to each
        direction.
    check_window : bool
        As for :class:`DMAReader`.

    Members
    -------
    m_axi : Out(AXI4Signature(addr_width=, data_width=, id_width=))
        The memory port. Wrap the top in :class:`intformer.hw.axi.FlatPorts` to emit
        it as ``m_axi_awaddr``... ``AxSIZE`` is always the full bus width,
        ``AxBURST`` INCR, ``AxCACHE`` 0b0011, ``AxID`` 0.
    rd_desc, rd_data, rd_status, rd_busy
        The reader's ``desc``, ``data``, ``status`` and ``busy``.
    wr_desc, wr_data, wr_status, wr_busy
        The writer's ``desc``, ``data``, ``status`` and ``busy``.
    window_base : In(addr_width), window_limit : In(addr_width + 1)
        Allowed memory ``[base, limit)`` for both directions.
    soft_reset : In(1)
        Soft reset pulse for both directions.

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, *, addr_width: int = 32, data_width: int = 64, id_width: int = 4,
                 max_burst: int = 16, max_outstanding: int = 4, rows_width: int = 16,
                 bytes_width: int = 24, tag_width: int = 8, check_window: bool = True):
        self._p = p = _Params("DMA", addr_width=addr_width, data_width=data_width,
                              id_width=id_width, max_burst=max_burst,
                              max_outstanding=max_outstanding, rows_width=rows_width,
                              bytes_width=bytes_width, tag_width=tag_width,
                              check_window=check_window)
        aw = addr_width
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=aw, data_width=data_width,
                                       id_width=id_width)),
            "rd_desc": In(stream.Signature(p.descriptor())),
            "rd_data": Out(stream.Signature(unsigned(data_width))),
            "rd_status": Out(stream.Signature(p.status())),
            "wr_desc": In(stream.Signature(p.descriptor())),
            "wr_data": In(stream.Signature(unsigned(data_width))),
            "wr_status": Out(stream.Signature(p.status())),
            "window_base": In(aw), "window_limit": In(aw + 1),
            "soft_reset": In(1), "rd_busy": Out(1), "wr_busy": Out(1),
        })

    @classmethod
    def from_config(cls, config, **overrides) -> DMA:
        """The DMA a :class:`intformer.hw.config.Config` describes."""
        kwargs = dict(addr_width=config.axi_addr_width, data_width=config.axi_data_width,
                      id_width=config.axi_id_width, max_burst=config.axi_max_burst,
                      max_outstanding=config.axi_max_outstanding)
        kwargs.update(overrides)
        return cls(**kwargs)

    def params(self) -> dict:
        """Parameters and figures, for testbenches and the manifest."""
        return {**self._p.kwargs(), "bytes_per_beat": self._p.B, "burst_span": self._p.span,
                "errors": {e.name: e.value for e in DMAError}}

    def manifest(self) -> dict:
        """Manifest sections: ``dma`` (figures) and ``errors.dma`` (completion codes, which
        the C header emits as ``INTFORMER_ERROR_DMA_<NAME>``)."""
        figures = {k: v for k, v in self.params().items() if k != "errors"}
        return {"dma": figures, "errors": {"dma": {e.name: e.value for e in DMAError}}}

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.reader = rd = DMAReader(**self._p.kwargs())
        m.submodules.writer = wr = DMAWriter(**self._p.kwargs())
        for name in rd.bus.signature.members:
            if rd.bus.signature.members[name].flow == Out:
                m.d.comb += getattr(self.m_axi, name).eq(getattr(rd.bus, name))
            else:
                m.d.comb += getattr(rd.bus, name).eq(getattr(self.m_axi, name))
        for name in wr.bus.signature.members:
            if wr.bus.signature.members[name].flow == Out:
                m.d.comb += getattr(self.m_axi, name).eq(getattr(wr.bus, name))
            else:
                m.d.comb += getattr(wr.bus, name).eq(getattr(self.m_axi, name))
        for eng, pre in ((rd, "rd"), (wr, "wr")):
            wiring.connect(m, wiring.flipped(getattr(self, f"{pre}_desc")), eng.desc)
            wiring.connect(m, eng.status, wiring.flipped(getattr(self, f"{pre}_status")))
            m.d.comb += [eng.window_base.eq(self.window_base),
                         eng.window_limit.eq(self.window_limit),
                         eng.soft_reset.eq(self.soft_reset),
                         getattr(self, f"{pre}_busy").eq(eng.busy)]
        wiring.connect(m, rd.data, wiring.flipped(self.rd_data))
        wiring.connect(m, wiring.flipped(self.wr_data), wr.data)
        return m
