"""``intformer bench dma``: DMA bandwidth against an always-ready AXI memory.

For each bus width it generates the DMA of the configuration, runs a read, a write
and both at once of ``--bytes`` bytes in simulation (data checked byte for byte),
and reports bytes per cycle and efficiency against the peak of ``data_width / 8``
bytes per cycle per direction. Cycles run from the descriptor handshake to the
completion handshake, so they include the memory latency.
"""

from __future__ import annotations

import json

__all__ = ["add_arguments", "run", "measure"]


def add_arguments(parser, name: str = "dma") -> None:
    from intformer.gen.cli import add_config_args

    add_config_args(parser)
    parser.add_argument("--widths", default="64,128",
                        help="comma-separated bus widths to measure (default: 64,128); "
                             "'config' uses the configuration's axi_data_width")
    parser.add_argument("--bytes", type=int, default=65536, dest="nbytes",
                        help="bytes per transfer (default: 65536)")
    parser.add_argument("--sim", default="icarus", choices=("icarus", "verilator"))
    parser.add_argument("--json", action="store_true", help="print JSON")


def measure(config, *, nbytes: int = 65536, sim: str = "icarus") -> dict:
    """Run the benchmark for one configuration; return its figures."""
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.dma import DMA

    dma = DMA.from_config(config)
    B = dma.bytes_per_beat
    if isinstance(nbytes, bool) or not isinstance(nbytes, int) or nbytes <= 0 or nbytes % B:
        raise ValueError(f"Benchmark size must be a positive multiple of {B} bytes "
                         f"(the bus width), not {nbytes}")
    if nbytes > 1 << 20:
        raise ValueError(f"Benchmark size must be at most {1 << 20} bytes, not {nbytes}")
    path = harness.build_dir(f"bench_dma_w{dma.data_width}_{sim}")
    source = harness.emit(FlatPorts(dma, flatten=["m_axi"]), path,
                          params={**dma.params(), "bench_bytes": nbytes})
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="intformer.gen.bench.dma_cocotb", path=path)
    cycles = json.loads((path / "bench.json").read_text())
    out = {"data_width": dma.data_width, "max_burst": dma.max_burst,
           "max_outstanding": dma.max_outstanding, "bytes": nbytes,
           "peak_bytes_per_cycle": B}
    for kind, n in cycles.items():
        out[kind] = {"cycles": n, "bytes_per_cycle": round(nbytes / n, 3),
                     "efficiency": round(nbytes / n / B, 4)}
    return out


def run(args) -> int:
    from intformer.gen.cli import UserError, config_from_args

    config = config_from_args(args)
    widths = []
    for item in args.widths.split(","):
        item = item.strip()
        if item == "config":
            widths.append(config.axi_data_width)
        elif item.isdigit():
            widths.append(int(item))
        else:
            raise UserError(f"--widths takes bus widths or 'config', not {item!r}")
    rows = [measure(config.replace(axi_data_width=w), nbytes=args.nbytes, sim=args.sim)
            for w in widths]
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'bus':>4} {'burst':>5} {'outst':>5} {'bytes':>7}  {'direction':<17} "
          f"{'cycles':>7} {'B/cycle':>8} {'of peak':>8}")
    for row in rows:
        for kind in ("read", "write", "read_concurrent", "write_concurrent"):
            f = row[kind]
            print(f"{row['data_width']:>4} {row['max_burst']:>5} {row['max_outstanding']:>5} "
                  f"{row['bytes']:>7}  {kind:<17} {f['cycles']:>7} {f['bytes_per_cycle']:>8.3f} "
                  f"{f['efficiency']:>8.1%}")
    return 0
