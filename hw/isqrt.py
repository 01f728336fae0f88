"""Pipelined integer square root: exact floor, one root bit per stage."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .vector import check_int

__all__ = ["PipelinedSqrt"]


class PipelinedSqrt(wiring.Component):
    """``root = isqrt(value)`` (``root**2 <= value < (root + 1)**2``), one per cycle.

    The digit-by-digit method of :func:`intformer.sw.golden.intmath.isqrt`,
    unrolled into :attr:`latency` register stages of one root bit each (two
    operand bits per stage); the stages advance when ``en`` is high.

    Parameters
    ----------
    width : int
        Width of the operand (1 to 64).

    Members
    -------
    en : In(1)
        Advance every stage by one.
    value : In(unsigned(width))
        The operand, taken when ``en`` is high.
    root : Out(unsigned(ceil(width / 2)))
        The root of the operand taken ``latency`` advances earlier.

    Raises
    ------
    TypeError
        If ``width`` is not an integer.
    ValueError
        If ``width`` is out of range.
    """

    def __init__(self, width: int):
        check_int("Square root", "width", width, 1, 64)
        self._width = width
        super().__init__({
            "en": In(1),
            "value": In(unsigned(width)),
            "root": Out(unsigned((width + 1) // 2)),
        })

    @property
    def latency(self) -> int:
        """Advances from taking the operand to its root: one per root bit."""
        return (self._width + 1) // 2

    def elaborate(self, platform) -> Module:
        m = Module()
        w, steps = self._width, self.latency
        rem = Signal(unsigned(w), name="rem_in")
        root = Signal(unsigned(steps), name="root_in")
        m.d.comb += rem.eq(self.value)
        for k, i in enumerate(range(steps - 1, -1, -1)):
            # Setting root bit i grows the square by (4*root + 1) * 4**i, root
            # holding the bits above i.
            trial = Signal(unsigned(w + 2), name=f"trial{k}")
            m.d.comb += trial.eq(((root << 2) | 1) << (2 * i))
            take = rem >= trial
            n_rem = Signal(unsigned(w), name=f"rem{k}")
            n_root = Signal(unsigned(steps), name=f"root{k}")
            with m.If(self.en):
                m.d.sync += [n_rem.eq(Mux(take, rem - trial, rem)),
                             n_root.eq((root << 1) | take)]
            rem, root = n_rem, n_root
        m.d.comb += self.root.eq(root)
        return m
