"""Pipelined dyadic requantizer, INT32 lanes -> INT8 lanes."""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["RequantLayout", "RequantResultLayout", "Requantizer"]


class RequantLayout(data.StructLayout):
    """Payload of a requantizer input beat: ``lanes`` accumulators with their constants.

    Fields
    ------
    acc : ArrayLayout(signed(acc_width), lanes)
    mult : ArrayLayout(unsigned(mult_width), lanes)
        Per-lane multiplier (per-output-channel scaling; repeat one value for
        per-tensor scaling).
    shift : ArrayLayout(unsigned(6), lanes)
        Per-lane right shift, 0 to 63.
    tag : unsigned(tag_width)
        Carried unchanged to the output beat (only when ``tag_width`` > 0).
    """

    def __init__(self, lanes: int, *, acc_width: int = 32, mult_width: int = 16,
                 tag_width: int = 0):
        fields = {
            "acc": data.ArrayLayout(signed(acc_width), lanes),
            "mult": data.ArrayLayout(unsigned(mult_width), lanes),
            "shift": data.ArrayLayout(unsigned(6), lanes),
        }
        if tag_width:
            fields["tag"] = tag_width
        super().__init__(fields)


class RequantResultLayout(data.StructLayout):
    """Payload of a requantizer output beat when it carries a tag.

    Fields
    ------
    data : ArrayLayout(signed(out_width), lanes)
    tag : unsigned(tag_width)
    """

    def __init__(self, lanes: int, *, out_width: int = 8, tag_width: int = 1):
        super().__init__({"data": data.ArrayLayout(signed(out_width), lanes),
                          "tag": tag_width})


