"""cocotb bench of the PINN loss block (rtl/pinn_loss.py around the TT engine): load, start, await done, read.

Reads the cases from the .npz named by $TTZO_TB_DATA (written by sim/pinn_cosim.py):
  n_cases; case{i}_writes (n, 2) cfg-bus writes (engine program, node table, points, registers);
  case{i}_points, case{i}_stride (result words per point).
Writes $TTZO_TB_RESULT (.npz): case{i}_results (points * stride,), case{i}_loss_sum, case{i}_cycles.
The clock runs inside the simulator while the block works: the bench waits for the fall of `busy`.
"""
from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, Timer, with_timeout

from .tb_tt_engine import _bus
from .tb_zo_trainer import _kick_comb_blocks


async def _reset(dut) -> None:
    if cocotb.SIM_NAME.lower().startswith("icarus"):
        _kick_comb_blocks(dut)
        await Timer(1, "ns")
    dut.rst.value = 1
    dut.cfg_en.value = 0
    dut.start.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


@cocotb.test()
async def run_cases(dut):
    data = np.load(os.environ["TTZO_TB_DATA"])
    max_cycles = int(os.environ.get("TTZO_TB_MAX_CYCLES", 10 ** 10))
    out: dict[str, np.ndarray] = {}
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await _reset(dut)
    for c in range(int(data["n_cases"])):
        await _bus(dut, data[f"case{c}_writes"])
        await RisingEdge(dut.clk)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await RisingEdge(dut.clk)
        if int(dut.busy.value):
            try:
                await with_timeout(FallingEdge(dut.busy), max_cycles * 10, "ns")
            except SimTimeoutError:
                raise AssertionError(f"case {c}: still busy after {max_cycles} cycles; "
                                     f"points_done={int(dut.points_done.value)}") from None
        await RisingEdge(dut.clk)
        n = int(data[f"case{c}_points"]) * int(data[f"case{c}_stride"])
        res = []
        for a in range(n):
            dut.rd_addr.value = a
            await RisingEdge(dut.clk)
            await FallingEdge(dut.clk)
            v = dut.rd_data.value
            res.append(v.to_signed() if v.is_resolvable else -(1 << 62))
        out[f"case{c}_results"] = np.array(res, dtype=np.int64)
        out[f"case{c}_loss_sum"] = np.array(dut.loss_sum.value.to_signed())
        out[f"case{c}_cycles"] = np.array(int(dut.cycles.value))
        dut._log.info(f"case {c}: {int(data[f'case{c}_points'])} points, {int(dut.cycles.value)} cycles")
    np.savez(os.environ["TTZO_TB_RESULT"], **out)
