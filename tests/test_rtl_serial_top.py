"""rtl/serial_top.SerialTop in the Amaranth simulator, frame by frame: what differs from the full design.

The training itself is proven end to end through the host driver (tests/test_board_e2e.py, serial
design); here, fast: the identify record (no PROGRAM region), the stored configuration registers (a
value reads back sign-extended from its stored width, an unstored register reads 0, a value that did
not fit refuses the start with ERR_CONFIG), CGE and Gaussian refused, region round trips through the
shared single-port `bulk` RAM (bytes of the batch, 16-bit parameters, labels), and a bad K.
"""
from __future__ import annotations

import struct

import numpy as np
from amaranth.sim import Simulator

from ttzo.host import protocol as P
from ttzo.rtl.board_top import (CFG_ALPHA_W, CFG_KIND, CFG_M_CODE, CFG_MU_W, CFG_N_QUERIES, CFG_N_SAMPLES,
                                CFG_OPTIMIZER, CFG_SEGMENTS, ERR_ARG, ERR_CONFIG, serial_tiny_profile)
from ttzo.rtl.serial_top import SerialTop


def run(requests: list[bytes], idle_cycles: int = 200) -> list[P.Frame]:
    """Send each request, wait until the design has been quiet for `idle_cycles`; decoded replies in order."""
    dut = SerialTop(serial_tiny_profile(), "stream")
    replies: list[P.Frame] = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        split = P.FrameSplitter()
        for line in requests:
            pos, quiet = 0, 0
            while pos < len(line) or quiet < idle_cycles:
                ctx.set(dut.i.valid, pos < len(line))
                if pos < len(line):
                    ctx.set(dut.i.payload, line[pos])
                took = pos < len(line) and ctx.get(dut.i.ready)
                if ctx.get(dut.o.valid):
                    for body in split.feed(bytes([ctx.get(dut.o.payload.data)])):
                        replies.append(P.decode_body(P.slip_unescape(body)))
                    quiet = 0
                else:
                    quiet = 0 if pos < len(line) else quiet + 1
                await ctx.tick()
                pos += took

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return replies


def req(cmd: int, payload: bytes = b"", seq: int = 1) -> bytes:
    return P.Frame(cmd, seq, payload).encode()


def configure(first: int, *values: int, seq: int) -> bytes:
    return req(P.Cmd.CONFIGURE, struct.pack("<H", first) + struct.pack(f"<{len(values)}I", *values), seq)


def status_error(frame: P.Frame) -> int:
    return P.STATUS_REPLY.unpack(frame.payload)[2]


def test_identify_has_no_program_region_and_names_the_design():
    (r,) = run([req(P.Cmd.IDENTIFY)])
    info = P.Identify.decode(r.payload)
    bp = serial_tiny_profile()
    assert info.name == bp.name
    assert {x.id for x in info.regions} == {P.Region.PARAMS, P.Region.BATCH, P.Region.LABELS, P.Region.LOG}
    assert info.region(P.Region.BATCH).depth == bp.max_samples * bp.net.in_features


def test_registers_store_only_what_the_trainer_reads_and_refuse_what_does_not_fit():
    bp = serial_tiny_profile()
    n = bp.n_config
    good = configure(0, 0, 0, 2, 100, 100, 5, 5, 0xDEADBEEF, 7, 3, seq=1)      # optimizer .. n_samples
    reqs = [good,
            configure(CFG_M_CODE, 1234, 99, seq=2),                   # CGE constant: not stored
            configure(CFG_SEGMENTS, 0, seq=3),                        # segment table: gateware's own
            configure(CFG_MU_W, 70000, (1 << 32) - 3, seq=4),         # mu_w does not fit s16; mu_b = -3 does
            req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(0, n), seq=5),
            req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(1), seq=6),
            req(P.Cmd.STATUS, seq=7),
            configure(CFG_MU_W, 100, seq=8),                          # fixed: the same start runs
            req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(0), seq=9),
            req(P.Cmd.STATUS, seq=10),
            configure(CFG_OPTIMIZER, 1, seq=11),                      # CGE: not in the serial design
            req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(1), seq=12), req(P.Cmd.STATUS, seq=13),
            configure(CFG_OPTIMIZER, 0, 1, seq=14),                   # Gaussian-like xi: not implemented
            req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(1), seq=15), req(P.Cmd.STATUS, seq=16),
            configure(CFG_KIND, 0, bp.n_max + 1, seq=17),             # more queries than the design holds
            req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(1), seq=18), req(P.Cmd.STATUS, seq=19),
            configure(CFG_N_QUERIES, 2, 100, 100, 5, 5, 0, 0, bp.max_samples + 1, seq=20),
            req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(1), seq=21), req(P.Cmd.STATUS, seq=22),
            configure(CFG_N_SAMPLES, 3, seq=23),
            req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(1 << 16), seq=24), req(P.Cmd.STATUS, seq=25)]
    r = run(reqs)
    assert all(f.status == P.Status.OK for f in r)
    regs = struct.unpack(f"<{n}I", r[4].payload)
    assert regs[:3] == (0, 0, 2)
    assert regs[CFG_MU_W] == 70000 - (1 << 16)            # 16 bits kept, read back sign-extended
    assert regs[CFG_MU_W + 1] == (1 << 32) - 3           # -3 fits
    assert regs[CFG_ALPHA_W:CFG_N_SAMPLES + 1] == (5, 5, 0xDEADBEEF, 7, 3)
    assert regs[CFG_M_CODE] == 0 and regs[CFG_M_CODE + 1] == 0 and regs[CFG_SEGMENTS] == 0
    assert status_error(r[6]) == ERR_CONFIG
    assert status_error(r[9]) == 0                        # K = 0 with a good configuration
    assert [status_error(r[k]) for k in (12, 15, 18, 21)] == [ERR_CONFIG] * 4
    assert status_error(r[24]) == ERR_ARG


def test_regions_round_trip_through_the_shared_bulk_ram():
    bp = serial_tiny_profile()
    rng = np.random.default_rng(5)
    pixels = rng.integers(0, 256, 2 * 784 + 3, dtype=np.uint8).tobytes()     # odd length: byte lanes
    params = rng.integers(-32768, 32768, bp.net.n_params).astype("<i2").tobytes()
    labels = bytes([9, 0, 3])
    reqs = [req(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.BATCH, 1) + pixels[:200], seq=1),
            req(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.BATCH, 201) + pixels[200:600], seq=2),
            req(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.PARAMS, 0) + params, seq=3),
            req(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.LABELS, 2) + labels, seq=4),
            req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.BATCH, 0, 400), seq=5),
            req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.PARAMS, 0, len(params)), seq=6),
            req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.LABELS, 2, 3), seq=7),
            req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.BATCH, 400, 202), seq=8),
            req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.BATCH, 0, 600), seq=9),     # > max_payload
            # offsets beyond every region (the narrow range sums: low offset bits + a high-bits flag)
            req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.PARAMS, 0x80000000, 2), seq=10),
            req(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.PARAMS, 0xFFFFFFFE) + b"ab", seq=11),
            req(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.BATCH, 1 << 16) + b"ab", seq=12),
            req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.PARAMS, 0, len(params)), seq=13)]
    r = run(reqs)
    assert all(f.status == P.Status.OK for f in r[:8])
    assert [f.status for f in r[8:12]] == [P.Status.RANGE] * 4 and bp.max_payload < 600
    assert r[12].payload == params                         # the refused writes changed nothing
    assert (r[4].payload + r[7].payload)[1:601] == pixels[:600]
    assert r[5].payload == params
    assert r[6].payload == labels
