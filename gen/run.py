"""``intformer run``: the digits Vision Transformer on the generated RTL.

Each image is compiled (:func:`intformer.sw.compile.compile_model`) and run through
the host driver (:class:`intformer.sw.driver.Driver`) on :class:`intformer.hw.simtop.SimTop`,
the accelerator with its memory inside the design, and every op's output is compared
bit-exactly with :meth:`IntegerModel.run`.

The driver never talks to the simulator directly. It runs twice per image: first on a
:class:`ScriptBus` that writes what it does (memory writes, register writes and reads,
waiting for the interrupt, memory reads) as a script, then, once the simulator has
run all the scripts, on a :class:`ReplayBus` that answers its reads from the
simulator's output. Under Verilator the script runs in a small C++ main
(``gen/sim/simtop_main.cpp``) with no Python per clock; the model is built once per
configuration and cached under ``build/run``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

from .cli import UserError, add_config_args, config_from_args, path_arg
from .sim.vmodel import build_model, hw_digest, strip_memory_init, write_design

__all__ = ["add_arguments", "run", "ScriptBus", "ReplayBus", "build_verilator", "run_images",
           "run_images_icarus", "record", "replay", "emit_simtop", "strip_memory_init",
           "Digits", "compare_images", "summarize", "print_summary"]

#: Where the driver places the image (the stream follows it).
BASE = 0
#: Cycles to wait for the interrupt of one image.
IRQ_LIMIT = 5_000_000
TEMPLATE = Path(__file__).with_name("sim") / "simtop_main.cpp"
BUILD_ROOT = Path("build") / "run"


class ScriptBus:
    """The driver's bus (:mod:`intformer.sw.driver`), recording a script for
    ``simtop_main.cpp``; reads return 0 (their answers come from the replay)."""

    def __init__(self):
        self.lines: list[str] = []

    async def write_reg(self, offset: int, value: int) -> None:
        self.lines.append(f"W {offset:x} {value & 0xFFFFFFFF:x}")

    async def read_reg(self, offset: int) -> int:
        self.lines.append(f"R {offset:x}")
        return 0

    async def write_mem(self, addr: int, data: bytes) -> None:
        if data:
            self.lines.append(f"M {addr:x} {bytes(data).hex()}")

    async def read_mem(self, addr: int, length: int) -> bytes:
        self.lines.append(f"D {addr:x} {length:x}")
        return bytes(length)

    async def wait_irq(self, timeout: float) -> None:
        self.lines.append(f"I {int(timeout):x}")


class ReplayBus:
    """The driver's bus answering reads from a simulator's output lines (in order);
    it checks that the driver asks for the same things it recorded."""

    def __init__(self, answers: list[str]):
        self.answers = answers
        self.pos = 0
        self.irq_cycles = 0

    def _next(self, kind: str) -> list[str]:
        if self.pos >= len(self.answers):
            raise RuntimeError(f"simulator output ended; the driver expected {kind!r}")
        parts = self.answers[self.pos].split()
        self.pos += 1
        if parts[0] != kind:
            raise RuntimeError(f"simulator output has {parts[0]!r} where the driver "
                               f"expected {kind!r}")
        return parts

    async def write_reg(self, offset: int, value: int) -> None:
        pass

    async def write_mem(self, addr: int, data: bytes) -> None:
        pass

    async def read_reg(self, offset: int) -> int:
        return int(self._next("R")[1], 16)

    async def read_mem(self, addr: int, length: int) -> bytes:
        data = bytes.fromhex(self._next("D")[1])
        if len(data) != length:
            raise RuntimeError(f"simulator returned {len(data)} bytes, not {length}")
        return data

    async def wait_irq(self, timeout: float) -> None:
        _, cycles, timed_out = self._next("I")
        self.irq_cycles = int(cycles, 16)
        if int(timed_out):
            raise TimeoutError(f"no interrupt within {int(timeout)} cycles")


def emit_simtop(config, path: Path, *, mem_bytes: int) -> tuple[Path, dict]:
    """Write ``<path>/simtop.v`` and ``<path>/manifest.json`` for :class:`SimTop`;
    return the Verilog path and the manifest."""
    from ..hw.axi import FlatPorts
    from ..hw.simtop import SimTop
    top = FlatPorts(SimTop(config, mem_bytes=mem_bytes, power_on_reset=True),
                    flatten=("s_axil",))
    return write_design(top, config, path / "simtop.v")


#: C++ optimisation of the Verilator model, by ``INTFORMER_RUN_BUILD``: ``speed`` (the
#: default, for simulation speed) or ``quick`` (unoptimised, for short runs such as
#: the tests', which set it: the C++ compile is most of a build). ``speed`` leaves
#: the code that runs once (construction, initial blocks: ``OPT_SLOW``) unoptimised:
#: that saves a sixth of the build, and -O3, -Os or -march=native for the per-cycle
#: code were no faster than -O2 (README, Simulation speed).
BUILD_OPTS = {"speed": "OPT_FAST=-O2 OPT_SLOW=-O0",
              "quick": "OPT_FAST=-O0 OPT_SLOW=-O0 OPT_GLOBAL=-O0"}
#: Verilator's name of :class:`~intformer.hw.simtop.AXIMemory`'s storage in the
#: model (``FlatPorts`` instance ``inner``, its memory ``mem``), which
#: ``simtop_main.cpp`` reads and writes directly; the configuration file keeps it
#: public, so that Verilator neither renames nor optimises it away (the module is
#: Yosys's ``\top.inner.mem``, which Verilator matches by its encoded name).
MEM_ARRAY = "top__DOT__inner__DOT__mem__DOT__mem"
MEM_VLT = '`verilator_config\npublic_flat_rw -module "top__02einner__02emem" -var "mem"\n'


def _build_kind() -> str:
    kind = os.environ.get("INTFORMER_RUN_BUILD", "speed")
    if kind not in BUILD_OPTS:
        raise UserError(f"INTFORMER_RUN_BUILD must be one of {', '.join(BUILD_OPTS)}, "
                        f"not {kind!r}")
    return kind


def _build_key(config, mem_bytes: int) -> str:
    """A hash of everything the simulator binary depends on."""
    h = hw_digest()
    h.update(repr(config).encode())
    h.update(str(mem_bytes).encode())
    h.update(BUILD_OPTS[_build_kind()].encode())
    # The template and this module.
    for f in (TEMPLATE, Path(__file__)):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_verilator(config, *, mem_bytes: int, root: Path = BUILD_ROOT,
                    log=None) -> tuple[Path, dict, float]:
    """Build (or reuse) the Verilator model of :class:`SimTop` for ``config``; return
    the binary, the manifest and the build time in seconds (0 when reused).

    Raises
    ------
    UserError
        If ``verilator`` is not installed or the build fails.
    """
    beat = config.axi_data_width // 8
    path = root / _build_key(config, mem_bytes)
    vlt = path / "simtop.vlt"

    def emit(path: Path) -> tuple[Path, dict]:
        vlt.write_text(MEM_VLT)
        return emit_simtop(config, path, mem_bytes=mem_bytes)
    return build_model(
        path, emit=emit, main=TEMPLATE, binary="Vsim",
        cflags=f"-DBEAT_BYTES={beat} -DMEM_ARRAY={MEM_ARRAY}",
        makeflags=BUILD_OPTS[_build_kind()],
        verilator_opts=("-O3", "--x-assign", "fast", "--x-initial", "fast", str(vlt.resolve())),
        what="the accelerator", hint=" (or use --sim icarus)", log=log)


def _drive(manifest: dict, bus, image: bytes, stream: bytes):
    from ..sw.driver import Driver
    drv = Driver(manifest, bus, base=BASE)
    return asyncio.run(drv.run(image, stream, command_bytes=manifest["commands"]["bytes"],
                               timeout=IRQ_LIMIT, check=False))


def record(manifest: dict, jobs: list) -> list[str]:
    """The script of the driver's accesses for ``jobs`` (``(image, stream)`` pairs)."""
    script = []
    for image, stream in jobs:
        bus = ScriptBus()
        _drive(manifest, bus, image, stream)
        script += bus.lines
    return script


