"""Verilator models with a C++ main of their own, built once per design and cached.

``intformer run`` (:class:`~intformer.hw.simtop.SimTop` with ``simtop_main.cpp``) and
``intformer board run --sim`` (:class:`~intformer.hw.boardtop.BoardTop` with
``board_main.cpp``) both build their simulator here: a folder per design, named by a
hash of everything the binary depends on (:func:`hw_digest` plus the caller's own
parts), a lock so that parallel test workers build it once, and ccache when installed.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["hw_digest", "build_model", "write_design", "strip_memory_init",
           "drop_zero_memory_init"]


def strip_memory_init(text: str) -> str:
    """Replace Yosys's element-by-element zero initialisation of large memories (one
    line per word: megabytes of Verilog for the simulation memory) by a loop."""
    pattern = re.compile(r"  reg \[(\d+):0\] (\S+) \[(\d+):0\];\n  initial begin\n"
                         r"(?:    \2\[\d+\] = \d+'h0+;\n)+  end\n")

    def loop(m):
        width, name, top = m[1], m[2], m[3]
        if int(top) < 1024:
            return m[0]
        var = f"{name}_init_i"
        return (f"  reg [{width}:0] {name} [{top}:0];\n  integer {var};\n"
                f"  initial for ({var} = 0; {var} <= {top}; {var} = {var} + 1) "
                f"{name}[{var}] = 0;\n")
    return pattern.sub(loop, text)


_ZERO_INIT = re.compile(r"  initial begin\n(?:    \S+\[\d+\] = \d+'[hd]0+;\n)+  end\n")


def drop_zero_memory_init(text: str) -> str:
    """Remove the ``initial`` blocks that set every word of a memory to zero one line at
    a time (what a memory without contents becomes in Amaranth's Verilog). Block RAM
    starts at zero anyway, and Yosys spends minutes flattening a design whose 256 KiB
    memory has one ``$meminit`` per word. Memories with contents keep them."""
    return _ZERO_INIT.sub("", text)


def write_design(top, config, source: Path) -> tuple[Path, dict]:
    """Write component ``top`` as Verilog module ``top`` to ``source`` (large memories
    zeroed by a loop) and its manifest to ``manifest.json`` beside it; return the
    Verilog path and the manifest."""
    from amaranth.back import verilog

    from ..emit import manifest
    man = manifest(config, top)
    source.parent.mkdir(parents=True, exist_ok=True)
    text = verilog.convert(top, name="top", emit_src=False, strip_internal_attrs=True)
    source.write_text(strip_memory_init(text))
    (source.parent / "manifest.json").write_text(json.dumps(man, indent=1))
    return source, man


def hw_digest() -> hashlib._Hash:
    """A SHA-256 object fed with the hardware sources, the manifest's maker and this
    module (which writes the Verilog): what every generated design depends on.
    Callers add their own parts."""
    h = hashlib.sha256()
    root = Path(__file__).resolve().parents[2]
    for f in sorted((root / "hw").glob("*.py")):
        h.update(f.name.encode())
        h.update(f.read_bytes())
    h.update((root / "gen" / "emit.py").read_bytes())
    h.update(Path(__file__).read_bytes())
    return h


def build_model(path: Path, *, emit: Callable[[Path], tuple[Path, dict]], main: Path,
                binary: str, cflags: str, makeflags: str, verilator_opts=(),
                what: str, hint: str = "", log=None) -> tuple[Path, dict, float]:
    """Build (or reuse) the Verilator model in folder ``path``; return the binary, the
    design's manifest and the build time in seconds (0 when reused).

    Parameters
    ----------
    path : Path
        The design's build folder (its name should be a hash of the design).
    emit : callable
        ``emit(path) -> (verilog, manifest)``: writes the design's Verilog and
        ``manifest.json`` into ``path``.
    main : Path
        The C++ main, copied into ``path``.
    binary : str
        The executable's name (built in ``path / "obj"``).
    cflags, makeflags : str
        Verilator's ``-CFLAGS`` and ``-MAKEFLAGS``.
    verilator_opts : tuple of str
        More Verilator options.
    what : str
        What is built, for the log line and errors.
    hint : str
        Appended to the error when Verilator is missing (an alternative).
    log : callable or None
        Called with a line when a build starts.

    Raises
    ------
    UserError
        If ``verilator`` is not installed or the build fails.
    """
    from ..cli import UserError
    from ..lint import VERILATOR_WAIVERS
    exe = shutil.which("verilator")
    if exe is None:
        raise UserError(f"verilator not found on PATH; install Verilator 5 for {what}{hint}")
    path.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        exe_path = path / "obj" / binary
        man_file = path / "manifest.json"
        if exe_path.exists() and man_file.exists():
            return exe_path, json.loads(man_file.read_text()), 0.0
        t0 = time.monotonic()
        if log:
            log(f"building the Verilator model of {what} in {path} (once per design)")
        source, man = emit(path)
        local_main = path / main.name
        shutil.copyfile(main, local_main)
        # Models of the vendor primitives the design instantiates (ecp5_dsp's
        # MULT18X18D, dsp_packing's SB_MAC16).
        from intformer.hw import ecp5, ice40
        models = [*ice40.sim_models([source], path), *ecp5.sim_models([source], path)]
        cmd = [exe, "--cc", "--exe", "--build", "-j", "2", "-Wno-fatal", *VERILATOR_WAIVERS,
               *verilator_opts, "--top-module", "top", "-Mdir", str(path / "obj"),
               "-o", binary, "-CFLAGS", cflags, "-MAKEFLAGS", makeflags,
               *(str(f.resolve()) for f in models), str(source.resolve()),
               str(local_main.resolve())]
        env = dict(os.environ)
        if "OBJCACHE" not in env and shutil.which("ccache"):
            env["OBJCACHE"] = "ccache"
            # Paths relative to the build folder, so that the same generated C++ in
            # another folder (a hardware change that leaves this design alone) hits.
            env.setdefault("CCACHE_BASEDIR", str(path.resolve()))
        proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
        (path / "build.log").write_text(proc.stdout + proc.stderr)
        if proc.returncode or not exe_path.exists():
            raise UserError(f"Verilator build failed; see {path / 'build.log'}")
        return exe_path, man, time.monotonic() - t0
