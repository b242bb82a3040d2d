"""ZO update engines (rtl/zo_update.py) against golden/zo_fixed.py: signRGE and CGE update passes."""
from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from amaranth import Elaboratable, Module, signed
from amaranth.lib import memory

from ttzo.golden import prng, zo_fixed
from ttzo.golden.fixed import QFormat
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.rtl.perturb import XiKind
from ttzo.rtl.prng import SEEDER_LATENCY
from ttzo.rtl.zo_update import CgeUpdate, Rounding, SignRgeUpdate
from ttzo.sim.tb_zo_amsim import run
from ttzo.sim.tb_zo_golden import step_codes
from ttzo.sim.tb_zo_nets import segments, small_mnist_net


class WithMemory(Elaboratable):
    """An update engine wired to a parameter memory initialised with `theta`."""

    def __init__(self, engine, theta: np.ndarray) -> None:
        self.engine = engine
        self.mem = memory.Memory(shape=engine.rd_data.shape(), depth=len(theta), init=[int(v) for v in theta])

    def elaborate(self, platform) -> Module:
        m = Module()
        m.submodules.engine = e = self.engine
        m.submodules.mem = self.mem
        rd = self.mem.read_port()
        wr = self.mem.write_port()
        m.d.comb += [rd.addr.eq(e.rd_addr), e.rd_data.eq(rd.data),
                     wr.addr.eq(e.wr_addr), wr.data.eq(e.wr_data), wr.en.eq(e.wr_en)]
        return m


async def _run_pass(ctx, eng) -> int:
    """Pulse start, wait for done; the pass's cycle count from start to done (inclusive of the start cycle)."""
    ctx.set(eng.start, 1)
    await ctx.tick()
    ctx.set(eng.start, 0)
    c = 1
    while not ctx.get(eng.done):
        await ctx.tick()
        c += 1
    return c


def golden_signrge_update(net, theta, d, seed, step, kind, alpha_w, alpha_b):
    """golden zo_fixed.signrge_step with a loss that yields the given differences d_i = L_i - L_0."""
    pf, mu, alpha = step_codes(net, DEFAULT_CONFIG, 1, 1, alpha_w, alpha_b)
    losses = np.concatenate([[0], np.asarray(d, dtype=np.int64)])
    new, _ = zo_fixed.signrge_step(lambda thetas: losses[:len(thetas)], theta, seed, step, len(d), mu, alpha, pf,
                                   kind)
    return new


def _simulate_signrge(theta, segs, d, n_max, seed, step, kind, alpha_w, alpha_b, first_query=0, diff_bits=49,
                      weight=DEFAULT_CONFIG.weight, bias=DEFAULT_CONFIG.bias, n_params_max=1024):
    eng = SignRgeUpdate(n_max, diff_bits, max_segments=16, n_params_max=n_params_max, weight=weight, bias=bias)
    top = WithMemory(eng, theta)
    out: dict = {}

    async def bench(ctx):
        for k, (s, _, b) in enumerate(segs):
            ctx.set(eng.seg_start[k], s)
            ctx.set(eng.seg_bias[k], b)
        ctx.set(eng.n_segments, len(segs))
        ctx.set(eng.n_params, len(theta))
        for i, v in enumerate(d):
            ctx.set(eng.d[i], int(v))
        ctx.set(eng.n_queries, len(d))
        ctx.set(eng.seed, seed)
        ctx.set(eng.step, step)
        ctx.set(eng.first_query, first_query)
        ctx.set(eng.kind, kind)
        ctx.set(eng.alpha_w, alpha_w)
        ctx.set(eng.alpha_b, alpha_b)
        out["cycles"] = await _run_pass(ctx, eng)
        out["changed"] = ctx.get(eng.changed)
        out["theta"] = np.array([ctx.get(top.mem.data[i]) for i in range(len(theta))])

    run(top, bench)
    out["pass_cycles"] = eng.pass_cycles(len(theta))
    return out


