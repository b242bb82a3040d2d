"""Per-board top level: PLL clock + UART pins around a core taken from a registry.

A *core* is a `wiring.Component` with two byte streams, `rx: In(stream.Signature(8))` (bytes
from the host) and `tx: Out(stream.Signature(8))` (bytes to the host); the board top adds the
clock domain (boards.clocking), the UART (boards.uart_shell) and the pins, so any core builds on
any board with three I/Os (clock, rx, tx).  A core that drives the UART pins itself (the link
top of rtl/link_top.py) registers with `pins=("rx", "tx")`, the names of its 1-bit `In`/`Out`
pin members; it then gets the pins and the clock domain only.

Registered cores:
  full       the real training design: rtl/board_top.BoardTop (command processor + ZO trainer +
             TT engine + UART) sized for MNIST rank r by boards.design (default where it fits);
  serial     the serial training design: rtl/serial_top.SerialTop (the same protocol, one MAC, signRGE
             only; its memories in SPRAM on the UP5K, docs/rtl-serial.md);
  stand-in   boards.datapath.RepresentativeDatapath sized by boards.sizing (a resource/timing
             proxy; the default on boards the full design does not fit, see docs/boards.md);
  link       rtl/link_top.LinkTop with its UART PHY (command processor, region memories and the
             stub engine today; the integrated engines once the lead swaps them in);
  engine     a byte-stream core `board_core(lanes, plan, cfg)` from rtl/tt_network.py, once it exists.
To add one: `register_core("name", factory, pins=None, help="...")` where
`factory(profile, plan, cfg) -> Component`.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable

from amaranth.hdl import ClockDomain, Elaboratable, Module
from amaranth.lib import io, wiring

from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.network import mnist_tt

from .clocking import BoardClock
from .datapath import RepresentativeDatapath
from .profiles import BoardProfile
from .sizing import MemoryPlan, largest_rank, map_plan, memory_plan
from .uart_shell import UartShell

CoreFactory = Callable[[BoardProfile, MemoryPlan, FixedConfig], wiring.Component]


@dataclass(frozen=True)
class CoreEntry:
    name: str
    factory: CoreFactory
    pins: tuple[str, str] | None
    help: str


CORES: dict[str, CoreEntry] = {}


def register_core(name: str, factory: CoreFactory, *, pins: tuple[str, str] | None = None, help: str = "") -> None:
    CORES[name] = CoreEntry(name, factory, pins, help)


def get_core(name: str) -> CoreEntry:
    if name not in CORES:
        raise ValueError(f"unknown core {name!r}; registered cores: {', '.join(CORES)}")
    return CORES[name]


def _stand_in(profile: BoardProfile, plan: MemoryPlan, cfg: FixedConfig) -> wiring.Component:
    return RepresentativeDatapath(plan, cfg, use_spram=profile.capacity.spram > 0)


def _optional(module: str, attr: str, what: str) -> Callable:
    """Import rtl.<module>.<attr> on use, with a clear error while that module does not exist yet."""
    def load():
        try:
            return getattr(importlib.import_module(f"ttzo.rtl.{module}"), attr)
        except (ImportError, AttributeError) as exc:
            raise ValueError(f"core {what!r} needs ttzo.rtl.{module}.{attr}, which is not available yet "
                             f"({exc}); build with --core stand-in") from exc
    return load


def _engine_factory(profile: BoardProfile, plan: MemoryPlan, cfg: FixedConfig) -> wiring.Component:
    # Expected: a byte-stream component from rtl/tt_network.py sized by lanes and memory maxima.
    build = _optional("tt_network", "board_core", "engine")()
    return build(lanes=plan.lanes, plan=plan, cfg=cfg)


def _link_factory(profile: BoardProfile, plan: MemoryPlan, cfg: FixedConfig) -> wiring.Component:
    link_top = _optional("link_top", "LinkTop", "link")()
    identify = _optional("link_top", "small_identify", "link")()
    return link_top(identify(clock_hz=int(profile.clock_hz), uart_divisor=profile.uart_divisor), phy="uart")


def _full_factory(profile: BoardProfile, plan: MemoryPlan, cfg: FixedConfig) -> wiring.Component:
    from .design import full_core
    return full_core(profile, plan_rank(plan), cfg)


def _serial_factory(profile: BoardProfile, plan: MemoryPlan, cfg: FixedConfig) -> wiring.Component:
    from .design import serial_core
    return serial_core(profile, plan_rank(plan), cfg)


def plan_rank(plan: MemoryPlan) -> int:
    """The MNIST TT rank a plan was made for (its net is golden's ``mnist-tt-rR``)."""
    head, _, r = plan.net_name.rpartition("-r")
    if head != "mnist-tt" or not r.isdigit():
        raise ValueError(f"the full core is sized for MNIST TT networks, not {plan.net_name!r}")
    return int(r)


register_core("full", _full_factory, pins=("rx", "tx"),
              help="the training design: rtl/board_top.BoardTop (cmdproc + ZO trainer + TT engine, UART)")
register_core("serial", _serial_factory, pins=("rx", "tx"),
              help="the serial training design: rtl/serial_top.SerialTop (cmdproc + one-MAC signRGE trainer, UART; "
                   "fits the UP5K)")
register_core("stand-in", _stand_in,
              help="P MAC lanes + the memory plan's RAMs behind a byte-command shell (resource/timing proxy)")
register_core("engine", _engine_factory, help="TT network engine (rtl/tt_network.py: board_core)")
register_core("link", _link_factory, pins=("rx", "tx"),
              help="UART link + command processor + region memories (+ engines) of rtl/link_top.py")


def design_rank(profile: BoardProfile, rank: int | None = None) -> int:
    """The MNIST TT rank the memories are sized for: `rank`, else the profile's; refused if it cannot fit."""
    r = profile.rank if rank is None else rank
    if r < 1:
        raise ValueError(f"--rank {r}: must be >= 1")
    if not map_plan(memory_plan(mnist_tt(r), profile.lanes, profile.batch), profile).fits:
        raise ValueError(f"board {profile.name}: MNIST rank {r} does not fit with P={profile.lanes} "
                         f"(largest that fits: {largest_rank(profile)})")
    return r


class BoardTop(Elaboratable):
    """Clock, UART pins and one registered core."""

    def __init__(self, profile: BoardProfile, core: str | None = None, rank: int | None = None,
                 cfg: FixedConfig = DEFAULT_CONFIG) -> None:
        self.profile, self.entry, self.cfg = profile, get_core(core or profile.default_core), cfg
        self.rank = design_rank(profile, rank)
        self.plan = memory_plan(mnist_tt(self.rank), profile.lanes, profile.batch, cfg)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.clock = clock = BoardClock(self.profile)
        m.domains.sync = cd_sync = ClockDomain("sync")
        m.d.comb += [cd_sync.clk.eq(clock.clk), cd_sync.rst.eq(clock.rst)]
        uart = platform.request("uart", 0, dir="-")
        m.submodules.uart_rx = rx_buf = io.Buffer("i", uart.rx)
        m.submodules.uart_tx = tx_buf = io.Buffer("o", uart.tx)
        m.submodules.core = core = self.entry.factory(self.profile, self.plan, self.cfg)
        if self.entry.pins:
            rx, tx = (getattr(core, n) for n in self.entry.pins)
            m.d.comb += [rx.eq(rx_buf.i), tx_buf.o.eq(tx)]
        else:
            m.submodules.uart = shell = UartShell(self.profile.uart_divisor)
            m.d.comb += [shell.rx_pin.eq(rx_buf.i), tx_buf.o.eq(shell.tx_pin)]
            wiring.connect(m, shell.rx, core.rx)
            wiring.connect(m, core.tx, shell.tx)
        return m
