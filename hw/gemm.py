"""GEMM engine: ``C = requant(A x B + bias)`` over any M, K, N on the systolic array.

Memory layout (addresses count rows; a scratchpad row holds ``spad_row_bytes`` INT8
values, an accumulator row ``array_cols`` INT32 values, as in :mod:`intformer.hw.isa`).
With ``R = array_rows``, ``C = array_cols``, ``KT = ceil(K / R)``, ``NT = ceil(N / C)``:

===========  =========  ==========================================================
operand      memory     row ``addr + i * stride + chunk`` holds
===========  =========  ==========================================================
A            scratchpad ``A[m, kt*R : kt*R + R]`` at ``a + m * a_stride + kt``
                        (low ``R`` bytes of the row)
B            scratchpad ``B[k, nt*C : nt*C + C]`` at ``b + k * b_stride + nt``
                        (low ``C`` bytes), for ``k < K`` only
INT32 C      accumulator ``C[m, nt*C : nt*C + C]`` at ``c + m * c_stride + nt``;
                        also the partial sums while K is accumulated
INT8 C       scratchpad ``requant(C)[m, nt*C : ...]`` at ``d + m * d_stride + nt``
                        (low ``C`` bytes; the rest of the row is written as 0)
bias         accumulator ``bias[nt*C : nt*C + C]`` at ``bias + nt``
scale        accumulator per-channel constants at ``scale + nt``: lane ``j`` holds the
                        multiplier in bits ``0 .. mult_width-1`` and the shift in
                        the 6 bits above
===========  =========  ==========================================================

Bytes of A past K, rows of B past K and columns of B past N are never used (the
engine feeds zero weights there), so padding may hold anything. Accumulator
lanes past N receive bias/accumulated padding values; INT8 lanes past N are 0
only if the bias lanes past N are 0 (they are requantized like the others).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from .config import Config
from .memories import BankedMemory, ReadPortSignature, WritePortSignature
from .requant import Requantizer
from .systolic import SystolicArray

__all__ = ["GemmCommand", "GemmEngine", "GemmUnit", "DIM_WIDTH", "STRIDE_WIDTH", "dim_widths"]

#: Width of the M, K and N fields of a command.
DIM_WIDTH = 16
#: Width of the stride fields of a command.
STRIDE_WIDTH = 16
SHIFT_WIDTH = 6
#: Arrays of at most this many PEs get the small engine (see :class:`GemmEngine`).
SMALL_ARRAY_PES = 4



def _at_most(value, limit: int):
    """``value <= limit`` for an unsigned ``value`` and a constant ``limit``, as a test
    of the high bits and a small compare of the low ones: Yosys makes a carry chain
    as wide as ``value`` of a plain comparison."""
    low = limit.bit_length()
    if low >= len(value):
        return value <= limit
    if limit == (1 << low) - 1:
        return ~value[low:].any()       # every low value is at most the limit
    return ~value[low:].any() & (value[:low] <= limit)


def _check_config(config) -> int:
    """Raise if the engine cannot be built for ``config``; return the accumulator lane
    width in bits."""
    if not isinstance(config, Config):
        raise TypeError(f"GEMM engine config must be a Config, not {config!r}")
    lane_bits = config.acc_row_bytes * 8 // config.array_cols
    if config.requant_mult_width + SHIFT_WIDTH > lane_bits:
        raise ValueError(f"GEMM engine scale lanes of {lane_bits} bits cannot hold a "
                         f"{config.requant_mult_width}-bit multiplier and a "
                         f"{SHIFT_WIDTH}-bit shift")
    return lane_bits


class GemmCommand(data.StructLayout):
    """One GEMM descriptor (see the module docstring for the memory layout).

    Fields
    ------
    a, b, d : scratchpad row addresses; a_stride, b_stride, d_stride : rows
    c, bias, scale : accumulator row addresses; c_stride : rows
    m, k, n : dimensions, 1 or more; the engine uses only the low bits of ``k`` and
        ``n`` that :func:`dim_widths` gives (every K and N that fits the memories)
    accumulate : start from the accumulator rows at ``c`` instead of 0
    use_bias : add the bias row once (with ``accumulate``: on top of the old value)
    requant : requantize the result into the scratchpad at ``d`` instead of writing
        INT32 results to ``c`` (``c`` still holds partial sums when K > array_rows)
    per_channel : take multiplier and shift per column from ``scale``, else ``mult``
        and ``shift`` for the whole tensor
    mult, shift : per-tensor requantization constants
    """

    def __init__(self, config: Config):
        spad, acc = config.spad_addr_width, config.acc_addr_width
        super().__init__({
            "a": spad, "a_stride": STRIDE_WIDTH,
            "b": spad, "b_stride": STRIDE_WIDTH,
            "c": acc, "c_stride": STRIDE_WIDTH,
            "d": spad, "d_stride": STRIDE_WIDTH,
            "bias": acc, "scale": acc,
            "m": DIM_WIDTH, "k": DIM_WIDTH, "n": DIM_WIDTH,
            "accumulate": 1, "use_bias": 1, "requant": 1, "per_channel": 1,
            "mult": config.requant_mult_width, "shift": SHIFT_WIDTH,
        })


class _Tag(data.StructLayout):
    """What the output stages need to know of an A row's result."""

    def __init__(self, acc_aw: int):
        super().__init__({
            "c_row": acc_aw,
            "first": 1,     # first K tile: add the bias
            "from_acc": 1,  # start from the accumulator row (K tile > 0, or accumulate)
            "to_d": 1,      # last K tile of a requantizing command: requantize into ``d``
            "pop": 1,       # last row of an N tile: its constants are used up
            "end": 1,       # last row of the command
        })