def documented_pass_cycles(n_params: int, n_max: int, diff_bits: int) -> int:
    """docs/rtl-zo.md: cycles counted from the start cycle (0).  Seed requests in cycles 1..N_max, the
    last seed enters the ring SEEDER_LATENCY cycles after its request; N_max issue cycles and one idle
    cycle per parameter, so the last stream of the last parameter is issued one cycle before the end
    of the (N_max + 1) P cycles; its pipeline (x_i's parts, x_i, product, chunk sums, C - 1 chunk
    combinations, sign: S = 4 + C stages; theta - alpha*sign, the write: S + 2); a cycle sees it
    empty, then ``done`` is up."""
    chunks = math.ceil((diff_bits - 18) / 17) + 1 if diff_bits > 18 else 1     # 17-bit multiplier chunks of d_i
    seeded = n_max + SEEDER_LATENCY
    if n_params == 0:          # the first pass cycle finds nothing to issue and registers done
        return seeded + 2
    last_issue = seeded + (n_max + 1) * n_params - 1
    return last_issue + (4 + chunks + 2) + 2


@pytest.mark.parametrize("kind,N,n_max", [("rademacher", 10, 10), ("rademacher", 3, 5), ("gaussian", 4, 4)])
def test_signrge_update_matches_golden(kind: str, N: int, n_max: int) -> None:
    net = small_mnist_net()
    segs = segments(net)
    rng = np.random.default_rng(N)
    theta = net.flatten(net.quantize(net.init(rng), DEFAULT_CONFIG))
    theta[::13] = DEFAULT_CONFIG.weight.max_code      # saturation at both rails
    theta[7::19] = DEFAULT_CONFIG.weight.min_code
    mask = net.bias_mask()
    theta = np.where(mask, DEFAULT_CONFIG.bias.saturate(theta), theta)
    d = rng.integers(-(1 << 40), 1 << 40, size=N)
    d[0] = 0
    if N > 2:
        d[1] = -(1 << 48)
        d[2] = (1 << 48) - 1
    seed, step = int(rng.integers(0, 2**32)), 11
    want = golden_signrge_update(net, theta, d, seed, step, kind, 41, 5)
    got = _simulate_signrge(theta, segs, d, n_max, seed, step,
                            XiKind.GAUSSIAN if kind == "gaussian" else XiKind.RADEMACHER, 41, 5)
    np.testing.assert_array_equal(got["theta"], want)
    assert got["changed"] == int(np.sum(want != theta))
    assert np.any(want == theta) and np.any(want != theta)
    # the documented pass time (49-bit d_i: three multiplier chunks; N_max + 1 cycles per parameter)
    assert got["cycles"] == got["pass_cycles"] == documented_pass_cycles(net.n_params, n_max, 49)
    assert documented_pass_cycles(net.n_params, n_max, 49) == (n_max + 1) * net.n_params + n_max + 15


@pytest.mark.parametrize("kind,d,n_max,diff_bits", [
    # equal d across the 17-bit multiplier chunks: a_p is exactly 0 whenever the two signs differ
    ("rademacher", [(1 << 47) + (1 << 34) + (1 << 17) + 1] * 2, 2, 49),
    ("rademacher", [-(1 << 48), (1 << 48) - 1, 5], 3, 49),      # the rails of a 49-bit difference
    ("gaussian", [-(3 << 40) - 12345], 1, 49),                  # N_max = 1: a parameter every 2 cycles
    ("gaussian", [(1 << 33) - 1, -(1 << 34), 77, -1, 1], 6, 35),  # two chunks, one query unused
])
def test_signrge_update_corner_differences(kind, d, n_max, diff_bits) -> None:
    net = small_mnist_net()
    theta = net.flatten(net.quantize(net.init(np.random.default_rng(3)), DEFAULT_CONFIG))
    d = np.array(d, dtype=np.int64)
    want = golden_signrge_update(net, theta, d, 99, 5, kind, 41, 5)
    eng_kind = XiKind.GAUSSIAN if kind == "gaussian" else XiKind.RADEMACHER
    got = _simulate_signrge(theta, segments(net), d, n_max, 99, 5, eng_kind, 41, 5, diff_bits=diff_bits)
    np.testing.assert_array_equal(got["theta"], want)
    assert got["changed"] == int(np.sum(want != theta))
    chunks = 3 if diff_bits == 49 else 2     # 17-bit multiplier chunks of d_i
    assert got["cycles"] == got["pass_cycles"] == (n_max + 1) * net.n_params + n_max + SEEDER_LATENCY + chunks + 7
    if len(d) == 2 and d[0] == d[1]:
        assert 0 < got["changed"] < net.n_params   # about half the parameters see a_p = 0


