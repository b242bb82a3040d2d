"""The training sequencer (rtl/zo_trainer.py) with the dense stand-in engine: signRGE and CGE steps equal golden's.

Parameters after the steps and every batch loss and correct count the RTL logs must equal the
golden step (sim/tb_zo_golden.py) bit for bit.  The bench starts the trainer and waits on `done`
(it never drives the design cycle by cycle while it runs).
"""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.golden import zo, zo_fixed
from ttzo.golden.optim import GoldenStepper, OptimConfig, OptState
from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.golden.network import LayerSpec, TTNet
from ttzo.golden.tt import TTShape
from ttzo.rtl.perturb import XiKind
from ttzo.rtl.zo_dense_engine import DenseEngine
from ttzo.rtl.zo_trainer import Optimizer, ZoTrainer
from ttzo.rtl.zo_update import Rounding
from ttzo.sim.tb_zo_amsim import run
from ttzo.sim.tb_zo_golden import LoggingLoss, cge_step, signrge_steps
from ttzo.sim.tb_zo_nets import segments


def dense_net(n_in: int, n_out: int) -> TTNet:
    return TTNet((LayerSpec(TTShape((n_in,), (n_out,), (1, 1)), "identity"),), name=f"dense-{n_in}x{n_out}")


def run_trainer(net, theta, x, labels, *, seed, step0, k_steps, n_queries, mu_w, mu_b, alpha_w, alpha_b, kind,
                n_max=4, batch_ram_depth=2048):
    B, n_in = x.shape
    C = net.out_features
    eng = DenseEngine(n_in, C)
    top = ZoTrainer(eng, n_params=net.n_params, n_inputs=n_in, classes=C, max_samples=B, n_max=n_max,
                    max_segments=4, log_depth=32, params_init=theta, inputs_init=x.reshape(-1), labels_init=labels,
                    batch_ram_depth=batch_ram_depth)
    out: dict = {}

    async def bench(ctx):
        for k, (s, _, b) in enumerate(segments(net)):
            ctx.set(top.seg_we, 1)
            ctx.set(top.seg_addr, k)
            ctx.set(top.seg_start, s)
            ctx.set(top.seg_bias, b)
            await ctx.tick()
        ctx.set(top.seg_we, 0)
        for name, v in dict(n_segments=len(segments(net)), n_samples=B, seed=seed, step0=step0, k_steps=k_steps,
                            n_queries=n_queries, mu_w=mu_w, mu_b=mu_b, alpha_w=alpha_w, alpha_b=alpha_b,
                            kind=XiKind.GAUSSIAN if kind == "gaussian" else XiKind.RADEMACHER).items():
            ctx.set(getattr(top, name), v)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        await ctx.tick().until(top.done)
        out["theta"] = np.array([ctx.get(top.params.data[i]) for i in range(net.n_params)])
        n = ctx.get(top.forwards)
        out["log"] = [(ctx.get(top.log.data[i]).loss, ctx.get(top.log.data[i]).correct) for i in range(n)]
        out["cycles"] = ctx.get(top.cycles)
        out["steps"] = ctx.get(top.steps_done)

    run(top, bench)
    return out


@pytest.mark.parametrize("kind,n_queries,k_steps,ram", [("rademacher", 3, 2, 2048), ("gaussian", 2, 1, 2048),
                                                         ("rademacher", 2, 1, 16)])
