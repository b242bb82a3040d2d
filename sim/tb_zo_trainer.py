"""cocotb bench of the ZO trainer (rtl/zo_trainer.py around an engine): load, start, await done, read back.

Reads the cases from the .npz named by $TTZO_TB_DATA (written by sim/zo_cosim.py):
  n_cases; case{i}_cfg (n, 2) engine program writes (address, data);
  case{i}_host (n, 3) trainer memory writes (target, address, data), skipped when case{i}_same_host;
  case{i}_segs (S, 2) segment table (flat start, is_bias); case{i}_reg_names / case{i}_reg_values;
  case{i}_n_params.
Writes $TTZO_TB_RESULT (.npz): case{i}_theta, case{i}_momentum, case{i}_log_loss, case{i}_log_correct,
case{i}_cycles, case{i}_forwards, case{i}_steps.  The clock runs free inside the simulator while the
trainer works: the bench only waits for `done` (never steps it edge by edge from Python).
"""
from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, Timer, with_timeout

READ_PARAMS, READ_MOMENTUM, READ_LOG_LOSS, READ_LOG_CORRECT = 0, 1, 2, 3


def _kick_comb_blocks(handle, depth: int = 0) -> int:
    """Toggle Yosys' `$auto$verilog_backend...dump_module$1` in every module instance.

    Every `always @*` block Amaranth/Yosys emits starts with `if (<that reg>) begin end` so that
    it runs at time 0; Icarus 11 does not run them for the declaration initialiser, so their
    outputs stay X until some input changes (e.g. a stream `ready` that depends only on an FSM
    state that reset does not change).  Changing the register once evaluates every block.
    Verilator needs nothing (two-state, evaluates everything at start).
    """
    n = 0
    for child in handle:
        name = child._name
        if "dump_module" in name:
            child.value = 1
            n += 1
        elif depth < 8 and hasattr(child, "__iter__") and not hasattr(child, "value"):
            n += _kick_comb_blocks(child, depth + 1)
    return n


async def _reset(dut) -> None:
    if cocotb.SIM_NAME.lower().startswith("icarus"):
        kicked = _kick_comb_blocks(dut)
        await Timer(1, "ns")
        dut._log.info("evaluated the combinational blocks of %d module instances", kicked)
    dut.rst.value = 1
    for name in ("cfg_en", "host_we", "seg_we", "start"):
        getattr(dut, name).value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def _writes(dut, rows, fields) -> None:
    en = fields[0]
    getattr(dut, en).value = 1
    for row in rows:
        for name, v in zip(fields[1:], row):
            getattr(dut, name).value = int(v)
        await RisingEdge(dut.clk)
    getattr(dut, en).value = 0


async def _read(dut, target: int, n: int, signed: bool = True) -> np.ndarray:
    """Words 0..n-1 of a read target: address before a rising edge, data stable at the falling edge."""
    out = []
    dut.host_rd_target.value = target
    for a in range(n):
        dut.host_rd_addr.value = a
        await RisingEdge(dut.clk)
        await FallingEdge(dut.clk)
        v = dut.host_rd_data.value
        if not v.is_resolvable:   # X/Z bits: report them and return a value golden can never equal
            dut._log.error("read target %d address %d: unresolved value %s", target, a, v)
            out.append(-(1 << 62))
            continue
        out.append(v.to_signed() if signed else v.to_unsigned())
    return np.array(out, dtype=np.int64)


@cocotb.test()
async def run_cases(dut):
    data = np.load(os.environ["TTZO_TB_DATA"])
    out: dict[str, np.ndarray] = {}
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await _reset(dut)
    for c in range(int(data["n_cases"])):
        await _writes(dut, data[f"case{c}_cfg"], ("cfg_en", "cfg_addr", "cfg_data"))
        if not int(data[f"case{c}_same_host"]):
            await _writes(dut, data[f"case{c}_host"], ("host_we", "host_target", "host_addr", "host_data"))
        else:
            await _writes(dut, data[f"case{c}_host_params"], ("host_we", "host_target", "host_addr", "host_data"))
        segs = data[f"case{c}_segs"]
        await _writes(dut, [(k, s, b) for k, (s, b) in enumerate(segs)], ("seg_we", "seg_addr", "seg_start",
                                                                           "seg_bias"))
        for name, v in zip(data[f"case{c}_reg_names"], data[f"case{c}_reg_values"]):
            getattr(dut, str(name)).value = int(v)
        await RisingEdge(dut.clk)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await with_timeout(RisingEdge(dut.done), 10 ** 15, "ps")
        await RisingEdge(dut.clk)
        n = int(data[f"case{c}_n_params"])
        forwards = int(dut.forwards.value)
        out[f"case{c}_forwards"] = np.array(forwards)
        out[f"case{c}_steps"] = np.array(int(dut.steps_done.value))
        out[f"case{c}_cycles"] = np.array(int(dut.cycles.value))
        out[f"case{c}_theta"] = await _read(dut, READ_PARAMS, n)
        out[f"case{c}_momentum"] = await _read(dut, READ_MOMENTUM, n)
        logged = min(forwards, int(data[f"case{c}_log_depth"]))
        out[f"case{c}_log_loss"] = await _read(dut, READ_LOG_LOSS, logged)
        out[f"case{c}_log_correct"] = await _read(dut, READ_LOG_CORRECT, logged, signed=False)
        await RisingEdge(dut.clk)
    np.savez(os.environ["TTZO_TB_RESULT"], **out)
