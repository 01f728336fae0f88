"""The command set of the accelerator: every opcode, field layout and error code, once.

Commands are fixed-width words of :data:`COMMAND_BITS` bits, fetched from memory
little-endian (bit 0 of a command is bit 0 of its first byte). Every command
starts with the same header:

======  =====  ============================================================
bits    name   meaning
======  =====  ============================================================
0-4     opcode one of :data:`OPCODES`
5       pop_prev   wait for (and consume) a token from the previous queue
6       pop_next   wait for (and consume) a token from the next queue
7       push_prev  send a token to the previous queue when done
8       push_next  send a token to the next queue when done
======  =====  ============================================================

The queues are ``load``, ``compute`` and ``store``, in that order; "previous" and
"next" are the neighbours in that chain (decoupled access-execute as in VTA):
a load may only talk to compute, a store only to compute, compute to both.
Operand fields start at bit :data:`FIELDS_START`, packed in the order listed.

Local addresses count rows of the local memory they name: scratchpad rows of
``spad_row_bytes`` INT8 values, accumulator rows of ``array_cols`` INT32 values.
A local operand of ``rows`` rows, each spanning ``chunks`` local rows, occupies
rows ``addr + r * stride + c``. Memory addresses (``dram``) are byte offsets from
the DMA window base register, so a command stream and its image are relocatable.

Everything the compiler, the driver, the C header and the hardware decoder need
comes from :func:`manifest_section`; the decoder's Amaranth layouts come from
:func:`command_layout`. Opcode 0 is deliberately not a command, so that a stream
running into zeroed memory stops with ``unknown_opcode`` instead of doing nothing.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["COMMAND_BITS", "COMMAND_BYTES", "FIELDS_START", "QUEUES", "SPACES", "HEADER",
           "Field", "Opcode", "OPCODES", "ERRORS", "CONSTANTS", "N_CONSTANTS",
           "opcode", "manifest_section", "command_layout", "encode", "decode"]

#: Width of one command, in bits.
COMMAND_BITS = 256
COMMAND_BYTES = COMMAND_BITS // 8
#: First bit of the operand fields.
FIELDS_START = 16
#: The three command queues, in dependency-chain order.
QUEUES = ("load", "compute", "store")
#: Values of a ``space`` field: which local memory an address names.
SPACES = {"spad": 0, "acc": 1}


@dataclass(frozen=True)
class Field:
    """One bit field of a command."""
    name: str
    offset: int
    width: int
    doc: str

    @property
    def max(self) -> int:
        return (1 << self.width) - 1


def _header() -> tuple[Field, ...]:
    return (Field("opcode", 0, 5, "Command type"),
            Field("pop_prev", 5, 1, "Consume a token from the previous queue before starting"),
            Field("pop_next", 6, 1, "Consume a token from the next queue before starting"),
            Field("push_prev", 7, 1, "Give a token to the previous queue when finished"),
            Field("push_next", 8, 1, "Give a token to the next queue when finished"))


HEADER = _header()


@dataclass(frozen=True)
class Opcode:
    """One command type: its code, the queue that executes it and its operand fields."""
    name: str
    code: int
    queue: str
    fields: tuple[Field, ...]
    doc: str

    def field(self, name: str) -> Field:
        for f in (*HEADER, *self.fields):
            if f.name == name:
                return f
        raise KeyError(f"Command {self.name} has no field {name!r}")


def _opcode(name, code, queue, doc, spec):
    fields, offset = [], FIELDS_START
    for fname, width, fdoc in spec:
        fields.append(Field(fname, offset, width, fdoc))
        offset += width
    assert offset <= COMMAND_BITS, (name, offset)
    return Opcode(name, code, queue, tuple(fields), doc)


_TRANSFER = (
    ("dram", 32, "Byte offset of the first row in memory, from the DMA window base"),
    ("dram_stride", 20, "Bytes from one memory row to the next"),
    ("row_bytes", 12, "Bytes per row (1 or more); a row fills ceil(row_bytes / local row "
                      "bytes) consecutive local rows, zero-padded on load"),
    ("rows", 12, "Rows to move (1 or more)"),
    ("loc", 16, "First local row"),
    ("loc_stride", 12, "Local rows from one tile row to the next"),
    ("space", 1, "Local memory: 0 scratchpad, 1 accumulator"),
)

_VECTOR = (
    ("src", 16, "First local row of the input"),
    ("src_stride", 12, "Local rows from one input row to the next"),
    ("src_space", 1, "Memory of the input: 0 scratchpad, 1 accumulator"),
    ("src2", 16, "First local row of the second operand (residual: the other addend; "
                 "LayerNorm: gamma then beta rows in the accumulator)"),
    ("src2_stride", 12, "Local rows from one second-operand row to the next"),
    ("src2_space", 1, "Memory of the second operand"),
    ("dst", 16, "First local row of the output"),
    ("dst_stride", 12, "Local rows from one output row to the next"),
    ("dst_space", 1, "Memory of the output"),
    ("rows", 12, "Rows to process (1 or more)"),
    ("length", 12, "Elements per row (1 to vector_max_row)"),
)

_OPCODE_LIST = (
    _opcode("load", 1, "load", "Copy a 2-D tile from memory into the scratchpad or "
            "the accumulator", (*_TRANSFER, (
                "transpose", 1, "Scratchpad only: write the tile transposed, local row "
                "loc + j * loc_stride holding byte j of every memory row (rows and "
                "row_bytes at most spad_row_bytes); for K^T in attention"),)),
    _opcode("store", 2, "store", "Copy a 2-D tile from the scratchpad or the accumulator "
            "to memory", _TRANSFER),
    _opcode("gemm", 3, "compute", "C = A x B (+ bias) over any M, K, N, accumulated in the "
            "accumulator and optionally requantized to INT8 in the scratchpad (the layout "
            "of intformer.hw.gemm: with R = array_rows, C = array_cols, A row m, K tile kt "
            "at a + m * a_stride + kt; B row k, N tile nt at b + k * b_stride + nt; C row m, "
            "N tile nt at c + m * c_stride + nt, INT8 result at d + m * d_stride + nt; bias "
            "and per-column scale at bias + nt and scale + nt)", (
                ("a", 16, "First scratchpad row of A"),
                ("a_stride", 16, "Scratchpad rows from one A row to the next"),
                ("b", 16, "First scratchpad row of B"),
                ("b_stride", 16, "Scratchpad rows from one B row to the next"),
                ("c", 16, "First accumulator row of C (INT32 result or partial sums)"),
                ("c_stride", 16, "Accumulator rows from one C row to the next"),
                ("d", 16, "First scratchpad row of the INT8 result (with requant)"),
                ("d_stride", 16, "Scratchpad rows from one INT8 result row to the next"),
                ("bias", 16, "Accumulator row of the INT32 bias of the first N tile"),
                ("scale", 16, "Accumulator row of the per-column constants of the first N "
                              "tile: multiplier in bits 0-15, shift in the 6 bits above"),
                ("m", 16, "Rows of A and C (1 or more)"),
                ("k", 16, "Columns of A, rows of B (1 or more)"),
                ("n", 16, "Columns of B and C (1 or more)"),
                ("accumulate", 1, "Start from the accumulator rows at c instead of 0"),
                ("use_bias", 1, "Add the bias once"),
                ("requant", 1, "Write the requantized INT8 result to d instead of INT32 to c"),
                ("per_channel", 1, "Take multiplier and shift per column from scale"),
                ("mult", 16, "Per-tensor requantization multiplier"),
                ("shift", 6, "Per-tensor requantization shift"),
            )),
    _opcode("requant", 4, "compute", "Requantize accumulator rows (array_cols INT32 "
            "values each) to INT8 scratchpad rows (low array_cols bytes, the rest 0), "
            "as intformer.sw.golden.requantize, per tensor or per column", (
                ("src", 16, "First accumulator row (rows consecutive rows)"),
                ("dst", 16, "First scratchpad row of the output"),
                ("dst_stride", 12, "Scratchpad rows from one output row to the next"),
                ("rows", 12, "Rows (1 or more)"),
                ("scale", 16, "Accumulator row of per-column constants (with per_channel): "
                              "multiplier in bits 0-15, shift in bits 16-21"),
                ("per_channel", 1, "Take multiplier and shift per column from scale"),
                ("mult", 16, "Per-tensor requantization multiplier"),
                ("shift", 6, "Per-tensor requantization shift"),
            )),
    _opcode("gelu", 5, "compute", "Integer GELU of each row", _VECTOR),
    _opcode("softmax", 6, "compute", "Integer Softmax of each row", _VECTOR),
    _opcode("layernorm", 7, "compute", "Integer LayerNorm of each row", _VECTOR),
    _opcode("residual", 8, "compute", "Residual add of two INT8 rows with different scales",
            _VECTOR),
    _opcode("set_const", 9, "compute", "Set one run-time constant of the vector units", (
        ("index", 8, "Constant number (see the manifest's constants)"),
        ("value", 32, "Value, two's complement"),
    )),
    _opcode("end", 15, "compute", "End of stream: wait for every queue to drain, set done "
            "and raise the interrupt if asked", (
                ("irq", 1, "Raise the interrupt when the stream is done"),
            )),
)

#: Every command type by name.
OPCODES: dict[str, Opcode] = {op.name: op for op in _OPCODE_LIST}

#: Status error codes: 0 is success; the others stop the stream and raise the interrupt.
ERRORS: dict[str, tuple[int, str]] = {
    "none": (0, "No error"),
    "unknown_opcode": (1, "A command's opcode is not a command"),
    "spad_range": (2, "A command addresses scratchpad rows beyond its end"),
    "acc_range": (3, "A command addresses accumulator rows beyond its end"),
    "dma_window": (4, "A transfer or the command fetch lies outside the DMA window"),
    "zero_length": (5, "A command moves or computes a tile with a zero dimension"),
    "bad_shape": (6, "A dimension exceeds the hardware (length > vector_max_row)"),
    "bad_dependency": (7, "A command pops or pushes a token on a queue that has no such "
                          "neighbour"),
    "bus_error": (8, "The memory answered SLVERR or DECERR"),
    "deadlock": (9, "Every pending command waits for a token that nothing will push"),
    "no_end": (10, "The stream ended without an end command"),
    "unit_absent": (11, "The command needs a unit this accelerator does not have"),
    "bad_constant": (12, "set_const names a constant that does not exist"),
    "soft_reset": (13, "A soft reset abandoned the stream (reported even when idle)"),
}

#: Run-time constants that set_const writes, by name -> index. The vector units
#: read them; their meaning is that of the matching argument of the golden function.
N_CONSTANTS = 64
CONSTANTS: dict[str, int] = {}


def opcode(name_or_code) -> Opcode:
    """The :class:`Opcode` named ``name_or_code`` or with that code."""
    if isinstance(name_or_code, str):
        try:
            return OPCODES[name_or_code]
        except KeyError:
            raise ValueError(f"Unknown command {name_or_code!r}") from None
    for op in OPCODES.values():
        if op.code == name_or_code:
            return op
    raise ValueError(f"Unknown opcode {name_or_code}")


def manifest_section(implemented=None, constants=None) -> dict:
    """The ``commands`` and ``errors`` sections of ``manifest.json``.

    ``implemented`` names the commands the design executes (default: all); the
    others end a stream with ``unit_absent``. ``constants`` names the ``set_const``
    indices the design's units read (default: :data:`CONSTANTS`)."""
    implemented = list(OPCODES) if implemented is None else [opcode(n).name
                                                              for n in implemented]
    def fields(fs):
        return {f.name: {"offset": f.offset, "width": f.width, "doc": f.doc} for f in fs}
    return {
        "commands": {
            "width": COMMAND_BITS,
            "bytes": COMMAND_BYTES,
            "queues": {q: i for i, q in enumerate(QUEUES)},
            "spaces": dict(SPACES),
            "header": fields(HEADER),
            "opcodes": {op.name: {"code": op.code, "queue": op.queue, "doc": op.doc,
                                  "fields": fields(op.fields)}
                        for op in OPCODES.values()},
            "constants": {"count": N_CONSTANTS, **(CONSTANTS if constants is None
                                                   else constants)},
            "implemented": implemented,
        },
        "errors": {name: code for name, (code, _) in ERRORS.items()},
    }


