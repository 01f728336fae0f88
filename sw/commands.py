"""Command encoder and decoder for the compiler and drivers, built from the manifest.

Nothing here knows an encoding by itself: :class:`CommandSet` reads opcodes, field
offsets and widths from the ``commands`` section of a manifest dict (what
``intformer generate`` writes as ``manifest.json``), exactly as a driver on another
machine would.
"""

from __future__ import annotations

__all__ = ["CommandSet", "Command", "Checker"]


class Command:
    """One command: its name and field values, encodable to bytes."""

    __slots__ = ("name", "fields", "_set")

    def __init__(self, cs: CommandSet, name: str, fields: dict[str, int]):
        self._set = cs
        self.name = name
        self.fields = fields

    @property
    def queue(self) -> str:
        return self._set.queue(self.name)

    def word(self) -> int:
        return self._set.encode(self.name, **self.fields)

    def to_bytes(self) -> bytes:
        return self.word().to_bytes(self._set.bytes, "little")

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v}" for k, v in self.fields.items() if v)
        return f"{self.name}({args})"


class CommandSet:
    """Encodings of one accelerator's commands.

    Parameters
    ----------
    manifest : dict
        A manifest dict (or its ``commands`` section).

    Raises
    ------
    ValueError
        If the manifest has no command section.
    """

    def __init__(self, manifest: dict):
        section = manifest.get("commands", manifest) if isinstance(manifest, dict) else None
        if not isinstance(section, dict) or "opcodes" not in section:
            raise ValueError("Manifest has no 'commands' section with 'opcodes'")
        self._section = section
        self.width = section["width"]
        self.bytes = section["bytes"]
        self._header = section["header"]
        self._ops = section["opcodes"]
        self._by_code = {op["code"]: name for name, op in self._ops.items()}
        self.spaces = dict(section["spaces"])
        self.constants = dict(section.get("constants", {}))
        self.implemented = tuple(section.get("implemented", self._ops))

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(self._ops)

    def code(self, name: str) -> int:
        return self._op(name)["code"]

    def queue(self, name: str) -> str:
        return self._op(name)["queue"]

    def fields(self, name: str) -> dict[str, dict]:
        """Every field of command ``name`` (header included) with offset and width."""
        return {**self._header, **self._op(name)["fields"]}

    def _op(self, name: str) -> dict:
        try:
            return self._ops[name]
        except KeyError:
            raise ValueError(f"Unknown command {name!r}") from None

    def encode(self, name: str, **values: int) -> int:
        """Command ``name`` as an integer; unnamed fields are 0.

        Raises
        ------
        ValueError
            If a field does not exist or its value does not fit its width.
        """
        fields = self.fields(name)
        word = self.code(name) << fields["opcode"]["offset"]
        for fname, value in values.items():
            if fname == "opcode" or fname not in fields:
                raise ValueError(f"Command {name} has no field {fname!r}")
            f = fields[fname]
            value = int(value)
            if not 0 <= value < 1 << f["width"]:
                raise ValueError(f"Field {name}.{fname} of {f['width']} bits cannot hold "
                                 f"{value}")
            word |= value << f["offset"]
        return word

    def command(self, name: str, **values: int) -> Command:
        self.encode(name, **values)  # validates
        return Command(self, name, dict(values))

    def decode(self, word: int) -> tuple[str, dict[str, int]]:
        """Name and every field value (header flags included) of a command word.

        Raises
        ------
        ValueError
            If the opcode is not a command.
        """
        op = self._header["opcode"]
        code = (word >> op["offset"]) & ((1 << op["width"]) - 1)
        if code not in self._by_code:
            raise ValueError(f"Unknown opcode {code}")
        name = self._by_code[code]
        return name, {fname: (word >> f["offset"]) & ((1 << f["width"]) - 1)
                      for fname, f in self.fields(name).items() if fname != "opcode"}

    def assemble(self, commands) -> bytes:
        """The bytes of a command stream."""
        return b"".join(c.to_bytes() if isinstance(c, Command)
                        else int(c).to_bytes(self.bytes, "little") for c in commands)

    def disassemble(self, blob: bytes) -> list[tuple[str, dict[str, int]]]:
        if len(blob) % self.bytes:
            raise ValueError(f"Command stream of {len(blob)} bytes is not a whole number of "
                             f"{self.bytes}-byte commands")
        return [self.decode(int.from_bytes(blob[i:i + self.bytes], "little"))
                for i in range(0, len(blob), self.bytes)]


_UNITS = ("softmax", "gelu", "layernorm", "residual")


