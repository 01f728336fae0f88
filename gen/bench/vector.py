"""``intformer bench gelu|softmax|layernorm``: stream rows through a vector unit in
simulation, check every output against :mod:`intformer.sw.golden`, and report
elements per cycle (from the cycle the first input beat is accepted to the cycle
the last output beat leaves, so the fill latency counts), the sustained rate
after the first output beat, and the latency (cycles from accepting the first
input beat to delivering the first output beat). The cocotb side is
:func:`intformer.gen.bench.vector_sim.run_bench`.
"""

from __future__ import annotations

import json

__all__ = ["add_arguments", "run", "bench", "DEFAULT_SCALES"]

#: Scales the benchmark derives the constants from, per unit.
DEFAULT_SCALES = {"gelu": (1e-3, 0.02), "softmax": (1e-3,), "layernorm": (0.05, 0.03),
                  "residual": (0.05, 0.03, 0.04)}


def add_arguments(parser, name: str) -> None:
    from intformer.gen.cli import add_config_args
    add_config_args(parser)
    parser.add_argument("--length", type=int, default=None,
                        help="elements per row (default: 64, or vector_max_row if smaller)")
    parser.add_argument("--rows", type=int, default=32, help="rows to stream back to back")
    parser.add_argument("--sim", default="icarus", choices=("icarus", "verilator"),
                        help="simulator (default: icarus)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")
    parser.set_defaults(unit=name)


def _unit(config, name: str):
    """The unit, its input width, and the name of its side stream (if any)."""
    if name == "gelu":
        from intformer.hw.gelu import Gelu
        unit = Gelu.from_config(config)
        return unit, unit.in_width, None
    if name == "softmax":
        from intformer.hw.softmax import Softmax
        unit = Softmax.from_config(config)
        return unit, unit.in_width, None
    if name == "layernorm":
        from intformer.hw.layernorm import LayerNorm
        unit = LayerNorm.from_config(config)
        return unit, unit.in_width, "gb"
    raise ValueError(f"No vector benchmark named {name!r}")


def bench(config, name: str, *, length: int | None = None, rows: int = 32,
          sim: str = "icarus") -> dict:
    """Run the benchmark of unit ``name`` and return its figures.

    Raises
    ------
    ValueError
        If ``length`` is not between 1 and ``vector_max_row`` or ``rows`` is not
        positive.
    """
    from intformer.gen.sim import harness

    length = min(64, config.vector_max_row) if length is None else length
    limit = config.vector_max_row if name != "gelu" else 1 << 16
    if not 1 <= length <= limit:
        raise ValueError(f"Row length must be between 1 and {limit}, not {length}")
    if rows < 1:
        raise ValueError(f"Rows must be at least 1, not {rows}")
    unit, in_width, side = _unit(config, name)
    params = {"unit": name, "lanes": config.vector_lanes, "length": length, "rows": rows,
              "in_width": in_width, "scales": list(DEFAULT_SCALES[name]), "side": side,
              "max_row": config.vector_max_row}
    path = harness.build_dir(f"bench_{name}_l{config.vector_lanes}_{sim}",
                             root=harness.BUILD_ROOT.parent / "bench")
    source = harness.emit(unit, path, params=params)
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="intformer.gen.bench.vector_sim", path=path)
    out = json.loads((path / "bench.json").read_text())
    out["simulator"] = sim
    out["expected_latency_cycles"] = (unit.latency(length) if callable(unit.latency)
                                      else unit.latency)
    return out


def run(args) -> int:
    from intformer.gen.cli import config_from_args

    config = config_from_args(args)
    out = bench(config, args.unit, length=args.length, rows=args.rows, sim=args.sim)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if out["bit_exact"] else 1
    print(f"{out['unit']}: {out['rows']} rows of {out['length']} elements, "
          f"{out['lanes']} lanes ({out['simulator']})")
    print(f"  cycles             {out['cycles']}")
    print(f"  elements per cycle {out['elements_per_cycle']:.3f} "
          f"({out['efficiency']:.3f} of {out['lanes']} lanes)")
    print(f"  sustained          {out['sustained_elements_per_cycle']:.3f} elements per cycle "
          f"after the first output beat")
    print(f"  latency            {out['latency_cycles']} cycles to the first output beat")
    print(f"  bit-exact          {'yes' if out['bit_exact'] else 'NO'} "
          f"({out['mismatches']} mismatches)")
    return 0 if out["bit_exact"] else 1