def test_signrge_equal_losses_leave_parameters_unchanged() -> None:
    net = small_mnist_net()
    theta = net.flatten(net.quantize(net.init(np.random.default_rng(0)), DEFAULT_CONFIG))
    got = _simulate_signrge(theta, segments(net), np.zeros(4, dtype=np.int64), 4, 1, 2, XiKind.RADEMACHER, 41, 5)
    np.testing.assert_array_equal(got["theta"], theta)
    assert got["changed"] == 0


def test_signrge_passes_back_to_back() -> None:
    """Three passes on one engine (a 0-parameter pass, then two steps with other d, N, kind and step): each
    starts from clean state (ring, chunk sums, counters, cursor) and equals golden applied in turn."""
    net = small_mnist_net()
    segs = segments(net)
    theta0 = net.flatten(net.quantize(net.init(np.random.default_rng(9)), DEFAULT_CONFIG))
    eng = SignRgeUpdate(4, 49, max_segments=16, n_params_max=1024)
    top = WithMemory(eng, theta0)
    rng = np.random.default_rng(10)
    passes = [(rng.integers(-(1 << 44), 1 << 44, size=4), 21, "gaussian"),
              (rng.integers(-(1 << 44), 1 << 44, size=2), 22, "rademacher")]
    got = []

    async def bench(ctx):
        for k, (s_, _, b) in enumerate(segs):
            ctx.set(eng.seg_start[k], s_)
            ctx.set(eng.seg_bias[k], b)
        ctx.set(eng.n_segments, len(segs))
        ctx.set(eng.seed, 77)
        ctx.set(eng.alpha_w, 41)
        ctx.set(eng.alpha_b, 5)
        ctx.set(eng.n_params, 0)
        ctx.set(eng.n_queries, 4)
        got.append((await _run_pass(ctx, eng), ctx.get(eng.changed)))
        ctx.set(eng.n_params, len(theta0))
        for d, step, kind in passes:
            for i, v in enumerate(d):
                ctx.set(eng.d[i], int(v))
            ctx.set(eng.n_queries, len(d))
            ctx.set(eng.step, step)
            ctx.set(eng.kind, XiKind.GAUSSIAN if kind == "gaussian" else XiKind.RADEMACHER)
            cycles = await _run_pass(ctx, eng)
            got.append((cycles, ctx.get(eng.changed), np.array([ctx.get(top.mem.data[i]) for i in range(len(theta0))])))

    run(top, bench)
    assert got[0] == (documented_pass_cycles(0, 4, 49), 0)
    theta = theta0
    for (d, step, kind), (cycles, changed, after) in zip(passes, got[1:]):
        want = golden_signrge_update(net, theta, d, 77, step, kind, 41, 5)
        np.testing.assert_array_equal(after, want)
        assert changed == int(np.sum(want != theta)) and cycles == documented_pass_cycles(net.n_params, 4, 49)
        theta = want


def golden_signrge_reference(theta, pf, d, seed, step, kind, alpha, first_query):
    """golden's update with the streams of queries first_query.. (prng.perturbations):
    sat(theta - alpha * sign(d @ xi))."""
    xi = prng.perturbations(seed, step, len(d), theta.size, kind, first_query)
    return pf.sat(theta - alpha * np.sign(np.asarray(d, dtype=np.int64) @ xi))


