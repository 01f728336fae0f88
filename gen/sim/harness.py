"""Generate Verilog for a component and run a cocotb module on it.

Runs in the pytest process (which has Amaranth). Each simulation runs in a
subprocess (``simrun.py``) under the Python whose cocotb suits the simulator:

* cocotb 2.x needs Verilator 5.036 or newer; cocotb 1.9.2 works with older
  Verilators (Debian 12 ships 5.006). When the local Verilator is older than
  5.036 and the main environment has cocotb 2.x, Verilator runs use a side
  environment with cocotb 1.9.2 (``.venv-cocotb1`` beside the main one, or the
  interpreter named by ``INTFORMER_COCOTB1_PYTHON``), created on first use.
* Icarus runs use the main environment's cocotb, whichever it is.

Verilator builds compile through ccache when it is installed (Verilator's
``OBJCACHE``), so the C++ that every build shares compiles once per machine.

Set ``INTFORMER_WAVES=1`` to dump waveforms into the build folder.
"""

from __future__ import annotations

import fcntl
import json
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

from amaranth.back import verilog
from amaranth.hdl import Shape
from amaranth.lib import data, wiring

from ..lint import VERILATOR_WAIVERS

__all__ = ["REPO", "BUILD_ROOT", "SIMULATORS", "emit", "run", "build_dir",
           "describe_shape", "verilator_version", "python_for", "VERILATOR_WAIVERS",
           "VERILATOR_MAKEFLAGS"]

#: The checkout this package runs from (its ``tb/`` is importable in simulations
#: when it exists); build folders go under ``build/`` there, or under the
#: current folder for an installed copy.
REPO = Path(__file__).resolve().parents[2]
BUILD_ROOT = (REPO if (REPO / "tb").is_dir() else Path.cwd()) / "build" / "tb"
SIMULATORS = ("icarus", "verilator")
#: ``make`` flags for a testbench's Verilator build unless ``MAKEFLAGS`` is set: both
#: cores, C++ unoptimised (see :func:`run`).
VERILATOR_MAKEFLAGS = "-j2 OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"
#: Oldest Verilator that cocotb 2.x builds against.
COCOTB2_MIN_VERILATOR = (5, 36)
#: What the cocotb 1.9 side environment holds (besides intformer itself, without deps).
COCOTB1_REQUIREMENTS = ("cocotb==1.9.2", "cocotbext-axi>=0.1.24,<0.2", "numpy", "pytest")