def test_signrge_steps_match_golden(kind, n_queries, k_steps, ram) -> None:
    """ram: words per block-RAM bank of the batch memory; 16 splits the 72-word batch into five banks."""
    rng = np.random.default_rng(11)
    n_in, C, B = 12, 4, 6
    net = dense_net(n_in, C)
    cfg = DEFAULT_CONFIG
    theta = np.concatenate([cfg.weight.quantize(rng.normal(0, 0.6, n_in * C)), cfg.bias.quantize(rng.normal(0, 1, C))])
    theta[3] = cfg.weight.max_code  # a rail: perturbation and update saturate
    x = rng.integers(0, 256, size=(B, n_in))
    labels = rng.integers(0, C, size=B)
    hp = dict(seed=0x5EED, step0=4, k_steps=k_steps, n_queries=n_queries, mu_w=819, mu_b=102, alpha_w=300,
              alpha_b=40, kind=kind)
    want_theta, want_log = signrge_steps(net, theta, x, labels, **hp)
    got = run_trainer(net, theta, x, labels, **hp, batch_ram_depth=ram)
    assert got["steps"] == k_steps
    assert got["log"] == want_log
    np.testing.assert_array_equal(got["theta"], want_theta)
    assert np.any(want_theta != theta)  # the steps did something


def run_cge(net, theta, b, x, labels, *, seed, step, fraction, c, pf, rounding: Rounding | None = None):
    B, n_in = x.shape
    C = net.out_features
    eng = DenseEngine(n_in, C)
    sr = rounding is not None     # the stochastic-rounding build (run-time input cge_rounding)
    top = ZoTrainer(eng, n_params=net.n_params, n_inputs=n_in, classes=C, max_samples=B, n_max=2,
                    max_segments=4, log_depth=64, params_init=theta, inputs_init=x.reshape(-1), labels_init=labels,
                    momentum_init=b, stochastic_rounding=sr)
    w, bi = ~pf.is_bias, pf.is_bias
    regs = dict(optimizer=Optimizer.CGE, n_segments=len(segments(net)), n_samples=B, seed=seed, step0=step, k_steps=1,
                mu_w=int(c.mu_codes[w][0]), mu_b=int(c.mu_codes[bi][0]), m_code=c.m_code,
                k_code_w=int(c.k_code[w][0]), k_shift_w=int(c.k_shift[w][0]),
                k_code_b=int(c.k_code[bi][0]), k_shift_b=int(c.k_shift[bi][0]),
                cge_threshold=min(1 << 32, round(fraction * 2 ** 32)))
    if sr:
        regs["cge_rounding"] = rounding
    out: dict = {}

    async def bench(ctx):
        for k, (s, _, isb) in enumerate(segments(net)):
            ctx.set(top.seg_we, 1)
            ctx.set(top.seg_addr, k)
            ctx.set(top.seg_start, s)
            ctx.set(top.seg_bias, isb)
            await ctx.tick()
        ctx.set(top.seg_we, 0)
        for name, v in regs.items():
            ctx.set(getattr(top, name), v)
        ctx.set(top.start, 1)
        await ctx.tick()
        ctx.set(top.start, 0)
        await ctx.tick().until(top.done)
        out["theta"] = np.array([ctx.get(top.params.data[i]) for i in range(net.n_params)])
        out["b"] = np.array([ctx.get(top.momentum.data[i]) for i in range(net.n_params)])
        n = ctx.get(top.forwards)
        out["log"] = [(ctx.get(top.log.data[i]).loss, ctx.get(top.log.data[i]).correct) for i in range(n)]
        out["cycles"] = ctx.get(top.cycles)

    run(top, bench)
    return out


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_cge_step_with_momentum_matches_golden(fraction) -> None:
    rng = np.random.default_rng(21)
    n_in, C, B = 6, 3, 4
    net = dense_net(n_in, C)
    cfg = DEFAULT_CONFIG
    theta = np.concatenate([cfg.weight.quantize(rng.normal(0, 0.8, n_in * C)), cfg.bias.quantize(rng.normal(0, 1, C))])
    theta[2] = cfg.weight.min_code
    b = rng.integers(-(1 << 30), 1 << 30, size=net.n_params)
    b[5] = zo_fixed.B_MAX  # the momentum register's rail
    x = rng.integers(0, 256, size=(B, n_in))
    labels = rng.integers(0, C, size=B)
    pf = zo_fixed.ParamFormats.of(net, cfg)
    c = zo_fixed.CGEConstants.make(pf, lr=0.05, mu=0.01, momentum=0.9, batch=B, loss_frac=cfg.loss.frac)
    want_theta, want_b, want_log, coords = cge_step(net, theta, b, x, labels, seed=77, step=3, fraction=fraction, c=c)
    got = run_cge(net, theta, b, x, labels, seed=77, step=3, fraction=fraction, c=c, pf=pf)
    assert len(coords) < net.n_params or fraction == 1.0
    assert got["log"] == want_log
    np.testing.assert_array_equal(got["b"], want_b)
    np.testing.assert_array_equal(got["theta"], want_theta)
    assert np.any(want_theta != theta)


