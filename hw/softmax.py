"""Integer Softmax unit: row buffer, three overlapped passes, bit-exact with
:func:`intformer.sw.golden.softmax`."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.golden.softmax import EXP_DROP, EXP_FRAC, IN_BITS, OUT_FRAC, RECIP_BITS, T_MAX
from .intdiv import PipelinedDivider
from .vecmul import mul_members, multiply
from .vector import VectorLayout, check_int, count_width, round_saturate

__all__ = ["SoftmaxConsts", "Softmax"]

#: Rows that may be between the sum pass and the output pass (reciprocal queue).
_RECIP_QUEUE = 8
#: Rows waiting for the sum pass.
_ROW_QUEUE = 4


class SoftmaxConsts(data.StructLayout):
    """Run-time constants of :class:`Softmax`: the fields of
    :class:`intformer.sw.golden.softmax.SoftmaxParams`.

    Fields
    ------
    in_mult : unsigned(16)
    in_shift : unsigned(6)
    poly_b : unsigned(15)
    poly_c : unsigned(30)
    """

    def __init__(self):
        super().__init__({"in_mult": unsigned(16), "in_shift": unsigned(6),
                          "poly_b": unsigned(15), "poly_c": unsigned(30)})


def _iexp(m, en, x, mx, c, width, name, ports=(None, None)):
    """Five register stages (advancing when ``en``) from an input and its row
    maximum to the 16-bit i-exp of the golden model; ``ports``: the shared
    multipliers of its two products, or None for its own."""
    d = Signal(unsigned(width + 1), name=f"{name}_d")
    p = Signal(signed(width + 18), name=f"{name}_p")
    t = Signal(unsigned(20), name=f"{name}_t")
    sq = Signal(unsigned(31), name=f"{name}_sq")
    z = Signal(unsigned(6), name=f"{name}_z")
    e = Signal(unsigned(16), name=f"{name}_e")
    # p >= 0, so saturating to 20 signed bits is min(., 2**19 - 1) = min(., T_MAX).
    shifted = round_saturate(m, p, c.in_shift, T_MAX.bit_length() + 1, name=f"{name}_rs")
    f = t[:EXP_FRAC]
    diff = Signal(signed(16), name=f"{name}_diff")
    m.d.comb += diff.eq(c.poly_b - f)
    # Outside If(en): see Gelu.
    prod_p = multiply(m, ports[0], d, c.in_mult)
    prod_sq = multiply(m, ports[1], diff, diff)
    with m.If(en):
        m.d.sync += [
            d.eq(mx - x),
            p.eq(prod_p),
            t.eq(shifted),
            sq.eq(prod_sq),
            z.eq(t >> EXP_FRAC),
            # The constant part of the shift first: a 5-bit shifter on 16 bits
            # instead of a 6-bit one on 31 (floor of a floor is the floor).
            e.eq(((sq + c.poly_c) >> EXP_DROP) >> z),
        ]
    return e


class Softmax(wiring.Component):
    """Integer Softmax of rows of up to ``max_row`` elements, ``lanes`` per cycle.

    Computes exactly :func:`intformer.sw.golden.softmax` (see its numeric
    contract). Three passes overlap, each on a different row:

    1. *input*: take the row's beats, store them in the row buffer (a
       ``amaranth.lib.memory`` of :attr:`buffer_beats` beats, a ring shared by
       the rows in flight, sized so that rows of any length up to ``max_row``
       stream without waiting for room) and find the row maximum;
    2. *sum*: read the row back, i-exp every element, add them up; then the
       normalised sum goes through the pipelined divider
       (:class:`~intformer.hw.intdiv.PipelinedDivider`, 18 stages) for the
       reciprocal;
    3. *output*: read the row's i-exp values back (the sum pass stored them in a
       second ring of 16-bit values beside the row), multiply by the reciprocal,
       round, saturate to ``[0, 127]`` (scale 1/128) and send.

    Each pass handles one beat per cycle and starts the next row without a gap,
    so rows of at least 64 elements stream at nearly ``lanes`` elements per
    cycle; :meth:`latency` gives the cycles from the first input beat of a row
    to its first output beat on an idle unit. ``i.ready`` drops while the ring
    is full (the output is stalled or many short rows are in flight).

    A row longer than ``max_row`` is rejected: its beats are consumed and
    dropped, it produces no output, and ``error`` rises and stays high until
    ``clear``.

    Parameters
    ----------
    lanes : int
        Elements per beat (1 to 64).
    max_row : int
        Longest row, in elements (``lanes`` to 4096).
    in_width : int
        Width of the signed inputs (2 to 32).
    shared_mul : bool
        Use multipliers outside the unit (the ``mul<k>`` ports, see
        :mod:`intformer.hw.vecmul`) instead of making its own.

    Members
    -------
    i : In(stream.Signature(VectorLayout(in_width, lanes)))
        Input rows: full beats, the last one (``last``) possibly partial (``count``).
    o : Out(stream.Signature(VectorLayout(8, lanes)))
        Output rows, beat for beat like the input; lanes past ``count`` are 0.
    consts : In(SoftmaxConsts())
        From :func:`intformer.sw.golden.softmax_params`; hold steady while rows
        are in flight.
    error : Out(1)
        A row longer than ``max_row`` was dropped (sticky).
    clear : In(1)
        Clears ``error``.
    mul0 .. mul2 : Out(MulSignature).array(lanes)
        With ``shared_mul``: the products (:attr:`mul_widths`).

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, lanes: int, *, max_row: int, in_width: int = 32,
                 shared_mul: bool = False):
        check_int("Softmax", "lanes", lanes, 1, 64)
        check_int("Softmax", "max_row", max_row, lanes, 4096)
        check_int("Softmax", "in_width", in_width, 2, IN_BITS)
        self._lanes, self._max_row, self._in_width = lanes, max_row, in_width
        self._shared_mul = bool(shared_mul)
        super().__init__({
            "i": In(stream.Signature(VectorLayout(in_width, lanes))),
            "o": Out(stream.Signature(VectorLayout(8, lanes))),
            "consts": In(SoftmaxConsts()),
            "error": Out(1),
            "clear": In(1),
            **(mul_members(self.mul_widths, lanes) if shared_mul else {}),
        })

    @property
    def mul_widths(self) -> list[tuple[int, int]]:
        """Signed operand widths of the per-lane products: ``(max - x) * in_mult``
        and the i-exp square (sum pass), i-exp times the reciprocal (output pass)."""
        return [(self._in_width + 2, 17), (16, 16), (17, self.divider_latency + 1)]

    @classmethod
    def from_config(cls, config) -> Softmax:
        """The unit for a :class:`~intformer.hw.config.Config`: ``vector_lanes``
        lanes, rows up to ``vector_max_row``, ``acc_width`` inputs."""
        return cls(config.vector_lanes, max_row=config.vector_max_row, in_width=config.acc_width)

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def max_row(self) -> int:
        return self._max_row

    @property
    def in_width(self) -> int:
        return self._in_width

    @property
    def max_beats(self) -> int:
        """Beats of the longest row."""
        return -(-self._max_row // self._lanes)

    @property
    def buffer_beats(self) -> int:
        """Beats the row buffer holds: a row stays from its first input beat until
        its last output read, ``latency(max_row) + max_beats`` cycles, while the
        next rows arrive at one beat per cycle."""
        return self.latency(self._max_row) + self.max_beats + 8

    @property
    def sum_width(self) -> int:
        """Width of the row sum of i-exp values (each below 2**16)."""
        return 16 + self._max_row.bit_length()

    @property
    def divider_latency(self) -> int:
        """Stages of the reciprocal divider (one per quotient bit)."""
        return RECIP_BITS + 2

    def latency(self, length: int) -> int:
        """Cycles from the first input beat of a ``length``-element row to its first
        output beat, on an idle unit without stalls."""
        beats = -(-length // self._lanes)
        return 2 * beats + self.divider_latency + 17

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes, w = self._lanes, self._in_width
        depth = self.buffer_beats
        aw = (depth - 1).bit_length()

        def ring(a, b):
            return Mux(a + b >= depth, a + b - depth, a + b)[:aw]

        bw = self.max_beats.bit_length()
        cw = count_width(lanes)
        sw = self.sum_width
        kw = sw.bit_length()
        qw = self.divider_latency
        c = self.consts
        min_value = -(1 << (w - 1))

        m.submodules.mem = mem = memory.Memory(
            shape=data.ArrayLayout(signed(w), lanes), depth=depth, init=[])
        wr = mem.write_port()
        rd_sum = mem.read_port()
        # The sum pass keeps each beat's i-exp values here (same ring slot) for the
        # output pass, which then needs no second i-exp datapath.
        m.submodules.exp_mem = exp_mem = memory.Memory(
            shape=data.ArrayLayout(unsigned(16), lanes), depth=depth, init=[])
        exp_wr = exp_mem.write_port()
        rd_out = exp_mem.read_port()

        desc1 = data.StructLayout({"start": unsigned(aw), "beats": unsigned(bw),
                                   "count": unsigned(cw), "max": signed(w)})
        desc2 = data.StructLayout({"row": desc1, "recip": unsigned(qw), "k": unsigned(kw)})
        m.submodules.rows = rows = fifo.SyncFIFOBuffered(width=desc1.size, depth=_ROW_QUEUE)
        m.submodules.recips = recips = fifo.SyncFIFOBuffered(width=desc2.size,
                                                             depth=_RECIP_QUEUE)

        # Pass 1: input, row maximum, ring buffer write
        wr_ptr = Signal(aw)
        used = Signal(range(depth + 1))
        row_start = Signal(aw)
        beats = Signal(bw + 1)
        elems = Signal(range(self.max_beats * lanes + 1))
        run_max = Signal(signed(w), init=min_value)
        dropping = Signal()
        m.d.comb += self.i.ready.eq((used < depth) & rows.w_rdy)

        beat = self.i.payload
        lane_vals = [Mux(lane < beat.count, beat.data[lane], min_value) for lane in range(lanes)]
        while len(lane_vals) > 1:
            pairs = [Mux(a > b, a, b) for a, b in zip(lane_vals[::2], lane_vals[1::2],
                                                      strict=False)]
            lane_vals = pairs + ([lane_vals[-1]] if len(lane_vals) % 2 else [])
        new_max = Signal(signed(w))
        m.d.comb += new_max.eq(Mux(run_max > lane_vals[0], run_max, lane_vals[0]))

        accept = self.i.valid & self.i.ready
        # Too many beats, or (max_row not a multiple of lanes) too many elements.
        overflow = (dropping | (beats == self.max_beats) |
                    (elems + beat.count > self._max_row))
        row_desc = Signal(desc1)
        m.d.comb += [
            wr.addr.eq(wr_ptr),
            wr.data.eq(beat.data),
            wr.en.eq(accept & ~overflow),
            row_desc.start.eq(row_start),
            row_desc.beats.eq(beats + 1),
            row_desc.count.eq(beat.count),
            row_desc.max.eq(new_max),
            rows.w_data.eq(row_desc),
            rows.w_en.eq(accept & ~overflow & beat.last),
        ]
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        # The ring slot is free once the output pass has captured its read.
        freeing = Signal()
        wrote = Signal()
        dropped = Signal(range(self.max_beats + 1))
        m.d.sync += used.eq(used + wrote - freeing - dropped)
        with m.If(accept):
            with m.If(overflow):
                # Too long: forget what was written of the row, drop the rest of it.
                m.d.comb += dropped.eq(beats)
                m.d.sync += [wr_ptr.eq(row_start), self.error.eq(1), dropping.eq(~beat.last),
                             beats.eq(0), elems.eq(0), run_max.eq(min_value)]
            with m.Else():
                m.d.comb += wrote.eq(1)
                m.d.sync += [wr_ptr.eq(ring(wr_ptr, 1)), beats.eq(beats + 1),
                             elems.eq(elems + beat.count), run_max.eq(new_max)]
                with m.If(beat.last):
                    m.d.sync += [row_start.eq(ring(wr_ptr, 1)), beats.eq(0), elems.eq(0),
                                 run_max.eq(min_value)]

        # Pass 2: sum of i-exp, then the reciprocal
        outstanding = Signal(range(_RECIP_QUEUE + 1))
        started = Signal()
        popped = Signal()
        m.d.sync += outstanding.eq(outstanding + started - popped)

        s_active = Signal()
        s_row = Signal(desc1)
        s_idx = Signal(bw)
        s_issue_last = s_active & (s_idx == s_row.beats - 1)
        s_load = (~s_active | s_issue_last) & rows.r_rdy & (outstanding < _RECIP_QUEUE)
        m.d.comb += [rows.r_en.eq(s_load), started.eq(s_load)]
        m.d.comb += [rd_sum.addr.eq(ring(s_row.start, s_idx)), rd_sum.en.eq(1)]
        with m.If(s_active):
            m.d.sync += s_idx.eq(s_idx + 1)
        with m.If(s_issue_last):
            m.d.sync += s_active.eq(0)
        with m.If(s_load):
            m.d.sync += [s_active.eq(1), s_row.eq(rows.r_data), s_idx.eq(0)]

        # Tags beside the read data and the five i-exp stages.
        tag = data.StructLayout({"valid": 1, "first": 1, "last": 1, "row": desc1,
                                 "addr": unsigned(aw)})
        s_tags = [Signal(tag, name=f"s_tag{k}") for k in range(7)]
        m.d.sync += [s_tags[0].valid.eq(s_active), s_tags[0].first.eq(s_idx == 0),
                     s_tags[0].last.eq(s_issue_last), s_tags[0].row.eq(s_row),
                     s_tags[0].addr.eq(rd_sum.addr)]
        m.d.sync += [s_tags[k].eq(s_tags[k - 1]) for k in range(1, 7)]
        def port(k, lane):
            return getattr(self, f"mul{k}")[lane] if self._shared_mul else None

        s_exp = [_iexp(m, 1, rd_sum.data[lane], s_tags[0].row.max, c, w, f"s{lane}",
                       ports=(port(0, lane), port(1, lane)))
                 for lane in range(lanes)]
        t6 = s_tags[5]
        m.d.comb += [exp_wr.addr.eq(t6.addr), exp_wr.en.eq(t6.valid)]
        m.d.comb += [exp_wr.data[lane].eq(s_exp[lane]) for lane in range(lanes)]
        masked = [Mux(~t6.last | (lane < t6.row.count), s_exp[lane], 0) for lane in range(lanes)]
        beat_sum = Signal(unsigned(sw), name="beat_sum")
        m.d.sync += beat_sum.eq(sum(masked))
        acc = Signal(unsigned(sw))
        total = Signal(unsigned(sw))
        t7 = s_tags[6]
        m.d.comb += total.eq(Mux(t7.first, 0, acc) + beat_sum)
        with m.If(t7.valid):
            m.d.sync += acc.eq(total)

        # Normalise the sum to sw bits (k = its bit length), then 2**(sw + 16) / it.
        # The row's sum is registered first: the adder, the search for its leading
        # one and the shifter together take two cycles' worth of logic.
        row_sum = Signal(unsigned(sw))
        r_tag = Signal(data.StructLayout({"valid": 1, "row": desc1}))
        m.d.sync += [row_sum.eq(total), r_tag.valid.eq(t7.valid & t7.last), r_tag.row.eq(t7.row)]
        k = Signal(unsigned(kw))
        for bit in range(sw):
            with m.If(row_sum[bit]):
                m.d.comb += k.eq(bit + 1)
        norm = Signal(unsigned(sw))
        n_tag = Signal(data.StructLayout({"valid": 1, "row": desc1, "k": unsigned(kw)}))
        m.d.sync += [norm.eq((row_sum << (sw - k).as_unsigned()[:kw])[:sw]),
                     n_tag.valid.eq(r_tag.valid), n_tag.row.eq(r_tag.row), n_tag.k.eq(k)]
        m.submodules.divider = divider = PipelinedDivider(sw + RECIP_BITS + 1, den_width=sw,
                                                          quotient_width=qw)
        m.d.comb += [divider.en.eq(1), divider.num.eq(1 << (sw + RECIP_BITS)),
                     divider.den.eq(norm)]
        # The divider has a fixed latency and keeps rows in order: each row's
        # descriptor waits in a small FIFO, only a valid bit travels beside it.
        pend_layout = data.StructLayout({"row": desc1, "k": unsigned(kw)})
        m.submodules.pending = pending = fifo.SyncFIFO(width=pend_layout.size,
                                                       depth=_RECIP_QUEUE)
        pend = Signal(pend_layout)
        m.d.comb += [pend.row.eq(n_tag.row), pend.k.eq(n_tag.k),
                     pending.w_data.eq(pend), pending.w_en.eq(n_tag.valid)]
        d_valid = Signal(qw)
        m.d.sync += d_valid.eq(Cat(n_tag.valid, d_valid[:-1]))
        done = Signal(pend_layout)
        recip_desc = Signal(desc2)
        m.d.comb += [
            done.eq(pending.r_data), pending.r_en.eq(d_valid[-1]),
            recip_desc.row.eq(done.row), recip_desc.k.eq(done.k),
            recip_desc.recip.eq(divider.quotient),
            recips.w_data.eq(recip_desc), recips.w_en.eq(d_valid[-1]),
        ]

        # Pass 3: stored i-exp values times the reciprocal, out. The read data is
        # registered before the multiplier: a block RAM's output is slow (5.8 ns
        # clock-to-out on an ECP5 DP16KD without its output register).
        stages = 4
        valid = Signal(stages)
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.o.valid.eq(valid[-1])]
        o_active = Signal()
        o_row = Signal(desc2)
        o_idx = Signal(bw)
        o_issue = o_active & advance
        o_issue_last = o_issue & (o_idx == o_row.row.beats - 1)
        o_load = advance & (~o_active | o_issue_last) & recips.r_rdy
        m.d.comb += [recips.r_en.eq(o_load), popped.eq(o_load)]
        m.d.comb += [rd_out.addr.eq(ring(o_row.row.start, o_idx)), rd_out.en.eq(advance)]
        with m.If(o_issue):
            m.d.sync += o_idx.eq(o_idx + 1)
        with m.If(o_issue_last):
            m.d.sync += o_active.eq(0)
        with m.If(o_load):
            m.d.sync += [o_active.eq(1), o_row.eq(recips.r_data), o_idx.eq(0)]
        m.d.sync += freeing.eq(o_issue)

        otag = data.StructLayout({"last": 1, "row": desc2})
        o_tags = [Signal(otag, name=f"o_tag{k}") for k in range(stages)]
        with m.If(advance):
            m.d.sync += valid.eq(Cat(o_issue, valid[:-1]))
            m.d.sync += [o_tags[0].last.eq(o_issue_last), o_tags[0].row.eq(o_row)]
            m.d.sync += [o_tags[k].eq(o_tags[k - 1]) for k in range(1, stages)]
        t_exp, t_prod = o_tags[1], o_tags[2]
        shift = Signal(unsigned(7))
        m.d.comb += shift.eq(t_prod.row.k + (RECIP_BITS - OUT_FRAC))
        for lane in range(lanes):
            exp = Signal(unsigned(16), name=f"exp{lane}")
            prod = Signal(unsigned(16 + qw), name=f"prod{lane}")
            y = Signal(signed(8), name=f"y{lane}")
            # prod >= 0: saturating to 8 signed bits is min(., 127).
            rounded = round_saturate(m, Cat(prod, Const(0, 1)).as_signed(), shift, OUT_FRAC + 1,
                                     name=f"rs_y{lane}")
            # Outside If(advance): see Gelu.
            product = multiply(m, port(2, lane), exp, t_exp.row.recip)
            with m.If(advance):
                m.d.sync += [
                    exp.eq(rd_out.data[lane]),
                    prod.eq(product),
                    y.eq(Mux(t_prod.last & (lane >= t_prod.row.row.count), 0,
                             rounded)),
                ]
            m.d.comb += self.o.payload.data[lane].eq(y)
        t_last = o_tags[-1]
        m.d.comb += [self.o.payload.last.eq(t_last.last),
                     self.o.payload.count.eq(Mux(t_last.last, t_last.row.row.count, lanes))]
        return m
