"""A full transformer encoder layer (attention with several heads, FFN with GELU,
two LayerNorms, two residual adds) on the accelerator core: a small random float
layer quantized by intformer.sw.quant, compiled by intformer.sw.compile for the
design's manifest and run on a cocotbext-axi AxiRam with random pauses on every AXI
channel. Every tensor of the integer model (each op's output) is compared
bit-exactly with IntegerModel.run, for pre- and post-norm layers and several inputs.

The models are built, run and compiled in the pytest function (intformer.sw.model
needs scipy, which the Verilator cocotb environment lacks); the simulation receives
the compiled programs with the golden tensors through a pickle in the build folder.

test_schedules and test_schedule_choice check the compiler's schedules without a
simulator (a model of the command queues and their tokens).
"""

import pickle

import cocotb
import numpy as np
import pytest

from intformer.gen.sim.drivers import reset
from intformer.gen.sim.payload import load_ports
from tb.top.test_core import STREAM, TB


def build_model(shape: dict, norm: str, seed: int):
    """A random one-layer integer encoder of ``shape`` (tokens, dim, heads, ffn)."""
    from intformer.sw.model.encoder import encoder_layer, random_encoder_weights
    from intformer.sw.model.graph import Graph
    from intformer.sw.quant import quantize

    g = Graph()
    x = g.add("input", "x", shape=(shape["tokens"], shape["dim"]))
    encoder_layer(g, x, "l0", dim=shape["dim"], heads=shape["heads"], ffn=shape["ffn"],
                  norm=norm)
    rng = np.random.default_rng(seed)
    w = random_encoder_weights("l0", dim=shape["dim"], ffn=shape["ffn"], rng=rng)
    model = quantize(g, w, rng.standard_normal((16, shape["tokens"], shape["dim"])))
    return model, rng


def make_cases(manifest: dict, shape: dict, seed: int) -> list[dict]:
    """Pre- and post-norm layers, two inputs each: the compiled program, every op's
    tensor in the image and its golden value."""
    from intformer.sw.compile import compile_model

    cases = []
    for i, norm in enumerate(("pre", "post")):
        model, rng = build_model(shape, norm, seed + i)
        kinds = {op.kind for op in model.ops}
        assert {"gemm", "softmax", "gelu", "layernorm", "residual_add", "slice",
                "concat"} <= kinds, kinds
        for _ in range(2):
            x = model.quantize_input(rng.standard_normal((1, shape["tokens"], shape["dim"])))
            env = model.run(x)
            prog, tensors = compile_model(manifest, model, x[0])
            assert len(prog.image) <= STREAM, f"image of {len(prog.image)} bytes"
            cases.append({
                "label": f"{norm}-norm", "prog": prog,
                "ops": [(op.kind, op.output, tensors[op.output], env[op.output][0])
                        for op in model.ops]})
    return cases


@cocotb.test()
async def encoder(dut):
    tb = TB(dut)
    await reset(dut)
    with open(load_ports()["params"]["cases"], "rb") as f:
        cases = pickle.load(f)
    assert len(cases) == 4
    for k, case in enumerate(cases):
        pauses = ("none", "random")[k % 2]
        tb.set_pauses(pauses)
        prog = case["prog"]
        outputs = [t for kind, _, t, _ in case["ops"] if kind != "slice"]
        image = await tb.run(prog, guard_outputs=outputs, timeout=1_000_000)
        for kind, name, t, want in case["ops"]:
            got = prog.read(image, t)
            bad = np.argwhere(got != want)
            assert not bad.size, (
                f"{case['label']}, {pauses} pauses: {kind} {name}: {len(bad)} of "
                f"{want.size} differ, first at {tuple(bad[0])}: got "
                f"{got[tuple(bad[0])]} want {want[tuple(bad[0])]}")
        dut._log.info(f"{case['label']} layer, {pauses} pauses: {len(case['ops'])} ops, "
                      f"{len(prog.commands)} commands, {tb.cycles} cycles, {tb.last}")


#: Configuration, changes to its preset, the layer's shape and the models' seed. The vector commands
#: need vector_lanes to divide spad_row_bytes and array_cols (intformer.hw.vecexec.supported).
CONFIGS = {
    "tiny": ("tiny", {}, dict(tokens=4, dim=8, heads=2, ffn=16), 10),
    # Non-square: GEMM results (4 per scratchpad row) are read back from memory for
    # the GEMMs (A at 2 per row) and vector units (4 per row) that read them.
    "tiny_2x4": ("tiny", {"array_cols": 4}, dict(tokens=4, dim=8, heads=2, ffn=16), 10),
    "default": ("default", {}, dict(tokens=6, dim=16, heads=2, ffn=32), 20),
}


