"""Command processor: fetch, check, and dispatch commands to three queues that
synchronise by dependency tokens (decoupled access-execute, as in VTA).

The host writes a command stream (see :mod:`intformer.hw.isa`) into memory and
starts it. The processor fetches it through a read port of the DMA engine, checks
every command against the hardware's limits before dispatching it, and puts it
into the load, compute or store queue. Each queue issues its head command to its
executor once the tokens the command pops are available; when an executor reports
a command done, the tokens that command pushes are given to the neighbour queues.

A malformed command, a fetch bus error, an executor error, a stream without
``end`` and a token deadlock all stop the stream the same way: nothing more is
dispatched or issued, the queues are emptied, the processor waits for the commands
already issued to finish and for the fetch in flight to deliver its data, then
reports ``done`` with the error code and the index of the command at fault and
raises ``irq``. The next ``start`` runs a new stream from a clean state.
"""

from __future__ import annotations

from amaranth.hdl import Cat, Const, Module, Mux, Signal, Value, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from . import isa
from .config import Config
from .gemm import dim_widths

__all__ = ["FetchRequestLayout", "CommandProcessor"]

#: The vector commands (one row layout, see intformer.hw.isa).
_VECTOR_OPS = ("gelu", "softmax", "layernorm", "residual")

#: Width of the dependency-token counters; a stream that leaves more than
#: 2**TOKEN_BITS - 1 tokens unconsumed on one edge is not supported.
TOKEN_BITS = 12


class FetchRequestLayout(data.StructLayout):
    """A fetch request: ``count`` commands starting at byte address ``addr``."""

    def __init__(self, addr_width: int):
        super().__init__({"addr": addr_width, "count": 16})


def _err(name: str) -> int:
    return isa.ERRORS[name][0]