NARROW_BIAS = QFormat(12, 8)    # a bias format other than the cores': each parameter's own saturation


@st.composite
def signrge_cases(draw):
    """Segments of 1..5 parameters (cores and biases), codes incl. both rails, N <= N_max <= 5, any d_i width."""
    n_seg = draw(st.integers(1, 5))
    lens = [draw(st.integers(1, 5)) for _ in range(n_seg)]
    bias = [draw(st.booleans()) for _ in range(n_seg)]
    segs = [(int(s), n, b) for s, n, b in zip(np.cumsum([0] + lens[:-1]), lens, bias)]
    is_bias = np.repeat(bias, lens)
    wf, bf = DEFAULT_CONFIG.weight, draw(st.sampled_from([DEFAULT_CONFIG.bias, NARROW_BIAS]))
    theta = np.array([draw(st.one_of(st.integers(f.min_code, f.max_code), st.sampled_from([f.min_code, f.max_code])))
                      for f in (bf if b else wf for b in is_bias)], dtype=np.int64)
    pf = zo_fixed.ParamFormats(is_bias, np.where(is_bias, bf.min_code, wf.min_code),
                               np.where(is_bias, bf.max_code, wf.max_code), wf, bf)
    diff_bits = draw(st.sampled_from([12, 18, 19, 35, 49]))
    lim = 1 << (diff_bits - 1)
    n_max = draw(st.integers(1, 5))
    n = draw(st.integers(1, n_max))
    d = np.array([draw(st.one_of(st.integers(-lim, lim - 1), st.sampled_from([-lim, lim - 1, 0, 1, -1])))
                  for _ in range(n)], dtype=np.int64)
    return (segs, pf, theta, d, n_max, diff_bits, draw(st.sampled_from(["rademacher", "gaussian"])),
            draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, 1 << 19)), draw(st.integers(0, 40)),
            draw(st.integers(1, 300)), draw(st.integers(1, 300)))


@settings(max_examples=25, deadline=None)
@given(signrge_cases())
def test_signrge_update_property(case) -> None:
    """Any segment layout, format pair, codes, N <= N_max, d_i width, kind and first query: the pass equals golden."""
    segs, pf, theta, d, n_max, diff_bits, kind, seed, step, first_query, alpha_w, alpha_b = case
    alpha_b = min(alpha_b, pf.bias.max_code)
    alpha = np.where(pf.is_bias, alpha_b, alpha_w)
    want = golden_signrge_reference(theta, pf, d, seed, step, kind, alpha, first_query)
    if first_query == 0:   # the reference is golden's signrge_step itself
        losses = np.concatenate([[0], d])
        same, _ = zo_fixed.signrge_step(lambda t: losses[:len(t)], theta, seed, step, len(d), alpha, alpha, pf, kind)
        np.testing.assert_array_equal(same, want)
    got = _simulate_signrge(theta, segs, d, n_max, seed, step, XiKind.GAUSSIAN if kind == "gaussian" else
                            XiKind.RADEMACHER, alpha_w, alpha_b, first_query, diff_bits, pf.weight, pf.bias,
                            n_params_max=32)
    np.testing.assert_array_equal(got["theta"], want)
    assert got["changed"] == int(np.sum(want != theta))
    assert got["cycles"] == got["pass_cycles"] == documented_pass_cycles(theta.size, n_max, diff_bits)


