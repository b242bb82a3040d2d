"""Serial ``golden.prng.stream_seed``: fmix32 of seed ^ ((step << 12) | query), 0 -> 1, in 160 cycles.

The serial design (docs/rtl-serial.md) seeds a stream once per perturb/update pass, so this
block trades time for area: no hard multiplier and no barrel shifter.  One 32-bit register H
rotates right one bit a cycle through five 32-cycle passes:
  h ^= h >> 16, h *= C1, h ^= h >> 13, h *= C2, h ^= h >> 16.
A xorshift pass feeds H[0] ^ H[s] back into the top (H[s] masked once it holds new bits).  A
multiply pass is a shift-and-add multiplier by the constant: A <- (A + H[0] * C) >> 1, the bit
shifted out of A enters H's top, so after 32 passes H holds (h * C) mod 2^32 (the addend is the
constant gated by one bit: no partial-product logic, one 32-bit adder).
"""
from amaranth import Cat, Module, Mux, Signal
from amaranth.lib import wiring
from amaranth.lib.wiring import In, Out

from ttzo.golden.prng import MAX_QUERY

FMIX_C1 = 0x85EBCA6B
FMIX_C2 = 0xC2B2AE35
QUERY_BITS = (MAX_QUERY - 1).bit_length()
#: Cycles from the clock edge that samples ``start`` to the one that raises ``done``.
LATENCY = 5 * 32


class SerialSeeder(wiring.Component):
    """``stream_seed(seed, step, query)`` by shift-and-add; ``done`` pulses when ``state`` is valid."""

    def __init__(self) -> None:
        super().__init__({
            "start": In(1), "seed": In(32), "step": In(32), "query": In(QUERY_BITS),
            "busy": Out(1), "done": Out(1), "state": Out(32),
        })

    def elaborate(self, platform) -> Module:
        m = Module()
        h = Signal(32)
        acc = Signal(32)
        t = Signal(5)                       # bit position within a pass
        phase = Signal(range(5))            # 0: >>16, 1: *C1, 2: >>13, 3: *C2, 4: >>16
        nonzero = Signal()                  # a one has entered H during the last pass

        mul = (phase == 1) | (phase == 3)
        total = acc + Mux(h[0], Mux(phase == 3, FMIX_C2, FMIX_C1), 0)
        xs13 = phase == 2
        tap = Mux(xs13, h[13] & (t < 32 - 13), h[16] & (t < 32 - 16))
        new_bit = Mux(mul, total[0], h[0] ^ tap)

        m.d.comb += self.state.eq(Cat(h[0] | ~nonzero, h[1:]))
        m.d.sync += self.done.eq(0)
        with m.If(self.busy):
            m.d.sync += [h.eq(Cat(h[1:], new_bit)), t.eq(t + 1)]
            with m.If(mul):
                m.d.sync += acc.eq(total[1:])
            with m.Else():
                m.d.sync += acc.eq(0)
            with m.If(phase == 4):
                m.d.sync += nonzero.eq(nonzero | new_bit)
            with m.If(t == 31):
                m.d.sync += phase.eq(phase + 1)
                with m.If(phase == 4):
                    m.d.sync += [self.busy.eq(0), self.done.eq(1)]
        with m.Elif(self.start):
            m.d.sync += [h.eq(self.seed ^ Cat(self.query, self.step)[:32]), self.busy.eq(1),
                         t.eq(0), phase.eq(0), nonzero.eq(0), acc.eq(0)]
        return m
