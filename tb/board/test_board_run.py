"""``board run``: the digits transformer through the host link, on a Verilator
simulation of the whole board top (UART included), and the link's faults.

The host side is the one a board gets: :class:`intformer.sw.link.SerialBus` on a
pyserial port, here the pseudo-terminal of ``gen/sim/board_main.cpp``. The ULX3S
design's Verilator build is cached under ``build/board``; one image then takes about
35 s of simulation, the link moving 120 KB at 4 cycles per bit, so the faults of
``make test`` hit small transfers and those inside image runs are in the slow set.
"""

import argparse
import asyncio
import json
import shutil
import struct

import pytest

from intformer.boards import BOARDS, board
from intformer.gen import boardrun
from intformer.gen.cli import UserError
from intformer.gen.run import Digits
from intformer.sw.link import LinkChecksumError, LinkTimeout, SerialBus, open_serial
from tb.board.faults import Fault, FaultyPort, frame_is

#: Seconds of quiet before the host gives up an answer in the fault tests. Transfers
#: are small (at most 256 bytes a frame, 10,000 cycles, a tenth of a second even on a
#: loaded machine), so that a lost byte costs little waiting.
SILENCE = 1.0


needs_verilator = pytest.mark.skipif(shutil.which("verilator") is None,
                                     reason="verilator not installed")


def board_run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    boardrun.add_arguments(parser)
    return boardrun.run(parser.parse_args(argv))


def test_refuses_model():
    # Refused before anything is built or opened: no port, no simulation.
    for where in (["--sim"], ["--port", "/dev/null-does-not-exist"]):
        with pytest.raises(UserError, match=(
                "^board icebreaker cannot run the digits transformer: its preset "
                "'icebreaker' has no unit for gelu, layernorm, residual, softmax, and "
                "`board run` never computes them on the host$")):
            board_run(["icebreaker", *where])


@pytest.mark.parametrize("name", [n for n in BOARDS if n != "icebreaker"])
def test_refuses_model_other_boards(name):
    """Every other board is refused exactly when its preset lacks a unit."""
    b = board(name)
    missing = Digits(1).missing_units(boardrun.board_manifest(b))
    if not missing:
        pytest.skip(f"the {b.preset} preset runs the model")
    with pytest.raises(UserError, match=f"its preset '{b.preset}' has no unit for "
                                        f"{', '.join(missing)}, "):
        board_run([name, "--sim"])


def test_arguments(capsys):
    with pytest.raises(UserError, match="^--baud applies to --port"):
        board_run(["ulx3s", "--sim", "--baud", "115200"])
    with pytest.raises(UserError, match="^--baud must be positive, not 0$"):
        board_run(["ulx3s", "--port", "/dev/null", "--baud", "0"])
    with pytest.raises(UserError, match="^--images must be at least 1, not 0$"):
        board_run(["ulx3s", "--sim", "--images", "0"])
    for argv in (["ulx3s"], ["ulx3s", "--sim", "--port", "x"], ["nexys", "--sim"]):
        with pytest.raises(SystemExit):
            board_run(argv)
    capsys.readouterr()


def test_no_port():
    with pytest.raises(UserError, match="cannot open serial port '/dev/intformer-none'"):
        board_run(["ulx3s", "--port", "/dev/intformer-none"])