class _Latched(data.StructLayout):
    """The fields of a command that the engine keeps while it issues its reads, cut
    to what they can matter: strides modulo the memory's address width (the pointers
    are that wide), K and N to the widths :func:`dim_widths` gives."""

    def __init__(self, config: Config, small: bool):
        spad, acc = config.spad_addr_width, config.acc_addr_width
        kw, _ = dim_widths(config)
        # ``c`` and ``d`` only bound the next command's hazards, and with ``small`` the
        # per-tensor ``mult`` and ``shift`` go straight into the one constants entry.
        super().__init__({
            "a": spad, "a_stride": spad, "b_stride": spad, "c_stride": acc, "d_stride": spad,
            **({} if small else {"c": acc, "d": spad}),
            "m": DIM_WIDTH, "k": kw,
            "accumulate": 1, "use_bias": 1, "requant": 1, "per_channel": 1,
            **({} if small else {"mult": config.requant_mult_width, "shift": SHIFT_WIDTH}),
        })


def dim_widths(config: Config) -> tuple[int, int]:
    """Bits of K and N that the engine uses (at most :data:`DIM_WIDTH`): enough for
    every K whose ``ceil(K / array_rows)`` rows of A and every N whose
    ``ceil(N / array_cols)`` rows of B and C fit the memories, the bounds that the
    command processor checks (its
    :meth:`~intformer.hw.cmdproc.CommandProcessor.stored_width` takes them from here).
    A larger K or N must not be given to the engine."""
    c = config
    return (min(DIM_WIDTH, (c.array_rows * c.spad_rows).bit_length()),
            min(DIM_WIDTH, (c.array_cols * min(c.spad_rows, c.acc_rows)).bit_length()))


class _DTag(data.StructLayout):
    """What a requantized result row needs to be written."""

    def __init__(self, spad_aw: int):
        super().__init__({"d_row": spad_aw, "end": 1})


def _tag_queue(m: Module, name: str, shape, depth: int, push, w_data, pop):
    """A FIFO of ``depth`` entries in a memory with a synchronous read port (block RAM):
    ``w_data`` is written when ``push``; the returned signal is the oldest entry,
    valid from the second cycle after it was pushed, until the cycle ``pop`` is high.
    The caller guarantees that it never holds more than ``depth`` entries and pops
    only entries that are there (nothing here counts them)."""
    assert depth & (depth - 1) == 0
    mem = Memory(shape=shape, depth=depth, init=[])
    m.submodules[name] = mem
    wr = mem.write_port()
    rd = mem.read_port()
    w_ptr = Signal(range(depth), name=f"{name}_w_ptr")
    r_ptr = Signal(range(depth), name=f"{name}_r_ptr")
    r_next = Signal(range(depth), name=f"{name}_r_next")
    m.d.comb += [
        wr.en.eq(push), wr.addr.eq(w_ptr), wr.data.eq(w_data),
        # The read port reloads the head every cycle, so an entry written in the
        # cycle it became the head is there one cycle later.
        r_next.eq(r_ptr + pop), rd.addr.eq(r_next),
    ]
    m.d.sync += [w_ptr.eq(w_ptr + push), r_ptr.eq(r_next)]
    return rd.data


class _Consts(data.StructLayout):
    def __init__(self, lanes: int, acc_width: int, mult_width: int, bias: bool = True):
        super().__init__({
            **({"bias": data.ArrayLayout(signed(acc_width), lanes)} if bias else {}),
            "mult": data.ArrayLayout(unsigned(mult_width), lanes),
            "shift": data.ArrayLayout(unsigned(SHIFT_WIDTH), lanes),
        })


