"""Command processor (standalone link design) in the Amaranth simulator, reply for reply against the
Python reference board (ttzo.sim.link_model): valid requests, every error class, resync after garbage."""
from __future__ import annotations

import struct

import pytest
from amaranth.sim import Simulator

from ttzo.host import protocol as P
from ttzo.rtl.link_top import LinkTop
from ttzo.sim.link_model import LinkModel, default_identify

IDENT = default_identify(max_payload=128, n_config=4, n_results=4,
                         regions=(P.RegionInfo(P.Region.PARAMS, 16, 16), P.RegionInfo(P.Region.BATCH, 8, 32),
                                  P.RegionInfo(P.Region.NODES, 32, 8),
                                  P.RegionInfo(P.Region.OUTPUTS, 16, 4, P.REGION_FLAG_READABLE)))


def run_design(chunks: list[bytes], ident=IDENT, idle_cycles: int = 60) -> list[bytes]:
    """Feed each chunk of line bytes (waiting for the design to go quiet in between); line bytes out per chunk."""
    dut = LinkTop(ident, "stream")
    outs: list[bytes] = []

    async def bench(ctx):
        ctx.set(dut.o.ready, 1)
        for chunk in chunks:
            out = bytearray()
            pos, quiet = 0, 0
            while pos < len(chunk) or quiet < idle_cycles:
                if pos < len(chunk):
                    ctx.set(dut.i.valid, 1)
                    ctx.set(dut.i.payload, chunk[pos])
                else:
                    ctx.set(dut.i.valid, 0)
                acc = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
                if ctx.get(dut.o.valid):
                    out.append(ctx.get(dut.o.payload.data))
                    quiet = 0
                elif pos < len(chunk):
                    quiet = 0
                else:
                    quiet += 1
                await ctx.tick()
                pos += acc
            outs.append(bytes(out))

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return outs


def req(cmd, payload=b"", seq=1, **kw) -> bytes:
    return P.Frame(cmd, seq, payload, **kw).encode()


def raw(body: bytes, fix_crc=True) -> bytes:
    """A frame from explicit header+payload bytes (CRC recomputed unless told otherwise)."""
    if fix_crc:
        body = body + P.crc16(body).to_bytes(2, "big")
    return bytes([P.END]) + P.slip_escape(body) + bytes([P.END])


def test_requests_match_reference_model():
    W, R = P.WRITE_HDR.pack, P.READ_REQ.pack
    chunks = [
        req(P.Cmd.IDENTIFY, seq=1),
        req(P.Cmd.WRITE_REGION, W(P.Region.PARAMS, 4) + bytes(range(0xB8, 0xB8 + 12)), seq=2),   # 0xC0, 0xDB inside
        req(P.Cmd.READ_REGION, R(P.Region.PARAMS, 0, 20), seq=3),
        req(P.Cmd.WRITE_REGION, W(P.Region.NODES, 8) + bytes(range(8)), seq=4),
        req(P.Cmd.READ_REGION, R(P.Region.NODES, 4, 12), seq=5),
        req(P.Cmd.CONFIGURE, struct.pack("<HII", 1, 0xDEADBEEF, 0x12345678), seq=6),
        req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(0, 4), seq=7),
        req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(3), seq=8),
        req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(3), seq=8),                   # retransmission: not run again
        req(P.Cmd.READ_RESULTS, P.REG_RANGE.pack(0, 3), seq=9),
        req(P.Cmd.STATUS, seq=10),
        req(P.Cmd.RESET, seq=11),
        req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(0, 4), seq=12),
        req(P.Cmd.READ_REGION, R(P.Region.PARAMS, 0, 20), seq=13),        # memories survive RESET
    ]
    model = LinkModel(IDENT)
    expected = [model.feed(c) for c in chunks]
    got = run_design(chunks)
    for c, e, g in zip(chunks, expected, got):
        assert g == e, f"request {c.hex()}"
    assert P.decode_body(P.slip_unescape(got[9][1:-1])).payload == struct.pack("<3I", P.Op.STEPS, 3, 1)