@pytest.mark.parametrize("n_max", [1, 3])
def test_signrge_update_saturates_each_parameter_in_its_own_format(n_max: int) -> None:
    """Cores (s16.13) and biases (s12.8) alternate in short segments, every code on a rail, a step of 600
    that leaves the narrow format: each parameter saturates in its own format, also at segment boundaries."""
    lens, bias = [3, 1, 2, 1, 1, 4, 1], [False, True, False, True, False, True, False]
    segs = [(int(s), n, b) for s, n, b in zip(np.cumsum([0] + lens[:-1]), lens, bias)]
    is_bias = np.repeat(bias, lens)
    wf, bf = DEFAULT_CONFIG.weight, NARROW_BIAS
    pf = zo_fixed.ParamFormats(is_bias, np.where(is_bias, bf.min_code, wf.min_code),
                               np.where(is_bias, bf.max_code, wf.max_code), wf, bf)
    theta = np.where(np.arange(is_bias.size) % 2 == 0, pf.hi, pf.lo)
    d = np.array([5, -7, 3][:n_max], dtype=np.int64)
    moved = []
    for seed in range(8):
        want = golden_signrge_reference(theta, pf, d, seed, 3, "rademacher", 600, 2)
        got = _simulate_signrge(theta, segs, d, n_max, seed, 3, XiKind.RADEMACHER, 600, 600, 2, 49, wf, bf,
                                n_params_max=32)
        np.testing.assert_array_equal(got["theta"], want)
        moved.append(want != theta)
    moved = np.array(moved)
    assert moved.any(axis=0).all() and (~moved).any(axis=0).all()   # every parameter both stays and moves


def golden_cge_update(theta, b, pf, k_code, k_shift, rounding: str, seed: int, step: int) -> np.ndarray:
    """golden zo_fixed.cge_step with m = 1 and no coordinate (g = 0): exactly the update pass on b."""
    c = zo_fixed.CGEConstants(np.ones(theta.size, dtype=np.int64), 1 << zo_fixed.M_FRAC,
                              np.asarray(k_code, dtype=np.int64), np.asarray(k_shift, dtype=np.int64))
    words = zo_fixed.stochastic_rounding_words(seed, step, theta.size) if rounding == "stochastic" else None
    want, b_same, _ = zo_fixed.cge_step(lambda t: np.zeros(len(t), dtype=np.int64), theta, b,
                                        np.zeros(0, dtype=np.int64), c, pf, rounding_words=words)
    np.testing.assert_array_equal(b_same, b)  # m = 1, g = 0: the pass sees exactly b
    return want


def simulate_cge_update(theta, b, segs, regs: dict, rounding: str = "nearest", seed: int = 0, step: int = 0,
                        n_params_max: int = 1024) -> dict:
    """One CgeUpdate pass over memories holding theta and b; `regs`: k_code_w/b, k_shift_w/b.

    Stochastic rounding gets the stream seed state golden's words come from (prng.stream_seed).
    """
    eng = CgeUpdate(max_segments=16, n_params_max=n_params_max)
    top = WithMemory(eng, theta)
    bmem = memory.Memory(shape=signed(zo_fixed.B_BITS), depth=len(theta), init=[int(v) for v in b])

    class Top(Elaboratable):
        def elaborate(self, platform):
            m = Module()
            m.submodules.top = top
            m.submodules.bmem = bmem
            rd = bmem.read_port()
            m.d.comb += [rd.addr.eq(eng.rd_addr), eng.b_data.eq(rd.data)]
            return m

    out = {}

    async def bench(ctx):
        for k, (s, _, isb) in enumerate(segs):
            ctx.set(eng.seg_start[k], s)
            ctx.set(eng.seg_bias[k], isb)
        for name, v in dict(n_segments=len(segs), n_params=len(theta), **regs).items():
            ctx.set(getattr(eng, name), v)
        ctx.set(eng.rounding, Rounding.STOCHASTIC if rounding == "stochastic" else Rounding.NEAREST)
        ctx.set(eng.sr_state, prng.stream_seed(seed, step, zo_fixed.SR_QUERY))
        out["cycles"] = await _run_pass(ctx, eng)
        out["changed"] = ctx.get(eng.changed)
        out["theta"] = np.array([ctx.get(top.mem.data[i]) for i in range(len(theta))])

    run(Top(), bench)
    out["pass_cycles"] = eng.pass_cycles(len(theta))
    return out


@pytest.mark.parametrize("rounding", ["nearest", "stochastic"])
@pytest.mark.parametrize("k_code_w,k_shift_w,k_code_b,k_shift_b", [(4095, 62, 2048, 1), (3000, 30, 4000, 45),
                                                                     (2049, 40, 2500, 33), (3500, 32, 2222, 31)])
