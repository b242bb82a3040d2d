"""Gateware CRC, SLIP decoder and encoder against the host protocol (Amaranth simulator)."""
from __future__ import annotations

import random

from amaranth.hdl import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings, strategies as st

from ttzo.host import protocol as P
from ttzo.rtl.crc import crc16_update
from ttzo.rtl.framing import FrameDecoder, FrameEncoder


def _run(dut, bench):
    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()          # until the testbench returns (the clock is a background process)


@settings(max_examples=20, deadline=None)
@given(st.binary(min_size=1, max_size=40))
def test_crc_update_matches_binascii(data):
    m = Module()
    crc, byte, nxt = Signal(16), Signal(8), Signal(16)
    m.d.comb += nxt.eq(crc16_update(crc, byte))
    got = []

    async def bench(ctx):
        c = 0xFFFF
        for b in data:
            ctx.set(crc, c)
            ctx.set(byte, b)
            c = ctx.get(nxt)
        got.append(c)

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert got == [P.crc16(data)]


def _decode_reference(line: bytes) -> list[tuple]:
    """Independent token model: (data,) per decoded byte, ('end', crc_ok, bad_escape) per END."""
    toks, crc_data, esc, bad = [], bytearray(), False, False
    for b in line:
        if b == P.END:
            toks.append(("end", P.crc16(bytes(crc_data)) == 0, bad or esc))
            crc_data, esc, bad = bytearray(), False, False
        elif esc:
            esc = False
            v = {P.ESC_END: P.END, P.ESC_ESC: P.ESC}.get(b)
            if v is None:
                bad, v = True, b
            toks.append((v,)); crc_data.append(v)
        elif b == P.ESC:
            esc = True
        else:
            toks.append((b,)); crc_data.append(b)
    return toks


def _decoder_tokens(line: bytes, stall_seed: int) -> list[tuple]:
    dut = FrameDecoder()
    toks = []
    rnd = random.Random(stall_seed)

    async def bench(ctx):
        pos = 0
        idle = 0
        while idle < 8:
            if pos < len(line) and rnd.random() < 0.8:
                ctx.set(dut.i.valid, 1); ctx.set(dut.i.payload, line[pos])
            else:
                ctx.set(dut.i.valid, 0)
            ready_o = rnd.random() < 0.7
            ctx.set(dut.o.ready, ready_o)
            i_acc = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ready_o:
                p = ctx.get(dut.o.payload)
                toks.append(("end", bool(p.crc_ok), bool(p.bad_escape)) if p.end else (p.data,))
            await ctx.tick()
            if i_acc:
                pos += 1
            idle = idle + 1 if pos >= len(line) else 0

    _run(dut, bench)
    return toks


@settings(max_examples=25, deadline=None)
@given(frames=st.lists(st.tuples(st.binary(max_size=12), st.binary(max_size=20)), min_size=1, max_size=3),
       seed=st.integers(0, 1000))
def test_decoder_matches_reference_with_garbage_and_stalls(frames, seed):
    line = b"".join(garbage + P.Frame(2, i, payload).encode() for i, (garbage, payload) in enumerate(frames))
    line += bytes([P.ESC, 0x00, P.END, P.ESC, P.END])     # a bad escape and an ESC right before END
    assert _decoder_tokens(line, seed) == _decode_reference(line)


@settings(max_examples=15, deadline=None)
@given(bodies=st.lists(st.binary(min_size=1, max_size=30), min_size=1, max_size=3), seed=st.integers(0, 1000))
def test_encoder_matches_protocol(bodies, seed):
    dut = FrameEncoder()
    out, lasts = bytearray(), []
    rnd = random.Random(seed)
    stream = [(b, int(i == len(body) - 1)) for body in bodies for i, b in enumerate(body)]
    expected = b"".join(bytes([P.END]) + P.slip_escape(body + P.crc16(body).to_bytes(2, "big")) + bytes([P.END])
                        for body in bodies)

    async def bench(ctx):
        pos = 0
        for _ in range(4000):
            if pos < len(stream) and rnd.random() < 0.8:
                ctx.set(dut.i.valid, 1); ctx.set(dut.i.payload, {"data": stream[pos][0], "last": stream[pos][1]})
            else:
                ctx.set(dut.i.valid, 0)
            ready_o = rnd.random() < 0.7
            ctx.set(dut.o.ready, ready_o)
            i_acc = ctx.get(dut.i.valid) and ctx.get(dut.i.ready)
            if ctx.get(dut.o.valid) and ready_o:
                p = ctx.get(dut.o.payload)
                out.append(p.data); lasts.append(p.last)
            await ctx.tick()
            if i_acc:
                pos += 1
            if pos == len(stream) and len(out) == len(expected):
                break

    _run(dut, bench)
    assert bytes(out) == expected
    assert [i for i, l in enumerate(lasts) if l] == [i for i in range(len(expected))
                                                    if expected[i] == P.END and (i + 1 == len(expected) or
                                                                                 expected[i + 1] == P.END)]
