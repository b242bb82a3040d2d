"""Loss unit: golden's bit-exact fixed-point cross-entropy over a batch, plus accuracy counting.

Per sample it takes one label and then the C logit codes (class order) from two lib.stream
inputs, and computes exactly ``ttzo.golden.loss.cross_entropy_fixed`` (read its docstring for
the arithmetic): max/argmax while the logits arrive (strict '>' scan: ties go to the lowest
index), then one exp2-table look-up per class (EXP2 ROM, 1024 x 31 bits), the sum S, a
leading-one detector for p = floor(log2 S), one LOG2-table look-up (1025 x 17 bits), the
multiply by ln 2 and the final round/saturate.  The per-sample loss code and whether argmax
equals the label leave on the ``result`` stream; the batch sum (exact, no division), the
number of correct samples, the number of samples and the number of saturated losses
accumulate in registers until ``clear``.

Timing (for Fmax, not throughput: the unit is idle most of the time, the TT engine needs
~26,600 cycles per MNIST sample): every ROM read, multiply, variable shift and wide add sits
alone between registers.  The C classes stream through a 7-stage exp2 pipeline (difference,
x LOG2E, rounding, ROM address, ROM data, shift, rounding add) into S; the normalisation and
the final loss are a 9-stage chain (leading one, window, table index, ROM address, ROM data,
x LN2, rounding, + margin, saturation).  1 cycle for the label, C to load the logits, C + 8
for exp2 and S, 9 to normalise, 1 to accumulate, 1 to present the result: 2C + 20 cycles per
sample when never stalled (``cycles_per_sample``).
"""
from amaranth import Array, Cat, Module, Mux, Signal, Value, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.loss import EXP_BITS, LN2, LOG2E, LOG_BITS, SUM_FRAC, exp2_table, log2_table

#: Registers between a class entering the exp2 pipeline and its term reaching S.
EXP_STAGES = 7
#: Cycles from the final S to the registered, saturated loss code.
NORM_STAGES = 9


def round_shift_value(v, shift: int):
    """golden.fixed.round_shift by an elaboration-time amount: (v + 2^(s-1)) >> s, or v << -s."""
    if shift <= 0:
        return v << -shift
    return (v + (1 << (shift - 1))) >> shift


def leading_one(v: Value) -> tuple[Value, Value]:
    """(any bit set, index of the highest set bit) of `v` as a balanced mux tree (depth log2 width)."""
    n = len(v)
    if n == 1:
        return v[0], Value.cast(0)
    half = 1 << ((n - 1).bit_length() - 1)          # low part: a power of two, high part the rest
    lo_any, lo_idx = leading_one(v[:half])
    hi_any, hi_idx = leading_one(v[half:])
    return hi_any | lo_any, Mux(hi_any, hi_idx + half, lo_idx)


def result_layout(classes: int, loss: QFormat) -> data.StructLayout:
    return data.StructLayout({"loss": signed(loss.bits), "correct": 1, "argmax": range(classes),
                              "saturated": 1})


def cycles_per_sample(classes: int) -> int:
    """Cycles the unit needs per sample when its streams never stall (see module docstring)."""
    return 1 + classes + latency(classes) + 1


def latency(classes: int) -> int:
    """Clock edges after the one that transfers a sample's last logit until the one that counts the sample.

    Only the batch's last sample adds this to a forward pass (the earlier ones overlap the
    engine); it was 2C + 2 before the unit was pipelined for Fmax.
    """
    return (classes + EXP_STAGES + 1) + NORM_STAGES + 1