def test_cge_update_pass_matches_golden(k_code_w, k_shift_w, k_code_b, k_shift_b, rounding) -> None:
    """theta <- sat(theta - round(k*b >> s)) for momentum values across the 47-bit range, incl. rails.

    Both roundings: half up, and golden's stochastic rounding (words of stream (seed, t, SR_QUERY)
    added below the shift, with shifts below, at and above the 32-bit word).
    """
    net = small_mnist_net()
    rng = np.random.default_rng(k_shift_w)
    cfg = DEFAULT_CONFIG
    theta = net.flatten(net.quantize(net.init(rng), cfg))
    b = rng.integers(-zo_fixed.B_MAX - 1, zo_fixed.B_MAX + 1, size=net.n_params)
    b[::5] >>= rng.integers(0, 46, size=b[::5].size)     # small magnitudes too
    b[0], b[1], b[2] = zo_fixed.B_MAX, -zo_fixed.B_MAX - 1, -1
    pf = zo_fixed.ParamFormats.of(net, cfg)
    k_code = np.where(pf.is_bias, k_code_b, k_code_w)
    k_shift = np.where(pf.is_bias, k_shift_b, k_shift_w)
    seed, step = int(rng.integers(0, 2**32)), int(rng.integers(0, 1 << 20))
    want = golden_cge_update(theta, b, pf, k_code, k_shift, rounding, seed, step)
    regs = dict(k_code_w=k_code_w, k_shift_w=k_shift_w, k_code_b=k_code_b, k_shift_b=k_shift_b)
    out = simulate_cge_update(theta, b, segments(net), regs, rounding, seed, step)
    np.testing.assert_array_equal(out["theta"], want)
    assert np.any(want == pf.hi) and np.any(want == pf.lo)  # both rails reached
    assert out["changed"] == int(np.sum(want != theta))
    assert out["cycles"] == out["pass_cycles"] == net.n_params + 12  # the documented pass time, both modes
    if rounding == "stochastic":   # the rounding is really not half up somewhere
        nearest = golden_cge_update(theta, b, pf, k_code, k_shift, "nearest", seed, step)
        assert np.any(nearest != want)


def test_cge_stochastic_rounding_words_follow_seed_and_step() -> None:
    """Small updates (|k*b| / 2^s < 1 LSB): nearest rounding moves nothing, stochastic moves some; another
    step's words move other parameters (the engine really uses stream (seed, t, SR_QUERY), word p for p)."""
    net = small_mnist_net()
    rng = np.random.default_rng(5)
    theta = net.flatten(net.quantize(net.init(rng), DEFAULT_CONFIG))
    b = rng.integers(-(1 << 20), 1 << 20, size=net.n_params)       # 4095 * 2^20 / 2^34 < 1/2 LSB
    pf = zo_fixed.ParamFormats.of(net, DEFAULT_CONFIG)
    regs = dict(k_code_w=4095, k_shift_w=34, k_code_b=3000, k_shift_b=34)
    k_code, k_shift = np.where(pf.is_bias, 3000, 4095), np.full(net.n_params, 34)
    moved = []
    for step in (8, 9):
        want = golden_cge_update(theta, b, pf, k_code, k_shift, "stochastic", 3, step)
        got = simulate_cge_update(theta, b, segments(net), regs, "stochastic", 3, step)
        np.testing.assert_array_equal(got["theta"], want)
        moved.append(want != theta)
        assert 0 < got["changed"] == int(np.sum(moved[-1])) < net.n_params
    assert np.any(moved[0] != moved[1])
    near = simulate_cge_update(theta, b, segments(net), regs, "nearest", 3, 8)
    np.testing.assert_array_equal(near["theta"], theta)
    assert near["changed"] == 0