def test_errors_match_reference_and_change_nothing():
    W, R = P.WRITE_HDR.pack, P.READ_REQ.pack
    good = P.Frame(P.Cmd.WRITE_REGION, 3, W(P.Region.BATCH, 0) + b"abcd").body()
    flipped = bytearray(good); flipped[7] ^= 0x04
    bad = [
        raw(bytes(flipped), fix_crc=False),                                 # CRC
        bytes([P.END]) + good[:5] + bytes([P.ESC, 0x41]) + good[5:] + bytes([P.END]),   # bad escape
        raw(P.HEADER.pack(1, P.Cmd.WRITE_REGION, 4, 0, 140) + bytes(140)),  # longer than max_payload
        raw(b"\x01\x02\x03"),                                               # runt: dropped
        raw(P.HEADER.pack(2, P.Cmd.IDENTIFY, 5, 0, 0)),                     # version
        raw(P.HEADER.pack(1, P.Cmd.IDENTIFY, 6, 9, 0)),                     # status byte in a request
        raw(P.HEADER.pack(1, P.Cmd.IDENTIFY, 7, 0, 3)),                     # length field lies
        req(0x77, seq=8), req(0x81, seq=9),                                 # unknown commands
        req(P.Cmd.IDENTIFY, b"x", seq=10),
        req(P.Cmd.WRITE_REGION, b"\x00\x00", seq=11),
        req(P.Cmd.WRITE_REGION, W(9, 0) + b"ab", seq=12),                   # unknown region
        req(P.Cmd.WRITE_REGION, W(P.Region.OUTPUTS, 0) + b"ab", seq=13),    # read-only
        req(P.Cmd.WRITE_REGION, W(P.Region.PARAMS, 1) + b"ab", seq=14),     # misaligned offset
        req(P.Cmd.WRITE_REGION, W(P.Region.PARAMS, 0) + b"abc", seq=15),    # odd length
        req(P.Cmd.WRITE_REGION, W(P.Region.PARAMS, 30) + b"abcd", seq=16),  # past the end
        req(P.Cmd.WRITE_REGION, W(P.Region.PARAMS, 0xFFFFFFFE) + b"ab", seq=17),   # wraps 32 bits
        req(P.Cmd.READ_REGION, R(P.Region.BATCH, 0, 129), seq=18),          # longer than max_payload
        req(P.Cmd.READ_REGION, R(P.Region.NODES, 2, 4), seq=19),
        req(P.Cmd.READ_REGION, R(P.Region.PARAMS, 0x80000000, 2), seq=29),   # offset beyond every region
        req(P.Cmd.READ_REGION, R(P.Region.BATCH, 0, 4) + b"x", seq=20),
        req(P.Cmd.CONFIGURE, struct.pack("<HI", 4, 1), seq=21),
        req(P.Cmd.CONFIGURE, struct.pack("<HII", 3, 1, 2), seq=22),
        req(P.Cmd.CONFIGURE, struct.pack("<HI", 0, 1) + b"z", seq=23),
        req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(2, 3), seq=24),
        req(P.Cmd.READ_RESULTS, P.REG_RANGE.pack(0xFFFF, 2), seq=25),
        req(P.Cmd.RUN_STEPS, b"\x01", seq=26),
        bytes(range(256)) + req(P.Cmd.READ_REGION, R(P.Region.BATCH, 0, 8), seq=27),   # garbage, then a frame
        req(P.Cmd.STATUS, seq=28),
    ]
    model = LinkModel(IDENT)
    expected = [model.feed(c) for c in bad]
    got = run_design(bad)
    for c, e, g in zip(bad, expected, got):
        assert g == e, f"request {c.hex()}"
    statuses = []
    for g in got[:-2]:
        frames = [P.decode_body(P.slip_unescape(f)) for f in P.FrameSplitter().feed(g)]
        statuses += [f.status for f in frames]
    assert P.Status.OK not in statuses                       # every malformed request refused
    assert model.mem[P.Region.BATCH] == bytes(32) and model.config == [0] * 4
    st = P.BoardStatus.decode(P.decode_body(P.slip_unescape(got[-1][1:-1])).payload)
    # CRC, escape, overflow, runt, and the garbage: 0x00..0xBF (overflow) and 0xC1..0xFF (bad escapes)
    assert st.rx_bad == 6 and st.rx_ok == 25


