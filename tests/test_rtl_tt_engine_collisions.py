"""TT engine memories: no read whose data is used hits an address written in the same cycle.

The engine's memories are lib.memory ones with non-transparent reads (old data on a read/write
collision), which Yosys emulates on the ECP5 block RAMs (a delayed write, an address compare and a
2:1 multiplexer per bit: the full ECP5 design's critical path, issue #9, docs/boards.md).  Dropping
that emulation is only correct if the design never uses the data of such a read; the simulator
keeps old-data semantics, so bit-exact runs cannot show it.  Here a monitor process samples, before
every clock edge of the Amaranth-simulator runs of the engine, each memory's write ports (en, addr)
and read ports (en, addr, and the engine's own condition for the read's data being used,
`TTEngine._mem_read_used`) and counts:
  raw   cycles where a write and an enabled read hit the same address (many: the read ports run
        free, e.g. at address 0 while nothing is issued);
  used  those where that read's data is used: must be 0 for every memory.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace

import numpy as np
import pytest

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import LayerSpec, TTNet
from ttzo.golden.tt import TTShape
from ttzo.rtl.descriptors import EngineParams, compile_network, emulate
from ttzo.sim.tt_cosim import seeded_params

from test_rtl_tt_engine import SMALL, _amaranth_run   # tests/ is on sys.path (pytest rootdir conftest)
MEMORIES = ("steps_mem", "cores", "biases", "sine", "buf_in", "buf_a", "buf_b", "buf_out")


@dataclass
class Collisions:
    raw: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MEMORIES, 0))
    used: dict[str, list] = field(default_factory=lambda: {n: [] for n in MEMORIES})
    used_reads: dict[str, int] = field(default_factory=lambda: dict.fromkeys(MEMORIES, 0))
    used_while_idle: int = 0
    cycles: int = 0


def _net() -> TTNet:
    return TTNet((LayerSpec(TTShape.uniform((3, 4), (4, 6), 3), "relu"),
                  LayerSpec(TTShape.uniform((2, 12), (2, 3), 2), "sine", order=(1, 0))))


def _run_monitored(params: EngineParams, prog, x: np.ndarray, throttle: bool) -> tuple[np.ndarray, Collisions]:
    """tests/test_rtl_tt_engine.py's _amaranth_run plus the collision monitor."""
    from amaranth.hdl import Value

    col = Collisions()

    def attach(sim, dut) -> None:
        # the Simulator has elaborated the engine: dut._mem_ports and dut._mem_read_used are filled
        assert set(dut._mem_ports) == set(MEMORIES) == set(dut._mem_read_used)
        exprs: list = [dut.busy]
        layout = {}   # memory -> (offset into the samples, n writes, n reads)
        for n in MEMORIES:
            ws, rs = dut._mem_ports[n]
            us = dut._mem_read_used[n]
            assert len(us) == len(rs), n
            layout[n] = (len(exprs), len(ws), len(rs))
            exprs += [e for w in ws for e in (Value.cast(w.en).any(), w.addr)]
            exprs += [e for r, u in zip(rs, us) for e in (r.en, r.en & u, r.addr)]

        async def monitor(ctx):
            async for _clk, _rst, *v in ctx.tick().sample(*exprs):   # values just before each edge
                col.cycles += 1
                busy = v[0]
                for n, (o, nw, nr) in layout.items():
                    writes = [v[o + 2 * i + 1] for i in range(nw) if v[o + 2 * i]]
                    for i in range(nr):
                        en, used, addr = v[o + 2 * nw + 3 * i:o + 2 * nw + 3 * i + 3]
                        col.used_reads[n] += used
                        col.used_while_idle += used and not busy
                        if en and addr in writes:
                            col.raw[n] += 1
                            if used:
                                col.used[n].append((col.cycles, i, addr))

        sim.add_process(monitor)

    outs, _cycles = _amaranth_run(params, prog, x, throttle, attach=attach)
    return outs, col


