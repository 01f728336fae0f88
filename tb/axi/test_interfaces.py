# amaranth: UnusedElaboratable=no
"""Signatures, flat port names and constructor checks of the AXI, DMA and register
block components (no simulation)."""

import re

import pytest

pytestmark = pytest.mark.filterwarnings("ignore:.*created but never used")


def test_axi4_signature_members_and_equality():
    from intformer.hw.axi import AXI4Signature

    sig = AXI4Signature(addr_width=32, data_width=64, id_width=4)
    assert sig == AXI4Signature(addr_width=32, data_width=64, id_width=4)
    assert sig != AXI4Signature(addr_width=32, data_width=128, id_width=4)
    assert hash(sig) == hash(AXI4Signature(addr_width=32, data_width=64, id_width=4))
    assert repr(sig) == "AXI4Signature(addr_width=32, data_width=64, id_width=4)"
    assert sig.bytes_per_beat == 8
    iface = sig.create()
    assert (len(iface.wstrb), len(iface.awaddr), len(iface.rid), len(iface.awlen)) == \
        (8, 32, 4, 8)
    assert len(iface.araddr) == 32 and iface.signature == sig
    assert sig.members["rdata"].flow.name == "In" and sig.members["wdata"].flow.name == "Out"


def test_axi4lite_signature():
    from intformer.hw.axi import AXI4LiteSignature

    sig = AXI4LiteSignature(addr_width=12)
    assert sig == AXI4LiteSignature(addr_width=12, data_width=32)
    assert repr(sig) == "AXI4LiteSignature(addr_width=12, data_width=32)"
    iface = sig.create()
    assert len(iface.wstrb) == 4 and len(iface.rdata) == 32


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(addr_width=32, data_width=48, id_width=4), ValueError,
     r"AXI4Signature data_width 48 is not one of 32, 64, 128, 256, 512, 1024"),
    (dict(addr_width=8, data_width=64, id_width=4), ValueError,
     r"AXI4Signature addr_width must be between 12 and 64, not 8"),
    (dict(addr_width=32, data_width=64, id_width="4"), TypeError,
     r"AXI4Signature id_width must be an integer, not '4'"),
])
def test_axi4_signature_errors(kwargs, error, message):
    from intformer.hw.axi import AXI4Signature

    with pytest.raises(error, match=message):
        AXI4Signature(**kwargs)


def test_axi4lite_signature_errors():
    from intformer.hw.axi import AXI4LiteSignature

    with pytest.raises(ValueError, match=r"AXI4LiteSignature data_width 128 is not one of 32, 64"):
        AXI4LiteSignature(addr_width=12, data_width=128)
    with pytest.raises(TypeError, match=r"AXI4LiteSignature addr_width must be an integer, "
                                        r"not True"):
        AXI4LiteSignature(addr_width=True)


def test_flat_ports_conventional_names():
    from amaranth.back import verilog

    from intformer.hw.axi import FlatPorts
    from intformer.hw.csr import CSRBank, standard_registers
    from intformer.hw.dma import DMA

    text = verilog.convert(FlatPorts(DMA(), flatten=["m_axi"]), name="top", emit_src=False)
    header = text[:text.index(");")]
    for name in ("m_axi_awaddr", "m_axi_wstrb", "m_axi_bresp", "m_axi_arlen", "m_axi_rlast",
                 "rd_desc__valid", "wr_data__payload"):
        assert re.search(rf"\b{name}\b", header), name
    assert "m_axi__" not in header
    assert re.search(r"input\s+m_axi_rvalid;", text) and re.search(r"output\s+m_axi_rready;",
                                                                   text)
    text = verilog.convert(FlatPorts(CSRBank(standard_registers()), flatten=["s_axil"]),
                           name="top", emit_src=False)
    assert re.search(r"input\s+\[11:0\]\s+s_axil_awaddr;", text)
    assert re.search(r"output\s+s_axil_awready;", text)
    assert re.search(r"output\s+\[31:0\]\s+s_axil_rdata;", text)