def _frames(line: bytes) -> list[P.Frame]:
    return [P.decode_body(P.slip_unescape(f)) for f in P.FrameSplitter().feed(line)]


def test_busy_refusals_and_reset_abort():
    W = P.WRITE_HDR.pack
    chunks = [
        req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(100_000), seq=1),           # the stub stays busy 100,001 cycles
        req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(100_000), seq=1),           # retransmission while busy: OK, not BUSY
        req(P.Cmd.WRITE_REGION, W(P.Region.BATCH, 0) + b"abcd", seq=2),
        req(P.Cmd.CONFIGURE, struct.pack("<HI", 0, 5), seq=3),
        req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.BATCH, 0, 4), seq=4),
        req(P.Cmd.RUN_INFERENCE, P.RUN_REQ.pack(1), seq=5),
        req(P.Cmd.STATUS, seq=6),
        req(P.Cmd.READ_RESULTS, P.REG_RANGE.pack(0, 2), seq=7),
        req(P.Cmd.IDENTIFY, seq=8),
        req(P.Cmd.RESET, seq=9),                                       # aborts the operation
        req(P.Cmd.STATUS, seq=10),
        req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.BATCH, 0, 4), seq=11),
    ]
    got = [_frames(g) for g in run_design(chunks)]
    assert all(len(f) == 1 for f in got)
    f = [g[0] for g in got]
    assert f[0].status == f[1].status == P.Status.OK and f[1].seq == 1
    del f[1]
    assert [x.seq for x in f] == list(range(1, 12))
    assert [x.status for x in f[1:5]] == [P.Status.BUSY] * 4
    st = P.BoardStatus.decode(f[5].payload)
    assert st.busy and st.last_op == P.Op.STEPS and 0 < st.op_cycles < 100_000
    assert f[6].status == P.Status.OK and f[6].payload == bytes(8)   # results readable while busy
    assert f[7].status == P.Status.OK and P.Identify.decode(f[7].payload) == IDENT
    assert f[8].status == P.Status.OK
    st = P.BoardStatus.decode(f[9].payload)
    assert not st.busy and st.last_op == 0 and st.rx_ok == 1 and st.rx_bad == 0
    assert f[10].status == P.Status.OK and f[10].payload == bytes(4)  # the refused write left memory alone


#: IDENT plus the idle bank of a double-buffered batch: BATCH_NEXT, writable while an operation runs.
BANKED = default_identify(max_payload=128, n_config=4, n_results=4,
                          regions=IDENT.regions + (P.RegionInfo(P.Region.BATCH_NEXT, 8, 32, P.REGION_FLAG_WRITABLE
                                                                | P.REGION_FLAG_BUSY_WRITABLE),))


def test_busy_writable_region_accepts_writes_while_busy():
    """While RUN_STEPS runs, WRITE_REGION to the busy-writable region is executed (and range-checked as
    when idle); every other state change, a read of it and a write with a short header stay BUSY.
    Statuses equal the reference board's rule (protocol_spec.accepted_while_busy, LinkModel while busy)."""
    W = P.WRITE_HDR.pack
    nxt = P.Region.BATCH_NEXT
    busy_chunks = [
        req(P.Cmd.WRITE_REGION, W(nxt, 4) + b"abcd", seq=2),                      # OK while busy
        req(P.Cmd.WRITE_REGION, W(P.Region.BATCH, 0) + b"wxyz", seq=3),           # BUSY: the engine's bank
        req(P.Cmd.WRITE_REGION, W(nxt, 30) + b"abcd", seq=4),                     # RANGE (past the end)
        req(P.Cmd.WRITE_REGION, bytes([nxt, 0, 0]), seq=5),                        # BUSY: header incomplete
        req(P.Cmd.READ_REGION, P.READ_REQ.pack(nxt, 0, 4), seq=6),                # BUSY: reads wait
        req(P.Cmd.WRITE_REGION, W(P.Region.OUTPUTS, 0) + b"ab", seq=7),           # BUSY (read-only, not flagged)
        req(P.Cmd.STATUS, seq=8),
    ]
    chunks = [req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(100_000), seq=1), *busy_chunks,
              req(P.Cmd.RESET, seq=9), req(P.Cmd.READ_REGION, P.READ_REQ.pack(nxt, 0, 8), seq=10),
              req(P.Cmd.READ_REGION, P.READ_REQ.pack(P.Region.BATCH, 0, 4), seq=11)]
    f = [g[0] for g in (_frames(x) for x in run_design(chunks, BANKED))]
    S = P.Status
    assert [x.status for x in f] == [S.OK, S.OK, S.BUSY, S.RANGE, S.BUSY, S.BUSY, S.BUSY, S.OK, S.OK, S.OK, S.OK]
    assert P.BoardStatus.decode(f[7].payload).busy                 # all of the above happened while busy
    assert f[9].payload == bytes(4) + b"abcd"                       # the accepted write landed, nothing else
    assert f[10].payload == bytes(4)
    model = LinkModel(BANKED)
    model.busy = True
    ref = [P.decode_body(P.slip_unescape(x)) for c in busy_chunks[:-1] for x in P.FrameSplitter().feed(model.feed(c))]
    assert [x.status for x in ref] == [x.status for x in f[1:7]]
    assert bytes(model.mem[nxt][:8]) == bytes(4) + b"abcd"
    # the rule itself, on the unchanged designs: nothing but the four commands passes while busy
    assert not P.accepted_while_busy(P.Cmd.WRITE_REGION, W(nxt, 0) + b"a", IDENT)
    assert P.accepted_while_busy(P.Cmd.WRITE_REGION, W(nxt, 0), BANKED)
    assert not P.accepted_while_busy(P.Cmd.READ_REGION, P.READ_REQ.pack(nxt, 0, 1), BANKED)


