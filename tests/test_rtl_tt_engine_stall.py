"""TT engine: the MAC pipeline's stall and load registers equal the conditions they replace, every cycle.

`stall` (and its per-lane-group copies) is a register computed a cycle ahead from the next values of
the pipeline's and the hold register's state (rtl/tt_engine.py, timing: it gates ~1,000 clock
enables).  The condition it stands for, handoff & ~hold_free (a finished group meets a busy hold
register), is still built from the current registers, for this check only
(`TTEngine._stall_check`: (register, condition) pairs); likewise the hold register's enable `load`
= handoff & hold_free, and the per-lane-group copies of tok_q.first (`TTEngine._copy_check`).  Here
a monitor samples both sides of every pair before every clock edge of Amaranth-simulator runs:
lanes 4-16, drains 1-2, throttled outputs, a net with short inner products, so stalls occur
(drain-bound groups) and are released in every phase of the drain.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.rtl.descriptors import compile_network
from ttzo.sim.tt_cosim import seeded_params

from test_rtl_tt_engine import SMALL, _amaranth_run   # tests/ is on sys.path (pytest rootdir conftest)
from ttzo.golden.network import LayerSpec, TTNet
from ttzo.golden.tt import TTShape


def _net() -> TTNet:
    """Steps with short inner products (K = 2) against up to 16 rows (two row groups at 8 lanes):
    drain-bound groups stall the MAC pipeline with one drain and with two."""
    return TTNet((LayerSpec(TTShape.uniform((2, 2, 2), (4, 4, 4), 1), "relu"),
                  LayerSpec(TTShape.uniform((8, 8), (2, 3), 2), "identity")))


@pytest.mark.parametrize("lanes,drains,throttle", [(4, 1, True), (8, 1, False), (8, 2, True), (8, 2, False),
                                                   (16, 1, True)])
def test_stall_and_load_registers_equal_their_conditions(lanes: int, drains: int, throttle: bool) -> None:
    params = replace(SMALL, lanes=lanes, drains=drains)
    net = _net()
    cfg = replace(DEFAULT_CONFIG, sine_bits=8)
    codes = seeded_params(net, cfg, seed=lanes + 20, bias_std=0.3)
    x = np.random.default_rng(lanes + 20).integers(0, 256, size=(3, net.layers[0].shape.in_features))
    prog = compile_network(net, codes, cfg, params)
    seen = {"cycles": 0, "stalled": 0, "loads": 0, "bad": []}

    def attach(sim, dut) -> None:
        pairs = dut._stall_check + dut._copy_check
        n_copies = -(-lanes // dut.LANE_GROUP)
        assert len(dut._stall_check) == 1 + n_copies and len(dut._copy_check) == 1 + 2 * n_copies
        exprs = [e for pair in pairs for e in pair]

        async def monitor(ctx):
            async for _clk, _rst, *v in ctx.tick().sample(*exprs):   # values just before each edge
                seen["cycles"] += 1
                seen["stalled"] += v[1]
                seen["loads"] += v[2 * len(dut._stall_check) + 1]
                if any(v[2 * i] != v[2 * i + 1] for i in range(len(pairs))) and len(seen["bad"]) < 5:
                    seen["bad"].append((seen["cycles"], v))

        sim.add_process(monitor)

    got, _cycles = _amaranth_run(params, prog, x, throttle, attach=attach)
    assert np.array_equal(got, net.forward_fixed(codes, x, cfg).reshape(-1))
    assert seen["stalled"] > 0 and seen["loads"] > 0, f"no stall or no load: the check would be vacuous {seen}"
    assert not seen["bad"], f"a register != the condition it stands for (cycle, samples): {seen['bad']}"
