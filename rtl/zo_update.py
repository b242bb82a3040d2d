"""ZO update engines: one read-modify-write pass over the parameter memory, in golden's flat order.

:class:`SignRgeUpdate` — the ZO-signRGE step after its N+1 losses are known.  With the loss
differences d_i = L_i - L_0 in registers, N PRNG streams (rtl/prng.PrngBank) regenerate
xi_{i,p} for one parameter p per cycle, an adder tree forms a_p = sum_i d_i * xi_{i,p}
(Rademacher: +-d_i; Gaussian-like: d_i * g), and theta_p <- sat(theta_p - alpha * sign(a_p))
is written back: no per-parameter accumulator memory at all, because the N streams run in
parallel.

Both engines share the parameter-memory port convention: ``rd_addr`` out, ``rd_data`` in one
cycle later (a lib.memory read port with its default transparent sync read), ``wr_addr`` /
``wr_data`` / ``wr_en`` out; and a segment map (flat start offset and bias flag of each core
and bias block) as array inputs, so biases use their own step code and saturation format.

Both are pipelined for the clock (docs/boards.md, "What limits the whole design's Fmax"): every
multiply, adder-tree level, wide addition, shift and saturation sits between registers, and the
memory read is timed so theta_p is registered next to the value that updates it.  The passes
stream one parameter a cycle, so the stages only add latency, once per pass:
- SignRgeUpdate: PRNG seeding (N_max + SEEDER_LATENCY + 1 cycles), then P parameters, then the
  pipeline: P + N_max + ceil(log2 N_max) + 15 + C cycles from ``start`` to ``done``, C = 3 chunks of
  17 bits for the trainer's 49-bit d_i (``pass_cycles``; P + N_max + 10 before the timing stages);
- CgeUpdate: P + 12 cycles (``pass_cycles``; P + 4 before), in either rounding mode: golden's
  round half up, or its stochastic rounding (``Rounding.STOCHASTIC``: the word of a xorshift32
  stream that advances with p is added below the shift; docs/rtl.md "Stochastic CGE rounding").
"""
from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.zo_fixed import B_BITS, K_BITS, M_FRAC

from .perturb import XiKind, saturate_value
from .prng import QUERY_BITS, SEEDER_LATENCY, PrngBank, Xorshift32, rademacher_negative


def param_port_members(addr_bits: int, width: int) -> dict:
    return {"rd_addr": Out(unsigned(addr_bits)), "rd_data": In(signed(width)),
            "wr_addr": Out(unsigned(addr_bits)), "wr_data": Out(signed(width)), "wr_en": Out(1)}


def segment_members(max_segments: int, addr_bits: int) -> dict:
    return {"seg_start": In(data.ArrayLayout(unsigned(addr_bits), max_segments)),
            "seg_bias": In(data.ArrayLayout(1, max_segments)),
            "n_segments": In(range(max_segments + 1))}


class SegmentCursor:
    """Tracks which segment a sequentially increasing flat index p is in (p == start of next -> advance).

    The next segment's start waits in a register (timing: the index is compared register to
    register, not through the segment table's multiplexer); it is an unreachable value past the
    last segment.
    """

    def __init__(self, m: Module, comp, max_segments: int) -> None:
        self.k = Signal(range(max_segments + 1))
        self.is_bias = Signal()
        self.next_start = Signal(unsigned(comp.addr_bits + 1))
        self._m, self._c, self._S = m, comp, max_segments
        m.d.comb += self.is_bias.eq(comp.seg_bias[self.k])

    def _start_of(self, j):
        c = self._c
        never = (1 << (c.addr_bits + 1)) - 1        # above any index (p <= n_params <= 2^addr_bits)
        return Mux(j < c.n_segments, c.seg_start[j[:max(1, (self._S - 1).bit_length())]], never)

    def reset(self):
        return [self.k.eq(0), self.next_start.eq(self._start_of(C(1, 2)))]

    def step(self, p_next):
        """Statements to run when the index moves to p_next."""
        adv = Signal()
        self._m.d.comb += adv.eq(p_next == self.next_start)
        return [self.k.eq(Mux(adv, self.k + 1, self.k)),
                self.next_start.eq(Mux(adv, self._start_of(self.k + 2), self.next_start))]


