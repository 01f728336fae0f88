"""The lint gate: ``verilator --lint-only -Wall`` and ``iverilog`` parsing of generated
Verilog, with the one list of waivers that simulations use as well.

Each waiver is for a construct that Amaranth's Verilog backend (Yosys
``write_verilog``) emits in correct designs; the README section "Lint waivers"
explains each. The waivers use Verilator's umbrella warning names (``WIDTH``,
``UNUSED``), which every Verilator from 4.x to 5.x accepts: 5.006 (Debian 12)
rejects the finer names (``WIDTHEXPAND``, ``WIDTHTRUNC``) that later releases
split ``WIDTH`` into, and in those releases the umbrella name still turns off
all of its parts.
"""

from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

__all__ = ["WAIVERS", "VERILATOR_WAIVERS", "LintResult", "verilator_lint", "iverilog_parse"]

#: (Verilator warning code, the construct that triggers it).
WAIVERS: tuple[tuple[str, str], ...] = (
    ("DECLFILENAME", "one generated file holds the top and its submodules, so module and "
                     "file names differ"),
    ("UNUSED", "Yosys keeps whole intermediate values of which only some bits are read "
               "(for example the carry bit of a sum)"),
    ("WIDTH", "Yosys relies on Verilog's implicit extension and truncation of operands in "
              "arithmetic and comparisons"),
    ("CASEINCOMPLETE", "FSMs and Switch statements without a default case become case "
                       "statements that leave unreachable encodings uncovered"),
    ("CASEOVERLAP", "If/Elif chains become casez statements whose patterns overlap and "
                    "are taken in priority order"),
    ("LITENDIAN", "zero-width signals (such as the address of a one-entry FIFO) are "
                  "declared as [-1:0]"),
)

#: Verilator options that apply :data:`WAIVERS`.
VERILATOR_WAIVERS: tuple[str, ...] = tuple(f"-Wno-{code}" for code, _ in WAIVERS)


@dataclass(frozen=True)
class LintResult:
    """What a linter said: ``ok`` and its combined output."""

    tool: str
    ok: bool
    output: str


def _require(tool: str) -> str:
    exe = shutil.which(tool)
    if exe is None:
        raise RuntimeError(f"{tool} is not installed (apt-get install {tool})")
    return exe


def _with_models(sources: list[Path]) -> tuple[list[Path], list[Path]]:
    # Vendor primitives the design instantiates (dsp_packing's SB_MAC16) need their
    # models to elaborate; they are Yosys's, written beside the first source.
    from intformer.hw import ecp5, ice40
    dest = Path(sources[0]).parent if sources else None
    models = ([*ice40.sim_models(sources, dest), *ecp5.sim_models(sources, dest)]
              if sources else [])
    return [*sources, *models], models


def verilator_lint(sources: list[Path], *, top: str) -> LintResult:
    """``verilator --lint-only -Wall`` with :data:`VERILATOR_WAIVERS` on ``sources``.

    Models of iCE40 primitives the sources instantiate (:func:`intformer.hw.ice40.sim_models`)
    are added and elaborated but not linted: they are Yosys's, not generated code.
    """
    exe = _require("verilator")
    sources, models = _with_models(sources)
    config = []
    if models:
        vlt = Path(sources[0]).parent / "vendor_models.vlt"
        vlt.write_text("`verilator_config\n" + "".join(
            f'lint_off -file "*/{m.name}"\n' for m in models))
        config = [str(vlt)]
    proc = subprocess.run([exe, "--lint-only", "-Wall", *VERILATOR_WAIVERS, "--top-module", top,
                           *config, *map(str, sources)], capture_output=True, text=True)
    return LintResult("verilator", proc.returncode == 0 and "%Warning" not in proc.stderr,
                      proc.stdout + proc.stderr)


def iverilog_parse(sources: list[Path], *, top: str) -> LintResult:
    """``iverilog -g2012`` elaboration of ``sources`` (no output file), with the models of
    iCE40 primitives they instantiate."""
    exe = _require("iverilog")
    sources, _ = _with_models(sources)
    proc = subprocess.run([exe, "-g2012", "-s", top, "-o", "/dev/null", *map(str, sources)],
                          capture_output=True, text=True)
    return LintResult("iverilog", proc.returncode == 0 and not proc.stderr.strip(),
                      proc.stdout + proc.stderr)