class GemmEngine(wiring.Component):
    """Computes one :class:`GemmCommand` at a time on an ``array_rows x array_cols``
    :class:`~intformer.hw.systolic.SystolicArray`, reading and writing shared memories
    through request/grant ports (:mod:`intformer.hw.memories`).

    Order of work: for each N tile, for each K tile, the ``R x C`` weight tile is
    loaded while the previous tile computes, and the M rows of A stream through;
    each result row is added to its accumulator row (read-modify-write) or, in the
    first K tile, started from 0 or the old accumulator value, plus the bias.
    Results of the last K tile go to the accumulator or, requantized, to the
    scratchpad.

    Timing: one A row (``R x C`` MACs) per cycle in steady state when every port is
    granted as it asks and ``M >= array_rows`` (the weight tile takes ``R`` cycles
    to load); a command takes ``M * KT * NT + fill_latency (+ requant_latency)``
    cycles then. For full rate, A and B must lie in different scratchpad banks
    (each bank has one read port), and the constants preferably in another
    accumulator bank than the partial sums. With ``config.dsp_packing`` the array
    puts two PEs' products in one iCE40 ``SB_MAC16`` (same timing and results; the
    design then synthesizes for iCE40 only).
    A port that is not granted stalls its side only.

    Consecutive commands overlap: the next command is accepted as soon as the
    previous one has issued all its reads, so its weight tile loads and its first
    rows enter the array while the previous rows drain (``fill_latency`` is paid
    once per run of back-to-back commands, not per command). Its reads of
    scratchpad rows that the previous command writes as INT8 results, and of
    constant rows in the previous command's accumulator rows, wait until that
    command is done, so a command may use the previous one's results. ``done``
    pulses for one cycle when a command's last result is written, in order.

    Small engine: for arrays of at most :data:`SMALL_ARRAY_PES` PEs (:attr:`small`,
    ``facts()["overlap"]`` false), where that logic would cost as much as the array,
    a command is accepted only once the previous one is done (``fill_latency`` is
    paid per command); a row that reads an accumulator row which a row ahead of it
    in the output stages still has to write (``M`` smaller than 3 with K over
    several tiles) waits for that write, a bubble of up to 3 cycles, instead of
    taking the value from the stages; each N tile's constants are read once the
    previous N tile's last row has left (up to 5 cycles per N tile); the bias is not
    kept with them but read per result row of the first K tile, through the
    accumulator read port in place of the accumulator row, so a row that needs both
    (``accumulate`` with ``use_bias``) holds S1 for a second read, a bubble of 1
    cycles per such row; there is no S2: S1 writes its row (or feeds the
    requantizer) in the cycle its accumulator data arrives, one cycle of
    ``fill_latency`` less; and the
    requantizer takes one lane per cycle, so a requantized row (the last K tile of a
    requantizing command) holds the output stage for ``array_cols`` cycles
    (:attr:`requant_row_cycles`; the INT8 row is assembled before its write), which
    halves the requantizer and its DSPs for a 2-column array. Results are the same.

    Parameters
    ----------
    config : Config

    Members
    -------
    cmd : In(stream.Signature(GemmCommand(config)))
    a_rd, b_rd : Out(ReadPortSignature) on the scratchpad (A rows, B rows)
    d_wr : Out(WritePortSignature) on the scratchpad (INT8 results)
    acc_rd : Out(ReadPortSignature) on the accumulator (partial sums)
    const_rd : Out(ReadPortSignature) on the accumulator (bias and scale rows)
    c_wr : Out(WritePortSignature) on the accumulator (partial sums, INT32 results)
    busy : Out(1)
        While a command is in the engine: from the cycle the first is accepted to
        the ``done`` of the last.
    done : Out(1)
    row_in : Out(1)
        High in each cycle an A row enters the array.
    cycles, rows, bubbles : Out(32)
        Since the last command was accepted: cycles up to its ``done`` (inclusive),
        A rows that entered the array, and cycles between the first and the last of
        them in which none entered. (When commands overlap, the previous command's
        last rows may count in the next one's figures.)

    Raises
    ------
    TypeError
        If ``config`` is not a :class:`Config`.
    ValueError
        If the per-channel multiplier and shift do not fit an accumulator lane.
    """

    def __init__(self, config: Config):
        lane_bits = _check_config(config)
        self._config = config
        self._lane_bits = lane_bits
        self._spad_aw = config.spad_addr_width
        self._acc_aw = config.acc_addr_width
        spad_w, acc_w = config.spad_row_bytes * 8, config.acc_row_bytes * 8
        super().__init__({
            "cmd": In(stream.Signature(GemmCommand(config))),
            "a_rd": Out(ReadPortSignature(addr_width=self._spad_aw, width=spad_w)),
            "b_rd": Out(ReadPortSignature(addr_width=self._spad_aw, width=spad_w)),
            "d_wr": Out(WritePortSignature(addr_width=self._spad_aw, width=spad_w)),
            "acc_rd": Out(ReadPortSignature(addr_width=self._acc_aw, width=acc_w)),
            "const_rd": Out(ReadPortSignature(addr_width=self._acc_aw, width=acc_w)),
            "c_wr": Out(WritePortSignature(addr_width=self._acc_aw, width=acc_w)),
            "busy": Out(1),
            "done": Out(1),
            "row_in": Out(1),
            "cycles": Out(32),
            "rows": Out(32),
            "bubbles": Out(32),
        })
        self._array = SystolicArray(config.array_rows, config.array_cols,
                                    operand_width=config.operand_width,
                                    acc_width=config.acc_width,
                                    dsp_packing=config.dsp_packing,
                                    ecp5_dsp=config.ecp5_dsp)
        # The small engine requantizes one lane per cycle (see the class docstring).
        small = config.array_rows * config.array_cols <= SMALL_ARRAY_PES
        self._requant = Requantizer(1 if small else config.array_cols,
                                    acc_width=config.acc_width,
                                    mult_width=config.requant_mult_width,
                                    out_width=config.operand_width)

    @property
    def config(self) -> Config:
        return self._config

    @property
    def small(self) -> bool:
        """The small engine (arrays of at most :data:`SMALL_ARRAY_PES` PEs): commands do
        not overlap, a row waits for its accumulator row instead of taking it from
        the output stages, there is one entry of N-tile constants, and the bias row
        is read per result row."""
        return self._config.array_rows * self._config.array_cols <= SMALL_ARRAY_PES

    @property
    def array_latency(self) -> int:
        """Cycles an A row spends in the systolic array."""
        return self._array.latency

    @property
    def fill_latency(self) -> int:
        """Cycles a command takes beyond one per A row (``M * KT * NT`` rows), without
        port contention and with ``M >= max(3, array_rows)``, INT32 results: the
        command latch and the weight FIFO (3), the first weight tile (``array_rows``),
        the array (:attr:`array_latency`) and the output stages (2; 1 in the small
        engine)."""
        return (4 if self.small else 5) + self._config.array_rows + self.array_latency

    @property
    def requant_latency(self) -> int:
        """Extra cycles when the results are requantized (the requantizer's stages)."""
        return self._requant.latency

    @property
    def requant_row_cycles(self) -> int:
        """Cycles a requantized result row takes in the output stage: 1, or
        ``array_cols`` in the small engine, which requantizes one lane per cycle (a
        command then takes ``(array_cols - 1) * M * NT`` cycles more when it
        requantizes)."""
        return self._config.array_cols // self._requant.lanes

    def facts(self) -> dict:
        """What a compiler or driver needs to know about the engine."""
        c = self._config
        return {
            "array": {"rows": c.array_rows, "cols": c.array_cols,
                      "latency": self.array_latency, "min_tile_rows": self._array.min_tile_rows,
                      "dsp_packing": self._array.dsp_packing,
                      "multipliers": self._array.multipliers},
            "fill_latency": self.fill_latency,
            "requant_latency": self.requant_latency,
            "requant_row_cycles": self.requant_row_cycles,
            "overlap": not self.small,
            "command": {name: {"offset": f.offset, "width": f.width}
                        for name, f in GemmCommand(c)},
            "layout": {
                "a": "a + m * a_stride + kt: A[m, kt*R:(kt+1)*R] (scratchpad)",
                "b": "b + k * b_stride + nt: B[k, nt*C:(nt+1)*C] (scratchpad)",
                "c": "c + m * c_stride + nt: INT32 C[m, nt*C:(nt+1)*C] (accumulator)",
                "d": "d + m * d_stride + nt: INT8 C[m, nt*C:(nt+1)*C] (scratchpad)",
                "bias": "bias + nt: bias[nt*C:(nt+1)*C] (accumulator)",
                "scale": f"scale + nt: lane j = mult | shift << {c.requant_mult_width} "
                         f"(accumulator)",
            },
            "ports": {"scratchpad_read": 2, "scratchpad_write": 1,
                      "accumulator_read": 2, "accumulator_write": 1},
        }

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        R, C, ow, aw = c.array_rows, c.array_cols, c.operand_width, c.acc_width
        mw, lb = c.requant_mult_width, self._lane_bits
        tag_layout = _Tag(self._acc_aw)
        dtag_layout = _DTag(self._spad_aw)
        m.submodules.array = array = self._array

        # Two commands may be in the engine: one whose rows are still draining through
        # the array and the output stages, and the next one, accepted as soon as the
        # front end (A, B and constant reads) of the first has issued everything. The
        # front end works from ``cmd``; everything behind the array works from the
        # rows' tags and the constant FIFO, so the two never mix.
        small = self.small
        cmd = Signal(_Latched(c, small))
        kw, nw = dim_widths(c)
        front = Signal()                   # ``cmd`` still has reads to issue
        inflight = Signal(range(3))        # accepted, not yet done
        done = Signal()
        start = Signal()
        front_done = Signal()
        m.d.comb += [
            self.cmd.ready.eq(~front & (inflight != (1 if small else 2))),
            self.busy.eq(inflight != 0),
            self.done.eq(done),
            start.eq(self.cmd.valid & self.cmd.ready),
        ]
        with m.If(start):
            m.d.sync += front.eq(1)
            for name, _ in _Latched(c, small):
                m.d.sync += getattr(cmd, name).eq(getattr(self.cmd.payload, name))
        with m.Elif(front_done):
            m.d.sync += front.eq(0)
        m.d.sync += inflight.eq(inflight + start - done)

        # ---- A side: rows of A with their tags into a FIFO in front of the array.
        # Three entries keep the small engine at full rate (it does not overlap
        # commands, so it never needs the fourth).
        a_fifo = fifo.SyncFIFO(width=array.a.payload.shape().size, depth=3 if small else 4)
        m.submodules.a_fifo = a_fifo
        a_run = Signal()
        a_ptr = Signal(self._spad_aw)      # a + m * a_stride + kt
        a_kt = Signal(self._spad_aw)       # a + kt
        a_krem = Signal(kw)                # K - kt * R
        a_nrem = Signal(nw)                # N - nt * C
        a_mrem = Signal(DIM_WIDTH)         # M - m
        a_first = Signal()
        c_ptr = Signal(self._acc_aw)
        c_nt = Signal(self._acc_aw)
        d_ptr = Signal(self._spad_aw)
        d_nt = Signal(self._spad_aw)
        a_pend = Signal()
        a_pend_beat = Signal(array.a.payload.shape())
        a_beat = Signal(array.a.payload.shape())
        a_tag = Signal(tag_layout)
        a_dtag = Signal(dtag_layout)
        last_m = a_mrem == 1
        last_kt = _at_most(a_krem, R)
        last_nt = _at_most(a_nrem, C)
        m.d.comb += [
            a_tag.c_row.eq(c_ptr), a_tag.first.eq(a_first),
            a_tag.from_acc.eq(~a_first | cmd.accumulate), a_tag.to_d.eq(last_kt & cmd.requant),
            a_tag.pop.eq(last_kt & last_m), a_tag.end.eq(last_kt & last_m & last_nt),
            a_dtag.d_row.eq(d_ptr), a_dtag.end.eq(a_tag.end),
        ]

        # ---- Hazards on an older command that is still draining. The rows a command
        # writes lie between its start rows (``d``, ``c``) and the highest rows its A
        # side has issued (the pointers only grow), exact bounds once its front end is
        # done. A newer command reading scratchpad rows in the older one's INT8 range
        # (A or B), or constant rows in its accumulator range, waits for the older
        # ``done``. Its accumulator read-modify-writes need no wait: they follow the
        # older rows through the output stages in order, and a row still in S1 or S2
        # is forwarded.
        if small:
            def spad_hazard(addr):
                return 0

            def acc_hazard(addr):
                return 0
        else:
            d_hi = Signal(self._spad_aw)
            c_hi = Signal(self._acc_aw)
            older = Signal()
            older_rq = Signal()
            older_d = [Signal(self._spad_aw, name=f"older_d_{e}") for e in ("lo", "hi")]
            older_c = [Signal(self._acc_aw, name=f"older_c_{e}") for e in ("lo", "hi")]
            with m.If(start):
                m.d.sync += [
                    d_hi.eq(self.cmd.payload.d), c_hi.eq(self.cmd.payload.c),
                    older.eq((inflight != 0) & ~done), older_rq.eq(cmd.requant),
                    older_d[0].eq(cmd.d), older_d[1].eq(d_hi),
                    older_c[0].eq(cmd.c), older_c[1].eq(c_hi),
                ]
            with m.Elif(done):
                m.d.sync += older.eq(0)
            with m.If(self.a_rd.en & self.a_rd.grant):
                with m.If(d_ptr > d_hi):
                    m.d.sync += d_hi.eq(d_ptr)
                with m.If(c_ptr > c_hi):
                    m.d.sync += c_hi.eq(c_ptr)

            def spad_hazard(addr):
                return older & older_rq & (addr >= older_d[0]) & (addr <= older_d[1])

            def acc_hazard(addr):
                return older & (addr >= older_c[0]) & (addr <= older_c[1])

        m.d.comb += [
            self.a_rd.addr.eq(a_ptr),
            self.a_rd.en.eq(a_run & (a_fifo.level + a_pend + 1 <= a_fifo.depth)
                            & ~spad_hazard(a_ptr)),
        ]
        with m.If(start):
            m.d.sync += [a_run.eq(1), a_ptr.eq(self.cmd.payload.a), a_kt.eq(self.cmd.payload.a),
                         a_krem.eq(self.cmd.payload.k), a_nrem.eq(self.cmd.payload.n),
                         a_mrem.eq(self.cmd.payload.m), a_first.eq(1),
                         c_ptr.eq(self.cmd.payload.c), c_nt.eq(self.cmd.payload.c),
                         d_ptr.eq(self.cmd.payload.d), d_nt.eq(self.cmd.payload.d)]
        m.d.sync += a_pend.eq(0)
        with m.If(self.a_rd.en & self.a_rd.grant):
            m.d.sync += [a_pend.eq(1), a_pend_beat.last.eq(last_m),
                         a_mrem.eq(a_mrem - 1), a_ptr.eq(a_ptr + cmd.a_stride),
                         c_ptr.eq(c_ptr + cmd.c_stride), d_ptr.eq(d_ptr + cmd.d_stride)]
            with m.If(last_m):
                m.d.sync += [a_mrem.eq(cmd.m), c_ptr.eq(c_nt), d_ptr.eq(d_nt)]
                with m.If(last_kt):
                    m.d.sync += [a_first.eq(1), a_krem.eq(cmd.k), a_kt.eq(cmd.a),
                                 a_ptr.eq(cmd.a), a_nrem.eq(a_nrem - C),
                                 c_ptr.eq(c_nt + 1), c_nt.eq(c_nt + 1),
                                 d_ptr.eq(d_nt + 1), d_nt.eq(d_nt + 1)]
                    with m.If(last_nt):
                        m.d.sync += a_run.eq(0)
                with m.Else():
                    m.d.sync += [a_first.eq(0), a_krem.eq(a_krem - R), a_kt.eq(a_kt + 1),
                                 a_ptr.eq(a_kt + 1)]
        m.d.comb += [a_beat.eq(a_pend_beat)]
        for r in range(R):
            m.d.comb += a_beat.data[r].eq(self.a_rd.data.word_select(r, ow))
        m.d.comb += [
            a_fifo.w_en.eq(a_pend), a_fifo.w_data.eq(a_beat),
            array.a.valid.eq(a_fifo.r_rdy), array.a.payload.eq(a_fifo.r_data),
            a_fifo.r_en.eq(array.a.ready),
        ]

        # ---- B side: weight rows, zero past K and past N, into a FIFO.
        b_fifo = fifo.SyncFIFO(width=array.w.payload.shape().size, depth=3)
        m.submodules.b_fifo = b_fifo
        b_run = Signal()
        b_ptr = Signal(self._spad_aw)
        b_nt = Signal(self._spad_aw)
        b_krem = Signal(kw)          # rows of B left in this N tile
        b_nrem = Signal(nw)
        b_r = Signal(range(R))
        b_pend = Signal()
        b_pend_zero = Signal()
        b_pend_mask = Signal(C)
        has_row = b_krem != 0
        room = b_fifo.level + b_pend + 1 <= b_fifo.depth
        b_step = Signal()
        m.d.comb += [
            self.b_rd.addr.eq(b_ptr),
            self.b_rd.en.eq(b_run & has_row & room & ~spad_hazard(b_ptr)),
            b_step.eq(b_run & room & (~has_row | (self.b_rd.en & self.b_rd.grant))),
        ]
        with m.If(start):
            m.d.sync += [b_run.eq(1), b_ptr.eq(self.cmd.payload.b), b_nt.eq(self.cmd.payload.b),
                         b_krem.eq(self.cmd.payload.k), b_nrem.eq(self.cmd.payload.n),
                         b_r.eq(0)]
        m.d.sync += b_pend.eq(0)
        with m.If(b_step):
            m.d.sync += [b_pend.eq(1), b_pend_zero.eq(~has_row),
                         b_pend_mask.eq(Cat(~_at_most(b_nrem, j) for j in range(C))),
                         b_r.eq(b_r + 1)]
            with m.If(has_row):
                m.d.sync += [b_ptr.eq(b_ptr + cmd.b_stride), b_krem.eq(b_krem - 1)]
            with m.If(b_r == R - 1):
                m.d.sync += b_r.eq(0)
                with m.If(_at_most(b_krem, 1)):
                    m.d.sync += [b_krem.eq(cmd.k), b_nrem.eq(b_nrem - C),
                                 b_nt.eq(b_nt + 1), b_ptr.eq(b_nt + 1)]
                    with m.If(_at_most(b_nrem, C)):
                        m.d.sync += b_run.eq(0)
        w_row = Signal(array.w.payload.shape())
        for j in range(C):
            with m.If(~b_pend_zero & b_pend_mask[j]):
                m.d.comb += w_row[j].eq(self.b_rd.data.word_select(j, ow))
        m.d.comb += [
            b_fifo.w_en.eq(b_pend), b_fifo.w_data.eq(w_row),
            array.w.valid.eq(b_fifo.r_rdy), array.w.payload.eq(b_fifo.r_data),
            b_fifo.r_en.eq(array.w.ready),
        ]

        # ---- Constants: bias and scale rows of each N tile, ahead of the output stage.
        # Two entries: ``head`` is the N tile at the output stage, ``tail`` the next
        # one, assembled in place from the constant reads and moved up when the head's
        # last row leaves (a FIFO would need a third copy to assemble in).
        # With ``small`` there is one entry: the next N tile's constants are read when
        # the last row of the current one has left.
        # With ``small`` the entry holds no bias: the output stages read the bias row
        # per result row (see below).
        consts = _Consts(C, aw, mw, bias=not small)
        k_pop = Signal()
        if small:
            head = tail = Signal(consts)
            head_full = tail_full = Signal()
            with m.If(k_pop):
                m.d.sync += head_full.eq(0)
        else:
            head, tail = Signal(consts), Signal(consts)
            head_full, tail_full = Signal(), Signal()
            with m.If(tail_full & (~head_full | k_pop)):
                m.d.sync += [head.eq(tail), head_full.eq(1), tail_full.eq(0)]
            with m.Elif(k_pop):
                m.d.sync += head_full.eq(0)
        k_bias_ptr = Signal(self._acc_aw)
        k_scale_ptr = Signal(self._acc_aw)
        k_nrem = Signal(nw)
        want_scale = cmd.requant & cmd.per_channel
        # One test of whichever row the port reads, not one per pointer.
        const_hazard = acc_hazard(self.const_rd.addr)
        with m.FSM() as k_fsm:
            with m.State("idle"):
                with m.If(start):
                    if small:
                        # The entry is empty (the previous command is done); a
                        # per-channel command overwrites these per N tile.
                        for j in range(C):
                            m.d.sync += [tail.mult[j].eq(self.cmd.payload.mult),
                                         tail.shift[j].eq(self.cmd.payload.shift)]
                    m.d.sync += [k_bias_ptr.eq(self.cmd.payload.bias),
                                 k_scale_ptr.eq(self.cmd.payload.scale),
                                 k_nrem.eq(self.cmd.payload.n)]
                    m.next = "bias"
            with m.State("bias"):
                if small:
                    # Only waits for the entry to be free.
                    with m.If(~tail_full):
                        m.next = "scale"
                else:
                    with m.If(~tail_full):
                        for j in range(C):
                            m.d.sync += [tail.bias[j].eq(0), tail.mult[j].eq(cmd.mult),
                                         tail.shift[j].eq(cmd.shift)]
                        m.d.comb += [self.const_rd.addr.eq(k_bias_ptr),
                                     self.const_rd.en.eq(cmd.use_bias & ~const_hazard)]
                        with m.If(~cmd.use_bias):
                            m.next = "scale"
                        with m.Elif(self.const_rd.grant):
                            m.next = "bias_data"
            if not small:
                with m.State("bias_data"):
                    for j in range(C):
                        m.d.sync += tail.bias[j].eq(self.const_rd.data.word_select(j, lb)[:aw])
                    m.next = "scale"
            with m.State("scale"):
                m.d.comb += [self.const_rd.addr.eq(k_scale_ptr),
                             self.const_rd.en.eq(want_scale & ~const_hazard)]
                with m.If(~want_scale):
                    m.next = "push"
                with m.Elif(self.const_rd.grant):
                    m.next = "scale_data"
            with m.State("scale_data"):
                for j in range(C):
                    lane = self.const_rd.data.word_select(j, lb)
                    m.d.sync += [tail.mult[j].eq(lane[:mw]),
                                 tail.shift[j].eq(lane[mw:mw + SHIFT_WIDTH])]
                m.next = "push"
            with m.State("push"):
                m.d.sync += [tail_full.eq(1),
                             k_bias_ptr.eq(k_bias_ptr + 1), k_scale_ptr.eq(k_scale_ptr + 1),
                             k_nrem.eq(k_nrem - C)]
                with m.If(_at_most(k_nrem, C)):
                    m.next = "idle"
                with m.Else():
                    m.next = "bias"
        m.d.comb += front_done.eq(front & ~a_run & ~b_run & k_fsm.ongoing("idle"))

        # ---- Output: S0 reads the accumulator row, S1 adds it, S2 adds the bias and
        # writes the row or hands it to the requantizer (``small``: S1 adds the bias
        # row read in place of or after the accumulator row, and writes).
        # Tags do not travel through the array: the results leave it in the order of
        # the A rows, so each row's tag waits in a queue (block RAM) from the cycle its
        # read is granted to the cycle its result leaves the array, and the scratchpad
        # row of a requantized result in another until the row is written. At most
        # 1 + 4 rows are between the read and the array (a_pend, a_fifo), the array
        # holds ``latency``, S1 and S2 one each, the requantizer ``latency``.
        o = array.o.payload
        a_read = self.a_rd.en & self.a_rd.grant
        inflight_rows = 7 + array.latency + self._requant.latency
        q_depth = 1 << inflight_rows.bit_length()
        o_tag = Signal(tag_layout)
        m.d.comb += o_tag.eq(_tag_queue(m, "tag_q", tag_layout, q_depth, a_read, a_tag,
                                        array.o.valid & array.o.ready))
        d_tag = Signal(dtag_layout)
        d_written = self.d_wr.en & self.d_wr.grant
        m.d.comb += d_tag.eq(_tag_queue(m, "dtag_q", dtag_layout, q_depth,
                                        a_read & a_tag.to_d, a_dtag, d_written))
        s1_valid, s1_read = Signal(), Signal()
        s1_sum = Signal(data.ArrayLayout(signed(aw), C))
        s1_tag = Signal(tag_layout)
        s1_acc2 = Signal()                 # S1 still has to read its accumulator row
        if small:
            # No S2: S1 writes its row (or hands it to the requantizer) in the cycle
            # its accumulator data arrives, or holds it, added up, in ``s1_sum``.
            s2_valid = s1_valid & ~s1_acc2
            s2_tag = s1_tag
        else:
            s2_valid = Signal()
            s2_sum = Signal(data.ArrayLayout(signed(aw), C))
            s2_tag = Signal(tag_layout)
        s2_done = Signal()
        s2_free = ~s2_valid | s2_done

        def writes_acc(tag):
            return ~tag.to_d

        # A row whose accumulator row is still on its way to memory (M smaller than
        # the output pipeline) takes the value from S2 instead of reading it: from
        # S2 itself in the next cycle if the row will be there, or from a copy of
        # S2's value when S2 writes it this cycle (the read would miss that write).
        # With ``small`` the row waits instead until S2 writes the row (the memory
        # holds off a read of a row written in the same cycle).
        match1 = s1_valid & writes_acc(s1_tag) & (s1_tag.c_row == o_tag.c_row)
        match2 = s2_valid & writes_acc(s2_tag) & (s2_tag.c_row == o_tag.c_row)
        fwd_s2 = match1 | (match2 & ~s2_done)
        fwd_reg = ~match1 & match2 & s2_done
        # With ``small`` the bias row of a first-K-tile row is read through ``acc_rd``
        # per row: at S0, in place of the accumulator row, or with ``accumulate``
        # before it, S1 then holding the row for a second read, of its accumulator
        # row, once S2 is free or writes (the memory holds off a read of a row written
        # in the same cycle). ``o_bias`` is the bias row of S0's N tile.
        s1_moves = s2_done if small else s1_valid & s2_free
        s1_free = ~s1_valid | s1_moves
        if small:
            o_bias = Signal(self._acc_aw)
            o_bias_row = o_tag.first & cmd.use_bias
            need_read = o_tag.from_acc | o_bias_row
            wait = o_tag.from_acc & ~o_bias_row & match1
            s1_rd2 = s1_acc2
            with m.If(start):
                m.d.sync += o_bias.eq(self.cmd.payload.bias)
            with m.Elif(array.o.valid & array.o.ready & o_tag.pop):
                m.d.sync += o_bias.eq(o_bias + 1)
            with m.If(s1_acc2):
                m.d.comb += [self.acc_rd.addr.eq(s1_tag.c_row), self.acc_rd.en.eq(s1_rd2)]
            with m.Else():
                m.d.comb += [self.acc_rd.addr.eq(Mux(o_bias_row, o_bias, o_tag.c_row)),
                             self.acc_rd.en.eq(array.o.valid & need_read & s1_free & ~wait)]
        else:
            need_read = o_tag.from_acc & ~fwd_s2 & ~fwd_reg
            wait = 0
            m.d.comb += [
                self.acc_rd.addr.eq(o_tag.c_row),
                self.acc_rd.en.eq(array.o.valid & need_read & s1_free & ~wait),
            ]
        m.d.comb += array.o.ready.eq(s1_free & ~wait & (~need_read | self.acc_rd.grant))
        s1_fwd_s2 = Signal()
        s1_fwd_reg = Signal()
        s1_fwd = Signal(data.ArrayLayout(signed(aw), C))
        s2_total = Signal(data.ArrayLayout(signed(aw), C))
        s1_total = Signal(data.ArrayLayout(signed(aw), C))
        # S2's total is final once its bias is there; until then a row forwarded from
        # S2 waits in S1 (S2 cannot leave before, so it waits for the same entry).
        add_s2 = Signal()
        m.d.comb += add_s2.eq(s1_fwd_s2 & (~s2_tag.first | head_full))
        for j in range(C):
            with m.If(s1_read):
                m.d.comb += s1_total[j].eq(s1_sum[j] + self.acc_rd.data.word_select(j, lb)[:aw])
            with m.Elif(add_s2 if not small else 0):
                m.d.comb += s1_total[j].eq(s1_sum[j] + s2_total[j])
            with m.Elif(s1_fwd_reg if not small else 0):
                m.d.comb += s1_total[j].eq(s1_sum[j] + s1_fwd[j])
            with m.Else():
                m.d.comb += s1_total[j].eq(s1_sum[j])
        m.d.sync += [s1_read.eq(0), s1_fwd_reg.eq(0)]
        with m.If(add_s2):
            m.d.sync += s1_fwd_s2.eq(0)
        with m.If(s1_valid):
            m.d.sync += s1_sum.eq(s1_total)
        with m.If(s1_moves):
            m.d.sync += s1_valid.eq(0)
        with m.If(array.o.valid & array.o.ready):
            m.d.sync += [s1_valid.eq(1), s1_sum.eq(o.data), s1_tag.eq(o_tag),
                         s1_read.eq(need_read)]
            if not small:
                m.d.sync += [s1_fwd_s2.eq(o_tag.from_acc & fwd_s2),
                             s1_fwd_reg.eq(o_tag.from_acc & fwd_reg), s1_fwd.eq(s2_total)]
            else:
                m.d.sync += s1_acc2.eq(o_tag.from_acc & o_bias_row)
        if small:
            with m.If(s1_rd2 & self.acc_rd.grant):
                m.d.sync += [s1_read.eq(1), s1_acc2.eq(0)]
        if not small:
            with m.If(s2_done):
                m.d.sync += s2_valid.eq(0)
            with m.If(s1_moves):
                m.d.sync += [s2_valid.eq(1), s2_sum.eq(s1_total), s2_tag.eq(s1_tag)]

        # The constant entry's bias is 0 when the command has none (``small``: S1 has
        # added it).
        if small:
            s2_total = s1_total
        for j in range(C if not small else 0):
            with m.If(s2_tag.first):
                m.d.comb += s2_total[j].eq(s2_sum[j] + head.bias[j])
            with m.Else():
                m.d.comb += s2_total[j].eq(s2_sum[j])
        m.submodules.requant = rq = self._requant
        to_rq = s2_valid & head_full & ~writes_acc(s2_tag)
        to_acc = s2_valid & head_full & writes_acc(s2_tag)
        for j in range(C):
            m.d.comb += self.c_wr.data.word_select(j, lb).eq(s2_total[j])
        m.d.comb += [
            self.c_wr.addr.eq(s2_tag.c_row),
            self.c_wr.en.eq(to_acc),
            rq.i.valid.eq(to_rq),
            k_pop.eq(s2_done & s2_tag.pop),
            self.d_wr.addr.eq(d_tag.d_row),
        ]
        if rq.lanes == C:
            m.d.comb += [
                s2_done.eq((to_acc & self.c_wr.grant) | (to_rq & rq.i.ready)),
                self.d_wr.en.eq(rq.o.valid),
                rq.o.ready.eq(self.d_wr.grant),
            ]
            for j in range(C):
                m.d.comb += [
                    rq.i.payload.acc[j].eq(s2_total[j]),
                    rq.i.payload.mult[j].eq(head.mult[j]),
                    rq.i.payload.shift[j].eq(head.shift[j]),
                    self.d_wr.data.word_select(j, ow).eq(rq.o.payload[j]),
                ]
        else:
            # One lane per cycle: S2 holds its row until the last lane is in; the
            # lanes before the last wait in ``d_row`` for the last one's result.
            i_lane = Signal(range(C))
            o_lane = Signal(range(C))
            d_row = Signal(data.ArrayLayout(signed(ow), C - 1))
            i_last = i_lane == C - 1
            o_last = o_lane == C - 1
            with m.If(rq.i.valid & rq.i.ready):
                m.d.sync += i_lane.eq(Mux(i_last, 0, i_lane + 1))
            with m.If(rq.o.valid & rq.o.ready):
                m.d.sync += o_lane.eq(Mux(o_last, 0, o_lane + 1))
                for j in range(C - 1):
                    with m.If(o_lane == j):
                        m.d.sync += d_row[j].eq(rq.o.payload[0])
            m.d.comb += [
                s2_done.eq((to_acc & self.c_wr.grant) | (to_rq & rq.i.ready & i_last)),
                rq.i.payload.acc[0].eq(s2_total[i_lane]),
                rq.i.payload.mult[0].eq(head.mult[i_lane]),
                rq.i.payload.shift[0].eq(head.shift[i_lane]),
                self.d_wr.en.eq(rq.o.valid & o_last),
                rq.o.ready.eq(~o_last | self.d_wr.grant),
            ]
            for j in range(C):
                m.d.comb += self.d_wr.data.word_select(j, ow).eq(
                    rq.o.payload[0] if j == C - 1 else d_row[j])

        m.d.comb += done.eq((to_acc & self.c_wr.grant & s2_tag.end) | (d_written & d_tag.end))

        # ---- Performance counters of the last command.
        a_in = array.a.valid & array.a.ready
        m.d.comb += self.row_in.eq(a_in)
        seen = Signal()
        gap = Signal(32)
        with m.If(start):
            m.d.sync += [self.cycles.eq(1), self.rows.eq(0), self.bubbles.eq(0), seen.eq(0),
                         gap.eq(0)]
        with m.Elif(inflight != 0):
            m.d.sync += self.cycles.eq(self.cycles + 1)
            with m.If(a_in):
                m.d.sync += [self.rows.eq(self.rows + 1), seen.eq(1), gap.eq(0)]
                with m.If(seen):
                    m.d.sync += self.bubbles.eq(self.bubbles + gap)
            with m.Elif(seen):
                m.d.sync += gap.eq(gap + 1)
        return m