class SignRgeUpdate(wiring.Component):
    """theta_p <- sat(theta_p - alpha * sign(sum_i d_i xi_{i,p})) for all p, one parameter per cycle.

    a_p = sum_i d_i x_i with x_i = g (Gaussian-like), +-1 (Rademacher) or 0 (unused query), so both
    kinds share one datapath: x_i is formed before the multipliers, each d_i is split into 17-bit
    chunks (one 18 x 18 multiplier each), every chunk has its own adder tree (narrow adds, one level
    per stage) and the chunk sums are combined last.  Bit-exact: the sum is the same integer.

    Write ``d`` (loss differences, signed ``diff_bits``) for queries 0..N-1 before ``start``;
    ``n_queries`` (1..n_max) selects how many streams count.  ``seed``/``step``/``first_query``
    select the streams exactly as golden's ``perturbations(seed, step, N, n, kind, first_query)``.
    """

    def __init__(self, n_max: int, diff_bits: int = 49, max_segments: int = 16, n_params_max: int = 1 << 16,
                 weight: QFormat = DEFAULT_CONFIG.weight, bias: QFormat = DEFAULT_CONFIG.bias) -> None:
        self.n_max, self.diff_bits, self.max_segments = n_max, diff_bits, max_segments
        self.weight, self.bias = weight, bias
        self.width = max(weight.bits, bias.bits)
        self.addr_bits = max(1, (n_params_max - 1).bit_length())
        super().__init__({
            "start": In(1), "done": Out(1), "busy": Out(1),
            "seed": In(32), "step": In(32), "first_query": In(QUERY_BITS),
            "n_queries": In(range(n_max + 1)), "kind": In(XiKind),
            "n_params": In(unsigned(self.addr_bits + 1)),
            "alpha_w": In(signed(weight.bits)), "alpha_b": In(signed(bias.bits)),
            "d": In(data.ArrayLayout(signed(diff_bits), n_max)),
            **segment_members(max_segments, self.addr_bits),
            **param_port_members(self.addr_bits, self.width),
            "changed": Out(unsigned(self.addr_bits + 1)),   # parameters whose code changed in the last pass
        })

    def sign_stage(self) -> int:
        """Cycle (after issue) in which parameter p's sign registers hold: 4 + tree depth + chunks - 1 + 1."""
        return _sign_stage(self.n_max, self.diff_bits)

    def pass_cycles(self, n_params: int) -> int:
        """Cycles from ``start`` to ``done`` of a pass over n_params parameters (tested)."""
        return signrge_pass_cycles(n_params, self.n_max, self.diff_bits)

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.bank = bank = PrngBank(self.n_max)
        m.d.comb += [bank.seed.eq(self.seed), bank.step.eq(self.step), bank.first_query.eq(self.first_query),
                     bank.start.eq(self.start)]
        n = self.n_max

        # ---- a_p's sign, pipelined (timing): every arrow below ends in a register -------------------
        # stage 1: the N PRNG words of parameter p
        w1 = [Signal(32, name=f"w1_{i}") for i in range(n)]
        m.d.sync += [w1[i].eq(bank.words[i]) for i in range(n)]
        # stage 2: the byte pair sums of golden's Gaussian-like g, and the Rademacher sign bit
        h0 = [Signal(9, name=f"h0_{i}") for i in range(n)]
        h1 = [Signal(9, name=f"h1_{i}") for i in range(n)]
        neg2 = [Signal(name=f"neg2_{i}") for i in range(n)]
        for i in range(n):
            m.d.sync += [h0[i].eq(w1[i][0:8] + w1[i][8:16]), h1[i].eq(w1[i][16:24] + w1[i][24:32]),
                         neg2[i].eq(rademacher_negative(w1[i]))]
        # stage 3: x_i = g (Gaussian-like), +-1 (Rademacher), 0 (query i not used): a_p = sum_i d_i x_i
        x3 = [Signal(signed(11), name=f"x3_{i}") for i in range(n)]
        for i in range(n):
            g = h0[i] + h1[i] - 510                  # golden gaussian: b0 + b1 + b2 + b3 - 510
            x = Mux(self.kind == XiKind.GAUSSIAN, g, Mux(neg2[i], -1, 1))
            m.d.sync += x3[i].eq(Mux(i < self.n_queries, x, 0))
        # stage 4: partial products chunk_c(d_i) * x_i (each fits one 18 x 18 multiplier).  The d_i
        # (constant during a pass, set before start; the PRNG bank's seeding takes > N cycles) are
        # registered here, beside the multipliers (timing: the caller's registers may be far away).
        d_q = [Signal(signed(self.diff_bits), name=f"d_q{i}") for i in range(n)]
        m.d.sync += [d_q[i].eq(self.d[i]) for i in range(n)]
        chunks = _chunks(self.diff_bits)
        sums = []
        for c, (lo, hi) in enumerate(chunks):
            terms = []
            for i in range(n):
                part = d_q[i].as_unsigned()[lo:hi]
                part = part.as_signed() if hi == self.diff_bits else part   # the top chunk carries the sign
                pp = Signal(signed(len(part) + 1 + 11), name=f"pp4_{c}_{i}")
                m.d.sync += pp.eq(part * x3[i])
                terms.append(pp)
            # stages 5 ..: one adder-tree level per stage
            level = 0
            while len(terms) > 1:
                level += 1
                nxt = []
                for j in range(0, len(terms), 2):
                    if j + 1 < len(terms):
                        v = terms[j] + terms[j + 1]
                    else:
                        v = terms[j]
                    r = Signal(signed(len(v) if j + 1 < len(terms) else len(v) + 1), name=f"t{level}_{c}_{j // 2}")
                    m.d.sync += r.eq(v)
                    nxt.append(r)
                terms = nxt
            sums.append(terms[0])
        # then a = sum_c S_c * 2^lo_c, one chunk per stage (the later sums wait in registers)
        acc = sums[0]
        pending = sums[1:]
        for c, (lo, _) in enumerate(chunks[1:], 1):
            v = acc + (pending[0] << lo)
            nacc = Signal(signed(len(v)), name=f"a_{c}")
            m.d.sync += nacc.eq(v)
            rest = []
            for j, s_ in enumerate(pending[1:]):
                r = Signal.like(s_, name=f"s_{c}_{j}")
                m.d.sync += r.eq(s_)
                rest.append(r)
            acc, pending = nacc, rest
        sgn_pos = Signal()
        sgn_neg = Signal()
        m.d.sync += [sgn_pos.eq(acc > 0), sgn_neg.eq(acc < 0)]
        S = self.sign_stage()

        # ---- the pass: issue p, delay (valid, p, bias) to the read, the sign and the write ---------
        p = Signal(unsigned(self.addr_bits + 1))
        cur = SegmentCursor(m, self, self.max_segments)
        running = Signal()
        vs = [running] + [Signal(name=f"v{k}") for k in range(1, S + 2)]
        ps = [p[:self.addr_bits]] + [Signal(unsigned(self.addr_bits), name=f"p{k}") for k in range(1, S + 2)]
        bs = [cur.is_bias] + [Signal(name=f"b{k}") for k in range(1, S + 1)]
        for k in range(1, S + 2):
            m.d.sync += [vs[k].eq(vs[k - 1]), ps[k].eq(ps[k - 1])]
        for k in range(1, S + 1):
            m.d.sync += bs[k].eq(bs[k - 1])
        # theta_p is read so that it sits in a register next to its sign (stage S)
        m.d.comb += self.rd_addr.eq(ps[S - 2])
        theta = Signal(signed(self.width))
        alpha = Signal(signed(self.width))
        m.d.sync += [theta.eq(self.rd_data), alpha.eq(Mux(bs[S - 1], self.alpha_b, self.alpha_w))]
        # stage S + 1: theta - alpha * sign (both candidates from registers), stage S + 2: saturated write
        new = Signal(signed(self.width + 1))
        theta1 = Signal(signed(self.width))
        m.d.sync += [new.eq(Mux(sgn_pos, theta - alpha, Mux(sgn_neg, theta + alpha, theta))), theta1.eq(theta)]
        sat = Mux(bs[S], saturate_value(new, self.bias), saturate_value(new, self.weight))
        wr_data = Signal(signed(self.width))
        wr_en = Signal()
        wr_addr = Signal(unsigned(self.addr_bits))
        theta2 = Signal(signed(self.width))
        m.d.sync += [wr_data.eq(sat), wr_en.eq(vs[S + 1]), wr_addr.eq(ps[S + 1]), theta2.eq(theta1)]
        m.d.comb += [self.wr_addr.eq(wr_addr), self.wr_data.eq(wr_data), self.wr_en.eq(wr_en)]
        with m.If(wr_en & (wr_data != theta2)):
            m.d.sync += self.changed.eq(self.changed + 1)
        in_flight = Signal()
        m.d.comb += in_flight.eq(Cat(*vs[1:], wr_en).any())

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [p.eq(0), self.done.eq(0), self.changed.eq(0), cur.reset()]
                    m.next = "SEED"
            with m.State("SEED"):
                m.d.comb += self.busy.eq(1)
                with m.If(bank.ready):
                    m.d.sync += running.eq(self.n_params != 0)
                    m.next = "PASS"
            with m.State("PASS"):   # running (p < n_params) is a register, computed a cycle ahead (timing)
                m.d.comb += [self.busy.eq(1), bank.next.eq(running)]
                with m.If(running):
                    m.d.sync += [p.eq(p + 1), cur.step(p + 1), running.eq(p + 1 < self.n_params)]
                with m.Elif(~in_flight):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        return m


