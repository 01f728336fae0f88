"""The accelerator: command processor, DMA, memories, GEMM engine, executors.

:class:`AcceleratorCore` holds everything behind the AXI4 memory port and takes its
control (stream address and length, DMA window, start) as plain ports, so that it
can be tested and embedded without a register bus. Wrap it in
:class:`intformer.hw.axi.FlatPorts` for conventional ``m_axi_*`` port names.

Data paths
    * DMA read engine: shared by the command fetch and the load executor, one job at
      a time (its data and completion are routed to whoever issued it).
    * DMA write engine: the store executor.
    * Scratchpad read ports (priority order): GEMM A rows, GEMM B rows, store;
      write ports: GEMM INT8 results, load.
    * Accumulator read ports: GEMM partial sums, GEMM bias/scale, store; write ports:
      GEMM results, load.

Commands executed: ``load``, ``store``, ``gemm``, ``requant`` (by
:class:`intformer.hw.requantexec.RequantExecutor`, where ``has_requant`` holds),
``set_const``, ``end``, and
``gelu``, ``softmax``, ``residual``, ``layernorm`` where
:func:`intformer.hw.vecexec.supported` holds (see :func:`implemented`).
"""

from __future__ import annotations

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out, connect

from . import isa
from .axi import AXI4Signature
from .cmdproc import CommandProcessor
from .config import Config
from .dma import DMA, DMAError
from .gemm import GemmEngine
from .memories import accumulator, scratchpad
from .requantexec import RequantExecutor
from .transfer import LoadExecutor, StoreExecutor
from .vecexec import CONSTANTS, VectorExecutor, supported

__all__ = ["Accelerator", "AcceleratorCore", "IMPLEMENTED", "COUNTERS", "PERF_REGISTERS",
           "implemented", "register_map"]

#: Commands every accelerator carries out (``requant`` unless ``has_requant`` is off).
IMPLEMENTED = ("load", "store", "gemm", "requant", "set_const", "end")
#: Vector commands, carried out where :func:`intformer.hw.vecexec.supported` holds and
#: the unit is configured.
VECTOR_OPS = ("gelu", "softmax", "residual", "layernorm")


def implemented(config: Config) -> tuple[str, ...]:
    """The commands an accelerator of ``config`` carries out; any other command ends a
    stream with ``unit_absent``."""
    vec = tuple(op for op in VECTOR_OPS if supported(config) and getattr(config, f"has_{op}"))
    return tuple(op for op in IMPLEMENTED if op != "requant" or config.has_requant) + vec


def _narrow_descriptor(m: Module, dst, src) -> None:
    """Drive DMA descriptor ``dst`` from ``src`` field by field (``dst`` may have
    narrower ``rows`` and ``row_bytes``; the command processor has bounded them)."""
    for name, _ in dst.shape():
        m.d.comb += getattr(dst, name).eq(getattr(src, name))


#: Performance counters, in the order of :attr:`AcceleratorCore.counters`.
COUNTERS = {
    "cycles": "Cycles from start to done of the last stream",
    "gemm_busy": "Cycles the GEMM engine was busy",
    "gemm_rows": "A rows that entered the array (each is array_rows x array_cols MACs)",
    "vector_busy": "Cycles the vector executor was busy",
    "load_bytes": "Bytes loaded by load commands",
    "store_bytes": "Bytes stored by store commands",
    "dma_read_stall": "Cycles a load waited for the shared DMA read engine",
}