def test_flat_ports_errors():
    from intformer.hw.axi import FlatPorts
    from intformer.hw.dma import DMA

    with pytest.raises(TypeError, match=r"FlatPorts wraps a wiring.Component, not 3"):
        FlatPorts(3)
    with pytest.raises(ValueError, match=r"FlatPorts member 'm_axil' is not a member of DMA"):
        FlatPorts(DMA(), flatten=["m_axil"])
    with pytest.raises(ValueError, match=r"FlatPorts member 'soft_reset' is a port, "
                                         r"not an interface"):
        FlatPorts(DMA(), flatten=["soft_reset"])


def test_dma_figures_and_layouts():
    from amaranth.hdl import Fragment

    from intformer.hw.config import preset
    from intformer.hw.dma import DMA, DMAError

    dma = DMA.from_config(preset("default").replace(axi_data_width=128,
                                                    axi_max_outstanding=8))
    Fragment.get(dma, None)  # elaborates, so it is not reported as unused
    assert (dma.bytes_per_beat, dma.max_burst, dma.max_outstanding) == (16, 16, 8)
    assert dma.burst_span == 256
    assert set(dma.descriptor_layout.members) == {"addr", "stride", "rows", "row_bytes", "tag"}
    assert set(dma.status_layout.members) == {"tag", "error", "addr"}
    assert dma.params()["errors"] == {e.name: e.value for e in DMAError}


@pytest.mark.parametrize("kwargs, error, message", [
    (dict(max_burst=3), ValueError, r"DMA max_burst must be a power of 2, not 3"),
    (dict(data_width=128, max_burst=512), ValueError,
     r"DMA max_burst must be between 1 and 256, not 512"),
    (dict(data_width=512, max_burst=128), ValueError,
     r"DMA max_burst of 128 beats of 64 bytes exceeds the 4096-byte AXI burst limit"),
    (dict(data_width=24), ValueError, r"DMA data_width 24 is not one of 32, 64, 128, 256, 512"),
    (dict(max_outstanding=0), ValueError, r"DMA max_outstanding must be between 1 and 64, not 0"),
    (dict(tag_width=1.5), TypeError, r"DMA tag_width must be an integer, not 1.5"),
    (dict(check_window=1), TypeError, r"DMA check_window must be a boolean, not 1"),
])
def test_dma_errors(kwargs, error, message):
    from intformer.hw.dma import DMA

    with pytest.raises(error, match=message):
        DMA(**kwargs)


def test_engine_errors():
    from intformer.hw.dma import DMAReader, DMAWriter

    with pytest.raises(ValueError, match=r"DMAReader addr_width must be between 12 and 64, "
                                         r"not 70"):
        DMAReader(addr_width=70)
    with pytest.raises(ValueError, match=r"DMAWriter max_burst must be a power of 2, not 6"):
        DMAWriter(max_burst=6)


def test_register_map_manifest_and_extension():
    from intformer.hw.csr import CSRBank, Field, Register, standard_registers

    regs = standard_registers()
    extra = regs.add(Register("cmd_addr", [Field("addr", 32)], doc="Command stream address"))
    man = regs.manifest()
    assert man["ctrl"]["offset"] == 0 and man["ctrl"]["fields"]["soft_reset"]["bit"] == 1
    assert man["status"]["fields"]["error"] == {
        "bit": 2, "width": 4, "mask": 0b111100, "access": "ro", "reset": 0,
        "doc": "Error code of the last job (0: none)"}
    assert man["cmd_addr"]["offset"] == extra.offset == regs.size - 4
    assert [r.offset for r in regs] == list(range(0, regs.size, 4))
    bank = CSRBank(regs, addr_width=12, irq=("irq_enable", "irq_status"))
    assert bank.manifest() == {"registers": man}
    assert "irq" in bank.signature.members and "done_set" in bank.irq_status.signature.members
    wide = standard_registers(addr_width=40)
    assert wide.manifest()["window_base_hi"]["fields"]["addr"]["width"] == 8
    # Window registers are as wide as the address, the limit one bit more.
    narrow = standard_registers(addr_width=24).manifest()
    assert narrow["window_base"]["fields"]["addr"]["width"] == 24
    assert narrow["window_limit"]["fields"]["addr"]["width"] == 25
    assert narrow["error_addr"]["fields"]["addr"]["width"] == 24
    assert man["window_limit"]["fields"]["addr"]["width"] == 32


