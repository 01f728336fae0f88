"""pytest options shared by every testbench.

``--sim icarus,verilator`` (default: both) chooses the simulators; a test that
takes a ``sim`` argument runs once per simulator. Cases marked ``icarus_only``
(broad sweeps) are not repeated under Verilator, which runs a representative
subset; cases marked ``verilator_slow`` (large designs, whose Verilator C++ build
takes minutes) run under Verilator only in the ``slow`` set, ``make test-slow``,
while ``make test`` runs them under Icarus and a smaller case of the same unit under
both. ``INTFORMER_SIM`` overrides the default list.

Verilator builds go through ccache when it is installed (``OBJCACHE``): the
Verilator runtime and cocotb's main are the same in every build and compile once.
"""

import os

import pytest

from intformer.gen.sim.harness import SIMULATORS

# `intformer run` in tests simulates a few images: its Verilator model is built without
# C++ optimisation (gen/run.py BUILD_OPTS), which costs a run seconds and saves the
# build most of its time.
os.environ.setdefault("INTFORMER_RUN_BUILD", "quick")


def pytest_addoption(parser):
    parser.addoption("--sim", default=os.environ.get("INTFORMER_SIM", ",".join(SIMULATORS)),
                     help="comma-separated simulators to run: icarus, verilator")


def pytest_configure(config):
    config.addinivalue_line("markers", "icarus_only: broad sweep cases not repeated on Verilator")
    config.addinivalue_line("markers", "verilator_slow: under Verilator, part of the slow set")
    sims = [s.strip() for s in config.getoption("--sim").split(",") if s.strip()]
    for sim in sims:
        if sim not in SIMULATORS:
            raise pytest.UsageError(f"--sim {sim!r} is not one of {', '.join(SIMULATORS)}")
    config._intformer_sims = sims


def pytest_generate_tests(metafunc):
    if "sim" in metafunc.fixturenames:
        metafunc.parametrize("sim", metafunc.config._intformer_sims)


# Before pytest's own -m selection, which must see the slow marks added here.
@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    keep, drop = [], []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_verilator = callspec is not None and callspec.params.get("sim") == "verilator"
        if on_verilator and item.get_closest_marker("icarus_only"):
            drop.append(item)
            continue
        if on_verilator and item.get_closest_marker("verilator_slow"):
            item.add_marker(pytest.mark.slow)
        keep.append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep
