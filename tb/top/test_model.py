"""The digits Vision Transformer on the accelerator: compiled by intformer.sw.compile,
run through intformer.sw.driver on the register interface with an AxiRam, every
tensor of the integer model (every op's output) compared bit-exactly with
IntegerModel.run."""

import cocotb
import numpy as np
import pytest
from cocotbext.axi import AxiBus, AxiLiteBus, AxiLiteMaster, AxiRam

from intformer.gen.sim.drivers import reset, rng, start_clock
from intformer.gen.sim.payload import load_ports
from intformer.sw.compile import compile_model
from intformer.sw.driver import Driver
from intformer.sw.model.evaluate import load_digits_model
from intformer.sw.model.vit import digits_split, patchify
from tb.axi.memory import bind_ports
from tb.top.simbus import CocotbBus

MEM = 1 << 20
BASE = 0x20000


@cocotb.test()
async def run_model(dut):
    params = load_ports()["params"]
    man = params["manifest"]
    r = rng()
    start_clock(dut.clk)
    bind_ports(dut, load_ports()["ports"])
    ram = AxiRam(AxiBus.from_prefix(dut, "m_axi"), dut.clk, dut.rst, size=MEM)
    lite = AxiLiteMaster(AxiLiteBus.from_prefix(dut, "s_axil"), dut.clk, dut.rst)
    await reset(dut)
    drv = Driver(man, CocotbBus(dut, ram, lite), base=BASE)
    cfg, _, _, model = load_digits_model()
    _, x_test, _, y_test = digits_split()
    for k in r.sample(range(len(x_test)), params["images"]):
        x = model.quantize_input(patchify(x_test[k:k + 1] / 16.0, cfg.patch))
        env = model.run(x)
        prog, tensors = compile_model(man, model, x[0])
        res = await drv.run(prog.image, prog.assemble(), command_bytes=man["commands"]["bytes"],
                            timeout=2_000_000)
        for op in model.ops:
            got = prog.read(res.image, tensors[op.output])
            want = env[op.output][0]
            bad = np.argwhere(got != want)
            assert not bad.size, (f"image {k}: {op.kind} {op.output}: {len(bad)} of "
                                  f"{want.size} differ, first at {tuple(bad[0])}: got "
                                  f"{got[tuple(bad[0])]} want {want[tuple(bad[0])]}")
        c = res.counters
        dut._log.info(f"image {k}: label {y_test[k]}, predicted "
                      f"{int(np.argmax(env[model.output][0]))}, {len(prog.commands)} "
                      f"commands, {c}")


@pytest.mark.slow
@pytest.mark.icarus_only
def test_model(sim):
    from intformer.gen.emit import manifest
    from intformer.gen.sim import harness
    from intformer.hw.axi import FlatPorts
    from intformer.hw.config import preset
    from intformer.hw.top import Accelerator
    from tb.top.icarus import kick_comb_blocks

    config = preset("default")
    dut = FlatPorts(Accelerator(config), flatten=("m_axi", "s_axil"))
    path = harness.build_dir(f"model_default_{sim}")
    source = harness.emit(dut, path, params={"manifest": manifest(config, dut), "images": 1})
    if sim == "icarus":
        kick_comb_blocks(source)
    harness.run(sim=sim, sources=[source], toplevel="top", test_module="tb.top.test_model",
                path=path)
