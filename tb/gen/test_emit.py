"""What ``generate`` emits agrees with itself: the manifest's port list is the Verilog
top's port list, with the same directions and widths."""

import json
import re

import pytest

from intformer.hw.config import preset


def verilog_ports(text: str, module: str) -> dict:
    body = text.split(f"module {module}(", 1)[1].split("endmodule", 1)[0]
    ports = {}
    for direction, msb, name in re.findall(r"^\s*(input|output)\s+(?:\[(\d+):0\]\s+)?(\S+);",
                                           body, re.M):
        ports[name] = (direction, int(msb) + 1 if msb else 1)
    return ports


@pytest.mark.parametrize("name", ["tiny", "default"])
def test_manifest_ports_match_verilog(name, tmp_path):
    from intformer.gen.emit import generate
    from intformer.gen.top import TOP_NAME
    files = generate(preset(name), tmp_path)
    man = json.loads(files["manifest"].read_text())
    declared = verilog_ports(files["verilog"].read_text(), TOP_NAME)
    listed = {p["name"]: (p["direction"], p["width"]) for p in man["top"]["ports"]}
    assert listed == declared
    assert {d for d, _ in listed.values()} == {"input", "output"}


def test_manifest_sections():
    from intformer.gen.emit import manifest
    man = manifest(preset("tiny"))
    assert man["config"] == preset("tiny").to_dict()
    assert set(man["groups"]) <= {"array", "bus", "memory", "vector", "units", "queues"}
