"""The serial design's training sequencer: golden zo_fixed.signrge_step (forward differences), one word a cycle.

Step t with N queries (docs/rtl-serial.md; every pass walks the flat parameter order p = 0..d-1):
  q = 0..N   perturb pass: work[p] = master[p] (q = 0) or sat16(master[p] + mu_p * xi_{q-1,p}),
             xi from stream (seed, t, q-1) (its seed state is first stored in scratch slot q-1);
             forward pass: per sample b the label is latched, the engine runs (pixels from bulk,
             parameters from `work`), its logits go to the loss unit, L_q += loss (48-bit exact);
             log entry (L_q, correct) at forwards mod log_depth; q = 0: L_0 -> ``l0`` and a copy in
             the d words of the last scratch slot (overwritten by d_{N-1} only when N = n_max, after
             its last read); q > 0: d_{q-1} = L_q - L_0 -> scratch slot q-1.
  update     per p: a_p = sum_i d_i xi_{i,p} (each stream's state is read from scratch, stepped once,
             written back), theta_p <- sat16(theta_p - alpha_p sign(a_p)) written back to bulk.
INFERENCE is the q = 0 pass alone (a step with N = 0 and no update: steps_done = 1, changed = 0).
Cycles per step, d parameters, B samples, T_b cycles from the engine's start to sample b's loss result
(both counted), S = 162 (seeding, rtl/serial_seeder): 3 + (N + 1)(4d + 9) + N (S + 14)
+ [N > 0](4 + d (17 N + 8)) + (N + 1) sum_b (10 + T_b); three more cycles per operation.

Timing (a 30 MHz iCE40 at ~98 % use): every output to the memories is a register (the engine's own
bulk address passes one 2:1 multiplexer), and no path has more than about 4-5 LUT levels.  A bulk
request is decoded from the (one-hot) state into small registers (base-address code, offset
select, data select, write enable), then address (constant + p, 6 (q - 1) or 4 e) and data are
formed and registered into the port: a read asked for in state S is in ``rd`` (rdata, registered)
in S + 4, a write lands in S + 2 with the value its source holds in S + 1.  The 16-bit adder's
addend, the addend of theta's saturating step, the changed flag and every loop-end test (p, q, the
sample count, the step count) are registered too; the passes wait out these latencies (4d cycles a
perturb pass, d (17 N + 8) for the update: still negligible next to the (N + 1) B forwards).
Every 48-bit sum (L_q, d_i = L_q - L_0, a_p) goes through one 16-bit adder on a rotating 48-bit
accumulator, three chunks low first, and a_p != 0 is tested a chunk a cycle, so no wide adder,
comparator or multiplexer is built.  Only Rademacher xi are implemented: ``kinds`` = 1, so the top
refuses ``kind`` >= 1 with ERR_CONFIG (the input is not read).
``abort`` resets every register of the trainer and its blocks (memories keep their contents).
"""
from __future__ import annotations

from typing import Callable

from amaranth.hdl import Cat, Module, Mux, ResetInserter, Signal, Value, signed, unsigned
from amaranth.lib import wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out

from ttzo.golden.formats import DEFAULT_CONFIG, FixedConfig
from ttzo.golden.network import TTNet

from .prng import xorshift32_value
from .serial_map import BulkMap, SCRATCH_QUERY_WORDS
from .serial_seeder import LATENCY
from .spram import SinglePortRAM, SinglePortSignature

BULK_DEPTH = 1 << 15
SUM_BITS = 48            # L_q, d_i, a_p: three 16-bit chunks
STEP_BITS = 20           # golden stream_seed reads (step << 12) mod 2^32: step t mod 2^20
# scratch slot words (serial_map.SCRATCH_QUERY_WORDS): d_i at 0..2, the stream state (lo, hi) at 3, 4
SLOT_STATE = 3


def step_cycles(d: int, n_queries: int, batch: int, t_sample: int, seeding: int = LATENCY + 2) -> int:
    """Cycles of one signRGE step (the module docstring's formula): d parameters, N queries, `batch`
    samples of `t_sample` cycles each from the engine's start to the loss result (both counted),
    `seeding` cycles per stream seed; an operation adds 3.  N = 0 is an inference."""
    n = n_queries
    return (3 + (n + 1) * (4 * d + 9) + n * (seeding + 14) + (4 + d * (17 * n + 8) if n else 0)
            + (n + 1) * batch * (10 + t_sample))


