"""A stand-in training datapath of the right size: P MAC lanes and the memories of a `MemoryPlan`.

Used by `boards.top` until the real engines (rtl/tt_network.py, the ZO step, the command
processor) are registered, so every board build measures the resources and timing of what the
real design must contain: P lanes each reading its own parameter bank, perturbing the weight with
its own xorshift32 stream (w + mu*xi, xi = +-1), multiplying it (one hard multiplier) with a
broadcast operand from the batch or the ping-pong state buffers, accumulating at full width,
requantising (round half up, saturate) and writing the result to the other state buffer, plus a
loss accumulator and a sign-step parameter update.  It is NOT a TT engine: its address sequences
are simple counters; nothing here is checked against golden.

Byte commands on `rx` (little endian), replies on `tx`:
  'A' a0 a1 a2      pointer := a (bits 21..23 select params/bulk/state_a/state_b)
  'W' d0 d1         write word at pointer, pointer += 1
  'R'               reply the word at pointer (2 bytes), pointer += 1
  'G' K g0 g1 mode  run g groups of K-cycle inner products (mode[0:2] source: 0 batch, 1 a, 2 b;
                    mode[2:8] mu); reply the 32-bit sum of the requantised outputs
  'U' n0 n1         sign-update the first n words of every parameter bank; reply 0x55
"""
from __future__ import annotations

import math

from amaranth.hdl import Array, Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.prng import fmix32

from .sizing import MemoryPlan
from ttzo.rtl.spram import SinglePortRAM

ACC_WIDTH = 40
REGION_PARAMS, REGION_BULK, REGION_A, REGION_B = range(4)


def _xorshift32(x):
    x1 = x ^ (x << 13)[:32]
    x2 = x1 ^ (x1 >> 17)
    return (x2 ^ (x2 << 5)[:32])[:32]