class CommandProcessor(wiring.Component):
    """Fetch, check and dispatch a command stream; keep the dependency tokens.

    Timing: a command takes a cycle to latch it from the fetch buffer (with a bus
    narrower than a command, one per bus beat to gather it), the cycles of its checks
    (:meth:`_checker`: one for the flag checks, then per range or window check two
    plus one per bit of its ``rows - 1`` factor, one for a range check that does not
    apply; a one-row load takes 6) and a cycle to dispatch it into its queue. Fetches
    of up to :attr:`fetch_chunk` commands are issued ahead while the fetch buffer has
    room. A queue issues one command per cycle when its tokens are there, its
    executor is ready and fewer than :attr:`max_inflight` of its commands are
    unfinished. With ``cmd_queue_depth`` 0 there are no queues: a checked command is
    issued from where it was checked, and until it is, the commands behind it wait
    (a command waiting for a token that only a later command pushes is then a
    ``deadlock``; streams whose tokens are pushed before they are popped, in stream
    order, run). Each queue (or the path that replaces it) keeps only
    :attr:`queue_bits` of a command.

    Parameters
    ----------
    config : Config
    implemented : iterable of str
        Commands the executors behind this processor carry out (default: all); any
        other command ends the stream with ``unit_absent``.

    Members
    -------
    start : In(1)
        Pulse: run the stream of ``cmd_count`` commands at byte address ``cmd_addr``.
        Ignored while ``busy``.
    cmd_addr : In(axi_addr_width)
    cmd_count : In(32)
    window_base, window_limit : In(axi_addr_width)
        The DMA window ``[base, limit)``; command memory offsets are relative to
        ``base``, and the stream itself must lie inside the window.
    busy : Out(1)
    done : Out(1)
        Pulse when the stream has finished, successfully or not.
    error : Out(8)
        Error code of the last stream (``isa.ERRORS``), valid from ``done`` to the
        next ``start``.
    error_index : Out(32)
        Index of the command at fault: the malformed command; the first command of
        a failed fetch; the stream length for ``no_end``; the number of commands
        dispatched so far for ``deadlock`` and executor errors.
    irq : Out(1)
        Pulse with ``done`` when the stream ended with an error or with an ``end``
        command whose ``irq`` flag is set.
    fetch_req : Out(stream.Signature(FetchRequestLayout))
        Read jobs for the DMA read engine (one row of ``count * 16`` bytes; at most
        one job outstanding). Its data arrive on ``fetch_data`` packed from byte 0
        of the first beat, always in full (``intformer.hw.dma`` delivers a failed
        job's beats too), then ``fetch_done`` reports it.
    fetch_data : In(stream.Signature(axi_data_width))
    fetch_done : In(1)
        Pulse: the fetch job has ended (after its last beat).
    fetch_error : In(1)
        With ``fetch_done``: the job failed (bus error or window refusal).
    load, compute, store : Out(stream.Signature(command_layout))
        Commands issued to the executors, their pop tokens already taken.
    load_done, compute_done, store_done : In(1)
        Pulse: the oldest issued command of that queue has finished.
    exec_error : In(8)
        Non-zero for one cycle: an executor failed with that error code; the
        stream stops as for a malformed command.
    """

    def __init__(self, config: Config, *, implemented=None):
        if not isinstance(config, Config):
            raise TypeError(f"Command processor config must be a Config, not {config!r}")
        self._config = config
        self._implemented = tuple(isa.OPCODES) if implemented is None else \
            tuple(isa.opcode(n).name for n in implemented)
        self._layout = isa.command_layout()
        aw = config.axi_addr_width
        super().__init__({
            "start": In(1), "cmd_addr": In(aw), "cmd_count": In(32),
            "window_base": In(aw), "window_limit": In(aw),
            "busy": Out(1), "done": Out(1), "error": Out(8), "error_index": Out(32),
            "irq": Out(1),
            "fetch_req": Out(stream.Signature(FetchRequestLayout(aw))),
            "fetch_data": In(stream.Signature(config.axi_data_width)),
            "fetch_done": In(1), "fetch_error": In(1),
            "load": Out(stream.Signature(self._layout)),
            "compute": Out(stream.Signature(self._layout)),
            "store": Out(stream.Signature(self._layout)),
            "load_done": In(1), "compute_done": In(1), "store_done": In(1),
            "exec_error": In(8),
        })

    @property
    def config(self) -> Config:
        return self._config

    @property
    def implemented(self) -> tuple[str, ...]:
        return self._implemented

    @property
    def fetch_chunk(self) -> int:
        """Commands per fetch request: one full burst, at least one command."""
        c = self._config
        return max(1, c.axi_max_burst * c.axi_bytes // isa.COMMAND_BYTES)

    @property
    def fetch_depth(self) -> int:
        """Commands the fetch buffer holds (two chunks, so one fetch overlaps checking)."""
        return 2 * self.fetch_chunk

    @property
    def max_inflight(self) -> int:
        """Issued, unfinished commands allowed per queue: two, as many as any executor
        holds (the GEMM engine overlaps two commands; the others take one at a time)."""
        return 2

    @property
    def count_width(self) -> int:
        """Bits of a command count or index: the most commands the address space holds."""
        return (2 ** self._config.axi_addr_width // isa.COMMAND_BYTES).bit_length()

    def stored_width(self, op: isa.Opcode, f: isa.Field) -> int:
        """The low bits of field ``f`` of command ``op`` that reach its executor.

        Checked commands need no more: local addresses and strides are used modulo
        the memory's address width (a checked row address is below the memory's
        depth, a stride of a multi-row operand too, and a stride of a one-row operand
        is not used), memory offsets modulo ``axi_addr_width`` (they lie inside the
        window), and the checks bound ``k``, ``n``, a vector ``length`` and a
        ``set_const`` index. ``set_const`` values go nowhere without a vector unit."""
        c = self._config
        if op.name not in self._implemented:
            return 0
        sp, ac = c.spad_addr_width, c.acc_addr_width
        either = max(sp, ac)
        vector = {name: either for name in ("src", "src_stride", "src2", "src2_stride",
                                            "dst", "dst_stride")}
        vector["length"] = c.vector_max_row.bit_length()
        transfer = {"loc": either, "loc_stride": either, "dram": c.axi_addr_width,
                    "dram_stride": c.axi_addr_width}
        has_vec = any(name in self._implemented for name in _VECTOR_OPS)
        rules = {
            "load": transfer, "store": transfer,
            "gemm": {**{name: sp for name in ("a", "a_stride", "b", "b_stride", "d",
                                              "d_stride")},
                     **{name: ac for name in ("c", "c_stride", "bias", "scale")},
                     # ceil(k / array_rows) rows of A and ceil(n / array_cols) rows of B
                     # and C must fit: the widths the engine counts in.
                     **dict(zip(("k", "n"), dim_widths(c), strict=True))},
            "requant": {"src": ac, "dst": sp, "dst_stride": sp, "scale": ac},
            "set_const": {"index": (isa.N_CONSTANTS - 1).bit_length() if has_vec else 0,
                          "value": f.width if has_vec else 0},
            **{name: vector for name in _VECTOR_OPS},
        }
        return min(f.width, rules.get(op.name, {}).get(f.name, f.width))

    @property
    def queue_bits(self) -> dict[str, tuple[tuple[int, int], ...]]:
        """Per queue, the bit ranges ``[lo, hi)`` of a command word that the queue stores
        (the header and :meth:`stored_width` bits of every field of its implemented
        commands); the executors see the other bits as 0."""
        out = {}
        for q in isa.QUEUES:
            bits = set()
            for f in isa.HEADER:
                bits.update(range(f.offset, f.offset + f.width))
            for op in isa.OPCODES.values():
                if op.queue == q:
                    for f in op.fields:
                        bits.update(range(f.offset, f.offset + self.stored_width(op, f)))
            runs = []
            for b in sorted(bits):
                if runs and runs[-1][1] == b:
                    runs[-1][1] = b + 1
                else:
                    runs.append([b, b + 1])
            out[q] = tuple((lo, hi) for lo, hi in runs)
        return out

    # Checks ---------------------------------------------------------------------------------

    def _program(self, cmd, high) -> dict:
        """The checks of every command type, as steps for :meth:`_checker`.

        Returns ``{opcodes: steps}`` (command types with the same steps share one
        entry). A step is ``("flags", [(bad, error name), ...])``
        (the first bad one decides), ``("fits", guard, space, first, rows, stride,
        amount, per_row, half)``: bad when ``guard`` and not ``ceil(amount / per_row)``
        rows fit after ``first + (rows - 1) * stride`` in ``space`` (``per_row`` a
        constant or a (scratchpad, accumulator) pair; with ``half`` each row counts
        twice), error ``<space>_range``; or ``("extent", first, rows, stride, amount)``:
        bad when ``first + (rows - 1) * stride + amount`` exceeds the window,
        ``dma_window``.

        Fields ``first``, ``stride`` and ``amount`` come as pairs ``(low bits, any higher
        bit set)``, cut where every larger value fails the step: a row address or
        stride at the memory's address width (the window's for an extent), an amount
        where it would need more rows than the memory has. ``high(lo, hi)`` gives
        whether command bits ``[lo, hi)`` hold a 1 (the gathering keeps that as a flag,
        so the command register holds only the low bits)."""
        c = self._config
        sp, ac = isa.SPACES["spad"], isa.SPACES["acc"]
        addr_bits = {sp: c.spad_addr_width, ac: c.acc_addr_width}
        depth = {sp: c.spad_rows, ac: c.acc_rows}
        programs = self._steps(cmd)
        for codes, steps in programs.items():
            op = isa.opcode(codes[0])
            v = getattr(cmd, op.name)

            def cut(name, t, op=op, v=v):
                f = op.field(name)
                if t >= f.width:
                    return getattr(v, name), Const(0, 1)
                return getattr(v, name)[:t], high(f.offset + t, f.offset + f.width)

            # An amount of 2**t or more needs more rows than any space the step names.
            def amount_bits(space, w):
                spaces = (space,) if isinstance(space, int) else (sp, ac)
                per = {s: (w[s == ac] if isinstance(w, tuple) else w) for s in (sp, ac)}
                return max((depth[s] * per[s]).bit_length() for s in spaces)
            amounts = {}
            for s in steps:
                if s[0] == "fits" and isinstance(s[6], str):
                    amounts[s[6]] = max(amounts.get(s[6], 0), amount_bits(s[2], s[7]))
                elif s[0] == "extent" and isinstance(s[4], str):
                    amounts[s[4]] = max(amounts.get(s[4], 0), c.axi_addr_width)
            # A field that an unconditional earlier step reads as an amount fails there
            # if it is larger: later steps read it only that wide as a row count.
            bounded = {}
            out = []
            for s in steps:
                if s[0] == "flags":
                    out.append(("flags", [(bad(lambda n, a=amounts: cut(n, a[n])) if callable(bad)
                                           else bad, e) for bad, e in s[1]]))
                    continue
                if s[0] == "fits":
                    _, g, space, first, rows, stride, amount, w, h = s
                    t = addr_bits.get(space, max(addr_bits.values())) \
                        if isinstance(space, int) else max(addr_bits.values())
                else:
                    _, first, rows, stride, amount = s
                    t = c.axi_addr_width
                first = cut(first, t)
                stride = cut(stride, t) if isinstance(stride, str) else stride
                amount_name = amount
                amount = cut(amount, amounts[amount]) if isinstance(amount, str) else amount
                if isinstance(rows, str):
                    rows = (cut(rows, bounded[rows])[0] if rows in bounded
                            else getattr(v, rows))
                if s[0] == "fits":
                    out.append(("fits", g, space, first, rows, stride, amount, w, h))
                    if isinstance(g, int) and g and isinstance(amount_name, str):
                        bounded.setdefault(amount_name, amounts[amount_name])
                else:
                    out.append(("extent", first, rows, stride, amount))
            programs[codes] = out
        return programs

    def _steps(self, cmd) -> dict:
        """The steps of :meth:`_program` with fields named (strings) rather than cut;
        a flag may be a function of ``cut(name)``, the cut pair of an amount field.

        The order of the checks is the order :class:`intformer.sw.commands.Checker`
        documents; that class is the reference the tests compare with."""
        c = self._config
        sp, ac = isa.SPACES["spad"], isa.SPACES["acc"]
        programs = {}
        for op in isa.OPCODES.values():
            if op.name == "store":
                continue            # with load: the same fields at the same bits
            codes = (op.code, isa.OPCODES["store"].code) if op.name == "load" else (op.code,)
            v = getattr(cmd, op.name)
            present = op.name in self._implemented and getattr(c, f"has_{op.name}", True)
            flags = [(Const(int(not present), 1), "unit_absent")]
            steps = [("flags", flags)]
            programs[codes] = steps
            if not present:
                continue
            if op.name == "load":
                is_load = cmd.header.opcode == op.code
                # load pops/pushes only towards compute (next), store only towards it (prev).
                flags.append((Mux(is_load, v.pop_prev | v.push_prev, v.pop_next | v.push_next),
                              "bad_dependency"))
                flags.append(((v.rows == 0) | (v.row_bytes == 0), "zero_length"))
                tr = is_load & v.transpose
                L = c.spad_row_bytes
                flags.append((tr & ((v.space != sp) | _above(v.rows, L) | _above(v.row_bytes, L)),
                              "bad_shape"))
                steps += [
                    ("fits", ~tr, v.space, "loc", "rows", "loc_stride", "row_bytes",
                     (c.spad_row_bytes, c.acc_row_bytes), False),
                    ("fits", tr, sp, "loc", "row_bytes", "loc_stride", 1, 1, False),
                    ("extent", "dram", "rows", "dram_stride", "row_bytes"),
                ]
            elif op.name == "gemm":
                R, C = c.array_rows, c.array_cols

                def zero(cut, v=v):
                    return (v.m == 0) | Cat(*((cut(n)[0] == 0) & ~cut(n)[1] for n in "kn")).any()
                flags.append((zero, "zero_length"))
                steps += [
                    ("fits", 1, sp, "a", "m", "a_stride", "k", R, False),
                    ("fits", 1, sp, "b", "k", "b_stride", "n", C, False),
                    ("fits", 1, ac, "c", "m", "c_stride", "n", C, False),
                    ("fits", v.requant, sp, "d", "m", "d_stride", "n", C, False),
                    ("fits", v.use_bias, ac, "bias", 1, 0, "n", C, False),
                    ("fits", v.requant & v.per_channel, ac, "scale", 1, 0, "n", C, False),
                ]
            elif op.name == "requant":
                flags.append((v.rows == 0, "zero_length"))
                steps += [
                    ("fits", 1, ac, "src", 1, 0, "rows", 1, False),
                    ("fits", 1, sp, "dst", "rows", "dst_stride", 1, 1, False),
                    ("fits", v.per_channel, ac, "scale", 1, 0, 1, 1, False),
                ]
            elif op.name in _VECTOR_OPS:
                flags += [((v.rows == 0) | (v.length == 0), "zero_length"),
                          (_above(v.length, c.vector_max_row), "bad_shape")]
                elems = (c.spad_row_bytes, c.array_cols)
                steps.append(("fits", 1, v.src_space, "src", "rows", "src_stride", "length",
                              elems, False))
                if op.name == "residual":
                    steps.append(("fits", 1, v.src2_space, "src2", "rows", "src2_stride",
                                  "length", elems, False))
                elif op.name == "layernorm":
                    # gamma then beta: two rows of ceil(length / e) local rows each.
                    steps.append(("fits", 1, v.src2_space, "src2", 1, 0, "length", elems,
                                  True))
                steps.append(("fits", 1, v.dst_space, "dst", "rows", "dst_stride", "length",
                              elems, False))
            elif op.name == "set_const":
                flags.append((_above(v.index, isa.N_CONSTANTS - 1), "bad_constant"))
        return programs

    def _checker(self, m: Module, cmd, window_size, active, high):
        """Run the checks of the command view ``cmd`` one step at a time while ``active``
        (from its rise to ``done``); returns (done pulse, error code, queue index).

        One cycle per ``flags`` step and per ``fits`` step whose guard is low; another
        ``fits`` or ``extent`` step takes two cycles plus one per bit of ``rows - 1``:
        the product ``(rows - 1) * stride`` is summed by shift and add onto ``first``, so
        the checker has no multiplier; one adder sums, and an extent check is a range
        check of the window (one byte per row), so one subtractor and, for the row sizes
        that are powers of 2, one comparator serve every check. The sum is as wide as the
        largest limit needs (:attr:`axi_addr_width` or a memory's address width, plus
        one), beyond which it saturates."""
        c = self._config
        programs = self._program(cmd, high)
        code = cmd.header.opcode
        queue = Signal(2)
        with m.Switch(code):
            for i, q in enumerate(isa.QUEUES):
                codes = [op.code for op in isa.OPCODES.values() if op.queue == q]
                with m.Case(*codes):
                    m.d.comb += queue.eq(i)
        # Each operand as wide as its widest (cut) source.
        widths = {"first": 1, "rows": 1, "stride": 1, "amount": 1}
        for steps in programs.values():
            for s in steps:
                if s[0] != "flags":
                    vals = s[3:7] if s[0] == "fits" else s[1:5]
                    for name, v in zip(widths, vals, strict=True):
                        v = v[0] if isinstance(v, tuple) else v
                        if not isinstance(v, int):
                            widths[name] = max(widths[name], len(Value.cast(v)))
        # An extent check is a range check of the window with one byte per row.
        per_rows = sorted({w for steps in programs.values() for s in steps if s[0] == "fits"
                           for w in (s[7] if isinstance(s[7], tuple) else (s[7],))}
                          | {1 for steps in programs.values() for s in steps
                             if s[0] == "extent"})
        n_steps = max(len(steps) for steps in programs.values())

        k = Signal(range(n_steps))
        loaded = Signal()            # the step's product is being summed
        is_flags = Signal()
        is_ext = Signal()
        last = Signal()
        flags_err = Signal(8)
        guard = Signal()
        space = Signal()
        half = Signal()
        wsel = Signal(range(len(per_rows)))
        ops = {name: Signal(w, name=f"check_{name}") for name, w in widths.items()}
        # Whether the operand's field has bits set above those in ops.
        bigs = {name: Signal(name=f"check_{name}_big") for name in widths}

        def set_flags(flags):
            with m.If(flags[0][0]):
                m.d.comb += flags_err.eq(_err(flags[0][1]))
            for bad, name in flags[1:]:
                with m.Elif(bad):
                    m.d.comb += flags_err.eq(_err(name))

        def per_row_index(w, sel):
            if isinstance(w, tuple):
                return Mux(sel == isa.SPACES["acc"], per_rows.index(w[1]), per_rows.index(w[0]))
            return per_rows.index(w)

        # Each operand is an AND-OR of its distinct sources (a field that several steps
        # read, or a constant), each enabled by the steps that read it.
        sources = {name: {} for name in widths}

        def operands(*values):
            for name, v in zip(widths, values, strict=True):
                v, big = v if isinstance(v, tuple) else (v, Const(0, 1))
                v = Const(v, widths[name]) if isinstance(v, int) else Value.cast(v)
                key = repr(v)
                if key not in sources[name]:
                    sources[name][key] = (v, big,
                                          Signal(name=f"check_{name}_{len(sources[name])}"))
                m.d.comb += sources[name][key][2].eq(1)

        with m.Switch(code):
            for codes, steps in programs.items():
                with m.Case(*codes):
                    with m.Switch(k):
                        for i, step in enumerate(steps):
                            with m.Case(i):
                                m.d.comb += last.eq(i == len(steps) - 1)
                                if step[0] == "flags":
                                    m.d.comb += is_flags.eq(1)
                                    set_flags(step[1])
                                elif step[0] == "fits":
                                    _, g, sel, first, rows, stride, amount, w, h = step
                                    m.d.comb += [
                                        guard.eq(g), space.eq(sel), half.eq(h),
                                        wsel.eq(per_row_index(w, sel)),
                                    ]
                                    operands(first, rows, stride, amount)
                                else:
                                    _, first, rows, stride, amount = step
                                    m.d.comb += [is_ext.eq(1), guard.eq(1),
                                                 wsel.eq(per_rows.index(1))]
                                    operands(first, rows, stride, amount)
            with m.Default():
                m.d.comb += [is_flags.eq(1), last.eq(1), flags_err.eq(_err("unknown_opcode"))]

        for name, srcs in sources.items():
            terms = [Mux(en, v, 0) for v, _, en in srcs.values()]
            acc = terms[0]
            for t in terms[1:]:
                acc = acc | t
            m.d.comb += [ops[name].eq(acc),
                         bigs[name].eq(Cat(*(en & big for _, big, en in srcs.values())).any())]

        # first + (rows - 1) * stride, least significant multiplier bit first, summed onto
        # first; rows of 1 take no step. rows == 0 is a zero_length error, found before any
        # range check. The sum has pw bits and a sticky ``over`` bit for any sum beyond
        # them: every limit is below 2**pw (a window of axi_addr_width bits, a memory of
        # at most 2**(address width) rows), so an operand that far is out of range. Sums
        # never exceed 33 bits (a 32-bit offset plus a 12-bit row count times a 20-bit
        # stride, or 16-bit local fields), so 33 bits need no ``over``. ``over`` starts
        # set when ``first`` has bits above its cut (see _program), and an added multiple
        # of a stride with bits above its cut sets it: beyond the cut the step fails.
        assert all(isa.OPCODES[name].field("rows").width + isa.OPCODES[name]
                   .field("dram_stride").width <= 32 for name in ("load", "store"))
        pw = min(33, max(c.axi_addr_width, c.spad_addr_width + 1, c.acc_addr_width + 1))
        # The multiplier rows - 1, decremented bit by bit as it is shifted out: it is
        # mplier - borrow, borrow set while the bits shifted out were all 0.
        mplier = Signal(widths["rows"])
        borrow = Signal()
        mbit = mplier[0] ^ borrow
        mcand = Signal(pw)
        mcand_over = Signal()        # mcand has lost set bits off its top
        prod = Signal(pw)
        over = Signal()
        total = Signal(pw + 1)
        m.d.comb += total.eq(prod + mcand)
        # Room left after the operand's last row start (negative: none), as in the
        # reference: depth - first - (rows - 1) * stride.
        end = prod
        # window_size is below 2**axi_addr_width <= 2**pw, a depth at most 2**(pw - 1).
        r = Signal(signed(pw + 1))
        r2 = Signal(signed(pw + 1))
        m.d.comb += [
            r.eq(Mux(is_ext, window_size,
                     Mux(space == isa.SPACES["acc"], c.acc_rows, c.spad_rows)) - end),
            r2.eq(Mux(half, r >> 1, r)),
        ]
        # amount <= r2 * w, as ceil(amount / w) <= r2 where w is a power of 2: the
        # quotient has the amount's width, so only r2's low bits meet a comparator.
        # amount <= r2 * w, as ceil(amount / w) <= r2. For w a power of 2 that is amount <=
        # r2 << log2(w), true at once if r2 has bits set at or above the amount's width less
        # the shift; one comparator serves every such w.
        fits_ok = Signal()
        aw_ = widths["amount"]
        positive = ~over & ~r2[-1] & (r2 != 0) & ~bigs["amount"]
        limit = Signal(aw_)
        beyond = Signal()
        with m.Switch(wsel):
            for i, w in enumerate(per_rows):
                with m.Case(i):
                    if w & (w - 1) == 0:
                        sh = w.bit_length() - 1
                        m.d.comb += [limit.eq(r2[:aw_ - sh] << sh),
                                     beyond.eq(r2[aw_ - sh:] != 0),
                                     fits_ok.eq(positive & (beyond | (ops["amount"] <= limit)))]
                    else:
                        m.d.comb += fits_ok.eq(positive & (ops["amount"] <= r2 * w))
        bad = Signal()
        err = Signal(8)
        m.d.comb += [
            bad.eq(guard & ~fits_ok),
            err.eq(Mux(is_ext, _err("dma_window"),
                       Mux(space == isa.SPACES["acc"], _err("acc_range"), _err("spad_range")))),
        ]

        done = Signal()
        result = Signal(8)
        m.d.comb += done.eq(0)

        def finish(e):
            m.d.comb += [done.eq(1), result.eq(e)]
            m.d.sync += [k.eq(0), loaded.eq(0)]

        with m.If(~active):
            m.d.sync += [k.eq(0), loaded.eq(0)]
        with m.Else():
            with m.If(is_flags):
                with m.If(flags_err != 0):
                    finish(flags_err)
                with m.Elif(last):
                    finish(0)
                with m.Else():
                    m.d.sync += k.eq(k + 1)
            with m.Elif(~is_ext & ~guard):
                # A range check that does not apply (its guard is low) passes at once.
                with m.If(last):
                    finish(0)
                with m.Else():
                    m.d.sync += k.eq(k + 1)
            with m.Elif(~loaded):
                m.d.sync += [loaded.eq(1),
                             prod.eq(ops["first"]), over.eq(bigs["first"]),
                             mcand.eq(ops["stride"]), mcand_over.eq(bigs["stride"]),
                             mplier.eq(ops["rows"]), borrow.eq(ops["rows"] != 0)]
            with m.Elif((mplier[1:] != 0) | mbit):
                with m.If(mbit):
                    m.d.sync += [prod.eq(total), over.eq(over | total[pw] | mcand_over)]
                m.d.sync += [mcand.eq(mcand << 1), mplier.eq(mplier >> 1),
                             borrow.eq(borrow & ~mplier[0]),
                             mcand_over.eq(mcand_over | mcand[pw - 1])]
            with m.Elif(bad):
                finish(err)
            with m.Elif(last):
                finish(0)
            with m.Else():
                m.d.sync += [k.eq(k + 1), loaded.eq(0)]
        return done, result, queue

    # Elaboration ----------------------------------------------------------------------------

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        W = c.axi_data_width
        CB = isa.COMMAND_BITS
        chunk, depth = self.fetch_chunk, self.fetch_depth

        # Stream state ---------------------------------------------------------------------
        running = Signal()      # fetching and dispatching
        aborting = Signal()     # draining after an error
        ending = Signal()       # end seen: draining before done
        error = Signal(8)
        # Counts of commands: a stream that passes the window check fits count_width.
        index = Signal(self.count_width)      # index of the command being checked
        window_size = Signal(c.axi_addr_width + 1)
        m.d.comb += self.busy.eq(running | aborting | ending)

        # Fetch ----------------------------------------------------------------------------
        # One fetch job at a time, so that its status names it without ambiguity; the
        # buffer of two chunks lets one job overlap the checking of the previous one.
        # A job's commands become visible to the checker only once its status says the
        # read succeeded: a bus error is reported as such, never as garbage commands.
        # With a bus narrower than a command the buffer holds bus beats (narrow enough
        # for block RAM) and each command is gathered from it, beat by beat, for its
        # check; otherwise it holds commands, checked in place at its head.
        beatwise = W < CB
        beats = CB // W if beatwise else 1
        m.submodules.fbuf = fbuf = _BufferedFIFO(width=W if beatwise else CB,
                                                 depth=depth * beats)
        next_addr = Signal(c.axi_addr_width)
        to_request = Signal(self.count_width)   # commands not yet requested
        outstanding = Signal(range(depth + 1))  # commands of the job not yet assembled
        awaiting = Signal()                     # a job is requested and has not reported
        req_pending = Signal()
        req_count = Signal(range(chunk + 1))
        committed = Signal(range(depth + 1))    # buffered commands of successful jobs

        stop_fetch = aborting | ending | ~running
        can_request = (~awaiting & (to_request != 0) & ~stop_fetch
                       & (fbuf.level + chunk * beats <= depth * beats))
        # min(to_request, chunk), only as wide as a chunk (a synthesiser does not see
        # that to_request is small when it is below chunk).
        count = Signal(range(chunk + 1))
        m.d.comb += count.eq(Mux(to_request < chunk, to_request[:len(count)], chunk))
        with m.If(can_request):
            m.d.sync += [req_pending.eq(1), awaiting.eq(1), req_count.eq(count),
                         outstanding.eq(count)]
        m.d.comb += [
            self.fetch_req.valid.eq(req_pending),
            self.fetch_req.payload.addr.eq(next_addr),
            self.fetch_req.payload.count.eq(req_count),
        ]
        with m.If(self.fetch_req.valid & self.fetch_req.ready):
            m.d.sync += [
                req_pending.eq(0),
                next_addr.eq(next_addr + req_count * isa.COMMAND_BYTES),
                to_request.eq(to_request - req_count),
            ]

        assembled = Signal()   # a command word completes this cycle
        word = Signal(CB)
        if beatwise:
            beat = Signal(range(beats))
            m.d.comb += [self.fetch_data.ready.eq(1), fbuf.w_data.eq(self.fetch_data.payload),
                         fbuf.w_en.eq(self.fetch_data.valid & (outstanding != 0))]
            with m.If(self.fetch_data.valid):
                m.d.sync += beat.eq(beat + 1)
                with m.If(beat == beats - 1):
                    m.d.sync += beat.eq(0)
                    m.d.comb += assembled.eq(1)
        elif W == CB:
            m.d.comb += self.fetch_data.ready.eq(1)
            with m.If(self.fetch_data.valid):
                m.d.comb += [word.eq(self.fetch_data.payload), assembled.eq(1)]
        else:
            per_beat = W // CB
            held = Signal(W)
            part = Signal(range(per_beat + 1))   # 0: no beat held
            m.d.comb += self.fetch_data.ready.eq(part == 0)
            with m.If(part == 0):
                with m.If(self.fetch_data.valid):
                    m.d.sync += [held.eq(self.fetch_data.payload), part.eq(1)]
            with m.Else():
                m.d.comb += [word.eq(held.word_select((part - 1).as_unsigned(), CB)),
                             assembled.eq(1)]
                # The job's last beat may carry fewer commands than it could.
                with m.If((part == per_beat) | (outstanding == 1)):
                    m.d.sync += part.eq(0)
                with m.Else():
                    m.d.sync += part.eq(part + 1)

        if not beatwise:
            m.d.comb += [fbuf.w_data.eq(word), fbuf.w_en.eq(assembled & (outstanding != 0))]
        with m.If(assembled & (outstanding != 0) & ~can_request):
            m.d.sync += outstanding.eq(outstanding - 1)
        # A job ends when its status has come and its last command is in the buffer.
        status_seen = Signal()
        status_error = Signal()
        with m.If(self.fetch_done & awaiting):
            m.d.sync += [status_seen.eq(1), status_error.eq(self.fetch_error)]
        job_end = Signal()
        m.d.comb += job_end.eq(awaiting & status_seen & (outstanding == 0) & ~req_pending)
        fetch_failed = Signal()
        m.d.comb += fetch_failed.eq(job_end & status_error)
        committed_add = Signal(range(depth + 1))
        committed_sub = Signal()
        m.d.comb += committed_add.eq(_if(job_end & ~status_error, req_count))
        with m.If(job_end):
            m.d.sync += [awaiting.eq(0), status_seen.eq(0)]
        m.d.sync += committed.eq(committed + committed_add - committed_sub)

        # Check and dispatch ----------------------------------------------------------------
        # The command is checked and dispatched from where it was gathered, or in place at
        # the head of the fetch buffer (its output register), popped when dispatched.
        if beatwise:
            head = Signal(CB)
            gathered = Signal(range(beats))    # beats of the next command taken
            taking = Signal()                  # a beat is taken this cycle
        else:
            head = fbuf.r_data
        cmd = data.View(self._layout, head)
        # Flags "bits [lo, hi) of the command hold a 1" for the checker, kept while the
        # command is gathered beat by beat, so that the head holds none of those bits
        # that only the flag reads.
        highs = {}

        def high(lo, hi):
            if (lo, hi) not in highs:
                highs[lo, hi] = Signal(name=f"high_{lo}_{hi}")
            return highs[lo, hi]

        stage = Signal(2)     # 0 empty, 1 being checked, 2 checked
        chk_err = Signal(8)
        chk_queue = Signal(2)
        chk_done, err_c, queue_c = self._checker(
            m, cmd, window_size, running & ~aborting & ~ending & (stage == 1), high)
        for (lo, hi), flag in highs.items():
            if not beatwise:
                m.d.comb += flag.eq(head[lo:hi].any())
                continue
            seen = []
            for b in range(lo // W, (hi - 1) // W + 1):
                a, e = max(lo, b * W) - b * W, min(hi, (b + 1) * W) - b * W
                seen.append((gathered == b) & fbuf.r_data[a:e].any())
            with m.If(taking):
                m.d.sync += flag.eq((flag & (gathered != 0)) | Cat(*seen).any())
        dispatched = Signal(self.count_width)

        # Each queue stores only the bits its executor can use (queue_bits).
        queues = {}
        queue_bits = self.queue_bits
        for q in isa.QUEUES:
            used = sum(hi - lo for lo, hi in queue_bits[q])
            if c.cmd_queue_depth:
                qf = fifo.SyncFIFOBuffered(width=used, depth=c.cmd_queue_depth)
                m.submodules[f"{q}_queue"] = qf
            else:
                qf = _Passthrough(m, used, name=q)
            queues[q] = qf

        m.d.comb += fbuf.r_en.eq(0)
        # Unconditional, so that a queue of depth 0 hands the head on as plain wires.
        for q in isa.QUEUES:
            m.d.comb += queues[q].w_data.eq(Cat(*(head[lo:hi] for lo, hi in queue_bits[q])))
        with m.If(running & ~aborting & ~ending):
            with m.If(stage == 0):
                with m.If((committed != 0) & fbuf.r_rdy):
                    if beatwise:
                        m.d.comb += [fbuf.r_en.eq(1), taking.eq(1)]
                        m.d.sync += gathered.eq(gathered + 1)
                        with m.Switch(gathered):
                            for b in range(beats):
                                with m.Case(b):
                                    m.d.sync += head[b * W:(b + 1) * W].eq(fbuf.r_data)
                        with m.If(gathered == beats - 1):
                            m.d.comb += committed_sub.eq(1)
                            m.d.sync += [gathered.eq(0), stage.eq(1)]
                    else:
                        m.d.sync += stage.eq(1)
                with m.Elif((to_request == 0) & ~awaiting & (fbuf.level == 0)):
                    m.d.sync += [error.eq(_err("no_end")), index.eq(dispatched),
                                 aborting.eq(1)]
            with m.Elif(stage == 1):
                with m.If(chk_done):
                    m.d.sync += [chk_err.eq(err_c), chk_queue.eq(queue_c), stage.eq(2)]
            with m.Else():
                with m.If(chk_err != 0):
                    m.d.sync += [error.eq(chk_err), index.eq(dispatched), aborting.eq(1),
                                 stage.eq(0)]
                with m.Elif(cmd.header.opcode == isa.OPCODES["end"].code):
                    m.d.sync += [ending.eq(1), stage.eq(0), index.eq(dispatched)]
                with m.Else():
                    for i, q in enumerate(isa.QUEUES):
                        with m.If(chk_queue == i):
                            m.d.comb += queues[q].w_en.eq(1)
                            with m.If(queues[q].w_rdy):
                                if not beatwise:
                                    m.d.comb += [fbuf.r_en.eq(1), committed_sub.eq(1)]
                                m.d.sync += [stage.eq(0), dispatched.eq(dispatched + 1)]
        end_irq = Signal()
        with m.If(running & ~aborting & ~ending & (stage == 2) & (chk_err == 0)
                  & (cmd.header.opcode == isa.OPCODES["end"].code)):
            m.d.sync += end_irq.eq(cmd.end.irq)

        # Issue and tokens -----------------------------------------------------------------
        # l2c: load -> compute, c2l: compute -> load, c2s: compute -> store, s2c: store -> compute
        tokens = {name: Signal(TOKEN_BITS, name=f"tokens_{name}")
                  for name in ("l2c", "c2l", "c2s", "s2c")}
        edges = {  # queue -> (token popped by pop_prev, by pop_next, pushed by push_prev, next)
            "load": (None, "c2l", None, "l2c"),
            "compute": ("l2c", "s2c", "c2l", "c2s"),
            "store": ("c2s", None, "s2c", None),
        }
        delta = {name: [] for name in tokens}
        inflight_empty = []
        blocked_or_idle = []
        any_blocked = []
        done_in = {"load": self.load_done, "compute": self.compute_done,
                   "store": self.store_done}
        for q in isa.QUEUES:
            qf = queues[q]
            out = getattr(self, q)
            head = out.payload
            pop_prev_tok, pop_next_tok, push_prev_tok, push_next_tok = edges[q]
            m.submodules[f"{q}_inflight"] = inflight = _ShiftQueue(width=2,
                                                                   depth=self.max_inflight)
            need_prev = head.header.pop_prev if pop_prev_tok else Const(0)
            need_next = head.header.pop_next if pop_next_tok else Const(0)
            tokens_ok = Signal(name=f"{q}_tokens_ok")
            m.d.comb += tokens_ok.eq(
                (~need_prev | (tokens[pop_prev_tok] != 0 if pop_prev_tok else 1))
                & (~need_next | (tokens[pop_next_tok] != 0 if pop_next_tok else 1)))
            pos = 0
            for lo, hi in queue_bits[q]:
                m.d.comb += out.payload.as_value()[lo:hi].eq(qf.r_data[pos:pos + hi - lo])
                pos += hi - lo
            m.d.comb += [
                out.valid.eq(qf.r_rdy & tokens_ok & inflight.w_rdy & ~aborting),
                inflight.w_data.eq(Cat(head.header.push_prev, head.header.push_next)),
                inflight.w_en.eq(out.valid & out.ready),
                qf.r_en.eq((out.valid & out.ready) | aborting),
                inflight.r_en.eq(done_in[q]),
            ]
            issued = out.valid & out.ready
            if pop_prev_tok:
                delta[pop_prev_tok].append(-(issued & need_prev))
            if pop_next_tok:
                delta[pop_next_tok].append(-(issued & need_next))
            finished = done_in[q] & inflight.r_rdy
            if push_prev_tok:
                delta[push_prev_tok].append(finished & inflight.r_data[0])
            if push_next_tok:
                delta[push_next_tok].append(finished & inflight.r_data[1])
            inflight_empty.append(~inflight.r_rdy)
            blocked = qf.r_rdy & ~tokens_ok
            blocked_or_idle.append(blocked | (qf.level == 0))
            any_blocked.append(blocked)
        for name, sig in tokens.items():
            step = 0
            for d in delta[name]:
                step = step + d
            m.d.sync += sig.eq(sig + step)

        all_quiet = Signal()
        m.d.comb += all_quiet.eq(Cat(*inflight_empty).all()
                                 & Cat(*(queues[q].level == 0 for q in isa.QUEUES)).all())
        dispatch_blocked = Signal()
        for i, q in enumerate(isa.QUEUES):
            with m.If((stage == 2) & (chk_err == 0) & (chk_queue == i)
                      & (cmd.header.opcode != isa.OPCODES["end"].code)):
                m.d.comb += dispatch_blocked.eq(~queues[q].w_rdy)
        stuck = Signal()
        m.d.comb += stuck.eq(
            (ending | dispatch_blocked)
            & Cat(*inflight_empty).all() & Cat(*blocked_or_idle).all()
            & Cat(*any_blocked).any())

        # Control --------------------------------------------------------------------------
        m.d.comb += [self.done.eq(0), self.irq.eq(0)]
        # The stream lies in the window when base <= cmd_addr and cmd_count * COMMAND_BYTES
        # <= limit - cmd_addr, that is cmd_count <= (limit - cmd_addr) // COMMAND_BYTES:
        # one subtraction of address width and a comparison of the count's low bits
        # (a count with higher bits set cannot fit in the address space).
        aw = c.axi_addr_width
        sh = isa.COMMAND_BYTES.bit_length() - 1
        assert isa.COMMAND_BYTES == 1 << sh and aw > sh
        size = Signal(aw + 1)       # limit - base, negative (top bit set) if below
        room = Signal(aw + 1)       # limit - cmd_addr, likewise
        m.d.comb += [size.eq(self.window_limit - self.window_base),
                     room.eq(self.window_limit - self.cmd_addr)]
        empty = size[aw] | (size[:aw] == 0)
        stream_out = (room[aw] | (self.cmd_count[aw - sh:] != 0)
                      | (self.cmd_count[:aw - sh] > room[sh:aw]))
        with m.If(self.start & ~self.busy):
            m.d.sync += [
                running.eq(1), error.eq(0), index.eq(0), dispatched.eq(0), stage.eq(0),
                next_addr.eq(self.cmd_addr), to_request.eq(self.cmd_count),
                window_size.eq(Mux(empty, 0, size[:aw])),
                end_irq.eq(0), committed.eq(0),
            ]
            for sig in tokens.values():
                m.d.sync += sig.eq(0)
            with m.If((self.cmd_addr < self.window_base) | stream_out | empty):
                m.d.sync += [error.eq(_err("dma_window")), aborting.eq(1), to_request.eq(0)]
            with m.Elif(self.cmd_count == 0):
                m.d.sync += [error.eq(_err("no_end")), aborting.eq(1)]

        with m.If(running & ~aborting):
            with m.If(fetch_failed):
                # The index of the failed job's first command.
                m.d.sync += [error.eq(_err("bus_error")),
                             index.eq(self.cmd_count - to_request - req_count),
                             aborting.eq(1)]
            with m.Elif(self.exec_error != 0):
                m.d.sync += [error.eq(self.exec_error), index.eq(dispatched), aborting.eq(1)]
            with m.Elif(stuck):
                m.d.sync += [error.eq(_err("deadlock")), index.eq(dispatched),
                             aborting.eq(1)]
            with m.Elif(ending & all_quiet & ~awaiting & (fbuf.level == 0)):
                m.d.sync += [running.eq(0), ending.eq(0), to_request.eq(0)]
                m.d.comb += [self.done.eq(1), self.irq.eq(end_irq)]

        with m.If(ending):
            m.d.comb += fbuf.r_en.eq(1)   # commands after end are not executed
            m.d.sync += committed.eq(0)
        with m.If(aborting):
            m.d.sync += [to_request.eq(0), stage.eq(0), ending.eq(0)]
            if beatwise:
                m.d.sync += gathered.eq(0)
            # Wait for issued commands and the fetch in flight, then report.
            with m.If(all_quiet & ~awaiting & (fbuf.level == 0)):
                m.d.sync += [aborting.eq(0), running.eq(0)]
                m.d.comb += [self.done.eq(1), self.irq.eq(1)]
            m.d.comb += fbuf.r_en.eq(1)
            m.d.sync += committed.eq(0)

        m.d.comb += [self.error.eq(error), self.error_index.eq(index)]
        return m


class _BufferedFIFO(wiring.Component):
    """A first-in first-out buffer in block RAM with the ports and timing of
    :class:`amaranth.lib.fifo.SyncFIFOBuffered` (``depth`` entries, the head in the
    memory's read register; an entry written to an empty buffer is readable two
    cycles later), whose memory a synthesiser maps without read-during-write logic:
    the entry read is never the one being written (the memory is read only when it
    holds an entry, and written only when it is not full), so the memory carries
    Yosys's ``no_rw_check``, which spares the bypass registers and multiplexers
    (about 70 flip-flops and 40 LUTs for 32 bits on iCE40) that the memory would get
    otherwise."""

    def __init__(self, *, width: int, depth: int):
        assert depth >= 2
        self._width, self._depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
            "level": Out(range(depth + 1)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        inner = self._depth - 1                 # entries in the memory; one more is read out
        rows = 1 << (inner - 1).bit_length()    # a power of 2, so the pointers wrap freely
        m.submodules.storage = storage = Memory(shape=self._width, depth=rows, init=[],
                                                attrs={"no_rw_check": 1})
        w_port = storage.write_port()
        r_port = storage.read_port(domain="sync")
        produce = Signal(range(rows))
        consume = Signal(range(rows))
        stored = Signal(range(inner + 1))
        write = Signal()
        fetch = Signal()
        m.d.comb += [
            self.w_rdy.eq(stored != inner),
            write.eq(self.w_en & self.w_rdy),
            fetch.eq((stored != 0) & (~self.r_rdy | self.r_en)),
            w_port.addr.eq(produce), w_port.data.eq(self.w_data), w_port.en.eq(write),
            r_port.addr.eq(consume), r_port.en.eq(fetch), self.r_data.eq(r_port.data),
            self.level.eq(stored + self.r_rdy),
        ]
        with m.If(write):
            m.d.sync += produce.eq(produce + 1)
        with m.If(fetch):
            m.d.sync += [consume.eq(consume + 1), self.r_rdy.eq(1)]
        with m.Elif(self.r_en):
            m.d.sync += self.r_rdy.eq(0)
        m.d.sync += stored.eq(stored + write - fetch)
        return m


class _ShiftQueue(wiring.Component):
    """A small first-in first-out queue in flip-flops with the ports and timing of
    :class:`amaranth.lib.fifo.SyncFIFO` (an entry written is readable the next cycle;
    no write when full): the head is always entry 0, and a read moves the others down,
    so reading needs no multiplexer and no read pointer."""

    def __init__(self, *, width: int, depth: int):
        self._width, self._depth = width, depth
        super().__init__({
            "w_data": In(width), "w_en": In(1), "w_rdy": Out(1),
            "r_data": Out(width), "r_en": In(1), "r_rdy": Out(1),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self._depth
        entries = [Signal(self._width, name=f"entry{i}") for i in range(n)]
        # full[i]: entry i holds a command (entries 0 to level - 1 do).
        full = [Signal(name=f"full{i}") for i in range(n)]
        read, write = Signal(), Signal()
        m.d.comb += [
            self.r_rdy.eq(full[0]), self.w_rdy.eq(~full[n - 1]), self.r_data.eq(entries[0]),
            read.eq(self.r_en & full[0]), write.eq(self.w_en & ~full[n - 1]),
        ]
        for i in range(n):
            above = full[i + 1] if i + 1 < n else Const(0)
            below = full[i - 1] if i else Const(1)
            nxt = entries[i + 1] if i + 1 < n else entries[i]
            with m.If(read):
                m.d.sync += [entries[i].eq(Mux(write & full[i] & ~above, self.w_data, nxt)),
                             full[i].eq(above | (write & full[i]))]
            with m.Elif(write & below & ~full[i]):
                m.d.sync += [entries[i].eq(self.w_data), full[i].eq(1)]
        return m


class _Passthrough:
    """A queue of depth 0, with a FIFO's ports: the checked command goes from the
    checker straight to its executor, accepted as it is issued."""

    def __init__(self, m: Module, width: int, *, name: str):
        self.w_data = Signal(width, name=f"{name}_direct_data")
        self.w_en = Signal(name=f"{name}_direct_valid")
        self.r_en = Signal(name=f"{name}_direct_take")
        self.r_data, self.r_rdy, self.w_rdy = self.w_data, self.w_en, self.r_en
        self.level = Const(0, 1)


def _above(a, b: int):
    """``a > b`` for a signal ``a`` and a constant ``b``: the bits above ``b``'s width
    take an OR, not a comparator."""
    n = b.bit_length()
    a = Value.cast(a)
    if n >= len(a):
        return a > b
    if b == (1 << n) - 1:
        return a[n:] != 0
    return (a[n:] != 0) | (a[:n] > b)


def _if(cond, value):
    """``value`` when ``cond``, else 0."""
    from amaranth.hdl import Mux
    return Mux(cond, value, 0)
