"""`ttzo demo`: train a few signRGE steps on the (virtual) board and check every parameter against golden.

Default: start the virtual board (rtl/board_top.py, small design: 784 -> 16 -> 10 TT-MLP, 210
parameters, simulated by Verilator under cocotb) in the background, identify it, load the engine
program and the parameters, stream a real MNIST training batch, run K signRGE steps on chip, read the
parameters back and compare them with golden/zo_fixed.py's on the same batch and seed.
`--port URL` uses a running board instead (real hardware, or `ttzo virtual-board`);
`--golden-only` (chosen automatically when Verilator is missing) runs a short fixed-point golden
training instead.
"""
from __future__ import annotations

import argparse
import json
import time


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="train a few steps on the virtual board and check them against golden",
                       description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--port", default=None, help="board URL (socket://..., /dev/ttyUSB1, xdma://...); default: "
                                                "start the virtual board")
    p.add_argument("--phy", choices=["stream", "uart"], default="stream",
                   help="virtual board PHY: stream (fast, default) or the bit-level UART (slow)")
    p.add_argument("--steps", type=int, default=2, help="signRGE steps K (default 2)")
    p.add_argument("--queries", type=int, default=2, help="perturbations N per step (default 2)")
    p.add_argument("--batch", type=int, default=8, help="samples in the batch (default 8, the small design's most)")
    p.add_argument("--first", type=int, default=0, help="index of the batch's first MNIST training image")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--mu", type=float, default=0.1)
    p.add_argument("--lr", type=float, default=0.01, help="signRGE step alpha (default 0.01)")
    p.add_argument("--data", default=None, help="MNIST directory (default: $TTZO_DATA, cache or shared copy)")
    p.add_argument("--timeout", type=float, default=5.0, help="seconds per reply (default 5)")
    p.add_argument("--golden-only", action="store_true",
                   help="no board: a short fixed-point golden training run (when Verilator is unavailable)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.golden_only:
        return _golden_only(args)
    if args.steps < 1 or args.queries < 0 or args.batch < 1:
        raise ValueError("--steps and --batch must be >= 1 and --queries >= 0")
    if args.port:
        return _session(args, args.port)
    from ttzo.rtl.board_top import small_profile
    from ttzo.sim import verilator_env
    from ttzo.sim.virtual_board_top import start
    try:
        verilator_env.verilator_env()
    except verilator_env.VerilatorNotFound as exc:
        _say(args, f"no simulator ({exc}): running the golden-only demo instead")
        return _golden_only(args)
    t0 = time.perf_counter()
    _say(args, "building/starting the virtual board (Verilator; the first build takes minutes) ...")
    port, stop = start(small_profile(), phy=args.phy)
    _say(args, f"virtual board up at socket://127.0.0.1:{port} after {time.perf_counter() - t0:.1f} s")
    try:
        return _session(args, f"socket://127.0.0.1:{port}", timeout=args.timeout * (20 if args.phy == "uart" else 1))
    finally:
        stop()


def _say(args: argparse.Namespace, text: str) -> None:
    if not args.json:
        print(text, flush=True)


def _session(args: argparse.Namespace, url: str, timeout: float | None = None) -> int:
    import numpy as np

    from ttzo.golden.mnist import load_mnist
    from ttzo.host.backend_board import BoardSession, golden_signrge
    from ttzo.host.board import Board
    from ttzo.sim.tt_cosim import seeded_params

    t0 = time.perf_counter()
    ds = load_mnist(args.data)
    sl = slice(args.first, args.first + args.batch)
    x = np.asarray(ds.train_images[sl], dtype=np.int64).reshape(args.batch, -1)
    y = np.asarray(ds.train_labels[sl], dtype=np.int64)
    with Board.open(url, timeout=timeout or args.timeout) as b:
        s = BoardSession(b)
        _say(args, f"{b.info.name} at {url}: {s.net.name} ({s.net.n_params} parameters), "
                   f"batch <= {s.bp.max_samples}, N <= {s.bp.n_max}")
        s.load_program()
        theta = s.net.flatten(seeded_params(s.net, s.cfg, 0)).astype(np.int64)
        s.load_params(theta)
        s.load_batch(x, y)
        s.configure_signrge(seed=args.seed, step0=0, n_samples=args.batch, queries=args.queries, mu=args.mu,
                            alpha=args.lr)
        before = s.run_inference()
        t_run = time.perf_counter()
        r = s.run_steps(args.steps)
        t_run = time.perf_counter() - t_run
        after_theta = s.read_params()
        log = s.read_log(r.forwards)
        after = s.run_inference()
    want, want_log = golden_signrge(s.net, theta, x, y, seed=args.seed, step0=0, k_steps=args.steps,
                                    queries=args.queries, mu=args.mu, alpha=args.lr, cfg=s.cfg)
    _, final = golden_signrge(s.net, want, x, y, seed=args.seed, step0=0, k_steps=1, queries=0, mu=args.mu,
                              alpha=args.lr, cfg=s.cfg)
    lsb = s.cfg.loss.lsb / args.batch
    equal = bool(np.array_equal(after_theta, want))
    summary = {
        "board": url, "design": s.bp.name, "network": s.net.name, "parameters": int(s.net.n_params),
        "batch": args.batch, "steps": r.steps, "queries": args.queries, "forward_passes": r.forwards,
        "board_cycles": r.cycles, "run_seconds": round(t_run, 2), "total_seconds": round(time.perf_counter() - t0, 2),
        "loss_before": before.loss0 * lsb, "loss_after": after.loss0 * lsb,
        "correct_before": before.correct, "correct_after": after.correct,
        "parameters_moved": int(np.count_nonzero(after_theta != theta)),
        "parameters_equal_golden": equal,
        "parameters_differing": int(np.count_nonzero(after_theta != want)),
        "losses_equal_golden": log == want_log and (after.loss0, after.correct) == final[0],
    }
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"{summary['steps']} signRGE steps (N={args.queries}, batch {args.batch}) on the board: "
              f"{r.forwards} forward passes, {r.cycles} clock cycles, {t_run:.1f} s wall")
        print(f"batch loss {summary['loss_before']:.4f} -> {summary['loss_after']:.4f}, "
              f"correct {before.correct} -> {after.correct} of {args.batch}; "
              f"{summary['parameters_moved']} parameters moved")
        print(("every parameter equals golden's (bit for bit)" if equal else
               f"MISMATCH: {summary['parameters_differing']} parameters differ from golden") +
              ("; every logged loss too" if summary["losses_equal_golden"] else "; LOGGED LOSSES DIFFER"))
    return 0 if equal and summary["losses_equal_golden"] else 1


