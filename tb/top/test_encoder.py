"""A full transformer encoder layer (attention with several heads, FFN with GELU,
two LayerNorms, two residual adds) on the accelerator core: a small random float
layer quantized by intformer.sw.quant, compiled by intformer.sw.compile for the
design's manifest and run on a cocotbext-axi AxiRam with random pauses on every AXI
channel. Every tensor of the integer model (each op's output) is compared
bit-exactly with IntegerModel.run, for pre- and post-norm layers and several inputs."""

import cocotb
import numpy as np
import pytest

from intformer.gen.sim.drivers import reset
from intformer.gen.sim.payload import load_ports
from intformer.sw.compile import compile_model
from intformer.sw.model.encoder import encoder_layer, random_encoder_weights
from intformer.sw.model.graph import Graph
from intformer.sw.quant import quantize
from tb.top.test_core import STREAM, TB


def build_model(shape: dict, norm: str, seed: int):
    """A random one-layer integer encoder of ``shape`` (tokens, dim, heads, ffn)."""
    g = Graph()
    x = g.add("input", "x", shape=(shape["tokens"], shape["dim"]))
    encoder_layer(g, x, "l0", dim=shape["dim"], heads=shape["heads"], ffn=shape["ffn"],
                  norm=norm)
    rng = np.random.default_rng(seed)
    w = random_encoder_weights("l0", dim=shape["dim"], ffn=shape["ffn"], rng=rng)
    model = quantize(g, w, rng.standard_normal((16, shape["tokens"], shape["dim"])))
    return model, rng


@cocotb.test()
async def encoder(dut):
    tb = TB(dut)
    await reset(dut)
    shape = load_ports()["params"]["shape"]
    runs = 0
    for norm in ("pre", "post"):
        model, rng = build_model(shape, norm, tb.r.getrandbits(32))
        kinds = {op.kind for op in model.ops}
        assert {"gemm", "softmax", "gelu", "layernorm", "residual_add", "slice",
                "concat"} <= kinds, kinds
        for pauses in ("none", "random"):
            tb.set_pauses(pauses)
            x = model.quantize_input(rng.standard_normal((1, shape["tokens"], shape["dim"])))
            env = model.run(x)
            prog, tensors = compile_model(tb.man, model, x[0])
            assert len(prog.image) <= STREAM, f"image of {len(prog.image)} bytes"
            outputs = [tensors[op.output] for op in model.ops if op.kind != "slice"]
            image = await tb.run(prog, guard_outputs=outputs, timeout=1_000_000)
            for op in model.ops:
                got = prog.read(image, tensors[op.output])
                want = env[op.output][0]
                bad = np.argwhere(got != want)
                assert not bad.size, (
                    f"{norm}-norm, {pauses} pauses: {op.kind} {op.output}: {len(bad)} of "
                    f"{want.size} differ, first at {tuple(bad[0])}: got "
                    f"{got[tuple(bad[0])]} want {want[tuple(bad[0])]}")
            runs += 1
            dut._log.info(f"{norm}-norm layer, {pauses} pauses: {len(model.ops)} ops, "
                          f"{len(prog.commands)} commands, {tb.cycles} cycles, {tb.last}")
    assert runs == 4


#: Configuration, changes to its preset, and the layer's shape. The vector commands
#: need vector_lanes == spad_row_bytes == array_cols (intformer.hw.vecexec.supported).
CONFIGS = {
    "tiny": ("tiny", {}, dict(tokens=4, dim=8, heads=2, ffn=16)),
    "default": ("default", {}, dict(tokens=6, dim=16, heads=2, ffn=32)),
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

    base, changes, shape = CONFIGS[name]
    config = preset(base).replace(**changes)
    assert supported(config)
    core = AcceleratorCore(config)
    dut = FlatPorts(core, flatten=("m_axi",))
    path = harness.build_dir(f"encoder_{name}_{sim}")
    source = harness.emit(dut, path, params={"manifest": _manifest(core, config),
                                             "counters": list(COUNTERS), "shape": shape})
    if sim == "icarus":
        from tb.top.icarus import kick_comb_blocks
        assert kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top",
                test_module="tb.top.test_encoder", path=path)
