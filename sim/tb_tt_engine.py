"""cocotb test of the TT engine (through sim/harness.py): load program and samples, start, await done.

Reads the cases from the .npz named by $TTZO_TB_DATA (written by sim/tt_cosim.py):
  n_cases; case{i}_writes (n, 2) bus (address, data); case{i}_x (B, N) input codes;
  case{i}_n_out; case{i}_throttle.
Writes $TTZO_TB_RESULT (.npz): case{i}_y (B, M) output codes, case{i}_cycles.
Comparison with golden happens in Python (sim/tt_cosim.py), where the expected values live.
"""
from __future__ import annotations

import os

import cocotb
import numpy as np
from cocotb.clock import Clock
from cocotb.triggers import FallingEdge, RisingEdge, SimTimeoutError, Timer, with_timeout

REGION_SAMPLES = 5
REGION_SHIFT = 20


async def _reset(dut) -> None:
    dut.rst.value = 1
    dut.cfg_en.value = 0
    dut.start.value = 0
    dut.throttle.value = 0
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    await RisingEdge(dut.clk)


async def _bus(dut, writes: np.ndarray) -> None:
    # Align to a clock edge first: after the asynchronous result reads (Timer steps) "now" may be
    # the very time step of a rising edge, and a value written then is not seen by that edge on
    # Icarus (the first write of a case was lost that way).
    await RisingEdge(dut.clk)
    dut.cfg_en.value = 1
    for a, d in writes:
        dut.cfg_addr.value = int(a)
        dut.cfg_data.value = int(d) & 0xFFFFFFFF     # two's complement words (e.g. PINN node table)
        await RisingEdge(dut.clk)
    dut.cfg_en.value = 0


def _state(dut) -> str:
    """Sequencer state for a hang report (internal names of the generated Verilog)."""
    out = []
    for name in ("fsm_state", "step_idx", "loaded", "computed", "in_full", "out_pending", "issuing",
                 "hold_full", "filled", "drained", "grp", "ld_count", "i__valid", "i__ready", "o__valid"):
        try:
            out.append(f"{name}={int(getattr(dut.engine, name).value)}")
        except Exception as exc:  # noqa: BLE001 - diagnostics only
            out.append(f"{name}=? ({type(exc).__name__})")
    out.append(f"src_idx={int(dut.src_idx.value)}")
    try:
        out.append(f"header[63:0]={int(dut.engine.hdr.value) & ((1 << 64) - 1):#x}")
    except Exception as exc:  # noqa: BLE001 - diagnostics only
        out.append(f"header=? ({type(exc).__name__})")
    return ", ".join(out)


@cocotb.test()
async def run_cases(dut):
    data = np.load(os.environ["TTZO_TB_DATA"])
    max_cycles = int(os.environ.get("TTZO_TB_MAX_CYCLES", 10 ** 8))
    out: dict[str, np.ndarray] = {}
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    await _reset(dut)
    for c in range(int(data["n_cases"])):
        writes = data[f"case{c}_writes"]
        x = data[f"case{c}_x"]
        n_out = int(data[f"case{c}_n_out"])
        B = x.shape[0]
        flat = x.reshape(-1).astype(np.int64) & 0xFFFFFFFF
        sample_writes = np.stack([(REGION_SAMPLES << REGION_SHIFT) + np.arange(flat.size), flat], axis=1)
        await _bus(dut, writes)
        await _bus(dut, sample_writes)
        dut.throttle.value = int(data[f"case{c}_throttle"])
        dut.batch.value = B
        dut.total_in.value = int(flat.size)
        dut.start.value = 1
        await RisingEdge(dut.clk)
        dut.start.value = 0
        await RisingEdge(dut.clk)
        if int(dut.busy.value):
            try:
                await with_timeout(FallingEdge(dut.busy), max_cycles * 10, "ns")
            except SimTimeoutError:
                raise AssertionError(f"case {c}: engine still busy after {max_cycles} cycles; "
                                     f"{_state(dut)}") from None
        await RisingEdge(dut.clk)
        got = int(dut.n_results.value)
        assert got == B * n_out, f"case {c}: {got} outputs, expected {B * n_out}"
        ys = []
        for i in range(B * n_out):
            dut.rd_addr.value = i
            await Timer(1, "ns")
            ys.append(dut.rd_data.value.to_signed())
        out[f"case{c}_y"] = np.array(ys, dtype=np.int64).reshape(B, n_out)
        out[f"case{c}_cycles"] = np.array(int(dut.cycles.value))
        dut._log.info(f"case {c}: {B} samples, {int(dut.cycles.value)} cycles")
    np.savez(os.environ["TTZO_TB_RESULT"], **out)
