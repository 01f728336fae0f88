"""Integer LayerNorm unit: row buffer, exact statistics, pipelined square root and
reciprocal, per-element gamma/beta; bit-exact with
:func:`intformer.sw.golden.layernorm`."""

from __future__ import annotations

import math

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, fifo, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.golden.layernorm import (
    BETA_BITS,
    EPS_BITS,
    EPS_FRAC,
    GAMMA_BITS,
    IN_BITS,
    NORM_FRAC,
    RECIP_BITS,
    ZSHIFT,
)
from .intdiv import PipelinedDivider
from .isqrt import PipelinedSqrt
from .vecmul import mul_members, multiply
from .vector import VectorLayout, check_int, count_width, round_saturate

__all__ = ["LayerNormConsts", "GammaBetaLayout", "LayerNorm"]

#: Rows that may be between the input pass and the output pass.
_ROW_CREDITS = 16
#: Width of the normalised variance fed to the square root.
_V_BITS = 62


class LayerNormConsts(data.StructLayout):
    """Per-layer run-time constants of :class:`LayerNorm` (the scalar fields of
    :class:`intformer.sw.golden.layernorm.LayerNormParams`).

    Fields
    ------
    eps_q : unsigned(30)
    shift : unsigned(6)
    """

    def __init__(self):
        super().__init__({"eps_q": unsigned(EPS_BITS), "shift": unsigned(6)})


class GammaBetaLayout(data.StructLayout):
    """One beat of the ``gb`` side stream: the ``gamma_q`` and ``beta_q`` of the
    ``lanes`` elements of one output beat.

    Fields
    ------
    gamma : ArrayLayout(signed(16), lanes)
    beta : ArrayLayout(signed(32), lanes)
    """

    def __init__(self, lanes: int):
        super().__init__({"gamma": data.ArrayLayout(signed(GAMMA_BITS), lanes),
                          "beta": data.ArrayLayout(signed(BETA_BITS), lanes)})