class AcceleratorCore(wiring.Component):
    """Everything of the accelerator behind its AXI4 memory port.

    Parameters
    ----------
    config : Config

    Members
    -------
    m_axi : Out(AXI4Signature)
        Memory.
    start : In(1)
        Pulse: run ``cmd_count`` commands from byte address ``cmd_addr``.
    soft_reset : In(1)
        Pulse: abandon all work. The DMA completes the bursts it has issued (read data
        and write responses taken and dropped, write bursts padded with ``wstrb`` = 0)
        while every other unit (command processor, queues, executors, GEMM engine)
        is held in reset; then ``done`` and ``irq`` pulse with error ``soft_reset``,
        which ``error`` shows until the next ``start``. ``busy`` is high from the
        cycle after the pulse until then (a few cycles when idle, longer when
        bursts are in flight and the memory is slow); ``start`` is ignored meanwhile.
    cmd_addr : In(axi_addr_width)
    cmd_count : In(32)
    window_base : In(axi_addr_width)
    window_limit : In(axi_addr_width + 1)
        DMA window ``[base, limit)``; command memory offsets are relative to ``base``.
    busy, done, irq : Out(1)
        As on :class:`~intformer.hw.cmdproc.CommandProcessor` (``done`` and ``irq``
        are pulses).
    error : Out(8)
    error_index : Out(32)
    error_addr : Out(axi_addr_width)
        Address of the first bus error (SLVERR or DECERR, of the command fetch, a load
        or a store) since ``start`` or soft reset: the first byte of the failing
        burst; 0 when there was none.
    count_<name> : Out(32)
        Performance counters (:data:`COUNTERS`), cleared by ``start``; 0 without
        ``perf_counters``.

    Raises
    ------
    TypeError
        If ``config`` is not a Config.
    """

    def __init__(self, config: Config):
        if not isinstance(config, Config):
            raise TypeError(f"Accelerator config must be a Config, not {config!r}")
        self._config = config
        aw = config.axi_addr_width
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=aw, data_width=config.axi_data_width,
                                       id_width=config.axi_id_width)),
            "start": In(1), "soft_reset": In(1), "cmd_addr": In(aw), "cmd_count": In(32),
            "window_base": In(aw), "window_limit": In(aw + 1),
            "busy": Out(1), "done": Out(1), "irq": Out(1),
            "error": Out(8), "error_index": Out(32), "error_addr": Out(aw),
            **{f"count_{name}": Out(32) for name in COUNTERS},
        })

    @property
    def config(self) -> Config:
        return self._config

    def manifest(self) -> dict:
        """Command encodings, error codes and counters for ``manifest.json``."""
        return {**isa.manifest_section(implemented(self._config), CONSTANTS),
                "counters": {name: i for i, name in enumerate(COUNTERS)}
                if self._config.perf_counters else {}}

    def elaborate(self, platform) -> Module:
        m = Module()
        c = self._config
        aw = c.axi_addr_width

        # Soft reset: the DMA drains the bus by its own soft reset while every other
        # unit, the queues between them and the routing below are held in reset (the
        # memories keep their contents); once the DMA is idle the hold ends and the
        # core reports soft_reset.
        resetting = Signal()
        hold = Signal()
        m.d.comb += hold.eq(self.soft_reset | resetting)
        units = m.submodules

        def add(name, unit):
            setattr(units, name, ResetInserter({"sync": hold})(unit))
            return unit

        cp = add("cmdproc", CommandProcessor(c, implemented=implemented(c)))
        # Descriptor counts only as wide as commands and fetches can ask for (the
        # generators' registers, counters and comparators shrink with them). The DMA
        # need not check the window: the command processor has checked every load and
        # store against it before dispatching them, and the stream before fetching it
        # (the window registers must not change while the accelerator is busy).
        transfer = isa.OPCODES["load"]
        m.submodules.dma = dma = DMA.from_config(
            c, rows_width=transfer.field("rows").width,
            bytes_width=max(transfer.field("row_bytes").width,
                            (cp.fetch_chunk * isa.COMMAND_BYTES).bit_length()),
            check_window=False)
        load = add("load", LoadExecutor(c))
        store = add("store", StoreExecutor(c))
        gemm = add("gemm", GemmEngine(c))
        rq_spad_wr, rq_acc_rd = (), ()
        if c.has_requant:
            rq = add("rq", RequantExecutor(c))
            rq_spad_wr, rq_acc_rd = (rq.spad_wr,), (rq.acc_rd, rq.scale_rd)
        has_vec = supported(c) and any(getattr(c, f"has_{op}") for op in VECTOR_OPS)
        if has_vec:
            vec = add("vec", VectorExecutor(c))
            spad_rd = (gemm.a_rd, gemm.b_rd, vec.spad_rd_a, vec.spad_rd_b, store.spad_rd)
            spad_wr = (gemm.d_wr, *rq_spad_wr, vec.spad_wr, load.spad_wr)
            acc_rd = (gemm.acc_rd, gemm.const_rd, *rq_acc_rd, vec.acc_rd_a,
                      vec.acc_rd_b, vec.acc_rd_c, store.acc_rd)
            acc_wr = (gemm.c_wr, vec.acc_wr, load.acc_wr)
        else:
            spad_rd = (gemm.a_rd, gemm.b_rd, store.spad_rd)
            spad_wr = (gemm.d_wr, *rq_spad_wr, load.spad_wr)
            acc_rd = (gemm.acc_rd, gemm.const_rd, *rq_acc_rd, store.acc_rd)
            acc_wr = (gemm.c_wr, load.acc_wr)
        spad = add("spad", scratchpad(c, read_ports=len(spad_rd), write_ports=len(spad_wr)))
        acc = add("acc", accumulator(c, read_ports=len(acc_rd), write_ports=len(acc_wr)))

        wiring.connect(m, wiring.flipped(self.m_axi), dma.m_axi)
        limit_clip = Mux(self.window_limit >> aw, (1 << aw) - 1, self.window_limit[:aw])
        m.d.comb += [
            dma.window_base.eq(self.window_base), dma.window_limit.eq(self.window_limit),
            # The DMA's soft reset input was first called ``abort``.
            (dma.soft_reset if "soft_reset" in dma.signature.members else dma.abort)
            .eq(self.soft_reset),
            cp.window_base.eq(self.window_base), cp.window_limit.eq(limit_clip),
            cp.start.eq(self.start), cp.cmd_addr.eq(self.cmd_addr),
            cp.cmd_count.eq(self.cmd_count), self.error_index.eq(cp.error_index),
            load.window_base.eq(self.window_base), store.window_base.eq(self.window_base),
        ]

        # Memories.
        for ports, reqs in ((spad.read, spad_rd), (spad.write, spad_wr), (acc.read, acc_rd),
                            (acc.write, acc_wr)):
            for port, req in zip(ports, reqs, strict=True):
                connect(m, port, req)

        # DMA read engine: one job at a time, for the fetch or the load executor.
        # Written as unconditional assignments: Icarus leaves `always @*` blocks whose
        # inputs never change after time 0 unevaluated, and this routing must be
        # defined from the first cycle.
        rd_busy = Signal()
        rd_owner = Signal()   # 0 fetch, 1 load
        pick_fetch = Signal()
        pick_load = Signal()
        m.d.comb += [
            pick_fetch.eq(~rd_busy & cp.fetch_req.valid),
            pick_load.eq(~rd_busy & ~cp.fetch_req.valid & load.desc.valid),
            dma.rd_desc.valid.eq(pick_fetch | pick_load),
            cp.fetch_req.ready.eq(pick_fetch & dma.rd_desc.ready),
            load.desc.ready.eq(pick_load & dma.rd_desc.ready),
        ]
        fetch_desc = Signal.like(dma.rd_desc.payload)
        m.d.comb += [
            fetch_desc.addr.eq(cp.fetch_req.payload.addr),
            fetch_desc.rows.eq(1),
            fetch_desc.row_bytes.eq(cp.fetch_req.payload.count * isa.COMMAND_BYTES),
        ]
        load_desc = Signal.like(dma.rd_desc.payload)
        _narrow_descriptor(m, load_desc, load.desc.payload)
        m.d.comb += dma.rd_desc.payload.eq(Mux(pick_fetch, fetch_desc, load_desc))
        with m.If(dma.rd_desc.valid & dma.rd_desc.ready):
            m.d.sync += [rd_busy.eq(1), rd_owner.eq(pick_load)]
        to_fetch = Signal()
        to_load = Signal()
        m.d.comb += [
            to_fetch.eq(rd_busy & (rd_owner == 0)),
            to_load.eq(rd_busy & (rd_owner == 1)),
            cp.fetch_data.valid.eq(dma.rd_data.valid & to_fetch),
            cp.fetch_data.payload.eq(dma.rd_data.payload),
            load.data.valid.eq(dma.rd_data.valid & to_load),
            load.data.payload.eq(dma.rd_data.payload),
            dma.rd_data.ready.eq((cp.fetch_data.ready & to_fetch)
                                 | (load.data.ready & to_load)),
            cp.fetch_done.eq(dma.rd_status.valid & to_fetch),
            cp.fetch_error.eq(dma.rd_status.payload.error != DMAError.OK),
            load.status.valid.eq(dma.rd_status.valid & to_load),
            load.status.payload.eq(dma.rd_status.payload),
            dma.rd_status.ready.eq(to_fetch | (load.status.ready & to_load)),
        ]
        with m.If((dma.rd_status.valid & dma.rd_status.ready) | hold):
            m.d.sync += rd_busy.eq(0)

        # DMA write engine: the store executor.
        m.d.comb += [dma.wr_desc.valid.eq(store.desc.valid),
                     store.desc.ready.eq(dma.wr_desc.ready)]
        _narrow_descriptor(m, dma.wr_desc.payload, store.desc.payload)
        connect(m, store.data, dma.wr_data)
        connect(m, dma.wr_status, store.status)

        # Queues to executors.
        connect(m, cp.load, load.cmd)
        connect(m, cp.store, store.cmd)
        m.d.comb += [cp.load_done.eq(load.done), cp.store_done.eq(store.done)]
        with m.If(load.done & (load.error != 0)):
            m.d.comb += cp.exec_error.eq(load.error)
        with m.Elif(store.done & (store.error != 0)):
            m.d.comb += cp.exec_error.eq(store.error)

        # Compute: one command at a time, so that completions stay in order, except
        # that a GEMM may follow a GEMM while it drains (the engine keeps its two
        # commands' reads and writes apart and completes them in order).
        opcode = cp.compute.payload.header.opcode
        is_gemm = opcode == isa.OPCODES["gemm"].code
        g = cp.compute.payload.gemm
        for name in ("a", "a_stride", "b", "b_stride", "c", "c_stride", "d", "d_stride",
                     "bias", "scale", "m", "k", "n", "accumulate", "use_bias", "requant",
                     "per_channel", "mult", "shift"):
            m.d.comb += getattr(gemm.cmd.payload, name).eq(getattr(g, name))
        const_done = Signal()
        is_rq = Signal()
        rq_busy = Signal()
        rq_ready = Signal()
        rq_done = Signal()
        # Without the unit a requant command never reaches the queue (unit_absent).
        if c.has_requant:
            m.d.comb += [
                is_rq.eq(opcode == isa.OPCODES["requant"].code),
                rq_busy.eq(rq.busy), rq_ready.eq(rq.cmd.ready), rq_done.eq(rq.done),
                rq.cmd.payload.eq(cp.compute.payload),
                rq.cmd.valid.eq(cp.compute.valid & is_rq & ~const_done & ~gemm.busy),
            ]
        is_vec = Signal()
        vec_busy = Signal()
        vec_ready = Signal()
        vec_done = Signal()
        if has_vec:
            m.d.comb += [
                is_vec.eq(Cat(*(opcode == isa.OPCODES[op].code for op in vec.ops)).any()),
                vec_busy.eq(vec.busy), vec_ready.eq(vec.cmd.ready), vec_done.eq(vec.done),
                vec.cmd.payload.eq(cp.compute.payload),
                vec.cmd.valid.eq(cp.compute.valid & is_vec & ~const_done & ~gemm.busy
                                 & ~rq_busy),
            ]
        m.d.comb += [
            gemm.cmd.valid.eq(cp.compute.valid & is_gemm & ~const_done & ~vec_busy
                              & ~rq_busy),
            cp.compute.ready.eq(~vec_busy & ~rq_busy & ~const_done
                                & Mux(is_gemm, gemm.cmd.ready,
                                      ~gemm.busy & Mux(is_vec, vec_ready,
                                                       Mux(is_rq, rq_ready, 1)))),
            cp.compute_done.eq(gemm.done | vec_done | rq_done | const_done),
        ]
        m.d.sync += const_done.eq(0)   # also what a soft reset needs
        constants = [Signal(32, name=f"const{i}") for i in range(isa.N_CONSTANTS)]
        if has_vec:
            for i, sig in enumerate(constants):
                m.d.comb += vec.constants[i].eq(sig)
        with m.If(cp.compute.valid & cp.compute.ready & ~is_gemm & ~is_vec & ~is_rq):
            m.d.sync += const_done.eq(1)
            with m.If(opcode == isa.OPCODES["set_const"].code):
                with m.Switch(cp.compute.payload.set_const.index):
                    for i, sig in enumerate(constants):
                        with m.Case(i):
                            m.d.sync += sig.eq(cp.compute.payload.set_const.value)

        self._status(m, cp, dma, resetting, hold)
        if c.perf_counters:
            self._counters(m, cp, gemm, load, store, vec_busy)
        return m

    def _status(self, m, cp, dma, resetting, hold) -> None:
        """busy, done, irq and error, with the soft reset's; error_addr."""
        finish = Signal()
        reported = Signal()    # the last thing that happened was a soft reset
        m.d.comb += finish.eq(resetting & ~dma.rd_busy & ~dma.wr_busy)
        with m.If(self.start & ~self.busy):
            m.d.sync += reported.eq(0)
        # The DMA is busy from the cycle after the pulse until it has drained.
        with m.If(self.soft_reset):
            m.d.sync += resetting.eq(1)
        with m.Elif(finish):
            m.d.sync += [resetting.eq(0), reported.eq(1)]
        m.d.comb += [
            self.busy.eq(cp.busy | resetting),
            self.done.eq(cp.done | finish), self.irq.eq(cp.irq | finish),
            self.error.eq(Mux(resetting | reported, isa.ERRORS["soft_reset"][0], cp.error)),
        ]

        # The first bus error's address; a read's and a write's in the same cycle are
        # equally first, the read is kept.
        seen = Signal()
        faults = []
        for st in (dma.rd_status, dma.wr_status):
            code = st.payload.error
            faults.append((st.valid & st.ready & ~seen
                           & ((code == DMAError.SLVERR) | (code == DMAError.DECERR)),
                           st.payload.addr))
        (rd_fault, rd_addr), (wr_fault, wr_addr) = faults
        with m.If(rd_fault | wr_fault):
            m.d.sync += [seen.eq(1), self.error_addr.eq(Mux(rd_fault, rd_addr, wr_addr))]
        with m.If((self.start & ~self.busy) | hold):
            m.d.sync += [seen.eq(0), self.error_addr.eq(0)]

    def _counters(self, m, cp, gemm, load, store, vec_busy) -> None:
        """The performance counters."""
        counters = {name: Signal(32, name=f"count_{name}") for name in COUNTERS}
        byte_base = {"load_bytes": Signal(32), "store_bytes": Signal(32)}
        with m.If(self.start & ~self.busy):
            for name, sig in counters.items():
                if name not in byte_base:
                    m.d.sync += sig.eq(0)
            m.d.sync += [byte_base["load_bytes"].eq(load.bytes),
                         byte_base["store_bytes"].eq(store.bytes)]
        with m.Elif(cp.busy):
            m.d.sync += counters["cycles"].eq(counters["cycles"] + 1)
            with m.If(gemm.busy):
                m.d.sync += counters["gemm_busy"].eq(counters["gemm_busy"] + 1)
            with m.If(vec_busy):
                m.d.sync += counters["vector_busy"].eq(counters["vector_busy"] + 1)
            with m.If(load.desc.valid & ~load.desc.ready):
                m.d.sync += counters["dma_read_stall"].eq(counters["dma_read_stall"] + 1)
        with m.If(cp.busy & gemm.row_in):
            m.d.sync += counters["gemm_rows"].eq(counters["gemm_rows"] + 1)
        m.d.comb += [counters["load_bytes"].eq(load.bytes - byte_base["load_bytes"]),
                     counters["store_bytes"].eq(store.bytes - byte_base["store_bytes"])]
        for name, sig in counters.items():
            m.d.comb += getattr(self, f"count_{name}").eq(sig)


