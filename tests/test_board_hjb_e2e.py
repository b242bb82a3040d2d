"""End to end, HJB: the unchanged host driver over socket:// to the virtual board running the PINN design.

The board is rtl/board_top.BoardTop at the "ttzo-hjb-small" profile: the ZO trainer with
rtl/pinn_loss.PinnLoss around the TT engine as its loss source (tiny sine TT net 3 -> 8 -> 4 -> 1,
D <= 4, <= 64 nodes, <= 8 points), simulated by Verilator under cocotb and served on a TCP port.
The host identifies it (capability ``pinn`` and the maxima), loads the engine program and golden-
quantised random parameters, a D = 3 level-2 sparse-grid node table (7 nodes) and 4 collocation
points, evaluates the HJB loss (RUN_INFERENCE; per-point gradient, Laplacian, residual and r^2
read back from region `outputs`) and runs 2 signRGE steps on it: the loss, every
logged batch loss and the parameters read back equal golden/stein_fixed.py's bit for bit.
The run check's PINN registers are also compared with board_fuzz.config_problems.  The UART PHY
variant is `slow`.
"""
from __future__ import annotations

import random

import numpy as np
import pytest

from ttzo.golden.protocol_spec import CAP_PINN
from ttzo.golden.stein_fixed import SteinFixedHJB
from ttzo.host import protocol as P
from ttzo.host.backend_board import BoardSession
from ttzo.host.board import Board, BoardError
from ttzo.rtl import board_top as T
from ttzo.sim import verilator_env
from ttzo.sim.board_fuzz import config_problems, runnable_in_rtl
from ttzo.sim.pinn_cosim import SMALL_SPEC, golden_signrge, small_case

HAVE_VERILATOR = verilator_env.available()

K, N, SEED, MU, ALPHA = 2, 2, 3, 0.01, 0.001
BP = T.hjb_small_profile()


def _flow(url: str, timeout: float) -> None:
    bp = BP
    case = small_case(3, 2, 4, seed=0)            # D = 3 level 2: 7 nodes; 4 points; seeded random net
    with Board.open(url, timeout=timeout) as b:
        # identify: the PINN design says so, with its maxima; no batch/labels regions
        assert b.info.name == "ttzo-hjb-small" and b.info.capabilities & CAP_PINN
        assert {r.id for r in b.info.regions} == {P.Region.PARAMS, P.Region.NODES, P.Region.COLLOC,
                                                  P.Region.OUTPUTS, T.REGION_PROGRAM, T.REGION_LOG}
        assert b.info.region(P.Region.PARAMS).depth == bp.net.n_params
        assert b.info.fixed_config().loss == SMALL_SPEC.fmts.loss
        s = BoardSession(b)
        assert (s.max_nodes, s.max_points, s.max_dim) == (SMALL_SPEC.max_nodes, SMALL_SPEC.max_points,
                                                          SMALL_SPEC.max_dim)
        s.load_program()
        theta = case.net.flatten(case.codes).astype(np.int64)
        assert (theta < 0).any() and np.abs(theta).max() >= 1 << 15          # 20-bit signed codes round-trip
        s.load_params(theta)
        assert np.array_equal(s.read_params(), theta)
        sizes = s.load_hjb(case.table, case.x)
        assert sizes == (7, 4, 3)

        # one HJB loss evaluation == golden/stein_fixed.py's integer loss, parameters untouched
        want = SteinFixedHJB(case.net, SMALL_SPEC.cfg, SMALL_SPEC.fmts, case.sine).evaluate(case.codes, case.x,
                                                                                             case.table)
        s.configure_hjb(sizes, seed=SEED, queries=N, mu=MU, alpha=ALPHA)
        assert want.loss_sum > 0 and len(set(want.loss.tolist())) > 1     # a real, point-dependent loss
        assert s.hjb_loss() == want.loss_sum
        got = s.read_hjb_points(*sizes[1:])                                 # per point: grad, lap, r, r^2
        for key in ("grad", "lap", "res", "loss"):
            assert np.array_equal(got[key], getattr(want, key)), (key, got[key], getattr(want, key))
        assert s.read_log(1) == [(want.loss_sum, 0)]
        assert np.array_equal(s.read_params(), theta)

        # 2 signRGE steps on the HJB loss == golden, bit for bit (parameters and every batch loss)
        s.configure_hjb(sizes, seed=SEED, step0=0, queries=N, mu=MU, alpha=ALPHA)
        r = s.run_steps(K)
        want_theta, log, _ = golden_signrge(case, SMALL_SPEC, seed=SEED, step0=0, k_steps=K, n_queries=N,
                                            mu=MU, alpha=ALPHA)
        got = s.read_params()
        assert r.steps == K and r.forwards == K * (1 + N)
        assert np.array_equal(got, want_theta), f"{int(np.sum(got != want_theta))} of {got.size} parameters differ"
        assert not np.array_equal(got, theta)
        assert [loss for loss, _ in s.read_log(r.forwards)] == log
        assert r.loss0 == log[-(1 + N)]

        # a node count the design cannot hold is refused (op error 2) and changes nothing
        regs = s.configure_hjb(sizes, seed=SEED, queries=N, mu=MU, alpha=ALPHA)
        regs[bp.pinn_config0] = s.max_nodes + 1
        b.configure(0, regs)
        with pytest.raises(BoardError, match="engine error 2"):
            b.run_steps(1)
        assert np.array_equal(s.read_params(), want_theta)
        with pytest.raises(ValueError, match="collocation points"):
            s.load_hjb(case.table, np.zeros((s.max_points + 1, 3), dtype=np.int64))