def _sign_stage(n_max: int, diff_bits: int) -> int:
    return 4 + _tree_depth(n_max) + len(_chunks(diff_bits)) - 1 + 1


def signrge_pass_cycles(n_params: int, n_max: int, diff_bits: int = 49) -> int:
    """SignRgeUpdate(n_max, diff_bits).pass_cycles(n_params) without building one."""
    return n_params + n_max + SEEDER_LATENCY + 6 + _sign_stage(n_max, diff_bits)


def _tree_depth(n: int) -> int:
    return max(0, (n - 1).bit_length())


def _chunks(bits: int) -> list[tuple[int, int]]:
    """Bit ranges of a signed `bits`-wide value for 18 x 18 multipliers: 17-bit unsigned chunks, a signed top."""
    out, lo = [], 0
    while bits - lo > 18:
        out.append((lo, lo + 17))
        lo += 17
    out.append((lo, bits))
    return out


# ------------------------------------------------------------------------------------------------
# ZO-CGE with momentum (golden/zo_fixed.py: cge_step)
# ------------------------------------------------------------------------------------------------

def momentum_next(b, g, m_code, b_bits: int = B_BITS):
    """b <- sat_b(round_half_up(m_code * b >> M_FRAC) + g): golden's momentum update of one entry."""
    lim = (1 << (b_bits - 1)) - 1
    v = ((m_code * b + (1 << (M_FRAC - 1))) >> M_FRAC) + g
    return Mux(v > lim, lim, Mux(v < -lim - 1, -lim - 1, v))