class GemmUnit(wiring.Component):
    """A :class:`GemmEngine` with its own scratchpad and accumulator
    (:class:`~intformer.hw.memories.BankedMemory`, block RAM), for testing and
    benchmarking the engine on its own and as the integrated block that
    ``intformer generate`` emits until the accelerator top exists.

    The host ports have priority over the engine's: traffic on them while a
    command runs takes memory cycles from the engine, as a DMA would.

    Parameters
    ----------
    config : Config

    Members
    -------
    cmd : In(stream.Signature(GemmCommand(config)))
    spad_rd, acc_rd : In(ReadPortSignature)
        Host read ports: data one cycle after ``grant``.
    spad_wr, acc_wr : In(WritePortSignature)
        Host write ports.
    busy, done, cycles, rows, bubbles : Out
        As on :class:`GemmEngine`.
    """

    def __init__(self, config: Config):
        _check_config(config)
        self._engine = GemmEngine(config)
        self._config = config
        spad_aw, acc_aw = config.spad_addr_width, config.acc_addr_width
        spad_w, acc_w = config.spad_row_bytes * 8, config.acc_row_bytes * 8
        super().__init__({
            "cmd": In(stream.Signature(GemmCommand(config))),
            "spad_rd": In(ReadPortSignature(addr_width=spad_aw, width=spad_w)),
            "spad_wr": In(WritePortSignature(addr_width=spad_aw, width=spad_w)),
            "acc_rd": In(ReadPortSignature(addr_width=acc_aw, width=acc_w)),
            "acc_wr": In(WritePortSignature(addr_width=acc_aw, width=acc_w)),
            "busy": Out(1), "done": Out(1),
            "cycles": Out(32), "rows": Out(32), "bubbles": Out(32),
        })

    @property
    def engine(self) -> GemmEngine:
        return self._engine

    def manifest(self) -> dict:
        """The ``gemm`` section of ``manifest.json``."""
        return {"gemm": self._engine.facts()}

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        m.submodules.engine = engine = self._engine
        m.submodules.spad = spad = BankedMemory(c.spad_row_bytes * 8, depth=c.spad_rows,
                                                banks=c.spad_banks, read_ports=3,
                                                write_ports=2)
        m.submodules.acc = acc = BankedMemory(c.acc_row_bytes * 8, depth=c.acc_rows,
                                              banks=c.acc_banks, read_ports=3, write_ports=2)
        wiring.connect(m, wiring.flipped(self.spad_rd), spad.read[0])
        wiring.connect(m, engine.a_rd, spad.read[1])
        wiring.connect(m, engine.b_rd, spad.read[2])
        wiring.connect(m, wiring.flipped(self.spad_wr), spad.write[0])
        wiring.connect(m, engine.d_wr, spad.write[1])
        wiring.connect(m, wiring.flipped(self.acc_rd), acc.read[0])
        wiring.connect(m, engine.acc_rd, acc.read[1])
        wiring.connect(m, engine.const_rd, acc.read[2])
        wiring.connect(m, wiring.flipped(self.acc_wr), acc.write[0])
        wiring.connect(m, engine.c_wr, acc.write[1])
        wiring.connect(m, wiring.flipped(self.cmd), engine.cmd)
        m.d.comb += [self.busy.eq(engine.busy), self.done.eq(engine.done),
                     self.cycles.eq(engine.cycles), self.rows.eq(engine.rows),
                     self.bubbles.eq(engine.bubbles)]
        return m
