"""Command encoder and decoder for the compiler and drivers, built from the manifest.

Nothing here knows an encoding by itself: :class:`CommandSet` reads opcodes, field
offsets and widths from the ``commands`` section of a manifest dict (what
``intformer generate`` writes as ``manifest.json``), exactly as a driver on another
machine would.
"""

from __future__ import annotations

__all__ = ["CommandSet", "Command"]


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
