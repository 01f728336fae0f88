"""The README's configuration table is the one scripts/config_table.py makes from Config."""

import importlib.util
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]


def load_script():
    spec = importlib.util.spec_from_file_location("config_table",
                                                  REPO / "scripts" / "config_table.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_table_is_current():
    script = load_script()
    text = (REPO / "README.md").read_text()
    assert script.update(text) == text, (
        "README.md's configuration table is out of date: run "
        "`python scripts/config_table.py --update README.md`")


def test_config_table_lists_every_field():
    from dataclasses import fields

    from intformer.hw.config import Config
    table = load_script().table()
    for f in fields(Config):
        assert f"| `{f.name}` | {f.metadata['group']} |" in table


def test_update_replaces_a_stale_table():
    script = load_script()
    stale = f"intro\n{script.BEGIN}\n| old |\n{script.END}\noutro\n"
    fresh = script.update(stale)
    assert "| old |" not in fresh and "| `array_rows` |" in fresh
    assert fresh.startswith("intro\n") and fresh.endswith("\noutro\n")


def test_cli_subcommands_in_readme():
    text = (REPO / "README.md").read_text()
    section = text.split("## Command line", 1)[1].split("\n## ", 1)[0]
    for command in ("presets", "generate", "synth"):
        assert f"intformer {command}" in section


def test_configuration_example_loads():
    from intformer.gen.configfile import loads
    text = (REPO / "README.md").read_text()
    section = text.split("## Configuration", 1)[1].split("\n## ", 1)[0]
    example = section.split("```toml\n", 1)[1].split("```", 1)[0]
    config = loads(example)
    assert config.array_rows == 8 and not config.has_gelu
