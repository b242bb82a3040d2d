"""Whole ZO training steps on chip (rtl/zo_trainer.py + rtl/tt_engine.py) in cocotb, equal to golden bit for bit.

Starting from the same parameters, seed and a real MNIST training batch, the RTL's parameters after
3 signRGE steps and after 1 CGE step (and its momentum), and every batch loss and correct count it
logs, equal golden/zo_fixed.py's.  The bench starts the trainer and awaits `done`; the clock runs
inside the simulator.  Default suite: the small TT net (784 -> 16 -> 10, rank 2, 210 parameters),
3 signRGE steps with N = 2 and one CGE step over ~5 % of the coordinates (golden's coordinate
sampling), on Verilator with a real batch of 32 and on Icarus (slower) with 8.  `slow`: batch 64
with N = 3 and every CGE coordinate of the small net, and the paper's r = 6 network on batch 64.
CGE with stochastic rounding (``ZoCase.cge_rounding="stochastic"``: the trainer is built with
``stochastic_rounding=True`` and its ``cge_rounding`` set to STOCHASTIC; golden's ``cge_rounding="stochastic"``): the dense engine
on both simulators in the default suite, the small TT net on Verilator `slow`.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from ttzo.golden.formats import DEFAULT_CONFIG
from ttzo.rtl.descriptors import EngineParams
from ttzo.sim import runner
from ttzo.sim.tb_zo_nets import small_mnist_net
from ttzo.sim.tt_cosim import seeded_params
from ttzo.sim.zo_cosim import SMALL_ENGINE, ZoCase, cosimulate_zo, expected
from ttzo.sim.zo_cosim import SMALL_LOG_DEPTH as LOG_DEPTH
from ttzo.sim.zo_cosim import SMALL_N_MAX as N_MAX


def _batch(mnist_dir, B: int):
    from ttzo.golden.mnist import load_mnist
    ds = load_mnist(mnist_dir)
    return (np.asarray(ds.train_images[:B], dtype=np.int64).reshape(B, -1),
            np.asarray(ds.train_labels[:B], dtype=np.int64))


def _small_cases(mnist_dir, B: int, queries: int, cge_fraction: float) -> list[ZoCase]:
    net = small_mnist_net()
    x, y = _batch(mnist_dir, B)
    theta = net.flatten(seeded_params(net, DEFAULT_CONFIG, 0))
    return [ZoCase("signrge-3", net, theta, x, y, "signrge", seed=7, step0=0, k_steps=3, n_queries=queries),
            ZoCase("cge-1", net, theta, x, y, "cge", seed=7, step0=3, fraction=cge_fraction)]


def _check(results, queries: int) -> None:
    for r in results:
        assert r.losses_equal, f"{r.name}: logged losses differ\n got {r.got_log}\nwant {r.want_log}"
        assert r.params_equal and r.momentum_equal, f"{r.name}: parameters/momentum differ from golden"
        assert r.bit_exact
    sg, cg = results
    assert sg.steps == 3 and sg.forwards == 3 * (1 + queries)
    assert cg.steps == 1 and cg.forwards >= 2


def test_verilator_small_net(mnist_dir) -> None:
    _check(cosimulate_zo(_small_cases(mnist_dir, 32, 2, 0.05), SMALL_ENGINE, "verilator", N_MAX, LOG_DEPTH), 2)


@pytest.mark.icarus
@pytest.mark.skipif(not runner.have_icarus(), reason="Icarus Verilog not installed")
def test_icarus_small_net(mnist_dir) -> None:
    _check(cosimulate_zo(_small_cases(mnist_dir, 8, 2, 0.05), SMALL_ENGINE, "icarus", N_MAX, LOG_DEPTH), 2)


@pytest.mark.slow
def test_verilator_small_net_batch64_every_coordinate(mnist_dir) -> None:
    (sg, cg) = cosimulate_zo(_small_cases(mnist_dir, 64, 3, 1.0), SMALL_ENGINE, "verilator", N_MAX, LOG_DEPTH)
    _check([sg, cg], 3)
    assert cg.forwards == 210 + 1


@pytest.mark.slow
def test_verilator_mnist_r6_batch64(mnist_dir) -> None:
    """The paper's network at r = 6: 3 signRGE steps (N = 10) and one CGE step over 1 % of the coordinates."""
    from ttzo.golden.network import mnist_tt
    net = mnist_tt(6)
    x, y = _batch(mnist_dir, 64)
    theta = net.flatten(seeded_params(net, DEFAULT_CONFIG, 0))
    cases = [ZoCase("signrge-3", net, theta, x, y, "signrge", seed=7, k_steps=3, n_queries=10, alpha=0.005),
             ZoCase("cge-1", net, theta, x, y, "cge", seed=7, step0=3, fraction=0.01)]
    results = cosimulate_zo(cases, EngineParams(lanes=16), "verilator", n_max=10, log_depth=4096)
    for r in results:
        assert r.bit_exact, r.to_dict()
    assert results[0].forwards == 3 * 11