#: Registers the accelerator adds to :func:`intformer.hw.csr.standard_registers`, and
#: the counter each ``perf_*`` register shows.
PERF_REGISTERS = {
    "perf_cycles_busy": "cycles", "perf_bytes_read": "load_bytes",
    "perf_bytes_written": "store_bytes", "perf_stall_cycles": "dma_read_stall",
    "perf_gemm_busy": "gemm_busy", "perf_gemm_rows": "gemm_rows",
    "perf_vector_busy": "vector_busy",
}


def register_map(config: Config):
    """The accelerator's register map: the standard registers, then ``cmd_addr``,
    ``cmd_count``, ``error_index`` and the extra performance counters (no ``perf_*``
    register without ``perf_counters``)."""
    from .csr import Field, Register, standard_registers
    regs = standard_registers(addr_width=config.axi_addr_width,
                              perf_counters=config.perf_counters)
    regs.add(Register("cmd_addr", [Field("addr", config.axi_addr_width)],
                      doc="Command stream byte address"))
    regs.add(Register("cmd_count", [Field("count", 32)], doc="Commands in the stream"))
    regs.add(Register("error_index", [Field("index", 32, access="ro")],
                      doc="Index of the command at fault (see the errors section)"))
    for name, counter in PERF_REGISTERS.items() if config.perf_counters else ():
        if name not in {r.name for r in regs}:
            regs.add(Register(name, [Field("count", 32, access="ro")],
                              doc=COUNTERS[counter]))
    return regs


