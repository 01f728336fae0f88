"""``intformer board``: every board design on its platform's pins, the CLI's error paths,
and (``slow``) each board's whole build, checked for fit and timing at its clock."""

import dataclasses
import importlib
import json
import os
import stat
import subprocess
import sys

import pytest

from intformer.boards import BOARDS, Board, board
from intformer.hw.axiram import AXIRam
from intformer.hw.boardtop import BoardPins
from intformer.hw.config import preset

from .test_cli import assert_user_error, cli


class SmallBoard(Board):
    """A board with the smallest configuration (the ``icebreaker`` preset, GEMM only, 2x1,
    its SB_MAC16 packing only on iCE40) and 64 KiB of memory: its pins, clocking and
    memory kind, elaborated in seconds."""

    @property
    def config(self):
        config = preset("icebreaker")
        return config if self.family == "ice40" else dataclasses.replace(config,
                                                                          dsp_packing=False)


def small(name):
    b = board(name)
    fields = {f.name: getattr(b, f.name) for f in dataclasses.fields(b)}
    return SmallBoard(**{**fields, "mem_bytes": 64 * 1024})


@pytest.mark.parametrize("name", BOARDS)
def test_design_elaborates(name, tmp_path):
    mod = importlib.import_module(f"intformer.boards.{name}")
    platform = mod.BOARD.platform_class()()
    plan = platform.build(mod.design(small(name)), name="top", do_build=False)
    plan.extract(tmp_path)
    if mod.BOARD.family == "xilinx":
        verilog = (tmp_path / "top.v").read_text()
        assert "MMCME2_BASE" in verilog
        constraints = (tmp_path / "top.xdc").read_text()
        assert "create_clock" in constraints
    else:
        verilog = (tmp_path / "top.il").read_text()
        constraints = (tmp_path / ("top.pcf" if mod.BOARD.family == "ice40" else "top.lpf")
                       ).read_text()
    assert ("SB_SPRAM256KA" in verilog) == (name == "icebreaker")
    assert "uart_0__rx" in constraints and "uart_0__tx" in constraints
    for _status, (resource, number) in mod.LEDS.items():
        assert f"{resource}_{number}__" in constraints


def test_arty_clock_from_mmcm():
    from intformer.boards import arty_a7
    assert arty_a7.VCO_HZ % arty_a7.BOARD.clock_hz == 0
    assert 600e6 <= arty_a7.VCO_HZ <= 1200e6


def test_board_pins_errors():
    top = board("icebreaker").top()
    with pytest.raises(ValueError, match=r"LED status 'blink' is not one of busy, done"):
        BoardPins(top, leds={"blink": ("led", 0)})
    with pytest.raises(TypeError, match=r"BoardPins top must be a BoardTop, not 1"):
        BoardPins(1, leds={})


def test_table_of_a_design_that_does_not_fit():
    """A build that nextpnr cannot place has no Fmax or logic-cell figures; its table
    shows them as "-" (it was a KeyError traceback instead of the error line)."""
    from pathlib import Path

    from intformer.gen.board import _base_report, _table
    b = board("icebreaker")
    report = _base_report(b, "intformer_icebreaker", Path("out"),
                          {"lut": 4734, "ff": 2457, "dsp": 3, "bram": 20, "spram": 4}, {})
    report.update(ok=False, fits=False, error="does not fit")
    head, row = _table(report).splitlines()[1:3]
    assert head.split() == ["LUT", "FF", "MAC16", "EBR", "SPRAM", "LC", "Fmax", "MHz",
                            "board", "MHz"]
    assert row.split() == ["4734", "2457", "3", "20", "4", "-", "-", "12"]


def test_spram_blocks():
    ram = AXIRam(addr_width=32, data_width=32, id_width=1, mem_bytes=128 * 1024, spram=True)
    assert ram.spram_blocks == 4


