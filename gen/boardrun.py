"""``intformer board run``: the digits Vision Transformer through a board's host link.

Each image is compiled for the board's preset and run by the host driver
(:class:`intformer.sw.driver.Driver`) over :class:`intformer.sw.link.SerialBus`, and
every op's output is compared bit-exactly with the integer golden model, as in
``intformer run`` (:mod:`intformer.gen.run`, whose compile and compare code this
reuses).

The serial port is the board's (``--port``) or a simulation of the whole board top
(``--sim``): :class:`~intformer.hw.boardtop.BoardTop` (accelerator, memory, UART and
host bridge) under Verilator, with a C++ main (``gen/sim/board_main.cpp``) that plays
the board's USB-serial chip on a pseudo-terminal. The host opens that terminal as a
serial port, so both run the same host code, byte for byte. The simulation runs the
UART at :data:`SIM_DIVISOR` clock cycles per bit (the board's is slower); link time is
reported at the board's baud rate, from the bytes on the wire, and the simulation
measures the link's throughput in simulated time.

A board whose preset lacks a unit the model needs is refused before anything is
built: non-linear ops are never computed on the host.
"""

from __future__ import annotations

import argparse
import asyncio
import inspect
import json
import subprocess
from pathlib import Path

from .cli import UserError
from .run import BASE, IRQ_LIMIT, Digits, compare_images, print_summary
from .run import summarize as summarize_images
from .sim.vmodel import build_model, hw_digest, write_design

__all__ = ["add_arguments", "run", "SIM_DIVISOR", "board_manifest", "refuse_model",
           "emit_board", "build_board_sim", "BoardSim", "run_jobs", "summarize"]

#: UART clock cycles per bit in the board simulation (the UART's minimum).
SIM_DIVISOR = 4
#: Seconds of quiet after which the host gives up a response in the simulation, where
#: a 4 KB frame takes 164,000 cycles to shift in before its answer starts: about 1 s
#: at the simulation's usual speed, several on a loaded machine.
SIM_SILENCE = 30.0
#: The same on a board's port, where a 4 KB frame takes 41 ms at 1,000,000 baud.
PORT_SILENCE = 1.0
TEMPLATE = Path(__file__).with_name("sim") / "board_main.cpp"
BUILD_ROOT = Path("build") / "board"
#: Verilator and C++ options of the board simulation. The C++ is compiled at -O1 and
#: below: the build takes about half as long as at -O2 and the link, not the model,
#: is what the simulation spends its cycles on.
VERILATOR_OPTS = ("-O3", "--x-assign", "fast", "--x-initial", "fast")
MAKE_OPTS = "OPT_FAST=-O1 OPT_SLOW=-O0 OPT_GLOBAL=-O1"


def _top(b, divisor: int, power_on_reset: bool):
    from ..hw.boardtop import BoardTop
    return BoardTop(b.config, mem_bytes=b.mem_bytes, divisor=divisor,
                    power_on_reset=power_on_reset)


def board_manifest(b, *, divisor: int | None = None) -> dict:
    """The manifest of board ``b``'s design (its UART at ``divisor`` cycles per bit,
    default the board's), without elaborating it."""
    from .emit import manifest
    from .run import _unused
    top = _top(b, b.divisor if divisor is None else divisor, False)
    man = manifest(b.config, top)
    _unused(top)
    return man


def refuse_model(b, manifest: dict, digits: Digits) -> None:
    """Refuse a board whose design cannot run the digits transformer.

    Raises
    ------
    UserError
        Naming the board, its preset and the missing units.
    """
    missing = digits.missing_units(manifest)
    if missing:
        raise UserError(f"board {b.name} cannot run the digits transformer: its preset "
                        f"{b.preset!r} has no unit for {', '.join(missing)}, and `board "
                        f"run` never computes them on the host")


