"""ZO update engines: one read-modify-write pass over the parameter memory, in golden's flat order.

:class:`SignRgeUpdate` — the ZO-signRGE step after its N+1 losses are known.  With the loss
differences d_i = L_i - L_0 held by the caller, the N_max PRNG streams regenerate xi_{i,p}
serially: a ring of N_max stream registers and one xorshift32 give word p of stream i in cycle
(N_max + 1) p + i of the pass, one multiplier datapath accumulates a_p = sum_i d_i * xi_{i,p}
(Rademacher: +-d_i; Gaussian-like: d_i * g) over those cycles, and
theta_p <- sat(theta_p - alpha * sign(a_p)) is written back: no per-parameter accumulator memory, and one multiplier datapath instead of
N_max (the pass runs once per training step, next to N + 1 forward passes of millions of cycles).

Both engines share the parameter-memory port convention: ``rd_addr`` out, ``rd_data`` in one
cycle later (a lib.memory read port with its default transparent sync read), ``wr_addr`` /
``wr_data`` / ``wr_en`` out; and a segment map (flat start offset and bias flag of each core
and bias block) as array inputs, so biases use their own step code and saturation format.

Both are pipelined for the clock (docs/boards.md, "What limits the whole design's Fmax"): every
multiply, wide addition, shift and saturation sits between registers, and the memory read is
timed so theta_p is registered next to the value that updates it.  The stages only add latency,
once per pass:
- SignRgeUpdate: seeding (N_max + SEEDER_LATENCY cycles), N_max + 1 cycles per parameter (one per
  stream and an idle one), then the pipeline: (N_max + 1) P + N_max + C + 12 cycles from ``start``
  to ``done``, C = 3 chunks of 17 bits for the trainer's 49-bit d_i (``pass_cycles``: 11 P + 25 for
  N_max = 10; the former parallel engine took P + N_max + ceil(log2 N_max) + 18);
- CgeUpdate: P + 12 cycles (``pass_cycles``; P + 4 before), in either rounding mode: golden's
  round half up, or its stochastic rounding (``Rounding.STOCHASTIC``: the word of a xorshift32
  stream that advances with p is added below the shift; docs/rtl.md "Stochastic CGE rounding").
"""
from amaranth import C, Cat, Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, enum, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.prng import MAX_QUERY
from ttzo.golden.zo_fixed import B_BITS, K_BITS, M_FRAC

