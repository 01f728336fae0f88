"""``intformer run``: the digits ViT on the Verilator model of SimTop, through the CLI.

The Verilator build of the default accelerator takes 1.5 to 2.5 minutes on this
machine (cached under ``build/run`` per configuration and hardware source, so a
second run takes seconds); the whole test stays under the ~4 minutes allowed for a
`make test` case.
"""

import json
import shutil

import pytest

from intformer.gen.cli import main


def test_run_errors(capsys):
    assert main(["run", "--images", "0"]) == 2
    assert "--images must be at least 1, not 0" in capsys.readouterr().err
    assert main(["run", "--set", "array_rows=0"]) == 2
    assert capsys.readouterr().err.startswith("intformer: error: ")
    assert main(["run", "--images", "100000"]) == 2
    assert "--images must be at most" in capsys.readouterr().err
    # Designs that cannot run the model are refused before anything is built.
    assert main(["run", "--preset", "icebreaker", "--images", "1"]) == 2
    assert ("cannot run the digits transformer: it has no unit for gelu, layernorm, "
            "residual, softmax") in capsys.readouterr().err
    assert main(["run", "--set", "perf_counters=false", "--images", "1"]) == 2
    assert "leaves them out (perf_counters = false)" in capsys.readouterr().err


def test_run_no_verilator(capsys, monkeypatch):
    monkeypatch.setattr(shutil, "which", lambda name: None)
    assert main(["run", "--images", "1"]) == 2
    assert "verilator not found on PATH" in capsys.readouterr().err


def check_report(report: dict, images: int) -> None:
    assert report["images"] == images and report["bit_exact"] == images
    rows = report["per_image"]
    assert all(r["bit_exact"] and not r["mismatched"] for r in rows)
    # Accuracies are counted from the per-image predictions; the hardware's prediction
    # is the golden one when bit-exact.
    assert all(r["predicted"] == r["golden"] for r in rows)
    assert report["accuracy"] == sum(r["predicted"] == r["label"] for r in rows) / images
    assert report["golden_accuracy"] == report["accuracy"]
    cycles = sum(r["cycles"] for r in rows)
    assert report["cycles_per_image"] == cycles / images
    # Between start and the interrupt the counter counts every busy cycle.
    assert all(0 < r["cycles"] <= r["irq_cycles"] + 2 for r in rows)
    assert 0 < report["mac_utilization"] <= report["gemm_phase_utilization"] <= 1
    # Useful MACs never exceed the array slots that entered it.
    assert report["gemm_phase_utilization"] <= report["array_occupancy"] <= 1
    assert report["macs_per_image"] > 0
    p = report["phases"]
    assert abs(p["gemm_busy"] + p["vector_busy"] + p["dma_other"] - 1) < 1e-9
    assert all(v >= 0 for v in p.values())
    assert report["sim_cycles"] >= cycles
    assert report["sim_cycles_per_second"] > 0


def test_run_default(capsys):
    if shutil.which("verilator") is None:
        pytest.skip("verilator not installed")
    status = main(["run", "--images", "2", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    assert report["sim"] == "verilator"
    assert report["schedule"] == "dataflow"
    check_report(report, 2)
    assert 0 < report["sim_cpu_seconds"] and report["sim_cycles_per_cpu_second"] > 0
    # Memory loads and reads take no clock cycles: all but a few register accesses'
    # cycles are the accelerator's, from start to the interrupt.
    assert report["sim_cycles"] < sum(r["irq_cycles"] for r in report["per_image"]) + 2 * 200


@pytest.mark.slow
def test_run_icarus(capsys):
    """The Icarus path (about a minute for one image: 1,600 cycles/s)."""
    if shutil.which("iverilog") is None:
        pytest.skip("iverilog not installed")
    status = main(["run", "--images", "1", "--sim", "icarus", "--json"])
    report = json.loads(capsys.readouterr().out)
    assert status == 0, report
    assert report["sim"] == "icarus"
    check_report(report, 1)


def test_replay_timeout():
    """An image whose interrupt never came is a one-line error, not a traceback; the
    final T line may carry CPU seconds after the wall seconds."""
    from intformer.gen.cli import UserError
    from intformer.gen.emit import manifest
    from intformer.gen.run import _unused, record, replay
    from intformer.hw.config import preset
    from intformer.hw.top import Accelerator
    accel = Accelerator(preset("tiny"))
    man = manifest(preset("tiny"), accel)
    _unused(accel)
    with pytest.raises(UserError, match="image 0: no interrupt within 5000000 cycles"):
        replay(man, [(bytes(64), bytes(16))], "I 4c4b40 1\nT 4c4b40 0.5\n")
    with pytest.raises(UserError, match="simulator output is incomplete"):
        replay(man, [(bytes(64), bytes(16))], "I 10 0\n")
    # CPU seconds when the simulator reports them (the Verilator main), else None.
    jobs = [(bytes(64), bytes(16))]
    answers = []
    for line in record(man, jobs):
        op, *args = line.split()
        answers.append({"R": "R 0", "I": "I 10 0",
                        "D": "D " + "00" * int(args[-1], 16)}.get(op))
    out = "\n".join(a for a in answers if a) + "\n"
    for tail, cpu in (("T 20 0.5 0.25\n", 0.25), ("T 20 0.5\n", None)):
        _, sim = replay(man, jobs, out + tail)
        assert sim == {"cycles": 32, "seconds": 0.5, "cpu_seconds": cpu}
