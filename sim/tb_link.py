"""cocotb bench of the link design's byte-stream port (rtl/link_top.py, phy="stream").

Reads $TTZO_LINK_IN (JSON: {"cases": [{"line": hex, "expect_len": n}, ...]}), sends each case's
line bytes into `i` (one byte per clock while `i.ready`), collects the bytes of `o` (always
ready) until the expected number arrived (or, when no reply is expected, 8 quiet cycles), and
writes $TTZO_LINK_OUT (JSON: {"replies": [hex, ...], "hangs": [...], "cycles": n}).  A case that
neither finishes sending nor produces its reply within 20 cycles per byte (+200) is a hang.
"""
from __future__ import annotations

import json
import os

import cocotb
from cocotb.clock import Clock
from cocotb.triggers import ReadOnly, RisingEdge


@cocotb.test()
async def run_cases(dut):
    data = json.loads(open(os.environ["TTZO_LINK_IN"]).read())
    cocotb.start_soon(Clock(dut.clk, 10, unit="ns").start())
    dut.rst.value = 1
    dut.i__valid.value = 0
    dut.o__ready.value = 1
    for _ in range(3):
        await RisingEdge(dut.clk)
    dut.rst.value = 0
    replies, hangs, total = [], [], 0
    for k, case in enumerate(data["cases"]):
        line = bytes.fromhex(case["line"])
        want = case["expect_len"]
        out = bytearray()
        pos = quiet = cycles = 0
        limit = 20 * (len(line) + want) + 200
        while True:
            await RisingEdge(dut.clk)
            sending = pos < len(line)
            dut.i__valid.value = int(sending)
            if sending:
                dut.i__payload.value = line[pos]
            await ReadOnly()
            if dut.o__valid.value:
                out.append(int(dut.o__payload.value) & 0xFF)
                quiet = 0
            elif not sending:
                quiet += 1
            if sending and dut.i__ready.value:
                pos += 1
            cycles += 1
            if pos >= len(line) and ((want and len(out) >= want) or (not want and quiet >= 8)):
                break
            if cycles > limit:
                hangs.append(k)
                break
        total += cycles
        replies.append(out.hex())
    await RisingEdge(dut.clk)
    dut.i__valid.value = 0
    with open(os.environ["TTZO_LINK_OUT"], "w") as f:
        json.dump({"replies": replies, "hangs": hangs, "cycles": total}, f)