def test_random_requests_while_busy_match_the_rule():
    """60 random well-formed requests while the stub engine runs: every reply status equals the reference
    board's while busy (protocol_spec.accepted_while_busy), and the memories equal its memories after."""
    import random
    rng = random.Random(11)
    W = P.WRITE_HDR.pack
    ids = [r.id for r in BANKED.regions] + [3, 7] + [P.Region.BATCH_NEXT] * 5
    reqs = []
    for k in range(60):
        cmd = rng.choice([P.Cmd.WRITE_REGION] * 4 + [P.Cmd.READ_REGION, P.Cmd.CONFIGURE, P.Cmd.STATUS,
                                                     P.Cmd.READ_RESULTS, P.Cmd.RUN_INFERENCE])
        rid = rng.choice(ids)
        if cmd == P.Cmd.WRITE_REGION:
            pl = W(rid, rng.randrange(0, 40)) + bytes(rng.randrange(256) for _ in range(rng.randrange(0, 9)))
            pl = pl[:rng.choice([len(pl)] * 5 + [0, 1, 3])]           # sometimes a short write header
        elif cmd == P.Cmd.READ_REGION:
            pl = P.READ_REQ.pack(rid, 0, 4)
        elif cmd == P.Cmd.CONFIGURE:
            pl = struct.pack("<HI", 0, 7)
        elif cmd == P.Cmd.READ_RESULTS:
            pl = P.REG_RANGE.pack(0, 1)
        elif cmd == P.Cmd.RUN_INFERENCE:
            pl = P.RUN_REQ.pack(1)
        else:
            pl = b""
        reqs.append(req(cmd, pl, seq=10 + k))
    dump = [req(P.Cmd.READ_REGION, P.READ_REQ.pack(r.id, 0, min(r.size, 64)), seq=200 + i)
            for i, r in enumerate(BANKED.regions)]
    got = [_frames(x) for x in run_design([req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(100_000), seq=1), *reqs,
                                           req(P.Cmd.RESET, seq=100), *dump], BANKED)]
    model = LinkModel(BANKED)
    model.busy = True
    want = [P.decode_body(P.slip_unescape(f)) for c in reqs for f in P.FrameSplitter().feed(model.feed(c))]
    statuses = [g[0].status for g in got[1:1 + len(reqs)]]
    assert statuses == [w.status for w in want]
    assert P.Status.OK in statuses and P.Status.BUSY in statuses and P.Status.RANGE in statuses
    for r, g in zip(BANKED.regions, got[-len(dump):]):
        assert g[0].payload == bytes(model.mem[r.id][:min(r.size, 64)]), r.name


