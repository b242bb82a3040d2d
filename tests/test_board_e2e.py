"""End to end: the unchanged host driver over socket:// to the virtual board running the real engines.

The board is rtl/board_top.BoardTop (E's command processor + H's ZO trainer around D's TT engine) at
the small profile (784 -> 16 -> 10 TT-MLP, 210 parameters, batch <= 8), simulated by Verilator under
cocotb and served on a TCP port (sim/virtual_board_top.py).  The host identifies it, loads the
engine program and the parameters, streams a real MNIST training batch, runs 2 signRGE steps on
chip and reads the parameters back: they equal golden/zo_fixed.py's bit for bit, and so do the
losses and correct counts of every forward pass the chip logged.  The UART PHY variant is `slow`.
The HJB loss evaluation through the board (the ttzo-hjb-small design) is tests/test_board_hjb_e2e.py.
The serial design (rtl/serial_top.py, docs/rtl-serial.md) runs the same flow at its tiny profile.
"""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.host import protocol as P
from ttzo.host.backend_board import BoardSession, BoardStepper, golden_signrge
from ttzo.host.board import Board, BoardError
from ttzo.rtl.board_top import CFG_N_QUERIES, small_profile
from ttzo.sim import verilator_env

pytestmark = pytest.mark.skipif(not verilator_env.available(), reason="Verilator not available")

B, K, N, SEED, MU, ALPHA = 8, 2, 2, 7, 0.1, 0.01


def _batch(mnist_dir, start: int = 0):
    from ttzo.golden.mnist import load_mnist
    ds = load_mnist(mnist_dir)
    x = np.asarray(ds.train_images[start:start + B], dtype=np.int64).reshape(B, -1)
    return x, np.asarray(ds.train_labels[start:start + B], dtype=np.int64)


def _theta(net, cfg):
    from ttzo.sim.tt_cosim import seeded_params
    return net.flatten(seeded_params(net, cfg, 0)).astype(np.int64)