class Requantizer(wiring.Component):
    """Requantize ``lanes`` accumulators per cycle exactly as
    :func:`intformer.sw.golden.requantize` specifies.

    ``y = saturate(round_half_away(acc * mult / 2**shift))``, computed in three
    register stages: multiply; shift (keeping one fraction bit); round and
    saturate.
    One beat per cycle in steady state. The pipeline stalls as a whole when
    the output is not ready, so ``i.ready`` follows ``o.ready`` whenever the
    pipeline is full.

    Parameters
    ----------
    lanes : int
        Elements per beat.
    acc_width : int
        Width of the signed input accumulators.
    mult_width : int
        Width of the unsigned multipliers.
    out_width : int
        Width of the signed outputs (saturated).
    tag_width : int
        Width of a tag carried from each input beat to its output beat, 0 to 128.

    Members
    -------
    i : In(stream.Signature(RequantLayout))
        Accumulators with their per-lane constants.
    o : Out(stream.Signature(ArrayLayout(signed(out_width), lanes)))
        Requantized values; with a tag, ``RequantResultLayout`` (``data``, ``tag``).

    Raises
    ------
    TypeError
        If a parameter is not an integer.
    ValueError
        If a parameter is out of range.
    """

    def __init__(self, lanes: int, *, acc_width: int = 32, mult_width: int = 16,
                 out_width: int = 8, tag_width: int = 0):
        for name, value, lo, hi in (("lanes", lanes, 1, 256), ("acc_width", acc_width, 2, 64),
                                    ("mult_width", mult_width, 1, 32),
                                    ("out_width", out_width, 2, 32),
                                    ("tag_width", tag_width, 0, 128)):
            if isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"Requantizer {name} must be an integer, not {value!r}")
            if not lo <= value <= hi:
                raise ValueError(f"Requantizer {name} must be between {lo} and {hi}, "
                                 f"not {value}")
        self._lanes = lanes
        self._acc_width = acc_width
        self._mult_width = mult_width
        self._out_width = out_width
        self._tag_width = tag_width
        if tag_width:
            result = RequantResultLayout(lanes, out_width=out_width, tag_width=tag_width)
        else:
            result = data.ArrayLayout(signed(out_width), lanes)
        super().__init__({
            "i": In(stream.Signature(RequantLayout(lanes, acc_width=acc_width,
                                                   mult_width=mult_width,
                                                   tag_width=tag_width))),
            "o": Out(stream.Signature(result)),
        })

    @property
    def lanes(self) -> int:
        return self._lanes

    @property
    def latency(self) -> int:
        """Cycles from an accepted input beat to its output beat, without stalls."""
        return 3

    @property
    def product_width(self) -> int:
        return self._acc_width + self._mult_width + 1

    @staticmethod
    def _shift_right(product, shift, width: int):
        """``(2 * product) >> shift`` (arithmetic) in ``width`` bits, whether any bit
        shifted out is 1, and whether the result does not fit ``width`` signed bits.

        A logarithmic shifter, the largest step first, keeping only the bits a later
        window can still reach: a full barrel shifter cut down to its low bits costs
        about twice as many LUTs. The bits a step drops at the top must all equal the
        sign (else the result overflows), the bits it shifts out at the bottom make
        the sticky bit.
        """
        sign = product[-1]
        cur = [Const(0, 1)] + [product[j] for j in range(len(product))]
        sticky, high = [], []
        for k in reversed(range(len(shift))):
            step = 1 << k
            keep = width - 1 + step
            ext = cur + [sign] * max(0, keep + step - len(cur))
            sticky.append(shift[k] & Cat(ext[:step]).any())
            if len(cur) > keep:
                high.append(~shift[k] & Cat(b ^ sign for b in cur[keep:]).any())
            cur = [Mux(shift[k], ext[j + step], ext[j]) for j in range(keep)]
        high.append(cur[width - 1] ^ sign)
        return Cat(cur[:width]), Cat(sticky).any(), Cat(high).any()

    def elaborate(self, platform) -> Module:
        m = Module()
        lanes, pw, ow = self._lanes, self.product_width, self._out_width

        valid = Signal(self.latency)
        advance = Signal()
        m.d.comb += [
            advance.eq(~self.o.valid | self.o.ready),
            self.i.ready.eq(advance),
            self.o.valid.eq(valid[-1]),
        ]
        with m.If(advance):
            m.d.sync += valid.eq(Cat(self.i.valid, valid[:-1]))
        out = self.o.payload.data if self._tag_width else self.o.payload
        if self._tag_width:
            prev = self.i.payload.tag
            for stage in range(self.latency):
                tag = Signal(self._tag_width, name=f"tag{stage}")
                with m.If(advance):
                    m.d.sync += tag.eq(prev)
                prev = tag
            m.d.comb += self.o.payload.tag.eq(prev)

        lo, hi = -(1 << (ow - 1)), (1 << (ow - 1)) - 1
        for lane in range(lanes):
            product = Signal(signed(pw), name=f"product{lane}")
            shift = Signal(6, name=f"shift{lane}")
            # t = floor((2p - [p < 0]) / 2**s) is the result in halves: (t + 1) >> 1 is
            # floor((p + 2**(s-1) - [p < 0]) / 2**s), the golden rule (ties away from
            # zero; p itself for s = 0). t = u - c with u = floor(2p / 2**s) and c = 1
            # for p < 0 when the s low bits of 2p are 0, so no wide subtraction is
            # needed. Only u's low out_width + 2 bits (the window) matter, and whether
            # u fits them (otherwise the output saturates by p's sign).
            negative = product[-1]
            window_v, low_set, overflow = self._shift_right(product, shift, ow + 2)
            window = Signal(signed(ow + 2), name=f"window{lane}")
            carry = Signal(name=f"carry{lane}")
            big = Signal(name=f"big{lane}")
            sign = Signal(name=f"negative{lane}")
            rounded = Signal(signed(ow + 2), name=f"rounded{lane}")
            m.d.comb += rounded.eq((window + carry) >> 1)
            fits = Signal(name=f"fits{lane}")
            m.d.comb += fits.eq(rounded[ow - 1:].all() | ~rounded[ow - 1:].any())
            with m.If(advance):
                m.d.sync += [
                    product.eq(self.i.payload.acc[lane] *
                               self.i.payload.mult[lane].as_unsigned()),
                    shift.eq(self.i.payload.shift[lane]),
                    window.eq(window_v),
                    carry.eq(~negative | low_set),
                    big.eq(overflow),
                    sign.eq(negative),
                ]
                with m.If(big | ~fits):
                    m.d.sync += out[lane].eq(Mux(sign, lo, hi))
                with m.Else():
                    m.d.sync += out[lane].eq(rounded[:ow])
        return m