def _dense_6x3(seed: int):
    """The one-layer 6 -> 3 dense net of the dense-engine cases, random parameter codes, and the rng that drew them."""
    from ttzo.golden.network import LayerSpec, TTNet
    from ttzo.golden.tt import TTShape
    rng = np.random.default_rng(seed)
    net = TTNet((LayerSpec(TTShape((6,), (3,), (1, 1)), "identity"),), name="dense-6x3")
    cfg = DEFAULT_CONFIG
    theta = np.concatenate([cfg.weight.quantize(rng.normal(0, 0.6, 18)), cfg.bias.quantize(rng.normal(0, 1, 3))])
    return net, theta, rng


@pytest.mark.parametrize("sim", ["verilator", pytest.param("icarus", marks=pytest.mark.icarus)])
def test_dense_engine_trainer_both_simulators(sim) -> None:
    """The same sequencer around the one-MAC dense engine: 2 signRGE steps and a CGE step, seconds per simulator."""
    if sim == "icarus" and not runner.have_icarus():
        pytest.skip("Icarus Verilog not installed")
    net, theta, rng = _dense_6x3(11)
    n_in, C, B = 6, 3, 4
    x = rng.integers(0, 256, size=(B, n_in))
    y = rng.integers(0, C, size=B)
    cases = [ZoCase("signrge-2", net, theta, x, y, "signrge", seed=5, k_steps=2, n_queries=2),
             ZoCase("cge-1", net, theta, x, y, "cge", seed=5, step0=2, fraction=0.5)]
    for r in cosimulate_zo(cases, None, sim, n_max=2, log_depth=64):
        assert r.bit_exact, r.to_dict()


def _rounding_matters(case: ZoCase) -> bool:
    """Stochastic and nearest rounding give different parameters for this case (else the test proves nothing)."""
    return bool(np.any(expected(case)[0] != expected(replace(case, cge_rounding="nearest"))[0]))


@pytest.mark.parametrize("sim", ["verilator", pytest.param("icarus", marks=pytest.mark.icarus)])
def test_dense_cge_stochastic_rounding_both_simulators(sim) -> None:
    """One CGE step with stochastic rounding around the dense engine: golden's step bit for bit."""
    if sim == "icarus" and not runner.have_icarus():
        pytest.skip("Icarus Verilog not installed")
    net, theta, rng = _dense_6x3(12)
    n_in, C, B = 6, 3, 4
    b0 = rng.integers(-(1 << 24), 1 << 24, size=net.n_params)
    case = ZoCase("cge-sr", net, theta, rng.integers(0, 256, size=(B, n_in)), rng.integers(0, C, size=B), "cge",
                  seed=5, step0=9, fraction=0.5, cge_lr=0.0002, momentum0=b0, cge_rounding="stochastic")
    assert _rounding_matters(case)
    (r,) = cosimulate_zo([case], None, sim, n_max=2, log_depth=64)
    assert r.bit_exact, r.to_dict()


@pytest.mark.slow
def test_verilator_small_net_cge_stochastic_rounding(mnist_dir) -> None:
    """The small TT net on a real batch of 32: one CGE step (5 % of the coordinates) with stochastic rounding."""
    net = small_mnist_net()
    x, y = _batch(mnist_dir, 32)
    theta = net.flatten(seeded_params(net, DEFAULT_CONFIG, 0))
    b0 = np.random.default_rng(4).integers(-(1 << 30), 1 << 30, size=net.n_params)
    case = ZoCase("cge-sr", net, theta, x, y, "cge", seed=7, step0=3, fraction=0.05, cge_lr=0.01, momentum0=b0,
                  cge_rounding="stochastic")
    assert _rounding_matters(case)
    (r,) = cosimulate_zo([case], SMALL_ENGINE, "verilator", N_MAX, LOG_DEPTH)
    assert r.bit_exact, r.to_dict()
    assert r.forwards >= 2
