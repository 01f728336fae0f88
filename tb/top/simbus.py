"""The host driver's bus (:mod:`intformer.sw.driver`) on cocotbext-axi models: an
``AxiLiteMaster`` for the registers, an ``AxiRam`` for memory, the ``irq`` port."""

from cocotb.triggers import RisingEdge

__all__ = ["CocotbBus"]


class CocotbBus:
    """The driver's bus on cocotbext-axi models."""

    def __init__(self, dut, ram, lite):
        self.dut, self.ram, self.lite = dut, ram, lite

    async def read_reg(self, offset):
        return int.from_bytes((await self.lite.read(offset, 4)).data, "little")

    async def write_reg(self, offset, value):
        await self.lite.write(offset, int(value).to_bytes(4, "little"))

    async def write_mem(self, addr, data):
        self.ram.write(addr, data)

    async def read_mem(self, addr, length):
        return self.ram.read(addr, length)

    async def wait_irq(self, timeout):
        for _ in range(int(timeout)):
            if int(self.dut.irq.value):
                return
            await RisingEdge(self.dut.clk)
        raise TimeoutError("no interrupt")
