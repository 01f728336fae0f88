"""Config: every user-facing error message, presets, derived figures and ``--set`` parsing."""

import dataclasses
import re

import pytest

from intformer.hw import config as limits
from intformer.hw.config import BASE, GROUPS, PRESETS, Config, field_group, preset


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


@pytest.mark.parametrize("name", list(PRESETS))
def test_presets_are_valid_and_distinct(name):
    config = preset(name)
    assert isinstance(config, Config)
    # Running validation again on the same values must accept them.
    assert Config(**config.to_dict()) == config
    others = [preset(n) for n in PRESETS if n != name]
    assert config not in others


def test_default_preset_is_base():
    assert preset("default") == BASE == Config()


def test_every_field_has_group_and_doc():
    for f in dataclasses.fields(Config):
        assert f.metadata["group"] in GROUPS
        assert field_group(f.name) == f.metadata["group"]
        assert Config.doc(f.name).strip()
        assert Config.values(f.name).strip()


def test_derived_figures():
    c = Config(array_rows=4, array_cols=8, operand_width=8, acc_width=32, axi_data_width=128,
               spad_bytes=4096, acc_bytes=2048)
    d = c.derived()
    assert d["pes"] == 32 and d["macs_per_cycle"] == 32
    assert d["axi_bytes"] == 16
    assert d["spad_row_bytes"] == 8 and d["spad_rows"] == 512
    assert d["acc_row_bytes"] == 32 and d["acc_rows"] == 64
    assert d["weight_tile_bytes"] == 32
    assert d["min_spad_bytes"] == 2 * (32 + 4 * 8)
    assert d["min_acc_bytes"] == 2 * 4 * 32
    assert c.units == ("softmax", "gelu", "layernorm", "residual")
    assert Config(has_gelu=False, has_residual=False).units == ("softmax", "layernorm")


# Type errors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("name,value,message", [
    ("array_rows", "8", "array_rows must be an integer, not '8'"),
    ("array_rows", 8.0, "array_rows must be an integer, not 8.0"),
    ("spad_bytes", True, "spad_bytes must be an integer, not True"),
    ("has_softmax", 1, "has_softmax must be a boolean, not 1"),
    ("has_requant", 0, "has_requant must be a boolean, not 0"),
    ("perf_counters", "no", "perf_counters must be a boolean, not 'no'"),
    ("dsp_packing", "yes", "dsp_packing must be a boolean, not 'yes'"),
    ("cmd_queue_depth", None, "cmd_queue_depth must be an integer, not None"),
])
def test_type_errors(name, value, message):
    with raises(TypeError, message):
        Config(**{name: value})


def test_unknown_field():
    with raises(ValueError, "Unknown configuration field 'array_depth'"):
        BASE.replace(array_depth=4)
    with raises(ValueError, "Unknown configuration field 'array_depth'"):
        BASE.with_settings({"array_depth": "4"})
    with raises(ValueError, "Unknown configuration field 'array_depth'"):
        field_group("array_depth")
    with pytest.raises(TypeError, match="array_depth"):
        Config(array_depth=4)


def test_unknown_preset():
    with raises(ValueError, "Unknown preset 'huge'; the presets are " + ", ".join(PRESETS)):
        preset("huge")


# Value errors, one per rule ------------------------------------------------------------------

RANGES = [
    ("array_rows", 1, 64), ("array_cols", 1, 64), ("operand_width", 2, 16),
    ("requant_mult_width", 8, 16), ("axi_addr_width", 16, 32), ("axi_id_width", 1, 16),
    ("csr_addr_width", 8, 16), ("vector_lanes", 1, 64), ("cmd_queue_depth", 0, 256),
    ("dep_queue_depth", 1, 256),
]


@pytest.mark.parametrize("name,lo,hi", RANGES)
def test_ranges(name, lo, hi):
    for bad in (lo - 1, hi + 1):
        with raises(ValueError, f"{name} must be between {lo} and {hi}, not {bad}"):
            # The smallest array keeps the memory rules satisfied at either end of a range.
            Config(**{name: bad})


def test_range_ends_accepted():
    Config(array_rows=1, array_cols=1, vector_lanes=1)
    Config(operand_width=2, vector_lanes=2)
    Config(cmd_queue_depth=0, dep_queue_depth=1)


def test_outstanding_limited_by_id_width():
    with raises(ValueError, "axi_max_outstanding must be between 1 and 4, not 5"):
        Config(axi_id_width=2, axi_max_outstanding=5)
    Config(axi_id_width=2, axi_max_outstanding=4)


