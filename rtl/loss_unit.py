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

Timing (no pipelining across phases; the loss unit is far off the critical path of a forward
pass): 1 cycle for the label, C cycles to load logits, 2 cycles per class for exp2, 2 cycles
to normalise, 1 cycle to present the result: 3C + 4 cycles per sample when never stalled.
"""
from amaranth import Array, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.loss import EXP_BITS, LN2, LOG2E, LOG_BITS, SUM_FRAC, exp2_table, log2_table


def round_shift_value(v, shift: int):
    """golden.fixed.round_shift by an elaboration-time amount: (v + 2^(s-1)) >> s, or v << -s."""
    if shift <= 0:
        return v << -shift
    return (v + (1 << (shift - 1))) >> shift


def result_layout(classes: int, loss: QFormat) -> data.StructLayout:
    return data.StructLayout({"loss": signed(loss.bits), "correct": 1, "argmax": range(classes),
                              "saturated": 1})


def cycles_per_sample(classes: int) -> int:
    """Cycles the unit needs per sample when its streams never stall (see module docstring)."""
    return 3 * classes + 4


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
        k = Signal(unsigned(40))
        big_k = Signal()
        S = Signal(unsigned(SUM_FRAC + 1 + (C - 1).bit_length() + 1))
        p = Signal(range(S.shape().width))
        res = Signal(result_layout(C, lossf))

        # --- exp2 of one class: u = round((m - z_j) * LOG2E), k = u >> E, r = u mod 2^E -------
        diff = Signal(unsigned(act.bits + 1))
        m.d.comb += diff.eq(zmax - buf[j])  # >= 0: zmax is the maximum
        u = Signal(unsigned(act.bits + 1 + 17 + max(0, EXP_BITS - act.frac - 16)))
        m.d.comb += u.eq(round_shift_value(diff * LOG2E, act.frac + 16 - EXP_BITS))
        m.d.comb += exp_rd.addr.eq(u[:EXP_BITS])
        base = exp_rd.data
        k5 = k[:5]
        e = Signal(unsigned(SUM_FRAC + 1))
        m.d.comb += e.eq(Mux(big_k, 0, (base >> k5) + Mux(k5 == 0, 0, base.bit_select((k5 - 1).as_unsigned()[:5], 1))))

        # --- normalisation: p = floor(log2 S), i = round(S / 2^(p-G)) - 2^G --------------------
        for b in range(S.shape().width):
            with m.If(S[b]):
                m.d.comb += p.eq(b)
        sh = Signal(range(S.shape().width))
        m.d.comb += sh.eq(p - LOG_BITS)
        idx = Signal(unsigned(LOG_BITS + 2))
        m.d.comb += idx.eq((S >> sh) + S.bit_select((sh - 1).as_unsigned()[:sh.shape().width], 1) - (1 << LOG_BITS))
        m.d.comb += log_rd.addr.eq(idx)

        # --- final: log2S -> ln S -> loss ---------------------------------------------------------
        p_reg = Signal.like(p)
        log2s = Signal(unsigned(p.shape().width + 17))
        m.d.comb += log2s.eq(((p_reg - SUM_FRAC) << 16) + log_rd.data)
        lns = Signal(unsigned(log2s.shape().width + 16 + max(0, lossf.frac - 32)))
        m.d.comb += lns.eq(round_shift_value(log2s * LN2, 32 - lossf.frac))
        raw = Signal(unsigned(max(act.bits + 1 + lossf.frac - act.frac, lns.shape().width) + 1))
        m.d.comb += raw.eq(((zmax - zlab).as_unsigned() << (lossf.frac - act.frac)) + lns)
        sat = Signal()
        m.d.comb += sat.eq(raw > lossf.max_code)
        loss_code = Mux(sat, lossf.max_code, raw[:lossf.bits])

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
                        m.next = "EXP_ADDR"
            with m.State("EXP_ADDR"):     # ROM address = r_j (comb); register k_j
                m.d.sync += [k.eq(u >> EXP_BITS), big_k.eq((u >> EXP_BITS) > 31)]
                m.next = "EXP_ACC"
            with m.State("EXP_ACC"):      # ROM data = EXP2[r_j]
                m.d.sync += [S.eq(S + e), j.eq(j + 1)]
                with m.If(j == C - 1):
                    m.next = "NORM"
                with m.Else():
                    m.next = "EXP_ADDR"
            with m.State("NORM"):         # ROM address = i (comb); register p
                m.d.sync += p_reg.eq(p)
                m.next = "FINAL"
            with m.State("FINAL"):        # ROM data = LOG2[i]
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
