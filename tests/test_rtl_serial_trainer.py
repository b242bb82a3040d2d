"""The serial trainer (rtl/serial_trainer.py): signRGE steps and inference equal golden bit for bit.

A bench top holds `bulk` (batch, master parameters, labels) and gives it to the trainer.  The
parameters written back, every log entry (batch loss, correct count), the d_i left in scratch, l0,
forwards, changed and steps_done must equal golden's zo_fixed.signrge_step over net.forward_fixed
and loss.batch_loss_fixed (sim/tb_zo_golden.signrge_steps).  With ``blocks=standin_blocks`` the
engine and the loss unit are Python models (golden forward and cross-entropy) behind the real
blocks' ports, so the sequencing is checked in seconds; the same bench runs the real blocks.
"""
from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
from amaranth.hdl import Module, signed, unsigned
from amaranth.lib import data, stream, wiring
from amaranth.lib.memory import Memory
from amaranth.lib.wiring import In, Out
from amaranth.sim import Simulator

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.loss import argmax_first, cross_entropy_fixed
from ttzo.golden.network import LayerSpec, TTNet
from ttzo.golden.tt import TTShape
from ttzo.rtl.serial_map import LOG_ENTRY_WORDS, SCRATCH_QUERY_WORDS, BulkMap
from ttzo.rtl.serial_seeder import LATENCY, SerialSeeder
from ttzo.rtl.serial_trainer import Op, SerialTrainer, real_blocks, step_cycles
from ttzo.rtl.spram import SinglePortSignature
from ttzo.sim.tb_zo_golden import signrge_steps

CFG = DEFAULT_CONFIG


def tiny_net() -> TTNet:
    """8 -> 8 -> 10 TT-MLP (rank 2, ReLU): 102 parameters, two bias segments."""
    return TTNet((LayerSpec(TTShape.uniform((2, 2, 2), (2, 2, 2), 2), "relu"),
                  LayerSpec(TTShape.uniform((2, 2, 2), (1, 5, 2), 2), "identity")), name="tiny-serial")


class StandinEngine(wiring.Component):
    """SerialEngine's ports, driven by `engine_model` (golden forward)."""

    def __init__(self, program) -> None:
        self.program = program
        super().__init__({"start": In(1), "x_base": In(16), "busy": Out(1),
                          "bulk": Out(SinglePortSignature(1 << 15, 16)),
                          "work_addr": Out(range(program.n_params)), "work_data": In(16),
                          "state_a": Out(SinglePortSignature(program.state_depth, 16)),
                          "state_b": Out(SinglePortSignature(program.state_depth, 16)),
                          "o": Out(stream.Signature(signed(16))), "cycles": Out(32)})

    def elaborate(self, platform) -> Module:
        return Module()


class StandinLoss(wiring.Component):
    """SerialLoss's ports, driven by `engine_model` (golden cross-entropy)."""

    def __init__(self, classes: int, act, loss) -> None:
        super().__init__({"i": In(stream.Signature(signed(act.bits))), "label": In(range(classes)),
                          "o": Out(stream.Signature(data.StructLayout({"loss": signed(loss.bits),
                                                                       "correct": unsigned(1)})))})

    def elaborate(self, platform) -> Module:
        return Module()


def standin_blocks(net: TTNet, cfg) -> tuple:
    program = SimpleNamespace(n_params=net.n_params, n_in=net.in_features, out_features=net.out_features,
                              state_depth=16)
    return (program, StandinEngine(program), StandinLoss(net.out_features, cfg.act, cfg.loss), SerialSeeder())


class Bench(wiring.Component):
    """The trainer with `bulk` as a plain memory it owns throughout."""

    def __init__(self, trainer: SerialTrainer, bulk_init: list[int]) -> None:
        self.trainer = trainer
        self.mem = Memory(shape=unsigned(16), depth=trainer.map.depth, init=bulk_init)
        super().__init__({})

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.trainer = tr = self.trainer
        m.submodules.mem = self.mem
        rd, wr = self.mem.read_port(), self.mem.write_port()
        m.d.comb += [rd.addr.eq(tr.bulk.addr), wr.addr.eq(tr.bulk.addr), wr.data.eq(tr.bulk.wdata),
                     wr.en.eq(tr.bulk.we), tr.bulk.rdata.eq(rd.data)]
        return m


