"""rtl/board_top.registered_runnable (the controller's cfg_ok, pipelined for timing) in the Amaranth
simulator: one register file per cycle in, and exactly RUNNABLE_LATENCY cycles later the answer of the
run check's Python statement (sim/board_fuzz.config_problems) for that file."""
from __future__ import annotations

import random

import pytest
from amaranth.hdl import Module, Signal
from amaranth.lib import data
from amaranth.sim import Simulator

from ttzo.rtl import board_top as T
from ttzo.sim.board_fuzz import config_problems


def _good(bp: T.BoardParams) -> list[int]:
    """The smallest runnable register file, from the register map's ranges (not from the gateware)."""
    regs = [0] * bp.n_config
    regs[T.CFG_N_SAMPLES] = regs[T.CFG_N_SEGMENTS] = regs[T.CFG_N_QUERIES] = 1
    if bp.pinn:
        for k in range(len(T.PINN_CFG_NAMES)):
            regs[bp.pinn_config0 + k] = 1
    return regs


def _files(bp: T.BoardParams, n: int, seed: int) -> list[list[int]]:
    """The good file with up to three registers replaced by edge values or random words (half stay runnable)."""
    rng, good = random.Random(seed), _good(bp)
    edges = [0, 1, 2, 63, 64, 4096, 4097, 0x7FFF, 0x8000, 0xFFFF8000, 0xFFFF7FFF, 0xFFFFFFFF, 0x80000000,
             bp.n_max, bp.n_max + 1, bp.max_samples, bp.max_samples + 1, bp.max_segments, bp.max_segments + 1,
             bp.net.n_params - 1, bp.net.n_params]
    out = []
    for _ in range(n):
        regs = good[:]
        if rng.random() < 0.5:               # a runnable variant: more segments, increasing starts
            n_seg = rng.randint(1, bp.max_segments)
            starts = sorted(rng.sample(range(1, bp.net.n_params), n_seg - 1))
            regs[T.CFG_N_SEGMENTS] = n_seg
            for k, s in enumerate([0] + starts):
                regs[T.CFG_SEGMENTS + k] = s | rng.getrandbits(1) << 31
        for _ in range(rng.randint(0, 3)):
            k = rng.randrange(len(regs))
            regs[k] = rng.choice(edges) if rng.random() < 0.7 else rng.getrandbits(32)
        out.append(regs)
    return out


def _stream(bp: T.BoardParams, files: list[list[int]]) -> list[bool]:
    """registered_runnable's output in each cycle while `files` are applied one per cycle (then held)."""
    c = Signal(data.ArrayLayout(32, bp.n_config))
    m = Module()
    ok = T.registered_runnable(m, c, bp)
    out: list[bool] = []

    async def bench(ctx):
        for regs in files + [files[-1]] * T.RUNNABLE_LATENCY:
            for k, v in enumerate(regs):
                ctx.set(c[k], v)
            out.append(bool(ctx.get(ok)))
            await ctx.tick()

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return out


@pytest.mark.parametrize("profile", ["small", "hjb-small"])
def test_registered_run_check_answers_each_file_after_its_latency(profile):
    bp = T.small_profile() if profile == "small" else T.hjb_small_profile()
    assert config_problems(bp, _good(bp)) == []
    files = _files(bp, 300, seed=len(profile))
    want = [config_problems(bp, regs) == [] for regs in files]
    assert 0.2 < sum(want) / len(want) < 0.8               # both answers are exercised
    got = _stream(bp, files)
    assert got[T.RUNNABLE_LATENCY:] == want
    assert got[:T.RUNNABLE_LATENCY] == [False] * T.RUNNABLE_LATENCY    # reset value: nothing runs yet
