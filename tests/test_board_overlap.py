"""Double-buffered batch on the virtual board: the host uploads batch k+1 while step k computes.

The board is rtl/board_top.BoardTop at the small profile (stream PHY, Verilator under cocotb, served on
a TCP port by sim/virtual_board_top.py), driven by the unchanged host driver:

* frames: while RUN_STEPS runs, WRITE_REGION to BATCH_NEXT/LABELS_NEXT is accepted (STATUS still busy
  after the whole upload), writes to BATCH/LABELS/PARAMS and CONFIGURE are refused with BUSY; the
  running steps are unaffected (parameters and every logged loss equal golden/zo_fixed.py's on the
  bank they read) and the uploaded batch is in the other bank (select it, read BATCH back, train on it);
* the training loop: BoardStepper with golden/train.py's lookahead (``prefetch`` before each step) gives
  the very parameters and step results of the same stepper without lookahead and of GoldenStepper.
"""
from __future__ import annotations

import numpy as np
import pytest

from ttzo.host import protocol as P
from ttzo.host.backend_board import BoardSession, BoardStepper, golden_signrge
from ttzo.host.board import Board, CommandError
from ttzo.rtl.board_top import small_profile
from ttzo.sim import verilator_env

pytestmark = pytest.mark.skipif(not verilator_env.available(), reason="Verilator not available")

B, N, SEED, MU, ALPHA = 8, 2, 7, 0.1, 0.01
#: steps of the operation the upload overlaps: ~45k cycles each; the 6,280-byte upload took ~60k cycles of
#: simulated time (the clock runs on while the host prepares each frame), so 4 steps leave a 3x margin
K_LONG = 4


def _batches(mnist_dir, n: int):
    from ttzo.golden.mnist import load_mnist
    ds = load_mnist(mnist_dir)
    return [(np.asarray(ds.train_images[k * B:(k + 1) * B], dtype=np.int64).reshape(B, -1),
             np.asarray(ds.train_labels[k * B:(k + 1) * B], dtype=np.int64)) for k in range(n)]


def _theta(net, cfg):
    from ttzo.sim.tt_cosim import seeded_params
    return net.flatten(seeded_params(net, cfg, 0)).astype(np.int64)


def _frames_while_busy(b: Board, s: BoardSession, batches) -> None:
    (x0, y0), (x1, y1) = batches[:2]
    theta = _theta(s.net, s.cfg)
    s.load_params(theta)
    s.load_batch(x0, y0)                                     # bank 0 (the session starts on the board's bank)
    s.configure_signrge(seed=SEED, step0=0, n_samples=B, queries=N, mu=MU, alpha=ALPHA, bank=0)
    s.start_steps(K_LONG)
    assert b.status().busy
    s.load_batch(x1, y1, next_bank=True)                     # the whole next batch, while the steps run
    st = b.status()
    assert st.busy, "the steps ended before the upload: the upload did not overlap them"
    for refused in (lambda: b.write_region(P.Region.BATCH, bytes(4)),
                    lambda: b.write_region(P.Region.LABELS, bytes(1)),
                    lambda: b.write_region(P.Region.PARAMS, bytes(2)),
                    lambda: s.select_bank(1)):
        with pytest.raises(CommandError, match="BUSY"):
            refused()
    r = s.finish()
    want, log = golden_signrge(s.net, theta, x0, y0, seed=SEED, step0=0, k_steps=K_LONG, queries=N, mu=MU,
                               alpha=ALPHA, cfg=s.cfg)
    assert r.steps == K_LONG and np.array_equal(s.read_params(), want)
    assert s.read_log(r.forwards) == log[-min(len(log), s.bp.log_depth):]
    last = (B - 1) * 784                                     # first and last sample of each bank read back
    assert b.read_region(P.Region.BATCH, 784) + b.read_region(P.Region.BATCH, 784, last) == \
        np.asarray(x0[[0, -1]], np.uint8).tobytes()          # bank 0 untouched
    s.select_bank(1)                                         # the uploaded batch is the other bank
    assert b.read_region(P.Region.BATCH, 784) + b.read_region(P.Region.BATCH, 784, last) == \
        np.asarray(x1[[0, -1]], np.uint8).tobytes()
    assert b.read_region(P.Region.LABELS) == np.asarray(y1, np.uint8).tobytes()
    s.configure_signrge(seed=SEED, step0=K_LONG, n_samples=B, queries=N, mu=MU, alpha=ALPHA)
    s.run_steps(1)
    want1, _ = golden_signrge(s.net, want, x1, y1, seed=SEED, step0=K_LONG, k_steps=1, queries=N, mu=MU,
                              alpha=ALPHA, cfg=s.cfg)
    assert np.array_equal(s.read_params(), want1)


def _train(stepper, net, batches, theta, lookahead: bool):
    from ttzo.golden.optim import OptState
    st = OptState(theta=theta.copy(), momentum=np.zeros_like(theta), step=0, phase="signrge")
    results = []
    for k, (x, y) in enumerate(batches):
        if lookahead and k + 1 < len(batches) and hasattr(stepper, "prefetch"):   # as golden/train.py does
            stepper.prefetch(*batches[k + 1])
        r = stepper.step(st, x, y, 0)
        results.append((r.loss, r.correct, r.evaluations))
    return st.theta, st.step, results


def test_next_batch_upload_overlaps_steps_bit_exact(mnist_dir) -> None:
    from ttzo.golden.optim import GoldenStepper, OptimConfig
    from ttzo.sim.virtual_board_top import start
    batches = _batches(mnist_dir, 3)
    port, stop = start(small_profile(), phy="stream")
    try:
        with Board.open(f"socket://127.0.0.1:{port}", timeout=5.0) as b:
            assert b.info.region(P.Region.BATCH_NEXT).busy_writable
            s = BoardSession(b)
            assert s.banks == 2
            s.load_program()
            _frames_while_busy(b, s, batches)

            oc = OptimConfig(optimizer="signrge", lr=ALPHA, mu=MU, queries=N)
            theta = _theta(s.net, s.cfg)
            over = BoardStepper(s, s.net, oc, SEED, B, s.cfg)
            got = _train(over, s.net, batches, theta, lookahead=True)
            # every upload of a next batch went to the idle bank during a step (whether it finished before
            # the step did depends on the simulator's speed against the host's, so only the sum is fixed)
            assert over.overlapped + over.serial_after == len(batches) - 1
            serial = _train(BoardStepper(s, s.net, oc, SEED, B, s.cfg), s.net, batches, theta, lookahead=False)
    finally:
        stop()
    gold = _train(GoldenStepper(s.net, oc, SEED, B, s.cfg), s.net, batches, theta, lookahead=True)
    for a in (got, serial):
        assert np.array_equal(a[0], gold[0]) and a[1:] == gold[1:]
    assert not np.array_equal(gold[0], theta)
