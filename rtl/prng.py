"""The on-chip PRNG: golden's xorshift32 streams, seeded by fmix32(seed ^ ((step << 12) | query)).

Bit for bit what ``ttzo.golden.prng`` defines (read its docstring): a stream's p-th word is
xorshift32 applied p+1 times to its seed state.  Each :class:`Xorshift32` shows that word
*combinationally* (``word = xorshift32(state)``) and steps on ``next``, so after a ``load``
word 0 is on the output at once and one word is consumed per cycle.

:class:`StreamSeeder` is a pipelined fmix32 (one stream seed per cycle, latency
:data:`SEEDER_LATENCY`): each 32x32 constant multiply (mod 2^32) is split into three registered
16x16 partial products (one hard multiplier each) summed in the next stage, so no register-to-
register path holds more than one hard multiplier or one short chain of adds.
:class:`PrngBank` holds N streams (queries first_query..first_query+N-1 of one step), seeds
them one after another through one shared seeder (N + latency cycles) and then advances all N
in lock step: N parallel xi words a cycle (the signRGE update no longer uses it: since the seventh
session rtl/zo_update.SignRgeUpdate keeps a ring of N_max stream states, one xi a cycle).
"""

from amaranth import Cat, Module, Mux, Signal, Value
from amaranth.lib import data, wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.prng import MAX_QUERY

FMIX_C1 = 0x85EBCA6B
FMIX_C2 = 0xC2B2AE35
#: Cycles from ``valid`` in to ``valid`` out of :class:`StreamSeeder`.
SEEDER_LATENCY = 5
QUERY_BITS = (MAX_QUERY - 1).bit_length()  # 12


def xorshift32_value(x: Value) -> Value:
    """One xorshift32 (13, 17, 5) step as a combinational 32-bit expression."""
    x = (x ^ (x << 13))[:32]
    x = (x ^ (x >> 17))[:32]
    x = (x ^ (x << 5))[:32]
    return x


def rademacher_negative(word: Value) -> Value:
    """1 where golden's Rademacher xi is -1 (bit 31 set), 0 where it is +1."""
    return word[31]


def gaussian_value(word: Value) -> Value:
    """golden.prng.gaussian: b0 + b1 + b2 + b3 - 510 as a signed 11-bit value (7 fraction bits)."""
    s = word[0:8] + word[8:16] + word[16:24] + word[24:32]  # unsigned(10); minus a constant is signed
    return s - 510


class Xorshift32(wiring.Component):
    """One xorshift32 stream: ``load`` a state, read ``word`` (the next output), pulse ``next`` to consume it.

    ``load`` wins over ``next`` in the same cycle.  ``word`` is xorshift32(state), i.e. after
    loading seed state s it is golden's word 0 of that stream.
    """

    load: In(1)
    state_in: In(32)
    next: In(1)
    word: Out(32)

    def elaborate(self, platform) -> Module:
        m = Module()
        state = Signal(32, init=1)
        m.d.comb += self.word.eq(xorshift32_value(state))
        with m.If(self.load):
            m.d.sync += state.eq(self.state_in)
        with m.Elif(self.next):
            m.d.sync += state.eq(self.word)
        return m


