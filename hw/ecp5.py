"""ECP5 primitives the generator instantiates directly, and their simulation models.

:func:`mul18x18d` puts a signed product into a ``MULT18X18D`` with its input and
output registers in use. Yosys's ``synth_ecp5`` maps every ``$mul`` to a
``MULT18X18D`` without registers and leaves the registers around it in the fabric, so
a registered product costs the multiplier's whole combinational delay (3.9 ns in
nextpnr's timing model) plus the routing into and out of the DSP row in one cycle.

Yosys ships no behavioural model of ``MULT18X18D`` (only a black box for synthesis),
so :func:`sim_models` writes the one of this module, which covers the configuration
:func:`mul18x18d` instantiates: inputs and output registered on ``CLK0`` with clock
enable ``CE0``, no pipeline register, no cascade, synchronous reset ``RST0``.
"""

from __future__ import annotations

import re
from pathlib import Path

from amaranth.hdl import ClockSignal, Const, Instance, Module, Signal, Value, signed

__all__ = ["PRIMITIVES", "mul18x18d", "sim_model", "sim_models"]

#: ECP5 primitives this package may instantiate and models in :func:`sim_model`.
PRIMITIVES: tuple[str, ...] = ("MULT18X18D",)


def mul18x18d(m: Module, *, a: Value, b: Value, ce: Value, name: str) -> Signal:
    """Add a ``MULT18X18D`` computing the registered signed product ``a * b`` to ``m``.

    Returns a ``signed(a_width + b_width)`` signal that takes ``a * b`` two ``sync``
    clock edges on which ``ce`` was high after ``a`` and ``b`` had those values: the
    operands are registered on the first (``REG_INPUTA_CLK``/``REG_INPUTB_CLK``), the
    product on the second (``REG_OUTPUT_CLK``); both hold while ``ce`` is low. The
    registers are not reset (``GSR`` disabled), so ``ce`` must be high on two edges
    before a product is used.

    Raises
    ------
    ValueError
        If an operand is unsigned or wider than 18 bits.
    """
    ops = {}
    for port, value in (("A", a), ("B", b)):
        shape = value.shape()
        if not shape.signed or shape.width > 18:
            raise ValueError(f"mul18x18d operand {port.lower()} must be signed and at most "
                             f"18 bits wide, not {shape!r}")
        op = Signal(signed(18), name=f"{name}_{port.lower()}")
        m.d.comb += op.eq(value)
        ops[port] = op
    width = a.shape().width + b.shape().width
    p = Signal(36, name=f"{name}_p")
    prod = Signal(signed(width), name=f"{name}_prod")
    zero = Const(0, 1)
    ports = {f"i_{port}{i}": ops[port][i] for port in ("A", "B") for i in range(18)}
    ports.update({f"i_C{i}": zero for i in range(18)})
    ports.update({f"o_P{i}": p[i] for i in range(36)})
    m.submodules[name] = Instance(
        "MULT18X18D",
        p_REG_INPUTA_CLK="CLK0", p_REG_INPUTA_CE="CE0", p_REG_INPUTA_RST="RST0",
        p_REG_INPUTB_CLK="CLK0", p_REG_INPUTB_CE="CE0", p_REG_INPUTB_RST="RST0",
        p_REG_INPUTC_CLK="NONE", p_REG_PIPELINE_CLK="NONE",
        p_REG_OUTPUT_CLK="CLK0", p_REG_OUTPUT_CE="CE0", p_REG_OUTPUT_RST="RST0",
        p_GSR="DISABLED", p_RESETMODE="SYNC", p_SOURCEB_MODE="B_INPUT",
        p_MULT_BYPASS="DISABLED", p_CAS_MATCH_REG="FALSE",
        i_CLK0=ClockSignal(), i_CE0=ce, i_RST0=zero,
        i_CLK1=zero, i_CLK2=zero, i_CLK3=zero, i_CE1=zero, i_CE2=zero, i_CE3=zero,
        i_RST1=zero, i_RST2=zero, i_RST3=zero,
        i_SIGNEDA=Const(1, 1), i_SIGNEDB=Const(1, 1), i_SOURCEA=zero, i_SOURCEB=zero,
        **ports,
    )
    m.d.comb += prod.eq(p[:width].as_signed())
    return prod