def _golden_only(args: argparse.Namespace) -> int:
    """A short fixed-point golden signRGE run of the paper's TT-MLP (rank 2) on a slice of MNIST."""
    import tempfile

    from ttzo.golden.optim import OptimConfig
    from ttzo.golden.train import TrainConfig, train_mnist
    with tempfile.TemporaryDirectory(prefix="ttzo-demo-") as out:
        cfg = TrainConfig(arith="fixed", rank=2, epochs=1, seed=args.seed, batch=64, out=out, data=args.data,
                          train_samples=512, test_samples=1000,
                          optim=OptimConfig(optimizer="signrge", lr=args.lr, mu=args.mu, queries=4))
        res = train_mnist(cfg, progress=False)
    f = res.final
    summary = {"backend": "golden (fixed point)", "network": "mnist-tt-r2", "train_samples": 512,
               "steps": f["steps"], "evaluations": f["evaluations"], "train_loss": f["train_loss"],
               "test_loss": f["test_loss"], "test_acc": f["test_acc"], "wall_seconds": round(f["wall_seconds"], 1)}
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        print(f"golden fixed-point signRGE, {f['steps']} steps on 512 images: train loss {f['train_loss']:.4f}, "
              f"test loss {f['test_loss']:.4f}, test accuracy {100 * f['test_acc']:.1f}% "
              f"({f['wall_seconds']:.0f} s)")
    return 0
