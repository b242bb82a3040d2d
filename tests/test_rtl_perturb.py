"""The on-the-fly perturber (rtl/perturb.py) against golden: sat(theta + mu*xi) per segment, any read order."""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden import prng as gp
from ttzo.golden import zo_fixed
from ttzo.golden.fixed import round_shift
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.rtl.perturb import Mode, Perturber, XiKind
from ttzo.sim.tb_zo_amsim import run
from ttzo.sim.tb_zo_golden import step_codes
from ttzo.sim.tb_zo_nets import segments, small_mnist_net




def _golden(net, theta: np.ndarray, xi: np.ndarray, mu_w: int, mu_b: int, kind: str, negate: bool) -> np.ndarray:
    """golden zo_fixed.perturb (negate: the antithetic theta - mu*xi of the central difference)."""
    pf, mu, _ = step_codes(net, DEFAULT_CONFIG, mu_w, mu_b)
    return zo_fixed.perturb(theta, -xi if negate else xi, mu, pf, kind == "gaussian")[0]


def _simulate(theta, segs, order, state, mode, kind, mu_w, mu_b, coord=0, negate=False, stall_seed=None):
    """Stream the segments in `order` through the perturber; outputs grouped per read of a segment.

    With `stall_seed`, the source drops valid and the sink drops ready at random (the pipeline must
    stall as a whole); without, the stream runs back to back and each code must come out exactly
    LATENCY cycles after it went in.
    """
    dut = Perturber(max_segments=16, n_params_max=4096)
    rng = np.random.default_rng(stall_seed)
    got: dict[int, list[list[int]]] = {}
    prep_cycles: list[int] = []
    outs: list[tuple[int, int]] = []        # (cycle, payload) of every output transfer
    ins: list[int] = []                     # cycle of every input transfer

    async def bench(ctx):
        for a, (start, _, is_bias) in enumerate(segs):
            ctx.set(dut.seg_we, 1)
            ctx.set(dut.seg_addr, a)
            ctx.set(dut.seg_start, start)
            ctx.set(dut.seg_bias, is_bias)
            await ctx.tick()
        ctx.set(dut.seg_we, 0)
        ctx.set(dut.n_segments, len(segs))
        ctx.set(dut.mode, mode)
        ctx.set(dut.kind, kind)
        ctx.set(dut.negate, negate)
        ctx.set(dut.mu_w, mu_w)
        ctx.set(dut.mu_b, mu_b)
        ctx.set(dut.coord, coord)
        ctx.set(dut.state, state)
        ctx.set(dut.prepare, 1)
        await ctx.tick()
        ctx.set(dut.prepare, 0)
        c = 0
        while ctx.get(dut.busy):
            await ctx.tick()
            c += 1
        prep_cycles.append(c)
        cycle = 0

        def sink_ready():
            ctx.set(dut.theta_out.ready, 1 if stall_seed is None else int(rng.random() < 0.7))

        async def clock():
            nonlocal cycle
            if ctx.get(dut.theta_out.ready) and ctx.get(dut.theta_out.valid):
                outs.append((cycle, ctx.get(dut.theta_out.payload)))
            await ctx.tick()
            cycle += 1
            sink_ready()

        sink_ready()

        for a in order:
            start, n, _ = segs[a]
            ctx.set(dut.segment, a)
            ctx.set(dut.open, 1)
            ctx.set(dut.theta_in.valid, 0)
            await clock()                    # earlier codes keep flowing out while a segment opens
            ctx.set(dut.open, 0)
            p = start
            while p < start + n:
                valid = 1 if stall_seed is None else int(rng.random() < 0.8)
                ctx.set(dut.theta_in.valid, valid)
                ctx.set(dut.theta_in.payload, int(theta[p]))
                assert ctx.get(dut.index) == p
                if valid and ctx.get(dut.theta_in.ready):
                    ins.append(cycle)
                    p += 1
                await clock()
            ctx.set(dut.theta_in.valid, 0)
        total = sum(segs[a][1] for a in order)
        for _ in range(1000):
            if len(outs) == total:
                break
            await clock()
        vals = [v for _, v in outs]
        for a in order:
            n = segs[a][1]
            got.setdefault(a, []).append(vals[:n])
            vals = vals[n:]

    run(dut, bench)
    assert len(outs) == len(ins) == sum(segs[a][1] for a in order)
    if stall_seed is None:
        assert [c for c, _ in outs] == [c + Perturber.LATENCY for c in ins]   # the documented latency
    return got, prep_cycles[0]