class LossUnit(wiring.Component):
    """Fixed-point cross-entropy + accuracy of a batch, bit-exact to golden.

    Parameters: number of classes C, the logits' format (``act``), the loss format, and the
    width of the batch counters (batches up to 2**batch_bits - 1 samples).
    """

    def __init__(self, classes: int, act: QFormat = DEFAULT_CONFIG.act, loss: QFormat = DEFAULT_CONFIG.loss,
                 batch_bits: int = 16) -> None:
        if classes < 2:
            raise ValueError("a cross-entropy needs at least 2 classes")
        if loss.frac < act.frac:
            raise ValueError(f"loss format {loss} needs at least the logits' {act.frac} fraction bits")
        if not act.signed:
            raise ValueError(f"logit format {act} must be signed")
        self.classes, self.act, self.loss, self.batch_bits = classes, act, loss, batch_bits
        self.sum_bits = loss.bits + batch_bits
        super().__init__({
            "label": In(stream.Signature(range(classes))),
            "logits": In(stream.Signature(signed(act.bits))),
            "result": Out(stream.Signature(result_layout(classes, loss))),
            "clear": In(1),
            "batch_loss": Out(signed(self.sum_bits)),
            "correct": Out(batch_bits),
            "samples": Out(batch_bits),
            "saturated": Out(batch_bits),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        C, act, lossf = self.classes, self.act, self.loss

        m.submodules.exp2 = exp2 = memory.Memory(shape=unsigned(SUM_FRAC + 1), depth=1 << EXP_BITS,
                                                  init=[int(v) for v in exp2_table()])
        m.submodules.log2 = log2 = memory.Memory(shape=unsigned(17), depth=(1 << LOG_BITS) + 1,
                                                  init=[int(v) for v in log2_table()])
        exp_rd = exp2.read_port()
        log_rd = log2.read_port()

        buf = Array(Signal(signed(act.bits), name=f"z{j}") for j in range(C))
        label = Signal(range(C))
        zmax = Signal(signed(act.bits))
        amax = Signal(range(C))
        zlab = Signal(signed(act.bits))
        j = Signal(range(C + 1))
        S = Signal(unsigned(SUM_FRAC + 1 + (C - 1).bit_length() + 1))
        res = Signal(result_layout(C, lossf))
        issue = Signal()                     # a class enters the exp2 pipeline this cycle

        # --- exp2 pipeline, one class per cycle: u = round((m - z_j) * LOG2E), k = u >> E, --------
        # --- r = u mod 2^E, e_j = round_half_up(EXP2[r] >> k) (0 when k > 31), S += e_j ------------
        v = [Signal(name=f"exp_v{i}") for i in range(1, EXP_STAGES + 1)]   # stage valid bits
        m.d.sync += [v[0].eq(issue)] + [v[i].eq(v[i - 1]) for i in range(1, EXP_STAGES)]
        diff = Signal(unsigned(act.bits + 1))                               # 1: >= 0, zmax is the maximum
        prod = Signal(unsigned(act.bits + 1 + 17))                          # 2: x LOG2E
        u = Signal(unsigned(act.bits + 1 + 17 + max(0, EXP_BITS - act.frac - 16)))   # 3: rounded
        k4, big4 = Signal(5, name="k4"), Signal(name="big4")              # 4: ROM address presented
        base5 = Signal(SUM_FRAC + 1, name="base5")                         # 5: ROM data registered
        k5, big5 = Signal(5, name="k5"), Signal(name="big5")
        sh6, rb6 = Signal(SUM_FRAC + 1, name="sh6"), Signal(name="rb6")   # 6: shifted, rounding bit
        e7 = Signal(unsigned(SUM_FRAC + 1))                                 # 7: rounded term
        m.d.sync += [
            diff.eq(zmax - buf[j]),
            prod.eq(diff * LOG2E),
            u.eq(round_shift_value(prod, act.frac + 16 - EXP_BITS)),
            k4.eq(u[EXP_BITS:EXP_BITS + 5]), big4.eq(u[EXP_BITS + 5:] != 0),
            base5.eq(exp_rd.data), k5.eq(k4), big5.eq(big4),
            sh6.eq(Mux(big5, 0, base5 >> k5)),
            rb6.eq(~big5 & (k5 != 0) & base5.bit_select((k5 - 1)[:5], 1)),
            e7.eq(sh6 + rb6),
        ]
        m.d.comb += exp_rd.addr.eq(u[:EXP_BITS])
        with m.If(v[EXP_STAGES - 1]):
            m.d.sync += S.eq(S + e7)

        # --- normalisation and final loss, registers updated every cycle (valid NORM_STAGES cycles --
        # --- after S is final): p = floor(log2 S), i = round(S / 2^(p-G)) - 2^G, ------------------
        # --- log2S = ((p - 30) << 16) + LOG2[i], lnS = round(log2S * LN2), loss = sat(margin + lnS)
        # S >= 2^SUM_FRAC always (the maximum's term is EXP2[0] = 2^SUM_FRAC exactly), so p is found
        # among the bits from SUM_FRAC up and the window S[p-G : p+1] lies inside S.
        top = S[SUM_FRAC:]
        q = Signal(range(len(top)))                                         # 1: p - SUM_FRAC
        m.d.sync += q.eq(leading_one(top)[1])
        G = LOG_BITS
        win = Signal(G)                                                     # 2: S >> (p - G), minus 2^G
        rb = Signal()                                                       #    S bit p - G - 1
        m.d.sync += [win.eq(Array(S[SUM_FRAC + t - G:SUM_FRAC + t] for t in range(len(top)))[q]),
                     rb.eq(Array(S[SUM_FRAC + t - G - 1] for t in range(len(top)))[q])]
        idx = Signal(unsigned(G + 1))                                       # 3: table index 0..2^G
        m.d.sync += idx.eq(win + rb)
        m.d.comb += log_rd.addr.eq(idx)                                     # 4: ROM address presented
        lg = Signal(unsigned(17))                                           # 5: LOG2[i] registered
        m.d.sync += lg.eq(log_rd.data)
        q5 = Signal.like(q)
        m.d.sync += q5.eq(q)
        p_lo = Signal(unsigned(17 + 16))                                    # 6: LOG2[i] x LN2
        p_hi = Signal(unsigned(len(q) + 16))                                #    (p - 30) x LN2
        m.d.sync += [p_lo.eq(lg * LN2), p_hi.eq(q5 * LN2)]
        lns = Signal(unsigned(len(q) + 17 + 16 + 1 + max(0, lossf.frac - 32)))   # 7: rounded ln S
        m.d.sync += lns.eq(round_shift_value((p_hi << 16) + p_lo, 32 - lossf.frac))
        margin = Signal(unsigned(act.bits + 1))                             # z_max - z_label >= 0
        m.d.sync += margin.eq(zmax - zlab)
        raw = Signal(unsigned(max(act.bits + 1 + lossf.frac - act.frac, len(lns)) + 1))   # 8: + margin
        m.d.sync += raw.eq((margin << (lossf.frac - act.frac)) + lns)
        sat = Signal()                                                      # 9: saturated code
        loss_code = Signal(signed(lossf.bits))
        m.d.sync += [sat.eq(raw > lossf.max_code), loss_code.eq(Mux(raw > lossf.max_code, lossf.max_code,
                                                                    raw[:lossf.bits]))]
        wait = Signal(range(NORM_STAGES + 1))

        m.d.comb += [self.result.payload.eq(res)]
        with m.If(self.clear):
            m.d.sync += [self.batch_loss.eq(0), self.correct.eq(0), self.samples.eq(0), self.saturated.eq(0)]

        with m.FSM():
            with m.State("LABEL"):
                m.d.comb += self.label.ready.eq(1)
                with m.If(self.label.valid):
                    m.d.sync += [label.eq(self.label.payload), j.eq(0)]
                    m.next = "LOAD"
            with m.State("LOAD"):
                m.d.comb += self.logits.ready.eq(1)
                with m.If(self.logits.valid):
                    z = self.logits.payload
                    m.d.sync += [buf[j].eq(z), j.eq(j + 1)]
                    with m.If((j == 0) | (z > zmax)):
                        m.d.sync += [zmax.eq(z), amax.eq(j)]
                    with m.If(j == label):
                        m.d.sync += zlab.eq(z)
                    with m.If(j == C - 1):
                        m.d.sync += [j.eq(0), S.eq(0)]
                        m.next = "EXP"
            with m.State("EXP"):          # issue class j per cycle, then let the pipeline empty into S
                with m.If(j != C):
                    m.d.comb += issue.eq(1)
                    m.d.sync += j.eq(j + 1)
                with m.Elif(~Cat(*v).any()):
                    m.d.sync += wait.eq(0)
                    m.next = "NORM"
            with m.State("NORM"):         # S is final: the normalisation chain settles
                m.d.sync += wait.eq(wait + 1)
                with m.If(wait == NORM_STAGES - 1):
                    m.next = "FINAL"
            with m.State("FINAL"):
                m.d.sync += [res.loss.eq(loss_code), res.correct.eq(amax == label), res.argmax.eq(amax),
                             res.saturated.eq(sat)]
                with m.If(~self.clear):
                    m.d.sync += [self.batch_loss.eq(self.batch_loss + loss_code),
                                 self.correct.eq(self.correct + (amax == label)),
                                 self.samples.eq(self.samples + 1),
                                 self.saturated.eq(self.saturated + sat)]
                m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.result.valid.eq(1)
                with m.If(self.result.ready):
                    m.next = "LABEL"
        return m
