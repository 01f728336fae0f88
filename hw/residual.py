"""Pipelined residual add of two INT8 rows with different scales, bit-exact with
:func:`intformer.sw.golden.residual_add`."""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

from .vecmul import mul_members, multiply
from .vector import VectorLayout, check_int, round_saturate

__all__ = ["ResidualConsts", "ResidualAdd"]


class ResidualConsts(data.StructLayout):
    """Run-time constants of :class:`ResidualAdd`: the fields of
    :class:`intformer.sw.golden.residual.ResidualParams`.

    Fields
    ------
    mult_a : unsigned(16)
    mult_b : unsigned(16)
    shift : unsigned(6)
    """

    def __init__(self):
        super().__init__({"mult_a": unsigned(16), "mult_b": unsigned(16),
                          "shift": unsigned(6)})


class ResidualAdd(wiring.Component):
    """``saturate(round_shift(a * mult_a + b * mult_b, shift))`` on ``lanes`` pairs
    per cycle.

    Four register stages (the two products; their sum; the rounding shifter; the
    rounding and saturation), one beat per cycle; the pipeline stalls as a whole when the
    output is not ready. The operands travel in one beat: ``data`` is ``a``,
    ``b`` the other addend; ``count`` and ``last`` pass through, lanes at or
    above ``count`` give 0.

    Parameters
    ----------
    lanes : int
        Elements per beat (1 to 64).
    shared_mul : bool
        Use multipliers outside the unit (the ``mul<k>`` ports, see
        :mod:`intformer.hw.vecmul`) instead of making its own.

    Members
    -------
    i : In(stream.Signature(VectorLayout(8, lanes, extra={"b": ArrayLayout(signed(8), lanes)})))
        Both addends.
    o : Out(stream.Signature(VectorLayout(8, lanes)))
        INT8 sums.
    consts : In(ResidualConsts())
        From :func:`intformer.sw.golden.residual_params`; hold steady while
        beats are in flight.
    mul0, mul1 : Out(MulSignature).array(lanes)
        With ``shared_mul``: ``a * mult_a`` and ``b * mult_b``.

    Raises
    ------
    TypeError
        If ``lanes`` is not an integer.
    ValueError
        If ``lanes`` is out of range.
    """

    def __init__(self, lanes: int, *, shared_mul: bool = False):
        check_int("Residual add", "lanes", lanes, 1, 64)
        self._lanes = lanes
        self._shared_mul = bool(shared_mul)
        layout = VectorLayout(8, lanes, extra={"b": data.ArrayLayout(signed(8), lanes)})
        super().__init__({
            "i": In(stream.Signature(layout)),
            "o": Out(stream.Signature(VectorLayout(8, lanes))),
            "consts": In(ResidualConsts()),
            **(mul_members(self.mul_widths, lanes) if shared_mul else {}),
        })

    @property
    def mul_widths(self) -> list[tuple[int, int]]:
        """Signed operand widths of the per-lane products ``a * mult_a`` and
        ``b * mult_b``."""
        return [(8, 17), (8, 17)]

    @classmethod
    def from_config(cls, config) -> ResidualAdd:
        """The unit for a :class:`~intformer.hw.config.Config`: ``vector_lanes``
        lanes."""
        return cls(config.vector_lanes)

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, without stalls."""
        return 4

    @property
    def throughput(self) -> int:
        """Elements per cycle in steady state."""
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
        count = [Signal.like(self.i.payload.count, name=f"count{k}") for k in range(stages)]
        last = [Signal(name=f"last{k}") for k in range(stages)]
        with m.If(advance):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
            m.d.sync += [count[0].eq(self.i.payload.count), last[0].eq(self.i.payload.last)]
            m.d.sync += [count[k].eq(count[k - 1]) for k in range(1, stages)]
            m.d.sync += [last[k].eq(last[k - 1]) for k in range(1, stages)]
        m.d.comb += [self.o.payload.count.eq(count[-1]), self.o.payload.last.eq(last[-1])]

        for lane in range(self._lanes):
            pa = Signal(signed(25), name=f"pa{lane}")
            pb = Signal(signed(25), name=f"pb{lane}")
            total = Signal(signed(26), name=f"sum{lane}")
            y = Signal(signed(8), name=f"y{lane}")
            ports = [getattr(self, f"mul{k}")[lane] if self._shared_mul else None
                     for k in range(2)]
            # Outside If(advance): see Gelu.
            prod_a = multiply(m, ports[0], self.i.payload.data[lane], c.mult_a)
            prod_b = multiply(m, ports[1], self.i.payload.b[lane], c.mult_b)
            rs_y = round_saturate(m, total, c.shift, 8, name=f"rs_y{lane}", en=advance)
            with m.If(advance):
                m.d.sync += [
                    pa.eq(prod_a),
                    pb.eq(prod_b),
                    total.eq(pa + pb),
                    y.eq(Mux(lane < count[2], rs_y, 0)),
                ]
            m.d.comb += self.o.payload.data[lane].eq(y)
        return m