class LayerNorm(wiring.Component):
    """Integer LayerNorm of rows of up to ``max_row`` elements, ``lanes`` per cycle.

    Computes exactly :func:`intformer.sw.golden.layernorm` (see its numeric
    contract) in two passes that overlap on different rows:

    1. *input*: take the row's beats into the row buffer (an
       ``amaranth.lib.memory`` ring of :attr:`buffer_beats` beats) while adding
       up ``sum(x)``, ``sum(x*x)`` and the element count. The statistics then go
       through a fully pipelined chain, one row per cycle: ``n**2`` times the
       variance plus eps, normalisation, the 31-stage
       :class:`~intformer.hw.isqrt.PipelinedSqrt` and the 18-stage
       :class:`~intformer.hw.intdiv.PipelinedDivider` for the reciprocal;
    2. *output*: read the row back, ``(n*x - sum) * R``, rounding shift, times
       gamma plus beta, rounding shift, saturation to INT8, and send.

    Gamma and beta arrive on the ``gb`` side stream, one ``gb`` beat with each
    output beat, in row order (so a row of ``k`` beats takes ``k`` ``gb``
    beats); the output pass waits for them. :meth:`latency` gives the cycles
    from the first input beat of a row to its first output beat on an idle unit
    with ``gb`` ready. ``i.ready`` drops while the ring is full or
    :data:`_ROW_CREDITS` rows are between the passes.

    A row longer than ``max_row`` is rejected: its beats are consumed and
    dropped, it produces no output and takes no ``gb`` beats, and ``error``
    rises and stays high until ``clear``.

    Parameters
    ----------
    lanes : int
        Elements per beat (1 to 64).
    max_row : int
        Longest row, in elements (``lanes`` to 4096).
    in_width : int
        Width of the signed inputs (2 to 12).
    shared_mul : bool
        Use multipliers outside the unit (the ``mul<k>`` ports, see
        :mod:`intformer.hw.vecmul`) instead of making its own.

    Members
    -------
    i : In(stream.Signature(VectorLayout(in_width, lanes)))
        Input rows: full beats, the last one (``last``) possibly partial (``count``).
    gb : In(stream.Signature(GammaBetaLayout(lanes)))
        ``gamma_q`` / ``beta_q`` of the elements of each output beat.
    o : Out(stream.Signature(VectorLayout(8, lanes)))
        INT8 output rows, beat for beat like the input; lanes past ``count`` are 0.
    consts : In(LayerNormConsts())
        ``eps_q`` and ``shift`` from :func:`intformer.sw.golden.layernorm_params`;
        hold steady while rows are in flight.
    error : Out(1)
        A row longer than ``max_row`` was dropped (sticky).
    clear : In(1)
        Clears ``error``.
    mul0 .. mul3 : Out(MulSignature).array(lanes)
        With ``shared_mul``: the products (:attr:`mul_widths`).

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, lanes: int, *, max_row: int, in_width: int = 8,
                 shared_mul: bool = False):
        check_int("LayerNorm", "lanes", lanes, 1, 64)
        check_int("LayerNorm", "max_row", max_row, lanes, 4096)
        check_int("LayerNorm", "in_width", in_width, 2, IN_BITS)
        self._lanes, self._max_row, self._in_width = lanes, max_row, in_width
        self._shared_mul = bool(shared_mul)
        super().__init__({
            "i": In(stream.Signature(VectorLayout(in_width, lanes))),
            "gb": In(stream.Signature(GammaBetaLayout(lanes))),
            "o": Out(stream.Signature(VectorLayout(8, lanes))),
            "consts": In(LayerNormConsts()),
            "error": Out(1),
            "clear": In(1),
            **(mul_members(self.mul_widths, lanes) if shared_mul else {}),
        })

    @property
    def _dz_widths(self) -> tuple[int, int]:
        # Widths from the golden contract for rows of at most max_row elements of w
        # bits, so that each product fits one 18x18 DSP where it can:
        # |x - mean| <= 2**w - 1, so |D| = n |x - mean| <= max_row (2**w - 1);
        # |x - mean| / std <= sqrt(n - 1), so |z| <= sqrt(max_row - 1) 2**NORM_FRAC,
        # times at most 1 + 2**-29 for the floored square root and reciprocal,
        # plus the rounding half: below isqrt((max_row - 1) << 2 NORM_FRAC) + 2.
        dw = (self._max_row * ((1 << self._in_width) - 1)).bit_length() + 1
        zw = (math.isqrt((self._max_row - 1) << (2 * NORM_FRAC)) + 2).bit_length() + 1
        return dw, zw

    @property
    def mul_widths(self) -> list[tuple[int, int]]:
        """Signed operand widths of the per-lane products: ``x * x`` (input pass),
        ``n * x``, ``D * R`` and ``z * gamma`` (output pass)."""
        w, (dw, zw) = self._in_width, self._dz_widths
        return [(w, w), (self._max_row.bit_length() + 1, w), (dw, RECIP_BITS + 2),
                (zw, GAMMA_BITS)]

    @classmethod
    def from_config(cls, config) -> LayerNorm:
        """The unit for a :class:`~intformer.hw.config.Config`: ``vector_lanes``
        lanes, rows up to ``vector_max_row``, INT8 inputs."""
        return cls(config.vector_lanes, max_row=config.vector_max_row)

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
    def stats_latency(self) -> int:
        """Cycles of the statistics chain: 5 stages, the square root, the divider."""
        return 5 + _V_BITS // 2 + RECIP_BITS + 2

    def latency(self, length: int) -> int:
        """Cycles from the first input beat of a ``length``-element row to its first
        output beat, on an idle unit with ``gb`` ready and no stalls."""
        return -(-length // self._lanes) + self.stats_latency + 10

    @property
    def buffer_beats(self) -> int:
        """Beats the row buffer holds: a row stays from its first input beat until
        its last output read, ``latency(max_row) + max_beats`` cycles."""
        return self.latency(self._max_row) + self.max_beats + 8

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes, w = self._lanes, self._in_width
        depth = self.buffer_beats
        aw = (depth - 1).bit_length()
        bw = self.max_beats.bit_length()
        cw = count_width(lanes)
        nw = self._max_row.bit_length()
        s1w = w + nw + 1
        s2w = 2 * w + nw
        c = self.consts

        def ring(a, b):
            return Mux(a + b >= depth, a + b - depth, a + b)[:aw]

        m.submodules.mem = mem = memory.Memory(
            shape=data.ArrayLayout(signed(w), lanes), depth=depth, init=[])
        wr = mem.write_port()
        rd = mem.read_port()

        row_layout = data.StructLayout({"start": unsigned(aw), "beats": unsigned(bw),
                                        "count": unsigned(cw), "n": unsigned(nw),
                                        "s1": signed(s1w)})
        out_layout = data.StructLayout({"row": row_layout, "recip": unsigned(RECIP_BITS + 2),
                                        "j": unsigned(5)})
        m.submodules.rows = rows = fifo.SyncFIFOBuffered(width=out_layout.size,
                                                         depth=_ROW_CREDITS)

        # Pass 1: input, sums, ring buffer write
        wr_ptr = Signal(aw)
        used = Signal(range(depth + 1))
        row_start = Signal(aw)
        beats = Signal(bw + 1)
        s1 = Signal(signed(s1w))
        s2 = Signal(unsigned(s2w))
        n = Signal(unsigned(nw + 1))
        dropping = Signal()
        credits = Signal(range(_ROW_CREDITS + 1))
        started = Signal()
        popped = Signal()
        m.d.sync += credits.eq(credits + started - popped)
        m.d.comb += self.i.ready.eq((used < depth) & (credits < _ROW_CREDITS))

        beat = self.i.payload
        vals = [Mux(lane < beat.count, beat.data[lane], 0) for lane in range(lanes)]
        def port(k, lane):
            return getattr(self, f"mul{k}")[lane] if self._shared_mul else None

        beat_s1 = Signal(signed(s1w))
        beat_s2 = Signal(unsigned(s2w))
        m.d.comb += [beat_s1.eq(sum(vals)),
                     beat_s2.eq(sum(multiply(m, port(0, lane), v, v)
                                    for lane, v in enumerate(vals)))]
        new_s1, new_s2, new_n = s1 + beat_s1, s2 + beat_s2, n + beat.count

        accept = self.i.valid & self.i.ready
        # Too many beats, or (max_row not a multiple of lanes) too many elements.
        overflow = dropping | (beats == self.max_beats) | (new_n > self._max_row)
        freeing = Signal()
        wrote = Signal()
        dropped = Signal(range(self.max_beats + 1))
        m.d.sync += used.eq(used + wrote - freeing - dropped)
        push = Signal()
        m.d.comb += [wr.addr.eq(wr_ptr), wr.data.eq(beat.data), wr.en.eq(wrote),
                     push.eq(accept & ~overflow & beat.last), started.eq(push)]
        with m.If(self.clear):
            m.d.sync += self.error.eq(0)
        with m.If(accept):
            with m.If(overflow):
                # Too long: forget what was written of the row, drop the rest of it.
                m.d.comb += dropped.eq(beats)
                m.d.sync += [wr_ptr.eq(row_start), self.error.eq(1), dropping.eq(~beat.last),
                             beats.eq(0), s1.eq(0), s2.eq(0), n.eq(0)]
            with m.Else():
                m.d.comb += wrote.eq(1)
                m.d.sync += [wr_ptr.eq(ring(wr_ptr, 1)), beats.eq(beats + 1),
                             s1.eq(new_s1), s2.eq(new_s2), n.eq(new_n)]
                with m.If(beat.last):
                    m.d.sync += [row_start.eq(ring(wr_ptr, 1)), beats.eq(0),
                                 s1.eq(0), s2.eq(0), n.eq(0)]

        # Statistics chain, one row per cycle, no stalls
        st_row = Signal(row_layout)
        st_s2 = Signal(unsigned(s2w))
        st_valid = Signal()
        m.d.sync += [st_valid.eq(push), st_row.start.eq(row_start), st_row.beats.eq(beats + 1),
                     st_row.count.eq(beat.count), st_row.n.eq(new_n), st_row.s1.eq(new_s1),
                     st_s2.eq(new_s2)]
        # The chain has a fixed latency and keeps rows in order, so each row's
        # descriptor waits in a small FIFO rather than in a register per stage;
        # only the valid bit and the 5-bit shift j travel along.
        m.submodules.pending = pending = fifo.SyncFIFO(width=row_layout.size,
                                                       depth=_ROW_CREDITS)
        m.d.comb += [pending.w_data.eq(st_row), pending.w_en.eq(st_valid)]
        chain_valid = Signal(self.stats_latency)
        m.d.sync += chain_valid.eq(Cat(st_valid, chain_valid[:-1]))
        chain_j = [Signal(unsigned(5), name=f"st_j{k}") for k in range(3, self.stats_latency)]
        m.d.sync += [chain_j[k].eq(chain_j[k - 1]) for k in range(1, len(chain_j))]
        ns2 = Signal(unsigned(s2w + nw))
        s1sq = Signal(unsigned(2 * s1w))
        nn = Signal(unsigned(2 * nw))
        var = Signal(signed(s2w + nw + 1))
        epsn = Signal(unsigned(2 * nw + EPS_BITS))
        v = Signal(unsigned(_V_BITS))
        vmax = Signal(unsigned(_V_BITS))
        vn = Signal(unsigned(_V_BITS))
        bits = Signal(range(_V_BITS + 1))
        for bit in range(_V_BITS):
            with m.If(v[bit]):
                m.d.comb += bits.eq(bit + 1)
        j = Signal(unsigned(5))
        m.d.comb += j.eq((_V_BITS - Mux(bits == 0, 1, bits)) >> 1)
        m.d.sync += [
            ns2.eq(st_row.n * st_s2), s1sq.eq(st_row.s1 * st_row.s1), nn.eq(st_row.n * st_row.n),
            var.eq(ns2 - s1sq), epsn.eq(nn * c.eps_q),
            v.eq((var.as_unsigned() << EPS_FRAC) + epsn),
            vmax.eq(Mux(v == 0, 1, v)), chain_j[0].eq(j),
            vn.eq(vmax << (chain_j[0] << 1)),
        ]
        m.submodules.sqrt = sqrt = PipelinedSqrt(_V_BITS)
        m.submodules.divider = divider = PipelinedDivider(
            31 + RECIP_BITS + 1, den_width=31, quotient_width=RECIP_BITS + 2)
        m.d.comb += [sqrt.en.eq(1), sqrt.value.eq(vn),
                     divider.en.eq(1), divider.num.eq(1 << (31 + RECIP_BITS)),
                     divider.den.eq(sqrt.root)]
        assert 5 + sqrt.latency + divider.latency == self.stats_latency
        out_desc = Signal(out_layout)
        m.d.comb += [out_desc.row.eq(pending.r_data), out_desc.j.eq(chain_j[-1]),
                     out_desc.recip.eq(divider.quotient), pending.r_en.eq(chain_valid[-1]),
                     rows.w_data.eq(out_desc), rows.w_en.eq(chain_valid[-1])]

        # Pass 2: normalise, gamma/beta, out. The read data is registered before the
        # multiplier: a block RAM's output is slow (5.8 ns clock-to-out on an ECP5
        # DP16KD without its output register).
        stages = 7
        valid = Signal(stages)
        advance = Signal()
        m.d.comb += [advance.eq(~self.o.valid | self.o.ready), self.o.valid.eq(valid[-1])]
        o_active = Signal()
        o_row = Signal(out_layout)
        o_idx = Signal(bw)
        o_issue = o_active & advance & self.gb.valid
        o_issue_last = o_issue & (o_idx == o_row.row.beats - 1)
        o_load = advance & (~o_active | o_issue_last) & rows.r_rdy
        m.d.comb += [rows.r_en.eq(o_load), popped.eq(o_load), self.gb.ready.eq(o_issue)]
        m.d.comb += [rd.addr.eq(ring(o_row.row.start, o_idx)), rd.en.eq(advance)]
        with m.If(o_issue):
            m.d.sync += o_idx.eq(o_idx + 1)
        with m.If(o_issue_last):
            m.d.sync += o_active.eq(0)
        with m.If(o_load):
            m.d.sync += [o_active.eq(1), o_row.eq(rows.r_data), o_idx.eq(0)]
        m.d.sync += freeing.eq(o_issue)

        otag = data.StructLayout({"last": 1, "row": out_layout, "gb": GammaBetaLayout(lanes)})
        tags = [Signal(otag, name=f"o_tag{k}") for k in range(stages)]
        with m.If(advance):
            m.d.sync += valid.eq(Cat(o_issue, valid[:-1]))
            m.d.sync += [tags[0].last.eq(o_issue_last), tags[0].row.eq(o_row),
                         tags[0].gb.eq(self.gb.payload)]
            m.d.sync += [tags[k].eq(tags[k - 1]) for k in range(1, stages)]
        # z's shift, registered beside the stage it is used in (tags[3]).
        zshift = Signal(unsigned(5))
        with m.If(advance):
            m.d.sync += zshift.eq(Mux(tags[2].row.j > ZSHIFT, 0, ZSHIFT - tags[2].row.j))
        dw, zw = self._dz_widths   # see there
        for lane in range(lanes):
            x = Signal(signed(w), name=f"x{lane}")
            d = Signal(signed(dw), name=f"d{lane}")
            dr = Signal(signed(dw + RECIP_BITS + 3), name=f"dr{lane}")
            z = Signal(signed(zw), name=f"z{lane}")
            q = Signal(signed(zw + GAMMA_BITS + 2), name=f"q{lane}")
            y = Signal(signed(8), name=f"y{lane}")
            t1, t4, t5 = tags[1], tags[4], tags[5]
            recip = tags[2].row.recip
            # Outside If(advance): see Gelu.
            prod_d = multiply(m, port(1, lane), t1.row.row.n, x)
            prod_dr = multiply(m, port(2, lane), d, recip[:RECIP_BITS + 1])
            # z never saturates (see zw), so the shifter produces only the window.
            rs_z = round_saturate(m, dr, zshift, zw, name=f"rs_z{lane}")
            prod_q = multiply(m, port(3, lane), z, t4.gb.gamma[lane])
            rs_y = round_saturate(m, q, c.shift, 8, name=f"rs_y{lane}")
            with m.If(advance):
                m.d.sync += [
                    x.eq(rd.data[lane]),
                    d.eq(prod_d - t1.row.row.s1),
                    # 2**RECIP_BITS < R <= 2**(RECIP_BITS + 1): the top bit is set only
                    # for R = 2**(RECIP_BITS + 1), so the multiplier takes the low bits.
                    dr.eq(Mux(recip[RECIP_BITS + 1], d << (RECIP_BITS + 1), prod_dr)),
                    z.eq(rs_z),
                    q.eq(prod_q + t4.gb.beta[lane]),
                    y.eq(Mux(t5.last & (lane >= t5.row.row.count), 0, rs_y)),
                ]
            m.d.comb += self.o.payload.data[lane].eq(y)
        t_last = tags[-1]
        m.d.comb += [self.o.payload.last.eq(t_last.last),
                     self.o.payload.count.eq(Mux(t_last.last, t_last.row.row.count, lanes))]
        return m
