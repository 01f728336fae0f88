"""Which component ``intformer generate`` emits for a configuration, and the blocks
``intformer synth --block`` can build alone.

The top is the whole accelerator (:class:`intformer.hw.top.Accelerator`) with its
bus ports under their conventional names (``m_axi_awaddr``, ``s_axil_wdata``, ...).
"""

from __future__ import annotations

from collections.abc import Callable

from amaranth.lib import wiring

from intformer.hw.config import Config

__all__ = ["TOP_NAME", "top_component", "BLOCKS", "block_component"]

#: Module name of the emitted top level.
TOP_NAME = "intformer_top"


def top_component(config: Config) -> wiring.Component:
    """The top-level component for ``config``: the accelerator with flat AXI port names."""
    from intformer.hw.axi import FlatPorts
    from intformer.hw.top import Accelerator
    return FlatPorts(Accelerator(config), flatten=("m_axi", "s_axil"))


def _gemm_unit(c: Config) -> wiring.Component:
    from intformer.hw.gemm import GemmUnit
    return GemmUnit(c)


def _gemm_engine(c: Config) -> wiring.Component:
    from intformer.hw.gemm import GemmEngine
    return GemmEngine(c)


def _systolic(c: Config) -> wiring.Component:
    from intformer.hw.systolic import SystolicArray
    return SystolicArray(c.array_rows, c.array_cols, operand_width=c.operand_width,
                         acc_width=c.acc_width, dsp_packing=c.dsp_packing,
                         ecp5_dsp=c.ecp5_dsp)


def _requant(c: Config) -> wiring.Component:
    from intformer.hw.requant import Requantizer
    return Requantizer(c.array_cols, acc_width=c.acc_width, mult_width=c.requant_mult_width)


def _softmax(c: Config) -> wiring.Component:
    from intformer.hw.softmax import Softmax
    return Softmax(c.vector_lanes, max_row=c.vector_max_row)


def _gelu(c: Config) -> wiring.Component:
    from intformer.hw.gelu import Gelu
    return Gelu(c.vector_lanes)


def _layernorm(c: Config) -> wiring.Component:
    from intformer.hw.layernorm import LayerNorm
    return LayerNorm(c.vector_lanes, max_row=c.vector_max_row)


def _residual(c: Config) -> wiring.Component:
    from intformer.hw.residual import ResidualAdd
    return ResidualAdd.from_config(c)


#: Blocks that ``intformer synth --block NAME`` builds on their own from a configuration:
#: name -> (factory, one-line description). Add a block here when it lands.
BLOCKS: dict[str, tuple[Callable[[Config], wiring.Component], str]] = {
    "top": (top_component, "what `intformer generate` emits"),
    "gemm_unit": (_gemm_unit, "GEMM engine with its own banked memories"),
    "gemm_engine": (_gemm_engine, "GEMM engine without its memories"),
    "systolic": (_systolic, "the systolic array alone"),
    "requant": (_requant, "the requantizer (array_cols lanes)"),
    "softmax": (_softmax, "the Softmax unit (vector_lanes lanes)"),
    "gelu": (_gelu, "the GELU unit (vector_lanes lanes)"),
    "layernorm": (_layernorm, "the LayerNorm unit (vector_lanes lanes)"),
    "residual": (_residual, "the residual-add unit (vector_lanes lanes)"),
}


def block_component(name: str, config: Config) -> wiring.Component:
    """The component of block ``name`` (a key of :data:`BLOCKS`) for ``config``."""
    try:
        factory, _ = BLOCKS[name]
    except KeyError:
        raise ValueError(f"Unknown block {name!r}; the blocks are {', '.join(BLOCKS)}") from None
    return factory(config)