def test_acc_width_rule():
    # 2 * 8 + log2(8) + 1 = 20 for the default array.
    with raises(ValueError, "acc_width must be between 20 (2 * operand_width + log2(array_rows) "
                            "+ 1) and 48, not 19"):
        Config(acc_width=19)
    with raises(ValueError, "acc_width must be between 20 (2 * operand_width + log2(array_rows) "
                            "+ 1) and 48, not 49"):
        Config(acc_width=49)
    # 20-bit accumulators take 3 bytes each, so rows are 24 bytes and banks hold 48-byte units.
    Config(acc_width=20, acc_bytes=48 * 512, has_requant=False)


def test_dsp_packing_needs_narrow_operands():
    with raises(ValueError, "dsp_packing needs operand_width of at most 8, not 12"):
        Config(dsp_packing=True, operand_width=12)
    Config(dsp_packing=True, operand_width=8)


def test_dsp_packing_and_ecp5_dsp_exclude_each_other():
    with raises(ValueError, "dsp_packing (iCE40 SB_MAC16) and ecp5_dsp (ECP5 MULT18X18D) "
                            "exclude each other"):
        Config(dsp_packing=True, ecp5_dsp=True)
    Config(ecp5_dsp=True)


def test_axi_data_width():
    with raises(ValueError, "axi_data_width 48 is not one of 32, 64, 128, 256, 512"):
        Config(axi_data_width=48)


@pytest.mark.parametrize("name,lo,hi,bad", [
    ("axi_max_burst", 1, 256, 12), ("axi_max_burst", 1, 256, 512),
    ("spad_banks", 2, 16, 1), ("spad_banks", 2, 16, 3),
    ("acc_banks", 1, 16, 32), ("acc_banks", 1, 16, 6), ("acc_banks", 1, 16, 0),
])
def test_powers_of_two(name, lo, hi, bad):
    with raises(ValueError, f"{name} must be a power of 2 between {lo} and {hi}, not {bad}"):
        Config(**{name: bad})


def test_axi_4k_burst_limit():
    with raises(ValueError, "axi_max_burst of 256 beats of 32 bytes exceeds the 4096-byte "
                            "AXI burst limit"):
        Config(axi_data_width=256, axi_max_burst=256)
    Config(axi_data_width=256, axi_max_burst=128)


def test_memory_multiples():
    # Default: 2 banks x 8-byte rows; accumulator 2 banks x 8 x 4-byte rows.
    with raises(ValueError, "spad_bytes must be a positive multiple of 16 (spad_banks x "
                            "scratchpad row of 8 bytes), not 1000"):
        Config(spad_bytes=1000)
    with raises(ValueError, "spad_bytes must be a positive multiple of 16 (spad_banks x "
                            "scratchpad row of 8 bytes), not 0"):
        Config(spad_bytes=0)
    with raises(ValueError, "acc_bytes must be a positive multiple of 64 (acc_banks x "
                            "accumulator row of 32 bytes), not 1000"):
        Config(acc_bytes=1000)


def test_scratchpad_too_small_to_double_buffer():
    c = Config(array_rows=16, array_cols=16, spad_bytes=16 * 1024, acc_bytes=16 * 1024)
    assert c.min_spad_bytes == 1024
    with raises(ValueError, "Scratchpad of 992 bytes cannot double-buffer one 16x16 tile and "
                            "its inputs (1024 bytes)"):
        dataclasses.replace(c, spad_bytes=992)


def test_accumulator_too_small_to_double_buffer():
    with raises(ValueError, "Accumulator of 448 bytes cannot double-buffer one 8x8 output "
                            "tile (512 bytes)"):
        Config(acc_bytes=448)
    Config(acc_bytes=512, vector_max_row=128)


NO_VECTOR_UNITS = dict(has_softmax=False, has_gelu=False, has_layernorm=False,
                       has_residual=False)


def test_vector_lanes_rule():
    """Lanes are a power of 2 that divides both memory rows, where a vector unit is."""
    for changes, bad in ((dict(vector_lanes=3), 3), (dict(vector_lanes=16), 16),
                         (dict(array_cols=4), 8),
                         (dict(array_rows=16, array_cols=4), 8)):
        c = BASE.replace(**{k: v for k, v in changes.items() if k != "vector_lanes"},
                         **NO_VECTOR_UNITS)
        with raises(ValueError, f"vector_lanes must be a power of 2 that divides array_cols "
                                f"({c.array_cols}) and spad_row_bytes ({c.spad_row_bytes}) "
                                f"when a vector unit is included, not {bad}"):
            Config(**{**BASE.to_dict(), **changes})
    for lanes in (1, 2, 4, 8):
        assert Config(vector_lanes=lanes).vector_lanes_fit
    # A 16x8 array: 16-byte scratchpad rows, 8-element accumulator rows.
    Config(array_rows=16, vector_lanes=8)
    # Without vector units the lanes are not used.
    Config(array_cols=4, **NO_VECTOR_UNITS)


