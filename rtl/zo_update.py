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

Timing of a pass over P parameters: PRNG seeding N_max + SEEDER_LATENCY + 1 cycles, then one
parameter per cycle plus pipeline and hand-over cycles: P + N_max + 10 cycles from ``start`` to ``done``.
"""
from amaranth import Module, Mux, Signal, signed, unsigned
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.zo_fixed import B_BITS, K_BITS, M_FRAC

from .perturb import XiKind, saturate_value
from .prng import QUERY_BITS, PrngBank, gaussian_value, rademacher_negative


def _sum_tree(terms: list):
    while len(terms) > 1:
        terms = [terms[i] + terms[i + 1] if i + 1 < len(terms) else terms[i] for i in range(0, len(terms), 2)]
    return terms[0]


def param_port_members(addr_bits: int, width: int) -> dict:
    return {"rd_addr": Out(unsigned(addr_bits)), "rd_data": In(signed(width)),
            "wr_addr": Out(unsigned(addr_bits)), "wr_data": Out(signed(width)), "wr_en": Out(1)}


def segment_members(max_segments: int, addr_bits: int) -> dict:
    return {"seg_start": In(data.ArrayLayout(unsigned(addr_bits), max_segments)),
            "seg_bias": In(data.ArrayLayout(1, max_segments)),
            "n_segments": In(range(max_segments + 1))}


class SegmentCursor:
    """Tracks which segment a sequentially increasing flat index p is in (p == start of next -> advance)."""

    def __init__(self, m: Module, comp, max_segments: int) -> None:
        self.k = Signal(range(max_segments + 1))
        self.is_bias = Signal()
        self._m, self._c, self._S = m, comp, max_segments
        m.d.comb += self.is_bias.eq(comp.seg_bias[self.k])

    def reset(self):
        return self.k.eq(0)

    def step(self, p_next):
        """Statements to run when the index moves to p_next."""
        c = self._c
        nxt = Signal(range(self._S + 1))
        self._m.d.comb += nxt.eq(self.k + 1)
        return self.k.eq(Mux((nxt < c.n_segments) & (p_next == c.seg_start[nxt[:max(1, (self._S - 1).bit_length())]]),
                             nxt, self.k))


class SignRgeUpdate(wiring.Component):
    """theta_p <- sat(theta_p - alpha * sign(sum_i d_i xi_{i,p})) for all p, one parameter per cycle.

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

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.bank = bank = PrngBank(self.n_max)
        m.d.comb += [bank.seed.eq(self.seed), bank.step.eq(self.step), bank.first_query.eq(self.first_query),
                     bank.start.eq(self.start)]

        # a_p's sign from the N words of parameter p
        terms = []
        for i in range(self.n_max):
            w = bank.words[i]
            di = self.d[i]
            t = Mux(self.kind == XiKind.GAUSSIAN, di * gaussian_value(w), Mux(rademacher_negative(w), -di, di))
            terms.append(Mux(i < self.n_queries, t, 0))
        acc = Signal(signed(self.diff_bits + 12 + max(1, (self.n_max - 1).bit_length()) + 1))
        m.d.comb += acc.eq(_sum_tree(terms))

        p = Signal(unsigned(self.addr_bits + 1))
        cur = SegmentCursor(m, self, self.max_segments)
        # pipeline stage 2 (theta arrives from memory)
        v2 = Signal()
        p2 = Signal(unsigned(self.addr_bits))
        sgn_pos = Signal()
        sgn_neg = Signal()
        bias2 = Signal()

        m.d.comb += self.rd_addr.eq(p)
        running = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [p.eq(0), self.done.eq(0), self.changed.eq(0), cur.reset()]
                    m.next = "SEED"
            with m.State("SEED"):
                m.d.comb += self.busy.eq(1)
                with m.If(bank.ready):
                    m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += [self.busy.eq(1), running.eq(p < self.n_params), bank.next.eq(running)]
                with m.If(running):
                    m.d.sync += [p.eq(p + 1), cur.step(p + 1)]
                with m.Elif(~v2):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.sync += [v2.eq(running), p2.eq(p), sgn_pos.eq(acc > 0), sgn_neg.eq(acc < 0), bias2.eq(cur.is_bias)]

        theta = self.rd_data
        alpha = Mux(bias2, self.alpha_b, self.alpha_w)
        step = Mux(sgn_pos, alpha, Mux(sgn_neg, -alpha, 0))
        new = Signal(signed(self.width + 2))
        m.d.comb += new.eq(theta - step)
        sat = Mux(bias2, saturate_value(new, self.bias), saturate_value(new, self.weight))
        m.d.comb += [self.wr_addr.eq(p2), self.wr_data.eq(sat), self.wr_en.eq(v2)]
        with m.If(v2 & (sat != theta)):
            m.d.sync += self.changed.eq(self.changed + 1)
        return m


