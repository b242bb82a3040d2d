"""rtl/serial_loss.SerialLoss against golden cross_entropy_fixed / argmax_first, bit for bit."""
from __future__ import annotations

import numpy as np
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.loss import argmax_first, cross_entropy_fixed
from ttzo.rtl.serial_loss import SerialLoss, max_latency

ACT, LOSS = DEFAULT_CONFIG.act, DEFAULT_CONFIG.loss


def _simulate(logits: np.ndarray, labels: np.ndarray, act: QFormat, loss: QFormat) -> tuple[list, list, list]:
    """(loss codes, correct bits, cycles from the last logit to the result) per sample."""
    B, C = logits.shape
    dut = SerialLoss(C, act, loss)
    codes, correct, latency = [], [], []

    async def bench(ctx):
        for b in range(B):
            ctx.set(dut.label, int(labels[b]))
            for j in range(C):
                ctx.set(dut.i.valid, 1)
                ctx.set(dut.i.payload, int(logits[b, j]))
                await ctx.tick().until(dut.i.ready)
            ctx.set(dut.i.valid, 0)
            ctx.set(dut.i.payload, 0x5A5A & act.max_code)   # the chain must ignore later payloads
            ctx.set(dut.o.ready, 1)
            cycles = 0
            while not ctx.get(dut.o.valid):
                await ctx.tick()
                cycles += 1
            codes.append(ctx.get(dut.o.payload.loss))
            correct.append(ctx.get(dut.o.payload.correct))
            latency.append(cycles)
            await ctx.tick()
            ctx.set(dut.o.ready, 0)

    sim = Simulator(dut)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    sim.run()
    return codes, correct, latency


def _check(logits: np.ndarray, labels: np.ndarray, act: QFormat = ACT, loss: QFormat = LOSS) -> list:
    logits = np.asarray(logits, dtype=np.int64)
    labels = np.asarray(labels, dtype=np.int64)
    codes, correct, latency = _simulate(logits, labels, act, loss)
    np.testing.assert_array_equal(codes, cross_entropy_fixed(logits, labels, act, loss))
    np.testing.assert_array_equal(correct, (argmax_first(logits) == labels).astype(int))
    return latency


def test_random_logits_every_label() -> None:
    rng = np.random.default_rng(1)
    z = rng.integers(-2048, 2048, size=(10, 10))          # +-8 in s16.8: the usual range
    z[3, [2, 7]] = z[3].max() + 5                          # a tie for the maximum: lowest index wins
    z[4, [1, 4, 9]] = z[4].max() + 1
    labels = np.arange(10)
    labels[3], labels[4] = 7, 1
    assert max(_check(z, labels)) <= max_latency(10)


def test_edges() -> None:
    lo, hi = ACT.min_code, ACT.max_code
    z = np.array([
        np.zeros(10, dtype=np.int64),                      # all equal: S = 10 * 2^30, argmax 0
        np.full(10, hi),
        np.full(10, lo),
        [lo] * 9 + [hi],                                   # spread 2^16 - 1: k > 31 for nine classes
        [hi] + [lo] * 9,
        [0, 40 * 256, 0, 0, 0, 0, 0, 0, 0, -40 * 256],     # spreads of 40 and 80 nats
        [0, 1, 0, 1, 0, 1, 0, 1, 0, 1],                    # one LSB apart
        np.arange(10) * 2000 - 9000,
    ])
    labels = np.array([3, 0, 9, 0, 0, 1, 5, 8])
    latency = _check(z, labels)
    assert latency[0] == max_latency(10) == 557 and max(latency) == latency[0]
    assert latency[3] == 8 + 9 * (9 + 5) + (9 + 40) + 1 + 34 + 2 + 19   # nine terms 0, S = 2^30
    _check(z, (labels + 1) % 10)


def test_term_rounding_boundaries() -> None:
    """Sums S one unit from a LOG2-index rounding boundary: only the terms' round half up gets these.

    Found by a search over z = (0, -a, -b), a, b < 4096: 18 of the 16.8M pairs give a different
    LOG2 index when the terms rhu(EXP2[r], k) are truncated instead of rounded.
    """
    pairs = [(459, 2478), (1111, 2268), (3362, 1953)]
    _check(np.array([[0, -a, -b] for a, b in pairs]), np.array([0, 1, 2]))
    pad = [ACT.min_code] * 7                               # terms with k > 31 add 0
    _check(np.array([[0, -a, -b] + pad for a, b in pairs]), np.array([0, 1, 9]))


def test_log_index_1024() -> None:
    """S in [2^31 - 2^19, 2^31): the LOG2 index rounds up to 1024 (log2S = (p + 1 - 30) << 16)."""
    z = np.array([[0, -1, -1411], [-1411, 0, -1], [0, -1, -1500]])   # the last one: just below
    _check(z, np.array([0, 2, 1]))


def test_saturating_loss_format() -> None:
    """s20.16 holds losses below 8 nats: larger margins must saturate to its max code."""
    loss = QFormat(20, 16)
    z = np.array([[0] * 9 + [20 * 256], [0] * 9 + [7 * 256], [ACT.max_code] + [ACT.min_code] * 9,
                  [3, 1, 4, 1, 5, 9, 2, 6, 5, 3]])
    labels = np.array([0, 0, 5, 5])
    want = cross_entropy_fixed(z, labels, ACT, loss)
    assert want[0] == want[2] == loss.max_code and want[1] < loss.max_code
    _check(z, labels, ACT, loss)


def test_other_formats() -> None:
    rng = np.random.default_rng(3)
    z = rng.integers(-3000, 3000, size=(3, 4))
    _check(z, np.array([0, 3, 2]), QFormat(14, 10), QFormat(24, 12))
    _check(z, np.array([1, 2, 3]), QFormat(16, 8), QFormat(40, 32))
    _check(z // 2, np.array([3, 0, 1]), QFormat(15, 7), QFormat(32, 16))   # odd width


def test_class_counts() -> None:
    """2 classes (S < 2^32) and 16 classes (S up to 2^34: p - 30 = 4 with all logits equal)."""
    rng = np.random.default_rng(5)
    for C in (2, 16):
        z = np.concatenate([np.zeros((1, C), dtype=np.int64), rng.integers(-600, 600, size=(2, C))])
        _check(z, np.array([C - 1, 0, C // 2]))


@settings(max_examples=8, deadline=None)
@given(st.integers(ACT.min_code, ACT.max_code), st.sampled_from([4, 256, 2048, 1 << 16]),
       st.lists(st.integers(0, (1 << 16) - 1), min_size=10, max_size=10),
       st.integers(0, 9), st.integers(0, 9))
def test_property_random_vectors(centre: int, spread: int, offsets: list[int], label: int, dup: int) -> None:
    z = np.clip(centre + np.array(offsets) % spread - spread // 2, ACT.min_code, ACT.max_code)
    z[dup] = z.max()                                       # a tie for the maximum, often
    _check(z[None, :], np.array([label]))
