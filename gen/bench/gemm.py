"""``intformer bench gemm``: one GEMM on the engine in simulation, checked bit-exactly.

Builds a :class:`~intformer.hw.gemm.GemmUnit` (engine with its own scratchpad and
accumulator) for the configuration, splits ``C = requant(A x B + bias)`` into blocks
that fit its memories (as a compiler would), runs every block as one engine
command, and reports the engine's cycles (command accepted to last result
written, summed over the commands), MACs per cycle and utilization
(``M*K*N / (rows*cols*cycles)``), plus a 2 x 2 tile sequence's bubble count.
The cocotb side is :mod:`intformer.gen.bench.gemm_sim`.

This module also holds the memory planning (:func:`plan`, :func:`choose_blocks`)
that the cocotb side uses, so it imports no Amaranth at module level.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

__all__ = ["Layout", "plan", "choose_blocks", "add_arguments", "run", "bench"]


def _ceil(a: int, b: int) -> int:
    return -(-a // b)


@dataclass
class Layout:
    """Where one GEMM's operands live: row addresses and strides of a ``GemmCommand``."""
    a: int
    a_stride: int
    b: int
    b_stride: int
    c: int
    c_stride: int
    d: int
    d_stride: int
    bias: int
    scale: int


def plan(p: dict, m: int, k: int, n: int, *, slack: int = 0) -> Layout:
    """A layout for an ``m x k x n`` GEMM on the memories described by ``p`` (the
    configuration's fields and derived figures): A in scratchpad bank 0, B and the
    INT8 result in bank 1, partial sums in accumulator bank 0 and the constants in
    bank 1, so the engine's A and B reads, and its partial-sum and constant reads,
    never compete for a bank (with one accumulator bank, the constants take its upper
    half). ``slack`` adds unused rows to each stride.

    Raises
    ------
    ValueError
        If an operand does not fit its bank.
    """
    kt, nt = _ceil(k, p["array_rows"]), _ceil(n, p["array_cols"])
    spad_bank = p["spad_rows"] // p["spad_banks"]
    acc_bank = p["acc_rows"] // max(2, p["acc_banks"])
    a_stride, b_stride = kt + slack, nt + slack
    d_stride = c_stride = nt + slack
    lay = Layout(a=0, a_stride=a_stride, b=spad_bank, b_stride=b_stride, c=0,
                 c_stride=c_stride, d=spad_bank + k * b_stride, d_stride=d_stride,
                 bias=acc_bank, scale=acc_bank + nt)
    need = [(m * a_stride, spad_bank, "A"), (k * b_stride + m * d_stride, spad_bank, "B and D"),
            (m * c_stride, acc_bank, "C"), (2 * nt, acc_bank, "constants")]
    for rows, room, what in need:
        # the last row of each memory is kept free for the tests' memory traffic
        room -= what != "A"
        if rows > room:
            raise ValueError(f"GEMM {m}x{k}x{n}: {what} needs {rows} rows, its bank has "
                             f"{room}")
    return lay


def choose_blocks(p: dict, m: int, k: int, n: int) -> tuple[int, int]:
    """The block of ``(m_block, n_block)`` rows and columns (full K) that fits the
    memories with the most MACs per command, preferring whole tiles."""
    best = None
    R, C = p["array_rows"], p["array_cols"]
    for nb in range(C, _ceil(n, C) * C + 1, C):
        nb = min(nb, n)
        for mb in sorted({min(m, x) for x in (*range(R, m + R, R), m)}):
            try:
                plan(p, mb, k, nb)
            except ValueError:
                continue
            commands = _ceil(m, mb) * _ceil(n, nb)
            key = (-commands, mb * nb)
            if best is None or key > best[0]:
                best = (key, (mb, nb))
    if best is None:
        raise ValueError(f"GEMM with K = {k} does not fit the memories even as one tile "
                         f"column of {R} rows")
    return best[1]


def add_arguments(parser, name: str) -> None:
    from intformer.gen.cli import add_config_args
    add_config_args(parser)
    parser.add_argument("--m", type=int, default=64, help="rows of A and C")
    parser.add_argument("--k", type=int, default=64, help="columns of A, rows of B")
    parser.add_argument("--n", type=int, default=64, help="columns of B and C")
    parser.add_argument("--seed", type=int, default=1, help="seed of the random operands")
    parser.add_argument("--sim", default=None, choices=("icarus", "verilator"),
                        help="simulator (default: verilator if installed, else icarus)")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON")


def bench(config, m: int, k: int, n: int, *, seed: int = 1, sim: str | None = None) -> dict:
    """Run the benchmark and return its figures."""
    import shutil

    from intformer.gen.sim import harness
    from intformer.hw.gemm import GemmUnit

    for name, value in (("m", m), ("k", k), ("n", n)):
        if value < 1:
            raise ValueError(f"GEMM {name} must be at least 1, not {value}")
    sim = sim or ("verilator" if shutil.which("verilator") else "icarus")
    params = {**config.to_dict(), **config.derived()}
    mb, nb = choose_blocks(params, m, k, n)
    params["bench"] = {"m": m, "k": k, "n": n, "seed": seed, "m_block": mb, "n_block": nb}
    unit = GemmUnit(config)
    path = harness.build_dir(f"bench_gemm_{config.array_rows}x{config.array_cols}_{sim}",
                             root=harness.BUILD_ROOT.parent / "bench")
    source = harness.emit(unit, path, params=params)
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="intformer.gen.bench.gemm_sim", path=path)
    out = json.loads((path / "bench.json").read_text())
    out["simulator"] = sim
    out["fill_latency"] = unit.engine.fill_latency
    return out


def run(args) -> int:
    from intformer.gen.cli import config_from_args

    config = config_from_args(args)
    out = bench(config, args.m, args.k, args.n, seed=args.seed, sim=args.sim)
    if args.json:
        print(json.dumps(out, indent=2))
        return 0 if out["exact"] else 1
    t = out["tile_sequence"]
    print(f"GEMM {out['m']}x{out['k']}x{out['n']} on a {out['array']} array "
          f"({out['simulator']}), {out['commands']} command(s) of "
          f"{out['blocks']['m']}x{out['blocks']['k']}x{out['blocks']['n']}")
    print(f"  cycles          {out['cycles']}")
    print(f"  MACs            {out['macs']}")
    print(f"  MACs per cycle  {out['macs_per_cycle']:.2f}")
    print(f"  utilization     {out['utilization']:.4f}")
    print(f"  exact match     {'yes' if out['exact'] else 'NO'} ({out['mismatches']} mismatches)")
    print(f"  data loading    {out['data_loading']} ({out['host_cycles']} host cycles)")
    print(f"  2x2 tile sequence ({t['m']}x{t['k']}x{t['n']}): {t['cycles']} cycles, "
          f"{t['rows']} array rows, {t['bubbles']} bubbles between tiles")
    return 0 if out["exact"] else 1
