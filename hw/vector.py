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
                   name: str = "rs") -> Signal:
    """``saturate(round_shift(value, shift), bits)`` with a narrow shifter: a
    signed ``bits``-bit signal driven combinationally in ``m``.

    ``t = (2 value - [value < 0]) >> shift`` is the result in halves: ``(t + 1) >> 1``
    is the golden rounding (ties away from zero, ``value`` itself for a zero
    shift). Only ``t``'s low ``bits + 2`` bits matter when ``t`` fits them; when it
    does not, the output saturates by ``t``'s sign. So the barrel shifter produces
    ``bits + 2`` bits instead of the whole product, and a separate test (bit ``j``
    of ``|t|`` shows at or above the window when ``shift <= j - bits - 1``) finds
    overflow. The comparisons of ``shift`` with constants are the same cells in
    every lane, so lanes that share a shift share them.
    """
    value = value.as_signed()
    width = len(value) + 2
    # Named signals: an expression used several times would be emitted again
    # for every use.
    x = Signal(signed(width), name=f"{name}_x")
    mag = Signal(width, name=f"{name}_mag")
    overflow = Signal(name=f"{name}_ovf")
    window = Signal(signed(bits + 2), name=f"{name}_win")
    out = Signal(signed(bits), name=name)
    lo, hi = -(1 << (bits - 1)), (1 << (bits - 1)) - 1
    m.d.comb += [
        x.eq((value << 1) - value[-1]),
        mag.eq(x ^ x[-1].replicate(width)),
        overflow.eq(Cat(mag[j] & (shift <= j - bits - 1) for j in range(bits + 1, width)).any()),
        window.eq((x >> shift)[:bits + 2]),
        out.eq(Mux(overflow, Mux(x[-1], lo, hi), saturate((window + 1) >> 1, bits))),
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