def _ceil_div(a: int, b: int) -> int:
    return -(-a // b)


class Checker:
    """The rules the command processor enforces before it dispatches a command.

    :meth:`error` returns the name of the error (a key of the manifest's ``errors``)
    that the hardware reports for a command, or ``"none"``. The checks run in a fixed
    order and the first failing one decides, in the order the hardware uses:
    commands the design does not execute (or units it leaves out), dependency flags,
    zero dimensions, shapes, then each local operand in field order, then the DMA
    window.

    Parameters
    ----------
    manifest : dict
        The manifest of the design (``config``, ``derived`` and ``commands``).
    """

    def __init__(self, manifest: dict):
        self.commands = CommandSet(manifest)
        #: Commands the design executes (the manifest's ``commands.implemented``);
        #: the others end the stream with ``unit_absent``.
        self.implemented = set(self.commands.implemented)
        c, d = manifest["config"], manifest["derived"]
        self.rows = {"spad": d["spad_rows"], "acc": d["acc_rows"]}
        self.row_bytes = {"spad": d["spad_row_bytes"], "acc": d["acc_row_bytes"]}
        self.row_elems = {"spad": d["spad_row_bytes"], "acc": c["array_cols"]}
        self.array_rows, self.array_cols = c["array_rows"], c["array_cols"]
        self.max_row = c["vector_max_row"]
        self.units = {u for u in _UNITS if c.get(f"has_{u}")}
        self.n_constants = self.commands.constants.get("count", 0)
        self._spaces = {v: k for k, v in self.commands.spaces.items()}

    def error(self, name: str, f: dict[str, int], *, window_bytes: int) -> str:
        queue = self.commands.queue(name)
        if name not in self.implemented or (name in _UNITS and name not in self.units):
            return "unit_absent"
        if queue == "load" and (f.get("pop_prev") or f.get("push_prev")):
            return "bad_dependency"
        if queue == "store" and (f.get("pop_next") or f.get("push_next")):
            return "bad_dependency"
        ranges = []  # (space, first row, rows, stride, chunks) per local operand
        if name in ("load", "store"):
            if f["rows"] == 0 or f["row_bytes"] == 0:
                return "zero_length"
            space = self._spaces[f["space"]]
            if f.get("transpose"):
                width = self.row_bytes["spad"]
                if space != "spad" or f["rows"] > width or f["row_bytes"] > width:
                    return "bad_shape"
                ranges.append(("spad", f["loc"], f["row_bytes"], f["loc_stride"], 1))
            else:
                chunks = _ceil_div(f["row_bytes"], self.row_bytes[space])
                ranges.append((space, f["loc"], f["rows"], f["loc_stride"], chunks))
        elif name == "gemm":
            if f["m"] == 0 or f["k"] == 0 or f["n"] == 0:
                return "zero_length"
            kt = _ceil_div(f["k"], self.array_rows)
            nt = _ceil_div(f["n"], self.array_cols)
            ranges += [("spad", f["a"], f["m"], f["a_stride"], kt),
                       ("spad", f["b"], f["k"], f["b_stride"], nt),
                       ("acc", f["c"], f["m"], f["c_stride"], nt)]
            if f["requant"]:
                ranges.append(("spad", f["d"], f["m"], f["d_stride"], nt))
            if f["use_bias"]:
                ranges.append(("acc", f["bias"], 1, 0, nt))
            if f["requant"] and f["per_channel"]:
                ranges.append(("acc", f["scale"], 1, 0, nt))
        elif name == "requant":
            if f["rows"] == 0:
                return "zero_length"
            ranges += [("acc", f["src"], 1, 0, f["rows"]),
                       ("spad", f["dst"], f["rows"], f["dst_stride"], 1)]
            if f.get("per_channel"):
                ranges.append(("acc", f["scale"], 1, 0, 1))
        elif name in ("gelu", "softmax", "layernorm", "residual"):
            if f["rows"] == 0 or f["length"] == 0:
                return "zero_length"
            if f["length"] > self.max_row:
                return "bad_shape"
            src, dst = self._spaces[f["src_space"]], self._spaces[f["dst_space"]]
            ranges.append((src, f["src"], f["rows"], f["src_stride"],
                           _ceil_div(f["length"], self.row_elems[src])))
            if name in ("residual", "layernorm"):
                src2 = self._spaces[f["src2_space"]]
                chunks = _ceil_div(f["length"], self.row_elems[src2])
                if name == "residual":
                    ranges.append((src2, f["src2"], f["rows"], f["src2_stride"], chunks))
                else:  # gamma then beta, shared by every row
                    ranges.append((src2, f["src2"], 1, 0, 2 * chunks))
            ranges.append((dst, f["dst"], f["rows"], f["dst_stride"],
                           _ceil_div(f["length"], self.row_elems[dst])))
        elif name == "set_const":
            if f["index"] >= self.n_constants:
                return "bad_constant"
        for space, first, rows, stride, chunks in ranges:
            if first + (rows - 1) * stride + chunks > self.rows[space]:
                return f"{space}_range"
        if name in ("load", "store"):
            if f["dram"] + (f["rows"] - 1) * f["dram_stride"] + f["row_bytes"] > window_bytes:
                return "dma_window"
        return "none"