def _flow(url: str, mnist_dir, timeout: float, bp=None) -> None:
    bp = bp or small_profile()
    with Board.open(url, timeout=timeout) as b:
        # identify: the record is the design's own (sizes, formats, capabilities)
        assert b.info.name == bp.name
        assert b.info.region(P.Region.PARAMS).depth == bp.net.n_params
        assert b.info.region(P.Region.BATCH).size == bp.max_samples * 784
        assert b.info.fixed_config() == bp.cfg
        s = BoardSession(b)
        s.load_program()
        theta = _theta(s.net, s.cfg)
        s.load_params(theta)
        assert np.array_equal(s.read_params(), theta)
        x, y = _batch(mnist_dir)
        s.load_batch(x, y)
        # (the last sample read back; the bit-exact losses below prove the whole batch arrived)
        assert b.read_region(P.Region.BATCH, 784, (B - 1) * 784) == np.asarray(x[-1], np.uint8).tobytes()

        # one forward pass (RUN_INFERENCE): loss and correct count of golden, parameters untouched
        s.configure_signrge(seed=SEED, step0=0, n_samples=B, queries=N, mu=MU, alpha=ALPHA)
        inf = s.run_inference()
        _, log0 = golden_signrge(s.net, theta, x, y, seed=SEED, step0=0, k_steps=1, queries=0, mu=MU,
                                 alpha=ALPHA, cfg=s.cfg)
        assert (inf.loss0, inf.correct) == log0[0]
        assert np.array_equal(s.read_params(), theta)

        # 2 signRGE steps on chip == golden, bit for bit (parameters and every logged loss)
        s.configure_signrge(seed=SEED, step0=0, n_samples=B, queries=N, mu=MU, alpha=ALPHA)
        r = s.run_steps(K)
        want, log = golden_signrge(s.net, theta, x, y, seed=SEED, step0=0, k_steps=K, queries=N, mu=MU,
                                   alpha=ALPHA, cfg=s.cfg)
        got = s.read_params()
        assert r.steps == K and r.forwards == K * (1 + N)
        assert np.array_equal(got, want), f"{int(np.sum(got != want))} of {got.size} parameters differ"
        assert not np.array_equal(got, theta)            # the steps moved parameters
        assert s.read_log(r.forwards) == log
        assert (r.loss0, r.correct) == log[-(1 + N)]

        # golden/train.py's Stepper interface: BoardStepper.step == GoldenStepper.step (one signRGE step)
        from ttzo.golden.optim import GoldenStepper, OptimConfig, OptState
        oc = OptimConfig(optimizer="signrge", lr=ALPHA, mu=MU, queries=N)
        x2, y2 = _batch(mnist_dir, B)
        st_b = OptState(theta=want.copy(), momentum=np.zeros_like(want), step=K, phase="signrge")
        st_g = OptState(theta=want.copy(), momentum=np.zeros_like(want), step=K, phase="signrge")
        rb = BoardStepper(s, s.net, oc, SEED, B, s.cfg).step(st_b, x2, y2, 0)
        rg = GoldenStepper(s.net, oc, SEED, B, s.cfg).step(st_g, x2, y2, 0)
        assert np.array_equal(st_b.theta, st_g.theta) and st_b.step == st_g.step == K + 1
        assert (rb.loss, rb.correct, rb.evaluations) == (rg.loss, rg.correct, rg.evaluations)
        want = st_g.theta

        # garbage, a corrupted frame and an out-of-range write on the wire change nothing; the link resyncs
        rng = np.random.default_rng(3)
        bad = bytearray(P.Frame(P.Cmd.WRITE_REGION, 1, P.WRITE_HDR.pack(P.Region.PARAMS, 0) + bytes(8)).encode())
        bad[5] ^= 0x10
        junk = rng.integers(0x10, 0xC0, 300, dtype=np.uint8)       # no END/ESC: one garbage "frame" ...
        junk[1] = 0x7F                                             # ... whose echoed command we never send
        b.t.write(junk.tobytes() + bytes(bad)
                  + P.Frame(P.Cmd.WRITE_REGION, 2, P.WRITE_HDR.pack(P.Region.PARAMS, 420) + bytes(2)).encode())
        assert np.array_equal(s.read_params(), want)

        # a refused operation (more queries than the design holds) changes nothing
        regs = s.registers(seed=SEED, step0=K, n_samples=B, queries=N, mu=MU, alpha=ALPHA)
        regs[CFG_N_QUERIES] = bp.n_max + 1
        b.configure(0, regs)
        with pytest.raises(BoardError, match="engine error 2"):
            b.run_steps(1)
        assert np.array_equal(s.read_params(), want)

        # RESET aborts a running operation (the trainer's registered reset, BoardTop._train_domain): the
        # board is idle at once, and the next step from a reloaded state equals golden bit for bit
        s.configure_signrge(seed=SEED, step0=K + 1, n_samples=B, queries=N, mu=MU, alpha=ALPHA)
        assert b.run_steps(1000, wait=False).busy
        b.reset()
        assert not b.status().busy
        s.load_params(want)
        s.load_batch(x, y)
        s.configure_signrge(seed=SEED, step0=K + 1, n_samples=B, queries=N, mu=MU, alpha=ALPHA)
        r = s.run_steps(1)
        after, log = golden_signrge(s.net, want, x, y, seed=SEED, step0=K + 1, k_steps=1, queries=N, mu=MU,
                                    alpha=ALPHA, cfg=s.cfg)
        assert r.steps == 1 and np.array_equal(s.read_params(), after)
        assert s.read_log(r.forwards) == log


def test_virtual_board_signrge_bit_exact(mnist_dir) -> None:
    from ttzo.sim.virtual_board_top import start
    port, stop = start(small_profile(), phy="stream")
    try:
        _flow(f"socket://127.0.0.1:{port}", mnist_dir, timeout=5.0)
    finally:
        stop()


def test_virtual_board_serial_design_bit_exact(mnist_dir) -> None:
    """The same flow, unchanged host code, against the serial design (rtl/serial_top.SerialTop, the one
    that fits the UP5K) at its small profile: no program to load, the same results bit for bit."""
    from ttzo.rtl.board_top import serial_tiny_profile
    from ttzo.sim.virtual_board_top import start
    port, stop = start(serial_tiny_profile(), phy="stream")
    try:
        _flow(f"socket://127.0.0.1:{port}", mnist_dir, timeout=5.0, bp=serial_tiny_profile())
    finally:
        stop()