@st.composite
def cge_cases(draw):
    """A few segments (cores and biases) of random length, random codes, momentum, k and shifts 1..62."""
    n_seg = draw(st.integers(1, 4))
    lens = [draw(st.integers(1, 6)) for _ in range(n_seg)]
    bias = [draw(st.booleans()) for _ in range(n_seg)]
    starts = np.cumsum([0] + lens[:-1])
    segs = [(int(s), n, b) for s, n, b in zip(starts, lens, bias)]
    d = sum(lens)
    is_bias = np.repeat(bias, lens)
    cfg = DEFAULT_CONFIG
    b_lim = st.integers(-zo_fixed.B_MAX - 1, zo_fixed.B_MAX)
    small = st.integers(-(1 << 20), 1 << 20)
    b = np.array([draw(st.one_of(b_lim, small, st.sampled_from([zo_fixed.B_MAX, -zo_fixed.B_MAX - 1, -1, 0, 1])))
                  for _ in range(d)], dtype=np.int64)
    code = st.integers(cfg.weight.min_code, cfg.weight.max_code)
    theta = np.array([draw(code) for _ in range(d)], dtype=np.int64)
    theta = np.where(is_bias, cfg.bias.saturate(theta), theta)
    kc = st.integers(1 << (zo_fixed.K_BITS - 1), (1 << zo_fixed.K_BITS) - 1)
    ks = st.integers(1, 62)
    regs = dict(k_code_w=draw(kc), k_shift_w=draw(ks), k_code_b=draw(kc), k_shift_b=draw(ks))
    return segs, is_bias, theta, b, regs, draw(st.integers(0, 2**32 - 1)), draw(st.integers(0, (1 << 20) - 1))


@settings(max_examples=12, deadline=None)
@given(cge_cases(), st.sampled_from(["nearest", "stochastic"]))
def test_cge_update_property(case, rounding) -> None:
    """Any segment layout, codes, momentum, k_code and k_shift in golden's range: the pass equals golden."""
    segs, is_bias, theta, b, regs, seed, step = case
    cfg = DEFAULT_CONFIG
    pf = zo_fixed.ParamFormats(is_bias, np.where(is_bias, cfg.bias.min_code, cfg.weight.min_code),
                               np.where(is_bias, cfg.bias.max_code, cfg.weight.max_code), cfg.weight, cfg.bias)
    k_code = np.where(is_bias, regs["k_code_b"], regs["k_code_w"])
    k_shift = np.where(is_bias, regs["k_shift_b"], regs["k_shift_w"])
    want = golden_cge_update(theta, b, pf, k_code, k_shift, rounding, seed, step)
    got = simulate_cge_update(theta, b, segs, regs, rounding, seed, step, n_params_max=64)
    np.testing.assert_array_equal(got["theta"], want)
    assert got["changed"] == int(np.sum(want != theta))


def test_cge_nearest_outside_golden_shift_range_keeps_former_rule() -> None:
    """k_shift 0 and 63 (the board accepts 0..63; golden only 1..62): NEAREST still computes the former
    datapath's ((k*b >> ((s - 1) mod 64)) + 1) >> 1, i.e. no update at s = 0."""
    net = small_mnist_net()
    rng = np.random.default_rng(2)
    theta = net.flatten(net.quantize(net.init(rng), DEFAULT_CONFIG))
    b = rng.integers(-zo_fixed.B_MAX - 1, zo_fixed.B_MAX + 1, size=net.n_params)
    b[::3] >>= 30
    pf = zo_fixed.ParamFormats.of(net, DEFAULT_CONFIG)
    regs = dict(k_code_w=4095, k_shift_w=0, k_code_b=2048, k_shift_b=63)
    k_code, k_shift = np.where(pf.is_bias, 2048, 4095), np.where(pf.is_bias, 63, 0)
    upd = np.array([((int(k) * int(v) >> ((int(s) - 1) % 64)) + 1) >> 1 for k, v, s in zip(k_code, b, k_shift)])
    want = pf.sat(theta - upd)
    got = simulate_cge_update(theta, b, segments(net), regs)
    np.testing.assert_array_equal(got["theta"], want)
    assert got["changed"] == 0
