"""Odometer: nested loop counters that add precomputed per-level deltas to running address sums.

Level 0 is innermost.  On `step` the lowest level that is not at its last value increments,
all lower levels return to 0 and every sum adds that level's delta (rtl/descriptors.py
computes delta_i = stride_i - sum_{j<i} (count_j - 1) * stride_j), so each sum always equals
sum_i idx_i * stride_i without a multiplier.  Stepping at the end (`at_end`) or `clear`
restarts at all zeros.  Counts of 1 make a level inert (padding).

``registered=True`` (timing): `is_max` are registers computed a step ahead (idx + 2 == count
when a level increments, count == 1 when it returns to 0), and so is `at_end` (their AND, loaded
with them), so `at_end` is a flip-flop and the choice of delta a few gates from flip-flops instead of
behind an adder and a comparator per level.  Same
sequence of outputs, but `count` must be stable from a `clear` on and the odometer must be
cleared before its first step (the combinational form needs neither).
"""
from __future__ import annotations

from amaranth.hdl import Elaboratable, Module, Signal, signed


class Odometer(Elaboratable):
    def __init__(self, levels: int, n_sums: int, count_bits: int, sum_bits: int, name: str = "odo",
                 registered: bool = False) -> None:
        self.levels, self.n_sums, self.registered = levels, n_sums, registered
        self.count = [Signal(count_bits, name=f"{name}_count{i}") for i in range(levels)]
        self.delta = [[Signal(signed(sum_bits), name=f"{name}_delta{i}_{j}") for j in range(n_sums)]
                      for i in range(levels)]
        self.idx = [Signal(count_bits, name=f"{name}_idx{i}") for i in range(levels)]
        self.sums = [Signal(signed(sum_bits), name=f"{name}_sum{j}") for j in range(n_sums)]
        self.is_max = [Signal(name=f"{name}_max{i}") for i in range(levels)]
        self.at_end = Signal(name=f"{name}_end")
        self.step = Signal(name=f"{name}_step")
        self.clear = Signal(name=f"{name}_clear")

    def elaborate(self, platform) -> Module:
        m = Module()
        reg = self.registered
        if not reg:
            for i in range(self.levels):
                m.d.comb += self.is_max[i].eq(self.idx[i] + 1 == self.count[i])
        if not reg:
            end = self.is_max[0]
            for i in range(1, self.levels):
                end = end & self.is_max[i]
            m.d.comb += self.at_end.eq(end)
        # registered: at_end is a register too, the AND of the is_max values it is loaded with (the AND
        # of six is_max registers was in front of every sum's reset, 160 flip-flops in the MAC odometer)
        ones = [c == 1 for c in self.count]

        def all_of(terms):
            v = 1
            for t in terms:
                v = v & t
            return v

        with m.If(self.clear | (self.step & self.at_end)):
            m.d.sync += [s.eq(0) for s in self.idx + self.sums]
            if reg:
                m.d.sync += [mx.eq(one) for mx, one in zip(self.is_max, ones)]
                m.d.sync += self.at_end.eq(all_of(ones))
        with m.Elif(self.step):
            for i in range(self.levels):
                with (m.If if i == 0 else m.Elif)(~self.is_max[i]):
                    m.d.sync += self.idx[i].eq(self.idx[i] + 1)
                    m.d.sync += [self.idx[j].eq(0) for j in range(i)]
                    m.d.sync += [s.eq(s + d) for s, d in zip(self.sums, self.delta[i])]
                    if reg:
                        nxt = self.idx[i] + 2 == self.count[i]
                        m.d.sync += self.is_max[i].eq(nxt)
                        m.d.sync += [self.is_max[j].eq(ones[j]) for j in range(i)]
                        m.d.sync += self.at_end.eq(all_of([nxt, *ones[:i], *self.is_max[i + 1:]]))
        return m
