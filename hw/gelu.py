"""Fully pipelined integer GELU (I-BERT i-erf), bit-exact with
:func:`intformer.sw.golden.gelu`."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from ..sw.golden.gelu import IN_BITS, U_BITS
from .vecmul import mul_members, multiply
from .vector import VectorLayout, check_int, round_saturate

__all__ = ["GeluConsts", "Gelu"]

#: Bits of the clipping point that gelu_params documents (2562 fits 12).
CLIP_BITS = 12
#: Bits of poly_c that gelu_params documents.
POLY_BITS = 23


class GeluConsts(data.StructLayout):
    """Run-time constants of :class:`Gelu`: the fields of
    :class:`intformer.sw.golden.gelu.GeluParams`, with these widths.

    Fields
    ------
    in_mult : unsigned(16)
    in_shift : unsigned(6)
    clip : unsigned(13)
    poly_c : unsigned(24)
    out_mult : unsigned(16)
    out_shift : unsigned(6)
    """

    def __init__(self):
        super().__init__({
            "in_mult": unsigned(16), "in_shift": unsigned(6), "clip": unsigned(13),
            "poly_c": unsigned(24), "out_mult": unsigned(16), "out_shift": unsigned(6),
        })


class Gelu(wiring.Component):
    """Integer GELU of ``lanes`` elements per cycle, requantized to INT8.

    Computes exactly :func:`intformer.sw.golden.gelu` (see its numeric contract)
    in :attr:`latency` register stages: input multiply; rounding shift and
    saturation to the 18-bit fixed point ``u`` (two stages); clipping; square;
    i-erf polynomial; ``u * h``; output multiply; rounding shift and saturation
    (two stages).
    One beat per cycle; the pipeline stalls as a whole when the output is not
    ready, so ``i.ready`` follows ``o.ready`` once the pipeline is full.

    ``count`` and ``last`` pass through unchanged (see :mod:`intformer.hw.vector`);
    lanes at or above ``count`` give 0.

    Parameters
    ----------
    lanes : int
        Elements per beat (1 to 64).
    in_width : int
        Width of the signed inputs (2 to 32; 32 for INT32 accumulators).
    shared_mul : bool
        Use multipliers outside the unit (the ``mul<k>`` ports, see
        :mod:`intformer.hw.vecmul`) instead of making its own.

    Members
    -------
    i : In(stream.Signature(VectorLayout(in_width, lanes)))
        Inputs.
    o : Out(stream.Signature(VectorLayout(8, lanes)))
        INT8 outputs.
    consts : In(GeluConsts())
        Run-time constants from :func:`intformer.sw.golden.gelu_params`; hold
        them steady while beats are in flight.
    mul0 .. mul3 : Out(MulSignature).array(lanes)
        With ``shared_mul``: the products, in pipeline order (:attr:`mul_widths`).

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, lanes: int, *, in_width: int = 32, shared_mul: bool = False):
        check_int("GELU", "lanes", lanes, 1, 64)
        check_int("GELU", "in_width", in_width, 2, IN_BITS)
        self._lanes = lanes
        self._in_width = in_width
        self._shared_mul = bool(shared_mul)
        super().__init__({
            "i": In(stream.Signature(VectorLayout(in_width, lanes))),
            "o": Out(stream.Signature(VectorLayout(8, lanes))),
            "consts": In(GeluConsts()),
            **(mul_members(self.mul_widths, lanes) if shared_mul else {}),
        })

    @classmethod
    def from_config(cls, config) -> Gelu:
        """The unit for a :class:`~intformer.hw.config.Config`: ``vector_lanes``
        lanes, INT32 (``acc_width``) inputs."""
        return cls(config.vector_lanes, in_width=config.acc_width)

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def in_width(self) -> int:
        return self._in_width

    @property
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, without stalls."""
        return 10

    @property
    def mul_widths(self) -> list[tuple[int, int]]:
        """Signed operand widths of the per-lane products, in pipeline order: input
        times ``in_mult``, ``d * d``, ``u * h``, times ``out_mult``."""
        ub = U_BITS
        return [(self._in_width, 17), (CLIP_BITS + 1, CLIP_BITS + 1),
                (ub, POLY_BITS + 2), (ub + POLY_BITS + 1, 17)]

    @property
    def throughput(self) -> int:
        """Elements per cycle in steady state (one beat per cycle)."""
        return self._lanes

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self.consts
        stages = self.latency

        valid = Signal(stages)
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            self.o.valid.eq(valid[-1]),
        ]
        # The markers travel beside the data, one register per stage.
        count = [Signal.like(self.i.payload.count, name=f"count{k}") for k in range(stages)]
        last = [Signal(name=f"last{k}") for k in range(stages)]
        with m.If(advance):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
            m.d.sync += [count[0].eq(self.i.payload.count), last[0].eq(self.i.payload.last)]
            m.d.sync += [count[k].eq(count[k - 1]) for k in range(1, stages)]
            m.d.sync += [last[k].eq(last[k - 1]) for k in range(1, stages)]
        m.d.comb += [self.o.payload.count.eq(count[-1]), self.o.payload.last.eq(last[-1])]

        ub = U_BITS
        # Widths from the golden model's documented ranges (gelu_params): clip is
        # 12 bits, so |d| <= 4095 and d*d < 2**24; poly_c is 23 bits, so h < 2**24
        # and |u*h| < 2**41. Narrower operands than the consts fields keep every
        # product within the fewest 18x18 DSP tiles.
        clip = c.clip[:CLIP_BITS]
        poly2 = Cat(Const(0, 1), c.poly_c[:POLY_BITS])
        for lane in range(self._lanes):
            def reg(shape, name, lane=lane):
                return Signal(shape, name=f"{name}{lane}")
            p1 = reg(signed(self._in_width + 17), "p1")
            u1 = reg(signed(ub), "u1")
            u2, d2 = reg(signed(ub), "u2"), reg(unsigned(CLIP_BITS), "d2")
            u3, dsq3 = reg(signed(ub), "u3"), reg(unsigned(2 * CLIP_BITS), "dsq3")
            u4, h4 = reg(signed(ub), "u4"), reg(unsigned(POLY_BITS + 1), "h4")
            p5 = reg(signed(ub + POLY_BITS + 1), "p5")
            p6 = reg(signed(ub + POLY_BITS + 1 + 16), "p6")
            y = reg(signed(8), "y")
            mag = Mux(u1 < 0, -u1, u1)
            ports = [getattr(self, f"mul{k}")[lane] if self._shared_mul else None
                     for k in range(4)]
            # The combinational parts are made outside ``If(advance)``: signals driven
            # under a condition are emitted as ``always @*`` blocks, which Icarus does
            # not run at time 0, so one whose inputs never change would stay X.
            prod1 = multiply(m, ports[0], self.i.payload.data[lane], c.in_mult)
            rs_u = round_saturate(m, p1, c.in_shift, ub, name=f"rs_u{lane}", en=advance)
            prod3 = multiply(m, ports[1], d2, d2)
            prod5 = multiply(m, ports[2], u4, h4)
            prod6 = multiply(m, ports[3], p5, c.out_mult)
            rs_y = round_saturate(m, p6, c.out_shift, 8, name=f"rs_y{lane}", en=advance)
            with m.If(advance):
                m.d.sync += [
                    p1.eq(prod1),
                    u1.eq(rs_u),
                    u2.eq(u1),
                    # -d = clip - min(|u|, clip), unsigned: the square is the same.
                    d2.eq(Mux(mag < clip, clip - mag, 0)),
                    u3.eq(u2),
                    dsq3.eq(prod3),
                    u4.eq(u3),
                    h4.eq(Mux(u3 < 0, dsq3, poly2 - dsq3)),
                    p5.eq(prod5),
                    p6.eq(prod6),
                    y.eq(Mux(lane < count[-2], rs_y, 0)),
                ]
            m.d.comb += self.o.payload.data[lane].eq(y)
        return m