def test_manifest_reaches_c_header():
    from intformer.gen.emit import c_header
    from intformer.hw.csr import standard_registers

    text = c_header({"config": {}, "derived": {},
                     "registers": standard_registers().manifest()})
    assert re.search(r"#define INTFORMER_REGISTER_IRQ_STATUS_OFFSET\s+12u", text)
    assert re.search(r"#define INTFORMER_REGISTER_STATUS_FIELDS_ERROR_MASK\s+60u", text)


@pytest.mark.parametrize("make, error, message", [
    (lambda c: c.Field("Start"), ValueError, r"Field name must be lower-case letters"),
    (lambda c: c.Field("go", 33), ValueError, r"Field 'go' width must be between 1 and 32, "
                                              r"not 33"),
    (lambda c: c.Field("go", access="rc"), ValueError,
     r"Field 'go' access must be one of rw, ro, w1p, w1c, not 'rc'"),
    (lambda c: c.Field("go", 2, reset=4), ValueError,
     r"Field 'go' reset must fit 2 bits and be 0 for rw fields, not 4"),
    (lambda c: c.Field("go", access="ro", reset=1), ValueError,
     r"Field 'go' reset must fit 1 bits and be 0 for ro fields, not 1"),
    (lambda c: c.Register("r", [c.Field("a", 20), c.Field("b", 20)]), ValueError,
     r"Register 'r' fields take 40 bits, more than 32"),
    (lambda c: c.Register("r", [c.Field("a"), c.Field("a")]), ValueError,
     r"Register 'r' has two fields named 'a'"),
    (lambda c: c.Register("r", ["a"]), TypeError, r"Register 'r' fields must be Field objects"),
    (lambda c: c.RegisterMap([c.Register("r", [c.Field("a")]), c.Register("r", [c.Field("b")])]),
     ValueError, r"RegisterMap already has a register named 'r'"),
    (lambda c: c.CSRBank(c.RegisterMap([c.Register("r", [c.Field("a")])] * 1), addr_width=2),
     ValueError, r"CSRBank addr_width must be between 4 and 32, not 2"),
    (lambda c: c.CSRBank(c.standard_registers(), addr_width=5), ValueError,
     r"CSRBank register map of 44 bytes does not fit a 5-bit address space"),
    (lambda c: c.CSRBank(c.RegisterMap()), ValueError, r"CSRBank register map is empty"),
    (lambda c: c.CSRBank([]), TypeError, r"CSRBank takes a RegisterMap, not \[\]"),
    (lambda c: c.CSRBank(c.standard_registers(), irq=("ctrl", "status")), ValueError,
     r"CSRBank irq needs 'status' to have only w1c fields named like those of 'ctrl'"),
    (lambda c: c.CSRBank(c.standard_registers(), irq=("irq_enable", "nope")), ValueError,
     r"CSRBank irq register 'nope' is not in the map"),
])
def test_csr_errors(make, error, message):
    from intformer.hw import csr

    with pytest.raises(error, match=message):
        make(csr)


def test_dma_manifest_reaches_c_header():
    from intformer.gen.emit import c_header
    from intformer.hw.dma import DMA

    man = DMA(data_width=128).manifest()
    assert man["dma"]["bytes_per_beat"] == 16 and man["dma"]["max_burst"] == 16
    text = c_header({"config": {}, "derived": {}, **man})
    assert re.search(r"#define INTFORMER_ERROR_DMA_WINDOW\s+3u", text)
    assert re.search(r"#define INTFORMER_ERROR_DMA_SLVERR\s+1u", text)
