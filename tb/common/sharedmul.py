"""A vector unit built with ``shared_mul=True`` and a multiplier on each of its
``mul<k>`` ports, as :class:`~intformer.hw.vecexec.VectorExecutor` feeds it: the unit
tests run it beside the unit with its own multipliers."""

from amaranth.hdl import Module
from amaranth.lib import wiring
from amaranth.lib.wiring import In, connect, flipped

__all__ = ["OwnMultipliers"]


class OwnMultipliers(wiring.Component):
    """``unit`` (built with ``shared_mul=True``) with the same ports but the ``mul<k>``
    ones, whose products it computes.

    Raises
    ------
    ValueError
        If ``unit`` has no ``mul0`` port (it was not built with ``shared_mul=True``).
    """

    def __init__(self, unit: wiring.Component):
        if "mul0" not in unit.signature.members:
            raise ValueError(f"OwnMultipliers needs a unit built with shared_mul=True, "
                             f"not {unit!r}")
        self._unit = unit
        super().__init__(wiring.Signature({
            name: member for name, member in unit.signature.members.items()
            if not name.startswith("mul")}))

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.unit = unit = self._unit
        for name, member in self.signature.members.items():
            ours, theirs = getattr(self, name), getattr(unit, name)
            if member.is_signature:
                if member.flow == In:
                    connect(m, flipped(ours), theirs)
                else:
                    connect(m, theirs, flipped(ours))
            elif member.flow == In:
                m.d.comb += theirs.eq(ours)
            else:
                m.d.comb += ours.eq(theirs)
        for k in range(len(unit.mul_widths)):
            for port in getattr(unit, f"mul{k}"):
                m.d.comb += port.p.eq(port.a * port.b)
        return m