class Accelerator(wiring.Component):
    """The accelerator as a system sees it: :class:`AcceleratorCore` behind an
    AXI4-Lite register block (:func:`register_map`).

    The host writes the image and the command stream into memory, sets
    ``window_base``/``window_limit``, ``cmd_addr`` and ``cmd_count``, enables the
    interrupts it wants in ``irq_enable`` and writes ``ctrl.start``. ``status`` shows
    busy, done and the error code; ``irq_status.done`` is set by a stream that ended
    with ``end`` and its ``irq`` flag, ``irq_status.error`` by a stream that failed.
    ``error_addr`` holds the address of the first bus error since ``start`` or soft
    reset. ``ctrl.soft_reset`` abandons all work (see :class:`AcceleratorCore`) and
    ends with ``status.done`` set, error ``soft_reset`` and ``irq_status.error``.

    Parameters
    ----------
    config : Config

    Members
    -------
    m_axi : Out(AXI4Signature)
        Memory (``m_axi_*`` once wrapped in :class:`intformer.hw.axi.FlatPorts`).
    s_axil : In(AXI4LiteSignature)
        Registers (``s_axil_*``).
    irq : Out(1)
        High while an enabled interrupt cause is set.

    Raises
    ------
    TypeError
        If ``config`` is not a Config.
    """

    def __init__(self, config: Config):
        from .axi import AXI4LiteSignature
        if not isinstance(config, Config):
            raise TypeError(f"Accelerator config must be a Config, not {config!r}")
        if config.axi_addr_width > 32:
            raise ValueError(f"Accelerator supports addresses of up to 32 bits, not "
                             f"{config.axi_addr_width}")
        self._config = config
        self._core = AcceleratorCore(config)
        self._regs = register_map(config)
        super().__init__({
            "m_axi": Out(AXI4Signature(addr_width=config.axi_addr_width,
                                       data_width=config.axi_data_width,
                                       id_width=config.axi_id_width)),
            "s_axil": In(AXI4LiteSignature(addr_width=config.csr_addr_width, data_width=32)),
            "irq": Out(1),
        })

    @property
    def config(self) -> Config:
        return self._config

    def manifest(self) -> dict:
        """Registers, command encodings, error codes and counters for ``manifest.json``."""
        return {"registers": self._regs.manifest(), **self._core.manifest()}

    def elaborate(self, platform) -> Module:
        from .csr import CSRBank
        m = Module()
        c = self._config
        m.submodules.core = core = self._core
        m.submodules.csr = csr = CSRBank(self._regs, addr_width=c.csr_addr_width,
                                         irq=("irq_enable", "irq_status"))
        wiring.connect(m, wiring.flipped(self.m_axi), core.m_axi)
        wiring.connect(m, wiring.flipped(self.s_axil), csr.s_axil)
        done = Signal()
        with m.If(core.start & ~core.busy):
            m.d.sync += done.eq(0)
        with m.Elif(core.done):
            m.d.sync += done.eq(1)
        m.d.comb += [
            self.irq.eq(csr.irq),
            core.start.eq(csr.ctrl.start), core.soft_reset.eq(csr.ctrl.soft_reset),
            core.cmd_addr.eq(csr.cmd_addr.addr), core.cmd_count.eq(csr.cmd_count.count),
            core.window_base.eq(csr.window_base.addr),
            core.window_limit.eq(csr.window_limit.addr),
            csr.status.busy.eq(core.busy), csr.status.done.eq(done),
            csr.status.error.eq(core.error),
            csr.error_index.index.eq(core.error_index),
            csr.error_addr.addr.eq(core.error_addr),
            csr.irq_status.done_set.eq(core.irq & (core.error == 0)),
            csr.irq_status.error_set.eq(core.done & (core.error != 0)),
        ]
        for name, counter in PERF_REGISTERS.items() if c.perf_counters else ():
            m.d.comb += getattr(csr, name).count.eq(getattr(core, f"count_{counter}"))
        return m