async def engine_model(ctx, tr: SerialTrainer) -> None:
    """Stand-in engine + loss unit: pixels through the engine's bulk port, parameters through its work
    port, golden logits out on o, then golden loss and correct on the loss unit's o."""
    eng, lossu, net = tr.engine, tr.loss, tr.net
    ctx.set(lossu.i.ready, 1)
    xw = tr.map.x_words
    while True:
        await ctx.tick()
        if not ctx.get(eng.start):
            continue
        x_base = ctx.get(eng.x_base)
        ctx.set(eng.busy, 1)
        await ctx.tick()
        words = []
        for w in range(xw):
            ctx.set(eng.bulk.addr, x_base + w)
            await ctx.tick()
            words.append(ctx.get(eng.bulk.rdata))
        px = np.array([(words[i // 2] >> (8 * (i % 2))) & 0xFF for i in range(net.in_features)])
        theta = []
        for p in range(net.n_params):
            ctx.set(eng.work_addr, p)
            await ctx.tick()
            theta.append(ctx.get(eng.work_data))
        theta = np.array(theta, dtype=np.int64)
        theta = np.where(theta >= 1 << 15, theta - (1 << 16), theta)
        z = net.forward_fixed(net.unflatten(theta), px[None], CFG)
        for v in z[0]:
            ctx.set(eng.o.valid, 1)
            ctx.set(eng.o.payload, int(v))
            await ctx.tick()
        ctx.set(eng.o.valid, 0)
        ctx.set(eng.busy, 0)
        label = ctx.get(lossu.label)
        ctx.set(lossu.o.payload.loss, int(cross_entropy_fixed(z, np.array([label]), CFG.act, CFG.loss)[0]))
        ctx.set(lossu.o.payload.correct, int(argmax_first(z)[0] == label))
        ctx.set(lossu.o.valid, 1)
        while True:
            ready = ctx.get(lossu.o.ready)
            await ctx.tick()
            if ready:
                break
        ctx.set(lossu.o.valid, 0)


def bulk_image(bm: BulkMap, x: np.ndarray, theta: np.ndarray, labels: np.ndarray) -> list[int]:
    img = [0] * bm.depth
    for b, row in enumerate(x):
        for i, v in enumerate(row):
            img[bm.batch + b * bm.x_words + i // 2] |= int(v) << (8 * (i % 2))
    for p, v in enumerate(theta):
        img[bm.params + p] = int(v) & 0xFFFF
    for b, v in enumerate(labels):
        img[bm.labels + b] = int(v)
    return img


def s16(v: int) -> int:
    return v - (1 << 16) if v >= 1 << 15 else v


def words48(ws) -> int:
    v = ws[0] | ws[1] << 16 | ws[2] << 32
    return v - (1 << 48) if v >> 47 else v


def run_op(net, bm, theta, x, labels, *, op, blocks=standin_blocks, abort_after=None, **regs):
    """Run one operation; returns the trainer's results and the bulk memory afterwards."""
    tr = SerialTrainer(net, CFG, bm, blocks=blocks)
    top = Bench(tr, bulk_image(bm, x, theta, labels))
    out: dict = {}

    async def bench(ctx):
        for name, v in dict(n_samples=len(x), **regs).items():
            ctx.set(getattr(tr, name), v)
        ctx.set(tr.op, op)
        ctx.set(tr.start, 1)
        await ctx.tick()
        ctx.set(tr.start, 0)
        if abort_after is not None:
            await ctx.tick().repeat(abort_after)
            assert ctx.get(tr.busy)
            ctx.set(tr.abort, 1)
            await ctx.tick()
            ctx.set(tr.abort, 0)
            out["busy_after_abort"] = ctx.get(tr.busy)
            ctx.set(tr.op, Op.INFERENCE)
            ctx.set(tr.start, 1)
            await ctx.tick()
            ctx.set(tr.start, 0)
        while ctx.get(tr.busy):
            await ctx.tick()
        for name in ("steps_done", "forwards", "l0", "last_correct", "changed", "cycles"):
            out[name] = ctx.get(getattr(tr, name))
        out["bulk"] = [ctx.get(top.mem.data[a]) for a in range(bm.depth)]

    sim = Simulator(top)
    sim.add_clock(1e-6)
    sim.add_testbench(bench)
    if blocks is standin_blocks:
        async def model(ctx):
            await engine_model(ctx, tr)
        sim.add_testbench(model, background=True)
    sim.run()
    return out


def problem(net, B, seed=3):
    """Random codes (one core entry on its rail), pixels and labels."""
    rng = np.random.default_rng(seed)
    d = net.n_params
    theta = np.where(net.bias_mask(), CFG.bias.quantize(rng.normal(0, 0.3, d)),
                     CFG.weight.quantize(rng.normal(0, 0.5, d)))
    theta[5] = CFG.weight.max_code       # a rail: perturbation and update saturate
    x = rng.integers(0, 256, size=(B, net.in_features))
    labels = rng.integers(0, net.out_features, size=B)
    return theta.astype(np.int64), x, labels


HP = dict(seed=0x5EED1234, step0=7, mu_w=819, mu_b=102, alpha_w=300, alpha_b=40)


def check_steps(net, bm, theta, x, labels, n_queries, k_steps, blocks=standin_blocks):
    want_theta, want_log = signrge_steps(net, theta, x, labels, k_steps=k_steps, n_queries=n_queries, **HP)
    got = run_op(net, bm, theta, x, labels, op=Op.STEPS, blocks=blocks, k_steps=k_steps, n_queries=n_queries,
                 kind=0, **HP)
    bulk = got["bulk"]
    got_theta = np.array([s16(bulk[bm.params + p]) for p in range(net.n_params)])
    np.testing.assert_array_equal(got_theta, want_theta)
    n = k_steps * (n_queries + 1)
    assert got["forwards"] == n and got["steps_done"] == k_steps
    for e in range(max(0, n - bm.log_depth), n):          # the entries still in the (wrapping) log
        a = bm.log + LOG_ENTRY_WORDS * (e % bm.log_depth)
        assert (words48(bulk[a:a + 3]), bulk[a + 3]) == want_log[e], f"log entry {e}"
    last = want_log[n - n_queries - 1:]
    assert got["l0"] == last[0][0] and got["last_correct"] == last[0][1]
    for i in range(n_queries):                               # d_i of the last step
        a = bm.scratch + SCRATCH_QUERY_WORDS * i
        assert words48(bulk[a:a + 3]) == last[i + 1][0] - last[0][0]
    prev = theta if k_steps == 1 else signrge_steps(net, theta, x, labels, k_steps=k_steps - 1,
                                                    n_queries=n_queries, **HP)[0]
    assert got["changed"] == int(np.count_nonzero(want_theta != prev))
    assert got["changed"] > 0
    return got


BLOCKS = pytest.mark.parametrize("blocks", [standin_blocks, real_blocks], ids=["standin", "real"])


@BLOCKS
@pytest.mark.parametrize("n_queries,k_steps,batch", [(2, 2, 3), (3, 1, 2)])
def test_signrge_steps_match_golden(blocks, n_queries, k_steps, batch) -> None:
    """A log of 4 entries (N = 2, K = 2 wraps it: 6 forwards); N = n_max = 3 overwrites the copy of L_0
    (the last slot's d words) with d_2 at the end of the last forward pass."""
    net = tiny_net()
    bm = BulkMap(n_in=net.in_features, n_params=net.n_params, max_samples=4, n_max=3, log_depth=4)
    theta, x, labels = problem(net, batch)
    check_steps(net, bm, theta, x, labels, n_queries=n_queries, k_steps=k_steps, blocks=blocks)


def test_zero_steps() -> None:
    """RUN_STEPS with K = 0: no forward pass, no parameter change, counters 0."""
    net = tiny_net()
    bm = BulkMap(n_in=net.in_features, n_params=net.n_params, max_samples=4, n_max=3, log_depth=4)
    theta, x, labels = problem(net, 2)
    got = run_op(net, bm, theta, x, labels, op=Op.STEPS, k_steps=0, n_queries=2, kind=0, **HP)
    assert (got["steps_done"], got["forwards"], got["changed"]) == (0, 0, 0)
    assert got["bulk"] == bulk_image(bm, x, theta, labels)


@BLOCKS
def test_inference_match_golden(blocks) -> None:
    net = tiny_net()
    bm = BulkMap(n_in=net.in_features, n_params=net.n_params, max_samples=4, n_max=3, log_depth=4)
    theta, x, labels = problem(net, 2, seed=5)
    _, want_log = signrge_steps(net, theta, x, labels, k_steps=1, n_queries=0, **HP)
    got = run_op(net, bm, theta, x, labels, op=Op.INFERENCE, blocks=blocks, k_steps=9, n_queries=3, **HP)
    bulk = got["bulk"]
    assert [s16(bulk[bm.params + p]) for p in range(net.n_params)] == list(theta)
    assert (got["steps_done"], got["forwards"], got["changed"]) == (1, 1, 0)
    assert (got["l0"], got["last_correct"]) == want_log[0]
    assert (words48(bulk[bm.log:bm.log + 3]), bulk[bm.log + 3]) == want_log[0]


@pytest.mark.parametrize("op,n_queries,k_steps,batch", [(Op.STEPS, 2, 1, 2), (Op.STEPS, 3, 2, 3), (Op.INFERENCE, 2, 1, 1)])
def test_cycles_match_docstring_formula(op, n_queries, k_steps, batch) -> None:
    """``cycles`` = the module docstring's count: K steps of 3 + (N + 1)(4d + 9) + N (S + 14)
    + [N > 0](4 + d (17 N + 8)) + (N + 1) sum_b (10 + T_b), plus 3; the stand-in engine and loss take
    T_b = x_words + d + classes + 2 cycles from the start to the loss (both counted)."""
    net = tiny_net()
    bm = BulkMap(n_in=net.in_features, n_params=net.n_params, max_samples=4, n_max=3, log_depth=4)
    theta, x, labels = problem(net, batch)
    got = run_op(net, bm, theta, x, labels, op=op, k_steps=k_steps, n_queries=n_queries, kind=0, **HP)
    d, n, seeding = net.n_params, (0 if op == Op.INFERENCE else n_queries), LATENCY + 2
    t_b = bm.x_words + d + net.out_features + 2
    step = (3 + (n + 1) * (4 * d + 9) + n * (seeding + 14) + (4 + d * (17 * n + 8) if n else 0)
            + (n + 1) * batch * (10 + t_b))
    assert got["cycles"] == k_steps * step + 3
    assert step == step_cycles(d, n, batch, t_b)          # the function boards/perf.py uses


@pytest.mark.parametrize("blocks,cycles", [(standin_blocks, 150), (real_blocks, 150), (real_blocks, 300)],
                         ids=["standin-perturb", "real-perturb", "real-forward"])
def test_abort_returns_to_idle(blocks, cycles) -> None:
    """abort mid-step (in the first perturb pass, or in the first forward pass: the stand-in engine model
    only survives the first): idle at once, and the next operation (an inference) runs normally."""
    net = tiny_net()
    bm = BulkMap(n_in=net.in_features, n_params=net.n_params, max_samples=4, n_max=3, log_depth=4)
    theta, x, labels = problem(net, 2, seed=7)
    _, want_log = signrge_steps(net, theta, x, labels, k_steps=1, n_queries=0, **HP)
    got = run_op(net, bm, theta, x, labels, op=Op.STEPS, blocks=blocks, abort_after=cycles, k_steps=3, n_queries=2,
                 **HP)
    assert got["busy_after_abort"] == 0
    assert (got["l0"], got["last_correct"], got["forwards"]) == (*want_log[0], 1)


@pytest.mark.slow
def test_small_mnist_net_real_blocks() -> None:
    """sim/tb_zo_nets.small_mnist_net (784 -> 16 -> 10, 210 parameters) on the real blocks: N = 2, K = 1, B = 2."""
    from ttzo.sim.tb_zo_nets import small_mnist_net
    net = small_mnist_net()
    bm = BulkMap(n_in=net.in_features, n_params=net.n_params, max_samples=2, n_max=2, log_depth=4)
    theta, x, labels = problem(net, 2)
    check_steps(net, bm, theta, x, labels, n_queries=2, k_steps=1, blocks=real_blocks)
