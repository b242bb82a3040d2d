"""The RTL loss unit (rtl/loss_unit.py) against golden/loss.py: per-sample loss codes, batch sum, accuracy."""
from __future__ import annotations

import numpy as np
import pytest
from amaranth import Module, Signal
from amaranth.sim import Simulator
from hypothesis import given, settings
from hypothesis import strategies as st

from ttzo.golden.fixed import OverflowCounter, QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.loss import argmax_first, batch_loss_fixed, cross_entropy_fixed
from ttzo.rtl.loss_unit import LossUnit, cycles_per_sample, latency, leading_one
from ttzo.sim.tb_zo_amsim import recv, run, send


def _simulate(logits: np.ndarray, labels: np.ndarray, act: QFormat, loss: QFormat) -> dict:
    B, C = logits.shape
    dut = LossUnit(C, act, loss)
    out: dict = {}

    async def producer(ctx):
        for b in range(B):
            await send(ctx, dut.label, [int(labels[b])])
            await send(ctx, dut.logits, [int(v) for v in logits[b]])

    async def consumer(ctx):
        ctx.set(dut.clear, 1)
        await ctx.tick()
        ctx.set(dut.clear, 0)
        res = await recv(ctx, dut.result, B)
        out["loss"] = [r.loss for r in res]
        out["correct"] = [r.correct for r in res]
        out["argmax"] = [r.argmax for r in res]
        out["saturated"] = [r.saturated for r in res]
        out["batch_loss"] = ctx.get(dut.batch_loss)
        out["n_correct"] = ctx.get(dut.correct)
        out["samples"] = ctx.get(dut.samples)
        out["n_saturated"] = ctx.get(dut.saturated)

    run(dut, producer, consumer)
    return out


def _check(logits: np.ndarray, labels: np.ndarray, act: QFormat, loss: QFormat) -> dict:
    got = _simulate(logits, labels, act, loss)
    counter = OverflowCounter()
    want = cross_entropy_fixed(logits, labels, act, loss, counter)
    np.testing.assert_array_equal(got["loss"], want)
    am = argmax_first(logits)
    np.testing.assert_array_equal(got["argmax"], am)
    np.testing.assert_array_equal(got["correct"], (am == labels).astype(int))
    assert got["batch_loss"] == int(batch_loss_fixed(logits, labels, act, loss))
    assert got["n_correct"] == int(np.sum(am == labels))
    assert got["samples"] == len(labels)
    assert got["n_saturated"] == counter.counts.get("loss", 0) == sum(got["saturated"])
    return got


def test_random_logits_default_formats() -> None:
    rng = np.random.default_rng(1)
    act, loss = DEFAULT_CONFIG.act, DEFAULT_CONFIG.loss
    B, C = 48, 10
    logits = np.concatenate([
        rng.integers(act.min_code, act.max_code + 1, size=(16, C)),      # full range: huge differences
        rng.normal(0, 4 * 256, size=(16, C)).round().astype(np.int64),    # a few units apart
        rng.normal(0, 40, size=(16, C)).round().astype(np.int64),         # nearly uniform softmax
    ])
    labels = rng.integers(0, C, size=B)
    _check(logits, labels, act, loss)


def test_ties_extremes_and_saturation() -> None:
    act, loss = QFormat(16, 8), QFormat(24, 16)  # narrow loss format: large margins saturate
    C = 10
    rows = [np.zeros(C), np.full(C, act.max_code), np.full(C, act.min_code),
            [act.min_code] * 9 + [act.max_code], [act.max_code] + [act.min_code] * 9,
            [5, 7, 7, 1, 7, 0, 0, 0, 0, 7], [3] * 5 + [4] * 5, [-1, -1, -2, -2, -1, -3, -3, -3, -3, -1],
            [0, 1 << 11, 0, 1 << 11, 0, 0, 0, 0, 0, 0], [100, 100 + 1, 100, 100, 100, 100, 100, 100, 100, 99]]
    logits = np.array(rows, dtype=np.int64)
    labels = np.array([3, 9, 0, 0, 1, 2, 4, 2, 1, 9])
    got = _check(logits, labels, act, loss)
    assert got["n_saturated"] >= 1  # the test exercises saturation


