"""Which component ``intformer generate`` emits for a configuration.

Until the full accelerator top exists, this is the largest integrated block;
the command keeps working as blocks land.
"""

from __future__ import annotations

from amaranth.lib import wiring

from intformer.hw.config import Config

__all__ = ["TOP_NAME", "top_component"]

#: Module name of the emitted top level.
TOP_NAME = "intformer_top"


def top_component(config: Config) -> wiring.Component:
    """The top-level component for ``config``."""
    from intformer.hw.gemm import GemmUnit
    return GemmUnit(config)
