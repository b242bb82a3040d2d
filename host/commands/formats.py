"""`ttzo formats`: show the fixed-point formats, or measure candidates (`ttzo formats sweep`)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from ttzo.host.cli import group
    g = group(sub, "formats", help="fixed-point formats: show the default, measure candidates")
    p = g.add_parser("show", help="print the default per-tensor formats",
                     description="Print the per-tensor fixed-point formats (DEFAULT_CONFIG or PINN_CONFIG).")
    p.add_argument("--pinn", action="store_true", help="the PINN (HJB) configuration instead of the MNIST default")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run_show)

    s = g.add_parser("sweep", help="train the TT-MLP in float, then measure candidate formats' test accuracy",
                     description="Train mnist_tt(rank) with first-order SGD in float for a few epochs, then run the "
                                 "bit-exact fixed-point forward of each candidate format set on the test set and "
                                 "report accuracy, agreement with float and saturation counts. Takes ~4 minutes on "
                                 "2 cores with the defaults (set OPENBLAS_NUM_THREADS=1 on a busy machine).")
    s.add_argument("--data", help="MNIST directory (default: $TTZO_DATA, the cache, ../shared/datasets/mnist)")
    s.add_argument("--rank", type=int, default=6, help="TT rank (default 6)")
    s.add_argument("--epochs", type=int, default=3, help="FO epochs (default 3)")
    s.add_argument("--lr", type=float, default=0.05, help="SGD learning rate, momentum 0.9 (default 0.05)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--max-batches", type=int, default=None, help="cap batches per epoch (quick look)")
    s.add_argument("--n-test", type=int, default=None, help="evaluate on the first N test images only")
    s.add_argument("--candidates", default=None,
                   help="comma-separated candidate names to evaluate (default: all; see golden/formatsweep.py)")
    s.add_argument("--params-file", type=Path, default=None,
                   help="trained float parameters (.npy, flat order): loaded if the file exists (no training), "
                        "else written after training")
    s.add_argument("--out", type=Path, default=None, help="also write the JSON report to this file")
    s.add_argument("--json", action="store_true", help="print the JSON report instead of a Markdown table")
    s.set_defaults(func=run_sweep)


def run_show(args: argparse.Namespace) -> int:
    from ttzo.golden.formats import DEFAULT_CONFIG, PINN_CONFIG
    cfg = PINN_CONFIG if args.pinn else DEFAULT_CONFIG
    d = cfg.to_dict()
    if args.json:
        print(json.dumps(d, indent=2))
    else:
        for k, v in d.items():
            print(f"{k:10s} {v}")
    return 0


def run_sweep(args: argparse.Namespace) -> int:
    import sys

    from ttzo.golden.formatsweep import CANDIDATES, markdown_table, sweep
    from ttzo.golden.mnist import MNISTError, load_mnist
    try:
        data = load_mnist(args.data)
    except MNISTError as exc:
        print(f"ttzo formats sweep: error: {exc}", file=sys.stderr)
        return 2
    import numpy as np

    candidates = None
    if args.candidates:
        names = [n.strip() for n in args.candidates.split(",") if n.strip()]
        unknown = [n for n in names if n not in CANDIDATES]
        if unknown:
            print(f"ttzo formats sweep: error: unknown candidates {unknown}; known: {list(CANDIDATES)}",
                  file=sys.stderr)
            return 2
        candidates = {n: CANDIDATES[n] for n in names}

    from ttzo.golden.network import mnist_tt
    net = mnist_tt(args.rank)
    params = None
    if args.params_file is not None and args.params_file.exists():
        params = net.unflatten(np.load(args.params_file))
    report = sweep(data, rank=args.rank, epochs=args.epochs, lr=args.lr, seed=args.seed,
                   max_batches=args.max_batches, n_test=args.n_test, params=params, candidates=candidates,
                   log=None if args.json else lambda s: print(s, file=sys.stderr, flush=True))
    trained = report.pop("params")
    if args.params_file is not None and params is None:
        np.save(args.params_file, net.flatten(trained))
    if params is not None:
        report["params_file"] = str(args.params_file)
    if args.out is not None:
        args.out.write_text(json.dumps(report, indent=2))
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        how = (f"parameters from {args.params_file}" if params is not None else
               f"after {report['epochs']} FO epochs ({report['train_seconds']} s)")
        print(f"float test accuracy {100 * report['float_test_acc']:.2f}% {how}; value ranges {report['ranges']}")
        print(markdown_table(report))
    return 0
