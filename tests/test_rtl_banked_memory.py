"""rtl/banked_memory.BankedMemory against a Python list: flat writes, the 1-cycle read port and the pipelined read."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, signed
from amaranth.sim import Simulator

from ttzo.rtl.banked_memory import BankedMemory


@pytest.mark.parametrize("depth,bank_depth,write_group", [(50, 16, 0), (64, 16, 0), (7, 16, 0), (33, 1, 0),
                                                         (50, 16, 2), (33, 1, 8), (7, 16, 1), (64, 8, 3)])
def test_reads_follow_writes_across_banks(depth: int, bank_depth: int, write_group: int) -> None:
    """write_group > 0: each write lands one cycle later (registered per group of banks)."""
    rng = np.random.default_rng(depth * 100 + bank_depth)
    init = [int(v) for v in rng.integers(-256, 256, size=depth)]
    mem = BankedMemory(shape=signed(9), depth=depth, bank_depth=bank_depth, init=init, write_group=write_group)
    assert mem.n_banks == -(-depth // mem.bank_depth)
    wr, rd, prd = mem.write_port(), mem.read_port(transparent_for=()), mem.pipelined_read_port()
    m = Module()
    m.submodules.mem = mem
    model = list(init)
    ops = [(int(rng.integers(0, 2)), int(rng.integers(0, depth)), int(rng.integers(-256, 256)),
            int(rng.integers(0, depth)), int(rng.integers(0, depth)), int(rng.integers(0, 4) != 0))
           for _ in range(300)]
    seen = {"rd": 0, "prd": 0}

    async def bench(ctx):
        piped: list[int] = []      # expected pipelined data, LATENCY cycles behind
        last_rd = None
        pending = None             # a registered write, landing at the next tick
        for we, wa, wd, ra, pa, ren in ops:
            ctx.set(wr.en, we)
            ctx.set(wr.addr, wa)
            ctx.set(wr.data, wd)
            ctx.set(rd.addr, ra)
            ctx.set(rd.en, ren)
            ctx.set(prd.addr, pa)
            piped.append(model[pa])          # read before this cycle's write lands (non-transparent)
            want_rd = model[ra] if ren else last_rd
            await ctx.tick()
            if write_group:
                if pending:
                    model[pending[0]] = pending[1]
                pending = (wa, wd) if we else None
            elif we:
                model[wa] = wd
            if want_rd is not None:
                assert ctx.get(rd.data) == want_rd
                seen["rd"] += 1
            last_rd = want_rd
            if len(piped) > BankedMemory.LATENCY - 1:
                want = piped[-BankedMemory.LATENCY]
                # a write between the read and the data's arrival does not change it (block RAM timing)
                assert ctx.get(prd.data) == want
                seen["prd"] += 1

    sim = Simulator(m)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    assert seen["rd"] > 200 and seen["prd"] > 200


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="power of two"):
        BankedMemory(shape=9, depth=10, bank_depth=6)
    with pytest.raises(ValueError, match="init has 11 words"):
        BankedMemory(shape=9, depth=10, init=range(11))
    with pytest.raises(ValueError, match="write_group must be >= 0"):
        BankedMemory(shape=9, depth=10, write_group=-1)
