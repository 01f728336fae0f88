"""What the vector units (GELU, residual add, Softmax, LayerNorm) share: the beat
layout of their streams and the integer helpers that mirror
:mod:`intformer.sw.golden.requant`.

Every vector stream carries ``lanes`` elements per beat plus two markers:

``count``
    Valid elements in this beat, 1 to ``lanes``, in the low lanes; the others
    are ignored on input and 0 on output. Only the last beat of a row may be
    partial.
``last``
    This beat ends a row. Elementwise units (GELU, residual) pass both markers
    through; the row units (Softmax, LayerNorm) use them to delimit rows.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data

__all__ = ["VectorLayout", "round_shift", "saturate", "round_saturate", "check_int",
           "count_width"]


def count_width(lanes: int) -> int:
    """Width of a ``count`` field that holds 0 to ``lanes``."""
    return lanes.bit_length()


class VectorLayout(data.StructLayout):
    """One beat of a vector stream.

    Fields
    ------
    data : ArrayLayout(signed(width), lanes)
    count : unsigned(count_width(lanes))
        Valid elements in this beat (1 to ``lanes``).
    last : unsigned(1)
        The beat ends a row.
    extra : dict
        More fields (for example a second operand), added after these.
    """

    def __init__(self, width: int, lanes: int, *, extra: dict | None = None):
        super().__init__({
            "data": data.ArrayLayout(signed(width), lanes),
            "count": unsigned(count_width(lanes)),
            "last": unsigned(1),
            **(extra or {}),
        })


def round_shift(value: Value, shift: Value) -> Value:
    """``round_shift(value, shift)`` of the golden model: divide by ``2**shift``,
    rounding to nearest with ties away from zero (a combinational expression).

    ``value`` is signed; ``shift`` unsigned (any width). With ``v = value - (value
    < 0)``, the golden ``floor((v + 2**(s-1)) / 2**s)`` equals
    ``((v >> (s-1)) + 1) >> 1`` for ``s > 0``: one barrel shifter, no rounding
    constant to shift into place. Shifts beyond the width give 0, as they must.
    """
    value = value.as_signed()
    v = value - value[-1]
    halved = ((v >> (shift - 1)[:len(shift)]) + 1) >> 1
    return Mux(shift == 0, value, halved)


def saturate(value: Value, bits: int) -> Value:
    """Clamp a signed value to the signed ``bits``-bit range."""
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    return Mux(value > hi, Const(hi, signed(bits)),
               Mux(value < lo, Const(lo, signed(bits)), value[:bits].as_signed()))


def round_saturate(m: Module, value: Value, shift: Value, bits: int, *,
                   name: str = "rs", en: Value | None = None) -> Signal:
    """``saturate(round_shift(value, shift), bits)`` with a narrow shifter and no
    carry chain as wide as ``value``: a signed ``bits``-bit signal driven
    combinationally in ``m``.

    ``t = (2 value - [value < 0]) >> shift`` is the result in halves: ``(t + 1) >> 1``
    is the golden rounding (ties away from zero, ``value`` itself for a zero
    shift). ``t = ((2 value) >> shift) - c`` with ``c = 1`` for a negative value
    whose ``shift`` low bits of ``2 value`` are 0, so ``(t + 1) >> 1`` is the low
    ``bits + 2`` bits of ``(2 value) >> shift`` plus the carry ``1 - c``, then halved:
    one narrow adder. The output saturates without looking at that window when
    ``m = value ^ sign`` (``|value|`` or ``|value| - 1``, no subtraction) has
    ``2 m >> shift >= 2**bits``: then ``t >= 2**bits`` or ``t <= -2**bits - 1``, both
    beyond the output range (or on ``-2**(bits - 1)``); otherwise ``|t| <= 2**bits +
    1`` fits the window. The comparisons of ``shift`` with constants are the same
    cells in every lane, so lanes that share a shift share them.

    With ``en``, the result comes one cycle later, in two stages: the shifter and
    the overflow and carry tests load registers in ``m.d.sync`` when ``en`` is high,
    and the rounding adder and the saturation read those registers.
    """
    value = value.as_signed()
    vw = len(value)
    # Named signals: an expression used several times would be emitted again
    # for every use.
    doubled = Signal(signed(vw + 1), name=f"{name}_x")
    mag = Signal(vw, name=f"{name}_mag")
    low_zero = Signal(name=f"{name}_lz")
    overflow = Signal(name=f"{name}_ovf")
    window = Signal(signed(bits + 2), name=f"{name}_win")
    rounded = Signal(signed(bits + 2), name=f"{name}_rnd")
    out = Signal(signed(bits), name=name)
    sign = value[-1]
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    carry = Signal(name=f"{name}_c")
    shape = Value.cast(shift).shape()
    top = (1 << (shape.width - shape.signed)) - 1
    bottom = -(1 << (shape.width - 1)) if shape.signed else 0

    # Comparisons of the shift with constants it cannot reach are constants (no cells,
    # and no constant comparison for lint to flag).
    def above(j):
        return shift > j if j < top else Const(0, 1)

    def at_most(j):
        return Const(0, 1) if j < bottom else shift <= j if j < top else Const(1, 1)

    m.d.comb += [
        doubled.eq(Cat(Const(0, 1), value)),
        mag.eq(value ^ sign.replicate(vw)),
        # Bit j of 2 value is shifted out when shift > j.
        low_zero.eq(~Cat(doubled[j] & above(j) for j in range(1, vw + 1)).any()),
        carry.eq(~sign | ~low_zero),
    ]
    stage = [
        # Bit j of m is bit j + 1 of 2 m, at or above 2**bits after the shift
        # when shift <= j + 1 - bits.
        overflow.eq(Cat(mag[j] & at_most(j + 1 - bits)
                        for j in range(max(0, bits - 1), vw)).any()),
        window.eq((doubled >> shift)[:bits + 2]),
    ]
    if en is None:
        m.d.comb += stage
        negative, round_up = sign, carry
    else:
        negative = Signal(name=f"{name}_neg")
        round_up = Signal(name=f"{name}_up")
        with m.If(en):
            m.d.sync += [*stage, negative.eq(sign), round_up.eq(carry)]
    m.d.comb += [
        rounded.eq((window + round_up) >> 1),
        out.eq(Mux(overflow, Mux(negative, lo, hi), saturate(rounded, bits))),
    ]
    return out


def check_int(owner: str, name: str, value, lo: int, hi: int) -> int:
    """Check a constructor parameter: ``TypeError`` if not an integer, ``ValueError``
    if outside ``[lo, hi]``; messages name the unit, the parameter and the value."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} {name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{owner} {name} must be between {lo} and {hi}, not {value}")
    return value