def sim_model() -> str:
    """Verilog model of ``MULT18X18D`` in the configuration :func:`mul18x18d` uses.

    The ports are those of Yosys's black box that :func:`mul18x18d` connects; any other
    register configuration of the parameters is reported by ``$fatal`` when the
    simulation starts, so the model cannot silently simulate something the device does not do.
    """
    bits = {port: [f"{port}{i}" for i in range(n)]
            for port, n in (("A", 18), ("B", 18), ("C", 18), ("P", 36))}
    inputs = [*bits["A"], *bits["B"], *bits["C"], "SIGNEDA", "SIGNEDB", "SOURCEA", "SOURCEB",
              *(f"{k}{i}" for k in ("CLK", "CE", "RST") for i in range(4))]
    lines = [f"module MULT18X18D({', '.join(inputs + bits['P'])});"]
    lines += [f"  input {name};" for name in inputs]
    lines += [f"  output {name};" for name in bits["P"]]
    lines += [f'  parameter {p} = "{v}";' for p, v in (
        ("REG_INPUTA_CLK", "NONE"), ("REG_INPUTA_CE", "CE0"), ("REG_INPUTA_RST", "RST0"),
        ("REG_INPUTB_CLK", "NONE"), ("REG_INPUTB_CE", "CE0"), ("REG_INPUTB_RST", "RST0"),
        ("REG_INPUTC_CLK", "NONE"), ("REG_INPUTC_CE", "CE0"), ("REG_INPUTC_RST", "RST0"),
        ("REG_PIPELINE_CLK", "NONE"), ("REG_PIPELINE_CE", "CE0"), ("REG_PIPELINE_RST", "RST0"),
        ("REG_OUTPUT_CLK", "NONE"), ("REG_OUTPUT_CE", "CE0"), ("REG_OUTPUT_RST", "RST0"),
        ("CLK0_DIV", "ENABLED"), ("CLK1_DIV", "ENABLED"), ("CLK2_DIV", "ENABLED"),
        ("CLK3_DIV", "ENABLED"), ("HIGHSPEED_CLK", "NONE"), ("GSR", "ENABLED"),
        ("CAS_MATCH_REG", "FALSE"), ("SOURCEB_MODE", "B_SHIFT"), ("MULT_BYPASS", "DISABLED"),
        ("RESETMODE", "SYNC"))]
    cat = {port: "{" + ", ".join(reversed(names)) + "}" for port, names in bits.items()}
    lines += [
        "  wire [17:0] a = " + cat["A"] + ";",
        "  wire [17:0] b = " + cat["B"] + ";",
        "  reg [17:0] a_q, b_q;",
        "  reg [35:0] p_q;",
        "  initial",
        '    if (REG_INPUTA_CLK != "CLK0" || REG_INPUTB_CLK != "CLK0" ||',
        '        REG_OUTPUT_CLK != "CLK0" || REG_PIPELINE_CLK != "NONE" ||',
        '        REG_INPUTA_CE != "CE0" || REG_INPUTB_CE != "CE0" ||',
        '        REG_OUTPUT_CE != "CE0" || MULT_BYPASS != "DISABLED")',
        '      $fatal(1, "this MULT18X18D model covers inputs and output registered on '
        'CLK0/CE0 only");',

        "  wire signed [35:0] prod = $signed({{18{SIGNEDA & a_q[17]}}, a_q}) *",
        "                            $signed({{18{SIGNEDB & b_q[17]}}, b_q});",
        "  always @(posedge CLK0) begin",
        "    if (RST0) begin",
        "      a_q <= 18'd0;",
        "      b_q <= 18'd0;",
        "      p_q <= 36'd0;",
        "    end else if (CE0) begin",
        "      a_q <= a;",
        "      b_q <= b;",
        "      p_q <= prod;",
        "    end",
        "  end",
        "  assign " + cat["P"] + " = p_q;",
        "endmodule",
        "",
    ]
    return "\n".join(lines)


def sim_models(sources: list[Path], dest: Path) -> list[Path]:
    """Model files that ``sources`` need for simulation or lint, written into ``dest``:
    ``dest/ecp5_MULT18X18D.v`` if a source instantiates ``MULT18X18D``, else ``[]``."""
    texts = [Path(s).read_text() for s in sources]
    if not any(re.search(r"^\s*MULT18X18D\s", t, re.M) for t in texts):
        return []
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / "ecp5_MULT18X18D.v"
    path.write_text(sim_model())
    return [path]
