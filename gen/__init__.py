"""The generator: configuration, Verilog/manifest/C-header emission, reports, CLI."""

from intformer.hw.config import BASE, PRESETS, Config, preset

__all__ = ["BASE", "PRESETS", "Config", "preset"]