def encode(name: str, **values: int) -> int:
    """One command as an integer; unnamed fields are 0.

    Raises
    ------
    ValueError
        If a field does not exist or its value does not fit.
    """
    op = opcode(name)
    word = op.code
    for fname, value in values.items():
        f = op.field(fname) if fname != "opcode" else None
        if f is None:
            raise ValueError("The opcode field is set by the command name")
        if not 0 <= value <= f.max:
            raise ValueError(f"Field {name}.{fname} of {f.width} bits cannot hold {value}")
        word |= value << f.offset
    return word


def decode(word: int) -> tuple[str, dict[str, int]]:
    """The command name and every field value of a command word."""
    op = opcode(word & HEADER[0].max)
    return op.name, {f.name: (word >> f.offset) & f.max for f in (*HEADER[1:], *op.fields)}


def command_layout():
    """An Amaranth ``data.UnionLayout`` of a command word: ``.header`` and one
    ``FlexibleLayout`` view per command type (``cmd.load.dram``)."""
    from amaranth.lib import data

    def flexible(fs):
        return data.FlexibleLayout(COMMAND_BITS, {f.name: data.Field(f.width, f.offset)
                                                  for f in fs})
    members = {"raw": COMMAND_BITS, "header": flexible(HEADER)}
    for op in OPCODES.values():
        members[op.name] = flexible((*HEADER, *op.fields))
    return data.UnionLayout(members)