# ------------------------------------------------------------------------------------------------
# ZO-CGE with momentum (golden/zo_fixed.py: cge_step)
# ------------------------------------------------------------------------------------------------

def momentum_next(b, g, m_code, b_bits: int = B_BITS):
    """b <- sat_b(round_half_up(m_code * b >> M_FRAC) + g): golden's momentum update of one entry."""
    lim = (1 << (b_bits - 1)) - 1
    v = ((m_code * b + (1 << (M_FRAC - 1))) >> M_FRAC) + g
    return Mux(v > lim, lim, Mux(v < -lim - 1, -lim - 1, v))


class CgeUpdate(wiring.Component):
    """theta_p <- sat_p(theta_p - round_half_up(k_code_p * b_p >> k_shift_p)) for all p, one per cycle.

    Reads theta and the (already updated) momentum b at the same address; ``k_code``/``k_shift``
    per format (cores: ``_w``, biases: ``_b``) are golden's CGEConstants.  P + 4 cycles per pass.
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
            "b_data": In(signed(b_bits)),                 # momentum read port data (address = rd_addr)
            **segment_members(max_segments, self.addr_bits),
            **param_port_members(self.addr_bits, self.width),
            "changed": Out(unsigned(self.addr_bits + 1)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        p = Signal(unsigned(self.addr_bits + 1))
        cur = SegmentCursor(m, self, self.max_segments)
        v2 = Signal()
        p2 = Signal(unsigned(self.addr_bits))
        bias2 = Signal()
        m.d.comb += self.rd_addr.eq(p)
        running = Signal()
        with m.FSM():
            with m.State("IDLE"):
                with m.If(self.start):
                    m.d.sync += [p.eq(0), self.done.eq(0), self.changed.eq(0), cur.reset()]
                    m.next = "PASS"
            with m.State("PASS"):
                m.d.comb += [self.busy.eq(1), running.eq(p < self.n_params)]
                with m.If(running):
                    m.d.sync += [p.eq(p + 1), cur.step(p + 1)]
                with m.Elif(~v2):
                    m.d.sync += self.done.eq(1)
                    m.next = "IDLE"
        m.d.sync += [v2.eq(running), p2.eq(p), bias2.eq(cur.is_bias)]

        k_code = Mux(bias2, self.k_code_b, self.k_code_w)
        k_shift = Mux(bias2, self.k_shift_b, self.k_shift_w)
        prod = Signal(signed(64))  # k_code * b < 2^60; 64 bits so the rounding bit sign-extends for any shift
        m.d.comb += prod.eq(k_code * self.b_data)
        upd = Signal(signed(prod.shape().width + 1))
        # round half up: floor(x / 2^s) + bit s-1 of x (two's complement), s >= 1
        m.d.comb += upd.eq((prod >> k_shift) + prod.as_unsigned().bit_select((k_shift - 1).as_unsigned()[:6], 1))
        theta = self.rd_data
        new = Signal(signed(upd.shape().width + 1))
        m.d.comb += new.eq(theta - upd)
        sat = Mux(bias2, saturate_value(new, self.bias), saturate_value(new, self.weight))
        m.d.comb += [self.wr_addr.eq(p2), self.wr_data.eq(sat), self.wr_en.eq(v2)]
        with m.If(v2 & (sat != theta)):
            m.d.sync += self.changed.eq(self.changed + 1)
        return m