def build_dir(name: str, root: Path | None = None) -> Path:
    """A fresh build folder ``<root>/<name>`` (default root ``build/tb``), emptied if it
    existed."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")
    path = (root or BUILD_ROOT) / safe
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


def describe_shape(shape) -> dict:
    """A JSON description of a shape or data layout, for ``tb.common.payload.Packer``."""
    if isinstance(shape, data.StructLayout | data.UnionLayout):
        return {"width": shape.size, "struct": {
            name: {"offset": field.offset, **describe_shape(field.shape)}
            for name, field in shape}}
    if isinstance(shape, data.ArrayLayout):
        elem = describe_shape(shape.elem_shape)
        return {"width": shape.size, "array": {"length": shape.length, "elem": elem}}
    if isinstance(shape, data.Layout):
        return {"width": shape.size, "signed": False}
    shape = Shape.cast(shape)
    return {"width": shape.width, "signed": shape.signed}


def _ports(component: wiring.Component) -> dict:
    ports = {}
    for path, member, value in component.signature.flatten(component):
        name = "__".join(str(p) for p in path)
        shape = value.shape()
        ports[name] = {"flow": "in" if member.flow == wiring.In else "out", **describe_shape(shape)}
    return ports


def emit(component: wiring.Component, path: Path, *, name: str = "top",
         params: dict | None = None) -> Path:
    """Write ``<path>/<name>.v`` and ``<path>/ports.json`` (the top's ports and
    payload layouts, plus ``params``) for a component; return the Verilog path."""
    path.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(component, name=name, emit_src=False, strip_internal_attrs=True)
    source = path / f"{name}.v"
    source.write_text(text)
    (path / "ports.json").write_text(json.dumps(
        {"toplevel": name, "ports": _ports(component), "params": params or {}}, indent=1))
    return source


def verilator_version() -> tuple[int, int] | None:
    exe = shutil.which("verilator")
    if exe is None:
        return None
    out = subprocess.run([exe, "--version"], capture_output=True, text=True).stdout
    match = re.search(r"Verilator (\d+)\.(\d+)", out)
    return (int(match[1]), int(match[2])) if match else None


def _cocotb_major(python: str) -> int | None:
    out = subprocess.run([python, "-c", "import cocotb; print(cocotb.__version__)"],
                         capture_output=True, text=True)
    if out.returncode:
        return None
    return int(out.stdout.strip().split(".")[0])


def _side_env() -> Path:
    override = os.environ.get("INTFORMER_COCOTB1_PYTHON")
    if override:
        return Path(override)
    return Path(sys.prefix).parent / ".venv-cocotb1" / "bin" / "python"


def setup_cocotb1(python: Path) -> None:
    """Create the cocotb 1.9.2 side environment at ``python``'s venv (with a lock,
    so parallel test workers create it once)."""
    venv = python.parent.parent
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / ".venv-cocotb1.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if _side_env_ready(python):
            return
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        subprocess.run([*pip, *COCOTB1_REQUIREMENTS], check=True)
        subprocess.run([*pip, "--no-deps", "-e", str(REPO)], check=True)
        (venv / "intformer-requirements.txt").write_text("\n".join(COCOTB1_REQUIREMENTS))


def _side_env_ready(python: Path) -> bool:
    marker = python.parent.parent / "intformer-requirements.txt"
    return (python.exists() and marker.exists()
            and marker.read_text() == "\n".join(COCOTB1_REQUIREMENTS))


def python_for(sim: str) -> str:
    """The interpreter whose cocotb can drive ``sim`` on this machine."""
    if sim not in SIMULATORS:
        raise ValueError(f"Simulator {sim!r} is not one of {', '.join(SIMULATORS)}")
    tool = "iverilog" if sim == "icarus" else "verilator"
    if shutil.which(tool) is None:
        raise RuntimeError(f"{tool} is not installed (apt-get install {tool})")
    if sim == "icarus":
        return sys.executable
    version = verilator_version()
    if version is not None and version >= COCOTB2_MIN_VERILATOR:
        return sys.executable
    if _cocotb_major(sys.executable) == 1:
        return sys.executable
    side = _side_env()
    if not _side_env_ready(side):
        setup_cocotb1(side)
    return str(side)


def run(*, sim: str, sources: list[Path], toplevel: str, test_module: str, path: Path,
        env: dict[str, str] | None = None, seed: int | None = None, timeout: float = 3600,
        testcase: str | None = None) -> None:
    """Build ``sources`` and run cocotb module ``test_module`` (a dotted name importable
    from the repository, e.g. ``tb.requant.test_requant``, or from the installed
    package) on ``sim``; raise AssertionError naming the failing tests if any fails.

    ``path`` is the build folder; the simulation reads ``ports.json`` there and may
    write results (for example a benchmark's JSON) into it.
    """
    python = python_for(sim)
    # Models of vendor primitives the design instantiates (dsp_packing's SB_MAC16,
    # ecp5_dsp's MULT18X18D).
    from intformer.hw import ecp5, ice40
    sources = [*sources, *ice40.sim_models(sources, path), *ecp5.sim_models(sources, path)]
    waves = os.environ.get("INTFORMER_WAVES", "") not in ("", "0")
    build_args = []
    if sim == "verilator":
        build_args = ["-Wno-fatal", *VERILATOR_WAIVERS, "-O3", "--x-assign", "fast",
                      "--x-initial", "fast"]
    results = path / "results.xml"
    job = {
        "sim": sim, "sources": [str(s) for s in sources], "toplevel": toplevel,
        "build_dir": str(path / f"sim_{sim}"), "build_args": build_args,
        "test_module": test_module, "results_xml": str(results), "waves": waves, "seed": seed,
        "testcase": testcase,
        "pythonpath": [str(REPO)],
        "env": {
            "INTFORMER_BUILD": str(path), "INTFORMER_SIM": sim,
            **(env or {}),
        },
    }
    job_file = path / f"job_{sim}.json"
    job_file.write_text(json.dumps(job, indent=1))
    log = path / f"sim_{sim}.log"
    # cocotb 1.9's runner refuses to write a results file under a running pytest.
    child_env = {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}
    if sim == "verilator" and "OBJCACHE" not in child_env and shutil.which("ccache"):
        # Verilator's runtime and cocotb's main are the same C++ in every build; paths
        # relative to the checkout, so that another clone's same design hits too.
        child_env["OBJCACHE"] = "ccache"
        child_env.setdefault("CCACHE_BASEDIR", str(REPO))
    if sim == "verilator" and "MAKEFLAGS" not in child_env:
        # Testbench runs are short and cocotb's Python dominates them, while the C++
        # compile dominates the build: unoptimised C++ on both cores. Measured on
        # core_reset_tiny (loaded machine, no ccache): 172 s with Verilator's default
        # -Os and one job, 152 s with -j2, 53 s with -j2 -O0; the test itself ran at
        # 26k and 21k simulated ns per second.
        child_env["MAKEFLAGS"] = VERILATOR_MAKEFLAGS
    with open(log, "w") as out:
        proc = subprocess.run([python, str(Path(__file__).with_name("simrun.py")), str(job_file)],
                              stdout=out, stderr=subprocess.STDOUT, cwd=path, timeout=timeout,
                              env=child_env)
    failures = _failures(results)
    if proc.returncode or failures is None or failures:
        tail = log.read_text()[-6000:]
        what = ("simulation did not finish" if failures is None
                else f"failed: {', '.join(failures)}" if failures else "exited with an error")
        raise AssertionError(f"{test_module} on {sim} {what} (log: {log})\n{tail}")


def _failures(results: Path) -> list[str] | None:
    if not results.exists():
        return None
    tree = ET.parse(results)
    cases = list(tree.iter("testcase"))
    if not cases:
        return None
    return [case.get("name") for case in cases
            if case.find("failure") is not None or case.find("error") is not None]