def add_cin(a: Value, b: Value, cin: Value) -> Value:
    """a + b + cin as one adder (cin enters as the low bit of both operands)."""
    return (Cat(cin, a) + Cat(cin, b))[1:] if not (a.shape().signed or b.shape().signed) else \
        (Cat(cin, a).as_signed() + Cat(cin, b).as_signed())[1:].as_signed()


class Op:
    INFERENCE = 1
    STEPS = 2


def real_blocks(net: TTNet, cfg: FixedConfig) -> tuple:
    """(program, engine, loss unit, seeder) of the serial design for `net`."""
    from .serial_engine import SerialEngine
    from .serial_loss import SerialLoss
    from .serial_program import compile_serial
    from .serial_seeder import SerialSeeder
    program = compile_serial(net, cfg)
    return program, SerialEngine(program), SerialLoss(net.out_features, cfg.act, cfg.loss), SerialSeeder()


class SerialTrainer(wiring.Component):
    """signRGE steps / inference over the batch in `bulk`; see the module docstring.

    `blocks` builds (program, engine, loss, seeder) for (net, cfg): the real serial blocks by
    default, stand-ins in tests.  ``op`` is read with ``start``; the other control inputs (``k_steps``
    too) must stay stable while ``busy``.
    """

    #: perturbation kinds implemented (``kind`` < kinds): Rademacher only
    kinds = 1

    def __init__(self, net: TTNet, cfg: FixedConfig = DEFAULT_CONFIG, bulk_map: BulkMap | None = None, *,
                 use_spram: bool = False, blocks: Callable[[TTNet, FixedConfig], tuple] = real_blocks) -> None:
        if bulk_map is None:
            raise ValueError("SerialTrainer needs the design's BulkMap")
        if cfg.weight.bits > 16 or cfg.bias.bits > 16:
            raise ValueError("the serial design keeps one 16-bit code a parameter")
        if bulk_map.n_params != net.n_params or bulk_map.n_in != net.in_features:
            raise ValueError(f"bulk map sized for {bulk_map.n_params} parameters / {bulk_map.n_in} inputs, "
                             f"net has {net.n_params} / {net.in_features}")
        if bulk_map.depth > BULK_DEPTH or cfg.loss.bits > SUM_BITS:
            raise ValueError("bulk map deeper than 32K words or loss wider than 48 bits")
        if bulk_map.log_depth < 1:
            raise ValueError("the log needs at least one entry")
        self.net, self.cfg, self.map, self.use_spram = net, cfg, bulk_map, use_spram
        self.program, self.engine, self.loss, self.seeder = blocks(net, cfg)
        if self.program.n_params != net.n_params:
            raise ValueError("program and net disagree on the parameter count")
        mask = net.bias_mask()
        self.bias0 = bool(mask[0])
        #: p where is_bias changes between p and p + 1
        self.bias_flips = [p for p in range(net.n_params - 1) if mask[p] != mask[p + 1]]
        self.work = Memory(shape=unsigned(16), depth=net.n_params, init=[])
        super().__init__({
            "start": In(1), "op": In(2), "k_steps": In(16), "abort": In(1),
            "n_queries": In(range(bulk_map.n_max + 1)), "n_samples": In(range(bulk_map.max_samples + 1)),
            "mu_w": In(signed(16)), "mu_b": In(signed(16)), "alpha_w": In(signed(16)), "alpha_b": In(signed(16)),
            "seed": In(32), "step0": In(32), "kind": In(1),
            "busy": Out(1), "steps_done": Out(16), "forwards": Out(range(0xFFFF * (bulk_map.n_max + 1) + 1)),
            "l0": Out(signed(SUM_BITS)), "last_correct": Out(range(bulk_map.max_samples + 1)),
            "changed": Out(range(net.n_params + 1)),
            "cycles": Out(SUM_BITS),
            "bulk": Out(SinglePortSignature(BULK_DEPTH, 16)),
        })

    def elaborate(self, platform):
        m = Module()
        bm, d = self.map, self.net.n_params
        m.submodules.engine = eng = self.engine
        m.submodules.loss = lossu = self.loss
        m.submodules.seeder = seeder = self.seeder
        m.submodules.work = self.work
        m.submodules.state_a = sa = SinglePortRAM(self.program.state_depth, 16, use_spram=self.use_spram)
        m.submodules.state_b = sb = SinglePortRAM(self.program.state_depth, 16, use_spram=self.use_spram)
        wiring.connect(m, eng.state_a, sa)
        wiring.connect(m, eng.state_b, sb)
        wiring.connect(m, eng.o, lossu.i)
        w_rd, w_wr = self.work.read_port(), self.work.write_port()
        m.d.comb += [w_rd.addr.eq(eng.work_addr), eng.work_data.eq(w_rd.data)]

        # --- registers ----------------------------------------------------------------------------
        inf = Signal()                                   # the running op is INFERENCE
        # q: the pass's parameter set (0 = master, q > 0: stream q-1, scratch slot q-1), and the
        # update's stream loop q = 1..N; s6 = 6 (q - 1), the slot's word offset
        q = Signal(range(bm.n_max + 1))
        s6 = Signal(range(SCRATCH_QUERY_WORDS * max(bm.n_max, 1)))
        p = Signal(range(max(d, bm.max_samples, 2)))    # flat parameter index; sample in the forward pass
        bias = Signal(init=self.bias0)                   # parameter p is a bias
        xb = Signal(16)                                  # p * x_words: the engine's x_base
        e = Signal(range(bm.log_depth))                  # log entry: forwards mod log_depth
        lab = Signal(range(self.net.out_features))
        corr = Signal.like(self.last_correct)
        state = Signal(32)                               # xorshift32 state of the current stream
        word = xorshift32_value(state)
        acc = Signal(SUM_BITS)                           # rotating accumulator
        carry = Signal()
        ck = Signal(range(3))                            # accumulator chunk (0 = low)
        nz = Signal()                                    # a_p != 0
        rd = Signal(16)                                  # bulk read data, registered
        m.d.sync += rd.eq(self.bulk.rdata)

        # --- bulk request: decoded from the state into registers (stage 1), then address and data are
        # formed from them and the registers' values of the next cycle (stage 2, registered into the
        # port).  A read asked for in state S is in `rd` in state S + 4; a write lands in cycle S + 2
        # and writes what its source holds in cycle S + 1.
        # the base address is one of a few constants, named by a 4-bit code (a one-LUT decode a bit)
        l0_copy = bm.scratch + SCRATCH_QUERY_WORDS * max(bm.n_max - 1, 0)
        bases = ([bm.params, bm.labels] + [bm.scratch + k for k in range(SCRATCH_QUERY_WORDS - 1)]
                 + [l0_copy + k for k in range(3)] + [bm.log + k for k in range(4)])
        B_PARAMS, B_LABELS, B_SLOT, B_L0, B_LOG = 0, 1, 2, 2 + SCRATCH_QUERY_WORDS - 1, 2 + SCRATCH_QUERY_WORDS + 2
        bcode = Signal(range(len(bases)))
        bcode1 = Signal(range(len(bases)))
        O_NONE, O_P, O_SLOT, O_LOG = range(4)
        osel = Signal(range(4))
        osel1 = Signal(range(4))
        m.d.sync += [bcode1.eq(bcode), osel1.eq(osel)]
        base = Signal(15)
        with m.Switch(bcode1):
            for i, b in enumerate(bases):
                with m.Case(i):
                    m.d.comb += base.eq(b)
        off = Mux(osel1 == O_P, p, Mux(osel1 == O_SLOT, s6, Mux(osel1 == O_LOG, e << 2, 0)))   # 4 words an entry
        my_we = Signal()

        def params_at() -> None:
            m.d.comb += [bcode.eq(B_PARAMS), osel.eq(O_P)]

        def slot_at(k: int) -> None:
            """word k of scratch slot q-1"""
            m.d.comb += [bcode.eq(B_SLOT + k), osel.eq(O_SLOT)]

        def l0_at(k: int) -> None:
            """word k of L_0's copy: the d words of the last scratch slot (written last, when N = n_max)"""
            m.d.comb += bcode.eq(B_L0 + k)

        def log_at(k: int) -> None:
            """word k of log entry e"""
            m.d.comb += [bcode.eq(B_LOG + k), osel.eq(O_LOG), my_we.eq(1)]
        WD_ACC, WD_CORR, WD_SLO, WD_SHI, WD_THETA = range(5)
        wsel = Signal(range(5))
        eng_sel = Signal()
        eng_sel_r = Signal()
        ba = Signal(15)
        bw = Signal(16)
        bwe = Signal()
        wsel1 = Signal(range(5))
        we1 = Signal()
        m.d.comb += eng.x_base.eq(xb)

        # --- the 16-bit adder on acc's low chunk; its addend (inverted for subtraction) is registered ---
        X_ZERO, X_L0, X_L1, X_L2, X_RD = range(5)
        xsel = Signal(range(5))
        inv = Signal()
        xsel1 = Signal(range(5))  # stage 1: the decoded select
        inv1 = Signal()
        xv = Signal(16)                                  # stage 2: the addend (X_RD: rd of cycle S + 1)
        inv_r = Signal()
        m.d.sync += [xsel1.eq(xsel), inv1.eq(inv)]
        alu_en = Signal()
        loss48 = Signal(signed(SUM_BITS))
        m.d.comb += loss48.eq(lossu.o.payload.loss)
        xval = Signal(16)
        with m.Switch(xsel1):
            for k in range(3):
                with m.Case(X_L0 + k):
                    m.d.comb += xval.eq(loss48[16 * k:16 * (k + 1)])
            with m.Case(X_RD):
                m.d.comb += xval.eq(rd)
        m.d.sync += [xv.eq(xval ^ Cat(*[inv1] * 16)), inv_r.eq(inv1)]
        alu = Signal(17)
        m.d.comb += alu.eq(add_cin(acc[:16], xv, Mux(ck == 0, inv_r, carry)))
        with m.If(alu_en):
            m.d.sync += [acc.eq(Cat(acc[16:], alu[:16])), carry.eq(alu[16]), ck.eq(Mux(ck == 2, 0, ck + 1))]

        # --- saturating add on theta = rd: perturb (+-mu, q > 0) and update (-+alpha, a_p != 0) ------
        upd = Signal()
        step_on = Signal()                               # add the step at all
        neg = Signal()                                   # subtract it
        mag = Mux(upd, Mux(bias, self.alpha_b, self.alpha_w), Mux(bias, self.mu_b, self.mu_w))
        opnd = Signal(16)  # registered addend
        ocin = Signal()
        ld_opnd = Signal()
        with m.If(ld_opnd):
            m.d.sync += [opnd.eq(Mux(step_on, mag ^ Cat(*[neg] * 16), 0)), ocin.eq(step_on & neg)]
        raw = Signal(17)
        m.d.comb += raw.eq(add_cin(rd.as_signed(), opnd.as_signed(), ocin))
        ovf = raw[16] ^ raw[15]                          # sign-extended operands: the 17-bit sum left 16 bits
        sat = Mux(ovf, Cat(*[~raw[16]] * 15, raw[16]), raw[:16])

        wdata = Signal(16)
        with m.Switch(wsel1):
            with m.Case(WD_ACC):                         # the chunk acc[:16] was, rotated in cycle S
                m.d.comb += wdata.eq(acc[32:])
            with m.Case(WD_CORR):
                m.d.comb += wdata.eq(corr)
            with m.Case(WD_SLO):
                m.d.comb += wdata.eq(state[:16])
            with m.Case(WD_SHI):
                m.d.comb += wdata.eq(state[16:])
            with m.Case(WD_THETA):
                m.d.comb += wdata.eq(sat)
        w_en = Signal()
        w_en1 = Signal()
        w_en2 = Signal()
        w_addr1 = Signal.like(w_wr.addr)
        w_addr2 = Signal.like(w_wr.addr)
        m.d.sync += [wsel1.eq(wsel), we1.eq(my_we), w_en1.eq(w_en), w_addr1.eq(p), eng_sel_r.eq(eng_sel),
                     ba.eq(base + off), bw.eq(wdata), bwe.eq(we1), w_en2.eq(w_en1), w_addr2.eq(w_addr1)]
        m.d.comb += [w_wr.addr.eq(w_addr2), w_wr.data.eq(bw), w_wr.en.eq(w_en2)]
        m.d.comb += [self.bulk.addr.eq(Mux(eng_sel_r, eng.bulk.addr, ba)),
                     self.bulk.wdata.eq(bw), self.bulk.we.eq(bwe),
                     eng.bulk.rdata.eq(self.bulk.rdata)]

        # --- changed: a registered flag (theta_p written != theta_p read) added the cycle after ------
        chg = Signal()
        m.d.sync += [chg.eq(0), self.changed.eq(self.changed + chg)]   # counters add a 1-bit signal: a LUT a bit
        step_inc = Signal()                              # a step ends (steps_done += 1)
        m.d.sync += self.steps_done.eq(self.steps_done + step_inc)

        # --- small helpers --------------------------------------------------------------------------------
        # flags of p, registered: every pass holds p for at least two cycles before it reads them
        flip = Signal()
        p_last = Signal()
        smp_end = Signal()
        m.d.sync += [flip.eq(Cat(*[p == f for f in self.bias_flips]).any() if self.bias_flips else 0),
                     p_last.eq(p == d - 1), smp_end.eq(p == self.n_samples)]

        def next_p(last_state: str, more_state: str) -> None:
            """p += 1 with the bias flag following the flat order; leave after the last parameter."""
            with m.If(flip):
                m.d.sync += bias.eq(~bias)
            m.d.sync += p.eq(p + 1)
            with m.If(p_last):
                m.next = last_state
            with m.Else():
                m.next = more_state

        def set_q(v: int | None) -> None:
            """q <- v (1), or q + 1 (None), with s6 = 6 (q - 1) following."""
            if v is None:
                m.d.sync += [q.eq(q + 1), s6.eq(s6 + SCRATCH_QUERY_WORDS)]
            else:
                m.d.sync += [q.eq(v), s6.eq(0)]

        m.d.sync += self.cycles.eq(self.cycles + self.busy)
        m.d.comb += [seeder.seed.eq(self.seed), seeder.step.eq((self.step0 + self.steps_done)[:STEP_BITS]),
                     seeder.query.eq(q - 1)]
        m.d.comb += lossu.label.eq(lab)
        # flags of q, registered: q is held for many cycles before each use
        q0 = Signal()
        q_last = Signal()
        no_q = Signal()
        m.d.sync += [q0.eq(q == 0), q_last.eq(q == self.n_queries), no_q.eq(inf | (self.n_queries == 0))]
        # the op is over (STEP reads it two cycles after steps_done changed): two register stages
        sd_eq = Signal(2)
        sd_nz = Signal(2)
        all_done = Signal()
        m.d.sync += [sd_eq.eq(Cat(self.steps_done[:8] == self.k_steps[:8], self.steps_done[8:] == self.k_steps[8:])),
                     sd_nz.eq(Cat(self.steps_done[:8] != 0, self.steps_done[8:] != 0)),
                     all_done.eq(Mux(inf, sd_nz.any(), sd_eq.all()))]

        with m.FSM() as fsm:
            with m.State("IDLE"):
                with m.If(self.start & ((self.op == Op.INFERENCE) | (self.op == Op.STEPS))):
                    is_inf = self.op == Op.INFERENCE
                    m.d.sync += [inf.eq(is_inf), self.steps_done.eq(0), self.forwards.eq(0),
                                 self.cycles.eq(0), e.eq(0), self.busy.eq(1)]
                    m.next = "STEP_END"
            with m.State("STEP"):
                with m.If(all_done):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    set_q(0)
                    m.next = "P_INIT"

            # --- perturb pass: seed stream q-1 (its state -> scratch slot q-1), master -> work -----------
            with m.State("P_SEED"):
                m.d.comb += seeder.start.eq(1)
                m.next = "P_SWAIT"
            with m.State("P_SWAIT"):
                with m.If(seeder.done):
                    m.d.sync += state.eq(seeder.state)
                    m.next = "P_SW0"
            with m.State("P_SW0"):
                slot_at(SLOT_STATE)
                m.d.comb += [my_we.eq(1), wsel.eq(WD_SLO)]
                m.next = "P_SW1"
            with m.State("P_SW1"):
                slot_at(SLOT_STATE + 1)
                m.d.comb += [my_we.eq(1), wsel.eq(WD_SHI)]
                m.next = "P_INIT"
            with m.State("P_INIT"):
                m.d.sync += [p.eq(0), bias.eq(self.bias0)]
                m.next = "P_RD"
            with m.State("P_RD"):                         # read master[p]; step the stream (xi_p = bit 31)
                params_at()
                m.d.sync += state.eq(word)
                m.next = "P_XI"
            with m.State("P_XI"):
                m.d.comb += [ld_opnd.eq(1), step_on.eq(~q0), neg.eq(state[31])]
                m.next = "P_WAIT"
            with m.State("P_WAIT"):
                m.next = "P_WR"
            with m.State("P_WR"):                         # next cycle rd = master[p]
                m.d.comb += [w_en.eq(1), wsel.eq(WD_THETA)]
                next_p("F_INIT", "P_RD")

            # --- forward pass over the batch ----------------------------------------------------------
            with m.State("F_INIT"):
                m.d.sync += [p.eq(0), xb.eq(0), acc.eq(0), ck.eq(0), corr.eq(0)]
                m.next = "F_NX"
            with m.State("F_NX"):                         # smp_end follows p
                m.next = "F_LAB"
            with m.State("F_LAB"):
                m.d.comb += [bcode.eq(B_LABELS), osel.eq(O_P)]
                with m.If(smp_end):
                    m.next = "R0"
                with m.Elif(~eng.busy):
                    m.next = "F_LW0"
            with m.State("F_LW0"):
                m.next = "F_LW1"
            with m.State("F_LW1"):
                m.next = "F_LW2"
            with m.State("F_LW2"):
                m.next = "F_GO"
            with m.State("F_GO"):                         # rd = label of sample p
                m.d.comb += [eng_sel.eq(1), eng.start.eq(1)]
                m.d.sync += lab.eq(rd)
                m.next = "F_RUN"
            with m.State("F_RUN"):
                m.d.comb += eng_sel.eq(1)
                with m.If(lossu.o.valid):
                    m.next = "F_L0"
            for k in range(5):                            # L += loss, a chunk a cycle from F_L2 on
                with m.State(f"F_L{k}"):
                    if k < 3:
                        m.d.comb += xsel.eq(X_L0 + k)
                    if k >= 2:
                        m.d.comb += alu_en.eq(1)
                    if k < 4:
                        m.next = f"F_L{k + 1}"
                    else:
                        m.d.comb += lossu.o.ready.eq(1)
                        m.d.sync += [corr.eq(corr + lossu.o.payload.correct), p.eq(p + 1),
                                     xb.eq(xb + bm.x_words)]
                        m.next = "F_NX"

            # --- log entry (acc rotates through the adder with X = 0), L_0, d_{q-1} -> scratch ---------
            for k in range(3):
                with m.State(f"R{k}"):
                    log_at(k)
                    m.d.comb += [alu_en.eq(1), wsel.eq(WD_ACC)]
                    m.next = f"R{k + 1}"
            with m.State("R3"):
                log_at(3)
                m.d.comb += wsel.eq(WD_CORR)
                m.next = "R4"
            with m.State("R4"):
                m.d.sync += [self.forwards.eq(self.forwards + 1), e.eq(Mux(e == bm.log_depth - 1, 0, e + 1))]
                with m.If(q0):
                    m.d.sync += [self.l0.eq(acc), self.last_correct.eq(corr)]
                    set_q(1)
                    with m.If(no_q):
                        m.d.sync += self.changed.eq(0)
                        m.d.comb += step_inc.eq(1)
                        m.next = "STEP_END"
                    with m.Else():
                        m.next = "S0"
                with m.Else():
                    m.next = "D0"
            for k in range(3):                            # L_0 -> the L_0 words
                with m.State(f"S{k}"):
                    l0_at(k)
                    m.d.comb += [my_we.eq(1), wsel.eq(WD_ACC), alu_en.eq(1)]
                    m.next = f"S{k + 1}" if k < 2 else "P_SEED"
            for k in range(8):                            # acc = L_q - L_0 (the copy read back)
                with m.State(f"D{k}"):
                    if k < 3:
                        l0_at(k)
                    if 3 <= k < 6:
                        m.d.comb += [xsel.eq(X_RD), inv.eq(1)]
                    if k > 4:
                        m.d.comb += alu_en.eq(1)
                    m.next = f"D{k + 1}" if k < 7 else "W0"
            for k in range(3):                            # d_{q-1} -> slot q-1 words 0..2
                with m.State(f"W{k}"):
                    slot_at(k)
                    m.d.comb += [my_we.eq(1), wsel.eq(WD_ACC), alu_en.eq(1)]
                    m.next = f"W{k + 1}"
            with m.State("W3"):
                with m.If(inf | q_last):
                    m.next = "U_INIT"
                with m.Else():
                    set_q(None)
                    m.next = "P_SEED"

            # --- update pass -------------------------------------------------------------------------------
            with m.State("U_INIT"):
                m.d.sync += [p.eq(0), bias.eq(self.bias0), self.changed.eq(0)]
                m.next = "U_P"
            with m.State("U_P"):
                m.d.sync += [acc.eq(0), ck.eq(0), nz.eq(0)]
                set_q(1)
                m.next = "U_S0"
            with m.State("U_S0"):                         # read state lo, hi of stream q-1
                slot_at(SLOT_STATE)
                m.next = "U_S1"
            with m.State("U_S1"):
                slot_at(SLOT_STATE + 1)
                m.next = "U_S2"
            for k in (2, 3):
                with m.State(f"U_S{k}"):
                    m.next = f"U_S{k + 1}"
            for k in (4, 5):                              # rd = lo, then hi: shift into state
                with m.State(f"U_S{k}"):
                    m.d.sync += state.eq(Cat(state[16:], rd))
                    m.next = f"U_S{k + 1}"
            with m.State("U_S6"):                         # state = word p of stream q-1
                m.d.sync += state.eq(word)
                m.next = "U_S7"
            with m.State("U_S7"):
                slot_at(SLOT_STATE)
                m.d.comb += [my_we.eq(1), wsel.eq(WD_SLO)]
                m.next = "U_S8"
            with m.State("U_S8"):
                slot_at(SLOT_STATE + 1)
                m.d.comb += [my_we.eq(1), wsel.eq(WD_SHI)]
                m.next = "U_D0"
            for k in range(8):                            # read d_i chunks; a += xi d_i
                with m.State(f"U_D{k}"):
                    if k < 3:
                        slot_at(k)
                    if 3 <= k < 6:
                        m.d.comb += [xsel.eq(X_RD), inv.eq(state[31])]
                    if k > 4:
                        m.d.comb += alu_en.eq(1)
                    if k < 7:
                        m.next = f"U_D{k + 1}"
                    else:
                        set_q(None)
                        with m.If(q_last):
                            m.next = "U_N0"
                        with m.Else():
                            m.next = "U_S0"
            for k in range(3):                            # nz = (a_p != 0), a chunk a cycle; read theta_p
                with m.State(f"U_N{k}"):
                    params_at()
                    m.d.comb += alu_en.eq(1)
                    m.d.sync += nz.eq(nz | (acc[:16] != 0))
                    m.next = f"U_N{k + 1}" if k < 2 else "U_T0"
            with m.State("U_T0"):                         # the step: -+alpha_p when a_p != 0
                params_at()
                m.d.comb += [ld_opnd.eq(1), upd.eq(1), step_on.eq(nz), neg.eq(~acc[-1])]
                m.next = "U_T1"
            with m.State("U_T1"):                         # theta_p <- sat(theta_p -+ alpha_p), rd = theta_p next cycle
                params_at()
                m.d.comb += [my_we.eq(1), wsel.eq(WD_THETA)]
                m.next = "U_T2"
            with m.State("U_T2"):
                m.next = "U_T3"
            with m.State("U_T3"):                         # rd = theta_p still (read in U_N2), bw = the new one
                m.d.sync += chg.eq(bw != rd)
                with m.If(p_last):
                    m.d.comb += step_inc.eq(1)
                next_p("STEP_END", "U_P")

            with m.State("STEP_END"):                     # (from IDLE: steps_done = 0 already)
                m.next = "STEP_W"
            with m.State("STEP_W"):
                m.next = "STEP"
        fsm.state.attrs["fsm_encoding"] = "one-hot"        # Yosys extracts it despite the init value
        return ResetInserter(self.abort)(m)
