"""The one configuration object of an intformer accelerator.

Every generator parameter lives in :class:`Config`, grouped by concern. Derived
figures are properties. Validation happens once, in ``__post_init__``, and
names the field, the rule and the value. Presets are ``dataclasses.replace``
of :data:`BASE` and are listed in :data:`PRESETS`.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field, fields

from . import isa

__all__ = ["Config", "BASE", "PRESETS", "GROUPS", "preset", "field_group", "MAX_ARRAY",
           "MAX_OPERAND_WIDTH", "MAX_ACC_WIDTH", "MAX_MULT_WIDTH", "SHIFT_WIDTH",
           "MAX_ADDR_WIDTH", "MAX_ID_WIDTH", "MAX_OUTSTANDING", "MAX_LOCAL_ROWS",
           "MAX_MEMORY_BYTES", "MAX_BANKS", "MAX_VECTOR_LANES", "MAX_VECTOR_ROW",
           "MAX_QUEUE_DEPTH"]


GROUPS = ("array", "bus", "memory", "vector", "units", "queues")

# Upper bounds of the fields, each the largest value the hardware is built for. Where a
# bound is a command field's width it is read from intformer.hw.isa.

#: Systolic array rows and columns (intformer.hw.systolic.SystolicArray takes 1 to 64).
MAX_ARRAY = 64
#: Operand width: the systolic array takes up to 18 bits; 16 keeps a scratchpad row whole
#: bytes for every array shape.
MAX_OPERAND_WIDTH = 16
#: Accumulator width: whole bytes of a DSP48's 48-bit accumulator (the array and the
#: requantizer take up to 64).
MAX_ACC_WIDTH = 48
#: The per-tensor ``mult`` field of the gemm and requant commands, and the golden model's
#: multiplier (intformer.sw.golden.MULT_WIDTH).
MAX_MULT_WIDTH = isa.OPCODES["gemm"].field("mult").width
#: The ``shift`` field; a per-column scale lane holds the multiplier and the shift.
SHIFT_WIDTH = isa.OPCODES["gemm"].field("shift").width
#: The ``dram`` field of load and store, and the command processor's addresses
#: (intformer.hw.top.Accelerator takes up to 32 bits).
MAX_ADDR_WIDTH = isa.OPCODES["load"].field("dram").width
#: AXI ID width and transactions in flight (intformer.hw.dma: 1 to 16 bits, 1 to 64).
MAX_ID_WIDTH = 16
MAX_OUTSTANDING = 64
#: Rows of one local memory: every field of a command that names a local row
#: (``loc``, ``a`` to ``d``, ``bias``, ``scale``, ``src``, ``src2``, ``dst``) is 16 bits.
MAX_LOCAL_ROWS = 2 ** min(f.width for op in isa.OPCODES.values() for f in op.fields
                          if f.name in ("loc", "a", "b", "c", "d", "bias", "scale", "src",
                                        "src2", "dst"))
#: Bytes of one local memory: a 1 MiB memory (8 Mbit, more block RAM than any supported
#: board has) generates in about 2 minutes and 640 MB; generation time and memory grow
#: with the memory's size (64 MiB ran out of memory).
MAX_MEMORY_BYTES = 1 << 20
#: Banks of a local memory.
MAX_BANKS = 16
#: Vector lanes (the Softmax, GELU, LayerNorm and residual units take 1 to 64).
MAX_VECTOR_LANES = 64
#: The 12-bit ``length`` field of the vector commands.
MAX_VECTOR_ROW = isa.OPCODES["softmax"].field("length").max
#: Command and dependency-token queue depths.
MAX_QUEUE_DEPTH = 256

#: The values each field takes, in words (the README's configuration table).
_VALUES = {
    "array_rows": f"1 to {MAX_ARRAY}",
    "array_cols": f"1 to {MAX_ARRAY}",
    "operand_width": f"2 to {MAX_OPERAND_WIDTH}",
    "acc_width": f"2 x operand_width + log2(array_rows) + 1 to {MAX_ACC_WIDTH}; "
                 f"a multiple of 8 with has_requant",
    "dsp_packing": "with operand_width of at most 8 and at least 2 PEs",
    "requant_mult_width": f"8 to {MAX_MULT_WIDTH}; with a {SHIFT_WIDTH}-bit shift it fits "
                          f"acc_width rounded up to whole bytes",
    "axi_data_width": "32, 64, 128, 256, 512; a beat and the scratchpad and accumulator rows "
                      "divide one another",
    "axi_addr_width": f"16 to {MAX_ADDR_WIDTH}",
    "axi_id_width": f"1 to {MAX_ID_WIDTH}",
    "axi_max_burst": "a power of 2, 1 to 256, of at most 4096 bytes",
    "axi_max_outstanding": f"1 to {MAX_OUTSTANDING}, at most 2 ** axi_id_width",
    "csr_addr_width": "8 to 16",
    "spad_bytes": f"a multiple of spad_banks x spad_row_bytes that double-buffers a tile; "
                  f"at most {MAX_LOCAL_ROWS} rows and {MAX_MEMORY_BYTES >> 20} MiB",
    "spad_banks": f"a power of 2, 2 to {MAX_BANKS}",
    "acc_bytes": f"a multiple of acc_banks x acc_row_bytes that double-buffers a tile; "
                 f"at most {MAX_LOCAL_ROWS} rows and {MAX_MEMORY_BYTES >> 20} MiB",
    "acc_banks": f"a power of 2, 1 to {MAX_BANKS}",
    "vector_lanes": f"1 to {MAX_VECTOR_LANES}",
    "vector_max_row": f"a multiple of vector_lanes, at most {MAX_VECTOR_ROW}; with vector "
                      f"units, a row fits each memory",
    "cmd_queue_depth": f"0 to {MAX_QUEUE_DEPTH}",
    "dep_queue_depth": f"1 to {MAX_QUEUE_DEPTH}",
}


def _f(group: str, default, doc: str):
    return field(default=default, metadata={"group": group, "doc": doc})


def _is_pow2(n: int) -> bool:
    return n > 0 and n & (n - 1) == 0


@dataclass(frozen=True)
class Config:
    """Every parameter of a generated accelerator.

    Fields are grouped by concern (see :data:`GROUPS`); ``field_group(name)``
    tells which group a field belongs to and ``Config.doc(name)`` describes it.

    Raises
    ------
    TypeError
        If a field has the wrong type (for example a string where an integer
        belongs, or an integer where a boolean belongs).
    ValueError
        If a field is out of range, or fields that are individually valid
        cannot work together (for example a scratchpad too small to
        double-buffer one tile).
    """

    # array
    array_rows: int = _f("array", 8, "Systolic array rows (the K slice of one weight tile)")
    array_cols: int = _f("array", 8, "Systolic array columns (the N slice of one weight tile)")
    operand_width: int = _f("array", 8, "Width of the signed matrix operands, in bits")
    acc_width: int = _f("array", 32, "Width of the signed accumulators and bias, in bits")
    dsp_packing: bool = _f("array", False,
                           "Pack two 8x8 products into one DSP where the family allows it")
    ecp5_dsp: bool = _f("array", False,
                        "Instantiate ECP5 MULT18X18D multipliers with their operand and "
                        "product registers (Yosys maps them unregistered)")
    requant_mult_width: int = _f("array", 16,
                                 "Width of the unsigned requantization multiplier, in bits")
    # bus
    axi_data_width: int = _f("bus", 64, "AXI4 master data width, in bits")
    axi_addr_width: int = _f("bus", 32, "AXI4 master address width, in bits")
    axi_id_width: int = _f("bus", 4, "AXI4 master ID width, in bits")
    axi_max_burst: int = _f("bus", 16, "Longest INCR burst the DMA issues, in beats")
    axi_max_outstanding: int = _f("bus", 4, "Transactions the DMA keeps in flight per direction")
    csr_addr_width: int = _f("bus", 12, "AXI4-Lite register slave address width, in bits")
    # memory
    spad_bytes: int = _f("memory", 64 * 1024, "INT8 scratchpad size, in bytes")
    spad_banks: int = _f("memory", 2, "Scratchpad banks, a power of 2 of at least 2")
    acc_bytes: int = _f("memory", 32 * 1024, "INT32 accumulator memory size, in bytes")
    acc_banks: int = _f("memory", 2,
                        "Accumulator banks, a power of 2 (1: the GEMM engine's partial sums "
                        "and the DMA share one block RAM)")
    # vector
    vector_lanes: int = _f("vector", 8, "Elements the vector units process per cycle")
    vector_max_row: int = _f("vector", 256,
                             "Longest row Softmax and LayerNorm accept, in elements")
    # units
    has_softmax: bool = _f("units", True, "Include the integer Softmax unit")
    has_gelu: bool = _f("units", True, "Include the integer GELU unit")
    has_layernorm: bool = _f("units", True, "Include the integer LayerNorm unit")
    has_residual: bool = _f("units", True, "Include the residual-add unit")
    has_requant: bool = _f("units", True,
                           "Include the standalone requant unit (the requant command; "
                           "gemm requantizes on its own either way)")
    perf_counters: bool = _f("units", True,
                             "Include the performance counters (the perf_* registers)")
    # queues
    cmd_queue_depth: int = _f("queues", 8,
                              "Depth of each of the load, compute and store queues (0: none, "
                              "a command waits at the checker until its executor takes it)")
    dep_queue_depth: int = _f("queues", 4, "Depth of each dependency-token queue")

    def __post_init__(self):
        for f in fields(self):
            value = getattr(self, f.name)
            if f.type in ("bool", bool):
                if not isinstance(value, bool):
                    raise TypeError(f"{f.name} must be a boolean, not {value!r}")
            elif isinstance(value, bool) or not isinstance(value, int):
                raise TypeError(f"{f.name} must be an integer, not {value!r}")

        def need(cond, message):
            if not cond:
                raise ValueError(message)

        def in_range(name, lo, hi):
            value = getattr(self, name)
            need(lo <= value <= hi,
                 f"{name} must be between {lo} and {hi}, not {value}")

        def pow2(name, lo, hi):
            value = getattr(self, name)
            need(_is_pow2(value) and lo <= value <= hi,
                 f"{name} must be a power of 2 between {lo} and {hi}, not {value}")

        in_range("array_rows", 1, MAX_ARRAY)
        in_range("array_cols", 1, MAX_ARRAY)
        in_range("operand_width", 2, MAX_OPERAND_WIDTH)
        min_acc = 2 * self.operand_width + math.ceil(math.log2(self.array_rows)) + 1
        need(min_acc <= self.acc_width <= MAX_ACC_WIDTH,
             f"acc_width must be between {min_acc} (2 * operand_width + log2(array_rows) + 1) "
             f"and {MAX_ACC_WIDTH}, not {self.acc_width}")
        need(not self.dsp_packing or self.operand_width <= 8,
             f"dsp_packing needs operand_width of at most 8, not {self.operand_width}")
        need(not self.dsp_packing or self.pes >= 2,
             f"dsp_packing needs at least 2 PEs to pair, not "
             f"{self.array_rows}x{self.array_cols}")
        in_range("requant_mult_width", 8, MAX_MULT_WIDTH)
        # A per-column scale is one accumulator lane (acc_width in whole bytes) holding
        # the multiplier and the shift.
        lane_bits = 8 * -(-self.acc_width // 8)
        need(self.requant_mult_width + SHIFT_WIDTH <= lane_bits,
             f"requant_mult_width must be at most {lane_bits - SHIFT_WIDTH} (a {lane_bits}-bit "
             f"accumulator lane holds the multiplier and a {SHIFT_WIDTH}-bit shift), "
             f"not {self.requant_mult_width}")
        # intformer.hw.requantexec reads accumulator rows as lanes of acc_width bits.
        need(not self.has_requant or self.acc_width % 8 == 0,
             f"has_requant needs acc_width a multiple of 8 (the requant unit reads lanes of "
             f"acc_width bits), not {self.acc_width}")
        need(not (self.dsp_packing and self.ecp5_dsp),
             "dsp_packing (iCE40 SB_MAC16) and ecp5_dsp (ECP5 MULT18X18D) exclude each other")

        need(self.axi_data_width in (32, 64, 128, 256, 512),
             f"axi_data_width {self.axi_data_width} is not one of 32, 64, 128, 256, 512")
        in_range("axi_addr_width", 16, MAX_ADDR_WIDTH)
        in_range("axi_id_width", 1, MAX_ID_WIDTH)
        pow2("axi_max_burst", 1, 256)
        need(self.axi_max_burst * self.axi_bytes <= 4096,
             f"axi_max_burst of {self.axi_max_burst} beats of {self.axi_bytes} bytes "
             f"exceeds the 4096-byte AXI burst limit")
        in_range("axi_max_outstanding", 1, min(2 ** self.axi_id_width, MAX_OUTSTANDING))
        in_range("csr_addr_width", 8, 16)

        pow2("spad_banks", 2, MAX_BANKS)
        pow2("acc_banks", 1, MAX_BANKS)
        for name, row, what in (("spad_bytes", self.spad_row_bytes, "scratchpad"),
                                ("acc_bytes", self.acc_row_bytes, "accumulator")):
            value, rows_limit = getattr(self, name), MAX_LOCAL_ROWS * row
            if rows_limit < MAX_MEMORY_BYTES:
                need(value <= rows_limit,
                     f"{name} must be at most {rows_limit} ({MAX_LOCAL_ROWS} {what} rows of "
                     f"{row} bytes: command row fields are "
                     f"{MAX_LOCAL_ROWS.bit_length() - 1} bits), not {value}")
            need(value <= MAX_MEMORY_BYTES,
                 f"{name} must be at most {MAX_MEMORY_BYTES} (1 MiB), not {value}")
        # The load and store executors move whole rows per beat or whole beats per row.
        for name in ("spad_row_bytes", "acc_row_bytes"):
            row = getattr(self, name)
            need(row % self.axi_bytes == 0 or self.axi_bytes % row == 0,
                 f"{name} ({row}) and the axi_data_width beat ({self.axi_bytes} bytes) "
                 f"must divide one another")
        need(self.spad_bytes > 0 and self.spad_bytes % self.spad_bank_bytes_unit == 0,
             f"spad_bytes must be a positive multiple of {self.spad_bank_bytes_unit} "
             f"(spad_banks x scratchpad row of {self.spad_row_bytes} bytes), "
             f"not {self.spad_bytes}")
        need(self.acc_bytes > 0 and self.acc_bytes % self.acc_bank_bytes_unit == 0,
             f"acc_bytes must be a positive multiple of {self.acc_bank_bytes_unit} "
             f"(acc_banks x accumulator row of {self.acc_row_bytes} bytes), not {self.acc_bytes}")
        need(self.spad_bytes >= self.min_spad_bytes,
             f"Scratchpad of {self.spad_bytes} bytes cannot double-buffer one "
             f"{self.array_rows}x{self.array_cols} tile and its inputs "
             f"({self.min_spad_bytes} bytes)")
        need(self.acc_bytes >= self.min_acc_bytes,
             f"Accumulator of {self.acc_bytes} bytes cannot double-buffer one "
             f"{self.array_rows}x{self.array_cols} output tile ({self.min_acc_bytes} bytes)")

        in_range("vector_lanes", 1, MAX_VECTOR_LANES)
        need(self.vector_max_row <= MAX_VECTOR_ROW,
             f"vector_max_row must be at most {MAX_VECTOR_ROW} (the "
             f"{MAX_VECTOR_ROW.bit_length()}-bit length field), not {self.vector_max_row}")
        need(not self.units or self.vector_lanes_fit,
             f"vector_lanes must be a power of 2 that divides array_cols ({self.array_cols}) "
             f"and spad_row_bytes ({self.spad_row_bytes}) when a vector unit is included, "
             f"not {self.vector_lanes}")
        need(self.vector_max_row >= self.vector_lanes and
             self.vector_max_row % self.vector_lanes == 0,
             f"vector_max_row must be a multiple of vector_lanes ({self.vector_lanes}) "
             f"of at least {self.vector_lanes}, not {self.vector_max_row}")
        # With vector units, a row of INT8 elements fills whole scratchpad rows, one of
        # INT32 elements accumulator rows of array_cols values.
        for what, per_row, rows in (("scratchpad", self.spad_row_bytes, self.spad_rows),
                                    ("accumulator", self.array_cols, self.acc_rows)):
            need(not self.units or -(-self.vector_max_row // per_row) <= rows,
                 f"vector_max_row of {self.vector_max_row} elements needs "
                 f"{-(-self.vector_max_row // per_row)} {what} rows of {per_row}, more than "
                 f"the {rows} it has")

        in_range("cmd_queue_depth", 0, MAX_QUEUE_DEPTH)
        in_range("dep_queue_depth", 1, MAX_QUEUE_DEPTH)

    # Derived figures -----------------------------------------------------------------------

    @property
    def pes(self) -> int:
        """Processing elements in the array."""
        return self.array_rows * self.array_cols

    @property
    def macs_per_cycle(self) -> int:
        """Peak multiply-accumulates per cycle."""
        return self.pes

    @property
    def axi_bytes(self) -> int:
        """Bytes per AXI4 data beat."""
        return self.axi_data_width // 8

    @property
    def axi_strb_width(self) -> int:
        return self.axi_data_width // 8

    @property
    def spad_row_bytes(self) -> int:
        """Width of one scratchpad row: the wider of an input row and a weight row, in
        whole bytes."""
        return -(-max(self.array_rows, self.array_cols) * self.operand_width // 8)

    @property
    def spad_bank_bytes_unit(self) -> int:
        return self.spad_banks * self.spad_row_bytes

    @property
    def spad_rows(self) -> int:
        """Rows in the whole scratchpad."""
        return self.spad_bytes // self.spad_row_bytes

    @property
    def spad_bank_rows(self) -> int:
        return self.spad_rows // self.spad_banks

    @property
    def spad_addr_width(self) -> int:
        """Bits of a scratchpad row address."""
        return max(1, (self.spad_rows - 1).bit_length())

    @property
    def acc_row_bytes(self) -> int:
        """Width of one accumulator row: ``array_cols`` accumulators, each in whole bytes."""
        return self.array_cols * ((self.acc_width + 7) // 8)

    @property
    def acc_bank_bytes_unit(self) -> int:
        return self.acc_banks * self.acc_row_bytes

    @property
    def acc_rows(self) -> int:
        """Rows in the whole accumulator memory."""
        return self.acc_bytes // self.acc_row_bytes

    @property
    def acc_bank_rows(self) -> int:
        return self.acc_rows // self.acc_banks

    @property
    def acc_addr_width(self) -> int:
        """Bits of an accumulator row address."""
        return max(1, (self.acc_rows - 1).bit_length())

    @property
    def weight_tile_bytes(self) -> int:
        """Bytes of one ``array_rows x array_cols`` weight tile."""
        return self.array_rows * self.array_cols * self.operand_width // 8

    @property
    def min_spad_bytes(self) -> int:
        """Smallest scratchpad that double-buffers a weight tile and a square input tile."""
        return 2 * (self.weight_tile_bytes + self.array_rows * self.spad_row_bytes)

    @property
    def min_acc_bytes(self) -> int:
        """Smallest accumulator that double-buffers one square output tile."""
        return 2 * self.array_rows * self.acc_row_bytes

    @property
    def vector_lanes_fit(self) -> bool:
        """Whether ``vector_lanes`` is a power of 2 that divides both an accumulator row
        (``array_cols`` elements) and a scratchpad row (``spad_row_bytes``), as the
        vector units need: each local row is then a whole number of beats."""
        return (_is_pow2(self.vector_lanes) and self.array_cols % self.vector_lanes == 0
                and self.spad_row_bytes % self.vector_lanes == 0)

    @property
    def units(self) -> tuple[str, ...]:
        """Names of the vector units present."""
        return tuple(name for name in ("softmax", "gelu", "layernorm", "residual")
                     if getattr(self, f"has_{name}"))

    # Serialisation ---------------------------------------------------------------------------

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls))

    @classmethod
    def doc(cls, name: str) -> str:
        return {f.name: f.metadata["doc"] for f in fields(cls)}[name]

    @classmethod
    def values(cls, name: str) -> str:
        """The values field ``name`` takes, in words."""
        if {f.name: f.type for f in fields(cls)}[name] in ("bool", bool):
            return "true, false" + (f"; {_VALUES[name]}" if name in _VALUES else "")
        return _VALUES[name]

    def to_dict(self) -> dict:
        """Every field, in declaration order."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def derived(self) -> dict:
        """Every derived figure, by name."""
        return {name: getattr(self, name) for name in _DERIVED}

    def replace(self, **changes) -> Config:
        unknown = sorted(set(changes) - set(self.field_names()))
        if unknown:
            raise ValueError(f"Unknown configuration field {unknown[0]!r}")
        return dataclasses.replace(self, **changes)

    def with_settings(self, settings: dict[str, str]) -> Config:
        """Apply ``key=value`` strings from the command line, parsed by field type."""
        changes = {}
        for key, text in settings.items():
            if key not in self.field_names():
                raise ValueError(f"Unknown configuration field {key!r}")
            changes[key] = _parse_value(key, text, getattr(self, key))
        return self.replace(**changes)


