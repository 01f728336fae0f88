"""TOML configuration files: round trip of every preset and every error a user can make."""

import re

import pytest

from intformer.gen.configfile import dumps, load, loads, save
from intformer.hw.config import BASE, PRESETS, preset


def raises(exc, message):
    return pytest.raises(exc, match="^" + re.escape(message) + "$")


@pytest.mark.parametrize("name", list(PRESETS))
def test_round_trip(name, tmp_path):
    config = preset(name)
    path = tmp_path / f"{name}.toml"
    save(config, path)
    assert load(path) == config
    assert loads(dumps(config)) == config
    # Saving what was loaded gives the same text: the format is stable.
    assert dumps(load(path)) == path.read_text()


def test_tables_and_short_keys():
    text = dumps(BASE)
    for table in ("[array]", "[bus]", "[memory]", "[vector]", "[units]", "[queues]"):
        assert table in text
    assert "\nrows = 8\n" in text and "\nmax_row = 256\n" in text


def test_preset_base_and_changes():
    c = loads('preset = "tiny"\n[array]\ncols = 4\n')
    assert c == preset("tiny").replace(array_cols=4)


def test_top_level_field_names():
    assert loads("array_rows = 4\n") == BASE.replace(array_rows=4)


def test_malformed_toml():
    with pytest.raises(ValueError, match=r"^cfg\.toml is not valid TOML: .*line 1"):
        loads("[array\nrows = 4\n", source="cfg.toml")


def test_unknown_table():
    with raises(ValueError, "cfg.toml: unknown table [arrays]; the tables are "
                            "array, bus, memory, vector, units, queues"):
        loads("[arrays]\nrows = 4\n", source="cfg.toml")


def test_unknown_key_in_table():
    with raises(ValueError, "Unknown configuration field 'depth' in table [array]"):
        loads("[array]\ndepth = 4\n")
    # A field of another group is unknown in this table.
    with raises(ValueError, "Unknown configuration field 'spad_bytes' in table [array]"):
        loads("[array]\nspad_bytes = 4096\n")


def test_unknown_top_level_key():
    with raises(ValueError, "cfg.toml: unknown configuration field 'speed'"):
        loads("speed = 3\n", source="cfg.toml")


def test_wrong_types_and_values():
    with raises(TypeError, "array_rows must be an integer, not '8'"):
        loads('[array]\nrows = "8"\n')
    with raises(TypeError, "has_gelu must be a boolean, not 1"):
        loads("[units]\nhas_gelu = 1\n")
    with raises(TypeError, "<string>: preset must be a string, not 3"):
        loads("preset = 3\n")
    with raises(ValueError, "array_rows must be between 1 and 64, not 0"):
        loads("[array]\nrows = 0\n")
    with pytest.raises(ValueError, match="^Unknown preset 'huge'"):
        loads('preset = "huge"\n')


def test_missing_file(tmp_path):
    path = tmp_path / "nope.toml"
    with raises(ValueError, f"Cannot read configuration file {path}: No such file or directory"):
        load(path)


def test_directory(tmp_path):
    with raises(ValueError, f"Cannot read configuration file {tmp_path}: Is a directory"):
        load(tmp_path)


def test_path_through_a_file(tmp_path):
    (tmp_path / "plain").write_text("")
    path = tmp_path / "plain" / "cfg.toml"
    with raises(ValueError, f"Cannot read configuration file {path}: Not a directory"):
        load(path)


def test_unreadable_file(tmp_path):
    import os
    path = tmp_path / "secret.toml"
    path.write_text("[array]\nrows = 4\n")
    path.chmod(0)
    try:
        if os.access(path, os.R_OK):
            pytest.skip("running as a user who can read any file")
        with raises(ValueError, f"Cannot read configuration file {path}: Permission denied"):
            load(path)
    finally:
        path.chmod(0o644)


def test_binary_file(tmp_path):
    path = tmp_path / "weights.toml"
    path.write_bytes(bytes(range(256)) * 4)
    with raises(ValueError, f"{path} is not a text TOML file"):
        load(path)
