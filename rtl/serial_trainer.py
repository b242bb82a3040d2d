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
Cycles per step, d parameters, B samples, T_b cycles from the engine's start to sample b's loss result,
S = 162 (seeding, rtl/serial_seeder): 2 + (N + 1)(2d + 6) + 9N + N S + [N > 0](4 + d (10 N + 3))
+ (N + 1) sum_b (3 + T_b); one more cycle per operation.

Every 48-bit sum (L_q, d_i = L_q - L_0, a_p) goes through one 16-bit adder on a rotating 48-bit
accumulator, three chunks low first, so no wide adder or multiplexer is built; every bulk address
is a constant of the state plus one of three offsets (p, 6 q, 4 e).  The passes (2d cycles per
perturb pass, d (10 N + 3) for the update) are negligible next to the (N + 1) B forwards.  Only Rademacher xi
are implemented: ``kinds`` = 1, so the top refuses ``kind`` >= 1 with ERR_CONFIG (the input is not read).
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
from .spram import SinglePortRAM, SinglePortSignature

BULK_DEPTH = 1 << 15
SUM_BITS = 48            # L_q, d_i, a_p: three 16-bit chunks
STEP_BITS = 20           # golden stream_seed reads (step << 12) mod 2^32: step t mod 2^20
# scratch slot words (serial_map.SCRATCH_QUERY_WORDS): d_i at 0..2, the stream state (lo, hi) at 3, 4
SLOT_STATE = 3


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
        # update's stream loop q = 1..N
        q = Signal(range(bm.n_max + 1))
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
        nz = Signal()                                    # the chunks written since chunk 0 are not all 0

        # --- bulk address: a constant of the state + one of three offsets; the engine's while it runs ----
        base = Signal(15)
        O_NONE, O_P, O_SLOT, O_LOG = range(4)
        osel = Signal(range(4))
        slot = Cat(0, q) + Cat(0, 0, q)                  # 6 q
        off = Mux(osel == O_P, p, Mux(osel == O_SLOT, slot, Mux(osel == O_LOG, e << 2, 0)))   # 4 words an entry
        my_we = Signal()

        def params_at() -> None:
            m.d.comb += [base.eq(bm.params), osel.eq(O_P)]

        def slot_at(k: int) -> None:
            """word k of scratch slot q-1"""
            m.d.comb += [base.eq(bm.scratch - SCRATCH_QUERY_WORDS + k), osel.eq(O_SLOT)]

        def l0_at(k: int) -> None:
            """word k of L_0's copy: the d words of the last scratch slot (written last, when N = n_max)"""
            m.d.comb += base.eq(bm.scratch + SCRATCH_QUERY_WORDS * max(bm.n_max - 1, 0) + k)

        def log_at(k: int) -> None:
            """word k of log entry e"""
            m.d.comb += [base.eq(bm.log + k), osel.eq(O_LOG), my_we.eq(1)]
        WD_ALU, WD_CORR, WD_SLO, WD_SHI, WD_THETA = range(5)
        wsel = Signal(range(5))
        eng_sel = Signal()
        m.d.comb += eng.x_base.eq(xb)

        # --- the 16-bit adder on acc's low chunk -----------------------------------------------------
        X_ZERO, X_LOSS, X_RDATA = range(3)
        xsel = Signal(range(3))
        inv = Signal()
        alu_en = Signal()
        loss48 = Signal(signed(SUM_BITS))
        m.d.comb += loss48.eq(lossu.o.payload.loss)
        xval = Signal(16)
        with m.Switch(xsel):
            with m.Case(X_LOSS):
                m.d.comb += xval.eq(Mux(ck == 0, loss48[:16], Mux(ck == 1, loss48[16:32], loss48[32:])))
            with m.Case(X_RDATA):
                m.d.comb += xval.eq(self.bulk.rdata)
        cin = Mux(ck == 0, inv, carry)
        alu = Signal(17)
        m.d.comb += alu.eq(add_cin(acc[:16], xval ^ Cat(*[inv] * 16), cin))
        with m.If(alu_en):
            m.d.sync += [acc.eq(Cat(acc[16:], alu[:16])), carry.eq(alu[16]), ck.eq(Mux(ck == 2, 0, ck + 1)),
                         nz.eq((alu[:16] != 0) | (nz & (ck != 0)))]

        # --- saturating add: perturb (+-mu, q > 0) and update (-+alpha, a_p != 0) ----------------------
        upd = Signal()
        step_on = Signal()                               # add the step at all
        neg = Signal()                                   # subtract it
        mag = Mux(upd, Mux(bias, self.alpha_b, self.alpha_w), Mux(bias, self.mu_b, self.mu_w))
        theta = self.bulk.rdata.as_signed()
        opnd = Signal(signed(16))
        m.d.comb += opnd.eq(Mux(step_on, mag ^ Cat(*[neg] * 16).as_signed(), 0))
        raw = Signal(signed(18))
        m.d.comb += raw.eq(add_cin(theta, opnd, step_on & neg))
        sat = Signal(signed(16))
        m.d.comb += sat.eq(Mux(raw > 32767, 32767, Mux(raw < -32768, -32768, raw)))
        m.d.comb += [w_wr.addr.eq(p), w_wr.data.eq(sat)]

        wdata = Signal(16)
        with m.Switch(wsel):
            with m.Case(WD_ALU):
                m.d.comb += wdata.eq(alu[:16])
            with m.Case(WD_CORR):
                m.d.comb += wdata.eq(corr)
            with m.Case(WD_SLO):
                m.d.comb += wdata.eq(state[:16])
            with m.Case(WD_SHI):
                m.d.comb += wdata.eq(state[16:])
            with m.Case(WD_THETA):
                m.d.comb += wdata.eq(sat)
        my_addr = Signal(15)
        m.d.comb += my_addr.eq(base + off)
        m.d.comb += [self.bulk.addr.eq(Mux(eng_sel, eng.bulk.addr, my_addr)),
                     self.bulk.wdata.eq(wdata), self.bulk.we.eq(~eng_sel & my_we),
                     eng.bulk.rdata.eq(self.bulk.rdata)]

        # --- small helpers --------------------------------------------------------------------------------
        def next_p(last_state: str, more_state: str) -> None:
            """p += 1 with the bias flag following the flat order; leave after the last parameter."""
            if self.bias_flips:
                with m.If(Cat(*[p == f for f in self.bias_flips]).any()):
                    m.d.sync += bias.eq(~bias)
            m.d.sync += p.eq(p + 1)
            with m.If(p == d - 1):
                m.next = last_state
            with m.Else():
                m.next = more_state

        with m.If(self.busy):
            m.d.sync += self.cycles.eq(self.cycles + 1)
        m.d.comb += [seeder.seed.eq(self.seed), seeder.step.eq((self.step0 + self.steps_done)[:STEP_BITS]),
                     seeder.query.eq(q - 1)]
        m.d.comb += lossu.label.eq(lab)
        last_q = inf | (q == self.n_queries)

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start & ((self.op == Op.INFERENCE) | (self.op == Op.STEPS))):
                    is_inf = self.op == Op.INFERENCE
                    m.d.sync += [inf.eq(is_inf), self.steps_done.eq(0), self.forwards.eq(0),
                                 self.cycles.eq(0), e.eq(0), self.busy.eq(1)]
                    m.next = "STEP"
            with m.State("STEP"):
                with m.If(Mux(inf, self.steps_done != 0, self.steps_done == self.k_steps)):
                    m.d.sync += self.busy.eq(0)
                    m.next = "IDLE"
                with m.Else():
                    m.d.sync += q.eq(0)
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
            with m.State("P_RD"):
                params_at()
                m.next = "P_WR"
            with m.State("P_WR"):                         # rdata = master[p]
                m.d.comb += [w_wr.en.eq(1), step_on.eq(q != 0), neg.eq(word[31])]
                m.d.sync += state.eq(word)
                next_p("F_INIT", "P_RD")

            # --- forward pass over the batch ----------------------------------------------------------
            with m.State("F_INIT"):
                m.d.sync += [p.eq(0), xb.eq(0), acc.eq(0), ck.eq(0), corr.eq(0)]
                m.next = "F_LAB"
            with m.State("F_LAB"):
                m.d.comb += [base.eq(bm.labels), osel.eq(O_P)]
                with m.If(~eng.busy):
                    m.next = "F_GO"
            with m.State("F_GO"):                         # rdata = label of sample p
                m.d.comb += [eng_sel.eq(1), eng.start.eq(1)]
                m.d.sync += lab.eq(self.bulk.rdata)
                m.next = "F_RUN"
            with m.State("F_RUN"):
                m.d.comb += [eng_sel.eq(1), xsel.eq(X_LOSS), alu_en.eq(lossu.o.valid)]
                with m.If(lossu.o.valid):
                    m.next = "F_L1"
            with m.State("F_L1"):
                m.d.comb += [xsel.eq(X_LOSS), alu_en.eq(1)]
                m.next = "F_L2"
            with m.State("F_L2"):
                m.d.comb += [xsel.eq(X_LOSS), alu_en.eq(1), lossu.o.ready.eq(1)]
                m.d.sync += [corr.eq(corr + lossu.o.payload.correct), p.eq(p + 1), xb.eq(xb + bm.x_words)]
                with m.If(p == self.n_samples - 1):
                    m.next = "R0"
                with m.Else():
                    m.next = "F_LAB"

            # --- log entry (acc rotates through the adder with X = 0), L_0, d_{q-1} -> scratch ---------
            for k in range(3):
                with m.State(f"R{k}"):
                    log_at(k)
                    m.d.comb += [alu_en.eq(1), wsel.eq(WD_ALU)]
                    m.next = f"R{k + 1}"
            with m.State("R3"):
                log_at(3)
                m.d.comb += wsel.eq(WD_CORR)
                m.d.sync += [self.forwards.eq(self.forwards + 1), e.eq(Mux(e == bm.log_depth - 1, 0, e + 1))]
                with m.If(q == 0):
                    m.d.sync += [self.l0.eq(acc), self.last_correct.eq(corr), q.eq(1)]
                    with m.If(inf | (self.n_queries == 0)):
                        m.d.sync += self.changed.eq(0)
                        m.next = "STEP_END"
                    with m.Else():
                        m.next = "S0"
                with m.Else():
                    m.next = "D0"
            for k in range(3):                            # L_0 -> the L_0 words
                with m.State(f"S{k}"):
                    l0_at(k)
                    m.d.comb += [my_we.eq(1), wsel.eq(WD_ALU), alu_en.eq(1)]
                    m.next = f"S{k + 1}" if k < 2 else "P_SEED"
            for k in range(4):                            # acc = L_q - L_0 (the copy read back)
                with m.State(f"D{k}"):
                    if k < 3:
                        l0_at(k)
                    if k > 0:
                        m.d.comb += [xsel.eq(X_RDATA), inv.eq(1), alu_en.eq(1)]
                    m.next = f"D{k + 1}" if k < 3 else "W0"
            for k in range(3):                            # d_{q-1} -> slot q-1 words 0..2
                with m.State(f"W{k}"):
                    slot_at(k)
                    m.d.comb += [my_we.eq(1), wsel.eq(WD_ALU), alu_en.eq(1)]
                    if k < 2:
                        m.next = f"W{k + 1}"
                    else:
                        with m.If(last_q):
                            m.next = "U_INIT"
                        with m.Else():
                            m.d.sync += q.eq(q + 1)
                            m.next = "P_SEED"

            # --- update pass -------------------------------------------------------------------------------
            with m.State("U_INIT"):
                m.d.sync += [p.eq(0), bias.eq(self.bias0), self.changed.eq(0)]
                m.next = "U_P"
            with m.State("U_P"):
                m.d.sync += [acc.eq(0), ck.eq(0), nz.eq(0), q.eq(1)]
                m.next = "U_S0"
            with m.State("U_S0"):                         # read state lo of stream q-1
                slot_at(SLOT_STATE)
                m.next = "U_S1"
            with m.State("U_S1"):                         # read state hi; rdata = lo
                slot_at(SLOT_STATE + 1)
                m.d.sync += state[:16].eq(self.bulk.rdata)
                m.next = "U_S2"
            with m.State("U_S2"):                         # rdata = hi
                m.d.sync += state[16:].eq(self.bulk.rdata)
                m.next = "U_S3"
            with m.State("U_S3"):                         # state = word p of stream q-1
                m.d.sync += state.eq(word)
                m.next = "U_S4"
            with m.State("U_S4"):
                slot_at(SLOT_STATE)
                m.d.comb += [my_we.eq(1), wsel.eq(WD_SLO)]
                m.next = "U_S5"
            with m.State("U_S5"):
                slot_at(SLOT_STATE + 1)
                m.d.comb += [my_we.eq(1), wsel.eq(WD_SHI)]
                m.next = "U_D0"
            with m.State("U_D0"):                         # read d_i chunks; a += xi d_i
                slot_at(0)
                m.next = "U_D1"
            with m.State("U_D1"):
                slot_at(1)
                m.d.comb += [xsel.eq(X_RDATA), inv.eq(state[31]), alu_en.eq(1)]
                m.next = "U_D2"
            with m.State("U_D2"):
                slot_at(2)
                m.d.comb += [xsel.eq(X_RDATA), inv.eq(state[31]), alu_en.eq(1)]
                m.next = "U_D3"
            with m.State("U_D3"):
                m.d.comb += [xsel.eq(X_RDATA), inv.eq(state[31]), alu_en.eq(1)]
                m.d.sync += q.eq(q + 1)
                with m.If(q == self.n_queries):
                    m.next = "U_T0"
                with m.Else():
                    m.next = "U_S0"
            with m.State("U_T0"):                         # read theta_p; a_p = acc, nz = (a_p != 0)
                params_at()
                m.next = "U_T1"
            with m.State("U_T1"):                         # theta_p <- sat(theta_p -+ alpha_p)
                params_at()
                m.d.comb += [my_we.eq(1), wsel.eq(WD_THETA), upd.eq(1), step_on.eq(nz),
                             neg.eq(~acc[-1])]
                with m.If(sat != theta):
                    m.d.sync += self.changed.eq(self.changed + 1)
                next_p("STEP_END", "U_P")

            with m.State("STEP_END"):
                m.d.sync += self.steps_done.eq(self.steps_done + 1)
                m.next = "STEP"
        return ResetInserter(self.abort)(m)
