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

from amaranth.hdl import Cat, Const, Module, Signal, signed
from amaranth.lib import data, fifo, stream, wiring
from amaranth.lib.wiring import In, Out

from . import isa
from .config import Config

__all__ = ["FetchRequestLayout", "CommandProcessor"]

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

    Timing: a command takes three cycles from the fetch buffer into its queue
    (latch, check, dispatch); fetches of up to :attr:`fetch_chunk` commands are
    issued ahead while the fetch buffer has room. A queue issues one command per
    cycle when its tokens are there, its executor is ready and fewer than
    :attr:`max_inflight` of its commands are unfinished.

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
        """Issued, unfinished commands allowed per queue."""
        return 4

    # Checks ---------------------------------------------------------------------------------

    def _check(self, m: Module, cmd, window_size) -> tuple[Signal, Signal]:
        """Combinational error code and queue index of the command view ``cmd``.

        The order of the checks is the order :class:`intformer.sw.commands.Checker`
        documents; that class is the reference the tests compare with."""
        c = self._config
        depth = {"spad": c.spad_rows, "acc": c.acc_rows}
        row_bytes = {"spad": c.spad_row_bytes, "acc": c.acc_row_bytes}
        row_elems = {"spad": c.spad_row_bytes, "acc": c.array_cols}
        err = Signal(8)
        queue = Signal(2)
        code = cmd.header.opcode

        def room(space, first, rows, stride):
            """Rows left after ``first + (rows - 1) * stride`` (negative: none)."""
            r = Signal(signed(40))
            m.d.comb += r.eq(depth[space] - first - (rows - 1) * stride)
            return r

        def fits(space, first, rows, stride, amount, per_row):
            """``ceil(amount / per_row)`` local rows fit after the operand's last row start;
            ``ceil(a / w) <= r`` is ``a <= r * w`` and needs no divider."""
            r = room(space, first, rows, stride)
            return (r > 0) & (amount <= r * per_row)

        def first_failure(checks):
            """Chain of (bad condition, error name): the first bad one decides."""
            with m.If(checks[0][0]):
                m.d.comb += err.eq(_err(checks[0][1]))
            for bad, name in checks[1:]:
                with m.Elif(bad):
                    m.d.comb += err.eq(_err(name))

        queues = {q: i for i, q in enumerate(isa.QUEUES)}
        with m.Switch(code):
            for op in isa.OPCODES.values():
                with m.Case(op.code):
                    m.d.comb += queue.eq(queues[op.queue])
                    v = getattr(cmd, op.name)
                    checks = []
                    present = op.name in self._implemented and \
                        getattr(c, f"has_{op.name}", True)
                    checks.append((Const(int(not present), 1), "unit_absent"))
                    if op.queue == "load":
                        checks.append((v.pop_prev | v.push_prev, "bad_dependency"))
                    if op.queue == "store":
                        checks.append((v.pop_next | v.push_next, "bad_dependency"))
                    if op.name in ("load", "store"):
                        checks.append(((v.rows == 0) | (v.row_bytes == 0), "zero_length"))
                        tr = v.transpose if op.name == "load" else Const(0, 1)
                        L = c.spad_row_bytes
                        checks.append((tr & ((v.space != isa.SPACES["spad"]) | (v.rows > L)
                                             | (v.row_bytes > L)), "bad_shape"))
                        for space in ("spad", "acc"):
                            ok = fits(space, v.loc, v.rows, v.loc_stride, v.row_bytes,
                                      row_bytes[space])
                            checks.append(((v.space == isa.SPACES[space]) & ~tr & ~ok,
                                           f"{space}_range"))
                        ok_t = fits("spad", v.loc, v.row_bytes, v.loc_stride, 1, 1)
                        checks.append((tr & ~ok_t, "spad_range"))
                        extent = Signal(48, name=f"{op.name}_extent")
                        m.d.comb += extent.eq(v.dram + (v.rows - 1) * v.dram_stride
                                              + v.row_bytes)
                        checks.append((extent > window_size, "dma_window"))
                    elif op.name == "gemm":
                        # K tiles: ceil(k / R) chunks of A rows; N tiles: ceil(n / C).
                        R, C = c.array_rows, c.array_cols
                        checks += [
                            ((v.m == 0) | (v.k == 0) | (v.n == 0), "zero_length"),
                            (~fits("spad", v.a, v.m, v.a_stride, v.k, R), "spad_range"),
                            (~fits("spad", v.b, v.k, v.b_stride, v.n, C), "spad_range"),
                            (~fits("acc", v.c, v.m, v.c_stride, v.n, C), "acc_range"),
                            (v.requant & ~fits("spad", v.d, v.m, v.d_stride, v.n, C),
                             "spad_range"),
                            (v.use_bias & ~fits("acc", v.bias, 1, 0, v.n, C), "acc_range"),
                            (v.requant & v.per_channel & ~fits("acc", v.scale, 1, 0, v.n, C),
                             "acc_range"),
                        ]
                    elif op.name == "requant":
                        checks += [
                            (v.rows == 0, "zero_length"),
                            (~fits("acc", v.src, 1, 0, v.rows, 1), "acc_range"),
                            (~fits("spad", v.dst, v.rows, v.dst_stride, 1, 1), "spad_range"),
                            (v.per_channel & ~fits("acc", v.scale, 1, 0, 1, 1),
                             "acc_range"),
                        ]
                    elif op.name in ("gelu", "softmax", "layernorm", "residual"):
                        checks += [
                            ((v.rows == 0) | (v.length == 0), "zero_length"),
                            (v.length > c.vector_max_row, "bad_shape"),
                        ]
                        operands = [("src", v.src, v.src_stride, v.src_space, v.rows, 1)]
                        if op.name == "residual":
                            operands.append(("src2", v.src2, v.src2_stride, v.src2_space,
                                             v.rows, 1))
                        elif op.name == "layernorm":
                            operands.append(("src2", v.src2, 0, v.src2_space, 1, 2))
                        operands.append(("dst", v.dst, v.dst_stride, v.dst_space, v.rows, 1))
                        for _, first, stride, sel, rows, mult in operands:
                            for space in ("spad", "acc"):
                                r = room(space, first, rows, stride)
                                # mult * ceil(L / e) <= r  <=>  L <= floor(r / mult) * e
                                ok = ((r >= mult)
                                      & (v.length <= (r >> (mult - 1)) * row_elems[space]))
                                checks.append(((sel == isa.SPACES[space]) & ~ok,
                                               f"{space}_range"))
                    elif op.name == "set_const":
                        checks.append((v.index >= isa.N_CONSTANTS, "bad_constant"))
                    if checks:
                        first_failure(checks)
            with m.Default():
                m.d.comb += err.eq(_err("unknown_opcode"))
        return err, queue

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
        index = Signal(32)      # index of the command being checked
        window_size = Signal(c.axi_addr_width + 1)
        m.d.comb += self.busy.eq(running | aborting | ending)

        # Fetch ----------------------------------------------------------------------------
        # One fetch job at a time, so that its status names it without ambiguity; the
        # buffer of two chunks lets one job overlap the checking of the previous one.
        # A job's commands become visible to the checker only once its status says the
        # read succeeded: a bus error is reported as such, never as garbage commands.
        m.submodules.fbuf = fbuf = fifo.SyncFIFOBuffered(width=CB, depth=depth)
        next_addr = Signal(c.axi_addr_width)
        to_request = Signal(32)                 # commands not yet requested
        outstanding = Signal(range(depth + 1))  # commands of the job not yet assembled
        awaiting = Signal()                     # a job is requested and has not reported
        req_pending = Signal()
        req_count = Signal(16)
        committed = Signal(range(depth + 1))    # buffered commands of successful jobs

        stop_fetch = aborting | ending | ~running
        can_request = (~awaiting & (to_request != 0) & ~stop_fetch
                       & (fbuf.level + chunk <= depth))
        count = Signal(16)
        m.d.comb += count.eq(_min_const(to_request, chunk))
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
        if W <= CB:
            beats = CB // W
            shreg = Signal(CB)
            beat = Signal(range(beats))
            m.d.comb += self.fetch_data.ready.eq(1)
            with m.If(self.fetch_data.valid):
                if beats == 1:
                    m.d.comb += [word.eq(self.fetch_data.payload), assembled.eq(1)]
                else:
                    m.d.sync += shreg.eq(Cat(shreg[W:], self.fetch_data.payload))
                    m.d.sync += beat.eq(beat + 1)
                    with m.If(beat == beats - 1):
                        m.d.sync += beat.eq(0)
                        m.d.comb += [word.eq(Cat(shreg[W:], self.fetch_data.payload)),
                                     assembled.eq(1)]
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
        cmd_raw = Signal(CB)
        cmd = data.View(self._layout, cmd_raw)
        stage = Signal(2)     # 0 empty, 1 latched, 2 checked
        chk_err = Signal(8)
        chk_queue = Signal(2)
        err_c, queue_c = self._check(m, cmd, window_size)
        dispatched = Signal(32)

        queues = {}
        for q in isa.QUEUES:
            qf = fifo.SyncFIFOBuffered(width=CB, depth=c.cmd_queue_depth)
            m.submodules[f"{q}_queue"] = qf
            queues[q] = qf

        m.d.comb += fbuf.r_en.eq(0)
        with m.If(running & ~aborting & ~ending):
            with m.If(stage == 0):
                with m.If((committed != 0) & fbuf.r_rdy):
                    m.d.comb += [fbuf.r_en.eq(1), committed_sub.eq(1)]
                    m.d.sync += [cmd_raw.eq(fbuf.r_data), stage.eq(1)]
                with m.Elif((to_request == 0) & ~awaiting & (fbuf.level == 0)):
                    m.d.sync += [error.eq(_err("no_end")), index.eq(dispatched),
                                 aborting.eq(1)]
            with m.Elif(stage == 1):
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
                            m.d.comb += [queues[q].w_data.eq(cmd_raw),
                                         queues[q].w_en.eq(1)]
                            with m.If(queues[q].w_rdy):
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
            head = data.View(self._layout, qf.r_data)
            pop_prev_tok, pop_next_tok, push_prev_tok, push_next_tok = edges[q]
            m.submodules[f"{q}_inflight"] = inflight = fifo.SyncFIFO(width=2,
                                                                      depth=self.max_inflight)
            need_prev = head.header.pop_prev if pop_prev_tok else Const(0)
            need_next = head.header.pop_next if pop_next_tok else Const(0)
            tokens_ok = Signal(name=f"{q}_tokens_ok")
            m.d.comb += tokens_ok.eq(
                (~need_prev | (tokens[pop_prev_tok] != 0 if pop_prev_tok else 1))
                & (~need_next | (tokens[pop_next_tok] != 0 if pop_next_tok else 1)))
            m.d.comb += [
                out.payload.eq(qf.r_data),
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
        with m.If(self.start & ~self.busy):
            stream_bytes = self.cmd_count * isa.COMMAND_BYTES
            size = self.window_limit - self.window_base
            m.d.sync += [
                running.eq(1), error.eq(0), index.eq(0), dispatched.eq(0), stage.eq(0),
                next_addr.eq(self.cmd_addr), to_request.eq(self.cmd_count),
                window_size.eq(_if(self.window_limit > self.window_base, size)),
                end_irq.eq(0), committed.eq(0),
            ]
            for sig in tokens.values():
                m.d.sync += sig.eq(0)
            with m.If((self.cmd_addr < self.window_base)
                      | (self.cmd_addr + stream_bytes > self.window_limit)
                      | (self.window_limit <= self.window_base)):
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
            # Wait for issued commands and the fetch in flight, then report.
            with m.If(all_quiet & ~awaiting & (fbuf.level == 0)):
                m.d.sync += [aborting.eq(0), running.eq(0)]
                m.d.comb += [self.done.eq(1), self.irq.eq(1)]
            m.d.comb += fbuf.r_en.eq(1)
            m.d.sync += committed.eq(0)

        m.d.comb += [self.error.eq(error), self.error_index.eq(index)]
        return m


def _min_const(a, b: int):
    """``min(a, b)`` for a signal ``a`` and a constant ``b``."""
    from amaranth.hdl import Mux
    return Mux(a < b, a, b)


def _if(cond, value):
    """``value`` when ``cond``, else 0."""
    from amaranth.hdl import Mux
    return Mux(cond, value, 0)