def replay(manifest: dict, jobs: list, output: str) -> tuple[list, dict]:
    """The driver's results for ``jobs`` from a simulator's ``output``: a
    :class:`~intformer.sw.driver.RunResult` per job (``irq_cycles`` added) and
    ``{"cycles", "seconds", "cpu_seconds"}`` of the whole simulation (``cpu_seconds``
    None when the simulator does not report it)."""
    answers = [a for a in output.split("\n") if a]
    if not answers or not answers[-1].startswith("T "):
        raise UserError("simulator output is incomplete")
    _, cycles, seconds, *cpu = answers.pop().split()
    bus = ReplayBus(answers)
    results = []
    for k, (image, stream) in enumerate(jobs):
        try:
            res = _drive(manifest, bus, image, stream)
        except TimeoutError as e:
            # The accelerator hung: later images would start on a busy accelerator.
            raise UserError(f"image {k}: {e}") from e
        res.irq_cycles = bus.irq_cycles
        results.append(res)
    return results, {"cycles": int(cycles, 16), "seconds": float(seconds),
                     "cpu_seconds": float(cpu[0]) if cpu else None}


def run_images(binary: Path, manifest: dict, jobs: list, *, work: Path) -> tuple[list, dict]:
    """Run ``jobs`` (``(image, stream)`` byte pairs) in one process of the Verilator
    model ``binary``; return as :func:`replay`.

    The script and the simulator's output go to a folder of this process's own under
    ``work`` (runs of the same model may go on side by side), removed after a run
    that succeeded and kept for inspection after one that failed.
    """
    work = work / f"run-{os.getpid()}"
    work.mkdir(parents=True, exist_ok=True)
    (work / "script.txt").write_text("\n".join(record(manifest, jobs)) + "\n")
    out = work / "output.txt"
    proc = subprocess.run([str(binary), str(work / "script.txt"), str(out)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise UserError(f"simulator failed (status {proc.returncode}): "
                        f"{(proc.stderr or proc.stdout).strip()[:300]}; script and "
                        f"output in {work}")
    results = replay(manifest, jobs, out.read_text())
    shutil.rmtree(work, ignore_errors=True)
    return results


def run_images_icarus(config, jobs: list, *, mem_bytes: int,
                      root: Path = BUILD_ROOT) -> tuple[list, dict, dict]:
    """Run ``jobs`` on Icarus through cocotb (:mod:`intformer.gen.sim.simtop_script`);
    return the results and figures as :func:`replay`, and the manifest."""
    import sys

    from .sim import harness
    if shutil.which("iverilog") is None:
        raise UserError("iverilog not found on PATH; install Icarus Verilog (or use "
                        "--sim verilator)")
    # Icarus needs Yosys's `always @*` blocks kicked at time 0 (tb/top/icarus.py).
    if (harness.REPO / "tb").is_dir() and str(harness.REPO) not in sys.path:
        sys.path.insert(0, str(harness.REPO))
    try:
        from tb.top.icarus import kick_comb_blocks
    except ImportError as e:
        raise UserError("--sim icarus needs the intformer repository's tb/ folder") from e
    path = harness.build_dir("icarus", root.resolve())
    source, man = emit_simtop(config, path, mem_bytes=mem_bytes)
    kick_comb_blocks(source)
    (path / "script.txt").write_text("\n".join(record(man, jobs)) + "\n")
    out = path / "output.txt"
    params = {"script": str((path / "script.txt").resolve()), "output": str(out.resolve()),
              "beat": config.axi_data_width // 8}
    (path / "ports.json").write_text(json.dumps({"toplevel": "top", "ports": {},
                                                 "params": params}))
    try:
        harness.run(sim="icarus", sources=[source], toplevel="top",
                    test_module="intformer.gen.sim.simtop_script", path=path)
    except AssertionError as e:
        raise UserError(f"Icarus simulation failed; see {path}") from e
    results, sim = replay(man, jobs, out.read_text())
    return results, sim, man


def _unused(obj, seen=None) -> None:
    """Mark a component built only for its manifest, and its parts, as deliberately
    not elaborated (no UnusedElaboratable warnings)."""
    from amaranth.hdl import Elaboratable
    seen = set() if seen is None else seen
    if not isinstance(obj, Elaboratable) or id(obj) in seen:
        return
    seen.add(id(obj))
    obj._MustUse__silence = True
    for value in vars(obj).values():
        _unused(value, seen)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_config_args(parser)
    parser.add_argument("--images", type=int, default=10, help="test images to run (default 10)")
    parser.add_argument("--sim", choices=("verilator", "icarus"), default="verilator",
                        help="simulator (default verilator)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    mine = parser.add_argument_group("your model (see README, Bring your own model)")
    mine.add_argument("--model", type=path_arg, default=None, metavar="MODEL",
                      help="run this .onnx or .pt/.pth encoder instead of the digits one")
    mine.add_argument("--calib", type=path_arg, default=None, metavar="DATA.npz",
                      help="calibration inputs for --model: array x (N, tokens, dim)")
    mine.add_argument("--inputs", type=path_arg, default=None, metavar="DATA.npz",
                      help="inputs to run with --model (the first --images): array x")


def _mem_bytes(need: int) -> int:
    size = 1 << 16
    while size < need:
        size *= 2
    return size


class Digits:
    """The digits transformer and its first ``images`` test images: the integer model,
    each image's quantized input and label, and (after :meth:`compile`) each image's
    :func:`~intformer.sw.compile.compile_model` result for one design.

    Parameters
    ----------
    images : int
        How many test images, from the first.

    Raises
    ------
    UserError
        If ``images`` is not between 1 and the size of the test split.
    """

    def __init__(self, images: int):
        from ..sw.model.evaluate import load_digits_model
        from ..sw.model.vit import digits_split, patchify
        if images < 1:
            raise UserError(f"--images must be at least 1, not {images}")
        cfg, _, _, self.model = load_digits_model()
        _, x_test, _, y_test = digits_split()
        if images > len(x_test):
            raise UserError(f"--images must be at most {len(x_test)} (the test split), not "
                            f"{images}")
        self.labels = [int(y) for y in y_test[:images]]
        self.xs = [self.model.quantize_input(patchify(x_test[k:k + 1] / 16.0, cfg.patch))
                   for k in range(images)]
        self.progs: list = []

    def missing_units(self, manifest: dict) -> list[str]:
        """The commands the model needs that the design ``manifest`` does not implement
        (each op that computes is one command; slices and concatenations are layouts)."""
        command = {"residual_add": "residual"}
        used = {command.get(op.kind, op.kind) for op in self.model.ops
                if op.kind not in ("slice", "concat")}
        return sorted(used - set(manifest["commands"]["implemented"]))

    def compile(self, manifest: dict) -> None:
        """Compile every image for the design ``manifest``."""
        from ..sw.compile import compile_model
        self.progs = [compile_model(manifest, self.model, x[0]) for x in self.xs]
        used = {c["name"] for p, _ in self.progs for c in p.commands}
        assert used <= set(manifest["commands"]["implemented"]), used

    @property
    def jobs(self) -> list[tuple[bytes, bytes]]:
        """``(memory image, command stream)`` per image, for the driver."""
        return [(p.image, p.assemble()) for p, _ in self.progs]

    @property
    def need_bytes(self) -> int:
        """Memory the largest image and its stream take from :data:`BASE`."""
        return max(-(-len(p.image) // 64) * 64 + len(p.assemble()) for p, _ in self.progs)


def compare_images(digits: Digits, results: list) -> tuple[list[dict], dict]:
    """Compare every op's output tensor of each result with the integer golden model.

    Parameters
    ----------
    digits : Digits
    results : list of RunResult
        One per image, with ``irq_cycles`` set.

    Returns
    -------
    per_image : list of dict
        ``index``, ``label``, ``predicted``, ``golden``, ``bit_exact``, ``mismatched``
        (at most 5 names), ``cycles`` (the busy counter, else the interrupt's cycle
        count) and ``irq_cycles``.
    totals : dict
        ``cycles``, ``gemm_busy``, ``vector_busy``, ``gemm_rows`` and ``macs`` summed.
    """
    import numpy as np
    model = digits.model
    per_image = []
    totals = {"cycles": 0, "gemm_busy": 0, "vector_busy": 0, "gemm_rows": 0, "macs": 0}
    for k, (x, (prog, tensors), res) in enumerate(zip(digits.xs, digits.progs, results,
                                                      strict=True)):
        env = model.run(x)
        mismatched = []
        if res.error != "none":
            mismatched.append(f"error {res.error} at command {res.error_index}")
        else:
            for op in model.ops:
                if not np.array_equal(prog.read(res.image, tensors[op.output]),
                                      env[op.output][0]):
                    mismatched.append(op.output)
        got = prog.read(res.image, tensors[model.output]).reshape(-1)
        c = res.counters
        cycles = c.get("cycles_busy", res.irq_cycles)
        per_image.append({
            "index": k, "label": digits.labels[k],
            "predicted": int(np.argmax(got)),
            "golden": int(np.argmax(env[model.output][0].reshape(-1))),
            "bit_exact": not mismatched, "mismatched": mismatched[:5],
            "cycles": cycles, "irq_cycles": res.irq_cycles,
        })
        totals["cycles"] += cycles
        for name in ("gemm_busy", "vector_busy", "gemm_rows"):
            totals[name] += c.get(name, 0)
        # MACs the model needs (M * K * N of every GEMM command), not array slots:
        # ragged tiles and zero padding do not count.
        totals["macs"] += sum(cmd["m"] * cmd["k"] * cmd["n"] for cmd in prog.commands
                              if cmd["name"] == "gemm")
    return per_image, totals


def summarize(manifest: dict, per_image: list[dict], totals: dict) -> dict:
    """The figures of :func:`compare_images`'s results: ``array``, ``macs_per_cycle``,
    ``images``, ``bit_exact``, ``accuracy``, ``golden_accuracy``, ``cycles_per_image``,
    ``macs_per_image``, utilization, ``array_occupancy`` and ``phases``."""
    rows, cols = manifest["config"]["array_rows"], manifest["config"]["array_cols"]
    n = len(per_image)
    cyc = totals["cycles"]
    return {
        "array": f"{rows}x{cols}", "macs_per_cycle": rows * cols, "images": n,
        "bit_exact": sum(r["bit_exact"] for r in per_image),
        "accuracy": sum(r["predicted"] == r["label"] for r in per_image) / n,
        "golden_accuracy": sum(r["golden"] == r["label"] for r in per_image) / n,
        "cycles_per_image": cyc / n,
        "macs_per_image": totals["macs"] / n,
        "mac_utilization": totals["macs"] / (cyc * rows * cols) if cyc else 0.0,
        "gemm_phase_utilization": (totals["macs"] / (totals["gemm_busy"] * rows * cols)
                                   if totals["gemm_busy"] else 0.0),
        "array_occupancy": (totals["gemm_rows"] / totals["gemm_busy"]
                            if totals["gemm_busy"] else 0.0),
        "phases": {
            "gemm_busy": totals["gemm_busy"] / cyc if cyc else 0.0,
            "vector_busy": totals["vector_busy"] / cyc if cyc else 0.0,
            "dma_other": (cyc - totals["gemm_busy"] - totals["vector_busy"]) / cyc
            if cyc else 0.0,
        },
    }


def print_summary(report: dict) -> None:
    """Print :func:`summarize`'s accuracy and cycle lines."""
    n = report["images"]
    print(f"bit-exact           {report['bit_exact']}/{n}")
    print(f"accuracy            {report['accuracy']:.3f} (integer golden "
          f"{report['golden_accuracy']:.3f})")
    print(f"cycles per image    {report['cycles_per_image']:.0f}")


def run(args) -> int:
    if args.model is not None:
        from .usermodel import run_model
        return run_model(args)
    from ..hw.axi import FlatPorts
    from ..hw.simtop import SimTop
    from .emit import manifest as make_manifest

    config = config_from_args(args)
    digits = Digits(args.images)
    # The manifest needs only the component, not its Verilog: compile first to size
    # the memory.
    # (the memory only as large as the address space, for designs with short addresses).
    top = FlatPorts(SimTop(config, mem_bytes=min(1 << 20, 1 << config.axi_addr_width)),
                    flatten=("s_axil",))
    man = make_manifest(config, top)
    _unused(top)
    # Refuse a design that cannot run the model before compiling or building it.
    missing = digits.missing_units(man)
    if missing:
        raise UserError(f"this configuration cannot run the digits transformer: it has no "
                        f"unit for {', '.join(missing)} (see `intformer presets`; the "
                        f"default preset has them all)")
    if not man["counters"]:
        raise UserError("intformer run reports performance counters, and this "
                        "configuration leaves them out (perf_counters = false)")
    digits.compile(man)
    mem_bytes = _mem_bytes(BASE + digits.need_bytes)
    log = None if args.json else print
    jobs = digits.jobs
    if args.sim == "verilator":
        binary, man, build_s = build_verilator(config, mem_bytes=mem_bytes, log=log)
        results, sim = run_images(binary, man, jobs, work=binary.parent.parent / "work")
    else:
        t0 = time.monotonic()
        results, sim, man = run_images_icarus(config, jobs, mem_bytes=mem_bytes)
        build_s = time.monotonic() - t0 - sim["seconds"]

    per_image, totals = compare_images(digits, results)
    n = len(per_image)
    report = {
        "config": args.config and str(args.config) or (args.preset or "default"),
        **summarize(man, per_image, totals),
        "schedule": digits.progs[0][0].schedule,
        "sim": args.sim, "sim_cycles": sim["cycles"], "sim_seconds": sim["seconds"],
        "sim_cycles_per_second": sim["cycles"] / sim["seconds"] if sim["seconds"] else 0.0,
        # CPU time as well as wall time: on a shared machine wall time says more about
        # the other jobs than about the simulator.
        "sim_cpu_seconds": sim["cpu_seconds"],
        "sim_cycles_per_cpu_second": (sim["cycles"] / sim["cpu_seconds"]
                                      if sim["cpu_seconds"] else None),
        "build_seconds": round(build_s, 1),
        "per_image": per_image,
    }
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        p = report["phases"]
        print(f"{n} images on {report['array']} ({report['macs_per_cycle']} MACs/cycle), "
              f"{args.sim}, {report['schedule']} schedule")
        print_summary(report)
        print(f"MAC utilization     {report['mac_utilization']:.3f} of peak over the run, "
              f"{report['gemm_phase_utilization']:.3f} in GEMM phases "
              f"({report['macs_per_image']:.0f} MACs per image)")
        print(f"array occupancy     {report['array_occupancy']:.3f} (A rows entered per "
              f"GEMM-busy cycle; ragged tiles count as full rows)")
        print(f"time per phase      GEMM {p['gemm_busy']:.3f}, vector {p['vector_busy']:.3f}, "
              f"DMA/other {p['dma_other']:.3f}")
        cpu = report["sim_cycles_per_cpu_second"]
        print(f"simulation          {report['sim_cycles']} cycles in "
              f"{report['sim_seconds']:.2f} s = {report['sim_cycles_per_second']:.0f} cycles/s"
              + (f" ({cpu:.0f} per CPU second)" if cpu else ""))
    return 0 if report["bit_exact"] == n else 1