def test_vector_max_row():
    for bad in (4, 260):
        with raises(ValueError, "vector_max_row must be a multiple of vector_lanes (8) of at "
                                f"least 8, not {bad}"):
            Config(vector_max_row=bad)
    for bad in (4096, 4104):
        with raises(ValueError, "vector_max_row must be at most 4095 (the 12-bit length "
                                f"field), not {bad}"):
            Config(vector_max_row=bad)
    Config(vector_max_row=4088)


def test_vector_max_row_fits_the_memories():
    # tiny: 2-byte scratchpad rows, accumulator rows of 2 INT32 values.
    with raises(ValueError, "vector_max_row of 64 elements needs 32 accumulator rows of 2, "
                            "more than the 16 it has"):
        preset("tiny").replace(acc_bytes=128, vector_max_row=64)
    with raises(ValueError, "vector_max_row of 1024 elements needs 512 scratchpad rows of 2, "
                            "more than the 256 it has"):
        preset("tiny").replace(spad_bytes=512, acc_bytes=4096, vector_max_row=1024)
    preset("tiny").replace(acc_bytes=256, vector_max_row=64)
    # Without vector units the length is not used.
    preset("icebreaker").replace(acc_bytes=128, vector_max_row=64)


# Upper bounds the hardware sets ----------------------------------------------------------------

def test_requant_multiplier_fits_a_scale_lane():
    with raises(ValueError, "requant_mult_width must be between 8 and 16, not 27"):
        Config(requant_mult_width=27)
    # The multiplier and the 6-bit shift share one accumulator lane, acc_width in whole bytes.
    with raises(ValueError, "requant_mult_width must be at most 2 (a 8-bit accumulator lane "
                            "holds the multiplier and a 6-bit shift), not 16"):
        preset("tiny").replace(operand_width=2, acc_width=6)
    with raises(ValueError, "requant_mult_width must be at most 10 (a 16-bit accumulator lane "
                            "holds the multiplier and a 6-bit shift), not 16"):
        preset("tiny").replace(operand_width=2, acc_width=16)
    preset("tiny").replace(operand_width=2, acc_width=16, requant_mult_width=10,
                           vector_lanes=1)
    Config(acc_width=24, acc_bytes=24 * 1024)


def test_requant_unit_needs_whole_byte_lanes():
    with raises(ValueError, "has_requant needs acc_width a multiple of 8 (the requant unit "
                            "reads lanes of acc_width bits), not 22"):
        Config(acc_width=22, acc_bytes=24 * 1024)
    Config(acc_width=22, acc_bytes=24 * 1024, has_requant=False)


def test_dsp_packing_needs_two_pes():
    with raises(ValueError, "dsp_packing needs at least 2 PEs to pair, not 1x1"):
        preset("icebreaker").replace(array_rows=1)


def test_outstanding_limited_by_the_dma():
    with raises(ValueError, "axi_max_outstanding must be between 1 and 64, not 65"):
        Config(axi_id_width=8, axi_max_outstanding=65)
    Config(axi_id_width=8, axi_max_outstanding=64)


@pytest.mark.parametrize("name,value,message", [
    # Local row fields are 16 bits: 65,536 rows.
    ("spad_bytes", 65537 * 16, "spad_bytes must be at most 524288 (65536 scratchpad rows of 8 "
                               "bytes: command row fields are 16 bits), not 1048592"),
    ("spad_bytes", 1 << 40, "spad_bytes must be at most 524288 (65536 scratchpad rows of 8 "
                            "bytes: command row fields are 16 bits), not 1099511627776"),
    # 32-byte accumulator rows would allow 2 MiB; generating it is the limit.
    ("acc_bytes", 1 << 21, "acc_bytes must be at most 1048576 (1 MiB), not 2097152"),
    ("acc_bytes", 1 << 40, "acc_bytes must be at most 1048576 (1 MiB), not 1099511627776"),
])
def test_memory_upper_bounds(name, value, message):
    with raises(ValueError, message):
        Config(**{name: value})


def test_memory_upper_bounds_accepted():
    c = Config(spad_bytes=limits.MAX_LOCAL_ROWS * 8, acc_bytes=limits.MAX_MEMORY_BYTES)
    assert c.spad_rows == limits.MAX_LOCAL_ROWS and c.acc_rows == 32768
    with raises(ValueError, "acc_bytes must be at most 262144 (65536 accumulator rows of 4 "
                            "bytes: command row fields are 16 bits), not 262160"):
        preset("icebreaker").replace(acc_bytes=262144 + 16)
    assert preset("icebreaker").replace(acc_bytes=262144).acc_rows == limits.MAX_LOCAL_ROWS


