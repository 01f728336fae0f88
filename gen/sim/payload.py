"""Pack and unpack Amaranth payloads in testbenches, from ``ports.json``.

Needs no Amaranth: the harness describes every port's layout in ``ports.json``
(see ``harness.describe_shape``), and :class:`Packer` turns nested dicts/lists
of integers into the port's integer value and back.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

__all__ = ["Packer", "load_ports", "build_path"]


def build_path() -> Path:
    """The build folder of the running test (set by the harness)."""
    return Path(os.environ["INTFORMER_BUILD"])


def load_ports(path: Path | None = None) -> dict:
    """The ``ports.json`` the harness wrote for this build."""
    return json.loads(((path or build_path()) / "ports.json").read_text())


class Packer:
    """Converts between nested Python values and one port's integer value."""

    def __init__(self, desc: dict):
        self.desc = desc
        self.width = desc["width"]

    def pack(self, value) -> int:
        return _pack(self.desc, value)

    def unpack(self, raw: int):
        return _unpack(self.desc, int(raw))


def _pack(desc, value) -> int:
    if "struct" in desc:
        out = 0
        for name, field in desc["struct"].items():
            if name in value:
                out |= _pack(field, value[name]) << field["offset"]
        return out
    if "array" in desc:
        elem = desc["array"]["elem"]
        if len(value) != desc["array"]["length"]:
            raise ValueError(f"Array of {desc['array']['length']} elements given "
                             f"{len(value)} values")
        out = 0
        for i, v in enumerate(value):
            out |= _pack(elem, v) << (i * elem["width"])
        return out
    width = desc["width"]
    v = int(value)
    lo = -(1 << (width - 1)) if desc["signed"] else 0
    hi = (1 << (width - 1)) - 1 if desc["signed"] else (1 << width) - 1
    if not lo <= v <= hi:
        raise ValueError(f"Value {v} does not fit a {'signed' if desc['signed'] else 'unsigned'}"
                         f" {width}-bit field")
    return v & ((1 << width) - 1)


def _unpack(desc, raw: int):
    if "struct" in desc:
        return {name: _unpack(field, raw >> field["offset"])
                for name, field in desc["struct"].items()}
    if "array" in desc:
        elem = desc["array"]["elem"]
        return [_unpack(elem, raw >> (i * elem["width"]))
                for i in range(desc["array"]["length"])]
    width = desc["width"]
    v = raw & ((1 << width) - 1)
    if desc["signed"] and v >> (width - 1):
        v -= 1 << width
    return v
