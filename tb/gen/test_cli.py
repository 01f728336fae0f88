"""The command line, run as a user runs it: in a subprocess, checking exit status, that
errors are one line naming the field and value, and that output is deterministic."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from intformer.hw.config import PRESETS, preset

REPO = Path(__file__).resolve().parents[2]


def cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "intformer.gen.cli", *map(str, args)],
                          capture_output=True, text=True, cwd=cwd, timeout=300)


def assert_user_error(proc, *needles):
    assert proc.returncode != 0
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("intformer: error: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_set_out_of_range(tmp_path):
    proc = cli("generate", "--set", "array_rows=0", "--out", tmp_path)
    assert_user_error(proc, "array_rows", "0")
    assert not (tmp_path / "manifest.json").exists()


def test_set_unknown_key(tmp_path):
    assert_user_error(cli("generate", "--set", "array_depth=4", "--out", tmp_path),
                      "array_depth")


def test_set_bad_type(tmp_path):
    assert_user_error(cli("generate", "--set", "has_gelu=maybe", "--out", tmp_path),
                      "has_gelu", "maybe")


def test_set_without_equals(tmp_path):
    assert_user_error(cli("generate", "--set", "array_rows", "--out", tmp_path), "array_rows")


@pytest.mark.parametrize("args,message", [
    (["--out", ""], "argument --out: must be a path, not empty"),
    (["--preset", ""], "argument --preset: must not be empty"),
    (["--preset", " tiny"], "argument --preset: has blanks around it: ' tiny'"),
    (["--config", ""], "argument --config: must be a path, not empty"),
    (["--set", "array_rows"], "argument --set: takes KEY=VALUE, not 'array_rows'"),
    (["--set", "=3"], "argument --set: takes KEY=VALUE, not '=3'"),
    (["--set", " =3"], "argument --set: takes KEY=VALUE, not ' =3'"),
    (["--set", "array_rows="], "argument --set: takes KEY=VALUE, not 'array_rows='"),
    (["--set", ""], "argument --set: takes KEY=VALUE, not ''"),
])
def test_empty_or_malformed_arguments(tmp_path, args, message):
    # Run in an empty folder: nothing may be written there (Path("") is ".").
    proc = cli("generate", *args, cwd=tmp_path)
    assert proc.returncode == 2
    assert_user_error(proc, message, "intformer generate --help")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("args,message", [
    (["synth", "--out", ""], "argument --out: must be a path, not empty"),
    (["synth", "--block", ""], "argument --block: must not be empty"),
    (["model", "eval", "--weights", ""], "argument --weights: must be a path, not empty"),
    (["generate", "--bogus"], "unrecognized arguments: --bogus"),
])
def test_other_malformed_arguments(tmp_path, args, message):
    proc = cli(*args, cwd=tmp_path)
    assert proc.returncode == 2
    assert_user_error(proc, message)


@pytest.mark.parametrize("setting,message", [
    ("spad_bytes=1099511627776", "spad_bytes must be at most 524288 (65536 scratchpad rows of "
                                 "8 bytes: command row fields are 16 bits), not 1099511627776"),
    ("acc_bytes=1099511627776", "acc_bytes must be at most 1048576 (1 MiB), not 1099511627776"),
    ("axi_addr_width=64", "axi_addr_width must be between 16 and 32, not 64"),
    ("requant_mult_width=27", "requant_mult_width must be between 8 and 16, not 27"),
])
def test_bounds_refused_before_elaboration(tmp_path, setting, message):
    proc = cli("generate", "--set", setting, "--out", tmp_path)
    assert proc.returncode == 2
    assert_user_error(proc, message)
    assert not (tmp_path / "manifest.json").exists()


def test_malformed_toml(tmp_path):
    path = tmp_path / "bad.toml"
    path.write_text("[array]\nrows = = 4\n")
    assert_user_error(cli("generate", "--config", path, "--out", tmp_path / "o"),
                      "bad.toml", "not valid TOML")


def test_toml_bad_value(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("[array]\nrows = 100\n")
    assert_user_error(cli("generate", "--config", path, "--out", tmp_path / "o"),
                      "array_rows", "100")


def test_toml_unknown_table(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("[arrays]\nrows = 4\n")
    assert_user_error(cli("generate", "--config", path, "--out", tmp_path / "o"), "[arrays]")


def test_missing_config_file(tmp_path):
    assert_user_error(cli("generate", "--config", tmp_path / "nope.toml", "--out", tmp_path),
                      "nope.toml")


def test_unknown_preset(tmp_path):
    assert_user_error(cli("generate", "--preset", "huge", "--out", tmp_path), "huge")


def test_preset_and_config(tmp_path):
    path = tmp_path / "cfg.toml"
    path.write_text("")
    assert_user_error(cli("generate", "--preset", "tiny", "--config", path, "--out", tmp_path),
                      "--preset", "--config")


def test_output_folder_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("")
    assert_user_error(cli("generate", "--out", tmp_path / "taken"), "taken")


def test_presets_json():
    proc = cli("presets", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    assert [r["name"] for r in rows] == list(PRESETS)
    for r in rows:
        c = preset(r["name"])
        assert r["array"] == f"{c.array_rows}x{c.array_cols}"
        assert r["macs_per_cycle"] == c.macs_per_cycle


def test_presets_table():
    proc = cli("presets")
    assert proc.returncode == 0, proc.stderr
    for name in PRESETS:
        assert name in proc.stdout


def test_generate_is_deterministic_and_path_free(tmp_path):
    a_cwd, b_cwd = tmp_path / "one", tmp_path / "two" / "deeper"
    a_cwd.mkdir()
    b_cwd.mkdir(parents=True)
    pa = cli("generate", "--preset", "default", "--out", "A", "--save-config", cwd=a_cwd)
    pb = cli("generate", "--preset", "default", "--out", tmp_path / "B", "--save-config",
             cwd=b_cwd)
    assert pa.returncode == 0 and pb.returncode == 0, pa.stderr + pb.stderr
    a, b = a_cwd / "A", tmp_path / "B"
    names = sorted(p.name for p in a.iterdir())
    assert names == sorted(p.name for p in b.iterdir())
    assert {"manifest.json", "intformer.h", "config.toml"} <= set(names)
    assert any(n.endswith(".v") for n in names)
    forbidden = {"/work", str(REPO), str(Path.home()), str(tmp_path), os.getcwd()}
    for name in names:
        data_a, data_b = (a / name).read_bytes(), (b / name).read_bytes()
        assert data_a == data_b, name
        text = data_a.decode()
        for path in forbidden:
            assert path not in text, (name, path)


def test_generate_manifest_matches_config(tmp_path):
    proc = cli("generate", "--preset", "tiny", "--set", "has_gelu=false", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    man = json.loads((tmp_path / "manifest.json").read_text())
    expected = preset("tiny").replace(has_gelu=False)
    assert man["config"] == expected.to_dict()
    assert man["derived"] == expected.derived()
    header = (tmp_path / "intformer.h").read_text()
    assert f"#define INTFORMER_ARRAY_ROWS{' ' * 20} {expected.array_rows}u" in header
    assert "#define INTFORMER_HAS_GELU" in header


def test_saved_config_reloads(tmp_path):
    proc = cli("generate", "--preset", "tiny", "--set", "cmd_queue_depth=16", "--out",
               tmp_path / "g", "--save-config")
    assert proc.returncode == 0, proc.stderr
    again = cli("generate", "--config", tmp_path / "g" / "config.toml", "--out", tmp_path / "h",
                "--save-config")
    assert again.returncode == 0, again.stderr
    for name in ("manifest.json", "intformer.h", "config.toml"):
        assert (tmp_path / "g" / name).read_bytes() == (tmp_path / "h" / name).read_bytes()


@pytest.mark.parametrize("args", [["--help"], ["generate", "--help"], ["synth", "--help"]])
def test_help(args):
    proc = cli(*args)
    assert proc.returncode == 0 and "usage: intformer" in proc.stdout


def test_no_command():
    proc = cli()
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_vector_units_with_fewer_lanes_than_a_row(tmp_path):
    # A 16x8 array has a 16-byte scratchpad row: two beats of the 8 vector lanes.
    proc = cli("generate", "--set", "array_rows=16", "--out", tmp_path)
    assert proc.returncode == 0, proc.stderr
    implemented = json.loads((tmp_path / "manifest.json").read_text())["commands"]["implemented"]
    assert "gelu" in implemented and "layernorm" in implemented and "gemm" in implemented


def test_vector_lanes_rule_is_one_line(tmp_path):
    proc = cli("generate", "--set", "vector_lanes=16", "--out", tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines() == [
        "intformer: error: vector_lanes must be a power of 2 that divides array_cols (8) and "
        "spad_row_bytes (8) when a vector unit is included, not 16"]