def test_real_looking_logits_small_tt_net() -> None:
    from ttzo.golden.network import mnist_tt
    rng = np.random.default_rng(3)
    net = mnist_tt(2)
    cfg = DEFAULT_CONFIG
    codes = net.quantize(net.init(rng), cfg)
    x = rng.integers(0, 256, size=(24, net.in_features))
    logits = net.forward_fixed(codes, x, cfg)
    labels = rng.integers(0, 10, size=24)
    _check(logits, labels, cfg.act, cfg.loss)


@pytest.mark.parametrize("act,loss,C", [(QFormat(12, 4), QFormat(20, 4), 3), (QFormat(10, 9), QFormat(40, 36), 17),
                                         (QFormat(20, 14), QFormat(32, 20), 2), (QFormat(16, 8), QFormat(48, 40), 33)])
def test_other_formats_and_class_counts(act: QFormat, loss: QFormat, C: int) -> None:
    rng = np.random.default_rng(C)
    logits = rng.integers(act.min_code, act.max_code + 1, size=(20, C))
    logits[:6] = rng.integers(-3, 3, size=(6, C))
    labels = rng.integers(0, C, size=20)
    _check(logits, labels, act, loss)


def test_throughput_is_documented() -> None:
    """Back-to-back samples take cycles_per_sample(C) cycles each."""
    C, B = 10, 6
    dut = LossUnit(C)
    done: list[int] = []
    rng = np.random.default_rng(0)
    logits = rng.integers(-2000, 2000, size=(B, C))

    async def producer(ctx):
        for b in range(B):
            await send(ctx, dut.label, [b % C])
            await send(ctx, dut.logits, [int(v) for v in logits[b]])

    async def consumer(ctx):
        ctx.set(dut.result.ready, 1)
        t = 0
        while len(done) < B:
            _, _, v = await ctx.tick().sample(dut.result.valid)
            t += 1
            if v:
                done.append(t)

    run(dut, producer, consumer)
    assert np.all(np.diff(done) == cycles_per_sample(C))


@settings(max_examples=20, deadline=None)
@given(st.integers(1, 40), st.data())
def test_leading_one_tree_is_floor_log2(width: int, draw) -> None:
    """The loss unit's log-depth leading-one detector gives floor(log2 v) (and 'any' = v != 0)."""
    values = draw.draw(st.lists(st.integers(0, (1 << width) - 1), min_size=1, max_size=8))
    v, any_, idx = Signal(width), Signal(), Signal(range(max(2, width)))
    m = Module()
    m.d.comb += [any_.eq(leading_one(v)[0]), idx.eq(leading_one(v)[1])]
    got = []

    async def bench(ctx):
        for x in values:
            ctx.set(v, x)
            got.append((ctx.get(any_), ctx.get(idx)))

    sim = Simulator(m)
    sim.add_testbench(bench)
    sim.run()
    assert [a for a, _ in got] == [int(x != 0) for x in values]
    assert [i for (a, i), x in zip(got, values) if x] == [x.bit_length() - 1 for x in values if x]


def test_latency_is_documented() -> None:
    """The batch counters count a sample latency(C) clock edges after the edge that transfers its last logit."""
    C = 10
    dut = LossUnit(C)
    edges = {}

    async def bench(ctx):
        ctx.set(dut.result.ready, 1)
        await send(ctx, dut.label, [3])
        for z in range(C):
            ctx.set(dut.logits.valid, 1)
            ctx.set(dut.logits.payload, z * 37 - 100)
            await ctx.tick().until(dut.logits.ready)     # returns just after the transfer's edge
        ctx.set(dut.logits.valid, 0)
        n = 0
        while ctx.get(dut.samples) == 0:
            await ctx.tick()
            n += 1
        edges["n"] = n

    run(dut, bench)
    assert edges["n"] == latency(C) == C + 18, edges["n"]