def test_rows_and_bus_beats_divide_one_another():
    # A 3x3 array of INT8 has 3-byte scratchpad rows; a 32-bit bus has 4-byte beats.
    with raises(ValueError, "spad_row_bytes (3) and the axi_data_width beat (4 bytes) must "
                            "divide one another"):
        preset("tiny").replace(array_rows=3, array_cols=3, spad_bytes=6 * 1024)
    # 2 columns of 40-bit accumulators: 10-byte rows.
    with raises(ValueError, "acc_row_bytes (10) and the axi_data_width beat (4 bytes) must "
                            "divide one another"):
        preset("tiny").replace(acc_width=40, acc_bytes=40 * 64)
    preset("tiny").replace(array_rows=4, array_cols=4, spad_bytes=8192, acc_bytes=4096)


def test_scratchpad_rows_are_whole_bytes():
    # Operands are packed at operand_width bits; a row rounds up to whole bytes.
    assert preset("tiny").replace(operand_width=7).spad_row_bytes == 2
    assert preset("tiny").replace(operand_width=2, vector_lanes=1).spad_row_bytes == 1
    assert Config(operand_width=12, axi_data_width=32, spad_bytes=24 * 1024,
                  vector_lanes=4).spad_row_bytes == 12


def test_bounds_are_the_components_limits():
    """Config's upper bounds are those of the components and the command fields: the
    largest value builds, one more is refused by the component itself."""
    from intformer.hw import isa
    from intformer.hw.dma import DMA
    from intformer.hw.softmax import Softmax
    from intformer.hw.systolic import SystolicArray
    SystolicArray(limits.MAX_ARRAY, 1)
    with pytest.raises(ValueError, match="rows must be between 1 and 64"):
        SystolicArray(limits.MAX_ARRAY + 1, 1)
    Softmax(limits.MAX_VECTOR_LANES, max_row=limits.MAX_VECTOR_LANES)
    with pytest.raises(ValueError, match="lanes must be between 1 and 64"):
        Softmax(limits.MAX_VECTOR_LANES + 1, max_row=limits.MAX_VECTOR_LANES + 1)
    DMA.from_config(Config(axi_id_width=limits.MAX_ID_WIDTH,
                           axi_max_outstanding=limits.MAX_OUTSTANDING))
    with pytest.raises(ValueError, match="max_outstanding must be between 1 and 64, not 65"):
        DMA.from_config(BASE, max_outstanding=limits.MAX_OUTSTANDING + 1)
    with pytest.raises(ValueError, match="id_width must be between 1 and 16, not 17"):
        DMA.from_config(BASE, id_width=limits.MAX_ID_WIDTH + 1)
    isa.encode("softmax", length=limits.MAX_VECTOR_ROW)
    with pytest.raises(ValueError, match="cannot hold 4096"):
        isa.encode("softmax", length=limits.MAX_VECTOR_ROW + 1)
    for op, name in (("load", "loc"), ("gemm", "a"), ("gemm", "c"), ("softmax", "dst")):
        isa.encode(op, **{name: limits.MAX_LOCAL_ROWS - 1})
        with pytest.raises(ValueError, match=f"cannot hold {limits.MAX_LOCAL_ROWS}"):
            isa.encode(op, **{name: limits.MAX_LOCAL_ROWS})
    isa.encode("gemm", mult=2 ** limits.MAX_MULT_WIDTH - 1, shift=2 ** limits.SHIFT_WIDTH - 1)
    isa.encode("load", dram=2 ** limits.MAX_ADDR_WIDTH - 1)


# --set parsing ----------------------------------------------------------------------------------

def test_settings_parse_by_type():
    c = BASE.with_settings({"array_rows": " 16", "spad_bytes": "0x20000", "has_gelu": "off",
                            "dsp_packing": "True"})
    assert (c.array_rows, c.spad_bytes, c.has_gelu, c.dsp_packing) == (16, 0x20000, False, True)


def test_settings_type_errors():
    with raises(TypeError, "has_gelu must be a boolean (true/false), not 'maybe'"):
        BASE.with_settings({"has_gelu": "maybe"})
    with raises(TypeError, "array_rows must be an integer, not 'eight'"):
        BASE.with_settings({"array_rows": "eight"})


def test_settings_value_errors_name_field_and_value():
    with raises(ValueError, "array_rows must be between 1 and 64, not 0"):
        BASE.with_settings({"array_rows": "0"})


def test_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        BASE.array_rows = 4