def emit_board(b, path: Path, *, divisor: int) -> tuple[Path, dict]:
    """Write ``<path>/board.v`` (:class:`BoardTop` with ``power_on_reset``, UART at
    ``divisor``) and ``<path>/manifest.json``; return the Verilog path and the
    manifest."""
    return write_design(_top(b, divisor, True), b.config, path / "board.v")


def _build_key(b, divisor: int) -> str:
    """A hash of everything the simulator binary depends on."""
    h = hw_digest()
    h.update(repr((b, b.config, divisor, VERILATOR_OPTS, MAKE_OPTS)).encode())
    h.update(TEMPLATE.read_bytes())
    # The code that writes the design, not the whole of this module: the report's
    # code does not change the binary.
    for fn in (_top, emit_board):
        h.update(inspect.getsource(fn).encode())
    return h.hexdigest()[:16]


def build_board_sim(b, *, divisor: int = SIM_DIVISOR, root: Path = BUILD_ROOT,
                    log=None) -> tuple[Path, dict, float]:
    """Build (or reuse) the Verilator simulation of board ``b``'s design; return the
    binary, the manifest and the build time in seconds (0 when reused).

    The build is cached under ``root`` by a hash of the board, the hardware sources and
    the code that writes the design (:func:`~intformer.gen.sim.vmodel.build_model`).

    Raises
    ------
    UserError
        If ``verilator`` is not installed or the build fails.
    """
    return build_model(
        root / f"{b.name}-{_build_key(b, divisor)}",
        emit=lambda path: emit_board(b, path, divisor=divisor),
        main=TEMPLATE, binary="Vboard", cflags=f"-DDIVISOR={divisor}", makeflags=MAKE_OPTS,
        verilator_opts=VERILATOR_OPTS, what=f"the {b.name} board (`board run --sim`)",
        log=log)


