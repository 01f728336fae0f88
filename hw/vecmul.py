"""Multipliers the vector units can share: the executor runs one command at a time,
so GELU, Softmax, LayerNorm and the residual add never multiply at the same moment.

A unit built with ``shared_mul=True`` makes none of its own per-lane multipliers:
for each of its products ``k`` (:attr:`mul_widths`) it has a port ``mul<k>`` per lane
(:class:`MulSignature`) that drives the two signed operands and reads back their
product in the same cycle. :class:`~intformer.hw.vecexec.VectorExecutor` makes one
multiplier per slot ``k`` and lane, as wide as the widest unit's product ``k``, and
feeds it the operands of the unit whose command runs (the units order their products
so that slot ``k`` gets similar widths: on 1 lane of ``ulx3s`` the slots are 34x17,
16x17, 18x25 and 42x17 signed, 8 MULT18X18D, GELU's own count, where the four units
had 18). Products are combinational, so
every unit registers its product at the same pipeline stage as with its own
multipliers: timing and results are unchanged.
"""

from __future__ import annotations

from amaranth.hdl import Module, Value, signed
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

__all__ = ["MulSignature", "mul_members", "multiply"]


class MulSignature(wiring.Signature):
    """One shared multiplier, seen from the unit that uses it.

    Members
    -------
    a : Out(signed(a_width))
    b : Out(signed(b_width))
    p : In(signed(a_width + b_width))
        ``a * b``, in the same cycle.
    """

    def __init__(self, a_width: int, b_width: int):
        self.a_width, self.b_width = a_width, b_width
        super().__init__({"a": Out(signed(a_width)), "b": Out(signed(b_width)),
                          "p": In(signed(a_width + b_width))})


def mul_members(widths: list[tuple[int, int]], lanes: int) -> dict:
    """Signature members ``mul<k>``, one :class:`MulSignature` per lane for each
    product ``k`` of signed operand widths ``widths[k]``."""
    return {f"mul{k}": Out(MulSignature(a, b)).array(lanes) for k, (a, b) in enumerate(widths)}


def multiply(m: Module, port, a: Value, b: Value) -> Value:
    """``a * b``: a local product when ``port`` is None, else through the shared
    multiplier ``port`` (``a`` and ``b`` must fit its signed operands; unsigned
    operands need one more bit)."""
    if port is None:
        return a * b
    m.d.comb += [port.a.eq(a), port.b.eq(b)]
    return port.p
