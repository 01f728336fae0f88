"""A full transformer encoder layer (attention with several heads, FFN with GELU,
two LayerNorms, two residual adds) on the accelerator core: a small random float
layer quantized by intformer.sw.quant, compiled by intformer.sw.compile for the
design's manifest and run on a cocotbext-axi AxiRam with random pauses on every AXI
channel. Every tensor of the integer model (each op's output) is compared
bit-exactly with IntegerModel.run, for pre- and post-norm layers and several inputs.

The models are built, run and compiled in the pytest function (intformer.sw.model
needs scipy, which the Verilator cocotb environment lacks); the simulation receives
the compiled programs with the golden tensors through a pickle in the build folder.
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
#: need vector_lanes == spad_row_bytes == array_cols (intformer.hw.vecexec.supported).
CONFIGS = {
    "tiny": ("tiny", {}, dict(tokens=4, dim=8, heads=2, ffn=16), 10),
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