def _check(col: Collisions) -> None:
    # the monitor sees the free-running reads meet the writes (so 0 below is not for want of overlaps) ...
    assert sum(col.raw.values()) > 0
    # ... every memory's use condition fires (it is not vacuously false), and only while busy
    # (configuration writes, the host's or the ZO trainer's load pass, happen while the engine is idle)
    assert all(col.used_reads[n] > 0 for n in MEMORIES), col.used_reads
    assert col.used_while_idle == 0
    bad = {n: c[:5] for n, c in col.used.items() if c}
    assert not bad, f"a used read hits an address written in the same cycle (cycle, port, addr): {bad}"


@pytest.mark.parametrize("lanes,drains,throttle", [(1, 1, False), (2, 1, True), (4, 1, False), (4, 2, True),
                                                   (8, 2, False), (16, 1, True)])   # 16, 1: the boards' engine
def test_engine_no_used_read_write_collision_small_net(lanes: int, drains: int, throttle: bool) -> None:
    """test_engine_amaranth_small_net_bit_exact's runs (input loads overlap compute, outputs stream
    out under back-pressure), monitored."""
    params = replace(SMALL, lanes=lanes, drains=drains)
    net = _net()
    cfg = replace(DEFAULT_CONFIG, sine_bits=8)
    codes = seeded_params(net, cfg, seed=lanes, bias_std=0.3)
    x = np.random.default_rng(lanes).integers(0, 256, size=(3, 12))
    prog = compile_network(net, codes, cfg, params)
    got, col = _run_monitored(params, prog, x, throttle)
    assert np.array_equal(got, net.forward_fixed(codes, x, cfg).reshape(-1))
    _check(col)


@pytest.mark.parametrize("lanes,drains,throttle", [(2, 1, False), (4, 2, True)])
def test_engine_no_used_read_write_collision_sine_saturation(lanes: int, drains: int, throttle: bool) -> None:
    """test_engine_amaranth_sine_saturation_matches_emulation's runs (6 samples), monitored."""
    params = replace(SMALL, lanes=lanes, drains=drains)
    net = _net()
    cfg = replace(DEFAULT_CONFIG, sine_bits=8)
    codes = seeded_params(net, cfg, seed=lanes + 10, bias_std=0.3)
    x = np.random.default_rng(lanes + 10).integers(0, 256, size=(6, 12))
    prog = compile_network(net, codes, cfg, params)
    prog = replace(prog, sine=np.clip(prog.sine * 200, -(1 << (params.data_bits - 1)),
                                      (1 << (params.data_bits - 1)) - 1))
    got, col = _run_monitored(params, prog, x, throttle)
    assert np.array_equal(got, emulate(prog, x).reshape(-1))
    _check(col)


@pytest.mark.parametrize("params", [EngineParams(lanes=4, drains=2), EngineParams(lanes=2, sine_interp_bits=4)],
                         ids=["p4d2", "p2-interp"])
def test_monitor_covers_every_memory(params: EngineParams) -> None:
    """_mem_ports lists every memory of the RTLIL and every read port (per drain, interpolation)."""
    from amaranth.back import rtlil

    from ttzo.rtl.tt_engine import TTEngine
    dut = TTEngine(params)
    text = rtlil.convert(dut, name="tt_engine")
    # each `memory` statement with the attribute lines just above it
    mems = re.findall(r"((?:  attribute \\\S+ [^\n]*\n)*)  memory [^\n]*\\(\w+)\n", text)
    names = {n for _, n in mems}
    assert len(mems) == len(MEMORIES) and names == set(MEMORIES) == set(dut._mem_ports)
    n_reads = {n: len(rs) for n, (_, rs) in dut._mem_ports.items()}
    assert n_reads["sine"] == params.drains * (2 if params.sine_interp_bits else 1)
    assert n_reads["biases"] == params.drains and len(dut._mem_ports["buf_a"][0]) == params.drains