@pytest.mark.slow
def test_virtual_board_signrge_bit_exact_uart(mnist_dir) -> None:
    from ttzo.sim.virtual_board_top import start
    port, stop = start(small_profile(), phy="uart")
    try:
        _flow(f"socket://127.0.0.1:{port}", mnist_dir, timeout=60.0)
    finally:
        stop()


@pytest.mark.slow
def test_train_mnist_through_the_board_equals_golden(mnist_dir, tmp_path) -> None:
    """golden/train.py's loop with the board as its Stepper (what `ttzo train mnist --backend board` runs):
    the paper's TT-MLP at rank 1 on the ttzo-mnist-r1 design, 2 signRGE steps of batch 64 — the final
    parameters and every metric equal the golden backend's; the second batch is uploaded into the idle
    bank while the first step runs (golden/train.py's lookahead, BoardStepper.prefetch)."""
    from ttzo.golden.optim import OptimConfig
    from ttzo.golden.train import TrainConfig, train_mnist
    from ttzo.host.backend_board import open_board_stepper
    from ttzo.rtl.board_top import mnist_profile
    from ttzo.sim.virtual_board_top import start

    def cfg(out):
        return TrainConfig(arith="fixed", rank=1, epochs=1, seed=0, batch=64, out=str(out), data=str(mnist_dir),
                           train_samples=128, test_samples=200, optim=OptimConfig(optimizer="signrge", queries=2))
    gold = train_mnist(cfg(tmp_path / "golden"), progress=False)
    port, stop = start(mnist_profile(1), phy="stream")
    try:
        c = cfg(tmp_path / "board")
        stepper, board = open_board_stepper(c, f"socket://127.0.0.1:{port}", timeout=10.0)
        try:
            res = train_mnist(c, progress=False, stepper=stepper)
        finally:
            board.close()
        # the loop's lookahead: step 1's batch went into the idle bank during step 0 (double-buffered design)
        assert stepper.double_buffered and stepper.overlapped + stepper.serial_after == 1
    finally:
        stop()
    assert np.array_equal(res.theta, gold.theta)
    keys = ("train_loss", "train_acc", "test_loss", "test_acc", "evaluations", "steps")
    assert [{k: m[k] for k in keys} for m in res.metrics] == [{k: m[k] for k in keys} for m in gold.metrics]
    assert (tmp_path / "board" / "checkpoint.npz").exists() and (tmp_path / "board" / "metrics.json").exists()


@pytest.mark.slow
def test_virtual_board_serial_mnist_r6_step_bit_exact(mnist_dir) -> None:
    """The UP5K bitstream's own design (ttzo-serial-r6: mnist_tt(6), 3,962 parameters, the same RTL the
    icebreaker build places) trains one signRGE step on real MNIST samples through the unchanged host
    driver, bit for bit as golden: 3 forward passes x 2 samples of ~368,000 engine cycles each
    (133 s with the Verilator build, tenth session)."""
    from ttzo.rtl.board_top import serial_profile
    from ttzo.sim.virtual_board_top import start
    bp = serial_profile(6)
    port, stop = start(bp, phy="stream")
    try:
        with Board.open(f"socket://127.0.0.1:{port}", timeout=5.0) as b:
            assert b.info.name == "ttzo-serial-r6"
            s = BoardSession(b)
            assert s.load_program() == 0                          # the network is in the gateware
            theta = _theta(s.net, s.cfg)
            s.load_params(theta)
            x, y = _batch(mnist_dir)
            x, y = x[:2], y[:2]
            s.load_batch(x, y)
            s.configure_signrge(seed=SEED, step0=5, n_samples=2, queries=2, mu=MU, alpha=ALPHA)
            r = s.run_steps(1, timeout=600.0)
            want, log = golden_signrge(s.net, theta, x, y, seed=SEED, step0=5, k_steps=1, queries=2, mu=MU,
                                       alpha=ALPHA, cfg=s.cfg)
            assert r.steps == 1 and r.forwards == 3
            assert np.array_equal(s.read_params(), want)
            assert not np.array_equal(want, theta)
            assert s.read_log(3) == log
    finally:
        stop()
