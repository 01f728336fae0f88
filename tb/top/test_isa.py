"""The command set: hw/isa.py and the manifest-driven encoder in sw agree, fields are
well formed, and every word round-trips through encode/decode and the decoder's
Amaranth layout."""

import json
import random

import pytest

from intformer.sw.commands import CommandSet


def _manifest():
    from intformer.hw import isa
    # Through JSON, as a driver on another machine would read it.
    return json.loads(json.dumps(isa.manifest_section()))


def test_fields_are_disjoint_and_fit():
    from intformer.hw import isa
    for op in isa.OPCODES.values():
        used = 0
        for f in (*isa.HEADER, *op.fields):
            mask = ((1 << f.width) - 1) << f.offset
            assert not used & mask, f"{op.name}.{f.name} overlaps another field"
            assert f.offset + f.width <= isa.COMMAND_BITS
            used |= mask
    codes = [op.code for op in isa.OPCODES.values()]
    assert len(set(codes)) == len(codes) and 0 not in codes
    assert all(op.queue in isa.QUEUES for op in isa.OPCODES.values())
    errs = [code for code, _ in isa.ERRORS.values()]
    assert len(set(errs)) == len(errs) and isa.ERRORS["none"][0] == 0


def _random_fields(op, r):
    return {f.name: r.getrandbits(f.width) for f in op.fields[:] if r.random() < 0.8}


def test_sw_encoder_matches_hw():
    from amaranth.lib import data

    from intformer.hw import isa
    cs = CommandSet({"commands": _manifest()["commands"]})
    layout = isa.command_layout()
    r = random.Random(7)
    assert set(cs.names) == set(isa.OPCODES)
    for _ in range(300):
        op = r.choice(list(isa.OPCODES.values()))
        values = _random_fields(op, r)
        for flag in ("pop_prev", "pop_next", "push_prev", "push_next"):
            values[flag] = r.getrandbits(1)
        word = isa.encode(op.name, **values)
        assert cs.encode(op.name, **values) == word
        name, got = cs.decode(word)
        assert name == op.name
        assert got == {**{f: 0 for f in got}, **values}
        assert isa.decode(word) == (name, got)
        view = data.Const(layout, word)
        assert view.header.opcode == op.code
        for fname, value in got.items():
            assert getattr(getattr(view, op.name), fname) == value
        blob = cs.assemble([cs.command(op.name, **values)])
        assert len(blob) == isa.COMMAND_BYTES
        assert int.from_bytes(blob, "little") == word
        assert cs.disassemble(blob) == [(name, got)]


def test_encoder_errors():
    cs = CommandSet(_manifest())
    with pytest.raises(ValueError, match=r"Field load.rows of 12 bits cannot hold 4096"):
        cs.encode("load", rows=4096)
    with pytest.raises(ValueError, match=r"Command gemm has no field 'dram'"):
        cs.encode("gemm", dram=1)
    with pytest.raises(ValueError, match=r"Unknown command 'jump'"):
        cs.encode("jump")
    with pytest.raises(ValueError, match=r"Unknown opcode 0"):
        cs.decode(0)
    with pytest.raises(ValueError, match=r"not a whole number of 32-byte commands"):
        cs.disassemble(b"\0" * 17)
    with pytest.raises(ValueError, match=r"Manifest has no 'commands' section"):
        CommandSet({"config": {}})


def test_hw_encoder_errors():
    from intformer.hw import isa
    with pytest.raises(ValueError, match=r"Field gemm.shift of 6 bits cannot hold 64"):
        isa.encode("gemm", shift=64)
    with pytest.raises(ValueError, match=r"Unknown command 'jump'"):
        isa.opcode("jump")
    with pytest.raises(ValueError, match=r"Unknown opcode 31"):
        isa.opcode(31)
