"""The serial design's TT forward engine: one multiply-accumulate a cycle, pixels -> logits.

Runs a `SerialProgram` (rtl/serial_program.py): per step an odometer whose levels add constant
deltas to two running addresses (operand, TT-core entry); every constant (loop counts, deltas,
shifts, clamp bounds, which buffer) is a small table indexed by the step number that Yosys
folds into logic.  Pipeline, one term a cycle: issue (addresses; `work_addr` registered, so
one cycle after the data address) -> memory data -> data operand (fabric register) -> operand
registers -> product register -> accumulator -> result register.  Operands and product are
reset-less registers around the one 16 x 16 signed multiplier, so Yosys packs them into an
SB_MAC16; the data operand is first registered in the fabric (in its multiplexer's logic cells,
near the RAMs: no RAM-to-MAC path); the exact accumulator is fabric.  The
accumulator starts at the rounding constant; a
layer's last step issues the bias as an extra term (bias * 2^a_shift) before each output's K
MACs; the registered result clamp(acc >> shift, lo, hi) (ReLU: lo = 0) is written to the other
state buffer at the next address, or on the final step offered on `o`, whose acceptance each
logit awaits before the next one's terms are issued.  Every step ends with a pipeline drain, so
a step never reads what is still being written.

Cycles per sample: `SerialProgram.cycles()` (o.ready high whenever o.valid; 367,192 for
mnist_tt(6)).  Timing from a `start` in cycle t: `busy` is high from t + 1 (a set-up cycle) to
the cycle in which the last logit is accepted; bulk addresses (x_base + i // 2) are presented
in cycles t + 2 .. t + 1 + n_out * K of the first step (37,632 cycles for MNIST), data expected
the cycle after; bulk is not read afterwards and never written.
"""
from __future__ import annotations

from amaranth.hdl import Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import stream, wiring
from amaranth.lib.wiring import In, Out

from .serial_program import SerialProgram
from .spram import SinglePortSignature