_DERIVED = ("pes", "macs_per_cycle", "axi_bytes", "spad_row_bytes", "spad_rows",
            "spad_bank_rows", "spad_addr_width", "acc_row_bytes", "acc_rows", "acc_bank_rows",
            "acc_addr_width",
            "weight_tile_bytes", "min_spad_bytes", "min_acc_bytes")


def _parse_value(key: str, text: str, current):
    text = text.strip()
    if isinstance(current, bool):
        lowered = text.lower()
        if lowered in ("1", "true", "yes", "on"):
            return True
        if lowered in ("0", "false", "no", "off"):
            return False
        raise TypeError(f"{key} must be a boolean (true/false), not {text!r}")
    try:
        return int(text, 0)
    except ValueError:
        raise TypeError(f"{key} must be an integer, not {text!r}") from None


def field_group(name: str) -> str:
    """The group (one of :data:`GROUPS`) that field ``name`` belongs to."""
    for f in fields(Config):
        if f.name == name:
            return f.metadata["group"]
    raise ValueError(f"Unknown configuration field {name!r}")


BASE = Config()


PRESETS: dict[str, tuple[Config, str]] = {
    # ECP5 figures from `intformer synth --preset default --target ecp5 --no-pnr`.
    "default": (BASE, "8x8 array, 64-bit bus, every unit; the demo and most tests use it "
                      "(ECP5: 58.6k LUT4, 30.7k FF, 246 MULT18X18D, more than an 85F has)"),
    "tiny": (
        dataclasses.replace(
            BASE, array_rows=2, array_cols=2, axi_data_width=32, axi_max_burst=8,
            axi_max_outstanding=2, spad_bytes=4096, acc_bytes=2048, vector_lanes=2,
            vector_max_row=64, cmd_queue_depth=4, dep_queue_depth=2),
        "2x2 array, 32-bit bus; the smallest useful design, for quick tests"),
    "icebreaker": (
        dataclasses.replace(
            BASE, array_rows=2, array_cols=1, dsp_packing=True, axi_data_width=32,
            axi_addr_width=17, axi_id_width=1, axi_max_burst=4, axi_max_outstanding=1,
            csr_addr_width=8, spad_bytes=4096, acc_bytes=4096, acc_banks=1, vector_lanes=2,
            vector_max_row=32,
            has_softmax=False, has_gelu=False, has_layernorm=False, has_residual=False,
            has_requant=False, perf_counters=False, cmd_queue_depth=0, dep_queue_depth=1),
        # Measured with `intformer synth --preset icebreaker --target ice40` (before
        # csr_addr_width 8, which saves about 37 LUT): placed and routed on the UP5K
        # with its I/O wrapper in 5,151 of 5,280 logic cells (3,949 LUT, 1,944 FF after
        # synthesis), 3 of 8 SB_MAC16 (1 in the array, 2 in the GEMM engine's
        # lane-serial requantizer), 20 of 30 EBR, Fmax 17.9 MHz. The same with a 2x2
        # array needs 5,472 cells, 4x1 5,848. The iCEBreaker board top (this preset,
        # the host bridge, the memory's AXI port over SPRAM and the UART) does not fit:
        # `intformer board build icebreaker` packs it into 6,079 logic cells (4,734 LUT,
        # 2,457 FF, 882 SB_CARRY, 3 SB_MAC16, 20 EBR, 4 SPRAM). 128 KB of address space
        # (the UP5K's SPRAM is the memory a board gives the DMA), one accumulator bank,
        # no command queues, no standalone requant unit (gemm requantizes), no
        # performance counters and a register block of 64 words, to save area; arrays
        # of at most 4 PEs get the GEMM engine's small variant (GemmEngine.small).
        "iCE40UP5K (iCEBreaker) target: 2x1 array on one SB_MAC16 (dual 8x8), GEMM only, "
        "no command queues; 5,151 of 5,280 logic cells placed and routed, 3.9k LUT, "
        "1.9k FF, 3 of 8 SB_MAC16, 20 of 30 EBR, Fmax 17.9 MHz; the board top with its "
        "host link needs 6,079 cells and does not fit"),
    "ulx3s": (
        dataclasses.replace(
            BASE, vector_lanes=2, ecp5_dsp=True),
        # The default's memories (64 KiB scratchpad, 32 KiB accumulator) hold the digits
        # model: 13,031 cycles per image then, as with twice as much (13,061 since the
        # vector units' pipelining). ecp5_dsp puts the array
        # in MULT18X18D with their registers (--block systolic 116 -> 155 MHz, cycles
        # unchanged). Measured by `intformer board build ulx3s` (Yosys synth_ecp5), the
        # board top with 64 KiB of board memory, the host bridge and the UART: 37.7k LUT,
        # 23.5k FF, 118 of 156 MULT18X18D (64 in the array, 16 each in the GEMM engine's
        # and the requant unit's requantizers, 22 in the 2-lane vector units, whose GELU,
        # Softmax, LayerNorm and residual share 8 per lane), 116 of 208 DP16KD (52 the
        # accelerator's; 98 with the 128/64 KiB memories it had). With 1 lane: 110
        # MULT18X18D, 17,879 cycles per image. The 8x8 array runs the dataflow schedule.
        "ECP5-85F (ULX3S) target: 8x8 array, every unit on 2 vector lanes, MULT18X18D "
        "with registers; board top 37.7k LUT, 23.5k FF, 118 of 156 MULT18X18D, 116 of 208 "
        "DP16KD (synthesis); digits transformer 13,061 cycles per image"),
    "arty_a7": (
        dataclasses.replace(
            BASE, spad_bytes=128 * 1024, acc_bytes=64 * 1024, vector_lanes=4),
        # Measured with `intformer synth --target xilinx` (Yosys synth_xilinx; no open
        # place-and-route for Xilinx here): the default (8 lanes) with these memories
        # needs 232 of the 240 DSP48E1 (33.8k LUT, 19.8k FF, 54 RAMB36), past 85%; with
        # 4 lanes and the vector units' shared multipliers 128 (53%), 28.6k LUT (45%),
        # 20.9k FF, 35 RAMB36 and 31 RAMB18 (168 DSP48E1 before the sharing). The
        # earlier GEMM-only 16x12 array could not run the transformer.
        "Artix-7 100T (Arty A7) target: 8x8 array, every unit on 4 vector lanes; 28.6k "
        "LUT, 20.9k FF, 128 of 240 DSP48E1, 50.5 of 135 RAMB36 (synthesis estimate); "
        "digits transformer 11,313 cycles per image"),
}


def preset(name: str) -> Config:
    """The configuration of preset ``name``."""
    try:
        return PRESETS[name][0]
    except KeyError:
        raise ValueError(f"Unknown preset {name!r}; the presets are "
                         f"{', '.join(PRESETS)}") from None
