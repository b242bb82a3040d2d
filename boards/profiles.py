"""Board profiles: which amaranth-boards platform, at what clock, with how many MAC lanes and how much memory.

A profile is the one place that says how the design is sized for a board: the target clock of the
`sync` domain (reached through the board's PLL), the UART baud rate, the number of MAC lanes P
(bounded by the hard multipliers) and the memory maxima the engine is elaborated with (sized by
`boards.sizing` so the largest MNIST TT network that fits is trainable on chip).

The platforms come from the `amaranth-boards` package (a real release, 0.0.21, that provides
`ICEBreakerPlatform`, `ULX3S_85F_Platform` and `ArtyA7_35Platform` and works with Amaranth 0.5).

Sizing choices (docs/boards.md): iCEBreaker P = 8 (all SB_MAC16s), memories for rank 8, the largest
MNIST rank that fits the UP5K; ULX3S P = 32, rank 12 (an epoch is UART-bound beyond ~32 lanes,
and rank 12 keeps half the DP16KDs free; `boards.sizing.largest_rank` reports 31 as the limit);
Arty P = 64, rank 6 (parameter banks in LUT RAM).
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Callable

from amaranth.build import Platform


def _icebreaker() -> Platform:
    from amaranth_boards.icebreaker import ICEBreakerPlatform
    return ICEBreakerPlatform()


def _ulx3s_85f() -> Platform:
    from amaranth_boards.ulx3s import ULX3S_85F_Platform
    return ULX3S_85F_Platform()


def _arty_a7_35() -> Platform:
    from amaranth_boards.arty_a7 import ArtyA7_35Platform
    return ArtyA7_35Platform()


@dataclass(frozen=True)
class Capacity:
    """Hard resources of the FPGA (from the vendor data sheets; nextpnr reports the same numbers)."""

    logic: int          # iCE40 logic cells / ECP5 LUT4s / 7-series LUT6s
    ff: int
    dsp: int            # SB_MAC16 / MULT18X18D / DSP48E1
    bram: int           # 4 Kbit EBR / 18 Kbit DP16KD / 36 Kbit RAMB36E1
    bram_bits: int      # bits per block RAM
    spram: int = 0      # iCE40UP 256 Kbit SB_SPRAM256KA
    spram_bits: int = 256 * 1024
    logic_name: str = "LUT"


@dataclass(frozen=True)
class BoardProfile:
    """Everything `ttzo build` needs to know about one board."""

    name: str
    title: str
    family: str                       # "ice40", "ecp5", "xc7"
    device: str
    platform_factory: Callable[[], Platform] = field(repr=False, compare=False)
    osc_hz: float                     # board oscillator (the platform's default clock)
    clock_hz: float                   # target frequency of the `sync` domain (PLL output)
    goal_hz: float                    # the goal for this device (docs/boards.md)
    uart_baud: int
    lanes: int                        # MAC lanes P (default; `--lanes` overrides)
    capacity: Capacity
    bitstream: bool                   # can we place, route and pack with open tools?
    rank: int = 6                     # MNIST TT rank the memories are sized for by default (--rank)
    batch: int = 64                   # samples held on chip per training step
    queries: int = 10                 # signRGE perturbations N (2N + 1 forward passes per sample)
    default_core: str = "full"        # boards.top core built without --core (docs/boards.md)
    #: nextpnr seeds `ttzo build` tries in order until router2 converges (boards/router_watch.py; --seed)
    pnr_seeds: tuple[int, ...] = (1,)
    #: batch memories of the full design: 2 = double-buffered (the host uploads the next batch while a step
    #: runs; rtl/board_top BoardParams.batch_banks), 1 where the second bank does not fit the block RAM
    batch_banks: int = 2

    def platform(self) -> Platform:
        return self.platform_factory()

    @property
    def max_lanes(self) -> int:
        """One hard multiplier per lane (16x16 fits one SB_MAC16 / MULT18X18D / DSP48E1)."""
        return self.capacity.dsp

    @property
    def uart_divisor(self) -> int:
        return round(self.clock_hz / self.uart_baud)

    @property
    def uart_baud_error(self) -> float:
        """Relative error of the achieved baud rate (clock / divisor) against the nominal one."""
        return self.clock_hz / self.uart_divisor / self.uart_baud - 1.0

    def with_clock(self, mhz: float | None) -> "BoardProfile":
        """This profile with the `sync` clock at `mhz` (``ttzo build --clock``), as the PLL really makes it.

        The PLL search of boards/clocking.py picks the closest setting; the profile then holds that
        frequency (so the UART divisor and the timing target are the real ones).  Refused: boards
        without a PLL in our clocking (their clock is the oscillator's), frequencies the PLL misses by
        more than 1 %, and UART baud errors above 2 % at the new clock.
        """
        if mhz is None:
            return self
        from .clocking import ecp5_pll, ice40_pll    # clocking imports this module
        want = float(mhz) * 1e6
        if not want > 0:
            raise ValueError(f"--clock {mhz}: the clock must be a positive frequency in MHz")
        if self.family == "ice40":
            got = ice40_pll(self.osc_hz, want).fout_hz
        elif self.family == "ecp5":
            got = ecp5_pll(self.osc_hz, want).fout_hz
        elif abs(want - self.osc_hz) <= 0.01 * self.osc_hz:
            got = self.osc_hz
        else:
            raise ValueError(f"--clock {mhz:g}: board {self.name} runs at its {self.osc_hz / 1e6:g} MHz oscillator "
                             f"(no PLL in ttzo's clocking for {self.family})")
        if abs(got - want) > 0.01 * want:
            raise ValueError(f"--clock {mhz:g}: the {self.family} PLL of board {self.name} gets no closer than "
                             f"{got / 1e6:.4g} MHz from its {self.osc_hz / 1e6:g} MHz oscillator")
        clocked = replace(self, clock_hz=got)
        if clocked.uart_divisor < 4 or abs(clocked.uart_baud_error) > 0.02:
            raise ValueError(f"--clock {mhz:g}: the UART at {self.uart_baud} baud needs a divisor >= 4 with <= 2 % "
                             f"error; at {got / 1e6:.4g} MHz it would be {clocked.uart_divisor} "
                             f"({clocked.uart_baud_error:+.1%})")
        return clocked

    def with_lanes(self, lanes: int | None) -> "BoardProfile":
        if lanes is None:
            return self
        if not 1 <= lanes <= self.max_lanes:
            raise ValueError(f"--lanes {lanes}: board {self.name} has {self.max_lanes} hard multipliers, "
                             f"so P must be in 1..{self.max_lanes}")
        return replace(self, lanes=lanes)


PROFILES: dict[str, BoardProfile] = {
    p.name: p for p in (
        BoardProfile(
            name="icebreaker", title="1BitSquared iCEBreaker", family="ice40", device="iCE40UP5K-SG48",
            platform_factory=_icebreaker, osc_hz=12e6, clock_hz=24e6, goal_hz=20e6, uart_baud=3_000_000,
            lanes=8, rank=6, default_core="serial",
            # the serial MNIST r = 6 training design (docs/rtl-serial.md) fills 96 % of the UP5K and routes
            # at ~25 MHz: 24 MHz (PLL 12 -> 24 MHz, UART divisor 8: exactly 3 Mbaud) is its clock
            # (docs/boards.md, "Tenth session"); `--core stand-in` (8 lanes) still builds at 30 MHz
            # (`--clock 30`; seed 2 routed it at 30.96 MHz in the ninth session)
            pnr_seeds=(1, 2, 5),
            capacity=Capacity(logic=5280, ff=5280, dsp=8, bram=30, bram_bits=4096, spram=4, logic_name="LC"),
            bitstream=True),
        BoardProfile(
            name="ulx3s-85f", title="Radiona ULX3S (LFE5U-85F)", family="ecp5", device="LFE5U-85F-6BG381C",
            platform_factory=_ulx3s_85f, osc_hz=25e6, clock_hz=75e6, goal_hz=100e6, uart_baud=3_000_000,
            lanes=32, rank=6,
            # 75 MHz (PLL 25 -> 75 MHz, UART divisor 25: exactly 3 Mbaud): seed 5 routed this netlist
            # at 78.56 MHz with timing met at that target in the ninth session (docs/boards.md, "Ninth
            # session"); nextpnr is deterministic for a netlist and seed.
            # The rest are fallbacks for a changed netlist, each stopped by the router watchdog if it
            # stalls (seed 4 routed the seventh session's netlist at 52.1 MHz)
            pnr_seeds=(5, 4, 1, 2, 3),
            capacity=Capacity(logic=83640, ff=83640, dsp=156, bram=208, bram_bits=18432, logic_name="LUT4"),
            bitstream=True),
        BoardProfile(
            name="arty-a7-35", title="Digilent Arty A7-35T", family="xc7", device="xc7a35ticsg324-1L",
            platform_factory=_arty_a7_35, osc_hz=100e6, clock_hz=100e6, goal_hz=100e6, uart_baud=3_000_000,
            lanes=64, rank=6,
            # one batch bank: the double-buffered batch alone is 24.5 of the 50 RAMB36 and the full design
            # then needs 54.5 (Yosys estimate, docs/boards.md "Ninth session")
            batch_banks=1,
            capacity=Capacity(logic=20800, ff=41600, dsp=90, bram=50, bram_bits=36864, logic_name="LUT6"),
            bitstream=False),
    )
}

ALIASES = {"ulx3s": "ulx3s-85f", "arty": "arty-a7-35", "arty-a7": "arty-a7-35", "arty-a7-35t": "arty-a7-35"}


def get_profile(name: str) -> BoardProfile:
    """The profile called `name` (case-insensitive; a few aliases), or a ValueError listing the boards."""
    key = ALIASES.get(name.lower(), name.lower())
    if key not in PROFILES:
        raise ValueError(f"unknown board {name!r}; known boards: {', '.join(PROFILES)}")
    return PROFILES[key]