@needs_verilator
def test_sim_run(capsys):
    """One image on the simulated ULX3S, every tensor bit-exact, the link measured."""
    assert board_run(["ulx3s", "--sim", "--images", "1", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    b = board("ulx3s")
    assert report["board"] == "ulx3s" and report["where"] == "sim"
    assert report["images"] == report["bit_exact"] == 1
    row = report["per_image"][0]
    assert row["bit_exact"] and row["predicted"] == row["golden"]
    # The busy counter runs from start to the interrupt; the bridge counts from the
    # start write's answer, a few cycles more.
    assert 0 < row["cycles"] <= row["irq_cycles"] + 2
    assert report["images_per_second"] == pytest.approx(b.clock_hz / row["cycles"])
    link, sim = report["link"], report["sim"]
    assert link["retries"] == 0
    # Every byte the host sent reached the board and back.
    assert sim["bytes_to_board"] == link["bytes_out"]
    assert sim["bytes_from_board"] == link["bytes_in"]
    assert link["seconds_at_baud"] == pytest.approx((link["bytes_out"] + link["bytes_in"])
                                                    * 10 / b.baud)
    # Stop-and-wait framing: the wire is busy nearly all of the link's time, never more.
    meas = link["measured"]
    assert 0.95 * b.baud / 10 < meas["bytes_per_second"] <= b.baud / 10
    assert meas["simulated_baud"] == b.clock_hz // boardrun.SIM_DIVISOR


def _open(sim, man, faults):
    port = FaultyPort(open_serial(sim.path, 1_000_000, timeout=SILENCE), faults)
    return port, SerialBus(man, port, silence=SILENCE, chunk=256)


@needs_verilator
def test_link_faults():
    """Corrupted and lost bytes either way: requests that are safe to repeat are
    retried (``stats["retries"]``), a register write whose answer is lost is a clear
    error, the driver's run fails naming the image, and the link then works clean."""
    b = board("ulx3s")
    binary, man, _ = boardrun.build_board_sim(b)
    ctrl = man["registers"]["ctrl"]["offset"]
    base = man["registers"]["window_base"]["offset"]
    data = bytes(range(256))
    with boardrun.BoardSim(binary) as sim:
        port, bus = _open(sim, man, [
            # A flipped payload byte: the bridge answers BAD_CRC and the host resends.
            Fault("out", "flip", frame_is(man, "mem_write"), byte=40),
            # A lost request byte: the bridge times out, answers TIMEOUT, host resends.
            Fault("out", "drop", frame_is(man, "mem_write"), byte=100),
            # A lost answer byte: the host times out, drains and asks again.
            Fault("in", "drop", frame_is(man, "mem_read"), byte=200),
            # A corrupted answer: bad CRC, asked again.
            Fault("in", "flip", frame_is(man, "reg_read"), byte=3),
        ])
        asyncio.run(bus.write_mem(0x1000, data))
        assert asyncio.run(bus.read_mem(0x1000, len(data))) == data
        asyncio.run(bus.read_reg(base))
        assert bus.stats["retries"] == 4, port.log
        assert all(f.fired for f in port.faults)

        # A register write's answer lost or corrupted: not repeated (a second `start`
        # is not the first), the error names the request.
        port.faults = [Fault("in", "drop", frame_is(man, "reg_write", base), byte=3)]
        with pytest.raises(LinkTimeout, match=(
                rf"^board link: no answer to reg_write at 0x{base:x} within {SILENCE} s "
                rf"\(1 of 2 bytes received\)$")):
            asyncio.run(bus.write_reg(base, 0))
        port.faults = [Fault("in", "flip", frame_is(man, "reg_write", base), byte=1)]
        with pytest.raises(LinkChecksumError, match=(
                rf"^board link: bad checksum in the answer to reg_write at 0x{base:x} ")):
            asyncio.run(bus.write_reg(base, 0))
        # The driver's run (an empty stream) fails with the link's error, naming the
        # image.
        port.faults = [Fault("in", "drop", frame_is(man, "reg_write", ctrl), byte=0)]
        with pytest.raises(UserError, match=rf"^image 0: board link: no answer to reg_write "
                                            rf"at 0x{ctrl:x} within"):
            boardrun.run_jobs(man, bus, [(bytes(64), b"")])
        assert all(f.fired for f in port.faults)

        # Clean again: every request answered first time.
        port.faults = []
        retries = bus.stats["retries"]
        data = bytes(range(255, -1, -1))
        asyncio.run(bus.write_mem(0x1100, data))
        assert asyncio.run(bus.read_mem(0x1000, 0x200)) == bytes(range(256)) + data
        asyncio.run(bus.write_reg(base, 0x40))
        assert asyncio.run(bus.read_reg(base)) == 0x40
        assert bus.stats["retries"] == retries
        port.close()
    assert sim.figures["bytes_to_board"] == bus.stats["bytes_out"] - 1


@needs_verilator
@pytest.mark.slow
def test_image_faults():
    """Faults inside an image's run (its upload, the status polls, the result's read
    back) are retried and the image is still bit-exact; a lost answer to the start
    write fails the run, naming the image, and the next run is clean and bit-exact."""
    b = board("ulx3s")
    binary, man, _ = boardrun.build_board_sim(b)
    digits = Digits(1)
    digits.compile(man)
    status = man["link"]["commands"]["status"]
    ctrl = man["registers"]["ctrl"]["offset"]
    with boardrun.BoardSim(binary) as sim:
        port, bus = _open(sim, man, [
            Fault("out", "flip", frame_is(man, "mem_write", 4096), byte=200, mask=0x80),
            Fault("in", "flip", lambda f: f[1] == status, byte=2),
            Fault("in", "drop", frame_is(man, "mem_read", 8192), byte=255),
            Fault("out", "drop", frame_is(man, "reg_read"), byte=7),
        ])
        results = boardrun.run_jobs(man, bus, digits.jobs)
        assert all(f.fired for f in port.faults), port.log
        assert bus.stats["retries"] == 4, port.log
        per_image, _ = boardrun.compare_images(digits, results)
        assert per_image[0]["bit_exact"], per_image[0]["mismatched"]

        port.faults = [Fault("in", "drop", frame_is(man, "reg_write", ctrl), byte=2)]
        with pytest.raises(UserError, match=rf"^image 0: board link: no answer to reg_write "
                                            rf"at 0x{ctrl:x} within"):
            boardrun.run_jobs(man, bus, digits.jobs)
        port.faults = []
        results = boardrun.run_jobs(man, bus, digits.jobs)
        assert bus.stats["retries"] == 4
        port.close()
    per_image, _ = boardrun.compare_images(digits, results)
    assert per_image[0]["bit_exact"], per_image[0]["mismatched"]
    assert sim.figures["bytes_to_board"] == bus.stats["bytes_out"] - 1


@needs_verilator
@pytest.mark.slow
def test_port_run(capsys, monkeypatch):
    """``--port`` on the simulation's pseudo-terminal: the board path of the host code,
    with the link measured in wall time."""
    binary, _, _ = boardrun.build_board_sim(board("ulx3s"))
    # The simulation shifts a 4 KB frame in for a second or more before answering.
    monkeypatch.setattr(boardrun, "PORT_SILENCE", 30.0)
    with boardrun.BoardSim(binary) as sim:
        assert board_run(["ulx3s", "--port", sim.path, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["where"] == "board" and report["bit_exact"] == 1
    link = report["link"]
    assert sim.figures["bytes_to_board"] == link["bytes_out"]
    assert 0 < link["measured"]["bytes_per_second"] < link["wire_limit_bytes_per_second"]


def test_fault_port():
    """The wrapper itself: which byte goes, on which frame, once."""
    class Pipe:
        timeout = 1.0

        def __init__(self):
            self.sent, self.answer = b"", b""

        def write(self, data):
            self.sent += data
            self.answer = bytes(reversed(data))

        def read(self, n):
            out, self.answer = self.answer[:n], self.answer[n:]
            return out

    man = {"link": {"commands": {"reg_write": 1, "mem_read": 4}}}
    pipe = Pipe()
    port = FaultyPort(pipe, [Fault("out", "drop", frame_is(man, "reg_write", 8), byte=1),
                             Fault("in", "flip", frame_is(man, "mem_read"), byte=2, mask=0xFF)])
    frame = b"\x5a\x01" + struct.pack("<I", 8) + b"xy"
    port.write(frame)
    assert pipe.sent == frame[:1] + frame[2:]
    port.write(frame)
    assert pipe.sent.endswith(frame)
    read = b"\x5a\x04" + struct.pack("<I", 0) + b"abcd"
    port.write(read)
    assert port.read(2) + port.read(10) == bytes(x ^ (0xFF if i == 2 else 0)
                                                 for i, x in enumerate(reversed(read)))
    port.timeout = 2.0
    assert pipe.timeout == 2.0 and len(port.log) == 2
    with pytest.raises(ValueError, match="^Fault direction must be 'out' or 'in', not 'up'$"):
        Fault("up", "drop", bool)
