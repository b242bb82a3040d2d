"""The `sync` clock domain of a board top: the board oscillator multiplied by the FPGA's PLL.

PLL settings are computed here with the same search the Project IceStorm / Trellis tools use
(`icepll`, `ecppll`; tests compare against their output), so the design needs no tool at
elaboration time.  Reset is held until the PLL locks and then for `POR_CYCLES` more cycles
(iCE40 block RAMs read as zero for ~3 us after configuration).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from amaranth.hdl import ClockDomain, Elaboratable, Instance, Module, Signal, Value
from amaranth.lib import io

from .profiles import BoardProfile

POR_CYCLES = 1 << 10   # > 3 us at any clock we use (34 us at 30 MHz)


@dataclass(frozen=True)
class Ice40Pll:
    divr: int
    divf: int
    divq: int
    filter_range: int
    fout_hz: float


@dataclass(frozen=True)
class Ecp5Pll:
    clki_div: int
    clkfb_div: int
    clkop_div: int
    clkop_cphase: int
    fout_hz: float
    fvco_hz: float


def ice40_pll(fin_hz: float, fout_hz: float) -> Ice40Pll:
    """SB_PLL40 settings in SIMPLE feedback mode closest to `fout_hz` (icepll's search order)."""
    fin, want = fin_hz / 1e6, fout_hz / 1e6
    best: Ice40Pll | None = None
    for divr in range(16):
        fpfd = fin / (divr + 1)
        if not 10 <= fpfd <= 133:
            continue
        for divf in range(128):
            fvco = fpfd * (divf + 1)
            if not 533 <= fvco <= 1066:
                continue
            for divq in range(1, 7):
                fout = fvco / (1 << divq)
                if best is None or abs(fout - want) < abs(best.fout_hz / 1e6 - want):
                    best = Ice40Pll(divr, divf, divq, _ice40_filter(fpfd), fout * 1e6)
    if best is None:
        raise ValueError(f"no iCE40 PLL setting reaches {fout_hz / 1e6:g} MHz from {fin_hz / 1e6:g} MHz")
    return best


def _ice40_filter(fpfd_mhz: float) -> int:
    for rng, limit in enumerate((17, 26, 44, 66, 101), start=1):
        if fpfd_mhz < limit:
            return rng
    return 6


def ecp5_pll(fin_hz: float, fout_hz: float) -> Ecp5Pll:
    """EHXPLLL settings with CLKOP feedback closest to `fout_hz`; ties go to a VCO nearest 600 MHz (ecppll)."""
    fin, want = fin_hz / 1e6, fout_hz / 1e6
    best: Ecp5Pll | None = None
    for clki in range(1, 129):
        fpfd = fin / clki
        if not 3.125 <= fpfd <= 400:
            continue
        for fb in range(1, 81):
            fout = fpfd * fb
            for op in range(1, 129):
                fvco = fout * op
                if not 400 <= fvco <= 800:
                    continue
                cand = Ecp5Pll(clki, fb, op, (op - 1) // 2, fout * 1e6, fvco * 1e6)
                if best is None:
                    best = cand
                    continue
                err, berr = abs(fout - want), abs(best.fout_hz / 1e6 - want)
                if err < berr or (err == berr and abs(fvco - 600) < abs(best.fvco_hz / 1e6 - 600)):
                    best = cand
    if best is None:
        raise ValueError(f"no ECP5 PLL setting reaches {fout_hz / 1e6:g} MHz from {fin_hz / 1e6:g} MHz")
    return best


class BoardClock(Elaboratable):
    """Clock (`clk`) at the profile's frequency from the board oscillator (PLL when they differ) and its
    power-on reset (`rst`); the parent drives its `sync` domain from them."""

    def __init__(self, profile: BoardProfile) -> None:
        self.profile = profile
        self.locked = Signal()
        self.clk = Signal()
        self.rst = Signal(init=1)

    def elaborate(self, platform) -> Module:
        m = Module()
        p = self.profile
        m.domains.por = cd_por = ClockDomain("por", reset_less=True)
        m.d.comb += self.clk.eq(cd_por.clk)
        clk_name = platform.default_clk
        if p.clock_hz == p.osc_hz:
            m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(clk_name, 0, dir="-"))
            m.d.comb += [cd_por.clk.eq(clk_buf.i), self.locked.eq(1)]
        elif p.family == "ice40":
            s = ice40_pll(p.osc_hz, p.clock_hz)
            pin = platform.request(clk_name, 0, dir="-")
            m.submodules.pll = Instance(
                "SB_PLL40_PAD",
                p_FEEDBACK_PATH="SIMPLE", p_DIVR=s.divr, p_DIVF=s.divf, p_DIVQ=s.divq,
                p_FILTER_RANGE=s.filter_range,
                i_PACKAGEPIN=pin.io, i_RESETB=1, i_BYPASS=0,
                o_PLLOUTGLOBAL=cd_por.clk, o_LOCK=self.locked)
        elif p.family == "ecp5":
            s = ecp5_pll(p.osc_hz, p.clock_hz)
            m.submodules.clk_buf = clk_buf = io.Buffer("i", platform.request(clk_name, 0, dir="-"))
            clkin = clk_buf.i
            m.submodules.pll = Instance(
                "EHXPLLL",
                a_FREQUENCY_PIN_CLKI=f"{p.osc_hz / 1e6:g}", a_FREQUENCY_PIN_CLKOP=f"{s.fout_hz / 1e6:g}",
                a_ICP_CURRENT="12", a_LPF_RESISTOR="8", a_MFG_ENABLE_FILTEROPAMP="1", a_MFG_GMCREF_SEL="2",
                p_PLLRST_ENA="DISABLED", p_INTFB_WAKE="DISABLED", p_STDBY_ENABLE="DISABLED",
                p_DPHASE_SOURCE="DISABLED", p_OUTDIVIDER_MUXA="DIVA", p_OUTDIVIDER_MUXB="DIVB",
                p_OUTDIVIDER_MUXC="DIVC", p_OUTDIVIDER_MUXD="DIVD",
                p_CLKI_DIV=s.clki_div, p_CLKOP_ENABLE="ENABLED", p_CLKOP_DIV=s.clkop_div,
                p_CLKOP_CPHASE=s.clkop_cphase, p_CLKOP_FPHASE=0, p_FEEDBK_PATH="CLKOP", p_CLKFB_DIV=s.clkfb_div,
                i_RST=0, i_STDBY=0, i_CLKI=clkin, i_CLKFB=cd_por.clk, i_PHASESEL0=0, i_PHASESEL1=0,
                i_PHASEDIR=1, i_PHASESTEP=1, i_PHASELOADREG=1, i_PLLWAKESYNC=0, i_ENCLKOP=0,
                o_CLKOP=cd_por.clk, o_LOCK=self.locked)
        else:
            raise ValueError(f"board {p.name}: no PLL support for family {p.family}; set clock_hz = osc_hz")
        # No add_clock_constraint here: the platform constrains the oscillator pin and nextpnr derives
        # the PLL output's constraint from it (a constraint on the PLL net is dropped, as its name
        # does not survive synthesis).

        # Power-on reset: held while the PLL is unlocked and POR_CYCLES after it locks.  On RESET_GLOBAL
        # families a register (one cycle more) on a global line: `count != POR_CYCLES` was a LUT chain
        # in front of the sync domain's ~1,100 resets, late on the full ECP5 design (docs/boards.md).
        count = Signal(range(POR_CYCLES + 1))
        with m.If(~self.locked):
            m.d.por += count.eq(0)
        with m.Elif(count != POR_CYCLES):
            m.d.por += count.eq(count + 1)
        if p.family in RESET_GLOBAL:
            rst_q = Signal(init=1, name="sync_rst")
            m.d.por += rst_q.eq(count != POR_CYCLES)
            m.d.comb += self.rst.eq(global_buffer(p.family)(m, rst_q))
        else:
            m.d.comb += self.rst.eq(count != POR_CYCLES)
        return m


#: Families whose sync-domain reset (BoardClock.rst) is a register on a global buffer: the ECP5 (DCCA;
#: nextpnr-ecp5 promotes only clocks to globals).  Others keep the combinational reset they were
#: placed and routed with (nextpnr-ice40 promotes high-fanout resets to globals itself).
RESET_GLOBAL = frozenset({"ecp5"})


#: Global-buffer primitive per family (clock in -> clock out ports) for high-fanout fabric nets.
_GLOBAL_BUFFERS = {"ecp5": ("DCCA", "CLKI", "CLKO", {"i_CE": 1}), "ice40": ("SB_GB", "USER_SIGNAL_TO_GLOBAL_BUFFER",
                   "GLOBAL_BUFFER_OUTPUT", {}), "xc7": ("BUFG", "I", "O", {})}


def global_buffer(family: str) -> Callable[[Module, Value], Value]:
    """`buf(m, net) -> buffered net`: `net` (driven by a flip-flop) onto a global line of `family`.

    Used for the trainer's reset (rtl/board_top.BoardTop `reset_buffer`), which reaches ~20,000
    flip-flops: nextpnr promotes only clocks to globals, so without this the reset is routed through
    general interconnect, the worst net of the full ECP5 build (docs/boards.md).
    """
    if family not in _GLOBAL_BUFFERS:
        raise ValueError(f"no global buffer for family {family!r} (known: {', '.join(_GLOBAL_BUFFERS)})")
    cell, i, o, extra = _GLOBAL_BUFFERS[family]

    def buf(m: Module, net: Value) -> Value:
        out = Signal(name="global_" + getattr(net, "name", "net"))
        m.submodules += Instance(cell, **{f"i_{i}": net, f"o_{o}": out}, **extra)
        return out
    return buf