def test_empty_write_and_configure_get_one_short_reply():
    """A WRITE_REGION with no data bytes and a CONFIGURE with no values are valid no-ops: one 6-byte OK
    reply each (the reply index used to start past the header, so the reply ran on for 128 KiB)."""
    chunks = [req(P.Cmd.WRITE_REGION, P.WRITE_HDR.pack(P.Region.BATCH, 32), seq=1),
              req(P.Cmd.CONFIGURE, P.REG_FIRST.pack(4), seq=2), req(P.Cmd.STATUS, seq=3)]
    got = run_design(chunks)
    model = LinkModel(IDENT)
    assert got == [model.feed(c) for c in chunks]
    assert [len(_frames(g)) for g in got] == [1, 1, 1] and len(got[0]) < 16


def test_register_reads_across_selection_groups():
    """Register files longer than one first-level group of the reply's two-level word selection
    (cmdproc.REG_GROUP): every register reads back its own value, whichever group holds it, including
    the last, partial group; ranges start inside a group and cross group boundaries."""
    from ttzo.rtl.cmdproc import REG_GROUP
    n_config, n_results = 2 * REG_GROUP + 3, REG_GROUP + 2
    ident = default_identify(max_payload=128, n_config=n_config, n_results=n_results,
                             regions=(P.RegionInfo(P.Region.PARAMS, 16, 16),))
    values = [0x01010101 * (k + 1) ^ 0xA5000000 for k in range(n_config)]
    chunks = [req(P.Cmd.CONFIGURE, struct.pack("<H", 0) + struct.pack(f"<{n_config}I", *values), seq=1),
              req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(0, n_config), seq=2),
              req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(REG_GROUP - 2, REG_GROUP + 3), seq=3),
              req(P.Cmd.RUN_STEPS, P.RUN_REQ.pack(2), seq=4),
              req(P.Cmd.READ_RESULTS, P.REG_RANGE.pack(0, n_results), seq=5),
              req(P.Cmd.READ_RESULTS, P.REG_RANGE.pack(REG_GROUP - 1, 3), seq=6)]
    model = LinkModel(ident)
    expected = [model.feed(c) for c in chunks]
    got = run_design(chunks, ident=ident, idle_cycles=400)    # CONFIGURE copies a byte every 2 cycles
    assert got == expected
    body = P.decode_body(P.slip_unescape(got[1][1:-1]))
    assert list(struct.unpack(f"<{n_config}I", body.payload)) == values


def test_reset_clears_every_register_group_and_writes_land():
    """RESET clears the configuration register file through one clear register per CLEAR_GROUP registers
    (a shift chain: group g a few cycles after group 0), and CONFIGURE writes through two registered
    stages: a file of several groups (the last partial), written across group boundaries, cleared by a
    RESET that a CONFIGURE follows back to back (no idle time between them), reads back as the reference
    model's, and every register outside the written range reads 0 after the RESET."""
    from ttzo.rtl.cmdproc import CLEAR_GROUP
    n_config = 3 * CLEAR_GROUP + 1
    ident = default_identify(max_payload=128, n_config=n_config, n_results=4,
                             regions=(P.RegionInfo(P.Region.PARAMS, 16, 16),))
    values = [0x9E3779B9 * (k + 1) & 0xFFFFFFFF for k in range(n_config)]
    first = CLEAR_GROUP - 1                  # a range starting inside group 0, ending in group 2
    chunks = [req(P.Cmd.CONFIGURE, struct.pack("<H", 0) + struct.pack(f"<{n_config}I", *values), seq=1),
              req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(0, n_config), seq=2),
              req(P.Cmd.RESET, seq=3)
              + req(P.Cmd.CONFIGURE, struct.pack("<H", first) + struct.pack("<4I", 1, 2, 0xFFFFFFFF, 4), seq=4),
              req(P.Cmd.READ_CONFIG, P.REG_RANGE.pack(0, n_config), seq=5)]
    model = LinkModel(ident)
    expected = [model.feed(c) for c in chunks]
    got = run_design(chunks, ident=ident, idle_cycles=400)
    assert got == expected
    regs = struct.unpack(f"<{n_config}I", _frames(got[3])[0].payload)
    want = [0] * n_config
    want[first:first + 4] = [1, 2, 0xFFFFFFFF, 4]
    assert list(regs) == want