from .perturb import XiKind, saturate_value
from .prng import QUERY_BITS, SEEDER_LATENCY, StreamSeeder, Xorshift32, rademacher_negative, xorshift32_value


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
    """theta_p <- sat(theta_p - alpha * sign(sum_i d_i xi_{i,p})) for all p, the N_max streams serially.

    a_p = sum_i d_i x_i with x_i = g (Gaussian-like), +-1 (Rademacher) or 0 (unused query), so both
    kinds share one multiplier datapath, used once per (p, i), i = 0..N_max-1 within p, one a cycle,
    then an idle cycle: a ring of N_max 32-bit registers holds the next word of every stream (query
    first_query + i); each issue consumes the head word (word p of stream i) and shifts in its
    successor (word p + 1) at the tail, so the streams come round in golden's order.  x_i is formed
    from the word, d_i is picked by a multiplexer and split into 17-bit chunks (one 18 x 18
    multiplier each), each chunk's products are accumulated over i in a register of their own
    (narrow adds, cleared by a synchronous reset in the idle slot), and after the last stream the
    chunk sums are combined.  Bit-exact: the sum is the same integer.

    Write ``d`` (loss differences, signed ``diff_bits``) for queries 0..N-1 before ``start`` and hold
    them during the pass (they are read throughout it); ``n_queries`` (1..n_max) selects how many
    streams count.  ``seed``/``step``/``first_query`` (captured at ``start``) select the streams
    exactly as golden's ``perturbations(seed, step, N, n, kind, first_query)``.
    """

    def __init__(self, n_max: int, diff_bits: int = 49, max_segments: int = 16, n_params_max: int = 1 << 16,
                 weight: QFormat = DEFAULT_CONFIG.weight, bias: QFormat = DEFAULT_CONFIG.bias) -> None:
        if not 1 <= n_max <= MAX_QUERY:
            raise ValueError(f"SignRgeUpdate: n_max={n_max} outside 1..{MAX_QUERY}")
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
        """Cycle (after issuing p's last stream) in which p's sign registers hold: 4 + chunks."""
        return _sign_stage(self.diff_bits)

    def pass_cycles(self, n_params: int) -> int:
        """Cycles from ``start`` to ``done`` of a pass over n_params parameters (tested)."""
        return signrge_pass_cycles(n_params, self.n_max, self.diff_bits)

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self.n_max
        running = Signal()     # issuing (p, i); a register, computed a cycle ahead (timing)
        seeding = Signal()     # SEED state: the stream seeds enter the ring

        # ---- stream seeds: one shared fmix32 pipeline, queries first_query .. first_query + N_max - 1 ---
        m.submodules.seeder = seeder = StreamSeeder(1)
        seed, step = Signal(32), Signal(32)
        query = Signal(QUERY_BITS)
        n_issued = Signal(range(n + 1))
        m.d.comb += [seeder.seed.eq(seed), seeder.step.eq(step), seeder.query.eq(query),
                     seeder.tag.eq(n_issued == n - 1), seeder.valid.eq(seeding & (n_issued < n))]
        with m.If(seeder.valid):
            m.d.sync += [n_issued.eq(n_issued + 1), query.eq(query + 1)]

        # ---- the PRNG ring: ring[0] is word p of stream i, the word the datapath takes this cycle -----
        # Seeding shifts in xorshift32(seed state) = word 0 of each stream, query order; a pass shifts in
        # xorshift32(ring[0]) = word p + 1 of the stream just used, which is back at the head N_max shifts later.
        ring = [Signal(32, name=f"ring{k}") for k in range(n)]
        issue = Signal()       # (p, i) enters the datapath this cycle
        with m.If(Mux(seeding, seeder.out_valid, issue)):
            m.d.sync += [ring[k].eq(ring[k + 1]) for k in range(n - 1)]
            m.d.sync += ring[n - 1].eq(xorshift32_value(Mux(seeding, seeder.state, ring[0])))

        # ---- issue: (p, i) in golden's order, one per cycle, then an idle slot i = N_max per parameter ----
        # (the idle slot lets the chunk sums restart by a synchronous reset instead of a multiplexer)
        p = Signal(unsigned(self.addr_bits + 1))
        i = Signal(range(n + 1))
        m.d.comb += issue.eq(running & (i != n))
        with m.If(running):
            with m.If(i == n):
                m.d.sync += [i.eq(0), p.eq(p + 1), running.eq(p + 1 < self.n_params)]
            with m.Else():
                m.d.sync += i.eq(i + 1)

        # ---- a_p's sign, pipelined (timing): every arrow below ends in a register --------------------
        # the stage number is the cycle after issuing (p, i); `last` marks i = N_max - 1
        S = self.sign_stage()
        v1 = Signal()
        last = [None] + [Signal(name=f"last{k}") for k in range(1, S + 2)]
        m.d.sync += [v1.eq(issue), last[1].eq(running & (i == n - 1))]
        m.d.sync += [last[k].eq(last[k - 1]) for k in range(2, S + 2)]
        # stage 1: the byte pair sums of golden's Gaussian-like g, and the Rademacher sign bit
        h0, h1, neg1 = Signal(9), Signal(9), Signal()
        i1 = Signal.like(i)
        m.d.sync += [h0.eq(ring[0][0:8] + ring[0][8:16]), h1.eq(ring[0][16:24] + ring[0][24:32]),
                     neg1.eq(rademacher_negative(ring[0])), i1.eq(i)]
        # stage 2: x_i = g (Gaussian-like), +-1 (Rademacher), 0 (query i not used, or no (p, i) issued);
        # d_i beside it (d is held by the caller during the pass; the multiplexer's select i1 is a register)
        x2 = Signal(signed(11))
        g = h0 + h1 - 510                            # golden gaussian: b0 + b1 + b2 + b3 - 510
        x = Mux(self.kind == XiKind.GAUSSIAN, g, Mux(neg1, -1, 1))
        m.d.sync += x2.eq(Mux(v1 & (i1 < self.n_queries), x, 0))
        d2 = Signal(signed(self.diff_bits))
        m.d.sync += d2.eq(self.d[i1])
        # stage 3: partial products chunk_c(d_i) * x_i (each fits one 18 x 18 multiplier)
        # stage 4: each chunk's running sum over i: S_c = sum_i chunk_c(d_i) x_i; reset to 0 (synchronous
        # reset: no multiplexer) once p's sums are complete (`last`), while the idle slot's 0 product
        # passes (x = 0 whenever nothing is issued, so the sums stay 0 between passes)
        chunks = _chunks(self.diff_bits)
        sums = []
        for c, (lo, hi) in enumerate(chunks):
            part = d2.as_unsigned()[lo:hi]
            part = part.as_signed() if hi == self.diff_bits else part   # the top chunk carries the sign
            pp = Signal(signed(len(part) + 1 + 11), name=f"pp3_{c}")
            m.d.sync += pp.eq(part * x2)
            acc = Signal(signed(len(pp) + _log2_ceil(n)), name=f"acc4_{c}")
            with m.If(last[4]):
                m.d.sync += acc.eq(0)
            with m.Else():
                m.d.sync += acc.eq(acc + pp)
            sums.append(acc)
        # stages 5 ..: a = sum_c S_c * 2^lo_c, one chunk per stage (the later sums wait in registers);
        # the values matter in the stages where `last` marks p's complete sums
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
        m.d.sync += [sgn_pos.eq(acc > 0), sgn_neg.eq(acc < 0)]     # stage S

        # ---- read, update and write p, in order: counters stepped by p's `last` mark -------------------
        # theta_p is read (at stage S - 2) so that it sits in a register next to its sign (stage S);
        # the segment cursor follows the read index, its bias flag travels with p from there
        rd_p = Signal(unsigned(self.addr_bits + 1))
        rd_p1 = Signal(unsigned(self.addr_bits + 1))     # rd_p + 1, a register (timing: the cursor's compare)
        cur = SegmentCursor(m, self, self.max_segments)
        m.d.comb += self.rd_addr.eq(rd_p[:self.addr_bits])
        with m.If(last[S - 2]):
            m.d.sync += [rd_p.eq(rd_p1), rd_p1.eq(rd_p1 + 1), cur.step(rd_p1)]
        b = {k: Signal(name=f"b{k}") for k in (S - 1, S, S + 1)}
        m.d.sync += [b[S - 1].eq(cur.is_bias), b[S].eq(b[S - 1]), b[S + 1].eq(b[S])]
        theta = Signal(signed(self.width))
        alpha = Signal(signed(self.width))
        m.d.sync += [theta.eq(self.rd_data), alpha.eq(Mux(b[S - 1], self.alpha_b, self.alpha_w))]
        # stage S + 1: theta - alpha * sign (both candidates from registers), stage S + 2: saturated write
        new = Signal(signed(self.width + 1))
        theta1 = Signal(signed(self.width))
        m.d.sync += [new.eq(Mux(sgn_pos, theta - alpha, Mux(sgn_neg, theta + alpha, theta))), theta1.eq(theta)]
        sat = Mux(b[S + 1], saturate_value(new, self.bias), saturate_value(new, self.weight))
        wr_data = Signal(signed(self.width))
        wr_en = Signal()
        wr_p = Signal(unsigned(self.addr_bits))
        theta2 = Signal(signed(self.width))
        m.d.sync += [wr_data.eq(sat), wr_en.eq(last[S + 1]), theta2.eq(theta1)]
        m.d.comb += [self.wr_addr.eq(wr_p), self.wr_data.eq(wr_data), self.wr_en.eq(wr_en)]
        with m.If(wr_en):
            m.d.sync += wr_p.eq(wr_p + 1)
            with m.If(wr_data != theta2):
                m.d.sync += self.changed.eq(self.changed + 1)
        in_flight = Signal()
        m.d.comb += in_flight.eq(Cat(*last[1:], wr_en).any())

        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [seed.eq(self.seed), step.eq(self.step), query.eq(self.first_query),
                                 n_issued.eq(0), p.eq(0), i.eq(0), rd_p.eq(0), rd_p1.eq(1), wr_p.eq(0),
                                 cur.reset(), self.done.eq(0), self.changed.eq(0)]
                    m.next = "SEED"
            with m.State("SEED"):
                m.d.comb += [self.busy.eq(1), seeding.eq(1)]
                with m.If(seeder.out_valid & seeder.out_tag[0]):    # the last stream's seed enters the ring
                    m.d.sync += running.eq(self.n_params != 0)
                    m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += self.busy.eq(1)
                with m.If(~running & ~in_flight):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        return m


def _sign_stage(diff_bits: int) -> int:
    """Word, x_i, product, chunk sums (stages 1-4), chunks - 1 combining stages, the sign register."""
    return 4 + len(_chunks(diff_bits))


def signrge_pass_cycles(n_params: int, n_max: int, diff_bits: int = 49) -> int:
    """SignRgeUpdate(n_max, diff_bits).pass_cycles(n_params) without building one.

    Cycle 0 is the start; seed requests in cycles 1..N_max, the last seed enters the ring
    SEEDER_LATENCY cycles after its request; then N_max + 1 cycles per parameter (N_max streams and
    the idle slot), the last parameter's last stream issued one cycle before its idle slot; its write
    S + 2 cycles later; one cycle sees the pipeline empty, then ``done`` is up:
    (N_max + 1) P + N_max + SEEDER_LATENCY + S + 3 (= 11 P + 25 for N_max = 10 and 49-bit d_i: S = 7).
    """
    if n_params == 0:    # seeding, then the pass finds nothing to issue: done two cycles later
        return n_max + SEEDER_LATENCY + 2
    return (n_max + 1) * n_params + n_max + SEEDER_LATENCY + _sign_stage(diff_bits) + 3


def _log2_ceil(n: int) -> int:
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