@pytest.mark.parametrize("fraction", [1.0, 0.5])
def test_cge_step_stochastic_rounding_matches_golden_stepper(fraction) -> None:
    """cge_rounding = STOCHASTIC (trainer built with stochastic_rounding=True): the step equals golden's
    GoldenStepper with cge_rounding="stochastic"; NEAREST in that build equals golden's default step."""
    rng = np.random.default_rng(31)
    n_in, C, B = 6, 3, 4
    net = dense_net(n_in, C)
    cfg = DEFAULT_CONFIG
    theta = np.concatenate([cfg.weight.quantize(rng.normal(0, 0.8, n_in * C)), cfg.bias.quantize(rng.normal(0, 1, C))])
    theta[2] = cfg.weight.min_code
    theta[4] = cfg.weight.max_code
    b = rng.integers(-(1 << 24), 1 << 24, size=net.n_params)    # many updates of a fraction of an LSB
    b[5] = zo_fixed.B_MAX
    b[7] = -zo_fixed.B_MAX - 1
    x = rng.integers(0, 256, size=(B, n_in))
    labels = rng.integers(0, C, size=B)
    seed, step = 0xC0FFEE, 41
    ocfg = OptimConfig(optimizer="cge", cge_lr=0.0002, cge_mu=0.01, momentum=0.9, cge_fraction=fraction,
                       cge_rounding="stochastic")
    st = OptState(theta.astype(np.int64), b.astype(np.int64), step=step, phase="cge")
    GoldenStepper(net, ocfg, seed, B, cfg).step(st, x, labels, epoch=0)
    assert st.step == step + 1
    pf = zo_fixed.ParamFormats.of(net, cfg)
    c = zo_fixed.CGEConstants.make(pf, lr=0.0002, mu=0.01, momentum=0.9, batch=B, loss_frac=cfg.loss.frac)
    # the logged (loss, correct) of every forward pass, and the same step with nearest rounding
    loss = LoggingLoss(net, x, labels, cfg)
    coords = zo.sample_coordinates(seed, step, net.n_params, fraction)
    words = zo_fixed.stochastic_rounding_words(seed, step, net.n_params)
    want_theta, want_b, _ = zo_fixed.cge_step(loss, theta, b, coords, c, pf, rounding_words=words)
    np.testing.assert_array_equal(want_theta, st.theta)
    np.testing.assert_array_equal(want_b, st.momentum)
    near_theta, _, _, _ = cge_step(net, theta, b, x, labels, seed=seed, step=step, fraction=fraction, c=c)
    assert np.any(near_theta != st.theta)    # the rounding matters for this case ...
    assert np.any(st.theta == pf.hi) and np.any(st.theta == pf.lo) and np.any(st.theta != theta)  # ... and rails

    got = run_cge(net, theta, b, x, labels, seed=seed, step=step, fraction=fraction, c=c, pf=pf,
                  rounding=Rounding.STOCHASTIC)
    assert got["log"] == loss.log
    np.testing.assert_array_equal(got["b"], st.momentum)
    np.testing.assert_array_equal(got["theta"], st.theta)
    if fraction < 1:    # the same step rounding half up: golden's nearest result, in the same number of cycles
        near = run_cge(net, theta, b, x, labels, seed=seed, step=step, fraction=fraction, c=c, pf=pf,
                       rounding=Rounding.NEAREST)
        np.testing.assert_array_equal(near["theta"], near_theta)
        assert near["cycles"] == got["cycles"]