@pytest.mark.parametrize("name", [
    pytest.param(n, marks=[pytest.mark.icarus_only] if n != "tiny" else [])
    for n in CONFIGS])
def test_encoder(sim, name):
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.config import preset
    from intformer.hw.top import COUNTERS, AcceleratorCore
    from intformer.hw.vecexec import supported
    from tb.top.test_core import _manifest

    base, changes, shape, seed = CONFIGS[name]
    config = preset(base).replace(**changes)
    assert supported(config)
    core = AcceleratorCore(config)
    dut = FlatPorts(core, flatten=("m_axi",))
    path = harness.build_dir(f"encoder_{name}_{sim}")
    man = _manifest(core, config)
    cases = path / "encoder_cases.pkl"
    cases.write_bytes(pickle.dumps(make_cases(man, shape, seed)))
    source = harness.emit(dut, path, params={"manifest": man, "counters": list(COUNTERS),
                                             "cases": str(cases)})
    if sim == "icarus":
        from tb.top.icarus import kick_comb_blocks
        assert kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="tb.top.test_encoder", path=path)


# The compiler's schedules, without a simulator ------------------------------------------


def _operands(cs, name: str, f: dict, row_bytes: dict, elems: dict, R: int, C: int):
    """Local rows ``[(space, rows)]`` a command reads and writes, and the memory bytes
    ``(lo, hi)`` it reads and writes, from its fields (the layouts of intformer.hw.isa)."""
    def rows(loc, n, stride, chunks):
        return {loc + r * stride + j for r in range(n) for j in range(chunks)}

    spaces = {v: k for k, v in cs.spaces.items()}
    reads, writes, mem_r, mem_w = [], [], None, None
    if name in ("load", "store"):
        sp = spaces[f["space"]]
        extent = (f["dram"], f["dram"] + (f["rows"] - 1) * f["dram_stride"] + f["row_bytes"])
        if f.get("transpose"):
            local = rows(f["loc"], f["row_bytes"], f["loc_stride"], 1)
        else:
            local = rows(f["loc"], f["rows"], f["loc_stride"],
                         -(-f["row_bytes"] // row_bytes[sp]))
        if name == "load":
            writes.append((sp, local))
            mem_r = extent
        else:
            reads.append((sp, local))
            mem_w = extent
    elif name == "gemm":
        kt, nt = -(-f["k"] // R), -(-f["n"] // C)
        reads += [("spad", rows(f["a"], f["m"], f["a_stride"], kt)),
                  ("spad", rows(f["b"], f["k"], f["b_stride"], nt))]
        if f["use_bias"]:
            reads.append(("acc", rows(f["bias"], 1, 0, nt)))
        if f["per_channel"]:
            reads.append(("acc", rows(f["scale"], 1, 0, nt)))
        writes.append(("acc", rows(f["c"], f["m"], f["c_stride"], nt)))
        if f["requant"]:
            writes.append(("spad", rows(f["d"], f["m"], f["d_stride"], nt)))
    elif name in ("gelu", "softmax", "layernorm", "residual"):
        src, dst = spaces[f["src_space"]], spaces[f["dst_space"]]
        n = f["length"]
        reads.append((src, rows(f["src"], f["rows"], f["src_stride"], -(-n // elems[src]))))
        if name == "residual":
            reads.append(("spad", rows(f["src2"], f["rows"], f["src2_stride"],
                                       -(-n // elems["spad"]))))
        if name == "layernorm":
            reads.append(("acc", rows(f["src2"], 1, 0, 2 * -(-n // elems["acc"]))))
        writes.append((dst, rows(f["dst"], f["rows"], f["dst_stride"], -(-n // elems[dst]))))
    return reads, writes, mem_r, mem_w


def check_stream(manifest: dict, prog, seed: int, trials: int = 20) -> dict:
    """Run a program's commands on a model of the command processor: three in-order
    queues joined by counting tokens, each command done when issued, the next one
    picked at random among the queues whose head has its tokens. Every read of a
    local row or of memory must see the data of the writer that precedes it in the
    stream (so the tokens order every hazard), no trial may deadlock, no token may
    be left over. Returns how many commands each queue ran."""
    from intformer.sw.commands import Checker, CommandSet

    cs = CommandSet(manifest)
    checker = Checker(manifest)
    c, d = manifest["config"], manifest["derived"]
    row_bytes = {"spad": d["spad_row_bytes"], "acc": d["acc_row_bytes"]}
    elems = {"spad": d["spad_row_bytes"], "acc": c["array_cols"]}
    cmds = []
    for cmd in prog.commands:
        f = dict.fromkeys(cs.fields(cmd["name"]), 0)
        f.update({k: v for k, v in cmd.items() if k != "name"})
        f.pop("opcode")
        assert checker.error(cmd["name"], f, window_bytes=1 << 24) == "none", cmd
        cmds.append((cmd["name"], cs.queue(cmd["name"]), f,
                     _operands(cs, cmd["name"], f, row_bytes, elems, c["array_rows"],
                               c["array_cols"])))
    # The writer each read must see: the last earlier writer in stream order.
    want, last, mem_last = {}, {}, {}
    for i, (_, _, _, (reads, writes, mem_r, mem_w)) in enumerate(cmds):
        for k, (sp, rows) in enumerate(reads):
            want[i, k] = {r: last.get((sp, r)) for r in rows}
        if mem_r:
            want[i, "mem"] = {b: mem_last.get(b) for b in range(*mem_r)}
        for sp, rows in writes:
            last.update({(sp, r): i for r in rows})
        if mem_w:
            mem_last.update({b: i for b in range(*mem_w)})
    edges = {"load": (None, "c2l", None, "l2c"), "compute": ("l2c", "s2c", "c2l", "c2s"),
             "store": ("c2s", None, "s2c", None)}
    rng = np.random.default_rng(seed)
    for _ in range(trials):
        queues = {q: [i for i, cmd in enumerate(cmds) if cmd[1] == q] for q in edges}
        tokens = dict.fromkeys(("l2c", "c2l", "c2s", "s2c"), 0)
        seen, mem_seen = {}, {}
        while any(queues.values()):
            ready = []
            for q, pending in queues.items():
                if pending:
                    f = cmds[pending[0]][2]
                    pp, pn = edges[q][:2]
                    if not ((pp and f["pop_prev"] and not tokens[pp])
                            or (pn and f["pop_next"] and not tokens[pn])):
                        ready.append(q)
            assert ready, f"deadlock with {({q: len(p) for q, p in queues.items()})} left"
            q = ready[rng.integers(len(ready))]
            i = queues[q].pop(0)
            _, _, f, (reads, writes, mem_r, mem_w) = cmds[i]
            pp, pn, up, un = edges[q]
            for tok, flag in ((pp, "pop_prev"), (pn, "pop_next")):
                if tok and f[flag]:
                    tokens[tok] -= 1
            for k, (sp, rows) in enumerate(reads):
                got = {r: seen.get((sp, r)) for r in rows}
                assert got == want[i, k], f"command {i} {cmds[i][0]} reads stale {sp} rows"
            if mem_r:
                got = {b: mem_seen.get(b) for b in range(*mem_r)}
                assert got == want[i, "mem"], f"command {i} loads memory not yet stored"
            for sp, rows in writes:
                seen.update({(sp, r): i for r in rows})
            if mem_w:
                mem_seen.update({b: i for b in range(*mem_w)})
            for tok, flag in ((up, "push_prev"), (un, "push_next")):
                if tok and f[flag]:
                    tokens[tok] += 1
        assert not any(tokens.values()), tokens
    return {q: sum(cmd[1] == q for cmd in cmds) for q in edges}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_schedules(name):
    """Both schedules of compile_model on the encoder layers of test_encoder: every
    command passes the hardware's checks, the tokens order every hazard under random
    interleavings of the queues, and the dataflow schedule needs fewer commands and
    keeps its results on chip (fewer bytes loaded)."""
    from intformer.hw.config import preset
    from intformer.hw.top import AcceleratorCore
    from intformer.sw.compile import compile_model
    from tb.top.test_core import _manifest

    base, changes, shape, seed = CONFIGS[name]
    config = preset(base).replace(**changes)
    man = _manifest(AcceleratorCore(config), config)
    for i, norm in enumerate(("pre", "post")):
        model, rng = build_model(shape, norm, seed + i)
        x = model.quantize_input(rng.standard_normal((1, shape["tokens"], shape["dim"])))
        progs = {s: compile_model(man, model, x[0], schedule=s)[0]
                 for s in ("serial", "dataflow")}
        for s, prog in progs.items():
            check_stream(man, prog, seed=i, trials=5 if s == "serial" else 20)
        auto, _ = compile_model(man, model, x[0])
        assert auto.commands == progs["dataflow"].commands

        def loaded(p):
            return sum(c["rows"] * c["row_bytes"] for c in p.commands if c["name"] == "load")

        assert len(progs["dataflow"].commands) < len(progs["serial"].commands)
        assert loaded(progs["dataflow"]) < loaded(progs["serial"])


#: Arrays (rows, cols) whose dataflow schedules test_schedule_shapes checks: non-square
#: (a scratchpad row of max(rows, cols) bytes is wider than a K or an N tile) and
#: 16x16 (heads of 8 narrower than a scratchpad row).
SHAPES = [(16, 8), (8, 16), (4, 8), (8, 4), (16, 16)]


@pytest.mark.parametrize("rows,cols", SHAPES)
def test_schedule_shapes(rows, cols):
    """'auto' picks the dataflow schedule on non-square arrays and on arrays wider
    than a head, and its streams pass the hardware's checks with every hazard
    ordered by tokens, for layers of 2 and 4 heads."""
    from intformer.hw.config import preset
    from intformer.hw.top import AcceleratorCore
    from intformer.sw.compile import compile_model
    from tb.top.test_core import _manifest

    config = preset("default").replace(array_rows=rows, array_cols=cols,
                                       vector_lanes=min(rows, cols, 8))
    man = _manifest(AcceleratorCore(config), config)
    for seed, shape in enumerate((dict(tokens=6, dim=16, heads=2, ffn=32),
                                  dict(tokens=5, dim=32, heads=4, ffn=64))):
        model, rng = build_model(shape, ("pre", "post")[seed], seed)
        x = model.quantize_input(rng.standard_normal((1, shape["tokens"], shape["dim"])))
        prog, _ = compile_model(man, model, x[0])
        assert prog.schedule == "dataflow"
        serial, _ = compile_model(man, model, x[0], schedule="serial")
        assert serial.schedule == "serial"
        check_stream(man, prog, seed=seed, trials=5)
        assert len(prog.commands) < len(serial.commands)


def test_schedule_choice():
    """'auto' falls back to the serial schedule where the live tensors do not fit the
    accumulator; 'dataflow' refuses there, naming the rows asked for and the
    shortfall; unknown schedules are refused. Small constants do not cut the
    accumulator's free run."""
    from intformer.hw.config import preset
    from intformer.hw.top import AcceleratorCore
    from intformer.sw.compile import compile_model
    from tb.top.test_core import _manifest

    config = preset("default").replace(acc_bytes=4096)
    man = _manifest(AcceleratorCore(config), config)
    # 16 tokens fit only because the biases sit at the top of the accumulator, not
    # between the banks, where they would cut the 96-row run that Q, K and V need.
    model, rng = build_model(dict(tokens=16, dim=16, heads=2, ffn=32), "pre", 3)
    x = model.quantize_input(rng.standard_normal((1, 16, 16)))
    assert compile_model(man, model, x[0])[0].schedule == "dataflow"
    model, rng = build_model(dict(tokens=19, dim=16, heads=2, ffn=32), "pre", 3)
    x = model.quantize_input(rng.standard_normal((1, 19, 16)))
    auto, _ = compile_model(man, model, x[0])
    serial, _ = compile_model(man, model, x[0], schedule="serial")
    assert auto.schedule == "serial"
    assert auto.commands == serial.commands
    with pytest.raises(ValueError, match=r"Accumulator of 128 rows has no 114 free "
                                         r"consecutive rows for l0.attn.q, l0.attn.k, "
                                         r"l0.attn.v \(step 1\): the "
                                         r"longest free run is 112 rows, 2 short"):
        compile_model(man, model, x[0], schedule="dataflow")
    with pytest.raises(ValueError, match=r"Schedule must be 'auto', 'dataflow' or 'serial', "
                                         r"not 'fast'"):
        compile_model(man, model, x[0], schedule="fast")
