"""`ttzo train mnist`: train the TT-MLP with a zeroth-order (or first-order) optimizer on the golden model.

Engineer C adds `ttzo train hjb` to the same group from its own module.
"""
from __future__ import annotations

import argparse
import json
import sys

from ttzo.host.cli import group


def register(sub: argparse._SubParsersAction) -> None:
    g = group(sub, "train", help="train a network with zeroth-order optimizers (golden model)")
    p = g.add_parser("mnist", help="train the paper's TT-MLP on MNIST (float or bit-exact fixed point)",
                     description="Train the paper's TT-MLP (784-1024-10, TT rank R) on MNIST with ZO-RGE, "
                                 "ZO-signRGE, ZO-CGE, the hybrid (signRGE then CGE) or the first-order baseline. "
                                 "Writes metrics.json/csv, curve.png and a checkpoint each epoch into --out.")
    p.add_argument("--arith", choices=["float", "fixed"], default="fixed")
    p.add_argument("--optimizer", choices=["fo", "rge", "signrge", "cge", "hybrid"], default="hybrid")
    p.add_argument("--rank", type=int, default=6)
    p.add_argument("--net", choices=["tt", "dense"], default="tt",
                   help="tt: the TT-MLP at --rank (default); dense: the paper's 784-1024-10 dense MLP baseline")
    p.add_argument("--epochs", type=int, default=None, help="epochs to run (default 1; with --resume: keep)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=None, help="output directory (required unless --resume)")
    p.add_argument("--resume", metavar="DIR", default=None, help="continue the run in DIR from its checkpoint")
    p.add_argument("--data", default=None, help="MNIST directory (default: $TTZO_DATA, cache or shared copy)")
    p.add_argument("--train-samples", type=int, default=None, help="use the first N training images")
    p.add_argument("--test-samples", type=int, default=None, help="use the first N test images")
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--lr", type=float, default=None, help="signRGE/RGE step (default 0.005); FO lr with fo")
    p.add_argument("--mu", type=float, default=0.1, help="signRGE/RGE smoothing (default 0.1)")
    p.add_argument("--queries", type=int, default=10, help="perturbations N per step (default 10)")
    p.add_argument("--perturbation", choices=["rademacher", "gaussian"], default="rademacher")
    p.add_argument("--central", action="store_true", help="central (antithetic) differences, 2N+1 evaluations")
    p.add_argument("--cge-lr", type=float, default=0.001)
    p.add_argument("--cge-mu", type=float, default=0.01)
    p.add_argument("--momentum", type=float, default=0.9)
    p.add_argument("--cge-fraction", type=float, default=1.0,
                   help="probability a coordinate is visited per CGE step (authors' grad_sparsity 0.5 = 0.5)")
    p.add_argument("--lr-decay", type=float, default=0.9)
    p.add_argument("--lr-decay-every", type=int, default=10)
    p.add_argument("--cge-rounding", choices=["nearest", "stochastic"], default="nearest",
                   help="fixed point: round the CGE update half up (default) or stochastically (PRNG)")
    p.add_argument("--cge-lr-min", type=float, default=0.0,
                   help="floor of the decayed CGE lr (default 0: none), e.g. decay fast then hold")
    sw = p.add_mutually_exclusive_group()
    sw.add_argument("--switch-epoch", type=int, default=None, help="hybrid: switch to CGE at this epoch")
    sw.add_argument("--patience", type=int, default=None,
                    help="hybrid: switch when the train loss has not improved for P epochs (default 2)")
    p.add_argument("--at", action="append", default=[], metavar="E:KEY=VALUE[,KEY=VALUE]",
                   help="change settings after E epochs, e.g. --at 28:cge_rounding=stochastic,cge_lr_min=0.003 "
                        "--at 67:batch=256 (optimizer settings as in --set of `train branch`, or batch; repeatable)")
    p.add_argument("--formats", default=None, help="JSON file with a FixedConfig (default formats otherwise)")
    p.add_argument("--backend", choices=["golden", "board"], default="golden",
                   help="golden: the numpy model (default); board: every step runs on a board at --port")
    p.add_argument("--port", default=None, help="with --backend board: board URL (socket://127.0.0.1:N for the "
                                                "virtual board, /dev/ttyUSB1, xdma:///dev/xdma0)")
    p.add_argument("--baud", type=int, default=115200, help="UART baud rate with --backend board")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--json", action="store_true", help="print the final metrics as JSON")
    p.set_defaults(func=run)
    b = g.add_parser("branch", help="start a new run from another run's epoch checkpoint with optimizer settings "
                                    "changed (then `ttzo train mnist --resume OUT`)")
    b.add_argument("checkpoint", help="an epoch checkpoint of a run, e.g. RUN/checkpoint-e028.npz")
    b.add_argument("--out", required=True, help="new run directory")
    b.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="optimizer setting to change, e.g. cge_rounding=stochastic or cge_lr_min=0.003 (repeatable)")
    b.add_argument("--epochs", type=int, default=None, help="total epochs of the new run")
    b.add_argument("--batch", type=int, default=None, help="batch size from the branch point on")
    b.set_defaults(func=run_branch)
    c = g.add_parser("compare", help="compare two runs' per-epoch metrics key by key (times left out); "
                                     "exit 1 at the first epoch that differs")
    c.add_argument("run_a", help="a run directory (with metrics.json)")
    c.add_argument("run_b", help="another run directory")
    c.set_defaults(func=run_compare)
    q = g.add_parser("plot", help="learning-curve figure comparing finished runs (accuracy vs forward evaluations)")
    q.add_argument("runs", nargs="+", help="output directories of `ttzo train mnist`")
    q.add_argument("--out", required=True, help="PNG file to write")
    q.set_defaults(func=run_plot)


