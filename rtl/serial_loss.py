"""Serial cross-entropy of one sample (golden ``cross_entropy_fixed``, bit-exact) and its argmax check.

The serial design (docs/rtl-serial.md) needs one loss per ~366,000-cycle forward pass, so this
block spends a few hundred cycles per sample to stay small (read golden/loss.py for the maths):
- load: max and argmax by a strict '>' scan (of the registered logit, while it is stored);
  each logit is stored 2 bits a cycle in the spare upper half of the EBR that holds EXP2's two
  top bits (2048 x 2), so no 10 x 16-bit register file (160 logic cells); ``i.ready`` is low
  for ceil(bits / 2) cycles after each logit;
- per class j: z_j read back 2 bits a cycle, d = z_max - z_j, u = rhu(d * LOG2E, f + 6) on the
  one hard multiplier (LOG2E without its trailing zeros, 23,637: a 16 x 15 product; operand
  and product are registers inside the SB_MAC16), EXP2[u mod 2^10] from block RAM, and the
  term rhu(EXP2[r], k) is added into S bit-serially (S is a shift register; the term's bits are
  picked from the ROM word starting at bit k, the rounding bit k - 1 is the carry-in; the
  picked bit is registered, off the ROM's 32:1 multiplexer path);
- S is shifted down to [2^30, 2^31) (p - 30 = shifts), 2^19 added bit-serially (round half up of
  the LOG2 index), LOG2[i] read;
- ln S = rhu(log2S * LN2, 32 - F): a shift-and-add multiply by the constant LN2 over the bits of
  log2S, shifted out of S (the addend is LN2 gated by S[0], one 17-bit adder), then
  + (z_max - z_label) << (F - f) and saturation (omitted when the format cannot overflow).
"""
from amaranth import Cat, Const, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, memory, stream, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.loss import EXP_BITS, LN2, LOG2E, LOG_BITS, SUM_FRAC, exp2_table, log2_table


def result_layout(loss: QFormat) -> data.StructLayout:
    return data.StructLayout({"loss": signed(loss.bits), "correct": unsigned(1)})


def _sum_bits(classes: int) -> int:
    """Width of S = sum of the terms, each at most 2^30."""
    return (classes << SUM_FRAC).bit_length()


def _ln_steps(classes: int, loss: QFormat) -> int:
    """Shift-and-add steps of log2S * LN2: log2S's bits, or the rounding position if higher."""
    return max(16 + (_sum_bits(classes) - SUM_FRAC).bit_length(), 32 - loss.frac)


def max_latency(classes: int, act: QFormat = DEFAULT_CONFIG.act, loss: QFormat = DEFAULT_CONFIG.loss) -> int:
    """Clock edges from the one that takes the last logit to the first with ``o.valid`` (at most).

    L = ceil(act.bits / 2) cycles store the last logit; per class L + 1 fetch it back, then
    6 + Sw (Sw = width of S; 5 when the term is 0, k > 31); then at most Sw - 30 normalising
    shifts + 1, the rounding pass (Sw), the LOG2 read and the load of log2S into S (2) and the
    ln 2 multiply.  All logits equal reaches it: 557 cycles for 10 classes, s16.8 and s32.16.
    """
    sw, chunks = _sum_bits(classes), (act.bits + 1) // 2
    return chunks + classes * (chunks + 1 + sw + 6) + (sw - SUM_FRAC) + sw + 2 + _ln_steps(classes, loss)


