"""Pipelined restoring integer divider: exact floor, one quotient bit per stage."""

from __future__ import annotations

from amaranth.hdl import Module, Mux, Signal, unsigned
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from .vector import check_int

__all__ = ["PipelinedDivider"]


class PipelinedDivider(wiring.Component):
    """``quotient = num // den`` for unsigned operands, one division started per cycle.

    Restoring long division, as :func:`intformer.sw.golden.intmath.floor_div`
    specifies, unrolled into :attr:`latency` register stages of one quotient
    bit each. The caller promises ``num < den * 2**quotient_width`` (the
    quotient fits); the divider then starts from the remainder
    ``num >> quotient_width`` (below ``den``) and needs only ``quotient_width``
    steps instead of ``num_width``. No stalls inside: the stages advance when
    ``en`` is high, so the caller keeps its tag registers in step.

    Parameters
    ----------
    num_width : int
        Width of the dividend (1 to 64).
    den_width : int
        Width of the divisor (1 to 64).
    quotient_width : int
        Width of the quotient, and the number of stages (1 to ``num_width``).

    Members
    -------
    en : In(1)
        Advance every stage by one.
    num : In(unsigned(num_width))
    den : In(unsigned(den_width))
        Operands, taken when ``en`` is high; ``den`` must not be 0.
    quotient : Out(unsigned(quotient_width))
        The quotient of the operands taken ``latency`` advances earlier.

    Raises
    ------
    TypeError
        If a width is not an integer.
    ValueError
        If a width is out of range.
    """

    def __init__(self, num_width: int, *, den_width: int, quotient_width: int):
        check_int("Divider", "num_width", num_width, 1, 64)
        check_int("Divider", "den_width", den_width, 1, 64)
        check_int("Divider", "quotient_width", quotient_width, 1, num_width)
        self._nw, self._dw, self._qw = num_width, den_width, quotient_width
        super().__init__({
            "en": In(1),
            "num": In(unsigned(num_width)),
            "den": In(unsigned(den_width)),
            "quotient": Out(unsigned(quotient_width)),
        })

    @property
    def latency(self) -> int:
        """Advances from taking the operands to their quotient: one per quotient bit."""
        return self._qw

    def elaborate(self, platform) -> Module:
        m = Module()
        qw, dw = self._qw, self._dw
        rem = Signal(unsigned(dw + 1), name="rem_in")
        low = Signal(unsigned(qw), name="low_in")
        den = Signal(unsigned(dw), name="den_in")
        m.d.comb += [rem.eq(self.num >> qw), low.eq(self.num[:qw]), den.eq(self.den)]
        quo = Signal(unsigned(qw), name="quo_in")
        for step in range(qw):
            # Bring down the next dividend bit; subtract the divisor if it fits.
            trial = Signal(unsigned(dw + 1), name=f"trial{step}")
            m.d.comb += trial.eq((rem << 1) | low[qw - 1 - step])
            take = trial >= den
            n_rem = Signal(unsigned(dw + 1), name=f"rem{step}")
            n_low = Signal(unsigned(qw), name=f"low{step}")
            n_den = Signal(unsigned(dw), name=f"den{step}")
            n_quo = Signal(unsigned(qw), name=f"quo{step}")
            with m.If(self.en):
                m.d.sync += [
                    n_rem.eq(Mux(take, trial - den, trial)),
                    n_low.eq(low),
                    n_den.eq(den),
                    n_quo.eq((quo << 1) | take),
                ]
            rem, low, den, quo = n_rem, n_low, n_den, n_quo
        m.d.comb += self.quotient.eq(quo)
        return m