def test_unknown_board(tmp_path):
    assert_user_error(cli("board", "build", "de10", "--out", tmp_path), "Unknown board 'de10'",
                      "icebreaker, ulx3s, arty_a7")
    assert_user_error(cli("board", "program", "de10", "--out", tmp_path),
                      "Unknown board 'de10'")


def test_pnr_only_without_netlist(tmp_path):
    assert_user_error(cli("board", "build", "ulx3s", "--pnr-only", "--out", tmp_path),
                      "--pnr-only needs the netlist of an earlier build of ulx3s",
                      "intformer_ulx3s.json")
    assert_user_error(cli("board", "build", "arty_a7", "--pnr-only", "--out", tmp_path),
                      "--pnr-only applies to iCE40 and ECP5 boards, not arty_a7")


def test_program_without_bitstream(tmp_path):
    assert_user_error(cli("board", "program", "icebreaker", "--out", tmp_path),
                      "No bitstream for icebreaker", "intformer_icebreaker.bin",
                      "intformer board build icebreaker")
    assert_user_error(cli("board", "program", "arty_a7", "--out", tmp_path),
                      "No bitstream for arty_a7", "Vivado")


def test_program_refuses_timing_failure(tmp_path):
    (tmp_path / "intformer_ulx3s-timing-failed.bit").write_bytes(b"\0")
    assert_user_error(cli("board", "program", "ulx3s", "--out", tmp_path),
                      "missed timing", "not programming it")


def test_program_tool_fails(tmp_path):
    """openFPGALoader runs, finds no board and fails: its last line in one error."""
    (tmp_path / "intformer_icebreaker.bin").write_bytes(b"\0")
    fake = tmp_path / "loader"
    fake.write_text("#!/bin/sh\necho 'unable to open ftdi device: -3 (device not found)' >&2\n"
                    "exit 1\n")
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    env = {**os.environ, "OPENFPGALOADER": str(fake)}
    proc = subprocess.run([sys.executable, "-m", "intformer.gen.cli", "board", "program",
                           "icebreaker", "--out", str(tmp_path)], capture_output=True,
                          text=True, env=env, timeout=120)
    assert_user_error(proc, "openFPGALoader could not program icebreaker (exit 1)",
                      "device not found")


def test_run_is_boardrun():
    proc = cli("board", "run", "--help")
    assert proc.returncode == 0, proc.stderr
    assert "--images" in proc.stdout


@pytest.mark.slow
@pytest.mark.parametrize("name", [
    pytest.param(name, marks=pytest.mark.xfail(
        strict=True, reason="the icebreaker board top needs 6,079 of the UP5K's 5,280 "
                            "logic cells")) if name == "icebreaker" else name
    for name in BOARDS])
def test_build(name, tmp_path):
    """The whole board: it fits, meets timing at the board clock (iCE40, ECP5; Arty A7:
    the Yosys estimate fits and the Vivado project is written), and leaves a bitstream."""
    proc = subprocess.run([sys.executable, "-m", "intformer.gen.cli", "board", "build", name,
                           "--out", str(tmp_path), "--json"], capture_output=True, text=True,
                          timeout=4 * 3600)
    report = json.loads((tmp_path / "board.json").read_text())
    assert proc.returncode == 0, report.get("error") or proc.stderr[-2000:]
    assert report["ok"] and report["fits"]
    b = board(name)
    if b.family == "xilinx":
        for suffix in (".v", ".xdc", ".tcl"):
            assert (tmp_path / f"intformer_{name}{suffix}").exists()
        assert (tmp_path / "build.tcl").exists()
        assert report["dsp"] > 0 and report["bram"] > 0
    else:
        assert report["timing_met"] and report["fmax_mhz"] >= b.clock_hz / 1e6
        assert (tmp_path / f"intformer_{name}.{'bin' if b.family == 'ice40' else 'bit'}"
                ).stat().st_size > 0
    if name == "icebreaker":
        assert report["spram"] == 4