class RepresentativeDatapath(wiring.Component):
    """P lanes + parameter banks + bulk (batch, labels, momentum) + two state buffers."""

    def __init__(self, plan: MemoryPlan, cfg: FixedConfig = DEFAULT_CONFIG, *, use_spram: bool = False) -> None:
        self.plan, self.cfg, self.use_spram = plan, cfg, use_spram
        self.lanes = plan.lanes
        self.bank_depth = plan.region("params").depth
        self.bulk_depth = plan.group_words16("batch")
        self.batch_bytes = plan.region("batch").depth
        self.state_depth = plan.region("state_a").depth       # the ping-pong part of each state RAM
        self.state_a_depth = max(self.state_depth, plan.group_words16("state_a"))   # + loss tables
        self.shift_batch = cfg.weight.frac + cfg.input.frac - cfg.state.frac
        self.shift_state = cfg.weight.frac + cfg.state.frac - cfg.state.frac
        if min(self.shift_batch, self.shift_state) < 1:
            raise ValueError("requantisation shift must be >= 1 for the stand-in datapath")
        super().__init__({"rx": In(stream.Signature(8)), "tx": Out(stream.Signature(8))})

    def elaborate(self, platform) -> Module:
        m = Module()
        P = self.lanes
        bank_bits = max(0, (P - 1).bit_length())

        # ---------------- memories ----------------
        banks = []
        for i in range(P):
            mem = Memory(shape=unsigned(16), depth=self.bank_depth, init=[])
            m.submodules[f"bank{i}"] = mem
            banks.append((mem.read_port(), mem.write_port()))
        m.submodules.bulk = bulk = SinglePortRAM(self.bulk_depth, 16, use_spram=self.use_spram)
        m.submodules.state_a = sa = SinglePortRAM(self.state_a_depth, 16, use_spram=self.use_spram)
        m.submodules.state_b = sb = SinglePortRAM(self.state_depth, 16, use_spram=self.use_spram)
        rams = {REGION_BULK: bulk, REGION_A: sa, REGION_B: sb}

        # ---------------- command front end ----------------
        ptr = Signal(24)
        region, offset = ptr[21:24], ptr[:21]
        bank_sel = offset[:bank_bits] if bank_bits else Const(0, 1)
        word = offset[bank_bits:]
        opcode = Signal(8)
        arg = Signal(32)
        nargs = Signal(range(5))
        iarg = Signal(range(5))
        tx_buf = Signal(32)
        tx_n = Signal(range(5))
        m.d.comb += self.tx.payload.eq(tx_buf[:8])

        bank_raddr = Signal(range(max(2, self.bank_depth)))
        bank_waddr = Signal.like(bank_raddr)
        bank_wdata = Signal(16)
        bank_we = Signal(P)
        for i, (rp, wp) in enumerate(banks):
            m.d.comb += [rp.addr.eq(bank_raddr), wp.addr.eq(bank_waddr), wp.data.eq(bank_wdata),
                         wp.en.eq(bank_we[i])]
        bank_rdata = Array(rp.data for rp, _ in banks)

        # run-phase registers
        K = Signal(8)
        src = Signal(2)
        mu = Signal(6)
        kleft = Signal(8)          # inner-product steps left in this group - 1
        gleft = Signal(16)         # groups left - 1
        overlap = Signal()         # K >= P + 4: a group's drain ends before the next capture (needs K > P)
        xlimit = Signal(range(max(self.batch_bytes, self.state_depth) + 1))
        xaddr = Signal(range(max(self.batch_bytes, self.state_depth) + 1))
        waddr = Signal(range(max(2, self.bank_depth)))
        dest_addr = Signal(range(self.state_depth + 1))
        loss = Signal(32)
        drain = Signal(range(P + 1))
        dv = Signal()              # requantised word valid (one cycle after leaving the drain chain)
        v1 = Signal(); f1 = Signal(); l1 = Signal(); byte1 = Signal()
        v2 = Signal(); f2 = Signal(); l2 = Signal()
        v3 = Signal(); f3 = Signal(); l3 = Signal()
        at_start = Signal()        # the next issue is the first of a group
        Km1 = Signal(8)
        draining = Signal()
        rd_bank, rd_other = Signal(16), Signal(16)
        upd = Signal(16)
        upd_n = Signal(16)
        upd_phase = Signal(2)
        upd_q = [Signal(16, name=f"upd{i}") for i in range(P)]
        running = Signal()

        # lanes
        prng = [Signal(32, init=fmix32(i + 1) or 1, name=f"prng{i}") for i in range(P)]
        acc = [Signal(signed(ACC_WIDTH), name=f"acc{i}") for i in range(P)]
        prod = [Signal(signed(32), name=f"prod{i}") for i in range(P)]
        shadow = [Signal(signed(ACC_WIDTH), name=f"shadow{i}") for i in range(P)]

        # Pipeline: issue addresses -> s1 RAM data -> s2 registered RAM data (w_q, x_raw) -> s3 perturbed
        # weight and broadcast operand (wp, x_q) -> s4 product (hard multiplier) -> accumulate.
        # Every RAM output is registered before any logic and every multiplier has registered inputs
        # and output, so no path crosses a block RAM, a cascade mux and a multiplier in one cycle.
        x_raw = Signal(signed(16))      # batch bytes zero-extend: one 16x16 hard multiplier per lane
        x_q = Signal(signed(16))
        src_word = Mux(src == 1, sa.rdata, sb.rdata)
        m.d.sync += [x_raw.eq(Mux(src == 0, Mux(byte1, bulk.rdata[8:], bulk.rdata[:8]), src_word.as_signed())),
                     x_q.eq(x_raw)]
        v4, f4, l4 = Signal(), Signal(), Signal()

        issue = Signal()
        for i in range(P):
            w_q = Signal(signed(16), name=f"w{i}")
            wp = Signal(signed(16), name=f"wpert{i}")
            m.d.sync += [w_q.eq(bank_rdata[i].as_signed()), wp.eq(Mux(prng[i][31], w_q - mu, w_q + mu)),
                         prod[i].eq(x_q * wp)]
            with m.If(v2):
                m.d.sync += prng[i].eq(_xorshift32(prng[i]))
            with m.If(v4):
                acc_next = Mux(f4, prod[i], acc[i] + prod[i])
                m.d.sync += acc[i].eq(acc_next)
                with m.If(l4):
                    m.d.sync += shadow[i].eq(acc_next)
            if i + 1 < P:
                with m.If(draining):
                    m.d.sync += shadow[i].eq(shadow[i + 1])
        m.d.sync += [v1.eq(issue), f1.eq(at_start), l1.eq(kleft == 0), byte1.eq(xaddr[0]),
                     v2.eq(v1), f2.eq(f1), l2.eq(v1 & l1), v3.eq(v2), f3.eq(f2), l3.eq(v2 & l2),
                     v4.eq(v3), f4.eq(f3), l4.eq(v3 & l3)]
        with m.If(v4 & l4):
            m.d.sync += [drain.eq(P), draining.eq(1)]
        with m.Elif(draining):
            m.d.sync += drain.eq(drain - 1)
            with m.If(drain == 1):
                m.d.sync += draining.eq(0)

        # requantise the head of the drain chain: round half up, saturate to 16 bits
        def round_half_up(v, s: int):
            return (v + (1 << (s - 1))) >> s
        rounded = Signal(signed(ACC_WIDTH))   # registered: rounding and saturation in separate cycles
        m.d.sync += [rounded.eq(Mux(src == 0, round_half_up(shadow[0], self.shift_batch),
                                    round_half_up(shadow[0], self.shift_state))), dv.eq(draining)]
        out_word = Signal(signed(16))         # registered saturation; written one cycle after `rounded`
        dv2 = Signal()
        hi = rounded[15:]
        m.d.sync += [out_word.eq(Mux((hi == 0) | (hi == (1 << len(hi)) - 1), rounded[:16],
                                     Mux(rounded[-1], -32768, 32767))), dv2.eq(dv)]
        with m.If(dv2):
            m.d.sync += [loss.eq(loss + out_word),
                         dest_addr.eq(Mux(dest_addr == self.state_depth - 1, 0, dest_addr + 1))]

        # default memory controls
        m.d.comb += [bank_raddr.eq(word), bank_waddr.eq(word), bank_wdata.eq(arg[:16])]
        for ram in rams.values():
            m.d.comb += [ram.addr.eq(offset), ram.wdata.eq(arg[:16])]

        with m.FSM():
            with m.State("IDLE"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [opcode.eq(self.rx.payload), iarg.eq(0), arg.eq(0)]
                    with m.Switch(self.rx.payload):
                        for op, n in ((ord("A"), 3), (ord("W"), 2), (ord("G"), 4), (ord("U"), 2)):
                            with m.Case(op):
                                m.d.sync += nargs.eq(n)
                                m.next = "ARGS"
                        with m.Case(ord("R")):
                            m.next = "READ"
            with m.State("ARGS"):
                m.d.comb += self.rx.ready.eq(1)
                with m.If(self.rx.valid):
                    m.d.sync += [arg.word_select(iarg, 8).eq(self.rx.payload), iarg.eq(iarg + 1)]
                    with m.If(iarg + 1 == nargs):
                        m.next = "EXEC"
            with m.State("EXEC"):
                with m.Switch(opcode):
                    with m.Case(ord("A")):
                        m.d.sync += ptr.eq(arg[:24])
                        m.next = "IDLE"
                    with m.Case(ord("W")):
                        with m.Switch(region):
                            with m.Case(REGION_PARAMS):
                                m.d.comb += bank_we.eq((Const(1, P) << bank_sel)[:P])
                            for r, ram in rams.items():
                                with m.Case(r):
                                    m.d.comb += ram.we.eq(1)
                        m.d.sync += ptr.eq(ptr + 1)
                        m.next = "IDLE"
                    with m.Case(ord("G")):
                        kk = Mux(arg[:8] == 0, 1, arg[:8])
                        m.d.sync += [K.eq(kk), Km1.eq(kk - 1), kleft.eq(kk - 1), gleft.eq(arg[8:24] - 1),
                                     overlap.eq(kk >= P + 4), at_start.eq(1),
                                     src.eq(arg[24:26]), mu.eq(arg[26:32]), xaddr.eq(0),
                                     xlimit.eq(Mux(arg[24:26] == 0, self.batch_bytes - 1, self.state_depth - 1)),
                                     waddr.eq(0), dest_addr.eq(0), loss.eq(0), running.eq(arg[8:24] != 0)]
                        m.next = "RUN"
                    with m.Case(ord("U")):
                        m.d.sync += [upd.eq(0), upd_n.eq(arg[:16]), upd_phase.eq(0)]
                        m.next = "UPDATE"
            with m.State("READ"):
                m.next = "READ_WAIT"
            with m.State("READ_WAIT"):               # RAM data valid: register the bank select first
                m.d.sync += [rd_bank.eq(bank_rdata[bank_sel]),
                             rd_other.eq(Mux(region == REGION_BULK, bulk.rdata,
                                             Mux(region == REGION_A, sa.rdata, sb.rdata)))]
                m.next = "READ_SEL"
            with m.State("READ_SEL"):
                m.d.sync += [tx_buf.eq(Mux(region == REGION_PARAMS, rd_bank, rd_other)), tx_n.eq(2),
                             ptr.eq(ptr + 1)]
                m.next = "SEND"
            with m.State("RUN"):
                m.d.comb += [bank_raddr.eq(waddr), sa.addr.eq(Mux(src == 1, xaddr, dest_addr)),
                             sb.addr.eq(Mux(src == 2, xaddr, dest_addr)), bulk.addr.eq(xaddr >> 1)]
                m.d.comb += [sa.we.eq(dv2 & (src != 1)), sb.we.eq(dv2 & (src == 1)),
                             sa.wdata.eq(out_word), sb.wdata.eq(out_word)]
                pipe_idle = ~v1 & ~v2 & ~v3 & ~v4 & ~draining & ~dv & ~dv2
                go = running & (~at_start | overlap | pipe_idle)
                m.d.comb += issue.eq(go)
                with m.If(go):
                    m.d.sync += [xaddr.eq(Mux(xaddr == xlimit, 0, xaddr + 1)),
                                 waddr.eq(Mux(waddr == self.bank_depth - 1, 0, waddr + 1)),
                                 kleft.eq(Mux(kleft == 0, Km1, kleft - 1)), at_start.eq(kleft == 0)]
                    with m.If(kleft == 0):
                        m.d.sync += gleft.eq(gleft - 1)
                        with m.If(gleft == 0):
                            m.d.sync += running.eq(0)
                with m.If(~running & pipe_idle):
                    m.d.sync += [tx_buf.eq(loss), tx_n.eq(4)]
                    m.next = "SEND"
            with m.State("UPDATE"):
                m.d.comb += [bank_raddr.eq(upd), bank_waddr.eq(upd)]
                with m.If(upd == upd_n):
                    m.d.sync += [tx_buf.eq(0x55), tx_n.eq(1)]
                    m.next = "SEND"
                with m.Elif(upd_phase == 2):            # write the registered new values
                    for i, (rp, wp) in enumerate(banks):
                        m.d.comb += [wp.data.eq(upd_q[i]), bank_we[i].eq(1)]
                    m.d.sync += [upd.eq(upd + 1), upd_phase.eq(0)]
                with m.Elif(upd_phase == 1):            # RAM data valid: theta - sign step, registered
                    for i, (rp, wp) in enumerate(banks):
                        m.d.sync += upd_q[i].eq(rp.data.as_signed() - Mux(prng[i][30], -1, 1))
                    m.d.sync += upd_phase.eq(2)
                with m.Else():
                    m.d.sync += upd_phase.eq(1)
            with m.State("SEND"):
                m.d.comb += self.tx.valid.eq(1)
                with m.If(self.tx.ready):
                    m.d.sync += [tx_buf.eq(tx_buf >> 8), tx_n.eq(tx_n - 1)]
                    with m.If(tx_n == 1):
                        m.next = "IDLE"
        return m