@pytest.mark.skipif(not HAVE_VERILATOR, reason="Verilator not available")
def test_virtual_board_hjb_loss_and_signrge_bit_exact() -> None:
    from ttzo.sim.virtual_board_top import start
    port, stop = start(BP, phy="stream")
    try:
        _flow(f"socket://127.0.0.1:{port}", timeout=5.0)
    finally:
        stop()


@pytest.mark.slow
@pytest.mark.skipif(not HAVE_VERILATOR, reason="Verilator not available")
def test_virtual_board_hjb_loss_and_signrge_bit_exact_uart() -> None:
    """The same flow through the UART PHY (divisor 8)."""
    from ttzo.sim.virtual_board_top import start
    port, stop = start(BP, phy="uart")
    try:
        _flow(f"socket://127.0.0.1:{port}", timeout=60.0)
    finally:
        stop()


def test_pinn_run_check_equals_its_statement() -> None:
    """board_top.runnable on a PINN design accepts exactly what board_fuzz.config_problems accepts,
    including the n_nodes / n_points / dim registers at their edges."""
    from ttzo.host.board import Board
    from ttzo.sim.link_model import LinkModel, ModelTransport
    bp = BP
    b = Board(ModelTransport(LinkModel(bp.identify())))
    b.identify()
    s = BoardSession.__new__(BoardSession)       # register arithmetic only: no board maxima to read
    s.board, s.bp, s.net, s.cfg, s.pinn = b, bp, bp.net, bp.cfg, True
    from ttzo.golden import zo_fixed
    s.pf = zo_fixed.ParamFormats.of(bp.net, bp.cfg)
    good = s.registers(seed=1, step0=0, n_samples=1, queries=2, mu=0.01, alpha=0.001)
    c0 = bp.pinn_config0
    good[c0:c0 + 3] = [7, 4, 3]
    assert config_problems(bp, good) == []
    rng = random.Random(0)
    files = [good]
    pz = bp.pinn
    for k, hi in enumerate((pz.max_nodes, pz.max_points, pz.max_dim)):
        for v in (0, 1, hi, hi + 1, 0xFFFFFFFF, rng.getrandbits(32)):
            regs = good[:]
            regs[c0 + k] = v
            files.append(regs)
    for _ in range(20):                           # random mixes with the trainer's own fields
        regs = good[:]
        for _ in range(rng.randint(1, 3)):
            regs[rng.randrange(len(regs))] = rng.choice([0, 1, 2, 5, 64, 65, 0xFFFFFFFF, rng.getrandbits(32)])
        files.append(regs)
    got = runnable_in_rtl(bp, files)
    want = [config_problems(bp, regs) == [] for regs in files]
    assert got == want
    assert want.count(True) >= 7 and want.count(False) >= 12