def parse_settings(items: list[str], option: str) -> dict:
    """KEY=VALUE items to a dict; values are JSON when they parse as JSON (numbers, true), else strings."""
    changes = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ValueError(f"{option} {item!r}: expected KEY=VALUE")
        try:
            changes[key] = json.loads(value)
        except json.JSONDecodeError:
            changes[key] = value
    return changes


def parse_schedule(items: list[str]) -> list[dict]:
    """`--at E:KEY=VALUE[,KEY=VALUE]` items to TrainConfig.schedule entries (batch apart from optim)."""
    entries = []
    for item in items:
        epoch, sep, rest = item.partition(":")
        if not sep or not epoch.strip().isdigit():
            raise ValueError(f"--at {item!r}: expected E:KEY=VALUE[,KEY=VALUE] with E the epochs completed")
        optim = parse_settings(rest.split(","), f"--at {epoch}:")
        batch = optim.pop("batch", None)
        entries.append({"epoch": int(epoch), "optim": optim, **({"batch": batch} if batch is not None else {})})
    return entries


def run_branch(args: argparse.Namespace) -> int:
    from ttzo.golden.train import branch_run
    try:
        changes = parse_settings(args.set, "--set")
        cfg = branch_run(args.checkpoint, args.out, changes, args.epochs, args.batch)
    except (OSError, ValueError) as exc:
        print(f"ttzo train branch: error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({"out": cfg["out"], "epochs": cfg["epochs"], "batch": cfg["batch"], "optim": cfg["optim"]},
                     indent=2))
    return 0


def run_compare(args: argparse.Namespace) -> int:
    from ttzo.golden.train import compare_runs
    res = compare_runs(args.run_a, args.run_b)
    print(json.dumps(res, indent=2))
    return 1 if res["first_difference"] else 0


def run_plot(args: argparse.Namespace) -> int:
    from ttzo.golden.curves import plot_runs
    print(plot_runs(args.runs, args.out))
    return 0


def _train(cfg, args: argparse.Namespace, resume: bool = False):
    """train_mnist with the golden step, or with the board's (ttzo.host.backend_board) when --backend board."""
    from ttzo.golden.train import TrainConfig, load_checkpoint, train_mnist
    if args.backend == "golden":
        return train_mnist(cfg, resume=resume, progress=not args.no_progress)
    if not args.port:
        raise ValueError("--backend board needs --port URL (e.g. socket://127.0.0.1:5555 from `ttzo virtual-board`)")
    from pathlib import Path
    from ttzo.host.backend_board import open_board_stepper
    run_cfg = TrainConfig.from_dict(load_checkpoint(Path(cfg.out) / "checkpoint.npz")["config"]) if resume else cfg
    if run_cfg.net != "tt":
        raise ValueError("--backend board trains the TT-MLP only (the engine is a TT engine); use --net tt")
    stepper, board = open_board_stepper(run_cfg, args.port, baudrate=args.baud)
    try:
        return train_mnist(cfg, resume=resume, progress=not args.no_progress, stepper=stepper)
    finally:
        board.close()


def run(args: argparse.Namespace) -> int:
    from ttzo.golden.optim import OptimConfig
    from ttzo.golden.train import TrainConfig, install_sigterm
    install_sigterm()
    if args.resume:
        if args.at:
            raise ValueError("--at with --resume: a run keeps the schedule it started with; to change settings "
                             "from an epoch on, use `ttzo train branch`")
        cfg = TrainConfig(out=args.resume, data=args.data, epochs=args.epochs or 1)
        res = _train(cfg, args, resume=True)
    else:
        if not args.out:
            print("ttzo train mnist: error: --out DIR is required (or --resume DIR)", file=sys.stderr)
            return 2
        lr = args.lr
        oc = OptimConfig(optimizer=args.optimizer, lr=lr if lr is not None and args.optimizer != "fo" else 0.005,
                         fo_lr=lr if lr is not None and args.optimizer == "fo" else 0.05,
                         mu=args.mu, queries=args.queries, perturbation=args.perturbation, central=args.central,
                         cge_lr=args.cge_lr, cge_mu=args.cge_mu, momentum=args.momentum,
                         cge_fraction=args.cge_fraction, lr_decay=args.lr_decay, lr_decay_every=args.lr_decay_every,
                         cge_lr_min=args.cge_lr_min, cge_rounding=args.cge_rounding,
                         switch_epoch=args.switch_epoch,
                         patience=args.patience if args.patience is not None or args.switch_epoch is not None else 2)
        formats = None
        if args.formats:
            from pathlib import Path
            try:
                formats = json.loads(Path(args.formats).read_text())
            except json.JSONDecodeError as exc:
                raise ValueError(f"{args.formats}: not valid JSON: {exc}") from None
        cfg = TrainConfig(arith=args.arith, rank=args.rank, epochs=args.epochs or 1, seed=args.seed,
                          batch=args.batch, out=args.out, data=args.data, train_samples=args.train_samples,
                          test_samples=args.test_samples, optim=oc, formats=formats, net=args.net,
                          schedule=parse_schedule(args.at))
        res = _train(cfg, args)
    if args.json:
        print(json.dumps({"out": str(res.out), "interrupted": res.interrupted, "final": res.final}, indent=2))
    else:
        f = res.final
        if f:
            print(f"{res.out}: epoch {f['epoch'] + 1} test accuracy {100 * f['test_acc']:.2f}% "
                  f"({f['evaluations']} forward evaluations, {f['wall_seconds']:.0f} s)"
                  + (" [interrupted; resume with --resume]" if res.interrupted else ""))
    return 130 if res.interrupted else 0
