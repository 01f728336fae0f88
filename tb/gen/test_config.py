"""Config: every user-facing error message, presets, derived figures and ``--set`` parsing."""

import dataclasses
import re

import pytest

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
    ("requant_mult_width", 8, 32), ("axi_addr_width", 16, 64), ("axi_id_width", 1, 16),
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
    Config(acc_width=20, acc_bytes=48 * 512)


def test_dsp_packing_needs_narrow_operands():
    with raises(ValueError, "dsp_packing needs operand_width of at most 8, not 12"):
        Config(dsp_packing=True, operand_width=12)
    Config(dsp_packing=True, operand_width=8)


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
    Config(acc_bytes=512)


NO_VECTOR_UNITS = dict(has_softmax=False, has_gelu=False, has_layernorm=False,
                       has_residual=False)


def test_vector_lanes_rule():
    """Lanes are a power of 2 that divides both memory rows, where a vector unit is."""
    for changes, bad in ((dict(vector_lanes=3), 3), (dict(vector_lanes=16), 16),
                         (dict(array_cols=4), 8),
                         (dict(array_rows=12, spad_bytes=48 * 1024, vector_lanes=8), 8)):
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
    for bad in (4, 260, 4104):
        with raises(ValueError, "vector_max_row must be a multiple of vector_lanes (8) between "
                                f"8 and 4096, not {bad}"):
            Config(vector_max_row=bad)
    Config(vector_max_row=4096)


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
