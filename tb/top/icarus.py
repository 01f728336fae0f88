"""Make Icarus evaluate every ``always @*`` block of Yosys-written Verilog once.

Yosys makes each ``always @*`` block sensitive to a dummy register initialised to 0
so that simulators evaluate the block at time 0. Icarus applies that initialiser
without an event, so a combinational block whose real inputs never change stays X
(for example a ``ready`` decoded from a state register still in its reset state),
and the X spreads through counters. Real hardware and Verilator have no such
time-0 issue. Toggling the dummy register at 1 ps evaluates every block once.
"""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["kick_comb_blocks"]

_DUMMY = re.compile(r"reg (\\\$auto\$verilog_backend\.cc:\d+:dump_module\$\d+ ) = 0;")


def kick_comb_blocks(source: Path) -> int:
    """Patch ``source`` in place; return the number of modules patched."""
    text = source.read_text()
    text, count = _DUMMY.subn(lambda m: f"reg {m[1]} = 0;\n  initial #0.001 {m[1]} = 1;", text)
    source.write_text(text)
    return count