class BoardSim:
    """A running board simulation (``build_board_sim``'s binary): a context manager
    whose :attr:`path` is the pseudo-terminal to open as the board's serial port.

    Parameters
    ----------
    binary : Path

    Attributes
    ----------
    path : str
        The pseudo-terminal's slave device.
    figures : dict or None
        After the simulation ends (:meth:`close`): ``cycles``, ``seconds`` (wall),
        ``link_cycles`` (a frame in progress or a byte on the line),
        ``bytes_to_board`` and ``bytes_from_board``.

    Raises
    ------
    UserError
        If the simulation does not start.
    """

    def __init__(self, binary: Path):
        self.proc = subprocess.Popen([str(binary)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
        line = self.proc.stdout.readline().split()
        if len(line) != 2 or line[0] != "PTY":
            self.proc.kill()
            self.proc.wait()
            raise UserError(f"board simulation {binary} did not start (said {line!r})")
        self.path = line[1]
        self.figures: dict | None = None

    def close(self) -> dict:
        """End the simulation and return :attr:`figures`.

        Raises
        ------
        UserError
            If the simulation fails or does not end within 60 seconds.
        """
        if self.figures is not None:
            return self.figures
        try:
            # communicate() closes standard input: the simulation's signal to end.
            out, _ = self.proc.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise UserError("board simulation did not end within 60 s of its input "
                            "closing") from None
        parts = out.split()
        if self.proc.returncode or len(parts) != 6 or parts[0] != "T":
            raise UserError(f"board simulation ended with status {self.proc.returncode} "
                            f"and output {out.strip()[:200]!r}")
        self.figures = {"cycles": int(parts[1]), "seconds": float(parts[2]),
                        "link_cycles": int(parts[3]), "bytes_to_board": int(parts[4]),
                        "bytes_from_board": int(parts[5])}
        return self.figures

    def __enter__(self) -> BoardSim:
        return self

    def __exit__(self, *exc) -> None:
        if self.proc.poll() is None and exc[0] is not None:
            self.proc.kill()
            self.proc.wait()
        elif self.figures is None:
            self.close()


def run_jobs(manifest: dict, bus, jobs: list) -> list:
    """Run ``jobs`` (``(image, stream)`` byte pairs) one after the other through the
    driver on ``bus`` (a :class:`~intformer.sw.link.SerialBus`); return a
    :class:`~intformer.sw.driver.RunResult` per job with ``irq_cycles`` (the bridge's
    count) added.

    Raises
    ------
    UserError
        Naming the image, when the link fails (:class:`~intformer.sw.link.LinkError`)
        or no interrupt comes.
    """
    from ..sw.driver import Driver
    from ..sw.link import LinkError
    results = []
    for k, (image, stream) in enumerate(jobs):
        drv = Driver(manifest, bus, base=BASE)
        try:
            res = asyncio.run(drv.run(image, stream, command_bytes=manifest["commands"]["bytes"],
                                      timeout=IRQ_LIMIT, check=False))
        except (LinkError, TimeoutError) as e:
            raise UserError(f"image {k}: {e}") from e
        res.irq_cycles = bus.irq_cycles
        results.append(res)
    return results


def summarize(b, manifest: dict, digits: Digits, results: list, stats: dict, *, baud: int,
              sim: dict | None, divisor: int) -> dict:
    """The ``board run`` report (see the README): :func:`intformer.gen.run.summarize`'s
    figures, images per second at the board clock, and the link: bytes each way,
    seconds at ``baud``, and throughput measured in simulated time (``sim``, the
    :class:`BoardSim` figures, UART at ``divisor``) or in wall time on a board."""
    per_image, totals = compare_images(digits, results)
    report = summarize_images(manifest, per_image, totals)
    n = report["images"]
    payload = sum(2 * len(image) + len(stream) for image, stream in digits.jobs)
    wire = stats["bytes_out"] + stats["bytes_in"]
    link_s = wire * 10 / baud
    accel_s = totals["cycles"] / b.clock_hz
    link = {
        "frames": stats["frames"], "retries": stats["retries"],
        "bytes_out": stats["bytes_out"], "bytes_in": stats["bytes_in"],
        "payload_bytes": payload, "baud": baud,
        "seconds_at_baud": link_s,
        "wire_limit_bytes_per_second": baud / 10,
    }
    if sim is not None:
        # The simulated link runs at clock / divisor baud. Its busy cycles are bit times
        # (10 per byte on the line, which scale with the divisor) and the rest (the
        # bridge's turnaround, gaps between bytes), which do not: the board's link time
        # scales the first part only.
        sim_wire = sim["bytes_to_board"] + sim["bytes_from_board"]
        other = sim["link_cycles"] - 10 * divisor * sim_wire
        sim_s = sim["link_cycles"] / b.clock_hz
        board_s = (10 * b.divisor * sim_wire + other) / b.clock_hz
        link["measured"] = {
            "how": (f"simulated at {divisor} cycles per bit: {sim['link_cycles']} cycles "
                    f"with a frame in progress, {other} of them not bit times"),
            "simulated_baud": b.clock_hz // divisor,
            "simulated_bytes_per_second": sim_wire / sim_s if sim_s else 0.0,
            "other_cycles": other,
            "seconds_at_baud": board_s,
            "bytes_per_second": sim_wire / board_s if board_s else 0.0,
            "payload_bytes_per_second": payload / board_s if board_s else 0.0,
        }
    else:
        wall = stats["seconds"]
        link["measured"] = {
            "how": "wall time of the host's requests, round trips included",
            "seconds": wall,
            "bytes_per_second": wire / wall if wall else 0.0,
            "payload_bytes_per_second": payload / wall if wall else 0.0,
        }
    return {
        "board": b.name, "preset": b.preset, "clock_hz": b.clock_hz,
        "where": "sim" if sim is not None else "board",
        **report,
        "irq_cycles_per_image": sum(r["irq_cycles"] for r in per_image) / n,
        "images_per_second": n / accel_s if accel_s else 0.0,
        "images_per_second_with_link": n / (accel_s + link_s),
        "link": link,
        **({"sim": sim} if sim is not None else {}),
        "per_image": per_image,
    }


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``board run`` options."""
    from ..boards import BOARDS
    parser.add_argument("board", metavar="BOARD", choices=BOARDS,
                        help=f"the board: {', '.join(BOARDS)}")
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--sim", action="store_true",
                       help="simulate the whole board top (Verilator), UART included")
    where.add_argument("--port", metavar="DEV", help="the board's serial port")
    parser.add_argument("--images", type=int, default=1, help="test images to run (default 1)")
    parser.add_argument("--baud", type=int, default=None,
                        help="the port's baud rate (with --port; default the board's)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")


def run(args) -> int:
    """``intformer board run``; 0 when every tensor of every image is bit-exact."""
    from ..boards import board
    from ..sw.link import LinkError, SerialBus, open_serial
    b = board(args.board)
    if args.sim and args.baud is not None:
        raise UserError("--baud applies to --port; the simulation's UART runs at "
                        f"{SIM_DIVISOR} cycles per bit")
    baud = b.baud if args.baud is None else args.baud
    if baud <= 0:
        raise UserError(f"--baud must be positive, not {baud}")
    digits = Digits(args.images)
    divisor = SIM_DIVISOR if args.sim else b.divisor
    man = board_manifest(b, divisor=divisor)
    refuse_model(b, man, digits)
    digits.compile(man)
    need = BASE + digits.need_bytes
    if need > b.mem_bytes:
        raise UserError(f"board {b.name}'s memory of {b.mem_bytes} bytes cannot hold an "
                        f"image's program ({need} bytes)")
    log = None if args.json else print
    jobs = digits.jobs
    build_s, sim = 0.0, None

    def on_port(man: dict, path: str, silence: float):
        port = open_serial(path, baud, timeout=silence)
        bus = SerialBus(man, port, silence=silence)
        try:
            return run_jobs(man, bus, jobs), bus
        finally:
            port.close()

    try:
        if args.sim:
            binary, man, build_s = build_board_sim(b, divisor=divisor, log=log)
            with BoardSim(binary) as simulation:
                results, bus = on_port(man, simulation.path, SIM_SILENCE)
                sim = simulation.close()
        else:
            results, bus = on_port(man, args.port, PORT_SILENCE)
    except LinkError as e:
        raise UserError(str(e)) from e
    report = summarize(b, man, digits, results, bus.stats, baud=baud, sim=sim,
                       divisor=divisor)
    report["build_seconds"] = round(build_s, 1)
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        _print(report, args)
    return 0 if report["bit_exact"] == report["images"] else 1


def _print(report: dict, args) -> None:
    link, meas = report["link"], report["link"]["measured"]
    where = "simulation (Verilator, whole board top)" if args.sim else args.port
    print(f"{report['images']} images on {report['board']} ({report['preset']} preset, "
          f"{report['array']} array, {report['clock_hz'] / 1e6:g} MHz), {where}")
    print_summary(report)
    print(f"images per second   {report['images_per_second']:.1f} at "
          f"{report['clock_hz'] / 1e6:g} MHz (accelerator only; "
          f"{report['images_per_second_with_link']:.2f} with the link)")
    print(f"link                {link['bytes_out']} bytes out, {link['bytes_in']} in, "
          f"{link['frames']} frames, {link['retries']} retries: "
          f"{link['seconds_at_baud']:.3f} s at {link['baud']} baud")
    at = f" at {link['baud']} baud" if "simulated_baud" in meas else ""
    print(f"link throughput     {meas['bytes_per_second']:.0f} B/s on the wire, "
          f"{meas['payload_bytes_per_second']:.0f} B/s of memory data{at} (the wire's "
          f"limit {link['wire_limit_bytes_per_second']:.0f}); {meas['how']}")
    if "sim" in report:
        s = report["sim"]
        print(f"simulation          {s['cycles']} cycles in {s['seconds']:.2f} s = "
              f"{s['cycles'] / s['seconds'] if s['seconds'] else 0:.0f} cycles/s")