class StreamSeeder(wiring.Component):
    """Pipelined ``stream_seed(seed, step, query)``: one request per cycle, result SEEDER_LATENCY cycles later.

    ``tag`` travels with the request (e.g. which stream of a bank to load).
    """

    def __init__(self, tag_bits: int = 1) -> None:
        self.tag_bits = max(1, tag_bits)
        super().__init__({
            "valid": In(1), "seed": In(32), "step": In(32), "query": In(QUERY_BITS), "tag": In(self.tag_bits),
            "out_valid": Out(1), "state": Out(32), "out_tag": Out(self.tag_bits),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        # fmix32 in SEEDER_LATENCY register stages:
        #   1: h ^= h >> 16            2: partial products of h * C1     3: sum; h ^= h >> 13
        #   4: partial products of h * C2    5: sum; h ^= h >> 16; 0 -> 1
        valid = [Signal(name=f"v{i}") for i in range(SEEDER_LATENCY)]
        tags = [Signal(self.tag_bits, name=f"t{i}") for i in range(SEEDER_LATENCY)]
        m.d.sync += [valid[0].eq(self.valid), tags[0].eq(self.tag)]
        m.d.sync += [valid[i].eq(valid[i - 1]) for i in range(1, SEEDER_LATENCY)]
        m.d.sync += [tags[i].eq(tags[i - 1]) for i in range(1, SEEDER_LATENCY)]

        h0 = self.seed ^ Cat(self.query, self.step)[:32]
        h1 = Signal(32)
        m.d.sync += h1.eq(h0 ^ (h0 >> 16))
        pp2 = _const_mul_partials(m, h1, FMIX_C1, "pp2")
        h3 = Signal(32)
        m3 = _sum_partials(pp2)
        m.d.sync += h3.eq(m3 ^ (m3 >> 13))
        pp4 = _const_mul_partials(m, h3, FMIX_C2, "pp4")
        h5 = Signal(32)
        m5 = _sum_partials(pp4)
        f5 = (m5 ^ (m5 >> 16))[:32]
        m.d.sync += h5.eq(Mux(f5 == 0, 1, f5))
        m.d.comb += [self.out_valid.eq(valid[-1]), self.out_tag.eq(tags[-1]), self.state.eq(h5)]
        return m


def _const_mul_partials(m: Module, h: Value, c: int, name: str) -> tuple[Signal, Signal, Signal]:
    """Registered partial products of (h * c) mod 2^32: lo x lo (32 bits), lo x hi and hi x lo (16 bits each)."""
    ll, lh, hl = Signal(32, name=f"{name}_ll"), Signal(16, name=f"{name}_lh"), Signal(16, name=f"{name}_hl")
    m.d.sync += [ll.eq(h[:16] * (c & 0xFFFF)), lh.eq((h[:16] * (c >> 16))[:16]), hl.eq((h[16:32] * (c & 0xFFFF))[:16])]
    return ll, lh, hl


def _sum_partials(pp: tuple[Signal, Signal, Signal]) -> Value:
    """(ll + ((lh + hl) << 16)) mod 2^32: the hi x hi product only touches bits >= 32."""
    ll, lh, hl = pp
    return (ll + (((lh + hl)[:16]) << 16))[:32]


class PrngBank(wiring.Component):
    """N xorshift32 streams for queries first_query..first_query+N-1 of one (seed, step).

    Pulse ``start`` with ``seed``/``step``/``first_query`` set (they are captured); ``ready``
    rises N + SEEDER_LATENCY + 1 cycles later.  Then ``words[i]`` is word p of stream i and
    ``next`` advances every stream by one word (p -> p+1).  ``next`` is ignored while seeding.
    """

    def __init__(self, n_streams: int) -> None:
        if not 1 <= n_streams <= MAX_QUERY:
            raise ValueError(f"n_streams={n_streams} outside 1..{MAX_QUERY}")
        self.n_streams = n_streams
        super().__init__({
            "start": In(1), "seed": In(32), "step": In(32), "first_query": In(QUERY_BITS),
            "ready": Out(1), "next": In(1),
            "words": Out(data.ArrayLayout(32, n_streams)),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        n = self.n_streams
        tag_bits = max(1, (n - 1).bit_length())
        m.submodules.seeder = seeder = StreamSeeder(tag_bits)
        gens = []
        for i in range(n):
            g = Xorshift32()
            m.submodules[f"stream{i}"] = g
            gens.append(g)
            m.d.comb += [self.words[i].eq(g.word),
                         g.state_in.eq(seeder.state),
                         g.load.eq(seeder.out_valid & (seeder.out_tag == i)),
                         g.next.eq(self.next & self.ready)]

        seed = Signal(32)
        step = Signal(32)
        q0 = Signal(QUERY_BITS)
        issue = Signal(range(n + 1))
        wait = Signal(range(SEEDER_LATENCY + 2))
        busy = Signal()
        ready = Signal()
        m.d.comb += [self.ready.eq(ready & ~busy),
                     seeder.seed.eq(seed), seeder.step.eq(step),
                     seeder.query.eq((q0 + issue)[:QUERY_BITS]), seeder.tag.eq(issue),
                     seeder.valid.eq(busy & (issue < n))]
        with m.If(self.start):
            m.d.sync += [seed.eq(self.seed), step.eq(self.step), q0.eq(self.first_query),
                         issue.eq(0), wait.eq(0), busy.eq(1), ready.eq(0)]
        with m.Elif(busy):
            with m.If(issue < n):
                m.d.sync += issue.eq(issue + 1)
            with m.Elif(wait < SEEDER_LATENCY):
                m.d.sync += wait.eq(wait + 1)
            with m.Else():
                m.d.sync += [busy.eq(0), ready.eq(1)]
        return m