class SerialEngine(wiring.Component):
    """Forward of one sample per `start` through `program` (see module docstring)."""

    def __init__(self, program: SerialProgram) -> None:
        self.program = program
        super().__init__({
            "start": In(1), "x_base": In(16), "busy": Out(1),
            "bulk": Out(SinglePortSignature(1 << 15, 16)),
            "work_addr": Out(range(program.n_params)), "work_data": In(16),
            "state_a": Out(SinglePortSignature(program.state_depth, 16)),
            "state_b": Out(SinglePortSignature(program.state_depth, 16)),
            "o": Out(stream.Signature(signed(16))),
            "cycles": Out(32),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        prog = self.program
        steps = prog.steps
        n_lv = prog.levels
        step = Signal(range(len(steps)))

        def table(values: list[int], shape) -> Signal:
            """A per-step constant: a comb signal switched on `step`, equal values grouped."""
            sig = Signal(shape)
            groups: dict[int, list[int]] = {}
            for i, v in enumerate(values):
                groups.setdefault(int(v), []).append(i)
            if len(groups) == 1:
                m.d.comb += sig.eq(next(iter(groups)))
                return sig
            with m.Switch(step):
                for v, idx in groups.items():
                    with m.Case(*idx):
                        m.d.comb += sig.eq(v)
            return sig

        # --- per-step constants -------------------------------------------------------------
        src_bits = max(max(prog.n_in, prog.state_depth) - 1, 1).bit_length()
        w_bits = max(prog.n_params - 1, 1).bit_length()
        src_pix = table([s.src == "pixels" for s in steps], 1)
        src_a = table([s.src == "a" for s in steps], 1)
        dst_a = table([s.dst == "a" for s in steps], 1)
        final = table([s.dst == "out" for s in steps], 1)
        last = table([s.last for s in steps], 1)
        w_base = table([s.w_base for s in steps], unsigned(w_bits))
        b_base = table([s.b_base for s in steps], unsigned(w_bits))
        a_bias = table([1 << s.a_shift for s in steps], signed(16))
        round_c = table([s.round_const for s in steps], signed(prog.acc_bits))
        lo = table([-(s.hi + 1) for s in steps], signed(16))
        hi = table([s.hi for s in steps], signed(16))

        # --- issue: state machine and odometer ------------------------------------------------
        idx = [Signal(range(max(s.counts[lv] for s in steps)), name=f"idx{lv}") for lv in range(n_lv)]
        reload = [table([s.counts[lv] - 1 for s in steps], unsigned(len(idx[lv]))) for lv in range(n_lv)]
        # registered one cycle ahead: idx == 0 per level, and which level's deltas the next advance
        # adds (one-hot: the lowest level not at its end); the deltas are an AND-OR of that and
        # the step tables, two LUT levels before the address adders (no 25-bit delta registers)
        zero = [Signal(name=f"zero{lv}") for lv in range(n_lv)]
        sel = [Signal(name=f"sel{lv}") for lv in range(n_lv)]
        z_next = [Signal(name=f"z_next{lv}") for lv in range(n_lv)]
        m.d.comb += [zn.eq(z) for zn, z in zip(z_next, zero)]
        src_sum = Signal(src_bits)
        w_sum = Signal(w_bits)
        b_addr = Signal(w_bits)
        src_d = Const(0, src_bits)
        w_d = Const(0, w_bits)
        below = Const(1, 1)
        for lv in range(n_lv):
            sd = table([s.src_delta[lv] % (1 << src_bits) for s in steps], unsigned(src_bits))
            wd = table([s.w_delta[lv] % (1 << w_bits) for s in steps], unsigned(w_bits))
            src_d = src_d | Mux(sel[lv], sd, 0)
            w_d = w_d | Mux(sel[lv], wd, 0)
            m.d.sync += sel[lv].eq(below & ~z_next[lv])
            below = below & z_next[lv]
        m.d.sync += [z.eq(zn) for z, zn in zip(zero, z_next)]
        bias_ph = Signal()   # next issue is the bias term of an output
        done = Signal()      # the step's last term has been issued
        elem_end = zero[0] & zero[1]
        step_end = Const(1, 1)
        for z in zero:
            step_end = step_end & z

        wcount = Signal(range(max(prog.state_depth, 2)))   # write address, reset by LOAD
        x_base = Signal(16)
        busy = Signal()
        m.d.comb += self.busy.eq(busy)
        # pipeline tags: stage 1 memory data (work address registered), 2 a_in and work data,
        # 3 operands, 4 product, 5 accumulator, 6 result
        v = [Signal(name=f"v{i}") for i in range(7)]
        fresh = Signal(init=1)   # the next term into the accumulator starts an output (follows a last)
        lastt = [Signal(name=f"last{i}") for i in range(7)]
        bias = [Signal(name=f"bias{i}") for i in range(5)]
        pix_hi1 = Signal()
        o_valid = Signal()
        m.d.comb += self.o.valid.eq(o_valid)
        pipe_empty = ~v[1] & ~v[2] & ~v[3] & ~v[4] & ~v[5]

        m.d.comb += [
            self.bulk.addr.eq(x_base + src_sum[1:]),
        ]
        m.d.sync += self.work_addr.eq(Mux(bias_ph, b_addr, w_sum))
        with m.If(busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [busy.eq(1), x_base.eq(self.x_base), step.eq(0), self.cycles.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.sync += [src_sum.eq(0), w_sum.eq(w_base), b_addr.eq(b_base), bias_ph.eq(last),
                             done.eq(0), wcount.eq(0)]
                m.d.sync += [i.eq(r) for i, r in zip(idx, reload)]
                m.d.comb += [zn.eq(r == 0) for zn, r in zip(z_next, reload)]
                m.next = "RUN"
            with m.State("RUN"):
                m.d.comb += [v[0].eq(1), bias[0].eq(bias_ph)]
                with m.If(bias_ph):
                    m.d.sync += [b_addr.eq(b_addr + 1), bias_ph.eq(0)]
                with m.Else():
                    m.d.comb += lastt[0].eq(elem_end)
                    m.d.sync += [bias_ph.eq(elem_end & last),
                                 src_sum.eq(src_sum + src_d), w_sum.eq(w_sum + w_d)]
                    carry = Const(1, 1)
                    for lv in range(n_lv):
                        with m.If(carry):
                            m.d.sync += idx[lv].eq(Mux(zero[lv], reload[lv], idx[lv] - 1))
                            m.d.comb += z_next[lv].eq(Mux(zero[lv], reload[lv] == 0, idx[lv] == 1))
                        carry = carry & zero[lv]
                    with m.If(step_end):
                        m.d.sync += done.eq(1)
                        m.next = "DRAIN"
                    with m.Elif(elem_end & final):
                        m.next = "DRAIN"
            with m.State("DRAIN"):
                with m.If(final):
                    with m.If(pipe_empty & (~o_valid | self.o.ready)):
                        with m.If(done):
                            m.d.sync += busy.eq(0)
                            m.next = "IDLE"
                        with m.Else():
                            m.next = "RUN"
                with m.Elif(pipe_empty):
                    m.d.sync += step.eq(step + 1)
                    m.next = "LOAD"

        # --- datapath ---------------------------------------------------------------------------
        m.d.sync += [v[i + 1].eq(v[i]) for i in range(6)]
        m.d.sync += [lastt[i + 1].eq(lastt[i]) for i in range(6)]
        m.d.sync += [bias[i + 1].eq(bias[i]) for i in range(4)]
        m.d.sync += pix_hi1.eq(src_sum[0])
        m.d.comb += [self.state_a.addr.eq(Mux(src_a, src_sum, wcount)),
                     self.state_b.addr.eq(Mux(src_a, wcount, src_sum))]
        pixel = Mux(pix_hi1, self.bulk.rdata[8:], self.bulk.rdata[:8])
        state = Mux(src_a, self.state_a.rdata, self.state_b.rdata)
        # no reset: Yosys packs only reset-less registers into the SB_MAC16.  a_in is a fabric
        # register (in its multiplexer's logic cells): the RAMs (SPRAM, at the die's corners) reach
        # a nearby flip-flop, not the MAC; the work address is registered to keep b aligned.
        a_in = Signal(signed(16), reset_less=True)
        a_reg = Signal(signed(16), reset_less=True)
        b_reg = Signal(signed(16), reset_less=True)
        p_reg = Signal(signed(32), reset_less=True)
        acc = Signal(signed(prog.acc_bits))
        m.d.sync += [
            a_in.eq(Mux(bias[1], a_bias, Mux(src_pix, pixel, state))),
            a_reg.eq(a_in),
            b_reg.eq(self.work_data),
            p_reg.eq(a_reg * b_reg),
        ]
        addend = p_reg
        if any(s.b_extra for s in steps):
            extra = table([s.b_extra for s in steps], range(max(s.b_extra for s in steps) + 1))
            addend = Mux(bias[4], p_reg << extra, p_reg)
        with m.If(v[4]):
            m.d.sync += [acc.eq(Mux(fresh, round_c, acc) + addend), fresh.eq(lastt[4])]

        # result, registered: clamp(acc >> shift, lo, hi) as a sign-bits check (no comparator)
        shifted = Signal(signed(prog.acc_bits - min(s.shift for s in steps)))
        sh = table([s.shift for s in steps], range(max(s.shift for s in steps) + 1))
        with m.Switch(sh):
            for s in sorted({s.shift for s in steps}):
                with m.Case(s):
                    m.d.comb += shifted.eq(acc >> s)
        sign = shifted[-1]
        fits = Signal()
        bits = table([s.hi.bit_length() + 1 for s in steps], range(17))
        with m.Switch(bits):
            for b in sorted({s.hi.bit_length() + 1 for s in steps}):
                with m.Case(b):
                    top = shifted[b - 1:]
                    m.d.comb += fits.eq((top == 0) | (top == (1 << len(top)) - 1) if len(top) else 1)
        relu = table([s.lo == 0 for s in steps], 1)
        result = Signal(signed(16), reset_less=True)
        with m.If(v[5] & lastt[5]):
            low = shifted[:16] if len(shifted) >= 16 else shifted
            m.d.sync += result.eq(Mux(sign & relu, 0, Mux(fits, low, Mux(sign, lo, hi))))
        write = v[6] & lastt[6] & ~final
        m.d.comb += [
            self.state_a.wdata.eq(result), self.state_b.wdata.eq(result),
            self.state_a.we.eq(write & dst_a), self.state_b.we.eq(write & ~dst_a),
            self.o.payload.eq(result),
        ]
        with m.If(write):
            m.d.sync += wcount.eq(wcount + 1)
        with m.If(v[5] & lastt[5] & final):
            m.d.sync += o_valid.eq(1)
        with m.Elif(self.o.ready):
            m.d.sync += o_valid.eq(0)
        return m
