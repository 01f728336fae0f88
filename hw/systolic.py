"""Weight-stationary INT8 systolic array with double-buffered weights."""

from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed
from amaranth.lib import data, stream, wiring
from amaranth.lib.wiring import In, Out

__all__ = ["ActivationLayout", "ResultLayout", "SystolicArray"]


def _check_int(owner: str, name: str, value, lo: int, hi: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{owner} {name} must be an integer, not {value!r}")
    if not lo <= value <= hi:
        raise ValueError(f"{owner} {name} must be between {lo} and {hi}, not {value}")


class ActivationLayout(data.StructLayout):
    """Payload of an activation beat: one input row of the array.

    Fields
    ------
    data : ArrayLayout(signed(operand_width), rows)
        ``data[r]`` meets the weights of array row ``r`` (the K index inside a tile).
    last : unsigned(1)
        Last row that uses the current weight tile; the next beat uses the next tile.
    tag : unsigned(tag_width)
        Carried unchanged to the result (only when ``tag_width`` > 0).
    """

    def __init__(self, rows: int, *, operand_width: int = 8, tag_width: int = 0):
        fields = {"data": data.ArrayLayout(signed(operand_width), rows), "last": 1}
        if tag_width:
            fields["tag"] = tag_width
        super().__init__(fields)


class ResultLayout(data.StructLayout):
    """Payload of a result beat: ``cols`` partial sums and the activation's tag."""

    def __init__(self, cols: int, *, acc_width: int = 32, tag_width: int = 0):
        fields = {"data": data.ArrayLayout(signed(acc_width), cols)}
        if tag_width:
            fields["tag"] = tag_width
        super().__init__(fields)


class SystolicArray(wiring.Component):
    """``rows x cols`` weight-stationary array: each activation row ``a`` gives
    ``y[j] = sum_r a[r] * W[r][j]`` with the weight tile ``W`` in place.

    Processing element ``(r, j)`` holds two weights (banks) for ``W[r][j]``. An
    activation row enters row ``r`` skewed by ``r`` cycles and moves one column
    per cycle; partial sums move one row per cycle; results are de-skewed, so
    the ports carry plain rows. Each PE registers its operands (the activation
    and the weight of the bank in use, selected before that register) and their
    plain signed ``a * w`` product, and adds the product to the partial sum from
    above: a multiplier between two registers, which DSP blocks absorb
    (``DSP48E1``, ``SB_MAC16``) and which keeps the bank select and the routing to
    the weights out of the multiplier's path where they are not absorbed
    (``MULT18X18D``, whose Yosys mapping has no registers).

    Weight tiles are written one row per beat on ``w`` (rows ``0..rows-1`` in
    order, ``rows`` beats per tile) into the bank the array is not using, and
    an activation row uses the oldest tile not yet finished (its ``last`` beat
    ends the tile). A weight row reaches column ``j`` after ``j`` cycles, like
    the activations, so the next tile can be written while the current one
    computes and the first activation of the next tile may follow the last one
    of the current tile in the next cycle: with tiles of at least ``rows``
    activation rows, back-to-back tiles leave no bubble.

    Timing: one activation row and one weight row per cycle; a result leaves
    :attr:`latency` cycles after its activation was accepted (without
    backpressure). The whole array stalls while ``o`` is valid and not ready,
    so ``a.ready`` and ``w.ready`` follow ``o.ready`` then. ``w.ready`` is also
    low while both banks hold unfinished tiles, and ``a.ready`` while no
    complete tile is loaded.

    Parameters
    ----------
    rows : int
        PE rows (the K slice of a weight tile), 1 to 64.
    cols : int
        PE columns (the N slice of a weight tile), 1 to 64.
    operand_width : int
        Width of the signed operands, 2 to 18.
    acc_width : int
        Width of the signed partial sums; they wrap at this width.
    tag_width : int
        Width of a tag carried from each activation to its result, 0 to 128.
    dsp_packing : bool
        Compute the products of two PEs in one iCE40 ``SB_MAC16`` in its dual 8x8
        mode (:func:`intformer.hw.ice40.dual_mul8x8`): PEs are paired in
        column-major order, a leftover PE uses a DSP of its own, so the array needs
        ``ceil(rows * cols / 2)`` DSPs instead of ``rows * cols``. The design then
        instantiates an iCE40 primitive: it synthesizes for iCE40 only (elaborating
        for another Amaranth platform raises ``ValueError``; without a platform, as
        for plain Verilog, it is allowed) and simulates with the model
        :func:`intformer.hw.ice40.sim_models` provides. Same timing and results as
        without packing.
    ecp5_dsp : bool
        Compute each product in an ECP5 ``MULT18X18D`` with its operand and product
        registers in use (:func:`intformer.hw.ecp5.mul18x18d`), which Yosys does not
        infer: the multiplier's delay then sits between the DSP's own registers
        instead of between fabric registers. Synthesizes for ECP5 only (another
        Amaranth platform raises ``ValueError``; no platform is allowed) and simulates
        with :func:`intformer.hw.ecp5.sim_models`. Same timing and results as without.

    Members
    -------
    a : In(stream.Signature(ActivationLayout(rows, ...)))
        Activation rows.
    w : In(stream.Signature(ArrayLayout(signed(operand_width), cols)))
        Weight rows, ``rows`` beats per tile, tile row 0 first.
    o : Out(stream.Signature(ResultLayout(cols, ...)))
        Result rows, in the order of the activations.

    Raises
    ------
    TypeError
        If a parameter is not an integer, or ``dsp_packing`` or ``ecp5_dsp`` not a
        boolean.
    ValueError
        If a parameter is out of range, ``acc_width`` cannot hold a sum of
        ``rows`` products, or ``dsp_packing`` is asked for operands wider than 8
        bits or an array of one PE (nothing to pair), or together with ``ecp5_dsp``.
    """

    def __init__(self, rows: int, cols: int, *, operand_width: int = 8, acc_width: int = 32,
                 tag_width: int = 0, dsp_packing: bool = False, ecp5_dsp: bool = False):
        _check_int("Systolic array", "rows", rows, 1, 64)
        _check_int("Systolic array", "cols", cols, 1, 64)
        _check_int("Systolic array", "operand_width", operand_width, 2, 18)
        _check_int("Systolic array", "acc_width", acc_width, 2, 64)
        _check_int("Systolic array", "tag_width", tag_width, 0, 128)
        if acc_width < 2 * operand_width:
            raise ValueError(f"Systolic array acc_width must be at least 2 * operand_width "
                             f"({2 * operand_width}), not {acc_width}")
        if not isinstance(dsp_packing, bool):
            raise TypeError(f"Systolic array dsp_packing must be a boolean, not {dsp_packing!r}")
        if dsp_packing and operand_width > 8:
            raise ValueError(f"Systolic array dsp_packing needs operand_width of at most 8 "
                             f"(an SB_MAC16 holds two 8x8 products), not {operand_width}")
        if dsp_packing and rows * cols < 2:
            raise ValueError(f"Systolic array dsp_packing needs at least 2 PEs to pair, "
                             f"not {rows}x{cols}")
        if not isinstance(ecp5_dsp, bool):
            raise TypeError(f"Systolic array ecp5_dsp must be a boolean, not {ecp5_dsp!r}")
        if ecp5_dsp and dsp_packing:
            raise ValueError("Systolic array ecp5_dsp and dsp_packing exclude each other "
                             "(MULT18X18D is ECP5's, SB_MAC16 iCE40's)")
        self._rows, self._cols = rows, cols
        self._packing = dsp_packing
        self._ecp5 = ecp5_dsp
        self._ow, self._aw, self._tw = operand_width, acc_width, tag_width
        super().__init__({
            "a": In(stream.Signature(ActivationLayout(rows, operand_width=operand_width,
                                                      tag_width=tag_width))),
            "w": In(stream.Signature(data.ArrayLayout(signed(operand_width), cols))),
            "o": Out(stream.Signature(ResultLayout(cols, acc_width=acc_width,
                                                   tag_width=tag_width))),
        })

    @property
    def rows(self) -> int:
        return self._rows

    @property
    def cols(self) -> int:
        return self._cols

    @property
    def tag_width(self) -> int:
        return self._tw

    @property
    def dsp_packing(self) -> bool:
        return self._packing

    @property
    def ecp5_dsp(self) -> bool:
        return self._ecp5

    @property
    def multipliers(self) -> int:
        """Hardware multipliers the array uses: ``rows * cols``, or with
        :attr:`dsp_packing` ``ceil(rows * cols / 2)`` dual-8x8 ``SB_MAC16``."""
        n = self._rows * self._cols
        return (n + 1) // 2 if self._packing else n

    @property
    def latency(self) -> int:
        """Cycles from an accepted activation row to its result on ``o``, without stalls:
        the skew into row 0 (1), one cycle per column, the operand and product
        registers (2), one cycle per row below the first."""
        return self._rows + self._cols + 2

    @property
    def min_tile_rows(self) -> int:
        """Fewest activation rows per tile for which back-to-back tiles leave no bubble
        (the weight port writes one row per cycle)."""
        return self._rows

    def elaborate(self, platform) -> Module:
        if self._packing and platform is not None:
            from amaranth.vendor import SiliconBluePlatform
            if not isinstance(platform, SiliconBluePlatform):
                raise ValueError(f"Systolic array dsp_packing needs an iCE40 (SiliconBlue) "
                                 f"platform for its SB_MAC16, not {type(platform).__name__}")
        if self._ecp5 and platform is not None:
            from amaranth.vendor import LatticeECP5Platform
            if not isinstance(platform, LatticeECP5Platform):
                raise ValueError(f"Systolic array ecp5_dsp needs an ECP5 platform for its "
                                 f"MULT18X18D, not {type(platform).__name__}")
        m = Module()
        R, C, ow, aw = self._rows, self._cols, self._ow, self._aw

        adv = Signal()           # the whole array moves one step
        loaded = Signal(range(3))  # complete weight tiles not yet finished by activations
        wrow = Signal(range(R))
        wbank = Signal()         # bank the next weight tile goes to
        abank = Signal()         # bank the current activation tile uses
        m.d.comb += [
            adv.eq(~self.o.valid | self.o.ready),
            # Writing a bank is safe once every activation of the tile that used it
            # was accepted in an earlier cycle; rows written in order then reach
            # PE row r no earlier than r cycles after that tile's last activation.
            self.w.ready.eq(adv & (loaded < 2)),
            self.a.ready.eq(adv & (loaded != 0)),
        ]
        w_fire = self.w.valid & self.w.ready
        a_fire = self.a.valid & self.a.ready
        w_done = Signal()
        a_done = Signal()
        m.d.comb += [w_done.eq(w_fire & (wrow == R - 1)), a_done.eq(a_fire & self.a.payload.last)]
        with m.If(w_fire):
            m.d.sync += wrow.eq(wrow + 1)
            with m.If(w_done):
                m.d.sync += [wrow.eq(0), wbank.eq(~wbank)]
        with m.If(a_done):
            m.d.sync += abank.eq(~abank)
        with m.If(w_done & ~a_done):
            m.d.sync += loaded.eq(loaded + 1)
        with m.Elif(a_done & ~w_done):
            m.d.sync += loaded.eq(loaded - 1)

        # Weight write path: column j sees the write j + 1 cycles after it was accepted.
        wv = [Signal(name=f"wv{j}") for j in range(C)]
        wr = [Signal(range(R), name=f"wr{j}") for j in range(C)]
        wb = [Signal(name=f"wb{j}") for j in range(C)]
        wd = [[Signal(signed(ow), name=f"wd{j}_{d}") for d in range(C - j)] for j in range(C)]
        with m.If(adv):
            m.d.sync += [wv[0].eq(w_fire), wr[0].eq(wrow), wb[0].eq(wbank)]
            for j in range(1, C):
                m.d.sync += [wv[j].eq(wv[j - 1]), wr[j].eq(wr[j - 1]), wb[j].eq(wb[j - 1])]
            for j in range(C):
                m.d.sync += wd[0][j].eq(self.w.payload[j])
            for d in range(1, C):
                for j in range(d, C):
                    m.d.sync += wd[d][j - d].eq(wd[d - 1][j - d + 1])
        # wd[d][0] holds column d's weight after d+1 cycles; re-index it by column.
        wcol = [wd[j][0] for j in range(C)]

        # Activation skew: row r enters column 0 r + 1 cycles after acceptance.
        a_in = [[None] * C for _ in range(R)]
        s_in = [[None] * C for _ in range(R)]
        for r in range(R):
            prev_a, prev_s = self.a.payload.data[r], abank
            for d in range(r + 1):
                xa = Signal(signed(ow), name=f"skew{r}_{d}")
                xs = Signal(name=f"skewsel{r}_{d}")
                with m.If(adv):
                    m.d.sync += [xa.eq(prev_a), xs.eq(prev_s)]
                prev_a, prev_s = xa, xs
            a_in[r][0], s_in[r][0] = prev_a, prev_s

        # Pass 1: weights and the activation chain of every PE.
        ops = {}
        for j in range(C):
            for r in range(R):
                w0 = Signal(signed(ow), name=f"w0_{r}_{j}")
                w1 = Signal(signed(ow), name=f"w1_{r}_{j}")
                with m.If(adv & wv[j] & (wr[j] == r)):
                    with m.If(wb[j]):
                        m.d.sync += w1.eq(wcol[j])
                    with m.Else():
                        m.d.sync += w0.eq(wcol[j])
                # A continuous mux, not a combinational process: Icarus never runs
                # an always @* whose inputs never change (a weight that stays 0).
                ops[r, j] = (a_in[r][j], Mux(s_in[r][j], w1, w0))
                if j + 1 < C:
                    xa = Signal(signed(ow), name=f"a{r}_{j + 1}")
                    xs = Signal(name=f"sel{r}_{j + 1}")
                    with m.If(adv):
                        m.d.sync += [xa.eq(a_in[r][j]), xs.eq(s_in[r][j])]
                    a_in[r][j + 1], s_in[r][j + 1] = xa, xs

        # Pass 2: registered operands and products, one multiplier per PE or two
        # per SB_MAC16 (its input registers and 8x8 product registers).
        prods = {}
        if self._packing:
            from intformer.hw.ice40 import dual_mul8x8
            pes = [(r, j) for j in range(C) for r in range(R)]
            for i in range(0, len(pes), 2):
                lo_pe = pes[i]
                hi_pe = pes[i + 1] if i + 1 < len(pes) else None
                a_hi, w_hi = ops[hi_pe] if hi_pe else (Const(0, signed(ow)),) * 2
                lo, hi = dual_mul8x8(m, a_lo=ops[lo_pe][0], b_lo=ops[lo_pe][1],
                                     a_hi=a_hi, b_hi=w_hi, ce=adv, input_regs=True,
                                     name=f"mac{lo_pe[0]}_{lo_pe[1]}")
                prods[lo_pe] = lo
                if hi_pe:
                    prods[hi_pe] = hi
        elif self._ecp5:
            from intformer.hw.ecp5 import mul18x18d
            for (r, j), (a, weight) in ops.items():
                prods[r, j] = mul18x18d(m, a=a, b=weight, ce=adv, name=f"mult{r}_{j}")
        else:
            for (r, j), (a, weight) in ops.items():
                a_q = Signal(signed(ow), name=f"mul_a{r}_{j}")
                w_q = Signal(signed(ow), name=f"mul_w{r}_{j}")
                prod = Signal(signed(2 * ow), name=f"prod{r}_{j}")
                with m.If(adv):
                    m.d.sync += [a_q.eq(a), w_q.eq(weight), prod.eq(a_q * w_q)]
                prods[r, j] = prod

        # Pass 3: partial sums move down each column.
        bottom = []
        for j in range(C):
            psum_above = None
            for r in range(R):
                prod = prods[r, j]
                psum = Signal(signed(aw), name=f"psum{r}_{j}")
                with m.If(adv):
                    if psum_above is None:
                        m.d.sync += psum.eq(prod)
                    else:
                        m.d.sync += psum.eq(psum_above + prod)
                psum_above = psum
            bottom.append(psum_above)

        # De-skew: column j waits C - 1 - j more cycles so the row leaves whole.
        for j in range(C):
            prev = bottom[j]
            for d in range(C - 1 - j):
                x = Signal(signed(aw), name=f"deskew{j}_{d}")
                with m.If(adv):
                    m.d.sync += x.eq(prev)
                prev = x
            m.d.comb += self.o.payload.data[j].eq(prev)

        # Valid bits and tags travel alongside in a plain delay line.
        latency = self.latency
        valid = Signal(latency)
        with m.If(adv):
            m.d.sync += valid.eq((valid << 1) | a_fire)
        m.d.comb += self.o.valid.eq(valid[-1])
        if self._tw:
            prev = self.a.payload.tag
            for d in range(latency):
                x = Signal(self._tw, name=f"tag{d}")
                with m.If(adv):
                    m.d.sync += x.eq(prev)
                prev = x
            m.d.comb += self.o.payload.tag.eq(prev)
        return m