@pytest.fixture(scope="module")
def small_net():
    net = small_mnist_net()
    rng = np.random.default_rng(5)
    theta = net.flatten(net.quantize(net.init(rng), DEFAULT_CONFIG))
    # push some entries to the rails so saturation happens
    theta[::17] = DEFAULT_CONFIG.weight.max_code - 1
    theta[5::23] = DEFAULT_CONFIG.weight.min_code + 1
    return net, theta


@pytest.mark.parametrize("kind,stall_seed", [("rademacher", None), ("gaussian", None), ("gaussian", 4),
                                             ("rademacher", 9)])
def test_random_perturbation_matches_golden_in_any_order(small_net, kind, stall_seed) -> None:
    net, theta = small_net
    segs = segments(net)
    seed, step, q = 0xBEEF, 7, 3
    state = gp.stream_seed(seed, step, q)
    xi = gp.perturbations(seed, step, 1, net.n_params, kind, first_query=q)[0]
    mu_w, mu_b = 819, 102  # 0.1 in s16.13 and s16.10
    negate = kind == "gaussian"
    want = _golden(net, theta, xi, mu_w, mu_b, kind, negate)
    order = [3, 1, 0, 2, 4, 8, 6, 5, 7, 9, 1]  # a contraction-like order, and core 1 read twice
    got, prep = _simulate(theta, segs, order, state, Mode.RANDOM,
                          XiKind.GAUSSIAN if kind == "gaussian" else XiKind.RADEMACHER, mu_w, mu_b, negate=negate,
                          stall_seed=stall_seed)
    for a, reads in got.items():
        start, n, _ = segs[a]
        for vals in reads:
            np.testing.assert_array_equal(vals, want[start:start + n], err_msg=f"segment {a}")
    assert set(got) == set(range(len(segs)))
    assert prep == segs[-1][0] + 1  # walks up to the last segment start
    mu = np.where(net.bias_mask(), mu_b, mu_w)
    d = mu * xi if kind == "rademacher" else round_shift(mu * xi, gp.GAUSS_FRAC)
    unsat = theta - d if negate else theta + d
    assert np.any(unsat != want)  # saturation is exercised


def test_one_code_segments_back_to_back(small_net) -> None:
    """The checkpoint walk stores a state at consecutive positions (segments of one code, next to each
    other, at 0 and at the end): the look-ahead compare of rtl/perturb.py's walk must not skip one."""
    net, theta = small_net
    segs = [(0, 1, False), (1, 1, False), (2, 26, False), (28, 32, False), (60, 1, False), (61, 31, False),
            (92, 28, False), (120, 1, True), (121, 15, True), (136, 4, False), (140, 40, False), (180, 16, False),
            (196, 1, False), (197, 1, False), (198, 2, False), (200, 10, True)]
    assert [a + n for a, n, _ in segs[:-1]] == [a for a, _, _ in segs[1:]] and sum(n for _, n, _ in segs) == net.n_params
    seed, step, q = 0x51DE, 2, 5
    xi = gp.perturbations(seed, step, 1, net.n_params, "rademacher", first_query=q)[0]
    want = _golden(net, theta, xi, 819, 102, "rademacher", False)
    order = list(reversed(range(len(segs))))
    got, prep = _simulate(theta, segs, order, gp.stream_seed(seed, step, q), Mode.RANDOM, XiKind.RADEMACHER,
                          819, 102)
    for a, reads in got.items():
        start, n, _ = segs[a]
        np.testing.assert_array_equal(reads[0], want[start:start + n], err_msg=f"segment {a}")
    assert prep == segs[-1][0] + 1


def test_coordinate_and_off_modes(small_net) -> None:
    net, theta = small_net
    segs = segments(net)
    for mode, coord, negate in [(Mode.COORD, 17, False), (Mode.COORD, segs[4][0] + 3, True),
                                (Mode.COORD, segs[-1][0] + 2, False), (Mode.OFF, 0, False)]:
        order = [a for a, (s, n, _) in enumerate(segs) if s <= coord < s + n] + [0]
        got, _ = _simulate(theta, segs, order, 12345, mode, XiKind.RADEMACHER, 819, 102, coord=coord, negate=negate)
        mask = net.bias_mask()
        want = theta.copy()
        if mode == Mode.COORD:
            mu = 102 if mask[coord] else 819
            fmt = DEFAULT_CONFIG.bias if mask[coord] else DEFAULT_CONFIG.weight
            want[coord] = fmt.saturate(theta[coord] + (-mu if negate else mu))
        for a, reads in got.items():
            start, n, _ = segs[a]
            for vals in reads:
                np.testing.assert_array_equal(vals, want[start:start + n])
