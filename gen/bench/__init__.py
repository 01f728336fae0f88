"""``intformer bench <unit>``: benchmarks that run the generated RTL in simulation,
check the result bit-exactly against :mod:`intformer.sw.golden`, and print figures
(``--json`` for the same as JSON).

Each benchmark is a module here with ``add_arguments(parser)`` and ``run(args) -> int``,
listed in :data:`BENCHES`. Its cocotb side lives in a module that imports neither
Amaranth nor :mod:`intformer.hw`, so it runs under cocotb 1.9 and 2.x.
"""

from __future__ import annotations

import importlib

__all__ = ["BENCHES", "add_arguments", "run"]

#: Benchmark name -> (module, one-line help).
BENCHES = {
    "gemm": ("intformer.gen.bench.gemm", "GEMM engine: cycles, MACs per cycle, utilization"),
    "softmax": ("intformer.gen.bench.vector", "Softmax unit: elements per cycle, latency"),
    "gelu": ("intformer.gen.bench.vector", "GELU unit: elements per cycle, latency"),
    "layernorm": ("intformer.gen.bench.vector", "LayerNorm unit: elements per cycle, latency"),
    "dma": ("intformer.gen.bench.dma", "DMA: bytes per cycle against the bus peak"),
}


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="bench", required=True)
    for name, (module, help_text) in BENCHES.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        p = sub.add_parser(name, help=help_text)
        mod.add_arguments(p, name)
        p.set_defaults(bench_run=mod.run)


def run(args) -> int:
    return args.bench_run(args)
