"""Build and run one cocotb test module; executed by the simulation's own Python.

The harness (``intformer.gen.sim.harness``) runs this file as a subprocess with the
interpreter whose cocotb suits the chosen simulator, so that one pytest session
can drive cocotb 2.x under Icarus and cocotb 1.9 under an older Verilator. It
takes one argument, a JSON file describing the job, and uses only the runner
API that cocotb 1.9 and 2.x share.
"""

import json
import sys

try:
    from cocotb_tools.runner import get_runner  # cocotb 2.x
except ImportError:
    from cocotb.runner import get_runner  # cocotb 1.9


def main(job_file: str) -> int:
    with open(job_file) as f:
        job = json.load(f)
    # The runners hand their own sys.path to the simulator as PYTHONPATH.
    sys.path[:0] = job["pythonpath"]
    runner = get_runner(job["sim"])
    runner.build(
        sources=job["sources"],
        hdl_toplevel=job["toplevel"],
        build_dir=job["build_dir"],
        build_args=job["build_args"],
        timescale=("1ns", "1ps"),
        waves=job["waves"],
        always=job.get("always", False),
    )
    runner.test(
        test_module=job["test_module"],
        hdl_toplevel=job["toplevel"],
        build_dir=job["build_dir"],
        test_dir=job["build_dir"],
        extra_env=job["env"],
        results_xml=job["results_xml"],
        seed=job.get("seed"),
        testcase=job.get("testcase"),
        waves=job["waves"],
        timescale=("1ns", "1ps"),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
