"""A protocol checker for an AXI4 manager port, sampled on every rising clock edge.

Checks what the manager is responsible for: valid and payload held stable until
accepted on AW, W and AR; full-width INCR bursts within ``max_burst`` beats that
never cross a 4 KB boundary; W bursts whose beat count and ``wlast`` match ``awlen``;
no more than ``max_outstanding`` bursts in flight per direction. It also checks that
``rlast`` from the memory matches ``arlen``. Violations are collected in ``errors``.

Runs inside the simulation: no Amaranth imports.
"""

from __future__ import annotations

from collections import deque

import cocotb
from cocotb.triggers import RisingEdge

__all__ = ["AxiMasterChecker"]

_AW = ("awaddr", "awlen", "awsize", "awburst", "awid")
_AR = ("araddr", "arlen", "arsize", "arburst", "arid")
_W = ("wdata", "wstrb", "wlast")


def _int(handle) -> int:
    # Signals the memory model leaves undriven outside a handshake read as -1.
    try:
        return int(handle.value)
    except ValueError:
        return -1


class AxiMasterChecker:
    def __init__(self, dut, prefix: str, *, bytes_per_beat: int, max_burst: int,
                 max_outstanding: int):
        self.clk = dut.clk
        self.rst = dut.rst
        self.sig = {name: getattr(dut, f"{prefix}_{name}") for name in (
            *_AW, "awvalid", "awready", *_W, "wvalid", "wready", "bresp", "bvalid", "bready",
            *_AR, "arvalid", "arready", "rresp", "rlast", "rvalid", "rready")}
        self.B = bytes_per_beat
        self.max_burst = max_burst
        self.max_outstanding = max_outstanding
        self.errors: list[str] = []
        self.cycle = 0
        self.ar_log: list[tuple[int, int, int]] = []  # (cycle, aligned addr, beats)
        self.aw_log: list[tuple[int, int, int]] = []
        self.r_errors: list[int] = []   # cycles of R beats with an error response
        self.b_errors: list[int] = []
        self.r_bursts = deque()          # beats expected per outstanding read burst
        self.r_count = 0
        self.aw_bursts = deque()         # awlen+1 of bursts whose W beats are not all seen
        self.w_bursts = deque()          # beat counts of W bursts seen before their AW
        self.w_count = 0
        self.b_pending = 0
        self._task = cocotb.start_soon(self._run())

    def error(self, text: str) -> None:
        if len(self.errors) < 20:
            self.errors.append(f"cycle {self.cycle}: {text}")

    @property
    def idle(self) -> bool:
        return not self.r_bursts and not self.aw_bursts and not self.w_bursts and \
            self.b_pending == 0 and self.w_count == 0

    def _read(self, names):
        return tuple(_int(self.sig[n]) for n in names)

    def _burst(self, kind, addr, length, size, burst):
        beats = length + 1
        if beats > self.max_burst:
            self.error(f"{kind} burst of {beats} beats exceeds max_burst {self.max_burst}")
        if 1 << size != self.B:
            self.error(f"{kind}SIZE {size} is not the full bus width")
        if burst != 1:
            self.error(f"{kind}BURST {burst} is not INCR")
        if addr % self.B:
            self.error(f"{kind}ADDR {addr:#x} is not aligned to the bus width")
        if addr // 4096 != (addr + beats * self.B - 1) // 4096:
            self.error(f"{kind} burst at {addr:#x} of {beats} beats crosses a 4 KB boundary")

    async def _run(self):
        ar_hold = aw_hold = w_hold = None
        while True:
            await RisingEdge(self.clk)
            self.cycle += 1
            if str(self.rst.value) != "0":
                ar_hold = aw_hold = w_hold = None
                continue
            v = {n: _int(s) for n, s in self.sig.items()}
            # AR
            if ar_hold is not None and (not v["arvalid"] or self._read(_AR) != ar_hold):
                self.error("AR valid or payload changed before arready")
            ar_hold = None
            if v["arvalid"]:
                if v["arready"]:
                    self._burst("AR", v["araddr"], v["arlen"], v["arsize"], v["arburst"])
                    self.ar_log.append((self.cycle, v["araddr"], v["arlen"] + 1))
                    self.r_bursts.append(v["arlen"] + 1)
                    if len(self.r_bursts) > self.max_outstanding:
                        self.error(f"{len(self.r_bursts)} reads in flight, more than "
                                   f"{self.max_outstanding}")
                else:
                    ar_hold = self._read(_AR)
            # R
            if v["rvalid"] and v["rready"]:
                if not self.r_bursts:
                    self.error("R beat with no read burst outstanding")
                else:
                    self.r_count += 1
                    last = self.r_count == self.r_bursts[0]
                    if v["rlast"] != last:
                        self.error(f"rlast={v['rlast']} on beat {self.r_count} of "
                                   f"{self.r_bursts[0]}")
                    if last:
                        self.r_bursts.popleft()
                        self.r_count = 0
                if v["rresp"] & 2:
                    self.r_errors.append(self.cycle)
            # AW
            if aw_hold is not None and (not v["awvalid"] or self._read(_AW) != aw_hold):
                self.error("AW valid or payload changed before awready")
            aw_hold = None
            if v["awvalid"]:
                if v["awready"]:
                    self._burst("AW", v["awaddr"], v["awlen"], v["awsize"], v["awburst"])
                    self.aw_log.append((self.cycle, v["awaddr"], v["awlen"] + 1))
                    self.b_pending += 1
                    if self.b_pending > self.max_outstanding:
                        self.error(f"{self.b_pending} writes in flight, more than "
                                   f"{self.max_outstanding}")
                    if self.w_bursts:
                        self._match_w(v["awlen"] + 1, self.w_bursts.popleft())
                    else:
                        self.aw_bursts.append(v["awlen"] + 1)
                else:
                    aw_hold = self._read(_AW)
            # W
            if w_hold is not None and (not v["wvalid"] or self._read(_W) != w_hold):
                self.error("W valid or payload changed before wready")
            w_hold = None
            if v["wvalid"]:
                if v["wready"]:
                    self.w_count += 1
                    if self.aw_bursts and self.w_count > self.aw_bursts[0]:
                        self.error(f"W burst longer than awlen+1 = {self.aw_bursts[0]}")
                    if v["wlast"]:
                        if self.aw_bursts:
                            self._match_w(self.aw_bursts.popleft(), self.w_count)
                        else:
                            self.w_bursts.append(self.w_count)
                        self.w_count = 0
                    elif self.aw_bursts and self.w_count == self.aw_bursts[0]:
                        self.error(f"wlast missing on beat {self.w_count} of "
                                   f"{self.aw_bursts[0]}")
                else:
                    w_hold = self._read(_W)
            # B
            if v["bvalid"] and v["bready"]:
                self.b_pending -= 1
                if self.b_pending < 0:
                    self.error("B response with no write outstanding")
                if v["bresp"] & 2:
                    self.b_errors.append(self.cycle)

    def _match_w(self, beats_aw: int, beats_w: int) -> None:
        if beats_aw != beats_w:
            self.error(f"W burst of {beats_w} beats for an AW of {beats_aw}")