class Rounding(enum.Enum, shape=1):
    """How CgeUpdate rounds k_code * b >> k_shift (golden OptimConfig.cge_rounding)."""

    NEAREST = 0       # round half up (golden's default)
    STOCHASTIC = 1    # + word p of stream (seed, t, SR_QUERY) in the discarded bits, then floor


class CgeUpdate(wiring.Component):
    """theta_p <- sat_p(theta_p - ((k_code_p * b_p + r_p) >> k_shift_p)) for all p, one per cycle.

    Reads theta and the (already updated) momentum b at the same address; ``k_code``/``k_shift``
    per format (cores: ``_w``, biases: ``_b``) are golden's CGEConstants (k_shift in 1..62).  The
    addend r_p selects the rounding (``rounding``, captured at ``start``): NEAREST r_p = 2^(s-1) is
    round half up; STOCHASTIC r_p = u_p mod 2^s (u_p << (s - 32) for s > 32) with u_p word p of the
    xorshift32 stream whose seed state is ``sr_state`` (= golden ``stream_seed(seed, t, SR_QUERY)``,
    loaded at ``start``), i.e. golden ``cge_step(..., rounding_words=stochastic_rounding_words(seed,
    t, d))``.  Both modes share one datapath and P + 12 cycles per pass.
    """

    def __init__(self, max_segments: int = 16, n_params_max: int = 1 << 16,
                 weight: QFormat = DEFAULT_CONFIG.weight, bias: QFormat = DEFAULT_CONFIG.bias,
                 b_bits: int = B_BITS) -> None:
        self.max_segments, self.weight, self.bias, self.b_bits = max_segments, weight, bias, b_bits
        self.width = max(weight.bits, bias.bits)
        self.addr_bits = max(1, (n_params_max - 1).bit_length())
        super().__init__({
            "start": In(1), "done": Out(1), "busy": Out(1),
            "n_params": In(unsigned(self.addr_bits + 1)),
            "k_code_w": In(unsigned(K_BITS)), "k_shift_w": In(range(64)),
            "k_code_b": In(unsigned(K_BITS)), "k_shift_b": In(range(64)),
            "rounding": In(Rounding), "sr_state": In(32),   # captured / loaded at start
            "b_data": In(signed(b_bits)),                 # momentum read port data (address = rd_addr)
            **segment_members(max_segments, self.addr_bits),
            **param_port_members(self.addr_bits, self.width),
            "changed": Out(unsigned(self.addr_bits + 1)),
        })

    #: cycles from issuing parameter p to its registered write (read, operands, products, two chunk
    #: additions, + rounding addend, coarse and fine shift, subtraction, saturation).
    WRITE_STAGE = 10

    def pass_cycles(self, n_params: int) -> int:
        """Cycles from ``start`` to ``done`` of a pass over n_params parameters (tested)."""
        return n_params + self.WRITE_STAGE + 2

    def elaborate(self, platform) -> Module:
        m = Module()
        p = Signal(unsigned(self.addr_bits + 1))
        cur = SegmentCursor(m, self, self.max_segments)
        running = Signal()
        m.d.comb += self.rd_addr.eq(p)
        W = self.WRITE_STAGE
        vs = [running] + [Signal(name=f"v{k}") for k in range(1, W + 1)]
        ps = [p[:self.addr_bits]] + [Signal(unsigned(self.addr_bits), name=f"p{k}") for k in range(1, W + 1)]
        bs = [cur.is_bias] + [Signal(name=f"b{k}") for k in range(1, W + 1)]
        for k in range(1, W + 1):
            m.d.sync += [vs[k].eq(vs[k - 1]), ps[k].eq(ps[k - 1]), bs[k].eq(bs[k - 1])]

        # The stochastic rounding words: golden's stream (seed, t, SR_QUERY), one word per issued p.
        m.submodules.sr_stream = sr = Xorshift32()
        sr_on = Signal()          # the pass's rounding, captured at start
        m.d.comb += [sr.state_in.eq(self.sr_state), sr.next.eq(running)]     # (loaded at start, below)

        # Pipelined (timing), every arrow ends in a register; the stage number is the cycle after issue.
        # 1: theta_p and b_p on the memories' outputs; this parameter's k_code, k_shift - 1, word u_p
        k_code = Signal(unsigned(K_BITS))
        k_sm1 = Signal(6)
        u1 = Signal(32)
        m.d.sync += [k_code.eq(Mux(bs[0], self.k_code_b, self.k_code_w)),
                     k_sm1.eq(Mux(bs[0], self.k_shift_b, self.k_shift_w) - 1), u1.eq(sr.word)]
        # 2: both registered
        theta = [None, None] + [Signal(signed(self.width), name=f"theta{k}") for k in range(2, 10)]
        m.d.sync += theta[2].eq(self.rd_data)
        for k in range(3, 10):
            m.d.sync += theta[k].eq(theta[k - 1])
        b2 = Signal(signed(self.b_bits))
        k2 = Signal.like(k_code)
        s2 = Signal.like(k_sm1)
        m.d.sync += [b2.eq(self.b_data), k2.eq(k_code), s2.eq(k_sm1)]
        shift = [None, None, s2] + [Signal(6, name=f"s{k}") for k in range(3, 8)]
        for k in range(3, 8):
            m.d.sync += shift[k].eq(shift[k - 1])
        # 2..5, beside the product: the rounding addend r (64 bits), registered at stage 5.
        #   2: u mod 2^min(s, 32) (bit i kept iff i <= s - 1) and hi = max(s - 32, 0)
        #   3, 4: << hi, by 8s then the rest;  5: STOCHASTIC -> that, NEAREST -> 2^(s-1)
        u2 = Signal(32)
        hi2 = Signal(5)
        m.d.sync += [u2.eq(Cat(u1[0], *[u1[i] & (k_sm1 >= i) for i in range(1, 32)])),   # (s >= 1: bit 0 kept)
                     hi2.eq(Mux(k_sm1 >= 32, k_sm1 - 31, 0))]
        r3 = Signal(32 + 24)
        hi3 = Signal(3)
        m.d.sync += [r3.eq(u2 << Cat(C(0, 3), hi2[3:5])), hi3.eq(hi2[0:3])]
        r4 = Signal(64)
        m.d.sync += r4.eq(r3 << hi3)
        r5 = Signal(64)
        m.d.sync += r5.eq(Mux(sr_on, r4, C(1, 64) << shift[4]))
        # 3: k_code * b as partial products of 17-bit chunks of b (one 18 x 18 multiplier each)
        pps = []
        for c, (lo, hi) in enumerate(_chunks(self.b_bits)):
            part = b2.as_unsigned()[lo:hi]
            part = part.as_signed() if hi == self.b_bits else part
            pp = Signal(signed(len(part) + K_BITS + 2), name=f"pp3_{c}")
            m.d.sync += pp.eq(part * k2)
            pps.append((lo, pp))
        # 4, 5: k_code * b = sum_c pp_c * 2^lo_c, one chunk per stage
        acc = pps[0][1]
        pending = pps[1:]
        stage = 3
        while pending:
            stage += 1
            lo, pp = pending[0]
            v = acc + (pp << lo)
            nacc = Signal(signed(len(v)), name=f"prod{stage}")
            m.d.sync += nacc.eq(v)
            rest = []
            for lo2, pp2 in pending[1:]:
                r = Signal.like(pp2, name=f"{pp2.name}_d{stage}")
                m.d.sync += r.eq(pp2)
                rest.append((lo2, r))
            acc, pending = nacc, rest
        assert stage == 5, "the stage numbers below assume three chunks of b"
        # 6: z = k_code * b + r  (|k_code * b| < 2^59 and r <= 2^63, so z fits 65 signed bits)
        z6 = Signal(signed(65))
        m.d.sync += z6.eq(acc + r5)
        # 7, 8: y = z >> (k_shift - 1), arithmetic: a coarse shift by 8s, then the rest
        y7 = Signal.like(z6)
        y8 = Signal.like(z6)
        m.d.sync += [y7.eq(z6 >> Cat(C(0, 3), shift[6][3:6])), y8.eq(y7 >> shift[7][0:3])]
        # 9: theta - floor(z / 2^k_shift) = theta - (y >> 1)
        #    (NEAREST: floor((x + 2^(s-1)) / 2^s), golden's round half up, also for s = 0 -> update 0)
        new = Signal(signed(len(y8) + 1))
        m.d.sync += new.eq(theta[8] - (y8 >> 1))
        # 10: saturated into the write register
        sat = Mux(bs[9], saturate_value(new, self.bias), saturate_value(new, self.weight))
        wr_data = Signal(signed(self.width))
        m.d.sync += wr_data.eq(sat)
        theta10 = Signal(signed(self.width))
        m.d.sync += theta10.eq(theta[9])
        m.d.comb += [self.wr_addr.eq(ps[W]), self.wr_data.eq(wr_data), self.wr_en.eq(vs[W])]
        with m.If(vs[W] & (wr_data != theta10)):
            m.d.sync += self.changed.eq(self.changed + 1)
        in_flight = Signal()
        m.d.comb += in_flight.eq(Cat(*vs[1:W + 1]).any())

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.comb += sr.load.eq(1)
                    m.d.sync += [p.eq(0), self.done.eq(0), self.changed.eq(0), cur.reset(),
                                 sr_on.eq(self.rounding == Rounding.STOCHASTIC), running.eq(self.n_params != 0)]
                    m.next = "PASS"
            with m.State("PASS"):   # running (p < n_params) is a register, computed a cycle ahead (timing)
                m.d.comb += self.busy.eq(1)
                with m.If(running):
                    m.d.sync += [p.eq(p + 1), cur.step(p + 1), running.eq(p + 1 < self.n_params)]
                with m.Elif(~in_flight):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        return m
