"""pytest options shared by every testbench.

``--sim icarus,verilator`` (default: both) chooses the simulators; a test that
takes a ``sim`` argument runs once per simulator. Cases marked ``icarus_only``
(broad sweeps) are not repeated under Verilator, which runs a representative
subset. ``INTFORMER_SIM`` overrides the default list.
"""

import os

import pytest

from intformer.gen.sim.harness import SIMULATORS


def pytest_addoption(parser):
    parser.addoption("--sim", default=os.environ.get("INTFORMER_SIM", ",".join(SIMULATORS)),
                     help="comma-separated simulators to run: icarus, verilator")


def pytest_configure(config):
    config.addinivalue_line("markers", "icarus_only: broad sweep cases not repeated on Verilator")
    sims = [s.strip() for s in config.getoption("--sim").split(",") if s.strip()]
    for sim in sims:
        if sim not in SIMULATORS:
            raise pytest.UsageError(f"--sim {sim!r} is not one of {', '.join(SIMULATORS)}")
    config._intformer_sims = sims


def pytest_generate_tests(metafunc):
    if "sim" in metafunc.fixturenames:
        metafunc.parametrize("sim", metafunc.config._intformer_sims)


def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        if (callspec is not None and callspec.params.get("sim") == "verilator"
                and item.get_closest_marker("icarus_only")):
            drop.append(item)
        else:
            keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