class SerialLoss(wiring.Component):
    """Per-sample fixed-point cross-entropy + (argmax == label), one hard multiplier, 12 EBRs of tables."""

    def __init__(self, classes: int = 10, act: QFormat = DEFAULT_CONFIG.act,
                 loss: QFormat = DEFAULT_CONFIG.loss) -> None:
        if not 2 <= classes <= 128:
            raise ValueError("classes must lie in 2..128 (the logit store holds 8 entries a class)")
        if not act.signed or act.bits > 16 or act.frac < -5:
            raise ValueError(f"logit format {act} must be signed, at most 16 bits, at least -5 fraction bits")
        if not act.frac <= loss.frac <= 32:
            raise ValueError(f"loss format {loss} needs {act.frac}..32 fraction bits")
        self.classes, self.act, self.loss = classes, act, loss
        super().__init__({
            "i": In(stream.Signature(signed(act.bits))),
            "label": In(range(classes)),
            "o": Out(stream.Signature(result_layout(loss))),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        C, act, lossf = self.classes, self.act, self.loss
        W, f, F = act.bits, act.frac, lossf.frac

        # EXP2 without bit 30: entry 0 (= 2^30) stores 0, every other entry has bit 29 set, so
        # bit 30 = ~bit 29.  Bits 0..27 fill 7 EBRs (1024 x 4); bits 28..29 the lower half of a
        # 2048 x 2 EBR whose upper half stores the logits (logit j, bits 2c..2c+1 at 1024 + 8j + c).
        # LOG2 without entry 1024 (= 2^16): index 1024 reads entry 0 (= 0) and carries one into
        # log2S's integer part.
        lo_bits = SUM_FRAC - 2
        m.submodules.exp_lo = exp_lo = memory.Memory(
            shape=unsigned(lo_bits), depth=1 << EXP_BITS,
            init=[int(v) & ((1 << lo_bits) - 1) for v in exp2_table()])
        m.submodules.exp_hi = exp_hi = memory.Memory(
            shape=unsigned(2), depth=2 << EXP_BITS,
            init=[(int(v) >> lo_bits) & 3 for v in exp2_table()] + [0] * (1 << EXP_BITS))
        m.submodules.log2 = log2 = memory.Memory(
            shape=unsigned(16), depth=1 << LOG_BITS, init=[int(v) for v in log2_table()[:1 << LOG_BITS]])
        lo_rd = exp_lo.read_port()
        hi_rd = exp_hi.read_port()
        hi_wr = exp_hi.write_port()
        log_rd = log2.read_port()

        chunks = (W + 1) // 2
        zr = Signal(2 * chunks, reset_less=True)         # the logit arriving / read back
        z = zr[:W].as_signed()
        chunk = Signal(range(chunks + 1), reset_less=True)
        zaddr = Signal(EXP_BITS + 1)
        read_z = Signal()                                # exp_hi's read port reads logit chunks
        zmax = Signal(signed(W), reset_less=True)
        amax = Signal(range(C), reset_less=True)
        j = Signal(range(C))
        m.d.comb += zaddr.eq((1 << EXP_BITS) + Cat(chunk[:3], j))   # 1024 + 8j + chunk
        margin = Signal(W, reset_less=True)              # z_max - z_label
        sub = (zmax - z)[:W]

        # u = rhu(d * LOG2E, f + 6) = rhu(d * (LOG2E >> tz), f + 6 - tz); k = u >> 10, r = u mod 2^10.
        # The constant's trailing zeros are dropped here (Yosys would, and then not pack the
        # product register, as wide as the product, into the SB_MAC16).
        tz = min((LOG2E & -LOG2E).bit_length() - 1, f + 16 - EXP_BITS)
        assert (LOG2E >> tz) < (1 << 16)
        diff = Signal(W, reset_less=True)
        prod = Signal(W + (LOG2E >> tz).bit_length(), reset_less=True)   # the MAC's output register
        n_sh = f + 16 - EXP_BITS - tz
        u = prod[n_sh:] + prod[n_sh - 1] if n_sh > 0 else prod
        big = Signal(reset_less=True)                    # k > 31: the term is 0

        # S, bit-serial: s_bits bits rotate through a full adder (S[0] + term bit + carry -> top)
        s_bits = _sum_bits(C)
        S = Signal(s_bits, reset_less=True)
        carry = Signal(reset_less=True)
        n = Signal(7, reset_less=True)                   # bit of the term's ROM word that enters eb now
        word = Cat(Const(0, 1), lo_rd.data, hi_rd.data, ~hi_rd.data[1])  # bit n: EXP2 bit n - 1
        eb = Signal(reset_less=True)                     # word bit n - 1, registered off the ROM's path
        term = Signal()                                  # the term's bits enter the adder
        ebit = eb & term
        inject = Signal()                                # + 2^(SUM_FRAC - LOG_BITS - 1) (LOG2 rounding)
        cin = carry | inject
        fa_sum = S[0] ^ ebit ^ cin
        fa_carry = (S[0] & ebit) | (S[0] & cin) | (ebit & cin)
        zero_in = Signal()
        s_in = fa_sum & ~zero_in

        # log2S = (q << 16) + LOG2[i], q = p - 30 (+1 when i = 1024); ln S by shift-and-add over its bits
        q = Signal(range(s_bits - SUM_FRAC + 1), reset_less=True)
        x = Cat(log_rd.data, q)
        s = 32 - F                                       # lnS = rhu(log2S * LN2, s)
        steps = _ln_steps(C, lossf)                      # product P + 2^(s-1) = acc * 2^steps + low
        assert steps == max(len(x), s)
        assert len(x) <= s_bits
        t = Signal(range(max(s_bits, steps)), reset_less=True)
        xbit = S[0]                                      # x is shifted through S, zeros behind it
        rnd = Signal(reset_less=True)                    # t == s - 1, registered a step ahead
        acc = Signal(16, reset_less=True)
        h_sum = acc + Mux(xbit, LN2, 0) + rnd            # round half up: + 2^(s-1) at step s - 1
        low = Signal(steps - s, reset_less=True)         # P bits s..steps-1, shifted out of acc
        raw = (margin << (F - f)) + Cat(low, acc)
        raw_max = (((1 << W) - 1) << (F - f)) + ((1 << (len(x) + 16)) >> s) + 1
        code = Mux(raw > lossf.max_code, lossf.max_code, raw) if raw_max > lossf.max_code else raw

        m.d.sync += diff.eq(sub)                         # (the MAC input register) z_max - z_j in MUL
        m.d.sync += [eb.eq(Mux(n[5:] == 0, word.bit_select(n[:5], 1), 0)), n.eq(n + 1)]
        m.d.sync += prod.eq(diff * (LOG2E >> tz))
        m.d.comb += [
            self.o.payload.loss.eq(code),
            self.o.payload.correct.eq(amax == self.label),
            lo_rd.addr.eq(u[:EXP_BITS]),
            hi_rd.addr.eq(Mux(read_z, zaddr, u[:EXP_BITS])),
            hi_wr.addr.eq(zaddr),
            hi_wr.data.eq(zr.word_select(chunk[:len(range(chunks))], 2)),
            log_rd.addr.eq(S[SUM_FRAC - LOG_BITS:SUM_FRAC]),
            lo_rd.en.eq(0),
            hi_rd.en.eq(read_z),
            log_rd.en.eq(0),
        ]

        with m.FSM():
            with m.State("LOAD"):
                m.d.comb += self.i.ready.eq(1)
                m.d.sync += [S.eq(0), q.eq(0), acc.eq(0), chunk.eq(0)]
                with m.If(self.i.valid):
                    m.d.sync += zr.eq(self.i.payload)
                    m.next = "STORE"
            with m.State("STORE"):                       # logit j -> exp_hi, 2 bits a cycle
                m.d.comb += hi_wr.en.eq(1)
                m.d.sync += chunk.eq(chunk + 1)
                with m.If((chunk == 0) & ((j == 0) | (z > zmax))):   # registered logit: off the input path
                    m.d.sync += [zmax.eq(z), amax.eq(j)]
                with m.If(chunk == chunks - 1):
                    m.d.sync += [j.eq(j + 1), chunk.eq(0)]
                    m.next = "LOAD"
                    with m.If(j == C - 1):
                        m.d.sync += j.eq(0)
                        m.next = "FETCH"
            with m.State("FETCH"):                       # logit j <- exp_hi: read chunk c, shift in c - 1
                m.d.comb += read_z.eq(1)
                m.d.sync += [zr.eq(Cat(zr[2:], hi_rd.data)), chunk.eq(chunk + 1)]
                with m.If(chunk == chunks):
                    m.next = "DIFF"
            with m.State("DIFF"):                        # z_max - z_j
                with m.If(j == self.label):
                    m.d.sync += margin.eq(sub)
                m.next = "MUL"
            with m.State("MUL"):                         # (z_max - z_j) * (LOG2E >> tz) into the product register
                m.next = "ADDR"
            with m.State("ADDR"):                        # EXP2[r] read; k = u >> 10 (into n), big
                m.d.comb += [lo_rd.en.eq(1), hi_rd.en.eq(1)]
                m.d.sync += [big.eq(u[EXP_BITS + 5:] != 0), n.eq(u[EXP_BITS:EXP_BITS + 5])]
                m.next = "PRIME"
            with m.State("PRIME"):                       # eb <- bit k - 1
                m.d.sync += t.eq(0)
                with m.If(big):
                    m.next = "NEXT"
                with m.Else():
                    m.next = "ROUND"
            with m.State("ROUND"):                       # carry-in = bit k - 1 (round half up)
                m.d.comb += term.eq(1)
                m.d.sync += carry.eq(ebit)
                m.next = "ADD"
            with m.State("ADD"):                         # S += EXP2[r] >> k, one bit a cycle
                m.d.comb += term.eq(1)
                m.d.sync += [S.eq(Cat(S[1:], s_in)), carry.eq(fa_carry), t.eq(t + 1)]
                with m.If(t == s_bits - 1):
                    m.next = "NEXT"
            with m.State("NEXT"):
                m.d.sync += j.eq(j + 1)
                with m.If(j == C - 1):
                    m.d.sync += j.eq(0)
                    m.next = "NORM"
                with m.Else():
                    m.d.sync += chunk.eq(0)
                    m.next = "FETCH"
            with m.State("NORM"):                        # shift S into [2^30, 2^31), q = p - 30
                m.d.comb += zero_in.eq(1)
                m.d.sync += [t.eq(0), carry.eq(0)]
                with m.If(S[SUM_FRAC + 1:] != 0):
                    m.d.sync += [S.eq(Cat(S[1:], s_in)), q.eq(q + 1)]
                with m.Else():
                    m.next = "RLOG"
            with m.State("RLOG"):                        # S += 2^19: the LOG2 index rounding
                m.d.comb += inject.eq(t == SUM_FRAC - LOG_BITS - 1)
                m.d.sync += [S.eq(Cat(S[1:], s_in)), carry.eq(fa_carry), t.eq(t + 1)]
                with m.If(t == s_bits - 1):
                    m.next = "LADDR"
            with m.State("LADDR"):                       # LOG2[i mod 1024]; i = 1024 carries into q
                m.d.comb += log_rd.en.eq(1)
                m.d.sync += [q.eq(q + S[SUM_FRAC + 1]), t.eq(0), rnd.eq(s == 1)]
                m.next = "LX"
            with m.State("LX"):                          # S <- x = log2S, shifted out at bit 0 in LN
                m.d.sync += S.eq(x)
                m.next = "LN"
            with m.State("LN"):                          # (acc, low) <- (acc + x_t * LN2) >> 1
                m.d.sync += [acc.eq(h_sum[1:]), low.eq(Cat(low[1:], h_sum[0])), t.eq(t + 1),
                             S.eq(S[1:]), rnd.eq(t == s - 2)]
                with m.If(t == steps - 1):
                    m.next = "OUT"
            with m.State("OUT"):
                m.d.comb += self.o.valid.eq(1)
                with m.If(self.o.ready):
                    m.next = "LOAD"
        return m
